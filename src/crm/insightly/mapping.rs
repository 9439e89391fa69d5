//! Insightly records ↔ crmsync's model (the README's Insightly section lists every field).
//!
//! Reading: each record is decoded and normalised on its own; a record that cannot be
//! (a wrong type, an unknown `VISIBLE_TO`, an invalid e-mail address, an end before its
//! start) is a problem for that record only. Writing: the whitelisted fields of a contact or
//! an event become the partial `PUT` body Insightly v3.1 accepts (the record id plus the
//! fields to set; `null` clears one).

use super::api::{
    format_utc, parse_utc, WireContact, WireEvent, WireLink, WireOrganisation, WireTeam,
    WireTeamMember, WireUser, WireVisibility,
};
use super::config::GoogleAccountRule;
use crate::crm::{CrmError, Entity};
use crate::model::{
    Contact, CrmId, EmailAddress, Event, EventTime, ObjectKind, Organization, ParentLink,
    PhoneNumber, PostalAddress, ProfileId, RoleId, Team, TeamId, User, UserId, Visibility,
};
use chrono::{DateTime, NaiveTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The owner crmsync records for an Insightly record without `OWNER_USER_ID` (no user has
/// this id, so it grants nobody anything).
pub const UNOWNED: &str = "unowned";

/// The profile every user gets in delegated mode without a model file.
pub const DELEGATED_PROFILE: &str = "insightly_delegated";

/// A record that could not be mapped: its id (as far as known) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub id: String,
    pub error: String,
}

/// How users map.
#[derive(Debug, Clone)]
pub struct UserRules {
    pub google_account: GoogleAccountRule,
    pub google_accounts: BTreeMap<String, String>,
    /// Delegated mode without a model file: every non-admin gets [`DELEGATED_PROFILE`] and no
    /// role; otherwise `PROFILE_ID` / `ROLE_ID` name the model file's profiles and roles.
    pub delegated_default: bool,
}

fn id_text(value: &Value, field: &str) -> String {
    match value.get(field) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "?".into(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: &Value, id_field: &str) -> Result<T, Unreadable> {
    serde_json::from_value(value.clone()).map_err(|e| Unreadable {
        id: id_text(value, id_field),
        error: format!("cannot read the record: {e}"),
    })
}

fn crm_id(n: i64) -> CrmId {
    CrmId::from_trusted(n.to_string())
}

fn user_id(n: i64) -> UserId {
    UserId::from_trusted(n.to_string())
}

fn owner(n: Option<i64>) -> UserId {
    n.map(user_id)
        .unwrap_or_else(|| UserId::from_trusted(UNOWNED.to_owned()))
}

fn text(v: &Option<String>) -> String {
    v.as_deref().unwrap_or("").trim().to_owned()
}

fn stamp(raw: &Option<String>) -> Result<Option<DateTime<Utc>>, String> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => parse_utc(s)
            .map(Some)
            .ok_or_else(|| format!("DATE_UPDATED_UTC {s:?} is not a date-time")),
    }
}

/// `VISIBLE_TO` (EVERYONE / OWNER / TEAM / INDIVIDUALS) → the model's simple visibility.
pub fn visibility(w: &WireVisibility) -> Result<Option<Visibility>, String> {
    let Some(raw) = w
        .visible_to
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    match raw.to_ascii_uppercase().as_str() {
        "EVERYONE" => Ok(Some(Visibility::Everyone)),
        "OWNER" => Ok(Some(Visibility::OwnerOnly)),
        "TEAM" => match w.visible_team_id {
            Some(team) => Ok(Some(Visibility::Team(TeamId::from_trusted(
                team.to_string(),
            )))),
            None => Err("VISIBLE_TO is TEAM but VISIBLE_TEAM_ID is missing".into()),
        },
        "INDIVIDUALS" => {
            let mut users = Vec::new();
            for part in w.visible_user_ids.as_deref().unwrap_or("").split(',') {
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                let n: i64 = part
                    .parse()
                    .map_err(|_| format!("VISIBLE_USER_IDS holds {part:?}, not a user id"))?;
                users.push(user_id(n));
            }
            users.sort();
            users.dedup();
            Ok(Some(Visibility::Users(users)))
        }
        other => Err(format!(
            "VISIBLE_TO {other:?} is not EVERYONE, OWNER, TEAM or INDIVIDUALS"
        )),
    }
}

fn problems_text(list: Vec<(String, crate::model::normalize::NormalizeError)>) -> String {
    list.into_iter()
        .map(|(f, e)| format!("{f}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Contact phone slots, in the order they are read, with the label each reads as.
const PHONE_SLOTS: [(&str, &str); 6] = [
    ("PHONE", "work"),
    ("PHONE_MOBILE", "mobile"),
    ("PHONE_HOME", "home"),
    ("PHONE_OTHER", "other"),
    ("PHONE_ASSISTANT", "assistant"),
    ("PHONE_FAX", "fax"),
];

/// The two address slots and the label each reads as.
const ADDRESS_SLOTS: [(&str, &str); 2] = [("ADDRESS_MAIL", "work"), ("ADDRESS_OTHER", "other")];

/// A contact.
pub fn contact(value: &Value) -> Result<Contact, Unreadable> {
    let w: WireContact = decode(value, "CONTACT_ID")?;
    let id = w.contact_id.to_string();
    let fail = |error: String| Unreadable {
        id: id.clone(),
        error,
    };
    let phones = [
        (&w.phone, PHONE_SLOTS[0].1),
        (&w.phone_mobile, PHONE_SLOTS[1].1),
        (&w.phone_home, PHONE_SLOTS[2].1),
        (&w.phone_other, PHONE_SLOTS[3].1),
        (&w.phone_assistant, PHONE_SLOTS[4].1),
        (&w.phone_fax, PHONE_SLOTS[5].1),
    ]
    .into_iter()
    .filter(|(v, _)| !text(v).is_empty())
    .map(|(v, label)| PhoneNumber {
        number: text(v),
        label: label.into(),
    })
    .collect();
    let mail = PostalAddress {
        street: text(&w.address_mail_street),
        city: text(&w.address_mail_city),
        region: text(&w.address_mail_state),
        postal_code: text(&w.address_mail_postcode),
        country: text(&w.address_mail_country),
        label: ADDRESS_SLOTS[0].1.into(),
    };
    let other = PostalAddress {
        street: text(&w.address_other_street),
        city: text(&w.address_other_city),
        region: text(&w.address_other_state),
        postal_code: text(&w.address_other_postcode),
        country: text(&w.address_other_country),
        label: ADDRESS_SLOTS[1].1.into(),
    };
    let filled = |a: &PostalAddress| {
        !(a.street.is_empty()
            && a.city.is_empty()
            && a.region.is_empty()
            && a.postal_code.is_empty()
            && a.country.is_empty())
    };
    let mut tags: Vec<String> = w
        .tags
        .iter()
        .flatten()
        .filter_map(|t| t.tag_name.clone())
        .collect();
    tags.sort();
    let c = Contact {
        id: crm_id(w.contact_id),
        owner: owner(w.owner_user_id),
        assignees: Vec::new(),
        visibility: visibility(&w.visibility).map_err(fail)?,
        first_name: text(&w.first_name),
        last_name: text(&w.last_name),
        organization: w.organisation_id.map(crm_id),
        title: text(&w.title),
        emails: match text(&w.email_address) {
            e if e.is_empty() => Vec::new(),
            e => vec![EmailAddress {
                address: e,
                label: "work".into(),
            }],
        },
        phones,
        addresses: [mail, other].into_iter().filter(filled).collect(),
        notes: text(&w.background),
        tags,
        updated_at: stamp(&w.date_updated_utc).map_err(fail)?,
    };
    c.normalized().map_err(|p| fail(problems_text(p)))
}

/// An organisation.
pub fn organisation(value: &Value) -> Result<Organization, Unreadable> {
    let w: WireOrganisation = decode(value, "ORGANISATION_ID")?;
    let id = w.organisation_id.to_string();
    let fail = |error: String| Unreadable {
        id: id.clone(),
        error,
    };
    let o = Organization {
        id: crm_id(w.organisation_id),
        name: text(&w.organisation_name),
        owner: owner(w.owner_user_id),
        assignees: Vec::new(),
        visibility: visibility(&w.visibility).map_err(fail)?,
        updated_at: stamp(&w.date_updated_utc).map_err(fail)?,
    };
    o.normalized().map_err(|p| fail(problems_text(p)))
}

/// The parent an event link points at (contacts and organisations; other objects are not
/// part of crmsync's model).
fn parent(link: &WireLink) -> Option<ParentLink> {
    let is_event = |name: &Option<String>| {
        name.as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case("event"))
    };
    let (name, id) = if is_event(&link.object_name) {
        (link.link_object_name.as_deref()?, link.link_object_id?)
    } else if is_event(&link.link_object_name) {
        (link.object_name.as_deref()?, link.object_id?)
    } else {
        return None;
    };
    match name.to_ascii_lowercase().as_str() {
        "contact" => Some(ParentLink::Contact(crm_id(id))),
        "organisation" | "organization" => Some(ParentLink::Organization(crm_id(id))),
        _ => None,
    }
}

/// An event. Times are UTC; an all-day event's dates are the UTC dates, its end exclusive
/// (an end at midnight after the start day is taken as exclusive, any other end as the
/// last day).
pub fn event(value: &Value) -> Result<Event, Unreadable> {
    let w: WireEvent = decode(value, "EVENT_ID")?;
    let id = w.event_id.to_string();
    let fail = |error: String| Unreadable {
        id: id.clone(),
        error,
    };
    let when = |raw: &Option<String>, field: &str| -> Result<DateTime<Utc>, Unreadable> {
        let raw = raw.as_deref().unwrap_or("").trim();
        if raw.is_empty() {
            return Err(fail(format!("{field} is missing")));
        }
        parse_utc(raw).ok_or_else(|| fail(format!("{field} {raw:?} is not a date-time")))
    };
    let start = when(&w.start_date_utc, "START_DATE_UTC")?;
    let end = when(&w.end_date_utc, "END_DATE_UTC")?;
    let all_day = w.all_day.unwrap_or(false);
    let (start, end) = if all_day {
        let first = start.date_naive();
        let last = end.date_naive();
        let exclusive = if end.time() == NaiveTime::MIN && last > first {
            last
        } else {
            last.succ_opt().unwrap_or(last)
        };
        (EventTime::Date(first), EventTime::Date(exclusive))
    } else {
        (
            EventTime::DateTime(start.naive_utc()),
            EventTime::DateTime(end.naive_utc()),
        )
    };
    let mut links: Vec<ParentLink> = Vec::new();
    for link in w.links.iter().flatten() {
        if let Some(p) = parent(link) {
            if !links.contains(&p) {
                links.push(p);
            }
        }
    }
    let e = Event {
        id: crm_id(w.event_id),
        owner: owner(w.owner_user_id),
        assignees: Vec::new(),
        visibility: visibility(&w.visibility).map_err(fail)?,
        title: text(&w.title),
        description: text(&w.details),
        location: text(&w.location),
        start,
        end,
        time_zone: "UTC".into(),
        all_day,
        recurrence: Vec::new(),
        attendees: Vec::new(),
        links,
        updated_at: stamp(&w.date_updated_utc).map_err(fail)?,
    };
    e.normalized().map_err(|p| fail(problems_text(p)))
}

/// A record of `kind`, as an entity.
pub fn record(kind: ObjectKind, value: &Value) -> Result<Entity, Unreadable> {
    Ok(match kind {
        ObjectKind::Contact => Entity::Contact(contact(value)?),
        ObjectKind::Event => Entity::Event(event(value)?),
        ObjectKind::Organization => Entity::Organization(organisation(value)?),
    })
}

/// A user.
pub fn user(value: &Value, rules: &UserRules) -> Result<User, Unreadable> {
    let w: WireUser = decode(value, "USER_ID")?;
    let id = user_id(w.user_id);
    let fail = |error: String| Unreadable {
        id: id.to_string(),
        error,
    };
    let email = crate::model::normalize::email(&text(&w.email_address))
        .map_err(|e| fail(format!("EMAIL_ADDRESS: {e}")))?;
    let name = format!("{} {}", text(&w.first_name), text(&w.last_name))
        .trim()
        .to_owned();
    let admin = w.administrator.unwrap_or(false);
    let (profile, role) = if rules.delegated_default {
        (
            (!admin).then(|| ProfileId::from_trusted(DELEGATED_PROFILE.to_owned())),
            None,
        )
    } else {
        (
            w.profile_id.map(|p| ProfileId::from_trusted(p.to_string())),
            w.role_id.map(|r| RoleId::from_trusted(r.to_string())),
        )
    };
    let google_account = match rules.google_accounts.get(id.as_str()) {
        Some(account) => Some(
            crate::model::normalize::email(account)
                .map_err(|e| fail(format!("google_accounts: {e}")))?,
        ),
        None => match rules.google_account {
            GoogleAccountRule::Email => Some(email.clone()),
            GoogleAccountRule::None => None,
        },
    };
    Ok(User {
        name: if name.is_empty() { email.clone() } else { name },
        id,
        email,
        // Fail-closed: a user the API does not say is active is treated as inactive.
        active: w.active.unwrap_or(false),
        admin,
        profile,
        role,
        google_account,
    })
}

/// A team with its members (from `TeamMembers`).
pub fn team(value: &Value, members: &BTreeMap<i64, Vec<UserId>>) -> Result<Team, Unreadable> {
    let w: WireTeam = decode(value, "TEAM_ID")?;
    let mut list = members.get(&w.team_id).cloned().unwrap_or_default();
    list.sort();
    list.dedup();
    Ok(Team {
        id: TeamId::from_trusted(w.team_id.to_string()),
        name: match text(&w.team_name) {
            n if n.is_empty() => w.team_id.to_string(),
            n => n,
        },
        members: list,
    })
}

/// One team membership.
pub fn team_member(value: &Value) -> Result<(i64, UserId), Unreadable> {
    let w: WireTeamMember = decode(value, "MEMBER_USER_ID")?;
    Ok((w.team_id, user_id(w.member_user_id)))
}

// ── writing ──────────────────────────────────────────────────────────────────────────────

fn refused(message: impl Into<String>) -> CrmError {
    CrmError::Refused(message.into())
}

fn nullable(s: &str) -> Value {
    if s.trim().is_empty() {
        Value::Null
    } else {
        Value::String(s.trim().to_owned())
    }
}

fn numeric_id(id: &CrmId) -> Result<i64, CrmError> {
    id.as_str()
        .parse()
        .map_err(|_| CrmError::Invalid(format!("{id} is not an Insightly record id")))
}

fn phone_slot(label: &str) -> Option<usize> {
    match label.trim().to_ascii_lowercase().as_str() {
        "work" | "main" | "" => Some(0),
        "mobile" | "workmobile" | "cell" => Some(1),
        "home" => Some(2),
        "other" => Some(3),
        "assistant" => Some(4),
        "fax" | "workfax" | "homefax" | "otherfax" => Some(5),
        _ => None,
    }
}

/// The `PUT /Contacts` body setting `fields` (whitelisted) of the merged contact.
pub fn contact_body(merged: &Contact, fields: &Map<String, Value>) -> Result<Value, CrmError> {
    let mut body = Map::new();
    body.insert("CONTACT_ID".into(), json!(numeric_id(&merged.id)?));
    for field in fields.keys() {
        match field.as_str() {
            "first_name" => {
                body.insert("FIRST_NAME".into(), nullable(&merged.first_name));
            }
            "last_name" => {
                body.insert("LAST_NAME".into(), nullable(&merged.last_name));
            }
            "title" => {
                body.insert("TITLE".into(), nullable(&merged.title));
            }
            "notes" => {
                body.insert("BACKGROUND".into(), nullable(&merged.notes));
            }
            "emails" => {
                if merged.emails.len() > 1 {
                    return Err(refused(format!(
                        "an Insightly contact holds one e-mail address, the phone has {}",
                        merged.emails.len()
                    )));
                }
                let address = merged
                    .emails
                    .first()
                    .map(|e| e.address.as_str())
                    .unwrap_or("");
                body.insert("EMAIL_ADDRESS".into(), nullable(address));
            }
            "phones" => {
                let mut slots: [Option<&str>; 6] = [None; 6];
                let mut unplaced = Vec::new();
                for p in &merged.phones {
                    match phone_slot(&p.label) {
                        Some(i) if slots[i].is_none() => slots[i] = Some(&p.number),
                        _ => unplaced.push(p),
                    }
                }
                for p in unplaced {
                    // An unknown label, or a second number of one kind: the work or the
                    // other slot if free, else there is no room for it.
                    match [0, 3].into_iter().find(|&i| slots[i].is_none()) {
                        Some(i) => slots[i] = Some(&p.number),
                        None => {
                            return Err(refused(format!(
                                "no free Insightly phone field for {:?} ({})",
                                p.number, p.label
                            )))
                        }
                    }
                }
                for (i, (name, _)) in PHONE_SLOTS.iter().enumerate() {
                    body.insert((*name).into(), nullable(slots[i].unwrap_or("")));
                }
            }
            "addresses" => {
                let mut slots: [Option<&PostalAddress>; 2] = [None, None];
                for a in &merged.addresses {
                    let wanted = if a.label.trim().eq_ignore_ascii_case("other") {
                        1
                    } else {
                        0
                    };
                    let free = [wanted, 1 - wanted]
                        .into_iter()
                        .find(|&i| slots[i].is_none());
                    match free {
                        Some(i) => slots[i] = Some(a),
                        None => {
                            return Err(refused(
                                "an Insightly contact holds two addresses, the phone has more",
                            ))
                        }
                    }
                }
                for (i, (prefix, _)) in ADDRESS_SLOTS.iter().enumerate() {
                    let a = slots[i];
                    let part = |f: fn(&PostalAddress) -> &str| nullable(a.map(f).unwrap_or(""));
                    body.insert(format!("{prefix}_STREET"), part(|a| &a.street));
                    body.insert(format!("{prefix}_CITY"), part(|a| &a.city));
                    body.insert(format!("{prefix}_STATE"), part(|a| &a.region));
                    body.insert(format!("{prefix}_POSTCODE"), part(|a| &a.postal_code));
                    body.insert(format!("{prefix}_COUNTRY"), part(|a| &a.country));
                }
            }
            other => {
                return Err(refused(format!(
                    "field {other:?} of a contact cannot be written to Insightly"
                )))
            }
        }
    }
    Ok(Value::Object(body))
}

/// The UTC start and end Insightly stores for an event (all-day: midnights, end exclusive).
fn utc_times(e: &Event) -> Result<(String, String), CrmError> {
    match (e.start, e.end) {
        (EventTime::Date(s), EventTime::Date(x)) => Ok((
            format_utc(&s.and_time(NaiveTime::MIN)),
            format_utc(&x.and_time(NaiveTime::MIN)),
        )),
        (EventTime::DateTime(s), EventTime::DateTime(x)) => {
            let zone = crate::model::normalize::time_zone(&e.time_zone)
                .map_err(|err| CrmError::Invalid(err.to_string()))?;
            let to_utc = |local: chrono::NaiveDateTime| {
                local
                    .and_local_timezone(zone)
                    .earliest()
                    .map(|t| t.naive_utc())
                    .ok_or_else(|| {
                        CrmError::Invalid(format!(
                            "{local} does not exist in {} (a DST gap)",
                            e.time_zone
                        ))
                    })
            };
            Ok((format_utc(&to_utc(s)?), format_utc(&to_utc(x)?)))
        }
        _ => Err(CrmError::Invalid(
            "start and end must both be dates or both be date-times".into(),
        )),
    }
}

/// The `PUT /Events` body setting `fields` (whitelisted) of the merged event.
pub fn event_body(merged: &Event, fields: &Map<String, Value>) -> Result<Value, CrmError> {
    let mut body = Map::new();
    body.insert("EVENT_ID".into(), json!(numeric_id(&merged.id)?));
    let mut times = false;
    for field in fields.keys() {
        match field.as_str() {
            "title" => {
                body.insert("TITLE".into(), Value::String(merged.title.clone()));
            }
            "description" => {
                body.insert("DETAILS".into(), nullable(&merged.description));
            }
            "location" => {
                body.insert("LOCATION".into(), nullable(&merged.location));
            }
            "start" | "end" | "time_zone" | "all_day" => times = true,
            "recurrence" => {
                if !merged.recurrence.is_empty() {
                    return Err(refused(
                        "Insightly events have no recurrence; a repeating event cannot be written",
                    ));
                }
            }
            other => {
                return Err(refused(format!(
                    "field {other:?} of an event cannot be written to Insightly"
                )))
            }
        }
    }
    if times {
        let (start, end) = utc_times(merged)?;
        body.insert("START_DATE_UTC".into(), Value::String(start));
        body.insert("END_DATE_UTC".into(), Value::String(end));
        body.insert("ALL_DAY".into(), Value::Bool(merged.all_day));
    }
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact_json() -> Value {
        json!({
            "CONTACT_ID": 12, "FIRST_NAME": " Ada ", "LAST_NAME": "Lovelace", "TITLE": "CTO",
            "OWNER_USER_ID": 101, "ORGANISATION_ID": 7, "EMAIL_ADDRESS": "ADA@Globex.example",
            "PHONE": "+44 20 7946 0000", "PHONE_MOBILE": "+44 7700 900123", "PHONE_FAX": "",
            "ADDRESS_MAIL_STREET": "1 Main St", "ADDRESS_MAIL_CITY": "London",
            "ADDRESS_MAIL_COUNTRY": "GB", "BACKGROUND": "Met at the expo.",
            "DATE_UPDATED_UTC": "2026-11-01 10:00:00", "VISIBLE_TO": "INDIVIDUALS",
            "VISIBLE_USER_IDS": "102, 101", "TAGS": [{"TAG_NAME": "vip"}]
        })
    }

    #[test]
    fn a_contact_maps_field_by_field() {
        let c = contact(&contact_json()).unwrap();
        assert_eq!(c.id.as_str(), "12");
        assert_eq!(c.owner.as_str(), "101");
        assert_eq!(c.first_name, "Ada");
        assert_eq!(c.organization.as_ref().unwrap().as_str(), "7");
        assert_eq!(c.emails[0].address, "ada@globex.example");
        assert_eq!(c.phones.len(), 2);
        assert_eq!(c.phones[1].label, "mobile");
        assert_eq!(c.addresses.len(), 1);
        assert_eq!(c.tags, vec!["vip"]);
        assert_eq!(
            c.visibility,
            Some(Visibility::Users(vec![
                UserId::new("101").unwrap(),
                UserId::new("102").unwrap()
            ]))
        );
        assert!(c.updated_at.is_some());
    }

    #[test]
    fn bad_records_say_what_is_wrong() {
        let mut v = contact_json();
        v["VISIBLE_TO"] = json!("FRIENDS");
        let err = contact(&v).unwrap_err();
        assert_eq!(err.id, "12");
        assert!(err.error.contains("FRIENDS"), "{err:?}");
        v["VISIBLE_TO"] = json!("TEAM");
        assert!(contact(&v).unwrap_err().error.contains("VISIBLE_TEAM_ID"));
        v["VISIBLE_TO"] = json!("everyone");
        v["EMAIL_ADDRESS"] = json!("not an address");
        assert!(contact(&v).unwrap_err().error.contains("emails[0]"));
        assert_eq!(contact(&json!({"CONTACT_ID": "x"})).unwrap_err().id, "x");
        assert_eq!(contact(&json!({})).unwrap_err().id, "?");
    }

    #[test]
    fn events_keep_utc_times_links_and_all_day_dates() {
        let e = event(&json!({
            "EVENT_ID": 5, "TITLE": "Review", "START_DATE_UTC": "2026-12-01 15:00:00",
            "END_DATE_UTC": "2026-12-01 16:00:00", "ALL_DAY": false, "OWNER_USER_ID": 101,
            "LINKS": [
                {"OBJECT_NAME": "Event", "OBJECT_ID": 5, "LINK_OBJECT_NAME": "Contact", "LINK_OBJECT_ID": 12},
                {"OBJECT_NAME": "Organisation", "OBJECT_ID": 7, "LINK_OBJECT_NAME": "Event", "LINK_OBJECT_ID": 5},
                {"OBJECT_NAME": "Event", "OBJECT_ID": 5, "LINK_OBJECT_NAME": "Opportunity", "LINK_OBJECT_ID": 9}
            ]
        }))
        .unwrap();
        assert_eq!(e.time_zone, "UTC");
        assert_eq!(e.links.len(), 2);
        let day = |s: &str, x: &str| {
            event(&json!({"EVENT_ID": 6, "TITLE": "Off", "ALL_DAY": true,
                          "START_DATE_UTC": s, "END_DATE_UTC": x}))
            .unwrap()
        };
        let one = day("2026-12-01 00:00:00", "2026-12-01 00:00:00");
        assert_eq!(one.end, EventTime::Date("2026-12-02".parse().unwrap()));
        let exclusive = day("2026-12-01 00:00:00", "2026-12-03 00:00:00");
        assert_eq!(
            exclusive.end,
            EventTime::Date("2026-12-03".parse().unwrap())
        );
        let inclusive = day("2026-12-01 00:00:00", "2026-12-03 23:59:00");
        assert_eq!(
            inclusive.end,
            EventTime::Date("2026-12-04".parse().unwrap())
        );
        let backwards = event(&json!({"EVENT_ID": 7, "TITLE": "x",
            "START_DATE_UTC": "2026-12-01 16:00:00", "END_DATE_UTC": "2026-12-01 15:00:00"}));
        assert!(backwards.unwrap_err().error.contains("end"));
    }

    #[test]
    fn users_follow_the_mode_and_the_account_rule() {
        let v = json!({"USER_ID": 101, "FIRST_NAME": "Erin", "LAST_NAME": "East",
                       "EMAIL_ADDRESS": "Erin@Acme.example", "ADMINISTRATOR": false,
                       "ACTIVE": true, "PROFILE_ID": 5, "ROLE_ID": 3});
        let mut rules = UserRules {
            google_account: GoogleAccountRule::Email,
            google_accounts: BTreeMap::new(),
            delegated_default: false,
        };
        let u = user(&v, &rules).unwrap();
        assert_eq!(u.profile.unwrap().as_str(), "5");
        assert_eq!(u.role.unwrap().as_str(), "3");
        assert_eq!(u.google_account.as_deref(), Some("erin@acme.example"));
        rules.delegated_default = true;
        rules.google_account = GoogleAccountRule::None;
        let u = user(&v, &rules).unwrap();
        assert_eq!(u.profile.unwrap().as_str(), DELEGATED_PROFILE);
        assert!(u.role.is_none() && u.google_account.is_none());
        rules
            .google_accounts
            .insert("101".into(), "e@gmail.example".into());
        assert_eq!(
            user(&v, &rules).unwrap().google_account.as_deref(),
            Some("e@gmail.example")
        );
        let inactive = user(&json!({"USER_ID": 9, "EMAIL_ADDRESS": "x@y.z"}), &rules).unwrap();
        assert!(!inactive.active, "fail-closed without ACTIVE");
    }

    #[test]
    fn write_bodies_carry_the_id_and_only_the_fields_asked() {
        let c = contact(&contact_json()).unwrap();
        let fields: Map<String, Value> =
            serde_json::from_value(json!({"title": "CEO", "phones": []})).unwrap();
        let body = contact_body(&c, &fields).unwrap();
        assert_eq!(body["CONTACT_ID"], 12);
        assert_eq!(body["TITLE"], "CTO", "the merged value");
        assert_eq!(body["PHONE_MOBILE"], c.phones[1].number.as_str());
        assert!(body.get("FIRST_NAME").is_none());
        let mut two = c.clone();
        two.emails.push(two.emails[0].clone());
        let fields: Map<String, Value> = serde_json::from_value(json!({"emails": []})).unwrap();
        assert!(matches!(
            contact_body(&two, &fields),
            Err(CrmError::Refused(_))
        ));

        let mut e = event(&json!({"EVENT_ID": 5, "TITLE": "Review",
            "START_DATE_UTC": "2026-07-01 15:00:00", "END_DATE_UTC": "2026-07-01 16:00:00"}))
        .unwrap();
        e.time_zone = "Europe/London".into();
        let fields: Map<String, Value> = serde_json::from_value(json!({"start": 1})).unwrap();
        let body = event_body(&e, &fields).unwrap();
        assert_eq!(
            body["START_DATE_UTC"], "2026-07-01 14:00:00",
            "BST is UTC+1"
        );
        e.recurrence = vec!["RRULE:FREQ=DAILY".into()];
        let fields: Map<String, Value> = serde_json::from_value(json!({"recurrence": 1})).unwrap();
        assert!(matches!(event_body(&e, &fields), Err(CrmError::Refused(_))));
    }
}
