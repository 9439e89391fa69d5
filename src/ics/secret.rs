//! Feed secrets: 256 random bits from the operating system's CSPRNG, written URL-safe
//! (base64url without padding, 43 characters). Only the SHA-256 of a secret is stored; a
//! plain fast hash is enough because the secret has full entropy (nothing to brute-force
//! that a slow KDF would protect). The lookup by hash is followed by a constant-time
//! comparison of the full hash.

use subtle::ConstantTimeEq;

/// The length of a secret's text.
pub const SECRET_LEN: usize = 43;

/// A feed secret. Its `Debug` does not show it: it may only ever be printed once, by
/// `feed create|rotate`.
#[derive(Clone, PartialEq, Eq)]
pub struct FeedSecret(String);

impl std::fmt::Debug for FeedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedSecret(<redacted>)")
    }
}

/// The operating system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("no random bytes from the operating system for a feed secret")]
pub struct RandomUnavailable;

impl FeedSecret {
    /// A fresh secret.
    pub fn generate() -> Result<Self, RandomUnavailable> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| RandomUnavailable)?;
        Ok(Self(data_encoding::BASE64URL_NOPAD.encode(&bytes)))
    }

    /// A secret as it appears in a URL, or `None` when `text` cannot be one (wrong length
    /// or alphabet) — such requests are answered without touching the database.
    pub fn parse(text: &str) -> Option<Self> {
        let shaped = text.len() == SECRET_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        shaped.then(|| Self(text.to_owned()))
    }

    /// The secret's text, for the one time it is shown.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash stored in the state DB.
    pub fn hash(&self) -> SecretHash {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes());
        SecretHash(data_encoding::HEXLOWER.encode(digest.as_ref()))
    }
}

/// The SHA-256 of a secret, hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHash(String);

impl SecretHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `stored` is this hash, compared in constant time.
    pub fn matches(&self, stored: &str) -> bool {
        self.0.as_bytes().ct_eq(stored.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_url_safe_distinct_and_hidden_from_debug() {
        let a = FeedSecret::generate().unwrap();
        let b = FeedSecret::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), SECRET_LEN);
        assert_eq!(FeedSecret::parse(a.expose()), Some(a.clone()));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(a.hash().as_str().len(), 64);
        assert!(a.hash().matches(a.hash().as_str()));
        assert!(!a.hash().matches(b.hash().as_str()));
        assert!(!a.hash().matches(""));
    }

    #[test]
    fn malformed_secrets_are_refused() {
        let good = "A".repeat(SECRET_LEN);
        assert!(FeedSecret::parse(&good).is_some());
        assert!(FeedSecret::parse(&"A".repeat(SECRET_LEN - 1)).is_none());
        assert!(FeedSecret::parse(&format!("{}=", "A".repeat(SECRET_LEN - 1))).is_none());
        assert!(FeedSecret::parse(&format!("{}/", "A".repeat(SECRET_LEN - 1))).is_none());
        assert!(FeedSecret::parse("").is_none());
    }
}
