//! The organization's own objects (invites, admin API keys, custom roles, hard spend
//! limits, quirks) and the parts of the file format that describe them; the
//! organization's users and groups live in [`super::org`] with the rest of the directory.

use serde_json::{Map, Value};

use super::SimError;
use super::org::{Org, OrgUser, R, Reader, Role, parse_certificate, parse_role, parse_spend_alert};
use crate::model::{ApiKeyId, ProjectId, RoleId, UserId};

/// The organization data retention types the API accepts
/// (`UpdateOrganizationDataRetentionBody`): no `organization_default`, no `none`.
pub const ORG_RETENTION_TYPES: [&str; 4] = [
    "zero_data_retention",
    "modified_abuse_monitoring",
    "enhanced_zero_data_retention",
    "enhanced_modified_abuse_monitoring",
];

/// An organization's roles: `owner` or `reader`.
pub const ORG_ROLES: [&str; 2] = ["owner", "reader"];

/// How long an invite stays valid when the file gives no `expires_at`.
pub const INVITE_LIFETIME: i64 = 7 * 86_400;

/// The largest `expires_in_seconds` an admin key may be created with (a year).
pub const ADMIN_KEY_MAX_LIFETIME: i64 = 31_536_000;

/// An invitation to the organization.
#[derive(Clone, Debug, PartialEq)]
pub struct Invite {
    /// `invite-…`
    pub id: String,
    /// Who was invited.
    pub email: String,
    /// `owner` or `reader`.
    pub role: String,
    /// `pending`, `accepted` or `expired`.
    pub status: String,
    /// When it was sent.
    pub created_at: i64,
    /// When it expires.
    pub expires_at: Option<i64>,
    /// When it was accepted.
    pub accepted_at: Option<i64>,
    /// Projects joined on acceptance, with the project role (`member`/`owner`).
    pub projects: Vec<(ProjectId, String)>,
    /// Unmodelled fields.
    pub extra: Map<String, Value>,
}

/// An admin API key of the organization.
#[derive(Clone, Debug, PartialEq)]
pub struct AdminApiKey {
    /// `key_…`
    pub id: ApiKeyId,
    /// Name; may be null.
    pub name: Option<String>,
    /// `sk-admin-****abcd`
    pub redacted_value: String,
    /// Creation time.
    pub created_at: i64,
    /// Expiry; `None` = never.
    pub expires_at: Option<i64>,
    /// Last use; `None` = never used.
    pub last_used_at: Option<i64>,
    /// The user who made it: a current user, or a former one.
    pub owner: UserId,
    /// Unmodelled fields.
    pub extra: Map<String, Value>,
}

/// A hard spend limit (organization or project).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendLimit {
    /// In cents, at least 1.
    pub threshold_amount: i64,
    /// `USD`.
    pub currency: String,
    /// `month`.
    pub interval: String,
    /// `inactive` or `enforcing`.
    pub enforcement: String,
}

/// Misbehaviours of the live API, switched on in the file's `quirks` so a client can be
/// tested against them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quirks {
    /// The admin-key list also lists every project API key (the live API has been seen
    /// doing so), after the admin keys, shaped as admin keys.
    pub admin_keys_list_project_keys: bool,
}

/// The predefined organization roles every organization has, served before the custom
/// ones: `(id, name, description, permissions)`.
pub const PREDEFINED_ORG_ROLES: [(&str, &str, &str, &[&str]); 2] = [
    (
        "role_org_owner",
        "owner",
        "Full control of the organization.",
        &[
            "api.organization.read",
            "api.organization.write",
            "api.organization.projects.read",
            "api.organization.projects.write",
            "api.management.read",
            "api.management.write",
        ],
    ),
    (
        "role_org_reader",
        "reader",
        "Read access to the organization.",
        &["api.organization.read", "api.organization.projects.read"],
    ),
];

/// The predefined organization roles as [`Role`]s.
pub fn predefined_org_roles() -> Vec<Role> {
    PREDEFINED_ORG_ROLES
        .iter()
        .map(|(id, name, description, permissions)| Role {
            id: RoleId((*id).to_owned()),
            name: (*name).to_owned(),
            description: Some((*description).to_owned()),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            resource_type: "api.organization".into(),
            predefined_role: true,
            created_at: None,
            updated_at: None,
            created_by: None,
            extra: Map::new(),
        })
        .collect()
}

impl Org {
    /// Every organization role, predefined first, then the custom ones in creation order.
    pub fn org_roles(&self) -> Vec<Role> {
        let mut all = predefined_org_roles();
        all.extend(self.roles.iter().cloned());
        all
    }

    /// The organization role (predefined or custom) with this id.
    pub fn org_role(&self, id: &str) -> Option<Role> {
        self.org_roles().into_iter().find(|r| r.id.as_str() == id)
    }

    /// A current or former user, for naming the owner of a key.
    pub fn user_record(&self, id: &UserId) -> Option<&OrgUser> {
        self.users.get(id).or_else(|| self.former_users.get(id))
    }

    /// The organization's owners, by id.
    pub fn owners(&self) -> impl Iterator<Item = &OrgUser> {
        self.users.values().filter(|u| u.role == "owner")
    }
}

/// The redacted form the API shows for an admin key (`sk-admin-****abcd`).
pub fn admin_redacted_value(id: &str) -> String {
    let tail: Vec<char> = id
        .chars()
        .rev()
        .filter(char::is_ascii_alphanumeric)
        .take(4)
        .collect();
    format!(
        "sk-admin-****{}",
        tail.into_iter().rev().collect::<String>()
    )
}

/// `ids`, each naming an organization role, at `path`.
pub(super) fn check_org_role_ids(org: &Org, x: &mut Reader<'_>) -> R<Vec<RoleId>> {
    let ids = x.str_array("roles")?;
    for (j, id) in ids.iter().enumerate() {
        if org.org_role(id).is_none() {
            return Err(SimError::Org {
                path: format!("{}[{j}]", x.child("roles")),
                message: format!(
                    "unknown role {id:?} (not in the organization's roles nor a predefined one)"
                ),
            });
        }
    }
    Ok(ids.into_iter().map(RoleId).collect())
}

/// One of the top-level `users` (or `former_users`): the directory fields plus the
/// organization membership. `created_at` and `added_at` are `i64::MAX` when absent,
/// filled once the projects are read.
pub(super) fn parse_org_user(x: &mut Reader<'_>, org: &Org) -> R<OrgUser> {
    let id = UserId(x.req_str("id")?);
    let mut user = OrgUser::new(id, x.opt_str("name")?, x.opt_str("email")?, i64::MAX);
    user.created_at = x.opt_time("created_at")?.unwrap_or(i64::MAX);
    user.added_at = x.opt_time("added_at")?.unwrap_or(i64::MAX);
    if let Some(role) = x.opt_enum("role", &ORG_ROLES)? {
        user.role = role;
    }
    user.is_service_account = x.opt_bool("is_service_account")?.unwrap_or(false);
    user.is_scim_managed = x.opt_bool("is_scim_managed")?.unwrap_or(false);
    user.api_key_last_used_at = x.opt_time("api_key_last_used_at")?;
    user.enabled = x.opt_bool("enabled")?.unwrap_or(true);
    user.banned = x.opt_bool("banned")?.unwrap_or(false);
    user.banned_at = x.opt_time("banned_at")?;
    user.roles = check_org_role_ids(org, x)?;
    user.extra = x.extra()?;
    Ok(user)
}

/// The top-level `roles`: the organization's custom roles.
pub(super) fn parse_org_roles(r: &mut Reader<'_>, org: &mut Org, now: i64) -> R<()> {
    for (i, v) in r.array("roles")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("roles", i), now)?;
        let role = parse_role(&mut x, now, "api.organization")?;
        if org.org_role(role.id.as_str()).is_some() {
            return Err(x.err("id", format!("duplicate role {:?}", role.id.as_str())));
        }
        org.roles.push(role);
    }
    Ok(())
}

/// The organization-level settings read after the projects: invites (which name
/// projects), admin keys (which name users), retention, spend limit and alerts,
/// certificates and quirks.
pub(super) fn parse_org_settings(r: &mut Reader<'_>, org: &mut Org, now: i64) -> R<()> {
    for (i, v) in r.array("invites")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("invites", i), now)?;
        let invite = parse_invite(&mut x, org)?;
        if org.invites.iter().any(|o| o.id == invite.id) {
            return Err(x.err("id", format!("duplicate invite {:?}", invite.id)));
        }
        org.invites.push(invite);
    }
    for (i, v) in r.array("admin_api_keys")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("admin_api_keys", i), now)?;
        let key = parse_admin_key(&mut x, org)?;
        if org.admin_api_keys.iter().any(|k| k.id == key.id) {
            return Err(x.err(
                "id",
                format!("duplicate admin API key {:?}", key.id.as_str()),
            ));
        }
        org.admin_api_keys.push(key);
    }
    if let Some(t) = r.opt_enum("data_retention", &ORG_RETENTION_TYPES)? {
        org.data_retention = t;
    }
    if let Some(v) = r.get("spend_limit") {
        let mut x = Reader::new(v, r.child("spend_limit"), now)?;
        org.spend_limit = Some(parse_spend_limit(&mut x)?);
    }
    for (i, v) in r.array("spend_alerts")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("spend_alerts", i), now)?;
        let alert = parse_spend_alert(&mut x)?;
        if org.spend_alerts.iter().any(|a| a.id == alert.id) {
            return Err(x.err(
                "id",
                format!("duplicate spend alert {:?}", alert.id.as_str()),
            ));
        }
        org.spend_alerts.push(alert);
    }
    for (i, v) in r.array("certificates")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("certificates", i), now)?;
        let cert = parse_certificate(&mut x, now)?;
        if org.certificates.iter().any(|c| c.id == cert.id) {
            return Err(x.err(
                "id",
                format!("duplicate certificate {:?}", cert.id.as_str()),
            ));
        }
        org.certificates.push(cert);
    }
    if let Some(v) = r.get("quirks") {
        let x = Reader::new(v, r.child("quirks"), now)?;
        org.quirks = parse_quirks(&x)?;
    }
    Ok(())
}

/// One of the top-level `invites`.
fn parse_invite(x: &mut Reader<'_>, org: &Org) -> R<Invite> {
    let id = x.req_str("id")?;
    let email = x.req_str("email")?;
    let role = x
        .opt_enum("role", &ORG_ROLES)?
        .unwrap_or_else(|| "reader".into());
    let status = x
        .opt_enum("status", &["pending", "accepted", "expired"])?
        .unwrap_or_else(|| "pending".into());
    let created_at = x.opt_time("created_at")?.unwrap_or(x.now);
    let expires_at = Some(
        x.opt_time("expires_at")?
            .unwrap_or(created_at.saturating_add(INVITE_LIFETIME)),
    );
    let accepted_at = x.opt_time("accepted_at")?;
    let mut projects = Vec::new();
    for (j, v) in x.array("projects")?.iter().enumerate() {
        let mut p = Reader::new(v, x.item_path("projects", j), x.now)?;
        let pid = ProjectId(p.req_str("id")?);
        if org.project(&pid).is_none() {
            return Err(p.err("id", format!("unknown project {:?}", pid.as_str())));
        }
        let role = p
            .opt_enum("role", &["member", "owner"])?
            .unwrap_or_else(|| "member".into());
        projects.push((pid, role));
    }
    Ok(Invite {
        id,
        email,
        role,
        status,
        created_at,
        expires_at,
        accepted_at,
        projects,
        extra: x.extra()?,
    })
}

/// One of the top-level `admin_api_keys`: `owner` names a current or former user.
fn parse_admin_key(x: &mut Reader<'_>, org: &Org) -> R<AdminApiKey> {
    let id = ApiKeyId(x.req_str("id")?);
    let owner = UserId(x.req_str("owner")?);
    if org.user_record(&owner).is_none() {
        return Err(x.err(
            "owner",
            format!(
                "unknown user {:?} (an owner who left the organization is listed in former_users)",
                owner.as_str()
            ),
        ));
    }
    let redacted = x
        .opt_str("redacted_value")?
        .unwrap_or_else(|| admin_redacted_value(id.as_str()));
    Ok(AdminApiKey {
        name: x.opt_str("name")?,
        redacted_value: redacted,
        created_at: x.opt_time("created_at")?.unwrap_or(x.now),
        expires_at: x.opt_time("expires_at")?,
        last_used_at: x.opt_time("last_used_at")?,
        owner,
        extra: x.extra()?,
        id,
    })
}

/// A `spend_limit` (organization or project).
pub(super) fn parse_spend_limit(x: &mut Reader<'_>) -> R<SpendLimit> {
    let threshold = x
        .opt_i64("threshold_amount")?
        .ok_or_else(|| x.err("threshold_amount", "missing (required)"))?;
    if threshold < 1 {
        return Err(x.err(
            "threshold_amount",
            format!("must be at least 1 (cents), got {threshold}"),
        ));
    }
    let limit = SpendLimit {
        threshold_amount: threshold,
        currency: x
            .opt_enum("currency", &["USD"])?
            .unwrap_or_else(|| "USD".into()),
        interval: x
            .opt_enum("interval", &["month"])?
            .unwrap_or_else(|| "month".into()),
        enforcement: x
            .opt_enum("enforcement", &["inactive", "enforcing"])?
            .unwrap_or_else(|| "inactive".into()),
    };
    if let Some(k) = x.extra()?.keys().next() {
        return Err(x.err(k, "unknown field of a spend limit"));
    }
    Ok(limit)
}

/// The top-level `quirks`: each a boolean; an unknown one is an error, so a misspelt
/// quirk cannot silently test nothing.
fn parse_quirks(x: &Reader<'_>) -> R<Quirks> {
    let mut quirks = Quirks::default();
    for (k, v) in x.map {
        let on = match v {
            Value::Bool(b) => *b,
            _ => return Err(x.err(k, "expected true or false")),
        };
        match k.as_str() {
            "admin_keys_list_project_keys" => quirks.admin_keys_list_project_keys = on,
            _ => {
                return Err(x.err(k, "unknown quirk (expected admin_keys_list_project_keys)"));
            }
        }
    }
    Ok(quirks)
}
