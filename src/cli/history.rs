//! `snapshots`, `diff`, `history` and `query`: read the stored history.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use comfy_table::Table;
use serde_json::Value;

use super::{CliError, Exit, GlobalArgs, unknown_name};
use crate::model::{Family, SnapshotId, SnapshotStatus};
use crate::report::{self, Wrap};
use crate::store::{
    ChangeKind, FieldChange, HISTORY_VIEWS, QueryResult, SnapshotInfo, Store, StoreError, rfc3339,
    sql_to_text,
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
#[command(after_help = query_help())]
pub struct QueryArgs {
    /// A read-only SQL statement over the views (anything that would write is refused)
    pub sql: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

/// Every view `query` can read, from the family catalog, so the list cannot drift from
/// the views the binary creates.
fn query_help() -> String {
    let views: Vec<&str> = Family::ALL
        .iter()
        .map(|f| f.view())
        .chain(HISTORY_VIEWS)
        .collect();
    format!(
        "Views: {}.\n\
         Their columns, and example queries: docs/views.md. Times are Unix seconds; each has \
         a readable `…_utc` companion (created_at_utc).\n\
         Example: orgwarden query \"SELECT id, name, created_at_utc FROM projects\"",
        views.join(", ")
    )
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

/// Runs `orgwarden diff`.
pub fn diff(global: &GlobalArgs, args: &DiffArgs) -> anyhow::Result<Exit> {
    let store = open(global)?;
    let stored = store.list_snapshots()?;
    check_snapshot_id(&stored, args.from)?;
    check_snapshot_id(&stored, args.to)?;
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
                ("change", Wrap::Never),
                ("resource_type", Wrap::Never),
                ("project_id", Wrap::Never),
                ("resource_id", Wrap::Never),
                ("field", Wrap::Never),
                ("old", Wrap::Prose),
                ("new", Wrap::Prose),
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
                write_csv(&mut out, &names(&header), &rows)?;
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
    let mut history = store.history(&args.id)?;
    if history.is_empty() {
        return Err(unknown_object(&store, &args.id)?);
    }
    // The store groups versions per object (a project id names the project and its
    // per-project settings); a person reads one timeline. The sort is stable, so versions
    // of one snapshot keep the store's order.
    history.sort_by_key(|entry| (entry.valid_from, entry.snapshot_id));
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            writeln!(out, "{}", serde_json::to_string_pretty(&history)?)?;
        }
        TableFormat::Csv | TableFormat::Table => {
            let header = [
                ("snapshot", Wrap::Never),
                ("valid_from", Wrap::Never),
                ("change", Wrap::Never),
                ("resource_type", Wrap::Never),
                ("project_id", Wrap::Never),
                ("field", Wrap::Never),
                ("old", Wrap::Prose),
                ("new", Wrap::Prose),
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
                write_csv(&mut out, &names(&header), &rows)?;
            } else {
                writeln!(out, "{}", table(&header, rows))?;
            }
        }
    }
    Ok(Exit::Ok)
}

/// The error for a `history` id that names no stored object, with the closest stored ids.
fn unknown_object(store: &Store, id: &str) -> anyhow::Result<anyhow::Error> {
    let ids = store
        .query("SELECT DISTINCT resource_id FROM object_versions", &[])
        .map_err(CliError::usage)?;
    let known: Vec<String> = text_rows(&ids).into_iter().flatten().collect();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let db = store
        .path()
        .map_or_else(String::new, |p| p.display().to_string());
    Ok(unknown_name(
        format_args!("no object with id `{id}` in {db}"),
        id,
        &known,
    ))
}

/// Fails with exit 2 when `id` is not a stored snapshot, naming the stored ones (ids are
/// numbers: the nearest by spelling would mislead, so the stored range is the hint).
fn check_snapshot_id(list: &[SnapshotInfo], id: Option<i64>) -> anyhow::Result<()> {
    let Some(id) = id else { return Ok(()) };
    if list.iter().any(|s| s.id.0 == id) {
        return Ok(());
    }
    const LISTED: usize = 20;
    let stored = match list {
        [] => "none yet: run `orgwarden snapshot`".to_owned(),
        few if few.len() <= LISTED => few
            .iter()
            .map(|s| s.id.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        many => format!(
            "{} of them from {} to {} (see `orgwarden snapshots`)",
            many.len(),
            many.iter().map(|s| s.id).min().unwrap_or(SnapshotId(0)),
            many.iter().map(|s| s.id).max().unwrap_or(SnapshotId(0))
        ),
    };
    Err(CliError::usage(anyhow::anyhow!(
        "no snapshot {id} in the database; stored snapshots: {stored}"
    )))
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
            let header: Vec<(&str, Wrap)> = result
                .columns
                .iter()
                .map(|c| (c.as_str(), report::wrap_for_column(c)))
                .collect();
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
/// migrated and its views regenerated first (the only write a read command makes).
fn open(global: &GlobalArgs) -> anyhow::Result<Store> {
    let config = global.load_config()?;
    let path = global.db_path(&config);
    match Store::open_read_only(&path) {
        Err(StoreError::NeedsMigration { .. }) => {
            migrate(&path)?;
            Store::open_read_only(&path).map_err(CliError::usage)
        }
        // Written by an older orgwarden: its views lack columns this one documents.
        Ok(store) if store.views_stale() => {
            drop(store);
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

/// The column names of a table header.
fn names<'a>(header: &[(&'a str, Wrap)]) -> Vec<&'a str> {
    header.iter().map(|(name, _)| *name).collect()
}

/// A table in the style every command shares, fitted to the terminal.
fn table(header: &[(&str, Wrap)], rows: Vec<Vec<String>>) -> Table {
    report::new_table(header, rows, report::output_width(), false)
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
