//! Event timing for the sync window: when an event (or each occurrence of a recurring
//! series) happens, in UTC, so "does this event overlap the window" is a cheap question.
//!
//! Timings are computed once per event when the access index is built. A non-recurring
//! event is one interval; a finite series (every RRULE has COUNT or UNTIL, at most
//! [`MAX_LISTED_OCCURRENCES`] occurrences) keeps its sorted occurrence starts; an unbounded
//! series is checked against the window with the recurrence rules when asked.

use crate::model::{Event, EventTime};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Finite series longer than this are treated as unbounded (checked on demand).
pub const MAX_LISTED_OCCURRENCES: usize = 2_000;

/// A time window `[start, end)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// `days_past` days before `now` to `days_future` days after it.
    pub fn around(now: DateTime<Utc>, days_past: u32, days_future: u32) -> Self {
        Self {
            start: now - Duration::days(i64::from(days_past)),
            end: now + Duration::days(i64::from(days_future)),
        }
    }
}

/// Which occurrences an event has.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Occurrences {
    /// Not recurring: one occurrence at `start`.
    Single,
    /// A finite series: every occurrence start (unix seconds), ascending.
    Listed(Box<[i64]>),
    /// An unbounded or very long series: checked with the rules on demand.
    Unbounded,
    /// The recurrence could not be read: only the first occurrence is known.
    Unreadable,
}

/// When an event happens, in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTiming {
    /// First occurrence start, unix seconds.
    start: i64,
    /// Length of one occurrence in seconds.
    duration: i64,
    occurrences: Occurrences,
}

fn zone_of(event: &Event) -> Tz {
    event.time_zone.parse::<Tz>().unwrap_or(Tz::UTC)
}

/// A local wall-clock time in `zone` as UTC: the earlier instant when ambiguous, the
/// instant an hour later when it falls into a DST gap.
fn local_to_utc(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    if let Some(t) = zone.from_local_datetime(&local).earliest() {
        return t.with_timezone(&Utc);
    }
    let later = local + Duration::hours(1);
    zone.from_local_datetime(&later)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&local))
}

fn midnight(date: NaiveDate) -> NaiveDateTime {
    date.and_time(chrono::NaiveTime::MIN)
}

fn instant(zone: Tz, time: EventTime) -> DateTime<Utc> {
    match time {
        EventTime::DateTime(dt) => local_to_utc(zone, dt),
        EventTime::Date(d) => local_to_utc(zone, midnight(d)),
    }
}

fn rule_set(event: &Event, zone: Tz) -> Option<rrule::RRuleSet> {
    let dtstart = match event.start {
        EventTime::DateTime(dt) => format!(
            "DTSTART;TZID={}:{}",
            zone.name(),
            dt.format("%Y%m%dT%H%M%S")
        ),
        EventTime::Date(d) => format!("DTSTART;VALUE=DATE:{}", d.format("%Y%m%d")),
    };
    let text = std::iter::once(dtstart)
        .chain(event.recurrence.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    text.parse::<rrule::RRuleSet>().ok()
}

/// Whether every RRULE line ends (COUNT or UNTIL): only then is the series finite.
fn every_rule_ends(lines: &[String]) -> bool {
    lines
        .iter()
        .filter(|l| l.to_ascii_uppercase().starts_with("RRULE"))
        .all(|l| {
            let upper = l.to_ascii_uppercase();
            upper.contains("COUNT=") || upper.contains("UNTIL=")
        })
}

impl EventTiming {
    /// The timing of `event` (its zone, all-day dates and recurrence taken into account).
    pub fn of(event: &Event) -> Self {
        let zone = zone_of(event);
        let start = instant(zone, event.start);
        let end = instant(zone, event.end);
        let duration = (end - start).num_seconds().max(1);
        let occurrences = if event.recurrence.is_empty() {
            Occurrences::Single
        } else if !every_rule_ends(&event.recurrence) {
            Occurrences::Unbounded
        } else {
            match rule_set(event, zone) {
                None => Occurrences::Unreadable,
                Some(set) => {
                    let mut starts: Vec<i64> = (&set.limit())
                        .into_iter()
                        .take(MAX_LISTED_OCCURRENCES + 1)
                        .map(|t| t.timestamp())
                        .collect();
                    if starts.len() > MAX_LISTED_OCCURRENCES {
                        Occurrences::Unbounded
                    } else if starts.is_empty() {
                        Occurrences::Single
                    } else {
                        starts.sort_unstable();
                        starts.dedup();
                        Occurrences::Listed(starts.into_boxed_slice())
                    }
                }
            }
        };
        Self {
            start: start.timestamp(),
            duration,
            occurrences,
        }
    }

    /// Whether any occurrence of `event` (whose timing this is) overlaps `window`.
    pub fn overlaps(&self, event: &Event, window: &Window) -> bool {
        self.overlaps_with(window, || Some(event))
    }

    /// [`overlaps`](Self::overlaps), fetching the event only when its rules must be read
    /// (unbounded series).
    pub fn overlaps_with<'e>(
        &self,
        window: &Window,
        event: impl FnOnce() -> Option<&'e Event>,
    ) -> bool {
        let ws = window.start.timestamp();
        let we = window.end.timestamp();
        let single = |start: i64| start < we && start + self.duration > ws;
        match &self.occurrences {
            Occurrences::Single | Occurrences::Unreadable => single(self.start),
            Occurrences::Listed(starts) => {
                // The first occurrence that has not ended by the window's start.
                let first = starts.partition_point(|s| s + self.duration <= ws);
                starts.get(first).is_some_and(|s| *s < we)
            }
            Occurrences::Unbounded => {
                if self.start >= we {
                    return false;
                }
                let Some(event) = event() else {
                    return single(self.start);
                };
                let zone = zone_of(event);
                let Some(set) = rule_set(event, zone) else {
                    return single(self.start);
                };
                let Some(after) = DateTime::from_timestamp(ws - self.duration, 0)
                    .map(|t| t.with_timezone(&rrule::Tz::UTC))
                else {
                    return false;
                };
                let Some(before) =
                    DateTime::from_timestamp(we, 0).map(|t| t.with_timezone(&rrule::Tz::UTC))
                else {
                    return false;
                };
                set.after(after)
                    .before(before)
                    .all(2)
                    .dates
                    .iter()
                    .any(|t| single(t.timestamp()))
            }
        }
    }

    /// The first occurrence's start (UTC).
    pub fn first_start(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.start, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CrmId, UserId};

    fn event(start: &str, end: &str, zone: &str, recurrence: &[&str]) -> Event {
        let parse =
            |s: &str| -> EventTime { serde_json::from_value(serde_json::json!(s)).unwrap() };
        Event {
            id: CrmId::new("e").unwrap(),
            owner: UserId::new("u").unwrap(),
            assignees: vec![],
            visibility: None,
            title: "t".into(),
            description: String::new(),
            location: String::new(),
            start: parse(start),
            end: parse(end),
            time_zone: zone.into(),
            all_day: start.len() == 10,
            recurrence: recurrence.iter().map(|s| s.to_string()).collect(),
            attendees: vec![],
            links: vec![],
            updated_at: None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn window(now: &str, past: u32, future: u32) -> Window {
        Window::around(at(now), past, future)
    }

    #[test]
    fn single_events_overlap_by_interval_in_their_zone() {
        // 15:00 London in December is 15:00 UTC; in New York it is 20:00 UTC.
        let e = event(
            "2026-12-01T15:00:00",
            "2026-12-01T16:00:00",
            "Europe/London",
            &[],
        );
        let t = EventTiming::of(&e);
        assert!(t.overlaps(&e, &window("2026-11-20T00:00:00Z", 0, 30)));
        assert!(!t.overlaps(&e, &window("2026-11-20T00:00:00Z", 0, 5)));
        let w = Window {
            start: at("2026-12-01T15:59:00Z"),
            end: at("2026-12-01T17:00:00Z"),
        };
        assert!(t.overlaps(&e, &w));
        let ny = event(
            "2026-12-01T15:00:00",
            "2026-12-01T16:00:00",
            "America/New_York",
            &[],
        );
        let w = Window {
            start: at("2026-12-01T15:30:00Z"),
            end: at("2026-12-01T16:30:00Z"),
        };
        assert!(!EventTiming::of(&ny).overlaps(&ny, &w));
        assert!(EventTiming::of(&e).overlaps(&e, &w));
    }

    #[test]
    fn local_times_in_dst_transitions_resolve() {
        let zone: Tz = "Europe/London".parse().unwrap();
        let local = |s: &str| s.parse::<NaiveDateTime>().unwrap();
        // 01:30 on 29 March 2026 does not exist in London: read as an hour later (BST).
        assert_eq!(
            local_to_utc(zone, local("2026-03-29T01:30:00")),
            at("2026-03-29T01:30:00Z")
        );
        // 01:30 on 25 October 2026 happens twice: the earlier (BST) instant.
        assert_eq!(
            local_to_utc(zone, local("2026-10-25T01:30:00")),
            at("2026-10-25T00:30:00Z")
        );
    }

    #[test]
    fn all_day_events_cover_their_dates() {
        let e = event("2026-12-01", "2026-12-03", "UTC", &[]);
        let t = EventTiming::of(&e);
        let day = |d: &str| Window {
            start: at(&format!("{d}T10:00:00Z")),
            end: at(&format!("{d}T11:00:00Z")),
        };
        assert!(t.overlaps(&e, &day("2026-12-02")));
        assert!(!t.overlaps(&e, &day("2026-12-03")));
    }

    #[test]
    fn recurring_series_overlap_through_any_occurrence() {
        // Monthly from December 2026, six times: the May 2027 occurrence is in a May window.
        let e = event(
            "2026-12-01T15:00:00",
            "2026-12-01T16:00:00",
            "Europe/London",
            &["RRULE:FREQ=MONTHLY;COUNT=6"],
        );
        let t = EventTiming::of(&e);
        assert!(t.overlaps(&e, &window("2027-04-28T00:00:00Z", 0, 5)));
        // Between occurrences: no overlap.
        assert!(!t.overlaps(&e, &window("2027-04-10T00:00:00Z", 0, 5)));
        // After the series ended.
        assert!(!t.overlaps(&e, &window("2027-08-01T00:00:00Z", 30, 30)));
        // An excluded occurrence does not count.
        let ex = event(
            "2026-12-01T15:00:00",
            "2026-12-01T16:00:00",
            "UTC",
            &["RRULE:FREQ=MONTHLY;COUNT=6", "EXDATE:20270501T150000Z"],
        );
        assert!(!EventTiming::of(&ex).overlaps(&ex, &window("2027-04-28T00:00:00Z", 0, 5)));
        // Unbounded series: still overlaps years later, but not before it starts.
        let weekly = event(
            "2026-12-01T15:00:00",
            "2026-12-01T16:00:00",
            "UTC",
            &["RRULE:FREQ=WEEKLY"],
        );
        let t = EventTiming::of(&weekly);
        assert!(t.overlaps(&weekly, &window("2031-06-01T00:00:00Z", 0, 7)));
        assert!(!t.overlaps(&weekly, &window("2026-11-01T00:00:00Z", 0, 7)));
        // Within a week but between two occurrences.
        let w = Window {
            start: at("2031-06-03T00:00:00Z"),
            end: at("2031-06-04T00:00:00Z"),
        };
        let between = t.overlaps(&weekly, &w);
        // 2031-06-03 is a Tuesday, like 2026-12-01: the series has an occurrence that day.
        assert!(between);
        let w = Window {
            start: at("2031-06-04T00:00:00Z"),
            end: at("2031-06-05T00:00:00Z"),
        };
        assert!(!t.overlaps(&weekly, &w));
    }
}
