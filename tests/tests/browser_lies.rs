//! Lie detection in real Chromium running in `Asia/Shanghai`: spoofs of the
//! time zone and languages injected before any page script, the way
//! extensions and anti-detect browsers do it, are flagged; clean browsers in
//! many zones and locales are not.

use meridian_tests::{BrowserOptions, spoof, start_browser, start_demo, verify};
use serde_json::{Value, json};

struct Spoof {
    name: &'static str,
    script: String,
    /// At least one of these reasons must be reported.
    any_of: &'static [&'static str],
}

fn spoofs() -> Vec<Spoof> {
    vec![
        Spoof {
            name: "resolvedOptions().timeZone reports America/New_York",
            script: spoof::zone_name("America/New_York"),
            any_of: &["tampered_api", "tz_internal_inconsistent"],
        },
        Spoof {
            name: "only getTimezoneOffset returns 300",
            script: spoof::offset(300),
            any_of: &["tampered_api", "tz_internal_inconsistent"],
        },
        Spoof {
            name: "zone and offset spoofed consistently, main world only",
            script: spoof::consistent("America/New_York"),
            any_of: &["worker_scope_mismatch", "tampered_api"],
        },
        Spoof {
            name: "navigator.languages says en-US",
            script: spoof::languages("en-US"),
            any_of: &["tampered_api", "worker_scope_mismatch"],
        },
        Spoof {
            name: "consistent spoof hidden behind a patched Function.prototype.toString",
            script: spoof::hidden("America/New_York"),
            any_of: &["tampered_api", "worker_scope_mismatch", "tz_internal_inconsistent"],
        },
    ]
}

fn reasons(body: &Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["code"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

async fn collect_and_verify(demo_origin: &str, options: BrowserOptions) -> Value {
    let browser = start_browser(options).await;
    let token = browser.collect_token(demo_origin, "login").await;
    let (status, body) = verify(demo_origin, json!({ "token": token, "remote_ip": "127.0.0.1" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], json!(true), "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofs_injected_before_page_scripts_are_flagged() {
    let demo = start_demo().await;
    let mut failures = Vec::new();
    for spoof in spoofs() {
        let body = collect_and_verify(
            &demo.origin,
            BrowserOptions {
                time_zone: Some("Asia/Shanghai".into()),
                accept_language: Some("zh-CN,zh".into()),
                init_script: Some(spoof.script.clone()),
                ..BrowserOptions::default()
            },
        )
        .await;
        let found = reasons(&body);
        if !spoof.any_of.iter().any(|code| found.iter().any(|f| f == code)) {
            failures.push(format!("{}: not flagged; reasons {found:?}\n{}", spoof.name, body["claims"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_browsers_raise_no_lie_reasons() {
    let demo = start_demo().await;
    let pairs = [
        ("America/New_York", "en-US", "en-US,en"),
        ("Europe/Berlin", "de-DE", "de-DE,de"),
        ("Asia/Kolkata", "hi-IN", "hi-IN,en-IN"),
        ("Asia/Tokyo", "ja-JP", "ja-JP,ja"),
        ("Australia/Sydney", "en-AU", "en-AU,en"),
        ("America/Sao_Paulo", "pt-BR", "pt-BR,pt"),
        ("Africa/Lagos", "en-NG", "en-NG,en"),
        ("Asia/Shanghai", "zh-CN", "zh-CN,zh"),
        ("America/St_Johns", "en-CA", "en-CA,fr-CA"),
        ("Europe/London", "en-GB", "en-GB,en"),
    ];
    let mut failures = Vec::new();
    for (zone, locale, languages) in pairs {
        let body = collect_and_verify(
            &demo.origin,
            BrowserOptions {
                time_zone: Some(zone.into()),
                accept_language: Some(languages.into()),
                locale: Some(locale.into()),
                ..BrowserOptions::default()
            },
        )
        .await;
        let found = reasons(&body);
        let lies: Vec<&String> = found
            .iter()
            .filter(|c| {
                ["tampered_api", "worker_scope_mismatch", "tz_internal_inconsistent", "automation"]
                    .contains(&c.as_str())
            })
            .collect();
        if !lies.is_empty() || body["claims"]["worker"].is_null() {
            failures.push(format!(
                "{zone} {locale}: {lies:?}\n{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webdriver_controlled_browser_is_automation() {
    let demo = start_demo().await;
    let body = collect_and_verify(
        &demo.origin,
        BrowserOptions { reveal_automation: true, ..BrowserOptions::default() },
    )
    .await;
    assert!(reasons(&body).contains(&"automation".to_owned()), "{body}");
}
