//! `orgwarden demo`: a full audit of the built-in simulated organization, no key, no network.

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;

use crate::client::{AdminClient, ClientOptions};
use crate::collect::{self};
use crate::config::Config;

use crate::model::Family;
use crate::notify::Notifier;
use crate::pipeline::{Audited, Source};
use crate::sim::{Org, SimOptions};
use crate::store::{SnapshotInfo, Store};

use super::audit::{CliSetup, FindingsFormat, load_rules_for, run_and_print, store_error};
use super::{CliError, Exit, GlobalArgs};

/// The demo's database when `--db` does not name one: in the current folder.
pub(super) const DEMO_DB: &str = "orgwarden-demo.db";

/// `orgwarden demo`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    orgwarden demo\n  \
    orgwarden demo --format markdown > report.md\n  \
    orgwarden --db orgwarden-demo.db findings --severity high   look around what it stored\n\n\
    Exit codes: 0 done; 2 anything that stopped it.")]
pub struct DemoArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = FindingsFormat::Table)]
    pub format: FindingsFormat,
    /// Where the email digest the run would have sent is written, as .eml files
    #[arg(long, default_value = "orgwarden-demo-outbox", value_name = "DIR")]
    pub outbox: PathBuf,
}

/// Runs `orgwarden demo`: the built-in organization served by the in-process simulator,
/// crawled over HTTP like the real API, audited into `./orgwarden-demo.db` (or `--db`).
pub fn demo(global: &GlobalArgs, args: &DemoArgs) -> anyhow::Result<Exit> {
    let mut config = global.load_config()?;
    if global.base_url.is_some() {
        tracing::warn!(
            "demo audits its own simulated organization: --base-url (ORGWARDEN_BASE_URL) is \
             not used; `orgwarden audit --base-url URL` audits an API at that address"
        );
    }
    let db = global.db.clone().unwrap_or_else(|| PathBuf::from(DEMO_DB));
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
    )?
    .with_spend(config.spend)
    .with_audit_log(config.audit_log);
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
        skip: &config.collect.skip,
    };
    let banner = |audited: &Audited| {
        if args.format == FindingsFormat::Table {
            eprintln_or_drop!(
                "orgwarden demo: audited the simulated organization {name} ({}) through {} requests into {}",
                stored_summary(&audited.snapshot),
                audited.snapshot.stats.requests,
                db.display()
            );
        }
    };
    let exit = run_and_print(store, setup, source, &db, args.format, None, &banner);
    sim.shutdown();
    if exit.is_ok() && args.format == FindingsFormat::Table && !global.quiet {
        // Read after the table, where a newcomer's eyes are: the next command reads this
        // database only when given it, since every other command defaults to orgwarden.db.
        let db = crate::report::shell_quote(&db);
        eprintln_or_drop!(
            "\nNext: `orgwarden --db {db} findings --severity high` lists them again, \
             `orgwarden rules explain RULE_ID` says what a rule checks and how to fix what it \
             found, and `orgwarden init` writes a configuration for your own organization."
        );
    }
    exit
}

/// What a snapshot stored, in the demo's words. Counted from the store, not the simulated
/// organization: an archived project's members read as an empty list, so the organization
/// holds more project users than the snapshot does.
pub(super) fn stored_summary(info: &SnapshotInfo) -> String {
    let count = |family: Family| info.objects.get(family.view()).copied().unwrap_or(0);
    format!(
        "{} projects, {} project users, {} API keys",
        count(Family::Projects),
        count(Family::ProjectUsers),
        count(Family::ProjectApiKeys)
    )
}

/// What the demo changes in the user's configuration: the organization's name, its own
/// email domain for the two `*-user-external-domain` rules (unless configured), and email as
/// `.eml` files in `outbox` instead of any configured channel, so nothing leaves the machine.
pub(super) fn demo_settings(
    config: &mut Config,
    org: &str,
    domains: &[String],
    outbox: &std::path::Path,
) {
    config.openai.organization = org.to_owned();
    if !domains.is_empty() {
        for rule in ["project-user-external-domain", "org-user-external-domain"] {
            config.rules.set_param_default(
                rule,
                "allowed_domains",
                toml::Value::Array(domains.iter().cloned().map(toml::Value::String).collect()),
            );
        }
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
        max_csv_bytes: crate::config::DEFAULT_MAX_CSV_BYTES,
    });
    // The demo's findings are made up: they must not reach a real Slack or PagerDuty.
    config.notify.channels.clear();
}
