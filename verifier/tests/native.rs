//! The native collector end to end: `meridian collect`, run as its own
//! process with `TZ` and `LANG` set, signs a token against a live service;
//! the service's API route reads it from the `Meridian-Token` header and
//! judges it with the same policy as a browser's.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use meridian_protocol::jwk::Jwk;
use meridian_verifier::clock::SystemClock;
use meridian_verifier::geo::Country;
use meridian_verifier::http::{ApiState, CheckedHeader, LoginCheck, ServeLimits, VerifySecret, router};
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::testkit::{Minter, intel_placing};
use meridian_verifier::{Policy, Verifier};
use serde_json::{Value, json};

const SECRET: &str = "native-test-secret-0123456789";

/// The service's guarded route: 200 with the verdict, 403 when denied.
async fn hello(check: CheckedHeader) -> Response {
    let body = json!({
        "verdict": check.verdict().as_str(),
        "errors": check.outcome.error_codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "reasons": check.outcome.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
    });
    let status = match check.verdict() {
        meridian_verifier::verdict::Verdict::Deny => StatusCode::FORBIDDEN,
        _ => StatusCode::OK,
    };
    (status, Json(body)).into_response()
}

/// A service on loopback whose clients all appear to come from `country`,
/// restricting CN, with its challenge route and the guarded `/api/hello`.
struct Service {
    origin: String,
    key: PathBuf,
    dir: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A front that lets no WebSocket through, as some proxies do.
async fn refuse_upgrades(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.headers().contains_key(axum::http::header::UPGRADE) {
        return StatusCode::FORBIDDEN.into_response();
    }
    next.run(request).await
}

impl Service {
    async fn start(name: &str, country: &str) -> Self {
        Self::start_with(name, country, false).await
    }

    /// [`Self::start`], behind a front that refuses WebSocket upgrades when
    /// `no_websockets`.
    async fn start_with(name: &str, country: &str, no_websockets: bool) -> Self {
        let minter = Minter::new(44);
        let policy = Policy {
            restricted_regions: vec![Country::parse("CN").unwrap()],
            withheld_echo: meridian_verifier::verdict::Verdict::Review,
            ..Policy::default()
        };
        let verifier = Verifier::new(minter.keys.clone(), policy, Arc::new(MemoryReplayStore::new(1_000)))
            .with_intel(Arc::new(intel_placing(&[("127.0.0.0/8", country)])));
        let api = ApiState::new(verifier, vec![VerifySecret::new(SECRET).unwrap()], Arc::new(SystemClock));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let check: LoginCheck =
            api.login_check().expect_action(Some("api")).expect_origin(Some(&format!("native:{origin}")));
        let mut app =
            router(api).merge(axum::Router::new().route("/api/hello", get(hello)).with_state(check));
        if no_websockets {
            app = app.layer(axum::middleware::from_fn(refuse_upgrades));
        }
        let task = tokio::spawn(async move {
            let _ =
                meridian_verifier::http::serve(listener, app, ServeLimits::default(), std::future::pending())
                    .await;
        });
        let dir = std::env::temp_dir().join(format!("meridian-native-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("collector.jwk");
        std::fs::write(&key, serde_json::to_string(&Jwk::private(&minter.signing_key)).unwrap()).unwrap();
        Self { origin, key, dir, task }
    }

    /// `meridian collect` in a process of its own, with only `env` set.
    fn collect(&self, env: &[(&str, &str)]) -> String {
        collect_from(&format!("{}/v1/challenge", self.origin), &self.key, env)
    }

    /// What `POST /v1/verify` answers about a token made for `origin`
    /// (this service's, or a relay's in front of it).
    async fn verify(&self, token: &str, origin: &str) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/verify", self.origin))
            .bearer_auth(SECRET)
            .json(&json!({
                "token": token,
                "remote_ip": "127.0.0.1",
                "expected_action": "api",
                "expected_origin": format!("native:{origin}"),
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Calls the guarded route with `token` in the header.
    async fn call(&self, token: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .get(format!("{}/api/hello", self.origin))
            .header("Meridian-Token", token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

fn collect_from(url: &str, key: &Path, env: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["collect", "--challenge-url", url, "--action", "api", "--key"])
        .arg(key)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(output.status.success(), "meridian collect: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shanghai_machine_behind_a_singapore_ip_is_denied() {
    let service = Service::start("shanghai", "SG").await;
    let token = service.collect(&[("TZ", "Asia/Shanghai"), ("LANG", "zh_CN.UTF-8")]);
    let claims = meridian_verifier::UntrustedToken::parse(&token).unwrap().unverified_claims().unwrap();
    assert_eq!(claims.time_zone.zone, "Asia/Shanghai", "TZ is what the machine says");
    assert_eq!((claims.time_zone.offset_now_min, claims.time_zone.offset_jul_min), (480, 480));
    assert_eq!(claims.locale.languages, ["zh-CN", "zh"]);
    assert_eq!(claims.origin, format!("native:{}", service.origin));
    assert!(claims.integrity.is_none() && claims.worker.is_none(), "no page, no page checks");

    let (status, body) = service.call(&token).await;
    assert_eq!((status, body["verdict"].as_str()), (403, Some("deny")), "{body}");
    let reasons = strings(&body["reasons"]);
    assert!(reasons.contains(&"restricted_region_claim"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokyo_machine_with_a_german_locale_and_a_japanese_ip_is_allowed() {
    let service = Service::start("tokyo", "JP").await;
    let token = service.collect(&[("TZ", "Asia/Tokyo"), ("LANG", "de_DE.UTF-8")]);
    let (status, body) = service.call(&token).await;
    assert_eq!((status, body["verdict"].as_str()), (200, Some("allow")), "a traveller passes: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_replayed_missing_and_misbound_tokens_are_refused() {
    let service = Service::start("refused", "JP").await;
    let env = [("TZ", "Asia/Tokyo"), ("LANG", "ja_JP.UTF-8")];

    // Edited after signing: Asia/Tokyo made Asia/Singapore in the payload.
    let token = service.collect(&env);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let payload = meridian_protocol::base64url_decode(&parts[1]).unwrap();
    let edited = String::from_utf8(payload).unwrap().replace("Asia/Tokyo", "Asia/Singapore");
    parts[1] = meridian_protocol::base64url_encode(edited.as_bytes());
    let (status, body) = service.call(&parts.join(".")).await;
    assert_eq!((status, strings(&body["errors"])), (403, vec!["bad-signature"]), "{body}");

    // Replayed: the first use passes, the second is refused.
    let token = service.collect(&env);
    assert_eq!(service.call(&token).await.0, 200);
    let (status, body) = service.call(&token).await;
    assert_eq!((status, strings(&body["errors"])), (403, vec!["replayed"]), "{body}");

    // No header at all.
    let response = reqwest::get(format!("{}/api/hello", service.origin)).await.unwrap();
    assert_eq!(response.status().as_u16(), 403);

    // Made for another service: its challenge is from elsewhere, and its
    // origin names the other service.
    let other = Service::start("other", "JP").await;
    let token = other.collect(&env);
    let (status, body) = service.call(&token).await;
    assert_eq!(status, 403, "{body}");
    assert!(!strings(&body["errors"]).is_empty(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_urls_and_servers_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("meridian-native-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_meridian")).arg("collect").args(args).output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (ok, stderr) = run(&["--challenge-url", "ftp://example.com/x", "--key", "/nonexistent.jwk"]);
    assert!(!ok && stderr.contains("cannot read /nonexistent.jwk"), "{stderr}");
    let key = dir.join("k.jwk");
    std::fs::write(&key, serde_json::to_string(&Jwk::private(&Minter::new(1).signing_key)).unwrap()).unwrap();
    let key = key.to_str().unwrap();
    let (ok, stderr) = run(&["--challenge-url", "ftp://example.com/x", "--key", key]);
    assert!(!ok && stderr.contains("not an http(s) URL"), "{stderr}");
    let (ok, stderr) = run(&["--challenge-url", "http://127.0.0.1:9/v1/challenge", "--key", key]);
    assert!(!ok && stderr.contains("cannot fetch the challenge"), "{stderr}");
    let (ok, stderr) =
        run(&["--challenge-url", "http://127.0.0.1:9/v1/challenge", "--key", key, "--action", ""]);
    assert!(!ok && stderr.contains("action"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_and_node_examples_call_a_guarded_route() {
    let service = Service::start("examples", "JP").await;
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/native");
    let python = std::env::var("MERIDIAN_PYTHON").unwrap_or_else(|_| "python3".into());
    for (program, script) in [(python.as_str(), "call_api.py"), ("node", "call_api.mjs")] {
        let output = Command::new(program)
            .arg(examples.join(script))
            .env("MERIDIAN_URL", &service.origin)
            .env("MERIDIAN_BIN", env!("CARGO_BIN_EXE_meridian"))
            .env("MERIDIAN_KEY", &service.key)
            .env("TZ", "Asia/Tokyo")
            .env("LANG", "ja_JP.UTF-8")
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{script}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let (status, body) = stdout.trim().split_once(' ').unwrap();
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!((status, body["verdict"].as_str()), ("200", Some("allow")), "{script}: {body}");
    }
}

#[test]
fn a_native_token_passes_only_where_its_origin_is_named() {
    // An empty list of origins accepts any page, not a command-line tool:
    // its token has no page to check. Listed or expected, it passes.
    let minter = Minter::new(45);
    let ip: IpAddr = [127, 0, 0, 1].into();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let origin = "native:https://api.example.com";
    let cases: [(&[&str], Option<&str>, bool); 5] = [
        (&[], None, false),
        (&[], Some("https://shop.example"), false),
        (&["https://shop.example"], None, false),
        (&[origin], None, true),
        (&[], Some(origin), true),
    ];
    for (n, (allowed, expected, passes)) in cases.into_iter().enumerate() {
        let mut claims = minter.claims(ip, jiff::Timestamp::now().as_millisecond(), [n as u8; 16]);
        claims.origin = origin.into();
        let token = minter.sign(&claims);
        let policy = Policy {
            allowed_origins: allowed.iter().map(|o| (*o).to_owned()).collect(),
            ..Policy::default()
        };
        let verifier = Verifier::new(minter.keys.clone(), policy, Arc::new(MemoryReplayStore::new(10)));
        let input = meridian_verifier::VerifyInput {
            token: &token,
            remote_ip: ip,
            accept_language: None,
            expected_action: None,
            expected_origin: expected,
            account: None,
            organization: None,
        };
        let outcome = runtime.block_on(verifier.verify(&input, jiff::Timestamp::now()));
        let refused = outcome.error_codes.iter().any(|c| c.as_str() == "origin-mismatch");
        assert_eq!(!refused, passes, "allowed {allowed:?}, expected {expected:?}: {:?}", outcome.error_codes);
    }
}

#[test]
fn the_integration_guide_shows_the_tested_examples_verbatim() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/INTEGRATION.md")).unwrap();
    for file in ["call_api.py", "call_api.mjs"] {
        let text = std::fs::read_to_string(root.join("examples/native").join(file)).unwrap();
        assert!(guide.contains(&text), "docs/INTEGRATION.md does not show examples/native/{file} as it is");
    }
}

fn reason_codes(answer: &Value) -> Vec<&str> {
    answer["reasons"].as_array().into_iter().flatten().filter_map(|r| r["code"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_line_client_far_behind_a_relay_shows_its_distance() {
    let service = Service::start("relayed", "SG").await;
    let (_relay, relayed) = direct_then_relayed(&service, "").await;
    let singapore = [("TZ", "Asia/Singapore"), ("LANG", "en_SG.UTF-8")];

    // The same client skipping the echo gets no timing, and this policy
    // expects the echo: held for review all the same.
    let output = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "collect",
            "--no-echo",
            "--action",
            "api",
            "--challenge-url",
            &format!("{relayed}/v1/challenge"),
            "--key",
        ])
        .arg(&service.key)
        .env_clear()
        .envs(singapore)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answer = service.verify(String::from_utf8(output.stdout).unwrap().trim(), &relayed).await;
    assert!(answer["network"]["latency"].is_null(), "{answer}");
    assert_eq!(
        (answer["verdict"].as_str(), reason_codes(&answer)),
        (Some("review"), vec!["echo_withheld"]),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_line_client_without_websockets_takes_the_echo_over_plain_requests() {
    let service = Service::start_with("no-websockets", "SG", true).await;
    direct_then_relayed(&service, ", no WebSocket").await;
}

/// `meridian collect` on a Singapore machine straight to `service`, then
/// through a relay that adds 30 ms each way on the client's side: allowed
/// with a loopback hidden leg, then reviewed for `relay_latency` with the
/// relay's. Returns the relay, still running, and its origin.
async fn direct_then_relayed(
    service: &Service,
    label: &str,
) -> (meridian_verifier::testkit::relay::DelayRelay, String) {
    use meridian_verifier::testkit::relay::{DelayRelay, RelayMode};
    let singapore = [("TZ", "Asia/Singapore"), ("LANG", "en_SG.UTF-8")];
    let token = service.collect(&singapore);
    let answer = service.verify(&token, &service.origin).await;
    let hidden = answer["network"]["latency"]["hidden_leg_ms"].as_f64().unwrap_or_else(|| panic!("{answer}"));
    println!("native, direct{label}: hidden leg {hidden} ms");
    assert!(hidden < 25.0, "{answer}");
    assert_eq!((answer["verdict"].as_str(), reason_codes(&answer)), (Some("allow"), vec![]), "{answer}");

    let address: std::net::SocketAddr = service.origin.trim_start_matches("http://").parse().unwrap();
    let relay =
        DelayRelay::start(RelayMode::Forward(address), std::time::Duration::from_millis(30)).await.unwrap();
    let relayed = format!("http://{}", relay.address);
    let token = collect_from(&format!("{relayed}/v1/challenge"), &service.key, &singapore);
    let answer = service.verify(&token, &relayed).await;
    let hidden = answer["network"]["latency"]["hidden_leg_ms"].as_f64().unwrap_or_else(|| panic!("{answer}"));
    println!("native, 60 ms behind a relay{label}: hidden leg {hidden} ms");
    assert!(hidden >= 59.0, "{answer}");
    assert_eq!(
        (answer["verdict"].as_str(), reason_codes(&answer)),
        (Some("review"), vec!["relay_latency"]),
        "{answer}"
    );
    (relay, relayed)
}
