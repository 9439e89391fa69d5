//! People v1 strictness, through the official `google-people1` hub (reqwest only to read the
//! `Retry-After` header, which the hub does not expose).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use crmsync::emulator::{ApiFamily, EmulatorOptions, EmulatorSettings, QuotaConfig};
use google_people1::api::{
    BatchCreateContactsRequest, BatchDeleteContactsRequest, BatchUpdateContactsRequest, ClientData,
    ContactGroup, ContactToCreate, CreateContactGroupRequest, EmailAddress,
    ModifyContactGroupMembersRequest, Name, Person,
};
use google_people1::FieldMask;

fn fields(names: &[&str]) -> FieldMask {
    FieldMask::new(names)
}

fn contact(given: &str, crm_id: &str) -> Person {
    Person {
        names: Some(vec![Name {
            given_name: Some(given.into()),
            family_name: Some("Tester".into()),
            ..Default::default()
        }]),
        email_addresses: Some(vec![EmailAddress {
            value: Some(format!("{given}@customer.test")),
            ..Default::default()
        }]),
        client_data: Some(vec![ClientData {
            key: Some("crmsync_id".into()),
            value: Some(crm_id.into()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn unlimited() -> EmulatorOptions {
    EmulatorOptions {
        settings: EmulatorSettings {
            quota: QuotaConfig::unlimited(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Create, get (personFields required), update with the current etag, stale etag → 400
/// FAILED_PRECONDITION, updatePersonFields required, singleton fields, clientData kept,
/// myContacts membership, delete → 404.
#[tokio::test]
async fn contact_lifecycle_with_etags() {
    let env = start().await;
    let people = env.people(ALICE).await;
    let (_, created) = people
        .people()
        .create_contact(contact("ann", "crm-1"))
        .doit()
        .await
        .unwrap();
    let name = created.resource_name.clone().unwrap();
    assert!(name.starts_with("people/c"));
    let groups: Vec<String> = created
        .memberships
        .clone()
        .unwrap()
        .into_iter()
        .filter_map(|m| m.contact_group_membership?.contact_group_resource_name)
        .collect();
    assert_eq!(groups, vec!["contactGroups/myContacts".to_string()]);
    assert_eq!(
        created.client_data.as_ref().unwrap()[0].value.as_deref(),
        Some("crm-1")
    );

    let err = people.people().get(&name).doit().await.unwrap_err();
    assert_eq!(status(&err), Some(400), "personFields is required");
    let (_, got) = people
        .people()
        .get(&name)
        .person_fields(fields(&["names", "metadata", "clientData"]))
        .doit()
        .await
        .unwrap();
    assert!(got.email_addresses.is_none(), "field mask applies");
    let source_etag = got.metadata.as_ref().unwrap().sources.as_ref().unwrap()[0]
        .etag
        .clone()
        .unwrap();

    // Update through the source etag.
    let mut change = got.clone();
    change.names.as_mut().unwrap()[0].given_name = Some("Anna".into());
    let err = people
        .people()
        .update_contact(change.clone(), &name)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400), "updatePersonFields is required");
    let (_, updated) = people
        .people()
        .update_contact(change.clone(), &name)
        .update_person_fields(fields(&["names"]))
        .doit()
        .await
        .unwrap();
    assert_eq!(
        updated.names.unwrap()[0].given_name.as_deref(),
        Some("Anna")
    );
    assert_eq!(
        updated.client_data.unwrap()[0].value.as_deref(),
        Some("crm-1")
    );
    let new_source_etag = updated.metadata.unwrap().sources.unwrap()[0]
        .etag
        .clone()
        .unwrap();
    assert_ne!(source_etag, new_source_etag);

    // The same (now stale) etag again → failedPrecondition.
    let err = people
        .people()
        .update_contact(change.clone(), &name)
        .update_person_fields(fields(&["names"]))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
    assert_eq!(rpc_status(&err).as_deref(), Some("FAILED_PRECONDITION"));
    assert_eq!(reason(&err).as_deref(), Some("failedPrecondition"));

    // Singleton field with two values.
    let mut two_names = contact("bo", "crm-2");
    two_names.names.as_mut().unwrap().push(Name {
        given_name: Some("other".into()),
        ..Default::default()
    });
    let err = people
        .people()
        .create_contact(two_names)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(rpc_status(&err).as_deref(), Some("INVALID_ARGUMENT"));

    people.people().delete_contact(&name).doit().await.unwrap();
    let err = people
        .people()
        .get(&name)
        .person_fields(fields(&["names"]))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(404));
}

/// 250 contacts via batchCreate, listed 100 per page: nextSyncToken only on the last page
/// (and only with requestSyncToken); incremental listing shows updates and deleted contacts
/// with metadata.deleted.
#[tokio::test]
async fn paged_connections_and_incremental_sync() {
    let env = start_with(unlimited()).await;
    let people = env.people(ALICE).await;
    for chunk in [0..200, 200..250] {
        let req = BatchCreateContactsRequest {
            contacts: Some(
                chunk
                    .map(|i| ContactToCreate {
                        contact_person: Some(contact(&format!("p{i}"), &format!("crm-{i}"))),
                    })
                    .collect(),
            ),
            read_mask: Some(fields(&["names"])),
            sources: None,
        };
        people
            .people()
            .batch_create_contacts(req)
            .doit()
            .await
            .unwrap();
    }
    let err = people
        .people()
        .connections_list("people/me")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400), "personFields is required");

    let mut sizes = Vec::new();
    let mut names = Vec::new();
    let mut page_token: Option<String> = None;
    let sync_token = loop {
        let mut call = people
            .people()
            .connections_list("people/me")
            .person_fields(fields(&["names", "clientData", "metadata"]))
            .page_size(100)
            .request_sync_token(true);
        if let Some(t) = &page_token {
            call = call.page_token(t);
        }
        let (_, page) = call.doit().await.unwrap();
        let connections = page.connections.unwrap_or_default();
        sizes.push(connections.len());
        names.extend(connections.iter().filter_map(|p| p.resource_name.clone()));
        assert_eq!(page.total_items, Some(250));
        match page.next_page_token {
            Some(t) => {
                assert!(page.next_sync_token.is_none());
                page_token = Some(t);
            }
            None => break page.next_sync_token.expect("sync token on the last page"),
        }
    };
    assert_eq!(sizes, vec![100, 100, 50]);

    // Without requestSyncToken there is no sync token.
    let (_, plain) = people
        .people()
        .connections_list("people/me")
        .person_fields(fields(&["names"]))
        .page_size(1000)
        .doit()
        .await
        .unwrap();
    assert!(plain.next_sync_token.is_none());
    let err = people
        .people()
        .connections_list("people/me")
        .person_fields(fields(&["names"]))
        .page_size(1001)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));

    people
        .people()
        .batch_delete_contacts(BatchDeleteContactsRequest {
            resource_names: Some(vec![names[0].clone()]),
        })
        .doit()
        .await
        .unwrap();
    let (_, current) = people
        .people()
        .get(&names[1])
        .person_fields(fields(&["names", "metadata"]))
        .doit()
        .await
        .unwrap();
    let mut change = current.clone();
    change.names.as_mut().unwrap()[0].family_name = Some("Changed".into());
    people
        .people()
        .update_contact(change, &names[1])
        .update_person_fields(fields(&["names"]))
        .doit()
        .await
        .unwrap();

    let (_, delta) = people
        .people()
        .connections_list("people/me")
        .person_fields(fields(&["names"]))
        .request_sync_token(true)
        .sync_token(&sync_token)
        .doit()
        .await
        .unwrap();
    let changed = delta.connections.unwrap();
    assert_eq!(changed.len(), 2);
    let deleted = changed
        .iter()
        .find(|p| p.resource_name == Some(names[0].clone()))
        .unwrap();
    assert_eq!(deleted.metadata.as_ref().unwrap().deleted, Some(true));
    assert!(delta.next_sync_token.is_some());

    // Batch limits.
    let too_many = BatchDeleteContactsRequest {
        resource_names: Some((0..501).map(|i| format!("people/c{i}")).collect()),
    };
    let err = people
        .people()
        .batch_delete_contacts(too_many)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
    let too_many = BatchCreateContactsRequest {
        contacts: Some(
            (0..201)
                .map(|i| ContactToCreate {
                    contact_person: Some(contact(&format!("q{i}"), "x")),
                })
                .collect(),
        ),
        read_mask: Some(fields(&["names"])),
        sources: None,
    };
    let err = people
        .people()
        .batch_create_contacts(too_many)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
}

/// EXPIRED_SYNC_TOKEN on demand and after 7 days of emulator time.
#[tokio::test]
async fn expired_people_sync_token() {
    let env = start().await;
    let people = env.people(ALICE).await;
    people
        .people()
        .create_contact(contact("a", "1"))
        .doit()
        .await
        .unwrap();
    let list = || {
        people
            .people()
            .connections_list("people/me")
            .person_fields(fields(&["names"]))
            .request_sync_token(true)
    };
    let token = list().doit().await.unwrap().1.next_sync_token.unwrap();
    env.emu
        .expire_sync_tokens(Some(ALICE), Some(ApiFamily::People));
    let err = list().sync_token(&token).doit().await.unwrap_err();
    assert_eq!(status(&err), Some(400));
    assert_eq!(rpc_status(&err).as_deref(), Some("FAILED_PRECONDITION"));
    assert_eq!(
        error_body(&err).unwrap()["error"]["details"][0]["reason"],
        "EXPIRED_SYNC_TOKEN"
    );

    let token = list().doit().await.unwrap().1.next_sync_token.unwrap();
    env.emu.advance_clock(Duration::from_secs(6 * 24 * 3600));
    let token = list()
        .sync_token(&token)
        .doit()
        .await
        .unwrap()
        .1
        .next_sync_token
        .unwrap();
    env.emu
        .advance_clock(Duration::from_secs(7 * 24 * 3600 + 1));
    let err = list().sync_token(&token).doit().await.unwrap_err();
    assert_eq!(
        error_body(&err).unwrap()["error"]["details"][0]["reason"],
        "EXPIRED_SYNC_TOKEN"
    );
}

/// Writes are invisible to listings — full and incremental alike — for the propagation delay
/// (emulator clock): a full listing shows the people list as it was (new contacts absent,
/// changed ones as they were, deleted ones still there), then everything appears; nothing is
/// lost in between.
#[tokio::test]
async fn propagation_delay_on_full_and_incremental_listings() {
    let env = start().await;
    let mut settings = env.emu.settings();
    settings.people_propagation_delay_ms = 120_000;
    env.emu.set_settings(settings);
    let people = env.people(ALICE).await;
    let list = || {
        people
            .people()
            .connections_list("people/me")
            .person_fields(fields(&["names"]))
            .request_sync_token(true)
    };
    let given_names = |r: &google_people1::api::ListConnectionsResponse| -> Vec<String> {
        let mut names: Vec<String> = r
            .connections
            .iter()
            .flatten()
            .filter_map(|p| p.names.as_ref()?.first()?.given_name.clone())
            .collect();
        names.sort();
        names
    };
    let (_, old) = people
        .people()
        .create_contact(contact("old", "1"))
        .doit()
        .await
        .unwrap();
    env.emu.advance_clock(Duration::from_secs(121));
    let (_, settled) = list().doit().await.unwrap();
    assert_eq!(given_names(&settled), ["old"]);
    let token = settled.next_sync_token.unwrap();

    // Within the delay: a new contact, a renamed one, one created and deleted.
    people
        .people()
        .create_contact(contact("late", "2"))
        .doit()
        .await
        .unwrap();
    let mut change = old.clone();
    change.names.as_mut().unwrap()[0].given_name = Some("renamed".into());
    let old_name = old.resource_name.clone().unwrap();
    people
        .people()
        .update_contact(change, &old_name)
        .update_person_fields(fields(&["names"]))
        .doit()
        .await
        .unwrap();
    let (_, short_lived) = people
        .people()
        .create_contact(contact("brief", "3"))
        .doit()
        .await
        .unwrap();
    people
        .people()
        .delete_contact(short_lived.resource_name.as_deref().unwrap())
        .doit()
        .await
        .unwrap();
    let (_, full) = list().doit().await.unwrap();
    assert_eq!(given_names(&full), ["old"], "the list as it was");
    assert_eq!(full.total_people, Some(1));
    let (_, early) = list().sync_token(&token).doit().await.unwrap();
    assert!(early.connections.unwrap_or_default().is_empty());
    let token = early.next_sync_token.unwrap();

    // A delete is not visible yet either; the direct read is immediate.
    env.emu.advance_clock(Duration::from_secs(60));
    people
        .people()
        .delete_contact(&old_name)
        .doit()
        .await
        .unwrap();
    let (_, full) = list().doit().await.unwrap();
    assert_eq!(given_names(&full), ["old"]);
    let gone = people
        .people()
        .get(&old_name)
        .person_fields(fields(&["names"]))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&gone), Some(404));

    // 61 s later the first writes have propagated, the delete has not.
    env.emu.advance_clock(Duration::from_secs(61));
    let (_, full) = list().doit().await.unwrap();
    assert_eq!(given_names(&full), ["late", "renamed"]);

    env.emu.advance_clock(Duration::from_secs(120));
    let (_, full) = list().doit().await.unwrap();
    assert_eq!(given_names(&full), ["late"]);
    let (_, later) = list().sync_token(&token).doit().await.unwrap();
    let changes = later.connections.unwrap_or_default();
    let deleted: Vec<_> = changes
        .iter()
        .filter(|p| p.metadata.as_ref().and_then(|m| m.deleted) == Some(true))
        .filter_map(|p| p.resource_name.clone())
        .collect();
    assert!(deleted.contains(&old_name), "{changes:?}");
    assert!(changes.iter().any(
        |p| p.names.as_ref().and_then(|n| n.first()?.given_name.clone()) == Some("late".into())
    ));
}

/// A renamed contact: the old resource name 404s, incremental listings show the new name with
/// metadata.previousResourceNames.
#[tokio::test]
async fn resource_name_change_and_previous_resource_names() {
    let env = start().await;
    let people = env.people(ALICE).await;
    let (_, created) = people
        .people()
        .create_contact(contact("r", "1"))
        .doit()
        .await
        .unwrap();
    let old = created.resource_name.unwrap();
    let token = people
        .people()
        .connections_list("people/me")
        .person_fields(fields(&["names"]))
        .request_sync_token(true)
        .doit()
        .await
        .unwrap()
        .1
        .next_sync_token
        .unwrap();
    let renamed = env.emu.rename_contact(ALICE, &old).unwrap();
    assert_ne!(renamed.new_resource_name, old);
    let err = people
        .people()
        .get(&old)
        .person_fields(fields(&["names"]))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(404));
    people
        .people()
        .get(&renamed.new_resource_name)
        .person_fields(fields(&["names"]))
        .doit()
        .await
        .unwrap();
    let (_, delta) = people
        .people()
        .connections_list("people/me")
        .person_fields(fields(&["names"]))
        .request_sync_token(true)
        .sync_token(&token)
        .doit()
        .await
        .unwrap();
    let items = delta.connections.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].resource_name.as_deref(),
        Some(renamed.new_resource_name.as_str())
    );
    assert_eq!(
        items[0].metadata.as_ref().unwrap().previous_resource_names,
        Some(vec![old])
    );
}

/// Contact groups: duplicate names 409, members:modify, the last membership cannot be
/// removed, delete with deleteContacts deletes the members.
#[tokio::test]
async fn contact_groups_and_memberships() {
    let env = start().await;
    let people = env.people(ALICE).await;
    let create = |name: &str| CreateContactGroupRequest {
        contact_group: Some(ContactGroup {
            name: Some(name.into()),
            ..Default::default()
        }),
        read_group_fields: None,
    };
    let (_, group) = people
        .contact_groups()
        .create(create("CRM"))
        .doit()
        .await
        .unwrap();
    let group_name = group.resource_name.unwrap();
    let err = people
        .contact_groups()
        .create(create("CRM"))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(409));

    let (_, a) = people
        .people()
        .create_contact(contact("a", "1"))
        .doit()
        .await
        .unwrap();
    let (_, b) = people
        .people()
        .create_contact(contact("b", "2"))
        .doit()
        .await
        .unwrap();
    let a = a.resource_name.unwrap();
    let b = b.resource_name.unwrap();
    let (_, modified) = people
        .contact_groups()
        .members_modify(
            ModifyContactGroupMembersRequest {
                resource_names_to_add: Some(vec![a.clone(), b.clone(), "people/c404".into()]),
                resource_names_to_remove: None,
            },
            &group_name,
        )
        .doit()
        .await
        .unwrap();
    assert_eq!(
        modified.not_found_resource_names,
        Some(vec!["people/c404".to_string()])
    );
    let (_, g) = people
        .contact_groups()
        .get(&group_name)
        .max_members(10)
        .doit()
        .await
        .unwrap();
    assert_eq!(g.member_count, Some(2));

    // b leaves myContacts: its only membership is now the CRM group, which it cannot leave.
    people
        .contact_groups()
        .members_modify(
            ModifyContactGroupMembersRequest {
                resource_names_to_add: None,
                resource_names_to_remove: Some(vec![b.clone()]),
            },
            "contactGroups/myContacts",
        )
        .doit()
        .await
        .unwrap();
    let (_, refused) = people
        .contact_groups()
        .members_modify(
            ModifyContactGroupMembersRequest {
                resource_names_to_add: None,
                resource_names_to_remove: Some(vec![b.clone()]),
            },
            &group_name,
        )
        .doit()
        .await
        .unwrap();
    assert_eq!(
        refused.can_not_remove_last_contact_group_resource_names,
        Some(vec![b.clone()])
    );

    let (_, list) = people.contact_groups().list().doit().await.unwrap();
    assert!(list
        .contact_groups
        .unwrap()
        .iter()
        .any(|g| g.resource_name.as_deref() == Some("contactGroups/myContacts")));

    people
        .contact_groups()
        .delete(&group_name)
        .delete_contacts(true)
        .doit()
        .await
        .unwrap();
    let dump = env.emu.dump_user(ALICE).unwrap();
    assert!(
        dump.live_contacts().is_empty(),
        "members deleted with the group"
    );
    let err = people
        .contact_groups()
        .get(&group_name)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(404));
    let err = people
        .contact_groups()
        .delete("contactGroups/myContacts")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
}

/// People write quota: 429 RESOURCE_EXHAUSTED with Retry-After; the window slides with the
/// emulator clock.
#[tokio::test]
async fn people_write_quota_is_429_with_retry_after() {
    let env = start().await;
    let mut settings = env.emu.settings();
    settings.quota.people_writes_per_user_per_minute = Some(3);
    env.emu.set_settings(settings);
    let people = env.people(ALICE).await;
    for i in 0..3 {
        people
            .people()
            .create_contact(contact(&format!("q{i}"), "x"))
            .doit()
            .await
            .unwrap();
    }
    let err = people
        .people()
        .create_contact(contact("q3", "x"))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(429));
    assert_eq!(rpc_status(&err).as_deref(), Some("RESOURCE_EXHAUSTED"));
    // Reads are not limited by default.
    people
        .people()
        .connections_list("people/me")
        .person_fields(fields(&["names"]))
        .doit()
        .await
        .unwrap();
    let token = env.token(ALICE).await;
    let r = env
        .http
        .post(env.url("/v1/people:createContact"))
        .bearer_auth(&token)
        .json(&contact("q4", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    env.emu.advance_clock(Duration::from_secs(61));
    people
        .people()
        .create_contact(contact("q5", "x"))
        .doit()
        .await
        .unwrap();
}

/// batchUpdateContacts: all-or-nothing on etags, requires updateMask and readMask, ≤ 200.
#[tokio::test]
async fn batch_update_contacts_checks_etags() {
    let env = start().await;
    let people = env.people(ALICE).await;
    let mut current = std::collections::HashMap::new();
    for i in 0..3 {
        let (_, p) = people
            .people()
            .create_contact(contact(&format!("u{i}"), &format!("crm-{i}")))
            .doit()
            .await
            .unwrap();
        current.insert(p.resource_name.clone().unwrap(), p);
    }
    let renamed = |mut p: Person| {
        p.names.as_mut().unwrap()[0].family_name = Some("Batch".into());
        p
    };
    let request =
        |contacts: std::collections::HashMap<String, Person>| BatchUpdateContactsRequest {
            contacts: Some(contacts),
            update_mask: Some(fields(&["names"])),
            read_mask: Some(fields(&["names"])),
            sources: None,
        };
    let all: std::collections::HashMap<String, Person> = current
        .iter()
        .map(|(k, v)| (k.clone(), renamed(v.clone())))
        .collect();
    let (_, result) = people
        .people()
        .batch_update_contacts(request(all.clone()))
        .doit()
        .await
        .unwrap();
    let results = result.update_result.unwrap();
    assert_eq!(results.len(), 3);
    assert!(results
        .values()
        .all(|r| r.person.as_ref().unwrap().names.as_ref().unwrap()[0]
            .family_name
            .as_deref()
            == Some("Batch")));
    // Replaying the same etags: every one is stale now → the whole batch fails.
    let err = people
        .people()
        .batch_update_contacts(request(all))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(rpc_status(&err).as_deref(), Some("FAILED_PRECONDITION"));
    let mut no_mask = request(std::collections::HashMap::new());
    no_mask.update_mask = None;
    let err = people
        .people()
        .batch_update_contacts(no_mask)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
}

/// people:batchGet: found people with the mask applied, a missing one with status 5
/// (NOT_FOUND) in place, and more than 200 names refused.
#[tokio::test]
async fn batch_get_reports_each_person() {
    let env = start().await;
    let people = env.people(ALICE).await;
    let mut names = Vec::new();
    for given in ["Ann", "Ben"] {
        let (_, created) = people
            .people()
            .create_contact(contact(given, &format!("crm-{given}")))
            .doit()
            .await
            .unwrap();
        names.push(created.resource_name.unwrap());
    }
    let mut call = people
        .people()
        .get_batch_get()
        .person_fields(fields(&["names"]));
    for n in names
        .iter()
        .chain(std::iter::once(&"people/c404".to_string()))
    {
        call = call.add_resource_names(n);
    }
    let (_, answer) = call.doit().await.unwrap();
    let responses = answer.responses.unwrap();
    assert_eq!(responses.len(), 3);
    assert_eq!(
        responses[0]
            .person
            .as_ref()
            .unwrap()
            .names
            .as_ref()
            .unwrap()[0]
            .given_name
            .as_deref(),
        Some("Ann")
    );
    assert!(
        responses[0]
            .person
            .as_ref()
            .unwrap()
            .email_addresses
            .is_none(),
        "masked"
    );
    assert_eq!(responses[2].status.as_ref().unwrap().code, Some(5));
    let mut too_many = people
        .people()
        .get_batch_get()
        .person_fields(fields(&["names"]));
    for i in 0..201 {
        too_many = too_many.add_resource_names(&format!("people/c{i}"));
    }
    assert!(too_many.doit().await.is_err());
}
