//! End to end: rules over the audit log. `orgwarden audit --notify` reads the simulator's
//! audit log, an event finding opens and is announced once, a smaller window resolves it;
//! with audit logging off only `audit-logging-disabled` opens and no event finding
//! resolves; writes made through the simulator's API are judged from the events they
//! record.

use std::path::Path;

use chrono::Utc;
use orgwarden::sim::{Org, SimOptions, start_background};
use serde_json::Value;

const KEY: &str = "sk-admin-event-rules-0123456789";

const CONFIG: &str = "[openai]\norganization = \"acme\"\n[notify.email]\ntransport = \"file\"\ndir = \"mail\"\nfrom = \"orgwarden@acme.com\"\nto = [\"security@acme.com\"]\n";

/// The rules of `rules/audit-log.toml` that read events.
const EVENT_RULES: [&str; 5] = [
    "admin-key-created",
    "org-owner-granted",
    "login-failures",
    "scim-disabled",
    "ip-allowlist-changed",
];

/// An organization whose log holds five failed logins of Ada two hours ago and an admin
/// key created an hour ago, with audit logging `enabled` or not.
fn org(enabled: bool) -> Org {
    let failure = r#"{"type": "login.failed", "effective_at": "-2h",
        "actor": {"type": "session", "session": {"user": {"id": "user-ada", "email": "ada@acme.com"},
                  "ip_address": "203.0.113.5"}},
        "login.failed": {"error_code": "invalid_password", "error_message": "Wrong password."}}"#;
    let failures = [failure; 5].join(",");
    let json = format!(
        r#"{{"organization": "acme",
        "users": [{{"id": "user-ada", "name": "Ada", "email": "ada@acme.com", "role": "owner"}}],
        "projects": [],
        "audit_log": {{"enabled": {enabled}, "events": [{failures},
          {{"type": "api_key.created", "effective_at": "-1h",
            "actor": {{"type": "session", "session": {{"user": {{"id": "user-ada", "email": "ada@acme.com"}},
                      "ip_address": "198.51.100.7"}}}},
            "api_key.created": {{"id": "key_admin_new", "data": {{"scopes": ["api.management.read"]}}}}}}
        ]}}}}"#
    );
    Org::from_json_str(&json, Utc::now().timestamp()).unwrap()
}

/// Runs `audit --notify --format json` with `config` and returns its document.
fn audit(dir: &Path, base_url: &str, config: &str) -> Value {
    std::fs::write(dir.join("orgwarden.toml"), config).unwrap();
    let out = crate::support::orgwarden()
        .args(["--db", "audit.db", "--base-url", base_url])
        .args(["audit", "--notify", "--format", "json"])
        .current_dir(dir)
        .env("OPENAI_ADMIN_KEY", KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

fn finding<'a>(doc: &'a Value, rule: &str) -> Option<&'a Value> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == rule)
}

fn status(doc: &Value, rule: &str) -> Option<String> {
    finding(doc, rule).map(|f| f["status"].as_str().unwrap().to_owned())
}

fn mails(dir: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("mail"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn an_event_finding_is_announced_once_and_resolves_when_its_window_holds_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_background(org(true), SimOptions::default()).unwrap();
    let url = sim.base_url();

    let doc = audit(dir.path(), &url, CONFIG);
    assert_eq!(doc["snapshot"]["status"], "complete");
    let failures = finding(&doc, "login-failures").expect("login-failures opened");
    assert_eq!(failures["status"], "open");
    assert_eq!(failures["resource_id"], "user-ada");
    let message = failures["message"].as_str().unwrap();
    assert!(
        message.starts_with("5 failed logins for ada@acme.com"),
        "{message}"
    );
    assert!(message.contains("from 203.0.113.5"), "{message}");
    let key = finding(&doc, "admin-key-created").expect("admin-key-created opened");
    assert_eq!(key["resource_id"], "key_admin_new");
    let message = key["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "Admin API key key_admin_new was created by ada@acme.com from 198.51.100.7 at "
        ),
        "{message}"
    );
    assert_eq!(status(&doc, "audit-logging-disabled"), None);
    let sent = mails(dir.path());
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("login-failures"), "{}", sent[0]);

    // The next run reads the log again (from its watermark): the events are still in the
    // window, the findings stay open and nothing is announced again.
    let doc = audit(dir.path(), &url, CONFIG);
    assert_eq!(status(&doc, "login-failures").as_deref(), Some("open"));
    assert_eq!(mails(dir.path()).len(), 1, "announced once");

    // A window that no longer reaches the events: a complete read finds none, so both
    // resolve, and the resolution is announced.
    let narrow = format!(
        "{CONFIG}[rules.params.login-failures]\nwindow = \"1h\"\n[rules.params.admin-key-created]\nwindow = \"30m\"\n"
    );
    let doc = audit(dir.path(), &url, &narrow);
    assert_eq!(status(&doc, "login-failures").as_deref(), Some("resolved"));
    assert_eq!(
        status(&doc, "admin-key-created").as_deref(),
        Some("resolved")
    );
    assert_eq!(mails(dir.path()).len(), 2);
    let doc = audit(dir.path(), &url, &narrow);
    assert_eq!(
        status(&doc, "login-failures"),
        None,
        "a resolved finding is not reported again"
    );
}

#[test]
fn with_audit_logging_off_only_audit_logging_disabled_opens_and_no_event_finding_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_background(org(true), SimOptions::default()).unwrap();
    let url = sim.base_url();
    let doc = audit(dir.path(), &url, CONFIG);
    assert_eq!(status(&doc, "login-failures").as_deref(), Some("open"));

    // Logging is turned off, and the window would no longer reach the failures: the log
    // cannot be read, so nothing proves the window is empty — the finding stays open.
    sim.with_org(|org| org.audit_log.enabled = false);
    let narrow = format!("{CONFIG}[rules.params.login-failures]\nwindow = \"1h\"\n");
    let doc = audit(dir.path(), &url, &narrow);
    assert_eq!(
        doc["snapshot"]["status"], "complete",
        "logging off is a fact about the organization, not a failed read"
    );
    assert_eq!(status(&doc, "login-failures").as_deref(), Some("open"));
    assert_eq!(status(&doc, "admin-key-created").as_deref(), Some("open"));
    let disabled = finding(&doc, "audit-logging-disabled").expect("audit-logging-disabled");
    assert_eq!(disabled["status"], "open");
    assert_eq!(disabled["resource_id"], "organization");

    // An organization that never had logging on: of the audit-log rules only
    // `audit-logging-disabled` opens.
    let dir = tempfile::tempdir().unwrap();
    let sim = start_background(org(false), SimOptions::default()).unwrap();
    let doc = audit(dir.path(), &sim.base_url(), CONFIG);
    assert_eq!(
        status(&doc, "audit-logging-disabled").as_deref(),
        Some("open")
    );
    for rule in EVENT_RULES {
        assert_eq!(status(&doc, rule), None, "{rule}");
    }
}

#[test]
fn writes_through_the_api_are_judged_from_the_events_they_record() {
    let dir = tempfile::tempdir().unwrap();
    let json = r#"{"organization": "acme",
        "users": [{"id": "user-ada", "name": "Ada", "email": "ada@acme.com", "role": "owner"},
                  {"id": "user-bob", "name": "Bob", "email": "bob@acme.com", "role": "reader"}],
        "projects": []}"#;
    let org = Org::from_json_str(json, Utc::now().timestamp()).unwrap();
    let sim = start_background(org, SimOptions::default()).unwrap();
    let url = sim.base_url();
    let api = crate::support::sim_api::Api::new(&url, Some(KEY));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let promoted = runtime.block_on(api.raw(
        "POST",
        "/organization/users/user-bob",
        Some(r#"{"role": "owner"}"#),
    ));
    assert_eq!(promoted.status, 200, "{}", promoted.text);
    let made = runtime.block_on(api.raw(
        "POST",
        "/organization/admin_api_keys",
        Some(r#"{"name": "terraform"}"#),
    ));
    assert_eq!(made.status, 200, "{}", made.text);
    let key_id = made.json["id"].as_str().unwrap().to_owned();

    let doc = audit(dir.path(), &url, CONFIG);
    let owner = finding(&doc, "org-owner-granted").expect("org-owner-granted");
    assert_eq!(owner["resource_id"], "user-bob");
    let message = owner["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "User bob@acme.com was given the organization owner role by ada@acme.com with key key_orgwarden_sim_admin at "
        ),
        "{message}"
    );
    let key = finding(&doc, "admin-key-created").expect("admin-key-created");
    assert_eq!(key["resource_id"].as_str(), Some(key_id.as_str()));
}
