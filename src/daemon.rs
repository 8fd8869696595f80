//! The daemon: runs an injected [`Job`] on the configured [`Schedule`] until asked to stop.
//!
//! Shaped like atuin's daemon: a [`Daemon`] built from a job and [`Component`]s (each with
//! `start`, `handle_event` and `stop`), a cloneable [`DaemonHandle`] to ask for a reload or a
//! shutdown, and a graceful stop. The rules it keeps:
//!
//! - **One daemon per database**: it holds `<db>.daemon.lock` and the store's writer lock
//!   (`<db>.lock`) for its whole life ([`lock::DaemonLock`]); a second daemon refuses to
//!   start, and the job it runs must not take the writer lock again.
//! - **No overlap**: a tick that comes while a run is in flight is skipped and logged once.
//! - **One catch-up**: if the last recorded run started before the previous scheduled tick
//!   (the daemon was down), one run happens at start, not one per missed tick. A run is
//!   recorded once it has evaluated its snapshot.
//! - **Clock steps**: a wall clock set back by more than [`CLOCK_STEP_TOLERANCE`] is
//!   noticed (at the latest when the tick waited for was due) and the next run planned by
//!   the new time; one set forward runs the tick it waited for and reports the ticks it
//!   passed over.
//! - **SIGHUP** calls [`Job::reload`]; on failure the old configuration and rules stay.
//! - **SIGTERM / SIGINT**: no new runs; rule evaluation in flight stops at once (the run
//!   fails and records nothing); a crawl in flight gets `shutdown_deadline` (30 s) to
//!   finish, then its cancellation token fires and it has `abandon_grace` (5 s) to roll back
//!   before it is dropped; a second signal cancels it at once. Then [`Job::flush`] (the
//!   outbox), the components stop, and [`Running::run`] returns `Ok` (exit 0). A run dropped
//!   after it told [`Saved`] what it committed is recorded by that, not as a failure.

pub mod health;
pub mod job;
pub mod lock;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rand::RngExt;
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

pub use metrics::Metrics;

use crate::config::ScheduleConfig;
use crate::model::{SnapshotId, SnapshotStatus};
use crate::schedule::Schedule;

/// An error from the injected job's `reload` or `flush`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon holds the database, or the lock file is unusable.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// `[server] listen` is not an address, or cannot be bound.
    #[error("[server] listen `{addr}`: {reason}")]
    Listen {
        /// The address as configured.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The signal handlers could not be installed.
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    /// A blocking task (taking the lock) stopped before it finished.
    #[error("a blocking task stopped: {0}")]
    Stopped(String),
}

/// When runs happen: `[schedule]` parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// The cron schedule.
    pub schedule: Schedule,
    /// A random delay of up to this long before each scheduled run.
    pub jitter: Option<Duration>,
    /// Run once as soon as the daemon starts.
    pub run_on_start: bool,
}

impl Timing {
    /// The timing of a validated `[schedule]` (cron, timezone, jitter, run_on_start).
    pub fn from_config(config: &ScheduleConfig) -> Timing {
        Timing {
            schedule: config.schedule.clone(),
            jitter: config.jitter.map(crate::duration::Duration::to_std),
            run_on_start: config.run_on_start,
        }
    }
}

/// Why a run started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunReason {
    /// A scheduled tick.
    Scheduled,
    /// `run_on_start`.
    Startup,
    /// The daemon was down at the previous tick.
    CatchUp,
}

impl RunReason {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RunReason::Scheduled => "scheduled",
            RunReason::Startup => "startup",
            RunReason::CatchUp => "catch-up",
        }
    }
}

/// What a run gets from the daemon.
#[derive(Clone, Debug)]
pub struct RunContext {
    /// Why it runs.
    pub reason: RunReason,
    /// The tick it stands for (for a startup run, the start time).
    pub scheduled_for: DateTime<Utc>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Fires when the daemon is stopping and the run must give up cleanly (roll back).
    pub cancel: CancellationToken,
    /// Fires at the first SIGTERM/SIGINT: rule evaluation stops at once (a rule may run
    /// for its whole budget), while a crawl still gets the shutdown deadline.
    pub stopping: CancellationToken,
    /// Where the job records API, findings, outbox and email figures.
    pub metrics: Arc<Metrics>,
    /// Where the job puts its figures once its results are saved.
    pub saved: Saved,
}

/// What a run has saved so far. The job puts its figures here once its snapshot and
/// findings are committed, before the slow part that may follow (delivering); a run
/// dropped after that, cut off at shutdown or panicking, is then recorded by what it
/// saved, not as a run that failed with nothing to show.
#[derive(Clone, Debug, Default)]
pub struct Saved(Arc<Mutex<Option<RunOutcome>>>);

impl Saved {
    /// Records the figures of what the run has committed.
    pub fn record(&self, outcome: &RunOutcome) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(outcome.clone());
    }

    /// The figures recorded, if any.
    fn take(&self) -> Option<RunOutcome> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// How a run ended, with the figures the run's log line reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// complete, partial or failed.
    pub status: SnapshotStatus,
    /// The snapshot it recorded.
    pub snapshot: Option<SnapshotId>,
    /// How long collecting the snapshot took.
    pub snapshot_duration: Option<Duration>,
    /// Admin API requests sent.
    pub requests: u64,
    /// Scopes that could not be read.
    pub errors: u64,
    /// Findings opened or reopened.
    pub findings_new: u64,
    /// Findings resolved.
    pub findings_resolved: u64,
    /// Findings open after the run.
    pub findings_open: u64,
    /// Emails delivered.
    pub emails_sent: u64,
    /// Emails that could not be delivered (they stay in the outbox).
    pub emails_failed: u64,
    /// Why it was partial or failed.
    pub message: Option<String>,
    /// `[openai] organization` of the run: with a daemon per organization writing one log,
    /// each run's line says whose it was.
    pub organization: Option<String>,
}

impl RunOutcome {
    /// An outcome with the given status and every figure zero.
    pub fn new(status: SnapshotStatus) -> RunOutcome {
        RunOutcome {
            status,
            snapshot: None,
            snapshot_duration: None,
            requests: 0,
            errors: 0,
            findings_new: 0,
            findings_resolved: 0,
            findings_open: 0,
            emails_sent: 0,
            emails_failed: 0,
            message: None,
            organization: None,
        }
    }

    /// A failed run and why.
    pub fn failed(message: impl Into<String>) -> RunOutcome {
        RunOutcome {
            message: Some(message.into()),
            ..RunOutcome::new(SnapshotStatus::Failed)
        }
    }
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// Why it ran.
    pub reason: RunReason,
    /// The tick it stood for.
    pub scheduled_for: DateTime<Utc>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: RunOutcome,
}

/// The work the daemon schedules: the audit, injected so the daemon does not depend on it.
pub trait Job: Send + Sync + 'static {
    /// One run. It should watch `ctx.cancel` and roll back when it fires.
    fn run(&self, ctx: RunContext) -> impl Future<Output = RunOutcome> + Send;

    /// When the last recorded run started (from the store), to detect a missed tick.
    fn last_run_started(&self) -> impl Future<Output = Option<DateTime<Utc>>> + Send;

    /// Re-reads configuration and rules (SIGHUP). `Ok(Some(timing))` replaces the schedule;
    /// on `Err` the job must keep what it had, and so does the daemon.
    fn reload(&self) -> impl Future<Output = Result<Option<Timing>, BoxError>> + Send;

    /// Delivers what is pending (the outbox) before the daemon exits.
    fn flush(&self) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Between runs: delivers the queued messages whose retry is due, trying none once
    /// `stop` is cancelled, and says when the next one will be due (`None`: none waits).
    /// Without it, a message a run could not deliver would wait for the next run, a day
    /// later on a daily schedule, whatever its backoff said.
    fn retry(
        &self,
        stop: CancellationToken,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, BoxError>> + Send {
        drop(stop);
        std::future::ready(Ok(None))
    }

    /// Whether the database can be written (`/readyz`); `Err` says why not.
    fn ready(&self) -> Result<(), String>;
}

/// What happened, as dispatched to every component.
#[derive(Clone, Debug)]
pub enum DaemonEvent {
    /// A run started.
    RunStarted {
        /// Why.
        reason: RunReason,
        /// The tick it stands for.
        scheduled_for: DateTime<Utc>,
    },
    /// A run ended.
    RunFinished(Box<RunRecord>),
    /// A tick came while a run was still going; it was not run.
    TickSkipped {
        /// The tick.
        tick: DateTime<Utc>,
    },
    /// Ticks passed without the daemon seeing them (suspend, clock jump); not run.
    TicksPassed {
        /// How many.
        count: u64,
    },
    /// The wall clock stepped back this far; the next run was planned again by the new time.
    ClockWentBack {
        /// How far.
        by: Duration,
    },
    /// Configuration and rules were reloaded.
    Reloaded,
    /// A reload failed; the previous configuration and rules stay.
    ReloadFailed {
        /// Why.
        error: String,
    },
    /// The daemon is stopping.
    ShutdownRequested,
}

struct Shared {
    shutdown: CancellationToken,
    abandon: CancellationToken,
    reload: Notify,
    metrics: Arc<Metrics>,
    last_run: Mutex<Option<RunRecord>>,
    ready: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
    health_addr: OnceLock<SocketAddr>,
}

/// A cloneable handle to a daemon: ask it to reload or stop, read its state.
#[derive(Clone)]
pub struct DaemonHandle {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for DaemonHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonHandle").finish_non_exhaustive()
    }
}

impl DaemonHandle {
    /// Asks the daemon to stop (what SIGTERM does); asking again abandons the run in flight.
    pub fn shutdown(&self) {
        if self.inner.shutdown.is_cancelled() {
            self.inner.abandon.cancel();
        } else {
            self.inner.shutdown.cancel();
        }
    }

    /// Asks the daemon to reload configuration and rules (what SIGHUP does).
    pub fn reload(&self) {
        self.inner.reload.notify_one();
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The last finished run.
    pub fn last_run(&self) -> Option<RunRecord> {
        self.inner
            .last_run
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `/readyz`: the database is writable and the last run did not fail.
    pub fn readiness(&self) -> Result<(), String> {
        (self.inner.ready)()?;
        match self.last_run() {
            Some(run) if run.outcome.status == SnapshotStatus::Failed => Err(format!(
                "the last run ({}, finished {}) failed: {}",
                run.reason.as_str(),
                crate::report::rfc3339(run.finished_at),
                // Served over HTTP, past the log writer's scrubbing.
                crate::secrets::scrub(run.outcome.message.as_deref().unwrap_or("no reason given"))
            )),
            _ => Ok(()),
        }
    }

    /// Where the health server listens, once started.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.inner.health_addr.get().copied()
    }

    fn set_health_addr(&self, addr: SocketAddr) {
        let _ = self.inner.health_addr.set(addr);
    }
}

/// A part of the daemon with its own lifecycle (atuin's pattern).
pub trait Component: Send + Sync {
    /// The name in logs.
    fn name(&self) -> &'static str;
    /// Called once before the first run; an error stops the daemon from starting.
    fn start(&mut self, handle: DaemonHandle) -> BoxFuture<'_, Result<(), DaemonError>>;
    /// Called for every event, in registration order.
    fn handle_event<'a>(&'a mut self, event: &'a DaemonEvent) -> BoxFuture<'a, ()>;
    /// Called once at shutdown, in reverse registration order.
    fn stop(&mut self) -> BoxFuture<'_, ()>;
}

/// Builds a [`Daemon`].
pub struct DaemonBuilder<J> {
    job: Arc<J>,
    timing: Timing,
    database: Option<PathBuf>,
    listen: Option<SocketAddr>,
    signals: bool,
    shutdown_deadline: Duration,
    abandon_grace: Duration,
    flush_timeout: Duration,
    retry_soonest: Duration,
    retry_latest: Duration,
    metrics: Arc<Metrics>,
    components: Vec<Box<dyn Component>>,
}

impl<J: Job> DaemonBuilder<J> {
    /// Holds the single-daemon lock of this database for the daemon's life.
    pub fn database(mut self, path: impl Into<PathBuf>) -> Self {
        self.database = Some(path.into());
        self
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` on this address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Turns SIGTERM/SIGINT into a shutdown and SIGHUP into a reload.
    pub fn signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// How long the run in flight may take to finish after a shutdown request (30 s).
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// How long a cancelled run gets to roll back before it is dropped (5 s).
    pub fn abandon_grace(mut self, grace: Duration) -> Self {
        self.abandon_grace = grace;
        self
    }

    /// How long the final [`Job::flush`] may take (30 s).
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// Between runs, how soon after one look at the outbox the next may come (5 s), and
    /// how long it may wait at most (5 minutes: a message requeued by hand is seen then).
    pub fn retry_timing(mut self, soonest: Duration, latest: Duration) -> Self {
        self.retry_soonest = soonest;
        self.retry_latest = latest;
        self
    }

    /// Uses this metrics registry (the job may hold the same one).
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Adds a component; components start in the order added.
    pub fn component(mut self, component: impl Component + 'static) -> Self {
        self.components.push(Box::new(component));
        self
    }

    /// The daemon, not yet started.
    pub fn build(self) -> Daemon<J> {
        let job = self.job.clone();
        let handle = DaemonHandle {
            inner: Arc::new(Shared {
                shutdown: CancellationToken::new(),
                abandon: CancellationToken::new(),
                reload: Notify::new(),
                metrics: self.metrics,
                last_run: Mutex::new(None),
                ready: Box::new(move || job.ready()),
                health_addr: OnceLock::new(),
            }),
        };
        // The run log and the metrics recorder come first so they see every event.
        let mut components: Vec<Box<dyn Component>> =
            vec![Box::new(RunLog), Box::new(MetricsRecorder::default())];
        if self.signals {
            components.push(Box::new(SignalListener::default()));
        }
        if let Some(addr) = self.listen {
            components.push(Box::new(health::HealthServer::new(addr)));
        }
        components.extend(self.components);
        Daemon {
            job: self.job,
            timing: self.timing,
            database: self.database,
            shutdown_deadline: self.shutdown_deadline,
            abandon_grace: self.abandon_grace,
            flush_timeout: self.flush_timeout,
            retry_soonest: self.retry_soonest,
            retry_latest: self.retry_latest,
            components,
            handle,
        }
    }
}

/// A daemon ready to start.
pub struct Daemon<J> {
    job: Arc<J>,
    timing: Timing,
    database: Option<PathBuf>,
    shutdown_deadline: Duration,
    abandon_grace: Duration,
    flush_timeout: Duration,
    retry_soonest: Duration,
    retry_latest: Duration,
    components: Vec<Box<dyn Component>>,
    handle: DaemonHandle,
}

impl<J: Job> Daemon<J> {
    /// A builder for a daemon that runs `job` on `timing`.
    pub fn builder(job: Arc<J>, timing: Timing) -> DaemonBuilder<J> {
        DaemonBuilder {
            job,
            timing,
            database: None,
            listen: None,
            signals: false,
            shutdown_deadline: Duration::from_secs(30),
            abandon_grace: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(30),
            retry_soonest: RETRY_SOONEST,
            retry_latest: MAX_SLEEP,
            metrics: Arc::new(Metrics::new()),
            components: Vec::new(),
        }
    }

    /// The handle for reload and shutdown requests.
    pub fn handle(&self) -> DaemonHandle {
        self.handle.clone()
    }

    /// Takes the database lock and starts every component.
    pub async fn start(mut self) -> Result<Running<J>, DaemonError> {
        let lock = match self.database.clone() {
            // File locking is blocking I/O: off the async workers, like every store access.
            Some(db) => Some(
                tokio::task::spawn_blocking(move || lock::DaemonLock::acquire(&db))
                    .await
                    .map_err(|e| DaemonError::Stopped(e.to_string()))??,
            ),
            None => None,
        };
        for index in 0..self.components.len() {
            let component = &mut self.components[index];
            tracing::debug!(component = component.name(), "starting component");
            if let Err(error) = component.start(self.handle.clone()).await {
                // Stop what already started, newest first, so nothing is left listening.
                for started in self.components[..index].iter_mut().rev() {
                    started.stop().await;
                }
                return Err(error);
            }
        }
        Ok(Running {
            daemon: self,
            _lock: lock,
        })
    }
}

/// A started daemon: call [`Running::run`].
pub struct Running<J> {
    daemon: Daemon<J>,
    _lock: Option<lock::DaemonLock>,
}

struct InFlight {
    task: JoinHandle<RunOutcome>,
    cancel: CancellationToken,
    saved: Saved,
    reason: RunReason,
    scheduled_for: DateTime<Utc>,
    started_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug)]
struct Planned {
    tick: DateTime<Utc>,
    fire_at: DateTime<Utc>,
}

/// The longest single sleep: waking up now and then re-reads the wall clock, so a suspend
/// or a clock change cannot leave the daemon asleep past its tick.
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// Between runs, the least time from one look at the outbox to the next: a receiver
/// answering `Retry-After: 0` for ever gets a try every few seconds, not a busy loop.
const RETRY_SOONEST: Duration = Duration::from_secs(5);

/// Between runs, the outbox's retries: when to look at it next, and the pass under way.
/// A pass never overlaps a run: a run holds SQLite's write lock for its whole crawl, and
/// a pass that could not record a delivery would send it again later.
struct Retries {
    /// When to look next.
    at: DateTime<Utc>,
    /// The reading `at` was planned by (a clock stepped back is seen as such).
    planned: Reading,
    /// The pass under way.
    pass: Option<RetryPass>,
    /// A tick that came during the pass: it runs as soon as the pass has stopped.
    tick: Option<DateTime<Utc>>,
    /// A look asked for during the pass (a reload may have changed the channels): the
    /// pass planned by what it read before, so the next look comes right after it.
    again: bool,
}

struct RetryPass {
    task: JoinHandle<Result<Option<DateTime<Utc>>, String>>,
    stop: CancellationToken,
}

impl Retries {
    fn now() -> Retries {
        let planned = Reading::now();
        Retries {
            at: planned.wall,
            planned,
            pass: None,
            tick: None,
            again: false,
        }
    }

    /// Look as soon as nothing else is under way (after a run, a reload, a clock step).
    fn look_now(&mut self) {
        self.planned = Reading::now();
        self.at = self.planned.wall;
        self.again = self.pass.is_some();
    }

    /// When to look, if looking is allowed now: never during a run or a pass.
    fn wake_at(&self, run_in_flight: bool) -> Option<DateTime<Utc>> {
        (!run_in_flight && self.pass.is_none() && self.tick.is_none()).then_some(self.at)
    }

    /// Plans the next look after a pass: when the next message is due (now, if a look was
    /// asked for during the pass), but no sooner than `soonest` and no later than `latest`
    /// from now.
    fn plan(&mut self, due: Option<DateTime<Utc>>, soonest: Duration, latest: Duration) {
        self.planned = Reading::now();
        let now = self.planned.wall;
        let after = |d: Duration| {
            chrono::TimeDelta::from_std(d)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(now)
        };
        let latest = after(latest);
        let due = if std::mem::take(&mut self.again) {
            Some(now)
        } else {
            due
        };
        self.at = due
            .map_or(latest, |due| due.min(latest))
            .max(after(soonest));
    }
}

async fn join_retries(
    pass: &mut Option<RetryPass>,
) -> Result<Result<Option<DateTime<Utc>>, String>, JoinError> {
    match pass {
        Some(pass) => (&mut pass.task).await,
        None => std::future::pending().await,
    }
}

/// How far the wall clock may fall behind the monotonic clock before the daemon takes it
/// for a step back and plans again from the new time. Slewing (NTP) moves both clocks
/// alike; only a step (`date -s`, an NTP step, a restored VM) opens a gap.
const CLOCK_STEP_TOLERANCE: Duration = Duration::from_secs(60);

/// A wall-clock reading and the monotonic instant it was taken at.
#[derive(Clone, Copy, Debug)]
struct Reading {
    wall: DateTime<Utc>,
    at: std::time::Instant,
}

impl Reading {
    fn now() -> Reading {
        Reading {
            wall: Utc::now(),
            at: std::time::Instant::now(),
        }
    }

    /// How far the wall clock is now behind where it would be had it only run forward
    /// since this reading; zero if it is not behind.
    fn wall_clock_behind(&self, now: DateTime<Utc>) -> Duration {
        let ran = chrono::TimeDelta::from_std(self.at.elapsed()).unwrap_or(chrono::TimeDelta::MAX);
        self.wall
            .checked_add_signed(ran)
            .map_or(Duration::ZERO, |expected| {
                (expected - now).to_std().unwrap_or(Duration::ZERO)
            })
    }
}

/// Why [`wait_until`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Woke {
    /// The time came.
    Due,
    /// The wall clock stepped back this far since the plan was made: the time waited for is
    /// that much further away than planned.
    ClockWentBack(Duration),
}

/// Waits until the wall clock reaches `at` (for ever if `None`), or until it is seen to have
/// stepped back since `planned` (by more than [`CLOCK_STEP_TOLERANCE`]): a tick planned by
/// the old time would otherwise be waited for as long as the step, a year for a clock that
/// booted a year ahead and was then corrected, with no run and nothing said.
async fn wait_until(at: Option<DateTime<Utc>>, planned: Reading) -> Woke {
    loop {
        let now = Utc::now();
        let behind = planned.wall_clock_behind(now);
        if behind > CLOCK_STEP_TOLERANCE {
            return Woke::ClockWentBack(behind);
        }
        let Some(at) = at else {
            tokio::time::sleep(MAX_SLEEP).await;
            continue;
        };
        let left = (at - now).to_std().unwrap_or(Duration::ZERO);
        if left.is_zero() {
            return Woke::Due;
        }
        // Also wake when `at` would have come had the clock only run forward: a step back
        // is then seen at the planned time, not up to MAX_SLEEP after it.
        let planned_left = (at - planned.wall)
            .to_std()
            .ok()
            .and_then(|wait| wait.checked_sub(planned.at.elapsed()))
            .unwrap_or(Duration::ZERO);
        let sleep = if planned_left.is_zero() {
            left
        } else {
            left.min(planned_left)
        };
        tokio::time::sleep(sleep.min(MAX_SLEEP)).await;
    }
}

/// `tick` delayed by a uniformly random amount of up to `jitter` (millisecond steps).
fn jittered(tick: DateTime<Utc>, jitter: Option<Duration>, rng: &mut impl RngExt) -> DateTime<Utc> {
    let delay = match jitter {
        Some(jitter) if !jitter.is_zero() => {
            let millis = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
            rng.random_range(0..=millis)
        }
        _ => 0,
    };
    i64::try_from(delay)
        .ok()
        .and_then(|ms| tick.checked_add_signed(chrono::TimeDelta::milliseconds(ms)))
        .unwrap_or(tick)
}

async fn join(in_flight: &mut Option<InFlight>) -> Result<RunOutcome, JoinError> {
    match in_flight {
        Some(run) => (&mut run.task).await,
        None => std::future::pending().await,
    }
}

impl<J: Job> Running<J> {
    /// The handle for reload and shutdown requests.
    pub fn handle(&self) -> DaemonHandle {
        self.daemon.handle.clone()
    }

    /// Where the health server listens, if it was configured.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.daemon.handle.health_addr()
    }

    /// Runs until a shutdown request, then stops gracefully.
    pub async fn run(mut self) -> Result<(), DaemonError> {
        let handle = self.daemon.handle.clone();
        let mut in_flight: Option<InFlight> = None;
        let now = Utc::now();
        if self.daemon.timing.run_on_start {
            in_flight = Some(self.start_run(RunReason::Startup, now).await);
        } else if let Some(missed) = self.missed_tick(now).await {
            in_flight = Some(self.start_run(RunReason::CatchUp, missed).await);
        }
        let mut next = self.plan_after(now);
        let mut planned = Reading {
            wall: now,
            at: std::time::Instant::now(),
        };
        self.log_next(next);
        // Messages an earlier process left queued go out now, not at the next run.
        let mut retries = Retries::now();

        loop {
            let look_at = retries.wake_at(in_flight.is_some());
            tokio::select! {
                biased;
                () = handle.inner.shutdown.cancelled() => break,
                () = handle.inner.reload.notified() => {
                    if self.reload().await {
                        planned = Reading::now();
                        next = self.plan_after(planned.wall);
                        self.log_next(next);
                    }
                    // The channels may have changed.
                    retries.look_now();
                }
                joined = join(&mut in_flight) => {
                    if let Some(run) = in_flight.take() {
                        self.finish(run, joined).await;
                    }
                    retries.look_now();
                }
                woke = wait_until(next.map(|p| p.fire_at), planned) => {
                    if let Woke::ClockWentBack(by) = woke {
                        // Plan by the new time. A step back over a tick already run runs
                        // it again: one audit too many rather than none for that long.
                        self.dispatch(&DaemonEvent::ClockWentBack { by }).await;
                        planned = Reading::now();
                        next = self.plan_after(planned.wall);
                        self.log_next(next);
                        continue;
                    }
                    let Some(due) = next else { continue };
                    if in_flight.is_some() || retries.tick.is_some() {
                        self.dispatch(&DaemonEvent::TickSkipped { tick: due.tick }).await;
                    } else if let Some(pass) = &retries.pass {
                        tracing::info!("a run is due: the delivery of queued messages stops first");
                        pass.stop.cancel();
                        retries.tick = Some(due.tick);
                    } else {
                        in_flight = Some(self.start_run(RunReason::Scheduled, due.tick).await);
                    }
                    planned = Reading::now();
                    next = self.plan_following(due.tick).await;
                }
                woke = wait_until(look_at, retries.planned) => {
                    match woke {
                        Woke::ClockWentBack(_) => retries.look_now(),
                        Woke::Due => retries.pass = Some(self.start_retries()),
                    }
                }
                done = join_retries(&mut retries.pass) => {
                    retries.pass = None;
                    let due = match done {
                        Ok(Ok(due)) => due,
                        Ok(Err(reason)) => {
                            tracing::warn!(%reason, "queued messages could not be delivered between runs; they are kept and tried again");
                            None
                        }
                        Err(error) => {
                            tracing::error!(%error, "the delivery of queued messages between runs panicked; they are kept and tried again");
                            None
                        }
                    };
                    retries.plan(due, self.daemon.retry_soonest, self.daemon.retry_latest);
                    if let Some(tick) = retries.tick.take() {
                        in_flight = Some(self.start_run(RunReason::Scheduled, tick).await);
                    }
                }
            }
        }

        tracing::info!("shutting down: no new runs will start");
        self.dispatch(&DaemonEvent::ShutdownRequested).await;
        if let Some(pass) = retries.pass.take() {
            // It tries no further message now; the one being sent is waited for (within
            // its receiver's bound) so that its delivery is recorded, not sent again later.
            pass.stop.cancel();
            if tokio::time::timeout(self.daemon.flush_timeout, pass.task)
                .await
                .is_err()
            {
                tracing::error!("the delivery of queued messages did not stop in time");
            }
        }
        if let Some(run) = in_flight.take() {
            self.drain(run).await;
        }
        match tokio::time::timeout(self.daemon.flush_timeout, self.daemon.job.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "flushing the outbox failed; it is retried when the daemon next starts");
            }
            Err(_) => tracing::error!(
                timeout_secs = self.daemon.flush_timeout.as_secs(),
                "flushing the outbox timed out; it is retried when the daemon next starts"
            ),
        }
        for component in self.daemon.components.iter_mut().rev() {
            tracing::debug!(component = component.name(), "stopping component");
            component.stop().await;
        }
        tracing::info!("daemon stopped");
        Ok(())
    }

    async fn dispatch(&mut self, event: &DaemonEvent) {
        for component in &mut self.daemon.components {
            component.handle_event(event).await;
        }
    }

    /// The previous tick, if the daemon was down for it (one catch-up, not one per tick).
    async fn missed_tick(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let previous = self
            .daemon
            .timing
            .schedule
            .previous_at_or_before(now)?
            .with_timezone(&Utc);
        match self.daemon.job.last_run_started().await {
            Some(last) if last >= previous => None,
            Some(last) => {
                tracing::info!(
                    last_run = %last.to_rfc3339(),
                    missed_tick = %previous.to_rfc3339(),
                    "the daemon was down at a scheduled time; running once now to catch up"
                );
                Some(previous)
            }
            None => {
                tracing::info!(
                    "no run recorded yet; the first runs at the next tick \
                     (set [schedule] run_on_start = true to run at start)"
                );
                None
            }
        }
    }

    fn plan_after(&self, after: DateTime<Utc>) -> Option<Planned> {
        let tick = self
            .daemon
            .timing
            .schedule
            .next_after(after)?
            .with_timezone(&Utc);
        Some(self.with_jitter(tick))
    }

    fn with_jitter(&self, tick: DateTime<Utc>) -> Planned {
        Planned {
            tick,
            fire_at: jittered(tick, self.daemon.timing.jitter, &mut rand::rng()),
        }
    }

    /// The tick after `tick`, passing over (and reporting) ticks that are already more than a
    /// second in the past: the process was suspended, the clock jumped, or jitter outran them.
    async fn plan_following(&mut self, tick: DateTime<Utc>) -> Option<Planned> {
        let schedule = &self.daemon.timing.schedule;
        let now = Utc::now();
        let late = now - chrono::TimeDelta::seconds(1);
        let mut passed = 0u64;
        let mut next = schedule.next_after(tick)?.with_timezone(&Utc);
        while next < late {
            passed += 1;
            if passed >= 10_000 {
                next = schedule.next_after(now)?.with_timezone(&Utc);
                break;
            }
            next = schedule.next_after(next)?.with_timezone(&Utc);
        }
        if passed > 0 {
            self.dispatch(&DaemonEvent::TicksPassed { count: passed })
                .await;
        }
        Some(self.with_jitter(next))
    }

    fn log_next(&self, next: Option<Planned>) {
        let tz = self.daemon.timing.schedule.timezone();
        if let Some(planned) = next {
            tracing::info!(
                schedule = %self.daemon.timing.schedule,
                next_run = %planned.tick.with_timezone(&tz).to_rfc3339(),
                "waiting for the next scheduled run"
            );
        } else {
            tracing::warn!(
                schedule = %self.daemon.timing.schedule,
                "the schedule has no future run time"
            );
        }
    }

    /// Starts a pass over the outbox's due messages, between runs.
    fn start_retries(&self) -> RetryPass {
        let stop = self.daemon.handle.inner.shutdown.child_token();
        let job = self.daemon.job.clone();
        let told = stop.clone();
        let task = tokio::spawn(async move { job.retry(told).await.map_err(|e| e.to_string()) });
        RetryPass { task, stop }
    }

    async fn start_run(&mut self, reason: RunReason, scheduled_for: DateTime<Utc>) -> InFlight {
        let cancel = CancellationToken::new();
        let saved = Saved::default();
        let started_at = Utc::now();
        let ctx = RunContext {
            reason,
            scheduled_for,
            started_at,
            cancel: cancel.clone(),
            stopping: self.daemon.handle.inner.shutdown.clone(),
            metrics: self.daemon.handle.inner.metrics.clone(),
            saved: saved.clone(),
        };
        let job = self.daemon.job.clone();
        let task = tokio::spawn(async move { job.run(ctx).await });
        self.dispatch(&DaemonEvent::RunStarted {
            reason,
            scheduled_for,
        })
        .await;
        InFlight {
            task,
            cancel,
            saved,
            reason,
            scheduled_for,
            started_at,
        }
    }

    async fn finish(&mut self, run: InFlight, joined: Result<RunOutcome, JoinError>) {
        let outcome = match joined {
            Ok(outcome) => outcome,
            Err(error) => {
                let why = if error.is_panic() {
                    "the run panicked"
                } else {
                    "the run was abandoned at shutdown"
                };
                match run.saved.take() {
                    // Its snapshot and findings are in the database: say so, with its
                    // figures, rather than record a failure that lost nothing.
                    Some(mut saved) => {
                        // A run that failed before storing anything keeps its own cause.
                        let after = if saved.snapshot.is_some() {
                            format!("{why} after saving its results")
                        } else {
                            why.to_owned()
                        };
                        saved.message = Some(match saved.message {
                            Some(message) => format!("{message}; {after}"),
                            None => after,
                        });
                        saved
                    }
                    None => RunOutcome::failed(why),
                }
            }
        };
        let record = RunRecord {
            reason: run.reason,
            scheduled_for: run.scheduled_for,
            started_at: run.started_at,
            finished_at: Utc::now(),
            outcome,
        };
        *self
            .daemon
            .handle
            .inner
            .last_run
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(record.clone());
        self.dispatch(&DaemonEvent::RunFinished(Box::new(record)))
            .await;
    }

    /// Lets the run in flight finish within the deadline, else cancels and then drops it.
    async fn drain(&mut self, mut run: InFlight) {
        let deadline = self.daemon.shutdown_deadline;
        let abandon = self.daemon.handle.inner.abandon.clone();
        tracing::info!(
            deadline_secs = deadline.as_secs_f64(),
            "waiting for the run in flight to finish"
        );
        let finished = tokio::select! {
            joined = &mut run.task => Some(joined),
            () = tokio::time::sleep(deadline) => None,
            () = abandon.cancelled() => None,
        };
        let joined = if let Some(joined) = finished {
            joined
        } else {
            tracing::warn!("cancelling the run in flight; it rolls back what it had not committed");
            run.cancel.cancel();
            if let Ok(joined) = tokio::time::timeout(self.daemon.abandon_grace, &mut run.task).await
            {
                joined
            } else {
                tracing::error!("the run did not stop after cancellation; dropping it");
                run.task.abort();
                (&mut run.task).await
            }
        };
        self.finish(run, joined).await;
    }

    /// Calls [`Job::reload`]; true when the schedule changed. A reload reads files (a key
    /// on a stuck network mount, a FIFO) and holds the loop while it does: it is given up at
    /// a shutdown request or after [`RELOAD_LIMIT`], and the old configuration stays.
    async fn reload(&mut self) -> bool {
        let shutdown = self.daemon.handle.inner.shutdown.clone();
        let reloaded = tokio::select! {
            reloaded = self.daemon.job.reload() => reloaded,
            () = shutdown.cancelled() => {
                tracing::warn!("shutting down during a reload: the reload is given up");
                return false;
            }
            () = tokio::time::sleep(RELOAD_LIMIT) => Err(format!(
                "reading the configuration, rules and key took longer than {} s (a file on a \
                 mount that does not answer, or a FIFO?)",
                RELOAD_LIMIT.as_secs()
            )
            .into()),
        };
        match reloaded {
            Ok(timing) => {
                let changed = match timing {
                    Some(timing) if timing != self.daemon.timing => {
                        tracing::info!(
                            schedule = %timing.schedule,
                            "reloaded configuration and rules; the schedule changed"
                        );
                        self.daemon.timing = timing;
                        true
                    }
                    _ => {
                        tracing::info!("reloaded configuration and rules");
                        false
                    }
                };
                self.dispatch(&DaemonEvent::Reloaded).await;
                changed
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    "reload failed; keeping the previous configuration and rules"
                );
                self.dispatch(&DaemonEvent::ReloadFailed {
                    error: error.to_string(),
                })
                .await;
                false
            }
        }
    }
}

/// How long a reload may take before it is given up.
const RELOAD_LIMIT: Duration = Duration::from_secs(60);

/// Logs one line per run with its outcome and figures, and each skipped tick.
struct RunLog;

macro_rules! run_line {
    ($level:ident, $record:expr) => {{
        let record: &RunRecord = $record;
        let outcome = &record.outcome;
        tracing::$level!(
            organization = outcome.organization.as_deref(),
            reason = record.reason.as_str(),
            status = outcome.status.as_str(),
            snapshot = outcome.snapshot.map(|s| s.0),
            scheduled_for = %record.scheduled_for.to_rfc3339(),
            duration_secs = (record.finished_at - record.started_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64(),
            snapshot_secs = outcome.snapshot_duration.map(|d| d.as_secs_f64()),
            requests = outcome.requests,
            errors = outcome.errors,
            findings_new = outcome.findings_new,
            findings_resolved = outcome.findings_resolved,
            findings_open = outcome.findings_open,
            emails_sent = outcome.emails_sent,
            emails_failed = outcome.emails_failed,
            cause = outcome.message.as_deref(),
            "run finished"
        )
    }};
}

impl Component for RunLog {
    fn name(&self) -> &'static str {
        "run-log"
    }

    fn start(&mut self, _handle: DaemonHandle) -> BoxFuture<'_, Result<(), DaemonError>> {
        Box::pin(async { Ok(()) })
    }

    fn handle_event<'a>(&'a mut self, event: &'a DaemonEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match event {
                DaemonEvent::RunStarted {
                    reason,
                    scheduled_for,
                } => tracing::info!(
                    reason = reason.as_str(),
                    scheduled_for = %scheduled_for.to_rfc3339(),
                    "run started"
                ),
                DaemonEvent::RunFinished(record) => match record.outcome.status {
                    SnapshotStatus::Complete => run_line!(info, record),
                    SnapshotStatus::Partial => run_line!(warn, record),
                    SnapshotStatus::Failed => run_line!(error, record),
                },
                DaemonEvent::TickSkipped { tick } => tracing::warn!(
                    tick = %tick.to_rfc3339(),
                    "the previous run is still in progress; skipping this scheduled run"
                ),
                DaemonEvent::TicksPassed { count } => tracing::warn!(
                    count,
                    "scheduled times passed while the process was suspended or the clock \
                     jumped; they are not run"
                ),
                DaemonEvent::ClockWentBack { by } => tracing::warn!(
                    by_secs = by.as_secs(),
                    "the wall clock stepped back; planning the next run by the new time"
                ),
                DaemonEvent::Reloaded
                | DaemonEvent::ReloadFailed { .. }
                | DaemonEvent::ShutdownRequested => {}
            }
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Feeds run outcomes into [`Metrics`].
#[derive(Default)]
struct MetricsRecorder {
    metrics: Option<Arc<Metrics>>,
}

impl Component for MetricsRecorder {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn start(&mut self, handle: DaemonHandle) -> BoxFuture<'_, Result<(), DaemonError>> {
        self.metrics = Some(handle.metrics().clone());
        Box::pin(async { Ok(()) })
    }

    fn handle_event<'a>(&'a mut self, event: &'a DaemonEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(metrics) = &self.metrics else { return };
            match event {
                DaemonEvent::RunStarted { .. } => metrics.set_run_in_progress(true),
                DaemonEvent::RunFinished(record) => {
                    metrics.set_run_in_progress(false);
                    metrics.record_run(
                        record.outcome.status,
                        record.finished_at,
                        record.outcome.snapshot_duration,
                    );
                }
                DaemonEvent::TickSkipped { .. } => metrics.record_tick_skipped(),
                DaemonEvent::TicksPassed { count } => metrics.record_ticks_passed(*count),
                DaemonEvent::Reloaded => metrics.set_reload_ok(true),
                DaemonEvent::ReloadFailed { .. } => metrics.set_reload_ok(false),
                _ => {}
            }
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A SIGHUP that came while the daemon was starting, before [`SignalListener`] took over.
#[cfg(unix)]
static EARLY_HANGUP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn note_early_hangup(_signal: libc::c_int) {
    EARLY_HANGUP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Catches SIGHUP from now until the daemon listens for signals. Its default action ends
/// the process, and loading the configuration, the rules and the key, building the runtime
/// and taking the lock come first: a `systemctl reload` in that time would kill the daemon.
/// One that comes meanwhile becomes a reload once the daemon runs. Call it first thing.
pub fn hold_early_hangups() {
    #[cfg(unix)]
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe, and has the
    // signature `signal` expects. Tokio's handler takes over when the daemon starts (it may
    // still call this one after its own: a flag nobody reads again).
    unsafe {
        libc::signal(
            libc::SIGHUP,
            note_early_hangup as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// SIGTERM and SIGINT ask for a shutdown (a second one abandons the run in flight); SIGHUP
/// asks for a reload.
#[derive(Default)]
struct SignalListener {
    task: Option<JoinHandle<()>>,
}

impl Component for SignalListener {
    fn name(&self) -> &'static str {
        "signals"
    }

    fn start(&mut self, handle: DaemonHandle) -> BoxFuture<'_, Result<(), DaemonError>> {
        Box::pin(async move {
            // Installed here, before the first run, so no early signal falls to the default
            // action (which would kill the process without a graceful stop).
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
                let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
                let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
                if EARLY_HANGUP.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    tracing::info!("SIGHUP received while starting: reloading");
                    handle.reload();
                }
                self.task = Some(tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            Some(()) = term.recv() => {
                                tracing::info!("SIGTERM received");
                                handle.shutdown();
                            }
                            Some(()) = int.recv() => {
                                tracing::info!("SIGINT received");
                                handle.shutdown();
                            }
                            Some(()) = hup.recv() => {
                                tracing::info!("SIGHUP received: reloading");
                                handle.reload();
                            }
                            else => break,
                        }
                    }
                }));
            }
            #[cfg(not(unix))]
            {
                self.task = Some(tokio::spawn(async move {
                    while tokio::signal::ctrl_c().await.is_ok() {
                        handle.shutdown();
                    }
                }));
            }
            Ok(())
        })
    }

    fn handle_event<'a>(&'a mut self, _event: &'a DaemonEvent) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(task) = self.task.take() {
                task.abort();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn jitter_delays_within_its_bound_and_spreads_runs() {
        let tick = Utc::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let jitter = Some(Duration::from_secs(30));
        let delays: Vec<i64> = (0..200)
            .map(|_| (jittered(tick, jitter, &mut rng) - tick).num_milliseconds())
            .collect();
        assert!(
            delays.iter().all(|d| (0..=30_000).contains(d)),
            "{delays:?}"
        );
        // Spread over the window, not bunched at one end.
        assert!(delays.iter().any(|d| *d < 10_000));
        assert!(delays.iter().any(|d| *d > 20_000));
        assert_eq!(jittered(tick, None, &mut rng), tick);
        assert_eq!(jittered(tick, Some(Duration::ZERO), &mut rng), tick);
    }

    #[tokio::test]
    async fn a_wall_clock_stepped_back_wakes_the_wait_instead_of_sleeping_through_the_step() {
        // Planned when the wall clock read an hour later than it reads now: it has since
        // stepped back an hour, and the tick, 30 s after the plan by the old time, is now an
        // hour and 30 s away.
        let planned = Reading {
            wall: Utc::now() + chrono::TimeDelta::hours(1),
            at: std::time::Instant::now(),
        };
        let tick = planned.wall + chrono::TimeDelta::seconds(30);
        let woke = tokio::time::timeout(Duration::from_secs(5), wait_until(Some(tick), planned))
            .await
            .expect("the wait noticed the step instead of sleeping through it");
        let Woke::ClockWentBack(by) = woke else {
            panic!("{woke:?}")
        };
        assert!(by.as_secs().abs_diff(3600) < 5, "{by:?}");
    }

    #[tokio::test]
    async fn a_wall_clock_running_forward_waits_for_the_tick() {
        let planned = Reading::now();
        let tick = planned.wall + chrono::TimeDelta::milliseconds(200);
        let woke = tokio::time::timeout(Duration::from_secs(5), wait_until(Some(tick), planned))
            .await
            .unwrap();
        assert_eq!(woke, Woke::Due);
        assert!(Utc::now() >= tick);
        // A small step back, within the tolerance, is waited out.
        let planned = Reading {
            wall: Utc::now() + chrono::TimeDelta::seconds(1),
            at: std::time::Instant::now(),
        };
        let tick = Utc::now() + chrono::TimeDelta::milliseconds(200);
        let woke = tokio::time::timeout(Duration::from_secs(5), wait_until(Some(tick), planned))
            .await
            .unwrap();
        assert_eq!(woke, Woke::Due);
    }

    #[test]
    fn timing_reads_jitter_and_run_on_start_from_config() {
        let config = crate::config::Config::parse(
            "[schedule]\ncron = \"@daily\"\ntimezone = \"Europe/Berlin\"\nrun_on_start = true\njitter = \"5m\"\n",
            std::path::Path::new("orgwarden.toml"),
        )
        .unwrap();
        let timing = Timing::from_config(&config.schedule);
        assert_eq!(timing.jitter, Some(Duration::from_secs(300)));
        assert!(timing.run_on_start);
        assert_eq!(timing.schedule.to_string(), "@daily (Europe/Berlin)");
    }
}
