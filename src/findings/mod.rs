//! Findings with identity and a lifecycle.
//!
//! A finding is identified by its fingerprint (sha256 of rule id, resource id and project
//! id), so the same problem seen on every run is one finding. Each evaluation is reconciled
//! with the stored findings by [`reconcile`] ([`lifecycle`]), a pure function: new hits
//! open findings, resolved ones come back as reopened, missing ones are resolved — but only
//! where the snapshot read the finding's project completely — and exemptions turn matching
//! findings exempt until they expire. Every transition is recorded as an event
//! ([`persist`]).

pub mod changed_by;
pub mod lifecycle;
pub mod persist;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{
    Family, Fingerprint, ProjectId, RuleId, Scope, Severity, SnapshotStatus, stored_enum,
};

pub use changed_by::attribute_transitions;
pub use lifecycle::{Applicable, Change, Reconciled, Sighting, reconcile, transition};
pub use persist::{events, get, load, mark_notified, mark_settled, notify_states, save, write};

/// Why findings could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FindingsError {
    /// SQLite failed.
    #[error("findings store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The store refused a transaction.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A stored value is not one orgwarden writes.
    #[error("findings store: finding {fingerprint} has an unknown {field} `{value}`")]
    Corrupt {
        /// The finding.
        fingerprint: Fingerprint,
        /// The column.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// A value could not be encoded for storage.
    #[error("findings store: cannot encode {0}")]
    Encode(String),
}

/// The audit-log event that explains a finding's transition.
pub use crate::audit_log::explain::ChangedBy;
/// A finding's status (the one type the findings lifecycle, the notifier and the reports share).
pub use crate::model::FindingStatus as Status;

/// A transition of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// First seen.
    Opened,
    /// No longer seen in a complete read.
    Resolved,
    /// Seen again after being resolved (or after its exemption was removed).
    Reopened,
    /// An exemption now covers it.
    Exempted,
    /// Its exemption expired; it is open again.
    ExemptionExpired,
    /// Its rule's severity changed.
    SeverityChanged,
}

stored_enum!(EventKind, "event kind", [
    Opened => "opened",
    Resolved => "resolved",
    Reopened => "reopened",
    Exempted => "exempted",
    ExemptionExpired => "exemption-expired",
    SeverityChanged => "severity-changed",
]);

/// The fingerprint of a finding: sha256 hex of rule id, resource id and project id.
pub fn fingerprint(
    rule_id: &RuleId,
    resource_id: &str,
    project_id: Option<&ProjectId>,
) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(rule_id.as_str().as_bytes());
    h.update([0x1f]);
    h.update(resource_id.as_bytes());
    h.update([0x1f]);
    h.update(project_id.map_or("", ProjectId::as_str).as_bytes());
    Fingerprint(hex::encode(h.finalize()))
}

/// One finding as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Identity.
    pub fingerprint: Fingerprint,
    /// The rule.
    pub rule_id: RuleId,
    /// Current severity.
    pub severity: Severity,
    /// The rule's title.
    pub title: String,
    /// The view the resource lives in.
    pub resource_type: String,
    /// The resource.
    pub resource_id: String,
    /// Its project.
    pub project_id: Option<ProjectId>,
    /// What is wrong, as last seen.
    pub message: String,
    /// What to do.
    pub remediation: String,
    /// Current status.
    pub status: Status,
    /// First time seen (Unix seconds).
    pub first_seen: i64,
    /// Last time seen.
    pub last_seen: i64,
    /// When it was last resolved.
    pub resolved_at: Option<i64>,
    /// When it was last announced (written by the notifier).
    pub last_notified_at: Option<i64>,
    /// The audit-log event that explains its last opening, reopening or resolution.
    pub changed_by: Option<ChangedBy>,
    /// While it is exempt, the terms of the exemption in force.
    pub exemption: Option<crate::exemptions::Terms>,
}

/// One transition, as stored in `finding_events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The finding.
    pub fingerprint: Fingerprint,
    /// What happened.
    pub kind: EventKind,
    /// Status before (none for a new finding).
    pub from: Option<Status>,
    /// Status after.
    pub to: Status,
    /// The severity before, for `severity-changed`.
    pub from_severity: Option<Severity>,
    /// When (Unix seconds).
    pub at: i64,
    /// Why, for people.
    pub reason: String,
}

/// Which projects (and which of the organization's own families) a snapshot read
/// completely: only there may findings be resolved.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    /// Whether the project list itself was read.
    pub project_list_read: bool,
    /// Projects with at least one scope that could not be read.
    pub failed_projects: HashSet<ProjectId>,
    /// The organization's own families with a scope that could not be read, and the
    /// families read under them (a failed user list leaves its users' roles unread).
    pub failed_org_families: HashSet<Family>,
    /// Whether the audit log was read completely: findings about its events (and about
    /// the read itself) resolve only then.
    pub audit_log_read: bool,
    /// Rules whose findings may not resolve whatever their project: they read the spend
    /// views, and the costs were not read completely (their absence proves nothing).
    pub held_rules: HashSet<RuleId>,
}

impl Coverage {
    /// A complete read.
    pub fn complete() -> Coverage {
        Coverage {
            project_list_read: true,
            failed_projects: HashSet::new(),
            failed_org_families: HashSet::new(),
            audit_log_read: true,
            held_rules: HashSet::new(),
        }
    }

    /// The coverage of a snapshot from its status, failed scopes and whether it read the
    /// audit log completely.
    pub fn from_snapshot(
        status: SnapshotStatus,
        failed: &[(Scope, String)],
        audit_log_read: bool,
    ) -> Coverage {
        let project_list_read = status != SnapshotStatus::Failed
            && !failed.iter().any(|(s, _)| s.family == Family::Projects);
        let failed_org: HashSet<Family> = failed
            .iter()
            .filter(|(s, _)| s.project_id.is_none() && s.family != Family::Projects)
            .map(|(s, _)| s.family)
            .collect();
        Coverage {
            project_list_read,
            failed_projects: failed
                .iter()
                .filter_map(|(s, _)| s.project_id.clone())
                .collect(),
            failed_org_families: Family::ALL
                .into_iter()
                .filter(|f| {
                    std::iter::successors(Some(*f), |f| f.parent()).any(|f| failed_org.contains(&f))
                })
                .collect(),
            audit_log_read: audit_log_read && status != SnapshotStatus::Failed,
            held_rules: HashSet::new(),
        }
    }

    /// Whether findings of this project may be resolved.
    pub fn covers(&self, project: Option<&ProjectId>) -> bool {
        self.project_list_read && project.is_none_or(|p| !self.failed_projects.contains(p))
    }

    /// Whether `finding` may be resolved: its project was read completely, or, for the
    /// organization's own resources, the family it reports on was (a finding of a view
    /// that is no family waits for every organization family). A finding about the audit
    /// log waits for a complete read of the log: a window without a matching event proves
    /// nothing if the events could not be read.
    pub fn covers_finding(&self, finding: &Finding) -> bool {
        if !self.covers(finding.project_id.as_ref()) || self.held_rules.contains(&finding.rule_id) {
            return false;
        }
        if crate::audit_log::is_log_view(&finding.resource_type) {
            return self.audit_log_read;
        }
        if finding.project_id.is_some() {
            return true;
        }
        match Family::from_view(&finding.resource_type) {
            Some(family) => !self.failed_org_families.contains(&family),
            None => self.failed_org_families.is_empty(),
        }
    }
}

/// What a rule contributes to its findings. The pipeline builds these from the rule set,
/// so that findings need not know how rules are written.
#[derive(Clone, Debug)]
pub struct RuleMeta {
    /// Title.
    pub title: String,
    /// Effective severity.
    pub severity: Severity,
    /// The view it reports on.
    pub resource_type: String,
    /// What to do.
    pub remediation: String,
}

/// Unix seconds as a time. A finding's times are in range: reconciliation writes them
/// from a `DateTime`, and loading refuses a stored one that is not (`FindingsError::Corrupt`).
pub(crate) fn ts(t: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(t, 0).single().unwrap_or_default()
}

impl Finding {
    /// First seen, as a time.
    pub fn first_seen_at(&self) -> DateTime<Utc> {
        ts(self.first_seen)
    }

    /// Last seen, as a time.
    pub fn last_seen_at(&self) -> DateTime<Utc> {
        ts(self.last_seen)
    }

    /// When it was last resolved, as a time; kept when it reopens.
    pub fn resolved_at_time(&self) -> Option<DateTime<Utc>> {
        self.resolved_at.map(ts)
    }
}

/// The findings a report shows after a run: every open and exempt finding, and those this
/// run resolved, ordered by severity (highest first), rule and resource.
pub fn report_set(all: &[Finding], reconciled: &Reconciled) -> Vec<Finding> {
    let resolved_now: HashSet<&str> = reconciled
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Resolved)
        .map(|e| e.fingerprint.as_str())
        .collect();
    let mut out: Vec<Finding> = all
        .iter()
        .filter(|f| f.status != Status::Resolved || resolved_now.contains(f.fingerprint.as_str()))
        .cloned()
        .collect();
    sort(&mut out);
    out
}

/// Orders findings by severity (highest first), rule, project and resource.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule_id.cmp(&b.rule_id))
            .then_with(|| a.project_id.cmp(&b.project_id))
            .then_with(|| a.resource_id.cmp(&b.resource_id))
    });
}

/// Counts of findings per status, for summaries.
pub fn counts(findings: &[Finding]) -> BTreeMap<Status, usize> {
    let mut out = BTreeMap::new();
    for f in findings {
        *out.entry(f.status).or_insert(0) += 1;
    }
    out
}
