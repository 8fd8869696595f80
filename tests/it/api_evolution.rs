//! The Admin API as it may answer after orgwarden ships: values its enums did not list,
//! fields gone null, families it stops serving. A run must go on, judge what it can, and
//! say what it could not judge.

use std::path::PathBuf;
use std::process::Output;

use orgwarden::model::Family;
use orgwarden::sim::{Fault, FaultKind, Org, SimHandle, SimOptions, start_background};
use serde_json::Value;

const KEY: &str = "sk-admin-evolution-test";

/// `proj_a` with an owner, 150 USD spent today and a spend alert that notifies nobody, `proj_b` with an owner,
/// no alert and a key never used, a stale invitation, a hard spend limit reached, one
/// failed login in the audit log.
const ORG: &str = r#"{
  "organization": "acme",
  "users": [{"id": "user-ada", "name": "Ada", "email": "ada@acme.com", "role": "owner"}],
  "projects": [
    {"id": "proj_a", "name": "Alpha", "created_at": "-400d",
     "users": [{"id": "user-ada", "role": "owner"}],
     "costs": [{"day": "now", "amount": 150}],
     "spend_alerts": [{"id": "alert_1", "threshold_amount": 10000, "currency": "USD",
                       "interval": "month",
                       "notification_channel": {"type": "email", "recipients": []}}]},
    {"id": "proj_b", "name": "Beta", "created_at": "-200d",
     "users": [{"id": "user-ada", "role": "owner"}],
     "api_keys": [{"id": "key_b1", "name": "prod", "created_at": "-150d", "last_used_at": null,
                   "owner": {"type": "user", "id": "user-ada"}}]}
  ],
  "spend_limit": {"threshold_amount": 500000, "enforcement": "enforcing"},
  "invites": [{"id": "invite-1", "email": "new@acme.com", "created_at": "-30d", "expires_at": "+30d"}],
  "audit_log": {"enabled": true, "events": [
    {"type": "login.failed", "effective_at": "-2h",
     "actor": {"type": "session", "session": {"user": {"id": "user-ada", "email": "ada@acme.com"},
                                              "ip_address": "203.0.113.9"}},
     "login.failed": {"error_code": "invalid_password", "error_message": "Invalid password"}}
  ]}
}"#;

struct Env {
    sim: SimHandle,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let org = Org::from_json_str(ORG, chrono::Utc::now().timestamp()).expect("org loads");
        Env {
            sim: start_background(org, SimOptions::default()).expect("simulator"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("orgwarden.db")
    }

    fn run(&self, args: &[&str]) -> Output {
        crate::support::orgwarden()
            .current_dir(self.dir.path())
            .env("OPENAI_ADMIN_KEY", KEY)
            .arg("--db")
            .arg(self.db())
            .arg("--base-url")
            .arg(self.sim.base_url())
            .args(args)
            .output()
            .expect("run orgwarden")
    }

    fn set_field(&self, path_prefix: &str, field: &str, json: &str) {
        self.sim.add_fault(Fault {
            path_prefix: path_prefix.into(),
            kind: FaultKind::SetField {
                field: field.into(),
                json: json.into(),
            },
            times: None,
        });
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `(rule_id, resource_id)` of every open finding of an `audit --format json`.
fn findings(out: &Output) -> Vec<(String, String)> {
    let doc: Value = serde_json::from_slice(&out.stdout).expect("audit prints JSON");
    let mut found: Vec<(String, String)> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("rule_id"), s("resource_id"))
        })
        .collect();
    found.sort();
    found
}

const UNKNOWN: &str = "none orgwarden knows";

#[test]
fn an_audit_warns_once_of_each_enum_value_the_api_did_not_document() {
    // What the simulator serves today is all documented: not a word.
    let today = Env::new().run(&["audit", "--format", "json"]);
    assert!(
        !text(&today.stderr).contains(UNKNOWN),
        "{}",
        text(&today.stderr)
    );

    // Tomorrow's API: a project status and an event type nobody had heard of.
    let env = Env::new();
    env.set_field("/organization/projects", "status", r#""suspended""#);
    env.set_field("/organization/audit_logs", "type", r#""login.failure""#);
    let out = env.run(&["audit", "--format", "json"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "projects.status: 2 value(s) from the API are none orgwarden knows, such as \
             'suspended' (it knows active, archived); rules written for the known values may \
             pass over or misjudge those objects"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "audit_log_events.type: 1 value(s) from the API are none orgwarden knows, such as \
             'login.failure';"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.matches(UNKNOWN).count(), 2, "{stderr}");

    // The projects are still so: said again. The event was said when it was first stored.
    let again = text(&env.run(&["audit", "--format", "json"]).stderr);
    assert!(again.contains("projects.status: 2 value(s)"), "{again}");
    assert!(!again.contains("audit_log_events.type"), "{again}");
    // An offline audit judges what is stored, and says nothing more of the crawl.
    let offline = env.run(&["audit", "--offline", "--format", "json"]);
    assert!(!text(&offline.stderr).contains(UNKNOWN));
}

#[test]
fn a_project_with_no_status_or_one_the_api_added_later_is_judged_like_an_active_one() {
    let active = findings(&Env::new().run(&["audit", "--format", "json"]));
    assert!(
        active.contains(&("project-no-spend-alert".into(), "proj_b".into())),
        "{active:?}"
    );
    // The spec lets `status` be null, and a later API may add one (`suspended`): such a
    // project still has its members, keys and spending, and only `archived` retires it.
    for status in ["null", r#""suspended""#] {
        let env = Env::new();
        env.set_field("/organization/projects", "status", status);
        let out = env.run(&["audit", "--format", "json"]);
        assert_eq!(
            findings(&out),
            active,
            "status {status}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_finding_reads_well_when_the_api_leaves_a_field_of_its_message_out() {
    for (path, field, expected) in [
        (
            "/organization/invites",
            "email",
            "Invitation for invite-1 (reader) has been pending for more than 14 days",
        ),
        (
            "/organization/invites",
            "role",
            "Invitation for new@acme.com has been pending for more than 14 days",
        ),
        (
            "/organization/projects/proj_b/api_keys",
            "redacted_value",
            r#"API key "prod" was never used and is older than 90 days"#,
        ),
        (
            "/organization/projects/proj_a/spend_alerts",
            "threshold_amount",
            "Spend alert alert_1 (threshold ? USD per month) has no recipients",
        ),
        (
            "/organization/spend_limit",
            "threshold_amount",
            "The organization's hard spend limit (? USD per month) is enforcing: the \
             organization's requests are refused",
        ),
    ] {
        let env = Env::new();
        env.set_field(path, field, "null");
        let out = env.run(&["audit", "--format", "json"]);
        let doc: Value = serde_json::from_slice(&out.stdout).expect("audit prints JSON");
        let messages: Vec<&str> = doc["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter_map(|f| f["message"].as_str())
            .collect();
        assert!(messages.contains(&expected), "{field} null: {messages:#?}");
    }
}

#[test]
fn a_spend_alert_of_an_interval_the_api_added_later_still_counts_as_an_alert() {
    let env = Env::new();
    env.set_field(
        "/organization/projects/proj_a/spend_alerts",
        "interval",
        r#""week""#,
    );
    let out = env.run(&["audit", "--format", "json"]);
    let found = findings(&out);
    // A weekly alert does report a runaway bill: the project is not "without a spend alert".
    assert!(
        !found.contains(&("project-spend-no-cap".into(), "proj_a".into())),
        "{found:?}"
    );
    assert!(
        text(&out.stderr).contains("project_spend_alerts.interval: 1 value(s)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_audit_warns_of_a_documented_field_the_api_stopped_sending() {
    let env = Env::new();
    // `last_used_at` renamed away: every key would read as never used.
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_b/api_keys".into(),
        kind: FaultKind::DropField("last_used_at".into()),
        times: None,
    });
    let out = env.run(&["audit", "--format", "json"]);
    let stderr = text(&out.stderr);
    let warning = "project_api_keys.last_used_at: 1 of 1 object(s) from the API lack this \
                   field, which the API documents as always sent; rules that read it may pass \
                   over or misjudge those objects, and no finding of a rule reading this view \
                   is resolved while it lasts";
    assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
    // A JSON null is the API saying "never": no warning for it.
    let today = Env::new().run(&["audit", "--format", "json"]);
    assert!(!text(&today.stderr).contains("lack this field"));
}

#[test]
fn a_finding_does_not_resolve_because_the_field_it_was_judged_on_stopped_coming() {
    let env = Env::new();
    let status = || -> String {
        rusqlite::Connection::open(env.db())
            .expect("database opens")
            .query_row(
                "SELECT status FROM finding WHERE rule_id = 'spend-limit-enforcing'",
                [],
                |row| row.get(0),
            )
            .expect("the finding")
    };
    env.run(&["audit", "--format", "json"]);
    assert_eq!(status(), "open");
    // The limit's `enforcement` is gone: nothing says the limit stopped enforcing.
    env.sim.add_fault(Fault {
        path_prefix: "/organization/spend_limit".into(),
        kind: FaultKind::DropField("enforcement".into()),
        times: None,
    });
    let out = env.run(&["audit", "--format", "json"]);
    assert!(
        text(&out.stderr).contains("org_spend_limit.enforcement: 1 of 1 object(s)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(status(), "open");
    // An offline audit of that snapshot holds the finding too, and says why.
    let offline = env.run(&["audit", "--offline", "--format", "json"]);
    assert!(
        text(&offline.stderr).contains("org_spend_limit.enforcement: 1 of 1 object(s)"),
        "{}",
        text(&offline.stderr)
    );
    assert_eq!(status(), "open");
    // Sent again, and saying the limit no longer enforces: now it resolves.
    env.sim.clear_faults();
    env.set_field(
        "/organization/spend_limit",
        "enforcement",
        r#"{"status": "inactive"}"#,
    );
    env.run(&["audit", "--format", "json"]);
    assert_eq!(status(), "resolved");
}

#[test]
fn a_project_lacking_a_documented_field_holds_only_the_rules_that_read_projects() {
    let env = Env::new();
    let status = |rule: &str| -> String {
        rusqlite::Connection::open(env.db())
            .expect("database opens")
            .query_row(
                "SELECT status FROM finding WHERE rule_id = ?1",
                [rule],
                |row| row.get(0),
            )
            .expect("the finding")
    };
    env.run(&["audit", "--format", "json"]);
    assert_eq!(status("invite-pending-stale"), "open");
    // The projects lose `created_at`, and the invitation is accepted.
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects".into(),
        kind: FaultKind::DropField("created_at".into()),
        times: None,
    });
    env.set_field("/organization/invites", "status", r#""accepted""#);
    let out = env.run(&["audit", "--format", "json"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("projects.created_at: 2 of 2 object(s)"),
        "{stderr}"
    );
    // Neither the archived-project filter every rule runs under nor the invitations'
    // own `projects` field is a read of the projects: the finding resolves.
    assert_eq!(status("invite-pending-stale"), "resolved", "{stderr}");
}

/// The reference's schema of the objects `family` reads: the items of a list, else the
/// answer itself (a project's retention, spend limit, hosted tools).
fn object_schema(spec: &Value, family: Family) -> &Value {
    // Path parameters are named differently here and there (`{parent_id}`, `{user_id}`).
    let shape = |path: &str| -> String {
        path.split('/')
            .map(|part| if part.starts_with('{') { "{}" } else { part })
            .collect::<Vec<_>>()
            .join("/")
    };
    let want = shape(family.path_template());
    let (_, operation) = spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .find(|(path, _)| shape(path) == want)
        .unwrap_or_else(|| panic!("the reference has no path {want}"));
    let answer = resolve(
        spec,
        &operation["get"]["responses"]["200"]["content"]["application/json"]["schema"],
    );
    match answer["properties"]["data"].get("items") {
        Some(items) => resolve(spec, items),
        None => answer,
    }
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or_default();
            resolve(spec, &spec["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Every value the reference gives the field at `path` (`$.owner.type`): its `enum`, in
/// any of its alternatives; where it has none, the values its description names in
/// backquotes (`` `active` or `archived` ``, ``Always `user` ``).
fn documented_values(spec: &Value, object: &Value, path: &str) -> Vec<String> {
    let mut schemas = vec![object];
    for field in path.trim_start_matches("$.").split('.') {
        schemas = schemas
            .into_iter()
            .flat_map(|s| alternatives(spec, s))
            .filter_map(|s| s["properties"].get(field))
            .collect();
    }
    let leaves: Vec<&Value> = schemas
        .into_iter()
        .flat_map(|s| alternatives(spec, s))
        .collect();
    let mut values: Vec<String> = leaves
        .iter()
        .filter_map(|s| s["enum"].as_array())
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if values.is_empty() {
        for description in leaves.iter().filter_map(|s| s["description"].as_str()) {
            values.extend(description.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    values
}

/// A schema with its `$ref` followed and its `anyOf`/`oneOf`/`allOf` alternatives.
fn alternatives<'a>(spec: &'a Value, schema: &'a Value) -> Vec<&'a Value> {
    let schema = resolve(spec, schema);
    let mut all = vec![schema];
    for key in ["anyOf", "oneOf", "allOf"] {
        for alt in schema[key].as_array().into_iter().flatten() {
            all.extend(alternatives(spec, alt));
        }
    }
    all
}

#[test]
fn the_field_catalogues_match_what_the_reference_documents() {
    let spec: Value = serde_yaml::from_str(include_str!("reference/openai-admin-openapi.yaml"))
        .expect("the reference is valid YAML");
    let mut wrong = Vec::new();
    for family in Family::ALL {
        let object = object_schema(&spec, family);
        // A field said required that the API need not send would warn on every run and
        // keep the findings of every rule reading the view from resolving.
        let required: Vec<&str> = object["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for field in family.required_fields() {
            if !required.contains(field) {
                wrong.push(format!("{}: `{field}` is not required", family.view()));
            }
        }
        // A documented value missing from the known ones would warn on every run.
        for &(column, known) in family.enum_columns() {
            let documented: Vec<String> = if family == Family::ProjectHostedToolPermissions {
                // One row per tool: the tools are the object's fields.
                required.iter().map(|&t| t.to_owned()).collect()
            } else {
                let path = family
                    .columns()
                    .iter()
                    .find(|c| c.name == column)
                    .unwrap_or_else(|| panic!("{}.{column} is no column", family.view()))
                    .path;
                documented_values(&spec, object, path)
            };
            if documented.is_empty() {
                wrong.push(format!(
                    "{}.{column}: the reference documents no values",
                    family.view()
                ));
            }
            for value in documented {
                if !known.contains(&value.as_str()) {
                    wrong.push(format!("{}.{column}: `{value}` is unknown", family.view()));
                }
            }
        }
    }
    let actor_types = documented_values(
        &spec,
        &spec["components"]["schemas"]["AuditLogActor"],
        "$.type",
    );
    assert_eq!(actor_types, orgwarden::audit_log::ACTOR_TYPES);
    assert_eq!(wrong, Vec::<String>::new());
}
