//! `changed_by`: a finding opened, reopened or resolved by a change carries the audit-log
//! event that explains the change (who, when, from where), found by the same match as
//! `diff` and `history` (`audit_log::explain`).

use rusqlite::Connection;

use crate::audit_log::explain::{Attribution, attribute};
use crate::model::Family;

use super::{EventKind, FindingsError, Reconciled};

/// Sets `changed_by` on every finding of `reconciled` that opened, reopened or resolved,
/// from the events after `after` (when the previous usable snapshot started) and no later
/// than `until` (when this one finished). Without a previous snapshot nothing changed: a
/// finding of the first snapshot was there before orgwarden looked. A finding whose
/// transition no event explains loses the `changed_by` of an earlier transition.
pub fn attribute_transitions(
    conn: &Connection,
    reconciled: &mut Reconciled,
    after: Option<i64>,
    until: i64,
) -> Result<(), FindingsError> {
    let transitioned: std::collections::HashSet<&str> = reconciled
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
    for finding in &mut reconciled.changed {
        if !transitioned.contains(finding.fingerprint.as_str()) {
            continue;
        }
        finding.changed_by = None;
        let (Some(after), Some(family)) = (after, Family::from_view(&finding.resource_type)) else {
            continue;
        };
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
