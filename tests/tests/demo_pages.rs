//! The demo's login and result pages in Chromium at desktop and mobile
//! widths: the key content is there (form, about section, verdict, reasons
//! with weights, both sides, the offset picture), nothing overflows the
//! viewport sideways, and full-page screenshots are left in
//! `target/screenshots/` (`login-desktop.png`, `result-deny-mobile.png`, …).

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use fantoccini::Locator;
use meridian_tests::{BrowserOptions, start_browser, start_demo_with};
use meridian_verifier::testkit::test_intel;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_result_pages_at_desktop_and_mobile_widths() {
    let demo = start_demo_with(test_intel()).await;
    for (name, width, height, mobile) in [("desktop", 1280, 900, false), ("mobile", 390, 844, true)] {
        let browser = start_browser(BrowserOptions {
            time_zone: Some("Asia/Shanghai".into()),
            accept_language: Some("zh-CN,zh".into()),
            locale: Some("zh-CN".into()),
            ..BrowserOptions::default()
        })
        .await;
        browser
            .cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
            )
            .await;
        let client = &browser.client;
        client.goto(&format!("{}/", demo.origin)).await.unwrap();
        client.wait().for_element(Locator::Id("sign-in")).await.unwrap();
        let login = client.source().await.unwrap();
        for needle in ["Sign in", "About Meridian", "What it checks", "What it does not do", "data-meridian"]
        {
            assert!(login.contains(needle), "{name} login page lacks {needle:?}");
        }
        let unlabelled = browser
            .eval("[...document.querySelectorAll('input:not([type=hidden]), select')].filter(e => !e.closest('label')).length")
            .await;
        assert_eq!(unlabelled, json!(0), "{name}: every control has a label");
        browser.assert_fits_viewport(&format!("{name} login")).await;
        let drawn = browser.screenshot(&format!("login-{name}.png")).await;
        assert!((width - 20..=width).contains(&drawn), "{name} login screenshot is {drawn} px wide");

        client.find(Locator::Id("simulate")).await.unwrap().select_by_value("192.0.2.10").await.unwrap();
        client.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
        let verdict = client.wait().for_element(Locator::Id("verdict")).await.unwrap();
        let page = client.source().await.unwrap();
        assert_eq!(verdict.attr("data-verdict").await.unwrap().as_deref(), Some("deny"), "{page}");
        for needle in [
            "Asia/Shanghai",
            "What the browser says",
            "What the network says",
            r#"id="network-country">SG<"#,
            r#"data-code="restricted_region_claim""#,
            "The browser points to a restricted region",
            r#"<span class="weight">+75</span>"#,
            r#"<svg id="offset-strip""#,
            r#"id="browser-offset" data-offset="480""#,
            r#"class="country-offset" data-offset="480""#,
            "SG uses UTC+08:00",
            "About Meridian",
        ] {
            assert!(page.contains(needle), "{name} result page lacks {needle:?}:\n{page}");
        }
        assert!(
            !page.contains(r#"data-code="ip_changed""#),
            "{name}: the simulation's own IP change is not a reason"
        );
        let picture = client.find(Locator::Id("offset-strip")).await.unwrap();
        let (_, _, drawn_width, _) = picture.rectangle().await.unwrap();
        assert!(drawn_width > 300.0, "{name}: the offset picture is drawn {drawn_width} px wide");
        browser.assert_fits_viewport(&format!("{name} result")).await;
        let drawn = browser.screenshot(&format!("result-deny-{name}.png")).await;
        assert!((width - 20..=width).contains(&drawn), "{name} result-deny screenshot is {drawn} px wide");
    }
}
