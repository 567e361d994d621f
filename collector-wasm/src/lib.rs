//! Meridian's browser collector.
//!
//! Runs on a login page as WebAssembly: reads the browser's clock,
//! time-zone, language and integrity signals, and signs them with the
//! deployment's embedded Ed25519 key into a compact JWS bound to a
//! challenge, the page's origin and an action.
//!
//! A [`Session`] measures everything the token says itself, through a
//! fresh realm it makes ([`signals::realm`]): the challenge round trip and
//! the instants on both ends, the Worker's view, the pristine `toString`s.
//! The page hands it only the challenge and the action, so no call with
//! made-up arguments can sign a clean integrity report, a clean Worker view
//! or a convenient clock. Fetching the challenge stays in the drop-in
//! (`js/meridian.js`), which keeps the module free of an async runtime.
//! This file is the JavaScript surface only; signals live in [`signals`].

// In the browser the collector is `no_std`: with its own panic handler the
// standard library's panic and formatting machinery stays out of the wasm.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::string::String;

use js_sys::{Array, Object};
use meridian_protocol::{CLAIMS_VERSION, Claims, ClockSample, jws};
use wasm_bindgen::prelude::*;

pub mod signals;
pub mod signer;

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
/** One collection: make it when the page loads (it starts a Worker and a
 *  hidden frame), call {@link Session.challengeSent} right before fetching
 *  the challenge, {@link Session.challengeReceived} when it arrives, and
 *  {@link Session.sign}. */
export class Session {
  free(): void;
  constructor();
  /** Notes the moment the challenge request leaves. */
  challengeSent(): void;
  /** Notes the moment the challenge arrives (optional: without it, the
   *  moment sign() is called). */
  challengeReceived(): void;
  /** Whether the collector's Worker has reported (it usually has within
   *  milliseconds; a token signed before that carries no Worker view). */
  workerAnswered(): boolean;
  /** Truthy, or a promise of it, when the signer is ready; falsy or a
   *  rejected promise when this browser cannot sign with this build (no
   *  WebCrypto Ed25519: use the wasm-signer build). */
  signer(): unknown;
  /** Signs the page's signals with `challenge` (from `GET /v1/challenge`)
   *  for `action` (e.g. "login"): the JWS signing input and its signature;
   *  the token is `${input}.${base64url(signature)}`. */
  sign(challenge: string, action: string): [string, Uint8Array | Promise<ArrayBuffer>];
}
"#;

/// One collection on one page: the fresh realm, the Worker's inbox and the
/// moment the challenge request left, all held in the module's memory
/// where page scripts cannot write.
#[wasm_bindgen(skip_typescript)]
pub struct Session {
    realm: signals::realm::Realm,
    worker_inbox: Option<Object>,
    signer: signer::Signer,
    /// A `Cell`, so the JavaScript methods borrow the session shared: a
    /// `&mut self` method makes wasm-bindgen check for aliasing at run time,
    /// which costs kilobytes of glue.
    sent_at: core::cell::Cell<Option<f64>>,
    /// When the challenge arrived, on the realm's monotonic clock.
    received_at: core::cell::Cell<Option<f64>>,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session").field("sent_at", &self.sent_at.get()).finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl Session {
    /// Makes the fresh realm and starts the Worker.
    #[wasm_bindgen(constructor)]
    #[allow(clippy::new_without_default, reason = "a JavaScript constructor, not a Rust value")]
    pub fn new() -> Session {
        let realm = signals::realm::Realm::fresh();
        let worker_inbox = realm.start_worker();
        let signer = signer::Signer::new(&realm);
        Session {
            realm,
            worker_inbox,
            signer,
            sent_at: core::cell::Cell::new(None),
            received_at: core::cell::Cell::new(None),
        }
    }

    /// Notes, on the realm's monotonic clock, when the challenge request leaves.
    #[wasm_bindgen(js_name = challengeSent)]
    pub fn challenge_sent(&self) {
        self.sent_at.set(Some(self.realm.monotonic_ms()));
    }

    /// Notes when the challenge arrived, so that waiting between its
    /// arrival and [`Self::sign`] (for the Worker, on a page's first
    /// collection) does not widen the clock sample. Optional: without it
    /// the sample ends when `sign` is called.
    #[wasm_bindgen(js_name = challengeReceived)]
    pub fn challenge_received(&self) {
        self.received_at.set(Some(self.realm.monotonic_ms()));
    }

    /// Whether the Worker has reported.
    #[wasm_bindgen(js_name = workerAnswered)]
    pub fn worker_answered(&self) -> bool {
        self.worker_inbox.as_ref().is_some_and(|inbox| !signals::realm::worker_report(inbox).is_undefined())
    }

    /// Whether the signer is ready, or a promise of it (see [`signer`]).
    pub fn signer(&self) -> JsValue {
        self.signer.ready()
    }

    /// Collects the page's signals and signs them with the challenge that
    /// just arrived: `[input, signature]` (see [`signer::Signer::sign`]).
    ///
    /// # Errors
    /// When the challenge or action is empty, [`Self::challenge_sent`] was
    /// not called first, or the collector cannot sign (no key in the build,
    /// or no key imported).
    pub fn sign(&self, challenge: String, action: String) -> Result<Array, JsError> {
        let Some((_, kid)) = signing_key() else {
            return Err(JsError::new("meridian: this collector was built without a signing key"));
        };
        if challenge.is_empty() || action.is_empty() {
            return Err(JsError::new("meridian: sign() needs a challenge and an action"));
        }
        let Some(sent_at) = self.sent_at.take() else {
            return Err(JsError::new("meridian: call challengeSent() before fetching the challenge"));
        };
        let now = self.realm.monotonic_ms();
        let arrived = self.received_at.take().unwrap_or(now);
        let round_trip = libm::ceil((arrived - sent_at).max(0.0));
        let received_at = self.realm.wall_clock_ms() - (now - arrived);
        let (to_string, date_to_string) = self.realm.to_strings();
        let worker =
            self.worker_inbox.as_ref().map(signals::realm::worker_report).unwrap_or(JsValue::UNDEFINED);
        let claims = Claims {
            version: CLAIMS_VERSION,
            challenge,
            origin: signals::page_origin(),
            action,
            time_zone: signals::tz::collect(),
            locale: signals::locale::collect(),
            integrity: Some(signals::integrity::collect(&to_string, &date_to_string)),
            worker: signals::worker::from_report(&worker),
            clock: ClockSample {
                received_at_ms: whole_ms(received_at),
                round_trip_ms: if round_trip < f64::from(u32::MAX) { round_trip as u32 } else { u32::MAX },
            },
            signed_at_ms: whole_ms(self.realm.wall_clock_ms()),
        };
        self.signer.sign(jws::signing_input(claims.to_json().as_bytes(), kid))
    }
}

/// Milliseconds as a whole number (0 for a clock that is not a number).
fn whole_ms(ms: f64) -> i64 {
    if ms.is_finite() { ms as i64 } else { 0 }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn clock_readings_become_whole_milliseconds() {
        assert_eq!(whole_ms(1_800_000_000_000.75), 1_800_000_000_000);
        assert_eq!(whole_ms(0.0), 0);
        assert_eq!(whole_ms(-1.5), -1);
        // A clock that is not a number reads as zero, which the verifier
        // refuses as implausible rather than the collector failing.
        assert_eq!(whole_ms(f64::NAN), 0);
        assert_eq!(whole_ms(f64::INFINITY), 0);
        assert_eq!(whole_ms(f64::NEG_INFINITY), 0);
        // Out of range saturates.
        assert_eq!(whole_ms(1e300), i64::MAX);
    }

    #[test]
    fn the_embedded_key_unmasks_to_the_key_its_kid_names() {
        // Without MERIDIAN_COLLECTOR_KEY there is no key; with one, the
        // masked and shuffled bytes must rebuild the seed whose public key
        // the build-time thumbprint names. (The drop-in's `keyId()` is
        // written in by the build and checked against tokens in browsers.)
        if let Some((seed, kid)) = signing_key() {
            let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            assert_eq!(meridian_protocol::jwk::thumbprint(&public), kid);
        }
    }
}
