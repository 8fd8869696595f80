//! `[server] listen`: `/healthz`, `/readyz` and `/metrics` while the daemon runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::{Component, DaemonError, DaemonEvent, DaemonHandle};

/// The health and metrics HTTP server, as a daemon component.
pub struct HealthServer {
    addr: SocketAddr,
    local_addr: Option<SocketAddr>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl HealthServer {
    /// A server that will listen on `addr` once started.
    pub fn new(addr: SocketAddr) -> HealthServer {
        HealthServer {
            addr,
            local_addr: None,
            stop: CancellationToken::new(),
            task: None,
        }
    }
}

/// The router behind the server, exposed so tests can drive it without a socket.
pub fn router(handle: DaemonHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(handle)
}

async fn readyz(State(handle): State<DaemonHandle>) -> impl IntoResponse {
    // The check touches the database file: blocking I/O, so off the async workers.
    let readiness = tokio::task::spawn_blocking(move || handle.readiness())
        .await
        .unwrap_or_else(|e| Err(format!("the readiness check stopped: {e}")));
    match readiness {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn metrics(State(handle): State<DaemonHandle>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        handle.metrics().render(),
    )
}

/// Why the address could not be bound. A port in use is most often another daemon's: with
/// one orgwarden per organization on a host, each needs a port of its own.
fn bind_failure(error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "{error}: another program listens there (another orgwarden daemon, of another \
             organization?); give each daemon its own port"
        )
    } else {
        error.to_string()
    }
}

impl Component for HealthServer {
    fn name(&self) -> &'static str {
        "health-server"
    }

    fn start(&mut self, handle: DaemonHandle) -> BoxFuture<'_, Result<(), DaemonError>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(self.addr)
                .await
                .map_err(|e| DaemonError::Listen {
                    addr: self.addr.to_string(),
                    reason: bind_failure(&e),
                })?;
            let local = listener.local_addr().map_err(|e| DaemonError::Listen {
                addr: self.addr.to_string(),
                reason: e.to_string(),
            })?;
            self.local_addr = Some(local);
            handle.set_health_addr(local);
            tracing::info!(listen = %local, "serving /healthz, /readyz and /metrics");
            let stop = self.stop.clone();
            let app = router(handle);
            self.task = Some(tokio::spawn(serve(listener, app, stop)));
            Ok(())
        })
    }

    fn handle_event<'a>(&'a mut self, _event: &'a DaemonEvent) -> BoxFuture<'a, ()> {
        // The handlers read the shared state on each request; nothing to do per event.
        Box::pin(async {})
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.cancel();
            if let Some(task) = self.task.take() {
                let _ = task.await;
            }
        })
    }
}

/// The connections served at once. Whoever reaches the port can open connections, and each
/// holds a file descriptor: unbounded, a client that opens a thousand and keeps them takes
/// the descriptors the runs need (the database, the API) and every run fails. Past this
/// many, a new connection closes the oldest one (see [`serve`]).
const MAX_CONNECTIONS: usize = 32;

/// How long a request's head may take to arrive, and a kept-alive connection may sit idle:
/// a client sending a header byte now and then (slowloris) is dropped after this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one connection may last, however it behaves (a client that pipelines requests
/// and never reads the answers holds its connection while no header is being read).
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// How long a connection gets to finish its answer once it is told to close (at shutdown or
/// at [`MAX_CONNECTION_AGE`]) before it is dropped: a half-sent request must not hold up the
/// daemon's exit.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The largest request head buffered (the paths served are short; hyper's own default is
/// about 400 KiB a connection).
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Accepts connections until `stop`, at most [`MAX_CONNECTIONS`] at once, then closes them
/// within [`CLOSE_GRACE`]. When every place is taken, a new connection drops the oldest:
/// otherwise a client holding the places with idle connections would keep a liveness
/// probe (which gives up after a second or so) waiting for [`HEADER_READ_TIMEOUT`], and the
/// orchestrator would restart a healthy daemon.
async fn serve(listener: TcpListener, app: Router, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    // The connections being served, oldest first.
    let mut open: std::collections::VecDeque<tokio::task::AbortHandle> =
        std::collections::VecDeque::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        // Reap the connections that ended, so the set does not grow with every one served.
        while let Some(ended) = connections.try_join_next_with_id() {
            let id = match ended {
                Ok((id, ())) => id,
                Err(error) => error.id(),
            };
            open.retain(|open| open.id() != id);
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, most likely: accepting again at once would spin.
                tracing::warn!(%error, "health server: cannot accept a connection");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        let permit = if let Ok(permit) = slots.clone().try_acquire_owned() {
            permit
        } else {
            // Dropped, not asked to close: a graceful close waits for a half-sent request,
            // and a flood of them would then be taken one a second.
            if let Some(oldest) = open.pop_front() {
                oldest.abort();
            }
            tokio::select! {
                () = stop.cancelled() => break,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            }
        };
        open.push_back(connections.spawn(serve_connection(
            stream,
            app.clone(),
            stop.clone(),
            permit,
        )));
    }
    drop(listener);
    // Each connection closes or is dropped within CLOSE_GRACE of `stop`; the margin covers
    // the scheduling between them. Whatever is left is aborted when the set drops.
    let _ = tokio::time::timeout(CLOSE_GRACE * 2, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// One HTTP/1 connection, within the limits above; `_slot` frees its place when it ends.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = stop.cancelled() => {}
        () = tokio::time::sleep(MAX_CONNECTION_AGE) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
}

/// Whether the database file (or, before the first run, its folder) can be written: the
/// check `/readyz` needs from a job that has no better one.
///
/// The file is asked about, never opened: closing a descriptor of the database releases
/// every POSIX lock this process holds on it, SQLite's included, so a probe during a run
/// would leave the run's connection unlocked, and another process closing the database
/// could then checkpoint and delete the WAL under it (losing the run's commits).
pub fn database_writable(db: &std::path::Path) -> Result<(), String> {
    if db.exists() {
        crate::store::may_write(db)
            .map_err(|e| format!("database {} is not writable: {e}", db.display()))
    } else {
        let dir = match db.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => std::path::PathBuf::from("."),
        };
        let meta = std::fs::metadata(&dir)
            .map_err(|e| format!("database folder {} is not usable: {e}", dir.display()))?;
        if meta.permissions().readonly() {
            Err(format!("database folder {} is read-only", dir.display()))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_writability_is_checked_on_the_file_or_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orgwarden.db");
        database_writable(&db).unwrap();
        std::fs::write(&db, b"").unwrap();
        database_writable(&db).unwrap();
        let missing = dir.path().join("no-such-folder").join("orgwarden.db");
        let error = database_writable(&missing).unwrap_err();
        assert!(error.contains("is not usable"), "{error}");
    }
}
