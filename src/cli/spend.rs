//! `orgwarden spend`: this month's spend per project against its hard limit and alerts,
//! from the last snapshot's costs (the `project_spend` and `org_spend` views).

use std::io::Write;

use clap::ValueEnum;
use serde_json::{Value, json};

use super::read::{names, open, table, write_csv};
use super::{Exit, GlobalArgs};
use crate::costs::cents_text;
use crate::report::{Wrap, inert, md};
use crate::store::{CostsStatus, ProjectSpend, costs_status, org_spend, project_spend};

/// Output formats of `orgwarden spend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum SpendFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document: `{"organization": {…}, "projects": [{…}], "costs": {…}}`; the
    /// organization's row has the projects' fields, with `project_id` null; `costs` says
    /// which costs read the amounts come from.
    Json,
    /// CSV with a header row, one row per project.
    Csv,
    /// A Markdown table.
    Markdown,
}

/// `orgwarden spend`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    orgwarden spend --top 10\n  \
    orgwarden spend --format json\n\n\
    Exit codes: 0 done; 2 bad usage or configuration, or no database.")]
pub struct SpendArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = SpendFormat::Table)]
    pub format: SpendFormat,
    /// Show only the first N projects (the highest share of their limit first)
    #[arg(long)]
    pub top: Option<usize>,
}

const HEADER: [(&str, Wrap); 9] = [
    ("project_id", Wrap::Never),
    ("name", Wrap::Prose),
    ("month_to_date", Wrap::Never),
    ("hard_limit", Wrap::Never),
    ("pct_of_limit", Wrap::Never),
    ("alert_threshold", Wrap::Never),
    ("pct_of_alert", Wrap::Never),
    ("yesterday", Wrap::Never),
    ("daily_mean_14d", Wrap::Never),
];

/// Runs `orgwarden spend`.
pub fn spend(global: &GlobalArgs, args: &SpendArgs) -> anyhow::Result<Exit> {
    let store = open(global)?;
    let mut projects = project_spend(store.reader())?;
    if let Some(top) = args.top {
        projects.truncate(top);
    }
    let org = org_spend(store.reader())?;
    let status = costs_status(store.reader())?;
    let note = costs_note(&status);
    let mut out = std::io::stdout().lock();
    match args.format {
        SpendFormat::Json => {
            // The organization is no project: its row keeps the projects' shape, with the
            // id null as in the `org_spend` view, so no reader takes it for a project.
            let mut org_doc = spend_json(&org);
            org_doc["project_id"] = Value::Null;
            let doc = json!({
                "organization": org_doc,
                "projects": projects.iter().map(spend_json).collect::<Vec<_>>(),
                "costs": costs_json(&status),
            });
            writeln!(out, "{}", crate::report::json_text(&doc, true)?)?;
        }
        SpendFormat::Csv => {
            // The CSV stays one table; the word on the costs goes beside it.
            if let Some(note) = &note {
                eprintln_or_drop!("{note}");
            }
            write_csv(&mut out, &names(&HEADER), &rows(&projects))?;
        }
        SpendFormat::Table => {
            if let Some(note) = &note {
                writeln!(out, "{note}")?;
            }
            writeln!(out, "{}", org_line(&org))?;
            if !projects.is_empty() {
                writeln!(out, "{}", table(&HEADER, rows(&projects)))?;
            }
        }
        SpendFormat::Markdown => {
            writeln!(out, "# Spend this month\n")?;
            if let Some(note) = &note {
                writeln!(out, "{}\n", md(note))?;
            }
            writeln!(out, "{}\n", md(&org_line(&org)))?;
            writeln!(out, "| {} |", names(&HEADER).join(" | "))?;
            writeln!(out, "|{}", "---|".repeat(HEADER.len()))?;
            for row in rows(&projects) {
                // Cut as the table's cells are: a pull-request comment has a size limit.
                let cells: Vec<String> = row
                    .iter()
                    .map(|c| md(&crate::report::table_cell(c)))
                    .collect();
                writeln!(out, "| {} |", cells.join(" | "))?;
            }
        }
    }
    Ok(Exit::Ok)
}

/// What to say before the figures when the stored costs cannot vouch for them: without a
/// complete read every amount is 0 for want of data, and after a failed one the amounts are
/// those of an older read, while "this month" is counted to the newest snapshot's day.
fn costs_note(status: &CostsStatus) -> Option<String> {
    if status.outcome.as_deref() == Some("complete") {
        return None;
    }
    let why = match (status.outcome.as_deref(), status.error.as_deref()) {
        (Some(_), Some(error)) => format!("the newest costs read failed: {}", inert(error)),
        (Some(_), None) => "the newest costs read failed".to_owned(),
        // Nor is it when no snapshot has finished: the first may have been stopped part-way.
        (None, _) if status.no_snapshot => {
            "no snapshot has finished yet: run `orgwarden snapshot`".to_owned()
        }
        // A snapshot that failed whole read nothing: `[spend]` is not to blame.
        (None, _) if status.snapshot_failed => {
            "the newest snapshot failed and read nothing".to_owned()
        }
        (None, _) => "the newest snapshot read no costs: is `[spend] enabled` off?".to_owned(),
    };
    Some(match status.last_complete_at {
        None => format!(
            "Costs were never read completely ({why}): the amounts below are 0 for want of \
             data, not spend."
        ),
        Some(at) => format!(
            "The amounts below are those of the costs read of {} ({why}): the spend since \
             then is missing.",
            time(at)
        ),
    })
}

/// The costs behind the figures, for `--format json`.
fn costs_json(status: &CostsStatus) -> Value {
    json!({
        "today": status.today,
        "read": status.outcome,
        "error": status.error,
        "last_complete_read": status.last_complete_at.map(time),
    })
}

fn time(t: i64) -> String {
    crate::store::rfc3339(chrono::DateTime::from_timestamp(t, 0).unwrap_or_default())
}

/// `organization: 1234.56 USD this month (hard limit 2000.00, 61.7%; alert at 1500.00, 82.3%)`.
fn org_line(org: &ProjectSpend) -> String {
    let mut line = format!(
        "organization: {} {} this month",
        cents_text(org.month_to_date),
        org.currency
    );
    let limit = org
        .hard_limit
        .map(|l| format!("hard limit {}, {}", cents_text(l), pct(org.pct_of_limit)));
    let alert = org
        .alert_threshold
        .map(|a| format!("alert at {}, {}", cents_text(a), pct(org.pct_of_alert)));
    let parts: Vec<String> = [limit, alert].into_iter().flatten().collect();
    if parts.is_empty() {
        line.push_str(" (no hard limit, no spend alert)");
    } else {
        line.push_str(&format!(" ({})", parts.join("; ")));
    }
    line
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(String::new, |p| format!("{p:.1}%"))
}

fn rows(projects: &[ProjectSpend]) -> Vec<Vec<String>> {
    let money = |cents: Option<i64>| cents.map_or_else(String::new, cents_text);
    projects
        .iter()
        .map(|p| {
            vec![
                p.project_id.clone(),
                p.name.clone().unwrap_or_default(),
                cents_text(p.month_to_date),
                money(p.hard_limit),
                pct(p.pct_of_limit),
                money(p.alert_threshold),
                pct(p.pct_of_alert),
                cents_text(p.yesterday),
                cents_text(p.daily_mean_14d),
            ]
        })
        .collect()
}

/// A spend row as JSON: every amount in cents and as readable text (`…_usd`).
fn spend_json(p: &ProjectSpend) -> Value {
    let money = |cents: Option<i64>| cents.map(cents_text);
    json!({
        "project_id": p.project_id,
        "name": p.name,
        "status": p.status,
        "currency": p.currency,
        "month_to_date": p.month_to_date,
        "month_to_date_usd": cents_text(p.month_to_date),
        "hard_limit": p.hard_limit,
        "hard_limit_usd": money(p.hard_limit),
        "pct_of_limit": p.pct_of_limit,
        "alert_threshold": p.alert_threshold,
        "alert_threshold_usd": money(p.alert_threshold),
        "pct_of_alert": p.pct_of_alert,
        "yesterday": p.yesterday,
        "yesterday_usd": cents_text(p.yesterday),
        "daily_mean_14d": p.daily_mean_14d,
        "daily_mean_14d_usd": cents_text(p.daily_mean_14d),
    })
}
