//! `--project` on the read commands: a project named by its id or its name, now or before,
//! so that a typo is an error rather than an empty list that reads as all clear.

use crate::model::ProjectId;
use crate::report;

use super::{CliError, unknown_name};

/// The project `--project` names: a stored project's id or its name, a name it had
/// before, or a project `known` elsewhere (the project of a stored finding or audit-log
/// event, which may be gone from the projects list), by id or by the name given with it.
/// Names are compared as [`same_name`] reads them. A name two projects share is refused
/// with their ids, and a typo is an error, never an empty list that reads as all clear;
/// `unknown_note` is said with that error.
pub(super) fn resolve(
    db: crate::store::Reader<'_>,
    given: &str,
    known: &[(String, Option<String>)],
    unknown_note: Option<&str>,
) -> anyhow::Result<ProjectId> {
    let mut projects: Vec<(String, Option<String>)> = Vec::new();
    let mut stmt = db
        .conn()
        .prepare("SELECT id, name FROM projects ORDER BY id")?;
    for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
        projects.push(row?);
    }
    if projects.iter().chain(known).any(|(id, _)| id == given) {
        return Ok(ProjectId::from(given));
    }
    let named: Vec<&str> = projects
        .iter()
        .filter(|(_, name)| name.as_deref().is_some_and(|n| same_name(n, given)))
        .map(|(id, _)| id.as_str())
        .collect();
    match named.as_slice() {
        [id] => {
            // A project gone from the list may have had the name (a deleted project and a
            // new one named after it): the current one wins, but not silently.
            let mut others: Vec<&str> = known
                .iter()
                .filter(|(other, name)| {
                    name.as_deref().is_some_and(|n| same_name(n, given))
                        && !projects.iter().any(|(p, _)| p == other)
                })
                .map(|(other, _)| other.as_str())
                .collect();
            others.sort_unstable();
            others.dedup();
            if !others.is_empty() {
                eprintln_or_drop!(
                    "note: `{}` is {}'s name now, and was also {}'s, no longer listed: give an \
                     id to choose",
                    report::inert(given),
                    report::inert(id),
                    report::inert(&others.join(", "))
                );
            }
            Ok(ProjectId::from(*id))
        }
        [] if let Some(id) = former_name(db, given, &projects, known)? => Ok(id),
        [] => {
            // The projects found elsewhere are accepted above, so they are suggested too.
            let all = projects.iter().chain(known);
            let mut names: Vec<&str> = all.clone().map(|(id, _)| id.as_str()).collect();
            names.extend(all.filter_map(|(_, name)| name.as_deref()));
            names.sort_unstable();
            names.dedup();
            let note = unknown_note.map(|n| format!(" ({n})")).unwrap_or_default();
            Err(unknown_name(
                format_args!("no project has the id or name `{given}`{note}"),
                given,
                &names,
            ))
        }
        ids => Err(CliError::usage(anyhow::anyhow!(
            "{} projects are named `{given}`{}: give one of their ids ({})",
            ids.len(),
            spelling_note(&projects, ids),
            ids.join(", ")
        ))),
    }
}

/// Whether the stored name `stored` is the name `given`: equal once both are in Unicode's
/// composed form (NFC), or `given` is the name as orgwarden shows it. `café` typed on a
/// keyboard (one `é`) and `cafe\u{301}` sent by the API (an `e` and a combining accent)
/// look the same everywhere they are shown, so neither may be picked over the other in
/// silence: both match, and two projects so named are refused with their ids. A name
/// holding a control or invisible character is shown with escapes (`evil\u{202e}gnp`),
/// which no one can type as the API sent it: pasted from a table or an error's suggestion,
/// the shown form finds it. Look-alike letters of other scripts (a Cyrillic `а`) are
/// different names: the one typed is matched exactly, and tables and errors show ids beside.
pub(super) fn same_name(stored: &str, given: &str) -> bool {
    use unicode_normalization::UnicodeNormalization;
    stored == given || stored.nfc().eq(given.nfc()) || report::inert(stored) == given
}

/// Said when projects `ids` share a name only once normalized: their names are different
/// text that looks the same, which the bare "2 projects are named" would not explain.
fn spelling_note(projects: &[(String, Option<String>)], ids: &[&str]) -> &'static str {
    let mut names = projects
        .iter()
        .filter(|(id, _)| ids.contains(&id.as_str()))
        .map(|(_, name)| name.as_deref());
    let first = names.next().flatten();
    if names.all(|n| n == first) {
        ""
    } else {
        " (written with different Unicode code points that look the same)"
    }
}

/// The most columns of a project's name a note quotes.
const NOTE_NAME_WIDTH: usize = 100;

/// The project that once had the name `given`, which none has now: a project renamed or no
/// longer listed keeps its findings and events, and its old name is what a person may
/// remember. Said on stderr, so the list is not read as the current name's. Several such
/// projects are refused with their ids, as a current name two projects share is.
fn former_name(
    db: crate::store::Reader<'_>,
    given: &str,
    projects: &[(String, Option<String>)],
    known: &[(String, Option<String>)],
) -> anyhow::Result<Option<ProjectId>> {
    // Every name each project had, compared here: SQL's `=` would miss another spelling.
    let mut stmt = db.conn().prepare(
        "SELECT DISTINCT o.resource_id, json_extract(b.raw, '$.name') FROM object o
         JOIN version v ON v.object_id = o.id
         JOIN blob b ON b.id = v.blob_id
         WHERE o.family = ?1 AND typeof(json_extract(b.raw, '$.name')) = 'text'",
    )?;
    let mut ids = Vec::new();
    let rows = stmt.query_map(
        rusqlite::params![crate::model::Family::Projects.view()],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
    )?;
    for row in rows {
        let (id, name) = row?;
        if same_name(&name, given) {
            ids.push(id);
        }
    }
    ids.extend(
        known
            .iter()
            .filter(|(_, name)| name.as_deref().is_some_and(|n| same_name(n, given)))
            .map(|(id, _)| id.clone()),
    );
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [] => Ok(None),
        [id] => {
            let now = match projects.iter().find(|(p, _)| p == id) {
                // A name of thousands of characters would make the note as long.
                Some((_, Some(name))) => format!(
                    "now named `{}`",
                    report::shorten(&report::inert(name), NOTE_NAME_WIDTH)
                ),
                Some((_, None)) => "now without a name".to_owned(),
                None => "no longer listed".to_owned(),
            };
            eprintln_or_drop!(
                "note: no project is named `{}` now; {} was, and is {now}",
                report::inert(given),
                report::inert(id)
            );
            Ok(Some(ProjectId::from(id.as_str())))
        }
        ids => Err(CliError::usage(anyhow::anyhow!(
            "no project is named `{given}` now, and {} were: give one of their ids ({})",
            ids.len(),
            ids.join(", ")
        ))),
    }
}
