//! The audit pipeline, in one place: snapshot → evaluate → reconcile → plan → outbox →
//! deliver. `audit`, `demo` and the daemon's job all run [`run`]; they differ only in
//! what they pass in ([`Inputs`], [`Source`]) and in how they show the [`Audited`] outcome.
//!
//! Every SQLite step runs on a blocking thread (`spawn_blocking`); only the crawl, which
//! waits on the network, runs on the async runtime.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::client::AdminClient;
use crate::collect::{self, SnapshotError, SnapshotOutcome};
use crate::daemon::DaemonError;
use crate::daemon::lock::LockError;
use crate::exemptions::Exemption;
use crate::findings::{self, Coverage, Finding, FindingsError, Reconciled, RuleMeta};
use crate::model::{Family, RuleId, SnapshotStatus};
use crate::notify::{Announcement, DeliveryReport, Notifier, NotifyError};
use crate::rules::{Rule, RuleSet};
use crate::store::{SnapshotInfo, Store, StoreError};

pub use crate::notify::outbox::Pass;

/// Why evaluating a snapshot and recording its findings failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A rule failed.
    #[error(transparent)]
    Rule(#[from] crate::rules::RuleError),
    /// Findings could not be read or written.
    #[error(transparent)]
    Findings(#[from] FindingsError),
    /// Notification failed (a digest could not be rendered or queued).
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

/// Why a run produced no snapshot to evaluate.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The crawl or the store's writing of it failed; nothing was stored.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Shutdown came first; the snapshot in flight was rolled back.
    #[error("abandoned at shutdown; the snapshot in flight was rolled back")]
    Cancelled,
    /// The database could not be opened.
    #[error("cannot open the database: {0}")]
    Open(StoreError),
    /// A blocking task stopped (it panicked).
    #[error("evaluation stopped: {0}")]
    Join(String),
}

/// How a run announces its findings.
#[derive(Clone, Copy, Debug)]
pub struct Announce<'a> {
    /// The configured notifier.
    pub notifier: &'a Notifier,
    /// The organization's name for the digest.
    pub organization: &'a str,
    /// Decide and render, but queue, mark, record and send nothing.
    pub dry_run: bool,
}

/// What one audit evaluates with, borrowed from whatever its caller keeps loaded.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The rules (the enabled ones are evaluated).
    pub rules: &'a RuleSet,
    /// The validated exemptions.
    pub exemptions: &'a [Exemption],
    /// Announce what changed, when notifying.
    pub announce: Option<Announce<'a>>,
    /// Which outbox messages to try after a successful evaluation (not on a dry run).
    pub delivery: Option<Pass>,
}

/// Whatever a caller keeps its rules and notifier in: the pipeline moves an `Arc` of it to
/// its blocking thread and borrows the [`Inputs`] there.
pub trait Setup: Send + Sync + 'static {
    /// The inputs of one run.
    fn inputs(&self) -> Inputs<'_>;
}

/// Where the snapshot comes from.
#[derive(Debug)]
pub enum Source<'a> {
    /// Crawl the organization now through `client`.
    Crawl {
        /// The Admin API client.
        client: &'a AdminClient,
        /// The organization's name, stored with the snapshot.
        organization: &'a str,
        /// Draw a progress bar on stderr.
        progress: bool,
        /// Families not read (`[collect] skip`).
        skip: &'a [Family],
    },
    /// Evaluate a snapshot already stored (`audit --offline`).
    Stored(Box<SnapshotInfo>),
}

/// What a run announced, when it notifies.
#[derive(Debug)]
pub struct Notified {
    /// The digest and the fingerprints it announced (nothing stored on a dry run).
    pub announcement: Announcement,
    /// Whether this was a dry run (decided and rendered, then rolled back).
    pub dry_run: bool,
}

/// What evaluating one snapshot produced.
#[derive(Debug)]
pub struct Evaluated {
    /// The snapshot evaluated.
    pub snapshot: SnapshotInfo,
    /// The transitions recorded.
    pub reconciled: Reconciled,
    /// The findings to report: open and exempt ones, and those this run resolved.
    pub findings: Vec<Finding>,
    /// What was announced, when the run notifies.
    pub notified: Option<Notified>,
    /// Rules that did not finish (stopped at their time budget, or failed as they ran):
    /// their findings were left as they were. The run is a failed one when this is not
    /// empty.
    pub unfinished: Vec<crate::rules::RuleError>,
}

/// The outcome of one run, for the caller to print or record.
#[derive(Debug)]
pub struct Audited {
    /// The crawl, when the run crawled.
    pub crawl: Option<SnapshotOutcome>,
    /// The snapshot the run evaluated (the crawl's, or the stored one).
    pub snapshot: SnapshotInfo,
    /// Evaluation, reconciliation and announcement (one transaction).
    pub evaluated: Result<Evaluated, AuditError>,
    /// The delivery pass, when one was asked for and evaluation succeeded.
    pub delivery: Option<Result<DeliveryReport, NotifyError>>,
}

/// Runs one audit: takes the snapshot (unless `source` is a stored one), then evaluates,
/// reconciles, announces and delivers on a blocking thread. `cancel` abandons the crawl
/// (rolling it back) and skips delivery; it or `interrupt` stops rule evaluation, which
/// then fails and records nothing.
pub async fn run<S: Setup>(
    store: Store,
    setup: Arc<S>,
    source: Source<'_>,
    cancel: &CancellationToken,
    interrupt: &CancellationToken,
) -> Result<Audited, PipelineError> {
    // A stored snapshot is judged as of when it was read: judged by today, a week-old
    // snapshot would make keys stale that may have been used since, and let audit-log
    // windows pass over events and resolve their findings with nothing read.
    let (store, crawl, snapshot, judged_at) = match source {
        Source::Stored(snapshot) => {
            let judged_at = snapshot.started_at;
            (store, None, *snapshot, Some(judged_at))
        }
        Source::Crawl {
            client,
            organization,
            progress,
            skip,
        } => {
            // Dropping the crawl drops the snapshot's writer, which rolls the transaction
            // back: an abandoned run leaves the previous snapshot as it was.
            let (store, crawl) = tokio::select! {
                crawl = collect::snapshot_skipping(client, store, organization, progress, skip) => crawl?,
                () = cancel.cancelled() => return Err(PipelineError::Cancelled),
            };
            let snapshot = crawl.info.clone();
            (store, Some(crawl), snapshot, None)
        }
    };
    // A rule can run for its whole budget: a signal must not wait for it, while the
    // crawl above is given its grace period.
    let stop = interrupt.child_token();
    let forward = tokio::spawn({
        let (cancel, stop) = (cancel.clone(), stop.clone());
        async move {
            cancel.cancelled().await;
            stop.cancel();
        }
    });
    let cancel = cancel.clone();
    let info = snapshot.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut store = store;
        let inputs = setup.inputs();
        // Said of a crawl; a stored snapshot was warned of when it was read. Missing fields
        // are said by the evaluation itself, offline too: they are why it resolves none of
        // the held rules' findings.
        if judged_at.is_none() {
            warn_of_odd_times(&store);
            warn_of_unknown_values(&store, info.id);
        }
        let now = Utc::now();
        let evaluated = evaluate_at(
            &mut store,
            &inputs,
            &info,
            (now, judged_at.unwrap_or(now)),
            &stop,
        );
        let delivery = match (&evaluated, inputs.delivery, inputs.announce) {
            (Ok(_), Some(pass), Some(announce)) if !announce.dry_run && !cancel.is_cancelled() => {
                // A signal stops it between two messages, as it stops a rule.
                Some(deliver(&store, announce.notifier, pass, Utc::now(), &stop))
            }
            _ => None,
        };
        store.warn_if_wal_pinned();
        (evaluated, delivery)
    })
    .await;
    forward.abort();
    let (evaluated, delivery) = joined.map_err(|e| PipelineError::Join(e.to_string()))?;
    Ok(Audited {
        crawl,
        snapshot,
        evaluated,
        delivery,
    })
}

/// Warns of each time column the crawl filled with values that are no Unix seconds: the
/// rules cannot judge those objects (a key whose `last_used_at` is in milliseconds is never
/// stale), and a silent miss would read as all clear.
fn warn_of_odd_times(store: &Store) {
    match store.odd_times() {
        Ok(odd) => {
            for o in odd {
                tracing::warn!(
                    "{}.{}: {} value(s) from the API are not a time in Unix seconds (such as {}); \
                     rules that compare it with the time cannot judge those objects",
                    o.view,
                    o.column,
                    o.count,
                    crate::report::inert(&o.example)
                );
            }
        }
        Err(error) => tracing::debug!(%error, "the check for odd times failed"),
    }
}

/// Warns of each enum column the crawl filled with values the API did not document when
/// this orgwarden was built (a new project `status`, a custom `role`, a new retention
/// type or audit-log event type): the rules were written for the known values, and one
/// that selects `status = 'active'` or `type = 'login.failed'` passes over the others
/// without a word. Whether a rule judged such an object rightly is for a person to check.
fn warn_of_unknown_values(store: &Store, snapshot: crate::model::SnapshotId) {
    match store.unknown_values(snapshot) {
        Ok(unknown) => {
            for u in unknown {
                let examples: Vec<String> = u
                    .examples
                    .iter()
                    .map(|e| crate::report::inert(e).into_owned())
                    .collect();
                let known = if u.known.is_empty() {
                    String::new()
                } else {
                    format!(" (it knows {})", u.known.join(", "))
                };
                tracing::warn!(
                    "{}.{}: {} value(s) from the API are none orgwarden knows, such as {}{known}; \
                     rules written for the known values may pass over or misjudge those \
                     objects: check them with `orgwarden query`, and look for a newer orgwarden",
                    u.view,
                    u.column,
                    u.count,
                    examples.join(", ")
                );
            }
        }
        Err(error) => tracing::debug!(%error, "the check for unknown values failed"),
    }
}

/// Warns of each field the API documents as always sent that the stored objects lack:
/// removed or renamed, it leaves its column NULL, and a rule reads that as a key never
/// used, an admin key without expiry, an invitation no longer pending.
fn warn_of_missing_fields(missing: &[crate::store::MissingField]) {
    for m in missing {
        tracing::warn!(
            "{}.{}: {} of {} object(s) from the API lack this field, which the API \
             documents as always sent; rules that read it may pass over or misjudge \
             those objects, and no finding of a rule reading this view is resolved \
             while it lasts: check them with `orgwarden query`, and look for a newer \
             orgwarden",
            m.view,
            m.field,
            m.count,
            m.of
        );
    }
}

/// The views of `missing` ([`Store::missing_fields`]: some of their objects lack a field
/// the API documents as always sent), and the views built on one of them (`project_spend`
/// reads `project_spend_limits`).
fn incomplete_views(missing: &[crate::store::MissingField]) -> Vec<&'static str> {
    let mut views: Vec<&'static str> = missing.iter().map(|m| m.view).collect();
    views.dedup();
    if views.is_empty() {
        return views;
    }
    for (name, sql) in crate::store::view_definitions() {
        // A view's own column may bear another view's name (`org_invites.projects`, read
        // from `'$.projects'`): that word is the invitation's field, not a read of
        // `projects`.
        let own: &[crate::model::Column] =
            Family::from_view(name).map_or(&[], |family| family.columns());
        let names_one = sql
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| {
                word != name && views.contains(&word) && !own.iter().any(|c| c.name == word)
            });
        if names_one && !views.contains(&name) {
            views.push(name);
        }
    }
    views
}

/// Evaluates the enabled rules over the store's views at `now`, reconciles the hits with
/// the stored findings (resolving only in projects `snapshot` read completely) and, with
/// an announcer, plans the digest and queues it: the findings, their events, the queued
/// digest and the notification marks commit together. A dry run decides and renders
/// everything, then rolls it all back. Blocking: call it off the async runtime.
pub fn evaluate(
    store: &mut Store,
    inputs: &Inputs<'_>,
    snapshot: &SnapshotInfo,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Result<Evaluated, AuditError> {
    evaluate_at(store, inputs, snapshot, (now, now), cancel)
}

/// As [`evaluate`], the rules judging the organization at `judged_at` (their `:now`) while
/// the findings' lifecycle, exemptions and announcements happen at `now`.
fn evaluate_at(
    store: &mut Store,
    inputs: &Inputs<'_>,
    snapshot: &SnapshotInfo,
    (now, judged_at): (DateTime<Utc>, DateTime<Utc>),
    cancel: &CancellationToken,
) -> Result<Evaluated, AuditError> {
    let budget = crate::rules::Budget {
        per_rule: inputs.rules.timeout,
        cancel: cancel.clone(),
    };
    let evaluation =
        crate::rules::evaluate(store.reader(), inputs.rules, judged_at.timestamp(), &budget)?;
    let mut coverage = Coverage::from_snapshot(
        snapshot.status,
        &store.failed_scopes(snapshot.id)?,
        store.audit_log_read_complete(snapshot.id)?,
    );
    // A failed costs read proves nothing, nor does a crawl that ended before it; costs
    // switched off in a complete snapshot are left out on purpose, like a skipped family,
    // so their findings do not freeze for as long as the setting stays off.
    let costs_unread = match store.costs_read(snapshot.id)? {
        Some(complete) => !complete,
        None => snapshot.status != SnapshotStatus::Complete,
    };
    if costs_unread {
        coverage.held_rules = inputs
            .rules
            .enabled()
            .filter(|r| r.reads_costs())
            .map(|r| r.id.clone())
            .collect();
    }
    // Nor does a view whose objects lack a field the API documents as always sent: the
    // NULL left in its column reads as "not enforcing", "no expiry date to judge", and
    // the findings it held open would resolve, announced as fixed.
    // Warned of here, where the hold is decided, from the same reading: the log says
    // exactly why these findings did not resolve.
    let missing = store.missing_fields()?;
    warn_of_missing_fields(&missing);
    let incomplete = incomplete_views(&missing);
    if !incomplete.is_empty() {
        coverage.held_rules.extend(
            inputs
                .rules
                .enabled()
                .filter(|r| r.reads_any(&incomplete))
                .map(|r| r.id.clone()),
        );
    }
    let tx = store.begin()?;
    // A rule stopped at its budget said nothing: its findings are kept out of the
    // reconciliation, so none is resolved by a rule that did not finish.
    let stopped: std::collections::HashSet<&RuleId> = evaluation.unfinished_rules().collect();
    let prior: Vec<Finding> = findings::load(tx.reader())?
        .into_iter()
        .filter(|f| !stopped.contains(&f.rule_id))
        .collect();
    let mut reconciled = findings::reconcile(
        &prior,
        &evaluation.hits,
        &evaluated_rules(inputs.rules),
        inputs.exemptions,
        &coverage,
        now,
    );
    findings::attribute_transitions(
        tx.reader().conn(),
        &mut reconciled,
        snapshot.id,
        snapshot.finished_at.timestamp(),
    )?;
    findings::write(&tx, &reconciled, Some(snapshot.id))?;
    tx.mark_evaluated(snapshot.id, now.timestamp())?;
    let all = findings::load(tx.reader())?;
    let notified = match inputs.announce {
        None => {
            tx.commit()?;
            None
        }
        Some(announce) => {
            let states = findings::notify_states(tx.reader(), &all)?;
            let ctx = crate::notify::RunContext {
                organization: announce.organization.to_owned(),
                snapshot_id: Some(snapshot.id),
                partial: snapshot.status != SnapshotStatus::Complete,
            };
            let announcement =
                announce
                    .notifier
                    .announce(tx.as_transaction(), &states, &ctx, now)?;
            findings::mark_settled(&tx, &announcement.settled)?;
            findings::mark_notified(&tx, &announcement.announced, now)?;
            if announce.dry_run {
                // A dry run leaves no trace, in the store or the log: the next real run
                // announces exactly what this one showed.
                tx.rollback()?;
            } else {
                tx.commit()?;
                announcement.log();
            }
            Some(Notified {
                announcement,
                dry_run: announce.dry_run,
            })
        }
    };
    let findings = findings::report_set(&all, &reconciled);
    Ok(Evaluated {
        snapshot: snapshot.clone(),
        reconciled,
        findings,
        notified,
        unfinished: evaluation.unfinished,
    })
}

/// Delivers the outbox messages `pass` selects, trying no further message once `stop` is
/// cancelled. Blocking: call it off the async runtime.
pub fn deliver(
    store: &Store,
    notifier: &Notifier,
    pass: Pass,
    now: DateTime<Utc>,
    stop: &CancellationToken,
) -> Result<DeliveryReport, NotifyError> {
    notifier.deliver(store.conn(), now, pass, stop)
}

/// Opens the database read-write on a blocking thread, for async callers.
pub async fn open_store(path: std::path::PathBuf) -> Result<Store, PipelineError> {
    tokio::task::spawn_blocking(move || Store::open(&path))
        .await
        .map_err(|e| PipelineError::Join(e.to_string()))?
        .map_err(PipelineError::Open)
}

/// The storage fault (a full disk, a lock held too long, a damaged file) behind `error`,
/// if one of its causes is SQLite's: said with the database's path by whoever shows the
/// error. The store's errors keep SQLite's error to themselves (their message already says
/// it) and several wrappers are transparent, so each is looked into here by name.
pub fn storage_fault(
    error: &(dyn std::error::Error + 'static),
    db: &std::path::Path,
) -> Option<crate::store::Fault> {
    crate::store::Fault::of(sqlite_cause(error)?, db)
}

/// The first SQLite error among `error` and its causes, looked into as [`storage_fault`]
/// does.
pub fn sqlite_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rusqlite::Error> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(sqlite) = sqlite_error(error) {
            return Some(sqlite);
        }
        cause = error.source();
    }
    None
}

/// The SQLite error one error of a chain holds itself, if any.
fn sqlite_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rusqlite::Error> {
    if let Some(sqlite) = error.downcast_ref::<rusqlite::Error>() {
        return Some(sqlite);
    }
    let store = if let Some(e) = error.downcast_ref::<StoreError>() {
        e
    } else if let Some(SnapshotError::Store(e)) = error.downcast_ref::<SnapshotError>() {
        e
    } else if let Some(PipelineError::Open(e) | PipelineError::Snapshot(SnapshotError::Store(e))) =
        error.downcast_ref::<PipelineError>()
    {
        e
    } else if let Some(AuditError::Store(e) | AuditError::Findings(FindingsError::Store(e))) =
        error.downcast_ref::<AuditError>()
    {
        e
    } else if let Some(FindingsError::Store(e)) = error.downcast_ref::<FindingsError>() {
        e
    } else if let Some(LockError::NotOurs(e) | LockError::Writer(e)) =
        error.downcast_ref::<LockError>()
    {
        e
    } else if let Some(DaemonError::Lock(LockError::NotOurs(e) | LockError::Writer(e))) =
        error.downcast_ref::<DaemonError>()
    {
        e
    } else {
        return None;
    };
    match store {
        StoreError::Sqlite(e) | StoreError::Migration { error: e, .. } => Some(e),
        _ => None,
    }
}

/// What a rule contributes to its findings.
fn rule_meta(rule: &Rule) -> RuleMeta {
    RuleMeta {
        title: rule.title.clone(),
        severity: rule.severity,
        resource_type: rule.resource_type.view().to_owned(),
        remediation: rule.remediation.clone(),
    }
}

/// The rules that are evaluated, by id: findings of any other rule get resolved.
pub fn evaluated_rules(rules: &RuleSet) -> HashMap<RuleId, RuleMeta> {
    rules
        .enabled()
        .map(|r| (r.id.clone(), rule_meta(r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CrawlStats;

    /// Rules and a notifier loaded from `config_text`.
    struct TestSetup {
        loaded: crate::rules::Loaded,
        notifier: Notifier,
        dry_run: bool,
    }

    impl Setup for TestSetup {
        fn inputs(&self) -> Inputs<'_> {
            Inputs {
                rules: &self.loaded.rules,
                exemptions: &self.loaded.exemptions,
                announce: Some(Announce {
                    notifier: &self.notifier,
                    organization: "acme",
                    dry_run: self.dry_run,
                }),
                delivery: Some(Pass::Due),
            }
        }
    }

    /// The shipped rules and an email channel writing `.eml` files into `dir/mail`, so a
    /// test can see what was queued and what was delivered.
    fn setup(dry_run: bool, dir: &std::path::Path) -> Arc<TestSetup> {
        let text = format!(
            "[notify.email]\ntransport = \"file\"\ndir = \"{}\"\nfrom = \"orgwarden@acme.test\"\n\
             to = [\"security@acme.test\"]\n",
            dir.join("mail").display()
        );
        let config =
            crate::config::Config::parse(&text, std::path::Path::new("pipeline.toml")).unwrap();
        Arc::new(TestSetup {
            loaded: crate::rules::load(&config, Utc::now().date_naive()),
            notifier: Notifier::from_config_with_env(&config, |_| None).unwrap(),
            dry_run,
        })
    }

    /// A file database holding one complete snapshot of the demo organization.
    fn stored_demo(dir: &std::path::Path) -> (std::path::PathBuf, SnapshotInfo) {
        let db = dir.join("pipeline.db");
        let mut store = Store::open(&db).unwrap();
        let now = Utc::now();
        let org = crate::sim::Org::demo(now.timestamp());
        let mut writer = store.begin_snapshot(&org.organization, now).unwrap();
        for scope in org.scope_results() {
            writer.apply(scope).unwrap();
        }
        let info = writer
            .finish(&CrawlStats::default(), now, SnapshotStatus::Complete)
            .unwrap();
        (db, info)
    }

    /// The ids of every message in the outbox, sent or not.
    fn outbox_ids(db: &std::path::Path) -> Vec<i64> {
        let store = Store::open(db).unwrap();
        let mut stmt = store
            .conn()
            .prepare("SELECT id FROM outbox ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// How many `.eml` files the file transport wrote.
    fn mail_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("mail")).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
            })
            .count()
        })
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_stored_snapshot_is_evaluated_recorded_and_announced_in_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let (db, info) = stored_demo(dir.path());
        let store = Store::open(&db).unwrap();
        let audited = runtime()
            .block_on(run(
                store,
                setup(false, dir.path()),
                Source::Stored(Box::new(info.clone())),
                &CancellationToken::new(),
                &CancellationToken::new(),
            ))
            .unwrap();
        assert!(audited.crawl.is_none());
        assert_eq!(audited.snapshot, info);
        let evaluated = audited.evaluated.unwrap();
        assert!(!evaluated.findings.is_empty());
        let notified = evaluated.notified.expect("the run announces");
        assert!(
            notified.announcement.digest.is_some(),
            "every finding is new"
        );
        let stored = findings::load(Store::open(&db).unwrap().reader()).unwrap();
        assert_eq!(stored.len(), evaluated.findings.len());
        assert!(
            stored.iter().all(|f| f.last_notified_at.is_some()),
            "announced in the same commit"
        );
        // The digest was queued in that commit, then delivered by the same run.
        let queued: Vec<i64> = outbox_ids(&db);
        let announced = notified
            .announcement
            .outbox_id
            .expect("a digest was queued");
        assert_eq!(queued, [announced.0]);
        assert_eq!(mail_files(dir.path()), 1, "delivered once");
    }

    #[test]
    fn a_full_disk_during_evaluation_is_told_as_no_space_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (db, info) = stored_demo(dir.path());
        let mut store = Store::open(&db).unwrap();
        // SQLite's own limit stands in for a full disk: it fails the first page the
        // findings need with SQLITE_FULL, as a full file system does.
        let pages: i64 = store
            .conn()
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        store
            .conn()
            .execute_batch(&format!("PRAGMA max_page_count = {pages}"))
            .unwrap();
        let setup = setup(false, dir.path());
        let error = evaluate(
            &mut store,
            &setup.inputs(),
            &info,
            Utc::now(),
            &CancellationToken::new(),
        )
        .unwrap_err();
        assert_eq!(
            storage_fault(&error, &db),
            Some(crate::store::Fault::NoSpace),
            "{error}"
        );
        drop(store);
        let stored = findings::load(Store::open(&db).unwrap().reader()).unwrap();
        assert!(stored.is_empty(), "no finding recorded");
        assert!(outbox_ids(&db).is_empty(), "nothing queued");
        assert_eq!(mail_files(dir.path()), 0);
    }

    #[test]
    fn a_dry_run_decides_and_renders_but_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (db, info) = stored_demo(dir.path());
        let store = Store::open(&db).unwrap();
        let audited = runtime()
            .block_on(run(
                store,
                setup(true, dir.path()),
                Source::Stored(Box::new(info)),
                &CancellationToken::new(),
                &CancellationToken::new(),
            ))
            .unwrap();
        let evaluated = audited.evaluated.unwrap();
        assert!(!evaluated.findings.is_empty());
        let notified = evaluated.notified.unwrap();
        assert!(notified.dry_run && notified.announcement.digest.is_some());
        assert!(audited.delivery.is_none(), "a dry run delivers nothing");
        let stored = findings::load(Store::open(&db).unwrap().reader()).unwrap();
        assert!(stored.is_empty(), "rolled back");
        assert!(outbox_ids(&db).is_empty(), "nothing queued");
        assert_eq!(mail_files(dir.path()), 0, "nothing sent");
    }

    #[test]
    fn a_run_cancelled_during_the_crawl_stores_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cancelled.db");
        // 100 ms a request: the demo's ~100 reads take well over the 300 ms before cancel.
        let sim = crate::sim::start_background(
            crate::sim::Org::demo(Utc::now().timestamp()),
            crate::sim::SimOptions {
                latency: std::time::Duration::from_millis(100),
                ..crate::sim::SimOptions::default()
            },
        )
        .unwrap();
        let client = AdminClient::new(
            &sim.base_url(),
            secrecy::SecretString::from("test-key"),
            crate::client::ClientOptions::default(),
        )
        .unwrap();
        // Cancelled once the crawl is under way: the simulator answers slowly enough that
        // it cannot have finished, and some scopes have reached the writer.
        let cancel = CancellationToken::new();
        let later = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            later.cancel();
        });
        let source = Source::Crawl {
            client: &client,
            organization: "acme",
            progress: false,
            skip: &[],
        };
        let store = Store::open(&db).unwrap();
        let result = runtime().block_on(run(
            store,
            setup(false, dir.path()),
            source,
            &cancel,
            &cancel,
        ));
        assert!(
            matches!(result, Err(PipelineError::Cancelled)),
            "{result:?}"
        );
        sim.shutdown();
        // Not even a `running` row: the writer's transaction was rolled back, not committed.
        let rows: i64 = Store::open(&db)
            .unwrap()
            .conn()
            .query_row("SELECT count(*) FROM snapshot", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
    }

    /// Whole runs through [`evaluate`] on a real store, with or without announcing:
    /// what one run records must be announced by the next run that notifies.
    mod announcing {
        use chrono::{DateTime, Utc};

        use super::super::*;
        use crate::findings::{Finding, Status, load};
        use crate::model::{CrawlStats, Family, ProjectId, ScopeError, ScopeOutcome};
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
            let mut org = crate::sim::Org::demo(start.timestamp());
            // The demo organization is on ZDR, so a project on its default keeps nothing:
            // the support project keeps data under a setting of its own.
            org.project_mut(&ProjectId::from(SUPPORT))
                .unwrap()
                .data_retention = "modified_abuse_monitoring".to_owned();
            Harness {
                store: Store::open_in_memory().unwrap(),
                org,
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
                let inputs = Inputs {
                    rules: &self.rules,
                    exemptions: &self.exemptions,
                    announce: notify.then_some(announce),
                    delivery: None,
                };
                let evaluated = evaluate(
                    &mut self.store,
                    &inputs,
                    &snapshot,
                    now,
                    &CancellationToken::new(),
                )
                .unwrap();
                let notified = evaluated.notified;
                notified.and_then(|n| n.announcement.digest)
            }

            fn set_support_retention(&mut self, value: &str) -> String {
                let project = self.org.project_mut(&ProjectId::from(SUPPORT)).unwrap();
                std::mem::replace(&mut project.data_retention, value.to_owned())
            }

            fn retention_finding(&self) -> Finding {
                load(self.store.reader())
                    .unwrap()
                    .into_iter()
                    .find(|f| {
                        f.rule_id.as_str() == RETENTION_RULE
                            && f.project_id.as_ref().map(ProjectId::as_str) == Some(SUPPORT)
                    })
                    .expect("the support project keeps data in the demo organization")
            }
        }

        fn announced_as(
            digest: Option<&Digest>,
            fingerprint: &crate::model::Fingerprint,
        ) -> Option<Reason> {
            digest?
                .announced
                .iter()
                .find(|a| &a.finding.fingerprint == fingerprint)
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
            let open = load(h.store.reader())
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

    #[test]
    fn a_view_missing_a_documented_field_makes_the_views_built_on_it_incomplete_too() {
        let mut store = Store::open_in_memory().unwrap();
        let scope = |family, project: Option<&str>, objects: Vec<serde_json::Value>| {
            crate::model::ScopeResult {
                scope: crate::model::Scope {
                    family,
                    project_id: project.map(crate::model::ProjectId::from),
                    parent_id: None,
                },
                outcome: crate::model::ScopeOutcome::Complete(objects.into()),
            }
        };
        let mut writer = store.begin_snapshot("acme", Utc::now()).unwrap();
        writer
            .apply(scope(
                Family::Projects,
                None,
                vec![serde_json::json!({"id": "proj_a", "created_at": 1, "status": "active"})],
            ))
            .unwrap();
        writer
            .apply(scope(
                Family::ProjectSpendLimits,
                Some("proj_a"),
                // No `enforcement`: the API documents it as always sent.
                vec![
                    serde_json::json!({"threshold_amount": 100, "currency": "USD",
                                        "interval": "month"}),
                ],
            ))
            .unwrap();
        writer
            .finish(&CrawlStats::default(), Utc::now(), SnapshotStatus::Complete)
            .unwrap();
        let views = incomplete_views(&store.missing_fields().unwrap());
        assert_eq!(views, ["project_spend_limits", "project_spend"]);
    }

    #[test]
    fn a_column_named_like_an_incomplete_view_does_not_make_its_view_incomplete() {
        let mut store = Store::open_in_memory().unwrap();
        let mut writer = store.begin_snapshot("acme", Utc::now()).unwrap();
        writer
            .apply(crate::model::ScopeResult {
                scope: crate::model::Scope {
                    family: Family::Projects,
                    project_id: None,
                    parent_id: None,
                },
                // No `created_at`: the API documents it as always sent.
                outcome: crate::model::ScopeOutcome::Complete(
                    vec![serde_json::json!({"id": "proj_a", "status": "active"})].into(),
                ),
            })
            .unwrap();
        writer
            .finish(&CrawlStats::default(), Utc::now(), SnapshotStatus::Complete)
            .unwrap();
        // `org_invites` has a `projects` column (an invitation's projects) and reads no
        // project: its rules go on resolving.
        let views = incomplete_views(&store.missing_fields().unwrap());
        assert_eq!(views, ["projects", "project_spend"]);
    }
}
