//! Incremental passes (issue 12): a pass plans a user only when something the plan depends on
//! may have changed, and otherwise makes the three listing calls and nothing else — without
//! ever missing a phone edit, a CRM change, a scope change, a deleted contact group or the
//! event window moving on, and without trusting a plan a failure interrupted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sync_support;

use crmsync::emulator::{FaultKind, FaultMatch, FaultRule, FaultTrigger};
use crmsync::model::{ObjectKind, UserId};
use crmsync::scope::{ScopeLayer, SelectionMode};
use crmsync::sync::engine::{RunReport, UserStatus};
use std::collections::BTreeMap;
use sync_support::*;

const USERS: [&str; 4] = ["alice", "erin", "frank", "hank"];

fn quiet_users(report: &RunReport) -> Vec<String> {
    report
        .users
        .iter()
        .filter(|u| u.quiet)
        .map(|u| u.user.to_string())
        .collect()
}

/// Calls by endpoint since `before`.
fn calls_since(h: &Harness, before: &crmsync::emulator::Counters) -> BTreeMap<String, u64> {
    h.emu
        .counters()
        .by_endpoint
        .iter()
        .map(|(k, v)| (k.clone(), v - before.by_endpoint.get(k).unwrap_or(&0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn holds(h: &Harness, user: &str, kind: ObjectKind, id: &str) -> bool {
    match kind {
        ObjectKind::Contact => h
            .link_of::<crmsync::model::SyncedContact>(user, kind, id)
            .is_some(),
        _ => h
            .link_of::<crmsync::model::SyncedEvent>(user, kind, id)
            .is_some(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_first_pass_after_a_full_sync_is_quiet_and_makes_only_the_listing_calls() {
    let mut h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let before = h.emu.counters();
    let report = h.sync().await;
    assert_all_synced(&report);
    // The listings hold the echoes of the first pass's own writes: still nothing to plan.
    assert_eq!(quiet_users(&report), USERS);
    assert!(is_quiet(&report));
    let calls = calls_since(&h, &before);
    let users = USERS.len() as u64;
    assert_eq!(
        calls,
        BTreeMap::from([
            ("calendar.events.list".to_owned(), users),
            ("people.people.connections.list".to_owned(), users),
        ]),
        "a quiet pass lists events and contacts, nothing else (the calendar's sharing was \
         checked by the first pass, and is not due again before the users' next turn)"
    );
    // And it stays quiet; once every user's leak-guard turn has come (`acl_check_minutes`
    // later), a quiet pass adds one ACL listing per user.
    h.now += chrono::Duration::minutes(10);
    let before = h.emu.counters();
    let report = h.sync().await;
    assert_eq!(quiet_users(&report), USERS);
    assert_eq!(
        calls_since(&h, &before),
        BTreeMap::from([
            ("calendar.acl.list".to_owned(), users),
            ("calendar.events.list".to_owned(), users),
            ("people.people.connections.list".to_owned(), users),
        ])
    );
}

/// The users holding c2 (at least one).
fn holders_of_c2(h: &Harness) -> Vec<&'static str> {
    let holders: Vec<&str> = USERS
        .into_iter()
        .filter(|u| holds(h, u, ObjectKind::Contact, "c2"))
        .collect();
    assert!(!holders.is_empty());
    holders
}

/// Retitles c2 in the CRM and syncs: the pass's report and the emulator's counters before it.
async fn sync_c2_retitled(h: &Harness) -> (RunReport, crmsync::emulator::Counters) {
    let mut doc = org();
    entity_mut(&mut doc, "contacts", "c2")["title"] = serde_json::json!("Head of Purchasing");
    h.load(&doc);
    let before = h.emu.counters();
    let report = h.sync().await;
    assert_all_synced(&report);
    (report, before)
}

#[tokio::test(flavor = "current_thread")]
async fn a_crm_change_plans_exactly_the_users_holding_what_it_touches() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    h.sync().await;
    let (report, before) = sync_c2_retitled(&h).await;
    let quiet = quiet_users(&report);
    for user in USERS {
        // c2 itself, and e2, which lists c2 as attendee and parent.
        let touched =
            holds(&h, user, ObjectKind::Contact, "c2") || holds(&h, user, ObjectKind::Event, "e2");
        assert_eq!(
            quiet.contains(&user.to_owned()),
            !touched,
            "{user}: quiet users {quiet:?}"
        );
    }
    assert!(!quiet.is_empty(), "someone cannot see c2 and is left alone");
    for u in report.users.iter().filter(|u| !u.quiet) {
        assert!(
            u.changes_only,
            "{}: only what the change touched is planned",
            u.user
        );
    }
    let holders = holders_of_c2(&h);
    for user in &holders {
        let on_phone = h.phone_contact(user, "c2").await.unwrap();
        assert_eq!(on_phone.title, "Head of Purchasing", "{user}");
    }
    // The update of a contact known to be ours is written without reading it first.
    let calls = calls_since(&h, &before);
    assert_eq!(calls.get("people.people.getBatchGet"), None, "{calls:?}");
    assert_eq!(calls.get("people.contactGroups.get"), None, "{calls:?}");
    // Everyone is quiet again afterwards.
    assert_eq!(quiet_users(&h.sync().await), USERS);
}

#[tokio::test(flavor = "current_thread")]
async fn a_permission_change_plans_only_the_users_whose_access_it_changed() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    assert_eq!(quiet_users(&h.sync().await), USERS);
    assert!(!ids(&h.events("erin")).contains(&"e2".to_owned()));
    // Hank moves to erin's team: erin now sees what hank owns; hank's own access changes.
    let mut doc = org();
    entity_mut(&mut doc, "users", "hank")["role"] = serde_json::json!("rep_east");
    h.load(&doc);
    let report = h.sync().await;
    assert_all_synced(&report);
    // Alice and frank keep what they had: their last plans stand, their passes are quiet.
    assert_eq!(quiet_users(&report), ["alice", "frank"]);
    assert!(ids(&h.events("erin")).contains(&"e2".to_owned()));
    for user in USERS {
        h.assert_holds_what_they_should(user);
    }
    // And the pass after it is quiet for everyone.
    assert_eq!(quiet_users(&h.sync().await), USERS);
}

#[tokio::test(flavor = "current_thread")]
async fn a_phone_edit_is_never_lost_to_a_quiet_pass() {
    let h = Harness::start(org()).await;
    let first = h.sync().await;
    assert_all_synced(&first);
    assert_eq!(
        user_report(&first, "frank").planned_because,
        Some("no complete plan since the last change")
    );
    let quiet = h.sync().await;
    assert_eq!(quiet_users(&quiet), USERS);
    assert!(quiet.users.iter().all(|u| u.planned_because.is_none()));
    h.phone_edit_contact("frank", "c1", |c| c.title = "Edited on the phone".into())
        .await;
    let report = h.sync().await;
    assert_all_synced(&report);
    assert!(
        !quiet_users(&report).contains(&"frank".to_owned()),
        "the phone edit is in frank's listing"
    );
    assert_eq!(
        user_report(&report, "frank").planned_because,
        Some("contacts changed in Google"),
        "the report says why"
    );
    assert_eq!(
        crm_contact(&h, "c1").unwrap().title,
        "Edited on the phone",
        "written back"
    );
    for user in USERS {
        if holds(&h, user, ObjectKind::Contact, "c1") {
            assert_eq!(
                h.phone_contact(user, "c1").await.unwrap().title,
                "Edited on the phone",
                "{user} got the write-back in the same run"
            );
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_scope_change_and_the_moving_event_window_are_planned() {
    let mut h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    assert_eq!(quiet_users(&h.sync().await), USERS);
    h.set_scope(
        "hank",
        &ScopeLayer {
            contact: Some(SelectionMode::Mine),
            ..ScopeLayer::default()
        },
    );
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(quiet_users(&report), ["alice", "erin", "frank"]);
    assert!(!holds(&h, "hank", ObjectKind::Contact, "c1"), "narrowed");

    // Time moves on: a plan older than an hour is made again (events enter the window).
    assert_eq!(quiet_users(&h.sync().await), USERS);
    h.now += chrono::Duration::minutes(59);
    assert_eq!(quiet_users(&h.sync().await), USERS);
    h.now += chrono::Duration::minutes(2);
    let report = h.sync().await;
    assert_all_synced(&report);
    assert!(quiet_users(&report).is_empty());
    assert!(is_quiet(&report), "replanned, and nothing to do");
}

#[tokio::test(flavor = "current_thread")]
async fn a_contact_group_deleted_on_the_phone_is_noticed_from_the_listing() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    assert_eq!(quiet_users(&h.sync().await), USERS);
    let old = h.group_of("hank");
    let before: Vec<String> = ids(&h.contacts("hank"));
    assert!(!before.is_empty());
    let (status, body) = h
        .raw(
            "hank",
            reqwest::Method::DELETE,
            &format!("/v1/{old}?deleteContacts=false"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let report = h.sync().await;
    assert_all_synced(&report);
    let new = h.group_of("hank");
    assert_ne!(new, old, "a new group");
    assert_eq!(ids(&h.contacts("hank")), before, "every contact back in it");
    h.assert_no_duplicates();
    let dump = h.emu.dump_user("hank@acme.example").unwrap();
    let in_new_group = dump
        .live_contacts()
        .into_iter()
        .filter(|p| {
            p.memberships.iter().flatten().any(|m| {
                m.contact_group_membership
                    .as_ref()
                    .and_then(|g| g.contact_group_resource_name.as_deref())
                    == Some(new.as_str())
            })
        })
        .count();
    assert_eq!(in_new_group, before.len());
    assert_eq!(quiet_users(&h.sync().await), USERS);
}

#[tokio::test(flavor = "current_thread")]
async fn a_pass_cut_short_by_failures_is_planned_again_until_it_completes() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    h.sync().await;
    let mut doc = org();
    for c in doc["contacts"].as_array_mut().unwrap() {
        c["notes"] = serde_json::json!("changed in the CRM");
    }
    h.load(&doc);
    h.emu.add_fault(FaultRule {
        matches: FaultMatch {
            endpoint: Some("people.people.batchUpdateContacts".into()),
            ..Default::default()
        },
        trigger: FaultTrigger::Always,
        fault: FaultKind::Status {
            code: 500,
            retry_after_secs: None,
        },
    });
    let report = h.sync().await;
    assert!(report
        .users
        .iter()
        .any(|u| matches!(u.status, UserStatus::Partial | UserStatus::Failed)));
    h.emu.clear_faults();
    // Nothing changed since in the CRM or on the phones, yet the interrupted plans are made
    // again: their users are not quiet, and the changes arrive.
    let report = h.sync().await;
    assert_all_synced(&report);
    for u in &report.users {
        if u.contacts.updated > 0 {
            assert!(!u.quiet);
        }
    }
    for user in USERS {
        let planned = h
            .state
            .sync_user(&UserId::new(user).unwrap())
            .unwrap()
            .unwrap()
            .planned_cursor;
        assert!(planned.is_some(), "{user} completed a plan");
        for (id, _) in h.contacts(user) {
            let id = id.unwrap();
            assert_eq!(
                h.phone_contact(user, &id).await.unwrap().notes,
                "changed in the CRM",
                "{user} {id}"
            );
        }
    }
    assert_eq!(quiet_users(&h.sync().await), USERS);
}

#[tokio::test(flavor = "current_thread")]
async fn records_created_and_deleted_in_the_crm_are_planned_alone_and_reach_every_phone() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    h.sync().await;
    let mut doc = org();
    let contacts = doc["contacts"].as_array_mut().unwrap();
    let mut c6 = contacts.iter().find(|c| c["id"] == "c5").unwrap().clone();
    c6["id"] = serde_json::json!("c6");
    c6["first_name"] = serde_json::json!("Nina");
    c6["emails"] = serde_json::json!([{"address": "nina@initech.example", "label": "work"}]);
    contacts.push(c6);
    let holders_c5: Vec<&str> = USERS
        .into_iter()
        .filter(|u| holds(&h, u, ObjectKind::Contact, "c5"))
        .collect();
    assert!(!holders_c5.is_empty());
    contacts.retain(|c| c["id"] != "c5");
    h.load(&doc);
    let report = h.sync().await;
    assert_all_synced(&report);
    for u in &report.users {
        assert!(u.quiet || u.changes_only, "{}: {u:?}", u.user);
    }
    // Whoever held c5 (same owner, same readers) now holds c6 instead.
    for user in USERS {
        let had = holders_c5.contains(&user);
        assert!(
            !holds(&h, user, ObjectKind::Contact, "c5"),
            "{user}: c5 pulled back"
        );
        assert_eq!(
            holds(&h, user, ObjectKind::Contact, "c6"),
            had,
            "{user}: c6"
        );
        assert!(!ids(&h.contacts(user)).contains(&"c5".to_owned()), "{user}");
        if had {
            assert_eq!(
                h.phone_contact(user, "c6").await.unwrap().first_name,
                "Nina"
            );
        }
    }
    h.assert_no_duplicates();
    assert_eq!(quiet_users(&h.sync().await), USERS);
}

#[tokio::test(flavor = "current_thread")]
async fn a_pass_that_wrote_much_takes_in_its_own_echoes() {
    use crmsync::sync::remote::Remote;
    let h = Harness::start(org_with_bulk(120)).await;
    assert_all_synced(&h.sync().await);
    let alice = UserId::new("alice").unwrap();
    let token = h
        .state
        .sync_user(&alice)
        .unwrap()
        .unwrap()
        .contacts_sync_token
        .unwrap();
    let listing = h
        .remote
        .list_contacts(&h.google_user("alice"), &h.group_of("alice"), Some(&token))
        .await
        .unwrap();
    assert!(
        !listing.full && listing.changes.is_empty(),
        "the token kept is past the 120+ creates: {} changes",
        listing.changes.len()
    );
    // The next pass reads one empty page for alice.
    let before = h.emu.counters();
    let report = h.sync().await;
    assert_eq!(quiet_users(&report), USERS);
    let account = h.google_user("alice").account;
    let after = h.emu.counters();
    let listed = |c: &crmsync::emulator::Counters| {
        c.by_user_endpoint
            .get(&account)
            .and_then(|e| e.get("people.people.connections.list"))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(listed(&after) - listed(&before), 1);
}

/// What listing `user`'s collections from their stored sync tokens would bring: (events,
/// contacts) changes.
async fn left_to_list(h: &Harness, user: &str) -> (usize, usize) {
    use crmsync::sync::remote::Remote;
    let row = h
        .state
        .sync_user(&UserId::new(user).unwrap())
        .unwrap()
        .unwrap();
    let (google, calendar, group) = (h.google_user(user), h.calendar_of(user), h.group_of(user));
    let (events, contacts) = (&row.events_sync_token, &row.contacts_sync_token);
    let events = h.remote.list_events(&google, &calendar, events.as_deref());
    let contacts = h.remote.list_contacts(&google, &group, contacts.as_deref());
    let (events, contacts) = (events.await.unwrap(), contacts.await.unwrap());
    assert!(!events.full && !contacts.full, "{user}: tokens kept");
    (events.changes.len(), contacts.changes.len())
}

#[tokio::test(flavor = "current_thread")]
async fn a_first_pass_takes_in_its_echoes_however_few_it_wrote_and_a_small_change_does_not() {
    let h = Harness::start(org()).await;
    let report = h.sync().await;
    assert_all_synced(&report);
    for user in USERS {
        let u = report
            .users
            .iter()
            .find(|u| u.user.as_str() == user)
            .unwrap();
        assert!(
            u.contacts.created + u.events.created > 0,
            "{user} got items"
        );
        assert!(u.contacts.created < 100 && u.events.created < 100);
        // Listed in full, so its few writes were listed back at once: the pass after it
        // reads nothing of its own.
        assert_eq!(left_to_list(&h, user).await, (0, 0), "{user}");
    }
    // A CRM change writes a few items: their echoes are left to the next pass's listing
    // (no extra call now), where they cost nothing more than the page it lists anyway.
    let (_, before) = sync_c2_retitled(&h).await;
    let calls = calls_since(&h, &before);
    let users = USERS.len() as u64;
    assert_eq!(calls["people.people.connections.list"], users);
    let holders = holders_of_c2(&h);
    for user in &holders {
        assert_eq!(left_to_list(&h, user).await.1, 1, "{user}: the echo of c2");
    }
    assert_eq!(quiet_users(&h.sync().await), USERS);
}

/// A fault on alice's second contact listing of a pass — the echo listing — and the `times`
/// calls after it; its id.
fn fault_alices_echo_listing(h: &Harness, times: u64, fault: FaultKind) -> u64 {
    h.emu.add_fault(FaultRule {
        matches: FaultMatch {
            endpoint: Some("people.people.connections.list".into()),
            user: Some(h.google_user("alice").account),
            ..Default::default()
        },
        trigger: FaultTrigger::Nth { n: 2, times },
        fault,
    })
}

/// How many calls fault `id` has seen.
fn fault_seen(h: &Harness, id: u64) -> u64 {
    h.emu
        .faults()
        .iter()
        .find(|f| f.id == id)
        .map_or(0, |f| f.seen)
}

#[tokio::test(flavor = "current_thread")]
async fn a_phone_edit_made_while_the_echoes_are_listed_is_not_skipped() {
    let h = Harness::start(org_with_bulk(120)).await;
    // The echo listing is held back while the phone edits a contact the pass just created.
    let fault = fault_alices_echo_listing(&h, 1, FaultKind::Delay { ms: 1_500 });
    let edit = async {
        for _ in 0..500 {
            if fault_seen(&h, fault) >= 2 {
                h.phone_edit_contact("alice", "bulk7", |c| c.title = "Edited meanwhile".into())
                    .await;
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    };
    let (report, edited) = tokio::join!(h.sync(), edit);
    assert!(edited, "the echo listing was made");
    assert_all_synced(&report);
    // The edit is not among the echoes: the token stays before it, and the next pass
    // writes it back.
    let report = h.sync().await;
    assert_all_synced(&report);
    assert!(!quiet_users(&report).contains(&"alice".to_owned()));
    assert_eq!(crm_contact(&h, "bulk7").unwrap().title, "Edited meanwhile");
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_echo_listing_keeps_the_earlier_token_and_fails_nothing() {
    let h = Harness::start(org_with_bulk(120)).await;
    // Google answers 500 to the echo listing and to every retry.
    let fault = fault_alices_echo_listing(
        &h,
        20,
        FaultKind::Status {
            code: 500,
            retry_after_secs: None,
        },
    );
    let report = h.sync().await;
    assert_all_synced(&report);
    assert!(
        fault_seen(&h, fault) >= 2,
        "the echo listing was made and failed"
    );
    h.emu.clear_faults();
    // The token stayed before the echoes: the next pass reads them, finds only echoes, and
    // has nothing to plan.
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(quiet_users(&report), USERS);
    h.assert_no_duplicates();
}
