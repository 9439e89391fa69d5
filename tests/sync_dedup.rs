//! The duplicate sweep end to end: two Google items carrying one record's marker (as racing
//! runs used to leave them, or a phone copying an item) are found by the next full listing;
//! the linked one stays, the other is deleted and audited. Without a link (a lost state DB)
//! one deterministic survivor is kept and relinked. A failed deletion is reported and swept
//! again by the next pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sync_support;

use crmsync::emulator::{FaultKind, FaultMatch, FaultRule, FaultTrigger};
use crmsync::model::{CrmId, ObjectKind, SyncedContact, UserId};
use crmsync::store::StateDb;
use crmsync::sync::engine::{event_id, Engine, SyncOptions, UserStatus};
use crmsync::sync::plan::Link;
use crmsync::sync::remote::{ContactOp, EventOp, OpOutcome, Remote};
use std::cell::RefCell;
use sync_support::*;

/// A second Google contact carrying `crm_id`'s marker in the user's group, made through the
/// API the way a racing run did. Returns its resource name.
async fn seed_contact_copy(h: &Harness, user: &str, crm_id: &str) -> String {
    let data = h.phone_contact(user, crm_id).await.unwrap();
    let op = ContactOp::Create {
        crm_id: CrmId::new(crm_id).unwrap(),
        data,
    };
    let results = h
        .remote
        .contact_ops(&h.google_user(user), &h.group_of(user), &[op])
        .await
        .unwrap();
    match results.into_iter().next().map(|r| r.result) {
        Some(Ok(OpOutcome::Written(item))) => item.google_id,
        other => panic!("seeding a copy: {other:?}"),
    }
}

/// A second event carrying `crm_id`'s marker in the user's CRM calendar (another id).
async fn seed_event_copy(h: &Harness, user: &str, crm_id: &str) -> String {
    let data = h.phone_event(user, crm_id).await.unwrap();
    let id = event_id(
        &UserId::new(user).unwrap(),
        &CrmId::new(crm_id).unwrap(),
        99,
    );
    let op = EventOp::Insert {
        id: id.clone(),
        crm_id: CrmId::new(crm_id).unwrap(),
        data,
    };
    let results = h
        .remote
        .event_ops(&h.google_user(user), &h.calendar_of(user), &[op])
        .await
        .unwrap();
    assert!(
        matches!(results.first().map(|r| &r.result), Some(Ok(_))),
        "{results:?}"
    );
    id
}

fn fault(endpoint: &str, user: &str) -> FaultRule {
    FaultRule {
        matches: FaultMatch {
            endpoint: Some(endpoint.into()),
            method: None,
            user: Some(format!("{user}@acme.example")),
        },
        trigger: FaultTrigger::Nth { n: 1, times: 1 },
        fault: FaultKind::Status {
            code: 400,
            retry_after_secs: None,
        },
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_listing_removes_duplicates_and_keeps_the_linked_item() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let linked_contact = h.contact_resource("frank", "c1");
    let linked_event = h.event_google_id("frank", "e1");
    let copy_contact = seed_contact_copy(&h, "frank", "c1").await;
    let copy_event = seed_event_copy(&h, "frank", "e1").await;
    assert_eq!(h.marker_counts("frank")["c1"], 2);
    assert_eq!(h.marker_counts("frank")["e1"], 2);

    // Incremental listings do not sweep (and plan nothing for our own marked items).
    let quiet = h.sync().await;
    assert_eq!(user_report(&quiet, "frank").total().duplicates_removed, 0);
    assert_eq!(h.marker_counts("frank")["c1"], 2);

    // A full listing does: Google expired the tokens.
    h.emu.expire_sync_tokens(Some("frank@acme.example"), None);
    let report = h.sync().await;
    assert_all_synced(&report);
    let frank = user_report(&report, "frank");
    assert_eq!(frank.contacts.duplicates_removed, 1, "{frank:?}");
    assert_eq!(frank.events.duplicates_removed, 1, "{frank:?}");
    h.assert_no_duplicates_while("after the sweep");
    assert_eq!(h.contact_resource("frank", "c1"), linked_contact);
    assert_eq!(h.event_google_id("frank", "e1"), linked_event);
    assert!(
        h.phone_contact("frank", "c1").await.is_some(),
        "the linked one is live"
    );
    assert!(h.phone_event("frank", "e1").await.is_some());

    let audited = audit_of(&h, "frank", "duplicate_removed");
    assert_eq!(audited.len(), 2, "{audited:?}");
    for (record, removed, kept) in [
        ("contact:c1", &copy_contact, &linked_contact),
        ("event:e1", &copy_event, &linked_event),
    ] {
        let line = audited
            .iter()
            .find(|e| e.record.as_deref() == Some(record))
            .unwrap();
        assert_eq!(line.detail["google_id"], removed.as_str(), "{line:?}");
        assert_eq!(line.detail["kept"], kept.as_str());
        assert_eq!(line.detail["kept_was_linked"], true);
        assert!(
            line.detail["removed_item"].is_object(),
            "the copy's content is kept"
        );
    }
    // Nobody else was touched, and the next pass has nothing to do.
    for other in ["alice", "erin", "hank"] {
        assert_eq!(user_report(&report, other).total().duplicates_removed, 0);
    }
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_link_one_deterministic_survivor_is_kept_and_relinked() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let first = h.contact_resource("frank", "c4");
    let second = seed_contact_copy(&h, "frank", "c4").await;
    let expected = std::cmp::min(first.clone(), second.clone());

    // The state DB is lost: a fresh one links nothing, so its listings are full.
    let fresh = StateDb::create(&h.dir.path().join("fresh-state.db")).unwrap();
    let engine = Engine {
        config: &h.config,
        state: &fresh,
        crm: RefCell::new(Box::new(h.crm())),
        remote: &h.remote,
        now: h.now,
    };
    let report = engine.sync_once(&SyncOptions::default()).await.unwrap();
    assert_all_synced(&report);
    assert_eq!(user_report(&report, "frank").contacts.duplicates_removed, 1);
    h.assert_no_duplicates_while("after relinking");
    let link: Link<SyncedContact> = fresh
        .links(&UserId::new("frank").unwrap(), ObjectKind::Contact)
        .unwrap()
        .remove(&CrmId::new("c4").unwrap())
        .unwrap();
    assert_eq!(
        link.google_id.as_deref(),
        Some(expected.as_str()),
        "the survivor is the smallest resource name, relinked"
    );
    let audited: Vec<_> = fresh
        .audit_entries(Some("frank"), Some("contact:c4"), 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "duplicate_removed")
        .collect();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].detail["kept"], expected.as_str());
    assert_eq!(audited[0].detail["kept_was_linked"], false);
    h.assert_nothing_leaks();
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_duplicate_delete_is_reported_and_swept_by_the_next_pass() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    seed_contact_copy(&h, "frank", "c1").await;
    h.emu.expire_sync_tokens(Some("frank@acme.example"), None);
    h.emu
        .add_fault(fault("people.people.batchDeleteContacts", "frank"));
    h.emu
        .add_fault(fault("people.people.deleteContact", "frank"));

    let report = h.sync().await;
    let frank = user_report(&report, "frank");
    assert_eq!(frank.status, UserStatus::Partial, "{frank:?}");
    assert_eq!(frank.contacts.duplicates_removed, 0);
    assert!(
        frank
            .errors
            .iter()
            .any(|e| e.record.as_deref() == Some("contact:c1")
                && e.error.contains("deleting a duplicate")),
        "{:?}",
        frank.errors
    );
    assert_eq!(h.marker_counts("frank")["c1"], 2, "still there");
    let sync_user = h
        .state
        .sync_user(&UserId::new("frank").unwrap())
        .unwrap()
        .unwrap();
    assert!(
        sync_user.contacts_sync_token.is_none(),
        "no token: the next listing is full again"
    );

    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(user_report(&report, "frank").contacts.duplicates_removed, 1);
    h.assert_no_duplicates_while("after the retry");
    assert!(is_quiet(&h.sync().await));
}
