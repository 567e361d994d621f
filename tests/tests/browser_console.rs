//! The operator console in real headless Chromium, over the demo's real
//! verifications: sign in (a wrong secret first), charts whose numbers are
//! the database's, an account's timeline, claims that carry markup shown
//! as text, a form posted from another site refused, a session that
//! expires, sign out. Screenshots at 1280 and 390 px are left in
//! `target/screenshots/console-*.png`, and no page is wider than its
//! viewport.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use fantoccini::Locator;
use meridian_tests::{
    Browser, BrowserOptions, DemoOptions, collector_key, site_listener, start_browser, start_demo_configured,
    verify,
};
use meridian_verifier::history::{Event, HistoryStore, SqliteHistory};
use meridian_verifier::testkit::test_intel;
use serde_json::{Value, json};

const CONSOLE_SECRET: &str = "console-secret-for-the-browser-test";
/// Singapore and Germany in `testkit::test_intel()`.
const SINGAPORE: &str = "192.0.2.10";
const GERMANY: &str = "192.0.2.200";

/// A screenshot `console-<name>.png`, once the page is seen to fit its
/// viewport.
async fn screenshot(browser: &Browser, name: &str) {
    browser.assert_fits_viewport(name).await;
    browser.screenshot(&format!("console-{name}.png")).await;
}

async fn set_width(browser: &Browser, width: u32, mobile: bool) {
    browser
        .cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await;
}

/// A browser in `zone` speaking `locale`, whose requests to the demo come
/// from `ip` (through the demo's trusted proxy).
async fn browser_in(zone: &str, locale: &str, ip: &str) -> Browser {
    let browser = start_browser(BrowserOptions {
        time_zone: Some(zone.into()),
        accept_language: Some(locale.into()),
        locale: Some(locale.into()),
        ..BrowserOptions::default()
    })
    .await;
    browser.forward_for(ip.parse::<IpAddr>().unwrap()).await;
    browser
}

/// Verifies `token` for `account` in `organization` from `ip`.
async fn sign_in(origin: &str, token: &str, ip: &str, account: &str, organization: &str) -> Value {
    let (status, body) = verify(
        origin,
        json!({ "token": token, "remote_ip": ip, "account": account, "organization": organization }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `token` with its zone and locale replaced, signed again with the build
/// key: what a forger holding the key extracted from the wasm can send.
fn with_claims(token: &str, zone: &str, locale: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let header = Base64UrlUnpadded::decode_vec(parts[0]).unwrap();
    let mut claims: Value =
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(parts[1]).unwrap()).unwrap();
    let shape = claims.to_string();
    for (pointer, value) in
        [("/tz/zone", zone), ("/worker/zone", zone), ("/locale/locale", locale), ("/worker/locale", locale)]
    {
        *claims.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer} in {shape}")) = json!(value);
    }
    let payload = serde_json::to_vec(&claims).unwrap();
    meridian_protocol::jws::sign_with_header(&header, &payload, &collector_key())
}

/// Every event in the demo's database once `count` are there.
async fn recorded(path: &std::path::Path, count: usize) -> Vec<Event> {
    let store = SqliteHistory::open(path).unwrap_or_else(|e| {
        let listing: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        panic!("{}: {e} ({listing:?})", path.display())
    });
    let started = std::time::Instant::now();
    loop {
        let events: Vec<Event> =
            store.scan(0, 0, 10_000).await.unwrap().into_iter().map(|(_, e)| e).collect();
        if events.len() >= count || started.elapsed() > Duration::from_secs(10) {
            assert_eq!(events.len(), count, "every answered verification is recorded");
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `data-*` counts of a chart's bars, by key.
async fn bars(browser: &Browser, chart: &str) -> BTreeMap<String, [u64; 3]> {
    let script = format!(
        "return [...document.querySelectorAll('#{chart} g.bar')].map(g => [g.dataset.key, +g.dataset.allow, +g.dataset.review, +g.dataset.deny]);"
    );
    let rows = browser.client.execute(&script, vec![]).await.unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let n = |i: usize| row[i].as_u64().unwrap();
            (row[0].as_str().unwrap().to_owned(), [n(1), n(2), n(3)])
        })
        .filter(|(_, counts)| counts.iter().sum::<u64>() > 0)
        .collect()
}

fn slot(verdict: &str) -> usize {
    match verdict {
        "allow" => 0,
        "review" => 1,
        _ => 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_the_console_in_chromium() {
    let demo = start_demo_configured(DemoOptions {
        intel: test_intel(),
        trusted_proxies: vec!["127.0.0.1/32".into()],
        console_secret: Some(CONSOLE_SECRET.into()),
        ..DemoOptions::default()
    })
    .await;
    let origin = demo.origin.clone();

    // Staff of one company sign in from its Singapore office with devices
    // set to Shanghai; a colleague in Germany does so honestly.
    let shanghai = browser_in("Asia/Shanghai", "zh-CN", SINGAPORE).await;
    for _ in 0..3 {
        let token = shanghai.collect_token_on(&format!("{origin}/"), "login").await;
        let answer = sign_in(&origin, &token, SINGAPORE, "li@corp.example", "Example Corp").await;
        assert_eq!(answer["verdict"], "deny", "{answer}");
    }
    drop(shanghai);
    let berlin = browser_in("Europe/Berlin", "de-DE", GERMANY).await;
    for _ in 0..2 {
        let token = berlin.collect_token_on(&format!("{origin}/"), "login").await;
        let answer = sign_in(&origin, &token, GERMANY, "ada@corp.example", "Example Corp").await;
        assert_eq!(answer["verdict"], "allow", "{answer}");
    }
    // A forger's claims carry markup.
    let token = berlin.collect_token_on(&format!("{origin}/"), "login").await;
    let hostile = with_claims(&token, "<script>alert(1)</script>", r#""><img src=x onerror=alert(2)>"#);
    let answer = sign_in(&origin, &hostile, GERMANY, "mallory", "Example Corp").await;
    assert_eq!(answer["success"], true, "a well-signed token: {answer}");
    drop(berlin);

    // What the charts must say, from the database itself.
    let events = recorded(&demo.history_db(), 6).await;
    let mut by_country: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    let mut by_reason: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for event in &events {
        let verdict = slot(event.verdict.as_str());
        by_country.entry(event.country.map_or("??".into(), |c| c.as_str().to_owned())).or_default()
            [verdict] += 1;
        for code in &event.reasons {
            by_reason.entry(code.as_str().to_owned()).or_default()[verdict] += 1;
        }
    }

    let operator = start_browser(BrowserOptions::default()).await;
    let client = &operator.client;
    client.goto(&format!("{origin}/console")).await.unwrap();
    client.wait().for_element(Locator::Id("secret")).await.unwrap();
    assert!(client.current_url().await.unwrap().path().ends_with("/console/login"), "sent to sign in");
    screenshot(&operator, "sign-in").await;
    client.find(Locator::Id("secret")).await.unwrap().send_keys("not-the-secret-at-all").await.unwrap();
    client.find(Locator::Css("form.sign-in button")).await.unwrap().click().await.unwrap();
    let error = client.wait().for_element(Locator::Id("sign-in-error")).await.unwrap();
    assert!(error.text().await.unwrap().contains("not the operator secret"));
    client.find(Locator::Id("secret")).await.unwrap().send_keys(CONSOLE_SECRET).await.unwrap();
    client.find(Locator::Css("form.sign-in button")).await.unwrap().click().await.unwrap();
    client.wait().for_element(Locator::Id("chart-time")).await.unwrap();

    let unlabelled = operator
        .eval("[...document.querySelectorAll('input:not([type=hidden]), select')].filter(e => !e.labels || !e.labels.length).length")
        .await;
    assert_eq!(unlabelled, json!(0), "every control has a label");
    let total = operator.eval("document.querySelector('#totals dd[data-total]').dataset.total").await;
    assert_eq!(total, json!(events.len().to_string()));
    assert_eq!(bars(&operator, "chart-countries").await, by_country, "countries match the database");
    assert_eq!(bars(&operator, "chart-reasons").await, by_reason, "reasons match the database");
    let over_time: u64 = bars(&operator, "chart-time").await.values().flatten().sum();
    assert_eq!(over_time, events.len() as u64, "every verification is in one column");
    for (width, mobile, name) in [(1280, false, "overview-desktop"), (390, true, "overview-mobile")] {
        set_width(&operator, width, mobile).await;
        screenshot(&operator, name).await;
    }
    set_width(&operator, 1280, false).await;

    // The riskiest account, and its timeline.
    client.goto(&format!("{origin}/console/accounts?risk=high")).await.unwrap();
    let first = client.wait().for_element(Locator::Css("#subjects tbody tr a")).await.unwrap();
    first.click().await.unwrap();
    client.wait().for_element(Locator::Id("offset-strip")).await.unwrap();
    let rows = operator.eval("document.querySelectorAll('tr.event').length").await;
    assert_eq!(rows, json!(3), "li's three sign-ins");
    let zones = operator.eval("[...document.querySelectorAll('td.zone')].map(td => td.textContent)").await;
    assert_eq!(zones, json!(["Asia/Shanghai", "Asia/Shanghai", "Asia/Shanghai"]));
    let marks = operator.eval("document.querySelector('g.device-offset').dataset.offset").await;
    assert_eq!(marks, json!("480"), "the devices' UTC+8 on the strip");
    for (width, mobile, name) in [(1280, false, "account-desktop"), (390, true, "account-mobile")] {
        set_width(&operator, width, mobile).await;
        screenshot(&operator, name).await;
    }
    set_width(&operator, 1280, false).await;

    // The forger's markup is text wherever it appears.
    for page in ["/console/live", "/console/accounts?risk=all"] {
        client.goto(&format!("{origin}{page}")).await.unwrap();
        client.wait().for_element(Locator::Css("main h1")).await.unwrap();
    }
    let link = client.find_all(Locator::Css("#subjects tbody tr a")).await.unwrap();
    let mut found = false;
    for href in hrefs(&link).await {
        client.goto(&format!("{origin}{href}")).await.unwrap();
        let text = operator.eval("document.body.innerText").await;
        if text.as_str().unwrap().contains("<script>alert(1)</script>") {
            found = true;
            let injected = operator.eval("document.querySelectorAll('script, img').length").await;
            assert_eq!(injected, json!(0), "nothing the forger wrote became an element");
            let locale = operator.eval("document.querySelector('td.locale').textContent").await;
            assert_eq!(locale, json!(r#""><img src=x onerror=alert(2)>"#));
            screenshot(&operator, "hostile-claims").await;
            break;
        }
    }
    assert!(found, "the forger's account page shows its claims as text");

    // A form posted from another site (another port of this host: same
    // site, so the browser sends the session cookie) is refused, and the
    // session lives on.
    let (listener, attacker) = site_listener().await;
    let target = format!("{origin}/console/logout");
    let page = format!(
        "<!doctype html><form id=f method=post action=\"{target}\"><input name=csrf value=guess></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    let app =
        axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(page) }));
    let site = tokio::spawn(meridian_tests::serve(listener, app));
    client.goto(&format!("{attacker}/")).await.unwrap();
    let refused = client.wait().for_element(Locator::Css("p.error")).await.unwrap();
    assert!(
        refused.text().await.unwrap().contains("not sent from this console"),
        "cross-site logout refused"
    );
    site.abort();
    client.goto(&format!("{origin}/console")).await.unwrap();
    client.wait().for_element(Locator::Id("chart-time")).await.unwrap();

    // Sign out, then the pages are closed again.
    client.find(Locator::Css("form.logout button")).await.unwrap().click().await.unwrap();
    client.wait().for_element(Locator::Id("secret")).await.unwrap();
    client.goto(&format!("{origin}/console/live")).await.unwrap();
    client.wait().for_element(Locator::Id("secret")).await.unwrap();

    // A session idle past its time is over.
    client.find(Locator::Id("secret")).await.unwrap().send_keys(CONSOLE_SECRET).await.unwrap();
    client.find(Locator::Css("form.sign-in button")).await.unwrap().click().await.unwrap();
    client.wait().for_element(Locator::Id("chart-time")).await.unwrap();
    demo.clock.advance_ms(31 * 60_000);
    client.goto(&format!("{origin}/console")).await.unwrap();
    client.wait().for_element(Locator::Id("secret")).await.unwrap();
}

/// The `href`s of links.
async fn hrefs(links: &[fantoccini::elements::Element]) -> Vec<String> {
    let mut hrefs = Vec::new();
    for link in links {
        if let Some(href) = link.attr("href").await.unwrap() {
            hrefs.push(href);
        }
    }
    hrefs
}
