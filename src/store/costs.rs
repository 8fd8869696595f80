//! Storing the organization's daily costs (migration 0005): a complete read replaces the
//! days it covered, in the snapshot's transaction; every read, complete or failed, is
//! recorded so the next run knows where to start.

use chrono::{Days, NaiveDate};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::costs::{CostsOutcome, CostsRead};

use super::{Reader, SnapshotWriter, Store, StoreError};

impl Store {
    /// The last day the last complete costs read covered (the "today" of that run), from
    /// which the next read re-reads; `None` when no read was ever complete.
    pub fn costs_settled_from(&self) -> Result<Option<NaiveDate>, StoreError> {
        let end: Option<String> = self
            .conn
            .query_row(
                "SELECT max(end_day) FROM cost_read WHERE outcome = 'complete'",
                [],
                |row| row.get(0),
            )
            .optional()?
            .flatten();
        end.map(|end| {
            let end: NaiveDate = end
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("cost_read.end_day {end:?}: {e}")))?;
            Ok(end.checked_sub_days(Days::new(1)).unwrap_or(end))
        })
        .transpose()
    }
}

impl SnapshotWriter<'_> {
    /// Stores one costs read with this snapshot: a complete read replaces every stored day
    /// of its window (a revised figure replaces the old one, never adds to it); a failed one
    /// is only recorded, and changes nothing.
    pub fn apply_costs(&mut self, read: &CostsRead) -> Result<(), StoreError> {
        let id = self.id().0;
        let tx = self.tx();
        let start = read.window.start.to_string();
        let end = read.window.end.to_string();
        let pages = i64::from(read.pages);
        match &read.outcome {
            CostsOutcome::Failed(error) => {
                tx.execute(
                    "INSERT OR REPLACE INTO cost_read
                     (snapshot_id, start_day, end_day, outcome, requests, http_status, error)
                     VALUES (?1, ?2, ?3, 'failed', ?4, ?5, ?6)",
                    params![id, start, end, pages, error.status, error.message],
                )?;
            }
            CostsOutcome::Complete(rows) => {
                tx.execute(
                    "DELETE FROM cost_day WHERE day >= ?1 AND day < ?2",
                    params![start, end],
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO cost_day (day, project_id, line_item, amount_cents, currency)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (day, project_id, line_item)
                     DO UPDATE SET amount_cents = amount_cents + excluded.amount_cents",
                )?;
                for row in rows.iter().filter(|r| read.window.contains(r.day)) {
                    // Two results for one key (a null and an empty line item) are one
                    // figure: summed within this read, never with an earlier read's.
                    insert.execute(params![
                        row.day.to_string(),
                        row.project_id.as_ref().map_or("", |p| p.as_str()),
                        row.line_item.as_deref().unwrap_or(""),
                        row.amount_cents,
                        row.currency,
                    ])?;
                }
                tx.execute(
                    "INSERT OR REPLACE INTO cost_read
                     (snapshot_id, start_day, end_day, outcome, requests)
                     VALUES (?1, ?2, ?3, 'complete', ?4)",
                    params![id, start, end, pages],
                )?;
            }
        }
        Ok(())
    }
}

/// One row of the `project_spend` view, as `orgwarden spend` shows it. Amounts in cents.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProjectSpend {
    /// The project.
    pub project_id: String,
    /// Its name.
    pub name: Option<String>,
    /// `active` or `archived`.
    pub status: Option<String>,
    /// Spent this month (UTC), in cents.
    pub month_to_date: i64,
    /// The hard spend limit, in cents.
    pub hard_limit: Option<i64>,
    /// Month to date as a percentage of the hard limit.
    pub pct_of_limit: Option<f64>,
    /// The highest spend-alert threshold, in cents.
    pub alert_threshold: Option<i64>,
    /// Month to date as a percentage of that threshold.
    pub pct_of_alert: Option<f64>,
    /// The mean daily cost of the 14 days before today, in cents.
    pub daily_mean_14d: i64,
    /// Yesterday's cost, in cents.
    pub yesterday: i64,
    /// The currency.
    pub currency: String,
}

/// Every row of `project_spend`, the highest share of its limit first (projects without a
/// limit after, by month to date).
pub fn project_spend(reader: Reader<'_>) -> Result<Vec<ProjectSpend>, StoreError> {
    let mut stmt = reader.conn().prepare(
        "SELECT project_id, name, status, month_to_date, hard_limit, pct_of_limit,
                alert_threshold, pct_of_alert, daily_mean_14d, yesterday, currency
         FROM project_spend
         ORDER BY pct_of_limit IS NULL, pct_of_limit DESC, month_to_date DESC, project_id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(ProjectSpend {
            project_id: row.get(0)?,
            name: row.get(1)?,
            status: row.get(2)?,
            month_to_date: row.get(3)?,
            hard_limit: row.get(4)?,
            pct_of_limit: row.get(5)?,
            alert_threshold: row.get(6)?,
            pct_of_alert: row.get(7)?,
            daily_mean_14d: row.get(8)?,
            yesterday: row.get(9)?,
            currency: row.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The `org_spend` view's one row, in the shape of a project's (`project_id` is
/// `organization`, no name or status).
pub fn org_spend(reader: Reader<'_>) -> Result<ProjectSpend, StoreError> {
    Ok(reader.conn().query_row(
        "SELECT month_to_date, hard_limit, pct_of_limit, alert_threshold, pct_of_alert,
                daily_mean_14d, yesterday, currency
         FROM org_spend",
        [],
        |row| {
            Ok(ProjectSpend {
                project_id: crate::model::ORGANIZATION.to_owned(),
                name: None,
                status: None,
                month_to_date: row.get(0)?,
                hard_limit: row.get(1)?,
                pct_of_limit: row.get(2)?,
                alert_threshold: row.get(3)?,
                pct_of_alert: row.get(4)?,
                daily_mean_14d: row.get(5)?,
                yesterday: row.get(6)?,
                currency: row.get(7)?,
            })
        },
    )?)
}

/// How far the spend views can be trusted: the day they count as today, whether the newest
/// finished snapshot read the costs completely, and when a read last was complete. Without a
/// complete read the views give 0 for want of data, which is no figure of spend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CostsStatus {
    /// The UTC day the views count as today (`YYYY-MM-DD`): the newest finished snapshot's.
    pub today: String,
    /// What the newest finished snapshot's costs read gave: `complete` or `failed`; `None`
    /// when it read none (costs are off, or the whole snapshot failed).
    pub outcome: Option<String>,
    /// Why that read failed.
    pub error: Option<String>,
    /// Whether that snapshot failed as a whole (it then read no costs, whatever `[spend]`
    /// says).
    pub snapshot_failed: bool,
    /// Whether no snapshot has finished yet (the first was stopped part-way, or none ran).
    pub no_snapshot: bool,
    /// When the newest complete read was made (its snapshot's start, Unix seconds).
    pub last_complete_at: Option<i64>,
}

/// The [`CostsStatus`] of the stored costs.
pub fn costs_status(reader: Reader<'_>) -> Result<CostsStatus, StoreError> {
    let conn = reader.conn();
    let today: String = conn.query_row(
        &format!("SELECT {}", super::views::SPEND_TODAY),
        [],
        |row| row.get(0),
    )?;
    let newest: Option<(Option<String>, Option<String>, bool)> = conn
        .query_row(
            "SELECT r.outcome, r.error, s.status = 'failed' FROM snapshot s
             LEFT JOIN cost_read r ON r.snapshot_id = s.id
             WHERE s.status <> 'running' ORDER BY s.id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let no_snapshot = newest.is_none();
    let (outcome, error, snapshot_failed) = newest.unwrap_or((None, None, false));
    let last_complete_at: Option<i64> = conn.query_row(
        "SELECT max(s.started_at) FROM cost_read r JOIN snapshot s ON s.id = r.snapshot_id
         WHERE r.outcome = 'complete'",
        [],
        |row| row.get(0),
    )?;
    Ok(CostsStatus {
        today,
        outcome,
        error,
        snapshot_failed,
        no_snapshot,
        last_complete_at,
    })
}

/// What the digest's spend chart draws: the `project_spend` rows, and when the newest
/// snapshot could not read the costs, the time of the complete read they come from.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DigestSpend {
    /// Month to date per project, as of the newest complete costs read.
    pub rows: Vec<ProjectSpend>,
    /// When that read was made, if it is not the newest snapshot's (its read failed).
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
}

/// `project_spend` read inside an open transaction, for the digest's chart. The chart is an
/// extra: a database whose views cannot be read gives no chart, not a failed digest. Nor
/// does one whose costs were never read completely, or last read completely in an earlier
/// month: the views then count nothing of this month, and its 0 of every limit is no figure.
pub fn project_spend_in(conn: &rusqlite::Connection) -> DigestSpend {
    let reader = Reader { conn };
    let figures = costs_status(reader).and_then(|status| {
        let Some(last) = status
            .last_complete_at
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        else {
            return Ok(DigestSpend::default());
        };
        let as_of = if status.outcome.as_deref() == Some("complete") {
            None
        } else if status.today.get(..7) == Some(last.format("%Y-%m").to_string().as_str()) {
            Some(last)
        } else {
            return Ok(DigestSpend::default());
        };
        Ok(DigestSpend {
            rows: project_spend(reader)?,
            as_of,
        })
    });
    match figures {
        Ok(figures) => figures,
        Err(e) => {
            tracing::debug!("the digest's spend chart is left out: {e}");
            DigestSpend::default()
        }
    }
}
