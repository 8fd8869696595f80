//! `orgwarden query`: read-only SQL over the documented views.

use std::io::Write;

use super::read::{TableFormat, open, text_rows, whole_table, write_csv};
use super::{CliError, Exit, GlobalArgs};
use crate::report::{self, Wrap};

/// `orgwarden query`
#[derive(Debug, clap::Args)]
#[command(after_help = query_help())]
pub struct QueryArgs {
    /// A read-only SQL statement over the views (anything that would write is refused)
    pub sql: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
    /// How long the query may run before it is stopped ("45s", "2m")
    #[arg(long, default_value = "30s")]
    pub timeout: crate::duration::Duration,
}

/// Every view `query` can read, from the store's own list of the views it creates, so the
/// help cannot drift from the database.
pub(super) fn query_help() -> String {
    let views = crate::store::view_names();
    format!(
        "Views: {}.\n\
         Their columns, and example queries: docs/views.md. Times are Unix seconds; each has \
         a readable `…_utc` companion (created_at_utc).\n\
         Example: orgwarden query \"SELECT id, name, created_at_utc FROM projects\"",
        views.join(", ")
    )
}

/// Runs `orgwarden query`.
pub fn query(global: &GlobalArgs, args: &QueryArgs) -> anyhow::Result<Exit> {
    let store = open(global)?;
    let result = store
        .query_within(&args.sql, &[], args.timeout.to_std())
        .map_err(|e| match e {
            // Running out of time is not a usage error: the statement was valid.
            e @ crate::store::StoreError::TimedOut(_) => anyhow::Error::new(e),
            e => CliError::usage(e),
        })?;
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            writeln!(out, "{}", report::json_text(&result.to_json(), true)?)?;
        }
        TableFormat::Csv => {
            let header: Vec<&str> = result.columns.iter().map(String::as_str).collect();
            write_csv(&mut out, &header, &text_rows(&result))?;
        }
        TableFormat::Table => {
            // Column names come from the SQL, which may be pasted from anywhere: shown as
            // inert as the cells.
            let names: Vec<String> = result
                .columns
                .iter()
                .map(|c| report::inert(c).into_owned())
                .collect();
            let header: Vec<(&str, Wrap)> = names
                .iter()
                .zip(&result.columns)
                .map(|(shown, c)| (shown.as_str(), report::wrap_for_column(c)))
                .collect();
            let count = result.rows.len();
            if !header.is_empty() {
                writeln!(out, "{}", whole_table(&header, text_rows(&result)))?;
            }
            writeln!(out, "({count} row{})", if count == 1 { "" } else { "s" })?;
        }
    }
    Ok(Exit::Ok)
}
