//! Serving a router on a TCP listener: the one accept loop every Meridian
//! server uses (`meridian serve`, its internal listener, the demo, the test
//! harness), so each gets the same defences and the same shutdown.
//!
//! - **A connection cap.** Past [`ServeLimits::max_connections`] open
//!   connections a new one is closed at once, so a flood of sockets cannot
//!   exhaust file descriptors or memory. A connection upgraded to a
//!   WebSocket (the echo) keeps its place until the WebSocket ends.
//! - **A small read buffer.** Request heads are read into at most
//!   [`READ_BUFFER`] bytes (hyper's default is 400 KiB a connection).
//! - **Slow and idle clients.** A client must send a whole request head
//!   within [`ServeLimits::header_read_timeout`] — on a new connection and
//!   again after every response (hyper starts the timer when a kept-alive
//!   connection goes idle) — or the connection is closed: a slow-loris
//!   client cannot hold sockets. Bodies and handlers are bounded by the
//!   router's own request timeout.
//! - **`TCP_NODELAY`** on every connection (see [`super::no_delay`]).
//! - **The kernel's round trip** of each connection, for handlers that ask:
//!   a [`super::TcpProbe`] in every request's extensions.
//! - **Graceful shutdown.** When `shutdown` resolves the listener closes,
//!   open connections finish their request in flight and close, and after
//!   [`ServeLimits::drain_timeout`] whatever is left is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// A connection's read buffer at most: request heads above 16 KiB are
/// refused anyway, and bodies are read through it piece by piece.
pub(crate) const READ_BUFFER: usize = 64 * 1024;

/// A connection's place under the connection cap, in every request's
/// extensions: a handler that upgrades the connection moves a clone into
/// the upgraded task, so the place is given back only when that ends.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSlot {
    _permit: Arc<tokio::sync::OwnedSemaphorePermit>,
}

/// Limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Open connections at most. Default 4096.
    pub max_connections: usize,
    /// Time a client has to send a request head, also the idle time of a
    /// kept-alive connection. Default 10 s.
    pub header_read_timeout: Duration,
    /// Time open connections get to finish when shutting down. Default 10 s.
    pub drain_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, handing handlers
/// the peer address as `ConnectInfo<SocketAddr>`.
///
/// # Errors
/// Never for a client's fault; accept errors (a full file-descriptor table)
/// are logged and retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let (closing, closing_seen) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max, "connection refused: too many open connections");
            drop(stream);
            continue;
        };
        super::set_no_delay_on(&stream);
        let (stream, probe) = super::tcp::ProbedStream::new(stream);
        let app = app.clone();
        let mut closing_seen = closing_seen.clone();
        let slot = ConnectionSlot { _permit: Arc::new(permit) };
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    request.extensions_mut().insert(probe.clone());
                    request.extensions_mut().insert(slot.clone());
                    tower::ServiceExt::oneshot(app.clone(), request)
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(READ_BUFFER);
            // Upgrades: `GET /v1/echo` is a WebSocket.
            let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, "connection closed: {e}");
                    }
                }
                _ = closing_seen.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain_timeout, permits.acquire_many(all)).await.is_err() {
        tracing::warn!("shutdown: connections still open after {:?}; dropping them", limits.drain_timeout);
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT), logging that it is shutting down.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
