//! The durable outbox: a digest is stored in the same transaction as the finding updates it
//! announces, then delivered; failures stay queued with a growing delay, and a message is
//! marked sent only once the server has accepted it. Delivery is therefore at least once: a
//! crash between the server's acceptance and the `sent_at` update resends that one message,
//! with the same `Message-ID`, so mail clients show it once.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::transport::{DeliveryError, Outgoing, Transport};
use crate::model::SnapshotId;

/// The migration that creates the outbox table (`0003_outbox.sql`).
pub const MIGRATION: &str = include_str!("../store/migrations/0003_outbox.sql");

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
    /// The snapshot whose evaluation it announces.
    pub snapshot_id: Option<SnapshotId>,
    /// The subject, for listings.
    pub subject: String,
    /// Envelope sender.
    pub sender: String,
    /// Envelope recipients.
    pub recipients: Vec<String>,
    /// The RFC 5322 bytes.
    pub message: Vec<u8>,
    /// The findings it announces.
    pub fingerprints: Vec<String>,
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
    let fingerprints = serde_json::Value::from(message.fingerprints.clone()).to_string();
    tx.execute(
        "INSERT INTO outbox (created_at, channel, snapshot_id, subject, sender, recipients,
                             message, fingerprints, attempts, next_attempt_at)
         VALUES (?1, 'email', ?2, ?3, ?4, ?5, ?6, ?7, 0, ?1)",
        params![
            now.timestamp(),
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

/// How long to wait after the `attempts`-th failure.
pub fn backoff(attempts: u32) -> TimeDelta {
    let doublings = attempts.saturating_sub(1).min(20);
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

/// Tries every due message, oldest first. A server that cannot be reached at all (DNS,
/// refused, TLS, AUTH) ends the pass: the rest wait for the next one.
pub fn deliver_pending(
    conn: &Connection,
    transport: &Transport,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, OutboxError> {
    deliver(conn, transport, now, Pass::Due)
}

/// Tries the messages `pass` selects, oldest first; see [`deliver_pending`].
pub fn deliver(
    conn: &Connection,
    transport: &Transport,
    now: DateTime<Utc>,
    pass: Pass,
) -> Result<DeliveryReport, OutboxError> {
    // i64::MAX: every unsent message counts as due.
    let due_by = match pass {
        Pass::Due => now.timestamp(),
        Pass::All => i64::MAX,
    };
    type Due = (i64, i64, String, String, Vec<u8>, u32);
    let due: Vec<Due> = {
        let mut stmt = conn.prepare(
            "SELECT id, created_at, sender, recipients, message, attempts FROM outbox
             WHERE sent_at IS NULL AND next_attempt_at <= ?1 ORDER BY id",
        )?;
        stmt.query_map([due_by], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?
    };
    let mut report = DeliveryReport::default();
    for (id, created_at, sender, recipients, message, attempts) in due {
        let id_typed = OutboxId(id);
        // Claim the message before sending: a delivery still in flight elsewhere (a run
        // abandoned at shutdown while `flush` delivers) must not send it a second time. A
        // process killed mid-send leaves the claim to lapse, and the message is retried then.
        let claimed = conn.execute(
            "UPDATE outbox SET next_attempt_at = ?3
             WHERE id = ?1 AND sent_at IS NULL AND next_attempt_at <= ?2",
            params![id, due_by, (now + CLAIM).timestamp()],
        )?;
        if claimed == 0 {
            continue;
        }
        let to: Vec<String> =
            serde_json::from_str(&recipients).map_err(|source| OutboxError::Recipients {
                id: id_typed,
                source,
            })?;
        // The creation time keeps names unique across databases writing to one folder.
        let name = format!(
            "orgwarden-{}-{id}",
            from_unix(created_at).format("%Y%m%dT%H%M%SZ")
        );
        let outgoing = Outgoing {
            from: &sender,
            to: &to,
            bytes: &message,
            name: &name,
        };
        match transport.send(&outgoing) {
            Ok(reply) => {
                conn.execute(
                    "UPDATE outbox SET sent_at = ?2, attempts = attempts + 1, last_error = NULL
                     WHERE id = ?1",
                    params![id, now.timestamp()],
                )?;
                tracing::info!(target: "orgwarden::notify", outbox_id = id, via = %transport.describe(), reply = %reply, "digest delivered");
                report.sent.push(id_typed);
                report.receipts.push((id_typed, reply));
            }
            Err(err) => {
                let attempts = attempts.saturating_add(1);
                let next = now + backoff(attempts);
                // A server may quote the credentials back in its reply: nothing secret is stored.
                let text = crate::secrets::scrub(&err.to_string()).into_owned();
                conn.execute(
                    "UPDATE outbox SET attempts = ?2, next_attempt_at = ?3, last_error = ?4
                     WHERE id = ?1",
                    params![id, attempts, next.timestamp(), text],
                )?;
                tracing::warn!(target: "orgwarden::notify", outbox_id = id, attempts, next_attempt_at = %next.to_rfc3339(), error = %text, "digest not delivered; it stays in the outbox");
                report.failed.push((id_typed, text));
                if server_unreachable(&err) {
                    break;
                }
            }
        }
    }
    report.pending = usize::try_from(pending_count(conn)?).unwrap_or_default();
    Ok(report)
}

/// Failures that no other message could get past.
fn server_unreachable(err: &DeliveryError) -> bool {
    matches!(
        err,
        DeliveryError::Dns { .. }
            | DeliveryError::Refused { .. }
            | DeliveryError::Connect { .. }
            | DeliveryError::Tls { .. }
            | DeliveryError::NoStartTls { .. }
            | DeliveryError::Auth { .. }
            | DeliveryError::File { .. }
            | DeliveryError::ReadOnly { .. }
    )
}

/// How many messages wait to be sent (the daemon's `orgwarden_outbox_depth`).
pub fn pending_count(conn: &Connection) -> Result<u64, OutboxError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL",
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

/// One stored message's bytes.
pub fn message_bytes(conn: &Connection, id: OutboxId) -> Result<Option<Vec<u8>>, OutboxError> {
    Ok(conn
        .query_row("SELECT message FROM outbox WHERE id = ?1", [id.0], |row| {
            row.get(0)
        })
        .optional()?)
}

fn from_unix(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::plan::tests::t;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATION).unwrap();
        conn
    }

    fn message(subject: &str) -> NewMessage {
        NewMessage {
            snapshot_id: Some(SnapshotId(3)),
            subject: subject.into(),
            sender: "orgwarden@example.com".into(),
            recipients: vec!["security@example.com".into()],
            message: format!("Subject: {subject}\r\n\r\nbody\r\n").into_bytes(),
            fingerprints: vec!["fp-a".into()],
        }
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
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), TimeDelta::minutes(1));
        assert_eq!(backoff(2), TimeDelta::minutes(2));
        assert_eq!(backoff(4), TimeDelta::minutes(8));
        assert_eq!(backoff(40), TimeDelta::hours(6));
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
        let report = deliver(&conn, &broken, t(0) + TimeDelta::seconds(30), Pass::All).unwrap();
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
