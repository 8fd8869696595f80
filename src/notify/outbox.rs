//! The durable outbox: a digest is stored in the same transaction as the finding updates it
//! announces, then delivered; failures stay queued with a growing delay, and a message is
//! marked sent only once the server has accepted it. Delivery is therefore at least once: a
//! crash between the server's acceptance and the `sent_at` update resends that one message,
//! with the same `Message-ID`, so mail clients show it once.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, Transaction, params};
use tokio_util::sync::CancellationToken;

use super::transport::{DeliveryError, Outgoing, Transport};
use crate::model::{Fingerprint, SnapshotId};

/// The migrations that make the outbox table as it is now (`0003_outbox.sql`, then
/// `0006_channels.sql`), for a database holding only the outbox.
pub const MIGRATION: &str = concat!(
    include_str!("../store/migrations/0003_outbox.sql"),
    include_str!("../store/migrations/0006_channels.sql"),
    include_str!("../store/migrations/0014_outbox_failures.sql")
);

/// The first retry waits this long; each further failure doubles it.
const FIRST_RETRY: TimeDelta = TimeDelta::minutes(1);
/// Retries never wait longer than this, so a message is never given up on.
const MAX_RETRY: TimeDelta = TimeDelta::hours(6);

/// How long a message being sent stays claimed by its sender.
const CLAIM: chrono::Duration = chrono::Duration::minutes(10);

/// The row id of an outbox message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct OutboxId(pub i64);

impl std::fmt::Display for OutboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A message to queue.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// The channel's name (`email` for `[notify.email]`).
    pub channel: String,
    /// How it is sent: `email`, `slack`, `webhook` or `pagerduty`.
    pub kind: String,
    /// The id receivers see on every try.
    pub delivery_id: String,
    /// The snapshot whose evaluation it announces.
    pub snapshot_id: Option<SnapshotId>,
    /// The subject, for listings.
    pub subject: String,
    /// Envelope sender (empty for HTTP channels).
    pub sender: String,
    /// Envelope recipients.
    pub recipients: Vec<String>,
    /// The RFC 5322 bytes, or the HTTP body.
    pub message: Vec<u8>,
    /// The findings it announces.
    pub fingerprints: Vec<Fingerprint>,
}

/// One queued message as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its id.
    pub id: OutboxId,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// Its subject.
    pub subject: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: DateTime<Utc>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the server accepted it.
    pub sent_at: Option<DateTime<Utc>>,
}

/// What one delivery pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Accepted by the server in this pass.
    pub sent: Vec<OutboxId>,
    /// For each sent message, the server's final reply or the `.eml` file written.
    pub receipts: Vec<(OutboxId, String)>,
    /// Failed in this pass, with the reason; they stay queued.
    pub failed: Vec<(OutboxId, String)>,
    /// Refused for good in this pass (a 4xx answer to a request, a 5xx SMTP reply), with
    /// the reason; not retried.
    pub rejected: Vec<(OutboxId, String)>,
    /// Each message tried, by channel, and what came of it.
    pub outcomes: Vec<(String, Outcome)>,
    /// Recipients refused for good (an SMTP 5xx to `RCPT TO`) of a message the server took
    /// for the others, by channel, one entry each: the message counts as sent, so this is
    /// the only count of the people it missed.
    pub refused_recipients: Vec<String>,
    /// Unsent messages by channel after this pass.
    pub pending_by_channel: Vec<(String, u64)>,
    /// Still unsent after this pass (failed, not yet due, or skipped because the server was
    /// unreachable).
    pub pending: usize,
}

/// Why the outbox could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// A database error.
    #[error("outbox: {0}")]
    Db(#[from] rusqlite::Error),
    /// A stored recipient list is not valid JSON.
    #[error("outbox message {id}: unreadable recipient list: {source}")]
    Recipients {
        /// The message.
        id: OutboxId,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// Queues a message inside the caller's transaction, due at once.
pub fn insert(
    tx: &Transaction<'_>,
    message: &NewMessage,
    now: DateTime<Utc>,
) -> Result<OutboxId, OutboxError> {
    let recipients = serde_json::Value::from(message.recipients.clone()).to_string();
    let fingerprints = serde_json::Value::from(
        message
            .fingerprints
            .iter()
            .map(Fingerprint::as_str)
            .collect::<Vec<_>>(),
    )
    .to_string();
    tx.execute(
        "INSERT INTO outbox (created_at, channel, kind, delivery_id, snapshot_id, subject,
                             sender, recipients, message, fingerprints, attempts,
                             next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?1)",
        params![
            now.timestamp(),
            message.channel,
            message.kind,
            message.delivery_id,
            message.snapshot_id.map(|s| s.0),
            message.subject,
            message.sender,
            recipients,
            message.message,
            fingerprints,
        ],
    )?;
    Ok(OutboxId(tx.last_insert_rowid()))
}

/// A fresh delivery id: 128 random bits in hex, the same on every try of one message.
pub fn new_delivery_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// How long to wait after the `failures`-th failure in a row.
pub fn backoff(failures: u32) -> TimeDelta {
    let doublings = failures.saturating_sub(1).min(20);
    let delay = FIRST_RETRY * (1_i32 << doublings);
    delay.min(MAX_RETRY)
}

/// Which queued messages a delivery pass tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Only those whose backoff has elapsed: automatic retries (the daemon).
    Due,
    /// Every unsent message: a person asked for delivery now (`audit --notify`), for
    /// instance right after fixing the mail server.
    All,
}

/// How one queued message is sent.
#[derive(Clone, Copy, Debug)]
pub enum Sender<'a> {
    /// By email.
    Email(&'a Transport),
    /// By HTTP (Slack, webhook, PagerDuty).
    Http(&'a super::http::HttpChannel),
}

/// The configured channels, by the name and kind stored with each message.
pub trait Channels {
    /// How to send a message queued for `channel` as `kind`; `None` when no such channel is
    /// configured any more (the message then waits, and is counted as pending).
    fn sender(&self, channel: &str, kind: &str) -> Option<Sender<'_>>;
}

impl Channels for Transport {
    fn sender(&self, channel: &str, kind: &str) -> Option<Sender<'_>> {
        (channel == "email" && kind == "email").then_some(Sender::Email(self))
    }
}

/// What one try of one message came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Accepted; the receiver's words.
    Sent(String),
    /// Not accepted, worth trying again (after `retry_after` when the receiver said so).
    /// `progress` counts the parts (PagerDuty events) accepted so far.
    Retry {
        /// Why, secret-free.
        error: String,
        /// The receiver's `Retry-After`.
        retry_after: Option<TimeDelta>,
        /// Parts accepted so far.
        progress: u32,
        /// Nothing further for this channel can get through now (unreachable).
        blocks_channel: bool,
    },
    /// Taken by the receiver for some recipients only (email): delivered to those, and
    /// still to be sent to the `deferred` ones, with the same `Message-ID`.
    SentToSome {
        /// The server's final reply.
        reply: String,
        /// Refused for good (5xx): the message went without them.
        refused: Vec<super::transport::Refusal>,
        /// Refused for now (4xx): the message stays queued for them alone.
        deferred: Vec<super::transport::Refusal>,
    },
    /// Refused for good (a 4xx answer to a request, a 5xx SMTP reply): not retried.
    Rejected {
        /// Why, with the receiver's status and body, secret-free.
        error: String,
        /// Parts accepted so far.
        progress: u32,
    },
}

/// What happened to one message in a pass, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Failed; stays queued.
    Retry,
    /// Refused for good.
    Rejected,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retry => "retry",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Tries every due message, oldest first, each channel on its own (see [`deliver`]): a
/// server that cannot be reached at all (DNS, refused, TLS, AUTH) holds back that
/// channel's later messages until the next pass; other channels' messages are still tried.
pub fn deliver_pending(
    conn: &Connection,
    channels: &dyn Channels,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, OutboxError> {
    deliver(conn, channels, now, Pass::Due, &CancellationToken::new())
}

/// One unsent row.
struct Row {
    id: i64,
    created_at: i64,
    channel: String,
    kind: String,
    delivery_id: Option<String>,
    sender: String,
    recipients: String,
    message: Vec<u8>,
    attempts: u32,
    progress: u32,
    next_attempt_at: i64,
    /// Failed tries since the message last got further or was requeued: the backoff's step.
    failures: u32,
}

/// A queued row whose columns cannot be read as a message (the database damaged, or edited
/// by hand): it can never be sent.
#[derive(Debug)]
struct Unreadable {
    id: i64,
    channel: Option<String>,
    error: rusqlite::Error,
}

/// The unsent messages, oldest first; a row that cannot be read is returned as such, so
/// that it does not end every later pass before the messages queued after it.
fn unsent(conn: &Connection) -> Result<Vec<Result<Row, Unreadable>>, OutboxError> {
    let mut stmt = conn.prepare(
        "SELECT id, created_at, channel, kind, delivery_id, sender, recipients, message,
                attempts, progress, next_attempt_at, failures
         FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL ORDER BY id",
    )?;
    let rows = stmt
        .query_map([], |row| {
            let id: i64 = row.get(0)?;
            let read = || -> rusqlite::Result<Row> {
                Ok(Row {
                    id,
                    created_at: row.get(1)?,
                    channel: row.get(2)?,
                    kind: row.get(3)?,
                    delivery_id: row.get(4)?,
                    sender: row.get(5)?,
                    recipients: row.get(6)?,
                    message: row.get(7)?,
                    attempts: row.get(8)?,
                    progress: row.get(9)?,
                    next_attempt_at: row.get(10)?,
                    failures: row.get(11)?,
                })
            };
            Ok(read().map_err(|error| Unreadable {
                id,
                channel: row.get::<_, String>(2).ok(),
                error,
            }))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Refuses a row that cannot be read, as an unreadable recipient list is: logged, kept with
/// the reason, and counted as refused.
fn refuse_unreadable(
    conn: &Connection,
    bad: &Unreadable,
    now: DateTime<Utc>,
    report: &mut DeliveryReport,
) -> Result<(), OutboxError> {
    let text = format!(
        "outbox message {}: unreadable row: {}",
        bad.id,
        crate::secrets::scrub(&bad.error.to_string())
    );
    conn.execute(
        "UPDATE outbox SET failed_at = ?2, last_error = ?3
         WHERE id = ?1 AND sent_at IS NULL AND failed_at IS NULL",
        params![bad.id, now.timestamp(), text],
    )?;
    let channel = bad.channel.clone().unwrap_or_default();
    tracing::error!(target: "orgwarden::notify", outbox_id = bad.id, channel = %channel, error = %text, "message cannot be read from the outbox; it is not tried");
    report.rejected.push((OutboxId(bad.id), text));
    report.outcomes.push((channel, Outcome::Rejected));
    Ok(())
}

/// Tries the messages `pass` selects, oldest first, each channel on its own: within a
/// channel messages go in order (a PagerDuty `resolve` never overtakes its `trigger`), so a
/// message that is not due or fails holds back that channel's later ones, and never another
/// channel's. Once `stop` is cancelled no further message is tried: the pass ends after the
/// one being sent, and the rest wait for the next.
pub fn deliver(
    conn: &Connection,
    channels: &dyn Channels,
    now: DateTime<Utc>,
    pass: Pass,
    stop: &CancellationToken,
) -> Result<DeliveryReport, OutboxError> {
    // i64::MAX: every unsent message counts as due.
    let due_by = match pass {
        Pass::Due => now.timestamp(),
        Pass::All => i64::MAX,
    };
    let mut report = DeliveryReport::default();
    let mut held: std::collections::HashSet<String> = std::collections::HashSet::new();
    // A pass can take minutes (each receiver may use its whole timeout): every claim and
    // every backoff counts from when its message is tried, not from when the pass began, or
    // a late claim would lapse at once and a late failure be retried at once.
    let started = std::time::Instant::now();
    let at = |start: DateTime<Utc>| {
        start + TimeDelta::from_std(started.elapsed()).unwrap_or(TimeDelta::zero())
    };
    for row in unsent(conn)? {
        let row = match row {
            Ok(row) => row,
            Err(bad) => {
                refuse_unreadable(conn, &bad, at(now), &mut report)?;
                continue;
            }
        };
        // A pass is a blocking loop nothing else can interrupt, and each try may take its
        // receiver's whole timeout: a daemon shutting down must not wait for every message.
        if stop.is_cancelled() {
            tracing::info!(target: "orgwarden::notify", "delivery stopped; what is left waits in the outbox for the next pass");
            break;
        }
        if held.contains(&row.channel) {
            continue;
        }
        if row.next_attempt_at > due_by {
            held.insert(row.channel.clone());
            continue;
        }
        let Some(sender) = channels.sender(&row.channel, &row.kind) else {
            tracing::warn!(target: "orgwarden::notify", outbox_id = row.id, channel = %row.channel, kind = %row.kind, "no such channel is configured; the message waits in the outbox");
            held.insert(row.channel.clone());
            continue;
        };
        // Claim the message before sending: a delivery still in flight elsewhere (a run
        // abandoned at shutdown while `flush` delivers) must not send it a second time. A
        // process killed mid-send leaves the claim to lapse, and the message is retried then.
        let claimed = conn.execute(
            "UPDATE outbox SET next_attempt_at = ?3
             WHERE id = ?1 AND sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?2",
            params![row.id, due_by, (at(now) + CLAIM).timestamp()],
        )?;
        if claimed == 0 {
            held.insert(row.channel.clone());
            continue;
        }
        let attempt = attempt(&row, sender, at(now))?;
        if record(conn, &row, &attempt, at(now), &mut report)? {
            held.insert(row.channel.clone());
        }
    }
    report.pending = usize::try_from(pending_count(conn)?).unwrap_or_default();
    report.pending_by_channel = pending_by_channel(conn)?;
    Ok(report)
}

/// Sends one row through its channel.
fn attempt(row: &Row, sender: Sender<'_>, now: DateTime<Utc>) -> Result<Attempt, OutboxError> {
    let id = OutboxId(row.id);
    match sender {
        Sender::Http(http) => {
            let delivery_id = row
                .delivery_id
                .clone()
                .unwrap_or_else(|| format!("orgwarden-{}-{}", row.created_at, row.id));
            Ok(http.send(&row.message, &delivery_id, row.progress, now))
        }
        Sender::Email(transport) => {
            // A list that cannot be read (the row damaged) can never be sent: refused like
            // unreadable PagerDuty events, so it does not end every later pass before the
            // messages queued after it.
            let to: Vec<String> = match serde_json::from_str(&row.recipients) {
                Ok(to) => to,
                Err(e) => {
                    return Ok(Attempt::Rejected {
                        error: format!("outbox message {id}: unreadable recipient list: {e}"),
                        progress: 0,
                    });
                }
            };
            let name = mail_file_name(row.created_at, row.id, row.delivery_id.as_deref());
            let outgoing = Outgoing {
                from: &row.sender,
                to: &to,
                bytes: &row.message,
                name: &name,
            };
            Ok(match transport.send(&outgoing) {
                Ok(accepted) if accepted.refused.is_empty() && accepted.deferred.is_empty() => {
                    Attempt::Sent(accepted.reply)
                }
                Ok(accepted) => Attempt::SentToSome {
                    reply: accepted.reply,
                    refused: accepted.refused,
                    deferred: accepted.deferred,
                },
                // RFC 5321: a 5yz reply is not to be repeated; sent again every six hours
                // for ever, it would be refused every time.
                Err(err) if err.is_permanent() => Attempt::Rejected {
                    error: crate::secrets::scrub(&refusal_text(&err, row.message.len()))
                        .into_owned(),
                    progress: 0,
                },
                Err(err) => Attempt::Retry {
                    // A server may quote the credentials back in its reply: nothing secret
                    // is stored.
                    error: crate::secrets::scrub(&err.to_string()).into_owned(),
                    retry_after: None,
                    progress: 0,
                    blocks_channel: server_unreachable(&err),
                },
            })
        }
    }
}

/// The `.eml` name of a message for `transport = "file"`: its creation time and number
/// sort the folder, and part of its random delivery id keeps apart the messages of several
/// databases (one per organization) writing one folder, which number theirs alike and may
/// queue them in the same second. The same on every try, so a retry replaces its own file.
fn mail_file_name(created_at: i64, id: i64, delivery_id: Option<&str>) -> String {
    let mut name = format!(
        "orgwarden-{}-{id}",
        from_unix(created_at).format("%Y%m%dT%H%M%SZ")
    );
    // Read back from the database: only what cannot leave the folder goes into a path.
    let unique: String = delivery_id
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    if !unique.is_empty() {
        name.push('-');
        name.push_str(&unique);
    }
    name
}

/// What a refused email is stored and logged with: a refusal for size also says how large
/// the message was and what makes the next digests smaller, since the server gives no hint
/// and the same bound would build every later digest as large.
fn refusal_text(err: &DeliveryError, bytes: usize) -> String {
    if !err.refused_for_size() {
        return err.to_string();
    }
    // Whole kilobytes at least: a relay capped at 10 MB refusing "10.0 MB" says nothing.
    #[allow(clippy::cast_precision_loss)]
    let size = bytes as f64 / 1_000_000.0;
    format!(
        "{err} (the message was {size:.3} MB: if this server limits message size, lower \
         `[notify.email] max_csv_bytes`, or set it to \"0B\" to attach no CSV; later digests \
         are built with it, and this one stays refused: `notify requeue` would send it as \
         large again)"
    )
}

/// A receiver's words as the outbox keeps them: no secret it may have quoted back, and no
/// control or bidi character to act on whoever reads `last_error` with any SQLite client.
fn stored_text(text: &str) -> String {
    crate::report::inert(&crate::secrets::scrub(text)).into_owned()
}

/// Stores what an attempt came to; `true` when the channel's later messages must wait.
fn record(
    conn: &Connection,
    row: &Row,
    attempt: &Attempt,
    now: DateTime<Utc>,
    report: &mut DeliveryReport,
) -> Result<bool, OutboxError> {
    let id = OutboxId(row.id);
    let attempts = row.attempts.saturating_add(1);
    let channel = row.channel.clone();
    match attempt {
        Attempt::Sent(reply) => {
            conn.execute(
                "UPDATE outbox SET sent_at = ?2, attempts = ?3, last_error = NULL
                 WHERE id = ?1",
                params![row.id, now.timestamp(), attempts],
            )?;
            tracing::info!(target: "orgwarden::notify", outbox_id = row.id, channel = %row.channel, reply = %reply, "message delivered");
            report.sent.push(id);
            report.receipts.push((id, reply.clone()));
            report.outcomes.push((channel, Outcome::Sent));
            Ok(false)
        }
        Attempt::Retry {
            error,
            retry_after,
            progress,
            blocks_channel,
        } => {
            // A PagerDuty message that got further this time was slowed down (a 429 after
            // some events), not failing: its failures start again from none, or else a
            // long run of events, a window each try, would wait hours by the end (and so
            // would its next single failure after that).
            let failures = if *progress > row.progress {
                0
            } else {
                row.failures.saturating_add(1)
            };
            let delay = match *retry_after {
                Some(r) => r.min(MAX_RETRY),
                None => backoff(failures),
            };
            let next = now + delay.max(TimeDelta::zero());
            let text = stored_text(error);
            conn.execute(
                "UPDATE outbox SET attempts = ?2, next_attempt_at = ?3, last_error = ?4,
                                   progress = ?5, failures = ?6
                 WHERE id = ?1",
                params![row.id, attempts, next.timestamp(), text, progress, failures],
            )?;
            tracing::warn!(target: "orgwarden::notify", outbox_id = row.id, channel = %row.channel, attempts, next_attempt_at = %next.to_rfc3339(), error = %text, "message not delivered; it stays in the outbox");
            report.failed.push((id, text));
            report.outcomes.push((channel, Outcome::Retry));
            // Messages of one channel go in order: a failed one holds back the rest. An email
            // that failed with its server reachable does not: each digest stands alone, and
            // the next one may still get through.
            Ok(*blocks_channel || row.kind != "email")
        }
        Attempt::SentToSome {
            reply,
            refused,
            deferred,
        } => {
            for refusal in refused {
                let text = stored_text(&refusal.reply);
                tracing::error!(target: "orgwarden::notify", outbox_id = row.id, channel = %row.channel, recipient = %refusal.recipient, reply = %text, "recipient refused by the receiver; the message went to the others without it");
                report.refused_recipients.push(channel.clone());
            }
            let refused_text = super::transport::list(refused);
            if deferred.is_empty() {
                let text = stored_text(&format!("refused: {refused_text}"));
                conn.execute(
                    "UPDATE outbox SET sent_at = ?2, attempts = ?3, last_error = ?4 WHERE id = ?1",
                    params![row.id, now.timestamp(), attempts, text],
                )?;
                tracing::info!(target: "orgwarden::notify", outbox_id = row.id, channel = %row.channel, reply = %reply, "message delivered");
                report.sent.push(id);
                report.receipts.push((id, reply.clone()));
                report.outcomes.push((channel, Outcome::Sent));
                return Ok(false);
            }
            // The recipients who have it are not sent it again: only the deferred ones wait.
            let left: Vec<&str> = deferred.iter().map(|d| d.recipient.as_str()).collect();
            let left = serde_json::to_string(&left)
                .map_err(|source| OutboxError::Recipients { id, source })?;
            // Some recipients took it: progress, as a PagerDuty window is, so the failures
            // to back off from start again (the deferred ones are retried after the first
            // delay, not after the whole message's longest).
            let failures = 0;
            let next = now + backoff(failures);
            let mut text = format!(
                "delivered to the other recipients ({reply}); deferred: {}",
                super::transport::list(deferred)
            );
            if !refused.is_empty() {
                text.push_str(&format!("; refused: {refused_text}"));
            }
            let text = stored_text(&text);
            conn.execute(
                "UPDATE outbox SET recipients = ?2, attempts = ?3, next_attempt_at = ?4,
                                   last_error = ?5, failures = ?6
                 WHERE id = ?1",
                params![row.id, left, attempts, next.timestamp(), text, failures],
            )?;
            tracing::warn!(target: "orgwarden::notify", outbox_id = row.id, channel = %row.channel, attempts, next_attempt_at = %next.to_rfc3339(), error = %text, "message not delivered to every recipient; it stays in the outbox for the others");
            report.failed.push((id, text));
            report.outcomes.push((channel, Outcome::Retry));
            Ok(false)
        }
        Attempt::Rejected { error, progress } => {
            let text = stored_text(error);
            conn.execute(
                "UPDATE outbox SET attempts = ?2, failed_at = ?3, last_error = ?4, progress = ?5
                 WHERE id = ?1",
                params![row.id, attempts, now.timestamp(), text, progress],
            )?;
            tracing::error!(target: "orgwarden::notify", outbox_id = row.id, channel = %row.channel, error = %text, "message refused by the receiver; it is not retried");
            report.rejected.push((id, text));
            report.outcomes.push((channel, Outcome::Rejected));
            Ok(false)
        }
    }
}

/// Failures that no other message could get past.
fn server_unreachable(err: &DeliveryError) -> bool {
    matches!(
        err,
        DeliveryError::Dns { .. }
            | DeliveryError::Refused { .. }
            | DeliveryError::Closing { .. }
            | DeliveryError::Connect { .. }
            | DeliveryError::Tls { .. }
            | DeliveryError::TimedOut { .. }
            | DeliveryError::NoStartTls { .. }
            | DeliveryError::Auth { .. }
            | DeliveryError::File { .. }
            | DeliveryError::ReadOnly { .. }
    )
}

/// Makes the messages refused for good since `since` (of one channel, or every one) due
/// again at `now`, keeping their count of tries and what a PagerDuty message already sent
/// (the backoff starts again from the first delay): a refusal
/// that fixing the configuration lifts (a relay refused, a webhook URL mistyped) is then
/// delivered by the next pass. Returns how many. It touches only rows no pass tries, so it
/// needs no writer lock: a running daemon sends them the next time it looks (5 minutes at most).
pub fn requeue_refused(
    conn: &Connection,
    channel: Option<&str>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<usize, OutboxError> {
    Ok(conn.execute(
        "UPDATE outbox SET failed_at = NULL, next_attempt_at = ?3, failures = 0
         WHERE sent_at IS NULL AND failed_at IS NOT NULL AND failed_at >= ?2
           AND (?1 IS NULL OR channel = ?1)",
        params![channel, since.timestamp(), now.timestamp()],
    )?)
}

/// How many delivered messages one pass empties at most: a database upgraded after a year
/// of hourly digests holds gigabytes of them, and freeing them all at once would hold the
/// writer for as long as reading them takes. The next passes take the rest.
pub const FORGET_PER_PASS: usize = 100;

/// Empties the text of up to `limit` messages delivered before `before`, oldest first,
/// keeping their record (channel, subject, recipients, when): a sent message is never read
/// again, and what went is the receiver's to keep. Unsent and refused messages keep theirs
/// (a refused one can be requeued). Returns how many were emptied.
pub fn forget_sent(
    conn: &Connection,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<usize, OutboxError> {
    Ok(conn.execute(
        "UPDATE outbox SET message = X'' WHERE id IN (
             SELECT id FROM outbox
             WHERE sent_at IS NOT NULL AND sent_at < ?1 AND length(message) > 0
             ORDER BY id LIMIT ?2)",
        params![before.timestamp(), i64::try_from(limit).unwrap_or(i64::MAX)],
    )?)
}

/// Whether the outbox holds any message, sent or not, for the channel named `name`.
pub fn has_channel(conn: &Connection, name: &str) -> Result<bool, OutboxError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE channel = ?1)",
        [name],
        |row| row.get(0),
    )?)
}

/// When a pass next has a message to try: the earliest retry time among the first unsent
/// message of each configured channel (a channel's later messages wait behind its first,
/// and one no longer configured is never tried); `None` when none waits. A row whose
/// columns cannot be read counts as due now: the pass refuses it.
pub fn next_due(
    conn: &Connection,
    channels: &dyn Channels,
) -> Result<Option<DateTime<Utc>>, OutboxError> {
    let mut stmt = conn.prepare(
        "SELECT channel, kind, next_attempt_at FROM (
             SELECT channel, kind, next_attempt_at,
                    row_number() OVER (PARTITION BY channel ORDER BY id) AS place
             FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL)
         WHERE place = 1",
    )?;
    let heads = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0),
                row.get::<_, String>(1),
                row.get::<_, i64>(2),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut due: Option<i64> = None;
    for head in heads {
        let at = match head {
            (Ok(channel), Ok(kind), Ok(at)) => {
                if channels.sender(&channel, &kind).is_none() {
                    continue;
                }
                at
            }
            _ => i64::MIN,
        };
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    Ok(due.map(from_unix))
}

/// How many messages wait in each channel (the daemon's outbox depth by channel).
pub fn pending_by_channel(conn: &Connection) -> Result<Vec<(String, u64)>, OutboxError> {
    let mut stmt = conn.prepare(
        "SELECT channel, count(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL
         GROUP BY channel ORDER BY channel",
    )?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                u64::try_from(row.get::<_, i64>(1)?).unwrap_or_default(),
            ))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// How many messages wait to be sent (the daemon's `orgwarden_outbox_depth`).
pub fn pending_count(conn: &Connection) -> Result<u64, OutboxError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL",
        [],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or_default())
}

/// Every stored message, newest first.
pub fn list(conn: &Connection) -> Result<Vec<OutboxEntry>, OutboxError> {
    let mut stmt = conn.prepare(
        "SELECT id, created_at, subject, attempts, next_attempt_at, last_error, sent_at
         FROM outbox ORDER BY id DESC",
    )?;
    let rows = stmt
        .query_map([], |row| {
            Ok(OutboxEntry {
                id: OutboxId(row.get(0)?),
                created_at: from_unix(row.get(1)?),
                subject: row.get(2)?,
                attempts: row.get(3)?,
                next_attempt_at: from_unix(row.get(4)?),
                last_error: row.get(5)?,
                sent_at: row.get::<_, Option<i64>>(6)?.map(from_unix),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn from_unix(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::plan::tests::t;

    #[test]
    fn a_refusal_for_size_names_the_bound_and_warns_that_a_requeue_sends_the_same_bytes() {
        let refused = |reply: &str| DeliveryError::Message {
            host: "mx".into(),
            reply: reply.into(),
            permanent: true,
        };
        let text = refusal_text(
            &refused("552 5.3.4 Message size exceeds fixed limit"),
            10_400_000,
        );
        assert!(
            text.starts_with("message rejected by mx: 552 5.3.4"),
            "{text}"
        );
        assert!(text.contains("the message was 10.400 MB"), "{text}");
        assert!(text.contains("`[notify.email] max_csv_bytes`"), "{text}");
        // The stored message keeps its size: requeued, it is refused again.
        assert!(
            text.contains("`notify requeue` would send it as large again"),
            "{text}"
        );
        // A 552 for a full mailbox is no size to lower.
        let full = refused("552 5.2.2 mailbox full");
        assert_eq!(refusal_text(&full, 10_400_000), full.to_string());
    }

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATION).unwrap();
        conn
    }

    fn message(subject: &str) -> NewMessage {
        NewMessage {
            channel: "email".into(),
            kind: "email".into(),
            delivery_id: new_delivery_id(),
            snapshot_id: Some(SnapshotId(3)),
            subject: subject.into(),
            sender: "orgwarden@example.com".into(),
            recipients: vec!["security@example.com".into()],
            message: format!("Subject: {subject}\r\n\r\nbody\r\n").into_bytes(),
            fingerprints: vec!["fp-a".into()],
        }
    }

    #[test]
    fn a_delivered_messages_text_is_dropped_after_keep_sent_and_nothing_else_is() {
        // Each digest carries the CSV of every open finding; kept for ever, sent digests
        // were 98% of a year's growth of the database.
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        let old = insert(&tx, &message("old"), t(0)).unwrap();
        let recent = insert(&tx, &message("recent"), t(0)).unwrap();
        let refused = insert(&tx, &message("refused"), t(0)).unwrap();
        let waiting = insert(&tx, &message("waiting"), t(0)).unwrap();
        tx.execute(
            "UPDATE outbox SET sent_at = ?2 WHERE id = ?1",
            params![old.0, t(1).timestamp()],
        )
        .unwrap();
        tx.execute(
            "UPDATE outbox SET sent_at = ?2 WHERE id = ?1",
            params![recent.0, t(9).timestamp()],
        )
        .unwrap();
        tx.execute(
            "UPDATE outbox SET failed_at = ?2 WHERE id = ?1",
            params![refused.0, t(1).timestamp()],
        )
        .unwrap();
        tx.commit().unwrap();
        let lengths = |conn: &Connection| -> Vec<(i64, i64)> {
            let mut stmt = conn
                .prepare("SELECT id, length(message) FROM outbox ORDER BY id")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let before = lengths(&conn);
        assert_eq!(forget_sent(&conn, t(5), 0).unwrap(), 0, "a limit of none");
        assert_eq!(forget_sent(&conn, t(5), 10).unwrap(), 1);
        assert_eq!(forget_sent(&conn, t(5), 10).unwrap(), 0, "once");
        let after = lengths(&conn);
        for ((id, was), (_, is)) in before.iter().zip(&after) {
            let expected = if *id == old.0 { 0 } else { *was };
            assert_eq!(*is, expected, "message {id}");
        }
        // Its record stays: listed, and its channel known.
        assert_eq!(list(&conn).unwrap().len(), 4);
        assert!(has_channel(&conn, "email").unwrap());
        // The one waiting is still delivered whole.
        let row = unsent(&conn).unwrap().remove(0).unwrap();
        assert_eq!(row.id, waiting.0);
    }

    #[test]
    fn two_databases_writing_one_mail_folder_keep_both_messages_queued_at_the_same_second() {
        // Two orgwarden installations (two organizations) share a `transport = "file"`
        // folder: each database numbers its messages from 1, and runs on one schedule
        // queue them in the same second.
        let dir = tempfile::tempdir().unwrap();
        let transport = AllEmail(Transport::File {
            dir: dir.path().join("outbox"),
        });
        for subject in ["prod digest", "staging digest"] {
            let mut conn = db();
            let tx = conn.transaction().unwrap();
            insert(&tx, &message(subject), t(0)).unwrap();
            tx.commit().unwrap();
            let report = deliver_pending(&conn, &transport, t(0)).unwrap();
            assert_eq!(report.pending, 0, "{subject}");
        }
        let mut written: Vec<String> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        written.sort();
        assert_eq!(written.len(), 2, "one file each: {written:?}");
        assert!(written[0].contains("Subject: prod digest"), "{written:?}");
        assert!(
            written[1].contains("Subject: staging digest"),
            "{written:?}"
        );
    }

    #[test]
    fn a_mail_file_name_takes_only_letters_and_digits_of_the_stored_delivery_id() {
        assert_eq!(
            mail_file_name(
                t(0).timestamp(),
                7,
                Some("../../etc/passwd0123456789abcdef")
            ),
            format!("orgwarden-{}-7-etcpasswd012", t(0).format("%Y%m%dT%H%M%SZ"))
        );
        // A message queued before delivery ids were stored keeps the name it always had.
        assert_eq!(
            mail_file_name(t(0).timestamp(), 7, None),
            format!("orgwarden-{}-7", t(0).format("%Y%m%dT%H%M%SZ"))
        );
    }

    #[test]
    fn the_store_migrations_create_the_outbox() {
        let mut store = crate::store::Store::open_in_memory().unwrap();
        let tx = store.begin().unwrap();
        let id = insert(tx.as_transaction(), &message("x"), t(0)).unwrap();
        tx.commit().unwrap();
        assert_eq!(list(store.conn()).unwrap()[0].id, id);
    }

    #[test]
    fn a_recipient_refused_inside_a_delivered_message_is_counted_by_channel() {
        // The message counts as sent; the people it missed are counted apart, so that a
        // digest reaching only some of its recipients shows in `/metrics`.
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        insert(&tx, &message("partly"), t(0)).unwrap();
        tx.commit().unwrap();
        let row = unsent(&conn).unwrap().remove(0).unwrap();
        let refusal = |who: &str| crate::notify::transport::Refusal {
            recipient: who.into(),
            reply: "550 5.1.1 no such user".into(),
        };
        let mut report = DeliveryReport::default();
        let attempt = Attempt::SentToSome {
            reply: "250 ok".into(),
            refused: vec![refusal("gone@example.com"), refusal("typo@example.com")],
            deferred: vec![],
        };
        record(&conn, &row, &attempt, t(0), &mut report).unwrap();
        assert_eq!(report.outcomes, vec![("email".to_owned(), Outcome::Sent)]);
        assert_eq!(report.refused_recipients, vec!["email", "email"]);
    }

    /// Queues a message damaged by each of `damages` (an UPDATE of row `?1`), then a sound
    /// one: the connection, the damaged ids and the sound one's.
    fn queue_damaged(damages: &[&str]) -> (Connection, Vec<OutboxId>, OutboxId) {
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        let damaged = damages
            .iter()
            .map(|sql| {
                let id = insert(&tx, &message(sql), t(0)).unwrap();
                tx.execute(sql, [id.0]).unwrap();
                id
            })
            .collect();
        let next = insert(&tx, &message("next"), t(0)).unwrap();
        tx.commit().unwrap();
        (conn, damaged, next)
    }

    #[test]
    fn a_row_whose_columns_cannot_be_read_is_refused_and_the_next_is_delivered() {
        // Before, one such row failed every pass, so every later digest stayed queued.
        let dir = tempfile::tempdir().unwrap();
        let files = Transport::File {
            dir: dir.path().join("outbox"),
        };
        let (conn, damaged, next) = queue_damaged(&[
            "UPDATE outbox SET attempts = -1 WHERE id = ?1",
            "UPDATE outbox SET message = CAST(message AS TEXT) || 'x' WHERE id = ?1",
        ]);
        let report = deliver_pending(&conn, &files, t(0)).unwrap();
        assert_eq!(report.sent, vec![next], "{report:?}");
        let refused: Vec<OutboxId> = report.rejected.iter().map(|(id, _)| *id).collect();
        assert_eq!(refused, damaged, "{report:?}");
        assert!(
            report.rejected[0].1.contains("unreadable row"),
            "{report:?}"
        );
        assert_eq!(report.pending, 0);
        // Refused for good: the next pass does not meet them again.
        let again = deliver_pending(&conn, &files, t(1)).unwrap();
        assert!(
            again.rejected.is_empty() && again.sent.is_empty(),
            "{again:?}"
        );
    }

    #[test]
    fn a_message_whose_recipients_cannot_be_read_is_refused_and_the_next_is_delivered() {
        // A damaged row must not end every later pass before the messages queued after it.
        let dir = tempfile::tempdir().unwrap();
        let files = Transport::File {
            dir: dir.path().join("outbox"),
        };
        let (conn, _, next) =
            queue_damaged(&["UPDATE outbox SET recipients = 'not json' WHERE id = ?1"]);
        let report = deliver_pending(&conn, &files, t(0)).unwrap();
        assert_eq!(report.sent, vec![next], "{report:?}");
        assert_eq!(report.rejected.len(), 1, "{report:?}");
        assert!(
            report.rejected[0].1.contains("unreadable recipient list"),
            "{report:?}"
        );
        assert_eq!(report.pending, 0);
    }

    #[test]
    fn a_pagerduty_message_that_got_further_is_retried_after_the_first_delay_again() {
        // PagerDuty takes so many events a minute; a run of many is sent a window at a
        // time, and each window is progress, not one more failure to back off from.
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        let mut events = message("events");
        events.channel = "pager".into();
        events.kind = "pagerduty".into();
        let id = insert(&tx, &events, t(0)).unwrap();
        tx.execute(
            "UPDATE outbox SET attempts = 5, failures = 5, progress = 40 WHERE id = ?1",
            [id.0],
        )
        .unwrap();
        tx.commit().unwrap();
        // Records a try that ended at 429 with `progress` events accepted in all; when the
        // next one is due.
        let throttled_at = |progress| {
            let row = unsent(&conn).unwrap().remove(0).unwrap();
            let attempt = Attempt::Retry {
                error: "pager: HTTP 429".into(),
                retry_after: None,
                progress,
                blocks_channel: true,
            };
            record(&conn, &row, &attempt, t(0), &mut DeliveryReport::default()).unwrap();
            list(&conn).unwrap()[0].next_attempt_at
        };
        assert_eq!(throttled_at(160), t(0) + FIRST_RETRY);
        // No further this time: a failure, the first since the window went through (not
        // the seventh try's backoff, 64 minutes); then the backoff grows as for any message.
        assert_eq!(throttled_at(160), t(0) + backoff(1));
        assert_eq!(throttled_at(160), t(0) + backoff(2));
        assert_eq!(list(&conn).unwrap()[0].attempts, 8);
    }

    #[test]
    fn an_email_delivered_to_some_retries_the_deferred_after_the_first_delay() {
        // A message whose relay was down for hours reached some recipients at last and was
        // deferred (4xx) for one: it was then retried after the whole message's backoff
        // (64 minutes after six failures) although the try got further.
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        let id = insert(&tx, &message("partly"), t(0)).unwrap();
        tx.execute(
            "UPDATE outbox SET attempts = 6, failures = 6 WHERE id = ?1",
            [id.0],
        )
        .unwrap();
        tx.commit().unwrap();
        let row = unsent(&conn).unwrap().remove(0).unwrap();
        let attempt = Attempt::SentToSome {
            reply: "250 ok".into(),
            refused: vec![],
            deferred: vec![crate::notify::transport::Refusal {
                recipient: "busy@example.com".into(),
                reply: "452 4.2.2 mailbox full".into(),
            }],
        };
        record(&conn, &row, &attempt, t(0), &mut DeliveryReport::default()).unwrap();
        let row = unsent(&conn).unwrap().remove(0).unwrap();
        assert_eq!(row.recipients, r#"["busy@example.com"]"#);
        assert_eq!(list(&conn).unwrap()[0].next_attempt_at, t(0) + FIRST_RETRY);
        // The deferred recipient refusing again is the first failure since then.
        let again = Attempt::Retry {
            error: "452 4.2.2 mailbox full".into(),
            retry_after: None,
            progress: 0,
            blocks_channel: false,
        };
        record(&conn, &row, &again, t(0), &mut DeliveryReport::default()).unwrap();
        assert_eq!(list(&conn).unwrap()[0].next_attempt_at, t(0) + backoff(1));
    }

    #[test]
    fn a_receivers_reply_is_stored_inert() {
        // An SMTP relay's refusal reaches the outbox as it was written; whoever reads
        // `last_error` with sqlite3 must not have their terminal driven by it.
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        insert(&tx, &message("hostile"), t(0)).unwrap();
        tx.commit().unwrap();
        let row = unsent(&conn).unwrap().remove(0).unwrap();
        let attempt = Attempt::Rejected {
            error: "550 5.7.1 \u{1b}]8;;https://evil.example\u{7}click\u{202e}txt.exe\r\n550 no"
                .into(),
            progress: 0,
        };
        record(&conn, &row, &attempt, t(0), &mut DeliveryReport::default()).unwrap();
        let stored = list(&conn).unwrap().remove(0).last_error.unwrap();
        assert!(
            !stored.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{stored:?}"
        );
        assert!(stored.starts_with("550 5.7.1 "), "{stored}");
    }

    #[test]
    fn a_requeued_message_that_fails_again_waits_the_first_delay() {
        // A person fixed the cause and asked for the message again: a failure now is the
        // first of a new series, not one more after the tries that led to the refusal.
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        let id = insert(&tx, &message("refused"), t(0)).unwrap();
        tx.execute(
            "UPDATE outbox SET attempts = 6, failures = 5, failed_at = ?2 WHERE id = ?1",
            params![id.0, t(0).timestamp()],
        )
        .unwrap();
        tx.commit().unwrap();
        assert_eq!(requeue_refused(&conn, None, t(0), t(10)).unwrap(), 1);
        let row = unsent(&conn).unwrap().remove(0).unwrap();
        let attempt = Attempt::Retry {
            error: "451 4.3.0 try again later".into(),
            retry_after: None,
            progress: 0,
            blocks_channel: false,
        };
        record(&conn, &row, &attempt, t(20), &mut DeliveryReport::default()).unwrap();
        let entry = list(&conn).unwrap().remove(0);
        assert_eq!(
            (entry.attempts, entry.next_attempt_at),
            (7, t(20) + FIRST_RETRY)
        );
    }

    #[test]
    fn messages_waiting_when_the_failure_count_arrives_keep_their_backoff() {
        // The upgrade gives a waiting message the failures it had: its next failure waits
        // as long as it would have, not the first delay again.
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(concat!(
            include_str!("../store/migrations/0003_outbox.sql"),
            include_str!("../store/migrations/0006_channels.sql")
        ))
        .unwrap();
        conn.execute(
            "INSERT INTO outbox (created_at, channel, subject, sender, recipients, message,
                                 fingerprints, attempts, next_attempt_at)
             VALUES (0, 'email', 's', 'a@example.com', '[\"b@example.com\"]', x'00', '[]', 4, 0)",
            [],
        )
        .unwrap();
        conn.execute_batch(include_str!("../store/migrations/0014_outbox_failures.sql"))
            .unwrap();
        let row = unsent(&conn).unwrap().remove(0).unwrap();
        assert_eq!((row.attempts, row.failures), (4, 4));
    }

    #[test]
    fn the_next_due_message_is_the_earliest_first_message_of_a_configured_channel() {
        // A channel's later messages wait behind its first; one no longer configured is
        // never tried. Either would otherwise wake the daemon for nothing, over and over.
        let files = AllEmail(Transport::File {
            dir: std::path::PathBuf::from("unused"),
        });
        let mut conn = db();
        assert_eq!(next_due(&conn, &files).unwrap(), None, "nothing waits");
        let tx = conn.transaction().unwrap();
        let queue = |channel: &str, kind: &str, due: i64| {
            let mut m = message(channel);
            m.channel = channel.into();
            m.kind = kind.into();
            let id = insert(&tx, &m, t(0)).unwrap();
            tx.execute(
                "UPDATE outbox SET next_attempt_at = ?2 WHERE id = ?1",
                params![id.0, t(due).timestamp()],
            )
            .unwrap();
            id
        };
        let sent = queue("email", "email", 0);
        queue("email", "email", 5);
        queue("email", "email", 1);
        queue("digest-b", "email", 7);
        queue("pager", "pagerduty", 0);
        tx.execute(
            "UPDATE outbox SET sent_at = 1 WHERE id = ?1",
            params![sent.0],
        )
        .unwrap();
        tx.commit().unwrap();
        assert_eq!(next_due(&conn, &files).unwrap(), Some(t(5)));
        // A row whose columns cannot be read is due now: the next pass refuses it.
        conn.execute(
            "UPDATE outbox SET next_attempt_at = 'soon' WHERE channel = 'digest-b'",
            [],
        )
        .unwrap();
        assert_eq!(
            next_due(&conn, &files).unwrap(),
            Some(DateTime::<Utc>::default())
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), TimeDelta::minutes(1));
        assert_eq!(backoff(2), TimeDelta::minutes(2));
        assert_eq!(backoff(4), TimeDelta::minutes(8));
        assert_eq!(backoff(40), TimeDelta::hours(6));
    }

    /// Every channel, whatever its name, sends email through one transport.
    struct AllEmail(Transport);

    impl Channels for AllEmail {
        fn sender(&self, _channel: &str, kind: &str) -> Option<Sender<'_>> {
            (kind == "email").then_some(Sender::Email(&self.0))
        }
    }

    /// Every channel's email sent to a local SMTP server that accepts connections and
    /// never says a word (a step timeout of 1 s), calling `on_connect` as each comes in.
    fn silent_server(on_connect: impl Fn() + Send + 'static) -> AllEmail {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                on_connect();
                held.push(stream);
            }
        });
        AllEmail(Transport::Smtp(crate::notify::SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: crate::notify::TlsMode::None,
            credentials: None,
            timeout: std::time::Duration::from_secs(1),
            extra_roots_pem: vec![],
            system_roots: false,
        }))
    }

    /// Queues `first` on the `email` channel and `second` on `team`, both due at `t(0)`.
    fn one_message_on_each_of_two_channels(conn: &mut Connection) -> (OutboxId, OutboxId) {
        let tx = conn.transaction().unwrap();
        let first = insert(&tx, &message("first"), t(0)).unwrap();
        let mut other = message("second");
        other.channel = "team".into();
        let second = insert(&tx, &other, t(0)).unwrap();
        tx.commit().unwrap();
        (first, second)
    }

    #[test]
    fn a_late_failure_in_a_long_pass_waits_its_whole_backoff_from_when_it_was_tried() {
        // A server that accepts and never says a word: each message uses its whole timeout.
        let silent = silent_server(|| {});
        let mut conn = db();
        let (first, second) = one_message_on_each_of_two_channels(&mut conn);
        let report = deliver_pending(&conn, &silent, t(0)).unwrap();
        assert_eq!(report.failed.len(), 2, "{report:?}");
        let entries = list(&conn).unwrap();
        let next = |id| entries.iter().find(|e| e.id == id).unwrap().next_attempt_at;
        assert!(
            next(first) >= t(0) + TimeDelta::seconds(61),
            "{}",
            next(first)
        );
        // Tried a second or more after the pass began: its minute counts from then.
        assert!(
            next(second) >= t(0) + TimeDelta::seconds(62),
            "{}",
            next(second)
        );
    }

    #[test]
    fn a_stopped_pass_tries_no_further_message_and_leaves_the_rest_queued() {
        // A server that says nothing, and the pass told to stop as the first message is
        // being tried (a daemon shutting down): that try ends at its timeout, and the other
        // channel's message is not begun.
        let stop = CancellationToken::new();
        let stopping = stop.clone();
        let silent = silent_server(move || stopping.cancel());
        let mut conn = db();
        let (first, second) = one_message_on_each_of_two_channels(&mut conn);
        let report = deliver(&conn, &silent, t(0), Pass::Due, &stop).unwrap();
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.pending, 2);
        let entries = list(&conn).unwrap();
        let attempts = |id| entries.iter().find(|e| e.id == id).unwrap().attempts;
        assert_eq!((attempts(first), attempts(second)), (1, 0));
    }

    #[test]
    fn a_rolled_back_transaction_leaves_no_message() {
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        insert(&tx, &message("x"), t(0)).unwrap();
        drop(tx);
        assert!(list(&conn).unwrap().is_empty());
    }

    #[test]
    fn unreachable_server_keeps_the_message_and_delays_the_next_attempt() {
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        let id = insert(&tx, &message("x"), t(0)).unwrap();
        tx.commit().unwrap();
        let dir = tempfile::tempdir().unwrap();
        // A file where the folder should be: the file transport cannot write.
        let blocked = dir.path().join("not-a-dir");
        std::fs::write(&blocked, "").unwrap();
        let broken = Transport::File { dir: blocked };
        let report = deliver_pending(&conn, &broken, t(0)).unwrap();
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.pending, 1);
        let entry = &list(&conn).unwrap()[0];
        assert_eq!((entry.id, entry.attempts, entry.sent_at), (id, 1, None));
        assert_eq!(entry.next_attempt_at, t(0) + TimeDelta::minutes(1));
        assert!(
            entry
                .last_error
                .as_deref()
                .unwrap()
                .starts_with("cannot write")
        );

        // Not due yet: nothing is tried, unless a person asks for delivery now.
        let report = deliver_pending(&conn, &broken, t(0) + TimeDelta::seconds(30)).unwrap();
        assert!(report.failed.is_empty() && report.sent.is_empty());
        let report = deliver(
            &conn,
            &broken,
            t(0) + TimeDelta::seconds(30),
            Pass::All,
            &CancellationToken::new(),
        )
        .unwrap();
        assert_eq!(report.failed.len(), 1);
        assert_eq!(list(&conn).unwrap()[0].attempts, 2);

        let good = Transport::File {
            dir: dir.path().join("outbox"),
        };
        let report = deliver_pending(&conn, &good, t(1)).unwrap();
        assert_eq!(report.sent, vec![id]);
        assert_eq!(report.pending, 0);
        // A sent message is never sent again.
        let report = deliver_pending(&conn, &good, t(2)).unwrap();
        assert!(report.sent.is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("outbox"))
                .unwrap()
                .count(),
            1
        );
        let entry = &list(&conn).unwrap()[0];
        assert_eq!(entry.sent_at, Some(t(1)));
        assert_eq!(entry.last_error, None);
    }
}
