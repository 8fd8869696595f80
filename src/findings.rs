//! Findings with identity and a lifecycle.
//!
//! A finding is identified by its fingerprint (sha256 of rule id, resource id and project
//! id), so the same problem seen on every run is one finding. Each evaluation is reconciled
//! with the stored findings by [`reconcile`], a pure function: new hits open findings,
//! resolved ones come back as reopened, missing ones are resolved — but only where the
//! snapshot read the finding's project completely — and `[[exemption]]`s turn matching
//! findings exempt until they expire. Every transition is recorded as an event.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{Family, ProjectId, RuleId, Scope, Severity, SnapshotId, SnapshotStatus};
use crate::rules::{Hit, Rule, RuleSet};

/// Why findings could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FindingsError {
    /// SQLite failed.
    #[error("findings store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored value is not one orgwarden writes.
    #[error("findings store: finding {fingerprint} has an unknown {field} `{value}`")]
    Corrupt {
        /// The finding.
        fingerprint: String,
        /// The column.
        field: &'static str,
        /// The value found.
        value: String,
    },
}

/// A finding's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The problem is present.
    Open,
    /// The problem was present and is gone.
    Resolved,
    /// The problem is present and accepted by an exemption.
    Exempt,
}

impl Status {
    /// The lowercase name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Resolved => "resolved",
            Status::Exempt => "exempt",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        match s {
            "open" => Some(Status::Open),
            "resolved" => Some(Status::Resolved),
            "exempt" => Some(Status::Exempt),
            _ => None,
        }
    }
}

/// A transition of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// First seen.
    Opened,
    /// No longer seen in a complete read.
    Resolved,
    /// Seen again after being resolved (or after its exemption was removed).
    Reopened,
    /// An exemption now covers it.
    Exempted,
    /// Its exemption expired; it is open again.
    ExemptionExpired,
    /// Its rule's severity changed.
    SeverityChanged,
}

impl EventKind {
    /// The kebab-case name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "opened",
            EventKind::Resolved => "resolved",
            EventKind::Reopened => "reopened",
            EventKind::Exempted => "exempted",
            EventKind::ExemptionExpired => "exemption-expired",
            EventKind::SeverityChanged => "severity-changed",
        }
    }
}

/// The fingerprint of a finding: sha256 hex of rule id, resource id and project id.
pub fn fingerprint(rule_id: &RuleId, resource_id: &str, project_id: Option<&ProjectId>) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_str().as_bytes());
    h.update([0x1f]);
    h.update(resource_id.as_bytes());
    h.update([0x1f]);
    h.update(project_id.map_or("", ProjectId::as_str).as_bytes());
    hex::encode(h.finalize())
}

/// One finding as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Identity.
    pub fingerprint: String,
    /// The rule.
    pub rule_id: RuleId,
    /// Current severity.
    pub severity: Severity,
    /// The rule's title.
    pub title: String,
    /// The view the resource lives in.
    pub resource_type: String,
    /// The resource.
    pub resource_id: String,
    /// Its project.
    pub project_id: Option<ProjectId>,
    /// What is wrong, as last seen.
    pub message: String,
    /// What to do.
    pub remediation: String,
    /// Current status.
    pub status: Status,
    /// First time seen (Unix seconds).
    pub first_seen: i64,
    /// Last time seen.
    pub last_seen: i64,
    /// When it was last resolved.
    pub resolved_at: Option<i64>,
    /// When it was last announced (written by the notifier).
    pub last_notified_at: Option<i64>,
}

/// One transition, as stored in `finding_events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The finding.
    pub fingerprint: String,
    /// What happened.
    pub kind: EventKind,
    /// Status before (none for a new finding).
    pub from: Option<Status>,
    /// Status after.
    pub to: Status,
    /// The severity before, for `severity-changed`.
    pub from_severity: Option<Severity>,
    /// When (Unix seconds).
    pub at: i64,
    /// Why, for people.
    pub reason: String,
}

/// An accepted finding: `[[exemption]]` of the configuration, validated.
#[derive(Clone, Debug)]
pub struct Exemption {
    /// The rule it applies to.
    pub rule: RuleId,
    /// The resource id or glob as written.
    pub resource: String,
    matcher: globset::GlobMatcher,
    /// Why it is accepted.
    pub reason: String,
    /// Who answers for it.
    pub owner: String,
    /// The last day it holds (UTC).
    pub expires: NaiveDate,
    /// Its position among the `[[exemption]]` tables.
    pub index: usize,
}

impl Exemption {
    /// An exemption for `rule` on resources matching `resource` (exact or glob).
    pub fn new(
        rule: RuleId,
        resource: &str,
        reason: String,
        owner: String,
        expires: NaiveDate,
    ) -> Result<Exemption, String> {
        let glob = globset::GlobBuilder::new(resource)
            .literal_separator(false)
            .build()
            .map_err(|e| e.kind().to_string())?;
        Ok(Exemption {
            rule,
            resource: resource.to_owned(),
            matcher: glob.compile_matcher(),
            reason,
            owner,
            expires,
            index: 0,
        })
    }

    /// The same exemption, remembering its position in the configuration.
    pub fn with_index(mut self, index: usize) -> Exemption {
        self.index = index;
        self
    }

    /// Whether it names this rule and resource.
    pub fn matches(&self, rule: &RuleId, resource_id: &str) -> bool {
        &self.rule == rule && self.matcher.is_match(resource_id)
    }

    /// Whether it still holds on `day` (the expiry day included).
    pub fn active_on(&self, day: NaiveDate) -> bool {
        day <= self.expires
    }
}

/// Which projects a snapshot read completely: only there may findings be resolved.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    /// Whether the project list itself was read.
    pub project_list_read: bool,
    /// Projects with at least one scope that could not be read.
    pub failed_projects: HashSet<ProjectId>,
}

impl Coverage {
    /// A complete read.
    pub fn complete() -> Coverage {
        Coverage {
            project_list_read: true,
            failed_projects: HashSet::new(),
        }
    }

    /// The coverage of a snapshot from its status and failed scopes.
    pub fn from_snapshot(status: SnapshotStatus, failed: &[(Scope, String)]) -> Coverage {
        let project_list_read = status != SnapshotStatus::Failed
            && !failed.iter().any(|(s, _)| s.family == Family::Projects);
        Coverage {
            project_list_read,
            failed_projects: failed
                .iter()
                .filter_map(|(s, _)| s.project_id.clone())
                .collect(),
        }
    }

    /// Whether findings of this project may be resolved.
    pub fn covers(&self, project: Option<&ProjectId>) -> bool {
        self.project_list_read && project.is_none_or(|p| !self.failed_projects.contains(p))
    }
}

/// What a rule contributes to its findings.
#[derive(Clone, Debug)]
pub struct RuleMeta {
    /// Title.
    pub title: String,
    /// Effective severity.
    pub severity: Severity,
    /// The view it reports on.
    pub resource_type: String,
    /// What to do.
    pub remediation: String,
}

impl From<&Rule> for RuleMeta {
    fn from(rule: &Rule) -> RuleMeta {
        RuleMeta {
            title: rule.title.clone(),
            severity: rule.severity,
            resource_type: rule.resource_type.view().to_owned(),
            remediation: rule.remediation.clone(),
        }
    }
}

/// The rules that were evaluated, by id.
pub fn evaluated_rules(rules: &RuleSet) -> HashMap<RuleId, RuleMeta> {
    rules
        .enabled()
        .map(|r| (r.id.clone(), RuleMeta::from(r)))
        .collect()
}

/// The outcome of reconciling one evaluation with the stored findings.
#[derive(Clone, Debug, Default)]
pub struct Reconciled {
    /// Every finding that was seen or changed, in its new state.
    pub changed: Vec<Finding>,
    /// The transitions.
    pub events: Vec<Event>,
}

/// Reconciles an evaluation at `now` with the `prior` findings.
///
/// `rules` are the rules that were evaluated: findings of other rules (disabled or removed)
/// are resolved. A finding that was not hit is resolved only when `coverage` says its
/// project was read completely; otherwise it keeps its status.
pub fn reconcile(
    prior: &[Finding],
    hits: &[Hit],
    rules: &HashMap<RuleId, RuleMeta>,
    exemptions: &[Exemption],
    coverage: &Coverage,
    now: DateTime<Utc>,
) -> Reconciled {
    let at = now.timestamp();
    let today = now.date_naive();
    let by_fp: HashMap<&str, &Finding> =
        prior.iter().map(|f| (f.fingerprint.as_str(), f)).collect();
    let mut out = Reconciled::default();
    let mut seen: HashSet<String> = HashSet::new();
    let event = |out: &mut Reconciled, f: &Finding, kind, from, reason: String| {
        out.events.push(Event {
            fingerprint: f.fingerprint.clone(),
            kind,
            from,
            to: f.status,
            from_severity: None,
            at,
            reason,
        });
    };
    for hit in hits {
        let Some(meta) = rules.get(&hit.rule_id) else {
            continue;
        };
        let fp = fingerprint(&hit.rule_id, &hit.resource_id, hit.project_id.as_ref());
        if !seen.insert(fp.clone()) {
            continue;
        }
        let matching: Vec<&Exemption> = exemptions
            .iter()
            .filter(|e| e.matches(&hit.rule_id, &hit.resource_id))
            .collect();
        let active = matching.iter().find(|e| e.active_on(today));
        let expired = matching
            .iter()
            .filter(|e| !e.active_on(today))
            .max_by_key(|e| e.expires);
        let target = if active.is_some() {
            Status::Exempt
        } else {
            Status::Open
        };
        let mut f = Finding {
            fingerprint: fp.clone(),
            rule_id: hit.rule_id.clone(),
            severity: meta.severity,
            title: meta.title.clone(),
            resource_type: meta.resource_type.clone(),
            resource_id: hit.resource_id.clone(),
            project_id: hit.project_id.clone(),
            message: hit.message.clone(),
            remediation: meta.remediation.clone(),
            status: target,
            first_seen: at,
            last_seen: at,
            resolved_at: None,
            last_notified_at: None,
        };
        let exempt_reason = |e: &Exemption| {
            format!(
                "exempt until {} (owner {}): {}",
                e.expires, e.owner, e.reason
            )
        };
        match by_fp.get(fp.as_str()) {
            None => {
                let (kind, reason) = match active {
                    Some(e) => (EventKind::Exempted, exempt_reason(e)),
                    None => (EventKind::Opened, hit.message.clone()),
                };
                event(&mut out, &f, kind, None, reason);
            }
            Some(old) => {
                f.first_seen = old.first_seen;
                f.resolved_at = old.resolved_at;
                f.last_notified_at = old.last_notified_at;
                match (old.status, target) {
                    (Status::Resolved, Status::Open) => {
                        event(
                            &mut out,
                            &f,
                            EventKind::Reopened,
                            Some(old.status),
                            hit.message.clone(),
                        );
                    }
                    (Status::Open | Status::Resolved, Status::Exempt) => {
                        let e = active.expect("target exempt means an active exemption");
                        event(
                            &mut out,
                            &f,
                            EventKind::Exempted,
                            Some(old.status),
                            exempt_reason(e),
                        );
                    }
                    (Status::Exempt, Status::Open) => match expired {
                        Some(e) => event(
                            &mut out,
                            &f,
                            EventKind::ExemptionExpired,
                            Some(old.status),
                            format!("exemption expired on {} (owner {})", e.expires, e.owner),
                        ),
                        None => event(
                            &mut out,
                            &f,
                            EventKind::Reopened,
                            Some(old.status),
                            "no exemption covers it any more".to_owned(),
                        ),
                    },
                    _ => {}
                }
                if old.severity != f.severity && old.status != Status::Resolved {
                    event(
                        &mut out,
                        &f,
                        EventKind::SeverityChanged,
                        Some(old.status),
                        format!("severity {} → {}", old.severity, f.severity),
                    );
                    if let Some(last) = out.events.last_mut() {
                        last.from_severity = Some(old.severity);
                    }
                }
            }
        }
        out.changed.push(f);
    }
    for old in prior {
        if seen.contains(&old.fingerprint) || old.status == Status::Resolved {
            continue;
        }
        let reason = match rules.get(&old.rule_id) {
            None => format!(
                "rule `{}` is no longer evaluated (disabled or removed)",
                old.rule_id
            ),
            Some(_) if coverage.covers(old.project_id.as_ref()) => {
                "no longer found in a complete read".to_owned()
            }
            // Not read completely: the finding keeps its status.
            Some(_) => continue,
        };
        let mut f = old.clone();
        f.status = Status::Resolved;
        f.resolved_at = Some(at);
        event(&mut out, &f, EventKind::Resolved, Some(old.status), reason);
        out.changed.push(f);
    }
    out
}

fn ts(t: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(t, 0).single().unwrap_or_default()
}

impl Finding {
    /// First seen, as a time.
    pub fn first_seen_at(&self) -> DateTime<Utc> {
        ts(self.first_seen)
    }

    /// Last seen, as a time.
    pub fn last_seen_at(&self) -> DateTime<Utc> {
        ts(self.last_seen)
    }
}

const COLUMNS: &str = "fingerprint, rule_id, severity, title, resource_type, resource_id, project_id, \
     message, remediation, status, first_seen, last_seen, resolved_at, last_notified_at";

fn row_to_finding(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Finding, FindingsError>> {
    let fingerprint: String = row.get(0)?;
    let severity: String = row.get(2)?;
    let status: String = row.get(9)?;
    let Ok(severity) = severity.parse::<Severity>() else {
        return Ok(Err(FindingsError::Corrupt {
            fingerprint,
            field: "severity",
            value: severity,
        }));
    };
    let Some(status) = Status::parse(&status) else {
        return Ok(Err(FindingsError::Corrupt {
            fingerprint,
            field: "status",
            value: status,
        }));
    };
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
        first_seen: row.get(10)?,
        last_seen: row.get(11)?,
        resolved_at: row.get(12)?,
        last_notified_at: row.get(13)?,
    }))
}

/// Every stored finding, ordered by fingerprint.
pub fn load(conn: &Connection) -> Result<Vec<Finding>, FindingsError> {
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
pub fn get(conn: &Connection, fingerprint: &str) -> Result<Option<Finding>, FindingsError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM finding WHERE fingerprint = ?1"),
        [fingerprint],
        row_to_finding,
    )
    .optional()?
    .transpose()
}

/// Every event of a finding, oldest first, with the snapshot it happened in.
pub fn events(
    conn: &Connection,
    fingerprint: &str,
) -> Result<Vec<(Option<SnapshotId>, Event)>, FindingsError> {
    let mut stmt = conn.prepare(
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
    let kinds = [
        EventKind::Opened,
        EventKind::Resolved,
        EventKind::Reopened,
        EventKind::Exempted,
        EventKind::ExemptionExpired,
        EventKind::SeverityChanged,
    ];
    let mut out = Vec::new();
    for row in rows {
        let (snapshot, kind, from, to, at, reason, from_severity) = row?;
        let corrupt = |field, value: &str| FindingsError::Corrupt {
            fingerprint: fingerprint.to_owned(),
            field,
            value: value.to_owned(),
        };
        let kind = kinds
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| corrupt("event kind", &kind))?;
        let to = Status::parse(&to).ok_or_else(|| corrupt("status", &to))?;
        out.push((
            snapshot.map(SnapshotId),
            Event {
                fingerprint: fingerprint.to_owned(),
                kind,
                from: from.as_deref().and_then(Status::parse),
                to,
                from_severity: from_severity.and_then(|s| s.parse().ok()),
                at,
                reason,
            },
        ));
    }
    Ok(out)
}

/// Writes a reconciliation in its own transaction, tagging events with `snapshot`.
pub fn save(
    conn: &Connection,
    reconciled: &Reconciled,
    snapshot: Option<SnapshotId>,
) -> Result<(), FindingsError> {
    // `unchecked`: callers hold a shared `&Connection` (the store's); no other transaction
    // is open on it while findings are saved.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    write(&tx, reconciled, snapshot)?;
    tx.commit()?;
    Ok(())
}

/// Writes a reconciliation inside the caller's transaction (so notification can queue
/// its digest and mark what it announced in the same commit).
pub fn write(
    conn: &Connection,
    reconciled: &Reconciled,
    snapshot: Option<SnapshotId>,
) -> Result<(), FindingsError> {
    let mut upsert = conn.prepare_cached(&format!(
        "INSERT INTO finding ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (fingerprint) DO UPDATE SET
           severity = excluded.severity, title = excluded.title,
           resource_type = excluded.resource_type, message = excluded.message,
           remediation = excluded.remediation, status = excluded.status,
           last_seen = excluded.last_seen, resolved_at = excluded.resolved_at"
    ))?;
    for f in &reconciled.changed {
        upsert.execute(params![
            f.fingerprint,
            f.rule_id.as_str(),
            f.severity.as_str(),
            f.title,
            f.resource_type,
            f.resource_id,
            f.project_id.as_ref().map(ProjectId::as_str),
            f.message,
            f.remediation,
            f.status.as_str(),
            f.first_seen,
            f.last_seen,
            f.resolved_at,
            f.last_notified_at,
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
            e.kind.as_str(),
            e.from.map(Status::as_str),
            e.to.as_str(),
            e.from_severity.map(Severity::as_str),
            e.reason,
        ])?;
    }
    Ok(())
}

/// Records that these findings were announced at `at` in their current status and
/// severity: the repeat interval counts from `at`, and the next announcement is the
/// difference from what was told now.
pub fn mark_notified(
    conn: &Connection,
    fingerprints: &[String],
    at: DateTime<Utc>,
) -> Result<(), FindingsError> {
    let mut stmt = conn.prepare_cached(
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
pub fn mark_settled(conn: &Connection, fingerprints: &[String]) -> Result<(), FindingsError> {
    let mut stmt = conn.prepare_cached(
        "UPDATE finding SET announced_status = status, announced_severity = severity \
         WHERE fingerprint = ?1",
    )?;
    for fp in fingerprints {
        stmt.execute([fp])?;
    }
    Ok(())
}

/// The findings a report shows after a run: every open and exempt finding, and those this
/// run resolved, ordered by severity (highest first), rule and resource.
pub fn report_set(all: &[Finding], reconciled: &Reconciled) -> Vec<Finding> {
    let resolved_now: HashSet<&str> = reconciled
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Resolved)
        .map(|e| e.fingerprint.as_str())
        .collect();
    let mut out: Vec<Finding> = all
        .iter()
        .filter(|f| f.status != Status::Resolved || resolved_now.contains(f.fingerprint.as_str()))
        .cloned()
        .collect();
    sort(&mut out);
    out
}

/// Orders findings by severity (highest first), rule, project and resource.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule_id.cmp(&b.rule_id))
            .then_with(|| a.project_id.cmp(&b.project_id))
            .then_with(|| a.resource_id.cmp(&b.resource_id))
    });
}

/// Counts of findings per status, for summaries.
pub fn counts(findings: &[Finding]) -> BTreeMap<Status, usize> {
    let mut out = BTreeMap::new();
    for f in findings {
        *out.entry(f.status).or_insert(0) += 1;
    }
    out
}

/// Why evaluating a snapshot and recording its findings failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A rule failed.
    #[error(transparent)]
    Rule(#[from] crate::rules::RuleError),
    /// Findings could not be read or written.
    #[error(transparent)]
    Findings(#[from] FindingsError),
    /// Notification failed (a digest could not be rendered or queued).
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
}

/// What evaluating one snapshot produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The snapshot evaluated.
    pub snapshot: crate::store::SnapshotInfo,
    /// The transitions recorded.
    pub reconciled: Reconciled,
    /// The findings to report: open and exempt ones, and those this run resolved.
    pub findings: Vec<Finding>,
}

/// Evaluates the enabled rules over the store's views at `now`, reconciles the hits with
/// the stored findings (resolving only in projects `snapshot` read completely), records
/// the transitions tagged with the snapshot, and returns what to report.
pub fn evaluate_snapshot(
    store: &crate::store::Store,
    rules: &RuleSet,
    exemptions: &[Exemption],
    snapshot: &crate::store::SnapshotInfo,
    now: DateTime<Utc>,
) -> Result<RunOutcome, AuditError> {
    let reconciled = reconcile_snapshot(store, rules, exemptions, snapshot, now)?;
    save(store.conn(), &reconciled, Some(snapshot.id))?;
    let all = load(store.conn())?;
    let findings = report_set(&all, &reconciled);
    Ok(RunOutcome {
        snapshot: snapshot.clone(),
        reconciled,
        findings,
    })
}

/// Evaluates and reconciles without writing: for callers that [`write`] the result in
/// their own transaction (with notification).
pub fn reconcile_snapshot(
    store: &crate::store::Store,
    rules: &RuleSet,
    exemptions: &[Exemption],
    snapshot: &crate::store::SnapshotInfo,
    now: DateTime<Utc>,
) -> Result<Reconciled, AuditError> {
    let hits = crate::rules::evaluate(store.conn(), rules, now.timestamp())?;
    let failed = store.failed_scopes(snapshot.id)?;
    let coverage = Coverage::from_snapshot(snapshot.status, &failed);
    let prior = load(store.conn())?;
    let reconciled = reconcile(
        &prior,
        &hits,
        &evaluated_rules(rules),
        exemptions,
        &coverage,
        now,
    );
    Ok(reconciled)
}

/// What a run announced, when it notifies.
#[derive(Debug)]
pub struct Notified {
    /// The digest and the fingerprints it announced (nothing stored on a dry run).
    pub announcement: crate::notify::Announcement,
    /// Whether this was a dry run (decided and rendered, then rolled back).
    pub dry_run: bool,
}

/// How a run announces its findings.
#[derive(Debug)]
pub struct Announce<'a> {
    /// The configured notifier.
    pub notifier: &'a crate::notify::Notifier,
    /// The organization's name for the digest.
    pub organization: &'a str,
    /// Decide and render, but queue and mark nothing.
    pub dry_run: bool,
}

/// As [`evaluate_snapshot`], and announces what changed through the notifier in the same
/// transaction: the findings, the queued digest and the `last_notified_at` marks commit
/// together. On a dry run everything is decided and returned, then rolled back: no
/// finding, queued message or mark is stored. Delivery is the caller's next step
/// (`Notifier::deliver_pending`), outside the transaction.
pub fn evaluate_and_announce(
    store: &crate::store::Store,
    rules: &RuleSet,
    exemptions: &[Exemption],
    snapshot: &crate::store::SnapshotInfo,
    announce: &Announce<'_>,
    now: DateTime<Utc>,
) -> Result<(RunOutcome, Notified), AuditError> {
    let Announce {
        notifier,
        organization,
        dry_run,
    } = *announce;
    let reconciled = reconcile_snapshot(store, rules, exemptions, snapshot, now)?;
    // `unchecked`: the store's connection is shared, and no other transaction is open on it.
    let tx = rusqlite::Transaction::new_unchecked(
        store.conn(),
        rusqlite::TransactionBehavior::Immediate,
    )
    .map_err(FindingsError::from)?;
    write(&tx, &reconciled, Some(snapshot.id))?;
    let all = load(&tx)?;
    let states = notify_states(&tx, &all)?;
    let ctx = crate::notify::RunContext {
        organization: organization.to_owned(),
        snapshot_id: Some(snapshot.id),
        partial: snapshot.status != SnapshotStatus::Complete,
    };
    let announcement = notifier.announce(&tx, &states, &ctx, now)?;
    mark_settled(&tx, &announcement.settled)?;
    mark_notified(&tx, &announcement.announced, now)?;
    if dry_run {
        // A dry run leaves no trace, in the store or the log: the next real run announces
        // exactly what this one showed.
        tx.rollback().map_err(FindingsError::from)?;
    } else {
        tx.commit().map_err(FindingsError::from)?;
        announcement.log();
    }
    let findings = report_set(&all, &reconciled);
    Ok((
        RunOutcome {
            snapshot: snapshot.clone(),
            reconciled,
            findings,
        },
        Notified {
            announcement,
            dry_run,
        },
    ))
}

/// Evaluates `snapshot` and records what changed; with `announce`, also announces it in the
/// same transaction. The one step `audit`, `demo` and the daemon share after a snapshot.
pub fn evaluate_run(
    store: &crate::store::Store,
    rules: &RuleSet,
    exemptions: &[Exemption],
    snapshot: &crate::store::SnapshotInfo,
    announce: Option<&Announce<'_>>,
    now: DateTime<Utc>,
) -> Result<(RunOutcome, Option<Notified>), AuditError> {
    match announce {
        None => evaluate_snapshot(store, rules, exemptions, snapshot, now).map(|o| (o, None)),
        Some(announce) => evaluate_and_announce(store, rules, exemptions, snapshot, announce, now)
            .map(|(o, n)| (o, Some(n))),
    }
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
fn told(conn: &Connection) -> Result<HashMap<String, Told>, FindingsError> {
    let mut out: HashMap<String, Told> = HashMap::new();
    let mut stmt =
        conn.prepare("SELECT fingerprint, announced_status, announced_severity FROM finding")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    for row in rows {
        let (fingerprint, status, severity) = row?;
        let status = match status {
            None => None,
            Some(s) => Some(Status::parse(&s).ok_or_else(|| FindingsError::Corrupt {
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
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (fingerprint, kind, reason) = row?;
        let kind = match kind.as_str() {
            "opened" => EventKind::Opened,
            "resolved" => EventKind::Resolved,
            "reopened" => EventKind::Reopened,
            "exempted" => EventKind::Exempted,
            "exemption-expired" => EventKind::ExemptionExpired,
            _ => {
                return Err(FindingsError::Corrupt {
                    fingerprint,
                    field: "event kind",
                    value: kind,
                });
            }
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
    conn: &Connection,
    all: &[Finding],
) -> Result<Vec<crate::notify::FindingState>, FindingsError> {
    use crate::notify::{FindingState, FindingStatus};
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
                status: match f.status {
                    Status::Open => FindingStatus::Open,
                    Status::Resolved => FindingStatus::Resolved,
                    Status::Exempt => FindingStatus::Exempt,
                },
                first_seen: f.first_seen_at(),
                transition: transition_since_told(f, t),
                last_notified_at: f.last_notified_at.map(ts),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(sev: Severity) -> RuleMeta {
        RuleMeta {
            title: "Stale key".into(),
            severity: sev,
            resource_type: "project_api_keys".into(),
            remediation: "Revoke it.".into(),
        }
    }

    fn rules(sev: Severity) -> HashMap<RuleId, RuleMeta> {
        HashMap::from([(RuleId::from("api-key-stale"), meta(sev))])
    }

    fn hit(key: &str, project: &str) -> Hit {
        Hit {
            rule_id: RuleId::from("api-key-stale"),
            resource_id: key.into(),
            project_id: Some(ProjectId::from(project)),
            message: format!("key {key} is stale"),
        }
    }

    fn day(n: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, n, 12, 0, 0).unwrap()
    }

    /// Applies a reconciliation to a findings list the way `save` does in SQL.
    fn apply(state: &mut Vec<Finding>, r: &Reconciled) {
        for f in &r.changed {
            match state.iter_mut().find(|s| s.fingerprint == f.fingerprint) {
                Some(s) => *s = f.clone(),
                None => state.push(f.clone()),
            }
        }
    }

    fn kinds(r: &Reconciled) -> Vec<EventKind> {
        r.events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn open_then_resolved_then_reopened() {
        let mut state = Vec::new();
        let r = reconcile(
            &state,
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(1),
        );
        assert_eq!(kinds(&r), [EventKind::Opened]);
        apply(&mut state, &r);
        assert_eq!(state[0].status, Status::Open);

        let r = reconcile(
            &state,
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(2),
        );
        assert!(r.events.is_empty(), "still open: no transition");
        apply(&mut state, &r);
        assert_eq!(state[0].last_seen, day(2).timestamp());
        assert_eq!(state[0].first_seen, day(1).timestamp());

        let r = reconcile(
            &state,
            &[],
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(3),
        );
        assert_eq!(kinds(&r), [EventKind::Resolved]);
        apply(&mut state, &r);
        assert_eq!(state[0].status, Status::Resolved);
        assert_eq!(state[0].resolved_at, Some(day(3).timestamp()));

        let r = reconcile(
            &state,
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(4),
        );
        assert_eq!(kinds(&r), [EventKind::Reopened]);
        apply(&mut state, &r);
        assert_eq!(state[0].status, Status::Open);
        assert_eq!(state[0].first_seen, day(1).timestamp());
    }

    #[test]
    fn partial_read_never_resolves_a_finding() {
        let mut state = Vec::new();
        let r = reconcile(
            &state,
            &[hit("k1", "p1"), hit("k2", "p2")],
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(1),
        );
        apply(&mut state, &r);
        let failed = vec![(
            Scope {
                family: Family::ProjectApiKeys,
                project_id: Some(ProjectId::from("p1")),
                parent_id: None,
            },
            "500".to_owned(),
        )];
        let coverage = Coverage::from_snapshot(SnapshotStatus::Partial, &failed);
        let r = reconcile(
            &state,
            &[],
            &rules(Severity::Medium),
            &[],
            &coverage,
            day(2),
        );
        let resolved: Vec<&str> = r.changed.iter().map(|f| f.resource_id.as_str()).collect();
        assert_eq!(
            resolved,
            ["k2"],
            "only the completely read project resolves"
        );

        let failed_list = vec![(
            Scope {
                family: Family::Projects,
                project_id: None,
                parent_id: None,
            },
            "503".to_owned(),
        )];
        let coverage = Coverage::from_snapshot(SnapshotStatus::Failed, &failed_list);
        let r = reconcile(
            &state,
            &[],
            &rules(Severity::Medium),
            &[],
            &coverage,
            day(2),
        );
        assert!(r.changed.is_empty() && r.events.is_empty());
    }

    fn exemption(pattern: &str, expires: &str) -> Exemption {
        Exemption::new(
            RuleId::from("api-key-stale"),
            pattern,
            "legacy integration".into(),
            "sec@acme.com".into(),
            NaiveDate::parse_from_str(expires, "%Y-%m-%d").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn exemption_matches_exact_and_glob_for_its_rule_only() {
        let e = exemption("key_legacy*", "2026-03-10");
        assert!(e.matches(&RuleId::from("api-key-stale"), "key_legacy_1"));
        assert!(!e.matches(&RuleId::from("api-key-stale"), "key_prod"));
        assert!(!e.matches(&RuleId::from("api-key-old"), "key_legacy_1"));
        let exact = exemption("key_prod", "2026-03-10");
        assert!(exact.matches(&RuleId::from("api-key-stale"), "key_prod"));
        assert!(!exact.matches(&RuleId::from("api-key-stale"), "key_prod2"));
        assert!(
            e.active_on(NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()),
            "the expiry day holds"
        );
        assert!(!e.active_on(NaiveDate::from_ymd_opt(2026, 3, 11).unwrap()));
    }

    #[test]
    fn exempt_then_exemption_expired_reopens_with_reason() {
        let ex = [exemption("k*", "2026-03-02")];
        let mut state = Vec::new();
        let r = reconcile(
            &state,
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &ex,
            &Coverage::complete(),
            day(1),
        );
        assert_eq!(kinds(&r), [EventKind::Exempted]);
        assert!(r.events[0].reason.contains("sec@acme.com"));
        apply(&mut state, &r);
        assert_eq!(state[0].status, Status::Exempt);

        let r = reconcile(
            &state,
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &ex,
            &Coverage::complete(),
            day(2),
        );
        assert!(r.events.is_empty(), "expiry day still holds");

        let r = reconcile(
            &state,
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &ex,
            &Coverage::complete(),
            day(3),
        );
        assert_eq!(kinds(&r), [EventKind::ExemptionExpired]);
        assert_eq!(
            r.events[0].reason,
            "exemption expired on 2026-03-02 (owner sec@acme.com)"
        );
        apply(&mut state, &r);
        assert_eq!(state[0].status, Status::Open);
    }

    #[test]
    fn open_finding_becomes_exempt_when_an_exemption_is_added() {
        let mut state = Vec::new();
        let first = reconcile(
            &state,
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(1),
        );
        apply(&mut state, &first);
        let ex = [exemption("k1", "2026-12-31")];
        let r = reconcile(
            &state,
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &ex,
            &Coverage::complete(),
            day(2),
        );
        assert_eq!(kinds(&r), [EventKind::Exempted]);
        assert_eq!(r.events[0].from, Some(Status::Open));
    }

    #[test]
    fn severity_change_is_an_event() {
        let mut state = Vec::new();
        let first = reconcile(
            &state,
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(1),
        );
        apply(&mut state, &first);
        let r = reconcile(
            &state,
            &[hit("k1", "p1")],
            &rules(Severity::High),
            &[],
            &Coverage::complete(),
            day(2),
        );
        assert_eq!(kinds(&r), [EventKind::SeverityChanged]);
        assert_eq!(r.events[0].reason, "severity medium → high");
        assert_eq!(r.events[0].from_severity, Some(Severity::Medium));
        assert_eq!(r.changed[0].severity, Severity::High);
    }

    #[test]
    fn findings_of_a_disabled_rule_are_resolved() {
        let mut state = Vec::new();
        let first = reconcile(
            &state,
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(1),
        );
        apply(&mut state, &first);
        let r = reconcile(
            &state,
            &[],
            &HashMap::new(),
            &[],
            &Coverage::complete(),
            day(2),
        );
        assert_eq!(kinds(&r), [EventKind::Resolved]);
        assert!(r.events[0].reason.contains("no longer evaluated"));
    }

    #[test]
    fn fingerprint_depends_on_rule_resource_and_project() {
        let a = fingerprint(&RuleId::from("r"), "x", Some(&ProjectId::from("p")));
        assert_eq!(a.len(), 64);
        assert_ne!(
            a,
            fingerprint(&RuleId::from("r"), "x", Some(&ProjectId::from("q")))
        );
        assert_ne!(
            a,
            fingerprint(&RuleId::from("r"), "y", Some(&ProjectId::from("p")))
        );
        assert_ne!(
            a,
            fingerprint(&RuleId::from("s"), "x", Some(&ProjectId::from("p")))
        );
        assert_eq!(
            a,
            fingerprint(&RuleId::from("r"), "x", Some(&ProjectId::from("p")))
        );
    }

    #[test]
    fn save_and_load_round_trip_with_events() {
        let store = crate::store::Store::open_in_memory().unwrap();
        let conn = store.conn();
        let r = reconcile(
            &[],
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(1),
        );
        save(conn, &r, Some(SnapshotId(7))).unwrap();
        let all = load(conn).unwrap();
        assert_eq!(all, r.changed);
        let r2 = reconcile(
            &all,
            &[],
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(2),
        );
        save(conn, &r2, Some(SnapshotId(8))).unwrap();
        let ev = events(conn, &all[0].fingerprint).unwrap();
        let got: Vec<(Option<SnapshotId>, EventKind)> =
            ev.iter().map(|(s, e)| (*s, e.kind)).collect();
        assert_eq!(
            got,
            [
                (Some(SnapshotId(7)), EventKind::Opened),
                (Some(SnapshotId(8)), EventKind::Resolved)
            ]
        );
        let view: String = conn
            .query_row("SELECT status FROM findings", [], |r| r.get(0))
            .unwrap();
        assert_eq!(view, "resolved");
        mark_notified(conn, &[all[0].fingerprint.clone()], day(3)).unwrap();
        assert_eq!(
            load(conn).unwrap()[0].last_notified_at,
            Some(day(3).timestamp())
        );
        let r3 = reconcile(
            &load(conn).unwrap(),
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(4),
        );
        save(conn, &r3, None).unwrap();
        assert_eq!(
            load(conn).unwrap()[0].last_notified_at,
            Some(day(3).timestamp()),
            "reconciling keeps the notifier's mark"
        );
    }

    /// Whole runs through [`evaluate_run`] on a real store, with or without announcing:
    /// what one run records must be announced by the next run that notifies.
    mod announcing {
        use super::*;
        use crate::model::{CrawlStats, ScopeError, ScopeOutcome};
        use crate::notify::{Digest, Notifier, Reason};
        use crate::store::{SnapshotInfo, Store};

        const SUPPORT: &str = "proj_support";
        const RETENTION_RULE: &str = "project-retention-not-zdr";

        struct Harness {
            store: Store,
            org: crate::sim::Org,
            rules: RuleSet,
            exemptions: Vec<Exemption>,
            notifier: Notifier,
            start: DateTime<Utc>,
            runs: i64,
        }

        fn harness(config_text: &str) -> Harness {
            let start = Utc::now();
            let config =
                crate::config::Config::parse(config_text, std::path::Path::new("orgwarden.toml"))
                    .unwrap();
            let loaded = crate::rules::load(&config, start.date_naive());
            Harness {
                store: Store::open_in_memory().unwrap(),
                org: crate::sim::Org::demo(start.timestamp()),
                rules: loaded.rules,
                exemptions: loaded.exemptions,
                notifier: Notifier::from_config_with_env(&config, |_| None).unwrap(),
                start,
                runs: 0,
            }
        }

        impl Harness {
            /// Snapshots the simulated organization (with the API keys of `failing` unread,
            /// making it partial), evaluates it, and announces when `notify`.
            fn run(&mut self, failing: Option<&str>, notify: bool) -> Option<Digest> {
                self.runs += 1;
                let now = self.start + chrono::TimeDelta::minutes(self.runs);
                let mut writer = self
                    .store
                    .begin_snapshot(&self.org.organization, now)
                    .unwrap();
                for mut scope in self.org.scope_results() {
                    let unread = scope.scope.family == Family::ProjectApiKeys
                        && scope.scope.project_id.as_ref().map(ProjectId::as_str) == failing;
                    if unread {
                        scope.outcome = ScopeOutcome::Failed(ScopeError {
                            status: Some(500),
                            message: "server error".into(),
                        });
                    }
                    writer.apply(scope).unwrap();
                }
                let snapshot: SnapshotInfo = writer
                    .finish(&CrawlStats::default(), now, SnapshotStatus::Complete)
                    .unwrap();
                let expected = if failing.is_some() {
                    SnapshotStatus::Partial
                } else {
                    SnapshotStatus::Complete
                };
                assert_eq!(snapshot.status, expected);
                let announce = Announce {
                    notifier: &self.notifier,
                    organization: "acme",
                    dry_run: false,
                };
                let (_, notified) = evaluate_run(
                    &self.store,
                    &self.rules,
                    &self.exemptions,
                    &snapshot,
                    notify.then_some(&announce),
                    now,
                )
                .unwrap();
                notified.and_then(|n| n.announcement.digest)
            }

            fn set_support_retention(&mut self, value: &str) -> String {
                let project = self.org.project_mut(&ProjectId::from(SUPPORT)).unwrap();
                std::mem::replace(&mut project.data_retention, value.to_owned())
            }

            fn retention_finding(&self) -> Finding {
                load(self.store.conn())
                    .unwrap()
                    .into_iter()
                    .find(|f| {
                        f.rule_id.as_str() == RETENTION_RULE
                            && f.project_id.as_ref().map(ProjectId::as_str) == Some(SUPPORT)
                    })
                    .expect("the support project keeps data in the demo organization")
            }
        }

        fn announced_as(digest: Option<&Digest>, fingerprint: &str) -> Option<Reason> {
            digest?
                .announced
                .iter()
                .find(|a| a.finding.fingerprint == fingerprint)
                .map(|a| a.reason)
        }

        #[test]
        fn resolution_seen_in_a_partial_snapshot_is_announced_by_the_next_complete_one() {
            let mut h = harness("");
            let first = h.run(None, true);
            let fp = h.retention_finding().fingerprint;
            assert_eq!(announced_as(first.as_ref(), &fp), Some(Reason::New));

            h.set_support_retention("zero_data_retention");
            let partial = h.run(Some("proj_payments"), true);
            assert_eq!(
                h.retention_finding().status,
                Status::Resolved,
                "its own project was read completely"
            );
            assert_eq!(
                announced_as(partial.as_ref(), &fp),
                None,
                "a partial snapshot announces no resolution"
            );

            let complete = h.run(None, true).expect("the withheld resolution");
            assert_eq!(announced_as(Some(&complete), &fp), Some(Reason::Resolved));
            assert_eq!(complete.count(Reason::Resolved), 1);
            assert_eq!(
                announced_as(h.run(None, true).as_ref(), &fp),
                None,
                "announced once"
            );
        }

        #[test]
        fn changes_recorded_by_a_plain_audit_are_announced_by_the_next_notifying_run() {
            let mut h = harness("");
            assert!(
                h.run(None, false).is_none(),
                "a plain audit announces nothing"
            );
            let digest = h.run(None, true).expect("the findings are new to everyone");
            let open = load(h.store.conn())
                .unwrap()
                .into_iter()
                .filter(|f| f.status == Status::Open)
                .count();
            assert!(open > 0);
            assert_eq!(digest.count(Reason::New), open);
            assert_eq!(digest.count(Reason::Reminder), 0, "new, not reminded");

            let fp = h.retention_finding().fingerprint;
            h.set_support_retention("zero_data_retention");
            assert!(h.run(None, false).is_none());
            let digest = h.run(None, true).expect("the resolution");
            assert_eq!(announced_as(Some(&digest), &fp), Some(Reason::Resolved));
        }

        #[test]
        fn severity_raised_during_a_plain_audit_is_announced_as_escalated() {
            let mut h = harness("");
            h.run(None, true).expect("first digest");
            let fp = h.retention_finding().fingerprint;
            let config = crate::config::Config::parse(
                "[rules.severity]\n\"project-retention-not-zdr\" = \"critical\"\n",
                std::path::Path::new("orgwarden.toml"),
            )
            .unwrap();
            h.rules = crate::rules::load(&config, h.start.date_naive()).rules;
            assert!(h.run(None, false).is_none());
            let digest = h.run(None, true).expect("the escalation");
            assert_eq!(announced_as(Some(&digest), &fp), Some(Reason::Escalated));
            assert!(
                digest
                    .with_reason(Reason::Escalated)
                    .all(|a| a.finding.rule_id.as_str() == RETENTION_RULE),
                "only the raised rule's findings escalate"
            );
        }

        #[test]
        fn without_send_resolved_a_resolution_is_settled_so_the_reopen_is_announced() {
            let mut h = harness("[notify]\nsend_resolved = false\n");
            h.run(None, true).expect("first digest");
            let fp = h.retention_finding().fingerprint;
            let kept = h.set_support_retention("zero_data_retention");
            let digest = h.run(None, true);
            assert_eq!(announced_as(digest.as_ref(), &fp), None);
            h.set_support_retention(&kept);
            let digest = h.run(None, true).expect("the reopen");
            assert_eq!(announced_as(Some(&digest), &fp), Some(Reason::Reopened));
        }
    }
}
