//! Evaluation: each rule's SQL run by SQLite on a connection switched to `query_only`,
//! rows turned into [`Hit`]s with their messages.

use std::collections::BTreeMap;

use rusqlite::Connection;

use crate::store::Reader;

use crate::model::{ProjectId, RuleId};

use super::compile::{self, SqlValue};
use super::{Rule, RuleBody, RuleError, RuleSet};

pub use crate::model::Hit;

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
pub fn evaluate(db: Reader<'_>, rules: &RuleSet, now: i64) -> Result<Vec<Hit>, RuleError> {
    let rules: Vec<&Rule> = rules.enabled().collect();
    evaluate_rules(db, &rules, now)
}

/// Evaluates the given rules (see [`evaluate`]).
pub fn evaluate_rules(db: Reader<'_>, rules: &[&Rule], now: i64) -> Result<Vec<Hit>, RuleError> {
    let conn = db.conn();
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
                .map(std::string::ToString::to_string)
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
