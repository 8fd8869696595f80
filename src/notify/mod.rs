//! Notification: decides what a run announces ([`plan`]), logs every announced event as one
//! structured `tracing` event, renders the email digest ([`render`]), queues it in the durable
//! [`outbox`] in the caller's transaction, and delivers it ([`transport`]).
//!
//! The caller's part, per run:
//! ```text
//! let tx = conn.transaction()?;
//! … update findings …
//! let a = notifier.announce(&tx, &findings, &ctx, now)?;
//! … record a.announced as announced at now, a.settled as told …
//! tx.commit()?;
//! a.log();                                  // only once committed: a dry run logs nothing
//! notifier.deliver_pending(&conn, now)?;   // failures stay queued for the next run
//! ```

pub mod channel;
pub mod http;
pub mod outbox;
pub mod pagerduty;
pub mod plan;
pub mod render;
pub mod slack;
pub mod transport;
pub mod webhook;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lettre::message::Mailbox;
use rusqlite::{Connection, Transaction};
use secrecy::SecretString;

pub use channel::{Channel, Target, TestResult};
pub use outbox::{DeliveryReport, OutboxId, deliver_pending};
pub use plan::{
    Digest, FindingState, FindingStatus, Policy, Reason, Route, RunContext, Transition,
};
pub use render::Renderer;
pub use transport::{DeliveryError, SmtpCredentials, SmtpSettings, TlsMode, Transport};

use tokio_util::sync::CancellationToken;

use crate::config::{Config, EmailConfig, EmailTls, EmailTransport};
use crate::model::Fingerprint;
use crate::size::ByteSize;

/// How long one SMTP connect or command may take; a whole message, four times that.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why notification could not be set up or carried out.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `[notify]` holds a value that cannot work.
    #[error("{place}[{section}] {key}: {message}")]
    Config {
        /// Where: `file:line:column: `, or empty when there is no file.
        place: String,
        /// `notify`, `notify.email` or `notify.channel "name"`.
        section: String,
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The digest could not be rendered.
    #[error(transparent)]
    Render(#[from] render::RenderError),
    /// The outbox could not be read or written.
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    /// A message was not delivered.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// A test message reached some recipients and not others.
    #[error("{to}: delivered ({reply}), but not to {}", transport::list(.missed))]
    NotToAll {
        /// Where it went.
        to: String,
        /// The server's final reply.
        reply: String,
        /// The recipients the server would not take, with its replies.
        missed: Vec<transport::Refusal>,
    },
}

/// The email channel, validated.
#[derive(Clone, Debug)]
pub struct EmailChannel {
    /// How messages leave.
    pub transport: Transport,
    /// The sender.
    pub from: Mailbox,
    /// The recipients.
    pub to: Vec<Mailbox>,
    renderer: Renderer,
}

/// Everything `[notify]` configures, checked once up front.
#[derive(Debug)]
pub struct Notifier {
    /// The decision rules.
    pub policy: Policy,
    repeat_interval: String,
    /// How long a delivered message's text is kept (`[notify] keep_sent`).
    keep_sent: TimeDelta,
    email: Option<EmailChannel>,
    /// `[[notify.channel]]`, in file order.
    channels: Vec<Channel>,
}

/// What `announce` did.
#[derive(Debug, Default)]
pub struct Announcement {
    /// The digest, when there was something to announce.
    pub digest: Option<Digest>,
    /// The fingerprints announced: set their `last_notified_at` to `now` in the same
    /// transaction.
    pub announced: Vec<Fingerprint>,
    /// The fingerprints whose change the policy deliberately does not announce: record
    /// them as told in the same transaction (see [`plan::settled`]).
    pub settled: Vec<Fingerprint>,
    /// The queued email, when email is configured and there was something to announce.
    pub outbox_id: Option<OutboxId>,
    /// Every message queued, by channel (`[notify.email]` is `email`).
    pub queued: Vec<(String, OutboxId)>,
}

impl Notifier {
    /// Checks `[notify]` of a loaded configuration, reading the SMTP password from the
    /// environment variable named by `password_env`.
    pub fn from_config(config: &Config) -> Result<Notifier, NotifyError> {
        Notifier::from_config_with_env(config, |name| std::env::var(name).ok())
    }

    /// As [`Notifier::from_config`], with the environment given (for tests).
    pub fn from_config_with_env(
        config: &Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Notifier, NotifyError> {
        let cfg = &config.notify;
        let email = match &cfg.email {
            Some(email) => Some(email_channel(email, config, &env)?),
            None => None,
        };
        let channels = cfg
            .channels
            .iter()
            .map(|c| channel::build(c, config, email.as_ref(), &env))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Notifier {
            policy: Policy {
                repeat_interval: cfg.repeat_interval.to_time_delta(),
                send_resolved: cfg.send_resolved,
            },
            repeat_interval: cfg.repeat_interval.to_string(),
            keep_sent: cfg.keep_sent.to_time_delta(),
            email,
            channels,
        })
    }

    /// The `[[notify.channel]]` channels.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Whether any channel (email included) is configured.
    pub fn has_channels(&self) -> bool {
        self.email.is_some() || !self.channels.is_empty()
    }

    /// The email channel, if configured.
    pub fn email(&self) -> Option<&EmailChannel> {
        self.email.as_ref()
    }

    /// Whether the channel named `name` sends email: `[notify.email]` (named `email`) or a
    /// `kind = "email"` channel.
    pub fn is_email_channel(&self, name: &str) -> bool {
        (name == "email" && self.email.is_some())
            || self
                .channels
                .iter()
                .any(|c| c.name == name && c.kind == crate::config::ChannelKind::Email)
    }

    /// Decides what this run announces and queues the email digest in `tx`. The caller
    /// must record [`Announcement::announced`] and [`Announcement::settled`] in the same
    /// transaction, commit, and then [`Announcement::log`] it.
    pub fn announce(
        &self,
        tx: &Transaction<'_>,
        findings: &[FindingState],
        ctx: &RunContext,
        now: DateTime<Utc>,
    ) -> Result<Announcement, NotifyError> {
        let settled = plan::settled(findings, ctx, &self.policy);
        let closed = plan::closed_unannounced(findings, ctx, &self.policy);
        let digest = plan::plan(findings, ctx, &self.policy, now).map(|mut digest| {
            digest.spend = crate::store::project_spend_in(tx);
            digest
        });
        if digest.is_none() && closed.is_empty() {
            return Ok(Announcement {
                settled,
                ..Announcement::default()
            });
        }
        let outbox_id = match (&self.email, &digest) {
            (Some(email), Some(digest)) => {
                Some(queue(tx, "email", email, digest, &self.repeat_interval)?)
            }
            _ => None,
        };
        let mut queued: Vec<(String, OutboxId)> = outbox_id
            .iter()
            .map(|id| ("email".to_owned(), *id))
            .collect();
        for channel in &self.channels {
            for id in channel.queue(
                tx,
                digest.as_ref(),
                &closed,
                (ctx, now),
                &self.repeat_interval,
            )? {
                queued.push((channel.name.clone(), id));
            }
        }
        Ok(Announcement {
            announced: digest
                .as_ref()
                .map(Digest::fingerprints)
                .unwrap_or_default(),
            digest,
            settled,
            outbox_id,
            queued,
        })
    }

    /// Delivers every due outbox message, each channel on its own. Without any channel
    /// configured, nothing is tried.
    pub fn deliver_pending(
        &self,
        conn: &Connection,
        now: DateTime<Utc>,
    ) -> Result<DeliveryReport, NotifyError> {
        self.deliver(conn, now, outbox::Pass::Due, &CancellationToken::new())
    }

    /// Delivers the outbox messages `pass` selects, trying none once `stop` is cancelled
    /// (see [`outbox::deliver`]).
    pub fn deliver(
        &self,
        conn: &Connection,
        now: DateTime<Utc>,
        pass: outbox::Pass,
        stop: &CancellationToken,
    ) -> Result<DeliveryReport, NotifyError> {
        let report = if self.has_channels() {
            outbox::deliver(conn, self, now, pass, stop)?
        } else {
            DeliveryReport::default()
        };
        // Every digest carries the CSV of every open finding: kept for ever, the sent ones
        // were nearly all of the database's growth (1.3 MB a run at 2,200 open findings).
        // Housekeeping: a failure here costs space, not a message, and is not the delivery's.
        match now
            .checked_sub_signed(self.keep_sent)
            .map(|before| outbox::forget_sent(conn, before, outbox::FORGET_PER_PASS))
        {
            Some(Ok(0)) | None => {}
            Some(Ok(forgotten)) => {
                tracing::debug!(target: "orgwarden::notify", messages = forgotten, "dropped the text of messages delivered more than [notify] keep_sent ago; their record stays");
            }
            Some(Err(error)) => {
                tracing::warn!(target: "orgwarden::notify", %error, "could not drop the text of old delivered messages; they are kept");
            }
        }
        Ok(report)
    }

    /// When a delivery pass next has a message to try (see [`outbox::next_due`]); `None`
    /// without channels or without messages waiting for one.
    pub fn next_due(&self, conn: &Connection) -> Result<Option<DateTime<Utc>>, NotifyError> {
        if !self.has_channels() {
            return Ok(None);
        }
        Ok(outbox::next_due(conn, self)?)
    }

    /// Renders a digest with this notifier's templates (for previews and tests).
    pub fn render(&self, digest: &Digest) -> Result<render::Rendered, NotifyError> {
        let renderer = match &self.email {
            Some(email) => &email.renderer,
            None => &Renderer::builtin()?,
        };
        Ok(renderer.render(digest, &self.repeat_interval)?)
    }

    /// Sends a short test message straight through the email channel (not the outbox).
    /// Returns where it went and the server's reply.
    pub fn send_test(&self, organization: &str, now: DateTime<Utc>) -> Result<String, NotifyError> {
        let Some(email) = &self.email else {
            return Err(NotifyError::Config {
                place: String::new(),
                section: "notify".into(),
                key: "email",
                message: "no email channel is configured; add a [notify.email] section".into(),
            });
        };
        send_test_email(email, organization, now)
    }
}

/// Sends a short test message straight through an email channel (not the outbox).
fn send_test_email(
    email: &EmailChannel,
    organization: &str,
    now: DateTime<Utc>,
) -> Result<String, NotifyError> {
    let mut builder = lettre::Message::builder()
        .from(email.from.clone())
        .subject(format!(
            "[orgwarden] {}: test message",
            render::subject_organization(organization)
        ))
        .date(std::time::SystemTime::from(now))
        .message_id(Some(render::message_id(&email.from)));
    for to in &email.to {
        builder = builder.to(to.clone());
    }
    let message = builder
        .body(format!(
            "This is a test message from orgwarden for the organization {}.\n\
             Audit digests will reach you this way.\n",
            render::one_line(organization)
        ))
        .map_err(render::RenderError::from)?;
    let to: Vec<String> = email.to.iter().map(|m| m.email.to_string()).collect();
    let from = email.from.email.to_string();
    // A random part, as a digest's file has: another organization's orgwarden writing the
    // same folder may send its test in the same second.
    let name = format!(
        "orgwarden-test-{}-{}",
        now.format("%Y%m%dT%H%M%S"),
        &outbox::new_delivery_id()[..12]
    );
    let accepted = email.transport.send(&transport::Outgoing {
        from: &from,
        to: &to,
        bytes: &message.formatted(),
        name: &name,
    })?;
    // A test that reached only some recipients has not shown that digests reach them all.
    if !accepted.refused.is_empty() || !accepted.deferred.is_empty() {
        let mut missed = accepted.refused;
        missed.extend(accepted.deferred);
        return Err(NotifyError::NotToAll {
            to: email.transport.describe(),
            reply: accepted.reply,
            missed,
        });
    }
    Ok(format!(
        "{}: {}",
        email.transport.describe(),
        accepted.reply
    ))
}

impl outbox::Channels for Notifier {
    fn sender(&self, channel: &str, kind: &str) -> Option<outbox::Sender<'_>> {
        if channel == "email" {
            return self
                .email
                .as_ref()
                .filter(|_| kind == "email")
                .map(|e| outbox::Sender::Email(&e.transport));
        }
        self.channels
            .iter()
            .find(|c| c.name == channel && c.kind.as_str() == kind)
            .map(Channel::sender)
    }
}

/// Renders `digest` as an email for `channel` and queues it.
fn queue(
    tx: &Transaction<'_>,
    channel: &str,
    email: &EmailChannel,
    digest: &Digest,
    repeat_interval: &str,
) -> Result<OutboxId, NotifyError> {
    let rendered = email.renderer.render(digest, repeat_interval)?;
    let message = render::build_message(&rendered, &email.from, &email.to, digest.generated_at)?;
    let id = outbox::insert(
        tx,
        &outbox::NewMessage {
            channel: channel.to_owned(),
            kind: "email".into(),
            delivery_id: outbox::new_delivery_id(),
            snapshot_id: digest.snapshot_id,
            subject: rendered.subject.clone(),
            sender: email.from.email.to_string(),
            recipients: email.to.iter().map(|m| m.email.to_string()).collect(),
            message: message.formatted(),
            fingerprints: digest.fingerprints(),
        },
        digest.generated_at,
    )?;
    Ok(id)
}

impl Announcement {
    /// Logs one structured event per announced finding: with `--log-format json`, one JSON
    /// object per line, whether or not email is configured. Call it only once the
    /// announcement is committed, so a dry run or a rolled-back run logs nothing.
    pub fn log(&self) {
        if let Some(digest) = &self.digest {
            log_digest(digest);
        }
    }
}

fn log_digest(digest: &Digest) {
    for a in &digest.announced {
        let f = &a.finding;
        let transition = f.transition.as_ref().map_or("reminder", |t| t.kind());
        tracing::info!(
            target: "orgwarden::notify",
            rule_id = %f.rule_id,
            severity = %f.severity,
            resource_id = %f.resource_id,
            // Absent for the organization's own findings, never an empty string.
            project_id = f.project_id.as_ref().map(crate::model::ProjectId::as_str),
            transition,
            fingerprint = %f.fingerprint,
            "{}: {}",
            a.reason.as_str(),
            render::one_line(&f.title),
        );
    }
}

/// Builds the email channel of a validated `[notify.email]`: what is left to check is
/// what only the environment and the file system can say (the password, the CA file, the
/// templates).
/// `to` with each address once (compared without regard to case, as mail servers do): a
/// recipient listed twice would get every digest twice.
pub(super) fn distinct(to: Vec<Mailbox>) -> Vec<Mailbox> {
    let mut seen = std::collections::HashSet::new();
    to.into_iter()
        .filter(|m| seen.insert(m.email.to_string().to_lowercase()))
        .collect()
}

/// Builds `[notify.email]` as a run does, with every secret variable taken as set: what the
/// file names wrong (a template, a CA file, an address, the outbox folder) is found without
/// reading a secret. Whether those variables are set is for `notify test` to say.
pub fn check_email_files(config: &Config) -> Result<(), NotifyError> {
    match &config.notify.email {
        Some(email) => {
            email_channel(email, config, &|_| Some("orgwarden-check-stand-in".into())).map(drop)
        }
        None => Ok(()),
    }
}

fn email_channel(
    email: &EmailConfig,
    config: &Config,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<EmailChannel, NotifyError> {
    let err = |key: &'static str, span: Option<std::ops::Range<usize>>, message: String| {
        NotifyError::Config {
            place: config.place(span),
            section: "notify.email".into(),
            key,
            message,
        }
    };
    let mailbox = |key: &'static str, a: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| err(key, None, format!("`{a}` is not an email address: {e}")))
    };
    let from = mailbox("from", &email.from)?;
    let to = distinct(
        email
            .to
            .iter()
            .map(|a| mailbox("to", a))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let transport = match email.transport {
        EmailTransport::File => {
            let dir = email
                .dir
                .as_deref()
                .ok_or_else(|| err("dir", None, "required when transport = \"file\"".into()))?;
            Transport::File {
                dir: config.resolve(dir),
            }
        }
        EmailTransport::Smtp => {
            let mut settings = smtp_settings(email, &err, env)?;
            if let Some(ca) = &email.ca_file {
                let path = config.resolve(ca.get_ref());
                // A bundle of every public root is a few hundred KiB.
                let pem =
                    crate::size::read_file_bounded(&path, ByteSize::from_mib(4)).map_err(|e| {
                        err(
                            "ca_file",
                            crate::config::span_of(ca),
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?;
                settings.extra_roots_pem.push(pem);
            }
            Transport::Smtp(settings)
        }
    };
    let template = |p: &Option<toml::Spanned<std::path::PathBuf>>| {
        p.as_ref().map(|p| config.resolve(p.get_ref()))
    };
    let (html, text) = match &email.templates {
        Some(t) => {
            // Each template alone first, so one that is missing or does not compile is
            // named by its key and line.
            for (key, written) in [("html", &t.html), ("text", &t.text)] {
                let Some(written) = written else { continue };
                let alone = if key == "html" {
                    Renderer::new(template(&t.html), None)
                } else {
                    Renderer::new(None, template(&t.text))
                };
                if let Err(e) = alone {
                    return Err(NotifyError::Config {
                        place: config.place(crate::config::span_of(written)),
                        section: "notify.email.templates".into(),
                        key,
                        message: e.to_string(),
                    });
                }
            }
            (template(&t.html), template(&t.text))
        }
        None => (None, None),
    };
    let renderer = Renderer::new(html, text)?.with_max_csv_bytes(email.max_csv_bytes);
    Ok(EmailChannel {
        transport,
        from,
        to,
        renderer,
    })
}

fn smtp_settings(
    email: &EmailConfig,
    err: &impl Fn(&'static str, Option<std::ops::Range<usize>>, String) -> NotifyError,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<SmtpSettings, NotifyError> {
    let host = email
        .host
        .clone()
        .ok_or_else(|| err("host", None, "required when transport = \"smtp\"".into()))?;
    let tls = match email.tls {
        EmailTls::StartTls => TlsMode::StartTls,
        EmailTls::Tls => TlsMode::Implicit,
        EmailTls::None => TlsMode::None,
    };
    let credentials = match (&email.username, &email.password_env) {
        (Some(username), Some(var)) => {
            let password = env(var.get_ref())
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    err(
                        "password_env",
                        crate::config::span_of(var),
                        crate::secrets::unset_variable(var.get_ref()),
                    )
                })?;
            let password = SecretString::from(password);
            // From here on the password, and the AUTH lines that carry it, are scrubbed from
            // every log line and stored error.
            crate::secrets::register_smtp(username, &password);
            Some(SmtpCredentials {
                username: username.clone(),
                password,
            })
        }
        // Validation allows only both or neither.
        _ => None,
    };
    Ok(SmtpSettings {
        port: email.port.unwrap_or(tls.default_port()),
        host,
        tls,
        credentials,
        timeout: SMTP_TIMEOUT,
        extra_roots_pem: Vec::new(),
        system_roots: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::plan::tests::{finding, t};
    use std::path::PathBuf;

    fn config(text: &str) -> Config {
        Config::parse(text, &PathBuf::from("/etc/orgwarden/orgwarden.toml")).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// The error of a configuration, whether validation or the notifier finds it.
    fn config_error(text: &str) -> String {
        match Config::parse(text, &PathBuf::from("/etc/orgwarden/orgwarden.toml")) {
            Err(e) => e.to_string(),
            Ok(c) => Notifier::from_config_with_env(&c, no_env)
                .unwrap_err()
                .to_string(),
        }
    }

    const SMTP: &str = "[notify.email]\nfrom = \"o@example.com\"\nto = [\"s@example.com\"]\n";

    #[test]
    fn plain_smtp_is_refused_towards_a_remote_host() {
        let text = format!("{SMTP}host = \"smtp.example.com\"\ntls = \"none\"\n");
        let err = config_error(&text);
        assert!(err.contains("error[bad-value]"), "{err}");
        assert!(
            err.contains("--> /etc/orgwarden/orgwarden.toml:5:7"),
            "{err}"
        );
        assert!(err.contains("loopback"), "{err}");
        let ok = format!("{SMTP}host = \"127.0.0.1\"\ntls = \"none\"\n");
        let notifier = Notifier::from_config_with_env(&config(&ok), no_env).unwrap();
        let Some(Transport::Smtp(s)) = notifier.email().map(|e| &e.transport) else {
            panic!("smtp")
        };
        assert_eq!((s.tls, s.port), (TlsMode::None, 25));
    }

    #[test]
    fn only_email_channels_count_as_email() {
        let env = |_: &str| Some("https://hooks.example.com/x".to_owned());
        let slack_named_email =
            "[[notify.channel]]\nname = \"email\"\nkind = \"slack\"\nurl_env = \"U\"\n";
        let notifier = Notifier::from_config_with_env(&config(slack_named_email), env).unwrap();
        assert!(
            !notifier.is_email_channel("email"),
            "a Slack channel named email"
        );
        let mail = format!(
            "{SMTP}transport = \"file\"\ndir = \"m\"\n[[notify.channel]]\nname = \"team\"\n\
             kind = \"email\"\nto = [\"t@example.com\"]\n[[notify.channel]]\nname = \"hook\"\n\
             kind = \"slack\"\nurl_env = \"U\"\n"
        );
        let notifier = Notifier::from_config_with_env(&config(&mail), env).unwrap();
        assert!(notifier.is_email_channel("email"));
        assert!(notifier.is_email_channel("team"));
        assert!(!notifier.is_email_channel("hook"));
    }

    #[test]
    fn a_recipient_listed_twice_is_sent_each_digest_once() {
        let text = "[notify.email]\ntransport = \"file\"\ndir = \"m\"\nfrom = \"o@example.com\"\n\
                    to = [\"s@example.com\", \"t@example.com\", \"S@Example.com\"]\n\
                    [[notify.channel]]\nname = \"team\"\nkind = \"email\"\n\
                    to = [\"u@example.com\", \"u@example.com\"]\n";
        let notifier = Notifier::from_config_with_env(&config(text), no_env).unwrap();
        let to: Vec<String> = notifier
            .email()
            .unwrap()
            .to
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(to, ["s@example.com", "t@example.com"]);
        let Some(channel::Target::Email(team)) = notifier.channels.first().map(|c| &c.target)
        else {
            panic!("an email channel")
        };
        assert_eq!(team.to.len(), 1);
    }

    #[test]
    fn ports_default_from_the_tls_mode() {
        for (tls, port) in [("starttls", 587), ("tls", 465)] {
            let text = format!("{SMTP}host = \"smtp.example.com\"\ntls = \"{tls}\"\n");
            let notifier = Notifier::from_config_with_env(&config(&text), no_env).unwrap();
            let Some(Transport::Smtp(s)) = notifier.email().map(|e| &e.transport) else {
                panic!("smtp")
            };
            assert_eq!(s.port, port);
        }
    }

    #[test]
    fn password_comes_from_the_named_variable_and_never_shows() {
        let text = format!(
            "{SMTP}host = \"smtp.example.com\"\nusername = \"ow\"\npassword_env = \"OW_PW\"\n"
        );
        let err = config_error(&text);
        assert!(err.contains("OW_PW is not set"), "{err}");
        assert!(
            err.starts_with("/etc/orgwarden/orgwarden.toml:6:16: [notify.email] password_env:"),
            "{err}"
        );
        let notifier = Notifier::from_config_with_env(&config(&text), |name| {
            (name == "OW_PW").then(|| "hunter2-secret".to_owned())
        })
        .unwrap();
        assert!(!format!("{notifier:?}").contains("hunter2-secret"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = config_error(&format!("{SMTP}transport = \"pigeon\"\n"));
        assert!(err.contains("unknown transport `pigeon`"), "{err}");
        let err = config_error(&format!("{SMTP}transport = \"file\"\n"));
        assert!(
            err.contains("error[missing-key]: [notify.email] needs `dir`"),
            "{err}"
        );
        let err = config_error(&format!("{SMTP}host = \"h\"\ntls = \"ssl\"\n"));
        assert!(err.contains("unknown mode `ssl`"), "{err}");
        let err = config_error("[notify]\nrepeat_interval = \"weekly\"\n");
        assert!(err.contains("error[bad-duration]: `weekly`"), "{err}");
        let no_to = "[notify.email]\nfrom = \"o@example.com\"\nhost = \"h\"\n";
        assert!(config_error(no_to).contains("needs `to`"));
        let bad_from = "[notify.email]\nfrom = \"not an address\"\nto = [\"s@example.com\"]\n";
        assert!(config_error(bad_from).contains("error[bad-email]"));
    }

    #[test]
    fn the_repeat_interval_takes_the_one_duration_grammar() {
        let notifier =
            Notifier::from_config_with_env(&config("[notify]\nrepeat_interval = \"2w\"\n"), no_env)
                .unwrap();
        assert_eq!(notifier.policy.repeat_interval, chrono::TimeDelta::days(14));
    }

    #[test]
    fn file_dir_is_relative_to_the_config_file() {
        let text = format!("{SMTP}transport = \"file\"\ndir = \"outbox\"\n");
        let notifier = Notifier::from_config_with_env(&config(&text), no_env).unwrap();
        let Some(Transport::File { dir }) = notifier.email().map(|e| &e.transport) else {
            panic!("file")
        };
        assert_eq!(dir, &PathBuf::from("/etc/orgwarden/outbox"));
    }

    #[test]
    fn a_renamed_organizations_pagerduty_resolve_reaches_the_incident_opened_under_its_former_name()
    {
        let mut store = crate::store::Store::open_in_memory().unwrap();
        store
            .begin_snapshot("default", t(0))
            .unwrap()
            .finish(
                &Default::default(),
                t(0),
                crate::model::SnapshotStatus::Complete,
            )
            .unwrap();
        let notifier = Notifier::from_config_with_env(
            &config(
                "[[notify.channel]]\nname = \"pager\"\nkind = \"pagerduty\"\n\
                 routing_key_env = \"PD_KEY\"\nmin_severity = \"high\"\n",
            ),
            |name| (name == "PD_KEY").then(|| "routing-key-0123456789".to_owned()),
        )
        .unwrap();
        // An organization-wide finding paged while the organization was `default`.
        let mut fixed = finding("organization", crate::model::Severity::High);
        fixed.project_id = None;
        fixed.project_name = None;
        fixed.status = FindingStatus::Resolved;
        fixed.transition = Some(Transition::Resolved);
        let ctx = RunContext {
            organization: "prod".into(),
            snapshot_id: None,
            partial: false,
        };
        let tx = store.conn().unchecked_transaction().unwrap();
        let announcement = notifier.announce(&tx, &[fixed], &ctx, t(1)).unwrap();
        let (_, id) = announcement
            .queued
            .iter()
            .find(|(channel, _)| channel == "pager")
            .expect("the resolve is queued for PagerDuty");
        let body: Vec<u8> = tx
            .query_row("SELECT message FROM outbox WHERE id = ?1", [id.0], |row| {
                row.get(0)
            })
            .unwrap();
        let events: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let keys: Vec<&str> = events
            .iter()
            .map(|e| e["dedup_key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "prod/fp-organization",
                "default/fp-organization",
                "fp-organization"
            ]
        );
    }

    #[test]
    fn every_announced_finding_is_one_json_log_line_even_without_email() {
        let log = crate::test_log::JsonLog::default();
        let subscriber = log.subscriber();
        let notifier = Notifier::from_config_with_env(&config(""), no_env).unwrap();
        let mut new = finding("key_a", crate::model::Severity::High);
        new.transition = Some(Transition::Opened);
        let quiet = finding("key_b", crate::model::Severity::Low);
        let mut org = finding("key_admin", crate::model::Severity::High);
        org.fingerprint = "fp-key_admin".into();
        org.project_id = None;
        org.project_name = None;
        org.transition = Some(Transition::Opened);
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(outbox::MIGRATION).unwrap();
        let tx = conn.transaction().unwrap();
        let ctx = RunContext {
            organization: "acme".into(),
            snapshot_id: None,
            partial: false,
        };
        let announcement = tracing::subscriber::with_default(subscriber.clone(), || {
            notifier
                .announce(&tx, &[new, quiet, org], &ctx, t(1))
                .unwrap()
        });
        assert!(
            log.text().is_empty(),
            "deciding logs nothing: a dry run must leave no announcement in the log"
        );
        tx.commit().unwrap();
        tracing::subscriber::with_default(subscriber, || announcement.log());
        assert_eq!(
            announcement.announced,
            vec![
                Fingerprint::from("fp-key_a"),
                Fingerprint::from("fp-key_admin")
            ]
        );
        assert_eq!(announcement.outbox_id, None, "no email configured");
        let out = log.text();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        let org_line = lines
            .iter()
            .find(|l| l["resource_id"] == "key_admin")
            .expect("the organization's finding is logged");
        assert!(
            org_line.get("project_id").is_none(),
            "an organization finding has no project, not an empty one: {org_line}"
        );
        let line = lines
            .iter()
            .find(|l| l["resource_id"] == "key_a")
            .expect("the project's finding is logged");
        assert_eq!(line["rule_id"], "api-key-stale");
        assert_eq!(line["severity"], "high");
        assert_eq!(line["resource_id"], "key_a");
        assert_eq!(line["project_id"], "proj_payments");
        assert_eq!(line["transition"], "opened");
        assert_eq!(line["fingerprint"], "fp-key_a");
    }

    #[test]
    fn file_transport_writes_the_digest_as_an_eml_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{SMTP}transport = \"file\"\ndir = {:?}\n",
            dir.path().join("outbox").display().to_string()
        );
        let notifier = Notifier::from_config_with_env(&config(&text), no_env).unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(outbox::MIGRATION).unwrap();
        let mut new = finding("key_a", crate::model::Severity::High);
        new.transition = Some(Transition::Opened);
        let ctx = RunContext {
            organization: "acme".into(),
            snapshot_id: None,
            partial: false,
        };
        let tx = conn.transaction().unwrap();
        let announcement = notifier.announce(&tx, &[new], &ctx, t(1)).unwrap();
        tx.commit().unwrap();
        assert!(announcement.outbox_id.is_some());
        let report = notifier.deliver_pending(&conn, t(1)).unwrap();
        assert_eq!(report.sent.len(), 1);
        let path = &report.receipts[0].1;
        assert!(path.ends_with(".eml"), "{path}");
        let bytes = std::fs::read(path).unwrap();
        let message = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(message.subject(), Some("[orgwarden] acme: 1 new — 1 high"));
        assert!(
            notifier
                .deliver_pending(&conn, t(2))
                .unwrap()
                .sent
                .is_empty()
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("outbox"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn test_messages_of_two_organizations_sent_into_one_folder_at_once_are_both_kept() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{SMTP}transport = \"file\"\ndir = {:?}\n",
            dir.path().join("outbox").display().to_string()
        );
        let notifier = Notifier::from_config_with_env(&config(&text), no_env).unwrap();
        for organization in ["prod", "staging"] {
            notifier.send_test(organization, t(1)).unwrap();
        }
        let mut subjects: Vec<String> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| {
                let bytes = std::fs::read(e.unwrap().path()).unwrap();
                let message = mail_parser::MessageParser::default().parse(&bytes).unwrap();
                message.subject().unwrap().to_owned()
            })
            .collect();
        subjects.sort();
        assert_eq!(
            subjects,
            [
                "[orgwarden] prod: test message",
                "[orgwarden] staging: test message"
            ]
        );
    }
}
