//! `rules test`: each rule's fixtures — small organizations in the simulator's format with
//! the findings they must (and must not) produce — run through the real store and
//! evaluator.
//!
//! A fixture file (`fixtures/<rule-id>.toml`) holds:
//! ```toml
//! rule = "api-key-stale"            # default: the file name without `.toml`
//! [[case]]
//! name = "a key used yesterday is not stale"
//! params = { max_idle_days = 30 }   # optional overrides
//! expect = []                       # [{ resource_id = "...", project_id = "..." }, ...]
//! [case.org]                        # the organization (docs/sim-org-format.md), or org = '''{json}'''
//! organization = "acme"
//! projects = [ ... ]
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{TimeZone, Utc};
use serde::Deserialize;

use crate::audit_log::AuditEvent;
use crate::model::{CrawlStats, ProjectId, SnapshotStatus};
use crate::sim::Org;
use crate::store::Store;

use super::{Rule, RuleSet, Value, evaluate_rules};

/// The largest fixture file read: fixtures embed whole organizations, yet stay far below it.
const MAX_FIXTURE_FILE: crate::size::ByteSize = crate::size::ByteSize::from_mib(64);

/// One fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    rule: Option<String>,
    #[serde(default)]
    case: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: toml::Spanned<String>,
    org: toml::Spanned<toml::Value>,
    #[serde(default)]
    params: toml::Table,
    expect: Vec<Expected>,
}

/// A finding a case expects.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// The resource.
    pub resource_id: String,
    /// Its project.
    pub project_id: Option<ProjectId>,
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in {}",
            self.resource_id,
            self.project_id
                .as_ref()
                .map_or("(no project)", ProjectId::as_str)
        )
    }
}

/// One case of a fixture file.
#[derive(Clone, Debug)]
pub struct Case {
    /// The fixture file.
    pub file: String,
    /// The line of the case's `name` in it, so a failure says where the case is.
    pub line: usize,
    /// The rule it tests.
    pub rule: String,
    /// What it shows.
    pub name: String,
    /// The organization, as simulator JSON.
    pub org_json: String,
    /// Where `org_json` begins in the file (line, column), when it is written there verbatim:
    /// a JSON syntax error is then reported at its place in the file.
    pub org_json_at: Option<(usize, usize)>,
    /// Param overrides.
    pub params: toml::Table,
    /// The findings it must produce, and no others.
    pub expect: Vec<Expected>,
}

/// The outcome of one case.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// Expected findings that did not appear.
    pub missing: Vec<Expected>,
    /// Findings that appeared without being expected.
    pub unexpected: Vec<Expected>,
    /// Why the case could not run.
    pub error: Option<String>,
}

impl CaseResult {
    /// Whether the rule behaved as expected.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.missing.is_empty() && self.unexpected.is_empty()
    }
}

/// Parses a fixture file; `name` is used in messages and gives the default rule id.
pub fn parse(name: &str, text: &str) -> Result<Vec<Case>, String> {
    let file: FixtureFile = toml::from_str(text).map_err(|e| {
        let (line, col) = e
            .span()
            .map_or((1, 1), |s| crate::config::line_column(text, s.start));
        format!("{name}:{line}:{col}: {}", e.message())
    })?;
    let default_rule = Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rule = file.rule.unwrap_or(default_rule);
    file.case
        .into_iter()
        .map(|c| {
            let line = crate::config::line_column(text, c.name.span().start).0;
            let case_name = c.name.into_inner();
            let org_at = c.org.span();
            let (org_json, org_json_at) = match c.org.into_inner() {
                toml::Value::String(json) => {
                    // Where the JSON begins in the file, when the file holds it verbatim.
                    let at = super::validate::span_in_string(text, org_at, &json, 0..0)
                        .map(|at| crate::diagnostics::line_column(text, at.start));
                    (json, at)
                }
                other => (
                    serde_json::to_string(&other)
                        .map_err(|e| format!("{name}:{line}: case `{case_name}`: org: {e}"))?,
                    None,
                ),
            };
            Ok(Case {
                file: name.to_owned(),
                line,
                rule: rule.clone(),
                name: case_name,
                org_json,
                org_json_at,
                params: c.params,
                expect: c.expect,
            })
        })
        .collect()
}

/// serde_json's `byte_column` on `line` of `text` (both 1-based) in characters, as every
/// other column orgwarden gives (and editors show) counts them.
fn char_column(text: &str, line: usize, byte_column: usize) -> usize {
    text.split('\n')
        .nth(line.saturating_sub(1))
        .map_or(byte_column, |l| {
            l.char_indices()
                .take_while(|&(i, _)| i < byte_column)
                .count()
        })
}

/// Every fixture case available: the shipped pack's, those in the rule set's fixture
/// folders and in `extra` folders.
pub fn discover(rules: &RuleSet, extra: &[std::path::PathBuf]) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for (name, text) in super::PACK_FIXTURES {
        cases.extend(parse(name, text)?);
    }
    let dirs = rules
        .fixture_dirs
        .iter()
        .map(|d| (d, false))
        .chain(extra.iter().map(|d| (d, true)));
    for (dir, named) in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            // A rule folder need not have fixtures beside it.
            Err(e) if !named && e.kind() == std::io::ErrorKind::NotFound => continue,
            // A folder named by `--fixtures` that cannot be read would leave its cases
            // untested while the run still passes: refused, as an unreadable rule path is.
            Err(e) => return Err(format!("cannot read fixture folder {}: {e}", dir.display())),
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for file in files {
            let bytes = crate::size::read_file_bounded(&file, MAX_FIXTURE_FILE)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("cannot read {}: not UTF-8 text", file.display()))?;
            cases.extend(parse(&file.display().to_string(), &text)?);
        }
    }
    Ok(cases)
}

/// Runs one case at `now` (Unix seconds; the org's relative times are read against it).
pub fn run(rule: &Rule, case: &Case, now: i64) -> CaseResult {
    let mut result = CaseResult {
        case: case.clone(),
        missing: Vec::new(),
        unexpected: Vec::new(),
        error: None,
    };
    match found(rule, case, now) {
        Ok(found) => {
            let expected: BTreeSet<Expected> = case.expect.iter().cloned().collect();
            result.missing = expected.difference(&found).cloned().collect();
            result.unexpected = found.difference(&expected).cloned().collect();
        }
        Err(e) => result.error = Some(e),
    }
    result
}

/// Stores the organization's audit log as one complete read by the collector would (every
/// event but the tenant-scoped ones, which it does not ask for), or, with
/// `audit_log.enabled = false`, the refused read.
fn store_audit_log(
    writer: &mut crate::store::SnapshotWriter<'_>,
    org: &Org,
    now: i64,
) -> Result<(), String> {
    use crate::audit_log::read::{AuditLogOutcome, AuditLogRead};
    let events: Vec<AuditEvent> = org
        .audit_log
        .newest_first()
        .filter(|e| {
            !e.get("type")
                .and_then(serde_json::Value::as_str)
                .is_some_and(crate::sim::audit_schema::is_tenant_scoped)
        })
        .map(AuditEvent::from_api)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("audit log: {e}"))?;
    let outcome = if org.audit_log.enabled {
        AuditLogOutcome::Complete
    } else {
        AuditLogOutcome::Disabled(crate::model::ScopeError {
            status: Some(403),
            message: crate::sim::audit_log::DISABLED_MESSAGE.to_owned(),
        })
    };
    let stored = if org.audit_log.enabled {
        writer
            .store_audit_events(&events)
            .map_err(|e| e.to_string())?
    } else {
        0
    };
    let read = AuditLogRead {
        since: events
            .iter()
            .map(|e| e.effective_at)
            .min()
            .unwrap_or(now)
            .min(now),
        started_at: now,
        requests: 1,
        received: stored,
        newest: events.iter().map(|e| e.effective_at).max(),
        outcome,
    };
    writer
        .record_audit_log_read(&read, stored)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// An in-memory store holding `org` as one complete snapshot at `now` would: its objects,
/// its costs and its audit log.
pub(super) fn store_of(org: &Org, now: i64) -> Result<Store, String> {
    let mut store = Store::open_in_memory().map_err(|e| e.to_string())?;
    let at = Utc
        .timestamp_opt(now, 0)
        .single()
        .ok_or("time out of range")?;
    let mut writer = store
        .begin_snapshot(&org.organization, at)
        .map_err(|e| e.to_string())?;
    for scope in org.scope_results() {
        writer.apply(scope).map_err(|e| e.to_string())?;
    }
    writer
        .apply_costs(&org.costs_read(now))
        .map_err(|e| e.to_string())?;
    store_audit_log(&mut writer, org, now)?;
    writer
        .finish(&CrawlStats::default(), at, SnapshotStatus::Complete)
        .map_err(|e| e.to_string())?;
    Ok(store)
}

fn found(rule: &Rule, case: &Case, now: i64) -> Result<BTreeSet<Expected>, String> {
    let mut rule = rule.clone();
    for (name, value) in &case.params {
        let default = rule
            .defaults
            .get(name)
            .ok_or_else(|| format!("rule `{}` has no param `{name}`", rule.id))?;
        let v = Value::from_toml(value)
            .map_err(|t| format!("param `{name}`: {} is not supported", super::parse::a(t)))?;
        if std::mem::discriminant(&v) != std::mem::discriminant(default) {
            // Says which is which: "is a string, not an integer" alone reads either way.
            return Err(format!(
                "param `{name}` must be {}, as its default {default} is, not {} ({v})",
                super::parse::a(default.type_name()),
                super::parse::a(v.type_name())
            ));
        }
        if let Some(problem) = super::settings::override_problem(&rule, name, &v) {
            return Err(format!("param `{name}`: {}", problem.message));
        }
        rule.params.insert(name.clone(), v);
    }
    // The syntax is checked here, not by the simulator, to say where in the fixture file it
    // breaks rather than where in the JSON text.
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&case.org_json) {
        let shown = e.to_string();
        let what = shown
            .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
            .unwrap_or(&shown);
        let e_column = char_column(&case.org_json, e.line(), e.column());
        return Err(match case.org_json_at {
            Some((line, column)) => {
                let (l, c) = if e.line() == 1 {
                    (line, column + e_column.saturating_sub(1))
                } else {
                    (line + e.line() - 1, e_column)
                };
                format!("{}:{l}:{c}: org: invalid JSON: {what}", case.file)
            }
            None => format!(
                "org: invalid JSON at line {} column {e_column} of its text: {what}",
                e.line(),
            ),
        });
    }
    let org = Org::from_json_str(&case.org_json, now).map_err(|e| format!("org: {e}"))?;
    let store = store_of(&org, now)?;
    let hits = evaluate_rules(store.reader(), &[&rule], now).map_err(|e| e.to_string())?;
    Ok(hits
        .into_iter()
        .map(|h| Expected {
            resource_id: h.resource_id,
            project_id: h.project_id,
        })
        .collect())
}
