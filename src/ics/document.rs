//! One user's events as an iCalendar document (RFC 5545), built with the `icalendar` crate.
//!
//! What each `VEVENT` carries, and why:
//!
//! - `UID`: a hash of (user, record) — stable across renders, so a calendar app updates the
//!   entry instead of adding a second one; different per user, so two feeds in one app never
//!   share a UID.
//! - `DTSTART`/`DTEND`: local date-times with `TZID=<IANA zone>` (and a `VTIMEZONE` for
//!   every zone used, see [`super::vtimezone`]), so a weekly 09:00 meeting stays at 09:00
//!   across DST; all-day events as `VALUE=DATE` with the exclusive end date.
//! - `RRULE`/`EXRULE`/`RDATE`/`EXDATE`: the CRM's recurrence lines as they are.
//! - `DTSTAMP` = `LAST-MODIFIED`: when crmsync's mirror took in the event's current
//!   version. The document has no `METHOD`, so `DTSTAMP` means "last revised in the calendar
//!   store" (RFC 5545 §3.8.7.2) — and a render-time value would change the ETag on every
//!   request. `SEQUENCE`: the event's version in the CRM's change feed (only ever grows).
//! - `DESCRIPTION`: the event's description and, like the Google mapping, the attendee block
//!   (`Attendees (from the CRM):` and `- Name <email>` lines) of the users and readable
//!   contacts. There are no `ATTENDEE` or `ORGANIZER` properties: with them, mail and
//!   calendar clients offer to reply to or e-mail the attendees (iTIP), which would contact
//!   customers on the CRM's behalf — DESIGN §5 "events never invite anyone".
//!
//! Content lines are folded at 75 octets, never next to white space: the `icalendar` writer
//! folds at the limit wherever it falls, and parsers that trim a folded segment's trailing
//! white space (the `ical` crate does) would lose a space of the text there.
//!
//! The document has no `METHOD` and no time-dependent content: the same mirror state, scope
//! and hour render byte-identical documents (the feed's ETag relies on it).

use super::vtimezone::vtimezone;
use crate::google::mapping::compose_description;
use crate::model::{normalize, CrmId, EventTime, SyncedEvent, UserId};
use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use icalendar::{CalendarDateTime, Component, EventLike, Property};
use std::collections::BTreeMap;

/// One event of a feed: the record, its synced form as the feed's user sees it (attendees
/// already filtered), and its revision marks.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub record: CrmId,
    pub data: SyncedEvent,
    /// The record's version in the CRM change feed.
    pub sequence: u32,
    /// When the mirror took in this version.
    pub modified: DateTime<Utc>,
}

/// Calendar-level settings of a document.
#[derive(Debug, Clone, Copy)]
pub struct DocumentMeta<'a> {
    /// The calendar's display name (`NAME`, `X-WR-CALNAME`).
    pub name: &'a str,
    /// How often clients should re-fetch (`REFRESH-INTERVAL`, `X-PUBLISHED-TTL`).
    pub refresh_minutes: u32,
    /// Time zones are described exactly through the end of this instant's year.
    pub horizon: DateTime<Utc>,
}

/// The stable UID of `record` in `user`'s feed.
pub fn event_uid(user: &UserId, record: &CrmId) -> String {
    let input = format!("ics\u{0}{user}\u{0}{record}");
    let digest = ring::digest::digest(&ring::digest::SHA256, input.as_bytes());
    let tail = data_encoding::BASE32HEX_NOPAD
        .encode(&digest.as_ref()[..20])
        .to_ascii_lowercase();
    format!("{tail}@crmsync")
}

/// TEXT values: line breaks as `\n` (the crate escapes them), no other control characters
/// (a bare CR would break the content line).
fn clean_text(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// A recurrence line (`NAME[;PARAM=VALUE…]:VALUE`) as a property, or `None` when it does not
/// have that shape.
fn recurrence_property(line: &str) -> Option<Property> {
    let mut in_quotes = false;
    let colon = line.char_indices().find_map(|(i, c)| {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        (c == ':' && !in_quotes).then_some(i)
    })?;
    let (head, value) = (&line[..colon], &line[colon + 1..]);
    let mut parts = head.split(';');
    let name = parts.next()?.trim().to_ascii_uppercase();
    if name.is_empty() || value.trim().is_empty() {
        return None;
    }
    let mut property = Property::new(name, value.trim());
    for part in parts {
        let (key, val) = part.split_once('=')?;
        let val = val.trim().trim_matches('"');
        property.add_parameter(&key.trim().to_ascii_uppercase(), val);
    }
    Some(property)
}

/// Zones named by `TZID` parameters of recurrence lines.
fn tzids(properties: &[Property]) -> impl Iterator<Item = &str> {
    properties
        .iter()
        .filter_map(|p| p.params().get("TZID").map(|t| t.value()))
}

/// The zones a document uses, by name, with the first year each must cover.
type ZonesUsed = BTreeMap<&'static str, (Tz, i32)>;

fn event_component(user: &UserId, event: &FeedEvent, zones: &mut ZonesUsed) -> String {
    let v = &event.data;
    let mut e = icalendar::Event::new();
    e.uid(&event_uid(user, &event.record))
        .timestamp(event.modified)
        .last_modified(event.modified)
        .sequence(event.sequence)
        .summary(&clean_text(&v.title));
    if !v.location.is_empty() {
        e.location(&clean_text(&v.location));
    }
    let description = compose_description(&v.description, &v.attendees);
    if !description.is_empty() {
        e.description(&clean_text(&description));
    }
    let zone = normalize::time_zone(&v.time_zone).ok();
    let mut use_zone = |zone: Tz, year: i32| {
        let (_, first) = zones.entry(zone.name()).or_insert((zone, year));
        *first = (*first).min(year);
    };
    let start_year = match v.start {
        EventTime::DateTime(t) => t.year(),
        EventTime::Date(d) => d.year(),
    };
    for (time, key) in [(v.start, "DTSTART"), (v.end, "DTEND")] {
        let property = match (time, zone) {
            (EventTime::Date(date), _) => icalendar::DatePerhapsTime::from(date).to_property(key),
            (EventTime::DateTime(local), Some(zone)) => {
                use_zone(zone, start_year);
                icalendar::DatePerhapsTime::from(CalendarDateTime::WithTimezone {
                    date_time: local,
                    tzid: zone.name().to_owned(),
                })
                .to_property(key)
            }
            // The CRM validates zones; a value that is not one is read as UTC, as the
            // Google mapping would refuse it.
            (EventTime::DateTime(local), None) => {
                icalendar::DatePerhapsTime::from(CalendarDateTime::Utc(local.and_utc()))
                    .to_property(key)
            }
        };
        e.append_property(property);
    }
    let lines: Vec<Property> = v
        .recurrence
        .iter()
        .filter_map(|l| recurrence_property(l))
        .collect();
    for name in tzids(&lines) {
        if let Ok(zone) = normalize::time_zone(name) {
            use_zone(zone, start_year);
        }
    }
    for property in lines {
        let known_zone = property
            .params()
            .get("TZID")
            .is_none_or(|t| normalize::time_zone(t.value()).is_ok());
        if known_zone {
            e.append_multi_property(property);
        } else {
            tracing::warn!(record = %event.record, "ics: recurrence line names an unknown zone; left out");
        }
    }
    e.try_into_string().unwrap_or_default()
}

fn line(property: Property) -> String {
    property.try_into().unwrap_or_default()
}

/// The longest content line, in octets, without its CRLF (RFC 5545 §3.1).
const LINE_LIMIT: usize = 75;

/// Re-folds CRLF-terminated content lines (as `icalendar` folded them) so that no fold
/// falls next to white space, where that is possible within the second half of the limit.
fn refold(text: &str) -> String {
    let unfolded = text.replace("\r\n ", "");
    let mut out = String::with_capacity(unfolded.len() + unfolded.len() / LINE_LIMIT * 3);
    for line in unfolded.split_terminator("\r\n") {
        let mut rest = line;
        // A continuation line starts with the space that marks it.
        let mut limit = LINE_LIMIT;
        while rest.len() > limit {
            let mut cut = limit;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let at_white = |i: usize| {
                rest[..i].ends_with(char::is_whitespace)
                    || rest[i..].starts_with(char::is_whitespace)
            };
            let mut candidate = cut;
            while candidate > limit / 2 && at_white(candidate) {
                candidate -= 1;
                while !rest.is_char_boundary(candidate) {
                    candidate -= 1;
                }
            }
            if !at_white(candidate) {
                cut = candidate;
            }
            out.push_str(&rest[..cut]);
            out.push_str("\r\n ");
            rest = &rest[cut..];
            limit = LINE_LIMIT - 1;
        }
        out.push_str(rest);
        out.push_str("\r\n");
    }
    out
}

/// The iCalendar document of `user`'s `events` (in the given order).
pub fn render_document(user: &UserId, events: &[FeedEvent], meta: &DocumentMeta<'_>) -> String {
    let mut zones = ZonesUsed::new();
    let components: Vec<String> = events
        .iter()
        .map(|e| event_component(user, e, &mut zones))
        .collect();
    let last_year = events
        .iter()
        .map(|e| match e.data.end {
            EventTime::DateTime(t) => t.year(),
            EventTime::Date(d) => d.year(),
        })
        .chain([meta.horizon.year()])
        .max()
        .unwrap_or(meta.horizon.year());
    let refresh = format!("PT{}M", meta.refresh_minutes);
    let mut text = String::from("BEGIN:VCALENDAR\r\n");
    for property in [
        Property::new("VERSION", "2.0"),
        Property::new("PRODID", "-//crmsync//ICS feed//EN"),
        Property::new("CALSCALE", "GREGORIAN"),
        Property::new("NAME", clean_text(meta.name)),
        Property::new("X-WR-CALNAME", clean_text(meta.name)),
        Property::new("REFRESH-INTERVAL", refresh.as_str())
            .add_parameter("VALUE", "DURATION")
            .done(),
        Property::new("X-PUBLISHED-TTL", refresh.as_str()),
    ] {
        text.push_str(&line(property));
    }
    for (zone, first_year) in zones.values() {
        text.push_str(&vtimezone(*zone, *first_year, last_year));
    }
    for component in components {
        text.push_str(&component);
    }
    text.push_str("END:VCALENDAR\r\n");
    refold(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttendeeLine;
    use chrono::{NaiveDate, TimeZone};

    fn event(id: &str, start: EventTime, end: EventTime, zone: &str) -> FeedEvent {
        FeedEvent {
            record: CrmId::new(id).unwrap(),
            data: SyncedEvent {
                title: "Review; Q4, all".into(),
                description: "Line one\r\nline two".into(),
                location: String::new(),
                start,
                end,
                time_zone: zone.into(),
                all_day: matches!(start, EventTime::Date(_)),
                recurrence: Vec::new(),
                attendees: vec![AttendeeLine {
                    name: "Ada Lovelace".into(),
                    email: "ada@globex.example".into(),
                }],
            },
            sequence: 7,
            modified: Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap(),
        }
    }

    fn meta() -> DocumentMeta<'static> {
        DocumentMeta {
            name: "CRM",
            refresh_minutes: 60,
            horizon: Utc.with_ymd_and_hms(2027, 11, 1, 0, 0, 0).unwrap(),
        }
    }

    fn local(y: i32, m: u32, d: u32, h: u32) -> EventTime {
        EventTime::DateTime(
            NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(h, 0, 0)
                .unwrap(),
        )
    }

    #[test]
    fn folds_never_touch_white_space_and_keep_characters_whole() {
        let long = format!(
            "DESCRIPTION:{}",
            "Ada Lovelace <ada@globex.example> and Émile Zoë 🎉 met ".repeat(6)
        );
        let folded = refold(&format!("BEGIN:VEVENT\r\n{long}\r\nEND:VEVENT\r\n"));
        assert_eq!(
            folded.replace("\r\n ", ""),
            format!("BEGIN:VEVENT\r\n{long}\r\nEND:VEVENT\r\n")
        );
        for (i, physical) in folded.split("\r\n").enumerate() {
            assert!(
                physical.len() <= LINE_LIMIT,
                "line {i} is {} octets",
                physical.len()
            );
            if let Some(continued) = physical.strip_prefix(' ') {
                assert!(!continued.starts_with(char::is_whitespace), "{physical:?}");
            }
        }
        let physical: Vec<&str> = folded.split("\r\n").collect();
        for pair in physical.windows(2) {
            if pair[1].starts_with(' ') {
                assert!(!pair[0].ends_with(char::is_whitespace), "{:?}", pair[0]);
            }
        }
        assert!(
            folded.matches("\r\n ").count() >= 4,
            "the test line was folded: {folded}"
        );
    }

    #[test]
    fn uids_are_stable_and_differ_per_user_and_record() {
        let (erin, frank) = (UserId::new("erin").unwrap(), UserId::new("frank").unwrap());
        let e1 = CrmId::new("e1").unwrap();
        assert_eq!(event_uid(&erin, &e1), event_uid(&erin, &e1));
        assert_ne!(event_uid(&erin, &e1), event_uid(&frank, &e1));
        assert_ne!(
            event_uid(&erin, &e1),
            event_uid(&erin, &CrmId::new("e2").unwrap())
        );
    }

    #[test]
    fn a_document_is_deterministic_and_escapes_text() {
        let user = UserId::new("erin").unwrap();
        let events = [event(
            "e1",
            local(2026, 12, 1, 15),
            local(2026, 12, 1, 16),
            "Europe/London",
        )];
        let a = render_document(&user, &events, &meta());
        let b = render_document(&user, &events, &meta());
        assert_eq!(a, b);
        assert!(a.contains("SUMMARY:Review\\; Q4\\, all\r\n"), "{a}");
        assert!(
            a.contains("DTSTART;TZID=Europe/London:20261201T150000\r\n"),
            "{a}"
        );
        assert!(
            a.contains("BEGIN:VTIMEZONE\r\nTZID:Europe/London\r\n"),
            "{a}"
        );
        assert!(a.contains("SEQUENCE:7\r\n"), "{a}");
        assert!(a.contains("DTSTAMP:20261101T100000Z\r\n"), "{a}");
        assert!(!a.contains('\r') || !a.replace("\r\n", "").contains('\r'));
        assert!(!a.contains("ATTENDEE"), "{a}");
        assert!(!a.contains("METHOD"), "{a}");
    }

    #[test]
    fn all_day_events_are_dates_without_zones() {
        let user = UserId::new("erin").unwrap();
        let day = |d| EventTime::Date(NaiveDate::from_ymd_opt(2026, 12, d).unwrap());
        let text = render_document(
            &user,
            &[event("e1", day(24), day(27), "Europe/Berlin")],
            &meta(),
        );
        assert!(text.contains("DTSTART;VALUE=DATE:20261224\r\n"), "{text}");
        assert!(text.contains("DTEND;VALUE=DATE:20261227\r\n"), "{text}");
        assert!(!text.contains("VTIMEZONE"), "{text}");
    }

    #[test]
    fn recurrence_lines_keep_their_parameters_and_bring_their_zones() {
        let user = UserId::new("erin").unwrap();
        let mut e = event(
            "e1",
            local(2026, 12, 1, 15),
            local(2026, 12, 1, 16),
            "Europe/London",
        );
        e.data.recurrence = vec![
            "RRULE:FREQ=WEEKLY;COUNT=10".into(),
            "EXDATE;TZID=America/New_York:20261208T100000".into(),
            "EXDATE;TZID=Mars/Olympus:20261215T150000".into(),
        ];
        let text = render_document(&user, &[e], &meta());
        assert!(text.contains("RRULE:FREQ=WEEKLY;COUNT=10\r\n"), "{text}");
        assert!(
            text.contains("EXDATE;TZID=America/New_York:20261208T100000\r\n"),
            "{text}"
        );
        assert!(text.contains("TZID:America/New_York\r\n"), "{text}");
        assert!(
            !text.contains("Mars"),
            "an unknown zone is left out: {text}"
        );
    }
}
