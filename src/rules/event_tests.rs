//! Rules over the audit log: the window (`:window_start`), its validation and overrides,
//! `:unread` for the log, and the lifecycle of event findings, over events inserted
//! straight into the contract's tables.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value as Json, json};

use super::*;
use crate::findings::{self, Coverage, Finding, RuleMeta, Status};
use crate::model::{CrawlStats, Scope, ScopeOutcome, ScopeResult, SnapshotId, SnapshotStatus};
use crate::store::Store;

fn load_with(config_text: &str) -> Loaded {
    let (config, diags) = Config::check(config_text, Path::new("orgwarden.toml"));
    load_checked(
        &config,
        diags,
        NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
    )
}

fn codes(d: &Diagnostics) -> Vec<&'static str> {
    let mut codes: Vec<&str> = d.items().iter().map(|d| d.code.as_str()).collect();
    codes.sort_unstable();
    codes
}

fn from_text(text: &str) -> (Vec<Rule>, Diagnostics) {
    let mut d = Diagnostics::new();
    let rules = rules_from_sources(&[("r.toml".into(), text.into())], &mut d);
    (rules, d)
}

const EVENTS_HEAD: &str = "[[rule]]\nid = \"x-event\"\ntitle = \"t\"\nseverity = \"low\"\nresource_type = \"audit_log_events\"\ndescription = \"d\"\nremediation = \"r\"\n";

const WINDOWED_SQL: &str = "sql = \"SELECT id AS resource_id, NULL AS project_id, type AS message FROM audit_log_events WHERE effective_at >= :window_start\"\n";

/// One failed login of `user` at `at`.
fn failed_login(id: &str, user: &str, at: i64) -> Json {
    json!({"id": id, "type": "login.failed", "effective_at": at,
           "actor": {"type": "session", "session": {
               "user": {"id": user, "email": format!("{user}@acme.com")},
               "ip_address": "203.0.113.5"}},
           "login.failed": {"error_code": "invalid_password", "error_message": "Wrong password"}})
}

/// Stores one snapshot at `at` (an empty project list), the audit-log read it made
/// (`None`: it made none) and `events` as that read stored them.
fn snapshot(
    store: &mut Store,
    at: DateTime<Utc>,
    read: Option<&str>,
    events: &[Json],
) -> SnapshotId {
    let mut writer = store.begin_snapshot("acme", at).unwrap();
    writer
        .apply(ScopeResult {
            scope: Scope {
                family: crate::model::Family::Projects,
                project_id: None,
                parent_id: None,
            },
            outcome: ScopeOutcome::Complete(Default::default()),
        })
        .unwrap();
    let id = writer
        .finish(&CrawlStats::default(), at, SnapshotStatus::Complete)
        .unwrap()
        .id;
    let conn = store.conn();
    if let Some(outcome) = read {
        conn.execute(
            "INSERT INTO audit_log_read (snapshot_id, since, through, outcome) VALUES (?1, 0, ?2, ?3)",
            rusqlite::params![id.0, at.timestamp(), outcome],
        )
        .unwrap();
    }
    for raw in events {
        let e = crate::audit_log::AuditEvent::from_api(raw).unwrap();
        conn.execute(
            "INSERT OR IGNORE INTO audit_event (id, type, effective_at, project_id, project_name, \
             actor_type, actor_user_id, actor_user_email, actor_ip, actor_api_key_id, \
             actor_service_account_id, resource_id, raw, snapshot_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            rusqlite::params![
                e.id.as_str(),
                e.kind,
                e.effective_at,
                e.project_id.as_ref().map(|p| p.0.clone()),
                e.project_name,
                e.actor.kind,
                e.actor.user_id,
                e.actor.user_email,
                e.actor.ip,
                e.actor.api_key_id,
                e.actor.service_account_id,
                e.resource_id,
                raw.to_string(),
                id.0
            ],
        )
        .unwrap();
    }
    id
}

/// Evaluates `rule` at `at` and reconciles its hits with the stored findings the way an
/// audit does (coverage from the snapshot's audit-log read); returns the findings.
fn audit(store: &mut Store, rule: &Rule, snapshot: SnapshotId, at: DateTime<Utc>) -> Vec<Finding> {
    let hits = evaluate_rules(store.reader(), &[rule], at.timestamp()).unwrap();
    let meta = RuleMeta {
        title: rule.title.clone(),
        severity: rule.severity,
        resource_type: rule.resource_type.view().to_owned(),
        remediation: rule.remediation.clone(),
    };
    let coverage = Coverage::from_snapshot(
        SnapshotStatus::Complete,
        &[],
        store.audit_log_read_complete(snapshot).unwrap(),
    );
    let prior = findings::load(store.reader()).unwrap();
    let reconciled = findings::reconcile(
        &prior,
        &hits,
        &HashMap::from([(rule.id.clone(), meta)]),
        &[],
        &coverage,
        at,
    );
    findings::save(store, &reconciled, Some(snapshot)).unwrap();
    findings::load(store.reader()).unwrap()
}

fn login_failures(config: &str) -> Rule {
    let loaded = load_with(config);
    assert!(!loaded.diagnostics.has_errors(), "{}", loaded.diagnostics);
    loaded.rules.get("login-failures").unwrap().clone()
}

fn five_failures(user: &str, at: i64) -> Vec<Json> {
    (0..5)
        .map(|i| failed_login(&format!("audit_log-{user}-{i}"), user, at + i))
        .collect()
}

#[test]
fn a_rule_reading_window_start_gets_a_24h_window_unless_it_says_otherwise() {
    let (rules, d) = from_text(&format!("{EVENTS_HEAD}{WINDOWED_SQL}"));
    assert!(d.items().is_empty(), "{d}");
    assert_eq!(rules[0].params[WINDOW_PARAM], Value::Str("24h".into()));
    assert_eq!(rules[0].window_secs(), Some(86_400));
    let (rules, d) = from_text(&format!("{EVENTS_HEAD}window = \"2h\"\n{WINDOWED_SQL}"));
    assert!(d.items().is_empty(), "{d}");
    assert_eq!(rules[0].window_secs(), Some(7_200));
    assert!(
        rules[0].bindings().contains(&(
            ":window_start".into(),
            "now - params.window = \"2h\"".into()
        )),
        "{:?}",
        rules[0].bindings()
    );
}

#[test]
fn window_problems_are_reported_at_the_rule() {
    let bad = |extra: &str, sql: &str| codes(&from_text(&format!("{EVENTS_HEAD}{extra}{sql}")).1);
    assert_eq!(bad("window = \"a day\"\n", WINDOWED_SQL), ["bad-duration"]);
    assert_eq!(bad("window = \"0h\"\n", WINDOWED_SQL), ["bad-value"]);
    assert_eq!(bad("window = 24\n", WINDOWED_SQL), ["wrong-type"]);
    let unbounded = "sql = \"SELECT id AS resource_id, NULL AS project_id, type AS message FROM audit_log_events\"\n";
    assert_eq!(bad("", unbounded), ["window-needed"]);
    assert_eq!(bad("window = \"1h\"\n", unbounded), ["window-unused"]);
    assert_eq!(
        bad(
            "",
            "[rule.where]\nfield = \"type\"\nop = \"eq\"\nvalue = \"login.failed\"\n"
        ),
        ["window-needed"]
    );
    assert_eq!(
        bad(
            "",
            &format!("{WINDOWED_SQL}[rule.params]\nwindow = \"2h\"\n")
        ),
        ["unexpected-key"]
    );
    // A rule over a family's view may use a window too; one that does not, may not set it.
    let keys = "[[rule]]\nid = \"k\"\ntitle = \"t\"\nseverity = \"low\"\nresource_type = \"project_api_keys\"\ndescription = \"d\"\nremediation = \"r\"\nwindow = \"1h\"\n";
    assert_eq!(
        codes(&from_text(&format!("{keys}sql = \"SELECT resource_id, project_id, name AS message FROM project_api_keys WHERE created_at >= :window_start\"\n")).1),
        Vec::<&str>::new()
    );
    assert_eq!(
        codes(&from_text(&format!("{keys}sql = \"SELECT resource_id, project_id, name AS message FROM project_api_keys\"\n")).1),
        ["window-unused"]
    );
}

#[test]
fn the_window_is_overridden_per_rule_in_the_configuration() {
    let rule = login_failures("[rules.params.login-failures]\nwindow = \"48h\"\n");
    assert_eq!(rule.window_secs(), Some(48 * 3600));
    assert_eq!(rule.defaults[WINDOW_PARAM], Value::Str("24h".into()));
    let d = load_with("[rules.params.login-failures]\nwindow = \"two days\"\n").diagnostics;
    assert_eq!(codes(&d), ["bad-age"]);
    let d = load_with("[rules.params.login-failures]\nwindow = \"0m\"\n").diagnostics;
    assert_eq!(codes(&d), ["bad-value"]);
    let d = load_with("[rules.params.login-failures]\nwindow = 2\n").diagnostics;
    assert_eq!(codes(&d), ["wrong-param-type"]);
    let d = load_with("[rules.params.api-key-old]\nwindow = \"2h\"\n").diagnostics;
    assert_eq!(codes(&d), ["unknown-param"]);
    assert!(d.render(false).contains("has no window"), "{d}");
}

#[test]
fn window_start_is_bound_to_now_less_the_window() {
    let mut store = Store::open_in_memory().unwrap();
    let now = Utc::now();
    let t = now.timestamp();
    let mut events = five_failures("user-ada", t - 30 * 3600);
    events.extend(five_failures("user-bob", t - 3600));
    snapshot(&mut store, now, Some("complete"), &events);
    let found = |rule: &Rule| -> Vec<String> {
        let mut ids: Vec<String> = evaluate_rules(store.reader(), &[rule], t)
            .unwrap()
            .into_iter()
            .map(|h| h.resource_id)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(found(&login_failures("")), ["user-bob"]);
    let wide = login_failures("[rules.params.login-failures]\nwindow = \"2d\"\n");
    assert_eq!(found(&wide), ["user-ada", "user-bob"]);
    let narrow = login_failures("[rules.params.login-failures]\nwindow = \"30m\"\n");
    assert!(found(&narrow).is_empty());
    let strict = login_failures("[rules.params.login-failures]\nmin_failures = 6\n");
    assert!(found(&strict).is_empty());
}

#[test]
fn unread_names_the_audit_log_unless_the_latest_read_was_complete() {
    let mut store = Store::open_in_memory().unwrap();
    let unread = |store: &Store| -> Vec<String> {
        serde_json::from_str(&super::evaluate::unread_views(store.reader().conn()).unwrap())
            .unwrap()
    };
    assert!(
        unread(&store).contains(&"audit_log_events".to_owned()),
        "no snapshot"
    );
    let t0 = Utc::now();
    for (i, read) in [None, Some("failed"), Some("disabled")]
        .into_iter()
        .enumerate()
    {
        let at = t0 + Duration::hours(i64::try_from(i).unwrap());
        snapshot(&mut store, at, read, &[]);
        assert_eq!(unread(&store), ["audit_log_events"], "{read:?}");
    }
    snapshot(&mut store, t0 + Duration::hours(5), Some("complete"), &[]);
    assert!(unread(&store).is_empty());
}

#[test]
fn an_event_finding_resolves_when_the_window_passes_without_one() {
    let mut store = Store::open_in_memory().unwrap();
    let rule = login_failures("");
    let t0 = Utc::now();
    let s = snapshot(
        &mut store,
        t0,
        Some("complete"),
        &five_failures("user-ada", t0.timestamp() - 600),
    );
    let found = audit(&mut store, &rule, s, t0);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].resource_id, "user-ada");
    assert_eq!(found[0].status, Status::Open);
    assert!(
        found[0]
            .message
            .starts_with("5 failed logins for user-ada@acme.com"),
        "{}",
        found[0].message
    );
    assert!(
        found[0].message.contains("from 203.0.113.5"),
        "{}",
        found[0].message
    );
    // Twelve hours on, the failures are still inside the window: still open, not reopened.
    let t1 = t0 + Duration::hours(12);
    let s = snapshot(&mut store, t1, Some("complete"), &[]);
    assert_eq!(audit(&mut store, &rule, s, t1)[0].status, Status::Open);
    // A day on, a complete read finds none in the window: resolved, once.
    let t2 = t0 + Duration::hours(25);
    let s = snapshot(&mut store, t2, Some("complete"), &[]);
    let found = audit(&mut store, &rule, s, t2);
    assert_eq!(found[0].status, Status::Resolved);
    let events = findings::events(store.reader(), &found[0].fingerprint).unwrap();
    let kinds: Vec<_> = events.iter().map(|(_, e)| e.kind).collect();
    assert_eq!(
        kinds,
        [findings::EventKind::Opened, findings::EventKind::Resolved]
    );
}

#[test]
fn a_failed_audit_log_read_never_resolves_an_event_finding() {
    let mut store = Store::open_in_memory().unwrap();
    let rule = login_failures("");
    let t0 = Utc::now();
    let s = snapshot(
        &mut store,
        t0,
        Some("complete"),
        &five_failures("user-ada", t0.timestamp() - 600),
    );
    assert_eq!(audit(&mut store, &rule, s, t0)[0].status, Status::Open);
    // The window has passed, but nothing proves it held no failure: failed, disabled and
    // missing reads keep the finding open.
    for (hours, read) in [(25, Some("failed")), (26, Some("disabled")), (27, None)] {
        let at = t0 + Duration::hours(hours);
        let s = snapshot(&mut store, at, read, &[]);
        assert_eq!(
            audit(&mut store, &rule, s, at)[0].status,
            Status::Open,
            "{read:?}"
        );
    }
    let at = t0 + Duration::hours(28);
    let s = snapshot(&mut store, at, Some("complete"), &[]);
    assert_eq!(audit(&mut store, &rule, s, at)[0].status, Status::Resolved);
}

#[test]
fn audit_logging_disabled_opens_on_a_refused_read_and_resolves_on_a_complete_one() {
    let mut store = Store::open_in_memory().unwrap();
    let loaded = load_with("");
    let rule = loaded.rules.get("audit-logging-disabled").unwrap().clone();
    let t0 = Utc::now();
    let s = snapshot(&mut store, t0, Some("disabled"), &[]);
    let found = audit(&mut store, &rule, s, t0);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].resource_id, "organization");
    assert_eq!(found[0].status, Status::Open);
    // A failed read says nothing about whether logging is on.
    let t1 = t0 + Duration::hours(1);
    let s = snapshot(&mut store, t1, Some("failed"), &[]);
    assert_eq!(audit(&mut store, &rule, s, t1)[0].status, Status::Open);
    let t2 = t0 + Duration::hours(2);
    let s = snapshot(&mut store, t2, Some("complete"), &[]);
    assert_eq!(audit(&mut store, &rule, s, t2)[0].status, Status::Resolved);
}

#[test]
fn coverage_holds_log_findings_until_a_complete_read() {
    let finding = |resource_type: &str| Finding {
        fingerprint: "f".into(),
        rule_id: RuleId::from("r"),
        severity: Severity::Low,
        title: "t".into(),
        resource_type: resource_type.into(),
        resource_id: "organization".into(),
        project_id: None,
        message: "m".into(),
        remediation: "r".into(),
        status: Status::Open,
        first_seen: 0,
        last_seen: 0,
        resolved_at: None,
        last_notified_at: None,
        changed_by: None,
        exemption: None,
    };
    let unread = Coverage::from_snapshot(SnapshotStatus::Complete, &[], false);
    assert!(!unread.covers_finding(&finding("audit_log_events")));
    assert!(!unread.covers_finding(&finding("audit_log_status")));
    assert!(
        unread.covers_finding(&finding("org_users")),
        "other families were read"
    );
    let read = Coverage::from_snapshot(SnapshotStatus::Complete, &[], true);
    assert!(read.covers_finding(&finding("audit_log_events")));
    let failed = Coverage::from_snapshot(SnapshotStatus::Failed, &[], true);
    assert!(!failed.covers_finding(&finding("audit_log_events")));
}

#[test]
fn audit_log_rules_run_over_the_scratch_schema() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    compile::create_scratch_schema(&conn).unwrap();
    conn.execute_batch(
        "INSERT INTO snapshot (id, started_at, status) VALUES (1, 1000, 'complete');
         INSERT INTO audit_event (id, type, effective_at, actor_user_email, actor_ip, resource_id, raw, snapshot_id)
         VALUES ('audit_log-1', 'scim.disabled', 1000, 'ada@acme.com', '203.0.113.5', 'scim_1',
                 '{\"scim.disabled\": {\"id\": \"scim_1\"}}', 1);",
    )
    .unwrap();
    let loaded = load_with("");
    let rules: Vec<&Rule> = loaded
        .rules
        .rules
        .iter()
        .filter(|r| r.source == "rules/audit-log.toml")
        .collect();
    assert_eq!(rules.len(), 6);
    let hits = evaluate_rules(crate::store::Reader::over(&conn), &rules, 2000).unwrap();
    let found: Vec<(&str, &str)> = hits
        .iter()
        .map(|h| (h.rule_id.as_str(), h.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [(
            "scim-disabled",
            "SCIM was disabled by ada@acme.com from 203.0.113.5 at 1970-01-01T00:16:40Z"
        )]
    );
}

#[test]
fn events_caught_up_after_a_failed_read_are_judged_once_though_older_than_the_window() {
    let mut store = Store::open_in_memory().unwrap();
    let rule = login_failures("");
    let t0 = Utc::now() - Duration::hours(36);
    let s = snapshot(&mut store, t0, Some("complete"), &[]);
    assert!(audit(&mut store, &rule, s, t0).is_empty());
    // A day on the read fails: the failures of t0 + 1h are not stored yet.
    let t1 = t0 + Duration::hours(24);
    let s = snapshot(&mut store, t1, Some("failed"), &[]);
    assert!(audit(&mut store, &rule, s, t1).is_empty());
    // The read that catches up stores them, 29 hours old: beyond a 24h window, yet never
    // judged before, so they are judged now.
    let t2 = t0 + Duration::hours(30);
    let failures = five_failures("user-ada", (t0 + Duration::hours(1)).timestamp());
    let s = snapshot(&mut store, t2, Some("complete"), &failures);
    let found = audit(&mut store, &rule, s, t2);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].status, Status::Open);
    // The next complete read has seen them: the window is a day again, and they are out.
    let t3 = t0 + Duration::hours(36);
    let s = snapshot(&mut store, t3, Some("complete"), &[]);
    assert_eq!(audit(&mut store, &rule, s, t3)[0].status, Status::Resolved);
}

#[test]
fn the_window_reaches_back_only_to_what_no_evaluation_has_seen() {
    use crate::rules::evaluate::window_start;
    assert_eq!(window_start(100_000, 86_400, None), 13_600);
    assert_eq!(
        window_start(100_000, 86_400, Some(50_000)),
        13_600,
        "seen already"
    );
    assert_eq!(window_start(100_000, 86_400, Some(5_000)), 5_000, "a gap");
}
