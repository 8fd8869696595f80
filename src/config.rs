//! `orgwarden.toml`: the parsed form of every section of DESIGN.md's configuration.
//!
//! Every key is optional; defaults are what a first run needs. Validation that needs more
//! than types (globs, cron expressions, rule ids) happens in the stage that owns the value.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::Severity;

/// The default Admin API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// The file this was read from, for resolving relative paths and for diagnostics.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The file's text, kept for diagnostics that point into it.
    #[serde(skip)]
    pub text: Option<String>,
}

/// `[openai]`: how to reach the Admin API.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The organization's name in reports and the snapshot's `org`.
    pub organization: String,
    /// The Admin API base URL.
    pub base_url: Option<String>,
    /// A file holding the admin key; else `OPENAI_ADMIN_KEY`.
    pub admin_key_file: Option<PathBuf>,
    /// A fixed number of requests in flight; unset, the client adapts it by itself.
    pub concurrency: Option<usize>,
    /// The most requests in flight the adaptive client may reach (default 64).
    pub max_concurrency: Option<usize>,
    /// Per-request timeout.
    pub timeout_secs: u64,
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
        }
    }
}

/// `[storage]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
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

/// `[schedule]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// A 5-field crontab line (6 fields: seconds first), or `@daily` and friends.
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// Run once as soon as the daemon starts.
    pub run_on_start: bool,
    /// A random delay of up to this long before each run (`"30s"`, `"5m"`).
    pub jitter: Option<String>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            cron: "0 */6 * * *".into(),
            timezone: "UTC".into(),
            run_on_start: false,
            jitter: None,
        }
    }
}

/// `[rules]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Extra rule files or folders.
    pub paths: Vec<PathBuf>,
    /// Rule ids not to evaluate.
    pub disabled: Vec<String>,
    /// Per-rule parameter overrides: `[rules.params.<rule-id>]`.
    pub params: std::collections::BTreeMap<String, toml::Table>,
    /// Per-rule severity overrides: `[rules.severity]`.
    pub severity: std::collections::BTreeMap<String, Severity>,
}

/// One `[[exemption]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExemptionConfig {
    /// The rule id it applies to.
    pub rule: String,
    /// A resource id, exact or glob (`proj_sandbox*`).
    pub resource: String,
    /// Why the finding is accepted.
    pub reason: String,
    /// Who answers for it.
    pub owner: String,
    /// The last day it holds (`YYYY-MM-DD`, UTC).
    pub expires: String,
}

/// `[notify]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Re-announce still-open findings this often (`"7d"`).
    pub repeat_interval: String,
    /// Announce resolutions.
    pub send_resolved: bool,
    /// `[notify.email]`; absent = no email.
    pub email: Option<EmailConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            repeat_interval: "7d".into(),
            send_resolved: true,
            email: None,
        }
    }
}

/// `[notify.email]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp` or `file`.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// SMTP host.
    pub host: Option<String>,
    /// SMTP port; default from `tls`.
    pub port: Option<u16>,
    /// `starttls`, `tls` or `none`.
    #[serde(default = "default_tls")]
    pub tls: String,
    /// SMTP user name.
    pub username: Option<String>,
    /// The environment variable holding the SMTP password.
    pub password_env: Option<String>,
    /// The sender address.
    pub from: Option<String>,
    /// Recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// Where `transport = "file"` writes `.eml` files.
    pub dir: Option<PathBuf>,
    /// Template overrides: `html` and `text` file paths.
    pub templates: Option<EmailTemplates>,
    /// A PEM file of extra CA certificates to trust for the SMTP server (a private CA), in
    /// addition to the system store.
    pub ca_file: Option<PathBuf>,
}

/// `[notify.email.templates]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplates {
    /// The HTML part's template file.
    pub html: Option<PathBuf>,
    /// The plain-text part's template file.
    pub text: Option<PathBuf>,
}

fn default_transport() -> String {
    "smtp".into()
}

fn default_tls() -> String {
    "starttls".into()
}

/// `[server]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// `/healthz`, `/readyz` and `/metrics` while the daemon runs; absent = off.
    pub listen: Option<String>,
}

impl Config {
    /// Parses configuration text; `path` is used in error messages and to resolve relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        config.source = Some(path.to_owned());
        config.text = Some(text.to_owned());
        Ok(config)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
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
}

/// The 1-based line and column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::parse("", Path::new("orgwarden.toml")).expect("parses");
        assert_eq!(config.openai.concurrency, None);
        assert_eq!(config.storage.path, PathBuf::from("orgwarden.db"));
        assert!(config.notify.send_resolved);
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        let err = Config::parse("[openai]\nconcurency = 4\n", Path::new("o.toml"))
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.starts_with("o.toml:2:1:"), "{text}");
        assert!(text.contains("concurency"), "{text}");
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 0), (1, 1));
    }
}
