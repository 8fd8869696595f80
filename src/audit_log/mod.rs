//! The organization's audit log (`GET /organization/audit_logs`) as an incremental change
//! feed: what one event is ([`AuditEvent`], parsed from the API's JSON), which events a run
//! reads ([`read`]), and which events explain a change between two snapshots
//! ([`explain`]).
//!
//! The log records who did what for keys, service accounts, users, invites, roles, groups,
//! projects, rate limits, certificates, logins and more; it has no event type for data
//! retention, spend alerts or limits, model or hosted-tool permissions. [`explain`] says
//! which families it covers, so a change it cannot explain is reported as such.

pub mod explain;
pub mod read;

use serde_json::Value;

use crate::model::{AuditEventId, ProjectId};

/// The actor types the API documents (`actor.type`).
pub const ACTOR_TYPES: [&str; 2] = ["session", "api_key"];

/// Every event type the API documents, in the spec's order. The spec's list ships once,
/// with the `AuditLog` schema the simulator checks its events against.
pub fn documented_event_types() -> impl Iterator<Item = &'static str> {
    crate::sim::audit_schema::event_types()
        .iter()
        .map(String::as_str)
}

/// Who performed an audit-logged action: a person in a browser session, or an API key
/// (a user's or a service account's).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Actor {
    /// `session` or `api_key` (as the API names it; `None` when the event has no actor).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The user behind the session or the key.
    pub user_id: Option<String>,
    /// That user's email.
    pub user_email: Option<String>,
    /// The session's IP address.
    pub ip: Option<String>,
    /// The API key used.
    pub api_key_id: Option<String>,
    /// The service account whose key was used.
    pub service_account_id: Option<String>,
}

impl Actor {
    /// The actor of an event's `actor` object (`None` or `null`: no actor).
    pub fn from_api(actor: Option<&Value>) -> Actor {
        let Some(actor) = actor.filter(|a| a.is_object()) else {
            return Actor::default();
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let kind = text(actor.get("type"));
        let session = actor.get("session");
        let key = actor.get("api_key");
        let user = session
            .and_then(|s| s.get("user"))
            .or_else(|| key.and_then(|k| k.get("user")));
        Actor {
            kind,
            user_id: text(user.and_then(|u| u.get("id"))),
            user_email: text(user.and_then(|u| u.get("email"))),
            ip: text(session.and_then(|s| s.get("ip_address"))),
            api_key_id: text(key.and_then(|k| k.get("id"))),
            service_account_id: text(
                key.and_then(|k| k.get("service_account"))
                    .and_then(|s| s.get("id")),
            ),
        }
    }

    /// The actor in a few words: the email (or user id), the key or service account used,
    /// and the IP address, as far as the event recorded them. Worded as the
    /// `audit_log_events` view's `actor` column, so a query and a report read alike.
    pub fn describe(&self) -> String {
        let who = self.user_email.as_ref().or(self.user_id.as_ref());
        let mut text = match (who, &self.service_account_id, &self.api_key_id) {
            (Some(who), Some(sa), _) => format!("{who} (service account {sa})"),
            (Some(who), None, _) => who.clone(),
            (None, Some(sa), _) => format!("service account {sa}"),
            (None, None, Some(key)) => format!("key {key}"),
            (None, None, None) => "an actor the log did not record".to_owned(),
        };
        if let Some(key) = &self.api_key_id
            && (who.is_some() || self.service_account_id.is_some())
        {
            text.push_str(&format!(" with key {key}"));
        }
        if let Some(ip) = &self.ip {
            text.push_str(&format!(" from {ip}"));
        }
        text
    }
}

/// One audit-log event as the API returned it, with the fields orgwarden filters on.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// The event's id.
    pub id: AuditEventId,
    /// Its type (`api_key.created`).
    pub kind: String,
    /// When it happened (Unix seconds).
    pub effective_at: i64,
    /// The project the action was scoped to.
    pub project_id: Option<ProjectId>,
    /// That project's name.
    pub project_name: Option<String>,
    /// Who did it.
    pub actor: Actor,
    /// The id of the object it is about (the payload's `id`), when the payload has one.
    pub resource_id: Option<String>,
    /// The whole event, as read.
    pub raw: Value,
}

/// Why an event from the API cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// A required field is missing or has the wrong type.
    #[error("`{0}` is missing or not {1}")]
    Field(&'static str, &'static str),
}

impl AuditEvent {
    /// Parses one element of an audit-log page's `data`. Only `id`, `type` and
    /// `effective_at` are required (as in the spec); everything else is optional.
    pub fn from_api(event: &Value) -> Result<AuditEvent, EventError> {
        let id = event
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(EventError::Field("id", "a string"))?;
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(EventError::Field("type", "a string"))?;
        let effective_at = event
            .get("effective_at")
            .and_then(Value::as_i64)
            .ok_or(EventError::Field("effective_at", "an integer"))?;
        let project = event.get("project");
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        Ok(AuditEvent {
            id: AuditEventId::from(id),
            kind: kind.to_owned(),
            effective_at,
            project_id: text(project.and_then(|p| p.get("id"))).map(ProjectId),
            project_name: text(project.and_then(|p| p.get("name"))),
            actor: Actor::from_api(event.get("actor")),
            resource_id: text(event.get(kind).and_then(|d| d.get("id"))),
            raw: event.clone(),
        })
    }

    /// The payload under the event's type key (`{"id": …, "data": …}`), when present.
    pub fn details(&self) -> Option<&Value> {
        self.raw.get(&self.kind)
    }
}

/// The view of every stored event (rules read it bounded by `:window_start`).
pub const EVENTS_VIEW: &str = "audit_log_events";

/// The view of the newest audit-log read.
pub const STATUS_VIEW: &str = "audit_log_status";

/// Whether `view` is one of the audit-log views: findings reported on them may only be
/// resolved by a snapshot whose audit-log read was complete.
pub fn is_log_view(view: &str) -> bool {
    view == EVENTS_VIEW || view == STATUS_VIEW
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_keeps_its_actor_resource_and_payload() {
        let raw = json!({
            "id": "audit_log-1", "type": "api_key.created", "effective_at": 1_700_000_000,
            "project": {"id": "proj_a", "name": "A"},
            "actor": {"type": "session", "session": {
                "user": {"id": "user-ada", "email": "ada@acme.com"}, "ip_address": "203.0.113.5"}},
            "api_key.created": {"id": "key_x", "data": {"scopes": ["api.model.request"]}}
        });
        let e = AuditEvent::from_api(&raw).unwrap();
        assert_eq!(e.resource_id.as_deref(), Some("key_x"));
        assert_eq!(e.project_id, Some(ProjectId::from("proj_a")));
        assert_eq!(e.actor.user_email.as_deref(), Some("ada@acme.com"));
        assert_eq!(e.actor.ip.as_deref(), Some("203.0.113.5"));
        assert_eq!(e.actor.describe(), "ada@acme.com from 203.0.113.5");
        assert_eq!(e.details().and_then(|d| d.get("id")), Some(&json!("key_x")));
    }

    #[test]
    fn a_service_account_key_actor_names_the_account_and_key() {
        let actor = Actor::from_api(Some(&json!({"type": "api_key", "api_key": {
            "id": "key_sa", "type": "service_account",
            "service_account": {"id": "svc_acct_ci"}}})));
        assert_eq!(
            actor.describe(),
            "service account svc_acct_ci with key key_sa"
        );
        assert_eq!(Actor::from_api(Some(&Value::Null)), Actor::default());
    }

    #[test]
    fn an_event_without_id_type_or_time_is_refused() {
        assert!(AuditEvent::from_api(&json!({"type": "login.failed", "effective_at": 1})).is_err());
        assert!(AuditEvent::from_api(&json!({"id": "a", "effective_at": 1})).is_err());
        assert!(
            AuditEvent::from_api(&json!({"id": "a", "type": "x", "effective_at": "1"})).is_err()
        );
    }
}
