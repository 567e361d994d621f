//! The hidden leg over real sockets: `GET /v1/echo` answered directly and
//! through a relay that ends the TCP connection and delays the client's
//! side, as a browser far behind a Shadowsocks or SOCKS exit would be; the
//! sealed figures through `POST /v1/verify`; and clients that withhold,
//! forge or edit. The same for the echo over plain HTTP (`POST /v1/echo`).

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use meridian_protocol::{base64url_decode, base64url_encode};
use meridian_verifier::challenge::Latency;
use meridian_verifier::clock::ShiftedClock;
use meridian_verifier::geo::Country;
use meridian_verifier::http::{ApiState, ServeLimits, VerifySecret, router};
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::testkit::relay::{DelayRelay, RelayMode};
use meridian_verifier::testkit::{Minter, intel_placing};
use meridian_verifier::{Policy, Verifier};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "echo-test-secret-0123456789";

/// A verifier on loopback whose clients appear to be in Singapore, with CN
/// restricted.
struct Service {
    address: SocketAddr,
    minter: Minter,
    /// The verifier's clock, which a test may move.
    clock: Arc<ShiftedClock>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Service {
    async fn start() -> Self {
        Self::start_limited(ServeLimits::default()).await
    }

    async fn start_limited(limits: ServeLimits) -> Self {
        let minter = Minter::new(45);
        let policy = Policy { restricted_regions: vec![Country::parse("CN").unwrap()], ..Policy::default() };
        let verifier = Verifier::new(minter.keys.clone(), policy, Arc::new(MemoryReplayStore::new(1_000)))
            .with_intel(Arc::new(intel_placing(&[("127.0.0.0/8", "SG")])));
        let clock = Arc::new(ShiftedClock::default());
        let api = ApiState::new(verifier, vec![VerifySecret::new(SECRET).unwrap()], clock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = router(api);
        let task = tokio::spawn(async move {
            let _ = meridian_verifier::http::serve(listener, app, limits, std::future::pending()).await;
        });
        Self { address, minter, clock, task }
    }

    /// Signs claims of an honest browser in `zone` with `challenge` and
    /// asks `/v1/verify` about them.
    async fn verify(&self, challenge: &str, zone: &str, languages: &[&str]) -> Value {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let now = jiff::Timestamp::now().as_millisecond();
        let mut claims = self.minter.honest_claims(ip, now, [1; 16], zone, languages[0], languages).unwrap();
        claims.challenge = challenge.to_owned();
        let token = self.minter.sign(&claims);
        let response = reqwest::Client::new()
            .post(format!("http://{}/v1/verify", self.address))
            .bearer_auth(SECRET)
            .json(&json!({ "token": token, "remote_ip": "127.0.0.1" }))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    fn open(&self, challenge: &str) -> Option<Latency> {
        let now = jiff::Timestamp::now().as_millisecond();
        self.minter.keys.challenge.open(challenge, now, 5_000).unwrap().latency
    }
}

/// How the test client answers pings.
#[derive(Clone, Copy)]
enum Answer {
    /// Each ping straight back.
    Echo,
    /// Nothing (a page that does not take part).
    Silent,
    /// A made-up echo for every ping: the right index, a guessed nonce.
    Forge,
}

/// Runs the echo as a page would, through `via` (the service itself or a
/// relay in front of it), and returns the challenge response.
async fn echo(via: SocketAddr, answer: Answer) -> Value {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{via}/v1/echo")).await.unwrap();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap() {
        match message.unwrap() {
            Message::Binary(frame) => match answer {
                Answer::Echo => socket.send(Message::Binary(frame)).await.unwrap(),
                Answer::Silent => {}
                Answer::Forge => {
                    let mut forged = frame.to_vec();
                    forged[1..].fill(0x42);
                    socket.send(Message::Binary(forged.into())).await.unwrap();
                }
            },
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            _ => {}
        }
    }
    panic!("the echo closed without a challenge");
}

/// Runs the echo over HTTP as the drop-in does, through `via`, holding each
/// step `hold` before sending it back; returns the challenge response and
/// how many requests it took.
async fn http_echo(via: SocketAddr, hold: Duration) -> (Value, usize) {
    let client = reqwest::Client::new();
    let mut body = String::new();
    for requests in 1..=32 {
        let response = client.post(format!("http://{via}/v1/echo")).body(body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let answer: Value = response.json().await.unwrap();
        if answer.get("challenge").is_some() {
            return (answer, requests);
        }
        body = answer["echo"].as_str().unwrap().to_owned();
        tokio::time::sleep(hold).await;
    }
    panic!("the echo over HTTP never ended");
}

async fn post_step(via: SocketAddr, from: &str, step: &str) -> (u16, Value) {
    let client = reqwest::Client::builder().local_address(from.parse::<IpAddr>().unwrap()).build().unwrap();
    let response = client.post(format!("http://{via}/v1/echo")).body(step.to_owned()).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn reason_codes(answer: &Value) -> Vec<&str> {
    answer["reasons"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_direct_page_shows_no_hidden_leg() {
    let service = Service::start().await;
    let response = echo(service.address, Answer::Echo).await;
    assert!(response["server_time_ms"].as_i64().unwrap() > 0 && response["expires_in_s"] == 120);
    let challenge = response["challenge"].as_str().unwrap();
    let latency = service.open(challenge).expect("a timed challenge");
    eprintln!("direct: {latency:?}");
    let tcp = latency.tcp_rtt_us.expect("the kernel's round trip on loopback");
    assert!(tcp < 20_000, "{latency:?}");
    assert!(latency.hidden_leg_us().unwrap() < 25_000, "{latency:?}");

    let answer = service.verify(challenge, "Asia/Singapore", &["en-SG", "en"]).await;
    assert_eq!(answer["verdict"], "allow", "{answer}");
    assert!(!reason_codes(&answer).contains(&"relay_latency"), "{answer}");
    let figures = &answer["network"]["latency"];
    assert!(figures["tcp_rtt_ms"].as_f64().unwrap() < 20.0, "{answer}");
    assert!(figures["echo_rtt_ms"].as_f64().unwrap() >= 0.0, "{answer}");
    assert!(figures["hidden_leg_ms"].as_f64().unwrap() < 25.0, "{answer}");
}

#[tokio::test]
async fn a_page_behind_a_relay_shows_the_relays_distance() {
    let service = Service::start().await;
    // 20 ms each way between the page and the relay: 40 ms the server's
    // socket cannot see.
    let relay =
        DelayRelay::start(RelayMode::Forward(service.address), Duration::from_millis(20)).await.unwrap();
    let response = echo(relay.address, Answer::Echo).await;
    let challenge = response["challenge"].as_str().unwrap().to_owned();
    let latency = service.open(&challenge).expect("a timed challenge");
    eprintln!("relayed (40 ms): {latency:?}");
    assert!(latency.tcp_rtt_us.unwrap() < 20_000, "the socket times only the relay: {latency:?}");
    assert!(latency.hidden_leg_us().unwrap() >= 39_000, "{latency:?}");

    // Every browser signal agrees with Singapore: only physics speaks.
    let answer = service.verify(&challenge, "Asia/Singapore", &["en-SG", "en"]).await;
    assert_eq!(answer["verdict"], "review", "{answer}");
    assert_eq!(reason_codes(&answer), ["relay_latency"], "{answer}");
    let hidden = answer["network"]["latency"]["hidden_leg_ms"].as_f64().unwrap();
    assert!(hidden >= 39.0, "{answer}");
    let detail = answer["reasons"][0]["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("{hidden:.1} ms")) || detail.contains(" ms lie beyond"), "{detail}");

    // The same relay with a device that points into the restricted region
    // (zone only, English): deny.
    let response = echo(relay.address, Answer::Echo).await;
    let answer =
        service.verify(response["challenge"].as_str().unwrap(), "Asia/Shanghai", &["en-US", "en"]).await;
    assert_eq!(answer["verdict"], "deny", "{answer}");
    assert!(reason_codes(&answer).contains(&"relay_latency"), "{answer}");
}

#[tokio::test]
async fn a_page_that_withholds_or_forges_the_echo_gets_no_timing() {
    let service = Service::start().await;
    for answer in [Answer::Silent, Answer::Forge] {
        let response = echo(service.address, answer).await;
        let challenge = response["challenge"].as_str().unwrap();
        assert_eq!(service.open(challenge), None, "a plain challenge");
        let verdict = service.verify(challenge, "Asia/Singapore", &["en-SG", "en"]).await;
        assert!(verdict["network"].get("latency").is_none(), "{verdict}");
    }
}

#[tokio::test]
async fn sealed_figures_edited_by_the_client_are_refused() {
    let service = Service::start().await;
    let relay =
        DelayRelay::start(RelayMode::Forward(service.address), Duration::from_millis(20)).await.unwrap();
    let response = echo(relay.address, Answer::Echo).await;
    let challenge = response["challenge"].as_str().unwrap();
    let mut bytes = base64url_decode(challenge).unwrap();
    // The echo round trip (bytes 54..58): made to look direct.
    let tcp = u32::from_be_bytes(bytes[50..54].try_into().unwrap());
    bytes[54..58].copy_from_slice(&(tcp + 100).to_be_bytes());
    let answer = service.verify(&base64url_encode(&bytes), "Asia/Singapore", &["en-SG", "en"]).await;
    assert_eq!(answer["success"], false, "{answer}");
    assert_eq!(answer["error_codes"], json!(["bad-challenge"]), "{answer}");
}

#[tokio::test]
async fn the_echo_is_a_websocket_and_says_so() {
    let service = Service::start().await;
    let response = reqwest::get(format!("http://{}/v1/echo", service.address)).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_codes"], json!(["bad-request"]), "{body}");
    assert!(body["message"].as_str().unwrap().contains("WebSocket"), "{body}");
}

#[tokio::test]
async fn an_oversized_frame_ends_the_echo_without_a_challenge() {
    let service = Service::start().await;
    let url = format!("ws://{}/v1/echo", service.address);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::Binary(vec![0u8; 4096].into())).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => panic!("a challenge after an oversized frame: {text}"),
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the echo stayed open after an oversized frame"),
        }
    }
}

#[tokio::test]
async fn the_echo_over_http_times_a_direct_client_and_a_relayed_one() {
    let service = Service::start().await;
    let (response, requests) = http_echo(service.address, Duration::ZERO).await;
    // Eight timed round trips: the empty start and one request per step.
    assert_eq!(requests, 9);
    let challenge = response["challenge"].as_str().unwrap();
    let latency = service.open(challenge).expect("a timed challenge");
    eprintln!("direct over HTTP: {latency:?}");
    assert!(latency.tcp_rtt_us.is_some(), "{latency:?}");
    assert!(latency.hidden_leg_us().unwrap() < 25_000, "{latency:?}");
    let answer = service.verify(challenge, "Asia/Singapore", &["en-SG", "en"]).await;
    assert_eq!(answer["verdict"], "allow", "{answer}");

    let relay =
        DelayRelay::start(RelayMode::Forward(service.address), Duration::from_millis(20)).await.unwrap();
    let (response, _) = http_echo(relay.address, Duration::ZERO).await;
    let challenge = response["challenge"].as_str().unwrap();
    let latency = service.open(challenge).expect("a timed challenge");
    eprintln!("relayed over HTTP (40 ms): {latency:?}");
    assert!(latency.tcp_rtt_us.unwrap() < 20_000, "the socket times only the relay: {latency:?}");
    assert!(latency.hidden_leg_us().unwrap() >= 39_000, "{latency:?}");
    let answer = service.verify(challenge, "Asia/Singapore", &["en-SG", "en"]).await;
    assert_eq!(answer["verdict"], "review", "{answer}");
    assert_eq!(reason_codes(&answer), ["relay_latency"], "{answer}");
}

#[tokio::test]
async fn a_client_can_lengthen_the_echo_over_http_but_not_forge_move_or_shorten_it() {
    let service = Service::start().await;
    // Holding every step: the least round trip grows by the hold.
    let (response, _) = http_echo(service.address, Duration::from_millis(30)).await;
    let latency = service.open(response["challenge"].as_str().unwrap()).unwrap();
    assert!(latency.echo_rtt_us >= 30_000, "{latency:?}");

    // A step altered, made up, or carried to another address: refused.
    let client = reqwest::Client::new();
    let first: Value = client
        .post(format!("http://{}/v1/echo", service.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let step = first["echo"].as_str().unwrap();
    let mut altered = base64url_decode(step).unwrap();
    altered[9] ^= 1; // the round
    let too_long = "A".repeat(5_000);
    for (from, body) in [
        ("127.0.0.1", base64url_encode(&altered)),
        ("127.0.0.1", "not a step".to_owned()),
        ("127.0.0.1", too_long),
        ("127.0.0.2", step.to_owned()),
    ] {
        let (status, answer) = post_step(service.address, from, &body).await;
        assert_eq!(status, 400, "{from} {body:.30}: {answer}");
        assert_eq!(answer["error_codes"], json!(["bad-request"]), "{answer}");
        assert!(answer["message"].as_str().unwrap().contains("echo"), "{answer}");
    }
    // Not text, or over the body limit: the API's own errors, never a panic.
    let refused = client
        .post(format!("http://{}/v1/echo", service.address))
        .body(vec![0xff, 0xfe, 0x00, 0x80])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let answer: Value = refused.json().await.unwrap();
    assert_eq!(answer["error_codes"], json!(["bad-request"]), "{answer}");
    let huge = client
        .post(format!("http://{}/v1/echo", service.address))
        .body(vec![b'A'; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    // A step of an echo begun more than 20 s before, by the verifier's
    // clock (any instance's: it is wall-clock time), or far in its future.
    for shift in [20_500, -23_000] {
        service.clock.advance_ms(shift);
        let (status, answer) = post_step(service.address, "127.0.0.1", step).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains("expired"), "{answer}");
    }
    service.clock.advance_ms(2_500);
    // A challenge is not a step.
    let plain: Value =
        reqwest::get(format!("http://{}/v1/challenge", service.address)).await.unwrap().json().await.unwrap();
    let (status, _) = post_step(service.address, "127.0.0.1", plain["challenge"].as_str().unwrap()).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_echo_keeps_its_connection_counted_until_it_ends() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let service = Service::start_limited(ServeLimits { max_connections: 1, ..ServeLimits::default() }).await;
    let address = service.address;
    // Served, and answered with a status line; or closed at once (0 bytes).
    let served = || async move {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.unwrap();
        read.unwrap_or(0) > 0
    };
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/v1/echo")).await.unwrap();
    // The echo has begun: its first ping is here.
    let first = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(first, Message::Binary(_)), "{first:?}");
    // Upgraded, the connection still holds the one place.
    assert!(!served().await, "a second connection was served while the echo ran");
    drop(socket);
    // Once the echo has ended, the place is free again.
    let mut freed = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if served().await {
            freed = true;
            break;
        }
    }
    assert!(freed, "the place of an ended echo was not given back");
}
