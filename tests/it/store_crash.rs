//! A snapshot is committed whole or not at all: a writer killed with SIGKILL at any
//! moment leaves the database usable and showing exactly the last committed snapshot.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use orgwarden::model::{
    CrawlStats, Family, ProjectId, Scope, ScopeOutcome, ScopeResult, SnapshotStatus,
};
use orgwarden::store::Store;
use serde_json::json;

const CHILD_DB: &str = "ORGWARDEN_TEST_CRASH_CHILD_DB";
const TEST_NAME: &str = "store_crash::killed_writer_leaves_the_last_committed_snapshot_intact";

/// Every key's name carries the run number, so a view mixing two runs is detectable.
fn org(run: i64) -> Vec<ScopeResult> {
    let projects: Vec<String> = (0..40).map(|p| format!("proj_{p:03}")).collect();
    let mut out = vec![ScopeResult {
        scope: Scope {
            family: Family::Projects,
            project_id: None,
            parent_id: None,
        },
        outcome: ScopeOutcome::Complete(
            projects
                .iter()
                .map(|p| json!({"id": p, "object": "organization.project", "name": p, "status": "active"}))
                .collect(),
        ),
    }];
    for p in &projects {
        out.push(ScopeResult {
            scope: Scope {
                family: Family::ProjectApiKeys,
                project_id: Some(ProjectId::from(p.as_str())),
                parent_id: None,
            },
            outcome: ScopeOutcome::Complete(
                (0..25)
                    .map(|k| json!({"id": format!("key_{p}_{k}"), "object": "organization.project.api_key",
                                    "name": format!("run {run}"), "last_used_at": run}))
                    .collect(),
            ),
        });
    }
    out
}

/// The child: writes snapshots until it is killed, printing each committed id.
fn write_forever(db: &Path) {
    let mut store = Store::open(db).unwrap();
    let mut run = store.list_snapshots().unwrap().len() as i64;
    loop {
        let t = Utc.timestamp_opt(1_800_000_000 + run, 0).unwrap();
        let mut writer = store.begin_snapshot("acme", t).unwrap();
        for result in org(run) {
            writer.apply(result).unwrap();
        }
        let info = writer
            .finish(&CrawlStats::default(), t, SnapshotStatus::Complete)
            .unwrap();
        println!("committed {}", info.id);
        run += 1;
    }
}

#[test]
fn killed_writer_leaves_the_last_committed_snapshot_intact() {
    if let Some(db) = std::env::var_os(CHILD_DB) {
        write_forever(Path::new(&db));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ow.db");
    // Kill at different moments: early in a transaction, mid-way, near a commit.
    for (round, delay_ms) in [0u64, 7, 23, 41, 67, 113].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_DB, &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait for one commit of this round, then kill inside a later transaction.
        loop {
            let line = lines.next().expect("child ended").unwrap();
            if line.starts_with("committed") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();

        let store = Store::open(&db).unwrap();
        // A second connection of its own: the store keeps its connection to itself.
        let conn = rusqlite::Connection::open(&db).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        let running: i64 = conn
            .query_row(
                "SELECT count(*) FROM snapshot WHERE status <> 'complete'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            running, 0,
            "round {round}: a half-written snapshot is visible"
        );
        let snapshots = store.list_snapshots().unwrap();
        assert!(snapshots.len() > round, "round {round}");
        let latest = store.latest_snapshot().unwrap().unwrap();
        let names: Vec<String> = conn
            .prepare("SELECT DISTINCT name FROM project_api_keys")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = format!("run {}", snapshots.len() - 1);
        assert_eq!(
            names,
            [expected],
            "round {round}: keys from more than one run"
        );
        let keys: i64 = conn
            .query_row("SELECT count(*) FROM project_api_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(keys as u64, latest.objects["project_api_keys"]);
        assert_eq!(keys, 40 * 25);
    }
}
