//! What offboarding and the leak guard need from Google beyond `sync::remote::Remote`: the
//! calendars and contact groups carrying crmsync's marker, deleting them, the dedicated
//! calendar's ACL, and releasing the credentials held for an account. Implemented by
//! `google::remote::GoogleRemote` (and by test wrappers around it).

use crate::sync::remote::{GoogleUser, RemoteError};
use serde::{Deserialize, Serialize};

/// A calendar in the account whose description carries a crmsync marker line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkedCalendar {
    pub id: String,
    pub summary: String,
    /// The CRM user id in the marker (`crmsync:<user>`).
    pub marker_user: String,
}

/// A contact group carrying crmsync's client-data marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkedGroup {
    pub resource: String,
    pub name: String,
    pub marker_user: String,
}

/// One rule of a calendar's access control list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    /// `user:x@y`, `group:g@y`, `domain:y`, `default`.
    pub id: String,
    /// `none` (deleted, in incremental listings), `freeBusyReader`, `reader`, `writer`,
    /// `writerWithoutPrivateAccess`, `owner`.
    pub role: String,
    pub scope_type: String,
    pub scope_value: Option<String>,
}

impl AclEntry {
    /// A deleted rule (incremental listings show them with role `none`).
    pub fn is_deleted(&self) -> bool {
        self.role == "none"
    }
}

/// An ACL listing: every rule (full) or the rules changed since the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AclListing {
    pub entries: Vec<AclEntry>,
    pub next_sync_token: Option<String>,
    pub full: bool,
}

/// What releasing an account's credentials did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialRelease {
    /// The access token held for the account was revoked at the token endpoint and the
    /// impersonating authenticator forgotten.
    AccessTokenRevoked,
    /// The token endpoint no longer knew the token (expired or already revoked); the
    /// authenticator was forgotten.
    AlreadyInvalid,
    /// No credentials were held for the account in this process.
    NoneHeld,
}

/// Google as offboarding and the leak guard use it (object-safe apart from `async`; one
/// account per call, made sequentially by the engine).
#[allow(async_fn_in_trait)]
pub trait Offboarding {
    /// Calendars of the account whose description carries any crmsync marker line.
    async fn marked_calendars(&self, user: &GoogleUser)
        -> Result<Vec<MarkedCalendar>, RemoteError>;

    /// Deletes a secondary calendar with its events. `Ok(false)`: it was already gone.
    async fn delete_calendar(&self, user: &GoogleUser, calendar: &str)
        -> Result<bool, RemoteError>;

    /// Contact groups of the account carrying crmsync's marker.
    async fn marked_groups(&self, user: &GoogleUser) -> Result<Vec<MarkedGroup>, RemoteError>;

    /// Deletes a contact group, keeping its members (`deleteContacts=false`): contacts
    /// crmsync created are deleted one by one beforehand; the user's own contacts only lose
    /// the membership. `Ok(false)`: it was already gone.
    async fn delete_group(&self, user: &GoogleUser, group: &str) -> Result<bool, RemoteError>;

    /// The calendar's ACL, incrementally with a token (deleted rules included as `none`),
    /// fully without one.
    async fn list_acl(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: Option<&str>,
    ) -> Result<AclListing, RemoteError>;

    /// Removes one ACL rule. `Ok(false)`: it was already gone.
    async fn delete_acl(
        &self,
        user: &GoogleUser,
        calendar: &str,
        rule: &str,
    ) -> Result<bool, RemoteError>;

    /// Revokes the credentials held for the account and forgets them (see the module docs
    /// of `revoke` for what that means with domain-wide delegation).
    async fn release_credentials(
        &self,
        user: &GoogleUser,
    ) -> Result<CredentialRelease, RemoteError>;
}
