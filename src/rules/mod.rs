//! The rule engine: rule files in TOML (the shipped pack, embedded in the binary, plus
//! `[rules] paths`), validated with every problem reported at once, compiled to
//! parameterized SQL over the store's views, and evaluated by SQLite on a connection that
//! cannot write.
//!
//! A rule is either declarative — `where` conditions over its `resource_type` view, with
//! values given literally (`value = "90d"`) or by naming one of the rule's params
//! (`param = "max_idle_days"`; an integer param used as an age counts days) — or a `sql`
//! query returning `resource_id`, `project_id` and `message`, in which params are bound as
//! named parameters (`:max_idle_days`; list params as JSON text for `json_each`), `:now`
//! is the evaluation time in Unix seconds, `:unread` the views the latest snapshot could
//! not read (JSON text) and `:unread_projects` which projects of each view it could not read,
//! which a rule reporting a missing row must not trust. Unless a rule sets `include_archived = true`,
//! findings in archived projects are dropped.
//!
//! A rule over the audit log (`resource_type = "audit_log_events"`) reports events of a
//! recent window: its SQL reads `:window_start` (now less the rule's `window`, 24h unless
//! it says otherwise, overridable as the `window` param), so a finding resolves once the
//! window holds no matching event — and only after a complete audit-log read.

pub mod compile;
mod evaluate;
pub mod fixtures;
pub mod parse;
mod settings;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::config::Config;
use crate::diagnostics::{DiagnosticCode, Diagnostics};
use crate::exemptions::Exemption;
use crate::model::{Family, RuleId, Severity};

use compile::{Compiled, SqlValue};
pub use evaluate::{Budget, Evaluation, Hit, evaluate, evaluate_rules, evaluate_within};
pub use parse::Value;
pub use settings::warn_unused_exemptions;
use settings::{apply_config, validate_exemptions};
use validate::validate;

/// The shipped rule pack: `(file name, text)`, embedded so the binary needs no files.
pub const PACK: &[(&str, &str)] = &[
    (
        "rules/api-keys.toml",
        include_str!("../../rules/api-keys.toml"),
    ),
    ("rules/access.toml", include_str!("../../rules/access.toml")),
    ("rules/data.toml", include_str!("../../rules/data.toml")),
    ("rules/spend.toml", include_str!("../../rules/spend.toml")),
    ("rules/costs.toml", include_str!("../../rules/costs.toml")),
    (
        "rules/certificates.toml",
        include_str!("../../rules/certificates.toml"),
    ),
    (
        "rules/organization.toml",
        include_str!("../../rules/organization.toml"),
    ),
    (
        "rules/org-spend.toml",
        include_str!("../../rules/org-spend.toml"),
    ),
    (
        "rules/audit-log.toml",
        include_str!("../../rules/audit-log.toml"),
    ),
];

/// The fixtures of the shipped pack, embedded like the pack itself.
pub const PACK_FIXTURES: &[(&str, &str)] = &[
    (
        "rules/fixtures/admin-key-no-expiry.toml",
        include_str!("../../rules/fixtures/admin-key-no-expiry.toml"),
    ),
    (
        "rules/fixtures/admin-key-owner-not-owner.toml",
        include_str!("../../rules/fixtures/admin-key-owner-not-owner.toml"),
    ),
    (
        "rules/fixtures/admin-key-stale.toml",
        include_str!("../../rules/fixtures/admin-key-stale.toml"),
    ),
    (
        "rules/fixtures/api-key-old.toml",
        include_str!("../../rules/fixtures/api-key-old.toml"),
    ),
    (
        "rules/fixtures/api-key-owner-inactive.toml",
        include_str!("../../rules/fixtures/api-key-owner-inactive.toml"),
    ),
    (
        "rules/fixtures/api-key-stale.toml",
        include_str!("../../rules/fixtures/api-key-stale.toml"),
    ),
    (
        "rules/fixtures/archived-project-active-keys.toml",
        include_str!("../../rules/fixtures/archived-project-active-keys.toml"),
    ),
    (
        "rules/fixtures/certificate-expiring.toml",
        include_str!("../../rules/fixtures/certificate-expiring.toml"),
    ),
    (
        "rules/fixtures/invite-pending-stale.toml",
        include_str!("../../rules/fixtures/invite-pending-stale.toml"),
    ),
    (
        "rules/fixtures/org-certificate-expiring.toml",
        include_str!("../../rules/fixtures/org-certificate-expiring.toml"),
    ),
    (
        "rules/fixtures/org-no-spend-alert.toml",
        include_str!("../../rules/fixtures/org-no-spend-alert.toml"),
    ),
    (
        "rules/fixtures/org-no-spend-limit.toml",
        include_str!("../../rules/fixtures/org-no-spend-limit.toml"),
    ),
    (
        "rules/fixtures/org-retention-not-zdr.toml",
        include_str!("../../rules/fixtures/org-retention-not-zdr.toml"),
    ),
    (
        "rules/fixtures/org-too-many-owners.toml",
        include_str!("../../rules/fixtures/org-too-many-owners.toml"),
    ),
    (
        "rules/fixtures/org-user-external-domain.toml",
        include_str!("../../rules/fixtures/org-user-external-domain.toml"),
    ),
    (
        "rules/fixtures/project-hosted-tool-enabled.toml",
        include_str!("../../rules/fixtures/project-hosted-tool-enabled.toml"),
    ),
    (
        "rules/fixtures/project-model-permissions-unset.toml",
        include_str!("../../rules/fixtures/project-model-permissions-unset.toml"),
    ),
    (
        "rules/fixtures/project-no-owner.toml",
        include_str!("../../rules/fixtures/project-no-owner.toml"),
    ),
    (
        "rules/fixtures/project-no-spend-alert.toml",
        include_str!("../../rules/fixtures/project-no-spend-alert.toml"),
    ),
    (
        "rules/fixtures/project-retention-not-zdr.toml",
        include_str!("../../rules/fixtures/project-retention-not-zdr.toml"),
    ),
    (
        "rules/fixtures/project-too-many-owners.toml",
        include_str!("../../rules/fixtures/project-too-many-owners.toml"),
    ),
    (
        "rules/fixtures/project-user-external-domain.toml",
        include_str!("../../rules/fixtures/project-user-external-domain.toml"),
    ),
    (
        "rules/fixtures/service-account-owner.toml",
        include_str!("../../rules/fixtures/service-account-owner.toml"),
    ),
    (
        "rules/fixtures/spend-alert-no-recipients.toml",
        include_str!("../../rules/fixtures/spend-alert-no-recipients.toml"),
    ),
    (
        "rules/fixtures/spend-limit-enforcing.toml",
        include_str!("../../rules/fixtures/spend-limit-enforcing.toml"),
    ),
    (
        "rules/fixtures/project-spend-near-limit.toml",
        include_str!("../../rules/fixtures/project-spend-near-limit.toml"),
    ),
    (
        "rules/fixtures/org-spend-near-limit.toml",
        include_str!("../../rules/fixtures/org-spend-near-limit.toml"),
    ),
    (
        "rules/fixtures/project-spend-spike.toml",
        include_str!("../../rules/fixtures/project-spend-spike.toml"),
    ),
    (
        "rules/fixtures/project-spend-no-cap.toml",
        include_str!("../../rules/fixtures/project-spend-no-cap.toml"),
    ),
    (
        "rules/fixtures/admin-key-created.toml",
        include_str!("../../rules/fixtures/admin-key-created.toml"),
    ),
    (
        "rules/fixtures/org-owner-granted.toml",
        include_str!("../../rules/fixtures/org-owner-granted.toml"),
    ),
    (
        "rules/fixtures/login-failures.toml",
        include_str!("../../rules/fixtures/login-failures.toml"),
    ),
    (
        "rules/fixtures/scim-disabled.toml",
        include_str!("../../rules/fixtures/scim-disabled.toml"),
    ),
    (
        "rules/fixtures/ip-allowlist-changed.toml",
        include_str!("../../rules/fixtures/ip-allowlist-changed.toml"),
    ),
    (
        "rules/fixtures/audit-logging-disabled.toml",
        include_str!("../../rules/fixtures/audit-logging-disabled.toml"),
    ),
];

/// The window of a rule that reads `:window_start` and does not declare one.
pub const DEFAULT_WINDOW: &str = "24h";

/// The param holding a rule's window (`[rules.params.<id>] window = "48h"`).
pub const WINDOW_PARAM: &str = "window";

/// Why evaluating a rule failed at run time.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// SQLite refused the rule's query.
    #[error("rule `{rule}`: {source}")]
    Sql {
        /// The rule.
        rule: RuleId,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The rule ran past its time budget (`[rules] timeout`) and was stopped.
    #[error("rule `{rule}` ran longer than its {}s budget and was stopped (`[rules] timeout`)", .budget.as_secs())]
    TimedOut {
        /// The rule.
        rule: RuleId,
        /// The budget it exceeded.
        budget: std::time::Duration,
    },
    /// Evaluation was interrupted (shutdown, or a signal).
    #[error("evaluation interrupted during rule `{rule}`")]
    Interrupted {
        /// The rule running when it was interrupted.
        rule: RuleId,
    },
    /// The message template failed.
    #[error("rule `{rule}`: message template: {}", template_error(.source))]
    Template {
        /// The rule.
        rule: RuleId,
        /// The template error.
        source: minijinja::Error,
    },
}

/// A template error's kind and detail only: the engine's own "(in <string>:1)" names a
/// template file the rule's author never wrote.
fn template_error(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

impl RuleError {
    /// The rule the error is about.
    pub fn rule(&self) -> &RuleId {
        match self {
            RuleError::Sql { rule, .. }
            | RuleError::TimedOut { rule, .. }
            | RuleError::Interrupted { rule }
            | RuleError::Template { rule, .. } => rule,
        }
    }
}

/// The view a rule reports on (its `resource_type`): a family's view, or one of the
/// audit-log views, whose findings resolve only after a complete audit-log read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    /// The view of one family of the Admin API.
    Family(Family),
    /// `audit_log_events`: the events, read bounded by `:window_start`.
    AuditLogEvents,
    /// `audit_log_status`: the newest audit-log read.
    AuditLogStatus,
}

impl ResourceType {
    /// The view's name.
    pub fn view(self) -> &'static str {
        match self {
            ResourceType::Family(family) => family.view(),
            ResourceType::AuditLogEvents => crate::audit_log::EVENTS_VIEW,
            ResourceType::AuditLogStatus => crate::audit_log::STATUS_VIEW,
        }
    }

    /// The resource type whose view is named `view`.
    pub fn from_view(view: &str) -> Option<ResourceType> {
        match view {
            crate::audit_log::EVENTS_VIEW => Some(ResourceType::AuditLogEvents),
            crate::audit_log::STATUS_VIEW => Some(ResourceType::AuditLogStatus),
            _ => Family::from_view(view).map(ResourceType::Family),
        }
    }

    /// The family, for a family's view.
    pub fn family(self) -> Option<Family> {
        match self {
            ResourceType::Family(family) => Some(family),
            _ => None,
        }
    }

    /// Every name `resource_type` accepts.
    pub fn names() -> Vec<&'static str> {
        let mut names: Vec<&str> = Family::ALL.iter().map(|f| f.view()).collect();
        names.extend([crate::audit_log::EVENTS_VIEW, crate::audit_log::STATUS_VIEW]);
        names
    }
}

/// How a rule finds its resources.
#[derive(Clone, Debug)]
pub enum RuleBody {
    /// Compiled `where` conditions and an optional message template.
    Where {
        /// The compiled query.
        compiled: Compiled,
        /// The `message` template (minijinja; view columns, `params`, `now`).
        message: Option<String>,
    },
    /// A hand-written query returning `resource_id`, `project_id`, `message`.
    Sql {
        /// The query as written.
        sql: String,
    },
}

/// A validated rule with its effective (configured) params and severity.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Stable kebab-case id.
    pub id: RuleId,
    /// One-line title.
    pub title: String,
    /// Effective severity.
    pub severity: Severity,
    /// Severity in the rule file.
    pub default_severity: Severity,
    /// The view it reports on.
    pub resource_type: ResourceType,
    /// What it checks and why.
    pub description: String,
    /// What an operator should do.
    pub remediation: String,
    /// Param defaults from the rule file.
    pub defaults: BTreeMap<String, Value>,
    /// Effective params (defaults with `orgwarden.toml` overrides).
    pub params: BTreeMap<String, Value>,
    /// How it selects resources.
    pub body: RuleBody,
    /// Whether findings in archived projects are kept.
    pub include_archived: bool,
    /// The file it was defined in.
    pub source: String,
    /// The 1-based line of its `[[rule]]`.
    pub line: usize,
    /// False when `[rules] disabled` names it.
    pub enabled: bool,
}

impl Rule {
    /// The rule's window in seconds, when its SQL reads `:window_start`.
    pub fn window_secs(&self) -> Option<i64> {
        match self.params.get(WINDOW_PARAM)? {
            Value::Str(text) => compile::parse_age(text),
            _ => None,
        }
    }

    /// Whether the rule reads a view of the costs (`project_spend`, `org_spend`,
    /// `project_costs_daily`, or their table `cost_day`): its findings then stand still
    /// while the costs cannot be read. Judged from the SQL's words, so a mention in a
    /// comment counts too, which only holds findings longer.
    pub fn reads_costs(&self) -> bool {
        let mut costs: Vec<&str> = crate::store::spend_views()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        costs.push("cost_day");
        self.reads_any(&costs)
    }

    /// Whether the rule's SQL names one of `views` (as a word: `projects` is not read by
    /// a rule naming only `project_spend`).
    pub fn reads_any(&self, views: &[&str]) -> bool {
        // The rule's own SQL, not the archived-project filter `sql()` wraps it in: that
        // reads only the projects' `id` and `status`, and counting it would have every
        // rule read `projects`, so one project without its `created_at` would keep every
        // finding of the organization from resolving.
        let sql = self.own_sql().to_ascii_lowercase();
        sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| views.contains(&word))
    }

    /// The rule's query as written (or compiled from its `where`), before [`Rule::sql`]
    /// wraps it.
    fn own_sql(&self) -> String {
        match &self.body {
            RuleBody::Where { compiled, .. } => compiled.sql.clone(),
            RuleBody::Sql { sql } => sql.trim().trim_end_matches(';').trim_end().to_owned(),
        }
    }

    /// The SQL SQLite runs for this rule (named parameters, never spliced values).
    pub fn sql(&self) -> String {
        let inner = self.own_sql();
        let select = match &self.body {
            RuleBody::Where { .. } => "r.*",
            RuleBody::Sql { .. } => {
                "r.resource_id AS resource_id, r.project_id AS project_id, r.message AS message"
            }
        };
        let mut sql = format!("SELECT {select}\nFROM (\n{inner}\n) AS r");
        if !self.include_archived {
            sql.push_str(
                "\nWHERE r.project_id IS NULL OR r.project_id NOT IN \
                 (SELECT id FROM projects WHERE status = 'archived')",
            );
        }
        sql
    }

    /// The value of every named parameter of [`Rule::sql`] except `:now`, given the
    /// effective params; for `rules explain`.
    pub fn bindings(&self) -> Vec<(String, String)> {
        match &self.body {
            RuleBody::Where { compiled, .. } => compiled
                .binds
                .iter()
                .map(|(name, source)| {
                    let what = match source {
                        compile::BindSource::Literal(v) => v.to_string(),
                        compile::BindSource::AgeSeconds(s) => format!("{s} (seconds)"),
                        compile::BindSource::Param(p) => {
                            format!("params.{p} = {}", show(self.params.get(p)))
                        }
                        compile::BindSource::ParamAge(p) => format!(
                            "params.{p} = {} (as seconds: {})",
                            show(self.params.get(p)),
                            match compile::bind_value(source, &self.params) {
                                Some(SqlValue::Integer(n)) => n.to_string(),
                                _ => "?".to_owned(),
                            }
                        ),
                    };
                    (format!(":{name}"), what)
                })
                .collect(),
            RuleBody::Sql { .. } => self
                .params
                .iter()
                .map(|(k, v)| {
                    if k == WINDOW_PARAM {
                        (
                            ":window_start".to_owned(),
                            format!("now - params.window = {v}"),
                        )
                    } else {
                        (format!(":{k}"), v.to_string())
                    }
                })
                .collect(),
        }
    }
}

fn show(v: Option<&Value>) -> String {
    v.map(Value::to_string).unwrap_or_else(|| "?".into())
}

/// Every loaded rule, in file order.
#[derive(Clone, Debug)]
pub struct RuleSet {
    /// The rules.
    pub rules: Vec<Rule>,
    /// Folders holding fixtures for the user's rules (`<rule folder>/fixtures`).
    pub fixture_dirs: Vec<PathBuf>,
    /// How long one rule may run (`[rules] timeout`).
    pub timeout: std::time::Duration,
}

/// How long one rule may run when the configuration does not say.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Default for RuleSet {
    fn default() -> RuleSet {
        RuleSet {
            rules: Vec::new(),
            fixture_dirs: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl RuleSet {
    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id.as_str() == id)
    }

    /// The rules that are not disabled.
    pub fn enabled(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.enabled)
    }
}

/// What loading rules and configuration produced.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The rules (only meaningful when `diagnostics` has no errors).
    pub rules: RuleSet,
    /// The validated exemptions.
    pub exemptions: Vec<Exemption>,
    /// Every problem found.
    pub diagnostics: Diagnostics,
}

/// Loads the shipped pack and the configured rule paths, applies the configuration and
/// validates exemptions. `today` dates exemption warnings.
pub fn load(config: &Config, today: NaiveDate) -> Loaded {
    let mut diags = Diagnostics::new();
    let mut sources: Vec<(String, String)> = PACK
        .iter()
        .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
        .collect();
    let mut fixture_dirs: Vec<PathBuf> = Vec::new();
    // Files (and fixture folders) already read, by canonical path: `paths = ["my-rules",
    // "my-rules/extra.toml"]` reaches one file twice, which is not a rule defined twice.
    let mut seen_files: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    let mut seen_fixtures: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    let config_file = config.text.as_ref().map(|text| {
        let name = config
            .source
            .as_ref()
            .map_or_else(|| "orgwarden.toml".to_owned(), |p| p.display().to_string());
        diags.add_file(name, text.clone())
    });
    for path in &config.rules.paths {
        let resolved = config.resolve(path.get_ref());
        match rule_files(&resolved) {
            Ok(files) => {
                let dir = if resolved.is_dir() {
                    resolved.clone()
                } else {
                    resolved.parent().map(Path::to_path_buf).unwrap_or_default()
                };
                let fixtures = dir.join("fixtures");
                let key = std::fs::canonicalize(&dir)
                    .map_or_else(|_| fixtures.clone(), |d| d.join("fixtures"));
                if seen_fixtures.insert(key) {
                    fixture_dirs.push(fixtures);
                }
                for file in files {
                    if let Ok(canonical) = std::fs::canonicalize(&file)
                        && !seen_files.insert(canonical)
                    {
                        continue;
                    }
                    let name = file.display().to_string();
                    match read_rule_file(&file) {
                        Ok(bytes) => {
                            let Some(text) =
                                crate::diagnostics::decode_file(&name, bytes, &mut diags)
                            else {
                                continue;
                            };
                            // A copy of a shipped file (`paths = ["rules"]` in a checkout) is
                            // the pack itself, already loaded.
                            if !PACK.iter().any(|(_, pack)| *pack == text) {
                                sources.push((name, text));
                            }
                        }
                        Err(e) => {
                            // Shown at the `paths` entry that brought the file in.
                            let span = config_file.and_then(|_| crate::config::span_of(path));
                            diags.error(
                                DiagnosticCode::UnreadableRuleFile,
                                config_file,
                                span,
                                format!("cannot read rule file {}: {e}", file.display()),
                            );
                        }
                    }
                }
            }
            Err(e) => {
                let span = config_file.and_then(|_| crate::config::span_of(path));
                diags
                    .error(
                        DiagnosticCode::UnreadableRulePath,
                        config_file,
                        span,
                        format!("cannot read rule path {}: {e}", resolved.display()),
                    )
                    .label("this path");
            }
        }
    }
    let mut rules = rules_from_sources(&sources, &mut diags);
    let exemptions = if diags.has_unreadable_toml() {
        // The rules of a file that does not parse are unknown, so every reference to them
        // in the configuration would be reported as unknown too: the syntax error stands
        // alone (with any file that could not be read at all).
        diags.retain(|d| {
            d.code.stands_alone()
                || matches!(
                    d.code,
                    DiagnosticCode::UnreadableRuleFile | DiagnosticCode::UnreadableRulePath
                )
        });
        Vec::new()
    } else {
        apply_config(&mut rules, config, config_file, &mut diags);
        validate_exemptions(config, &rules, config_file, today, &mut diags)
    };
    // The file is registered above under the same name and text, so `extend` keeps it once.
    diags.extend(config.warnings.clone());
    diags.sort();
    Loaded {
        rules: RuleSet {
            rules,
            fixture_dirs,
            timeout: config
                .rules
                .timeout
                .map_or(DEFAULT_TIMEOUT, crate::duration::Duration::to_std),
        },
        exemptions,
        diagnostics: diags,
    }
}

/// As [`load`], for a configuration [`Config::check`] found `config_diagnostics` in: the
/// configuration's problems and the rules' are merged and sorted into one report, so a
/// single run shows everything (a syntax error alone, as nothing after it can be trusted).
pub fn load_checked(config: &Config, config_diagnostics: Diagnostics, today: NaiveDate) -> Loaded {
    if config_diagnostics.has_unreadable_toml() {
        return Loaded {
            rules: RuleSet::default(),
            exemptions: Vec::new(),
            diagnostics: config_diagnostics,
        };
    }
    let mut loaded = load(config, today);
    if !loaded.diagnostics.has_unreadable_toml() {
        loaded.diagnostics.extend(config_diagnostics);
        loaded.diagnostics.sort();
    }
    loaded
}

/// The `.toml` files of a rule path: the file itself, or a folder's files (not recursive,
/// so a `fixtures/` folder beside the rules is not read as rules), sorted.
/// A rule file's bytes. Only a regular file (or a link to one) is opened: a named pipe in a
/// rule folder would block the read forever, and a device has no end.
fn read_rule_file(file: &Path) -> std::io::Result<Vec<u8>> {
    if !std::fs::metadata(file)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    crate::size::read_file_bounded(file, crate::config::MAX_CONFIG_FILE)
}

fn rule_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Anything named `.toml` but a folder is kept: a dangling link, a pipe or a device
        // is then refused loudly instead of quietly leaving its rules out.
        .filter(|p| !p.is_dir() && p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Runs every enabled rule once over the built-in demo organization, stored as a snapshot
/// of `now` would store it, under the rule set's budget, and reports each one that cannot
/// finish there (`rule-timed-out`) or fails on its data (`rule-fails`): a rule that reads
/// plain text as a JSON list prepares on an empty store, and fails only once a row is there.
pub fn check_run(rules: &RuleSet, now: i64, diags: &mut Diagnostics) {
    let store = match fixtures::store_of(&crate::sim::Org::demo(now), now) {
        Ok(store) => store,
        Err(e) => {
            diags.error(
                DiagnosticCode::Internal,
                None,
                None,
                format!("cannot store the demo organization rules are run over: {e}"),
            );
            return;
        }
    };
    let budget = Budget::new(rules.timeout);
    for rule in rules.enabled() {
        let Ok(evaluation) = evaluate_within(store.reader(), &[rule], now, &budget) else {
            // Only a cancelled budget ends the evaluation itself; nothing cancels this one.
            continue;
        };
        for e in &evaluation.unfinished {
            let (code, label, help) = match e {
                RuleError::TimedOut { .. } => (
                    DiagnosticCode::RuleTimedOut,
                    "this rule",
                    "a recursive CTE needs a condition that ends it",
                ),
                RuleError::Template { .. } => (
                    DiagnosticCode::RuleFails,
                    "this rule's `message` fails on the demo organization",
                    "the `message` template uses a filter, test or function minijinja does not \
                     have, or one that fails on a value of the demo's rows; a missing (NULL) \
                     column is `none`: `{{ x or \"…\" }}` writes something instead",
                ),
                _ if e.to_string().contains("JSON") => (
                    DiagnosticCode::RuleFails,
                    "this rule fails on the demo organization",
                    "`empty`, `not_empty` and `contains` (and SQLite's json_ functions) need a \
                     column holding a JSON list; docs/views.md says which columns do",
                ),
                _ => (
                    DiagnosticCode::RuleFails,
                    "this rule fails on the demo organization",
                    "`orgwarden rules explain ID` shows its SQL; `orgwarden demo` stores the \
                     organization it failed on, for `orgwarden --db orgwarden-demo.db query`",
                ),
            };
            // At the rule's first line, in the file registered when the rules were loaded.
            let diagnostic = match diags.line_in(&rule.source, rule.line) {
                Some((file, span)) => diags
                    .error(code, Some(file), Some(span), e.to_string())
                    .label(label),
                None => diags
                    .error(code, None, None, e.to_string())
                    .help(format!("defined at {}:{}", rule.source, rule.line)),
            };
            diagnostic.help(help);
        }
    }
}

/// Parses and validates rule files given as `(name, text)`, with default params and
/// severities; every problem goes to `diags`.
pub fn rules_from_sources(sources: &[(String, String)], diags: &mut Diagnostics) -> Vec<Rule> {
    // SQL rules are prepared against an empty store: the very views (and `findings`,
    // `snapshots`, `object_versions`) they will run over.
    let scratch = match crate::store::Store::open_in_memory() {
        Ok(store) => Some(store),
        Err(e) => {
            diags.error(
                DiagnosticCode::Internal,
                None,
                None,
                format!("cannot create the in-memory store SQL rules are checked against: {e}"),
            );
            None
        }
    };
    let mut rules: Vec<Rule> = Vec::new();
    // Rule id → where it was first defined (`file:line`).
    let mut seen: HashMap<String, String> = HashMap::new();
    for (name, text) in sources {
        let file = diags.add_file(name.clone(), text.clone());
        for raw in parse::parse_rule_file(text, file, diags) {
            if let Some(id) = &raw.id {
                if let Some(first) = seen.get(id.get_ref()) {
                    let shipped = PACK.iter().any(|(pack, _)| {
                        first
                            .strip_prefix(pack)
                            .is_some_and(|rest| rest.starts_with(':'))
                    });
                    let d = diags.error(
                        DiagnosticCode::DuplicateId,
                        Some(file),
                        Some(id.span()),
                        format!("rule id `{}` is defined twice", id.get_ref()),
                    );
                    d.label("second definition").help(if shipped {
                        // The pack's files are inside the binary, not in the user's folder.
                        format!(
                            "first defined by the shipped rule pack ({first}; `orgwarden rules \
                             explain {}` shows it)",
                            id.get_ref()
                        )
                    } else {
                        format!("first defined at {first}")
                    });
                    if shipped {
                        d.help(
                            "to change a shipped rule, override its params or severity under \
                             [rules] in orgwarden.toml, or disable it and give yours a new id",
                        );
                    }
                    continue;
                }
                let line = crate::config::line_column(text, id.span().start).0;
                seen.insert(id.get_ref().clone(), format!("{name}:{line}"));
            }
            if let Some(rule) = validate(
                raw,
                name,
                text,
                scratch.as_ref().map(super::store::Store::conn),
                diags,
            ) {
                rules.push(rule);
            }
        }
    }
    rules
}

#[cfg(test)]
mod event_tests;
#[cfg(test)]
mod tests;
