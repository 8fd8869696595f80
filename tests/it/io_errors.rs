//! Files and folders that cannot be read or written: each error says what and where once,
//! in plain words (an OS error's text once, a read-only location called read-only).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::tools::Tool;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(dir: &Path, args: &[&str]) -> Output {
    crate::support::orgwarden()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("runs")
}

const ENOENT: &str = "No such file or directory";

#[test]
fn an_io_error_prints_its_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let once = |args: &[&str]| {
        let out = run(dir.path(), args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.matches(ENOENT).count(), 1, "{args:?}: {stderr}");
        stderr
    };
    let missing_config = once(&["--config", "missing.toml", "rules", "check"]);
    assert!(
        missing_config.contains("cannot read configuration file missing.toml: No such file"),
        "{missing_config}"
    );
    let out = run(dir.path(), &["--db", "/nonexistent/dir/x.db", "demo"]);
    let missing_db_dir = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{missing_db_dir}");
    assert!(
        missing_db_dir.contains("/nonexistent/dir/x.db"),
        "{missing_db_dir}"
    );
    assert_eq!(
        missing_db_dir
            .matches("its folder /nonexistent/dir does not exist")
            .count(),
        1,
        "{missing_db_dir}"
    );
    std::fs::write(
        dir.path().join("rules-missing.toml"),
        "[rules]\npaths = [\"no-such-rules\"]\n",
    )
    .expect("write");
    let missing_rules = once(&["--config", "rules-missing.toml", "rules", "check"]);
    assert!(
        missing_rules.contains("error[unreadable-rule-path]"),
        "{missing_rules}"
    );
}

/// `orgwarden <args>` in `dir` as a user without root's power to write anything: as
/// `nobody` through `setpriv` when the tests run as root, else as the current user.
fn run_unprivileged(dir: &Path, args: &[&str]) -> Output {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    let mut cmd = if text(&uid.stdout).trim() == "0" {
        let mut cmd = Command::new(Tool::Setpriv.require());
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_orgwarden"));
        for var in [
            "ORGWARDEN_CONFIG",
            "ORGWARDEN_DB",
            "OPENAI_ADMIN_KEY",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd
    } else {
        crate::support::orgwarden()
    };
    cmd.args(args).current_dir(dir).output().expect("runs")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A folder everyone may enter holding `ro/x.db`, made by a first run as the unprivileged
/// user, then `ro` made read-only.
fn database_in_a_read_only_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    chmod(root, 0o777);
    let ro = root.join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    chmod(&ro, 0o777);
    let made = run_unprivileged(root, &["--db", "ro/x.db", "demo", "--format", "json"]);
    assert!(
        made.status.code().is_some_and(|c| c <= 1),
        "{}",
        text(&made.stderr)
    );
    chmod(&ro, 0o555);
    dir
}

#[test]
fn a_read_only_database_folder_file_or_outbox_is_called_read_only() {
    let dir = database_in_a_read_only_folder();
    let root = dir.path();
    let ro = root.join("ro");
    let out = run_unprivileged(root, &["--db", "ro/x.db", "demo", "--format", "json"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is read-only"), "{stderr}");
    assert!(stderr.contains("ro"), "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
    assert!(!stderr.contains("readonly database"), "{stderr}");

    // A new database in a read-only folder.
    let out = run_unprivileged(root, &["--db", "ro/new.db", "demo", "--format", "json"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // The writer lock names the folder by its canonical path.
    assert!(
        stderr.contains("the database's folder /") && stderr.contains("/ro is read-only"),
        "{stderr}"
    );

    // A read-only database file in a writable folder.
    chmod(&ro, 0o777);
    chmod(&ro.join("x.db"), 0o400);
    let out = run_unprivileged(root, &["--db", "ro/x.db", "demo", "--format", "json"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the database ") && stderr.contains("ro/x.db is read-only"),
        "{stderr}"
    );
    assert!(!stderr.contains("readonly database"), "{stderr}");

    // An outbox folder that cannot be written.
    let outbox = root.join("outbox");
    std::fs::create_dir(&outbox).expect("mkdir");
    chmod(&outbox, 0o555);
    let out = run_unprivileged(
        root,
        &[
            "--db",
            "fresh.db",
            "demo",
            "--format",
            "json",
            "--outbox",
            "outbox/sub",
        ],
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is read-only"), "{stderr}");
    assert!(stderr.contains("outbox"), "{stderr}");
}

#[test]
fn a_reading_command_in_a_folder_it_cannot_write_names_the_shm_file_not_a_write() {
    let dir = database_in_a_read_only_folder();
    let root = dir.path();
    for args in [&["findings"][..], &["query", "SELECT 1"]] {
        let mut all = vec!["--db", "ro/x.db"];
        all.extend_from_slice(args);
        let out = run_unprivileged(root, &all);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot read ro/x.db"), "{stderr}");
        assert!(stderr.contains("x.db-shm"), "{stderr}");
        assert!(stderr.contains("(no write permission)"), "{stderr}");
        // A reader writes nothing: the writer's wording would send its user looking for one.
        assert!(!stderr.contains("orgwarden writes"), "{stderr}");
    }
}

/// Output cut short by a closed pipe (`orgwarden schedule --count 100000 | head -1`): a
/// command that only reads and prints ends on SIGPIPE, as `cat` does, with neither a panic
/// nor an error line on the terminal.
#[test]
fn a_reading_command_whose_output_pipe_closes_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[openai]\norganization = \"x\"\n\n[schedule]\ncron = \"* * * * *\"\n",
    )
    .expect("config");
    let mut child = crate::support::orgwarden()
        .args(["schedule", "--count", "100000"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    // Its 2.6 MB overflow the pipe whenever the reading end goes, so it always meets the
    // closed pipe, however the two processes are scheduled.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("ends");
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "{stderr}");
}

/// `orgwarden notify requeue | head -0`: the messages are queued again before a word is
/// printed, so a closed pipe cuts the word short, never with a panic (exit 101) after the
/// work is done.
#[test]
fn notify_requeue_whose_output_pipe_closes_keeps_its_exit_code() {
    use std::process::Stdio;

    let dir = tempfile::tempdir().expect("tempdir");
    drop(orgwarden::store::Store::open(&dir.path().join("o.db")).expect("a database"));
    let mut child = crate::support::orgwarden()
        .args(["--db", "o.db", "notify", "requeue"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("ends");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// SIGPIPE's number on Linux.
const SIGPIPE: i32 = 13;
