//! Every way a token can be rejected, each with its exact error.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;
use meridian_protocol::{base64url_encode, jws};

use super::*;
use crate::challenge::{ChallengeError, ChallengeKey, ChallengeKeys};
use crate::replay::MemoryReplayStore;
use crate::testkit::Minter;
use crate::{ErrorCode, Verifier, VerifyInput};

const T0: i64 = 1_800_000_000_000;
const IP: &str = "192.0.2.10";

fn ip() -> IpAddr {
    IP.parse().unwrap()
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap()
}

fn verify(minter: &Minter, token: &str, now_ms: i64) -> Result<VerifiedClaims, TokenError> {
    UntrustedToken::parse(token)?.verify(&minter.keys, &VerifyRules::default(), at(now_ms))
}

fn verifier(minter: &Minter) -> Verifier {
    Verifier::new(minter.keys.clone(), crate::Policy::default(), Arc::new(MemoryReplayStore::new(1000)))
}

fn input(token: &str) -> VerifyInput<'_> {
    VerifyInput {
        token,
        remote_ip: ip(),
        accept_language: None,
        expected_action: None,
        expected_origin: None,
        account: None,
        organization: None,
    }
}

#[test]
fn accepts_a_valid_token() {
    let minter = Minter::new(1);
    let claims = minter.claims(ip(), T0, [1; 16]);
    let verified = verify(&minter, &minter.sign(&claims), T0 + 100);
    let verified = verified.unwrap();
    assert_eq!(verified.claims(), &claims);
    assert_eq!(verified.challenge().ip, ip());
    assert_eq!(verified.kid(), minter.kid());
}

#[test]
fn missing_and_oversized() {
    let minter = Minter::new(1);
    assert_eq!(verify(&minter, "", T0), Err(TokenError::Missing));
    assert_eq!(verify(&minter, "  ", T0), Err(TokenError::Missing));
    let big = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        verify(&minter, &big, T0),
        Err(TokenError::TooLarge { len: MAX_TOKEN_BYTES + 1, max: MAX_TOKEN_BYTES })
    );
    assert_eq!(TokenError::Missing.code(), ErrorCode::MissingInputToken);
}

#[test]
fn implausible_clock_samples_are_refused() {
    let minter = Minter::new(1);
    let mut claims = minter.claims(ip(), T0, [7; 16]);
    // An hour-long round trip cannot fit in a two-minute challenge.
    claims.clock.round_trip_ms = 3_600_000;
    let error = verify(&minter, &minter.sign(&claims), T0 + 100).unwrap_err();
    assert!(matches!(error, TokenError::ImplausibleClock { round_trip_ms: 3_600_000, .. }), "{error:?}");
    assert_eq!(error.code(), ErrorCode::MalformedToken);
    // Received after it was signed, or signed long after receipt.
    let mut claims = minter.claims(ip(), T0, [8; 16]);
    claims.clock.received_at_ms = claims.signed_at_ms + 5_000;
    assert!(matches!(
        verify(&minter, &minter.sign(&claims), T0 + 100),
        Err(TokenError::ImplausibleClock { .. })
    ));
    let mut claims = minter.claims(ip(), T0, [9; 16]);
    claims.signed_at_ms = claims.clock.received_at_ms + 3_600_000;
    assert!(matches!(
        verify(&minter, &minter.sign(&claims), T0 + 100),
        Err(TokenError::ImplausibleClock { .. })
    ));
    // A slow but possible sample is fine.
    let mut claims = minter.claims(ip(), T0, [10; 16]);
    claims.clock.round_trip_ms = 30_000;
    assert!(verify(&minter, &minter.sign(&claims), T0 + 100).is_ok());
}

#[test]
fn collector_failure_markers() {
    let minter = Minter::new(1);
    assert_eq!(
        verify(&minter, "meridian-error:challenge-unreachable", T0),
        Err(TokenError::CollectorFailed { kind: "challenge-unreachable".into() })
    );
    assert_eq!(
        verify(&minter, "meridian-error:<script>x", T0),
        Err(TokenError::CollectorFailed { kind: "scriptx".into() })
    );
    assert_eq!(TokenError::CollectorFailed { kind: String::new() }.code(), ErrorCode::CollectorError);
}

#[test]
fn malformed() {
    let minter = Minter::new(1);
    assert_eq!(
        verify(&minter, "abc", T0),
        Err(TokenError::Malformed("malformed JWS: expected three dot-separated parts".into()))
    );
    // A correctly signed payload that is not claims.
    let token = jws::sign(b"{\"v\":1}", &minter.signing_key, &minter.kid());
    assert!(
        matches!(verify(&minter, &token, T0), Err(TokenError::Malformed(m)) if m.starts_with("claims are not valid"))
    );
}

#[test]
fn unsupported_algorithms() {
    let minter = Minter::new(1);
    let token = minter.token(ip(), T0, [1; 16]);
    let (_, rest) = token.split_once('.').unwrap_or_default();
    let (payload, _) = rest.split_once('.').unwrap_or_default();
    let none = format!("{}.{payload}.", base64url_encode(br#"{"alg":"none","typ":"JWT"}"#));
    assert_eq!(verify(&minter, &none, T0), Err(TokenError::UnsupportedAlgorithm { alg: "none".into() }));
    let hs = format!(
        "{}.{payload}.{}",
        base64url_encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        base64url_encode(&[7; 32])
    );
    assert_eq!(verify(&minter, &hs, T0), Err(TokenError::UnsupportedAlgorithm { alg: "HS256".into() }));
}

#[test]
fn unknown_key() {
    let minter = Minter::new(1);
    let stranger = Minter::new(2);
    let claims = minter.claims(ip(), T0, [1; 16]);
    let token = stranger.sign(&claims);
    assert_eq!(verify(&minter, &token, T0), Err(TokenError::UnknownKey { kid: Some(stranger.kid()) }));
    // A token signed by a stranger's key but naming ours must fail on the signature.
    let forged = jws::sign(claims.to_json().as_bytes(), &stranger.signing_key, &minter.kid());
    assert_eq!(verify(&minter, &forged, T0), Err(TokenError::BadSignature));
    let no_kid =
        jws::sign_with_header(br#"{"alg":"EdDSA"}"#, claims.to_json().as_bytes(), &minter.signing_key);
    assert_eq!(verify(&minter, &no_kid, T0), Err(TokenError::UnknownKey { kid: None }));
}

#[test]
fn bad_signature_on_any_payload_edit() {
    let minter = Minter::new(1);
    let token = minter.token(ip(), T0, [1; 16]);
    let (header, rest) = token.split_once('.').unwrap_or_default();
    let (payload, signature) = rest.split_once('.').unwrap_or_default();
    for i in 0..payload.len() {
        let mut edited = payload.as_bytes().to_vec();
        edited[i] = if edited[i] == b'x' { b'y' } else { b'x' };
        let edited = format!("{header}.{}.{signature}", String::from_utf8_lossy(&edited));
        let result = verify(&minter, &edited, T0);
        // Either the edited text no longer decodes, or the signature fails.
        assert!(
            matches!(result, Err(TokenError::BadSignature) | Err(TokenError::Malformed(_))),
            "edit at {i}: {result:?}"
        );
    }
    let mut claims = minter.claims(ip(), T0, [1; 16]);
    let good = minter.sign(&claims);
    claims.time_zone.zone = "America/New_York".into();
    let lie = minter.sign(&claims);
    let spliced = format!(
        "{}.{}.{}",
        good.split('.').next().unwrap_or_default(),
        lie.split('.').nth(1).unwrap_or_default(),
        good.split('.').nth(2).unwrap_or_default()
    );
    assert_eq!(verify(&minter, &spliced, T0), Err(TokenError::BadSignature));
}

#[test]
fn bad_challenge() {
    let minter = Minter::new(1);
    let mut claims = minter.claims(ip(), T0, [1; 16]);
    claims.challenge = "not-a-challenge".into();
    assert_eq!(
        verify(&minter, &minter.sign(&claims), T0),
        Err(TokenError::BadChallenge(ChallengeError::Malformed))
    );
    // A challenge sealed by another deployment's MAC key.
    let other = ChallengeKeys::new(vec![ChallengeKey::new(1, [0xee; 32])], 120).unwrap();
    claims.challenge = other.issue_with_nonce(ip(), T0, [1; 16]).challenge;
    assert_eq!(
        verify(&minter, &minter.sign(&claims), T0),
        Err(TokenError::BadChallenge(ChallengeError::BadMac))
    );
    // Issued in the future beyond the leeway.
    let claims = minter.claims(ip(), T0 + 60_000, [1; 16]);
    assert_eq!(
        verify(&minter, &minter.sign(&claims), T0),
        Err(TokenError::BadChallenge(ChallengeError::NotYetValid))
    );
}

#[test]
fn expired() {
    let minter = Minter::new(1);
    let token = minter.token(ip(), T0, [1; 16]);
    let expires_at_ms = T0 + 120_000;
    assert!(verify(&minter, &token, expires_at_ms - 1).is_ok());
    assert_eq!(
        verify(&minter, &token, expires_at_ms),
        Err(TokenError::Expired { now_ms: expires_at_ms, expires_at_ms })
    );
}

#[test]
fn allowed_origins_and_actions() {
    let minter = Minter::new(1);
    let token = minter.token(ip(), T0, [1; 16]);
    let rules =
        VerifyRules { allowed_origins: vec!["https://shop.example".into()], ..VerifyRules::default() };
    let parsed = UntrustedToken::parse(&token).unwrap();
    assert_eq!(
        parsed.verify(&minter.keys, &rules, at(T0)),
        Err(TokenError::OriginMismatch { found: "http://127.0.0.1:8080".into() })
    );
    let rules = VerifyRules { allowed_actions: vec!["signup".into()], ..VerifyRules::default() };
    assert_eq!(
        parsed.verify(&minter.keys, &rules, at(T0)),
        Err(TokenError::ActionMismatch { found: "login".into() })
    );
}

#[tokio::test]
async fn replayed_and_expectations() {
    let minter = Minter::new(1);
    let verifier = verifier(&minter);
    let token = minter.token(ip(), T0, [1; 16]);
    let wrong_origin = VerifyInput { expected_origin: Some("https://shop.example"), ..input(&token) };
    assert_eq!(
        verifier.accept(&wrong_origin, at(T0)).await.err(),
        Some(TokenError::OriginMismatch { found: "http://127.0.0.1:8080".into() })
    );
    let wrong_action = VerifyInput { expected_action: Some("pay"), ..input(&token) };
    assert_eq!(
        verifier.accept(&wrong_action, at(T0)).await.err(),
        Some(TokenError::ActionMismatch { found: "login".into() })
    );
    // Rejections above did not spend the nonce.
    let right = VerifyInput {
        expected_action: Some("login"),
        expected_origin: Some("http://127.0.0.1:8080"),
        ..input(&token)
    };
    assert!(verifier.accept(&right, at(T0)).await.is_ok());
    assert_eq!(verifier.accept(&right, at(T0 + 1)).await.err(), Some(TokenError::Replayed));
    let outcome = verifier.verify(&input(&token), at(T0 + 2)).await;
    assert!(!outcome.success);
    assert_eq!(outcome.error_codes, vec![ErrorCode::Replayed]);
}

#[tokio::test]
async fn store_failure_fails_closed() {
    let minter = Minter::new(1);
    let verifier =
        Verifier::new(minter.keys.clone(), crate::Policy::default(), Arc::new(MemoryReplayStore::new(1)));
    // Capacity rounds up to one per shard; fill the shard of nonce [1; 16].
    assert!(verifier.accept(&input(&minter.token(ip(), T0, [1; 16])), at(T0)).await.is_ok());
    let mut second = [1; 16];
    second[15] = 2;
    let outcome = verifier.verify(&input(&minter.token(ip(), T0, second)), at(T0)).await;
    assert_eq!(outcome.error_codes, vec![ErrorCode::InternalError]);
    assert!(!outcome.success);
}

#[test]
fn skew_is_an_interval_bounded_by_the_round_trip() {
    let minter = Minter::new(1);
    let mut claims = minter.claims(ip(), T0, [1; 16]);
    // Browser 5 s ahead: it received the answer 5 s + 40 ms after issue, rtt 80 ms.
    claims.clock.received_at_ms = T0 + 5_040;
    claims.clock.round_trip_ms = 80;
    claims.signed_at_ms = T0 + 5_060;
    let verified = verify(&minter, &minter.sign(&claims), T0 + 100).unwrap();
    assert_eq!(verified.skew(), ClockSkew { skew_ms: 5_000, uncertainty_ms: 40 });
    assert_eq!(verified.skew().min_abs_ms(), 4_960);
    // Hostile extremes are refused, without overflowing on the way.
    claims.clock.received_at_ms = i64::MIN;
    claims.clock.round_trip_ms = u32::MAX;
    assert!(matches!(
        verify(&minter, &minter.sign(&claims), T0 + 100),
        Err(TokenError::ImplausibleClock { .. })
    ));
    assert_eq!(
        ClockSkew::from_sample(
            &claims,
            verify(&minter, &minter.token(ip(), T0, [2; 16]), T0 + 100).unwrap().challenge()
        ),
        ClockSkew::from_sample(
            &claims,
            verify(&minter, &minter.token(ip(), T0, [3; 16]), T0 + 100).unwrap().challenge()
        ),
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let minter = Minter::new(1);
            let text = String::from_utf8_lossy(&bytes);
            prop_assert!(verify(&minter, &text, T0).is_err());
        }

        #[test]
        fn any_edit_of_a_valid_token_is_rejected(position in any::<prop::sample::Index>(), byte in 0x20u8..0x7f) {
            let minter = Minter::new(1);
            let token = minter.token(ip(), T0, [1; 16]);
            let mut bytes = token.clone().into_bytes();
            let i = position.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            let edited = String::from_utf8_lossy(&bytes).into_owned();
            prop_assert!(verify(&minter, &edited, T0).is_err(), "edit at {} verified", i);
        }
    }
}
