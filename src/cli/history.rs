//! `orgwarden history ID`: every stored version of one object, in time order.

use std::io::Write;

use super::diff::{changed_by_cell, object_cell, with_cell};
use super::read::{TableFormat, change_table, field_rows, names, open, text_rows, write_csv};
use super::{CliError, Exit, GlobalArgs, unknown_name};
use crate::report::Wrap;
use crate::store::{Store, rfc3339};

/// `orgwarden history`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    orgwarden history key_abc\n  \
    orgwarden history proj_abc --format json\n\n\
    Exit codes: 0 done; 2 bad usage or configuration, no database, or no such object.")]
pub struct HistoryArgs {
    /// The object's id (key_…, proj_…, user-…, …)
    pub id: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
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
    store.attribute_history(&mut history)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            writeln!(out, "{}", crate::report::json_text(&history, true)?)?;
        }
        TableFormat::Csv | TableFormat::Table => {
            let header = [
                ("snapshot", Wrap::Never),
                ("valid_from", Wrap::Never),
                ("change", Wrap::Never),
                ("resource_type", Wrap::Never),
                ("project_id", Wrap::Never),
                ("resource_id", Wrap::Never),
                ("field", Wrap::Never),
                ("old", Wrap::Prose),
                ("new", Wrap::Prose),
                ("changed_by", Wrap::Prose),
            ];
            let mut rows = Vec::new();
            for entry in &history {
                let by = changed_by_cell(entry.family, entry.attribution.as_ref());
                // One id can name several objects of one family and project (a role
                // assigned to two users): as in `diff`, the parent tells them apart.
                let base = [
                    entry.snapshot_id.to_string(),
                    rfc3339(entry.valid_from),
                    entry.kind.as_str().to_owned(),
                    entry.family.view().to_owned(),
                    entry.project_id.clone(),
                    object_cell(entry.parent_id.as_deref(), &entry.resource_id),
                ];
                rows.extend(with_cell(
                    field_rows(&base, entry.kind, &entry.changes),
                    &by,
                ));
            }
            if args.format == TableFormat::Csv {
                write_csv(&mut out, &names(&header), &rows)?;
            } else {
                writeln!(out, "{}", change_table(&header, rows))?;
            }
        }
    }
    Ok(Exit::Ok)
}

/// The error for a `history` id that names no stored object, with the closest stored ids.
pub(super) fn unknown_object(store: &Store, id: &str) -> anyhow::Result<anyhow::Error> {
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
