//! Who signs the token, in every engine the tests drive. The collector
//! signs with the browser's own Ed25519 (WebCrypto) where the browser has
//! it and fetches the module with Ed25519 compiled in only where it has
//! not; `data-signer="wasm"` (the demo's `/?signer=wasm`) forces the
//! latter, which is how an old browser is played here. Either way the
//! token verifies and its signature is, byte for byte, the one the Rust
//! signer makes over the same input with the same key — Ed25519 is
//! deterministic — and the browser's Ed25519 gives RFC 8032's vectors. A
//! page outside a secure context, where no browser has WebCrypto, falls
//! back by itself.

#![allow(clippy::panic, reason = "tests fail by panicking")]

use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use meridian_tests::{
    Browser, BrowserOptions, Engine, collector_key, start_browser, start_demo_with, verify,
};
use meridian_verifier::testkit::test_intel;
use serde_json::{Value, json};

/// A French address: `testkit::test_intel()` files 2001:db8:3::/48 under FR.
const FRENCH_IP: &str = "2001:db8:3::10";

/// RFC 8032 §7.1, tests 1–3: secret key, message, signature (hex).
const RFC8032: [(&str, &str, &str); 3] = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap_or_default()).collect()
}

/// RFC 8032's vectors through the browser's own `crypto.subtle` (PKCS #8
/// import, as the collector does): the signatures in hex, or why not.
async fn webcrypto_signatures(browser: &Browser) -> Result<Vec<String>, String> {
    let script = "const [vectors, done] = arguments;
        const bytes = (hex) => new Uint8Array((hex.match(/../g) || []).map((b) => parseInt(b, 16)));
        const prefix = '302e020100300506032b657004220420';
        const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
        (async () => {
          if (!self.crypto || !crypto.subtle) throw new Error('no crypto.subtle');
          const out = [];
          for (const [secret, message] of vectors) {
            const key = await crypto.subtle.importKey('pkcs8', bytes(prefix + secret), 'Ed25519', false, ['sign']);
            out.push(hex(await crypto.subtle.sign('Ed25519', key, bytes(message))));
          }
          return out;
        })().then((signatures) => done({ signatures }), (error) => done({ error: String(error) }));";
    let vectors: Vec<Value> = RFC8032.iter().map(|(secret, message, _)| json!([secret, message])).collect();
    let value = browser
        .client
        .execute_async(script, vec![json!(vectors)])
        .await
        .unwrap_or_else(|e| panic!("{}: script failed: {e}", browser.engine()));
    match value["signatures"].as_array() {
        Some(list) => Ok(list.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()),
        None => Err(value["error"].as_str().unwrap_or("no answer").to_owned()),
    }
}

/// Whether the page fetched the wasm-signer fallback.
async fn fetched_fallback(browser: &Browser) -> bool {
    browser
        .eval("performance.getEntriesByType('resource').some((e) => e.name.includes('meridian_collector_fallback_bg.wasm'))")
        .await
        .as_bool()
        .unwrap_or_else(|| panic!("{}: no resource timing", browser.engine()))
}

/// Collects on the demo's sign-in page (`/` or `/?signer=wasm`), verifies
/// the token from a French IP and checks its signature against the Rust
/// signer's.
async fn a_token_signed_by(engine: Engine, force_wasm: bool) {
    let demo = start_demo_with(test_intel()).await;
    let browser = start_browser(BrowserOptions { engine, ..BrowserOptions::default() }).await;
    let page = if force_wasm { "/?signer=wasm" } else { "/" };
    let token = browser.collect_token_on(&format!("{}{page}", demo.origin), "login").await;
    let fallback = fetched_fallback(&browser).await;
    let key_id = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             import('/pkg/meridian.js').then((m) => m.ready.then(() => done(m.keyId())), (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{engine}: keyId(): {e}"));
    // On the sign-in page: the secure context the collector ran in.
    let webcrypto = webcrypto_signatures(&browser).await;
    drop(browser);

    // RFC 8032 through WebCrypto, where the browser has it.
    match &webcrypto {
        Ok(signatures) => {
            let expected: Vec<String> =
                RFC8032.iter().map(|(_, _, signature)| (*signature).to_owned()).collect();
            assert_eq!(signatures, &expected, "{engine}: WebCrypto's Ed25519 differs from RFC 8032");
        }
        Err(why) => eprintln!("{engine}: no WebCrypto Ed25519 ({why})"),
    }
    // The fallback is fetched exactly when it must be.
    let must_fall_back = force_wasm || webcrypto.is_err();
    assert_eq!(
        fallback, must_fall_back,
        "{engine}: fallback fetched {fallback}, expected {must_fall_back} (forced {force_wasm}, WebCrypto {webcrypto:?})"
    );
    eprintln!("{engine}: signed by {}", if fallback { "the wasm signer" } else { "WebCrypto" });

    // keyId() names the key that signed.
    let header =
        token.split('.').next().and_then(|h| Base64UrlUnpadded::decode_vec(h).ok()).unwrap_or_default();
    let header: Value = serde_json::from_slice(&header).unwrap_or_else(|e| panic!("{engine}: header: {e}"));
    assert_eq!(header["kid"], key_id, "{engine}: keyId() is not the token's kid");
    assert_eq!(header["kid"], json!(meridian_protocol::jwk::thumbprint(&collector_key().verifying_key())));

    // The same bytes the Rust signer makes.
    let (input, signature) = token.rsplit_once('.').unwrap_or_else(|| panic!("{engine}: not a JWS: {token}"));
    let signature = Base64UrlUnpadded::decode_vec(signature).unwrap_or_else(|e| panic!("{engine}: {e}"));
    let expected = collector_key().sign(input.as_bytes()).to_bytes();
    assert_eq!(hex(&signature), hex(&expected), "{engine}: the signature is not the RFC 8032 one");

    let (status, body) = verify(&demo.origin, json!({ "token": token, "remote_ip": FRENCH_IP })).await;
    assert_eq!(status, 200, "{engine}: {body:#}");
    assert_eq!(body["success"], json!(true), "{engine}: the token was refused:\n{body:#}");
}

#[test]
fn the_vectors_here_are_rfc_8032s() {
    // Checked by the Rust signer, itself tested against RFC 8032.
    for (secret, message, signature) in RFC8032 {
        let seed: [u8; 32] = unhex(secret).try_into().unwrap_or_else(|_| panic!("{secret}: not 32 bytes"));
        assert_eq!(hex(&SigningKey::from_bytes(&seed).sign(&unhex(message)).to_bytes()), signature);
    }
}

/// The sign-in page over plain HTTP from a name that is not loopback's own
/// (`login.test`, resolved to 127.0.0.1): not a secure context, so the
/// browser offers no `crypto.subtle`, and the drop-in fetches the wasm
/// signer without being told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_a_secure_context_the_wasm_signer_signs() {
    let demo = start_demo_with(test_intel()).await;
    let port = demo.origin.rsplit(':').next().unwrap_or_default().to_owned();
    let browser = start_browser(BrowserOptions {
        loopback_alias: Some("login.test".into()),
        ..BrowserOptions::default()
    })
    .await;
    let token = browser.collect_token_on(&format!("http://login.test:{port}/"), "login").await;
    let context = browser.eval("[isSecureContext, typeof crypto.subtle]").await;
    assert_eq!(context, json!([false, "undefined"]), "the page should not be a secure context");
    assert!(fetched_fallback(&browser).await, "the wasm signer was not fetched");
    drop(browser);

    let (input, signature) = token.rsplit_once('.').unwrap_or_else(|| panic!("not a JWS: {token}"));
    let signature = Base64UrlUnpadded::decode_vec(signature).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hex(&signature), hex(&collector_key().sign(input.as_bytes()).to_bytes()));
    // The signature and the challenge pass; the demo accepts only its own
    // loopback origins, and says so.
    let (status, body) = verify(&demo.origin, json!({ "token": token, "remote_ip": FRENCH_IP })).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["error_codes"], json!(["origin-mismatch"]), "{body:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_with_webcrypto() {
    a_token_signed_by(Engine::Chromium, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_falls_back_to_the_wasm_signer() {
    a_token_signed_by(Engine::Chromium, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_signs_with_webcrypto() {
    a_token_signed_by(Engine::Firefox, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_falls_back_to_the_wasm_signer() {
    a_token_signed_by(Engine::Firefox, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webkit_signs_with_webcrypto() {
    a_token_signed_by(Engine::WebKit, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webkit_falls_back_to_the_wasm_signer() {
    a_token_signed_by(Engine::WebKit, true).await;
}
