//! The Admin API client: Bearer auth with a key that never leaves a `SecretString`,
//! both list envelopes followed to the end, retries with backoff that honour
//! `Retry-After`, and a shared gate that bounds, paces and adapts the requests in flight
//! (the `gate` module).

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::config::{OpenAiConfig, SpendConfig};
use crate::model::{
    ApiRate, Burst, CrawlStats, Envelope, Family, Objects, Overdrawn, RequestsPerMinute, Scope,
    TextBudget,
};
use crate::size::ByteSize;

mod body;
mod gate;
mod shape;
mod timer;

use body::{Answer, Capped, LargeAnswers, Place, read_capped};
pub use gate::Queue;
use gate::{Gate, Permit, rate_headers};
pub use shape::AnswerBound;

/// The object text a crawl holds at once, in answers of `max_response_bytes` (512 MiB at
/// the default 32 MiB). The largest real list, 100,000 organization members, is about
/// 50 MB of text; a server paging on with large objects is stopped here instead of at
/// `max_pages_per_scope` pages of every list being read.
const HELD_TEXT_PER_ANSWER: u64 = 16;

/// `bytes` in MiB with one decimal, for messages.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// The environment variable the admin key is read from.
pub const ADMIN_KEY_ENV: &str = "OPENAI_ADMIN_KEY";

/// The ceiling of the adaptive in-flight limit when `[openai] max_concurrency` is unset.
pub const DEFAULT_MAX_CONCURRENCY: usize = 256;

/// The longest `Retry-After` the client waits for; a server asking for more fails the read
/// instead of stalling the whole crawl (the official SDKs draw the same line).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// How many 429 answers one request may receive before its read fails. A 429 is the
/// server pacing us, not a fault, so it has its own budget apart from `max_retries`.
const MAX_RATE_LIMITED_RETRIES: u32 = 12;
/// First backoff step and ceiling (full jitter: a random wait in `0..step`).
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(8);
/// The most of an error answer's body read: enough for the API's `error.message`, and a
/// server answering a 200 MB error page costs no more than this.
const ERROR_BODY_LIMIT: usize = 4 << 10;
/// The largest admin key file read: a key is a few hundred bytes, so anything larger is
/// the wrong file (and `/dev/zero` must not be read until memory runs out).
pub const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

/// Why the client could not be built or a read failed. Messages name the API path and
/// never contain the admin key.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Neither the environment variable nor the key file is set.
    #[error("no admin key: set {ADMIN_KEY_ENV} or `[openai] admin_key_file` in orgwarden.toml")]
    NoKey,
    /// The key file could not be read.
    #[error("cannot read the admin key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is larger than [`MAX_KEY_FILE_BYTES`].
    #[error(
        "the admin key file {path} is larger than 64 KiB: it cannot be an admin key \
         (check `[openai] admin_key_file`)"
    )]
    KeyFileTooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The key is empty once whitespace is trimmed.
    #[error("the admin key from {origin} is empty")]
    EmptyKey {
        /// Where it came from (the variable or the file).
        origin: String,
    },
    /// The key holds characters an HTTP header cannot carry.
    #[error("the admin key holds characters that cannot be sent in an HTTP header")]
    KeyNotAscii,
    /// The base URL is unusable or insecure.
    #[error("base URL `{url}`: {reason}")]
    BaseUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
    /// A proxy variable (`HTTPS_PROXY`, …) holds a value that cannot be used.
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    /// 401 or 403: the key is wrong, revoked, or not an admin key.
    #[error(
        "the Admin API refused the admin key (HTTP {status} on GET {path}): {}",
        refused_key_reason(*.non_admin_prefix)
    )]
    KeyRefused {
        /// 401 or 403.
        status: u16,
        /// The path that answered.
        path: String,
        /// The documented prefix of a key that is no admin key (`sk-proj-`), when the key
        /// has one: the prefix alone, never more of the key.
        non_admin_prefix: Option<&'static str>,
    },
    /// The API answered an error status (after any retries).
    #[error("GET {path}: HTTP {status}: {message}")]
    Status {
        /// The path (with the page cursor when not the first page).
        path: String,
        /// The HTTP status.
        status: u16,
        /// The API's error message, or what the client concluded.
        message: String,
    },
    /// 400 or 403 answered to a read that asked to see why ([`AdminClient::get_explained`]):
    /// the API's error `code` and message, scrubbed of secrets.
    #[error("GET {path}: HTTP {status}: {message}")]
    Explained {
        /// The path.
        path: String,
        /// 400 or 403.
        status: u16,
        /// The API's `error.code`, when it sent one.
        code: Option<String>,
        /// The API's `error.message`, or the start of the body.
        message: String,
    },
    /// No answer: connection refused, reset, or timed out (after retries).
    #[error("GET {path}: {message}")]
    Transport {
        /// The path.
        path: String,
        /// What failed.
        message: String,
    },
    /// An answer, a page or a list went past a bound: the read stops there.
    #[error("GET {path}: {message}")]
    TooLarge {
        /// The path.
        path: String,
        /// Which bound, naming its setting when it has one.
        message: String,
    },
    /// The API answered 200 with JSON holding more values, or nesting deeper, than any
    /// real answer of the read can ([`AnswerBound`]): refused before it is parsed, since
    /// parsed it would cost many times its size in memory.
    #[error("GET {path}: {message}")]
    TooManyValues {
        /// The path.
        path: String,
        /// How many values (or levels) the answer holds, and the most a real one can.
        message: String,
    },
    /// The crawl reached `[openai] snapshot_timeout` before this read finished: it was
    /// given up, or not begun.
    #[error(
        "GET {path}: not read: the snapshot reached its time limit \
         ([openai] snapshot_timeout = \"{limit}\")"
    )]
    OutOfTime {
        /// The path.
        path: String,
        /// The limit.
        limit: crate::duration::Duration,
    },
    /// The API answered 200 with a body that is not the JSON the endpoint promises.
    #[error("GET {path}: malformed response: {message}")]
    Malformed {
        /// The path.
        path: String,
        /// What is wrong with the body.
        message: String,
    },
}

impl ClientError {
    /// The HTTP status the API answered, when it answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::KeyRefused { status, .. }
            | ClientError::Status { status, .. }
            | ClientError::Explained { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Reads the admin key: `OPENAI_ADMIN_KEY` when set, else `[openai] admin_key_file`
/// (relative to `config_dir`, the configuration file's folder; a file others can read is
/// warned about once). Surrounding whitespace, such as the trailing newline editors add,
/// is trimmed; an empty key is an error.
pub fn load_admin_key(
    cfg: &OpenAiConfig,
    config_dir: Option<&Path>,
) -> Result<SecretString, ClientError> {
    load_admin_key_from(std::env::var(ADMIN_KEY_ENV).ok(), cfg, config_dir)
}

/// [`load_admin_key`] with the environment variable's value passed in (for tests).
pub fn load_admin_key_from(
    env_value: Option<String>,
    cfg: &OpenAiConfig,
    config_dir: Option<&Path>,
) -> Result<SecretString, ClientError> {
    if let Some(value) = env_value {
        // An exported but empty variable is most likely a mistake, unless a file is named.
        if !value.trim().is_empty() || cfg.admin_key_file.is_none() {
            if let Some(file) = &cfg.admin_key_file {
                warn_file_unread(file);
            }
            return non_empty(value, ADMIN_KEY_ENV.to_owned());
        }
    }
    let Some(file) = &cfg.admin_key_file else {
        return Err(ClientError::NoKey);
    };
    let path = match config_dir {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.clone(),
    };
    crate::store::warn_if_shared("admin key file", &path);
    let text = read_key_file(&path)?;
    non_empty(text, path.display().to_string())
}

/// Says, once a process, that a named key file is not read: a variable left exported in a
/// shell or a unit would otherwise silently audit with another key than the file's.
fn warn_file_unread(file: &Path) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "{ADMIN_KEY_ENV} is set, so [openai] admin_key_file ({}) is not read; unset \
             {ADMIN_KEY_ENV} to use the file",
            file.display()
        );
    }
}

/// The key file's text, refusing one over [`MAX_KEY_FILE_BYTES`] without reading past it.
fn read_key_file(path: &Path) -> Result<String, ClientError> {
    use std::io::Read;
    let io_error = |source| ClientError::KeyFile {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells "exactly at the limit" from "over it".
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(ClientError::KeyFileTooLarge {
            path: path.to_owned(),
        });
    }
    String::from_utf8(bytes).map_err(|_| {
        io_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

fn non_empty(value: String, origin: String) -> Result<SecretString, ClientError> {
    let secret = SecretString::from(value);
    let trimmed = secret.expose_secret().trim();
    if trimmed.is_empty() {
        return Err(ClientError::EmptyKey { origin });
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

/// How the client talks to the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Per-request timeout (connect, send and read the whole body).
    pub timeout: Duration,
    /// The most requests in flight: the fixed number, or the adaptive limit's ceiling.
    pub concurrency: usize,
    /// Whether the client finds the concurrency and pace by itself (`false` = always
    /// `concurrency` in flight, paced only once the server has objected or stated a limit).
    pub adaptive: bool,
    /// Retries of a request after a 5xx, 408 or a connection error or timeout.
    pub max_retries: u32,
    /// The largest answer body read (`[openai] max_response_bytes`).
    pub max_response_bytes: ByteSize,
    /// The most pages read for one scope (`[openai] max_pages_per_scope`).
    pub max_pages_per_scope: u64,
    /// How long one crawl may read, from [`AdminClient::start_crawl`] (`[openai]
    /// snapshot_timeout`); `None`: no limit but each request's own.
    pub snapshot_timeout: Option<crate::duration::Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            concurrency: DEFAULT_MAX_CONCURRENCY,
            adaptive: true,
            max_retries: 4,
            max_response_bytes: OpenAiConfig::default().max_response_bytes,
            max_pages_per_scope: OpenAiConfig::default().max_pages_per_scope,
            snapshot_timeout: None,
        }
    }
}

impl ClientOptions {
    /// The options `[openai]` asks for: `concurrency` fixes the number in flight;
    /// without it the client adapts, up to `max_concurrency`.
    pub fn from_config(cfg: &OpenAiConfig) -> Self {
        let (concurrency, adaptive) = match (cfg.concurrency, cfg.max_concurrency) {
            (Some(fixed), _) => (fixed, false),
            (None, max) => (max.unwrap_or(DEFAULT_MAX_CONCURRENCY), true),
        };
        Self {
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
            concurrency: concurrency.max(1),
            adaptive,
            max_response_bytes: cfg.max_response_bytes,
            max_pages_per_scope: cfg.max_pages_per_scope.max(1),
            snapshot_timeout: cfg.snapshot_timeout,
            ..Self::default()
        }
    }
}

/// Checks that `base_url` is usable: HTTPS, or plain HTTP to a loopback host only
/// (a simulator on this machine), so the admin key never crosses a network in clear.
pub fn check_base_url(base_url: &str) -> Result<Url, ClientError> {
    let bad = |reason: &str| ClientError::BaseUrl {
        url: shown_url(base_url),
        reason: reason.to_owned(),
    };
    let url = Url::parse(base_url).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if url.cannot_be_a_base() {
        return Err(bad("not a base URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "must not carry a user or password: orgwarden authenticates with the admin key \
             alone (a forward proxy is set with HTTPS_PROXY)",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(bad(
                "plain http is refused for a non-loopback host: the admin key would cross \
                 the network unencrypted (use https, or http://127.0.0.1 for a local simulator)",
            ));
        }
        other => return Err(bad(&format!("unsupported scheme `{other}` (use https)"))),
    }
    Ok(url)
}

/// A base URL as an error may show it: without a user and password or a query, either of
/// which may hold a credential. Everything up to the last `@` is taken for a user and
/// password: one written unencoded may hold `/`, `?` or `#`, which end the authority for a
/// URL parser (`https://ops:p/ss@proxy/v1` is host `ops`, port `p`, refused as a bad port,
/// and the message would show the password whole).
pub(crate) fn shown_url(raw: &str) -> String {
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, raw),
    };
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (true, &rest[at + 1..]),
        None => (false, rest),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let scheme = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    let hidden = if userinfo { "…@" } else { "" };
    format!("{scheme}{hidden}{rest}")
}

/// The prefixes of the keys that are not admin keys, with what each is: project keys,
/// service-account keys and the older user keys. The Admin API refuses them whatever their
/// owner may do.
const NON_ADMIN_KEY_PREFIXES: [(&str, &str); 3] = [
    ("sk-proj-", "a project or service-account API key"),
    ("sk-svcacct-", "a project or service-account API key"),
    (
        "sk-None-",
        "a user API key (the older kind, tied to no project)",
    ),
];

/// The prefix that shows `key` is not an admin key, if it has one.
fn non_admin_prefix(key: &str) -> Option<&'static str> {
    NON_ADMIN_KEY_PREFIXES
        .into_iter()
        .map(|(prefix, _)| prefix)
        .find(|prefix| key.trim_start().starts_with(prefix))
}

/// Why a refused key was refused, as far as its prefix tells.
fn refused_key_reason(non_admin_prefix: Option<&str>) -> String {
    let kind = non_admin_prefix.and_then(|p| {
        NON_ADMIN_KEY_PREFIXES
            .into_iter()
            .find_map(|(prefix, kind)| (prefix == p).then_some(kind))
    });
    match (non_admin_prefix, kind) {
        // A newcomer's likeliest mistake: the key they already had for the models API.
        (Some(prefix), Some(kind)) => format!(
            "it starts with `{prefix}`, so it is {kind}, which the Admin API never accepts: \
             create an admin key (it starts with `sk-admin-`) under the organization's \
             settings, Admin keys"
        ),
        _ => "it is wrong, revoked, or not an admin key".to_owned(),
    }
}

fn is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(crate::config::is_loopback_host)
}

/// An authenticated Admin API client, cheap to share by reference among concurrent reads.
pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    key: SecretString,
    opts: ClientOptions,
    gate: Arc<Gate>,
    /// The few places for answers over a mebibyte, so that bodies held at once stay
    /// bounded whatever the concurrency (see the `body` module).
    large_answers: LargeAnswers,
    /// The object text held at once by every list being read and every read waiting for
    /// the store: [`HELD_TEXT_PER_ANSWER`] times `max_response_bytes`.
    held_text: TextBudget,
    counters: Counters,
    observer: Option<ResponseObserver>,
    spend: Option<SpendConfig>,
    audit_log: Option<crate::config::AuditLogConfig>,
    /// When the current crawl's reads stop ([`ClientOptions::snapshot_timeout`] after
    /// [`AdminClient::start_crawl`]).
    deadline: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Called with every answer's HTTP status (`None` when no answer came), e.g. to count
/// responses by status class for `/metrics`.
pub type ResponseObserver = Arc<dyn Fn(Option<u16>) + Send + Sync>;

impl fmt::Debug for AdminClient {
    // Hand-written so that the key can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base.as_str())
            .field("key", &"[redacted]")
            .field("opts", &self.opts)
            .finish()
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
}

/// Where an answer is read if it is large: the client's places (`None` only should they
/// have been closed) and, for a request sent again after its answer found none free, the
/// place taken for it beforehand.
struct Room<'a> {
    large: Option<&'a LargeAnswers>,
    place: Option<Place>,
}

/// What one HTTP attempt gave.
enum Attempt {
    Body(Answer),
    /// A large answer that found every place taken, given up unread: asked for again once
    /// a place is free (see the `body` module).
    Crowded,
    Retry {
        error: ClientError,
        retry_after: Option<Duration>,
        rate_limited: bool,
    },
    Fatal(ClientError),
}

impl AdminClient {
    /// The error of a 401 or 403 to `path`, saying what the key's prefix shows.
    fn key_refused(&self, status: u16, path: &str) -> ClientError {
        ClientError::KeyRefused {
            status,
            path: path.to_owned(),
            non_admin_prefix: non_admin_prefix(self.key.expose_secret()),
        }
    }

    /// A client for `base_url` (e.g. `https://api.openai.com/v1`) authenticating with `key`.
    pub fn new(
        base_url: &str,
        key: SecretString,
        opts: ClientOptions,
    ) -> Result<Self, ClientError> {
        let base = check_base_url(base_url)?;
        if HeaderValue::from_str(key.expose_secret()).is_err() {
            return Err(ClientError::KeyNotAscii);
        }
        // Whatever key a client is given, it is scrubbed from logs and errors from now on.
        crate::secrets::register(&key);
        crate::proxy::check_environment(&base)?;
        let http = crate::proxy::client_builder(&base)
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("orgwarden/", env!("CARGO_PKG_VERSION")))
            // The Admin API does not redirect. A redirect followed to another server would
            // read its lists as the organization's, and an empty one there would resolve
            // every finding; so a 3xx fails its scope instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Build(crate::trust::build_error(&e)))?;
        let concurrency = opts.concurrency.max(1);
        Ok(Self {
            http,
            base,
            key,
            gate: Arc::new(Gate::new(concurrency, opts.adaptive)),
            large_answers: LargeAnswers::new(opts.max_response_bytes.as_bytes()),
            held_text: TextBudget::new(
                opts.max_response_bytes
                    .as_bytes()
                    .saturating_mul(HELD_TEXT_PER_ANSWER),
            ),
            opts,
            counters: Counters::default(),
            observer: None,
            spend: None,
            audit_log: None,
            deadline: std::sync::Mutex::new(None),
        })
    }

    /// The same client, reporting every answer's status to `observer`.
    pub fn with_observer(mut self, observer: ResponseObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The same client, also reading the organization's daily costs with every snapshot as
    /// `[spend]` says (a client without it reads no costs).
    pub fn with_spend(mut self, spend: SpendConfig) -> Self {
        self.spend = Some(spend);
        self
    }

    /// The `[spend]` settings this client's snapshots read costs with.
    pub fn spend(&self) -> Option<SpendConfig> {
        self.spend
    }

    /// The same client, also reading the organization's audit log with every snapshot as
    /// `[audit_log]` says (a client without it reads no audit log).
    pub fn with_audit_log(mut self, audit_log: crate::config::AuditLogConfig) -> Self {
        self.audit_log = Some(audit_log);
        self
    }

    /// The `[audit_log]` settings this client's snapshots read the audit log with.
    pub fn audit_log(&self) -> Option<crate::config::AuditLogConfig> {
        self.audit_log
    }

    /// The budget of text this client's reads hold at once: every list being read, and
    /// the rows of a costs read.
    pub fn held_text(&self) -> &TextBudget {
        &self.held_text
    }

    /// The message of a read refused by [`AdminClient::held_text`].
    pub fn overdrawn(over: Overdrawn) -> String {
        format!(
            "the reads in progress hold {} of objects, and this page's {} would take them \
             past {} ({HELD_TEXT_PER_ANSWER} × `[openai] max_response_bytes`); not reading \
             the rest of it",
            mib(over.held),
            mib(over.asked),
            mib(over.most),
        )
    }

    /// The most pages one read follows (`[openai] max_pages_per_scope`).
    pub fn max_pages_per_scope(&self) -> u64 {
        self.opts.max_pages_per_scope
    }

    fn observe(&self, status: Option<u16>) {
        if let Some(observer) = &self.observer {
            observer(status);
        }
    }

    /// The counters so far (`errors` is the collector's to fill).
    pub fn stats(&self) -> CrawlStats {
        CrawlStats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            errors: 0,
            retries: self.counters.retries.load(Ordering::Relaxed),
            rate_limited: self.counters.rate_limited.load(Ordering::Relaxed),
            concurrency: self.gate.limit() as u64,
        }
    }

    /// The most requests in flight the client may ever have (the fixed number, or the
    /// adaptive limit's ceiling).
    pub fn max_in_flight(&self) -> usize {
        self.gate.max()
    }

    /// The request rate this client has found the API to allow (measured from its 429s,
    /// stated by its rate-limit headers, reached by the probe above either without a 429,
    /// or assumed from an earlier crawl and not contradicted since), with the burst
    /// allowance when a 429 showed where it ran dry: what the next crawl of the same API
    /// starts from. `None` while it has found no rate.
    pub fn learned_rate(&self) -> Option<ApiRate> {
        let (per_second, depth) = self.gate.learned()?;
        Some(ApiRate {
            per_minute: RequestsPerMinute::from_per_second(per_second)?,
            burst: depth.and_then(Burst::from_requests),
        })
    }

    /// Begins a crawl as a fresh client would (and starts its `snapshot_timeout`),
    /// forgetting what the last one learned (the daemon's client lives from run to run),
    /// and with `known`, a rate an earlier crawl of the same API found, paced just under
    /// it from the first request instead of ramping up from a guess: at a high limit and
    /// a long round trip the ramp costs seconds, and ends in a round trip's worth of 429s.
    /// A limit that has dropped since is measured again from the 429s of the first round
    /// trip, as one that drops mid-crawl is. The pacing has no effect with a fixed
    /// concurrency.
    pub fn start_crawl(&self, known: Option<ApiRate>) {
        *self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = self
            .opts
            .snapshot_timeout
            // A limit past what the clock can count (`99999999999w`) is no limit.
            .and_then(|limit| tokio::time::Instant::now().checked_add(limit.to_std()));
        self.gate.start_crawl(known.map(|known| {
            (
                known.per_minute.per_second(),
                known.burst.map(|burst| burst.get() as f64),
            )
        }));
    }

    /// Names the API this client reads, so that what is learned about one API is never
    /// applied to another: a SHA-256 of the base URL, since a base URL can carry a
    /// proxy's credentials and the name is stored.
    pub fn api_fingerprint(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.base.as_str().as_bytes()))
    }

    /// Reads one whole scope: every page of a list, or the one object of a single read.
    pub async fn read_scope(&self, scope: &Scope) -> Result<Objects, ClientError> {
        self.read_scope_paged(scope, &mut |_| {}).await
    }

    /// [`AdminClient::read_scope`], showing `on_page` each page's objects as it arrives,
    /// before the next page is asked for: what hangs under a long list can be read while
    /// the rest of the list is. The pages shown are not the verdict: the read can still
    /// fail on a later page.
    pub async fn read_scope_paged(
        &self,
        scope: &Scope,
        on_page: &mut (dyn FnMut(&[Value]) + Send),
    ) -> Result<Objects, ClientError> {
        let family = scope.family;
        let path = scope.path();
        let url = self.scope_url(scope);
        match family.envelope() {
            Envelope::Single => {
                let value = self.get_json(&path, &url, family, None).await?;
                if !value.is_object() {
                    return Err(ClientError::Malformed {
                        path,
                        message: format!("expected a JSON object, got {}", kind(&value)),
                    });
                }
                Ok(Objects::from(vec![value]))
            }
            envelope => self.read_list(family, envelope, &path, &url, on_page).await,
        }
    }

    async fn read_list(
        &self,
        family: Family,
        envelope: Envelope,
        path: &str,
        url: &Url,
        on_page: &mut (dyn FnMut(&[Value]) + Send),
    ) -> Result<Objects, ClientError> {
        // Held as text: a list is held whole until its last page (see [`Objects`]).
        let mut objects = Objects::new();
        let mut after: Option<String> = None;
        // Every cursor followed so far: a server that leads back to one (A→B→A) would
        // otherwise keep the crawl paging forever.
        let mut followed: HashSet<String> = HashSet::new();
        let mut pages = 0u64;
        loop {
            let shown = match &after {
                Some(cursor) => format!("{path}?after={cursor}"),
                None => path.to_owned(),
            };
            pages += 1;
            if pages > self.opts.max_pages_per_scope {
                return Err(ClientError::TooLarge {
                    path: path.to_owned(),
                    message: format!(
                        "the list goes on past {} pages (`[openai] max_pages_per_scope`); \
                         stopping instead of reading it forever",
                        self.opts.max_pages_per_scope
                    ),
                });
            }
            let page = self.get_json(&shown, url, family, after.as_deref()).await?;
            let ListPage { data, next } = parse_list_page(page, family, envelope, &shown)?;
            if let Some(cursor) = &next {
                let malformed = |message: String| ClientError::Malformed {
                    path: shown.clone(),
                    message,
                };
                if after.as_deref() == Some(cursor.as_str()) {
                    return Err(malformed(format!(
                        "the cursor `{cursor}` did not advance; stopping instead of looping"
                    )));
                }
                if !followed.insert(cursor.clone()) {
                    return Err(malformed(format!(
                        "the cursor `{cursor}` came back after {} pages; stopping instead of \
                         looping",
                        followed.len() + 1
                    )));
                }
            }
            on_page(&data);
            objects
                .extend_within(data, &self.held_text)
                .map_err(|over| ClientError::TooLarge {
                    path: shown.clone(),
                    message: Self::overdrawn(over),
                })?;
            match next {
                Some(cursor) => after = Some(cursor),
                None => return Ok(objects),
            }
        }
    }

    /// The request URL of a scope, each id a single percent-encoded path segment so that
    /// an id from an API answer can never reshape the path.
    fn scope_url(&self, scope: &Scope) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            for segment in scope
                .family
                .path_template()
                .split('/')
                .filter(|s| !s.is_empty())
            {
                let value = match segment {
                    "{project_id}" => scope.project_id.as_ref().map_or("", |p| p.as_str()),
                    "{parent_id}" => scope.parent_id.as_deref().unwrap_or(""),
                    literal => literal,
                };
                segments.push(value);
            }
        }
        url
    }

    /// One GET with retries; `shown` names the request in errors.
    async fn get_json(
        &self,
        shown: &str,
        url: &Url,
        family: Family,
        after: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut query: Vec<(&str, String)> = family
            .required_query()
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        if let Some(limit) = family.max_page_size() {
            query.push(("limit", limit.to_string()));
        }
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        let queue = Queue::for_page(after.is_none());
        let body = self.get_body(shown, url, &query, false, queue).await?;
        if let Some(asked) = family.max_page_size()
            && family.envelope() != Envelope::Single
            && let Some(held) = page_length(&body.bytes).filter(|n| *n > asked as usize)
        {
            return Err(ClientError::TooLarge {
                path: shown.to_owned(),
                message: format!(
                    "the page holds {held} objects but `limit={asked}` was asked; \
                     not trusting the rest of the list"
                ),
            });
        }
        let bound = match family.max_page_size() {
            Some(objects) if family.envelope() != Envelope::Single => AnswerBound::Page {
                objects,
                of: "this list",
            },
            _ => AnswerBound::Object,
        };
        self.parse_json(shown, body, bound).await
    }

    /// One GET of `path` (segments under the base URL, each percent-encoded on its own)
    /// with `query`, through the same gate, retries and bounds as every scope read: for
    /// reads that are not a family's (the organization's costs). `queue`: [`Queue::Front`]
    /// for a page after the first; `bound`: the most values a real answer can hold.
    pub async fn get_with_query(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        queue: Queue,
        bound: AnswerBound,
    ) -> Result<Value, ClientError> {
        self.get_segments(segments, query, false, queue, bound)
            .await
    }

    /// [`AdminClient::get_with_query`], except that a 400 or 403 is read for its reason
    /// ([`ClientError::Explained`]): for reads whose refusal can mean something other than a
    /// refused key (the audit log of an organization that has not turned it on). A 401 is
    /// still a refused key, its body unread.
    pub async fn get_explained(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        queue: Queue,
        bound: AnswerBound,
    ) -> Result<Value, ClientError> {
        self.get_segments(segments, query, true, queue, bound).await
    }

    /// Whether the Admin API still accepts the key: the first page of one project, the
    /// read every crawl begins with. `Err` only with the refusal ([`ClientError::KeyRefused`]);
    /// any other failure says nothing about the key and counts as accepted.
    pub async fn probe_key(&self) -> Result<(), ClientError> {
        let read = self
            .get_with_query(
                &["organization", "projects"],
                &[("limit", "1".to_owned())],
                Queue::Front,
                AnswerBound::Page {
                    objects: 1,
                    of: "the project list",
                },
            )
            .await;
        match read {
            Err(refused @ ClientError::KeyRefused { .. }) => Err(refused),
            _ => Ok(()),
        }
    }

    /// One GET of `segments` under the base URL with `query`; `explain` reads a 400 or 403
    /// for its reason (see [`AdminClient::get_explained`]).
    async fn get_segments(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        explain: bool,
        queue: Queue,
        bound: AnswerBound,
    ) -> Result<Value, ClientError> {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        let shown = format!("/{}", segments.join("/"));
        let body = self.get_body(&shown, &url, query, explain, queue).await?;
        self.parse_json(&shown, body, bound).await
    }

    /// A 200's body as JSON, unless it holds more values or nests deeper than `bound`
    /// allows: then it is refused unparsed (see [`parse_json`]).
    async fn parse_json(
        &self,
        shown: &str,
        body: Answer,
        bound: AnswerBound,
    ) -> Result<Value, ClientError> {
        parse_json(shown, body, bound, self.opts.max_response_bytes.as_bytes()).await
    }

    /// The body of one GET, retried on 429, 5xx and connection errors; a retry goes to the
    /// front of the line, having waited once already. Past the crawl's deadline it is not
    /// sent, and one still waiting or in flight then is given up.
    async fn get_body(
        &self,
        shown: &str,
        url: &Url,
        query: &[(&str, String)],
        explained: bool,
        queue: Queue,
    ) -> Result<Answer, ClientError> {
        let deadline = *self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (Some(deadline), Some(limit)) = (deadline, self.opts.snapshot_timeout) else {
            return self
                .get_body_retried(shown, url, query, explained, queue)
                .await;
        };
        let out_of_time = || ClientError::OutOfTime {
            path: shown.to_owned(),
            limit,
        };
        // The clock is looked at before the read is polled, first and every time: polled
        // first (as `timeout_at` does), a read woken at the deadline by the gate slot another
        // read just gave up would take it and put its request on the wire, only to be
        // dropped, and so on down the line.
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(deadline) => Err(out_of_time()),
            read = self.get_body_retried(shown, url, query, explained, queue) => read,
        }
    }

    /// [`AdminClient::get_body`] with no deadline but each request's own.
    async fn get_body_retried(
        &self,
        shown: &str,
        url: &Url,
        query: &[(&str, String)],
        explained: bool,
        queue: Queue,
    ) -> Result<Answer, ClientError> {
        let mut failures = 0u32;
        let mut limited = 0u32;
        let mut crowded = false;
        // Taken before the request is sent again after a large answer found no place, so
        // that its answer is read on it from the first byte.
        let mut place: Option<Place> = None;
        // Set should the places ever be closed: the answer is then read without one.
        let mut unplaced = false;
        loop {
            let queue = if failures + limited > 0 || crowded {
                Queue::Front
            } else {
                queue
            };
            let room = Room {
                large: (!unplaced).then_some(&self.large_answers),
                place: place.take(),
            };
            match self
                .attempt(shown, url, query, explained, queue, room)
                .await
            {
                Attempt::Body(body) => return Ok(body),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Crowded => {
                    crowded = true;
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        path = shown,
                        "a large answer found every place taken; asking again once one is free"
                    );
                    place = self.large_answers.take().await;
                    unplaced = place.is_none();
                }
                Attempt::Retry {
                    error,
                    retry_after,
                    rate_limited,
                } => {
                    let wait = if rate_limited {
                        limited += 1;
                        if limited > MAX_RATE_LIMITED_RETRIES {
                            return Err(error);
                        }
                        // Only this request waits out Retry-After; the others go on at the
                        // pace the gate has just lowered. Without the header, back off.
                        retry_after.unwrap_or_else(|| full_jitter(limited))
                    } else {
                        failures += 1;
                        if failures > self.opts.max_retries {
                            return Err(error);
                        }
                        retry_after.unwrap_or_else(|| full_jitter(failures))
                    };
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        path = shown,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "retrying: {error}"
                    );
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }

    /// One request through the gate, its answer read in `room` if it is large.
    async fn attempt(
        &self,
        shown: &str,
        url: &Url,
        query: &[(&str, String)],
        explained: bool,
        queue: Queue,
        room: Room<'_>,
    ) -> Attempt {
        let (mut permit, _) = self.gate.acquire(queue).await;
        // Boxed, so that a request waiting at the gate is a small future rather than the
        // size of a whole exchange: a large crawl has thousands waiting at once.
        Box::pin(self.exchange(shown, url, query, explained, &mut permit, room)).await
    }

    /// One request on the wire, released by the gate with `permit`, and its answer.
    async fn exchange(
        &self,
        shown: &str,
        url: &Url,
        query: &[(&str, String)],
        explained: bool,
        permit: &mut Permit,
        room: Room<'_>,
    ) -> Attempt {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut auth = match HeaderValue::from_str(&format!("Bearer {}", self.key.expose_secret()))
        {
            Ok(value) => value,
            Err(_) => return Attempt::Fatal(ClientError::KeyNotAscii),
        };
        // Keeps the header out of hyper's and h2's debug output.
        auth.set_sensitive(true);
        tracing::trace!(path = shown, "GET");
        let response = self
            .http
            .get(url.clone())
            .header(AUTHORIZATION, auth)
            .query(query)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                self.observe(None);
                return transport_failure(shown, &e);
            }
        };
        let status = response.status();
        self.observe(Some(status.as_u16()));
        if !status.is_success() && status != StatusCode::TOO_MANY_REQUESTS {
            permit.other_answer(Instant::now());
        }
        let retry_after = retry_after(response.headers());
        if explained && (status == StatusCode::BAD_REQUEST || status == StatusCode::FORBIDDEN) {
            let (message, code) = self.error_detail(response).await;
            return Attempt::Fatal(ClientError::Explained {
                path: shown.to_owned(),
                status: status.as_u16(),
                code,
                message,
            });
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            // The body is not read: a real API may quote part of the refused key.
            return Attempt::Fatal(self.key_refused(status.as_u16(), shown));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            let message = self.error_message(response).await;
            if let Some(wait) = retry_after
                && wait > MAX_RETRY_AFTER
            {
                return Attempt::Fatal(ClientError::Status {
                    path: shown.to_owned(),
                    status: 429,
                    message: format!(
                        "rate limited, and the server asks to wait {} s (more than {} s): {message}",
                        wait.as_secs(),
                        MAX_RETRY_AFTER.as_secs()
                    ),
                });
            }
            permit.rate_limited(Instant::now());
            return Attempt::Retry {
                error: ClientError::Status {
                    path: shown.to_owned(),
                    status: 429,
                    message: format!("rate limited {MAX_RATE_LIMITED_RETRIES} times: {message}"),
                },
                retry_after,
                rate_limited: true,
            };
        }
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            let message = self.error_message(response).await;
            return Attempt::Retry {
                error: ClientError::Status {
                    path: shown.to_owned(),
                    status: status.as_u16(),
                    message: format!("{message} (after {} retries)", self.opts.max_retries),
                },
                retry_after: retry_after.filter(|w| *w <= MAX_RETRY_AFTER),
                rate_limited: false,
            };
        }
        if status.is_redirection() {
            // Where it points is the server's text: cut short, and shown inert at the edge.
            let to: String = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| {
                    String::from_utf8_lossy(l.as_bytes())
                        .chars()
                        .take(200)
                        .collect()
                })
                .unwrap_or_else(|| "nowhere named".to_owned());
            return Attempt::Fatal(ClientError::Status {
                path: shown.to_owned(),
                status: status.as_u16(),
                message: format!(
                    "redirected to {to}; the Admin API does not redirect, so orgwarden does not \
                     follow (if the API has moved, set `[openai] base_url`)"
                ),
            });
        }
        if !status.is_success() {
            let message = self.error_message(response).await;
            return Attempt::Fatal(ClientError::Status {
                path: shown.to_owned(),
                status: status.as_u16(),
                message,
            });
        }
        self.success_body(shown, response, permit, room).await
    }

    /// Reads a 200's body, at most `max_response_bytes` of it.
    async fn success_body(
        &self,
        shown: &str,
        response: reqwest::Response,
        permit: &mut Permit,
        room: Room<'_>,
    ) -> Attempt {
        let limits = rate_headers(response.headers());
        let limit = self.opts.max_response_bytes;
        let too_large = |what: String| {
            Attempt::Fatal(ClientError::TooLarge {
                path: shown.to_owned(),
                message: format!(
                    "{what}, more than `[openai] max_response_bytes` ({limit}); not read"
                ),
            })
        };
        // Refused before a byte of the body is read when the server says how large it is.
        if let Some(declared) = response.content_length()
            && declared > limit.as_bytes()
        {
            return too_large(format!("the answer is {declared} bytes"));
        }
        let cap = usize::try_from(limit.as_bytes()).unwrap_or(usize::MAX);
        match read_capped(response, cap, room.large, room.place).await {
            Ok(Capped::Whole(body)) => {
                permit.success(Instant::now(), limits);
                Attempt::Body(body)
            }
            // The server took and answered the request: for the pace, a success.
            Ok(Capped::Crowded) => {
                permit.success(Instant::now(), limits);
                Attempt::Crowded
            }
            Ok(Capped::Cut(_)) => too_large("the answer goes on past its limit".into()),
            // A body cut off by the connection is a transport failure, worth a retry.
            Err(e) => Attempt::Retry {
                error: ClientError::Transport {
                    path: shown.to_owned(),
                    message: transport_message(&e),
                },
                retry_after: None,
                rate_limited: false,
            },
        }
    }

    /// The API's `error.message`, else the start of the body. Only the first
    /// [`ERROR_BODY_LIMIT`] bytes are read, and every registered secret is scrubbed from them
    /// before any of it is cut or kept.
    async fn error_message(&self, response: reqwest::Response) -> String {
        self.error_detail(response).await.0
    }

    /// [`AdminClient::error_message`] and the API's `error.code` (scrubbed the same way).
    async fn error_detail(&self, response: reqwest::Response) -> (String, Option<String>) {
        let status = response.status();
        let body = match read_capped(response, ERROR_BODY_LIMIT, None, None).await {
            Ok(Capped::Whole(Answer { bytes, .. }) | Capped::Cut(bytes)) => bytes,
            Ok(Capped::Crowded) | Err(_) => Vec::new(),
        };
        let body = crate::secrets::scrub(&String::from_utf8_lossy(&body)).into_owned();
        let parsed = serde_json::from_str::<Value>(&body).ok();
        let code = parsed
            .as_ref()
            .and_then(|v| v.pointer("/error/code")?.as_str())
            .map(|c| {
                crate::secrets::scrub(c)
                    .chars()
                    .take(100)
                    .collect::<String>()
            });
        let message = parsed
            .as_ref()
            .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                let text: String = body.trim().chars().take(200).collect();
                if text.trim().is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    text
                }
            });
        // JSON escapes can spell a secret the raw body did not: scrub what was decoded too.
        (crate::secrets::scrub(&message).into_owned(), code)
    }
}

/// One list page as the crawl uses it: its objects and the cursor of the next page.
#[derive(Debug)]
struct ListPage {
    /// The page's `data`.
    data: Vec<Value>,
    /// Where the next page starts; `None` on the last page.
    next: Option<String>,
}

/// Reads one page of a list of `family` in `envelope`'s shape: an object with a `data` array,
/// a boolean `has_more` and, when it is true, the next cursor (`last_id`, or the last
/// object's id, for shape A; `next` for shape B). Every error names `shown`, the page's path.
fn parse_list_page(
    page: Value,
    family: Family,
    envelope: Envelope,
    shown: &str,
) -> Result<ListPage, ClientError> {
    let malformed = |message: String| ClientError::Malformed {
        path: shown.to_owned(),
        message,
    };
    let Value::Object(mut page) = page else {
        return Err(malformed(format!(
            "expected a list object, got {}",
            kind(&page)
        )));
    };
    let data = match page.remove("data") {
        Some(Value::Array(data)) => data,
        Some(other) => {
            return Err(malformed(format!(
                "`data` is {}, not an array",
                kind(&other)
            )));
        }
        None => return Err(malformed("no `data` array".into())),
    };
    let has_more = match page.get("has_more") {
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(malformed(format!(
                "`has_more` is {}, not a boolean",
                kind(other)
            )));
        }
        None => return Err(malformed("no `has_more`".into())),
    };
    if !has_more {
        return Ok(ListPage { data, next: None });
    }
    let next = match envelope {
        // Shape A: the next page starts after `last_id`; when a list omits it (it is
        // optional in several schemas), the last object's id is the same. The admin-key
        // list is the exception: OpenAI's own SDK pages it by the last object's id and
        // never reads its `last_id`, so that id is what the API is known to accept there.
        Envelope::FirstLastId => {
            let last_object_id = || {
                let field = family.id_field()?;
                data.last()?.get(field)?.as_str().map(str::to_owned)
            };
            let last_id = || {
                page.get("last_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            if family == Family::OrgAdminApiKeys {
                last_object_id().or_else(last_id)
            } else {
                last_id().or_else(last_object_id)
            }
            .ok_or_else(|| malformed("`has_more` is true but no `last_id`".into()))?
        }
        // Shape B: `next` is opaque and goes back verbatim.
        _ => page
            .get("next")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| malformed("`has_more` is true but no `next`".into()))?,
    };
    Ok(ListPage {
        data,
        next: Some(next),
    })
}

/// How many objects a list page's `data` holds, counted without building them: a page of
/// 100,000 objects where 100 were asked is refused before it costs ten times its size in
/// memory. `None` when the body is not a list page; the full parse then says what is wrong.
fn page_length(body: &[u8]) -> Option<usize> {
    use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};

    struct Count(usize);
    impl<'de> serde::Deserialize<'de> for Count {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
            struct Counter;
            impl<'de> Visitor<'de> for Counter {
                type Value = Count;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an array")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
            }
            d.deserialize_seq(Counter)
        }
    }
    #[derive(serde::Deserialize)]
    struct Page {
        data: Count,
    }
    serde_json::from_slice::<Page>(body).ok().map(|p| p.data.0)
}

/// Bodies at least this large are parsed on a blocking thread (see [`parse_json`]).
const PARSE_OFF_WORKER: usize = 256 * 1024;

/// A 200's body as JSON, a large one parsed off the async workers: a month of costs for
/// 200 projects is 3.6 MB, and parsed on a worker it held every paced start behind it
/// for 11-20 ms, after which they left in a clump a shallow bucket refused (traced at
/// 200 ms x 500/s with a burst of one).
///
/// Its values are counted first, in one pass that builds nothing, and a body holding more
/// than `bound` allows (`max_response_bytes` being the largest answer read) is refused
/// unparsed ([`ClientError::TooManyValues`]), on the same thread the parse would have
/// taken: counting costs a fifteenth of parsing (80 ms for 32 MiB of dense zeros, whose
/// parse takes 1.3 s and 1.2 GB; 8 ms for a 4 MB page of costs).
///
/// A large answer keeps its place among the client's large answers until its parse is
/// done: it is `body`, dropped here.
async fn parse_json(
    shown: &str,
    body: Answer,
    bound: AnswerBound,
    max_response_bytes: u64,
) -> Result<Value, ClientError> {
    if body.bytes.len() < PARSE_OFF_WORKER {
        return parse_bounded(shown, &body.bytes, bound, max_response_bytes);
    }
    let path = shown.to_owned();
    off_the_workers(shown, move || {
        parse_bounded(&path, &body.bytes, bound, max_response_bytes)
    })
    .await
}

/// [`parse_body`], unless `body` holds more values or nests deeper than `bound` allows.
fn parse_bounded(
    shown: &str,
    body: &[u8],
    bound: AnswerBound,
    max_response_bytes: u64,
) -> Result<Value, ClientError> {
    let found = shape::shape(body);
    tracing::trace!(
        path = shown,
        bytes = body.len(),
        values = found.values,
        depth = found.depth,
        "answer counted"
    );
    if let Some(message) = bound.refuse(found, max_response_bytes) {
        return Err(ClientError::TooManyValues {
            path: shown.to_owned(),
            message,
        });
    }
    parse_body(shown, body)
}

/// Runs `work` (reading a large answer) on a blocking thread, so that it never holds the
/// async workers that release paced requests; `shown` names the request if the thread
/// fails.
pub(crate) async fn off_the_workers<T: Send + 'static>(
    shown: &str,
    work: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ClientError::Malformed {
            path: shown.to_owned(),
            message: format!("the parser stopped: {e}"),
        })
    })
}

/// A 200's body as JSON; `shown` names the request in the error.
fn parse_body(shown: &str, body: &[u8]) -> Result<Value, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Malformed {
        path: shown.to_owned(),
        message: format!("invalid JSON ({e}) in a {} byte body", body.len()),
    })
}

/// How long the server asks us to wait: OpenAI's `retry-after-ms` when present (what the
/// official SDKs read first), else `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let amount = |text: &str, per_second: f64| {
        let n = text
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)?;
        // A wait too long for a `Duration` (`1e30`) is still an answer: longer than any
        // wait we accept, which the callers turn into a failed read, not a panic.
        Some(Duration::try_from_secs_f64(n / per_second).unwrap_or(Duration::MAX))
    };
    if let Some(wait) = header("retry-after-ms").and_then(|ms| amount(ms, 1000.0)) {
        return Some(wait);
    }
    let value = header(RETRY_AFTER.as_str())?;
    amount(value, 1.0).or_else(|| {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
        Some(wait.to_std().unwrap_or(Duration::ZERO))
    })
}

/// What a request that got no answer leads to: a retry, unless no retry can help.
fn transport_failure(shown: &str, e: &reqwest::Error) -> Attempt {
    let error = ClientError::Transport {
        path: shown.to_owned(),
        message: transport_message(e),
    };
    // A certificate this machine does not trust is not trusted a second later, nor are
    // credentials a proxy refused: retrying only repeats the refusal, with a backoff, for
    // every scope.
    if certificate_refused(e) || crate::proxy::credentials_refused(&error.to_string()) {
        return Attempt::Fatal(error);
    }
    Attempt::Retry {
        error,
        retry_after: None,
        rate_limited: false,
    }
}

/// Whether TLS refused the server's certificate (rustls: "invalid peer certificate: …"),
/// which no retry changes.
fn certificate_refused(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.to_string().contains("invalid peer certificate") {
            return true;
        }
        source = s.source();
    }
    false
}

fn transport_message(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response body was cut off"
    } else {
        "request failed"
    };
    let mut message = what.to_owned();
    // The path is in the error already; the host is not, and a DNS failure or a refused
    // connection says nothing of which one it was (the base URL holds no secret: one with
    // credentials is refused when the configuration is read).
    if e.is_connect()
        && let Some(url) = e.url()
        && let Some(host) = url.host_str()
    {
        message.push_str(&format!(" to {host}"));
        if let Some(port) = url.port_or_known_default() {
            message.push_str(&format!(":{port}"));
        }
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // hyper's and the OS's errors often quote their own cause: each text once.
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    // The HTTP stack's words for a proxy's failures name neither the proxy nor what to
    // check, and a refused connection to the proxy reads as one to the API.
    if let Some(url) = e.url()
        && let Some(proxy) = crate::proxy::explain(&message, url, true)
    {
        message.push_str(&format!(" ({proxy})"));
    }
    // rustls's words for a first answer that is not TLS at all, which is what an https URL
    // to a plain-http server (a simulator, a local gateway) gets.
    if message.contains("InvalidContentType") {
        message.push_str(
            " (the server did not answer in TLS: if it serves plain http, name it with \
             http://, which is allowed towards a loopback address only)",
        );
    }
    if let Some(hint) = crate::trust::untrusted_hint(&message) {
        message.push_str(&format!(" ({hint})"));
    }
    message
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Exponential backoff with full jitter: a uniform wait in `0..min(cap, base·2^(n-1))`.
fn full_jitter(attempt: u32) -> Duration {
    let step = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    step.mul_f64(rand::random::<f64>())
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A list page of `items` objects, as a body.
    fn page_body(items: usize) -> Vec<u8> {
        let data: Vec<Value> = (0..items)
            .map(|i| serde_json::json!({"id": format!("obj_{i}"), "name": "x".repeat(40)}))
            .collect();
        serde_json::to_vec(&serde_json::json!({"object": "list", "data": data, "has_more": false}))
            .unwrap()
    }

    // On a runtime of one thread, a body parsed in place finishes before any other task is
    // polled; parsed on a blocking thread, the task waiting for it yields and the other
    // runs first. A 4 MB parse does not finish between the spawn and the first poll.
    #[tokio::test(flavor = "current_thread")]
    async fn a_large_body_is_parsed_off_the_runtime_so_other_tasks_go_on() {
        let body = page_body(60_000);
        assert!(body.len() > 3 << 20, "{}", body.len());
        let ran = Arc::new(AtomicBool::new(false));
        let other = tokio::spawn({
            let ran = Arc::clone(&ran);
            async move { ran.store(true, Ordering::SeqCst) }
        });
        let parsed = parse_json(
            "/organization/costs",
            body.into(),
            AnswerBound::Costs,
            32 << 20,
        )
        .await
        .unwrap();
        assert!(ran.load(Ordering::SeqCst), "the parse held the runtime");
        assert_eq!(parsed["data"].as_array().map(Vec::len), Some(60_000));
        other.await.unwrap();
    }

    /// Eight 2 MiB answers sent together, two places: the answers that find both taken
    /// are dropped and asked for again holding one, and every read returns its answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_answers_finding_every_place_taken_are_asked_for_again_and_read() {
        let answer =
            axum::body::Bytes::from(format!(r#"{{"object":"x","p":"{}"}}"#, " ".repeat(2 << 20)));
        let app = axum::Router::new().fallback(move || {
            let answer = answer.clone();
            async move {
                // Held back, so that the eight answers arrive together.
                tokio::time::sleep(Duration::from_millis(300)).await;
                ([("content-type", "application/json")], answer)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let opts = ClientOptions {
            concurrency: 8,
            adaptive: false,
            max_retries: 0,
            ..ClientOptions::default()
        };
        let key = "sk-admin-crowded".to_owned().into();
        let client = AdminClient::new(&format!("http://{addr}/v1"), key, opts).unwrap();
        let reads = (0..8).map(|_| {
            client.get_with_query(
                &["organization", "x"],
                &[],
                Queue::Back,
                AnswerBound::Object,
            )
        });
        for answer in futures::future::join_all(reads).await {
            assert_eq!(answer.unwrap()["p"].as_str().map(str::len), Some(2 << 20));
        }
        let stats = client.stats();
        assert!(stats.retries > 0, "no answer found the places taken");
        // Asked for again holding a place, an answer is never crowded out twice: at most
        // the six that did not get one of the two places the first time.
        assert!(
            stats.retries <= 6,
            "{} answers asked for again",
            stats.retries
        );
        assert_eq!(stats.requests, 8 + stats.retries);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_large_body_reads_as_a_small_one_does_malformed_or_not() {
        let small = page_body(3);
        assert!(small.len() < PARSE_OFF_WORKER);
        let large = page_body(20_000);
        assert!(large.len() >= PARSE_OFF_WORKER);
        for body in [small, large] {
            let expected = parse_body("/p", &body).unwrap();
            assert_eq!(
                parse_json("/p", body.clone().into(), AnswerBound::Costs, 32 << 20)
                    .await
                    .unwrap(),
                expected
            );
            let cut = body[..body.len() - 1].to_vec();
            let ClientError::Malformed { path, message } =
                parse_json("/p", cut.clone().into(), AnswerBound::Costs, 32 << 20)
                    .await
                    .unwrap_err()
            else {
                panic!("not a malformed-body error");
            };
            assert_eq!(path, "/p");
            assert!(
                message.contains(&format!("in a {} byte body", cut.len())),
                "{message}"
            );
        }
    }

    mod list_page_properties {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, nested a few levels.
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                "\\PC{0,12}".prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// A page-like object: each of the keys a list page has, present or not, holding
        /// anything (often what it should hold).
        fn page() -> impl Strategy<Value = Value> {
            let data = prop_oneof![
                prop::collection::vec(
                    prop_oneof![
                        "[a-z_0-9]{0,6}".prop_map(|id| serde_json::json!({ "id": id })),
                        json(),
                    ],
                    0..5
                )
                .prop_map(Value::Array),
                json(),
            ];
            let has_more = prop_oneof![any::<bool>().prop_map(Value::Bool), json()];
            let cursor = prop_oneof!["[a-z_0-9]{0,6}".prop_map(Value::String), json()];
            (
                prop::option::of(data),
                prop::option::of(has_more),
                prop::option::of(cursor.clone()),
                prop::option::of(cursor),
            )
                .prop_map(|(data, has_more, last_id, next)| {
                    let mut page = serde_json::Map::new();
                    for (key, value) in [
                        ("data", data),
                        ("has_more", has_more),
                        ("last_id", last_id),
                        ("next", next),
                    ] {
                        if let Some(value) = value {
                            page.insert(key.to_owned(), value);
                        }
                    }
                    Value::Object(page)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// No page panics the parser; a refused one is `Malformed` at the page's path; an
            /// accepted one gives back its `data` and a cursor exactly when `has_more` is true.
            #[test]
            fn any_list_page_is_read_or_refused_naming_its_path(
                page in prop_oneof![page(), json()],
                envelope in prop_oneof![Just(Envelope::FirstLastId), Just(Envelope::NextCursor)],
            ) {
                let shown = "/organization/projects/proj_1/users?after=user_9";
                let bytes = serde_json::to_vec(&page).unwrap();
                let counted = page_length(&bytes);
                match parse_list_page(page.clone(), Family::ProjectUsers, envelope, shown) {
                    Ok(ListPage { data, next }) => {
                        prop_assert_eq!(Some(&Value::Array(data.clone())), page.get("data"));
                        prop_assert_eq!(counted, Some(data.len()));
                        let more = page.get("has_more") == Some(&Value::Bool(true));
                        prop_assert_eq!(next.is_some(), more);
                    }
                    Err(e) => {
                        let is_malformed = matches!(
                            &e,
                            ClientError::Malformed { path, .. } if path == shown
                        );
                        prop_assert!(is_malformed, "{e:?}");
                        prop_assert!(e.to_string().contains(shown), "{e}");
                    }
                }
            }

            /// Counting a page's objects never panics on any bytes.
            #[test]
            fn any_body_is_counted_or_not_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let _ = page_length(&bytes);
            }
        }
    }

    #[test]
    fn the_admin_key_list_pages_after_its_last_key_as_openais_sdk_does_other_lists_after_last_id() {
        // The spec's own example: a `last_id` that is not the last object's id.
        let page = serde_json::json!({"object": "list", "data": [{"id": "key_abc"}],
            "first_id": "key_abc", "last_id": "key_xyz", "has_more": true});
        let next = |family| {
            parse_list_page(page.clone(), family, Envelope::FirstLastId, "/x")
                .unwrap()
                .next
        };
        assert_eq!(next(Family::OrgAdminApiKeys).as_deref(), Some("key_abc"));
        assert_eq!(next(Family::OrgUsers).as_deref(), Some("key_xyz"));
        // Without objects, the admin-key list still follows `last_id`.
        let empty = serde_json::json!({"data": [], "last_id": "key_xyz", "has_more": true});
        let read = parse_list_page(empty, Family::OrgAdminApiKeys, Envelope::FirstLastId, "/x");
        assert_eq!(read.unwrap().next.as_deref(), Some("key_xyz"));
    }

    #[test]
    fn http_base_url_is_refused_unless_loopback() {
        for ok in [
            "https://api.openai.com/v1",
            "http://127.0.0.1:8080/v1",
            "http://127.1.2.3/v1",
            "http://[::1]:9/v1",
            "http://localhost:1/v1",
        ] {
            assert!(check_base_url(ok).is_ok(), "{ok}");
        }
        let err = check_base_url("http://api.example.com/v1").expect_err("plain http");
        assert!(err.to_string().contains("non-loopback"), "{err}");
        assert!(check_base_url("http://10.0.0.1/v1").is_err());
        assert!(check_base_url("ftp://127.0.0.1/v1").is_err());
        assert!(check_base_url("not a url").is_err());
    }

    #[test]
    fn a_base_url_carrying_a_credential_is_refused_without_showing_it() {
        for url in [
            "https://proxyuser:CANARYPW@gateway.example/v1",
            "https://gateway.example/v1?token=CANARYTOK",
            "https://u:CANARYPW@gateway.example/v1?x=CANARYTOK",
            // Unencoded, these end the authority for the URL parser, which then refuses
            // the "port": the message must still not show the password.
            "https://u:CANARY/PW@gateway.example/v1",
            "https://u:CANARY#PW@gateway.example/v1",
            "https://u:CANARY?PW@gateway.example/v1",
        ] {
            let err = check_base_url(url).expect_err(url).to_string();
            assert!(!err.contains("CANARY"), "{err}");
            assert!(err.contains("gateway.example/v1"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_snapshot_timeout_past_what_the_clock_can_count_is_no_limit() {
        // The grammar takes up to u64::MAX seconds; added to now, that overflowed and
        // panicked the snapshot at its start.
        let deadline_set = |limit: crate::duration::Duration| {
            let client = AdminClient::new(
                "http://127.0.0.1:1/v1",
                SecretString::from("sk-test"),
                ClientOptions {
                    snapshot_timeout: Some(limit),
                    ..ClientOptions::default()
                },
            )
            .expect("client");
            client.start_crawl(None);
            client
                .deadline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some()
        };
        assert!(!deadline_set(crate::duration::Duration::from_secs(
            u64::MAX
        )));
        assert!(deadline_set(crate::duration::Duration::from_secs(
            365 * 86_400
        )));
    }

    #[test]
    fn key_is_absent_from_debug() {
        let client = AdminClient::new(
            "http://127.0.0.1:1/v1",
            SecretString::from("sk-admin-SECRET-canary-123"),
            ClientOptions::default(),
        )
        .expect("client");
        let shown = format!("{client:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn an_id_from_an_answer_cannot_reshape_the_request_path() {
        let client = AdminClient::new(
            "http://127.0.0.1:1/v1/",
            SecretString::from("sk-test"),
            ClientOptions::default(),
        )
        .expect("client");
        let scope = Scope {
            family: Family::ProjectUserRoles,
            project_id: Some(crate::model::ProjectId::from("proj_a")),
            parent_id: Some("../../admin?x=1".into()),
        };
        assert_eq!(
            client.scope_url(&scope).as_str(),
            "http://127.0.0.1:1/v1/projects/proj_a/users/..%2F..%2Fadmin%3Fx=1/roles"
        );
    }

    #[test]
    fn key_file_is_trimmed_and_resolved_beside_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("key"), "sk-admin-abc\n").expect("write");
        let cfg = OpenAiConfig {
            admin_key_file: Some(PathBuf::from("key")),
            ..OpenAiConfig::default()
        };
        let key = load_admin_key_from(None, &cfg, Some(dir.path())).expect("key");
        assert_eq!(key.expose_secret(), "sk-admin-abc");

        std::fs::write(dir.path().join("key"), "\n").expect("write");
        let err = load_admin_key_from(None, &cfg, Some(dir.path())).expect_err("empty");
        assert!(err.to_string().contains("is empty"), "{err}");

        let env = load_admin_key_from(Some("sk-env".into()), &cfg, Some(dir.path())).expect("env");
        assert_eq!(env.expose_secret(), "sk-env");
    }

    #[test]
    fn missing_key_says_where_to_put_one() {
        let err = load_admin_key_from(None, &OpenAiConfig::default(), None).expect_err("none");
        assert!(err.to_string().contains(ADMIN_KEY_ENV), "{err}");
        let err = load_admin_key_from(Some(" ".into()), &OpenAiConfig::default(), None)
            .expect_err("blank");
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn retry_after_reads_milliseconds_seconds_and_http_dates() {
        use reqwest::header::HeaderMap;
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = HeaderMap::new();
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&soon).expect("header"));
        let wait = retry_after(&h).expect("a date");
        assert!(
            wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a date past is no wait"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn an_absurd_retry_after_is_longer_than_the_max_wait_not_a_panic() {
        use reqwest::header::HeaderMap;
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("1e30"));
        let wait = retry_after(&h).expect("a wait");
        assert!(wait > MAX_RETRY_AFTER, "{wait:?}");
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", HeaderValue::from_static("1e300"));
        let wait = retry_after(&h).expect("a wait");
        assert!(wait > MAX_RETRY_AFTER, "{wait:?}");
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
    }

    #[test]
    fn a_page_is_counted_without_reading_its_objects_and_a_non_page_is_not_counted() {
        let page =
            br#"{"object":"list","data":[{"id":"a","x":[1,2]},{"id":"b"},3],"has_more":false}"#;
        assert_eq!(page_length(page), Some(3));
        assert_eq!(page_length(br#"{"data":[]}"#), Some(0));
        assert_eq!(page_length(br#"{"data":{"id":"a"}}"#), None);
        assert_eq!(page_length(br#"{"object":"list"}"#), None);
        assert_eq!(page_length(b"[1,2"), None);
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 1..40 {
            assert!(full_jitter(attempt) <= BACKOFF_CAP);
        }
        assert!(full_jitter(1) <= BACKOFF_BASE);
    }

    #[test]
    fn a_rate_limit_is_whole_requests_per_minute_and_never_zero() {
        assert_eq!(RequestsPerMinute::new(0), None);
        assert_eq!(
            RequestsPerMinute::from_per_second(499.6).map(RequestsPerMinute::get),
            Some(29_976)
        );
        assert_eq!(RequestsPerMinute::from_per_second(0.001), None);
        assert_eq!(RequestsPerMinute::from_per_second(f64::NAN), None);
        let limit = RequestsPerMinute::new(30_000).expect("positive");
        assert!((limit.per_second() - 500.0).abs() < 1e-9);
        assert_eq!(limit.to_string(), "30000/min");
    }

    #[test]
    fn concurrency_in_the_config_fixes_it_and_max_concurrency_caps_the_adaptive_one() {
        let adaptive = ClientOptions::from_config(&OpenAiConfig::default());
        assert_eq!(
            (adaptive.concurrency, adaptive.adaptive),
            (DEFAULT_MAX_CONCURRENCY, true)
        );
        let capped = ClientOptions::from_config(&OpenAiConfig {
            max_concurrency: Some(16),
            ..OpenAiConfig::default()
        });
        assert_eq!((capped.concurrency, capped.adaptive), (16, true));
        let fixed = ClientOptions::from_config(&OpenAiConfig {
            concurrency: Some(8),
            max_concurrency: Some(16),
            ..OpenAiConfig::default()
        });
        assert_eq!((fixed.concurrency, fixed.adaptive), (8, false));
    }

    #[test]
    fn a_refused_key_is_named_by_the_kind_its_prefix_shows() {
        let reason = |key: &str| super::refused_key_reason(super::non_admin_prefix(key));
        assert!(
            reason("sk-proj-abc").contains("a project or service-account API key"),
            "{}",
            reason("sk-proj-abc")
        );
        assert!(reason("sk-svcacct-abc").contains("a project or service-account API key"));
        // A user key is neither a project's nor a service account's.
        let user = reason("sk-None-abc");
        assert!(user.contains("so it is a user API key"), "{user}");
        assert!(!user.contains("service-account"), "{user}");
        assert_eq!(
            reason("sk-admin-revoked"),
            "it is wrong, revoked, or not an admin key"
        );
    }
}
