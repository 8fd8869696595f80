//! `orgwarden findings`: the stored findings, filtered.

use std::io::IsTerminal;

use chrono::Utc;

use crate::findings::{self, Finding, Status};
use crate::model::Severity;
use crate::report::{self};
use crate::rules::{self, Loaded};

use super::audit::FindingsFormat;
use super::{Exit, GlobalArgs, unknown_name};

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
    /// Only findings in this project: its id (proj_…) or its exact name (a former name too;
    /// an accented letter typed precomposed or with a combining accent is the same)
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
        Some(given) => {
            // A project deleted since keeps its findings' history.
            let known: Vec<(String, Option<String>)> = stored
                .iter()
                .filter_map(|f| f.project_id.as_ref())
                .map(|p| (p.as_str().to_owned(), None))
                .collect();
            Some(super::project::resolve(
                store.reader(),
                given,
                &known,
                None,
            )?)
        }
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
