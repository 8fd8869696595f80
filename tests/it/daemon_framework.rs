//! The daemon framework driven with a fake job: ticks, overlap, catch-up, reload, shutdown,
//! the single-instance lock, and the health and metrics endpoints.
//!
//! Schedules are seconds-level (`*/1 * * * * *`) against the real clock, so the assertions
//! leave room for a loaded machine (at least / at most, not exact counts) where timing could
//! vary, and are exact where the framework promises something exact.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use orgwarden::daemon::{
    BoxError, Component, Daemon, DaemonError, DaemonEvent, DaemonHandle, Job, RunContext,
    RunOutcome, RunReason, Timing,
};
use orgwarden::model::{SnapshotId, SnapshotStatus};
use orgwarden::schedule::Schedule;

/// What the fake job does when it runs.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Sleeps this long, then completes, ignoring cancellation.
    Sleep(Duration),
    /// Sleeps this long unless cancelled first (then returns failed).
    SleepOrCancel(Duration),
    /// Returns failed at once.
    Fail,
    /// Panics.
    Panic,
    /// Records a saved snapshot 7, then sleeps this long ignoring cancellation (a run cut
    /// off while delivering).
    SaveThenSleep(Duration),
    /// Records a saved snapshot 7, then panics.
    SaveThenPanic,
    /// Records a failure that stored nothing, then panics.
    FailThenPanic,
}

/// The figures a run that saved snapshot 7 records before its delivery.
fn saved_seven() -> RunOutcome {
    let mut saved = RunOutcome::new(SnapshotStatus::Partial);
    saved.snapshot = Some(SnapshotId(7));
    saved.findings_new = 2;
    saved.message = Some("1 scope(s) could not be read".to_owned());
    saved
}

#[derive(Default)]
struct Log {
    runs: Vec<(RunReason, DateTime<Utc>)>,
    starts: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    events: Vec<String>,
}

struct FakeJob {
    behaviour: Behaviour,
    last_run: Option<DateTime<Utc>>,
    reload: Mutex<Vec<Result<Option<Timing>, String>>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    log: Mutex<Log>,
    reload_hangs: bool,
    /// What each call of `retry` does, in order: how long it delivers (unless stopped), and
    /// when it says the next message is due from its end. Once empty, nothing is due.
    retries: Mutex<std::collections::VecDeque<(Duration, Option<Duration>)>>,
}

impl FakeJob {
    fn new(behaviour: Behaviour) -> FakeJob {
        FakeJob {
            behaviour,
            last_run: None,
            reload: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            log: Mutex::new(Log::default()),
            reload_hangs: false,
            retries: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn with_retries(self, steps: &[(Duration, Option<Duration>)]) -> FakeJob {
        *self.retries.lock().unwrap() = steps.iter().copied().collect();
        self
    }

    fn event(&self, text: impl Into<String>) {
        self.log.lock().unwrap().events.push(text.into());
    }

    fn runs(&self) -> Vec<(RunReason, DateTime<Utc>)> {
        self.log.lock().unwrap().runs.clone()
    }

    fn events(&self) -> Vec<String> {
        self.log.lock().unwrap().events.clone()
    }
}

impl Job for FakeJob {
    async fn run(&self, ctx: RunContext) -> RunOutcome {
        let now_active = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now_active, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap()
            .runs
            .push((ctx.reason, ctx.scheduled_for));
        self.log
            .lock()
            .unwrap()
            .starts
            .push((ctx.scheduled_for, Utc::now()));
        self.event("run started");
        let outcome = match self.behaviour {
            Behaviour::Sleep(time) => {
                tokio::time::sleep(time).await;
                RunOutcome::new(SnapshotStatus::Complete)
            }
            Behaviour::SleepOrCancel(time) => {
                tokio::select! {
                    () = tokio::time::sleep(time) => RunOutcome::new(SnapshotStatus::Complete),
                    () = ctx.cancel.cancelled() => {
                        self.event("run cancelled");
                        RunOutcome::failed("cancelled")
                    }
                }
            }
            Behaviour::Fail => RunOutcome::failed("the admin key was refused"),
            Behaviour::Panic => panic!("fake job panics"),
            Behaviour::SaveThenSleep(time) => {
                ctx.saved.record(&saved_seven());
                tokio::time::sleep(time).await;
                RunOutcome::new(SnapshotStatus::Complete)
            }
            Behaviour::SaveThenPanic => {
                ctx.saved.record(&saved_seven());
                panic!("fake job panics after saving")
            }
            Behaviour::FailThenPanic => {
                ctx.saved
                    .record(&RunOutcome::failed("the admin key was refused"));
                panic!("fake job panics after failing")
            }
        };
        self.event("run finished");
        self.active.fetch_sub(1, Ordering::SeqCst);
        outcome
    }

    async fn last_run_started(&self) -> Option<DateTime<Utc>> {
        self.last_run
    }

    async fn reload(&self) -> Result<Option<Timing>, BoxError> {
        self.event("reload");
        if self.reload_hangs {
            // A key file on a mount that never answers.
            std::future::pending::<()>().await;
        }
        let next = self.reload.lock().unwrap().pop();
        match next {
            Some(Ok(timing)) => Ok(timing),
            Some(Err(message)) => Err(message.into()),
            None => Ok(None),
        }
    }

    async fn flush(&self) -> Result<(), BoxError> {
        self.event("flush");
        Ok(())
    }

    async fn retry(
        &self,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Option<DateTime<Utc>>, BoxError> {
        let step = self.retries.lock().unwrap().pop_front();
        let Some((delivering, next)) = step else {
            return Ok(None);
        };
        let now_active = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now_active, Ordering::SeqCst);
        self.event("retry");
        tokio::select! {
            () = tokio::time::sleep(delivering) => {}
            () = stop.cancelled() => self.event("retry stopped"),
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        Ok(next.map(|next| Utc::now() + TimeDelta::from_std(next).unwrap()))
    }

    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A component that records the events and lifecycle calls it sees.
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Component for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn start(&mut self, _handle: DaemonHandle) -> BoxFuture<'_, Result<(), DaemonError>> {
        Box::pin(async move {
            self.0.lock().unwrap().push("start".into());
            Ok(())
        })
    }

    fn handle_event<'a>(&'a mut self, event: &'a DaemonEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let name = match event {
                DaemonEvent::RunStarted { .. } => "run-started".to_owned(),
                DaemonEvent::RunFinished(record) => {
                    format!("run-finished {}", record.outcome.status.as_str())
                }
                DaemonEvent::TickSkipped { .. } => "tick-skipped".to_owned(),
                DaemonEvent::TicksPassed { count } => format!("ticks-passed {count}"),
                DaemonEvent::ClockWentBack { .. } => "clock-went-back".to_owned(),
                DaemonEvent::Reloaded => "reloaded".to_owned(),
                DaemonEvent::ReloadFailed { error } => format!("reload-failed {error}"),
                DaemonEvent::ShutdownRequested => "shutdown".to_owned(),
            };
            self.0.lock().unwrap().push(name);
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.0.lock().unwrap().push("stop".into());
        })
    }
}

/// Waits (up to 20 s, for a loaded machine) until the daemon has finished a run.
async fn first_run_finished(handle: &DaemonHandle) {
    let start = Instant::now();
    while handle.last_run().is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "no run finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn timing(cron: &str) -> Timing {
    Timing {
        schedule: Schedule::parse(cron, chrono_tz::UTC).unwrap(),
        jitter: None,
        run_on_start: false,
    }
}

fn every_second() -> Timing {
    timing("*/1 * * * * *")
}

/// A schedule whose ticks never come during a test.
fn far_future() -> Timing {
    timing("0 0 1 1 *")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seconds_schedule_runs_the_job_on_each_tick() {
    let job = Arc::new(FakeJob::new(Behaviour::Sleep(Duration::from_millis(20))));
    let events = Arc::new(Mutex::new(Vec::new()));
    let running = Daemon::builder(job.clone(), every_second())
        .component(Recorder(events.clone()))
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    tokio::time::sleep(Duration::from_millis(3500)).await;
    handle.shutdown();
    task.await.unwrap().unwrap();

    let runs = job.runs();
    assert!(runs.len() >= 2 && runs.len() <= 4, "{runs:?}");
    for (reason, tick) in &runs {
        assert_eq!(*reason, RunReason::Scheduled);
        assert_eq!(tick.timestamp_subsec_nanos(), 0, "ticks are whole seconds");
    }
    assert!(runs.windows(2).all(|w| w[0].1 < w[1].1));
    assert_eq!(job.max_active.load(Ordering::SeqCst), 1);
    assert_eq!(
        handle.metrics().runs(SnapshotStatus::Complete),
        runs.len() as u64
    );
    let events = events.lock().unwrap().clone();
    assert_eq!(events.first().map(String::as_str), Some("start"));
    assert_eq!(events.last().map(String::as_str), Some("stop"));
    assert!(events.contains(&"shutdown".to_owned()));
}

/// A component that holds up the daemon's loop once, on the first run it sees start, as a
/// suspended process or a stalled machine would.
struct StallOnce(Duration, bool);

impl Component for StallOnce {
    fn name(&self) -> &'static str {
        "stall-once"
    }

    fn start(&mut self, _handle: DaemonHandle) -> BoxFuture<'_, Result<(), DaemonError>> {
        Box::pin(async { Ok(()) })
    }

    fn handle_event<'a>(&'a mut self, event: &'a DaemonEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if matches!(event, DaemonEvent::RunStarted { .. }) && !self.1 {
                self.1 = true;
                tokio::time::sleep(self.0).await;
            }
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_that_pass_while_the_loop_is_held_up_are_counted_in_the_metrics() {
    // They are logged; an operator alerting on /metrics saw nothing of them.
    let job = Arc::new(FakeJob::new(Behaviour::Sleep(Duration::from_millis(20))));
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut timing = every_second();
    timing.run_on_start = true;
    let running = Daemon::builder(job.clone(), timing)
        .component(StallOnce(Duration::from_millis(3500), false))
        .component(Recorder(events.clone()))
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    tokio::time::sleep(Duration::from_millis(5000)).await;
    handle.shutdown();
    task.await.unwrap().unwrap();

    let events = events.lock().unwrap().clone();
    let passed: u64 = events
        .iter()
        .filter_map(|e| e.strip_prefix("ticks-passed "))
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert!(passed >= 1, "{events:?}");
    assert_eq!(handle.metrics().ticks_passed(), passed, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_run_skips_the_ticks_it_covers_and_never_overlaps() {
    let job = Arc::new(FakeJob::new(Behaviour::Sleep(Duration::from_millis(2600))));
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut timing = every_second();
    timing.run_on_start = true;
    let running = Daemon::builder(job.clone(), timing)
        .component(Recorder(events.clone()))
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    tokio::time::sleep(Duration::from_millis(4000)).await;
    handle.shutdown();
    task.await.unwrap().unwrap();

    assert_eq!(job.max_active.load(Ordering::SeqCst), 1, "runs overlapped");
    let events = events.lock().unwrap().clone();
    let skipped = events.iter().filter(|e| *e == "tick-skipped").count();
    // The 2.6 s startup run covers two or three one-second ticks.
    assert!(skipped >= 2, "{events:?}");
    assert_eq!(handle.metrics().ticks_skipped(), skipped as u64);
    // Every run started was also finished (the one in flight at shutdown was waited for).
    let started = events.iter().filter(|e| *e == "run-started").count();
    let finished = events
        .iter()
        .filter(|e| e.starts_with("run-finished"))
        .count();
    assert_eq!(started, finished, "{events:?}");
    assert_eq!(job.runs()[0].0, RunReason::Startup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_delays_each_scheduled_run_by_at_most_the_configured_amount() {
    let job = Arc::new(FakeJob::new(Behaviour::Sleep(Duration::ZERO)));
    let mut timing = every_second();
    timing.jitter = Some(Duration::from_millis(400));
    let running = Daemon::builder(job.clone(), timing)
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    tokio::time::sleep(Duration::from_millis(3500)).await;
    handle.shutdown();
    task.await.unwrap().unwrap();
    let starts = job.log.lock().unwrap().starts.clone();
    assert!(starts.len() >= 2, "{starts:?}");
    for (tick, started) in starts {
        let delay = started - tick;
        // 400 ms of jitter, plus scheduling slack on a busy machine.
        assert!(
            delay >= TimeDelta::zero() && delay < TimeDelta::milliseconds(900),
            "tick {tick} started {started}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_down_for_many_ticks_catches_up_with_exactly_one_run() {
    let mut job = FakeJob::new(Behaviour::Sleep(Duration::ZERO));
    // Hourly schedule, last run three days ago: 72 ticks were missed.
    job.last_run = Some(Utc::now() - TimeDelta::days(3));
    let job = Arc::new(job);
    let running = Daemon::builder(job.clone(), timing("0 * * * *"))
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    first_run_finished(&handle).await;
    // Time for a wrong second run to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.shutdown();
    task.await.unwrap().unwrap();

    let runs = job.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let (reason, tick) = runs[0];
    assert_eq!(reason, RunReason::CatchUp);
    // It stands for the most recent missed tick: the top of the current hour.
    let now = Utc::now();
    assert!(tick <= now && now - tick < TimeDelta::hours(1), "{tick}");
    assert_eq!(tick.timestamp() % 3600, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_run_means_no_catch_up_and_no_record_means_none_either() {
    for last_run in [Some(Utc::now()), None] {
        let mut job = FakeJob::new(Behaviour::Sleep(Duration::ZERO));
        job.last_run = last_run;
        let job = Arc::new(job);
        let running = Daemon::builder(job.clone(), timing("0 * * * *"))
            .build()
            .start()
            .await
            .unwrap();
        let handle = running.handle();
        let task = tokio::spawn(running.run());
        tokio::time::sleep(Duration::from_millis(300)).await;
        handle.shutdown();
        task.await.unwrap().unwrap();
        assert!(
            job.runs().is_empty(),
            "last run {last_run:?}: {:?}",
            job.runs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_start_replaces_the_catch_up_run() {
    let mut job = FakeJob::new(Behaviour::Sleep(Duration::ZERO));
    job.last_run = Some(Utc::now() - TimeDelta::days(3));
    let job = Arc::new(job);
    let mut timing = timing("0 * * * *");
    timing.run_on_start = true;
    let running = Daemon::builder(job.clone(), timing)
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    first_run_finished(&handle).await;
    // Time for a wrong second run to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.shutdown();
    task.await.unwrap().unwrap();
    let reasons: Vec<RunReason> = job.runs().into_iter().map(|(r, _)| r).collect();
    assert_eq!(reasons, [RunReason::Startup]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_run_in_flight_finish_then_flushes() {
    let job = Arc::new(FakeJob::new(Behaviour::Sleep(Duration::from_millis(800))));
    let mut timing = far_future();
    timing.run_on_start = true;
    let running = Daemon::builder(job.clone(), timing)
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.shutdown();
    task.await.unwrap().unwrap();

    assert_eq!(job.events(), ["run started", "run finished", "flush"]);
    let last = handle.last_run().unwrap();
    assert_eq!(last.outcome.status, SnapshotStatus::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_past_the_deadline_is_cancelled_and_the_daemon_still_stops_cleanly() {
    let job = Arc::new(FakeJob::new(Behaviour::SleepOrCancel(Duration::from_secs(
        60,
    ))));
    let mut timing = far_future();
    timing.run_on_start = true;
    let running = Daemon::builder(job.clone(), timing)
        .shutdown_deadline(Duration::from_millis(300))
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    handle.shutdown();
    task.await.unwrap().unwrap();

    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        job.events(),
        ["run started", "run cancelled", "run finished", "flush"]
    );
    let last = handle.last_run().unwrap();
    assert_eq!(last.outcome.status, SnapshotStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_that_ignores_cancellation_is_dropped_after_the_grace() {
    let job = Arc::new(FakeJob::new(Behaviour::Sleep(Duration::from_secs(60))));
    let mut timing = far_future();
    timing.run_on_start = true;
    let running = Daemon::builder(job.clone(), timing)
        .shutdown_deadline(Duration::from_millis(200))
        .abandon_grace(Duration::from_millis(200))
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    handle.shutdown();
    task.await.unwrap().unwrap();

    assert!(asked.elapsed() < Duration::from_secs(3));
    assert_eq!(job.events(), ["run started", "flush"]);
    let last = handle.last_run().unwrap();
    assert_eq!(
        last.outcome.message.as_deref(),
        Some("the run was abandoned at shutdown")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_dropped_after_saving_is_recorded_by_what_it_saved() {
    let job = Arc::new(FakeJob::new(Behaviour::SaveThenSleep(Duration::from_secs(
        60,
    ))));
    let mut timing = far_future();
    timing.run_on_start = true;
    let running = Daemon::builder(job.clone(), timing)
        .shutdown_deadline(Duration::from_millis(200))
        .abandon_grace(Duration::from_millis(200))
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.shutdown();
    task.await.unwrap().unwrap();

    let last = handle.last_run().unwrap().outcome;
    assert_eq!(last.status, SnapshotStatus::Partial, "{last:?}");
    assert_eq!(last.snapshot, Some(SnapshotId(7)));
    assert_eq!(last.findings_new, 2);
    assert_eq!(
        last.message.as_deref(),
        Some(
            "1 scope(s) could not be read; the run was abandoned at shutdown after saving its results"
        )
    );
    assert_eq!(handle.metrics().runs(SnapshotStatus::Partial), 1);
    assert_eq!(handle.metrics().runs(SnapshotStatus::Failed), 0);
}

/// Starts a daemon whose job behaves as `behaviour` at once, waits for that run's record,
/// stops the daemon and returns the record's outcome.
async fn first_run_outcome(behaviour: Behaviour) -> RunOutcome {
    let mut timing = far_future();
    timing.run_on_start = true;
    let running = Daemon::builder(Arc::new(FakeJob::new(behaviour)), timing)
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while handle.last_run().is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown();
    task.await.unwrap().unwrap();
    handle.last_run().unwrap().outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_panicking_after_saving_keeps_its_snapshot_in_the_record() {
    let last = first_run_outcome(Behaviour::SaveThenPanic).await;
    assert_eq!(last.snapshot, Some(SnapshotId(7)), "{last:?}");
    assert_eq!(
        last.message.as_deref(),
        Some("1 scope(s) could not be read; the run panicked after saving its results")
    );
    // One that saved nothing says so, and keeps its own cause.
    let last = first_run_outcome(Behaviour::FailThenPanic).await;
    assert_eq!(last.status, SnapshotStatus::Failed);
    assert_eq!(
        last.message.as_deref(),
        Some("the admin key was refused; the run panicked")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_never_returns_does_not_hold_up_a_shutdown() {
    let mut job = FakeJob::new(Behaviour::Sleep(Duration::from_millis(10)));
    job.reload_hangs = true;
    let job = Arc::new(job);
    let running = Daemon::builder(job.clone(), far_future())
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    handle.reload();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(job.events(), ["reload"]);
    let asked = Instant::now();
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the daemon stops though the reload never returns")
        .unwrap()
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_shutdown_request_cancels_the_run_at_once() {
    let job = Arc::new(FakeJob::new(Behaviour::SleepOrCancel(Duration::from_secs(
        60,
    ))));
    let mut timing = far_future();
    timing.run_on_start = true;
    let running = Daemon::builder(job.clone(), timing)
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    handle.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.shutdown();
    task.await.unwrap().unwrap();
    // Well inside the default 30 s deadline.
    assert!(asked.elapsed() < Duration::from_secs(3));
    assert!(job.events().contains(&"run cancelled".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_run_is_recorded_as_failed_and_the_daemon_goes_on() {
    let job = Arc::new(FakeJob::new(Behaviour::Panic));
    let mut timing = every_second();
    timing.run_on_start = true;
    let running = Daemon::builder(job.clone(), timing)
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    // Wait for the run after the panicking one rather than a fixed time: on a loaded machine
    // the second tick can come late, and lateness is not what this test is about.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while job.runs().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown();
    task.await.unwrap().unwrap();
    assert!(job.runs().len() >= 2, "a panic must not stop the schedule");
    assert!(handle.metrics().runs(SnapshotStatus::Failed) >= 2);
    assert_eq!(
        handle.last_run().unwrap().outcome.message.as_deref(),
        Some("the run panicked")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_fails_keeps_the_old_schedule_and_one_that_succeeds_replaces_it() {
    let job = Arc::new(FakeJob::new(Behaviour::Sleep(Duration::ZERO)));
    // Popped from the end: first the failure, then the new schedule.
    job.reload.lock().unwrap().extend([
        Ok(Some(every_second())),
        Err("rules/x.toml:3:1: bad".to_owned()),
    ]);
    let events = Arc::new(Mutex::new(Vec::new()));
    let running = Daemon::builder(job.clone(), far_future())
        .component(Recorder(events.clone()))
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());

    handle.reload();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        job.runs().is_empty(),
        "the failed reload changed the schedule"
    );
    assert!(
        events
            .lock()
            .unwrap()
            .contains(&"reload-failed rules/x.toml:3:1: bad".to_owned())
    );
    // `systemctl reload` reports success whatever the daemon made of it: the metric is
    // what an alert can watch.
    assert!(!handle.metrics().reload_ok());
    assert!(
        handle
            .metrics()
            .render()
            .contains("\norgwarden_config_last_reload_successful 0\n")
    );

    handle.reload();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    handle.shutdown();
    task.await.unwrap().unwrap();
    assert!(
        !job.runs().is_empty(),
        "the new every-second schedule never ran"
    );
    assert!(events.lock().unwrap().contains(&"reloaded".to_owned()));
    assert!(handle.metrics().reload_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_daemon_on_the_same_database_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orgwarden.db");
    let first = Daemon::builder(
        Arc::new(FakeJob::new(Behaviour::Sleep(Duration::ZERO))),
        far_future(),
    )
    .database(&db)
    .build()
    .start()
    .await
    .unwrap();
    let second = Daemon::builder(
        Arc::new(FakeJob::new(Behaviour::Sleep(Duration::ZERO))),
        far_future(),
    )
    .database(&db)
    .build()
    .start()
    .await;
    let Err(error) = second else {
        panic!("a second daemon started on the same database")
    };
    let message = error.to_string();
    assert!(message.contains("another orgwarden daemon"), "{message}");
    assert!(message.contains("orgwarden.db.daemon.lock"), "{message}");

    // Once the first one stops, the database is free again.
    let handle = first.handle();
    let task = tokio::spawn(first.run());
    handle.shutdown();
    task.await.unwrap().unwrap();
    Daemon::builder(
        Arc::new(FakeJob::new(Behaviour::Sleep(Duration::ZERO))),
        far_future(),
    )
    .database(&db)
    .build()
    .start()
    .await
    .unwrap();
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_report_liveness_readiness_and_metrics() {
    let job = Arc::new(FakeJob::new(Behaviour::Fail));
    let mut timing = far_future();
    timing.run_on_start = true;
    let running = Daemon::builder(job.clone(), timing)
        .listen("127.0.0.1:0".parse().unwrap())
        .build()
        .start()
        .await
        .unwrap();
    let addr = running.health_addr().expect("the server is listening");
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    first_run_finished(&handle).await;

    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("the last run (startup"), "{body}");
    assert!(body.contains("the admin key was refused"), "{body}");
    // In UTC with whole seconds, as every other time orgwarden writes (not `.123+00:00`).
    let finished = body
        .split("finished ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_default();
    assert!(
        finished.len() == 20 && finished.ends_with('Z'),
        "{finished:?} in {body}"
    );
    let (status, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(
        body.contains("orgwarden_runs_total{status=\"failed\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("orgwarden_runs_total{status=\"complete\"} 0\n"),
        "{body}"
    );

    handle.shutdown();
    task.await.unwrap().unwrap();
    // The server stopped with the daemon.
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_ok_after_a_complete_run() {
    let job = Arc::new(FakeJob::new(Behaviour::Sleep(Duration::ZERO)));
    let mut timing = far_future();
    timing.run_on_start = true;
    let running = Daemon::builder(job, timing)
        .listen("127.0.0.1:0".parse().unwrap())
        .build()
        .start()
        .await
        .unwrap();
    let addr = running.health_addr().unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    first_run_finished(&handle).await;
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (_, _, metrics) = get(addr, "/metrics").await;
    assert!(metrics.contains("orgwarden_last_success_timestamp_seconds "));
    handle.shutdown();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_stops_the_daemon_from_starting_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orgwarden.db");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let result = Daemon::builder(
        Arc::new(FakeJob::new(Behaviour::Sleep(Duration::ZERO))),
        far_future(),
    )
    .database(&db)
    .listen(taken.local_addr().unwrap())
    .build()
    .start()
    .await;
    let Err(error) = result else {
        panic!("started on a port in use")
    };
    assert!(error.to_string().starts_with("[server] listen"), "{error}");
    assert!(
        error.to_string().ends_with(
            "another program listens there (another orgwarden daemon, of another \
             organization?); give each daemon its own port"
        ),
        "{error}"
    );
    // The failed start did not keep the database locked.
    Daemon::builder(
        Arc::new(FakeJob::new(Behaviour::Sleep(Duration::ZERO))),
        far_future(),
    )
    .database(&db)
    .build()
    .start()
    .await
    .unwrap();
}

/// Checks `/metrics` with Prometheus's own linter. Needs `promtool` on PATH
/// (Debian: `apt-get install prometheus`; `.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_check_metrics() {
    use std::io::Write;
    let job = Arc::new(FakeJob::new(Behaviour::Sleep(Duration::ZERO)));
    let mut timing = far_future();
    timing.run_on_start = true;
    let running = Daemon::builder(job, timing)
        .listen("127.0.0.1:0".parse().unwrap())
        .build()
        .start()
        .await
        .unwrap();
    let addr = running.health_addr().unwrap();
    let handle = running.handle();
    handle.metrics().record_api_response(Some(429));
    handle.metrics().record_emails(1, 1);
    let task = tokio::spawn(running.run());
    first_run_finished(&handle).await;
    let (_, _, body) = get(addr, "/metrics").await;
    handle.shutdown();
    task.await.unwrap().unwrap();

    let mut child = std::process::Command::new(crate::support::tools::Tool::Promtool.require())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The daemon started on `job` with no run for a year and quick looks at the outbox (at
/// least 100 ms apart, at most 30 s): its handle and its task.
async fn started_for_retries(
    job: &Arc<FakeJob>,
) -> (
    DaemonHandle,
    tokio::task::JoinHandle<Result<(), DaemonError>>,
) {
    let running = Daemon::builder(job.clone(), far_future())
        .retry_timing(Duration::from_millis(100), Duration::from_secs(30))
        .build()
        .start()
        .await
        .unwrap();
    (running.handle(), tokio::spawn(running.run()))
}

/// How many retry passes `job` has begun.
fn retries_begun(job: &FakeJob) -> usize {
    job.events().iter().filter(|e| *e == "retry").count()
}

/// Waits (up to 20 s, for a loaded machine) until `job` has begun `n` retry passes.
async fn wait_for_retries(job: &FakeJob, n: usize) {
    let started = Instant::now();
    while retries_begun(job) < n {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            job.events()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_are_retried_between_runs_when_they_are_due() {
    // No run for a year: a message whose retry is due goes out when it is due, not at the
    // next run. Each pass says when the next message is due; the last says none waits.
    let soon = Some(Duration::from_millis(400));
    let job = Arc::new(FakeJob::new(Behaviour::Fail).with_retries(&[
        (Duration::ZERO, soon),
        (Duration::ZERO, soon),
        (Duration::ZERO, None),
    ]));
    let (handle, task) = started_for_retries(&job).await;
    let started = Instant::now();
    wait_for_retries(&job, 3).await;
    let third = started.elapsed();
    // Nothing is due any more: no further pass within the next second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.shutdown();
    task.await.unwrap().unwrap();
    assert!(job.runs().is_empty(), "{:?}", job.runs());
    assert!(
        third >= Duration::from_millis(800),
        "not before due: {third:?}"
    );
    assert_eq!(
        job.events(),
        ["retry", "retry", "retry", "flush"],
        "one pass per due message, then none"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_during_a_retry_pass_stops_the_pass_and_then_runs_without_overlap() {
    // A run holds the database's write lock for its whole crawl: a pass still recording
    // what it sent could not, and would send it again later.
    let job = Arc::new(
        FakeJob::new(Behaviour::Sleep(Duration::from_millis(20)))
            .with_retries(&[(Duration::from_secs(30), None)]),
    );
    let running = Daemon::builder(job.clone(), every_second())
        .build()
        .start()
        .await
        .unwrap();
    let handle = running.handle();
    let task = tokio::spawn(running.run());
    first_run_finished(&handle).await;
    handle.shutdown();
    task.await.unwrap().unwrap();
    let events = job.events();
    assert_eq!(
        events[..4],
        ["retry", "retry stopped", "run started", "run finished"],
        "{events:?}"
    );
    assert_eq!(job.max_active.load(Ordering::SeqCst), 1, "never at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_retry_pass_before_the_flush() {
    let job =
        Arc::new(FakeJob::new(Behaviour::Fail).with_retries(&[(Duration::from_secs(30), None)]));
    let (handle, task) = started_for_retries(&job).await;
    wait_for_retries(&job, 1).await;
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the pass stops at once")
        .unwrap()
        .unwrap();
    assert_eq!(job.events(), ["retry", "retry stopped", "flush"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_a_retry_pass_is_followed_by_another_look_once_the_pass_ends() {
    // The reload may have changed the channels (a webhook URL fixed); the pass under way
    // planned its next look by the old ones, here nothing due for the next 30 s.
    let job = Arc::new(
        FakeJob::new(Behaviour::Fail)
            .with_retries(&[(Duration::from_millis(600), None), (Duration::ZERO, None)]),
    );
    let (handle, task) = started_for_retries(&job).await;
    wait_for_retries(&job, 1).await;
    handle.reload();
    let reloaded = Instant::now();
    // Until the second pass has ended, not merely begun: a shutdown while it is under way
    // stops it, which is another test's case.
    while (retries_begun(&job) < 2 || job.active.load(Ordering::SeqCst) > 0)
        && reloaded.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.shutdown();
    task.await.unwrap().unwrap();
    assert_eq!(
        job.events(),
        ["retry", "reload", "retry", "flush"],
        "the look the reload asked for comes after the pass"
    );
}
