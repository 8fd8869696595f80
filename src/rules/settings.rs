//! The `[rules]` and `[[exemption]]` sections of `orgwarden.toml` applied to the loaded
//! rules, every problem pointing at its key in the configuration file.

use chrono::NaiveDate;

use crate::config::Config;
use crate::diagnostics::{Diagnostics, FileId};
use crate::findings::Exemption;
use crate::model::RuleId;

use super::{Rule, Value, compile, parse};

/// A step of a path into a TOML document.
pub(super) enum Seg<'a> {
    /// A table key.
    Key(&'a str),
    /// An array index.
    Index(usize),
}

/// The span of the value at `path` in the configuration file's text.
pub(super) fn config_span(config: &Config, path: &[Seg<'_>]) -> Option<std::ops::Range<usize>> {
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
pub(super) fn apply_config(
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

/// The Levenshtein distance between two names, in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
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
