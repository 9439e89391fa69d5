//! The synced form of a record: exactly the fields that travel between the CRM and Google,
//! normalised so that the same meaning always has the same bytes (and the same hash).
//!
//! Base snapshots, change detection and the three-way merge all work on these types. Both
//! sides map into them: the CRM through `sync::desired`, Google through `google::mapping`.
//! Mapping a synced value to Google and back must give the same value (tested there), or
//! every echo of our own write would look like a phone edit.

use super::records::{EmailAddress, EventTime, PhoneNumber, PostalAddress};
use serde::{Deserialize, Serialize};

/// A contact's synced fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SyncedContact {
    pub first_name: String,
    pub last_name: String,
    /// The organization's name (CRM-owned: phone edits to it are not written back).
    pub organization: String,
    pub title: String,
    pub emails: Vec<EmailAddress>,
    pub phones: Vec<PhoneNumber>,
    pub addresses: Vec<PostalAddress>,
    pub notes: String,
}

/// One attendee line as shown on the phone: only users and contacts the phone's owner may
/// read in the CRM ever appear here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct AttendeeLine {
    pub name: String,
    pub email: String,
}

/// An event's synced fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncedEvent {
    pub title: String,
    pub description: String,
    pub location: String,
    /// Local start (date-time in `time_zone`, or a date for all-day events).
    pub start: EventTime,
    /// Local end (exclusive date for all-day events).
    pub end: EventTime,
    pub time_zone: String,
    pub all_day: bool,
    pub recurrence: Vec<String>,
    /// CRM-owned: written into the description and private extended properties, never as
    /// Google attendees (Google would e-mail them).
    pub attendees: Vec<AttendeeLine>,
}

/// Field names of the synced forms, as used by merges, diffs and conflict records.
pub const CONTACT_FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "organization",
    "title",
    "emails",
    "phones",
    "addresses",
    "notes",
];

pub const EVENT_FIELDS: &[&str] = &[
    "title",
    "description",
    "location",
    "start",
    "end",
    "time_zone",
    "all_day",
    "recurrence",
    "attendees",
];

/// Fields owned by the CRM alone: a phone-side change to them is reverted, never written back.
pub fn crm_owned_fields(kind: super::ObjectKind) -> &'static [&'static str] {
    match kind {
        super::ObjectKind::Contact => &["organization"],
        super::ObjectKind::Event => &["attendees"],
        super::ObjectKind::Organization => &[],
    }
}

/// Free-text fields that get a line-level three-way merge before the conflict policy.
pub fn text_fields(kind: super::ObjectKind) -> &'static [&'static str] {
    match kind {
        super::ObjectKind::Contact => &["notes"],
        super::ObjectKind::Event => &["description"],
        super::ObjectKind::Organization => &[],
    }
}
