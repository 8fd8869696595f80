//! `orgwarden.toml`: read once into a raw form that keeps every value's span ([`raw`]),
//! then validated into the typed [`Config`] every command and the daemon use ([`validate`]).
//!
//! Every problem of every section is a diagnostic with the file, line, column and a stable
//! code, all collected in one pass: an unknown key never hides a bad cron line. Only what
//! depends on the rule files (rule ids, params, exemption globs) is checked later, by
//! `rules::load`, against the spans kept here.

mod channel;
mod raw;

#[cfg(test)]
pub(crate) use raw::KNOWN_KEYS;
mod validate;

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use toml::Spanned;

use crate::diagnostics::Diagnostics;
use crate::duration::Duration;
use crate::model::{Family, Severity};
use crate::schedule::Schedule;

pub use crate::diagnostics::line_column;
pub use channel::{ChannelConfig, ChannelKind, SecretSource, UrlProblem, check_url};

/// The default Admin API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    /// (The message is self-contained: the I/O error is not also exposed as the source, so
    /// a chain of causes does not repeat it.)
    #[error("cannot read configuration file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file has errors; every one of them, rendered cargo-style.
    #[error("{}", .0.render(false))]
    Invalid(Diagnostics),
}

/// The largest configuration file read: far above any real one, and a file pointed at
/// `/dev/zero` fails at once instead of filling memory.
pub const MAX_CONFIG_FILE: crate::size::ByteSize = crate::size::ByteSize::from_mib(4);

/// The whole configuration, validated.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// `[openai]`
    pub openai: OpenAiConfig,
    /// `[storage]`
    pub storage: StorageConfig,
    /// `[schedule]`
    pub schedule: ScheduleConfig,
    /// `[rules]`
    pub rules: RulesConfig,
    /// `[[exemption]]`
    pub exemption: Vec<ExemptionConfig>,
    /// `[notify]`
    pub notify: NotifyConfig,
    /// `[server]`
    pub server: ServerConfig,
    /// `[collect]`
    pub collect: CollectConfig,
    /// `[spend]`
    pub spend: SpendConfig,
    /// `[audit_log]`
    pub audit_log: AuditLogConfig,
    /// The file this was read from, for resolving relative paths and for diagnostics.
    pub source: Option<PathBuf>,
    /// The file's text, kept for diagnostics that point into it.
    pub text: Option<String>,
    /// Warnings found in the file by a load that succeeded; [`crate::rules::load`] reports
    /// them with the rules' problems, so commands that show those show these too.
    pub warnings: Diagnostics,
}

/// `[openai]`: how to reach the Admin API.
#[derive(Clone, Debug)]
pub struct OpenAiConfig {
    /// The organization's name in reports and the snapshot's `org`.
    pub organization: String,
    /// The Admin API base URL.
    pub base_url: Option<String>,
    /// A file holding the admin key, read when `OPENAI_ADMIN_KEY` is not set.
    pub admin_key_file: Option<PathBuf>,
    /// Requests in flight (at least 1).
    pub concurrency: Option<usize>,
    /// The most requests in flight an adaptive client may grow to (at least 1).
    pub max_concurrency: Option<usize>,
    /// Per-request timeout in seconds (at least 1).
    pub timeout_secs: u64,
    /// The largest response body read; a larger one fails its scope.
    pub max_response_bytes: crate::size::ByteSize,
    /// The most pages read for one scope; a list that goes on fails its scope.
    pub max_pages_per_scope: u64,
    /// How long one snapshot may read; the reads not finished by then fail their scopes.
    /// `None`: no limit but each request's own.
    pub snapshot_timeout: Option<crate::duration::Duration>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            organization: "default".into(),
            base_url: None,
            admin_key_file: None,
            concurrency: None,
            max_concurrency: None,
            timeout_secs: 30,
            max_response_bytes: crate::size::ByteSize::from_mib(32),
            max_pages_per_scope: 10_000,
            snapshot_timeout: None,
        }
    }
}

/// `[storage]`
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// The SQLite database file.
    pub path: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("orgwarden.db"),
        }
    }
}

/// The schedule used when `[schedule] cron` is not set.
pub const DEFAULT_CRON: &str = "0 */6 * * *";

/// `[schedule]`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// The cron expression read in its time zone.
    pub schedule: Schedule,
    /// Run once as soon as the daemon starts.
    pub run_on_start: bool,
    /// A random delay of up to this long before each run.
    pub jitter: Option<Duration>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            schedule: default_schedule(),
            run_on_start: false,
            jitter: None,
        }
    }
}

/// [`DEFAULT_CRON`] in UTC.
fn default_schedule() -> Schedule {
    // A constant of this file, covered by `the_default_schedule_is_valid`: not outside input.
    #[allow(clippy::expect_used)]
    Schedule::parse(DEFAULT_CRON, chrono_tz::UTC).expect("the default schedule is valid")
}

/// `[rules]`; rule ids stay spanned because they are checked against the rule files later.
#[derive(Clone, Debug, Default)]
pub struct RulesConfig {
    /// Extra rule files or folders.
    pub paths: Vec<Spanned<PathBuf>>,
    /// Rule ids not to evaluate.
    pub disabled: Vec<Spanned<String>>,
    /// Per-rule parameter overrides: `[rules.params.<rule-id>]`.
    pub params: Vec<RuleParams>,
    /// Per-rule severity overrides: `[rules.severity]`.
    pub severity: Vec<(Spanned<String>, Severity)>,
    /// How long one rule may run (`[rules] timeout`); `None` means the default, 30 s.
    pub timeout: Option<crate::duration::Duration>,
}

/// `[rules.params.<rule-id>]`.
#[derive(Clone, Debug)]
pub struct RuleParams {
    /// The rule id.
    pub rule: Spanned<String>,
    /// Each param's name and value.
    pub values: Vec<(Spanned<String>, Spanned<toml::Value>)>,
}

impl RulesConfig {
    /// Sets param `name` of rule `rule` unless the file already does (for settings a
    /// command supplies, like the demo's own email domain); it has no place in the file.
    pub fn set_param_default(&mut self, rule: &str, name: &str, value: toml::Value) {
        let index = if let Some(index) = self.params.iter().position(|p| p.rule.get_ref() == rule) {
            index
        } else {
            self.params.push(RuleParams {
                rule: Spanned::new(0..0, rule.to_owned()),
                values: Vec::new(),
            });
            self.params.len() - 1
        };
        let values = &mut self.params[index].values;
        if !values.iter().any(|(k, _)| k.get_ref() == name) {
            values.push((
                Spanned::new(0..0, name.to_owned()),
                Spanned::new(0..0, value),
            ));
        }
    }
}

/// One `[[exemption]]`, its values checked; rule and glob are checked against the rules.
#[derive(Clone, Debug)]
pub struct ExemptionConfig {
    /// The rule id it applies to.
    pub rule: Spanned<String>,
    /// A resource id, exact or glob (`proj_sandbox*`).
    pub resource: Spanned<String>,
    /// The project id, exact or glob, it is limited to; `None`: any project.
    pub project: Option<Spanned<String>>,
    /// Its reason, owner and date; `None` when one of them is missing or invalid (and
    /// reported): such an exemption is checked against the rules but never applied.
    pub terms: Option<ExemptionTerms>,
}

/// What an `[[exemption]]` accepts, from whom, until when.
#[derive(Clone, Debug)]
pub struct ExemptionTerms {
    /// Why the finding is accepted.
    pub reason: String,
    /// Who answers for it.
    pub owner: String,
    /// The last day it holds (UTC).
    pub expires: Spanned<NaiveDate>,
}

/// `[notify]`
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// Re-announce still-open findings this often (never zero).
    pub repeat_interval: Duration,
    /// Announce resolutions.
    pub send_resolved: bool,
    /// How long a delivered message's text is kept; its record stays.
    pub keep_sent: Duration,
    /// `[notify.email]`; absent = no email.
    pub email: Option<EmailConfig>,
    /// `[[notify.channel]]`, in file order, names unique.
    pub channels: Vec<ChannelConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            repeat_interval: Duration::from_secs(7 * 86_400),
            send_resolved: true,
            keep_sent: Duration::from_secs(7 * 86_400),
            email: None,
            channels: Vec::new(),
        }
    }
}

/// `[notify.email] transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailTransport {
    /// Deliver through an SMTP server.
    Smtp,
    /// Write `.eml` files into `dir`.
    File,
}

/// `[notify.email] tls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailTls {
    /// Plain connection upgraded with STARTTLS (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only towards a loopback host (port 25).
    None,
}

/// `[notify.email]`, checked: what the SMTP or file transport needs is present, the
/// addresses parse, `tls = "none"` only towards loopback.
#[derive(Clone, Debug)]
pub struct EmailConfig {
    /// How messages leave.
    pub transport: EmailTransport,
    /// SMTP host (present for `smtp`).
    pub host: Option<String>,
    /// SMTP port; default from `tls`.
    pub port: Option<u16>,
    /// How the SMTP connection is encrypted.
    pub tls: EmailTls,
    /// SMTP user name (present exactly when `password_env` is).
    pub username: Option<String>,
    /// The environment variable holding the SMTP password; spanned, because whether it is
    /// set is only known when the notifier is built.
    pub password_env: Option<Spanned<String>>,
    /// The sender address.
    pub from: String,
    /// Recipients (at least one).
    pub to: Vec<String>,
    /// Where `transport = "file"` writes `.eml` files (present for `file`).
    pub dir: Option<PathBuf>,
    /// Template overrides: `html` and `text` file paths.
    pub templates: Option<EmailTemplates>,
    /// A PEM file of extra CA certificates to trust for the SMTP server (a private CA), in
    /// addition to the system store; spanned, because it is read when the notifier is built.
    pub ca_file: Option<Spanned<PathBuf>>,
    /// The most bytes of CSV a digest attaches; `0B` attaches none.
    pub max_csv_bytes: crate::size::ByteSize,
}

/// `[notify.email] max_csv_bytes` when not set. Every digest attaches every open finding,
/// about 570 bytes each: at 18,000 open findings that made an 11.6 MB message, which mail
/// relays capped at 10 MB refuse for good (552), and so every later digest too. 6 MiB,
/// encoded (at worst base64, 4/3 and line breaks) beside the bounded text and HTML parts,
/// keeps the message under 10 MB; past it the CSV keeps the most severe findings and says so.
pub const DEFAULT_MAX_CSV_BYTES: crate::size::ByteSize = crate::size::ByteSize::from_mib(6);

/// The smallest `[notify.email] max_csv_bytes` but `0B`: the CSV's header row alone is
/// about 130 bytes, and a bound below one finding's row attaches a CSV of none.
pub const MIN_MAX_CSV_BYTES: crate::size::ByteSize = crate::size::ByteSize::from_bytes(1024);

/// The largest `[notify.email] max_csv_bytes`: a digest is held whole in memory and in the
/// outbox, and no mail service takes one much larger.
pub const MAX_MAX_CSV_BYTES: crate::size::ByteSize = crate::size::ByteSize::from_mib(64);

/// A webhook channel's `max_body_bytes` when not set: half of nginx's default
/// `client_max_body_size` (1 MiB), the limit a receiver behind a proxy most often has.
pub const DEFAULT_MAX_BODY_BYTES: crate::size::ByteSize =
    crate::size::ByteSize::from_bytes(512 * 1024);

/// The smallest `max_body_bytes`: one transition is about 1 KiB, and a long rule message or
/// remediation a few.
pub const MIN_MAX_BODY_BYTES: crate::size::ByteSize = crate::size::ByteSize::from_bytes(16 * 1024);

/// The largest `max_body_bytes`: every message is held whole in memory and in the outbox.
pub const MAX_MAX_BODY_BYTES: crate::size::ByteSize = crate::size::ByteSize::from_mib(64);

/// `[notify.email.templates]`
#[derive(Clone, Debug)]
pub struct EmailTemplates {
    /// The HTML part's template file; spanned, because it is read when the notifier is built.
    pub html: Option<Spanned<PathBuf>>,
    /// The plain-text part's template file, likewise.
    pub text: Option<Spanned<PathBuf>>,
}

/// `[collect]`: what the crawl leaves out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectConfig {
    /// Families not read (by view name); the families under them are not read either.
    /// Their stored objects are carried forward unchanged.
    pub skip: Vec<Family>,
}

/// `[server]`
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// `/healthz`, `/readyz` and `/metrics` while the daemon runs; absent = off.
    pub listen: Option<SocketAddr>,
}

/// `[spend]`: reading the organization's daily costs with every snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpendConfig {
    /// Read costs at all.
    pub enabled: bool,
    /// Whole days read before the current month on the first run.
    pub lookback_days: u32,
    /// Closed days re-read on every run, since their figures can still change.
    pub settle_days: u32,
}

impl Default for SpendConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lookback_days: 35,
            settle_days: 3,
        }
    }
}

/// `[audit_log]`: reading the organization's audit log with every snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditLogConfig {
    /// Read the audit log at all (`false`: never read, and the rules over it are off).
    pub enabled: bool,
    /// How far back the first read goes.
    pub lookback: Duration,
}

impl Default for AuditLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lookback: Duration::from_secs(30 * 86_400),
        }
    }
}

/// The longest `[audit_log] lookback`: 400 days, more than the log keeps, so a typo
/// (`3000d`) is caught instead of asking the API for years it does not have.
pub const MAX_AUDIT_LOG_LOOKBACK: Duration = Duration::from_secs(400 * 86_400);

/// The most days `[spend] lookback` and `settle_days` may ask for: one costs page holds at
/// most 180 daily buckets, and a year of history is what the spend views can use.
pub const MAX_SPEND_DAYS: u32 = 366;

impl Config {
    /// Parses and validates configuration text; `path` is used in diagnostics and to
    /// resolve relative paths. Any error fails it with every diagnostic of the file.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let (config, diags) = Config::check(text, path);
        config.with_warnings(diags)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (config, diags) = Config::check_file(path)?;
        config.with_warnings(diags)
    }

    /// This configuration carrying the warnings its check found, or every problem as an
    /// error when one of them is an error.
    pub fn with_warnings(mut self, diags: Diagnostics) -> Result<Config, ConfigError> {
        if diags.has_errors() {
            return Err(ConfigError::Invalid(diags));
        }
        self.warnings = diags;
        Ok(self)
    }

    /// Parses and validates configuration text, returning a configuration (defaults in place
    /// of every bad value) and every problem found. A TOML syntax error is reported alone:
    /// what follows it cannot be read reliably.
    pub fn check(text: &str, path: &Path) -> (Config, Diagnostics) {
        let mut diags = Diagnostics::new();
        let file = diags.add_file(path.display().to_string(), text);
        let mut config = match toml::de::DeTable::parse(text) {
            Ok(root) => {
                let raw = raw::Reader::new(&mut diags, file).read(root.get_ref());
                validate::validate(raw, &mut diags, file)
            }
            Err(e) => {
                crate::diagnostics::toml_syntax(&mut diags, file, text, e.span(), e.message());
                Config::default()
            }
        };
        diags.sort();
        config.source = Some(path.to_owned());
        config.text = Some(text.to_owned());
        (config, diags)
    }

    /// Reads a configuration file and checks it as [`Config::check`] does; a file that is
    /// not UTF-8 is one `bad-encoding` problem at its first bad byte.
    pub fn check_file(path: &Path) -> Result<(Config, Diagnostics), ConfigError> {
        let bytes = crate::size::read_file_bounded(path, MAX_CONFIG_FILE).map_err(|error| {
            ConfigError::Read {
                path: path.to_owned(),
                error,
            }
        })?;
        let mut diags = Diagnostics::new();
        if let Some(text) =
            crate::diagnostics::decode_file(&path.display().to_string(), bytes, &mut diags)
        {
            return Ok(Config::check(&text, path));
        }
        let config = Config {
            source: Some(path.to_owned()),
            ..Config::default()
        };
        Ok((config, diags))
    }

    /// The Admin API base URL: `overridden` (the command line's `--base-url`), else
    /// `[openai] base_url`, else the real API.
    pub fn base_url(&self, overridden: Option<&str>) -> String {
        overridden
            .map(str::to_owned)
            .or_else(|| self.openai.base_url.clone())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned())
    }

    /// Resolves a path from the file relative to the file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.source.as_deref().and_then(Path::parent) {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        }
    }

    /// `file:line:column: ` of a span in the file, for errors found after validation (an
    /// unset environment variable); empty without a file, `file: ` without a place.
    pub fn place(&self, span: Option<Range<usize>>) -> String {
        let Some(path) = &self.source else {
            return String::new();
        };
        match (&self.text, span.filter(|s| !s.is_empty())) {
            (Some(text), Some(span)) => {
                let (line, column) = line_column(text, span.start);
                format!("{}:{line}:{column}: ", path.display())
            }
            _ => format!("{}: ", path.display()),
        }
    }
}

/// The span of a value as a diagnostic place: `None` for values a command supplied rather
/// than the file (their span is empty).
pub fn span_of<T>(value: &Spanned<T>) -> Option<Range<usize>> {
    Some(value.span()).filter(|s| !s.is_empty())
}

/// The known name closest to a mistyped one, when it is close enough to be a typo (at most
/// three edits, and fewer than the name's length).
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let length = name.chars().count();
    known
        .into_iter()
        // Names whose lengths differ by more than three are more than three edits apart:
        // skipped unmeasured, a key or time zone of megabytes costs one pass, not a
        // distance (one allocation per character) to each of the 600 zone names.
        .filter(|k| length.abs_diff(k.chars().count()) <= 3)
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= 3 && *d < length)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance in characters.
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

#[cfg(test)]
mod tests;

/// A loopback host: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}
