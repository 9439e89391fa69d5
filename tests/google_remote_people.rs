//! `GoogleRemote` on People, against the emulator through the real clients: the contact
//! group, batch create/update/delete with per-op results and failure isolation, listings
//! (full, paged, incremental, expired token), renamed contacts and the echo law.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod google_remote_support;

use crmsync::emulator::ApiFamily;
use crmsync::google::mapping::{canonical_contact, person_groups};
use crmsync::model::{SyncedContact, UserId};
use crmsync::sync::remote::{
    ContactOp, OpOutcome, Remote, RemoteChange, RemoteErrorKind, RemoteItem,
};
use google_people1::api::{
    ContactGroup, CreateContactGroupRequest, ModifyContactGroupMembersRequest,
};
use google_remote_support::*;
use std::collections::HashMap;
use std::str::FromStr;

async fn people_hub(emu: &crmsync::emulator::TestEmulator) -> crmsync::google::hub::People {
    let key = crmsync::google::auth::load_service_account_key(&key_path(), Some(&emu.token_uri()))
        .await
        .unwrap();
    let auth = crmsync::google::auth::impersonate(&key, ALICE)
        .await
        .unwrap();
    crmsync::google::hub::people_hub(&emu.base_url(), auth).unwrap()
}

fn present(changes: &[RemoteChange<SyncedContact>]) -> HashMap<String, RemoteItem<SyncedContact>> {
    changes
        .iter()
        .filter_map(|c| match c {
            RemoteChange::Present(item) => Some((item.google_id.clone(), item.clone())),
            RemoteChange::Deleted { .. } => None,
        })
        .collect()
}

fn deleted(changes: &[RemoteChange<SyncedContact>]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match c {
            RemoteChange::Deleted { google_id } => Some(google_id.clone()),
            RemoteChange::Present(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn the_group_is_made_once_and_found_again() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let group = remote.ensure_group(&alice, "CRM", None).await.unwrap();
    assert_eq!(
        remote
            .ensure_group(&alice, "CRM", Some(&group))
            .await
            .unwrap(),
        group
    );
    // State loss: found by its marker, not made twice.
    assert_eq!(
        remote.ensure_group(&alice, "CRM", None).await.unwrap(),
        group
    );
    assert_eq!(emu.counters().endpoint("people.contactGroups.create"), 1);

    // A group the user made by hand with that name is never adopted (its members would be
    // imported into the CRM): ours is made beside it under a numbered name.
    let hub = people_hub(&emu).await;
    let (_, made) = hub
        .contact_groups()
        .create(CreateContactGroupRequest {
            contact_group: Some(ContactGroup {
                name: Some("Clients".into()),
                ..Default::default()
            }),
            read_group_fields: None,
        })
        .doit()
        .await
        .unwrap();
    let bob = crmsync::sync::remote::GoogleUser {
        user: UserId::new("bob").unwrap(),
        account: alice.account.clone(),
    };
    let ours = remote.ensure_group(&bob, "Clients", None).await.unwrap();
    assert_ne!(ours, made.resource_name.clone().unwrap());
    let (_, listed) = hub
        .contact_groups()
        .list()
        .group_fields(google_people1::FieldMask::from_str("name,clientData").unwrap())
        .doit()
        .await
        .unwrap();
    let names: Vec<(String, bool)> = listed
        .contact_groups
        .unwrap()
        .into_iter()
        .filter(|g| g.name.as_deref().is_some_and(|n| n.starts_with("Clients")))
        .map(|g| (g.name.unwrap(), g.client_data.is_some()))
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        vec![("Clients".into(), false), ("Clients 2".into(), true)],
        "the personal group is untouched; ours carries the marker"
    );
    assert_eq!(
        remote.ensure_group(&bob, "Clients", None).await.unwrap(),
        ours
    );

    // A stored group that was deleted: made again.
    hub.contact_groups().delete(&group).doit().await.unwrap();
    let again = remote
        .ensure_group(&alice, "CRM", Some(&group))
        .await
        .unwrap();
    assert_ne!(again, group);
    assert_eq!(
        remote.ensure_group(&alice, "CRM", None).await.unwrap(),
        again
    );
}

#[tokio::test]
async fn contacts_round_trip_and_per_item_failures_stay_isolated() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let group = remote.ensure_group(&alice, "CRM", None).await.unwrap();
    let ada = person("Ada", "Lovelace", "Ada@Globex.Example");
    let grace = person("Grace", "Hopper", "grace@initech.example");
    let mut zoe = person("Zoë", "Ångström", "zoe@umbrella.example");
    zoe.phones[0].number = "+44 20 7946 0001".into();
    zoe.notes = String::new();
    let ops = vec![
        ContactOp::Create {
            crm_id: crm("c-ada"),
            data: ada.clone(),
        },
        ContactOp::Create {
            crm_id: crm("c-grace"),
            data: grace.clone(),
        },
        ContactOp::Create {
            crm_id: crm("c-zoe"),
            data: zoe.clone(),
        },
    ];
    let created = remote.contact_ops(&alice, &group, &ops).await.unwrap();
    assert_eq!(
        emu.counters().endpoint("people.people.batchCreateContacts"),
        1
    );
    for (r, (v, id)) in created
        .iter()
        .zip([(&ada, "c-ada"), (&grace, "c-grace"), (&zoe, "c-zoe")])
    {
        let item = written(r);
        assert!(item.google_id.starts_with("people/"));
        assert_eq!(item.crm_id, Some(crm(id)));
        assert_eq!(item.data, canonical_contact(v));
        assert!(item.in_container);
    }

    // Echo law: the listing gives back exactly what was written; a sync token comes back.
    let listing = remote.list_contacts(&alice, &group, None).await.unwrap();
    let token = listing.next_sync_token.clone().expect("sync token");
    let listed = present(&listing.changes);
    assert_eq!(listed.len(), 3);
    for r in &created {
        let w = written(r);
        let l = &listed[&w.google_id];
        assert_eq!(
            (&l.data, &l.etag, &l.crm_id, l.in_container),
            (&w.data, &w.etag, &w.crm_id, true)
        );
    }

    // The phone user puts Grace into a label of their own: our update must keep it.
    let hub = people_hub(&emu).await;
    let (_, family) = hub
        .contact_groups()
        .create(CreateContactGroupRequest {
            contact_group: Some(ContactGroup {
                name: Some("Book club".into()),
                ..Default::default()
            }),
            read_group_fields: None,
        })
        .doit()
        .await
        .unwrap();
    let family = family.resource_name.unwrap();
    let grace_rn = written(&created[1]).google_id.clone();
    hub.contact_groups()
        .members_modify(
            ModifyContactGroupMembersRequest {
                resource_names_to_add: Some(vec![grace_rn.clone()]),
                resource_names_to_remove: None,
            },
            &family,
        )
        .doit()
        .await
        .unwrap();
    let grace_now = match remote.get_contact(&alice, &group, &grace_rn).await.unwrap() {
        RemoteChange::Present(item) => item,
        other => panic!("{other:?}"),
    };

    // Updates: Ada with her current etag, Grace with hers (after the label), Zoë with a stale
    // etag, and a contact that does not exist. Only the bad ones fail.
    let mut ada2 = ada.clone();
    ada2.title = "Chief Analyst".into();
    ada2.phones.push(crmsync::model::PhoneNumber {
        number: "020 7946 0999".into(),
        label: "home".into(),
    });
    let mut grace2 = grace.clone();
    grace2.notes = "Invented the compiler.".into();
    let ops = vec![
        ContactOp::Update {
            resource: written(&created[0]).google_id.clone(),
            etag: written(&created[0]).etag.clone(),
            crm_id: crm("c-ada"),
            data: ada2.clone(),
            marked: false,
        },
        ContactOp::Update {
            resource: grace_rn.clone(),
            etag: grace_now.etag.clone(),
            crm_id: crm("c-grace"),
            data: grace2.clone(),
            marked: false,
        },
        ContactOp::Update {
            resource: written(&created[2]).google_id.clone(),
            etag: "stale-etag".into(),
            crm_id: crm("c-zoe"),
            data: zoe.clone(),
            marked: false,
        },
        ContactOp::Update {
            resource: "people/c999999".into(),
            etag: "x".into(),
            crm_id: crm("c-nobody"),
            data: zoe.clone(),
            marked: false,
        },
    ];
    let updated = remote.contact_ops(&alice, &group, &ops).await.unwrap();
    assert_eq!(written(&updated[0]).data, canonical_contact(&ada2));
    assert_eq!(written(&updated[1]).data, canonical_contact(&grace2));
    assert_eq!(
        updated[2].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::PreconditionFailed
    );
    assert_eq!(
        updated[3].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::NotFound
    );
    assert_eq!(
        emu.counters().endpoint("people.people.batchUpdateContacts"),
        1
    );
    // Grace is still in the user's own label, in ours, and in My Contacts.
    let dump = emu.dump_user(ALICE).unwrap();
    let grace_stored = dump
        .live_contacts()
        .into_iter()
        .find(|p| p.resource_name.as_deref() == Some(grace_rn.as_str()))
        .unwrap()
        .clone();
    let groups = person_groups(&grace_stored);
    for g in [&family, &group, &"contactGroups/myContacts".to_owned()] {
        assert!(groups.contains(g), "{groups:?} lacks {g}");
    }

    // Deletes: one that exists and one that does not; the good one goes through.
    let ops = vec![
        ContactOp::Delete {
            resource: written(&created[2]).google_id.clone(),
        },
        ContactOp::Delete {
            resource: "people/c424242".into(),
        },
    ];
    let removed = remote.contact_ops(&alice, &group, &ops).await.unwrap();
    assert_eq!(removed[0].result, Ok(OpOutcome::Deleted));
    assert_eq!(
        removed[1].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::NotFound
    );

    // Incremental: the two updates and the deletion.
    let incremental = remote
        .list_contacts(&alice, &group, Some(&token))
        .await
        .unwrap();
    assert!(!incremental.full);
    let changed = present(&incremental.changes);
    assert_eq!(
        changed[&written(&created[0]).google_id].data,
        canonical_contact(&ada2)
    );
    assert_eq!(changed[&grace_rn].data, canonical_contact(&grace2));
    assert_eq!(
        deleted(&incremental.changes),
        vec![written(&created[2]).google_id.clone()]
    );
}

#[tokio::test]
async fn a_batch_refused_as_a_whole_falls_back_to_one_call_per_contact() {
    use crmsync::emulator::{FaultKind, FaultMatch, FaultRule, FaultTrigger};
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let group = remote.ensure_group(&alice, "CRM", None).await.unwrap();
    // Google refuses the whole batch with a 400 (as when one contact in it is invalid).
    emu.add_fault(FaultRule {
        matches: FaultMatch {
            endpoint: Some("people.people.batchCreateContacts".into()),
            ..Default::default()
        },
        trigger: FaultTrigger::Always,
        fault: FaultKind::Status {
            code: 400,
            retry_after_secs: None,
        },
    });
    let ops: Vec<ContactOp> = (0..3)
        .map(|i| ContactOp::Create {
            crm_id: crm(&format!("c-{i}")),
            data: person(&format!("P{i}"), "Test", &format!("p{i}@x.example")),
        })
        .collect();
    let results = remote.contact_ops(&alice, &group, &ops).await.unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r.result, Ok(OpOutcome::Written(_)))),
        "{results:?}"
    );
    let counters = emu.counters();
    assert_eq!(counters.endpoint("people.people.batchCreateContacts"), 1);
    assert_eq!(counters.endpoint("people.people.createContact"), 3);
}

#[tokio::test]
async fn an_update_batch_refused_as_a_whole_falls_back_to_one_call_per_contact() {
    use crmsync::emulator::{FaultKind, FaultMatch, FaultRule, FaultTrigger};
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let group = remote.ensure_group(&alice, "CRM", None).await.unwrap();
    let ops: Vec<ContactOp> = (0..3)
        .map(|i| ContactOp::Create {
            crm_id: crm(&format!("c-{i}")),
            data: person(&format!("P{i}"), "Test", &format!("p{i}@x.example")),
        })
        .collect();
    let created = remote.contact_ops(&alice, &group, &ops).await.unwrap();
    emu.add_fault(FaultRule {
        matches: FaultMatch {
            endpoint: Some("people.people.batchUpdateContacts".into()),
            ..Default::default()
        },
        trigger: FaultTrigger::Always,
        fault: FaultKind::Status {
            code: 400,
            retry_after_secs: None,
        },
    });
    let updates: Vec<ContactOp> = created
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let w = written(r);
            let mut data = w.data.clone();
            data.title = format!("Title {i}");
            ContactOp::Update {
                resource: w.google_id.clone(),
                // The middle one is stale: it alone fails.
                etag: if i == 1 {
                    "stale".into()
                } else {
                    w.etag.clone()
                },
                crm_id: w.crm_id.clone().unwrap(),
                data,
                marked: false,
            }
        })
        .collect();
    let results = remote.contact_ops(&alice, &group, &updates).await.unwrap();
    assert_eq!(written(&results[0]).data.title, "Title 0");
    assert_eq!(
        results[1].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::PreconditionFailed
    );
    assert_eq!(written(&results[2]).data.title, "Title 2");
    let counters = emu.counters();
    assert_eq!(counters.endpoint("people.people.batchUpdateContacts"), 1);
    assert_eq!(counters.endpoint("people.people.updateContact"), 2);
}

#[tokio::test]
async fn listings_page_expire_and_report_previous_names() {
    let (emu, remote) = start_with(unlimited(), |c| c.contact_page_size = 2).await;
    let alice = alice();
    let group = remote.ensure_group(&alice, "CRM", None).await.unwrap();
    let ops: Vec<ContactOp> = (0..5)
        .map(|i| ContactOp::Create {
            crm_id: crm(&format!("c-{i}")),
            data: person(&format!("P{i}"), "Paged", &format!("p{i}@x.example")),
        })
        .collect();
    let created = remote.contact_ops(&alice, &group, &ops).await.unwrap();
    emu.reset_counters();
    let listing = remote.list_contacts(&alice, &group, None).await.unwrap();
    assert_eq!(present(&listing.changes).len(), 5);
    assert_eq!(emu.counters().endpoint("people.people.connections.list"), 3); // ⌈5 / 2⌉
    let token = listing.next_sync_token.unwrap();

    // A contact whose resource name changed: Google reports the former names in
    // incremental listings (only there), and we pass them on.
    let old = written(&created[0]).google_id.clone();
    let renamed = emu.rename_contact(ALICE, &old).unwrap();
    let incremental = remote
        .list_contacts(&alice, &group, Some(&token))
        .await
        .unwrap();
    let moved = present(&incremental.changes);
    let item = &moved[&renamed.new_resource_name];
    assert_eq!(item.previous_ids, vec![old.clone()]);
    assert_eq!(item.crm_id, Some(crm("c-0")));
    assert_eq!(item.data, written(&created[0]).data);
    // The new name reads as the same contact.
    match remote
        .get_contact(&alice, &group, &renamed.new_resource_name)
        .await
        .unwrap()
    {
        RemoteChange::Present(item) => assert_eq!(item.crm_id, Some(crm("c-0"))),
        other => panic!("{other:?}"),
    }

    // An expired token asks for a full listing.
    emu.expire_sync_tokens(Some(ALICE), Some(ApiFamily::People));
    let err = remote
        .list_contacts(&alice, &group, Some(&token))
        .await
        .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::SyncTokenExpired);
}

#[tokio::test]
async fn scans_hand_over_a_page_at_a_time_and_stop_when_told() {
    let (emu, remote) = start_with(unlimited(), |c| c.contact_page_size = 2).await;
    let alice = alice();
    let group = remote.ensure_group(&alice, "CRM", None).await.unwrap();
    let token = remote
        .list_contacts(&alice, &group, None)
        .await
        .unwrap()
        .next_sync_token
        .unwrap();
    let ops: Vec<ContactOp> = (0..5)
        .map(|i| ContactOp::Create {
            crm_id: crm(&format!("c-{i}")),
            data: person(&format!("S{i}"), "Scanned", &format!("s{i}@x.example")),
        })
        .collect();
    remote.contact_ops(&alice, &group, &ops).await.unwrap();

    // Every page kept: three pages of at most two, then the token past them.
    emu.reset_counters();
    let mut pages = Vec::new();
    let next = remote
        .scan_contacts(&alice, &group, &token, &mut |page| {
            pages.push(page.len());
            true
        })
        .await
        .unwrap();
    assert_eq!(pages, vec![2, 2, 1]);
    assert_eq!(emu.counters().endpoint("people.people.connections.list"), 3);
    let after = remote
        .list_contacts(&alice, &group, Some(&next.unwrap()))
        .await
        .unwrap();
    assert!(after.changes.is_empty(), "{:?}", after.changes);

    // The first page refused: the walk ends there, with no token.
    emu.reset_counters();
    let mut seen = 0;
    let next = remote
        .scan_contacts(&alice, &group, &token, &mut |_| {
            seen += 1;
            false
        })
        .await
        .unwrap();
    assert_eq!((seen, next), (1, None));
    assert_eq!(emu.counters().endpoint("people.people.connections.list"), 1);

    // An expired token is the listing's error, as for `list_contacts`.
    emu.expire_sync_tokens(Some(ALICE), Some(ApiFamily::People));
    let err = remote
        .scan_contacts(&alice, &group, &token, &mut |_| true)
        .await
        .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::SyncTokenExpired);
}

#[tokio::test]
async fn a_lost_answer_to_group_creation_is_resolved_through_the_409() {
    use crmsync::emulator::{FaultKind, FaultMatch, FaultRule, FaultTrigger};
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    emu.add_fault(FaultRule {
        matches: FaultMatch {
            endpoint: Some("people.contactGroups.create".into()),
            ..Default::default()
        },
        trigger: FaultTrigger::Nth { n: 1, times: 1 },
        fault: FaultKind::LostResponse,
    });
    // Created, answer lost; the retry meets 409 (the name exists) and finds it.
    let group = remote.ensure_group(&alice, "CRM", None).await.unwrap();
    let counters = emu.counters();
    assert_eq!(counters.endpoint("people.contactGroups.create"), 2);
    assert_eq!(counters.by_status.get(&409).copied(), Some(1));
    let dump = emu.dump_user(ALICE).unwrap();
    let ours: Vec<_> = dump
        .groups
        .iter()
        .filter(|g| g.name.as_deref() == Some("CRM"))
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].resource_name.as_deref(), Some(group.as_str()));
}

#[tokio::test]
async fn writes_cost_the_fewest_calls_the_batch_limits_allow() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let group = remote.ensure_group(&alice, "CRM", None).await.unwrap();
    emu.reset_counters();
    let ops: Vec<ContactOp> = (0..450)
        .map(|i| ContactOp::Create {
            crm_id: crm(&format!("c-{i}")),
            data: person(&format!("P{i}"), "Bulk", &format!("p{i}@x.example")),
        })
        .collect();
    let created = remote.contact_ops(&alice, &group, &ops).await.unwrap();
    assert!(created
        .iter()
        .all(|r| matches!(r.result, Ok(OpOutcome::Written(_)))));
    assert_eq!(
        emu.counters().endpoint("people.people.batchCreateContacts"),
        3
    ); // ⌈450/200⌉
       // Every answer went to its own op.
    for (i, r) in created.iter().enumerate() {
        assert_eq!(written(r).crm_id, Some(crm(&format!("c-{i}"))));
    }

    let updates: Vec<ContactOp> = created
        .iter()
        .take(250)
        .map(|r| {
            let w = written(r);
            let mut data = w.data.clone();
            data.notes = "Updated in bulk".into();
            ContactOp::Update {
                resource: w.google_id.clone(),
                etag: w.etag.clone(),
                crm_id: w.crm_id.clone().unwrap(),
                data,
                marked: false,
            }
        })
        .collect();
    let updated = remote.contact_ops(&alice, &group, &updates).await.unwrap();
    assert!(updated
        .iter()
        .all(|r| written(r).data.notes == "Updated in bulk"));
    assert_eq!(
        emu.counters().endpoint("people.people.batchUpdateContacts"),
        2
    ); // ⌈250/200⌉
       // The current etags come from people:batchGet, not one get per contact.
    assert_eq!(emu.counters().endpoint("people.people.getBatchGet"), 2); // ⌈250/200⌉
    assert_eq!(emu.counters().endpoint("people.people.get"), 0);

    let deletes: Vec<ContactOp> = created
        .iter()
        .map(|r| ContactOp::Delete {
            resource: written(r).google_id.clone(),
        })
        .collect();
    let deleted = remote.contact_ops(&alice, &group, &deletes).await.unwrap();
    assert!(deleted.iter().all(|r| r.result == Ok(OpOutcome::Deleted)));
    assert_eq!(
        emu.counters().endpoint("people.people.batchDeleteContacts"),
        1
    ); // ⌈450/500⌉
    assert!(emu.dump_user(ALICE).unwrap().live_contacts().is_empty());
}
