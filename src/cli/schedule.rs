//! `orgwarden schedule`: the next run times of the configured schedule.

use std::io::Write;

use chrono::{DateTime, Utc};

use super::daemon::timing_from_config;
use super::{CliError, Exit, GlobalArgs};

/// `orgwarden schedule`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    orgwarden schedule --count 10\n  \
    orgwarden schedule --from 2027-03-28T00:00:00+01:00 --count 4   across a clock change\n\n\
    Reads [schedule] cron and timezone from orgwarden.toml (--config).\n\n\
    Exit codes: 0 done; 2 bad usage or configuration.")]
pub struct ScheduleArgs {
    /// How many run times to print
    #[arg(long, default_value_t = 5)]
    pub count: usize,
    /// Start after this time (RFC 3339) [default: now]
    #[arg(long)]
    pub from: Option<String>,
}

/// Runs `orgwarden schedule`.
pub fn schedule(global: &GlobalArgs, args: &ScheduleArgs) -> anyhow::Result<Exit> {
    let config = global.load_config()?;
    // A schedule running every second is exactly what this command is used to check.
    super::audit::print_diagnostics(&config.warnings, "")?;
    let schedule = timing_from_config(&config).schedule;
    let from = match &args.from {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                CliError::usage(anyhow::anyhow!(
                    "--from `{text}` is not an RFC 3339 time (like 2026-03-29T00:00:00Z): {e}"
                ))
            })?,
        None => Utc::now(),
    };
    let mut out = std::io::stdout().lock();
    for run in schedule.upcoming(from).take(args.count) {
        writeln!(out, "{}", run.to_rfc3339())?;
    }
    Ok(Exit::Ok)
}
