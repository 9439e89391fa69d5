//! `VTIMEZONE` components for the IANA zones a feed uses (RFC 5545 §3.6.5).
//!
//! Every `TZID` in a feed names an IANA zone and the feed carries a `VTIMEZONE` for it, so a
//! client needs no zone database of its own to place `DTSTART;TZID=Europe/Berlin:…` and
//! every occurrence of an `RRULE` correctly on either side of a DST change.
//!
//! The zone's offset changes are found by scanning chrono-tz's data over a span — from the
//! start of the year of the earliest event in that zone to the end of the feed's horizon
//! year, plus a few years so that a short span still shows the yearly rule — a day at a
//! time, with a bisection to the second at each change. Changes that repeat by a fixed
//! yearly rule ("last Sunday of March at 02:00 local") through the end of the span become
//! one observance with an `RRULE` (`FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU`), so recurring events
//! keep the right offset beyond the horizon; the other changes are listed one observance
//! each. The first observance states the offset in force at the span's start.
//!
//! The components are written by hand from `icalendar::Property` lines: the `icalendar`
//! writer adds a `DTSTAMP` and a random `UID` to every component it writes, which a
//! `VTIMEZONE` must not have (and a random value would change the feed's ETag on every
//! request).

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};
use icalendar::Property;

/// Yearly changes must repeat at least this many years, through the end of the span, to be
/// written as an `RRULE`.
const MIN_YEARLY_RUN: usize = 3;

/// The offset regime in force at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Regime {
    /// Seconds east of UTC.
    offset: i32,
    daylight: bool,
    name: String,
}

fn regime_at(zone: Tz, at: DateTime<Utc>) -> Regime {
    let offset = zone.offset_from_utc_datetime(&at.naive_utc());
    Regime {
        offset: offset.fix().local_minus_utc(),
        daylight: offset.dst_offset() != Duration::zero(),
        name: offset
            .abbreviation()
            .map(str::to_owned)
            .unwrap_or_else(|| format_offset(offset.fix().local_minus_utc())),
    }
}

/// One change of offset: at `at`, `before` gives way to `after`.
#[derive(Debug, Clone)]
struct Change {
    at: DateTime<Utc>,
    before: i32,
    after: Regime,
}

impl Change {
    /// The local time of the change on the clock in force before it (how an observance's
    /// `DTSTART` is written).
    fn local_before(&self) -> NaiveDateTime {
        (self.at + Duration::seconds(i64::from(self.before))).naive_utc()
    }

    /// What a yearly rule would have to say to produce this change.
    fn yearly_key(&self) -> YearlyKey {
        let local = self.local_before();
        let day = local.day();
        let days_in_month = days_in_month(local.year(), local.month());
        let nth = (day - 1) / 7 + 1;
        let last = day + 7 > days_in_month;
        YearlyKey {
            month: local.month(),
            ordinal: if last && nth >= 4 { -1 } else { nth as i8 },
            weekday: local.weekday(),
            time: local.time(),
            before: self.before,
            after: self.after.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct YearlyKey {
    month: u32,
    /// 1..=4 from the start of the month, or -1 for the last one.
    ordinal: i8,
    weekday: chrono::Weekday,
    time: chrono::NaiveTime,
    before: i32,
    after: Regime,
}

impl YearlyKey {
    fn rrule(&self) -> String {
        let day = match self.weekday {
            chrono::Weekday::Mon => "MO",
            chrono::Weekday::Tue => "TU",
            chrono::Weekday::Wed => "WE",
            chrono::Weekday::Thu => "TH",
            chrono::Weekday::Fri => "FR",
            chrono::Weekday::Sat => "SA",
            chrono::Weekday::Sun => "SU",
        };
        format!(
            "FREQ=YEARLY;BYMONTH={};BYDAY={}{day}",
            self.month, self.ordinal
        )
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|first| first.pred_opt())
        .map_or(31, |last| last.day())
}

/// The offset changes of `zone` in `from..to`.
fn changes(zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Change> {
    let day = Duration::days(1);
    let mut out = Vec::new();
    let mut at = from;
    let mut current = regime_at(zone, at);
    while at < to {
        let next = (at + day).min(to);
        let there = regime_at(zone, next);
        let same = |r: &Regime| r.offset == current.offset && r.daylight == current.daylight;
        if same(&there) {
            at = next;
            continue;
        }
        // Bisect to the first second of the new regime.
        let (mut lo, mut hi) = (at, next);
        while hi - lo > Duration::seconds(1) {
            let mid = lo + (hi - lo) / 2;
            if same(&regime_at(zone, mid)) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let after = regime_at(zone, hi);
        out.push(Change {
            at: hi,
            before: current.offset,
            after: after.clone(),
        });
        current = after;
        at = hi;
    }
    out
}

/// `+0100`, `-0330`, `+001932` (seconds only when there are any).
fn format_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    let (h, m, rest) = (s / 3600, (s % 3600) / 60, s % 60);
    if rest == 0 {
        format!("{sign}{h:02}{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}{rest:02}")
    }
}

/// One observance (`STANDARD` or `DAYLIGHT`) as written.
#[derive(Debug, Clone)]
struct Observance {
    start_local: NaiveDateTime,
    from: i32,
    to: Regime,
    rrule: Option<String>,
}

/// The observances describing `zone` over `from..to`.
fn observances(zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Observance> {
    let changes = changes(zone, from, to);
    let initial = regime_at(zone, from);
    let mut out = vec![Observance {
        start_local: (from + Duration::seconds(i64::from(initial.offset))).naive_utc(),
        from: initial.offset,
        to: initial,
        rrule: None,
    }];
    // Yearly runs that reach the span's last year become RRULE observances.
    let last_year = to.year() - 1;
    let keys: Vec<YearlyKey> = changes.iter().map(Change::yearly_key).collect();
    let mut in_run = vec![false; changes.len()];
    let final_keys: Vec<&YearlyKey> = changes
        .iter()
        .zip(&keys)
        .filter(|(c, _)| c.local_before().year() == last_year)
        .map(|(_, k)| k)
        .collect();
    let mut runs = Vec::new();
    for key in final_keys {
        let mut members = Vec::new();
        let mut year = last_year;
        for (i, (c, k)) in changes.iter().zip(&keys).enumerate().rev() {
            let y = c.local_before().year();
            if y > year {
                continue;
            }
            if y < year {
                break;
            }
            if k == key {
                members.push(i);
                year -= 1;
            }
        }
        if members.len() >= MIN_YEARLY_RUN {
            runs.push((members, key.clone()));
        }
    }
    for (members, _) in &runs {
        for &i in members {
            in_run[i] = true;
        }
    }
    for (i, change) in changes.iter().enumerate() {
        if !in_run[i] {
            out.push(Observance {
                start_local: change.local_before(),
                from: change.before,
                to: change.after.clone(),
                rrule: None,
            });
        }
    }
    for (members, key) in runs {
        let Some(&first) = members.last() else {
            continue;
        };
        let change = &changes[first];
        out.push(Observance {
            start_local: change.local_before(),
            from: change.before,
            to: change.after.clone(),
            rrule: Some(key.rrule()),
        });
    }
    out.sort_by_key(|o| o.start_local);
    out
}

fn line(property: Property) -> String {
    property.try_into().unwrap_or_default()
}

/// The `VTIMEZONE` component of `zone`, correct for every instant from the start of
/// `first_year` on (exactly through the end of `last_year` and a few years more, and
/// beyond that wherever the zone's yearly rule holds), as CRLF-terminated content lines.
pub fn vtimezone(zone: Tz, first_year: i32, last_year: i32) -> String {
    let start = |year: i32| {
        Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let from = start(first_year);
    // A few years more than asked, so that a yearly rule is recognised even for a short
    // span (and irregular zones are listed a little beyond it).
    let to = start(last_year.max(first_year) + 1 + MIN_YEARLY_RUN as i32);
    let mut text = String::from("BEGIN:VTIMEZONE\r\n");
    text.push_str(&line(Property::new("TZID", zone.name())));
    text.push_str(&line(Property::new("X-LIC-LOCATION", zone.name())));
    for o in observances(zone, from, to) {
        let kind = if o.to.daylight {
            "DAYLIGHT"
        } else {
            "STANDARD"
        };
        text.push_str(&format!("BEGIN:{kind}\r\n"));
        text.push_str(&line(Property::new(
            "DTSTART",
            o.start_local.format("%Y%m%dT%H%M%S").to_string(),
        )));
        text.push_str(&line(Property::new("TZOFFSETFROM", format_offset(o.from))));
        text.push_str(&line(Property::new(
            "TZOFFSETTO",
            format_offset(o.to.offset),
        )));
        text.push_str(&line(Property::new("TZNAME", o.to.name.as_str())));
        if let Some(rule) = &o.rrule {
            text.push_str(&line(Property::new("RRULE", rule.as_str())));
        }
        text.push_str(&format!("END:{kind}\r\n"));
    }
    text.push_str("END:VTIMEZONE\r\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz(name: &str) -> Tz {
        name.parse().unwrap()
    }

    #[test]
    fn offsets_are_written_with_sign_and_seconds_only_when_needed() {
        assert_eq!(format_offset(3600), "+0100");
        assert_eq!(format_offset(-12600), "-0330");
        assert_eq!(format_offset(0), "+0000");
        assert_eq!(format_offset(1172), "+001932");
    }

    #[test]
    fn european_summer_time_becomes_two_yearly_rules() {
        let text = vtimezone(tz("Europe/Berlin"), 2024, 2027);
        assert!(text.contains("TZID:Europe/Berlin\r\n"), "{text}");
        assert!(
            text.contains("RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n"),
            "{text}"
        );
        assert!(
            text.contains("RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n"),
            "{text}"
        );
        // The spring change: 02:00 on the CET clock, +0100 → +0200, first in 2024.
        assert!(
            text.contains(
                "BEGIN:DAYLIGHT\r\nDTSTART:20240331T020000\r\nTZOFFSETFROM:+0100\r\n\
                 TZOFFSETTO:+0200\r\nTZNAME:CEST\r\n"
            ),
            "{text}"
        );
        assert!(!text.contains("UID"), "no UID in a VTIMEZONE: {text}");
        assert!(
            !text.contains("DTSTAMP"),
            "no DTSTAMP in a VTIMEZONE: {text}"
        );
    }

    #[test]
    fn north_american_rules_use_second_and_first_sundays() {
        let text = vtimezone(tz("America/New_York"), 2025, 2028);
        assert!(
            text.contains("RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\n"),
            "{text}"
        );
        assert!(
            text.contains("RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\n"),
            "{text}"
        );
    }

    #[test]
    fn zones_without_changes_have_one_standard_observance() {
        for name in ["Asia/Tokyo", "UTC"] {
            let text = vtimezone(tz(name), 2026, 2027);
            assert_eq!(text.matches("BEGIN:STANDARD").count(), 1, "{text}");
            assert!(!text.contains("DAYLIGHT"), "{text}");
            assert!(!text.contains("RRULE"), "{text}");
        }
    }

    #[test]
    fn a_change_that_does_not_repeat_is_listed_once() {
        // Samoa skipped 30 December 2011 (−10 → +14): no yearly rule explains it.
        let text = vtimezone(tz("Pacific/Apia"), 2011, 2012);
        assert!(text.contains("TZOFFSETTO:+1400"), "{text}");
    }
}
