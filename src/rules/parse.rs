//! Rule files as written: a walk over the span-keeping TOML tree that records every
//! problem instead of stopping at the first, producing [`RawRule`]s whose fields keep
//! their byte spans for later validation.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostics::{DiagnosticCode, Diagnostics, FileId};

/// A literal value in a rule file or configuration: the types params and condition
/// values may have.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A list of strings.
    List(Vec<String>),
    /// A boolean.
    Bool(bool),
}

impl Value {
    /// The type's name in messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "integer",
            Value::Str(_) => "string",
            Value::List(_) => "list of strings",
            Value::Bool(_) => "boolean",
        }
    }

    /// Converts a TOML value from `orgwarden.toml`; `None` names the unsupported type.
    pub fn from_toml(value: &toml::Value) -> Result<Value, &'static str> {
        match value {
            toml::Value::Integer(i) => Ok(Value::Int(*i)),
            toml::Value::String(s) => Ok(Value::Str(s.clone())),
            toml::Value::Boolean(b) => Ok(Value::Bool(*b)),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or("list of non-strings"))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::List),
            toml::Value::Float(_) => Err("float"),
            toml::Value::Datetime(_) => Err("datetime"),
            toml::Value::Table(_) => Err("table"),
        }
    }
}

/// `word` with its indefinite article (`an integer`, `a string`).
pub fn a(word: &str) -> String {
    let article = if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {word}")
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::List(items) => {
                let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
                write!(f, "[{}]", quoted.join(", "))
            }
        }
    }
}

/// A `where` condition as written.
#[derive(Clone, Debug)]
pub enum RawCond {
    /// `all = [...]`: every condition holds.
    All(Vec<RawCond>, Range<usize>),
    /// `any = [...]`: at least one holds.
    Any(Vec<RawCond>, Range<usize>),
    /// `not = {...}`: the condition does not hold.
    Not(Box<RawCond>),
    /// `{ field, op, value | param }`.
    Leaf {
        /// The column.
        field: Spanned<String>,
        /// The operator.
        op: Spanned<String>,
        /// A literal value.
        value: Option<Spanned<Value>>,
        /// A param's name instead of a literal.
        param: Option<Spanned<String>>,
        /// The whole condition table.
        span: Range<usize>,
    },
}

/// One `[[rule]]` table as written, before validation.
#[derive(Clone, Debug)]
pub struct RawRule {
    /// The file it came from.
    pub file: FileId,
    /// The span of the `[[rule]]` table.
    pub span: Range<usize>,
    /// `id`
    pub id: Option<Spanned<String>>,
    /// `title`
    pub title: Option<Spanned<String>>,
    /// `severity`
    pub severity: Option<Spanned<String>>,
    /// `resource_type`
    pub resource_type: Option<Spanned<String>>,
    /// `description`
    pub description: Option<Spanned<String>>,
    /// `remediation`
    pub remediation: Option<Spanned<String>>,
    /// `message` (declarative rules)
    pub message: Option<Spanned<String>>,
    /// `include_archived`
    pub include_archived: Option<Spanned<bool>>,
    /// `[rule.params]` in file order.
    pub params: Vec<(Spanned<String>, Spanned<Value>)>,
    /// `where`
    pub where_: Option<RawCond>,
    /// `sql`
    pub sql: Option<Spanned<String>>,
    /// `window`: how far back `:window_start` reaches (a duration).
    pub window: Option<Spanned<String>>,
    /// Every key written in the table, also those whose value was refused: a key present
    /// with a value of the wrong type is not also reported missing.
    pub keys: Vec<String>,
    /// Whether a param (or the whole `[rule.params]`) was refused: the SQL may bind a param
    /// that is then missing from `params`, and is not also blamed for it.
    pub params_refused: bool,
}

const RULE_KEYS: &[&str] = &[
    "id",
    "title",
    "severity",
    "resource_type",
    "description",
    "remediation",
    "message",
    "include_archived",
    "params",
    "where",
    "sql",
    "window",
];

/// Parses one rule file, recording every problem in `diags`.
pub fn parse_rule_file(text: &str, file: FileId, diags: &mut Diagnostics) -> Vec<RawRule> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        // What the parser recovered around a syntax error is a guess: checking it would
        // report problems that are only echoes of the syntax error.
        for e in errors {
            crate::diagnostics::toml_syntax(diags, file, text, e.span(), e.message());
        }
        return Vec::new();
    }
    let mut rules = Vec::new();
    let root = root.get_ref();
    for (key, value) in root {
        if key.get_ref() != "rule" {
            diags
                .error(
                    DiagnosticCode::UnknownKey,
                    Some(file),
                    Some(key.span()),
                    format!("unknown top-level key `{}`", key.get_ref()),
                )
                .help("a rule file holds only `[[rule]]` tables");
            continue;
        }
        let Some(items) = value.get_ref().as_array() else {
            diags
                .error(
                    DiagnosticCode::WrongType,
                    Some(file),
                    Some(value.span()),
                    "`rule` must be an array of tables",
                )
                .help("write each rule as `[[rule]]`");
            continue;
        };
        for item in items {
            match item.get_ref().as_table() {
                Some(table) => rules.push(parse_rule(table, item.span(), file, diags)),
                None => {
                    diags.error(
                        DiagnosticCode::WrongType,
                        Some(file),
                        Some(item.span()),
                        "each `rule` must be a table",
                    );
                }
            }
        }
    }
    rules
}

fn parse_rule(
    table: &DeTable<'_>,
    span: Range<usize>,
    file: FileId,
    diags: &mut Diagnostics,
) -> RawRule {
    let mut rule = RawRule {
        file,
        span,
        id: None,
        title: None,
        severity: None,
        resource_type: None,
        description: None,
        remediation: None,
        message: None,
        include_archived: None,
        params: Vec::new(),
        params_refused: false,
        where_: None,
        sql: None,
        window: None,
        keys: Vec::new(),
    };
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        rule.keys.push(name.to_owned());
        match name {
            "id" => rule.id = string(value, name, file, diags),
            "title" => rule.title = string(value, name, file, diags),
            "severity" => rule.severity = string(value, name, file, diags),
            "resource_type" => rule.resource_type = string(value, name, file, diags),
            "description" => rule.description = string(value, name, file, diags),
            "remediation" => rule.remediation = string(value, name, file, diags),
            "message" => rule.message = string(value, name, file, diags),
            "sql" => rule.sql = string(value, name, file, diags),
            "window" => rule.window = string(value, name, file, diags),
            "include_archived" => match value.get_ref().as_bool() {
                Some(b) => rule.include_archived = Some(Spanned::new(value.span(), b)),
                None => wrong_type(value, name, "a boolean", file, diags),
            },
            "params" => {
                if let Some(params) = value.get_ref().as_table() {
                    for (pkey, pvalue) in params {
                        if let Some(v) = literal(pvalue, file, diags) {
                            rule.params
                                .push((Spanned::new(pkey.span(), pkey.get_ref().to_string()), v));
                        } else {
                            rule.params_refused = true;
                        }
                    }
                } else {
                    rule.params_refused = true;
                    wrong_type(value, name, "a table", file, diags);
                }
            }
            "where" => rule.where_ = condition(value, file, diags),
            _ => {
                let d = diags.error(
                    DiagnosticCode::UnknownKey,
                    Some(file),
                    Some(key.span()),
                    format!("unknown key `{name}` in a rule"),
                );
                // As the configuration's unknown keys do: a typo gets its key by name.
                match crate::config::closest(name, RULE_KEYS.iter().copied()) {
                    Some(close) => d.help(format!("did you mean `{close}`?")),
                    None => d.help(format!("a rule has: {}", RULE_KEYS.join(", "))),
                };
            }
        }
    }
    rule
}

fn wrong_type(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    expected: &str,
    file: FileId,
    diags: &mut Diagnostics,
) {
    diags
        .error(
            DiagnosticCode::WrongType,
            Some(file),
            Some(value.span()),
            format!(
                "`{key}` must be {expected}, not {}",
                a(value.get_ref().type_str())
            ),
        )
        .label(format!("expected {expected}"));
}

fn string(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    file: FileId,
    diags: &mut Diagnostics,
) -> Option<Spanned<String>> {
    if let Some(s) = value.get_ref().as_str() {
        Some(Spanned::new(value.span(), s.to_owned()))
    } else {
        wrong_type(value, key, "a string", file, diags);
        None
    }
}

/// A param default or condition value.
fn literal(
    value: &Spanned<DeValue<'_>>,
    file: FileId,
    diags: &mut Diagnostics,
) -> Option<Spanned<Value>> {
    let v = match value.get_ref() {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Integer(i) => {
            if let Ok(n) = i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                Value::Int(n)
            } else {
                diags.error(
                    DiagnosticCode::BadValue,
                    Some(file),
                    Some(value.span()),
                    "integer out of range",
                );
                return None;
            }
        }
        DeValue::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                if let Some(s) = item.get_ref().as_str() {
                    out.push(s.to_owned());
                } else {
                    diags
                        .error(
                            DiagnosticCode::BadValue,
                            Some(file),
                            Some(item.span()),
                            format!(
                                "lists may only hold strings, not {}",
                                a(item.get_ref().type_str())
                            ),
                        )
                        .label("not a string");
                    return None;
                }
            }
            Value::List(out)
        }
        other => {
            diags
                .error(
                    DiagnosticCode::BadValue,
                    Some(file),
                    Some(value.span()),
                    format!(
                        "values are integers, strings, booleans or lists of strings, not {}",
                        a(other.type_str())
                    ),
                )
                .label("unsupported type");
            return None;
        }
    };
    Some(Spanned::new(value.span(), v))
}

fn condition(
    value: &Spanned<DeValue<'_>>,
    file: FileId,
    diags: &mut Diagnostics,
) -> Option<RawCond> {
    let Some(table) = value.get_ref().as_table() else {
        wrong_type(value, "where", "a table", file, diags);
        return None;
    };
    let span = value.span();
    let get = |k: &str| table.get(k);
    let combinators: Vec<&str> = ["all", "any", "not"]
        .into_iter()
        .filter(|k| table.contains_key(*k))
        .collect();
    if !combinators.is_empty() {
        if table.len() != 1 {
            diags
                .error(
                    DiagnosticCode::BadCondition,
                    Some(file),
                    Some(span),
                    "a condition is either one of `all`, `any`, `not` or a `field`/`op` test, not both",
                )
                .help("nest the tests inside `all = [...]`");
            return None;
        }
        let key = combinators[0];
        let inner = get(key)?;
        if key == "not" {
            return condition(inner, file, diags).map(|c| RawCond::Not(Box::new(c)));
        }
        let Some(items) = inner.get_ref().as_array() else {
            wrong_type(inner, key, "an array of conditions", file, diags);
            return None;
        };
        let conds: Vec<RawCond> = items
            .iter()
            .filter_map(|item| condition(item, file, diags))
            .collect();
        return Some(if key == "all" {
            RawCond::All(conds, span)
        } else {
            RawCond::Any(conds, span)
        });
    }
    let mut field = None;
    let mut op = None;
    let mut lit = None;
    let mut param = None;
    for (key, v) in table {
        match key.get_ref().as_ref() {
            "field" => field = string(v, "field", file, diags),
            "op" => op = string(v, "op", file, diags),
            "value" => lit = literal(v, file, diags),
            "param" => param = string(v, "param", file, diags),
            other => {
                let d = diags.error(
                    DiagnosticCode::UnknownKey,
                    Some(file),
                    Some(key.span()),
                    format!("unknown key `{other}` in a condition"),
                );
                match crate::config::closest(other, ["field", "op", "value", "param"]) {
                    Some(close) => d.help(format!("did you mean `{close}`?")),
                    None => d.help(
                        "a condition has `field`, `op` and `value` or `param`, or one of `all`, `any`, `not`",
                    ),
                };
            }
        }
    }
    let (Some(field), Some(op)) = (field, op) else {
        diags
            .error(
                DiagnosticCode::BadCondition,
                Some(file),
                Some(span),
                "a condition needs `field` and `op`",
            )
            .help("e.g. { field = \"last_used_at\", op = \"older_than\", value = \"90d\" }");
        return None;
    };
    Some(RawCond::Leaf {
        field,
        op,
        value: lit,
        param,
        span,
    })
}
