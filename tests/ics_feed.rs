//! ICS feeds end to end: documents checked with a second, independent iCalendar parser (the
//! `ical` crate — a different project from `icalendar`, sharing no code with it), the
//! permission and scope filtering against the sync engine's own desired set, time zones
//! across DST through the document's own VTIMEZONE, stable UIDs, and the HTTP feed
//! (200/304/404/405, rotation, revocation, deactivation) on 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "sync_support/mod.rs"]
mod sync_support;

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use crmsync::ics::serve::{Clock, FeedAnswer};
use crmsync::ics::{event_uid, feed_now, FeedSecret, FeedService, RenderedFeed};
use crmsync::model::{CrmId, UserId};
use crmsync::scope::{ScopeLayer, SelectionMode};
use crmsync::security::Access;
use crmsync::store::StateDb;
use ical::parser::ical::component::{IcalCalendar, IcalEvent, IcalTimeZone};
use ical::property::Property;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use sync_support::{org, Harness};

// ---------------------------------------------------------------------------------------
// The org: the sync stories' company plus events for the feed
// ---------------------------------------------------------------------------------------

fn feed_org() -> Value {
    let mut doc = org();
    let events = doc["events"].as_array_mut().unwrap();
    let base = events[0].clone();
    let mut add = |patch: Value| {
        let mut e = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            e[k] = v.clone();
        }
        events.push(e);
    };
    add(
        json!({"id": "dst1", "title": "Weekly stand-up", "time_zone": "Europe/Berlin",
        "start": "2027-03-15T09:00:00", "end": "2027-03-15T09:30:00",
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE;TZID=Europe/Berlin:20270322T090000"],
        "attendees": [{"user": "erin"}], "links": []}),
    );
    add(
        json!({"id": "ny1", "title": "New York call", "time_zone": "America/New_York",
        "start": "2026-12-10T10:00:00", "end": "2026-12-10T11:00:00",
        "recurrence": ["RRULE:FREQ=MONTHLY;COUNT=6"], "attendees": [], "links": []}),
    );
    add(
        json!({"id": "allday1", "title": "Holidays", "time_zone": "Europe/Berlin",
        "all_day": true, "start": "2026-12-24", "end": "2026-12-27",
        "attendees": [], "links": []}),
    );
    add(
        json!({"id": "old1", "title": "Long ago", "start": "2025-01-10T10:00:00",
        "end": "2025-01-10T11:00:00", "attendees": [], "links": []}),
    );
    // c2 is Hank's private contact: Erin reads it through sharing rule r1, Frank does not.
    add(
        json!({"id": "secret1", "title": "Deal review", "description": "Bring the numbers",
        "start": "2026-12-15T14:00:00", "end": "2026-12-15T15:00:00",
        "attendees": [{"contact": "c2"}, {"contact": "c1"}, {"user": "frank"}], "links": []}),
    );
    doc
}

fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

fn fixed_clock(now: DateTime<Utc>) -> Clock {
    Arc::new(move || now)
}

struct Feeds {
    h: Harness,
    service: FeedService,
}

impl Feeds {
    async fn start() -> Feeds {
        let h = Harness::start(feed_org()).await;
        refresh_mirror(&h);
        let service = FeedService::start(
            StateDb::open_existing(&h.config.state.path).unwrap(),
            h.config.clone(),
            fixed_clock(h.now),
        )
        .unwrap();
        Feeds { h, service }
    }

    fn create(&self, id: &str) -> FeedSecret {
        crmsync::ics::create_feed(&self.h.state, &user(id), self.h.now)
            .unwrap()
            .unwrap()
    }

    async fn feed(&self, secret: &FeedSecret) -> RenderedFeed {
        match self.service.lookup(secret).await.unwrap() {
            FeedAnswer::Feed(f) => f,
            FeedAnswer::NotFound => panic!("no feed for this secret"),
        }
    }

    async fn document(&self, id: &str) -> String {
        let secret = self.create(id);
        self.feed(&secret).await.body.to_string()
    }
}

fn refresh_mirror(h: &Harness) {
    crmsync::mirror::refresh(&h.state, &h.crm()).unwrap();
}

// ---------------------------------------------------------------------------------------
// Reading documents with the `ical` crate
// ---------------------------------------------------------------------------------------

fn parse(text: &str) -> IcalCalendar {
    let mut calendars = ical::IcalParser::new(text.as_bytes());
    let calendar = calendars
        .next()
        .expect("one calendar")
        .expect("the ical crate parses the document");
    assert!(calendars.next().is_none(), "exactly one VCALENDAR");
    calendar
}

fn prop<'a>(props: &'a [Property], name: &str) -> Option<&'a Property> {
    props.iter().find(|p| p.name == name)
}

fn value(props: &[Property], name: &str) -> String {
    prop(props, name)
        .and_then(|p| p.value.clone())
        .unwrap_or_default()
}

fn param(p: &Property, name: &str) -> Option<String> {
    p.params
        .as_ref()?
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.first().cloned())
}

/// TEXT unescaping (RFC 5545 §3.3.11); the `ical` crate leaves values escaped.
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') | Some('N') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn by_uid(calendar: &IcalCalendar) -> BTreeMap<String, &IcalEvent> {
    calendar
        .events
        .iter()
        .map(|e| (value(&e.properties, "UID"), e))
        .collect()
}

fn uid(u: &str, record: &str) -> String {
    event_uid(&user(u), &CrmId::new(record).unwrap())
}

fn local(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S").unwrap()
}

/// A VTIMEZONE read back: the instants its observances start and the offset each brings.
struct ZoneRules {
    onsets: Vec<(DateTime<Utc>, i32)>,
}

fn offset_seconds(text: &str) -> i32 {
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let digits = &text[1..];
    let h: i32 = digits[0..2].parse().unwrap();
    let m: i32 = digits[2..4].parse().unwrap();
    let s: i32 = digits.get(4..6).map_or(0, |s| s.parse().unwrap());
    sign * (h * 3600 + m * 60 + s)
}

impl ZoneRules {
    /// Expands every observance (RRULEs with the `rrule` crate) up to `until`.
    fn read(zone: &IcalTimeZone, until: DateTime<Utc>) -> ZoneRules {
        let mut onsets = Vec::new();
        for t in &zone.transitions {
            let start = local(&value(&t.properties, "DTSTART"));
            let from = offset_seconds(&value(&t.properties, "TZOFFSETFROM"));
            let to = offset_seconds(&value(&t.properties, "TZOFFSETTO"));
            let locals = match prop(&t.properties, "RRULE").and_then(|p| p.value.clone()) {
                None => vec![start],
                Some(rule) => {
                    // Expand in a fixed frame: the rule speaks of wall-clock times.
                    let set: rrule::RRuleSet =
                        format!("DTSTART:{}Z\nRRULE:{rule}", start.format("%Y%m%dT%H%M%S"))
                            .parse()
                            .unwrap();
                    set.before(until.with_timezone(&rrule::Tz::UTC))
                        .all(1000)
                        .dates
                        .into_iter()
                        .map(|d| d.naive_utc())
                        .collect()
                }
            };
            for l in locals {
                onsets.push(((l - Duration::seconds(i64::from(from))).and_utc(), to));
            }
        }
        onsets.sort();
        ZoneRules { onsets }
    }

    fn offset_at(&self, at: DateTime<Utc>) -> i32 {
        self.onsets
            .iter()
            .rev()
            .find(|(onset, _)| *onset <= at)
            .map(|(_, to)| *to)
            .expect("the VTIMEZONE covers this instant")
    }

    fn to_utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let guess = local.and_utc() - Duration::seconds(i64::from(self.offset_at(local.and_utc())));
        let offset = self.offset_at(guess);
        local.and_utc() - Duration::seconds(i64::from(offset))
    }
}

fn zone_rules(calendar: &IcalCalendar, tzid: &str) -> ZoneRules {
    let zone = calendar
        .timezones
        .iter()
        .find(|z| value(&z.properties, "TZID") == tzid)
        .unwrap_or_else(|| panic!("a VTIMEZONE for {tzid}"));
    ZoneRules::read(zone, Utc.with_ymd_and_hms(2040, 1, 1, 0, 0, 0).unwrap())
}

/// The UTC instants of an event's occurrences, from the document alone: DTSTART, RRULE and
/// EXDATE expanded in wall-clock time, each placed with the document's VTIMEZONE.
fn occurrences(calendar: &IcalCalendar, event: &IcalEvent) -> Vec<DateTime<Utc>> {
    let start = prop(&event.properties, "DTSTART").unwrap();
    let tzid = param(start, "TZID").expect("timed events carry a TZID");
    let rules = zone_rules(calendar, &tzid);
    let start_local = local(start.value.as_deref().unwrap());
    let mut text = format!("DTSTART:{}Z", start_local.format("%Y%m%dT%H%M%S"));
    for p in &event.properties {
        match p.name.as_str() {
            "RRULE" => text.push_str(&format!("\nRRULE:{}", p.value.clone().unwrap())),
            "EXDATE" => {
                assert_eq!(param(p, "TZID").as_deref(), Some(tzid.as_str()));
                text.push_str(&format!("\nEXDATE:{}Z", p.value.clone().unwrap()));
            }
            _ => {}
        }
    }
    if prop(&event.properties, "RRULE").is_none() {
        return vec![rules.to_utc(start_local)];
    }
    let set: rrule::RRuleSet = text.parse().unwrap();
    set.all(100)
        .dates
        .into_iter()
        .map(|d| rules.to_utc(d.naive_utc()))
        .collect()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

// ---------------------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_feed_holds_exactly_the_engines_desired_events_for_that_user() {
    let f = Feeds::start().await;
    for (who, expected) in [
        ("frank", vec!["allday1", "dst1", "e1", "ny1", "secret1"]),
        ("hank", vec!["e2"]),
    ] {
        let text = f.document(who).await;
        let calendar = parse(&text);
        let uids: BTreeSet<String> = by_uid(&calendar).into_keys().collect();
        let wanted: BTreeSet<String> = expected.iter().map(|r| uid(who, r)).collect();
        assert_eq!(uids, wanted, "{who}'s feed");

        // The same set the sync engine would push to Google for this user at this hour.
        let model = f.h.state.load_org_model().unwrap();
        let access = Access::build(&model);
        let u = &model.users[&user(who)];
        let overrides = f.h.state.scope_overrides(&u.id).unwrap();
        let scope = crmsync::scope::resolve(&f.h.config.scope, &model, &u.id, &overrides)
            .unwrap()
            .scope;
        let sets = crmsync::sync::desired::event_sets(
            &access,
            u,
            &scope,
            feed_now(f.h.now),
            std::iter::empty(),
            None,
        )
        .unwrap();
        let engine: BTreeSet<String> = sets
            .desired
            .keys()
            .filter(|id| !sets.retained.contains(*id))
            .map(|id| uid(who, id.as_str()))
            .collect();
        assert_eq!(uids, engine, "{who}: feed = engine's in-window desired set");
    }
}

#[tokio::test]
async fn times_are_in_zone_all_day_events_are_dates_and_recurrences_cross_dst() {
    let f = Feeds::start().await;
    let text = f.document("frank").await;
    let calendar = parse(&text);
    let events = by_uid(&calendar);

    // Weekly at 09:00 Berlin time across the change to summer time on 28 March 2027;
    // 22 March excluded.
    let dst = events[&uid("frank", "dst1")];
    let start = prop(&dst.properties, "DTSTART").unwrap();
    assert_eq!(param(start, "TZID").as_deref(), Some("Europe/Berlin"));
    assert_eq!(start.value.as_deref(), Some("20270315T090000"));
    assert_eq!(value(&dst.properties, "RRULE"), "FREQ=WEEKLY;COUNT=4");
    assert_eq!(
        occurrences(&calendar, dst),
        vec![
            utc(2027, 3, 15, 8, 0),
            utc(2027, 3, 29, 7, 0),
            utc(2027, 4, 5, 7, 0)
        ]
    );

    // Monthly at 10:00 New York time across the change on 14 March 2027.
    let ny = events[&uid("frank", "ny1")];
    let ny_times = occurrences(&calendar, ny);
    assert_eq!(ny_times.len(), 6);
    assert_eq!(ny_times[0], utc(2026, 12, 10, 15, 0));
    assert_eq!(ny_times[3], utc(2027, 3, 10, 15, 0), "10 March: still EST");
    assert_eq!(ny_times[4], utc(2027, 4, 10, 14, 0), "10 April: EDT");

    // A one-off London event in winter.
    let e1 = events[&uid("frank", "e1")];
    assert_eq!(occurrences(&calendar, e1), vec![utc(2026, 12, 1, 15, 0)]);

    // All-day: DATE values, exclusive end, no zone.
    let all_day = events[&uid("frank", "allday1")];
    let start = prop(&all_day.properties, "DTSTART").unwrap();
    assert_eq!(param(start, "VALUE").as_deref(), Some("DATE"));
    assert_eq!(start.value.as_deref(), Some("20261224"));
    assert_eq!(value(&all_day.properties, "DTEND"), "20261227");
    assert_eq!(param(start, "TZID"), None);

    // Every VTIMEZONE agrees with the IANA database, hour by hour, for years beyond the
    // feed's horizon (its yearly rules carry on).
    for tzid in ["Europe/Berlin", "America/New_York", "Europe/London"] {
        let rules = zone_rules(&calendar, tzid);
        let zone: chrono_tz::Tz = tzid.parse().unwrap();
        // Each VTIMEZONE starts with the year of the earliest event in its zone (2027 for
        // Berlin, whose all-day event has no zone).
        let mut at = utc(2027, 1, 1, 0, 30);
        while at < utc(2036, 1, 1, 0, 0) {
            use chrono::Offset;
            let expected = zone.offset_from_utc_datetime(&at.naive_utc()).fix();
            assert_eq!(
                rules.offset_at(at),
                expected.local_minus_utc(),
                "{tzid} at {at}"
            );
            at += Duration::hours(1);
        }
    }
}

#[tokio::test]
async fn attendees_the_user_may_not_read_appear_nowhere_in_the_document() {
    let f = Feeds::start().await;
    // Hank's contact c2 ("Hal Test", hal@initech.example): Erin may read it (rule r1),
    // Frank may not.
    let erin = f.document("erin").await;
    let frank = f.document("frank").await;
    let unfolded = |t: &str| t.replace("\r\n ", "");
    for needle in ["hal@initech.example", "Hal Test"] {
        assert!(
            unfolded(&erin).contains(needle),
            "control: Erin sees {needle}"
        );
        assert!(!frank.contains(needle) && !unfolded(&frank).contains(needle));
    }
    for text in [&erin, &frank] {
        let calendar = parse(text);
        for event in &calendar.events {
            for p in &event.properties {
                assert!(
                    !matches!(p.name.as_str(), "ATTENDEE" | "ORGANIZER"),
                    "{}",
                    p.name
                );
            }
        }
    }
    // Readable attendees are listed in the description, as on Google.
    let calendar = parse(&frank);
    let deal = by_uid(&calendar)[&uid("frank", "secret1")];
    let description = unescape(&value(&deal.properties, "DESCRIPTION"));
    assert_eq!(
        description,
        "Bring the numbers\n\nAttendees (from the CRM):\n\
         - Ada Lovelace <ada@globex.example>\n- Frank Field <frank@acme.example>"
    );
}

#[tokio::test]
async fn uids_stay_and_revision_marks_move_when_an_event_changes() {
    let f = Feeds::start().await;
    let secret = f.create("frank");
    let before = f.feed(&secret).await;
    let again = f.feed(&secret).await;
    assert_eq!(before, again, "same mirror, same hour: the same bytes");

    let mut doc = feed_org();
    let e1 = doc["events"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["id"] == "e1")
        .unwrap();
    e1["title"] = json!("Quarterly review (moved)");
    e1["start"] = json!("2026-12-01T16:00:00");
    e1["end"] = json!("2026-12-01T17:00:00");
    f.h.load(&doc);
    refresh_mirror(&f.h);
    let after = f.feed(&secret).await;
    assert_ne!(after.etag, before.etag);

    let (old, new) = (parse(&before.body), parse(&after.body));
    let (old, new) = (by_uid(&old), by_uid(&new));
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        new.keys().collect::<Vec<_>>(),
        "the same UIDs: apps update, never duplicate"
    );
    let id = uid("frank", "e1");
    let seq = |e: &IcalEvent| value(&e.properties, "SEQUENCE").parse::<u64>().unwrap();
    assert!(seq(new[&id]) > seq(old[&id]));
    let modified = |e: &IcalEvent| value(&e.properties, "LAST-MODIFIED");
    assert!(modified(new[&id]) >= modified(old[&id]));
    assert_eq!(
        value(&new[&id].properties, "DTSTAMP"),
        modified(new[&id]),
        "DTSTAMP is the last revision"
    );
    assert_eq!(
        value(&new[&id].properties, "SUMMARY"),
        "Quarterly review (moved)"
    );
    let unchanged = uid("frank", "dst1");
    assert_eq!(seq(new[&unchanged]), seq(old[&unchanged]));
}

#[tokio::test]
async fn scope_changes_apply_and_a_user_with_nothing_gets_a_valid_empty_calendar() {
    let mut f = Feeds::start().await;
    let secret = f.create("erin");
    let all = parse(&f.feed(&secret).await.body);
    assert!(
        by_uid(&all).contains_key(&uid("erin", "e1")),
        "Frank's event, all_visible"
    );

    // Erin narrows her events to her own: she owns none.
    f.h.state
        .replace_scope_overrides(
            &user("erin"),
            &ScopeLayer {
                event: Some(SelectionMode::Mine),
                ..ScopeLayer::default()
            },
        )
        .unwrap();
    let body = f.feed(&secret).await.body;
    let calendar = parse(&body);
    assert!(calendar.events.is_empty(), "{body}");
    assert!(calendar.timezones.is_empty());
    assert_eq!(value(&calendar.properties, "VERSION"), "2.0");
    assert!(!value(&calendar.properties, "PRODID").is_empty());
}

// ---------------------------------------------------------------------------------------
// Serving over HTTP
// ---------------------------------------------------------------------------------------

struct Served {
    base: String,
    client: reqwest::Client,
}

impl Served {
    async fn start(service: FeedService) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, service.router()).await.unwrap();
        });
        Served {
            base,
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str, etag: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(tag) = etag {
            req = req.header("If-None-Match", tag);
        }
        req.send().await.unwrap()
    }
}

fn path_of(secret: &FeedSecret) -> String {
    format!("/ics/{}.ics", secret.expose())
}

#[tokio::test]
async fn feeds_are_served_with_etags_and_refused_without_hints() {
    let f = Feeds::start().await;
    let secret = f.create("frank");
    let http = Served::start(f.service.clone()).await;

    let ok = http.get(&path_of(&secret), None).await;
    assert_eq!(ok.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header(&ok, "content-type").as_deref(),
        Some("text/calendar; charset=utf-8")
    );
    assert_eq!(header(&ok, "cache-control").as_deref(), Some("private"));
    let etag = header(&ok, "etag").unwrap();
    let body = ok.text().await.unwrap();
    assert_eq!(body, f.feed(&secret).await.body.as_ref());
    parse(&body);

    let not_modified = http.get(&path_of(&secret), Some(&etag)).await;
    assert_eq!(not_modified.status(), 304);
    assert_eq!(
        header(&not_modified, "etag").as_deref(),
        Some(etag.as_str())
    );
    assert!(not_modified.text().await.unwrap().is_empty());
    let stale = http.get(&path_of(&secret), Some("\"stale\"")).await;
    assert_eq!(stale.status(), 200);

    // A CRM change reaches the feed once the mirror has it: new ETag.
    let mut doc = feed_org();
    doc["events"][0]["title"] = json!("Quarterly review, renamed");
    f.h.load(&doc);
    refresh_mirror(&f.h);
    let changed = http.get(&path_of(&secret), Some(&etag)).await;
    assert_eq!(changed.status(), 200);
    assert_ne!(header(&changed, "etag").unwrap(), etag);
    assert!(changed
        .text()
        .await
        .unwrap()
        .contains("Quarterly review\\, renamed"));

    // Unknown, malformed and wrong-suffix paths: the same 404.
    let unknown = FeedSecret::generate().unwrap();
    let mut bodies = BTreeSet::new();
    for path in [
        path_of(&unknown),
        "/ics/short.ics".to_owned(),
        format!("/ics/{}", secret.expose()),
        format!("/ics/{}.ical", secret.expose()),
    ] {
        let r = http.get(&path, None).await;
        assert_eq!(r.status(), 404, "{path}");
        bodies.insert(r.text().await.unwrap());
    }
    assert_eq!(bodies.len(), 1, "no hint which: {bodies:?}");

    // GET only.
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = http
            .client
            .request(method.clone(), format!("{}{}", http.base, path_of(&secret)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
    }

    // The fetch was recorded.
    let feeds = f.h.state.feeds().unwrap();
    assert!(feeds[0].last_fetched_at.is_some());
}

#[tokio::test]
async fn rotation_and_revocation_take_effect_at_once() {
    let f = Feeds::start().await;
    let http = Served::start(f.service.clone()).await;
    let old = f.create("frank");
    assert_eq!(http.get(&path_of(&old), None).await.status(), 200);

    let new = crmsync::ics::rotate_feed(&f.h.state, &user("frank"), f.h.now)
        .unwrap()
        .unwrap();
    assert_ne!(old, new);
    assert_eq!(http.get(&path_of(&old), None).await.status(), 404);
    assert_eq!(http.get(&path_of(&new), None).await.status(), 200);

    assert!(f.h.state.revoke_feed(&user("frank")).unwrap());
    assert_eq!(http.get(&path_of(&new), None).await.status(), 404);
    assert!(
        crmsync::ics::rotate_feed(&f.h.state, &user("frank"), f.h.now)
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_deactivated_user_gets_404_at_once_and_the_next_pass_deletes_the_secret() {
    let f = Feeds::start().await;
    let http = Served::start(f.service.clone()).await;
    let frank = f.create("frank");
    let hank = f.create("hank");
    let erin = f.create("erin");
    for s in [&frank, &hank, &erin] {
        assert_eq!(http.get(&path_of(s), None).await.status(), 200);
    }

    // Frank is deactivated and Hank removed from the CRM.
    let mut doc = feed_org();
    let users = doc["users"].as_array_mut().unwrap();
    for u in users.iter_mut() {
        if u["id"] == "frank" {
            u["active"] = json!(false);
        }
    }
    users.retain(|u| u["id"] != "hank");
    for kind in ["contacts", "events", "organizations"] {
        for r in doc[kind].as_array_mut().unwrap() {
            if r["owner"] == "hank" {
                r["owner"] = json!("alice");
            }
            if let Some(a) = r.get_mut("attendees").and_then(Value::as_array_mut) {
                a.retain(|x| x["user"] != "hank");
            }
        }
    }
    f.h.load(&doc);
    refresh_mirror(&f.h);

    // At once, from the mirror: 404; the secrets are still stored until the next pass.
    assert_eq!(http.get(&path_of(&frank), None).await.status(), 404);
    assert_eq!(http.get(&path_of(&hank), None).await.status(), 404);
    assert_eq!(http.get(&path_of(&erin), None).await.status(), 200);
    assert_eq!(f.h.state.feeds().unwrap().len(), 3);

    f.h.sync().await;
    let left: Vec<String> =
        f.h.state
            .feeds()
            .unwrap()
            .into_iter()
            .map(|r| r.user_id)
            .collect();
    assert_eq!(left, vec!["erin".to_owned()]);
    let revoked: Vec<_> =
        f.h.state
            .audit_entries(None, None, 1000)
            .unwrap()
            .into_iter()
            .filter(|a| a.action == "feed_revoked")
            .map(|a| {
                (
                    a.user_id.unwrap(),
                    a.detail["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    assert_eq!(
        revoked,
        vec![
            ("frank".to_owned(), "user inactive in the CRM".to_owned()),
            ("hank".to_owned(), "user removed from the CRM".to_owned())
        ]
    );
    // Reactivating Frank does not bring the old secret back.
    f.h.load(&feed_org());
    refresh_mirror(&f.h);
    assert_eq!(http.get(&path_of(&frank), None).await.status(), 404);
}

#[tokio::test]
async fn a_dry_run_revokes_nothing() {
    let f = Feeds::start().await;
    f.create("frank");
    let mut doc = feed_org();
    for u in doc["users"].as_array_mut().unwrap() {
        if u["id"] == "frank" {
            u["active"] = json!(false);
        }
    }
    f.h.load(&doc);
    f.h.sync_with(&crmsync::sync::engine::SyncOptions {
        dry_run: true,
        ..Default::default()
    })
    .await;
    assert_eq!(f.h.state.feeds().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

/// Everything crmsync and axum log in this test binary, at every level.
fn captured_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "crmsync=trace,axum=trace",
            ))
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_name_the_user_and_never_the_secret() {
    let logs = captured_logs();
    let f = Feeds::start().await;
    let http = Served::start(f.service.clone()).await;
    let secret = f.create("frank");
    let unknown = FeedSecret::generate().unwrap();
    assert_eq!(http.get(&path_of(&secret), None).await.status(), 200);
    assert_eq!(http.get(&path_of(&unknown), None).await.status(), 404);
    let rotated = crmsync::ics::rotate_feed(&f.h.state, &user("frank"), f.h.now)
        .unwrap()
        .unwrap();
    assert_eq!(http.get(&path_of(&secret), None).await.status(), 404);
    assert_eq!(http.get(&path_of(&rotated), None).await.status(), 200);
    f.h.sync().await;

    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("ics feed served") && text.contains("user=frank"),
        "the feed logs at all: {text}"
    );
    for s in [&secret, &unknown, &rotated] {
        assert!(!text.contains(s.expose()), "a secret in the logs");
        assert!(
            !text.contains(s.hash().as_str()),
            "a secret's hash in the logs"
        );
    }
}
