//! One `[[notify.channel]]`, ready to use: its route (severity floor, rule globs), its
//! credentials read from the environment or a file and registered as secrets, and how a run's
//! digest becomes its outbox message.

use chrono::{DateTime, Utc};
use rusqlite::Transaction;
use secrecy::{ExposeSecret, SecretString};

use super::http::HttpChannel;
use super::outbox::{self, Attempt, OutboxId};
use super::plan::{Digest, FindingState, FindingStatus, Route, RunContext};
use super::{EmailChannel, NotifyError, pagerduty, slack, webhook};
use crate::config::{ChannelConfig, ChannelKind, Config, SecretSource, UrlProblem};

/// The largest credential file read.
const MAX_SECRET_FILE: crate::size::ByteSize = crate::size::ByteSize::from_bytes(64 << 10);

/// A configured channel.
#[derive(Debug)]
pub struct Channel {
    /// Its name.
    pub name: String,
    /// What it talks to.
    pub kind: ChannelKind,
    /// Which findings it hears about.
    pub route: Route,
    /// Where its messages go.
    pub target: Target,
    /// Whether findings an exemption now covers are sent too (webhook `send_exempted`).
    pub send_exempted: bool,
    /// The largest body before a run's announcement is split (webhook `max_body_bytes`).
    pub max_body_bytes: usize,
}

/// Where a channel's messages go.
#[derive(Debug)]
pub enum Target {
    /// Email through `[notify.email]`'s server, to this channel's recipients.
    Email(Box<EmailChannel>),
    /// An HTTP receiver.
    Http(HttpChannel),
}

/// What `notify test` got from one channel.
#[derive(Debug)]
pub struct TestResult {
    /// The channel.
    pub channel: String,
    /// The receiver's words, or why it failed.
    pub result: Result<String, String>,
}

/// Builds a channel: reads its credentials, checks its URL, registers the secrets.
pub(super) fn build(
    cfg: &ChannelConfig,
    config: &Config,
    email: Option<&EmailChannel>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Channel, NotifyError> {
    let section = format!("notify.channel \"{}\"", cfg.name);
    let err = |key: &'static str, span: Option<std::ops::Range<usize>>, message: String| {
        NotifyError::Config {
            place: config.place(span.or_else(|| Some(cfg.span.clone()))),
            section: section.clone(),
            key,
            message,
        }
    };
    let mut rules = None;
    if let Some(globs) = &cfg.rules {
        let mut set = globset::GlobSetBuilder::new();
        for g in globs {
            // Validation already parsed each glob.
            let glob = globset::Glob::new(g).map_err(|e| err("rules", None, e.to_string()))?;
            set.add(glob);
        }
        rules = Some(set.build().map_err(|e| err("rules", None, e.to_string()))?);
    }
    let route = Route {
        min_severity: cfg.min_severity,
        rules,
    };
    let target =
        match cfg.kind {
            ChannelKind::Email => {
                let Some(base) = email else {
                    return Err(err(
                        "kind",
                        None,
                        "an email channel needs a [notify.email] section".into(),
                    ));
                };
                let mut to = Vec::new();
                for a in &cfg.to {
                    to.push(a.parse().map_err(|e| {
                        err("to", None, format!("`{a}` is not an email address: {e}"))
                    })?);
                }
                let to = super::distinct(to);
                Target::Email(Box::new(EmailChannel { to, ..base.clone() }))
            }
            kind => {
                let read = |key: &'static str, source: &SecretSource| {
                    read_secret(key, source, config, env, &err)
                };
                let url = match (&cfg.url, kind) {
                    (Some(source), _) => read("url", source)?,
                    (None, ChannelKind::PagerDuty) => SecretString::from(
                        cfg.events_url
                            .clone()
                            .unwrap_or_else(|| pagerduty::DEFAULT_EVENTS_URL.to_owned()),
                    ),
                    (None, _) => return Err(err("url_env", None, "a URL is required".into())),
                };
                check_url(&url, cfg, &err)?;
                let secret = cfg.secret.as_ref().map(|s| read("secret", s)).transpose()?;
                let routing_key = cfg
                    .routing_key
                    .as_ref()
                    .map(|s| read("routing_key", s))
                    .transpose()?;
                register_url(&url);
                for s in secret.iter().chain(routing_key.iter()) {
                    crate::secrets::register(s);
                }
                Target::Http(HttpChannel::new(
                    cfg.name.clone(),
                    kind,
                    url,
                    secret,
                    routing_key,
                ))
            }
        };
    Ok(Channel {
        name: cfg.name.clone(),
        kind: cfg.kind,
        route,
        target,
        send_exempted: cfg.send_exempted,
        max_body_bytes: usize::try_from(cfg.max_body_bytes.as_bytes()).unwrap_or(usize::MAX),
    })
}

/// Registers a webhook URL, and its path and query alone (a library may log the request line
/// without the host), as secrets.
fn register_url(url: &SecretString) {
    crate::secrets::register(url);
    if let Ok(parsed) = url::Url::parse(url.expose_secret()) {
        let mut tail = parsed.path().to_owned();
        if let Some(q) = parsed.query() {
            tail.push('?');
            tail.push_str(q);
        }
        // A bare `/` or a short common path is no secret and would scrub too much.
        if tail.len() > 8 {
            crate::secrets::register(&SecretString::from(tail));
        }
    }
}

/// A credential from its environment variable or file; never echoed in an error.
fn read_secret(
    key: &'static str,
    source: &SecretSource,
    config: &Config,
    env: &impl Fn(&str) -> Option<String>,
    err: &impl Fn(&'static str, Option<std::ops::Range<usize>>, String) -> NotifyError,
) -> Result<SecretString, NotifyError> {
    match source {
        SecretSource::Env(var) => {
            let key_env = match key {
                "url" => "url_env",
                "secret" => "secret_env",
                _ => "routing_key_env",
            };
            env(var.get_ref())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(SecretString::from)
                .ok_or_else(|| {
                    err(
                        key_env,
                        crate::config::span_of(var),
                        crate::secrets::unset_variable(var.get_ref()),
                    )
                })
        }
        SecretSource::File(path) => {
            let key_file = match key {
                "url" => "url_file",
                "secret" => "secret_file",
                _ => "routing_key_file",
            };
            let full = config.resolve(path.get_ref());
            let text = read_bounded(&full).map_err(|e| {
                err(
                    key_file,
                    crate::config::span_of(path),
                    format!("cannot read {}: {e}", full.display()),
                )
            })?;
            let value = text.trim().to_owned();
            if value.is_empty() {
                return Err(err(
                    key_file,
                    crate::config::span_of(path),
                    format!("{} is empty", full.display()),
                ));
            }
            Ok(SecretString::from(value))
        }
    }
}

/// A secret file's text; one over [`MAX_SECRET_FILE`] is refused, not cut short into a
/// wrong secret.
fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    let bytes = crate::size::read_file_bounded(path, MAX_SECRET_FILE)?;
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// https, or http towards loopback; the error names where the URL came from, never the URL.
fn check_url(
    url: &SecretString,
    cfg: &ChannelConfig,
    err: &impl Fn(&'static str, Option<std::ops::Range<usize>>, String) -> NotifyError,
) -> Result<(), NotifyError> {
    let from = match &cfg.url {
        Some(SecretSource::Env(v)) => format!("the URL in {}", v.get_ref()),
        Some(SecretSource::File(p)) => format!("the URL in {}", p.get_ref().display()),
        None => "`url`".to_owned(),
    };
    let key = match &cfg.url {
        Some(SecretSource::Env(_)) => "url_env",
        Some(SecretSource::File(_)) => "url_file",
        None => "url",
    };
    match crate::config::check_url(url.expose_secret()) {
        Ok(()) => Ok(()),
        Err(UrlProblem::Insecure) => Err(err(
            key,
            None,
            format!("{from} is not https (plain http is allowed only towards a loopback host)"),
        )),
        Err(UrlProblem::Unparsable(why)) => {
            Err(err(key, None, format!("{from} is not a URL: {why}")))
        }
    }
}

impl Channel {
    /// How the outbox sends this channel's messages.
    pub(super) fn sender(&self) -> outbox::Sender<'_> {
        match &self.target {
            Target::Email(e) => outbox::Sender::Email(&e.transport),
            Target::Http(h) => outbox::Sender::Http(h),
        }
    }

    /// Queues this channel's part of `digest`, if it has one. `closed` are the findings
    /// closed this run without an announcement ([`super::plan::closed_unannounced`]):
    /// PagerDuty hears of them (a `resolve` each), and a webhook with `send_exempted` of
    /// those an exemption now covers; `ctx` and `now` describe the run when there is no
    /// digest.
    pub(super) fn queue(
        &self,
        tx: &Transaction<'_>,
        digest: Option<&Digest>,
        closed: &[FindingState],
        (ctx, now): (&RunContext, DateTime<Utc>),
        repeat_interval: &str,
    ) -> Result<Vec<OutboxId>, NotifyError> {
        // PagerDuty applies its severity floor to triggers only: a resolve always follows
        // the trigger it closes.
        let route = match self.kind {
            ChannelKind::PagerDuty => Route {
                min_severity: crate::model::Severity::Info,
                rules: self.route.rules.clone(),
            },
            _ => self.route.clone(),
        };
        let digest = digest.and_then(|d| d.routed(&route));
        let (generated_at, snapshot_id) = digest
            .as_ref()
            .map_or((now, ctx.snapshot_id), |d| (d.generated_at, d.snapshot_id));
        let mut fingerprints = digest
            .as_ref()
            .map(Digest::fingerprints)
            .unwrap_or_default();
        let one = |body: serde_json::Value, fingerprints: Vec<crate::model::Fingerprint>| {
            vec![webhook::Part {
                body,
                fingerprints,
                delivery_id: outbox::new_delivery_id(),
            }]
        };
        let mut new_id = outbox::new_delivery_id;
        let parts = match (&self.target, self.kind, &digest) {
            (Target::Email(email), _, Some(digest)) => {
                return Ok(vec![super::queue(
                    tx,
                    &self.name,
                    email,
                    digest,
                    repeat_interval,
                )?]);
            }
            (Target::Http(_), ChannelKind::PagerDuty, _) => {
                let former = pagerduty::former_organizations(tx, &ctx.organization)
                    .map_err(super::outbox::OutboxError::from)?;
                let mut events = digest
                    .as_ref()
                    .map(|d| pagerduty::events(d, self.route.min_severity, &former))
                    .unwrap_or_default();
                let closed: Vec<FindingState> = closed
                    .iter()
                    .filter(|f| route.accepts(f))
                    .cloned()
                    .collect();
                events.extend(pagerduty::resolves(&closed, &ctx.organization, &former));
                fingerprints.extend(closed.into_iter().map(|f| f.fingerprint));
                if events.is_empty() {
                    return Ok(Vec::new());
                }
                one(serde_json::Value::Array(events), fingerprints)
            }
            (Target::Http(_), ChannelKind::Webhook, _) if self.send_exempted => {
                let exempted: Vec<FindingState> = closed
                    .iter()
                    .filter(|f| f.status == FindingStatus::Exempt && route.accepts(f))
                    .cloned()
                    .collect();
                if digest.is_none() && exempted.is_empty() {
                    return Ok(Vec::new());
                }
                let without = Digest::without_announcements(ctx, now);
                let digest = digest.as_ref().unwrap_or(&without);
                webhook::parts(digest, Some(&exempted), self.max_body_bytes, &mut new_id)
            }
            (Target::Http(_), ChannelKind::Slack, Some(digest)) => {
                one(slack::message(digest), fingerprints)
            }
            (Target::Http(_), _, Some(digest)) => {
                webhook::parts(digest, None, self.max_body_bytes, &mut new_id)
            }
            (_, _, None) => return Ok(Vec::new()),
        };
        let of = parts.len();
        let mut ids = Vec::with_capacity(of);
        for (index, part) in parts.into_iter().enumerate() {
            let count = part.fingerprints.len();
            let subject = if of == 1 {
                format!("{}: {count} announced", self.name)
            } else {
                format!(
                    "{}: {count} announced (part {} of {of})",
                    self.name,
                    index + 1
                )
            };
            ids.push(outbox::insert(
                tx,
                &outbox::NewMessage {
                    channel: self.name.clone(),
                    kind: self.kind.as_str().to_owned(),
                    delivery_id: part.delivery_id,
                    snapshot_id,
                    subject,
                    sender: String::new(),
                    recipients: Vec::new(),
                    message: part.body.to_string().into_bytes(),
                    fingerprints: part.fingerprints,
                },
                generated_at,
            )?);
        }
        Ok(ids)
    }

    /// Sends a test message straight to the receiver (not through the outbox).
    pub fn send_test(&self, organization: &str, now: DateTime<Utc>) -> Result<String, String> {
        let delivery_id = format!("orgwarden-test-{}", outbox::new_delivery_id());
        match &self.target {
            Target::Email(email) => super::send_test_email(email, organization, now)
                .map_err(|e| crate::secrets::scrub(&e.to_string()).into_owned()),
            Target::Http(http) => {
                let body = match self.kind {
                    ChannelKind::Slack => slack::test_message(organization),
                    ChannelKind::PagerDuty => {
                        serde_json::Value::Array(pagerduty::test_events(organization, now))
                    }
                    _ => {
                        let mut body = webhook::test_payload(organization, now, &delivery_id);
                        // The shape this channel's real messages have.
                        if self.send_exempted {
                            body["exempted"] = serde_json::json!([]);
                        }
                        body
                    }
                };
                match http.send(body.to_string().as_bytes(), &delivery_id, 0, now) {
                    Attempt::Sent(reply) | Attempt::SentToSome { reply, .. } => Ok(reply),
                    Attempt::Retry { error, .. } | Attempt::Rejected { error, .. } => Err(error),
                }
            }
        }
    }
}
