//! Who signs the token.
//!
//! The default build signs with the browser's own Ed25519 (WebCrypto,
//! shipped in Chromium 137, Firefox 129 and Safari 17): the build key is
//! imported once, non-extractable, through the collector's fresh realm, and
//! the resulting `CryptoKey` is kept where page scripts cannot reach it (an
//! array of that realm the module alone holds), so the page gets no signing
//! oracle — it can only ask for a signature over claims this module
//! collected. Ed25519 is deterministic: the signature is the RFC 8032 one,
//! byte for byte, whoever computes it.
//!
//! The `wasm-signer` build carries Ed25519 compiled into the module, for
//! browsers without it; the drop-in fetches that build only when the
//! import fails.

use alloc::string::String;

#[cfg(not(feature = "wasm-signer"))]
use js_sys::Object;
use js_sys::{Array, Uint8Array};
#[cfg(not(feature = "wasm-signer"))]
use wasm_bindgen::JsCast;
use wasm_bindgen::{JsError, JsValue};

use crate::signals::realm::Realm;
#[cfg(not(feature = "wasm-signer"))]
use crate::signals::{call, get};

/// The algorithm, as WebCrypto names it.
#[cfg(not(feature = "wasm-signer"))]
const ALGORITHM: &str = "Ed25519";

/// The DER of a PKCS #8 `PrivateKeyInfo` for an Ed25519 seed (RFC 8410 §7),
/// up to the 32 seed bytes that follow it.
#[cfg(not(feature = "wasm-signer"))]
const PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// The browser's Ed25519 key, once imported.
#[cfg(not(feature = "wasm-signer"))]
#[derive(Debug)]
pub struct Signer {
    /// The realm's `crypto.subtle`.
    subtle: JsValue,
    /// An array of the realm that receives the `CryptoKey` (its element 0).
    inbox: Object,
    /// Settles when the import has: fulfilled with the inbox's new length,
    /// never with the key; `undefined` when no import could start.
    ready: JsValue,
}

#[cfg(not(feature = "wasm-signer"))]
impl Signer {
    /// Starts importing the embedded key into the realm's WebCrypto.
    pub fn new(realm: &Realm) -> Self {
        let subtle = get(&realm.get("crypto"), "subtle");
        // Objects of another realm fail `instanceof Object` here: no checked cast.
        let inbox: Object = realm
            .construct("Array", &Array::new())
            .map_or_else(|| Array::new().into(), JsCast::unchecked_into);
        let ready = crate::signing_key()
            .and_then(|(seed, _)| Self::import(&subtle, &inbox, &seed))
            .unwrap_or(JsValue::UNDEFINED);
        Self { subtle, inbox, ready }
    }

    /// `subtle.importKey("pkcs8", …, "Ed25519", false, ["sign"])`, its key
    /// pushed into `inbox` by the realm's own `Array.prototype.push`: the
    /// promise `then` gives, or `None` when the import cannot start.
    fn import(subtle: &JsValue, inbox: &Object, seed: &[u8; 32]) -> Option<JsValue> {
        // Zipped rather than `copy_from_slice`, whose length check would
        // bring integer formatting into the module.
        let mut der = [0u8; 48];
        for (to, from) in der.iter_mut().zip(PKCS8_PREFIX.iter().chain(seed)) {
            *to = *from;
        }
        let bytes = Uint8Array::from(&der[..]);
        der.fill(0);
        let arguments = Array::of5(
            &"pkcs8".into(),
            &bytes,
            &ALGORITHM.into(),
            &JsValue::FALSE,
            &Array::of1(&"sign".into()),
        );
        let imported = call(subtle, "importKey", &arguments);
        // importKey copied the bytes before returning.
        bytes.fill(0, 0, 48);
        // Without the bound `push`, `then(undefined)` would hand the page a
        // promise of the key itself: no signer then.
        let store = call(&get(inbox, "push"), "bind", &Array::of1(inbox))?;
        // The realm's own `then`, like every function called here; never
        // `imported` itself, which resolves to the key.
        call(&imported?, "then", &Array::of1(&store))
    }

    /// A promise that settles once the key is imported (rejected when the
    /// browser cannot), or `undefined` when it cannot even start.
    pub fn ready(&self) -> JsValue {
        self.ready.clone()
    }

    /// `[input, Promise<ArrayBuffer>]`: the signing input and its signature.
    ///
    /// # Errors
    /// When the key is not imported (yet, or at all).
    pub fn sign(&self, input: String) -> Result<Array, JsError> {
        let key = get(&self.inbox, "0");
        if key.is_undefined() {
            return Err(JsError::new("meridian: the browser's Ed25519 key is not imported"));
        }
        let data = Uint8Array::from(input.as_bytes());
        let signature = call(&self.subtle, "sign", &Array::of3(&ALGORITHM.into(), &key, &data))
            .ok_or_else(|| JsError::new("meridian: the browser refused to sign"))?;
        Ok(Array::of2(&input.into(), &signature))
    }
}

/// Ed25519 compiled into the module; the key is unmasked only while
/// signing.
#[cfg(feature = "wasm-signer")]
#[derive(Debug)]
pub struct Signer;

#[cfg(feature = "wasm-signer")]
impl Signer {
    /// The signer; it needs no realm.
    pub fn new(_: &Realm) -> Self {
        Self
    }

    /// Ready at once: there is nothing to import.
    pub fn ready(&self) -> JsValue {
        JsValue::TRUE
    }

    /// `[input, Uint8Array]`: the signing input and its signature.
    ///
    /// # Errors
    /// When the collector was built without a signing key.
    pub fn sign(&self, input: String) -> Result<Array, JsError> {
        use ed25519_dalek::{Signer as _, SigningKey};
        let Some((seed, _)) = crate::signing_key() else {
            return Err(JsError::new("meridian: this collector was built without a signing key"));
        };
        let signature = SigningKey::from_bytes(&seed).sign(input.as_bytes()).to_bytes();
        Ok(Array::of2(&input.into(), &Uint8Array::from(&signature[..])))
    }
}
