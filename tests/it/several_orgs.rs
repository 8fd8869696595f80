//! Several organizations on one host, one orgwarden each: a configuration copied from one
//! organization's and given another's admin key, but still naming the first's database,
//! is refused before it stores anything, rather than resolving every finding of the first
//! organization and announcing every one of the second.

use std::path::Path;
use std::process::Output;

use chrono::Utc;
use orgwarden::sim::{Org, SimHandle, SimOptions, start_background};
use serde_json::Value;

fn sim(projects: usize, seed: u64) -> SimHandle {
    let org = Org::generate(projects, seed, Utc::now().timestamp());
    start_background(org, SimOptions::default()).unwrap()
}

/// Writes `<name>.toml` in `dir`: the organization `name`, the database `shared.db`, and
/// digests written into the one mail folder `mail`.
fn config(dir: &Path, name: &str, base_url: &str) -> String {
    let file = format!("{name}.toml");
    std::fs::write(
        dir.join(&file),
        format!(
            "[openai]\norganization = \"{name}\"\nbase_url = \"{base_url}\"\n\
             [storage]\npath = \"shared.db\"\n\
             [notify.email]\ntransport = \"file\"\ndir = \"mail\"\n\
             from = \"orgwarden@example.com\"\nto = [\"security@example.com\"]\n"
        ),
    )
    .unwrap();
    file
}

fn run(dir: &Path, config: &str, args: &[&str]) -> Output {
    crate::support::orgwarden()
        .args(["--config", config])
        .args(args)
        .current_dir(dir)
        .env("OPENAI_ADMIN_KEY", "sk-admin-several-orgs")
        .output()
        .unwrap()
}

/// `audit --notify --format json`, which must have read everything (exit 0 or 1).
fn audit(dir: &Path, config: &str) -> Value {
    let out = run(dir, config, &["audit", "--notify", "--format", "json"]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn mails(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("mail")).map_or(0, Iterator::count)
}

fn snapshots(dir: &Path, config: &str) -> Vec<Value> {
    let out = run(dir, config, &["snapshots", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The ids of the open findings an audit reported, sorted.
fn open_findings(doc: &Value) -> Vec<String> {
    let mut open: Vec<String> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "open")
        .map(|f| f["fingerprint"].as_str().unwrap().to_owned())
        .collect();
    open.sort();
    open
}

/// The first project of a simulated organization: (id, name).
fn first_project(sim: &SimHandle) -> (String, String) {
    sim.with_org(|org| {
        let p = &org.projects[0];
        (p.id.as_str().to_owned(), p.name.clone().unwrap_or_default())
    })
}

#[test]
fn a_database_pointed_at_another_organization_is_refused_naming_both_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let prod = sim(4, 1);
    let staging = sim(6, 2);
    let prod_toml = config(dir.path(), "prod", &prod.base_url());
    let first = audit(dir.path(), &prod_toml);
    assert!(
        !open_findings(&first).is_empty(),
        "the organization has findings"
    );
    assert_eq!(mails(dir.path()), 1, "the first digest");

    // The copied configuration: another key, another organization, the same database.
    let staging_toml = config(dir.path(), "staging", &staging.base_url());
    let out = run(
        dir.path(),
        &staging_toml,
        &["audit", "--notify", "--format", "json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "no report of a run not stored");
    assert!(stderr.contains("follows another organization"), "{stderr}");
    let (prod_id, prod_name) = first_project(&prod);
    let (staging_id, staging_name) = first_project(&staging);
    for told in [
        "this run reads as `staging`",
        "last read as `prod`",
        "none of the 6 project(s)",
        "among the 4 it holds",
        &format!("{staging_id} \"{staging_name}\""),
        &format!("{prod_id} \"{prod_name}\""),
        "no finding changed",
        "Give each organization its own database",
    ] {
        assert!(stderr.contains(told), "{told:?} in {stderr}");
    }
    assert_eq!(mails(dir.path()), 1, "nothing announced");
    assert_eq!(snapshots(dir.path(), &prod_toml).len(), 1, "nothing stored");

    // The right key again: the findings are as they were, and none is announced again.
    let again = audit(dir.path(), &prod_toml);
    assert_eq!(open_findings(&again), open_findings(&first));
    assert_eq!(mails(dir.path()), 1);
}

#[test]
fn an_organization_whose_projects_were_renamed_archived_and_added_to_is_still_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let prod = sim(3, 1);
    let prod_toml = config(dir.path(), "prod", &prod.base_url());
    audit(dir.path(), &prod_toml);
    prod.with_org(|org| {
        let now = Utc::now().timestamp();
        for project in &mut org.projects {
            project.name = Some(format!("renamed {}", project.id.as_str()));
        }
        org.projects[0].status = "archived".into();
        org.projects[0].archived_at = Some(now);
        let id = orgwarden::model::ProjectId::from("proj_brand_new");
        org.projects.push(orgwarden::sim::org::Project::new(
            id,
            Some("New".into()),
            now,
        ));
    });
    audit(dir.path(), &prod_toml);
    assert_eq!(snapshots(dir.path(), &prod_toml).len(), 2);
}
