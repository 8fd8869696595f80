//! The daemon's job: one full audit per run — snapshot, evaluate, announce, deliver —
//! the same steps as `orgwarden audit --notify`, with configuration and rules that SIGHUP
//! reloads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::client::{AdminClient, ClientOptions, load_admin_key};
use crate::collect;
use crate::config::Config;
use crate::findings::{self, Announce, EventKind, Status};
use crate::model::{Severity, SnapshotStatus};
use crate::notify::Notifier;
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
}

/// Runs audits for the daemon.
pub struct AuditJob {
    inputs: JobInputs,
    metrics: Arc<Metrics>,
    current: RwLock<Arc<Loaded>>,
}

impl AuditJob {
    /// Loads configuration, rules, notifier and admin key; any problem is an error that
    /// says what and where (rule diagnostics rendered in full).
    pub fn new(inputs: JobInputs, metrics: Arc<Metrics>) -> Result<AuditJob, BoxError> {
        let loaded = load(&inputs, &metrics)?;
        Ok(AuditJob {
            inputs,
            metrics,
            current: RwLock::new(Arc::new(loaded)),
        })
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
    let config = match &inputs.config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let rules = rules::load(&config, Utc::now().date_naive());
    if rules.diagnostics.has_errors() {
        return Err(format!(
            "{} error(s) in rule or configuration files:\n{}",
            rules.diagnostics.error_count(),
            rules.diagnostics.render(false)
        )
        .into());
    }
    let notifier = Notifier::from_config(&config)?;
    let config_dir = config.source.as_deref().and_then(Path::parent);
    let key = load_admin_key(&config.openai, config_dir)?;
    let base_url = config.base_url(inputs.base_url.as_deref());
    let observed = metrics.clone();
    let client = AdminClient::new(&base_url, key, ClientOptions::from_config(&config.openai))?
        .with_observer(Arc::new(move |status| observed.record_api_response(status)));
    Ok(Loaded {
        config,
        rules,
        notifier,
        client,
    })
}

impl AuditJob {
    /// Snapshot, evaluate and announce; delivery is the caller's next step, taken on every
    /// path, so a failed run still retries the digests earlier runs queued.
    async fn audit(&self, loaded: &Arc<Loaded>, cancel: &CancellationToken) -> RunOutcome {
        let store = match Store::open(&self.inputs.db) {
            Ok(store) => store,
            Err(e) => return RunOutcome::failed(format!("cannot open the database: {e}")),
        };
        let org = loaded.config.openai.organization.clone();
        // Dropping the crawl drops the snapshot's writer, which rolls the transaction back:
        // an abandoned run leaves the previous snapshot as it was.
        let crawl = tokio::select! {
            crawl = collect::snapshot(&loaded.client, store, &org, false) => crawl,
            () = cancel.cancelled() => {
                return RunOutcome::failed("abandoned at shutdown; the snapshot in flight was rolled back");
            }
        };
        let (store, crawl) = match crawl {
            Ok(done) => done,
            Err(e) => {
                return RunOutcome::failed(format!("snapshot failed; nothing was stored: {e}"));
            }
        };
        let info = crawl.info.clone();
        let mut outcome = RunOutcome::new(info.status);
        outcome.snapshot = Some(info.id);
        outcome.snapshot_duration = Some(crawl.elapsed);
        outcome.requests = info.stats.requests;
        outcome.errors = info.stats.errors;
        if let Some(refused) = &crawl.refused {
            outcome.message = Some(refused.to_string());
        } else if let Some((scope, error)) = crawl.failed_scopes.first() {
            outcome.message = Some(format!(
                "{} scope(s) could not be read (their objects were carried forward), first {}",
                crawl.failed_scopes.len(),
                crate::report::failed_scope_line(scope, error)
            ));
        }

        // Evaluation is blocking SQLite work.
        let now = Utc::now();
        let loaded = loaded.clone();
        let evaluated = tokio::task::spawn_blocking(move || {
            let announce = Announce {
                notifier: &loaded.notifier,
                organization: &loaded.config.openai.organization,
                dry_run: false,
            };
            findings::evaluate_run(
                &store,
                &loaded.rules.rules,
                &loaded.rules.exemptions,
                &info,
                Some(&announce),
                now,
            )
            .map(|(run, _notified)| run)
            .map_err(|e| format!("evaluating snapshot {}: {e}", info.id))
        })
        .await;
        let run = match evaluated {
            Ok(Ok(run)) => run,
            Ok(Err(message)) => {
                outcome.status = SnapshotStatus::Failed;
                outcome.message = Some(message);
                return outcome;
            }
            Err(join) => {
                outcome.status = SnapshotStatus::Failed;
                outcome.message = Some(format!("evaluation stopped: {join}"));
                return outcome;
            }
        };

        for event in &run.reconciled.events {
            match event.kind {
                EventKind::Opened | EventKind::Reopened | EventKind::ExemptionExpired => {
                    outcome.findings_new += 1
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

    /// Delivers every due outbox message and records the figures; undelivered mail stays
    /// queued for the next run (the outbox logs each failure).
    async fn deliver(&self, loaded: Arc<Loaded>) -> Result<(u64, u64), BoxError> {
        let db = self.inputs.db.clone();
        let report = tokio::task::spawn_blocking(move || -> Result<_, BoxError> {
            let store = Store::open(&db)?;
            Ok(loaded.notifier.deliver_pending(store.conn(), Utc::now())?)
        })
        .await??;
        let (sent, failed) = (report.sent.len() as u64, report.failed.len() as u64);
        self.metrics.record_emails(sent, failed);
        self.metrics.set_outbox_depth(report.pending as u64);
        Ok((sent, failed))
    }
}

impl Job for AuditJob {
    async fn run(&self, ctx: RunContext) -> RunOutcome {
        let loaded = self.loaded();
        let mut outcome = self.audit(&loaded, &ctx.cancel).await;
        if ctx.cancel.is_cancelled() {
            // Shutting down: `flush` delivers, within the daemon's deadline.
            return outcome;
        }
        match self.deliver(loaded).await {
            Ok((sent, failed)) => {
                outcome.emails_sent = sent;
                outcome.emails_failed = failed;
            }
            Err(reason) => {
                tracing::warn!(%reason, "the outbox could not be delivered; it is kept for the next run");
            }
        }
        outcome
    }

    async fn last_run_started(&self) -> Option<DateTime<Utc>> {
        let store = Store::open_read_only(&self.inputs.db).ok()?;
        store
            .latest_snapshot()
            .ok()
            .flatten()
            .map(|snapshot| snapshot.started_at)
    }

    async fn reload(&self) -> Result<Option<Timing>, BoxError> {
        let loaded = load(&self.inputs, &self.metrics)?;
        let timing = Timing::from_config(&loaded.config.schedule)?;
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(loaded),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(loaded),
        }
        Ok(Some(timing))
    }

    async fn flush(&self) -> Result<(), BoxError> {
        let (_, failed) = self.deliver(self.loaded()).await?;
        if failed > 0 {
            tracing::warn!(
                failed,
                "messages remain in the outbox; the next start delivers them"
            );
        }
        Ok(())
    }

    fn ready(&self) -> Result<(), String> {
        super::health::database_writable(&self.inputs.db)
    }
}
