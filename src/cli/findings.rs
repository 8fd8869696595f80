//! `orgwarden findings`: the stored findings, filtered.

use std::io::IsTerminal;

use chrono::Utc;

use crate::findings::{self, Finding, Status};
use crate::model::{ProjectId, Severity};
use crate::report::{self};
use crate::rules::{self, Loaded};

use super::audit::FindingsFormat;
use super::{CliError, Exit, GlobalArgs, unknown_name};

/// Which findings to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum StatusFilter {
    /// Open findings.
    #[default]
    Open,
    /// Resolved findings.
    Resolved,
    /// Exempt findings.
    Exempt,
    /// Every finding.
    All,
}

/// `orgwarden findings`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    orgwarden findings --severity high              open findings, high and critical\n  \
    orgwarden findings --status exempt              what [[exemption]] tables accept\n  \
    orgwarden findings --rule api-key-stale --status all --format csv\n\n\
    Lists what the last audit stored; `orgwarden audit` refreshes it.\n\n\
    Exit codes: 0 done; 2 bad usage or configuration, or no database.")]
pub struct FindingsArgs {
    /// Which findings
    #[arg(long, value_enum, default_value_t = StatusFilter::Open)]
    pub status: StatusFilter,
    /// Only this severity and above (any case)
    #[arg(long, value_enum, ignore_case = true)]
    pub severity: Option<Severity>,
    /// Only this rule
    #[arg(long)]
    pub rule: Option<String>,
    /// Only findings in this project: its id (proj_…) or its exact name (a former name too)
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = FindingsFormat::Table)]
    pub format: FindingsFormat,
}

/// Runs `orgwarden findings`.
pub fn findings(global: &GlobalArgs, args: &FindingsArgs) -> anyhow::Result<Exit> {
    let config = global.load_config()?;
    let db = global.db_path(&config);
    // Like the other read commands: a database an older orgwarden wrote is upgraded first,
    // rather than refused with advice to run a crawl.
    let store = super::read::open_path(&db)?;
    let stored = findings::load(store.reader())?;
    // Rules only add descriptions to SARIF; a broken rule file must not hide findings.
    let loaded = rules::load(&config, Utc::now().date_naive());
    if let Some(rule) = &args.rule {
        check_rule_filter(rule, &loaded, &stored)?;
    }
    let project = match &args.project {
        Some(given) => Some(project_filter(store.reader(), given, &stored)?),
        None => None,
    };
    let mut list: Vec<Finding> = stored
        .into_iter()
        .filter(|f| match args.status {
            StatusFilter::Open => f.status == Status::Open,
            StatusFilter::Resolved => f.status == Status::Resolved,
            StatusFilter::Exempt => f.status == Status::Exempt,
            StatusFilter::All => true,
        })
        .filter(|f| args.severity.is_none_or(|s| f.severity >= s))
        .filter(|f| args.rule.as_deref().is_none_or(|r| f.rule_id.as_str() == r))
        .filter(|f| {
            project
                .as_ref()
                .is_none_or(|p| f.project_id.as_ref() == Some(p))
        })
        .collect();
    findings::sort(&mut list);
    let color = args.format == FindingsFormat::Table
        && crate::report::color_wanted(std::io::stdout().is_terminal());
    print!(
        "{}",
        report::render(args.format.into(), None, &list, &[], &loaded.rules, color)?
    );
    Ok(Exit::Ok)
}

/// The project `--project` names: a stored project's id or its exact name, or the project
/// of a stored finding (a project deleted since keeps its findings' history). A name two
/// projects share is refused with their ids, and a typo is an error, never an empty list
/// that reads as all clear.
fn project_filter(
    db: crate::store::Reader<'_>,
    given: &str,
    stored: &[Finding],
) -> anyhow::Result<ProjectId> {
    let mut projects: Vec<(String, Option<String>)> = Vec::new();
    let mut stmt = db
        .conn()
        .prepare("SELECT id, name FROM projects ORDER BY id")?;
    for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
        projects.push(row?);
    }
    if projects.iter().any(|(id, _)| id == given)
        || stored
            .iter()
            .any(|f| f.project_id.as_ref().is_some_and(|p| p.as_str() == given))
    {
        return Ok(ProjectId::from(given));
    }
    let named: Vec<&str> = projects
        .iter()
        .filter(|(_, name)| name.as_deref() == Some(given))
        .map(|(id, _)| id.as_str())
        .collect();
    match named.as_slice() {
        [id] => Ok(ProjectId::from(*id)),
        [] if let Some(id) = former_name(db, given, &projects)? => Ok(id),
        [] => {
            let mut known: Vec<&str> = projects.iter().map(|(id, _)| id.as_str()).collect();
            known.extend(projects.iter().filter_map(|(_, name)| name.as_deref()));
            known.sort_unstable();
            known.dedup();
            Err(unknown_name(
                format_args!("no project has the id or name `{given}`"),
                given,
                &known,
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
/// longer listed keeps its findings, and its old name is what a person may remember. Said on
/// stderr, so the list is not read as the current name's. Several such projects are
/// refused with their ids, as a current name two projects share is.
fn former_name(
    db: crate::store::Reader<'_>,
    given: &str,
    projects: &[(String, Option<String>)],
) -> anyhow::Result<Option<ProjectId>> {
    let mut stmt = db.conn().prepare(
        "SELECT DISTINCT o.resource_id FROM object o
         JOIN version v ON v.object_id = o.id
         JOIN blob b ON b.id = v.blob_id
         WHERE o.family = ?1 AND json_extract(b.raw, '$.name') = ?2
         ORDER BY o.resource_id",
    )?;
    let ids = stmt
        .query_map(
            rusqlite::params![crate::model::Family::Projects.view(), given],
            |r| r.get::<_, String>(0),
        )?
        .collect::<Result<Vec<_>, _>>()?;
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

/// `--rule` must name a configured rule or one with stored findings (a rule since removed
/// from the configuration still has its history): a typo would otherwise list nothing and
/// read as all clear.
pub(super) fn check_rule_filter(
    rule: &str,
    loaded: &Loaded,
    stored: &[Finding],
) -> anyhow::Result<()> {
    let mut known: Vec<&str> = loaded.rules.rules.iter().map(|r| r.id.as_str()).collect();
    known.extend(stored.iter().map(|f| f.rule_id.as_str()));
    known.sort_unstable();
    known.dedup();
    if known.contains(&rule) {
        return Ok(());
    }
    Err(unknown_name(
        format_args!("no rule has the id `{rule}`"),
        rule,
        &known,
    ))
}
