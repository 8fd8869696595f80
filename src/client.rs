//! The Admin API client: Bearer auth with a key that never leaves a `SecretString`,
//! both list envelopes followed to the end, retries with backoff that honour
//! `Retry-After`, and a shared gate that bounds, paces and adapts the requests in flight.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Notify;
use url::Url;

use crate::config::OpenAiConfig;
use crate::model::{CrawlStats, Envelope, Family, Scope};

/// The environment variable the admin key is read from.
pub const ADMIN_KEY_ENV: &str = "OPENAI_ADMIN_KEY";

/// The longest `Retry-After` the client waits for; a server asking for more fails the read
/// instead of stalling the whole crawl (the official SDKs draw the same line).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// How many 429 answers one request may receive before its read fails. A 429 is the
/// server pacing us, not a fault, so it has its own budget apart from `max_retries`.
const MAX_RATE_LIMITED_RETRIES: u32 = 12;
/// First backoff step and ceiling (full jitter: a random wait in `0..step`).
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(8);

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
    /// 401 or 403: the key is wrong, revoked, or not an admin key.
    #[error(
        "the Admin API refused the admin key (HTTP {status} on GET {path}): \
         it is wrong, revoked, or not an admin key"
    )]
    KeyRefused {
        /// 401 or 403.
        status: u16,
        /// The path that answered.
        path: String,
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
    /// No answer: connection refused, reset, or timed out (after retries).
    #[error("GET {path}: {message}")]
    Transport {
        /// The path.
        path: String,
        /// What failed.
        message: String,
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
            ClientError::KeyRefused { status, .. } | ClientError::Status { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

/// Reads the admin key: `OPENAI_ADMIN_KEY` when set, else `[openai] admin_key_file`
/// (relative to `config_dir`, the configuration file's folder). Surrounding whitespace,
/// such as the trailing newline editors add, is trimmed; an empty key is an error.
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
    let text = std::fs::read_to_string(&path).map_err(|source| ClientError::KeyFile {
        path: path.clone(),
        source,
    })?;
    non_empty(text, path.display().to_string())
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
    /// The most requests in flight; the adaptive limit never goes above it.
    pub concurrency: usize,
    /// Retries of a request after a 5xx, 408 or a connection error or timeout.
    pub max_retries: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            concurrency: 8,
            max_retries: 4,
        }
    }
}

impl ClientOptions {
    /// The options `[openai]` asks for.
    pub fn from_config(cfg: &OpenAiConfig) -> Self {
        Self {
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
            concurrency: cfg.concurrency.max(1),
            ..Self::default()
        }
    }
}

/// Checks that `base_url` is usable: HTTPS, or plain HTTP to a loopback host only
/// (a simulator on this machine), so the admin key never crosses a network in clear.
pub fn check_base_url(base_url: &str) -> Result<Url, ClientError> {
    let bad = |reason: &str| ClientError::BaseUrl {
        url: base_url.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(base_url).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if url.cannot_be_a_base() {
        return Err(bad("not a base URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
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

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// An authenticated Admin API client, cheap to share by reference among concurrent reads.
pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    key: SecretString,
    opts: ClientOptions,
    gate: Arc<Gate>,
    counters: Counters,
    observer: Option<ResponseObserver>,
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

/// What one HTTP attempt gave.
enum Attempt {
    Body(Vec<u8>),
    Retry {
        error: ClientError,
        retry_after: Option<Duration>,
        rate_limited: bool,
    },
    Fatal(ClientError),
}

impl AdminClient {
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
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("orgwarden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let concurrency = opts.concurrency.max(1);
        Ok(Self {
            http,
            base,
            key,
            gate: Arc::new(Gate::new(concurrency)),
            opts,
            counters: Counters::default(),
            observer: None,
        })
    }

    /// The same client, reporting every answer's status to `observer`.
    pub fn with_observer(mut self, observer: ResponseObserver) -> Self {
        self.observer = Some(observer);
        self
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
        }
    }

    /// The configured most requests in flight.
    pub fn max_in_flight(&self) -> usize {
        self.gate.max
    }

    /// Reads one whole scope: every page of a list, or the one object of a single read.
    pub async fn read_scope(&self, scope: &Scope) -> Result<Vec<Value>, ClientError> {
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
                Ok(vec![value])
            }
            envelope => self.read_list(family, envelope, &path, &url).await,
        }
    }

    async fn read_list(
        &self,
        family: Family,
        envelope: Envelope,
        path: &str,
        url: &Url,
    ) -> Result<Vec<Value>, ClientError> {
        let mut objects = Vec::new();
        let mut after: Option<String> = None;
        // Every cursor followed so far: a server that leads back to one (A→B→A) would
        // otherwise keep the crawl paging forever.
        let mut followed: HashSet<String> = HashSet::new();
        loop {
            let shown = match &after {
                Some(cursor) => format!("{path}?after={cursor}"),
                None => path.to_owned(),
            };
            let page = self.get_json(&shown, url, family, after.as_deref()).await?;
            let malformed = |message: String| ClientError::Malformed {
                path: shown.clone(),
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
            let next = if has_more {
                let cursor = match envelope {
                    // Shape A: the next page starts after `last_id`; when a list omits it
                    // (it is optional in several schemas), the last object's id is the same.
                    Envelope::FirstLastId => page
                        .get("last_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .or_else(|| {
                            let field = family.id_field()?;
                            data.last()?.get(field)?.as_str().map(str::to_owned)
                        })
                        .ok_or_else(|| malformed("`has_more` is true but no `last_id`".into()))?,
                    // Shape B: `next` is opaque and goes back verbatim.
                    _ => page
                        .get("next")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| malformed("`has_more` is true but no `next`".into()))?,
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
                Some(cursor)
            } else {
                None
            };
            objects.extend(data);
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
        let mut failures = 0u32;
        let mut limited = 0u32;
        loop {
            let body = match self.attempt(shown, url, family, after).await {
                Attempt::Body(body) => body,
                Attempt::Fatal(error) => return Err(error),
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
                        // The gate already holds every worker until Retry-After has passed;
                        // without the header, back off on our own.
                        match retry_after {
                            Some(_) => Duration::ZERO,
                            None => full_jitter(limited),
                        }
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
                        wait_ms = wait.as_millis() as u64,
                        "retrying: {error}"
                    );
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    continue;
                }
            };
            return serde_json::from_slice(&body).map_err(|e| ClientError::Malformed {
                path: shown.to_owned(),
                message: format!("invalid JSON ({e}) in a {} byte body", body.len()),
            });
        }
    }

    async fn attempt(
        &self,
        shown: &str,
        url: &Url,
        family: Family,
        after: Option<&str>,
    ) -> Attempt {
        let _permit = self.gate.acquire().await;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut auth = match HeaderValue::from_str(&format!("Bearer {}", self.key.expose_secret()))
        {
            Ok(value) => value,
            Err(_) => return Attempt::Fatal(ClientError::KeyNotAscii),
        };
        // Keeps the header out of hyper's and h2's debug output.
        auth.set_sensitive(true);
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
        tracing::trace!(path = shown, "GET");
        let response = self
            .http
            .get(url.clone())
            .header(AUTHORIZATION, auth)
            .query(&query)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                self.observe(None);
                return Attempt::Retry {
                    error: ClientError::Transport {
                        path: shown.to_owned(),
                        message: transport_message(&e),
                    },
                    retry_after: None,
                    rate_limited: false,
                };
            }
        };
        let status = response.status();
        self.observe(Some(status.as_u16()));
        let retry_after = retry_after(response.headers());
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            // The body is not read: a real API may quote part of the refused key.
            return Attempt::Fatal(ClientError::KeyRefused {
                status: status.as_u16(),
                path: shown.to_owned(),
            });
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
            self.gate.on_rate_limited(retry_after);
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
        if !status.is_success() {
            let message = self.error_message(response).await;
            return Attempt::Fatal(ClientError::Status {
                path: shown.to_owned(),
                status: status.as_u16(),
                message,
            });
        }
        match response.bytes().await {
            Ok(body) => {
                self.gate.on_success();
                Attempt::Body(body.to_vec())
            }
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

    /// The API's `error.message`, else the start of the body; the key is scrubbed from it.
    async fn error_message(&self, response: reqwest::Response) -> String {
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.chars().take(200).collect();
                if text.trim().is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    text
                }
            });
        self.scrub(message)
    }

    fn scrub(&self, text: String) -> String {
        let key = self.key.expose_secret();
        if !key.is_empty() && text.contains(key) {
            text.replace(key, "[redacted]")
        } else {
            text
        }
    }
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
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
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

/// The shared gate every request passes: a bounded, adaptive number in flight (AIMD:
/// halved on a 429, +1/limit per success, never above the configured value), a
/// cooldown that holds every worker until a `Retry-After` has passed, and a pace
/// (requests per second) learned from 429s so a rate-limited crawl stays just under the
/// server's limit instead of bouncing off it.
struct Gate {
    max: usize,
    state: Mutex<GateState>,
    notify: Notify,
}

struct GateState {
    limit: f64,
    in_flight: usize,
    cooldown_until: Option<Instant>,
    /// `None` until the first 429: unpaced.
    rate: Option<f64>,
    next_slot: Option<Instant>,
    /// When the last 429 episode cut the limits; answers to requests sent before it
    /// are also 429s and must not cut again.
    last_cut: Option<Instant>,
    last_raise: Instant,
    /// Success times over the last second, to estimate the rate the server allows.
    recent: VecDeque<Instant>,
}

/// The window the allowed rate is estimated over.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Fewer successes than this in the window say nothing about the server's limit.
const MIN_RATE_SAMPLE: usize = 20;

impl GateState {
    fn limit_now(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }
}

struct Permit {
    gate: Arc<Gate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.lock().in_flight -= 1;
        self.gate.notify.notify_one();
    }
}

enum Next {
    Go(Option<Instant>),
    Sleep(Instant),
    Wait,
}

impl Gate {
    fn new(max: usize) -> Self {
        Self {
            max,
            state: Mutex::new(GateState {
                limit: max as f64,
                in_flight: 0,
                cooldown_until: None,
                rate: None,
                next_slot: None,
                last_cut: None,
                last_raise: Instant::now(),
                recent: VecDeque::new(),
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // A panic while holding this lock leaves only counters behind; they stay usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cooldown(&self) -> Option<Instant> {
        let until = self.lock().cooldown_until?;
        (until > Instant::now()).then_some(until)
    }

    async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let mut s = self.lock();
                let now = Instant::now();
                match s.cooldown_until {
                    Some(until) if until > now => Next::Sleep(until),
                    _ if s.in_flight >= s.limit_now() => Next::Wait,
                    _ => {
                        s.in_flight += 1;
                        let slot = s.rate.map(|rate| {
                            let slot = s.next_slot.map_or(now, |n| n.max(now));
                            s.next_slot = Some(slot + Duration::from_secs_f64(1.0 / rate));
                            slot
                        });
                        Next::Go(slot)
                    }
                }
            };
            match next {
                Next::Go(slot) => {
                    let permit = Permit { gate: self.clone() };
                    if let Some(slot) = slot {
                        tokio::time::sleep_until(slot.into()).await;
                    }
                    // A 429 may have arrived while this request waited for its slot.
                    while let Some(until) = self.cooldown() {
                        tokio::time::sleep_until(until.into()).await;
                    }
                    return permit;
                }
                Next::Sleep(until) => tokio::time::sleep_until(until.into()).await,
                Next::Wait => notified.await,
            }
        }
    }

    fn on_success(&self) {
        let raised = {
            let mut s = self.lock();
            let now = Instant::now();
            let before = s.limit_now();
            s.limit = (s.limit + 1.0 / s.limit).min(self.max as f64);
            s.recent.push_back(now);
            while s
                .recent
                .front()
                .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
            {
                s.recent.pop_front();
            }
            // Additive increase of the pace: 1% a second once two seconds have passed
            // without a 429, so a limit that was raised is found again.
            let quiet = s
                .last_cut
                .is_none_or(|t| now.duration_since(t) > 2 * RATE_WINDOW);
            if let Some(rate) = s.rate
                && quiet
                && now.duration_since(s.last_raise) >= RATE_WINDOW
            {
                s.rate = Some(rate * 1.01);
                s.last_raise = now;
            }
            s.limit_now() > before
        };
        if raised {
            self.notify.notify_one();
        }
    }

    fn on_rate_limited(&self, retry_after: Option<Duration>) {
        let mut s = self.lock();
        let now = Instant::now();
        if let Some(wait) = retry_after {
            // Callers never pass a wait past MAX_RETRY_AFTER, but an overflow must not panic.
            let until = now.checked_add(wait).unwrap_or(now + MAX_RETRY_AFTER);
            s.cooldown_until = Some(s.cooldown_until.map_or(until, |c| c.max(until)));
        }
        let episode_over = s.last_cut.is_none_or(|t| {
            now.duration_since(t) > retry_after.unwrap_or(RATE_WINDOW).max(RATE_WINDOW)
        });
        if !episode_over {
            return;
        }
        s.last_cut = Some(now);
        s.last_raise = now;
        s.limit = (s.limit / 2.0).max(1.0);
        while s
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
        {
            s.recent.pop_front();
        }
        let observed = s.recent.len();
        let learned = (observed >= MIN_RATE_SAMPLE).then_some(observed as f64 * 0.95);
        s.rate = match (s.rate, learned) {
            (Some(rate), Some(learned)) => Some(learned.min(rate * 0.9)),
            (Some(rate), None) => Some((rate * 0.9).max(1.0)),
            (None, learned) => learned,
        };
        tracing::debug!(
            limit = s.limit_now(),
            rate = s.rate.unwrap_or(0.0),
            observed,
            "rate limited: slowing down"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn backoff_stays_under_its_cap() {
        for attempt in 1..40 {
            assert!(full_jitter(attempt) <= BACKOFF_CAP);
        }
        assert!(full_jitter(1) <= BACKOFF_BASE);
    }

    #[tokio::test]
    async fn rate_limit_halves_the_in_flight_limit_and_recovers_additively() {
        let gate = Arc::new(Gate::new(16));
        gate.on_rate_limited(None);
        assert_eq!(gate.lock().limit_now(), 8);
        // A burst of 429s from requests already in flight is one episode: one cut.
        gate.on_rate_limited(None);
        assert_eq!(gate.lock().limit_now(), 8);
        // About one step per `limit` successes, i.e. one per round trip.
        for _ in 0..10 {
            gate.on_success();
        }
        assert_eq!(gate.lock().limit_now(), 9);
        for _ in 0..10_000 {
            gate.on_success();
        }
        assert_eq!(
            gate.lock().limit_now(),
            16,
            "never above the configured value"
        );
    }

    #[tokio::test]
    async fn a_429_sets_a_pace_just_under_the_rate_that_got_through() {
        let gate = Arc::new(Gate::new(32));
        for _ in 0..100 {
            gate.on_success();
        }
        assert!(
            gate.lock().rate.is_none(),
            "unpaced until the server objects"
        );
        gate.on_rate_limited(Some(Duration::from_millis(10)));
        let rate = gate.lock().rate.expect("paced");
        assert!((rate - 95.0).abs() < 1e-9, "{rate}");
        let start = Instant::now();
        for _ in 0..20 {
            drop(gate.acquire().await);
        }
        // 20 requests at 95 per second: the last one starts 19/95 s after the first.
        assert!(
            start.elapsed() >= Duration::from_millis(195),
            "{:?}",
            start.elapsed()
        );
        // A later episode never raises the pace, and cuts it by at least 10%.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for _ in 0..500 {
            gate.on_success();
        }
        gate.on_rate_limited(None);
        let later = gate.lock().rate.expect("paced");
        assert!(later <= rate * 0.9 + 1e-9, "{later} after {rate}");
    }

    #[tokio::test]
    async fn cooldown_holds_every_new_request() {
        let gate = Arc::new(Gate::new(4));
        gate.on_rate_limited(Some(Duration::from_millis(300)));
        let start = Instant::now();
        let (a, b) = tokio::join!(gate.acquire(), gate.acquire());
        assert!(
            start.elapsed() >= Duration::from_millis(290),
            "{:?}",
            start.elapsed()
        );
        drop((a, b));
    }
}
