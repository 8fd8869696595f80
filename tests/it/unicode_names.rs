//! Names from the API in any script and of any length: `--project` does not pick one of two
//! projects whose names look the same, and one name of 10,000 characters does not take over
//! the tables every reading command prints.

use std::path::Path;
use std::process::Output;

use chrono::Utc;
use orgwarden::model::ProjectId;
use orgwarden::sim::{Org, SimHandle, SimOptions, start_background};

/// `café` as a keyboard types it: one precomposed `é`.
const CAFE_NFC: &str = "caf\u{e9}";
/// `café` as the API may send it: an `e` and a combining acute accent.
const CAFE_NFD: &str = "cafe\u{301}";

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

/// The project ids of `findings --project NAME --format csv`, or its error.
fn findings_of(dir: &Path, sim: &SimHandle, name: &str) -> Result<Vec<String>, String> {
    let out = run(
        dir,
        sim,
        &["findings", "--project", name, "--format", "csv"],
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut rows = csv::Reader::from_reader(out.stdout.as_slice());
    let column = rows
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "project_id")
        .unwrap();
    let mut ids: Vec<String> = rows
        .records()
        .map(|r| r.unwrap()[column].to_owned())
        .collect();
    ids.dedup();
    Ok(ids)
}

#[test]
fn a_project_name_matches_in_either_unicode_spelling_and_two_that_look_alike_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    rename(&sim, "proj_support", CAFE_NFD);
    audit(dir.path(), &sim);
    // Typed on a keyboard, the name still finds the project the API spelt the other way.
    assert_eq!(
        findings_of(dir.path(), &sim, CAFE_NFC),
        Ok(vec!["proj_support".to_owned()])
    );
    // A second project whose name looks the same: neither is picked in silence.
    rename(&sim, "proj_payments", CAFE_NFC);
    // (Renamed in the same run, as each audit takes a second.)
    rename(&sim, "proj_data", "evil\u{202e}gnp.exe");
    audit(dir.path(), &sim);
    for typed in [CAFE_NFC, CAFE_NFD] {
        let err = findings_of(dir.path(), &sim, typed).unwrap_err();
        assert!(
            err.contains("2 projects are named")
                && err.contains("different Unicode code points")
                && err.contains("(proj_payments, proj_support)"),
            "{err}"
        );
    }
    // A name with a bidi override is shown escaped; pasted as shown, it finds its project.
    assert_eq!(
        findings_of(dir.path(), &sim, r"evil\u{202e}gnp.exe"),
        Ok(vec!["proj_data".to_owned()])
    );
    // A former name is read the same way.
    rename(&sim, "proj_payments", "Payments API");
    rename(&sim, "proj_support", "Support Bot");
    audit(dir.path(), &sim);
    let err = findings_of(dir.path(), &sim, CAFE_NFD).unwrap_err();
    assert!(
        err.contains("no project is named") && err.contains("(proj_payments, proj_support)"),
        "{err}"
    );
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
    let out = run(dir.path(), &sim, &["spend", "--format", "markdown"]);
    let markdown = String::from_utf8_lossy(&out.stdout);
    assert!(markdown.contains("more characters) …"), "{markdown}");
    assert!(markdown.len() < 8_000, "{} bytes", markdown.len());
    // The note on a former name quotes the current one cut too.
    let out = run(dir.path(), &sim, &["findings", "--project", "Payments API"]);
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(note.contains("is now named `長"), "{note}");
    assert!(note.len() < 1_000, "{} bytes", note.len());
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

#[test]
fn a_long_list_changed_in_its_middle_shows_the_change_in_diff_and_history() {
    // A role's permissions (or an allow-list of models) is compared whole: cut at its
    // start and end like any long cell, its old and new value showed alike but for the
    // counts of what was left out, and the added permission was nowhere.
    let dir = tempfile::tempdir().unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let mut permissions: Vec<String> = (0..40).map(|i| format!("api.scope{i:02}.read")).collect();
    let role = sim.with_org(|org| {
        org.roles[0].permissions = permissions.clone();
        org.roles[0].id.to_string()
    });
    audit(dir.path(), &sim);
    permissions.insert(20, "api.added.write".into());
    sim.with_org(|org| org.roles[0].permissions = permissions.clone());
    audit(dir.path(), &sim);
    for command in [&["diff"][..], &["history", &role]] {
        let out = run(dir.path(), &sim, command);
        assert!(out.status.success(), "{command:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        // Too wide for 80 columns as a table, each change is a record: the new value is
        // the `new` line and the lines under it that carry on its value.
        let mut joined = String::new();
        let mut in_new = false;
        for line in text.lines() {
            if let Some(value) = line.strip_prefix("new ") {
                in_new = true;
                joined.push_str(value.trim());
            } else if in_new && line.starts_with(' ') {
                joined.push_str(line.trim());
            } else {
                in_new = false;
            }
        }
        assert!(
            joined.contains("\"api.added.write\""),
            "{command:?}:\n{text}"
        );
        assert!(joined.contains("characters) …"), "{command:?}:\n{text}");
    }
}
