//! A token made by the real collector in Chromium verifies with a
//! third-party JOSE library (PyJWT) against `/.well-known/jwks.json`.

use std::process::Command;

use meridian_tests::{BrowserOptions, start_browser, start_demo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_a_browser_token() {
    let demo = start_demo().await;
    let browser = start_browser(BrowserOptions::default()).await;
    let token = browser.collect_token(&demo.origin, "login").await;
    let python = std::env::var("MERIDIAN_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/pyjwt_verify.py");
    let origin = demo.origin.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python).arg(script).arg(format!("{origin}/.well-known/jwks.json")).arg(&token).output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| {
        panic!("cannot run Python for the interop test: {e} (set MERIDIAN_PYTHON; scripts/test does)")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "PyJWT rejected the token:\n{stdout}\n{stderr}");
    assert!(stdout.contains("verified"), "{stdout}");

    // And PyJWT rejects the same token with one payload byte changed.
    let python = std::env::var("MERIDIAN_PYTHON").unwrap_or_else(|_| "python3".into());
    let token = browser.collect_token(&demo.origin, "login").await;
    let mut bytes = token.into_bytes();
    let dot = bytes.iter().position(|b| *b == b'.').unwrap_or(0);
    bytes[dot + 5] = if bytes[dot + 5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap_or_default();
    let origin = demo.origin.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(script)
            .arg(format!("{origin}/.well-known/jwks.json"))
            .arg(&tampered)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!output.status.success(), "PyJWT accepted a tampered token");
}
