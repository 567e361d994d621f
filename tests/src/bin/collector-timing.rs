//! Browser harness: how long the collector takes in headless Chromium.
//!
//! For each of N fresh page loads: wait until the module is ready, then time
//! the first `collect()` of a fresh drop-in instance (cold, its session —
//! fresh realm, Worker and key import — included), the first `collect()` of
//! the page's own instance (its session made when the browser was idle) and
//! 20 more (warm), each with a plain challenge (`echo: false`) and minus
//! the duration of its `/v1/challenge` request (from Resource Timing), so
//! the figures are the collector's own work; a fresh instance's first
//! `collect()` through the echo, network included; then 10 collections through
//! the echo, network included, next to 10 with a plain challenge request,
//! for what the echo adds to a login. Prints medians and extremes.
//!
//!     cargo run --release -p meridian-tests --bin collector-timing [-- LOADS [PAGE [udp]]]
//!
//! PAGE is the demo's sign-in page to load, `/` by default; `/?signer=wasm`
//! times the collector signing with its wasm Ed25519. `udp` opens the
//! demo's UDP origin port, so the collections through the echo also send
//! the UDP probe and wait for the verifier to have seen it.

#![allow(clippy::panic, reason = "a measurement harness stops at the first failure")]

use meridian_tests::{BrowserOptions, DemoOptions, start_browser, start_demo_configured};

const SCRIPT: &str = r#"
const [meridianFirst, done] = arguments;
(async () => {
  // The page already loaded the drop-in; fresh instances (a query string
  // makes a new module) time what a first load costs: fetching, compiling
  // and instantiating the wasm, then the drop-in's own start (its Worker
  // and its fresh realm, a hidden iframe), with the wasm already there.
  const t = performance.now();
  const glue = await import('/pkg/meridian_collector.js?fresh=' + Math.random());
  await glue.default({ module_or_path: '/pkg/meridian_collector_bg.wasm?fresh=' + Math.random() });
  const wasmInit = performance.now() - t;
  const t1 = performance.now();
  await import('/pkg/meridian.js?fresh=' + Math.random());
  const dropIn = performance.now() - t1;
  const m = await import('/pkg/meridian.js');
  await m.ready;
  // FingerprintJS OSS, when the bench script put it beside the collector.
  const fp = await new Promise(resolve => {
    const s = document.createElement('script');
    s.src = '/pkg/fp.min.js';
    s.onload = () => resolve(window.FingerprintJS || null);
    s.onerror = () => resolve(null);
    document.head.append(s);
  });
  // ICU starts on the first Intl call (tens of ms); neither library should
  // be charged for it, so start it first.
  new Intl.DateTimeFormat().resolvedOptions();
  await new Promise(r => setTimeout(r, 200));
  // A fresh drop-in instance, its module started but no session yet: the
  // session (made when the browser is idle) is made by this first collect.
  async function meridianWithSession() {
    const fresh = await import('/pkg/meridian.js?fresh=' + Math.random());
    await fresh.ready;
    return meridian(fresh);
  }
  // The same through the echo, all of it: what the first login of a page
  // that collects at once waits for.
  async function meridianWithSessionEcho() {
    const fresh = await import('/pkg/meridian.js?fresh=' + Math.random());
    await fresh.ready;
    const t0 = performance.now();
    await fresh.collect({ action: 'login' });
    return performance.now() - t0;
  }
  // Without the echo, minus the challenge request: the collector's own work.
  async function meridian(instance = m) {
    performance.clearResourceTimings();
    const t0 = performance.now();
    await instance.collect({ action: 'login', echo: false });
    const total = performance.now() - t0;
    const fetch = performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/challenge')).pop();
    return total - (fetch ? fetch.duration : 0);
  }
  // With the echo, all of it: what a login waits for.
  async function meridianEcho() {
    const t0 = performance.now();
    await m.collect({ action: 'login' });
    return performance.now() - t0;
  }
  // The plain challenge request alone, as the page makes it.
  async function challengeFetch() {
    const t0 = performance.now();
    await (await fetch('/v1/challenge', { cache: 'no-store', credentials: 'omit' })).json();
    return performance.now() - t0;
  }
  let agent = null;
  async function fingerprint() {
    const t0 = performance.now();
    if (!agent) agent = await fp.load();
    await agent.get();
    return performance.now() - t0;
  }
  let coldSession, cold, fpCold = null;
  if (meridianFirst || !fp) {
    coldSession = await meridianWithSession();
    cold = await meridian();
    if (fp) fpCold = await fingerprint();
  } else {
    fpCold = await fingerprint();
    coldSession = await meridianWithSession();
    cold = await meridian();
  }
  const coldEcho = await meridianWithSessionEcho();
  // What the collector's session costs (its fresh realm, a hidden iframe,
  // its Worker and the start of its key import; the drop-in makes one when
  // the browser is idle after load): one more, made the same way, after
  // the cold collections so that it warms nothing they time.
  const r0 = performance.now();
  const session = new glue.Session();
  const realm = performance.now() - r0;
  session.free();
  const warm = [], fpWarm = [];
  for (let i = 0; i < 20; i++) warm.push(await meridian());
  const echo = [], plain = [];
  for (let i = 0; i < 10; i++) {
    echo.push(await meridianEcho());
    plain.push((await meridian()) + (await challengeFetch()));
  }
  if (fp) for (let i = 0; i < 5; i++) fpWarm.push(await fingerprint());
  done({ wasmInit, dropIn, realm, coldSession, coldEcho, cold, warm, fpCold, fpWarm, echo, plain });
})().catch(e => done({ error: String(e) }));
"#;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let loads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    // The sign-in page, e.g. `/?signer=wasm` to time the wasm signer.
    let page = std::env::args().nth(2).unwrap_or_else(|| "/".into());
    let udp_origin = std::env::args().nth(3).is_some_and(|a| a == "udp");
    let demo = start_demo_configured(DemoOptions { udp_origin, ..DemoOptions::default() }).await;
    let browser = start_browser(BrowserOptions::default()).await;
    let (mut wasm_init, mut drop_in, mut realm) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cold_session, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    let mut cold_echo = Vec::new();
    let (mut fp_cold, mut fp_warm) = (Vec::new(), Vec::new());
    let (mut echo, mut plain) = (Vec::new(), Vec::new());
    for i in 0..loads {
        browser.client.goto(&format!("{}{page}", demo.origin)).await.unwrap_or_else(|e| panic!("{e}"));
        let meridian_first = serde_json::Value::Bool(i % 2 == 0);
        let result = browser
            .client
            .execute_async(SCRIPT, vec![meridian_first])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(error) = result.get("error") {
            panic!("collector failed: {error}");
        }
        wasm_init.push(result["wasmInit"].as_f64().unwrap_or(f64::NAN));
        drop_in.push(result["dropIn"].as_f64().unwrap_or(f64::NAN));
        realm.push(result["realm"].as_f64().unwrap_or(f64::NAN));
        cold_session.push(result["coldSession"].as_f64().unwrap_or(f64::NAN));
        cold_echo.push(result["coldEcho"].as_f64().unwrap_or(f64::NAN));
        cold.push(result["cold"].as_f64().unwrap_or(f64::NAN));
        warm.extend(result["warm"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_f64));
        fp_cold.extend(result["fpCold"].as_f64());
        echo.extend(result["echo"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_f64));
        plain.extend(result["plain"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_f64));
        fp_warm
            .extend(result["fpWarm"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_f64));
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    println!("page loads: {loads}, warm collections: {}", warm.len());
    println!(
        "wasm fetch+compile+instantiate (fresh instance): median {:.1} ms, max {:.1} ms",
        median(&mut wasm_init),
        max(&wasm_init)
    );
    println!(
        "drop-in start (fetch and evaluation; its wasm then starts in the background): median {:.1} ms, max {:.1} ms",
        median(&mut drop_in),
        max(&drop_in)
    );
    println!(
        "collector session, synchronous part (fresh realm, Worker, key import started; made when idle after load): median {:.1} ms, max {:.1} ms",
        median(&mut realm),
        max(&realm)
    );
    let cold_session_median = median(&mut cold_session);
    println!(
        "cold collect with its session (fresh realm, Worker, key import; challenge fetch excluded): median {cold_session_median:.2} ms, max {:.2} ms",
        max(&cold_session)
    );
    println!(
        "cold collect with its session and the echo{}, network included: median {:.2} ms, max {:.2} ms",
        if udp_origin { " and the UDP probe" } else { "" },
        median(&mut cold_echo),
        max(&cold_echo)
    );
    let cold_median = median(&mut cold);
    println!(
        "cold collect, session made when idle (challenge fetch excluded): median {cold_median:.2} ms, max {:.2} ms",
        max(&cold)
    );
    println!(
        "warm collect (challenge fetch excluded): median {:.2} ms, max {:.2} ms",
        median(&mut warm),
        max(&warm)
    );
    let (echo_median, plain_median) = (median(&mut echo), median(&mut plain));
    println!(
        "warm collect with the echo{}, network included: median {echo_median:.2} ms, max {:.2} ms; with a plain challenge fetch: median {plain_median:.2} ms; the echo{} adds {:.2} ms",
        if udp_origin { " and the UDP probe" } else { "" },
        max(&echo),
        if udp_origin { " and the UDP probe" } else { "" },
        echo_median - plain_median
    );
    if fp_cold.is_empty() {
        println!("FingerprintJS: not measured (no /pkg/fp.min.js; scripts/bench provides it)");
    } else {
        let fp_cold_median = median(&mut fp_cold);
        println!(
            "FingerprintJS cold load()+get(): median {fp_cold_median:.2} ms, max {:.2} ms",
            max(&fp_cold)
        );
        println!(
            "FingerprintJS warm get(): median {:.2} ms, max {:.2} ms",
            median(&mut fp_warm),
            max(&fp_warm)
        );
        println!(
            "ratio: Meridian cold collect with its session / FingerprintJS cold load()+get() = {:.3}",
            cold_session_median / fp_cold_median
        );
        println!(
            "ratio: Meridian cold collect, session made when idle / FingerprintJS cold load()+get() = {:.3}",
            cold_median / fp_cold_median
        );
    }
}
