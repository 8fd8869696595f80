//! `--project` on the read commands: a project named by its id or its name, now or before,
//! so that a typo is an error rather than an empty list that reads as all clear.

use crate::model::ProjectId;
use crate::report;

use super::{CliError, unknown_name};

/// The project `--project` names: a stored project's id or its exact name, a name it had
/// before, or a project `known` elsewhere (the project of a stored finding or audit-log
/// event, which may be gone from the projects list), by id or by the name given with it. A
/// name two projects share is refused with their ids, and a typo is an error, never an
/// empty list that reads as all clear; `unknown_note` is said with that error.
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
        .filter(|(_, name)| name.as_deref() == Some(given))
        .map(|(id, _)| id.as_str())
        .collect();
    match named.as_slice() {
        [id] => {
            // A project gone from the list may have had the name (a deleted project and a
            // new one named after it): the current one wins, but not silently.
            let mut others: Vec<&str> = known
                .iter()
                .filter(|(other, name)| {
                    name.as_deref() == Some(given) && !projects.iter().any(|(p, _)| p == other)
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
            "{} projects are named `{given}`: give one of their ids ({})",
            ids.len(),
            ids.join(", ")
        ))),
    }
}

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
    let mut stmt = db.conn().prepare(
        "SELECT DISTINCT o.resource_id FROM object o
         JOIN version v ON v.object_id = o.id
         JOIN blob b ON b.id = v.blob_id
         WHERE o.family = ?1 AND json_extract(b.raw, '$.name') = ?2
         ORDER BY o.resource_id",
    )?;
    let mut ids = stmt
        .query_map(
            rusqlite::params![crate::model::Family::Projects.view(), given],
            |r| r.get::<_, String>(0),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    ids.extend(
        known
            .iter()
            .filter(|(_, name)| name.as_deref() == Some(given))
            .map(|(id, _)| id.clone()),
    );
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [] => Ok(None),
        [id] => {
            let now = match projects.iter().find(|(p, _)| p == id) {
                Some((_, Some(name))) => format!("now named `{}`", report::inert(name)),
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
