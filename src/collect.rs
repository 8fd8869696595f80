//! The collector: reads the whole organization through the [`AdminClient`] and streams
//! one [`ScopeResult`] per read to the store, so the organization is never held in
//! memory whole.
//!
//! Order on the channel: the `projects` scope first; a project's users (groups) before
//! the role assignments of each user (group). Scopes under a parent that could not be
//! read are not sent at all: the store carries them forward.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::{self, TryStreamExt};
use serde_json::Value;
use tokio::sync::mpsc::Sender;

use crate::client::{AdminClient, ClientError};
use crate::model::{
    CrawlStats, Family, ProjectId, Scope, ScopeError, ScopeOutcome, ScopeResult, SnapshotStatus,
};
use crate::store::{SnapshotInfo, Store, StoreError};

/// How one crawl went.
#[derive(Clone, Debug, PartialEq)]
pub struct CrawlReport {
    /// Requests, retries, 429s and failed scopes of this crawl only.
    pub stats: CrawlStats,
    /// Reads answered 400 "project is archived" and taken as empty lists.
    pub archived_reads: u64,
    /// `complete`, `partial` (some scopes failed) or `failed` (the project list failed).
    pub status: SnapshotStatus,
    /// When the last read ended.
    pub finished_at: DateTime<Utc>,
}

/// Why a crawl stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// 401 or 403 on the first read (the project list): nothing can be read with this key.
    /// Holds the client's `ClientError::KeyRefused`, whose message says so.
    #[error(transparent)]
    KeyRefused(ClientError),
    /// The receiving end (the store) hung up; its own error says why.
    #[error("the store stopped accepting scope results")]
    ReceiverClosed,
}

/// Whether a progress bar makes sense: stderr is a terminal.
pub fn progress_wanted() -> bool {
    std::io::stderr().is_terminal()
}

/// A project as the rest of the crawl needs it; its JSON went to the store already.
struct ProjectRef {
    id: ProjectId,
    archived: bool,
}

struct Crawl<'a> {
    client: &'a AdminClient,
    tx: Sender<ScopeResult>,
    errors: AtomicU64,
    archived_reads: AtomicU64,
    bar: Option<indicatif::ProgressBar>,
}

/// Reads every scope of the organization and sends each result on `tx` as it completes.
/// `progress` draws a bar on stderr (pass [`progress_wanted`]). The report's figures count
/// this crawl only, even on a client that served earlier crawls (the daemon keeps one).
pub async fn collect(
    client: &AdminClient,
    tx: Sender<ScopeResult>,
    progress: bool,
) -> Result<CrawlReport, CollectError> {
    let baseline = client.stats();
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(1),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} scopes read, {elapsed}")
        {
            bar.set_style(style);
        }
        // Keeps the spinner moving through a long Retry-After pause.
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let crawl = Crawl {
        client,
        tx,
        errors: AtomicU64::new(0),
        archived_reads: AtomicU64::new(0),
        bar,
    };
    let result = crawl.run().await;
    if let Some(bar) = &crawl.bar {
        bar.finish_and_clear();
    }
    let status = result?;
    let mut stats = counted_since(client.stats(), &baseline);
    stats.errors = crawl.errors.load(Ordering::Relaxed);
    Ok(CrawlReport {
        stats,
        archived_reads: crawl.archived_reads.load(Ordering::Relaxed),
        status,
        finished_at: Utc::now(),
    })
}

/// The client's counters since `baseline`: its counters only grow, and a crawl's figures
/// must not include the crawls the same client served before.
fn counted_since(now: CrawlStats, baseline: &CrawlStats) -> CrawlStats {
    CrawlStats {
        requests: now.requests.saturating_sub(baseline.requests),
        errors: now.errors.saturating_sub(baseline.errors),
        retries: now.retries.saturating_sub(baseline.retries),
        rate_limited: now.rate_limited.saturating_sub(baseline.rate_limited),
        // A level, not a counter: where the client's concurrency stands now.
        concurrency: now.concurrency,
    }
}

impl Crawl<'_> {
    async fn run(&self) -> Result<SnapshotStatus, CollectError> {
        let scope = Scope {
            family: Family::Projects,
            project_id: None,
            parent_id: None,
        };
        let objects = match self.client.read_scope(&scope).await {
            Ok(objects) => objects,
            Err(error) => {
                self.fail(scope, error).await?;
                return Ok(SnapshotStatus::Failed);
            }
        };
        let projects = match project_refs(&objects) {
            Ok(projects) => projects,
            Err(message) => {
                let error = ClientError::Malformed {
                    path: scope.path(),
                    message,
                };
                self.fail(scope, error).await?;
                return Ok(SnapshotStatus::Failed);
            }
        };
        self.send(scope, ScopeOutcome::Complete(objects)).await?;
        if let Some(bar) = &self.bar {
            bar.inc_length(projects.len() as u64 * project_families().count() as u64);
        }
        // A bounded number of projects at once: enough requests ready to keep the
        // client's gate busy, while results waiting for the store stay few.
        let parallel = self.client.max_in_flight().saturating_mul(2).max(4);
        stream::iter(projects.into_iter().map(Ok))
            .try_for_each_concurrent(parallel, |project| self.project(project))
            .await?;
        Ok(if self.errors.load(Ordering::Relaxed) == 0 {
            SnapshotStatus::Complete
        } else {
            SnapshotStatus::Partial
        })
    }

    async fn project(&self, project: ProjectRef) -> Result<(), CollectError> {
        let reads = project_families().map(|family| self.family(&project, family));
        futures::future::try_join_all(reads).await?;
        Ok(())
    }

    /// Reads one family of one project, then the role assignments under its members.
    async fn family(&self, project: &ProjectRef, family: Family) -> Result<(), CollectError> {
        let scope = Scope {
            family,
            project_id: Some(project.id.clone()),
            parent_id: None,
        };
        let objects = match self.client.read_scope(&scope).await {
            Ok(objects) => objects,
            Err(error) if archived_and_empty(project, family, &error) => {
                tracing::debug!(path = %scope, "project is archived: no {family}");
                self.archived_reads.fetch_add(1, Ordering::Relaxed);
                Vec::new()
            }
            Err(error) => return self.fail(scope, error).await,
        };
        let parents = match object_ids(&scope, &objects) {
            Ok(ids) => ids,
            Err(error) => return self.fail(scope, error).await,
        };
        let child = Family::ALL.into_iter().find(|c| c.parent() == Some(family));
        let Some(child) = child else {
            return self.send(scope, ScopeOutcome::Complete(objects)).await;
        };
        // The parent's scope goes first, so the store knows who owns each child scope.
        self.send(scope, ScopeOutcome::Complete(objects)).await?;
        if let Some(bar) = &self.bar {
            bar.inc_length(parents.len() as u64);
        }
        let reads = parents.into_iter().map(|parent| {
            let scope = Scope {
                family: child,
                project_id: Some(project.id.clone()),
                parent_id: Some(parent),
            };
            self.leaf(scope)
        });
        futures::future::try_join_all(reads).await?;
        Ok(())
    }

    async fn leaf(&self, scope: Scope) -> Result<(), CollectError> {
        let read = self
            .client
            .read_scope(&scope)
            .await
            .and_then(|objects| object_ids(&scope, &objects).map(|_| objects));
        match read {
            Ok(objects) => self.send(scope, ScopeOutcome::Complete(objects)).await,
            Err(error) => self.fail(scope, error).await,
        }
    }

    /// Records a scope that could not be read, or stops the crawl when the key is refused
    /// on the first read.
    async fn fail(&self, scope: Scope, error: ClientError) -> Result<(), CollectError> {
        let message = match error {
            // The project list is the first read: refused there, nothing can be read.
            refused @ ClientError::KeyRefused { .. } if scope.family == Family::Projects => {
                return Err(CollectError::KeyRefused(refused));
            }
            // The key already read the project list, so it is an admin key: a later 401/403
            // is this one resource refusing, and the rest of the organization still counts.
            ClientError::KeyRefused { status, ref path } => format!(
                "GET {path}: HTTP {status}: the Admin API refused this read \
                 (the same key read the project list)"
            ),
            ref other => other.to_string(),
        };
        self.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("{message}");
        let outcome = ScopeOutcome::Failed(ScopeError {
            status: error.status(),
            message,
        });
        self.send(scope, outcome).await
    }

    async fn send(&self, scope: Scope, outcome: ScopeOutcome) -> Result<(), CollectError> {
        self.tx
            .send(ScopeResult { scope, outcome })
            .await
            .map_err(|_| CollectError::ReceiverClosed)?;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        Ok(())
    }
}

/// The families read once per project (role assignments hang under users and groups).
fn project_families() -> impl Iterator<Item = Family> {
    Family::ALL
        .into_iter()
        .filter(|f| f.parent() == Some(Family::Projects))
}

/// The spec answers 400 "project is archived" to the user and service-account lists of
/// an archived project: nobody can be there, so the scope is read, and empty.
fn archived_and_empty(project: &ProjectRef, family: Family, error: &ClientError) -> bool {
    project.archived
        && matches!(
            family,
            Family::ProjectUsers | Family::ProjectServiceAccounts
        )
        && matches!(error, ClientError::Status { status: 400, message, .. }
            if message.to_ascii_lowercase().contains("archived"))
}

/// The id of every object of a complete read, by the rule the store keys them with. An
/// object without one fails the whole scope: stored, it could not be told apart from the
/// others, and the scope's objects would be wrongly marked gone or duplicated.
fn object_ids(scope: &Scope, objects: &[Value]) -> Result<Vec<String>, ClientError> {
    objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            scope
                .family
                .object_id(object, scope.project_id.as_ref())
                .ok_or_else(|| ClientError::Malformed {
                    path: scope.path(),
                    message: missing_id(scope.family, i),
                })
        })
        .collect()
}

fn missing_id(family: Family, index: usize) -> String {
    format!(
        "data[{index}] has no \"{}\" (a non-empty string)",
        family.id_field().unwrap_or("id")
    )
}

fn project_refs(objects: &[Value]) -> Result<Vec<ProjectRef>, String> {
    objects
        .iter()
        .enumerate()
        .map(|(i, project)| {
            let id = Family::Projects
                .object_id(project, None)
                .ok_or_else(|| missing_id(Family::Projects, i))?;
            let archived = project.get("status").and_then(Value::as_str) == Some("archived");
            Ok(ProjectRef {
                id: ProjectId(id),
                archived,
            })
        })
        .collect()
}

/// What one snapshot run recorded.
#[derive(Debug)]
pub struct SnapshotOutcome {
    /// The stored snapshot (its status, counters and objects per view).
    pub info: SnapshotInfo,
    /// The scopes it could not read, with the reason (their objects were carried forward).
    pub failed_scopes: Vec<(Scope, String)>,
    /// Set when the API refused the key: the snapshot is recorded `failed`.
    pub refused: Option<CollectError>,
    /// Reads answered 400 "project is archived" and taken as empty lists.
    pub archived_reads: u64,
    /// Wall time of the crawl and commit.
    pub elapsed: Duration,
}

/// Why a snapshot could not be recorded at all.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The store failed; the snapshot's transaction was rolled back.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's writer thread died.
    #[error("the store's writer thread stopped: {0}")]
    Writer(String),
}

/// How many scope results may wait for the store: enough to keep the crawl going while
/// SQLite writes, few enough that the organization is never in memory twice.
const CHANNEL_DEPTH: usize = 64;

/// Crawls the organization into `store` as one snapshot named `org`: results stream to a
/// blocking writer thread that applies them in one transaction, committed with the
/// crawl's status. A refused key is recorded as a `failed` snapshot, not an error.
/// The caller holds the writer lock. The store comes back for further work (evaluation).
pub async fn snapshot(
    client: &AdminClient,
    store: Store,
    org: &str,
    progress: bool,
) -> Result<(Store, SnapshotOutcome), SnapshotError> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ScopeResult>(CHANNEL_DEPTH);
    let (done_tx, done_rx) =
        tokio::sync::oneshot::channel::<(CrawlStats, DateTime<Utc>, SnapshotStatus)>();
    let org = org.to_owned();
    let baseline = client.stats();
    // The organization's costs are read beside the crawl and stored with its snapshot.
    let costs_window = crate::costs::window(client, &store, started_at)?;
    let (costs_tx, costs_rx) = tokio::sync::oneshot::channel::<crate::costs::CostsRead>();
    let writer = tokio::task::spawn_blocking(move || {
        let mut store = store;
        let result = (|| {
            let mut writer = store.begin_snapshot(&org, started_at)?;
            while let Some(result) = rx.blocking_recv() {
                writer.apply(result)?;
            }
            let info = match done_rx.blocking_recv() {
                Ok((stats, finished_at, status)) => {
                    if let Ok(read) = costs_rx.blocking_recv() {
                        writer.apply_costs(&read)?;
                    }
                    writer.finish(&stats, finished_at, status)?
                }
                // The crawl ended without a verdict: dropping the writer rolls back.
                Err(_) => return Ok(None),
            };
            // Read here, on the blocking thread, like every other store access.
            let failed_scopes = store.failed_scopes(info.id)?;
            Ok::<_, StoreError>(Some((info, failed_scopes)))
        })();
        (store, result)
    });
    let (crawl, costs) = tokio::join!(
        collect(client, tx, progress),
        crate::costs::read_window(client, costs_window)
    );
    let mut archived_reads = 0;
    let refused = match crawl {
        Ok(mut report) => {
            archived_reads = report.archived_reads;
            if let Some(costs) = &costs {
                costs.count_into(&mut report.stats, &mut report.status);
            }
            let _ = done_tx.send((report.stats, report.finished_at, report.status));
            None
        }
        Err(error @ CollectError::KeyRefused(_)) => {
            let mut stats = counted_since(client.stats(), &baseline);
            stats.errors = 1;
            let _ = done_tx.send((stats, Utc::now(), SnapshotStatus::Failed));
            Some(error)
        }
        // The writer stopped first; its own error is the one to report.
        Err(CollectError::ReceiverClosed) => None,
    };
    // Sent or dropped before waiting: the writer waits for it after the verdict.
    match costs {
        Some(costs) => drop(costs_tx.send(costs)),
        None => drop(costs_tx),
    }
    let (store, result) = writer
        .await
        .map_err(|e| SnapshotError::Writer(e.to_string()))?;
    let (info, failed_scopes) =
        result?.ok_or_else(|| SnapshotError::Writer("no snapshot was recorded".into()))?;
    let outcome = SnapshotOutcome {
        info,
        failed_scopes,
        refused,
        archived_reads,
        elapsed: clock.elapsed(),
    };
    Ok((store, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_families_cover_every_per_project_read_once() {
        let families: Vec<Family> = project_families().collect();
        assert_eq!(families.len(), 11);
        assert!(!families.contains(&Family::Projects));
        assert!(!families.contains(&Family::ProjectUserRoles));
        assert!(!families.contains(&Family::ProjectGroupRoles));
    }

    #[test]
    fn archived_400_counts_only_for_people_lists_of_archived_projects() {
        let archived = ProjectRef {
            id: ProjectId::from("proj_old"),
            archived: true,
        };
        let active = ProjectRef {
            id: ProjectId::from("proj_new"),
            archived: false,
        };
        let error = ClientError::Status {
            path: "/organization/projects/proj_old/users".into(),
            status: 400,
            message: "Project is archived".into(),
        };
        assert!(archived_and_empty(&archived, Family::ProjectUsers, &error));
        assert!(archived_and_empty(
            &archived,
            Family::ProjectServiceAccounts,
            &error
        ));
        assert!(!archived_and_empty(
            &archived,
            Family::ProjectApiKeys,
            &error
        ));
        assert!(!archived_and_empty(&active, Family::ProjectUsers, &error));
        let other = ClientError::Status {
            path: "/organization/projects/proj_old/users".into(),
            status: 400,
            message: "invalid limit".into(),
        };
        assert!(!archived_and_empty(&archived, Family::ProjectUsers, &other));
    }

    #[test]
    fn a_project_without_an_id_is_named_by_its_index() {
        let objects = vec![
            serde_json::json!({"id": "proj_a", "status": "active"}),
            serde_json::json!({"name": "x"}),
        ];
        let err = project_refs(&objects).err().expect("error");
        assert!(err.contains("data[1]"), "{err}");
    }
}
