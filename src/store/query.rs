//! Running one user- or rule-supplied SQL statement without letting it change anything.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use serde_json::Value;

use super::{Store, StoreError};

/// The most a query's result may hold, in bytes of values and their bookkeeping. Nothing is
/// printed before the last row (a table is fitted to all of them), so without a bound a
/// result without end (`WITH RECURSIVE`) or of huge values (`zeroblob`) grows in memory
/// until the machine runs out, well before a timeout stops it.
pub const MAX_RESULT_BYTES: usize = 256 * 1024 * 1024;

/// The rows of one query, with the column names.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<SqlValue>>,
}

impl QueryResult {
    /// The rows as JSON objects keyed by column name (blobs become hex strings). A name
    /// that repeats gets `:1`, `:2`… after the first, see [`json_keys`].
    pub fn to_json(&self) -> Value {
        let keys = json_keys(&self.columns);
        Value::Array(
            self.rows
                .iter()
                .map(|row| {
                    Value::Object(
                        keys.iter()
                            .cloned()
                            .zip(row.iter().map(sql_to_json))
                            .collect(),
                    )
                })
                .collect(),
        )
    }
}

/// One distinct JSON key per column. A name that repeats (`SELECT * FROM projects p JOIN
/// project_spend s …` has two `project_id`) would otherwise keep only its last column's
/// value: later ones are named as SQLite names the columns of `CREATE TABLE … AS SELECT`,
/// `project_id:1`, `project_id:2`…
pub fn json_keys(columns: &[String]) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    columns
        .iter()
        .map(|name| {
            let mut key = name.clone();
            let mut n = 0_u32;
            while !taken.insert(key.clone()) {
                n += 1;
                key = format!("{name}:{n}");
            }
            key
        })
        .collect()
}

/// One SQLite value as JSON.
pub fn sql_to_json(value: &SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::from(*i),
        SqlValue::Real(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        SqlValue::Text(s) => Value::String(s.clone()),
        SqlValue::Blob(b) => Value::String(hex::encode(b)),
    }
}

/// One SQLite value as display text (NULL is empty).
pub fn sql_to_text(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => String::new(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => f.to_string(),
        SqlValue::Text(s) => s.clone(),
        SqlValue::Blob(b) => hex::encode(b),
    }
}

impl Store {
    /// Runs one statement that must not change the database (SQLite itself decides:
    /// `sqlite3_stmt_readonly`), with positional parameters. A statement that would write
    /// fails with [`StoreError::ReadOnly`]; bad SQL fails with SQLite's message.
    pub fn query(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<QueryResult, StoreError> {
        self.run_query(sql, params, MAX_RESULT_BYTES)
    }

    /// As [`Store::query`], stopped after `timeout` with [`StoreError::TimedOut`]: a
    /// runaway statement (a recursive CTE that never ends) cannot hang the caller.
    pub fn query_within(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
        timeout: Duration,
    ) -> Result<QueryResult, StoreError> {
        self.query_bounded(sql, params, timeout, MAX_RESULT_BYTES)
    }

    /// As [`Store::query_within`], with the result held to `max_bytes` instead of
    /// [`MAX_RESULT_BYTES`].
    pub(super) fn query_bounded(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<QueryResult, StoreError> {
        let handle = self.conn.get_interrupt_handle();
        let (done, finished) = mpsc::channel::<()>();
        let result = std::thread::scope(|scope| {
            scope.spawn(move || {
                // Interrupting after the statement ended is harmless: SQLite ignores an
                // interrupt when no statement runs.
                if let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(timeout) {
                    handle.interrupt();
                }
            });
            let result = self.run_query(sql, params, max_bytes);
            drop(done);
            result
        });
        result.map_err(|e| match e {
            StoreError::Sqlite(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) =>
            {
                StoreError::TimedOut(timeout)
            }
            other => other,
        })
    }

    /// Runs the statement, failing with [`StoreError::TooLarge`] once its rows hold more
    /// than `max_bytes`. SQLite's own limit on one value is lowered to the same bound for
    /// the statement, so it refuses to build a larger one rather than build it first.
    fn run_query(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
        max_bytes: usize,
    ) -> Result<QueryResult, StoreError> {
        let value_limit = i32::try_from(max_bytes).unwrap_or(i32::MAX);
        let previous = self
            .conn
            .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, value_limit)?;
        let result = self.collect_rows(sql, params, max_bytes);
        self.conn
            .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, previous)?;
        result.map_err(|e| match e {
            StoreError::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::TooBig) => {
                StoreError::TooLarge(max_bytes)
            }
            other => other,
        })
    }

    fn collect_rows(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
        max_bytes: usize,
    ) -> Result<QueryResult, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| match e {
            rusqlite::Error::MultipleStatement => {
                StoreError::BadQuery("give exactly one SQL statement (found more than one)".into())
            }
            rusqlite::Error::Empty => StoreError::BadQuery("the SQL is empty".into()),
            other => StoreError::Sqlite(other),
        })?;
        if !stmt.readonly() {
            return Err(StoreError::ReadOnly(
                "the statement would change the database; only SELECT, WITH … SELECT, EXPLAIN and read-only PRAGMA statements are allowed".into(),
            ));
        }
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let width = columns.len();
        let mut rows = Vec::new();
        let mut held = 0_usize;
        let mut cursor = stmt.query(params).map_err(read_only_error)?;
        while let Some(row) = cursor.next().map_err(read_only_error)? {
            let mut values = Vec::with_capacity(width);
            held += size_of::<Vec<SqlValue>>() + width * size_of::<SqlValue>();
            for i in 0..width {
                let value = row.get::<_, SqlValue>(i)?;
                held += match &value {
                    SqlValue::Text(s) => s.len(),
                    SqlValue::Blob(b) => b.len(),
                    _ => 0,
                };
                values.push(value);
            }
            if held > max_bytes {
                return Err(StoreError::TooLarge(max_bytes));
            }
            rows.push(values);
        }
        Ok(QueryResult { columns, rows })
    }
}

/// SQLite's "attempt to write a readonly database" said the way users expect.
fn read_only_error(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ReadOnly) => StoreError::ReadOnly(error.to_string()),
        _ => StoreError::Sqlite(error),
    }
}
