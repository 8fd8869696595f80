//! The raw form of `orgwarden.toml`: every value as written, with its span, read from
//! toml's spanned document tree instead of through serde so that a wrong type or an unknown
//! key is one diagnostic among all the others, never the end of the parse.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostics::{DiagnosticCode, Diagnostics, FileId};

/// The whole file as written.
#[derive(Debug, Default)]
pub(super) struct RawConfig {
    pub openai: RawOpenAi,
    pub storage: Option<Spanned<String>>,
    pub schedule: RawSchedule,
    pub rules: RawRules,
    pub exemption: Vec<RawExemption>,
    pub notify: RawNotify,
    pub listen: Option<Spanned<String>>,
    /// `[collect] skip`: view names as written.
    pub collect_skip: Vec<Spanned<String>>,
    pub spend: RawSpend,
    pub audit_log: RawAuditLog,
}

/// `[audit_log]` as written.
#[derive(Debug, Default)]
pub(super) struct RawAuditLog {
    pub enabled: Option<Spanned<bool>>,
    pub lookback: Option<Spanned<String>>,
}

/// `[spend]` as written.
#[derive(Debug, Default)]
pub(super) struct RawSpend {
    pub enabled: Option<Spanned<bool>>,
    pub lookback: Option<Spanned<String>>,
    pub settle_days: Option<Spanned<i64>>,
}

/// `[openai]` as written.
#[derive(Debug, Default)]
pub(super) struct RawOpenAi {
    pub organization: Option<Spanned<String>>,
    pub base_url: Option<Spanned<String>>,
    pub admin_key_file: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
    pub max_concurrency: Option<Spanned<i64>>,
    pub timeout_secs: Option<Spanned<i64>>,
    pub max_response_bytes: Option<Spanned<String>>,
    pub max_pages_per_scope: Option<Spanned<i64>>,
    pub snapshot_timeout: Option<Spanned<String>>,
}

/// `[schedule]` as written.
#[derive(Debug, Default)]
pub(super) struct RawSchedule {
    pub cron: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub run_on_start: Option<Spanned<bool>>,
    pub jitter: Option<Spanned<String>>,
}

/// A `key = value` pair of a map-like table (`[rules.severity]`), both spanned.
pub(super) type Pair<V> = (Spanned<String>, V);

/// `[rules]` as written.
#[derive(Debug, Default)]
pub(super) struct RawRules {
    pub paths: Vec<Spanned<String>>,
    pub disabled: Vec<Spanned<String>>,
    pub params: Vec<Pair<Vec<Pair<Spanned<toml::Value>>>>>,
    pub severity: Vec<Pair<Spanned<String>>>,
    pub timeout: Option<Spanned<String>>,
}

/// One `[[exemption]]` as written; `span` is the table's, for missing keys.
#[derive(Debug, Default)]
pub(super) struct RawExemption {
    pub span: Range<usize>,
    pub rule: Option<Spanned<String>>,
    pub resource: Option<Spanned<String>>,
    pub reason: Option<Spanned<String>>,
    pub owner: Option<Spanned<String>>,
    pub expires: Option<Spanned<String>>,
    pub project: Option<Spanned<String>>,
    /// The keys written, whatever their values: a required key written with the wrong
    /// type is reported as such (`wrong-type`), not as missing too.
    pub given: Vec<String>,
}

/// `[notify]` as written.
#[derive(Debug, Default)]
pub(super) struct RawNotify {
    pub repeat_interval: Option<Spanned<String>>,
    pub send_resolved: Option<Spanned<bool>>,
    pub keep_sent: Option<Spanned<String>>,
    pub email: Option<RawEmail>,
    pub channels: Vec<RawChannel>,
}

/// One `[[notify.channel]]` as written; `span` is the table's, for missing keys. The plain
/// `secret` and `routing_key` keys are read only to be refused: secrets never live in the
/// file.
#[derive(Debug, Default)]
pub(super) struct RawChannel {
    pub span: Range<usize>,
    pub name: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub url_env: Option<Spanned<String>>,
    pub url_file: Option<Spanned<String>>,
    pub secret: Option<Spanned<String>>,
    pub secret_env: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    pub routing_key: Option<Spanned<String>>,
    pub routing_key_env: Option<Spanned<String>>,
    pub routing_key_file: Option<Spanned<String>>,
    pub min_severity: Option<Spanned<String>>,
    pub rules: Option<Vec<Spanned<String>>>,
    pub to: Vec<Spanned<String>>,
    pub send_exempted: Option<Spanned<bool>>,
    pub max_body_bytes: Option<Spanned<String>>,
}

/// Whether a value is or holds (in an array or inline table: `urls = ["https://…"]`) a URL.
fn holds_url(value: &DeValue<'_>) -> bool {
    match value {
        DeValue::String(s) => s.contains("://"),
        DeValue::Array(items) => items.iter().any(|v| holds_url(v.get_ref())),
        DeValue::Table(t) => t.values().any(|v| holds_url(v.get_ref())),
        _ => false,
    }
}

/// `[notify.email]` as written; `span` is the table's, for missing keys.
#[derive(Debug, Default)]
pub(super) struct RawEmail {
    pub span: Range<usize>,
    pub transport: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub tls: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub to: Vec<Spanned<String>>,
    pub dir: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub max_csv_bytes: Option<Spanned<String>>,
    pub html: Option<Spanned<String>>,
    pub text: Option<Spanned<String>>,
}

/// The keys of each table, for unknown-key reports and their "did you mean".
const TOP: &[&str] = &[
    "openai",
    "storage",
    "schedule",
    "rules",
    "exemption",
    "notify",
    "server",
    "collect",
    "spend",
    "audit_log",
];
const OPENAI: &[&str] = &[
    "organization",
    "base_url",
    "admin_key_file",
    "concurrency",
    "max_concurrency",
    "timeout_secs",
    "max_response_bytes",
    "max_pages_per_scope",
    "snapshot_timeout",
];
const SCHEDULE: &[&str] = &["cron", "timezone", "run_on_start", "jitter"];
const RULES: &[&str] = &["paths", "disabled", "params", "severity", "timeout"];
const EXEMPTION: &[&str] = &["rule", "resource", "project", "reason", "owner", "expires"];
const NOTIFY: &[&str] = &[
    "repeat_interval",
    "send_resolved",
    "keep_sent",
    "email",
    "channel",
];
const CHANNEL: &[&str] = &[
    "name",
    "kind",
    "url",
    "url_env",
    "url_file",
    "secret",
    "secret_env",
    "secret_file",
    "routing_key",
    "routing_key_env",
    "routing_key_file",
    "min_severity",
    "rules",
    "to",
    "send_exempted",
    "max_body_bytes",
];
const EMAIL: &[&str] = &[
    "transport",
    "host",
    "port",
    "tls",
    "username",
    "password_env",
    "from",
    "to",
    "dir",
    "templates",
    "ca_file",
    "max_csv_bytes",
];

const STORAGE: &[&str] = &["path"];
const SERVER: &[&str] = &["listen"];
const COLLECT: &[&str] = &["skip"];
const SPEND: &[&str] = &["enabled", "lookback", "settle_days"];
const AUDIT_LOG: &[&str] = &["enabled", "lookback"];
const TEMPLATES: &[&str] = &["html", "text"];

/// Every table of the file and the keys it accepts, as the reader checks them: the starter
/// file `orgwarden init` writes must explain each (its test reads this).
#[cfg(test)]
pub(crate) const KNOWN_KEYS: &[(&str, &[&str])] = &[
    ("", TOP),
    ("openai", OPENAI),
    ("storage", STORAGE),
    ("schedule", SCHEDULE),
    ("rules", RULES),
    ("exemption", EXEMPTION),
    ("notify", NOTIFY),
    ("notify.email", EMAIL),
    ("notify.email.templates", TEMPLATES),
    ("notify.channel", CHANNEL),
    ("server", SERVER),
    ("collect", COLLECT),
    ("spend", SPEND),
    ("audit_log", AUDIT_LOG),
];

/// Reads the document tree into [`RawConfig`], recording wrong types and unknown keys.
pub(super) struct Reader<'d> {
    diags: &'d mut Diagnostics,
    file: FileId,
}

/// One table being read: its dotted path (empty at the top), its name for messages
/// (`[notify.email]`) and its entries.
struct Table<'t, 'i> {
    path: String,
    name: String,
    entries: &'t DeTable<'i>,
}

impl<'d> Reader<'d> {
    /// A reader recording into `diags`, pointing into `file`.
    pub fn new(diags: &'d mut Diagnostics, file: FileId) -> Self {
        Reader { diags, file }
    }

    /// Reads the whole document.
    pub fn read(&mut self, root: &DeTable<'_>) -> RawConfig {
        let top = Table {
            path: String::new(),
            name: "the top level".into(),
            entries: root,
        };
        self.unknown_keys(&top, TOP);
        let mut raw = RawConfig::default();
        if let Some(t) = self.table(&top, "openai") {
            raw.openai = self.openai(&t);
        }
        if let Some(t) = self.table(&top, "storage") {
            self.unknown_keys(&t, STORAGE);
            raw.storage = self.string(&t, "path");
        }
        if let Some(t) = self.table(&top, "schedule") {
            self.unknown_keys(&t, SCHEDULE);
            raw.schedule = RawSchedule {
                cron: self.string(&t, "cron"),
                timezone: self.string(&t, "timezone"),
                run_on_start: self.boolean(&t, "run_on_start"),
                jitter: self.string(&t, "jitter"),
            };
        }
        if let Some(t) = self.table(&top, "rules") {
            raw.rules = self.rules(&t);
        }
        raw.exemption = self.exemptions(&top);
        if let Some(t) = self.table(&top, "notify") {
            raw.notify = self.notify(&t);
        }
        if let Some(t) = self.table(&top, "server") {
            self.unknown_keys(&t, SERVER);
            raw.listen = self.string(&t, "listen");
        }
        if let Some(t) = self.table(&top, "collect") {
            self.unknown_keys(&t, COLLECT);
            raw.collect_skip = self.strings(&t, "skip");
        }
        if let Some(t) = self.table(&top, "spend") {
            self.unknown_keys(&t, SPEND);
            raw.spend = RawSpend {
                enabled: self.boolean(&t, "enabled"),
                lookback: self.string(&t, "lookback"),
                settle_days: self.integer(&t, "settle_days"),
            };
        }
        if let Some(t) = self.table(&top, "audit_log") {
            self.unknown_keys(&t, AUDIT_LOG);
            raw.audit_log = RawAuditLog {
                enabled: self.boolean(&t, "enabled"),
                lookback: self.string(&t, "lookback"),
            };
        }
        raw
    }

    fn openai(&mut self, t: &Table<'_, '_>) -> RawOpenAi {
        self.unknown_keys(t, OPENAI);
        RawOpenAi {
            organization: self.string(t, "organization"),
            base_url: self.string(t, "base_url"),
            admin_key_file: self.string(t, "admin_key_file"),
            concurrency: self.integer(t, "concurrency"),
            max_concurrency: self.integer(t, "max_concurrency"),
            timeout_secs: self.integer(t, "timeout_secs"),
            max_response_bytes: self.string(t, "max_response_bytes"),
            max_pages_per_scope: self.integer(t, "max_pages_per_scope"),
            snapshot_timeout: self.string(t, "snapshot_timeout"),
        }
    }

    fn rules(&mut self, t: &Table<'_, '_>) -> RawRules {
        self.unknown_keys(t, RULES);
        let mut rules = RawRules {
            paths: self.strings(t, "paths"),
            disabled: self.strings(t, "disabled"),
            timeout: self.string(t, "timeout"),
            ..RawRules::default()
        };
        if let Some(severity) = self.table(t, "severity") {
            for (key, _) in severity.entries {
                if let Some(value) = self.string(&severity, key.get_ref()) {
                    rules.severity.push((owned_key(key), value));
                }
            }
        }
        if let Some(params) = self.table(t, "params") {
            for (id, _) in params.entries {
                let Some(table) = self.table(&params, id.get_ref()) else {
                    continue;
                };
                let values = table
                    .entries
                    .iter()
                    .filter_map(|(name, value)| {
                        if let Some(v) = to_value(value.get_ref()) {
                            Some((owned_key(name), Spanned::new(value.span(), v)))
                        } else {
                            self.diags.error(
                                DiagnosticCode::BadValue,
                                Some(self.file),
                                Some(value.span()),
                                format!("param `{}` is out of range", name.get_ref()),
                            );
                            None
                        }
                    })
                    .collect();
                rules.params.push((owned_key(id), values));
            }
        }
        rules
    }

    fn exemptions(&mut self, top: &Table<'_, '_>) -> Vec<RawExemption> {
        let Some(value) = top.entries.get("exemption") else {
            return Vec::new();
        };
        let Some(array) = value.get_ref().as_array() else {
            self.wrong_type(&top.name, "exemption", value, "an array of tables");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in array {
            let Some(entries) = item.get_ref().as_table() else {
                self.wrong_type("[[exemption]]", "entry", item, "a table");
                continue;
            };
            let t = Table {
                path: "exemption".into(),
                name: "[[exemption]]".into(),
                entries,
            };
            self.unknown_keys(&t, EXEMPTION);
            out.push(RawExemption {
                span: item.span(),
                rule: self.string(&t, "rule"),
                resource: self.string(&t, "resource"),
                reason: self.string(&t, "reason"),
                owner: self.string(&t, "owner"),
                expires: self.string(&t, "expires"),
                project: self.string(&t, "project"),
                given: entries.keys().map(|k| k.get_ref().to_string()).collect(),
            });
        }
        out
    }

    fn notify(&mut self, t: &Table<'_, '_>) -> RawNotify {
        self.unknown_keys(t, NOTIFY);
        let mut notify = RawNotify {
            repeat_interval: self.string(t, "repeat_interval"),
            send_resolved: self.boolean(t, "send_resolved"),
            keep_sent: self.string(t, "keep_sent"),
            email: None,
            channels: self.channels(t),
        };
        let span = t.entries.get("email").map(Spanned::span);
        if let (Some(e), Some(span)) = (self.table(t, "email"), span) {
            self.unknown_keys(&e, EMAIL);
            let mut email = RawEmail {
                span,
                transport: self.string(&e, "transport"),
                host: self.string(&e, "host"),
                port: self.integer(&e, "port"),
                tls: self.string(&e, "tls"),
                username: self.string(&e, "username"),
                password_env: self.string(&e, "password_env"),
                from: self.string(&e, "from"),
                to: self.strings(&e, "to"),
                dir: self.string(&e, "dir"),
                ca_file: self.string(&e, "ca_file"),
                max_csv_bytes: self.string(&e, "max_csv_bytes"),
                ..RawEmail::default()
            };
            if let Some(templates) = self.table(&e, "templates") {
                self.unknown_keys(&templates, TEMPLATES);
                email.html = self.string(&templates, "html");
                email.text = self.string(&templates, "text");
            }
            notify.email = Some(email);
        }
        notify
    }

    /// Every `[[notify.channel]]`.
    fn channels(&mut self, notify: &Table<'_, '_>) -> Vec<RawChannel> {
        let Some(value) = notify.entries.get("channel") else {
            return Vec::new();
        };
        let Some(array) = value.get_ref().as_array() else {
            self.wrong_type(&notify.name, "channel", value, "an array of tables");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in array {
            let Some(entries) = item.get_ref().as_table() else {
                self.wrong_type("[[notify.channel]]", "entry", item, "a table");
                continue;
            };
            let t = Table {
                path: "notify.channel".into(),
                name: "[[notify.channel]]".into(),
                entries,
            };
            self.unknown_keys(&t, CHANNEL);
            out.push(RawChannel {
                span: item.span(),
                name: self.string(&t, "name"),
                kind: self.string(&t, "kind"),
                url: self.string(&t, "url"),
                url_env: self.string(&t, "url_env"),
                url_file: self.string(&t, "url_file"),
                secret: self.string(&t, "secret"),
                secret_env: self.string(&t, "secret_env"),
                secret_file: self.string(&t, "secret_file"),
                routing_key: self.string(&t, "routing_key"),
                routing_key_env: self.string(&t, "routing_key_env"),
                routing_key_file: self.string(&t, "routing_key_file"),
                min_severity: self.string(&t, "min_severity"),
                rules: t
                    .entries
                    .contains_key("rules")
                    .then(|| self.strings(&t, "rules")),
                to: self.strings(&t, "to"),
                send_exempted: self.boolean(&t, "send_exempted"),
                max_body_bytes: self.string(&t, "max_body_bytes"),
            });
        }
        out
    }

    /// Reports every key of `t` that is not in `known`, with the closest known key.
    fn unknown_keys(&mut self, t: &Table<'_, '_>, known: &[&str]) {
        for (key, value) in t.entries {
            let name = key.get_ref();
            if known.contains(&name.as_ref()) {
                continue;
            }
            let d = self.diags.error(
                DiagnosticCode::UnknownKey,
                Some(self.file),
                Some(key.span()),
                format!("unknown key `{name}` in {}", t.name),
            );
            d.label("unknown key");
            // A webhook's URL is its credential: one written under a wrong key
            // (`webhook_url`, `urls`) must not be printed by the diagnostic that names it.
            if holds_url(value.get_ref()) {
                d.conceal();
            }
            match super::closest(name, known.iter().copied()) {
                Some(close) => d.help(format!("did you mean `{close}`?")),
                None => d.help(format!("the keys of {} are: {}", t.name, known.join(", "))),
            };
        }
    }

    fn wrong_type(
        &mut self,
        table: &str,
        key: &str,
        value: &Spanned<DeValue<'_>>,
        want: &str,
    ) -> &mut crate::diagnostics::Diagnostic {
        self.diags
            .error(
                DiagnosticCode::WrongType,
                Some(self.file),
                Some(value.span()),
                format!(
                    "`{key}` in {table} must be {want}, not {}",
                    a(value.get_ref().type_str())
                ),
            )
            .label(format!("expected {want}"))
    }

    /// The sub-table `key` of `t`, reporting a value of another type.
    fn table<'t, 'i>(&mut self, t: &Table<'t, 'i>, key: &str) -> Option<Table<'t, 'i>> {
        let value = t.entries.get(key)?;
        if let Some(entries) = value.get_ref().as_table() {
            let path = if t.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", t.path)
            };
            Some(Table {
                name: format!("[{path}]"),
                path,
                entries,
            })
        } else {
            self.wrong_type(&t.name, key, value, "a table");
            None
        }
    }

    fn string(&mut self, t: &Table<'_, '_>, key: &str) -> Option<Spanned<String>> {
        let value = t.entries.get(key)?;
        if let Some(s) = value.get_ref().as_str() {
            Some(Spanned::new(value.span(), s.to_owned()))
        } else {
            let d = self.wrong_type(&t.name, key, value, "a string");
            // TOML reads an unquoted `2027-03-31` as a date: say how to write it instead.
            if let DeValue::Datetime(date) = value.get_ref() {
                d.help(format!("write it in quotes: `{key} = \"{date}\"`"));
            }
            None
        }
    }

    fn integer(&mut self, t: &Table<'_, '_>, key: &str) -> Option<Spanned<i64>> {
        let value = t.entries.get(key)?;
        let parsed = value
            .get_ref()
            .as_integer()
            .map(|i| i64::from_str_radix(i.as_str(), i.radix()));
        match parsed {
            Some(Ok(n)) => Some(Spanned::new(value.span(), n)),
            Some(Err(_)) => {
                self.diags.error(
                    DiagnosticCode::BadValue,
                    Some(self.file),
                    Some(value.span()),
                    format!("`{key}` in {} is out of range", t.name),
                );
                None
            }
            None => {
                self.wrong_type(&t.name, key, value, "an integer");
                None
            }
        }
    }

    fn boolean(&mut self, t: &Table<'_, '_>, key: &str) -> Option<Spanned<bool>> {
        let value = t.entries.get(key)?;
        if let Some(b) = value.get_ref().as_bool() {
            Some(Spanned::new(value.span(), b))
        } else {
            self.wrong_type(&t.name, key, value, "true or false");
            None
        }
    }

    fn strings(&mut self, t: &Table<'_, '_>, key: &str) -> Vec<Spanned<String>> {
        let Some(value) = t.entries.get(key) else {
            return Vec::new();
        };
        let Some(items) = value.get_ref().as_array() else {
            self.wrong_type(&t.name, key, value, "an array of strings");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match item.get_ref().as_str() {
                Some(s) => out.push(Spanned::new(item.span(), s.to_owned())),
                None => {
                    self.wrong_type(&t.name, key, item, "a string");
                }
            }
        }
        out
    }
}

fn owned_key(key: &Spanned<std::borrow::Cow<'_, str>>) -> Spanned<String> {
    Spanned::new(key.span(), key.get_ref().to_string())
}

/// `a string`, `an integer`.
fn a(kind: &str) -> String {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {kind}")
    } else {
        format!("a {kind}")
    }
}

/// A document value as a plain [`toml::Value`]; `None` for an integer or float out of range.
fn to_value(value: &DeValue<'_>) -> Option<toml::Value> {
    Some(match value {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(i) => {
            toml::Value::Integer(i64::from_str_radix(i.as_str(), i.radix()).ok()?)
        }
        DeValue::Float(f) => toml::Value::Float(f.as_str().parse().ok()?),
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(items) => toml::Value::Array(
            items
                .iter()
                .map(|v| to_value(v.get_ref()))
                .collect::<Option<_>>()?,
        ),
        DeValue::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, v)| Some((k.get_ref().to_string(), to_value(v.get_ref())?)))
                .collect::<Option<_>>()?,
        ),
    })
}
