//! `snapshots`, `diff`, `history` and `query`: read the stored history.

use super::{Exit, GlobalArgs, not_built};

/// Output format of the store's read commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum TableFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON.
    Json,
    /// CSV with a header row.
    Csv,
}

/// `orgwarden snapshots`
#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

/// `orgwarden diff`
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The older snapshot id [default: the one before TO]
    pub from: Option<i64>,
    /// The newer snapshot id [default: the latest]
    pub to: Option<i64>,
    /// Output format
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

/// `orgwarden history`
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The object's id (key_…, proj_…, user-…, …)
    pub id: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

/// `orgwarden query`
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// A read-only SQL statement over the views (see README, "Views")
    pub sql: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

/// Runs `orgwarden snapshots`.
pub fn snapshots(_global: &GlobalArgs, _args: &SnapshotsArgs) -> anyhow::Result<Exit> {
    not_built("snapshots", "issue 3")
}

/// Runs `orgwarden diff`.
pub fn diff(_global: &GlobalArgs, _args: &DiffArgs) -> anyhow::Result<Exit> {
    not_built("diff", "issue 3")
}

/// Runs `orgwarden history`.
pub fn history(_global: &GlobalArgs, _args: &HistoryArgs) -> anyhow::Result<Exit> {
    not_built("history", "issue 3")
}

/// Runs `orgwarden query`.
pub fn query(_global: &GlobalArgs, _args: &QueryArgs) -> anyhow::Result<Exit> {
    not_built("query", "issue 3")
}
