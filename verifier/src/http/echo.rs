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
//!
//! `POST /v1/echo` is the same echo over plain HTTP requests, for networks
//! that let no WebSocket through (a filtering proxy, security software):
//! each answer is a sealed step the page's next request must carry, and the
//! verifier times from sealing a step to receiving it back. After
//! [`HTTP_ROUNDS`] round trips the answer is the challenge. The rounds
//! follow one another (a request cannot leave before the step it carries
//! arrived), so this costs `HTTP_ROUNDS` round trips where the WebSocket
//! costs about one; the drop-in uses it only when the WebSocket fails. The
//! step is the verifier's own state (see [`Step`]), so it needs nothing
//! shared; a step timed by another instance is not counted.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiText;
use super::routes::ChallengeResponse;
use super::{ApiError, ApiState, ClientIp, TcpProbe};
use crate::challenge::Latency;
use crate::net::canonical_ip;

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

/// Round trips of the echo over HTTP (`POST /v1/echo`).
pub(crate) const HTTP_ROUNDS: u8 = 8;
/// How long an echo over HTTP may run from its first request, by the
/// verifier's clock on any instance: its least round trip must not outlive
/// the moment it describes (nine requests take a few seconds at most).
const HTTP_ECHO_LIFETIME_MS: i64 = 20_000;
/// How far the instances' clocks may differ for a step begun on another.
const CLOCK_LEEWAY_MS: i64 = 2_000;

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
    slot: Option<axum::Extension<super::serve::ConnectionSlot>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|why| {
        ApiError::bad_request(format!(
            "GET /v1/echo is a WebSocket (or use GET /v1/challenge for a challenge without timing): {why}"
        ))
    })?;
    state.admit_challenge(client)?;
    let source = TcpSource::of(&state, peer, probe, &headers);
    Ok(upgrade.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME).on_upgrade(move |socket| async move {
        // The connection counts against the cap until the echo ends.
        let _slot = slot;
        let limit =
            SPACING * u32::try_from(PINGS).unwrap_or(u32::MAX) + ANSWER_WITHIN + Duration::from_secs(1);
        if tokio::time::timeout(limit, session(socket, &state, client, source)).await.is_err() {
            tracing::debug!(ip = %client.0, "echo: the page stopped reading");
        }
    }))
}

impl TcpSource {
    /// The source for a request from `peer`: a trusted proxy's header, else
    /// the accepted socket.
    fn of(
        state: &ApiState,
        peer: SocketAddr,
        probe: Option<axum::Extension<TcpProbe>>,
        headers: &HeaderMap,
    ) -> Self {
        let proxies = &state.proxies;
        let forwarded = proxies.rtt_header().map(|name| headers.get(name).map(|v| v.as_bytes()));
        match proxies.forwarded_rtt_us(peer.ip(), forwarded.flatten()) {
            None => Self::Socket(probe.map(|axum::Extension(probe)| probe)),
            Some(rtt) => Self::Proxy(rtt),
        }
    }

    /// The connection's least round trip, µs, when known.
    fn rtt_us(self) -> Option<u32> {
        match self {
            Self::Socket(probe) => probe.and_then(|probe| probe.rtt()).map(|rtt| rtt.min_us),
            Self::Proxy(rtt) => rtt,
        }
    }
}

/// The challenge that ends an echo: timed with the least round trip, or
/// plain when not one came back (as `GET /v1/challenge` would give).
fn sealed_challenge(
    state: &ApiState,
    client: ClientIp,
    echo: Option<Duration>,
    source: TcpSource,
) -> Result<ChallengeResponse, ApiError> {
    let now_ms = state.clock().now().as_millisecond();
    let keys = &state.verifier().keys().challenge;
    let issued = match echo {
        Some(echo) => {
            let echo_rtt_us = u32::try_from(echo.as_micros()).unwrap_or(u32::MAX - 1);
            keys.issue_timed(client.0, now_ms, Latency { tcp_rtt_us: source.rtt_us(), echo_rtt_us })
        }
        None => keys.issue(client.0, now_ms),
    }
    .map_err(|error| {
        tracing::error!(%error, "no randomness for a challenge nonce");
        ApiError::internal("could not issue a challenge")
    })?;
    state.metrics.challenges.inc();
    Ok(ChallengeResponse::new(issued, state))
}

/// One echo, from the first ping to the sealed challenge.
async fn session(mut socket: WebSocket, state: &ApiState, client: ClientIp, source: TcpSource) {
    let Some(echo) = measure(&mut socket).await else { return };
    let Ok(body) = sealed_challenge(state, client, echo, source) else { return };
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

/// The answer to a step of the echo over HTTP that is not the last.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct EchoStep {
    /// Send this back, at once, as the body of the next `POST /v1/echo`.
    echo: String,
}

/// One step of the echo over HTTP, sealed by the verifier (MAC'd with the
/// challenge key, in a domain of its own):
///
/// ```text
/// instance (8) | round (1) | begun at ms (8, BE, Unix) | sealed at µs (8, BE, this process's clock) | least round trip µs (4, BE; all ones: none yet) | client IP (16)
/// ```
///
/// The sealing instant is this process's monotonic clock: a step that comes
/// back to another instance (a load balancer that moved the connection) is
/// carried on but not timed. When the echo began is wall-clock time, which
/// every instance can judge. The client IP binds the echo to one client, as
/// the challenge it ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    instance: [u8; 8],
    round: u8,
    begun_ms: i64,
    sealed_at_us: u64,
    best_us: Option<u32>,
    ip: IpAddr,
}

const STEP_LEN: usize = 8 + 1 + 8 + 8 + 4 + 16;
const NO_ROUND_TRIP: u32 = u32::MAX;

impl Step {
    fn to_bytes(self) -> [u8; STEP_LEN] {
        let mut out = [0; STEP_LEN];
        out[..8].copy_from_slice(&self.instance);
        out[8] = self.round;
        out[9..17].copy_from_slice(&self.begun_ms.to_be_bytes());
        out[17..25].copy_from_slice(&self.sealed_at_us.to_be_bytes());
        out[25..29].copy_from_slice(&self.best_us.unwrap_or(NO_ROUND_TRIP).to_be_bytes());
        let ip = match self.ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        out[29..].copy_from_slice(&ip.octets());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; STEP_LEN] = bytes.try_into().ok()?;
        let best = u32::from_be_bytes(bytes[25..29].try_into().ok()?);
        let ip: [u8; 16] = bytes[29..].try_into().ok()?;
        (bytes[8] < HTTP_ROUNDS).then_some(())?;
        Some(Self {
            instance: bytes[..8].try_into().ok()?,
            round: bytes[8],
            begun_ms: i64::from_be_bytes(bytes[9..17].try_into().ok()?),
            sealed_at_us: u64::from_be_bytes(bytes[17..25].try_into().ok()?),
            best_us: (best != NO_ROUND_TRIP).then_some(best),
            ip: canonical_ip(IpAddr::V6(ip.into())),
        })
    }
}

/// This process's id in the steps it seals, and the origin of its clock.
fn instance() -> Option<&'static ([u8; 8], Instant)> {
    static INSTANCE: OnceLock<([u8; 8], Instant)> = OnceLock::new();
    if let Some(instance) = INSTANCE.get() {
        return Some(instance);
    }
    let mut id = [0; 8];
    crate::random_bytes(&mut id).ok()?;
    Some(INSTANCE.get_or_init(|| (id, Instant::now())))
}

/// Microseconds on this process's monotonic clock.
fn process_us(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The echo over plain HTTP, for networks that let no WebSocket through.
#[utoipa::path(post, path = "/v1/echo", request_body(content = String, content_type = "text/plain",
    description = "Empty to start; then the `echo` of the previous answer, unchanged"),
    responses(
        (status = 200, description = "The next step (`{\"echo\": …}`), or after the last round trip a challenge as in `GET /v1/challenge` carrying the measured round trips", body = EchoStep),
        (status = 400, description = "Not a step of this verifier's echo, one for another address, an echo begun more than 20 s before, or a body that is not UTF-8 (`bad-request`)", body = crate::VerifyOutcome),
        (status = 413, description = "A body over the size limit (`bad-request`)", body = crate::VerifyOutcome),
        (status = 429, description = "Too many challenges from this address (`rate-limited`)", body = crate::VerifyOutcome),
    ))]
pub(crate) async fn echo_http(
    State(state): State<ApiState>,
    client: ClientIp,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    probe: Option<axum::Extension<TcpProbe>>,
    headers: HeaderMap,
    ApiText(body): ApiText,
) -> Result<Response, ApiError> {
    let Some(&(id, origin)) = instance() else {
        tracing::error!("no randomness for the echo's instance id");
        return Err(ApiError::internal("could not run the echo"));
    };
    let received_us = process_us(origin);
    let now_ms = state.clock().now().as_millisecond();
    let keys = &state.verifier().keys().challenge;
    let body = body.trim();
    let (round, best_us, begun_ms) = if body.is_empty() {
        (0, None, now_ms)
    } else {
        let step = keys.open_step(body).and_then(|bytes| Step::from_bytes(&bytes)).ok_or_else(|| {
            ApiError::bad_request(
                "the body is not a step of this verifier's echo: send nothing to start, then each answer's `echo` unchanged",
            )
        })?;
        if step.ip != canonical_ip(client.0) {
            return Err(ApiError::bad_request(
                "this echo step was issued to another address: start again with an empty body",
            ));
        }
        let age_ms = now_ms.saturating_sub(step.begun_ms);
        if !(-CLOCK_LEEWAY_MS..=HTTP_ECHO_LIFETIME_MS).contains(&age_ms) {
            return Err(ApiError::bad_request("this echo has expired: start again with an empty body"));
        }
        // Timed only on the instance that sealed it, and only while fresh.
        let elapsed = received_us.checked_sub(step.sealed_at_us).filter(|_| step.instance == id);
        let sample = elapsed
            .filter(|&us| us <= u64::try_from(ANSWER_WITHIN.as_micros()).unwrap_or(u64::MAX))
            .and_then(|us| u32::try_from(us).ok());
        let best = match (step.best_us, sample) {
            (Some(best), Some(sample)) => Some(best.min(sample)),
            (best, sample) => best.or(sample),
        };
        (step.round.saturating_add(1), best, step.begun_ms)
    };
    let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    if round >= HTTP_ROUNDS {
        state.admit_challenge(client)?;
        let source = TcpSource::of(&state, peer, probe, &headers);
        let echo = best_us.map(|us| Duration::from_micros(u64::from(us)));
        return Ok((no_store, Json(sealed_challenge(&state, client, echo, source)?)).into_response());
    }
    let step =
        Step { instance: id, round, begun_ms, sealed_at_us: process_us(origin), best_us, ip: client.0 };
    Ok((no_store, Json(EchoStep { echo: keys.seal_step(&step.to_bytes()) })).into_response())
}
