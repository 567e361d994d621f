//! Bearer secrets for `/v1/verify`.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A verify secret. Kept as its SHA-256 so comparisons take the same time
/// whatever the presented value's length or content; never printed.
#[derive(Clone)]
pub struct VerifySecret {
    digest: [u8; 32],
}

impl std::fmt::Debug for VerifySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifySecret(<redacted>)")
    }
}

/// The shortest verify secret accepted: 16 characters.
pub(super) const MIN_SECRET_LEN: usize = 16;

impl VerifySecret {
    /// Wraps a secret.
    ///
    /// # Errors
    /// When it is shorter than [`MIN_SECRET_LEN`] — a guessable secret is a
    /// configuration error, not a choice.
    pub fn new(secret: &str) -> Result<Self, String> {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!("a verify secret needs at least {MIN_SECRET_LEN} characters"));
        }
        Ok(Self { digest: Sha256::digest(secret.as_bytes()).into() })
    }

    /// A random secret (32 bytes, base64url) and its wrapper.
    ///
    /// # Errors
    /// When the OS has no secure random source.
    pub fn generate() -> Result<(String, Self), getrandom::Error> {
        let mut bytes = [0; 32];
        crate::random_bytes(&mut bytes)?;
        let text = meridian_protocol::base64url_encode(&bytes);
        let digest = Sha256::digest(text.as_bytes()).into();
        Ok((text, Self { digest }))
    }

    /// Whether `presented` is this secret, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.digest.ct_eq(&digest))
    }
}

/// Whether `presented` matches any secret; every secret is compared.
pub(crate) fn any_matches(secrets: &[VerifySecret], presented: &str) -> bool {
    secrets.iter().fold(false, |found, secret| found | secret.matches(presented))
}
