//! PagerDuty Events API v2: a `trigger` for each finding that opens, reopens or escalates at
//! or above the channel's severity, a `resolve` for each that resolves, with one `dedup_key`
//! per finding ([`dedup_key`]), so PagerDuty groups every event of one finding into one alert.
//!
//! A finding an exemption now covers gets a `resolve` too (the exemption accepts the risk),
//! and so does one that resolves while `[notify] send_resolved` is off (that key keeps
//! resolutions out of what people read): an incident left open would swallow the trigger
//! sent when the finding returns.
//!
//! Events are stored without their `routing_key`: it joins each event only when it is sent
//! (`super::http`).

use serde_json::{Value, json};

use super::plan::{Announced, Digest, FindingState, Reason};
use crate::model::Severity;

/// PagerDuty's events endpoint.
pub const DEFAULT_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limit on a summary.
const MAX_SUMMARY: usize = 1024;

/// PagerDuty's severity for ours.
fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "info",
    }
}

/// The events for `digest`, in order; `min_severity` applies to triggers only, so a finding
/// whose severity dropped below it after paging still gets its `resolve`. `former` are the
/// names the organization had before (`[orgwarden] organization` renamed), whose incident
/// keys a resolve closes too.
pub fn events(digest: &Digest, min_severity: Severity, former: &[String]) -> Vec<Value> {
    digest
        .announced
        .iter()
        .flat_map(|a| match a.reason {
            Reason::New | Reason::Reopened | Reason::Escalated
                if a.finding.severity >= min_severity =>
            {
                vec![trigger(a, &digest.organization)]
            }
            Reason::Resolved => resolve(&a.finding, &digest.organization, former),
            _ => Vec::new(),
        })
        .collect()
}

/// The events resolving the incidents of findings closed without an announcement (an
/// exemption now covers them, or they resolved while `send_resolved` is off).
pub fn resolves(findings: &[FindingState], organization: &str, former: &[String]) -> Vec<Value> {
    findings
        .iter()
        .flat_map(|f| resolve(f, organization, former))
        .collect()
}

/// The most characters of the organization's name a `dedup_key` takes: PagerDuty allows 255,
/// and the fingerprint and separator take 65.
const KEY_ORGANIZATION_CHARS: usize = 100;

/// The incident key of a finding. One in a project is its fingerprint: project ids are
/// unique across organizations. One outside any project (an organization-wide setting, a
/// person, who may belong to several organizations) can have the same fingerprint in another
/// organization; with one orgwarden per organization paging the same PagerDuty service, one
/// organization's resolve would close the other's incident, so its key starts with the
/// organization's name: `prod/<fingerprint>`.
pub fn dedup_key(finding: &FindingState, organization: &str) -> String {
    if finding.project_id.is_some() {
        return finding.fingerprint.as_str().to_owned();
    }
    let organization: String = organization.chars().take(KEY_ORGANIZATION_CHARS).collect();
    format!("{organization}/{}", finding.fingerprint.as_str())
}

/// How many former names of the organization a resolve also closes incidents under.
const FORMER_NAMES: u32 = 10;

/// The names, newest first, this database's snapshots were taken under other than `current`:
/// the organization's former names, if `[orgwarden] organization` was renamed (a database
/// holds one organization's snapshots only).
pub fn former_organizations(
    conn: &rusqlite::Connection,
    current: &str,
) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached(
        "SELECT org FROM snapshot WHERE org <> ?1 GROUP BY org ORDER BY max(id) DESC LIMIT ?2",
    )?
    .query_map(rusqlite::params![current, FORMER_NAMES], |row| row.get(0))?
    .collect()
}

/// The resolve of a finding's incident. For a finding outside any project, also one by each
/// key it may have been triggered with before: under each former name of the organization
/// (renaming it must not leave incidents open for good), and by its bare fingerprint, the
/// key of an orgwarden before organization-named keys. PagerDuty ignores a resolve of a key
/// with no open incident.
fn resolve(finding: &FindingState, organization: &str, former: &[String]) -> Vec<Value> {
    let key = dedup_key(finding, organization);
    let mut keys = vec![key.clone()];
    if key != finding.fingerprint.as_str() {
        for name in former {
            let old = dedup_key(finding, name);
            if !keys.contains(&old) {
                keys.push(old);
            }
        }
        keys.push(finding.fingerprint.as_str().to_owned());
    }
    keys.into_iter()
        .map(|key| json!({"event_action": "resolve", "dedup_key": key}))
        .collect()
}

/// The most columns an id or name from the API takes in a summary: the rest of the summary
/// stays in view, and every part is seen whole or as its start and end.
const SUMMARY_VALUE_WIDTH: usize = 200;

fn trigger(a: &Announced, organization: &str) -> Value {
    let f = &a.finding;
    // Cut as a table cell is: PagerDuty refuses an event over 512 KB, for good, and a 100 KB
    // name in CJK is 300 KB, quoted in the message and the project name both.
    let inert = |t: &str| crate::report::table_cell(t);
    let short = |t: &str| {
        crate::report::shorten(&crate::report::inert(t), SUMMARY_VALUE_WIDTH).into_owned()
    };
    let mut summary = format!(
        "[{}] {}: {}",
        f.severity,
        inert(&f.title),
        short(&f.resource_id)
    );
    if let Some(project) = f
        .project_name
        .as_deref()
        .or(f.project_id.as_ref().map(crate::model::ProjectId::as_str))
    {
        summary.push_str(&format!(" in {}", short(project)));
    }
    let summary: String = summary.chars().take(MAX_SUMMARY).collect();
    json!({
        "event_action": "trigger",
        "dedup_key": dedup_key(f, organization),
        "client": "orgwarden",
        "payload": {
            "summary": summary,
            "source": format!("orgwarden/{}", inert(organization)),
            "severity": severity(f.severity),
            "component": inert(&f.resource_id),
            "group": f.project_id.as_ref().map_or_else(|| "organization".to_owned(), |p| inert(p.as_str())),
            "class": f.rule_id.as_str(),
            "custom_details": {
                "reason": a.reason.as_str(),
                "detail": a.detail.as_deref().map(inert),
                "rule_id": f.rule_id.as_str(),
                "resource_type": inert(&f.resource_type),
                "project_name": f.project_name.as_deref().map(inert),
                "message": inert(&f.message),
                // The rule's own text, not the API's: a runbook of several steps stays whole.
                "remediation": crate::report::inert(&f.remediation),
                "first_seen": f.first_seen.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "changed_by": f.changed_by.as_ref().map(|by| inert(&by.describe())),
            },
        },
    })
}

/// The events `notify test` sends: an `info` trigger and its resolve, so the test leaves no
/// open incident behind.
pub fn test_events(organization: &str, now: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let key = format!("orgwarden-test-{}", now.timestamp());
    vec![
        json!({
            "event_action": "trigger",
            "dedup_key": key,
            "client": "orgwarden",
            "payload": {
                "summary": format!("orgwarden test event for {} (resolved at once)", crate::report::inert(organization)),
                "source": format!("orgwarden/{}", crate::report::inert(organization)),
                "severity": "info",
            },
        }),
        json!({"event_action": "resolve", "dedup_key": key}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_name_leaves_the_event_small_and_the_summary_whole_to_its_end() {
        let mut f = crate::notify::plan::tests::finding("key_1", Severity::High);
        f.project_name = Some("長".repeat(100_000));
        f.message = format!("API key in \"{}\" is unused", "長".repeat(100_000));
        let a = Announced {
            finding: f,
            reason: Reason::New,
            detail: None,
        };
        let event = trigger(&a, "acme");
        let size = event.to_string().len();
        assert!(size < 16 * 1024, "{size} bytes");
        let summary = event["payload"]["summary"].as_str().unwrap();
        assert!(summary.starts_with("[high] API key unused for a long time: key_1 in 長"));
        assert!(summary.contains(" more characters) …長"), "{summary}");
        assert!(summary.ends_with("長長長"), "{summary}");
        let message = event["payload"]["custom_details"]["message"]
            .as_str()
            .unwrap();
        assert!(message.ends_with("長\" is unused"), "{message}");
    }

    /// The organization-wide finding of no spend limit, as every organization without one has.
    fn org_wide() -> crate::notify::plan::FindingState {
        let mut f = crate::notify::plan::tests::finding("organization", Severity::High);
        f.rule_id = crate::model::RuleId::from("org-no-spend-limit");
        f.resource_type = "org_spend_limit".into();
        f.project_id = None;
        f.project_name = None;
        f
    }

    #[test]
    fn two_organizations_page_one_service_with_their_own_incident_for_an_org_wide_finding() {
        let announced = |f: crate::notify::plan::FindingState, reason| Announced {
            finding: f,
            reason,
            detail: None,
        };
        let key = |event: &Value| event["dedup_key"].as_str().unwrap().to_owned();
        let fp = org_wide().fingerprint.as_str().to_owned();
        let prod = trigger(&announced(org_wide(), Reason::New), "prod");
        let staging = trigger(&announced(org_wide(), Reason::New), "staging");
        assert_eq!(key(&prod), format!("prod/{fp}"));
        assert_eq!(key(&staging), format!("staging/{fp}"));
        // Staging's resolve names its own incident first, and then the bare fingerprint an
        // earlier orgwarden triggered it with.
        let resolved = resolves(&[org_wide()], "staging", &[]);
        let keys: Vec<String> = resolved.iter().map(key).collect();
        assert_eq!(keys, [format!("staging/{fp}"), fp.clone()]);
        assert!(resolved.iter().all(|e| e["event_action"] == "resolve"));
        // A finding in a project keeps its fingerprint: project ids are never shared.
        let in_project = crate::notify::plan::tests::finding("key_1", Severity::High);
        let project_fp = in_project.fingerprint.as_str().to_owned();
        let paged = trigger(&announced(in_project.clone(), Reason::New), "prod");
        assert_eq!(key(&paged), project_fp);
        let keys: Vec<String> = resolves(&[in_project], "prod", &["default".into()])
            .iter()
            .map(key)
            .collect();
        assert_eq!(keys, [project_fp]);
    }

    #[test]
    fn a_renamed_organization_still_resolves_the_incidents_opened_under_its_former_names() {
        let fp = org_wide().fingerprint.as_str().to_owned();
        let former = [
            "default".to_owned(),
            "prod".to_owned(),
            "staging".to_owned(),
        ];
        let keys: Vec<String> = resolves(&[org_wide()], "prod", &former)
            .iter()
            .map(|e| e["dedup_key"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            keys,
            [
                format!("prod/{fp}"),
                format!("default/{fp}"),
                format!("staging/{fp}"),
                fp
            ]
        );
    }

    #[test]
    fn the_former_names_are_those_the_databases_snapshots_were_taken_under_newest_first() {
        use crate::{model::SnapshotStatus, store::Store};
        let mut store = Store::open_in_memory().unwrap();
        for (seconds, org) in [
            (1_000, "default"),
            (2_000, "acme"),
            (3_000, "default"),
            (4_000, "prod"),
        ] {
            let at = chrono::DateTime::from_timestamp(seconds, 0).unwrap();
            store
                .begin_snapshot(org, at)
                .unwrap()
                .finish(&Default::default(), at, SnapshotStatus::Complete)
                .unwrap();
        }
        let former = former_organizations(store.conn(), "prod").unwrap();
        assert_eq!(former, ["default", "acme"]);
        assert!(
            former_organizations(Store::open_in_memory().unwrap().conn(), "prod")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_long_organization_name_keeps_the_incident_key_within_pagerdutys_limit() {
        let name = "長".repeat(1_000);
        let key = dedup_key(&org_wide(), &name);
        assert!(
            key.chars().count() <= 255,
            "{} characters",
            key.chars().count()
        );
        assert!(key.ends_with(org_wide().fingerprint.as_str()), "{key}");
    }

    #[test]
    fn a_rules_long_remediation_reaches_pagerduty_whole() {
        let mut f = crate::notify::plan::tests::finding("key_1", Severity::High);
        f.remediation = (1..=12)
            .map(|i| {
                format!(
                    "{i}. Step {i} of the runbook at https://wiki.example.com/ops/keys#step-{i}."
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let a = Announced {
            finding: f.clone(),
            reason: Reason::New,
            detail: None,
        };
        let event = trigger(&a, "acme");
        let remediation = event["payload"]["custom_details"]["remediation"]
            .as_str()
            .unwrap();
        assert!(!remediation.contains("more characters"), "{remediation}");
        assert!(remediation.ends_with("#step-12."), "{remediation}");
    }
}
