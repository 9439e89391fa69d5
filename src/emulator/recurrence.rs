//! Recurring events: validation of `recurrence` lines and expansion of a series into
//! instances with the `rrule` crate, in the series' `start.timeZone` (as Google does).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use google_calendar3::api::{Event, EventDateTime};

use super::wire::ApiError;

/// Upper bound on instances generated for one series in one request (protects the emulator
/// from unbounded rules; Google also stops expanding far-future instances).
pub(crate) const MAX_EXPANSION: usize = 5000;

/// One occurrence of a series, before any exception is applied.
#[derive(Clone, Debug)]
pub(crate) struct Occurrence {
    /// The occurrence's original start (`originalStartTime`).
    pub original_start: EventDateTime,
    pub start: EventDateTime,
    pub end: EventDateTime,
    /// Instance id: `<seriesId>_<YYYYMMDDTHHMMSSZ>` or `<seriesId>_<YYYYMMDD>` for all-day.
    pub id: String,
}

/// Start (inclusive) and end (exclusive) instants of an event's time span; all-day dates are
/// read as midnight UTC.
pub(crate) fn span(event: &Event) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    Some((
        instant(event.start.as_ref()?)?,
        instant(event.end.as_ref()?)?,
    ))
}

pub(crate) fn instant(dt: &EventDateTime) -> Option<DateTime<Utc>> {
    if let Some(t) = dt.date_time {
        return Some(t);
    }
    dt.date
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| Utc.from_utc_datetime(&n))
}

fn parse_zone(name: &str) -> Option<chrono_tz::Tz> {
    name.parse::<chrono_tz::Tz>().ok()
}

/// Check a series' `recurrence` lines and the time zone requirement. Called on every write of
/// an event that has `recurrence`.
pub(crate) fn validate_series(event: &Event) -> Result<(), ApiError> {
    let Some(lines) = event.recurrence.as_ref() else {
        return Ok(());
    };
    if lines.is_empty() {
        return Ok(());
    }
    let start = event
        .start
        .as_ref()
        .ok_or_else(|| ApiError::required("start time"))?;
    if start.date_time.is_some() && start.time_zone.is_none() {
        return Err(ApiError::new(
            400,
            "required",
            "Missing time zone definition for start time.",
        ));
    }
    for line in lines {
        let upper = line.to_ascii_uppercase();
        if !(upper.starts_with("RRULE:")
            || upper.starts_with("EXRULE:")
            || upper.starts_with("RDATE")
            || upper.starts_with("EXDATE"))
        {
            return Err(ApiError::invalid("Invalid recurrence rule."));
        }
        if upper.starts_with("DTSTART") {
            return Err(ApiError::invalid("Invalid recurrence rule."));
        }
    }
    build_set(event).map(|_| ())
}

fn build_set(event: &Event) -> Result<rrule::RRuleSet, ApiError> {
    let start = event
        .start
        .as_ref()
        .ok_or_else(|| ApiError::required("start time"))?;
    let dtstart = if let Some(t) = start.date_time {
        let zone_name = start.time_zone.as_deref().unwrap_or("UTC");
        let zone = parse_zone(zone_name)
            .ok_or_else(|| ApiError::invalid("Invalid time zone definition for start time."))?;
        let local = t.with_timezone(&zone).naive_local();
        format!("DTSTART;TZID={zone_name}:{}", local.format("%Y%m%dT%H%M%S"))
    } else if let Some(d) = start.date {
        format!("DTSTART;VALUE=DATE:{}", d.format("%Y%m%d"))
    } else {
        return Err(ApiError::required("start time"));
    };
    let mut text = dtstart;
    for line in event.recurrence.iter().flatten() {
        text.push('\n');
        text.push_str(line.trim());
    }
    text.parse::<rrule::RRuleSet>()
        .map_err(|_| ApiError::invalid("Invalid recurrence rule."))
}

/// Expand a series into occurrences whose span ends after `after` and starts before `before`
/// (both optional), at most `limit` of them, in start order.
pub(crate) fn expand(
    event: &Event,
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
    limit: usize,
) -> Result<Vec<Occurrence>, ApiError> {
    let set = build_set(event)?;
    let series_id = event.id.clone().unwrap_or_default();
    let (first_start, first_end) = span(event).ok_or_else(|| ApiError::required("end time"))?;
    let duration = first_end - first_start;
    let start = event.start.clone().unwrap_or_default();
    let all_day = start.date.is_some();
    let zone = start.time_zone.clone();
    let mut out = Vec::new();
    for (n, occurrence) in set.into_iter().enumerate() {
        if n >= MAX_EXPANSION || out.len() >= limit {
            break;
        }
        let begin = occurrence.with_timezone(&Utc);
        let (begin, original) = if all_day {
            let date: NaiveDate = occurrence.date_naive();
            let midnight = date
                .and_hms_opt(0, 0, 0)
                .map(|n| Utc.from_utc_datetime(&n))
                .unwrap_or(begin);
            (
                midnight,
                EventDateTime {
                    date: Some(date),
                    date_time: None,
                    time_zone: None,
                },
            )
        } else {
            (
                begin,
                EventDateTime {
                    date: None,
                    date_time: Some(begin),
                    time_zone: zone.clone(),
                },
            )
        };
        let finish = begin + duration;
        if let Some(b) = before {
            if begin >= b {
                break;
            }
        }
        if let Some(a) = after {
            if finish <= a && !(duration == Duration::zero() && begin == a) {
                continue;
            }
        }
        let id = if all_day {
            format!("{series_id}_{}", begin.format("%Y%m%d"))
        } else {
            format!("{series_id}_{}", begin.format("%Y%m%dT%H%M%SZ"))
        };
        let end = if all_day {
            EventDateTime {
                date: Some(finish.date_naive()),
                date_time: None,
                time_zone: None,
            }
        } else {
            EventDateTime {
                date: None,
                date_time: Some(finish),
                time_zone: event.end.as_ref().and_then(|e| e.time_zone.clone()),
            }
        };
        out.push(Occurrence {
            original_start: original.clone(),
            start: original,
            end,
            id,
        });
    }
    Ok(out)
}

/// Split an instance id into (series id, occurrence suffix) if it has the instance shape.
pub(crate) fn split_instance_id(id: &str) -> Option<(&str, &str)> {
    let (series, suffix) = id.rsplit_once('_')?;
    let timed =
        suffix.len() == 16 && suffix.ends_with('Z') && suffix.as_bytes().get(8) == Some(&b'T');
    let all_day = suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_digit());
    if (timed || all_day) && !series.is_empty() {
        Some((series, suffix))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekly(count: u32) -> Event {
        Event {
            id: Some("series1".into()),
            start: Some(EventDateTime {
                date_time: Some(Utc.with_ymd_and_hms(2025, 3, 24, 9, 0, 0).unwrap()),
                time_zone: Some("Europe/Berlin".into()),
                date: None,
            }),
            end: Some(EventDateTime {
                date_time: Some(Utc.with_ymd_and_hms(2025, 3, 24, 10, 0, 0).unwrap()),
                time_zone: Some("Europe/Berlin".into()),
                date: None,
            }),
            recurrence: Some(vec![format!("RRULE:FREQ=WEEKLY;COUNT={count}")]),
            ..Default::default()
        }
    }

    #[test]
    fn expansion_keeps_local_time_across_dst() {
        let occurrences = expand(&weekly(3), None, None, 100).unwrap();
        assert_eq!(occurrences.len(), 3);
        // 10:00 Berlin is 09:00Z before the DST switch (30 March 2025) and 08:00Z after it.
        assert_eq!(occurrences[0].id, "series1_20250324T090000Z");
        assert_eq!(occurrences[1].id, "series1_20250331T080000Z");
    }

    #[test]
    fn missing_time_zone_is_refused() {
        let mut e = weekly(2);
        e.start.as_mut().unwrap().time_zone = None;
        assert_eq!(validate_series(&e).unwrap_err().code, 400);
    }

    #[test]
    fn instance_ids_split() {
        assert_eq!(
            split_instance_id("abcde_20250324T090000Z"),
            Some(("abcde", "20250324T090000Z"))
        );
        assert_eq!(
            split_instance_id("abcde_20250324"),
            Some(("abcde", "20250324"))
        );
        assert_eq!(split_instance_id("abcde"), None);
    }
}
