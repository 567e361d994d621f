//! Embeds the deployment's collector signing key into the build, hidden as
//! the browser collector's is (`meridian_protocol::embed`).
//!
//! `MERIDIAN_NATIVE_COLLECTOR_KEY` names a private JWK file: a key of its
//! own, never the browser collector's, so a key lifted from a native binary
//! signs no browser token (the verifier's JWKS lists both). Without it the
//! crate still builds, and `collect` refuses to sign unless given a key.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=MERIDIAN_NATIVE_COLLECTOR_KEY");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("key.rs");
    let key = env::var_os("MERIDIAN_NATIVE_COLLECTOR_KEY").map(PathBuf::from);
    if let Some(path) = &key {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let generated = meridian_protocol::embed::signing_key_source(key.as_deref()).unwrap_or_else(|e| {
        eprintln!("meridian-native: {e}");
        std::process::exit(1);
    });
    if let Err(e) = fs::write(&out, generated) {
        eprintln!("meridian-native: cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
}
