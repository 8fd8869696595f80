//! Golden tests of every report format on the demo organization, and of the diagnostics
//! of a deliberately broken rule file.

use std::path::Path;

/// Replaces RFC 3339 UTC times, which depend on when the test runs, with `[time]`.
fn redact_times(text: &str) -> String {
    crate::support::replace_times(text, "[time]")
}

fn demo(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let out = crate::support::orgwarden()
        .args(["demo", "--format", format, "--db"])
        .arg(&db)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::support::demo_month_to_date_as_usual(&redact_times(
        &String::from_utf8(out.stdout).unwrap(),
    ))
}

#[test]
fn demo_table_is_grouped_by_severity() {
    insta::assert_snapshot!(crate::support::demo_requests_as_usual(&demo("table")));
}

#[test]
fn demo_json_has_the_design_shape() {
    let text = demo("json");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = doc["snapshot"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "org",
            "started_at",
            "finished_at",
            "status",
            "requests",
            "errors",
            "audit_log"
        ]
    );
    let keys: Vec<&str> = doc["findings"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "fingerprint",
            "rule_id",
            "severity",
            "title",
            "resource_type",
            "resource_id",
            "project_id",
            "message",
            "status",
            "first_seen",
            "last_seen",
            "resolved_at",
            "remediation",
            "changed_by",
            "exemption"
        ]
    );
    insta::assert_snapshot!(crate::support::demo_requests_as_usual(&text));
}

/// The keys of `doc` (an object) that docs/report.md does not name as `` `key` ``.
fn undocumented<'a>(doc: &'a serde_json::Value, page: &str) -> Vec<&'a str> {
    doc.as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|key| !page.contains(&format!("`{key}`")))
        .collect()
}

#[test]
fn every_key_of_the_json_report_is_documented() {
    // A script author learns the report from docs/report.md: a key added to the report
    // and not to the page would be one they cannot rely on.
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.md"))
            .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&demo("json")).unwrap();
    let finding = &doc["findings"][0];
    for (what, object) in [
        ("the report", &doc),
        ("the snapshot", &doc["snapshot"]),
        ("the audit-log read", &doc["snapshot"]["audit_log"]),
        ("a finding", finding),
    ] {
        assert_eq!(undocumented(object, &page), Vec::<&str>::new(), "{what}");
    }
    // And the other way: every key the page's finding table names is in the report.
    let table = page
        .split("### `findings`")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").find(|block| block.starts_with("| key")))
        .expect("docs/report.md has a table of a finding's keys");
    for row in table.lines().skip(2) {
        let cell = row.split('|').nth(1).unwrap_or_default();
        for key in cell.split('`').skip(1).step_by(2) {
            assert!(
                finding.get(key).is_some(),
                "docs/report.md names `{key}`, which a finding lacks"
            );
        }
    }
    // The CSV header, word for word.
    let header = demo("csv").lines().next().unwrap().to_owned();
    let listed = header
        .split(',')
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        page.replace('\n', " ").contains(&listed),
        "docs/report.md does not list the CSV columns {listed}"
    );
}

#[test]
fn demo_jsonl_is_one_finding_per_line() {
    let text = demo("jsonl");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["fingerprint"].is_string());
    }
    assert_eq!(
        text.lines().count(),
        demo("json").matches("\"fingerprint\"").count()
    );
}

#[test]
fn demo_csv() {
    insta::assert_snapshot!(demo("csv"));
}

#[test]
fn demo_markdown() {
    insta::assert_snapshot!(demo("markdown"));
}

#[test]
fn demo_sarif_is_sarif_2_1_0() {
    let text = demo("sarif");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["version"], "2.1.0");
    let run = &doc["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    for result in run["results"].as_array().unwrap() {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
        assert!(["error", "warning", "note"].contains(&result["level"].as_str().unwrap()));
        assert!(result["message"]["text"].is_string());
        // GitHub code scanning rejects the whole upload over one result without it.
        let uri = &result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"];
        assert!(uri.as_str().is_some_and(|u| !u.is_empty()), "{result}");
    }
    for rule in rules {
        assert!(!rule["help"]["text"].as_str().unwrap().is_empty());
    }
    insta::assert_snapshot!(text);
}

#[test]
fn broken_rule_file_reports_every_problem_with_its_place() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = crate::support::orgwarden()
        .args([
            "--config",
            "tests/fixtures/broken-config.toml",
            "rules",
            "check",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for code in [
        "bad-id",
        "bad-severity",
        "unknown-column",
        "unknown-op",
        "bad-age",
        "unknown-resource-type",
        "sql-does-not-prepare",
        "duplicate-id",
        "missing-key",
        "unknown-key",
        "unknown-param",
        "unknown-rule",
        "wrong-param-type",
        "bad-date",
    ] {
        assert!(
            stderr.contains(&format!("error[{code}]")),
            "{code} missing:\n{stderr}"
        );
    }
    insta::assert_snapshot!(stderr);
}

#[test]
fn shipped_pack_checks_clean_and_its_fixtures_pass() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::orgwarden()
        .args(["rules", "check"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crate::support::orgwarden()
        .args(["rules", "test"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(!stdout.contains("no fixtures"), "{stdout}");
}
