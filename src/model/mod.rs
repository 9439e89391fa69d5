//! The canonical model: identifiers, the CRM security entities and records, and the
//! normalisation that makes equal things compare equal. Knows nothing of Google or SQL.

pub mod ids;
pub mod normalize;
pub mod org;
pub mod records;
pub mod synced;

pub use ids::{CrmId, IdError, ObjectKind, ProfileId, RecordRef, RoleId, RuleId, TeamId, UserId};
pub use org::{
    ObjectPermissions, OperationScopes, OrgSettings, OrgWideSharing, Profile, RecordReaders, Role,
    RuleAccess, RuleParty, ScopeLevel, SharingDefault, SharingRule, Team, User, Visibility,
};
pub use records::{
    Attendee, Contact, EmailAddress, Event, EventTime, Organization, Owned, ParentLink,
    PhoneNumber, PostalAddress,
};

pub use synced::{AttendeeLine, SyncedContact, SyncedEvent};

use serde::Serialize;

/// Hex SHA-256 of a value's JSON form: the canonical hash used for change detection.
/// Serde writes struct fields in declaration order and our maps are `BTreeMap`s, so equal
/// values always hash equal.
pub fn canonical_hash<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
