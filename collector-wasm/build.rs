//! Embeds the deployment's collector signing key into the build.
//!
//! `MERIDIAN_COLLECTOR_KEY` names a private JWK file (`meridian keygen`
//! writes one). Without it the crate still compiles — so `cargo check` and
//! clippy work anywhere — but `sign()` refuses to sign. A key that is all
//! zeros or a published test vector is refused at build time.
//!
//! The key is never stored as its 32 plain bytes: each build draws a fresh
//! mask and byte order, stores the masked bytes shuffled, and unmasks them
//! only when signing (behind `black_box`, so the optimiser cannot fold the
//! plain key back into the data section). A script that lifts the key from
//! one build's wasm does not work on the next build. It is obfuscation, not
//! secrecy: anyone who runs the module can still recover the key
//! (docs/SECURITY.md).

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
        None => "fn signing_key() -> Option<([u8; 32], &'static str)> {\n    None\n}\n".to_owned(),
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
            hidden_key(&key.to_bytes(), &kid)
        }
    };
    if let Err(e) = fs::write(&out, generated) {
        fail(&format!("cannot write {}: {e}", out.display()));
    }
}

/// Source for `signing_key()` that rebuilds `seed` from a build-random
/// mask and a build-random order of the masked bytes.
fn hidden_key(seed: &[u8; 32], kid: &str) -> String {
    let mut random = [0u8; 64];
    getrandom::fill(&mut random).unwrap_or_else(|e| fail(&format!("no randomness for the key mask: {e}")));
    let (mask, shuffle) = random.split_at(32);
    // A build-random permutation (Fisher–Yates driven by the random bytes).
    let mut order: Vec<u8> = (0..32).collect();
    for i in (1..32usize).rev() {
        let j = usize::from(shuffle[i]) % (i + 1);
        order.swap(i, j);
    }
    // stored[order[i]] = seed[i] ^ mask[i]
    let mut stored = [0u8; 32];
    for i in 0..32 {
        stored[usize::from(order[i])] = seed[i] ^ mask[i];
    }
    format!(
        "/// The signing key, unmasked only here, when signing.\n\
         fn signing_key() -> Option<([u8; 32], &'static str)> {{\n\
         \x20   const STORED: [u8; 32] = {stored:?};\n\
         \x20   const MASK: [u8; 32] = {mask:?};\n\
         \x20   const ORDER: [u8; 32] = {order:?};\n\
         \x20   let (stored, mask, order) = core::hint::black_box((&STORED, &MASK, &ORDER));\n\
         \x20   let mut seed = [0u8; 32];\n\
         \x20   for (i, byte) in seed.iter_mut().enumerate() {{\n\
         \x20       *byte = stored[usize::from(order[i] & 31)] ^ mask[i];\n\
         \x20   }}\n\
         \x20   Some((seed, {kid:?}))\n\
         }}\n"
    )
}

fn fail(message: &str) -> ! {
    eprintln!("meridian-collector: {message}");
    std::process::exit(1);
}
