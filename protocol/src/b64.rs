//! Base64url without padding (RFC 4648 §5), the only encoding JOSE uses.

use alloc::{string::String, vec::Vec};

use base64ct::{Base64UrlUnpadded, Encoding};

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// Encodes bytes that are not secret (a token's header, payload and
/// signature) as unpadded base64url with a plain table lookup: a fifth of the
/// size of the constant-time encoder in the collector's wasm. Keys and
/// secrets go through [`encode`].
pub(crate) fn encode_public(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let group = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        // One byte gives two characters, two give three, three give four.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(group >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// Decodes a token's parts, which are public, with the `base64` crate's
/// engine: several times faster than the constant-time decoder on the
/// verifier's hot path, and as strict — no padding, no other alphabet, no
/// non-canonical trailing bits (a property test checks that the two agree
/// on any input).
#[cfg(feature = "serde")]
pub(crate) fn decode_public(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

/// Decodes unpadded base64url, rejecting padding, other alphabets and
/// non-canonical trailing bits.
///
/// # Errors
/// Returns `None` when `text` is not canonical unpadded base64url.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    Base64UrlUnpadded::decode_vec(text).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn public_encoder_matches_the_constant_time_one(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(super::encode_public(&bytes), super::encode(&bytes));
        }

        #[test]
        #[cfg(feature = "serde")]
        fn public_decoder_agrees_with_the_constant_time_one(text in "[A-Za-z0-9_=+/. -]{0,60}") {
            prop_assert_eq!(super::decode_public(&text), super::decode(&text));
        }

        #[test]
        #[cfg(feature = "serde")]
        fn public_decoder_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(super::decode_public(&super::encode(&bytes)), Some(bytes));
        }
    }
}
