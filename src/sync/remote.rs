//! The engine's view of Google: one small trait, implemented for real Google (and the
//! emulator) by `google::remote::GoogleRemote`.
//!
//! Every method works on the synced forms (`SyncedContact`, `SyncedEvent`), never on Google's
//! wire types, so the planner stays pure and the mapping lives in one place. Retries, pacing
//! and batching happen inside the implementation; what comes out is either a result or an
//! error whose kind the engine branches on.

use crate::model::{CrmId, SyncedContact, SyncedEvent, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The Google identity a CRM user is synced into.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct GoogleUser {
    pub user: UserId,
    /// The Google account (e-mail) impersonated for this user.
    pub account: String,
}

/// What went wrong with a Google call, as the engine needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteErrorKind {
    /// 404 (or 410 on a single item).
    NotFound,
    /// The etag we sent is stale (Calendar 412, People 400 failedPrecondition).
    PreconditionFailed,
    /// 409: the id exists (our earlier insert went through) or the name is taken.
    AlreadyExists,
    /// Calendar 410 fullSyncRequired, People EXPIRED_SYNC_TOKEN: list everything again.
    SyncTokenExpired,
    /// 429 / 403 rate limits that persisted through every retry.
    RateLimited,
    /// 5xx, timeouts, dropped connections that persisted through every retry.
    Transient,
    /// Not retryable in the short term (e.g. calendar creation quota).
    QuotaExceeded,
    /// The identity cannot get a token (invalid_grant: unknown user, revoked consent).
    Unauthorized,
    /// Anything else Google refused (400 with a bad request, 403 forbidden…).
    Permanent,
}

/// A Google call that failed after the retry policy gave up (or was not retryable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{kind:?}: {message}")]
pub struct RemoteError {
    pub kind: RemoteErrorKind,
    pub message: String,
    /// Google's `Retry-After`, when it sent one.
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl RemoteError {
    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// An item as it is in Google now, mapped to its synced form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteItem<T> {
    /// Event id, or a person's resource name (`people/c123`).
    pub google_id: String,
    pub etag: String,
    /// Our marker on the item (`extendedProperties.private.crmsync_id` on events,
    /// `clientData` `crmsync_id` on contacts), if it carries one.
    pub crm_id: Option<CrmId>,
    pub data: T,
    /// Contacts: whether it is a member of the user's crmsync group. Events: always true (we
    /// only list the dedicated calendar).
    pub in_container: bool,
    /// Contacts: resource names this person had before (`metadata.previousResourceNames`).
    pub previous_ids: Vec<String>,
    /// Events: the series this item is an exception (single edited instance) of.
    pub recurring_parent: Option<String>,
    pub updated: Option<DateTime<Utc>>,
    /// The whole item as Google returned it (pre-link snapshots, audit), for items without
    /// our marker; `Null` for items carrying it.
    pub raw: serde_json::Value,
    /// The item carries crmsync's own-creation marker: a contact crmsync created (clientData
    /// `crmsync_origin` = `created`; a pre-existing contact crmsync linked, or a phone-made
    /// one it imported, never has it), or any marked event (the dedicated calendar is ours).
    /// Pull-back deletes only such items; others are released (restored or stripped).
    #[serde(default)]
    pub created_by_us: bool,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RemoteChange<T> {
    Present(RemoteItem<T>),
    /// Deleted in Google (cancelled event, `metadata.deleted` person).
    Deleted {
        google_id: String,
    },
}

/// The result of listing a calendar or the contacts, every page fetched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing<T> {
    pub changes: Vec<RemoteChange<T>>,
    /// Token for the next incremental listing.
    pub next_sync_token: Option<String>,
    /// Whether this was a full listing (no token given): items absent from it do not exist.
    pub full: bool,
}

impl<T> Listing<T> {
    /// A whole listing handed to a scan's `keep` at once: its token if kept.
    fn kept_by(self, keep: &mut dyn FnMut(Vec<RemoteChange<T>>) -> bool) -> Option<String> {
        keep(self.changes).then_some(self.next_sync_token).flatten()
    }
}

/// A write to one event of the user's dedicated calendar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum EventOp {
    /// Insert with our deterministic id (409 means an earlier insert already went through).
    Insert {
        id: String,
        crm_id: CrmId,
        data: SyncedEvent,
    },
    /// Replace the synced fields, conditional on `etag` (412 if it changed).
    Update {
        id: String,
        etag: String,
        crm_id: CrmId,
        data: SyncedEvent,
    },
    /// Delete, conditional on `etag` when given.
    Delete { id: String, etag: Option<String> },
}

/// A write to one contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ContactOp {
    /// Create in the user's crmsync group, marked with `crm_id`.
    Create { crm_id: CrmId, data: SyncedContact },
    /// Set the synced fields, our marker and group membership, conditional on `etag`
    /// (also how a pre-existing phone contact is linked after dedup).
    Update {
        resource: String,
        etag: String,
        crm_id: CrmId,
        data: SyncedContact,
        /// The contact is known to carry our marker and group membership at `etag` (its
        /// link is linked at that etag): only the synced fields are written, without
        /// reading the contact first; Google's etag check still refuses a stale write.
        marked: bool,
    },
    /// Delete the contact.
    Delete { resource: String },
    /// Give a contact crmsync did not create back to its user: per field, the value it had
    /// before crmsync linked it (`pre_link`, Google's raw person) where the contact still
    /// shows what crmsync last wrote (`base`), the phone's value where the phone changed it
    /// since; our marker and group membership removed, everything else kept. Without `base`
    /// or `pre_link` only the marker and membership go.
    Release {
        resource: String,
        base: Option<SyncedContact>,
        pre_link: Option<serde_json::Value>,
    },
}

/// Identifies an op within one call, so results are matched to ops by identity, never by
/// position: inserts and updates by the id they write, contact creates by the CRM record
/// they mark, deletes and releases by the item they remove.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum OpKey {
    /// A contact create, keyed by the CRM record it is made for.
    Create(CrmId),
    /// Any op on an existing (or chosen) Google id.
    Google(String),
}

impl EventOp {
    pub fn key(&self) -> OpKey {
        match self {
            EventOp::Insert { id, .. }
            | EventOp::Update { id, .. }
            | EventOp::Delete { id, .. } => OpKey::Google(id.clone()),
        }
    }
}

impl ContactOp {
    pub fn key(&self) -> OpKey {
        match self {
            ContactOp::Create { crm_id, .. } => OpKey::Create(crm_id.clone()),
            ContactOp::Update { resource, .. }
            | ContactOp::Delete { resource }
            | ContactOp::Release { resource, .. } => OpKey::Google(resource.clone()),
        }
    }
}

/// What releasing a contact did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// Fields put back to their pre-link values.
    pub restored: Vec<String>,
    /// Fields the phone changed since crmsync last wrote them: the phone's values stay.
    pub kept_phone_edits: Vec<String>,
    /// There was no pre-link snapshot (or base): only the marker and membership went.
    pub stripped_only: bool,
    /// The contact no longer carried our marker or group: nothing was written.
    pub already_released: bool,
}

/// What a successful write left in Google.
// `Written` is the common case; boxing it would only add an allocation per op.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[allow(clippy::large_enum_variant)]
pub enum OpOutcome<T> {
    /// The item as written (new etag; new resource name for created contacts).
    Written(RemoteItem<T>),
    Deleted,
    /// A contact given back to its user (`ContactOp::Release`).
    Released(Released),
}

/// The answer to one op of a call, naming the op it answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpResult<T> {
    pub key: OpKey,
    pub result: Result<OpOutcome<T>, RemoteError>,
}

/// Per-op results of a batch (one per op, each naming its op); the outer error is a failure
/// of the whole call before anything was sent.
pub type BatchResult<T> = Result<Vec<OpResult<T>>, RemoteError>;

/// Google as the sync engine uses it. All calls for one user are made sequentially by the
/// engine; implementations pace, retry and batch.
#[allow(async_fn_in_trait)]
pub trait Remote {
    /// The id of the user's dedicated calendar: `known` if it still exists, else one found by
    /// our marker, else a new one named `name`. Idempotent.
    async fn ensure_calendar(
        &self,
        user: &GoogleUser,
        name: &str,
        known: Option<&str>,
    ) -> Result<String, RemoteError>;

    /// The resource name of the user's crmsync contact group (same rules).
    async fn ensure_group(
        &self,
        user: &GoogleUser,
        name: &str,
        known: Option<&str>,
    ) -> Result<String, RemoteError>;

    /// Events of the dedicated calendar changed since `sync_token` (all of them without one).
    async fn list_events(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: Option<&str>,
    ) -> Result<Listing<SyncedEvent>, RemoteError>;

    /// The events changed since `sync_token`, a page at a time: `keep` gets each page's
    /// changes as they arrive and ends the listing early by answering false, so nothing but
    /// a page is held. The next sync token when every page was kept, else `None`. (By
    /// default the whole listing, then `keep` once.)
    async fn scan_events(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: &str,
        keep: &mut dyn FnMut(Vec<RemoteChange<SyncedEvent>>) -> bool,
    ) -> Result<Option<String>, RemoteError> {
        let listing = self.list_events(user, calendar, Some(sync_token)).await?;
        Ok(listing.kept_by(keep))
    }

    /// One event as it is now (`None` if it does not exist; cancelled events are `Deleted`).
    async fn get_event(
        &self,
        user: &GoogleUser,
        calendar: &str,
        id: &str,
    ) -> Result<RemoteChange<SyncedEvent>, RemoteError>;

    /// Applies event writes (batched where possible), one result per op.
    async fn event_ops(
        &self,
        user: &GoogleUser,
        calendar: &str,
        ops: &[EventOp],
    ) -> BatchResult<SyncedEvent>;

    /// The user's contacts changed since `sync_token` (all of them without one).
    async fn list_contacts(
        &self,
        user: &GoogleUser,
        group: &str,
        sync_token: Option<&str>,
    ) -> Result<Listing<SyncedContact>, RemoteError>;

    /// The contacts changed since `sync_token`, a page at a time (as
    /// [`Remote::scan_events`]).
    async fn scan_contacts(
        &self,
        user: &GoogleUser,
        group: &str,
        sync_token: &str,
        keep: &mut dyn FnMut(Vec<RemoteChange<SyncedContact>>) -> bool,
    ) -> Result<Option<String>, RemoteError> {
        let listing = self.list_contacts(user, group, Some(sync_token)).await?;
        Ok(listing.kept_by(keep))
    }

    /// One contact as it is now.
    async fn get_contact(
        &self,
        user: &GoogleUser,
        group: &str,
        resource: &str,
    ) -> Result<RemoteChange<SyncedContact>, RemoteError>;

    /// Applies contact writes (batched where possible), one result per op.
    async fn contact_ops(
        &self,
        user: &GoogleUser,
        group: &str,
        ops: &[ContactOp],
    ) -> BatchResult<SyncedContact>;
}
