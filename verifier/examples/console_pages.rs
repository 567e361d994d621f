//! How fast the operator console answers over a large history: fills a
//! SQLite history with N synthetic events spread over 90 days (in the
//! recorder's batches, running counts included), signs in through the
//! console's own form, and times each page through the real router.
//!
//! ```sh
//! cargo run --release -p meridian-verifier --features testkit --example console_pages -- 1000000 /tmp/console.sqlite
//! ```
//! A file that already holds N events is reused.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark prints its figures")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use meridian_verifier::clock::SystemClock;
use meridian_verifier::console::Console;
use meridian_verifier::geo::Country;
use meridian_verifier::history::{Event, History, HistoryStore, SqliteHistory, SubjectKey, network_of};
use meridian_verifier::http::{ApiState, VerifySecret, router};
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::verdict::{ReasonCode, Verdict};
use meridian_verifier::{Policy, Verifier};
use tower::ServiceExt as _;

const BATCH: u64 = 2_048;
const DAY_MS: i64 = 86_400_000;
const SECRET: &str = "console-benchmark-secret";
const ACCOUNTS: u64 = 20_000;

/// Event `n` of `count`: accounts in organisations of 25, a seventh of them
/// with devices set to Shanghai behind a Singapore office; the rest spread
/// over eight countries, a few held or denied for other reasons.
fn event(key: &SubjectKey, n: u64, count: u64, now_ms: i64) -> Event {
    let account = n % ACCOUNTS;
    let shanghai = account.is_multiple_of(7);
    let countries = ["DE", "US", "JP", "GB", "FR", "IN", "BR", "SG"];
    let country = if shanghai { "SG" } else { countries[usize::try_from(account % 8).unwrap_or(0)] };
    let odd = n.is_multiple_of(13);
    let ip = std::net::IpAddr::from([198, 51, (account % 256) as u8, (n % 256) as u8]);
    let span = 90 * DAY_MS - 1;
    Event {
        at_ms: now_ms - i64::try_from(n).unwrap_or(0) * span / i64::try_from(count.max(1)).unwrap_or(1),
        account: key.account(&format!("user-{account}")).ok(),
        organization: key.organization(&format!("org-{}", account / 25)).ok(),
        network: network_of(ip),
        country: Country::parse(country),
        asn: Some(64_500 + u32::try_from(account % 50).unwrap_or(0)),
        zone: Some(if shanghai { "Asia/Shanghai" } else { "Europe/Berlin" }.into()),
        locale: Some(if shanghai { "zh-CN" } else { "de-DE" }.into()),
        restricted_device: shanghai,
        verdict: if shanghai {
            Verdict::Deny
        } else if odd {
            Verdict::Review
        } else {
            Verdict::Allow
        },
        score: if shanghai { 100 } else { 0 },
        reasons: if shanghai {
            vec![
                ReasonCode::TzCountryMismatch,
                ReasonCode::RestrictedRegionClaim,
                ReasonCode::AccountRegionHistory,
            ]
        } else if odd {
            vec![ReasonCode::HostingIp, ReasonCode::LocaleCountryMismatch]
        } else {
            Vec::new()
        },
        error: None,
    }
}

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap_or_else(|e| match e {});
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
}

fn cookie_named(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// Signs in through the form; the session cookie.
async fn sign_in(app: &axum::Router) -> Result<String, String> {
    let (_, headers, body) =
        send(app, Request::get("/console/login").body(Body::empty()).map_err(|e| e.to_string())?).await;
    let pair = cookie_named(&headers, "meridian_console_login").ok_or("no sign-in cookie")?;
    let marker = r#"name="csrf" value=""#;
    let at = body.find(marker).ok_or("no form token")? + marker.len();
    let csrf = body[at..].split('"').next().unwrap_or_default();
    let form = format!("secret={SECRET}&csrf={csrf}");
    let request = Request::post("/console/login")
        .header(header::COOKIE, pair)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .map_err(|e| e.to_string())?;
    let (status, headers, _) = send(app, request).await;
    if status != StatusCode::SEE_OTHER {
        return Err(format!("sign-in answered {status}"));
    }
    cookie_named(&headers, "meridian_console").ok_or_else(|| "no session cookie".into())
}

/// Median, 95th percentile and largest of `times`, ms.
fn summary(times: &mut [Duration]) -> (f64, f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
    (ms(times[times.len() / 2]), ms(p95), ms(times[times.len() - 1]))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [count, path] = args.as_slice() else {
        return Err("usage: console_pages COUNT PATH".into());
    };
    let count: u64 = count.parse().map_err(|_| "COUNT must be a whole number")?;
    let path = std::path::Path::new(path);
    let key = SubjectKey::new([9; 32]);
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let store = SqliteHistory::open(path).map_err(|e| e.to_string())?;
    let held = store.counts(0, DAY_MS).await.map_err(|e| e.to_string())?;
    let already: u64 = held.series.iter().map(|(_, _, n)| n).sum();
    if already != count {
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let store = SqliteHistory::open(path).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut written = 0u64;
        while written < count {
            let batch: Vec<Event> =
                (written..count.min(written + BATCH)).map(|n| event(&key, n, count, now_ms)).collect();
            written += batch.len() as u64;
            store.record(batch, None).await.map_err(|e| e.to_string())?;
            if written.is_multiple_of(BATCH * 100) {
                eprintln!("  {written} events…");
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "ingest with the running counts: {:.0} events/s ({seconds:.1} s, batches of {BATCH})",
            count as f64 / seconds
        );
    } else {
        println!("reusing {} ({count} events)", path.display());
    }
    let size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
        .map(|m| m.len())
        .sum();
    println!("database: {count} events, {:.1} MB (file and WAL)", size as f64 / 1e6);

    let store = SqliteHistory::open(path).map_err(|e| e.to_string())?;
    let keys = meridian_verifier::testkit::Minter::new(1).keys;
    let verifier = Verifier::new(keys, Policy::default(), Arc::new(MemoryReplayStore::new(100)))
        .with_history(History::new(Arc::new(store), key.clone()));
    let console = Console::new(SECRET, Duration::from_secs(3600), 90)?;
    let state = ApiState::new(
        verifier,
        vec![VerifySecret::new("verify-secret-0123456789").map_err(|e| e.to_string())?],
        Arc::new(SystemClock),
    )
    .with_console(console);
    let app = router(state).layer(MockConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 1))));
    let cookie = sign_in(&app).await?;
    let busy = key.account("user-7").map_err(|e| e.to_string())?;
    let organization = key.organization("org-0").map_err(|e| e.to_string())?;
    let pages = [
        ("/console?range=24h".to_owned(), "overview, 24 h"),
        ("/console?range=7d".to_owned(), "overview, 7 days"),
        ("/console?range=30d".to_owned(), "overview, 30 days"),
        ("/console?range=90d".to_owned(), "overview, 90 days (everything)"),
        ("/console/accounts".to_owned(), "riskiest accounts"),
        ("/console/organizations".to_owned(), "riskiest organisations"),
        (format!("/console/accounts/{}", busy.as_str()), "an account (50 sign-ins)"),
        (format!("/console/organizations/{}", organization.as_str()), "an organisation (25 accounts)"),
        ("/console/live".to_owned(), "live (latest 50)"),
    ];
    println!("page | median | p95 | max | size");
    for (path, label) in &pages {
        let mut times = Vec::new();
        let mut bytes = 0;
        for round in 0..23 {
            let request = Request::get(path.as_str())
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .map_err(|e| e.to_string())?;
            let started = Instant::now();
            let (status, _, body) = send(&app, request).await;
            let took = started.elapsed();
            if status != StatusCode::OK {
                return Err(format!("{path}: {status}"));
            }
            bytes = body.len();
            // The first three warm the page cache and the prepared statements.
            if round >= 3 {
                times.push(took);
            }
        }
        let (median, p95, max) = summary(&mut times);
        println!("{label} | {median:.1} ms | {p95:.1} ms | {max:.1} ms | {:.1} kB", bytes as f64 / 1e3);
    }
    Ok(())
}
