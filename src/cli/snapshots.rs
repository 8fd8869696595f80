//! `orgwarden snapshots`: the stored snapshots.

use std::io::Write;

use serde_json::Value;

use super::read::{TableFormat, names, open, table, write_csv};
use super::{Exit, GlobalArgs};
use crate::report::Wrap;
use crate::store::{SnapshotInfo, rfc3339};

/// `orgwarden snapshots`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    orgwarden snapshots\n  \
    orgwarden snapshots --format json\n\n\
    Exit codes: 0 done; 2 bad usage or configuration, or no database.")]
pub struct SnapshotsArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

/// Runs `orgwarden snapshots`.
pub fn snapshots(global: &GlobalArgs, args: &SnapshotsArgs) -> anyhow::Result<Exit> {
    let store = open(global)?;
    let list = store.list_snapshots()?;
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            let all: Vec<Value> = list.iter().map(SnapshotInfo::to_json).collect();
            writeln!(out, "{}", crate::report::json_text(&all, true)?)?;
        }
        TableFormat::Csv | TableFormat::Table => {
            let header = [
                ("id", Wrap::Never),
                ("started_at", Wrap::Never),
                ("finished_at", Wrap::Never),
                ("status", Wrap::Never),
                ("org", Wrap::Never),
                ("requests", Wrap::Never),
                ("errors", Wrap::Never),
                ("retries", Wrap::Never),
                ("rate_limited", Wrap::Never),
                ("scopes_failed", Wrap::Never),
                ("changes", Wrap::Never),
                ("objects", Wrap::Never),
            ];
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        s.id.to_string(),
                        rfc3339(s.started_at),
                        rfc3339(s.finished_at),
                        s.status.to_string(),
                        s.org.clone(),
                        s.stats.requests.to_string(),
                        s.stats.errors.to_string(),
                        s.stats.retries.to_string(),
                        s.stats.rate_limited.to_string(),
                        s.scopes_failed.to_string(),
                        s.changes.to_string(),
                        s.objects.values().sum::<u64>().to_string(),
                    ]
                })
                .collect();
            if args.format == TableFormat::Csv {
                write_csv(&mut out, &names(&header), &rows)?;
            } else if rows.is_empty() {
                writeln!(out, "no snapshots yet: run `orgwarden snapshot`")?;
            } else {
                writeln!(out, "{}", table(&header, rows))?;
            }
        }
    }
    Ok(Exit::Ok)
}
