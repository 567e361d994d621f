//! Embeds the deployment's collector signing key into the build.
//!
//! `MERIDIAN_COLLECTOR_KEY` names a private JWK file (`meridian keygen`
//! writes one). Without it the crate still compiles — so `cargo check` and
//! clippy work anywhere — but `sign()` refuses to sign. A key that is all
//! zeros or a published test vector is refused at build time. How the key
//! is hidden: `meridian_protocol::embed`.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=MERIDIAN_COLLECTOR_KEY");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("key.rs");
    let key = env::var_os("MERIDIAN_COLLECTOR_KEY").map(PathBuf::from);
    if let Some(path) = &key {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let generated = meridian_protocol::embed::signing_key_source(key.as_deref()).unwrap_or_else(|e| fail(&e));
    if let Err(e) = fs::write(&out, generated) {
        fail(&format!("cannot write {}: {e}", out.display()));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("meridian-collector: {message}");
    std::process::exit(1);
}
