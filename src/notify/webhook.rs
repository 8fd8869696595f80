//! The webhook payload, version 1 (`docs/webhook.md`, `docs/webhook.schema.json`): the run,
//! and each announced finding with why it is announced. Text that came from the API or from
//! rule files goes through [`crate::report::inert`], so control and bidi characters arrive as
//! visible escapes.

use serde_json::{Value, json};

use super::plan::{Announced, Digest, FindingState, Reason};
use crate::report::inert;

/// The payload's version; a change that can break a receiver gets a new one.
pub const VERSION: u32 = 1;

/// The announcement reasons, in payload order.
const REASONS: [Reason; 5] = [
    Reason::New,
    Reason::Reopened,
    Reason::Escalated,
    Reason::Resolved,
    Reason::Reminder,
];

/// The payload announcing `digest`, delivered as `delivery_id`; with `exempted` (a
/// channel with `send_exempted`), also the findings an exemption now covers, with its terms.
pub fn payload(digest: &Digest, exempted: Option<&[FindingState]>, delivery_id: &str) -> Value {
    let counts: serde_json::Map<String, Value> = REASONS
        .iter()
        .map(|r| (r.as_str().to_owned(), json!(digest.count(*r))))
        .collect();
    let mut payload = json!({
        "version": VERSION,
        "delivery_id": delivery_id,
        "test": false,
        "run": {
            "organization": inert(&digest.organization),
            "snapshot_id": digest.snapshot_id.map(|s| s.0),
            "generated_at": digest.generated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "partial": digest.partial,
        },
        "counts": counts,
        "transitions": digest.announced.iter().map(transition).collect::<Vec<_>>(),
    });
    // Only for a channel that asked: receivers written before it existed see the payload
    // they know.
    if let Some(exempted) = exempted {
        payload["exempted"] = exempted
            .iter()
            .map(|f| {
                json!({
                    "exemption": f.exemption.as_ref().map(|terms| json!({
                        "expires": terms.expires.to_string(),
                        "owner": inert(&terms.owner),
                        "reason": inert(&terms.reason),
                    })),
                    "finding": finding(f),
                })
            })
            .collect();
    }
    payload
}

/// The payload `notify test` sends: a run with no transitions, marked as a test.
pub fn test_payload(
    organization: &str,
    now: chrono::DateTime<chrono::Utc>,
    delivery_id: &str,
) -> Value {
    let counts: serde_json::Map<String, Value> = REASONS
        .iter()
        .map(|r| (r.as_str().to_owned(), json!(0)))
        .collect();
    json!({
        "version": VERSION,
        "delivery_id": delivery_id,
        "test": true,
        "run": {
            "organization": inert(organization),
            "snapshot_id": null,
            "generated_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "partial": false,
        },
        "counts": counts,
        "transitions": [],
    })
}

fn transition(a: &Announced) -> Value {
    json!({
        "reason": a.reason.as_str(),
        "transition": a.finding.transition.as_ref().map(super::plan::Transition::kind),
        "detail": a.detail.as_deref().map(inert),
        "finding": finding(&a.finding),
    })
}

/// The finding as a payload describes it.
fn finding(f: &FindingState) -> Value {
    let mut finding = json!({
            "fingerprint": f.fingerprint,
            "rule_id": inert(f.rule_id.as_str()),
            "title": inert(&f.title),
            "severity": f.severity,
            "status": f.status,
            "resource_type": inert(&f.resource_type),
            "resource_id": inert(&f.resource_id),
            "project_id": f.project_id.as_ref().map(|p| inert(p.as_str()).into_owned()),
            "project_name": f.project_name.as_deref().map(inert),
            "message": inert(&f.message),
            "remediation": inert(&f.remediation),
            "first_seen": f.first_seen.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    // Only when an audit-log event explains the change: receivers written before it
    // existed see the payload they know.
    if let Some(by) = &f.changed_by {
        finding["changed_by"] = json!({
            "event_id": inert(by.event_id.as_str()),
            "type": inert(&by.event_type),
            "at": by.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "actor": {
                "type": by.actor.kind.as_deref().map(inert),
                "user_id": by.actor.user_id.as_deref().map(inert),
                "user_email": by.actor.user_email.as_deref().map(inert),
                "ip": by.actor.ip.as_deref().map(inert),
                "api_key_id": by.actor.api_key_id.as_deref().map(inert),
                "service_account_id": by.actor.service_account_id.as_deref().map(inert),
            },
        });
    }
    finding
}
