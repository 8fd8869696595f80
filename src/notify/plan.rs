//! The pure decision: given the findings after one evaluation, what (if anything) this run
//! announces. No I/O and no clock of its own, so every rule here is testable in isolation.
//!
//! The rules, after Alertmanager: changes are announced once (new, reopened, escalated,
//! exemption expired, and resolved when `send_resolved`); findings that stay open are
//! re-announced only when `repeat_interval` has passed since they were last announced. When
//! any still-open finding is due, every still-open finding is reminded together, so reminders
//! come as one digest per interval rather than trickling in one finding at a time.
//!
//! A transition is what changed since the finding was last announced, not what this run
//! recorded, so a change seen by a run that did not notify is still announced once. What the
//! policy deliberately leaves unsaid (an exemption, a downgrade, a resolution without
//! `send_resolved`) is [`settled`]: recorded as told, so it cannot mask a later change.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Fingerprint, ProjectId, RuleId, Severity, SnapshotId};

/// A finding's lifecycle status after this run.
pub use crate::model::FindingStatus;

/// What happened to a finding during this run, if anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transition {
    /// Seen for the first time.
    Opened,
    /// Was resolved, holds again.
    Reopened {
        /// Why, in words (e.g. "the key is active again").
        reason: String,
    },
    /// No longer holds (only after a complete read).
    Resolved,
    /// The rule's severity for it changed.
    SeverityChanged {
        /// The severity before this run.
        from: Severity,
    },
    /// An exemption now covers it.
    Exempted,
    /// The exemption that covered it has expired.
    ExemptionExpired {
        /// The expired exemption's reason and owner, in words.
        reason: String,
    },
}

impl Transition {
    /// A stable one-word name for logs and templates.
    pub fn kind(&self) -> &'static str {
        match self {
            Transition::Opened => "opened",
            Transition::Reopened { .. } => "reopened",
            Transition::Resolved => "resolved",
            Transition::SeverityChanged { .. } => "severity_changed",
            Transition::Exempted => "exempted",
            Transition::ExemptionExpired { .. } => "exemption_expired",
        }
    }
}

/// One finding as the notifier sees it after an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FindingState {
    /// Stable identity: rule id + resource id + project id.
    pub fingerprint: Fingerprint,
    /// The rule that produced it.
    pub rule_id: RuleId,
    /// The rule's title.
    pub title: String,
    /// Its severity now.
    pub severity: Severity,
    /// The view it reports on (`project_api_keys`).
    pub resource_type: String,
    /// The id of the object it is about.
    pub resource_id: String,
    /// The project it belongs to, if any.
    pub project_id: Option<ProjectId>,
    /// The project's name as the API gave it (untrusted text).
    pub project_name: Option<String>,
    /// What is wrong, for this resource.
    pub message: String,
    /// How to fix it.
    pub remediation: String,
    /// Status after this run.
    pub status: FindingStatus,
    /// When it was first seen.
    pub first_seen: DateTime<Utc>,
    /// What changed since it was last announced (or settled), if anything.
    pub transition: Option<Transition>,
    /// When it was last announced; `None` = never.
    pub last_notified_at: Option<DateTime<Utc>>,
    /// The audit-log event that explains its last opening or resolution, if one does.
    pub changed_by: Option<crate::findings::ChangedBy>,
    /// While it is exempt: the terms of the exemption in force.
    pub exemption: Option<crate::exemptions::Terms>,
}

/// Facts about the run that the digest reports.
#[derive(Clone, Debug)]
pub struct RunContext {
    /// The organization's name (`[openai] organization`).
    pub organization: String,
    /// The snapshot evaluated.
    pub snapshot_id: Option<SnapshotId>,
    /// The snapshot could not read every scope: nothing may be announced as resolved.
    pub partial: bool,
}

/// The `[notify]` settings the decision needs, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Re-announce still-open findings after this long.
    pub repeat_interval: TimeDelta,
    /// Announce resolutions.
    pub send_resolved: bool,
}

/// Why a finding is in the digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// First seen this run.
    New,
    /// Holds again after being resolved, or its exemption expired.
    Reopened,
    /// Its severity went up.
    Escalated,
    /// Resolved this run.
    Resolved,
    /// Still open and due for a reminder.
    Reminder,
}

impl Reason {
    /// The lowercase name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::Reopened => "reopened",
            Reason::Escalated => "escalated",
            Reason::Resolved => "resolved",
            Reason::Reminder => "reminder",
        }
    }
}

/// One announced finding.
#[derive(Clone, Debug, PartialEq)]
pub struct Announced {
    /// The finding.
    pub finding: FindingState,
    /// Why it is announced.
    pub reason: Reason,
    /// Extra words for the reader: the reopen reason, the previous severity.
    pub detail: Option<String>,
}

/// What one run announces.
#[derive(Clone, Debug, PartialEq)]
pub struct Digest {
    /// The organization's name.
    pub organization: String,
    /// The snapshot evaluated.
    pub snapshot_id: Option<SnapshotId>,
    /// When the digest was made.
    pub generated_at: DateTime<Utc>,
    /// The snapshot was partial (resolutions withheld).
    pub partial: bool,
    /// Every announced finding, in announcement order (severity high first).
    pub announced: Vec<Announced>,
    /// Every open finding after this run, oldest first (the CSV attachment, the counts).
    pub open: Vec<FindingState>,
    /// This month's spend per project (the `project_spend` view), for the digest's chart.
    pub spend: crate::store::DigestSpend,
}

impl Digest {
    /// A digest of `ctx`'s run that announces nothing: the run a message carries when it
    /// says only what this run closed (a webhook's `exempted`).
    pub fn without_announcements(ctx: &RunContext, now: DateTime<Utc>) -> Digest {
        Digest {
            organization: ctx.organization.clone(),
            snapshot_id: ctx.snapshot_id,
            generated_at: now,
            partial: ctx.partial,
            announced: Vec::new(),
            open: Vec::new(),
            spend: crate::store::DigestSpend::default(),
        }
    }

    /// The announced findings for one reason.
    pub fn with_reason(&self, reason: Reason) -> impl Iterator<Item = &Announced> {
        self.announced.iter().filter(move |a| a.reason == reason)
    }

    /// How many findings are announced for one reason.
    pub fn count(&self, reason: Reason) -> usize {
        self.with_reason(reason).count()
    }

    /// The fingerprints announced, for the caller to set `last_notified_at`.
    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        self.announced
            .iter()
            .map(|a| a.finding.fingerprint.clone())
            .collect()
    }
}

/// Which announced findings one channel receives: those at or above its severity whose
/// rule id matches one of its globs (every rule when it has none).
#[derive(Clone, Debug)]
pub struct Route {
    /// The lowest severity sent.
    pub min_severity: Severity,
    /// Rule id patterns; `None` = every rule.
    pub rules: Option<globset::GlobSet>,
}

impl Route {
    /// Every finding of every rule.
    pub fn all() -> Route {
        Route {
            min_severity: Severity::Info,
            rules: None,
        }
    }

    /// Whether this channel hears about `finding`.
    pub fn accepts(&self, finding: &FindingState) -> bool {
        finding.severity >= self.min_severity
            && self
                .rules
                .as_ref()
                .is_none_or(|set| set.is_match(finding.rule_id.as_str()))
    }
}

impl Digest {
    /// The part of this digest one channel receives; `None` when nothing it announces is for
    /// the channel (reminders alone do not make a channel speak unless one of its own
    /// findings is announced).
    pub fn routed(&self, route: &Route) -> Option<Digest> {
        let announced: Vec<Announced> = self
            .announced
            .iter()
            .filter(|a| route.accepts(&a.finding))
            .cloned()
            .collect();
        if announced.is_empty() {
            return None;
        }
        Some(Digest {
            announced,
            open: self
                .open
                .iter()
                .filter(|f| route.accepts(f))
                .cloned()
                .collect(),
            ..self.clone()
        })
    }
}

/// What the policy does with one finding's transition.
enum Decision {
    /// Announce it, for this reason, with these extra words.
    Announce(Reason, Option<String>),
    /// Deliberately not announced: record it as told, so it does not linger and mask a
    /// later change (an exemption, a downgrade, a resolution nobody wants to hear about).
    Settle,
    /// Not announced now, and not settled either: a later run must still announce it.
    Keep,
}

/// The one place that decides what happens to a transition; [`plan`] and [`settled`] both
/// follow it, so what is announced and what is recorded as told cannot drift apart.
fn decide(finding: &FindingState, ctx: &RunContext, policy: &Policy) -> Decision {
    match (&finding.transition, finding.status) {
        (Some(Transition::Opened), FindingStatus::Open) => Decision::Announce(Reason::New, None),
        (Some(Transition::Reopened { reason }), FindingStatus::Open) => {
            Decision::Announce(Reason::Reopened, Some(reason.clone()))
        }
        // The reason already reads "exemption expired on … (owner …)".
        (Some(Transition::ExemptionExpired { reason }), FindingStatus::Open) => {
            Decision::Announce(Reason::Reopened, Some(reason.clone()))
        }
        (Some(Transition::SeverityChanged { from }), FindingStatus::Open) => {
            if finding.severity > *from {
                Decision::Announce(Reason::Escalated, Some(format!("was {from}")))
            } else {
                Decision::Settle
            }
        }
        (Some(Transition::Resolved), FindingStatus::Resolved) => {
            if !policy.send_resolved {
                Decision::Settle
            } else if ctx.partial {
                // Withheld, not dropped: the next complete run announces it.
                Decision::Keep
            } else {
                Decision::Announce(Reason::Resolved, None)
            }
        }
        (Some(Transition::Exempted), FindingStatus::Exempt) => Decision::Settle,
        _ => Decision::Keep,
    }
}

/// The fingerprints whose transition the policy deliberately does not announce: the
/// caller records them as told (without touching `last_notified_at`) in the same
/// transaction as the announcement. A resolution withheld by a partial snapshot is not
/// among them.
pub fn settled(findings: &[FindingState], ctx: &RunContext, policy: &Policy) -> Vec<Fingerprint> {
    findings
        .iter()
        .filter(|f| matches!(decide(f, ctx, policy), Decision::Settle))
        .map(|f| f.fingerprint.clone())
        .collect()
}

/// The findings closed this run that no digest announces: those an exemption now covers,
/// and those resolved while `send_resolved` is off. A PagerDuty incident paged for one must
/// still be resolved, or it stays open for good, and the trigger sent when the finding
/// returns joins that stale incident instead of paging again.
pub fn closed_unannounced(
    findings: &[FindingState],
    ctx: &RunContext,
    policy: &Policy,
) -> Vec<FindingState> {
    findings
        .iter()
        .filter(|f| match (&f.transition, f.status) {
            (Some(Transition::Exempted), FindingStatus::Exempt) => true,
            (Some(Transition::Resolved), FindingStatus::Resolved) => {
                matches!(decide(f, ctx, policy), Decision::Settle)
            }
            _ => false,
        })
        .cloned()
        .collect()
}

/// Decides what this run announces; `None` when there is nothing to say.
pub fn plan(
    findings: &[FindingState],
    ctx: &RunContext,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<Digest> {
    let mut announced = Vec::new();
    let mut reminder_candidates = Vec::new();
    for finding in findings {
        match decide(finding, ctx, policy) {
            Decision::Announce(reason, detail) => announced.push(Announced {
                finding: finding.clone(),
                reason,
                detail,
            }),
            _ if finding.status == FindingStatus::Open => reminder_candidates.push(finding),
            _ => {}
        }
    }
    let reminder_due = reminder_candidates
        .iter()
        .any(|f| match f.last_notified_at {
            None => true,
            Some(at) => now - at >= policy.repeat_interval,
        });
    if reminder_due {
        announced.extend(reminder_candidates.into_iter().map(|f| Announced {
            finding: f.clone(),
            reason: Reason::Reminder,
            detail: None,
        }));
    }
    if announced.is_empty() {
        return None;
    }
    announced.sort_by(|a, b| {
        b.finding
            .severity
            .cmp(&a.finding.severity)
            .then_with(|| a.finding.fingerprint.cmp(&b.finding.fingerprint))
    });
    let mut open: Vec<FindingState> = findings
        .iter()
        .filter(|f| f.status == FindingStatus::Open)
        .cloned()
        .collect();
    open.sort_by(|a, b| {
        a.first_seen
            .cmp(&b.first_seen)
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    Some(Digest {
        organization: ctx.organization.clone(),
        snapshot_id: ctx.snapshot_id,
        generated_at: now,
        partial: ctx.partial,
        announced,
        open,
        spend: crate::store::DigestSpend::default(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn t(day: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap() + TimeDelta::days(day)
    }

    pub(crate) fn finding(id: &str, severity: Severity) -> FindingState {
        FindingState {
            fingerprint: Fingerprint(format!("fp-{id}")),
            rule_id: RuleId::from("api-key-stale"),
            title: "API key unused for a long time".into(),
            severity,
            resource_type: "project_api_keys".into(),
            resource_id: id.into(),
            project_id: Some(ProjectId::from("proj_payments")),
            project_name: Some("Payments".into()),
            message: format!("key {id} unused for 200 days"),
            remediation: "Revoke the key.".into(),
            status: FindingStatus::Open,
            first_seen: t(0),
            transition: None,
            last_notified_at: Some(t(0)),
            changed_by: None,
            exemption: None,
        }
    }

    fn ctx() -> RunContext {
        RunContext {
            organization: "acme".into(),
            snapshot_id: Some(SnapshotId(1)),
            partial: false,
        }
    }

    fn policy() -> Policy {
        Policy {
            repeat_interval: TimeDelta::days(7),
            send_resolved: true,
        }
    }

    fn with(mut f: FindingState, transition: Transition, status: FindingStatus) -> FindingState {
        f.transition = Some(transition);
        f.status = status;
        f
    }

    #[test]
    fn nothing_changed_and_nothing_due_means_no_digest() {
        let findings = vec![finding("a", Severity::High)];
        assert_eq!(plan(&findings, &ctx(), &policy(), t(3)), None);
    }

    #[test]
    fn new_finding_is_announced_and_open_ones_not_yet_due_are_not() {
        let new = with(
            finding("b", Severity::Medium),
            Transition::Opened,
            FindingStatus::Open,
        );
        let findings = vec![finding("a", Severity::High), new];
        let digest = plan(&findings, &ctx(), &policy(), t(3)).expect("digest");
        assert_eq!(digest.fingerprints(), vec![Fingerprint::from("fp-b")]);
        assert_eq!(digest.count(Reason::New), 1);
        assert_eq!(digest.open.len(), 2, "the CSV lists every open finding");
    }

    #[test]
    fn any_due_reminder_reminds_every_still_open_finding_together() {
        let mut recent = finding("b", Severity::Low);
        recent.last_notified_at = Some(t(5));
        let findings = vec![finding("a", Severity::High), recent];
        let digest = plan(&findings, &ctx(), &policy(), t(7)).expect("due");
        assert_eq!(digest.count(Reason::Reminder), 2);
        assert!(plan(&findings, &ctx(), &policy(), t(6)).is_none());
    }

    #[test]
    fn never_notified_open_finding_is_due_at_once() {
        let mut f = finding("a", Severity::High);
        f.last_notified_at = None;
        let digest = plan(&[f], &ctx(), &policy(), t(0)).expect("due");
        assert_eq!(digest.count(Reason::Reminder), 1);
    }

    #[test]
    fn resolution_is_announced_only_when_send_resolved() {
        let resolved = with(
            finding("a", Severity::High),
            Transition::Resolved,
            FindingStatus::Resolved,
        );
        let digest =
            plan(std::slice::from_ref(&resolved), &ctx(), &policy(), t(1)).expect("digest");
        assert_eq!(digest.count(Reason::Resolved), 1);
        assert!(digest.open.is_empty());
        let quiet = Policy {
            send_resolved: false,
            ..policy()
        };
        assert_eq!(plan(&[resolved], &ctx(), &quiet, t(1)), None);
    }

    #[test]
    fn partial_snapshot_announces_no_resolution() {
        let resolved = with(
            finding("a", Severity::High),
            Transition::Resolved,
            FindingStatus::Resolved,
        );
        let partial = RunContext {
            partial: true,
            ..ctx()
        };
        assert_eq!(plan(&[resolved], &partial, &policy(), t(1)), None);
    }

    #[test]
    fn resolution_withheld_by_a_partial_snapshot_is_not_settled() {
        let resolved = with(
            finding("a", Severity::High),
            Transition::Resolved,
            FindingStatus::Resolved,
        );
        let partial = RunContext {
            partial: true,
            ..ctx()
        };
        assert!(
            settled(std::slice::from_ref(&resolved), &partial, &policy()).is_empty(),
            "the next complete run must still announce it"
        );
        assert!(settled(std::slice::from_ref(&resolved), &ctx(), &policy()).is_empty());
        let quiet = Policy {
            send_resolved: false,
            ..policy()
        };
        assert_eq!(
            settled(&[resolved], &partial, &quiet),
            vec![Fingerprint::from("fp-a")],
            "without send_resolved no run will announce it"
        );
    }

    #[test]
    fn unannounced_exemptions_and_downgrades_are_settled_announced_changes_are_not() {
        let exempted = with(
            finding("ex", Severity::High),
            Transition::Exempted,
            FindingStatus::Exempt,
        );
        let down = with(
            finding("down", Severity::Low),
            Transition::SeverityChanged {
                from: Severity::Medium,
            },
            FindingStatus::Open,
        );
        let up = with(
            finding("up", Severity::High),
            Transition::SeverityChanged {
                from: Severity::Medium,
            },
            FindingStatus::Open,
        );
        let new = with(
            finding("new", Severity::Low),
            Transition::Opened,
            FindingStatus::Open,
        );
        let quiet = finding("quiet", Severity::Low);
        let all = [exempted, down, up, new, quiet];
        assert_eq!(
            settled(&all, &ctx(), &policy()),
            vec![Fingerprint::from("fp-ex"), Fingerprint::from("fp-down")]
        );
    }

    #[test]
    fn escalation_is_announced_but_a_downgrade_is_not() {
        let up = with(
            finding("a", Severity::High),
            Transition::SeverityChanged {
                from: Severity::Medium,
            },
            FindingStatus::Open,
        );
        let down = with(
            finding("b", Severity::Low),
            Transition::SeverityChanged {
                from: Severity::Medium,
            },
            FindingStatus::Open,
        );
        let digest = plan(&[up, down], &ctx(), &policy(), t(1)).expect("digest");
        assert_eq!(digest.fingerprints(), vec![Fingerprint::from("fp-a")]);
        assert_eq!(digest.announced[0].detail.as_deref(), Some("was medium"));
    }

    #[test]
    fn reopen_and_expired_exemption_are_announced_with_their_reason() {
        let reopened = with(
            finding("a", Severity::High),
            Transition::Reopened {
                reason: "the key was used again".into(),
            },
            FindingStatus::Open,
        );
        let expired = with(
            finding("b", Severity::Medium),
            Transition::ExemptionExpired {
                reason: "exemption expired on 2026-01-01 (owner finops@example.com)".into(),
            },
            FindingStatus::Open,
        );
        let digest = plan(&[reopened, expired], &ctx(), &policy(), t(1)).expect("digest");
        assert_eq!(digest.count(Reason::Reopened), 2);
        assert!(
            digest.announced[1]
                .detail
                .as_deref()
                .is_some_and(|d| d == "exemption expired on 2026-01-01 (owner finops@example.com)")
        );
    }

    #[test]
    fn exempted_findings_are_neither_announced_nor_reminded() {
        let mut exempt = with(
            finding("a", Severity::High),
            Transition::Exempted,
            FindingStatus::Exempt,
        );
        exempt.last_notified_at = None;
        assert_eq!(plan(&[exempt], &ctx(), &policy(), t(30)), None);
    }

    #[test]
    fn announced_findings_come_highest_severity_first() {
        let findings = vec![
            with(
                finding("low", Severity::Low),
                Transition::Opened,
                FindingStatus::Open,
            ),
            with(
                finding("crit", Severity::Critical),
                Transition::Opened,
                FindingStatus::Open,
            ),
        ];
        let digest = plan(&findings, &ctx(), &policy(), t(1)).expect("digest");
        assert_eq!(digest.announced[0].finding.resource_id, "crit");
    }

    #[test]
    fn a_channel_receives_only_findings_at_its_severity_and_of_its_rules() {
        let low = with(
            finding("low", Severity::Low),
            Transition::Opened,
            FindingStatus::Open,
        );
        let mut other_rule = with(
            finding("other", Severity::High),
            Transition::Opened,
            FindingStatus::Open,
        );
        other_rule.rule_id = RuleId::from("admin-key-unused");
        let digest = plan(&[low, other_rule], &ctx(), &policy(), t(1)).expect("digest");
        assert_eq!(digest.routed(&Route::all()).unwrap().announced.len(), 2);
        let medium = Route {
            min_severity: Severity::Medium,
            rules: None,
        };
        assert_eq!(
            digest.routed(&medium).unwrap().fingerprints(),
            vec![Fingerprint::from("fp-other")]
        );
        let mut globs = globset::GlobSetBuilder::new();
        globs.add(globset::Glob::new("api-key-*").unwrap());
        let keys_only = Route {
            min_severity: Severity::Medium,
            rules: Some(globs.build().unwrap()),
        };
        assert_eq!(
            digest.routed(&keys_only),
            None,
            "the low key finding is below medium"
        );
    }

    #[test]
    fn closed_unannounced_are_the_exempted_and_the_resolutions_nobody_announces() {
        let exempted = with(
            finding("ex", Severity::High),
            Transition::Exempted,
            FindingStatus::Exempt,
        );
        let resolved = with(
            finding("res", Severity::High),
            Transition::Resolved,
            FindingStatus::Resolved,
        );
        let new = with(
            finding("new", Severity::Low),
            Transition::Opened,
            FindingStatus::Open,
        );
        let all = [exempted, resolved, new, finding("quiet", Severity::Low)];
        let closed = |ctx: &RunContext, policy: &Policy| -> Vec<String> {
            closed_unannounced(&all, ctx, policy)
                .into_iter()
                .map(|f| f.fingerprint.to_string())
                .collect()
        };
        assert_eq!(
            closed(&ctx(), &policy()),
            vec!["fp-ex".to_owned()],
            "a resolution the digest announces is not closed behind its back"
        );
        let quiet = Policy {
            send_resolved: false,
            ..policy()
        };
        assert_eq!(
            closed(&ctx(), &quiet),
            vec!["fp-ex".to_owned(), "fp-res".to_owned()]
        );
        let partial = RunContext {
            partial: true,
            ..ctx()
        };
        assert_eq!(
            closed(&partial, &policy()),
            vec!["fp-ex".to_owned()],
            "a resolution withheld by a partial snapshot is announced later, not closed now"
        );
    }

    #[test]
    fn a_channel_lists_only_its_own_open_findings() {
        let low = with(
            finding("low", Severity::Low),
            Transition::Opened,
            FindingStatus::Open,
        );
        let high = with(
            finding("high", Severity::High),
            Transition::Opened,
            FindingStatus::Open,
        );
        let digest = plan(&[low, high], &ctx(), &policy(), t(1)).expect("digest");
        assert_eq!(digest.open.len(), 2);
        let medium = Route {
            min_severity: Severity::Medium,
            rules: None,
        };
        let routed = digest.routed(&medium).expect("the high finding is for it");
        let open: Vec<&str> = routed.open.iter().map(|f| f.fingerprint.as_str()).collect();
        assert_eq!(
            open,
            ["fp-high"],
            "the open list (the CSV, the counts) is the channel's, not the organization's"
        );
    }
}
