//! Serving a router on a TCP listener: the one accept loop every Meridian
//! server uses (`meridian serve`, its internal listener, the demo, the test
//! harness), so each gets the same defences and the same shutdown.
//!
//! - **A connection cap.** Past [`ServeLimits::max_connections`] open
//!   connections a new one is closed at once, so a flood of sockets cannot
//!   exhaust file descriptors or memory. A connection upgraded to a
//!   WebSocket (the echo) keeps its place until the WebSocket ends.
//! - **A cap per client.** One client (an IPv4 address, an IPv6 /64) holds
//!   at most [`ServeLimits::max_connections_per_client`] of them, so one
//!   host cannot take every place; the trusted proxies, whose connections
//!   carry many clients, are not counted.
//! - **Clients that stop reading.** A response that waits
//!   [`ServeLimits::write_stall_timeout`] for the client to read any of it
//!   closes the connection.
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

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::net::{TrustedProxies, canonical_ip};

/// A connection's read buffer at most: request heads above 16 KiB are
/// refused anyway, and bodies are read through it piece by piece.
pub(crate) const READ_BUFFER: usize = 64 * 1024;

/// A connection's place under the connection cap, in every request's
/// extensions: a handler that upgrades the connection moves a clone into
/// the upgraded task, so the place is given back only when that ends.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSlot {
    _held: Arc<(tokio::sync::OwnedSemaphorePermit, Option<ClientCount>)>,
}

/// Open connections per client, by [`client_key`].
type Clients = Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>;

/// One open connection counted against its client; uncounted when dropped.
#[derive(Debug)]
pub(crate) struct ClientCount {
    clients: Clients,
    client: IpAddr,
}

impl ClientCount {
    /// Counts a connection of `client`, unless it already has `max`.
    fn take(clients: &Clients, client: IpAddr, max: usize) -> Option<Self> {
        let mut open = clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Self { clients: clients.clone(), client })
    }
}

impl Drop for ClientCount {
    fn drop(&mut self) {
        let mut open = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let std::collections::hash_map::Entry::Occupied(mut count) = open.entry(self.client) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
    }
}

/// Whom a connection from `peer` is counted against: its IPv4 address, or
/// its IPv6 /64 (one subscriber usually holds a whole /64).
fn client_key(peer: IpAddr) -> IpAddr {
    match canonical_ip(peer) {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// Limits of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeLimits {
    /// Open connections at most. Default 4096.
    pub max_connections: usize,
    /// Open connections of one client at most (an IPv4 address, an IPv6
    /// /64). Default 512.
    pub max_connections_per_client: usize,
    /// Peers whose connections are not counted per client: the trusted
    /// proxies. Default none.
    pub uncounted: Arc<TrustedProxies>,
    /// Time a client has to send a request head, also the idle time of a
    /// kept-alive connection. Default 10 s.
    pub header_read_timeout: Duration,
    /// Time open connections get to finish when shutting down. Default 10 s.
    pub drain_timeout: Duration,
    /// Time a response may wait for the client to read any of it; past
    /// it the connection closes. Default 30 s.
    pub write_stall_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_client: 512,
            uncounted: Arc::default(),
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(30),
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
    let clients = Clients::default();
    let per_client = limits.max_connections_per_client.max(1);
    let header_read_timeout = limits.header_read_timeout;
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
        let counted = if limits.uncounted.contains(peer.ip()) {
            None
        } else {
            let Some(counted) = ClientCount::take(&clients, client_key(peer.ip()), per_client) else {
                tracing::warn!(%peer, per_client, "connection refused: too many open connections from this client");
                drop(stream);
                continue;
            };
            Some(counted)
        };
        super::set_no_delay_on(&stream);
        let (stream, probe) = super::tcp::ProbedStream::new(stream);
        let stream = stream.with_write_stall_limit(limits.write_stall_timeout);
        let app = app.clone();
        let mut closing_seen = closing_seen.clone();
        let slot = ConnectionSlot { _held: Arc::new((permit, counted)) };
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
                .header_read_timeout(header_read_timeout)
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

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Whether a new connection to `address` is served (else it is closed
    /// at once), kept open when served.
    async fn connect(address: SocketAddr) -> Option<tokio::net::TcpStream> {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buffer = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.unwrap();
        (read.unwrap_or(0) > 0).then_some(stream)
    }

    /// A connection served within `tries` tries 100 ms apart.
    async fn served_within(address: SocketAddr, tries: u32) -> Option<tokio::net::TcpStream> {
        for _ in 0..tries {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(served) = connect(address).await {
                return Some(served);
            }
        }
        None
    }

    async fn start(limits: ServeLimits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route("/large", axum::routing::get(|| async { vec![b'x'; 64 << 20] }));
        tokio::spawn(serve(listener, app, limits, std::future::pending()));
        address
    }

    #[tokio::test]
    async fn one_client_holds_at_most_its_share_of_connections() {
        let limits = ServeLimits { max_connections_per_client: 2, ..ServeLimits::default() };
        let address = start(limits).await;
        let first = connect(address).await.expect("first");
        let second = connect(address).await.expect("second");
        assert!(connect(address).await.is_none(), "a third connection of one client was served");
        drop(first);
        // Its place comes back once the server has seen the close.
        assert!(served_within(address, 50).await.is_some(), "a closed connection's place was not given back");
        drop(second);
    }

    #[tokio::test]
    async fn a_trusted_proxy_is_not_counted_as_one_client() {
        let limits = ServeLimits {
            max_connections_per_client: 1,
            uncounted: Arc::new(TrustedProxies::parse(["127.0.0.1"]).unwrap()),
            ..ServeLimits::default()
        };
        let address = start(limits).await;
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(connect(address).await.expect("a proxy's connection is served"));
        }
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_loses_its_connection() {
        let limits = ServeLimits {
            max_connections_per_client: 1,
            write_stall_timeout: Duration::from_millis(200),
            ..ServeLimits::default()
        };
        let address = start(limits).await;
        // Asks for more than the sockets' buffers hold, and reads nothing.
        let mut stalled = tokio::net::TcpStream::connect(address).await.unwrap();
        stalled.write_all(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(connect(address).await.is_none(), "the reader that stopped still holds the one place");
        let served = served_within(address, 50).await;
        assert!(served.is_some(), "a connection whose client stopped reading was never closed");
        drop(stalled);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
