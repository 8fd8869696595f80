//! Who changed it, end to end: writes through the simulator's API are recorded in its audit
//! log; the next audit reads them, and `diff`, `history` and the findings name the actor of
//! each change the log records — and say plainly when it records none.

use std::path::PathBuf;
use std::process::Output;

use orgwarden::sim::{Fault, FaultKind, Org, SimHandle, SimOptions, start_background};
use serde_json::{Value, json};

const KEY: &str = "sk-admin-who-changed-it";

const ORG: &str = r#"{
  "organization": "acme",
  "users": [
    {"id": "user-ada", "name": "Ada", "email": "ada@acme.com", "role": "owner"},
    {"id": "user-bob", "name": "Bob", "email": "bob@acme.com"}
  ],
  "admin_api_keys": [{"id": "key_admin_ops", "name": "ops", "owner": "user-ada"}],
  "projects": [
    {"id": "proj_a", "name": "Alpha", "created_at": "-40d", "data_retention": "zero_data_retention",
     "users": [{"id": "user-ada", "role": "owner"}]}
  ]
}"#;

/// A rule that finds every organization owner, so a promotion opens a finding.
const OWNER_RULE: &str = r#"
[[rule]]
id = "test-owner-seen"
title = "Organization owner"
severity = "low"
resource_type = "org_users"
description = "Every owner of the organization (a test rule)."
remediation = "None."
sql = "SELECT id AS resource_id, NULL AS project_id, 'owner ' || id AS message FROM org_users WHERE role = 'owner'"
"#;

struct Env {
    sim: SimHandle,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env::with_org(ORG)
    }

    fn with_org(org: &str) -> Env {
        let org: Org = crate::support::orgs::load(org, chrono::Utc::now().timestamp());
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
        std::fs::write(dir.path().join("rules/owner.toml"), OWNER_RULE).expect("rule");
        std::fs::write(
            dir.path().join("orgwarden.toml"),
            "[openai]\norganization = \"acme\"\n[rules]\npaths = [\"rules\"]\n\
             [spend]\nenabled = false\n",
        )
        .expect("config");
        Env {
            sim: start_background(org, SimOptions::default()).expect("simulator"),
            dir,
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("orgwarden.db")
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = crate::support::orgwarden();
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OPENAI_ADMIN_KEY", KEY)
            .arg("--db")
            .arg(self.db())
            .arg("--base-url")
            .arg(self.sim.base_url())
            .arg("--config")
            .arg(self.dir.path().join("orgwarden.toml"));
        cmd.args(args).output().expect("run orgwarden")
    }

    /// Sends one write to the simulator's API, as an administrator would.
    fn write(&self, path: &str, body: Value) {
        self.send("POST", path, Some(body));
    }

    /// Sends one request that changes the organization.
    fn send(&self, method: &str, path: &str, body: Option<Value>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let api = crate::support::sim_api::Api::new(&self.sim.base_url(), Some(KEY));
        let body = body.map(|b| b.to_string());
        let answer = rt.block_on(api.raw(method, path, body.as_deref()));
        assert_eq!(answer.status, 200, "{method} {path}: {}", answer.text);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn json_of(output: &Output) -> Value {
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(&output.stdout)))
}

/// The test rule's finding about organization owner `user` in an audit's JSON.
#[track_caller]
fn owner_finding<'a>(audit: &'a Value, user: &str) -> &'a Value {
    audit["findings"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|f| f["rule_id"] == "test-owner-seen" && f["resource_id"] == user)
        })
        .unwrap_or_else(|| panic!("no owner finding for {user} in {audit:#}"))
}

/// The diff entry of `resource_type` and `resource_id`.
fn entry<'a>(changes: &'a Value, resource_type: &str, resource_id: &str) -> &'a Value {
    changes
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|c| c["resource_type"] == resource_type && c["resource_id"] == resource_id)
        })
        .unwrap_or_else(|| panic!("no change of {resource_type} {resource_id} in {changes:#}"))
}

#[test]
fn diff_names_who_created_a_key_and_changed_a_role_and_says_retention_is_not_recorded() {
    let env = Env::new();
    json_of(&env.run(&["audit", "--format", "json"]));

    // An administrator creates an admin key, makes Bob an owner and turns off the
    // project's zero data retention.
    env.write(
        "/organization/admin_api_keys",
        json!({"name": "new-automation"}),
    );
    env.write("/organization/users/user-bob", json!({"role": "owner"}));
    env.write(
        "/organization/projects/proj_a/data_retention",
        json!({"retention_type": "none"}),
    );

    let audit = json_of(&env.run(&["audit", "--format", "json"]));
    let diff = json_of(&env.run(&["diff", "--format", "json"]));
    let changes = &diff["changes"];

    let new_key = changes
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|c| c["resource_type"] == "org_admin_api_keys" && c["change"] == "added")
        })
        .unwrap_or_else(|| panic!("no new admin key in {changes:#}"));
    let attribution = &new_key["attribution"];
    assert_eq!(attribution["status"], "recorded", "{new_key:#}");
    let event = &attribution["events"][0];
    assert_eq!(event["type"], "api_key.created", "{event:#}");
    assert_eq!(event["actor"]["type"], "api_key", "{event:#}");
    assert!(event["actor"]["api_key_id"].is_string(), "{event:#}");

    let bob = entry(changes, "org_users", "user-bob");
    assert_eq!(bob["attribution"]["status"], "recorded", "{bob:#}");
    assert_eq!(bob["attribution"]["events"][0]["type"], "user.updated");

    let retention = entry(changes, "project_data_retention", "proj_a");
    assert_eq!(
        retention["attribution"]["status"], "never_recorded",
        "{retention:#}"
    );

    // The table says the same in words.
    let table = text(&env.run(&["diff"]).stdout);
    assert!(table.contains("(user.updated)"), "{table}");
    assert!(
        table.contains(
            "not recorded by the audit log (it has no events for project_data_retention)"
        ),
        "{table}"
    );

    // Bob's promotion opened a finding that names who made it.
    let promoted = owner_finding(&audit, "user-bob");
    assert_eq!(
        promoted["changed_by"]["type"], "user.updated",
        "{promoted:#}"
    );
    // Ada was an owner before the first snapshot: nothing changed, no one to name.
    let ada = owner_finding(&audit, "user-ada");
    assert!(ada["changed_by"].is_null(), "{ada:#}");
    // The `findings` view keeps the same JSON for SQL.
    let rows = json_of(&env.run(&[
        "query",
        "--format",
        "json",
        "SELECT resource_id, json_extract(changed_by, '$.type') AS event FROM findings \
         WHERE resource_id IN ('user-ada', 'user-bob') AND changed_by IS NOT NULL",
    ]));
    assert_eq!(
        rows,
        serde_json::json!([{"resource_id": "user-bob", "event": "user.updated"}])
    );

    // `history` attributes Bob's change too.
    let history = json_of(&env.run(&["history", "user-bob", "--format", "json"]));
    let changed = history
        .as_array()
        .and_then(|all| all.iter().find(|h| h["change"] == "changed"))
        .unwrap_or_else(|| panic!("no change in {history:#}"));
    assert_eq!(changed["attribution"]["status"], "recorded", "{changed:#}");
}

/// Waits into the next whole second: snapshot and event times are whole seconds, and both
/// ends of an interval count, so a change must be a second apart from the snapshot before
/// it to belong to one interval only.
fn next_second() {
    std::thread::sleep(std::time::Duration::from_millis(1_100));
}

/// Runs a snapshot and checks its exit code (3: a partial read).
#[track_caller]
fn snapshot(env: &Env, code: i32) {
    let output = env.run(&["snapshot"]);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

const TWO_PROJECTS: &str = r#"{
  "users": [
    {"id": "user-ada", "name": "Ada", "email": "ada@acme.com", "role": "owner"},
    {"id": "user-dee", "name": "Dee", "email": "dee@acme.com"}
  ],
  "projects": [
    {"id": "proj_a", "name": "Alpha", "created_at": "-40d", "users": [{"id": "user-dee"}]},
    {"id": "proj_c", "name": "Gamma", "created_at": "-40d", "users": [{"id": "user-dee"}]}
  ]
}"#;

#[test]
fn a_diff_across_snapshots_explains_each_change_only_by_events_of_its_own_interval() {
    let env = Env::with_org(TWO_PROJECTS);
    snapshot(&env, 0);
    // Snapshot 2 sees Gamma gone, and Dee's membership of it with it.
    env.sim
        .with_org(|org| org.projects.retain(|p| p.id.as_str() != "proj_c"));
    snapshot(&env, 0);
    // Later, Dee is made an organization owner: a `user.updated` naming Dee.
    next_second();
    env.write("/organization/users/user-dee", json!({"role": "owner"}));
    snapshot(&env, 0);

    let diff = json_of(&env.run(&["diff", "1", "3", "--format", "json"]));
    let changes = &diff["changes"];
    let promoted = entry(changes, "org_users", "user-dee");
    assert_eq!(
        promoted["attribution"]["status"], "recorded",
        "{promoted:#}"
    );
    assert_eq!(promoted["attribution"]["events"][0]["type"], "user.updated");
    // Dee left Gamma with the project, before the promotion: the promotion does not
    // explain it, and the log (read over that interval) holds nothing that does.
    let left = changes
        .as_array()
        .and_then(|all| {
            all.iter().find(|c| {
                c["resource_type"] == "project_users"
                    && c["project_id"] == "proj_c"
                    && c["resource_id"] == "user-dee"
            })
        })
        .unwrap_or_else(|| panic!("Dee's membership of Gamma did not change in {changes:#}"));
    assert_eq!(left["change"], "removed", "{left:#}");
    assert_eq!(left["attribution"]["status"], "not_recorded", "{left:#}");
    // The reversed diff is the same changes backwards, explained the same way.
    let reversed = json_of(&env.run(&["diff", "3", "1", "--format", "json"]));
    let back = reversed["changes"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|c| c["resource_type"] == "project_users" && c["project_id"] == "proj_c")
        })
        .unwrap_or_else(|| panic!("no membership of Gamma in {reversed:#}"));
    assert_eq!(back["change"], "added", "{back:#}");
    assert_eq!(back["attribution"]["status"], "not_recorded", "{back:#}");
}

#[test]
fn a_change_made_before_a_partial_snapshot_that_could_not_read_it_keeps_its_event() {
    let env = Env::with_org(
        r#"{
      "users": [{"id": "user-ada", "name": "Ada", "email": "ada@acme.com", "role": "owner"}],
      "projects": [{"id": "proj_a", "name": "Alpha", "created_at": "-40d",
        "users": [{"id": "user-ada", "role": "owner"}],
        "api_keys": [{"id": "key_a", "owner": {"type": "user", "id": "user-ada"}}]}]
    }"#,
    );
    snapshot(&env, 0);
    // The key is revoked; the next snapshot cannot read the project's keys, so it carries
    // the key forward, and only the one after sees it gone.
    next_second();
    env.send(
        "DELETE",
        "/organization/projects/proj_a/api_keys/key_a",
        None,
    );
    next_second();
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_a/api_keys".into(),
        kind: FaultKind::Status(403),
        times: Some(1),
    });
    snapshot(&env, 3);
    snapshot(&env, 0);

    // The partial read shows the key neither removed nor changed.
    let partial = json_of(&env.run(&["diff", "1", "2", "--format", "json"]));
    assert_eq!(partial["to"]["status"], "partial", "{partial:#}");
    assert_eq!(partial["changes"], json!([]), "{partial:#}");
    // And says, as the table's note does, that snapshot 2 did not read everything.
    assert_eq!(
        partial["not_fully_read"],
        json!([{"id": 2, "status": "partial", "scopes_failed": 1}]),
        "{partial:#}"
    );

    let diff = json_of(&env.run(&["diff", "--format", "json"]));
    assert_eq!(diff["from"]["id"], 2, "{diff:#}");
    let revoked = entry(&diff["changes"], "project_api_keys", "key_a");
    assert_eq!(revoked["change"], "removed", "{revoked:#}");
    // The revocation came before snapshot 2 started, which could not see it: the
    // change lies between snapshot 1 and 3, and the log recorded it.
    assert_eq!(revoked["attribution"]["status"], "recorded", "{revoked:#}");
    assert_eq!(
        revoked["attribution"]["events"][0]["type"], "api_key.deleted",
        "{revoked:#}"
    );

    let history = json_of(&env.run(&["history", "key_a", "--format", "json"]));
    let removed = history
        .as_array()
        .and_then(|all| all.iter().find(|h| h["change"] == "removed"))
        .unwrap_or_else(|| panic!("no removal in {history:#}"));
    assert_eq!(removed["snapshot_id"], 3, "{removed:#}");
    assert_eq!(removed["attribution"]["status"], "recorded", "{removed:#}");
}

#[test]
fn a_finding_opened_after_a_snapshot_that_was_never_evaluated_names_who_made_the_change() {
    let env = Env::new();
    json_of(&env.run(&["audit", "--format", "json"]));
    // Bob is made an owner; a plain `snapshot` stores the change without evaluating it, so
    // the next audit is the first to open Bob's finding.
    next_second();
    env.write("/organization/users/user-bob", json!({"role": "owner"}));
    next_second();
    snapshot(&env, 0);
    let audit = json_of(&env.run(&["audit", "--format", "json"]));
    let promoted = owner_finding(&audit, "user-bob");
    // The promotion came before snapshot 2, which nothing evaluated: it is still the
    // change that opened the finding.
    assert_eq!(
        promoted["changed_by"]["type"], "user.updated",
        "{promoted:#}"
    );
    // Evaluated again, with nothing changed since, the finding keeps its explanation.
    let offline = json_of(&env.run(&["audit", "--offline", "--format", "json"]));
    let again = owner_finding(&offline, "user-bob");
    assert_eq!(again["changed_by"]["type"], "user.updated", "{again:#}");
}
