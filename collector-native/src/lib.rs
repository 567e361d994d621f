//! Meridian's native collector: the same challenge-bound token the browser
//! collector signs, made by a command-line tool, a desktop app or a script.
//!
//! ```no_run
//! # async fn run() -> Result<(), meridian_native::CollectError> {
//! use meridian_native::{ChallengeSource, collect};
//!
//! let source = ChallengeSource::url("https://api.example.com/v1/challenge");
//! let token = collect(&source, "api").await?;
//! // Send it with the request the service checks:
//! // `Meridian-Token: <token>`.
//! # let _ = token;
//! # Ok(())
//! # }
//! ```
//!
//! - **What it says.** The system's IANA zone (`TZ` honoured) and its
//!   offsets now, on 1 January and on 1 July from the zone's rules; the
//!   locale and preferred languages (`LC_ALL`, `LC_MESSAGES`, `LANG`,
//!   `LANGUAGE`, else the OS's settings); the wall clock when the
//!   challenge arrived and the round trip that fetched it. The challenge
//!   comes through the verifier's echo when it answers, as in a browser,
//!   so a relay's distance shows (docs/SECURITY.md, "The hidden leg").
//! - **What it does not.** No page, so no Worker view and no page
//!   integrity report: those blocks are absent and the verifier's checks of
//!   them do not apply. Zone, language, clock, network and history checks
//!   are the same as for a browser.
//! - **Whose it is.** The claims' origin is `native:` followed by the
//!   challenge server's origin (`native:https://api.example.com`): the token
//!   is bound to the service it was made for, and a login page that accepts
//!   only its own `https://` origin refuses it.
//! - **How far to trust it.** The build key is hidden in the binary as the
//!   wasm's is, and can be extracted like it; what the OS reports is what
//!   its user set. What a relay cannot change is the network evidence.

#[cfg(feature = "fetch")]
use std::time::Duration;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use meridian_protocol::{CLAIMS_VERSION, Claims, ClockSample, jws};

#[cfg(feature = "fetch")]
mod echo;
pub mod environment;

include!(concat!(env!("OUT_DIR"), "/key.rs"));

/// The prefix that marks a native token's origin.
pub const NATIVE_ORIGIN_PREFIX: &str = "native:";

/// How long fetching the challenge may take.
#[cfg(feature = "fetch")]
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the challenge comes from.
#[derive(Debug, Clone)]
pub struct ChallengeSource {
    url: String,
    echo: bool,
}

impl ChallengeSource {
    /// The verifier's (or the service's) `GET /v1/challenge` URL. The
    /// challenge is taken through the echo beside it (`…/v1/echo`) when
    /// the server answers there, else fetched plain.
    pub fn url(url: impl Into<String>) -> Self {
        Self { url: url.into(), echo: true }
    }

    /// Fetches a plain challenge, without the echo: the token then carries
    /// no timing, and a service whose policy expects the echo
    /// (`withheld_echo`) holds it for review.
    #[must_use]
    pub fn without_echo(mut self) -> Self {
        self.echo = false;
        self
    }

    /// The origin the token is bound to: `native:` and the URL's
    /// `scheme://host[:port]`.
    ///
    /// # Errors
    /// When the URL is not an absolute `http(s)` URL.
    pub fn origin(&self) -> Result<String, CollectError> {
        native_origin(&self.url)
    }
}

/// `native:` and the origin of `url` (`scheme://host[:port]`), parsed as
/// the HTTP client parses it, so the token names the host it fetched from.
fn native_origin(url: &str) -> Result<String, CollectError> {
    let bad = |why: &dyn std::fmt::Display| CollectError::BadUrl(format!("{url}: {why}"));
    let parsed = url::Url::parse(url).map_err(|e| bad(&e))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(bad(&"not an http(s) URL"));
    }
    Ok(format!("{NATIVE_ORIGIN_PREFIX}{}", parsed.origin().ascii_serialization()))
}

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// The challenge URL is not usable.
    #[error("challenge URL {0}")]
    BadUrl(String),
    /// The challenge could not be fetched (network, status, body).
    #[error("cannot fetch the challenge: {0}")]
    Challenge(String),
    /// The action is empty or too long.
    #[error("the action must be 1 to 64 characters")]
    BadAction,
    /// This build has no embedded signing key.
    #[error(
        "this collector was built without a signing key (set MERIDIAN_NATIVE_COLLECTOR_KEY when building it)"
    )]
    NoKey,
}

/// One collection for an app that fetches the challenge with its own HTTP
/// client: [`Collection::start`] right before the request leaves,
/// [`Collection::sign`] as soon as the challenge arrives, so the round
/// trip and the clock reading bracket it as the browser's do.
#[derive(Debug)]
pub struct Collection {
    sent: Instant,
}

impl Collection {
    /// Notes that the challenge request is leaving now.
    pub fn start() -> Self {
        Self { sent: Instant::now() }
    }

    /// Signs this machine's signals with the embedded key for `action`,
    /// bound to `challenge` (the `challenge` field of `GET /v1/challenge`)
    /// from the service at `challenge_url`.
    ///
    /// # Errors
    /// When the URL or action is unusable or the build has no key.
    pub fn sign(self, challenge_url: &str, challenge: &str, action: &str) -> Result<String, CollectError> {
        let (seed, kid) = signing_key().ok_or(CollectError::NoKey)?;
        self.sign_with_key(challenge_url, challenge, action, &SigningKey::from_bytes(&seed), kid)
    }

    /// [`Self::sign`] with `key`, named `kid` (a key the caller holds:
    /// development and tests).
    ///
    /// # Errors
    /// When the URL or action is unusable.
    pub fn sign_with_key(
        self,
        challenge_url: &str,
        challenge: &str,
        action: &str,
        key: &SigningKey,
        kid: &str,
    ) -> Result<String, CollectError> {
        let received_at = Timestamp::now();
        let round_trip = self.sent.elapsed();
        if action.is_empty() || action.chars().count() > 64 {
            return Err(CollectError::BadAction);
        }
        let claims = Claims {
            version: CLAIMS_VERSION,
            challenge: challenge.to_owned(),
            origin: native_origin(challenge_url)?,
            action: action.to_owned(),
            time_zone: environment::time_zone(received_at),
            locale: environment::locale(),
            integrity: None,
            worker: None,
            clock: ClockSample {
                received_at_ms: received_at.as_millisecond(),
                // Rounded up, as the browser's is.
                round_trip_ms: u32::try_from(round_trip.as_micros().div_ceil(1000)).unwrap_or(u32::MAX),
            },
            signed_at_ms: Timestamp::now().as_millisecond(),
        };
        Ok(jws::sign(claims.to_json().as_bytes(), key, kid))
    }
}

/// What the verifier's `GET /v1/challenge` answers.
#[cfg(feature = "fetch")]
#[derive(Debug, serde::Deserialize)]
struct ChallengeResponse {
    challenge: String,
}

/// Collects this machine's signals and signs them, with the embedded key,
/// for `action`, bound to a challenge fetched from `source` (feature
/// `fetch`, on by default).
///
/// # Errors
/// When the challenge cannot be fetched, the action is unusable or the
/// build has no key.
#[cfg(feature = "fetch")]
pub async fn collect(source: &ChallengeSource, action: &str) -> Result<String, CollectError> {
    let (seed, kid) = signing_key().ok_or(CollectError::NoKey)?;
    collect_with_key(source, action, &SigningKey::from_bytes(&seed), kid).await
}

/// [`collect`] signed with `key`, named `kid` (a key the caller holds:
/// development and tests).
///
/// # Errors
/// As [`collect`].
#[cfg(feature = "fetch")]
pub async fn collect_with_key(
    source: &ChallengeSource,
    action: &str,
    key: &SigningKey,
    kid: &str,
) -> Result<String, CollectError> {
    if action.is_empty() || action.chars().count() > 64 {
        return Err(CollectError::BadAction);
    }
    source.origin()?;
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .user_agent(concat!("meridian-native/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CollectError::Challenge(e.to_string()))?;
    // Through the echo, so that a relay's distance shows: on a WebSocket,
    // else (a proxy that refuses the upgrade) over plain requests; a server
    // without it gets the plain request.
    let echoed = match echo::echo_url(&source.url).filter(|_| source.echo) {
        Some(url) => match echo::challenge(&client, &url).await {
            Ok(echoed) => Some(echoed),
            Err(_) => echo::challenge_over_requests(&client, &url).await.ok(),
        },
        None => None,
    };
    let (body, collection) = match echoed {
        Some((body, sent)) => (body, Collection { sent }),
        None => {
            let collection = Collection::start();
            let response = client
                .get(&source.url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| CollectError::Challenge(e.to_string()))?;
            let body: ChallengeResponse =
                response.json().await.map_err(|e| CollectError::Challenge(e.to_string()))?;
            (body, collection)
        }
    };
    collection.sign_with_key(&source.url, &body.challenge, action, key, kid)
}

/// The key id of the embedded signing key, if the build has one.
pub fn key_id() -> Option<&'static str> {
    signing_key().map(|(_, kid)| kid)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn the_origin_names_the_service_and_marks_the_token_native() {
        let origin = |url: &str| ChallengeSource::url(url).origin();
        assert_eq!(origin("https://api.example.com/v1/challenge").unwrap(), "native:https://api.example.com");
        assert_eq!(origin("http://127.0.0.1:8080/v1/challenge").unwrap(), "native:http://127.0.0.1:8080");
        assert_eq!(origin("HTTPS://Api.Example.com:8443").unwrap(), "native:https://api.example.com:8443");
        assert_eq!(origin("http://user:pw@example.com:80/x").unwrap(), "native:http://example.com");
        // Named as the client fetches it: the host after the last `@`,
        // international names in punycode.
        assert_eq!(origin("https://evil.example\\@good.example/").unwrap(), "native:https://evil.example");
        assert_eq!(origin("https://bücher.example/").unwrap(), "native:https://xn--bcher-kva.example");
        assert!(matches!(origin("ftp://example.com/x"), Err(CollectError::BadUrl(_))));
        assert!(matches!(origin("/v1/challenge"), Err(CollectError::BadUrl(_))));
        assert!(matches!(origin("https://"), Err(CollectError::BadUrl(_))));
    }

    #[test]
    fn an_app_with_its_own_client_signs_what_it_fetched() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let token = Collection::start()
            .sign_with_key("https://API.example.com:443/v1/challenge?x=1", "c1", "api", &key, "k")
            .unwrap();
        let jws = jws::CompactJws::parse(&token).unwrap();
        jws.verify(&key.verifying_key()).unwrap();
        let claims = Claims::from_json(jws.payload()).unwrap();
        assert_eq!(
            (claims.challenge.as_str(), claims.origin.as_str()),
            ("c1", "native:https://api.example.com")
        );
        assert!(claims.integrity.is_none() && claims.worker.is_none());
        assert!(matches!(
            Collection::start().sign_with_key("https://x", "c", "", &key, "k"),
            Err(CollectError::BadAction)
        ));
    }

    #[cfg(feature = "fetch")]
    #[tokio::test]
    async fn bad_actions_and_unreachable_servers_are_clear_errors() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let source = ChallengeSource::url("http://127.0.0.1:9/v1/challenge");
        assert!(matches!(collect_with_key(&source, "", &key, "k").await, Err(CollectError::BadAction)));
        let long = "x".repeat(65);
        assert!(matches!(collect_with_key(&source, &long, &key, "k").await, Err(CollectError::BadAction)));
        let error = collect_with_key(&source, "login", &key, "k").await.unwrap_err();
        assert!(matches!(error, CollectError::Challenge(_)), "{error}");
    }

    #[test]
    fn the_embedded_key_unmasks_to_the_key_its_kid_names() {
        match signing_key() {
            None => assert_eq!(key_id(), None),
            Some((seed, kid)) => {
                let public = SigningKey::from_bytes(&seed).verifying_key();
                assert_eq!(meridian_protocol::jwk::thumbprint(&public), kid);
            }
        }
    }
}
