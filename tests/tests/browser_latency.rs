//! The hidden leg in real browsers: the drop-in takes its challenge through
//! the verifier's echo in every engine; a Chromium behind a SOCKS5 relay
//! that adds 30–80 ms on the browser's side is reported with
//! `relay_latency` and the figures, while a direct one is not, even on a
//! loaded machine; where no WebSocket gets through, the echo over plain
//! requests tells the same; one that blocks the echo is held for review; one that
//! routes the verifier around its exit from a restricted region is denied.
//!
//! The demo places 127.0.0.0/8 in Singapore and trusts no proxy, so its own
//! socket is the browser's (or the relay's) connection.

#![allow(clippy::panic, reason = "tests fail by panicking")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use meridian_tests::{
    Browser, BrowserOptions, DemoOptions, DemoServer, Engine, start_browser, start_demo_configured, verify,
};
use meridian_verifier::testkit::intel_placing;
use meridian_verifier::testkit::relay::{DelayRelay, RelayMode};
use serde_json::{Value, json};

async fn demo_in_singapore() -> DemoServer {
    start_demo_configured(DemoOptions {
        intel: intel_placing(&[("127.0.0.0/8", "SG")]),
        ..DemoOptions::default()
    })
    .await
}

fn singapore(engine: Engine) -> BrowserOptions {
    BrowserOptions {
        engine,
        time_zone: Some("Asia/Singapore".into()),
        accept_language: Some("en-SG,en".into()),
        ..BrowserOptions::default()
    }
}

async fn judge(demo: &DemoServer, token: &str) -> Value {
    let (status, answer) = verify(&demo.origin, json!({ "token": token, "remote_ip": "127.0.0.1" })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], true, "{answer}");
    answer
}

fn codes(answer: &Value) -> Vec<String> {
    answer["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["code"].as_str().map(str::to_owned))
        .collect()
}

fn figure(answer: &Value, name: &str) -> f64 {
    answer["network"]["latency"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("network.latency.{name} is missing: {answer}"))
}

#[tokio::test]
async fn every_engine_takes_its_challenge_through_the_echo() {
    let demo = demo_in_singapore().await;
    for engine in Engine::ALL {
        let browser = start_browser(singapore(engine)).await;
        let token = browser.collect_token(&demo.origin, "login").await;
        let answer = judge(&demo, &token).await;
        let hidden = figure(&answer, "hidden_leg_ms");
        println!(
            "{engine}: tcp {} ms, echo {} ms, hidden leg {hidden} ms",
            figure(&answer, "tcp_rtt_ms"),
            figure(&answer, "echo_rtt_ms")
        );
        assert!(hidden < 25.0, "{engine}: {answer}");
        assert!(!codes(&answer).iter().any(|c| c == "relay_latency"), "{engine}: {answer}");
    }
}

#[tokio::test]
async fn a_browser_behind_a_socks_relay_is_reported_with_its_distance() {
    let demo = demo_in_singapore().await;
    // 15 and 40 ms each way: 30 and 80 ms of round trip the demo's socket,
    // which ends at the relay, never sees.
    for one_way_ms in [15, 40] {
        let relay = DelayRelay::start(RelayMode::Socks5, Duration::from_millis(one_way_ms))
            .await
            .unwrap_or_else(|e| panic!("relay: {e}"));
        let browser = start_browser(BrowserOptions {
            proxy_server: Some(format!("socks5://{}", relay.address)),
            ..singapore(Engine::Chromium)
        })
        .await;
        let token = browser.collect_token(&demo.origin, "login").await;
        let answer = judge(&demo, &token).await;
        let (tcp, hidden) = (figure(&answer, "tcp_rtt_ms"), figure(&answer, "hidden_leg_ms"));
        println!("relay {one_way_ms} ms each way: tcp {tcp} ms, hidden leg {hidden} ms");
        assert!(tcp < 10.0, "the socket times the relay only: {answer}");
        assert!(hidden >= (2 * one_way_ms) as f64 - 1.0, "{answer}");
        assert!(codes(&answer).iter().any(|c| c == "relay_latency"), "{answer}");
        // Every browser signal agrees with Singapore: physics alone, review.
        assert_eq!(answer["verdict"], "review", "{answer}");
    }
}

/// A page whose WebSocket constructor refuses, as behind a filtering proxy
/// or security software that lets no WebSocket through.
const NO_WEBSOCKET: &str =
    "window.WebSocket = class { constructor() { throw new DOMException('blocked', 'SecurityError'); } };";

#[tokio::test]
async fn a_browser_without_websockets_is_timed_over_plain_requests() {
    // Where no WebSocket gets through, the drop-in runs the echo over plain
    // requests (`POST /v1/echo`): the direct browser still shows no hidden
    // leg and is allowed; the relayed one shows the relay's distance.
    let demo = demo_in_singapore().await;
    let browser = start_browser(BrowserOptions {
        init_script: Some(NO_WEBSOCKET.into()),
        ..singapore(Engine::Chromium)
    })
    .await;
    let token = browser.collect_token(&demo.origin, "login").await;
    let answer = judge(&demo, &token).await;
    let hidden = figure(&answer, "hidden_leg_ms");
    println!("direct, no WebSocket: echo {} ms, hidden leg {hidden} ms", figure(&answer, "echo_rtt_ms"));
    assert!(hidden < 25.0, "{answer}");
    assert_eq!(answer["verdict"], "allow", "{answer}");
    drop(browser);

    let relay = DelayRelay::start(RelayMode::Socks5, Duration::from_millis(40))
        .await
        .unwrap_or_else(|e| panic!("relay: {e}"));
    let browser = start_browser(BrowserOptions {
        proxy_server: Some(format!("socks5://{}", relay.address)),
        init_script: Some(NO_WEBSOCKET.into()),
        ..singapore(Engine::Chromium)
    })
    .await;
    let token = browser.collect_token(&demo.origin, "login").await;
    let answer = judge(&demo, &token).await;
    let (tcp, hidden) = (figure(&answer, "tcp_rtt_ms"), figure(&answer, "hidden_leg_ms"));
    println!("relay 40 ms each way, no WebSocket: tcp {tcp} ms, hidden leg {hidden} ms");
    assert!(tcp < 10.0, "the socket times the relay only: {answer}");
    assert!(hidden >= 79.0, "{answer}");
    assert_eq!(codes(&answer), ["relay_latency"], "{answer}");
    assert_eq!(answer["verdict"], "review", "{answer}");
}

#[tokio::test]
async fn chromium_and_webkit_without_websockets_take_the_echo_over_plain_requests() {
    // (Firefox's WebDriver scripts run in a sandbox whose globals are not
    // the page's, and the demo's CSP allows no inline script to reach them.)
    let demo = demo_in_singapore().await;
    let counted = format!(
        "{NO_WEBSOCKET} window.echoPosts = 0; const pageFetch = window.fetch; \
         window.fetch = (url, init) => {{ if (String(url).includes('/v1/echo')) window.echoPosts++; return pageFetch(url, init); }};"
    );
    for engine in [Engine::Chromium, Engine::WebKit] {
        let browser = start_browser(singapore(engine)).await;
        let token = browser.collect_token_after(&format!("{}/", demo.origin), "login", &counted).await;
        assert_eq!(browser.eval("window.echoPosts").await, 9, "{engine}: the start and eight steps");
        let answer = judge(&demo, &token).await;
        let hidden = figure(&answer, "hidden_leg_ms");
        println!(
            "{engine}, no WebSocket: echo {} ms, hidden leg {hidden} ms",
            figure(&answer, "echo_rtt_ms")
        );
        assert!(hidden < 25.0, "{engine}: {answer}");
        assert_eq!(answer["verdict"], "allow", "{engine}: {answer}");
    }
}

#[tokio::test]
async fn a_relayed_browser_that_blocks_the_echo_is_still_reviewed() {
    // The person hiding behind the relay above, who has learnt that the
    // echo gives them away and blocks it, WebSocket and plain requests
    // alike (as an extension or a filter rule on `/v1/echo` would): the
    // drop-in falls back to a plain challenge, so no distance is measured.
    // The demo's policy expects the echo (`withheld_echo = "review"`).
    let demo = demo_in_singapore().await;
    let relay = DelayRelay::start(RelayMode::Socks5, Duration::from_millis(40))
        .await
        .unwrap_or_else(|e| panic!("relay: {e}"));
    let browser = start_browser(BrowserOptions {
        proxy_server: Some(format!("socks5://{}", relay.address)),
        init_script: Some(format!(
            "{NO_WEBSOCKET} const pageFetch = window.fetch; window.fetch = (url, init) => \
             String(url).includes('/v1/echo') ? Promise.reject(new TypeError('blocked')) : pageFetch(url, init);"
        )),
        ..singapore(Engine::Chromium)
    })
    .await;
    let token = browser.collect_token(&demo.origin, "login").await;
    let answer = judge(&demo, &token).await;
    println!("echo blocked behind the relay: {}", answer["reasons"]);
    assert!(answer["network"]["latency"].is_null(), "no echo ran: {answer}");
    assert_eq!(codes(&answer), ["echo_withheld"], "{answer}");
    assert_eq!(answer["verdict"], "review", "{answer}");
}

#[tokio::test]
async fn a_direct_browser_on_a_loaded_machine_is_not_reported() {
    let demo = demo_in_singapore().await;
    let browser = start_browser(singapore(Engine::Chromium)).await;
    // Both cores busy while the browser collects, for a bounded time.
    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let mut hidden = Vec::new();
    for _ in 0..5 {
        let token = browser.collect_token(&demo.origin, "login").await;
        let answer = judge(&demo, &token).await;
        hidden.push(figure(&answer, "hidden_leg_ms"));
        assert!(!codes(&answer).iter().any(|c| c == "relay_latency"), "{answer}");
    }
    stop.store(true, Ordering::Relaxed);
    for burner in burners {
        let _ = burner.join();
    }
    println!("hidden legs under load: {hidden:?} ms");
}

/// Split routing: a proxy rule sends the verifier's host DIRECT, from this
/// machine (placed in CN), and the site through a Singapore exit, so the
/// echo runs cleanly from home while the login comes from Singapore.
/// The browser here takes its challenge directly and the login is judged
/// as from 198.51.100.10, the exit, as the site would report it.
#[tokio::test]
async fn a_browser_that_routes_the_verifier_around_its_exit_gains_nothing() {
    let demo = start_demo_configured(DemoOptions {
        intel: intel_placing(&[("198.51.100.0/24", "SG"), ("127.0.0.0/8", "CN")]),
        ..DemoOptions::default()
    })
    .await;
    let browser = start_browser(singapore(Engine::Chromium)).await;
    let token = browser.collect_token(&demo.origin, "login").await;
    let (status, answer) =
        verify(&demo.origin, json!({ "token": token, "remote_ip": "198.51.100.10" })).await;
    assert_eq!((status, &answer["success"]), (200, &json!(true)), "{answer}");
    println!("split routing: {}", answer["reasons"]);
    let found = codes(&answer);
    // The echo timed another network than the login's: it counts as none,
    // and the challenge itself came from a restricted region.
    assert!(found.iter().any(|c| c == "echo_withheld"), "{answer}");
    assert!(found.iter().any(|c| c == "restricted_region_ip"), "{answer}");
    assert!(!found.iter().any(|c| c == "outside_region_by_latency"), "{answer}");
    assert_eq!(answer["verdict"], "deny", "{answer}");

    // An honest user whose challenge and login leave by two addresses of
    // one country (dual stack) keeps the echo.
    let demo = start_demo_configured(DemoOptions {
        intel: intel_placing(&[("198.51.100.0/24", "SG"), ("127.0.0.0/8", "SG")]),
        ..DemoOptions::default()
    })
    .await;
    let token = browser.collect_token(&demo.origin, "login").await;
    let (_, answer) = verify(&demo.origin, json!({ "token": token, "remote_ip": "198.51.100.10" })).await;
    assert!(!codes(&answer).iter().any(|c| c == "echo_withheld"), "{answer}");
    assert!(answer["network"]["latency"]["hidden_leg_ms"].as_f64().is_some_and(|ms| ms < 25.0), "{answer}");
    assert_eq!(answer["verdict"], "allow", "{answer}");
}

/// A demo whose UDP port is open, trusting loopback as its proxy so that
/// the browser's login can present a Singapore address while its UDP comes
/// from this machine's own address (192.0.2.0/24 here, placed in CN).
async fn demo_with_udp() -> DemoServer {
    start_demo_configured(DemoOptions {
        intel: intel_placing(&[("198.51.100.0/24", "SG"), ("192.0.2.0/24", "CN"), ("127.0.0.0/8", "CN")]),
        trusted_proxies: vec!["127.0.0.1/32".into()],
        udp_origin: true,
        ..DemoOptions::default()
    })
    .await
}

/// Collects through the demo as a login from a Singapore address (through
/// the trusted proxy) and verifies it: the address and the answer.
async fn sign_in_from_singapore(demo: &DemoServer, browser: &Browser) -> (std::net::IpAddr, Value) {
    let login: std::net::IpAddr = [198, 51, 100, 10].into();
    browser.forward_for(login).await;
    let token = browser.collect_token(&demo.origin, "login").await;
    let (status, answer) =
        verify(&demo.origin, json!({ "token": token, "remote_ip": login.to_string() })).await;
    assert_eq!(status, 200, "{answer}");
    (login, answer)
}

#[tokio::test]
async fn a_browser_behind_a_proxy_shows_its_second_origin_over_udp() {
    let demo = demo_with_udp().await;
    let browser = start_browser(singapore(Engine::Chromium)).await;
    let (login, answer) = sign_in_from_singapore(&demo, &browser).await;
    println!("second origin: {}", answer["network"]["udp_origin"]);
    let udp = &answer["network"]["udp_origin"];
    assert_eq!(udp["country"], "CN", "{answer}");
    assert_ne!(udp["ip"], login.to_string(), "{answer}");
    let codes = codes(&answer);
    assert!(codes.iter().any(|c| c == "udp_origin_mismatch"), "{answer}");
    assert!(codes.iter().any(|c| c == "restricted_region_ip"), "{answer}");
    assert_eq!(answer["verdict"], "deny", "{answer}");
}

#[tokio::test]
async fn a_browser_whose_udp_is_blocked_is_not_penalised() {
    let demo = demo_with_udp().await;
    let browser = start_browser(BrowserOptions {
        webrtc_ip_handling_policy: Some("disable_non_proxied_udp".into()),
        ..singapore(Engine::Chromium)
    })
    .await;
    let (_, answer) = sign_in_from_singapore(&demo, &browser).await;
    assert!(answer["network"].get("udp_origin").is_none(), "{answer}");
    assert_eq!(answer["verdict"], "allow", "{answer}");
    assert!(codes(&answer).is_empty(), "{answer}");
}
