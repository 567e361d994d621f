//! The verifier's hot path against its floor.
//!
//! - `ed25519/verify_strict`: raw signature verification, the baseline.
//! - `pipeline/verify`: everything a `/v1/verify` does in the library —
//!   parse, challenge MAC, `verify_strict`, replay store, country and ASN
//!   lookup, all checks, verdict — on pre-minted unique tokens.
//! - `geo/country`: one country lookup in the default database
//!   (`.meridian/data/country.mmdb`, or `MERIDIAN_COUNTRY_DB`), falling back
//!   to the small test database when neither exists.
//!
//! - `scale/nonces/N`, `scale/keys/N`: the pipeline with N live nonces in
//!   the in-memory store, and with N keys in the JWKS.
//!
//! Run: `cargo bench -p meridian-verifier --bench verify`. Ratios to the
//! baseline, the scale ratios and the memory per live nonce are printed at
//! the end. The headline ratio times the baseline and the pipeline in
//! alternating rounds and takes the median: on a shared machine the two
//! criterion means, taken seconds apart, can drift ±10 % against each other.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, reason = "benchmark")]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use ed25519_dalek::{Signer, SigningKey};
use jiff::Timestamp;
use meridian_verifier::geo::{Country, IpIntel};
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::testkit::Minter;
use meridian_verifier::{Policy, Verifier, VerifyInput};

/// The allocator `meridian serve` runs with, so the library figures are the
/// server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn intel() -> (IpIntel, &'static str) {
    let path = std::env::var_os("MERIDIAN_COUNTRY_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.meridian/data/country.mmdb"));
    let asn = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.meridian/data/asn.mmdb");
    if path.exists() {
        let asn = asn.exists().then_some(asn);
        (IpIntel::open(Some(&path), asn.as_deref()).unwrap(), "default database")
    } else {
        (meridian_verifier::testkit::test_intel(), "test database")
    }
}

/// Public IPs spread over the address space (and one v6), for lookups.
const IPS: [&str; 8] = [
    "165.21.83.88",
    "153.150.0.1",
    "193.159.232.1",
    "73.162.0.1",
    "202.96.128.86",
    "117.239.0.1",
    "3.120.0.1",
    "2a00:1450:4001::1",
];

/// The baseline's input: a 700-byte message (a token's signing input is about
/// that long), its signature and the public key.
fn signed_message() -> (Vec<u8>, ed25519_dalek::Signature, ed25519_dalek::VerifyingKey) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let message = vec![0x5a; 700];
    let signature = key.sign(&message);
    (message, signature, key.verifying_key())
}

fn baseline(c: &mut Criterion) {
    let (message, signature, public) = signed_message();
    c.bench_function("ed25519/verify_strict", |b| {
        b.iter(|| public.verify_strict(black_box(&message), black_box(&signature)).unwrap())
    });
}

/// Times `verifier.verify` on unique tokens minted outside the timed region.
fn bench_pipeline(c: &mut Criterion, name: &str, minter: &Minter, verifier: &Verifier, salt: u8) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let ip: IpAddr = IPS[0].parse().unwrap();
    let start = Timestamp::now().as_millisecond();
    let mut counter: u64 = 0;
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let tokens = mint(minter, ip, start, salt, &mut counter, iters);
            let now = Timestamp::from_millisecond(start + 1_000).unwrap();
            let began = Instant::now();
            runtime.block_on(verify_all(verifier, &tokens, ip, now));
            began.elapsed()
        })
    });
}

/// `count` tokens for `ip` with unique nonces: `salt` bytes after a counter.
fn mint(minter: &Minter, ip: IpAddr, start: i64, salt: u8, counter: &mut u64, count: u64) -> Vec<String> {
    (0..count)
        .map(|_| {
            *counter += 1;
            let mut nonce = [salt; 16];
            nonce[..8].copy_from_slice(&counter.to_le_bytes());
            minter.token(ip, start, nonce)
        })
        .collect()
}

/// Verifies each token in turn inside one runtime entry, as a server's
/// request handlers do (entering a runtime per call would time the harness).
async fn verify_all(verifier: &Verifier, tokens: &[String], ip: IpAddr, now: Timestamp) {
    for token in tokens {
        let input = VerifyInput {
            token,
            remote_ip: ip,
            accept_language: Some("de-DE,de;q=0.9"),
            expected_action: Some("login"),
            expected_origin: None,
            account: None,
            organization: None,
        };
        let outcome = verifier.verify(&input, now).await;
        assert!(outcome.success, "{:?}", outcome.error);
        black_box(outcome);
    }
}

fn verifier_for(keys: meridian_verifier::Keys, store: MemoryReplayStore) -> Verifier {
    let (intel, _) = intel();
    let policy =
        Policy { restricted_regions: Country::parse("CN").into_iter().collect(), ..Policy::default() };
    Verifier::new(keys, policy, Arc::new(store)).with_intel(Arc::new(intel))
}

fn pipeline(c: &mut Criterion) {
    let minter = Minter::new(5);
    let verifier = verifier_for(minter.keys.clone(), MemoryReplayStore::new(4_000_000));
    bench_pipeline(c, "pipeline/verify", &minter, &verifier, 0xa5);
}

/// Verify cost with many live nonces in the store and many keys in the JWKS.
fn scale(c: &mut Criterion) {
    let minter = Minter::new(5);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let far_future = Timestamp::now().as_millisecond() + 3_600_000;
    for live in [10u32, 1_000, 100_000, 1_000_000] {
        let store = MemoryReplayStore::new(4_000_000);
        for n in 0..live {
            let mut nonce = [0x3c; 16];
            nonce[..4].copy_from_slice(&n.to_le_bytes());
            nonce[4] = (n.wrapping_mul(2_654_435_761) >> 24) as u8;
            runtime
                .block_on(meridian_verifier::replay::ReplayStore::spend(&store, nonce, far_future, 0))
                .unwrap();
        }
        let verifier = verifier_for(minter.keys.clone(), store);
        bench_pipeline(c, &format!("scale/nonces/{live}"), &minter, &verifier, 0x5b);
    }
    for count in [1usize, 100] {
        let mut jwks = minter.keys.collector.jwks().clone();
        for i in 1..count {
            let other = SigningKey::from_bytes(&[u8::try_from(i % 250).unwrap() + 1; 32]);
            let mut jwk = meridian_protocol::jwk::Jwk::public(&other.verifying_key());
            jwk.nbf = Some(i64::try_from(i).unwrap());
            jwks.keys.push(jwk);
        }
        let keys = meridian_verifier::Keys {
            collector: meridian_verifier::CollectorKeys::from_jwks(jwks).unwrap(),
            challenge: minter.keys.challenge.clone(),
        };
        let verifier = verifier_for(keys, MemoryReplayStore::new(4_000_000));
        bench_pipeline(c, &format!("scale/keys/{count}"), &minter, &verifier, 0x6c);
    }
}

/// Resident memory of this process, bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// Bytes per live nonce in the in-memory store, from RSS before and after
/// one million spends.
fn memory_per_nonce() -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let before = rss();
    let store = MemoryReplayStore::new(2_000_000);
    for n in 0..1_000_000u32 {
        let mut nonce = [0x11; 16];
        nonce[..4].copy_from_slice(&n.to_le_bytes());
        nonce[4] = (n.wrapping_mul(2_654_435_761) >> 24) as u8;
        runtime.block_on(meridian_verifier::replay::ReplayStore::spend(&store, nonce, i64::MAX, 0)).unwrap();
    }
    let after = rss();
    black_box(&store);
    (after.saturating_sub(before)) as f64 / 1_000_000.0
}

fn lookup(c: &mut Criterion) {
    let (intel, source) = intel();
    let ips: Vec<IpAddr> = IPS.iter().map(|ip| ip.parse().unwrap()).collect();
    eprintln!("geo/country uses the {source}");
    let mut i = 0;
    c.bench_function("geo/country", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(intel.country(black_box(ips[i])))
        })
    });
}

/// Raw `verify_strict` and the pipeline timed in alternating rounds, so a
/// noisy neighbour slows both sides of a round alike (criterion measures
/// them seconds apart). Returns the per-round ratios (raw time / pipeline
/// time, i.e. pipeline throughput over raw) and the per-round microseconds.
fn paired_rounds(rounds: usize, batch: usize) -> Vec<(f64, f64, f64)> {
    let (message, signature, public) = signed_message();
    let minter = Minter::new(5);
    let verifier = verifier_for(minter.keys.clone(), MemoryReplayStore::new(4_000_000));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let ip: IpAddr = IPS[0].parse().unwrap();
    let start = Timestamp::now().as_millisecond();
    let now = Timestamp::from_millisecond(start + 1_000).unwrap();
    let mut counter: u64 = 0;
    (0..rounds)
        .map(|_| {
            let tokens = mint(&minter, ip, start, 0x3c, &mut counter, batch as u64);
            let began = Instant::now();
            for _ in 0..batch {
                public.verify_strict(black_box(&message), black_box(&signature)).unwrap();
            }
            let raw = began.elapsed().as_secs_f64();
            let began = Instant::now();
            runtime.block_on(verify_all(&verifier, &tokens, ip, now));
            let full = began.elapsed().as_secs_f64();
            let per = |t: f64| t * 1e6 / batch as f64;
            (raw / full, per(raw), per(full))
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn report(c: &mut Criterion) {
    let _ = c;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let mean = |name: &str| -> Option<f64> {
        let text = std::fs::read_to_string(dir.join(name).join("new/estimates.json")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["mean"]["point_estimate"].as_f64()
    };
    let (rounds, batch) = (31, 400);
    let paired = paired_rounds(rounds, batch);
    let ratios: Vec<f64> = paired.iter().map(|p| p.0).collect();
    let (low, high) = ratios.iter().fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
    println!(
        "ratio: pipeline throughput = {:.3} x ed25519 verify_strict throughput ({:.1} us vs {:.1} us per verification)",
        median(ratios),
        median(paired.iter().map(|p| p.2).collect()),
        median(paired.iter().map(|p| p.1).collect()),
    );
    print!("ratio method: median of {rounds} interleaved rounds of {batch} each (range {low:.3}-{high:.3})");
    if let (Some(base), Some(full)) = (mean("ed25519_verify_strict"), mean("pipeline_verify")) {
        print!(
            "; criterion's separate means give {:.3} ({:.1} us vs {:.1} us)",
            base / full,
            full / 1000.0,
            base / 1000.0
        );
    }
    println!();
    if let Some(country) = mean("geo_country") {
        println!("country lookup: {country:.0} ns");
    }
    let scale = |group: &str, sizes: &[&str]| {
        let means: Vec<(String, f64)> = sizes
            .iter()
            .filter_map(|n| mean(&format!("{group}_{n}")).map(|m| ((*n).to_owned(), m)))
            .collect();
        if let (Some(first), Some(last)) = (means.first(), means.last()) {
            println!(
                "{group}: {} (last/first = {:.3})",
                means
                    .iter()
                    .map(|(n, m)| format!("{n}: {:.1} us", m / 1000.0))
                    .collect::<Vec<_>>()
                    .join(", "),
                last.1 / first.1
            );
        }
    };
    scale("scale_nonces", &["10", "1000", "100000", "1000000"]);
    scale("scale_keys", &["1", "100"]);
    println!("memory per live nonce: {:.1} bytes (RSS growth over 1,000,000 spends)", memory_per_nonce());
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = baseline, pipeline, scale, lookup, report
}

fn main() {
    benches();
    Criterion::default().final_summary();
}
