//! The simulated Admin API: to the OpenAI Admin API what moto is to AWS.
//!
//! - [`org`]: the organization model, its JSON file format and the mutators tests use;
//! - [`generate`]: a deterministic generator of large, varied organizations;
//! - [`render`]: the one place objects become API JSON (also [`Org::scope_results`]);
//! - [`api`]: every operation of the 14 project families, independent of HTTP;
//! - [`http`]: the axum server (latency, request budget, Bearer auth, faults);
//! - [`audit_log`]: the organization's audit log, its events and its list endpoint
//!   ([`audit_schema`]: the spec's `AuditLog` schema the file's events are checked against);
//! - [`faults`], [`ratelimit`]: injected failures and the 429 token bucket.

pub mod api;
mod api_org;
pub mod audit_log;
pub mod audit_schema;
#[cfg(test)]
mod audit_writes_tests;
pub mod costs;
pub mod faults;
pub mod generate;
pub mod generate_audit;
mod generate_org;
mod http;
pub mod org;
mod org_level;
mod ratelimit;
pub mod render;
pub mod render_org;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use faults::{Fault, FaultKind};
pub use org::Org;

use http::Shared;

/// Everything that can go wrong starting a simulator or loading its organization.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The organization JSON is invalid at `path` (a JSON path such as
    /// `projects[3].api_keys[0].owner.id`).
    #[error("{path}: {message}")]
    Org {
        /// Where in the document.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The organization file could not be read.
    #[error("cannot read organization file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An error inside an organization file.
    #[error("{}: {source}", file.display())]
    InFile {
        /// The file.
        file: PathBuf,
        /// The error.
        source: Box<SimError>,
    },
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The background runtime could not start.
    #[error("cannot start the simulator runtime: {0}")]
    Runtime(String),
}

/// How the simulator behaves.
#[derive(Clone)]
pub struct SimOptions {
    /// Accept only this Bearer key; `None` = any non-empty one.
    pub admin_key: Option<String>,
    /// Added to every request.
    pub latency: Duration,
    /// Added instead to a request the rate limit refuses; `None` = `latency`. A gateway in
    /// front of an API refuses before the API does any work, so its 429 can come back
    /// sooner than an answer.
    pub refusal_latency: Option<Duration>,
    /// Requests per second before 429s; `None` = no limit.
    pub rate_limit: Option<f64>,
    /// Requests the budget can save up; `None` = a second's worth of `rate_limit`.
    pub burst: Option<f64>,
    /// Send `x-ratelimit-{limit,remaining,reset}-requests` as the real API does.
    pub rate_limit_headers: bool,
    /// After this many requests, `rate_limit` becomes the second value (a limit that
    /// drops mid-crawl).
    pub rate_change: Option<(u64, f64)>,
    /// After this many requests, `latency` becomes the second value (a server that slows
    /// down mid-crawl).
    pub latency_change: Option<(u64, Duration)>,
    /// Fraction of requests answered with an injected 500.
    pub fault_rate: f64,
    /// Seed of the random faults.
    pub seed: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            admin_key: None,
            latency: Duration::ZERO,
            refusal_latency: None,
            rate_limit: None,
            burst: None,
            rate_limit_headers: false,
            rate_change: None,
            latency_change: None,
            fault_rate: 0.0,
            seed: 0,
        }
    }
}

// Hand-written so the admin key never reaches a log line.
impl fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimOptions")
            .field("admin_key", &self.admin_key.as_ref().map(|_| "[redacted]"))
            .field("latency", &self.latency)
            .field("refusal_latency", &self.refusal_latency)
            .field("rate_limit", &self.rate_limit)
            .field("burst", &self.burst)
            .field("rate_limit_headers", &self.rate_limit_headers)
            .field("rate_change", &self.rate_change)
            .field("latency_change", &self.latency_change)
            .field("fault_rate", &self.fault_rate)
            .field("seed", &self.seed)
            .finish()
    }
}

/// A running simulator. Dropping it shuts it down.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Serves `org` on `addr` (port 0 picks a free port) from the current Tokio runtime.
pub async fn serve(addr: SocketAddr, org: Org, opts: SimOptions) -> Result<SimHandle, SimError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| SimError::Bind { addr, source })?;
    let shared = Arc::new(Shared::new(org, opts));
    let app = http::router(shared.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "simulator stopped");
        }
    });
    tracing::debug!(addr = %local, "simulator listening");
    Ok(SimHandle {
        addr: local,
        shared,
        stop: Some(stop),
        task: Some(task),
        thread: None,
    })
}

/// Serves `org` on 127.0.0.1 with a free port from a runtime of its own thread: for
/// synchronous tests and `orgwarden demo`.
pub fn start_background(org: Org, opts: SimOptions) -> Result<SimHandle, SimError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("orgwarden-sim".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("orgwarden-sim")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(SimError::Runtime(e.to_string())));
                    return;
                }
            };
            rt.block_on(async move {
                let addr = SocketAddr::from(([127, 0, 0, 1], 0));
                match serve(addr, org, opts).await {
                    Ok(mut inner) => {
                        let task = inner.task.take();
                        let _ = ready_tx.send(Ok((inner.addr, inner.shared.clone())));
                        let _ = stopped.await;
                        drop(inner);
                        if let Some(task) = task {
                            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| SimError::Runtime(e.to_string()))?;
    let (addr, shared) = ready_rx
        .recv()
        .map_err(|_| SimError::Runtime("the simulator thread ended before it started".into()))??;
    Ok(SimHandle {
        addr,
        shared,
        stop: Some(stop),
        task: None,
        thread: Some(thread),
    })
}

impl SimHandle {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Runs `f` on the served organization (to change it between snapshots).
    pub fn with_org<R>(&self, f: impl FnOnce(&mut Org) -> R) -> R {
        let mut org = self
            .shared
            .org
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut org)
    }

    /// Registers a fault.
    pub fn add_fault(&self, fault: Fault) {
        self.shared.faults.add(fault);
    }

    /// Removes every registered fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Requests received so far (also the refused ones).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Stops serving (also done on drop).
    pub fn shutdown(self) {
        drop(self);
    }

    /// Waits until the server stops by itself (it never does unless shut down): for
    /// `orgwarden sim`, which runs until interrupted.
    pub async fn wait(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_admin_key() {
        let opts = SimOptions {
            admin_key: Some("sk-admin-very-secret".into()),
            ..SimOptions::default()
        };
        let shown = format!("{opts:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }
}
