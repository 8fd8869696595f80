//! `orgwarden demo`: the first command a newcomer runs. It must crawl the built-in
//! organization over HTTP, show every shipped rule, and write the digest it would have
//! emailed — once, not again on an unchanged re-run.

use std::path::Path;
use std::process::Output;

fn demo(dir: &Path) -> Output {
    crate::support::orgwarden()
        .args(["demo", "--format", "json"])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn eml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("orgwarden-demo-outbox"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn shipped_rule_ids() -> Vec<String> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                if let Some(id) = line.strip_prefix("id = \"") {
                    ids.push(id.trim_end_matches('"').to_owned());
                }
            }
        }
    }
    ids
}

#[test]
fn demo_shows_every_shipped_rule_and_writes_the_digest_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["snapshot"]["status"], "complete");
    // Crawled through the HTTP simulator like a real organization, not loaded directly.
    assert!(report["snapshot"]["requests"].as_u64().unwrap() > 50);
    let fired: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap())
        .collect();
    let shipped = shipped_rule_ids();
    assert!(shipped.len() >= 13, "{shipped:?}");
    for id in &shipped {
        // The demo organization breaks every rule but three: every project has an owner,
        // its hard spend limit (which `org-spend-near-limit` judges) means it has one, and
        // its audit log, whose events the other audit-log rules report, is on.
        if ![
            "project-no-owner",
            "org-no-spend-limit",
            "audit-logging-disabled",
        ]
        .contains(&id.as_str())
        {
            assert!(fired.contains(&id.as_str()), "{id} did not fire: {fired:?}");
        }
    }
    assert!(dir.path().join("orgwarden-demo.db").exists());

    let emails = eml_files(dir.path());
    assert_eq!(emails.len(), 1, "{stderr}");
    let raw = std::fs::read(&emails[0]).unwrap();
    let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert!(message.subject().unwrap().contains("acme-robotics"));
    assert!(message.body_html(0).is_some() && message.body_text(0).is_some());

    let again = demo(dir.path());
    assert_eq!(again.status.code(), Some(0));
    // The same day's demo organization is the same: the second snapshot changed nothing.
    let diff = crate::support::orgwarden()
        .args(["--db", "orgwarden-demo.db", "diff", "--format", "json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let diff: serde_json::Value = serde_json::from_slice(&diff.stdout).unwrap();
    assert_eq!(diff["changes"].as_array().map(Vec::len), Some(0), "{diff}");
    assert_eq!(diff["not_fully_read"], serde_json::json!([]), "{diff}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing new to announce"));
    assert_eq!(
        eml_files(dir.path()).len(),
        1,
        "an unchanged re-run sends nothing"
    );
}

#[test]
fn after_the_demo_the_next_commands_are_pointed_at_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::orgwarden()
        .args(["demo"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("Next: `orgwarden --db orgwarden-demo.db findings --severity high`"),
        "{stderr}"
    );
    // Every other command reads orgwarden.db unless told otherwise.
    let findings = crate::support::orgwarden()
        .args(["findings"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&findings.stderr);
    assert_eq!(findings.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no database at orgwarden.db")
            && stderr.contains("add `--db orgwarden-demo.db` to read it"),
        "{stderr}"
    );
    // A database named elsewhere gets no word about the demo's.
    let elsewhere = crate::support::orgwarden()
        .args(["--db", "sub/other.db", "snapshots"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(!stderr.contains("orgwarden demo"), "{stderr}");
}

#[test]
fn a_message_refused_for_good_is_queued_again_by_notify_requeue() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(demo(dir.path()).status.code(), Some(0));
    let db = dir.path().join("orgwarden-demo.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    // As a receiver's refusal for good leaves it: unsent, refused, not tried again.
    let now = chrono::Utc::now().timestamp();
    conn.execute(
        "UPDATE outbox SET sent_at = NULL, failed_at = ?1, last_error = 'message rejected by \
         smtp.example.com: 554 5.7.1 relay access denied'",
        [now],
    )
    .unwrap();
    let requeue = |args: &[&str]| {
        crate::support::orgwarden()
            .args(["--db", "orgwarden-demo.db", "notify", "requeue"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let state = || -> (bool, bool) {
        conn.query_row(
            "SELECT failed_at IS NULL, next_attempt_at <= strftime('%s', 'now') FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    // A channel neither configured nor in the outbox is a typo, said as such; older
    // refusals are left as they are.
    let other = requeue(&["--channel", "emial"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains(
            "no channel named `emial` (configured: log), and the outbox holds no message for one"
        ),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    assert!(!state().0, "still refused");
    conn.execute("UPDATE outbox SET failed_at = ?1", [now - 10 * 86_400])
        .unwrap();
    let old = requeue(&[]);
    assert!(String::from_utf8_lossy(&old.stdout).starts_with("0 refused message(s)"));
    assert!(!state().0, "still refused");

    // The demo's channel is in no configuration here, but its messages are in the outbox
    // (a channel removed or renamed since): they are requeued, with a word of warning.
    let out = requeue(&["--since", "30d", "--channel", "email"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`email` is not a configured channel"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("1 refused message(s) queued again"),
        "{stdout}"
    );
    assert_eq!(state(), (true, true), "due again at once");
}
