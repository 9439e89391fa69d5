//! CRM records: contacts, events and organizations, in their canonical (normalised) form.
//!
//! The serde shape is the org file's. `normalize` turns a parsed record into its canonical
//! form (trimmed text, lower-cased e-mails, E.164 phones where parseable, validated zone and
//! recurrence) or says what is wrong with it, so two records that mean the same thing compare
//! and hash equal.

use super::ids::{CrmId, ObjectKind, TeamId, UserId};
use super::normalize::{self, NormalizeError};
use super::org::Visibility;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// An e-mail address with its label (`work`, `home`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailAddress {
    pub address: String,
    #[serde(default)]
    pub label: String,
}

/// A phone number with its label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumber {
    pub number: String,
    #[serde(default)]
    pub label: String,
}

/// A postal address with its label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PostalAddress {
    #[serde(default)]
    pub street: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub postal_code: String,
    #[serde(default)]
    pub country: String,
    #[serde(default)]
    pub label: String,
}

/// A CRM contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub id: CrmId,
    pub owner: UserId,
    #[serde(default)]
    pub assignees: Vec<UserId>,
    #[serde(default)]
    pub visibility: Option<Visibility>,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub organization: Option<CrmId>,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub emails: Vec<EmailAddress>,
    #[serde(default)]
    pub phones: Vec<PhoneNumber>,
    #[serde(default)]
    pub addresses: Vec<PostalAddress>,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A CRM organization (account / company).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    pub id: CrmId,
    pub name: String,
    pub owner: UserId,
    #[serde(default)]
    pub assignees: Vec<UserId>,
    #[serde(default)]
    pub visibility: Option<Visibility>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// The start or end of an event: a local date-time (in the event's zone) or, for all-day
/// events, a date (the end date is exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventTime {
    DateTime(NaiveDateTime),
    Date(NaiveDate),
}

/// Someone attending an event: a CRM user or a CRM contact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Attendee {
    User(UserId),
    Contact(CrmId),
}

/// A parent record an event belongs to (drives `controlled_by_parent` sharing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ParentLink {
    Contact(CrmId),
    Organization(CrmId),
}

impl ParentLink {
    pub fn kind(&self) -> ObjectKind {
        match self {
            ParentLink::Contact(_) => ObjectKind::Contact,
            ParentLink::Organization(_) => ObjectKind::Organization,
        }
    }

    pub fn id(&self) -> &CrmId {
        match self {
            ParentLink::Contact(id) | ParentLink::Organization(id) => id,
        }
    }
}

/// A CRM event (meeting, call, task with a time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub id: CrmId,
    pub owner: UserId,
    #[serde(default)]
    pub assignees: Vec<UserId>,
    #[serde(default)]
    pub visibility: Option<Visibility>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub location: String,
    pub start: EventTime,
    pub end: EventTime,
    /// IANA zone name the local start/end are expressed in (`UTC` when absent).
    #[serde(default = "default_zone")]
    pub time_zone: String,
    #[serde(default)]
    pub all_day: bool,
    /// RFC 5545 RRULE / EXRULE / RDATE / EXDATE lines (no DTSTART).
    #[serde(default)]
    pub recurrence: Vec<String>,
    #[serde(default)]
    pub attendees: Vec<Attendee>,
    #[serde(default)]
    pub links: Vec<ParentLink>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

fn default_zone() -> String {
    "UTC".to_owned()
}

/// The user ids a record grants "owner or assignee" to.
pub trait Owned {
    fn owner(&self) -> &UserId;
    fn assignees(&self) -> &[UserId];
    fn visibility(&self) -> Option<&Visibility>;
}

macro_rules! impl_owned {
    ($($t:ty),*) => {$(
        impl Owned for $t {
            fn owner(&self) -> &UserId { &self.owner }
            fn assignees(&self) -> &[UserId] { &self.assignees }
            fn visibility(&self) -> Option<&Visibility> { self.visibility.as_ref() }
        }
    )*};
}
impl_owned!(Contact, Event, Organization);

/// Users and teams a record names (for reference checks).
impl Visibility {
    pub fn team(&self) -> Option<&TeamId> {
        match self {
            Visibility::Team(t) => Some(t),
            _ => None,
        }
    }
}

fn trim_in_place(s: &mut String) {
    let trimmed = s.trim();
    if trimmed.len() != s.len() {
        *s = trimmed.to_owned();
    }
}

/// Problems found while normalising one record, each with the field it concerns.
pub type FieldProblems = Vec<(String, NormalizeError)>;

impl Contact {
    /// The canonical form: trimmed text, lower-cased e-mails, E.164 phones where parseable,
    /// sorted unique tags. Returns every problem found with its field path.
    pub fn normalized(mut self) -> Result<Self, FieldProblems> {
        let mut problems = Vec::new();
        for s in [
            &mut self.first_name,
            &mut self.last_name,
            &mut self.title,
            &mut self.notes,
        ] {
            trim_in_place(s);
        }
        for (i, e) in self.emails.iter_mut().enumerate() {
            match normalize::email(&e.address) {
                Ok(a) => e.address = a,
                Err(err) => problems.push((format!("emails[{i}].address"), err)),
            }
            trim_in_place(&mut e.label);
        }
        for (i, p) in self.phones.iter_mut().enumerate() {
            match normalize::phone(&p.number) {
                Ok(n) => p.number = n,
                Err(err) => problems.push((format!("phones[{i}].number"), err)),
            }
            trim_in_place(&mut p.label);
        }
        for a in &mut self.addresses {
            for s in [
                &mut a.street,
                &mut a.city,
                &mut a.region,
                &mut a.postal_code,
                &mut a.country,
                &mut a.label,
            ] {
                trim_in_place(s);
            }
        }
        let mut tags: Vec<String> = self
            .tags
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        tags.sort();
        tags.dedup();
        self.tags = tags;
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(problems)
        }
    }

    /// "First Last", or the first e-mail when the contact has no name.
    pub fn display_name(&self) -> String {
        let name = format!("{} {}", self.first_name, self.last_name);
        let name = name.trim();
        if name.is_empty() {
            self.emails
                .first()
                .map(|e| e.address.clone())
                .unwrap_or_else(|| self.id.to_string())
        } else {
            name.to_owned()
        }
    }
}

impl Event {
    /// The canonical form: trimmed text, a valid IANA zone, start/end of the right shape for
    /// `all_day` with end after start, and valid recurrence lines.
    pub fn normalized(mut self) -> Result<Self, FieldProblems> {
        let mut problems = Vec::new();
        for s in [&mut self.title, &mut self.description, &mut self.location] {
            trim_in_place(s);
        }
        trim_in_place(&mut self.time_zone);
        let zone = match normalize::time_zone(&self.time_zone) {
            Ok(z) => Some(z),
            Err(err) => {
                problems.push(("time_zone".to_owned(), err));
                None
            }
        };
        match (self.all_day, self.start, self.end) {
            (true, EventTime::Date(s), EventTime::Date(e)) => {
                if e <= s {
                    problems.push((
                        "end".to_owned(),
                        NormalizeError::EndNotAfterStart {
                            start: s.to_string(),
                            end: e.to_string(),
                        },
                    ));
                }
            }
            (false, EventTime::DateTime(s), EventTime::DateTime(e)) => {
                if e <= s {
                    problems.push((
                        "end".to_owned(),
                        NormalizeError::EndNotAfterStart {
                            start: s.to_string(),
                            end: e.to_string(),
                        },
                    ));
                }
            }
            (all_day, _, _) => {
                problems.push(("start".to_owned(), NormalizeError::TimeShape { all_day }))
            }
        }
        let mut lines = Vec::with_capacity(self.recurrence.len());
        for (i, line) in self.recurrence.iter().enumerate() {
            match normalize::recurrence_line(line) {
                Ok(l) => lines.push(l),
                Err(err) => problems.push((format!("recurrence[{i}]"), err)),
            }
        }
        self.recurrence = lines;
        if problems.is_empty() && !self.recurrence.is_empty() {
            if let Some(zone) = zone {
                if let Err(err) = normalize::recurrence_set(&self.recurrence, self.start, zone) {
                    problems.push(("recurrence".to_owned(), err));
                }
            }
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(problems)
        }
    }
}

impl Organization {
    pub fn normalized(mut self) -> Result<Self, FieldProblems> {
        trim_in_place(&mut self.name);
        Ok(self)
    }
}
