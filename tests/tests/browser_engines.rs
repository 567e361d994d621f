//! The collector in all three engines the tests drive — Chromium, Firefox
//! ESR and WebKitGTK — with a French user in Paris behind a French IP: the
//! token verifies, carries the real zone and raises no lie reason. Firefox
//! with `privacy.resistFingerprinting` (it reports `Atlantic/Reykjavik` at
//! UTC+0) is a privacy browser, not a liar nor a traveller.
//!
//! Nothing is skipped: a missing engine fails, telling to run `scripts/test`.

#![allow(clippy::panic, reason = "tests fail by panicking")]

use meridian_tests::{BrowserOptions, Engine, start_browser, start_demo_with, verify};
use meridian_verifier::testkit::test_intel;
use serde_json::{Value, json};

/// The zone of the browsers.
const ZONE: &str = "Europe/Paris";
/// A French address: `testkit::test_intel()` files 2001:db8:3::/48 under FR.
const FRENCH_IP: &str = "2001:db8:3::10";
/// Reasons an honest browser must never raise, whatever its engine.
const LIES: [&str; 3] = ["tampered_api", "worker_scope_mismatch", "tz_internal_inconsistent"];

fn reasons(body: &Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["code"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// A French browser in Paris.
fn french(engine: Engine) -> BrowserOptions {
    BrowserOptions {
        engine,
        time_zone: Some(ZONE.into()),
        accept_language: Some("fr-FR,fr".into()),
        locale: Some("fr-FR".into()),
        ..BrowserOptions::default()
    }
}

/// Collects a token in a browser started with `options` and verifies it as
/// if it came from a French IP; returns the verify answer.
async fn collect_and_verify(options: BrowserOptions) -> Value {
    let engine = options.engine;
    let demo = start_demo_with(test_intel()).await;
    let browser = start_browser(options).await;
    let token = browser.collect_token(&demo.origin, "login").await;
    drop(browser);
    let (status, body) = verify(&demo.origin, json!({ "token": token, "remote_ip": FRENCH_IP })).await;
    assert_eq!(status, 200, "{engine}: {body:#}");
    assert_eq!(body["success"], json!(true), "{engine}: the token was refused:\n{body:#}");
    eprintln!("{engine}: zone {}, reasons {:?}", body["claims"]["tz"]["zone"], reasons(&body));
    body
}

async fn an_honest_browser_in_paris_verifies_cleanly(engine: Engine) {
    let body = collect_and_verify(french(engine)).await;
    let found = reasons(&body);
    let mut failures = Vec::new();
    if body["claims"]["tz"]["zone"] != json!(ZONE) {
        failures.push(format!("zone {} instead of {ZONE}", body["claims"]["tz"]["zone"]));
    }
    if body["claims"]["locale"]["languages"][0] != json!("fr-FR") {
        failures.push(format!("languages {} do not start with fr-FR", body["claims"]["locale"]["languages"]));
    }
    if body["claims"]["locale"]["locale"] != json!("fr-FR") {
        failures.push(format!("Intl locale {} instead of fr-FR", body["claims"]["locale"]["locale"]));
    }
    for lie in LIES {
        if found.iter().any(|r| r == lie) {
            failures.push(format!("reason {lie} raised"));
        }
    }
    assert!(failures.is_empty(), "{engine}: {}\nverify answered:\n{body:#}", failures.join("; "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_in_paris_verifies_cleanly() {
    an_honest_browser_in_paris_verifies_cleanly(Engine::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_in_paris_verifies_cleanly() {
    an_honest_browser_in_paris_verifies_cleanly(Engine::Firefox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webkit_in_paris_verifies_cleanly() {
    an_honest_browser_in_paris_verifies_cleanly(Engine::WebKit).await;
}

/// The demo's login form, submitted by a click: the drop-in puts a token in
/// the form and the result page shows it verified, with the browser's zone.
async fn the_login_form_submits_a_verified_token(engine: Engine) {
    let demo = start_demo_with(test_intel()).await;
    let browser = start_browser(french(engine)).await;
    let client = &browser.client;
    client.goto(&format!("{}/", demo.origin)).await.unwrap_or_else(|e| panic!("{engine}: goto: {e}"));
    let button = client
        .wait()
        .for_element(fantoccini::Locator::Id("sign-in"))
        .await
        .unwrap_or_else(|e| panic!("{engine}: no sign-in button: {e}"));
    button.click().await.unwrap_or_else(|e| panic!("{engine}: click: {e}"));
    let verdict = client
        .wait()
        .for_element(fantoccini::Locator::Id("verdict"))
        .await
        .unwrap_or_else(|e| panic!("{engine}: no verdict after submitting: {e}"));
    let success = verdict.attr("data-success").await.ok().flatten();
    let page = client.source().await.unwrap_or_default();
    assert_eq!(success.as_deref(), Some("true"), "{engine}: the form's token was refused:\n{page}");
    assert!(page.contains(ZONE), "{engine}: the result page does not show {ZONE}:\n{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_login_form_submits_a_verified_token() {
    the_login_form_submits_a_verified_token(Engine::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_login_form_submits_a_verified_token() {
    the_login_form_submits_a_verified_token(Engine::Firefox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webkit_login_form_submits_a_verified_token() {
    the_login_form_submits_a_verified_token(Engine::WebKit).await;
}

/// Firefox resisting fingerprinting reports `Atlantic/Reykjavik` at UTC+0 in
/// the page and its workers alike. Behind a French IP that is neither a lie
/// nor a zone far from the IP: it is a privacy browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_resisting_fingerprinting_is_a_privacy_browser() {
    let body =
        collect_and_verify(BrowserOptions { resist_fingerprinting: true, ..french(Engine::Firefox) }).await;
    let found = reasons(&body);
    let mut failures = Vec::new();
    if body["claims"]["tz"]["zone"] != json!("Atlantic/Reykjavik") {
        failures.push(format!(
            "zone {} instead of Atlantic/Reykjavik: was resistFingerprinting applied?",
            body["claims"]["tz"]["zone"]
        ));
    }
    for reason in LIES.iter().chain(&["tz_offset_mismatch", "tz_country_mismatch"]) {
        if found.iter().any(|r| r == reason) {
            failures.push(format!("reason {reason} raised"));
        }
    }
    if !found.iter().any(|r| r == "privacy_browser") {
        failures.push("reason privacy_browser missing".to_owned());
    }
    assert!(
        failures.is_empty(),
        "Firefox (resistFingerprinting): {}\nverify answered:\n{body:#}",
        failures.join("; ")
    );
}

/// What only Chromium can do (CDP) fails at once, and clearly, elsewhere.
#[tokio::test]
#[should_panic(expected = "Chromium only, not WebKit")]
async fn init_scripts_are_chromium_only() {
    let _ = start_browser(BrowserOptions {
        init_script: Some("void 0".into()),
        ..BrowserOptions { engine: Engine::WebKit, ..BrowserOptions::default() }
    })
    .await;
}

/// `resist_fingerprinting` is a Firefox pref.
#[tokio::test]
#[should_panic(expected = "Firefox only, not Chromium")]
async fn resisting_fingerprinting_is_firefox_only() {
    let _ = start_browser(BrowserOptions { resist_fingerprinting: true, ..BrowserOptions::default() }).await;
}

/// `keyId()` answers `undefined` until the module is ready, then the key id,
/// in every engine (Firefox used to throw before `ready` resolved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_id_is_undefined_until_ready_in_every_engine() {
    let demo = start_demo_with(test_intel()).await;
    for engine in Engine::ALL {
        let browser = start_browser(BrowserOptions { engine, ..BrowserOptions::default() }).await;
        browser.client.goto(&format!("{}/", demo.origin)).await.unwrap_or_else(|e| panic!("{engine}: {e}"));
        let answer = browser
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 import('/pkg/meridian.js').then((m) => {
                   let early;
                   try { early = m.keyId() === undefined ? 'undefined' : 'a key id'; }
                   catch (e) { early = 'threw: ' + e; }
                   m.ready.then(() => done({ early, late: typeof m.keyId() }), (e) => done({ early, late: 'ready failed: ' + e }));
                 }, (e) => done({ early: 'import failed: ' + e }));",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("{engine}: {e}"));
        assert!(answer["early"] == "undefined" || answer["early"] == "a key id", "{engine}: {answer}");
        assert_eq!(answer["late"], "string", "{engine}: {answer}");
    }
}
