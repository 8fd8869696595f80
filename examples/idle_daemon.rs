//! The daemon framework (`serve`, the path `orgwarden daemon` takes) with a stand-in job, so
//! that the framework can be measured and tested apart from an audit: its idle cost
//! (docs/deploy.md, "Idle cost") and its handling of real signals
//! (`tests/it/daemon_signals.rs`), which wants runs that last as long as the test chooses
//! and need no organization to read.
//!
//! The job does no auditing: it sleeps `--job-secs` (watching its cancellation token) and
//! appends what happens to `--marker` so a test can follow it from outside.
//!
//! ```sh
//! cargo run --example idle_daemon -- --db /tmp/x.db --cron '0 0 1 1 *' --listen 127.0.0.1:9464
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use orgwarden::cli::daemon::{ServeOptions, serve};
use orgwarden::config::Config;
use orgwarden::daemon::{BoxError, Job, RunContext, RunOutcome, Timing};
use orgwarden::model::SnapshotStatus;

#[derive(Debug, Parser)]
struct Args {
    /// The database whose daemon lock is taken
    #[arg(long)]
    db: PathBuf,
    /// The schedule
    #[arg(long, default_value = "0 0 1 1 *")]
    cron: String,
    /// Its time zone
    #[arg(long, default_value = "UTC")]
    tz: String,
    /// How long each run takes
    #[arg(long, default_value_t = 0.0)]
    job_secs: f64,
    /// Run once at start
    #[arg(long)]
    run_on_start: bool,
    /// Serve /healthz, /readyz and /metrics here
    #[arg(long)]
    listen: Option<String>,
    /// Append events to this file
    #[arg(long)]
    marker: Option<PathBuf>,
    /// Shutdown deadline in seconds
    #[arg(long, default_value_t = 30.0)]
    deadline_secs: f64,
}

struct SleepJob {
    job_time: Duration,
    marker: Option<PathBuf>,
}

impl SleepJob {
    fn mark(&self, line: &str) {
        if let Some(path) = &self.marker {
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(error) = written {
                eprintln!("cannot write {}: {error}", path.display());
            }
        }
    }
}

impl Job for SleepJob {
    async fn run(&self, ctx: RunContext) -> RunOutcome {
        self.mark(&format!("started {}", ctx.reason.as_str()));
        tokio::select! {
            () = tokio::time::sleep(self.job_time) => {
                self.mark("finished complete");
                RunOutcome::new(SnapshotStatus::Complete)
            }
            () = ctx.cancel.cancelled() => {
                self.mark("cancelled");
                RunOutcome::failed("cancelled at shutdown")
            }
        }
    }

    async fn last_run_started(&self) -> Option<DateTime<Utc>> {
        None
    }

    async fn reload(&self) -> Result<Option<Timing>, BoxError> {
        self.mark("reloaded");
        Ok(None)
    }

    async fn flush(&self) -> Result<(), BoxError> {
        self.mark("flushed");
        Ok(())
    }

    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // The same path `orgwarden daemon` takes: orgwarden.toml text → serve().
    let mut toml = format!(
        "[schedule]\ncron = {:?}\ntimezone = {:?}\nrun_on_start = {}\n",
        args.cron, args.tz, args.run_on_start
    );
    if let Some(listen) = &args.listen {
        toml.push_str(&format!("[server]\nlisten = {listen:?}\n"));
    }
    let job = Arc::new(SleepJob {
        job_time: Duration::from_secs_f64(args.job_secs),
        marker: args.marker,
    });
    let options = ServeOptions {
        shutdown_deadline: Duration::from_secs_f64(args.deadline_secs),
        ..ServeOptions::default()
    };
    let result = Config::parse(&toml, Path::new("idle_daemon.toml"))
        .map_err(anyhow::Error::from)
        .and_then(|config| serve(&config, &args.db, job, options));
    match result {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
