//! `orgwarden daemon`: audits on the configured schedule until SIGTERM, with health and
//! metrics endpoints.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{CliError, Exit, GlobalArgs};
use crate::config::Config;
use crate::daemon::job::{AuditJob, JobInputs};
use crate::daemon::{Daemon, Job, Metrics, Timing};

/// `orgwarden daemon`
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Run audits on the configured schedule until stopped: each run snapshots the \
organization, evaluates the rules, records the findings and sends what is new.",
    after_help = "Example: orgwarden --config /etc/orgwarden/orgwarden.toml daemon\n\n\
Reads from orgwarden.toml (--config):\n  \
[schedule] cron, timezone, run_on_start, jitter: when audits run \
(check with `orgwarden schedule`)\n  \
[server] listen: the address of /healthz, /readyz and /metrics (none without it)\n  \
[openai], [storage], [rules], [[exemption]], [notify]: as for `orgwarden audit`\n\n\
Signals:\n  \
SIGHUP: reload the configuration and rules; on an error the old ones stay\n  \
SIGTERM, SIGINT: graceful stop: no new run, the run in flight gets 30 s to finish, \
the outbox is flushed; a second signal cancels the run at once\n\n\
Exit codes:\n  \
0: stopped by a signal\n  \
2: bad configuration, schedule or [server] listen address, another daemon holds the \
database, or a database it cannot use (another application's, or one a newer orgwarden \
wrote)\n\
A failed run does not stop the daemon: it is logged and shown in /metrics and the \
`snapshots` view."
)]
pub struct DaemonArgs {}

/// Runs `orgwarden daemon`: audits on `[schedule]` until SIGTERM/SIGINT, reloading
/// configuration and rules on SIGHUP.
pub fn daemon(global: &GlobalArgs, _args: &DaemonArgs) -> anyhow::Result<Exit> {
    // Only here, where the process is the daemon: in a process that already runs a tokio
    // signal handler (tests calling `serve`), this would replace it.
    crate::daemon::hold_early_hangups();
    let config = global.load_config()?;
    if global.config_path().is_none() {
        // One-shot commands run fine on the defaults, but a daemon started in the wrong
        // folder would audit for months with no notification and nobody told.
        let here = std::env::current_dir().map_or_else(|_| ".".into(), |d| d.display().to_string());
        tracing::warn!(
            "no configuration file: no --config (ORGWARDEN_CONFIG) and no orgwarden.toml in \
             {here}; the daemon runs on the built-in defaults (every 6 hours, UTC; findings \
             only in this log). `orgwarden init` writes a commented one"
        );
    }
    let options = ServeOptions::default();
    let inputs = JobInputs {
        config_path: global.config_path(),
        db: global.db_path(&config),
        base_url: global.base_url.clone(),
    };
    let db = inputs.db.clone();
    // A database a newer orgwarden wrote fails every run: said at start (exit 2), where a
    // rollback to an older version shows as a unit that does not start, not as a daemon
    // that looks healthy and audits nothing. Other faults are the runs' to report.
    if db.exists()
        && let Err(e @ crate::store::StoreError::TooNew { .. }) =
            crate::store::Store::open_read_only(&db)
    {
        return Err(CliError::usage(e));
    }
    let job = AuditJob::new(inputs, options.metrics.clone())
        .map_err(|e| CliError::usage(anyhow::anyhow!("{e}")))?;
    serve(&config, &db, Arc::new(job), options)
}

/// How [`serve`] runs the daemon beyond what `orgwarden.toml` says.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How long the run in flight may take to finish after SIGTERM.
    pub shutdown_deadline: Duration,
    /// The registry `/metrics` serves; give the job the same one.
    pub metrics: Arc<Metrics>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            shutdown_deadline: Duration::from_secs(30),
            metrics: Arc::new(Metrics::new()),
        }
    }
}

/// Runs the daemon framework with `job` on `[schedule]`, `[server] listen` and the database
/// at `db`, until SIGTERM/SIGINT (exit 0). Configuration, lock and listen errors exit 2.
/// `orgwarden daemon` runs it with the audit job; examples/idle_daemon.rs with a stand-in.
pub fn serve<J: Job>(
    config: &Config,
    db: &Path,
    job: Arc<J>,
    options: ServeOptions,
) -> anyhow::Result<Exit> {
    let timing = timing_from_config(config);
    let listen = config.server.listen;
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
    {
        tracing::warn!(
            listen = %addr,
            "[server] listen is not a loopback address: /metrics and /readyz are reachable \
             from the network without authentication"
        );
    }
    let runtime = super::runtime()?;
    let served = runtime.block_on(async {
        let mut builder = Daemon::builder(job, timing)
            .database(db)
            .signals(true)
            .shutdown_deadline(options.shutdown_deadline)
            .metrics(options.metrics);
        if let Some(addr) = listen {
            builder = builder.listen(addr);
        }
        let running = builder.build().start().await.map_err(CliError::usage)?;
        running.run().await.map_err(CliError::usage)?;
        Ok(Exit::Ok)
    });
    // The daemon has stopped, within its deadlines; a blocking thread can still be in a
    // delivery try, which no signal interrupts (up to its receiver's timeout, minutes for
    // SMTP). Dropping the runtime would wait for it. Its message was claimed and is tried
    // again once the claim lapses; an unfinished write rolls back as after a crash.
    runtime.shutdown_timeout(LEFT_RUNNING_GRACE);
    served
}

/// How long the daemon's exit waits for blocking work still running after it stopped.
const LEFT_RUNNING_GRACE: Duration = Duration::from_secs(5);

/// The daemon's timing from the validated `[schedule]`.
pub fn timing_from_config(config: &Config) -> Timing {
    Timing::from_config(&config.schedule)
}
