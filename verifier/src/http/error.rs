//! The API's edge: one error type with its status, stable code and message,
//! and the extractors that produce it (the bearer secret, JSON bodies).
//! Handlers never choose a status for a bad request themselves.

use std::borrow::Cow;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::ApiState;
use super::secret::any_matches;
use crate::VerifyOutcome;
use crate::error::ErrorCode;

/// A request the API refuses before (or instead of) verifying anything:
/// answered as a [`VerifyOutcome`] with `success: false`, the code in
/// `error_codes` and a sentence for the developer in `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: Cow<'static, str>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 400 `bad-request`.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "a valid `Authorization: Bearer <verify secret>` header is required",
        )
    }

    /// 429 `rate-limited`.
    pub fn rate_limited(message: &'static str) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, message)
    }

    /// 500 `internal-error`; the cause belongs in the log, not here.
    pub fn internal(message: &'static str) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Marks a response as a refused request, for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused(pub(crate) ErrorCode);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            outcome_response(self.status, VerifyOutcome::invalid_request(self.code, self.message));
        response.extensions_mut().insert(Refused(self.code));
        response
    }
}

/// The only place an outcome becomes a response: clients get the stable
/// shape, never internal error text.
pub(crate) fn outcome_response(status: StatusCode, outcome: VerifyOutcome) -> Response {
    (status, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(outcome)).into_response()
}

/// Proof that the request presented one of the verify secrets
/// (`Authorization: Bearer <secret>`); every secret is compared, in
/// constant time.
#[derive(Debug, Clone, Copy)]
pub struct Authorized(());

impl FromRequestParts<ApiState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if any_matches(&state.inner.secrets, presented) {
            Ok(Self(()))
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// How much of an oversized body is read before it is refused.
const DRAIN_BYTES: usize = 1 << 20;

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BadRequest,
        format!("request body exceeds {} bytes", super::MAX_BODY_BYTES),
    )
}

/// A JSON body, refused as an [`ApiError`]: 413 over the body limit, 415
/// without `Content-Type: application/json`, 400 when it does not parse
/// as `T` (the message never echoes the body).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let body = read_body(request).await?;
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::BadRequest,
                "Content-Type must be application/json",
            ));
        }
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|_| ApiError::bad_request("body is not JSON of the expected shape"))
    }
}

/// The body within the limit, else 413.
async fn read_body(request: Request) -> Result<axum::body::Bytes, ApiError> {
    // An oversized body is still read, up to DRAIN_BYTES, before the 413: a
    // server that answers while the client is still sending and then closes
    // resets the connection, and the client never sees the answer. Beyond
    // that, the connection is dropped.
    let body = axum::body::to_bytes(request.into_body(), DRAIN_BYTES).await.map_err(|_| too_large())?;
    if body.len() > super::MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(body)
}

/// A text body of any content type, refused as an [`ApiError`]: 413 over
/// the body limit, 400 when it is not UTF-8.
#[derive(Debug, Clone)]
pub(crate) struct ApiText(pub(crate) String);

impl<S: Send + Sync> FromRequest<S> for ApiText {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let body = read_body(request).await?;
        String::from_utf8(body.to_vec())
            .map(Self)
            .map_err(|_| ApiError::bad_request("body is not UTF-8 text"))
    }
}
