//! The backend examples of docs/INTEGRATION.md (Python, Node, curl) run
//! against a live verifier: a fresh token gets a verdict, the same token
//! again is `replayed`. The documentation shows each file verbatim.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use meridian_tests::VERIFY_SECRET;
use meridian_verifier::clock::SystemClock;
use meridian_verifier::http::{ApiState, VerifySecret, router};
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::testkit::Minter;
use meridian_verifier::{Policy, Verifier};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/backends")
}

fn run(program: &str, args: &[&str], origin: &str) -> String {
    let output = Command::new(program)
        .args(args)
        .env("MERIDIAN_URL", origin)
        .env("MERIDIAN_VERIFY_SECRET", VERIFY_SECRET)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_node_and_curl_examples_get_verdicts_from_a_live_verifier() {
    let minter = Minter::new(21);
    let verifier =
        Verifier::new(minter.keys.clone(), Policy::default(), Arc::new(MemoryReplayStore::new(100)));
    let api = ApiState::new(verifier, vec![VerifySecret::new(VERIFY_SECRET).unwrap()], Arc::new(SystemClock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(meridian_tests::serve(listener, router(api)));

    let ip: IpAddr = [127, 0, 0, 1].into();
    let dir = examples();
    let python = std::env::var("MERIDIAN_PYTHON").unwrap_or_else(|_| "python3".into());
    let py = dir.join("verify.py");
    let mjs = dir.join("verify.mjs");
    let sh = dir.join("verify.sh");
    let runners: [(&str, Vec<String>); 3] = [
        (python.as_str(), vec![py.display().to_string()]),
        ("node", vec![mjs.display().to_string()]),
        ("sh", vec![sh.display().to_string()]),
    ];
    for (n, (program, script)) in runners.iter().enumerate() {
        let now = jiff::Timestamp::now().as_millisecond();
        let token = minter.token(ip, now, [u8::try_from(n).unwrap() + 1; 16]);
        let args = |extra: &[&str]| -> Vec<String> {
            script.iter().cloned().chain(extra.iter().map(|s| (*s).to_owned())).collect()
        };
        let first = run(
            program,
            &args(&[&token, "127.0.0.1"]).iter().map(String::as_str).collect::<Vec<_>>(),
            &origin,
        );
        let again = run(
            program,
            &args(&[&token, "127.0.0.1"]).iter().map(String::as_str).collect::<Vec<_>>(),
            &origin,
        );
        if *program == "sh" {
            let first: serde_json::Value = serde_json::from_str(&first).unwrap();
            assert_eq!(first["success"], true, "{first}");
            assert_eq!(first["verdict"], "allow", "{first}");
            let again: serde_json::Value = serde_json::from_str(&again).unwrap();
            assert_eq!(again["error_codes"], serde_json::json!(["replayed"]), "{again}");
        } else {
            // Loopback has no country: `ip_country_unknown` (15) and still `allow`.
            assert!(first.starts_with("allow score=15 reasons=ip_country_unknown"), "{program}: {first}");
            assert_eq!(again, "rejected: replayed", "{program}");
        }
    }
    // A wrong secret is a clear error, not a verdict.
    let output = Command::new("node")
        .arg(&mjs)
        .args(["x.y.z", "127.0.0.1"])
        .env("MERIDIAN_URL", &origin)
        .env("MERIDIAN_VERIFY_SECRET", "not-the-secret-0123456789")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "rejected: unauthorized");
    server.abort();
}

#[test]
fn the_integration_guide_shows_the_tested_files_verbatim() {
    let guide =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/INTEGRATION.md"))
            .unwrap();
    for file in ["verify.py", "verify.mjs", "verify.sh"] {
        let text = std::fs::read_to_string(examples().join(file)).unwrap();
        assert!(guide.contains(&text), "docs/INTEGRATION.md does not show examples/backends/{file} as it is");
    }
}
