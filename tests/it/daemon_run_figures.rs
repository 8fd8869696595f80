//! Run figures are per run: a snapshot's `requests`, `retries`, `429s` and `errors` count
//! that run only, also when one client serves many runs (the daemon keeps its client until
//! a reload). And the answers the collector expects (400 "project is archived", 404 for an
//! unset spend limit) are counted in `/metrics` as their own classes, not as client errors.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orgwarden::client::{AdminClient, ClientOptions};
use orgwarden::collect;
use orgwarden::model::SnapshotStatus;
use orgwarden::sim::{Org, SimOptions, serve, start_background};
use orgwarden::store::Store;
use secrecy::SecretString;

const KEY: &str = "sk-admin-run-figures";
const NOW: i64 = 1_790_000_000;
/// The demo organization has two archived projects; each answers 400 "project is
/// archived" to its user list and its service-account list.
const ARCHIVED_READS_PER_RUN: u64 = 4;

/// The spend-limit reads a crawl of `org` gets 404 for: every project's without a hard
/// spend limit, and the organization's when it has none.
fn unset_spend_limits(org: &Org) -> u64 {
    let projects = org
        .projects
        .iter()
        .filter(|p| p.spend_limit.is_none())
        .count();
    u64::try_from(projects).unwrap() + u64::from(org.spend_limit.is_none())
}

/// Injected 500s make every run retry, so `retries` is not zero and differs per run.
fn faulty() -> SimOptions {
    SimOptions {
        fault_rate: 0.08,
        seed: 11,
        ..SimOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_serving_three_crawls_reports_each_crawls_own_figures() {
    let org = Org::demo(NOW);
    let unset_spend_limits = unset_spend_limits(&org);
    assert!(
        unset_spend_limits > 0,
        "the demo has no unset spend limit to count"
    );
    let sim = serve("127.0.0.1:0".parse().unwrap(), org, faulty())
        .await
        .unwrap();
    let client = AdminClient::new(
        &sim.base_url(),
        SecretString::from(KEY),
        ClientOptions::default(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("audit.db")).unwrap();
    let mut pages = Vec::new();
    for run in 1..=3 {
        let before = sim.requests();
        let (back, outcome) = collect::snapshot(&client, store, "acme-robotics", false)
            .await
            .unwrap();
        store = back;
        let stats = outcome.info.stats;
        assert_eq!(outcome.info.status, SnapshotStatus::Complete, "run {run}");
        assert_eq!(
            stats.requests,
            sim.requests() - before,
            "run {run}: the snapshot's requests are the ones this run sent"
        );
        assert!(stats.retries > 0, "run {run}: no fault was injected");
        assert_eq!((stats.errors, stats.rate_limited), (0, 0), "run {run}");
        assert_eq!(
            outcome.expected.archived, ARCHIVED_READS_PER_RUN,
            "run {run}"
        );
        assert_eq!(
            outcome.expected.unset_spend_limits, unset_spend_limits,
            "run {run}"
        );
        // Every retry is one more request for the same page.
        pages.push(stats.requests - stats.retries);
    }
    assert!(
        pages.windows(2).all(|w| w[0] == w[1]),
        "an unchanged organization is the same pages every run: {pages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_crawl_gets_its_own_time_limit_and_sends_nothing_past_it() {
    let sim = serve(
        "127.0.0.1:0".parse().unwrap(),
        Org::demo(NOW),
        SimOptions {
            latency: Duration::from_millis(200),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let limit = Duration::from_secs(1);
    let client = AdminClient::new(
        &sim.base_url(),
        SecretString::from(KEY),
        ClientOptions {
            concurrency: 2,
            adaptive: false,
            snapshot_timeout: Some(orgwarden::duration::Duration::from_secs(1)),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("audit.db")).unwrap();
    // Two crawls on one client, as the daemon runs them: the second is not out of time
    // from its start because the first was.
    for run in 1..=2 {
        let before = sim.requests();
        let started = Instant::now();
        let (back, outcome) = collect::snapshot(&client, store, "acme-robotics", false)
            .await
            .unwrap();
        store = back;
        let took = started.elapsed();
        let sent = sim.requests() - before;
        assert!(
            took < limit + Duration::from_millis(1500),
            "run {run} took {took:?}"
        );
        assert_eq!(outcome.info.status, SnapshotStatus::Partial, "run {run}");
        assert!(
            !outcome.failed_scopes.is_empty()
                && outcome.failed_scopes.iter().all(
                    |(scope, error)| error.contains("snapshot reached its time limit")
                        // Its project keys cannot be told apart once a project's key list
                        // was cut off.
                        || (scope.family == orgwarden::model::Family::OrgAdminApiKeys
                            && error.contains("cannot be told from admin keys"))
                ),
            "run {run}: {:?}",
            outcome.failed_scopes
        );
        // Two at a time, 200 ms each: about ten in a second, and a few the limit cut off.
        assert!(
            (4..=16).contains(&sent),
            "run {run}: {sent} requests in a crawl limited to 1 s"
        );
        assert!(
            outcome.info.stats.requests <= sent + 2,
            "run {run}: the snapshot counts {} requests, the server saw {sent}: reads cut off \
             at the limit went on taking gate slots",
            outcome.info.stats.requests
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            sim.requests() - before,
            sent,
            "run {run}: a request went out after the crawl had ended"
        );
    }
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let log = dir.join("daemon.log");
        let child = crate::support::orgwarden()
            .current_dir(dir)
            .args(["--config", "orgwarden.toml", "--db", "audit.db"])
            .args(["--log-format", "json", "daemon"])
            .env("OPENAI_ADMIN_KEY", KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_runs(&self, count: usize, limit: Duration) {
        let start = Instant::now();
        while self.log().matches("run finished").count() < count {
            assert!(
                start.elapsed() < limit,
                "not {count} runs within {limit:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code: the run in flight finishes and is stored first.
    fn stop(mut self) -> i32 {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the daemon did not stop; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn metrics(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// `requests, retries, rate_limited, errors, status` of every stored snapshot, oldest first.
fn snapshot_figures(db: &Path) -> Vec<(u64, u64, u64, u64, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT requests, retries, rate_limited, errors, status FROM snapshot ORDER BY id")
        .unwrap();
    let count = |row: &rusqlite::Row, i| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, i64>(i)?).expect("a count is not negative"))
    };
    stmt.query_map([], |row| {
        Ok((
            count(row, 0)?,
            count(row, 1)?,
            count(row, 2)?,
            count(row, 3)?,
            row.get(4)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn each_daemon_snapshot_stores_the_figures_of_its_own_run() {
    let dir = tempfile::tempdir().unwrap();
    let org = Org::demo(NOW);
    let unset_per_run = unset_spend_limits(&org);
    let sim = start_background(org, faulty()).unwrap();
    let port = free_port();
    let config = format!(
        "[openai]\norganization = \"acme-robotics\"\nbase_url = \"{}\"\n\n\
         [schedule]\ncron = \"*/1 * * * * *\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [spend]\nenabled = false\n",
        sim.base_url()
    );
    fs::write(dir.path().join("orgwarden.toml"), config).unwrap();
    let daemon = Daemon::start(dir.path());
    daemon.wait_for_runs(3, Duration::from_secs(120));

    let exposed = metrics(port);
    // The expected answers are counted, apart; no client error was answered.
    let archived = sample(&exposed, "orgwarden_api_requests_total{class=\"archived\"}");
    assert!(
        archived >= ARCHIVED_READS_PER_RUN && archived.is_multiple_of(ARCHIVED_READS_PER_RUN),
        "{exposed}"
    );
    let unset = sample(&exposed, "orgwarden_api_requests_total{class=\"unset\"}");
    assert!(
        unset >= unset_per_run && unset.is_multiple_of(unset_per_run),
        "{exposed}"
    );
    assert_eq!(
        sample(&exposed, "orgwarden_api_requests_total{class=\"4xx\"}"),
        0,
        "{exposed}"
    );
    let log = daemon.log();
    assert_eq!(daemon.stop(), 0, "log:\n{log}");

    let figures = snapshot_figures(&dir.path().join("audit.db"));
    assert!(figures.len() >= 3, "{figures:?}");
    for (requests, retries, rate_limited, errors, status) in &figures {
        assert_eq!(status, "complete", "{figures:?}");
        assert_eq!((*rate_limited, *errors), (0, 0), "{figures:?}");
        assert!(requests > retries, "{figures:?}");
    }
    // Per run, not running totals (costs are off: their first read pages through the
    // month, later ones do not): every run read the same pages of the unchanged
    // organization, and together the snapshots account for every request the API served.
    let pages: Vec<u64> = figures.iter().map(|f| f.0 - f.1).collect();
    assert!(pages.windows(2).all(|w| w[0] == w[1]), "{figures:?}");
    let stored: u64 = figures.iter().map(|f| f.0).sum();
    assert_eq!(stored, sim.requests(), "{figures:?}");
}
