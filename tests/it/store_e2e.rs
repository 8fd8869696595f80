//! The history commands over real crawls: `orgwarden snapshot` against the in-process
//! simulator, the organization changed between runs, then `snapshots`, `diff`, `history`
//! and `query` through the binary.

use std::path::PathBuf;
use std::process::Output;

use orgwarden::model::{ApiKeyId, ProjectId, UserId};
use orgwarden::sim::{Fault, FaultKind, SimHandle, SimOptions, start_background};
use serde_json::{Value, json};

struct Env {
    sim: SimHandle,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let org = crate::support::orgs::load(
            crate::support::orgs::TWO_PROJECTS,
            chrono::Utc::now().timestamp(),
        );
        Env {
            sim: start_background(org, SimOptions::default()).unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("orgwarden.db")
    }

    fn run(&self, args: &[&str]) -> Output {
        crate::support::orgwarden()
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OPENAI_ADMIN_KEY", "sk-admin-test")
            .arg("--db")
            .arg(self.db())
            .arg("--base-url")
            .arg(self.sim.base_url())
            .args(args)
            .output()
            .unwrap()
    }

    fn snapshot(&self) -> i32 {
        let out = self.run(&["snapshot", "-q"]);
        out.status.code().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn changes_between_crawls_show_in_diff_and_history_but_key_use_does_not() {
    let env = Env::new();
    assert_eq!(env.snapshot(), 0);
    env.sim.with_org(|org| {
        let p = org.project_mut(&ProjectId::from("proj_a")).unwrap();
        // Used again (volatile) and renamed (a real change).
        let key = p
            .api_keys
            .iter_mut()
            .find(|k| k.id == ApiKeyId::from("key_a1"))
            .unwrap();
        key.last_used_at = Some(chrono::Utc::now().timestamp());
        key.name = "deploy".into();
        // Bob leaves: his membership and his role assignment go.
        p.users.retain(|u| u.id != UserId::from("user-bob"));
    });
    assert_eq!(env.snapshot(), 0);

    let diff = env.json(&["diff", "--format", "json"]);
    let changes: Vec<(String, String, String)> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_owned(),
                c["resource_type"].as_str().unwrap().to_owned(),
                c["resource_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("removed".into(), "project_users".into(), "user-bob".into()),
            (
                "removed".into(),
                "project_user_roles".into(),
                "role_billing".into()
            ),
            ("changed".into(), "project_api_keys".into(), "key_a1".into()),
        ]
    );
    let key_change = &diff["changes"][2]["fields"];
    assert_eq!(
        key_change,
        &json!([{"path": "$.name", "old": "ci", "new": "deploy"}]),
        "only the name: last_used_at is volatile"
    );

    let history = env.json(&["history", "key_a1", "--format", "json"]);
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[1]["change"], "changed");
    assert_eq!(history[1]["snapshot_id"], 2);

    // The latest view has the newest last_used_at even though no version was made for it.
    let rows = env.json(&[
        "query",
        "SELECT name, last_used_at > unixepoch('now', '-1 hour') AS fresh FROM project_api_keys",
        "--format",
        "json",
    ]);
    assert_eq!(rows, json!([{"name": "deploy", "fresh": 1}]));
    let versions = env.json(&[
        "query",
        "SELECT count(*) AS n FROM object_versions WHERE resource_id = 'key_a1'",
        "--format",
        "json",
    ]);
    assert_eq!(versions[0]["n"], 2);
}

#[test]
fn a_partial_crawl_is_listed_and_removes_nothing() {
    let env = Env::new();
    assert_eq!(env.snapshot(), 0);
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_a/api_keys".into(),
        kind: FaultKind::Status(500),
        times: None,
    });
    env.sim.with_org(|org| {
        org.project_mut(&ProjectId::from("proj_a"))
            .unwrap()
            .api_keys
            .clear();
    });
    assert_eq!(env.snapshot(), 3);
    let list = env.json(&["snapshots", "--format", "json"]);
    assert_eq!(list[0]["status"], "complete");
    assert_eq!(list[1]["status"], "partial");
    assert_eq!(list[1]["scopes_failed"], 1);
    assert_eq!(list[1]["changes"], 0);
    let diff = env.json(&["diff", "--format", "json"]);
    assert_eq!(diff["changes"], json!([]));
    let keys = env.json(&[
        "query",
        "SELECT id FROM project_api_keys",
        "--format",
        "json",
    ]);
    assert_eq!(keys, json!([{"id": "key_a1"}]));
    // Once the scope reads again, the key really is gone.
    env.sim.clear_faults();
    assert_eq!(env.snapshot(), 0);
    let diff = env.json(&["diff", "--format", "json"]);
    assert_eq!(diff["changes"][0]["change"], "removed");
    assert_eq!(diff["changes"][0]["resource_id"], "key_a1");
}
