//! The foundation, end to end in real headless Chromium: the demo page
//! loads, the wasm collector signs a token, and the verifier accepts it once
//! and only once, rejecting edits, foreign algorithms and old tokens.

use meridian_protocol::base64url_encode;
use meridian_tests::{BrowserOptions, error_codes, start_browser, start_demo, verify};
use serde_json::json;

fn replace_header(token: &str, header: &str, signature: &str) -> String {
    let payload = token.split('.').nth(1).unwrap_or_default();
    format!("{}.{payload}.{signature}", base64url_encode(header.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_token_verifies_once_and_rejects_tampering() {
    let demo = start_demo().await;
    let browser = start_browser(BrowserOptions {
        time_zone: Some("Asia/Tokyo".into()),
        accept_language: Some("de-DE,de,en".into()),
        locale: None,
        ..BrowserOptions::default()
    })
    .await;
    let token = browser.collect_token(&demo.origin, "login").await;

    // Accepted once, with the browser's real signals inside.
    let request = json!({ "token": token, "remote_ip": "127.0.0.1", "expected_action": "login", "expected_origin": demo.origin });
    let (status, body) = verify(&demo.origin, request.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], json!(true), "{body}");
    assert_eq!(body["verdict"], json!("allow"));
    assert_eq!(body["claims"]["tz"]["zone"], json!("Asia/Tokyo"));
    assert_eq!(body["claims"]["tz"]["off_now"], json!(540));
    assert_eq!(body["claims"]["locale"]["languages"][0], json!("de-DE"));
    assert_eq!(body["claims"]["origin"], json!(demo.origin));
    assert!(body["clock"]["uncertainty_ms"].as_i64().is_some_and(|u| (0..5_000).contains(&u)), "{body}");
    assert!(body["clock"]["skew_ms"].as_i64().is_some_and(|s| s.abs() < 5_000), "{body}");

    // Only once.
    let (_, body) = verify(&demo.origin, request).await;
    assert_eq!(body["success"], json!(false));
    assert_eq!(error_codes(&body), ["replayed"]);

    // One payload character changed: bad signature (a fresh token, so that
    // replay cannot be what rejects it).
    let token = browser.collect_token(&demo.origin, "login").await;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload = parts[1].clone().into_bytes();
    let middle = payload.len() / 2;
    payload[middle] = if payload[middle] == b'A' { b'B' } else { b'A' };
    parts[1] = String::from_utf8(payload).unwrap_or_default();
    let (_, body) = verify(&demo.origin, json!({ "token": parts.join("."), "remote_ip": "127.0.0.1" })).await;
    assert_eq!(error_codes(&body), ["bad-signature"], "{body}");

    // Foreign algorithms.
    let none = replace_header(&token, r#"{"alg":"none","typ":"JWT"}"#, "");
    let (_, body) = verify(&demo.origin, json!({ "token": none, "remote_ip": "127.0.0.1" })).await;
    assert_eq!(error_codes(&body), ["unsupported-algorithm"], "{body}");
    let hs256 = replace_header(&token, r#"{"alg":"HS256","typ":"JWT"}"#, &base64url_encode(&[1; 32]));
    let (_, body) = verify(&demo.origin, json!({ "token": hs256, "remote_ip": "127.0.0.1" })).await;
    assert_eq!(error_codes(&body), ["unsupported-algorithm"], "{body}");

    // The untouched token is still good: the rejections above spent nothing.
    let (_, body) = verify(&demo.origin, json!({ "token": token, "remote_ip": "127.0.0.1" })).await;
    assert_eq!(body["success"], json!(true), "{body}");

    // Past the challenge lifetime: move the server's clock, don't sleep.
    let token = browser.collect_token(&demo.origin, "login").await;
    demo.clock.advance_ms(121_000);
    let (_, body) = verify(&demo.origin, json!({ "token": token, "remote_ip": "127.0.0.1" })).await;
    assert_eq!(error_codes(&body), ["expired"], "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_form_submits_a_verified_token() {
    let demo = start_demo().await;
    let browser = start_browser(BrowserOptions {
        time_zone: Some("America/New_York".into()),
        accept_language: Some("en-US,en".into()),
        locale: None,
        ..BrowserOptions::default()
    })
    .await;
    let client = &browser.client;
    client.goto(&format!("{}/", demo.origin)).await.unwrap();
    let button = client.wait().for_element(fantoccini::Locator::Id("sign-in")).await.unwrap();
    button.click().await.unwrap();
    let verdict = client.wait().for_element(fantoccini::Locator::Id("verdict")).await.unwrap();
    let success = verdict.attr("data-success").await.unwrap();
    let page = client.source().await.unwrap_or_default();
    assert_eq!(success.as_deref(), Some("true"), "{page}");
    assert!(page.contains("America/New_York"), "{page}");

    // Going back and resubmitting the same form reuses nothing: the drop-in
    // fetches a fresh challenge each time the page loads.
    client.back().await.unwrap();
    client.goto(&format!("{}/", demo.origin)).await.unwrap();
    let button = client.wait().for_element(fantoccini::Locator::Id("sign-in")).await.unwrap();
    button.click().await.unwrap();
    let verdict = client.wait().for_element(fantoccini::Locator::Id("verdict")).await.unwrap();
    assert_eq!(verdict.attr("data-success").await.ok().flatten().as_deref(), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_still_submits_when_the_verifier_is_unreachable_or_the_page_is_old() {
    let demo = start_demo().await;
    let browser = start_browser(BrowserOptions::default()).await;
    let client = &browser.client;

    // Verifier unreachable: the form is sent with a marker, reported as a stable code.
    client.goto(&format!("{}/", demo.origin)).await.unwrap();
    client.wait().for_element(fantoccini::Locator::Id("sign-in")).await.unwrap();
    browser
        .eval("(document.querySelector('form[data-meridian]').dataset.meridianChallengeUrl = 'http://127.0.0.1:9/v1/challenge', true)")
        .await;
    client.find(fantoccini::Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    client.wait().for_element(fantoccini::Locator::Id("verdict")).await.unwrap();
    let page = client.source().await.unwrap();
    assert!(page.contains("collector-error"), "{page}");

    // A page left open past the challenge lifetime: the drop-in fetches its
    // challenge when the form is submitted, so the token is fresh.
    client.goto(&format!("{}/", demo.origin)).await.unwrap();
    client.wait().for_element(fantoccini::Locator::Id("sign-in")).await.unwrap();
    demo.clock.advance_ms(10 * 60 * 1000);
    client.find(fantoccini::Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    let verdict = client.wait().for_element(fantoccini::Locator::Id("verdict")).await.unwrap();
    let page = client.source().await.unwrap();
    assert_eq!(verdict.attr("data-success").await.ok().flatten().as_deref(), Some("true"), "{page}");
}
