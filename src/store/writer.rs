//! Writing one snapshot: a single `BEGIN IMMEDIATE` transaction that stores each scope
//! as the collector streams it and commits in `finish`.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;

use crate::model::{CrawlStats, Family, Objects, Scope, ScopeError, ScopeOutcome, ScopeResult};
use crate::model::{SnapshotId, SnapshotStatus};

use super::{SnapshotInfo, Store, StoreError, canon};

/// Everything since this savepoint is object state; a failed snapshot rolls back to it and
/// keeps only its own row.
const OBJECTS_SAVEPOINT: &str = "snapshot_objects";

/// An open snapshot. Dropping it without [`SnapshotWriter::finish`] rolls everything back.
pub struct SnapshotWriter<'a> {
    tx: Transaction<'a>,
    /// The database file, for errors (`None` in memory).
    db: Option<std::path::PathBuf>,
    id: SnapshotId,
    org: String,
    started_at: i64,
    scopes_read: u64,
    failed: Vec<(Scope, ScopeError)>,
}

impl std::fmt::Debug for SnapshotWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("id", &self.id)
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Starts a snapshot: takes SQLite's write lock (`BEGIN IMMEDIATE`) until `finish`.
    pub fn begin_snapshot(
        &mut self,
        org: &str,
        started_at: DateTime<Utc>,
    ) -> Result<SnapshotWriter<'_>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly(
                "a snapshot cannot be written through a read-only store".into(),
            ));
        }
        let db = self.path.clone();
        let tx = Transaction::new(&mut self.conn, TransactionBehavior::Immediate)?;
        let started_at = started_at.timestamp();
        tx.execute(
            "INSERT INTO snapshot (org, started_at, status) VALUES (?1, ?2, 'running')",
            params![org, started_at],
        )?;
        let id = SnapshotId(tx.last_insert_rowid());
        tx.execute_batch(&format!("SAVEPOINT {OBJECTS_SAVEPOINT}"))?;
        Ok(SnapshotWriter {
            tx,
            db,
            id,
            org: org.to_owned(),
            started_at,
            scopes_read: 0,
            failed: Vec::new(),
        })
    }
}

/// The current row of one object.
struct Current {
    id: i64,
    blob_id: Option<i64>,
    version_id: i64,
    volatile: Option<String>,
}

impl<'a> SnapshotWriter<'a> {
    /// The snapshot's transaction, for the other tables a run writes (`store::costs`).
    pub(super) fn tx(&self) -> &Transaction<'a> {
        &self.tx
    }
}

impl SnapshotWriter<'_> {
    /// The id the snapshot will have once committed.
    pub fn id(&self) -> SnapshotId {
        self.id
    }

    /// Stores one scope's outcome: the objects of a complete read (and marks the scope's
    /// objects it did not list as gone), or the error of a failed one (its objects are
    /// carried forward).
    pub fn apply(&mut self, result: ScopeResult) -> Result<(), StoreError> {
        check_scope(&result.scope)?;
        match result.outcome {
            ScopeOutcome::Failed(error) => {
                self.failed.retain(|(scope, _)| scope != &result.scope);
                self.failed.push((result.scope, error));
            }
            ScopeOutcome::Complete(objects) => match identify(&result.scope, &objects) {
                Ok(ids) => {
                    if result.scope.family == Family::Projects {
                        self.check_same_organization(&ids, &objects)?;
                    }
                    self.apply_complete(&result.scope, &objects, ids)?;
                    // A scope that failed and was then read completely (a retry) is complete.
                    self.failed.retain(|(scope, _)| scope != &result.scope);
                    self.scopes_read += 1;
                }
                // The collector fails such a scope itself; should one slip through, it is
                // one unreadable scope (carried forward, snapshot partial), not a reason
                // to lose the whole snapshot. Nothing of it was written yet.
                Err(message) => {
                    tracing::warn!(path = %result.scope, "{message}");
                    self.failed.retain(|(scope, _)| scope != &result.scope);
                    self.failed.push((
                        result.scope,
                        ScopeError {
                            status: None,
                            message,
                        },
                    ));
                }
            },
        }
        Ok(())
    }

    /// Records the families this snapshot leaves out on purpose (`[collect] skip` and
    /// the families under them): their stored objects are carried forward, and rules
    /// that judge absence treat them as unread.
    pub fn record_skipped(
        &mut self,
        families: impl IntoIterator<Item = Family>,
    ) -> Result<(), StoreError> {
        let mut insert = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO snapshot_skipped (snapshot_id, family) VALUES (?1, ?2)",
        )?;
        for family in families {
            insert.execute(params![self.id.0, family.view()])?;
        }
        Ok(())
    }

    /// Records the crawl's outcome and commits. A `Failed` snapshot is recorded with its
    /// stats and failed scopes but changes no object. `Complete` with failed scopes is
    /// stored as `Partial`.
    pub fn finish(
        mut self,
        stats: &CrawlStats,
        finished_at: DateTime<Utc>,
        status: SnapshotStatus,
    ) -> Result<SnapshotInfo, StoreError> {
        let status = match status {
            SnapshotStatus::Complete if !self.failed.is_empty() => SnapshotStatus::Partial,
            other => other,
        };
        let scopes_read = if status == SnapshotStatus::Failed {
            self.tx.execute_batch(&format!(
                "ROLLBACK TO {OBJECTS_SAVEPOINT}; RELEASE {OBJECTS_SAVEPOINT};"
            ))?;
            0
        } else {
            self.cascade_gone()?;
            self.tx
                .execute_batch(&format!("RELEASE {OBJECTS_SAVEPOINT}"))?;
            self.scopes_read
        };
        {
            let mut insert = self.tx.prepare_cached(
                "INSERT OR REPLACE INTO snapshot_scope
                 (snapshot_id, family, project_id, parent_id, outcome, http_status, error)
                 VALUES (?1, ?2, ?3, ?4, 'failed', ?5, ?6)",
            )?;
            for (scope, error) in &self.failed {
                insert.execute(params![
                    self.id.0,
                    scope.family.view(),
                    scope.project_id.as_ref().map_or("", |p| p.as_str()),
                    scope.parent_id.as_deref().unwrap_or(""),
                    error.status,
                    error.message,
                ])?;
            }
        }
        let objects = count_views(&self.tx)?;
        let objects_json = serde_json::to_string(&objects)
            .map_err(|e| StoreError::Corrupt(format!("object counts: {e}")))?;
        let finished = finished_at.timestamp();
        self.tx.execute(
            "UPDATE snapshot SET finished_at = ?2, status = ?3, requests = ?4, errors = ?5,
             retries = ?6, rate_limited = ?7, scopes_read = ?8, scopes_failed = ?9, objects = ?10
             WHERE id = ?1",
            params![
                self.id.0,
                finished,
                status.as_str(),
                clamp(stats.requests),
                clamp(stats.errors),
                clamp(stats.retries),
                clamp(stats.rate_limited),
                clamp(scopes_read),
                clamp(self.failed.len() as u64),
                objects_json,
            ],
        )?;
        let changes: i64 = self.tx.query_row(
            "SELECT count(*) FROM version WHERE from_snapshot = ?1",
            [self.id.0],
            |row| row.get(0),
        )?;
        let audit_log = self
            .tx
            .query_row(
                "SELECT r.outcome, r.since, r.through, r.requests, r.received, r.stored, r.error
                 FROM audit_log_read r WHERE r.snapshot_id = ?1",
                [self.id.0],
                |row| super::audit_log::audit_log_summary(row, 0),
            )
            .optional()?
            .flatten();
        self.tx.commit()?;
        Ok(SnapshotInfo {
            id: self.id,
            org: self.org,
            started_at: super::from_unix(self.started_at)?,
            finished_at: super::from_unix(finished)?,
            status,
            stats: stats.clone(),
            objects,
            scopes_read,
            scopes_failed: self.failed.len() as u64,
            // SQLite counts as i64; a count is never negative.
            changes: u64::try_from(changes).unwrap_or(0),
            audit_log,
        })
    }

    /// Refuses a complete projects read that shares no project with those ever stored:
    /// an organization never loses a project (they are archived, and archived ones are
    /// listed), so that is the key of another organization (a configuration copied and
    /// its key changed). Stored, it would resolve every finding of one organization and
    /// announce every one of the other.
    fn check_same_organization(&self, ids: &[Ids], objects: &Objects) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Nearly always the first project read is a stored one: one indexed lookup.
        let mut known = self.tx.prepare_cached(
            "SELECT 1 FROM object WHERE family = ?1 AND resource_id = ?2 LIMIT 1",
        )?;
        for (_, id) in ids {
            if known.exists(params![Family::Projects.view(), id])? {
                return Ok(());
            }
        }
        let stored_count: i64 = self.tx.query_row(
            "SELECT count(*) FROM object WHERE family = ?1",
            [Family::Projects.view()],
            |row| row.get(0),
        )?;
        if stored_count == 0 {
            return Ok(());
        }
        let stored: Vec<(String, Option<String>)> = self
            .tx
            .prepare_cached(
                "SELECT o.resource_id, b.raw FROM object o LEFT JOIN blob b ON b.id = o.blob_id
                 WHERE o.family = ?1 ORDER BY o.first_snapshot, o.id LIMIT ?2",
            )?
            .query_map(
                params![Family::Projects.view(), clamp(EXAMPLE_PROJECTS as u64)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?
            .collect::<Result<_, _>>()?;
        let (stored_org, stored_started): (String, i64) = self
            .tx
            .query_row(
                "SELECT org, started_at FROM snapshot WHERE status IN ('complete', 'partial')
                 ORDER BY id DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?
            .unwrap_or_default();
        let stored_count = usize::try_from(stored_count).unwrap_or(usize::MAX);
        let stored_examples = project_examples(
            stored
                .iter()
                .map(|(id, raw)| (id.clone(), raw.as_deref().and_then(project_name))),
            stored_count,
        );
        let read_examples = project_examples(
            ids.iter().zip(objects.iter()).map(|((_, id), object)| {
                let name = object
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                (id.clone(), name)
            }),
            ids.len(),
        );
        Err(StoreError::OtherOrganization(Box::new(
            super::OtherOrganization {
                path: self.db.clone().unwrap_or_else(|| ":memory:".into()),
                read_org: shown(&self.org),
                read_count: ids.len(),
                read_examples,
                stored_org: shown(&stored_org),
                stored_at: super::from_unix(stored_started).map_or_else(
                    |_| "an unknown date".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
                ),
                stored_count,
                stored_examples,
            },
        )))
    }

    /// Stores `objects`, whose `ids` [`identify`] found, one parsed at a time.
    fn apply_complete(
        &mut self,
        scope: &Scope,
        objects: &Objects,
        ids: Vec<Ids>,
    ) -> Result<(), StoreError> {
        let family = scope.family;
        let scope_project = scope.project_id.as_ref().map(|p| p.as_str().to_owned());
        let parent = scope.parent_id.clone().unwrap_or_default();
        let mut seen = HashSet::with_capacity(ids.len());
        for ((project_id, resource_id), object) in ids.into_iter().zip(objects.iter()) {
            let id = self.upsert(family, &project_id, &parent, &resource_id, &object)?;
            seen.insert(id);
        }
        // What the scope held before and the read did not list is gone.
        let present: Vec<i64> = {
            let mut stmt = if family == Family::Projects {
                self.tx.prepare_cached(
                    "SELECT id FROM object WHERE family = ?1 AND blob_id IS NOT NULL",
                )?
            } else {
                self.tx.prepare_cached(
                    "SELECT id FROM object WHERE family = ?1 AND project_id = ?2
                     AND parent_id = ?3 AND blob_id IS NOT NULL",
                )?
            };
            let project = scope_project.unwrap_or_default();
            if family == Family::Projects {
                stmt.query_map([family.view()], |row| row.get(0))?
                    .collect::<Result<Vec<i64>, _>>()?
            } else {
                stmt.query_map(params![family.view(), project, parent], |row| row.get(0))?
                    .collect::<Result<Vec<i64>, _>>()?
            }
        };
        for id in present {
            if !seen.contains(&id) {
                self.mark_gone(id)?;
            }
        }
        Ok(())
    }

    /// Stores one object as read in this snapshot; returns its row id.
    fn upsert(
        &mut self,
        family: Family,
        project_id: &str,
        parent_id: &str,
        resource_id: &str,
        object: &Value,
    ) -> Result<i64, StoreError> {
        let volatile_fields = family.volatile_fields();
        let hash = canon::content_hash(object, volatile_fields);
        let volatile = canon::volatile_values(object, volatile_fields);
        let blob_id = self.blob(&hash, object)?;
        let current = self
            .tx
            .prepare_cached(
                "SELECT id, blob_id, version_id, volatile FROM object
                 WHERE family = ?1 AND project_id = ?2 AND parent_id = ?3 AND resource_id = ?4",
            )?
            .query_row(
                params![family.view(), project_id, parent_id, resource_id],
                |row| {
                    Ok(Current {
                        id: row.get(0)?,
                        blob_id: row.get(1)?,
                        version_id: row.get::<_, Option<i64>>(2)?.unwrap_or(0),
                        volatile: row.get(3)?,
                    })
                },
            )
            .optional()?;
        let Some(current) = current else {
            self.tx
                .prepare_cached(
                    "INSERT INTO object (family, project_id, parent_id, resource_id, blob_id,
                     volatile, first_snapshot) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    family.view(),
                    project_id,
                    parent_id,
                    resource_id,
                    blob_id,
                    volatile,
                    self.id.0
                ])?;
            let id = self.tx.last_insert_rowid();
            let version = self.insert_version(id, "added", Some(blob_id))?;
            self.tx
                .prepare_cached("UPDATE object SET version_id = ?2 WHERE id = ?1")?
                .execute(params![id, version])?;
            return Ok(id);
        };
        if current.blob_id != Some(blob_id) {
            let version = self
                .replace_version(current.version_id, current.id, Some(blob_id))?
                .unwrap_or(current.version_id);
            self.tx
                .prepare_cached(
                    "UPDATE object SET blob_id = ?2, version_id = ?3, volatile = ?4 WHERE id = ?1",
                )?
                .execute(params![current.id, blob_id, version, volatile])?;
        } else if current.volatile != volatile {
            // A volatile field alone: kept current, no version.
            self.tx
                .prepare_cached("UPDATE object SET volatile = ?2 WHERE id = ?1")?
                .execute(params![current.id, volatile])?;
        }
        Ok(current.id)
    }

    /// The blob holding this content, stored if new.
    fn blob(&mut self, hash: &[u8; 32], object: &Value) -> Result<i64, StoreError> {
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM blob WHERE hash = ?1")?
            .query_row([&hash[..]], |row| row.get(0))
            .optional()?;
        if let Some(id) = found {
            return Ok(id);
        }
        self.tx
            .prepare_cached("INSERT INTO blob (hash, raw) VALUES (?1, ?2)")?
            .execute(params![&hash[..], object.to_string()])?;
        Ok(self.tx.last_insert_rowid())
    }

    fn insert_version(
        &mut self,
        object_id: i64,
        kind: &str,
        blob_id: Option<i64>,
    ) -> Result<i64, StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO version (object_id, from_snapshot, change, blob_id)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![object_id, self.id.0, kind, blob_id])?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Moves the object to `blob_id` (`None`: gone) as of this snapshot: closes its current
    /// version and opens a new one; returns the new current version, or `None` when the
    /// object no longer exists at all (first seen in this snapshot, then gone in it).
    ///
    /// A version this same snapshot opened (a scope listed an object twice, or was read
    /// twice) is rewritten in place against the state before the snapshot, so the history
    /// only ever holds one state per snapshot, and going back to that state leaves no trace.
    fn replace_version(
        &mut self,
        current: i64,
        object_id: i64,
        blob_id: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let opened: Option<(i64, Option<i64>)> = self
            .tx
            .prepare_cached("SELECT from_snapshot, blob_id FROM version WHERE id = ?1")?
            .query_row([current], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        match opened {
            Some((from, _)) if from == self.id.0 => {
                let before: Option<(i64, Option<i64>)> = self
                    .tx
                    .prepare_cached(
                        "SELECT id, blob_id FROM version WHERE object_id = ?1 AND to_snapshot = ?2
                         ORDER BY id DESC LIMIT 1",
                    )?
                    .query_row(params![object_id, self.id.0], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?;
                match before {
                    Some((previous, state)) if state == blob_id => {
                        self.tx
                            .prepare_cached("DELETE FROM version WHERE id = ?1")?
                            .execute([current])?;
                        self.tx
                            .prepare_cached("UPDATE version SET to_snapshot = NULL WHERE id = ?1")?
                            .execute([previous])?;
                        Ok(Some(previous))
                    }
                    None if blob_id.is_none() => {
                        self.tx
                            .prepare_cached("DELETE FROM version WHERE id = ?1")?
                            .execute([current])?;
                        self.tx
                            .prepare_cached("DELETE FROM object WHERE id = ?1")?
                            .execute([object_id])?;
                        Ok(None)
                    }
                    before => {
                        let kind = change_kind(before.and_then(|(_, state)| state), blob_id);
                        self.tx
                            .prepare_cached(
                                "UPDATE version SET change = ?2, blob_id = ?3 WHERE id = ?1",
                            )?
                            .execute(params![current, kind, blob_id])?;
                        Ok(Some(current))
                    }
                }
            }
            opened => {
                if opened.is_some() {
                    self.tx
                        .prepare_cached("UPDATE version SET to_snapshot = ?2 WHERE id = ?1")?
                        .execute(params![current, self.id.0])?;
                }
                let kind = change_kind(opened.and_then(|(_, state)| state), blob_id);
                self.insert_version(object_id, kind, blob_id).map(Some)
            }
        }
    }

    fn mark_gone(&mut self, object_id: i64) -> Result<(), StoreError> {
        let current: i64 = self
            .tx
            .prepare_cached("SELECT coalesce(version_id, 0) FROM object WHERE id = ?1")?
            .query_row([object_id], |row| row.get(0))?;
        if let Some(version) = self.replace_version(current, object_id, None)? {
            self.tx
                .prepare_cached("UPDATE object SET blob_id = NULL, version_id = ?2 WHERE id = ?1")?
                .execute(params![object_id, version])?;
        }
        Ok(())
    }

    /// Children of a gone parent are gone: every project family's objects when their
    /// project is gone, role assignments when their user or group is gone. Families are
    /// visited parents first, so a user gone with its project takes its roles with it.
    fn cascade_gone(&mut self) -> Result<(), StoreError> {
        for family in Family::ALL {
            let Some(parent) = family.parent() else {
                continue;
            };
            let join = if parent == Family::Projects {
                "p.project_id = c.project_id AND p.parent_id = '' AND p.resource_id = c.project_id"
            } else {
                "p.project_id = c.project_id AND p.parent_id = '' AND p.resource_id = c.parent_id"
            };
            let sql = format!(
                "SELECT c.id FROM object c JOIN object p ON p.family = ?2 AND {join}
                 WHERE c.family = ?1 AND c.blob_id IS NOT NULL AND p.blob_id IS NULL"
            );
            let orphans: Vec<i64> = self
                .tx
                .prepare_cached(&sql)?
                .query_map([family.view(), parent.view()], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for id in orphans {
                self.mark_gone(id)?;
            }
        }
        Ok(())
    }
}

/// The change from state `old` to state `new` (a blob, or `None` for gone).
fn change_kind(old: Option<i64>, new: Option<i64>) -> &'static str {
    match (old, new) {
        (_, None) => "removed",
        (None, Some(_)) => "added",
        (Some(_), Some(_)) => "changed",
    }
}

/// Row counts of every family view.
fn count_views(conn: &rusqlite::Connection) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut out = BTreeMap::new();
    for family in Family::ALL {
        let n: i64 = conn.query_row(
            &format!("SELECT count(*) FROM {}", family.view()),
            [],
            |row| row.get(0),
        )?;
        out.insert(family.view().to_owned(), u64::try_from(n).unwrap_or(0));
    }
    Ok(out)
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// How many projects of each organization [`StoreError::OtherOrganization`] names.
const EXAMPLE_PROJECTS: usize = 2;

/// The widest project or organization name an error shows.
const SHOWN_NAME_WIDTH: usize = 40;

/// A name from the configuration or the API as an error shows it: inert, one line, cut.
fn shown(text: &str) -> String {
    crate::report::cut_end(&crate::report::inert(text), SHOWN_NAME_WIDTH).into_owned()
}

/// The `name` of a stored project's JSON.
fn project_name(raw: &str) -> Option<String> {
    let value: Value = serde_json::from_str(raw).ok()?;
    value.get("name")?.as_str().map(str::to_owned)
}

/// `proj_a "Support", proj_b "Billing", …`: the first few of `total`, and an ellipsis for
/// the rest.
fn project_examples(
    projects: impl Iterator<Item = (String, Option<String>)>,
    total: usize,
) -> String {
    let more = total > EXAMPLE_PROJECTS;
    let mut parts: Vec<String> = projects
        .take(EXAMPLE_PROJECTS)
        .map(|(id, name)| match name {
            Some(name) => format!("{} \"{}\"", shown(&id), shown(&name)),
            None => shown(&id),
        })
        .collect();
    if more {
        parts.push("…".to_owned());
    }
    parts.join(", ")
}

/// The identity one object of a complete read is stored under: (project id, resource id).
type Ids = (String, String);

/// Checks every object of a complete read before anything is written, so a bad one
/// leaves the scope untouched; the error names the scope's path and the object. Only
/// the ids are kept: the objects are parsed again one at a time to be stored.
fn identify(scope: &Scope, objects: &Objects) -> Result<Vec<Ids>, String> {
    let family = scope.family;
    let scope_project = scope.project_id.as_ref().map(|p| p.as_str().to_owned());
    let mut items = Vec::with_capacity(objects.len());
    for (index, object) in objects.iter().enumerate() {
        if !object.is_object() {
            return Err(format!(
                "GET {}: malformed response: data[{index}] is not a JSON object",
                scope.path()
            ));
        }
        let Some(resource_id) = family.object_id(&object, scope.project_id.as_ref()) else {
            return Err(format!(
                "GET {}: malformed response: data[{index}] has no \"{}\" (a non-empty string)",
                scope.path(),
                family.id_field().unwrap_or("id")
            ));
        };
        let project_id = match family {
            Family::Projects => resource_id.clone(),
            _ => scope_project.clone().unwrap_or_default(),
        };
        items.push((project_id, resource_id));
    }
    Ok(items)
}

/// A scope must name what its family is read under.
fn check_scope(scope: &Scope) -> Result<(), StoreError> {
    let family = scope.family;
    let needs_project = family != Family::Projects && family.in_project();
    let needs_parent = family
        .parent()
        .is_some_and(|parent| parent != Family::Projects);
    let problem = match (&scope.project_id, &scope.parent_id) {
        (None, _) if needs_project => Some("a project family needs a project id"),
        (Some(_), _) if !needs_project => Some("the organization's own reads have no project id"),
        (_, None) if needs_parent => Some("a role or member read needs a user or group id"),
        (_, Some(_)) if !needs_parent => Some("this family has no parent id"),
        _ => None,
    };
    match problem {
        Some(message) => Err(StoreError::BadScope {
            scope: scope.path(),
            message: message.to_owned(),
        }),
        None => Ok(()),
    }
}
