//! The webhook payload, version 1 (`docs/webhook.md`, `docs/webhook.schema.json`): the run,
//! and each announced finding with why it is announced. Text that came from the API or from
//! rule files goes through [`crate::report::inert`], so control and bidi characters arrive as
//! visible escapes.

use serde_json::{Value, json};

use super::plan::{Announced, Digest, FindingState, Reason};
use crate::model::Fingerprint;
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
        payload["exempted"] = exempted.iter().map(exempted_entry).collect();
    }
    payload
}

/// One message of a run's webhook announcement.
#[derive(Debug)]
pub struct Part {
    /// The payload.
    pub body: Value,
    /// The findings it carries.
    pub fingerprints: Vec<Fingerprint>,
    /// Its delivery id.
    pub delivery_id: String,
}

/// Room left in a part's size for what its empty payload cannot show: the counts' digits
/// and the part's numbers.
const PART_SLACK: usize = 128;

/// The payloads announcing `digest` (and, with `exempted`, the findings an exemption now
/// covers), each at most `max_bytes` of JSON where one transition allows: the whole run as
/// one [`payload`] when it fits, else its transitions and exempted findings in order,
/// split between them into parts that each say `part` (`number` of `of`) and count only
/// their own transitions. Each part has its own delivery id from `new_id`. A receiver behind
/// a proxy that limits request bodies (nginx's default is 1 MiB) would refuse a large run's
/// one body for good, and with it every finding the run announced.
pub fn parts(
    digest: &Digest,
    exempted: Option<&[FindingState]>,
    max_bytes: usize,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Part> {
    let delivery_id = new_id();
    let whole = payload(digest, exempted, &delivery_id);
    let mut fingerprints = digest.fingerprints();
    fingerprints.extend(
        exempted
            .unwrap_or_default()
            .iter()
            .map(|f| f.fingerprint.clone()),
    );
    if whole.to_string().len() <= max_bytes {
        return vec![Part {
            body: whole,
            fingerprints,
            delivery_id,
        }];
    }
    let base = payload(
        &chunk_digest(digest, Vec::new()),
        exempted.map(|_| &[][..]),
        &delivery_id,
    )
    .to_string()
    .len()
        + PART_SLACK;
    let mut chunks: Vec<(Vec<Announced>, Vec<FindingState>)> = vec![Default::default()];
    let mut size = base;
    let mut place = |bytes: usize, chunks: &mut Vec<(Vec<Announced>, Vec<FindingState>)>| {
        // Its comma: every item of an array but the first has one before it, so counting
        // one for each overcounts by a byte at most.
        let bytes = bytes + 1;
        let last = chunks.last().expect("one chunk at least");
        if size + bytes > max_bytes && !(last.0.is_empty() && last.1.is_empty()) {
            chunks.push(Default::default());
            size = base;
        }
        size += bytes;
    };
    for announced in &digest.announced {
        place(transition(announced).to_string().len(), &mut chunks);
        chunks.last_mut().expect("placed").0.push(announced.clone());
    }
    for f in exempted.unwrap_or_default() {
        place(exempted_entry(f).to_string().len(), &mut chunks);
        chunks.last_mut().expect("placed").1.push(f.clone());
    }
    let of = chunks.len();
    // One transition or exempted finding larger than the bound on its own: there is
    // nothing to split it from, and a `part` of 1 would claim a split that did not happen.
    if of == 1 {
        return vec![Part {
            body: whole,
            fingerprints,
            delivery_id,
        }];
    }
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, (announced, exempt))| {
            let delivery_id = new_id();
            let mut fingerprints: Vec<Fingerprint> = announced
                .iter()
                .map(|a| a.finding.fingerprint.clone())
                .collect();
            fingerprints.extend(exempt.iter().map(|f| f.fingerprint.clone()));
            let part = chunk_digest(digest, announced);
            let mut body = payload(&part, exempted.map(|_| exempt.as_slice()), &delivery_id);
            body["part"] = json!({"number": index + 1, "of": of});
            Part {
                body,
                fingerprints,
                delivery_id,
            }
        })
        .collect()
}

/// `digest`'s run announcing only `announced`.
fn chunk_digest(digest: &Digest, announced: Vec<Announced>) -> Digest {
    Digest {
        organization: digest.organization.clone(),
        snapshot_id: digest.snapshot_id,
        generated_at: digest.generated_at,
        partial: digest.partial,
        announced,
        open: Vec::new(),
        spend: crate::store::DigestSpend::default(),
    }
}

/// A finding an exemption now covers, with the exemption's terms.
fn exempted_entry(f: &FindingState) -> Value {
    json!({
        "exemption": f.exemption.as_ref().map(|terms| json!({
            "expires": terms.expires.to_string(),
            "owner": inert(&terms.owner),
            "reason": inert(&terms.reason),
        })),
        "finding": finding(f),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use crate::notify::plan::tests::{finding, t};
    use crate::notify::plan::{FindingStatus, Policy, RunContext, Transition, plan};

    /// A run announcing `opened` new findings and `resolved` resolutions.
    fn digest(opened: usize, resolved: usize) -> Digest {
        let mut findings = Vec::new();
        for i in 0..opened {
            let mut f = finding(&format!("key_new_{i:04}"), Severity::High);
            f.transition = Some(Transition::Opened);
            f.last_notified_at = None;
            findings.push(f);
        }
        for i in 0..resolved {
            let mut f = finding(&format!("key_gone_{i:04}"), Severity::Low);
            f.transition = Some(Transition::Resolved);
            f.status = FindingStatus::Resolved;
            findings.push(f);
        }
        let ctx = RunContext {
            organization: "acme".into(),
            snapshot_id: Some(crate::model::SnapshotId(7)),
            partial: false,
        };
        let policy = Policy {
            repeat_interval: chrono::TimeDelta::days(7),
            send_resolved: true,
        };
        plan(&findings, &ctx, &policy, t(3)).expect("something to announce")
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("delivery-{n}")
        }
    }

    #[test]
    fn a_run_that_fits_is_one_payload_without_a_part() {
        let digest = digest(3, 1);
        let parts = parts(&digest, None, 16 * 1024, &mut ids());
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].body, payload(&digest, None, "delivery-1"));
        assert!(parts[0].body.get("part").is_none());
        assert_eq!(parts[0].fingerprints, digest.fingerprints());
    }

    #[test]
    fn a_large_run_is_split_into_numbered_parts_each_within_the_bound() {
        let digest = digest(150, 50);
        let max = 16 * 1024;
        let whole = payload(&digest, None, "x").to_string().len();
        assert!(whole > 4 * max, "{whole}");
        let parts = parts(&digest, None, max, &mut ids());
        assert!(parts.len() >= 5, "{}", parts.len());
        // Filled, not one transition each: about as many parts as the bound demands.
        assert!(parts.len() <= whole.div_ceil(max) + 1, "{}", parts.len());
        let of = parts.len();
        let mut announced = Vec::new();
        let mut delivery_ids = std::collections::BTreeSet::new();
        for (index, part) in parts.iter().enumerate() {
            let text = part.body.to_string();
            assert!(text.len() <= max, "part {index}: {} bytes", text.len());
            assert_eq!(part.body["part"], json!({"number": index + 1, "of": of}));
            assert_eq!(part.body["delivery_id"], part.delivery_id.as_str());
            delivery_ids.insert(part.delivery_id.clone());
            let transitions = part.body["transitions"].as_array().expect("transitions");
            assert!(!transitions.is_empty());
            // Each part counts its own transitions, so the parts' counts add up to the run's.
            let counted: u64 = part.body["counts"]
                .as_object()
                .expect("counts")
                .values()
                .filter_map(Value::as_u64)
                .sum();
            assert_eq!(counted, transitions.len() as u64);
            assert_eq!(part.body["run"], payload(&digest, None, "x")["run"]);
            let fingerprints: Vec<&str> = transitions
                .iter()
                .map(|t| t["finding"]["fingerprint"].as_str().expect("fingerprint"))
                .collect();
            assert_eq!(
                part.fingerprints
                    .iter()
                    .map(|f| f.0.as_str())
                    .collect::<Vec<_>>(),
                fingerprints
            );
            announced.extend(part.fingerprints.iter().cloned());
        }
        // Every transition once, in the run's order.
        assert_eq!(announced, digest.fingerprints());
        assert_eq!(delivery_ids.len(), of);
    }

    #[test]
    fn exempted_findings_are_split_after_the_transitions() {
        let digest = digest(40, 0);
        let exempt: Vec<FindingState> = (0..40)
            .map(|i| {
                let mut f = finding(&format!("key_exempt_{i:04}"), Severity::Medium);
                f.status = FindingStatus::Exempt;
                f
            })
            .collect();
        let parts = parts(&digest, Some(&exempt), 16 * 1024, &mut ids());
        assert!(parts.len() >= 3, "{}", parts.len());
        let mut transitions = 0;
        let mut exempted = 0;
        let mut seen_exempted = false;
        for part in &parts {
            assert!(part.body.to_string().len() <= 16 * 1024);
            // Every part has the shape a send_exempted channel's messages have.
            let t = part.body["transitions"]
                .as_array()
                .expect("transitions")
                .len();
            let e = part.body["exempted"].as_array().expect("exempted").len();
            assert!(
                !seen_exempted || t == 0,
                "a transition after an exempted finding"
            );
            seen_exempted |= e > 0;
            transitions += t;
            exempted += e;
            assert_eq!(part.fingerprints.len(), t + e);
        }
        assert_eq!((transitions, exempted), (40, 40));
    }

    #[test]
    fn a_transition_larger_than_the_bound_goes_alone() {
        let mut digest = digest(3, 0);
        digest.announced[1].finding.message = "x".repeat(40 * 1024);
        let parts = parts(&digest, None, 16 * 1024, &mut ids());
        let sizes: Vec<usize> = parts
            .iter()
            .map(|p| p.body["transitions"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [1, 1, 1]);
        assert!(parts[1].body.to_string().len() > 16 * 1024);
    }

    #[test]
    fn a_single_transition_larger_than_the_bound_is_one_payload_without_a_part() {
        // Nothing to split it from: a `part` saying 1 of 1 would break the schema (`of` is
        // at least 2) and tell a receiver the run was split when it was not.
        let mut digest = digest(1, 0);
        digest.announced[0].finding.message = "x".repeat(40 * 1024);
        let parts = parts(&digest, None, 16 * 1024, &mut ids());
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].body, payload(&digest, None, "delivery-1"));
        assert!(parts[0].body.get("part").is_none());
        assert_eq!(parts[0].fingerprints, digest.fingerprints());
    }
}
