//! `daemon`, `schedule` and `init`: the long-running service and its set-up.

use std::path::PathBuf;

use super::{Exit, GlobalArgs, not_built};

/// `orgwarden init`
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the starter configuration
    #[arg(default_value = "orgwarden.toml")]
    pub file: PathBuf,
    /// Overwrite an existing file
    #[arg(long)]
    pub force: bool,
}

/// `orgwarden daemon`
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {}

/// `orgwarden schedule`
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// How many run times to print
    #[arg(long, default_value_t = 5)]
    pub count: usize,
    /// Start after this time (RFC 3339) [default: now]
    #[arg(long)]
    pub from: Option<String>,
}

/// Runs `orgwarden init`.
pub fn init(_global: &GlobalArgs, _args: &InitArgs) -> anyhow::Result<Exit> {
    not_built("init", "issue 6")
}

/// Runs `orgwarden daemon`.
pub fn daemon(_global: &GlobalArgs, _args: &DaemonArgs) -> anyhow::Result<Exit> {
    not_built("daemon", "issue 6")
}

/// Runs `orgwarden schedule`.
pub fn schedule(_global: &GlobalArgs, _args: &ScheduleArgs) -> anyhow::Result<Exit> {
    not_built("schedule", "issue 6")
}
