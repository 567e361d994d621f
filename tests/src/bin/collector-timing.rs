//! Browser harness: how long the collector takes in headless Chromium.
//!
//! For each of N fresh page loads: wait until the module is ready, then time
//! the first `collect()` (cold) and 20 more (warm), each minus the duration
//! of its `/v1/challenge` request (from Resource Timing), so the figures are
//! the collector's own work. Prints medians and extremes.
//!
//!     cargo run --release -p meridian-tests --bin collector-timing [-- LOADS]

#![allow(clippy::panic, reason = "a measurement harness stops at the first failure")]

use meridian_tests::{BrowserOptions, start_browser, start_demo};

const SCRIPT: &str = r#"
const [done] = arguments;
(async () => {
  const t = performance.now();
  const m = await import('/pkg/meridian.js');
  await m.ready;
  const load = performance.now() - t;
  await new Promise(r => setTimeout(r, 200));
  async function once() {
    performance.clearResourceTimings();
    const t0 = performance.now();
    await m.collect({ action: 'login' });
    const total = performance.now() - t0;
    const fetch = performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/challenge')).pop();
    return total - (fetch ? fetch.duration : 0);
  }
  const cold = await once();
  const warm = [];
  for (let i = 0; i < 20; i++) warm.push(await once());
  done({ load, cold, warm });
})().catch(e => done({ error: String(e) }));
"#;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let loads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let demo = start_demo().await;
    let browser = start_browser(BrowserOptions::default()).await;
    let (mut load, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..loads {
        browser.client.goto(&format!("{}/", demo.origin)).await.unwrap_or_else(|e| panic!("{e}"));
        let result = browser.client.execute_async(SCRIPT, vec![]).await.unwrap_or_else(|e| panic!("{e}"));
        if let Some(error) = result.get("error") {
            panic!("collector failed: {error}");
        }
        load.push(result["load"].as_f64().unwrap_or(f64::NAN));
        cold.push(result["cold"].as_f64().unwrap_or(f64::NAN));
        warm.extend(result["warm"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_f64));
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    println!("page loads: {loads}, warm collections: {}", warm.len());
    println!("module load+init: median {:.1} ms, max {:.1} ms", median(&mut load), max(&load));
    println!(
        "cold collect (challenge fetch excluded): median {:.2} ms, max {:.2} ms",
        median(&mut cold),
        max(&cold)
    );
    println!(
        "warm collect (challenge fetch excluded): median {:.2} ms, max {:.2} ms",
        median(&mut warm),
        max(&warm)
    );
}
