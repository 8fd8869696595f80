//! End to end: the simulated organization changes between audits (a violation fixed, one
//! added, a key deleted and restored, a scope that cannot be read) and the findings move
//! through their lifecycle — checked through the real binary and the stored events.
//!
//! Snapshots are written from the simulator's `scope_results` (the same rendering the
//! simulator's HTTP handlers serve); the audits are the binary's `audit --offline`.

use std::path::Path;
use std::process::Command;

use chrono::Utc;
use orgwarden::findings::{self, EventKind, fingerprint};
use orgwarden::model::{
    CrawlStats, Family, ProjectId, RuleId, Scope, ScopeError, ScopeOutcome, ScopeResult,
    SnapshotStatus,
};
use orgwarden::sim::Org;
use orgwarden::store::Store;
use serde_json::Value;

/// Stores one snapshot of `org`; a scope equal to `fail` is recorded as a failed read.
fn snapshot(db: &Path, org: &Org, fail: Option<&Scope>) {
    let mut store = Store::open(db).unwrap();
    let now = Utc::now();
    let mut writer = store.begin_snapshot(&org.organization, now).unwrap();
    for result in org.scope_results() {
        if Some(&result.scope) == fail {
            writer
                .apply(ScopeResult {
                    scope: result.scope,
                    outcome: ScopeOutcome::Failed(ScopeError {
                        status: Some(500),
                        message: "GET /organization/projects/proj_payments/users: 500".into(),
                    }),
                })
                .unwrap();
        } else {
            writer.apply(result).unwrap();
        }
    }
    writer
        .finish(&CrawlStats::default(), now, SnapshotStatus::Complete)
        .unwrap();
}

/// Runs `audit --offline --format json` and returns its exit code and document.
fn audit(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_orgwarden"))
        .args(["--db", "audit.db", "audit", "--offline", "--format", "json"])
        .args(extra)
        .current_dir(dir)
        .env_remove("ORGWARDEN_CONFIG")
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    (out.status.code().unwrap(), doc)
}

fn status_of(doc: &Value, rule: &str, resource: &str) -> Option<String> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == rule && f["resource_id"] == resource)
        .map(|f| f["status"].as_str().unwrap().to_owned())
}

fn event_kinds(db: &Path, rule: &str, resource: &str, project: &str) -> Vec<EventKind> {
    let store = Store::open_read_only(db).unwrap();
    let fp = fingerprint(
        &RuleId::from(rule),
        resource,
        Some(&ProjectId::from(project)),
    );
    findings::events(store.conn(), &fp)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.kind)
        .collect()
}

#[test]
fn findings_resolve_open_and_reopen_as_the_organization_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut org = Org::demo(Utc::now().timestamp());

    snapshot(&db, &org, None);
    let (code, doc) = audit(dir.path(), &[]);
    assert_eq!(code, 0);
    assert_eq!(doc["snapshot"]["status"], "complete");
    assert_eq!(
        status_of(&doc, "project-retention-not-zdr", "proj_support").as_deref(),
        Some("open")
    );
    assert_eq!(
        status_of(&doc, "api-key-stale", "key_pay_ada_notebook").as_deref(),
        Some("open")
    );
    assert_eq!(
        status_of(&doc, "service-account-owner", "svc_acct_data_etl"),
        None
    );
    let (code, _) = audit(dir.path(), &["--fail-on", "high"]);
    assert_eq!(code, 1, "high findings are open");

    // Fix a violation, add one, delete a key.
    let payments = ProjectId::from("proj_payments");
    let removed = {
        let p = org.project_mut(&payments).unwrap();
        let i = p
            .api_keys
            .iter()
            .position(|k| k.id.as_str() == "key_pay_ada_notebook")
            .unwrap();
        p.api_keys.remove(i)
    };
    org.project_mut(&ProjectId::from("proj_support"))
        .unwrap()
        .data_retention = "zero_data_retention".into();
    org.project_mut(&ProjectId::from("proj_data"))
        .unwrap()
        .service_accounts
        .iter_mut()
        .find(|s| s.id.as_str() == "svc_acct_data_etl")
        .unwrap()
        .role = "owner".into();
    snapshot(&db, &org, None);
    let (code, doc) = audit(dir.path(), &[]);
    assert_eq!(code, 0);
    assert_eq!(
        status_of(&doc, "project-retention-not-zdr", "proj_support").as_deref(),
        Some("resolved")
    );
    assert_eq!(
        status_of(&doc, "api-key-stale", "key_pay_ada_notebook").as_deref(),
        Some("resolved")
    );
    assert_eq!(
        status_of(&doc, "service-account-owner", "svc_acct_data_etl").as_deref(),
        Some("open")
    );

    // The key comes back: its finding reopens.
    org.project_mut(&payments).unwrap().api_keys.push(removed);
    snapshot(&db, &org, None);
    let (_, doc) = audit(dir.path(), &[]);
    assert_eq!(
        status_of(&doc, "api-key-stale", "key_pay_ada_notebook").as_deref(),
        Some("open")
    );
    assert_eq!(
        status_of(&doc, "project-retention-not-zdr", "proj_support"),
        None,
        "a finding resolved in an earlier run is not reported again"
    );
    assert_eq!(
        event_kinds(
            &db,
            "api-key-stale",
            "key_pay_ada_notebook",
            "proj_payments"
        ),
        [EventKind::Opened, EventKind::Resolved, EventKind::Reopened]
    );
    assert_eq!(
        event_kinds(
            &db,
            "project-retention-not-zdr",
            "proj_support",
            "proj_support"
        ),
        [EventKind::Opened, EventKind::Resolved]
    );

    // The key is deleted again and the key list is read, but another scope of the same
    // project (its users) cannot be read: the project was not read completely, so the
    // finding keeps its status, and the audit says it cannot vouch (exit 3 beats 1).
    let i = org
        .project(&payments)
        .unwrap()
        .api_keys
        .iter()
        .position(|k| k.id.as_str() == "key_pay_ada_notebook")
        .unwrap();
    org.project_mut(&payments).unwrap().api_keys.remove(i);
    let users_scope = Scope {
        family: Family::ProjectUsers,
        project_id: Some(payments.clone()),
        parent_id: None,
    };
    snapshot(&db, &org, Some(&users_scope));
    let (code, doc) = audit(dir.path(), &["--fail-on", "high"]);
    assert_eq!(code, 3);
    assert_eq!(doc["snapshot"]["status"], "partial");
    assert_eq!(
        status_of(&doc, "api-key-stale", "key_pay_ada_notebook").as_deref(),
        Some("open")
    );
    assert_eq!(
        event_kinds(
            &db,
            "api-key-stale",
            "key_pay_ada_notebook",
            "proj_payments"
        )
        .len(),
        3,
        "no transition from a partial read"
    );

    // Read completely again: now it resolves.
    snapshot(&db, &org, None);
    let (code, doc) = audit(dir.path(), &[]);
    assert_eq!(code, 0);
    assert_eq!(
        status_of(&doc, "api-key-stale", "key_pay_ada_notebook").as_deref(),
        Some("resolved")
    );
}

#[test]
fn exemptions_hold_until_they_expire_and_then_reopen_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let org = Org::demo(Utc::now().timestamp());
    snapshot(&db, &org, None);
    let exemption = |expires: &str| {
        format!(
            "[[exemption]]\nrule = \"project-no-spend-alert\"\nresource = \"proj_sup*\"\nreason = \"support has a hard cap\"\nowner = \"finops@acme-robotics.com\"\nexpires = \"{expires}\"\n"
        )
    };
    let future = (Utc::now() + chrono::Duration::days(60))
        .format("%Y-%m-%d")
        .to_string();
    std::fs::write(dir.path().join("exempt.toml"), exemption(&future)).unwrap();
    let (code, doc) = audit(
        dir.path(),
        &["--config", "exempt.toml", "--fail-on", "medium"],
    );
    assert_eq!(
        status_of(&doc, "project-no-spend-alert", "proj_support").as_deref(),
        Some("exempt")
    );
    assert_eq!(code, 1, "other medium findings are still open");

    let past = (Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    std::fs::write(dir.path().join("expired.toml"), exemption(&past)).unwrap();
    let (_, doc) = audit(dir.path(), &["--config", "expired.toml"]);
    assert_eq!(
        status_of(&doc, "project-no-spend-alert", "proj_support").as_deref(),
        Some("open")
    );
    let store = Store::open_read_only(&db).unwrap();
    let fp = fingerprint(
        &RuleId::from("project-no-spend-alert"),
        "proj_support",
        Some(&ProjectId::from("proj_support")),
    );
    let events = findings::events(store.conn(), &fp).unwrap();
    let last = &events.last().unwrap().1;
    assert_eq!(last.kind, EventKind::ExemptionExpired);
    assert_eq!(
        last.reason,
        format!("exemption expired on {past} (owner finops@acme-robotics.com)")
    );
}

#[test]
fn findings_command_filters_by_status_severity_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    snapshot(&db, &Org::demo(Utc::now().timestamp()), None);
    audit(dir.path(), &[]);
    let run = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_orgwarden"))
            .args(["--db", "audit.db", "findings", "--format", "json"])
            .args(args)
            .current_dir(dir.path())
            .env_remove("ORGWARDEN_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let high = run(&["--severity", "high"]);
    assert!(!high.as_array().unwrap().is_empty());
    assert!(
        high.as_array()
            .unwrap()
            .iter()
            .all(|f| f["severity"] == "high")
    );
    let stale = run(&["--rule", "api-key-stale", "--status", "all"]);
    assert!(
        stale
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["rule_id"] == "api-key-stale")
    );
    assert_eq!(run(&["--status", "resolved"]).as_array().unwrap().len(), 0);
}

#[test]
fn offline_audit_without_a_snapshot_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orgwarden"))
        .args(["--db", "none.db", "audit", "--offline"])
        .current_dir(dir.path())
        .env_remove("ORGWARDEN_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot stored"));
}
