//! `orgwarden audit`: snapshot, evaluate the rules, print the findings (and notify); the
//! printing and exit codes `demo` shares.

use std::io::IsTerminal;

use anyhow::{Context, anyhow};
use chrono::Utc;

use crate::collect::{self, SnapshotOutcome};
use crate::config::Config;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::findings::{Finding, Status};
use crate::model::{Severity, SnapshotStatus};
use crate::notify::{DeliveryReport, Notifier, NotifyError};
use crate::pipeline::{
    self, Announce, Audited, Evaluated, Inputs, Notified, Pass, PipelineError, Source,
};
use crate::report::{self, Format};
use crate::rules::{self, Loaded};
use crate::store::{SnapshotInfo, Store, StoreError};

use super::{CliError, Exit, GlobalArgs, runtime};

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
#[command(after_help = "Examples:\n  \
    orgwarden audit --fail-on high                  exit 1 on a high or critical finding\n  \
    orgwarden audit --notify                        and send what is new, reopened, resolved\n  \
    orgwarden audit --notify --dry-run              show what would be sent; send nothing\n  \
    orgwarden audit --offline --format sarif > orgwarden.sarif\n\n\
    The admin key comes from OPENAI_ADMIN_KEY or `[openai] admin_key_file`.\n\n\
    Exit codes:\n  \
    0: done\n  \
    1: a non-exempt open finding at or above --fail-on\n  \
    2: bad usage, configuration or rule file, a rule that did not finish, or anything else \
    that stopped the run\n  \
    3: the organization could not be read completely (wins over 1)")]
pub struct AuditArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = FindingsFormat::Table)]
    pub format: FindingsFormat,
    /// Exit 1 when a non-exempt open finding is at or above this severity (any case:
    /// `high`, `HIGH`)
    #[arg(long, value_enum, ignore_case = true)]
    pub fail_on: Option<Severity>,
    /// Evaluate the latest stored snapshot without calling the API, judged as of when it
    /// was read (a key's age, an audit-log window)
    #[arg(long)]
    pub offline: bool,
    /// Send notifications for what changed
    #[arg(long)]
    pub notify: bool,
    /// With --notify: show what would be announced; record, queue and send nothing
    #[arg(long, requires = "notify")]
    pub dry_run: bool,
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
pub(super) fn load_rules(global: &GlobalArgs) -> anyhow::Result<(Config, Loaded)> {
    let config = global.load_config()?;
    let loaded = load_rules_for(&config)?;
    Ok((config, loaded))
}

/// Loads the rules and exemptions `config` names; as [`load_rules`].
pub(super) fn load_rules_for(config: &Config) -> anyhow::Result<Loaded> {
    let loaded = rules::load(config, Utc::now().date_naive());
    print_diagnostics(&loaded.diagnostics, "; nothing was evaluated")?;
    Ok(loaded)
}

/// Prints every diagnostic to stderr; errors end the command with exit 2.
pub(super) fn print_diagnostics(
    d: &crate::diagnostics::Diagnostics,
    consequence: &str,
) -> anyhow::Result<()> {
    if !d.items().is_empty() {
        eprint_or_drop!(
            "{}",
            d.render(report::color_wanted(std::io::stderr().is_terminal()))
        );
    }
    if d.has_errors() {
        return Err(CliError::usage(anyhow!(
            "{} error(s) in rule or configuration files{consequence}",
            d.error_count()
        )));
    }
    Ok(())
}

pub(super) fn store_error(e: StoreError) -> anyhow::Error {
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

pub(super) fn print_outcome(
    evaluated: &Evaluated,
    crawl: Option<&SnapshotOutcome>,
    loaded: &Loaded,
    format: FindingsFormat,
    fail_on: Option<Severity>,
) -> anyhow::Result<Exit> {
    let color =
        format == FindingsFormat::Table && report::color_wanted(std::io::stdout().is_terminal());
    let text = report::render(
        format.into(),
        Some(&evaluated.snapshot),
        &evaluated.findings,
        &evaluated.unfinished,
        &loaded.rules,
        color,
    )?;
    super::print_or_drop(&text)?;
    let exit = exit_code(&evaluated.snapshot, &evaluated.findings, fail_on);
    if exit == Exit::Incomplete {
        if let Some(refused) = crawl.and_then(|c| c.refused.as_ref()) {
            eprintln_or_drop!("error: {}", report::inert(&refused.to_string()));
        }
        eprintln_or_drop!(
            "error: the organization could not be read completely: snapshot {} is {} ({}); no finding was resolved where the read was incomplete",
            evaluated.snapshot.id,
            evaluated.snapshot.status,
            report::incomplete_reason(&evaluated.snapshot)
        );
        for line in crawl
            .map(|c| report::failed_scope_lines(&c.failed_scopes, 10))
            .unwrap_or_default()
        {
            eprintln_or_drop!("  {line}");
        }
        if let Some(line) = crawl.and_then(report::costs_failure) {
            eprintln_or_drop!("  {}", report::inert(&line));
        }
        if let Some(line) = report::audit_log_failure(&evaluated.snapshot) {
            eprintln_or_drop!("  {}", report::inert(&line));
        }
    }
    Ok(exit)
}

/// What `audit` and `demo` hand the pipeline: the loaded rules and, when notifying, the
/// notifier.
pub(super) struct CliSetup {
    pub(super) loaded: Loaded,
    pub(super) notifier: Option<Notifier>,
    pub(super) organization: String,
    pub(super) dry_run: bool,
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
pub(super) fn run_and_print(
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
    // The findings are stored whatever happened to their delivery, so a failed delivery
    // pass still prints the report before it fails the run.
    let notification = match (&setup.notifier, &evaluated.notified) {
        (Some(notifier), Some(notified)) => {
            report_notification(notifier, notified, audited.delivery)
        }
        _ => Ok(()),
    };
    let exit = print_outcome(
        &evaluated,
        audited.crawl.as_ref(),
        &setup.loaded,
        format,
        fail_on,
    )?;
    // The other rules' findings are printed above; a rule that did not finish (stopped at
    // its budget, or failed as it ran) still fails the run.
    let unfinished =
        |e: &dyn std::fmt::Display| format!("evaluating snapshot {}: {e}", evaluated.snapshot.id);
    if let Err(e) = notification {
        for e in &evaluated.unfinished {
            eprintln_or_drop!("error: {}", unfinished(e));
        }
        return Err(e);
    }
    if let Some((last, others)) = evaluated.unfinished.split_last() {
        for e in others {
            eprintln_or_drop!("error: {e}");
        }
        return Err(anyhow::anyhow!("{last}"))
            .with_context(|| format!("evaluating snapshot {}", evaluated.snapshot.id));
    }
    Ok(exit)
}

/// Says on stderr what was announced and delivered (undelivered mail stays queued for the
/// next run, which is not an error).
pub(super) fn report_notification(
    notifier: &Notifier,
    notified: &Notified,
    delivery: Option<Result<DeliveryReport, NotifyError>>,
) -> anyhow::Result<()> {
    match &notified.announcement.digest {
        // Only PagerDuty hears of findings closed without an announcement (exempted, or
        // resolved while `send_resolved` is off): its resolves are still messages.
        None if !notified.announcement.queued.is_empty() => {
            let mut channels: Vec<&str> = notified
                .announcement
                .queued
                .iter()
                .map(|(channel, _)| channel.as_str())
                .collect();
            // A channel whose message was split queued several.
            channels.dedup();
            eprintln_or_drop!(
                "notify: nothing new to announce; PagerDuty resolves queued for {} (findings \
                 closed without an announcement){}",
                channels.join(", "),
                if notified.dry_run {
                    " (dry run: nothing queued or sent)"
                } else {
                    ""
                }
            );
        }
        None => eprintln_or_drop!("notify: nothing new to announce"),
        Some(digest) if notified.dry_run => {
            let rendered = notifier.render(digest)?;
            eprintln_or_drop!(
                "notify (dry run: nothing recorded, queued or sent): {}\n\n{}",
                rendered.subject,
                rendered.text
            );
        }
        Some(_) => eprintln_or_drop!(
            "notify: announced {} finding(s)",
            notified.announcement.announced.len()
        ),
    }
    let Some(report) = delivery.transpose().context(
        "notify: the findings are stored and announced, but the delivery pass failed; \
         queued messages stay in the outbox for the next pass",
    )?
    else {
        return Ok(());
    };
    // Receipts and refusals quote the mail server.
    for (id, receipt) in &report.receipts {
        // A server's reply is outside text: nothing it quotes back is printed, and none of
        // its control characters reach the terminal.
        let receipt = crate::secrets::scrub(receipt);
        eprintln_or_drop!(
            "notify: message {id} delivered: {}",
            report::inert(&receipt)
        );
    }
    for (id, reason) in &report.failed {
        let reason = crate::secrets::scrub(reason);
        eprintln_or_drop!(
            "warning: message {id} could not be delivered and stays in the outbox: {}",
            report::inert(&reason)
        );
    }
    for (id, reason) in &report.rejected {
        let reason = crate::secrets::scrub(reason);
        eprintln_or_drop!(
            "error: message {id} was refused and will not be retried: {}",
            report::inert(&reason)
        );
    }
    Ok(())
}

/// Warns on stderr about exemptions that match no stored finding, as `rules check` does:
/// a mistyped resource otherwise shows only as a finding that stays open. A database that
/// cannot be read for it is no reason to fail an audit that has printed its report.
fn warn_unused_exemptions(
    config: &Config,
    exemptions: &[crate::exemptions::Exemption],
    db: &std::path::Path,
) {
    if exemptions.is_empty() {
        return;
    }
    let read = || -> anyhow::Result<Vec<_>> {
        let store = Store::open_read_only(db)?;
        Ok(crate::findings::load(store.reader())?
            .into_iter()
            .map(|f| (f.rule_id, f.resource_id, f.project_id))
            .collect())
    };
    let stored = match read() {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(db = %db.display(), "exemptions not checked against stored findings: {e:#}");
            return;
        }
    };
    let mut diags = crate::diagnostics::Diagnostics::new();
    rules::warn_unused_exemptions(config, exemptions, &stored, &mut diags);
    if !diags.items().is_empty() {
        eprint_or_drop!(
            "{}",
            diags.render(report::color_wanted(std::io::stderr().is_terminal()))
        );
    }
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
    // A database this run creates knows no finding yet, so every open one is new to it and
    // announced as new: in CI, on every run, unless the database is kept between runs.
    let fresh = !db.exists();
    let _lock = Store::lock_writer(&db).map_err(store_error)?;
    let store = Store::open(&db).map_err(store_error)?;
    let organization = config.openai.organization.clone();
    let source = match &client {
        Some(client) => Source::Crawl {
            client,
            organization: &organization,
            progress: !global.quiet && collect::progress_wanted(),
            skip: &config.collect.skip,
        },
        None => Source::Stored(Box::new(store.latest_snapshot()?.ok_or_else(|| {
            CliError::usage(anyhow!(
                "no snapshot stored in {}: run `orgwarden snapshot` (or `audit` without --offline) first",
                db.display()
            ))
        })?)),
    };
    let exemptions = loaded.exemptions.clone();
    let setup = CliSetup {
        loaded,
        notifier,
        organization: organization.clone(),
        dry_run: args.dry_run,
    };
    let exit = run_and_print(
        store,
        setup,
        source,
        &db,
        args.format,
        args.fail_on,
        &|_| {},
    );
    if exit.is_ok() && !args.dry_run {
        warn_unused_exemptions(&config, &exemptions, &db);
    }
    // A run that fails (a rule that did not finish, a failed delivery pass) may still have
    // queued its messages: those are as lost with a thrown-away database.
    if fresh && args.notify {
        // What could not be delivered waits in this database's outbox: with the database
        // thrown away, as a CI job does, it is lost, and nothing else would say so.
        let queued = Store::open_read_only(&db)
            .ok()
            .and_then(|store| crate::notify::outbox::pending_count(store.reader().conn()).ok())
            .unwrap_or(0);
        let lost = if queued > 0 {
            format!(
                "; and {queued} message(s) it could not deliver wait in its outbox, to be \
                 sent by the next run on it, or lost with it"
            )
        } else {
            String::new()
        };
        if exit.is_ok() || queued > 0 {
            eprintln_or_drop!(
                "warning: {} was created by this run, so every open finding counted as new; \
                 keep the database between runs (a CI cache or volume) so that only changes \
                 are announced{lost}",
                db.display()
            );
        }
    }
    exit
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
            audit_log: None,
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
            changed_by: None,
            exemption: None,
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
