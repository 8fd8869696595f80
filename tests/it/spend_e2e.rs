//! End to end: the binary reads the organization's daily costs from the in-process simulator
//! with every snapshot — the first run the month and the lookback, later runs only the
//! settling days — stores a revised day's figure instead of adding to it, reports the planted
//! spike, and keeps its costs when the read fails.

use std::path::Path;
use std::process::Output;

use chrono::{Datelike, Utc};
use orgwarden::sim::{Fault, FaultKind, Org, SimHandle, SimOptions, start_background};
use serde_json::Value;

const KEY: &str = "sk-admin-spend-0123456789";
const DAY: i64 = 86_400;

fn sim(org: Org) -> SimHandle {
    start_background(org, SimOptions::default()).unwrap()
}

fn run(dir: &Path, base_url: &str, args: &[&str]) -> Output {
    crate::support::orgwarden()
        .args(["--db", "spend.db", "--base-url", base_url])
        .args(args)
        .current_dir(dir)
        .env("OPENAI_ADMIN_KEY", KEY)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    })
}

/// The stored cents of one project's day (summed over line items).
fn stored(dir: &Path, url: &str, project: &str, day: i64) -> i64 {
    let day = chrono::DateTime::from_timestamp(day, 0)
        .unwrap()
        .date_naive();
    let sql = format!(
        "SELECT coalesce(sum(amount_cents), 0) AS cents FROM project_costs_daily \
         WHERE project_id = '{project}' AND day = '{day}'"
    );
    let out = run(dir, url, &["query", "--format", "json", &sql]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)[0]["cents"].as_i64().unwrap()
}

fn today() -> i64 {
    let now = Utc::now().timestamp();
    now - now.rem_euclid(DAY)
}

const ORG: &str = r#"{
  "organization": "acme",
  "projects": [
    {"id": "proj_spike", "name": "Spike", "created_at": "-100d",
     "spend_limit": {"threshold_amount": 10000000}, "costs": [
      {"day": "-1d", "amount": 150.0, "line_item": "gpt-5, input"},
      {"day": "-1d", "amount": 50.0, "line_item": "gpt-5, output"},
      {"day": "-2d", "amount": 10, "line_item": "gpt-5, input"},
      {"day": "-3d", "amount": 10}, {"day": "-4d", "amount": 10}, {"day": "-36d", "amount": 7}]},
    {"id": "proj_quiet", "name": "Quiet", "created_at": "-100d",
     "spend_limit": {"threshold_amount": 10000000},
     "spend_alerts": [{"id": "alert_q", "threshold_amount": 1000, "currency": "USD", "interval": "month",
                       "notification_channel": {"type": "email", "recipients": ["fin@acme.com"]}}],
     "costs": [{"day": "now", "amount": 1.234}]},
    {"id": "proj_near", "name": "Near", "created_at": "-100d",
     "spend_limit": {"threshold_amount": 10000},
     "spend_alerts": [{"id": "alert_n", "threshold_amount": 5000, "currency": "USD", "interval": "month",
                       "notification_channel": {"type": "email", "recipients": ["fin@acme.com"]}}],
     "costs": [{"day": "now", "amount": 85}]}]
}"#;

#[test]
fn costs_are_read_incrementally_and_a_revised_day_replaces_the_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now().timestamp();
    let sim = sim(Org::from_json_str(ORG, now).unwrap());
    let url = sim.base_url();
    let out = run(dir.path(), &url, &["snapshot", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = sim.with_org(|org| org.costs.requests.all());
    let first_of_month = {
        let d = Utc::now().date_naive().with_day(1).unwrap();
        d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp()
    };
    // One window, read a week per page.
    let window = (first_of_month - 35 * DAY, today() + DAY);
    assert!(
        !requests.is_empty() && requests.iter().all(|r| *r == window),
        "the first run reads the month and the 35-day lookback, up to the end of today: {requests:?}"
    );
    assert_eq!(requests.len() as i64, ((window.1 - window.0) / DAY + 6) / 7);
    assert_eq!(
        stored(dir.path(), &url, "proj_spike", today() - DAY),
        20_000
    );
    assert_eq!(
        stored(dir.path(), &url, "proj_spike", today() - 2 * DAY),
        1_000
    );
    assert_eq!(
        stored(dir.path(), &url, "proj_spike", today() - 36 * DAY),
        700
    );

    // The API revises a closed day while it settles; the next run stores the new figure.
    sim.with_org(|org| {
        org.costs.revise(
            Some("proj_spike"),
            now - 2 * DAY,
            Some("gpt-5, input"),
            30.0,
        );
    });
    let out = run(dir.path(), &url, &["snapshot", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = sim.with_org(|org| org.costs.requests.all());
    assert_eq!(
        requests.last(),
        Some(&(today() - 3 * DAY, today() + DAY)),
        "a run the same day re-reads only the 3 settling days and today"
    );
    assert_eq!(
        stored(dir.path(), &url, "proj_spike", today() - 2 * DAY),
        3_000,
        "the revised figure, not the sum of both reads"
    );
    assert_eq!(
        stored(dir.path(), &url, "proj_spike", today() - 36 * DAY),
        700,
        "days outside the re-read window are kept"
    );

    // `spend` shows month to date against the alert; the spike is reported by `audit`.
    let out = run(dir.path(), &url, &["spend", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert!(
        doc["organization"]["project_id"].is_null(),
        "the organization is no project: {}",
        doc["organization"]
    );
    let quiet = project(&doc, "proj_quiet");
    assert_eq!(quiet["month_to_date"], 123);
    assert_eq!(quiet["month_to_date_usd"], "1.23");
    assert_eq!(quiet["alert_threshold"], 1000);
    assert_eq!(quiet["pct_of_alert"], 12.3);
    let spike = project(&doc, "proj_spike");
    assert_eq!(spike["yesterday"], 20_000);

    let out = run(
        dir.path(),
        &url,
        &["audit", "--offline", "--format", "json"],
    );
    let doc = json(&out);
    let mut found: Vec<(String, String)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "open")
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap().to_owned(),
                f["resource_id"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(rule, _)| rule.starts_with("project-spend") || rule.starts_with("org-spend"))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            (
                "project-spend-near-limit".to_owned(),
                "proj_near".to_owned()
            ),
            ("project-spend-spike".to_owned(), "proj_spike".to_owned()),
        ]
    );
    // `spend` lists the project nearest its limit first.
    assert_eq!(
        doc_first(&run(dir.path(), &url, &["spend", "--format", "json"])),
        "proj_near"
    );
}

#[test]
fn a_failed_costs_read_makes_the_snapshot_partial_and_keeps_the_stored_costs() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now().timestamp();
    let sim = sim(Org::from_json_str(ORG, now).unwrap());
    let url = sim.base_url();
    let out = run(dir.path(), &url, &["snapshot", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yesterday = stored(dir.path(), &url, "proj_spike", today() - DAY);
    assert_eq!(yesterday, 20_000);

    sim.add_fault(Fault {
        path_prefix: "/organization/costs".into(),
        kind: FaultKind::Status(400),
        times: None,
    });
    sim.with_org(|org| org.costs.revise(Some("proj_spike"), now - DAY, None, 999.0));
    let out = run(dir.path(), &url, &["snapshot", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "an incomplete read exits 3");
    assert_eq!(json(&out)["status"], "partial");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the costs read failed; the stored costs are kept"),
        "the error says what made the snapshot partial: {stderr}"
    );
    assert!(
        stderr.contains("every scope was read, but a read beside them failed")
            && !stderr.contains("0 scope(s)"),
        "{stderr}"
    );
    assert_eq!(
        stored(dir.path(), &url, "proj_spike", today() - DAY),
        yesterday,
        "nothing replaced by a failed read"
    );
    // `spend` says its amounts are those of the older read, not the newest snapshot's.
    let doc = json(&run(dir.path(), &url, &["spend", "--format", "json"]));
    assert_eq!(doc["costs"]["read"], "failed", "{}", doc["costs"]);
    assert!(doc["costs"]["last_complete_read"].is_string());
    let out = run(dir.path(), &url, &["spend"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("The amounts below are those of the costs read of "),
        "{table}"
    );

    // The next run starts again from the last complete read's days.
    sim.clear_faults();
    let out = run(dir.path(), &url, &["snapshot", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = sim.with_org(|org| org.costs.requests.all());
    assert_eq!(requests.last().map(|r| r.0), Some(today() - 3 * DAY));
    assert_eq!(
        stored(dir.path(), &url, "proj_spike", today() - DAY),
        20_000 + 99_900
    );
    let doc = json(&run(dir.path(), &url, &["spend", "--format", "json"]));
    assert_eq!(doc["costs"]["read"], "complete");
    let out = run(dir.path(), &url, &["spend"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("organization: "));
}

#[test]
fn spend_without_a_complete_costs_read_says_its_zeros_are_no_figures() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now().timestamp();
    let sim = sim(Org::from_json_str(ORG, now).unwrap());
    let url = sim.base_url();
    sim.add_fault(Fault {
        path_prefix: "/organization/costs".into(),
        kind: FaultKind::Status(403),
        times: None,
    });
    let out = run(dir.path(), &url, &["snapshot", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "an incomplete read exits 3");
    let out = run(dir.path(), &url, &["audit", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "an incomplete read exits 3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the costs read failed; the stored costs are kept"),
        "the error says what made the snapshot partial: {stderr}"
    );

    let out = run(dir.path(), &url, &["spend", "--format", "json"]);
    assert!(out.status.success());
    let doc = json(&out);
    assert_eq!(project(&doc, "proj_near")["month_to_date"], 0);
    let costs = &doc["costs"];
    assert_eq!(costs["read"], "failed", "{costs}");
    assert!(costs["last_complete_read"].is_null(), "{costs}");
    assert!(costs["error"].as_str().unwrap().contains("403"), "{costs}");
    let today = chrono::DateTime::from_timestamp(today(), 0)
        .unwrap()
        .date_naive();
    assert_eq!(costs["today"], today.to_string());

    for (format, stream) in [
        ("table", "stdout"),
        ("markdown", "stdout"),
        ("csv", "stderr"),
    ] {
        let out = run(dir.path(), &url, &["spend", "--format", format]);
        assert!(out.status.success());
        let text = match stream {
            "stdout" => String::from_utf8_lossy(&out.stdout),
            _ => String::from_utf8_lossy(&out.stderr),
        };
        assert!(
            text.contains("Costs were never read completely (the newest costs read failed: "),
            "{format}: {text}"
        );
        if format == "csv" {
            assert!(String::from_utf8_lossy(&out.stdout).starts_with("project_id,"));
        }
    }
}

fn doc_first(out: &Output) -> String {
    json(out)["projects"][0]["project_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One project's row of `spend --format json`.
fn project(doc: &Value, id: &str) -> Value {
    doc["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["project_id"] == id)
        .unwrap()
        .clone()
}

#[test]
fn spend_after_a_failed_snapshot_blames_the_snapshot_not_the_spend_setting() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Org::from_json_str(ORG, Utc::now().timestamp()).unwrap());
    let url = sim.base_url();
    let out = run(dir.path(), &url, &["snapshot", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The key is refused: the next snapshot fails whole and reads nothing, costs included.
    sim.add_fault(Fault {
        path_prefix: "/organization".into(),
        kind: FaultKind::Status(401),
        times: None,
    });
    let out = run(dir.path(), &url, &["snapshot", "--format", "json"]);
    assert_ne!(out.status.code(), Some(0), "the snapshot failed");
    let out = run(dir.path(), &url, &["spend"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("The amounts below are those of the costs read of "),
        "{table}"
    );
    assert!(table.contains("the newest snapshot failed"), "{table}");
    assert!(!table.contains("[spend] enabled"), "costs are on: {table}");
}

#[test]
fn spend_before_any_finished_snapshot_says_to_run_one_not_to_check_the_spend_setting() {
    let dir = tempfile::tempdir().unwrap();
    // A database no snapshot has finished in: the first one was stopped part-way.
    drop(orgwarden::store::Store::open(&dir.path().join("spend.db")).unwrap());
    let out = run(dir.path(), "http://127.0.0.1:9/v1", &["spend"]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("no snapshot has finished yet"), "{table}");
    assert!(!table.contains("[spend] enabled"), "{table}");
}
