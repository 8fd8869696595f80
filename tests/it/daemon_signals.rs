//! Real signals to a real process: the daemon framework in `examples/idle_daemon.rs` (a
//! stand-in job that sleeps and writes what happens to a marker file).
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Builds the example (a no-op when it is up to date) and returns its path.
fn idle_daemon() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .args(["build", "--quiet", "--example", "idle_daemon"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            // The variables cargo sets for a test process are not set for a build, and some
            // build scripts (ring's) track them: left in, they would make this build and the
            // next `cargo test` rebuild each other's dependencies every time.
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy();
                if [
                    "CARGO_MANIFEST_",
                    "CARGO_PKG_",
                    "CARGO_CRATE_",
                    "CARGO_BIN_",
                    "CARGO_PRIMARY_",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                {
                    cargo.env_remove(name.as_ref());
                }
            }
            let status = cargo.status().expect("cargo runs");
            assert!(status.success(), "building examples/idle_daemon failed");
            // target/debug/deps/<this test> → target/debug/examples/idle_daemon
            let exe = std::env::current_exe().unwrap();
            let profile = exe.parent().and_then(Path::parent).unwrap();
            profile.join("examples").join("idle_daemon")
        })
        .clone()
}

fn spawn(dir: &Path, extra: &[&str]) -> Child {
    Command::new(idle_daemon())
        .arg("--db")
        .arg(dir.join("orgwarden.db"))
        .arg("--marker")
        .arg(dir.join("marker"))
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn marker(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("marker"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn wait_for_marker(dir: &Path, line: &str) {
    let start = Instant::now();
    while !marker(dir).iter().any(|l| l == line) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no `{line}` in {:?}",
            marker(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait(mut child: Child, limit: Duration) -> (i32, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status.code().unwrap_or(-1), stderr);
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("the daemon did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_mid_run_lets_the_run_finish_flushes_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(dir.path(), &["--run-on-start", "--job-secs", "1.5"]);
    wait_for_marker(dir.path(), "started startup");
    signal(&child, "TERM");
    let (code, stderr) = wait(child, Duration::from_secs(20));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        marker(dir.path()),
        ["started startup", "finished complete", "flushed"]
    );
    assert!(stderr.contains("run finished"), "{stderr}");
}

#[test]
fn sigterm_past_the_deadline_cancels_the_run_and_still_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(
        dir.path(),
        &[
            "--run-on-start",
            "--job-secs",
            "60",
            "--deadline-secs",
            "0.3",
        ],
    );
    wait_for_marker(dir.path(), "started startup");
    let asked = Instant::now();
    signal(&child, "TERM");
    let (code, stderr) = wait(child, Duration::from_secs(20));
    assert_eq!(code, 0, "{stderr}");
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert_eq!(
        marker(dir.path()),
        ["started startup", "cancelled", "flushed"]
    );
}

#[test]
fn sigint_stops_an_idle_daemon_and_sighup_reloads_it() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(dir.path(), &["--listen", "127.0.0.1:0"]);
    // Wait until the daemon is up (its lock file has its pid) before signalling.
    let lock = dir.path().join("orgwarden.db.daemon.lock");
    let start = Instant::now();
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != child.id().to_string() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "daemon never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, "HUP");
    wait_for_marker(dir.path(), "reloaded");
    signal(&child, "INT");
    let (code, stderr) = wait(child, Duration::from_secs(20));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(marker(dir.path()), ["reloaded", "flushed"]);
}

#[test]
fn second_daemon_process_on_the_same_database_refuses_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn(dir.path(), &["--run-on-start", "--job-secs", "30"]);
    wait_for_marker(dir.path(), "started startup");
    let second = spawn(dir.path(), &[]);
    let (code, stderr) = wait(second, Duration::from_secs(20));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!(
            "another orgwarden daemon (pid {}) is already running on",
            first.id()
        )),
        "{stderr}"
    );
    // A second TERM abandons the run in flight instead of waiting the 30 s deadline; the
    // pause keeps the two from being coalesced into one delivery.
    signal(&first, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    signal(&first, "TERM");
    let (code, _) = wait(first, Duration::from_secs(20));
    assert_eq!(code, 0);
}

/// Starts the stand-in daemon serving its endpoints on a free port, and returns it with the
/// port once `/healthz` answers.
fn spawn_listening(dir: &Path) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = spawn(dir, &["--listen", &format!("127.0.0.1:{port}")]);
    let start = Instant::now();
    while !get(port, "/healthz").starts_with("HTTP/1.1 200") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the health server never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

/// One `GET` on its own connection: the whole answer, or "" if there was none.
fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_string(&mut answer);
    }
    answer
}

/// A connection that sent the start of a request head and then nothing more.
fn half_request(port: u16) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    stream
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn sigterm_stops_the_daemon_while_a_client_holds_a_half_sent_request() {
    let dir = tempfile::tempdir().unwrap();
    let (child, port) = spawn_listening(dir.path());
    let _held = half_request(port);
    // The server has the connection once a later one is answered.
    assert!(get(port, "/healthz").starts_with("HTTP/1.1 200"));
    signal(&child, "TERM");
    // Well inside the header timeout: the exit must not wait for the client at all.
    let (code, stderr) = wait(child, Duration::from_secs(8));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn hundreds_of_held_connections_take_a_bounded_number_of_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let (child, port) = spawn_listening(dir.path());
    let before = open_descriptors(child.id());
    let held: Vec<_> = (0..200).map(|_| half_request(port)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = open_descriptors(child.id());
    assert!(
        during <= before + 40,
        "{before} descriptors before, {during} with 200 connections held"
    );
    drop(held);
    let start = Instant::now();
    while !get(port, "/healthz").starts_with("HTTP/1.1 200") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "/healthz never answered again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, "TERM");
    let (code, stderr) = wait(child, Duration::from_secs(8));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn idle_connections_holding_every_place_do_not_keep_a_probe_waiting() {
    // A liveness probe gives up after a second or so: made to wait for the idle ones'
    // header timeout (10 s), it would have a healthy daemon restarted.
    let dir = tempfile::tempdir().unwrap();
    let (child, port) = spawn_listening(dir.path());
    let held: Vec<_> = (0..40)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let answer = get(port, "/healthz");
    let took = start.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(took < Duration::from_secs(5), "the probe waited {took:?}");
    drop(held);
    signal(&child, "TERM");
    let (code, stderr) = wait(child, Duration::from_secs(8));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let (child, port) = spawn_listening(dir.path());
    let mut held = half_request(port);
    held.set_read_timeout(Some(Duration::from_secs(25)))
        .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    // The server closes it (with or without a 408, or a reset): the read ends instead of
    // timing out.
    let read = held.read_to_end(&mut answer);
    let timed_out = matches!(&read, Err(e) if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert!(!timed_out, "still connected after {:?}", start.elapsed());
    signal(&child, "TERM");
    let (code, stderr) = wait(child, Duration::from_secs(8));
    assert_eq!(code, 0, "{stderr}");
}
