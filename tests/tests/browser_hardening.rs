//! The page cannot choose what the collector signs, and the drop-in plays
//! fair with the page's own form handling — in real Chromium.
//!
//! A page script (injected before any other) replaces the clock,
//! `performance.now`, `Worker` and `Function.prototype.toString`, and calls
//! the module's own exports with made-up values: the token still carries
//! what the collector measured through its own realm. An injection into
//! every frame (an extension with `all_frames`, CDP) reaches that realm
//! too; it is still flagged, by the checks that compare independent
//! readings.

use meridian_tests::{BrowserOptions, spoof, start_browser, start_demo, verify};
use serde_json::{Value, json};

fn reasons(body: &Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["code"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// A page that lies about time and runs a fake Worker reporting New York
/// (in the top frame only, as a page's own script does).
const LYING_PAGE: &str = "
    if (window === window.top) {
    const realNow = Date.now;
    Date.now = () => realNow() + 3 * 3600 * 1000;
    performance.now = () => 0;
    const RealWorker = Worker;
    window.Worker = function (url) {
      const fake = { postMessage() {}, terminate() {} };
      setTimeout(() => fake.onmessage && fake.onmessage({ data: {
        zone: 'America/New_York', off: -300, locale: 'en-US', languages: ['en-US'] } }), 5);
      return fake;
    };
    }
";

/// The same lies in every frame, as an extension injecting into all frames
/// (or a CDP-driven browser) applies them.
const LYING_EVERY_FRAME: &str = "
    Date.now = ((realNow) => () => realNow() + 3 * 3600 * 1000)(Date.now);
    window.Worker = function (url) {
      const fake = { postMessage() {}, terminate() {} };
      setTimeout(() => fake.onmessage && fake.onmessage({ data: {
        zone: 'America/New_York', off: -300, locale: 'en-US', languages: ['en-US'] } }), 5);
      return fake;
    };
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_signs_what_it_measured_not_what_the_page_says() {
    let demo = start_demo().await;
    let browser = start_browser(BrowserOptions {
        time_zone: Some("Asia/Shanghai".into()),
        init_script: Some(format!(
            "{LYING_PAGE}if (window === window.top) {{ {} }}",
            spoof::hidden("America/New_York")
        )),
        ..BrowserOptions::default()
    })
    .await;
    let token = browser.collect_token(&demo.origin, "login").await;
    let (_, body) = verify(&demo.origin, json!({ "token": token, "remote_ip": "127.0.0.1" })).await;
    assert_eq!(body["success"], json!(true), "{body}");
    let claims = &body["claims"];
    // The Worker the collector started from its own realm saw the truth.
    assert_eq!(claims["worker"]["zone"], "Asia/Shanghai", "{body}");
    // Date.now three hours ahead in the page does not move the signed clock.
    assert!(!reasons(&body).contains(&"clock_skew".to_owned()), "{body}");
    assert!(body["clock"]["skew_ms"].as_i64().unwrap_or(i64::MAX).abs() < 60_000, "{body}");
    // The patched toString cannot hide the replaced functions.
    let found = reasons(&body);
    assert!(found.contains(&"tampered_api".to_owned()), "{found:?}");
    assert!(found.contains(&"worker_scope_mismatch".to_owned()), "{found:?}");

    // The module's exports take only a challenge and an action: there is
    // no argument through which to hand in a clean report.
    let result = browser
        .client
        .execute_async(
            "const done = arguments[0];
             import('/pkg/meridian_collector.js').then(async (m) => {
               await m.default({ module_or_path: '/pkg/meridian_collector_bg.wasm' });
               const session = new m.Session();
               await session.signer();
               let order;
               try { session.sign('x', 'login'); } catch (e) { order = String(e); }
               const tokenOf = async ([input, signature]) => input + '.' + btoa(String.fromCharCode(
                 ...new Uint8Array(await signature))).replace(/=+$/, '').replace(/\\+/g, '-').replace(/\\//g, '_');
               const c = await (await fetch('/v1/challenge')).json();
               session.challengeSent();
               const token = await tokenOf(session.sign(c.challenge, 'login'));
               // A wait between the challenge's arrival and signing (the
               // drop-in's wait for a new session's Worker) is not part of
               // the round trip once the arrival is noted.
               const later = new m.Session();
               await later.signer();
               later.challengeSent();
               const c2 = await (await fetch('/v1/challenge')).json();
               later.challengeReceived();
               await new Promise((resolve) => setTimeout(resolve, 400));
               const waited = await tokenOf(later.sign(c2.challenge, 'login'));
               done({ order, token, waited, exports: Object.keys(m).sort() });
             }, (e) => done({ error: String(e) }));",
            vec![],
        )
        .await
        .unwrap();
    assert!(result["order"].as_str().unwrap_or("").contains("challengeSent"), "{result}");
    assert!(result["exports"].as_array().unwrap().iter().all(|e| e != "sign"), "{result}");
    let (_, body) = verify(&demo.origin, json!({ "token": result["token"], "remote_ip": "127.0.0.1" })).await;
    assert_eq!(body["success"], json!(true), "{body}");
    assert!(reasons(&body).contains(&"tampered_api".to_owned()), "{body}");
    let (_, body) =
        verify(&demo.origin, json!({ "token": result["waited"], "remote_ip": "127.0.0.1" })).await;
    assert_eq!(body["success"], json!(true), "{body}");
    let round_trip = body["claims"]["clock"]["rtt_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(round_trip < 400, "the 400 ms wait after arrival is not in the round trip: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lies_injected_into_every_frame_are_still_flagged() {
    let demo = start_demo().await;
    let browser = start_browser(BrowserOptions {
        time_zone: Some("Asia/Shanghai".into()),
        init_script: Some(format!("{LYING_EVERY_FRAME}{}", spoof::hidden("America/New_York"))),
        ..BrowserOptions::default()
    })
    .await;
    let token = browser.collect_token(&demo.origin, "login").await;
    let (_, body) = verify(&demo.origin, json!({ "token": token, "remote_ip": "127.0.0.1" })).await;
    assert_eq!(body["success"], json!(true), "{body}");
    let found = reasons(&body);
    // Intl formatting and Date.prototype.toString still tell Shanghai's offset,
    // and a clock three hours off is reported, not hidden.
    assert!(found.contains(&"tz_internal_inconsistent".to_owned()), "{found:?}");
    assert!(found.contains(&"clock_skew".to_owned()), "{found:?}");
    assert_ne!(body["verdict"], "allow", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_in_respects_the_page_and_keeps_the_pressed_button() {
    let demo = start_demo().await;
    let browser = start_browser(BrowserOptions::default()).await;
    let client = &browser.client;
    client.goto(&format!("{}/", demo.origin)).await.unwrap();
    client.wait().for_element(fantoccini::Locator::Id("sign-in")).await.unwrap();

    // A page handler that cancels the submission: no challenge is fetched,
    // no token made, the page stays.
    browser
        .eval(
            "(() => {
               const form = document.querySelector('form[data-meridian]');
               window.__challenges = 0;
               const realFetch = window.fetch;
               window.fetch = (...a) => { window.__challenges++; return realFetch(...a); };
               form.addEventListener('submit', (e) => { if (!window.__allow) e.preventDefault(); });
               return true;
             })()",
        )
        .await;
    client.find(fantoccini::Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let state = browser
        .eval(
            "({ path: location.pathname, challenges: window.__challenges,
               token: (document.querySelector('input[name=\"meridian-token\"]') || {}).value || '' })",
        )
        .await;
    assert_eq!(
        state,
        json!({ "path": "/", "challenges": 0, "token": "" }),
        "cancelled submission went ahead"
    );

    // Allowed now: the submission goes out through requestSubmit with the
    // pressed button, so the page's handlers run again and the button's
    // name=value pair is in the form data.
    browser
        .eval(
            "(() => {
               window.__allow = true;
               const button = document.getElementById('sign-in');
               button.name = 'pressed'; button.value = 'sign-in';
               document.querySelector('form[data-meridian]').addEventListener('formdata', (e) =>
                 sessionStorage.setItem('sent', JSON.stringify([...e.formData.keys()])));
               return true;
             })()",
        )
        .await;
    client.find(fantoccini::Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    let verdict = client.wait().for_element(fantoccini::Locator::Id("verdict")).await.unwrap();
    assert_eq!(verdict.attr("data-success").await.unwrap().as_deref(), Some("true"));
    let sent = browser.eval("JSON.parse(sessionStorage.getItem('sent'))").await;
    let sent: Vec<&str> = sent.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(sent.contains(&"pressed") && sent.contains(&"meridian-token"), "{sent:?}");

    // A page restored from the back/forward cache forgets its spent token.
    client.goto(&format!("{}/", demo.origin)).await.unwrap();
    client.wait().for_element(fantoccini::Locator::Id("sign-in")).await.unwrap();
    let cleared = browser
        .eval(
            "(() => {
               const form = document.querySelector('form[data-meridian]');
               let field = form.querySelector('input[name=meridian-token]');
               if (!field) {
                 field = document.createElement('input');
                 field.type = 'hidden'; field.name = 'meridian-token';
                 form.append(field);
               }
               field.value = 'spent';
               form.dataset.meridianFilled = 'true';
               window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true }));
               return { filled: form.dataset.meridianFilled || null, token: field.value };
             })()",
        )
        .await;
    assert_eq!(cleared, json!({ "filled": null, "token": "" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_sends_a_content_security_policy_it_works_under() {
    let demo = start_demo().await;
    let response = reqwest::get(format!("{}/", demo.origin)).await.unwrap();
    let headers = response.headers();
    let policy = headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self'"), "{policy}");
    assert_eq!(headers.get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"));
    let script = reqwest::get(format!("{}/pkg/meridian.js", demo.origin)).await.unwrap();
    assert_eq!(script.headers().get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"));
    // ... and the collector runs under it (the Worker from a blob: URL, the
    // wasm compiled from this origin).
    let browser = start_browser(BrowserOptions::default()).await;
    let token = browser.collect_token(&demo.origin, "login").await;
    let (_, body) = verify(&demo.origin, json!({ "token": token, "remote_ip": "127.0.0.1" })).await;
    assert_eq!(body["success"], json!(true), "{body}");
    assert!(body["claims"]["worker"].is_object(), "no Worker view under the policy: {body}");
}
