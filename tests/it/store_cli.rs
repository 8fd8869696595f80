//! `snapshots`, `diff`, `history` and `query` driven through the real binary, over a
//! database filled through the library (the collector's scope results, synthesized).

use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::{TimeZone, Utc};
use orgwarden::model::{
    CrawlStats, Family, ProjectId, Scope, ScopeError, ScopeOutcome, ScopeResult, SnapshotStatus,
};
use orgwarden::store::Store;
use serde_json::{Value, json};

fn complete(family: Family, project: Option<&str>, objects: Vec<Value>) -> ScopeResult {
    ScopeResult {
        scope: Scope {
            family,
            project_id: project.map(ProjectId::from),
            parent_id: None,
        },
        outcome: ScopeOutcome::Complete(objects.into()),
    }
}

fn key(id: &str, name: &str, last_used_at: i64) -> Value {
    json!({"object": "organization.project.api_key", "id": id, "name": name,
           "redacted_value": "sk-...abc", "created_at": 1_700_000_000, "last_used_at": last_used_at,
           "owner": {"type": "service_account", "service_account": {"id": "svc_acct_ci", "name": "ci", "role": "member", "created_at": 1}}})
}

fn org(key_name: &str, last_used_at: i64, with_alert: bool) -> Vec<ScopeResult> {
    let alerts = if with_alert {
        vec![
            json!({"object": "project.spend_alert", "id": "alert_1", "threshold_amount": 10000,
                    "currency": "USD", "interval": "month",
                    "notification_channel": {"type": "email", "recipients": ["fin@acme.com"]}}),
        ]
    } else {
        vec![]
    };
    vec![
        complete(
            Family::Projects,
            None,
            vec![
                json!({"id": "proj_pay", "object": "organization.project", "name": "Payments", "created_at": 1, "status": "active"}),
                json!({"id": "proj_old", "object": "organization.project", "name": "Old", "created_at": 1, "status": "archived", "archived_at": 2}),
            ],
        ),
        complete(
            Family::ProjectApiKeys,
            Some("proj_pay"),
            vec![key("key_prod", key_name, last_used_at)],
        ),
        complete(Family::ProjectSpendAlerts, Some("proj_pay"), alerts),
    ]
}

/// A database with three snapshots: the key renamed in the second (and used), the alert
/// removed in the third; plus a failed fourth.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let mut store = Store::open(&path).unwrap();
    let runs = [
        ("prod", 100, true),
        ("production", 200, true),
        ("production", 300, false),
    ];
    for (n, (name, used, alert)) in runs.into_iter().enumerate() {
        let t = Utc
            .timestamp_opt(1_800_000_000 + n as i64 * 86_400, 0)
            .unwrap();
        let mut w = store.begin_snapshot("acme", t).unwrap();
        for r in org(name, used, alert) {
            w.apply(r).unwrap();
        }
        let stats = CrawlStats {
            requests: 4,
            ..CrawlStats::default()
        };
        w.finish(
            &stats,
            t + chrono::Duration::seconds(3),
            SnapshotStatus::Complete,
        )
        .unwrap();
    }
    let t = Utc.timestamp_opt(1_800_400_000, 0).unwrap();
    let mut w = store.begin_snapshot("acme", t).unwrap();
    w.apply(ScopeResult {
        scope: Scope {
            family: Family::Projects,
            project_id: None,
            parent_id: None,
        },
        outcome: ScopeOutcome::Failed(ScopeError {
            status: Some(401),
            message: "GET /organization/projects: 401".into(),
        }),
    })
    .unwrap();
    w.finish(&CrawlStats::default(), t, SnapshotStatus::Failed)
        .unwrap();
    (dir, path)
}

fn run(dir: &Path, db: &Path, args: &[&str]) -> Output {
    crate::support::orgwarden()
        .current_dir(dir)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap()
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn snapshots_lists_every_snapshot_with_status_and_counts() {
    let (dir, db) = fixture();
    let list = stdout_json(&run(dir.path(), &db, &["snapshots", "--format", "json"]));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["status"], "complete");
    assert_eq!(list[0]["started_at"], "2027-01-15T08:00:00Z");
    assert_eq!(list[0]["requests"], 4);
    assert_eq!(list[0]["objects"]["projects"], 2);
    assert_eq!(list[3]["status"], "failed");
    assert_eq!(list[3]["scopes_failed"], 1);
    let csv = run(dir.path(), &db, &["snapshots", "--format", "csv"]);
    let text = String::from_utf8(csv.stdout).unwrap();
    assert!(
        text.starts_with("id,started_at,finished_at,status,"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5);
}

#[test]
fn diff_defaults_to_the_last_two_usable_snapshots() {
    let (dir, db) = fixture();
    let diff = stdout_json(&run(dir.path(), &db, &["diff", "--format", "json"]));
    assert_eq!(diff["from"]["id"], 2);
    assert_eq!(diff["to"]["id"], 3);
    assert_eq!(
        diff["changes"],
        json!([{"change": "removed", "resource_type": "project_spend_alerts", "project_id": "proj_pay",
                "parent_id": null, "resource_id": "alert_1", "fields": [],
                // The log has no event type for spend alerts: said, not searched.
                "attribution": {"status": "never_recorded"}}])
    );
}

#[test]
fn diff_shows_changed_fields_but_never_a_volatile_one() {
    let (dir, db) = fixture();
    let diff = stdout_json(&run(
        dir.path(),
        &db,
        &["diff", "1", "2", "--format", "json"],
    ));
    assert_eq!(
        diff["changes"],
        json!([{"change": "changed", "resource_type": "project_api_keys", "project_id": "proj_pay",
                "parent_id": null, "resource_id": "key_prod",
                "fields": [{"path": "$.name", "old": "prod", "new": "production"}],
                // These snapshots never read the audit log: who did it is unknown.
                "attribution": {"status": "not_read"}}])
    );
    let table = run(dir.path(), &db, &["diff", "1", "3"]);
    let text = String::from_utf8(table.stdout).unwrap();
    insta::assert_snapshot!("diff_table", text);
    let across_failed = run(dir.path(), &db, &["diff", "3", "4"]);
    let text = String::from_utf8(across_failed.stdout).unwrap();
    assert!(text.contains("0 object(s) differ"), "{text}");
    assert!(
        text.contains("note: snapshot 4 failed and changed nothing"),
        "{text}"
    );
    // As CSV, the note goes to stderr, beside the one table on stdout.
    let csv = run(dir.path(), &db, &["diff", "3", "4", "--format", "csv"]);
    assert!(csv.status.success());
    let (stdout, stderr) = (
        String::from_utf8(csv.stdout).unwrap(),
        String::from_utf8(csv.stderr).unwrap(),
    );
    assert!(stdout.starts_with("change,resource_type,"), "{stdout}");
    assert!(!stdout.contains("note:"), "{stdout}");
    assert_eq!(stderr, "note: snapshot 4 failed and changed nothing\n");
}

#[test]
fn history_lists_every_version_of_an_object() {
    let (dir, db) = fixture();
    let history = stdout_json(&run(
        dir.path(),
        &db,
        &["history", "alert_1", "--format", "json"],
    ));
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["change"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["added", "removed"]);
    assert_eq!(history[0]["valid_to_snapshot_id"], 3);
    let table = run(dir.path(), &db, &["history", "key_prod"]);
    insta::assert_snapshot!("history_table", String::from_utf8(table.stdout).unwrap());
    let missing = run(dir.path(), &db, &["history", "key_nope"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no object with id `key_nope`"));
}

#[test]
fn query_prints_rows_keyed_by_column_name() {
    let (dir, db) = fixture();
    let rows = stdout_json(&run(
        dir.path(),
        &db,
        &[
            "query",
            "SELECT id, status, archived_at FROM projects ORDER BY id",
            "--format",
            "json",
        ],
    ));
    assert_eq!(
        rows,
        json!([{"id": "proj_old", "status": "archived", "archived_at": 2},
               {"id": "proj_pay", "status": "active", "archived_at": null}])
    );
    let csv = run(
        dir.path(),
        &db,
        &[
            "query",
            "SELECT id, last_used_at, owner_id FROM project_api_keys",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        String::from_utf8(csv.stdout).unwrap(),
        "id,last_used_at,owner_id\nkey_prod,300,svc_acct_ci\n"
    );
}

#[test]
fn query_cannot_modify_the_database() {
    let (dir, db) = fixture();
    for sql in [
        "DELETE FROM object",
        "DROP VIEW projects",
        "UPDATE snapshot SET org = 'x'",
        "CREATE TABLE t (a)",
    ] {
        let out = run(dir.path(), &db, &["query", sql]);
        assert_eq!(out.status.code(), Some(2), "{sql}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("query is read-only"), "{sql}: {err}");
    }
    let rows = stdout_json(&run(
        dir.path(),
        &db,
        &[
            "query",
            "SELECT count(*) AS n FROM object",
            "--format",
            "json",
        ],
    ));
    assert_eq!(rows[0]["n"], 4);
}

#[test]
fn query_with_bad_sql_shows_sqlites_message() {
    let (dir, db) = fixture();
    let out = run(dir.path(), &db, &["query", "SELEC * FROM projects"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("syntax error"));
    let out = run(dir.path(), &db, &["query", "SELECT * FROM no_such_view"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such table: no_such_view"));
}

#[test]
fn read_commands_on_a_missing_database_say_to_snapshot_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.db");
    for args in [
        &["snapshots"][..],
        &["diff"],
        &["history", "x"],
        &["query", "SELECT 1"],
    ] {
        let out = run(dir.path(), &db, args);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no database at") && err.contains("run `orgwarden snapshot` first"),
            "{err}"
        );
    }
    assert!(!db.exists(), "a read command must not create the database");
}

#[test]
fn read_commands_on_an_empty_file_say_to_snapshot_first_and_leave_it_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [&["snapshots"][..], &["query", "SELECT 1"], &["findings"]] {
        let out = run(dir.path(), &db, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("run `orgwarden snapshot` first"), "{err}");
    }
    let meta = std::fs::metadata(&db).unwrap();
    assert_eq!(
        (meta.len(), meta.permissions().mode() & 0o777),
        (0, 0o644),
        "a read command wrote to the file"
    );
}

#[test]
fn history_tells_apart_one_role_assigned_to_two_users() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ow.db");
    let mut store = Store::open(&db).unwrap();
    let t = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let mut w = store.begin_snapshot("acme", t).unwrap();
    for user in ["user-ada", "user-ben"] {
        w.apply(ScopeResult {
            scope: Scope {
                family: Family::ProjectUserRoles,
                project_id: Some(ProjectId::from("proj_pay")),
                parent_id: Some(user.into()),
            },
            outcome: ScopeOutcome::Complete(
                vec![
                    json!({"object": "role", "id": "role_viewer", "name": "viewer",
                            "permissions": ["api.usage.read"], "resource_type": "api.project",
                            "predefined_role": false}),
                ]
                .into(),
            ),
        })
        .unwrap();
    }
    w.finish(&CrawlStats::default(), t, SnapshotStatus::Complete)
        .unwrap();
    drop(store);
    let out = run(
        dir.path(),
        &db,
        &["history", "role_viewer", "--format", "csv"],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[1].contains("user-ada/role_viewer"), "{text}");
    assert!(rows[2].contains("user-ben/role_viewer"), "{text}");
}

#[test]
fn diff_with_one_usable_snapshot_says_the_failed_one_does_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ow.db");
    let mut store = Store::open(&db).unwrap();
    let t = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let mut w = store.begin_snapshot("acme", t).unwrap();
    for r in org("prod", 100, true) {
        w.apply(r).unwrap();
    }
    w.finish(&CrawlStats::default(), t, SnapshotStatus::Complete)
        .unwrap();
    let t = t + chrono::Duration::days(1);
    let w = store.begin_snapshot("acme", t).unwrap();
    w.finish(&CrawlStats::default(), t, SnapshotStatus::Failed)
        .unwrap();
    drop(store);
    let out = run(dir.path(), &db, &["diff"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("a diff needs two snapshots that did not fail; the database has 1"),
        "{err}"
    );
}

#[test]
fn query_refuses_a_result_too_large_to_hold_instead_of_filling_memory() {
    let (dir, db) = fixture();
    // 300 MiB in one value: without a bound it is built, copied and printed as 600 MB of hex.
    let out = run(
        dir.path(),
        &db,
        &[
            "query",
            "SELECT zeroblob(300 * 1024 * 1024) AS b",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("larger than 256 MiB"), "{err}");
}

/// A cell of 80,000 columns: the table renderer counts widths in 16 bits, and such a cell
/// overflowed it (a panic in the test build). The table cuts it; CSV keeps it whole.
#[test]
fn query_table_cuts_a_cell_past_what_a_table_can_lay_out_and_csv_keeps_it() {
    let (dir, db) = fixture();
    let sql = "SELECT hex(zeroblob(40000)) AS x";
    let table = run(dir.path(), &db, &["query", sql]);
    assert_eq!(
        table.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.contains("… (20000 more characters) …"),
        "{}",
        &text[..200]
    );
    assert!(text.ends_with("(1 row)\n"));
    let csv = run(dir.path(), &db, &["query", sql, "--format", "csv"]);
    assert_eq!(
        String::from_utf8(csv.stdout).unwrap(),
        format!("x\n{}\n", "0".repeat(80_000))
    );
}

#[test]
fn query_json_keeps_both_columns_of_a_join_that_share_a_name() {
    let (dir, db) = fixture();
    let rows = stdout_json(&run(
        dir.path(),
        &db,
        &[
            "query",
            "SELECT p.id, p.name, k.name FROM projects p JOIN project_api_keys k \
             ON k.project_id = p.id",
            "--format",
            "json",
        ],
    ));
    assert_eq!(
        rows,
        json!([{"id": "proj_pay", "name": "Payments", "name:1": "production"}])
    );
}

#[test]
fn query_column_names_are_inert_in_table_and_csv_headers() {
    let (dir, db) = fixture();
    let sql = "SELECT 1 AS \"\u{1b}[2Jx\", 2 AS \"=cmd()\"";
    let table = run(dir.path(), &db, &["query", sql]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("\\x1b[2Jx"), "{text}");
    let csv = run(dir.path(), &db, &["query", sql, "--format", "csv"]);
    assert_eq!(
        String::from_utf8(csv.stdout).unwrap(),
        "\\x1b[2Jx,'=cmd()\n1,2\n"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn events_csv_keeps_its_exit_code_when_its_note_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ow.db");
    // Never read: the note on the feed goes to stderr beside the CSV.
    drop(Store::open(&db).unwrap());
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = crate::support::orgwarden()
        .arg("--db")
        .arg(&db)
        .args(["events", "--format", "csv"])
        .current_dir(dir.path())
        .stderr(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("time,type,actor"));
}
