//! The organization's daily costs: which days a run reads (`GET /organization/costs`, one-day
//! buckets grouped by project and line item), the read itself, and the rows it gives the
//! store.
//!
//! Costs are read incrementally. The first run reads the current month and
//! `[spend] lookback` before it; later runs re-read only the last `settle_days` closed days
//! and today, since a closed day's figure can still be revised, and the store *replaces*
//! the days a read covered. A run after a gap (or after failed reads) starts from the last
//! day the last complete read could not yet call settled.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use serde_json::Value;

use crate::client::{AdminClient, AnswerBound, ClientError, Queue, off_the_workers};
use crate::config::SpendConfig;
use crate::model::{CrawlStats, ProjectId, ScopeError, SnapshotStatus};
use crate::store::{Store, StoreError};

/// The API path of the costs read.
pub const COSTS_PATH: &str = "/organization/costs";

/// The most daily buckets one costs page may hold (the spec's `limit` maximum).
pub const MAX_BUCKETS_PER_PAGE: u32 = 180;

/// The days asked for per page. A day of a large organization is a large bucket (1,000
/// projects with 20 line items each are about 4 MB of JSON), so a page of 180 would break
/// `[openai] max_response_bytes`; a week per page keeps every page well under it while a
/// steady-state run (the settling days and today) still takes one request.
pub const BUCKETS_PER_PAGE: u32 = 7;

/// The most pages one costs read follows: more than any window needs (the longest,
/// [`crate::config::MAX_SPEND_DAYS`] of lookback plus a month, is 57 pages of a week), so a
/// server that pages on forever fails the read instead of holding the run.
const MAX_PAGES: u32 = 64;

/// The days one costs read asks for: `start` up to, not including, `end` (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostWindow {
    /// The first day read.
    pub start: NaiveDate,
    /// The first day not read.
    pub end: NaiveDate,
}

impl CostWindow {
    /// How many days it covers.
    pub fn days(self) -> u32 {
        u32::try_from((self.end - self.start).num_days()).unwrap_or(0)
    }

    /// Whether `day` is inside it.
    pub fn contains(self, day: NaiveDate) -> bool {
        self.start <= day && day < self.end
    }
}

/// The window a run reads on `today` (UTC). `settled_from` is the last day the previous
/// complete read covered (its "today"), `None` when no read was ever complete.
pub fn plan(today: NaiveDate, settled_from: Option<NaiveDate>, spend: &SpendConfig) -> CostWindow {
    let end = today.checked_add_days(Days::new(1)).unwrap_or(today);
    // After a complete read: everything from the last day that could still change, and
    // the settling days before today (a run after a gap also re-reads the days it missed).
    // Before any: the current month and the lookback before it.
    let start = if let Some(last) = settled_from {
        last.min(today)
            .checked_sub_days(Days::new(u64::from(spend.settle_days)))
            .unwrap_or(last)
    } else {
        let month = today.with_day(1).unwrap_or(today);
        month
            .checked_sub_days(Days::new(u64::from(spend.lookback_days)))
            .unwrap_or(month)
    };
    CostWindow { start, end }
}

/// One day's cost of one project and line item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayCost {
    /// The bucket's UTC day.
    pub day: NaiveDate,
    /// The project; `None` for costs the API attributes to none.
    pub project_id: Option<ProjectId>,
    /// The line item (`"gpt-5, input"`), when the API names one.
    pub line_item: Option<String>,
    /// The amount in cents of `currency`, rounded once, half away from zero.
    pub amount_cents: i64,
    /// The currency, upper case (`USD`).
    pub currency: String,
}

/// The rows of a read, held compact until the store takes them: a first run reads the
/// current month and the lookback before it (up to 66 days) for every project and line
/// item, hundreds of thousands of rows at 1,000 projects, in which the same few project
/// ids, line items and currencies repeat. A row is 32 bytes here; as a [`DayCost`] it was
/// about 190 (110,000 rows of the benchmark's 1,000 projects took 19 MiB).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CostRows {
    rows: Vec<Row>,
    /// Each distinct project id, line item and currency, once; rows name them by index.
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
    /// What `names` and `index` hold: each name twice, with its boxes.
    name_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Row {
    day: NaiveDate,
    project: Option<u32>,
    line_item: Option<u32>,
    currency: u32,
    amount_cents: i64,
}

impl CostRows {
    /// Adds `cost` at the end.
    pub fn push(&mut self, cost: DayCost) {
        let row = Row {
            day: cost.day,
            project: cost.project_id.map(|p| self.name(p.0)),
            line_item: cost.line_item.map(|l| self.name(l)),
            currency: self.name(cost.currency),
            amount_cents: cost.amount_cents,
        };
        self.rows.push(row);
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// About the memory these rows take: the rows and each distinct name.
    pub fn held_bytes(&self) -> u64 {
        let rows = self.rows.len().saturating_mul(std::mem::size_of::<Row>());
        u64::try_from(rows)
            .unwrap_or(u64::MAX)
            .saturating_add(self.name_bytes)
    }

    /// Each row, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = DayCost> + '_ {
        let name = |i: u32| -> String {
            usize::try_from(i)
                .ok()
                .and_then(|i| self.names.get(i))
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        self.rows.iter().map(move |row| DayCost {
            day: row.day,
            project_id: row.project.map(|p| ProjectId(name(p))),
            line_item: row.line_item.map(name),
            amount_cents: row.amount_cents,
            currency: name(row.currency),
        })
    }

    fn name(&mut self, text: String) -> u32 {
        if let Some(i) = self.index.get(text.as_str()) {
            return *i;
        }
        // More distinct names than a u32 counts cannot come from pages bounded in size
        // and number; saturating keeps this total.
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let text = text.into_boxed_str();
        let boxed = text.len() + std::mem::size_of::<Box<str>>();
        self.name_bytes = self
            .name_bytes
            .saturating_add(2 * u64::try_from(boxed).unwrap_or(u64::MAX / 2));
        self.names.push(text.clone());
        self.index.insert(text, i);
        i
    }
}

impl FromIterator<DayCost> for CostRows {
    fn from_iter<I: IntoIterator<Item = DayCost>>(iter: I) -> Self {
        let mut rows = CostRows::default();
        rows.extend(iter);
        rows
    }
}

impl Extend<DayCost> for CostRows {
    fn extend<I: IntoIterator<Item = DayCost>>(&mut self, iter: I) {
        for cost in iter {
            self.push(cost);
        }
    }
}

/// What a costs read gave.
#[derive(Clone, Debug, PartialEq)]
pub enum CostsOutcome {
    /// Every day of the window was read.
    Complete(CostRows),
    /// The read failed; nothing of the window is replaced.
    Failed(ScopeError),
}

/// One costs read: the window it asked for, how many requests it took and what it gave.
#[derive(Clone, Debug, PartialEq)]
pub struct CostsRead {
    /// The days asked for.
    pub window: CostWindow,
    /// Pages requested (retries are counted by the client).
    pub pages: u32,
    /// The costs, or why there are none.
    pub outcome: CostsOutcome,
}

/// The window a snapshot starting at `started_at` reads, when `client` was given `[spend]`
/// settings with costs enabled; `None` otherwise.
pub fn window(
    client: &AdminClient,
    store: &Store,
    started_at: DateTime<Utc>,
) -> Result<Option<CostWindow>, StoreError> {
    let Some(spend) = client.spend().filter(|s| s.enabled) else {
        return Ok(None);
    };
    let settled_from = store.costs_settled_from()?;
    Ok(Some(plan(started_at.date_naive(), settled_from, &spend)))
}

/// [`read`] when there is a window to read.
pub async fn read_window(client: &AdminClient, window: Option<CostWindow>) -> Option<CostsRead> {
    match window {
        Some(window) => Some(read(client, window).await),
        None => None,
    }
}

impl CostsRead {
    /// Counts a failed read into the crawl's figures: one more failed read, and a complete
    /// snapshot becomes partial (what it stored of costs is older than the rest).
    pub fn count_into(&self, stats: &mut CrawlStats, status: &mut SnapshotStatus) {
        if let CostsOutcome::Failed(error) = &self.outcome {
            tracing::warn!("{}", error.message);
            stats.errors += 1;
            if *status == SnapshotStatus::Complete {
                *status = SnapshotStatus::Partial;
            }
        }
    }
}

/// The Unix seconds of a day's UTC midnight.
pub fn midnight(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp())
}

/// Reads `window` through `client`, following `next_page` to the end.
pub async fn read(client: &AdminClient, window: CostWindow) -> CostsRead {
    let mut pages = 0;
    let mut rows = CostRows::default();
    let mut page: Option<String> = None;
    // The rows count against the same budget as the lists being read: 64 pages, each
    // under every bound on one answer, could otherwise hold gigabytes of distinct names.
    let mut held = client.held_text().hold();
    let outcome = loop {
        pages += 1;
        if pages > MAX_PAGES {
            break CostsOutcome::Failed(ScopeError {
                status: None,
                message: format!(
                    "GET {COSTS_PATH}: the costs go on past {MAX_PAGES} pages; stopping \
                     instead of reading them forever"
                ),
            });
        }
        let limit = window.days().clamp(1, BUCKETS_PER_PAGE);
        let mut query: Vec<(&str, String)> = vec![
            ("start_time", midnight(window.start).to_string()),
            ("end_time", midnight(window.end).to_string()),
            ("bucket_width", "1d".to_owned()),
            ("group_by[]", "project_id".to_owned()),
            ("group_by[]", "line_item".to_owned()),
            ("limit", limit.to_string()),
        ];
        if let Some(cursor) = &page {
            query.push(("page", cursor.clone()));
        }
        let queue = Queue::for_page(page.is_none());
        let answer = match client
            .get_with_query(
                &["organization", "costs"],
                &query,
                queue,
                AnswerBound::Costs,
            )
            .await
        {
            // Off the async workers, as the client parses it: a page is megabytes (a
            // month of 200 projects is 18,600 results), and turning it into rows, then
            // dropping it, is work of the same order as the parse that held paced
            // requests back on a worker.
            Ok(body) => {
                let cursor = page.clone();
                off_the_workers(COSTS_PATH, move || {
                    parse_page(&body, window, limit, cursor.as_deref())
                })
                .await
            }
            Err(error) => Err(error),
        };
        match answer {
            Ok((found, next)) => {
                let before = rows.held_bytes();
                rows.extend(found);
                if let Err(over) = held.grow(rows.held_bytes().saturating_sub(before)) {
                    break CostsOutcome::Failed(ScopeError {
                        status: None,
                        message: format!("GET {COSTS_PATH}: {}", AdminClient::overdrawn(over)),
                    });
                }
                match next {
                    Some(next) => page = Some(next),
                    None => break CostsOutcome::Complete(rows),
                }
            }
            Err(error) => {
                break CostsOutcome::Failed(ScopeError {
                    status: error.status(),
                    message: error.to_string(),
                });
            }
        }
    };
    CostsRead {
        window,
        pages,
        outcome,
    }
}

/// One costs page (envelope C): its rows and the next page's cursor. Buckets outside the
/// window, or more buckets than asked for, make the page malformed: stored, they would
/// replace days this read did not ask about.
pub fn parse_page(
    body: &Value,
    window: CostWindow,
    limit: u32,
    cursor: Option<&str>,
) -> Result<(Vec<DayCost>, Option<String>), ClientError> {
    let malformed = |message: String| ClientError::Malformed {
        path: COSTS_PATH.to_owned(),
        message,
    };
    let buckets = body
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no `data` array".into()))?;
    if buckets.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
        return Err(malformed(format!(
            "the page holds {} buckets but `limit={limit}` was asked",
            buckets.len()
        )));
    }
    let has_more = body
        .get("has_more")
        .and_then(Value::as_bool)
        .ok_or_else(|| malformed("no boolean `has_more`".into()))?;
    let next = if has_more {
        let next = body
            .get("next_page")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| malformed("`has_more` is true but no `next_page`".into()))?;
        if Some(next) == cursor {
            return Err(malformed(format!(
                "the cursor `{next}` did not advance; stopping instead of looping"
            )));
        }
        Some(next.to_owned())
    } else {
        None
    };
    let mut rows = Vec::new();
    for (i, bucket) in buckets.iter().enumerate() {
        let start = bucket
            .get("start_time")
            .and_then(Value::as_i64)
            .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
            .ok_or_else(|| malformed(format!("data[{i}] has no `start_time`")))?;
        let day = start.date_naive();
        if !window.contains(day) {
            return Err(malformed(format!(
                "data[{i}] is the bucket of {day}, outside the days asked for ({} to {})",
                window.start, window.end
            )));
        }
        let results = bucket
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(format!("data[{i}] has no `results` array")))?;
        for (j, result) in results.iter().enumerate() {
            let row = day_cost(day, result)
                .map_err(|m| malformed(format!("data[{i}].results[{j}]: {m}")))?;
            rows.extend(row);
        }
    }
    Ok((rows, next))
}

/// One result's cost, or `None` for a result that carries none: the spec makes `amount`
/// and both its fields optional (only `object` is required), so a result without an
/// amount, or with one of no value or a zero value and no currency, adds nothing rather
/// than failing the whole read. A value in no stated currency cannot be stored as any
/// sum, so that one is refused.
fn day_cost(day: NaiveDate, result: &Value) -> Result<Option<DayCost>, String> {
    let Some(amount) = result.get("amount").filter(|a| !a.is_null()) else {
        return Ok(None);
    };
    if !amount.is_object() {
        return Err("`amount` is not an object".into());
    }
    let value = match amount.get("value") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) if v.is_number() => v,
        Some(_) => return Err("`amount.value` is not a number".into()),
    };
    let amount_cents = cents(&value.to_string()).ok_or("`amount.value` is out of range")?;
    let currency = match amount.get("currency") {
        None | Some(Value::Null) if amount_cents == 0 => return Ok(None),
        currency => currency
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty() && c.len() <= 8 && c.chars().all(|c| c.is_ascii_alphabetic()))
            .ok_or("`amount.currency` is not a currency code")?
            .to_ascii_uppercase(),
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        match result.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{key}` is not a string")),
        }
    };
    Ok(Some(DayCost {
        day,
        project_id: text("project_id")?.map(ProjectId),
        line_item: text("line_item")?,
        amount_cents,
        currency,
    }))
}

/// A decimal number's value in hundredths, rounded half away from zero, read from its text
/// (`12.345`, `-0.5`, `1e-3`) so that no binary fraction rounds it first. `None` when it is
/// not a number or too large for cents in an `i64`.
pub fn cents(text: &str) -> Option<i64> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.trim_start_matches('+').parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes())
        .map(|b| b.is_ascii_digit().then(|| b - b'0'))
        .collect::<Option<_>>()?;
    // Where the point falls once the value is in cents.
    let point = i64::try_from(whole.len()).ok()? + i64::from(exponent) + 2;
    // Past 20 places beyond the last digit, any digit but 0 overflows cents in an i64; zeros
    // alone would only make the loop below run a digit at a time up to the exponent
    // (`0e2000000000`: two billion turns).
    if point > i64::try_from(digits.len()).ok()? + 20 {
        return digits.iter().all(|&d| d == 0).then_some(0);
    }
    let mut value: i64 = 0;
    let mut index: i64 = 0;
    while index < point {
        let digit = usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0);
        value = value.checked_mul(10)?.checked_add(i64::from(digit))?;
        index += 1;
    }
    let next = usize::try_from(point)
        .ok()
        .and_then(|i| digits.get(i))
        .copied()
        .unwrap_or(0);
    if point >= 0 && next >= 5 {
        value = value.checked_add(1)?;
    }
    Some(if negative { -value } else { value })
}

/// Cents as the readable decimal text of the spend views (`123456` → `"1234.56"`).
pub fn cents_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn cost_rows_give_back_every_row_in_order_each_name_kept_once() {
        let cost =
            |d: &str, project: Option<&str>, item: Option<&str>, cents, currency: &str| DayCost {
                day: day(d),
                project_id: project.map(|p| ProjectId(p.to_owned())),
                line_item: item.map(str::to_owned),
                amount_cents: cents,
                currency: currency.to_owned(),
            };
        let given = vec![
            cost(
                "2026-11-01",
                Some("proj_a"),
                Some("gpt-5, input"),
                120,
                "USD",
            ),
            cost(
                "2026-11-01",
                Some("proj_b"),
                Some("gpt-5, input"),
                -3,
                "USD",
            ),
            cost("2026-11-02", None, None, 0, "EUR"),
            cost(
                "2026-11-02",
                Some("proj_a"),
                Some("gpt-5, output"),
                i64::MAX,
                "USD",
            ),
        ];
        let rows: CostRows = given.clone().into_iter().collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows.iter().collect::<Vec<_>>(), given);
        // proj_a, gpt-5 input, USD, proj_b, EUR, gpt-5 output: six names for 4 rows.
        assert_eq!(rows.names.len(), 6);
    }

    #[test]
    fn amounts_round_to_cents_once_from_their_decimal_text() {
        assert_eq!(cents("12.5"), Some(1250));
        assert_eq!(
            cents("0.285"),
            Some(29),
            "0.285 * 100.0 is 28.499… in binary"
        );
        assert_eq!(cents("0.284999"), Some(28));
        assert_eq!(cents("-0.005"), Some(-1));
        assert_eq!(cents("1e-3"), Some(0));
        assert_eq!(cents("5e-3"), Some(1));
        assert_eq!(cents("1.5e2"), Some(15_000));
        assert_eq!(cents("0"), Some(0));
        assert_eq!(cents("7"), Some(700));
        assert_eq!(cents("1e30"), None);
        assert_eq!(cents("0e2000000000"), Some(0));
        assert_eq!(cents("-0.000e2147483000"), Some(0));
        assert_eq!(cents("1e2000000000"), None);
        assert_eq!(cents("92233720368547758.07"), Some(i64::MAX));
        assert_eq!(cents("92233720368547758.08"), None);
        assert_eq!(cents("abc"), None);
        assert_eq!(cents(""), None);
        assert_eq!(cents_text(123_456), "1234.56");
        assert_eq!(cents_text(-5), "-0.05");
    }

    #[test]
    fn first_run_reads_the_month_and_the_lookback_before_it() {
        let spend = SpendConfig::default();
        let w = plan(day("2026-12-03"), None, &spend);
        assert_eq!(w.start, day("2026-10-27"));
        assert_eq!(w.end, day("2026-12-04"));
    }

    #[test]
    fn later_runs_reread_only_the_settling_days_and_today() {
        let spend = SpendConfig::default();
        let w = plan(day("2026-12-03"), Some(day("2026-12-03")), &spend);
        assert_eq!((w.start, w.end), (day("2026-11-30"), day("2026-12-04")));
        assert_eq!(w.days(), 4);
        // After a gap, from the last day the last complete read could not call settled.
        let w = plan(day("2026-12-03"), Some(day("2026-11-20")), &spend);
        assert_eq!(w.start, day("2026-11-17"));
    }

    /// A costs API that pages on forever, each page 20 results of distinct 1,500-byte
    /// project ids: every page far under `max_response_bytes` (64 KiB here), the 64 pages
    /// a read follows 6 MB of distinct names.
    async fn endless_costs_of_distinct_projects() -> String {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let served = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new().fallback(move || {
            let served = Arc::clone(&served);
            async move {
                let n = served.fetch_add(1, Ordering::Relaxed);
                let results: Vec<Value> = (0..20)
                    .map(|i| {
                        serde_json::json!({"object": "organization.costs.result",
                            "amount": {"value": 1.0, "currency": "usd"}, "line_item": "x",
                            "project_id": format!("proj_{n}_{i}_{}", "p".repeat(1_500))})
                    })
                    .collect();
                axum::Json(serde_json::json!({"object": "page", "has_more": true,
                    "next_page": format!("c{n}"), "data": [{"object": "bucket",
                    "start_time": midnight(day("2026-12-01")),
                    "end_time": midnight(day("2026-12-02")), "results": results}]}))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/v1")
    }

    #[tokio::test]
    async fn a_costs_read_holding_more_than_the_client_allows_fails_before_its_page_bound() {
        let base = endless_costs_of_distinct_projects().await;
        let opts = crate::client::ClientOptions {
            max_response_bytes: crate::size::ByteSize::from_bytes(64 << 10),
            ..Default::default()
        };
        let client =
            AdminClient::new(&base, "sk-admin-costs-test".to_owned().into(), opts).expect("client");
        let window = CostWindow {
            start: day("2026-12-01"),
            end: day("2026-12-02"),
        };
        let read = read(&client, window).await;
        let CostsOutcome::Failed(error) = &read.outcome else {
            panic!("read: {:?}", read.outcome);
        };
        assert!(
            error
                .message
                .contains("past 1.0 MiB (16 × `[openai] max_response_bytes`)"),
            "{}",
            error.message
        );
        assert!(read.pages < 20, "stopped after {} pages", read.pages);
        assert_eq!(client.held_text().held(), 0, "given back with the read");
    }

    #[test]
    fn a_page_with_a_bucket_outside_the_window_is_refused() {
        let window = CostWindow {
            start: day("2026-12-01"),
            end: day("2026-12-03"),
        };
        let bucket = |d: &str| {
            serde_json::json!({"object": "bucket", "start_time": midnight(day(d)),
                "end_time": midnight(day(d)) + 86_400, "results": [{
                    "object": "organization.costs.result",
                    "amount": {"value": 1.25, "currency": "usd"},
                    "line_item": "gpt-5, input", "project_id": "proj_a"}]})
        };
        let page = serde_json::json!({"object": "page", "data": [bucket("2026-12-01")],
            "has_more": false, "next_page": null});
        let (rows, next) = parse_page(&page, window, 2, None).unwrap();
        assert_eq!(next, None);
        assert_eq!(rows[0].amount_cents, 125);
        assert_eq!(rows[0].currency, "USD");
        let outside = serde_json::json!({"object": "page", "data": [bucket("2026-11-30")],
            "has_more": false, "next_page": null});
        let err = parse_page(&outside, window, 2, None).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        let stuck = serde_json::json!({"object": "page", "data": [],
            "has_more": true, "next_page": "p1"});
        assert!(parse_page(&stuck, window, 2, Some("p1")).is_err());
    }

    #[test]
    fn a_result_the_spec_allows_without_an_amount_adds_nothing_instead_of_failing_the_read() {
        let window = CostWindow {
            start: day("2026-12-01"),
            end: day("2026-12-02"),
        };
        // `CostsResult` requires only `object`; `amount`, `amount.value` and
        // `amount.currency` are each optional.
        let page = serde_json::json!({"object": "page", "data": [{"object": "bucket",
            "start_time": midnight(day("2026-12-01")), "end_time": midnight(day("2026-12-02")),
            "results": [
                {"object": "organization.costs.result"},
                {"object": "organization.costs.result", "amount": null},
                {"object": "organization.costs.result", "amount": {}},
                {"object": "organization.costs.result", "amount": {"value": 0}},
                {"object": "organization.costs.result", "amount": {"currency": "usd"}},
                {"object": "organization.costs.result", "amount": {"value": 0.5, "currency": "usd"},
                 "project_id": "proj_a", "line_item": null}]}],
            "has_more": false, "next_page": null});
        let (rows, _) = parse_page(&page, window, 1, None).unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].amount_cents, 50);
        // A sum in no stated currency cannot be stored as any: still refused.
        let unpriced = serde_json::json!({"object": "page", "data": [{"object": "bucket",
            "start_time": midnight(day("2026-12-01")), "end_time": midnight(day("2026-12-02")),
            "results": [{"object": "organization.costs.result", "amount": {"value": 2.5}}]}],
            "has_more": false, "next_page": null});
        let err = parse_page(&unpriced, window, 1, None).unwrap_err();
        assert!(err.to_string().contains("currency"), "{err}");
    }
}
