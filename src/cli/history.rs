//! `snapshots`, `diff`, `history` and `query`: read the stored history.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

use super::{CliError, Exit, GlobalArgs};
use crate::model::{SnapshotId, SnapshotStatus};
use crate::store::{
    ChangeKind, FieldChange, QueryResult, SnapshotInfo, Store, StoreError, rfc3339, sql_to_text,
};

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
    /// The older snapshot id [default: the newest non-failed one before TO]
    pub from: Option<i64>,
    /// The newer snapshot id [default: the newest non-failed one]
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
pub fn snapshots(global: &GlobalArgs, args: &SnapshotsArgs) -> anyhow::Result<Exit> {
    let store = open(global)?;
    let list = store.list_snapshots()?;
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            let all: Vec<Value> = list.iter().map(SnapshotInfo::to_json).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        }
        TableFormat::Csv | TableFormat::Table => {
            let header = [
                "id",
                "started_at",
                "finished_at",
                "status",
                "org",
                "requests",
                "errors",
                "retries",
                "rate_limited",
                "scopes_failed",
                "changes",
                "objects",
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
                write_csv(&mut out, &header, &rows)?;
            } else if rows.is_empty() {
                writeln!(out, "no snapshots yet: run `orgwarden snapshot`")?;
            } else {
                writeln!(out, "{}", table(&header, rows))?;
            }
        }
    }
    Ok(Exit::Ok)
}

/// Runs `orgwarden diff`.
pub fn diff(global: &GlobalArgs, args: &DiffArgs) -> anyhow::Result<Exit> {
    let store = open(global)?;
    let diff = store
        .diff(args.from.map(SnapshotId), args.to.map(SnapshotId))
        .map_err(CliError::usage)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            let value = serde_json::json!({
                "from": diff.from.to_json(),
                "to": diff.to.to_json(),
                "changes": diff.entries,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        }
        TableFormat::Csv | TableFormat::Table => {
            let header = [
                "change",
                "resource_type",
                "project_id",
                "resource_id",
                "field",
                "old",
                "new",
            ];
            let mut rows = Vec::new();
            for entry in &diff.entries {
                let id = match &entry.parent_id {
                    Some(parent) => format!("{parent}/{}", entry.resource_id),
                    None => entry.resource_id.clone(),
                };
                let base = [
                    entry.kind.as_str().to_owned(),
                    entry.family.view().to_owned(),
                    entry.project_id.clone(),
                    id,
                ];
                rows.extend(field_rows(&base, entry.kind, &entry.changes));
            }
            if args.format == TableFormat::Csv {
                write_csv(&mut out, &header, &rows)?;
            } else {
                writeln!(
                    out,
                    "snapshot {} ({}) → {} ({}): {} object(s) differ",
                    diff.from.id,
                    rfc3339(diff.from.started_at),
                    diff.to.id,
                    rfc3339(diff.to.started_at),
                    diff.entries.len()
                )?;
                if !rows.is_empty() {
                    writeln!(out, "{}", table(&header, rows))?;
                }
                // Objects of unread scopes were carried forward: say so, since a diff
                // across such a snapshot cannot show what changed in them.
                let (low, high) = if diff.from.id <= diff.to.id {
                    (diff.from.id, diff.to.id)
                } else {
                    (diff.to.id, diff.from.id)
                };
                for s in store.list_snapshots()? {
                    if s.id <= low || s.id > high {
                        continue;
                    }
                    if s.status == SnapshotStatus::Failed {
                        writeln!(out, "note: snapshot {} failed and changed nothing", s.id)?;
                    } else if s.scopes_failed > 0 {
                        writeln!(
                            out,
                            "note: snapshot {} was partial: {} scope(s) could not be read and were carried forward",
                            s.id, s.scopes_failed
                        )?;
                    }
                }
            }
        }
    }
    Ok(Exit::Ok)
}

/// Runs `orgwarden history`.
pub fn history(global: &GlobalArgs, args: &HistoryArgs) -> anyhow::Result<Exit> {
    let store = open(global)?;
    let history = store.history(&args.id)?;
    if history.is_empty() {
        return Err(CliError::usage(anyhow::anyhow!(
            "no object with id `{}` in {}",
            args.id,
            store
                .path()
                .map_or_else(String::new, |p| p.display().to_string())
        )));
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            writeln!(out, "{}", serde_json::to_string_pretty(&history)?)?;
        }
        TableFormat::Csv | TableFormat::Table => {
            let header = [
                "snapshot",
                "valid_from",
                "change",
                "resource_type",
                "project_id",
                "field",
                "old",
                "new",
            ];
            let mut rows = Vec::new();
            for entry in &history {
                let base = [
                    entry.snapshot_id.to_string(),
                    rfc3339(entry.valid_from),
                    entry.kind.as_str().to_owned(),
                    entry.family.view().to_owned(),
                    entry.project_id.clone(),
                ];
                rows.extend(field_rows(&base, entry.kind, &entry.changes));
            }
            if args.format == TableFormat::Csv {
                write_csv(&mut out, &header, &rows)?;
            } else {
                writeln!(out, "{}", table(&header, rows))?;
            }
        }
    }
    Ok(Exit::Ok)
}

/// Runs `orgwarden query`.
pub fn query(global: &GlobalArgs, args: &QueryArgs) -> anyhow::Result<Exit> {
    let store = open(global)?;
    let result = store.query(&args.sql, &[]).map_err(CliError::usage)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            writeln!(out, "{}", serde_json::to_string_pretty(&result.to_json())?)?;
        }
        TableFormat::Csv => {
            let header: Vec<&str> = result.columns.iter().map(String::as_str).collect();
            write_csv(&mut out, &header, &text_rows(&result))?;
        }
        TableFormat::Table => {
            let header: Vec<&str> = result.columns.iter().map(String::as_str).collect();
            let count = result.rows.len();
            if !header.is_empty() {
                writeln!(out, "{}", table(&header, text_rows(&result)))?;
            }
            writeln!(out, "({count} row{})", if count == 1 { "" } else { "s" })?;
        }
    }
    Ok(Exit::Ok)
}

/// Opens the configured database read-only. A database written by an older orgwarden is
/// migrated first (that is the only write a read command makes).
fn open(global: &GlobalArgs) -> anyhow::Result<Store> {
    let config = global.load_config()?;
    let path = global.db_path(&config);
    match Store::open_read_only(&path) {
        Err(StoreError::NeedsMigration { .. }) => {
            migrate(&path)?;
            Store::open_read_only(&path).map_err(CliError::usage)
        }
        other => other.map_err(CliError::usage),
    }
}

fn migrate(path: &Path) -> anyhow::Result<()> {
    Store::open(path)
        .map(drop)
        .with_context(|| format!("upgrading {}", path.display()))
        .map_err(CliError::usage)
}

/// One row per changed field (or one row for an added or removed object).
fn field_rows<const N: usize>(
    base: &[String; N],
    kind: ChangeKind,
    changes: &[FieldChange],
) -> Vec<Vec<String>> {
    if changes.is_empty() || kind != ChangeKind::Changed {
        let mut row = base.to_vec();
        row.extend([String::new(), String::new(), String::new()]);
        return vec![row];
    }
    changes
        .iter()
        .map(|change| {
            let mut row = base.to_vec();
            row.push(change.path.clone());
            row.push(show(change.old.as_ref()));
            row.push(show(change.new.as_ref()));
            row
        })
        .collect()
}

/// A JSON value for a table cell: strings bare, absent as `(absent)`.
fn show(value: Option<&Value>) -> String {
    match value {
        None => "(absent)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn text_rows(result: &QueryResult) -> Vec<Vec<String>> {
    result
        .rows
        .iter()
        .map(|row| row.iter().map(sql_to_text).collect())
        .collect()
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_HORIZONTAL_ONLY)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    table
}

fn write_csv(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(header)?;
    for row in rows {
        writer.write_record(row)?;
    }
    writer.flush()?;
    Ok(())
}
