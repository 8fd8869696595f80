//! `orgwarden diff`: objects added, removed and changed between two snapshots.

use std::io::Write;

use super::read::{TableFormat, change_table, field_rows, names, open, write_csv};
use super::{CliError, Exit, GlobalArgs};
use crate::audit_log::explain::Attribution;
use crate::model::{Family, SnapshotId, SnapshotStatus};
use crate::report::Wrap;
use crate::store::{SnapshotInfo, rfc3339};

/// `orgwarden diff`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    orgwarden diff                                  the last two snapshots that did not fail\n  \
    orgwarden diff 12 15 --format json              snapshot 12 against 15 (`orgwarden snapshots` lists them)\n\n\
    Exit codes: 0 done; 2 bad usage or configuration, no database, or no such snapshot.")]
pub struct DiffArgs {
    /// The older snapshot id [default: the newest non-failed one before TO]
    pub from: Option<i64>,
    /// The newer snapshot id [default: the newest non-failed one]
    pub to: Option<i64>,
    /// Output format
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

/// Runs `orgwarden diff`.
pub fn diff(global: &GlobalArgs, args: &DiffArgs) -> anyhow::Result<Exit> {
    let store = open(global)?;
    let stored = store.list_snapshots()?;
    check_snapshot_id(&stored, args.from)?;
    check_snapshot_id(&stored, args.to)?;
    let mut diff = store
        .diff(args.from.map(SnapshotId), args.to.map(SnapshotId))
        .map_err(CliError::usage)?;
    store.attribute_diff(&mut diff)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            let unread: Vec<serde_json::Value> = unread_between(&store, &diff)?
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.id.0,
                        "status": s.status.as_str(),
                        "scopes_failed": s.scopes_failed,
                    })
                })
                .collect();
            let value = serde_json::json!({
                "from": diff.from.to_json(),
                "to": diff.to.to_json(),
                "changes": diff.entries,
                "not_fully_read": unread,
            });
            writeln!(out, "{}", crate::report::json_text(&value, true)?)?;
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
                ("changed_by", Wrap::Prose),
            ];
            let mut rows = Vec::new();
            for entry in &diff.entries {
                let by = changed_by_cell(entry.family, entry.attribution.as_ref());
                let id = object_cell(entry.parent_id.as_deref(), &entry.resource_id);
                let base = [
                    entry.kind.as_str().to_owned(),
                    entry.family.view().to_owned(),
                    entry.project_id.clone(),
                    id,
                ];
                rows.extend(with_cell(
                    field_rows(&base, entry.kind, &entry.changes),
                    &by,
                ));
            }
            let mut notes = Vec::new();
            for s in unread_between(&store, &diff)? {
                if s.status == SnapshotStatus::Failed {
                    notes.push(format!(
                        "note: snapshot {} failed and changed nothing",
                        s.id
                    ));
                } else if s.scopes_failed > 0 {
                    notes.push(format!(
                        "note: snapshot {} was partial: {} scope(s) could not be read and were carried forward",
                        s.id, s.scopes_failed
                    ));
                }
            }
            if args.format == TableFormat::Csv {
                write_csv(&mut out, &names(&header), &rows)?;
                // The CSV stays one table; what it cannot show goes beside it, as `events`
                // and `spend` do.
                for note in notes {
                    eprintln_or_drop!("{note}");
                }
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
                    writeln!(out, "{}", change_table(&header, rows))?;
                }
                for note in notes {
                    writeln!(out, "{note}")?;
                }
            }
        }
    }
    Ok(Exit::Ok)
}

/// The snapshots after the older side and up to the newer one that failed or could not
/// read some scopes: objects of unread scopes were carried forward, so a diff across such
/// a snapshot cannot show what changed in them, and says so.
fn unread_between(
    store: &crate::store::Store,
    diff: &crate::store::SnapshotDiff,
) -> anyhow::Result<Vec<crate::store::SnapshotInfo>> {
    let (low, high) = if diff.from.id <= diff.to.id {
        (diff.from.id, diff.to.id)
    } else {
        (diff.to.id, diff.from.id)
    };
    Ok(store
        .list_snapshots()?
        .into_iter()
        .filter(|s| s.id > low && s.id <= high)
        .filter(|s| s.status == SnapshotStatus::Failed || s.scopes_failed > 0)
        .collect())
}

/// The `changed_by` cell of a change: the audit log's events (API text, made inert) or
/// why there are none.
pub(super) fn changed_by_cell(family: Family, attribution: Option<&Attribution>) -> String {
    attribution.map_or_else(String::new, |a| {
        crate::report::inert(&a.describe(family)).into_owned()
    })
}

/// The `resource_id` cell of an object: `parent/id` for a role assignment, whose role id
/// alone is shared by every user or group holding that role.
pub(super) fn object_cell(parent_id: Option<&str>, resource_id: &str) -> String {
    match parent_id {
        Some(parent) => format!("{parent}/{resource_id}"),
        None => resource_id.to_owned(),
    }
}

/// `rows` with `cell` appended to each.
pub(super) fn with_cell(rows: Vec<Vec<String>>, cell: &str) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|mut row| {
            row.push(cell.to_owned());
            row
        })
        .collect()
}

/// Fails with exit 2 when `id` is not a stored snapshot, naming the stored ones (ids are
/// numbers: the nearest by spelling would mislead, so the stored range is the hint).
pub(super) fn check_snapshot_id(list: &[SnapshotInfo], id: Option<i64>) -> anyhow::Result<()> {
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
