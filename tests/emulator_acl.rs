//! Calendar ACLs and the offboarding endpoints, as strict as Google documents them, through
//! the official hubs: rule ids and roles, the owner's own rule, paging, sync tokens with
//! deleted rules, 404s; `calendars.delete`; `contactGroups.delete` with and without
//! `deleteContacts`; group `clientData` only when `groupFields` asks for it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use crmsync::emulator::ApiFamily;
use google_calendar3::api::{AclRule, AclRuleScope, Calendar};
use google_people1::api::{
    ContactGroup, ContactGroupMembership, CreateContactGroupRequest, GroupClientData, Membership,
    Name, Person,
};
use google_people1::FieldMask;
use std::str::FromStr;

fn rule(role: &str, scope_type: Option<&str>, value: Option<&str>) -> AclRule {
    AclRule {
        role: Some(role.into()),
        scope: Some(AclRuleScope {
            type_: scope_type.map(str::to_owned),
            value: value.map(str::to_owned),
        }),
        ..Default::default()
    }
}

async fn secondary(cal: &crmsync::google::hub::Calendar) -> String {
    let (_, created) = cal
        .calendars()
        .insert(Calendar {
            summary: Some("CRM (crmsync)".into()),
            ..Default::default()
        })
        .doit()
        .await
        .unwrap();
    created.id.unwrap()
}

#[tokio::test]
async fn acl_rules_are_checked_like_google_and_the_owner_is_protected() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    let id = secondary(&cal).await;
    let (_, acl) = cal.acl().list(&id).doit().await.unwrap();
    let items = acl.items.unwrap();
    assert_eq!(items.len(), 1, "a new calendar lists its owner");
    assert_eq!(items[0].id.as_deref(), Some("user:alice@example.com"));
    assert_eq!(items[0].role.as_deref(), Some("owner"));

    for (bad, why) in [
        (rule("admin", Some("user"), Some("b@example.com")), "role"),
        (
            rule("reader", Some("team"), Some("b@example.com")),
            "scope type",
        ),
        (rule("reader", Some("user"), None), "scope value"),
        (rule("reader", Some("user"), Some("not-an-email")), "e-mail"),
        (
            rule("reader", Some("domain"), Some("x@example.com")),
            "domain",
        ),
        (
            rule("reader", Some("default"), Some("x")),
            "default with a value",
        ),
        (
            AclRule {
                role: Some("reader".into()),
                ..Default::default()
            },
            "no scope",
        ),
    ] {
        let err = cal.acl().insert(bad, &id).doit().await.unwrap_err();
        assert_eq!(status(&err), Some(400), "{why}: {err:?}");
    }
    // Changing or deleting one's own rule: 403.
    let err = cal
        .acl()
        .insert(rule("reader", Some("user"), Some(ALICE)), &id)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(403));
    assert_eq!(reason(&err).as_deref(), Some("cannotChangeOwnAcl"));
    let err = cal
        .acl()
        .delete(&id, "user:alice@example.com")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(403));

    // Valid rules: ids by scope; a second rule for the same scope replaces the role; the
    // public scope is `default`; writerWithoutPrivateAccess is a role.
    for r in [
        rule("reader", Some("user"), Some("b@example.com")),
        rule(
            "writerWithoutPrivateAccess",
            Some("user"),
            Some("b@example.com"),
        ),
        rule("freeBusyReader", Some("domain"), Some("example.com")),
        rule("reader", None, None),
        rule("writer", Some("group"), Some("team@example.com")),
    ] {
        cal.acl()
            .insert(r, &id)
            .send_notifications(false)
            .doit()
            .await
            .unwrap();
    }
    let (_, got) = cal
        .acl()
        .get(&id, "user:b@example.com")
        .doit()
        .await
        .unwrap();
    assert_eq!(got.role.as_deref(), Some("writerWithoutPrivateAccess"));
    let (_, acl) = cal.acl().list(&id).doit().await.unwrap();
    let mut ids: Vec<String> = acl
        .items
        .unwrap()
        .into_iter()
        .filter_map(|r| r.id)
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "default",
            "domain:example.com",
            "group:team@example.com",
            "user:alice@example.com",
            "user:b@example.com"
        ]
    );
    // Unknown rules and calendars: 404.
    let err = cal
        .acl()
        .get(&id, "user:nobody@example.com")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(404));
    let err = cal
        .acl()
        .delete(&id, "user:nobody@example.com")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(404));
    let err = cal
        .acl()
        .list("nope@group.calendar.google.com")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(404));
    // Another user cannot see this calendar's ACL at all.
    let bob = env.calendar(BOB).await;
    let err = bob.acl().list(&id).doit().await.unwrap_err();
    assert_eq!(status(&err), Some(404));
}

#[tokio::test]
async fn acl_listings_page_and_sync_incrementally_with_deleted_rules() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    let id = secondary(&cal).await;
    for i in 0..4 {
        cal.acl()
            .insert(
                rule("reader", Some("user"), Some(&format!("u{i}@example.com"))),
                &id,
            )
            .doit()
            .await
            .unwrap();
    }
    // Pages of two; the sync token only on the last page.
    let mut seen = 0;
    let mut token = None;
    let mut page: Option<String> = None;
    for _ in 0..10 {
        let mut call = cal.acl().list(&id).max_results(2);
        if let Some(p) = &page {
            call = call.page_token(p);
        }
        let (_, acl) = call.doit().await.unwrap();
        seen += acl.items.unwrap_or_default().len();
        match acl.next_page_token {
            Some(p) => {
                assert!(acl.next_sync_token.is_none());
                page = Some(p);
            }
            None => {
                token = acl.next_sync_token;
                break;
            }
        }
    }
    assert_eq!(seen, 5);
    let token = token.expect("last page has nextSyncToken");
    // Quiet: nothing changed.
    let (_, acl) = cal.acl().list(&id).sync_token(&token).doit().await.unwrap();
    assert!(acl.items.unwrap_or_default().is_empty());
    let token = acl.next_sync_token.unwrap();
    // A rule added, one deleted: both show, the deleted one with role none.
    cal.acl()
        .insert(rule("reader", Some("user"), Some("spy@rival.example")), &id)
        .doit()
        .await
        .unwrap();
    cal.acl()
        .delete(&id, "user:u0@example.com")
        .doit()
        .await
        .unwrap();
    let (_, acl) = cal.acl().list(&id).sync_token(&token).doit().await.unwrap();
    let mut changed: Vec<(String, String)> = acl
        .items
        .unwrap()
        .into_iter()
        .map(|r| (r.id.unwrap(), r.role.unwrap()))
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            ("user:spy@rival.example".to_owned(), "reader".to_owned()),
            ("user:u0@example.com".to_owned(), "none".to_owned())
        ]
    );
    // Without a token deleted rules only show when asked for.
    let (_, full) = cal.acl().list(&id).doit().await.unwrap();
    assert_eq!(full.items.unwrap().len(), 5);
    let (_, with_deleted) = cal.acl().list(&id).show_deleted(true).doit().await.unwrap();
    assert_eq!(with_deleted.items.unwrap().len(), 6);
    // showDeleted=false cannot go with a token; a bad token is 400; an expired one is 410.
    let err = cal
        .acl()
        .list(&id)
        .sync_token(&token)
        .show_deleted(false)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
    let err = cal
        .acl()
        .list(&id)
        .sync_token("garbage")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(400));
    env.emu
        .expire_sync_tokens(Some(ALICE), Some(ApiFamily::Calendar));
    let err = cal
        .acl()
        .list(&id)
        .sync_token(&token)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(410));
    assert_eq!(reason(&err).as_deref(), Some("fullSyncRequired"));
    let err = cal.acl().list(&id).max_results(0).doit().await.unwrap_err();
    assert_eq!(status(&err), Some(400));
}

#[tokio::test]
async fn deleting_groups_keeps_or_deletes_members_and_group_client_data_needs_asking() {
    let env = start().await;
    let people = env.people(ALICE).await;
    let make = |name: &str, marked: bool| CreateContactGroupRequest {
        contact_group: Some(ContactGroup {
            name: Some(name.into()),
            client_data: marked.then(|| {
                vec![GroupClientData {
                    key: Some("crmsync_group".into()),
                    value: Some("alice".into()),
                }]
            }),
            ..Default::default()
        }),
        read_group_fields: None,
    };
    let (_, keep) = people
        .contact_groups()
        .create(make("Keep", true))
        .doit()
        .await
        .unwrap();
    let (_, wipe) = people
        .contact_groups()
        .create(make("Wipe", false))
        .doit()
        .await
        .unwrap();
    let member_of = |group: &ContactGroup| Person {
        names: Some(vec![Name {
            given_name: Some("M".into()),
            ..Default::default()
        }]),
        memberships: Some(vec![Membership {
            contact_group_membership: Some(ContactGroupMembership {
                contact_group_resource_name: group.resource_name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let (_, a) = people
        .people()
        .create_contact(member_of(&keep))
        .doit()
        .await
        .unwrap();
    let (_, b) = people
        .people()
        .create_contact(member_of(&wipe))
        .doit()
        .await
        .unwrap();

    // clientData only when groupFields asks for it (Google's default mask leaves it out).
    let (_, plain) = people.contact_groups().list().doit().await.unwrap();
    assert!(plain
        .contact_groups
        .unwrap()
        .iter()
        .all(|g| g.client_data.is_none()));
    let (_, asked) = people
        .contact_groups()
        .list()
        .group_fields(FieldMask::from_str("clientData,name").unwrap())
        .doit()
        .await
        .unwrap();
    let marked: Vec<String> = asked
        .contact_groups
        .unwrap()
        .into_iter()
        .filter(|g| g.client_data.is_some())
        .filter_map(|g| g.name)
        .collect();
    assert_eq!(marked, ["Keep"]);
    let (_, one) = people
        .contact_groups()
        .get(keep.resource_name.as_deref().unwrap())
        .doit()
        .await
        .unwrap();
    assert!(one.client_data.is_none());

    // deleteContacts=false: the member stays (falls back to My Contacts).
    people
        .contact_groups()
        .delete(keep.resource_name.as_deref().unwrap())
        .delete_contacts(false)
        .doit()
        .await
        .unwrap();
    let (_, kept) = people
        .people()
        .get(a.resource_name.as_deref().unwrap())
        .person_fields(FieldMask::from_str("memberships").unwrap())
        .doit()
        .await
        .unwrap();
    let groups: Vec<String> = kept
        .memberships
        .unwrap()
        .into_iter()
        .filter_map(|m| m.contact_group_membership?.contact_group_resource_name)
        .collect();
    assert_eq!(groups, ["contactGroups/myContacts"]);
    // deleteContacts=true: the member goes with the group.
    people
        .contact_groups()
        .delete(wipe.resource_name.as_deref().unwrap())
        .delete_contacts(true)
        .doit()
        .await
        .unwrap();
    let err = people
        .people()
        .get(b.resource_name.as_deref().unwrap())
        .person_fields(FieldMask::from_str("names").unwrap())
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(404));
    // Deleting again: 404; system groups cannot be deleted.
    let err = people
        .contact_groups()
        .delete(keep.resource_name.as_deref().unwrap())
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

#[tokio::test]
async fn deleting_a_secondary_calendar_takes_its_events_and_its_acl() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    let id = secondary(&cal).await;
    cal.events()
        .insert(event(Some("inevent1"), base_time(), "x"), &id)
        .doit()
        .await
        .unwrap();
    cal.calendars().delete(&id).doit().await.unwrap();
    let err = cal.acl().list(&id).doit().await.unwrap_err();
    assert_eq!(status(&err), Some(404));
    let err = cal.calendars().delete(&id).doit().await.unwrap_err();
    assert_eq!(status(&err), Some(404), "deleting twice is a 404");
    let (_, list) = cal.calendar_list().list().doit().await.unwrap();
    assert_eq!(
        list.items.unwrap().len(),
        1,
        "only the primary calendar is left"
    );
}
