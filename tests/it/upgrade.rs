//! A database an older orgwarden wrote, opened by this one: it is upgraded in place and
//! reads as before. The old database is built by applying the first migrations only, as the
//! older binary did, with rows written the way it wrote them.

use std::path::Path;

use crate::support::orgwarden;

/// A schema-version-4 database (orgwarden before the costs tables) holding one open
/// finding that was announced, as `audit --notify` of that version left it.
pub(crate) fn version_4_database(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    for (_, sql) in &orgwarden::store::MIGRATIONS[..4] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 4).unwrap();
    conn.execute_batch(
        "INSERT INTO snapshot (id, org, started_at, finished_at, status) VALUES (1, 'acme', 100, 101, 'complete');
         INSERT INTO finding (fingerprint, rule_id, severity, title, resource_type, resource_id, project_id,
                              message, remediation, status, first_seen, last_seen, last_notified_at,
                              announced_status, announced_severity)
         VALUES ('fp1', 'api-key-stale', 'medium', 'API key not used for a long time', 'project_api_keys',
                 'key_old', 'proj_a', 'API key \"old\" has not been used', 'Revoke it', 'open', 100, 100, 101,
                 'open', 'medium');
         INSERT INTO finding_events (fingerprint, snapshot_id, at, kind, from_status, to_status, reason)
         VALUES ('fp1', 1, 100, 'opened', NULL, 'open', 'first seen');",
    )
    .unwrap();
}

#[test]
fn findings_on_a_database_an_older_orgwarden_wrote_upgrades_it_and_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    version_4_database(&db);
    let out = orgwarden()
        .current_dir(dir.path())
        .args(["--db", "old.db", "findings", "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = listed.to_string();
    assert!(text.contains("key_old"), "{text}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(
        version,
        i64::try_from(orgwarden::store::MIGRATIONS.len()).unwrap()
    );
}

fn user_version(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn a_read_command_does_not_upgrade_a_database_an_older_writer_holds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    version_4_database(&db);
    // What an older daemon still running holds for its whole life.
    let held = orgwarden::store::Store::lock_writer(&db).unwrap();
    let query = || {
        orgwarden()
            .current_dir(dir.path())
            .args(["--db", "old.db", "query", "SELECT count(*) FROM findings"])
            .output()
            .unwrap()
    };
    let out = query();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("older orgwarden") && stderr.contains("locked"),
        "{stderr}"
    );
    assert_eq!(user_version(&db), 4, "upgraded under the writer");
    drop(held);
    let out = query();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        user_version(&db),
        i64::try_from(orgwarden::store::MIGRATIONS.len()).unwrap()
    );
}

#[test]
fn a_read_command_reads_through_its_own_views_while_another_version_holds_the_writer() {
    // During an upgrade the older daemon still runs, holding the writer lock, and its
    // views (same schema) lack what this version documents: a read must neither wait for
    // the lock nor fail, and must not rewrite the views under the daemon.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ow.db");
    drop(orgwarden::store::Store::open(&db).unwrap());
    let older = "CREATE VIEW projects AS SELECT o.resource_id AS id FROM object o \
                 WHERE o.family = 'projects'";
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&format!("DROP VIEW projects; {older};"))
        .unwrap();
    drop(conn);
    let held = orgwarden::store::Store::lock_writer(&db).unwrap();
    let query = |sql: &str| {
        orgwarden()
            .current_dir(dir.path())
            .args(["--db", "ow.db", "query", sql, "--format", "csv"])
            .output()
            .unwrap()
    };
    let out = query("SELECT count(created_at_utc) AS n FROM projects");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n0\n");
    for sql in ["DROP VIEW projects", "CREATE TEMP TABLE t (a)"] {
        let out = query(sql);
        assert_eq!(out.status.code(), Some(2), "{sql} was allowed");
    }
    drop(held);
    let stored: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'projects'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, older, "the views were rewritten under the writer");
}

#[test]
fn rules_check_on_a_database_an_older_orgwarden_wrote_upgrades_it_and_judges_the_exemptions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    version_4_database(&db);
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[[exemption]]\nrule = \"api-key-stale\"\nresource = \"key_old\"\nreason = \"r\"\n\
         owner = \"o@example.com\"\nexpires = \"2099-01-01\"\n\
         [[exemption]]\nrule = \"api-key-stale\"\nresource = \"key_nowhere\"\nreason = \"r\"\n\
         owner = \"o@example.com\"\nexpires = \"2099-01-01\"\n",
    )
    .unwrap();
    let out = orgwarden()
        .current_dir(dir.path())
        .args(["--db", "old.db", "rules", "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("not checked"), "{stderr}");
    assert!(
        stderr.contains("`key_nowhere` matches no finding"),
        "{stderr}"
    );
    assert!(!stderr.contains("`key_old` matches no finding"), "{stderr}");
    assert_eq!(
        user_version(&db),
        i64::try_from(orgwarden::store::MIGRATIONS.len()).unwrap()
    );
}
