//! `orgwarden rules`: list, check, test and explain the rules.

use std::path::PathBuf;

use anyhow::anyhow;
use chrono::Utc;

use crate::findings::{self};
use crate::report::{self, Wrap};
use crate::rules::{self, Loaded, fixtures};

use super::audit::{load_rules, print_diagnostics};
use super::{CliError, Exit, GlobalArgs, unknown_name};

/// `orgwarden rules …`
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Every rule: id, severity, resource type, params, source file
    #[command(after_help = "Example: orgwarden rules list | grep high\n\n\
        The shipped rule pack and the files `[rules] paths` names; `[rules] disabled` and \
        `[rules.severity]` apply.")]
    List,
    /// Check every rule and config file, and run every rule once over the built-in demo
    /// organization; report every problem at once
    #[command(
        after_help = "Example: orgwarden --config /etc/orgwarden/orgwarden.toml rules check\n\n\
        Each problem names its file, line and column, with a stable code (`error[bad-cron]`) \
        that docs/diagnostics.md explains. Run it after every edit, and before a daemon's \
        reload (SIGHUP).\n\n\
        Exit codes: 0 no error (warnings are only shown); 2 any error."
    )]
    Check,
    /// Run each rule's fixtures through the real store and evaluator
    #[command(after_help = "Examples:\n  \
        orgwarden rules test                            every rule with fixtures\n  \
        orgwarden rules test my-rule --fixtures tests/rules\n\n\
        Fixtures are the `fixtures/` folder beside each rule file (see rules/README.md).\n\n\
        Exit codes: 0 every case passed; 2 a case failed, or a rule named has no case.")]
    Test {
        /// Only these rule ids
        ids: Vec<String>,
        /// Extra fixture folders
        #[arg(long)]
        fixtures: Vec<PathBuf>,
    },
    /// A rule's description, params, remediation and compiled SQL
    #[command(after_help = "Example: orgwarden rules explain api-key-stale\n\n\
        Exit codes: 0 done; 2 no rule has that id (the closest ids are suggested).")]
    Explain {
        /// The rule id
        id: String,
    },
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

pub(super) fn rules_list(global: &GlobalArgs) -> anyhow::Result<Exit> {
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

pub(super) fn unknown_rule(loaded: &Loaded, id: &str) -> anyhow::Error {
    let ids: Vec<&str> = loaded.rules.rules.iter().map(|r| r.id.as_str()).collect();
    unknown_name(format_args!("no rule has the id `{id}`"), id, &ids)
}

pub(super) fn rules_explain(global: &GlobalArgs, id: &str) -> anyhow::Result<Exit> {
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
    // On a terminal the prose is wrapped at its width: a paragraph is one line (reflowed
    // from the rule file), which the terminal would fold in the middle of words.
    let prose = |text: &str| match report::output_width() {
        Some(width) => report::wrap_prose(text.trim(), usize::from(width)),
        None => text.trim().to_owned(),
    };
    out.push_str(&format!("{}\n\n", prose(&rule.description)));
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
    out.push_str(&format!("remediation:\n{}\n\n", prose(&rule.remediation)));
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

pub(super) fn rules_check(global: &GlobalArgs) -> anyhow::Result<Exit> {
    let config = global.load_config()?;
    let mut loaded = rules::load(&config, Utc::now().date_naive());
    if !loaded.diagnostics.has_errors() {
        rules::check_run(
            &loaded.rules,
            Utc::now().timestamp(),
            &mut loaded.diagnostics,
        );
    }
    // Exemptions matching nothing can only be judged against stored findings.
    let db = global.db_path(&config);
    if db.exists() && !loaded.diagnostics.has_errors() {
        // As the other read commands do: a database an older orgwarden wrote is upgraded
        // first (under the writer lock) rather than left unjudged.
        match super::read::open_path(&db) {
            Ok(store) => {
                let stored: Vec<_> = findings::load(store.reader())?
                    .into_iter()
                    .map(|f| (f.rule_id, f.resource_id, f.project_id))
                    .collect();
                rules::warn_unused_exemptions(
                    &config,
                    &loaded.exemptions,
                    &stored,
                    &mut loaded.diagnostics,
                );
            }
            // Said, not skipped in silence: the check is only partly done.
            Err(e) => tracing::warn!(
                db = %db.display(),
                "exemptions not checked against stored findings: {e:#}"
            ),
        }
    }
    print_diagnostics(&loaded.diagnostics, "")?;
    // The files `[notify.email]` names would otherwise first fail `audit --notify` or the
    // daemon's start.
    crate::notify::check_email_files(&config).map_err(|e| CliError::usage(anyhow!(e)))?;
    println!(
        "{} rules ok ({} enabled), {} exemption(s)",
        loaded.rules.rules.len(),
        loaded.rules.enabled().count(),
        loaded.exemptions.len()
    );
    Ok(Exit::Ok)
}

pub(super) fn rules_test(
    global: &GlobalArgs,
    ids: &[String],
    extra: &[PathBuf],
) -> anyhow::Result<Exit> {
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
            // The rule id is the file's name unless it says `rule = …`: a misspelt file name
            // is the usual cause, so the id it meant is named.
            let meant = crate::config::closest(
                &case.rule,
                loaded.rules.rules.iter().map(|r| r.id.as_str()),
            )
            .map(|id| format!("; did you mean `{id}`?"))
            .unwrap_or_default();
            println!(
                "FAIL {} / {}: no rule has the id `{}` ({}:{}){meant}",
                case.rule, case.name, case.rule, case.file, case.line
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
        println!(
            "FAIL {} / {} ({}:{})",
            case.rule, case.name, case.file, case.line
        );
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
    // A rule named on the command line is one someone means to test: passing with nothing
    // run would tell a CI job its new rule works.
    if !ids.is_empty() && !untested.is_empty() {
        return Err(CliError::usage(anyhow!(
            "no fixture case tests {}: add one beside the rule file or pass --fixtures \
             (see rules/README.md, \"Fixtures\")",
            untested.join(", ")
        )));
    }
    Ok(Exit::Ok)
}
