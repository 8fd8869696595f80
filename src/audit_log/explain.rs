//! Which audit-log events explain a change to a stored object: the event types of each
//! family, the ids an event names, and the match itself. A pure decision, shared by
//! `diff`/`history` (every change) and the findings (`changed_by`), so they cannot drift.
//!
//! Events are matched by resource id alone, never by project: the log associates actions
//! taken with an admin key with the organization's default project, not the project the
//! object lives in, and the ids the API hands out are unique across projects.

use serde_json::Value;

use crate::model::Family;

use super::AuditEvent;

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
/// `parent_id`, the user or group a role assignment belongs to) that happened after
/// `after` and no later than `until` (Unix seconds).
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
    if event.effective_at <= after || event.effective_at > until {
        return false;
    }
    if !types.contains(&event.kind.as_str()) {
        return false;
    }
    let ids = named_ids(event);
    ids.iter().any(|id| id == resource_id)
        || parent_id.is_some_and(|p| ids.iter().any(|id| id == p))
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
            !explains(&e, Family::ProjectApiKeys, "key_a", None, 150, 200),
            "after is exclusive"
        );
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
    fn a_role_assignment_is_matched_by_its_principal() {
        let e = event(
            "role.assignment.created",
            150,
            json!({"id": "role_owner", "principal_id": "user-ada", "principal_type": "user"}),
        );
        assert!(explains(
            &e,
            Family::OrgUserRoles,
            "role_other",
            Some("user-ada"),
            100,
            200
        ));
        assert!(!explains(
            &e,
            Family::OrgUserRoles,
            "role_other",
            Some("user-bob"),
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
