//! Time bounds: a rule whose SQL never ends (a recursive CTE without an end) is stopped at
//! `[rules] timeout` by name while the other rules still report, `rules check` finds it over
//! the demo organization, `query --timeout` stops a runaway statement, and a signal stops `audit`.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use orgwarden::sim::{Org, SimOptions, start_background};
use serde_json::Value;

const KEY: &str = "sk-admin-budget-0123456789";

const RUNAWAY: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                       SELECT x AS resource_id, NULL AS project_id, 'never' AS message \
                       FROM c WHERE x < 0";

fn runaway_rule() -> String {
    format!(
        r#"
[[rule]]
id = "runaway"
title = "A rule that never ends"
severity = "low"
resource_type = "projects"
description = "Counts forever."
remediation = "Give the recursion an end."
sql = "{RUNAWAY}"
"#
    )
}

fn run(dir: &Path, base_url: &str, args: &[&str]) -> Output {
    crate::support::orgwarden()
        .args(["--db", "audit.db", "--base-url", base_url])
        .args(args)
        .current_dir(dir)
        .env("OPENAI_ADMIN_KEY", KEY)
        .output()
        .unwrap()
}

/// A site with the runaway rule and `timeout`, its stored snapshot taken by a first audit
/// without the rule; returns the directory, that audit's findings and the simulator URL.
fn site(timeout: &str) -> (tempfile::TempDir, Vec<Value>, orgwarden::sim::SimHandle) {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let first = run(dir.path(), &sim.base_url(), &["audit", "--format", "json"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let doc: Value = serde_json::from_slice(&first.stdout).unwrap();
    std::fs::write(dir.path().join("runaway.toml"), runaway_rule()).unwrap();
    std::fs::write(
        dir.path().join("budget.toml"),
        format!("[rules]\npaths = [\"runaway.toml\"]\ntimeout = \"{timeout}\"\n"),
    )
    .unwrap();
    (dir, doc["findings"].as_array().unwrap().clone(), sim)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn open_ids(findings: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = findings
        .iter()
        .filter(|f| f["status"] == "open")
        .map(|f| format!("{}/{}", f["rule_id"], f["resource_id"]))
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_runaway_rule_fails_by_name_at_its_budget_and_the_other_rules_still_report() {
    let (dir, before, sim) = site("1s");
    let started = Instant::now();
    let (code, stderr, doc) = audit_json_with_the_rule(dir.path(), &sim.base_url());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_ne!(code, Some(0), "a stopped rule fails the run");
    assert!(
        stderr.contains("rule `runaway` ran longer than its 1s budget"),
        "{stderr}"
    );
    assert_eq!(unfinished(&doc), ["runaway:timed_out"]);
    let after = doc["findings"].as_array().unwrap().clone();
    assert!(!open_ids(&before).is_empty());
    assert_eq!(
        open_ids(&after),
        open_ids(&before),
        "the other rules still report"
    );
}

/// An offline audit of the stored snapshot with the site's extra rule: its exit code,
/// stderr, and the findings it printed.
fn audit_with_the_rule(dir: &Path, base_url: &str) -> (Option<i32>, String, Vec<Value>) {
    let (code, stderr, doc) = audit_json_with_the_rule(dir, base_url);
    (code, stderr, doc["findings"].as_array().unwrap().clone())
}

/// [`audit_with_the_rule`], with the whole JSON document it printed.
fn audit_json_with_the_rule(dir: &Path, base_url: &str) -> (Option<i32>, String, Value) {
    let out = run(
        dir,
        base_url,
        &[
            "--config",
            "budget.toml",
            "audit",
            "--offline",
            "--format",
            "json",
        ],
    );
    let stderr = text(&out.stderr);
    let doc: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (out.status.code(), stderr, doc)
}

/// The rules a JSON report lists as unfinished, as `id:reason`.
fn unfinished(doc: &Value) -> Vec<String> {
    doc["unfinished_rules"]
        .as_array()
        .unwrap_or_else(|| panic!("no unfinished_rules array in {doc}"))
        .iter()
        .map(|u| {
            assert!(u["error"].as_str().is_some_and(|e| !e.is_empty()), "{u}");
            format!(
                "{}:{}",
                u["rule_id"].as_str().unwrap(),
                u["reason"].as_str().unwrap()
            )
        })
        .collect()
}

/// Every report a CI job might keep says which rule did not finish, not only the exit code
/// and stderr: JSON lists it, SARIF marks its invocation unsuccessful, the table and
/// Markdown open with it. A run where every rule finished says none of that.
#[test]
fn every_report_names_a_rule_that_did_not_finish() {
    let (dir, _, sim) = site("10s");
    let failing = rule_failing_on_the_data();
    let passing = failing.replace("json_array_length(name) > 0", "0");
    let report = |format: &str| {
        let out = run(
            dir.path(),
            &sim.base_url(),
            &[
                "--config",
                "budget.toml",
                "audit",
                "--offline",
                "--format",
                format,
            ],
        );
        (out.status.code(), text(&out.stdout))
    };
    std::fs::write(dir.path().join("runaway.toml"), &failing).unwrap();
    let (code, stderr, doc) = audit_json_with_the_rule(dir.path(), &sim.base_url());
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(unfinished(&doc), ["reads-text-as-json:failed"]);
    let (code, sarif) = report("sarif");
    assert_eq!(code, Some(2));
    let sarif: Value = serde_json::from_str(&sarif).unwrap();
    let invocation = &sarif["runs"][0]["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false, "{invocation}");
    assert_eq!(
        invocation["toolExecutionNotifications"][0]["associatedRule"]["id"],
        "reads-text-as-json"
    );
    let said = "1 rule did not finish (reads-text-as-json)";
    for format in ["table", "markdown"] {
        let (code, out) = report(format);
        assert_eq!(code, Some(2));
        assert!(out.contains(said), "{format}: {out}");
    }

    std::fs::write(dir.path().join("runaway.toml"), &passing).unwrap();
    let (code, stderr, doc) = audit_json_with_the_rule(dir.path(), &sim.base_url());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(unfinished(&doc).is_empty(), "{doc}");
    let (_, sarif) = report("sarif");
    let sarif: Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(
        sarif["runs"][0]["invocations"][0]["executionSuccessful"],
        true
    );
    for format in ["table", "markdown"] {
        assert!(!report(format).1.contains("did not finish"), "{format}");
    }
}

/// A rule whose SQL fails on the stored data (plain text read as a JSON list), which no
/// empty store shows.
fn rule_failing_on_the_data() -> String {
    runaway_rule()
        .replace("id = \"runaway\"", "id = \"reads-text-as-json\"")
        .replace(
            &format!("sql = \"{RUNAWAY}\""),
            "sql = \"SELECT id AS resource_id, id AS project_id, 'm' AS message \
             FROM projects WHERE json_array_length(name) > 0\"",
        )
}

/// [`rule_failing_on_the_data`] fails the run by name, and every other rule still reports.
#[test]
fn a_rule_that_fails_on_the_data_fails_by_name_and_the_other_rules_still_report() {
    let (dir, before, sim) = site("10s");
    std::fs::write(dir.path().join("runaway.toml"), rule_failing_on_the_data()).unwrap();
    let (code, stderr, after) = audit_with_the_rule(dir.path(), &sim.base_url());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("rule `reads-text-as-json`: "), "{stderr}");
    assert!(!open_ids(&before).is_empty());
    assert_eq!(
        open_ids(&after),
        open_ids(&before),
        "the other rules still report"
    );
}

/// A rule that reported findings and then fails on the data says nothing about them: they
/// stay open, neither resolved nor dropped, until it runs to its end again.
#[test]
fn a_rule_that_fails_keeps_the_findings_it_reported_before() {
    let (dir, _, sim) = site("10s");
    let rule = |condition: &str| {
        runaway_rule()
            .replace("id = \"runaway\"", "id = \"active-projects\"")
            .replace(
                &format!("sql = \"{RUNAWAY}\""),
                &format!(
                    "sql = \"SELECT id AS resource_id, id AS project_id, 'm' AS message \
                     FROM projects WHERE {condition}\""
                ),
            )
    };
    let mine = |findings: &[Value]| -> Vec<String> {
        open_ids(findings)
            .into_iter()
            .filter(|id| id.contains("active-projects"))
            .collect()
    };
    std::fs::write(dir.path().join("runaway.toml"), rule("status = 'active'")).unwrap();
    let (code, stderr, first) = audit_with_the_rule(dir.path(), &sim.base_url());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!mine(&first).is_empty(), "the rule reports first");
    std::fs::write(
        dir.path().join("runaway.toml"),
        rule("json_array_length(name) > 0"),
    )
    .unwrap();
    let (code, stderr, second) = audit_with_the_rule(dir.path(), &sim.base_url());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("rule `active-projects`: "), "{stderr}");
    assert_eq!(mine(&second), mine(&first), "its findings stay open");
}

#[test]
fn rules_check_reports_a_rule_that_cannot_finish_over_the_demo_organization() {
    let (dir, _, _sim) = site("1s");
    let out = crate::support::orgwarden()
        .args(["--config", "budget.toml", "rules", "check"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("rule-timed-out"), "{stderr}");
    assert!(stderr.contains("`runaway`"), "{stderr}");
}

#[test]
fn query_stops_a_runaway_statement_at_its_timeout() {
    let (dir, _, sim) = site("1s");
    let started = Instant::now();
    let out = run(
        dir.path(),
        &sim.base_url(),
        &["query", "--timeout", "1s", RUNAWAY],
    );
    let stderr = text(&out.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("query ran longer than 1s"), "{stderr}");
    let quick = run(
        dir.path(),
        &sim.base_url(),
        &[
            "query",
            "--timeout",
            "5s",
            "SELECT count(*) AS n FROM projects",
        ],
    );
    assert_eq!(quick.status.code(), Some(0), "{}", text(&quick.stderr));
}

#[cfg(unix)]
#[test]
fn a_signal_stops_an_audit_inside_a_runaway_rule() {
    for signal in ["TERM", "INT"] {
        let (dir, _, sim) = site("10m");
        let mut child = crate::support::orgwarden()
            .args(["--db", "audit.db", "--base-url", &sim.base_url()])
            .args(["--config", "budget.toml", "audit", "--offline"])
            .current_dir(dir.path())
            .env("OPENAI_ADMIN_KEY", KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(child.try_wait().unwrap().is_none(), "still evaluating");
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let sent = Instant::now();
        while child.try_wait().unwrap().is_none() {
            // Seconds, against the rule's ten minutes: generous, since a loaded CI machine
            // has taken over 3 s to wind the evaluation down.
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "SIG{signal} did not stop the audit"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn the_daemon_stops_within_seconds_of_sigterm_inside_a_runaway_rule() {
    let (dir, _, sim) = site("10m");
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        format!(
            "[openai]\norganization = \"acme-robotics\"\nbase_url = \"{}\"\n\n\
             [schedule]\ncron = \"0 0 1 1 *\"\nrun_on_start = true\n\n\
             [rules]\npaths = [\"runaway.toml\"]\ntimeout = \"10m\"\n\n\
             [notify.email]\ntransport = \"file\"\ndir = \"outbox\"\n\
             from = \"orgwarden@example.com\"\nto = [\"security@example.com\"]\n",
            sim.base_url()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = crate::support::orgwarden()
        .current_dir(dir.path())
        .args(["--config", "orgwarden.toml", "--db", "audit.db"])
        .args(["--log-format", "json", "daemon"])
        .env("OPENAI_ADMIN_KEY", KEY)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let start = Instant::now();
    while !read().contains("run started") {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", read());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The demo crawl takes well under this; the run is then inside the runaway rule.
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "{}", read());
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let sent = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if sent.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("the daemon did not stop within 5 s of SIGTERM:\n{}", read());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = read();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("evaluation interrupted during rule `runaway`"),
        "{text}"
    );
}

#[test]
fn a_rule_stopped_at_its_budget_resolves_none_of_its_findings() {
    let (dir, _, sim) = site("1s");
    let rule = |sql: &str| {
        format!(
            "[[rule]]\nid = \"every-project\"\ntitle = \"Every project\"\nseverity = \"low\"\n\
             resource_type = \"projects\"\ndescription = \"Lists projects.\"\n\
             remediation = \"None.\"\nsql = \"{sql}\"\n"
        )
    };
    let every = "SELECT id AS resource_id, id AS project_id, name AS message FROM projects";
    std::fs::write(dir.path().join("mine.toml"), rule(every)).unwrap();
    std::fs::write(
        dir.path().join("mine-config.toml"),
        "[rules]\npaths = [\"mine.toml\"]\ntimeout = \"1s\"\n",
    )
    .unwrap();
    let audit = |config: &str| {
        let out = run(
            dir.path(),
            &sim.base_url(),
            &["--config", config, "audit", "--offline", "--format", "json"],
        );
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
        let mine: Vec<Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule_id"] == "every-project")
            .cloned()
            .collect();
        (out.status.code(), open_ids(&mine).len(), mine.len())
    };
    let (code, open, _) = audit("mine-config.toml");
    assert_eq!(code, Some(0));
    assert!(open > 0);
    // The same rule now never ends: its findings stay open, none resolved.
    std::fs::write(dir.path().join("mine.toml"), rule(RUNAWAY)).unwrap();
    let (code, still_open, _) = audit("mine-config.toml");
    assert_ne!(code, Some(0));
    assert_eq!(still_open, open);
    let out = run(
        dir.path(),
        &sim.base_url(),
        &[
            "query",
            "SELECT count(*) AS n FROM findings WHERE rule_id = 'every-project' AND status = 'open'",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        text(&out.stdout).lines().nth(1),
        Some(open.to_string().as_str()),
        "{}",
        text(&out.stderr)
    );
}

/// A rule that fails while a read is incomplete: the rule needs a person, the read only a
/// retry, so the exit is 2 (not 3), and the report names both.
#[test]
fn a_failing_rule_over_a_partial_read_exits_2_and_the_report_names_both() {
    let (dir, _, sim) = site("10s");
    std::fs::write(dir.path().join("runaway.toml"), rule_failing_on_the_data()).unwrap();
    sim.add_fault(orgwarden::sim::Fault {
        path_prefix: "/organization/projects/proj_payments/users".into(),
        kind: orgwarden::sim::FaultKind::Status(500),
        times: None,
    });
    let out = run(
        dir.path(),
        &sim.base_url(),
        &["--config", "budget.toml", "audit", "--format", "json"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let doc: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(doc["snapshot"]["status"], "partial", "{doc:#}");
    assert_eq!(unfinished(&doc), ["reads-text-as-json:failed"]);
}
