//! The daemon's job: one full audit per run — snapshot, evaluate, announce, deliver —
//! the same steps as `orgwarden audit --notify`, with configuration and rules that SIGHUP
//! reloads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use crate::client::{AdminClient, ClientOptions, load_admin_key};
use crate::collect;
use crate::config::{Config, DEFAULT_BASE_URL};
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

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.loaded().config.clone()
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
    let base_url = inputs
        .base_url
        .clone()
        .or_else(|| config.openai.base_url.clone())
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
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

impl Job for AuditJob {
    async fn run(&self, ctx: RunContext) -> RunOutcome {
        let loaded = self.loaded();
        let store = match Store::open(&self.inputs.db) {
            Ok(store) => store,
            Err(e) => return RunOutcome::failed(format!("cannot open the database: {e}")),
        };
        let org = loaded.config.openai.organization.clone();
        // Dropping the crawl drops the snapshot's writer, which rolls the transaction back:
        // an abandoned run leaves the previous snapshot as it was.
        let crawl = tokio::select! {
            crawl = collect::snapshot(&loaded.client, store, &org, false) => crawl,
            () = ctx.cancel.cancelled() => {
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
                "{} scope(s) could not be read (their objects were carried forward), first {scope}: {error}",
                crawl.failed_scopes.len()
            ));
        }

        // Evaluation and delivery are blocking SQLite and SMTP work.
        let now = Utc::now();
        let evaluated = tokio::task::spawn_blocking(move || {
            let announce = Announce {
                notifier: &loaded.notifier,
                organization: &loaded.config.openai.organization,
                dry_run: false,
            };
            let (run, _notified) = findings::evaluate_run(
                &store,
                &loaded.rules.rules,
                &loaded.rules.exemptions,
                &info,
                Some(&announce),
                now,
            )
            .map_err(|e| format!("evaluating snapshot {}: {e}", info.id))?;
            // Undelivered mail stays in the outbox for the next run: not a failed run.
            let delivery = loaded
                .notifier
                .deliver_pending(store.conn(), now)
                .map_err(|e| e.to_string());
            Ok::<_, String>((run, delivery))
        })
        .await;
        let (run, delivery) = match evaluated {
            Ok(Ok(done)) => done,
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
        match delivery {
            Ok(report) => {
                outcome.emails_sent = report.sent.len() as u64;
                outcome.emails_failed = report.failed.len() as u64;
                self.metrics.set_outbox_depth(report.pending as u64);
                for (id, reason) in &report.failed {
                    tracing::warn!(message = ?id, %reason, "email not delivered; it stays in the outbox");
                }
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
        let loaded = self.loaded();
        let db = self.inputs.db.clone();
        let report = tokio::task::spawn_blocking(move || -> Result<_, BoxError> {
            let store = Store::open(&db)?;
            Ok(loaded.notifier.deliver_pending(store.conn(), Utc::now())?)
        })
        .await??;
        self.metrics.set_outbox_depth(report.pending as u64);
        if report.pending > 0 {
            tracing::warn!(
                pending = report.pending,
                "messages remain in the outbox; the next start delivers them"
            );
        }
        Ok(())
    }

    fn ready(&self) -> Result<(), String> {
        super::health::database_writable(&self.inputs.db)
    }
}
