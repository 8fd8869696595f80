//! The organization's own operations (users, invites, admin keys, groups, roles,
//! retention, spend limit and alerts, certificates), independent of HTTP like
//! [`super::api`], which routes every path under `/organization/` that is not a
//! project's here.

use serde_json::{Map, Value, json};

use super::api::{
    Answer, ApiError, Body, LIST_CERTIFICATES, LIST_DEFAULT, LIST_ROLES, LIST_SPEND_ALERTS,
    ListSpec, Query, Request, Res, bytes, found, new_secret, now, page, shape_a, spend_alert_from,
};
use super::org::{
    ADMIN_KEY_MAX_LIFETIME, AdminApiKey, Certificate, INVITE_LIFETIME, Invite, ORG_RETENTION_TYPES,
    ORG_ROLES, Org, OrgGroup, OrgUser, Role, SpendAlert, SpendLimit, admin_redacted_value,
};
use super::{audit_log, render, render_org};
use crate::model::{
    ApiKeyId, CertificateId, Envelope, GroupId, ProjectId, RoleId, SpendAlertId, UserId,
};

/// Admin API keys: shape A, oldest first by default.
pub const LIST_ADMIN_KEYS: ListSpec = ListSpec {
    order: Some("asc"),
    ..shape_a(20, 1, 100)
};
/// Organization groups: shape B, 0..=1000, default 100.
pub const LIST_ORG_GROUPS: ListSpec = ListSpec {
    envelope: Envelope::NextCursor,
    default_limit: 100,
    min_limit: 0,
    max_limit: 1000,
    order: Some("asc"),
    before: false,
};
/// A group's members: as groups, but newest first by default.
pub const LIST_GROUP_USERS: ListSpec = ListSpec {
    order: Some("desc"),
    ..LIST_ORG_GROUPS
};

/// The most certificates one activate or deactivate call may name.
pub const MAX_CERTIFICATES_PER_TOGGLE: usize = 10;
/// The most certificates an organization may have uploaded.
pub const MAX_CERTIFICATES: usize = 50;

/// `GET /organization/…` (everything but the projects).
pub(super) fn read(org: &Org, req: &Request<'_>, rest: &[&str]) -> Answer {
    let q = &req.query;
    match rest {
        ["audit_logs"] => super::audit_log::list(org, q),
        ["users"] => list_users(org, q),
        ["users", uid] => bytes(&render_org::user(user(org, uid)?)),
        ["users", uid, "roles", more @ ..] => {
            let ids = &user(org, uid)?.roles;
            read_assignments(org, ids, req, more)
        }
        ["invites"] => {
            let items: Vec<&Invite> = org.invites.iter().collect();
            page(
                &items,
                q,
                &LIST_DEFAULT,
                |i| i.id.as_str(),
                render_org::invite,
            )
        }
        ["invites", iid] => bytes(&render_org::invite(invite(org, iid)?)),
        ["admin_api_keys"] => list_admin_keys(org, q),
        ["admin_api_keys", kid] => {
            let k = found(
                org.admin_api_keys.iter().find(|k| k.id.as_str() == *kid),
                "admin API key",
                kid,
            )?;
            bytes(&render_org::admin_key(org, k))
        }
        ["groups"] => {
            let items: Vec<&OrgGroup> = org.groups.values().collect();
            page(
                &items,
                q,
                &LIST_ORG_GROUPS,
                |g| g.id.as_str(),
                render_org::group,
            )
        }
        ["groups", gid] => bytes(&render_org::group(group(org, gid)?)),
        ["groups", gid, "users"] => {
            let g = group(org, gid)?;
            let items: Vec<&OrgUser> = g.users.iter().filter_map(|u| org.users.get(u)).collect();
            page(
                &items,
                q,
                &LIST_GROUP_USERS,
                |u| u.id.as_str(),
                render_org::group_user,
            )
        }
        ["groups", gid, "users", uid] => {
            let g = group(org, gid)?;
            let u = found(
                g.users
                    .iter()
                    .find(|u| u.as_str() == *uid)
                    .and_then(|u| org.users.get(u)),
                "group member",
                uid,
            )?;
            bytes(&render_org::group_member_user(u))
        }
        ["groups", gid, "roles", more @ ..] => {
            let ids = &group(org, gid)?.roles;
            read_assignments(org, ids, req, more)
        }
        ["roles"] => {
            let roles = org.org_roles();
            let items: Vec<&Role> = roles.iter().collect();
            page(&items, q, &LIST_ROLES, |r| r.id.as_str(), render::role)
        }
        ["roles", rid] => bytes(&render::role(&found(org.org_role(rid), "role", rid)?)),
        ["data_retention"] => bytes(&render_org::data_retention(org)),
        ["spend_limit"] => match &org.spend_limit {
            Some(l) => bytes(&render_org::spend_limit("organization.spend_limit", l)),
            None => Err(ApiError::spend_limit_not_found()),
        },
        ["spend_alerts"] => {
            let items: Vec<&SpendAlert> = org.spend_alerts.iter().collect();
            page(
                &items,
                q,
                &LIST_SPEND_ALERTS,
                |a| a.id.as_str(),
                render_org::org_spend_alert,
            )
        }
        ["spend_alerts", aid] => {
            let a = org.spend_alerts.iter().find(|a| a.id.as_str() == *aid);
            bytes(&render_org::org_spend_alert(found(a, "spend alert", aid)?))
        }
        ["certificates"] => {
            let items: Vec<&Certificate> = org.certificates.iter().collect();
            page(
                &items,
                q,
                &LIST_CERTIFICATES,
                |c| c.id.as_str(),
                render_org::org_certificate,
            )
        }
        ["certificates", cid] => {
            for inc in q.all("include") {
                if inc != "content" {
                    return Err(super::api::invalid_value("include", inc, &["content"]));
                }
            }
            bytes(&render_org::certificate_detail(certificate(org, cid)?))
        }
        _ => Err(ApiError::invalid_url(req.method, req.path)),
    }
}

fn user<'o>(org: &'o Org, id: &str) -> Result<&'o OrgUser, ApiError> {
    found(org.users.get(&UserId::from(id)), "user", id)
}

fn invite<'o>(org: &'o Org, id: &str) -> Result<&'o Invite, ApiError> {
    found(org.invites.iter().find(|i| i.id == id), "invite", id)
}

fn group<'o>(org: &'o Org, id: &str) -> Result<&'o OrgGroup, ApiError> {
    found(org.groups.get(&GroupId::from(id)), "group", id)
}

fn certificate<'o>(org: &'o Org, id: &str) -> Result<&'o Certificate, ApiError> {
    found(
        org.certificates.iter().find(|c| c.id.as_str() == id),
        "certificate",
        id,
    )
}

/// `GET /organization/users`, filtered by `emails[]` (case-insensitive) when given.
fn list_users(org: &Org, q: &Query) -> Answer {
    let emails = q.all("emails");
    let items: Vec<&OrgUser> = org
        .users
        .values()
        .filter(|u| {
            emails.is_empty()
                || u.email
                    .as_deref()
                    .is_some_and(|e| emails.iter().any(|w| w.eq_ignore_ascii_case(e)))
        })
        .collect();
    page(
        &items,
        q,
        &LIST_DEFAULT,
        |u| u.id.as_str(),
        render_org::user,
    )
}

/// One entry of the admin-key list: an admin key, or (the quirk) a project key.
enum Listed<'o> {
    Admin(&'o AdminApiKey),
    Project(&'o super::org::Project, &'o super::org::ApiKey),
}

/// `GET /organization/admin_api_keys`; with the `admin_keys_list_project_keys` quirk the
/// project keys follow the admin keys, as the live API has been seen to do.
fn list_admin_keys(org: &Org, q: &Query) -> Answer {
    let mut items: Vec<Listed<'_>> = org.admin_api_keys.iter().map(Listed::Admin).collect();
    if org.quirks.admin_keys_list_project_keys {
        for p in &org.projects {
            items.extend(p.api_keys.iter().map(|k| Listed::Project(p, k)));
        }
    }
    let refs: Vec<&Listed<'_>> = items.iter().collect();
    page(
        &refs,
        q,
        &LIST_ADMIN_KEYS,
        |l| match l {
            Listed::Admin(k) => k.id.as_str(),
            Listed::Project(_, k) => k.id.as_str(),
        },
        |l| match l {
            Listed::Admin(k) => render_org::admin_key(org, k),
            Listed::Project(p, k) => render_org::project_key_as_admin_key(org, p, k),
        },
    )
}

/// A user's or group's organization role assignments (shape B), or one of them.
fn read_assignments(org: &Org, ids: &[RoleId], req: &Request<'_>, rest: &[&str]) -> Answer {
    let roles: Vec<Role> = ids
        .iter()
        .filter_map(|id| org.org_role(id.as_str()))
        .collect();
    let refs: Vec<&Role> = roles.iter().collect();
    match rest {
        [] => page(
            &refs,
            &req.query,
            &LIST_ROLES,
            |r| r.id.as_str(),
            render::assigned_role,
        ),
        [rid] => {
            let r = found(
                roles.iter().find(|r| r.id.as_str() == *rid),
                "role assignment",
                rid,
            )?;
            bytes(&render::assigned_role(r))
        }
        _ => Err(ApiError::invalid_url(req.method, req.path)),
    }
}

/// `POST`/`DELETE /organization/…` (everything but the projects).
pub(super) fn write(
    org: &mut Org,
    req: &Request<'_>,
    rest: &[&str],
    body: impl Fn() -> Result<Body, ApiError>,
) -> Res {
    match (req.method, rest) {
        ("POST", ["invites"]) => create_invite(org, &body()?),
        ("DELETE", ["invites", iid]) => {
            let pos = found(org.invites.iter().position(|i| i.id == *iid), "invite", iid)?;
            let i = org.invites.remove(pos);
            org.record("invite.deleted", None, json!({"id": i.id}));
            Ok(json!({"object": "organization.invite.deleted", "id": i.id, "deleted": true}))
        }
        ("POST", ["users", uid]) => modify_user(org, uid, &body()?),
        ("DELETE", ["users", uid]) => delete_user(org, uid),
        ("POST" | "DELETE", ["users", uid, "roles", more @ ..]) => {
            user(org, uid)?;
            write_assignment(org, req, Principal::User(UserId::from(*uid)), more, body)
        }
        ("POST", ["admin_api_keys"]) => create_admin_key(org, &body()?),
        ("DELETE", ["admin_api_keys", kid]) => {
            let pos = found(
                org.admin_api_keys
                    .iter()
                    .position(|k| k.id.as_str() == *kid),
                "admin API key",
                kid,
            )?;
            let k = org.admin_api_keys.remove(pos);
            org.record("api_key.deleted", None, json!({"id": k.id}));
            Ok(json!({"id": k.id, "object": "organization.admin_api_key.deleted", "deleted": true}))
        }
        ("POST", ["groups"]) => create_group(org, &body()?),
        ("POST", ["groups", gid]) => {
            let name = group_name(&body()?)?;
            let g = found(org.groups.get_mut(&GroupId::from(*gid)), "group", gid)?;
            g.name.clone_from(&name);
            let payload = json!({"id": gid, "changes_requested": {"group_name": name}});
            for p in &mut org.projects {
                for pg in p
                    .groups
                    .iter_mut()
                    .filter(|pg| pg.group_id.as_str() == *gid)
                {
                    pg.group_name.clone_from(&name);
                }
            }
            org.record("group.updated", None, payload);
            Ok(render_org::group_updated(group(org, gid)?))
        }
        ("DELETE", ["groups", gid]) => {
            let g = found(org.groups.remove(&GroupId::from(*gid)), "group", gid)?;
            // A deleted group loses its access to every project.
            for p in &mut org.projects {
                p.groups.retain(|pg| pg.group_id != g.id);
            }
            org.record("group.deleted", None, json!({"id": g.id}));
            Ok(json!({"object": "group.deleted", "id": g.id, "deleted": true}))
        }
        ("POST", ["groups", gid, "users"]) => add_group_user(org, gid, &body()?),
        ("DELETE", ["groups", gid, "users", uid]) => {
            let g = found(org.groups.get_mut(&GroupId::from(*gid)), "group", gid)?;
            let pos = found(
                g.users.iter().position(|u| u.as_str() == *uid),
                "group member",
                uid,
            )?;
            g.users.remove(pos);
            // The tenant-scoped membership events carry no payload in the spec.
            org.record_event(now(), "tenant.group.member.removed", None, None);
            Ok(json!({"object": "group.user.deleted", "deleted": true}))
        }
        ("POST" | "DELETE", ["groups", gid, "roles", more @ ..]) => {
            group(org, gid)?;
            write_assignment(org, req, Principal::Group(GroupId::from(*gid)), more, body)
        }
        ("POST", ["roles"]) => create_role(org, &body()?),
        ("POST", ["roles", rid]) => update_role(org, rid, &body()?),
        ("DELETE", ["roles", rid]) => delete_role(org, rid),
        _ => write_settings(org, req, rest, body),
    }
}

/// `POST`/`DELETE` of the organization's settings: retention, spend limit and alerts,
/// certificates.
fn write_settings(
    org: &mut Org,
    req: &Request<'_>,
    rest: &[&str],
    body: impl Fn() -> Result<Body, ApiError>,
) -> Res {
    match (req.method, rest) {
        ("POST", ["data_retention"]) => {
            org.data_retention = body()?.req_enum("retention_type", &ORG_RETENTION_TYPES)?;
            Ok(render_org::data_retention(org))
        }
        ("POST", ["spend_limit"]) => {
            let limit = spend_limit_from(&body()?, org.spend_limit.as_ref())?;
            let v = render_org::spend_limit("organization.spend_limit", &limit);
            org.spend_limit = Some(limit);
            Ok(v)
        }
        ("DELETE", ["spend_limit"]) => {
            if org.spend_limit.take().is_none() {
                return Err(ApiError::spend_limit_not_found());
            }
            Ok(json!({"object": "organization.spend_limit.deleted", "deleted": true}))
        }
        ("POST", ["spend_alerts"]) => {
            let id = SpendAlertId(org.next_id("spend_alert_"));
            let alert = spend_alert_from(&body()?, id)?;
            let v = render_org::org_spend_alert(&alert);
            org.spend_alerts.push(alert);
            Ok(v)
        }
        ("POST", ["spend_alerts", aid]) => {
            let b = body()?;
            let a = found(
                org.spend_alerts.iter_mut().find(|a| a.id.as_str() == *aid),
                "spend alert",
                aid,
            )?;
            // The update takes the whole CreateSpendAlertBody: a full replace.
            let mut new = spend_alert_from(&b, a.id.clone())?;
            new.extra = std::mem::take(&mut a.extra);
            *a = new;
            Ok(render_org::org_spend_alert(a))
        }
        ("DELETE", ["spend_alerts", aid]) => {
            let pos = found(
                org.spend_alerts.iter().position(|a| a.id.as_str() == *aid),
                "spend alert",
                aid,
            )?;
            let a = org.spend_alerts.remove(pos);
            Ok(json!({"id": a.id, "object": "organization.spend_alert.deleted", "deleted": true}))
        }
        ("POST", ["certificates"]) => upload_certificate(org, &body()?),
        ("POST", ["certificates", action @ ("activate" | "deactivate")]) => {
            toggle_certificates(org, action, &body()?)
        }
        ("POST", ["certificates", cid]) => {
            let name = body()?.opt_str("name")?;
            let c = found(
                org.certificates.iter_mut().find(|c| c.id.as_str() == *cid),
                "certificate",
                cid,
            )?;
            if name.is_some() {
                c.name = name;
            }
            let v = render_org::certificate_detail(c);
            let payload = audit_log::certificate_ref(c.id.as_str(), c.name.as_ref());
            org.record("certificate.updated", None, payload);
            Ok(v)
        }
        ("DELETE", ["certificates", cid]) => {
            let pos = found(
                org.certificates.iter().position(|c| c.id.as_str() == *cid),
                "certificate",
                cid,
            )?;
            let c = org.certificates.remove(pos);
            let payload = audit_log::certificate_ref(c.id.as_str(), c.name.as_ref());
            org.record("certificate.deleted", None, payload);
            Ok(json!({"object": "certificate.deleted", "id": c.id}))
        }
        _ => Err(ApiError::invalid_url(req.method, req.path)),
    }
}

/// `POST /organization/invites`: pending for seven days; every project must exist.
fn create_invite(org: &mut Org, b: &Body) -> Res {
    let email = b.req_str("email")?;
    let role = b.req_enum("role", &["reader", "owner"])?;
    let mut projects = Vec::new();
    match b.get("projects") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let param = format!("projects[{i}]");
                let Value::Object(m) = item else {
                    return Err(Body::wrong_type(&param, "an object", item));
                };
                let p = Body(m.clone());
                let id = p.req_str("id").map_err(|e| nest(e, &param))?;
                let prole = p
                    .req_enum("role", &["member", "owner"])
                    .map_err(|e| nest(e, &param))?;
                found(org.project(&ProjectId::from(id.as_str())), "project", &id)?;
                projects.push((ProjectId(id), prole));
            }
        }
        Some(v) => return Err(Body::wrong_type("projects", "an array", v)),
    }
    if org
        .invites
        .iter()
        .any(|i| i.status == "pending" && i.email.eq_ignore_ascii_case(&email))
    {
        return Err(ApiError::invalid(
            "email",
            "invalid_value",
            format!("An invite for '{email}' is already pending."),
        ));
    }
    let t = now();
    let invite = Invite {
        id: org.next_id("invite-"),
        email,
        role,
        status: "pending".into(),
        created_at: t,
        expires_at: Some(t + INVITE_LIFETIME),
        accepted_at: None,
        projects,
        extra: Map::new(),
    };
    let v = render_org::invite(&invite);
    let payload = json!({"id": invite.id, "data": {"email": invite.email, "role": invite.role}});
    org.invites.push(invite);
    org.record("invite.sent", None, payload);
    Ok(v)
}

/// An error about a field of a nested object, named with its parent (`projects[0].role`).
fn nest(mut e: ApiError, parent: &str) -> ApiError {
    if let Some(p) = &e.param {
        let full = format!("{parent}.{p}");
        e.message = e.message.replace(&format!("'{p}'"), &format!("'{full}'"));
        e.param = Some(full);
    }
    e
}

/// `POST /organization/users/{user_id}`: the organization role, an assigned role, and the
/// two metadata strings (kept and served).
fn modify_user(org: &mut Org, uid: &str, b: &Body) -> Res {
    let role = b.opt_enum("role", &ORG_ROLES)?;
    let role_id = b.opt_str("role_id")?;
    let mut meta = Vec::new();
    for field in ["technical_level", "developer_persona"] {
        if let Some(v) = b.opt_str(field)? {
            meta.push((field, v));
        }
    }
    if let Some(rid) = &role_id {
        found(org.org_role(rid), "role", rid)?;
    }
    let u = found(org.users.get_mut(&UserId::from(uid)), "user", uid)?;
    if let Some(role) = &role {
        u.role.clone_from(role);
    }
    let mut assigned = None;
    if let Some(rid) = role_id
        && !u.roles.iter().any(|r| r.as_str() == rid)
    {
        u.roles.push(RoleId(rid.clone()));
        assigned = Some(rid);
    }
    for (field, v) in meta {
        u.extra.insert(field.into(), json!(v));
    }
    let v = render_org::user(u);
    let changes = role.map_or_else(|| json!({}), |r| json!({"role": r}));
    org.record(
        "user.updated",
        None,
        json!({"id": uid, "changes_requested": changes}),
    );
    if let Some(rid) = assigned {
        let payload = audit_log::assignment(Some(&rid), uid, "user", None);
        org.record("role.assignment.created", None, payload);
    }
    Ok(v)
}

/// `DELETE /organization/users/{user_id}`: the user leaves every project and group, and
/// is kept as a former user so the keys they made still name them.
fn delete_user(org: &mut Org, uid: &str) -> Res {
    let id = UserId::from(uid);
    let u = found(org.users.remove(&id), "user", uid)?;
    for p in &mut org.projects {
        p.users.retain(|m| m.id != id);
    }
    for g in org.groups.values_mut() {
        g.users.retain(|m| m != &id);
    }
    org.former_users.insert(id.clone(), u);
    org.record("user.deleted", None, json!({"id": id}));
    Ok(json!({"object": "organization.user.deleted", "id": id, "deleted": true}))
}

/// `POST /organization/admin_api_keys`: owned by the organization's first owner (by id),
/// the simulator having no other idea who calls; the secret is shown in this answer only.
fn create_admin_key(org: &mut Org, b: &Body) -> Res {
    let name = b.req_str("name")?;
    let lifetime = b.opt_int("expires_in_seconds", 1)?;
    if let Some(n) = lifetime
        && n > ADMIN_KEY_MAX_LIFETIME
    {
        return Err(ApiError::invalid(
            "expires_in_seconds",
            "integer_above_max_value",
            format!(
                "Invalid 'expires_in_seconds': integer above maximum value. Expected a value <= {ADMIN_KEY_MAX_LIFETIME}, but got {n} instead."
            ),
        ));
    }
    let owner =
        org.owners().next().map(|u| u.id.clone()).ok_or_else(|| {
            ApiError::bad_request("The organization has no owner to own the key.")
        })?;
    let id = ApiKeyId(org.next_id("key_"));
    let secret = new_secret(org, "sk-admin-");
    let t = now();
    let key = AdminApiKey {
        redacted_value: admin_redacted_value(id.as_str()),
        id,
        name: Some(name),
        created_at: t,
        expires_at: lifetime.map(|n| t + n),
        last_used_at: None,
        owner,
        extra: Map::new(),
    };
    let mut v = render_org::admin_key(org, &key);
    if let Value::Object(m) = &mut v {
        m.insert("value".into(), json!(secret));
    }
    let scopes = ["api.management.read", "api.management.write"];
    let payload = json!({"id": key.id, "data": {"scopes": scopes}});
    org.admin_api_keys.push(key);
    org.record("api_key.created", None, payload);
    Ok(v)
}

/// A group name: 1 to 255 characters.
fn group_name(b: &Body) -> Result<String, ApiError> {
    let name = b.req_str("name")?;
    let n = name.chars().count();
    if n == 0 || n > 255 {
        return Err(ApiError::invalid(
            "name",
            "invalid_value",
            format!("Invalid 'name': the length must be between 1 and 255, got {n}."),
        ));
    }
    Ok(name)
}

/// `POST /organization/groups`.
fn create_group(org: &mut Org, b: &Body) -> Res {
    let name = group_name(b)?;
    let id = GroupId(org.next_id("group_"));
    let g = OrgGroup::new(id.clone(), name, "group".into(), now());
    let v = render_org::group(&g);
    let payload = json!({"id": id, "data": {"group_name": g.name}});
    org.groups.insert(id, g);
    org.record("group.created", None, payload);
    Ok(v)
}

/// `POST /organization/groups/{group_id}/users`: a user of the organization, once.
fn add_group_user(org: &mut Org, gid: &str, b: &Body) -> Res {
    let uid = b.req_str("user_id")?;
    group(org, gid)?;
    user(org, &uid)?;
    let g = found(org.groups.get_mut(&GroupId::from(gid)), "group", gid)?;
    if g.users.iter().any(|u| u.as_str() == uid) {
        return Err(ApiError::invalid(
            "user_id",
            "invalid_value",
            format!("User '{uid}' is already a member of this group."),
        ));
    }
    g.users.push(UserId(uid.clone()));
    org.record_event(now(), "tenant.group.member.added", None, None);
    Ok(json!({"object": "group.user", "user_id": uid, "group_id": gid}))
}

/// Who holds an organization role assignment.
enum Principal {
    User(UserId),
    Group(GroupId),
}

impl Principal {
    /// The principal's id and type, as role-assignment events name them.
    fn describe(&self) -> (&str, &'static str) {
        match self {
            Principal::User(id) => (id.as_str(), "user"),
            Principal::Group(id) => (id.as_str(), "group"),
        }
    }

    fn roles_mut<'o>(&self, org: &'o mut Org) -> Option<&'o mut Vec<RoleId>> {
        match self {
            Principal::User(id) => org.users.get_mut(id).map(|u| &mut u.roles),
            Principal::Group(id) => org.groups.get_mut(id).map(|g| &mut g.roles),
        }
    }
}

/// `POST …/roles` (assign) and `DELETE …/roles/{role_id}` (unassign) for a user or group.
fn write_assignment(
    org: &mut Org,
    req: &Request<'_>,
    who: Principal,
    rest: &[&str],
    body: impl Fn() -> Result<Body, ApiError>,
) -> Res {
    match (req.method, rest) {
        ("POST", []) => {
            let rid = body()?.req_str("role_id")?;
            let role = found(org.org_role(&rid), "role", &rid)?;
            let v = match &who {
                Principal::User(id) => json!({
                    "object": "user.role",
                    "user": render_org::user(user(org, id.as_str())?),
                    "role": render::role(&role),
                }),
                Principal::Group(id) => json!({
                    "object": "group.role",
                    "group": render_org::group_summary(group(org, id.as_str())?),
                    "role": render::role(&role),
                }),
            };
            if let Some(list) = who.roles_mut(org)
                && !list.contains(&role.id)
            {
                list.push(role.id.clone());
            }
            let (principal, kind) = who.describe();
            let payload = audit_log::assignment(Some(role.id.as_str()), principal, kind, None);
            org.record("role.assignment.created", None, payload);
            Ok(v)
        }
        ("DELETE", [rid]) => {
            let list = found(who.roles_mut(org), "principal", rid)?;
            let pos = found(
                list.iter().position(|r| r.as_str() == *rid),
                "role assignment",
                rid,
            )?;
            list.remove(pos);
            let (principal, kind) = who.describe();
            let payload = audit_log::assignment(Some(rid), principal, kind, None);
            org.record("role.assignment.deleted", None, payload);
            let object = match who {
                Principal::User(_) => "user.role.deleted",
                Principal::Group(_) => "group.role.deleted",
            };
            Ok(json!({"object": object, "deleted": true}))
        }
        _ => Err(ApiError::invalid_url(req.method, req.path)),
    }
}

/// A predefined role cannot be changed or deleted.
fn custom_role_index(org: &Org, rid: &str) -> Result<usize, ApiError> {
    if let Some(pos) = org.roles.iter().position(|r| r.id.as_str() == rid) {
        return Ok(pos);
    }
    if org.org_role(rid).is_some() {
        return Err(ApiError::invalid(
            "role_id",
            "invalid_value",
            format!("Role '{rid}' is predefined and cannot be changed."),
        ));
    }
    Err(ApiError::not_found("role", rid))
}

/// `POST /organization/roles`: a custom role, unique by name.
fn create_role(org: &mut Org, b: &Body) -> Res {
    let name = b.req_str("role_name")?;
    let permissions = b.req_str_array("permissions")?;
    let description = b.opt_str("description")?;
    if org.org_roles().iter().any(|r| r.name == name) {
        return Err(ApiError::invalid(
            "role_name",
            "invalid_value",
            format!("A role named '{name}' already exists in this organization."),
        ));
    }
    let t = now();
    let role = Role {
        id: RoleId(org.next_id("role_")),
        name,
        description,
        permissions,
        resource_type: "api.organization".into(),
        predefined_role: false,
        created_at: Some(t),
        updated_at: Some(t),
        created_by: None,
        extra: Map::new(),
    };
    let v = render::value(render::role(&role));
    let payload = audit_log::role_created(&role, None);
    org.roles.push(role);
    org.record("role.created", None, payload);
    Ok(v)
}

/// `POST /organization/roles/{role_id}`.
fn update_role(org: &mut Org, rid: &str, b: &Body) -> Res {
    let permissions = b.opt_str_array("permissions")?;
    let description = b.opt_str("description")?;
    let name = b.opt_str("role_name")?;
    let i = custom_role_index(org, rid)?;
    let r = &mut org.roles[i];
    let old = r.clone();
    if let Some(p) = permissions {
        r.permissions = p;
    }
    if let Some(d) = description {
        r.description = Some(d);
    }
    if let Some(n) = name {
        r.name = n;
    }
    r.updated_at = Some(now());
    let v = render::value(render::role(r));
    let payload = audit_log::role_updated(&old, r, None);
    org.record("role.updated", None, payload);
    Ok(v)
}

/// `DELETE /organization/roles/{role_id}`: users and groups holding it lose it.
fn delete_role(org: &mut Org, rid: &str) -> Res {
    let i = custom_role_index(org, rid)?;
    let role = org.roles.remove(i);
    for u in org.users.values_mut() {
        u.roles.retain(|r| r != &role.id);
    }
    for g in org.groups.values_mut() {
        g.roles.retain(|r| r != &role.id);
    }
    org.record("role.deleted", None, json!({"id": role.id}));
    Ok(json!({"object": "role.deleted", "id": role.id, "deleted": true}))
}

/// `UpdateOrganizationSpendLimitBody` / `UpdateProjectSpendLimitBody`: a limit of at least
/// one cent; a replaced limit keeps its enforcement state, a new one starts inactive.
pub(super) fn spend_limit_from(b: &Body, old: Option<&SpendLimit>) -> Result<SpendLimit, ApiError> {
    let threshold = b
        .opt_int("threshold_amount", 1)?
        .ok_or_else(|| Body::missing("threshold_amount"))?;
    Ok(SpendLimit {
        threshold_amount: threshold,
        currency: b.req_enum("currency", &["USD"])?,
        interval: b.req_enum("interval", &["month"])?,
        enforcement: old.map_or_else(|| "inactive".into(), |o| o.enforcement.clone()),
    })
}

/// The PEM markers an uploaded certificate must carry.
const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// `POST /organization/certificates`: a PEM certificate, valid from now for a year (the
/// simulator does not decode it), inactive until activated; at most 50.
fn upload_certificate(org: &mut Org, b: &Body) -> Res {
    let pem = b.req_str("certificate")?;
    let name = b.opt_str("name")?;
    let text = pem.trim();
    if !text.starts_with(PEM_BEGIN) || !text.ends_with(PEM_END) {
        return Err(ApiError::invalid(
            "certificate",
            "invalid_value",
            "Invalid 'certificate': expected a PEM-encoded certificate.",
        ));
    }
    if org.certificates.len() >= MAX_CERTIFICATES {
        return Err(ApiError::bad_request(format!(
            "An organization can have at most {MAX_CERTIFICATES} certificates."
        )));
    }
    let t = now();
    let cert = Certificate {
        id: CertificateId(org.next_id("cert_")),
        name,
        created_at: t,
        active: false,
        valid_at: t,
        expires_at: t + 365 * 86_400,
        extra: Map::new(),
    };
    let v = render_org::certificate_detail(&cert);
    let payload = audit_log::certificate_ref(cert.id.as_str(), cert.name.as_ref());
    org.certificates.push(cert);
    org.record("certificate.created", None, payload);
    Ok(v)
}

/// `POST /organization/certificates/activate` and `…/deactivate`: 1 to 10 known ids.
fn toggle_certificates(org: &mut Org, action: &str, b: &Body) -> Res {
    let ids = b.req_str_array("certificate_ids")?;
    if ids.is_empty() || ids.len() > MAX_CERTIFICATES_PER_TOGGLE {
        return Err(ApiError::invalid(
            "certificate_ids",
            "invalid_value",
            format!(
                "Invalid 'certificate_ids': expected 1 to {MAX_CERTIFICATES_PER_TOGGLE} ids, got {}.",
                ids.len()
            ),
        ));
    }
    for id in &ids {
        certificate(org, id)?;
    }
    let active = action == "activate";
    let mut data = Vec::new();
    let mut refs = Vec::new();
    for c in &mut org.certificates {
        if ids.iter().any(|id| id == c.id.as_str()) {
            c.active = active;
            data.push(render_org::org_certificate(c));
            refs.push(audit_log::certificate_ref(c.id.as_str(), c.name.as_ref()));
        }
    }
    let (object, kind) = if active {
        (
            "organization.certificate.activation",
            "certificates.activated",
        )
    } else {
        (
            "organization.certificate.deactivation",
            "certificates.deactivated",
        )
    };
    org.record(kind, None, json!({"certificates": refs}));
    Ok(json!({"object": object, "data": data}))
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use serde_json::Value;

    use super::super::api::{Query, Request, handle};
    use crate::sim::org::Org;

    const NOW: i64 = 1_800_000_000;

    fn call(org: &RwLock<Org>, method: &str, target: &str, body: &str) -> Result<Value, u16> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let req = Request {
            method,
            path,
            query: Query::parse(query),
            body: body.as_bytes(),
        };
        handle(org, &req)
            .map(|b| serde_json::from_slice(&b).unwrap_or(Value::Null))
            .map_err(|e| e.status)
    }

    fn ids(v: &Value) -> Vec<String> {
        v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["id"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn the_admin_key_quirk_lists_every_project_key_after_the_admin_keys() {
        let org = RwLock::new(Org::demo(NOW));
        let plain = call(&org, "GET", "/organization/admin_api_keys?limit=100", "").unwrap();
        assert_eq!(ids(&plain).len(), 5);
        let project_keys: usize = org
            .read()
            .unwrap()
            .projects
            .iter()
            .map(|p| p.api_keys.len())
            .sum();
        org.write().unwrap().quirks.admin_keys_list_project_keys = true;
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let page = call(
                &org,
                "GET",
                &format!("/organization/admin_api_keys?limit=3{after}"),
                "",
            )
            .unwrap();
            all.extend(page["data"].as_array().unwrap().iter().cloned());
            if page["has_more"] != true {
                break;
            }
            after = format!("&after={}", page["last_id"].as_str().unwrap());
        }
        assert_eq!(all.len(), 5 + project_keys);
        assert!(all[..5].iter().all(|k| {
            k["redacted_value"]
                .as_str()
                .unwrap()
                .starts_with("sk-admin-")
        }));
        assert!(all[5..].iter().all(|k| {
            k["object"] == "organization.admin_api_key"
                && !k["redacted_value"]
                    .as_str()
                    .unwrap()
                    .starts_with("sk-admin-")
        }));
        assert!(all.iter().any(|k| k["owner"]["type"] == "service_account"));
        // The in-memory crawl shows the same.
        let scopes = org.read().unwrap().scope_results();
        let listed = scopes
            .iter()
            .find(|r| r.scope.family == crate::model::Family::OrgAdminApiKeys)
            .map(|r| match &r.outcome {
                crate::model::ScopeOutcome::Complete(v) => v.len(),
                crate::model::ScopeOutcome::Failed(_) => 0,
            });
        assert_eq!(listed, Some(5 + project_keys));
    }

    #[test]
    fn a_deleted_user_leaves_projects_and_groups_and_still_names_their_keys() {
        let org = RwLock::new(Org::demo(NOW));
        let deleted = call(&org, "DELETE", "/organization/users/user-jo", "").unwrap();
        assert_eq!(deleted["deleted"], true);
        assert_eq!(
            call(&org, "GET", "/organization/users/user-jo", ""),
            Err(404)
        );
        let key = call(
            &org,
            "GET",
            "/organization/admin_api_keys/key_admin_jo_ops",
            "",
        )
        .unwrap();
        assert_eq!(key["owner"]["id"], "user-jo");
        assert_eq!(key["owner"]["name"], "Jo Kim");
        assert_eq!(key["owner"]["role"], "reader");
        let o = org.read().unwrap();
        assert!(o.projects.iter().all(|p| p.user("user-jo").is_none()));
        assert!(
            o.former_users
                .contains_key(&crate::model::UserId::from("user-jo"))
        );
        // Jo's project key is still listed, now with an owner who has no access.
        let pay = o
            .project(&crate::model::ProjectId::from("proj_payments"))
            .unwrap();
        let k = pay
            .api_keys
            .iter()
            .find(|k| k.id.as_str() == "key_pay_jo_batch")
            .unwrap();
        assert_eq!(pay.owner_access(k), "inactive");
    }

    #[test]
    fn a_new_admin_key_shows_its_secret_once_and_expires_when_asked() {
        let org = RwLock::new(Org::demo(NOW));
        let made = call(
            &org,
            "POST",
            "/organization/admin_api_keys",
            r#"{"name": "ci", "expires_in_seconds": 600}"#,
        )
        .unwrap();
        let id = made["id"].as_str().unwrap();
        assert!(made["value"].as_str().unwrap().starts_with("sk-admin-"));
        assert_eq!(
            made["expires_at"].as_i64(),
            made["created_at"].as_i64().map(|t| t + 600)
        );
        // The first owner by id owns it.
        assert_eq!(made["owner"]["id"], "user-ada");
        let again = call(
            &org,
            "GET",
            &format!("/organization/admin_api_keys/{id}"),
            "",
        )
        .unwrap();
        assert!(again.get("value").is_none(), "{again}");
        let endless = call(
            &org,
            "POST",
            "/organization/admin_api_keys",
            r#"{"name": "x"}"#,
        )
        .unwrap();
        assert!(endless["expires_at"].is_null());
    }

    #[test]
    fn a_spend_limit_is_404_until_set_and_a_replaced_one_keeps_its_enforcement() {
        let org = RwLock::new(Org::demo(NOW));
        let path = "/organization/projects/proj_support/spend_limit";
        assert_eq!(call(&org, "GET", path, ""), Err(404));
        let body = r#"{"threshold_amount": 100, "currency": "USD", "interval": "month"}"#;
        let set = call(&org, "POST", path, body).unwrap();
        assert_eq!(set["enforcement"]["status"], "inactive");
        let pay = "/organization/projects/proj_payments/spend_limit";
        let replaced = call(&org, "POST", pay, body).unwrap();
        assert_eq!(replaced["threshold_amount"], 100);
        assert_eq!(replaced["enforcement"]["status"], "enforcing");
        assert_eq!(
            call(&org, "DELETE", "/organization/spend_limit", "").map(|v| v["deleted"].clone()),
            Ok(Value::Bool(true))
        );
        assert_eq!(call(&org, "GET", "/organization/spend_limit", ""), Err(404));
    }

    #[test]
    fn users_filter_by_any_of_several_emails_ignoring_case() {
        let org = RwLock::new(Org::demo(NOW));
        let found = call(
            &org,
            "GET",
            "/organization/users?emails[]=dana.fischer@acme-robotics.com&emails[]=GUS.IVANOV.DEV@gmail.com&emails[]=nobody@x.com",
            "",
        )
        .unwrap();
        assert_eq!(ids(&found), ["user-dana", "user-gus"]);
    }

    #[test]
    fn deleting_an_org_role_or_group_takes_it_from_everyone_holding_it() {
        let org = RwLock::new(Org::demo(NOW));
        call(
            &org,
            "DELETE",
            "/organization/roles/role_org_billing_viewer",
            "",
        )
        .unwrap();
        call(&org, "DELETE", "/organization/groups/group_data_eng", "").unwrap();
        let o = org.read().unwrap();
        assert!(o.users.values().all(|u| u.roles.is_empty()));
        assert!(o.groups.values().all(|g| g.roles.is_empty()));
        assert!(
            o.projects
                .iter()
                .all(|p| p.group("group_data_eng").is_none())
        );
    }
}
