//! The clock sample: the challenge fetch, timed by `performance.now()`, and
//! the wall clock when its answer arrived. The verifier turns this into a
//! skew interval whose width is the round trip.

use js_sys::{Date, Promise, Reflect};
use meridian_protocol::ClockSample;
use wasm_bindgen::{JsCast, JsError, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestCache, RequestCredentials, RequestInit, Response};

/// A challenge and the clock sample taken while fetching it.
pub struct FetchedChallenge {
    /// The opaque challenge string.
    pub challenge: String,
    /// Wall clock at arrival and the round trip.
    pub sample: ClockSample,
}

/// `Date.now()` as whole milliseconds.
pub fn wall_clock_ms() -> i64 {
    Date::now() as i64
}

/// Monotonic milliseconds from `performance.now()`, in a window or a worker.
fn monotonic_ms() -> f64 {
    Reflect::get(&js_sys::global(), &JsValue::from_str("performance"))
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
        .map_or_else(Date::now, |p| p.now())
}

/// Fetches `GET challenge_url` and samples the clocks around it.
///
/// # Errors
/// When the request fails, answers with a non-2xx status or lacks a
/// `challenge` string.
pub async fn fetch_challenge(challenge_url: &str) -> Result<FetchedChallenge, JsError> {
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_cache(RequestCache::NoStore);
    init.set_credentials(RequestCredentials::Omit);
    let fetch = Reflect::get(&js_sys::global(), &JsValue::from_str("fetch"))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or_else(|| JsError::new("meridian: fetch is not available"))?;
    let started = monotonic_ms();
    let promise: Promise = fetch
        .call2(&js_sys::global(), &JsValue::from_str(challenge_url), &init)
        .and_then(|p| p.dyn_into())
        .map_err(|_| JsError::new("meridian: could not start the challenge request"))?;
    let response: Response = JsFuture::from(promise)
        .await
        .and_then(|r| r.dyn_into())
        .map_err(|_| JsError::new("meridian: challenge request failed"))?;
    if !response.ok() {
        return Err(JsError::new(&format!(
            "meridian: challenge request answered HTTP {}",
            response.status()
        )));
    }
    let body = response.json().map_err(|_| JsError::new("meridian: challenge response is not JSON"))?;
    let body =
        JsFuture::from(body).await.map_err(|_| JsError::new("meridian: challenge response is not JSON"))?;
    let finished = monotonic_ms();
    let received_at_ms = wall_clock_ms();
    let challenge = Reflect::get(&body, &JsValue::from_str("challenge"))
        .ok()
        .and_then(|c| c.as_string())
        .ok_or_else(|| JsError::new("meridian: challenge response has no `challenge`"))?;
    let round_trip = (finished - started).max(0.0).ceil();
    Ok(FetchedChallenge {
        challenge,
        sample: ClockSample {
            received_at_ms,
            round_trip_ms: if round_trip < f64::from(u32::MAX) { round_trip as u32 } else { u32::MAX },
        },
    })
}
