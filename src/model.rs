//! The vocabulary every stage shares: typed ids, severities, and the catalog of the
//! Admin API families orgwarden reads (their paths, list envelopes, page limits and
//! the columns of the SQL view each one is stored under).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A stored name that is not one of its enum's: what [`std::str::FromStr`] of a stored
/// enum (and reading one back from SQLite) reports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected {expected})")]
pub struct UnknownName {
    /// What was being read (`severity`, `finding status`, …).
    pub kind: &'static str,
    /// The text found.
    pub value: String,
    /// Every accepted name, for the message.
    pub expected: String,
}

impl From<UnknownName> for String {
    fn from(e: UnknownName) -> String {
        e.to_string()
    }
}

/// Gives an enum its one text mapping: `ALL`, `as_str`, `Display`, `FromStr` and the
/// rusqlite `ToSql`/`FromSql` conversions all come from the one table of names, so no
/// second parser of the same strings can drift from it.
macro_rules! stored_enum {
    ($name:ident, $kind:literal, [$($variant:ident => $text:literal),+ $(,)?]) => {
        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The name stored and printed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::model::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::model::UnknownName {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: $crate::model::expected_names(s, &[$($text),+]),
                    }),
                }
            }
        }

        impl ::rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> ::rusqlite::Result<::rusqlite::types::ToSqlOutput<'_>> {
                Ok(::rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl ::rusqlite::types::FromSql for $name {
            fn column_result(
                value: ::rusqlite::types::ValueRef<'_>,
            ) -> ::rusqlite::types::FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e| ::rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}
pub(crate) use stored_enum;

/// What an error about `found` says was expected: the one name it differs from only in
/// case (`High` for `high`), else every name.
pub fn expected_names(found: &str, names: &[&str]) -> String {
    match names.iter().find(|n| n.eq_ignore_ascii_case(found)) {
        Some(name) => format!("`{name}`, in lower case"),
        None => name_list(names),
    }
}

/// `a, b or c`: the accepted names of a stored enum, for error messages.
pub fn name_list(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Declares a string id newtype, so that an `ApiKeyId` cannot be passed where a
/// `ProjectId` is expected.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as the API spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl ::rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> ::rusqlite::Result<::rusqlite::types::ToSqlOutput<'_>> {
                Ok(::rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl ::rusqlite::types::FromSql for $name {
            fn column_result(
                value: ::rusqlite::types::ValueRef<'_>,
            ) -> ::rusqlite::types::FromSqlResult<Self> {
                String::column_result(value).map(Self)
            }
        }
    };
}

string_id!(
    /// A project id (`proj_…`).
    ProjectId
);
string_id!(
    /// A user id (`user-…`).
    UserId
);
string_id!(
    /// A project service account id (`svc_acct_…`).
    ServiceAccountId
);
string_id!(
    /// A project API key id (`key_…`).
    ApiKeyId
);
string_id!(
    /// A group id (`group_…`).
    GroupId
);
string_id!(
    /// A role id (`role_…`).
    RoleId
);
string_id!(
    /// A certificate id (`cert_…`).
    CertificateId
);
string_id!(
    /// A spend alert id.
    SpendAlertId
);
string_id!(
    /// A rate limit id (`rl-…`).
    RateLimitId
);
string_id!(
    /// A rule's stable kebab-case id (`api-key-stale`).
    RuleId
);
string_id!(
    /// An audit-log event's id (`audit_log-…`).
    AuditEventId
);
string_id!(
    /// A finding's identity: sha256 hex of its rule id, resource id and project id.
    Fingerprint
);

/// The row id of a stored snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotId(pub i64);

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How bad a finding is, in increasing order.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; no action expected.
    Info,
    /// Hygiene.
    Low,
    /// Should be fixed.
    Medium,
    /// Fix soon: a real exposure.
    High,
    /// Fix now.
    Critical,
}

/// A finding's status.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FindingStatus {
    /// The problem is present.
    Open,
    /// The problem was present and is gone.
    Resolved,
    /// The problem is present and accepted by an exemption.
    Exempt,
}

stored_enum!(FindingStatus, "finding status", [
    Open => "open",
    Resolved => "resolved",
    Exempt => "exempt",
]);

stored_enum!(Severity, "severity", [
    Info => "info",
    Low => "low",
    Medium => "medium",
    High => "high",
    Critical => "critical",
]);

/// The list envelope an endpoint answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// Shape A: `{object, data, first_id, last_id, has_more}`; the next page is `after=last_id`.
    FirstLastId,
    /// Shape B: `{object, data, has_more, next}`; the next page is `after=next`, opaque.
    NextCursor,
    /// Not a list: one object per project.
    Single,
}

/// The families orgwarden reads — 15 under projects, 12 of the organization itself —
/// each stored under one SQL view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `GET /organization/projects?include_archived=true`
    Projects,
    /// `GET /organization/projects/{project_id}/users`
    ProjectUsers,
    /// `GET /projects/{project_id}/users/{user_id}/roles`
    ProjectUserRoles,
    /// `GET /organization/projects/{project_id}/service_accounts`
    ProjectServiceAccounts,
    /// `GET /organization/projects/{project_id}/api_keys?owner_project_access=any`
    ProjectApiKeys,
    /// `GET /organization/projects/{project_id}/rate_limits`
    ProjectRateLimits,
    /// `GET /organization/projects/{project_id}/model_permissions`
    ProjectModelPermissions,
    /// `GET /organization/projects/{project_id}/hosted_tool_permissions`
    ProjectHostedToolPermissions,
    /// `GET /organization/projects/{project_id}/groups`
    ProjectGroups,
    /// `GET /projects/{project_id}/groups/{group_id}/roles`
    ProjectGroupRoles,
    /// `GET /projects/{project_id}/roles`
    ProjectRoles,
    /// `GET /organization/projects/{project_id}/data_retention`
    ProjectDataRetention,
    /// `GET /organization/projects/{project_id}/spend_alerts`
    ProjectSpendAlerts,
    /// `GET /organization/projects/{project_id}/certificates`
    ProjectCertificates,
    /// `GET /organization/projects/{project_id}/spend_limit` (none when unset)
    ProjectSpendLimits,
    /// `GET /organization/users`
    OrgUsers,
    /// `GET /organization/users/{user_id}/roles`
    OrgUserRoles,
    /// `GET /organization/invites`
    OrgInvites,
    /// `GET /organization/admin_api_keys`
    OrgAdminApiKeys,
    /// `GET /organization/groups`
    OrgGroups,
    /// `GET /organization/groups/{group_id}/users`
    OrgGroupUsers,
    /// `GET /organization/groups/{group_id}/roles`
    OrgGroupRoles,
    /// `GET /organization/roles`
    OrgRoles,
    /// `GET /organization/data_retention`
    OrgDataRetention,
    /// `GET /organization/spend_limit` (none when unset)
    OrgSpendLimit,
    /// `GET /organization/spend_alerts`
    OrgSpendAlerts,
    /// `GET /organization/certificates`
    OrgCertificates,
}

/// One column of a family's view: its name, where it comes from in the object's JSON, and
/// what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// The column name (the API's field name; nested fields joined with `_`).
    pub name: &'static str,
    /// SQLite JSON paths into the stored object, separated by `|` when the value may sit
    /// in more than one place (`$.owner.user.id|$.owner.service_account.id`): the first
    /// non-null one is the column's value.
    pub path: &'static str,
    /// What the API puts there (the OpenAPI schema's type), as the view holds it.
    pub ty: ColumnType,
}

/// What a view column holds, as SQLite stores it: it says which values a rule's condition
/// can compare it with, since SQLite compares across types without complaint (every number
/// sorts before every text, and the two are never equal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// Text: ids, names, enums.
    Text,
    /// A number (a JSON integer or float).
    Number,
    /// A JSON boolean, stored as 0 or 1.
    Bool,
    /// A time in Unix seconds (every column named `…_at`).
    Time,
    /// A JSON list of strings, stored as its JSON text.
    List,
    /// A JSON list of objects (`org_invites.projects`: `{id, role}`), stored as its JSON
    /// text: `contains` can never match one of its items.
    Records,
    /// A JSON object, stored as its JSON text (`raw`).
    Object,
}

impl ColumnType {
    /// How a message names what the column holds.
    pub fn describe(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Number => "numbers",
            ColumnType::Bool => "booleans (0 or 1)",
            ColumnType::Time => "times in Unix seconds",
            ColumnType::List => "a JSON list",
            ColumnType::Records => "a JSON list of objects",
            ColumnType::Object => "a JSON object",
        }
    }

    /// The type's name, as `docs/views.md` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Number => "number",
            ColumnType::Bool => "boolean",
            ColumnType::Time => "time",
            ColumnType::List => "list",
            ColumnType::Records => "list of objects",
            ColumnType::Object => "object",
        }
    }
}

/// A struct literal, so that column tables are promoted to `'static` constants.
macro_rules! col {
    ($name:expr, $path:expr, $ty:ident $(,)?) => {
        Column {
            name: $name,
            path: $path,
            ty: ColumnType::$ty,
        }
    };
}

// Declaration order is the order a crawl discovers them: parents before children.
stored_enum!(Family, "family", [
    Projects => "projects",
    ProjectUsers => "project_users",
    ProjectUserRoles => "project_user_roles",
    ProjectServiceAccounts => "project_service_accounts",
    ProjectApiKeys => "project_api_keys",
    ProjectRateLimits => "project_rate_limits",
    ProjectModelPermissions => "project_model_permissions",
    ProjectHostedToolPermissions => "project_hosted_tool_permissions",
    ProjectGroups => "project_groups",
    ProjectGroupRoles => "project_group_roles",
    ProjectRoles => "project_roles",
    ProjectDataRetention => "project_data_retention",
    ProjectSpendAlerts => "project_spend_alerts",
    ProjectCertificates => "project_certificates",
    ProjectSpendLimits => "project_spend_limits",
    OrgUsers => "org_users",
    OrgUserRoles => "org_user_roles",
    OrgInvites => "org_invites",
    OrgAdminApiKeys => "org_admin_api_keys",
    OrgGroups => "org_groups",
    OrgGroupUsers => "org_group_users",
    OrgGroupRoles => "org_group_roles",
    OrgRoles => "org_roles",
    OrgDataRetention => "org_data_retention",
    OrgSpendLimit => "org_spend_limit",
    OrgSpendAlerts => "org_spend_alerts",
    OrgCertificates => "org_certificates",
]);

impl Family {
    /// The name of the SQL view that holds this family's latest state (also its stable name
    /// in config, JSON output and rule `resource_type`).
    pub fn view(self) -> &'static str {
        self.as_str()
    }

    /// The family whose view is named `view`.
    pub fn from_view(view: &str) -> Option<Family> {
        view.parse().ok()
    }

    /// The API path of the read, with `{project_id}` and `{parent_id}` placeholders.
    pub fn path_template(self) -> &'static str {
        match self {
            Family::Projects => "/organization/projects",
            Family::ProjectUsers => "/organization/projects/{project_id}/users",
            Family::ProjectUserRoles => "/projects/{project_id}/users/{parent_id}/roles",
            Family::ProjectServiceAccounts => {
                "/organization/projects/{project_id}/service_accounts"
            }
            Family::ProjectApiKeys => "/organization/projects/{project_id}/api_keys",
            Family::ProjectRateLimits => "/organization/projects/{project_id}/rate_limits",
            Family::ProjectModelPermissions => {
                "/organization/projects/{project_id}/model_permissions"
            }
            Family::ProjectHostedToolPermissions => {
                "/organization/projects/{project_id}/hosted_tool_permissions"
            }
            Family::ProjectGroups => "/organization/projects/{project_id}/groups",
            Family::ProjectGroupRoles => "/projects/{project_id}/groups/{parent_id}/roles",
            Family::ProjectRoles => "/projects/{project_id}/roles",
            Family::ProjectDataRetention => "/organization/projects/{project_id}/data_retention",
            Family::ProjectSpendAlerts => "/organization/projects/{project_id}/spend_alerts",
            Family::ProjectCertificates => "/organization/projects/{project_id}/certificates",
            Family::ProjectSpendLimits => "/organization/projects/{project_id}/spend_limit",
            Family::OrgUsers => "/organization/users",
            Family::OrgUserRoles => "/organization/users/{parent_id}/roles",
            Family::OrgInvites => "/organization/invites",
            Family::OrgAdminApiKeys => "/organization/admin_api_keys",
            Family::OrgGroups => "/organization/groups",
            Family::OrgGroupUsers => "/organization/groups/{parent_id}/users",
            Family::OrgGroupRoles => "/organization/groups/{parent_id}/roles",
            Family::OrgRoles => "/organization/roles",
            Family::OrgDataRetention => "/organization/data_retention",
            Family::OrgSpendLimit => "/organization/spend_limit",
            Family::OrgSpendAlerts => "/organization/spend_alerts",
            Family::OrgCertificates => "/organization/certificates",
        }
    }

    /// The read's path for one scope.
    pub fn path(self, project_id: Option<&ProjectId>, parent_id: Option<&str>) -> String {
        let mut path = self.path_template().to_owned();
        if let Some(p) = project_id {
            path = path.replace("{project_id}", p.as_str());
        }
        if let Some(parent) = parent_id {
            path = path.replace("{parent_id}", parent);
        }
        path
    }

    /// The list envelope the read answers with.
    pub fn envelope(self) -> Envelope {
        match self {
            Family::Projects
            | Family::ProjectUsers
            | Family::ProjectServiceAccounts
            | Family::ProjectApiKeys
            | Family::ProjectRateLimits
            | Family::ProjectSpendAlerts
            | Family::ProjectCertificates
            | Family::OrgUsers
            | Family::OrgInvites
            | Family::OrgAdminApiKeys
            | Family::OrgSpendAlerts
            | Family::OrgCertificates => Envelope::FirstLastId,
            Family::ProjectUserRoles
            | Family::ProjectGroups
            | Family::ProjectGroupRoles
            | Family::ProjectRoles
            | Family::OrgUserRoles
            | Family::OrgGroups
            | Family::OrgGroupUsers
            | Family::OrgGroupRoles
            | Family::OrgRoles => Envelope::NextCursor,
            Family::ProjectModelPermissions
            | Family::ProjectHostedToolPermissions
            | Family::ProjectDataRetention
            | Family::ProjectSpendLimits
            | Family::OrgDataRetention
            | Family::OrgSpendLimit => Envelope::Single,
        }
    }

    /// The largest `limit` the endpoint accepts (a larger one is a 400), or `None` for
    /// reads that are not lists.
    pub fn max_page_size(self) -> Option<u32> {
        match self.envelope() {
            Envelope::Single => None,
            // The role and group lists take up to 1,000 (project groups only 100).
            Envelope::NextCursor if self != Family::ProjectGroups => Some(1000),
            _ => Some(100),
        }
    }

    /// Extra query parameters the collector must send so that nothing is hidden from it.
    pub fn required_query(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Family::Projects => &[("include_archived", "true")],
            Family::ProjectApiKeys => &[("owner_project_access", "any")],
            _ => &[],
        }
    }

    /// The parent family whose objects each own one scope of this family (role
    /// assignments are read per user and per group, a project's families per project),
    /// or `None` for the organization's own reads, which are one scope each.
    pub fn parent(self) -> Option<Family> {
        match self {
            Family::Projects
            | Family::OrgUsers
            | Family::OrgInvites
            | Family::OrgAdminApiKeys
            | Family::OrgGroups
            | Family::OrgRoles
            | Family::OrgDataRetention
            | Family::OrgSpendLimit
            | Family::OrgSpendAlerts
            | Family::OrgCertificates => None,
            Family::ProjectUserRoles => Some(Family::ProjectUsers),
            Family::ProjectGroupRoles => Some(Family::ProjectGroups),
            Family::OrgUserRoles => Some(Family::OrgUsers),
            Family::OrgGroupUsers | Family::OrgGroupRoles => Some(Family::OrgGroups),
            Family::ProjectUsers
            | Family::ProjectServiceAccounts
            | Family::ProjectApiKeys
            | Family::ProjectRateLimits
            | Family::ProjectModelPermissions
            | Family::ProjectHostedToolPermissions
            | Family::ProjectGroups
            | Family::ProjectRoles
            | Family::ProjectDataRetention
            | Family::ProjectSpendAlerts
            | Family::ProjectCertificates
            | Family::ProjectSpendLimits => Some(Family::Projects),
        }
    }

    /// Whether this family's objects belong to a project (`project_id` set in its view):
    /// `projects` itself and the families read under a project. The organization's own
    /// families have `project_id` null.
    pub fn in_project(self) -> bool {
        self == Family::Projects
            || self
                .parent()
                .is_some_and(|p| p == Family::Projects || p.in_project())
    }

    /// The families whose scopes hang under each object of this one, in crawl order.
    pub fn children(self) -> impl Iterator<Item = Family> {
        Family::ALL
            .into_iter()
            .filter(move |c| c.parent() == Some(self))
    }

    /// The JSON field that identifies an object within its scope, or `None` for a
    /// single object (whose identity is its project, or [`ORGANIZATION`] for the
    /// organization's own settings).
    pub fn id_field(self) -> Option<&'static str> {
        match self {
            Family::ProjectGroups => Some("group_id"),
            _ if self.envelope() == Envelope::Single => None,
            _ => Some("id"),
        }
    }

    /// The id that names `object` within its scope, the one rule the collector and the
    /// store share: the non-empty string in [`Family::id_field`] (the API's ids are all
    /// strings, so a number is no id either), or for a single object its project
    /// ([`ORGANIZATION`] when there is none). `None`: the object cannot be told apart
    /// from the others in its scope, so the scope cannot be stored as read.
    pub fn object_id(
        self,
        object: &serde_json::Value,
        project: Option<&ProjectId>,
    ) -> Option<String> {
        match self.id_field() {
            Some(field) => match object.get(field)? {
                serde_json::Value::String(id) if !id.is_empty() => Some(id.clone()),
                _ => None,
            },
            None => Some(project.map_or_else(|| ORGANIZATION.to_owned(), |p| p.0.clone())),
        }
    }

    /// The top-level fields of this family's objects that the API documents as always sent
    /// (the reference's `required`, null allowed where it allows it) and that a view column
    /// reads. One that stops coming (removed, renamed) leaves its column NULL, which the
    /// rules read as "never used", "no expiry" or "not pending": a run warns of it instead
    /// ([`crate::store::Store::missing_fields`]). The ids are not here: an object without
    /// its id already fails its read. Nor is a field the reference's own example of the
    /// answer leaves out (a group's `group_type`, an invitation's `projects`): an API that
    /// answers so would be warned of on every run, and the view's findings held forever.
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            Family::Projects => &["created_at"],
            Family::ProjectUsers => &["role", "added_at"],
            Family::ProjectServiceAccounts => &["name", "role", "created_at"],
            Family::ProjectApiKeys => &[
                "redacted_value",
                "name",
                "created_at",
                "last_used_at",
                "owner_project_access",
                "owner",
            ],
            Family::OrgUsers => &["added_at"],
            Family::OrgInvites => &["email", "role", "status", "created_at"],
            Family::OrgAdminApiKeys => &["redacted_value", "created_at", "expires_at", "owner"],
            Family::ProjectDataRetention | Family::OrgDataRetention => &["type"],
            Family::ProjectSpendAlerts | Family::OrgSpendAlerts => &[
                "threshold_amount",
                "currency",
                "interval",
                "notification_channel",
            ],
            Family::ProjectSpendLimits | Family::OrgSpendLimit => {
                &["threshold_amount", "currency", "interval", "enforcement"]
            }
            Family::ProjectCertificates | Family::OrgCertificates => {
                &["name", "created_at", "certificate_details"]
            }
            Family::ProjectModelPermissions => &["mode", "model_ids"],
            Family::ProjectGroups => &["group_name", "created_at"],
            Family::OrgGroups => &["name", "created_at", "is_scim_managed"],
            Family::ProjectRoles | Family::OrgRoles => {
                &["name", "permissions", "resource_type", "predefined_role"]
            }
            Family::ProjectRateLimits => &[
                "model",
                "max_requests_per_1_minute",
                "max_tokens_per_1_minute",
            ],
            Family::ProjectUserRoles
            | Family::ProjectHostedToolPermissions
            | Family::ProjectGroupRoles
            | Family::OrgUserRoles
            | Family::OrgGroupUsers
            | Family::OrgGroupRoles => &[],
        }
    }

    /// The view's text columns whose values the API documents as a closed list, each with
    /// that list. The API adds values over time (a project `status`, a `role`, a retention
    /// type); the rules were written for these, so a run warns of any other it reads
    /// ([`crate::store::Store::unknown_values`]).
    pub fn enum_columns(self) -> &'static [(&'static str, &'static [&'static str])] {
        const RETENTION: [&str; 4] = [
            "zero_data_retention",
            "modified_abuse_monitoring",
            "enhanced_zero_data_retention",
            "enhanced_modified_abuse_monitoring",
        ];
        const GROUP_TYPES: [&str; 2] = ["group", "tenant_group"];
        match self {
            Family::Projects => &[("status", &["active", "archived"])],
            Family::ProjectUsers => &[("role", &["owner", "member"])],
            Family::ProjectServiceAccounts => &[("role", &["owner", "member", "none"])],
            Family::ProjectApiKeys => &[
                ("owner_type", &["user", "service_account"]),
                ("owner_project_access", &["active", "inactive"]),
            ],
            Family::ProjectModelPermissions => &[("mode", &["allow_list", "deny_list"])],
            Family::ProjectHostedToolPermissions => &[("tool", &HOSTED_TOOLS)],
            Family::ProjectGroups => &[("group_type", &GROUP_TYPES)],
            Family::OrgGroups => &[("group_type", &GROUP_TYPES)],
            Family::ProjectDataRetention => &[(
                "type",
                &[
                    "organization_default",
                    "none",
                    RETENTION[0],
                    RETENTION[1],
                    RETENTION[2],
                    RETENTION[3],
                ],
            )],
            Family::OrgDataRetention => &[("type", &RETENTION)],
            Family::ProjectSpendAlerts | Family::OrgSpendAlerts => &[
                ("currency", &["USD"]),
                ("interval", &["month"]),
                ("notification_channel_type", &["email"]),
            ],
            Family::ProjectSpendLimits | Family::OrgSpendLimit => &[
                ("currency", &["USD"]),
                ("interval", &["month"]),
                ("enforcement_status", &["inactive", "enforcing"]),
            ],
            Family::OrgUsers => &[("role", &["owner", "reader"])],
            Family::OrgInvites => &[
                ("role", &["owner", "reader"]),
                ("status", &["accepted", "expired", "pending"]),
            ],
            Family::OrgAdminApiKeys => &[("owner_type", &["user", "service_account"])],
            Family::ProjectUserRoles
            | Family::ProjectRateLimits
            | Family::ProjectGroupRoles
            | Family::ProjectRoles
            | Family::ProjectCertificates
            | Family::OrgUserRoles
            | Family::OrgGroupUsers
            | Family::OrgGroupRoles
            | Family::OrgRoles
            | Family::OrgCertificates => &[],
        }
    }

    /// Fields that change on every use: kept current, but a change to them alone is not
    /// a new version (AWS Config's rule) and does not show in `diff`.
    pub fn volatile_fields(self) -> &'static [&'static str] {
        match self {
            Family::ProjectApiKeys | Family::OrgAdminApiKeys => &["last_used_at"],
            Family::OrgUsers => &["api_key_last_used_at"],
            _ => &[],
        }
    }

    /// The view's columns besides `project_id`, `resource_id` and `raw`, which every view has.
    /// `project_hosted_tool_permissions` is one row per tool and has `tool, enabled` instead.
    // A data table: one arm per family, one line per column.
    #[allow(clippy::too_many_lines)]
    pub fn columns(self) -> &'static [Column] {
        match self {
            Family::Projects => &[
                col!("id", "$.id", Text),
                col!("object", "$.object", Text),
                col!("name", "$.name", Text),
                col!("created_at", "$.created_at", Time),
                col!("archived_at", "$.archived_at", Time),
                col!("status", "$.status", Text),
                col!("external_key_id", "$.external_key_id", Text),
                col!("residency", "$.residency", Text),
            ],
            Family::ProjectUsers => &[
                col!("id", "$.id", Text),
                col!("object", "$.object", Text),
                col!("name", "$.name", Text),
                col!("email", "$.email", Text),
                col!("role", "$.role", Text),
                col!("added_at", "$.added_at", Time),
            ],
            Family::ProjectUserRoles
            | Family::ProjectGroupRoles
            | Family::OrgUserRoles
            | Family::OrgGroupRoles => &[
                col!("id", "$.id", Text),
                col!("name", "$.name", Text),
                col!("permissions", "$.permissions", List),
                col!("resource_type", "$.resource_type", Text),
                col!("predefined_role", "$.predefined_role", Bool),
                col!("description", "$.description", Text),
                col!("created_at", "$.created_at", Time),
                col!("updated_at", "$.updated_at", Time),
                col!("created_by", "$.created_by", Text),
            ],
            Family::ProjectServiceAccounts => &[
                col!("id", "$.id", Text),
                col!("object", "$.object", Text),
                col!("name", "$.name", Text),
                col!("role", "$.role", Text),
                col!("created_at", "$.created_at", Time),
            ],
            Family::ProjectApiKeys => &[
                col!("id", "$.id", Text),
                col!("object", "$.object", Text),
                col!("name", "$.name", Text),
                col!("redacted_value", "$.redacted_value", Text),
                col!("created_at", "$.created_at", Time),
                col!("last_used_at", "$.last_used_at", Time),
                col!("owner_project_access", "$.owner_project_access", Text),
                col!("owner_type", "$.owner.type", Text),
                // The owner is a user or a service account; the id lives under either.
                col!(
                    "owner_id",
                    "$.owner.user.id|$.owner.service_account.id",
                    Text
                ),
                col!(
                    "owner_name",
                    "$.owner.user.name|$.owner.service_account.name",
                    Text
                ),
                col!("owner_email", "$.owner.user.email", Text),
                col!(
                    "owner_role",
                    "$.owner.user.role|$.owner.service_account.role",
                    Text
                ),
                col!(
                    "owner_created_at",
                    "$.owner.user.created_at|$.owner.service_account.created_at",
                    Time
                ),
            ],
            Family::ProjectRateLimits => &[
                col!("id", "$.id", Text),
                col!("object", "$.object", Text),
                col!("model", "$.model", Text),
                col!(
                    "max_requests_per_1_minute",
                    "$.max_requests_per_1_minute",
                    Number
                ),
                col!(
                    "max_tokens_per_1_minute",
                    "$.max_tokens_per_1_minute",
                    Number
                ),
                col!(
                    "max_images_per_1_minute",
                    "$.max_images_per_1_minute",
                    Number
                ),
                col!(
                    "max_audio_megabytes_per_1_minute",
                    "$.max_audio_megabytes_per_1_minute",
                    Number
                ),
                col!("max_requests_per_1_day", "$.max_requests_per_1_day", Number),
                col!(
                    "batch_1_day_max_input_tokens",
                    "$.batch_1_day_max_input_tokens",
                    Number
                ),
            ],
            Family::ProjectModelPermissions => &[
                col!("object", "$.object", Text),
                col!("mode", "$.mode", Text),
                col!("model_ids", "$.model_ids", List),
            ],
            Family::ProjectHostedToolPermissions => &[],
            Family::ProjectGroups => &[
                col!("group_id", "$.group_id", Text),
                col!("object", "$.object", Text),
                col!("group_name", "$.group_name", Text),
                col!("group_type", "$.group_type", Text),
                col!("created_at", "$.created_at", Time),
            ],
            Family::ProjectRoles | Family::OrgRoles => &[
                col!("id", "$.id", Text),
                col!("object", "$.object", Text),
                col!("name", "$.name", Text),
                col!("description", "$.description", Text),
                col!("permissions", "$.permissions", List),
                col!("resource_type", "$.resource_type", Text),
                col!("predefined_role", "$.predefined_role", Bool),
            ],
            Family::ProjectDataRetention | Family::OrgDataRetention => &[
                col!("object", "$.object", Text),
                col!("type", "$.type", Text),
            ],
            Family::ProjectSpendAlerts | Family::OrgSpendAlerts => &[
                col!("id", "$.id", Text),
                col!("object", "$.object", Text),
                col!("threshold_amount", "$.threshold_amount", Number),
                col!("currency", "$.currency", Text),
                col!("interval", "$.interval", Text),
                col!(
                    "notification_channel_type",
                    "$.notification_channel.type",
                    Text
                ),
                col!(
                    "notification_channel_recipients",
                    "$.notification_channel.recipients",
                    List
                ),
                col!(
                    "notification_channel_subject_prefix",
                    "$.notification_channel.subject_prefix",
                    Text
                ),
            ],
            Family::ProjectCertificates | Family::OrgCertificates => &[
                col!("id", "$.id", Text),
                col!("object", "$.object", Text),
                col!("name", "$.name", Text),
                col!("created_at", "$.created_at", Time),
                col!("active", "$.active", Bool),
                col!("valid_at", "$.certificate_details.valid_at", Time),
                col!("expires_at", "$.certificate_details.expires_at", Time),
            ],
            Family::ProjectSpendLimits | Family::OrgSpendLimit => &[
                col!("object", "$.object", Text),
                col!("threshold_amount", "$.threshold_amount", Number),
                col!("currency", "$.currency", Text),
                col!("interval", "$.interval", Text),
                col!("enforcement_status", "$.enforcement.status", Text),
            ],
            Family::OrgUsers => &[
                col!("id", "$.id", Text),
                col!("object", "$.object", Text),
                col!("name", "$.name", Text),
                col!("email", "$.email", Text),
                col!("role", "$.role", Text),
                col!("added_at", "$.added_at", Time),
                col!("is_default", "$.is_default", Bool),
                col!("is_service_account", "$.is_service_account", Bool),
                col!("is_scim_managed", "$.is_scim_managed", Bool),
                col!("api_key_last_used_at", "$.api_key_last_used_at", Time),
                col!("user_enabled", "$.user.enabled", Bool),
                col!("user_banned", "$.user.banned", Bool),
                col!("user_banned_at", "$.user.banned_at", Time),
            ],
            Family::OrgInvites => &[
                col!("id", "$.id", Text),
                col!("object", "$.object", Text),
                col!("email", "$.email", Text),
                col!("role", "$.role", Text),
                col!("status", "$.status", Text),
                col!("created_at", "$.created_at", Time),
                col!("expires_at", "$.expires_at", Time),
                col!("accepted_at", "$.accepted_at", Time),
                col!("projects", "$.projects", Records),
            ],
            Family::OrgAdminApiKeys => &[
                col!("id", "$.id", Text),
                col!("object", "$.object", Text),
                col!("name", "$.name", Text),
                col!("redacted_value", "$.redacted_value", Text),
                col!("created_at", "$.created_at", Time),
                col!("expires_at", "$.expires_at", Time),
                col!("last_used_at", "$.last_used_at", Time),
                col!("owner_type", "$.owner.type", Text),
                col!("owner_id", "$.owner.id", Text),
                col!("owner_name", "$.owner.name", Text),
                col!("owner_role", "$.owner.role", Text),
                col!("owner_created_at", "$.owner.created_at", Time),
            ],
            Family::OrgGroups => &[
                col!("id", "$.id", Text),
                col!("name", "$.name", Text),
                col!("group_type", "$.group_type", Text),
                col!("is_scim_managed", "$.is_scim_managed", Bool),
                col!("created_at", "$.created_at", Time),
            ],
            Family::OrgGroupUsers => &[
                col!("id", "$.id", Text),
                col!("name", "$.name", Text),
                col!("email", "$.email", Text),
            ],
        }
    }
}

/// The resource id of the organization's single settings (retention, spend limit).
pub const ORGANIZATION: &str = "organization";

/// The five hosted tools a project can enable, in the order the API lists them.
pub const HOSTED_TOOLS: [&str; 5] = [
    "file_search",
    "web_search",
    "image_generation",
    "mcp",
    "code_interpreter",
];

/// One read of one family for one project (or one user or group within it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    /// What was read.
    pub family: Family,
    /// The project, for every family but `projects`.
    pub project_id: Option<ProjectId>,
    /// The user or group id, for role-assignment reads.
    pub parent_id: Option<String>,
}

impl Scope {
    /// The read's API path.
    pub fn path(&self) -> String {
        self.family
            .path(self.project_id.as_ref(), self.parent_id.as_deref())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// Why a scope could not be read completely. Such a scope's stored objects are carried
/// forward unchanged and its findings keep their status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeError {
    /// The HTTP status, when the API answered.
    pub status: Option<u16>,
    /// What went wrong, naming the path; never contains the admin key.
    pub message: String,
}

/// The objects of one complete read, in order, each held as its compact JSON text until
/// the store takes it. A parsed object costs about eight times its text (an organization
/// member of 500 bytes, 4 KiB), and a list is held whole until its last page is read:
/// 30,000 members parsed took 130 MiB.
#[derive(Clone, Default)]
pub struct Objects {
    texts: Vec<Box<str>>,
    /// What these texts take from a crawl's [`TextBudget`], given back when they are
    /// dropped (by the store, once written); `None` for objects not read under one.
    charge: Option<Charge>,
}

impl Objects {
    /// No objects.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `object` at the end.
    pub fn push(&mut self, object: &serde_json::Value) {
        self.texts.push(object.to_string().into_boxed_str());
    }

    /// Adds `objects` at the end, charged to `budget` (or to the budget the first objects
    /// were charged to: a list is read under one); refused, adding none, when that would
    /// take the text held under it past its most.
    pub fn extend_within(
        &mut self,
        objects: impl IntoIterator<Item = serde_json::Value>,
        budget: &TextBudget,
    ) -> Result<(), Overdrawn> {
        let texts: Vec<Box<str>> = objects
            .into_iter()
            .map(|object| object.to_string().into_boxed_str())
            .collect();
        let bytes = texts.iter().map(|text| held_bytes(text)).sum::<u64>();
        self.charge
            .get_or_insert_with(|| Charge {
                budget: budget.clone(),
                bytes: 0,
            })
            .grow(bytes)?;
        self.texts.extend(texts);
        Ok(())
    }

    /// How many objects.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Each object parsed again, in order: one at a time, never the whole list at once.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = serde_json::Value> + '_ {
        self.texts.iter().map(|text| parse_held(text))
    }

    /// Every object parsed at once: for a read known to be small, and for tests.
    pub fn to_values(&self) -> Vec<serde_json::Value> {
        self.iter().collect()
    }

    /// Keeps only the objects `keep` says yes to. The charge stays whole: the objects
    /// dropped are few (a project's keys among the organization's), and it is given back
    /// with the rest.
    pub fn retain(&mut self, mut keep: impl FnMut(&serde_json::Value) -> bool) {
        self.texts.retain(|text| keep(&parse_held(text)));
    }
}

/// The bytes one held text costs: its own and its box's (a pointer and a length).
fn held_bytes(text: &str) -> u64 {
    u64::try_from(text.len() + std::mem::size_of::<Box<str>>()).unwrap_or(u64::MAX)
}

/// The most object text a crawl holds at once, across every list it is reading and every
/// read waiting for the store: each page of a list is held until its last page, so a
/// server paging on with large objects would otherwise be bounded only by the pages one
/// list may have times their size, in every list at once.
#[derive(Clone, Debug)]
pub struct TextBudget {
    most: u64,
    held: Arc<AtomicU64>,
}

/// Why [`Objects::extend_within`] refused: the text held, what was asked, and the most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overdrawn {
    /// The bytes held under the budget when it was asked.
    pub held: u64,
    /// The bytes asked for.
    pub asked: u64,
    /// The budget's most.
    pub most: u64,
}

impl TextBudget {
    /// A budget of `most` bytes, none held yet.
    pub fn new(most: u64) -> Self {
        Self {
            most,
            held: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The bytes held under this budget now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// A hold of no bytes yet, for what is held in a shape other than [`Objects`] (the
    /// rows of a costs read), grown as it grows and given back when dropped.
    pub fn hold(&self) -> HeldText {
        HeldText(Charge {
            budget: self.clone(),
            bytes: 0,
        })
    }

    fn take(&self, bytes: u64) -> Result<(), Overdrawn> {
        let before = self.held.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.most {
            self.held.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Overdrawn {
                held: before,
                asked: bytes,
                most: self.most,
            });
        }
        Ok(())
    }
}

/// Bytes held under a [`TextBudget`] by something other than [`Objects`], given back
/// when dropped.
#[derive(Debug)]
pub struct HeldText(Charge);

impl HeldText {
    /// Holds `bytes` more, unless that would take the budget past its most.
    pub fn grow(&mut self, bytes: u64) -> Result<(), Overdrawn> {
        self.0.grow(bytes)
    }
}

/// Bytes taken from a [`TextBudget`], given back on drop. A clone takes as much again,
/// since the texts it goes with are copied too.
#[derive(Debug)]
struct Charge {
    budget: TextBudget,
    bytes: u64,
}

impl Charge {
    /// Takes `bytes` more from the budget, unless that would take it past its most.
    fn grow(&mut self, bytes: u64) -> Result<(), Overdrawn> {
        self.budget.take(bytes)?;
        self.bytes += bytes;
        Ok(())
    }
}

impl Clone for Charge {
    fn clone(&self) -> Self {
        self.budget.held.fetch_add(self.bytes, Ordering::Relaxed);
        Self {
            budget: self.budget.clone(),
            bytes: self.bytes,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// An object [`Objects`] holds, parsed again. Its text was written from a `Value` there
/// and parses back to an equal one; were it ever not to, a `null` is what the store
/// refuses as "not a JSON object", a failed scope rather than a panic.
fn parse_held(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

impl From<Vec<serde_json::Value>> for Objects {
    fn from(objects: Vec<serde_json::Value>) -> Self {
        objects.into_iter().collect()
    }
}

impl FromIterator<serde_json::Value> for Objects {
    fn from_iter<I: IntoIterator<Item = serde_json::Value>>(iter: I) -> Self {
        let mut objects = Objects::new();
        for object in iter {
            objects.push(&object);
        }
        objects
    }
}

impl Extend<serde_json::Value> for Objects {
    fn extend<I: IntoIterator<Item = serde_json::Value>>(&mut self, iter: I) {
        for object in iter {
            self.push(&object);
        }
    }
}

/// Equal when the objects are, in order (two texts of one object may order its keys
/// differently).
impl PartialEq for Objects {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Objects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// What one scope's read produced: every object of a complete read, or the error.
#[derive(Clone, Debug, PartialEq)]
pub enum ScopeOutcome {
    /// The whole scope was read; objects absent from it are gone.
    Complete(Objects),
    /// The read failed part-way or entirely.
    Failed(ScopeError),
}

/// The collector's message to the store for one scope.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeResult {
    /// Which read.
    pub scope: Scope,
    /// What it gave.
    pub outcome: ScopeOutcome,
}

/// A request rate, in requests per minute, the unit OpenAI's rate-limit headers state it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestsPerMinute(u64);

impl RequestsPerMinute {
    /// A rate of `n` requests per minute; `None` for 0, which allows nothing and would
    /// stall every crawl paced at it.
    pub fn new(n: u64) -> Option<Self> {
        (n > 0).then_some(Self(n))
    }

    /// The nearest whole rate per minute to `per_second`; `None` below half a request a
    /// minute or when not a number.
    // A float-to-integer `as` saturates, and the value was checked to be positive.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub(crate) fn from_per_second(per_second: f64) -> Option<Self> {
        let per_minute = (per_second * 60.0).round();
        (per_minute.is_finite() && per_minute >= 1.0).then_some(Self(per_minute as u64))
    }

    /// Requests per minute.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The same rate in requests per second.
    pub(crate) fn per_second(self) -> f64 {
        self.0 as f64 / 60.0
    }
}

impl std::fmt::Display for RequestsPerMinute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/min", self.0)
    }
}

/// How many requests an API's rate limit lets through at once on top of its steady rate:
/// the depth of its token bucket, as a crawl measured it. Never zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Burst(u64);

impl Burst {
    /// A burst of `n` requests; `None` for 0, which no bucket that lets a request through
    /// has.
    pub fn new(n: u64) -> Option<Self> {
        (n > 0).then_some(Self(n))
    }

    /// The nearest whole number of requests to `requests`; `None` below one or when not
    /// a number.
    // A float-to-integer `as` saturates, and the value was checked to be positive.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub(crate) fn from_requests(requests: f64) -> Option<Self> {
        let n = requests.round();
        (n.is_finite() && n >= 1.0).then_some(Self(n as u64))
    }

    /// Requests.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What a crawl found an API's rate limit to be: its steady rate and, when a 429 showed
/// where the bucket ran dry, its burst allowance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiRate {
    /// The steady rate.
    pub per_minute: RequestsPerMinute,
    /// The burst allowance; `None` when the crawl never ran it dry.
    pub burst: Option<Burst>,
}

/// Counters of one crawl, stored with its snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlStats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Scopes that could not be read.
    pub errors: u64,
    /// Requests retried after a 429, 5xx or connection error.
    pub retries: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// The in-flight limit the client settled on (the fixed value when one is configured).
    /// Not stored with the snapshot: 0 when read back from the store.
    #[serde(default)]
    pub concurrency: u64,
}

/// One resource a rule selected: what rule evaluation hands the findings lifecycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The rule.
    pub rule_id: RuleId,
    /// The resource it is about.
    pub resource_id: String,
    /// Its project.
    pub project_id: Option<ProjectId>,
    /// What is wrong with it.
    pub message: String,
}

/// A snapshot's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotStatus {
    /// Every scope was read.
    Complete,
    /// Some scopes failed; their objects were carried forward.
    Partial,
    /// Nothing usable was read (the key was refused, the project list failed).
    Failed,
}

stored_enum!(SnapshotStatus, "snapshot status", [
    Complete => "complete",
    Partial => "partial",
    Failed => "failed",
]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_in_the_wrong_case_is_told_its_lower_case_spelling() {
        let e = "High".parse::<Severity>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown severity `High` (expected `high`, in lower case)"
        );
        let e = "hgih".parse::<Severity>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown severity `hgih` (expected info, low, medium, high or critical)"
        );
    }

    #[test]
    fn objects_held_as_text_come_back_equal_with_their_keys_in_order() {
        let served = serde_json::json!({
            "z": 1, "a": {"y": [1.5, -0.0, 18446744073709551615_u64, -9223372036854775808_i64]},
            "m": "tab\t \u{2028} \"quoted\"", "n": null, "b": false
        });
        let objects = Objects::from(vec![served.clone(), serde_json::json!({"id": "x"})]);
        assert_eq!(objects.len(), 2);
        let back = objects.to_values();
        assert_eq!(back[0], served);
        // The store keeps an object's text as served: its keys stay in their order.
        assert_eq!(back[0].to_string(), served.to_string());
        assert!(back[0].to_string().starts_with(r#"{"z":1,"a""#));
    }

    #[test]
    fn objects_are_equal_when_their_objects_are_whatever_the_order_of_keys() {
        let one = Objects::from(vec![serde_json::json!({"a": 1, "b": 2})]);
        let other: Objects =
            serde_json::from_str::<Vec<serde_json::Value>>(r#"[{"b": 2, "a": 1}]"#)
                .unwrap()
                .into_iter()
                .collect();
        assert_eq!(one, other);
        assert_ne!(
            one,
            Objects::from(vec![serde_json::json!({"a": 1, "b": 3})])
        );
        let mut kept = Objects::from(vec![
            serde_json::json!({"id": "a"}),
            serde_json::json!({"id": "b"}),
        ]);
        kept.retain(|o| o["id"] != "a");
        assert_eq!(kept.to_values(), [serde_json::json!({"id": "b"})]);
    }

    /// The objects of one scope are bounded by `[openai] max_pages_per_scope` times the page
    /// size only because every list asks for a page size (a page holding more is refused):
    /// a list family without one would need an object cap of its own.
    #[test]
    fn every_list_family_asks_for_a_bounded_page_size() {
        for family in Family::ALL {
            if family.envelope() != Envelope::Single {
                let size = family.max_page_size();
                assert!(
                    size.is_some_and(|n| (1..=1000).contains(&n)),
                    "{family:?} pages are unbounded: {size:?}"
                );
            }
        }
    }

    #[test]
    fn every_view_name_maps_back_to_its_family() {
        for family in Family::ALL {
            assert_eq!(Family::from_view(family.view()), Some(family));
        }
        assert_eq!(Family::from_view("nope"), None);
    }

    #[test]
    fn scope_path_fills_both_placeholders() {
        let scope = Scope {
            family: Family::ProjectGroupRoles,
            project_id: Some(ProjectId::from("proj_a")),
            parent_id: Some("group_b".into()),
        };
        assert_eq!(scope.path(), "/projects/proj_a/groups/group_b/roles");
    }

    #[test]
    fn object_id_is_a_non_empty_string_or_the_project_of_a_single_object() {
        use serde_json::json;
        let project = ProjectId::from("proj_a");
        assert_eq!(
            Family::ProjectApiKeys.object_id(&json!({"id": "key_1"}), Some(&project)),
            Some("key_1".to_owned())
        );
        assert_eq!(
            Family::ProjectGroups.object_id(&json!({"group_id": "group_x", "id": "no"}), None),
            Some("group_x".to_owned())
        );
        for bad in [
            json!({"name": "x"}),
            json!({"id": ""}),
            json!({"id": 7}),
            json!("key_1"),
        ] {
            assert_eq!(
                Family::ProjectApiKeys.object_id(&bad, Some(&project)),
                None,
                "{bad}"
            );
        }
        assert_eq!(
            Family::ProjectDataRetention.object_id(&json!({"retention": 30}), Some(&project)),
            Some("proj_a".to_owned())
        );
    }

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Critical > Severity::High);
        assert_eq!("medium".parse::<Severity>(), Ok(Severity::Medium));
        assert!("urgent".parse::<Severity>().is_err());
    }

    #[test]
    fn held_text_is_charged_to_its_budget_and_given_back_when_dropped() {
        let budget = TextBudget::new(1 << 20);
        let page = || (0..10).map(|i| serde_json::json!({"id": format!("k{i}")}));
        let mut objects = Objects::new();
        objects.extend_within(page(), &budget).expect("within");
        let one_page = budget.held();
        let texts: u64 = objects.texts.iter().map(|t| t.len() as u64).sum();
        assert!(
            one_page > texts,
            "the boxes count too: {one_page} vs {texts}"
        );
        objects.extend_within(page(), &budget).expect("within");
        assert_eq!(budget.held(), 2 * one_page);
        let copy = objects.clone();
        assert_eq!(budget.held(), 4 * one_page, "a copy is held too");
        drop(objects);
        assert_eq!(budget.held(), 2 * one_page);
        drop(copy);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_page_past_the_budget_is_refused_whole_and_the_rest_still_fits() {
        let budget = TextBudget::new(100);
        let mut first = Objects::new();
        first
            .extend_within([serde_json::json!({"id": "a"})], &budget)
            .expect("within");
        let held = budget.held();
        let big = serde_json::json!({"id": "b", "padding": "x".repeat(100)});
        let mut second = Objects::new();
        let over = second
            .extend_within([big], &budget)
            .expect_err("past the budget");
        assert_eq!(over.held, held);
        assert_eq!(over.most, 100);
        assert!(over.asked > 100);
        assert!(second.is_empty(), "nothing of a refused page is kept");
        assert_eq!(budget.held(), held, "nor charged");
        drop(first);
        second
            .extend_within([serde_json::json!({"id": "c"})], &budget)
            .expect("room again once the first list is dropped");
    }

    #[test]
    fn a_hold_grows_within_the_budget_it_shares_with_objects_and_is_given_back() {
        let budget = TextBudget::new(1000);
        let mut objects = Objects::new();
        objects
            .extend_within([serde_json::json!({"id": "a"})], &budget)
            .expect("within");
        let listed = budget.held();
        let mut rows = budget.hold();
        rows.grow(500).expect("within");
        assert_eq!(budget.held(), listed + 500);
        let over = rows.grow(1000).expect_err("past the most");
        assert_eq!(
            (over.held, over.asked, over.most),
            (listed + 500, 1000, 1000)
        );
        assert_eq!(
            budget.held(),
            listed + 500,
            "a refused growth holds nothing"
        );
        drop(rows);
        assert_eq!(budget.held(), listed);
    }

    #[test]
    fn objects_stay_charged_to_the_budget_they_were_first_read_under() {
        let (one, two) = (TextBudget::new(1 << 20), TextBudget::new(1 << 20));
        let mut objects = Objects::new();
        objects
            .extend_within([serde_json::json!({"id": "a"})], &one)
            .expect("within");
        objects
            .extend_within([serde_json::json!({"id": "b"})], &two)
            .expect("within");
        assert_eq!(two.held(), 0);
        assert!(one.held() > 0);
        drop(objects);
        assert_eq!((one.held(), two.held()), (0, 0));
    }
}
