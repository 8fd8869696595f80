//! Validation of parsed rules: required keys, kebab-case ids, severities, views, params,
//! `where` compilation, message templates, and `sql` prepared against an empty store.

use std::collections::BTreeMap;

use rusqlite::Connection;

use crate::diagnostics::{DiagnosticCode, Diagnostics, FileId};
use crate::model::{Family, RuleId, Severity};

use super::{Rule, RuleBody, Value, compile, parse};

/// Joins the hard-wrapped lines of each paragraph of a rule's prose, so reports, JSON and
/// CSV get one line per paragraph; blank lines still separate paragraphs.
pub(super) fn reflow(text: &str) -> String {
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

pub(super) fn validate(
    raw: parse::RawRule,
    source: &str,
    text: &str,
    scratch: Option<&Connection>,
    diags: &mut Diagnostics,
) -> Option<Rule> {
    let file = raw.file;
    let before = diags.error_count();
    // Every check runs even after one fails, so `rules check` reports all of a rule's
    // problems at once, in the order of these calls.
    let id = check_id(&raw, diags);
    check_prose(&raw, diags);
    let severity = check_severity(&raw, diags);
    let family = check_resource_type(&raw, diags);
    let defaults = check_params(&raw, diags);
    let body = check_body(&raw, family, &defaults, diags);
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

/// Records that the rule lacks `key`.
fn missing_key(raw: &parse::RawRule, key: &str, diags: &mut Diagnostics) {
    diags
        .error(
            DiagnosticCode::MissingKey,
            Some(raw.file),
            Some(raw.span.clone()),
            format!("rule is missing `{key}`"),
        )
        .label(format!("this rule has no `{key}`"));
}

/// The rule's id, when present and kebab-case.
fn check_id(raw: &parse::RawRule, diags: &mut Diagnostics) -> Option<String> {
    let file = raw.file;
    match &raw.id {
        Some(id) if is_kebab(id.get_ref()) => Some(id.get_ref().clone()),
        Some(id) => {
            diags
                .error(
                    DiagnosticCode::BadId,
                    Some(file),
                    Some(id.span()),
                    format!("rule id `{}` is not kebab-case", id.get_ref()),
                )
                .label("expected lowercase words joined by `-`");
            None
        }
        None => {
            missing_key(raw, "id", diags);
            None
        }
    }
}

/// `title`, `description` and `remediation` are required and not blank.
fn check_prose(raw: &parse::RawRule, diags: &mut Diagnostics) {
    let file = raw.file;
    for (key, value) in [
        ("title", &raw.title),
        ("description", &raw.description),
        ("remediation", &raw.remediation),
    ] {
        match value {
            None => missing_key(raw, key, diags),
            Some(v) if v.get_ref().trim().is_empty() => {
                diags.error(
                    DiagnosticCode::EmptyValue,
                    Some(file),
                    Some(v.span()),
                    format!("`{key}` is empty"),
                );
            }
            Some(_) => {}
        }
    }
}

/// The rule's severity, when present and known.
fn check_severity(raw: &parse::RawRule, diags: &mut Diagnostics) -> Option<Severity> {
    let file = raw.file;
    if let Some(s) = &raw.severity {
        match s.get_ref().parse::<Severity>() {
            Ok(sev) => Some(sev),
            Err(msg) => {
                diags
                    .error(DiagnosticCode::BadSeverity, Some(file), Some(s.span()), msg)
                    .label("unknown severity");
                None
            }
        }
    } else {
        missing_key(raw, "severity", diags);
        None
    }
}

/// The family whose view `resource_type` names.
fn check_resource_type(raw: &parse::RawRule, diags: &mut Diagnostics) -> Option<Family> {
    let file = raw.file;
    if let Some(rt) = &raw.resource_type {
        if let Some(f) = Family::from_view(rt.get_ref()) {
            Some(f)
        } else {
            let views: Vec<&str> = Family::ALL.iter().map(|f| f.view()).collect();
            diags
                .error(
                    DiagnosticCode::UnknownResourceType,
                    Some(file),
                    Some(rt.span()),
                    format!("`{}` is not a view", rt.get_ref()),
                )
                .label("unknown view")
                .help(format!("views: {}", views.join(", ")));
            None
        }
    } else {
        missing_key(raw, "resource_type", diags);
        None
    }
}

/// The params' defaults by name; a name declared twice is an error (the last one wins).
fn check_params(raw: &parse::RawRule, diags: &mut Diagnostics) -> BTreeMap<String, Value> {
    let file = raw.file;
    let mut defaults = BTreeMap::new();
    for (name, value) in &raw.params {
        if defaults
            .insert(name.get_ref().clone(), value.get_ref().clone())
            .is_some()
        {
            diags.error(
                DiagnosticCode::DuplicateParam,
                Some(file),
                Some(name.span()),
                format!("param `{}` is declared twice", name.get_ref()),
            );
        }
    }
    defaults
}

/// The rule's body: a compiled `where` (with its `message` template checked) or `sql`,
/// never both. The `where` needs the view to compile against.
fn check_body(
    raw: &parse::RawRule,
    family: Option<Family>,
    defaults: &BTreeMap<String, Value>,
    diags: &mut Diagnostics,
) -> Option<RuleBody> {
    let file = raw.file;
    match (&raw.where_, &raw.sql) {
        (Some(_), Some(sql)) => {
            diags
                .error(
                    DiagnosticCode::WhereAndSql,
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
                    DiagnosticCode::MissingKey,
                    Some(file),
                    Some(raw.span.clone()),
                    "rule has neither `where` nor `sql`",
                )
                .help("add [rule.where] conditions or a `sql` query");
            None
        }
        (Some(cond), None) => family.and_then(|family| {
            if let Some(m) = &raw.message {
                check_template(m, family, defaults, file, diags);
            }
            compile::compile_where(cond, family, defaults, file, diags).map(|compiled| {
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
                        DiagnosticCode::UnexpectedKey,
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
    }
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
                        DiagnosticCode::UnknownColumn,
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
                    DiagnosticCode::UnknownParam,
                    Some(file),
                    Some(message.span()),
                    format!("message names `params.{p}`, which the rule does not declare"),
                );
            }
        }
        Err(e) => {
            diags
                .error(
                    DiagnosticCode::BadTemplate,
                    Some(file),
                    Some(message.span()),
                    format!("message template does not parse: {e}"),
                )
                .label("here");
        }
    }
}

/// Prepares a `sql` rule on an empty store: it must prepare, be read-only, return the
/// three columns and only use `:now`, `:unread` and the rule's params.
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
                    DiagnosticCode::SqlDoesNotPrepare,
                    Some(file),
                    Some(sql.span()),
                    format!("SQL does not prepare: {}", sqlite_message(&e)),
                )
                .label("this query")
                .help("queries run over the views listed in docs/views.md (`orgwarden query --help` names them); `orgwarden rules explain ID` shows a rule's SQL");
            return;
        }
    };
    if !stmt.readonly() {
        diags
            .error(
                DiagnosticCode::SqlNotReadOnly,
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
                DiagnosticCode::SqlMissingColumn,
                Some(file),
                Some(sql.span()),
                format!("SQL must return column(s) {}", missing.join(", ")),
            )
            .help(format!("it returns: {}", names.join(", ")));
    }
    for i in 1..=stmt.parameter_count() {
        match stmt.parameter_name(i) {
            Some(":now" | ":unread") => {}
            Some(name) if name.starts_with(':') && rule.defaults.contains_key(&name[1..]) => {}
            Some(name) => {
                diags
                    .error(
                        DiagnosticCode::UnknownParam,
                        Some(file),
                        Some(sql.span()),
                        format!(
                            "SQL uses `{name}`, which is neither `:now`, `:unread` nor a param of the rule"
                        ),
                    )
                    .help("declare it under [rule.params]; bind it as `:name`");
            }
            None => {
                diags.error(
                    DiagnosticCode::PositionalParam,
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
            DiagnosticCode::SqlDoesNotPrepare,
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
