//! The collector: reads the whole organization through the [`AdminClient`] and streams
//! one [`ScopeResult`] per read to the store, so the organization is never held in
//! memory whole.
//!
//! Order on the channel: each scope as its read ends. The reads under a list's objects
//! (each page of projects' families, their members' roles, a group's members) start page
//! by page, so their scopes can reach the store before the list's own, which the store
//! does not mind (see [`Crawl::family`] and [`Crawl::run`]). Scopes under a parent that
//! could not be read are not sent at all: the store carries them forward. The
//! organization's own families are read alongside the projects, once the project list's
//! first page has shown the key can read them; its admin-key list is sent last, once
//! every project's keys are known (see [`Crawl::admin_keys`]).

use std::borrow::Borrow;
use std::collections::{HashSet, VecDeque};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::mpsc::Sender;

use crate::audit_log::AuditEvent;
use crate::audit_log::read::AuditLogRead;
use crate::client::{AdminClient, ClientError};
use crate::model::{
    ApiRate, CrawlStats, Family, Objects, ProjectId, Scope, ScopeError, ScopeOutcome, ScopeResult,
    SnapshotStatus,
};
use crate::store::{SnapshotInfo, Store, StoreError};

/// Error answers the spec gives for an empty or unset state, which the crawl reads as
/// such; counted so that `/metrics` can keep them apart from client errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpectedAnswers {
    /// 400 "project is archived" to a people list of an archived project, read as empty.
    pub archived: u64,
    /// 404 to a spend-limit read, read as no limit set.
    pub unset_spend_limits: u64,
}

/// How one crawl went.
#[derive(Clone, Debug, PartialEq)]
pub struct CrawlReport {
    /// Requests, retries, 429s and failed scopes of this crawl only.
    pub stats: CrawlStats,
    /// The error answers it expected and read as empty or unset.
    pub expected: ExpectedAnswers,
    /// `complete`, `partial` (some scopes failed) or `failed` (the project list failed).
    pub status: SnapshotStatus,
    /// When the last read ended.
    pub finished_at: DateTime<Utc>,
}

/// Why a crawl stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// 401 or 403 on the first read (the project list), or on the project list read again
    /// after a later read was refused (the key was revoked mid-crawl): nothing can be read
    /// with this key. Holds the client's `ClientError::KeyRefused`, whose message says so.
    #[error(transparent)]
    KeyRefused(ClientError),
    /// The receiving end (the store) hung up; its own error says why.
    #[error("the store stopped accepting scope results")]
    ReceiverClosed,
}

/// Whether a progress bar makes sense: stderr is a terminal that can redraw a line (not
/// `TERM=dumb`, which shows the bar's escape codes as text).
pub fn progress_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// A project as the rest of the crawl needs it; its JSON went to the store already.
struct ProjectRef {
    id: ProjectId,
    archived: bool,
}

/// Why the crawl's two halves (the project list, and the reads it fans out to) stop
/// each other.
enum Stop {
    /// The project list could not be read: whatever else was read, the snapshot fails.
    ListFailed(ClientError),
    /// The crawl itself stopped (the store hung up).
    Collect(CollectError),
}

struct Crawl<'a> {
    client: &'a AdminClient,
    tx: Sender<ScopeResult>,
    errors: AtomicU64,
    archived_reads: AtomicU64,
    unset_spend_limits: AtomicU64,
    bar: Option<indicatif::ProgressBar>,
    /// Families not read (`[collect] skip` and the families under them).
    skipped: HashSet<Family>,
    /// The id of every project API key this crawl read: the admin-key list may carry
    /// them, and they are not admin keys.
    project_keys: Mutex<HashSet<String>>,
    /// Whether the log has said the crawl ran out of time: said once, not once for each of
    /// the thousands of scopes it leaves unread.
    out_of_time_said: AtomicBool,
    /// How many project API-key lists failed: the admin-key list carries their keys too,
    /// and without them it cannot be told which of its entries are admin keys.
    project_keys_unread: AtomicU64,
    /// The families a 401/403 refused so far: each is logged (and the key checked) once,
    /// not once for each of a thousand projects.
    refused_families: Mutex<HashSet<Family>>,
    /// The families a 404 answered so far: each is logged once, as a refused one is.
    missing_families: Mutex<HashSet<Family>>,
}

/// The families `[collect] skip` names and every family read under one of them; the
/// project list is never skipped (every project family hangs under it).
pub fn skipped_families(skip: &[Family]) -> HashSet<Family> {
    Family::ALL
        .into_iter()
        .filter(|family| {
            let mut at = Some(*family);
            while let Some(f) = at.filter(|f| *f != Family::Projects) {
                if skip.contains(&f) {
                    return true;
                }
                at = f.parent();
            }
            false
        })
        .collect()
}

/// Reads every scope of the organization and sends each result on `tx` as it completes.
/// `progress` draws a bar on stderr (pass [`progress_wanted`]). The report's figures count
/// this crawl only, even on a client that served earlier crawls (the daemon keeps one).
pub async fn collect(
    client: &AdminClient,
    tx: Sender<ScopeResult>,
    progress: bool,
) -> Result<CrawlReport, CollectError> {
    collect_skipping(client, tx, progress, &[]).await
}

/// [`collect`], leaving out the families in `skip` (`[collect] skip`) and those under them:
/// they are neither read nor sent, so the store carries their objects forward.
pub async fn collect_skipping(
    client: &AdminClient,
    tx: Sender<ScopeResult>,
    progress: bool,
    skip: &[Family],
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
        unset_spend_limits: AtomicU64::new(0),
        bar,
        skipped: skipped_families(skip),
        project_keys: Mutex::new(HashSet::new()),
        out_of_time_said: AtomicBool::new(false),
        project_keys_unread: AtomicU64::new(0),
        refused_families: Mutex::new(HashSet::new()),
        missing_families: Mutex::new(HashSet::new()),
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
        expected: ExpectedAnswers {
            archived: crawl.archived_reads.load(Ordering::Relaxed),
            unset_spend_limits: crawl.unset_spend_limits.load(Ordering::Relaxed),
        },
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
    /// The project list first, then everything else. The reads under each page of
    /// projects, and the organization's own reads, start as soon as the list's first page
    /// has come back, not after its last: the first page proves the key can read the
    /// organization, and each later page is a round trip in which nothing else would be
    /// read (1,000 projects are ten pages in a row). Should the list fail on a later page,
    /// the crawl stops there and the snapshot is `failed` (nothing of it is stored), as it
    /// was when the list was read whole first.
    async fn run(&self) -> Result<SnapshotStatus, CollectError> {
        let scope = Scope {
            family: Family::Projects,
            project_id: None,
            parent_id: None,
        };
        let (page_tx, page_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<ProjectRef>>();
        let list = async {
            let read = {
                let page_tx = page_tx;
                let mut showing = true;
                let mut on_page = |page: &[Value]| {
                    if !showing {
                        return;
                    }
                    match project_refs(page.iter()) {
                        Ok(projects) => showing = page_tx.send(projects).is_ok(),
                        // The whole list fails below for the same reason.
                        Err(_) => showing = false,
                    }
                };
                self.client.read_scope_paged(&scope, &mut on_page).await
            };
            let checked = read.and_then(|objects| match project_refs(objects.iter()) {
                Ok(_) => Ok(objects),
                Err(message) => Err(ClientError::Malformed {
                    path: scope.path(),
                    message,
                }),
            });
            match checked {
                Ok(objects) => self
                    .send(scope.clone(), ScopeOutcome::Complete(objects))
                    .await
                    .map_err(Stop::Collect),
                Err(error) => Err(Stop::ListFailed(error)),
            }
        };
        let rest = async {
            let mut page_rx = page_rx;
            // None: the list failed before its first page, and `list` says how.
            let Some(first) = page_rx.recv().await else {
                return Ok(None);
            };
            if let Some(bar) = &self.bar {
                bar.inc_length(count(self.org_families().count()));
            }
            let pages = stream::once(async move { first })
                .chain(stream::unfold(page_rx, |mut page_rx| async move {
                    page_rx.recv().await.map(|page| (page, page_rx))
                }))
                .boxed();
            let projects = self.projects(pages);
            let organization = self.organization();
            let admin_keys = self.read_admin_keys();
            // The organization's own reads go alongside the projects', through the same
            // gate, and join its line first (`join!` polls in order): they are few, and
            // its member list is the longest chain of pages in the crawl, with a role read
            // per member waiting on its end. Queued behind every project's reads, it began
            // 9 s into a 16 s crawl in the benchmark, and the crawl ended on its role reads
            // alone.
            let (organization, admin_keys, projects) =
                futures::join!(organization, admin_keys, projects);
            projects.map_err(Stop::Collect)?;
            organization.map_err(Stop::Collect)?;
            Ok(Some(admin_keys))
        };
        // A failed list stops the rest at once: the snapshot is failed whatever they read.
        match futures::future::try_join(list, rest).await {
            // A list read whole shows every page, so this cannot be; were it ever, nothing
            // was read under the list, and a snapshot stored from that would call the
            // objects it carried forward unread a complete read: failed, it changes nothing.
            Ok(((), None)) => {
                tracing::error!("the project list was read but none of its pages was seen");
                Ok(SnapshotStatus::Failed)
            }
            Ok(((), Some(admin_keys))) => {
                if let Some((scope, read)) = admin_keys {
                    self.admin_keys(scope, read).await?;
                }
                Ok(if self.errors.load(Ordering::Relaxed) == 0 {
                    SnapshotStatus::Complete
                } else {
                    SnapshotStatus::Partial
                })
            }
            Err(Stop::Collect(error)) => Err(error),
            Err(Stop::ListFailed(error)) => {
                self.fail(scope, error).await?;
                Ok(SnapshotStatus::Failed)
            }
        }
    }

    /// Every project's families, the projects coming a page at a time. Boxed as `Send`
    /// here, where its lifetimes are plain: the compiler cannot prove the stream's closures
    /// `Send` for every lifetime once the stream is polled beside other futures.
    fn projects(
        &self,
        pages: BoxStream<'static, Vec<ProjectRef>>,
    ) -> BoxFuture<'_, Result<(), CollectError>> {
        // A bounded number of projects at once: enough requests ready to keep the
        // client's gate busy, while results waiting for the store stay few.
        let parallel = self.client.max_in_flight().saturating_mul(2).max(4);
        let per_project = self.project_families().count();
        pages
            .flat_map(move |page| {
                if let Some(bar) = &self.bar {
                    bar.inc_length(count(page.len().saturating_mul(per_project)));
                }
                stream::iter(page.into_iter().map(Ok))
            })
            .try_for_each_concurrent(parallel, |project| self.project(project))
            .boxed()
    }

    /// The organization's own families but its admin-key list (see [`Crawl::admin_keys`]).
    fn organization(&self) -> BoxFuture<'_, Result<(), CollectError>> {
        let families: Vec<Family> = self
            .org_families()
            .filter(|f| *f != Family::OrgAdminApiKeys)
            .collect();
        futures::future::try_join_all(
            families
                .into_iter()
                .map(|family| self.family(None, false, family)),
        )
        .map(|joined| joined.map(|_| ()))
        .boxed()
    }

    async fn project(&self, project: ProjectRef) -> Result<(), CollectError> {
        let families: Vec<Family> = self.project_families().collect();
        let reads = families
            .into_iter()
            .map(|family| self.family(Some(project.id.clone()), project.archived, family));
        futures::future::try_join_all(reads).await?;
        Ok(())
    }

    /// The families read once per project (role assignments hang under users and groups).
    fn project_families(&self) -> impl Iterator<Item = Family> + '_ {
        project_families().filter(|f| !self.skipped.contains(f))
    }

    /// The organization's own families read once per crawl (roles and members hang under
    /// its users and groups).
    fn org_families(&self) -> impl Iterator<Item = Family> + '_ {
        org_families().filter(|f| !self.skipped.contains(f))
    }

    /// Reads one family of one project (or of the organization itself, `project` `None`),
    /// and every family read under its objects. `archived`: the project is archived.
    ///
    /// The reads under each page of the list start as the page arrives: a long list's
    /// pages are a chain of round trips, and what hangs under it need not wait for its
    /// last page (3,000 members, 30 pages at 400 ms, held a crawl to 2.6 times its bound
    /// while their role reads waited). So a scope under a list can reach the store before
    /// the list's own, which the store does not mind: each scope is applied on its own,
    /// and what is gone with its parent is settled when the snapshot is finished. Holding
    /// them back instead cost memory in proportion to the organization (16-25 MiB more at
    /// 1,000 projects and 6,000 members read at full speed). A list that fails on a later
    /// page is failed as before; the reads under its earlier pages stand, each a complete
    /// read of its own scope.
    async fn family(
        &self,
        project: Option<ProjectId>,
        archived: bool,
        family: Family,
    ) -> Result<(), CollectError> {
        let scope = Scope {
            family,
            project_id: project,
            parent_id: None,
        };
        let children: Vec<Family> = family
            .children()
            .filter(|c| !self.skipped.contains(c))
            .collect();
        if children.is_empty() {
            // Most families have nothing under them: no pages to pass on, nor a channel
            // to pass them on, nor the future that does (a crawl reads thousands of
            // families at once; the channels alone were 7 MiB at 1,000 projects).
            let read = self.read_ids(&scope, &mut |_| {}).await;
            return self.list_read(&scope, archived, read).await.map(|_| ());
        }
        Box::pin(self.family_tree(scope, archived, children)).await
    }

    /// [`Crawl::family`] of a family with `children` read under its objects.
    async fn family_tree(
        &self,
        scope: Scope,
        archived: bool,
        children: Vec<Family>,
    ) -> Result<(), CollectError> {
        let (page_tx, mut page_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<String>>();
        let list = async {
            let read = {
                let page_tx = page_tx;
                let mut showing = true;
                let mut on_ids = |ids: &[String]| {
                    if showing {
                        showing = page_tx.send(ids.to_vec()).is_ok();
                    }
                };
                self.read_ids(&scope, &mut on_ids).await
            };
            self.list_read(&scope, archived, read).await
        };
        // How many of the list's objects had the reads under them started, in order.
        let mut started = 0usize;
        // A bounded number of the reads under it at once, the rest waiting as scopes: a
        // read waiting at the gate is a kilobyte, and an organization's member list puts
        // one under every member (30,000 members held 32 MiB of them). Bounded like the
        // projects, enough to keep the gate busy on their own; the order among the reads
        // waiting at the gate changes, not how many it has to choose from.
        let at_once = self.client.max_in_flight().saturating_mul(2).max(4);
        let under_pages = async {
            let mut running = FuturesUnordered::new();
            let mut waiting: VecDeque<Scope> = VecDeque::new();
            let mut pages_open = true;
            loop {
                while running.len() < at_once {
                    let Some(child) = waiting.pop_front() else {
                        break;
                    };
                    running.push(self.leaf(child));
                }
                tokio::select! {
                    ids = page_rx.recv(), if pages_open => match ids {
                        Some(ids) => {
                            started += ids.len();
                            waiting.extend(self.child_scopes(&scope, &children, &ids));
                        }
                        None => pages_open = false,
                    },
                    Some(done) = running.next(), if !running.is_empty() => done?,
                    else => break,
                }
            }
            Ok::<(), CollectError>(())
        };
        let (parents, under_pages) = futures::join!(list, under_pages);
        under_pages?;
        let Some(parents) = parents? else {
            return Ok(());
        };
        // What no page showed (a read of one object has no pages) is read now.
        let rest = self.child_scopes(&scope, &children, parents.get(started..).unwrap_or(&[]));
        stream::iter(rest.into_iter().map(Ok))
            .try_for_each_concurrent(at_once, |scope| self.leaf(scope))
            .await
    }

    /// Reads `scope` and its objects' ids, taken from each page while it is still parsed:
    /// once read, the objects are held as text (see [`Objects`]), and taking the ids from
    /// that would parse every object once more. `on_ids` is shown each page's ids as it
    /// arrives. An object without its id fails the read.
    async fn read_ids(
        &self,
        scope: &Scope,
        on_ids: &mut (dyn FnMut(&[String]) + Send),
    ) -> Result<(Objects, Vec<String>), ClientError> {
        let mut ids = Vec::new();
        let mut unnamed = None;
        let mut paged = false;
        let read = self
            .client
            .read_scope_paged(scope, &mut |page: &[Value]| {
                paged = true;
                if unnamed.is_some() {
                    return;
                }
                match object_ids_from(scope, page.iter(), ids.len()) {
                    Ok(more) => {
                        on_ids(&more);
                        ids.extend(more);
                    }
                    Err(error) => unnamed = Some(error),
                }
            })
            .await;
        let objects = read?;
        if let Some(error) = unnamed {
            return Err(error);
        }
        // A read of one object has no pages.
        if !paged {
            ids = object_ids(scope, objects.iter())?;
        }
        Ok((objects, ids))
    }

    /// Sends a list's `read` of `scope` to the store, complete or failed; the ids of its
    /// objects when complete. `archived`: the project is archived.
    async fn list_read(
        &self,
        scope: &Scope,
        archived: bool,
        read: Result<(Objects, Vec<String>), ClientError>,
    ) -> Result<Option<Vec<String>>, CollectError> {
        let family = scope.family;
        let read = match read {
            Err(error) if archived && archived_and_empty(family, &error) => {
                tracing::debug!(path = %scope, "project is archived: no {family}");
                self.archived_reads.fetch_add(1, Ordering::Relaxed);
                Ok((Objects::new(), Vec::new()))
            }
            Err(error) if unset_spend_limit(family, &error) => {
                tracing::debug!(path = %scope, "no spend limit is set");
                self.unset_spend_limits.fetch_add(1, Ordering::Relaxed);
                Ok((Objects::new(), Vec::new()))
            }
            other => other,
        };
        let (objects, parents) = match read {
            Ok(found) => found,
            Err(error) => {
                self.fail(scope.clone(), error).await?;
                return Ok(None);
            }
        };
        if family == Family::ProjectApiKeys {
            self.project_keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(parents.iter().cloned());
        }
        self.send(scope.clone(), ScopeOutcome::Complete(objects))
            .await?;
        Ok(Some(parents))
    }

    /// The scopes of `children` under each of `parents` (objects of `scope`), counted
    /// into the progress bar.
    fn child_scopes(&self, scope: &Scope, children: &[Family], parents: &[String]) -> Vec<Scope> {
        if let Some(bar) = &self.bar {
            bar.inc_length(count(parents.len().saturating_mul(children.len())));
        }
        let mut scopes = Vec::with_capacity(parents.len().saturating_mul(children.len()));
        for child in children {
            for parent in parents {
                scopes.push(Scope {
                    family: *child,
                    project_id: scope.project_id.clone(),
                    parent_id: Some(parent.clone()),
                });
            }
        }
        scopes
    }

    /// Reads the organization's admin-key list, unless it is skipped; it is sent by
    /// [`Crawl::admin_keys`] once the project crawl is over.
    async fn read_admin_keys(&self) -> Option<(Scope, Result<Objects, ClientError>)> {
        if self.skipped.contains(&Family::OrgAdminApiKeys) {
            return None;
        }
        let scope = Scope {
            family: Family::OrgAdminApiKeys,
            project_id: None,
            parent_id: None,
        };
        let read = self
            .client
            .read_scope(&scope)
            .await
            .and_then(|objects| object_ids(&scope, objects.iter()).map(|_| objects));
        Some((scope, read))
    }

    /// Sends the admin-key list without the project API keys it carries: the API lists
    /// a project's keys there too, and they are not admin keys (they are in
    /// `project_api_keys`). Called after every project was read, so the filter does not
    /// depend on which read finished first.
    async fn admin_keys(
        &self,
        scope: Scope,
        read: Result<Objects, ClientError>,
    ) -> Result<(), CollectError> {
        let objects = match read {
            Ok(objects) => objects,
            Err(error) => return self.fail(scope, error).await,
        };
        let kept = {
            let project_keys = self
                .project_keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            drop_project_keys(objects, &project_keys)
        };
        // Stored, a failed project's keys would be admin keys for this run (new findings
        // about keys that are not admin keys, resolved on the next run): unless nothing is
        // left to mistake, the list is failed instead, and the admin keys last read stand.
        let unread = self.project_keys_unread.load(Ordering::Relaxed);
        if unread > 0 && !kept.is_empty() {
            let message = format!(
                "GET {}: not stored: the list carries project API keys too, and {unread} \
                 project key list(s) could not be read, so their keys cannot be told from \
                 admin keys",
                scope.path()
            );
            self.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("{message}");
            let outcome = ScopeOutcome::Failed(ScopeError {
                status: None,
                message,
            });
            return self.send(scope, outcome).await;
        }
        self.send(scope, ScopeOutcome::Complete(kept)).await
    }

    async fn leaf(&self, scope: Scope) -> Result<(), CollectError> {
        let read = self
            .read_ids(&scope, &mut |_| {})
            .await
            .map(|(objects, _)| objects);
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
            // is this key refused this one family, and the rest of the organization still
            // counts. Saying how to stop reading it turns a failure on every run into a
            // choice.
            ClientError::KeyRefused {
                status, ref path, ..
            } => {
                let first = first_time(&self.refused_families, scope.family);
                // A key revoked or rotated mid-crawl is refused by every read that follows:
                // the project list, which the key read at the start, tells that from a
                // key that may not read this one family. Refused there too, the crawl
                // stops as if the list had been refused first, instead of sending
                // thousands of requests into the same refusal.
                if first && let Err(refused) = self.client.probe_key().await {
                    return Err(CollectError::KeyRefused(refused));
                }
                let family = scope.family.view();
                let message = format!(
                    "GET {path}: HTTP {status}: the Admin API refused this read: this key may \
                     not read {family}; to stop reading it, add \"{family}\" to [collect] skip"
                );
                say_once(first, &message, &format!("refusals of {family}"));
                return self.record_failure(scope, error.status(), message).await;
            }
            // The project list is what every Admin API serves: a 404 there is a base URL
            // that is not one (`/v1` left out or doubled, another host), not a missing list.
            ClientError::Status { status: 404, .. } if scope.family == Family::Projects => {
                format!(
                    "{error}: this base URL does not serve the Admin API; check `[openai] \
                     base_url` or --base-url: the Admin API's is https://api.openai.com/v1, \
                     with `/v1` once at its end"
                )
            }
            // Any other family that answers 404 is one this API does not serve here: a
            // feature withdrawn or not offered to this organization's plan, which fails
            // every run until someone decides; or an object removed while the crawl read
            // what hangs under it, which the next run does not meet again. Said once per
            // family, with the way out, not once for each of a thousand projects.
            ClientError::Status { status: 404, .. } => {
                let first = first_time(&self.missing_families, scope.family);
                let family = scope.family.view();
                let message = format!(
                    "{error}: {family} was not found here: what it belongs to was removed \
                     during the read, or the Admin API does not serve {family} (a feature \
                     withdrawn, or not offered to this organization); if every run says so, \
                     add \"{family}\" to [collect] skip"
                );
                say_once(first, &message, &format!("404s of {family}"));
                return self.record_failure(scope, error.status(), message).await;
            }
            ref other => other.to_string(),
        };
        if let ClientError::OutOfTime { limit, .. } = error {
            if !self.out_of_time_said.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the snapshot reached its time limit ([openai] snapshot_timeout = \
                     \"{limit}\"): every read not finished fails its scope, and the \
                     snapshot is partial"
                );
            }
        } else {
            tracing::warn!("{message}");
        }
        self.record_failure(scope, error.status(), message).await
    }

    /// Counts a scope that could not be read and sends it as failed.
    async fn record_failure(
        &self,
        scope: Scope,
        status: Option<u16>,
        message: String,
    ) -> Result<(), CollectError> {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if scope.family == Family::ProjectApiKeys {
            self.project_keys_unread.fetch_add(1, Ordering::Relaxed);
        }
        let outcome = ScopeOutcome::Failed(ScopeError { status, message });
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

/// The organization's own families read once per crawl: every family with no parent but
/// the project list.
fn org_families() -> impl Iterator<Item = Family> {
    Family::ALL
        .into_iter()
        .filter(|f| f.parent().is_none() && *f != Family::Projects)
}

/// A progress-bar length from a count of scopes.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A spend limit that is not set is answered 404 (`spend_limit_not_found`): the read is
/// complete, and there is no limit to store.
fn unset_spend_limit(family: Family, error: &ClientError) -> bool {
    matches!(family, Family::ProjectSpendLimits | Family::OrgSpendLimit)
        && error.status() == Some(404)
}

/// The admin-key list without the entries whose id is a project API key's.
fn drop_project_keys(mut objects: Objects, project_keys: &HashSet<String>) -> Objects {
    objects.retain(|key| {
        let id = key.get("id").and_then(Value::as_str).unwrap_or_default();
        let project_key = project_keys.contains(id);
        if project_key {
            tracing::debug!(
                id,
                "the admin-key list carries project API key {id}: not an admin key"
            );
        }
        !project_key
    });
    objects
}

/// The spec answers 400 ("Error response when project is archived") to the user and
/// service-account lists of an archived project: nobody can be there, so the scope is
/// read, and empty. Only called for a project its list says is archived; the spec gives
/// no wording for the message, so any 400 counts (a 400 for another cause, such as a bad
/// `limit`, would fail the active projects' lists too, where it is not excused).
fn archived_and_empty(family: Family, error: &ClientError) -> bool {
    matches!(
        family,
        Family::ProjectUsers | Family::ProjectServiceAccounts
    ) && matches!(error, ClientError::Status { status: 400, .. })
}

/// The id of every object of a complete read, by the rule the store keys them with. An
/// object without one fails the whole scope: stored, it could not be told apart from the
/// others, and the scope's objects would be wrongly marked gone or duplicated.
fn object_ids<V: Borrow<Value>>(
    scope: &Scope,
    objects: impl Iterator<Item = V>,
) -> Result<Vec<String>, ClientError> {
    object_ids_from(scope, objects, 0)
}

/// [`object_ids`] of a page whose first object is the list's `offset`th, so that an
/// object without its id is named by its place in the whole list.
fn object_ids_from<V: Borrow<Value>>(
    scope: &Scope,
    objects: impl Iterator<Item = V>,
    offset: usize,
) -> Result<Vec<String>, ClientError> {
    objects
        .enumerate()
        .map(|(i, object)| {
            scope
                .family
                .object_id(object.borrow(), scope.project_id.as_ref())
                .ok_or_else(|| ClientError::Malformed {
                    path: scope.path(),
                    message: missing_id(scope.family, offset + i),
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

/// The projects of a page (or of the whole list), or what names the first without an id.
fn project_refs<V: Borrow<Value>>(
    objects: impl Iterator<Item = V>,
) -> Result<Vec<ProjectRef>, String> {
    objects
        .enumerate()
        .map(|(i, project)| {
            let project = project.borrow();
            let id = Family::Projects
                .object_id(project, None)
                .ok_or_else(|| missing_id(Family::Projects, i))?;
            // `status` is nullable in the spec; when it is missing, a set `archived_at` says
            // the same thing, and the people lists will answer the archived project's 400.
            let archived = match project.get("status").and_then(Value::as_str) {
                Some(status) => status == "archived",
                None => project.get("archived_at").is_some_and(Value::is_i64),
            };
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
    /// The error answers the crawl expected and read as empty or unset.
    pub expected: ExpectedAnswers,
    /// Wall time of the crawl and commit.
    pub elapsed: Duration,
    /// The request rate the client found the API to allow, and its burst allowance (see
    /// [`AdminClient::learned_rate`]); the next crawl of the same API starts from them.
    pub rate_limit: Option<ApiRate>,
    /// Why the costs read failed, when it did: it is no scope, so `failed_scopes` does not
    /// name it, yet it makes the snapshot partial.
    pub costs_failure: Option<String>,
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

/// What the snapshot's writer thread receives: the crawl's scope results and the
/// audit-log read's pages, interleaved as they arrive.
enum WriterInput {
    /// One scope of the crawl.
    Scope(ScopeResult),
    /// One page of audit-log events.
    AuditEvents(Vec<AuditEvent>),
    /// The audit-log read ended (after its last page).
    AuditDone(AuditLogRead),
}

/// What the writer thread recorded, for the caller.
type Written = (SnapshotInfo, Vec<(Scope, String)>);

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
    snapshot_skipping(client, store, org, progress, &[]).await
}

/// [`snapshot`], leaving out the families in `skip` (`[collect] skip`): their stored
/// objects are carried forward unchanged, and they are not reported as failed.
pub async fn snapshot_skipping(
    client: &AdminClient,
    store: Store,
    org: &str,
    progress: bool,
    skip: &[Family],
) -> Result<(Store, SnapshotOutcome), SnapshotError> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let (tx, mut scope_rx) = tokio::sync::mpsc::channel::<ScopeResult>(CHANNEL_DEPTH);
    let (input_tx, input_rx) = tokio::sync::mpsc::channel::<WriterInput>(CHANNEL_DEPTH);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Verdict>();
    let baseline = client.stats();
    // What an earlier crawl of this API found it to allow: paced just under it from the
    // first request, this crawl has no ramp to climb.
    let api = client.api_fingerprint();
    let known = store.api_rate_limit(&api).unwrap_or_else(|e| {
        // Only a head start: without it the crawl finds the rate again, as the first did.
        tracing::warn!("starting without the rate an earlier crawl found: {e}");
        None
    });
    client.start_crawl(known);
    // The organization's costs and audit log are read beside the crawl and stored with
    // its snapshot.
    let costs_window = crate::costs::window(client, &store, started_at)?;
    let (costs_tx, costs_rx) = tokio::sync::oneshot::channel::<crate::costs::CostsRead>();
    let audit_since = crate::audit_log::read::since(client, &store, started_at.timestamp())?;
    let writer = spawn_writer(
        store,
        org.to_owned(),
        started_at,
        skipped_families(skip),
        (input_rx, done_rx, costs_rx),
    );
    let audit = read_audit_log(client, audit_since, started_at, input_tx.clone());
    // The crawl's results join the audit-log pages on the writer's one channel.
    let forward = async move {
        while let Some(result) = scope_rx.recv().await {
            if input_tx.send(WriterInput::Scope(result)).await.is_err() {
                break;
            }
        }
    };
    let (crawl, costs, audit, ()) = tokio::join!(
        collect_skipping(client, tx, progress, skip),
        crate::costs::read_window(client, costs_window),
        audit,
        forward
    );
    let mut expected = ExpectedAnswers::default();
    let refused = match crawl {
        Ok(mut report) => {
            expected = report.expected;
            // The costs and audit-log reads can end after the crawl (a first audit-log read
            // is a thousand pages): the snapshot's counters are the whole run's.
            let errors = report.stats.errors;
            report.stats = counted_since(client.stats(), &baseline);
            report.stats.errors = errors;
            if let Some(costs) = &costs {
                costs.count_into(&mut report.stats, &mut report.status);
            }
            if let Some(audit) = &audit {
                audit.count_into(&mut report.stats, &mut report.status);
            }
            let _ = done_tx.send(Verdict {
                stats: report.stats,
                finished_at: report.finished_at,
                status: report.status,
                rate_limit: client.learned_rate().map(|rate| (api, rate)),
            });
            None
        }
        Err(error @ CollectError::KeyRefused(_)) => {
            let mut stats = counted_since(client.stats(), &baseline);
            stats.errors = 1;
            let _ = done_tx.send(Verdict {
                stats,
                finished_at: Utc::now(),
                status: SnapshotStatus::Failed,
                rate_limit: client.learned_rate().map(|rate| (api, rate)),
            });
            Some(error)
        }
        // The writer stopped first; its own error is the one to report.
        Err(CollectError::ReceiverClosed) => None,
    };
    let costs_failure = costs.as_ref().and_then(|read| match &read.outcome {
        crate::costs::CostsOutcome::Failed(error) => Some(error.message.clone()),
        crate::costs::CostsOutcome::Complete(_) => None,
    });
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
        expected,
        elapsed: clock.elapsed(),
        rate_limit: client.learned_rate(),
        costs_failure,
    };
    Ok((store, outcome))
}

/// How the crawl ended, which the writer stores last, in the snapshot's transaction.
struct Verdict {
    stats: CrawlStats,
    finished_at: DateTime<Utc>,
    status: SnapshotStatus,
    /// The rate the client found the API (named by its fingerprint) to allow.
    rate_limit: Option<(String, ApiRate)>,
}

/// The receiving ends the writer thread waits on: the crawl's and audit log's inputs, the
/// crawl's verdict, and the costs read.
type WriterChannels = (
    tokio::sync::mpsc::Receiver<WriterInput>,
    tokio::sync::oneshot::Receiver<Verdict>,
    tokio::sync::oneshot::Receiver<crate::costs::CostsRead>,
);

/// The blocking thread that writes the snapshot: every input as it arrives, then the
/// costs and the verdict, in one transaction.
fn spawn_writer(
    store: Store,
    org: String,
    started_at: DateTime<Utc>,
    skipped: HashSet<Family>,
    (mut rx, done_rx, costs_rx): WriterChannels,
) -> tokio::task::JoinHandle<(Store, Result<Option<Written>, StoreError>)> {
    tokio::task::spawn_blocking(move || {
        let mut store = store;
        let result = (|| {
            let mut writer = store.begin_snapshot(&org, started_at)?;
            writer.record_skipped(skipped)?;
            let mut audit_stored = 0;
            while let Some(input) = rx.blocking_recv() {
                match input {
                    WriterInput::Scope(result) => writer.apply(result)?,
                    WriterInput::AuditEvents(events) => {
                        audit_stored += writer.store_audit_events(&events)?;
                    }
                    WriterInput::AuditDone(read) => {
                        writer.record_audit_log_read(&read, audit_stored)?;
                    }
                }
            }
            let info = match done_rx.blocking_recv() {
                Ok(verdict) => {
                    if let Ok(read) = costs_rx.blocking_recv() {
                        writer.apply_costs(&read)?;
                    }
                    if let Some((api, rate)) = &verdict.rate_limit {
                        writer.remember_rate_limit(api, *rate, verdict.finished_at)?;
                    }
                    writer.finish(&verdict.stats, verdict.finished_at, verdict.status)?
                }
                // The crawl ended without a verdict: dropping the writer rolls back.
                Err(_) => return Ok(None),
            };
            // Read here, on the blocking thread, like every other store access.
            let failed_scopes = store.failed_scopes(info.id)?;
            Ok::<_, StoreError>(Some((info, failed_scopes)))
        })();
        (store, result)
    })
}

/// Reads the audit log from `since` (none when `None`), sending its pages and then its
/// end to the writer.
async fn read_audit_log(
    client: &AdminClient,
    since: Option<i64>,
    started_at: DateTime<Utc>,
    tx: Sender<WriterInput>,
) -> Option<AuditLogRead> {
    let since = since?;
    let read = crate::audit_log::read::read(client, since, started_at.timestamp(), |events| {
        let tx = tx.clone();
        async move { tx.send(WriterInput::AuditEvents(events)).await.is_ok() }
    })
    .await;
    // The writer may be gone (its own error is the one reported).
    let _ = tx.send(WriterInput::AuditDone(read.clone())).await;
    Some(read)
}

/// Whether this is the first time `family` is added to `seen` in this crawl.
fn first_time(seen: &Mutex<HashSet<Family>>, family: Family) -> bool {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(family)
}

/// Logs a family's failure once a run as a warning, and its repeats (`repeats`: "404s of
/// project_certificates") at debug: a thousand projects make one line, not a thousand.
fn say_once(first: bool, message: &str, repeats: &str) {
    if first {
        tracing::warn!("{message} (further {repeats} in this run are not logged)");
    } else {
        tracing::debug!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_families_cover_every_per_project_read_once() {
        let families: Vec<Family> = project_families().collect();
        assert_eq!(families.len(), 12);
        assert!(families.contains(&Family::ProjectSpendLimits));
        assert!(!families.contains(&Family::Projects));
        assert!(!families.contains(&Family::ProjectUserRoles));
        assert!(!families.contains(&Family::ProjectGroupRoles));
        assert!(families.iter().all(|f| f.in_project()));
    }

    #[test]
    fn org_families_are_the_organization_s_own_top_level_reads() {
        let families: Vec<Family> = org_families().collect();
        assert_eq!(
            families,
            [
                Family::OrgUsers,
                Family::OrgInvites,
                Family::OrgAdminApiKeys,
                Family::OrgGroups,
                Family::OrgRoles,
                Family::OrgDataRetention,
                Family::OrgSpendLimit,
                Family::OrgSpendAlerts,
                Family::OrgCertificates,
            ]
        );
        // With the families under them, every family is read exactly one way.
        let under: usize = Family::ALL
            .iter()
            .filter(|f| f.parent().is_some_and(|p| p != Family::Projects))
            .count();
        assert_eq!(1 + 12 + families.len() + under, Family::ALL.len());
    }

    #[test]
    fn skipping_a_family_skips_the_families_under_it_but_never_the_project_list() {
        let skipped = skipped_families(&[Family::OrgGroups, Family::ProjectUsers]);
        let mut names: Vec<&str> = skipped.iter().map(|f| f.view()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "org_group_roles",
                "org_group_users",
                "org_groups",
                "project_user_roles",
                "project_users"
            ]
        );
        assert!(skipped_families(&[Family::Projects]).is_empty());
    }

    #[test]
    fn unset_spend_limits_are_404s_on_spend_limit_reads_only() {
        let not_found = ClientError::Status {
            path: "/organization/spend_limit".into(),
            status: 404,
            message: "No hard spend limit is set.".into(),
        };
        assert!(unset_spend_limit(Family::OrgSpendLimit, &not_found));
        assert!(unset_spend_limit(Family::ProjectSpendLimits, &not_found));
        assert!(!unset_spend_limit(Family::OrgInvites, &not_found));
        let failed = ClientError::Status {
            path: "/organization/spend_limit".into(),
            status: 500,
            message: "boom".into(),
        };
        assert!(!unset_spend_limit(Family::OrgSpendLimit, &failed));
    }

    #[test]
    fn project_keys_are_dropped_from_the_admin_key_list() {
        let listed = vec![
            serde_json::json!({"id": "key_admin", "object": "organization.admin_api_key"}),
            serde_json::json!({"id": "key_proj", "object": "organization.project.api_key"}),
        ];
        let project_keys = HashSet::from(["key_proj".to_owned()]);
        let kept = drop_project_keys(listed.into(), &project_keys);
        assert_eq!(
            kept.to_values(),
            [serde_json::json!({"id": "key_admin", "object": "organization.admin_api_key"})]
        );
    }

    #[test]
    fn archived_400_counts_only_for_people_lists() {
        let error = ClientError::Status {
            path: "/organization/projects/proj_old/users".into(),
            status: 400,
            message: "Project is archived".into(),
        };
        assert!(archived_and_empty(Family::ProjectUsers, &error));
        assert!(archived_and_empty(Family::ProjectServiceAccounts, &error));
        assert!(!archived_and_empty(Family::ProjectApiKeys, &error));
        // The spec documents the 400 without its wording: another one counts as well.
        let worded = ClientError::Status {
            path: "/organization/projects/proj_old/users".into(),
            status: 400,
            message: "Invalid request for this project".into(),
        };
        assert!(archived_and_empty(Family::ProjectUsers, &worded));
        let other = ClientError::Status {
            path: "/organization/projects/proj_old/users".into(),
            status: 404,
            message: "Project is archived".into(),
        };
        assert!(!archived_and_empty(Family::ProjectUsers, &other));
    }

    #[test]
    fn a_project_with_a_null_status_is_archived_when_its_archived_at_is_set() {
        let objects = [
            serde_json::json!({"id": "proj_a", "status": "archived", "archived_at": 5}),
            serde_json::json!({"id": "proj_b", "status": null, "archived_at": 5}),
            serde_json::json!({"id": "proj_c", "archived_at": 5}),
            serde_json::json!({"id": "proj_d", "status": null, "archived_at": null}),
            serde_json::json!({"id": "proj_e", "status": "active", "archived_at": null}),
        ];
        let archived: Vec<bool> = project_refs(objects.iter())
            .unwrap()
            .iter()
            .map(|p| p.archived)
            .collect();
        assert_eq!(archived, [true, true, true, false, false]);
    }

    #[test]
    fn a_project_without_an_id_is_named_by_its_index() {
        let objects = [
            serde_json::json!({"id": "proj_a", "status": "active"}),
            serde_json::json!({"name": "x"}),
        ];
        let err = project_refs(objects.iter()).err().expect("error");
        assert!(err.contains("data[1]"), "{err}");
    }
}
