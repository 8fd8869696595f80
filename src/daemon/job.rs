//! The daemon's job: one full audit per run — snapshot, evaluate, announce, deliver —
//! the same steps as `orgwarden audit --notify`, with configuration and rules that SIGHUP
//! reloads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, NaiveDate, Utc};
use tokio_util::sync::CancellationToken;

use crate::client::{AdminClient, ClientOptions, load_admin_key};
use crate::collect::ExpectedAnswers;
use crate::config::Config;
use crate::diagnostics::{DiagnosticCode, Diagnostics};
use crate::exemptions::{Exemption, Standing};
use crate::findings::{EventKind, Status};
use crate::model::{Severity, SnapshotStatus};
use crate::notify::{DeliveryReport, Notifier};
use crate::pipeline::{self, Announce, Audited, Inputs, Pass, Source};
use crate::rules;
use crate::store::Store;

use super::metrics::Metrics;
use super::{BoxError, Job, RunContext, RunOutcome, Timing};

/// Where the job finds its configuration, database and API, as the command line said.
#[derive(Clone, Debug)]
pub struct JobInputs {
    /// The configuration file, re-read on every reload; `None` = built-in defaults.
    pub config_path: Option<PathBuf>,
    /// The database (the daemon holds its writer lock).
    pub db: PathBuf,
    /// `--base-url`, which wins over `[openai] base_url`.
    pub base_url: Option<String>,
}

/// Everything one configuration gives: replaced whole on reload, so a run never sees half
/// of an old configuration and half of a new one.
struct Loaded {
    config: Config,
    rules: rules::Loaded,
    notifier: Notifier,
    client: AdminClient,
    /// When the exemptions' ends were last warned about.
    exemptions_noted: ExpiryWatch,
    /// When exemptions matching no stored finding were last looked for: not at load, but
    /// after the first run of this configuration, since only its findings can say.
    unused_noted: Daily,
}

/// Logs each of `diags` as a warning with its code and `file:line:col`: the daemon's
/// operator reads the log, not a terminal.
fn log_warnings(diags: &Diagnostics) {
    for warning in diags.items() {
        let at = diags.location(warning).unwrap_or_default();
        tracing::warn!(code = %warning.code, at, "{}", warning.message);
    }
}

/// Something the daemon says once a UTC day: the last day it was said.
#[derive(Debug)]
struct Daily {
    noted: Mutex<Option<NaiveDate>>,
}

impl Daily {
    /// Said on `day` (`None`: not yet, so due at once).
    fn noted_on(day: Option<NaiveDate>) -> Daily {
        Daily {
            noted: Mutex::new(day),
        }
    }

    /// Whether it is due on `today`; marks the day when it is.
    fn due(&self, today: NaiveDate) -> bool {
        // A poisoned lock only means a run panicked; the day it holds is still whole.
        let mut noted = match self.noted.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if noted.is_some_and(|day| day >= today) {
            return false;
        }
        *noted = Some(today);
        true
    }
}

/// Warns about exemptions' ends once a day: a daemon runs for months on one
/// configuration, and an exemption's end comes near (or passes) while it does.
#[derive(Debug)]
struct ExpiryWatch {
    day: Daily,
}

impl ExpiryWatch {
    /// A watch that has warned on `day` (loading the configuration does).
    fn noted_on(day: NaiveDate) -> ExpiryWatch {
        ExpiryWatch {
            day: Daily::noted_on(Some(day)),
        }
    }

    /// The warnings due on `today`, each with the diagnostic code the configuration's
    /// check gives it (so that one log search finds both): none if given today already.
    fn due(&self, exemptions: &[Exemption], today: NaiveDate) -> Vec<(DiagnosticCode, String)> {
        if !self.day.due(today) {
            return Vec::new();
        }
        exemptions
            .iter()
            .filter_map(|e| {
                let code = match e.standing_on(today) {
                    Standing::Holds => return None,
                    Standing::Expiring => DiagnosticCode::ExemptionExpiring,
                    Standing::Expired => DiagnosticCode::ExemptionExpired,
                };
                Some((code, e.notice_among(exemptions, today)?))
            })
            .collect()
    }
}

/// Runs audits for the daemon.
pub struct AuditJob {
    inputs: JobInputs,
    metrics: Arc<Metrics>,
    current: RwLock<Arc<Loaded>>,
    /// The database existed at some point of this daemon's life (at start, or a run made
    /// it): if it is then missing, it was removed under the daemon (see [`AuditJob::gone`]).
    db_seen: AtomicBool,
}

impl AuditJob {
    /// Loads configuration, rules, notifier and admin key; any problem is an error that
    /// says what and where (rule diagnostics rendered in full).
    pub fn new(inputs: JobInputs, metrics: Arc<Metrics>) -> Result<AuditJob, BoxError> {
        let loaded = load(&inputs, &metrics)?;
        let db_seen = AtomicBool::new(inputs.db.exists());
        Ok(AuditJob {
            inputs,
            metrics,
            current: RwLock::new(Arc::new(loaded)),
            db_seen,
        })
    }

    /// Why the database must not be opened, if it was removed while the daemon ran. Opening
    /// it would make a new, empty one: every open finding would be announced again as new,
    /// and the history and the outbox would start over, with nothing said. A database
    /// replaced by another (a backup restored) is opened: the store checks it is ours.
    fn gone(&self) -> Option<String> {
        let db = &self.inputs.db;
        match std::fs::metadata(db) {
            Ok(_) => {
                self.db_seen.store(true, Ordering::Relaxed);
                None
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && self.db_seen.load(Ordering::Relaxed) =>
            {
                Some(format!(
                    "the database {} was removed while the daemon was running; no new one is \
                     started, since every finding would be announced again as new. Put it \
                     back, or restart the daemon to start a new database",
                    db.display()
                ))
            }
            // Not made yet (the first run makes it), or not readable: opening says why.
            Err(_) => None,
        }
    }

    fn loaded(&self) -> Arc<Loaded> {
        // A poisoned lock only means a reload panicked; what it holds is still whole.
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

fn load(inputs: &JobInputs, metrics: &Arc<Metrics>) -> Result<Loaded, BoxError> {
    let (config, config_diags) = match &inputs.config_path {
        Some(path) => Config::check_file(path)?,
        None => (Config::default(), Diagnostics::new()),
    };
    let today = Utc::now().date_naive();
    let rules = rules::load_checked(&config, config_diags, today);
    if rules.diagnostics.has_errors() {
        return Err(format!(
            "{} error(s) in rule or configuration files:\n{}",
            rules.diagnostics.error_count(),
            rules.diagnostics.render(false)
        )
        .into());
    }
    // Warnings do not stop the daemon, but they are for its operator (an exemption that
    // has expired or is about to), so they go to the log as `audit` prints them.
    log_warnings(&rules.diagnostics);
    let notifier = Notifier::from_config(&config)?;
    let config_dir = config.source.as_deref().and_then(Path::parent);
    let key = load_admin_key(&config.openai, config_dir)?;
    let base_url = config.base_url(inputs.base_url.as_deref());
    let observed = metrics.clone();
    let client = AdminClient::new(&base_url, key, ClientOptions::from_config(&config.openai))?
        .with_spend(config.spend)
        .with_audit_log(config.audit_log)
        .with_observer(Arc::new(move |status| observed.record_api_response(status)));
    Ok(Loaded {
        config,
        rules,
        notifier,
        client,
        exemptions_noted: ExpiryWatch::noted_on(today),
        unused_noted: Daily::noted_on(None),
    })
}

impl pipeline::Setup for Loaded {
    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            rules: &self.rules.rules,
            exemptions: &self.rules.exemptions,
            announce: Some(Announce {
                notifier: &self.notifier,
                organization: &self.config.openai.organization,
                dry_run: false,
            }),
            // The job delivers after the pipeline returns, once it has recorded what the
            // run saved: a run cut off while delivering is then not taken for one that
            // saved nothing.
            delivery: None,
        }
    }
}

impl AuditJob {
    /// One run of the audit pipeline: snapshot, evaluate, announce and deliver.
    async fn audit(
        &self,
        loaded: &Arc<Loaded>,
        cancel: &CancellationToken,
        stopping: &CancellationToken,
    ) -> RunOutcome {
        let store = match pipeline::open_store(self.inputs.db.clone()).await {
            Ok(store) => store,
            Err(e) => return RunOutcome::failed(self.explain(&e, e.to_string())),
        };
        self.db_seen.store(true, Ordering::Relaxed);
        let source = Source::Crawl {
            client: &loaded.client,
            organization: &loaded.config.openai.organization,
            progress: false,
            skip: &loaded.config.collect.skip,
        };
        let result = pipeline::run(store, loaded.clone(), source, cancel, stopping).await;
        self.note_database_size();
        let audited = match result {
            Ok(audited) => audited,
            Err(e) => {
                // No crawl report says which 400s and 404s were expected: count them all as
                // client errors now rather than hold them for a run that may never come.
                self.metrics.settle_expected(ExpectedAnswers::default());
                let message = match e {
                    pipeline::PipelineError::Snapshot(_) => {
                        format!("snapshot failed; nothing was stored: {e}")
                    }
                    _ => e.to_string(),
                };
                return RunOutcome::failed(self.explain(&e, message));
            }
        };
        let mut outcome = self.record(&audited);
        match &audited.evaluated {
            Err(e) => {
                outcome.status = SnapshotStatus::Failed;
                outcome.message = Some(self.explain(
                    e,
                    format!("evaluating snapshot {}: {e}", audited.snapshot.id),
                ));
            }
            Ok(run) if !run.unfinished.is_empty() => {
                let rules: Vec<String> = run.unfinished.iter().map(ToString::to_string).collect();
                outcome.status = SnapshotStatus::Failed;
                outcome.message = Some(format!(
                    "evaluating snapshot {}: {}",
                    audited.snapshot.id,
                    rules.join("; ")
                ));
            }
            Ok(_) => {}
        }
        outcome
    }

    /// Logs the exemptions that match no stored finding, as `audit` and `rules check` warn
    /// about them: a mistyped resource otherwise shows only as a finding that stays open.
    async fn warn_unused_exemptions(&self, loaded: &Arc<Loaded>) {
        if loaded.rules.exemptions.is_empty() {
            return;
        }
        let (db, loaded) = (self.inputs.db.clone(), loaded.clone());
        let checked = tokio::task::spawn_blocking(move || -> Result<Diagnostics, BoxError> {
            let store = Store::open_read_only(&db)?;
            let stored: Vec<_> = crate::findings::load(store.reader())?
                .into_iter()
                .map(|f| (f.rule_id, f.resource_id, f.project_id))
                .collect();
            let mut diags = Diagnostics::new();
            rules::warn_unused_exemptions(
                &loaded.config,
                &loaded.rules.exemptions,
                &stored,
                &mut diags,
            );
            Ok(diags)
        })
        .await;
        match checked {
            Ok(Ok(diags)) => log_warnings(&diags),
            Ok(Err(e)) => tracing::warn!("exemptions not checked against stored findings: {e}"),
            Err(e) => tracing::warn!("exemptions not checked against stored findings: {e}"),
        }
    }

    /// `message`, led by what the storage under the database did when `error` comes from
    /// it (a full disk, a lock held too long, a damaged file), naming the database: the log,
    /// `/readyz` and the run record then say where to look.
    fn explain(&self, error: &(dyn std::error::Error + 'static), message: String) -> String {
        match pipeline::storage_fault(error, &self.inputs.db) {
            Some(fault) => format!("{}: {message}", fault.describe(&self.inputs.db)),
            None => message,
        }
    }

    /// Exports the sizes of the database and its write-ahead log: its growth over months,
    /// and a log a reader holds back, are for an alert to see before the disk fills.
    fn note_database_size(&self) {
        let (database, wal) = crate::store::file_sizes(&self.inputs.db);
        self.metrics.set_database_size(database, wal);
    }

    /// The run's figures from what the pipeline did.
    fn record(&self, audited: &Audited) -> RunOutcome {
        let info = &audited.snapshot;
        let mut outcome = RunOutcome::new(info.status);
        outcome.snapshot = Some(info.id);
        outcome.requests = info.stats.requests;
        outcome.errors = info.stats.errors;
        if let Some(crawl) = &audited.crawl {
            // Which 400s and 404s the collector expected (archived projects' people lists,
            // unset spend limits) is known only now: settle them into their own classes.
            self.metrics.settle_expected(crawl.expected);
            self.metrics
                .set_api_concurrency(crawl.info.stats.concurrency);
            if let Some(limit) = crawl.rate_limit {
                self.metrics.set_api_rate_limit(limit.per_minute.get());
            }
            outcome.snapshot_duration = Some(crawl.elapsed);
            if let Some(refused) = &crawl.refused {
                outcome.message = Some(refused.to_string());
            } else if let Some((scope, error)) = crawl.failed_scopes.first() {
                outcome.message = Some(format!(
                    "{} scope(s) could not be read (what earlier snapshots stored of them is kept), first {}",
                    crawl.failed_scopes.len(),
                    crate::report::failed_scope_line(scope, error)
                ));
            } else {
                // A partial snapshot with every scope read: the costs or the audit log
                // failed, which the run's record must say as `snapshot` does.
                let reads: Vec<String> = [
                    crate::report::costs_failure(crawl),
                    crate::report::audit_log_failure(info),
                ]
                .into_iter()
                .flatten()
                .collect();
                outcome.message = (!reads.is_empty()).then(|| reads.join("; "));
            }
        }
        let Ok(run) = &audited.evaluated else {
            return outcome;
        };
        for event in &run.reconciled.events {
            match event.kind {
                EventKind::Opened | EventKind::Reopened | EventKind::ExemptionExpired => {
                    outcome.findings_new += 1;
                }
                EventKind::Resolved => outcome.findings_resolved += 1,
                EventKind::Exempted | EventKind::SeverityChanged => {}
            }
        }
        let open: Vec<_> = run
            .findings
            .iter()
            .filter(|f| f.status == Status::Open)
            .collect();
        outcome.findings_open = open.len() as u64;
        for severity in Severity::ALL {
            let count = open.iter().filter(|f| f.severity == severity).count();
            self.metrics.set_open_findings(severity, count as u64);
        }
        outcome
    }

    /// Delivers every due outbox message (automatic retries: only those whose backoff has
    /// elapsed; a run the pipeline could not finish still retries what earlier runs
    /// queued) and records the figures; undelivered mail stays queued for its retry (the
    /// outbox logs each failure). `stop` ends the pass between two messages.
    async fn deliver(
        &self,
        loaded: Arc<Loaded>,
        stop: CancellationToken,
    ) -> Result<(u64, u64), BoxError> {
        if let Some(gone) = self.gone() {
            return Err(gone.into());
        }
        let kept = loaded.clone();
        let db = self.inputs.db.clone();
        // The pass runs on a blocking thread, which outlives this future when the
        // shutdown's deadline drops it: dropped, it tells the pass to try no further
        // message, so the process is not kept waiting for the whole outbox.
        let _stop_when_dropped = stop.clone().drop_guard();
        let report: DeliveryReport = tokio::task::spawn_blocking(move || -> Result<_, BoxError> {
            let store = Store::open(&db)?;
            Ok(pipeline::deliver(
                &store,
                &loaded.notifier,
                Pass::Due,
                Utc::now(),
                &stop,
            )?)
        })
        .await??;
        let (sent, failed) = email_counts(&report.outcomes, |channel| {
            kept.notifier.is_email_channel(channel)
        });
        self.metrics.record_emails(sent, failed);
        self.metrics.set_outbox_depth(report.pending as u64);
        for (channel, outcome) in &report.outcomes {
            self.metrics.record_delivery(channel, outcome.as_str());
        }
        for channel in &report.refused_recipients {
            self.metrics.record_recipient_refused(channel);
        }
        self.metrics
            .set_channel_outbox_depth(&report.pending_by_channel);
        Ok((sent, failed))
    }
}

/// The email messages a delivery pass delivered and failed to (kept to retry, or refused):
/// `orgwarden_emails_*` count the email channels only, the other kinds being in the
/// per-channel counter. `is_email` says whether a channel name is an email channel.
fn email_counts(
    outcomes: &[(String, crate::notify::outbox::Outcome)],
    is_email: impl Fn(&str) -> bool,
) -> (u64, u64) {
    use crate::notify::outbox::Outcome;
    outcomes
        .iter()
        .filter(|(channel, _)| is_email(channel))
        .fold((0, 0), |(sent, failed), (_, outcome)| match outcome {
            Outcome::Sent => (sent + 1, failed),
            Outcome::Retry | Outcome::Rejected => (sent, failed + 1),
        })
}

/// What a reload changed that only a restart applies: the daemon holds its database locked
/// and its address bound for its whole life. Said, so that "reloaded" does not pass for
/// having moved them. `db` is the database in use (`--db` wins over `[storage] path`, so a
/// changed path matters only when the old one was the database in use).
fn restart_only_changes(old: &Config, new: &Config, db: &Path) -> Vec<String> {
    let mut changes = Vec::new();
    let (old_path, new_path) = (
        old.resolve(&old.storage.path),
        new.resolve(&new.storage.path),
    );
    if old_path != new_path && old_path == db {
        changes.push(format!(
            "[storage] path changed to {}; the daemon keeps using {} until it is restarted",
            new_path.display(),
            db.display()
        ));
    }
    if old.server.listen != new.server.listen {
        let shown = |listen: Option<std::net::SocketAddr>| {
            listen.map_or_else(|| "off".to_owned(), |addr| addr.to_string())
        };
        changes.push(format!(
            "[server] listen changed to {}; the daemon keeps {} until it is restarted",
            shown(new.server.listen),
            shown(old.server.listen)
        ));
    }
    changes
}

impl Job for AuditJob {
    async fn run(&self, ctx: RunContext) -> RunOutcome {
        let loaded = self.loaded();
        let organization = Some(loaded.config.openai.organization.clone());
        if let Some(gone) = self.gone() {
            // Nothing to deliver either: the outbox was in the database.
            return RunOutcome {
                organization,
                ..RunOutcome::failed(gone)
            };
        }
        let today = Utc::now().date_naive();
        for (code, notice) in loaded.exemptions_noted.due(&loaded.rules.exemptions, today) {
            tracing::warn!(code = %code, "{notice}");
        }
        let mut outcome = self.audit(&loaded, &ctx.cancel, &ctx.stopping).await;
        outcome.organization = organization;
        ctx.saved.record(&outcome);
        if ctx.cancel.is_cancelled() {
            // Shutting down: `flush` delivers, within the daemon's deadline.
            return outcome;
        }
        if outcome.status != SnapshotStatus::Failed && loaded.unused_noted.due(today) {
            self.warn_unused_exemptions(&loaded).await;
        }
        // A signal stops the pass between two messages, as it stops a rule; the flush
        // then delivers within the shutdown's deadline.
        match self.deliver(loaded, ctx.stopping.child_token()).await {
            Ok((sent, failed)) => {
                outcome.emails_sent = sent;
                outcome.emails_failed = failed;
            }
            Err(reason) => {
                let reason = self.explain(&*reason, reason.to_string());
                tracing::warn!(%reason, "the outbox could not be delivered; it is kept and tried again");
            }
        }
        outcome
    }

    async fn last_run_started(&self) -> Option<DateTime<Utc>> {
        let db = self.inputs.db.clone();
        tokio::task::spawn_blocking(move || {
            // Opened for writing, as a run would: the daemon holds the writer lock for its
            // whole life, and a database an older orgwarden wrote (the usual state right
            // after an upgrade) is then upgraded here instead of reading as "no run yet",
            // which skipped the catch-up run for a tick missed while it was down.
            if !db.exists() {
                return None;
            }
            let store = match Store::open(&db) {
                Ok(store) => store,
                Err(e) => {
                    tracing::warn!("cannot read when the last run started: {e}");
                    return None;
                }
            };
            // A run stopped or killed after storing its snapshot but before evaluating it
            // announced nothing: it does not count, so the restarted daemon catches it up
            // instead of leaving its changes to the next tick (a day later, on a daily
            // schedule).
            store.last_evaluated_start().ok().flatten()
        })
        .await
        .ok()
        .flatten()
    }

    async fn reload(&self) -> Result<Option<Timing>, BoxError> {
        // Reading the configuration, rule and key files is blocking I/O.
        let (inputs, metrics) = (self.inputs.clone(), self.metrics.clone());
        let loaded = tokio::task::spawn_blocking(move || load(&inputs, &metrics)).await??;
        for change in restart_only_changes(&self.loaded().config, &loaded.config, &self.inputs.db) {
            tracing::warn!("{change}");
        }
        let timing = Timing::from_config(&loaded.config.schedule);
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(loaded),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(loaded),
        }
        Ok(Some(timing))
    }

    async fn flush(&self) -> Result<(), BoxError> {
        let (_, failed) = self
            .deliver(self.loaded(), CancellationToken::new())
            .await?;
        if failed > 0 {
            tracing::warn!(
                failed,
                "messages remain in the outbox; the next start delivers them"
            );
        }
        Ok(())
    }

    async fn retry(&self, stop: CancellationToken) -> Result<Option<DateTime<Utc>>, BoxError> {
        // Not made yet (nothing is queued), or removed under the daemon (the runs and
        // `/readyz` say so): nothing to look at, and nothing to say every few minutes.
        if !self.inputs.db.exists() {
            return Ok(None);
        }
        let loaded = self.loaded();
        let due = self.next_due(loaded.clone()).await?;
        if due.is_none_or(|due| due > Utc::now()) {
            return Ok(due);
        }
        tracing::info!(target: "orgwarden::notify", "delivering the queued messages whose retry is due");
        if let Err(reason) = self.deliver(loaded.clone(), stop).await {
            return Err(self.explain(&*reason, reason.to_string()).into());
        }
        self.next_due(loaded).await
    }

    fn ready(&self) -> Result<(), String> {
        if let Some(gone) = self.gone() {
            return Err(gone);
        }
        super::health::database_writable(&self.inputs.db)
    }
}

impl AuditJob {
    /// When the outbox next has a message to try, for the configured channels.
    async fn next_due(&self, loaded: Arc<Loaded>) -> Result<Option<DateTime<Utc>>, BoxError> {
        let db = self.inputs.db.clone();
        tokio::task::spawn_blocking(move || -> Result<_, BoxError> {
            let store = Store::open_read_only(&db)?;
            Ok(loaded.notifier.next_due(store.conn())?)
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::{ExpiryWatch, email_counts, restart_only_changes};
    use crate::config::Config;
    use crate::diagnostics::DiagnosticCode;
    use crate::exemptions::Exemption;
    use chrono::NaiveDate;
    use std::path::Path;

    #[test]
    fn a_running_daemon_warns_once_a_day_about_exemptions_that_end_soon_or_have_ended() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2027, 3, d).unwrap();
        let exemption = |resource, expires| {
            Exemption::new(
                "api-key-old".into(),
                resource,
                "legacy".into(),
                "sec@acme.com".into(),
                expires,
            )
            .unwrap()
        };
        let exemptions = [
            exemption("key_*", day(31)),
            exemption("key_legacy_*", day(10)),
        ];
        // Loaded on the 1st: the load's own diagnostics warned that day.
        let watch = ExpiryWatch::noted_on(day(1));
        assert!(watch.due(&exemptions, day(1)).is_empty());
        // Weeks later, on one configuration: the 31st is now within 14 days.
        let due = watch.due(&exemptions, day(17));
        assert_eq!(due.len(), 2, "{due:?}");
        assert!(
            due[0]
                .1
                .contains("expires on 2027-03-31 (owner sec@acme.com)")
        );
        assert!(due[1].1.contains("expired on 2027-03-10"));
        // Logged under the codes the start's check used, as docs/diagnostics.md says.
        assert_eq!(
            (due[0].0, due[1].0),
            (
                DiagnosticCode::ExemptionExpiring,
                DiagnosticCode::ExemptionExpired
            )
        );
        assert!(watch.due(&exemptions, day(17)).is_empty(), "once a day");
        assert_eq!(watch.due(&exemptions, day(18)).len(), 2);
        // Renewed by a later table for the same keys: the old one's end is no news.
        let renewed = [exemption("key_*", day(10)), exemption("key_*", day(31))];
        let due = ExpiryWatch::noted_on(day(1)).due(&renewed, day(12));
        assert!(due.is_empty(), "{due:?}");
    }

    #[test]
    fn a_reload_that_moves_the_database_or_the_listen_address_says_it_waits_for_a_restart() {
        let config = |text: &str| Config::parse(text, Path::new("/etc/ow/orgwarden.toml")).unwrap();
        let old = config("[storage]\npath = \"a.db\"\n[server]\nlisten = \"127.0.0.1:9464\"\n");
        let moved = config("[storage]\npath = \"b.db\"\n[server]\nlisten = \"0.0.0.0:9464\"\n");
        let db = Path::new("/etc/ow/a.db");
        let changes = restart_only_changes(&old, &moved, db);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].contains("/etc/ow/b.db") && changes[0].contains("/etc/ow/a.db"));
        assert!(changes[1].contains("0.0.0.0:9464") && changes[1].contains("127.0.0.1:9464"));
        assert!(restart_only_changes(&old, &old, db).is_empty());
        // With --db naming another file, [storage] path was never the database in use.
        let elsewhere = restart_only_changes(&old, &moved, Path::new("/var/lib/ow.db"));
        assert_eq!(elsewhere.len(), 1, "{elsewhere:?}");
    }
    use crate::notify::outbox::Outcome;

    #[test]
    fn the_email_counters_count_the_email_channels_only() {
        let outcomes = [
            ("email".to_owned(), Outcome::Sent),
            ("hook".to_owned(), Outcome::Sent),
            ("slack".to_owned(), Outcome::Retry),
            ("team-mail".to_owned(), Outcome::Retry),
            ("team-mail".to_owned(), Outcome::Rejected),
            ("email".to_owned(), Outcome::Sent),
        ];
        let counts = email_counts(&outcomes, |c| c == "email" || c == "team-mail");
        assert_eq!(counts, (2, 2));
    }
}
