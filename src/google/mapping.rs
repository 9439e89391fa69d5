//! Mapping between the synced forms (`SyncedEvent`, `SyncedContact`) and Google's wire types
//! (`google_calendar3::api::Event`, `google_people1::api::Person`), with our markers.
//!
//! The law this module keeps: for every synced value `v`, reading back what we write gives
//! `canonical_*(v)`, and canonical values are fixed points:
//!
//! ```text
//! event_from_google(event_to_google(v)) == canonical_event(v)
//! canonical_event(canonical_event(v)) == canonical_event(v)
//! ```
//!
//! (the same for contacts). The CRM side runs its values through the same `canonical_*`
//! functions, so an echo of our own write always equals the base it was written from and
//! never looks like a phone edit.
//!
//! Events: local times are normalised by [`normalize_local_time`] (DST gaps move forward by
//! the gap, ambiguous times keep the earlier instant); attendees are never Google attendees
//! but a block at the end of the description ([`compose_description`] /
//! [`split_description`]). Contacts: e-mails and phones are normalised with
//! `crate::model::normalize` on both sides, so re-typing a number differently on the phone
//! is not a change.

use crate::model::normalize;
use crate::model::{
    AttendeeLine, CrmId, EmailAddress, EventTime, PhoneNumber, PostalAddress, SyncedContact,
    SyncedEvent,
};
use crate::sync::remote::{RemoteChange, RemoteError, RemoteErrorKind, RemoteItem};
use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use google_calendar3::api::{Event, EventDateTime, EventExtendedProperties};
use google_people1::api::{
    Address, Biography, ClientData, ContactGroupMembership, EmailAddress as GEmail, Membership,
    Name, Organization, Person, PhoneNumber as GPhone,
};
use std::collections::HashMap;

/// Private extended property / client-data key carrying the CRM record id.
pub const MARKER_ID: &str = "crmsync_id";
/// Client-data key saying who made a contact: value [`ORIGIN_CREATED`] when crmsync created
/// it. Pre-existing contacts crmsync linked and phone-made ones it imported never carry it,
/// so pull-back can tell (even after a state-DB loss) which contacts it may delete.
pub const MARKER_ORIGIN: &str = "crmsync_origin";
/// The value of [`MARKER_ORIGIN`] on contacts crmsync created.
pub const ORIGIN_CREATED: &str = "created";
/// Client-data key on the user's dedicated contact group; the value is the CRM user id.
/// The group is recognised by it, never by its name.
pub const GROUP_MARKER: &str = "crmsync_group";
/// Private extended property naming the CRM object kind of an event.
pub const MARKER_KIND: &str = "crmsync_kind";
/// Private extended property keeping the event's zone (Google may drop `timeZone` on
/// all-day events; the synced form keeps a zone for every event).
pub const MARKER_TIME_ZONE: &str = "crmsync_time_zone";
/// The line that opens the attendee block in an event's description.
pub const ATTENDEES_HEADER: &str = "Attendees (from the CRM):";
/// The contact group every ordinary contact belongs to.
pub const MY_CONTACTS: &str = "contactGroups/myContacts";

// ---------------------------------------------------------------------------------------
// Local times
// ---------------------------------------------------------------------------------------

/// The canonical form of a local wall-clock time in `zone`:
///
/// - sub-second parts are dropped (Google keeps whole seconds);
/// - a time that does not exist (in a DST gap) moves forward by the length of the gap,
///   i.e. it is read with the UTC offset in force before the gap (RFC 5545 §3.3.5):
///   02:30 on a spring-forward night in Europe/Berlin becomes 03:30;
/// - an ambiguous time (in a DST overlap) stays as it is and always means its earlier
///   instant (see [`local_to_utc`]), which reads back as the same local time.
///
/// Every local time Google gives us back is already canonical, so applying this on the CRM
/// side makes write-then-read an identity.
pub fn normalize_local_time(local: NaiveDateTime, zone: Tz) -> NaiveDateTime {
    let local = local.with_nanosecond(0).unwrap_or(local);
    match zone.from_local_datetime(&local) {
        LocalResult::Single(_) | LocalResult::Ambiguous(_, _) => local,
        LocalResult::None => gap_instant(local, zone).with_timezone(&zone).naive_local(),
    }
}

/// The instant a local time in `zone` stands for, after [`normalize_local_time`]: the
/// earlier of two candidates in an overlap, the shifted time in a gap.
pub fn local_to_utc(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    let local = local.with_nanosecond(0).unwrap_or(local);
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, later) => {
            let (a, b) = (earlier.with_timezone(&Utc), later.with_timezone(&Utc));
            a.min(b)
        }
        LocalResult::None => gap_instant(local, zone),
    }
}

/// For a local time inside a gap: the instant it names with the offset in force before the
/// gap. No zone has two transitions within a day, so the offset a day earlier is the one
/// before the gap (offsets are within ±15 h).
fn gap_instant(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    let probe = local
        .checked_sub_signed(Duration::hours(36))
        .unwrap_or(local);
    let before = zone.offset_from_utc_datetime(&probe).fix();
    let seconds = i64::from(before.local_minus_utc());
    local
        .checked_sub_signed(Duration::seconds(seconds))
        .unwrap_or(local)
        .and_utc()
}

/// The local time of an instant in `zone`.
pub fn utc_to_local(instant: DateTime<Utc>, zone: Tz) -> NaiveDateTime {
    instant.with_timezone(&zone).naive_local()
}

// ---------------------------------------------------------------------------------------
// Canonical forms
// ---------------------------------------------------------------------------------------

/// Canonical e-mail: `normalize::email` where it accepts the value, else trimmed and
/// lower-cased (a phone user's typo still compares stably).
pub fn canonical_email(raw: &str) -> String {
    normalize::email(raw).unwrap_or_else(|_| raw.trim().to_lowercase())
}

/// Canonical phone: `normalize::phone` (E.164 where parseable), else the trimmed value
/// with white space runs folded.
pub fn canonical_phone(raw: &str) -> String {
    let folded = fold_whitespace(raw);
    normalize::phone(&folded).unwrap_or(folded)
}

fn fold_whitespace(raw: &str) -> String {
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn canonical_recurrence(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| normalize::recurrence_line(l).unwrap_or_else(|_| l.trim().to_owned()))
        .filter(|l| !l.is_empty())
        .collect()
}

fn canonical_attendee(a: &AttendeeLine) -> AttendeeLine {
    AttendeeLine {
        name: fold_whitespace(&a.name),
        email: a
            .email
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_lowercase(),
    }
}

/// The canonical form of an event: trimmed text, whole-second local times normalised in
/// the event's zone ([`normalize_local_time`]), `all_day` following the shape of `start`,
/// canonical recurrence lines and attendee lines (single-line names, lower-case e-mails).
/// A timed end that falls before the start once both are read in the zone (a start in a
/// DST gap moves forward past an end just after the gap: 01:30–02:00 on a spring-forward
/// night in London) becomes the start: Google refuses an empty range, and a zero-length
/// event at the real start is what such a record can show. The CRM record is left as is.
pub fn canonical_event(v: &SyncedEvent) -> SyncedEvent {
    let time_zone = v.time_zone.trim().to_owned();
    let zone = normalize::time_zone(&time_zone).ok();
    let time = |t: EventTime| match (t, zone) {
        (EventTime::DateTime(dt), Some(z)) => EventTime::DateTime(normalize_local_time(dt, z)),
        (EventTime::DateTime(dt), None) => EventTime::DateTime(dt.with_nanosecond(0).unwrap_or(dt)),
        (date, _) => date,
    };
    let (start, mut end) = (time(v.start), time(v.end));
    if let (EventTime::DateTime(s), EventTime::DateTime(e), Some(z)) = (start, end, zone) {
        if local_to_utc(e, z) < local_to_utc(s, z) {
            end = start;
        }
    }
    SyncedEvent {
        title: v.title.trim().to_owned(),
        description: v.description.trim().to_owned(),
        location: v.location.trim().to_owned(),
        start,
        end,
        all_day: matches!(v.start, EventTime::Date(_)),
        time_zone,
        recurrence: canonical_recurrence(&v.recurrence),
        attendees: v.attendees.iter().map(canonical_attendee).collect(),
    }
}

/// The canonical form of a contact: trimmed text, canonical e-mails and phones, entries
/// without a value dropped, addresses without any field dropped.
pub fn canonical_contact(v: &SyncedContact) -> SyncedContact {
    SyncedContact {
        first_name: v.first_name.trim().to_owned(),
        last_name: v.last_name.trim().to_owned(),
        organization: v.organization.trim().to_owned(),
        title: v.title.trim().to_owned(),
        emails: v
            .emails
            .iter()
            .map(|e| EmailAddress {
                address: canonical_email(&e.address),
                label: e.label.trim().to_owned(),
            })
            .filter(|e| !e.address.is_empty())
            .collect(),
        phones: v
            .phones
            .iter()
            .map(|p| PhoneNumber {
                number: canonical_phone(&p.number),
                label: p.label.trim().to_owned(),
            })
            .filter(|p| !p.number.is_empty())
            .collect(),
        addresses: v
            .addresses
            .iter()
            .map(canonical_address)
            .filter(|a| !address_is_empty(a))
            .collect(),
        notes: v.notes.trim().to_owned(),
    }
}

fn canonical_address(a: &PostalAddress) -> PostalAddress {
    PostalAddress {
        street: a.street.trim().to_owned(),
        city: a.city.trim().to_owned(),
        region: a.region.trim().to_owned(),
        postal_code: a.postal_code.trim().to_owned(),
        country: a.country.trim().to_owned(),
        label: a.label.trim().to_owned(),
    }
}

fn address_is_empty(a: &PostalAddress) -> bool {
    [&a.street, &a.city, &a.region, &a.postal_code, &a.country]
        .iter()
        .all(|s| s.is_empty())
}

// ---------------------------------------------------------------------------------------
// The attendee block in the description
// ---------------------------------------------------------------------------------------

/// Byte offsets of the lines (split on `\n`) equal to the attendee header.
fn header_positions(text: &str) -> Vec<usize> {
    let mut positions = Vec::new();
    let mut start = 0;
    for line in text.split('\n') {
        if line == ATTENDEES_HEADER {
            positions.push(start);
        }
        start += line.len() + 1;
    }
    positions
}

fn attendee_line(a: &AttendeeLine) -> String {
    if a.name.is_empty() {
        format!("- <{}>", a.email)
    } else {
        format!("- {} <{}>", a.name, a.email)
    }
}

fn parse_attendee_line(line: &str) -> Option<AttendeeLine> {
    let rest = line.strip_prefix("- ")?;
    let inner = rest.strip_suffix('>')?;
    if let Some(i) = inner.rfind(" <") {
        Some(AttendeeLine {
            name: inner[..i].to_owned(),
            email: inner[i + 2..].to_owned(),
        })
    } else {
        inner.strip_prefix('<').map(|email| AttendeeLine {
            name: String::new(),
            email: email.to_owned(),
        })
    }
}

/// The description Google shows: the event's description, then (after a blank line) the
/// attendee block — the header line and one `- Name <email>` line per attendee. The block
/// is also written, empty, when the description itself contains a header line, so that the
/// last header is always ours and [`split_description`] recovers both parts.
pub fn compose_description(description: &str, attendees: &[AttendeeLine]) -> String {
    if attendees.is_empty() && header_positions(description).is_empty() {
        return description.to_owned();
    }
    let mut text = String::new();
    if !description.is_empty() {
        text.push_str(description);
        text.push_str("\n\n");
    }
    text.push_str(ATTENDEES_HEADER);
    for a in attendees {
        text.push('\n');
        text.push_str(&attendee_line(a));
    }
    text
}

/// Splits a description read from Google into our description and the attendee block.
/// The block starts at the last header line and takes the attendee lines that follow it;
/// text after them (a phone user typing below the block) is kept as description, after a
/// blank line. The description is trimmed.
pub fn split_description(text: &str) -> (String, Vec<AttendeeLine>) {
    let Some(&pos) = header_positions(text).last() else {
        return (text.trim().to_owned(), Vec::new());
    };
    let before = text[..pos].trim();
    let block = text[pos + ATTENDEES_HEADER.len()..]
        .strip_prefix('\n')
        .unwrap_or("");
    let mut attendees = Vec::new();
    let mut lines = block.split('\n').peekable();
    while let Some(a) = lines.peek().and_then(|l| parse_attendee_line(l)) {
        attendees.push(a);
        lines.next();
    }
    let after = lines.collect::<Vec<_>>().join("\n");
    let after = after.trim();
    let description = match (before.is_empty(), after.is_empty()) {
        (_, true) => before.to_owned(),
        (true, false) => after.to_owned(),
        (false, false) => format!("{before}\n\n{after}"),
    };
    (description, attendees)
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

fn bad_value(message: impl Into<String>) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Permanent, message)
}

/// The Google event we write for a synced event: our id, the synced fields (attendees in
/// the description), and the private markers. Never any Google attendee.
pub fn event_to_google(id: &str, crm_id: &CrmId, v: &SyncedEvent) -> Result<Event, RemoteError> {
    let v = canonical_event(v);
    let zone = normalize::time_zone(&v.time_zone)
        .map_err(|e| bad_value(format!("event {crm_id}: {e}")))?;
    let time = |t: EventTime| match t {
        EventTime::DateTime(local) => EventDateTime {
            date_time: Some(local_to_utc(local, zone)),
            time_zone: Some(v.time_zone.clone()),
            date: None,
        },
        EventTime::Date(d) => EventDateTime {
            date: Some(d),
            time_zone: Some(v.time_zone.clone()),
            date_time: None,
        },
    };
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let description = compose_description(&v.description, &v.attendees);
    let private = HashMap::from([
        (MARKER_ID.to_owned(), crm_id.to_string()),
        (MARKER_KIND.to_owned(), "event".to_owned()),
        (MARKER_TIME_ZONE.to_owned(), v.time_zone.clone()),
    ]);
    Ok(Event {
        id: Some(id.to_owned()),
        summary: non_empty(&v.title),
        description: non_empty(&description),
        location: non_empty(&v.location),
        start: Some(time(v.start)),
        end: Some(time(v.end)),
        recurrence: (!v.recurrence.is_empty()).then(|| v.recurrence.clone()),
        extended_properties: Some(EventExtendedProperties {
            private: Some(private),
            shared: None,
        }),
        ..Event::default()
    })
}

/// The JSON body of a PATCH that sets every synced field of `event` (from
/// [`event_to_google`]) and nothing else: cleared fields are sent as empty values or
/// `null`, so fields the phone user set that we do not sync (reminders, colour…) survive.
pub fn event_patch_body(event: &Event) -> serde_json::Value {
    let time = |t: &Option<EventDateTime>| {
        let t = t.clone().unwrap_or_default();
        serde_json::json!({
            "date": t.date,
            "dateTime": t.date_time,
            "timeZone": t.time_zone,
        })
    };
    serde_json::json!({
        "summary": event.summary.clone().unwrap_or_default(),
        "description": event.description.clone().unwrap_or_default(),
        "location": event.location.clone().unwrap_or_default(),
        "start": time(&event.start),
        "end": time(&event.end),
        "recurrence": event.recurrence.clone().unwrap_or_default(),
        "extendedProperties": { "private": event
            .extended_properties
            .as_ref()
            .and_then(|p| p.private.clone())
            .unwrap_or_default() },
    })
}

/// A value's JSON with every `null` removed (what the Google crates send).
pub fn to_json_without_nulls<T: serde::Serialize>(value: &T) -> serde_json::Value {
    let mut json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    strip_nulls(&mut json);
    json
}

fn strip_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => {
            items.retain(|v| !v.is_null());
            items.iter_mut().for_each(strip_nulls);
        }
        _ => {}
    }
}

fn private_property<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event
        .extended_properties
        .as_ref()?
        .private
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Maps an event read from Google. A cancelled event (or cancelled instance) is `Deleted`;
/// anything else is `Present` with the synced fields, our marker and, for an edited
/// instance of a series, its parent.
///
/// The zone is `start.timeZone`, else `end.timeZone`, else our private
/// `crmsync_time_zone`, else `UTC`; a zone chrono-tz does not know is kept as a name and
/// times are read in UTC.
pub fn event_from_google(event: &Event) -> RemoteChange<SyncedEvent> {
    let google_id = event.id.clone().unwrap_or_default();
    if event.status.as_deref() == Some("cancelled") {
        return RemoteChange::Deleted { google_id };
    }
    let time_zone = event
        .start
        .as_ref()
        .and_then(|s| s.time_zone.clone())
        .or_else(|| event.end.as_ref().and_then(|e| e.time_zone.clone()))
        .or_else(|| private_property(event, MARKER_TIME_ZONE).map(str::to_owned))
        .unwrap_or_else(|| "UTC".to_owned());
    let zone = normalize::time_zone(&time_zone).unwrap_or(Tz::UTC);
    let time = |t: &Option<EventDateTime>| -> EventTime {
        match t {
            Some(EventDateTime {
                date: Some(d),
                date_time: None,
                ..
            }) => EventTime::Date(*d),
            Some(EventDateTime {
                date_time: Some(dt),
                ..
            }) => EventTime::DateTime(utc_to_local(*dt, zone)),
            _ => EventTime::DateTime(NaiveDateTime::default()),
        }
    };
    let start = time(&event.start);
    let end = time(&event.end);
    let (description, attendees) = split_description(event.description.as_deref().unwrap_or(""));
    let data = SyncedEvent {
        title: event.summary.as_deref().unwrap_or("").trim().to_owned(),
        description,
        location: event.location.as_deref().unwrap_or("").trim().to_owned(),
        all_day: matches!(start, EventTime::Date(_)),
        start,
        end,
        time_zone: time_zone.trim().to_owned(),
        recurrence: canonical_recurrence(event.recurrence.as_deref().unwrap_or(&[])),
        attendees,
    };
    let crm_id = private_property(event, MARKER_ID).and_then(|id| CrmId::new(id).ok());
    let raw = unmarked_snapshot(crm_id.as_ref(), event);
    RemoteChange::Present(RemoteItem {
        google_id,
        etag: event.etag.clone().unwrap_or_default(),
        created_by_us: crm_id.is_some(),
        crm_id,
        data,
        in_container: true,
        previous_ids: Vec::new(),
        recurring_parent: event.recurring_event_id.clone(),
        updated: event.updated,
        raw,
    })
}

// ---------------------------------------------------------------------------------------
// Contacts
// ---------------------------------------------------------------------------------------

/// `personFields` for reads: everything we map plus markers and metadata.
pub const PERSON_FIELDS: &str =
    "names,organizations,emailAddresses,phoneNumbers,addresses,biographies,memberships,clientData,metadata";

/// `updatePersonFields` / `updateMask`: exactly the fields we manage, our marker and group
/// membership.
pub const UPDATE_PERSON_FIELDS: &str =
    "names,organizations,emailAddresses,phoneNumbers,addresses,biographies,clientData,memberships";

/// The update mask of a contact known to carry our marker and membership already: the
/// synced fields alone (everything else on the contact stays as it is).
pub const SYNCED_PERSON_FIELDS: &str =
    "names,organizations,emailAddresses,phoneNumbers,addresses,biographies";

fn group_membership(group: &str) -> Membership {
    Membership {
        contact_group_membership: Some(ContactGroupMembership {
            contact_group_resource_name: Some(group.to_owned()),
            contact_group_id: None,
        }),
        ..Membership::default()
    }
}

/// The contact-group resource names a person is a member of.
pub fn person_groups(person: &Person) -> Vec<String> {
    person
        .memberships
        .iter()
        .flatten()
        .filter_map(|m| m.contact_group_membership.as_ref())
        .filter_map(|g| {
            g.contact_group_resource_name.clone().or_else(|| {
                g.contact_group_id
                    .as_ref()
                    .map(|id| format!("contactGroups/{id}"))
            })
        })
        .collect()
}

/// The Person we write for a synced contact: the synced fields, `clientData` `crmsync_id`
/// (plus `keep_client_data`, other keys already on the contact) and membership in `group`
/// (plus `keep_groups`, the memberships the contact already has; a new contact, with none,
/// also goes to `myContacts`).
pub fn contact_to_google(
    crm_id: &CrmId,
    group: &str,
    v: &SyncedContact,
    keep_groups: &[String],
    keep_client_data: &[ClientData],
) -> Person {
    let v = canonical_contact(v);
    let label = |l: &str| (!l.is_empty()).then(|| l.to_owned());
    let names = (!v.first_name.is_empty() || !v.last_name.is_empty()).then(|| {
        vec![Name {
            given_name: label(&v.first_name),
            family_name: label(&v.last_name),
            ..Name::default()
        }]
    });
    let organizations = (!v.organization.is_empty() || !v.title.is_empty()).then(|| {
        vec![Organization {
            name: label(&v.organization),
            title: label(&v.title),
            ..Organization::default()
        }]
    });
    let emails: Vec<GEmail> = v
        .emails
        .iter()
        .map(|e| GEmail {
            value: Some(e.address.clone()),
            type_: label(&e.label),
            ..GEmail::default()
        })
        .collect();
    let phones: Vec<GPhone> = v
        .phones
        .iter()
        .map(|p| GPhone {
            value: Some(p.number.clone()),
            type_: label(&p.label),
            ..GPhone::default()
        })
        .collect();
    let addresses: Vec<Address> = v
        .addresses
        .iter()
        .map(|a| Address {
            street_address: label(&a.street),
            city: label(&a.city),
            region: label(&a.region),
            postal_code: label(&a.postal_code),
            country: label(&a.country),
            type_: label(&a.label),
            ..Address::default()
        })
        .collect();
    let biographies = (!v.notes.is_empty()).then(|| {
        vec![Biography {
            value: Some(v.notes.clone()),
            content_type: Some("TEXT_PLAIN".to_owned()),
            ..Biography::default()
        }]
    });
    let mut client_data: Vec<ClientData> = keep_client_data
        .iter()
        .filter(|c| c.key.as_deref() != Some(MARKER_ID))
        .map(|c| ClientData {
            key: c.key.clone(),
            value: c.value.clone(),
            metadata: None,
        })
        .collect();
    client_data.push(ClientData {
        key: Some(MARKER_ID.to_owned()),
        value: Some(crm_id.to_string()),
        metadata: None,
    });
    // A new contact goes to My Contacts and our group; an existing one keeps its
    // memberships (the phone user's labels) and gains our group.
    let mut groups: Vec<String> = if keep_groups.is_empty() {
        vec![MY_CONTACTS.to_owned()]
    } else {
        Vec::new()
    };
    for g in keep_groups.iter().chain(std::iter::once(&group.to_owned())) {
        if !groups.contains(g) {
            groups.push(g.clone());
        }
    }
    Person {
        names,
        organizations,
        email_addresses: Some(emails),
        phone_numbers: Some(phones),
        addresses: Some(addresses),
        biographies,
        client_data: Some(client_data),
        memberships: Some(groups.iter().map(|g| group_membership(g)).collect()),
        ..Person::default()
    }
}

/// Marks a person about to be created by crmsync ([`MARKER_ORIGIN`]).
pub fn mark_created(person: &mut Person) {
    let data = person.client_data.get_or_insert_with(Vec::new);
    data.retain(|c| c.key.as_deref() != Some(MARKER_ORIGIN));
    data.push(ClientData {
        key: Some(MARKER_ORIGIN.to_owned()),
        value: Some(ORIGIN_CREATED.to_owned()),
        metadata: None,
    });
}

/// Whether crmsync created this person ([`MARKER_ORIGIN`]).
pub fn person_created_by_us(person: &Person) -> bool {
    person.client_data.iter().flatten().any(|c| {
        c.key.as_deref() == Some(MARKER_ORIGIN) && c.value.as_deref() == Some(ORIGIN_CREATED)
    })
}

/// Our `crmsync_id` marker on a person, if any.
pub fn person_marker(person: &Person) -> Option<CrmId> {
    person
        .client_data
        .iter()
        .flatten()
        .find(|c| c.key.as_deref() == Some(MARKER_ID))
        .and_then(|c| c.value.as_deref())
        .and_then(|v| CrmId::new(v).ok())
}

/// The synced fields of a person as Google holds them (normalised: canonical e-mails and
/// phones, trimmed text).
pub fn contact_fields(person: &Person) -> SyncedContact {
    let text = |s: &Option<String>| s.as_deref().unwrap_or("").to_owned();
    let name = person.names.as_ref().and_then(|n| n.first());
    let org = person.organizations.as_ref().and_then(|o| o.first());
    let raw = SyncedContact {
        first_name: name.map(|n| text(&n.given_name)).unwrap_or_default(),
        last_name: name.map(|n| text(&n.family_name)).unwrap_or_default(),
        organization: org.map(|o| text(&o.name)).unwrap_or_default(),
        title: org.map(|o| text(&o.title)).unwrap_or_default(),
        emails: person
            .email_addresses
            .iter()
            .flatten()
            .map(|e| EmailAddress {
                address: text(&e.value),
                label: text(&e.type_),
            })
            .collect(),
        phones: person
            .phone_numbers
            .iter()
            .flatten()
            .map(|p| PhoneNumber {
                number: text(&p.value),
                label: text(&p.type_),
            })
            .collect(),
        addresses: person
            .addresses
            .iter()
            .flatten()
            .map(|a| PostalAddress {
                street: text(&a.street_address),
                city: text(&a.city),
                region: text(&a.region),
                postal_code: text(&a.postal_code),
                country: text(&a.country),
                label: text(&a.type_),
            })
            .collect(),
        notes: person
            .biographies
            .as_ref()
            .and_then(|b| b.first())
            .map(|b| text(&b.value))
            .unwrap_or_default(),
    };
    canonical_contact(&raw)
}

/// Maps a person read from Google. `metadata.deleted` → `Deleted`; otherwise `Present`
/// with the synced fields, our marker, whether it is in `group`, and its previous
/// resource names.
/// The whole item as Google returned it, kept for items without our marker only: the
/// pre-link snapshot of a phone item crmsync links or imports. An item carrying our marker
/// never needs one, and most listed items carry it (the echoes of our own writes above all).
fn unmarked_snapshot<T: serde::Serialize>(marker: Option<&CrmId>, item: &T) -> serde_json::Value {
    match marker {
        Some(_) => serde_json::Value::Null,
        None => serde_json::to_value(item).unwrap_or(serde_json::Value::Null),
    }
}

pub fn contact_from_google(person: &Person, group: &str) -> RemoteChange<SyncedContact> {
    let google_id = person.resource_name.clone().unwrap_or_default();
    let metadata = person.metadata.as_ref();
    if metadata.and_then(|m| m.deleted).unwrap_or(false) {
        return RemoteChange::Deleted { google_id };
    }
    let updated = metadata
        .and_then(|m| m.sources.as_ref())
        .and_then(|sources| {
            sources
                .iter()
                .filter(|s| s.type_.as_deref() == Some("CONTACT"))
                .find_map(|s| s.update_time)
                .or_else(|| sources.iter().find_map(|s| s.update_time))
        });
    let crm_id = person_marker(person);
    let raw = unmarked_snapshot(crm_id.as_ref(), person);
    RemoteChange::Present(RemoteItem {
        google_id,
        etag: person.etag.clone().unwrap_or_default(),
        crm_id,
        created_by_us: person_created_by_us(person),
        data: contact_fields(person),
        in_container: person_groups(person).iter().any(|g| g == group),
        previous_ids: metadata
            .and_then(|m| m.previous_resource_names.clone())
            .unwrap_or_default(),
        recurring_parent: None,
        updated,
        raw,
    })
}

#[cfg(test)]
mod tests;
