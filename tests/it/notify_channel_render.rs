//! The Slack message and the webhook payload for one fixed digest, as snapshots: a reviewer
//! sees exactly what a channel receives. API-supplied text tries to ping `@channel`, make a
//! link and reverse the line; it must arrive escaped.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use orgwarden::model::{ProjectId, RuleId, Severity, SnapshotId};
use orgwarden::notify::plan::{Policy, plan};
use orgwarden::notify::{
    FindingState, FindingStatus, RunContext, Transition, pagerduty, slack, webhook,
};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 6, 0, 0).unwrap()
}

fn finding(
    rule: &str,
    severity: Severity,
    resource: &str,
    project: Option<(&str, &str)>,
) -> FindingState {
    FindingState {
        fingerprint: format!("fp-{rule}-{resource}").into(),
        rule_id: RuleId::from(rule),
        title: format!("Title of {rule}"),
        severity,
        resource_type: "projects".into(),
        resource_id: resource.into(),
        project_id: project.map(|(id, _)| ProjectId::from(id)),
        project_name: project.map(|(_, name)| name.to_owned()),
        message: format!("{resource} is affected"),
        remediation: "Fix it.".into(),
        status: FindingStatus::Open,
        first_seen: now() - TimeDelta::days(3),
        transition: Some(Transition::Opened),
        last_notified_at: None,
        changed_by: None,
        exemption: None,
    }
}

fn digest() -> orgwarden::notify::Digest {
    let mut resolved = finding(
        "project-no-spend-alert",
        Severity::Medium,
        "proj_support",
        Some(("proj_support", "Support")),
    );
    resolved.status = FindingStatus::Resolved;
    resolved.transition = Some(Transition::Resolved);
    let findings = vec![
        finding(
            "project-retention-not-zdr",
            Severity::High,
            "proj_evil",
            Some((
                "proj_evil",
                "<!channel> & <https://evil.example|click> \u{202e}gnp.exe",
            )),
        ),
        finding(
            "api-key-old",
            Severity::Low,
            "key_`tick`",
            Some(("proj_a", "Alpha")),
        ),
        resolved,
    ];
    let ctx = RunContext {
        organization: "acme".into(),
        snapshot_id: Some(SnapshotId(7)),
        partial: false,
    };
    let policy = Policy {
        repeat_interval: TimeDelta::days(7),
        send_resolved: true,
    };
    plan(&findings, &ctx, &policy, now()).expect("something to announce")
}

#[test]
fn the_slack_message_escapes_api_text_and_counts_by_severity() {
    let message = slack::message(&digest());
    let text = message.to_string();
    assert!(
        !text.contains("<!channel>") && !text.contains("<https://"),
        "{text}"
    );
    insta::assert_json_snapshot!("slack_message", message);
}

#[test]
fn the_webhook_payload_is_stable() {
    insta::assert_json_snapshot!(
        "webhook_payload",
        webhook::payload(&digest(), None, "delivery-1")
    );
}

#[test]
fn a_send_exempted_webhook_payload_carries_the_exemption_s_terms_escaped() {
    let mut exempt = finding(
        "project-retention-not-zdr",
        Severity::High,
        "proj_lab",
        Some(("proj_lab", "Lab")),
    );
    exempt.status = FindingStatus::Exempt;
    exempt.transition = Some(Transition::Exempted);
    exempt.exemption = Some(orgwarden::exemptions::Terms {
        expires: chrono::NaiveDate::from_ymd_opt(2027, 3, 31).unwrap(),
        owner: "sec@acme.example".into(),
        reason: "lab data only \u{202e}<!channel>".into(),
    });
    let payload = webhook::payload(&digest(), Some(&[exempt]), "delivery-2");
    assert!(!payload.to_string().contains('\u{202e}'), "{payload}");
    insta::assert_json_snapshot!("webhook_payload_exempted", payload["exempted"]);
}

#[test]
fn pagerduty_triggers_at_its_severity_and_always_resolves() {
    let events = pagerduty::events(&digest(), Severity::High, &[]);
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["event_action"].as_str().unwrap(),
                e["dedup_key"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("trigger", "fp-project-retention-not-zdr-proj_evil"),
            ("resolve", "fp-project-no-spend-alert-proj_support"),
        ]
    );
    assert!(
        events.iter().all(|e| e.get("routing_key").is_none()),
        "the key is added only when sent"
    );
}

#[test]
fn a_long_run_fits_slack_limits() {
    let many: Vec<FindingState> = (0..1000)
        .map(|i| {
            finding(
                "api-key-old",
                Severity::Medium,
                &format!("key_{i:04}_{}", "x".repeat(200)),
                Some(("proj_a", "Alpha")),
            )
        })
        .collect();
    let ctx = RunContext {
        organization: "acme".into(),
        snapshot_id: None,
        partial: false,
    };
    let policy = Policy {
        repeat_interval: TimeDelta::days(7),
        send_resolved: true,
    };
    let digest = plan(&many, &ctx, &policy, now()).unwrap();
    let message = slack::message(&digest);
    let blocks = message["blocks"].as_array().unwrap();
    assert!(blocks.len() <= slack::MAX_BLOCKS);
    for block in blocks {
        if let Some(text) = block["text"]["text"].as_str() {
            assert!(text.chars().count() <= slack::MAX_TEXT);
        }
    }
    let last = blocks.last().unwrap()["text"]["text"].as_str().unwrap();
    assert!(last.contains("more"), "{last}");
    let fallback = message["text"].as_str().unwrap();
    assert!(fallback.chars().count() <= slack::MAX_TEXT);
    assert!(
        fallback.contains("1000 new") && fallback.contains("more"),
        "{fallback}"
    );
}
