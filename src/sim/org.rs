//! The simulated organization: its model, the JSON file format of docs/sim-org-format.md and
//! the mutators tests use to change it between snapshots.
//!
//! Every object keeps the fields of the file it came from that the simulator does not
//! model (`extra`), and serves them as-is: the store must keep unknown fields, so the
//! simulator has to be able to send some.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::SimError;
pub use super::org_level::{
    ADMIN_KEY_MAX_LIFETIME, AdminApiKey, INVITE_LIFETIME, Invite, ORG_RETENTION_TYPES, ORG_ROLES,
    Quirks, SpendLimit, admin_redacted_value,
};
use super::org_level::{
    check_org_role_ids, parse_org_roles, parse_org_settings, parse_org_user, parse_spend_limit,
};
use crate::model::{
    ApiKeyId, CertificateId, GroupId, HOSTED_TOOLS, ProjectId, RateLimitId, RoleId,
    ServiceAccountId, SpendAlertId, UserId,
};

/// The curated demo organization shipped with the binary.
const DEMO_ORG: &str = include_str!("../../sim/demo-org.json");

/// The largest organization file `sim --org` reads (a generated 1,000-project organization
/// is a few MiB).
const MAX_ORG_FILE: crate::size::ByteSize = crate::size::ByteSize::from_mib(256);

/// The project data retention types the API accepts (`UpdateProjectDataRetentionBody`).
pub const RETENTION_TYPES: [&str; 6] = [
    "organization_default",
    "none",
    "zero_data_retention",
    "modified_abuse_monitoring",
    "enhanced_zero_data_retention",
    "enhanced_modified_abuse_monitoring",
];

/// Project residencies the API accepts (`PublicProjectResidency`).
pub const RESIDENCIES: [&str; 12] = [
    "GLOBAL",
    "US_STORAGE_PROCESSING",
    "EU_STORAGE_PROCESSING",
    "JP_STORAGE",
    "KR_STORAGE",
    "CA_STORAGE",
    "SG_STORAGE",
    "IN_STORAGE",
    "AU_STORAGE",
    "GB_STORAGE",
    "AE_STORAGE",
    "AE_STORAGE_PROCESSING",
];

/// A whole simulated organization.
#[derive(Clone, Debug, PartialEq)]
pub struct Org {
    /// The organization's name (the snapshot's `org`).
    pub organization: String,
    /// The organization's own email domains (for `project-user-external-domain`'s
    /// `allowed_domains`; the demo sets them so its audit can show that rule).
    pub email_domains: Vec<String>,
    /// Every user the organization knows, also those in no project any more (their keys
    /// still name them as owner).
    pub users: BTreeMap<UserId, OrgUser>,
    /// Every group the organization knows (a project can only add a known group).
    pub groups: BTreeMap<GroupId, OrgGroup>,
    /// Projects in creation order (the order lists page through).
    pub projects: Vec<Project>,
    /// Users who left the organization: not served by `/organization/users`, but still
    /// named as the owner of the keys they made.
    pub former_users: BTreeMap<UserId, OrgUser>,
    /// The organization's custom roles (the predefined ones are served besides them).
    pub roles: Vec<Role>,
    /// Invitations, in creation order.
    pub invites: Vec<Invite>,
    /// Admin API keys, in creation order.
    pub admin_api_keys: Vec<AdminApiKey>,
    /// The organization's data retention type (one of [`ORG_RETENTION_TYPES`]).
    pub data_retention: String,
    /// The organization's hard spend limit; `None` = not set (the read answers 404).
    pub spend_limit: Option<SpendLimit>,
    /// The organization's spend alerts.
    pub spend_alerts: Vec<SpendAlert>,
    /// Certificates uploaded to the organization (`active` at the organization level).
    pub certificates: Vec<Certificate>,
    /// Misbehaviours of the live API the simulator can reproduce.
    pub quirks: Quirks,
    /// The daily costs `GET /organization/costs` serves.
    pub costs: super::costs::Costs,
    /// The audit log `GET /organization/audit_logs` serves; every accepted write adds to it.
    pub audit_log: super::audit_log::AuditLog,
    /// Feeds the ids of objects created through the API.
    pub(crate) serial: u64,
}

/// A user of the organization directory.
#[derive(Clone, Debug, PartialEq)]
pub struct OrgUser {
    /// `user-…`
    pub id: UserId,
    /// Display name; some users have none.
    pub name: Option<String>,
    /// Email address; some users have none.
    pub email: Option<String>,
    /// When the user was created (Unix seconds).
    pub created_at: i64,
    /// The organization role: `owner` or `reader`.
    pub role: String,
    /// When the user joined the organization.
    pub added_at: i64,
    /// Whether the user is a service account.
    pub is_service_account: bool,
    /// Whether the user is managed through SCIM.
    pub is_scim_managed: bool,
    /// The last use of any of the user's API keys.
    pub api_key_last_used_at: Option<i64>,
    /// Whether the account is enabled.
    pub enabled: bool,
    /// Whether the account is banned.
    pub banned: bool,
    /// When it was banned.
    pub banned_at: Option<i64>,
    /// Organization roles assigned to the user (ids of custom or predefined roles).
    pub roles: Vec<RoleId>,
    /// Unmodelled fields, served as-is.
    pub extra: Map<String, Value>,
}

impl OrgUser {
    /// A reader of the organization with the API's defaults, added when created.
    pub fn new(
        id: UserId,
        name: Option<String>,
        email: Option<String>,
        created_at: i64,
    ) -> OrgUser {
        OrgUser {
            id,
            name,
            email,
            created_at,
            role: "reader".into(),
            added_at: created_at,
            is_service_account: false,
            is_scim_managed: false,
            api_key_last_used_at: None,
            enabled: true,
            banned: false,
            banned_at: None,
            roles: Vec::new(),
            extra: Map::new(),
        }
    }
}

/// A group of the organization directory.
#[derive(Clone, Debug, PartialEq)]
pub struct OrgGroup {
    /// `group_…`
    pub id: GroupId,
    /// Display name.
    pub name: String,
    /// `group` or `tenant_group`.
    pub group_type: String,
    /// When the group was created.
    pub created_at: i64,
    /// Whether the group is managed through SCIM.
    pub is_scim_managed: bool,
    /// Members, in the order they were added.
    pub users: Vec<UserId>,
    /// Organization roles assigned to the group.
    pub roles: Vec<RoleId>,
}

impl OrgGroup {
    /// A group with no members and no roles.
    pub fn new(id: GroupId, name: String, group_type: String, created_at: i64) -> OrgGroup {
        OrgGroup {
            id,
            name,
            group_type,
            created_at,
            is_scim_managed: false,
            users: Vec::new(),
            roles: Vec::new(),
        }
    }
}

/// One project and everything under it.
#[derive(Clone, Debug, PartialEq)]
pub struct Project {
    /// `proj_…`
    pub id: ProjectId,
    /// Name; may be null.
    pub name: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// `active` or `archived`.
    pub status: String,
    /// When it was archived.
    pub archived_at: Option<i64>,
    /// External key id (customer-managed encryption key).
    pub external_key_id: Option<String>,
    /// Residency, when set.
    pub residency: Option<String>,
    /// Project members.
    pub users: Vec<ProjectUser>,
    /// Service accounts.
    pub service_accounts: Vec<ServiceAccount>,
    /// API keys.
    pub api_keys: Vec<ApiKey>,
    /// Per-model rate limits.
    pub rate_limits: Vec<RateLimit>,
    /// Model allow/deny list; `None` = no policy (served as `deny_list` with no ids).
    pub model_permissions: Option<ModelPermissions>,
    /// Hosted tools enabled, in the order of [`HOSTED_TOOLS`].
    pub hosted_tools: [bool; 5],
    /// Groups with access to the project.
    pub groups: Vec<ProjectGroup>,
    /// Custom project roles.
    pub roles: Vec<Role>,
    /// Data retention type (one of [`RETENTION_TYPES`]).
    pub data_retention: String,
    /// Spend alerts.
    pub spend_alerts: Vec<SpendAlert>,
    /// Certificates known to the project (active or not).
    pub certificates: Vec<Certificate>,
    /// The project's hard spend limit; `None` = not set (the read answers 404).
    pub spend_limit: Option<SpendLimit>,
    /// Fields the simulator does not model, served as-is.
    pub extra: Map<String, Value>,
}

/// A project member.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectUser {
    /// The user's id.
    pub id: UserId,
    /// Name as the project list shows it.
    pub name: Option<String>,
    /// Email as the project list shows it.
    pub email: Option<String>,
    /// `owner` or `member`.
    pub role: String,
    /// When the user was added to the project.
    pub added_at: i64,
    /// Custom project roles assigned to the user.
    pub roles: Vec<RoleId>,
    /// Unmodelled fields.
    pub extra: Map<String, Value>,
}

/// A project service account.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceAccount {
    /// `svc_acct_…`
    pub id: ServiceAccountId,
    /// Name.
    pub name: String,
    /// `owner`, `member` or `none`.
    pub role: String,
    /// Creation time.
    pub created_at: i64,
    /// Unmodelled fields.
    pub extra: Map<String, Value>,
}

/// Who owns an API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOwner {
    /// A user (maybe no longer in the project).
    User(UserId),
    /// A service account of the project.
    ServiceAccount(ServiceAccountId),
}

/// A project API key.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKey {
    /// `key_…`
    pub id: ApiKeyId,
    /// Name.
    pub name: String,
    /// `sk-…abcd`
    pub redacted_value: String,
    /// Creation time.
    pub created_at: i64,
    /// Last use; `None` = never used.
    pub last_used_at: Option<i64>,
    /// Owner.
    pub owner: KeyOwner,
    /// Forced `active`/`inactive`; `None` = computed from the owner's membership.
    pub owner_project_access: Option<String>,
    /// Unmodelled fields.
    pub extra: Map<String, Value>,
}

/// A per-model rate limit.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit {
    /// `rl-…`
    pub id: RateLimitId,
    /// The model.
    pub model: String,
    /// Requests per minute.
    pub max_requests_per_1_minute: i64,
    /// Tokens per minute.
    pub max_tokens_per_1_minute: i64,
    /// Optional limits, by field name (only present for relevant models).
    pub optional: BTreeMap<&'static str, i64>,
    /// Unmodelled fields.
    pub extra: Map<String, Value>,
}

/// The optional integer fields of a rate limit, in the order the API prints them.
pub const RATE_LIMIT_OPTIONAL: [&str; 4] = [
    "max_images_per_1_minute",
    "max_audio_megabytes_per_1_minute",
    "max_requests_per_1_day",
    "batch_1_day_max_input_tokens",
];

/// A model allow or deny list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPermissions {
    /// `allow_list` or `deny_list`.
    pub mode: String,
    /// The models listed.
    pub model_ids: Vec<String>,
}

/// A group's access to a project.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectGroup {
    /// `group_…`
    pub group_id: GroupId,
    /// Group name.
    pub group_name: String,
    /// `group` or `tenant_group`.
    pub group_type: String,
    /// When the group was given access.
    pub created_at: i64,
    /// Custom project roles assigned to the group.
    pub roles: Vec<RoleId>,
    /// Unmodelled fields.
    pub extra: Map<String, Value>,
}

/// A project role.
#[derive(Clone, Debug, PartialEq)]
pub struct Role {
    /// `role_…`
    pub id: RoleId,
    /// Unique name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Permissions granted.
    pub permissions: Vec<String>,
    /// `api.project` for project roles.
    pub resource_type: String,
    /// Whether OpenAI manages it.
    pub predefined_role: bool,
    /// Creation time.
    pub created_at: Option<i64>,
    /// Last update.
    pub updated_at: Option<i64>,
    /// Who created it.
    pub created_by: Option<String>,
    /// Unmodelled fields.
    pub extra: Map<String, Value>,
}

/// A project spend alert.
#[derive(Clone, Debug, PartialEq)]
pub struct SpendAlert {
    /// Its id.
    pub id: SpendAlertId,
    /// Threshold in cents.
    pub threshold_amount: i64,
    /// `USD`.
    pub currency: String,
    /// `month`.
    pub interval: String,
    /// `email`.
    pub channel_type: String,
    /// Who gets the email (may be empty).
    pub recipients: Vec<String>,
    /// Optional subject prefix.
    pub subject_prefix: Option<String>,
    /// Unmodelled fields.
    pub extra: Map<String, Value>,
}

/// A certificate as a project sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Certificate {
    /// `cert_…`
    pub id: CertificateId,
    /// Name; may be null.
    pub name: Option<String>,
    /// Upload time.
    pub created_at: i64,
    /// Active for this project.
    pub active: bool,
    /// Start of validity.
    pub valid_at: i64,
    /// End of validity.
    pub expires_at: i64,
    /// Unmodelled fields.
    pub extra: Map<String, Value>,
}

impl Project {
    /// A new empty active project with the API's defaults.
    pub fn new(id: ProjectId, name: Option<String>, created_at: i64) -> Project {
        Project {
            id,
            name,
            created_at,
            status: "active".into(),
            archived_at: None,
            external_key_id: None,
            residency: None,
            users: Vec::new(),
            service_accounts: Vec::new(),
            api_keys: Vec::new(),
            rate_limits: Vec::new(),
            model_permissions: None,
            hosted_tools: [true; 5],
            groups: Vec::new(),
            roles: Vec::new(),
            data_retention: "organization_default".into(),
            spend_alerts: Vec::new(),
            certificates: Vec::new(),
            spend_limit: None,
            extra: Map::new(),
        }
    }

    /// Whether the project is archived.
    pub fn is_archived(&self) -> bool {
        self.status == "archived"
    }

    /// The member with this id.
    pub fn user(&self, id: &str) -> Option<&ProjectUser> {
        self.users.iter().find(|u| u.id.as_str() == id)
    }

    /// The service account with this id.
    pub fn service_account(&self, id: &str) -> Option<&ServiceAccount> {
        self.service_accounts.iter().find(|s| s.id.as_str() == id)
    }

    /// The custom role with this id.
    pub fn role(&self, id: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.id.as_str() == id)
    }

    /// The group with this id.
    pub fn group(&self, id: &str) -> Option<&ProjectGroup> {
        self.groups.iter().find(|g| g.group_id.as_str() == id)
    }

    /// Whether a hosted tool (by API name) is enabled.
    pub fn tool_enabled(&self, tool: &str) -> Option<bool> {
        HOSTED_TOOLS
            .iter()
            .position(|t| *t == tool)
            .map(|i| self.hosted_tools[i])
    }

    /// Whether an API key's owner still has access to the project, as the API reports it.
    pub fn owner_access<'a>(&'a self, key: &'a ApiKey) -> &'a str {
        if let Some(forced) = &key.owner_project_access {
            return forced;
        }
        let member = match &key.owner {
            KeyOwner::User(id) => self.user(id.as_str()).is_some(),
            KeyOwner::ServiceAccount(id) => self.service_account(id.as_str()).is_some(),
        };
        if member { "active" } else { "inactive" }
    }
}

impl Org {
    /// An organization with nothing in it.
    pub fn empty(organization: &str) -> Org {
        Org {
            organization: organization.to_owned(),
            email_domains: Vec::new(),
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            projects: Vec::new(),
            former_users: BTreeMap::new(),
            roles: Vec::new(),
            invites: Vec::new(),
            admin_api_keys: Vec::new(),
            data_retention: "modified_abuse_monitoring".into(),
            spend_limit: None,
            spend_alerts: Vec::new(),
            certificates: Vec::new(),
            quirks: Quirks::default(),
            costs: super::costs::Costs::default(),
            audit_log: super::audit_log::AuditLog::default(),
            serial: 0,
        }
    }

    /// Parses the JSON file format of docs/sim-org-format.md; relative times count from `now`.
    pub fn from_json_str(text: &str, now: i64) -> Result<Org, SimError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            // serde_json's text ends with the position, which `path` already gives.
            let shown = e.to_string();
            let what = shown
                .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
                .unwrap_or(&shown);
            SimError::Org {
                path: format!("line {} column {}", e.line(), e.column()),
                message: format!("invalid JSON: {what}"),
            }
        })?;
        parse_org(&value, now)
    }

    /// Reads an organization file.
    pub fn load(path: &Path, now: i64) -> Result<Org, SimError> {
        let read_error = |source| SimError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = crate::size::read_file_bounded(path, MAX_ORG_FILE).map_err(read_error)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not UTF-8 text",
            ))
        })?;
        Org::from_json_str(&text, now).map_err(|e| SimError::InFile {
            file: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// The curated demo organization (`sim/demo-org.json`) as of the start of the UTC
    /// day of `now`, its audit log as of `now`: re-running the demo the same day serves
    /// the same objects, so it records no new versions. Only `last_used_at` offsets (and
    /// the admin key made six hours before the day began) are shorter than a day.
    pub fn demo_today(now: i64) -> Org {
        let mut org = Org::demo(now - now.rem_euclid(86_400));
        // Its audit log counts from the real now: its events happened hours ago, not hours
        // before midnight, so a rule over the last day sees them at any time of day. They
        // keep their ids, and the store keeps an event once by id.
        org.audit_log = Org::demo(now).audit_log;
        org
    }

    /// The curated demo organization (`sim/demo-org.json`).
    pub fn demo(now: i64) -> Org {
        match Org::from_json_str(DEMO_ORG, now) {
            Ok(org) => org,
            // The file is part of the binary and a unit test parses it: this cannot fail
            // in a build that passed its tests.
            Err(e) => panic!("sim/demo-org.json is invalid: {e}"),
        }
    }

    /// The project with this id.
    pub fn project(&self, id: &ProjectId) -> Option<&Project> {
        self.projects.iter().find(|p| &p.id == id)
    }

    /// The project with this id, to change it.
    pub fn project_mut(&mut self, id: &ProjectId) -> Option<&mut Project> {
        self.projects.iter_mut().find(|p| &p.id == id)
    }

    /// The position of a project in the list.
    pub(crate) fn project_index(&self, id: &str) -> Option<usize> {
        self.projects.iter().position(|p| p.id.as_str() == id)
    }

    /// A fresh id for an object created through the API: `prefix` + 24 hex digits,
    /// deterministic for a given org and sequence of writes.
    pub fn next_id(&mut self, prefix: &str) -> String {
        self.serial += 1;
        let mut h = splitmix(self.serial ^ 0x0005_eed0_f0a9_u64);
        let a = h;
        h = splitmix(h);
        format!("{prefix}{:016x}{:08x}", a, h >> 32)
    }

    /// Every object count, for logs: (projects, users, keys).
    pub fn summary(&self) -> String {
        let users: usize = self.projects.iter().map(|p| p.users.len()).sum();
        let keys: usize = self.projects.iter().map(|p| p.api_keys.len()).sum();
        format!(
            "{} projects, {} project users, {} API keys",
            self.projects.len(),
            users,
            keys
        )
    }
}

/// One step of SplitMix64: a tiny, stable mixing function (its output never changes with
/// a dependency upgrade, which keeps generated orgs and ids reproducible).
pub(crate) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A time field: Unix seconds, or "now" / "-200d" / "+30d" / "-12h" / "-30m" / "-45s"
/// relative to `now`.
pub fn parse_time(value: &Value, now: i64) -> Result<i64, String> {
    let t = match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("expected whole Unix seconds, got {n}"))?,
        Value::String(s) => parse_relative(s, now)?,
        other => {
            return Err(format!(
                "expected Unix seconds or a relative time like \"-30d\", got {other}"
            ));
        }
    };
    // Every time is rendered as a date and subtracted from others (a project's age);
    // outside the years 1..9999 neither works, and the arithmetic could overflow.
    if !(MIN_TIME..=MAX_TIME).contains(&t) {
        return Err(format!(
            "time {value} is out of range: it must fall between the years 1 and 9999"
        ));
    }
    Ok(t)
}

/// 0001-01-01T00:00:00Z, the earliest time an organization file may hold.
const MIN_TIME: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z, the latest.
const MAX_TIME: i64 = 253_402_300_799;

fn parse_relative(s: &str, now: i64) -> Result<i64, String> {
    let t = s.trim();
    if t == "now" {
        return Ok(now);
    }
    let bad = || {
        format!(
            "bad time {s:?}: expected \"now\" or a signed amount like \"-30d\", \"+12h\", \"-5m\", \"-45s\""
        )
    };
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => return Err(bad()),
    };
    let unit = rest.chars().last().ok_or_else(bad)?;
    let amount: i64 = rest[..rest.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let secs = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad()),
    };
    // An amount like "-99999999999999d" must be an error, not an overflow.
    amount
        .checked_mul(sign * secs)
        .and_then(|delta| now.checked_add(delta))
        .ok_or_else(|| format!("bad time {s:?}: too far from now"))
}

/// Keys every rendered object sets itself, whatever the file says.
const RENDERED: [&str; 3] = ["object", "project_id", "owner_project_access"];

/// Reads one JSON object of the file, remembering which keys it used so the rest can be
/// kept as unmodelled fields, and naming the JSON path in every error.
pub(super) struct Reader<'a> {
    path: String,
    pub(super) map: &'a Map<String, Value>,
    used: Vec<&'static str>,
    pub(super) now: i64,
}

pub(super) type R<T> = Result<T, SimError>;

impl<'a> Reader<'a> {
    pub(super) fn new(value: &'a Value, path: String, now: i64) -> R<Reader<'a>> {
        match value {
            Value::Object(map) => Ok(Reader {
                path,
                map,
                used: Vec::new(),
                now,
            }),
            other => Err(SimError::Org {
                path,
                message: format!("expected an object, got {}", kind(other)),
            }),
        }
    }

    pub(super) fn err(&self, key: &str, message: impl Into<String>) -> SimError {
        SimError::Org {
            path: self.child(key),
            message: message.into(),
        }
    }

    pub(super) fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key`, `None` when absent or null.
    pub(super) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(super) fn opt_str(&mut self, key: &'static str) -> R<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(key, format!("expected a string, got {}", kind(other)))),
        }
    }

    pub(super) fn req_str(&mut self, key: &'static str) -> R<String> {
        self.opt_str(key)?
            .ok_or_else(|| self.err(key, "missing (required)"))
    }

    pub(super) fn opt_enum(&mut self, key: &'static str, allowed: &[&str]) -> R<Option<String>> {
        let v = self.opt_str(key)?;
        if let Some(s) = &v
            && !allowed.contains(&s.as_str())
        {
            return Err(self.err(
                key,
                format!(
                    "unknown value {s:?} (expected one of {})",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(v)
    }

    pub(super) fn opt_time(&mut self, key: &'static str) -> R<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_time(v, self.now)
                .map(Some)
                .map_err(|m| self.err(key, m)),
        }
    }

    pub(super) fn opt_i64(&mut self, key: &'static str) -> R<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected an integer, got {v}"))),
        }
    }

    pub(super) fn opt_bool(&mut self, key: &'static str) -> R<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(key, format!("expected true or false, got {other}"))),
        }
    }

    pub(super) fn array(&mut self, key: &'static str) -> R<&'a [Value]> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.err(key, format!("expected an array, got {}", kind(other)))),
        }
    }

    pub(super) fn str_array(&mut self, key: &'static str) -> R<Vec<String>> {
        let items = self.array(key)?;
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(SimError::Org {
                    path: format!("{}[{i}]", self.child(key)),
                    message: format!("expected a string, got {}", kind(other)),
                }),
            })
            .collect()
    }

    pub(super) fn item_path(&self, key: &str, i: usize) -> String {
        format!("{}[{i}]", self.child(key))
    }

    /// The fields this object models, in the order they are read, for an error message.
    pub(super) fn fields(&self) -> String {
        let mut seen: Vec<&str> = Vec::new();
        for key in &self.used {
            if !seen.contains(key) {
                seen.push(key);
            }
        }
        seen.join(", ")
    }

    /// Marks `key` as read by a later pass over the raw file (costs), so it is neither kept
    /// as an unmodelled field nor taken for a misspelling.
    pub(super) fn known(&mut self, key: &'static str) {
        self.used.push(key);
    }

    /// The keys not read: kept and served as-is. A key one typo away from a field this
    /// object models (`service_acounts`, `Role`) is refused instead: kept, it would quietly
    /// leave the field empty, and a rule fixture built on it would test nothing.
    pub(super) fn extra(&self) -> R<Map<String, Value>> {
        let mut extra = Map::new();
        for (k, v) in self.map {
            // Keys the renderer always writes itself would otherwise appear twice.
            if self.used.contains(&k.as_str()) || RENDERED.contains(&k.as_str()) {
                continue;
            }
            if let Some(meant) = self.used.iter().find(|used| looks_misspelt(k, used)) {
                return Err(self.err(
                    k,
                    format!(
                        "unknown field; did you mean `{meant}`? (a field the simulator does \
                         not model is served as-is, but this one looks like a misspelling)"
                    ),
                ));
            }
            extra.insert(k.clone(), v.clone());
        }
        Ok(extra)
    }
}

/// Whether `key` looks like a misspelling of the modelled field `field`: the same but for
/// case, `_` and `-`, or (both at least four characters long) one letter added, dropped,
/// changed or two swapped. Short keys and plurals are spared: `id`/`ids`, `role`/`roles`
/// may both be real fields.
fn looks_misspelt(key: &str, field: &str) -> bool {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    if key != field && squash(key) == squash(field) {
        return true;
    }
    // A plural beside a singular (`roles` by `role`) may be a field the API adds tomorrow.
    let plural = |a: &str, b: &str| a.strip_suffix('s') == Some(b);
    key.len().min(field.len()) >= 4
        && !plural(key, field)
        && !plural(field, key)
        && one_edit_apart(key.as_bytes(), field.as_bytes())
}

/// One insertion, deletion, substitution or swap of neighbours apart (and not equal).
fn one_edit_apart(a: &[u8], b: &[u8]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    match long.len() - short.len() {
        0 => {
            if prefix == short.len() {
                return false;
            }
            let (sa, sb) = (&short[prefix + 1..], &long[prefix + 1..]);
            sa == sb
                || (prefix + 1 < short.len()
                    && short[prefix] == long[prefix + 1]
                    && short[prefix + 1] == long[prefix]
                    && short[prefix + 2..] == long[prefix + 2..])
        }
        1 => short[prefix..] == long[prefix + 1..],
        _ => false,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_org(value: &Value, now: i64) -> R<Org> {
    let mut r = Reader::new(value, String::new(), now)?;
    let mut org = Org::empty(
        &r.opt_str("organization")?
            .unwrap_or_else(|| "default".into()),
    );
    org.email_domains = r.str_array("email_domains")?;
    // Roles first: users and groups name them.
    parse_org_roles(&mut r, &mut org, now)?;
    for key in ["users", "former_users"] {
        for (i, v) in r.array(key)?.iter().enumerate() {
            let mut u = Reader::new(v, r.item_path(key, i), now)?;
            let user = parse_org_user(&mut u, &org)?;
            if org.user_record(&user.id).is_some() {
                return Err(u.err("id", format!("duplicate user {:?}", user.id.as_str())));
            }
            if key == "users" {
                org.users.insert(user.id.clone(), user);
            } else {
                org.former_users.insert(user.id.clone(), user);
            }
        }
    }
    // Group members are checked once the projects have added their users.
    let mut members = Vec::new();
    for (i, v) in r.array("groups")?.iter().enumerate() {
        let mut g = Reader::new(v, r.item_path("groups", i), now)?;
        let id = GroupId(g.req_str("id")?);
        if org.groups.contains_key(&id) {
            return Err(g.err("id", format!("duplicate group {:?}", id.as_str())));
        }
        let mut group = OrgGroup::new(
            id.clone(),
            g.req_str("name")?,
            g.opt_enum("group_type", &["group", "tenant_group"])?
                .unwrap_or_else(|| "group".into()),
            g.opt_time("created_at")?.unwrap_or(now),
        );
        group.is_scim_managed = g.opt_bool("is_scim_managed")?.unwrap_or(false);
        group.roles = check_org_role_ids(&org, &mut g)?;
        members.push((id.clone(), g.child("users"), g.str_array("users")?));
        org.groups.insert(id, group);
    }
    for (i, v) in r.array("projects")?.iter().enumerate() {
        let project = parse_project(&mut org, v, r.item_path("projects", i), now)?;
        if org.project(&project.id).is_some() {
            return Err(SimError::Org {
                path: format!("projects[{i}].id"),
                message: format!("duplicate project {:?}", project.id.as_str()),
            });
        }
        org.projects.push(project);
    }
    for (gid, path, ids) in members {
        for (j, uid) in ids.into_iter().enumerate() {
            let uid = UserId(uid);
            if !org.users.contains_key(&uid) {
                return Err(SimError::Org {
                    path: format!("{path}[{j}]"),
                    message: format!("unknown user {:?}", uid.as_str()),
                });
            }
            if let Some(g) = org.groups.get_mut(&gid) {
                if g.users.contains(&uid) {
                    return Err(SimError::Org {
                        path: format!("{path}[{j}]"),
                        message: format!("user {:?} listed twice", uid.as_str()),
                    });
                }
                g.users.push(uid);
            }
        }
    }
    fill_user_times(&mut org, now);
    parse_org_settings(&mut r, &mut org, now)?;
    super::audit_log::parse_audit_log(&mut r, &mut org)?;
    r.known("costs");
    // Nothing serves a top-level field the simulator does not model, so one is a mistake.
    if let Some(k) = r.extra()?.keys().next() {
        return Err(r.err(
            k,
            format!("unknown field (the top level has {})", r.fields()),
        ));
    }
    super::costs::parse(value, now, &mut org)?;
    Ok(org)
}

fn fill_user_times(org: &mut Org, now: i64) {
    let projects = &org.projects;
    for user in org.users.values_mut().chain(org.former_users.values_mut()) {
        if user.created_at == i64::MAX {
            user.created_at = projects
                .iter()
                .filter_map(|p| p.user(user.id.as_str()).map(|m| m.added_at))
                .min()
                .unwrap_or(now);
        }
        if user.added_at == i64::MAX {
            user.added_at = user.created_at;
        }
    }
}

fn parse_project(org: &mut Org, v: &Value, path: String, now: i64) -> R<Project> {
    let mut r = Reader::new(v, path, now)?;
    let id = ProjectId(r.req_str("id")?);
    let created_at = r.opt_time("created_at")?.unwrap_or(now);
    let mut p = Project::new(id, r.opt_str("name")?, created_at);
    p.status = r
        .opt_enum("status", &["active", "archived"])?
        .unwrap_or_else(|| "active".into());
    p.archived_at = r.opt_time("archived_at")?;
    if p.is_archived() && p.archived_at.is_none() {
        // No date given: archived half-way between creation and now.
        // Saturating: `created_at` is bounded, but a stray `now` must not panic either.
        p.archived_at = Some(created_at.saturating_add(now.saturating_sub(created_at).max(0) / 2));
    }
    p.external_key_id = r.opt_str("external_key_id")?;
    p.residency = r.opt_enum("residency", &RESIDENCIES)?;

    // Roles first: users and groups refer to them.
    for (i, v) in r.array("roles")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("roles", i), now)?;
        p.roles.push(parse_role(&mut x, created_at, "api.project")?);
    }
    // An archived project keeps its users: the API hides them (400) but they still own keys.
    for (i, v) in r.array("users")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("users", i), now)?;
        let user = parse_project_user(&mut x, org, &p, created_at)?;
        p.users.push(user);
    }
    for (i, v) in r.array("service_accounts")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("service_accounts", i), now)?;
        p.service_accounts
            .push(parse_service_account(&mut x, created_at)?);
    }
    // After service accounts: a key's owner must exist.
    for (i, v) in r.array("api_keys")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("api_keys", i), now)?;
        let key = parse_api_key(&mut x, org, &p, created_at)?;
        p.api_keys.push(key);
    }
    for (i, v) in r.array("rate_limits")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("rate_limits", i), now)?;
        p.rate_limits.push(parse_rate_limit(&mut x)?);
    }
    if let Some(v) = r.get("model_permissions") {
        let mut x = Reader::new(v, r.child("model_permissions"), now)?;
        p.model_permissions = Some(parse_model_permissions(&mut x)?);
    }
    if let Some(v) = r.get("hosted_tool_permissions") {
        let x = Reader::new(v, r.child("hosted_tool_permissions"), now)?;
        parse_hosted_tools(&x, &mut p)?;
    }
    for (i, v) in r.array("groups")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("groups", i), now)?;
        let group = parse_project_group(&mut x, org, &p, created_at)?;
        p.groups.push(group);
    }
    if let Some(t) = r.opt_enum("data_retention", &RETENTION_TYPES)? {
        p.data_retention = t;
    }
    for (i, v) in r.array("spend_alerts")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("spend_alerts", i), now)?;
        p.spend_alerts.push(parse_spend_alert(&mut x)?);
    }
    for (i, v) in r.array("certificates")?.iter().enumerate() {
        let mut x = Reader::new(v, r.item_path("certificates", i), now)?;
        p.certificates.push(parse_certificate(&mut x, created_at)?);
    }
    if let Some(v) = r.get("spend_limit") {
        let mut x = Reader::new(v, r.child("spend_limit"), now)?;
        p.spend_limit = Some(parse_spend_limit(&mut x)?);
    }
    r.known("costs");
    p.extra = r.extra()?;
    Ok(p)
}

/// One of a project's `roles`; `updated_at` defaults to `created_at`, which defaults to
/// the project's.
pub(super) fn parse_role(x: &mut Reader<'_>, created_at: i64, resource_type: &str) -> R<Role> {
    let mut role = Role {
        id: RoleId(x.req_str("id")?),
        name: x.req_str("name")?,
        description: x.opt_str("description")?,
        permissions: x.str_array("permissions")?,
        resource_type: x
            .opt_str("resource_type")?
            .unwrap_or_else(|| resource_type.to_owned()),
        predefined_role: x.opt_bool("predefined_role")?.unwrap_or(false),
        created_at: Some(x.opt_time("created_at")?.unwrap_or(created_at)),
        updated_at: x.opt_time("updated_at")?,
        created_by: x.opt_str("created_by")?,
        extra: x.extra()?,
    };
    role.updated_at = role.updated_at.or(role.created_at);
    Ok(role)
}

/// A member's or group's `roles`: ids that must name roles of the project.
fn role_ids(x: &mut Reader<'_>, p: &Project) -> R<Vec<RoleId>> {
    let ids = x.str_array("roles")?;
    for (j, id) in ids.iter().enumerate() {
        if p.role(id).is_none() {
            return Err(SimError::Org {
                path: format!("{}[{j}]", x.child("roles")),
                message: format!("unknown role {id:?} (not in this project's roles)"),
            });
        }
    }
    Ok(ids.into_iter().map(RoleId).collect())
}

/// One of a project's `users`; a user first seen here joins the organization's
/// directory, and a name or email left out comes from the directory.
fn parse_project_user(
    x: &mut Reader<'_>,
    org: &mut Org,
    p: &Project,
    created_at: i64,
) -> R<ProjectUser> {
    let uid = UserId(x.req_str("id")?);
    let given_name = x.has("name");
    let given_email = x.has("email");
    let name = x.opt_str("name")?;
    let email = x.opt_str("email")?;
    if org.former_users.contains_key(&uid) {
        return Err(x.err(
            "id",
            format!(
                "user {:?} left the organization (former_users)",
                uid.as_str()
            ),
        ));
    }
    // Created and added when first seen: filled once every project is read.
    let dir = org
        .users
        .entry(uid.clone())
        .or_insert_with(|| OrgUser::new(uid.clone(), name.clone(), email.clone(), i64::MAX));
    let user = ProjectUser {
        id: uid.clone(),
        name: if given_name { name } else { dir.name.clone() },
        email: if given_email {
            email
        } else {
            dir.email.clone()
        },
        role: x
            .opt_enum("role", &["owner", "member"])?
            .unwrap_or_else(|| "member".into()),
        added_at: x.opt_time("added_at")?.unwrap_or(created_at),
        roles: role_ids(x, p)?,
        extra: x.extra()?,
    };
    if p.user(uid.as_str()).is_some() {
        return Err(x.err("id", format!("user {:?} listed twice", uid.as_str())));
    }
    Ok(user)
}

/// One of a project's `service_accounts`.
fn parse_service_account(x: &mut Reader<'_>, created_at: i64) -> R<ServiceAccount> {
    Ok(ServiceAccount {
        id: ServiceAccountId(x.req_str("id")?),
        name: x.req_str("name")?,
        role: x
            .opt_enum("role", &["owner", "member", "none"])?
            .unwrap_or_else(|| "member".into()),
        created_at: x.opt_time("created_at")?.unwrap_or(created_at),
        extra: x.extra()?,
    })
}

/// One of a project's `api_keys`; its owner is a directory user or one of the project's
/// service accounts.
fn parse_api_key(x: &mut Reader<'_>, org: &Org, p: &Project, created_at: i64) -> R<ApiKey> {
    let id = ApiKeyId(x.req_str("id")?);
    let owner_v = x
        .get("owner")
        .ok_or_else(|| x.err("owner", "missing (required)"))?;
    let mut o = Reader::new(owner_v, x.child("owner"), x.now)?;
    let otype = o
        .opt_enum("type", &["user", "service_account"])?
        .ok_or_else(|| o.err("type", "missing (required)"))?;
    let oid = o.req_str("id")?;
    let owner = if otype == "user" {
        if org.user_record(&UserId::from(oid.as_str())).is_none() {
            return Err(o.err("id", format!("unknown user {oid:?}")));
        }
        KeyOwner::User(UserId(oid))
    } else {
        if p.service_account(&oid).is_none() {
            return Err(o.err(
                "id",
                format!("unknown service account {oid:?} (not in this project)"),
            ));
        }
        KeyOwner::ServiceAccount(ServiceAccountId(oid))
    };
    let redacted_default = redacted_value(id.as_str(), &owner);
    let key = ApiKey {
        name: x.opt_str("name")?.unwrap_or_else(|| "Secret key".into()),
        redacted_value: x.opt_str("redacted_value")?.unwrap_or(redacted_default),
        created_at: x.opt_time("created_at")?.unwrap_or(created_at),
        last_used_at: x.opt_time("last_used_at")?,
        owner,
        owner_project_access: x.opt_enum("owner_project_access", &["active", "inactive"])?,
        extra: x.extra()?,
        id,
    };
    Ok(key)
}

/// One of a project's `rate_limits`; the id defaults to `rl-<model>`.
fn parse_rate_limit(x: &mut Reader<'_>) -> R<RateLimit> {
    let model = x.req_str("model")?;
    let id = x.opt_str("id")?.unwrap_or_else(|| format!("rl-{model}"));
    let mut optional = BTreeMap::new();
    for field in RATE_LIMIT_OPTIONAL {
        if let Some(n) = x.opt_i64(field)? {
            optional.insert(field, n);
        }
    }
    Ok(RateLimit {
        id: RateLimitId(id),
        model,
        max_requests_per_1_minute: x.opt_i64("max_requests_per_1_minute")?.unwrap_or(500),
        max_tokens_per_1_minute: x.opt_i64("max_tokens_per_1_minute")?.unwrap_or(30_000),
        optional,
        extra: x.extra()?,
    })
}

/// A project's `model_permissions`.
fn parse_model_permissions(x: &mut Reader<'_>) -> R<ModelPermissions> {
    Ok(ModelPermissions {
        mode: x
            .opt_enum("mode", &["allow_list", "deny_list"])?
            .ok_or_else(|| x.err("mode", "missing (required)"))?,
        model_ids: x.str_array("model_ids")?,
    })
}

/// A project's `hosted_tool_permissions`: each tool as a bool or `{"enabled": bool}`.
fn parse_hosted_tools(x: &Reader<'_>, p: &mut Project) -> R<()> {
    for (k, val) in x.map {
        let Some(i) = HOSTED_TOOLS.iter().position(|t| t == k) else {
            return Err(x.err(
                k,
                format!(
                    "unknown hosted tool (expected one of {})",
                    HOSTED_TOOLS.join(", ")
                ),
            ));
        };
        p.hosted_tools[i] = match val {
            Value::Bool(b) => *b,
            Value::Object(m) => match m.get("enabled") {
                Some(Value::Bool(b)) => *b,
                _ => return Err(x.err(k, "expected true, false or {\"enabled\": bool}")),
            },
            _ => return Err(x.err(k, "expected true, false or {\"enabled\": bool}")),
        };
    }
    Ok(())
}

/// One of a project's `groups`; a group first seen here joins the organization's
/// directory.
fn parse_project_group(
    x: &mut Reader<'_>,
    org: &mut Org,
    p: &Project,
    created_at: i64,
) -> R<ProjectGroup> {
    let gid = GroupId(x.req_str("group_id")?);
    let name = x.opt_str("group_name")?;
    let gtype = x.opt_enum("group_type", &["group", "tenant_group"])?;
    let at = x.opt_time("created_at")?;
    let dir = org.groups.entry(gid.clone()).or_insert_with(|| {
        OrgGroup::new(
            gid.clone(),
            name.clone().unwrap_or_else(|| gid.to_string()),
            gtype.clone().unwrap_or_else(|| "group".into()),
            at.unwrap_or(created_at),
        )
    });
    let group = ProjectGroup {
        group_name: name.unwrap_or_else(|| dir.name.clone()),
        group_type: gtype.unwrap_or_else(|| dir.group_type.clone()),
        created_at: at.unwrap_or(created_at),
        roles: role_ids(x, p)?,
        extra: x.extra()?,
        group_id: gid,
    };
    Ok(group)
}

/// One of a project's `spend_alerts`; the channel defaults to email with no recipients.
pub(super) fn parse_spend_alert(x: &mut Reader<'_>) -> R<SpendAlert> {
    let id = SpendAlertId(x.req_str("id")?);
    let threshold = x
        .opt_i64("threshold_amount")?
        .ok_or_else(|| x.err("threshold_amount", "missing (required)"))?;
    let currency = x
        .opt_enum("currency", &["USD"])?
        .unwrap_or_else(|| "USD".into());
    let interval = x
        .opt_enum("interval", &["month"])?
        .unwrap_or_else(|| "month".into());
    let (channel_type, recipients, subject_prefix) = match x.get("notification_channel") {
        None => ("email".to_owned(), Vec::new(), None),
        Some(c) => {
            let mut c = Reader::new(c, x.child("notification_channel"), x.now)?;
            (
                c.opt_enum("type", &["email"])?
                    .unwrap_or_else(|| "email".into()),
                c.str_array("recipients")?,
                c.opt_str("subject_prefix")?,
            )
        }
    };
    Ok(SpendAlert {
        id,
        threshold_amount: threshold,
        currency,
        interval,
        channel_type,
        recipients,
        subject_prefix,
        extra: x.extra()?,
    })
}

/// One of a project's `certificates`; validity defaults to a year from creation.
pub(super) fn parse_certificate(x: &mut Reader<'_>, created_at: i64) -> R<Certificate> {
    let id = CertificateId(x.req_str("id")?);
    let name = x.opt_str("name")?;
    let cert_created = x.opt_time("created_at")?.unwrap_or(created_at);
    let active = x.opt_bool("active")?.unwrap_or(true);
    let (valid_at, expires_at) = match x.get("certificate_details") {
        None => (cert_created, cert_created + 365 * 86_400),
        Some(d) => {
            let mut d = Reader::new(d, x.child("certificate_details"), x.now)?;
            let valid = d.opt_time("valid_at")?.unwrap_or(cert_created);
            (
                valid,
                d.opt_time("expires_at")?.unwrap_or(valid + 365 * 86_400),
            )
        }
    };
    Ok(Certificate {
        id,
        name,
        created_at: cert_created,
        active,
        valid_at,
        expires_at,
        extra: x.extra()?,
    })
}

/// The redacted form the API shows for a key (`sk-proj-…abcd`).
pub(crate) fn redacted_value(id: &str, owner: &KeyOwner) -> String {
    let tail: String = id
        .chars()
        .rev()
        .filter(char::is_ascii_alphanumeric)
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    match owner {
        KeyOwner::User(_) => format!("sk-proj-****{tail}"),
        KeyOwner::ServiceAccount(_) => format!("sk-svcacct-****{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn relative_times_count_from_load_time() {
        assert_eq!(parse_time(&Value::from("now"), NOW), Ok(NOW));
        assert_eq!(parse_time(&Value::from("-2d"), NOW), Ok(NOW - 2 * 86_400));
        assert_eq!(parse_time(&Value::from("+12h"), NOW), Ok(NOW + 12 * 3_600));
        assert_eq!(parse_time(&Value::from("-30m"), NOW), Ok(NOW - 1_800));
        assert_eq!(parse_time(&Value::from("-45s"), NOW), Ok(NOW - 45));
        assert_eq!(parse_time(&Value::from(1234), NOW), Ok(1234));
        assert!(parse_time(&Value::from("30d"), NOW).is_err());
        assert!(parse_time(&Value::from("-3w"), NOW).is_err());
    }

    #[test]
    fn a_time_too_far_away_is_an_error_naming_its_path_not_an_overflow() {
        for far in [
            "-999999999999999d",
            "+999999999999999d",
            "-99999999999999d",
            "-9223372036854775807s",
        ] {
            let err = parse_time(&Value::from(far), NOW).unwrap_err();
            assert!(
                err.contains("too far") || err.contains("out of range"),
                "{far}: {err}"
            );
        }
        assert!(parse_time(&Value::from(i64::MIN), NOW).is_err());
        // Large but representable still works.
        assert_eq!(
            parse_time(&Value::from("-36500d"), NOW),
            Ok(NOW - 36_500 * 86_400)
        );
        // The archived-project default mid-point used to overflow on such a creation time.
        let err = Org::from_json_str(
            r#"{"projects":[{"id":"p","status":"archived","created_at":"-99999999999999d"}]}"#,
            NOW,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("projects[0].created_at: "), "{err}");
        let err = Org::from_json_str(
            r#"{"projects":[{"id":"p","status":"archived","created_at":-9223372036854775808}]}"#,
            NOW,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("projects[0].created_at: "), "{err}");
    }

    #[test]
    fn errors_name_the_json_path() {
        let text = r#"{"users":[{"id":"user-a"}],"projects":[{"id":"p1"},{"id":"p2",
            "api_keys":[{"id":"k","owner":{"type":"user","id":"user-x"}}]}]}"#;
        let err = Org::from_json_str(text, NOW).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"projects[1].api_keys[0].owner.id: unknown user "user-x""#
        );
        let err = Org::from_json_str(r#"{"projects":[{"id":"p","created_at":"yesterday"}]}"#, NOW)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("projects[0].created_at: bad time"), "{err}");
        let err = Org::from_json_str(
            r#"{"projects":[{"id":"p","data_retention":"forever"}]}"#,
            NOW,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("projects[0].data_retention: unknown value"),
            "{err}"
        );
    }

    #[test]
    fn defaults_fill_missing_optional_fields_and_unknown_fields_are_kept() {
        let text = r#"{"organization":"acme","users":[{"id":"user-a","name":"A","email":"a@x.com"}],
            "projects":[{"id":"p","status":"archived","created_at":"-10d","colour":"blue",
            "users":[{"id":"user-a","role":"owner"}],
            "api_keys":[{"id":"key_1","owner":{"type":"user","id":"user-a"},"scopes":["x"]}]}]}"#;
        let org = Org::from_json_str(text, NOW).unwrap();
        let p = &org.projects[0];
        assert_eq!(p.archived_at, Some(NOW - 5 * 86_400));
        assert_eq!(p.data_retention, "organization_default");
        assert_eq!(p.hosted_tools, [true; 5]);
        assert_eq!(p.users[0].email.as_deref(), Some("a@x.com"));
        assert_eq!(p.extra.get("colour"), Some(&Value::from("blue")));
        assert_eq!(
            p.api_keys[0].extra.get("scopes"),
            Some(&serde_json::json!(["x"]))
        );
        assert_eq!(p.owner_access(&p.api_keys[0]), "active");
        assert_eq!(
            org.users[&UserId::from("user-a")].created_at,
            NOW - 10 * 86_400
        );
    }

    #[test]
    fn a_field_one_typo_from_a_modelled_one_is_refused_with_what_was_meant() {
        for (text, path, meant) in [
            (
                r#"{"projects":[{"id":"p","service_acounts":[{"id":"s","name":"S"}]}]}"#,
                "projects[0].service_acounts",
                "service_accounts",
            ),
            (
                r#"{"users":[{"id":"u"}],"projects":[{"id":"p","users":[{"id":"u","Role":"owner"}]}]}"#,
                "projects[0].users[0].Role",
                "role",
            ),
            (
                r#"{"projects":[{"id":"p","data-retention":"none"}]}"#,
                "projects[0].data-retention",
                "data_retention",
            ),
            (
                r#"{"projects":[{"id":"p","cots":[]}]}"#,
                "projects[0].cots",
                "costs",
            ),
        ] {
            let err = Org::from_json_str(text, NOW).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{path}: unknown field; did you mean `{meant}`?")),
                "{err}"
            );
        }
    }

    #[test]
    fn an_unknown_top_level_field_is_refused_since_nothing_would_serve_it() {
        let err = Org::from_json_str(r#"{"admin_api_key":[{"id":"key_a","owner":"u"}]}"#, NOW)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("admin_api_key: unknown field (the top level has organization, "),
            "{err}"
        );
        assert!(
            err.contains("admin_api_keys") && err.contains("costs"),
            "{err}"
        );
    }

    #[test]
    fn a_field_far_from_every_modelled_one_or_a_plural_of_one_is_kept() {
        let text = r#"{"projects":[{"id":"p","created_by":"u","tags":["x"],
            "service_accounts":[{"id":"s","name":"S","roles":["r"]}]}]}"#;
        let org = Org::from_json_str(text, NOW).unwrap();
        let p = &org.projects[0];
        assert_eq!(p.extra.get("created_by"), Some(&Value::from("u")));
        assert!(p.extra.contains_key("tags"));
        assert!(p.service_accounts[0].extra.contains_key("roles"));
    }

    #[test]
    fn one_edit_apart_counts_one_insertion_deletion_change_or_swap() {
        for (a, b, want) in [
            ("abcd", "abcd", false),
            ("abcd", "abce", true),
            ("abcd", "abdc", true),
            ("abcd", "bacd", true),
            ("abcd", "abc", true),
            ("abcd", "bcd", true),
            ("abcd", "abxcd", true),
            ("abcd", "ab", false),
            ("abcd", "badc", false),
            ("abcd", "axcy", false),
        ] {
            assert_eq!(one_edit_apart(a.as_bytes(), b.as_bytes()), want, "{a} {b}");
            assert_eq!(one_edit_apart(b.as_bytes(), a.as_bytes()), want, "{b} {a}");
        }
    }

    #[test]
    fn the_demo_org_parses() {
        let org = Org::demo(NOW);
        assert!(org.projects.len() >= 6);
    }

    /// The demo exists to show every shipped rule firing, next to a look-alike that must
    /// not fire. These are the rules' definitions (rules/README.md), written plainly.
    #[test]
    fn the_demo_org_triggers_every_rule_and_holds_look_alikes() {
        const DAY: i64 = 86_400;
        let org = Org::demo(NOW);
        assert_eq!(org.email_domains, ["acme-robotics.com"]);
        let p = |id: &str| org.project(&ProjectId::from(id)).unwrap();
        let key = |pid: &str, kid: &str| {
            p(pid)
                .api_keys
                .iter()
                .find(|k| k.id.as_str() == kid)
                .unwrap()
        };
        let stale = |k: &ApiKey| match k.last_used_at {
            Some(t) => t < NOW - 90 * DAY,
            None => k.created_at < NOW - 90 * DAY,
        };
        let old = |k: &ApiKey| k.created_at < NOW - 365 * DAY;
        // api-key-stale: used 95 days ago; never used and 150 days old.
        assert!(stale(key("proj_payments", "key_pay_ada_notebook")));
        assert!(stale(key("proj_research", "key_res_evals")));
        assert!(
            !stale(key("proj_payments", "key_pay_ben_new")),
            "never used but 30 days old"
        );
        assert!(
            !stale(key("proj_payments", "key_pay_chen_reports")),
            "used 89 days ago"
        );
        // api-key-owner-inactive: Jo left Payments; service-account keys stay active.
        let pay = p("proj_payments");
        assert_eq!(
            pay.owner_access(key("proj_payments", "key_pay_jo_batch")),
            "inactive"
        );
        assert_eq!(
            pay.owner_access(key("proj_payments", "key_pay_prod")),
            "active"
        );
        // api-key-old: 400 days; look-alike 364 days.
        assert!(old(key("proj_payments", "key_pay_jo_batch")));
        assert!(!old(key("proj_payments", "key_pay_chen_reports")));
        // project-no-spend-alert / spend-alert-no-recipients.
        assert!(p("proj_support").spend_alerts.is_empty());
        assert!(p("proj_research").spend_alerts[0].recipients.is_empty());
        assert!(!p("proj_payments").spend_alerts[0].recipients.is_empty());
        // project-retention-not-zdr.
        assert_eq!(p("proj_support").data_retention, "organization_default");
        assert_eq!(p("proj_data").data_retention, "modified_abuse_monitoring");
        assert_eq!(p("proj_payments").data_retention, "zero_data_retention");
        // project-hosted-tool-enabled (mcp): on in Support, explicitly off elsewhere.
        assert_eq!(p("proj_support").tool_enabled("mcp"), Some(true));
        assert_eq!(p("proj_payments").tool_enabled("mcp"), Some(false));
        // project-model-permissions-unset: no policy; deny list with no ids. An empty
        // allow list is a policy.
        assert!(p("proj_support").model_permissions.is_none());
        let mobile = p("proj_mobile").model_permissions.as_ref().unwrap();
        assert!(mobile.mode == "deny_list" && mobile.model_ids.is_empty());
        let research = p("proj_research").model_permissions.as_ref().unwrap();
        assert!(research.mode == "allow_list" && research.model_ids.is_empty());
        // project-too-many-owners: 4 in Research; exactly 3 in Support.
        let owners = |id: &str| p(id).users.iter().filter(|u| u.role == "owner").count();
        assert_eq!(owners("proj_research"), 4);
        assert_eq!(owners("proj_support"), 3);
        // service-account-owner.
        assert_eq!(p("proj_support").service_accounts[0].role, "owner");
        assert_eq!(p("proj_payments").service_accounts[0].role, "member");
        // archived-project-active-keys: the legacy chatbot has one; the prototype none.
        assert!(
            p("proj_legacy_chatbot").is_archived() && !p("proj_legacy_chatbot").api_keys.is_empty()
        );
        assert!(
            p("proj_old_prototype").is_archived() && p("proj_old_prototype").api_keys.is_empty()
        );
        // certificate-expiring: in 12 days; expired 3 days ago; look-alike in 45 days.
        let expires = |pid: &str, cid: &str| {
            p(pid)
                .certificates
                .iter()
                .find(|c| c.id.as_str() == cid)
                .unwrap()
                .expires_at
        };
        assert!(expires("proj_support", "cert_sup_gateway") < NOW + 30 * DAY);
        assert!(expires("proj_mobile", "cert_mob_pinning_old") < NOW);
        assert!(expires("proj_payments", "cert_pay_mtls_next") > NOW + 30 * DAY);
        // project-user-external-domain (acme-robotics.com, case-insensitive): Gus; Dana's
        // upper-case address is internal; Ivo has no email and is not judged.
        let email = |pid: &str, uid: &str| p(pid).user(uid).unwrap().email.clone();
        let external = |e: &str| !e.to_lowercase().ends_with("@acme-robotics.com");
        assert!(external(&email("proj_support", "user-gus").unwrap()));
        assert!(!external(&email("proj_payments", "user-dana").unwrap()));
        assert_eq!(email("proj_payments", "user-ivo"), None);
    }

    /// The organization-level problems the demo shows, each next to a look-alike.
    #[test]
    fn the_demo_org_holds_the_organization_level_problems() {
        const DAY: i64 = 86_400;
        let org = Org::demo(NOW);
        assert_eq!(org.owners().count(), 4, "one owner too many");
        let key = |id: &str| {
            org.admin_api_keys
                .iter()
                .find(|k| k.id.as_str() == id)
                .unwrap()
        };
        // Stale: last used 120 days ago; the look-alikes were used this week.
        assert!(key("key_admin_audit_2024").last_used_at < Some(NOW - 90 * DAY));
        assert!(key("key_admin_terraform").last_used_at > Some(NOW - DAY));
        // Without expiry: only the SCIM sync key.
        let endless: Vec<&str> = org
            .admin_api_keys
            .iter()
            .filter(|k| k.expires_at.is_none())
            .map(|k| k.id.as_str())
            .collect();
        assert_eq!(endless, ["key_admin_scim_sync"]);
        // Owned by someone who is no longer an owner.
        let jo = &org.users[&UserId::from("user-jo")];
        assert_eq!(key("key_admin_jo_ops").owner, jo.id);
        assert_eq!(jo.role, "reader");
        // An org user outside acme-robotics.com.
        assert!(org.users.values().any(|u| {
            u.email
                .as_deref()
                .is_some_and(|e| !e.to_lowercase().ends_with("@acme-robotics.com"))
        }));
        // An invite pending for a month; a fresh one; an accepted one.
        let pending: Vec<i64> = org
            .invites
            .iter()
            .filter(|i| i.status == "pending")
            .map(|i| (NOW - i.created_at) / DAY)
            .collect();
        assert_eq!(pending, [31, 2]);
        assert!(org.spend_alerts.is_empty());
        assert!(org.spend_limit.is_some());
        // Not zero data retention: `org-retention-not-zdr` fires, and so does
        // `project-retention-not-zdr` for the project on the organization's default.
        assert_eq!(org.data_retention, "modified_abuse_monitoring");
        let expires = |id: &str| {
            org.certificates
                .iter()
                .find(|c| c.id.as_str() == id)
                .unwrap()
                .expires_at
        };
        assert_eq!(expires("cert_org_gateway"), NOW + 14 * DAY);
        assert!(expires("cert_org_sso") > NOW + 90 * DAY);
        assert!(org.users.values().any(|u| u.is_scim_managed));
        assert!(org.groups.values().all(|g| !g.users.is_empty()));
        let pay = org.project(&ProjectId::from("proj_payments")).unwrap();
        assert_eq!(pay.spend_limit.as_ref().unwrap().enforcement, "enforcing");
    }

    #[test]
    fn org_level_errors_name_the_json_path() {
        let cases = [
            (
                r#"{"users":[{"id":"user-a"}],"admin_api_keys":[{"id":"key_1","owner":"user-x"}]}"#,
                "admin_api_keys[0].owner: unknown user \"user-x\"",
            ),
            (
                r#"{"users":[{"id":"user-a"}],"groups":[{"id":"g","name":"g","users":["user-a","user-b"]}]}"#,
                "groups[0].users[1]: unknown user \"user-b\"",
            ),
            (
                r#"{"users":[{"id":"user-a","roles":["role_nope"]}]}"#,
                "users[0].roles[0]: unknown role \"role_nope\"",
            ),
            (
                r#"{"users":[{"id":"user-a","role":"admin"}]}"#,
                "users[0].role: unknown value \"admin\"",
            ),
            (
                r#"{"users":[{"id":"user-a"}],"former_users":[{"id":"user-a"}]}"#,
                "former_users[0].id: duplicate user \"user-a\"",
            ),
            (
                r#"{"invites":[{"id":"i","email":"a@x","status":"lost"}]}"#,
                "invites[0].status: unknown value \"lost\"",
            ),
            (
                r#"{"invites":[{"id":"i","email":"a@x"},{"id":"i","email":"b@x"}]}"#,
                "invites[1].id: duplicate invite \"i\"",
            ),
            (
                r#"{"invites":[{"id":"i","email":"a@x","projects":[{"id":"proj_nope"}]}]}"#,
                "invites[0].projects[0].id: unknown project \"proj_nope\"",
            ),
            (
                r#"{"data_retention":"none"}"#,
                "data_retention: unknown value \"none\"",
            ),
            (
                r#"{"spend_limit":{"threshold_amount":0}}"#,
                "spend_limit.threshold_amount: must be at least 1",
            ),
            (
                r#"{"spend_limit":{"threshold_amount":5,"enforcement":"on"}}"#,
                "spend_limit.enforcement: unknown value \"on\"",
            ),
            (
                r#"{"projects":[{"id":"p","spend_limit":{"currency":"USD"}}]}"#,
                "projects[0].spend_limit.threshold_amount: missing (required)",
            ),
            (
                r#"{"quirks":{"admin_keys_list_project_key":true}}"#,
                "quirks.admin_keys_list_project_key: unknown quirk",
            ),
            (
                r#"{"roles":[{"id":"role_org_owner","name":"x"}]}"#,
                "roles[0].id: duplicate role \"role_org_owner\"",
            ),
            (
                r#"{"former_users":[{"id":"user-x"}],"projects":[{"id":"p","users":[{"id":"user-x"}]}]}"#,
                "projects[0].users[0].id: user \"user-x\" left the organization",
            ),
        ];
        for (text, want) in cases {
            let err = Org::from_json_str(text, NOW).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text}\n  got {err}\n want {want}");
        }
    }

    #[test]
    fn org_level_defaults_and_a_departed_key_owner() {
        let text = r#"{"users":[{"id":"user-a","created_at":"-10d"}],
            "former_users":[{"id":"user-gone","name":"Gone","role":"owner"}],
            "invites":[{"id":"invite-1","email":"x@y.com","created_at":"-1d"}],
            "admin_api_keys":[{"id":"key_abc123","owner":"user-gone"}],
            "spend_limit":{"threshold_amount":100}}"#;
        let org = Org::from_json_str(text, NOW).unwrap();
        let a = &org.users[&UserId::from("user-a")];
        assert_eq!(
            (a.role.as_str(), a.added_at, a.enabled),
            ("reader", NOW - 10 * 86_400, true)
        );
        let i = &org.invites[0];
        assert_eq!((i.role.as_str(), i.status.as_str()), ("reader", "pending"));
        assert_eq!(i.expires_at, Some(NOW - 86_400 + INVITE_LIFETIME));
        let k = &org.admin_api_keys[0];
        assert_eq!(k.redacted_value, "sk-admin-****c123");
        assert_eq!(
            (k.expires_at, k.last_used_at, k.created_at),
            (None, None, NOW)
        );
        assert!(!org.users.contains_key(&k.owner));
        assert_eq!(
            org.user_record(&k.owner).unwrap().name.as_deref(),
            Some("Gone")
        );
        assert_eq!(org.data_retention, "modified_abuse_monitoring");
        let l = org.spend_limit.as_ref().unwrap();
        assert_eq!(
            (
                l.currency.as_str(),
                l.interval.as_str(),
                l.enforcement.as_str()
            ),
            ("USD", "month", "inactive")
        );
        assert!(!org.quirks.admin_keys_list_project_keys);
    }
}
