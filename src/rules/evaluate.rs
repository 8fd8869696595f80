//! Evaluation: each rule's SQL run by SQLite on a connection switched to `query_only`,
//! rows turned into [`Hit`]s with their messages.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};
use tokio_util::sync::CancellationToken;

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

/// Limits on one evaluation: how long each rule may run, and a token that stops them all
/// (shutdown, a signal).
#[derive(Clone, Debug)]
pub struct Budget {
    /// How long one rule may run.
    pub per_rule: Duration,
    /// Fires to stop the rule running and skip the rest.
    pub cancel: CancellationToken,
}

impl Budget {
    /// A budget of `per_rule` that nothing cancels.
    pub fn new(per_rule: Duration) -> Budget {
        Budget {
            per_rule,
            cancel: CancellationToken::new(),
        }
    }
}

/// What evaluating a set of rules produced: the hits of the rules that finished, and the
/// rules that did not (their findings must be left as they were).
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Hits of every rule that ran to its end.
    pub hits: Vec<Hit>,
    /// One error per rule that did not finish: stopped at its budget
    /// ([`RuleError::TimedOut`]), or failed as it ran (SQLite refused a value, a message
    /// did not render). Each is one rule's problem: the others still run.
    pub unfinished: Vec<RuleError>,
}

impl Evaluation {
    /// The ids of the rules that did not finish.
    pub fn unfinished_rules(&self) -> impl Iterator<Item = &RuleId> {
        self.unfinished.iter().map(RuleError::rule)
    }
}

/// Evaluates every enabled rule over the views of `db` at `now` (Unix seconds) within
/// `budget`. The connection is switched to `query_only` for the duration, so no rule can
/// write.
pub fn evaluate(
    db: Reader<'_>,
    rules: &RuleSet,
    now: i64,
    budget: &Budget,
) -> Result<Evaluation, RuleError> {
    let rules: Vec<&Rule> = rules.enabled().collect();
    evaluate_within(db, &rules, now, budget)
}

/// Evaluates the given rules under the default budget; a rule past it is an error.
pub fn evaluate_rules(db: Reader<'_>, rules: &[&Rule], now: i64) -> Result<Vec<Hit>, RuleError> {
    let mut evaluation = evaluate_within(db, rules, now, &Budget::new(super::DEFAULT_TIMEOUT))?;
    match evaluation.unfinished.pop() {
        Some(e) => Err(e),
        None => Ok(evaluation.hits),
    }
}

/// Evaluates the given rules within `budget`: a rule past its time is stopped, and a rule
/// that fails is given up; either is listed in [`Evaluation::unfinished`] and the next rule
/// runs. A cancelled budget stops the whole evaluation with [`RuleError::Interrupted`].
pub fn evaluate_within(
    db: Reader<'_>,
    rules: &[&Rule],
    now: i64,
    budget: &Budget,
) -> Result<Evaluation, RuleError> {
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
    let watchdog = Watchdog::new(conn, budget.cancel.clone());
    watched(&watchdog, || run_rules(conn, rules, now, budget, &watchdog))
}

/// Runs `work` with `watchdog` watching on a thread of its own, which is told to finish
/// however `work` ends: the scope waits for that thread, so a panic in a rule would
/// otherwise hold the process for ever instead of unwinding.
fn watched<T>(watchdog: &Watchdog, work: impl FnOnce() -> T) -> T {
    /// Finishes the watch when dropped, on return and on unwinding alike.
    struct Finishing<'w>(&'w Watchdog);
    impl Drop for Finishing<'_> {
        fn drop(&mut self) {
            self.0.finish();
        }
    }
    std::thread::scope(|scope| {
        scope.spawn(|| watchdog.watch());
        let _finishing = Finishing(watchdog);
        work()
    })
}

fn run_rules(
    conn: &Connection,
    rules: &[&Rule],
    now: i64,
    budget: &Budget,
    watchdog: &Watchdog,
) -> Result<Evaluation, RuleError> {
    let mut out = Evaluation::default();
    let env = message_env();
    for rule in rules {
        if budget.cancel.is_cancelled() {
            return Err(RuleError::Interrupted {
                rule: rule.id.clone(),
            });
        }
        let mut hits = Vec::new();
        // A budget past the clock's end (`18446744073709551615s` parses) is no limit: the
        // addition would panic here, and the watchdog thread, never told to finish, would
        // hold the process for ever.
        watchdog.arm(Instant::now().checked_add(budget.per_rule));
        let result = evaluate_one(conn, rule, now, &env, &mut hits);
        let expired = watchdog.disarm();
        match result {
            Ok(()) => out.hits.append(&mut hits),
            Err(e) if interrupted(&e) && budget.cancel.is_cancelled() => {
                return Err(RuleError::Interrupted {
                    rule: rule.id.clone(),
                });
            }
            Err(e) if interrupted(&e) && expired => out.unfinished.push(RuleError::TimedOut {
                rule: rule.id.clone(),
                budget: budget.per_rule,
            }),
            // One rule's SQL failing on this data (a value SQLite cannot read as JSON) says
            // nothing about the others; its findings stay as they were.
            Err(e) => out.unfinished.push(e),
        }
    }
    Ok(out)
}

/// Whether SQLite stopped the rule because the watchdog interrupted it.
fn interrupted(error: &RuleError) -> bool {
    matches!(error, RuleError::Sql { source, .. }
        if source.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted))
}

/// How often the watchdog looks at the clock and the token: the delay a signal or a
/// budget can take to stop a rule.
const TICK: Duration = Duration::from_millis(20);

/// The environment rule messages render in: a field the API left out is empty text, not
/// Jinja's Python-like "None"; `utc` and `date` write a time column (Unix seconds) as
/// `2026-03-01T12:00:00Z` and `2026-03-01`; `cents` writes an amount in cents (the API's
/// spend thresholds) as `1000.00`.
pub(super) fn message_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_formatter(|out, state, value| {
        if value.is_none() || value.is_undefined() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("utc", |value: minijinja::Value| {
        time_text(value, "%Y-%m-%dT%H:%M:%SZ")
    });
    env.add_filter("date", |value: minijinja::Value| {
        time_text(value, "%Y-%m-%d")
    });
    env.add_filter("cents", cents_text);
    env
}

/// An integer amount in cents as units with two decimals (`100000` → `1000.00`, `-5` →
/// `-0.05`); anything else as it was, like [`time_text`].
fn cents_text(value: minijinja::Value) -> minijinja::Value {
    match i64::try_from(value.clone()) {
        Ok(cents) => {
            let sign = if cents < 0 { "-" } else { "" };
            let abs = cents.unsigned_abs();
            minijinja::Value::from(format!("{sign}{}.{:02}", abs / 100, abs % 100))
        }
        Err(_) => value,
    }
}

/// A time in Unix seconds as UTC text; anything else as it was, so an odd value from the
/// API never fails a rule's message.
fn time_text(value: minijinja::Value, format: &str) -> minijinja::Value {
    // Time columns are stored as whole seconds.
    let seconds = i64::try_from(value.clone()).ok();
    match seconds.and_then(crate::report::unix_time) {
        Some(time) => minijinja::Value::from(time.format(format).to_string()),
        None => value,
    }
}

/// A thread beside the evaluation that interrupts the running statement when the rule's
/// deadline passes or the token fires. `Reader` lends only `&Connection`, and SQLite's
/// progress handler needs `&mut`; `sqlite3_interrupt` is the same mechanism made safe to
/// call from another thread.
struct Watchdog {
    handle: rusqlite::InterruptHandle,
    cancel: CancellationToken,
    /// The running rule's deadline, and whether it expired. The lock is held while
    /// interrupting, so an interrupt can never land on the next rule.
    state: Mutex<(Option<Instant>, bool)>,
    done: AtomicBool,
}

impl Watchdog {
    fn new(conn: &Connection, cancel: CancellationToken) -> Watchdog {
        Watchdog {
            handle: conn.get_interrupt_handle(),
            cancel,
            state: Mutex::new((None, false)),
            done: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<Instant>, bool)> {
        // A poisoned lock only means a panic elsewhere; the state is two plain values.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn arm(&self, deadline: Option<Instant>) {
        *self.lock() = (deadline, false);
    }

    /// Ends the rule's watch; true when its deadline had passed.
    fn disarm(&self) -> bool {
        let mut state = self.lock();
        let expired = state.1;
        *state = (None, false);
        expired
    }

    fn finish(&self) {
        self.done.store(true, Ordering::Release);
    }

    fn watch(&self) {
        while !self.done.load(Ordering::Acquire) {
            std::thread::sleep(TICK);
            let mut state = self.lock();
            let Some(deadline) = state.0 else {
                continue;
            };
            if self.cancel.is_cancelled() {
                self.handle.interrupt();
            } else if Instant::now() >= deadline {
                state.1 = true;
                self.handle.interrupt();
            }
        }
    }
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
        } else if name == ":unread" {
            Some(SqlValue::Text(unread_views(conn).map_err(sql_err)?))
        } else if name == ":unread_projects" {
            Some(SqlValue::Text(unread_projects(conn).map_err(sql_err)?))
        } else if name == ":window_start" {
            // Validation gave every rule reading `:window_start` a window that parses.
            let unjudged = unjudged_since(conn).map_err(sql_err)?;
            rule.window_secs()
                .map(|w| SqlValue::Integer(window_start(now, w, unjudged)))
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
    let mut without_resource = 0_usize;
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
            without_resource += 1;
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
    if without_resource > 0 {
        // Such a row cannot be a finding: said, so a rule's SQL that loses its ids is seen.
        tracing::warn!(
            rule = %rule.id,
            rows = without_resource,
            "rule returned rows with a NULL resource_id; they are not findings"
        );
    }
    Ok(())
}

/// The start of an event rule's window at `now`: `now − window`, reaching back to
/// `unjudged` when that is earlier. After runs that could not read the log (or none ran for
/// longer than the window), the read that catches up stores events older than the window
/// that no evaluation has seen; they are judged once, here, instead of never.
pub fn window_start(now: i64, window: i64, unjudged: Option<i64>) -> i64 {
    let start = now.saturating_sub(window);
    unjudged.map_or(start, |u| start.min(u))
}

/// When the latest snapshot read the audit log completely: the earliest event time no
/// earlier evaluation can have seen — the start of the previous complete read, less the
/// re-read overlap. `None` when the latest read is not complete (nothing new was stored)
/// or there was no earlier complete read (the first read judges only its window, not the
/// whole lookback).
pub fn unjudged_since(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT (SELECT s.started_at FROM audit_log_read r JOIN snapshot s ON s.id = r.snapshot_id
                 WHERE r.outcome = 'complete' AND r.snapshot_id < cur.id
                 ORDER BY r.snapshot_id DESC LIMIT 1)
         FROM (SELECT max(id) AS id FROM snapshot WHERE status <> 'running') cur
         WHERE EXISTS (SELECT 1 FROM audit_log_read
                       WHERE snapshot_id = cur.id AND outcome = 'complete')",
        [],
        |row| row.get::<_, Option<i64>>(0),
    )
    .optional()
    .map(|v| {
        v.flatten()
            .map(|t| t.saturating_sub(crate::audit_log::read::OVERLAP_SECS))
    })
}

/// The latest finished snapshot, unless it failed (its reads were rolled back) or there is
/// none: what `:unread` and `:unread_projects` are judged by.
fn latest_usable(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let latest: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, status FROM snapshot WHERE status <> 'running' ORDER BY id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(latest.and_then(|(id, status)| (status != "failed").then_some(id)))
}

/// The scopes snapshot `id` did not read: each family with the project whose read of it
/// failed (`""` for a family failed or skipped as a whole), families this binary does not
/// know left out (no rule can name them either).
fn unread_scopes(
    conn: &Connection,
    id: i64,
) -> rusqlite::Result<Vec<(crate::model::Family, String)>> {
    let mut statement = conn.prepare(
        "SELECT family, project_id FROM snapshot_scope \
         WHERE snapshot_id = ?1 AND outcome = 'failed' \
         UNION SELECT family, '' FROM snapshot_skipped WHERE snapshot_id = ?1",
    )?;
    let rows = statement.query_map([id], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut scopes = Vec::new();
    for row in rows {
        let (name, project) = row?;
        if let Some(family) = crate::model::Family::from_view(&name) {
            scopes.push((family, project));
        }
    }
    Ok(scopes)
}

/// The views whose current rows the latest snapshot did not read, as a JSON array of view
/// names (bound as `:unread`): every view when that snapshot failed (its reads were rolled
/// back) or none was taken; else the views of the scopes it could not read, the families
/// it left out on purpose (`[collect] skip`), and every family under one of those. Their
/// rows are carried forward from earlier snapshots, or missing if none ever read them: a
/// rule that reports the *absence* of a row must not trust such a view. `audit_log_events`
/// is among them when that snapshot did not read the audit log completely (failed, audit
/// logging off, or not read at all).
pub fn unread_views(conn: &Connection) -> rusqlite::Result<String> {
    use crate::model::Family;
    let latest = latest_usable(conn)?;
    let unread: std::collections::BTreeSet<Family> = match latest {
        Some(id) => {
            let mut unread: std::collections::BTreeSet<Family> = unread_scopes(conn, id)?
                .into_iter()
                .map(|(family, _)| family)
                .collect();
            // Families are declared parents first, so one pass reaches every descendant.
            for family in Family::ALL {
                if family.parent().is_some_and(|p| unread.contains(&p)) {
                    unread.insert(family);
                }
            }
            unread
        }
        None => Family::ALL.into_iter().collect(),
    };
    let log_read = match latest {
        Some(id) => conn.query_row(crate::store::AUDIT_LOG_COMPLETE, [id], |row| {
            row.get::<_, bool>(0)
        })?,
        None => false,
    };
    let mut names: Vec<&str> = unread.into_iter().map(Family::view).collect();
    if !log_read {
        names.push(crate::audit_log::EVENTS_VIEW);
    }
    Ok(serde_json::Value::from(names).to_string())
}

/// For each view of a project's objects, the projects whose rows of it the latest snapshot
/// did not read, as a JSON object `{"view": ["proj_…", …]}` (bound as `:unread_projects`;
/// a view every project read is left out). `:unread` names a view as soon as one project's
/// read of it failed; this says which: a rule that reports a project for a *missing* row (no
/// spend alert, no owner) must not trust it there — a new project whose read failed has no
/// rows at all — yet may judge every other project. A view unread as a whole (a failed
/// snapshot, the project list, `[collect] skip`) lists every project.
pub fn unread_projects(conn: &Connection) -> rusqlite::Result<String> {
    use crate::model::Family;
    use std::collections::BTreeSet;
    let mut whole: BTreeSet<Family> = BTreeSet::new();
    let mut some: BTreeMap<Family, BTreeSet<String>> = BTreeMap::new();
    match latest_usable(conn)? {
        Some(id) => {
            for (family, project) in unread_scopes(conn, id)? {
                if project.is_empty() {
                    whole.insert(family);
                } else {
                    some.entry(family).or_default().insert(project);
                }
            }
        }
        None => whole.extend(Family::ALL),
    }
    // Families are declared parents first, so one pass reaches every descendant: a user
    // list that failed leaves that project's user roles unread too.
    for family in Family::ALL {
        let Some(parent) = family.parent() else {
            continue;
        };
        if whole.contains(&parent) {
            whole.insert(family);
        }
        if let Some(projects) = some.get(&parent).cloned() {
            some.entry(family).or_default().extend(projects);
        }
    }
    let every: Vec<String> = if whole.iter().any(|f| f.in_project()) {
        let mut statement = conn.prepare("SELECT id FROM projects WHERE id IS NOT NULL")?;
        let ids = statement.query_map([], |row| row.get::<_, String>(0))?;
        ids.collect::<rusqlite::Result<_>>()?
    } else {
        Vec::new()
    };
    let mut out = serde_json::Map::new();
    for family in Family::ALL.into_iter().filter(|f| f.in_project()) {
        let ids: Vec<String> = if whole.contains(&family) {
            every.clone()
        } else {
            some.remove(&family)
                .map(|s| s.into_iter().collect())
                .unwrap_or_default()
        };
        if !ids.is_empty() {
            out.insert(family.view().to_owned(), ids.into());
        }
    }
    Ok(serde_json::Value::Object(out).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_the_rules_run_still_ends_the_watch_and_unwinds() {
        // On a thread of its own, so that a watch never told to finish fails the test
        // instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let conn = Connection::open_in_memory().unwrap();
            let watchdog = Watchdog::new(&conn, CancellationToken::new());
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                watched(&watchdog, || panic!("a rule panicked"))
            }));
            let _ = tx.send(outcome.is_err());
        });
        let unwound = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the watch outlived the panic and held the evaluation");
        assert!(unwound);
    }
}
