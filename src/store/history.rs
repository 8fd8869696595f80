//! Reading the history back: what changed between two snapshots, and every version of
//! one object.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use crate::audit_log::explain::Attribution;
use crate::model::{Family, SnapshotId, SnapshotStatus};

use super::canon::{FieldChange, field_changes};
use super::{SnapshotInfo, Store, StoreError};

/// How an object changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// It appeared (or came back).
    Added,
    /// Its content changed.
    Changed,
    /// It is gone.
    Removed,
}

crate::model::stored_enum!(ChangeKind, "version change", [
    Added => "added",
    Changed => "changed",
    Removed => "removed",
]);

impl ChangeKind {
    fn parse(s: &str) -> Result<ChangeKind, StoreError> {
        s.parse()
            .map_err(|e: crate::model::UnknownName| StoreError::Corrupt(e.to_string()))
    }
}

/// One object that differs between two snapshots.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffEntry {
    /// Its family (serialized as `resource_type`, the view name).
    #[serde(rename = "resource_type")]
    pub family: Family,
    /// Its project (the project's own id for `projects`).
    pub project_id: String,
    /// The user or group a role assignment belongs to.
    pub parent_id: Option<String>,
    /// Its id (the project id for per-project singletons).
    pub resource_id: String,
    /// Added, removed or changed (serialized as `change`).
    #[serde(rename = "change")]
    pub kind: ChangeKind,
    /// The changed fields (for `changed`; volatile fields never appear), as `fields`.
    #[serde(rename = "fields")]
    pub changes: Vec<FieldChange>,
    /// Who made the change, as far as the audit log says (filled in by
    /// [`Store::attribute_diff`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
}

/// What changed between two snapshots.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotDiff {
    /// The older side.
    pub from: SnapshotInfo,
    /// The newer side.
    pub to: SnapshotInfo,
    /// Objects that differ, by family (catalog order), project and id.
    pub entries: Vec<DiffEntry>,
}

/// One stored version of an object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Its family (serialized as `resource_type`, the view name).
    #[serde(rename = "resource_type")]
    pub family: Family,
    /// Its project.
    pub project_id: String,
    /// The user or group a role assignment belongs to.
    pub parent_id: Option<String>,
    /// Its id.
    pub resource_id: String,
    /// The snapshot this version appeared in.
    pub snapshot_id: SnapshotId,
    /// When that snapshot started.
    pub valid_from: DateTime<Utc>,
    /// The snapshot that replaced it, if any.
    pub valid_to_snapshot_id: Option<SnapshotId>,
    /// Added, changed or removed (serialized as `change`).
    #[serde(rename = "change")]
    pub kind: ChangeKind,
    /// Fields changed from the previous version (for `changed`), as `fields`.
    #[serde(rename = "fields")]
    pub changes: Vec<FieldChange>,
    /// The object's JSON in this version (`None` once removed).
    pub raw: Option<Value>,
    /// Who made the change, as far as the audit log says (filled in by
    /// [`Store::attribute_history`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
}

/// The state of one object at one snapshot: its blob, or `None` (absent or removed).
type State = Option<i64>;

impl Store {
    /// What changed between snapshot `from` and snapshot `to`. Without `to`, the newest
    /// snapshot that was not `failed`; without `from`, the one before `to` that was not
    /// `failed` (a failed snapshot changes nothing, so skipping it hides nothing).
    pub fn diff(
        &self,
        from: Option<SnapshotId>,
        to: Option<SnapshotId>,
    ) -> Result<SnapshotDiff, StoreError> {
        let usable: Vec<SnapshotId> = self
            .list_snapshots()?
            .into_iter()
            .filter(|s| s.status != SnapshotStatus::Failed)
            .map(|s| s.id)
            .collect();
        let to = match to {
            Some(id) => id,
            None => *usable
                .last()
                .ok_or(StoreError::NotEnoughSnapshots(usable.len()))?,
        };
        let from = match from {
            Some(id) => id,
            None => *usable
                .iter()
                .rev()
                .find(|id| **id < to)
                .ok_or(StoreError::NotEnoughSnapshots(usable.len()))?,
        };
        let from_info = self.snapshot(from)?;
        let to_info = self.snapshot(to)?;
        let (low, high) = if from <= to { (from, to) } else { (to, from) };
        let candidates: Vec<(i64, String, String, String, String)> = {
            let mut stmt = self.conn.prepare(
                "SELECT DISTINCT o.id, o.family, o.project_id, o.parent_id, o.resource_id
                 FROM version v JOIN object o ON o.id = v.object_id
                 WHERE v.from_snapshot > ?1 AND v.from_snapshot <= ?2",
            )?;
            stmt.query_map(params![low.0, high.0], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })?
            .collect::<Result<_, _>>()?
        };
        let mut entries = Vec::new();
        for (object, family, project_id, parent_id, resource_id) in candidates {
            let family = parse_family(&family)?;
            let old = self.state_at(object, from)?;
            let new = self.state_at(object, to)?;
            let (kind, changes) = match (old, new) {
                (None, Some(_)) => (ChangeKind::Added, Vec::new()),
                (Some(_), None) => (ChangeKind::Removed, Vec::new()),
                (Some(a), Some(b)) if a != b => {
                    let changes = field_changes(
                        &self.blob_json(a)?,
                        &self.blob_json(b)?,
                        family.volatile_fields(),
                    );
                    (ChangeKind::Changed, changes)
                }
                _ => continue,
            };
            entries.push(DiffEntry {
                family,
                project_id,
                parent_id: (!parent_id.is_empty()).then_some(parent_id),
                resource_id,
                kind,
                changes,
                attribution: None,
            });
        }
        entries.sort_by(|a, b| {
            (a.family, &a.project_id, &a.parent_id, &a.resource_id).cmp(&(
                b.family,
                &b.project_id,
                &b.parent_id,
                &b.resource_id,
            ))
        });
        Ok(SnapshotDiff {
            from: from_info,
            to: to_info,
            entries,
        })
    }

    /// Every version of every object whose id is `resource_id` (in any family and
    /// project), oldest first per object, each with the fields it changed.
    pub fn history(&self, resource_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows: Vec<VersionRow> = {
            let mut stmt = self.conn.prepare(
                "SELECT o.id, o.family, o.project_id, o.parent_id, o.resource_id,
                        v.from_snapshot, s.started_at, v.to_snapshot, v.change, b.raw
                 FROM object o
                   JOIN version v ON v.object_id = o.id
                   JOIN snapshot s ON s.id = v.from_snapshot
                   LEFT JOIN blob b ON b.id = v.blob_id
                 WHERE o.resource_id = ?1
                 ORDER BY o.id, v.from_snapshot, v.id",
            )?;
            stmt.query_map([resource_id], |row| {
                Ok(VersionRow {
                    object: row.get(0)?,
                    family: row.get(1)?,
                    project_id: row.get(2)?,
                    parent_id: row.get(3)?,
                    resource_id: row.get(4)?,
                    snapshot: row.get(5)?,
                    started_at: row.get(6)?,
                    to_snapshot: row.get(7)?,
                    change: row.get(8)?,
                    raw: row.get(9)?,
                })
            })?
            .collect::<Result<_, _>>()?
        };
        let mut out: Vec<HistoryEntry> = Vec::with_capacity(rows.len());
        let mut previous: Option<(i64, Option<Value>)> = None;
        for row in rows {
            let family = parse_family(&row.family)?;
            let raw = row.raw.as_deref().map(parse_json).transpose()?;
            let kind = ChangeKind::parse(&row.change)?;
            let changes = match (&previous, &raw) {
                (Some((object, Some(old))), Some(new))
                    if *object == row.object && kind == ChangeKind::Changed =>
                {
                    field_changes(old, new, family.volatile_fields())
                }
                _ => Vec::new(),
            };
            previous = Some((row.object, raw.clone()));
            out.push(HistoryEntry {
                family,
                project_id: row.project_id,
                parent_id: (!row.parent_id.is_empty()).then_some(row.parent_id),
                resource_id: row.resource_id,
                snapshot_id: SnapshotId(row.snapshot),
                valid_from: super::from_unix(row.started_at)?,
                valid_to_snapshot_id: row.to_snapshot.map(SnapshotId),
                kind,
                changes,
                raw,
                attribution: None,
            });
        }
        Ok(out)
    }

    fn state_at(&self, object: i64, snapshot: SnapshotId) -> Result<State, StoreError> {
        let state: Option<Option<i64>> = self
            .conn
            .prepare_cached(
                "SELECT blob_id FROM version WHERE object_id = ?1 AND from_snapshot <= ?2
                 ORDER BY from_snapshot DESC, id DESC LIMIT 1",
            )?
            .query_row(params![object, snapshot.0], |row| row.get(0))
            .optional()?;
        Ok(state.flatten())
    }

    fn blob_json(&self, blob: i64) -> Result<Value, StoreError> {
        let raw: String = self
            .conn
            .prepare_cached("SELECT raw FROM blob WHERE id = ?1")?
            .query_row([blob], |row| row.get(0))?;
        parse_json(&raw)
    }
}

struct VersionRow {
    object: i64,
    family: String,
    project_id: String,
    parent_id: String,
    resource_id: String,
    snapshot: i64,
    started_at: i64,
    to_snapshot: Option<i64>,
    change: String,
    raw: Option<String>,
}

fn parse_family(view: &str) -> Result<Family, StoreError> {
    view.parse()
        .map_err(|e: crate::model::UnknownName| StoreError::Corrupt(e.to_string()))
}

fn parse_json(raw: &str) -> Result<Value, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}
