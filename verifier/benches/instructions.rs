//! Instruction counts of the verifier's hot path, under Valgrind's
//! callgrind (gungraun): the same for the same binary and inputs whatever
//! else the machine is doing, so a regression shows on a noisy machine
//! where wall times swing.
//!
//! - `raw/verify_strict`: Ed25519 verification of a 700-byte message, the floor.
//! - `pipeline/verify`: one `Verifier::verify` of a fresh token — parse,
//!   signature, challenge MAC, replay store, lookups, checks, verdict.
//! - `evidence/run`: the checks alone, on claims already verified.
//! - `claims/parse`: the signed payload's JSON into `Claims`.
//!
//! Only the benchmark function is counted; each `setup` runs outside the
//! measurement and first does the same work once, so that what is counted
//! is the steady state a running server is in (lazily built tables and the
//! zone database already loaded), as in the wall-time bench. Run: `scripts/bench-instructions` (installs the matching
//! `gungraun-runner` and writes the figures to docs/BENCHMARKS.md), or
//! `cargo bench -p meridian-verifier --bench instructions` with the runner
//! installed.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, reason = "benchmark")]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use gungraun::{library_benchmark, library_benchmark_group, main};
use jiff::Timestamp;
use meridian_protocol::Claims;
use meridian_verifier::checks::{self, Evidence};
use meridian_verifier::geo::{Country, IpFacts};
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::testkit::{Minter, test_intel};
use meridian_verifier::{Policy, UntrustedToken, Verifier, VerifyInput, VerifyOutcome};

/// The allocator `meridian serve` runs with, as in the wall-time bench.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A fixed instant, so every run counts the same work.
const NOW_MS: i64 = 1_800_000_000_000;
const IP: &str = "193.159.232.1";

fn policy() -> Policy {
    Policy { restricted_regions: Country::parse("CN").into_iter().collect(), ..Policy::default() }
}

fn token(minter: &Minter, nonce: u8) -> String {
    minter.token(IP.parse().unwrap(), NOW_MS, [nonce; 16])
}

fn signed_message() -> (Vec<u8>, Signature, VerifyingKey) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let message = vec![0x5a; 700];
    let signature = key.sign(&message);
    let public = key.verifying_key();
    assert!(public.verify_strict(&message, &signature).is_ok());
    (message, signature, public)
}

#[library_benchmark]
#[bench::message(setup = signed_message)]
fn verify_strict((message, signature, public): (Vec<u8>, Signature, VerifyingKey)) -> bool {
    public.verify_strict(black_box(&message), black_box(&signature)).is_ok()
}

struct Pipeline {
    runtime: tokio::runtime::Runtime,
    verifier: Verifier,
    token: String,
}

fn pipeline_input() -> Pipeline {
    let minter = Minter::new(5);
    let verifier = Verifier::new(minter.keys.clone(), policy(), Arc::new(MemoryReplayStore::new(1_000)))
        .with_intel(Arc::new(test_intel()));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let warm_up = Pipeline { runtime, verifier, token: token(&minter, 0x11) };
    verify_once(&warm_up);
    Pipeline { token: token(&minter, 0xa5), ..warm_up }
}

#[library_benchmark]
#[bench::token(setup = pipeline_input)]
fn verify(input: Pipeline) -> VerifyOutcome {
    verify_once(&input)
}

fn verify_once(input: &Pipeline) -> VerifyOutcome {
    let request = VerifyInput {
        token: &input.token,
        remote_ip: IP.parse().unwrap(),
        accept_language: Some("de-DE,de;q=0.9"),
        expected_action: Some("login"),
        expected_origin: None,
        account: None,
        organization: None,
    };
    let now = Timestamp::from_millisecond(NOW_MS + 1_000).unwrap();
    let outcome = input.runtime.block_on(input.verifier.verify(black_box(&request), now));
    assert!(outcome.success, "{:?}", outcome.error_codes);
    outcome
}

struct Checked {
    claims: Claims,
    skew: meridian_verifier::ClockSkew,
    challenge_ip: IpAddr,
    facts: IpFacts,
    policy: Policy,
}

fn checks_input() -> Checked {
    let minter = Minter::new(5);
    let token = token(&minter, 0xa5);
    let now = Timestamp::from_millisecond(NOW_MS + 1_000).unwrap();
    let verified = UntrustedToken::parse(&token)
        .unwrap()
        .check_signature(&minter.keys.collector, now)
        .unwrap()
        .open_challenge(&minter.keys.challenge, now)
        .unwrap();
    let skew = verified.skew();
    let challenge_ip = verified.challenge().ip;
    let facts = test_intel().lookup(IP.parse().unwrap());
    let checked = Checked { claims: verified.into_claims(), skew, challenge_ip, facts, policy: policy() };
    run_checks(&checked);
    checked
}

#[library_benchmark]
#[bench::claims(setup = checks_input)]
fn run(input: Checked) -> usize {
    run_checks(&input)
}

fn run_checks(input: &Checked) -> usize {
    let evidence = Evidence {
        challenge_country: None,
        claims: &input.claims,
        skew: input.skew,
        at: Timestamp::from_millisecond(NOW_MS).unwrap(),
        challenge_ip: input.challenge_ip,
        remote_ip: IP.parse().unwrap(),
        network: &input.facts,
        accept_language: Some("de-DE,de;q=0.9"),
        latency: None,
        udp_origin: None,
    };
    checks::run(black_box(&evidence), &input.policy).len()
}

fn payload() -> Vec<u8> {
    let minter = Minter::new(5);
    let token = token(&minter, 0xa5);
    let claims = UntrustedToken::parse(&token).unwrap().unverified_claims().unwrap();
    let payload = claims.to_json().into_bytes();
    assert_eq!(Claims::from_json(&payload).unwrap(), claims);
    payload
}

#[library_benchmark]
#[bench::payload(setup = payload)]
fn parse(payload: Vec<u8>) -> Claims {
    Claims::from_json(black_box(&payload)).unwrap()
}

library_benchmark_group!(name = raw; benchmarks = verify_strict);
library_benchmark_group!(name = pipeline; benchmarks = verify);
library_benchmark_group!(name = evidence; benchmarks = run);
library_benchmark_group!(name = claims; benchmarks = parse);

main!(library_benchmark_groups = raw, pipeline, evidence, claims);
