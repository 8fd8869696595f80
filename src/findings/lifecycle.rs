//! The lifecycle of a finding as a pure decision: [`transition`] says, for one finding,
//! what its prior state, this run's sighting, the exemptions and the snapshot's coverage
//! make of it; [`reconcile`] maps it over every hit and every stored finding. Nothing here
//! reads or writes the store (see `notify/plan.rs` for the same shape on the notifying side).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};

use crate::exemptions::Exemption;
use crate::model::{Fingerprint, Hit, ProjectId, RuleId};

use super::{Coverage, Event, EventKind, Finding, RuleMeta, Status, fingerprint};

/// The outcome of reconciling one evaluation with the stored findings.
#[derive(Clone, Debug, Default)]
pub struct Reconciled {
    /// Every finding that was seen or changed, in its new state.
    pub changed: Vec<Finding>,
    /// The transitions.
    pub events: Vec<Event>,
}

/// What this run's evaluation says about one finding.
#[derive(Clone, Copy, Debug)]
pub enum Sighting<'a> {
    /// A rule hit it; `meta` is that rule's current title, severity and remediation.
    Hit {
        /// The hit.
        hit: &'a Hit,
        /// Its rule.
        meta: &'a RuleMeta,
    },
    /// No rule hit it; `rule_evaluated` says whether its rule still ran.
    Missed {
        /// Whether its rule is still enabled (a missing rule's findings always resolve).
        rule_evaluated: bool,
    },
}

/// The exemptions that name one finding's rule and resource, as of one day.
#[derive(Clone, Copy, Debug, Default)]
pub struct Applicable<'a> {
    /// The latest-expiring matching exemption still in force (the first written, among
    /// equals): the finding is exempt until its date, which the event then names.
    pub active: Option<&'a Exemption>,
    /// The latest-expiring matching exemption that has lapsed.
    pub expired: Option<&'a Exemption>,
}

impl<'a> Applicable<'a> {
    /// The exemptions of `all` that apply to `rule` and `resource` in `project` on `today`.
    pub fn find(
        all: &'a [Exemption],
        rule: &RuleId,
        resource: &str,
        project: Option<&ProjectId>,
        today: NaiveDate,
    ) -> Applicable<'a> {
        let mut matching = all.iter().filter(|e| e.matches(rule, resource, project));
        let active = matching
            .clone()
            .filter(|e| e.active_on(today))
            .min_by_key(|e| std::cmp::Reverse(e.expires));
        let expired = matching
            .by_ref()
            .filter(|e| !e.active_on(today))
            .max_by_key(|e| e.expires);
        Applicable { active, expired }
    }
}

/// One finding's new state and the events that record how it got there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The finding as it now is.
    pub finding: Finding,
    /// The transitions, in order (at most a status change and a severity change).
    pub events: Vec<Event>,
}

fn exempt_reason(e: &Exemption) -> String {
    format!(
        "exempt until {} (owner {}): {}",
        e.expires, e.owner, e.reason
    )
}

fn event(f: &Finding, kind: EventKind, from: Option<Status>, at: i64, reason: String) -> Event {
    Event {
        fingerprint: f.fingerprint.clone(),
        kind,
        from,
        to: f.status,
        from_severity: None,
        at,
        reason,
    }
}

/// Decides what becomes of one finding at `now`.
///
/// `prior` is the stored finding (if any), `sighting` what this run's rules said about it,
/// `exemption` the exemptions that name it and `coverage` which projects were read
/// completely. `None` means nothing changes: not seen, and either already resolved or in a
/// project the snapshot did not read completely (a partial read never resolves).
pub fn transition(
    prior: Option<&Finding>,
    sighting: Sighting<'_>,
    exemption: Applicable<'_>,
    coverage: &Coverage,
    now: DateTime<Utc>,
) -> Option<Change> {
    match sighting {
        Sighting::Hit { hit, meta } => Some(seen(prior, hit, meta, exemption, now.timestamp())),
        Sighting::Missed { rule_evaluated } => {
            let old = prior?;
            if old.status == Status::Resolved {
                return None;
            }
            let reason = if !rule_evaluated {
                format!(
                    "rule `{}` is no longer evaluated (disabled or removed)",
                    old.rule_id
                )
            } else if coverage.covers_finding(old) {
                "no longer found in a complete read".to_owned()
            } else {
                return None;
            };
            let at = now.timestamp();
            let mut f = old.clone();
            f.status = Status::Resolved;
            f.resolved_at = Some(at);
            f.exemption = None;
            let resolved = event(&f, EventKind::Resolved, Some(old.status), at, reason);
            Some(Change {
                finding: f,
                events: vec![resolved],
            })
        }
    }
}

/// The status event of a finding seen again, if its status changed, or if it stays exempt
/// on other terms (a new date, owner or reason): the event then says what they now are.
fn status_event(
    f: &Finding,
    old: &Finding,
    hit: &Hit,
    exemption: Applicable<'_>,
    at: i64,
) -> Option<Event> {
    let (kind, reason) = match (old.status, f.status, exemption.active) {
        (Status::Resolved, Status::Open, _) => (EventKind::Reopened, hit.message.clone()),
        (Status::Open | Status::Resolved, Status::Exempt, Some(e)) => {
            (EventKind::Exempted, exempt_reason(e))
        }
        // Terms stored before they were kept (`None`) are not a change.
        (Status::Exempt, Status::Exempt, Some(e))
            if old.exemption.as_ref().is_some_and(|t| *t != e.terms()) =>
        {
            (EventKind::Exempted, exempt_reason(e))
        }
        (Status::Exempt, Status::Open, _) => match exemption.expired {
            // Only the exemption it was under: an older lapsed one that still matches says
            // nothing of why a newer one no longer applies (it was removed or narrowed).
            // Terms stored before they were kept (`None`) are taken to be the lapsed one's.
            Some(e)
                if old
                    .exemption
                    .as_ref()
                    .is_none_or(|terms| terms.expires == e.expires) =>
            {
                (
                    EventKind::ExemptionExpired,
                    format!("exemption expired on {} (owner {})", e.expires, e.owner),
                )
            }
            _ => (
                EventKind::Reopened,
                match &old.exemption {
                    Some(terms) => format!(
                        "the exemption it was under (until {}, owner {}) no longer covers it",
                        terms.expires, terms.owner
                    ),
                    None => "no exemption covers it any more".to_owned(),
                },
            ),
        },
        _ => return None,
    };
    Some(event(f, kind, Some(old.status), at, reason))
}

/// A hit: a new finding, or the prior one seen again (keeping its history and marks).
fn seen(
    prior: Option<&Finding>,
    hit: &Hit,
    meta: &RuleMeta,
    exemption: Applicable<'_>,
    at: i64,
) -> Change {
    let status = if exemption.active.is_some() {
        Status::Exempt
    } else {
        Status::Open
    };
    let mut f = Finding {
        fingerprint: fingerprint(&hit.rule_id, &hit.resource_id, hit.project_id.as_ref()),
        rule_id: hit.rule_id.clone(),
        severity: meta.severity,
        title: meta.title.clone(),
        resource_type: meta.resource_type.clone(),
        resource_id: hit.resource_id.clone(),
        project_id: hit.project_id.clone(),
        message: hit.message.clone(),
        remediation: meta.remediation.clone(),
        status,
        first_seen: at,
        last_seen: at,
        resolved_at: None,
        last_notified_at: None,
        // Set by the pipeline, which can read the audit log (`findings::attribute`).
        changed_by: None,
        exemption: exemption.active.map(Exemption::terms),
    };
    let Some(old) = prior else {
        let (kind, reason) = match exemption.active {
            Some(e) => (EventKind::Exempted, exempt_reason(e)),
            None => (EventKind::Opened, hit.message.clone()),
        };
        let opened = event(&f, kind, None, at, reason);
        return Change {
            finding: f,
            events: vec![opened],
        };
    };
    f.first_seen = old.first_seen;
    f.resolved_at = old.resolved_at;
    f.last_notified_at = old.last_notified_at;
    f.changed_by = old.changed_by.clone();
    let mut events: Vec<Event> = status_event(&f, old, hit, exemption, at)
        .into_iter()
        .collect();
    if old.severity != f.severity && old.status != Status::Resolved {
        let mut changed = event(
            &f,
            EventKind::SeverityChanged,
            Some(old.status),
            at,
            format!("severity {} → {}", old.severity, f.severity),
        );
        changed.from_severity = Some(old.severity);
        events.push(changed);
    }
    Change { finding: f, events }
}

/// Reconciles an evaluation at `now` with the `prior` findings.
///
/// `rules` are the rules that were evaluated: findings of other rules (disabled or removed)
/// are resolved. A finding that was not hit is resolved only when `coverage` says its
/// project was read completely; otherwise it keeps its status.
pub fn reconcile(
    prior: &[Finding],
    hits: &[Hit],
    rules: &HashMap<RuleId, RuleMeta>,
    exemptions: &[Exemption],
    coverage: &Coverage,
    now: DateTime<Utc>,
) -> Reconciled {
    let today = now.date_naive();
    let by_fp: HashMap<&str, &Finding> =
        prior.iter().map(|f| (f.fingerprint.as_str(), f)).collect();
    let mut out = Reconciled::default();
    let mut seen: HashSet<Fingerprint> = HashSet::new();
    let push = |out: &mut Reconciled, change: Change| {
        out.events.extend(change.events);
        out.changed.push(change.finding);
    };
    for hit in hits {
        let Some(meta) = rules.get(&hit.rule_id) else {
            continue;
        };
        let fp = fingerprint(&hit.rule_id, &hit.resource_id, hit.project_id.as_ref());
        if !seen.insert(fp.clone()) {
            continue;
        }
        let exemption = Applicable::find(
            exemptions,
            &hit.rule_id,
            &hit.resource_id,
            hit.project_id.as_ref(),
            today,
        );
        let sighting = Sighting::Hit { hit, meta };
        if let Some(change) = transition(
            by_fp.get(fp.as_str()).copied(),
            sighting,
            exemption,
            coverage,
            now,
        ) {
            push(&mut out, change);
        }
    }
    for old in prior.iter().filter(|f| !seen.contains(&f.fingerprint)) {
        let sighting = Sighting::Missed {
            rule_evaluated: rules.contains_key(&old.rule_id),
        };
        if let Some(change) = transition(Some(old), sighting, Applicable::default(), coverage, now)
        {
            push(&mut out, change);
        }
    }
    out
}
