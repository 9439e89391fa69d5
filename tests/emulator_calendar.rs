//! Calendar v3 strictness, through the official `google-calendar3` hub (and reqwest only for
//! what the hub cannot express: If-Match and batch).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use crmsync::emulator::{ApiFamily, EmulatorOptions, EmulatorSettings, QuotaConfig};
use google_calendar3::api::{AclRule, AclRuleScope, Calendar, Event};
use serde_json::Value;

fn unlimited() -> EmulatorOptions {
    EmulatorOptions {
        settings: EmulatorSettings {
            quota: QuotaConfig::unlimited(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// 600 events, maxResults 250: three pages, nextPageToken on the first two, nextSyncToken only
/// on the last; then an incremental listing shows updates and deletions (cancelled).
#[tokio::test]
async fn paged_full_listing_then_incremental_with_deletions() {
    let env = start_with(unlimited()).await;
    let cal = env.calendar(ALICE).await;
    for i in 0..600 {
        let e = event(
            Some(&format!("evt{i:05}")),
            base_time() + Duration::hours(i),
            &format!("c{i}"),
        );
        cal.events().insert(e, "primary").doit().await.unwrap();
    }
    let mut pages = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut call = cal.events().list("primary").max_results(250);
        if let Some(t) = &page_token {
            call = call.page_token(t);
        }
        let (_, page) = call.doit().await.unwrap();
        pages.push(page.clone());
        match page.next_page_token {
            Some(t) => {
                assert!(
                    page.next_sync_token.is_none(),
                    "sync token only on the last page"
                );
                page_token = Some(t);
            }
            None => break,
        }
    }
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p.items.as_ref().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![250, 250, 100]);
    let sync_token = pages[2]
        .next_sync_token
        .clone()
        .expect("last page has nextSyncToken");
    let mut ids: Vec<String> = pages
        .iter()
        .flat_map(|p| p.items.clone().unwrap_or_default())
        .filter_map(|e| e.id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 600);

    // Changes: two updates (patch), one deletion.
    for id in ["evt00001", "evt00002"] {
        let patch = Event {
            summary: Some("changed".into()),
            ..Default::default()
        };
        cal.events()
            .patch(patch, "primary", id)
            .doit()
            .await
            .unwrap();
    }
    cal.events()
        .delete("primary", "evt00003")
        .doit()
        .await
        .unwrap();

    let (_, delta) = cal
        .events()
        .list("primary")
        .sync_token(&sync_token)
        .doit()
        .await
        .unwrap();
    let items = delta.items.unwrap_or_default();
    assert_eq!(items.len(), 3);
    let deleted = items
        .iter()
        .find(|e| e.id.as_deref() == Some("evt00003"))
        .unwrap();
    assert_eq!(deleted.status.as_deref(), Some("cancelled"));
    assert!(items
        .iter()
        .filter(|e| e.id.as_deref() != Some("evt00003"))
        .all(|e| e.summary.as_deref() == Some("changed")));
    let next = delta
        .next_sync_token
        .expect("incremental listing ends with a token");

    // Nothing changed since: empty incremental listing.
    let (_, empty) = cal
        .events()
        .list("primary")
        .sync_token(&next)
        .doit()
        .await
        .unwrap();
    assert!(empty.items.unwrap_or_default().is_empty());

    // Forbidden combinations with syncToken → 400.
    let err = cal
        .events()
        .list("primary")
        .sync_token(&next)
        .time_min(base_time())
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
    let err = cal
        .events()
        .list("primary")
        .sync_token(&next)
        .add_private_extended_property("crmsync_id=c1")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
    let err = cal
        .events()
        .list("primary")
        .sync_token(&next)
        .order_by("updated")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
}

/// Expired tokens (on demand and by age) answer 410 fullSyncRequired; a full listing then
/// recovers with a fresh token.
#[tokio::test]
async fn expired_sync_token_is_410_then_full_listing_recovers() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    cal.events()
        .insert(event(Some("aaaaa1"), base_time(), "x"), "primary")
        .doit()
        .await
        .unwrap();
    let (_, full) = cal.events().list("primary").doit().await.unwrap();
    let token = full.next_sync_token.unwrap();

    env.emu
        .expire_sync_tokens(Some(ALICE), Some(ApiFamily::Calendar));
    let err = cal
        .events()
        .list("primary")
        .sync_token(&token)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(410));
    assert_eq!(reason(&err).as_deref(), Some("fullSyncRequired"));

    let (_, full) = cal.events().list("primary").doit().await.unwrap();
    assert_eq!(full.items.unwrap().len(), 1);
    let fresh = full.next_sync_token.unwrap();
    cal.events()
        .list("primary")
        .sync_token(&fresh)
        .doit()
        .await
        .unwrap();

    // Age-based expiry on the emulator clock.
    let mut settings = env.emu.settings();
    settings.calendar_sync_token_max_age_secs = Some(3600);
    env.emu.set_settings(settings);
    env.emu
        .advance_clock(std::time::Duration::from_secs(2 * 3600));
    let err = cal
        .events()
        .list("primary")
        .sync_token(&fresh)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(410));

    // A garbled token is a 400, not a 410.
    let err = cal
        .events()
        .list("primary")
        .sync_token("garbage")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
}

/// If-Match with a stale etag → 412 on update, patch and delete; the current etag works.
#[tokio::test]
async fn stale_if_match_is_412() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    let (_, created) = cal
        .events()
        .insert(event(Some("etagtest1"), base_time(), "e"), "primary")
        .doit()
        .await
        .unwrap();
    let old_etag = created.etag.clone().unwrap();
    let (_, patched) = cal
        .events()
        .patch(
            Event {
                summary: Some("v2".into()),
                ..Default::default()
            },
            "primary",
            "etagtest1",
        )
        .doit()
        .await
        .unwrap();
    let new_etag = patched.etag.clone().unwrap();
    assert_ne!(old_etag, new_etag);

    let token = env.token(ALICE).await;
    let url = env.url("/calendar/v3/calendars/primary/events/etagtest1");
    let mut body = patched.clone();
    body.summary = Some("v3".into());
    for method in [reqwest::Method::PUT, reqwest::Method::PATCH] {
        let r = env
            .http
            .request(method.clone(), &url)
            .bearer_auth(&token)
            .header("If-Match", &old_etag)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 412, "{method}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["errors"][0]["reason"], "conditionNotMet");
    }
    let r = env
        .http
        .delete(&url)
        .bearer_auth(&token)
        .header("If-Match", &old_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let r = env
        .http
        .put(&url)
        .bearer_auth(&token)
        .header("If-Match", &new_etag)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let updated: Event = r.json().await.unwrap();
    assert_eq!(updated.summary.as_deref(), Some("v3"));

    // events.update through the hub replaces the event; an older sequence is refused.
    let mut replacement = updated.clone();
    replacement.description = Some("replaced".into());
    replacement.summary = None;
    let (_, replaced) = cal
        .events()
        .update(replacement.clone(), "primary", "etagtest1")
        .doit()
        .await
        .unwrap();
    assert_eq!(replaced.summary, None, "update clears omitted fields");
    assert_eq!(replaced.description.as_deref(), Some("replaced"));
    let mut moved = replaced.clone();
    moved.start = Some(timed(base_time(), 30));
    moved.end = Some(timed(base_time(), 90));
    let (_, moved) = cal
        .events()
        .update(moved, "primary", "etagtest1")
        .doit()
        .await
        .unwrap();
    assert_eq!(moved.sequence, Some(1), "time changes bump the sequence");
    let mut stale_sequence = moved.clone();
    stale_sequence.sequence = Some(0);
    let err = cal
        .events()
        .update(stale_sequence, "primary", "etagtest1")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err).as_deref(), Some("invalidSequenceValue"));
}

/// Id rules: base32hex, 5–1024 chars; 409 on an existing id and on a deleted (reserved) one;
/// a deleted event is still readable as cancelled; deleting it again is 410.
#[tokio::test]
async fn event_ids_are_validated_and_deleted_ids_stay_reserved() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    for bad in ["abcd", "ABCDE", "abcdw", "abc-def"] {
        let err = cal
            .events()
            .insert(event(Some(bad), base_time(), "x"), "primary")
            .doit()
            .await
            .unwrap_err();
        assert_eq!(status(&err), Some(400), "{bad}");
    }
    cal.events()
        .insert(event(Some("reserved01"), base_time(), "x"), "primary")
        .doit()
        .await
        .unwrap();
    let err = cal
        .events()
        .insert(event(Some("reserved01"), base_time(), "x"), "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(409));
    assert_eq!(
        error_body(&err).unwrap()["error"]["message"],
        "The requested identifier already exists."
    );
    cal.events()
        .delete("primary", "reserved01")
        .doit()
        .await
        .unwrap();
    let (_, got) = cal
        .events()
        .get("primary", "reserved01")
        .doit()
        .await
        .unwrap();
    assert_eq!(got.status.as_deref(), Some("cancelled"));
    let err = cal
        .events()
        .insert(event(Some("reserved01"), base_time(), "x"), "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(409), "deleted ids stay reserved");
    let err = cal
        .events()
        .delete("primary", "reserved01")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(410));

    let (_, listed) = cal.events().list("primary").doit().await.unwrap();
    assert!(
        listed.items.unwrap_or_default().is_empty(),
        "cancelled hidden by default"
    );
    let (_, listed) = cal
        .events()
        .list("primary")
        .show_deleted(true)
        .doit()
        .await
        .unwrap();
    assert_eq!(listed.items.unwrap().len(), 1);
    let err = cal
        .events()
        .get("primary", "nosuchevent")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(404));
}

/// privateExtendedProperty, timeMin/timeMax and maxResults bounds; required fields.
#[tokio::test]
async fn list_filters_and_validation() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    for i in 0..5 {
        cal.events()
            .insert(
                event(None, base_time() + Duration::days(i), &format!("crm{i}")),
                "primary",
            )
            .doit()
            .await
            .unwrap();
    }
    let (_, one) = cal
        .events()
        .list("primary")
        .add_private_extended_property("crmsync_id=crm3")
        .doit()
        .await
        .unwrap();
    let items = one.items.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].summary.as_deref(), Some("Meeting crm3"));

    let (_, window) = cal
        .events()
        .list("primary")
        .time_min(base_time() + Duration::days(1))
        .time_max(base_time() + Duration::days(3))
        .doit()
        .await
        .unwrap();
    assert_eq!(window.items.unwrap().len(), 2, "days 1 and 2");

    let err = cal
        .events()
        .list("primary")
        .max_results(0)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
    let (_, capped) = cal
        .events()
        .list("primary")
        .max_results(100_000)
        .doit()
        .await
        .unwrap();
    assert_eq!(capped.items.unwrap().len(), 5);
    let err = cal
        .events()
        .list("primary")
        .order_by("startTime")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(
        status(&err),
        Some(400),
        "startTime ordering needs singleEvents"
    );

    let mut no_end = event(None, base_time(), "x");
    no_end.end = None;
    let err = cal
        .events()
        .insert(no_end, "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
    let mut backwards = event(None, base_time(), "x");
    backwards.end = Some(timed(base_time(), -60));
    let err = cal
        .events()
        .insert(backwards, "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err).as_deref(), Some("timeRangeEmpty"));
}

/// Recurring events: timeZone required; instances expand the RRULE with instance ids,
/// recurringEventId and originalStartTime; a cancelled instance keeps its identity.
#[tokio::test]
async fn recurring_events_and_instances() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    let mut series = event(Some("series001"), base_time(), "r");
    series.recurrence = Some(vec!["RRULE:FREQ=WEEKLY;COUNT=4".into()]);
    let mut no_zone = series.clone();
    no_zone.start.as_mut().unwrap().time_zone = None;
    let err = cal
        .events()
        .insert(no_zone, "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
    let mut bad_rule = series.clone();
    bad_rule.recurrence = Some(vec!["RRULE:FREQ=SOMETIMES".into()]);
    let err = cal
        .events()
        .insert(bad_rule, "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));

    cal.events().insert(series, "primary").doit().await.unwrap();
    let (_, full) = cal.events().list("primary").doit().await.unwrap();
    let token = full.next_sync_token.unwrap();
    let (_, inst) = cal
        .events()
        .instances("primary", "series001")
        .doit()
        .await
        .unwrap();
    let items = inst.items.unwrap();
    let ids: Vec<&str> = items.iter().filter_map(|e| e.id.as_deref()).collect();
    assert_eq!(
        ids,
        vec![
            "series001_20250602T080000Z",
            "series001_20250609T080000Z",
            "series001_20250616T080000Z",
            "series001_20250623T080000Z"
        ]
    );
    assert!(items
        .iter()
        .all(|e| e.recurring_event_id.as_deref() == Some("series001")
            && e.original_start_time.is_some()));

    cal.events()
        .delete("primary", "series001_20250609T080000Z")
        .doit()
        .await
        .unwrap();
    let (_, inst) = cal
        .events()
        .instances("primary", "series001")
        .doit()
        .await
        .unwrap();
    assert_eq!(inst.items.unwrap().len(), 3);
    let (_, delta) = cal
        .events()
        .list("primary")
        .sync_token(&token)
        .doit()
        .await
        .unwrap();
    let items = delta.items.unwrap();
    assert_eq!(items.len(), 1);
    let cancelled = &items[0];
    assert_eq!(cancelled.id.as_deref(), Some("series001_20250609T080000Z"));
    assert_eq!(cancelled.status.as_deref(), Some("cancelled"));
    assert_eq!(cancelled.recurring_event_id.as_deref(), Some("series001"));
    assert_eq!(
        cancelled.original_start_time.as_ref().unwrap().date_time,
        Some(base_time() + Duration::weeks(1))
    );

    // singleEvents expands series in listings.
    let (_, single) = cal
        .events()
        .list("primary")
        .single_events(true)
        .order_by("startTime")
        .doit()
        .await
        .unwrap();
    assert_eq!(single.items.unwrap().len(), 3);
}

/// Secondary calendars, calendarList, ACLs, primary protection, creation quota.
#[tokio::test]
async fn calendars_acl_and_creation_quota() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    let (_, created) = cal
        .calendars()
        .insert(Calendar {
            summary: Some("CRM".into()),
            time_zone: Some("Europe/Berlin".into()),
            ..Default::default()
        })
        .doit()
        .await
        .unwrap();
    let id = created.id.clone().unwrap();
    assert!(id.ends_with("@group.calendar.google.com"));
    let (_, list) = cal.calendar_list().list().doit().await.unwrap();
    assert_eq!(list.items.unwrap().len(), 2);

    let (_, acl) = cal.acl().list(&id).doit().await.unwrap();
    assert_eq!(acl.items.unwrap()[0].role.as_deref(), Some("owner"));
    let (_, rule) = cal
        .acl()
        .insert(
            AclRule {
                role: Some("reader".into()),
                scope: Some(AclRuleScope {
                    type_: Some("user".into()),
                    value: Some("carol@example.com".into()),
                }),
                ..Default::default()
            },
            &id,
        )
        .doit()
        .await
        .unwrap();
    assert_eq!(rule.id.as_deref(), Some("user:carol@example.com"));
    cal.acl()
        .delete(&id, "user:carol@example.com")
        .doit()
        .await
        .unwrap();
    let (_, acl) = cal.acl().list(&id).doit().await.unwrap();
    assert_eq!(acl.items.unwrap().len(), 1);

    cal.events()
        .insert(event(Some("incal1"), base_time(), "x"), &id)
        .doit()
        .await
        .unwrap();
    let err = cal.calendars().delete("primary").doit().await.unwrap_err();
    assert_eq!(status(&err), Some(400));
    cal.calendars().delete(&id).doit().await.unwrap();
    let err = cal.events().get(&id, "incal1").doit().await.unwrap_err();
    assert_eq!(
        status(&err),
        Some(404),
        "deleting a calendar deletes its events"
    );

    // 25 creations in the window pass (one already made), the next is quotaExceeded.
    for i in 1..25 {
        cal.calendars()
            .insert(Calendar {
                summary: Some(format!("c{i}")),
                ..Default::default()
            })
            .doit()
            .await
            .unwrap();
    }
    let err = cal
        .calendars()
        .insert(Calendar {
            summary: Some("one too many".into()),
            ..Default::default()
        })
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(403));
    assert_eq!(reason(&err).as_deref(), Some("quotaExceeded"));
    env.emu.advance_clock(std::time::Duration::from_secs(3601));
    cal.calendars()
        .insert(Calendar {
            summary: Some("later".into()),
            ..Default::default()
        })
        .doit()
        .await
        .unwrap();
}

fn batch_body(boundary: &str, parts: &[(String, String, Option<Value>)]) -> String {
    let mut body = String::new();
    for (i, (method, path, json)) in parts.iter().enumerate() {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <item{}>\r\n\r\n{method} {path} HTTP/1.1\r\n",
            i + 1
        ));
        match json {
            Some(v) => body.push_str(&format!("Content-Type: application/json\r\n\r\n{v}\r\n")),
            None => body.push_str("\r\n"),
        }
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    body
}

/// Batch: parts answered in order as application/http, each counted as an API call; more
/// than 1000 parts is refused.
#[tokio::test]
async fn batch_parts_are_answered_in_order_and_counted() {
    let env = start().await;
    let token = env.token(ALICE).await;
    let ev = serde_json::to_value(event(Some("batch00001"), base_time(), "b")).unwrap();
    let parts = vec![
        (
            "POST".to_string(),
            "/calendar/v3/calendars/primary/events".to_string(),
            Some(ev.clone()),
        ),
        (
            "GET".to_string(),
            "/calendar/v3/calendars/primary/events/batch00001".to_string(),
            None,
        ),
        (
            "POST".to_string(),
            "/calendar/v3/calendars/primary/events".to_string(),
            Some(ev),
        ),
        (
            "GET".to_string(),
            "/calendar/v3/calendars/primary/events/nothere1".to_string(),
            None,
        ),
    ];
    env.emu.reset_counters();
    let r = env
        .http
        .post(env.url("/batch/calendar/v3"))
        .bearer_auth(&token)
        .header("Content-Type", "multipart/mixed; boundary=xyz")
        .body(batch_body("xyz", &parts))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("multipart/mixed; boundary="));
    let text = r.text().await.unwrap();
    let statuses: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .map(|l| &l[9..12])
        .collect();
    assert_eq!(statuses, vec!["200", "200", "409", "404"]);
    let ids: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("Content-ID:"))
        .collect();
    assert_eq!(ids[0], "Content-ID: <response-item1>");
    assert!(text.contains("application/http"));
    let counters = env.emu.counters();
    assert_eq!(counters.api_calls, 4);
    assert_eq!(counters.endpoint("calendar.batch"), 1);
    assert_eq!(counters.endpoint("calendar.events.insert"), 2);

    let many: Vec<(String, String, Option<Value>)> = (0..1001)
        .map(|_| {
            (
                "GET".to_string(),
                "/calendar/v3/calendars/primary/events/batch00001".to_string(),
                None,
            )
        })
        .collect();
    let r = env
        .http
        .post(env.url("/batch/calendar/v3"))
        .bearer_auth(&token)
        .header("Content-Type", "multipart/mixed; boundary=xyz")
        .body(batch_body("xyz", &many))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
