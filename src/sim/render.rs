//! The one place simulated objects become Admin API JSON. The HTTP handlers and
//! [`Org::scope_results`] both render through here, so a crawl over HTTP and the
//! in-memory shortcut cannot disagree.

use serde_json::{Map, Value, json};

use super::org::{
    ApiKey, Certificate, KeyOwner, Org, Project, ProjectGroup, ProjectUser, RATE_LIMIT_OPTIONAL,
    RateLimit, Role, ServiceAccount, SpendAlert,
};
use crate::model::{Family, HOSTED_TOOLS, Scope, ScopeOutcome, ScopeResult};

/// Appends the unmodelled fields after the modelled ones (never overriding them).
fn with_extra(mut map: Map<String, Value>, extra: &Map<String, Value>) -> Value {
    for (k, v) in extra {
        if !map.contains_key(k) {
            map.insert(k.clone(), v.clone());
        }
    }
    Value::Object(map)
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `Project`
pub fn project(p: &Project) -> Value {
    let mut m = obj(json!({
        "id": p.id,
        "object": "organization.project",
        "name": p.name,
        "created_at": p.created_at,
        "archived_at": p.archived_at,
        "status": p.status,
        "external_key_id": p.external_key_id,
    }));
    if let Some(r) = &p.residency {
        m.insert("residency".into(), Value::from(r.as_str()));
    }
    with_extra(m, &p.extra)
}

/// `ProjectUser`
pub fn project_user(u: &ProjectUser) -> Value {
    let m = obj(json!({
        "object": "organization.project.user",
        "id": u.id,
        "name": u.name,
        "email": u.email,
        "role": u.role,
        "added_at": u.added_at,
    }));
    with_extra(m, &u.extra)
}

/// `User` (the organization user embedded in a `UserRoleAssignment`).
pub fn org_user(org: &Org, project: &Project, user_id: &str) -> Value {
    let member = project.user(user_id);
    let dir = org.users.get(&crate::model::UserId::from(user_id));
    json!({
        "object": "organization.user",
        "id": user_id,
        "name": member.and_then(|m| m.name.clone()).or_else(|| dir.and_then(|d| d.name.clone())),
        "email": member.and_then(|m| m.email.clone()).or_else(|| dir.and_then(|d| d.email.clone())),
        "role": member.map(|m| m.role.clone()),
        "added_at": member.map_or(project.created_at, |m| m.added_at),
    })
}

/// `ProjectServiceAccount`
pub fn service_account(s: &ServiceAccount) -> Value {
    let m = obj(json!({
        "object": "organization.project.service_account",
        "id": s.id,
        "name": s.name,
        "role": s.role,
        "created_at": s.created_at,
    }));
    with_extra(m, &s.extra)
}

/// `ProjectApiKey`, with its owner resolved (a user who left the project is still named,
/// from the organization directory, with `owner_project_access: inactive`).
pub fn api_key(org: &Org, p: &Project, k: &ApiKey) -> Value {
    let owner = match &k.owner {
        KeyOwner::User(id) => {
            let member = p.user(id.as_str());
            let dir = org.users.get(id);
            // The schema makes these strings (not nullable): a user without a name or
            // email is served with an empty one.
            let name = member
                .and_then(|m| m.name.clone())
                .or_else(|| dir.and_then(|d| d.name.clone()))
                .unwrap_or_default();
            let email = member
                .and_then(|m| m.email.clone())
                .or_else(|| dir.and_then(|d| d.email.clone()))
                .unwrap_or_default();
            json!({
                "type": "user",
                "user": {
                    "id": id,
                    "email": email,
                    "name": name,
                    "created_at": dir.map_or(k.created_at, |d| d.created_at),
                    "role": member.map_or("none", |m| m.role.as_str()),
                }
            })
        }
        KeyOwner::ServiceAccount(id) => {
            let sa = p.service_account(id.as_str());
            json!({
                "type": "service_account",
                "service_account": {
                    "id": id,
                    "name": sa.map_or("", |s| s.name.as_str()),
                    "created_at": sa.map_or(k.created_at, |s| s.created_at),
                    "role": sa.map_or("none", |s| s.role.as_str()),
                }
            })
        }
    };
    let m = obj(json!({
        "object": "organization.project.api_key",
        "redacted_value": k.redacted_value,
        "name": k.name,
        "created_at": k.created_at,
        "last_used_at": k.last_used_at,
        "id": k.id,
        "owner_project_access": p.owner_access(k),
        "owner": owner,
    }));
    with_extra(m, &k.extra)
}

/// `ProjectRateLimit`
pub fn rate_limit(r: &RateLimit) -> Value {
    let mut m = obj(json!({
        "object": "project.rate_limit",
        "id": r.id,
        "model": r.model,
        "max_requests_per_1_minute": r.max_requests_per_1_minute,
        "max_tokens_per_1_minute": r.max_tokens_per_1_minute,
    }));
    for field in RATE_LIMIT_OPTIONAL {
        if let Some(n) = r.optional.get(field) {
            m.insert(field.into(), Value::from(*n));
        }
    }
    with_extra(m, &r.extra)
}

/// `ProjectModelPermissions`: no policy is a deny list with no ids (what the API shows
/// after a DELETE).
pub fn model_permissions(p: &Project) -> Value {
    match &p.model_permissions {
        Some(mp) => json!({
            "object": "project.model_permissions",
            "mode": mp.mode,
            "model_ids": mp.model_ids,
        }),
        None => json!({
            "object": "project.model_permissions",
            "mode": "deny_list",
            "model_ids": [],
        }),
    }
}

/// `ProjectHostedToolPermissions` (it has no `object` field).
pub fn hosted_tool_permissions(p: &Project) -> Value {
    let mut m = Map::new();
    for (tool, enabled) in HOSTED_TOOLS.iter().zip(p.hosted_tools) {
        m.insert((*tool).into(), json!({ "enabled": enabled }));
    }
    Value::Object(m)
}

/// `ProjectGroup`
pub fn project_group(p: &Project, g: &ProjectGroup) -> Value {
    let m = obj(json!({
        "object": "project.group",
        "project_id": p.id,
        "group_id": g.group_id,
        "group_name": g.group_name,
        "group_type": g.group_type,
        "created_at": g.created_at,
    }));
    with_extra(m, &g.extra)
}

/// `Group` (the summary embedded in a `GroupRoleAssignment`).
pub fn group_summary(org: &Org, g: &ProjectGroup) -> Value {
    let created = org
        .groups
        .get(&g.group_id)
        .map_or(g.created_at, |d| d.created_at);
    json!({
        "object": "group",
        "id": g.group_id,
        "name": g.group_name,
        "created_at": created,
        "scim_managed": false,
    })
}

/// `Role`
pub fn role(r: &Role) -> Value {
    let m = obj(json!({
        "object": "role",
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "permissions": r.permissions,
        "resource_type": r.resource_type,
        "predefined_role": r.predefined_role,
    }));
    with_extra(m, &r.extra)
}

/// `AssignedRoleDetails` (one entry of a user's or group's role list).
pub fn assigned_role(r: &Role) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "permissions": r.permissions,
        "resource_type": r.resource_type,
        "predefined_role": r.predefined_role,
        "description": r.description,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "created_by": r.created_by,
        "created_by_user_obj": null,
        "metadata": null,
        "assignment_sources": null,
    })
}

/// `ProjectDataRetention`
pub fn data_retention(p: &Project) -> Value {
    json!({ "object": "project.data_retention", "type": p.data_retention })
}

/// `ProjectSpendAlert`
pub fn spend_alert(a: &SpendAlert) -> Value {
    let mut channel = obj(json!({ "type": a.channel_type, "recipients": a.recipients }));
    if let Some(prefix) = &a.subject_prefix {
        channel.insert("subject_prefix".into(), Value::from(prefix.as_str()));
    }
    let m = obj(json!({
        "id": a.id,
        "object": "project.spend_alert",
        "threshold_amount": a.threshold_amount,
        "currency": a.currency,
        "interval": a.interval,
        "notification_channel": channel,
    }));
    with_extra(m, &a.extra)
}

/// `OrganizationProjectCertificate`
pub fn certificate(c: &Certificate) -> Value {
    let m = obj(json!({
        "object": "organization.project.certificate",
        "id": c.id,
        "name": c.name,
        "created_at": c.created_at,
        "certificate_details": { "valid_at": c.valid_at, "expires_at": c.expires_at },
        "active": c.active,
    }));
    with_extra(m, &c.extra)
}

/// The roles of a list of role ids, skipping any that no longer exist.
pub fn roles_of<'a>(p: &'a Project, ids: &'a [crate::model::RoleId]) -> Vec<&'a Role> {
    ids.iter().filter_map(|id| p.role(id.as_str())).collect()
}

impl Org {
    /// Exactly the objects a complete crawl of the HTTP API would store, per scope: the
    /// `Projects` scope first, then per project every family in [`Family::ALL`] order,
    /// each user's and group's role list right after its parent's scope. Archived
    /// projects answer 400 to their user and service-account lists, which a crawl reads
    /// as empty.
    pub fn scope_results(&self) -> Vec<ScopeResult> {
        let mut out = Vec::new();
        let done = |family, project: Option<&Project>, parent: Option<&str>, items| ScopeResult {
            scope: Scope {
                family,
                project_id: project.map(|p| p.id.clone()),
                parent_id: parent.map(str::to_owned),
            },
            outcome: ScopeOutcome::Complete(items),
        };
        out.push(done(
            Family::Projects,
            None,
            None,
            self.projects.iter().map(project).collect(),
        ));
        for p in &self.projects {
            let hidden = p.is_archived();
            for family in Family::ALL {
                let one = |items| done(family, Some(p), None, items);
                match family {
                    Family::Projects | Family::ProjectUserRoles | Family::ProjectGroupRoles => {}
                    Family::ProjectUsers => {
                        let users: Vec<&ProjectUser> = if hidden {
                            Vec::new()
                        } else {
                            p.users.iter().collect()
                        };
                        out.push(one(users.iter().map(|u| project_user(u)).collect()));
                        for u in users {
                            out.push(done(
                                Family::ProjectUserRoles,
                                Some(p),
                                Some(u.id.as_str()),
                                roles_of(p, &u.roles)
                                    .into_iter()
                                    .map(assigned_role)
                                    .collect(),
                            ));
                        }
                    }
                    Family::ProjectServiceAccounts => out.push(one(if hidden {
                        Vec::new()
                    } else {
                        p.service_accounts.iter().map(service_account).collect()
                    })),
                    Family::ProjectApiKeys => out.push(one(p
                        .api_keys
                        .iter()
                        .map(|k| api_key(self, p, k))
                        .collect())),
                    Family::ProjectRateLimits => {
                        out.push(one(p.rate_limits.iter().map(rate_limit).collect()))
                    }
                    Family::ProjectModelPermissions => out.push(one(vec![model_permissions(p)])),
                    Family::ProjectHostedToolPermissions => {
                        out.push(one(vec![hosted_tool_permissions(p)]))
                    }
                    Family::ProjectGroups => {
                        out.push(one(p.groups.iter().map(|g| project_group(p, g)).collect()));
                        for g in &p.groups {
                            out.push(done(
                                Family::ProjectGroupRoles,
                                Some(p),
                                Some(g.group_id.as_str()),
                                roles_of(p, &g.roles)
                                    .into_iter()
                                    .map(assigned_role)
                                    .collect(),
                            ));
                        }
                    }
                    Family::ProjectRoles => out.push(one(p.roles.iter().map(role).collect())),
                    Family::ProjectDataRetention => out.push(one(vec![data_retention(p)])),
                    Family::ProjectSpendAlerts => {
                        out.push(one(p.spend_alerts.iter().map(spend_alert).collect()))
                    }
                    Family::ProjectCertificates => {
                        // The list's default order is newest first.
                        out.push(one(p.certificates.iter().rev().map(certificate).collect()))
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_results_start_with_projects_and_cover_every_family() {
        let org = Org::demo(1_800_000_000);
        let results = org.scope_results();
        assert_eq!(results[0].scope.family, Family::Projects);
        for family in Family::ALL {
            assert!(
                results.iter().any(|r| r.scope.family == family),
                "no scope for {family}"
            );
        }
        // A parent's scope comes before its members' role scopes.
        let first_role = results
            .iter()
            .position(|r| r.scope.family == Family::ProjectUserRoles)
            .unwrap();
        let users = results
            .iter()
            .position(|r| r.scope.family == Family::ProjectUsers)
            .unwrap();
        assert!(users < first_role);
    }

    #[test]
    fn a_key_whose_user_left_the_project_is_inactive_and_still_names_its_owner() {
        let text = r#"{"users":[{"id":"user-a","name":"Ann","email":"ann@x.com"}],
            "projects":[{"id":"p","api_keys":[{"id":"key_1","owner":{"type":"user","id":"user-a"}}]}]}"#;
        let org = Org::from_json_str(text, 100).unwrap();
        let v = api_key(&org, &org.projects[0], &org.projects[0].api_keys[0]);
        assert_eq!(v["owner_project_access"], "inactive");
        assert_eq!(v["owner"]["user"]["email"], "ann@x.com");
    }
}
