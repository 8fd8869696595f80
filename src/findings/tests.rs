//! The findings lifecycle and its storage, exercised together.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::*;
use crate::exemptions::Exemption;
use crate::model::{Fingerprint, Hit, ProjectId, RuleId, Scope, Severity, SnapshotId};

fn meta(sev: Severity) -> RuleMeta {
    RuleMeta {
        title: "Stale key".into(),
        severity: sev,
        resource_type: "project_api_keys".into(),
        remediation: "Revoke it.".into(),
    }
}

fn rules(sev: Severity) -> HashMap<RuleId, RuleMeta> {
    HashMap::from([(RuleId::from("api-key-stale"), meta(sev))])
}

fn hit(key: &str, project: &str) -> Hit {
    Hit {
        rule_id: RuleId::from("api-key-stale"),
        resource_id: key.into(),
        project_id: Some(ProjectId::from(project)),
        message: format!("key {key} is stale"),
    }
}

fn day(n: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, n, 12, 0, 0).unwrap()
}

/// Applies a reconciliation to a findings list the way `save` does in SQL.
fn apply(state: &mut Vec<Finding>, r: &Reconciled) {
    for f in &r.changed {
        match state.iter_mut().find(|s| s.fingerprint == f.fingerprint) {
            Some(s) => *s = f.clone(),
            None => state.push(f.clone()),
        }
    }
}

fn kinds(r: &Reconciled) -> Vec<EventKind> {
    r.events.iter().map(|e| e.kind).collect()
}

#[test]
fn open_then_resolved_then_reopened() {
    let mut state = Vec::new();
    let r = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(1),
    );
    assert_eq!(kinds(&r), [EventKind::Opened]);
    apply(&mut state, &r);
    assert_eq!(state[0].status, Status::Open);

    let r = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(2),
    );
    assert!(r.events.is_empty(), "still open: no transition");
    apply(&mut state, &r);
    assert_eq!(state[0].last_seen, day(2).timestamp());
    assert_eq!(state[0].first_seen, day(1).timestamp());

    let r = reconcile(
        &state,
        &[],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(3),
    );
    assert_eq!(kinds(&r), [EventKind::Resolved]);
    apply(&mut state, &r);
    assert_eq!(state[0].status, Status::Resolved);
    assert_eq!(state[0].resolved_at, Some(day(3).timestamp()));

    let r = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(4),
    );
    assert_eq!(kinds(&r), [EventKind::Reopened]);
    apply(&mut state, &r);
    assert_eq!(state[0].status, Status::Open);
    assert_eq!(state[0].first_seen, day(1).timestamp());
}

#[test]
fn partial_read_never_resolves_a_finding() {
    let mut state = Vec::new();
    let r = reconcile(
        &state,
        &[hit("k1", "p1"), hit("k2", "p2")],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(1),
    );
    apply(&mut state, &r);
    let failed = vec![(
        Scope {
            family: Family::ProjectApiKeys,
            project_id: Some(ProjectId::from("p1")),
            parent_id: None,
        },
        "500".to_owned(),
    )];
    let coverage = Coverage::from_snapshot(SnapshotStatus::Partial, &failed, true);
    let r = reconcile(
        &state,
        &[],
        &rules(Severity::Medium),
        &[],
        &coverage,
        day(2),
    );
    let resolved: Vec<&str> = r.changed.iter().map(|f| f.resource_id.as_str()).collect();
    assert_eq!(
        resolved,
        ["k2"],
        "only the completely read project resolves"
    );

    let failed_list = vec![(
        Scope {
            family: Family::Projects,
            project_id: None,
            parent_id: None,
        },
        "503".to_owned(),
    )];
    let coverage = Coverage::from_snapshot(SnapshotStatus::Failed, &failed_list, true);
    let r = reconcile(
        &state,
        &[],
        &rules(Severity::Medium),
        &[],
        &coverage,
        day(2),
    );
    assert!(r.changed.is_empty() && r.events.is_empty());
}

/// An open finding of the organization's own `family` (no project).
fn org_finding(family: Family, resource: &str) -> Finding {
    let rule = RuleId::from("org-check");
    Finding {
        fingerprint: fingerprint(&rule, resource, None),
        rule_id: rule,
        severity: Severity::Medium,
        title: "Org check".into(),
        resource_type: family.view().into(),
        resource_id: resource.into(),
        project_id: None,
        message: "found".into(),
        remediation: "Fix it.".into(),
        status: Status::Open,
        first_seen: 0,
        last_seen: 0,
        resolved_at: None,
        last_notified_at: None,
        changed_by: None,
        exemption: None,
    }
}

fn org_scope(family: Family, parent: Option<&str>) -> (Scope, String) {
    let scope = Scope {
        family,
        project_id: None,
        parent_id: parent.map(str::to_owned),
    };
    (scope, "HTTP 500".to_owned())
}

#[test]
fn a_failed_org_family_resolves_none_of_its_findings_nor_those_under_it() {
    let users = org_finding(Family::OrgUsers, "user-1");
    let roles = org_finding(Family::OrgUserRoles, "role-1");
    let invites = org_finding(Family::OrgInvites, "invite-1");
    let coverage = Coverage::from_snapshot(
        SnapshotStatus::Partial,
        &[org_scope(Family::OrgUsers, None)],
        true,
    );
    assert!(!coverage.covers_finding(&users));
    assert!(
        !coverage.covers_finding(&roles),
        "roles are read under users"
    );
    assert!(coverage.covers_finding(&invites), "another family was read");
    let meta = RuleMeta {
        title: "Org check".into(),
        severity: Severity::Medium,
        resource_type: "org_users".into(),
        remediation: "Fix it.".into(),
    };
    let rules = HashMap::from([(RuleId::from("org-check"), meta)]);
    let r = reconcile(
        &[users.clone(), invites.clone()],
        &[],
        &rules,
        &[],
        &coverage,
        day(2),
    );
    let resolved: Vec<&str> = r.changed.iter().map(|f| f.resource_id.as_str()).collect();
    assert_eq!(resolved, ["invite-1"]);
    // One user's roles failing leaves the user list and the other families covered.
    let coverage = Coverage::from_snapshot(
        SnapshotStatus::Partial,
        &[org_scope(Family::OrgUserRoles, Some("user-1"))],
        true,
    );
    assert!(coverage.covers_finding(&users));
    assert!(!coverage.covers_finding(&roles));
    // A failed project scope does not hold back the organization's own findings.
    let project_failed = vec![(
        Scope {
            family: Family::ProjectApiKeys,
            project_id: Some(ProjectId::from("p1")),
            parent_id: None,
        },
        "500".to_owned(),
    )];
    let coverage = Coverage::from_snapshot(SnapshotStatus::Partial, &project_failed, true);
    assert!(coverage.covers_finding(&users));
}

fn exemption(pattern: &str, expires: &str) -> Exemption {
    Exemption::new(
        RuleId::from("api-key-stale"),
        pattern,
        "legacy integration".into(),
        "sec@acme.com".into(),
        NaiveDate::parse_from_str(expires, "%Y-%m-%d").unwrap(),
    )
    .unwrap()
}

#[test]
fn exemption_matches_exact_and_glob_for_its_rule_only() {
    let e = exemption("key_legacy*", "2026-03-10");
    assert!(e.matches(&RuleId::from("api-key-stale"), "key_legacy_1", None));
    assert!(!e.matches(&RuleId::from("api-key-stale"), "key_prod", None));
    assert!(!e.matches(&RuleId::from("api-key-old"), "key_legacy_1", None));
    let exact = exemption("key_prod", "2026-03-10");
    assert!(exact.matches(&RuleId::from("api-key-stale"), "key_prod", None));
    assert!(!exact.matches(&RuleId::from("api-key-stale"), "key_prod2", None));
    assert!(
        e.active_on(NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()),
        "the expiry day holds"
    );
    assert!(!e.active_on(NaiveDate::from_ymd_opt(2026, 3, 11).unwrap()));
}

#[test]
fn exempt_then_exemption_expired_reopens_with_reason() {
    let ex = [exemption("k*", "2026-03-02")];
    let mut state = Vec::new();
    let r = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &ex,
        &Coverage::complete(),
        day(1),
    );
    assert_eq!(kinds(&r), [EventKind::Exempted]);
    assert!(r.events[0].reason.contains("sec@acme.com"));
    apply(&mut state, &r);
    assert_eq!(state[0].status, Status::Exempt);

    let r = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &ex,
        &Coverage::complete(),
        day(2),
    );
    assert!(r.events.is_empty(), "expiry day still holds");

    let r = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &ex,
        &Coverage::complete(),
        day(3),
    );
    assert_eq!(kinds(&r), [EventKind::ExemptionExpired]);
    assert_eq!(
        r.events[0].reason,
        "exemption expired on 2026-03-02 (owner sec@acme.com)"
    );
    apply(&mut state, &r);
    assert_eq!(state[0].status, Status::Open);
}

#[test]
fn removing_an_exemption_is_not_blamed_on_an_older_lapsed_one() {
    // A renewal written as a second table, the old one left in place: the finding is
    // exempt under the renewal. Deleting the renewal reopens it; the lapsed table still
    // matches, but the finding was not under it, and its date is no reason.
    let lapsed = exemption("k*", "2026-01-15");
    let renewal = exemption("k1", "2026-06-30");
    let mut state = Vec::new();
    let r = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &[lapsed.clone(), renewal],
        &Coverage::complete(),
        day(1),
    );
    assert_eq!(kinds(&r), [EventKind::Exempted]);
    apply(&mut state, &r);
    let r = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &[lapsed],
        &Coverage::complete(),
        day(2),
    );
    assert_eq!(kinds(&r), [EventKind::Reopened]);
    assert_eq!(
        r.events[0].reason,
        "the exemption it was under (until 2026-06-30, owner sec@acme.com) no longer covers it"
    );
}

#[test]
fn an_exempt_finding_keeps_its_terms_and_a_change_of_them_is_recorded() {
    let reconcile_on = |state: &[Finding], ex: &[Exemption], d: u32| {
        reconcile(
            state,
            &[hit("k1", "p1")],
            &rules(Severity::Medium),
            ex,
            &Coverage::complete(),
            day(d),
        )
    };
    let mut state = Vec::new();
    let r = reconcile_on(&state, &[exemption("k*", "2026-03-20")], 1);
    apply(&mut state, &r);
    let terms = state[0].exemption.clone().expect("exempt with its terms");
    assert_eq!(terms.expires.to_string(), "2026-03-20");
    assert_eq!(terms.owner, "sec@acme.com");
    assert_eq!(terms.reason, "legacy integration");

    // The same terms again: nothing to record.
    let r = reconcile_on(&state, &[exemption("k*", "2026-03-20")], 2);
    assert!(r.events.is_empty(), "{:?}", r.events);

    // Extended: recorded, with the new date (before, the last event kept the old one).
    let r = reconcile_on(&state, &[exemption("k*", "2026-06-30")], 3);
    assert_eq!(kinds(&r), [EventKind::Exempted]);
    assert!(
        r.events[0].reason.starts_with("exempt until 2026-06-30"),
        "{}",
        r.events[0].reason
    );
    apply(&mut state, &r);

    // A finding stored before terms were kept is not "changed" on its first evaluation.
    state[0].exemption = None;
    let r = reconcile_on(&state, &[exemption("k*", "2026-06-30")], 4);
    assert!(r.events.is_empty(), "{:?}", r.events);
    assert!(r.changed[0].exemption.is_some(), "its terms are kept now");

    // Open again: no terms.
    let r = reconcile_on(&state, &[], 5);
    assert_eq!(r.changed[0].status, Status::Open);
    assert_eq!(r.changed[0].exemption, None);
}

#[test]
fn open_finding_becomes_exempt_when_an_exemption_is_added() {
    let mut state = Vec::new();
    let first = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(1),
    );
    apply(&mut state, &first);
    let ex = [exemption("k1", "2026-12-31")];
    let r = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &ex,
        &Coverage::complete(),
        day(2),
    );
    assert_eq!(kinds(&r), [EventKind::Exempted]);
    assert_eq!(r.events[0].from, Some(Status::Open));
}

#[test]
fn severity_change_is_an_event() {
    let mut state = Vec::new();
    let first = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(1),
    );
    apply(&mut state, &first);
    let r = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::High),
        &[],
        &Coverage::complete(),
        day(2),
    );
    assert_eq!(kinds(&r), [EventKind::SeverityChanged]);
    assert_eq!(r.events[0].reason, "severity medium → high");
    assert_eq!(r.events[0].from_severity, Some(Severity::Medium));
    assert_eq!(r.changed[0].severity, Severity::High);
}

#[test]
fn findings_of_a_disabled_rule_are_resolved() {
    let mut state = Vec::new();
    let first = reconcile(
        &state,
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(1),
    );
    apply(&mut state, &first);
    let r = reconcile(
        &state,
        &[],
        &HashMap::new(),
        &[],
        &Coverage::complete(),
        day(2),
    );
    assert_eq!(kinds(&r), [EventKind::Resolved]);
    assert!(r.events[0].reason.contains("no longer evaluated"));
}

#[test]
fn fingerprint_depends_on_rule_resource_and_project() {
    let a = fingerprint(&RuleId::from("r"), "x", Some(&ProjectId::from("p")));
    assert_eq!(a.as_str().len(), 64);
    assert_ne!(
        a,
        fingerprint(&RuleId::from("r"), "x", Some(&ProjectId::from("q")))
    );
    assert_ne!(
        a,
        fingerprint(&RuleId::from("r"), "y", Some(&ProjectId::from("p")))
    );
    assert_ne!(
        a,
        fingerprint(&RuleId::from("s"), "x", Some(&ProjectId::from("p")))
    );
    assert_eq!(
        a,
        fingerprint(&RuleId::from("r"), "x", Some(&ProjectId::from("p")))
    );
}

/// A store holding one finding, opened on day 1 in snapshot 7, and its fingerprint.
fn one_stored_finding() -> (crate::store::Store, Fingerprint) {
    let mut store = crate::store::Store::open_in_memory().unwrap();
    let r = reconcile(
        &[],
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(1),
    );
    save(&mut store, &r, Some(SnapshotId(7))).unwrap();
    (store, r.changed[0].fingerprint.clone())
}

#[test]
fn an_event_whose_stored_from_status_or_severity_is_unknown_is_refused_not_dropped() {
    // Read as `None`, a damaged `from` would show the event as a first transition.
    for (column, value) in [("from_status", "opne"), ("from_severity", "hgih")] {
        let (store, fingerprint) = one_stored_finding();
        store
            .conn()
            .execute(&format!("UPDATE finding_events SET {column} = ?1"), [value])
            .unwrap();
        let error = events(store.reader(), &fingerprint)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(fingerprint.as_str()) && error.contains(value),
            "{column}: {error}"
        );
    }
}

#[test]
fn a_stored_time_out_of_range_is_refused_not_read_as_1970() {
    // A finding "first seen 1970-01-01" in a report would be a silent lie about its age.
    for column in ["first_seen", "last_seen", "resolved_at", "last_notified_at"] {
        let (store, fingerprint) = one_stored_finding();
        store
            .conn()
            .execute(&format!("UPDATE finding SET {column} = ?1"), [i64::MAX])
            .unwrap();
        let error = load(store.reader()).unwrap_err().to_string();
        assert!(
            error.contains(fingerprint.as_str())
                && error.contains(column)
                && error.contains(&i64::MAX.to_string()),
            "{column}: {error}"
        );
        let error = get(store.reader(), &fingerprint).unwrap_err().to_string();
        assert!(error.contains(column), "{column}: {error}");
    }
}

#[test]
fn the_finding_history_view_tells_each_transition_with_its_rule_and_object() {
    let mut store = crate::store::Store::open_in_memory().unwrap();
    let mut state: Vec<Finding> = Vec::new();
    // Opened on day 1, resolved on day 2, back on day 3; another key opened on day 3.
    for (n, hits) in [
        (1, vec![hit("k1", "p1")]),
        (2, vec![]),
        (3, vec![hit("k1", "p1"), hit("k2", "p2")]),
    ] {
        let r = reconcile(
            &state,
            &hits,
            &rules(Severity::Medium),
            &[],
            &Coverage::complete(),
            day(n),
        );
        save(&mut store, &r, Some(SnapshotId(i64::from(n)))).unwrap();
        state = load(store.reader()).unwrap();
    }
    let k1 = fingerprint(
        &RuleId::from("api-key-stale"),
        "k1",
        Some(&ProjectId::from("p1")),
    );
    let rows: Vec<String> = store
        .conn()
        .prepare(
            "SELECT fingerprint, rule_id, resource_type, resource_id, project_id, snapshot_id, \
             at, at_utc, kind, from_status, to_status, reason FROM finding_history ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| {
            let fp: String = r.get(0)?;
            Ok(format!(
                "{} {} {} {} {} {} {} {} {} {:?} {} {}",
                if fp == k1.as_str() {
                    "k1-fp"
                } else {
                    "other-fp"
                },
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)? == day(u32::try_from(r.get::<_, i64>(5)?).unwrap()).timestamp(),
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, String>(10)?,
                !r.get::<_, String>(11)?.is_empty(),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [
            "k1-fp api-key-stale project_api_keys k1 p1 1 true 2026-03-01T12:00:00Z opened None open true",
            "k1-fp api-key-stale project_api_keys k1 p1 2 true 2026-03-02T12:00:00Z resolved Some(\"open\") resolved true",
            "k1-fp api-key-stale project_api_keys k1 p1 3 true 2026-03-03T12:00:00Z reopened Some(\"resolved\") open true",
            "other-fp api-key-stale project_api_keys k2 p2 3 true 2026-03-03T12:00:00Z opened None open true",
        ]
    );
}

#[test]
fn save_and_load_round_trip_with_events() {
    let mut store = crate::store::Store::open_in_memory().unwrap();
    let r = reconcile(
        &[],
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(1),
    );
    save(&mut store, &r, Some(SnapshotId(7))).unwrap();
    let all = load(store.reader()).unwrap();
    assert_eq!(all, r.changed);
    let r2 = reconcile(
        &all,
        &[],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(2),
    );
    save(&mut store, &r2, Some(SnapshotId(8))).unwrap();
    let ev = events(store.reader(), &all[0].fingerprint).unwrap();
    let got: Vec<(Option<SnapshotId>, EventKind)> = ev.iter().map(|(s, e)| (*s, e.kind)).collect();
    assert_eq!(
        got,
        [
            (Some(SnapshotId(7)), EventKind::Opened),
            (Some(SnapshotId(8)), EventKind::Resolved)
        ]
    );
    let view: String = store
        .conn()
        .query_row("SELECT status FROM findings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(view, "resolved");
    store
        .transaction(|tx| mark_notified(tx, &[all[0].fingerprint.clone()], day(3)))
        .unwrap();
    assert_eq!(
        load(store.reader()).unwrap()[0].last_notified_at,
        Some(day(3).timestamp())
    );
    let r3 = reconcile(
        &load(store.reader()).unwrap(),
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &[],
        &Coverage::complete(),
        day(4),
    );
    save(&mut store, &r3, None).unwrap();
    assert_eq!(
        load(store.reader()).unwrap()[0].last_notified_at,
        Some(day(3).timestamp()),
        "reconciling keeps the notifier's mark"
    );
}

/// A stored finding for `hit("k1", "p1")` with this status and severity.
fn stored(status: Status, severity: Severity) -> Finding {
    let h = hit("k1", "p1");
    Finding {
        fingerprint: fingerprint(&h.rule_id, &h.resource_id, h.project_id.as_ref()),
        rule_id: h.rule_id,
        severity,
        title: "Stale key".into(),
        resource_type: "project_api_keys".into(),
        resource_id: h.resource_id,
        project_id: h.project_id,
        message: h.message,
        remediation: "Revoke it.".into(),
        status,
        first_seen: day(1).timestamp(),
        last_seen: day(1).timestamp(),
        resolved_at: None,
        last_notified_at: Some(day(1).timestamp()),
        changed_by: None,
        exemption: None,
    }
}

/// What this run says about the finding, in the table below.
#[derive(Clone, Copy)]
enum Seen {
    Hit(Severity),
    Missed,
    RuleGone,
}

/// Which exemption names it, in the table below.
#[derive(Clone, Copy)]
enum Ex {
    None,
    Active,
    Expired,
}

/// Name, prior status, sighting, exemption, project read completely, expected outcome.
type Case = (
    &'static str,
    Option<Status>,
    Seen,
    Ex,
    bool,
    Option<(Status, &'static [EventKind])>,
);

#[test]
fn transition_table_decides_each_finding_alone() {
    use Status::{Exempt, Open, Resolved};
    let med = Severity::Medium;
    let high = Severity::High;
    #[rustfmt::skip]
    let table: &[Case] = &[
        ("new hit opens", None, Seen::Hit(med), Ex::None, true, Some((Open, &[EventKind::Opened]))),
        ("new exempt hit", None, Seen::Hit(med), Ex::Active, true, Some((Exempt, &[EventKind::Exempted]))),
        ("still open is quiet", Some(Open), Seen::Hit(med), Ex::None, true, Some((Open, &[]))),
        ("resolved comes back", Some(Resolved), Seen::Hit(med), Ex::None, true, Some((Open, &[EventKind::Reopened]))),
        ("open gets exempted", Some(Open), Seen::Hit(med), Ex::Active, true, Some((Exempt, &[EventKind::Exempted]))),
        ("exemption lapses", Some(Exempt), Seen::Hit(med), Ex::Expired, true, Some((Open, &[EventKind::ExemptionExpired]))),
        ("exemption removed", Some(Exempt), Seen::Hit(med), Ex::None, true, Some((Open, &[EventKind::Reopened]))),
        ("severity raised", Some(Open), Seen::Hit(high), Ex::None, true, Some((Open, &[EventKind::SeverityChanged]))),
        ("reopened with new severity", Some(Resolved), Seen::Hit(high), Ex::None, true, Some((Open, &[EventKind::Reopened]))),
        ("exempt and raised", Some(Exempt), Seen::Hit(high), Ex::Expired, true, Some((Open, &[EventKind::ExemptionExpired, EventKind::SeverityChanged]))),
        ("gone in a complete read", Some(Open), Seen::Missed, Ex::None, true, Some((Resolved, &[EventKind::Resolved]))),
        ("exempt and gone", Some(Exempt), Seen::Missed, Ex::None, true, Some((Resolved, &[EventKind::Resolved]))),
        ("gone in a partial read", Some(Open), Seen::Missed, Ex::None, false, None),
        ("rule gone, partial read", Some(Open), Seen::RuleGone, Ex::None, false, Some((Resolved, &[EventKind::Resolved]))),
        ("already resolved", Some(Resolved), Seen::Missed, Ex::None, true, None),
        ("never seen", None, Seen::Missed, Ex::None, true, None),
    ];
    let active = exemption("k1", "2026-12-31");
    let expired = exemption("k1", "2026-03-01");
    let h = hit("k1", "p1");
    let mut coverage = Coverage::complete();
    coverage.failed_projects.insert(ProjectId::from("p1"));
    let partial = coverage;
    for (name, prior, seen, ex, covered, want) in table {
        let prior = prior.map(|s| stored(s, med));
        let meta = match seen {
            Seen::Hit(sev) => meta(*sev),
            _ => meta(med),
        };
        let sighting = match seen {
            Seen::Hit(_) => Sighting::Hit {
                hit: &h,
                meta: &meta,
            },
            Seen::Missed => Sighting::Missed {
                rule_evaluated: true,
            },
            Seen::RuleGone => Sighting::Missed {
                rule_evaluated: false,
            },
        };
        let applicable = match ex {
            Ex::None => Applicable::default(),
            Ex::Active => Applicable {
                active: Some(&active),
                expired: None,
            },
            Ex::Expired => Applicable {
                active: None,
                expired: Some(&expired),
            },
        };
        let complete = Coverage::complete();
        let coverage = if *covered { &complete } else { &partial };
        let got = transition(prior.as_ref(), sighting, applicable, coverage, day(5));
        let got = got.map(|c| {
            let kinds: Vec<EventKind> = c.events.iter().map(|e| e.kind).collect();
            assert!(
                c.events.iter().all(|e| e.to == c.finding.status),
                "{name}: events end in the new status"
            );
            if let Some(p) = &prior {
                assert_eq!(c.finding.first_seen, p.first_seen, "{name}: history kept");
                assert_eq!(c.finding.last_notified_at, p.last_notified_at, "{name}");
            }
            (c.finding.status, kinds)
        });
        let want = want.map(|(s, k)| (s, k.to_vec()));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn applicable_prefers_an_active_exemption_and_the_latest_expired_one() {
    let all = [
        exemption("k*", "2026-03-01"),
        exemption("k1", "2026-03-03"),
        exemption("k1", "2026-12-31"),
        exemption("other", "2026-12-31"),
    ];
    let rule = RuleId::from("api-key-stale");
    let today = NaiveDate::from_ymd_opt(2026, 3, 5).unwrap();
    let found = Applicable::find(&all, &rule, "k1", None, today);
    assert_eq!(found.active.map(|e| e.expires), Some(all[2].expires));
    assert_eq!(found.expired.map(|e| e.expires), Some(all[1].expires));
    let later = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
    let found = Applicable::find(&all, &rule, "k1", None, later);
    assert!(found.active.is_none());
    assert_eq!(found.expired.map(|e| e.expires), Some(all[2].expires));
    assert!(
        Applicable::find(&all, &rule, "zzz", None, today)
            .active
            .is_none()
    );
}

#[test]
fn overlapping_exemptions_exempt_until_the_latest_date_and_say_so() {
    // A broad exemption first in the file, ending soon; a narrower one lasting longer.
    let ex = [exemption("k*", "2026-03-02"), exemption("k1", "2026-09-30")];
    let r = reconcile(
        &[],
        &[hit("k1", "p1")],
        &rules(Severity::Medium),
        &ex,
        &Coverage::complete(),
        day(1),
    );
    assert_eq!(kinds(&r), [EventKind::Exempted]);
    assert!(
        r.events[0].reason.starts_with("exempt until 2026-09-30"),
        "the finding stays exempt past 2026-03-02: {}",
        r.events[0].reason
    );
}

#[test]
fn an_exemption_limited_to_a_project_leaves_the_same_resource_elsewhere_open() {
    // A resource id that recurs in every project, as a hosted tool's name does.
    let ex = [exemption("mcp", "2026-12-31")
        .in_project("proj_sup*")
        .unwrap()];
    let r = reconcile(
        &[],
        &[hit("mcp", "proj_support"), hit("mcp", "proj_payments")],
        &rules(Severity::Medium),
        &ex,
        &Coverage::complete(),
        day(1),
    );
    let status = |project: &str| {
        r.changed
            .iter()
            .find(|f| f.project_id.as_ref().map(ProjectId::as_str) == Some(project))
            .map(|f| f.status)
    };
    assert_eq!(status("proj_support"), Some(Status::Exempt));
    assert_eq!(status("proj_payments"), Some(Status::Open));
    // A finding outside any project is not in the project the exemption names.
    let rule = RuleId::from("api-key-stale");
    assert!(!ex[0].matches(&rule, "mcp", None));
    // Without `project`, it covers the resource wherever it is.
    assert!(exemption("mcp", "2026-12-31").matches(&rule, "mcp", None));
}

/// Every variant of a stored enum reads back from its text and from SQLite unchanged, and
/// an unknown name is refused.
fn round_trips<T>(all: &[T])
where
    T: Copy
        + PartialEq
        + std::fmt::Debug
        + std::fmt::Display
        + std::str::FromStr
        + rusqlite::types::ToSql
        + rusqlite::types::FromSql,
{
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    for v in all {
        assert_eq!(v.to_string().parse::<T>().ok(), Some(*v));
        let back: T = conn.query_row("SELECT ?1", [v], |r| r.get(0)).unwrap();
        assert_eq!(back, *v);
        let text: String = conn.query_row("SELECT ?1", [v], |r| r.get(0)).unwrap();
        assert_eq!(text, v.to_string(), "stored as its text");
    }
    assert!("no-such-name".parse::<T>().is_err());
    let refused: rusqlite::Result<T> = conn.query_row("SELECT 'no-such-name'", [], |r| r.get(0));
    assert!(refused.is_err());
}

#[test]
fn every_stored_enum_round_trips_through_text_and_sql() {
    use crate::model::{Family, SnapshotStatus};
    use crate::store::ChangeKind;
    round_trips(&Status::ALL);
    round_trips(&EventKind::ALL);
    round_trips(&ChangeKind::ALL);
    round_trips(&Family::ALL);
    round_trips(&SnapshotStatus::ALL);
    round_trips(&Severity::ALL);
    assert_eq!(EventKind::ExemptionExpired.to_string(), "exemption-expired");
    assert_eq!(Family::ProjectApiKeys.to_string(), "project_api_keys");
}

/// A transition of `f` to `kind`, as the lifecycle records it.
fn transition_of(f: &Finding, kind: EventKind) -> Event {
    Event {
        fingerprint: f.fingerprint.clone(),
        kind,
        from: None,
        to: f.status,
        from_severity: None,
        at: 200,
        reason: "test".into(),
    }
}

/// A store whose snapshot 1 (100–101) was evaluated and snapshot 2 (190–200) is being.
fn evaluated_then_stored() -> crate::store::Store {
    let store = crate::store::Store::open_in_memory().unwrap();
    store
        .conn()
        .execute_batch(
            "INSERT INTO snapshot (id, org, started_at, finished_at, status, evaluated_at)
             VALUES (1, 'acme', 100, 101, 'complete', 101), (2, 'acme', 190, 200, 'complete', NULL)",
        )
        .unwrap();
    store
}

/// Stores `audit_log-<user>`, a `user.updated` at 150 by `actor` making `user` an owner.
fn insert_promotion(conn: &rusqlite::Connection, user: &str, actor: serde_json::Value) {
    let id = format!("audit_log-{user}");
    let raw = serde_json::json!({"id": id, "type": "user.updated", "effective_at": 150,
        "actor": actor, "user.updated": {"id": user, "changes_requested": {"role": "owner"}}});
    conn.execute(
        "INSERT INTO audit_event (id, type, effective_at, resource_id, raw, snapshot_id)
         VALUES (?1, 'user.updated', 150, ?2, ?3, 1)",
        rusqlite::params![id, user, raw.to_string()],
    )
    .unwrap();
}

#[test]
fn a_finding_opened_by_a_logged_change_carries_who_made_it() {
    let store = evaluated_then_stored();
    let conn = store.conn();
    insert_promotion(
        conn,
        "user-bob",
        serde_json::json!({"type": "api_key", "api_key": {"id": "key_admin", "type": "user",
                           "user": {"id": "user-max", "email": "max@acme.com"}}}),
    );
    insert_version(conn, Family::OrgUsers, "", "user-bob", 2, "changed");
    let opened = org_finding(Family::OrgUsers, "user-bob");
    let mut stale = org_finding(Family::OrgUsers, "user-eve");
    stale.fingerprint = "other".into();
    stale.changed_by = Some(crate::findings::ChangedBy {
        event_id: "audit_log-old".into(),
        event_type: "user.updated".into(),
        at: chrono::DateTime::from_timestamp(10, 0).unwrap(),
        actor: crate::audit_log::Actor::default(),
    });
    let mut reconciled = Reconciled {
        changed: vec![opened.clone(), stale.clone()],
        events: vec![
            transition_of(&opened, EventKind::Opened),
            transition_of(&stale, EventKind::Resolved),
        ],
    };
    crate::findings::attribute_transitions(conn, &mut reconciled, SnapshotId(2), 200).unwrap();
    let by = reconciled.changed[0]
        .changed_by
        .as_ref()
        .expect("explained");
    assert_eq!(by.actor.user_email.as_deref(), Some("max@acme.com"));
    assert_eq!(by.actor.api_key_id.as_deref(), Some("key_admin"));
    assert_eq!(by.event_type, "user.updated");
    assert_eq!(
        reconciled.changed[1].changed_by, None,
        "a transition no event explains drops an older explanation"
    );
    // On the first evaluation nothing changed: there is no one to name.
    let mut first = Reconciled {
        changed: vec![opened.clone()],
        events: vec![transition_of(&opened, EventKind::Opened)],
    };
    crate::findings::attribute_transitions(conn, &mut first, SnapshotId(1), 200).unwrap();
    assert_eq!(first.changed[0].changed_by, None);
}

#[test]
fn a_transition_of_an_object_that_did_not_change_names_no_one() {
    // The log says Bob's and Carl's roles were changed between the snapshots, but the
    // snapshots stored no change of Bob, and Carl's only at snapshot 1: a finding about
    // either that opens at 2 (a rule's new threshold, an exemption's end) is not that
    // event's doing.
    let store = evaluated_then_stored();
    let conn = store.conn();
    for user in ["user-bob", "user-carl"] {
        let max = serde_json::json!({"type": "session", "session": {"user": {"id": "user-max"}}});
        insert_promotion(conn, user, max);
    }
    insert_version(conn, Family::OrgUsers, "", "user-carl", 1, "changed");
    assert_eq!(bob_and_carl_opened(conn, Family::OrgUsers), [None, None]);
}

/// The `changed_by` of Bob's and Carl's findings of `family`, both opened at snapshot 2.
fn bob_and_carl_opened(
    conn: &rusqlite::Connection,
    family: Family,
) -> [Option<crate::findings::ChangedBy>; 2] {
    let bob = org_finding(family, "user-bob");
    let mut carl = org_finding(family, "user-carl");
    carl.fingerprint = "carl".into();
    let mut reconciled = Reconciled {
        events: vec![
            transition_of(&bob, EventKind::Opened),
            transition_of(&carl, EventKind::Opened),
        ],
        changed: vec![bob, carl],
    };
    crate::findings::attribute_transitions(conn, &mut reconciled, SnapshotId(2), 200).unwrap();
    let mut changed = reconciled.changed.into_iter().map(|f| f.changed_by);
    [changed.next().flatten(), changed.next().flatten()]
}

#[test]
fn a_finding_about_the_holder_of_a_role_names_who_assigned_it() {
    // A rule over `org_user_roles` reports the user who holds a role (the assignment's
    // principal), while the store keys each assignment by its role under that user: the
    // assignment added at snapshot 2 is the finding's change, and the event explains it.
    let store = evaluated_then_stored();
    let conn = store.conn();
    let raw = serde_json::json!({"id": "audit_log-grant", "type": "role.assignment.created",
        "effective_at": 150,
        "actor": {"type": "session", "session": {"user": {"id": "user-max"}}},
        "role.assignment.created": {"id": "role-admin", "principal_id": "user-bob",
                                    "principal_type": "user", "resource_id": "org-acme",
                                    "resource_type": "organization"}});
    conn.execute(
        "INSERT INTO audit_event (id, type, effective_at, resource_id, raw, snapshot_id)
         VALUES ('audit_log-grant', 'role.assignment.created', 150, 'role-admin', ?1, 1)",
        [raw.to_string()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO object (family, project_id, parent_id, resource_id, first_snapshot)
         VALUES ('org_user_roles', '', 'user-bob', 'role-admin', 2)",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO version (object_id, from_snapshot, change)
         SELECT id, 2, 'added' FROM object WHERE resource_id = 'role-admin'",
        [],
    )
    .unwrap();
    // Carl was granted the same role by the log, but no role of his changed in the store.
    let carl_grant = raw
        .to_string()
        .replace("user-bob", "user-carl")
        .replace("audit_log-grant", "audit_log-carl");
    conn.execute(
        "INSERT INTO audit_event (id, type, effective_at, resource_id, raw, snapshot_id)
         VALUES ('audit_log-carl', 'role.assignment.created', 150, 'role-admin', ?1, 1)",
        [carl_grant],
    )
    .unwrap();
    let [bob, carl] = bob_and_carl_opened(conn, Family::OrgUserRoles);
    let by = bob.expect("the grant explains it");
    assert_eq!(by.event_id.as_str(), "audit_log-grant");
    assert_eq!(carl, None, "no role of Carl's changed");
}

/// Stores the revocation of key `key` in project `project` at 150, by max (read by
/// snapshot 1).
fn insert_revocation(store: &crate::store::Store, project: &str, key: &str) {
    let id = format!("audit_log-{key}");
    let raw = serde_json::json!({"id": id, "type": "api_key.deleted",
        "effective_at": 150, "project": {"id": project},
        "actor": {"type": "session", "session": {"user": {"id": "user-max", "email": "max@acme.com"}}},
        "api_key.deleted": {"id": key}});
    store
        .conn()
        .execute(
            "INSERT INTO audit_event (id, type, effective_at, resource_id, raw, snapshot_id)
             VALUES (?1, 'api_key.deleted', 150, ?2, ?3, 1)",
            rusqlite::params![id, key, raw.to_string()],
        )
        .unwrap();
}

/// Stores `change` of the object `resource` of `family` in `project` ('' for the
/// organization's families) at snapshot `at`, as the snapshot writer records it.
fn insert_version(
    conn: &rusqlite::Connection,
    family: Family,
    project: &str,
    resource: &str,
    at: i64,
    change: &str,
) {
    conn.execute(
        "INSERT INTO object (family, project_id, resource_id, first_snapshot)
         VALUES (?1, ?2, ?3, 1) ON CONFLICT DO NOTHING",
        rusqlite::params![family.view(), project, resource],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO version (object_id, from_snapshot, change)
         SELECT id, ?4, ?5 FROM object WHERE family = ?1 AND project_id = ?2 AND resource_id = ?3",
        rusqlite::params![family.view(), project, resource, at, change],
    )
    .unwrap();
}

/// A store with the snapshots `sql` inserts and the revocation of each `(project, key)`,
/// which snapshot 2 saw removed.
fn store_with(sql: &str, revoked: &[(&str, &str)]) -> crate::store::Store {
    let store = crate::store::Store::open_in_memory().unwrap();
    store.conn().execute_batch(sql).unwrap();
    for (project, key) in revoked {
        insert_revocation(&store, project, key);
        insert_version(
            store.conn(),
            Family::ProjectApiKeys,
            project,
            key,
            2,
            "removed",
        );
    }
    store
}

/// The `changed_by` of a finding of `project`'s key `key` resolved at snapshot 3's
/// evaluation.
fn key_resolved_at_3(
    store: &crate::store::Store,
    project: &str,
    key: &str,
) -> Option<crate::findings::ChangedBy> {
    let rule = RuleId::from("key-check");
    let mut finding = org_finding(Family::ProjectApiKeys, key);
    finding.fingerprint = fingerprint(&rule, key, Some(&ProjectId::from(project)));
    finding.rule_id = rule;
    finding.project_id = Some(ProjectId::from(project));
    finding.status = Status::Resolved;
    let mut reconciled = Reconciled {
        events: vec![transition_of(&finding, EventKind::Resolved)],
        changed: vec![finding],
    };
    crate::findings::attribute_transitions(store.conn(), &mut reconciled, SnapshotId(3), 500)
        .unwrap();
    reconciled.changed.remove(0).changed_by
}

#[test]
fn a_change_before_a_snapshot_that_was_never_evaluated_is_still_attributed() {
    // 1 was audited; 2 was a plain `snapshot` (stored, never evaluated) taken after the key
    // was revoked; 3's audit resolves the finding. The revocation came after 1, before 2.
    let store = store_with(
        "INSERT INTO snapshot (id, org, started_at, finished_at, status, evaluated_at)
         VALUES (1, 'acme', 100, 110, 'complete', 110),
                (2, 'acme', 300, 310, 'complete', NULL),
                (3, 'acme', 400, 500, 'complete', NULL)",
        &[("proj_a", "key_a")],
    );
    let by = key_resolved_at_3(&store, "proj_a", "key_a").expect("explained");
    assert_eq!(by.event_type, "api_key.deleted");
    assert_eq!(by.actor.user_email.as_deref(), Some("max@acme.com"));
}

#[test]
fn a_change_before_an_evaluation_that_could_not_read_the_project_is_still_attributed() {
    // 2 was audited but could not read proj_a's service accounts, so proj_a's findings
    // stood still there; proj_b was read completely at 2.
    let store = store_with(
        "INSERT INTO snapshot (id, org, started_at, finished_at, status, evaluated_at)
         VALUES (1, 'acme', 100, 110, 'complete', 110),
                (2, 'acme', 300, 310, 'partial', 310),
                (3, 'acme', 400, 500, 'complete', NULL);
         INSERT INTO snapshot_scope (snapshot_id, family, project_id, parent_id, outcome, error)
         VALUES (2, 'project_service_accounts', 'proj_a', '', 'failed', 'HTTP 500');",
        &[("proj_a", "key_a"), ("proj_b", "key_b")],
    );
    let by = key_resolved_at_3(&store, "proj_a", "key_a").expect("explained");
    assert_eq!(by.event_type, "api_key.deleted");
    // proj_b was seen at 2, after its key's revocation at 150: a transition at 3 is not
    // that revocation's doing.
    assert_eq!(key_resolved_at_3(&store, "proj_b", "key_b"), None);
}

/// A database as orgwarden left it at schema version 3 (before `announced_status`), when
/// the notifier announced each run's own transitions and marked them in `last_notified_at`:
/// `ann` was announced open, `quiet` was recorded by a plain `audit` and never announced,
/// `gone` was announced and its resolution announced too.
fn schema_3_database(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    for (_, sql) in &crate::store::MIGRATIONS[..3] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 3).unwrap();
    conn.execute_batch(
        "INSERT INTO snapshot (id, org, started_at, finished_at, status) VALUES (1, 'acme', 100, 101, 'complete');
         INSERT INTO finding (fingerprint, rule_id, severity, title, resource_type, resource_id, project_id,
                              message, remediation, status, first_seen, last_seen, resolved_at, last_notified_at)
         VALUES ('ann', 'r', 'high', 't', 'project_api_keys', 'k1', 'p1', 'm', 'fix', 'open', 100, 100, NULL, 101),
                ('quiet', 'r', 'high', 't', 'project_api_keys', 'k2', 'p1', 'm', 'fix', 'open', 100, 100, NULL, NULL),
                ('gone', 'r', 'high', 't', 'project_api_keys', 'k3', 'p1', 'm', 'fix', 'resolved', 100, 100, 150, 151);
         INSERT INTO finding_events (fingerprint, snapshot_id, at, kind, from_status, to_status, reason)
         VALUES ('ann', 1, 100, 'opened', NULL, 'open', 'first seen'),
                ('quiet', 1, 100, 'opened', NULL, 'open', 'first seen'),
                ('gone', 1, 100, 'opened', NULL, 'open', 'first seen'),
                ('gone', 1, 150, 'resolved', 'open', 'resolved', 'no longer found in a complete read');",
    )
    .unwrap();
}

#[test]
fn findings_announced_before_the_announced_columns_are_not_announced_again_after_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    schema_3_database(&path);
    let store = crate::store::Store::open(&path).unwrap();
    let all = load(store.reader()).unwrap();
    let states = notify_states(store.reader(), &all).unwrap();
    let transitions: HashMap<&str, Option<crate::notify::Transition>> = states
        .iter()
        .map(|s| (s.fingerprint.as_str(), s.transition.clone()))
        .collect();
    assert_eq!(
        transitions.get("ann"),
        Some(&None),
        "announced before the upgrade: no news now"
    );
    assert_eq!(
        transitions.get("quiet"),
        Some(&Some(crate::notify::Transition::Opened)),
        "never announced: still announced once"
    );
    assert!(
        !transitions.contains_key("gone"),
        "its resolution was announced: {states:?}"
    );
}

#[test]
fn the_notifier_is_told_an_announced_finding_became_exempt_and_an_unannounced_one_s_exemption_expired()
 {
    use crate::notify::Transition;
    let mut store = crate::store::Store::open_in_memory().unwrap();
    let run = |store: &mut crate::store::Store, ex: &[Exemption], on: DateTime<Utc>| {
        let prior = load(store.reader()).unwrap();
        let hits = [hit("k1", "p1"), hit("k2", "p1")];
        let r = reconcile(
            &prior,
            &hits,
            &rules(Severity::Medium),
            ex,
            &Coverage::complete(),
            on,
        );
        save(store, &r, None).unwrap();
    };
    // k2 is exempt from its first sighting, so nothing is ever announced about it.
    run(&mut store, &[exemption("k2", "2026-03-02")], day(1));
    let k1 = fingerprint(
        &RuleId::from("api-key-stale"),
        "k1",
        Some(&ProjectId::from("p1")),
    );
    store
        .transaction(|tx| mark_notified(tx, std::slice::from_ref(&k1), day(1)))
        .unwrap();
    let both = [exemption("k2", "2026-03-02"), exemption("k1", "2026-12-31")];
    run(&mut store, &both, day(2));
    let all = load(store.reader()).unwrap();
    let k1_now = all.iter().find(|f| f.fingerprint == k1).unwrap();
    assert_eq!(
        k1_now.exemption,
        Some(both[1].terms()),
        "the terms it is exempt on are stored and read back"
    );
    run(&mut store, &both, day(3));
    let all = load(store.reader()).unwrap();
    let states = notify_states(store.reader(), &all).unwrap();
    let told = |key: &str| {
        states
            .iter()
            .find(|s| s.resource_id == key)
            .and_then(|s| s.transition.clone())
    };
    // Announced open, now exempt: told, so a page for it is resolved and a later
    // reopening is news again.
    assert_eq!(told("k1"), Some(Transition::Exempted));
    assert_eq!(
        told("k2"),
        Some(Transition::ExemptionExpired {
            reason: "exemption expired on 2026-03-02 (owner sec@acme.com)".into()
        }),
        "never announced, but it comes back because an exemption ended, not as new"
    );
}
