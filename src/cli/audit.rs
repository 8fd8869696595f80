//! `audit`, `demo`, `findings` and `rules`: evaluate the rules and report findings.

use std::path::PathBuf;

use crate::model::Severity;

use super::{Exit, GlobalArgs, not_built};

/// Output format of findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum FindingsFormat {
    /// Grouped by severity, for people (colour only on a terminal).
    #[default]
    Table,
    /// One JSON document.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
    /// A Markdown report.
    Markdown,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
}

/// `orgwarden audit`
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = FindingsFormat::Table)]
    pub format: FindingsFormat,
    /// Exit 1 when a non-exempt open finding is at or above this severity
    #[arg(long, value_enum)]
    pub fail_on: Option<Severity>,
    /// Evaluate the latest stored snapshot without calling the API
    #[arg(long)]
    pub offline: bool,
    /// Send notifications for what changed
    #[arg(long)]
    pub notify: bool,
    /// With --notify: render the notifications but send nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `orgwarden demo`
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = FindingsFormat::Table)]
    pub format: FindingsFormat,
}

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
pub struct FindingsArgs {
    /// Which findings
    #[arg(long, value_enum, default_value_t = StatusFilter::Open)]
    pub status: StatusFilter,
    /// Only this severity and above
    #[arg(long, value_enum)]
    pub severity: Option<Severity>,
    /// Only this rule
    #[arg(long)]
    pub rule: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = FindingsFormat::Table)]
    pub format: FindingsFormat,
}

/// `orgwarden rules …`
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Every rule: id, severity, resource type, params, source file
    List,
    /// Check every rule and config file; report every problem at once
    Check,
    /// Run each rule's fixtures through the real store and evaluator
    Test {
        /// Only these rule ids
        ids: Vec<String>,
        /// Extra fixture folders
        #[arg(long)]
        fixtures: Vec<PathBuf>,
    },
    /// A rule's description, params, remediation and compiled SQL
    Explain {
        /// The rule id
        id: String,
    },
}

/// Runs `orgwarden audit`.
pub fn audit(_global: &GlobalArgs, _args: &AuditArgs) -> anyhow::Result<Exit> {
    not_built("audit", "issue 4")
}

/// Runs `orgwarden demo`.
pub fn demo(_global: &GlobalArgs, _args: &DemoArgs) -> anyhow::Result<Exit> {
    not_built("demo", "issue 4")
}

/// Runs `orgwarden findings`.
pub fn findings(_global: &GlobalArgs, _args: &FindingsArgs) -> anyhow::Result<Exit> {
    not_built("findings", "issue 4")
}

/// Runs `orgwarden rules …`.
pub fn rules(_global: &GlobalArgs, _cmd: &RulesCommand) -> anyhow::Result<Exit> {
    not_built("rules", "issue 4")
}
