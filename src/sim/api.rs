//! The Admin API itself, independent of HTTP: one request (method, path after `/v1`,
//! query, body) in, one JSON body or one API error out. Routing is a single `match` over
//! the path segments, so every operation of the spec is visible in one place.

use std::sync::RwLock;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::org::{
    ApiKey, KeyOwner, ModelPermissions, Org, Project, ProjectGroup, ProjectUser,
    RATE_LIMIT_OPTIONAL, RESIDENCIES, RETENTION_TYPES, Role, ServiceAccount, SpendAlert,
    redacted_value,
};
use super::{api_org, audit_log, render, render_org};
use crate::model::{
    ApiKeyId, Envelope, GroupId, HOSTED_TOOLS, ProjectId, RoleId, ServiceAccountId, SpendAlertId,
    UserId,
};

/// An error answer, rendered as `{"error":{"message","type","param","code"}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Human-readable message.
    pub message: String,
    /// The error `type`.
    pub kind: &'static str,
    /// The offending parameter, if any.
    pub param: Option<String>,
    /// A machine-readable code, if any.
    pub code: Option<&'static str>,
}

impl ApiError {
    pub(super) fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// A 400 `invalid_request_error` about one parameter.
    pub fn invalid(param: &str, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            param: Some(param.to_owned()),
            code: Some(code),
            ..ApiError::new(400, "invalid_request_error", message)
        }
    }

    /// A 400 without a parameter.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request_error", message)
    }

    /// The 404 of a spend-limit read when no limit is set.
    pub fn spend_limit_not_found() -> ApiError {
        ApiError {
            code: Some("spend_limit_not_found"),
            ..ApiError::new(404, "invalid_request_error", "No hard spend limit is set.")
        }
    }

    /// A 404 for an unknown object.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            404,
            "invalid_request_error",
            format!("No {what} found with id '{id}'."),
        )
    }

    /// The answer to a path or method the API does not have.
    pub fn invalid_url(method: &str, path: &str) -> ApiError {
        ApiError::new(
            404,
            "invalid_request_error",
            format!("Invalid URL ({method} /v1{path})"),
        )
    }

    /// A 401 for a missing or refused key (the key itself is never echoed).
    pub fn unauthorized(missing: bool) -> ApiError {
        if missing {
            ApiError::new(
                401,
                "invalid_request_error",
                "You didn't provide an API key. You need to provide your API key in an \
                 Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        } else {
            ApiError {
                code: Some("invalid_api_key"),
                ..ApiError::new(
                    401,
                    "invalid_request_error",
                    "Incorrect API key provided. You can find your API key at \
                     https://platform.openai.com/account/api-keys.",
                )
            }
        }
    }

    /// A 403 for a key that is not allowed to read the Admin API (e.g. a project key).
    pub fn forbidden() -> ApiError {
        ApiError::new(
            403,
            "invalid_request_error",
            "You have insufficient permissions for this operation. Missing scopes: \
             api.management.read. Check that you have the correct role in your organization \
             and, if you are using a restricted API key, that it has the necessary scopes.",
        )
    }

    /// A 429 for a spent request budget.
    pub fn rate_limited() -> ApiError {
        ApiError {
            code: Some("rate_limit_exceeded"),
            ..ApiError::new(
                429,
                "requests",
                "Rate limit reached for requests. Please try again later.",
            )
        }
    }

    /// An injected server error.
    pub fn server_error(status: u16) -> ApiError {
        ApiError::new(
            status,
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let v = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }});
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

pub(super) type Res = Result<Value, ApiError>;

/// The query string, with `name[]` read as `name` (both forms of array parameters).
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: &str) -> Query {
        Query(
            url::form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| {
                    let k = k.strip_suffix("[]").unwrap_or(&k).to_owned();
                    (k, v.into_owned())
                })
                .collect(),
        )
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter as given (`name[]` read as `name`), in order.
    pub(super) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every value of a repeated parameter (`emails[]=a&emails[]=b`).
    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(super) fn enum_value(
        &self,
        name: &str,
        allowed: &[&str],
    ) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v)),
            Some(v) => Err(invalid_value(name, v, allowed)),
        }
    }

    pub(super) fn bool_value(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") | Some("True") | Some("1") => Ok(Some(true)),
            Some("false") | Some("False") | Some("0") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid(
                name,
                "invalid_type",
                format!("Invalid type for '{name}': expected a boolean, but got '{v}' instead."),
            )),
        }
    }
}

pub(super) fn invalid_value(name: &str, got: &str, allowed: &[&str]) -> ApiError {
    let list: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    ApiError::invalid(
        name,
        "invalid_value",
        format!(
            "Invalid value: '{got}'. Supported values are: {}.",
            list.join(", ")
        ),
    )
}

/// How one list endpoint pages, from the spec.
#[derive(Clone, Copy, Debug)]
pub struct ListSpec {
    /// Shape A or B.
    pub envelope: Envelope,
    /// `limit` when none is given.
    pub default_limit: usize,
    /// Smallest accepted `limit` (0 is read as the default: the spec allows it, and
    /// a page of nothing would make a client loop forever).
    pub min_limit: usize,
    /// Largest accepted `limit`.
    pub max_limit: usize,
    /// The default `order`, for endpoints that take one.
    pub order: Option<&'static str>,
    /// Whether the endpoint takes a `before` cursor.
    pub before: bool,
}

pub(super) const fn shape_a(default_limit: usize, min_limit: usize, max_limit: usize) -> ListSpec {
    ListSpec {
        envelope: Envelope::FirstLastId,
        default_limit,
        min_limit,
        max_limit,
        order: None,
        before: false,
    }
}

/// Projects, project users, service accounts, API keys: 1..=100, default 20.
pub const LIST_DEFAULT: ListSpec = shape_a(20, 1, 100);
/// Rate limits: default 100, with `before`.
pub const LIST_RATE_LIMITS: ListSpec = ListSpec {
    before: true,
    ..shape_a(100, 1, 100)
};
/// Certificates: newest first by default.
pub const LIST_CERTIFICATES: ListSpec = ListSpec {
    order: Some("desc"),
    ..shape_a(20, 1, 100)
};
/// Spend alerts: 0..=100, `order`, `before`.
pub const LIST_SPEND_ALERTS: ListSpec = ListSpec {
    order: Some("asc"),
    before: true,
    ..shape_a(20, 0, 100)
};
/// Project groups: shape B, 0..=100, default 20.
pub const LIST_GROUPS: ListSpec = ListSpec {
    envelope: Envelope::NextCursor,
    default_limit: 20,
    min_limit: 0,
    max_limit: 100,
    order: Some("asc"),
    before: false,
};
/// Project roles and role assignments: shape B, 0..=1000, default 1000 (the spec gives
/// no default for assignment lists; the roles list's is used).
pub const LIST_ROLES: ListSpec = ListSpec {
    envelope: Envelope::NextCursor,
    default_limit: 1000,
    min_limit: 0,
    max_limit: 1000,
    order: Some("asc"),
    before: false,
};

/// Base64url (no padding) of a page offset: the shape-B cursor is opaque on purpose, so a
/// client that passes an object id as `after` is caught.
pub fn encode_cursor(offset: usize) -> String {
    b64_encode(format!("sim-cursor:{offset}").as_bytes())
}

pub(crate) fn decode_cursor(cursor: &str) -> Option<usize> {
    let bytes = b64_decode(cursor)?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("sim-cursor:")?.parse().ok()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = u32::try_from(B64.iter().position(|b| *b == c)?).ok()?;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push(u8::try_from(bits >> nbits).ok()?);
            bits &= (1 << nbits) - 1;
        }
    }
    Some(out)
}

/// One page of a list, in the endpoint's envelope. `items` are in creation order.
pub fn page<'t, T, R: Serialize>(
    items: &[&'t T],
    q: &Query,
    spec: &ListSpec,
    id: impl Fn(&'t T) -> &'t str,
    render: impl Fn(&'t T) -> R,
) -> Answer {
    let limit = page_limit(q, spec)?;
    let desc = match spec.order {
        Some(default) => q.enum_value("order", &["asc", "desc"])?.unwrap_or(default) == "desc",
        None => false,
    };
    let ordered: Vec<&T> = if desc {
        items.iter().rev().copied().collect()
    } else {
        items.to_vec()
    };
    let (start, end) = page_window(q, spec, limit, &id, &ordered)?;
    let slice = &ordered[start..end];
    let has_more = end < ordered.len();
    let data: Vec<R> = slice.iter().map(|t| render(t)).collect();
    match spec.envelope {
        Envelope::NextCursor => bytes(&PageNext {
            object: "list",
            data,
            has_more,
            next: has_more.then(|| encode_cursor(end)),
        }),
        _ => bytes(&PageIds {
            object: "list",
            data,
            first_id: slice.first().map(|t| id(t)),
            last_id: slice.last().map(|t| id(t)),
            has_more,
        }),
    }
}

/// The page size a list request asks for, within the list's bounds; `0` means the default.
pub(super) fn page_limit(q: &Query, spec: &ListSpec) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(spec.default_limit),
        Some(raw) => {
            let n: i64 = raw.parse().map_err(|_| {
                ApiError::invalid(
                    "limit",
                    "invalid_type",
                    format!(
                        "Invalid type for 'limit': expected an integer, but got '{raw}' instead."
                    ),
                )
            })?;
            if n < i64::try_from(spec.min_limit).unwrap_or(i64::MAX) {
                return Err(ApiError::invalid(
                    "limit",
                    "integer_below_min_value",
                    format!(
                        "Invalid 'limit': integer below minimum value. Expected a value >= {}, but got {n} instead.",
                        spec.min_limit
                    ),
                ));
            }
            if n > i64::try_from(spec.max_limit).unwrap_or(i64::MAX) {
                return Err(ApiError::invalid(
                    "limit",
                    "integer_above_max_value",
                    format!(
                        "Invalid 'limit': integer above maximum value. Expected a value <= {}, but got {n} instead.",
                        spec.max_limit
                    ),
                ));
            }
            // 0 means the default; anything else was checked against the range above.
            Ok(usize::try_from(n)
                .ok()
                .filter(|n| *n != 0)
                .unwrap_or(spec.default_limit))
        }
    }
}

/// The `[start, end)` range of `ordered` a request's cursor (`after`/`before`, or an
/// opaque `next` for next-cursor lists) selects.
fn page_window<'t, T>(
    q: &Query,
    spec: &ListSpec,
    limit: usize,
    id: impl Fn(&'t T) -> &'t str,
    ordered: &[&'t T],
) -> Result<(usize, usize), ApiError> {
    let position = |cursor: &str, param: &str| {
        ordered.iter().position(|t| id(t) == cursor).ok_or_else(|| {
            ApiError::invalid(
                param,
                "invalid_value",
                format!("Invalid '{param}': no object with id '{cursor}' in this list."),
            )
        })
    };
    let window = match spec.envelope {
        Envelope::NextCursor => {
            let start = match q.get("after") {
                None | Some("") => 0,
                Some(c) => decode_cursor(c).ok_or_else(|| {
                    ApiError::invalid(
                        "after",
                        "invalid_value",
                        format!("Invalid 'after': '{c}' is not a cursor returned by this list (pass the previous page's `next`)."),
                    )
                })?,
            };
            let start = start.min(ordered.len());
            (start, (start + limit).min(ordered.len()))
        }
        _ => match (q.get("after"), q.get("before").filter(|_| spec.before)) {
            (Some(a), _) if !a.is_empty() => {
                let start = position(a, "after")? + 1;
                (start, (start + limit).min(ordered.len()))
            }
            (_, Some(b)) if !b.is_empty() => {
                let end = position(b, "before")?;
                (end.saturating_sub(limit), end)
            }
            _ => (0, limit.min(ordered.len())),
        },
    };
    Ok(window)
}

/// Shape A: `{object, data, first_id, last_id, has_more}`.
#[derive(Serialize)]
struct PageIds<'a, R> {
    object: &'static str,
    data: Vec<R>,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    has_more: bool,
}

/// Shape B: `{object, data, has_more, next}`.
#[derive(Serialize)]
struct PageNext<R> {
    object: &'static str,
    data: Vec<R>,
    has_more: bool,
    next: Option<String>,
}

/// A JSON answer's bytes.
pub type Answer = Result<Vec<u8>, ApiError>;

pub(super) fn bytes(x: &impl Serialize) -> Answer {
    serde_json::to_vec(x).map_err(|e| ApiError::server_error(500).with_message(e.to_string()))
}

/// One request, as the HTTP layer hands it over.
pub struct Request<'a> {
    /// `GET`, `POST` or `DELETE`.
    pub method: &'a str,
    /// Path after `/v1`.
    pub path: &'a str,
    /// Parsed query.
    pub query: Query,
    /// Raw body.
    pub body: &'a [u8],
}

/// Answers one request against the organization: reads under the read lock, writes under
/// the write lock.
pub fn handle(org: &RwLock<Org>, req: &Request<'_>) -> Result<Vec<u8>, ApiError> {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    if req.method == "GET" {
        let guard = org
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        read(&guard, req, &segs)
    } else {
        let value = {
            let mut guard = org
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            write(&mut guard, req, &segs)?
        };
        bytes(&value)
    }
}

impl ApiError {
    fn with_message(mut self, m: String) -> ApiError {
        self.message = m;
        self
    }
}

fn project<'o>(org: &'o Org, id: &str) -> Result<&'o Project, ApiError> {
    org.projects
        .iter()
        .find(|p| p.id.as_str() == id)
        .ok_or_else(|| ApiError::not_found("project", id))
}

fn project_idx(org: &Org, id: &str) -> Result<usize, ApiError> {
    org.project_index(id)
        .ok_or_else(|| ApiError::not_found("project", id))
}

fn archived_error() -> ApiError {
    ApiError::bad_request("Project is archived.")
}

/// The role ids assigned to a project user (`users`) or group, by the member's id.
fn member_roles_mut<'a>(
    project: &'a mut Project,
    users: bool,
    owner: &str,
) -> Option<&'a mut Vec<RoleId>> {
    if users {
        project
            .users
            .iter_mut()
            .find(|u| u.id.as_str() == owner)
            .map(|u| &mut u.roles)
    } else {
        project
            .groups
            .iter_mut()
            .find(|g| g.group_id.as_str() == owner)
            .map(|g| &mut g.roles)
    }
}

pub(super) fn found<T>(x: Option<T>, what: &str, id: &str) -> Result<T, ApiError> {
    x.ok_or_else(|| ApiError::not_found(what, id))
}

fn read(org: &Org, req: &Request<'_>, segs: &[&str]) -> Answer {
    let q = &req.query;
    match segs {
        ["organization", "projects"] => {
            let all = q.bool_value("include_archived")?.unwrap_or(false);
            let items: Vec<&Project> = org
                .projects
                .iter()
                .filter(|p| all || !p.is_archived())
                .collect();
            page(&items, q, &LIST_DEFAULT, |p| p.id.as_str(), render::project)
        }
        ["organization", "projects", pid] => bytes(&render::project(project(org, pid)?)),
        ["organization", "costs"] => bytes(&super::costs::read(org, q, now())?),
        ["organization", "projects", pid, rest @ ..] => {
            let p = project(org, pid)?;
            read_project(org, p, q, rest, req)
        }
        ["projects", pid, "users", uid, "roles", rest @ ..] => {
            let p = project(org, pid)?;
            let u = found(p.user(uid), "user", uid)?;
            read_assignments(p, &u.roles, req, rest)
        }
        ["projects", pid, "groups", gid, "roles", rest @ ..] => {
            let p = project(org, pid)?;
            let g = found(p.group(gid), "group", gid)?;
            read_assignments(p, &g.roles, req, rest)
        }
        ["projects", pid, "roles"] => {
            let p = project(org, pid)?;
            let items: Vec<&Role> = p.roles.iter().collect();
            page(&items, q, &LIST_ROLES, |r| r.id.as_str(), render::role)
        }
        ["projects", pid, "roles", rid] => {
            let p = project(org, pid)?;
            bytes(&render::role(found(p.role(rid), "role", rid)?))
        }
        ["organization", rest @ ..] => api_org::read(org, req, rest),
        _ => Err(ApiError::invalid_url(req.method, req.path)),
    }
}

fn read_assignments(p: &Project, ids: &[RoleId], req: &Request<'_>, rest: &[&str]) -> Answer {
    let q = &req.query;
    let roles = render::roles_of(p, ids);
    match rest {
        [] => page(
            &roles,
            q,
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

fn read_project(org: &Org, p: &Project, q: &Query, rest: &[&str], req: &Request<'_>) -> Answer {
    match rest {
        ["users"] => {
            if p.is_archived() {
                return Err(archived_error());
            }
            let items: Vec<&ProjectUser> = p.users.iter().collect();
            page(
                &items,
                q,
                &LIST_DEFAULT,
                |u| u.id.as_str(),
                render::project_user,
            )
        }
        ["users", uid] => bytes(&render::project_user(found(p.user(uid), "user", uid)?)),
        ["service_accounts"] => {
            if p.is_archived() {
                return Err(archived_error());
            }
            let items: Vec<&ServiceAccount> = p.service_accounts.iter().collect();
            page(
                &items,
                q,
                &LIST_DEFAULT,
                |s| s.id.as_str(),
                render::service_account,
            )
        }
        ["service_accounts", sid] => bytes(&render::service_account(found(
            p.service_account(sid),
            "service account",
            sid,
        )?)),
        ["api_keys"] => list_api_keys(org, p, q),
        ["api_keys", kid] => {
            let k = found(
                p.api_keys.iter().find(|k| k.id.as_str() == *kid),
                "API key",
                kid,
            )?;
            bytes(&render::api_key(org, p, k))
        }
        ["rate_limits"] => {
            let items: Vec<_> = p.rate_limits.iter().collect();
            page(
                &items,
                q,
                &LIST_RATE_LIMITS,
                |r| r.id.as_str(),
                render::rate_limit,
            )
        }
        ["model_permissions"] => bytes(&render::model_permissions(p)),
        ["hosted_tool_permissions"] => bytes(&render::hosted_tool_permissions(p)),
        ["groups"] => list_project_groups(p, q),
        ["groups", gid] => {
            q.enum_value("group_type", &["group", "tenant_group"])?;
            bytes(&render::project_group(
                p,
                found(p.group(gid), "group", gid)?,
            ))
        }
        ["data_retention"] => bytes(&render::data_retention(p)),
        ["spend_limit"] => match &p.spend_limit {
            Some(l) => bytes(&render_org::spend_limit("project.spend_limit", l)),
            None => Err(ApiError::spend_limit_not_found()),
        },
        ["spend_alerts"] => {
            let items: Vec<&SpendAlert> = p.spend_alerts.iter().collect();
            page(
                &items,
                q,
                &LIST_SPEND_ALERTS,
                |a| a.id.as_str(),
                render::spend_alert,
            )
        }
        ["spend_alerts", aid] => {
            let a = p.spend_alerts.iter().find(|a| a.id.as_str() == *aid);
            bytes(&render::spend_alert(found(a, "spend alert", aid)?))
        }
        ["certificates"] => {
            let items: Vec<_> = p.certificates.iter().collect();
            page(
                &items,
                q,
                &LIST_CERTIFICATES,
                |c| c.id.as_str(),
                render::certificate,
            )
        }
        _ => Err(ApiError::invalid_url(req.method, req.path)),
    }
}

/// `GET .../api_keys`: by default only keys whose owner still has access to the project.
fn list_api_keys(org: &Org, p: &Project, q: &Query) -> Answer {
    // Without the parameter the API shows only keys whose owner still has access.
    let access = q
        .enum_value("owner_project_access", &["active", "inactive", "any"])?
        .unwrap_or("active");
    let items: Vec<&ApiKey> = p
        .api_keys
        .iter()
        .filter(|k| access == "any" || p.owner_access(k) == access)
        .collect();
    page(
        &items,
        q,
        &LIST_DEFAULT,
        |k| k.id.as_str(),
        |k| render::api_key(org, p, k),
    )
}

/// `GET .../groups`.
fn list_project_groups(p: &Project, q: &Query) -> Answer {
    let items: Vec<&ProjectGroup> = p.groups.iter().collect();
    page(
        &items,
        q,
        &LIST_GROUPS,
        |g| g.group_id.as_str(),
        |g| render::project_group(p, g),
    )
}

/// A JSON request body, with validation that answers the API's 400s.
pub(super) struct Body(pub(super) Map<String, Value>);

impl Body {
    pub(super) fn parse(raw: &[u8]) -> Result<Body, ApiError> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Map::new()));
        }
        match serde_json::from_slice::<Value>(raw) {
            Ok(Value::Object(m)) => Ok(Body(m)),
            Ok(_) => Err(ApiError::bad_request(
                "Invalid body: the request body must be a JSON object.",
            )),
            Err(_) => Err(ApiError::bad_request(
                "We could not parse the JSON body of your request. (HINT: This likely means \
                 you aren't using your HTTP library correctly. The OpenAI API expects a JSON \
                 payload, but what was sent was not valid JSON.)",
            )),
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub(super) fn missing(name: &str) -> ApiError {
        ApiError::invalid(
            name,
            "missing_required_parameter",
            format!("Missing required parameter: '{name}'."),
        )
    }

    pub(super) fn wrong_type(name: &str, expected: &str, got: &Value) -> ApiError {
        let got = match got {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        ApiError::invalid(
            name,
            "invalid_type",
            format!("Invalid type for '{name}': expected {expected}, but got {got} instead."),
        )
    }

    pub(super) fn opt_str(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(Body::wrong_type(name, "a string", v)),
        }
    }

    pub(super) fn req_str(&self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name)?.ok_or_else(|| Body::missing(name))
    }

    pub(super) fn opt_enum(
        &self,
        name: &str,
        allowed: &[&str],
    ) -> Result<Option<String>, ApiError> {
        let v = self.opt_str(name)?;
        if let Some(s) = &v
            && !allowed.contains(&s.as_str())
        {
            return Err(invalid_value(name, s, allowed));
        }
        Ok(v)
    }

    pub(super) fn req_enum(&self, name: &str, allowed: &[&str]) -> Result<String, ApiError> {
        self.opt_enum(name, allowed)?
            .ok_or_else(|| Body::missing(name))
    }

    pub(super) fn opt_int(&self, name: &str, min: i64) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => {
                let n = v
                    .as_i64()
                    .ok_or_else(|| Body::wrong_type(name, "an integer", v))?;
                if n < min {
                    return Err(ApiError::invalid(
                        name,
                        "integer_below_min_value",
                        format!(
                            "Invalid '{name}': integer below minimum value. Expected a value >= {min}, but got {n} instead."
                        ),
                    ));
                }
                Ok(Some(n))
            }
        }
    }

    pub(super) fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Body::wrong_type(name, "a boolean", v)),
        }
    }

    pub(super) fn opt_str_array(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(Body::wrong_type(name, "an array of strings", other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(Body::wrong_type(name, "an array", v)),
        }
    }

    pub(super) fn req_str_array(&self, name: &str) -> Result<Vec<String>, ApiError> {
        self.opt_str_array(name)?.ok_or_else(|| Body::missing(name))
    }
}

/// The current time in Unix seconds (objects created through the API are created now).
pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn write(org: &mut Org, req: &Request<'_>, segs: &[&str]) -> Res {
    let body = || Body::parse(req.body);
    match (req.method, segs) {
        ("POST", ["organization", "projects"]) => create_project(org, &body()?),
        ("POST", ["organization", "projects", pid]) => update_project(org, pid, body),
        ("POST", ["organization", "projects", pid, "archive"]) => archive_project(org, pid),
        (_, ["organization", "projects", pid, rest @ ..]) => {
            let i = project_idx(org, pid)?;
            write_project(org, i, req, rest, body)
        }
        (
            _,
            [
                "projects",
                pid,
                kind @ ("users" | "groups"),
                owner,
                "roles",
                rest @ ..,
            ],
        ) => {
            let i = project_idx(org, pid)?;
            write_assignment(org, i, req, kind, owner, rest, body)
        }
        ("POST", ["projects", pid, "roles"]) => create_role(org, pid, body),
        ("POST", ["projects", pid, "roles", rid]) => update_role(org, pid, rid, body),
        ("DELETE", ["projects", pid, "roles", rid]) => delete_role(org, pid, rid),
        (_, ["organization", rest @ ..]) => api_org::write(org, req, rest, body),
        _ => Err(ApiError::invalid_url(req.method, req.path)),
    }
}

/// `POST /organization/projects`.
fn create_project(org: &mut Org, b: &Body) -> Res {
    let name = b.req_str("name")?;
    let residency = b.opt_enum("residency", &RESIDENCIES)?;
    let external_key_id = b.opt_str("external_key_id")?;
    let id = ProjectId(org.next_id("proj_"));
    let mut p = Project::new(id.clone(), Some(name.clone()), now());
    p.residency = residency;
    p.external_key_id = external_key_id;
    let v = render::value(render::project(&p));
    org.projects.push(p);
    let payload = json!({"id": id, "data": {"name": name, "title": name}});
    org.record("project.created", Some(&id), payload);
    Ok(v)
}

/// `POST /organization/projects/{id}`: renames an active project.
fn update_project(org: &mut Org, pid: &str, body: impl Fn() -> Result<Body, ApiError>) -> Res {
    let i = project_idx(org, pid)?;
    let b = body()?;
    let p = &mut org.projects[i];
    if p.is_archived() {
        return Err(archived_error());
    }
    let name = b.opt_str("name")?;
    if let Some(n) = &name {
        p.name = Some(n.clone());
    }
    if let Some(k) = b.opt_str("external_key_id")? {
        p.external_key_id = Some(k);
    }
    let v = render::value(render::project(p));
    let id = p.id.clone();
    let changes = name.map_or_else(|| json!({}), |n| json!({"title": n}));
    let payload = json!({"id": id, "changes_requested": changes});
    org.record("project.updated", Some(&id), payload);
    Ok(v)
}

/// `POST /organization/projects/{id}/archive`: archiving twice keeps the first time.
fn archive_project(org: &mut Org, pid: &str) -> Res {
    let i = project_idx(org, pid)?;
    let p = &mut org.projects[i];
    if !p.is_archived() {
        p.status = "archived".into();
        p.archived_at = Some(now());
    }
    let v = render::value(render::project(p));
    let id = p.id.clone();
    org.record("project.archived", Some(&id), json!({"id": id}));
    Ok(v)
}

/// `POST /projects/{id}/roles`: a custom role, unique by name in its project.
fn create_role(org: &mut Org, pid: &str, body: impl Fn() -> Result<Body, ApiError>) -> Res {
    // An unknown project is a 404 before any body check, like every other path.
    let i = project_idx(org, pid)?;
    let b = body()?;
    let name = b.req_str("role_name")?;
    let permissions = b.req_str_array("permissions")?;
    let description = b.opt_str("description")?;
    if org.projects[i].roles.iter().any(|r| r.name == name) {
        return Err(ApiError::invalid(
            "role_name",
            "invalid_value",
            format!("A role named '{name}' already exists in this project."),
        ));
    }
    let id = RoleId(org.next_id("role_"));
    let t = now();
    let role = Role {
        id,
        name,
        description,
        permissions,
        resource_type: "api.project".into(),
        predefined_role: false,
        created_at: Some(t),
        updated_at: Some(t),
        created_by: None,
        extra: Map::new(),
    };
    let v = render::value(render::role(&role));
    let pid = org.projects[i].id.clone();
    let payload = audit_log::role_created(&role, Some(&pid));
    org.projects[i].roles.push(role);
    org.record("role.created", Some(&pid), payload);
    Ok(v)
}

/// `POST /projects/{id}/roles/{role_id}`.
fn update_role(
    org: &mut Org,
    pid: &str,
    rid: &str,
    body: impl Fn() -> Result<Body, ApiError>,
) -> Res {
    let i = project_idx(org, pid)?;
    let b = body()?;
    let p = &mut org.projects[i];
    let pid = p.id.clone();
    let r = found(
        p.roles.iter_mut().find(|r| r.id.as_str() == rid),
        "role",
        rid,
    )?;
    let old = r.clone();
    if let Some(perms) = b.opt_str_array("permissions")? {
        r.permissions = perms;
    }
    if let Some(d) = b.opt_str("description")? {
        r.description = Some(d);
    }
    if let Some(n) = b.opt_str("role_name")? {
        r.name = n;
    }
    r.updated_at = Some(now());
    let v = render::value(render::role(r));
    let payload = audit_log::role_updated(&old, r, Some(&pid));
    org.record("role.updated", Some(&pid), payload);
    Ok(v)
}

/// `DELETE /projects/{id}/roles/{role_id}`: members holding the role lose it.
fn delete_role(org: &mut Org, pid: &str, rid: &str) -> Res {
    let i = project_idx(org, pid)?;
    let p = &mut org.projects[i];
    let pos = found(
        p.roles.iter().position(|r| r.id.as_str() == rid),
        "role",
        rid,
    )?;
    let role = p.roles.remove(pos);
    for u in &mut p.users {
        u.roles.retain(|r| r != &role.id);
    }
    for g in &mut p.groups {
        g.roles.retain(|r| r != &role.id);
    }
    let pid = p.id.clone();
    org.record("role.deleted", Some(&pid), json!({"id": role.id}));
    Ok(json!({"object": "role.deleted", "id": role.id, "deleted": true}))
}

fn write_assignment(
    org: &mut Org,
    i: usize,
    req: &Request<'_>,
    kind: &str,
    owner: &str,
    rest: &[&str],
    body: impl Fn() -> Result<Body, ApiError>,
) -> Res {
    let users = kind == "users";
    let principal = if users { "user" } else { "group" };
    let p = &org.projects[i];
    let assigned: &[RoleId] = if users {
        &found(p.user(owner), "user", owner)?.roles
    } else {
        &found(p.group(owner), "group", owner)?.roles
    };
    match (req.method, rest) {
        ("POST", []) => {
            let b = body()?;
            let rid = b.req_str("role_id")?;
            let role = found(p.role(&rid), "role", &rid)?.clone();
            let already = assigned.iter().any(|r| r.as_str() == rid);
            let v = if users {
                json!({"object": "user.role", "user": render::org_user(org, p, owner), "role": render::role(&role)})
            } else {
                let g = found(p.group(owner), "group", owner)?;
                json!({"object": "group.role", "group": render::group_summary(org, g), "role": render::role(&role)})
            };
            if !already && let Some(list) = member_roles_mut(&mut org.projects[i], users, owner) {
                list.push(role.id.clone());
            }
            let pid = org.projects[i].id.clone();
            let payload =
                audit_log::assignment(Some(role.id.as_str()), owner, principal, Some(&pid));
            org.record("role.assignment.created", Some(&pid), payload);
            Ok(v)
        }
        ("DELETE", [rid]) => {
            if !assigned.iter().any(|r| r.as_str() == *rid) {
                return Err(ApiError::not_found("role assignment", rid));
            }
            if let Some(list) = member_roles_mut(&mut org.projects[i], users, owner) {
                list.retain(|r| r.as_str() != *rid);
            }
            let pid = org.projects[i].id.clone();
            let payload = audit_log::assignment(Some(rid), owner, principal, Some(&pid));
            org.record("role.assignment.deleted", Some(&pid), payload);
            let object = if users {
                "user.role.deleted"
            } else {
                "group.role.deleted"
            };
            Ok(json!({"object": object, "deleted": true}))
        }
        _ => Err(ApiError::invalid_url(req.method, req.path)),
    }
}

pub(super) fn spend_alert_from(b: &Body, id: SpendAlertId) -> Result<SpendAlert, ApiError> {
    let threshold = b
        .opt_int("threshold_amount", 0)?
        .ok_or_else(|| Body::missing("threshold_amount"))?;
    let currency = b.req_enum("currency", &["USD"])?;
    let interval = b.req_enum("interval", &["month"])?;
    let channel = match b.get("notification_channel") {
        None => return Err(Body::missing("notification_channel")),
        Some(Value::Object(m)) => Body(m.clone()),
        Some(v) => return Err(Body::wrong_type("notification_channel", "an object", v)),
    };
    let channel_type = channel
        .req_enum("type", &["email"])
        .map_err(|e| prefix_param(e, "notification_channel"))?;
    let recipients = channel
        .req_str_array("recipients")
        .map_err(|e| prefix_param(e, "notification_channel"))?;
    let subject_prefix = channel
        .opt_str("subject_prefix")
        .map_err(|e| prefix_param(e, "notification_channel"))?;
    Ok(SpendAlert {
        id,
        threshold_amount: threshold,
        currency,
        interval,
        channel_type,
        recipients,
        subject_prefix,
        extra: Map::new(),
    })
}

fn prefix_param(mut e: ApiError, parent: &str) -> ApiError {
    if let Some(p) = &e.param {
        let full = format!("{parent}.{p}");
        e.message = e.message.replace(&format!("'{p}'"), &format!("'{full}'"));
        e.param = Some(full);
    }
    e
}

pub(super) fn new_secret(org: &mut Org, prefix: &str) -> String {
    let a = org.next_id("");
    let b = org.next_id("");
    format!("{prefix}{a}{b}")
}

fn write_project(
    org: &mut Org,
    i: usize,
    req: &Request<'_>,
    rest: &[&str],
    body: impl Fn() -> Result<Body, ApiError>,
) -> Res {
    let archived = org.projects[i].is_archived();
    match (req.method, rest) {
        ("POST", ["users"]) => add_project_user(org, i, &body()?, archived),
        ("POST", ["users", uid]) => update_project_user(org, i, uid, &body()?, archived),
        ("DELETE", ["users", uid]) => remove_project_user(org, i, uid),
        ("POST", ["service_accounts"]) => create_service_account(org, i, &body()?, archived),
        ("POST", ["service_accounts", sid]) => update_service_account(org, i, sid, &body()?),
        ("DELETE", ["service_accounts", sid]) => delete_service_account(org, i, sid),
        ("POST", ["service_accounts", sid, "api_keys"]) => {
            create_service_account_key(org, i, sid, &body()?)
        }
        ("DELETE", ["api_keys", kid]) => delete_api_key(org, i, kid),
        ("POST", ["rate_limits", rid]) => update_rate_limit(org, i, rid, &body()?),
        ("POST", ["model_permissions"]) => set_model_permissions(org, i, &body()?),
        ("DELETE", ["model_permissions"]) => {
            org.projects[i].model_permissions = None;
            Ok(json!({"object": "project.model_permissions.deleted", "deleted": true}))
        }
        ("POST", ["hosted_tool_permissions"]) => set_hosted_tool_permissions(org, i, &body()?),
        ("POST", ["groups"]) => add_project_group(org, i, &body()?),
        ("DELETE", ["groups", gid]) => remove_project_group(org, i, gid),
        ("POST", ["data_retention"]) => set_data_retention(org, i, &body()?),
        ("POST", ["spend_limit"]) => {
            let limit = api_org::spend_limit_from(&body()?, org.projects[i].spend_limit.as_ref())?;
            let v = render_org::spend_limit("project.spend_limit", &limit);
            org.projects[i].spend_limit = Some(limit);
            Ok(v)
        }
        ("DELETE", ["spend_limit"]) => {
            if org.projects[i].spend_limit.take().is_none() {
                return Err(ApiError::spend_limit_not_found());
            }
            Ok(json!({"object": "project.spend_limit.deleted", "deleted": true}))
        }
        ("POST", ["spend_alerts"]) => create_spend_alert(org, i, &body()?),
        ("POST", ["spend_alerts", aid]) => update_spend_alert(org, i, aid, &body()?),
        ("DELETE", ["spend_alerts", aid]) => delete_spend_alert(org, i, aid),
        ("POST", ["certificates", action @ ("activate" | "deactivate")]) => {
            set_certificates_active(org, i, action, &body()?)
        }
        _ => Err(ApiError::invalid_url(req.method, req.path)),
    }
}

/// `POST /organization/projects/{id}/users`: adds a directory user by id or email.
fn add_project_user(org: &mut Org, i: usize, b: &Body, archived: bool) -> Res {
    let role = b.req_enum("role", &["owner", "member"])?;
    let user_id = b.opt_str("user_id")?;
    let email = b.opt_str("email")?;
    if archived {
        return Err(archived_error());
    }
    let dir = match (&user_id, &email) {
        (Some(id), _) => found(org.users.get(&UserId::from(id.as_str())), "user", id)?,
        (None, Some(e)) => found(
            org.users.values().find(|u| {
                u.email
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(e))
            }),
            "user with email",
            e,
        )?,
        (None, None) => return Err(Body::missing("user_id")),
    };
    let p = &org.projects[i];
    if p.user(dir.id.as_str()).is_some() {
        return Err(ApiError::invalid(
            "user_id",
            "invalid_value",
            format!("User '{}' is already a member of this project.", dir.id),
        ));
    }
    let user = ProjectUser {
        id: dir.id.clone(),
        name: dir.name.clone(),
        email: dir.email.clone(),
        role,
        added_at: now(),
        roles: Vec::new(),
        extra: Map::new(),
    };
    let v = render::value(render::project_user(&user));
    let payload = json!({"id": user.id, "data": {"role": user.role}});
    org.projects[i].users.push(user);
    org.record_in("user.added", i, payload);
    Ok(v)
}

/// `POST .../users/{user_id}`: changes a member's role.
fn update_project_user(org: &mut Org, i: usize, uid: &str, b: &Body, archived: bool) -> Res {
    let role = b.opt_enum("role", &["owner", "member"])?;
    if archived {
        return Err(archived_error());
    }
    let p = &mut org.projects[i];
    let u = found(
        p.users.iter_mut().find(|u| u.id.as_str() == uid),
        "user",
        uid,
    )?;
    if let Some(role) = &role {
        u.role.clone_from(role);
    }
    let v = render::value(render::project_user(u));
    let changes = role.map_or_else(|| json!({}), |r| json!({"role": r}));
    org.record_in(
        "user.updated",
        i,
        json!({"id": uid, "changes_requested": changes}),
    );
    Ok(v)
}

/// `DELETE .../users/{user_id}`.
fn remove_project_user(org: &mut Org, i: usize, uid: &str) -> Res {
    let p = &mut org.projects[i];
    let pos = found(
        p.users.iter().position(|u| u.id.as_str() == uid),
        "user",
        uid,
    )?;
    let u = p.users.remove(pos);
    org.record_in("user.deleted", i, json!({"id": u.id}));
    Ok(json!({"object": "organization.project.user.deleted", "id": u.id, "deleted": true}))
}

/// `POST .../service_accounts`: the answer carries the new account's key unless `create_service_account_only`.
fn create_service_account(org: &mut Org, i: usize, b: &Body, archived: bool) -> Res {
    let name = b.req_str("name")?;
    let only = b.opt_bool("create_service_account_only")?.unwrap_or(false);
    if archived {
        return Err(archived_error());
    }
    let id = ServiceAccountId(org.next_id("svc_acct_"));
    let t = now();
    let sa = ServiceAccount {
        id: id.clone(),
        name,
        role: if only { "none" } else { "member" }.into(),
        created_at: t,
        extra: Map::new(),
    };
    let sa_payload = json!({"id": id, "data": {"role": sa.role}});
    let mut key_event = None;
    let key = if only {
        Value::Null
    } else {
        let key_id = ApiKeyId(org.next_id("key_"));
        key_event = Some(json!({"id": key_id, "data": {}}));
        let value = new_secret(org, "sk-svcacct-");
        let owner = KeyOwner::ServiceAccount(id.clone());
        let v = json!({
            "object": "organization.project.service_account.api_key",
            "value": value,
            "name": "Secret Key",
            "created_at": t,
            "id": key_id,
        });
        org.projects[i].api_keys.push(ApiKey {
            redacted_value: redacted_value(key_id.as_str(), &owner),
            id: key_id,
            name: "Secret Key".into(),
            created_at: t,
            last_used_at: None,
            owner,
            owner_project_access: None,
            extra: Map::new(),
        });
        v
    };
    let mut v = render::value(render::service_account(&sa));
    if let Value::Object(m) = &mut v {
        m.insert("api_key".into(), key);
    }
    org.projects[i].service_accounts.push(sa);
    org.record_in("service_account.created", i, sa_payload);
    if let Some(payload) = key_event {
        org.record_in("api_key.created", i, payload);
    }
    Ok(v)
}

/// `POST .../service_accounts/{id}`: renames or changes the role.
fn update_service_account(org: &mut Org, i: usize, sid: &str, b: &Body) -> Res {
    let name = b.opt_str("name")?;
    let role = b.opt_enum("role", &["member", "owner"])?;
    let p = &mut org.projects[i];
    let sa = found(
        p.service_accounts.iter_mut().find(|s| s.id.as_str() == sid),
        "service account",
        sid,
    )?;
    if let Some(n) = name {
        sa.name = n;
    }
    if let Some(r) = &role {
        sa.role.clone_from(r);
    }
    let v = render::value(render::service_account(sa));
    let changes = role.map_or_else(|| json!({}), |r| json!({"role": r}));
    let payload = json!({"id": sid, "changes_requested": changes});
    org.record_in("service_account.updated", i, payload);
    Ok(v)
}

/// `DELETE .../service_accounts/{id}`, with the account's keys.
fn delete_service_account(org: &mut Org, i: usize, sid: &str) -> Res {
    let p = &mut org.projects[i];
    let pos = found(
        p.service_accounts.iter().position(|s| s.id.as_str() == sid),
        "service account",
        sid,
    )?;
    let sa = p.service_accounts.remove(pos);
    // A service account's keys go with it.
    p.api_keys
        .retain(|k| k.owner != KeyOwner::ServiceAccount(sa.id.clone()));
    org.record_in("service_account.deleted", i, json!({"id": sa.id}));
    Ok(
        json!({"object": "organization.project.service_account.deleted", "id": sa.id, "deleted": true}),
    )
}

/// `POST .../service_accounts/{id}/api_keys`: the only answer that shows a key's secret.
fn create_service_account_key(org: &mut Org, i: usize, sid: &str, b: &Body) -> Res {
    let name = b.opt_str("name")?.unwrap_or_else(|| "Secret Key".into());
    let scopes = b.opt_str_array("scopes")?;
    found(org.projects[i].service_account(sid), "service account", sid)?;
    let key_id = ApiKeyId(org.next_id("key_"));
    let value = new_secret(org, "sk-svcacct-");
    let owner = KeyOwner::ServiceAccount(ServiceAccountId::from(sid));
    let t = now();
    let mut extra = Map::new();
    let mut data = Map::new();
    if let Some(s) = scopes {
        extra.insert("scopes".into(), json!(s));
        data.insert("scopes".into(), json!(s));
    }
    let payload = json!({"id": key_id, "data": data});
    let v = json!({
        "object": "organization.project.service_account.api_key",
        "value": value,
        "name": name,
        "created_at": t,
        "id": key_id,
    });
    org.projects[i].api_keys.push(ApiKey {
        redacted_value: redacted_value(key_id.as_str(), &owner),
        id: key_id,
        name,
        created_at: t,
        last_used_at: None,
        owner,
        owner_project_access: None,
        extra,
    });
    org.record_in("api_key.created", i, payload);
    Ok(v)
}

/// `DELETE .../api_keys/{key_id}`.
fn delete_api_key(org: &mut Org, i: usize, kid: &str) -> Res {
    let p = &mut org.projects[i];
    let pos = found(
        p.api_keys.iter().position(|k| k.id.as_str() == kid),
        "API key",
        kid,
    )?;
    let k = p.api_keys.remove(pos);
    org.record_in("api_key.deleted", i, json!({"id": k.id}));
    Ok(json!({"object": "organization.project.api_key.deleted", "id": k.id, "deleted": true}))
}

/// `POST .../rate_limits/{id}`: every limit is validated before any is changed.
fn update_rate_limit(org: &mut Org, i: usize, rid: &str, b: &Body) -> Res {
    let main = [
        b.opt_int("max_requests_per_1_minute", 0)?,
        b.opt_int("max_tokens_per_1_minute", 0)?,
    ];
    let mut optional = Vec::new();
    for field in RATE_LIMIT_OPTIONAL {
        if let Some(n) = b.opt_int(field, 0)? {
            optional.push((field, n));
        }
    }
    let p = &mut org.projects[i];
    let r = found(
        p.rate_limits.iter_mut().find(|r| r.id.as_str() == rid),
        "rate limit",
        rid,
    )?;
    let mut changes = Map::new();
    if let Some(n) = main[0] {
        r.max_requests_per_1_minute = n;
        changes.insert("max_requests_per_1_minute".into(), json!(n));
    }
    if let Some(n) = main[1] {
        r.max_tokens_per_1_minute = n;
        changes.insert("max_tokens_per_1_minute".into(), json!(n));
    }
    for (field, n) in optional {
        r.optional.insert(field, n);
        changes.insert(field.into(), json!(n));
    }
    let v = render::value(render::rate_limit(r));
    let payload = json!({"id": rid, "changes_requested": changes});
    org.record_in("rate_limit.updated", i, payload);
    Ok(v)
}

/// `POST .../model_permissions`.
fn set_model_permissions(org: &mut Org, i: usize, b: &Body) -> Res {
    let mode = b.req_enum("mode", &["allow_list", "deny_list"])?;
    let model_ids = b.req_str_array("model_ids")?;
    let p = &mut org.projects[i];
    p.model_permissions = Some(ModelPermissions { mode, model_ids });
    Ok(render::value(render::model_permissions(p)))
}

/// `POST .../hosted_tool_permissions`: every tool is validated before any is changed.
fn set_hosted_tool_permissions(org: &mut Org, i: usize, b: &Body) -> Res {
    let mut changes = Vec::new();
    for (t, tool) in HOSTED_TOOLS.iter().enumerate() {
        match b.get(tool) {
            None => {}
            Some(Value::Object(m)) => match m.get("enabled") {
                Some(Value::Bool(e)) => changes.push((t, *e)),
                Some(v) => {
                    return Err(Body::wrong_type(&format!("{tool}.enabled"), "a boolean", v));
                }
                None => return Err(Body::missing(&format!("{tool}.enabled"))),
            },
            Some(v) => return Err(Body::wrong_type(tool, "an object", v)),
        }
    }
    let p = &mut org.projects[i];
    for (t, e) in changes {
        p.hosted_tools[t] = e;
    }
    Ok(render::value(render::hosted_tool_permissions(p)))
}

/// `POST .../groups`: gives a directory group a project role.
fn add_project_group(org: &mut Org, i: usize, b: &Body) -> Res {
    let gid = b.req_str("group_id")?;
    let role = b.req_str("role")?;
    let dir = found(org.groups.get(&GroupId::from(gid.as_str())), "group", &gid)?.clone();
    let p = &org.projects[i];
    let role = found(p.role(&role), "role", &role)?.id.clone();
    if p.group(&gid).is_some() {
        return Err(ApiError::invalid(
            "group_id",
            "invalid_value",
            format!("Group '{gid}' already has access to this project."),
        ));
    }
    let g = ProjectGroup {
        group_id: GroupId(gid),
        group_name: dir.name,
        group_type: dir.group_type,
        created_at: now(),
        roles: vec![role],
        extra: Map::new(),
    };
    let v = render::value(render::project_group(p, &g));
    let pid = p.id.clone();
    let role = g.roles.first().map(RoleId::as_str);
    let payload = audit_log::assignment(role, g.group_id.as_str(), "group", Some(&pid));
    org.projects[i].groups.push(g);
    org.record_in("role.assignment.created", i, payload);
    Ok(v)
}

/// `DELETE .../groups/{group_id}`.
fn remove_project_group(org: &mut Org, i: usize, gid: &str) -> Res {
    let p = &mut org.projects[i];
    let pos = found(
        p.groups.iter().position(|g| g.group_id.as_str() == gid),
        "group",
        gid,
    )?;
    let g = p.groups.remove(pos);
    let pid = p.id.clone();
    // One event per role the group held on the project (one without a role if it held none).
    let roles: Vec<Option<&str>> = if g.roles.is_empty() {
        vec![None]
    } else {
        g.roles.iter().map(|r| Some(r.as_str())).collect()
    };
    for role in roles {
        let payload = audit_log::assignment(role, gid, "group", Some(&pid));
        org.record_in("role.assignment.deleted", i, payload);
    }
    Ok(json!({"object": "project.group.deleted", "deleted": true}))
}

/// `POST .../data_retention`.
fn set_data_retention(org: &mut Org, i: usize, b: &Body) -> Res {
    let t = b.req_enum("retention_type", &RETENTION_TYPES)?;
    let p = &mut org.projects[i];
    p.data_retention = t;
    Ok(render::value(render::data_retention(p)))
}

/// `POST .../spend_alerts`.
fn create_spend_alert(org: &mut Org, i: usize, b: &Body) -> Res {
    let id = SpendAlertId(org.next_id("spend_alert_"));
    let alert = spend_alert_from(b, id)?;
    let v = render::value(render::spend_alert(&alert));
    org.projects[i].spend_alerts.push(alert);
    Ok(v)
}

/// `POST .../spend_alerts/{id}`.
fn update_spend_alert(org: &mut Org, i: usize, aid: &str, b: &Body) -> Res {
    let p = &mut org.projects[i];
    let a = found(
        p.spend_alerts.iter_mut().find(|a| a.id.as_str() == aid),
        "spend alert",
        aid,
    )?;
    // The update takes the whole CreateSpendAlertBody: a full replace.
    let mut new = spend_alert_from(b, a.id.clone())?;
    new.extra = std::mem::take(&mut a.extra);
    *a = new;
    Ok(render::value(render::spend_alert(a)))
}

/// `DELETE .../spend_alerts/{id}`.
fn delete_spend_alert(org: &mut Org, i: usize, aid: &str) -> Res {
    let p = &mut org.projects[i];
    let pos = found(
        p.spend_alerts.iter().position(|a| a.id.as_str() == aid),
        "spend alert",
        aid,
    )?;
    let a = p.spend_alerts.remove(pos);
    Ok(json!({"id": a.id, "object": "project.spend_alert.deleted", "deleted": true}))
}

/// `POST .../certificates/activate` and `.../deactivate`.
fn set_certificates_active(org: &mut Org, i: usize, action: &str, b: &Body) -> Res {
    let ids = b.req_str_array("certificate_ids")?;
    let p = &mut org.projects[i];
    for id in &ids {
        found(
            p.certificates.iter().find(|c| c.id.as_str() == id),
            "certificate",
            id,
        )?;
    }
    let active = action == "activate";
    let mut data = Vec::new();
    for c in &mut p.certificates {
        if ids.iter().any(|id| id == c.id.as_str()) {
            c.active = active;
            data.push(render::value(render::certificate(c)));
        }
    }
    let refs: Vec<Value> = p
        .certificates
        .iter()
        .filter(|c| ids.iter().any(|id| id == c.id.as_str()))
        .map(|c| audit_log::certificate_ref(c.id.as_str(), c.name.as_ref()))
        .collect();
    let (object, kind) = if active {
        (
            "organization.project.certificate.activation",
            "certificates.activated",
        )
    } else {
        (
            "organization.project.certificate.deactivation",
            "certificates.deactivated",
        )
    };
    org.record_in(kind, i, json!({"certificates": refs}));
    Ok(json!({"object": object, "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_not_ids() {
        for n in [0, 1, 7, 99, 1000, 123_456] {
            let c = encode_cursor(n);
            assert_eq!(decode_cursor(&c), Some(n), "{c}");
            assert!(!c.contains("proj_"));
        }
        assert_eq!(decode_cursor("proj_abc"), None);
        assert_eq!(decode_cursor("group_01"), None);
    }

    #[test]
    fn a_limit_of_zero_where_allowed_asks_for_the_default_page() {
        let spec = ListSpec {
            envelope: Envelope::FirstLastId,
            default_limit: 100,
            min_limit: 0,
            max_limit: 1000,
            order: None,
            before: false,
        };
        assert_eq!(page_limit(&Query::parse("limit=0"), &spec).unwrap(), 100);
        assert_eq!(page_limit(&Query::parse("limit=7"), &spec).unwrap(), 7);
        let one_up = ListSpec {
            min_limit: 1,
            ..spec
        };
        assert!(page_limit(&Query::parse("limit=0"), &one_up).is_err());
    }

    #[test]
    fn array_parameters_accept_both_spellings() {
        let q = Query::parse("ids[]=a&limit=3");
        assert_eq!(q.get("ids"), Some("a"));
        assert_eq!(q.get("limit"), Some("3"));
    }
}
