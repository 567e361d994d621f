//! `GET /v1/echo`: a challenge that carries the round trips the verifier
//! measured itself.
//!
//! Most tools that leave a restricted network (Shadowsocks, V2Ray,
//! Trojan, SOCKS and HTTP proxies, relay services) end the TCP connection
//! at their exit. The kernel then times only server ↔ exit, while a message
//! the page must answer travels on to the real browser and back. The
//! difference is the hidden leg, exit ↔ browser. A client can delay an
//! answer; it can never answer a random message before it has seen it.
//!
//! The exchange, on one WebSocket:
//!
//! 1. The server sends [`PINGS`] binary frames of 9 bytes, one every
//!    [`SPACING`]: an index byte (the last one with the high bit set) and 8
//!    random bytes. The page sends each back unchanged, at once.
//! 2. When the last ping comes back (or [`ANSWER_WITHIN`] after it left),
//!    the server reads the kernel's round trip of this very connection
//!    (`tcpi_min_rtt`; behind a trusted proxy, the proxy's figure from
//!    `tcp_rtt_header`), takes the least echo round trip, seals both into a
//!    fresh challenge ([`crate::challenge::Latency`]) and sends it as a
//!    text frame shaped like `GET /v1/challenge`'s answer, then closes.
//!
//! The page signs that challenge as usual. Nothing of the timing comes from
//! the client: it can withhold the echo (and fetch a plain challenge), not
//! shorten it or edit the sealed figures.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::routes::ChallengeResponse;
use super::{ApiError, ApiState, ClientIp, TcpProbe};
use crate::challenge::Latency;

/// Pings per echo: enough that the least of them is the path's, not a
/// moment's queueing in the browser or the network.
pub(crate) const PINGS: usize = 16;
/// Time between pings: they overlap in flight, so the echo costs about one
/// round trip plus `PINGS × SPACING`, not `PINGS` round trips.
pub(crate) const SPACING: Duration = Duration::from_millis(2);
/// How long after the last ping the page may take to answer it.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// The largest frame the page may send: a ping is 9 bytes.
const MAX_FRAME: usize = 64;

/// Where the TCP round trip comes from.
#[derive(Debug, Clone)]
enum TcpSource {
    /// The verifier's own socket is the client's connection.
    Socket(Option<TcpProbe>),
    /// A trusted proxy in front: its figure, if it gave one.
    Proxy(Option<u32>),
}

/// Upgrades to the echo WebSocket.
#[utoipa::path(get, path = "/v1/echo", responses(
    (status = 101, description = "A WebSocket: pings to send back, then a challenge as in `GET /v1/challenge` carrying the measured round trips (docs/PROTOCOL.md)"),
    (status = 400, description = "Not a WebSocket request (`bad-request`)", body = crate::VerifyOutcome),
    (status = 429, description = "Too many challenges from this address (`rate-limited`)", body = crate::VerifyOutcome),
))]
pub(crate) async fn echo(
    State(state): State<ApiState>,
    client: ClientIp,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    probe: Option<axum::Extension<TcpProbe>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|why| {
        ApiError::bad_request(format!(
            "GET /v1/echo is a WebSocket (or use GET /v1/challenge for a challenge without timing): {why}"
        ))
    })?;
    state.admit_challenge(client)?;
    let proxies = state.proxies.clone();
    let forwarded = proxies.rtt_header().map(|name| headers.get(name).map(|v| v.as_bytes()));
    let source = match proxies.forwarded_rtt_us(peer.ip(), forwarded.flatten()) {
        None => TcpSource::Socket(probe.map(|axum::Extension(probe)| probe)),
        Some(rtt) => TcpSource::Proxy(rtt),
    };
    Ok(upgrade.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME).on_upgrade(move |socket| async move {
        let limit =
            SPACING * u32::try_from(PINGS).unwrap_or(u32::MAX) + ANSWER_WITHIN + Duration::from_secs(1);
        if tokio::time::timeout(limit, session(socket, &state, client, source)).await.is_err() {
            tracing::debug!(ip = %client.0, "echo: the page stopped reading");
        }
    }))
}

/// One echo, from the first ping to the sealed challenge.
async fn session(mut socket: WebSocket, state: &ApiState, client: ClientIp, source: TcpSource) {
    let Some(echo) = measure(&mut socket).await else { return };
    let tcp_rtt_us = match source {
        TcpSource::Socket(probe) => probe.and_then(|probe| probe.rtt()).map(|rtt| rtt.min_us),
        TcpSource::Proxy(rtt) => rtt,
    };
    let now_ms = state.clock().now().as_millisecond();
    let keys = &state.verifier().keys().challenge;
    let issued = match echo {
        Some(echo) => {
            let echo_rtt_us = u32::try_from(echo.as_micros()).unwrap_or(u32::MAX - 1);
            keys.issue_timed(client.0, now_ms, Latency { tcp_rtt_us, echo_rtt_us })
        }
        // Not one ping came back: a challenge without timing, as
        // `GET /v1/challenge` would give.
        None => keys.issue(client.0, now_ms),
    };
    let Ok(issued) = issued else {
        tracing::error!("no randomness for a challenge nonce");
        return;
    };
    state.metrics.challenges.inc();
    let body = ChallengeResponse::new(issued, state);
    let Ok(json) = serde_json::to_string(&body) else { return };
    if socket.send(Message::Text(json.into())).await.is_ok() {
        let _ = socket.send(Message::Close(None)).await;
    }
}

/// Sends the pings and times their echoes: `None` when the page closed
/// the socket, `Some(None)` when no ping came back in time, else the least
/// round trip.
async fn measure(socket: &mut WebSocket) -> Option<Option<Duration>> {
    let mut nonces = [[0u8; 8]; PINGS];
    for nonce in &mut nonces {
        crate::random_bytes(nonce).ok()?;
    }
    let mut sent: [Option<Instant>; PINGS] = [None; PINGS];
    let mut answered = [false; PINGS];
    let mut best: Option<Duration> = None;
    let mut next = 0;
    let mut ticker = tokio::time::interval(SPACING);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Armed when the last ping leaves.
    let mut deadline = std::pin::pin!(tokio::time::sleep(ANSWER_WITHIN));
    loop {
        tokio::select! {
            _ = ticker.tick(), if next < PINGS => {
                let mut frame = [0u8; 9];
                let last = next + 1 == PINGS;
                frame[0] = u8::try_from(next).unwrap_or(0) | if last { 0x80 } else { 0 };
                frame[1..].copy_from_slice(&nonces[next]);
                sent[next] = Some(Instant::now());
                socket.send(Message::Binary(frame.to_vec().into())).await.ok()?;
                next += 1;
                if last {
                    deadline.as_mut().reset(tokio::time::Instant::now() + ANSWER_WITHIN);
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(frame))) => {
                    let received = Instant::now();
                    let Some((&head, nonce)) = frame.split_first() else { continue };
                    let index = usize::from(head & 0x7f);
                    // Only an echo of a ping that left, each counted once.
                    let Some(left) = sent.get(index).copied().flatten() else { continue };
                    if nonce != nonces[index] || answered[index] {
                        continue;
                    }
                    answered[index] = true;
                    let rtt = received.duration_since(left);
                    best = Some(best.map_or(rtt, |b| b.min(rtt)));
                    if head & 0x80 != 0 {
                        return Some(best);
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                // Pings, pongs and text are not echoes.
                Some(Ok(_)) => {}
            },
            () = &mut deadline, if next == PINGS => return Some(best),
        }
    }
}
