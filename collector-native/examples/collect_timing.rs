//! Times the native collector inside one process: fetches a challenge and
//! signs a token `RUNS` times against a live verifier, and prints the
//! median and 90th percentile (`scripts/bench-native` runs it). The
//! challenge comes through the echo, or plain with a fourth argument `plain`.
//!
//! Usage: `collect_timing CHALLENGE_URL PRIVATE_JWK RUNS [plain]`

use std::time::{Duration, Instant};

use meridian_native::{ChallengeSource, collect_with_key};
use meridian_protocol::jwk::{Jwk, thumbprint};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, key, runs, plain) = match args.as_slice() {
        [url, key, runs] => (url, key, runs, false),
        [url, key, runs, how] if how == "plain" => (url, key, runs, true),
        _ => return Err("usage: collect_timing CHALLENGE_URL PRIVATE_JWK RUNS [plain]".into()),
    };
    let text = std::fs::read_to_string(key).map_err(|e| format!("{key}: {e}"))?;
    let jwk: Jwk = serde_json::from_str(&text).map_err(|e| format!("{key}: {e}"))?;
    let signing = jwk.signing_key().map_err(|e| format!("{key}: {e}"))?;
    let kid = thumbprint(&signing.verifying_key());
    let runs: usize = runs.parse().map_err(|e| format!("RUNS: {e}"))?;
    let source = ChallengeSource::url(url.as_str());
    let source = if plain { source.without_echo() } else { source };
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        collect_with_key(&source, "api", &signing, &kid).await.map_err(|e| e.to_string())?;
        times.push(started.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "library collect(){}, {runs} runs: median {:.2} ms, p90 {:.2} ms",
        if plain { " with a plain challenge" } else { " through the echo" },
        at(0.5),
        at(0.9)
    );
    Ok(())
}
