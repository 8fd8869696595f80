//! Findings in SQLite: reading them back, writing a reconciliation and its events, and
//! the notifier's marks (what was last announced about each finding).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::model::{Fingerprint, ProjectId, RuleId, Severity, SnapshotId};
use crate::store::{Reader, Store, Tx};

use super::{Event, EventKind, Finding, FindingsError, Reconciled, Status, ts};

const COLUMNS: &str = "fingerprint, rule_id, severity, title, resource_type, resource_id, project_id, \
     message, remediation, status, first_seen, last_seen, resolved_at, last_notified_at, changed_by, \
     exemption";

fn row_to_finding(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Finding, FindingsError>> {
    let fingerprint: Fingerprint = row.get(0)?;
    let severity: String = row.get(2)?;
    let status: String = row.get(9)?;
    let Ok(severity) = severity.parse::<Severity>() else {
        return Ok(Err(FindingsError::Corrupt {
            fingerprint,
            field: "severity",
            value: severity,
        }));
    };
    let Ok(status) = status.parse::<Status>() else {
        return Ok(Err(FindingsError::Corrupt {
            fingerprint,
            field: "status",
            value: status,
        }));
    };
    let changed_by = match json_column(row, 14, &fingerprint, "changed_by")? {
        Ok(by) => by,
        Err(e) => return Ok(Err(e)),
    };
    let exemption = match json_column(row, 15, &fingerprint, "exemption")? {
        Ok(terms) => terms,
        Err(e) => return Ok(Err(e)),
    };
    // Checked here so that every time a loaded finding gives (`first_seen_at` and the
    // rest) is the stored one, never a silent 1970 for a value out of chrono's range.
    let first_seen: i64 = row.get(10)?;
    let last_seen: i64 = row.get(11)?;
    let resolved_at: Option<i64> = row.get(12)?;
    let last_notified_at: Option<i64> = row.get(13)?;
    for (field, value) in [
        ("first_seen", Some(first_seen)),
        ("last_seen", Some(last_seen)),
        ("resolved_at", resolved_at),
        ("last_notified_at", last_notified_at),
    ] {
        if let Some(t) = value.filter(|t| DateTime::from_timestamp(*t, 0).is_none()) {
            return Ok(Err(FindingsError::Corrupt {
                fingerprint,
                field,
                value: t.to_string(),
            }));
        }
    }
    Ok(Ok(Finding {
        fingerprint,
        rule_id: RuleId(row.get(1)?),
        severity,
        title: row.get(3)?,
        resource_type: row.get(4)?,
        resource_id: row.get(5)?,
        project_id: row.get::<_, Option<String>>(6)?.map(ProjectId),
        message: row.get(7)?,
        remediation: row.get(8)?,
        status,
        first_seen,
        last_seen,
        resolved_at,
        last_notified_at,
        changed_by,
        exemption,
    }))
}

/// A column of JSON text read as `T`: NULL is `None`, text that does not parse is
/// `FindingsError::Corrupt` naming the finding and the field.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &rusqlite::Row<'_>,
    index: usize,
    fingerprint: &Fingerprint,
    field: &'static str,
) -> rusqlite::Result<Result<Option<T>, FindingsError>> {
    Ok(match row.get::<_, Option<String>>(index)? {
        None => Ok(None),
        Some(text) => match serde_json::from_str(&text) {
            Ok(value) => Ok(Some(value)),
            Err(_) => Err(FindingsError::Corrupt {
                fingerprint: fingerprint.clone(),
                field,
                value: text,
            }),
        },
    })
}

/// `value` as JSON text for a column (`None`: NULL).
fn json_text<T: serde::Serialize>(value: Option<&T>) -> Result<Option<String>, FindingsError> {
    value
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| FindingsError::Encode(e.to_string()))
}

/// Every stored finding, ordered by fingerprint.
pub fn load(db: Reader<'_>) -> Result<Vec<Finding>, FindingsError> {
    let conn = db.conn();
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM finding ORDER BY fingerprint"
    ))?;
    let rows = stmt.query_map([], row_to_finding)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

/// One stored finding.
pub fn get(db: Reader<'_>, fingerprint: &Fingerprint) -> Result<Option<Finding>, FindingsError> {
    db.conn()
        .query_row(
            &format!("SELECT {COLUMNS} FROM finding WHERE fingerprint = ?1"),
            [fingerprint],
            row_to_finding,
        )
        .optional()?
        .transpose()
}

/// Every event of a finding, oldest first, with the snapshot it happened in.
pub fn events(
    db: Reader<'_>,
    fingerprint: &Fingerprint,
) -> Result<Vec<(Option<SnapshotId>, Event)>, FindingsError> {
    let mut stmt = db.conn().prepare(
        "SELECT snapshot_id, kind, from_status, to_status, at, reason, from_severity \
         FROM finding_events WHERE fingerprint = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([fingerprint], |row| {
        Ok((
            row.get::<_, Option<i64>>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<String>>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, Option<String>>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (snapshot, kind, from, to, at, reason, from_severity) = row?;
        let corrupt = |field, value: &str| FindingsError::Corrupt {
            fingerprint: fingerprint.clone(),
            field,
            value: value.to_owned(),
        };
        let kind = kind
            .parse::<EventKind>()
            .map_err(|_| corrupt("event kind", &kind))?;
        let to = to.parse::<Status>().map_err(|_| corrupt("status", &to))?;
        let from = from
            .map(|s| {
                s.parse::<Status>()
                    .map_err(|_| corrupt("previous status", &s))
            })
            .transpose()?;
        let from_severity = from_severity
            .map(|s| s.parse().map_err(|_| corrupt("previous severity", &s)))
            .transpose()?;
        out.push((
            snapshot.map(SnapshotId),
            Event {
                fingerprint: fingerprint.clone(),
                kind,
                from,
                to,
                from_severity,
                at,
                reason,
            },
        ));
    }
    Ok(out)
}

/// Writes a reconciliation in its own transaction, tagging events with `snapshot`.
pub fn save(
    store: &mut Store,
    reconciled: &Reconciled,
    snapshot: Option<SnapshotId>,
) -> Result<(), FindingsError> {
    store.transaction(|tx| write(tx, reconciled, snapshot))
}

/// Writes a reconciliation inside the caller's transaction (so notification can queue
/// its digest and mark what it announced in the same commit).
pub fn write(
    tx: &Tx<'_>,
    reconciled: &Reconciled,
    snapshot: Option<SnapshotId>,
) -> Result<(), FindingsError> {
    let conn = tx.conn();
    let mut upsert = conn.prepare_cached(&format!(
        "INSERT INTO finding ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (fingerprint) DO UPDATE SET
           severity = excluded.severity, title = excluded.title,
           resource_type = excluded.resource_type, message = excluded.message,
           remediation = excluded.remediation, status = excluded.status,
           last_seen = excluded.last_seen, resolved_at = excluded.resolved_at,
           changed_by = excluded.changed_by, exemption = excluded.exemption"
    ))?;
    for f in &reconciled.changed {
        upsert.execute(params![
            f.fingerprint,
            f.rule_id.as_str(),
            f.severity,
            f.title,
            f.resource_type,
            f.resource_id,
            f.project_id.as_ref().map(ProjectId::as_str),
            f.message,
            f.remediation,
            f.status,
            f.first_seen,
            f.last_seen,
            f.resolved_at,
            f.last_notified_at,
            json_text(f.changed_by.as_ref())?,
            json_text(f.exemption.as_ref())?,
        ])?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO finding_events
           (fingerprint, snapshot_id, at, kind, from_status, to_status, from_severity, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for e in &reconciled.events {
        insert.execute(params![
            e.fingerprint,
            snapshot.map(|s| s.0),
            e.at,
            e.kind,
            e.from,
            e.to,
            e.from_severity,
            e.reason,
        ])?;
    }
    Ok(())
}

/// Records that these findings were announced at `at` in their current status and
/// severity: the repeat interval counts from `at`, and the next announcement is the
/// difference from what was told now.
pub fn mark_notified(
    tx: &Tx<'_>,
    fingerprints: &[Fingerprint],
    at: DateTime<Utc>,
) -> Result<(), FindingsError> {
    let mut stmt = tx.conn().prepare_cached(
        "UPDATE finding SET last_notified_at = ?2, announced_status = status, \
         announced_severity = severity WHERE fingerprint = ?1",
    )?;
    for fp in fingerprints {
        stmt.execute(params![fp, at.timestamp()])?;
    }
    Ok(())
}

/// Records these findings' current status and severity as told without announcing them
/// (changes the notification policy deliberately leaves unsaid), so they do not come up
/// again; `last_notified_at` is untouched, so reminders keep their rhythm.
pub fn mark_settled(tx: &Tx<'_>, fingerprints: &[Fingerprint]) -> Result<(), FindingsError> {
    let mut stmt = tx.conn().prepare_cached(
        "UPDATE finding SET announced_status = status, announced_severity = severity \
         WHERE fingerprint = ?1",
    )?;
    for fp in fingerprints {
        stmt.execute([fp])?;
    }
    Ok(())
}

/// What was last announced about a finding, and its latest status change.
struct Told {
    status: Option<Status>,
    severity: Option<Severity>,
    /// The kind and reason of the newest event that changed its status.
    latest: Option<(EventKind, String)>,
}

/// What changed for `f` since it was last announced (`told`), for the notifier.
///
/// Comparing with what was told, rather than reading this run's events, is what makes a
/// change recorded by a run that did not announce it (a plain `audit`, a partial snapshot)
/// come out in the next run that does.
fn transition_since_told(f: &Finding, told: &Told) -> Option<crate::notify::Transition> {
    use crate::notify::Transition;
    let latest_reason = || {
        told.latest
            .as_ref()
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    };
    let latest_is_expiry = matches!(told.latest, Some((EventKind::ExemptionExpired, _)));
    let back = || {
        if latest_is_expiry {
            Transition::ExemptionExpired {
                reason: latest_reason(),
            }
        } else {
            Transition::Reopened {
                reason: latest_reason(),
            }
        }
    };
    match (f.status, told.status) {
        (Status::Open, None) if latest_is_expiry => Some(back()),
        (Status::Open, None) => Some(Transition::Opened),
        (Status::Open, Some(Status::Resolved | Status::Exempt)) => Some(back()),
        (Status::Open, Some(Status::Open)) => match told.severity {
            Some(from) if from != f.severity => Some(Transition::SeverityChanged { from }),
            _ => None,
        },
        (Status::Resolved, Some(Status::Open)) => Some(Transition::Resolved),
        (Status::Exempt, Some(Status::Open)) => Some(Transition::Exempted),
        _ => None,
    }
}

/// What each finding was last announced as, and its latest status event.
fn told(conn: &Connection) -> Result<HashMap<Fingerprint, Told>, FindingsError> {
    let mut out: HashMap<Fingerprint, Told> = HashMap::new();
    let mut stmt =
        conn.prepare("SELECT fingerprint, announced_status, announced_severity FROM finding")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Fingerprint>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    for row in rows {
        let (fingerprint, status, severity) = row?;
        let status = match status {
            None => None,
            Some(s) => Some(s.parse::<Status>().map_err(|_| FindingsError::Corrupt {
                fingerprint: fingerprint.clone(),
                field: "announced_status",
                value: s.clone(),
            })?),
        };
        let severity = match severity {
            None => None,
            Some(s) => Some(s.parse::<Severity>().map_err(|_| FindingsError::Corrupt {
                fingerprint: fingerprint.clone(),
                field: "announced_severity",
                value: s.clone(),
            })?),
        };
        out.insert(
            fingerprint,
            Told {
                status,
                severity,
                latest: None,
            },
        );
    }
    // Newest last, so the last status event seen per finding wins.
    let mut stmt = conn.prepare(
        "SELECT fingerprint, kind, reason FROM finding_events \
         WHERE kind <> 'severity-changed' ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Fingerprint>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (fingerprint, kind, reason) = row?;
        let Ok(kind) = kind.parse::<EventKind>() else {
            return Err(FindingsError::Corrupt {
                fingerprint,
                field: "event kind",
                value: kind,
            });
        };
        if let Some(t) = out.get_mut(&fingerprint) {
            t.latest = Some((kind, reason));
        }
    }
    Ok(out)
}

/// The notifier's view of the findings after a run: every finding that is open or
/// exempt, and every resolved one last announced as open, each with what changed since it
/// was last announced and its project's name.
pub fn notify_states(
    db: Reader<'_>,
    all: &[Finding],
) -> Result<Vec<crate::notify::FindingState>, FindingsError> {
    let conn = db.conn();
    use crate::notify::FindingState;
    let told = told(conn)?;
    let never = Told {
        status: None,
        severity: None,
        latest: None,
    };
    let mut names: HashMap<String, Option<String>> = HashMap::new();
    let mut stmt = conn.prepare("SELECT id, name FROM projects")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    for row in rows {
        let (id, name) = row?;
        names.insert(id, name);
    }
    Ok(all
        .iter()
        .filter_map(|f| {
            let t = told.get(&f.fingerprint).unwrap_or(&never);
            if f.status == Status::Resolved && t.status != Some(Status::Open) {
                return None;
            }
            Some(FindingState {
                fingerprint: f.fingerprint.clone(),
                rule_id: f.rule_id.clone(),
                title: f.title.clone(),
                severity: f.severity,
                resource_type: f.resource_type.clone(),
                resource_id: f.resource_id.clone(),
                project_id: f.project_id.clone(),
                project_name: f
                    .project_id
                    .as_ref()
                    .and_then(|p| names.get(p.as_str()).cloned().flatten()),
                message: f.message.clone(),
                remediation: f.remediation.clone(),
                status: f.status,
                first_seen: f.first_seen_at(),
                transition: transition_since_told(f, t),
                last_notified_at: f.last_notified_at.map(ts),
                changed_by: f.changed_by.clone(),
                exemption: f.exemption.clone(),
            })
        })
        .collect())
}
