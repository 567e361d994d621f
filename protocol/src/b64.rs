//! Base64url without padding (RFC 4648 §5), the only encoding JOSE uses.

use base64ct::{Base64UrlUnpadded, Encoding};

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// Decodes unpadded base64url, rejecting padding, other alphabets and
/// non-canonical trailing bits.
///
/// # Errors
/// Returns `None` when `text` is not canonical unpadded base64url.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    Base64UrlUnpadded::decode_vec(text).ok()
}
