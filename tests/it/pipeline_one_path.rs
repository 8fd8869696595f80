//! `demo` and `audit` run the same audit pipeline: on the same organization, with the
//! same settings, they record the same findings (the daemon's job calls that pipeline too,
//! see `daemon_e2e`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use chrono::Utc;
use orgwarden::sim::{Org, SimOptions, start_background};
use serde_json::Value;

/// Each finding as (rule, resource, project, status, severity, fingerprint).
type Seen = BTreeSet<(String, String, String, String, String, String)>;

fn findings_of(stdout: &[u8], stderr: &[u8]) -> Seen {
    let doc: Value = serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(stderr)));
    let text = |f: &Value, key: &str| f[key].as_str().unwrap_or_default().to_owned();
    doc["findings"]
        .as_array()
        .expect("an audit's JSON lists its findings")
        .iter()
        .map(|f| {
            (
                text(f, "rule_id"),
                text(f, "resource_id"),
                text(f, "project_id"),
                text(f, "status"),
                text(f, "severity"),
                text(f, "fingerprint"),
            )
        })
        .collect()
}

fn orgwarden(dir: &Path) -> Command {
    let mut cmd = crate::support::orgwarden();
    cmd.current_dir(dir)
        .env("OPENAI_ADMIN_KEY", "sk-admin-one-path-0123456789");
    cmd
}

#[test]
fn demo_and_audit_record_the_same_findings_on_the_same_organization() {
    let org = Org::demo_today(Utc::now().timestamp());
    let domains: Vec<String> = org
        .email_domains
        .iter()
        .map(|d| format!("\"{d}\""))
        .collect();
    let config = format!(
        "[openai]\norganization = \"{}\"\n\n[rules.params.project-user-external-domain]\nallowed_domains = [{1}]\n\n\
         [rules.params.org-user-external-domain]\nallowed_domains = [{1}]\n",
        org.organization,
        domains.join(", ")
    );
    let sim = start_background(org, SimOptions::default()).unwrap();

    let demo_dir = tempfile::tempdir().unwrap();
    let demo = orgwarden(demo_dir.path())
        .args(["demo", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        demo.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );

    let audit_dir = tempfile::tempdir().unwrap();
    std::fs::write(audit_dir.path().join("orgwarden.toml"), config).unwrap();
    let audit = orgwarden(audit_dir.path())
        .args(["--config", "orgwarden.toml", "--db", "audit.db"])
        .args(["--base-url", &sim.base_url(), "audit", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        audit.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );

    let from_demo = findings_of(&demo.stdout, &demo.stderr);
    let from_audit = findings_of(&audit.stdout, &audit.stderr);
    assert!(!from_demo.is_empty(), "the demo organization has findings");
    assert_eq!(from_demo, from_audit);
}
