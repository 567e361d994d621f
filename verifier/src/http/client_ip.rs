//! The client's address, decided once at the edge.
//!
//! Challenge issuance, rate limiting, the [`super::Checked`] extractor and
//! the demo all take a [`ClientIp`]; none reads a forwarding header itself.
//! The rule is [`TrustedProxies::client_ip`]: the socket's peer, unless it
//! is a trusted proxy, then the first untrusted hop from the right of the
//! one header the operator chose (docs/SECURITY.md, "Behind proxies").

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::net::TrustedProxies;

/// The client address of a request, canonical (IPv4-mapped IPv6 unwrapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client address of a request from `peer` with `headers`.
    pub fn resolve(proxies: &TrustedProxies, peer: IpAddr, headers: &axum::http::HeaderMap) -> Self {
        let lines = headers.get_all(proxies.header().name()).iter().map(|value| value.as_bytes());
        Self(proxies.client_ip(peer, lines))
    }
}

/// The app is served without the peer's address.
#[derive(Debug, Clone, Copy)]
pub struct NoClientAddress;

impl IntoResponse for NoClientAddress {
    fn into_response(self) -> Response {
        tracing::error!(
            "the client address is unknown: serve with into_make_service_with_connect_info::<SocketAddr>()"
        );
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
    }
}

impl FromRequestParts<ApiState> for ClientIp {
    type Rejection = NoClientAddress;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let ConnectInfo(peer) =
            ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await.map_err(|_| NoClientAddress)?;
        Ok(Self::resolve(&state.proxies, peer.ip(), &parts.headers))
    }
}
