//! One audit-log read (`GET /organization/audit_logs`): where it starts, how it pages, and
//! how it ends — complete, failed, or told that the organization has audit logging off.
//!
//! The first run reads `[audit_log] lookback` back; later runs start a few minutes before
//! the newest event the last complete read knew ([`OVERLAP_SECS`]), so that events of the
//! same second at the boundary, and events that reach the log a little late, are read
//! again and de-duplicated by id in the store. A failed read keeps nothing, so the next run
//! starts from the same point. Pages go to the store as they arrive: a first read of
//! 100,000 events never holds more than a few pages.

use std::collections::HashSet;
use std::future::Future;

use serde_json::Value;

use super::AuditEvent;
use crate::client::{AdminClient, AnswerBound, ClientError, Queue};
use crate::config::AuditLogConfig;
use crate::model::ScopeError;

/// The API path of the audit-log read.
pub const AUDIT_LOG_PATH: &str = "/organization/audit_logs";

/// Events asked for per page (the spec's `limit` maximum).
pub const PAGE_LIMIT: u32 = 100;

/// How far before the last complete read's newest event the next read starts.
pub const OVERLAP_SECS: i64 = 300;

/// Where the last complete read left the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermark {
    /// The `effective_at[gte]` it asked for.
    pub since: i64,
    /// The newest `effective_at` known after it (`None`: no event was ever read).
    pub through: Option<i64>,
}

/// The `effective_at[gte]` of a read at `now` (Unix seconds).
pub fn plan(now: i64, last: Option<Watermark>, lookback: crate::duration::Duration) -> i64 {
    match last {
        Some(Watermark {
            through: Some(through),
            ..
        }) => through.saturating_sub(OVERLAP_SECS),
        // A complete read that found nothing: nothing older can have appeared since.
        Some(Watermark {
            since,
            through: None,
        }) => since,
        None => now.saturating_sub(i64::try_from(lookback.as_secs()).unwrap_or(i64::MAX)),
    }
}

/// How a read ended.
#[derive(Clone, Debug, PartialEq)]
pub enum AuditLogOutcome {
    /// Every page was read.
    Complete,
    /// The read failed; what it delivered is not kept.
    Failed(ScopeError),
    /// The API said audit logging is off for the organization.
    Disabled(ScopeError),
}

impl AuditLogOutcome {
    /// `complete`, `failed` or `disabled`, as stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditLogOutcome::Complete => "complete",
            AuditLogOutcome::Failed(_) => "failed",
            AuditLogOutcome::Disabled(_) => "disabled",
        }
    }
}

/// One audit-log read: where it started, what it cost and how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditLogRead {
    /// The `effective_at[gte]` asked for.
    pub since: i64,
    /// When the read started (Unix seconds): no event newer than this is trusted as the
    /// watermark, so a clock far ahead cannot make later reads skip the present.
    pub started_at: i64,
    /// Pages requested (retries are counted by the client).
    pub requests: u32,
    /// Events the pages held (re-reads of the overlap included).
    pub received: u64,
    /// The newest `effective_at` among them.
    pub newest: Option<i64>,
    /// How it ended.
    pub outcome: AuditLogOutcome,
}

impl AuditLogRead {
    /// Counts a failed read into the crawl's figures: one more failed read, and a complete
    /// snapshot becomes partial. A disabled log is a fact about the organization, not a
    /// failed read: the `audit-logging-disabled` rule reports it.
    pub fn count_into(
        &self,
        stats: &mut crate::model::CrawlStats,
        status: &mut crate::model::SnapshotStatus,
    ) {
        if let AuditLogOutcome::Failed(error) = &self.outcome {
            tracing::warn!("{}", error.message);
            stats.errors += 1;
            if *status == crate::model::SnapshotStatus::Complete {
                *status = crate::model::SnapshotStatus::Partial;
            }
        }
    }
}

/// Pages through one read: the query of the next page, and what each page gave.
#[derive(Debug)]
pub struct Pager {
    since: i64,
    cursor: Option<String>,
    // Every cursor followed so far: a log that leads back to one (A→B→A) would otherwise
    // be paged until `max_pages`, thousands of requests on every run.
    followed: HashSet<String>,
    pages: u64,
    max_pages: u64,
    done: bool,
}

impl Pager {
    /// A read from `since`, of at most `max_pages` pages.
    pub fn new(since: i64, max_pages: u64) -> Pager {
        Pager {
            since,
            cursor: None,
            followed: HashSet::new(),
            pages: 0,
            max_pages: max_pages.max(1),
            done: false,
        }
    }

    /// Whether the last page said there is no more.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Whether the read took its most pages and the log goes on.
    pub fn exhausted(&self) -> bool {
        !self.done && self.pages >= self.max_pages
    }

    /// The next page's query, or an error when the read already took its most pages.
    pub fn next_query(&mut self) -> Result<Vec<(&'static str, String)>, ClientError> {
        if self.pages >= self.max_pages {
            return Err(ClientError::TooLarge {
                path: AUDIT_LOG_PATH.to_owned(),
                message: format!(
                    "the audit log goes on past {} pages (`[openai] max_pages_per_scope`); \
                     stopping instead of reading it forever",
                    self.max_pages
                ),
            });
        }
        self.pages += 1;
        let mut query = vec![
            ("effective_at[gte]", self.since.to_string()),
            ("limit", PAGE_LIMIT.to_string()),
        ];
        if let Some(cursor) = &self.cursor {
            query.push(("after", cursor.clone()));
        }
        Ok(query)
    }

    /// The events of one page (envelope A, newest first), moving the cursor on. A page
    /// larger than asked, a malformed event (named by its index) or a cursor that does not
    /// advance fails the read.
    pub fn accept(&mut self, body: &Value) -> Result<Vec<AuditEvent>, ClientError> {
        let shown = match &self.cursor {
            Some(cursor) => format!("{AUDIT_LOG_PATH}?after={cursor}"),
            None => AUDIT_LOG_PATH.to_owned(),
        };
        let malformed = |message: String| ClientError::Malformed {
            path: shown.clone(),
            message,
        };
        let data = body
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("no `data` array".into()))?;
        if data.len() > usize::try_from(PAGE_LIMIT).unwrap_or(usize::MAX) {
            return Err(ClientError::TooLarge {
                path: shown.clone(),
                message: format!(
                    "the page holds {} events but `limit={PAGE_LIMIT}` was asked; not trusting \
                     the rest of the log",
                    data.len()
                ),
            });
        }
        let has_more = body
            .get("has_more")
            .and_then(Value::as_bool)
            .ok_or_else(|| malformed("no boolean `has_more`".into()))?;
        let events = data
            .iter()
            .enumerate()
            .map(|(i, event)| {
                AuditEvent::from_api(event).map_err(|e| malformed(format!("data[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !has_more {
            self.done = true;
            return Ok(events);
        }
        // Envelope A: the next page starts after `last_id`, else after the last event.
        let next = body
            .get("last_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .or_else(|| events.last().map(|e| e.id.as_str().to_owned()))
            .ok_or_else(|| malformed("`has_more` is true on an empty page".into()))?;
        if self.cursor.as_deref() == Some(next.as_str()) {
            return Err(malformed(format!(
                "the cursor `{next}` did not advance; stopping instead of looping"
            )));
        }
        if !self.followed.insert(next.clone()) {
            return Err(malformed(format!(
                "the cursor `{next}` came back after {} pages; stopping instead of looping",
                self.followed.len() + 1
            )));
        }
        self.cursor = Some(next);
        Ok(events)
    }
}

/// Whether an error is the API saying the organization's audit logging is off: a 400 or
/// 403 whose `code` names the audit log, or whose message says the audit log is not
/// enabled, disabled or turned off. (The reference does not document this answer.)
pub fn logging_disabled(error: &ClientError) -> bool {
    let ClientError::Explained {
        status: 400 | 403,
        code,
        message,
        ..
    } = error
    else {
        return false;
    };
    if code.as_deref().is_some_and(|c| c.contains("audit_log")) {
        return true;
    }
    let message = message.to_lowercase();
    message.contains("audit log")
        && ["not enabled", "disabled", "turned off"]
            .iter()
            .any(|said| message.contains(said))
}

/// What a read that could not go on records: a 403 that is not about audit logging is the
/// key refused this read, said without the API's text (which may quote the key).
fn failure(error: &ClientError) -> ScopeError {
    let message = match error {
        ClientError::Explained {
            status: 403, path, ..
        } => format!(
            "GET {path}: HTTP 403: the Admin API refused this read: this key may not read \
             the audit log; to stop reading it, set [audit_log] enabled = false"
        ),
        other => other.to_string(),
    };
    ScopeError {
        status: error.status(),
        message,
    }
}

/// The `effective_at[gte]` of the read a snapshot starting at `now` makes, when `client`
/// was given `[audit_log]` settings with the read enabled; `None` otherwise.
pub fn since(
    client: &AdminClient,
    store: &crate::store::Store,
    now: i64,
) -> Result<Option<i64>, crate::store::StoreError> {
    let Some(config) = client.audit_log().filter(|c: &AuditLogConfig| c.enabled) else {
        return Ok(None);
    };
    Ok(Some(plan(
        now,
        store.audit_log_watermark()?,
        config.lookback,
    )))
}

/// Reads the log from `since` through `client`, handing each page's events to `deliver`
/// as it arrives (it answers `false` when the store stopped taking them).
pub async fn read<F, Fut>(
    client: &AdminClient,
    since: i64,
    started_at: i64,
    mut deliver: F,
) -> AuditLogRead
where
    F: FnMut(Vec<AuditEvent>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut pager = Pager::new(since, client.max_pages_per_scope());
    let mut read = AuditLogRead {
        since,
        started_at,
        requests: 0,
        received: 0,
        newest: None,
        outcome: AuditLogOutcome::Complete,
    };
    let mut oldest: Option<i64> = None;
    // More events than the page bound allows, or than the snapshot's time limit lets be
    // read: failing would fail every run from the same point, for ever. Keep the newest
    // events, the ones read (the log lists newest first), and say how far back the read
    // reaches; the span before it stays unread.
    let keep_newest = |read: &mut AuditLogRead, oldest: i64, why: String| {
        let reached = oldest.saturating_add(1).max(read.since);
        tracing::warn!(
            "{why} since {}: read back to {} only, and events before that are not read",
            crate::report::unix_rfc3339(read.since),
            crate::report::unix_rfc3339(reached),
        );
        read.since = reached;
    };
    while !pager.done() {
        if let (true, Some(oldest)) = (pager.exhausted(), oldest) {
            let why = format!(
                "the audit log holds more than {} pages of events (raise [openai] \
                 max_pages_per_scope, or shorten [audit_log] lookback)",
                client.max_pages_per_scope()
            );
            keep_newest(&mut read, oldest, why);
            break;
        }
        let answer = match pager.next_query() {
            Ok(query) => {
                let queue = Queue::for_page(read.requests == 0);
                read.requests += 1;
                client
                    .get_explained(
                        &["organization", "audit_logs"],
                        &query,
                        queue,
                        AnswerBound::Page {
                            objects: PAGE_LIMIT,
                            of: "the audit log",
                        },
                    )
                    .await
                    .and_then(|body| pager.accept(&body))
            }
            Err(error) => Err(error),
        };
        let events = match answer {
            Ok(events) => events,
            Err(error) if logging_disabled(&error) => {
                read.outcome = AuditLogOutcome::Disabled(ScopeError {
                    status: error.status(),
                    message: error.to_string(),
                });
                break;
            }
            Err(ClientError::OutOfTime { limit, .. }) if oldest.is_some() => {
                let why = format!(
                    "the snapshot's time limit ([openai] snapshot_timeout = \"{limit}\") \
                     ended the audit-log read"
                );
                let floor = read.since;
                keep_newest(&mut read, oldest.unwrap_or(floor), why);
                break;
            }
            Err(error) => {
                read.outcome = AuditLogOutcome::Failed(failure(&error));
                break;
            }
        };
        read.received += u64::try_from(events.len()).unwrap_or(u64::MAX);
        oldest = events.iter().map(|e| e.effective_at).chain(oldest).min();
        read.newest = events
            .iter()
            .map(|e| e.effective_at)
            .chain(read.newest)
            .max();
        if !events.is_empty() && !deliver(events).await {
            read.outcome = AuditLogOutcome::Failed(ScopeError {
                status: None,
                message: format!("GET {AUDIT_LOG_PATH}: the store stopped accepting events"),
            });
            break;
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::Duration;
    use serde_json::json;

    fn event(id: &str, at: i64) -> Value {
        json!({"id": id, "type": "login.succeeded", "effective_at": at, "login.succeeded": {}})
    }

    #[test]
    fn the_first_read_goes_back_the_lookback_and_later_ones_overlap_the_newest_event() {
        let day = Duration::from_secs(86_400);
        assert_eq!(plan(1_000_000, None, day), 1_000_000 - 86_400);
        let last = Watermark {
            since: 10,
            through: Some(500_000),
        };
        assert_eq!(plan(1_000_000, Some(last), day), 500_000 - OVERLAP_SECS);
        let empty = Watermark {
            since: 10,
            through: None,
        };
        assert_eq!(plan(1_000_000, Some(empty), day), 10);
    }

    #[test]
    fn pages_follow_last_id_newest_first_until_has_more_is_false() {
        let mut pager = Pager::new(100, 10);
        let q = pager.next_query().unwrap();
        assert!(q.contains(&("effective_at[gte]", "100".to_owned())));
        assert!(q.contains(&("limit", "100".to_owned())));
        assert!(!q.iter().any(|(k, _)| *k == "after"));
        let page = json!({"object": "list", "data": [event("a3", 300), event("a2", 200)],
                          "first_id": "a3", "last_id": "a2", "has_more": true});
        let events = pager.accept(&page).unwrap();
        assert_eq!(events.len(), 2);
        assert!(!pager.done());
        let q = pager.next_query().unwrap();
        assert!(q.contains(&("after", "a2".to_owned())));
        let last = json!({"object": "list", "data": [event("a1", 100)],
                          "first_id": "a1", "last_id": "a1", "has_more": false});
        assert_eq!(pager.accept(&last).unwrap().len(), 1);
        assert!(pager.done());
    }

    #[test]
    fn a_cursor_that_does_not_advance_fails_the_read() {
        let mut pager = Pager::new(0, 10);
        let page = json!({"data": [event("a2", 2)], "last_id": "a2", "has_more": true});
        pager.next_query().unwrap();
        pager.accept(&page).unwrap();
        pager.next_query().unwrap();
        let err = pager.accept(&page).unwrap_err().to_string();
        assert!(err.contains("did not advance"), "{err}");
        let mut empty = Pager::new(0, 10);
        let err = empty
            .accept(&json!({"data": [], "has_more": true}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty page"), "{err}");
    }

    #[test]
    fn a_cursor_that_comes_back_fails_the_read_instead_of_paging_to_the_bound() {
        let mut pager = Pager::new(0, 10_000);
        let page = |id: &str, next: &str| json!({"data": [event(id, 1)], "last_id": next, "has_more": true});
        pager.next_query().unwrap();
        pager.accept(&page("a1", "b")).unwrap();
        pager.next_query().unwrap();
        pager.accept(&page("a2", "c")).unwrap();
        pager.next_query().unwrap();
        let err = pager.accept(&page("a3", "b")).unwrap_err().to_string();
        assert!(
            err.contains("the cursor `b` came back after 3 pages"),
            "{err}"
        );
    }

    #[test]
    fn more_pages_than_the_bound_fail_the_read() {
        let mut pager = Pager::new(0, 2);
        for i in 0..2 {
            pager.next_query().unwrap();
            let page = json!({"data": [event(&format!("a{i}"), i)], "has_more": true});
            pager.accept(&page).unwrap();
        }
        let err = pager.next_query().unwrap_err().to_string();
        assert!(err.contains("past 2 pages"), "{err}");
    }

    #[test]
    fn a_malformed_event_fails_the_read_naming_its_index() {
        let mut pager = Pager::new(0, 10);
        let page = json!({"data": [event("a2", 2), {"id": "a1", "type": "x"}], "has_more": false});
        let err = pager.accept(&page).unwrap_err().to_string();
        assert!(err.contains("data[1]"), "{err}");
        assert!(err.contains("effective_at"), "{err}");
        let big: Vec<Value> = (0..101).map(|i| event(&format!("e{i}"), i)).collect();
        let err = Pager::new(0, 10)
            .accept(&json!({"data": big, "has_more": false}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("101 events"), "{err}");
        assert!(
            Pager::new(0, 10)
                .accept(&json!({"data": []}))
                .unwrap_err()
                .to_string()
                .contains("has_more")
        );
    }

    fn explained(status: u16, code: Option<&str>, message: &str) -> ClientError {
        ClientError::Explained {
            path: AUDIT_LOG_PATH.to_owned(),
            status,
            code: code.map(str::to_owned),
            message: message.to_owned(),
        }
    }

    #[test]
    fn audit_logging_off_is_recognised_by_code_or_message_on_400_or_403_only() {
        assert!(logging_disabled(&explained(
            403,
            Some("audit_logging_disabled"),
            "Audit logging is not enabled for this organization."
        )));
        assert!(logging_disabled(&explained(
            400,
            None,
            "The Audit Log is turned off for this org"
        )));
        assert!(logging_disabled(&explained(
            403,
            Some("audit_log_off"),
            "nope"
        )));
        assert!(!logging_disabled(&explained(
            403,
            Some("insufficient_permissions"),
            "You may not read this"
        )));
        assert!(!logging_disabled(&explained(
            400,
            None,
            "audit log: invalid limit"
        )));
        let server = ClientError::Status {
            path: AUDIT_LOG_PATH.to_owned(),
            status: 500,
            message: "audit logging is disabled".into(),
        };
        assert!(!logging_disabled(&server));
    }

    #[test]
    fn a_failed_read_makes_the_snapshot_partial_and_a_disabled_log_does_not() {
        use crate::model::{CrawlStats, SnapshotStatus};
        let error = ScopeError {
            status: Some(403),
            message: "off".into(),
        };
        let read = |outcome| AuditLogRead {
            since: 0,
            started_at: 0,
            requests: 1,
            received: 0,
            newest: None,
            outcome,
        };
        let (mut stats, mut status) = (CrawlStats::default(), SnapshotStatus::Complete);
        read(AuditLogOutcome::Disabled(error.clone())).count_into(&mut stats, &mut status);
        assert_eq!((stats.errors, status), (0, SnapshotStatus::Complete));
        read(AuditLogOutcome::Failed(error)).count_into(&mut stats, &mut status);
        assert_eq!((stats.errors, status), (1, SnapshotStatus::Partial));
    }

    #[test]
    fn a_refusal_that_is_not_about_audit_logging_is_recorded_without_the_api_text() {
        let error = explained(403, None, "key sk-admin-abc… may not do this");
        let failed = failure(&error);
        assert_eq!(failed.status, Some(403));
        assert!(!failed.message.contains("sk-admin"), "{}", failed.message);
        assert!(failed.message.contains("[audit_log] enabled = false"));
    }
}
