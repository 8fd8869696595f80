//! The declarative `where` of a rule compiled to parameterized SQL over its view.
//!
//! Every value — literal or param — is bound as a named parameter (`:c1`, `:c2`, …), never
//! spliced into the SQL text, so a rule file cannot inject SQL and `rules explain` shows
//! exactly what SQLite runs. Ages (`"90d"`) are bound in seconds; `:now` is the evaluation
//! time in Unix seconds.

use std::collections::BTreeMap;

use crate::diagnostics::{DiagnosticCode, Diagnostics, FileId};
use crate::model::{ColumnType, Family};

use super::parse::{RawCond, Value};

mod op;

pub use op::{GlobError, Op, OperandKind, UnknownOp, check_glob};

/// The columns of a family's view, in order.
pub fn view_columns(family: Family) -> Vec<&'static str> {
    typed_view_columns(family)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// The columns of a family's view, in order, with what each holds.
pub fn typed_view_columns(family: Family) -> Vec<(&'static str, ColumnType)> {
    let mut cols = vec![
        ("project_id", ColumnType::Text),
        ("resource_id", ColumnType::Text),
    ];
    if family == Family::ProjectHostedToolPermissions {
        cols.extend([("tool", ColumnType::Text), ("enabled", ColumnType::Bool)]);
    } else {
        cols.extend(family.columns().iter().map(|c| (c.name, c.ty)));
    }
    // The extra columns are a parent's id or a retention type: text.
    cols.extend(
        crate::store::extra_columns(family)
            .iter()
            .map(|c| (c.name, ColumnType::Text)),
    );
    cols.push(("raw", ColumnType::Object));
    cols
}

/// The view, column or operator a mistyped snake_case `name` most likely meant: one edit
/// away; else the one known name holding every word of it, when just one does
/// (`project_keys` is `project_api_keys`, four edits away, not `project_users`, three;
/// `older` is `older_than`, not `le`); else the nearest by edits.
pub(crate) fn closest_name<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let length = name.chars().count();
    if let Some(near) = known.iter().find(|k| {
        length.abs_diff(k.chars().count()) <= 1 && crate::config::edit_distance(name, k) <= 1
    }) {
        return Some(near);
    }
    let words: Vec<&str> = name.split('_').filter(|w| !w.is_empty()).collect();
    if !words.is_empty() && words.iter().all(|w| w.len() >= 3) {
        let mut holding = known
            .iter()
            .filter(|k| words.iter().all(|w| k.split('_').any(|kw| kw == *w)));
        if let (Some(only), None) = (holding.next(), holding.next()) {
            return Some(only);
        }
    }
    crate::config::closest(name, known.iter().copied())
}

/// The time column `name` is the `…_utc` companion of, when `columns` has it: the views
/// have both, but rules read only the Unix seconds.
pub fn utc_companion_of<'c>(name: &str, columns: &[&'c str]) -> Option<&'c str> {
    let time = name.strip_suffix("_utc")?;
    columns.iter().copied().find(|c| *c == time)
}

/// Parses an age such as `"90d"`, `"12h"`, `"30m"`, `"45s"` or `"2w"` into seconds: the
/// grammar of [`crate::duration::Duration`], the same as the configuration's.
pub fn parse_age(text: &str) -> Option<i64> {
    let duration: crate::duration::Duration = text.parse().ok()?;
    i64::try_from(duration.as_secs()).ok()
}

/// Why a param used as an age cannot be a negative number of days: the age would be in
/// the future, so `older_than` would hold of everything and `newer_than` of nothing.
pub(super) fn negative_days(name: &str, days: i64) -> String {
    format!("param `{name}` is an age in days, and {days} days is in the future")
}

/// Where a bound parameter's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindSource {
    /// A literal from the rule file.
    Literal(Value),
    /// An age literal, already in seconds.
    AgeSeconds(i64),
    /// A param's current value.
    Param(String),
    /// A param used as an age: an integer counts days, a string is an age like `"90d"`.
    ParamAge(String),
}

/// A declarative rule compiled to SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    /// The SQL; it selects every view column (`resource_id` and `project_id` among them).
    pub sql: String,
    /// The named parameters (`c1`, …) and their sources; `:now` is bound too.
    pub binds: Vec<(String, BindSource)>,
    /// The params used as `matches` patterns: an override of one must be a valid glob too.
    pub glob_params: Vec<String>,
}

struct Compiler<'a> {
    family: Family,
    columns: Vec<(&'static str, ColumnType)>,
    params: &'a BTreeMap<String, Value>,
    binds: Vec<(String, BindSource)>,
    glob_params: Vec<String>,
    file: FileId,
    diags: &'a mut Diagnostics,
}

/// Compiles a `where` over `family`'s view; `params` are the rule's params (for type
/// checks). Problems are recorded in `diags`; `None` when there were any.
pub fn compile_where(
    cond: &RawCond,
    family: Family,
    params: &BTreeMap<String, Value>,
    file: FileId,
    diags: &mut Diagnostics,
) -> Option<Compiled> {
    let before = diags.error_count();
    let mut c = Compiler {
        family,
        columns: typed_view_columns(family),
        params,
        binds: Vec::new(),
        glob_params: Vec::new(),
        file,
        diags,
    };
    let predicate = c.cond(cond);
    if c.diags.error_count() > before {
        return None;
    }
    let sql = format!(
        "SELECT t.*\nFROM {} AS t\nWHERE {}",
        family.view(),
        predicate?
    );
    Some(Compiled {
        sql,
        binds: c.binds,
        glob_params: c.glob_params,
    })
}

/// Why `operator` cannot match the list of objects in `name`.
fn records_mismatch(name: &str, holds: &str, operator: Op) -> String {
    if operator == Op::Contains {
        format!(
            "`contains` compares a list's items with a value, and `{name}` holds {holds}, which \
             never equal one"
        )
    } else {
        format!("`{name}` holds {holds}: `{operator}` would compare its JSON text as a whole")
    }
}

/// What a condition on a list of objects can be: whether it is empty, or, to look inside
/// the objects, a `sql` rule.
const RECORDS_HELP: &str = "a list of objects can be tested with `empty` or `not_empty`; to look \
                            inside its objects, write a `sql` rule with `json_each` and \
                            `json_extract`";

impl Compiler<'_> {
    fn bind(&mut self, source: BindSource) -> String {
        let name = format!("c{}", self.binds.len() + 1);
        self.binds.push((name.clone(), source));
        format!(":{name}")
    }

    fn cond(&mut self, cond: &RawCond) -> Option<String> {
        match cond {
            RawCond::All(items, span) | RawCond::Any(items, span) => {
                let joiner = if matches!(cond, RawCond::All(..)) {
                    " AND "
                } else {
                    " OR "
                };
                if items.is_empty() {
                    self.diags.error(
                        DiagnosticCode::BadCondition,
                        Some(self.file),
                        Some(span.clone()),
                        "`all`/`any` needs at least one condition",
                    );
                    return None;
                }
                let parts: Vec<Option<String>> = items.iter().map(|c| self.cond(c)).collect();
                let parts: Option<Vec<String>> = parts.into_iter().collect();
                Some(format!("({})", parts?.join(joiner)))
            }
            RawCond::Not(inner) => Some(format!("NOT ({})", self.cond(inner)?)),
            RawCond::Leaf {
                field,
                op,
                value,
                param,
                span,
            } => {
                let mut ok = true;
                let column = self
                    .columns
                    .iter()
                    .find(|(name, _)| *name == field.get_ref().as_str())
                    .map(|(_, ty)| *ty);
                if column.is_none() {
                    let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
                    let d = self
                        .diags
                        .error(
                            DiagnosticCode::UnknownColumn,
                            Some(self.file),
                            Some(field.span()),
                            format!(
                                "view `{}` has no column `{}`",
                                self.family.view(),
                                field.get_ref()
                            ),
                        )
                        .label("unknown column");
                    // docs/views.md lists the `…_utc` text companions beside their times.
                    if let Some(time) = utc_companion_of(field.get_ref(), &names) {
                        d.help(format!(
                            "`{}` is `{time}` as text, for people to read; a rule compares \
                             `{time}` itself (Unix seconds, or an age with `older_than`, \
                             `newer_than`, `within_next`)",
                            field.get_ref()
                        ));
                    } else {
                        if let Some(close) = closest_name(field.get_ref(), &names) {
                            d.help(format!("did you mean `{close}`?"));
                        }
                        d.help(format!("columns: {}", names.join(", ")));
                    }
                    ok = false;
                }
                let op_name = op.get_ref().as_str();
                let Ok(operator) = op_name.parse::<Op>() else {
                    let d = self
                        .diags
                        .error(
                            DiagnosticCode::UnknownOp,
                            Some(self.file),
                            Some(op.span()),
                            format!("unknown operator `{op_name}`"),
                        )
                        .label("unknown operator");
                    let ops = Op::ALL.map(Op::name);
                    if let Some(close) = closest_name(op_name, &ops) {
                        d.help(format!("did you mean `{close}`?"));
                    }
                    d.help(format!("operators: {}", Op::names()));
                    return None;
                };
                if let Some(ty) = column
                    && !self.fits_column(field, ty, op, operator, value, param)
                {
                    ok = false;
                }
                let operand = self.operand(operator, value, param, span)?;
                if !ok {
                    return None;
                }
                let col = format!("t.\"{}\"", field.get_ref());
                Some(operator.sql(&col, operand.as_deref().unwrap_or_default()))
            }
        }
    }

    /// The bound operand of an operator: `Some(None)` for operators without one, `None`
    /// after recording a problem.
    fn operand(
        &mut self,
        op: Op,
        value: &Option<toml::Spanned<Value>>,
        param: &Option<toml::Spanned<String>>,
        span: &std::ops::Range<usize>,
    ) -> Option<Option<String>> {
        if op.operand() == OperandKind::None {
            if let Some(v) = value {
                self.diags
                    .error(
                        DiagnosticCode::UnexpectedValue,
                        Some(self.file),
                        Some(v.span()),
                        format!("`{op}` takes no value"),
                    )
                    .label("remove this");
                return None;
            }
            // A param names a value too: ignored, it would leave the condition testing
            // something else than its author meant (`present` where `within_next` was meant).
            if let Some(p) = param {
                self.diags
                    .error(
                        DiagnosticCode::UnexpectedValue,
                        Some(self.file),
                        Some(p.span()),
                        format!("`{op}` takes no value, so no `param` either"),
                    )
                    .label("remove this");
                return None;
            }
            return Some(None);
        }
        let source = match (value, param) {
            (Some(_), Some(p)) => {
                self.diags.error(
                    DiagnosticCode::BadCondition,
                    Some(self.file),
                    Some(p.span()),
                    "a condition has `value` or `param`, not both",
                );
                return None;
            }
            (None, None) => {
                self.diags
                    .error(
                        DiagnosticCode::MissingValue,
                        Some(self.file),
                        Some(span.clone()),
                        format!("`{op}` needs a `value` or a `param`"),
                    )
                    .help("add value = ... or param = \"name of a [rule.params] entry\"");
                return None;
            }
            (Some(v), None) => self.literal_operand(op, v)?,
            (None, Some(p)) => self.param_operand(op, p)?,
        };
        Some(Some(self.bind(source)))
    }

    /// Checks a literal against the operator's operand kind; ages are converted to
    /// seconds here so a bad one is reported by `rules check`, not at evaluation.
    fn literal_operand(&mut self, op: Op, v: &toml::Spanned<Value>) -> Option<BindSource> {
        let kind = op.operand();
        let fits = match (kind, v.get_ref()) {
            (OperandKind::Age, Value::Str(s)) => {
                if let Some(secs) = parse_age(s) {
                    return Some(BindSource::AgeSeconds(secs));
                } else {
                    self.bad_age(v.span(), s);
                    return None;
                }
            }
            (OperandKind::Glob, Value::Str(s)) => {
                if let Err(e) = check_glob(s) {
                    self.bad_glob(v.span(), &e);
                    return None;
                }
                true
            }
            (OperandKind::Age, _) => false,
            (OperandKind::List, value) => matches!(value, Value::List(_)),
            (_, value) => !matches!(value, Value::List(_)),
        };
        if !fits {
            self.wrong_value(v.span(), op, kind.literal_expectation(), v.get_ref());
            return None;
        }
        Some(BindSource::Literal(v.get_ref().clone()))
    }

    /// Checks that a param exists and that its default fits the operator's operand kind;
    /// overrides from `orgwarden.toml` must have the default's type, so they fit too.
    fn param_operand(&mut self, op: Op, p: &toml::Spanned<String>) -> Option<BindSource> {
        let name = p.get_ref();
        let Some(default) = self.params.get(name) else {
            let known: Vec<&str> = self.params.keys().map(String::as_str).collect();
            self.diags
                .error(
                    DiagnosticCode::UnknownParam,
                    Some(self.file),
                    Some(p.span()),
                    format!("the rule has no param `{name}`"),
                )
                .help(if known.is_empty() {
                    "declare it under [rule.params]".to_owned()
                } else {
                    format!("params: {}", known.join(", "))
                });
            return None;
        };
        let kind = op.operand();
        let fits = match (kind, default) {
            (OperandKind::Age, Value::Int(days)) if *days < 0 => {
                self.diags
                    .error(
                        DiagnosticCode::BadAge,
                        Some(self.file),
                        Some(p.span()),
                        negative_days(name, *days),
                    )
                    .label("an age of fewer than zero days");
                return None;
            }
            (OperandKind::Age, Value::Int(_)) => true,
            (OperandKind::Age, Value::Str(s)) => {
                if parse_age(s).is_none() {
                    self.bad_age(p.span(), s);
                    return None;
                }
                true
            }
            (OperandKind::Glob, Value::Str(s)) => {
                if let Err(e) = check_glob(s) {
                    self.bad_glob(p.span(), &e);
                    return None;
                }
                self.glob_params.push(name.clone());
                true
            }
            (OperandKind::Age, _) => false,
            (OperandKind::List, value) => matches!(value, Value::List(_)),
            (_, value) => !matches!(value, Value::List(_)),
        };
        if !fits {
            self.wrong_value(p.span(), op, kind.param_expectation(), default);
            return None;
        }
        Some(if kind == OperandKind::Age {
            BindSource::ParamAge(name.clone())
        } else {
            BindSource::Param(name.clone())
        })
    }

    fn bad_age(&mut self, span: std::ops::Range<usize>, text: &str) {
        self.diags
            .error(
                DiagnosticCode::BadAge,
                Some(self.file),
                Some(span),
                format!("`{text}` is not an age"),
            )
            .label("expected a number and a unit")
            .help("ages are like \"90d\", \"12h\", \"30m\", \"45s\" or \"2w\"");
    }

    fn bad_glob(&mut self, span: std::ops::Range<usize>, error: &GlobError) {
        self.diags
            .error(
                DiagnosticCode::BadGlob,
                Some(self.file),
                Some(span),
                format!("bad `matches` pattern: {error}"),
            )
            .label("not a glob SQLite can match")
            .help("globs use `*`, `?` and `[a-z]` sets; a literal `[` is written `[[]`");
    }

    /// Whether `op` and its operand can mean anything on a column holding `ty`. SQLite
    /// compares across types without an error — text never equals a number, and every
    /// number sorts before all text — so `name gt 3` holds for every row and
    /// `created_at lt "2026-01-01"` too; each such condition is `column-type-mismatch`. A
    /// param is judged by its default, whose type every override must have.
    fn fits_column(
        &mut self,
        field: &toml::Spanned<String>,
        ty: ColumnType,
        op: &toml::Spanned<String>,
        operator: Op,
        value: &Option<toml::Spanned<Value>>,
        param: &Option<toml::Spanned<String>>,
    ) -> bool {
        let name = field.get_ref();
        let holds = ty.describe();
        let operand = match (value, param) {
            (Some(v), _) => Some((v.get_ref().clone(), v.span())),
            (None, Some(p)) => self.params.get(p.get_ref()).map(|d| (d.clone(), p.span())),
            (None, None) => None,
        };
        let at_op = |message: String, help: &str| {
            Some((
                op.span(),
                message,
                format!("`{name}` holds {holds}"),
                help.to_owned(),
            ))
        };
        let problem = match (operator.operand(), ty) {
            (OperandKind::None, _) if !matches!(operator, Op::Empty | Op::NotEmpty) => None,
            (OperandKind::None, ColumnType::List | ColumnType::Records) => None,
            (OperandKind::None, _) => at_op(
                format!("`{operator}` reads a JSON list, and `{name}` holds {holds}"),
                "to test for a missing value, use `absent` or `present`",
            ),
            (OperandKind::Age, ColumnType::Time) => None,
            (OperandKind::Age, _) => at_op(
                format!("`{operator}` compares a time, and `{name}` holds {holds}"),
                "ages apply to the time columns, the ones named `…_at`",
            ),
            // SQLite's GLOB reads any value as text: a list's or an object's JSON
            // (`permissions matches "*write*"`) or a number's digits, each of use.
            (OperandKind::Glob, _) => None,
            (OperandKind::List, ColumnType::Text) => None,
            // Neither `contains` nor a comparison can match an object: the help must not send
            // from one to the other.
            (OperandKind::List | OperandKind::Scalar, ColumnType::Records) => {
                at_op(records_mismatch(name, holds, operator), RECORDS_HELP)
            }
            (OperandKind::List, _) => at_op(
                format!(
                    "`{operator}` compares with a list of strings, and `{name}` holds {holds}, \
                     which never equal a string"
                ),
                "for a list column use `contains`; for numbers, `any` of `eq` conditions",
            ),
            (OperandKind::Scalar, ColumnType::List) if operator == Op::Contains => None,
            (OperandKind::Scalar, _) if operator == Op::Contains => at_op(
                format!("`contains` looks inside a JSON list, and `{name}` holds {holds}"),
                "use `eq` to compare the whole value, or `matches` for part of a text",
            ),
            (OperandKind::Scalar, ColumnType::List | ColumnType::Object) => at_op(
                format!(
                    "`{name}` holds {holds}: `{operator}` would compare its JSON text as a whole"
                ),
                "for a list use `contains`, `empty` or `not_empty`; for a field of an object, \
                 `json_extract` in a `sql` rule",
            ),
            (OperandKind::Scalar, _) => operand.and_then(|(v, span)| {
                let (fits, help) = match (&v, ty) {
                    (Value::Str(_), ColumnType::Text) => (true, String::new()),
                    (Value::Int(_) | Value::Bool(_), ColumnType::Text) => {
                        (false, format!("write it as a string: \"{v}\""))
                    }
                    // A boolean is bound as 1 or 0, a number like any other.
                    (Value::Int(_) | Value::Bool(_), _) => (true, String::new()),
                    (Value::Str(s), ColumnType::Bool) => (
                        false,
                        format!(
                            "write `true` or `false` without quotes{}",
                            if matches!(s.as_str(), "true" | "false") {
                                ""
                            } else {
                                " (or 1 or 0)"
                            }
                        ),
                    ),
                    (Value::Str(s), _) if s.trim().parse::<i64>().is_ok() => {
                        (false, format!("write it without quotes: {}", s.trim()))
                    }
                    (Value::Str(_), ColumnType::Time) => (
                        false,
                        "compare with an age (`older_than`, `newer_than`, `within_next`), or \
                         with Unix seconds as an integer"
                            .to_owned(),
                    ),
                    (Value::Str(_), _) => (false, "write a number".to_owned()),
                    // A list is refused by the operand check.
                    (Value::List(_), _) => (true, String::new()),
                };
                let why = if ty == ColumnType::Text {
                    "to SQLite a number never equals text, and sorts before all of it"
                } else {
                    "to SQLite text never equals a number, and sorts after all of them"
                };
                (!fits).then(|| {
                    (
                        span,
                        format!(
                            "`{name}` holds {holds}, and `{operator}` compares it with the {} \
                             {v}: {why}",
                            v.type_name()
                        ),
                        format!("{} compared with {holds}", super::parse::a(v.type_name())),
                        help,
                    )
                })
            }),
        };
        let Some((span, message, label, help)) = problem else {
            return true;
        };
        self.diags
            .error(
                DiagnosticCode::ColumnTypeMismatch,
                Some(self.file),
                Some(span),
                message,
            )
            .label(label)
            .help(help);
        false
    }

    fn wrong_value(&mut self, span: std::ops::Range<usize>, op: Op, expected: &str, got: &Value) {
        self.diags
            .error(
                DiagnosticCode::WrongValueType,
                Some(self.file),
                Some(span),
                format!(
                    "`{op}` needs {expected}, not {}",
                    super::parse::a(got.type_name())
                ),
            )
            .label(format!("expected {expected}"));
    }
}

/// The value bound for a source, given the rule's effective params. `None` only when a
/// param is missing or an age param does not parse, which validation rules out.
pub fn bind_value(source: &BindSource, params: &BTreeMap<String, Value>) -> Option<SqlValue> {
    match source {
        BindSource::Literal(v) => Some(to_sql(v)),
        BindSource::AgeSeconds(s) => Some(SqlValue::Integer(*s)),
        BindSource::Param(name) => params.get(name).map(to_sql),
        BindSource::ParamAge(name) => match params.get(name)? {
            Value::Int(days) => Some(SqlValue::Integer(days.saturating_mul(86_400))),
            Value::Str(s) => parse_age(s).map(SqlValue::Integer),
            _ => None,
        },
    }
}

/// A value as SQLite sees it: lists become JSON text (used with `json_each`), booleans 0/1.
pub fn to_sql(value: &Value) -> SqlValue {
    match value {
        Value::Int(i) => SqlValue::Integer(*i),
        Value::Str(s) => SqlValue::Text(s.clone()),
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::List(items) => {
            SqlValue::Text(serde_json::to_string(items).unwrap_or_else(|_| "[]".into()))
        }
    }
}

pub use rusqlite::types::Value as SqlValue;

/// Creates, in `conn`, one empty table per view with the view's columns, so compiled SQL
/// can be run in tests without a store; plus the findings and the snapshot records the
/// rules that judge absence consult (no snapshot: every view unread), and the audit log's
/// tables and views.
#[cfg(test)]
pub fn create_scratch_schema(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let mut sql = String::from(
        "CREATE TABLE IF NOT EXISTS findings (rule_id, resource_id, project_id, status);\n\
         CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY, started_at INTEGER, status TEXT);\n\
         CREATE TABLE IF NOT EXISTS snapshot_scope (snapshot_id, family, project_id, outcome);\n\
         CREATE TABLE IF NOT EXISTS snapshot_skipped (snapshot_id, family);\n",
    );
    for family in Family::ALL {
        let cols: Vec<String> = view_columns(family)
            .into_iter()
            .map(|c| format!("\"{c}\""))
            .collect();
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({});\n",
            family.view(),
            cols.join(", ")
        ));
    }
    // The spend views read the costs table and the snapshot times (above), the audit-log
    // views the log's tables: the real ones, empty.
    sql.push_str(crate::store::COSTS_SCHEMA);
    sql.push_str(crate::store::AUDIT_LOG_SCHEMA);
    for (_, view) in crate::store::spend_views()
        .into_iter()
        .chain(crate::store::audit_log_views())
    {
        sql.push_str(&view);
        sql.push_str(";\n");
    }
    conn.execute_batch(&sql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse::parse_rule_file;
    use rusqlite::Connection;

    /// Compiles the `where` of a one-rule file over `project_api_keys` and runs it over a
    /// scratch table holding `rows` (id, created_at, last_used_at, owner_type, name),
    /// returning the ids it selects.
    fn run(
        where_toml: &str,
        params: &[(&str, Value)],
        rows: &[(&str, i64, Option<i64>, &str, &str)],
    ) -> Result<Vec<String>, String> {
        let text = format!("[[rule]]\nid = \"x\"\n[rule.where]\n{where_toml}\n");
        let mut diags = Diagnostics::new();
        let file = diags.add_file("t.toml", text.clone());
        let raw = parse_rule_file(&text, file, &mut diags);
        let params: BTreeMap<String, Value> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let compiled = raw[0]
            .where_
            .as_ref()
            .and_then(|w| compile_where(w, Family::ProjectApiKeys, &params, file, &mut diags));
        if diags.has_errors() {
            return Err(diags
                .items()
                .iter()
                .map(|d| d.code.as_str())
                .collect::<Vec<_>>()
                .join(","));
        }
        let compiled = compiled.expect("no errors means compiled");
        let conn = Connection::open_in_memory().unwrap();
        create_scratch_schema(&conn).unwrap();
        for (id, created, used, owner_type, name) in rows {
            conn.execute(
                "INSERT INTO project_api_keys (project_id, resource_id, id, created_at, last_used_at, owner_type, name, raw) VALUES ('p', ?1, ?1, ?2, ?3, ?4, ?5, '{}')",
                rusqlite::params![id, created, used, owner_type, name],
            )
            .unwrap();
        }
        let mut stmt = conn.prepare(&compiled.sql).unwrap();
        for (name, source) in &compiled.binds {
            let idx = stmt.parameter_index(&format!(":{name}")).unwrap().unwrap();
            stmt.raw_bind_parameter(idx, bind_value(source, &params).unwrap())
                .unwrap();
        }
        if let Some(idx) = stmt.parameter_index(":now").unwrap() {
            stmt.raw_bind_parameter(idx, NOW).unwrap();
        }
        let id_column = stmt.column_index("resource_id").unwrap();
        let mut out = Vec::new();
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().unwrap() {
            out.push(row.get::<_, String>(id_column).unwrap());
        }
        out.sort();
        Ok(out)
    }

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn keys() -> Vec<(&'static str, i64, Option<i64>, &'static str, &'static str)> {
        vec![
            ("k_old_unused", NOW - 400 * DAY, None, "user", "prod"),
            (
                "k_recent",
                NOW - 10 * DAY,
                Some(NOW - DAY),
                "service_account",
                "ci-bot",
            ),
            (
                "k_idle",
                NOW - 200 * DAY,
                Some(NOW - 100 * DAY),
                "user",
                "Prod",
            ),
        ]
    }

    /// The code `rules check` gives a condition over `project_api_keys`, or `ok`.
    fn verdict(where_toml: &str, params: &[(&str, Value)]) -> String {
        match run(where_toml, params, &keys()) {
            Ok(_) => "ok".to_owned(),
            Err(codes) => codes,
        }
    }

    #[test]
    fn a_mistyped_name_is_matched_by_its_words_before_its_edits() {
        let views = crate::rules::ResourceType::names();
        assert_eq!(
            closest_name("project_keys", &views),
            Some("project_api_keys")
        );
        assert_eq!(closest_name("project_user", &views), Some("project_users"));
        assert_eq!(
            closest_name("org_admin_keys", &views),
            Some("org_admin_api_keys")
        );
        let ops = Op::ALL.map(Op::name);
        assert_eq!(closest_name("older", &ops), Some("older_than"));
        assert_eq!(closest_name("equals", &ops), None);
        assert_eq!(closest_name("presnt", &ops), Some("present"));
        let columns = ["last_used_at", "created_at", "name"];
        assert_eq!(closest_name("last_use_at", &columns), Some("last_used_at"));
        // A word of two letters tells little: the nearest by edits.
        assert_eq!(closest_name("creatd_at", &columns), Some("created_at"));
    }

    #[test]
    fn a_value_of_another_type_than_its_column_is_refused() {
        let mismatch = "column-type-mismatch";
        for (condition, expected) in [
            // Text against a number: SQLite sorts every number first, so `gt` holds always.
            ("field = \"name\"\nop = \"gt\"\nvalue = 3", mismatch),
            (
                "field = \"owner_type\"\nop = \"eq\"\nvalue = true",
                mismatch,
            ),
            ("field = \"name\"\nop = \"eq\"\nvalue = \"3\"", "ok"),
            // A time against a date string: text sorts after every number.
            (
                "field = \"created_at\"\nop = \"lt\"\nvalue = \"2026-01-01\"",
                mismatch,
            ),
            (
                "field = \"created_at\"\nop = \"lt\"\nvalue = \"1700000000\"",
                mismatch,
            ),
            (
                "field = \"created_at\"\nop = \"lt\"\nvalue = 1700000000",
                "ok",
            ),
            (
                "field = \"created_at\"\nop = \"older_than\"\nvalue = \"90d\"",
                "ok",
            ),
            // Ages, lists and list operators on columns that cannot hold them.
            (
                "field = \"name\"\nop = \"older_than\"\nvalue = \"90d\"",
                mismatch,
            ),
            // A glob reads any value as text, a list's or an object's JSON included.
            (
                "field = \"created_at\"\nop = \"matches\"\nvalue = \"17*\"",
                "ok",
            ),
            (
                "field = \"raw\"\nop = \"matches\"\nvalue = \"*service_account*\"",
                "ok",
            ),
            ("field = \"name\"\nop = \"matches\"\nvalue = \"ci-*\"", "ok"),
            (
                "field = \"created_at\"\nop = \"in\"\nvalue = [\"1\"]",
                mismatch,
            ),
            (
                "field = \"owner_type\"\nop = \"in\"\nvalue = [\"user\"]",
                "ok",
            ),
            ("field = \"name\"\nop = \"not_empty\"", mismatch),
            (
                "field = \"name\"\nop = \"contains\"\nvalue = \"a\"",
                mismatch,
            ),
            ("field = \"raw\"\nop = \"eq\"\nvalue = \"{}\"", mismatch),
            // Whether a value is there says nothing of its type.
            ("field = \"last_used_at\"\nop = \"absent\"", "ok"),
            ("field = \"raw\"\nop = \"present\"", "ok"),
        ] {
            assert_eq!(verdict(condition, &[]), expected, "{condition}");
        }
    }

    #[test]
    fn a_param_is_judged_by_its_default() {
        let condition = "field = \"name\"\nop = \"eq\"\nparam = \"who\"";
        assert_eq!(
            verdict(condition, &[("who", Value::Int(3))]),
            "column-type-mismatch"
        );
        assert_eq!(verdict(condition, &[("who", Value::Str("3".into()))]), "ok");
        assert_eq!(
            verdict(
                "field = \"created_at\"\nop = \"older_than\"\nparam = \"days\"",
                &[("days", Value::Int(90))]
            ),
            "ok"
        );
    }

    #[test]
    fn a_type_mismatch_says_what_the_column_holds_and_how_to_write_the_value() {
        let text = "[[rule]]\nid = \"x\"\n[rule.where]\nfield = \"created_at\"\nop = \"lt\"\nvalue = \"1700000000\"\n";
        let mut diags = Diagnostics::new();
        let file = diags.add_file("t.toml", text.to_owned());
        let raw = parse_rule_file(text, file, &mut diags);
        let where_ = raw[0].where_.as_ref().unwrap();
        assert!(
            compile_where(
                where_,
                Family::ProjectApiKeys,
                &BTreeMap::new(),
                file,
                &mut diags
            )
            .is_none()
        );
        let d = &diags.items()[0];
        assert!(
            d.message
                .contains("`created_at` holds times in Unix seconds"),
            "{}",
            d.message
        );
        assert!(d.message.contains("string \"1700000000\""), "{}", d.message);
        assert!(
            d.help
                .iter()
                .any(|h| h.contains("without quotes: 1700000000")),
            "{:?}",
            d.help
        );
    }

    #[test]
    fn eq_and_ne_compare_values() {
        assert_eq!(
            run(
                "field = \"owner_type\"\nop = \"eq\"\nvalue = \"user\"",
                &[],
                &keys()
            )
            .unwrap(),
            ["k_idle", "k_old_unused"]
        );
        assert_eq!(
            run(
                "field = \"owner_type\"\nop = \"ne\"\nvalue = \"user\"",
                &[],
                &keys()
            )
            .unwrap(),
            ["k_recent"]
        );
    }

    #[test]
    fn ordering_ops_compare_numbers() {
        let t = NOW - 200 * DAY;
        assert_eq!(
            run(
                &format!("field = \"created_at\"\nop = \"lt\"\nvalue = {t}"),
                &[],
                &keys()
            )
            .unwrap(),
            ["k_old_unused"]
        );
        assert_eq!(
            run(
                &format!("field = \"created_at\"\nop = \"le\"\nvalue = {t}"),
                &[],
                &keys()
            )
            .unwrap(),
            ["k_idle", "k_old_unused"]
        );
        assert_eq!(
            run(
                &format!("field = \"created_at\"\nop = \"gt\"\nvalue = {t}"),
                &[],
                &keys()
            )
            .unwrap(),
            ["k_recent"]
        );
        assert_eq!(
            run(
                &format!("field = \"created_at\"\nop = \"ge\"\nvalue = {t}"),
                &[],
                &keys()
            )
            .unwrap(),
            ["k_idle", "k_recent"]
        );
    }

    #[test]
    fn in_and_not_in_take_lists_literal_or_param() {
        assert_eq!(
            run(
                "field = \"name\"\nop = \"in\"\nvalue = [\"prod\", \"ci-bot\"]",
                &[],
                &keys()
            )
            .unwrap(),
            ["k_old_unused", "k_recent"]
        );
        let p = [("names", Value::List(vec!["prod".into()]))];
        assert_eq!(
            run(
                "field = \"name\"\nop = \"not_in\"\nparam = \"names\"",
                &p,
                &keys()
            )
            .unwrap(),
            ["k_idle", "k_recent"]
        );
        assert_eq!(
            run(
                "field = \"name\"\nop = \"in\"\nvalue = \"prod\"",
                &[],
                &keys()
            )
            .unwrap_err(),
            "wrong-value-type"
        );
    }

    #[test]
    fn matches_is_a_case_sensitive_glob() {
        assert_eq!(
            run(
                "field = \"name\"\nop = \"matches\"\nvalue = \"p*\"",
                &[],
                &keys()
            )
            .unwrap(),
            ["k_old_unused"]
        );
    }

    #[test]
    fn absent_and_present_test_null() {
        assert_eq!(
            run("field = \"last_used_at\"\nop = \"absent\"", &[], &keys()).unwrap(),
            ["k_old_unused"]
        );
        assert_eq!(
            run("field = \"last_used_at\"\nop = \"present\"", &[], &keys()).unwrap(),
            ["k_idle", "k_recent"]
        );
        assert_eq!(
            run(
                "field = \"last_used_at\"\nop = \"present\"\nvalue = 1",
                &[],
                &keys()
            )
            .unwrap_err(),
            "unexpected-value"
        );
    }

    #[test]
    fn a_param_on_an_operator_without_value_is_refused_not_ignored() {
        let soon = [("soon", Value::Str("30d".into()))];
        for op in ["absent", "present", "empty", "not_empty"] {
            let field = if op.contains("empty") {
                "raw"
            } else {
                "last_used_at"
            };
            let condition = format!("field = \"{field}\"\nop = \"{op}\"\nparam = \"soon\"");
            let codes = run(&condition, &soon, &keys()).unwrap_err();
            assert!(codes.contains("unexpected-value"), "{op}: {codes}");
        }
    }

    #[test]
    fn ages_compare_against_now() {
        assert_eq!(
            run(
                "field = \"last_used_at\"\nop = \"older_than\"\nvalue = \"90d\"",
                &[],
                &keys()
            )
            .unwrap(),
            ["k_idle"]
        );
        assert_eq!(
            run(
                "field = \"created_at\"\nop = \"newer_than\"\nvalue = \"2w\"",
                &[],
                &keys()
            )
            .unwrap(),
            ["k_recent"]
        );
        assert_eq!(
            run(
                "field = \"last_used_at\"\nop = \"within_next\"\nvalue = \"1h\"",
                &[],
                &keys()
            )
            .unwrap(),
            ["k_idle", "k_recent"]
        );
        let p = [("days", Value::Int(300))];
        assert_eq!(
            run(
                "field = \"created_at\"\nop = \"older_than\"\nparam = \"days\"",
                &p,
                &keys()
            )
            .unwrap(),
            ["k_old_unused"]
        );
        assert_eq!(
            run(
                "field = \"created_at\"\nop = \"older_than\"\nvalue = \"90 days\"",
                &[],
                &keys()
            )
            .unwrap_err(),
            "bad-age"
        );
    }

    #[test]
    fn contains_takes_one_item_not_a_list() {
        // `name` is no list either: both problems are said at once.
        assert_eq!(
            run(
                "field = \"name\"\nop = \"contains\"\nvalue = [\"a\"]",
                &[],
                &keys()
            )
            .unwrap_err(),
            "column-type-mismatch,wrong-value-type"
        );
        let p = [("items", Value::List(vec!["a".into()]))];
        assert_eq!(
            run(
                "field = \"name\"\nop = \"contains\"\nparam = \"items\"",
                &p,
                &keys()
            )
            .unwrap_err(),
            "column-type-mismatch,wrong-value-type"
        );
    }

    #[test]
    fn combinators_nest() {
        let w = "any = [ { field = \"last_used_at\", op = \"older_than\", value = \"90d\" },\n  { all = [ { field = \"last_used_at\", op = \"absent\" }, { not = { field = \"created_at\", op = \"newer_than\", value = \"90d\" } } ] } ]";
        assert_eq!(run(w, &[], &keys()).unwrap(), ["k_idle", "k_old_unused"]);
    }

    #[test]
    fn unknown_column_op_and_param_are_all_reported() {
        let w = "all = [ { field = \"colour\", op = \"eq\", value = \"x\" }, { field = \"name\", op = \"like\", value = \"x\" }, { field = \"name\", op = \"eq\", param = \"nope\" } ]";
        assert_eq!(
            run(w, &[], &keys()).unwrap_err(),
            "unknown-column,unknown-op,unknown-param"
        );
    }

    #[test]
    fn values_are_bound_not_spliced() {
        let mut diags = Diagnostics::new();
        let text = "[[rule]]\nid = \"x\"\n[rule.where]\nfield = \"name\"\nop = \"eq\"\nvalue = \"'; DROP TABLE projects; --\"\n";
        let file = diags.add_file("t.toml", text);
        let raw = parse_rule_file(text, file, &mut diags);
        let c = compile_where(
            raw[0].where_.as_ref().unwrap(),
            Family::ProjectApiKeys,
            &BTreeMap::new(),
            file,
            &mut diags,
        )
        .unwrap();
        assert!(!c.sql.contains("DROP"), "{}", c.sql);
        assert!(c.sql.contains("t.\"name\" = :c1"), "{}", c.sql);
    }

    #[test]
    fn ages_parse_with_units() {
        assert_eq!(parse_age("90d"), Some(90 * DAY));
        assert_eq!(parse_age("12h"), Some(12 * 3600));
        assert_eq!(parse_age("30m"), Some(1800));
        assert_eq!(parse_age("45s"), Some(45));
        assert_eq!(parse_age("2w"), Some(14 * DAY));
        assert_eq!(parse_age("d"), None);
        assert_eq!(parse_age("-1d"), None);
        assert_eq!(parse_age("5y"), None);
    }
}
