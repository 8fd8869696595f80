//! The organization's audit log in the simulator: the events the organization file seeds
//! and every accepted write records, served by `GET /organization/audit_logs` newest
//! first, with the spec's filters and both cursors.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use serde_json::{Map, Value, json};

use super::SimError;
use super::api::{Answer, ApiError, ListSpec, Query, bytes, now, page_limit, shape_a};
use super::audit_schema::{check_event, event_types, is_event_type, is_tenant_scoped};
use super::org::{Org, R, Reader, parse_time, splitmix};
use crate::model::ProjectId;

/// Audit logs: shape A, 1..=100, default 20, newest first, with `before`.
pub const LIST_AUDIT_LOGS: ListSpec = ListSpec {
    before: true,
    ..shape_a(20, 1, 100)
};

/// The tracking id of the simulator's own admin key, the actor of every write it records.
pub const SIM_ADMIN_KEY_ID: &str = "key_orgwarden_sim_admin";

/// The `code` of the answer to a read while audit logging is off.
pub const DISABLED_CODE: &str = "audit_logging_disabled";

/// The message of that answer.
pub const DISABLED_MESSAGE: &str = "Audit logging is not enabled for this organization. An \
    organization owner can enable it under Settings → Data controls → Data retention.";

/// The organization's audit log: whether it is on, and its events ordered by
/// (`effective_at`, `id`), so newest first is the reverse and paging is a range.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditLog {
    /// `false`: every read answers 403 `audit_logging_disabled`.
    pub enabled: bool,
    events: BTreeMap<(i64, String), Value>,
    // The time of each event by id: a cursor names an id, the order needs its time.
    times: HashMap<String, i64>,
    // Feeds generated event ids.
    serial: u64,
}

impl Default for AuditLog {
    fn default() -> Self {
        AuditLog {
            enabled: true,
            events: BTreeMap::new(),
            times: HashMap::new(),
            serial: 0,
        }
    }
}

impl AuditLog {
    /// How many events the log holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Every event, newest first (the order the API lists them in).
    pub fn newest_first(&self) -> impl Iterator<Item = &Value> {
        self.events.values().rev()
    }

    /// The event with this id.
    pub fn get(&self, id: &str) -> Option<&Value> {
        let t = self.times.get(id)?;
        self.events.get(&(*t, id.to_owned()))
    }

    /// A fresh event id, deterministic for a given log and sequence of events; ids made
    /// later sort higher, so events of the same second list in the order they happened.
    pub fn next_id(&mut self) -> String {
        self.serial += 1;
        let tail = splitmix(self.serial ^ 0x0a0d_171c_0f1e_u64) >> 32;
        format!("audit_log-{:010x}{tail:08x}", self.serial)
    }

    /// Adds an event that carries a string `id` and an integer `effective_at`; an event
    /// with an id already present replaces it. Returns `false` (and adds nothing) when
    /// either field is missing.
    pub fn insert(&mut self, event: Value) -> bool {
        let (Some(id), Some(t)) = (
            event.get("id").and_then(Value::as_str).map(str::to_owned),
            event.get("effective_at").and_then(Value::as_i64),
        ) else {
            return false;
        };
        if let Some(old) = self.times.insert(id.clone(), t) {
            self.events.remove(&(old, id.clone()));
        }
        self.events.insert((t, id), event);
        true
    }
}

impl Org {
    /// The actor of every write the simulator accepts: its own admin key, a user key of
    /// the organization's first owner by id (who also owns the admin keys it creates).
    pub fn sim_actor(&self) -> Value {
        let mut key = Map::new();
        key.insert("id".into(), json!(SIM_ADMIN_KEY_ID));
        key.insert("type".into(), json!("user"));
        if let Some(u) = self.owners().next() {
            let mut user = Map::new();
            user.insert("id".into(), json!(u.id));
            if let Some(e) = &u.email {
                user.insert("email".into(), json!(e));
            }
            key.insert("user".into(), Value::Object(user));
        }
        json!({"type": "api_key", "api_key": key})
    }

    /// Records the event of a write accepted now (see [`Org::record_event`]).
    pub(super) fn record(&mut self, kind: &str, project: Option<&ProjectId>, payload: Value) {
        self.record_event(now(), kind, project, Some(payload));
    }

    /// Records the event of a write to the project at index `i`, accepted now.
    pub(super) fn record_in(&mut self, kind: &str, i: usize, payload: Value) {
        let pid = self.projects.get(i).map(|p| p.id.clone());
        self.record_event(now(), kind, pid.as_ref(), Some(payload));
    }

    /// Records the event of a write accepted at `at`: `kind` with its payload (the
    /// tenant-scoped types have none), scoped to `project` (none for organization-level
    /// writes), by [`Org::sim_actor`].
    pub fn record_event(
        &mut self,
        at: i64,
        kind: &str,
        project: Option<&ProjectId>,
        payload: Option<Value>,
    ) {
        let mut event = Map::new();
        event.insert("id".into(), json!(self.audit_log.next_id()));
        event.insert("type".into(), json!(kind));
        event.insert("effective_at".into(), json!(at));
        if let Some(pid) = project {
            let mut p = Map::new();
            p.insert("id".into(), json!(pid));
            if let Some(name) = self.project(pid).and_then(|p| p.name.clone()) {
                p.insert("name".into(), json!(name));
            }
            event.insert("project".into(), Value::Object(p));
        }
        event.insert("actor".into(), self.sim_actor());
        if let Some(payload) = payload {
            event.insert(kind.into(), payload);
        }
        self.audit_log.insert(Value::Object(event));
    }
}

/// The payload of `role.assignment.created`/`.deleted`: `role` given to (or taken from)
/// `principal` (`user`/`group`) on a project, or on the organization when `project` is
/// `None`.
pub(super) fn assignment(
    role: Option<&str>,
    principal: &str,
    principal_type: &str,
    project: Option<&ProjectId>,
) -> Value {
    let mut m = Map::new();
    if let Some(r) = role {
        m.insert("id".into(), json!(r));
    }
    m.insert("principal_id".into(), json!(principal));
    m.insert("principal_type".into(), json!(principal_type));
    match project {
        Some(p) => {
            m.insert("resource_id".into(), json!(p));
            m.insert("resource_type".into(), json!("api.project"));
        }
        None => {
            m.insert("resource_type".into(), json!("api.organization"));
        }
    }
    Value::Object(m)
}

/// The payload of `role.created` for a role of a project, or of the organization.
pub(super) fn role_created(role: &super::org::Role, project: Option<&ProjectId>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(role.id));
    m.insert("role_name".into(), json!(role.name));
    m.insert("permissions".into(), json!(role.permissions));
    m.insert("resource_type".into(), json!(role.resource_type));
    if let Some(p) = project {
        m.insert("resource_id".into(), json!(p));
    }
    Value::Object(m)
}

/// The payload of `role.updated`: what changed from `old` to `new`.
pub(super) fn role_updated(
    old: &super::org::Role,
    new: &super::org::Role,
    project: Option<&ProjectId>,
) -> Value {
    let mut changes = Map::new();
    if old.name != new.name {
        changes.insert("role_name".into(), json!(new.name));
    }
    if let Some(p) = project {
        changes.insert("resource_id".into(), json!(p));
    }
    changes.insert("resource_type".into(), json!(new.resource_type));
    let added: Vec<&String> = new
        .permissions
        .iter()
        .filter(|p| !old.permissions.contains(p))
        .collect();
    let removed: Vec<&String> = old
        .permissions
        .iter()
        .filter(|p| !new.permissions.contains(p))
        .collect();
    changes.insert("permissions_added".into(), json!(added));
    changes.insert("permissions_removed".into(), json!(removed));
    if old.description != new.description
        && let Some(d) = &new.description
    {
        changes.insert("description".into(), json!(d));
    }
    json!({"id": new.id, "changes_requested": changes})
}

/// `{"id", "name"}` of a certificate, as the certificate events list them.
pub(super) fn certificate_ref(id: &str, name: Option<&String>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    if let Some(n) = name {
        m.insert("name".into(), json!(n));
    }
    Value::Object(m)
}

/// The 403 of a read while audit logging is off.
pub fn disabled() -> ApiError {
    ApiError {
        code: Some(DISABLED_CODE),
        ..ApiError::new(403, "invalid_request_error", DISABLED_MESSAGE)
    }
}

/// What a list request asks for, parsed and checked.
#[derive(Default)]
struct Filter<'q> {
    gt: Option<i64>,
    gte: Option<i64>,
    lt: Option<i64>,
    lte: Option<i64>,
    types: Vec<&'q str>,
    projects: Vec<&'q str>,
    actors: Vec<&'q str>,
    emails: Vec<&'q str>,
    resources: Vec<&'q str>,
    tenant_only: bool,
}

impl<'q> Filter<'q> {
    fn parse(q: &'q Query) -> Result<Filter<'q>, ApiError> {
        let mut f = Filter {
            types: q.all("event_types"),
            projects: q.all("project_ids"),
            actors: q.all("actor_ids"),
            emails: q.all("actor_emails"),
            resources: q.all("resource_ids"),
            tenant_only: q.bool_value("tenant_only")?.unwrap_or(false),
            ..Filter::default()
        };
        for (key, value) in q.pairs() {
            let Some(rest) = key.strip_prefix("effective_at") else {
                continue;
            };
            let slot = match rest {
                "[gt]" => &mut f.gt,
                "[gte]" => &mut f.gte,
                "[lt]" => &mut f.lt,
                "[lte]" => &mut f.lte,
                _ => {
                    return Err(ApiError::invalid(
                        key,
                        "invalid_value",
                        format!(
                            "Invalid '{key}': expected effective_at[gt], effective_at[gte], effective_at[lt] or effective_at[lte]."
                        ),
                    ));
                }
            };
            *slot = Some(value.parse().map_err(|_| {
                ApiError::invalid(
                    key,
                    "invalid_type",
                    format!(
                        "Invalid type for '{key}': expected an integer, but got '{value}' instead."
                    ),
                )
            })?);
        }
        for t in &f.types {
            if !is_event_type(t) {
                return Err(ApiError::invalid(
                    "event_types",
                    "invalid_value",
                    format!(
                        "Invalid value: '{t}'. Supported values are the {} audit log event types (for example 'project.created').",
                        event_types().len()
                    ),
                ));
            }
            if is_tenant_scoped(t) != f.tenant_only {
                let why = if f.tenant_only {
                    "with tenant_only=true every event type must be tenant-scoped"
                } else {
                    "tenant-scoped event types are listed only with tenant_only=true"
                };
                return Err(ApiError::invalid(
                    "event_types",
                    "invalid_value",
                    format!("Invalid value: '{t}': {why}."),
                ));
            }
        }
        Ok(f)
    }

    fn matches(&self, e: &Value) -> bool {
        let kind = e["type"].as_str().unwrap_or_default();
        let t = e["effective_at"].as_i64().unwrap_or_default();
        let actor = &e["actor"];
        let key = &actor["api_key"];
        let users = [&actor["session"]["user"], &key["user"]];
        let actor_ids = [
            &users[0]["id"],
            &users[1]["id"],
            &key["id"],
            &key["service_account"]["id"],
        ];
        let any = |wanted: &[&str], v: &Value| v.as_str().is_some_and(|s| wanted.contains(&s));
        is_tenant_scoped(kind) == self.tenant_only
            && self.gt.is_none_or(|b| t > b)
            && self.gte.is_none_or(|b| t >= b)
            && self.lt.is_none_or(|b| t < b)
            && self.lte.is_none_or(|b| t <= b)
            && (self.types.is_empty() || self.types.contains(&kind))
            && (self.projects.is_empty() || any(&self.projects, &e["project"]["id"]))
            && (self.actors.is_empty() || actor_ids.iter().any(|v| any(&self.actors, v)))
            && (self.emails.is_empty()
                || users.iter().any(|u| {
                    u["email"]
                        .as_str()
                        .is_some_and(|m| self.emails.iter().any(|w| w.eq_ignore_ascii_case(m)))
                }))
            && (self.resources.is_empty() || any(&self.resources, &e[kind]["id"]))
    }
}

/// `GET /organization/audit_logs`: newest first (by `effective_at`, then id, both
/// descending); `after` pages to older events, `before` to newer ones, and `has_more`
/// says whether more match in the direction paged.
pub fn list(org: &Org, q: &Query) -> Answer {
    let log = &org.audit_log;
    if !log.enabled {
        return Err(disabled());
    }
    let limit = page_limit(q, &LIST_AUDIT_LOGS)?;
    let filter = Filter::parse(q)?;
    let cursor = |param: &str, id: &str| {
        log.times
            .get(id)
            .map(|t| (*t, id.to_owned()))
            .ok_or_else(|| {
                ApiError::invalid(
                    param,
                    "invalid_value",
                    format!("Invalid '{param}': no object with id '{id}' in this list."),
                )
            })
    };
    let keep = |e: &&Value| filter.matches(e);
    let (mut data, has_more): (Vec<&Value>, bool) =
        match (q.get("after").filter(|a| !a.is_empty()), q.get("before")) {
            (Some(a), _) => {
                let at = cursor("after", a)?;
                take(
                    log.events.range(..at).rev().map(|(_, e)| e).filter(keep),
                    limit,
                )
            }
            (None, Some(b)) if !b.is_empty() => {
                let at = cursor("before", b)?;
                let newer = log.events.range((Bound::Excluded(at), Bound::Unbounded));
                let (mut page, more) = take(newer.map(|(_, e)| e).filter(keep), limit);
                page.reverse();
                (page, more)
            }
            _ => take(log.events.values().rev().filter(keep), limit),
        };
    data.truncate(limit);
    let id = |e: Option<&&Value>| e.and_then(|e| e["id"].as_str()).map(str::to_owned);
    let (first_id, last_id) = (id(data.first()), id(data.last()));
    bytes(&json!({
        "object": "list",
        "data": data,
        "first_id": first_id,
        "last_id": last_id,
        "has_more": has_more,
    }))
}

/// The first `limit` items, and whether there was another.
fn take<'a>(it: impl Iterator<Item = &'a Value>, limit: usize) -> (Vec<&'a Value>, bool) {
    let mut page: Vec<&Value> = it.take(limit.saturating_add(1)).collect();
    let more = page.len() > limit;
    page.truncate(limit);
    (page, more)
}

/// The top-level `audit_log` of an organization file: `enabled` and `events[]`, each an
/// `AuditLog` object whose `effective_at` is a file time and whose `id` may be left out.
pub(super) fn parse_audit_log(r: &mut Reader<'_>, org: &mut Org) -> R<()> {
    let Some(v) = r.get("audit_log") else {
        return Ok(());
    };
    let mut x = Reader::new(v, r.child("audit_log"), r.now)?;
    org.audit_log.enabled = x.opt_bool("enabled")?.unwrap_or(true);
    let events = x.array("events")?;
    if let Some(k) = x.extra()?.keys().next() {
        return Err(x.err(k, "unknown field of audit_log (expected enabled, events)"));
    }
    for (i, v) in events.iter().enumerate() {
        let path = x.item_path("events", i);
        let event = parse_event(v, &path, x.now, org)?;
        org.audit_log.insert(event);
    }
    Ok(())
}

fn parse_event(v: &Value, path: &str, now: i64, org: &mut Org) -> R<Value> {
    let err = |key: &str, message: String| SimError::Org {
        path: if key.is_empty() {
            path.to_owned()
        } else {
            format!("{path}.{key}")
        },
        message,
    };
    let Value::Object(fields) = v else {
        return Err(err("", "expected an object (an audit log event)".into()));
    };
    let mut event = fields.clone();
    let t = match fields.get("effective_at") {
        None | Some(Value::Null) => return Err(err("effective_at", "missing (required)".into())),
        Some(t) => parse_time(t, now).map_err(|m| err("effective_at", m))?,
    };
    event.insert("effective_at".into(), json!(t));
    let id = match fields.get("id") {
        None | Some(Value::Null) => org.audit_log.next_id(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => {
            return Err(err(
                "id",
                format!("expected a non-empty string, got {other}"),
            ));
        }
    };
    if org.audit_log.times.contains_key(&id) {
        return Err(err("id", format!("duplicate audit log event {id:?}")));
    }
    event.insert("id".into(), json!(id));
    // Keep the spec's key order: id, type, effective_at first.
    let mut ordered = Map::new();
    for k in ["id", "type", "effective_at"] {
        if let Some(v) = event.remove(k) {
            ordered.insert(k.into(), v);
        }
    }
    ordered.extend(event);
    let event = Value::Object(ordered);
    check_event(&event).map_err(|(at, m)| err(&at, m))?;
    let kind = event["type"].as_str().unwrap_or_default();
    if let Some(other) = event
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .find(|k| k.as_str() != kind && is_event_type(k))
    {
        return Err(err(
            other,
            format!("the payload of a {other} event, on an event of type {kind}"),
        ));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn org_with(events: &str) -> Result<Org, String> {
        Org::from_json_str(
            &format!(r#"{{"users":[{{"id":"user-a","email":"a@x.com","role":"owner"}}],"audit_log":{events}}}"#),
            NOW,
        )
        .map_err(|e| e.to_string())
    }

    fn ids(body: &[u8]) -> Vec<String> {
        let v: Value = serde_json::from_slice(body).unwrap();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn file_events_get_times_and_ids_and_bad_ones_name_their_index() {
        let org = org_with(
            r#"{"events":[{"type":"login.succeeded","effective_at":"-2h"},
                {"id":"audit_log-x","type":"login.failed","effective_at":"-30m",
                 "login.failed":{"error_code":"invalid_password","error_message":"no"}}]}"#,
        )
        .unwrap();
        assert!(org.audit_log.enabled);
        let x = org.audit_log.get("audit_log-x").unwrap();
        assert_eq!(x["effective_at"], NOW - 1800);
        let first = org.audit_log.newest_first().last().unwrap();
        assert_eq!(first["effective_at"], NOW - 7200);
        assert!(first["id"].as_str().unwrap().starts_with("audit_log-"));
        let again =
            org_with(r#"{"events":[{"type":"login.succeeded","effective_at":"-2h"}]}"#).unwrap();
        assert_eq!(
            again.audit_log.newest_first().next().unwrap()["id"],
            first["id"]
        );
        let cases = [
            (
                r#"{"events":[{"type":"login.succeeded","effective_at":1},{"type":"login.exploded","effective_at":1}]}"#,
                "audit_log.events[1].type: unknown value",
            ),
            (
                r#"{"events":[{"type":"login.succeeded"}]}"#,
                "audit_log.events[0].effective_at: missing",
            ),
            (
                r#"{"events":[{"type":"login.succeeded","effective_at":"yesterday"}]}"#,
                "audit_log.events[0].effective_at: bad time",
            ),
            (
                r#"{"events":[{"id":"a","type":"login.succeeded","effective_at":1},{"id":"a","type":"login.succeeded","effective_at":2}]}"#,
                "audit_log.events[1].id: duplicate",
            ),
            (
                r#"{"events":[{"type":"login.failed","effective_at":1,"actor":{"type":"session","session":{"ip_address":7}}}]}"#,
                "audit_log.events[0].actor.session.ip_address: expected string",
            ),
            (
                r#"{"events":[{"type":"login.failed","effective_at":1,"api_key.created":{"id":"k"}}]}"#,
                "audit_log.events[0].api_key.created: the payload",
            ),
            (
                r#"{"enabled":"yes"}"#,
                "audit_log.enabled: expected true or false",
            ),
            (r#"{"event":[]}"#, "audit_log.event: unknown field"),
            (
                r#"{"events":[7]}"#,
                "audit_log.events[0]: expected an object",
            ),
        ];
        for (text, want) in cases {
            let got = org_with(text).unwrap_err();
            assert!(got.starts_with(want), "{text}\n  got {got}\n want {want}");
        }
    }

    #[test]
    fn pages_never_skip_or_repeat_events_of_the_same_second() {
        let mut org = org_with(r#"{"events":[]}"#).unwrap();
        for i in 0..25 {
            let p = json!({"error_code": "x", "error_message": format!("try {i}")});
            org.record_event(NOW - (i / 5), "login.failed", None, Some(p));
        }
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let q = Query::parse(&format!("limit=7{after}"));
            let body = list(&org, &q).unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            seen.extend(ids(&body));
            if v["has_more"] != true {
                break;
            }
            after = format!("&after={}", v["last_id"].as_str().unwrap());
        }
        let all: Vec<String> = org
            .audit_log
            .newest_first()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen, all);
        // Within a second, the later write lists first.
        assert!(all[0] > all[1]);
        // `before` walks back up to the newest, the page still newest first.
        let q = Query::parse(&format!("limit=3&before={}", all[10]));
        let body = list(&org, &q).unwrap();
        assert_eq!(ids(&body), all[7..10]);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["has_more"], true);
        let q = Query::parse(&format!("limit=3&before={}", all[2]));
        let v: Value = serde_json::from_slice(&list(&org, &q).unwrap()).unwrap();
        assert_eq!(v["has_more"], false);
        assert_eq!(v["first_id"].as_str(), Some(all[0].as_str()));
    }

    #[test]
    fn filters_combine_and_a_disabled_log_answers_403() {
        let org = org_with(
            r#"{"events":[
              {"id":"e1","type":"login.failed","effective_at":100,"actor":{"type":"session","session":{"user":{"id":"user-a","email":"A@x.com"},"ip_address":"1.2.3.4"}}},
              {"id":"e2","type":"api_key.created","effective_at":200,"project":{"id":"proj_1","name":"P"},"actor":{"type":"api_key","api_key":{"id":"key_1","type":"service_account","service_account":{"id":"svc_1"}}},"api_key.created":{"id":"key_new","data":{"scopes":[]}}},
              {"id":"e3","type":"tenant.user.added","effective_at":300}]}"#,
        )
        .unwrap();
        let get = |q: &str| ids(&list(&org, &Query::parse(q)).unwrap());
        assert_eq!(get(""), ["e2", "e1"]);
        assert_eq!(get("tenant_only=true"), ["e3"]);
        assert_eq!(get("effective_at[gte]=100&effective_at[lt]=200"), ["e1"]);
        assert_eq!(get("effective_at[gt]=100&effective_at[lte]=200"), ["e2"]);
        assert_eq!(
            get("event_types[]=login.failed&event_types[]=api_key.created"),
            ["e2", "e1"]
        );
        assert_eq!(get("project_ids[]=proj_1"), ["e2"]);
        assert_eq!(get("actor_ids[]=svc_1"), ["e2"]);
        assert_eq!(get("actor_ids[]=key_1"), ["e2"]);
        assert_eq!(get("actor_ids=user-a"), ["e1"]);
        assert_eq!(get("actor_emails[]=a@x.com"), ["e1"]);
        assert_eq!(get("resource_ids[]=key_new"), ["e2"]);
        assert_eq!(
            get("resource_ids[]=key_new&project_ids[]=proj_2"),
            Vec::<String>::new()
        );
        for bad in [
            "event_types[]=login.exploded",
            "event_types[]=tenant.user.added",
            "tenant_only=true&event_types[]=login.failed",
            "effective_at[gte]=yesterday",
            "effective_at[since]=1",
            "effective_at=1",
            "tenant_only=maybe",
            "limit=0",
            "limit=101",
            "after=nope",
            "before=nope",
        ] {
            assert_eq!(
                list(&org, &Query::parse(bad)).unwrap_err().status,
                400,
                "{bad}"
            );
        }
        let off = org_with(r#"{"enabled":false}"#).unwrap();
        let e = list(&off, &Query::parse("")).unwrap_err();
        assert_eq!((e.status, e.code), (403, Some(DISABLED_CODE)));
    }

    #[test]
    fn the_demo_log_holds_what_the_event_rules_look_for_at_any_time_of_day() {
        const H: i64 = 3_600;
        // Late in a UTC day: the objects date from midnight, the log from now.
        let now = NOW - NOW.rem_euclid(86_400) + 23 * H + 50 * 60;
        let org = Org::demo_today(now);
        let log = &org.audit_log;
        assert!(log.newest_first().all(|e| check_event(e).is_ok()));
        let key = log.get("audit_log-demo-admin-key").unwrap();
        assert_eq!(key["effective_at"], now - 6 * H);
        assert!(key.get("project").is_none());
        let by = key["actor"]["session"]["user"]["id"].as_str().unwrap();
        assert!(org.owners().any(|u| u.id.as_str() == by));
        assert!(key["actor"]["session"]["ip_address"].is_string());
        let made = key["api_key.created"]["id"].as_str().unwrap();
        assert!(org.admin_api_keys.iter().any(|k| k.id.as_str() == made));
        let failed = |user: &str, since: i64| {
            log.newest_first()
                .filter(|e| e["type"] == "login.failed")
                .filter(|e| e["actor"]["session"]["user"]["id"] == user)
                .filter(|e| e["effective_at"].as_i64().unwrap() >= since)
                .count()
        };
        assert_eq!(failed("user-gus", now - 24 * H), 6);
        assert_eq!(failed("user-gus", 0), 7, "one more, outside the day");
        assert_eq!(failed("user-ben", 0), 2, "a look-alike below any threshold");
        let off = log.get("audit_log-demo-ip-allowlist-off").unwrap();
        assert_eq!(off["type"], "ip_allowlist.config.deactivated");
        assert_eq!(off["effective_at"], now - 3 * H);
        let created = log.get("audit_log-demo-project-hackday").unwrap();
        assert_eq!(created["effective_at"], now - 20 * 86_400);
        let q = Query::parse("event_types[]=login.succeeded&limit=100");
        assert!(ids(&list(&org, &q).unwrap()).len() >= 4);
    }
}
