//! `orgwarden snapshot`: collect the organization into the store.

use std::path::Path;

use comfy_table::{Cell, CellAlignment};

use super::read::TableFormat;
use super::{CliError, Exit, GlobalArgs, runtime};
use crate::client::{AdminClient, ClientOptions, load_admin_key};
use crate::collect::{self, SnapshotOutcome};
use crate::config::Config;
use crate::model::{Burst, Family, SnapshotStatus};
use crate::report::{self, Wrap};
use crate::store::Store;

/// `orgwarden snapshot`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    orgwarden snapshot\n  \
    orgwarden --base-url http://127.0.0.1:8787/v1 snapshot --format json   against `orgwarden sim`\n\n\
    The admin key comes from OPENAI_ADMIN_KEY or `[openai] admin_key_file`.\n\n\
    Exit codes: 0 complete; 2 bad usage or configuration, or nothing could be stored; \
    3 the organization could not be read completely (the snapshot is partial or failed).")]
pub struct SnapshotArgs {
    /// Output format of the run summary
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

/// Builds the Admin API client `[openai]` and the global options ask for. Errors are
/// configuration errors (exit 2).
pub fn admin_client(global: &GlobalArgs, config: &Config) -> anyhow::Result<AdminClient> {
    let config_dir = config.source.as_deref().and_then(Path::parent);
    let key = load_admin_key(&config.openai, config_dir).map_err(CliError::usage)?;
    AdminClient::new(
        &global.base_url(config),
        key,
        ClientOptions::from_config(&config.openai),
    )
    .map(|client| {
        client
            .with_spend(config.spend)
            .with_audit_log(config.audit_log)
    })
    .map_err(CliError::usage)
}

/// Runs `orgwarden snapshot`.
pub fn snapshot(global: &GlobalArgs, args: &SnapshotArgs) -> anyhow::Result<Exit> {
    let config = global.load_config()?;
    let client = admin_client(global, &config)?;
    let db = global.db_path(&config);
    let _lock = Store::lock_writer(&db)?;
    let store = Store::open(&db)?;
    let progress = !global.quiet && collect::progress_wanted();
    let (store, outcome) = runtime()?
        .block_on(collect::snapshot_skipping(
            &client,
            store,
            &config.openai.organization,
            progress,
            &config.collect.skip,
        ))
        // A store failing mid-crawl (a full disk, a damaged file) stopped the run: exit 2,
        // as `audit` does. Exit 3 says the API could not be read, and a retry fixes that;
        // this needs a person to look at the database.
        .map_err(|e| {
            CliError::usage(anyhow::Error::new(e).context(format!(
                "snapshot into {} failed; nothing was stored",
                db.display()
            )))
        })?;
    store.warn_if_wal_pinned();
    match args.format {
        // The store's snapshot object (the same `orgwarden snapshots` prints: the objects
        // per view, the crawl's retries and 429s) and the concurrency the client settled on.
        TableFormat::Json => super::print_or_drop(&format!(
            "{}\n",
            report::json_text(&summary_json(&outcome), true)?
        ))?,
        TableFormat::Table | TableFormat::Csv => {
            super::print_or_drop(&table_text(&outcome, args.format))?;
        }
    }
    verdict(&outcome)
}

/// The snapshot object, plus what only this run knows: the concurrency it settled on and
/// the request rate it found the API to allow.
fn summary_json(outcome: &SnapshotOutcome) -> serde_json::Value {
    let mut json = outcome.info.to_json();
    if let Some(object) = json.as_object_mut() {
        object.insert(
            "concurrency".to_owned(),
            outcome.info.stats.concurrency.into(),
        );
        object.insert(
            "rate_limit_per_minute".to_owned(),
            outcome.rate_limit.map(|rate| rate.per_minute.get()).into(),
        );
        object.insert(
            "rate_limit_burst".to_owned(),
            outcome
                .rate_limit
                .and_then(|rate| rate.burst)
                .map(Burst::get)
                .into(),
        );
    }
    json
}

/// Exit 0 for a complete snapshot; otherwise exit 3 with the reason.
fn verdict(outcome: &SnapshotOutcome) -> anyhow::Result<Exit> {
    let info = &outcome.info;
    if let Some(refused) = &outcome.refused {
        return Err(CliError::incomplete(anyhow::anyhow!(
            "{refused}; snapshot {} recorded as failed",
            info.id
        )));
    }
    match info.status {
        SnapshotStatus::Complete => Ok(Exit::Ok),
        status => {
            // With every scope read, what made it partial was the costs or the audit log,
            // each said on its own line below; "0 scope(s) could not be read" would read
            // as a contradiction. (A failed one with no failed scope is the collector's
            // "cannot be" case, which it logs.)
            let mut text = if outcome.failed_scopes.is_empty() && status == SnapshotStatus::Partial
            {
                format!(
                    "snapshot {} is {status}: every scope was read, but a read beside them failed",
                    info.id
                )
            } else if outcome.failed_scopes.is_empty() {
                format!(
                    "snapshot {} is {status}: it changes nothing that earlier snapshots stored (see the log)",
                    info.id
                )
            } else {
                format!(
                    "snapshot {} is {status}: {} scope(s) could not be read; what earlier snapshots stored of them is kept",
                    info.id,
                    outcome.failed_scopes.len()
                )
            };
            for line in report::failed_scope_lines(&outcome.failed_scopes, 20) {
                text.push_str(super::CONTINUATION);
                text.push_str(&line);
            }
            if let Some(line) = report::costs_failure(outcome) {
                text.push_str(super::CONTINUATION);
                text.push_str(&report::inert(&line));
            }
            if let Some(line) = report::audit_log_failure(info) {
                text.push_str(super::CONTINUATION);
                text.push_str(&line);
            }
            Err(CliError::incomplete(anyhow::anyhow!(text)))
        }
    }
}

/// The snapshot's report as a table or CSV, every line ended.
fn table_text(outcome: &SnapshotOutcome, format: TableFormat) -> String {
    use std::fmt::Write;
    let info = &outcome.info;
    let stats = &info.stats;
    let elapsed = outcome.elapsed.as_secs_f64();
    let mut text = String::new();
    // Writing to a String cannot fail.
    if format == TableFormat::Csv {
        text.push_str("view,objects\n");
        for (view, count) in &info.objects {
            let _ = writeln!(text, "{view},{count}");
        }
        return text;
    }
    let why = match (&outcome.refused, outcome.failed_scopes.len()) {
        (Some(_), _) => " (the Admin API refused the admin key)".to_owned(),
        (None, 0) => String::new(),
        (None, n) => format!(" ({n} scope(s) could not be read)"),
    };
    let _ = writeln!(
        text,
        "Snapshot {} of {}: {}{why}",
        info.id, info.org, info.status
    );
    // A table of zeros would read as an empty organization.
    if info.status == SnapshotStatus::Failed {
        let _ = writeln!(
            text,
            "Nothing was read; the views keep what earlier snapshots stored."
        );
    }
    // Catalog order (projects, their people, keys, …) reads better than alphabetical.
    let rows = Family::ALL
        .iter()
        .filter_map(|f| Some((f.view(), *info.objects.get(f.view())?)))
        .map(|(view, count)| {
            vec![
                Cell::new(view),
                Cell::new(count).set_alignment(CellAlignment::Right),
            ]
        });
    let table = report::new_table(
        &[("view", Wrap::Never), ("objects", Wrap::Never)],
        rows,
        report::output_width(),
        false,
    );
    if info.status != SnapshotStatus::Failed {
        let _ = writeln!(text, "{table}");
    }
    let limit = outcome
        .rate_limit
        .map_or_else(String::new, |rate| match rate.burst {
            Some(burst) => format!(", API limit {} (burst {})", rate.per_minute, burst.get()),
            None => format!(", API limit {}", rate.per_minute),
        });
    let _ = writeln!(
        text,
        "{} requests, {} retries, {} rate-limited (429), concurrency settled at {}{limit}, {:.1} s",
        stats.requests, stats.retries, stats.rate_limited, stats.concurrency, elapsed
    );
    if let Some(line) = info.audit_log.as_ref().map(audit_log_line) {
        let _ = writeln!(text, "{line}");
    }
    text
}

/// The audit-log read in one line.
fn audit_log_line(read: &crate::store::AuditLogSummary) -> String {
    let error = report::inert(read.error.as_deref().unwrap_or(""));
    match read.outcome.as_str() {
        "complete" => format!(
            "audit log: {} new event(s) stored of {} read, {} request(s)",
            read.stored, read.received, read.requests
        ),
        "disabled" => format!("audit log: audit logging is off for this organization ({error})"),
        _ => format!("audit log: the read failed, nothing of it was kept: {error}"),
    }
}
