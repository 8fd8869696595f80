//! The generator's audit-log history: a month of believable events about the
//! organization's own users, projects and keys. Objects made during that month get their
//! creation event at their creation time; the rest of the history is sign-ins and
//! sign-outs, failed sign-ins, and changes to objects that exist (roles, rate limits,
//! project titles, service accounts, certificates), at random times.

use serde_json::{Map, Value, json};

use super::generate::{DAY, Rng};
use super::org::{KeyOwner, Org, OrgUser};
use crate::model::ProjectId;

/// How far back the generated history reaches.
pub const HISTORY: i64 = 30 * DAY;

/// The scopes an admin key is created with.
const ADMIN_SCOPES: [&str; 2] = ["api.management.read", "api.management.write"];

/// One event before it gets its id.
#[derive(Clone)]
struct Draft {
    at: i64,
    kind: &'static str,
    project: Option<ProjectId>,
    actor: Value,
    payload: Value,
}

impl Org {
    /// Adds `n` audit-log events spread over the 30 days before `now`, the same for the
    /// same organization, `seed` and `now`: first the creation events of the objects made
    /// in that time (at most a third of `n`), then sign-ins and changes at random times.
    pub fn generate_audit_events(&mut self, n: usize, seed: u64, now: i64) {
        let mut rng = Rng(seed ^ 0x6175_6469_742d_6c6f);
        let people: Vec<&OrgUser> = self
            .users
            .values()
            .filter(|u| u.email.is_some() && !u.is_service_account)
            .collect();
        if people.is_empty() || n == 0 {
            return;
        }
        let mut drafts = self.creations(now);
        let keep = n / 3;
        if drafts.len() > keep {
            // An even spread over the month, the newest kept.
            let len = drafts.len();
            let picked: Vec<usize> = (0..keep).map(|i| len - 1 - i * len / keep).collect();
            drafts = picked
                .into_iter()
                .filter_map(|i| drafts.get(i).cloned())
                .collect();
        }
        while drafts.len() < n {
            let at = now - rng.range(60, HISTORY);
            drafts.push(self.ordinary(&mut rng, &people, at));
        }
        drafts.sort_by_key(|d| d.at);
        for d in drafts {
            let mut e = Map::new();
            e.insert("id".into(), json!(self.audit_log.next_id()));
            e.insert("type".into(), json!(d.kind));
            e.insert("effective_at".into(), json!(d.at));
            if let Some(p) = d.project.as_ref().and_then(|id| self.project(id)) {
                let mut m = Map::new();
                m.insert("id".into(), json!(p.id));
                if let Some(name) = &p.name {
                    m.insert("name".into(), json!(name));
                }
                e.insert("project".into(), Value::Object(m));
            }
            e.insert("actor".into(), d.actor);
            if !d.payload.is_null() {
                e.insert(d.kind.into(), d.payload);
            }
            self.audit_log.insert(Value::Object(e));
        }
    }

    /// The creation events of the objects made in the last [`HISTORY`].
    fn creations(&self, now: i64) -> Vec<Draft> {
        let recent = |t: i64| t > now - HISTORY && t <= now;
        let mut out = Vec::new();
        for k in self.admin_api_keys.iter().filter(|k| recent(k.created_at)) {
            out.push(Draft {
                at: k.created_at,
                kind: "api_key.created",
                project: None,
                actor: self.session_of(k.owner.as_str()),
                payload: json!({"id": k.id, "data": {"scopes": ADMIN_SCOPES}}),
            });
        }
        for i in self.invites.iter().filter(|i| recent(i.created_at)) {
            out.push(Draft {
                at: i.created_at,
                kind: "invite.sent",
                project: None,
                actor: self.owner_session(),
                payload: json!({"id": i.id, "data": {"email": i.email, "role": i.role}}),
            });
        }
        for p in &self.projects {
            let project = Some(p.id.clone());
            if recent(p.created_at) {
                let data = p
                    .name
                    .as_ref()
                    .map_or_else(|| json!({}), |name| json!({"name": name, "title": name}));
                out.push(Draft {
                    at: p.created_at,
                    kind: "project.created",
                    project: project.clone(),
                    actor: self.owner_session(),
                    payload: json!({"id": p.id, "data": data}),
                });
            }
            for u in p.users.iter().filter(|u| recent(u.added_at)) {
                out.push(Draft {
                    at: u.added_at,
                    kind: "user.added",
                    project: project.clone(),
                    actor: self.owner_session(),
                    payload: json!({"id": u.id, "data": {"role": u.role}}),
                });
            }
            for s in p.service_accounts.iter().filter(|s| recent(s.created_at)) {
                out.push(Draft {
                    at: s.created_at,
                    kind: "service_account.created",
                    project: project.clone(),
                    actor: self.owner_session(),
                    payload: json!({"id": s.id, "data": {"role": s.role}}),
                });
            }
            for k in p.api_keys.iter().filter(|k| recent(k.created_at)) {
                let actor = match &k.owner {
                    KeyOwner::User(u) => self.session_of(u.as_str()),
                    KeyOwner::ServiceAccount(_) => self.owner_session(),
                };
                out.push(Draft {
                    at: k.created_at,
                    kind: "api_key.created",
                    project: project.clone(),
                    actor,
                    payload: json!({"id": k.id, "data": {}}),
                });
            }
        }
        out
    }

    /// One everyday event at `at`: mostly sign-ins, sometimes a change to an object that
    /// exists.
    fn ordinary(&self, rng: &mut Rng, people: &[&OrgUser], at: i64) -> Draft {
        let who = *rng.pick(people);
        let session = self.session_of(who.id.as_str());
        let plain = |kind: &'static str, payload: Value| Draft {
            at,
            kind,
            project: None,
            actor: session.clone(),
            payload,
        };
        let roll = rng.range(0, 99);
        let active: Vec<_> = self.projects.iter().filter(|p| !p.is_archived()).collect();
        let p = (!active.is_empty()).then(|| active[rng.index(active.len())]);
        let in_project = |kind: &'static str, payload: Value, actor: Value| Draft {
            at,
            kind,
            project: p.map(|p| p.id.clone()),
            actor,
            payload,
        };
        match (roll, p) {
            (0..=49, _) => plain("login.succeeded", json!({})),
            (50..=64, _) => plain("logout.succeeded", json!({})),
            (65..=72, _) => {
                let (code, message) = *rng.pick(&[
                    ("invalid_password", "Incorrect email or password."),
                    ("mfa_failed", "The verification code is not valid."),
                    ("account_locked", "Too many attempts; try again later."),
                ]);
                let mut d = plain(
                    "login.failed",
                    json!({"error_code": code, "error_message": message}),
                );
                // A failed sign-in comes from anywhere.
                d.actor = session_actor(who, &format!("203.0.113.{}", rng.range(1, 254)));
                d
            }
            (73..=78, _) => plain(
                "user.updated",
                json!({"id": who.id, "changes_requested": {"role": who.role}}),
            ),
            (79..=84, Some(p)) if !p.rate_limits.is_empty() => {
                let r = rng.pick(&p.rate_limits);
                let changes = json!({"max_requests_per_1_minute": r.max_requests_per_1_minute});
                in_project(
                    "rate_limit.updated",
                    json!({"id": r.id, "changes_requested": changes}),
                    self.admin_key_actor(rng),
                )
            }
            (85..=89, Some(p)) if !p.service_accounts.is_empty() => {
                let s = rng.pick(&p.service_accounts);
                in_project(
                    "service_account.updated",
                    json!({"id": s.id, "changes_requested": {"role": s.role}}),
                    session,
                )
            }
            (90..=94, Some(p)) if p.name.is_some() => in_project(
                "project.updated",
                json!({"id": p.id, "changes_requested": {"title": p.name}}),
                session,
            ),
            (95..=99, Some(p)) if !p.certificates.is_empty() => {
                let c = rng.pick(&p.certificates);
                let kind = if c.active {
                    "certificates.activated"
                } else {
                    "certificates.deactivated"
                };
                let mut cert = Map::new();
                cert.insert("id".into(), json!(c.id));
                if let Some(n) = &c.name {
                    cert.insert("name".into(), json!(n));
                }
                in_project(
                    kind,
                    json!({"certificates": [cert]}),
                    self.admin_key_actor(rng),
                )
            }
            _ => plain("login.succeeded", json!({})),
        }
    }

    /// A browser session of `user` from the address they usually use.
    fn session_of(&self, user: &str) -> Value {
        match self.user_record(&user.into()) {
            Some(u) => session_actor(u, &usual_ip(user)),
            None => json!({"type": "session", "session": {"user": {"id": user}}}),
        }
    }

    /// A session of the organization's first owner by id.
    fn owner_session(&self) -> Value {
        match self.owners().next() {
            Some(u) => session_actor(u, &usual_ip(u.id.as_str())),
            None => Value::Null,
        }
    }

    /// One of the organization's admin keys, as the actor of an automated change (the
    /// first owner's session when there is none).
    fn admin_key_actor(&self, rng: &mut Rng) -> Value {
        if self.admin_api_keys.is_empty() {
            return self.owner_session();
        }
        let k = rng.pick(&self.admin_api_keys);
        let mut user = Map::new();
        user.insert("id".into(), json!(k.owner));
        if let Some(e) = self.user_record(&k.owner).and_then(|u| u.email.clone()) {
            user.insert("email".into(), json!(e));
        }
        json!({"type": "api_key", "api_key": {"id": k.id, "type": "user", "user": user}})
    }
}

fn session_actor(u: &OrgUser, ip: &str) -> Value {
    let mut user = Map::new();
    user.insert("id".into(), json!(u.id));
    if let Some(e) = &u.email {
        user.insert("email".into(), json!(e));
    }
    json!({"type": "session", "session": {"user": user, "ip_address": ip}})
}

/// The address a user usually signs in from: stable per user, in a documentation range.
fn usual_ip(user: &str) -> String {
    let h = user.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("198.51.100.{}", 1 + h % 254)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::api::Query;
    use crate::sim::audit_log::list;
    use crate::sim::audit_schema::check_event;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn generated_history_is_deterministic_valid_and_names_real_objects() {
        let mut org = Org::generate(30, 7, NOW);
        org.generate_audit_events(2_000, 7, NOW);
        let mut again = Org::generate(30, 7, NOW);
        again.generate_audit_events(2_000, 7, NOW);
        assert_eq!(org.audit_log, again.audit_log);
        let mut other = Org::generate(30, 7, NOW);
        other.generate_audit_events(2_000, 8, NOW);
        assert_ne!(org.audit_log, other.audit_log);
        assert_eq!(org.audit_log.len(), 2_000);
        let mut kinds = std::collections::BTreeSet::new();
        for e in org.audit_log.newest_first() {
            assert_eq!(check_event(e), Ok(()), "{e}");
            let t = e["effective_at"].as_i64().unwrap();
            assert!(t > NOW - HISTORY && t <= NOW, "{e}");
            let kind = e["type"].as_str().unwrap();
            kinds.insert(kind.to_owned());
            let actor = e["actor"]["session"]["user"]["id"]
                .as_str()
                .or_else(|| e["actor"]["api_key"]["user"]["id"].as_str())
                .unwrap();
            assert!(org.user_record(&actor.into()).is_some(), "{e}");
            if let Some(pid) = e["project"]["id"].as_str() {
                assert!(org.project(&pid.into()).is_some(), "{e}");
            }
            if let Some(id) = e[kind]["id"].as_str()
                && kind == "api_key.created"
            {
                let known = org.admin_api_keys.iter().any(|k| k.id.as_str() == id)
                    || org
                        .projects
                        .iter()
                        .any(|p| p.api_keys.iter().any(|k| k.id.as_str() == id));
                assert!(known, "{e}");
            }
        }
        for k in [
            "login.succeeded",
            "login.failed",
            "logout.succeeded",
            "user.updated",
        ] {
            assert!(kinds.contains(k), "{k} missing from {kinds:?}");
        }
        assert!(kinds.len() >= 8, "{kinds:?}");
        // Listed newest first, the whole month on 20 pages of 100.
        let mut seen = 0;
        let mut after = String::new();
        loop {
            let page: Value = serde_json::from_slice(
                &list(&org, &Query::parse(&format!("limit=100{after}"))).unwrap(),
            )
            .unwrap();
            seen += page["data"].as_array().unwrap().len();
            if page["has_more"] != true {
                break;
            }
            after = format!("&after={}", page["last_id"].as_str().unwrap());
        }
        assert_eq!(seen, 2_000);
    }

    #[test]
    fn objects_made_this_month_get_their_creation_event_at_their_creation_time() {
        let mut org = Org::generate(40, 3, NOW);
        let recent: Vec<(String, i64)> = org
            .projects
            .iter()
            .flat_map(|p| &p.api_keys)
            .filter(|k| k.created_at > NOW - HISTORY)
            .map(|k| (k.id.to_string(), k.created_at))
            .collect();
        assert!(!recent.is_empty());
        org.generate_audit_events(3_000, 3, NOW);
        for (id, at) in recent {
            let found = org.audit_log.newest_first().find(|e| {
                e["type"] == "api_key.created" && e["api_key.created"]["id"] == id.as_str()
            });
            assert_eq!(
                found.map(|e| e["effective_at"].clone()),
                Some(json!(at)),
                "{id}"
            );
        }
    }
}
