//! `[[notify.channel]]`: named notification channels (Slack, signed webhooks, PagerDuty,
//! more email recipients), each with its own severity floor and rule globs.
//!
//! A webhook URL, signing secret or routing key is a credential: the file only names where
//! to find it (`url_env` / `url_file`, …), so the configuration can be shared and logged.
//! Whether that variable is set, and whether the URL it holds is https, is checked when the
//! notifier is built.

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::raw::RawChannel;
use super::validate::Check;
use super::{DEFAULT_MAX_BODY_BYTES, MAX_MAX_BODY_BYTES, MIN_MAX_BODY_BYTES};
use crate::diagnostics::DiagnosticCode;
use crate::model::Severity;
use crate::size::ByteSize;

/// What a channel talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// A Slack incoming webhook (or a Slack-compatible one: Mattermost, Rocket.Chat).
    Slack,
    /// A signed JSON POST (`docs/webhook.md`).
    Webhook,
    /// PagerDuty Events API v2.
    PagerDuty,
    /// Email through `[notify.email]`'s server, to this channel's recipients.
    Email,
}

impl ChannelKind {
    /// Every kind, as spelled in the file.
    pub const NAMES: [&'static str; 4] = ["slack", "webhook", "pagerduty", "email"];

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Webhook => "webhook",
            ChannelKind::PagerDuty => "pagerduty",
            ChannelKind::Email => "email",
        }
    }

    /// The kind spelled `name`.
    pub fn parse(name: &str) -> Option<ChannelKind> {
        match name {
            "slack" => Some(ChannelKind::Slack),
            "webhook" => Some(ChannelKind::Webhook),
            "pagerduty" => Some(ChannelKind::PagerDuty),
            "email" => Some(ChannelKind::Email),
            _ => None,
        }
    }
}

/// Where a credential is read from when the notifier is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable, by name.
    Env(Spanned<String>),
    /// A file (relative to the configuration file), whose content is trimmed.
    File(Spanned<PathBuf>),
}

/// One `[[notify.channel]]`, checked.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// Its unique name (metrics, `notify test --channel`, the outbox).
    pub name: String,
    /// What it talks to.
    pub kind: ChannelKind,
    /// The webhook URL (slack, webhook).
    pub url: Option<SecretSource>,
    /// The signing secret (webhook).
    pub secret: Option<SecretSource>,
    /// The routing key (pagerduty).
    pub routing_key: Option<SecretSource>,
    /// PagerDuty's events endpoint when not the default (not a secret).
    pub events_url: Option<String>,
    /// Findings below this severity are not sent here.
    pub min_severity: Severity,
    /// Rule id globs; `None` = every rule.
    pub rules: Option<Vec<String>>,
    /// Recipients (email).
    pub to: Vec<String>,
    /// Whether findings an exemption now covers are sent too (webhook).
    pub send_exempted: bool,
    /// The largest body one message has before a run's announcement is split (webhook).
    pub max_body_bytes: ByteSize,
    /// The table's span, for errors found when the notifier is built.
    pub span: Range<usize>,
}

const T: &str = "[[notify.channel]]";

/// Validates every channel; `email_configured` says whether `[notify.email]` exists (it is
/// the channel named `email`, and the server that `kind = "email"` channels use).
pub(super) fn validate_channels(
    raw: &[RawChannel],
    email_configured: bool,
    c: &mut Check<'_>,
) -> Vec<ChannelConfig> {
    // `log` is always there (`notify test --channel log`); `email` when configured.
    let mut seen: Vec<String> = vec!["log".into()];
    if email_configured {
        seen.push("email".into());
    }
    let mut out = Vec::new();
    for channel in raw {
        let name = channel.name.as_ref().and_then(|n| channel_name(n, c));
        if channel.name.is_none() {
            c.missing(T, "name", channel.span.clone(), "");
        }
        if let (Some(name), Some(spanned)) = (&name, &channel.name) {
            if seen.contains(name) {
                let why = if name == "email" && email_configured {
                    "`email` is the channel of [notify.email]"
                } else if name == "log" {
                    "`log` is the log channel every installation has"
                } else {
                    "another channel has this name"
                };
                c.error(
                    DiagnosticCode::DuplicateChannel,
                    spanned.span(),
                    format!("duplicate channel name `{name}`: {why}"),
                    "duplicate name",
                );
                continue;
            }
            seen.push(name.clone());
        }
        let checked = channel_config(channel, email_configured, c);
        if let (Some(name), Some(mut checked)) = (name, checked) {
            checked.name = name;
            out.push(checked);
        }
    }
    out
}

fn channel_name(name: &Spanned<String>, c: &mut Check<'_>) -> Option<String> {
    let text = name.get_ref();
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
    if !ok {
        c.error(
            DiagnosticCode::BadValue,
            name.span(),
            format!(
                "channel name `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
                crate::report::inert(text)
            ),
            "bad name",
        );
        return None;
    }
    Some(text.clone())
}

/// Everything but the name; `None` after any error.
fn channel_config(
    raw: &RawChannel,
    email_configured: bool,
    c: &mut Check<'_>,
) -> Option<ChannelConfig> {
    let Some(kind_text) = &raw.kind else {
        c.missing(
            T,
            "kind",
            raw.span.clone(),
            ": slack, webhook, pagerduty or email",
        );
        return None;
    };
    let Some(kind) = ChannelKind::parse(kind_text.get_ref()) else {
        let d = c.diags.error(
            DiagnosticCode::UnknownChannelKind,
            Some(c.file),
            Some(kind_text.span()),
            format!(
                "unknown channel kind `{}`",
                crate::report::inert(kind_text.get_ref())
            ),
        );
        d.label("unknown kind");
        match super::closest(kind_text.get_ref(), ChannelKind::NAMES) {
            Some(close) => d.help(format!("did you mean `{close}`?")),
            None => d.help(format!("the kinds are: {}", ChannelKind::NAMES.join(", "))),
        };
        return None;
    };
    let mut ok = true;
    for (key, value) in [("secret", &raw.secret), ("routing_key", &raw.routing_key)] {
        if let Some(v) = value {
            secret_in_config(c, key, v.span());
            ok = false;
        }
    }
    let url = match kind {
        ChannelKind::Slack | ChannelKind::Webhook => {
            if let Some(u) = &raw.url {
                secret_in_config(c, "url", u.span());
                ok = false;
            }
            // A URL written in the file is already one problem; "missing `url_env`" would
            // only repeat it.
            source(
                raw,
                c,
                "url",
                &raw.url_env,
                &raw.url_file,
                raw.url.is_none(),
            )
        }
        _ => source(raw, c, "url", &raw.url_env, &raw.url_file, false),
    };
    let secret = source(
        raw,
        c,
        "secret",
        &raw.secret_env,
        &raw.secret_file,
        kind == ChannelKind::Webhook && raw.secret.is_none(),
    );
    let routing_key = source(
        raw,
        c,
        "routing_key",
        &raw.routing_key_env,
        &raw.routing_key_file,
        kind == ChannelKind::PagerDuty && raw.routing_key.is_none(),
    );
    ok &= unexpected_keys(raw, kind, c);
    let events_url = match (kind, &raw.url) {
        (ChannelKind::PagerDuty, Some(u)) => {
            let url = events_url(u, c);
            ok &= url.is_some();
            url
        }
        _ => None,
    };
    let to = recipients(raw, kind, email_configured, c);
    let min_severity = if let Some(s) = &raw.min_severity {
        c.parse(
            s,
            DiagnosticCode::BadSeverity,
            "unknown severity",
            str::parse::<Severity>,
        )
    } else {
        if kind == ChannelKind::PagerDuty {
            warn_pages_every_finding(kind_text.span(), c);
        }
        Some(Severity::Info)
    };
    let rules = match &raw.rules {
        Some(globs) => rule_globs(raw, globs, c).map(Some),
        None => Some(None),
    };
    let max_body_bytes = max_body_bytes(raw.max_body_bytes.as_ref(), c);
    if !ok {
        return None;
    }
    Some(ChannelConfig {
        name: String::new(),
        kind,
        url: url?,
        secret: secret?,
        routing_key: routing_key?,
        events_url,
        min_severity: min_severity?,
        rules: rules?,
        to: to?,
        send_exempted: raw.send_exempted.as_ref().is_some_and(|b| *b.get_ref()),
        max_body_bytes: max_body_bytes?,
        span: raw.span.clone(),
    })
}

/// A webhook channel's `max_body_bytes`: a size from [`MIN_MAX_BODY_BYTES`] to
/// [`MAX_MAX_BODY_BYTES`]; the default when not set.
fn max_body_bytes(raw: Option<&Spanned<String>>, c: &mut Check<'_>) -> Option<ByteSize> {
    let Some(s) = raw else {
        return Some(DEFAULT_MAX_BODY_BYTES);
    };
    let size = c.parse(s, DiagnosticCode::BadValue, "expected a size", |t| {
        t.parse::<ByteSize>()
    })?;
    let (problem, label) = if size > MAX_MAX_BODY_BYTES {
        (
            format!(
                "`max_body_bytes` must be at most {MAX_MAX_BODY_BYTES}, not {size}: every \
                 message is held whole in memory and in the outbox"
            ),
            "too large",
        )
    } else if size < MIN_MAX_BODY_BYTES {
        (
            format!(
                "`max_body_bytes` must be at least {MIN_MAX_BODY_BYTES}, not {size}: one \
                 finding's transition can take a few KiB"
            ),
            "too small",
        )
    } else {
        return Some(size);
    };
    c.error(DiagnosticCode::BadValue, s.span(), problem, label);
    None
}

fn secret_in_config(c: &mut Check<'_>, key: &str, span: Range<usize>) {
    let d = c.diags.error(
        DiagnosticCode::SecretInConfig,
        Some(c.file),
        Some(span),
        format!("`{key}` is a secret and is not read from the configuration file"),
    );
    d.label("secret in the file");
    d.help(format!(
        "put it in an environment variable named by `{key}_env`, or a file named by `{key}_file`"
    ));
}

/// `<key>_env` or `<key>_file`: `Some(None)` when absent and not `required`, `None` after an
/// error.
fn source(
    raw: &RawChannel,
    c: &mut Check<'_>,
    key: &str,
    env: &Option<Spanned<String>>,
    file: &Option<Spanned<String>>,
    required: bool,
) -> Option<Option<SecretSource>> {
    match (env, file) {
        (Some(e), Some(_)) => {
            c.error(
                DiagnosticCode::BadValue,
                e.span(),
                format!("`{key}_env` and `{key}_file` are both set; keep one"),
                "one of two",
            );
            None
        }
        (Some(e), None) => {
            c.env_name(e, &format!("{key}_env"))?;
            Some(Some(SecretSource::Env(e.clone())))
        }
        (None, Some(f)) => {
            c.non_empty(f, &format!("{key}_file"))?;
            Some(Some(SecretSource::File(Spanned::new(
                f.span(),
                PathBuf::from(f.get_ref()),
            ))))
        }
        (None, None) if required => {
            c.missing(
                T,
                &format!("{key}_env"),
                raw.span.clone(),
                &format!(" (or `{key}_file`) for this kind"),
            );
            None
        }
        (None, None) => Some(None),
    }
}

/// Keys that belong to another kind: reported, so a `secret_env` on a Slack channel is not
/// silently taken for a signed channel.
fn unexpected_keys(raw: &RawChannel, kind: ChannelKind, c: &mut Check<'_>) -> bool {
    let present = [
        ("url_env", raw.url_env.as_ref().map(Spanned::span)),
        ("url_file", raw.url_file.as_ref().map(Spanned::span)),
        ("secret_env", raw.secret_env.as_ref().map(Spanned::span)),
        ("secret_file", raw.secret_file.as_ref().map(Spanned::span)),
        (
            "routing_key_env",
            raw.routing_key_env.as_ref().map(Spanned::span),
        ),
        (
            "routing_key_file",
            raw.routing_key_file.as_ref().map(Spanned::span),
        ),
        ("to", raw.to.first().map(Spanned::span)),
        (
            "send_exempted",
            raw.send_exempted.as_ref().map(Spanned::span),
        ),
        (
            "max_body_bytes",
            raw.max_body_bytes.as_ref().map(Spanned::span),
        ),
    ];
    let allowed: &[&str] = match kind {
        ChannelKind::Slack => &["url_env", "url_file"],
        ChannelKind::Webhook => &[
            "url_env",
            "url_file",
            "secret_env",
            "secret_file",
            "send_exempted",
            "max_body_bytes",
        ],
        ChannelKind::PagerDuty => &["routing_key_env", "routing_key_file"],
        ChannelKind::Email => &["to"],
    };
    let mut ok = true;
    for (key, span) in present {
        if let Some(span) = span
            && !allowed.contains(&key)
        {
            c.error(
                DiagnosticCode::UnexpectedKey,
                span,
                format!(
                    "`{key}` does not apply to a {} channel (its keys: {})",
                    kind.as_str(),
                    allowed.join(", ")
                ),
                "not for this kind",
            );
            ok = false;
        }
    }
    ok
}

/// PagerDuty's events endpoint: https, or http towards loopback.
fn events_url(u: &Spanned<String>, c: &mut Check<'_>) -> Option<String> {
    match check_url(u.get_ref()) {
        Ok(()) => Some(u.get_ref().clone()),
        Err(UrlProblem::Insecure) => {
            c.error(
                DiagnosticCode::InsecureUrl,
                u.span(),
                "`url` must be https (plain http only towards a loopback host)".into(),
                "not https",
            );
            None
        }
        Err(UrlProblem::Unparsable(e)) => {
            c.error(
                DiagnosticCode::BadValue,
                u.span(),
                format!("`url` is not a URL: {e}"),
                "expected a URL",
            );
            None
        }
    }
}

fn recipients(
    raw: &RawChannel,
    kind: ChannelKind,
    email_configured: bool,
    c: &mut Check<'_>,
) -> Option<Vec<String>> {
    if kind != ChannelKind::Email {
        return Some(Vec::new());
    }
    if !email_configured {
        c.missing(
            "the configuration",
            "[notify.email]",
            raw.span.clone(),
            ": an email channel sends through its server and sender",
        );
        return None;
    }
    if raw.to.is_empty() {
        c.missing(T, "to", raw.span.clone(), ": at least one recipient");
        return None;
    }
    // Every address is checked, so that each bad one is reported, not only the first.
    let to: Vec<Option<String>> = raw
        .to
        .iter()
        .map(|a| super::validate::email_address(a, c))
        .collect();
    to.into_iter().collect()
}

fn rule_globs(
    raw: &RawChannel,
    globs: &[Spanned<String>],
    c: &mut Check<'_>,
) -> Option<Vec<String>> {
    if globs.is_empty() {
        c.error(
            DiagnosticCode::EmptyValue,
            raw.span.clone(),
            "`rules = []` would send nothing; leave `rules` out to send every rule".into(),
            "empty rules",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for g in globs {
        match globset::Glob::new(g.get_ref()) {
            Ok(_) => out.push(g.get_ref().clone()),
            Err(e) => {
                c.error(
                    DiagnosticCode::BadGlob,
                    g.span(),
                    format!("bad rule pattern: {}", e.kind()),
                    "not a glob",
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Why a notification URL cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not https, towards a host that is not loopback.
    Insecure,
    /// Not a URL at all; the parser's words (never the URL itself, which may be secret).
    Unparsable(String),
}

/// Accepts an https URL, or an http one towards a loopback host.
pub fn check_url(text: &str) -> Result<(), UrlProblem> {
    let url = url::Url::parse(text.trim()).map_err(|e| UrlProblem::Unparsable(e.to_string()))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if url.host_str().is_some_and(super::is_loopback_host) => Ok(()),
        "http" => Err(UrlProblem::Insecure),
        other => Err(UrlProblem::Unparsable(format!(
            "scheme `{other}` is not http or https"
        ))),
    }
}

/// Warns of a pagerduty channel left at the default `min_severity`: its first run triggers an
/// incident for every open finding, low and info ones included, which on a large organization
/// is hundreds of pages on the day it is set up. `min_severity = "info"` written out says that
/// is meant and silences it; the default itself stays, so an upgrade pages no less than before.
fn warn_pages_every_finding(span: Range<usize>, c: &mut Check<'_>) {
    c.diags
        .warning(
            DiagnosticCode::PagerdutyEveryFinding,
            Some(c.file),
            Some(span),
            "this pagerduty channel pages for every finding, `info` included: its first run \
             triggers an incident for each one open",
        )
        .label("no `min_severity`")
        .help(
            "add `min_severity = \"high\"` (or the lowest severity worth waking someone for); \
             write `min_severity = \"info\"` if every finding is meant",
        );
}
