//! `audit --notify`: findings, the queued digest and the notified marks are stored together;
//! a dry run stores nothing; only changes are announced again.

use std::path::Path;
use std::process::Output;

use chrono::Utc;
use orgwarden::findings;
use orgwarden::model::ProjectId;
use orgwarden::sim::{Org, SimOptions, start_background};
use orgwarden::store::Store;

const CONFIG: &str = "[openai]\norganization = \"acme-robotics\"\n[notify.email]\ntransport = \"file\"\ndir = \"mail\"\nfrom = \"orgwarden@acme-robotics.com\"\nto = [\"security@acme-robotics.com\"]\n";

fn audit(dir: &Path, base_url: &str, extra: &[&str]) -> Output {
    crate::support::orgwarden()
        .args([
            "--db",
            "audit.db",
            "--base-url",
            base_url,
            "audit",
            "--notify",
            "--format",
            "json",
        ])
        .args(extra)
        .current_dir(dir)
        .env("OPENAI_ADMIN_KEY", "sk-admin-notify-test")
        .output()
        .unwrap()
}

/// Checks that a run exited 0, showing its stderr when not.
fn succeeded(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mails(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("mail")).map_or(0, std::iter::Iterator::count)
}

#[test]
fn notify_announces_changes_once_and_dry_run_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orgwarden.toml"), CONFIG).unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let url = sim.base_url();

    let out = audit(dir.path(), &url, &["--dry-run", "--log-format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dry run: nothing recorded, queued or sent"),
        "{stderr}"
    );
    assert!(stderr.contains("35 new"), "{stderr}");
    // A CI job that keeps no database announces everything on every run: it is told why.
    assert!(
        stderr.contains("audit.db was created by this run, so every open finding counted as new"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("\"fingerprint\""),
        "a dry run logs no announcement: {stderr}"
    );
    assert_eq!(mails(dir.path()), 0);
    let store = Store::open_read_only(&dir.path().join("audit.db")).unwrap();
    assert!(
        findings::load(store.reader()).unwrap().is_empty(),
        "a dry run records no finding"
    );
    drop(store);

    let out = audit(dir.path(), &url, &["--log-format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("created by this run"), "{stderr}");
    assert_eq!(mails(dir.path()), 1);
    assert_eq!(
        stderr.matches("\"fingerprint\"").count(),
        35,
        "a committed announcement logs each finding once: {stderr}"
    );
    let store = Store::open_read_only(&dir.path().join("audit.db")).unwrap();
    let all = findings::load(store.reader()).unwrap();
    assert_eq!(all.len(), 35);
    assert!(all.iter().all(|f| f.last_notified_at.is_some()));
    drop(store);

    let out = audit(dir.path(), &url, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing new to announce"));
    assert_eq!(mails(dir.path()), 1, "nothing changed: no second message");

    sim.with_org(|org| {
        org.project_mut(&ProjectId::from("proj_support"))
            .unwrap()
            .data_retention = "zero_data_retention".into();
    });
    let out = audit(dir.path(), &url, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(mails(dir.path()), 2, "a resolution is announced");
    let newest = std::fs::read_dir(dir.path().join("mail"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let raw = std::fs::read(newest).unwrap();
    let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let subject = message.subject().unwrap();
    assert_eq!(subject, "[orgwarden] acme-robotics: 0 new, 1 resolved");
    let text = message.body_text(0).unwrap();
    let resolved = text
        .split_once("== Resolved (1) ==")
        .and_then(|(_, rest)| rest.split_once("== Still open"))
        .map(|(section, _)| section)
        .unwrap_or_else(|| panic!("no resolved section: {text}"));
    assert!(resolved.contains("proj_support"), "{resolved}");
    assert!(resolved.contains("project-retention-not-zdr"), "{resolved}");
}

#[test]
fn dry_run_needs_notify() {
    let out = crate::support::orgwarden()
        .args(["audit", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_failed_delivery_pass_still_prints_the_report_before_failing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orgwarden.toml"), CONFIG).unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let url = sim.base_url();
    let out = audit(dir.path(), &url, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    // The outbox's bookkeeping fails as a full disk or a damaged database would make it.
    rusqlite::Connection::open(dir.path().join("audit.db"))
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE UPDATE ON outbox \
             BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
        )
        .unwrap();

    let out = audit(dir.path(), &url, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report on stdout ({e}): {stderr}"));
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(35));
    assert!(
        stderr.contains("the findings are stored and announced, but the delivery pass failed"),
        "{stderr}"
    );
    assert!(stderr.contains("disk says no"), "{stderr}");
    assert_eq!(mails(dir.path()), 0, "nothing was sent");
}

/// Writes `orgwarden.toml` in `dir` with `extra` and an SMTP relay on a port nothing
/// listens on: the relay is down for the run.
fn with_the_relay_down(dir: &Path, extra: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("orgwarden.toml"),
        format!(
            "[openai]\norganization = \"acme-robotics\"\n{extra}[notify.email]\n\
             transport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             from = \"orgwarden@acme-robotics.com\"\nto = [\"security@acme-robotics.com\"]\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_ci_run_on_a_new_database_says_its_undelivered_messages_wait_in_it() {
    let dir = tempfile::tempdir().unwrap();
    with_the_relay_down(dir.path(), "");
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let out = audit(dir.path(), &sim.base_url(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("audit.db was created by this run")
            && stderr.contains(
                "1 message(s) it could not deliver wait in its outbox, to be sent by the next \
                 run on it, or lost with it"
            ),
        "{stderr}"
    );
    // Kept, the database's next run says nothing of the kind.
    let out = audit(dir.path(), &sim.base_url(), &[]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("created by this run"));
}

#[test]
fn a_failing_ci_run_on_a_new_database_still_says_its_undelivered_messages_wait_in_it() {
    let dir = tempfile::tempdir().unwrap();
    // A rule whose SQL fails on the data fails the run (exit 2) after the others' findings
    // were announced: those messages are as lost with the database as on a run that passes.
    std::fs::write(
        dir.path().join("failing.toml"),
        "[[rule]]\nid = \"reads-text-as-json\"\ntitle = \"Fails\"\nseverity = \"low\"\n\
         resource_type = \"projects\"\ndescription = \"Fails.\"\nremediation = \"None.\"\n\
         sql = \"SELECT id AS resource_id, id AS project_id, 'm' AS message FROM projects \
         WHERE json_array_length(name) > 0\"\n",
    )
    .unwrap();
    with_the_relay_down(dir.path(), "[rules]\npaths = [\"failing.toml\"]\n");
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let out = audit(dir.path(), &sim.base_url(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("reads-text-as-json"), "{stderr}");
    assert!(
        stderr.contains("audit.db was created by this run")
            && stderr.contains("1 message(s) it could not deliver wait in its outbox"),
        "{stderr}"
    );
}

#[test]
fn a_delivered_digests_text_is_dropped_after_keep_sent_and_its_record_stays() {
    // Each digest attaches every open finding as CSV; kept for ever, sent digests grew the
    // database by gigabytes a year. `keep_sent = "0s"` drops a sent one's text at the next
    // delivery pass.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        CONFIG.replace(
            "[notify.email]",
            "[notify]\nkeep_sent = \"0s\"\n[notify.email]",
        ),
    )
    .unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let url = sim.base_url();
    let lengths = || -> Vec<i64> {
        let conn = rusqlite::Connection::open_with_flags(
            dir.path().join("audit.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut stmt = conn
            .prepare("SELECT length(message) FROM outbox ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    succeeded(&audit(dir.path(), &url, &[]));
    let first = lengths();
    assert_eq!(first.len(), 1);
    assert!(
        first[0] > 10_000,
        "the first digest, with its CSV: {first:?}"
    );

    // Sent in an earlier second than the next pass, so older than "0s" then; the payments
    // key's removal gives the second run something to announce.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    sim.with_org(|org| {
        org.project_mut(&ProjectId::from("proj_payments"))
            .unwrap()
            .api_keys
            .clear();
    });
    succeeded(&audit(dir.path(), &url, &[]));
    let now = lengths();
    assert_eq!(now.len(), 2, "the record stays: {now:?}");
    assert_eq!(now[0], 0, "{now:?}");
    assert!(
        now[1] > 0,
        "the one just sent keeps its text until the next pass: {now:?}"
    );
    assert_eq!(mails(dir.path()), 2, "both went whole");
}
