//! `orgwarden daemon` as a real process against the in-process simulator: scheduled runs,
//! SIGTERM in the middle of a run, SIGHUP with a broken rule file, a second instance, and
//! the metrics the audit job feeds.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orgwarden::sim::{Org, SimHandle, SimOptions, start_background};

const KEY: &str = "sk-admin-daemon-e2e";

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        Daemon::spawn(dir, Some(KEY))
    }

    /// The daemon, with the admin key in OPENAI_ADMIN_KEY or (`None`) as configured.
    fn spawn(dir: &Path, key: Option<&str>) -> Daemon {
        Daemon::spawn_with(
            dir,
            key,
            &["--config", "orgwarden.toml", "--db", "audit.db"],
        )
    }

    /// The daemon started in `dir` with the global options `args`.
    fn spawn_with(dir: &Path, key: Option<&str>, args: &[&str]) -> Daemon {
        let log = dir.join(format!("daemon-{}.log", fastrand_suffix()));
        let mut command = crate::support::orgwarden();
        match key {
            Some(key) => command.env("OPENAI_ADMIN_KEY", key),
            None => command.env_remove("OPENAI_ADMIN_KEY"),
        };
        let child = command
            .current_dir(dir)
            .env_remove("ORGWARDEN_CONFIG")
            .args(args)
            .args(["--log-format", "json", "daemon"])
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

    /// Waits until the log holds `count` lines containing `needle`.
    fn wait_for(&self, needle: &str, count: usize, limit: Duration) {
        let start = Instant::now();
        while self.log().matches(needle).count() < count {
            assert!(
                start.elapsed() < limit,
                "no {count}× {needle:?} within {limit:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    fn wait(mut self, limit: Duration) -> (i32, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self.log());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("daemon did not exit within {limit:?}; log:\n{}", self.log());
            }
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

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn sim(latency: Duration) -> SimHandle {
    let org = Org::demo(chrono::Utc::now().timestamp());
    start_background(
        org,
        SimOptions {
            latency,
            ..SimOptions::default()
        },
    )
    .unwrap()
}

fn write_config(dir: &Path, sim: &SimHandle, cron: &str, extra: &str) {
    let config = format!(
        r#"[openai]
organization = "acme-robotics"
base_url = "{base}"

[schedule]
cron = "{cron}"

[notify.email]
transport = "file"
dir = "outbox"
from = "orgwarden@example.com"
to = ["security@example.com"]
{extra}
"#,
        base = sim.base_url()
    );
    fs::write(dir.join("orgwarden.toml"), config).unwrap();
}

fn sql(dir: &Path, query: &str) -> String {
    let conn = rusqlite::Connection::open(dir.join("audit.db")).unwrap();
    let mut stmt = conn.prepare(query).unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |row| row.get::<_, rusqlite::types::Value>(0))
        .unwrap()
        .map(|v| match v.unwrap() {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
        .collect();
    rows.join(",")
}

fn emails(dir: &Path) -> usize {
    fs::read_dir(dir.join("outbox"))
        .map(std::iter::Iterator::count)
        .unwrap_or(0)
}

#[test]
fn daemon_audits_on_schedule_and_sigterm_mid_run_exits_0_with_a_consistent_database() {
    let dir = tempfile::tempdir().unwrap();
    // Each crawl takes a second or more, so SIGTERM lands inside a run.
    let sim = sim(Duration::from_millis(120));
    write_config(dir.path(), &sim, "*/2 * * * * *", "");
    let daemon = Daemon::start(dir.path());
    daemon.wait_for("run finished", 2, Duration::from_secs(60));
    daemon.wait_for("run started", 3, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    daemon.signal("TERM");
    let (code, log) = daemon.wait(Duration::from_secs(45));
    assert_eq!(code, 0, "log:\n{log}");
    assert!(log.contains("daemon stopped"), "log:\n{log}");
    // The signal really came in the middle of a run, which then finished.
    let signalled = log.find("SIGTERM received").expect("signal logged");
    let last_finish = log.rfind("run finished").expect("runs logged");
    assert!(signalled < last_finish, "SIGTERM was not mid-run:\n{log}");
    // With a daemon per organization writing one log, each run says whose it was.
    let finished: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.contains("run finished"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        finished
            .iter()
            .all(|l| l["organization"] == "acme-robotics"),
        "{finished:#?}"
    );

    assert_eq!(sql(dir.path(), "PRAGMA integrity_check"), "ok");
    // The run in flight either committed whole or not at all: never a half snapshot.
    let statuses = sql(dir.path(), "SELECT status FROM snapshots ORDER BY id");
    assert!(
        statuses.split(',').count() >= 2 && statuses.split(',').all(|s| s == "complete"),
        "{statuses}"
    );
    // An unchanged organization is announced once, not every run.
    assert_eq!(emails(dir.path()), 1);
    // The key reached neither the log nor the database.
    assert!(!log.contains(KEY));
    let db = fs::read(dir.path().join("audit.db")).unwrap();
    assert!(!db.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
}

#[test]
fn sighup_with_a_broken_rule_file_keeps_the_daemon_running_on_the_old_rules() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Duration::ZERO);
    fs::create_dir(dir.path().join("extra")).unwrap();
    let rule = r#"[[rule]]
id = "custom-every-project"
title = "Every project is listed"
severity = "info"
resource_type = "projects"
description = "A marker rule for the test."
remediation = "Nothing to do."
[rule.where]
field = "status"
op = "present"
"#;
    fs::write(dir.path().join("extra/custom.toml"), rule).unwrap();
    write_config(
        dir.path(),
        &sim,
        "*/1 * * * * *",
        "\n[rules]\npaths = [\"extra\"]\n",
    );
    let daemon = Daemon::start(dir.path());
    daemon.wait_for("run finished", 1, Duration::from_secs(60));

    fs::write(
        dir.path().join("extra/custom.toml"),
        rule.replace("op = \"present\"", "op = \"resembles\""),
    )
    .unwrap();
    daemon.signal("HUP");
    daemon.wait_for("reload failed", 1, Duration::from_secs(20));
    let runs_before = daemon.log().matches("run finished").count();
    daemon.wait_for("run finished", runs_before + 1, Duration::from_secs(20));
    daemon.signal("TERM");
    let (code, log) = daemon.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "log:\n{log}");
    assert!(
        log.contains("resembles"),
        "the reload error names the bad op:\n{log}"
    );

    // The old rule set stayed in force: the custom rule's findings are still open.
    let open = sql(
        dir.path(),
        "SELECT count(*) FROM findings WHERE rule_id = 'custom-every-project' AND status = 'open'",
    );
    assert_ne!(open, "0");
}

#[test]
fn a_daemon_started_without_a_configuration_file_says_it_runs_on_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn_with(
        dir.path(),
        Some(KEY),
        &["--db", "audit.db", "--base-url", "http://127.0.0.1:9/v1"],
    );
    daemon.wait_for(
        "waiting for the next scheduled run",
        1,
        Duration::from_secs(30),
    );
    // The outbox is looked at on start: a database not made yet holds nothing to deliver,
    // which is no failure to log every few minutes.
    std::thread::sleep(Duration::from_secs(1));
    let text = daemon.log();
    assert!(
        text.contains("no configuration file") && text.contains("orgwarden init"),
        "{text}"
    );
    assert!(!text.contains("could not be delivered"), "{text}");
    daemon.signal("TERM");
    let (code, _) = daemon.wait(Duration::from_secs(30));
    assert_eq!(code, 0);
}

#[test]
fn a_second_daemon_on_the_same_database_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Duration::ZERO);
    write_config(dir.path(), &sim, "0 0 1 1 *", "");
    let first = Daemon::start(dir.path());
    first.wait_for(
        "waiting for the next scheduled run",
        1,
        Duration::from_secs(30),
    );
    let second = Daemon::start(dir.path());
    let (code, log) = second.wait(Duration::from_secs(30));
    assert_eq!(code, 2, "log:\n{log}");
    assert!(log.contains("already running"), "log:\n{log}");
    first.signal("TERM");
    let (code, _) = first.wait(Duration::from_secs(30));
    assert_eq!(code, 0);
}

#[test]
fn a_daemon_started_on_a_database_an_older_orgwarden_wrote_catches_up_a_missed_tick() {
    // The usual upgrade: the old daemon stopped, the new one started on its database, a
    // scheduled time passed in between (its one run, in 1970, is before this year's tick).
    let dir = tempfile::tempdir().unwrap();
    crate::upgrade::version_4_database(&dir.path().join("audit.db"));
    let sim = sim(Duration::ZERO);
    write_config(dir.path(), &sim, "0 0 1 1 *", "");
    starts_and_catches_up(dir.path());
}

/// Starts a daemon in `dir`, checks that it runs once at start to catch up a missed tick
/// (not as a first start), lets that run finish and stops it.
fn starts_and_catches_up(dir: &std::path::Path) {
    let daemon = Daemon::start(dir);
    // Logged once the daemon has decided whether to catch up.
    daemon.wait_for(
        "waiting for the next scheduled run",
        1,
        Duration::from_secs(30),
    );
    let log = daemon.log();
    assert!(log.contains("running once now to catch up"), "log:\n{log}");
    assert!(!log.contains("no run recorded yet"), "log:\n{log}");
    daemon.wait_for("run finished", 1, Duration::from_secs(60));
    daemon.signal("TERM");
    let (code, log) = daemon.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "log:\n{log}");
}

#[test]
fn a_snapshot_stored_but_never_evaluated_does_not_stop_the_catch_up_run() {
    // A daemon stopped or killed after storing a run's snapshot but before evaluating it
    // leaves what `orgwarden snapshot` leaves: a snapshot newer than the last tick whose
    // findings nobody decided on. The restarted daemon must run again at once, or that
    // tick's changes wait for the next one (next January here). The last run that did
    // evaluate is from 1970.
    let dir = tempfile::tempdir().unwrap();
    crate::upgrade::version_4_database(&dir.path().join("audit.db"));
    let sim = sim(Duration::ZERO);
    write_config(dir.path(), &sim, "0 0 1 1 *", "");
    let stored = crate::support::orgwarden()
        .current_dir(dir.path())
        .env("OPENAI_ADMIN_KEY", KEY)
        .env_remove("ORGWARDEN_CONFIG")
        .args(["--config", "orgwarden.toml", "--db", "audit.db", "snapshot"])
        .output()
        .unwrap();
    assert!(stored.status.success(), "{stored:?}");
    assert_eq!(
        sql(
            dir.path(),
            "SELECT count(*) FROM snapshot WHERE evaluated_at IS NULL"
        ),
        "1"
    );
    starts_and_catches_up(dir.path());
    assert_eq!(
        sql(
            dir.path(),
            "SELECT count(*) FROM snapshot WHERE evaluated_at IS NULL"
        ),
        "1",
        "the caught-up run evaluated the snapshot it took"
    );
    assert_eq!(
        emails(dir.path()),
        1,
        "the caught-up run announced the findings"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

/// A daemon in `dir` auditing the simulator every second, its health server on a free
/// port; the simulator must outlive it.
fn every_second_with_health(dir: &Path) -> (SimHandle, u16, Daemon) {
    let sim = sim(Duration::ZERO);
    let port = free_port();
    write_config(
        dir,
        &sim,
        "*/1 * * * * *",
        &format!("\n[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let daemon = Daemon::start(dir);
    (sim, port, daemon)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

#[test]
fn a_database_removed_under_the_daemon_is_not_started_afresh_and_nothing_is_announced_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, port, daemon) = every_second_with_health(dir.path());
    daemon.wait_for("run finished", 1, Duration::from_secs(60));
    assert_eq!(emails(dir.path()), 1);
    // A cleaner, a wrong `rm`, a volume remounted: the file goes while the daemon runs.
    for name in ["audit.db", "audit.db-wal", "audit.db-shm"] {
        let _ = fs::remove_file(dir.path().join(name));
    }
    let finished = daemon.log().matches("run finished").count();
    daemon.wait_for("run finished", finished + 2, Duration::from_secs(60));
    let ready = http_get(port, "/readyz");
    daemon.signal("TERM");
    let (code, log) = daemon.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "log:\n{log}");
    // No new, empty database: it would announce every open finding again as new.
    assert!(!dir.path().join("audit.db").exists(), "log:\n{log}");
    assert_eq!(emails(dir.path()), 1, "log:\n{log}");
    assert!(
        log.contains("was removed while the daemon was running"),
        "log:\n{log}"
    );
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("was removed"), "{ready}");
}

#[test]
fn metrics_count_the_audit_jobs_api_responses_and_open_findings() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, port, daemon) = every_second_with_health(dir.path());
    daemon.wait_for("run finished", 1, Duration::from_secs(60));
    let metrics = http_get(port, "/metrics");
    assert!(
        metric(&metrics, "orgwarden_api_requests_total{class=\"2xx\"}") > 10.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "orgwarden_open_findings{severity=\"high\"}") >= 1.0);
    assert!(metric(&metrics, "orgwarden_runs_total{status=\"complete\"}") >= 1.0);
    // The first run's digest was delivered (file transport) and counted.
    assert!(
        metric(&metrics, "orgwarden_emails_sent_total") >= 1.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "orgwarden_outbox_depth"), 0.0, "{metrics}");
    // A real database after a run: at least a few pages, and never 0.
    assert!(
        metric(&metrics, "orgwarden_database_size_bytes{file=\"database\"}") >= 4096.0,
        "{metrics}"
    );
    assert!(http_get(port, "/readyz").starts_with("HTTP/1.1 200"));
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)).0, 0);
}

#[test]
fn the_daemon_logs_exemptions_that_expire_soon_or_have_expired_at_start_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Duration::ZERO);
    let exemption = |days: i64| {
        let expires = (chrono::Utc::now() + chrono::Duration::days(days)).format("%Y-%m-%d");
        let table = format!(
            "\n[[exemption]]\nrule = \"project-no-spend-alert\"\nresource = \"proj_support\"\n\
             reason = \"hard cap\"\nowner = \"finops@acme-robotics.com\"\nexpires = \"{expires}\"\n"
        );
        (expires.to_string(), table)
    };
    // No scheduled run comes during the test: the warnings are the loading's.
    let (soon, table) = exemption(3);
    write_config(dir.path(), &sim, "0 0 1 1 *", &table);
    let daemon = Daemon::start(dir.path());
    daemon.wait_for(
        &format!("expires on {soon} (owner finops@acme-robotics.com)"),
        1,
        Duration::from_secs(30),
    );
    assert!(
        daemon.log().contains("exemption-expiring"),
        "{}",
        daemon.log()
    );

    let (past, table) = exemption(-1);
    write_config(dir.path(), &sim, "0 0 1 1 *", &table);
    daemon.signal("HUP");
    daemon.wait_for(
        &format!("expired on {past}; the findings it matches are no longer exempt"),
        1,
        Duration::from_secs(30),
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)).0, 0);
}

#[test]
fn the_daemon_logs_an_exemption_that_matches_no_finding_after_its_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Duration::ZERO);
    let expires = (chrono::Utc::now() + chrono::Duration::days(90)).format("%Y-%m-%d");
    // `proj_suport` is a typo: the finding it meant stays open, and nothing said why.
    let tables = ["proj_suport", "proj_support"].map(|resource| {
        format!(
            "\n[[exemption]]\nrule = \"project-no-spend-alert\"\nresource = \"{resource}\"\n\
             reason = \"hard cap\"\nowner = \"finops@acme-robotics.com\"\nexpires = \"{expires}\"\n"
        )
    });
    write_config(dir.path(), &sim, "*/1 * * * * *", &tables.concat());
    let daemon = Daemon::start(dir.path());
    daemon.wait_for("run finished", 2, Duration::from_secs(60));
    daemon.signal("TERM");
    let (code, log) = daemon.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "{log}");
    let unused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("exemption-unused"))
        .collect();
    assert_eq!(unused.len(), 1, "once a day, not every run:\n{log}");
    assert!(unused[0].contains("proj_suport"), "{log}");
    assert!(
        unused[0].contains("orgwarden.toml:"),
        "it says where: {log}"
    );
}

#[test]
fn a_run_whose_only_failure_is_the_costs_read_says_so_in_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Duration::ZERO);
    // Every try fails, retries included.
    sim.add_fault(orgwarden::sim::Fault {
        path_prefix: "/organization/costs".into(),
        kind: orgwarden::sim::FaultKind::Status(403),
        times: None,
    });
    write_config(dir.path(), &sim, "*/1 * * * * *", "");
    let daemon = Daemon::start(dir.path());
    daemon.wait_for("run finished", 1, Duration::from_secs(60));
    daemon.signal("TERM");
    let (code, log) = daemon.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "{log}");
    let finished = log
        .lines()
        .find(|l| l.contains("run finished"))
        .unwrap_or_default();
    assert!(
        finished.contains("partial") && finished.contains("the costs read failed"),
        "{finished}"
    );
}

/// The POSIX locks process `pid` holds on the file `path` (Linux's /proc/locks).
#[cfg(target_os = "linux")]
fn posix_locks(pid: u32, path: &Path) -> usize {
    use std::os::unix::fs::MetadataExt as _;
    let inode = fs::metadata(path).unwrap().ino();
    fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"POSIX")
                && fields.get(4) == Some(&pid.to_string().as_str())
                && fields
                    .get(5)
                    .and_then(|dev_ino| dev_ino.rsplit(':').next())
                    .is_some_and(|ino| ino == inode.to_string())
        })
        .count()
}

#[test]
#[cfg(target_os = "linux")]
fn a_readiness_probe_during_a_run_leaves_the_runs_database_locks_in_place() {
    let dir = tempfile::tempdir().unwrap();
    // 150 ms a request: the crawl takes seconds, so the probe lands inside the run.
    let sim = sim(Duration::from_millis(150));
    let port = free_port();
    write_config(
        dir.path(),
        &sim,
        "0 0 1 1 *",
        &format!("\n[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    // One run, at start; the next tick is months away.
    let path = dir.path().join("orgwarden.toml");
    let config = fs::read_to_string(&path).unwrap().replace(
        "cron = \"0 0 1 1 *\"",
        "cron = \"0 0 1 1 *\"\nrun_on_start = true",
    );
    fs::write(&path, config).unwrap();
    let daemon = Daemon::start(dir.path());
    let db = dir.path().join("audit.db");
    let pid = daemon.child.id();
    // Wait until the run's connection holds its lock on the database (WAL: a shared lock
    // for as long as the connection is open).
    let start = Instant::now();
    while !db.exists() || posix_locks(pid, &db) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the run never locked the database; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past the brief connections that open the store: this is the run's own, mid-crawl.
    std::thread::sleep(Duration::from_millis(500));
    assert!(posix_locks(pid, &db) > 0, "log:\n{}", daemon.log());
    assert!(http_get(port, "/readyz").starts_with("HTTP/1.1 200"));
    let in_progress = metric(&http_get(port, "/metrics"), "orgwarden_run_in_progress");
    let locks = posix_locks(pid, &db);
    assert_eq!(in_progress, 1.0, "the probe did not land inside the run");
    assert!(
        locks > 0,
        "after /readyz the running daemon holds no lock on its database"
    );
    // What the lost lock allows: another process that closes the database checkpoints and
    // deletes the WAL the running daemon is writing to.
    let other = rusqlite::Connection::open(&db).unwrap();
    let _: i64 = other
        .query_row("SELECT count(*) FROM snapshot", [], |r| r.get(0))
        .unwrap();
    drop(other);
    assert!(
        dir.path().join("audit.db-wal").exists(),
        "another process deleted the running daemon's WAL"
    );
    daemon.wait_for("run finished", 1, Duration::from_secs(60));
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)).0, 0);
    assert_eq!(sql(dir.path(), "SELECT count(*) FROM snapshot"), "1");
}

#[test]
fn the_json_run_line_of_a_failed_run_keeps_its_message() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: every run fails, with a reason.
    let base = format!("http://127.0.0.1:{}/v1", free_port());
    let config = format!(
        "[openai]\nbase_url = \"{base}\"\n\n[schedule]\ncron = \"*/1 * * * * *\"\n\n\
         [notify.email]\ntransport = \"file\"\ndir = \"outbox\"\nfrom = \"o@example.com\"\n\
         to = [\"s@example.com\"]\n"
    );
    fs::write(dir.path().join("orgwarden.toml"), config).unwrap();
    let daemon = Daemon::start(dir.path());
    daemon.wait_for("\"status\":\"failed\"", 1, Duration::from_secs(60));
    daemon.signal("TERM");
    let (code, log) = daemon.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "log:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("\"status\":\"failed\"") && l.contains("duration_secs"))
        .expect("a failed run's line");
    // One key per name: a JSON reader keeps the last of a repeated key, so a second
    // `message` would hide "run finished" from anyone searching for it.
    let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(parsed["message"], "run finished", "{line}");
    assert_eq!(line.matches("\"message\":").count(), 1, "{line}");
    assert!(
        parsed["cause"]
            .as_str()
            .is_some_and(|cause| !cause.is_empty()),
        "the reason the run failed is logged: {line}"
    );
}

/// Waits until the daemon has the FIFO open for reading, then writes `text` into it (the
/// open cannot succeed without a reader); panics if the daemon exits first.
#[cfg(unix)]
fn feed_fifo(daemon: &mut Daemon, fifo: &Path, text: Option<&str>) -> fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let start = Instant::now();
    loop {
        let opened = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo);
        if let Ok(mut file) = opened {
            if let Some(text) = text {
                file.write_all(text.as_bytes()).unwrap();
            }
            return file;
        }
        if let Some(status) = daemon.child.try_wait().unwrap() {
            panic!("the daemon exited ({status}); log:\n{}", daemon.log());
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the daemon never read {}; log:\n{}",
            fifo.display(),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[cfg(unix)]
fn sighup_while_the_daemon_loads_its_configuration_becomes_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Duration::ZERO);
    write_config(dir.path(), &sim, "0 0 1 1 *", "");
    let config = fs::read_to_string(dir.path().join("orgwarden.toml")).unwrap();
    fs::write(
        dir.path().join("orgwarden.toml"),
        config.replace(
            "organization = \"acme-robotics\"\n",
            "organization = \"acme-robotics\"\nadmin_key_file = \"admin_key\"\n",
        ),
    )
    .unwrap();
    // A FIFO as the key file holds the daemon in its configuration loading, before it
    // listens for signals, for as long as the test wants.
    let fifo = dir.path().join("admin_key");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut daemon = Daemon::spawn(dir.path(), None);
    let held = feed_fifo(&mut daemon, &fifo, None);
    daemon.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    if let Some(status) = daemon.child.try_wait().unwrap() {
        panic!("a SIGHUP while starting ended the daemon ({status})");
    }
    drop(feed_fifo(&mut daemon, &fifo, Some(KEY)));
    drop(held);
    // Started (the first read of the key is over); the reload reads the key file again.
    daemon.wait_for(
        "waiting for the next scheduled run",
        1,
        Duration::from_secs(20),
    );
    drop(feed_fifo(&mut daemon, &fifo, Some(KEY)));
    daemon.wait_for(
        "reloaded configuration and rules",
        1,
        Duration::from_secs(20),
    );
    daemon.signal("TERM");
    let (code, log) = daemon.wait(Duration::from_secs(20));
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("SIGHUP received while starting"), "{log}");
}

#[test]
fn a_daemon_on_a_database_a_newer_orgwarden_wrote_refuses_to_start() {
    // A rollback to an older version: a daemon that started would fail every run while
    // looking healthy to a supervisor.
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Duration::ZERO);
    write_config(dir.path(), &sim, "0 0 1 1 *", "");
    drop(orgwarden::store::Store::open(&dir.path().join("audit.db")).unwrap());
    rusqlite::Connection::open(dir.path().join("audit.db"))
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let daemon = Daemon::start(dir.path());
    let (code, log) = daemon.wait(Duration::from_secs(30));
    assert_eq!(code, 2, "log:\n{log}");
    assert!(
        log.contains("newer than this orgwarden supports"),
        "log:\n{log}"
    );
    // And `daemon --help` lists it among the reasons for exit 2.
    let help = crate::support::orgwarden()
        .args(["daemon", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("one a newer orgwarden wrote"), "{help}");
}
