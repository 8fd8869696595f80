//! From the raw, spanned form to the typed [`Config`]: every bad value is a diagnostic at
//! its span and is replaced by its default, so validation always goes on to the end.

use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::PathBuf;

use chrono::NaiveDate;
use toml::Spanned;

use super::raw::{
    RawAuditLog, RawConfig, RawEmail, RawExemption, RawOpenAi, RawRules, RawSchedule, RawSpend,
};
use super::{
    AuditLogConfig, CollectConfig, Config, DEFAULT_MAX_CSV_BYTES, EmailConfig, EmailTemplates,
    EmailTls, EmailTransport, ExemptionConfig, ExemptionTerms, MAX_MAX_CSV_BYTES,
    MIN_MAX_CSV_BYTES, NotifyConfig, OpenAiConfig, RuleParams, RulesConfig, ScheduleConfig,
    ServerConfig, SpendConfig, StorageConfig,
};
use crate::diagnostics::{DiagnosticCode, Diagnostics, FileId};
use crate::duration::Duration;
use crate::model::{Family, Severity};
use crate::schedule::{Schedule, parse_timezone, timezone_hint};
use crate::size::ByteSize;

/// Where diagnostics go while validating.
pub(super) struct Check<'d> {
    pub(super) diags: &'d mut Diagnostics,
    pub(super) file: FileId,
}

impl Check<'_> {
    pub(super) fn error(
        &mut self,
        code: DiagnosticCode,
        span: Range<usize>,
        message: String,
        label: &str,
    ) {
        self.diags
            .error(code, Some(self.file), Some(span), message)
            .label(label);
    }

    /// A value through `parse`, or a diagnostic with `code` and `label` at its span.
    pub(super) fn parse<T, E: std::fmt::Display>(
        &mut self,
        value: &Spanned<String>,
        code: DiagnosticCode,
        label: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        match parse(value.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(code, value.span(), e.to_string(), label);
                None
            }
        }
    }

    /// An integer that must be at least `min` and fit `T`.
    pub(super) fn at_least<T: TryFrom<i64>>(
        &mut self,
        value: &Spanned<i64>,
        key: &str,
        min: i64,
    ) -> Option<T> {
        let n = *value.get_ref();
        match T::try_from(n) {
            Ok(v) if n >= min => Some(v),
            _ => {
                self.error(
                    DiagnosticCode::BadValue,
                    value.span(),
                    format!("`{key}` must be at least {min}, not {n}"),
                    "out of range",
                );
                None
            }
        }
    }

    /// A text that must not be blank.
    pub(super) fn non_empty(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        if value.get_ref().trim().is_empty() {
            self.error(
                DiagnosticCode::EmptyValue,
                value.span(),
                format!("`{key}` is empty"),
                "empty",
            );
            return None;
        }
        Some(value.get_ref().clone())
    }

    /// A `…_env` value, which must be the name of an environment variable. A value that is
    /// not one is most likely the secret itself, pasted in the wrong key: it is refused
    /// without being printed.
    pub(super) fn env_name(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        let name = self.non_empty(value, key)?;
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() <= 256;
        if !valid {
            self.diags
                .error(
                    DiagnosticCode::BadValue,
                    Some(self.file),
                    Some(value.span()),
                    format!(
                        "`{key}` is not the name of an environment variable (letters, digits \
                         and `_`, not starting with a digit); it is not shown, in case it is \
                         the secret itself"
                    ),
                )
                .label("not a variable name")
                .help(format!(
                    "write the variable's name (`{key} = \"NAME_OF_THE_VARIABLE\"`) and put the \
                     secret in that variable"
                ))
                .conceal();
            return None;
        }
        Some(name)
    }

    pub(super) fn missing(&mut self, table: &str, key: &str, span: Range<usize>, why: &str) {
        self.error(
            DiagnosticCode::MissingKey,
            span,
            format!("{table} needs `{key}`{why}"),
            &format!("`{key}` missing"),
        );
    }
}

/// Validates every section, recording each problem.
pub(super) fn validate(raw: RawConfig, diags: &mut Diagnostics, file: FileId) -> Config {
    let mut c = Check { diags, file };
    Config {
        openai: openai(&raw.openai, &mut c),
        storage: StorageConfig {
            path: raw
                .storage
                .as_ref()
                .and_then(|p| c.non_empty(p, "path"))
                .map_or_else(|| StorageConfig::default().path, PathBuf::from),
        },
        schedule: schedule(&raw.schedule, &mut c),
        rules: rules(raw.rules, &mut c),
        exemption: raw
            .exemption
            .iter()
            .filter_map(|e| exemption(e, &mut c))
            .collect(),
        notify: NotifyConfig {
            repeat_interval: raw
                .notify
                .repeat_interval
                .as_ref()
                .and_then(|v| interval(v, &mut c))
                .unwrap_or(NotifyConfig::default().repeat_interval),
            send_resolved: raw.notify.send_resolved.is_none_or(Spanned::into_inner),
            keep_sent: raw
                .notify
                .keep_sent
                .as_ref()
                .and_then(|v| {
                    c.parse(
                        v,
                        DiagnosticCode::BadDuration,
                        "not a duration",
                        str::parse::<Duration>,
                    )
                })
                .unwrap_or(NotifyConfig::default().keep_sent),
            email: raw.notify.email.as_ref().and_then(|e| email(e, &mut c)),
            channels: super::channel::validate_channels(
                &raw.notify.channels,
                raw.notify.email.is_some(),
                &mut c,
            ),
        },
        server: ServerConfig {
            listen: raw.listen.as_ref().and_then(|l| {
                c.parse(
                    l,
                    DiagnosticCode::BadAddress,
                    "expected IP:PORT",
                    socket_addr,
                )
            }),
        },
        collect: CollectConfig {
            skip: collect_skip(&raw.collect_skip, &mut c),
        },
        spend: spend(&raw.spend, &mut c),
        audit_log: audit_log(&raw.audit_log, &mut c),
        source: None,
        text: None,
        // Filled by a load that succeeds: the problems are still being collected here.
        warnings: Diagnostics::new(),
    }
}

/// `[collect] skip`: the families named, each once.
fn collect_skip(names: &[Spanned<String>], c: &mut Check<'_>) -> Vec<Family> {
    let skip = names
        .iter()
        .filter_map(|name| skipped_family(name, c))
        .fold(Vec::new(), |mut skip: Vec<Family>, family| {
            if !skip.contains(&family) {
                skip.push(family);
            }
            skip
        });
    // The admin-key list carries every project API key too, told apart only by the
    // project key lists: without them, each project key would be stored as an admin key.
    if skip.contains(&Family::ProjectApiKeys)
        && !skip.contains(&Family::OrgAdminApiKeys)
        && let Some(name) = names
            .iter()
            .find(|n| Family::from_view(n.get_ref()) == Some(Family::ProjectApiKeys))
    {
        c.diags
            .error(
                DiagnosticCode::BadValue,
                Some(c.file),
                Some(name.span()),
                "`project_api_keys` cannot be skipped while `org_admin_api_keys` is read"
                    .to_owned(),
            )
            .label("needed to read the admin keys")
            .help(
                "the Admin API lists every project API key among the admin keys too, and \
                 orgwarden tells them apart by the project key lists; skip \
                 `org_admin_api_keys` as well, or neither",
            );
    }
    skip
}

/// One `[collect] skip` entry: a family's view name, never `projects`.
fn skipped_family(name: &Spanned<String>, c: &mut Check<'_>) -> Option<Family> {
    let text = name.get_ref();
    match Family::from_view(text) {
        Some(Family::Projects) => {
            c.diags
                .error(
                    DiagnosticCode::BadValue,
                    Some(c.file),
                    Some(name.span()),
                    "`projects` cannot be skipped".to_owned(),
                )
                .label("always read")
                .help(
                    "every project family is read under the project list, and a snapshot \
                     without it is failed; skip the project families you do not want instead",
                );
            None
        }
        Some(family) => Some(family),
        None => {
            let d = c.diags.error(
                DiagnosticCode::UnknownFamily,
                Some(c.file),
                Some(name.span()),
                format!("`{text}` is not a family orgwarden reads"),
            );
            d.label("unknown family");
            let names = Family::ALL
                .iter()
                .filter(|f| **f != Family::Projects)
                .map(|f| f.view());
            match super::closest(text, names.clone()) {
                Some(close) => d.help(format!("did you mean `{close}`?")),
                None => d.help(format!(
                    "the families are the view names: {}",
                    names.collect::<Vec<_>>().join(", ")
                )),
            };
            None
        }
    }
}

/// `[spend]`: the costs window.
fn spend(raw: &RawSpend, c: &mut Check<'_>) -> SpendConfig {
    let default = SpendConfig::default();
    let max = super::MAX_SPEND_DAYS;
    let lookback_days = raw.lookback.as_ref().and_then(|v| {
        let d = c.parse(
            v,
            DiagnosticCode::BadDuration,
            "not a duration",
            str::parse::<Duration>,
        )?;
        // Costs come in whole UTC days: a part of a day reads that whole day.
        let days = u32::try_from(d.as_secs().div_ceil(86_400))
            .ok()
            .filter(|days| *days <= max);
        if days.is_none() {
            c.error(
                DiagnosticCode::BadValue,
                v.span(),
                format!("`lookback` must be at most {max}d"),
                "too long",
            );
        }
        days
    });
    let settle_days = raw.settle_days.as_ref().and_then(|n| {
        let days: u32 = c.at_least(n, "settle_days", 0)?;
        if days > max {
            c.error(
                DiagnosticCode::BadValue,
                n.span(),
                format!("`settle_days` must be at most {max}, not {days}"),
                "out of range",
            );
            return None;
        }
        Some(days)
    });
    SpendConfig {
        enabled: raw.enabled.as_ref().is_none_or(|e| *e.get_ref()),
        lookback_days: lookback_days.unwrap_or(default.lookback_days),
        settle_days: settle_days.unwrap_or(default.settle_days),
    }
}

/// `[audit_log]`: whether and how far back the audit log is read.
fn audit_log(raw: &RawAuditLog, c: &mut Check<'_>) -> AuditLogConfig {
    let default = AuditLogConfig::default();
    let max = super::MAX_AUDIT_LOG_LOOKBACK;
    let lookback = raw.lookback.as_ref().and_then(|v| {
        let d = c.parse(
            v,
            DiagnosticCode::BadDuration,
            "not a duration",
            str::parse::<Duration>,
        )?;
        if d.is_zero() || d > max {
            c.error(
                DiagnosticCode::BadValue,
                v.span(),
                format!("`lookback` must be more than 0s and at most {max}"),
                "out of range",
            );
            return None;
        }
        Some(d)
    });
    AuditLogConfig {
        enabled: raw.enabled.as_ref().is_none_or(|e| *e.get_ref()),
        lookback: lookback.unwrap_or(default.lookback),
    }
}

/// The smallest `[openai] max_response_bytes`: one page of a short list is already about
/// this large, so a lower bound would fail every scope of every snapshot.
pub const MIN_RESPONSE_BYTES: ByteSize = ByteSize::from_bytes(1024);

fn openai(raw: &RawOpenAi, c: &mut Check<'_>) -> OpenAiConfig {
    let default = OpenAiConfig::default();
    let base_url = raw.base_url.as_ref().and_then(|u| {
        let ok = ["http://", "https://"]
            .iter()
            .any(|scheme| u.get_ref().starts_with(scheme));
        if !ok {
            c.error(
                DiagnosticCode::BadValue,
                u.span(),
                format!(
                    "`base_url` `{}` is not an http:// or https:// URL",
                    u.get_ref()
                ),
                "expected a URL",
            );
            return None;
        }
        // The client refuses these when it is built; said here, `rules check` and a
        // daemon's reload catch them too, with the line. The message shows the URL without
        // its user, password or query.
        if let Err(refused) = crate::client::check_base_url(u.get_ref()) {
            c.error(
                DiagnosticCode::BadValue,
                u.span(),
                refused.to_string(),
                "not usable",
            );
            return None;
        }
        Some(u.get_ref().clone())
    });
    let concurrency = raw
        .concurrency
        .as_ref()
        .and_then(|n| c.at_least(n, "concurrency", 1));
    let max_concurrency = raw.max_concurrency.as_ref().and_then(|n| {
        let max: usize = c.at_least(n, "max_concurrency", 1)?;
        if let Some(fixed) = concurrency {
            // A fixed `concurrency` turns the adaptive client off, so a cap for it would
            // silently do nothing.
            c.error(
                DiagnosticCode::BadValue,
                n.span(),
                format!(
                    "`max_concurrency` caps the adaptive concurrency, but `concurrency = {fixed}` \
                     fixes it; keep one of the two"
                ),
                "has no effect with concurrency",
            );
            return None;
        }
        Some(max)
    });
    OpenAiConfig {
        organization: raw
            .organization
            .as_ref()
            .and_then(|o| c.non_empty(o, "organization"))
            .unwrap_or(default.organization),
        base_url,
        admin_key_file: raw
            .admin_key_file
            .as_ref()
            .and_then(|p| c.non_empty(p, "admin_key_file"))
            .map(PathBuf::from),
        concurrency,
        max_concurrency,
        timeout_secs: raw
            .timeout_secs
            .as_ref()
            .and_then(|n| c.at_least(n, "timeout_secs", 1))
            .unwrap_or(default.timeout_secs),
        max_response_bytes: raw
            .max_response_bytes
            .as_ref()
            .and_then(|s| {
                let size = c.parse(s, DiagnosticCode::BadValue, "expected a size", |t| {
                    t.parse::<ByteSize>()
                })?;
                // Below a page of the smallest list, every read would fail its scope.
                if size < MIN_RESPONSE_BYTES {
                    c.error(
                        DiagnosticCode::BadValue,
                        s.span(),
                        format!(
                            "`max_response_bytes` must be at least {MIN_RESPONSE_BYTES}, not \
                             {size}: every larger answer fails its scope, and one page of \
                             a short list is already about that large"
                        ),
                        "too small",
                    );
                    return None;
                }
                Some(size)
            })
            .unwrap_or(default.max_response_bytes),
        max_pages_per_scope: raw
            .max_pages_per_scope
            .as_ref()
            .and_then(|n| c.at_least(n, "max_pages_per_scope", 1))
            .unwrap_or(default.max_pages_per_scope),
        snapshot_timeout: raw
            .snapshot_timeout
            .as_ref()
            .and_then(|t| longer_than_zero(t, "snapshot_timeout", c)),
    }
}

fn schedule(raw: &RawSchedule, c: &mut Check<'_>) -> ScheduleConfig {
    let default = ScheduleConfig::default();
    let tz = match &raw.timezone {
        Some(tz) => match parse_timezone(tz.get_ref()) {
            Ok(zone) => Some(zone),
            Err(e) => {
                let d = c.diags.error(
                    DiagnosticCode::BadTimezone,
                    Some(c.file),
                    Some(tz.span()),
                    e.to_string(),
                );
                d.label("unknown time zone");
                if let Some(hint) = timezone_hint(tz.get_ref()) {
                    d.help(hint);
                }
                None
            }
        },
        None => Some(chrono_tz::UTC),
    };
    // A bad zone is reported once; the expression is still checked, read in UTC.
    let schedule = raw.cron.as_ref().and_then(|cron| {
        c.parse(cron, DiagnosticCode::BadCron, "not a crontab line", |e| {
            Schedule::parse(e, tz.unwrap_or(chrono_tz::UTC))
        })
    });
    // The jitter is only measured against the schedule the user wrote, not a stand-in.
    let written = tz.is_some() && (raw.cron.is_none() || schedule.is_some());
    if let (Some(schedule), Some(cron)) = (&schedule, &raw.cron) {
        warn_more_than_once_a_minute(schedule, cron, c);
    }
    let schedule = match (schedule, tz) {
        (Some(schedule), Some(_)) => schedule,
        (None, Some(tz)) if raw.cron.is_none() => {
            Schedule::parse(super::DEFAULT_CRON, tz).unwrap_or(default.schedule)
        }
        _ => default.schedule,
    };
    let jitter = raw.jitter.as_ref().and_then(|j| {
        let jitter = c.parse(
            j,
            DiagnosticCode::BadDuration,
            "not a duration",
            str::parse::<Duration>,
        )?;
        check_jitter(jitter, j.span(), written.then_some(&schedule), c)
    });
    ScheduleConfig {
        schedule,
        run_on_start: raw.run_on_start.as_ref().is_some_and(|r| *r.get_ref()),
        jitter,
    }
}

/// Warns when the schedule runs more than once a minute, which only a seconds field can do.
///
/// Every run reads the whole organization, so `* * * * * *` (a five-field line with a star
/// put in front) would call the API all day long. It stays a warning: a test daemon on a
/// seconds schedule is a legitimate use.
fn warn_more_than_once_a_minute(schedule: &Schedule, cron: &Spanned<String>, c: &mut Check<'_>) {
    let Some((gap, _)) = schedule.shortest_gap(chrono::Utc::now()) else {
        return;
    };
    if gap >= chrono::TimeDelta::minutes(1) {
        return;
    }
    let every = u64::try_from(gap.num_seconds())
        .map_or_else(|_| format!("{gap}"), |s| Duration::from_secs(s).to_string());
    c.diags
        .warning(
            DiagnosticCode::ScheduleTooFrequent,
            Some(c.file),
            Some(cron.span()),
            format!(
                "`cron` runs every {every}, more than once a minute: the first of its six \
                 fields is the second"
            ),
        )
        .label("six fields: second minute hour day-of-month month day-of-week")
        .help(
            "every run reads the whole organization; write five fields (minute hour \
             day-of-month month day-of-week) unless runs seconds apart are meant, as in a test",
        );
}

/// The longest `[schedule] jitter` allowed whatever the schedule: a run delayed by more than
/// a day is another day's run.
pub const MAX_JITTER: Duration = Duration::from_secs(86_400);

/// A jitter must be at most [`MAX_JITTER`] and shorter than the shortest time between two
/// runs of the schedule (`schedule` is `None` when the cron line itself was refused): a
/// delay reaching the next run would merge or reorder runs instead of spreading them.
fn check_jitter(
    jitter: Duration,
    span: Range<usize>,
    schedule: Option<&Schedule>,
    c: &mut Check<'_>,
) -> Option<Duration> {
    if jitter > MAX_JITTER {
        c.diags
            .error(
                DiagnosticCode::JitterTooLarge,
                Some(c.file),
                Some(span),
                format!("`jitter` is {jitter}; it can be at most {MAX_JITTER}"),
            )
            .label("too long")
            .help("jitter spreads the start of a run over a few minutes; see docs/schedule.md");
        return None;
    }
    let shortest = schedule.and_then(|s| s.shortest_gap(chrono::Utc::now()));
    if let Some((gap, at)) = shortest
        && jitter.to_time_delta() >= gap
    {
        let gap_text = u64::try_from(gap.num_seconds())
            .map_or_else(|_| format!("{gap}"), |s| Duration::from_secs(s).to_string());
        c.diags
            .error(
                DiagnosticCode::JitterTooLarge,
                Some(c.file),
                Some(span),
                format!(
                    "`jitter` is {jitter}, not shorter than the {gap_text} between two runs of \
                     the schedule (the run of {})",
                    at.to_rfc3339()
                ),
            )
            .label("reaches the next run")
            .help(format!(
                "make it shorter than {gap_text}, or run less often; see docs/schedule.md"
            ));
        return None;
    }
    Some(jitter)
}

fn rules(raw: RawRules, c: &mut Check<'_>) -> RulesConfig {
    let severity = raw
        .severity
        .into_iter()
        .filter_map(|(id, value)| {
            c.parse(
                &value,
                DiagnosticCode::BadSeverity,
                "unknown severity",
                str::parse::<Severity>,
            )
            .map(|severity| (id, severity))
        })
        .collect();
    // A zero budget would fail every rule before its first row.
    let timeout = raw
        .timeout
        .as_ref()
        .and_then(|t| longer_than_zero(t, "timeout", c));
    RulesConfig {
        timeout,
        // An empty entry would name the configuration's own folder.
        paths: raw
            .paths
            .into_iter()
            .filter_map(|p| {
                let path = c.non_empty(&p, "paths")?;
                Some(Spanned::new(p.span(), PathBuf::from(path)))
            })
            .collect(),
        disabled: raw.disabled,
        params: raw
            .params
            .into_iter()
            .map(|(rule, values)| RuleParams { rule, values })
            .collect(),
        severity,
    }
}

/// The duration `value` of `key`, which must be longer than zero.
fn longer_than_zero(value: &Spanned<String>, key: &str, c: &mut Check<'_>) -> Option<Duration> {
    let d = c.parse(
        value,
        DiagnosticCode::BadDuration,
        "not a duration",
        str::parse::<Duration>,
    )?;
    if d.is_zero() {
        c.error(
            DiagnosticCode::BadDuration,
            value.span(),
            format!("`{key}` must be longer than zero"),
            "zero",
        );
        return None;
    }
    Some(d)
}

fn exemption(raw: &RawExemption, c: &mut Check<'_>) -> Option<ExemptionConfig> {
    let required = |key: &str, value: &Option<Spanned<String>>, c: &mut Check<'_>| {
        if let Some(v) = value {
            c.non_empty(v, key).map(|_| v.clone())
        } else {
            // A key written with a wrong type was reported as `wrong-type` when read.
            if !raw.given.iter().any(|k| k == key) {
                c.missing("[[exemption]]", key, raw.span.clone(), "");
            }
            None
        }
    };
    let rule = required("rule", &raw.rule, c);
    let resource = required("resource", &raw.resource, c);
    let reason = required("reason", &raw.reason, c);
    let owner = required("owner", &raw.owner, c);
    // Optional, but not empty: `project = ""` would match no finding at all.
    let (project, project_ok) = match &raw.project {
        None => (None, true),
        Some(p) => match c.non_empty(p, "project") {
            Some(_) => (Some(p.clone()), true),
            None => (None, false),
        },
    };
    let expires = required("expires", &raw.expires, c).and_then(|e| {
        let date = c.parse(&e, DiagnosticCode::BadDate, "expected YYYY-MM-DD", |d| {
            NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map_err(|_| format!("`{d}` is not a date"))
        })?;
        Some(Spanned::new(e.span(), date))
    });
    Some(ExemptionConfig {
        rule: rule?,
        resource: resource?,
        project,
        terms: match (reason, owner, expires) {
            (Some(reason), Some(owner), Some(expires)) if project_ok => Some(ExemptionTerms {
                reason: reason.into_inner(),
                owner: owner.into_inner(),
                expires,
            }),
            _ => None,
        },
    })
}

fn interval(value: &Spanned<String>, c: &mut Check<'_>) -> Option<Duration> {
    let d = c.parse(
        value,
        DiagnosticCode::BadDuration,
        "not a duration",
        str::parse::<Duration>,
    )?;
    if d.is_zero() {
        c.error(
            DiagnosticCode::BadDuration,
            value.span(),
            "`repeat_interval` must be longer than zero".into(),
            "zero",
        );
        return None;
    }
    Some(d)
}

fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    // A host name (`localhost:9464`) is resolved, as the server will bind it.
    let bad = || {
        format!("`{text}` is not an address to listen on: expected IP:PORT such as 127.0.0.1:9464")
    };
    text.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// An email address as lettre will accept it when sending (`name@example.com` or
/// `Name <name@example.com>`), for `[notify.email]` and an email channel alike.
pub(super) fn email_address(a: &Spanned<String>, c: &mut Check<'_>) -> Option<String> {
    c.parse(
        a,
        DiagnosticCode::BadEmail,
        "not an email address",
        |text| {
            text.parse::<lettre::message::Mailbox>()
                .map(|_| text.to_owned())
                // lettre's own reason ("Invalid input") says nothing more.
                .map_err(|_| {
                    format!(
                        "`{text}` is not an email address (expected `name@example.com` or \
                     `Name <name@example.com>`)"
                    )
                })
        },
    )
}

/// `[notify.email] max_csv_bytes`: `0B`, or a size from [`MIN_MAX_CSV_BYTES`] to
/// [`MAX_MAX_CSV_BYTES`]; the default when not set.
fn max_csv_bytes(raw: Option<&Spanned<String>>, c: &mut Check<'_>) -> Option<ByteSize> {
    match raw {
        None => Some(DEFAULT_MAX_CSV_BYTES),
        Some(s) => c
            .parse(s, DiagnosticCode::BadValue, "expected a size", |t| {
                t.parse::<ByteSize>()
            })
            .and_then(|size| {
                let (problem, label) = if size > MAX_MAX_CSV_BYTES {
                    (
                        format!(
                            "`max_csv_bytes` must be at most {MAX_MAX_CSV_BYTES}, not {size}: \
                             a digest is held whole in memory and in the database, and mail \
                             servers refuse one much larger"
                        ),
                        "too large",
                    )
                } else if size.as_bytes() > 0 && size < MIN_MAX_CSV_BYTES {
                    (
                        format!(
                            "`max_csv_bytes` must be \"0B\" (no CSV) or at least \
                             {MIN_MAX_CSV_BYTES}, not {size}: the CSV's header row alone is \
                             larger, and the digest would attach a CSV of no finding"
                        ),
                        "too small",
                    )
                } else {
                    return Some(size);
                };
                c.error(DiagnosticCode::BadValue, s.span(), problem, label);
                None
            }),
    }
}

fn email(raw: &RawEmail, c: &mut Check<'_>) -> Option<EmailConfig> {
    const T: &str = "[notify.email]";
    let max_csv_bytes = max_csv_bytes(raw.max_csv_bytes.as_ref(), c);
    let transport = email_transport(raw.transport.as_ref(), c);
    let tls = email_tls(raw.tls.as_ref(), c);
    let from = if let Some(f) = &raw.from {
        email_address(f, c)
    } else {
        c.missing(T, "from", raw.span.clone(), ": the sender address");
        None
    };
    if raw.to.is_empty() {
        c.missing(T, "to", raw.span.clone(), ": at least one recipient");
    }
    let to: Vec<Option<String>> = raw.to.iter().map(|a| email_address(a, c)).collect();
    let port = raw
        .port
        .as_ref()
        .and_then(|p| c.at_least::<u16>(p, "port", 1));
    let host = raw.host.as_ref().and_then(|h| c.non_empty(h, "host"));
    match transport {
        Some(EmailTransport::Smtp) if raw.host.is_none() => {
            c.missing(T, "host", raw.span.clone(), " with transport = \"smtp\"");
        }
        Some(EmailTransport::File) if raw.dir.is_none() => {
            c.missing(T, "dir", raw.span.clone(), " with transport = \"file\"");
        }
        _ => {}
    }
    if let (Some(EmailTransport::Smtp), Some(EmailTls::None), Some(host), Some(tls)) =
        (transport, tls, &host, &raw.tls)
        && !super::is_loopback_host(host)
    {
        c.error(
            DiagnosticCode::BadValue,
            tls.span(),
            format!(
                "\"none\" sends mail and passwords in clear; it is only allowed towards a \
                 loopback host, not `{host}` (use \"starttls\" or \"tls\")"
            ),
            "clear text to a remote host",
        );
        return None;
    }
    let password_named = raw
        .password_env
        .as_ref()
        .is_none_or(|p| c.env_name(p, "password_env").is_some());
    match (&raw.username, &raw.password_env) {
        (Some(u), None) => c.missing(
            T,
            "password_env",
            u.span(),
            " with `username`: the environment variable holding the SMTP password",
        ),
        (None, Some(p)) => c.missing(T, "username", p.span(), " with `password_env`"),
        _ => {}
    }
    // An empty path would name the configuration's own folder (or, for a template, fail
    // only when the notifier is built, without a line to point at).
    let mut paths_given = true;
    let mut path = |p: &Option<Spanned<String>>, key: &str, c: &mut Check<'_>| {
        let p = p.as_ref()?;
        let text = c.non_empty(p, key);
        paths_given &= text.is_some();
        text.map(PathBuf::from)
    };
    let dir = path(&raw.dir, "dir", c);
    let spanned = |p: Option<PathBuf>, written: &Option<Spanned<String>>| {
        p.zip(written.as_ref())
            .map(|(p, w)| Spanned::new(w.span(), p))
    };
    let html = spanned(path(&raw.html, "html", c), &raw.html);
    let text = spanned(path(&raw.text, "text", c), &raw.text);
    let ca_file = path(&raw.ca_file, "ca_file", c);
    let username = raw.username.as_ref().map(|u| c.non_empty(u, "username"));
    let username_given = username.as_ref().is_none_or(Option::is_some);
    let templates = (html.is_some() || text.is_some()).then_some(EmailTemplates { html, text });
    let to: Option<Vec<String>> = to.into_iter().collect();
    if !password_named || !paths_given || !username_given {
        return None;
    }
    Some(EmailConfig {
        transport: transport?,
        host,
        port,
        tls: tls?,
        username: username.flatten(),
        password_env: raw.password_env.clone(),
        from: from?,
        to: to.filter(|t| !t.is_empty())?,
        dir,
        templates,
        ca_file: ca_file
            .zip(raw.ca_file.as_ref())
            .map(|(path, written)| Spanned::new(written.span(), path)),
        max_csv_bytes: max_csv_bytes?,
    })
}

/// `[notify.email] transport`, default `smtp`.
fn email_transport(raw: Option<&Spanned<String>>, c: &mut Check<'_>) -> Option<EmailTransport> {
    let Some(t) = raw else {
        return Some(EmailTransport::Smtp);
    };
    c.parse(
        t,
        DiagnosticCode::BadValue,
        "expected \"smtp\" or \"file\"",
        |t| match t {
            "smtp" => Ok(EmailTransport::Smtp),
            "file" => Ok(EmailTransport::File),
            other => Err(format!(
                "unknown transport `{other}` (expected \"smtp\" or \"file\")"
            )),
        },
    )
}

/// `[notify.email] tls`, default `starttls`.
fn email_tls(raw: Option<&Spanned<String>>, c: &mut Check<'_>) -> Option<EmailTls> {
    let Some(t) = raw else {
        return Some(EmailTls::StartTls);
    };
    c.parse(
        t,
        DiagnosticCode::BadValue,
        "expected starttls, tls or none",
        |t| match t {
            "starttls" => Ok(EmailTls::StartTls),
            "tls" => Ok(EmailTls::Tls),
            "none" => Ok(EmailTls::None),
            other => Err(format!(
                "unknown mode `{other}` (expected \"starttls\", \"tls\" or \"none\")"
            )),
        },
    )
}
