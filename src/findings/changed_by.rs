//! `changed_by`: a finding opened, reopened or resolved by a change carries the audit-log
//! event that explains the change (who, when, from where), found by the same match as
//! `diff` and `history` (`audit_log::explain`).

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;

use crate::audit_log::explain::{Attribution, attribute};
use crate::model::{Family, ProjectId, SnapshotId, SnapshotStatus};

use super::{Coverage, EventKind, Finding, FindingsError, Reconciled};

/// Sets `changed_by` on every finding of `reconciled` that opened, reopened or resolved at
/// the evaluation of `snapshot`, from the events no later than `until` (when it finished)
/// and after the start of the last earlier evaluated snapshot that could see the finding
/// (see [`Earlier`]). Without one nothing changed: a finding of the first evaluation was
/// there before orgwarden looked. A finding whose transition no event explains loses the
/// `changed_by` of an earlier transition, and so does one whose object did not change
/// (a rule's new threshold, an exemption's end, a key's age).
pub fn attribute_transitions(
    conn: &Connection,
    reconciled: &mut Reconciled,
    snapshot: SnapshotId,
    until: i64,
) -> Result<(), FindingsError> {
    let transitioned: HashSet<&str> = reconciled
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Opened | EventKind::Reopened | EventKind::Resolved
            )
        })
        .map(|e| e.fingerprint.as_str())
        .collect();
    let mut earlier = Earlier::load(conn, snapshot)?;
    for finding in &mut reconciled.changed {
        if !transitioned.contains(finding.fingerprint.as_str()) {
            continue;
        }
        finding.changed_by = None;
        let Some(family) = Family::from_view(&finding.resource_type) else {
            continue;
        };
        let Some((seen_at, after)) = earlier.last_seeing(conn, finding)? else {
            continue;
        };
        if !crate::store::object_changed_between(
            conn,
            family,
            finding.project_id.as_ref().map(ProjectId::as_str),
            &finding.resource_id,
            seen_at,
            snapshot,
        )? {
            continue;
        }
        let candidates =
            crate::store::events_naming(conn, &finding.resource_id, Some(after), until)?;
        if let Attribution::Recorded { events } = attribute(
            &candidates,
            family,
            &finding.resource_id,
            None,
            Some(after),
            until,
            None,
        ) {
            finding.changed_by = events.into_iter().next();
        }
    }
    Ok(())
}

/// The evaluations before this one, newest first, with what each could see. A finding
/// changes state only at an evaluation whose snapshot read its project (or its
/// organization family) completely ([`Coverage`]); a snapshot that was never evaluated (a
/// `snapshot` run) or could not read it carried the finding over unchanged. So the change
/// behind a transition may have come at any time after the start of the last evaluated
/// snapshot that could see the finding, not only after the previous snapshot.
struct Earlier {
    snapshots: Vec<(SnapshotId, SnapshotStatus, i64)>,
    /// Built on first use: most findings stop at the newest evaluation.
    coverage: HashMap<SnapshotId, Coverage>,
}

impl Earlier {
    fn load(conn: &Connection, snapshot: SnapshotId) -> Result<Earlier, FindingsError> {
        Ok(Earlier {
            snapshots: crate::store::evaluated_before(conn, snapshot)?,
            coverage: HashMap::new(),
        })
    }

    /// The last earlier evaluated snapshot that could see `finding`, with its start (Unix
    /// seconds); `None` when none could.
    fn last_seeing(
        &mut self,
        conn: &Connection,
        finding: &Finding,
    ) -> Result<Option<(SnapshotId, i64)>, FindingsError> {
        for (id, status, started) in &self.snapshots {
            if !self.coverage.contains_key(id) {
                let coverage = Coverage::from_snapshot(
                    *status,
                    &crate::store::failed_scopes(conn, *id)?,
                    // Findings about the log's own events name no object family, so they
                    // are never attributed: whether the log was read is moot here.
                    true,
                );
                self.coverage.insert(*id, coverage);
            }
            let Some(coverage) = self.coverage.get(id) else {
                continue;
            };
            if coverage.covers_finding(finding) {
                return Ok(Some((*id, *started)));
            }
        }
        Ok(None)
    }
}
