//! Storing the organization's audit log (migration 0008): events stored once by id in the
//! snapshot's transaction as the read delivers them, and one `audit_log_read` row per read
//! saying where the next read starts.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::audit_log::AuditEvent;
use crate::audit_log::read::{AuditLogOutcome, AuditLogRead, Watermark};
use crate::model::ProjectId;

use super::{SnapshotWriter, Store, StoreError};

impl Store {
    /// Where the newest complete audit-log read left the feed; `None` when no read was
    /// ever complete.
    pub fn audit_log_watermark(&self) -> Result<Option<Watermark>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT since, through FROM audit_log_read WHERE outcome = 'complete'
                 ORDER BY snapshot_id DESC LIMIT 1",
                [],
                |row| {
                    Ok(Watermark {
                        since: row.get(0)?,
                        through: row.get(1)?,
                    })
                },
            )
            .optional()?)
    }
}

/// What a snapshot recorded of its audit-log read, as `snapshot` and `audit` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditLogSummary {
    /// `complete`, `failed` or `disabled`.
    pub outcome: String,
    /// The `effective_at[gte]` asked for (Unix seconds).
    pub since: i64,
    /// The newest `effective_at` known after the read (complete reads only).
    pub through: Option<i64>,
    /// Pages requested.
    pub requests: u32,
    /// Events the pages held.
    pub received: u64,
    /// Events new to the store.
    pub stored: u64,
    /// Why the read failed or what the API said of a disabled log.
    pub error: Option<String>,
}

impl SnapshotWriter<'_> {
    /// Stores one page of events with this snapshot; an event already stored (the overlap
    /// every read starts with) is left as it is. Returns how many were new.
    pub fn store_audit_events(&mut self, events: &[AuditEvent]) -> Result<u64, StoreError> {
        let id = self.id().0;
        let mut insert = self.tx().prepare_cached(
            "INSERT INTO audit_event (id, type, effective_at, project_id, project_name,
                actor_type, actor_user_id, actor_user_email, actor_ip, actor_api_key_id,
                actor_service_account_id, resource_id, raw, snapshot_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (id) DO NOTHING",
        )?;
        let mut stored = 0u64;
        for e in events {
            let raw = serde_json::to_string(&e.raw)
                .map_err(|err| StoreError::Corrupt(format!("audit event {}: {err}", e.id)))?;
            let a = &e.actor;
            stored += u64::try_from(insert.execute(params![
                e.id.as_str(),
                e.kind,
                e.effective_at,
                e.project_id.as_ref().map(crate::model::ProjectId::as_str),
                e.project_name,
                a.kind,
                a.user_id,
                a.user_email,
                a.ip,
                a.api_key_id,
                a.service_account_id,
                e.resource_id,
                raw,
                id,
            ])?)
            .unwrap_or(0);
        }
        Ok(stored)
    }

    /// Records how the read ended. A complete read keeps its events and moves the
    /// watermark to the newest event known (never past the read's start); a failed or
    /// disabled one takes back every event it stored, so the next read starts from the same
    /// point and finds them new. `stored` is what [`SnapshotWriter::store_audit_events`]
    /// counted.
    pub fn record_audit_log_read(
        &mut self,
        read: &AuditLogRead,
        stored: u64,
    ) -> Result<(), StoreError> {
        let id = self.id().0;
        let tx = self.tx();
        let (through, stored, status, error) = match &read.outcome {
            AuditLogOutcome::Complete => {
                let before: Option<i64> = tx.query_row(
                    "SELECT max(through) FROM audit_log_read WHERE outcome = 'complete'",
                    [],
                    |row| row.get(0),
                )?;
                let newest = read.newest.map(|n| n.min(read.started_at));
                (newest.max(before), stored, None, None)
            }
            AuditLogOutcome::Failed(e) | AuditLogOutcome::Disabled(e) => {
                tx.execute("DELETE FROM audit_event WHERE snapshot_id = ?1", [id])?;
                (None, 0, e.status, Some(e.message.clone()))
            }
        };
        let requests = read.requests;
        tx.execute(
            "INSERT OR REPLACE INTO audit_log_read
             (snapshot_id, since, through, outcome, requests, received, stored, http_status, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                id,
                read.since,
                through,
                read.outcome.as_str(),
                requests,
                i64::try_from(read.received).unwrap_or(i64::MAX),
                i64::try_from(stored).unwrap_or(i64::MAX),
                status,
                error,
            ],
        )?;
        Ok(())
    }
}

impl AuditLogSummary {
    /// `{"outcome", "since", "through", "requests", "received", "stored", "error"}`, times
    /// RFC 3339 UTC.
    pub fn to_json(&self) -> serde_json::Value {
        let time = |t: i64| super::from_unix(t).ok().map(super::rfc3339);
        serde_json::json!({
            "outcome": self.outcome,
            "since": time(self.since),
            "through": self.through.and_then(time),
            "requests": self.requests,
            "received": self.received,
            "stored": self.stored,
            "error": self.error,
        })
    }
}

/// Reads `audit_log_read`'s `outcome, since, through, requests, received, stored, error`
/// starting at column `at`; `None` when the snapshot made no audit-log read (the columns
/// come from a left join).
pub(super) fn audit_log_summary(
    row: &rusqlite::Row<'_>,
    at: usize,
) -> rusqlite::Result<Option<AuditLogSummary>> {
    let Some(outcome) = row.get::<_, Option<String>>(at)? else {
        return Ok(None);
    };
    let count = |i: usize| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, i64>(at + i)?).unwrap_or(0))
    };
    Ok(Some(AuditLogSummary {
        outcome,
        since: row.get(at + 1)?,
        through: row.get(at + 2)?,
        requests: u32::try_from(count(3)?).unwrap_or(u32::MAX),
        received: count(4)?,
        stored: count(5)?,
        error: row.get(at + 6)?,
    }))
}

/// Which stored events `orgwarden events` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Only events whose type matches this glob (`api_key.*`).
    pub kind: Option<String>,
    /// Only events by this actor: a user's email (any case), or the id of a user, an
    /// API key or a service account (exactly).
    pub actor_email: Option<String>,
    /// Only events scoped to this project.
    pub project_id: Option<ProjectId>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// Every stored event `filter` matches, newest first (ties by id, descending).
pub fn audit_events(
    reader: super::Reader<'_>,
    filter: &EventFilter,
) -> Result<Vec<AuditEvent>, StoreError> {
    // The actor is matched here rather than in SQL: SQLite's `lower()` folds ASCII only, so
    // `--actor JÖRG@acme.de` would miss `jörg@acme.de`. Rows stream newest first, so the scan
    // stops at the limit, and only the rows that match are parsed.
    let actor = filter.actor_email.as_deref().map(|a| (a, a.to_lowercase()));
    let mut stmt = reader.conn().prepare(
        "SELECT raw, actor_user_email, actor_user_id, actor_api_key_id, actor_service_account_id
         FROM audit_event
         WHERE (?1 IS NULL OR effective_at >= ?1)
           AND (?2 IS NULL OR type GLOB ?2)
           AND (?3 IS NULL OR project_id = ?3)
         ORDER BY effective_at DESC, id DESC",
    )?;
    let mut rows = stmt.query(params![filter.since, filter.kind, filter.project_id])?;
    let limit = usize::try_from(filter.limit).unwrap_or(usize::MAX);
    let mut events = Vec::new();
    while events.len() < limit {
        let Some(row) = rows.next()? else { break };
        if let Some((exact, folded)) = &actor {
            let email: Option<String> = row.get(1)?;
            let by_email = email.is_some_and(|e| e.to_lowercase() == *folded);
            let id = |column: usize| -> rusqlite::Result<bool> {
                Ok(row.get::<_, Option<String>>(column)?.as_deref() == Some(*exact))
            };
            let by_id = id(2)? || id(3)? || id(4)?;
            if !by_email && !by_id {
                continue;
            }
        }
        events.push(parse_stored(&row.get::<_, String>(0)?)?);
    }
    Ok(events)
}

/// A stored event (`audit_event.raw`) parsed back.
pub(super) fn parse_stored(raw: &str) -> Result<AuditEvent, StoreError> {
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| StoreError::Corrupt(format!("audit_event.raw: {e}")))?;
    AuditEvent::from_api(&value).map_err(|e| StoreError::Corrupt(format!("audit_event.raw: {e}")))
}

/// Whether the stored feed can be trusted to be current, as `orgwarden events` says it
/// before listing anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FeedStatus {
    /// The newest read's outcome (`complete`, `failed`, `disabled`); `None`: never read.
    pub outcome: Option<String>,
    /// When the newest read's snapshot started (Unix seconds).
    pub read_at: Option<i64>,
    /// When the run of `disabled` reads that ends with the newest began (Unix seconds).
    pub disabled_since: Option<i64>,
    /// When the newest complete read's snapshot started; `None`: none ever completed.
    pub last_complete_at: Option<i64>,
    /// The newest read's error, when it failed or was disabled.
    pub error: Option<String>,
    /// Since when the complete reads cover the log without a gap (Unix seconds): events
    /// before it may be missing (the first read's lookback, or a catch-up cut short).
    /// `None`: none ever completed.
    pub read_from: Option<i64>,
}

/// The stored feed's [`FeedStatus`].
pub fn feed_status(reader: super::Reader<'_>) -> Result<FeedStatus, StoreError> {
    let conn = reader.conn();
    let newest: Option<(String, i64, Option<String>)> = conn
        .query_row(
            "SELECT r.outcome, s.started_at, r.error FROM audit_log_read r
             JOIN snapshot s ON s.id = r.snapshot_id
             ORDER BY r.snapshot_id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let last_complete_at: Option<i64> = conn.query_row(
        "SELECT max(s.started_at) FROM audit_log_read r JOIN snapshot s ON s.id = r.snapshot_id
         WHERE r.outcome = 'complete'",
        [],
        |row| row.get(0),
    )?;
    let disabled_since: Option<i64> = conn.query_row(
        "SELECT min(s.started_at) FROM audit_log_read r JOIN snapshot s ON s.id = r.snapshot_id
         WHERE r.outcome = 'disabled' AND r.snapshot_id > coalesce(
             (SELECT max(snapshot_id) FROM audit_log_read WHERE outcome <> 'disabled'), 0)",
        [],
        |row| row.get(0),
    )?;
    let (outcome, read_at, error) = match newest {
        Some((outcome, at, error)) => (Some(outcome), Some(at), error),
        None => (None, None, None),
    };
    // A stretch of disabled reads is no gap: the log recorded nothing then.
    let read_from = super::attribution::gapless_reads(conn, false)?.map(|span| span.from);
    Ok(FeedStatus {
        outcome,
        read_at,
        disabled_since,
        last_complete_at,
        error,
        read_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CrawlStats, ScopeError, SnapshotStatus};
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn event(id: &str, at: i64) -> AuditEvent {
        AuditEvent::from_api(&json!({
            "id": id, "type": "api_key.created", "effective_at": at,
            "actor": {"type": "session", "session": {"user": {"id": "u", "email": "a@b.c"}}},
            "api_key.created": {"id": format!("key_{id}")}
        }))
        .unwrap()
    }

    fn read(since: i64, events: &[AuditEvent], outcome: AuditLogOutcome) -> AuditLogRead {
        AuditLogRead {
            since,
            started_at: 10_000,
            requests: 1,
            received: events.len() as u64,
            newest: events.iter().map(|e| e.effective_at).max(),
            outcome,
        }
    }

    /// Stores one snapshot whose audit-log read delivered `events` and ended `outcome`.
    fn snapshot(store: &mut Store, events: &[AuditEvent], outcome: AuditLogOutcome) -> u64 {
        snapshot_at(store, 10_000, events, outcome)
    }

    /// [`snapshot`] started at `at`.
    fn snapshot_at(
        store: &mut Store,
        at: i64,
        events: &[AuditEvent],
        outcome: AuditLogOutcome,
    ) -> u64 {
        let since = crate::audit_log::read::plan(
            at,
            store.audit_log_watermark().unwrap(),
            crate::duration::Duration::from_secs(5_000),
        );
        let mut w = store
            .begin_snapshot("acme", Utc.timestamp_opt(at, 0).unwrap())
            .unwrap();
        let stored = w.store_audit_events(events).unwrap();
        w.record_audit_log_read(&read(since, events, outcome), stored)
            .unwrap();
        let info = w
            .finish(&CrawlStats::default(), Utc::now(), SnapshotStatus::Complete)
            .unwrap();
        let summary = info.audit_log.expect("the read is recorded");
        assert_eq!(summary.since, since);
        assert_eq!(
            store.latest_snapshot().unwrap().unwrap().audit_log,
            Some(summary.clone())
        );
        summary.stored
    }

    #[test]
    fn the_view_describes_each_actor_as_the_reports_do() {
        // `query` on the view and a digest's "changed by" must name an actor alike.
        let session = |user: serde_json::Value| json!({"type": "session", "session": {"user": user, "ip_address": "203.0.113.5"}});
        let key = |key: serde_json::Value| json!({"type": "api_key", "api_key": key});
        let actors = [
            session(json!({"id": "user_ada", "email": "ada@acme.com"})),
            session(json!({"id": "user_bob"})),
            json!({"type": "session", "session": {"user": {"id": "user_cy"}}}),
            key(
                json!({"id": "key_u", "type": "user", "user": {"id": "user_ada", "email": "ada@acme.com"}}),
            ),
            key(
                json!({"id": "key_sa", "type": "service_account", "service_account": {"id": "svc_ci"}}),
            ),
            key(json!({"id": "key_bare"})),
            key(json!({"type": "service_account", "service_account": {"id": "svc_keyless"}})),
            json!({"type": "session", "session": {"ip_address": "198.51.100.7"}}),
            json!(null),
        ];
        let events: Vec<AuditEvent> = actors
            .iter()
            .enumerate()
            .map(|(i, actor)| {
                AuditEvent::from_api(&json!({
                    "id": format!("e{i}"), "type": "api_key.created", "effective_at": 6_000 + i,
                    "actor": actor, "api_key.created": {"id": "key_x"}
                }))
                .unwrap()
            })
            .collect();
        let mut store = Store::open_in_memory().unwrap();
        snapshot(&mut store, &events, AuditLogOutcome::Complete);
        for event in &events {
            let shown: String = store
                .conn
                .query_row(
                    "SELECT actor FROM audit_log_events WHERE id = ?1",
                    [event.id.as_str()],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(shown, event.actor.describe(), "{:?}", event.actor);
        }
    }

    fn count(store: &Store) -> i64 {
        store
            .conn
            .query_row("SELECT count(*) FROM audit_event", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_re_read_event_is_stored_once_and_the_watermark_moves_to_the_newest() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(store.audit_log_watermark().unwrap(), None);
        let first = [event("e2", 6_000), event("e1", 5_500)];
        assert_eq!(snapshot(&mut store, &first, AuditLogOutcome::Complete), 2);
        let mark = store.audit_log_watermark().unwrap().unwrap();
        assert_eq!(mark.since, 5_000);
        assert_eq!(mark.through, Some(6_000));
        // The overlap re-reads e2; e3 shares its second and is new.
        let second = [event("e3", 6_000), event("e2", 6_000)];
        assert_eq!(snapshot(&mut store, &second, AuditLogOutcome::Complete), 1);
        assert_eq!(count(&store), 3);
        let mark = store.audit_log_watermark().unwrap().unwrap();
        assert_eq!(mark.since, 6_000 - crate::audit_log::read::OVERLAP_SECS);
    }

    #[test]
    fn a_failed_read_keeps_no_event_and_the_next_starts_from_the_same_point() {
        let mut store = Store::open_in_memory().unwrap();
        snapshot(&mut store, &[event("e1", 5_500)], AuditLogOutcome::Complete);
        let before = store.audit_log_watermark().unwrap();
        let failed = AuditLogOutcome::Failed(ScopeError {
            status: Some(500),
            message: "boom".into(),
        });
        let partial = [event("e3", 7_000), event("e2", 6_500)];
        assert_eq!(snapshot(&mut store, &partial, failed), 0);
        assert_eq!(count(&store), 1);
        assert_eq!(store.audit_log_watermark().unwrap(), before);
        assert_eq!(snapshot(&mut store, &partial, AuditLogOutcome::Complete), 2);
        assert_eq!(count(&store), 3);
    }

    #[test]
    fn events_are_listed_newest_first_by_type_glob_actor_and_project() {
        let mut store = Store::open_in_memory().unwrap();
        let mut other = event("e3", 6_000);
        other.raw["type"] = json!("login.failed");
        let other = AuditEvent::from_api(&other.raw).unwrap();
        // e0 was made with a service account's key.
        let by_key = AuditEvent::from_api(&json!({
            "id": "e0", "type": "api_key.created", "effective_at": 5_000,
            "actor": {"type": "api_key", "api_key": {"id": "key_ci", "type": "service_account",
                      "service_account": {"id": "svc_ci"}}},
            "api_key.created": {"id": "key_new"}
        }))
        .unwrap();
        let events = [other, event("e2", 5_900), event("e1", 5_500), by_key];
        snapshot(&mut store, &events, AuditLogOutcome::Complete);
        let ids = |f: EventFilter| -> Vec<String> {
            audit_events(store.reader(), &EventFilter { limit: 10, ..f })
                .unwrap()
                .into_iter()
                .map(|e| e.id.as_str().to_owned())
                .collect()
        };
        assert_eq!(ids(EventFilter::default()), ["e3", "e2", "e1", "e0"]);
        let keys = EventFilter {
            kind: Some("api_key.*".into()),
            ..EventFilter::default()
        };
        assert_eq!(ids(keys), ["e2", "e1", "e0"]);
        // An actor is named by email, or by the id of its user, key or service account.
        let actor = |who: &str| EventFilter {
            actor_email: Some(who.into()),
            ..EventFilter::default()
        };
        assert_eq!(ids(actor("u")), ["e3", "e2", "e1"]);
        assert_eq!(ids(actor("key_ci")), ["e0"]);
        assert_eq!(ids(actor("svc_ci")), ["e0"]);
        assert!(
            ids(actor("key_new")).is_empty(),
            "what an event names is no actor"
        );
        let recent = EventFilter {
            since: Some(5_600),
            actor_email: Some("A@B.C".into()),
            ..EventFilter::default()
        };
        assert_eq!(ids(recent), ["e3", "e2"]);
        let limited = EventFilter {
            limit: 2,
            actor_email: Some("u".into()),
            ..EventFilter::default()
        };
        assert_eq!(
            audit_events(store.reader(), &limited).unwrap().len(),
            2,
            "the limit counts matching events"
        );
        let nobody = EventFilter {
            project_id: Some(ProjectId::from("proj_x")),
            ..EventFilter::default()
        };
        assert!(ids(nobody).is_empty());
    }

    #[test]
    fn an_actor_email_matches_in_any_case_beyond_ascii_and_an_id_only_exactly() {
        let mut store = Store::open_in_memory().unwrap();
        let by = |id: &str, email: &str| {
            AuditEvent::from_api(&json!({
                "id": id, "type": "api_key.created", "effective_at": 5_000,
                "actor": {"type": "session", "session": {"user": {"id": "user_J", "email": email}}},
                "api_key.created": {"id": "key_x"}
            }))
            .unwrap()
        };
        let events = [by("e1", "jörg@straße.de"), by("e2", "jorg@strasse.de")];
        snapshot(&mut store, &events, AuditLogOutcome::Complete);
        let ids = |who: &str| -> Vec<String> {
            let filter = EventFilter {
                actor_email: Some(who.into()),
                limit: 10,
                ..EventFilter::default()
            };
            audit_events(store.reader(), &filter)
                .unwrap()
                .into_iter()
                .map(|e| e.id.as_str().to_owned())
                .collect()
        };
        assert_eq!(ids("JÖRG@STRAßE.DE"), ["e1"]);
        assert_eq!(ids("Jorg@Strasse.de"), ["e2"]);
        assert_eq!(ids("user_J"), ["e2", "e1"]);
        assert!(ids("USER_J").is_empty(), "ids are matched exactly");
    }

    #[test]
    fn the_feed_status_says_since_when_audit_logging_is_off() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(feed_status(store.reader()).unwrap().outcome, None);
        let off = || {
            AuditLogOutcome::Disabled(ScopeError {
                status: Some(403),
                message: "Audit logging is not enabled".into(),
            })
        };
        snapshot_at(&mut store, 1_000, &[], off());
        snapshot_at(&mut store, 2_000, &[], AuditLogOutcome::Complete);
        snapshot_at(&mut store, 3_000, &[], off());
        snapshot_at(&mut store, 4_000, &[], off());
        let status = feed_status(store.reader()).unwrap();
        assert_eq!(status.outcome.as_deref(), Some("disabled"));
        assert_eq!(status.read_at, Some(4_000));
        assert_eq!(
            status.disabled_since,
            Some(3_000),
            "the run of disabled reads starts after the complete one"
        );
        assert_eq!(status.last_complete_at, Some(2_000));
        assert!(status.error.unwrap().contains("not enabled"));
    }

    #[test]
    fn the_events_view_reads_every_event_s_payload_whatever_its_type_is_called() {
        let mut store = Store::open_in_memory().unwrap();
        // A type the client does not know, named with characters a JSON path would take
        // for syntax: the view still lists it (before, one such event failed every read
        // of the view, and so every audit-log rule).
        let odd = AuditEvent::from_api(&json!({
            "id": "e2", "type": "odd\"type.x", "effective_at": 5_900,
            "odd\"type.x": {"id": "thing_1"}
        }))
        .unwrap();
        snapshot(
            &mut store,
            &[odd, event("e1", 5_500)],
            AuditLogOutcome::Complete,
        );
        let rows: Vec<(String, Option<String>)> = store
            .conn
            .prepare("SELECT type, details FROM audit_log_events ORDER BY id DESC")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (
                    "odd\"type.x".to_owned(),
                    Some(r#"{"id":"thing_1"}"#.to_owned())
                ),
                (
                    "api_key.created".to_owned(),
                    Some(r#"{"id":"key_e1"}"#.to_owned())
                ),
            ]
        );
    }

    #[test]
    fn a_watermark_never_passes_the_read_s_start() {
        let mut store = Store::open_in_memory().unwrap();
        snapshot(
            &mut store,
            &[event("future", 99_999_999)],
            AuditLogOutcome::Complete,
        );
        let mark = store.audit_log_watermark().unwrap().unwrap();
        assert_eq!(mark.through, Some(10_000));
    }
}
