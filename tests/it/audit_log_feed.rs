//! End to end: the binary reads the organization's audit log from the in-process simulator
//! with every snapshot — the first run the lookback, later runs only what is new (one
//! request when nothing is) — keeps nothing of a read that fails half-way and catches up on
//! the next run, keeps events of the same second read by two runs, says when the
//! organization has audit logging off, and sends no request when `[audit_log]` is off.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use orgwarden::sim::{Fault, FaultKind, Org, SimHandle, SimOptions, start_background};
use serde_json::{Value, json};

const KEY: &str = "sk-admin-auditlog-0123456789";
const PATH: &str = "/organization/audit_logs";

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

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    })
}

/// One `snapshot --format json` run: its exit code and its audit-log read.
fn snapshot(dir: &Path, url: &str) -> (i32, Value, Value) {
    let out = run(dir, url, &["snapshot", "--format", "json"]);
    let doc = json_of(&out);
    (
        out.status.code().unwrap_or(-1),
        doc["audit_log"].clone(),
        doc,
    )
}

/// The stored events' ids, newest first.
fn stored_ids(dir: &Path, url: &str) -> Vec<String> {
    let out = run(
        dir,
        url,
        &[
            "query",
            "--format",
            "json",
            "SELECT id FROM audit_log_events ORDER BY effective_at DESC, id DESC",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// An organization with one project and `events`, each `(id, effective_at)`.
fn org_with(events: &[(String, Value)], enabled: bool) -> Org {
    let events: Vec<Value> = events
        .iter()
        .map(|(id, at)| {
            json!({"id": id, "type": "login.succeeded", "effective_at": at,
                   "actor": {"type": "session", "session": {
                       "user": {"id": "user-ada", "email": "ada@acme.com"},
                       "ip_address": "203.0.113.5"}},
                   "login.succeeded": {}})
        })
        .collect();
    let text = json!({
        "organization": "acme",
        "projects": [{"id": "proj_a", "name": "A", "created_at": "-100d"}],
        "audit_log": {"enabled": enabled, "events": events}
    })
    .to_string();
    Org::from_json_str(&text, chrono::Utc::now().timestamp()).unwrap()
}

/// `n` events a minute apart, the newest an hour ago, plus one outside the 30-day lookback.
fn many(n: usize) -> Vec<(String, Value)> {
    let mut events: Vec<(String, Value)> = (0..n)
        .map(|i| (format!("audit_log-m{i:04}"), json!(format!("-{}m", 60 + i))))
        .collect();
    events.push(("audit_log-old".to_owned(), json!("-40d")));
    events
}

#[test]
fn the_first_run_reads_the_lookback_and_a_run_with_nothing_new_costs_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(org_with(&many(150), true));
    let url = sim.base_url();
    let (code, read, doc) = snapshot(dir.path(), &url);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(read["outcome"], "complete", "{read}");
    assert_eq!(
        read["received"], 150,
        "the event before the lookback is not read"
    );
    assert_eq!(read["stored"], 150);
    assert_eq!(read["requests"], 2, "150 events are two pages of 100");
    let ids = stored_ids(dir.path(), &url);
    assert_eq!(ids.len(), 150);
    assert!(!ids.contains(&"audit_log-old".to_owned()));

    let (code, read, doc) = snapshot(dir.path(), &url);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(read["outcome"], "complete", "{read}");
    assert_eq!(read["requests"], 1, "nothing new: one request");
    assert_eq!(read["stored"], 0);
    assert_eq!(stored_ids(dir.path(), &url).len(), 150);
}

#[test]
fn a_500_in_the_middle_of_the_pages_stores_nothing_and_the_next_run_stores_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(org_with(&many(250), true));
    let url = sim.base_url();
    // The first page is answered; every later one fails, retries included.
    sim.add_fault(Fault {
        path_prefix: PATH.into(),
        kind: FaultKind::Delay(Duration::ZERO),
        times: Some(1),
    });
    sim.add_fault(Fault {
        path_prefix: PATH.into(),
        kind: FaultKind::Status(500),
        times: None,
    });
    let out = run(dir.path(), &url, &["snapshot", "--format", "json"]);
    let (code, doc) = (out.status.code(), json_of(&out));
    let read = doc["audit_log"].clone();
    assert_eq!(
        code,
        Some(3),
        "a failed audit-log read makes the snapshot partial: {doc}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the audit-log read failed; none of its events were kept")
            && stderr.contains("HTTP 500"),
        "{stderr}"
    );
    assert_eq!(doc["status"], "partial");
    assert_eq!(read["outcome"], "failed", "{read}");
    assert_eq!(read["received"], 100, "the first page was read");
    assert_eq!(read["stored"], 0);
    assert!(
        stored_ids(dir.path(), &url).is_empty(),
        "nothing of it is kept"
    );

    sim.clear_faults();
    let (code, read, doc) = snapshot(dir.path(), &url);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(read["outcome"], "complete", "{read}");
    assert_eq!(read["stored"], 250);
    let mut ids = stored_ids(dir.path(), &url);
    ids.dedup();
    assert_eq!(ids.len(), 250, "every event exactly once");
}

#[test]
fn events_of_the_same_second_read_by_two_runs_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let at = chrono::Utc::now().timestamp() - 3_600;
    let events = [
        ("audit_log-s1".to_owned(), json!(at)),
        ("audit_log-s2".to_owned(), json!(at)),
    ];
    let sim = sim(org_with(&events, true));
    let url = sim.base_url();
    let (code, read, _) = snapshot(dir.path(), &url);
    assert_eq!((code, read["stored"].clone()), (0, json!(2)), "{read}");
    // An event of the same second reaches the log after the first read.
    sim.with_org(|org| {
        assert!(org.audit_log.insert(json!({
            "id": "audit_log-s0", "type": "login.failed", "effective_at": at,
            "login.failed": {"error_code": "invalid_password"}
        })));
    });
    let (code, read, _) = snapshot(dir.path(), &url);
    assert_eq!(code, 0);
    assert_eq!(
        read["received"], 3,
        "the overlap re-reads the boundary second"
    );
    assert_eq!(read["stored"], 1);
    assert_eq!(
        stored_ids(dir.path(), &url),
        ["audit_log-s2", "audit_log-s1", "audit_log-s0"]
    );
}

#[test]
fn an_organization_with_audit_logging_off_is_recorded_disabled_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(org_with(&many(3), false));
    let url = sim.base_url();
    let (code, read, doc) = snapshot(dir.path(), &url);
    assert_eq!(code, 0, "audit logging off is not a failed read: {doc}");
    assert_eq!(doc["status"], "complete");
    assert_eq!(read["outcome"], "disabled", "{read}");
    assert!(
        read["error"]
            .as_str()
            .unwrap()
            .contains("Audit logging is not enabled"),
        "{read}"
    );
    let out = run(
        dir.path(),
        &url,
        &[
            "query",
            "--format",
            "json",
            "SELECT outcome, http_status FROM audit_log_status",
        ],
    );
    assert_eq!(
        json_of(&out),
        json!([{"outcome": "disabled", "http_status": 403}])
    );
    // `events` says so before anything else, so no event is not read as a quiet org.
    let out = run(dir.path(), &url, &["events"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("Audit logging is off for this organization (every read since "),
        "{text}"
    );
    let doc = json_of(&run(dir.path(), &url, &["events", "--format", "json"]));
    assert_eq!(doc["feed"]["outcome"], "disabled");
    assert!(doc["feed"]["disabled_since"].is_string(), "{doc}");
    assert_eq!(doc["events"], json!([]));
}

#[test]
fn events_of_a_project_no_snapshot_listed_are_found_by_its_id_or_the_name_the_events_give() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(org_with(&[], true));
    let url = sim.base_url();
    // A project deleted before orgwarden ever read it: only its events know it.
    sim.with_org(|org| {
        assert!(org.audit_log.insert(json!({
            "id": "audit_log-gone", "type": "project.archived",
            "effective_at": chrono::Utc::now().timestamp() - 60,
            "project": {"id": "proj_gone", "name": "Gone"},
            "actor": {"type": "session", "session": {"user": {"id": "user-bob",
                      "email": "bob@acme.com"}, "ip_address": "203.0.113.9"}},
            "project.archived": {"id": "proj_gone"}
        })));
    });
    let (code, _, doc) = snapshot(dir.path(), &url);
    assert_eq!(code, 0, "{doc}");
    let ids = |out: &Output| -> Vec<String> {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_of(out)["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let by_id = run(
        dir.path(),
        &url,
        &["events", "--format", "json", "--project", "proj_gone"],
    );
    assert_eq!(ids(&by_id), ["audit_log-gone"]);
    let by_name = run(
        dir.path(),
        &url,
        &["events", "--format", "json", "--project", "Gone"],
    );
    assert_eq!(ids(&by_name), ["audit_log-gone"]);
    assert_eq!(
        String::from_utf8_lossy(&by_name.stderr).trim_end(),
        "note: no project is named `Gone` now; proj_gone was, and is no longer listed"
    );
    // A typo of a name only the events know gets it as the suggestion.
    let typo = run(dir.path(), &url, &["events", "--project", "Gnoe"]);
    assert_eq!(typo.status.code(), Some(2));
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(err.contains("did you mean `Gone`"), "{err}");

    // A deleted project whose name a current one took: the current one, with a note.
    sim.with_org(|org| {
        assert!(org.audit_log.insert(json!({
            "id": "audit_log-old-a", "type": "project.archived",
            "effective_at": chrono::Utc::now().timestamp() - 30,
            "project": {"id": "proj_old_a", "name": "A"},
            "actor": {"type": "session", "session": {"user": {"id": "user-bob",
                      "email": "bob@acme.com"}, "ip_address": "203.0.113.9"}},
            "project.archived": {"id": "proj_old_a"}
        })));
    });
    assert_eq!(snapshot(dir.path(), &url).0, 0);
    let shared = run(
        dir.path(),
        &url,
        &["events", "--format", "json", "--project", "A"],
    );
    assert!(
        ids(&shared).is_empty(),
        "proj_a's events, of which there are none"
    );
    assert_eq!(
        String::from_utf8_lossy(&shared.stderr).trim_end(),
        "note: `A` is proj_a's name now, and was also proj_old_a's, no longer listed: give an \
         id to choose"
    );
}

#[test]
fn events_lists_stored_events_newest_first_with_filters_and_says_when_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(org_with(&many(3), true));
    let url = sim.base_url();
    // A snapshot that did not read the audit log: said first.
    let config = dir.path().join("orgwarden.toml");
    std::fs::write(&config, "[audit_log]\nenabled = false\n").unwrap();
    assert_eq!(snapshot(dir.path(), &url).0, 0);
    std::fs::remove_file(&config).unwrap();
    let out = run(dir.path(), &url, &["events"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("The audit log was never read"), "{text}");
    // A project the error does not know may be one only the unread events name.
    let unknown = run(dir.path(), &url, &["events", "--project", "proj_gone"]);
    assert_eq!(unknown.status.code(), Some(2));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains(
            "no project has the id or name `proj_gone` (the audit log was never read, so a \
             project that only its events name is not known yet)"
        ),
        "{err}"
    );
    sim.with_org(|org| {
        assert!(org.audit_log.insert(json!({
            "id": "audit_log-key", "type": "api_key.created",
            "effective_at": chrono::Utc::now().timestamp() - 60,
            "project": {"id": "proj_a", "name": "A\u{1b}[31m"},
            "actor": {"type": "api_key", "api_key": {"id": "key_admin", "type": "user",
                      "user": {"id": "user-bob", "email": "bob@acme.com"}}},
            "api_key.created": {"id": "key_new", "data": {"scopes": ["api.model.request"]}}
        })));
    });
    let (code, _, doc) = snapshot(dir.path(), &url);
    assert_eq!(code, 0, "{doc}");
    let doc = json_of(&run(dir.path(), &url, &["events", "--format", "json"]));
    assert_eq!(doc["feed"]["outcome"], "complete");
    assert_eq!(doc["feed"]["note"], Value::Null);
    let ids: Vec<&str> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "audit_log-key",
            "audit_log-m0000",
            "audit_log-m0001",
            "audit_log-m0002"
        ]
    );
    let key = &doc["events"][0];
    assert_eq!(key["resource_id"], "key_new");
    assert_eq!(key["actor"]["described"], "bob@acme.com with key key_admin");
    let only = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["events", "--format", "json"];
        all.extend_from_slice(args);
        json_of(&run(dir.path(), &url, &all))["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(only(&["--type", "api_key.*"]), ["audit_log-key"]);
    assert_eq!(only(&["--actor", "BOB@acme.com"]), ["audit_log-key"]);
    assert_eq!(only(&["--project", "proj_a"]), ["audit_log-key"]);
    assert_eq!(only(&["--project", "A"]), ["audit_log-key"], "by its name");
    // A typo is an error with the closest names, not an empty list that reads as all clear.
    let typo = run(dir.path(), &url, &["events", "--project", "proj_b"]);
    assert_eq!(typo.status.code(), Some(2));
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(
        err.contains("no project has the id or name `proj_b`; did you mean `proj_a`"),
        "{err}"
    );
    assert_eq!(only(&["--since", "30m"]), ["audit_log-key"]);
    assert_eq!(only(&["--limit", "2"]).len(), 2);
    // A limit that hides older matching events says so; one that hides none does not.
    let truncated = |limit: &str| {
        json_of(&run(
            dir.path(),
            &url,
            &["events", "--format", "json", "--limit", limit],
        ))["truncated"]
            .clone()
    };
    assert_eq!(truncated("3"), json!(true));
    assert_eq!(truncated("4"), json!(false));
    let out = run(dir.path(), &url, &["events", "--limit", "3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Only the newest 3 matching events are shown"),
        "{text}"
    );
    let out = run(dir.path(), &url, &["events", "--limit", "4"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Only the newest"));
    let out = run(
        dir.path(),
        &url,
        &["events", "--format", "csv", "--limit", "1"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Only the newest 1 matching"));
    // A window reaching past the calendar's start is every event, not a panic.
    assert_eq!(only(&["--since", "99999999999w"]).len(), 4);
    let zero = run(dir.path(), &url, &["events", "--limit", "0"]);
    assert_eq!(zero.status.code(), Some(2), "--limit 0 is refused");
    // The table shows the actor in words, and API text inert.
    let out = run(dir.path(), &url, &["events", "--type", "api_key.*"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bob@acme.com with key key_admin"), "{text}");
    assert!(text.contains("api_key.created"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
}

#[test]
fn an_event_time_no_rfc_3339_time_can_say_is_listed_as_its_unix_seconds() {
    // An API that sent milliseconds (year 55840), or a time past any calendar: `events`
    // showed the first as `+55840-…`, which no RFC 3339 reader takes, and the second as
    // 1970-01-01T00:00:00Z, another time altogether.
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(org_with(&[("audit_log-ok".to_owned(), json!("-1h"))], true));
    let url = sim.base_url();
    sim.with_org(|org| {
        for (id, at) in [
            ("audit_log-ms", 1_700_000_000_000_i64),
            ("audit_log-far", 10_000_000_000_000_000),
        ] {
            assert!(org.audit_log.insert(json!({
                "id": id, "type": "login.succeeded", "effective_at": at,
                "actor": {"type": "session", "session": {
                    "user": {"id": "user-ada", "email": "ada@acme.com"},
                    "ip_address": "203.0.113.5"}},
                "login.succeeded": {}
            })));
        }
    });
    assert_eq!(snapshot(dir.path(), &url).0, 0);
    let doc = json_of(&run(dir.path(), &url, &["events", "--format", "json"]));
    let times: Vec<(&str, &str)> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap(),
                e["effective_at"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(times[0], ("audit_log-far", "10000000000000000"));
    assert_eq!(times[1], ("audit_log-ms", "1700000000000"));
    assert!(times[2].1.ends_with('Z'), "{times:?}");
    for format in ["table", "csv"] {
        let out = run(dir.path(), &url, &["events", "--format", format]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("1700000000000") && text.contains("10000000000000000"),
            "{text}"
        );
        assert!(!text.contains("1970") && !text.contains("+55840"), "{text}");
    }
}

#[test]
fn a_rule_message_keeps_its_detail_when_an_event_time_has_no_calendar_date() {
    // The `_utc` column of a time in milliseconds is NULL, and a message built with `||`
    // around it was NULL as a whole: the finding said only its rule's title.
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(org_with(&[], true));
    let url = sim.base_url();
    sim.with_org(|org| {
        assert!(org.audit_log.insert(json!({
            "id": "audit_log-scim", "type": "scim.disabled", "effective_at": 1_700_000_000_000_i64,
            "actor": {"type": "session", "session": {
                "user": {"id": "user-ada", "email": "ada@acme.com"},
                "ip_address": "203.0.113.5"}},
            "scim.disabled": {"id": "org"}
        })));
    });
    let out = run(dir.path(), &url, &["audit", "--format", "json"]);
    let doc = json_of(&out);
    let scim = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "scim-disabled")
        .unwrap_or_else(|| panic!("{doc:#}"));
    let message = scim["message"].as_str().unwrap();
    assert!(
        message.starts_with("SCIM was disabled by ada@acme.com")
            && message.contains(" at 1700000000000"),
        "{message}"
    );
}

#[test]
fn audit_log_enabled_false_sends_no_request() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[audit_log]\nenabled = false\n",
    )
    .unwrap();
    let sim = sim(org_with(&many(3), true));
    let url = sim.base_url();
    // Any audit-log request would fail, and make the snapshot partial.
    sim.add_fault(Fault {
        path_prefix: PATH.into(),
        kind: FaultKind::Status(500),
        times: None,
    });
    let (code, read, doc) = snapshot(dir.path(), &url);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(read, Value::Null, "no read is recorded: {doc}");
    assert!(stored_ids(dir.path(), &url).is_empty());
}

#[test]
fn a_log_longer_than_the_page_bound_keeps_its_newest_events_instead_of_failing_every_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[openai]\norganization = \"acme\"\nmax_pages_per_scope = 2\n[spend]\nenabled = false\n",
    )
    .unwrap();
    let sim = sim(org_with(&many(250), true));
    let url = sim.base_url();
    let out = run(
        dir.path(),
        &url,
        &["--config", "orgwarden.toml", "snapshot", "--format", "json"],
    );
    let doc = json_of(&out);
    assert_eq!(out.status.code(), Some(0), "{doc}");
    let read = &doc["audit_log"];
    assert_eq!(read["outcome"], "complete", "{read}");
    assert_eq!(read["requests"], 2, "{read}");
    assert_eq!(read["stored"], 200, "the newest two pages are kept: {read}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("more than 2 pages") && stderr.contains("max_pages_per_scope"),
        "{stderr}"
    );
    // What was not read is not vouched for: the span starts after the oldest event read.
    assert_read_since_the_oldest_of(dir.path(), &url, 200);
    // `events` says so when its window reaches back past it, and only then.
    let out = run(dir.path(), &url, &["events", "--limit", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("The audit log was read without a gap only from "),
        "{text}"
    );
    let doc = json_of(&run(dir.path(), &url, &["events", "--format", "json"]));
    assert!(doc["feed"]["read_from"].is_string(), "{doc}");
    assert!(
        doc["feed"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("max_pages_per_scope")),
        "{doc}"
    );
    let out = run(
        dir.path(),
        &url,
        &["events", "--since", "2h", "--limit", "1"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("without a gap"), "{text}");
    // The next run reads only what is new: one request, nothing stored twice.
    let out = run(
        dir.path(),
        &url,
        &["--config", "orgwarden.toml", "snapshot", "--format", "json"],
    );
    let doc = json_of(&out);
    assert_eq!(doc["audit_log"]["requests"], 1, "{doc}");
    assert_eq!(doc["audit_log"]["stored"], 0, "{doc}");
}

#[test]
fn a_first_read_cut_off_by_the_snapshot_time_limit_keeps_its_newest_events() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[openai]\norganization = \"acme\"\nsnapshot_timeout = \"2s\"\n[spend]\nenabled = false\n",
    )
    .unwrap();
    // 1,000 events are ten pages; at 400 ms a request they cannot all be read in 2 s.
    let options = SimOptions {
        latency: Duration::from_millis(400),
        ..SimOptions::default()
    };
    let sim = start_background(org_with(&many(1000), true), options).unwrap();
    let url = sim.base_url();
    let out = run(
        dir.path(),
        &url,
        &["--config", "orgwarden.toml", "snapshot", "--format", "json"],
    );
    let doc = json_of(&out);
    let read = &doc["audit_log"];
    // Failing it would fail every run from the same point, for ever.
    assert_eq!(read["outcome"], "complete", "{doc}");
    let stored = read["stored"].as_u64().unwrap();
    assert!(stored > 0 && stored < 1000, "{read}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("snapshot_timeout = \"2s\") ended the audit-log read"),
        "{stderr}"
    );
    // The span not read is not vouched for.
    assert_read_since_the_oldest_of(dir.path(), &url, stored);
}

/// The latest read's span starts at the oldest of the newest `kept` events of [`many`].
fn assert_read_since_the_oldest_of(dir: &Path, url: &str, kept: u64) {
    let status = run(
        dir,
        url,
        &[
            "query",
            "--format",
            "json",
            "SELECT since FROM audit_log_status",
        ],
    );
    let since = json_of(&status)[0]["since"].as_i64().unwrap();
    let oldest_kept = chrono::Utc::now().timestamp() - (60 + i64::try_from(kept).unwrap() - 1) * 60;
    assert!(
        (since - oldest_kept).abs() < 120,
        "since {since}, oldest kept {oldest_kept}"
    );
}

#[test]
fn an_event_type_the_client_does_not_know_is_stored_and_listed_with_its_actor_inert() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(org_with(&[], true));
    let url = sim.base_url();
    let at = chrono::Utc::now().timestamp() - 120;
    sim.with_org(|org| {
        assert!(org.audit_log.insert(json!({
            "id": "audit_log-new", "type": "workload_identity.bound", "effective_at": at,
            "actor": {"type": "session", "session": {
                "user": {"id": "user-eve", "email": "eve@acme.com\n\u{1b}[2J| forged | row |"},
                "ip_address": "198.51.100.7\u{202e}",
                "user_agent": "curl\r\n\u{7}"}},
            "workload_identity.bound": {"id": "wip_1"}
        })));
    });
    let (code, read, doc) = snapshot(dir.path(), &url);
    assert_eq!(code, 0, "an unknown type is no error: {doc}");
    assert_eq!(read["stored"], 1, "{read}");
    for format in ["table", "csv", "json"] {
        let out = run(dir.path(), &url, &["events", "--format", format]);
        assert!(out.status.success(), "{format}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("workload_identity.bound"), "{format}: {text}");
        assert!(
            !text
                .chars()
                .any(|c| c == '\u{1b}' || c == '\u{202e}' || c == '\u{7}'),
            "{format}: {text}"
        );
        if format != "json" {
            // One event in one row (the table: four border lines): the email's newline
            // starts no forged row.
            assert_eq!(
                text.trim_end().lines().count(),
                if format == "csv" { 2 } else { 5 },
                "{format}: {text}"
            );
        }
    }
    let doc = json_of(&run(dir.path(), &url, &["events", "--format", "json"]));
    assert_eq!(doc["events"][0]["resource_id"], "wip_1");
    assert_eq!(
        doc["events"][0]["actor"]["email"], "eve@acme.com\n\u{1b}[2J| forged | row |",
        "JSON keeps the API's text exactly"
    );
}
