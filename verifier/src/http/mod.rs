//! The HTTP API (feature `http`): `GET /v1/challenge`, `POST /v1/verify`,
//! `GET /.well-known/jwks.json`, `GET /healthz`.
//!
//! [`router`] is a plain function of its state, so a backend can mount it in
//! its own axum app and tests can drive it with `tower::ServiceExt::oneshot`.

mod routes;
mod secret;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::Verifier;
use crate::clock::Clock;
use crate::net::TrustedProxies;

pub use secret::VerifySecret;

/// The largest request body `/v1/verify` reads. A token is at most 4 KiB;
/// the rest of the request is a few short strings.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Shared state of the HTTP API.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
    proxies: Arc<TrustedProxies>,
}

struct Inner {
    verifier: Verifier,
    secrets: Vec<VerifySecret>,
    clock: Arc<dyn Clock>,
    jwks_json: String,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("verifier", &self.inner.verifier)
            .field("secrets", &self.inner.secrets.len())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State for a verifier; `secrets` are the bearer secrets `/v1/verify`
    /// accepts (several, so they can rotate).
    pub fn new(verifier: Verifier, secrets: Vec<VerifySecret>, clock: Arc<dyn Clock>) -> Self {
        let jwks_json = serde_json::to_string(verifier.keys().collector.jwks()).unwrap_or_default();
        Self {
            inner: Arc::new(Inner { verifier, secrets, clock, jwks_json }),
            proxies: Arc::new(TrustedProxies::none()),
        }
    }

    /// Believes `Forwarded`/`X-Forwarded-For` from these proxies when
    /// finding the client IP a challenge is issued to.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = Arc::new(proxies);
        self
    }

    /// The client IP of a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: std::net::IpAddr, headers: &axum::http::HeaderMap) -> std::net::IpAddr {
        let joined = |name: axum::http::HeaderName| {
            let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        if self.proxies.is_empty() {
            return crate::net::canonical_ip(peer);
        }
        let forwarded = joined(axum::http::header::FORWARDED);
        let x_forwarded_for = joined(axum::http::HeaderName::from_static("x-forwarded-for"));
        self.proxies.client_ip(peer, forwarded.as_deref(), x_forwarded_for.as_deref())
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }
}

/// The API's routes with their limits.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/challenge", get(routes::challenge))
        .route("/v1/verify", post(routes::verify))
        .route("/.well-known/jwks.json", get(routes::jwks))
        .route("/healthz", get(routes::healthz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

#[cfg(test)]
mod tests;
