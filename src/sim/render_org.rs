//! The organization's own objects as Admin API JSON: like [`super::render`], the one
//! place they are shaped, for the HTTP handlers and [`Org::scope_results`] alike.

use serde_json::{Map, Value, json};

use super::org::{
    AdminApiKey, ApiKey, Certificate, Invite, KeyOwner, Org, OrgGroup, OrgUser, Project,
    SpendAlert, SpendLimit,
};
use super::render;
use crate::model::UserId;

/// `value` with the unmodelled fields appended after the modelled ones (never over them).
fn with_extra(mut value: Value, extra: &Map<String, Value>) -> Value {
    if let Value::Object(m) = &mut value {
        for (k, v) in extra {
            if !m.contains_key(k) {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    value
}

/// `User`: a member of the organization.
pub fn user(u: &OrgUser) -> Value {
    with_extra(
        json!({
            "object": "organization.user",
            "id": u.id,
            "name": u.name,
            "email": u.email,
            "role": u.role,
            "added_at": u.added_at,
            "is_default": false,
            "user": {
                "object": "user",
                "id": u.id,
                "email": u.email,
                "name": u.name,
                "picture": null,
                "enabled": u.enabled,
                "banned": u.banned,
                "banned_at": u.banned_at,
            },
            "is_service_account": u.is_service_account,
            "is_scim_managed": u.is_scim_managed,
            "api_key_last_used_at": u.api_key_last_used_at,
        }),
        &u.extra,
    )
}

/// `Invite`
pub fn invite(i: &Invite) -> Value {
    let projects: Vec<Value> = i
        .projects
        .iter()
        .map(|(id, role)| json!({"id": id, "role": role}))
        .collect();
    with_extra(
        json!({
            "object": "organization.invite",
            "id": i.id,
            "email": i.email,
            "role": i.role,
            "status": i.status,
            "created_at": i.created_at,
            "expires_at": i.expires_at,
            "accepted_at": i.accepted_at,
            "projects": projects,
        }),
        &i.extra,
    )
}

/// `AdminApiKey.owner` for a user: the current directory entry, else the former user's
/// last known one, else (a key whose owner is unknown to the simulator: only reachable
/// through a test's mutator) an owner with no name and role `reader`.
fn admin_owner(org: &Org, id: &UserId, key_created: i64) -> Value {
    let rec = org.user_record(id);
    json!({
        "type": "user",
        "object": "organization.user",
        "id": id,
        "name": rec.and_then(|u| u.name.as_deref()).unwrap_or_default(),
        "created_at": rec.map_or(key_created, |u| u.created_at),
        "role": rec.map_or("reader", |u| u.role.as_str()),
    })
}

/// `AdminApiKey`
pub fn admin_key(org: &Org, k: &AdminApiKey) -> Value {
    with_extra(
        json!({
            "object": "organization.admin_api_key",
            "id": k.id,
            "name": k.name,
            "redacted_value": k.redacted_value,
            "created_at": k.created_at,
            "expires_at": k.expires_at,
            "last_used_at": k.last_used_at,
            "owner": admin_owner(org, &k.owner, k.created_at),
        }),
        &k.extra,
    )
}

/// A project API key as the live admin-key list has been seen to show it (the
/// `admin_keys_list_project_keys` quirk): admin-key shaped, its own project-key redaction.
pub fn project_key_as_admin_key(org: &Org, p: &Project, k: &ApiKey) -> Value {
    let owner = match &k.owner {
        KeyOwner::User(id) => admin_owner(org, id, k.created_at),
        KeyOwner::ServiceAccount(id) => {
            let sa = p.service_account(id.as_str());
            json!({
                "type": "service_account",
                "object": "organization.project.service_account",
                "id": id,
                "name": sa.map_or("", |s| s.name.as_str()),
                "created_at": sa.map_or(k.created_at, |s| s.created_at),
                "role": sa.map_or("member", |s| s.role.as_str()),
            })
        }
    };
    json!({
        "object": "organization.admin_api_key",
        "id": k.id,
        "name": k.name,
        "redacted_value": k.redacted_value,
        "created_at": k.created_at,
        "expires_at": null,
        "last_used_at": k.last_used_at,
        "owner": owner,
    })
}

/// `GroupResponse`
pub fn group(g: &OrgGroup) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "created_at": g.created_at,
        "is_scim_managed": g.is_scim_managed,
        "group_type": g.group_type,
    })
}

/// `GroupResourceWithSuccess` (the answer to a rename).
pub fn group_updated(g: &OrgGroup) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "created_at": g.created_at,
        "is_scim_managed": g.is_scim_managed,
    })
}

/// `Group` (the summary in a `GroupRoleAssignment`).
pub fn group_summary(g: &OrgGroup) -> Value {
    json!({
        "object": "group",
        "id": g.id,
        "name": g.name,
        "created_at": g.created_at,
        "scim_managed": g.is_scim_managed,
    })
}

/// `GroupUser` (one entry of a group's member list); the schema makes `name` a string.
pub fn group_user(u: &OrgUser) -> Value {
    json!({
        "id": u.id,
        "name": u.name.as_deref().unwrap_or_default(),
        "email": u.email,
    })
}

/// `GroupMemberUser` (one member looked up).
pub fn group_member_user(u: &OrgUser) -> Value {
    json!({
        "id": u.id,
        "name": u.name.as_deref().unwrap_or_default(),
        "email": u.email,
        "picture": null,
        "is_service_account": u.is_service_account,
        "user_type": "user",
    })
}

/// `OrganizationDataRetention`
pub fn data_retention(org: &Org) -> Value {
    json!({"object": "organization.data_retention", "type": org.data_retention})
}

/// `OrganizationSpendLimitResource` (`object` = `organization.spend_limit`) or
/// `ProjectSpendLimitResource` (`project.spend_limit`).
pub fn spend_limit(object: &str, l: &SpendLimit) -> Value {
    json!({
        "object": object,
        "threshold_amount": l.threshold_amount,
        "currency": l.currency,
        "interval": l.interval,
        "enforcement": {"status": l.enforcement},
    })
}

/// `OrganizationSpendAlert`: a project alert's shape with the organization's object type.
pub fn org_spend_alert(a: &SpendAlert) -> Value {
    let mut v = render::value(render::spend_alert(a));
    if let Value::Object(m) = &mut v {
        m.insert("object".into(), json!("organization.spend_alert"));
    }
    v
}

/// `OrganizationCertificate` (lists, activation answers).
pub fn org_certificate(c: &Certificate) -> Value {
    with_extra(
        json!({
            "object": "organization.certificate",
            "id": c.id,
            "name": c.name,
            "created_at": c.created_at,
            "certificate_details": {"valid_at": c.valid_at, "expires_at": c.expires_at},
            "active": c.active,
        }),
        &c.extra,
    )
}

/// `Certificate` (one certificate fetched, uploaded or renamed): no `active`, and no
/// PEM content (the simulator does not keep it).
pub fn certificate_detail(c: &Certificate) -> Value {
    json!({
        "object": "certificate",
        "id": c.id,
        "name": c.name,
        "created_at": c.created_at,
        "certificate_details": {"valid_at": c.valid_at, "expires_at": c.expires_at},
    })
}
