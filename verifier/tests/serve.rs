//! `meridian serve` as a process: several instances on one Redis, Redis
//! failing and coming back, hostile input, metrics and readiness. Redis is
//! Debian's `redis-server`, started here on a free loopback port.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used, reason = "tests fail by panicking")]

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meridian_verifier::testkit::Minter;
use serde_json::{Value, json};

const SECRET: &str = "serve-test-secret-0123456789";
const SEED: u8 = 11;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meridian-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(port: u16) -> Self {
        let redis = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut child = Command::new(&redis)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {redis}: {e} (install redis-server; scripts/test does)")
            });
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let mut reply = [0u8; 7];
                // `+PONG`, not just any reply: a probe of a port nobody listens
                // on yet can connect to itself and read its own PING back.
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read(&mut reply).is_ok_and(|n| n >= 5)
                    && reply.starts_with(b"+PONG")
                {
                    return Self { child, port };
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not come up on port {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends the server a signal (`STOP`, `CONT`) with kill(1).
    fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} redis-server");
    }

    /// Sends one command in RESP and returns the reply's lines, bulk
    /// headers (`*`, `$`) left out.
    fn command(&self, args: &[&str]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut reply = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buffer[..n]);
            if reply.ends_with(b"\r\n") && reply.len() > 2 {
                break;
            }
        }
        String::from_utf8_lossy(&reply)
            .lines()
            .filter(|l| !l.starts_with(['*', '$']))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Serve {
    child: Child,
    origin: String,
    dir: PathBuf,
}

impl Serve {
    fn start(name: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_in(scratch(name), extra)
    }

    /// Kills the process (SIGKILL: no shutdown of any kind) and starts a
    /// new one on the same folder.
    fn kill_and_restart(mut self, extra: &[(&str, &str)]) -> Self {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let dir = std::mem::take(&mut self.dir);
        drop(self);
        Self::start_in(dir, extra)
    }

    fn start_in(dir: PathBuf, extra: &[(&str, &str)]) -> Self {
        let child = Self::command(&dir, extra).spawn().unwrap();
        let mut serve = Self { child, origin: String::new(), dir };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) && serve.alive() {
            let stderr = serve.stderr();
            let address = stderr
                .lines()
                .filter(|line| line.contains("meridian verifier listening"))
                .find_map(|line| line.split("address=").nth(1))
                .and_then(|rest| rest.split_whitespace().next());
            if let Some(address) = address {
                serve.origin = format!("http://{address}");
                return serve;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("meridian serve did not start:\n{}", serve.stderr());
    }

    /// Runs `meridian serve` in a new folder, expecting it to refuse to
    /// start: what it said.
    fn refused(name: &str, extra: &[(&str, &str)]) -> String {
        let dir = scratch(name);
        let mut child = Self::command(&dir, extra).spawn().unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("meridian serve did not stop")
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        assert!(!child.wait().unwrap().success(), "meridian serve exited with success");
        let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        stderr
    }

    /// `meridian serve` in `dir`, with the test key, secret and JWKS.
    fn command(dir: &Path, extra: &[(&str, &str)]) -> Command {
        let minter = Minter::new(SEED);
        std::fs::write(dir.join("jwks.json"), minter.jwks_json()).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_meridian"));
        command
            .arg("serve")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            // Port 0: the server picks a free port and logs it. Probing a port
            // picked in advance races other tests and can even connect to
            // itself (TCP simultaneous open) before the server is up.
            .env("MERIDIAN_LISTEN", "127.0.0.1:0")
            .env("MERIDIAN_JWKS", dir.join("jwks.json"))
            .env("MERIDIAN_VERIFY_SECRET", SECRET)
            .env("MERIDIAN_CHALLENGE_KEY", minter.challenge_key_config(SEED))
            .env("MERIDIAN_STORE_TIMEOUT_MS", "200")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
        for (key, value) in extra {
            command.env(key, value);
        }
        command
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap()
}

fn token(n: u64) -> String {
    let minter = Minter::new(SEED);
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&n.to_le_bytes());
    nonce[8..16].copy_from_slice(&std::process::id().to_le_bytes().repeat(2));
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    minter.token(ip, jiff::Timestamp::now().as_millisecond(), nonce)
}

fn reason_codes(body: &Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["code"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

async fn verify(origin: &str, body: &Value) -> (u16, Value) {
    let response =
        client().post(format!("{origin}/v1/verify")).bearer_auth(SECRET).json(body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

fn codes(body: &Value) -> Vec<String> {
    body["error_codes"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

async fn metric(origin: &str, line_start: &str) -> f64 {
    let text = client().get(format!("{origin}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_redis_accept_each_token_once() {
    let redis = Redis::start(free_port());
    let a = Serve::start("shared-a", &[("MERIDIAN_REDIS_URL", &redis.url())]);
    let b = Serve::start("shared-b", &[("MERIDIAN_REDIS_URL", &redis.url())]);
    for n in 0..100 {
        let body = json!({ "token": token(n), "remote_ip": "127.0.0.1" });
        let (status, first) = verify(&a.origin, &body).await;
        assert_eq!((status, first["success"].clone()), (200, json!(true)), "token {n} on A: {first}");
        let (_, second) = verify(&b.origin, &body).await;
        assert_eq!(codes(&second), ["replayed"], "token {n} on B: {second}");
    }
    assert!(metric(&a.origin, "meridian_verifications_total{outcome=\"success\"").await >= 100.0);
    // Spent nonces outlive their challenge (120 s) by a margin for clock
    // differences between instances.
    let keys = redis.command(&["KEYS", "meridian:nonce:*"]);
    let key =
        keys.lines().find(|l| l.starts_with("meridian:nonce:")).expect("a spent nonce in Redis").to_owned();
    let ttl: i64 = redis.command(&["PTTL", &key]).trim_start_matches(':').trim().parse().unwrap();
    assert!(ttl > 120_000 && ttl <= 180_000, "PTTL {ttl} ms");
    assert!(
        metric(&b.origin, "meridian_verifications_total{outcome=\"rejected\",code=\"replayed\"").await
            >= 100.0
    );

    // With the in-memory store, instances do not share: documented, and shown here.
    let c = Serve::start("memory-c", &[]);
    let d = Serve::start("memory-d", &[]);
    let body = json!({ "token": token(1_000), "remote_ip": "127.0.0.1" });
    assert_eq!(verify(&c.origin, &body).await.1["success"], json!(true));
    assert_eq!(verify(&d.origin, &body).await.1["success"], json!(true));
    assert_eq!(codes(&verify(&d.origin, &body).await.1), ["replayed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_then_recovers_without_restart() {
    let port = free_port();
    let redis = Redis::start(port);
    let mut serve = Serve::start("failover", &[("MERIDIAN_REDIS_URL", &redis.url())]);
    let (_, body) = verify(&serve.origin, &json!({ "token": token(1), "remote_ip": "127.0.0.1" })).await;
    assert_eq!(body["success"], json!(true), "{body}");
    let ready = client().get(format!("{}/readyz", serve.origin)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    // A Redis that stalls rather than refuses (stopped: its connections
    // stay open and no reply comes) fails closed within the store timeout
    // as well, and answers resume once it replies again.
    redis.signal("STOP");
    for n in 100..103 {
        let started = Instant::now();
        let (status, body) =
            verify(&serve.origin, &json!({ "token": token(n), "remote_ip": "127.0.0.1" })).await;
        assert_eq!((status, codes(&body)), (503, vec!["internal-error".to_owned()]), "{body}");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }
    redis.signal("CONT");
    let started = Instant::now();
    for n in 200.. {
        let (_, body) = verify(&serve.origin, &json!({ "token": token(n), "remote_ip": "127.0.0.1" })).await;
        if body["success"] == json!(true) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no recovery after the stall: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    drop(redis);
    for n in 2..5 {
        let started = Instant::now();
        let (status, body) =
            verify(&serve.origin, &json!({ "token": token(n), "remote_ip": "127.0.0.1" })).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["success"], json!(false));
        assert_eq!(codes(&body), ["internal-error"]);
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }
    let ready = client().get(format!("{}/readyz", serve.origin)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    assert!(metric(&serve.origin, "meridian_replay_store_errors_total").await >= 3.0);

    let _redis = Redis::start(port);
    let started = Instant::now();
    let mut n = 10;
    loop {
        let (_, body) = verify(&serve.origin, &json!({ "token": token(n), "remote_ip": "127.0.0.1" })).await;
        if body["success"] == json!(true) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no recovery: {body}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = client().get(format!("{}/readyz", serve.origin)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert!(serve.alive());
    assert!(!serve.stderr().contains("panicked"), "{}", serve.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_open_is_a_reason_not_a_silent_pass() {
    let port = free_port();
    let serve = Serve::start(
        "fail-open",
        &[("MERIDIAN_REDIS_URL", &format!("redis://127.0.0.1:{port}/")), ("MERIDIAN_STORE_FAILURE", "open")],
    );
    let (status, body) = verify(&serve.origin, &json!({ "token": token(1), "remote_ip": "127.0.0.1" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], json!(true));
    let reasons: Vec<&str> =
        body["reasons"].as_array().unwrap().iter().filter_map(|r| r["code"].as_str()).collect();
    assert!(reasons.contains(&"replay_unchecked"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_stable_codes_and_the_process_survives() {
    let mut serve = Serve::start("hostile", &[]);
    let url = format!("{}/v1/verify", serve.origin);
    let http = client();
    let json_body = |value: Value| value.to_string();
    let good = json_body(json!({ "token": token(1), "remote_ip": "127.0.0.1" }));
    /// Name, authorization (`Some("ok")`: the right secret), content type, body, status, code.
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("missing bearer", None, "application/json", good.clone().into_bytes(), 401, "unauthorized"),
        (
            "wrong bearer",
            Some("Bearer not-the-secret-000000"),
            "application/json",
            good.clone().into_bytes(),
            401,
            "unauthorized",
        ),
        ("oversized body", Some("ok"), "application/json", vec![b' '; 64 * 1024], 413, "bad-request"),
        ("wrong content type", Some("ok"), "text/plain", good.clone().into_bytes(), 415, "bad-request"),
        ("invalid JSON", Some("ok"), "application/json", b"{\"token\": ".to_vec(), 400, "bad-request"),
        (
            "invalid remote_ip",
            Some("ok"),
            "application/json",
            json_body(json!({ "token": "x", "remote_ip": "999.1.1.1" })).into_bytes(),
            400,
            "bad-request",
        ),
        (
            "10 KB token",
            Some("ok"),
            "application/json",
            json_body(json!({ "token": "a".repeat(10_240), "remote_ip": "127.0.0.1" })).into_bytes(),
            200,
            "malformed-token",
        ),
        (
            "binary garbage",
            Some("ok"),
            "application/json",
            (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect(),
            400,
            "bad-request",
        ),
        (
            "deeply nested JSON",
            Some("ok"),
            "application/json",
            format!("{}{}", "{\"a\":".repeat(2000), "}".repeat(2000)).into_bytes(),
            400,
            "bad-request",
        ),
        (
            "token of garbage",
            Some("ok"),
            "application/json",
            json_body(json!({ "token": "\u{0}\u{fffd}..", "remote_ip": "::ffff:127.0.0.1" })).into_bytes(),
            200,
            "malformed-token",
        ),
    ];
    for (name, auth, content_type, body, status, code) in cases {
        let mut request = http.post(&url).header("content-type", content_type).body(body);
        match auth {
            Some("ok") => request = request.bearer_auth(SECRET),
            Some(other) => request = request.header("authorization", other),
            None => {}
        }
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!((got, codes(&body)), (status, vec![code.to_owned()]), "{name}: {body}");
    }
    // Oversized headers.
    let response = http
        .get(format!("{}/healthz", serve.origin))
        .header("x-padding", "p".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 431);
    // Still serving, never panicked.
    let (_, body) = verify(&serve.origin, &json!({ "token": token(2), "remote_ip": "127.0.0.1" })).await;
    assert_eq!(body["success"], json!(true), "{body}");
    assert!(serve.alive());
    let stderr = serve.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains(SECRET), "a secret reached the log");
    assert!(metric(&serve.origin, "meridian_rejected_requests_total").await >= 8.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenges_are_rate_limited_per_ip_and_cors_is_opt_in() {
    let serve = Serve::start(
        "limits",
        &[("MERIDIAN_CHALLENGE_RATE_LIMIT", "5"), ("MERIDIAN_CORS_ORIGINS", "https://shop.example")],
    );
    let http = client();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses
            .push(http.get(format!("{}/v1/challenge", serve.origin)).send().await.unwrap().status().as_u16());
    }
    assert_eq!(&statuses[..5], [200; 5]);
    assert_eq!(statuses[7], 429);
    let allowed = http
        .get(format!("{}/v1/challenge", serve.origin))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("https://shop.example")
    );
    let refused = http
        .get(format!("{}/v1/challenge", serve.origin))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    // Request ids: made when absent, echoed when given.
    let response =
        http.get(format!("{}/healthz", serve.origin)).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(response.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("abc-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_of_the_binary_validates() {
    let serve = Serve::start("openapi", &[]);
    let document =
        client().get(format!("{}/openapi.json", serve.origin)).send().await.unwrap().text().await.unwrap();
    let file = serve.dir.join("openapi.json");
    std::fs::write(&file, &document).unwrap();
    let python = std::env::var("MERIDIAN_PYTHON")
        .expect("MERIDIAN_PYTHON must name a Python with openapi-spec-validator (scripts/test sets it up)");
    let output = Command::new(python).args(["-m", "openapi_spec_validator"]).arg(&file).output().unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_example_configuration_checks_out() {
    let dir = scratch("example-config");
    let minter = Minter::new(SEED);
    std::fs::write(dir.join("jwks.json"), minter.jwks_json()).unwrap();
    std::fs::write(dir.join("verify"), format!("{SECRET}\n")).unwrap();
    std::fs::write(dir.join("challenge"), format!("{}\n", minter.challenge_key_config(SEED))).unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/meridian.example.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["check-config", "--config", example])
        .current_dir(&dir)
        .env_clear()
        .env("MERIDIAN_JWKS", dir.join("jwks.json"))
        .env("MERIDIAN_VERIFY_SECRET_FILE", dir.join("verify"))
        .env("MERIDIAN_CHALLENGE_KEY_FILE", dir.join("challenge"))
        .env("MERIDIAN_COUNTRY_DB", concat!(env!("CARGO_MANIFEST_DIR"), "/../.meridian/data/country.mmdb"))
        .env("MERIDIAN_ASN_DB", concat!(env!("CARGO_MANIFEST_DIR"), "/../.meridian/data/asn.mmdb"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "a secret was printed");

    // A wrong key is explained with its name; a UDP port on every
    // interface needs the address browsers reach.
    for (variable, value, named) in [
        ("MERIDIAN_TRUSTED_PROXIES", "10.0.0.0/99", "trusted_proxies"),
        ("MERIDIAN_UDP_LISTEN", "0.0.0.0:3478", "udp_public"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["check-config"])
            .current_dir(&dir)
            .env_clear()
            .env("MERIDIAN_VERIFY_SECRET", SECRET)
            .env("MERIDIAN_JWKS", dir.join("jwks.json"))
            .env(variable, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(named), "{variable}={value}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One TURN Allocate to `to` from `socket`, with `username` when given:
/// the error code of the answer.
async fn allocate(socket: &tokio::net::UdpSocket, to: &str, username: Option<&str>) -> u16 {
    use bytecodec::{DecodeExt as _, EncodeExt as _};
    use stun_codec::rfc5389::Attribute;
    use stun_codec::rfc5389::attributes::{ErrorCode, Username};
    use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};
    let mut request = Message::<Attribute>::new(
        MessageClass::Request,
        stun_codec::rfc5766::methods::ALLOCATE,
        TransactionId::new([9; 12]),
    );
    if let Some(name) = username {
        request.add_attribute(Username::new(name.into()).unwrap());
    }
    socket.send_to(&MessageEncoder::new().encode_into_bytes(request).unwrap(), to).await.unwrap();
    let mut buffer = [0u8; 1500];
    let (length, _) =
        tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer)).await.unwrap().unwrap();
    let reply = MessageDecoder::<Attribute>::new().decode_from_bytes(&buffer[..length]).unwrap().unwrap();
    assert_eq!(reply.class(), MessageClass::ErrorResponse);
    reply.get_attribute::<ErrorCode>().unwrap().code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_udp_port_notes_where_a_challenges_probe_came_from() {
    let serve = Serve::start("udp", &[("MERIDIAN_UDP_LISTEN", "127.0.0.1:0")]);
    let body: Value =
        client().get(format!("{}/v1/challenge", serve.origin)).send().await.unwrap().json().await.unwrap();
    let udp = body["udp"].as_str().unwrap_or_else(|| panic!("no udp in {body}")).to_owned();
    assert!(udp.starts_with("127.0.0.1:") && !udp.ends_with(":0"), "{udp}");
    let challenge = body["challenge"].as_str().unwrap().to_owned();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(allocate(&socket, &udp, None).await, 401, "credentials are asked for");
    assert_eq!(allocate(&socket, &udp, Some("not-a-challenge")).await, 403);
    assert_eq!(allocate(&socket, &udp, Some(&challenge)).await, 403, "seen, and nothing is relayed");

    let minter = Minter::new(SEED);
    let mut claims =
        minter.claims("127.0.0.1".parse().unwrap(), jiff::Timestamp::now().as_millisecond(), [0; 16]);
    claims.challenge = challenge;
    let answer =
        verify(&serve.origin, &json!({ "token": minter.sign(&claims), "remote_ip": "198.51.100.7" })).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1["network"]["udp_origin"]["ip"], "127.0.0.1", "{}", answer.1);
    // Another challenge, never probed: no UDP origin.
    let (status, answer) =
        verify(&serve.origin, &json!({ "token": token(77), "remote_ip": "127.0.0.1" })).await;
    assert_eq!(status, 200);
    assert!(answer["network"].get("udp_origin").is_none(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_redis_see_a_probe_another_one_received() {
    let redis = Redis::start(free_port());
    let shared = [
        ("MERIDIAN_REDIS_URL", redis.url()),
        ("MERIDIAN_UDP_LISTEN", "127.0.0.1:0".into()),
        // So that answers go on (with `replay_unchecked`) once Redis is gone.
        ("MERIDIAN_STORE_FAILURE", "open".into()),
    ];
    let shared: Vec<(&str, &str)> = shared.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Serve::start("udp-shared-a", &shared);
    let b = Serve::start("udp-shared-b", &shared);
    assert!(a.stderr().contains("sightings shared through Redis"), "{}", a.stderr());
    // The challenge and its probe go to A, the verification to B.
    let body: Value =
        client().get(format!("{}/v1/challenge", a.origin)).send().await.unwrap().json().await.unwrap();
    let (udp, challenge) = (body["udp"].as_str().unwrap().to_owned(), body["challenge"].as_str().unwrap());
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(allocate(&socket, &udp, Some(challenge)).await, 403);
    let minter = Minter::new(SEED);
    let mut claims =
        minter.claims("127.0.0.1".parse().unwrap(), jiff::Timestamp::now().as_millisecond(), [0; 16]);
    claims.challenge = challenge.to_owned();
    let (status, answer) =
        verify(&b.origin, &json!({ "token": minter.sign(&claims), "remote_ip": "198.51.100.7" })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["network"]["udp_origin"]["ip"], "127.0.0.1", "B read A's sighting: {answer}");
    // Kept in Redis for the challenge's life and a leeway, no longer.
    let keys = redis.command(&["KEYS", "meridian:udp:*"]);
    let key = keys.lines().find(|l| l.starts_with("meridian:udp:")).unwrap_or_else(|| panic!("{keys}"));
    let ttl: i64 = redis.command(&["PTTL", key]).trim_start_matches(':').trim().parse().unwrap();
    assert!((1..=190_000).contains(&ttl), "{ttl}");
    // A Redis that is gone costs the answer the other instance's sighting,
    // nothing else: the probe is still refused, B answers without a UDP
    // origin, and A still has its own.
    drop(redis);
    let body: Value =
        client().get(format!("{}/v1/challenge", a.origin)).send().await.unwrap().json().await.unwrap();
    let challenge = body["challenge"].as_str().unwrap();
    assert_eq!(allocate(&socket, &udp, Some(challenge)).await, 403);
    for (serve, expected) in [(&b, None), (&a, Some("127.0.0.1"))] {
        let mut claims =
            minter.claims("127.0.0.1".parse().unwrap(), jiff::Timestamp::now().as_millisecond(), [0; 16]);
        claims.challenge = challenge.to_owned();
        let (status, answer) =
            verify(&serve.origin, &json!({ "token": minter.sign(&claims), "remote_ip": "198.51.100.7" }))
                .await;
        assert_eq!((status, answer["success"].as_bool()), (200, Some(true)), "{answer}");
        let reasons = answer["reasons"].as_array().unwrap();
        assert!(reasons.iter().any(|r| r["code"] == "replay_unchecked"), "{answer}");
        assert_eq!(answer["network"]["udp_origin"]["ip"].as_str(), expected, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully() {
    let mut serve = Serve::start("sigterm", &[]);
    let (_, body) = verify(&serve.origin, &json!({ "token": token(1), "remote_ip": "127.0.0.1" })).await;
    assert_eq!(body["success"], json!(true));
    let status = Command::new("kill").args(["-TERM", &serve.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = serve.child.try_wait().unwrap() {
            break exit;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}\n{}", serve.stderr());
    assert!(serve.stderr().contains("shutting down"), "{}", serve.stderr());
}

/// A loopback HTTP server with fixed files, standing in for Apple's and the
/// Tor Project's servers (the tests never leave the machine).
async fn data_server(
    files: &'static [(&'static str, &'static str)],
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let mut app = axum::Router::new();
    for (path, body) in files {
        app = app.route(path, axum::routing::get(move || async move { *body }));
    }
    (origin, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

fn update_data(dir: &std::path::Path, relay_url: &str, tor_url: &str) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["update-data", "--data-dir"])
        .arg(dir)
        .args(["--private-relay-url", relay_url, "--tor-exits-url", tor_url])
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_data_replaces_lists_atomically_and_serve_reloads_them_on_sighup() {
    const RELAY_JP: &str = "2001:db8:6::/48,JP,JP-13,Tokyo,\n";
    const RELAY_OTHER: &str = "2001:db8:99::/48,FR,FR-IDF,Paris,\n";
    const TOR: &str = "ExitAddress 2001:db8:7::1 2026-11-30 11:05:00\n";
    let (origin, server) = data_server(&[
        ("/relay.csv", RELAY_JP),
        ("/relay-other.csv", RELAY_OTHER),
        ("/tor.txt", TOR),
        ("/broken.csv", "<html>rate limited</html>\n"),
    ])
    .await;
    let dir = scratch("update-data");
    let data = dir.join("data");
    let url = |path: &str| format!("{origin}{path}");
    let (ok, stderr) =
        tokio::task::block_in_place(|| update_data(&data, &url("/relay.csv"), &url("/tor.txt")));
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read_to_string(data.join("private-relay.csv")).unwrap(), RELAY_JP);
    assert_eq!(std::fs::read_to_string(data.join("tor-exits.txt")).unwrap(), TOR);

    // A broken download and an unreachable server leave the previous files.
    let (ok, stderr) =
        tokio::task::block_in_place(|| update_data(&data, &url("/broken.csv"), &url("/missing")));
    assert!(!ok);
    assert!(
        stderr.contains("not a valid Private Relay list") && stderr.contains("previous file is kept"),
        "{stderr}"
    );
    assert!(stderr.contains("HTTP 404"), "{stderr}");
    let closed = format!("http://127.0.0.1:{}/x", free_port());
    let (ok, stderr) = tokio::task::block_in_place(|| update_data(&data, &closed, &closed));
    assert!(!ok);
    assert!(stderr.contains("cannot download") && stderr.contains("offline?"), "{stderr}");
    assert_eq!(std::fs::read_to_string(data.join("private-relay.csv")).unwrap(), RELAY_JP);
    assert!(!data.join("private-relay.csv.part").exists());

    // The server reads the lists, and reloads them on SIGHUP.
    let relay_list = data.join("private-relay.csv");
    let tor_list = data.join("tor-exits.txt");
    let mut serve = Serve::start(
        "relays",
        &[
            ("MERIDIAN_PRIVATE_RELAY_LIST", relay_list.to_str().unwrap()),
            ("MERIDIAN_TOR_EXIT_LIST", tor_list.to_str().unwrap()),
        ],
    );
    let reasons = |body: &Value| -> Vec<String> {
        body["reasons"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap().to_owned()).collect()
    };
    let (_, body) =
        verify(&serve.origin, &json!({ "token": token(70_000), "remote_ip": "2001:db8:6::9" })).await;
    assert_eq!(body["network"]["relay"], "icloud-private-relay", "{body}");
    assert!(reasons(&body).contains(&"privacy_relay".to_owned()), "{body}");
    let (_, body) =
        verify(&serve.origin, &json!({ "token": token(70_001), "remote_ip": "2001:db8:7::1" })).await;
    assert!(reasons(&body).contains(&"tor_exit".to_owned()), "{body}");

    let (ok, stderr) =
        tokio::task::block_in_place(|| update_data(&data, &url("/relay-other.csv"), &url("/tor.txt")));
    assert!(ok, "{stderr}");
    let pid = serve.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let started = Instant::now();
    while !serve.stderr().contains("reloaded") && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serve.stderr().contains("reloaded"), "{}", serve.stderr());
    let (_, body) =
        verify(&serve.origin, &json!({ "token": token(70_002), "remote_ip": "2001:db8:6::9" })).await;
    assert!(body["network"].get("relay").is_none(), "{body}");
    assert!(!reasons(&body).contains(&"privacy_relay".to_owned()), "{body}");

    // A reload that fails keeps what is in force.
    std::fs::write(&relay_list, "garbage\n").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let started = Instant::now();
    while !serve.stderr().contains("reload failed") && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serve.stderr().contains("keeping the data in force"), "{}", serve.stderr());
    assert!(serve.alive());
    let (_, body) =
        verify(&serve.origin, &json!({ "token": token(70_003), "remote_ip": "2001:db8:7::1" })).await;
    assert!(reasons(&body).contains(&"tor_exit".to_owned()), "{body}");
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e} (Debian's openssl package)"));
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_shares_single_use() {
    // A CA and a server certificate for 127.0.0.1, made here.
    let dir = scratch("rediss");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=Meridian test CA"],
        ]
        .concat(),
    );
    openssl(
        &dir,
        &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]]
            .concat(),
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    let port = free_port();
    let redis = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let mut child = Command::new(&redis)
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args([
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.pem",
        ])
        .args(["--tls-auth-clients", "no"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {redis}: {e}"));
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("rediss://127.0.0.1:{port}/");
    let ca = dir.join("ca.pem");
    let a = Serve::start(
        "rediss-a",
        &[("MERIDIAN_REDIS_URL", &url), ("MERIDIAN_REDIS_CA_FILE", ca.to_str().unwrap())],
    );
    let b = Serve::start(
        "rediss-b",
        &[("MERIDIAN_REDIS_URL", &url), ("MERIDIAN_REDIS_CA_FILE", ca.to_str().unwrap())],
    );
    for n in 0..5 {
        let body = json!({ "token": token(80_000 + n), "remote_ip": "127.0.0.1" });
        let (status, first) = verify(&a.origin, &body).await;
        assert_eq!((status, first["success"].clone()), (200, json!(true)), "over TLS on A: {first}");
        let (_, second) = verify(&b.origin, &body).await;
        assert_eq!(codes(&second), ["replayed"], "over TLS on B: {second}");
    }
    // Without the CA the server's certificate is not trusted: fail closed, clearly.
    let c = Serve::start("rediss-c", &[("MERIDIAN_REDIS_URL", &url)]);
    let (status, body) =
        verify(&c.origin, &json!({ "token": token(80_100), "remote_ip": "127.0.0.1" })).await;
    assert_eq!((status, codes(&body)), (503, vec!["internal-error".to_owned()]), "{body}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where a challenge from `serve` was sealed to, read with the test key.
fn sealed_to(challenge: &str) -> IpAddr {
    let minter = Minter::new(SEED);
    let now = jiff::Timestamp::now().as_millisecond();
    minter.keys.challenge.open(challenge, now, 5_000).unwrap().ip
}

async fn challenge_with(origin: &str, headers: &[(&str, &[u8])]) -> (u16, Value) {
    let mut request = client().get(format!("{origin}/v1/challenge"));
    for (name, value) in headers {
        request = request.header(*name, reqwest::header::HeaderValue::from_bytes(value).unwrap());
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_ip_is_what_the_trusted_proxy_wrote_not_what_the_client_chose() {
    let mut serve = Serve::start(
        "client-ip",
        &[("MERIDIAN_TRUSTED_PROXIES", "127.0.0.1/32"), ("MERIDIAN_CHALLENGE_RATE_LIMIT", "5")],
    );
    // The hop the proxy appended, plus a Forwarded header the client planted.
    let (_, body) = challenge_with(
        &serve.origin,
        &[("x-forwarded-for", b"203.0.113.9"), ("forwarded", b"for=198.51.100.77")],
    )
    .await;
    assert_eq!(sealed_to(body["challenge"].as_str().unwrap()), "203.0.113.9".parse::<IpAddr>().unwrap());
    // Junk bytes left of the proxy's hop no longer void the header.
    let (_, body) = challenge_with(&serve.origin, &[("x-forwarded-for", b"\xff\xfe, 203.0.113.10")]).await;
    assert_eq!(sealed_to(body["challenge"].as_str().unwrap()), "203.0.113.10".parse::<IpAddr>().unwrap());

    // Thirty addresses of one IPv6 /64 share one budget of five.
    let mut statuses = Vec::new();
    for n in 0..30u16 {
        let ip = format!("2001:db8:1:2:{n:x}::1");
        statuses.push(challenge_with(&serve.origin, &[("x-forwarded-for", ip.as_bytes())]).await.0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let (status, _) = challenge_with(&serve.origin, &[("x-forwarded-for", b"2001:db8:1:3::1")]).await;
    assert_eq!(status, 200, "another /64 is another client");

    // An operator whose proxy appends to Forwarded chooses it; then only it counts.
    let forwarded = Serve::start(
        "client-ip-forwarded",
        &[("MERIDIAN_TRUSTED_PROXIES", "127.0.0.1/32"), ("MERIDIAN_CLIENT_IP_HEADER", "forwarded")],
    );
    let (_, body) = challenge_with(
        &forwarded.origin,
        &[
            ("x-forwarded-for", b"203.0.113.9"),
            ("forwarded", b"for=198.51.100.1, for=\"198.51.100.77:4711\""),
        ],
    )
    .await;
    assert_eq!(sealed_to(body["challenge"].as_str().unwrap()), "198.51.100.77".parse::<IpAddr>().unwrap());
    assert!(serve.alive() && !serve.stderr().contains("panicked"));
}

/// Claims of an honest-looking browser in Shanghai with zh-CN.
fn shanghai_token(n: u64, ip: IpAddr) -> String {
    let minter = Minter::new(SEED);
    let mut nonce = [9u8; 16];
    nonce[..8].copy_from_slice(&n.to_le_bytes());
    let mut claims = minter.claims(ip, jiff::Timestamp::now().as_millisecond(), nonce);
    claims.time_zone.zone = "Asia/Shanghai".into();
    (claims.time_zone.offset_now_min, claims.time_zone.offset_jan_min, claims.time_zone.offset_jul_min) =
        (480, 480, 480);
    claims.locale.locale = "zh-CN".into();
    claims.locale.language = "zh-CN".into();
    claims.locale.languages = vec!["zh-CN".into(), "zh".into()];
    if let Some(integrity) = claims.integrity.as_mut() {
        (integrity.intl_offset_min, integrity.string_offset_min, integrity.historical_offset_s) =
            (480, Some(480), 29_143);
    }
    if let Some(worker) = claims.worker.as_mut() {
        (worker.zone, worker.offset_now_min, worker.languages) =
            ("Asia/Shanghai".into(), 480, claims.locale.languages.clone());
    }
    minter.sign(&claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_countries_and_collector_markers_are_not_free_passes() {
    let dir = scratch("unknown-policy");
    std::fs::write(dir.join("policy.toml"), "restricted_regions = [\"CN\"]\n").unwrap();
    let policy = dir.join("policy.toml");
    let serve = Serve::start("unknown", &[("MERIDIAN_POLICY_FILE", policy.to_str().unwrap())]);
    let private: IpAddr = "10.1.2.3".parse().unwrap();
    let (_, body) =
        verify(&serve.origin, &json!({ "token": shanghai_token(1, private), "remote_ip": "10.1.2.3" })).await;
    assert_eq!(body["success"], json!(true), "{body}");
    assert_ne!(body["verdict"], "allow", "{body}");
    let found: Vec<&str> =
        body["reasons"].as_array().unwrap().iter().filter_map(|r| r["code"].as_str()).collect();
    assert!(found.contains(&"ip_country_unknown") && found.contains(&"restricted_region_claim"), "{body}");

    // Anyone can send the drop-in's error marker: the policy decides.
    let (status, body) = verify(
        &serve.origin,
        &json!({ "token": "meridian-error:wasm-unavailable", "remote_ip": "192.0.2.1" }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!((body["success"].clone(), body["verdict"].clone()), (json!(false), json!("review")), "{body}");
    assert_eq!(codes(&body), ["collector-error"]);
    assert!(body["message"].as_str().unwrap_or("").contains("collector_error"), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_floods_and_the_internal_listener() {
    let internal_port = free_port();
    let internal_address = format!("127.0.0.1:{internal_port}");
    let serve = Serve::start(
        "floods",
        &[
            ("MERIDIAN_HEADER_READ_TIMEOUT_MS", "400"),
            ("MERIDIAN_MAX_CONNECTIONS", "4"),
            ("MERIDIAN_CHALLENGE_RATE_LIMIT", "0"),
            ("MERIDIAN_CHALLENGE_BUDGET", "6"),
            ("MERIDIAN_INTERNAL_LISTEN", &internal_address),
            ("MERIDIAN_REDIS_URL", &format!("redis://127.0.0.1:{}/", free_port())),
            ("MERIDIAN_STORE_TIMEOUT_MS", "200"),
        ],
    );
    let address = serve.origin.trim_start_matches("http://").to_owned();
    // A client that never finishes its request head is cut off.
    let mut slow = TcpStream::connect(&address).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 256];
    let read = slow.read(&mut buffer).unwrap_or(0);
    assert!(started.elapsed() < Duration::from_millis(2_500), "the slow client held its socket");
    assert!(read == 0 || String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 408"));
    drop(slow);

    // Past the connection cap, new connections are closed at once.
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&address).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut extra = TcpStream::connect(&address).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(extra.read(&mut buffer).unwrap_or(0), 0, "a fifth connection was served");
    drop(held);
    tokio::time::sleep(Duration::from_millis(600)).await;

    // The challenge budget: half of 6 at once, then it refills slowly.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(challenge_with(&serve.origin, &[]).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429], "{statuses:?}");

    // The backend's side is on the internal listener only; readiness names
    // the store without its error text.
    let http = client();
    let public = http.post(format!("{}/v1/verify", serve.origin)).send().await.unwrap();
    assert_eq!(public.status().as_u16(), 404);
    assert_eq!(http.get(format!("{}/metrics", serve.origin)).send().await.unwrap().status().as_u16(), 404);
    let internal = format!("http://{internal_address}");
    let (status, body) =
        verify(&internal, &json!({ "token": token(90_000), "remote_ip": "127.0.0.1" })).await;
    assert_eq!((status, codes(&body)), (503, vec!["internal-error".to_owned()]), "store down: {body}");
    let ready = http.get(format!("{internal}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let text = ready.text().await.unwrap();
    assert_eq!(text, "not ready: replay store (redis) unavailable\n");

    // Client request ids: kept when short and printable, replaced otherwise.
    let long = "x".repeat(200);
    for (given, kept) in [("abc-123", true), (long.as_str(), false), ("a b", false)] {
        let response =
            http.get(format!("{}/healthz", serve.origin)).header("x-request-id", given).send().await.unwrap();
        let echoed =
            response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!(echoed == given, kept, "{given:?} -> {echoed:?}");
        assert!(!echoed.is_empty());
    }
    assert!(serve.stderr().contains("too many open connections"));
    assert!(!serve.stderr().contains("panicked"));
}

/// A private PostgreSQL (Debian's `postgresql` package) in a scratch folder
/// on a free loopback port; as root, it runs as the `postgres` user, which
/// PostgreSQL requires.
struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl Postgres {
    fn start(name: &str) -> Self {
        let bin = std::env::var_os("PG_BIN").map(PathBuf::from).unwrap_or_else(|| {
            let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .unwrap_or_else(|e| {
                    panic!("no /usr/lib/postgresql ({e}): install postgresql; scripts/test does")
                })
                .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
                .collect();
            versions.sort();
            versions.pop().expect("a PostgreSQL version in /usr/lib/postgresql")
        });
        let dir = scratch(name);
        let postgres = Self { dir, bin, port: free_port() };
        if Self::as_root() {
            let status =
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(&postgres.dir).status().unwrap();
            assert!(status.success(), "chown the scratch folder to postgres");
        }
        let data = postgres.dir.join("data");
        postgres
            .run("initdb", &["-D", data.to_str().unwrap(), "-U", "meridian", "--auth=trust", "-E", "UTF8"]);
        postgres.start_server();
        postgres
    }

    fn as_root() -> bool {
        Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    }

    /// Runs a PostgreSQL tool, as `postgres` when root; panics with its output on failure.
    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = if Self::as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output =
            command.args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{tool} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start_server(&self) {
        let options =
            format!("-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off", self.port, self.dir.display());
        let data = self.dir.join("data");
        let log = self.dir.join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Stops the server at once, as a crash would.
    fn kill(&self) {
        let data = self.dir.join("data");
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://meridian@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `statement` with psql: its output, or the error it failed with.
    fn sql(&self, statement: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "meridian", "-d", "postgres"])
            .args(["-v", "ON_ERROR_STOP=1", "-tAc", statement])
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    fn events(&self) -> i64 {
        self.sql("SELECT COUNT(*) FROM events").ok().and_then(|count| count.parse().ok()).unwrap_or(-1)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = std::panic::catch_unwind(|| {
            self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_no_answered_verification() {
    // The embedded history: answers come once the event is journaled, and
    // the database gets it within the writer's next gathering (100 ms).
    let serve = Serve::start("history-kill", &[]);
    let mut answered = 0;
    for n in 0..40 {
        let body = json!({ "token": token(5_300 + n), "remote_ip": "127.0.0.1", "account": "ada" });
        let (status, outcome) = verify(&serve.origin, &body).await;
        assert_eq!((status, outcome["success"].clone()), (200, json!(true)), "{outcome}");
        answered += 1;
    }
    // Killed right after the last answer, before the writer's commit.
    let serve = serve.kill_and_restart(&[]);
    let account =
        client().get(format!("{}/v1/accounts/ada", serve.origin)).bearer_auth(SECRET).send().await.unwrap();
    let account: Value = account.json().await.unwrap();
    assert_eq!(account["logins"], answered, "every answered verification is in the history: {account}");
    assert!(serve.stderr().contains("journal"), "the restart wrote the journal:\n{}", serve.stderr());

    // `meridian report` reads the same history while the server runs,
    // without touching its journal.
    let report = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["report", "--json"])
        .current_dir(&serve.dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MERIDIAN_JWKS", serve.dir.join("jwks.json"))
        .env("MERIDIAN_VERIFY_SECRET", SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["events"], answered, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_attempts_sent_through_the_server_hide_no_shanghai_past() {
    // The account holder's last sign-ins showed a Shanghai device; before a
    // clean one they send the login form without a token, again and again.
    let dir = scratch("history-wash-policy");
    std::fs::write(dir.join("policy.toml"), "restricted_regions = [\"CN\"]\n").unwrap();
    let policy = dir.join("policy.toml");
    let serve = Serve::start("history-wash", &[("MERIDIAN_POLICY_FILE", policy.to_str().unwrap())]);
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    for n in 0..3 {
        let body =
            json!({ "token": shanghai_token(700 + n, ip), "remote_ip": "127.0.0.1", "account": "mei" });
        let (status, outcome) = verify(&serve.origin, &body).await;
        assert_eq!((status, outcome["success"].clone()), (200, json!(true)), "{outcome}");
    }
    for _ in 0..40 {
        let body = json!({ "remote_ip": "127.0.0.1", "account": "mei" });
        let (status, outcome) = verify(&serve.origin, &body).await;
        assert_eq!((status, outcome["success"].clone()), (200, json!(false)), "{outcome}");
    }
    let body = json!({ "token": token(6_200), "remote_ip": "127.0.0.1", "account": "mei" });
    let (_, clean) = verify(&serve.origin, &body).await;
    let found = reason_codes(&clean);
    assert!(
        found.contains(&"account_region_history".to_owned()) && found.contains(&"zone_flip".to_owned()),
        "{clean}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_at_the_login_form_is_counted_not_written_past_the_budget() {
    let serve = Serve::start("history-refused", &[("MERIDIAN_HISTORY_REFUSED_PER_SECOND", "1")]);
    for _ in 0..30 {
        let body = json!({ "token": "not-a-token", "remote_ip": "127.0.0.1", "account": "bot" });
        let (status, outcome) = verify(&serve.origin, &body).await;
        assert_eq!((status, outcome["success"].clone()), (200, json!(false)), "{outcome}");
    }
    let body = json!({ "token": token(5_900), "remote_ip": "127.0.0.1", "account": "ada" });
    let (status, outcome) = verify(&serve.origin, &body).await;
    assert_eq!((status, outcome["success"].clone()), (200, json!(true)), "{outcome}");
    let logins = |account: &'static str| {
        let origin = serve.origin.clone();
        async move {
            let page =
                client().get(format!("{origin}/v1/accounts/{account}")).bearer_auth(SECRET).send().await;
            let page: Value = page.unwrap().json().await.unwrap();
            page["logins"].as_f64().unwrap_or(0.0)
        }
    };
    let unrecorded = metric(&serve.origin, "meridian_history_refused_unrecorded_total").await;
    let recorded = logins("bot").await;
    assert!((1.0..=3.0).contains(&recorded), "one refused a second recorded, not {recorded}");
    assert_eq!(recorded + unrecorded, 30.0, "every refusal recorded or counted");
    assert_eq!(logins("ada").await, 1.0, "the sign-in is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_history_takes_a_forged_zone_holding_nul_and_goes_on() {
    // PostgreSQL's TEXT refuses NUL. A zone the page's script made up with
    // one in it must not make the batch it comes in fail at every try,
    // stopping the history for every sign-in after it.
    let postgres = Postgres::start("nul");
    let env = [("MERIDIAN_DATABASE_URL", postgres.url()), ("MERIDIAN_HISTORY_KEY", HISTORY_KEY.to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let serve = Serve::start("history-nul", &env);
    let minter = Minter::new(SEED);
    let mut nonce = [7u8; 16];
    nonce[8..16].copy_from_slice(&std::process::id().to_le_bytes().repeat(2));
    let now = jiff::Timestamp::now().as_millisecond();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let mut claims =
        minter.honest_claims(ip, now, nonce, "Europe/Berlin", "de-DE", &["de-DE", "de"]).unwrap();
    claims.time_zone.zone.push('\0');
    claims.locale.locale.push('\0');
    for token in [minter.sign(&claims), token(6_100)] {
        let body = json!({ "token": token, "remote_ip": "127.0.0.1", "account": "nul" });
        let (status, outcome) = verify(&serve.origin, &body).await;
        assert_eq!((status, outcome["success"].clone()), (200, json!(true)), "{outcome}");
        assert!(!reason_codes(&outcome).contains(&"history_unavailable".to_owned()), "{outcome}");
    }
    let page =
        client().get(format!("{}/v1/accounts/nul", serve.origin)).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(page.status(), 200, "the history writes again");
    let page: Value = page.json().await.unwrap();
    assert_eq!(page["logins"], 2, "{page}");
    assert!(page.to_string().contains("Europe/Berlin\u{fffd}"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_history_sets_aside_an_event_the_database_refuses_and_goes_on() {
    // Whatever else a database may refuse (a constraint its operator added,
    // a limit), one event it will never take must not stop the history for
    // every sign-in behind it: it is set aside, the rest are written.
    let postgres = Postgres::start("unstorable");
    let env = [("MERIDIAN_DATABASE_URL", postgres.url()), ("MERIDIAN_HISTORY_KEY", HISTORY_KEY.to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let serve = Serve::start("history-unstorable", &env);
    postgres
        .sql("ALTER TABLE events ADD CONSTRAINT no_paris CHECK (zone IS DISTINCT FROM 'Europe/Paris')")
        .unwrap();
    let minter = Minter::new(SEED);
    let now = jiff::Timestamp::now().as_millisecond();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    for (n, zone) in ["Europe/Berlin", "Europe/Paris", "Europe/Berlin"].into_iter().enumerate() {
        let mut nonce = [9u8; 16];
        nonce[0] = u8::try_from(n).unwrap();
        nonce[8..16].copy_from_slice(&std::process::id().to_le_bytes().repeat(2));
        let claims = minter.honest_claims(ip, now, nonce, zone, "de-DE", &["de-DE", "de"]).unwrap();
        let body = json!({ "token": minter.sign(&claims), "remote_ip": "127.0.0.1", "account": "ada" });
        let (status, outcome) = verify(&serve.origin, &body).await;
        assert_eq!((status, outcome["success"].clone()), (200, json!(true)), "{outcome}");
    }
    let page =
        client().get(format!("{}/v1/accounts/ada", serve.origin)).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(page.status(), 200, "the history writes again");
    let page: Value = page.json().await.unwrap();
    assert_eq!(page["logins"], 2, "{page}");
    assert_eq!(metric(&serve.origin, "meridian_history_unstorable_events_total").await, 1.0);
    let kept =
        std::fs::read_to_string(serve.dir.join(".meridian/data/history-journal/unstorable.jsonl")).unwrap();
    assert!(kept.contains("Europe/Paris") && kept.contains("23514"), "{kept}");
    assert!(serve.stderr().contains("set aside"), "{}", serve.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_that_cannot_hold_every_character_is_refused_at_start() {
    // In a LATIN1 database, one zone a page's script wrote in Chinese, or
    // an account id in Japanese, would be refused.
    let postgres = Postgres::start("latin1");
    postgres
        .sql("CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        .unwrap();
    let url = postgres.url().replace("/postgres", "/latin");
    let said = Serve::refused(
        "history-latin1",
        &[("MERIDIAN_DATABASE_URL", &url), ("MERIDIAN_HISTORY_KEY", HISTORY_KEY)],
    );
    assert!(said.contains("encoding is LATIN1") && said.contains("ENCODING 'UTF8'"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_history_db_opens_again_after_a_restart() {
    // Earlier versions journaled beside a configured `history_db` in
    // `<history_db>-journal`, SQLite's own journal name: the database then
    // failed to open on the next start. Such a folder is moved aside.
    let dir = scratch("history-db-restart");
    let db = dir.join("h.sqlite");
    std::fs::create_dir_all(dir.join("h.sqlite-journal")).unwrap();
    let db_setting = db.display().to_string();
    let extra = [("MERIDIAN_HISTORY_DB", db_setting.as_str())];
    let serve = Serve::start_in(dir, &extra);
    assert!(serve.stderr().contains("moved"), "{}", serve.stderr());
    for n in 0..3 {
        let body = json!({ "token": token(5_400 + n), "remote_ip": "127.0.0.1", "account": "ada" });
        assert_eq!(verify(&serve.origin, &body).await.0, 200);
    }
    let serve = serve.kill_and_restart(&extra);
    assert!(!serve.dir.join("h.sqlite-journal").exists() && serve.dir.join("h.sqlite.pending").is_dir());
    let account =
        client().get(format!("{}/v1/accounts/ada", serve.origin)).bearer_auth(SECRET).send().await.unwrap();
    let account: Value = account.json().await.unwrap();
    assert_eq!(account["logins"], 3, "{account}");
}

/// The operator console's secret in the shared-history test.
const CONSOLE_SECRET: &str = "console-secret-0123456789";

/// The history key the instances of a shared history share.
const HISTORY_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_one_postgres_see_each_others_history_and_survive_its_crash() {
    let postgres = Postgres::start("postgres");
    let shared = [
        ("MERIDIAN_DATABASE_URL", postgres.url()),
        ("MERIDIAN_HISTORY_KEY", HISTORY_KEY.to_owned()),
        ("MERIDIAN_CONSOLE_SECRET", CONSOLE_SECRET.to_owned()),
    ];
    let shared: Vec<(&str, &str)> = shared.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Serve::start("history-a", &shared);
    let b = Serve::start("history-b", &shared);
    let mut answered = 0;
    for n in 0..3 {
        let body = json!({ "token": token(5_000 + n), "remote_ip": "127.0.0.1", "account": "ada", "organization": "Example Corp" });
        let (status, outcome) = verify(&a.origin, &body).await;
        assert_eq!((status, outcome["success"].clone()), (200, json!(true)), "{outcome}");
        answered += 1;
    }
    // A answers once its events are journaled and commits them right
    // after; B sees them once they are committed.
    let started = Instant::now();
    loop {
        let account =
            client().get(format!("{}/v1/accounts/ada", b.origin)).bearer_auth(SECRET).send().await.unwrap();
        let account: Value = account.json().await.unwrap();
        if account["logins"] == 3 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "B sees what A recorded: {account}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Each instance's signals follow the other's sign-ins. A remembers
    // grace from her first sign-in; B then sees her device report Shanghai
    // from the same network; A's next sign-ins must show the zone flip.
    // While A follows B it reads what it remembers of grace again only
    // after a minute, so the sign-in on B can only reach A's signals
    // through that feed.
    let grace = |token: String| json!({ "token": token, "remote_ip": "127.0.0.1", "account": "grace" });
    let (_, first) = verify(&a.origin, &grace(token(5_300))).await;
    answered += 1;
    assert!(!reason_codes(&first).contains(&"zone_flip".to_owned()), "{first}");
    let (_, shanghai) = verify(&b.origin, &grace(shanghai_token(5_301, "127.0.0.1".parse().unwrap()))).await;
    answered += 1;
    assert_eq!(shanghai["success"], json!(true), "{shanghai}");
    let started = Instant::now();
    for n in 5_302.. {
        let (_, again) = verify(&a.origin, &grace(token(n))).await;
        answered += 1;
        if reason_codes(&again).contains(&"zone_flip".to_owned()) {
            break;
        }
        // Well inside the 5 s after which an instance that does not follow
        // the others would read the account again.
        assert!(started.elapsed() < Duration::from_secs(4), "A's signals never saw B's sign-in: {again}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metric(&a.origin, "meridian_history_feed_sign_ins_total").await >= 1.0);
    assert_eq!(metric(&a.origin, "meridian_history_feed_gaps_total").await, 0.0);

    // The database crashes: verification keeps answering, without history.
    // The first answer after the crash may still come from what A
    // remembers of the account (its write then fails); from then on every
    // answer says the history is unavailable.
    postgres.kill();
    let mut unavailable = 0;
    for n in 0..6 {
        let body = json!({ "token": token(5_100 + n), "remote_ip": "127.0.0.1", "account": "ada" });
        let (status, outcome) = verify(&a.origin, &body).await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(outcome["success"], json!(true), "{outcome}");
        let reasons: Vec<&str> =
            outcome["reasons"].as_array().unwrap().iter().filter_map(|r| r["code"].as_str()).collect();
        if reasons.contains(&"history_unavailable") {
            unavailable += 1;
        } else {
            assert_eq!(
                unavailable, 0,
                "once unavailable, it stays so while the database is down: {reasons:?}"
            );
            assert!(n < 2, "the crash is noticed: {reasons:?}");
        }
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metric(&a.origin, "meridian_history_unavailable_total").await >= 3.0);

    // It comes back: the same processes write again, and what they answered
    // while it was down is written too.
    postgres.start_server();
    let started = Instant::now();
    loop {
        let body = json!({ "token": token(5_200 + answered), "remote_ip": "127.0.0.1", "account": "ada" });
        let (_, outcome) = verify(&a.origin, &body).await;
        answered += 1;
        let reasons: Vec<&str> =
            outcome["reasons"].as_array().unwrap().iter().filter_map(|r| r["code"].as_str()).collect();
        if !reasons.contains(&"history_unavailable") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the history never came back: {reasons:?}\n{}",
            a.stderr().lines().rev().take(12).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answered = i64::try_from(answered).unwrap();
    let started = Instant::now();
    while postgres.events() < answered && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(postgres.events(), answered, "every answered verification is in the history");

    // The console over PostgreSQL counts the same events.
    let overview = console_page(&b.origin, "/console?range=24h").await.unwrap_or_else(|e| {
        panic!("{e}\n{}", b.stderr().lines().rev().take(5).collect::<Vec<_>>().join("\n"))
    });
    assert!(overview.contains(&format!(r#"data-total="{answered}""#)), "{overview}");
    let accounts = console_page(&b.origin, "/console/accounts?risk=all").await.unwrap();
    assert_eq!(accounts.matches("<tr data-risk=").count(), 2, "ada and grace: {accounts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_through_one_instance_reaches_every_instance() {
    let postgres = Postgres::start("erasure");
    let shared =
        [("MERIDIAN_DATABASE_URL", postgres.url()), ("MERIDIAN_HISTORY_KEY", HISTORY_KEY.to_owned())];
    let shared: Vec<(&str, &str)> = shared.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Serve::start("erasure-a", &shared);
    let b = Serve::start("erasure-b", &shared);
    let heidi = |token: String| json!({ "token": token, "remote_ip": "127.0.0.1", "account": "heidi" });
    let erase =
        |origin: &str| client().delete(format!("{origin}/v1/accounts/heidi")).bearer_auth(SECRET).send();
    let logins = |origin: String| async move {
        let account =
            client().get(format!("{origin}/v1/accounts/heidi")).bearer_auth(SECRET).send().await.unwrap();
        account.json::<Value>().await.unwrap()["logins"].as_i64().unwrap()
    };

    // A answers a sign-in and B erases the account at once, before A has
    // (most likely) committed it: what A writes afterwards is covered by
    // the erasure, so nothing of heidi stays.
    let (_, first) = verify(&a.origin, &heidi(token(7_000))).await;
    assert_eq!(first["success"], json!(true), "{first}");
    assert_eq!(erase(&b.origin).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        logins(b.origin.clone()).await,
        0,
        "a sign-in answered before the erasure was written after it"
    );

    // A remembers heidi from a Berlin sign-in once committed; B erases
    // her. A's next sign-in of heidi from Shanghai on the same network
    // must not compare with what was erased (no zone flip): A forgot her
    // through the feed, instead of a minute later.
    tokio::time::sleep(Duration::from_millis(1_100)).await; // past the erasure's margin
    let (_, berlin) = verify(&a.origin, &heidi(token(7_001))).await;
    assert!(!reason_codes(&berlin).contains(&"zone_flip".to_owned()), "{berlin}");
    let started = Instant::now();
    while logins(b.origin.clone()).await != 1 {
        assert!(started.elapsed() < Duration::from_secs(5), "B sees A's sign-in");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(erase(&b.origin).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (_, shanghai) = verify(&a.origin, &heidi(shanghai_token(7_002, "127.0.0.1".parse().unwrap()))).await;
    assert_eq!(shanghai["success"], json!(true), "{shanghai}");
    assert!(!reason_codes(&shanghai).contains(&"zone_flip".to_owned()), "A still remembered: {shanghai}");
    let started = Instant::now();
    while logins(a.origin.clone()).await != 1 {
        assert!(started.elapsed() < Duration::from_secs(5), "only the sign-in after the erasure stays");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Signs in to the console of `origin` and returns the page at `path`.
async fn console_page(origin: &str, path: &str) -> Result<String, String> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {name} cookie"))
    };
    let form = client.get(format!("{origin}/console/login")).send().await.unwrap();
    let login = cookie(&form, "meridian_console_login");
    let body = form.text().await.unwrap();
    let at = body.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
    let csrf = body[at..].split('"').next().unwrap().to_owned();
    let signed = client
        .post(format!("{origin}/console/login"))
        .header("cookie", login)
        .form(&[("secret", CONSOLE_SECRET), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let session = cookie(&signed, "meridian_console");
    let page = client.get(format!("{origin}{path}")).header("cookie", session).send().await.unwrap();
    let status = page.status();
    let text = page.text().await.unwrap();
    if status == 200 { Ok(text) } else { Err(format!("{path}: {status}")) }
}

#[tokio::test]
async fn postgres_reads_an_accounts_accepted_sign_ins_past_any_number_of_refused_ones() {
    use meridian_verifier::ErrorCode;
    use meridian_verifier::history::{Event, HistoryStore, PostgresHistory, SubjectKey};
    use meridian_verifier::verdict::Verdict;
    let postgres = Postgres::start("refused");
    let store = PostgresHistory::connect(&postgres.url(), Duration::from_secs(1)).await.unwrap();
    let account = SubjectKey::new([7; 32]).account("mei").unwrap();
    let event = |at_ms: i64, error: Option<ErrorCode>| Event {
        at_ms,
        account: Some(account.clone()),
        organization: None,
        network: "192.0.2.0/24".into(),
        country: None,
        asn: None,
        zone: error.is_none().then(|| "Asia/Shanghai".to_owned()),
        locale: None,
        restricted_device: error.is_none(),
        verdict: if error.is_none() { Verdict::Review } else { Verdict::Deny },
        score: 0,
        reasons: Vec::new(),
        error,
    };
    let accepted: Vec<Event> = (0..3).map(|n| event(1_000 + n, None)).collect();
    let refused: Vec<Event> =
        (0..100).map(|n| event(2_000 + n, Some(ErrorCode::MissingInputToken))).collect();
    store.record(accepted, None).await.unwrap();
    store.record(refused, None).await.unwrap();
    let read = store.sightings(&account, 0, 32).await.unwrap();
    assert_eq!(read.iter().map(|s| s.at_ms).collect::<Vec<_>>(), [1_002, 1_001, 1_000]);
    assert!(read.iter().all(|s| s.accepted && s.restricted_device));
    assert_eq!(store.recent(&account, 0, 500).await.unwrap().len(), 103, "the refused are kept all the same");
    assert_eq!(store.erase_account(&account).await.unwrap(), 103);
}

#[tokio::test]
async fn postgres_purges_a_large_backlog_in_batches_and_stops_what_it_stopped_waiting_for() {
    use meridian_verifier::history::{Event, HistoryStore, PostgresHistory};
    use meridian_verifier::verdict::Verdict;
    let postgres = Postgres::start("purge");
    let store = PostgresHistory::connect(&postgres.url(), Duration::from_secs(1)).await.unwrap();
    let event = |at_ms: i64| Event {
        at_ms,
        account: None,
        organization: None,
        network: "192.0.2.0/24".into(),
        country: None,
        asn: None,
        zone: None,
        locale: None,
        restricted_device: false,
        verdict: Verdict::Allow,
        score: 0,
        reasons: Vec::new(),
        error: None,
    };
    // More events past the retention than one statement of the purge
    // erases, and a few within it.
    for chunk in 0..5 {
        store.record((0..5_000).map(|n| event(1_000 + chunk * 5_000 + n)).collect(), None).await.unwrap();
    }
    store.record((0..3).map(|n| event(100_000 + n)).collect(), None).await.unwrap();
    assert_eq!(store.purge(50_000).await.unwrap(), 25_000);
    assert_eq!(store.latest(100).await.unwrap().len(), 3, "the events within the retention stay");

    // A statement the store gave up on (here: stuck behind another
    // session's lock) is stopped in the server as well, instead of running
    // on while later ones queue behind it on the one connection.
    let (other, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    other.batch_execute("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE").await.unwrap();
    assert!(store.latest(10).await.is_err(), "a read behind the lock times out");
    let stuck = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT%FROM events%' AND pid <> pg_backend_pid()";
    let mut still_running = -1;
    for _ in 0..30 {
        still_running = other.query_one(stuck, &[]).await.unwrap().get::<_, i64>(0);
        if still_running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(still_running, 0, "the abandoned read still runs in the server");
    other.batch_execute("COMMIT").await.unwrap();
    assert_eq!(store.latest(10).await.unwrap().len(), 3, "the store answers again");

    // A batch being written (here: waiting for another session's lock)
    // holds up no read: they go through a connection of their own.
    other.batch_execute("BEGIN; LOCK TABLE events IN SHARE MODE").await.unwrap();
    let writing = tokio::spawn({
        let store = store.clone();
        async move { store.record(vec![event(200_000)], None).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    assert_eq!(store.latest(10).await.unwrap().len(), 3, "a read behind a waiting write");
    assert!(!writing.is_finished(), "the write was not held by the lock");
    assert!(started.elapsed() < Duration::from_millis(600), "the read waited for the write");
    other.batch_execute("COMMIT").await.unwrap();
    let _ = writing.await.unwrap();
}
