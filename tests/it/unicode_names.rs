//! Names from the API in any script and of any length: one name of 10,000 characters does
//! not take over the tables every reading command prints.

use std::path::Path;
use std::process::Output;

use chrono::Utc;
use orgwarden::model::ProjectId;
use orgwarden::sim::{Org, SimHandle, SimOptions, start_background};

fn run(dir: &Path, sim: &SimHandle, args: &[&str]) -> Output {
    crate::support::orgwarden()
        .args(["--db", "u.db", "--base-url", &sim.base_url()])
        .args(args)
        .current_dir(dir)
        .env("COLUMNS", "80")
        .env("OPENAI_ADMIN_KEY", "sk-admin-unicode-names-0123")
        .output()
        .unwrap()
}

fn audit(dir: &Path, sim: &SimHandle) {
    let out = run(dir, sim, &["audit"]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rename(sim: &SimHandle, id: &str, name: &str) {
    sim.with_org(|org| {
        org.project_mut(&ProjectId::from(id)).unwrap().name = Some(name.into());
    });
}

#[test]
fn one_huge_name_is_cut_in_every_reading_table_and_kept_whole_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let huge = "長".repeat(10_000);
    audit(dir.path(), &sim);
    rename(&sim, "proj_payments", &huge);
    audit(dir.path(), &sim);
    for command in [
        &["spend"][..],
        &["history", "proj_payments"],
        &["diff"],
        &["findings", "--project", "proj_payments"],
    ] {
        let out = run(dir.path(), &sim, command);
        assert!(out.status.success(), "{command:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("more characters)"), "{command:?}:\n{text}");
        // 20,000 columns at 80 a line were 250 lines for one cell.
        assert!(
            text.lines().count() < 150,
            "{command:?}: {} lines",
            text.lines().count()
        );
    }
    let out = run(dir.path(), &sim, &["spend", "--format", "json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&huge));
    // `query` shows what its SQL asks for, whole.
    let out = run(
        dir.path(),
        &sim,
        &[
            "query",
            "SELECT name FROM projects WHERE id = 'proj_payments'",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).matches('長').count() == 10_000);
}
