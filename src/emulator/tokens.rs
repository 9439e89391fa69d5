//! Opaque sync and page tokens. They are self-describing (base64url JSON) so they survive a
//! restart without server-side bookkeeping; validity is checked against the owning
//! collection's `sync_epoch` (bumped to expire tokens on demand) and the token's age.

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A sync token: "everything in `scope` up to change `seq` has been seen".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SyncToken {
    /// Collection kind: `events`, `people`, `groups`.
    pub k: String,
    /// Subject the token was issued to.
    pub u: String,
    /// Collection within the subject (calendar id, or empty).
    pub s: String,
    /// Collection epoch at issue time.
    pub e: u64,
    /// Last change sequence covered.
    pub q: u64,
    /// Emulator time of issue (milliseconds since the epoch).
    pub t: i64,
}

/// A page token: where the next page of the same query starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PageToken {
    pub k: String,
    /// Fingerprint of the query parameters of the first call.
    pub f: u64,
    /// Resume point: last change sequence returned (sequence-ordered listings) or an offset.
    pub a: u64,
    /// Snapshot: highest change sequence visible to this listing.
    pub n: u64,
    /// For incremental listings, the sequence of the sync token the listing started from.
    pub since: Option<u64>,
    /// Emulator time the listing started (for the sync token issued on its last page).
    pub t: i64,
}

fn encode<T: Serialize>(prefix: &str, value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    )
}

fn decode<T: DeserializeOwned>(prefix: &str, token: &str) -> Option<T> {
    let body = token.strip_prefix(prefix)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl SyncToken {
    pub fn encode(&self) -> String {
        encode("CPsy", self)
    }

    pub fn decode(token: &str) -> Option<SyncToken> {
        decode("CPsy", token)
    }
}

impl PageToken {
    pub fn encode(&self) -> String {
        encode("EPpg", self)
    }

    pub fn decode(token: &str) -> Option<PageToken> {
        decode("EPpg", token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = SyncToken {
            k: "events".into(),
            u: "a@b".into(),
            s: "cal".into(),
            e: 1,
            q: 42,
            t: 7,
        };
        assert_eq!(SyncToken::decode(&t.encode()), Some(t));
        assert_eq!(SyncToken::decode("nonsense"), None);
        assert_eq!(PageToken::decode("CPsyAAAA"), None);
    }
}
