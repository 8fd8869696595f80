//! `[server] listen`: `/healthz`, `/readyz` and `/metrics` while the daemon runs.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use tokio::task::JoinHandle;
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
                    reason: e.to_string(),
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
            self.task = Some(tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "health server stopped");
                }
            }));
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
