//! Who changed it: the audit-log events that explain each change of a diff or a history,
//! read from migration 0008's `audit_event` and matched by `audit_log::explain`.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use crate::audit_log::AuditEvent;
use crate::audit_log::explain::{Attribution, LogCoverage, ReadSpan, attribute, coverage};
use crate::model::{SnapshotId, SnapshotStatus};

use super::audit_log::parse_stored;
use super::history::{DiffEntry, HistoryEntry, SnapshotDiff};
use super::{SnapshotInfo, Store, StoreError};

/// The stretch of time the audit log was read completely (see [`ReadSpan`]); `None` when
/// no read ever completed.
pub fn read_span(conn: &Connection) -> Result<Option<ReadSpan>, StoreError> {
    let (from, through): (Option<i64>, Option<i64>) = conn.query_row(
        // Only since audit logging was last off: while it was, the log recorded nothing,
        // so a read after it cannot vouch for that stretch.
        "SELECT min(r.since), max(s.started_at)
         FROM audit_log_read r JOIN snapshot s ON s.id = r.snapshot_id
         WHERE r.outcome = 'complete'
           AND r.snapshot_id > coalesce(
                 (SELECT max(snapshot_id) FROM audit_log_read WHERE outcome = 'disabled'), 0)",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    Ok(from
        .zip(through)
        .map(|(from, through)| ReadSpan { from, through }))
}

/// The stored events that name `id` (as the payload's `id`, a role assignment's principal
/// or an item of a list payload) and happened from `after` to `until` (both included).
/// Events of list payloads and role assignments are found by their text first, then
/// matched exactly by the caller.
pub fn events_naming(
    conn: &Connection,
    id: &str,
    after: Option<i64>,
    until: i64,
) -> Result<Vec<AuditEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT raw FROM audit_event
         WHERE effective_at >= ?2 AND effective_at <= ?3
           AND (resource_id = ?1
                OR (type IN ('role.assignment.created', 'role.assignment.deleted',
                             'certificates.activated', 'certificates.deactivated')
                    AND instr(raw, ?4) > 0))",
    )?;
    let quoted = serde_json::Value::String(id.to_owned()).to_string();
    let rows = stmt.query_map(
        params![id, after.unwrap_or(i64::MIN), until, quoted],
        |row| row.get::<_, String>(0),
    )?;
    let mut out = Vec::new();
    for raw in rows {
        out.push(parse_stored(&raw?)?);
    }
    Ok(out)
}

/// Every stored event that happened after `after` and no later than `until`, indexed by
/// the ids it names, for attributing many changes of one interval.
struct Interval {
    events: Vec<AuditEvent>,
    by_id: HashMap<String, Vec<usize>>,
}

impl Interval {
    fn load(conn: &Connection, after: i64, until: i64) -> Result<Interval, StoreError> {
        let mut stmt = conn.prepare_cached(
            "SELECT raw FROM audit_event WHERE effective_at >= ?1 AND effective_at <= ?2",
        )?;
        let rows = stmt.query_map(params![after, until], |row| row.get::<_, String>(0))?;
        let mut events = Vec::new();
        let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
        for raw in rows {
            let event = parse_stored(&raw?)?;
            for id in crate::audit_log::explain::named_ids(&event) {
                by_id.entry(id).or_default().push(events.len());
            }
            events.push(event);
        }
        Ok(Interval { events, by_id })
    }

    fn naming<'a>(&'a self, ids: &[&str]) -> impl Iterator<Item = &'a AuditEvent> {
        ids.iter()
            .filter_map(|id| self.by_id.get(*id))
            .flatten()
            .filter_map(|i| self.events.get(*i))
    }
}

impl Store {
    /// Fills in `attribution` for every change of `diff`: the events after the older
    /// snapshot started and no later than the newer one finished.
    pub fn attribute_diff(&self, diff: &mut SnapshotDiff) -> Result<(), StoreError> {
        if diff.entries.is_empty() {
            // Nothing to attribute: the interval's events need not be read.
            return Ok(());
        }
        let span = read_span(&self.conn)?;
        let (old, new) = if diff.from.id <= diff.to.id {
            (&diff.from, &diff.to)
        } else {
            (&diff.to, &diff.from)
        };
        let after = old.started_at.timestamp();
        let until = new.finished_at.timestamp();
        let interval = Interval::load(&self.conn, after, until)?;
        for entry in &mut diff.entries {
            entry.attribution = Some(attribute_entry(&interval, entry, after, until, span));
        }
        Ok(())
    }

    /// Fills in `attribution` for every version of `history`: each version's change
    /// happened after the previous usable snapshot started (before the first snapshot
    /// for the first version) and no later than its own snapshot finished.
    pub fn attribute_history(&self, history: &mut [HistoryEntry]) -> Result<(), StoreError> {
        let span = read_span(&self.conn)?;
        let snapshots: Vec<SnapshotInfo> = self
            .list_snapshots()?
            .into_iter()
            .filter(|s| s.status != SnapshotStatus::Failed)
            .collect();
        for entry in history.iter_mut() {
            let Some(at) = snapshots.iter().position(|s| s.id == entry.snapshot_id) else {
                continue;
            };
            let this = &snapshots[at];
            let after = at
                .checked_sub(1)
                .and_then(|i| snapshots.get(i))
                .map(|s| s.started_at.timestamp());
            let until = this.finished_at.timestamp();
            let mut candidates = events_naming(&self.conn, &entry.resource_id, after, until)?;
            if let Some(parent) = &entry.parent_id {
                candidates.extend(events_naming(&self.conn, parent, after, until)?);
            }
            entry.attribution = Some(attribute(
                &candidates,
                entry.family,
                &entry.resource_id,
                entry.parent_id.as_deref(),
                after,
                until,
                span,
            ));
        }
        Ok(())
    }

    /// The snapshot before `id` that was not failed, if any.
    pub fn previous_usable_snapshot(
        &self,
        id: SnapshotId,
    ) -> Result<Option<SnapshotInfo>, StoreError> {
        Ok(self
            .list_snapshots()?
            .into_iter()
            .rfind(|s| s.status != SnapshotStatus::Failed && s.id < id))
    }
}

fn attribute_entry(
    interval: &Interval,
    entry: &DiffEntry,
    after: i64,
    until: i64,
    span: Option<ReadSpan>,
) -> Attribution {
    if coverage(entry.family) == LogCoverage::NeverRecorded {
        return Attribution::NeverRecorded;
    }
    let mut ids = vec![entry.resource_id.as_str()];
    if let Some(parent) = &entry.parent_id {
        ids.push(parent);
    }
    attribute(
        interval.naming(&ids),
        entry.family,
        &entry.resource_id,
        entry.parent_id.as_deref(),
        Some(after),
        until,
        span,
    )
}
