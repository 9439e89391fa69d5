//! Offboarding: everything crmsync put into a user's Google account leaves it, provably, and
//! nothing the user had before is harmed.
//!
//! - [`detect`] (pure) decides, after each mirror refresh, whose Google data must be revoked
//!   (deactivated, removed from the CRM, Google account changed or cleared) and whether the
//!   mass-offboarding guard pauses those revocations.
//! - The state DB keeps the **outbox** (`store::revoke`): one row per (user, account), queued
//!   until a pass drains it; idempotent and resumable, so a crash, a 500 or a 429 only
//!   delays it, and one user's failure never blocks another's.
//! - [`run`] drains one revocation: contacts crmsync created are deleted; linked pre-existing
//!   (and phone-imported) contacts are released — restored to their pre-link snapshot, or,
//!   where the phone changed a field since, stripped of our marker and group while the
//!   phone's values stay (and that is reported); the group and the dedicated calendar (with
//!   its events) are deleted; then a listing verifies that nothing carrying a crmsync marker
//!   is left; credentials are released; a receipt goes into the audit.
//! - [`acl`] is the calendar leak guard, run by a pass when its check is due.
//! - [`remote`] is the small trait at the Google edge these need beyond `sync::remote::Remote`.
//!
//! What "revoke the tokens" means. crmsync reaches Google as a service account with
//! domain-wide delegation: it holds no refresh token per user, only short-lived access tokens
//! minted by impersonating the user (one cached authenticator per account). Releasing the
//! credentials therefore revokes the access token we hold for that account at the token
//! endpoint's `/revoke` and forgets the authenticator, so nothing can act as the user from
//! this process any more; the delegation itself is org-wide (admin console) and is not ours
//! to revoke per user. With per-user OAuth (ROADMAP item 4) the same step will revoke the
//! user's stored refresh token (which kills its access tokens) and delete it from the state
//! DB. Credentials stay usable until the outbox row is drained: they are released last.

pub mod acl;
pub mod detect;
pub mod remote;
pub mod run;

use serde::{Deserialize, Serialize};

/// Why a user's data is revoked from a Google account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// The user is inactive in the CRM.
    Deactivated,
    /// The user is no longer in the CRM at all.
    Removed,
    /// The user's Google account changed: the old account is revoked, then the new one filled.
    AccountChanged,
    /// The user no longer has a Google account in the CRM.
    AccountCleared,
    /// `crmsync revoke USER`.
    Manual,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 5] = [
        RevocationReason::Deactivated,
        RevocationReason::Removed,
        RevocationReason::AccountChanged,
        RevocationReason::AccountCleared,
        RevocationReason::Manual,
    ];

    /// Whether the user leaves altogether (their ICS feed goes with their Google data), as
    /// opposed to moving to another (or no) Google account while staying in the CRM.
    pub fn offboards(self) -> bool {
        match self {
            RevocationReason::Deactivated
            | RevocationReason::Removed
            | RevocationReason::Manual => true,
            RevocationReason::AccountChanged | RevocationReason::AccountCleared => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Deactivated => "deactivated",
            RevocationReason::Removed => "removed",
            RevocationReason::AccountChanged => "account_changed",
            RevocationReason::AccountCleared => "account_cleared",
            RevocationReason::Manual => "manual",
        }
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RevocationReason::Deactivated => "deactivated in the CRM",
            RevocationReason::Removed => "removed from the CRM",
            RevocationReason::AccountChanged => "Google account changed",
            RevocationReason::AccountCleared => "Google account cleared",
            RevocationReason::Manual => "crmsync revoke",
        })
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown revocation reason {s:?}"))
    }
}

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationState {
    /// Waiting for (or in the middle of) being drained.
    Queued,
    /// Held by the mass-offboarding guard until `--force`.
    Paused,
    /// Drained and verified; the receipt is kept.
    Done,
    /// A paused revocation whose cause went away (the user was reactivated as before).
    Cancelled,
}

impl RevocationState {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationState::Queued => "queued",
            RevocationState::Paused => "paused",
            RevocationState::Done => "done",
            RevocationState::Cancelled => "cancelled",
        }
    }

    pub fn is_open(self) -> bool {
        match self {
            RevocationState::Queued | RevocationState::Paused => true,
            RevocationState::Done | RevocationState::Cancelled => false,
        }
    }
}

impl std::str::FromStr for RevocationState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            RevocationState::Queued,
            RevocationState::Paused,
            RevocationState::Done,
            RevocationState::Cancelled,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| format!("unknown revocation state {s:?}"))
    }
}

/// One row of the revocation outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Revocation {
    pub id: i64,
    pub user_id: String,
    pub account: String,
    pub reason: RevocationReason,
    pub state: RevocationState,
    pub paused_reason: Option<String>,
    pub queued_at: String,
    pub started_at: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// What the account held when the revocation first started (JSON).
    pub inventory: Option<serde_json::Value>,
    /// The receipt, once done (JSON; also in the audit).
    pub receipt: Option<serde_json::Value>,
    pub finished_at: Option<String>,
}
