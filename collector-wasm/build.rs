//! Embeds the deployment's collector signing key into the build.
//!
//! `MERIDIAN_COLLECTOR_KEY` names a private JWK file (`meridian keygen`
//! writes one). Without it the crate still compiles — so `cargo check` and
//! clippy work anywhere — but `collect()` refuses to sign. A key that is all
//! zeros or a published test vector is refused at build time.

use std::{env, fs, path::PathBuf};

use meridian_protocol::jwk::Jwk;

/// Seeds that are public knowledge and must never sign production tokens.
const WELL_KNOWN_SEEDS: [&str; 2] = [
    // All zeros.
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    // RFC 8037 Appendix A.1.
    "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
];

fn main() {
    println!("cargo:rerun-if-env-changed=MERIDIAN_COLLECTOR_KEY");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("key.rs");
    let generated = match env::var_os("MERIDIAN_COLLECTOR_KEY") {
        None => "const SIGNING_KEY: Option<([u8; 32], &str)> = None;\n".to_owned(),
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())));
            let jwk: Jwk = serde_json::from_str(&text)
                .unwrap_or_else(|e| fail(&format!("{} is not a JWK: {e}", path.display())));
            let seed_text = jwk.d.clone().unwrap_or_default();
            if WELL_KNOWN_SEEDS.contains(&seed_text.as_str()) {
                fail(&format!("{} holds a well-known test key; run `meridian keygen`", path.display()));
            }
            let key = jwk.signing_key().unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
            let kid = meridian_protocol::jwk::thumbprint(&key.verifying_key());
            format!("const SIGNING_KEY: Option<([u8; 32], &str)> = Some(({:?}, {kid:?}));\n", key.to_bytes())
        }
    };
    if let Err(e) = fs::write(&out, generated) {
        fail(&format!("cannot write {}: {e}", out.display()));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("meridian-collector: {message}");
    std::process::exit(1);
}
