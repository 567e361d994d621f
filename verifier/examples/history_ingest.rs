//! Ingest rate and size of the history: writes N synthetic events in the
//! batches the recorder makes and prints events/s and bytes per event.
//!
//! ```sh
//! cargo run --release -p meridian-verifier --example history_ingest -- 1000000 sqlite /tmp/h.sqlite
//! cargo run --release -p meridian-verifier --example history_ingest -- 1000000 postgres postgres://…
//! ```
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_verifier::geo::Country;
use meridian_verifier::history::{
    Event, HistoryStore, PostgresHistory, SqliteHistory, SubjectKey, network_of,
};
use meridian_verifier::verdict::{ReasonCode, Verdict};

/// Events per transaction, as the recorder writes under load.
const BATCH: usize = 2_048;

fn event(key: &SubjectKey, n: u64, now_ms: i64) -> Event {
    let account = n % 20_000;
    let shanghai = account.is_multiple_of(7);
    let ip = std::net::IpAddr::from([198, 51, (n % 256) as u8, (n / 256 % 256) as u8]);
    Event {
        at_ms: now_ms - i64::try_from(n).unwrap_or(0) * 10,
        account: key.account(&format!("user-{account}")).ok(),
        organization: key.organization(&format!("org-{}", account % 800)).ok(),
        network: network_of(ip),
        country: Country::parse(if shanghai { "SG" } else { "DE" }),
        asn: Some(64_500 + u32::try_from(n % 50).unwrap_or(0)),
        zone: Some(if shanghai { "Asia/Shanghai" } else { "Europe/Berlin" }.into()),
        locale: Some(if shanghai { "zh-CN" } else { "de-DE" }.into()),
        restricted_device: shanghai,
        verdict: if shanghai { Verdict::Deny } else { Verdict::Allow },
        score: if shanghai { 100 } else { 0 },
        reasons: if shanghai {
            vec![ReasonCode::TzCountryMismatch, ReasonCode::RestrictedRegionClaim]
        } else {
            Vec::new()
        },
        error: None,
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [count, backend, target] = args.as_slice() else {
        return Err("usage: history_ingest COUNT sqlite|postgres PATH|URL".into());
    };
    let count: u64 = count.parse().map_err(|_| "COUNT must be a whole number")?;
    let store: Arc<dyn HistoryStore> = match backend.as_str() {
        "sqlite" => {
            let _ = std::fs::remove_file(target);
            Arc::new(SqliteHistory::open(target.as_ref()).map_err(|e| e.to_string())?)
        }
        "postgres" => Arc::new(
            PostgresHistory::connect(target, Duration::from_secs(30)).await.map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("unknown backend {other:?}")),
    };
    let key = SubjectKey::new([9; 32]);
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let started = Instant::now();
    let mut written = 0u64;
    while written < count {
        let batch: Vec<Event> =
            (written..count.min(written + BATCH as u64)).map(|n| event(&key, n, now_ms)).collect();
        written += batch.len() as u64;
        store.record(batch, None).await.map_err(|e| e.to_string())?;
        if written.is_multiple_of(200_704) {
            eprintln!("  {written} events…");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("backend: {backend}");
    println!("events: {count}");
    println!("ingest: {:.0} events/s ({seconds:.1} s, batches of {BATCH})", count as f64 / seconds);
    let started = Instant::now();
    let account = key.account("user-7").map_err(|e| e.to_string())?;
    let recent = store.recent(&account, 0, 200).await.map_err(|e| e.to_string())?;
    let organization = key.organization("org-7").map_err(|e| e.to_string())?;
    let share = store.organization(&organization, 0).await.map_err(|e| e.to_string())?;
    println!(
        "lookups: an account's 200 most recent ({} found) and an organisation's share ({} accounts) in {:.2} ms",
        recent.len(),
        share.accounts,
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
