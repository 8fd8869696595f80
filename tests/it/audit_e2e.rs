//! End to end: `orgwarden audit` crawls the in-process simulator over HTTP while the
//! simulated organization changes between audits (a violation fixed, one added, a key
//! deleted and restored, a scope that cannot be read, an exemption that expires), and the
//! findings move through their lifecycle — checked in the binary's JSON and the stored
//! events.

use std::path::Path;
use std::process::Output;

use chrono::Utc;
use orgwarden::findings::{self, EventKind, fingerprint};
use orgwarden::model::{ProjectId, RuleId};
use orgwarden::sim::{Fault, FaultKind, Org, SimHandle, SimOptions, start_background};
use orgwarden::store::Store;
use serde_json::Value;

const KEY: &str = "sk-admin-e2e-0123456789";

fn sim(org: Org) -> SimHandle {
    start_background(org, SimOptions::default()).unwrap()
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

/// Runs `audit --format json` (plus `extra`) and returns its exit code and document.
fn audit(dir: &Path, base_url: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["audit", "--format", "json"];
    args.extend_from_slice(extra);
    let out = run(dir, base_url, &args);
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

/// The `resolved_at` of the finding of `rule` on `resource` in an audit's JSON report.
fn resolved_at_of(doc: &Value, rule: &str, resource: &str) -> Value {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == rule && f["resource_id"] == resource)
        .map(|f| f["resolved_at"].clone())
        .unwrap()
}

fn events(db: &Path, rule: &str, resource: &str, project: &str) -> Vec<findings::Event> {
    let store = Store::open_read_only(db).unwrap();
    let fp = fingerprint(
        &RuleId::from(rule),
        resource,
        Some(&ProjectId::from(project)),
    );
    findings::events(store.reader(), &fp)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

fn kinds(events: &[findings::Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

#[test]
fn fail_on_takes_the_severity_in_any_case() {
    // A CI variable may hold the severity in capitals; before, HIGH was exit 2.
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Org::demo(Utc::now().timestamp()));
    let url = sim.base_url();
    for (severity, code) in [("HIGH", 1), ("High", 1), ("CRITICAL", 0)] {
        let (got, _) = audit(dir.path(), &url, &["--fail-on", severity]);
        assert_eq!(got, code, "--fail-on {severity}");
    }
}

#[test]
fn a_resolved_finding_says_when_and_keeps_it_when_it_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Org::demo(Utc::now().timestamp()));
    let url = sim.base_url();
    let (rule, key) = ("api-key-stale", "key_pay_ada_notebook");
    let payments = ProjectId::from("proj_payments");
    let (_, doc) = audit(dir.path(), &url, &[]);
    assert_eq!(resolved_at_of(&doc, rule, key), Value::Null);

    let take_key = |org: &mut Org| {
        let p = org.project_mut(&payments).unwrap();
        let i = p
            .api_keys
            .iter()
            .position(|k| k.id.as_str() == key)
            .unwrap();
        p.api_keys.remove(i)
    };
    let removed = sim.with_org(take_key);
    let (_, doc) = audit(dir.path(), &url, &[]);
    assert_eq!(status_of(&doc, rule, key).as_deref(), Some("resolved"));
    let resolved_at = resolved_at_of(&doc, rule, key);
    let resolved_at = resolved_at.as_str().unwrap().to_owned();
    assert!(
        doc["snapshot"]["started_at"].as_str().unwrap() <= resolved_at.as_str(),
        "{resolved_at} {}",
        doc["snapshot"]
    );

    // Reopened, it keeps the time: it has been fixed before.
    sim.with_org(|org| org.project_mut(&payments).unwrap().api_keys.push(removed));
    let (_, doc) = audit(dir.path(), &url, &[]);
    assert_eq!(status_of(&doc, rule, key).as_deref(), Some("open"));
    assert_eq!(resolved_at_of(&doc, rule, key), resolved_at.as_str());
}

#[test]
fn findings_resolve_open_and_reopen_as_the_organization_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let sim = sim(Org::demo(Utc::now().timestamp()));
    let url = sim.base_url();

    let (code, doc) = audit(dir.path(), &url, &[]);
    assert_eq!(code, 0);
    assert_eq!(doc["snapshot"]["status"], "complete");
    assert!(doc["snapshot"]["requests"].as_u64().unwrap() > 0);
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
    let (code, _) = audit(dir.path(), &url, &["--fail-on", "high"]);
    assert_eq!(code, 1, "high findings are open");

    // Fix a violation, add one, delete a key.
    let payments = ProjectId::from("proj_payments");
    let removed = sim.with_org(|org| {
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
        let p = org.project_mut(&payments).unwrap();
        let i = p
            .api_keys
            .iter()
            .position(|k| k.id.as_str() == "key_pay_ada_notebook")
            .unwrap();
        p.api_keys.remove(i)
    });
    let (code, doc) = audit(dir.path(), &url, &[]);
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
    sim.with_org(|org| org.project_mut(&payments).unwrap().api_keys.push(removed));
    let (_, doc) = audit(dir.path(), &url, &[]);
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
        kinds(&events(
            &db,
            "api-key-stale",
            "key_pay_ada_notebook",
            "proj_payments"
        )),
        [EventKind::Opened, EventKind::Resolved, EventKind::Reopened]
    );
    assert_eq!(
        kinds(&events(
            &db,
            "project-retention-not-zdr",
            "proj_support",
            "proj_support"
        )),
        [EventKind::Opened, EventKind::Resolved]
    );

    // The key is deleted again and the key list is read, but another scope of the same
    // project (its users) cannot be read: the project was not read completely, so the
    // finding keeps its status, and the audit says it cannot vouch (exit 3 beats 1).
    sim.with_org(|org| {
        let p = org.project_mut(&payments).unwrap();
        p.api_keys
            .retain(|k| k.id.as_str() != "key_pay_ada_notebook");
    });
    sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_payments/users".into(),
        kind: FaultKind::Status(500),
        times: None,
    });
    let (code, doc) = audit(dir.path(), &url, &["--fail-on", "high"]);
    assert_eq!(code, 3);
    assert_eq!(doc["snapshot"]["status"], "partial");
    assert_eq!(
        status_of(&doc, "api-key-stale", "key_pay_ada_notebook").as_deref(),
        Some("open")
    );
    assert_eq!(
        events(
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
    sim.clear_faults();
    let (code, doc) = audit(dir.path(), &url, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        status_of(&doc, "api-key-stale", "key_pay_ada_notebook").as_deref(),
        Some("resolved")
    );
}

#[test]
fn a_snapshot_past_its_time_limit_ends_on_time_and_resolves_nothing_it_did_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Org::demo(Utc::now().timestamp()));
    let url = sim.base_url();
    let (code, doc) = audit(dir.path(), &url, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        status_of(&doc, "api-key-stale", "key_pay_ada_notebook").as_deref(),
        Some("open")
    );

    // The key is deleted, and one list of the same project answers only after a minute,
    // within the request timeout: without a limit on the whole snapshot, the audit would
    // wait for it.
    let payments = ProjectId::from("proj_payments");
    sim.with_org(|org| {
        org.project_mut(&payments)
            .unwrap()
            .api_keys
            .retain(|k| k.id.as_str() != "key_pay_ada_notebook");
    });
    sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_payments/users".into(),
        kind: FaultKind::Delay(std::time::Duration::from_secs(60)),
        times: None,
    });
    std::fs::write(
        dir.path().join("limited.toml"),
        "[openai]\ntimeout_secs = 120\nsnapshot_timeout = \"3s\"\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = run(
        dir.path(),
        &url,
        &["--config", "limited.toml", "audit", "--format", "json"],
    );
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        took < std::time::Duration::from_secs(30),
        "the audit took {took:?}, past its 3 s limit: {stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["snapshot"]["status"], "partial");
    assert_eq!(
        status_of(&doc, "api-key-stale", "key_pay_ada_notebook").as_deref(),
        Some("open"),
        "its project was not read completely"
    );
    assert_eq!(
        stderr
            .matches("every read not finished fails its scope")
            .count(),
        1,
        "the limit is logged once: {stderr}"
    );
    assert!(
        stderr.contains(
            "GET /organization/projects/proj_payments/users: not read: the snapshot reached its \
             time limit"
        ),
        "the audit's error names the unread scope: {stderr}"
    );
}

#[test]
fn exemptions_hold_until_they_expire_and_then_reopen_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let sim = sim(Org::demo(Utc::now().timestamp()));
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
        &sim.base_url(),
        &["--config", "exempt.toml", "--fail-on", "medium"],
    );
    assert_eq!(
        status_of(&doc, "project-no-spend-alert", "proj_support").as_deref(),
        Some("exempt")
    );
    assert_eq!(code, 1, "other medium findings are still open");
    // The report says until when, whose, and why.
    let exempt = doc["findings"]
        .as_array()
        .and_then(|all| {
            all.iter().find(|f| {
                f["rule_id"] == "project-no-spend-alert" && f["resource_id"] == "proj_support"
            })
        })
        .unwrap_or_else(|| panic!("no exempt finding in {doc:#}"));
    assert_eq!(
        exempt["exemption"],
        serde_json::json!({"expires": future, "owner": "finops@acme-robotics.com",
                           "reason": "support has a hard cap"}),
        "{exempt:#}"
    );
    let sarif = run(
        dir.path(),
        &sim.base_url(),
        &[
            "--config",
            "exempt.toml",
            "audit",
            "--offline",
            "--format",
            "sarif",
        ],
    );
    let sarif = String::from_utf8_lossy(&sarif.stdout);
    assert!(
        sarif.contains(&format!(
            "exempted in orgwarden.toml until {future} (owner finops@acme-robotics.com): \
             support has a hard cap"
        )),
        "{sarif}"
    );
    // The `findings` view gives the same terms to SQL.
    let query = run(
        dir.path(),
        &sim.base_url(),
        &[
            "query",
            "--format",
            "csv",
            "SELECT exemption_expires, exemption_owner, exemption_reason FROM findings \
             WHERE rule_id = 'project-no-spend-alert' AND resource_id = 'proj_support'",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&query.stdout),
        format!(
            "exemption_expires,exemption_owner,exemption_reason\n\
             {future},finops@acme-robotics.com,support has a hard cap\n"
        )
    );

    let past = (Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    std::fs::write(dir.path().join("expired.toml"), exemption(&past)).unwrap();
    // Time passes: the finding was exempt under the terms that have now lapsed. (Only
    // moving the date back would read as the configuration changing: a removed exemption
    // is not said to have expired.)
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE finding SET exemption = json_set(exemption, '$.expires', ?1)
             WHERE rule_id = 'project-no-spend-alert' AND resource_id = 'proj_support'",
            [&past],
        )
        .unwrap();
    let (_, doc) = audit(dir.path(), &sim.base_url(), &["--config", "expired.toml"]);
    assert_eq!(
        status_of(&doc, "project-no-spend-alert", "proj_support").as_deref(),
        Some("open")
    );
    let events = events(
        &db,
        "project-no-spend-alert",
        "proj_support",
        "proj_support",
    );
    assert_eq!(
        kinds(&events),
        [EventKind::Exempted, EventKind::ExemptionExpired]
    );
    assert_eq!(
        events[1].reason,
        format!("exemption expired on {past} (owner finops@acme-robotics.com)")
    );
}

#[test]
fn an_exemption_that_matches_no_finding_is_warned_about_by_the_audit() {
    // A mistyped resource would otherwise show only as a finding that stays open.
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Org::demo(Utc::now().timestamp()));
    let future = (Utc::now() + chrono::Duration::days(60))
        .format("%Y-%m-%d")
        .to_string();
    let exemption = |resource: &str| {
        format!(
            "[[exemption]]\nrule = \"project-no-spend-alert\"\nresource = \"{resource}\"\n\
             reason = \"r\"\nowner = \"o@acme.com\"\nexpires = \"{future}\"\n"
        )
    };
    std::fs::write(
        dir.path().join("exempt.toml"),
        exemption("proj_suport") + &exemption("proj_support"),
    )
    .unwrap();
    let out = run(
        dir.path(),
        &sim.base_url(),
        &["--config", "exempt.toml", "audit", "--format", "json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning[exemption-unused]")
            && stderr.contains("`project-no-spend-alert` on `proj_suport` matches no finding"),
        "{stderr}"
    );
    assert!(!stderr.contains("`proj_support` matches"), "{stderr}");
    // The report on stdout is whole.
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status_of(&doc, "project-no-spend-alert", "proj_support").as_deref(),
        Some("exempt")
    );
}

#[test]
fn offline_audit_evaluates_the_stored_snapshot_without_calling_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Org::demo(Utc::now().timestamp()));
    let (code, online) = audit(dir.path(), &sim.base_url(), &[]);
    assert_eq!(code, 0);
    let served = sim.requests();
    let (code, offline) = audit(dir.path(), &sim.base_url(), &["--offline"]);
    assert_eq!(code, 0);
    assert_eq!(sim.requests(), served, "--offline sent no request");
    assert_eq!(offline["snapshot"]["id"], online["snapshot"]["id"]);
    assert_eq!(
        offline["findings"].as_array().unwrap().len(),
        online["findings"].as_array().unwrap().len()
    );

    let empty = tempfile::tempdir().unwrap();
    let out = run(empty.path(), &sim.base_url(), &["audit", "--offline"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database at audit.db"));
}

#[test]
fn offline_audit_judges_a_stored_snapshot_as_of_when_it_was_read() {
    // A key last used 100 days ago: stale now (over 90 days), but 70 days idle when a
    // snapshot 30 days old was read. Judged by today, that snapshot would call it stale
    // although it may have been used since; audit-log windows would likewise pass over
    // their events and resolve findings with nothing read.
    let org = serde_json::json!({
        "organization": "acme",
        "users": [{"id": "user-ada", "name": "Ada", "email": "ada@acme.com"}],
        "projects": [{
            "id": "proj_a", "name": "A", "created_at": "-400d",
            "users": [{"id": "user-ada", "role": "owner"}],
            "api_keys": [{"id": "key_a", "name": "batch", "created_at": "-300d",
                          "last_used_at": "-100d", "owner": {"type": "user", "id": "user-ada"}}]
        }]
    });
    let sim = sim(Org::from_json_str(&org.to_string(), Utc::now().timestamp()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &sim.base_url(), &["snapshot"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    db.execute(
        "UPDATE snapshot SET started_at = started_at - 30 * 86400, \
         finished_at = finished_at - 30 * 86400",
        [],
    )
    .unwrap();
    drop(db);
    let (_, offline) = audit(dir.path(), &sim.base_url(), &["--offline"]);
    assert_eq!(
        status_of(&offline, "api-key-stale", "key_a"),
        None,
        "{offline:#}"
    );
    // A live audit reads it now, and judges it now.
    let (_, live) = audit(dir.path(), &sim.base_url(), &[]);
    assert_eq!(
        status_of(&live, "api-key-stale", "key_a").as_deref(),
        Some("open"),
        "{live:#}"
    );
}

#[test]
fn a_refused_key_is_exit_3_and_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SimOptions {
        admin_key: Some("sk-admin-the-right-one".into()),
        ..SimOptions::default()
    };
    let sim = start_background(Org::demo(Utc::now().timestamp()), opts).unwrap();
    let out = run(dir.path(), &sim.base_url(), &["audit", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(!stderr.contains(KEY) && !String::from_utf8_lossy(&out.stdout).contains(KEY));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["snapshot"]["status"], "failed");
}

#[test]
fn an_exported_key_wins_over_the_key_file_and_says_the_file_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SimOptions {
        admin_key: Some(KEY.into()),
        ..SimOptions::default()
    };
    let sim = start_background(Org::demo(Utc::now().timestamp()), opts).unwrap();
    let file_key = "sk-admin-in-the-file-0123456789";
    std::fs::write(dir.path().join("admin_key"), file_key).unwrap();
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[openai]\norganization = \"acme-robotics\"\nadmin_key_file = \"admin_key\"\n",
    )
    .unwrap();
    let out = run(
        dir.path(),
        &sim.base_url(),
        &["--config", "orgwarden.toml", "snapshot", "--format", "json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The simulator accepts only the exported key: the file's was not sent.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("OPENAI_ADMIN_KEY is set, so [openai] admin_key_file")
            && stderr.contains("is not read"),
        "{stderr}"
    );
    let shown = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
    assert!(!shown.contains(KEY) && !shown.contains(file_key), "{shown}");
}

/// Runs orgwarden in `dir` against `base_url` with its stdout, and its stderr too when
/// `stderr_too`, closed by the reader long before the crawl ends and anything is printed.
fn run_with_closed_pipes(
    dir: &Path,
    base_url: &str,
    args: &[&str],
    stderr_too: bool,
) -> std::process::Output {
    use std::process::Stdio;

    let mut child = crate::support::orgwarden()
        .args(["--db", "audit.db", "--base-url", base_url])
        .args(args)
        .current_dir(dir)
        .env("OPENAI_ADMIN_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    if stderr_too {
        drop(child.stderr.take());
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_audit_or_snapshot_whose_output_pipe_closes_keeps_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Org::demo(Utc::now().timestamp()));
    for (args, code) in [
        (&["audit", "--fail-on", "low"][..], 1),
        (&["snapshot"][..], 0),
        (&["snapshot", "--format", "json"][..], 0),
    ] {
        let out = run_with_closed_pipes(dir.path(), &sim.base_url(), args, false);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}

/// `orgwarden audit 2>&1 | head`: stderr is the closed pipe too. What would go there (the
/// failed scopes of a partial read, a config file's diagnostics) is dropped, not a panic,
/// so the exit code is still the command's.
#[test]
fn an_audit_whose_stderr_pipe_closes_keeps_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[openai]\norganization = \"x\"\nconcurrency = \"eight\"\n",
    )
    .unwrap();
    let sim = sim(Org::demo(Utc::now().timestamp()));
    let refusing = start_background(
        Org::demo(Utc::now().timestamp()),
        SimOptions {
            admin_key: Some("sk-admin-another-one".into()),
            ..SimOptions::default()
        },
    )
    .unwrap();
    for (base_url, args, code) in [
        (sim.base_url(), &["audit", "--fail-on", "low"][..], 1),
        (refusing.base_url(), &["audit"][..], 3),
        (refusing.base_url(), &["snapshot"][..], 3),
        (sim.base_url(), &["--config", "bad.toml", "audit"][..], 2),
    ] {
        let status = run_with_closed_pipes(dir.path(), &base_url, args, true).status;
        assert_eq!(status.code(), Some(code), "{args:?}: {status:?}");
    }
}

#[test]
fn findings_command_filters_by_status_severity_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(Org::demo(Utc::now().timestamp()));
    audit(dir.path(), &sim.base_url(), &[]);
    let list = |args: &[&str]| -> Value {
        let mut all = vec!["findings", "--format", "json"];
        all.extend_from_slice(args);
        let out = run(dir.path(), &sim.base_url(), &all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let high = list(&["--severity", "high"]);
    assert!(!high.as_array().unwrap().is_empty());
    assert!(
        high.as_array()
            .unwrap()
            .iter()
            .all(|f| f["severity"] == "high")
    );
    let stale = list(&["--rule", "api-key-stale", "--status", "all"]);
    assert_eq!(stale.as_array().unwrap().len(), 2);
    assert!(
        stale
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["rule_id"] == "api-key-stale")
    );
    assert_eq!(list(&["--status", "resolved"]).as_array().unwrap().len(), 0);
}
