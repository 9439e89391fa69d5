//! End-to-end stories for events: write-back and revert of phone edits, attendees, phone-created
//! events, recurrence and all-day events, the window, phone deletes under `restore`, and
//! single-instance edits of a series — through the real engine, clients and the emulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sync_support;

use chrono::{NaiveDate, TimeZone, Utc};
use crmsync::model::{EventTime, ObjectKind, SyncedEvent};
use crmsync::scope::GoogleDelete;
use reqwest::Method;
use serde_json::json;
use sync_support::*;

fn at(s: &str) -> EventTime {
    EventTime::DateTime(chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap())
}

/// org() plus: frank is a user attendee of hank's e2 (read-only for him), e1 is a monthly
/// series, and frank owns an all-day event e3.
fn events_org() -> serde_json::Value {
    let mut doc = org();
    doc["events"][0]["recurrence"] = json!(["RRULE:FREQ=MONTHLY;COUNT=6"]);
    doc["events"][1]["attendees"] = json!([{"user": "hank"}, {"contact": "c2"}, {"user": "frank"}]);
    let mut e3 = doc["events"][0].clone();
    e3["id"] = json!("e3");
    e3["title"] = json!("Offsite");
    e3["all_day"] = json!(true);
    e3["start"] = json!("2026-12-10");
    e3["end"] = json!("2026-12-12");
    e3["recurrence"] = json!([]);
    e3["attendees"] = json!([]);
    doc["events"].as_array_mut().unwrap().push(e3);
    doc
}

#[tokio::test(flavor = "current_thread")]
async fn an_editors_phone_edit_of_an_event_is_written_back() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    h.phone_edit_event("frank", "e1", |e| {
        e.title = "Quarterly review (moved)".into();
        e.location = "Room 4".into();
        e.start = at("2026-12-02T10:00:00");
        e.end = at("2026-12-02T11:30:00");
    })
    .await;
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(user_report(&report, "frank").events.written_back, 1);
    let e1 = crm_event(&h, "e1").unwrap();
    assert_eq!(e1.title, "Quarterly review (moved)");
    assert_eq!(e1.location, "Room 4");
    assert_eq!(e1.start, at("2026-12-02T10:00:00"));
    assert_eq!(e1.end, at("2026-12-02T11:30:00"));
    assert_eq!(e1.time_zone, "Europe/London");
    // The others get it as a CRM change on the next pass; frank's phone is not echoed.
    let next = h.sync().await;
    assert_all_synced(&next);
    assert_eq!(user_report(&next, "frank").events.updated, 0);
    let erin = h.phone_event("erin", "e1").await.unwrap();
    assert_eq!(erin.title, "Quarterly review (moved)");
    assert_eq!(erin.start, at("2026-12-02T10:00:00"));
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn a_read_only_attendees_phone_edit_of_an_event_is_reverted() {
    let h = Harness::start(events_org()).await;
    assert_all_synced(&h.sync().await);
    // frank only attends hank's e2: read, not edit.
    assert!(ids(&h.events("frank")).contains(&"e2".to_string()));
    h.phone_edit_event("frank", "e2", |e| {
        e.title = "Cancelled!".into();
        e.location = "Nowhere".into();
    })
    .await;
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(user_report(&report, "frank").events.reverted, 1);
    assert_eq!(crm_event(&h, "e2").unwrap().title, "West pipeline");
    let phone = h.phone_event("frank", "e2").await.unwrap();
    assert_eq!(phone.title, "West pipeline");
    assert_eq!(phone.location, "Globex HQ");
    assert!(audit_actions(&h, "frank").contains(&"reverted event:e2".to_string()));
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn attendees_are_never_google_attendees_and_only_readable_contacts_are_listed() {
    let h = Harness::start(events_org()).await;
    assert_all_synced(&h.sync().await);
    for user in ["alice", "erin", "frank", "hank"] {
        let stored = h.stored_events(user);
        assert!(!stored.is_empty(), "{user} has events");
        for e in &stored {
            assert!(
                e.attendees.as_ref().is_none_or(|a| a.is_empty()),
                "{user}: {:?} has Google attendees {:?}",
                e.summary,
                e.attendees
            );
        }
    }
    let description_of = |user: &str, title: &str| {
        h.stored_events(user)
            .into_iter()
            .find(|e| e.summary.as_deref() == Some(title))
            .and_then(|e| e.description)
            .unwrap_or_default()
    };
    // hank owns e2 and c2: he sees Hal (c2) in the attendee block.
    let hank = description_of("hank", "West pipeline");
    assert!(hank.contains("hal@initech.example"), "{hank}");
    assert!(hank.contains("frank@acme.example"), "{hank}");
    // frank attends e2 but may not read c2: the users are listed, Hal is not.
    let frank = description_of("frank", "West pipeline");
    assert!(frank.contains("hank@acme.example"), "{frank}");
    assert!(!frank.contains("hal@initech.example"), "{frank}");
    assert!(!frank.contains("Hal"), "{frank}");
    let synced = h.phone_event("frank", "e2").await.unwrap();
    assert!(synced
        .attendees
        .iter()
        .all(|a| a.email != "hal@initech.example"));
    // erin reads c1 (frank's, below her): Ada is listed on e1.
    let erin = description_of("erin", "Quarterly review");
    assert!(erin.contains("ada@globex.example"), "{erin}");
}

#[tokio::test(flavor = "current_thread")]
async fn an_event_created_on_the_phone_is_imported_with_the_create_right() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let google_id = h
        .phone_create_event(
            "frank",
            json!({
                "summary": "Lunch with Ada",
                "location": "Canteen",
                "start": {"dateTime": "2026-12-03T12:00:00Z", "timeZone": "Europe/London"},
                "end": {"dateTime": "2026-12-03T13:00:00Z", "timeZone": "Europe/London"},
            }),
        )
        .await;
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(user_report(&report, "frank").events.imported, 1);
    let (model, _) = h.crm().snapshot().unwrap();
    let imported: Vec<_> = model
        .events
        .values()
        .filter(|e| e.title == "Lunch with Ada")
        .collect();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].owner.as_str(), "frank");
    assert_eq!(imported[0].location, "Canteen");
    assert_eq!(imported[0].start, at("2026-12-03T12:00:00"));
    let id = imported[0].id.to_string();
    // The phone event is now ours (marker), same Google id; erin gets it next pass.
    assert_eq!(h.event_google_id("frank", &id), google_id);
    assert!(ids(&h.events("frank")).contains(&id));
    let again = h.sync().await;
    assert_all_synced(&again);
    assert_eq!(user_report(&again, "frank").total().imported, 0);
    assert!(ids(&h.events("erin")).contains(&id));
    assert_eq!(h.events("frank").len(), 2, "no duplicate on frank's phone");
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn an_event_created_on_the_phone_without_the_create_right_is_left_and_audited_once() {
    let mut doc = org();
    doc["profiles"][0]["objects"]["event"]["create"] = json!(false);
    let h = Harness::start(doc).await;
    assert_all_synced(&h.sync().await);
    h.phone_create_event(
        "frank",
        json!({
            "summary": "Dentist",
            "start": {"dateTime": "2026-12-04T08:00:00Z"},
            "end": {"dateTime": "2026-12-04T09:00:00Z"},
        }),
    )
    .await;
    assert_all_synced(&h.sync().await);
    assert_all_synced(&h.sync().await);
    let (model, _) = h.crm().snapshot().unwrap();
    assert!(!model.events.values().any(|e| e.title == "Dentist"));
    let reported = audit_of(&h, "frank", "not_imported");
    assert_eq!(reported.len(), 1, "{reported:#?}");
    assert!(reported[0].detail["why"]
        .as_str()
        .unwrap()
        .contains("may not create"));
    // Still on the phone, untouched.
    assert!(h
        .stored_events("frank")
        .iter()
        .any(|e| e.summary.as_deref() == Some("Dentist")));
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn recurring_and_all_day_events_round_trip_without_echo() {
    let h = Harness::start(events_org()).await;
    assert_all_synced(&h.sync().await);
    let stored = h.stored_events("frank");
    let series = stored
        .iter()
        .find(|e| e.summary.as_deref() == Some("Quarterly review"))
        .unwrap();
    assert_eq!(
        series.recurrence.as_deref(),
        Some(&["RRULE:FREQ=MONTHLY;COUNT=6".to_string()][..])
    );
    assert_eq!(
        series.start.as_ref().unwrap().time_zone.as_deref(),
        Some("Europe/London")
    );
    let offsite = stored
        .iter()
        .find(|e| e.summary.as_deref() == Some("Offsite"))
        .unwrap();
    assert_eq!(
        offsite.start.as_ref().unwrap().date,
        Some(NaiveDate::from_ymd_opt(2026, 12, 10).unwrap())
    );
    assert_eq!(
        offsite.end.as_ref().unwrap().date,
        Some(NaiveDate::from_ymd_opt(2026, 12, 12).unwrap())
    );
    assert!(offsite.start.as_ref().unwrap().date_time.is_none());
    let second = h.sync().await;
    assert!(is_quiet(&second), "echo: {second:#?}");

    // A phone edit of the all-day event (one more day) is written back as dates.
    h.phone_edit_event("frank", "e3", |e| {
        e.end = EventTime::Date(NaiveDate::from_ymd_opt(2026, 12, 13).unwrap())
    })
    .await;
    assert_all_synced(&h.sync().await);
    let e3 = crm_event(&h, "e3").unwrap();
    assert!(e3.all_day);
    assert_eq!(
        e3.end,
        EventTime::Date(NaiveDate::from_ymd_opt(2026, 12, 13).unwrap())
    );
    // A CRM change to the series keeps its rule.
    let mut doc = events_org();
    doc["events"][0]["recurrence"] = json!(["RRULE:FREQ=WEEKLY;COUNT=3"]);
    doc["events"][2]["end"] = json!("2026-12-13");
    h.load(&doc);
    assert_all_synced(&h.sync().await);
    let series = h.phone_event("erin", "e1").await.unwrap();
    assert_eq!(
        series.recurrence,
        vec!["RRULE:FREQ=WEEKLY;COUNT=3".to_string()]
    );
    assert_all_synced(&h.sync().await);
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn an_event_that_ages_out_of_the_window_stays_on_the_phone() {
    let mut doc = org();
    let mut h = Harness::start(doc.clone()).await;
    assert_all_synced(&h.sync().await);
    let before = h.event_google_id("frank", "e1");
    // Half a year later e1 (2026-12-01) is far behind the 30-day window.
    h.now = Utc.with_ymd_and_hms(2027, 6, 1, 9, 0, 0).unwrap();
    let report = h.sync().await;
    assert_all_synced(&report);
    assert!(is_quiet(&report), "{report:#?}");
    assert_eq!(ids(&h.events("frank")), vec!["e1"]);
    assert_eq!(h.event_google_id("frank", "e1"), before);
    assert!(audit_of(&h, "frank", "pulled_back").is_empty());
    // A correction made in the CRM still reaches the retained copy; nothing is recreated.
    doc["events"][0]["description"] = json!("Minutes attached.");
    h.load(&doc);
    let report = h.sync().await;
    assert_all_synced(&report);
    let frank = user_report(&report, "frank");
    assert_eq!((frank.events.created, frank.events.deleted), (0, 0));
    assert_eq!(h.event_google_id("frank", "e1"), before);
    assert_eq!(
        h.phone_event("frank", "e1").await.unwrap().description,
        "Minutes attached."
    );
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn an_aged_out_event_deleted_on_the_phone_is_not_recreated() {
    let mut h = Harness::start(org()).await;
    h.config.scope.org.google_delete = Some(GoogleDelete::Restore);
    assert_all_synced(&h.sync().await);
    h.now = Utc.with_ymd_and_hms(2027, 6, 1, 9, 0, 0).unwrap();
    h.phone_delete_event("frank", "e1").await;
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(user_report(&report, "frank").events.created, 0);
    assert!(
        h.events("frank").is_empty(),
        "not restored outside the window"
    );
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn a_phone_deleted_event_under_restore_comes_back_with_a_new_id() {
    let mut h = Harness::start(org()).await;
    h.config.scope.org.google_delete = Some(GoogleDelete::Restore);
    assert_all_synced(&h.sync().await);
    let old = h.event_google_id("frank", "e1");
    h.phone_delete_event("frank", "e1").await;
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(user_report(&report, "frank").events.created, 1);
    let link = h
        .link_of::<SyncedEvent>("frank", ObjectKind::Event, "e1")
        .unwrap();
    assert_eq!(link.generation, 1);
    let new = link.google_id.unwrap();
    assert_ne!(new, old, "the deleted id stays reserved");
    assert_eq!(ids(&h.events("frank")), vec!["e1"]);
    // The old id is still a cancelled event in Google.
    let (status, v) = h
        .raw(
            "frank",
            Method::GET,
            &format!("{}/{old}", h.events_path("frank")),
            None,
        )
        .await;
    assert_eq!((status, v["status"].as_str()), (200, Some("cancelled")));
    assert!(audit_actions(&h, "frank").contains(&"restored event:e1".to_string()));
    assert!(crm_event(&h, "e1").is_some());
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn single_instance_edits_of_a_series_are_reported_once_not_imported() {
    let h = Harness::start(events_org()).await;
    assert_all_synced(&h.sync().await);
    let series = h.event_google_id("frank", "e1");
    let (status, v) = h
        .raw(
            "frank",
            Method::GET,
            &format!("{}/{series}/instances", h.events_path("frank")),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let instances = v["items"].as_array().unwrap();
    assert_eq!(instances.len(), 6);
    let mut second = instances[1].clone();
    second["summary"] = json!("Quarterly review (special)");
    let path = format!(
        "{}/{}",
        h.events_path("frank"),
        second["id"].as_str().unwrap()
    );
    let (status, v) = h.raw("frank", Method::PUT, &path, Some(second)).await;
    assert_eq!(status, 200, "{v}");

    let report = h.sync().await;
    assert_all_synced(&report);
    let frank = user_report(&report, "frank");
    assert_eq!((frank.events.imported, frank.events.written_back), (0, 0));
    assert_eq!(crm_event(&h, "e1").unwrap().title, "Quarterly review");
    let (model, _) = h.crm().snapshot().unwrap();
    assert!(!model.events.values().any(|e| e.title.contains("special")));
    let reported = audit_of(&h, "frank", "not_imported");
    assert_eq!(reported.len(), 1, "{reported:#?}");
    assert!(reported[0].detail["why"]
        .as_str()
        .unwrap()
        .contains("single occurrence"));
    // Reported once; the series itself is untouched and nothing more happens.
    assert!(is_quiet(&h.sync().await));
    assert_eq!(audit_of(&h, "frank", "not_imported").len(), 1);
    assert_eq!(
        h.phone_event("frank", "e1").await.unwrap().title,
        "Quarterly review"
    );
}
