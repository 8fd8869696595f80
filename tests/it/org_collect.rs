//! The organization's own families, end to end: the real binary crawls the simulator's
//! organization-level endpoints into the `org_…` views, with their failures, skips and
//! the admin-key list's project keys.

use std::path::PathBuf;
use std::process::Output;

use orgwarden::sim::{Fault, FaultKind, Org, SimHandle, SimOptions, start_background};
use orgwarden::store::Store;
use serde_json::Value;

const KEY: &str = "sk-admin-org-collect-test";

/// Two members, a group with a member and a role, a custom role, an invite, an admin key
/// and the live API's quirk of listing project keys (`key_b1`) with it, the organization's
/// retention and alerts; `proj_a` follows the organization's retention, `proj_b` has its
/// own and a spend limit; no organization spend limit.
const ORG: &str = r#"{
  "organization": "acme",
  "users": [
    {"id": "user-ada", "name": "Ada", "email": "ada@acme.com", "role": "owner",
     "roles": ["role_auditor"]},
    {"id": "user-bob", "name": "Bob", "email": "bob@acme.com"}
  ],
  "groups": [
    {"id": "group_sec", "name": "sec", "users": ["user-ada", "user-bob"],
     "roles": ["role_auditor"]}
  ],
  "roles": [
    {"id": "role_auditor", "name": "auditor", "permissions": ["api.organization.read"]}
  ],
  "invites": [{"id": "invite-eve", "email": "eve@elsewhere.com"}],
  "admin_api_keys": [{"id": "key_admin1", "name": "ops", "owner": "user-ada"}],
  "quirks": {"admin_keys_list_project_keys": true},
  "data_retention": "zero_data_retention",
  "spend_alerts": [{"id": "alert_org", "threshold_amount": 500000}],
  "certificates": [{"id": "cert_org", "name": "mtls"}],
  "projects": [
    {"id": "proj_a", "name": "Alpha", "created_at": "-400d",
     "users": [{"id": "user-ada", "role": "owner"}]},
    {"id": "proj_b", "name": "Beta", "created_at": "-200d", "data_retention": "none",
     "spend_limit": {"threshold_amount": 100000, "enforcement": "enforcing"},
     "users": [{"id": "user-bob", "role": "owner"}],
     "api_keys": [{"id": "key_b1", "name": "prod", "owner": {"type": "user", "id": "user-bob"}}]}
  ]
}"#;

/// A rule that finds every organization member, so a member's finding can be watched.
const MEMBER_RULE: &str = r#"
[[rule]]
id = "org-member-seen"
title = "Organization member"
severity = "low"
resource_type = "org_users"
description = "Every member of the organization (a test rule)."
remediation = "None."
sql = "SELECT id AS resource_id, NULL AS project_id, 'member ' || id AS message FROM org_users"
"#;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

struct Env {
    sim: SimHandle,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env::serving(
            crate::support::orgs::load(ORG, now()),
            SimOptions::default(),
        )
    }

    /// A simulator serving `org` with `opts`, and an empty directory.
    fn serving(org: Org, opts: SimOptions) -> Env {
        Env {
            sim: start_background(org, opts).expect("simulator"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("orgwarden.db")
    }

    /// Writes `orgwarden.toml` with `extra` after its `[openai]` table.
    fn config(&self, extra: &str) {
        std::fs::write(
            self.dir.path().join("orgwarden.toml"),
            format!("[openai]\norganization = \"acme\"\n{extra}\n"),
        )
        .expect("config");
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_logging(args, None)
    }

    /// [`Env::run`] with `RUST_LOG` set to `log`.
    fn run_logging(&self, args: &[&str], log: Option<&str>) -> Output {
        let mut cmd = crate::support::orgwarden();
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OPENAI_ADMIN_KEY", KEY);
        if let Some(log) = log {
            cmd.env("RUST_LOG", log);
        }
        cmd.arg("--db")
            .arg(self.db())
            .arg("--base-url")
            .arg(self.sim.base_url());
        if self.dir.path().join("orgwarden.toml").exists() {
            cmd.arg("--config")
                .arg(self.dir.path().join("orgwarden.toml"));
        }
        cmd.args(args).output().expect("run orgwarden")
    }

    /// The text of the first column of every row of `sql` (NULL as `NULL`).
    fn column(&self, sql: &str) -> Vec<String> {
        let store = Store::open_read_only(&self.db()).expect("database opens");
        let found = store.query(sql, &[]).expect("query");
        found
            .rows
            .iter()
            .map(|row| match &row[0] {
                rusqlite::types::Value::Text(text) => text.clone(),
                rusqlite::types::Value::Integer(n) => n.to_string(),
                rusqlite::types::Value::Null => "NULL".to_owned(),
                other => panic!("{sql}: {other:?}"),
            })
            .collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, expected: i32) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(&output.stdout)))
}

#[test]
fn every_org_view_is_filled_from_the_organization() {
    let env = Env::new();
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 0);
    let summary = json(&out);
    assert_eq!(summary["status"], "complete");
    let objects = &summary["objects"];
    assert_eq!(objects["org_users"], 2);
    assert_eq!(objects["org_user_roles"], 1);
    assert_eq!(objects["org_invites"], 1);
    assert_eq!(objects["org_groups"], 1);
    assert_eq!(objects["org_group_users"], 2);
    assert_eq!(objects["org_group_roles"], 1);
    assert_eq!(objects["org_data_retention"], 1);
    assert_eq!(objects["org_spend_alerts"], 1);
    assert_eq!(objects["org_certificates"], 1);
    assert_eq!(objects["project_spend_limits"], 1);
    assert!(objects["org_roles"].as_u64() >= Some(1), "{objects}");
    assert_eq!(
        env.column("SELECT user_id || ' ' || id FROM org_user_roles"),
        ["user-ada role_auditor"]
    );
    assert_eq!(
        env.column("SELECT group_id || ' ' || id FROM org_group_users ORDER BY id"),
        ["group_sec user-ada", "group_sec user-bob"]
    );
    assert_eq!(
        env.column("SELECT resource_id || ' ' || type FROM org_data_retention"),
        ["organization zero_data_retention"]
    );
    assert_eq!(
        env.column("SELECT count(*) FROM org_users WHERE project_id IS NULL"),
        ["2"]
    );
    // A project that follows the organization's default has the organization's type.
    assert_eq!(
        env.column(
            "SELECT project_id || ' ' || type || ' ' || effective_type \
             FROM project_data_retention ORDER BY project_id"
        ),
        [
            "proj_a organization_default zero_data_retention",
            "proj_b none none"
        ]
    );
    // The table output lists the new views too.
    let table = env.run(&["snapshot"]);
    assert_exit(&table, 0);
    let shown = text(&table.stdout);
    assert!(
        shown.contains("org_admin_api_keys") && shown.contains("project_spend_limits"),
        "{shown}"
    );
}

#[test]
fn an_unset_spend_limit_is_no_row_and_no_failure() {
    let env = Env::new();
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["objects"]["org_spend_limit"], 0);
    // proj_a has no limit either: a 404 read as "none", proj_b's is stored.
    assert_eq!(
        env.column("SELECT project_id || ' ' || threshold_amount || ' ' || enforcement_status FROM project_spend_limits"),
        ["proj_b 100000 enforcing"]
    );
}

#[test]
fn the_admin_key_list_keeps_no_project_key() {
    let env = Env::new();
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 0);
    assert_eq!(
        env.column("SELECT id FROM org_admin_api_keys"),
        ["key_admin1"]
    );
    assert_eq!(env.column("SELECT id FROM project_api_keys"), ["key_b1"]);
}

#[test]
fn a_403_on_the_invites_fails_that_scope_alone_and_says_how_to_skip_it() {
    let env = Env::new();
    env.sim.add_fault(Fault {
        path_prefix: "/organization/invites".into(),
        kind: FaultKind::Status(403),
        times: None,
    });
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 3);
    let summary = json(&out);
    assert_eq!(summary["status"], "partial");
    assert_eq!(summary["scopes_failed"], 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("GET /organization/invites: HTTP 403")
            && stderr.contains("this key may not read org_invites")
            && stderr.contains("add \"org_invites\" to [collect] skip"),
        "{stderr}"
    );
    assert!(!stderr.contains("not an admin key"), "{stderr}");
    assert_eq!(summary["objects"]["org_users"], 2);
    assert_eq!(summary["objects"]["org_groups"], 1);
    assert_eq!(summary["objects"]["projects"], 2);
}

#[test]
fn a_family_the_api_stops_serving_is_said_once_with_the_way_to_skip_it() {
    let env = Env::new();
    // Every project's certificates answer 404: a feature withdrawn, or not on this plan.
    for project in ["proj_a", "proj_b"] {
        env.sim.add_fault(Fault {
            path_prefix: format!("/organization/projects/{project}/certificates"),
            kind: FaultKind::Status(404),
            times: None,
        });
    }
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 3);
    assert_eq!(json(&out)["scopes_failed"], 2);
    let stderr = text(&out.stderr);
    let hint = "project_certificates was not found here: what it belongs to was removed during \
                the read, or the Admin API does not serve project_certificates (a feature \
                withdrawn, or not offered to this organization); if every run says so, add \
                \"project_certificates\" to [collect] skip";
    assert!(stderr.contains(hint), "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains(" WARN ") && l.contains("HTTP 404"))
            .count(),
        1,
        "{stderr}"
    );
    // Taking the way out makes the runs complete again.
    env.config("[collect]\nskip = [\"project_certificates\"]");
    let skipped = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&skipped, 0);
    assert_eq!(json(&skipped)["status"], "complete");
}

#[test]
fn a_skipped_family_is_not_read_and_not_reported() {
    let env = Env::new();
    // Costs off: their first read pages through the month, later ones do not.
    env.config("[collect]\nskip = [\"org_invites\", \"org_groups\"]\n[spend]\nenabled = false");
    // Were the skipped lists read, these faults would fail the snapshot.
    for path in ["/organization/invites", "/organization/groups"] {
        env.sim.add_fault(Fault {
            path_prefix: path.into(),
            kind: FaultKind::Status(500),
            times: None,
        });
    }
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 0);
    let summary = json(&out);
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["scopes_failed"], 0);
    assert_eq!(summary["objects"]["org_invites"], 0);
    assert_eq!(summary["objects"]["org_group_users"], 0);
    assert_eq!(summary["objects"]["org_users"], 2);
    let skipped_requests = env.sim.requests();
    // Without the skip: the group list, its members and roles, and the invites are read
    // (and fail, with the faults still there).
    env.sim.clear_faults();
    env.config("[spend]\nenabled = false");
    let before = env.sim.requests();
    let full = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&full, 0);
    assert_eq!(
        env.sim.requests() - before,
        skipped_requests + 4,
        "invites, groups, one group's members and roles"
    );
}

#[test]
fn a_failed_user_list_keeps_the_users_and_resolves_none_of_their_findings() {
    let env = Env::new();
    std::fs::write(env.dir.path().join("members.toml"), MEMBER_RULE).expect("rule file");
    env.config("[rules]\npaths = [\"members.toml\"]");
    let first = env.run(&["audit", "--format", "json"]);
    let doc = json(&first);
    let open: Vec<&str> = member_findings(&doc, "open");
    assert_eq!(open, ["user-ada", "user-bob"], "{doc}");
    env.sim.add_fault(Fault {
        path_prefix: "/organization/users".into(),
        kind: FaultKind::Status(500),
        times: None,
    });
    let second = env.run(&["audit", "--format", "json"]);
    let stderr = text(&second.stderr);
    assert!(stderr.contains("/organization/users"), "{stderr}");
    let snapshots = env.column("SELECT status FROM snapshots ORDER BY id");
    assert_eq!(snapshots, ["complete", "partial"]);
    assert_eq!(
        env.column("SELECT id FROM org_users ORDER BY id"),
        ["user-ada", "user-bob"],
        "carried forward"
    );
    // The roles under the users were not read either, and are kept.
    assert_eq!(
        env.column("SELECT id FROM org_user_roles"),
        ["role_auditor"]
    );
    let doc = json(&second);
    assert_eq!(
        member_findings(&doc, "open"),
        ["user-ada", "user-bob"],
        "{doc}"
    );
    assert!(member_findings(&doc, "resolved").is_empty(), "{doc}");
}

fn member_findings<'a>(doc: &'a Value, status: &str) -> Vec<&'a str> {
    let mut ids: Vec<&str> = doc["findings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|f| f["rule_id"] == "org-member-seen" && f["status"] == status)
        .filter_map(|f| f["resource_id"].as_str())
        .collect();
    ids.sort_unstable();
    ids
}

/// The findings of `rule` in an audit's JSON report, by status.
fn rule_findings<'a>(doc: &'a Value, rule: &str) -> Vec<(&'a str, &'a str)> {
    doc["findings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|f| f["rule_id"] == rule)
        .filter_map(|f| Some((f["resource_id"].as_str()?, f["status"].as_str()?)))
        .collect()
}

#[test]
fn a_skipped_spend_limit_is_never_reported_missing() {
    // The organization has no hard spend limit: read, `org-no-spend-limit` reports it.
    let env = Env::new();
    env.config("[collect]\nskip = [\"org_spend_limit\"]");
    let skipped = env.run(&["audit", "--format", "json"]);
    assert_exit(&skipped, 0);
    let doc = json(&skipped);
    assert!(
        rule_findings(&doc, "org-no-spend-limit").is_empty(),
        "a skipped read is no news: {doc}"
    );
    env.config("");
    let read = env.run(&["audit", "--format", "json"]);
    assert_exit(&read, 0);
    let doc = json(&read);
    assert_eq!(
        rule_findings(&doc, "org-no-spend-limit"),
        [("organization", "open")],
        "{doc}"
    );
}

/// The paths of the requests in the order they left, from the client's trace log.
fn sent(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|line| line.split("GET path=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

/// Serves `org` (the simulator's JSON format) at 20 ms a request and takes a snapshot under
/// `config` with the client's sends traced; it must succeed. The environment is returned
/// for its database.
fn traced_snapshot_at_20ms(org: &Value, config: &str) -> (Env, Output) {
    let env = Env::serving(
        crate::support::orgs::load(&org.to_string(), now()),
        SimOptions {
            latency: std::time::Duration::from_millis(20),
            ..SimOptions::default()
        },
    );
    env.config(config);
    let output = env.run_logging(
        &["snapshot", "--format", "json"],
        Some("orgwarden::client=trace"),
    );
    assert_exit(&output, 0);
    (env, output)
}

/// An organization of 250 members (three pages of 100) and three projects.
fn many_members() -> Org {
    let users: Vec<Value> = (0..250)
        .map(|n| {
            serde_json::json!({
                "id": format!("user-m{n:03}"),
                "name": format!("Member {n}"),
                "email": format!("m{n}@acme.com"),
            })
        })
        .collect();
    let projects: Vec<Value> = (0..3)
        .map(|n| {
            serde_json::json!({
                "id": format!("proj_{n}"),
                "name": format!("Project {n}"),
                "users": [{"id": format!("user-m{n:03}"), "role": "owner"}],
            })
        })
        .collect();
    let org = serde_json::json!({"organization": "acme", "users": users, "projects": projects});
    crate::support::orgs::load(&org.to_string(), now())
}

/// With one request at a time, the order of the requests is the order of the line at the
/// gate: the organization's member list joins it before any project's reads. Its pages
/// are the crawl's longest chain, and a role read per member waits on the last one. (That
/// its later pages go ahead of the line is the gate's own test: here the task that read a
/// page asks for the next one before any other task wakes, so they would be in a row
/// either way.)
#[test]
fn the_member_list_joins_the_line_before_any_project_read() {
    let env = Env::serving(many_members(), SimOptions::default());
    env.config("concurrency = 1");
    let output = env.run_logging(
        &["snapshot", "--format", "json"],
        Some("orgwarden::client=trace"),
    );
    assert_exit(&output, 0);
    let stderr = text(&output.stderr);
    // The crawl's reads in the order they left; the costs and the audit log are read
    // beside the crawl, in an order of their own.
    let sent: Vec<&str> = sent(&stderr)
        .into_iter()
        .filter(|path| !path.starts_with("/organization/costs"))
        .filter(|path| !path.starts_with("/organization/audit_logs"))
        .collect();
    let first = |prefix: &str| {
        sent.iter()
            .position(|p| p.starts_with(prefix))
            .unwrap_or_else(|| panic!("no request for {prefix}: {sent:#?}"))
    };
    assert!(
        first("/organization/users") < first("/organization/projects/proj_"),
        "{sent:#?}"
    );
    let pages = sent
        .iter()
        .filter(|p| **p == "/organization/users" || p.starts_with("/organization/users?"))
        .count();
    assert_eq!(pages, 3, "{sent:#?}");
    assert_eq!(
        env.column("SELECT COUNT(*) FROM org_users"),
        vec!["250".to_owned()]
    );
}

/// The role reads under a page of members start while the list's later pages are still
/// being read, not after its last: with one slot for the list's chain of pages and one
/// for everything else, a member's roles are asked for before the list's last page.
#[test]
fn the_roles_under_a_page_of_members_are_read_before_the_list_ends() {
    let users: Vec<Value> = (0..300)
        .map(|n| serde_json::json!({"id": format!("user-m{n:03}"), "name": format!("M{n}")}))
        .collect();
    let org = serde_json::json!({"organization": "acme", "users": users, "projects": []});
    // Nothing else to read: the member list and the roles under it share two slots.
    let (_env, output) = traced_snapshot_at_20ms(
        &org,
        "concurrency = 2\n\
         [collect]\n\
         skip = [\"org_invites\", \"org_admin_api_keys\", \"org_groups\", \"org_roles\", \
         \"org_data_retention\", \"org_spend_limit\", \"org_spend_alerts\", \
         \"org_certificates\"]\n\
         [spend]\nenabled = false\n\
         [audit_log]\nenabled = false",
    );
    let stderr = text(&output.stderr);
    let sent = sent(&stderr);
    let last_page = sent
        .iter()
        .rposition(|p| p.starts_with("/organization/users?"))
        .unwrap_or_else(|| panic!("no second page: {sent:#?}"));
    let first_roles = sent
        .iter()
        .position(|p| p.starts_with("/organization/users/") && p.ends_with("/roles"))
        .unwrap_or_else(|| panic!("no role read: {sent:#?}"));
    assert!(first_roles < last_page, "{sent:#?}");
    // Every member's roles were read, once.
    let roles = sent
        .iter()
        .filter(|p| p.starts_with("/organization/users/") && p.ends_with("/roles"))
        .count();
    assert_eq!(roles, 300, "{sent:#?}");
    assert_eq!(
        json(&output)["status"],
        "complete",
        "{}",
        text(&output.stdout)
    );
}

/// The reads under the project list's first page, and the organization's own, start
/// while its later pages are still being read: 250 projects are three pages in a row, and
/// the third can only be asked for once the second has come back, a round trip after the
/// first page's projects could be read.
#[test]
fn the_reads_under_the_first_page_of_projects_start_before_the_project_list_ends() {
    let projects: Vec<Value> = (0..250)
        .map(|n| serde_json::json!({"id": format!("proj_{n:03}"), "name": format!("P{n}")}))
        .collect();
    let org = serde_json::json!({"organization": "acme", "projects": projects});
    // Room for every organization read and some project reads beside the list's pages;
    // one read a project (its users) keeps the crawl short.
    let (env, output) = traced_snapshot_at_20ms(
        &org,
        "concurrency = 16\n\
         [collect]\n\
         skip = [\"project_service_accounts\", \"project_api_keys\", \"project_rate_limits\", \
         \"project_model_permissions\", \"project_hosted_tool_permissions\", \
         \"project_groups\", \"project_roles\", \"project_data_retention\", \
         \"project_spend_alerts\", \"project_certificates\", \"project_spend_limits\", \
         \"org_admin_api_keys\"]\n\
         [spend]\nenabled = false\n\
         [audit_log]\nenabled = false",
    );
    let stderr = text(&output.stderr);
    let sent = sent(&stderr);
    let pages: Vec<usize> = sent
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            **p == "/organization/projects" || p.starts_with("/organization/projects?")
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(pages.len(), 3, "{sent:#?}");
    let first = |prefix: &str| {
        sent.iter()
            .position(|p| p.starts_with(prefix))
            .unwrap_or_else(|| panic!("no request for {prefix}: {sent:#?}"))
    };
    assert!(
        first("/organization/projects/proj_") < pages[2],
        "{sent:#?}"
    );
    assert!(first("/organization/users") < pages[2], "{sent:#?}");
    // Every project was read once, and the snapshot holds the whole list.
    let user_lists = sent
        .iter()
        .filter(|p| p.starts_with("/organization/projects/proj_") && p.ends_with("/users"))
        .count();
    assert_eq!(user_lists, 250, "{sent:#?}");
    assert_eq!(
        json(&output)["status"],
        "complete",
        "{}",
        text(&output.stdout)
    );
    assert_eq!(
        env.column("SELECT COUNT(*) FROM projects"),
        vec!["250".to_owned()]
    );
}

#[test]
fn a_project_key_list_not_read_leaves_no_project_key_among_the_admin_keys() {
    // The live admin-key list carries the project keys too; they are told apart by the
    // project-key lists. One of those failing must not make its keys admin keys for the
    // run.
    let env = Env::new();
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_b/api_keys".into(),
        kind: FaultKind::Status(500),
        times: None,
    });
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 3);
    let admin = env.column("SELECT id FROM org_admin_api_keys");
    assert!(!admin.contains(&"key_b1".to_owned()), "{admin:?}");

    // The admin keys last read stand (none here: the first snapshot), and the run says why.
    assert_eq!(admin, Vec::<String>::new());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot be told from admin keys"),
        "{stderr}"
    );
}
