//! Validation of parsed rules: required keys, kebab-case ids, severities, views, params,
//! `where` compilation, message templates, and `sql` prepared against an empty store.

use std::collections::BTreeMap;
use std::ops::Range;

use rusqlite::Connection;

use crate::diagnostics::{DiagnosticCode, Diagnostics, FileId};
use crate::model::{Family, RuleId, Severity};

use super::{DEFAULT_WINDOW, ResourceType, Rule, RuleBody, Value, WINDOW_PARAM, compile, parse};

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
    let resource_type = check_resource_type(&raw, diags);
    let before_params = diags.error_count();
    let defaults = check_params(&raw, diags);
    let params_ok = diags.error_count() == before_params && !raw.params_refused;
    let body = check_body(&raw, resource_type, &defaults, diags);
    let failed = diags.error_count() > before;
    // A rule refused for its id, its prose or its severity still has its SQL prepared, so
    // `rules check` shows every problem in one pass; not when a param was refused, since
    // the SQL would then be blamed for binding it.
    if failed && !(params_ok && raw.sql.is_some()) {
        return None;
    }
    let (resource_type, body) = (resource_type?, body?);
    let (id, severity) = if failed {
        // Never returned: only for the SQL's checks, which read neither.
        (
            id.unwrap_or_default(),
            severity.unwrap_or(crate::model::Severity::Info),
        )
    } else {
        (id?, severity?)
    };
    let mut rule = Rule {
        id: RuleId(id),
        title: raw
            .title
            .as_ref()
            .map(|t| reflow(t.get_ref()))
            .unwrap_or_default(),
        severity,
        default_severity: severity,
        resource_type,
        description: raw
            .description
            .as_ref()
            .map(|t| reflow(t.get_ref()))
            .unwrap_or_default(),
        remediation: raw
            .remediation
            .as_ref()
            .map(|t| reflow(t.get_ref()))
            .unwrap_or_default(),
        params: defaults.clone(),
        defaults,
        body,
        include_archived: raw.include_archived.as_ref().is_some_and(|b| *b.get_ref()),
        source: source.to_owned(),
        line: crate::config::line_column(text, raw.span.start).0,
        enabled: true,
    };
    let uses_window = match (scratch, raw.sql.as_ref()) {
        (Some(conn), Some(sql)) => check_sql(&rule, conn, sql, file, raw.params_refused, diags),
        _ => false,
    };
    if diags.error_count() > before {
        return None;
    }
    check_window(&raw, &mut rule, uses_window, diags);
    if diags.error_count() > before {
        return None;
    }
    Some(rule)
}

/// Records that the rule lacks `key`, unless it is there with a value already refused.
fn missing_key(raw: &parse::RawRule, key: &str, diags: &mut Diagnostics) {
    if raw.keys.iter().any(|k| k == key) {
        return;
    }
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

/// The view `resource_type` names.
fn check_resource_type(raw: &parse::RawRule, diags: &mut Diagnostics) -> Option<ResourceType> {
    let file = raw.file;
    if let Some(rt) = &raw.resource_type {
        if let Some(r) = ResourceType::from_view(rt.get_ref()) {
            Some(r)
        } else {
            let views = ResourceType::names();
            let d = diags
                .error(
                    DiagnosticCode::UnknownResourceType,
                    Some(file),
                    Some(rt.span()),
                    format!("`{}` is not a view", rt.get_ref()),
                )
                .label("unknown view");
            if let Some(close) = compile::closest_name(rt.get_ref(), &views) {
                d.help(format!("did you mean `{close}`?"));
            }
            d.help(format!("views: {}", views.join(", ")));
            None
        }
    } else {
        missing_key(raw, "resource_type", diags);
        None
    }
}

/// The params' defaults by name (TOML itself refuses a name declared twice).
fn check_params(raw: &parse::RawRule, diags: &mut Diagnostics) -> BTreeMap<String, Value> {
    let file = raw.file;
    let mut defaults = BTreeMap::new();
    for (name, value) in &raw.params {
        if name.get_ref() == WINDOW_PARAM {
            diags
                .error(
                    DiagnosticCode::UnexpectedKey,
                    Some(file),
                    Some(name.span()),
                    "`window` is not a param: it is the rule's own key",
                )
                .help("write `window = \"48h\"` beside `sql` in the [[rule]] table");
            continue;
        }
        // TOML refuses a key twice in one table, so a name cannot come back here.
        defaults.insert(name.get_ref().clone(), value.get_ref().clone());
    }
    defaults
}

/// The rule's body: a compiled `where` (with its `message` template checked) or `sql`,
/// never both. The `where` needs the view to compile against.
fn check_body(
    raw: &parse::RawRule,
    resource_type: Option<ResourceType>,
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
        // A `where` or `sql` that is there but refused has said why already.
        (None, None) if raw.keys.iter().any(|k| k == "where" || k == "sql") => None,
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
        (Some(cond), None) => resource_type.and_then(|resource_type| {
            let Some(family) = resource_type.family() else {
                where_over_audit_log(raw, resource_type, diags);
                return None;
            };
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

/// A `where` names columns of a family's view and cannot bound events by their time: a
/// rule over the audit log is a `sql` rule.
fn where_over_audit_log(
    raw: &parse::RawRule,
    resource_type: ResourceType,
    diags: &mut Diagnostics,
) {
    let (code, message) = if resource_type == ResourceType::AuditLogEvents {
        (
            DiagnosticCode::WindowNeeded,
            "a `where` rule cannot bound events by `:window_start`: a rule over `audit_log_events` is written in `sql`",
        )
    } else {
        (
            DiagnosticCode::BadCondition,
            "`audit_log_status` has no `resource_id` column: a rule over it is written in `sql`",
        )
    };
    let example = if code == DiagnosticCode::WindowNeeded {
        "login-failures"
    } else {
        "audit-logging-disabled"
    };
    let span = raw.resource_type.as_ref().map(toml::Spanned::span);
    diags
        .error(code, Some(raw.file), span, message)
        .help(format!(
            "`orgwarden rules explain {example}` shows one such rule"
        ));
}

/// Settles the rule's window: a rule whose SQL reads `:window_start` gets the `window`
/// param (its `window` key, 24h by default), which `[rules.params.<id>]` may override; a
/// `window` nothing reads, or events read with no bound (findings that could never
/// resolve), is refused.
fn check_window(raw: &parse::RawRule, rule: &mut Rule, uses_window: bool, diags: &mut Diagnostics) {
    let file = raw.file;
    match (&raw.window, uses_window) {
        (Some(window), false) => {
            // A `where` rule has no SQL of its own to read it: say so rather than blame it.
            let message = if raw.sql.is_some() {
                "`window` is set, but the rule's SQL never reads `:window_start`"
            } else {
                "`window` is set, but only a `sql` rule can read `:window_start`; this is a `where` rule"
            };
            diags
                .error(
                    DiagnosticCode::WindowUnused,
                    Some(file),
                    Some(window.span()),
                    message,
                )
                .label("nothing reads this")
                .help("bound the events with `effective_at >= :window_start`, or remove `window`");
        }
        (None, false) => {
            if rule.resource_type == ResourceType::AuditLogEvents
                && let Some(sql) = &raw.sql
            {
                diags
                    .error(
                        DiagnosticCode::WindowNeeded,
                        Some(file),
                        Some(sql.span()),
                        "a rule over `audit_log_events` must bound its events by `:window_start`; without it a finding never resolves",
                    )
                    .label("this query reads every event ever stored")
                    .help("add `AND effective_at >= :window_start`; the window is 24h unless the rule's `window` key says otherwise");
            }
        }
        (window, true) => {
            let text = window
                .as_ref()
                .map_or(DEFAULT_WINDOW, |w| w.get_ref().as_str());
            let span = window.as_ref().map(toml::Spanned::span);
            match text.parse::<crate::duration::Duration>() {
                Ok(d) if d.is_zero() => {
                    diags
                        .error(
                            DiagnosticCode::BadValue,
                            Some(file),
                            span,
                            "a window of zero holds no event",
                        )
                        .label("longer than zero");
                }
                Ok(_) => {
                    let value = Value::Str(text.to_owned());
                    rule.defaults.insert(WINDOW_PARAM.to_owned(), value.clone());
                    rule.params.insert(WINDOW_PARAM.to_owned(), value);
                }
                Err(e) => {
                    diags
                        .error(DiagnosticCode::BadDuration, Some(file), span, e.to_string())
                        .label("not a duration");
                }
            }
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
                let d = diags.error(
                    DiagnosticCode::UnknownColumn,
                    Some(file),
                    Some(message.span()),
                    format!(
                        "message names `{name}`, which is not a column of `{}`",
                        family.view()
                    ),
                );
                if let Some(time) = compile::utc_companion_of(&name, &columns) {
                    d.help(format!(
                        "the `…_utc` text companions are not given to messages: `{time}` is \
                         there, in Unix seconds"
                    ));
                } else {
                    if let Some(close) = compile::closest_name(&name, &columns) {
                        d.help(format!("did you mean `{close}`?"));
                    }
                    d.help(format!(
                        "a message may use: {}, params, now, title",
                        columns.join(", ")
                    ));
                }
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
                    // Kind and detail only: the engine's own "(in <string>:1)" names a
                    // template file the user never wrote.
                    match e.detail() {
                        Some(detail) => {
                            format!("message template does not parse: {}: {detail}", e.kind())
                        }
                        None => format!("message template does not parse: {}", e.kind()),
                    },
                )
                .label("this template");
        }
    }
}

/// Prepares a `sql` rule on an empty store: it must prepare, be read-only, return the
/// three columns and only use `:now`, `:unread`, `:unread_projects`, `:window_start` and the rule's params.
/// True when it reads `:window_start`.
fn check_sql(
    rule: &Rule,
    conn: &Connection,
    sql: &toml::Spanned<String>,
    file: FileId,
    params_refused: bool,
    diags: &mut Diagnostics,
) -> bool {
    let before = diags.error_count();
    let value = sql.get_ref();
    let lead = value.len() - value.trim_start().len();
    let inner = value.trim().trim_end_matches(';');
    let stmt = match conn.prepare(inner) {
        Ok(stmt) => stmt,
        Err(e) => {
            // SQLite names the token it stopped at: pointing at it finds the mistake in a
            // query of many lines; without it, the whole query is underlined.
            let token = match &e {
                rusqlite::Error::SqlInputError { offset, .. } => usize::try_from(*offset)
                    .ok()
                    .and_then(|at| token_at(value, lead + at))
                    .and_then(|at| span_in_string(diags.file_text(file), sql.span(), value, at)),
                _ => None,
            };
            let message = format!("SQL does not prepare: {}", sqlite_message(&e));
            let d = match token {
                Some(span) => diags
                    .error(
                        DiagnosticCode::SqlDoesNotPrepare,
                        Some(file),
                        Some(span),
                        message,
                    )
                    .label("here"),
                None => diags
                    .error(
                        DiagnosticCode::SqlDoesNotPrepare,
                        Some(file),
                        Some(sql.span()),
                        message,
                    )
                    .label("this query"),
            };
            d.help("queries run over the views listed in docs/views.md (`orgwarden query --help` names them); `orgwarden rules explain ID` shows a rule's SQL");
            return false;
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
            .help(if names.is_empty() {
                "it returns no columns".to_owned()
            } else {
                format!("it returns: {}", names.join(", "))
            });
    }
    let mut uses_window = false;
    for i in 1..=stmt.parameter_count() {
        match stmt.parameter_name(i) {
            Some(":now" | ":unread" | ":unread_projects") => {}
            Some(":window_start") => uses_window = true,
            Some(name) if name.starts_with(':') && rule.defaults.contains_key(&name[1..]) => {}
            // Already reported where it was declared.
            Some(_) if params_refused => {}
            Some(name) => {
                let span = param_at(value, name)
                    .and_then(|at| span_in_string(diags.file_text(file), sql.span(), value, at))
                    .unwrap_or_else(|| sql.span());
                diags
                    .error(
                        DiagnosticCode::UnknownParam,
                        Some(file),
                        Some(span),
                        format!(
                            "SQL uses `{name}`, which is neither `:now`, `:unread`, `:unread_projects`, `:window_start` nor a param of the rule"
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
    warn_clock_reads(sql, file, diags);
    if diags.error_count() > before {
        return uses_window;
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
    uses_window
}

/// The byte range of the token starting at `at` in `sql`: a word (with a `:` or `.` in it)
/// or one character.
fn token_at(sql: &str, at: usize) -> Option<Range<usize>> {
    let rest = sql.get(at..)?;
    let word = rest
        .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | ':' | '.' | '$' | '@')))
        .unwrap_or(rest.len());
    let len = if word > 0 {
        word
    } else {
        rest.chars().next()?.len_utf8()
    };
    Some(at..at + len)
}

/// The first use of the parameter `name` (`:max_age`) in `sql`, as a whole word and outside
/// comments and quoted text (`-- older than :max_age days` is no use of it).
fn param_at(sql: &str, name: &str) -> Option<Range<usize>> {
    let code = code_ranges(sql);
    sql.match_indices(name)
        .map(|(at, _)| at..at + name.len())
        .filter(|r| code.iter().any(|c| c.start <= r.start && r.end <= c.end))
        .find(|r| {
            !sql[r.end..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
}

/// Warns at each place a rule's SQL reads the wall clock or a random source.
fn warn_clock_reads(sql: &toml::Spanned<String>, file: FileId, diags: &mut Diagnostics) {
    let value = sql.get_ref();
    for (at, what) in clock_reads(value) {
        let span = span_in_string(diags.file_text(file), sql.span(), value, at)
            .unwrap_or_else(|| sql.span());
        diags
            .warning(
                DiagnosticCode::SqlNotDeterministic,
                Some(file),
                Some(span),
                format!(
                    "SQL {what}: its findings depend on when it runs, not on the snapshot, so `audit --offline` of an old snapshot and `rules test` cases disagree with a live audit"
                ),
            )
            .label("here")
            .help(if what.contains("random") {
                "a finding that comes and goes at random is reopened and resolved at random; choose rows by what the snapshot holds"
            } else {
                "read the evaluation time from `:now` (Unix seconds): `datetime(:now, 'unixepoch')`, or `:now - 90 * 86400` for 90 days ago"
            });
    }
}

/// Where `sql` reads the wall clock or a random source, and what it does there. A rule must
/// read time from `:now`, which `audit --offline` and `rules test` set to the time being
/// judged; SQLite's own clock is the time the query happens to run.
fn clock_reads(sql: &str) -> Vec<(Range<usize>, &'static str)> {
    let code = code_ranges(sql);
    let mut out = Vec::new();
    // A time value of 'now' (any case, as SQLite reads it) is a quoted gap between code;
    // "now" too, which SQLite takes for the string when no column has that name.
    for gap in code.windows(2).map(|w| w[0].end..w[1].start) {
        let quoted = &sql[gap.clone()];
        if quoted.eq_ignore_ascii_case("'now'") || quoted.eq_ignore_ascii_case("\"now\"") {
            out.push((gap, "reads the wall clock ('now')"));
        }
    }
    for range in &code {
        let text = &sql[range.clone()];
        let words = text
            .char_indices()
            .filter(|&(i, c)| {
                (c.is_ascii_alphabetic() || c == '_')
                    && !text[..i].chars().next_back().is_some_and(|p| {
                        p.is_alphanumeric() || matches!(p, '_' | ':' | '$' | '@' | '.')
                    })
            })
            .map(|(i, _)| {
                let len = text[i..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(text.len() - i);
                i..i + len
            });
        for word in words {
            let name = text[word.clone()].to_ascii_lowercase();
            let after = text[word.end..].trim_start();
            let called = after.starts_with('(');
            let no_argument = after
                .strip_prefix('(')
                .is_some_and(|rest| rest.trim_start().starts_with(')'));
            let what = match name.as_str() {
                "current_timestamp" | "current_date" | "current_time" => {
                    "reads the wall clock (CURRENT_TIMESTAMP, CURRENT_DATE or CURRENT_TIME)"
                }
                "random" | "randomblob" if called => "calls random()",
                "date" | "time" | "datetime" | "julianday" | "unixepoch" if no_argument => {
                    "reads the wall clock (a date function with no argument is 'now')"
                }
                // strftime's first argument is the format; the time value after it is
                // 'now' when left out.
                "strftime" if only_a_string_argument(&sql[range.start + word.end..]) => {
                    "reads the wall clock (strftime with only a format is 'now')"
                }
                _ => continue,
            };
            let at = range.start + word.start..range.start + word.end;
            out.push((at, what));
        }
    }
    out.sort_by_key(|(at, _)| at.start);
    out
}

/// Whether `after` (the text after a function's name) is a call with one `'…'` argument.
fn only_a_string_argument(after: &str) -> bool {
    let Some(rest) = after.trim_start().strip_prefix('(') else {
        return false;
    };
    let Some(rest) = rest.trim_start().strip_prefix('\'') else {
        return false;
    };
    // A quote inside the string is written twice.
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' && chars.next_if(|&(_, c)| c == '\'').is_none() {
            return rest[i + 1..].trim_start().starts_with(')');
        }
    }
    false
}

/// The byte ranges of `sql` outside `--` and `/* */` comments and `'…'`, `"…"`, `` `…` ``
/// and `[…]` quoting.
fn code_ranges(sql: &str) -> Vec<Range<usize>> {
    let bytes = sql.as_bytes();
    let (mut ranges, mut start, mut i) = (Vec::new(), 0, 0);
    while i < bytes.len() {
        let end = match (bytes[i], bytes.get(i + 1)) {
            (b'-', Some(b'-')) => sql[i..].find('\n').map_or(sql.len(), |n| i + n),
            (b'/', Some(b'*')) => sql[i + 2..].find("*/").map_or(sql.len(), |n| i + 2 + n + 2),
            (q @ (b'\'' | b'"' | b'`' | b'['), _) => {
                let close = if q == b'[' { b']' } else { q };
                bytes[i + 1..]
                    .iter()
                    .position(|&b| b == close)
                    .map_or(sql.len(), |n| i + 1 + n + 1)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        ranges.push(start..i);
        start = end;
        i = end;
    }
    ranges.push(start..sql.len());
    ranges
}

/// Where bytes `at` of a string value lie in the file, when the value is written there as it
/// reads: a literal string, or a basic one without escapes (else `None`: the caller points at
/// the whole string).
pub(super) fn span_in_string(
    text: &str,
    span: Range<usize>,
    value: &str,
    at: Range<usize>,
) -> Option<Range<usize>> {
    let written = text.get(span.clone())?;
    let open = if written.starts_with("\"\"\"") || written.starts_with("'''") {
        // A newline right after the opening delimiter is not part of the value.
        let after = &written[3..];
        3 + if after.starts_with("\r\n") {
            2
        } else {
            usize::from(after.starts_with('\n'))
        }
    } else if written.starts_with('"') || written.starts_with('\'') {
        1
    } else {
        return None;
    };
    let start = span.start + open;
    text.get(start..span.end)?
        .starts_with(value)
        .then(|| start + at.start..start + at.end)
}

fn sqlite_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        // The query itself is underlined below; rusqlite's text would repeat all of it on
        // the title line, with an offset into the trimmed SQL that matches no column.
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        other => other.to_string(),
    }
}
