//! `orgwarden notify …`: notification channels.

use super::{Exit, GlobalArgs, not_built};

/// `orgwarden notify …`
#[derive(Debug, clap::Subcommand)]
pub enum NotifyCommand {
    /// Send a test message through the configured channels
    Test,
}

/// Runs `orgwarden notify …`.
pub fn notify(_global: &GlobalArgs, _cmd: &NotifyCommand) -> anyhow::Result<Exit> {
    not_built("notify test", "issue 5")
}
