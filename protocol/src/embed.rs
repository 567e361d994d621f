//! Build-time embedding of a collector's signing key (feature `embed`), for
//! the build scripts of the browser and the native collectors.
//!
//! The key is never stored as its 32 plain bytes: each build draws a fresh
//! mask and byte order, stores the masked bytes shuffled, and unmasks them
//! only when signing (behind `black_box`, so the optimiser cannot fold the
//! plain key back into the data section). A script that lifts the key from
//! one build does not work on the next. It is obfuscation, not secrecy:
//! anyone who runs the collector can recover the key (docs/SECURITY.md).

use std::path::Path;

use crate::jwk::{Jwk, thumbprint};

/// Seeds that are public knowledge and must never sign production tokens.
const WELL_KNOWN_SEEDS: [&str; 2] = [
    // All zeros.
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    // RFC 8037 Appendix A.1.
    "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
];

/// Rust source defining `fn signing_key() -> Option<([u8; 32], &'static str)>`
/// (the seed and its key id) for the private JWK at `path`, or returning
/// `None` when there is no key (the crate still builds; it refuses to sign).
///
/// # Errors
/// When the file cannot be read, is not a private Ed25519 JWK, holds a
/// well-known test key, or no randomness is available for the mask.
pub fn signing_key_source(path: Option<&Path>) -> Result<String, String> {
    let Some(path) = path else {
        return Ok("fn signing_key() -> Option<([u8; 32], &'static str)> {\n    None\n}\n".to_owned());
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let jwk: Jwk =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a JWK: {e}", path.display()))?;
    if WELL_KNOWN_SEEDS.contains(&jwk.d.as_deref().unwrap_or_default()) {
        return Err(format!("{} holds a well-known test key; run `meridian keygen`", path.display()));
    }
    let key = jwk.signing_key().map_err(|e| format!("{}: {e}", path.display()))?;
    let kid = thumbprint(&key.verifying_key());
    let mut random = [0u8; 64];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness for the key mask: {e}"))?;
    Ok(hidden_key(&key.to_bytes(), &kid, &random))
}

/// Source that rebuilds `seed` from the mask (`random[..32]`) and a
/// permutation drawn from `random[32..]`.
fn hidden_key(seed: &[u8; 32], kid: &str, random: &[u8; 64]) -> String {
    let (mask, shuffle) = random.split_at(32);
    // A random permutation (Fisher–Yates driven by the random bytes).
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

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn the_stored_bytes_unmask_to_the_seed_and_differ_per_build() {
        let seed: [u8; 32] = core::array::from_fn(|i| i as u8 * 7 + 1);
        let first = hidden_key(&seed, "kid", &[3; 64]);
        let second = hidden_key(&seed, "kid", &core::array::from_fn(|i| i as u8));
        assert_ne!(first, second, "another mask, other bytes");
        assert!(!first.contains(&format!("{seed:?}")), "the plain seed is not in the source");
        // Unmask as the generated code does.
        let random: [u8; 64] = core::array::from_fn(|i| (i as u8).wrapping_mul(37));
        let (mask, shuffle) = random.split_at(32);
        let mut order: Vec<u8> = (0..32).collect();
        for i in (1..32usize).rev() {
            order.swap(i, usize::from(shuffle[i]) % (i + 1));
        }
        let mut stored = [0u8; 32];
        for i in 0..32 {
            stored[usize::from(order[i])] = seed[i] ^ mask[i];
        }
        let source = hidden_key(&seed, "kid", &random);
        assert!(source.contains(&format!("{stored:?}")) && source.contains(&format!("{order:?}")));
        let rebuilt: Vec<u8> = (0..32).map(|i| stored[usize::from(order[i] & 31)] ^ mask[i]).collect();
        assert_eq!(rebuilt, seed);
    }

    #[test]
    fn no_key_builds_a_collector_that_refuses_to_sign() {
        assert!(signing_key_source(None).unwrap().contains("None"));
        assert!(
            signing_key_source(Some(Path::new("/nonexistent/key.jwk"))).unwrap_err().contains("cannot read")
        );
    }
}
