//! Who changed it: the audit-log events that explain each change of a diff or a history,
//! read from migration 0008's `audit_event` and matched by `audit_log::explain`.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use crate::audit_log::AuditEvent;
use crate::audit_log::explain::{Attribution, LogCoverage, ReadSpan, attribute, coverage};
use crate::model::{Family, SnapshotId, SnapshotStatus};

use super::audit_log::parse_stored;
use super::history::{DiffEntry, HistoryEntry, SnapshotDiff};
use super::{SnapshotInfo, Store, StoreError};

/// The stretch of time the audit log was read completely (see [`ReadSpan`]); `None` when
/// no read ever completed. It ends at the start of the newest complete read and reaches
/// back through the complete reads before it only while each began no later than the one
/// before it started: a catch-up cut short (more pages than allowed, or the snapshot's time
/// limit) starts later than that, and the stretch it left unread is not vouched for.
pub fn read_span(conn: &Connection) -> Result<Option<ReadSpan>, StoreError> {
    // Only since audit logging was last off: while it was, the log recorded nothing, so a
    // read after it cannot vouch for that stretch.
    gapless_reads(conn, true)
}

/// The stretch the complete reads cover without a gap, ending at the start of the newest;
/// with `after_disabled`, only the reads since audit logging was last off.
pub(super) fn gapless_reads(
    conn: &Connection,
    after_disabled: bool,
) -> Result<Option<ReadSpan>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.since, s.started_at
         FROM audit_log_read r JOIN snapshot s ON s.id = r.snapshot_id
         WHERE r.outcome = 'complete'
           AND (?1 = 0 OR r.snapshot_id > coalesce(
                 (SELECT max(snapshot_id) FROM audit_log_read WHERE outcome = 'disabled'), 0))
         ORDER BY r.snapshot_id DESC",
    )?;
    let reads = stmt.query_map([after_disabled], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
    })?;
    let mut span: Option<ReadSpan> = None;
    for read in reads {
        let (since, started_at) = read?;
        span = match span {
            None => Some(ReadSpan {
                from: since,
                through: started_at,
            }),
            // This older read covered up to its start: it joins on when the newer span
            // begins no later than that.
            Some(newer) if newer.from <= started_at => Some(ReadSpan {
                from: newer.from.min(since),
                through: newer.through.max(started_at),
            }),
            Some(_) => break,
        };
    }
    Ok(span)
}

/// Whether the stored object `resource_id` of `family` (in `project`, when given) was
/// added, changed or removed by a snapshot after `after`, up to `through` (included).
///
/// A finding's transition is someone's doing only when its object changed: one opened by
/// a rule's new threshold, an exemption's end or a key's age moved nothing the log records,
/// and an event that merely names the object in that time did not cause it.
///
/// In a family read under a parent (a user's or a group's roles), a finding may name the
/// parent instead, as a role assignment's event names its principal: then a change to any
/// of that parent's objects in the family is the finding's.
pub fn object_changed_between(
    conn: &Connection,
    family: Family,
    project: Option<&str>,
    resource_id: &str,
    after: SnapshotId,
    through: SnapshotId,
) -> Result<bool, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM object o JOIN version v ON v.object_id = o.id
         WHERE o.resource_id = ?1 AND o.family = ?2 AND (?3 IS NULL OR o.project_id = ?3)
           AND v.from_snapshot > ?4 AND v.from_snapshot <= ?5)",
    )?;
    let changed: bool = stmt.query_row(
        params![resource_id, family.view(), project, after.0, through.0],
        |row| row.get(0),
    )?;
    if changed || family.parent().is_none() {
        return Ok(changed);
    }
    // By the store's unique key (family, project, parent): an organization family's
    // objects have no project.
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM object o JOIN version v ON v.object_id = o.id
         WHERE o.family = ?2 AND o.project_id = ?3 AND o.parent_id = ?1
           AND v.from_snapshot > ?4 AND v.from_snapshot <= ?5)",
    )?;
    Ok(stmt.query_row(
        params![
            resource_id,
            family.view(),
            project.unwrap_or_default(),
            after.0,
            through.0
        ],
        |row| row.get(0),
    )?)
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
#[derive(Default)]
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
    /// Fills in `attribution` for every change of `diff`. An object changes at the
    /// snapshots that stored a version of it, so each of its versions between the two sides
    /// is explained only by the events of its own interval (see [`Store::change_interval`]):
    /// across many snapshots, an event of one object's id from before or after its change
    /// (a user's later departure, another project's membership) explains nothing of it.
    pub fn attribute_diff(&self, diff: &mut SnapshotDiff) -> Result<(), StoreError> {
        if diff.entries.is_empty() {
            // Nothing to attribute: the interval's events need not be read.
            return Ok(());
        }
        let span = read_span(&self.conn)?;
        let (low, high) = if diff.from.id <= diff.to.id {
            (diff.from.id, diff.to.id)
        } else {
            (diff.to.id, diff.from.id)
        };
        let snapshots = self.usable_snapshots()?;
        let mut intervals: Vec<Vec<(Option<i64>, i64)>> = Vec::with_capacity(diff.entries.len());
        for entry in &diff.entries {
            let mut own = Vec::new();
            if coverage(entry.family) != LogCoverage::NeverRecorded {
                for snapshot in self.versions_between(entry, low, high)? {
                    if let Some(interval) = self.change_interval(&snapshots, snapshot, entry)? {
                        own.push(interval);
                    }
                }
            }
            intervals.push(own);
        }
        let all = intervals.iter().flatten();
        let after = all
            .clone()
            .map(|(after, _)| after.unwrap_or(i64::MIN))
            .min();
        let until = all.map(|(_, until)| *until).max();
        let interval = match after.zip(until) {
            Some((after, until)) => Interval::load(&self.conn, after, until)?,
            None => Interval::default(),
        };
        for (entry, own) in diff.entries.iter_mut().zip(intervals) {
            entry.attribution = Some(attribute_entry(&interval, entry, &own, span));
        }
        Ok(())
    }

    /// Fills in `attribution` for every version of `history`: each version's change
    /// happened after the last snapshot before it that read the object's list started
    /// (before the first snapshot when none did) and no later than its own snapshot
    /// finished.
    pub fn attribute_history(&self, history: &mut [HistoryEntry]) -> Result<(), StoreError> {
        let span = read_span(&self.conn)?;
        let snapshots = self.usable_snapshots()?;
        for entry in history.iter_mut() {
            let key = ObjectKey {
                family: entry.family,
                project_id: &entry.project_id,
                parent_id: entry.parent_id.as_deref(),
            };
            let Some((after, until)) = self.change_interval(&snapshots, entry.snapshot_id, &key)?
            else {
                continue;
            };
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

    /// The snapshots that were not failed, oldest first.
    fn usable_snapshots(&self) -> Result<Vec<SnapshotInfo>, StoreError> {
        Ok(self
            .list_snapshots()?
            .into_iter()
            .filter(|s| s.status != SnapshotStatus::Failed)
            .collect())
    }

    /// The snapshots after `low` and up to `high` that stored a version of `entry`'s object.
    fn versions_between(
        &self,
        entry: &DiffEntry,
        low: SnapshotId,
        high: SnapshotId,
    ) -> Result<Vec<SnapshotId>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT v.from_snapshot FROM version v JOIN object o ON o.id = v.object_id
             WHERE o.family = ?1 AND o.project_id = ?2 AND o.parent_id = ?3
               AND o.resource_id = ?4 AND v.from_snapshot > ?5 AND v.from_snapshot <= ?6
             ORDER BY v.from_snapshot",
        )?;
        let rows = stmt.query_map(
            params![
                entry.family.view(),
                entry.project_id,
                entry.parent_id.as_deref().unwrap_or(""),
                entry.resource_id,
                low.0,
                high.0
            ],
            |row| row.get(0).map(SnapshotId),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the change a version stored at `snapshot` records can have happened: after the
    /// last earlier snapshot that read the object's list started (`None`: no earlier one
    /// did, so it was there before orgwarden could see it), and no later than `snapshot`
    /// finished. A snapshot that could not read the list (a failed scope, or one above it,
    /// or a family left out by `[collect] skip`) carried the object forward unseen, so the
    /// change may have come before it. `None` for a snapshot not among `snapshots`.
    fn change_interval(
        &self,
        snapshots: &[SnapshotInfo],
        snapshot: SnapshotId,
        object: &impl AsObjectKey,
    ) -> Result<Option<(Option<i64>, i64)>, StoreError> {
        let Some(at) = snapshots.iter().position(|s| s.id == snapshot) else {
            return Ok(None);
        };
        let until = snapshots[at].finished_at.timestamp();
        let key = object.key();
        for earlier in snapshots[..at].iter().rev() {
            if self.read_list_of(earlier.id, &key)? {
                return Ok(Some((Some(earlier.started_at.timestamp()), until)));
            }
        }
        Ok(Some((None, until)))
    }

    /// Whether snapshot `id` (not failed) read the list that holds `key`'s object.
    fn read_list_of(&self, id: SnapshotId, key: &ObjectKey<'_>) -> Result<bool, StoreError> {
        // A snapshot counts the rows of every family its orgwarden knew: one an older
        // version wrote before the family was collected at all never read it, and must not
        // bound the interval (the objects first read after the upgrade were there before).
        let knew: bool = self
            .conn
            .prepare_cached(
                "SELECT json_type(objects, ?2) IS NOT NULL FROM snapshot WHERE id = ?1",
            )?
            .query_row(params![id.0, format!("$.{}", key.family.view())], |row| {
                row.get(0)
            })?;
        if !knew {
            return Ok(false);
        }
        let mut lists = vec![key.family];
        let mut family = key.family;
        while let Some(parent) = family.parent() {
            lists.push(parent);
            family = parent;
        }
        let mut skipped = self.conn.prepare_cached(
            "SELECT 1 FROM snapshot_skipped WHERE snapshot_id = ?1 AND family = ?2",
        )?;
        // The object's own list by its exact scope; a list above it (a project's users,
        // above their roles) for any of the project's scopes.
        let mut failed = self.conn.prepare_cached(
            "SELECT 1 FROM snapshot_scope
             WHERE snapshot_id = ?1 AND outcome = 'failed' AND family = ?2 AND project_id = ?3
               AND (?4 IS NULL OR parent_id = ?4)",
        )?;
        for (i, family) in lists.into_iter().enumerate() {
            if skipped.exists(params![id.0, family.view()])? {
                return Ok(false);
            }
            let parent = (i == 0).then(|| key.parent_id.unwrap_or(""));
            let project = if family.in_project() {
                key.project_id
            } else {
                ""
            };
            if failed.exists(params![id.0, family.view(), project, parent])? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Which object a change is about: enough to find the list it was read in.
struct ObjectKey<'a> {
    family: crate::model::Family,
    project_id: &'a str,
    parent_id: Option<&'a str>,
}

trait AsObjectKey {
    fn key(&self) -> ObjectKey<'_>;
}

impl AsObjectKey for DiffEntry {
    fn key(&self) -> ObjectKey<'_> {
        ObjectKey {
            family: self.family,
            project_id: &self.project_id,
            parent_id: self.parent_id.as_deref(),
        }
    }
}

impl AsObjectKey for ObjectKey<'_> {
    fn key(&self) -> ObjectKey<'_> {
        ObjectKey {
            family: self.family,
            project_id: self.project_id,
            parent_id: self.parent_id,
        }
    }
}

/// The attribution of a diff entry whose object changed in each of `intervals`: the events
/// of every one of them; else unknown when any was not read over, else not recorded.
fn attribute_entry(
    interval: &Interval,
    entry: &DiffEntry,
    intervals: &[(Option<i64>, i64)],
    span: Option<ReadSpan>,
) -> Attribution {
    if coverage(entry.family) == LogCoverage::NeverRecorded {
        return Attribution::NeverRecorded;
    }
    let mut ids = vec![entry.resource_id.as_str()];
    if let Some(parent) = &entry.parent_id {
        ids.push(parent);
    }
    let mut events = Vec::new();
    let mut not_read = intervals.is_empty();
    for (after, until) in intervals {
        match attribute(
            interval.naming(&ids),
            entry.family,
            &entry.resource_id,
            entry.parent_id.as_deref(),
            *after,
            *until,
            span,
        ) {
            Attribution::Recorded { events: found } => events.extend(found),
            Attribution::NotRecorded | Attribution::NeverRecorded => {}
            Attribution::NotRead => not_read = true,
        }
    }
    if !events.is_empty() {
        events.sort_by(|a, b| (b.at, &b.event_id).cmp(&(a.at, &a.event_id)));
        events.dedup_by(|a, b| a.event_id == b.event_id);
        Attribution::Recorded { events }
    } else if not_read {
        Attribution::NotRead
    } else {
        Attribution::NotRecorded
    }
}
