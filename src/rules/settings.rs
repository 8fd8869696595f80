//! The `[rules]` and `[[exemption]]` sections of `orgwarden.toml` applied to the loaded
//! rules, every problem pointing at its key in the configuration file.

use chrono::NaiveDate;

use crate::config::{Config, closest, span_of};
use crate::diagnostics::{DiagnosticCode, Diagnostics, FileId};
use crate::exemptions::{Exemption, Standing, check_pattern};
use crate::model::{ProjectId, RuleId};

use super::{Rule, Value, compile, parse};

/// Applies `[rules]` of the configuration: disabled rules, severities and params, with
/// every unknown rule, unknown param and wrongly typed value reported.
pub(super) fn apply_config(
    rules: &mut [Rule],
    config: &Config,
    file: Option<FileId>,
    diags: &mut Diagnostics,
) {
    let ids: Vec<String> = rules.iter().map(|r| r.id.0.clone()).collect();
    let unknown_rule = |id: &toml::Spanned<String>, diags: &mut Diagnostics| {
        let d = diags.error(
            DiagnosticCode::UnknownRule,
            file,
            span_of(id),
            format!("no rule has the id `{}`", id.get_ref()),
        );
        d.label("unknown rule");
        if let Some(close) = closest(id.get_ref(), ids.iter().map(String::as_str)) {
            d.help(format!("did you mean `{close}`?"));
        }
    };
    for id in &config.rules.disabled {
        match rules.iter_mut().find(|r| r.id.as_str() == id.get_ref()) {
            Some(rule) => rule.enabled = false,
            None => unknown_rule(id, diags),
        }
    }
    // Without audit-log reads the log's rules have nothing to judge: they are off like
    // disabled rules, so their findings resolve as no longer evaluated instead of staying
    // open on the last read forever.
    if !config.audit_log.enabled {
        for rule in rules.iter_mut().filter(|r| {
            matches!(
                r.resource_type,
                super::ResourceType::AuditLogEvents | super::ResourceType::AuditLogStatus
            )
        }) {
            rule.enabled = false;
        }
    }
    for (id, severity) in &config.rules.severity {
        match rules.iter_mut().find(|r| r.id.as_str() == id.get_ref()) {
            Some(rule) => rule.severity = *severity,
            None => unknown_rule(id, diags),
        }
    }
    for params in &config.rules.params {
        let id = params.rule.get_ref();
        let Some(rule) = rules.iter_mut().find(|r| r.id.as_str() == id) else {
            unknown_rule(&params.rule, diags);
            continue;
        };
        for (name, value) in &params.values {
            apply_param(rule, name, value, file, diags);
        }
    }
}

/// Checks one `[rules.params.<id>]` value against the rule's default and applies it.
fn apply_param(
    rule: &mut Rule,
    name: &toml::Spanned<String>,
    value: &toml::Spanned<toml::Value>,
    file: Option<FileId>,
    diags: &mut Diagnostics,
) {
    let (id, span) = (rule.id.as_str(), span_of(value));
    let Some(default) = rule.defaults.get(name.get_ref()) else {
        if name.get_ref() == super::WINDOW_PARAM {
            diags
                .error(
                    DiagnosticCode::UnknownParam,
                    file,
                    span_of(name),
                    format!("rule `{id}` has no window: its SQL never reads `:window_start`"),
                )
                .label("no window to override");
            return;
        }
        let known: Vec<&str> = rule.defaults.keys().map(String::as_str).collect();
        diags
            .error(
                DiagnosticCode::UnknownParam,
                file,
                span_of(name),
                format!("rule `{id}` has no param `{}`", name.get_ref()),
            )
            .label("unknown param")
            .help(if known.is_empty() {
                format!("rule `{id}` takes no params")
            } else {
                format!("params of `{id}`: {}", known.join(", "))
            });
        return;
    };
    let name = name.get_ref();
    let parsed = match Value::from_toml(value.get_ref()) {
        Ok(v) => v,
        Err(kind) => {
            diags
                .error(
                    DiagnosticCode::WrongParamType,
                    file,
                    span,
                    format!(
                        "param `{name}` of `{id}` is {}, not {}",
                        parse::a(default.type_name()),
                        parse::a(kind)
                    ),
                )
                .label(format!("expected {}", parse::a(default.type_name())));
            return;
        }
    };
    if std::mem::discriminant(&parsed) != std::mem::discriminant(default) {
        diags
            .error(
                DiagnosticCode::WrongParamType,
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
        return;
    }
    if let Some(problem) = override_problem(rule, name, &parsed) {
        let d = diags.error(problem.code, file, span, problem.message);
        if let Some(label) = problem.label {
            d.label(label);
        }
        if let Some(help) = problem.help {
            d.help(help);
        }
        return;
    }
    rule.params.insert(name.clone(), parsed);
}

/// Why a param override of the default's type still cannot be used.
pub(super) struct OverrideProblem {
    pub code: DiagnosticCode,
    pub message: String,
    pub label: Option<&'static str>,
    pub help: Option<&'static str>,
}

/// What is wrong with `value` as param `name` of `rule` (its type already checked against
/// the default's): an age param given no age, a window of zero, a `matches` param given a
/// glob SQLite cannot match. `[rules.params.<id>]` and fixture cases share it, so a case
/// cannot run a rule with a value the configuration would refuse — bound as NULL, it
/// would quietly match nothing.
pub(super) fn override_problem(rule: &Rule, name: &str, value: &Value) -> Option<OverrideProblem> {
    let id = rule.id.as_str();
    let default = rule.defaults.get(name)?;
    if let (Value::Str(d), Value::Str(s)) = (default, value)
        && compile::parse_age(d).is_some()
        && compile::parse_age(s).is_none()
    {
        return Some(OverrideProblem {
            code: DiagnosticCode::BadAge,
            message: format!("`{s}` is not an age"),
            label: None,
            help: Some("ages are like \"90d\", \"12h\", \"30m\", \"45s\" or \"2w\""),
        });
    }
    if let (super::RuleBody::Where { compiled, .. }, Value::Int(days)) = (&rule.body, value)
        && *days < 0
        && compiled
            .binds
            .iter()
            .any(|(_, source)| *source == compile::BindSource::ParamAge(name.to_owned()))
    {
        return Some(OverrideProblem {
            code: DiagnosticCode::BadAge,
            message: compile::negative_days(name, *days),
            label: Some("an age of fewer than zero days"),
            help: None,
        });
    }
    if name == super::WINDOW_PARAM
        && let Value::Str(s) = value
        && compile::parse_age(s) == Some(0)
    {
        return Some(OverrideProblem {
            code: DiagnosticCode::BadValue,
            message: format!("a window of zero holds no event (rule `{id}`)"),
            label: Some("longer than zero"),
            help: None,
        });
    }
    if let (super::RuleBody::Where { compiled, .. }, Value::Str(s)) = (&rule.body, value)
        && compiled.glob_params.iter().any(|p| p == name)
        && let Err(e) = compile::check_glob(s)
    {
        return Some(OverrideProblem {
            code: DiagnosticCode::BadGlob,
            message: format!("param `{name}` of `{id}` is a `matches` pattern: {e}"),
            label: Some("not a glob SQLite can match"),
            help: None,
        });
    }
    None
}

/// Checks `[[exemption]]` entries against the rules (known rule, valid glob; the values
/// themselves were validated with the configuration); warns about those that expired or
/// expire within 14 days of `today`.
pub(super) fn validate_exemptions(
    config: &Config,
    rules: &[Rule],
    file: Option<FileId>,
    today: NaiveDate,
    diags: &mut Diagnostics,
) -> Vec<Exemption> {
    let ids: Vec<String> = rules.iter().map(|r| r.id.0.clone()).collect();
    let mut out = Vec::new();
    for (i, e) in config.exemption.iter().enumerate() {
        let rule = e.rule.get_ref();
        if !ids.contains(rule) {
            let d = diags.error(
                DiagnosticCode::UnknownRule,
                file,
                span_of(&e.rule),
                format!("exemption names rule `{rule}`, which does not exist"),
            );
            d.label("unknown rule");
            if let Some(close) = closest(rule, ids.iter().map(String::as_str)) {
                d.help(format!("did you mean `{close}`?"));
            }
            continue;
        }
        // Both patterns are checked, and those of an exemption whose reason, owner or date
        // was invalid (reported with the configuration) too: one pass shows every problem.
        let mut patterns_ok = true;
        let patterns = std::iter::once(("resource", &e.resource))
            .chain(e.project.iter().map(|p| ("project", p)));
        for (key, pattern) in patterns {
            if let Err(msg) = check_pattern(pattern.get_ref()) {
                patterns_ok = false;
                diags
                    .error(
                        DiagnosticCode::BadGlob,
                        file,
                        span_of(pattern),
                        format!("bad {key} pattern: {msg}"),
                    )
                    .label("here");
            }
        }
        let Some(terms) = e.terms.as_ref().filter(|_| patterns_ok) else {
            continue;
        };
        let exemption = Exemption::new(
            RuleId(rule.clone()),
            e.resource.get_ref(),
            terms.reason.clone(),
            terms.owner.clone(),
            *terms.expires.get_ref(),
        );
        let exemption = match (exemption, &e.project) {
            (Ok(x), None) => x,
            (Ok(x), Some(project)) => match x.in_project(project.get_ref()) {
                Ok(x) => x,
                Err(_) => continue,
            },
            // Reported above.
            (Err(_), _) => continue,
        };
        out.push((exemption.with_index(i), span_of(&terms.expires)));
    }
    // Warned about once all are known: one renewed by a later table is no news.
    let all: Vec<Exemption> = out.iter().map(|(e, _)| e.clone()).collect();
    for (exemption, span) in &out {
        if let Some(notice) = exemption.notice_among(&all, today) {
            let (code, label) = match exemption.standing_on(today) {
                Standing::Expired => (DiagnosticCode::ExemptionExpired, "expired"),
                _ => (DiagnosticCode::ExemptionExpiring, "within 14 days"),
            };
            diags.warning(code, file, span.clone(), notice).label(label);
        }
    }
    out.into_iter().map(|(e, _)| e).collect()
}

/// Warns about exemptions that match no stored finding of their rule (`stored`: each
/// finding's rule, resource and project).
pub fn warn_unused_exemptions(
    config: &Config,
    exemptions: &[Exemption],
    stored: &[(RuleId, String, Option<ProjectId>)],
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
            .any(|(rule, resource, project)| e.matches(rule, resource, project.as_ref()))
        {
            diags
                .warning(
                    DiagnosticCode::ExemptionUnused,
                    file,
                    config
                        .exemption
                        .get(e.index)
                        .and_then(|x| span_of(&x.resource)),
                    format!("exemption for {} matches no finding", e.describe()),
                )
                .label("matches nothing");
        }
    }
}
