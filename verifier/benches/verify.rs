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
//! Run: `cargo bench -p meridian-verifier --bench verify`. The ratio of the
//! pipeline to the baseline is printed at the end.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, reason = "benchmark")]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use ed25519_dalek::{Signer, SigningKey};
use jiff::Timestamp;
use meridian_verifier::geo::IpIntel;
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::testkit::Minter;
use meridian_verifier::{Policy, Verifier, VerifyInput};

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

fn baseline(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let message = vec![0x5a; 700];
    let signature = key.sign(&message);
    let public = key.verifying_key();
    c.bench_function("ed25519/verify_strict", |b| {
        b.iter(|| public.verify_strict(black_box(&message), black_box(&signature)).unwrap())
    });
}

fn pipeline(c: &mut Criterion) {
    let (intel, _) = intel();
    let minter = Minter::new(5);
    let policy = Policy { restricted_regions: vec!["CN".into()], ..Policy::default() };
    let verifier = Verifier::new(minter.keys.clone(), policy, Arc::new(MemoryReplayStore::new(4_000_000)))
        .with_intel(Arc::new(intel));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let ip: IpAddr = "165.21.83.88".parse().unwrap();
    let start = Timestamp::now().as_millisecond();
    let mut counter: u64 = 0;
    c.bench_function("pipeline/verify", |b| {
        b.iter_custom(|iters| {
            // Mint unique tokens outside the timed region.
            let tokens: Vec<String> = (0..iters)
                .map(|_| {
                    counter += 1;
                    let mut nonce = [0u8; 16];
                    nonce[..8].copy_from_slice(&counter.to_le_bytes());
                    nonce[8] = 0xa5;
                    minter.token(ip, start, nonce)
                })
                .collect();
            let now = Timestamp::from_millisecond(start + 1_000).unwrap();
            let began = Instant::now();
            for token in &tokens {
                let input = VerifyInput {
                    token,
                    remote_ip: ip,
                    accept_language: Some("de-DE,de;q=0.9"),
                    expected_action: Some("login"),
                    expected_origin: None,
                };
                let outcome = runtime.block_on(verifier.verify(&input, now));
                assert!(outcome.success, "{:?}", outcome.error);
                black_box(outcome);
            }
            began.elapsed()
        })
    });
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

fn report(c: &mut Criterion) {
    let _ = c;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let mean = |name: &str| -> Option<f64> {
        let text = std::fs::read_to_string(dir.join(name).join("new/estimates.json")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["mean"]["point_estimate"].as_f64()
    };
    if let (Some(base), Some(full)) = (mean("ed25519_verify_strict"), mean("pipeline_verify")) {
        println!(
            "ratio: pipeline throughput = {:.3} x ed25519 verify_strict throughput ({:.1} us vs {:.1} us per verification)",
            base / full,
            full / 1000.0,
            base / 1000.0
        );
    }
    if let Some(country) = mean("geo_country") {
        println!("country lookup: {country:.0} ns");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = baseline, pipeline, lookup, report
}

fn main() {
    benches();
    Criterion::default().final_summary();
}
