//! `GoogleRemote` on Calendar, against the emulator through the real clients: the dedicated
//! calendar, event writes through the batch endpoint with per-op results, listings (full,
//! paged, incremental, expired token) and the echo law.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod google_remote_support;

use chrono::NaiveDate;
use crmsync::emulator::ApiFamily;
use crmsync::google::mapping::canonical_event;
use crmsync::sync::remote::{EventOp, OpOutcome, Remote, RemoteChange, RemoteErrorKind};
use google_remote_support::*;
use std::collections::HashMap;

#[tokio::test]
async fn the_dedicated_calendar_is_made_once_and_found_again() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let id = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    // Idempotent with the stored id, and found by its marker after a state loss.
    assert_eq!(
        remote
            .ensure_calendar(&alice, "CRM", Some(&id))
            .await
            .unwrap(),
        id
    );
    assert_eq!(
        remote.ensure_calendar(&alice, "CRM", None).await.unwrap(),
        id
    );
    assert_eq!(emu.counters().endpoint("calendar.calendars.insert"), 1);
    let dump = emu.dump_user(ALICE).unwrap();
    let ours = dump
        .calendars
        .iter()
        .find(|c| c.calendar.id.as_deref() == Some(id.as_str()))
        .unwrap();
    assert_eq!(ours.calendar.summary.as_deref(), Some("CRM"));
    assert!(ours
        .calendar
        .description
        .as_deref()
        .unwrap()
        .contains("crmsync:u-alice"));

    // Another user gets a calendar of their own (the marker names the CRM user).
    let bob = user("bob@example.com");
    remote.ensure_calendar(&bob, "CRM", None).await.unwrap();
    assert_eq!(emu.counters().endpoint("calendar.calendars.insert"), 2);

    // A stored id that no longer exists: a new calendar (the old one is gone with its marker).
    let hub = crmsync::google::hub::calendar_hub(
        &emu.base_url(),
        crmsync::google::auth::impersonate(
            &crmsync::google::auth::load_service_account_key(&key_path(), Some(&emu.token_uri()))
                .await
                .unwrap(),
            ALICE,
        )
        .await
        .unwrap(),
    )
    .unwrap();
    hub.calendars().delete(&id).doit().await.unwrap();
    let again = remote
        .ensure_calendar(&alice, "CRM", Some(&id))
        .await
        .unwrap();
    assert_ne!(again, id);
    assert_eq!(
        remote.ensure_calendar(&alice, "CRM", None).await.unwrap(),
        again
    );
}

#[tokio::test]
async fn writes_go_through_the_batch_with_per_op_results_and_echo_exactly() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    // A DST-gap start (Berlin springs forward at 02:00 on 2026-03-29), an all-day event,
    // a weekly series with an exception date, unicode and attendees.
    let gap = meeting(
        "Früh\u{AD}stück 🥐",
        local(2026, 3, 29, 2, 30),
        "Europe/Berlin",
    );
    let holiday = all_day(
        "Company holiday",
        NaiveDate::from_ymd_opt(2026, 12, 24).unwrap(),
        "America/New_York",
    );
    let mut weekly = meeting("Weekly sync", local(2026, 10, 20, 9, 0), "Europe/London");
    weekly.recurrence = vec![
        "RRULE:FREQ=WEEKLY;COUNT=10".into(),
        "EXDATE;TZID=Europe/London:20261027T090000".into(),
    ];
    let ops = vec![
        EventOp::Insert {
            id: "crmgap00001".into(),
            crm_id: crm("ev-1"),
            data: gap.clone(),
        },
        EventOp::Insert {
            id: "crmhol00001".into(),
            crm_id: crm("ev-2"),
            data: holiday.clone(),
        },
        EventOp::Insert {
            id: "crmser00001".into(),
            crm_id: crm("ev-3"),
            data: weekly.clone(),
        },
    ];
    let results = remote.event_ops(&alice, &cal, &ops).await.unwrap();
    assert_eq!(results.len(), 3);
    for (result, (v, crm_id)) in
        results
            .iter()
            .zip([(&gap, "ev-1"), (&holiday, "ev-2"), (&weekly, "ev-3")])
    {
        let item = written(result);
        assert_eq!(item.data, canonical_event(v));
        assert_eq!(item.crm_id, Some(crm(crm_id)));
        assert!(!item.etag.is_empty());
    }
    // The gap time moved forward by the gap, deterministically.
    assert_eq!(
        written(&results[0]).data.start,
        crmsync::model::EventTime::DateTime(local(2026, 3, 29, 3, 30))
    );
    // One batch call, three parts; no Google attendees, ever; sendUpdates=none.
    let counters = emu.counters();
    assert_eq!(counters.endpoint("calendar.batch"), 1);
    assert_eq!(counters.endpoint("calendar.events.insert"), 3);
    let dump = emu.dump_user(ALICE).unwrap();
    for e in dump.live_events(&cal) {
        assert!(e.attendees.as_ref().is_none_or(Vec::is_empty));
        assert!(
            e.description
                .as_deref()
                .unwrap_or("")
                .contains("Attendees (from the CRM):")
                || e.summary.as_deref() == Some("Company holiday")
        );
    }

    // Echo law: a full listing gives back exactly what was written.
    let listing = remote.list_events(&alice, &cal, None).await.unwrap();
    assert!(listing.full);
    let token = listing.next_sync_token.clone().expect("a sync token");
    let by_id: HashMap<String, _> = listing
        .changes
        .iter()
        .filter_map(|c| match c {
            RemoteChange::Present(item) => Some((item.google_id.clone(), item.clone())),
            RemoteChange::Deleted { .. } => None,
        })
        .collect();
    assert_eq!(by_id.len(), 3);
    for r in &results {
        let w = written(r);
        let listed = &by_id[&w.google_id];
        assert_eq!(listed.data, w.data);
        assert_eq!(listed.etag, w.etag);
        assert_eq!(listed.crm_id, w.crm_id);
        assert!(listed.in_container);
    }

    // Re-insert → 409 AlreadyExists; stale etag → 412 PreconditionFailed; unknown → NotFound;
    // a good update and a delete succeed in the same batch.
    let etag_gap = written(&results[0]).etag.clone();
    let mut moved = gap.clone();
    moved.title = "Breakfast".into();
    moved.attendees.pop();
    let ops = vec![
        EventOp::Insert {
            id: "crmhol00001".into(),
            crm_id: crm("ev-2"),
            data: holiday.clone(),
        },
        EventOp::Update {
            id: "crmgap00001".into(),
            etag: etag_gap.clone(),
            crm_id: crm("ev-1"),
            data: moved.clone(),
        },
        EventOp::Update {
            id: "crmser00001".into(),
            etag: "\"stale\"".into(),
            crm_id: crm("ev-3"),
            data: weekly.clone(),
        },
        EventOp::Delete {
            id: "crmnothere1".into(),
            etag: None,
        },
        EventOp::Delete {
            id: "crmhol00001".into(),
            etag: Some(written(&results[1]).etag.clone()),
        },
    ];
    let results2 = remote.event_ops(&alice, &cal, &ops).await.unwrap();
    assert_eq!(
        results2[0].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::AlreadyExists
    );
    let updated = written(&results2[1]);
    assert_eq!(updated.data, canonical_event(&moved));
    assert_ne!(updated.etag, etag_gap);
    assert_eq!(
        results2[2].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::PreconditionFailed
    );
    assert_eq!(
        results2[3].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::NotFound
    );
    assert_eq!(results2[4].result, Ok(OpOutcome::Deleted));
    // The update kept what the phone set and we do not sync (a PATCH, not a PUT).
    assert_eq!(emu.counters().endpoint("calendar.events.patch"), 2);

    // Incremental listing: the update and the deletion, nothing else.
    let incremental = remote
        .list_events(&alice, &cal, Some(&token))
        .await
        .unwrap();
    assert!(!incremental.full);
    let mut seen = HashMap::new();
    for c in &incremental.changes {
        match c {
            RemoteChange::Present(item) => {
                seen.insert(item.google_id.clone(), Some(item.data.clone()));
            }
            RemoteChange::Deleted { google_id } => {
                seen.insert(google_id.clone(), None);
            }
        }
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen["crmgap00001"], Some(canonical_event(&moved)));
    assert_eq!(seen["crmhol00001"], None);

    // Re-creating a deleted record needs a new id: the old one stays reserved.
    let again = remote
        .event_ops(
            &alice,
            &cal,
            &[EventOp::Insert {
                id: "crmhol00001".into(),
                crm_id: crm("ev-2"),
                data: holiday.clone(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        again[0].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::AlreadyExists
    );

    // get_event: present, cancelled (Deleted), unknown (NotFound).
    match remote.get_event(&alice, &cal, "crmgap00001").await.unwrap() {
        RemoteChange::Present(item) => assert_eq!(item.data, canonical_event(&moved)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        remote.get_event(&alice, &cal, "crmhol00001").await.unwrap(),
        RemoteChange::Deleted {
            google_id: "crmhol00001".into()
        }
    );
    assert_eq!(
        remote
            .get_event(&alice, &cal, "crmnothere1")
            .await
            .unwrap_err()
            .kind,
        RemoteErrorKind::NotFound
    );
}

#[tokio::test]
async fn large_writes_are_chunked_and_listings_follow_every_page() {
    // Small pages and batches, so paging and chunking show with few events.
    let (emu, remote) = start_with(unlimited(), |c| {
        c.event_page_size = 40;
        c.event_batch_size = 50;
    })
    .await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    let ops: Vec<EventOp> = (0..120)
        .map(|i| EventOp::Insert {
            id: format!("crmbulk{i:05}"),
            crm_id: crm(&format!("ev-{i}")),
            data: meeting(
                &format!("Call {i}"),
                local(2026, 5, 1, 8, 0) + chrono::Duration::hours(i),
                "Asia/Kolkata",
            ),
        })
        .collect();
    let results = remote.event_ops(&alice, &cal, &ops).await.unwrap();
    assert!(results
        .iter()
        .all(|r| matches!(r.result, Ok(OpOutcome::Written(_)))));
    assert_eq!(emu.counters().endpoint("calendar.batch"), 3); // ⌈120 / 50⌉
    emu.reset_counters();
    let listing = remote.list_events(&alice, &cal, None).await.unwrap();
    assert_eq!(listing.changes.len(), 120);
    assert!(listing.next_sync_token.is_some());
    assert_eq!(emu.counters().endpoint("calendar.events.list"), 3); // ⌈120 / 40⌉
    for (op, change) in ops.iter().zip(sorted(&listing.changes)) {
        let EventOp::Insert { id, data, .. } = op else {
            unreachable!()
        };
        match change {
            RemoteChange::Present(item) => {
                assert_eq!(&item.google_id, id);
                assert_eq!(item.data, canonical_event(data));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn event_scans_hand_over_a_page_at_a_time_and_stop_when_told() {
    let (emu, remote) = start_with(unlimited(), |c| c.event_page_size = 40).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    let token = remote
        .list_events(&alice, &cal, None)
        .await
        .unwrap()
        .next_sync_token
        .unwrap();
    let ops: Vec<EventOp> = (0..90)
        .map(|i| EventOp::Insert {
            id: format!("crmscan{i:05}"),
            crm_id: crm(&format!("ev-{i}")),
            data: meeting(
                &format!("Call {i}"),
                local(2026, 5, 1, 8, 0) + chrono::Duration::hours(i),
                "Asia/Kolkata",
            ),
        })
        .collect();
    remote.event_ops(&alice, &cal, &ops).await.unwrap();
    emu.reset_counters();
    let mut pages = Vec::new();
    let next = remote
        .scan_events(&alice, &cal, &token, &mut |page| {
            pages.push(page.len());
            true
        })
        .await
        .unwrap();
    assert_eq!(pages, vec![40, 40, 10]);
    assert_eq!(emu.counters().endpoint("calendar.events.list"), 3);
    let after = remote
        .list_events(&alice, &cal, Some(&next.unwrap()))
        .await
        .unwrap();
    assert!(after.changes.is_empty());

    emu.reset_counters();
    let next = remote
        .scan_events(&alice, &cal, &token, &mut |_| false)
        .await
        .unwrap();
    assert_eq!(next, None);
    assert_eq!(emu.counters().endpoint("calendar.events.list"), 1);
}

fn sorted<T: Clone>(changes: &[RemoteChange<T>]) -> Vec<RemoteChange<T>> {
    let mut v = changes.to_vec();
    v.sort_by_key(|c| match c {
        RemoteChange::Present(i) => i.google_id.clone(),
        RemoteChange::Deleted { google_id } => google_id.clone(),
    });
    v
}

#[tokio::test]
async fn an_expired_sync_token_asks_for_a_full_listing() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    let token = remote
        .list_events(&alice, &cal, None)
        .await
        .unwrap()
        .next_sync_token
        .unwrap();
    emu.expire_sync_tokens(Some(ALICE), Some(ApiFamily::Calendar));
    let err = remote
        .list_events(&alice, &cal, Some(&token))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::SyncTokenExpired);
    // Not retried: one listing call for the expired token.
    assert_eq!(emu.counters().endpoint("calendar.events.list"), 2);
    // A full listing works and gives a fresh token.
    let fresh = remote.list_events(&alice, &cal, None).await.unwrap();
    assert!(fresh.full && fresh.next_sync_token.is_some());
}

#[tokio::test]
async fn a_bad_event_fails_alone() {
    let (_emu, remote) = start(unlimited()).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    let mut bad_zone = meeting("Nowhere", local(2026, 6, 1, 9, 0), "Mars/Olympus");
    bad_zone.attendees.clear();
    let good = meeting("Somewhere", local(2026, 6, 1, 9, 0), "Europe/Paris");
    let ops = vec![
        EventOp::Insert {
            id: "crmbad00001".into(),
            crm_id: crm("ev-bad"),
            data: bad_zone,
        },
        // Not base32hex: Google refuses the id with 400.
        EventOp::Insert {
            id: "NOT-BASE32".into(),
            crm_id: crm("ev-bad2"),
            data: good.clone(),
        },
        EventOp::Insert {
            id: "crmgood0001".into(),
            crm_id: crm("ev-good"),
            data: good.clone(),
        },
    ];
    let results = remote.event_ops(&alice, &cal, &ops).await.unwrap();
    assert_eq!(
        results[0].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::Permanent
    );
    assert_eq!(
        results[1].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::Permanent
    );
    assert_eq!(written(&results[2]).data, canonical_event(&good));
}

async fn calendar_hub(emu: &crmsync::emulator::TestEmulator) -> crmsync::google::hub::Calendar {
    let key = crmsync::google::auth::load_service_account_key(&key_path(), Some(&emu.token_uri()))
        .await
        .unwrap();
    let auth = crmsync::google::auth::impersonate(&key, ALICE)
        .await
        .unwrap();
    crmsync::google::hub::calendar_hub(&emu.base_url(), auth).unwrap()
}

#[tokio::test]
async fn updates_switch_between_timed_and_all_day_and_keep_phone_settings() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    let timed = meeting("Offsite", local(2026, 10, 25, 2, 30), "Europe/Berlin"); // ambiguous time
    let inserted = remote
        .event_ops(
            &alice,
            &cal,
            &[EventOp::Insert {
                id: "crmshift0001".into(),
                crm_id: crm("ev-s"),
                data: timed.clone(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(written(&inserted[0]).data, canonical_event(&timed));
    // The phone user sets a reminder and a colour (fields we do not sync).
    let hub = calendar_hub(&emu).await;
    let (_, phone) = hub
        .events()
        .patch(
            google_calendar3::api::Event {
                color_id: Some("5".into()),
                ..Default::default()
            },
            &cal,
            "crmshift0001",
        )
        .doit()
        .await
        .unwrap();
    let whole_day = all_day(
        "Offsite",
        NaiveDate::from_ymd_opt(2026, 10, 26).unwrap(),
        "Europe/Berlin",
    );
    let updated = remote
        .event_ops(
            &alice,
            &cal,
            &[EventOp::Update {
                id: "crmshift0001".into(),
                etag: phone.etag.clone().unwrap(),
                crm_id: crm("ev-s"),
                data: whole_day.clone(),
            }],
        )
        .await
        .unwrap();
    let item = written(&updated[0]);
    assert_eq!(item.data, canonical_event(&whole_day));
    // The phone's colour stays on the event (the update patches the synced fields only).
    let stored = emu.dump_user(ALICE).unwrap();
    let event = stored
        .live_events(&cal)
        .into_iter()
        .find(|e| e.id.as_deref() == Some("crmshift0001"))
        .unwrap();
    assert_eq!(event.color_id.as_deref(), Some("5"));
    let back = remote
        .event_ops(
            &alice,
            &cal,
            &[EventOp::Update {
                id: "crmshift0001".into(),
                etag: item.etag.clone(),
                crm_id: crm("ev-s"),
                data: timed.clone(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(written(&back[0]).data, canonical_event(&timed));
}

#[tokio::test]
async fn an_edited_instance_names_its_series() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    let mut series = meeting("Stand-up", local(2026, 11, 2, 9, 0), "America/New_York");
    series.recurrence = vec!["RRULE:FREQ=DAILY;COUNT=5".into()];
    remote
        .event_ops(
            &alice,
            &cal,
            &[EventOp::Insert {
                id: "crmseries001".into(),
                crm_id: crm("ev-r"),
                data: series,
            }],
        )
        .await
        .unwrap();
    let token = remote
        .list_events(&alice, &cal, None)
        .await
        .unwrap()
        .next_sync_token
        .unwrap();
    // The phone user moves the third occurrence and deletes the fourth.
    let hub = calendar_hub(&emu).await;
    let (_, instances) = hub
        .events()
        .instances(&cal, "crmseries001")
        .doit()
        .await
        .unwrap();
    let instances = instances.items.unwrap();
    let third = instances[2].id.clone().unwrap();
    let fourth = instances[3].id.clone().unwrap();
    hub.events()
        .patch(
            google_calendar3::api::Event {
                summary: Some("Moved stand-up".into()),
                ..Default::default()
            },
            &cal,
            &third,
        )
        .doit()
        .await
        .unwrap();
    hub.events().delete(&cal, &fourth).doit().await.unwrap();
    let changes = remote
        .list_events(&alice, &cal, Some(&token))
        .await
        .unwrap()
        .changes;
    let moved = changes
        .iter()
        .find_map(|c| match c {
            RemoteChange::Present(i) if i.google_id == third => Some(i.clone()),
            _ => None,
        })
        .expect("the edited instance is listed");
    assert_eq!(moved.recurring_parent.as_deref(), Some("crmseries001"));
    assert_eq!(moved.data.title, "Moved stand-up");
    assert_eq!(moved.crm_id, Some(crm("ev-r")));
    assert!(changes.contains(&RemoteChange::Deleted { google_id: fourth }));
}

#[tokio::test]
async fn a_lost_answer_to_calendar_creation_never_makes_a_second_calendar() {
    use crmsync::emulator::{FaultKind, FaultMatch, FaultRule, FaultTrigger};
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    emu.add_fault(FaultRule {
        matches: FaultMatch {
            endpoint: Some("calendar.calendars.insert".into()),
            ..Default::default()
        },
        trigger: FaultTrigger::Nth { n: 1, times: 1 },
        fault: FaultKind::LostResponse,
    });
    let err = remote
        .ensure_calendar(&alice, "CRM", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Transient);
    // Next pass: found by its marker, not made again.
    let id = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    assert_eq!(emu.counters().endpoint("calendar.calendars.insert"), 1);
    let dump = emu.dump_user(ALICE).unwrap();
    assert_eq!(dump.calendars.iter().filter(|c| !c.primary).count(), 1);
    assert!(dump
        .calendars
        .iter()
        .any(|c| c.calendar.id.as_deref() == Some(id.as_str())));
}

/// One remote acting for many accounts shares one connection pool (and one TLS
/// configuration): connections do not grow with the accounts, each of which would keep
/// idle connections and their read buffers alive.
#[tokio::test]
async fn many_accounts_share_one_connection_pool() {
    let (emu, remote) = start(unlimited()).await;
    let accounts = 12;
    for n in 0..accounts {
        let account = user(&format!("user{n}@example.com"));
        let calendar = remote.ensure_calendar(&account, "CRM", None).await.unwrap();
        let listing = remote.list_events(&account, &calendar, None).await.unwrap();
        assert!(listing.changes.is_empty());
    }
    let counters = emu.counters();
    assert_eq!(counters.token_requests, accounts);
    // One connection for the token requests and one for the calls, kept alive from one
    // account to the next (a client per account opened two per account).
    assert!(
        counters.connections <= 4,
        "{} connections for {accounts} accounts",
        counters.connections
    );
}
