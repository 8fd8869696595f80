//! Which audit-log events explain a change to a stored object: the event types of each
//! family, the ids an event names, and the match itself. A pure decision, shared by
//! `diff`/`history` (every change) and the findings (`changed_by`), so they cannot drift.
//!
//! Events are matched by resource id alone, never by project: the log associates actions
//! taken with an admin key with the organization's default project, not the project the
//! object lives in, and the ids the API hands out are unique across projects.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{AuditEventId, Family};

use super::{Actor, AuditEvent};

/// The event that explains a change: who did it, when, from where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedBy {
    /// The event's id.
    pub event_id: AuditEventId,
    /// The event's type (`api_key.created`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: Actor,
}

impl ChangedBy {
    /// The explanation an event gives (`None` for a time out of range).
    pub fn from_event(event: &AuditEvent) -> Option<ChangedBy> {
        Some(ChangedBy {
            event_id: event.id.clone(),
            event_type: event.kind.clone(),
            at: DateTime::from_timestamp(event.effective_at, 0)?,
            actor: event.actor.clone(),
        })
    }

    /// One line for people: `ada@acme.com from 203.0.113.5 at 2026-12-03T10:02:00Z
    /// (api_key.created)`. The actor's text comes from the API: callers showing it on a
    /// terminal pass it through `report::inert`.
    pub fn describe(&self) -> String {
        format!(
            "{} at {} ({})",
            self.actor.describe(),
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.event_type
        )
    }
}

/// What the audit log says about one change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Attribution {
    /// These events explain it, newest first.
    Recorded {
        /// The explaining events.
        events: Vec<ChangedBy>,
    },
    /// The log was read over the whole interval and holds no event for it.
    NotRecorded,
    /// The log has no event type for this family (retention, spend, permissions, …).
    NeverRecorded,
    /// The log was not read completely over the interval (off, failing, or not yet
    /// read that far): whether it recorded the change is unknown.
    NotRead,
}

impl Attribution {
    /// One line for people (see [`ChangedBy::describe`] about inert text).
    pub fn describe(&self, family: Family) -> String {
        match self {
            Attribution::Recorded { events } => {
                const SHOWN: usize = 3;
                let mut parts: Vec<String> =
                    events.iter().take(SHOWN).map(ChangedBy::describe).collect();
                if events.len() > SHOWN {
                    parts.push(format!("and {} more", events.len() - SHOWN));
                }
                parts.join("; ")
            }
            Attribution::NotRecorded => "not recorded by the audit log".to_owned(),
            Attribution::NeverRecorded => format!(
                "not recorded by the audit log (it has no events for {})",
                family.view()
            ),
            Attribution::NotRead => {
                "unknown: the audit log was not read over this interval".to_owned()
            }
        }
    }
}

/// The stretch of time the audit log was read completely: from the `since` of the first
/// complete read to the start of the newest one (a failed read in between is caught up
/// by the next complete one, which starts where the last complete one ended; a catch-up
/// cut short starts later, and the span only from there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadSpan {
    /// The earliest time read (Unix seconds).
    pub from: i64,
    /// The latest time read.
    pub through: i64,
}

/// Attributes a change of `family`'s object `resource_id` (with `parent_id`) made after
/// `after` (`None`: before the first snapshot, so any earlier event may explain it) and
/// no later than `until`, from `candidates` (any events; those that explain it are kept).
pub fn attribute<'e>(
    candidates: impl IntoIterator<Item = &'e AuditEvent>,
    family: Family,
    resource_id: &str,
    parent_id: Option<&str>,
    after: Option<i64>,
    until: i64,
    span: Option<ReadSpan>,
) -> Attribution {
    if coverage(family) == LogCoverage::NeverRecorded {
        return Attribution::NeverRecorded;
    }
    let mut events: Vec<&AuditEvent> = candidates
        .into_iter()
        .filter(|e| {
            explains(
                e,
                family,
                resource_id,
                parent_id,
                after.unwrap_or(i64::MIN),
                until,
            )
        })
        // Without an older snapshot the object was there when orgwarden first looked: only
        // the event that created it explains that. A later update of it only shows it
        // existed already, and the log may not reach back to its creation.
        .filter(|e| after.is_some() || creates(e))
        .collect();
    if !events.is_empty() {
        events.sort_by(|a, b| (b.effective_at, &b.id).cmp(&(a.effective_at, &a.id)));
        events.dedup_by(|a, b| a.id == b.id);
        return Attribution::Recorded {
            events: events
                .into_iter()
                .filter_map(ChangedBy::from_event)
                .collect(),
        };
    }
    match (after, span) {
        // Absence is vouched for only by complete reads covering the whole interval: one
        // that started before the newer snapshot finished may have missed a change made
        // during its crawl.
        (Some(after), Some(span)) if span.from <= after && span.through >= until => {
            Attribution::NotRecorded
        }
        _ => Attribution::NotRead,
    }
}

/// Whether `event` records the creation of what it names (`api_key.created`, `user.added`,
/// `invite.sent`), rather than a change to something that already existed. A certificate
/// enters a list when it is activated there, so `certificates.activated` counts too.
fn creates(event: &AuditEvent) -> bool {
    let kind = event.kind.as_str();
    kind == "certificates.activated"
        || [".created", ".added", ".sent"]
            .iter()
            .any(|end| kind.ends_with(end))
}

/// What the audit log can say about changes to one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogCoverage {
    /// Changes are recorded as events of these types.
    Recorded(&'static [&'static str]),
    /// The log has no event type for this family: a change is never attributed.
    NeverRecorded,
}

const PROJECT: &[&str] = &[
    "project.created",
    "project.updated",
    "project.archived",
    "project.deleted",
];
const USER: &[&str] = &["user.added", "user.updated", "user.deleted"];
const ROLE_ASSIGNMENT: &[&str] = &["role.assignment.created", "role.assignment.deleted"];
const SERVICE_ACCOUNT: &[&str] = &[
    "service_account.created",
    "service_account.updated",
    "service_account.deleted",
];
const API_KEY: &[&str] = &["api_key.created", "api_key.updated", "api_key.deleted"];
const RATE_LIMIT: &[&str] = &["rate_limit.updated", "rate_limit.deleted"];
const GROUP: &[&str] = &["group.created", "group.updated", "group.deleted"];
const PROJECT_GROUP: &[&str] = &[
    "group.created",
    "group.updated",
    "group.deleted",
    "role.assignment.created",
    "role.assignment.deleted",
];
const ROLE: &[&str] = &["role.created", "role.updated", "role.deleted"];
const CERTIFICATE: &[&str] = &[
    "certificate.created",
    "certificate.updated",
    "certificate.deleted",
    "certificates.activated",
    "certificates.deactivated",
];
const INVITE: &[&str] = &["invite.sent", "invite.accepted", "invite.deleted"];

/// The event types that record changes to `family`'s objects.
pub fn coverage(family: Family) -> LogCoverage {
    use Family as F;
    LogCoverage::Recorded(match family {
        F::Projects => PROJECT,
        F::ProjectUsers | F::OrgUsers => USER,
        F::ProjectUserRoles | F::ProjectGroupRoles | F::OrgUserRoles | F::OrgGroupRoles => {
            ROLE_ASSIGNMENT
        }
        F::ProjectServiceAccounts => SERVICE_ACCOUNT,
        F::ProjectApiKeys | F::OrgAdminApiKeys => API_KEY,
        F::ProjectRateLimits => RATE_LIMIT,
        F::ProjectGroups => PROJECT_GROUP,
        F::OrgGroups => GROUP,
        F::ProjectRoles | F::OrgRoles => ROLE,
        F::ProjectCertificates | F::OrgCertificates => CERTIFICATE,
        F::OrgInvites => INVITE,
        // No event type names these: retention, spend, model and tool permissions, and
        // group membership (`tenant.group.member.*` carries no payload to match).
        F::ProjectModelPermissions
        | F::ProjectHostedToolPermissions
        | F::ProjectDataRetention
        | F::ProjectSpendAlerts
        | F::ProjectSpendLimits
        | F::OrgGroupUsers
        | F::OrgDataRetention
        | F::OrgSpendLimit
        | F::OrgSpendAlerts => return LogCoverage::NeverRecorded,
    })
}

/// Every event type [`coverage`] names, once, for the read filters and the docs.
pub fn all_recorded_types() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for family in Family::ALL {
        if let LogCoverage::Recorded(types) = coverage(family) {
            for t in types {
                if !out.contains(t) {
                    out.push(t);
                }
            }
        }
    }
    out
}

/// The object ids an event names: its payload's `id`, the principal of a role assignment,
/// and every id in a list payload (`certificates.activated` names several certificates).
pub fn named_ids(event: &AuditEvent) -> Vec<String> {
    let Some(details) = event.details() else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    let mut push = |v: Option<&Value>| {
        if let Some(id) = v.and_then(Value::as_str).filter(|s| !s.is_empty())
            && !ids.iter().any(|i| i == id)
        {
            ids.push(id.to_owned());
        }
    };
    push(details.get("id"));
    push(details.get("principal_id"));
    for list in ["certificates", "configs"] {
        for item in details
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            push(item.get("id"));
        }
    }
    ids
}

/// Whether `event` explains a change to the object `resource_id` of `family` (with
/// `parent_id`, the user or group a role assignment belongs to) that happened from `after`
/// to `until` (Unix seconds, both included).
pub fn explains(
    event: &AuditEvent,
    family: Family,
    resource_id: &str,
    parent_id: Option<&str>,
    after: i64,
    until: i64,
) -> bool {
    let LogCoverage::Recorded(types) = coverage(family) else {
        return false;
    };
    // Inclusive at both ends: times are whole seconds, and a change made in the second a
    // snapshot started may have come after its read.
    if event.effective_at < after || event.effective_at > until {
        return false;
    }
    if !types.contains(&event.kind.as_str()) {
        return false;
    }
    if ROLE_ASSIGNMENT.contains(&event.kind.as_str()) {
        // An assignment names the role (`id`) and who holds it (`principal_id`): both must
        // be this object's, or one user's grant would explain another's.
        let field = |key: &str| {
            event
                .details()
                .and_then(|d| d.get(key))
                .and_then(Value::as_str)
        };
        return match parent_id {
            Some(parent) => {
                field("id") == Some(resource_id) && field("principal_id") == Some(parent)
            }
            // A project group (no parent) is assigned to its project: it is the principal.
            None => field("principal_id") == Some(resource_id),
        };
    }
    named_ids(event).iter().any(|id| id == resource_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, at: i64, details: Value) -> AuditEvent {
        AuditEvent::from_api(&json!({"id": format!("audit_log-{at}"), "type": kind,
            "effective_at": at, kind: details}))
        .unwrap()
    }

    #[test]
    fn a_key_created_inside_the_interval_is_explained_by_its_event() {
        let e = event("api_key.created", 150, json!({"id": "key_a"}));
        assert!(explains(
            &e,
            Family::ProjectApiKeys,
            "key_a",
            None,
            100,
            200
        ));
        assert!(!explains(
            &e,
            Family::ProjectApiKeys,
            "key_b",
            None,
            100,
            200
        ));
        assert!(
            explains(&e, Family::ProjectApiKeys, "key_a", None, 150, 200),
            "the second the older snapshot started counts"
        );
        assert!(!explains(
            &e,
            Family::ProjectApiKeys,
            "key_a",
            None,
            151,
            200
        ));
        assert!(!explains(&e, Family::ProjectApiKeys, "key_a", None, 0, 149));
        assert!(!explains(
            &e,
            Family::ProjectServiceAccounts,
            "key_a",
            None,
            100,
            200
        ));
    }

    #[test]
    fn a_role_assignment_is_matched_by_its_role_and_its_holder_together() {
        let e = event(
            "role.assignment.created",
            150,
            json!({"id": "role_owner", "principal_id": "user-bob", "principal_type": "user"}),
        );
        let explains_roles =
            |role: &str, user: &str| explains(&e, Family::OrgUserRoles, role, Some(user), 100, 200);
        assert!(explains_roles("role_owner", "user-bob"));
        assert!(
            !explains_roles("role_owner", "user-ada"),
            "Bob's grant does not explain Ada's"
        );
        assert!(
            !explains_roles("role_other", "user-bob"),
            "nor another role of Bob's"
        );
        // A group assigned to a project is the assignment's principal.
        let g = event(
            "role.assignment.created",
            150,
            json!({"id": "role_member", "principal_id": "group_sec", "principal_type": "group"}),
        );
        assert!(explains(
            &g,
            Family::ProjectGroups,
            "group_sec",
            None,
            100,
            200
        ));
    }

    #[test]
    fn certificate_activation_names_every_certificate_it_lists() {
        let e = event(
            "certificates.activated",
            150,
            json!({"certificates": [{"id": "cert_a", "name": "a"}, {"id": "cert_b", "name": "b"}]}),
        );
        assert_eq!(named_ids(&e), vec!["cert_a", "cert_b"]);
        assert!(explains(
            &e,
            Family::OrgCertificates,
            "cert_b",
            None,
            100,
            200
        ));
    }

    #[test]
    fn the_first_version_is_explained_by_its_creation_never_by_a_later_update() {
        let span = Some(ReadSpan {
            from: 50,
            through: 300,
        });
        let first =
            |e: &AuditEvent| attribute([e], Family::OrgUsers, "user-f", None, None, 200, span);
        let updated = event("user.updated", 150, json!({"id": "user-f"}));
        assert_eq!(first(&updated), Attribution::NotRead);
        let added = event("user.added", 120, json!({"id": "user-f"}));
        assert!(
            matches!(first(&added), Attribution::Recorded { ref events } if events[0].event_type == "user.added"),
            "{:?}",
            first(&added)
        );
        // A certificate enters a project's list when it is activated there.
        let activated = event(
            "certificates.activated",
            130,
            json!({"certificates": [{"id": "cert_a", "name": "a"}]}),
        );
        assert!(matches!(
            attribute(
                [&activated],
                Family::ProjectCertificates,
                "cert_a",
                None,
                None,
                200,
                span
            ),
            Attribution::Recorded { .. }
        ));
        // Between two snapshots the update does explain a change.
        assert!(matches!(
            attribute(
                [&updated],
                Family::OrgUsers,
                "user-f",
                None,
                Some(100),
                200,
                span
            ),
            Attribution::Recorded { .. }
        ));
    }

    #[test]
    fn a_change_is_not_recorded_only_where_the_log_was_read_over_its_interval() {
        let e = event("api_key.created", 150, json!({"id": "key_a"}));
        let span = Some(ReadSpan {
            from: 50,
            through: 300,
        });
        let at = |id: &str, after: Option<i64>, span: Option<ReadSpan>| {
            attribute([&e], Family::ProjectApiKeys, id, None, after, 200, span)
        };
        match at("key_a", Some(100), span) {
            Attribution::Recorded { events } => {
                assert_eq!(events[0].event_type, "api_key.created");
                assert_eq!(events.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(at("key_b", Some(100), span), Attribution::NotRecorded);
        assert_eq!(
            at("key_b", Some(40), span),
            Attribution::NotRead,
            "read from 50 only"
        );
        assert_eq!(
            at("key_b", None, span),
            Attribution::NotRead,
            "before the first snapshot"
        );
        assert_eq!(
            at("key_b", Some(100), None),
            Attribution::NotRead,
            "never read"
        );
        let late = Some(ReadSpan {
            from: 50,
            through: 199,
        });
        assert_eq!(
            at("key_b", Some(100), late),
            Attribution::NotRead,
            "not read that far"
        );
        assert_eq!(
            attribute(
                [&e],
                Family::ProjectDataRetention,
                "proj_a",
                None,
                Some(100),
                200,
                span
            ),
            Attribution::NeverRecorded
        );
        assert_eq!(
            Attribution::NeverRecorded.describe(Family::OrgSpendLimit),
            "not recorded by the audit log (it has no events for org_spend_limit)"
        );
    }

    #[test]
    fn retention_and_spend_are_never_recorded() {
        for family in [
            Family::ProjectDataRetention,
            Family::OrgDataRetention,
            Family::ProjectSpendAlerts,
            Family::OrgSpendLimit,
            Family::ProjectModelPermissions,
            Family::ProjectHostedToolPermissions,
        ] {
            assert_eq!(coverage(family), LogCoverage::NeverRecorded, "{family:?}");
        }
        assert!(all_recorded_types().contains(&"invite.sent"));
    }
}
