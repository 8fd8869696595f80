//! `orgwarden init`: a commented starter configuration.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::{CliError, Exit, GlobalArgs};

/// `orgwarden init`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    orgwarden init                                  ./orgwarden.toml, every key explained\n  \
    orgwarden init /etc/orgwarden/orgwarden.toml\n  \
    orgwarden rules check                           then check it and the rule files\n\n\
    Relative paths in the file are read from the file's folder.\n\n\
    Exit codes: 0 written; 2 the file exists (--force overwrites it) or cannot be written.")]
pub struct InitArgs {
    /// Where to write the starter configuration
    #[arg(default_value = "orgwarden.toml")]
    pub file: PathBuf,
    /// Overwrite an existing file
    #[arg(long)]
    pub force: bool,
}

/// The commented starter configuration `init` writes; every key is explained.
pub const STARTER_CONFIG: &str = r##"# orgwarden.toml: configuration for orgwarden (`orgwarden --help` lists the commands).
# Every key is optional; the values shown are the defaults unless the line is commented out.
# Relative paths are read from the folder this file is in.

[openai]
# The organization's name in reports, emails and each snapshot's `org`. Running orgwarden
# for several organizations, give each its own name here (it is how a shared inbox tells
# them apart), its own admin key and its own database (`path` under [storage]).
organization = "default"
# The Admin API base URL (--base-url overrides it). Point it at `orgwarden sim` to test.
base_url = "https://api.openai.com/v1"
# A file holding the admin key (one line), read when OPENAI_ADMIN_KEY is not set: the
# variable, when set, wins.
# Under systemd with LoadCredential=openai_admin_key:..., the file is
# /run/credentials/orgwarden.service/openai_admin_key.
# admin_key_file = "/run/secrets/openai_admin_key"
# How many Admin API requests may be in flight at once: orgwarden finds the number latency
# needs and paces requests at the rate the API accepts, up to max_concurrency. To fix the
# number instead, replace max_concurrency with `concurrency = N` (not both).
max_concurrency = 256
# Seconds before one request is abandoned.
timeout_secs = 30
# The largest answer read (B, KiB, MiB or GiB); a larger one fails its scope, not the run.
max_response_bytes = "32MiB"
# The most pages read for one list; an API that pages on past it fails that scope.
max_pages_per_scope = 10000
# How long one snapshot may read (45s, 30m, 2h). Off by default: each request has its own
# timeout, but an API answering just inside it could hold a run, and the daemon's next
# ones, for hours. At the limit every read not finished fails its scope and the snapshot is
# partial, so nothing it did not read resolves. Set it well above your usual snapshot time
# (`orgwarden snapshots` lists when each started and finished), or nothing will resolve.
# snapshot_timeout = "1h"

[storage]
# The SQLite database holding every snapshot, object version and finding (--db overrides it).
path = "orgwarden.db"

[schedule]
# When `orgwarden daemon` runs an audit: a standard 5-field crontab line
#   minute hour day-of-month month day-of-week
# with Unix weekday numbers (0 and 7 are Sunday), names (mon-fri, jan-dec), ranges (1-5),
# steps (*/15, 1-30/5) and lists (1,15); or @hourly @daily @midnight @weekly @monthly
# @yearly @annually. Six fields put seconds first. When both day-of-month and day-of-week
# are restricted, a day matches if either does (as in cron). Check it with
# `orgwarden schedule --count 10`.
cron = "0 */6 * * *"
# The IANA time zone the expression is read in. A time skipped by a daylight-saving jump
# runs once at the first moment after it; in a repeated hour, a job whose hour field is `*`
# or `*/N` runs at each occurrence and any other once, the first time (as cronie does).
timezone = "UTC"
# Run one audit as soon as the daemon starts, besides the schedule.
run_on_start = false
# Wait a random delay of up to this long before each scheduled run (45s, 30m, 12h; at most
# 1d), so many installations on the same schedule do not call the API at the same second.
# jitter = "30s"

[rules]
# Extra rule files or folders, besides the shipped rule pack.
paths = []
# Rule ids not to evaluate.
disabled = []
# How long one rule may run before it fails (the other rules still run).
timeout = "30s"

# Per-rule parameter overrides: one table per rule id.
# [rules.params.api-key-stale]
# max_idle_days = 60

# Per-rule severity overrides: info, low, medium, high or critical.
[rules.severity]
# project-no-spend-alert = "medium"

# Accepted findings. Each needs the rule, a resource id (exact or glob), why, who answers
# for it, and the last day it holds (UTC); when it expires, the finding reopens and says so.
# `project` (exact or glob, optional) limits it to findings in those projects: a hosted
# tool's name or a user's id is the same in every project. Repeat the table for more.
# [[exemption]]
# rule = "project-no-spend-alert"
# resource = "proj_sandbox*"
# reason = "sandbox has a hard spend limit"
# owner = "finops@example.com"
# expires = "2027-03-31"
#
# [[exemption]]
# rule = "project-hosted-tool-enabled"
# resource = "mcp"
# project = "proj_support"
# reason = "the support assistant's MCP server is reviewed"
# owner = "security@example.com"
# expires = "2027-03-31"

[notify]
# Announce findings that are still open again after this long (45s, 30m, 12h, 7d, 2w).
repeat_interval = "7d"
# Announce findings that were resolved.
send_resolved = true
# How long a delivered message's text stays in the database (its record stays).
keep_sent = "7d"

# Email digests: one message per run that has something to announce. Without it, no email.
# [notify.email]
# "smtp", or "file" to write .eml files into `dir`.
# transport = "smtp"
# host = "smtp.example.com"
# Default from `tls`: 587 for starttls, 465 for tls, 25 for none.
# port = 587
# "starttls", "tls" (implicit TLS) or "none" (only for a relay on loopback).
# tls = "starttls"
# username = "orgwarden"
# The environment variable that holds the SMTP password (never the password itself).
# password_env = "ORGWARDEN_SMTP_PASSWORD"
# from = "orgwarden@example.com"
# to = ["security@example.com"]
# Where transport = "file" writes messages.
# dir = "outbox"
# A PEM file of extra CA certificates to trust for the SMTP server (a private relay), on top
# of the system's.
# ca_file = "/etc/orgwarden/smtp-ca.pem"
# The most CSV a digest attaches, the most severe open findings first; "0B" attaches none.
# Lower it when the mail server refuses digests for their size (a 552).
# max_csv_bytes = "6MiB"

# Your own templates for the digest's HTML and plain-text parts.
# [notify.email.templates]
# html = "templates/digest.html"
# text = "templates/digest.txt"

# What the crawl leaves out: view names of families this key may not read (a 403 on every
# run) or you do not audit. A skipped family is not read and not reported as failed; the
# families read under it (a group's members and roles) are skipped with it. What it stored
# before is kept unchanged, so its findings neither open nor resolve. `projects` is always
# read, and `project_api_keys` is skipped only with `org_admin_api_keys` (the API lists
# project keys among the admin keys; the project key lists tell them apart).
[collect]
# skip = ["org_invites", "org_certificates"]

# More channels, each named, any number. URLs, secrets and routing keys are read from an
# environment variable (`url_env`, `secret_env`, `routing_key_env`) or a file (`url_file = "…"`,
# `secret_file = "…"`, `routing_key_file = "…"`), never written here (`url = "https://hooks…"`,
# `secret = "…"` and `routing_key = "…"` are refused). https only, except towards loopback.
# [[notify.channel]]
# name = "security-slack"
# slack, webhook (signed JSON, see docs/webhook.md), pagerduty or email.
# kind = "slack"
# url_env = "SLACK_WEBHOOK_URL"
# Only findings at or above this severity, of rules matching these globs (default: all).
# min_severity = "medium"
# rules = ["api-key-*", "project-retention-not-zdr"]
#
# [[notify.channel]]
# name = "on-call"
# kind = "pagerduty"
# Triggers when a finding opens or reopens, resolves when it resolves.
# routing_key_env = "PAGERDUTY_ROUTING_KEY"
# min_severity = "high"
#
# [[notify.channel]]
# name = "siem"
# kind = "webhook"
# url_env = "SIEM_WEBHOOK_URL"
# The key of the Orgwarden-Signature header's HMAC.
# secret_env = "SIEM_WEBHOOK_SECRET"
# Also send the findings an exemption now covers, so a ticket opened for one can be closed.
# send_exempted = true
# A run that announces more is split into several messages of at most this size.
# max_body_bytes = "512KiB"
#
# [[notify.channel]]
# name = "finops-mail"
# kind = "email"
# Sent through [notify.email]'s server and sender, to these recipients.
# to = ["finops@example.com"]

# While the daemon runs: /healthz, /readyz and /metrics (Prometheus) on this address.
# Without it, no server runs. Keep it on loopback unless a proxy or network policy guards it.
[server]
# listen = "127.0.0.1:9464"

# The organization's daily costs (`orgwarden spend`, the spend rules), read with every
# snapshot. The first run reads the current month and `lookback` before it; later runs
# re-read the last `settle_days` closed days and today, whose figures can still change.
[spend]
enabled = true
lookback = "35d"
settle_days = 3

# The organization's audit log (`orgwarden events`, the event rules), read with every
# snapshot. The first run reads `lookback` back (at most 400d); later runs read only what
# is new since the last complete read. The organization must have audit logging turned on
# (Settings → Data controls → Data retention); when it is off, orgwarden says so.
# With `enabled = false` it is never read, and the rules over it are switched off.
[audit_log]
enabled = true
lookback = "30d"
"##;

/// Runs `orgwarden init`.
pub fn init(_global: &GlobalArgs, args: &InitArgs) -> anyhow::Result<Exit> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        // create_new: the existence check and the creation are one step, so a file that
        // appears in between is never clobbered.
        options.create_new(true);
    }
    let mut file = match options.open(&args.file) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CliError::usage(anyhow::anyhow!(
                "{} already exists; pass --force to overwrite it",
                args.file.display()
            )));
        }
        Err(error) => {
            return Err(CliError::usage(
                anyhow::Error::new(error).context(format!("cannot create {}", args.file.display())),
            ));
        }
    };
    file.write_all(STARTER_CONFIG.as_bytes())
        .with_context(|| format!("cannot write {}", args.file.display()))?;
    eprintln_or_drop!(
        "wrote {}; check it, with the rule files, with `orgwarden --config {} rules check`",
        args.file.display(),
        args.file.display()
    );
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cli::daemon::timing_from_config;
    use crate::config::Config;
    use crate::model::Family;

    #[test]
    fn starter_config_parses() {
        let config = Config::parse(STARTER_CONFIG, Path::new("orgwarden.toml")).unwrap();
        assert_eq!(config.schedule.schedule.expression(), "0 */6 * * *");
        assert_eq!(
            timing_from_config(&config).schedule.to_string(),
            "0 */6 * * * (UTC)"
        );
    }

    #[test]
    fn starter_config_parses_with_every_example_uncommented() {
        // Commented examples (`# key = value`, `# [table]`) must be real keys, so
        // uncommenting them all still gives a valid file.
        let uncommented: String = STARTER_CONFIG
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        }) =>
                {
                    rest.to_owned()
                }
                _ => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&uncommented, Path::new("orgwarden.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert!(config.notify.email.is_some());
        assert!(config.server.listen.is_some());
        assert_eq!(config.exemption.len(), 2);
        assert!(config.exemption[1].project.is_some());
        assert!(config.openai.admin_key_file.is_some());
        assert!(config.schedule.jitter.is_some());
        assert_eq!(
            config.collect.skip,
            [Family::OrgInvites, Family::OrgCertificates]
        );
        assert!(timing_from_config(&config).jitter.is_some());
    }

    #[test]
    fn starter_config_mentions_every_key() {
        // The reader's own key tables, so a key added there cannot be left unexplained here.
        let lines: Vec<&str> = STARTER_CONFIG
            .lines()
            .map(|l| l.trim_start_matches('#').trim())
            .collect();
        for (table, keys) in crate::config::KNOWN_KEYS {
            for key in *keys {
                let path = if table.is_empty() {
                    (*key).to_owned()
                } else {
                    format!("{table}.{key}")
                };
                let mentioned = lines.iter().any(|l| {
                    l.starts_with(&format!("{key} ="))
                        || l.contains(&format!("`{key} ="))
                        || l.starts_with(&format!("[{path}"))
                        || l.starts_with(&format!("[[{path}"))
                });
                assert!(mentioned, "the starter config does not explain `{path}`");
            }
        }
    }
}
