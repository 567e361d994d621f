//! The challenge through the verifier's echo (`GET /v1/echo`), as the
//! browser drop-in takes it: the verifier sends pings on a WebSocket, this
//! client sends each back at once, and the verifier seals the least round
//! trip and its own TCP round trip into the challenge that arrives last
//! (docs/PROTOCOL.md). A relay that ends the connection at its exit (an
//! HTTP or SOCKS proxy) is then as visible for a command-line client as for
//! a browser. The WebSocket runs on the connection reqwest upgrades, so it
//! takes the same proxies as the challenge request. Where the upgrade is
//! refused (a proxy that lets no WebSocket through), the same echo runs
//! over plain requests (`POST /v1/echo`).

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::ChallengeResponse;

/// How long the whole echo may take (the verifier's own bound is 16 pings
/// 2 ms apart, then 3 s for the last answer).
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest frame the verifier sends: a 9-byte ping, or the challenge
/// answer (a few hundred bytes).
const MAX_FRAME: usize = 4096;

/// The echo's URL beside a challenge URL (`…/challenge` → `…/echo`).
pub(crate) fn echo_url(challenge_url: &str) -> Option<String> {
    let mut url = url::Url::parse(challenge_url).ok()?;
    let path = url.path().strip_suffix("challenge")?.to_owned();
    url.set_path(&format!("{path}echo"));
    Some(url.into())
}

/// Takes a challenge through the echo at `url`: the answer and the instant
/// the last ping's answer left (the request the challenge answers).
pub(crate) async fn challenge(
    client: &reqwest::Client,
    url: &str,
) -> Result<(ChallengeResponse, Instant), String> {
    tokio::time::timeout(ECHO_TIMEOUT, run(client, url))
        .await
        .map_err(|_| format!("no challenge within {ECHO_TIMEOUT:?}"))?
}

async fn run(client: &reqwest::Client, url: &str) -> Result<(ChallengeResponse, Instant), String> {
    let started = Instant::now();
    let key = generate_key();
    let response = client
        .get(url)
        .header(reqwest::header::CONNECTION, "Upgrade")
        .header(reqwest::header::UPGRADE, "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", &key)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("answered HTTP {}", response.status()));
    }
    let accept = response.headers().get("Sec-WebSocket-Accept").and_then(|v| v.to_str().ok());
    if accept != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err("the upgrade's Sec-WebSocket-Accept is not this request's".into());
    }
    let upgraded = response.upgrade().await.map_err(|e| e.to_string())?;
    let config = WebSocketConfig::default().max_message_size(Some(MAX_FRAME)).max_frame_size(Some(MAX_FRAME));
    let mut socket = WebSocketStream::from_raw_socket(upgraded, Role::Client, Some(config)).await;
    let mut sent = None;
    while let Some(message) = socket.next().await {
        match message.map_err(|e| e.to_string())? {
            Message::Binary(ping) => {
                // The last ping carries the high bit of its index byte.
                if ping.first().is_some_and(|index| index & 0x80 != 0) {
                    sent = Some(Instant::now());
                }
                socket.send(Message::Binary(ping)).await.map_err(|e| e.to_string())?;
            }
            Message::Text(text) => {
                let body: ChallengeResponse = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                let _ = socket.close(None).await;
                // Without a marked last ping, the whole echo is the round trip.
                return Ok((body, sent.unwrap_or(started)));
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    Err("the echo closed before its challenge".into())
}

/// Round trips the echo over plain requests may take before it must have
/// ended (the verifier ends it after eight).
const MAX_STEPS: usize = 16;

/// An answer of the echo over plain requests: the next step, or the
/// challenge.
#[derive(serde::Deserialize)]
struct StepAnswer {
    echo: Option<String>,
    challenge: Option<String>,
}

/// Takes a challenge through the echo over plain requests at `url`: each
/// answer is a step the next request sends back at once, and the last is
/// the challenge. Returns it with the instant the request it answers left.
pub(crate) async fn challenge_over_requests(
    client: &reqwest::Client,
    url: &str,
) -> Result<(ChallengeResponse, Instant), String> {
    let steps = async {
        let mut body = String::new();
        for _ in 0..MAX_STEPS {
            let sent = Instant::now();
            let answer: StepAnswer = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "text/plain")
                .body(body)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            match answer {
                StepAnswer { challenge: Some(challenge), .. } => {
                    return Ok((ChallengeResponse { challenge }, sent));
                }
                StepAnswer { echo: Some(step), .. } => body = step,
                StepAnswer { .. } => return Err("an echo answer with neither a step nor a challenge".into()),
            }
        }
        Err(format!("the echo did not end within {MAX_STEPS} round trips"))
    };
    tokio::time::timeout(ECHO_TIMEOUT, steps)
        .await
        .map_err(|_| format!("no challenge within {ECHO_TIMEOUT:?}"))?
}

#[cfg(test)]
mod tests {
    use super::echo_url;

    #[test]
    fn the_echo_sits_beside_the_challenge() {
        assert_eq!(
            echo_url("https://api.example.com/v1/challenge").as_deref(),
            Some("https://api.example.com/v1/echo")
        );
        assert_eq!(
            echo_url("http://127.0.0.1:8080/meridian/v1/challenge?x=1").as_deref(),
            Some("http://127.0.0.1:8080/meridian/v1/echo?x=1")
        );
        assert_eq!(echo_url("https://api.example.com/token"), None);
    }
}
