//! `orgwarden snapshot`: collect the organization into the store.

use super::history::TableFormat;
use super::{Exit, GlobalArgs, not_built};

/// `orgwarden snapshot`
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// Output format of the run summary
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

/// Runs `orgwarden snapshot`.
pub fn snapshot(_global: &GlobalArgs, _args: &SnapshotArgs) -> anyhow::Result<Exit> {
    not_built("snapshot", "issue 3")
}
