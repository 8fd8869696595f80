//! `audit`, `demo`, `findings` and `rules`: evaluate the rules and report findings.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use chrono::Utc;

use crate::client::{AdminClient, ClientOptions};
use crate::collect::{self, SnapshotOutcome};
use crate::config::Config;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::findings::{self, Finding, Status};
use crate::model::{Family, Severity, SnapshotStatus};
use crate::notify::{DeliveryReport, Notifier, NotifyError};
use crate::pipeline::{
    self, Announce, Audited, Evaluated, Inputs, Notified, Pass, PipelineError, Source,
};
use crate::report::{self, Format, Wrap};
use crate::rules::{self, Loaded, fixtures};
use crate::sim::{Org, SimOptions};
use crate::store::{SnapshotInfo, Store, StoreError};

use super::{CliError, Exit, GlobalArgs, runtime, unknown_name};

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
    /// With --notify: show what would be announced; record, queue and send nothing
    #[arg(long, requires = "notify")]
    pub dry_run: bool,
}

/// `orgwarden demo`
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = FindingsFormat::Table)]
    pub format: FindingsFormat,
    /// Where the email digest the run would have sent is written, as .eml files
    #[arg(long, default_value = "orgwarden-demo-outbox", value_name = "DIR")]
    pub outbox: PathBuf,
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

/// Loads the configuration, the rules and the exemptions; every problem is printed to
/// stderr and errors end the command with exit 2.
fn load_rules(global: &GlobalArgs) -> anyhow::Result<(Config, Loaded)> {
    let config = global.load_config()?;
    let loaded = load_rules_for(&config)?;
    Ok((config, loaded))
}

/// Loads the rules and exemptions `config` names; as [`load_rules`].
fn load_rules_for(config: &Config) -> anyhow::Result<Loaded> {
    let loaded = rules::load(config, Utc::now().date_naive());
    print_diagnostics(&loaded.diagnostics, "; nothing was evaluated")?;
    Ok(loaded)
}

/// Prints every diagnostic to stderr; errors end the command with exit 2.
fn print_diagnostics(d: &crate::diagnostics::Diagnostics, consequence: &str) -> anyhow::Result<()> {
    if !d.items().is_empty() {
        eprint!("{}", d.render(std::io::stderr().is_terminal()));
    }
    if d.has_errors() {
        return Err(CliError::usage(anyhow!(
            "{} error(s) in rule or configuration files{consequence}",
            d.error_count()
        )));
    }
    Ok(())
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
    evaluated: &Evaluated,
    crawl: Option<&SnapshotOutcome>,
    loaded: &Loaded,
    format: FindingsFormat,
    fail_on: Option<Severity>,
) -> anyhow::Result<Exit> {
    let color = format == FindingsFormat::Table && std::io::stdout().is_terminal();
    let text = report::render(
        format.into(),
        Some(&evaluated.snapshot),
        &evaluated.findings,
        &loaded.rules,
        color,
    )?;
    print!("{text}");
    let exit = exit_code(&evaluated.snapshot, &evaluated.findings, fail_on);
    if exit == Exit::Incomplete {
        if let Some(refused) = crawl.and_then(|c| c.refused.as_ref()) {
            eprintln!("error: {refused}");
        }
        eprintln!(
            "error: the organization could not be read completely: snapshot {} is {} ({} scope(s) failed); no finding was resolved where the read was incomplete",
            evaluated.snapshot.id, evaluated.snapshot.status, evaluated.snapshot.scopes_failed
        );
        const SHOWN: usize = 10;
        for (scope, error) in crawl
            .iter()
            .flat_map(|c| c.failed_scopes.iter())
            .take(SHOWN)
        {
            eprintln!("  {}", report::failed_scope_line(scope, error));
        }
    }
    Ok(exit)
}

/// What `audit` and `demo` hand the pipeline: the loaded rules and, when notifying, the
/// notifier.
struct CliSetup {
    loaded: Loaded,
    notifier: Option<Notifier>,
    organization: String,
    dry_run: bool,
}

impl pipeline::Setup for CliSetup {
    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            rules: &self.loaded.rules,
            exemptions: &self.loaded.exemptions,
            announce: self.notifier.as_ref().map(|notifier| Announce {
                notifier,
                organization: &self.organization,
                dry_run: self.dry_run,
            }),
            // A person is asking: every queued message is tried now, whatever its backoff
            // (backoff paces the daemon's retries).
            delivery: Some(Pass::All),
        }
    }
}

/// Runs the audit pipeline on `store` and prints what it found, announced and delivered.
fn run_and_print(
    store: Store,
    setup: CliSetup,
    source: Source<'_>,
    db: &std::path::Path,
    format: FindingsFormat,
    fail_on: Option<Severity>,
    banner: &dyn Fn(&Audited),
) -> anyhow::Result<Exit> {
    let setup = Arc::new(setup);
    let audited = runtime()?
        .block_on(pipeline::run(
            store,
            setup.clone(),
            source,
            &CancellationToken::new(),
        ))
        .map_err(|e| match e {
            PipelineError::Snapshot(e) => anyhow::Error::new(e).context(format!(
                "snapshot into {} failed; nothing was stored",
                db.display()
            )),
            other => anyhow::Error::new(other),
        })?;
    banner(&audited);
    let evaluated = audited
        .evaluated
        .with_context(|| format!("evaluating snapshot {}", audited.snapshot.id))?;
    if let (Some(notifier), Some(notified)) = (&setup.notifier, &evaluated.notified) {
        report_notification(notifier, notified, audited.delivery)?;
    }
    print_outcome(
        &evaluated,
        audited.crawl.as_ref(),
        &setup.loaded,
        format,
        fail_on,
    )
}

/// Says on stderr what was announced and delivered (undelivered mail stays queued for the
/// next run, which is not an error).
fn report_notification(
    notifier: &Notifier,
    notified: &Notified,
    delivery: Option<Result<DeliveryReport, NotifyError>>,
) -> anyhow::Result<()> {
    match &notified.announcement.digest {
        None => eprintln!("notify: nothing new to announce"),
        Some(digest) if notified.dry_run => {
            let rendered = notifier.render(digest)?;
            eprintln!(
                "notify (dry run: nothing recorded, queued or sent): {}\n\n{}",
                rendered.subject, rendered.text
            );
        }
        Some(_) => eprintln!(
            "notify: announced {} finding(s)",
            notified.announcement.announced.len()
        ),
    }
    let Some(report) = delivery.transpose()? else {
        return Ok(());
    };
    for (id, receipt) in &report.receipts {
        eprintln!("notify: message {id} delivered: {receipt}");
    }
    for (id, reason) in &report.failed {
        eprintln!("warning: message {id} could not be delivered and stays in the outbox: {reason}");
    }
    Ok(())
}

/// Runs `orgwarden audit`.
pub fn audit(global: &GlobalArgs, args: &AuditArgs) -> anyhow::Result<Exit> {
    let (config, loaded) = load_rules(global)?;
    let notifier = if args.notify {
        Some(Notifier::from_config(&config).map_err(CliError::usage)?)
    } else {
        None
    };
    let client = if args.offline {
        None
    } else {
        Some(super::snapshot::admin_client(global, &config)?)
    };
    let db = global.db_path(&config);
    // Offline there is nothing to store: a missing database fails as every read command
    // does, instead of leaving an empty database and a lock file behind.
    if args.offline && !db.exists() {
        return Err(store_error(StoreError::Missing { path: db }));
    }
    let _lock = Store::lock_writer(&db).map_err(store_error)?;
    let store = Store::open(&db).map_err(store_error)?;
    let organization = config.openai.organization.clone();
    let source = match &client {
        Some(client) => Source::Crawl {
            client,
            organization: &organization,
            progress: !global.quiet && collect::progress_wanted(),
        },
        None => Source::Stored(store.latest_snapshot()?.ok_or_else(|| {
            CliError::usage(anyhow!(
                "no snapshot stored in {}: run `orgwarden snapshot` (or `audit` without --offline) first",
                db.display()
            ))
        })?),
    };
    let setup = CliSetup {
        loaded,
        notifier,
        organization: organization.clone(),
        dry_run: args.dry_run,
    };
    run_and_print(
        store,
        setup,
        source,
        &db,
        args.format,
        args.fail_on,
        &|_| {},
    )
}

/// Runs `orgwarden demo`: the built-in organization served by the in-process simulator,
/// crawled over HTTP like the real API, audited into `./orgwarden-demo.db` (or `--db`).
pub fn demo(global: &GlobalArgs, args: &DemoArgs) -> anyhow::Result<Exit> {
    let mut config = global.load_config()?;
    let db = global
        .db
        .clone()
        .unwrap_or_else(|| PathBuf::from("orgwarden-demo.db"));
    let org = Org::demo_today(Utc::now().timestamp());
    let name = org.organization.clone();
    demo_settings(&mut config, &name, &org.email_domains, &args.outbox);
    let loaded = load_rules_for(&config)?;
    let notifier = Notifier::from_config(&config).map_err(CliError::usage)?;
    let sim = crate::sim::start_background(org, SimOptions::default())
        .context("starting the simulated Admin API")?;
    // The simulator accepts any non-empty Bearer token; this one is not a secret.
    let client = AdminClient::new(
        &sim.base_url(),
        secrecy::SecretString::from("demo-key"),
        ClientOptions::from_config(&config.openai),
    )?;
    let _lock = Store::lock_writer(&db).map_err(store_error)?;
    let store = Store::open(&db).map_err(store_error)?;
    let setup = CliSetup {
        loaded,
        notifier: Some(notifier),
        organization: name.clone(),
        dry_run: false,
    };
    let source = Source::Crawl {
        client: &client,
        organization: &name,
        progress: !global.quiet && collect::progress_wanted(),
    };
    let banner = |audited: &Audited| {
        if args.format == FindingsFormat::Table {
            eprintln!(
                "orgwarden demo: audited the simulated organization {name} ({}) through {} requests into {}",
                stored_summary(&audited.snapshot),
                audited.snapshot.stats.requests,
                db.display()
            );
        }
    };
    let exit = run_and_print(store, setup, source, &db, args.format, None, &banner);
    sim.shutdown();
    exit
}

/// What a snapshot stored, in the demo's words. Counted from the store, not the simulated
/// organization: an archived project's members read as an empty list, so the organization
/// holds more project users than the snapshot does.
fn stored_summary(info: &SnapshotInfo) -> String {
    let count = |family: Family| info.objects.get(family.view()).copied().unwrap_or(0);
    format!(
        "{} projects, {} project users, {} API keys",
        count(Family::Projects),
        count(Family::ProjectUsers),
        count(Family::ProjectApiKeys)
    )
}

/// What the demo changes in the user's configuration: the organization's name, its own
/// email domain for `project-user-external-domain` (unless configured), and email as
/// `.eml` files in `outbox` instead of any configured channel, so nothing leaves the machine.
fn demo_settings(config: &mut Config, org: &str, domains: &[String], outbox: &std::path::Path) {
    config.openai.organization = org.to_owned();
    if !domains.is_empty() {
        config.rules.set_param_default(
            "project-user-external-domain",
            "allowed_domains",
            toml::Value::Array(domains.iter().cloned().map(toml::Value::String).collect()),
        );
    }
    config.notify.email = Some(crate::config::EmailConfig {
        transport: crate::config::EmailTransport::File,
        host: None,
        port: None,
        tls: crate::config::EmailTls::None,
        username: None,
        password_env: None,
        from: "orgwarden-demo@localhost".into(),
        to: vec![format!(
            "security@{}",
            domains.first().map_or("example.com", String::as_str)
        )],
        // Relative to the working directory, not to a configuration file.
        dir: Some(std::path::absolute(outbox).unwrap_or_else(|_| outbox.to_owned())),
        templates: None,
        ca_file: None,
    });
}

/// Runs `orgwarden findings`.
pub fn findings(global: &GlobalArgs, args: &FindingsArgs) -> anyhow::Result<Exit> {
    let config = global.load_config()?;
    let db = global.db_path(&config);
    let store = Store::open_read_only(&db).map_err(store_error)?;
    let stored = findings::load(store.reader())?;
    // Rules only add descriptions to SARIF; a broken rule file must not hide findings.
    let loaded = rules::load(&config, Utc::now().date_naive());
    if let Some(rule) = &args.rule {
        check_rule_filter(rule, &loaded, &stored)?;
    }
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
        .collect();
    findings::sort(&mut list);
    let color = args.format == FindingsFormat::Table && std::io::stdout().is_terminal();
    print!(
        "{}",
        report::render(args.format.into(), None, &list, &loaded.rules, color)?
    );
    Ok(Exit::Ok)
}

/// `--rule` must name a configured rule or one with stored findings (a rule since removed
/// from the configuration still has its history): a typo would otherwise list nothing and
/// read as all clear.
fn check_rule_filter(rule: &str, loaded: &Loaded, stored: &[Finding]) -> anyhow::Result<()> {
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
    let rows = loaded.rules.rules.iter().map(|r| {
        let params: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut severity = r.severity.to_string();
        if !r.enabled {
            severity.push_str(" (disabled)");
        }
        vec![
            r.id.to_string(),
            severity,
            r.resource_type.view().to_owned(),
            params.join(" "),
            format!("{}:{}", r.source, r.line),
        ]
    });
    let t = report::new_table(
        &[
            ("id", Wrap::Never),
            ("severity", Wrap::Never),
            ("resource_type", Wrap::Never),
            ("params", Wrap::Prose),
            ("source", Wrap::Never),
        ],
        rows,
        report::output_width(),
        false,
    );
    println!("{t}");
    Ok(Exit::Ok)
}

fn unknown_rule(loaded: &Loaded, id: &str) -> anyhow::Error {
    let ids: Vec<&str> = loaded.rules.rules.iter().map(|r| r.id.as_str()).collect();
    unknown_name(format_args!("no rule has the id `{id}`"), id, &ids)
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
    let config = global.load_config()?;
    let mut loaded = rules::load(&config, Utc::now().date_naive());
    // Exemptions matching nothing can only be judged against stored findings.
    let db = global.db_path(&config);
    if db.exists()
        && !loaded.diagnostics.has_errors()
        && let Ok(store) = Store::open_read_only(&db)
    {
        let stored: Vec<_> = findings::load(store.reader())?
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
    print_diagnostics(&loaded.diagnostics, "")?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CrawlStats, RuleId, SnapshotId};

    fn snapshot(status: SnapshotStatus) -> SnapshotInfo {
        SnapshotInfo {
            id: SnapshotId(1),
            org: "acme".into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            status,
            stats: CrawlStats::default(),
            objects: Default::default(),
            scopes_read: 1,
            scopes_failed: 0,
            changes: 0,
        }
    }

    fn finding(severity: Severity, status: Status) -> Finding {
        Finding {
            fingerprint: "f".into(),
            rule_id: RuleId::from("r"),
            severity,
            title: "t".into(),
            resource_type: "projects".into(),
            resource_id: "p".into(),
            project_id: None,
            message: "m".into(),
            remediation: "r".into(),
            status,
            first_seen: 0,
            last_seen: 0,
            resolved_at: None,
            last_notified_at: None,
        }
    }

    #[test]
    fn fail_on_counts_only_open_findings_at_or_above() {
        let complete = snapshot(SnapshotStatus::Complete);
        let high_open = [finding(Severity::High, Status::Open)];
        assert_eq!(exit_code(&complete, &high_open, None), Exit::Ok);
        assert_eq!(
            exit_code(&complete, &high_open, Some(Severity::High)),
            Exit::Findings
        );
        assert_eq!(
            exit_code(&complete, &high_open, Some(Severity::Medium)),
            Exit::Findings
        );
        assert_eq!(
            exit_code(&complete, &high_open, Some(Severity::Critical)),
            Exit::Ok
        );
        let exempt = [finding(Severity::Critical, Status::Exempt)];
        assert_eq!(exit_code(&complete, &exempt, Some(Severity::Low)), Exit::Ok);
        let resolved = [finding(Severity::Critical, Status::Resolved)];
        assert_eq!(
            exit_code(&complete, &resolved, Some(Severity::Low)),
            Exit::Ok
        );
    }

    #[test]
    fn an_incomplete_snapshot_wins_over_findings() {
        let high_open = [finding(Severity::High, Status::Open)];
        for status in [SnapshotStatus::Partial, SnapshotStatus::Failed] {
            assert_eq!(
                exit_code(&snapshot(status), &high_open, Some(Severity::Low)),
                Exit::Incomplete
            );
            assert_eq!(exit_code(&snapshot(status), &[], None), Exit::Incomplete);
        }
    }
}
