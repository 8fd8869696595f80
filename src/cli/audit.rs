//! `audit`, `demo`, `findings` and `rules`: evaluate the rules and report findings.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use comfy_table::{Table, presets};

use crate::config::Config;
use crate::findings::{self, Finding, RunOutcome, Status};
use crate::model::{CrawlStats, Severity, SnapshotStatus};
use crate::report::{self, Format};
use crate::rules::{self, Loaded, fixtures};
use crate::sim::Org;
use crate::store::{SnapshotInfo, Store, StoreError};

use super::{CliError, Exit, GlobalArgs, not_built};

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

impl From<FindingsFormat> for Format {
    fn from(f: FindingsFormat) -> Format {
        match f {
            FindingsFormat::Table => Format::Table,
            FindingsFormat::Json => Format::Json,
            FindingsFormat::Jsonl => Format::Jsonl,
            FindingsFormat::Csv => Format::Csv,
            FindingsFormat::Markdown => Format::Markdown,
            FindingsFormat::Sarif => Format::Sarif,
        }
    }
}

/// Loads the configuration; a parse error is shown cargo-style, pointing into the file.
fn load_config(global: &GlobalArgs) -> anyhow::Result<Config> {
    global.load_config().map_err(|e| {
        let parse_error = e
            .downcast_ref::<CliError>()
            .and_then(|c| c.error.downcast_ref::<crate::config::ConfigError>())
            .and_then(crate::diagnostics::from_config_error);
        match parse_error {
            Some(d) => {
                eprint!("{}", d.render(std::io::stderr().is_terminal()));
                CliError::usage(anyhow!(
                    "the configuration file has errors; nothing was done"
                ))
            }
            None => e,
        }
    })
}

/// Loads the configuration, the rules and the exemptions; every problem is printed to
/// stderr and errors end the command with exit 2.
fn load_rules(global: &GlobalArgs) -> anyhow::Result<(Config, Loaded)> {
    let config = load_config(global)?;
    let loaded = rules::load(&config, Utc::now().date_naive());
    let d = &loaded.diagnostics;
    if !d.items().is_empty() {
        eprint!("{}", d.render(std::io::stderr().is_terminal()));
    }
    if d.has_errors() {
        return Err(CliError::usage(anyhow!(
            "{} error(s) in rule or configuration files; nothing was evaluated",
            d.error_count()
        )));
    }
    Ok((config, loaded))
}

fn store_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Locked { .. } | StoreError::Missing { .. } => CliError::usage(e),
        other => anyhow::Error::new(other),
    }
}

/// The exit code of an audit: 3 when the snapshot is not complete (it cannot vouch for
/// anything), else 1 when an open finding is at or above `fail_on`.
pub fn exit_code(snapshot: &SnapshotInfo, findings: &[Finding], fail_on: Option<Severity>) -> Exit {
    if snapshot.status != SnapshotStatus::Complete {
        return Exit::Incomplete;
    }
    let failing = fail_on.is_some_and(|level| {
        findings
            .iter()
            .any(|f| f.status == Status::Open && f.severity >= level)
    });
    if failing { Exit::Findings } else { Exit::Ok }
}

fn print_outcome(
    outcome: &RunOutcome,
    loaded: &Loaded,
    format: FindingsFormat,
    fail_on: Option<Severity>,
) -> anyhow::Result<Exit> {
    let color = format == FindingsFormat::Table && std::io::stdout().is_terminal();
    let text = report::render(
        format.into(),
        Some(&outcome.snapshot),
        &outcome.findings,
        &loaded.rules,
        color,
    )?;
    print!("{text}");
    let exit = exit_code(&outcome.snapshot, &outcome.findings, fail_on);
    if exit == Exit::Incomplete {
        eprintln!(
            "error: the organization could not be read completely: snapshot {} is {} ({} scope(s) failed); findings in those projects kept their status",
            outcome.snapshot.id, outcome.snapshot.status, outcome.snapshot.scopes_failed
        );
    }
    Ok(exit)
}

/// Stores a complete snapshot of `org` as a crawl of the simulated API would, without
/// HTTP: `Org::scope_results` renders exactly what the simulator serves.
fn snapshot_from_org(
    store: &mut Store,
    org: &Org,
    at: DateTime<Utc>,
) -> anyhow::Result<SnapshotInfo> {
    let mut writer = store.begin_snapshot(&org.organization, at)?;
    for scope in org.scope_results() {
        writer.apply(scope)?;
    }
    Ok(writer.finish(&CrawlStats::default(), at, SnapshotStatus::Complete)?)
}

/// Runs `orgwarden audit`.
pub fn audit(global: &GlobalArgs, args: &AuditArgs) -> anyhow::Result<Exit> {
    if args.notify || args.dry_run {
        return not_built("audit --notify", "issue 5");
    }
    if !args.offline {
        return not_built(
            "audit (online)",
            "the collector glue is not on this branch; use `orgwarden audit --offline` over a stored snapshot",
        );
    }
    let (config, loaded) = load_rules(global)?;
    let db = global.db_path(&config);
    let _lock = Store::lock_writer(&db).map_err(store_error)?;
    let store = Store::open(&db).map_err(store_error)?;
    let snapshot = store.latest_snapshot()?.ok_or_else(|| {
        CliError::usage(anyhow!(
            "no snapshot stored in {}: run `orgwarden snapshot` first",
            db.display()
        ))
    })?;
    let outcome = findings::evaluate_snapshot(
        &store,
        &loaded.rules,
        &loaded.exemptions,
        &snapshot,
        Utc::now(),
    )
    .with_context(|| format!("evaluating snapshot {} of {}", snapshot.id, db.display()))?;
    print_outcome(&outcome, &loaded, args.format, args.fail_on)
}

/// Runs `orgwarden demo`.
pub fn demo(global: &GlobalArgs, args: &DemoArgs) -> anyhow::Result<Exit> {
    let (_config, loaded) = load_rules(global)?;
    let db = global
        .db
        .clone()
        .unwrap_or_else(|| PathBuf::from("orgwarden-demo.db"));
    let now = Utc::now();
    let org = Org::demo(now.timestamp());
    let _lock = Store::lock_writer(&db).map_err(store_error)?;
    let mut store = Store::open(&db).map_err(store_error)?;
    let snapshot = snapshot_from_org(&mut store, &org, now)?;
    let outcome =
        findings::evaluate_snapshot(&store, &loaded.rules, &loaded.exemptions, &snapshot, now)?;
    if args.format == FindingsFormat::Table {
        eprintln!(
            "orgwarden demo: audited the simulated organization {} ({}) into {}",
            org.organization,
            org.summary(),
            db.display()
        );
    }
    print_outcome(&outcome, &loaded, args.format, None)
}

/// Runs `orgwarden findings`.
pub fn findings(global: &GlobalArgs, args: &FindingsArgs) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let db = global.db_path(&config);
    let store = Store::open_read_only(&db).map_err(store_error)?;
    let mut list: Vec<Finding> = findings::load(store.conn())?
        .into_iter()
        .filter(|f| match args.status {
            StatusFilter::Open => f.status == Status::Open,
            StatusFilter::Resolved => f.status == Status::Resolved,
            StatusFilter::Exempt => f.status == Status::Exempt,
            StatusFilter::All => true,
        })
        .filter(|f| args.severity.is_none_or(|s| f.severity >= s))
        .filter(|f| args.rule.as_deref().is_none_or(|r| f.rule_id.as_str() == r))
        .collect();
    findings::sort(&mut list);
    // Rules only add descriptions to SARIF; a broken rule file must not hide findings.
    let loaded = rules::load(&config, Utc::now().date_naive());
    let color = args.format == FindingsFormat::Table && std::io::stdout().is_terminal();
    print!(
        "{}",
        report::render(args.format.into(), None, &list, &loaded.rules, color)?
    );
    Ok(Exit::Ok)
}

/// Runs `orgwarden rules …`.
pub fn rules(global: &GlobalArgs, cmd: &RulesCommand) -> anyhow::Result<Exit> {
    match cmd {
        RulesCommand::List => rules_list(global),
        RulesCommand::Check => rules_check(global),
        RulesCommand::Test { ids, fixtures } => rules_test(global, ids, fixtures),
        RulesCommand::Explain { id } => rules_explain(global, id),
    }
}

fn rules_list(global: &GlobalArgs) -> anyhow::Result<Exit> {
    let (_, loaded) = load_rules(global)?;
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.force_no_tty();
    t.set_header(["ID", "SEVERITY", "RESOURCE TYPE", "PARAMS", "SOURCE"]);
    for r in &loaded.rules.rules {
        let params: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut severity = r.severity.to_string();
        if !r.enabled {
            severity.push_str(" (disabled)");
        }
        t.add_row(vec![
            r.id.to_string(),
            severity,
            r.resource_type.view().to_owned(),
            params.join(" "),
            format!("{}:{}", r.source, r.line),
        ]);
    }
    // The borderless preset pads every line with one leading space; drop it.
    for line in t.lines() {
        println!("{}", line.strip_prefix(' ').unwrap_or(&line).trim_end());
    }
    Ok(Exit::Ok)
}

fn unknown_rule(loaded: &Loaded, id: &str) -> anyhow::Error {
    let ids: Vec<&str> = loaded.rules.rules.iter().map(|r| r.id.as_str()).collect();
    CliError::usage(anyhow!(
        "no rule has the id `{id}` (rules: {})",
        ids.join(", ")
    ))
}

fn rules_explain(global: &GlobalArgs, id: &str) -> anyhow::Result<Exit> {
    let (_, loaded) = load_rules(global)?;
    let rule = loaded
        .rules
        .get(id)
        .ok_or_else(|| unknown_rule(&loaded, id))?;
    let mut out = format!("{} — {}\n\n", rule.id, rule.title);
    out.push_str(&format!(
        "severity:      {}{}\n",
        rule.severity,
        if rule.severity == rule.default_severity {
            String::new()
        } else {
            format!(" (rule file: {})", rule.default_severity)
        }
    ));
    out.push_str(&format!("resource type: {}\n", rule.resource_type.view()));
    out.push_str(&format!("source:        {}:{}\n", rule.source, rule.line));
    out.push_str(&format!(
        "enabled:       {}\n",
        if rule.enabled {
            "yes"
        } else {
            "no (disabled in [rules])"
        }
    ));
    out.push_str(&format!(
        "archived:      {}\n\n",
        if rule.include_archived {
            "findings in archived projects are reported"
        } else {
            "archived projects are skipped"
        }
    ));
    out.push_str(&format!("{}\n\n", rule.description.trim()));
    if !rule.params.is_empty() {
        out.push_str("params:\n");
        for (k, v) in &rule.params {
            let default = &rule.defaults[k];
            if v == default {
                out.push_str(&format!("  {k} = {v}\n"));
            } else {
                out.push_str(&format!("  {k} = {v}  (default {default})\n"));
            }
        }
        out.push('\n');
    }
    out.push_str(&format!("remediation:\n{}\n\n", rule.remediation.trim()));
    out.push_str(&format!(
        "SQL (`:now` = evaluation time, Unix seconds):\n{}\n",
        rule.sql()
    ));
    let binds = rule.bindings();
    if !binds.is_empty() {
        out.push_str("\nbound parameters:\n");
        for (name, value) in binds {
            out.push_str(&format!("  {name} = {value}\n"));
        }
    }
    print!("{out}");
    Ok(Exit::Ok)
}

fn rules_check(global: &GlobalArgs) -> anyhow::Result<Exit> {
    let config = load_config(global)?;
    let mut loaded = rules::load(&config, Utc::now().date_naive());
    // Exemptions matching nothing can only be judged against stored findings.
    let db = global.db_path(&config);
    if db.exists() && !loaded.diagnostics.has_errors() {
        if let Ok(store) = Store::open_read_only(&db) {
            let stored: Vec<_> = findings::load(store.conn())?
                .into_iter()
                .map(|f| (f.rule_id, f.resource_id))
                .collect();
            rules::warn_unused_exemptions(
                &config,
                &loaded.exemptions,
                &stored,
                &mut loaded.diagnostics,
            );
        }
    }
    let d = &loaded.diagnostics;
    if !d.items().is_empty() {
        eprint!("{}", d.render(std::io::stderr().is_terminal()));
    }
    if d.has_errors() {
        return Err(CliError::usage(anyhow!(
            "{} error(s) in rule or configuration files",
            d.error_count()
        )));
    }
    println!(
        "{} rules ok ({} enabled), {} exemption(s)",
        loaded.rules.rules.len(),
        loaded.rules.enabled().count(),
        loaded.exemptions.len()
    );
    Ok(Exit::Ok)
}

fn rules_test(global: &GlobalArgs, ids: &[String], extra: &[PathBuf]) -> anyhow::Result<Exit> {
    let (_, loaded) = load_rules(global)?;
    for id in ids {
        if loaded.rules.get(id).is_none() {
            return Err(unknown_rule(&loaded, id));
        }
    }
    let cases =
        fixtures::discover(&loaded.rules, extra).map_err(|e| CliError::usage(anyhow!(e)))?;
    let now = Utc::now().timestamp();
    let (mut passed, mut failed) = (0, 0);
    for case in cases
        .iter()
        .filter(|c| ids.is_empty() || ids.contains(&c.rule))
    {
        let Some(rule) = loaded.rules.get(&case.rule) else {
            println!(
                "FAIL {} / {}: no rule has the id `{}` ({})",
                case.rule, case.name, case.rule, case.file
            );
            failed += 1;
            continue;
        };
        // Fixtures are written against the rule file's params, not this site's overrides.
        let mut rule = rule.clone();
        rule.params = rule.defaults.clone();
        let result = fixtures::run(&rule, case, now);
        if result.passed() {
            println!("ok   {} / {}", case.rule, case.name);
            passed += 1;
            continue;
        }
        failed += 1;
        println!("FAIL {} / {} ({})", case.rule, case.name, case.file);
        if let Some(e) = &result.error {
            println!("     error: {e}");
        }
        for m in &result.missing {
            println!("     expected but not found: {m}");
        }
        for u in &result.unexpected {
            println!("     found but not expected: {u}");
        }
    }
    let untested: Vec<&str> = loaded
        .rules
        .rules
        .iter()
        .filter(|r| ids.is_empty() || ids.contains(&r.id.0))
        .filter(|r| !cases.iter().any(|c| c.rule == r.id.as_str()))
        .map(|r| r.id.as_str())
        .collect();
    if !untested.is_empty() {
        println!("no fixtures: {}", untested.join(", "));
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        return Err(CliError::usage(anyhow!(
            "{failed} rule fixture case(s) failed"
        )));
    }
    Ok(Exit::Ok)
}
