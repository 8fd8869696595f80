//! The one place simulated objects become Admin API JSON. The HTTP handlers and
//! [`Org::scope_results`] both render through here, so a crawl over HTTP and the
//! in-memory shortcut cannot disagree.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::org::{
    ApiKey, Certificate, KeyOwner, Org, Project, ProjectGroup, ProjectUser, RATE_LIMIT_OPTIONAL,
    RateLimit, Role, ServiceAccount, SpendAlert,
};
use super::render_org;
use crate::model::{
    ApiKeyId, CertificateId, Family, GroupId, HOSTED_TOOLS, ProjectId, RateLimitId, RoleId, Scope,
    ScopeOutcome, ScopeResult, ServiceAccountId, SpendAlertId, UserId,
};

/// Unmodelled fields, served after the modelled ones.
type Extra<'a> = &'a Map<String, Value>;

/// `Project`
#[derive(Serialize)]
pub struct ProjectJson<'a> {
    id: &'a ProjectId,
    object: &'static str,
    name: &'a Option<String>,
    created_at: i64,
    archived_at: Option<i64>,
    status: &'a str,
    external_key_id: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    residency: &'a Option<String>,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// `Project`
pub fn project(p: &Project) -> ProjectJson<'_> {
    ProjectJson {
        id: &p.id,
        object: "organization.project",
        name: &p.name,
        created_at: p.created_at,
        archived_at: p.archived_at,
        status: &p.status,
        external_key_id: &p.external_key_id,
        residency: &p.residency,
        extra: &p.extra,
    }
}

/// `ProjectUser`
#[derive(Serialize)]
pub struct ProjectUserJson<'a> {
    object: &'static str,
    id: &'a UserId,
    name: &'a Option<String>,
    email: &'a Option<String>,
    role: &'a str,
    added_at: i64,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// `ProjectUser`
pub fn project_user(u: &ProjectUser) -> ProjectUserJson<'_> {
    ProjectUserJson {
        object: "organization.project.user",
        id: &u.id,
        name: &u.name,
        email: &u.email,
        role: &u.role,
        added_at: u.added_at,
        extra: &u.extra,
    }
}

/// `User` (the organization user embedded in a `UserRoleAssignment`).
pub fn org_user(org: &Org, project: &Project, user_id: &str) -> Value {
    let member = project.user(user_id);
    let dir = org.users.get(&UserId::from(user_id));
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
#[derive(Serialize)]
pub struct ServiceAccountJson<'a> {
    object: &'static str,
    id: &'a ServiceAccountId,
    name: &'a str,
    role: &'a str,
    created_at: i64,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// `ProjectServiceAccount`
pub fn service_account(s: &ServiceAccount) -> ServiceAccountJson<'_> {
    ServiceAccountJson {
        object: "organization.project.service_account",
        id: &s.id,
        name: &s.name,
        role: &s.role,
        created_at: s.created_at,
        extra: &s.extra,
    }
}

/// `ProjectApiKeyOwnerUser`
#[derive(Serialize)]
pub struct OwnerUserJson<'a> {
    id: &'a UserId,
    email: &'a str,
    name: &'a str,
    created_at: i64,
    role: &'a str,
}

/// `ProjectApiKeyOwnerServiceAccount`
#[derive(Serialize)]
pub struct OwnerServiceAccountJson<'a> {
    id: &'a ServiceAccountId,
    name: &'a str,
    created_at: i64,
    role: &'a str,
}

/// `ProjectApiKey.owner`: `{type, user?, service_account?}`.
#[derive(Serialize)]
pub struct OwnerJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<OwnerUserJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_account: Option<OwnerServiceAccountJson<'a>>,
}

/// `ProjectApiKey`
#[derive(Serialize)]
pub struct ApiKeyJson<'a> {
    object: &'static str,
    redacted_value: &'a str,
    name: &'a str,
    created_at: i64,
    last_used_at: Option<i64>,
    id: &'a ApiKeyId,
    owner_project_access: &'a str,
    owner: OwnerJson<'a>,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// `ProjectApiKey`, with its owner resolved (a user who left the project, or the
/// organization, is still named from the directory or `former_users`, with
/// `owner_project_access: inactive`).
pub fn api_key<'a>(org: &'a Org, p: &'a Project, k: &'a ApiKey) -> ApiKeyJson<'a> {
    let owner = match &k.owner {
        KeyOwner::User(id) => {
            let member = p.user(id.as_str());
            let dir = org.user_record(id);
            // The schema makes these strings (not nullable): a user without a name or
            // email is served with an empty one.
            let name = member
                .and_then(|m| m.name.as_deref())
                .or_else(|| dir.and_then(|d| d.name.as_deref()))
                .unwrap_or_default();
            let email = member
                .and_then(|m| m.email.as_deref())
                .or_else(|| dir.and_then(|d| d.email.as_deref()))
                .unwrap_or_default();
            OwnerJson {
                kind: "user",
                user: Some(OwnerUserJson {
                    id,
                    email,
                    name,
                    created_at: dir.map_or(k.created_at, |d| d.created_at),
                    role: member.map_or("none", |m| m.role.as_str()),
                }),
                service_account: None,
            }
        }
        KeyOwner::ServiceAccount(id) => {
            let sa = p.service_account(id.as_str());
            OwnerJson {
                kind: "service_account",
                user: None,
                service_account: Some(OwnerServiceAccountJson {
                    id,
                    name: sa.map_or("", |s| s.name.as_str()),
                    created_at: sa.map_or(k.created_at, |s| s.created_at),
                    role: sa.map_or("none", |s| s.role.as_str()),
                }),
            }
        }
    };
    ApiKeyJson {
        object: "organization.project.api_key",
        redacted_value: &k.redacted_value,
        name: &k.name,
        created_at: k.created_at,
        last_used_at: k.last_used_at,
        id: &k.id,
        owner_project_access: p.owner_access(k),
        owner,
        extra: &k.extra,
    }
}

/// `ProjectRateLimit`
#[derive(Serialize)]
pub struct RateLimitJson<'a> {
    object: &'static str,
    id: &'a RateLimitId,
    model: &'a str,
    max_requests_per_1_minute: i64,
    max_tokens_per_1_minute: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_images_per_1_minute: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_audio_megabytes_per_1_minute: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_requests_per_1_day: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_1_day_max_input_tokens: Option<i64>,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// `ProjectRateLimit`
pub fn rate_limit(r: &RateLimit) -> RateLimitJson<'_> {
    let opt = |i: usize| r.optional.get(RATE_LIMIT_OPTIONAL[i]).copied();
    RateLimitJson {
        object: "project.rate_limit",
        id: &r.id,
        model: &r.model,
        max_requests_per_1_minute: r.max_requests_per_1_minute,
        max_tokens_per_1_minute: r.max_tokens_per_1_minute,
        max_images_per_1_minute: opt(0),
        max_audio_megabytes_per_1_minute: opt(1),
        max_requests_per_1_day: opt(2),
        batch_1_day_max_input_tokens: opt(3),
        extra: &r.extra,
    }
}

/// `ProjectModelPermissions`
#[derive(Serialize)]
pub struct ModelPermissionsJson<'a> {
    object: &'static str,
    mode: &'a str,
    model_ids: &'a [String],
}

/// `ProjectModelPermissions`: no policy is a deny list with no ids (what the API shows
/// after a DELETE).
pub fn model_permissions(p: &Project) -> ModelPermissionsJson<'_> {
    let (mode, model_ids) = match &p.model_permissions {
        Some(mp) => (mp.mode.as_str(), mp.model_ids.as_slice()),
        None => ("deny_list", &[][..]),
    };
    ModelPermissionsJson {
        object: "project.model_permissions",
        mode,
        model_ids,
    }
}

/// `HostedToolPermission`
#[derive(Serialize)]
pub struct ToolJson {
    enabled: bool,
}

/// `ProjectHostedToolPermissions` (it has no `object` field), in [`HOSTED_TOOLS`] order.
#[derive(Serialize)]
pub struct HostedToolsJson {
    file_search: ToolJson,
    web_search: ToolJson,
    image_generation: ToolJson,
    mcp: ToolJson,
    code_interpreter: ToolJson,
}

/// `ProjectHostedToolPermissions`
pub fn hosted_tool_permissions(p: &Project) -> HostedToolsJson {
    let t = |name: &str| ToolJson {
        enabled: p.tool_enabled(name).unwrap_or(true),
    };
    HostedToolsJson {
        file_search: t(HOSTED_TOOLS[0]),
        web_search: t(HOSTED_TOOLS[1]),
        image_generation: t(HOSTED_TOOLS[2]),
        mcp: t(HOSTED_TOOLS[3]),
        code_interpreter: t(HOSTED_TOOLS[4]),
    }
}

/// `ProjectGroup`
#[derive(Serialize)]
pub struct ProjectGroupJson<'a> {
    object: &'static str,
    project_id: &'a ProjectId,
    group_id: &'a GroupId,
    group_name: &'a str,
    group_type: &'a str,
    created_at: i64,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// `ProjectGroup`
pub fn project_group<'a>(p: &'a Project, g: &'a ProjectGroup) -> ProjectGroupJson<'a> {
    ProjectGroupJson {
        object: "project.group",
        project_id: &p.id,
        group_id: &g.group_id,
        group_name: &g.group_name,
        group_type: &g.group_type,
        created_at: g.created_at,
        extra: &g.extra,
    }
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
#[derive(Serialize)]
pub struct RoleJson<'a> {
    object: &'static str,
    id: &'a RoleId,
    name: &'a str,
    description: &'a Option<String>,
    permissions: &'a [String],
    resource_type: &'a str,
    predefined_role: bool,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// `Role`
pub fn role(r: &Role) -> RoleJson<'_> {
    RoleJson {
        object: "role",
        id: &r.id,
        name: &r.name,
        description: &r.description,
        permissions: &r.permissions,
        resource_type: &r.resource_type,
        predefined_role: r.predefined_role,
        extra: &r.extra,
    }
}

/// `AssignedRoleDetails` (one entry of a user's or group's role list).
#[derive(Serialize)]
pub struct AssignedRoleJson<'a> {
    id: &'a RoleId,
    name: &'a str,
    permissions: &'a [String],
    resource_type: &'a str,
    predefined_role: bool,
    description: &'a Option<String>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    created_by: &'a Option<String>,
    created_by_user_obj: Option<()>,
    metadata: Option<()>,
    assignment_sources: Option<()>,
}

/// `AssignedRoleDetails`
pub fn assigned_role(r: &Role) -> AssignedRoleJson<'_> {
    AssignedRoleJson {
        id: &r.id,
        name: &r.name,
        permissions: &r.permissions,
        resource_type: &r.resource_type,
        predefined_role: r.predefined_role,
        description: &r.description,
        created_at: r.created_at,
        updated_at: r.updated_at,
        created_by: &r.created_by,
        created_by_user_obj: None,
        metadata: None,
        assignment_sources: None,
    }
}

/// `ProjectDataRetention`
#[derive(Serialize)]
pub struct DataRetentionJson<'a> {
    object: &'static str,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// `ProjectDataRetention`
pub fn data_retention(p: &Project) -> DataRetentionJson<'_> {
    DataRetentionJson {
        object: "project.data_retention",
        kind: &p.data_retention,
    }
}

/// `SpendAlertNotificationChannel`
#[derive(Serialize)]
pub struct ChannelJson<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    recipients: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    subject_prefix: &'a Option<String>,
}

/// `ProjectSpendAlert`
#[derive(Serialize)]
pub struct SpendAlertJson<'a> {
    id: &'a SpendAlertId,
    object: &'static str,
    threshold_amount: i64,
    currency: &'a str,
    interval: &'a str,
    notification_channel: ChannelJson<'a>,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// `ProjectSpendAlert`
pub fn spend_alert(a: &SpendAlert) -> SpendAlertJson<'_> {
    SpendAlertJson {
        id: &a.id,
        object: "project.spend_alert",
        threshold_amount: a.threshold_amount,
        currency: &a.currency,
        interval: &a.interval,
        notification_channel: ChannelJson {
            kind: &a.channel_type,
            recipients: &a.recipients,
            subject_prefix: &a.subject_prefix,
        },
        extra: &a.extra,
    }
}

/// `certificate_details`
#[derive(Serialize)]
pub struct CertificateDetailsJson {
    valid_at: i64,
    expires_at: i64,
}

/// `OrganizationProjectCertificate`
#[derive(Serialize)]
pub struct CertificateJson<'a> {
    object: &'static str,
    id: &'a CertificateId,
    name: &'a Option<String>,
    created_at: i64,
    certificate_details: CertificateDetailsJson,
    active: bool,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// `OrganizationProjectCertificate`
pub fn certificate(c: &Certificate) -> CertificateJson<'_> {
    CertificateJson {
        object: "organization.project.certificate",
        id: &c.id,
        name: &c.name,
        created_at: c.created_at,
        certificate_details: CertificateDetailsJson {
            valid_at: c.valid_at,
            expires_at: c.expires_at,
        },
        active: c.active,
        extra: &c.extra,
    }
}

/// Any rendered object as a JSON value (for `scope_results` and composite answers).
pub fn value(x: impl Serialize) -> Value {
    // These structs hold only strings, numbers, booleans and JSON values: serializing
    // them cannot fail.
    serde_json::to_value(x).unwrap_or(Value::Null)
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
    // One arm per family, each naming what the crawl of it stores: a table.
    #[allow(clippy::too_many_lines)]
    pub fn scope_results(&self) -> Vec<ScopeResult> {
        let mut out = Vec::new();
        let done = |family, project: Option<&Project>, parent: Option<&str>, items: Vec<Value>| {
            ScopeResult {
                scope: Scope {
                    family,
                    project_id: project.map(|p| p.id.clone()),
                    parent_id: parent.map(str::to_owned),
                },
                outcome: ScopeOutcome::Complete(items.into()),
            }
        };
        out.push(done(
            Family::Projects,
            None,
            None,
            self.projects.iter().map(|p| value(project(p))).collect(),
        ));
        for p in &self.projects {
            let hidden = p.is_archived();
            for family in Family::ALL {
                let one = |items| done(family, Some(p), None, items);
                let assigned = |ids: &[RoleId]| -> Vec<Value> {
                    roles_of(p, ids)
                        .into_iter()
                        .map(|r| value(assigned_role(r)))
                        .collect()
                };
                match family {
                    // Read under their parents', or the organization's own (below).
                    Family::Projects | Family::ProjectUserRoles | Family::ProjectGroupRoles => {}
                    Family::OrgUsers
                    | Family::OrgUserRoles
                    | Family::OrgInvites
                    | Family::OrgAdminApiKeys
                    | Family::OrgGroups
                    | Family::OrgGroupUsers
                    | Family::OrgGroupRoles
                    | Family::OrgRoles
                    | Family::OrgDataRetention
                    | Family::OrgSpendLimit
                    | Family::OrgSpendAlerts
                    | Family::OrgCertificates => {}
                    // Not set: the read answers 404, which a crawl stores as no object.
                    Family::ProjectSpendLimits => out.push(one(p
                        .spend_limit
                        .iter()
                        .map(|l| render_org::spend_limit("project.spend_limit", l))
                        .collect())),
                    Family::ProjectUsers => {
                        let users: Vec<&ProjectUser> = if hidden {
                            Vec::new()
                        } else {
                            p.users.iter().collect()
                        };
                        out.push(one(users.iter().map(|u| value(project_user(u))).collect()));
                        for u in users {
                            out.push(done(
                                Family::ProjectUserRoles,
                                Some(p),
                                Some(u.id.as_str()),
                                assigned(&u.roles),
                            ));
                        }
                    }
                    Family::ProjectServiceAccounts => out.push(one(if hidden {
                        Vec::new()
                    } else {
                        p.service_accounts
                            .iter()
                            .map(|s| value(service_account(s)))
                            .collect()
                    })),
                    Family::ProjectApiKeys => out.push(one(p
                        .api_keys
                        .iter()
                        .map(|k| value(api_key(self, p, k)))
                        .collect())),
                    Family::ProjectRateLimits => out.push(one(p
                        .rate_limits
                        .iter()
                        .map(|r| value(rate_limit(r)))
                        .collect())),
                    Family::ProjectModelPermissions => {
                        out.push(one(vec![value(model_permissions(p))]));
                    }
                    Family::ProjectHostedToolPermissions => {
                        out.push(one(vec![value(hosted_tool_permissions(p))]));
                    }
                    Family::ProjectGroups => {
                        out.push(one(p
                            .groups
                            .iter()
                            .map(|g| value(project_group(p, g)))
                            .collect()));
                        for g in &p.groups {
                            out.push(done(
                                Family::ProjectGroupRoles,
                                Some(p),
                                Some(g.group_id.as_str()),
                                assigned(&g.roles),
                            ));
                        }
                    }
                    Family::ProjectRoles => {
                        out.push(one(p.roles.iter().map(|r| value(role(r))).collect()));
                    }
                    Family::ProjectDataRetention => out.push(one(vec![value(data_retention(p))])),
                    Family::ProjectSpendAlerts => out.push(one(p
                        .spend_alerts
                        .iter()
                        .map(|a| value(spend_alert(a)))
                        .collect())),
                    Family::ProjectCertificates => {
                        // The list's default order is newest first.
                        out.push(one(p
                            .certificates
                            .iter()
                            .rev()
                            .map(|c| value(certificate(c)))
                            .collect()));
                    }
                }
            }
        }
        self.org_scope_results(&mut out);
        out
    }

    /// The organization's own scopes, in [`Family::ALL`] order, each user's and group's
    /// scopes right after the list that names them. Lists are in their default order.
    fn org_scope_results(&self, out: &mut Vec<ScopeResult>) {
        let done = |family, parent: Option<&str>, items: Vec<Value>| ScopeResult {
            scope: Scope {
                family,
                project_id: None,
                parent_id: parent.map(str::to_owned),
            },
            outcome: ScopeOutcome::Complete(items.into()),
        };
        let assigned = |ids: &[RoleId]| -> Vec<Value> {
            ids.iter()
                .filter_map(|id| self.org_role(id.as_str()))
                .map(|r| value(assigned_role(&r)))
                .collect()
        };
        for family in Family::ALL.into_iter().filter(|f| !f.in_project()) {
            match family {
                Family::OrgUsers => {
                    out.push(done(
                        family,
                        None,
                        self.users.values().map(render_org::user).collect(),
                    ));
                    for u in self.users.values() {
                        out.push(done(
                            Family::OrgUserRoles,
                            Some(u.id.as_str()),
                            assigned(&u.roles),
                        ));
                    }
                }
                Family::OrgInvites => out.push(done(
                    family,
                    None,
                    self.invites.iter().map(render_org::invite).collect(),
                )),
                Family::OrgAdminApiKeys => {
                    let mut keys: Vec<Value> = self
                        .admin_api_keys
                        .iter()
                        .map(|k| render_org::admin_key(self, k))
                        .collect();
                    if self.quirks.admin_keys_list_project_keys {
                        for p in &self.projects {
                            keys.extend(
                                p.api_keys
                                    .iter()
                                    .map(|k| render_org::project_key_as_admin_key(self, p, k)),
                            );
                        }
                    }
                    out.push(done(family, None, keys));
                }
                Family::OrgGroups => {
                    out.push(done(
                        family,
                        None,
                        self.groups.values().map(render_org::group).collect(),
                    ));
                    for g in self.groups.values() {
                        // Members list newest first by default.
                        let members = g
                            .users
                            .iter()
                            .rev()
                            .filter_map(|u| self.users.get(u))
                            .map(render_org::group_user)
                            .collect();
                        out.push(done(Family::OrgGroupUsers, Some(g.id.as_str()), members));
                        out.push(done(
                            Family::OrgGroupRoles,
                            Some(g.id.as_str()),
                            assigned(&g.roles),
                        ));
                    }
                }
                Family::OrgRoles => out.push(done(
                    family,
                    None,
                    self.org_roles().iter().map(|r| value(role(r))).collect(),
                )),
                Family::OrgDataRetention => {
                    out.push(done(family, None, vec![render_org::data_retention(self)]));
                }
                Family::OrgSpendLimit => out.push(done(
                    family,
                    None,
                    self.spend_limit
                        .iter()
                        .map(|l| render_org::spend_limit("organization.spend_limit", l))
                        .collect(),
                )),
                Family::OrgSpendAlerts => out.push(done(
                    family,
                    None,
                    self.spend_alerts
                        .iter()
                        .map(render_org::org_spend_alert)
                        .collect(),
                )),
                Family::OrgCertificates => out.push(done(
                    family,
                    None,
                    // Newest first by default.
                    self.certificates
                        .iter()
                        .rev()
                        .map(render_org::org_certificate)
                        .collect(),
                )),
                // Read under their parents above.
                _ => {}
            }
        }
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
    fn unknown_fields_are_served_after_the_modelled_ones_and_never_override_them() {
        let text = r#"{"projects":[{"id":"p","object":"bogus","colour":"blue",
            "users":[{"id":"user-a","email":"a@x.com","sso":{"idp":"okta"}}]}]}"#;
        let org = Org::from_json_str(text, 100).unwrap();
        let p = &org.projects[0];
        let v = serde_json::to_string(&project(p)).unwrap();
        assert!(
            v.ends_with(r#""external_key_id":null,"colour":"blue"}"#),
            "{v}"
        );
        assert_eq!(v.matches("\"object\"").count(), 1, "{v}");
        assert_eq!(value(project_user(&p.users[0]))["sso"]["idp"], "okta");
    }

    /// The first key of the first project of `org` (JSON), as served.
    fn first_key(org: &str) -> serde_json::Value {
        let org = Org::from_json_str(org, 100).unwrap();
        value(api_key(
            &org,
            &org.projects[0],
            &org.projects[0].api_keys[0],
        ))
    }

    #[test]
    fn a_key_whose_user_left_the_project_is_inactive_and_still_names_its_owner() {
        let v = first_key(
            r#"{"users":[{"id":"user-a","name":"Ann","email":"ann@x.com"}],
            "projects":[{"id":"p","api_keys":[{"id":"key_1","owner":{"type":"user","id":"user-a"}}]}]}"#,
        );
        assert_eq!(v["owner_project_access"], "inactive");
        assert_eq!(v["owner"]["user"]["email"], "ann@x.com");
    }

    #[test]
    fn a_key_whose_user_left_the_organization_still_names_its_owner() {
        let v = first_key(
            r#"{"former_users":[{"id":"user-g","name":"Gus","email":"gus@x.com"}],
            "projects":[{"id":"p","api_keys":[{"id":"key_1","owner":{"type":"user","id":"user-g"}}]}]}"#,
        );
        assert_eq!(v["owner_project_access"], "inactive");
        assert_eq!(v["owner"]["user"]["name"], "Gus");
        assert_eq!(v["owner"]["user"]["email"], "gus@x.com");
    }
}
