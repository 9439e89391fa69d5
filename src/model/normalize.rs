//! Normalisation of the values the engine compares and hashes: e-mail addresses, phone
//! numbers, time zones and recurrence rules.
//!
//! A value that means the same thing must normalise to the same string, so formatting
//! differences between the CRM and Google never look like edits.

use super::records::EventTime;
use chrono_tz::Tz;

/// Why a value could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("{0:?} is not an e-mail address (expected local@domain)")]
    Email(String),
    #[error("{0:?} is not a phone number (no digits)")]
    Phone(String),
    #[error("{0:?} is not an IANA time zone name (such as Europe/London)")]
    TimeZone(String),
    #[error("end {end} is not after start {start}")]
    EndNotAfterStart { start: String, end: String },
    #[error("{}", if *all_day { "an all-day event needs dates (YYYY-MM-DD) for start and end" } else { "a timed event needs local date-times (YYYY-MM-DDTHH:MM:SS) for start and end" })]
    TimeShape { all_day: bool },
    #[error("{line:?} is not a valid recurrence line: {reason}")]
    Recurrence { line: String, reason: String },
}

/// Lower-cases and trims an e-mail address and checks it has the `local@domain` shape.
pub fn email(raw: &str) -> Result<String, NormalizeError> {
    let address = raw.trim().to_lowercase();
    let valid = match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !address.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if valid {
        Ok(address)
    } else {
        Err(NormalizeError::Email(raw.to_owned()))
    }
}

/// E.164 (`+442079460000`) where the number parses as a valid international number;
/// otherwise the trimmed input with runs of white space folded, so that local numbers are
/// still compared sensibly. A value without any digit is refused.
pub fn phone(raw: &str) -> Result<String, NormalizeError> {
    let trimmed = raw.trim();
    if !trimmed.chars().any(|c| c.is_ascii_digit()) {
        return Err(NormalizeError::Phone(raw.to_owned()));
    }
    if trimmed.starts_with('+') || trimmed.starts_with("00") {
        let candidate = match trimmed.strip_prefix("00") {
            Some(rest) => format!("+{rest}"),
            None => trimmed.to_owned(),
        };
        if let Ok(number) = phonenumber::parse(None, &candidate) {
            if number.is_valid() {
                return Ok(number.format().mode(phonenumber::Mode::E164).to_string());
            }
        }
    }
    Ok(trimmed.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Parses an IANA zone name.
pub fn time_zone(raw: &str) -> Result<Tz, NormalizeError> {
    raw.parse::<Tz>()
        .map_err(|_| NormalizeError::TimeZone(raw.to_owned()))
}

/// Checks the shape of one recurrence line and upper-cases its property name.
pub fn recurrence_line(raw: &str) -> Result<String, NormalizeError> {
    let line = raw.trim();
    let bad = |reason: &str| NormalizeError::Recurrence {
        line: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let (name, value) = line
        .split_once([':', ';'])
        .ok_or_else(|| bad("expected NAME:VALUE"))?;
    let name_upper = name.to_ascii_uppercase();
    if !matches!(name_upper.as_str(), "RRULE" | "EXRULE" | "RDATE" | "EXDATE") {
        return Err(bad(
            "only RRULE, EXRULE, RDATE and EXDATE lines are allowed",
        ));
    }
    if value.trim().is_empty() {
        return Err(bad("empty value"));
    }
    if line.contains('\n') || line.contains('\r') {
        return Err(bad("one line per entry"));
    }
    Ok(format!("{name_upper}{}", &line[name.len()..]))
}

/// Validates a whole recurrence set (RFC 5545 semantics) anchored at the event's start.
pub fn recurrence_set(lines: &[String], start: EventTime, zone: Tz) -> Result<(), NormalizeError> {
    let dtstart = match start {
        EventTime::DateTime(dt) => format!(
            "DTSTART;TZID={}:{}",
            zone.name(),
            dt.format("%Y%m%dT%H%M%S")
        ),
        EventTime::Date(d) => format!("DTSTART;VALUE=DATE:{}", d.format("%Y%m%d")),
    };
    let text = std::iter::once(dtstart)
        .chain(lines.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    text.parse::<rrule::RRuleSet>()
        .map(|_| ())
        .map_err(|e| NormalizeError::Recurrence {
            line: lines.join(" "),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            email("  Ada@Globex.Example ").unwrap(),
            "ada@globex.example"
        );
        assert!(email("no-at-sign").is_err());
        assert!(email("a@").is_err());
        assert!(email("a b@c.d").is_err());
    }

    #[test]
    fn phones_become_e164_where_parseable() {
        assert_eq!(phone("+44 20 7946 0000").unwrap(), "+442079460000");
        assert_eq!(phone("0044 20 7946 0000").unwrap(), "+442079460000");
        assert_eq!(phone("+1 (415) 555-0132").unwrap(), "+14155550132");
        assert_eq!(phone(" 020  7946 0000 ").unwrap(), "020 7946 0000");
        assert!(phone("n/a").is_err());
    }

    #[test]
    fn zones_and_rules_are_validated() {
        assert!(time_zone("Europe/London").is_ok());
        assert!(time_zone("Mars/Olympus").is_err());
        assert_eq!(
            recurrence_line("rrule:FREQ=MONTHLY;COUNT=6").unwrap(),
            "RRULE:FREQ=MONTHLY;COUNT=6"
        );
        assert!(recurrence_line("DTSTART:20260101T000000Z").is_err());
        let start = EventTime::DateTime(
            chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
                .unwrap()
                .and_hms_opt(15, 0, 0)
                .unwrap(),
        );
        let zone = time_zone("Europe/London").unwrap();
        assert!(recurrence_set(&["RRULE:FREQ=MONTHLY;COUNT=6".into()], start, zone).is_ok());
        assert!(recurrence_set(&["RRULE:FREQ=SOMETIMES".into()], start, zone).is_err());
    }
}
