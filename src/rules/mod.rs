//! The rule engine: rule files in TOML (the shipped pack, embedded in the binary, plus
//! `[rules] paths`), validated with every problem reported at once, compiled to
//! parameterized SQL over the store's views, and evaluated by SQLite on a connection that
//! cannot write.
//!
//! A rule is either declarative — `where` conditions over its `resource_type` view, with
//! values given literally (`value = "90d"`) or by naming one of the rule's params
//! (`param = "max_idle_days"`; an integer param used as an age counts days) — or a `sql`
//! query returning `resource_id`, `project_id` and `message`, in which params are bound as
//! named parameters (`:max_idle_days`; list params as JSON text for `json_each`) and `:now`
//! is the evaluation time in Unix seconds. Unless a rule sets `include_archived = true`,
//! findings in archived projects are dropped.

pub mod compile;
pub mod fixtures;
pub mod parse;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rusqlite::Connection;

use crate::config::Config;
use crate::diagnostics::{Diagnostics, FileId};
use crate::findings::Exemption;
use crate::model::{Family, ProjectId, RuleId, Severity};

use compile::{Compiled, SqlValue};
pub use parse::Value;

/// The shipped rule pack: `(file name, text)`, embedded so the binary needs no files.
pub const PACK: &[(&str, &str)] = &[
    (
        "rules/api-keys.toml",
        include_str!("../../rules/api-keys.toml"),
    ),
    ("rules/access.toml", include_str!("../../rules/access.toml")),
    ("rules/data.toml", include_str!("../../rules/data.toml")),
    ("rules/spend.toml", include_str!("../../rules/spend.toml")),
    (
        "rules/certificates.toml",
        include_str!("../../rules/certificates.toml"),
    ),
];

/// The fixtures of the shipped pack, embedded like the pack itself.
pub const PACK_FIXTURES: &[(&str, &str)] = &[
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
];

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
    /// The message template failed.
    #[error("rule `{rule}`: message template: {source}")]
    Template {
        /// The rule.
        rule: RuleId,
        /// The template error.
        source: minijinja::Error,
    },
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
    pub resource_type: Family,
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
    /// The SQL SQLite runs for this rule (named parameters, never spliced values).
    pub fn sql(&self) -> String {
        let inner = match &self.body {
            RuleBody::Where { compiled, .. } => compiled.sql.clone(),
            RuleBody::Sql { sql } => sql.trim().trim_end_matches(';').trim_end().to_owned(),
        };
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
                .map(|(k, v)| (format!(":{k}"), v.to_string()))
                .collect(),
        }
    }
}

fn show(v: Option<&Value>) -> String {
    v.map(Value::to_string).unwrap_or_else(|| "?".into())
}

/// Every loaded rule, in file order.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// The rules.
    pub rules: Vec<Rule>,
    /// Folders holding fixtures for the user's rules (`<rule folder>/fixtures`).
    pub fixture_dirs: Vec<PathBuf>,
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
    let mut fixture_dirs = Vec::new();
    let config_file = config.text.as_ref().map(|text| {
        let name = config
            .source
            .as_ref()
            .map_or_else(|| "orgwarden.toml".to_owned(), |p| p.display().to_string());
        diags.add_file(name, text.clone())
    });
    for (i, path) in config.rules.paths.iter().enumerate() {
        let resolved = config.resolve(path);
        match rule_files(&resolved) {
            Ok(files) => {
                let dir = if resolved.is_dir() {
                    resolved.clone()
                } else {
                    resolved.parent().map(Path::to_path_buf).unwrap_or_default()
                };
                fixture_dirs.push(dir.join("fixtures"));
                for file in files {
                    match std::fs::read_to_string(&file) {
                        Ok(text) => sources.push((file.display().to_string(), text)),
                        Err(e) => {
                            diags.error(
                                "unreadable-rule-file",
                                None,
                                None,
                                format!("cannot read rule file {}: {e}", file.display()),
                            );
                        }
                    }
                }
            }
            Err(e) => {
                let span = config_file.and_then(|_| {
                    config_span(
                        config,
                        &[Seg::Key("rules"), Seg::Key("paths"), Seg::Index(i)],
                    )
                });
                diags
                    .error(
                        "unreadable-rule-path",
                        config_file,
                        span,
                        format!("cannot read rule path {}: {e}", resolved.display()),
                    )
                    .label("this path");
            }
        }
    }
    let mut rules = rules_from_sources(&sources, &mut diags);
    apply_config(&mut rules, config, config_file, &mut diags);
    let exemptions = validate_exemptions(config, &rules, config_file, today, &mut diags);
    diags.sort();
    Loaded {
        rules: RuleSet {
            rules,
            fixture_dirs,
        },
        exemptions,
        diagnostics: diags,
    }
}

/// The `.toml` files of a rule path: the file itself, or a folder's files (not recursive,
/// so a `fixtures/` folder beside the rules is not read as rules), sorted.
fn rule_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses and validates rule files given as `(name, text)`, with default params and
/// severities; every problem goes to `diags`.
pub fn rules_from_sources(sources: &[(String, String)], diags: &mut Diagnostics) -> Vec<Rule> {
    let scratch = Connection::open_in_memory().ok();
    if let Some(conn) = &scratch {
        // The scratch schema is our own DDL over the model catalog; failing here is a bug.
        if let Err(e) = compile::create_scratch_schema(conn) {
            diags.error("internal", None, None, format!("scratch schema: {e}"));
        }
    }
    let mut rules: Vec<Rule> = Vec::new();
    let mut seen: HashMap<String, (FileId, std::ops::Range<usize>)> = HashMap::new();
    for (name, text) in sources {
        let file = diags.add_file(name.clone(), text.clone());
        for raw in parse::parse_rule_file(text, file, diags) {
            if let Some(id) = &raw.id {
                if let Some((first_file, first_span)) = seen.get(id.get_ref()) {
                    let first = format!(
                        "{}:{}",
                        diags.file_name(*first_file),
                        crate::config::line_column(
                            &sources[first_file_index(sources, diags, *first_file)].1,
                            first_span.start
                        )
                        .0
                    );
                    diags
                        .error(
                            "duplicate-id",
                            Some(file),
                            Some(id.span()),
                            format!("rule id `{}` is defined twice", id.get_ref()),
                        )
                        .label("second definition")
                        .help(format!("first defined at {first}"));
                    continue;
                }
                seen.insert(id.get_ref().clone(), (file, id.span()));
            }
            if let Some(rule) = validate(raw, name, text, scratch.as_ref(), diags) {
                rules.push(rule);
            }
        }
    }
    rules
}

/// Index into `sources` of a file registered from it (files are registered in order,
/// possibly after a configuration file).
fn first_file_index(sources: &[(String, String)], diags: &Diagnostics, file: FileId) -> usize {
    let name = diags.file_name(file);
    sources.iter().position(|(n, _)| n == name).unwrap_or(0)
}

/// Joins the hard-wrapped lines of each paragraph of a rule's prose, so reports, JSON and
/// CSV get one line per paragraph; blank lines still separate paragraphs.
fn reflow(text: &str) -> String {
    text.trim()
        .split("\n\n")
        .map(|para| para.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|para| !para.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn is_kebab(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('-')
        && !id.ends_with('-')
        && !id.contains("--")
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn validate(
    raw: parse::RawRule,
    source: &str,
    text: &str,
    scratch: Option<&Connection>,
    diags: &mut Diagnostics,
) -> Option<Rule> {
    let file = raw.file;
    let before = diags.error_count();
    let missing = |key: &str, diags: &mut Diagnostics| {
        diags
            .error(
                "missing-key",
                Some(file),
                Some(raw.span.clone()),
                format!("rule is missing `{key}`"),
            )
            .label(format!("this rule has no `{key}`"));
    };
    let id = match &raw.id {
        Some(id) if is_kebab(id.get_ref()) => Some(id.get_ref().clone()),
        Some(id) => {
            diags
                .error(
                    "bad-id",
                    Some(file),
                    Some(id.span()),
                    format!("rule id `{}` is not kebab-case", id.get_ref()),
                )
                .label("expected lowercase words joined by `-`");
            None
        }
        None => {
            missing("id", diags);
            None
        }
    };
    for (key, value) in [
        ("title", &raw.title),
        ("description", &raw.description),
        ("remediation", &raw.remediation),
    ] {
        match value {
            None => missing(key, diags),
            Some(v) if v.get_ref().trim().is_empty() => {
                diags.error(
                    "empty-value",
                    Some(file),
                    Some(v.span()),
                    format!("`{key}` is empty"),
                );
            }
            Some(_) => {}
        }
    }
    let severity = match &raw.severity {
        Some(s) => match s.get_ref().parse::<Severity>() {
            Ok(sev) => Some(sev),
            Err(msg) => {
                diags
                    .error("bad-severity", Some(file), Some(s.span()), msg)
                    .label("unknown severity");
                None
            }
        },
        None => {
            missing("severity", diags);
            None
        }
    };
    let family = match &raw.resource_type {
        Some(rt) => match Family::from_view(rt.get_ref()) {
            Some(f) => Some(f),
            None => {
                let views: Vec<&str> = Family::ALL.iter().map(|f| f.view()).collect();
                diags
                    .error(
                        "unknown-resource-type",
                        Some(file),
                        Some(rt.span()),
                        format!("`{}` is not a view", rt.get_ref()),
                    )
                    .label("unknown view")
                    .help(format!("views: {}", views.join(", ")));
                None
            }
        },
        None => {
            missing("resource_type", diags);
            None
        }
    };
    let mut defaults = BTreeMap::new();
    for (name, value) in &raw.params {
        if defaults
            .insert(name.get_ref().clone(), value.get_ref().clone())
            .is_some()
        {
            diags.error(
                "duplicate-param",
                Some(file),
                Some(name.span()),
                format!("param `{}` is declared twice", name.get_ref()),
            );
        }
    }
    let body = match (&raw.where_, &raw.sql) {
        (Some(_), Some(sql)) => {
            diags
                .error(
                    "where-and-sql",
                    Some(file),
                    Some(sql.span()),
                    "a rule has `where` or `sql`, not both",
                )
                .label("remove this or the `where`");
            None
        }
        (None, None) => {
            diags
                .error(
                    "missing-key",
                    Some(file),
                    Some(raw.span.clone()),
                    "rule has neither `where` nor `sql`",
                )
                .help("add [rule.where] conditions or a `sql` query");
            None
        }
        (Some(cond), None) => family.and_then(|family| {
            if let Some(m) = &raw.message {
                check_template(m, family, &defaults, file, diags);
            }
            compile::compile_where(cond, family, &defaults, file, diags).map(|compiled| {
                RuleBody::Where {
                    compiled,
                    message: raw.message.as_ref().map(|m| m.get_ref().clone()),
                }
            })
        }),
        (None, Some(sql)) => {
            if let Some(m) = &raw.message {
                diags
                    .error(
                        "unexpected-key",
                        Some(file),
                        Some(m.span()),
                        "`message` is for `where` rules; a `sql` rule returns a `message` column",
                    )
                    .label("remove this");
            }
            Some(RuleBody::Sql {
                sql: sql.get_ref().clone(),
            })
        }
    };
    if diags.error_count() > before {
        return None;
    }
    let (id, severity, family, body) = (id?, severity?, family?, body?);
    let rule = Rule {
        id: RuleId(id),
        title: raw.title.map(|t| reflow(t.get_ref())).unwrap_or_default(),
        severity,
        default_severity: severity,
        resource_type: family,
        description: raw
            .description
            .map(|t| reflow(t.get_ref()))
            .unwrap_or_default(),
        remediation: raw
            .remediation
            .map(|t| reflow(t.get_ref()))
            .unwrap_or_default(),
        params: defaults.clone(),
        defaults,
        body,
        include_archived: raw.include_archived.is_some_and(|b| *b.get_ref()),
        source: source.to_owned(),
        line: crate::config::line_column(text, raw.span.start).0,
        enabled: true,
    };
    if let (Some(conn), Some(sql)) = (scratch, raw.sql.as_ref()) {
        check_sql(&rule, conn, sql, file, diags);
    }
    if diags.error_count() > before {
        return None;
    }
    Some(rule)
}

/// Checks a `message` template's syntax and that it only names view columns, `params`,
/// `now` and `title`.
fn check_template(
    message: &toml::Spanned<String>,
    family: Family,
    params: &BTreeMap<String, Value>,
    file: FileId,
    diags: &mut Diagnostics,
) {
    let env = minijinja::Environment::new();
    match env.template_from_str(message.get_ref()) {
        Ok(tmpl) => {
            let columns = compile::view_columns(family);
            let mut unknown: Vec<String> = tmpl
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| {
                    !columns.contains(&v.as_str())
                        && !matches!(v.as_str(), "params" | "now" | "title")
                })
                .collect();
            unknown.sort();
            for name in unknown {
                diags
                    .error(
                        "unknown-column",
                        Some(file),
                        Some(message.span()),
                        format!(
                            "message names `{name}`, which is not a column of `{}`",
                            family.view()
                        ),
                    )
                    .help(format!(
                        "a message may use: {}, params, now, title",
                        columns.join(", ")
                    ));
            }
            let mut nested: Vec<String> = tmpl
                .undeclared_variables(true)
                .into_iter()
                .filter_map(|v| v.strip_prefix("params.").map(str::to_owned))
                .filter(|p| !params.contains_key(p))
                .collect();
            nested.sort();
            for p in nested {
                diags.error(
                    "unknown-param",
                    Some(file),
                    Some(message.span()),
                    format!("message names `params.{p}`, which the rule does not declare"),
                );
            }
        }
        Err(e) => {
            diags
                .error(
                    "bad-template",
                    Some(file),
                    Some(message.span()),
                    format!("message template does not parse: {e}"),
                )
                .label("here");
        }
    }
}

/// Prepares a `sql` rule on the scratch schema: it must prepare, be read-only, return the
/// three columns and only use `:now` and the rule's params.
fn check_sql(
    rule: &Rule,
    conn: &Connection,
    sql: &toml::Spanned<String>,
    file: FileId,
    diags: &mut Diagnostics,
) {
    let before = diags.error_count();
    let inner = sql.get_ref().trim().trim_end_matches(';');
    let stmt = match conn.prepare(inner) {
        Ok(stmt) => stmt,
        Err(e) => {
            diags
                .error(
                    "sql-does-not-prepare",
                    Some(file),
                    Some(sql.span()),
                    format!("SQL does not prepare: {}", sqlite_message(&e)),
                )
                .label("this query")
                .help("queries run over the views of DESIGN.md; `orgwarden rules explain ID` shows a rule's SQL");
            return;
        }
    };
    if !stmt.readonly() {
        diags
            .error(
                "sql-not-read-only",
                Some(file),
                Some(sql.span()),
                "rule SQL must only read (a SELECT)",
            )
            .label("this query writes");
    }
    let names: Vec<&str> = stmt.column_names().collect();
    let missing: Vec<&str> = ["resource_id", "project_id", "message"]
        .into_iter()
        .filter(|c| !names.contains(c))
        .collect();
    if !missing.is_empty() {
        diags
            .error(
                "sql-missing-column",
                Some(file),
                Some(sql.span()),
                format!("SQL must return column(s) {}", missing.join(", ")),
            )
            .help(format!("it returns: {}", names.join(", ")));
    }
    for i in 1..=stmt.parameter_count() {
        match stmt.parameter_name(i) {
            Some(":now") => {}
            Some(name) if name.starts_with(':') && rule.defaults.contains_key(&name[1..]) => {}
            Some(name) => {
                diags
                    .error(
                        "unknown-param",
                        Some(file),
                        Some(sql.span()),
                        format!(
                            "SQL uses `{name}`, which is neither `:now` nor a param of the rule"
                        ),
                    )
                    .help("declare it under [rule.params]; bind it as `:name`");
            }
            None => {
                diags.error(
                    "positional-param",
                    Some(file),
                    Some(sql.span()),
                    "SQL uses a positional parameter (`?`); name it `:param` instead",
                );
            }
        }
    }
    drop(stmt);
    if diags.error_count() > before {
        return;
    }
    if let Err(e) = conn.prepare(&rule.sql()) {
        diags.error(
            "sql-does-not-prepare",
            Some(file),
            Some(sql.span()),
            format!(
                "SQL does not prepare once wrapped (a trailing statement?): {}",
                sqlite_message(&e)
            ),
        );
    }
}

fn sqlite_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    }
}

/// A step of a path into a TOML document.
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The span of the value at `path` in the configuration file's text.
fn config_span(config: &Config, path: &[Seg<'_>]) -> Option<std::ops::Range<usize>> {
    let text = config.text.as_ref()?;
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut span = root.span();
    let mut current = toml::de::DeValue::Table(root.into_inner());
    for seg in path {
        let next = match (seg, &current) {
            (Seg::Key(k), toml::de::DeValue::Table(t)) => t.get(*k)?.clone(),
            (Seg::Index(i), toml::de::DeValue::Array(a)) => a.get(*i)?.clone(),
            _ => return None,
        };
        span = next.span();
        current = next.into_inner();
    }
    Some(span)
}

/// The span of a key (not its value) in the configuration file's text.
fn config_key_span(config: &Config, table: &[&str], key: &str) -> Option<std::ops::Range<usize>> {
    let text = config.text.as_ref()?;
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut current = root.into_inner();
    for k in table {
        current = current.get(*k)?.get_ref().as_table()?.clone();
    }
    current
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(k, _)| k.span())
}

/// Applies `[rules]` of the configuration: disabled rules, severities and params, with
/// every unknown rule, unknown param and wrongly typed value reported.
fn apply_config(
    rules: &mut [Rule],
    config: &Config,
    file: Option<FileId>,
    diags: &mut Diagnostics,
) {
    let ids: Vec<String> = rules.iter().map(|r| r.id.0.clone()).collect();
    let unknown_rule = |id: &str, span: Option<std::ops::Range<usize>>, diags: &mut Diagnostics| {
        let d = diags.error(
            "unknown-rule",
            file,
            span,
            format!("no rule has the id `{id}`"),
        );
        d.label("unknown rule");
        if let Some(close) = closest(id, &ids) {
            d.help(format!("did you mean `{close}`?"));
        }
    };
    for (i, id) in config.rules.disabled.iter().enumerate() {
        match rules.iter_mut().find(|r| r.id.as_str() == id) {
            Some(rule) => rule.enabled = false,
            None => unknown_rule(
                id,
                config_span(
                    config,
                    &[Seg::Key("rules"), Seg::Key("disabled"), Seg::Index(i)],
                ),
                diags,
            ),
        }
    }
    for (id, severity) in &config.rules.severity {
        match rules.iter_mut().find(|r| r.id.as_str() == id) {
            Some(rule) => rule.severity = *severity,
            None => unknown_rule(
                id,
                config_key_span(config, &["rules", "severity"], id),
                diags,
            ),
        }
    }
    for (id, table) in &config.rules.params {
        let Some(rule) = rules.iter_mut().find(|r| r.id.as_str() == id) else {
            unknown_rule(id, config_key_span(config, &["rules", "params"], id), diags);
            continue;
        };
        for (name, value) in table {
            let span = config_span(
                config,
                &[
                    Seg::Key("rules"),
                    Seg::Key("params"),
                    Seg::Key(id),
                    Seg::Key(name),
                ],
            );
            let Some(default) = rule.defaults.get(name) else {
                let known: Vec<&str> = rule.defaults.keys().map(String::as_str).collect();
                diags
                    .error(
                        "unknown-param",
                        file,
                        config_key_span(config, &["rules", "params", id], name),
                        format!("rule `{id}` has no param `{name}`"),
                    )
                    .label("unknown param")
                    .help(if known.is_empty() {
                        format!("rule `{id}` takes no params")
                    } else {
                        format!("params of `{id}`: {}", known.join(", "))
                    });
                continue;
            };
            let parsed = match Value::from_toml(value) {
                Ok(v) => v,
                Err(kind) => {
                    diags
                        .error(
                            "wrong-param-type",
                            file,
                            span,
                            format!(
                                "param `{name}` of `{id}` is {}, not {}",
                                parse::a(default.type_name()),
                                parse::a(kind)
                            ),
                        )
                        .label(format!("expected {}", parse::a(default.type_name())));
                    continue;
                }
            };
            let same_type = std::mem::discriminant(&parsed) == std::mem::discriminant(default);
            if !same_type {
                diags
                    .error(
                        "wrong-param-type",
                        file,
                        span,
                        format!(
                            "param `{name}` of `{id}` is {}, not {}",
                            parse::a(default.type_name()),
                            parse::a(parsed.type_name())
                        ),
                    )
                    .label(format!("expected {}", parse::a(default.type_name())))
                    .help(format!("the default is {default}"));
                continue;
            }
            if let (Value::Str(d), Value::Str(s)) = (default, &parsed)
                && compile::parse_age(d).is_some()
                && compile::parse_age(s).is_none()
            {
                diags
                    .error("bad-age", file, span, format!("`{s}` is not an age"))
                    .help("ages are like \"90d\", \"12h\", \"30m\", \"45s\" or \"2w\"");
                continue;
            }
            rule.params.insert(name.clone(), parsed);
        }
    }
}

/// The known id closest to a mistyped one, when it is close enough to be a typo.
fn closest<'a>(id: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(id, k), k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Validates `[[exemption]]` entries: known rule, glob, date; warns about those that
/// expire within 14 days of `today`.
fn validate_exemptions(
    config: &Config,
    rules: &[Rule],
    file: Option<FileId>,
    today: NaiveDate,
    diags: &mut Diagnostics,
) -> Vec<Exemption> {
    let ids: Vec<String> = rules.iter().map(|r| r.id.0.clone()).collect();
    let mut out = Vec::new();
    for (i, e) in config.exemption.iter().enumerate() {
        let at = |key: &str| {
            config_span(
                config,
                &[Seg::Key("exemption"), Seg::Index(i), Seg::Key(key)],
            )
        };
        let mut ok = true;
        if !ids.contains(&e.rule) {
            let d = diags.error(
                "unknown-rule",
                file,
                at("rule"),
                format!("exemption names rule `{}`, which does not exist", e.rule),
            );
            d.label("unknown rule");
            if let Some(close) = closest(&e.rule, &ids) {
                d.help(format!("did you mean `{close}`?"));
            }
            ok = false;
        }
        let expires = match NaiveDate::parse_from_str(&e.expires, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                diags
                    .error(
                        "bad-date",
                        file,
                        at("expires"),
                        format!("`{}` is not a date", e.expires),
                    )
                    .label("expected YYYY-MM-DD");
                None
            }
        };
        for (key, value) in [
            ("reason", &e.reason),
            ("owner", &e.owner),
            ("resource", &e.resource),
        ] {
            if value.trim().is_empty() {
                diags.error(
                    "empty-value",
                    file,
                    at(key),
                    format!("exemption `{key}` is empty"),
                );
                ok = false;
            }
        }
        let exemption = Exemption::new(
            RuleId(e.rule.clone()),
            &e.resource,
            e.reason.clone(),
            e.owner.clone(),
            expires.unwrap_or(today),
        );
        let exemption = match exemption {
            Ok(x) => Some(x),
            Err(msg) => {
                diags
                    .error(
                        "bad-glob",
                        file,
                        at("resource"),
                        format!("bad resource pattern: {msg}"),
                    )
                    .label("here");
                None
            }
        };
        let (Some(exemption), Some(expires), true) = (exemption, expires, ok) else {
            continue;
        };
        if expires < today {
            diags
                .warning(
                    "exemption-expired",
                    file,
                    at("expires"),
                    format!(
                        "exemption for `{}` on `{}` expired on {expires}; its findings are open again",
                        e.rule, e.resource
                    ),
                )
                .label("expired");
        } else if (expires - today).num_days() <= 14 {
            diags
                .warning(
                    "exemption-expiring",
                    file,
                    at("expires"),
                    format!(
                        "exemption for `{}` on `{}` expires on {expires} (owner {})",
                        e.rule, e.resource, e.owner
                    ),
                )
                .label("within 14 days");
        }
        out.push(exemption.with_index(i));
    }
    out
}

/// Warns about exemptions that match no stored finding of their rule.
pub fn warn_unused_exemptions(
    config: &Config,
    exemptions: &[Exemption],
    stored: &[(RuleId, String)],
    diags: &mut Diagnostics,
) {
    let file = config.text.as_ref().map(|text| {
        diags.add_file(
            config
                .source
                .as_ref()
                .map_or_else(|| "orgwarden.toml".into(), |p| p.display().to_string()),
            text.clone(),
        )
    });
    for e in exemptions {
        if !stored
            .iter()
            .any(|(rule, resource)| e.matches(rule, resource))
        {
            diags
                .warning(
                    "exemption-unused",
                    file,
                    config_span(
                        config,
                        &[
                            Seg::Key("exemption"),
                            Seg::Index(e.index),
                            Seg::Key("resource"),
                        ],
                    ),
                    format!(
                        "exemption for `{}` on `{}` matches no finding",
                        e.rule, e.resource
                    ),
                )
                .label("matches nothing");
        }
    }
}

/// One resource a rule selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The rule.
    pub rule_id: RuleId,
    /// The resource it is about.
    pub resource_id: String,
    /// Its project.
    pub project_id: Option<ProjectId>,
    /// What is wrong with it.
    pub message: String,
}

/// Turns `PRAGMA query_only` back off when evaluation ends, even on error.
struct QueryOnly<'a>(&'a Connection);

impl Drop for QueryOnly<'_> {
    fn drop(&mut self) {
        // If this fails the connection is left read-only, which is the safe side.
        let _ = self.0.execute_batch("PRAGMA query_only = OFF");
    }
}

/// Evaluates every enabled rule over the views of `conn` at `now` (Unix seconds). The
/// connection is switched to `query_only` for the duration, so no rule can write.
pub fn evaluate(conn: &Connection, rules: &RuleSet, now: i64) -> Result<Vec<Hit>, RuleError> {
    let rules: Vec<&Rule> = rules.enabled().collect();
    evaluate_rules(conn, &rules, now)
}

/// Evaluates the given rules (see [`evaluate`]).
pub fn evaluate_rules(conn: &Connection, rules: &[&Rule], now: i64) -> Result<Vec<Hit>, RuleError> {
    let first = rules
        .first()
        .map_or_else(|| RuleId::from("(none)"), |r| r.id.clone());
    conn.execute_batch("PRAGMA query_only = ON")
        .map_err(|source| RuleError::Sql {
            rule: first,
            source,
        })?;
    let _guard = QueryOnly(conn);
    let mut hits = Vec::new();
    let env = minijinja::Environment::new();
    for rule in rules {
        evaluate_one(conn, rule, now, &env, &mut hits)?;
    }
    Ok(hits)
}

fn evaluate_one(
    conn: &Connection,
    rule: &Rule,
    now: i64,
    env: &minijinja::Environment<'_>,
    hits: &mut Vec<Hit>,
) -> Result<(), RuleError> {
    let sql_err = |source| RuleError::Sql {
        rule: rule.id.clone(),
        source,
    };
    let mut stmt = conn.prepare(&rule.sql()).map_err(sql_err)?;
    for i in 1..=stmt.parameter_count() {
        let Some(name) = stmt.parameter_name(i).map(str::to_owned) else {
            continue;
        };
        let value = if name == ":now" {
            Some(SqlValue::Integer(now))
        } else {
            match &rule.body {
                RuleBody::Where { compiled, .. } => compiled
                    .binds
                    .iter()
                    .find(|(n, _)| name[1..] == **n)
                    .and_then(|(_, source)| compile::bind_value(source, &rule.params)),
                RuleBody::Sql { .. } => rule.params.get(&name[1..]).map(compile::to_sql),
            }
        };
        stmt.raw_bind_parameter(i, value.unwrap_or(SqlValue::Null))
            .map_err(sql_err)?;
    }
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let template = match &rule.body {
        RuleBody::Where {
            message: Some(m), ..
        } => Some(
            env.template_from_str(m)
                .map_err(|source| RuleError::Template {
                    rule: rule.id.clone(),
                    source,
                })?,
        ),
        _ => None,
    };
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(sql_err)? {
        let mut ctx: BTreeMap<String, minijinja::Value> = BTreeMap::new();
        for (i, name) in columns.iter().enumerate() {
            let v = match row.get_ref(i).map_err(sql_err)? {
                rusqlite::types::ValueRef::Null => minijinja::Value::from(()),
                rusqlite::types::ValueRef::Integer(n) => minijinja::Value::from(n),
                rusqlite::types::ValueRef::Real(f) => minijinja::Value::from(f),
                rusqlite::types::ValueRef::Text(t) => {
                    minijinja::Value::from(String::from_utf8_lossy(t).into_owned())
                }
                rusqlite::types::ValueRef::Blob(_) => minijinja::Value::from(()),
            };
            ctx.insert(name.clone(), v);
        }
        let text = |key: &str| {
            ctx.get(key)
                .filter(|v| !v.is_none() && !v.is_undefined())
                .map(|v| v.to_string())
        };
        let Some(resource_id) = text("resource_id") else {
            continue;
        };
        let project_id = text("project_id").map(ProjectId);
        let message = match (&rule.body, &template) {
            (RuleBody::Sql { .. }, _) => text("message").unwrap_or_else(|| rule.title.clone()),
            (RuleBody::Where { .. }, Some(tmpl)) => {
                ctx.insert(
                    "params".into(),
                    minijinja::Value::from(minijinja::value::Serde(&rule.params)),
                );
                ctx.insert("now".into(), minijinja::Value::from(now));
                ctx.insert("title".into(), minijinja::Value::from(rule.title.clone()));
                tmpl.render(minijinja::Value::from(minijinja::value::Serde(&ctx)))
                    .map_err(|source| RuleError::Template {
                        rule: rule.id.clone(),
                        source,
                    })?
            }
            (RuleBody::Where { .. }, None) => format!("{}: {resource_id}", rule.title),
        };
        hits.push(Hit {
            rule_id: rule.id.clone(),
            resource_id,
            project_id,
            message: message.trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
