//! Meridian's browser collector.
//!
//! Runs on a login page as WebAssembly: fetches a challenge from the
//! verifier, reads the browser's clock, time-zone and language signals, and
//! signs them with the deployment's embedded Ed25519 key into a compact JWS
//! bound to the challenge, the page's origin and an action.
//!
//! This file is the JavaScript surface only; signals live in [`signals`].

use ed25519_dalek::SigningKey;
use js_sys::{Object, Reflect};
use meridian_protocol::{CLAIMS_VERSION, Claims, jws};
use wasm_bindgen::prelude::*;

pub mod signals;

include!(concat!(env!("OUT_DIR"), "/key.rs"));

#[wasm_bindgen(typescript_custom_section)]
const TYPESCRIPT: &str = r#"
/** Options of {@link collect}. */
export interface CollectOptions {
  /** URL of the verifier's `GET /v1/challenge`. */
  challengeUrl: string;
  /** What the user is doing, e.g. "login"; the verifier can require it. */
  action: string;
}
/**
 * Fetches a challenge, collects the browser's signals and resolves to a
 * signed token (compact JWS) for the backend to verify.
 */
export function collect(options: CollectOptions): Promise<string>;
/** The key id (RFC 7638 thumbprint) of the embedded signing key, or undefined. */
export function keyId(): string | undefined;
"#;

/// Fetches a challenge, collects signals and resolves to a signed token.
///
/// # Errors
/// Rejects when the options are incomplete, the challenge cannot be fetched,
/// or the collector was built without a signing key.
#[wasm_bindgen(skip_typescript)]
pub async fn collect(options: Object) -> Result<String, JsError> {
    let challenge_url = string_option(&options, "challengeUrl")?;
    let action = string_option(&options, "action")?;
    let Some((seed, kid)) = SIGNING_KEY else {
        return Err(JsError::new("meridian: this collector was built without a signing key"));
    };
    signals::worker::prime();
    let fetched = signals::clock::fetch_challenge(&challenge_url).await?;
    let worker = signals::worker::collect().await;
    let claims = Claims {
        version: CLAIMS_VERSION,
        challenge: fetched.challenge,
        origin: signals::page_origin(),
        action,
        time_zone: signals::tz::collect(),
        locale: signals::locale::collect(),
        integrity: Some(signals::integrity::collect()),
        worker,
        clock: fetched.sample,
        signed_at_ms: signals::clock::wall_clock_ms(),
    };
    let key = SigningKey::from_bytes(&seed);
    Ok(jws::sign(claims.to_json().as_bytes(), &key, kid))
}

/// Runs when the module loads: starts the Worker early so its start-up
/// does not count against the first collection.
#[wasm_bindgen(start)]
pub fn start() {
    signals::worker::prime();
}

/// The key id of the embedded signing key, if the build has one.
#[wasm_bindgen(js_name = keyId, skip_typescript)]
pub fn key_id() -> Option<String> {
    SIGNING_KEY.map(|(_, kid)| kid.to_owned())
}

fn string_option(options: &Object, name: &str) -> Result<String, JsError> {
    Reflect::get(options, &JsValue::from_str(name))
        .ok()
        .and_then(|v| v.as_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| JsError::new(&format!("meridian: collect() needs a non-empty string `{name}`")))
}
