//! A user with more records than a part (`sync.max_records_in_flight` / `sync.concurrency`)
//! is planned and carried out part by part (issue 12): the phones, the links and the CRM end
//! exactly as with the plan made whole; the breaker still weighs the whole plan; a part that
//! failed keeps the sync token where it was, and the next pass completes without duplicates;
//! after a permission change, made whole or in parts, everyone is quiet (what the plan
//! deleted, its listing still showing it, is not kept as an unlinked item).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sync_support;

use crmsync::emulator::{FaultKind, FaultMatch, FaultRule, FaultTrigger};
use crmsync::model::{ObjectKind, UserId};
use crmsync::sync::engine::{RunReport, SyncOptions, UserStatus};
use std::collections::BTreeSet;
use sync_support::*;

const USERS: [&str; 4] = ["alice", "erin", "frank", "hank"];

/// A harness over `org_with_bulk(150)`; `in_parts`: a budget of 100 records in flight, so
/// alice's 150+ contacts are planned 100 at a time.
async fn harness(in_parts: bool) -> Harness {
    let mut h = Harness::start(org_with_bulk(150)).await;
    if in_parts {
        h.config.sync.max_records_in_flight = 100;
    }
    h
}

fn parts_of(report: &RunReport, user: &str) -> usize {
    user_report(report, user).parts
}

/// The story both ways: a first pass; then a phone edit, a phone-created contact, a record
/// deleted and ten created in the CRM; a second pass.
async fn story(in_parts: bool) -> (Harness, Vec<RunReport>) {
    let h = harness(in_parts).await;
    let first = h.sync().await;
    assert_all_synced(&first);
    h.phone_edit_contact("alice", "bulk7", |c| c.title = "Edited on the phone".into())
        .await;
    h.phone_create_contact("alice", "Phoebe", "phoebe@example.org", true)
        .await;
    let mut doc = org_with_bulk(160);
    doc["contacts"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["id"] != "bulk3");
    h.load(&doc);
    let second = h.sync().await;
    assert_all_synced(&second);
    h.assert_nothing_leaks();
    h.assert_no_duplicates();
    (h, vec![first, second])
}

#[tokio::test(flavor = "current_thread")]
async fn a_plan_in_parts_ends_exactly_as_the_plan_made_whole() {
    let (whole, whole_reports) = story(false).await;
    let (parts, parts_reports) = story(true).await;
    for (w, p) in whole_reports.iter().zip(&parts_reports) {
        assert_eq!(parts_of(w, "alice"), 0);
        assert!(
            parts_of(p, "alice") >= 3,
            "two parts of contacts at least, and the phone's"
        );
        assert_eq!(parts_of(p, "hank"), 0, "small users are planned whole");
        for user in USERS {
            assert_eq!(
                user_report(w, user).total(),
                user_report(p, user).total(),
                "{user}: the same work"
            );
        }
    }
    for user in USERS {
        assert_eq!(
            whole.contacts(user),
            parts.contacts(user),
            "{user}'s contacts"
        );
        assert_eq!(whole.events(user), parts.events(user), "{user}'s events");
        let id = UserId::new(user).unwrap();
        for kind in [ObjectKind::Contact, ObjectKind::Event] {
            let links = |h: &Harness| -> BTreeSet<String> {
                h.state
                    .linked_crm_ids(&id, kind)
                    .unwrap()
                    .into_iter()
                    .map(|c| c.to_string())
                    .collect()
            };
            assert_eq!(links(&whole), links(&parts), "{user}'s {kind} links");
        }
    }
    let ids = |h: &Harness| -> Vec<String> {
        let mut ids: Vec<String> =
            crmsync::crm::Source::changes_since(&h.crm(), crmsync::crm::Cursor(0), 100_000)
                .unwrap()
                .changes
                .iter()
                .filter(|c| c.kind == crmsync::crm::EntityKind::Contact && c.entity.is_some())
                .map(|c| c.id.clone())
                .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    assert_eq!(
        ids(&whole),
        ids(&parts),
        "the same CRM contacts (the import included)"
    );
    for h in [&whole, &parts] {
        assert_eq!(
            crm_contact(h, "bulk7").unwrap().title,
            "Edited on the phone"
        );
        assert!(h.contacts("alice").iter().any(|(_, name)| name == "Phoebe"));
        assert!(!ids(h).contains(&"bulk3".to_owned()) || crm_contact(h, "bulk3").is_none());
    }
    // Nothing left to do either way.
    for h in [&whole, &parts] {
        assert!(is_quiet(&h.sync().await));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_breaker_weighs_the_whole_plan_made_in_parts() {
    let h = harness(true).await;
    assert_all_synced(&h.sync().await);
    let held = h.contacts("alice").len();
    // 140 of alice's 150 bulk contacts deleted in the CRM: spread over both parts.
    let mut doc = org_with_bulk(150);
    doc["contacts"].as_array_mut().unwrap().retain(|c| {
        let id = c["id"].as_str().unwrap();
        !id.starts_with("bulk") || id.trim_start_matches("bulk").parse::<usize>().unwrap() >= 140
    });
    h.load(&doc);
    let report = h.sync_leaving_deleted(&SyncOptions::default()).await;
    let alice = user_report(&report, "alice");
    assert_eq!(alice.status, UserStatus::Refused, "{alice:?}");
    assert!(alice
        .message
        .as_deref()
        .unwrap()
        .contains("would delete 140 of"));
    assert_eq!(
        h.contacts("alice").len(),
        held,
        "nothing deleted by any part"
    );
    let report = h
        .sync_with(&SyncOptions {
            force: true,
            ..Default::default()
        })
        .await;
    assert_all_synced(&report);
    assert_eq!(h.contacts("alice").len(), held - 140);
    h.assert_nothing_leaks();
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_part_keeps_the_token_and_the_next_pass_completes() {
    let h = harness(true).await;
    let alice = UserId::new("alice").unwrap();
    h.emu.add_fault(FaultRule {
        matches: FaultMatch {
            endpoint: Some("people.people.batchCreateContacts".into()),
            user: Some(h.google_user("alice").account),
            ..Default::default()
        },
        trigger: FaultTrigger::Always,
        fault: FaultKind::Status {
            code: 500,
            retry_after_secs: None,
        },
    });
    let report = h.sync().await;
    let r = user_report(&report, "alice");
    assert!(r.parts >= 3, "{r:?}");
    assert!(
        matches!(r.status, UserStatus::Partial | UserStatus::Failed),
        "{r:?}"
    );
    let row = h.state.sync_user(&alice).unwrap().unwrap();
    assert!(
        row.contacts_sync_token.is_none(),
        "no part's failure may be skipped by a saved token"
    );
    assert!(row.planned_cursor.is_none());
    h.emu.clear_faults();
    let report = h.sync().await;
    assert_all_synced(&report);
    assert!(h.contacts("alice").len() >= 150);
    h.assert_no_duplicates();
    h.assert_nothing_leaks();
    assert!(h
        .state
        .sync_user(&alice)
        .unwrap()
        .unwrap()
        .contacts_sync_token
        .is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn a_permission_change_planned_in_parts_leaves_everyone_quiet_after_it() {
    permission_change_leaves_everyone_quiet(true).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_permission_change_planned_whole_leaves_everyone_quiet_after_it() {
    permission_change_leaves_everyone_quiet(false).await;
}

async fn permission_change_leaves_everyone_quiet(in_parts: bool) {
    let h = harness(in_parts).await;
    // The bulk contacts split between frank (rep_east) and hank (rep_west).
    let mut doc = org_with_bulk(150);
    for c in doc["contacts"].as_array_mut().unwrap() {
        let id = c["id"].as_str().unwrap().to_owned();
        if let Some(n) = id.strip_prefix("bulk") {
            let n: usize = n.parse().unwrap();
            c["owner"] = serde_json::json!(if n.is_multiple_of(2) { "frank" } else { "hank" });
        }
    }
    h.load(&doc);
    assert_all_synced(&h.sync().await);
    assert!(is_quiet(&h.sync().await));
    // One of frank's contacts changes in the CRM: erin's pass updates it on her phone, and
    // her next listing shows that write (too few to be taken in at once).
    entity_mut(&mut doc, "contacts", "bulk0")["title"] = serde_json::json!("Changed in the CRM");
    h.load(&doc);
    let changed = h.sync().await;
    assert_all_synced(&changed);
    assert_eq!(user_report(&changed, "erin").contacts.updated, 1);
    // Erin (above frank) moves above hank: her plan (in parts when `in_parts`) pulls
    // frank's back, the contact her listing still shows as updated among them.
    entity_mut(&mut doc, "users", "erin")["role"] = serde_json::json!("mgr_west");
    h.load(&doc);
    let forced = crmsync::sync::engine::SyncOptions {
        force: true,
        ..Default::default()
    };
    let report = h.sync_with(&forced).await;
    assert_all_synced(&report);
    let erin = user_report(&report, "erin");
    assert!(erin.contacts.deleted >= 75, "{erin:?}");
    assert_eq!(erin.parts >= 2, in_parts, "{erin:?}");
    for user in USERS {
        h.assert_holds_what_they_should(user);
    }
    // Nothing left for anyone: the next pass is quiet.
    let next = h.sync().await;
    for u in &next.users {
        assert!(u.quiet, "{}: {:?}", u.user, u.planned_because);
    }
}
