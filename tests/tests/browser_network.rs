//! Network-origin scenarios end to end: a real Chromium running in a given
//! zone and locale, the real collector, the HTTP API with `remote_ip` chosen
//! per request, and small IP databases over documentation ranges.

use meridian_tests::{BrowserOptions, DemoOptions, start_browser, start_demo_configured, verify};
use meridian_verifier::testkit::test_intel;
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    zone: &'static str,
    locale: &'static str,
    languages: &'static str,
    remote_ip: &'static str,
    verdict: &'static str,
    must: &'static [&'static str],
    must_not: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "local user in Berlin",
        zone: "Europe/Berlin",
        locale: "de-DE",
        languages: "de-DE,de,en",
        remote_ip: "192.0.2.200",
        verdict: "allow",
        must: &[],
        must_not: &[
            "tz_offset_mismatch",
            "tz_country_mismatch",
            "tz_internal_inconsistent",
            "locale_country_mismatch",
        ],
    },
    Case {
        name: "German traveller in Tokyo",
        zone: "Asia/Tokyo",
        locale: "de-DE",
        languages: "de-DE,de",
        remote_ip: "192.0.2.70",
        verdict: "allow",
        must: &[],
        must_not: &["tz_offset_mismatch", "tz_country_mismatch", "tz_internal_inconsistent"],
    },
    Case {
        name: "Shanghai browser behind a Singapore IP (CN restricted)",
        zone: "Asia/Shanghai",
        locale: "zh-CN",
        languages: "zh-CN,zh",
        remote_ip: "192.0.2.10",
        verdict: "deny",
        must: &["restricted_region_claim", "tz_country_mismatch"],
        must_not: &["tz_offset_mismatch", "tz_internal_inconsistent"],
    },
    Case {
        name: "Berlin browser behind a US IP",
        zone: "Europe/Berlin",
        locale: "de-DE",
        languages: "de-DE,de",
        remote_ip: "192.0.2.130",
        verdict: "allow",
        must: &["tz_offset_mismatch"],
        must_not: &["tz_internal_inconsistent"],
    },
    Case {
        name: "restricted-region IP",
        zone: "Asia/Shanghai",
        locale: "zh-CN",
        languages: "zh-CN,zh",
        remote_ip: "198.51.100.9",
        verdict: "deny",
        must: &["restricted_region_ip"],
        must_not: &[],
    },
    Case {
        name: "cloud exit",
        zone: "America/New_York",
        locale: "en-US",
        languages: "en-US,en",
        remote_ip: "198.51.100.70",
        verdict: "allow",
        must: &["hosting_ip"],
        must_not: &["tz_offset_mismatch", "tz_internal_inconsistent"],
    },
];

fn codes(body: &Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["code"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_through_chromium_and_the_http_api() {
    // The demo trusts loopback as its proxy and the browser sends
    // X-Forwarded-For, so the challenge is issued to the case's IP too.
    let demo = start_demo_configured(DemoOptions {
        intel: test_intel(),
        trusted_proxies: vec!["127.0.0.1/32".into()],
        ..DemoOptions::default()
    })
    .await;
    let mut failures = Vec::new();
    for case in CASES {
        let browser = start_browser(BrowserOptions {
            time_zone: Some(case.zone.into()),
            accept_language: Some(case.languages.into()),
            locale: Some(case.locale.into()),
            ..BrowserOptions::default()
        })
        .await;
        browser.forward_for(case.remote_ip.parse().unwrap_or_else(|e| panic!("{e}"))).await;
        let token = browser.collect_token(&demo.origin, "login").await;
        let accept_language = browser.eval("navigator.languages.join(',')").await;
        let (status, body) = verify(
            &demo.origin,
            json!({
                "token": token,
                "remote_ip": case.remote_ip,
                "accept_language": accept_language,
                "expected_action": "login",
            }),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let claims = &body["claims"];
        assert_eq!(claims["tz"]["zone"], json!(case.zone), "{}: browser zone", case.name);
        assert_eq!(claims["locale"]["locale"], json!(case.locale), "{}: Intl locale", case.name);
        let found = codes(&body);
        let mut problems = Vec::new();
        if body["verdict"] != json!(case.verdict) {
            problems.push(format!("verdict {} (expected {})", body["verdict"], case.verdict));
        }
        problems.extend(
            case.must.iter().filter(|c| !found.iter().any(|f| f == *c)).map(|c| format!("missing {c}")),
        );
        problems.extend(
            case.must_not.iter().filter(|c| found.iter().any(|f| f == *c)).map(|c| format!("unexpected {c}")),
        );
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n{}",
                case.name,
                problems.join("; "),
                serde_json::to_string_pretty(&body).unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
