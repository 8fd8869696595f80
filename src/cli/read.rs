//! What the read-only commands (`snapshots`, `diff`, `history`, `query`) share: opening the
//! database read-only, the table and CSV writers.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use super::{CliError, GlobalArgs};
use crate::report::{self, Wrap};
use crate::store::{ChangeKind, FieldChange, QueryResult, Store, StoreError, sql_to_text};

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

/// Opens the configured database read-only. A database of an older schema is migrated
/// first (the only write a read command makes); one whose views another version wrote is
/// read through this version's views without writing (see [`Store::open_read_only`]).
pub(super) fn open(global: &GlobalArgs) -> anyhow::Result<Store> {
    let config = global.load_config()?;
    open_path(&global.db_path(&config))
}

/// Opens the database at `path` read-only, migrating it first when an older orgwarden
/// wrote it (see [`open`]).
pub(super) fn open_path(path: &Path) -> anyhow::Result<Store> {
    match Store::open_read_only(path) {
        Err(StoreError::NeedsMigration { .. }) => upgrade_then_open(path),
        Err(missing @ StoreError::Missing { .. }) => match demo_beside(path) {
            // Someone who just ran `orgwarden demo` and then `orgwarden findings`.
            Some(demo) => Err(CliError::usage(anyhow::anyhow!(
                "{missing} (`orgwarden demo` wrote {}: add `--db {}` to read it)",
                demo.display(),
                report::shell_quote(&demo)
            ))),
            None => Err(CliError::usage(missing)),
        },
        other => other.map_err(CliError::usage),
    }
}

/// The demo's database in the folder of `path`, when there is one and `path` is not it.
fn demo_beside(path: &Path) -> Option<std::path::PathBuf> {
    let demo = path.with_file_name(super::demo::DEMO_DB);
    (demo != path && demo.is_file()).then_some(demo)
}

/// Upgrades the database, then opens it read-only. When another process holds the writer
/// lock and has meanwhile upgraded it (an `audit` of this version), its upgrade is used.
fn upgrade_then_open(path: &Path) -> anyhow::Result<Store> {
    if let Err(refused) = migrate(path) {
        return Store::open_read_only(path).map_err(|_| refused);
    }
    Store::open_read_only(path).map_err(CliError::usage)
}

/// Brings the database up to this orgwarden's schema and views. That is a write, so it takes
/// the writer lock as `audit` does: a running writer (a daemon of the older version, still
/// holding the lock) would otherwise find its database upgraded under it and fail every run
/// after, while a read command made it happen.
pub(super) fn migrate(path: &Path) -> anyhow::Result<()> {
    let _lock = Store::lock_writer(path)
        .with_context(|| {
            format!(
                "{} was written by an older orgwarden and must be upgraded, which needs the \
                 writer lock (an older daemon still running? restart it with this version)",
                path.display()
            )
        })
        .map_err(CliError::usage)?;
    Store::open(path)
        .map(drop)
        .with_context(|| format!("upgrading {}", path.display()))
        .map_err(CliError::usage)
}

/// One row per changed field (or one row for an added or removed object).
pub(super) fn field_rows<const N: usize>(
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

pub(super) fn text_rows(result: &QueryResult) -> Vec<Vec<String>> {
    result
        .rows
        .iter()
        .map(|row| row.iter().map(sql_to_text).collect())
        .collect()
}

/// The column names of a table header.
pub(super) fn names<'a>(header: &[(&'a str, Wrap)]) -> Vec<&'a str> {
    header.iter().map(|(name, _)| *name).collect()
}

/// A table in the style every command shares, fitted to the terminal (see
/// [`report::new_table`]). Cells hold stored
/// API text, so each is a [`report::table_cell`]: inert, and cut when no one could read it
/// whole.
pub(super) fn table(header: &[(&str, Wrap)], rows: Vec<Vec<String>>) -> String {
    let rows = rows
        .into_iter()
        .map(|row| -> Vec<String> { row.iter().map(|c| report::table_cell(c)).collect() });
    report::new_table(header, rows, report::output_width(), false)
}

/// As [`table`], for the rows of [`field_rows`] under a header with `old` and `new`
/// columns: a value too long to show whole is cut where the cut still shows how the two
/// differ ([`report::shorten_change`]), not where [`table`] would cut each alone.
pub(super) fn change_table(header: &[(&str, Wrap)], rows: Vec<Vec<String>>) -> String {
    let old_at = header.iter().position(|(name, _)| *name == "old");
    let rows = rows
        .into_iter()
        .map(|row| {
            let mut cells: Vec<String> = row.iter().map(|c| report::table_cell(c)).collect();
            if let Some(at) = old_at
                && let Some([old, new, ..]) = row.get(at..)
            {
                let (old, new) = (report::inert(old), report::inert(new));
                let (old, new) = report::shorten_change(&old, &new, report::CELL_MAX_WIDTH);
                cells[at] = old.into_owned();
                cells[at + 1] = new.into_owned();
            }
            cells
        })
        .collect();
    // Each cell is cut already: cut again, a window around a change would lose its end.
    whole_table(header, rows)
}

/// The widest cell [`whole_table`] shows whole. The table renderer counts a column's width in
/// 16 bits: a cell of 65,536 columns or more overflowed it (a panic in a debug build, a
/// garbled table in a release one). Wider cells are cut as [`report::shorten`] cuts;
/// `--format json` and `csv` keep them whole.
const WHOLE_CELL_MAX_WIDTH: usize = 60_000;

/// As [`table`], with every cell whole up to [`WHOLE_CELL_MAX_WIDTH`]: `query` shows what
/// its SQL asked for.
pub(super) fn whole_table(header: &[(&str, Wrap)], rows: Vec<Vec<String>>) -> String {
    let rows = rows.into_iter().map(|row| -> Vec<String> {
        row.iter()
            .map(|c| report::shorten(&report::inert(c), WHOLE_CELL_MAX_WIDTH).into_owned())
            .collect()
    });
    report::new_table(header, rows, report::output_width(), false)
}

pub(super) fn write_csv(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    // The CSV is as often read in a terminal as in a spreadsheet: no cell may carry a
    // control character to either (a line break inside a value is shown as `\n`), nor
    // start a formula (a user's name `=HYPERLINK(…)`). The header too: `query` takes its
    // names from the SQL, which may be pasted from anywhere.
    writer.write_record(header.iter().map(|c| report::csv_cell(c)))?;
    for row in rows {
        writer.write_record(row.iter().map(|c| report::csv_cell(c)))?;
    }
    writer.flush()?;
    Ok(())
}
