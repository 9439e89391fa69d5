//! Event times as Google reads them from a request body, before the body becomes an `Event`.
//!
//! `start`, `end` and `originalStartTime` are `{date}` or `{dateTime, timeZone}` objects. Google
//! documents `dateTime` as RFC 3339 where "a time zone offset is required unless a time zone
//! is explicitly specified in `timeZone`". So, per object:
//!
//! - `dateTime` with `Z` or a `±HH:MM` offset (lower-case `t`/`z` allowed, as RFC 3339 does):
//!   that instant; `timeZone`, if any, is kept as the event's zone;
//! - `dateTime` without an offset and a valid `timeZone`: the local time in that zone. A
//!   local time skipped by a DST change is moved forward by the gap, one that occurs twice
//!   takes the earlier instant (the java.time rule Google's servers follow);
//! - `dateTime` without an offset and no `timeZone`: 400 `required` "Missing time zone
//!   definition for start time." — an unknown zone: 400 "Invalid time zone definition …";
//! - fractional seconds (1–9 digits) are accepted and dropped (Calendar keeps seconds);
//! - anything else (no seconds, `+0200`, offsets beyond ±23:59, a date alone, text): 400
//!   `invalid` "Invalid value for: …";
//! - `date` must be a valid `yyyy-mm-dd`.
//!
//! Rules across the two objects (both set, neither, `date`/`dateTime` mixes, end before
//! start) are checked afterwards on the parsed event (`calendar::validate_event`).
//!
//! The rewritten `dateTime` is the UTC instant (`…Z`), which the crate's `Event` type parses.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

use super::wire::ApiError;

/// The time fields of an event body and how Google names them in messages.
const TIME_FIELDS: &[(&str, &str)] = &[
    ("start", "start"),
    ("end", "end"),
    ("originalStartTime", "original start"),
];

/// Rewrite the `dateTime`s of `body` (an event resource as JSON) to UTC instants, refusing
/// the forms Google refuses. Fields that are not objects, and values that are not strings,
/// are left for the JSON decoding to refuse.
pub(crate) fn normalize_event_times(body: &mut Value) -> Result<(), ApiError> {
    for (field, which) in TIME_FIELDS {
        let Some(Value::Object(time)) = body.get_mut(*field) else {
            continue;
        };
        if let Some(Value::String(date)) = time.get("date") {
            if parse_date(date).is_none() {
                return Err(invalid_value(date));
            }
        }
        let zone = match time.get("timeZone") {
            Some(Value::String(z)) => Some(z.clone()),
            _ => None,
        };
        if let Some(Value::String(text)) = time.get("dateTime") {
            let instant = resolve_date_time(text, zone.as_deref(), which)?;
            time.insert(
                "dateTime".to_string(),
                Value::String(instant.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            );
        }
    }
    Ok(())
}

/// A `yyyy-mm-dd` date, nothing more.
pub(crate) fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// An RFC 3339 date-time split into its local part and its offset in seconds (`None`: no
/// offset given). Fractional seconds are dropped.
fn parse_rfc3339(text: &str) -> Option<(NaiveDateTime, Option<i32>)> {
    let b = text.as_bytes();
    if b.len() < 19 || !(b[10] == b'T' || b[10] == b't') {
        return None;
    }
    let date = parse_date(text.get(..10)?)?;
    let clock = text.get(11..19)?;
    let cb = clock.as_bytes();
    let clock_shape = cb[2] == b':'
        && cb[5] == b':'
        && cb
            .iter()
            .enumerate()
            .all(|(i, c)| i == 2 || i == 5 || c.is_ascii_digit());
    if !clock_shape {
        return None;
    }
    let time = chrono::NaiveTime::parse_from_str(clock, "%H:%M:%S").ok()?;
    let mut rest = text.get(19..)?;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        rest = fraction.get(digits..)?;
    }
    let offset = match rest {
        "" => None,
        "Z" | "z" => Some(0),
        _ => {
            let ob = rest.as_bytes();
            let sign = match ob.first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            if ob.len() != 6 || ob[3] != b':' {
                return None;
            }
            let hours: i32 = rest.get(1..3)?.parse().ok()?;
            let minutes: i32 = rest.get(4..6)?.parse().ok()?;
            if !rest.get(1..3)?.bytes().all(|c| c.is_ascii_digit())
                || !rest.get(4..6)?.bytes().all(|c| c.is_ascii_digit())
                || hours > 23
                || minutes > 59
            {
                return None;
            }
            Some(sign * (hours * 3600 + minutes * 60))
        }
    };
    Some((date.and_time(time), offset))
}

/// The instant a `dateTime` (with the object's `timeZone`) stands for.
fn resolve_date_time(
    text: &str,
    zone: Option<&str>,
    which: &str,
) -> Result<DateTime<Utc>, ApiError> {
    let (local, offset) = parse_rfc3339(text).ok_or_else(|| invalid_value(text))?;
    if let Some(seconds) = offset {
        return Ok(Utc.from_utc_datetime(&(local - Duration::seconds(i64::from(seconds)))));
    }
    let Some(zone) = zone else {
        return Err(ApiError::new(
            400,
            "required",
            format!("Missing time zone definition for {which} time."),
        ));
    };
    let tz: chrono_tz::Tz = zone.parse().map_err(|_| {
        ApiError::invalid(format!("Invalid time zone definition for {which} time."))
    })?;
    Ok(local_in_zone(local, tz))
}

/// A wall-clock time in `tz`: the earlier instant when it occurs twice, and when a DST gap
/// skips it, the time moved forward by the gap.
fn local_in_zone(local: NaiveDateTime, tz: chrono_tz::Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => {
            // Take the offset in force just before the gap: local - offset_before lands the
            // same distance past the transition as the wall time is past its start.
            let probe = local - Duration::hours(3);
            let before = match tz.from_local_datetime(&probe) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
                LocalResult::None => tz.from_utc_datetime(&probe),
            };
            let offset = before.naive_local() - before.naive_utc();
            Utc.from_utc_datetime(&(local - offset))
        }
    }
}

fn invalid_value(text: &str) -> ApiError {
    ApiError::invalid(format!("Invalid value for: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn dst_gaps_move_forward_and_repeats_take_the_earlier_instant() {
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap();
        // 02:30 does not exist on 30 March 2025 in Berlin: it becomes 03:30 CEST.
        assert_eq!(
            local_in_zone(at("2025-03-30T02:30:00"), berlin),
            utc("2025-03-30T01:30:00Z")
        );
        // 02:30 happens twice on 26 October 2025: the first one (CEST) is taken.
        assert_eq!(
            local_in_zone(at("2025-10-26T02:30:00"), berlin),
            utc("2025-10-26T00:30:00Z")
        );
        assert_eq!(
            local_in_zone(at("2025-07-01T12:00:00"), berlin),
            utc("2025-07-01T10:00:00Z")
        );
    }

    #[test]
    fn rfc3339_shapes() {
        let ok = [
            "2025-03-01T10:00:00Z",
            "2025-03-01t10:00:00z",
            "2025-03-01T10:00:00.5+01:00",
            "2025-03-01T10:00:00.123456789-09:30",
            "2025-03-01T10:00:00",
        ];
        for t in ok {
            assert!(parse_rfc3339(t).is_some(), "{t}");
        }
        let bad = [
            "2025-03-01",
            "2025-03-01T10:00Z",
            "2025-03-01T10:00:00+0100",
            "2025-03-01T10:00:00+24:00",
            "2025-03-01T10:00:00.Z",
            "2025-03-01T10:00:00.1234567890Z",
            "2025-03-01 10:00:00Z",
            "2025-3-1T10:00:00Z",
            "2025-02-30T10:00:00Z",
            "2025-03-01T25:00:00Z",
            "tomorrow",
            "2025-03-01T10:00:00 Europe/Berlin",
        ];
        for t in bad {
            assert!(parse_rfc3339(t).is_none(), "{t}");
        }
    }

    #[test]
    fn bodies_are_rewritten_to_utc() {
        let mut body = json!({
            "start": {"dateTime": "2025-03-01T10:00:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2025-03-01T11:00:00.250+01:00"},
            "summary": "x",
        });
        normalize_event_times(&mut body).unwrap();
        assert_eq!(body["start"]["dateTime"], "2025-03-01T09:00:00Z");
        assert_eq!(body["start"]["timeZone"], "Europe/Berlin");
        assert_eq!(body["end"]["dateTime"], "2025-03-01T10:00:00Z");
        let mut missing = json!({"start": {"dateTime": "2025-03-01T10:00:00"}});
        let err = normalize_event_times(&mut missing).unwrap_err();
        assert_eq!((err.code, err.reason.as_str()), (400, "required"));
        assert_eq!(err.message, "Missing time zone definition for start time.");
    }
}
