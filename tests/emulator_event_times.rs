//! Event times as Google reads them, through a second client (plain reqwest, hand-written
//! JSON) for the forms the official crate never sends: one table row per accepted or refused
//! form of `start`/`end` on `events.insert`, then `update` and `patch` with local times.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Utc};
use common::*;
use crmsync::google::auth::CALENDAR_SCOPE;
use serde_json::{json, Value};

/// What Google answers a form with.
enum Expect {
    /// Accepted: the stored start and end instants (UTC).
    Stored(&'static str, &'static str),
    /// Refused with this status and reason.
    Refused(u16, &'static str),
}

struct Row {
    name: &'static str,
    start: Value,
    end: Value,
    expect: Expect,
}

fn row(name: &'static str, start: Value, end: Value, expect: Expect) -> Row {
    Row {
        name,
        start,
        end,
        expect,
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn rows() -> Vec<Row> {
    use Expect::*;
    vec![
        row(
            "UTC with Z (what the crate sends)",
            json!({"dateTime": "2025-03-01T10:00:00Z"}),
            json!({"dateTime": "2025-03-01T11:00:00Z"}),
            Stored("2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z"),
        ),
        row(
            "lower-case t and z",
            json!({"dateTime": "2025-03-01t10:00:00z"}),
            json!({"dateTime": "2025-03-01t11:00:00z"}),
            Stored("2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z"),
        ),
        row(
            "positive offset",
            json!({"dateTime": "2025-03-01T10:00:00+02:00"}),
            json!({"dateTime": "2025-03-01T11:00:00+02:00"}),
            Stored("2025-03-01T08:00:00Z", "2025-03-01T09:00:00Z"),
        ),
        row(
            "negative half-hour offset",
            json!({"dateTime": "2025-03-01T10:00:00-09:30"}),
            json!({"dateTime": "2025-03-01T10:30:00-09:30"}),
            Stored("2025-03-01T19:30:00Z", "2025-03-01T20:00:00Z"),
        ),
        row(
            "start and end in different offsets",
            json!({"dateTime": "2025-03-01T10:00:00+01:00"}),
            json!({"dateTime": "2025-03-01T05:00:00-05:00"}),
            Stored("2025-03-01T09:00:00Z", "2025-03-01T10:00:00Z"),
        ),
        row(
            "offset wins over timeZone",
            json!({"dateTime": "2025-03-01T10:00:00+00:00", "timeZone": "Asia/Tokyo"}),
            json!({"dateTime": "2025-03-01T11:00:00+00:00", "timeZone": "Asia/Tokyo"}),
            Stored("2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z"),
        ),
        row(
            "fractional seconds are dropped",
            json!({"dateTime": "2025-03-01T10:00:00.987Z"}),
            json!({"dateTime": "2025-03-01T11:00:00.123456789+00:00"}),
            Stored("2025-03-01T10:00:00Z", "2025-03-01T11:00:00Z"),
        ),
        row(
            "local time with timeZone (winter)",
            json!({"dateTime": "2025-03-01T10:00:00", "timeZone": "Europe/Berlin"}),
            json!({"dateTime": "2025-03-01T11:00:00", "timeZone": "Europe/Berlin"}),
            Stored("2025-03-01T09:00:00Z", "2025-03-01T10:00:00Z"),
        ),
        row(
            "local time with timeZone (summer)",
            json!({"dateTime": "2025-07-01T10:00:00", "timeZone": "America/New_York"}),
            json!({"dateTime": "2025-07-01T11:00:00", "timeZone": "America/New_York"}),
            Stored("2025-07-01T14:00:00Z", "2025-07-01T15:00:00Z"),
        ),
        row(
            "local start in one zone, end with an offset",
            json!({"dateTime": "2025-03-01T10:00:00", "timeZone": "Europe/Berlin"}),
            json!({"dateTime": "2025-03-01T10:30:00Z"}),
            Stored("2025-03-01T09:00:00Z", "2025-03-01T10:30:00Z"),
        ),
        row(
            "local time in a DST gap moves forward",
            json!({"dateTime": "2025-03-30T02:30:00", "timeZone": "Europe/Berlin"}),
            json!({"dateTime": "2025-03-30T04:00:00", "timeZone": "Europe/Berlin"}),
            Stored("2025-03-30T01:30:00Z", "2025-03-30T02:00:00Z"),
        ),
        row(
            "repeated local time takes the earlier instant",
            json!({"dateTime": "2025-10-26T02:30:00", "timeZone": "Europe/Berlin"}),
            json!({"dateTime": "2025-10-26T03:30:00", "timeZone": "Europe/Berlin"}),
            Stored("2025-10-26T00:30:00Z", "2025-10-26T02:30:00Z"),
        ),
        row(
            "zero-length timed event",
            json!({"dateTime": "2025-03-01T10:00:00Z"}),
            json!({"dateTime": "2025-03-01T10:00:00Z"}),
            Stored("2025-03-01T10:00:00Z", "2025-03-01T10:00:00Z"),
        ),
        row(
            "all-day",
            json!({"date": "2025-03-01"}),
            json!({"date": "2025-03-02"}),
            Stored("2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z"),
        ),
        row(
            "all-day with a timeZone",
            json!({"date": "2025-03-01", "timeZone": "Europe/Berlin"}),
            json!({"date": "2025-03-03", "timeZone": "Europe/Berlin"}),
            Stored("2025-03-01T00:00:00Z", "2025-03-03T00:00:00Z"),
        ),
        row(
            "local time without timeZone",
            json!({"dateTime": "2025-03-01T10:00:00"}),
            json!({"dateTime": "2025-03-01T11:00:00"}),
            Refused(400, "required"),
        ),
        row(
            "local end without timeZone",
            json!({"dateTime": "2025-03-01T10:00:00Z"}),
            json!({"dateTime": "2025-03-01T11:00:00"}),
            Refused(400, "required"),
        ),
        row(
            "local time with an unknown zone",
            json!({"dateTime": "2025-03-01T10:00:00", "timeZone": "Mars/Olympus"}),
            json!({"dateTime": "2025-03-01T11:00:00", "timeZone": "Mars/Olympus"}),
            Refused(400, "invalid"),
        ),
        row(
            "offset time with an unknown zone",
            json!({"dateTime": "2025-03-01T10:00:00Z", "timeZone": "Nowhere/Land"}),
            json!({"dateTime": "2025-03-01T11:00:00Z"}),
            Refused(400, "invalid"),
        ),
        row(
            "offset without a colon",
            json!({"dateTime": "2025-03-01T10:00:00+0200"}),
            json!({"dateTime": "2025-03-01T11:00:00+0200"}),
            Refused(400, "invalid"),
        ),
        row(
            "offset out of range",
            json!({"dateTime": "2025-03-01T10:00:00+24:00"}),
            json!({"dateTime": "2025-03-01T11:00:00+24:00"}),
            Refused(400, "invalid"),
        ),
        row(
            "no seconds",
            json!({"dateTime": "2025-03-01T10:00Z"}),
            json!({"dateTime": "2025-03-01T11:00Z"}),
            Refused(400, "invalid"),
        ),
        row(
            "date alone in dateTime",
            json!({"dateTime": "2025-03-01"}),
            json!({"dateTime": "2025-03-02"}),
            Refused(400, "invalid"),
        ),
        row(
            "space instead of T",
            json!({"dateTime": "2025-03-01 10:00:00Z"}),
            json!({"dateTime": "2025-03-01 11:00:00Z"}),
            Refused(400, "invalid"),
        ),
        row(
            "impossible date",
            json!({"dateTime": "2025-02-30T10:00:00Z"}),
            json!({"dateTime": "2025-03-01T11:00:00Z"}),
            Refused(400, "invalid"),
        ),
        row(
            "text",
            json!({"dateTime": "tomorrow at ten"}),
            json!({"dateTime": "tomorrow at eleven"}),
            Refused(400, "invalid"),
        ),
        row(
            "date with a time",
            json!({"date": "2025-03-01T00:00:00"}),
            json!({"date": "2025-03-02T00:00:00"}),
            Refused(400, "invalid"),
        ),
        row(
            "date without leading zeros",
            json!({"date": "2025-3-1"}),
            json!({"date": "2025-3-2"}),
            Refused(400, "invalid"),
        ),
        row(
            "date start, dateTime end",
            json!({"date": "2025-03-01"}),
            json!({"dateTime": "2025-03-02T00:00:00Z"}),
            Refused(400, "invalid"),
        ),
        row(
            "dateTime start, date end",
            json!({"dateTime": "2025-03-01T10:00:00Z"}),
            json!({"date": "2025-03-02"}),
            Refused(400, "invalid"),
        ),
        row(
            "both date and dateTime",
            json!({"date": "2025-03-01", "dateTime": "2025-03-01T10:00:00Z"}),
            json!({"date": "2025-03-02", "dateTime": "2025-03-01T11:00:00Z"}),
            Refused(400, "invalid"),
        ),
        row(
            "neither date nor dateTime",
            json!({"timeZone": "Europe/Berlin"}),
            json!({"timeZone": "Europe/Berlin"}),
            Refused(400, "invalid"),
        ),
        row(
            "end before start",
            json!({"dateTime": "2025-03-01T11:00:00Z"}),
            json!({"dateTime": "2025-03-01T10:00:00Z"}),
            Refused(400, "timeRangeEmpty"),
        ),
        row(
            "end before start once the offsets are applied",
            json!({"dateTime": "2025-03-01T10:00:00+01:00"}),
            json!({"dateTime": "2025-03-01T08:30:00Z"}),
            Refused(400, "timeRangeEmpty"),
        ),
        row(
            "all-day ending on its start day",
            json!({"date": "2025-03-01"}),
            json!({"date": "2025-03-01"}),
            Refused(400, "timeRangeEmpty"),
        ),
        row(
            "dateTime that is not a string",
            json!({"dateTime": 1_740_823_200}),
            json!({"dateTime": 1_740_826_800}),
            Refused(400, "parseError"),
        ),
    ]
}

async fn send(
    env: &Env,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let r = env
        .http
        .request(method, env.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

fn instant(v: &Value) -> DateTime<Utc> {
    match v["dateTime"].as_str() {
        Some(t) => utc(t),
        None => utc(&format!("{}T00:00:00Z", v["date"].as_str().unwrap())),
    }
}

#[tokio::test]
async fn every_date_form_is_read_or_refused_as_google_does() {
    let env = start().await;
    let token = env.emu.mint_access_token(ALICE, &[CALENDAR_SCOPE]).unwrap();
    let path = "/calendar/v3/calendars/primary/events";
    for (i, r) in rows().into_iter().enumerate() {
        let body = json!({"summary": r.name, "start": r.start, "end": r.end});
        let (status, answer) = send(&env, &token, reqwest::Method::POST, path, &body).await;
        match r.expect {
            Expect::Stored(start, end) => {
                assert_eq!(status, 200, "row {i} {}: {answer}", r.name);
                assert_eq!(instant(&answer["start"]), utc(start), "row {i} {}", r.name);
                assert_eq!(instant(&answer["end"]), utc(end), "row {i} {}", r.name);
                // What was stored reads back the same through the official crate.
                let id = answer["id"].as_str().unwrap();
                let (_, got) = env
                    .calendar(ALICE)
                    .await
                    .events()
                    .get("primary", id)
                    .doit()
                    .await
                    .unwrap();
                let start_back = got.start.unwrap();
                let read = start_back.date_time.or_else(|| {
                    start_back
                        .date
                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc())
                });
                assert_eq!(read, Some(utc(start)), "row {i} {}", r.name);
                if let Some(zone) = body["start"]["timeZone"].as_str() {
                    assert_eq!(start_back.time_zone.as_deref(), Some(zone), "row {i}");
                }
            }
            Expect::Refused(code, why) => {
                assert_eq!(
                    (status, reason(&answer)),
                    (code, why),
                    "row {i} {}: {answer}",
                    r.name
                );
            }
        }
    }
    // Refused forms stored nothing.
    let dump = env.emu.dump_user(ALICE).unwrap();
    let stored = dump.live_events(ALICE).len();
    let accepted = rows()
        .iter()
        .filter(|r| matches!(r.expect, Expect::Stored(..)))
        .count();
    assert_eq!(stored, accepted);
}

/// The required-zone message names the field, as Google's does.
#[tokio::test]
async fn a_local_time_without_zone_names_the_field() {
    let env = start().await;
    let token = env.emu.mint_access_token(ALICE, &[CALENDAR_SCOPE]).unwrap();
    let body = json!({
        "start": {"dateTime": "2025-03-01T10:00:00Z"},
        "end": {"dateTime": "2025-03-01T11:00:00"},
    });
    let (status, answer) = send(
        &env,
        &token,
        reqwest::Method::POST,
        "/calendar/v3/calendars/primary/events",
        &body,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"]["message"],
        "Missing time zone definition for end time."
    );
}

/// `update` takes local times with their zone; `patch` reads a local time in the zone the
/// event already has when the patch does not name one.
#[tokio::test]
async fn update_and_patch_read_local_times_in_their_zone() {
    let env = start().await;
    let token = env.emu.mint_access_token(ALICE, &[CALENDAR_SCOPE]).unwrap();
    let events = "/calendar/v3/calendars/primary/events";
    let (status, created) = send(
        &env,
        &token,
        reqwest::Method::POST,
        events,
        &json!({
            "summary": "standup",
            "start": {"dateTime": "2025-03-03T09:00:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2025-03-03T09:15:00", "timeZone": "Europe/Berlin"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap();
    let one = format!("{events}/{id}");

    let (status, updated) = send(
        &env,
        &token,
        reqwest::Method::PUT,
        &one,
        &json!({
            "summary": "standup",
            "start": {"dateTime": "2025-03-03T09:00:00", "timeZone": "America/New_York"},
            "end": {"dateTime": "2025-03-03T09:15:00", "timeZone": "America/New_York"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(instant(&updated["start"]), utc("2025-03-03T14:00:00Z"));
    assert_eq!(updated["start"]["timeZone"], "America/New_York");

    // The patch names no zone: New York's, which the event has, applies.
    let (status, patched) = send(
        &env,
        &token,
        reqwest::Method::PATCH,
        &one,
        &json!({"start": {"dateTime": "2025-03-03T10:00:00"}, "end": {"dateTime": "2025-03-03T10:30:00"}}),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(instant(&patched["start"]), utc("2025-03-03T15:00:00Z"));
    assert_eq!(instant(&patched["end"]), utc("2025-03-03T15:30:00Z"));

    // An update replaces the whole resource: a local time without a zone is refused.
    let (status, refused) = send(
        &env,
        &token,
        reqwest::Method::PUT,
        &one,
        &json!({
            "start": {"dateTime": "2025-03-03T09:00:00"},
            "end": {"dateTime": "2025-03-03T09:15:00"},
        }),
    )
    .await;
    assert_eq!((status, reason(&refused)), (400, "required"), "{refused}");
}
