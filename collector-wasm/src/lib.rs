//! Meridian's browser collector.
//!
//! Runs on a login page as WebAssembly: reads the browser's clock,
//! time-zone, language and integrity signals, and signs them with the
//! deployment's embedded Ed25519 key into a compact JWS bound to a
//! challenge, the page's origin and an action.
//!
//! The asynchronous parts — fetching the challenge and hearing from the
//! Worker — are done by the drop-in (`js/meridian.js`), which then calls
//! [`sign`] once, synchronously: the module stays free of an async runtime
//! and its glue. This file is the JavaScript surface only; signals live in
//! [`signals`].

// In the browser the collector is `no_std`: with its own panic handler the
// standard library's panic and formatting machinery stays out of the wasm.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::{borrow::ToOwned, string::String};

use ed25519_dalek::SigningKey;
use js_sys::Object;
use meridian_protocol::{CLAIMS_VERSION, Claims, ClockSample, jws};
use wasm_bindgen::prelude::*;

pub mod signals;

/// A panic in the browser is a bug: stop the instance (the drop-in then
/// submits the form with an error marker) without formatting a message.
#[cfg(all(target_arch = "wasm32", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

include!(concat!(env!("OUT_DIR"), "/key.rs"));

#[wasm_bindgen(typescript_custom_section)]
const TYPESCRIPT: &str = r#"
/** What the drop-in hands to {@link sign}. */
export interface SignInput {
  /** The challenge string from the verifier's `GET /v1/challenge`. */
  challenge: string;
  /** `Date.now()` when the challenge arrived. */
  receivedAtMs: number;
  /** The challenge request's round trip, milliseconds (`performance.now()`). */
  roundTripMs: number;
  /** What the user is doing, e.g. "login". */
  action: string;
  /** What a dedicated Worker reported, if one answered. */
  worker?: { zone: string; off: number; locale: string; languages: string[] };
  /** `Function.prototype.toString` and `Date.prototype.toString` of a fresh
   *  realm (a hidden iframe), to stringify the page's functions with; the
   *  page's own are used when absent. */
  pristine?: [Function, Function];
}
/** Collects the page's signals and signs them with the challenge into a token. */
export function sign(input: SignInput): string;
/** The key id (RFC 7638 thumbprint) of the embedded signing key, or undefined. */
export function keyId(): string | undefined;
"#;

/// Collects the page's signals and signs them, with the challenge and the
/// Worker's view the drop-in gathered, into a token.
///
/// # Errors
/// When the input is incomplete or the collector was built without a
/// signing key.
#[wasm_bindgen(skip_typescript)]
pub fn sign(input: Object) -> Result<String, JsError> {
    let Some((seed, kid)) = SIGNING_KEY else {
        return Err(JsError::new("meridian: this collector was built without a signing key"));
    };
    let challenge = string_field(&input, "challenge")?;
    let action = string_field(&input, "action")?;
    let received_at = number_field(&input, "receivedAtMs")?;
    let round_trip = libm::ceil(number_field(&input, "roundTripMs")?.max(0.0));
    let claims = Claims {
        version: CLAIMS_VERSION,
        challenge,
        origin: signals::page_origin(),
        action,
        time_zone: signals::tz::collect(),
        locale: signals::locale::collect(),
        integrity: Some(signals::integrity::collect(&input)),
        worker: signals::worker::from_report(&signals::get(&input, "worker")),
        clock: ClockSample {
            received_at_ms: received_at as i64,
            round_trip_ms: if round_trip < f64::from(u32::MAX) { round_trip as u32 } else { u32::MAX },
        },
        signed_at_ms: signals::clock::wall_clock_ms(),
    };
    let key = SigningKey::from_bytes(&seed);
    Ok(jws::sign(claims.to_json().as_bytes(), &key, kid))
}

/// The key id of the embedded signing key, if the build has one.
#[wasm_bindgen(js_name = keyId, skip_typescript)]
pub fn key_id() -> Option<String> {
    SIGNING_KEY.map(|(_, kid)| kid.to_owned())
}

fn string_field(input: &Object, name: &str) -> Result<String, JsError> {
    signals::get(input, name)
        .as_string()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| input_error("a non-empty string", name))
}

fn number_field(input: &Object, name: &str) -> Result<f64, JsError> {
    signals::get(input, name)
        .as_f64()
        .filter(|n| n.is_finite())
        .ok_or_else(|| input_error("a finite number", name))
}

/// `meridian: sign() needs <what> `<name>``, without `format!` (and the
/// formatting machinery it would bring into the wasm).
fn input_error(what: &str, name: &str) -> JsError {
    let mut message = String::from("meridian: sign() needs ");
    for part in [what, " `", name, "`"] {
        message.push_str(part);
    }
    JsError::new(&message)
}
