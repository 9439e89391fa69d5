//! End-to-end stories for the rows of the plan table, through the real engine, the real
//! Google clients and the emulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sync_support;

use sync_support::*;

#[tokio::test(flavor = "current_thread")]
async fn first_pass_syncs_exactly_what_each_user_may_read_and_second_pass_is_quiet() {
    let h = Harness::start(org()).await;
    let report = h.sync().await;
    assert_all_synced(&report);
    // frank (rep_east) owns c1, c4, e1.
    assert_eq!(ids(&h.contacts("frank")), vec!["c1", "c4"]);
    // erin (mgr_east) sees frank's records (hierarchy), her own c3, and hank's contacts
    // through rule r1 (read only).
    assert_eq!(ids(&h.contacts("erin")), vec!["c1", "c2", "c3", "c4", "c5"]);
    assert_eq!(ids(&h.events("erin")), vec!["e1"]);
    // hank (rep_west) sees only his own.
    assert_eq!(ids(&h.contacts("hank")), vec!["c2", "c5"]);
    assert_eq!(ids(&h.events("hank")), vec!["e2"]);
    // alice is an admin: everything.
    assert_eq!(ids(&h.contacts("alice")).len(), 5);

    let again = h.sync().await;
    assert_all_synced(&again);
    assert!(is_quiet(&again), "second pass did something: {again:#?}");
}

#[tokio::test(flavor = "current_thread")]
async fn crm_changes_are_pushed_to_everyone_who_has_the_record() {
    let mut doc = org();
    let h = Harness::start(doc.clone()).await;
    assert_all_synced(&h.sync().await);
    doc["contacts"][0]["title"] = serde_json::json!("Chief Technology Officer");
    h.load(&doc);
    let report = h.sync().await;
    assert_all_synced(&report);
    for user in ["frank", "erin", "alice"] {
        let c1 = h.phone_contact(user, "c1").await.unwrap();
        assert_eq!(c1.title, "Chief Technology Officer", "{user}");
    }
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn a_phone_edit_by_an_editor_is_written_back_and_reaches_the_others() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    h.phone_edit_contact("frank", "c1", |c| c.first_name = "Augusta Ada".into())
        .await;
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(crm_contact(&h, "c1").unwrap().first_name, "Augusta Ada");
    let frank = report
        .users
        .iter()
        .find(|u| u.user.as_str() == "frank")
        .unwrap();
    assert_eq!(frank.contacts.written_back, 1);
    assert!(audit_actions(&h, "frank").contains(&"written_back contact:c1".to_string()));
    // The write-back reaches the others in the same run (a follow-up pass for the users who
    // have the record), and never echoes back to frank's phone.
    assert_eq!(
        h.phone_contact("erin", "c1").await.unwrap().first_name,
        "Augusta Ada"
    );
    let erin = report
        .users
        .iter()
        .find(|u| u.user.as_str() == "erin")
        .unwrap();
    assert!(erin.contacts.updated >= 1, "{erin:?}");
    assert_eq!(frank.contacts.updated, 0, "no echo back to frank's phone");
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn a_read_only_users_phone_edit_is_reverted_and_audited() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    // erin reads hank's c2 only through rule r1 (read).
    h.phone_edit_contact("erin", "c2", |c| c.title = "Hacked".into())
        .await;
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(
        crm_contact(&h, "c2").unwrap().title,
        "CTO",
        "the CRM is untouched"
    );
    assert_eq!(
        h.phone_contact("erin", "c2").await.unwrap().title,
        "CTO",
        "reverted"
    );
    let erin = report
        .users
        .iter()
        .find(|u| u.user.as_str() == "erin")
        .unwrap();
    assert_eq!(erin.contacts.reverted, 1);
    assert!(audit_actions(&h, "erin").contains(&"reverted contact:c2".to_string()));
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn edits_on_both_sides_merge_field_by_field_and_keep_both_note_lines() {
    let mut doc = org();
    let h = Harness::start(doc.clone()).await;
    assert_all_synced(&h.sync().await);
    // frank's own c4: the CRM changes a note line and the title...
    doc["contacts"][3]["notes"] = serde_json::json!("line one (from the CRM)\nline two");
    doc["contacts"][3]["title"] = serde_json::json!("VP");
    h.load(&doc);
    // ...while the phone appends a line and changes the first name.
    h.phone_edit_contact("frank", "c4", |c| {
        c.notes = "line one\nline two\nline three (from the phone)".into();
        c.first_name = "Faye".into();
    })
    .await;
    let report = h.sync().await;
    assert_all_synced(&report);
    let crm = crm_contact(&h, "c4").unwrap();
    let merged = "line one (from the CRM)\nline two\nline three (from the phone)";
    assert_eq!(crm.notes, merged);
    assert_eq!(crm.first_name, "Faye");
    assert_eq!(crm.title, "VP");
    let phone = h.phone_contact("frank", "c4").await.unwrap();
    assert_eq!(phone.notes, merged);
    assert_eq!(phone.title, "VP");
    assert!(h.state.conflict_entries(Some("frank")).unwrap().is_empty());
    // The merged record reaches erin and alice on the next pass; then all is quiet.
    assert_all_synced(&h.sync().await);
    assert_eq!(h.phone_contact("erin", "c4").await.unwrap().notes, merged);
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn a_true_conflict_is_recorded_with_both_values_and_the_crm_wins() {
    let mut doc = org();
    let h = Harness::start(doc.clone()).await;
    assert_all_synced(&h.sync().await);
    doc["contacts"][3]["title"] = serde_json::json!("Title from the CRM");
    h.load(&doc);
    h.phone_edit_contact("frank", "c4", |c| c.title = "Title from the phone".into())
        .await;
    assert_all_synced(&h.sync().await);
    assert_eq!(crm_contact(&h, "c4").unwrap().title, "Title from the CRM");
    assert_eq!(
        h.phone_contact("frank", "c4").await.unwrap().title,
        "Title from the CRM"
    );
    let conflicts = h.state.conflict_entries(Some("frank")).unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].field, "title");
    assert_eq!(conflicts[0].google_value, "Title from the phone");
    assert_eq!(conflicts[0].crm_value, "Title from the CRM");
    assert_eq!(conflicts[0].resolution, "crm");
}

#[tokio::test(flavor = "current_thread")]
async fn a_phone_delete_unlinks_by_default_and_keeps_the_crm_record() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    h.phone_delete_contact("frank", "c4").await;
    let report = h.sync().await;
    assert_all_synced(&report);
    assert!(crm_contact(&h, "c4").is_some());
    assert!(!ids(&h.contacts("frank")).contains(&"c4".to_string()));
    let link = h
        .link_of::<crmsync::model::SyncedContact>(
            "frank",
            crmsync::model::ObjectKind::Contact,
            "c4",
        )
        .unwrap();
    assert_eq!(link.state, crmsync::sync::plan::LinkState::Unlinked);
    assert!(
        is_quiet(&h.sync().await),
        "an unlinked record is not recreated"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_role_move_pulls_back_access_without_any_record_changing() {
    let mut doc = org();
    let h = Harness::start(doc.clone()).await;
    assert_all_synced(&h.sync().await);
    assert!(ids(&h.contacts("erin")).contains(&"c1".to_string()));
    // frank leaves the role tree: erin (mgr_east) no longer manages him, and no rule shares
    // his contacts with her. She keeps e1, which she attends.
    doc["users"][2]["role"] = serde_json::Value::Null;
    h.load(&doc);
    let report = h.sync().await;
    assert_all_synced(&report);
    let erin = ids(&h.contacts("erin"));
    assert!(
        !erin.contains(&"c1".to_string()) && !erin.contains(&"c4".to_string()),
        "{erin:?}"
    );
    assert_eq!(ids(&h.events("erin")), vec!["e1"]);
    // frank still has his own records.
    assert_eq!(ids(&h.contacts("frank")), vec!["c1", "c4"]);
    let pulled: Vec<_> = h
        .state
        .audit_entries(Some("erin"), None, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "pulled_back")
        .collect();
    assert_eq!(pulled.len(), 2, "{pulled:#?}");
    assert!(pulled[0].detail["reason"]
        .as_str()
        .unwrap()
        .contains("no longer readable"));
}

#[tokio::test(flavor = "current_thread")]
async fn records_deleted_in_the_crm_and_deactivated_users_are_pulled_back() {
    let mut doc = org();
    let h = Harness::start(doc.clone()).await;
    assert_all_synced(&h.sync().await);
    // c5 (hank's) is deleted in the CRM; hank himself is deactivated.
    doc["contacts"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["id"] != "c5");
    h.load(&doc);
    assert_all_synced(&h.sync().await);
    assert!(!ids(&h.contacts("erin")).contains(&"c5".to_string()));
    assert_eq!(ids(&h.contacts("hank")), vec!["c2"]);
    doc["users"][3]["active"] = serde_json::json!(false);
    h.load(&doc);
    let report = h.sync().await;
    assert!(h.contacts("hank").is_empty() && h.events("hank").is_empty());
    let hank = report
        .users
        .iter()
        .find(|u| u.user.as_str() == "hank")
        .unwrap();
    assert_eq!(hank.total().deleted, 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_contact_created_in_the_crm_group_on_the_phone_is_imported() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    h.phone_create_contact("frank", "Grace", "grace@newco.example", true)
        .await;
    // Not in the group: none of crmsync's business.
    h.phone_create_contact("frank", "Private", "mum@home.example", false)
        .await;
    let report = h.sync().await;
    assert_all_synced(&report);
    let (model, _) = h.crm().snapshot().unwrap();
    let imported: Vec<_> = model
        .contacts
        .values()
        .filter(|c| c.emails.iter().any(|e| e.address == "grace@newco.example"))
        .collect();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].owner.as_str(), "frank");
    assert!(!model
        .contacts
        .values()
        .any(|c| c.emails.iter().any(|e| e.address == "mum@home.example")));
    // It now carries our marker, and erin (frank's manager) gets it too.
    let id = imported[0].id.to_string();
    assert!(ids(&h.contacts("frank")).contains(&id));
    let again = h.sync().await;
    assert!(ids(&h.contacts("erin")).contains(&id));
    let frank = again
        .users
        .iter()
        .find(|u| u.user.as_str() == "frank")
        .unwrap();
    assert_eq!(frank.total().imported, 0, "imported once");
}

#[tokio::test(flavor = "current_thread")]
async fn a_pre_existing_phone_contact_is_linked_not_duplicated() {
    let h = Harness::start(org()).await;
    // Before crmsync ever ran, erin had eve in her phone's contacts.
    h.phone_create_contact_before_sync("erin", "Evie", "eve@initech.example")
        .await;
    assert_all_synced(&h.sync().await);
    let dump = h.emu.dump_user("erin@acme.example").unwrap();
    let with_email: Vec<_> = dump
        .live_contacts()
        .into_iter()
        .filter(|p| {
            p.email_addresses
                .iter()
                .flatten()
                .any(|e| e.value.as_deref() == Some("eve@initech.example"))
        })
        .collect();
    assert_eq!(with_email.len(), 1, "linked, not duplicated");
    assert!(audit_actions(&h, "erin").contains(&"linked_existing contact:c3".to_string()));
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn a_user_removed_from_the_crm_altogether_loses_everything_synced() {
    let mut doc = org();
    let h = Harness::start(doc.clone()).await;
    assert_all_synced(&h.sync().await);
    assert!(!h.contacts("hank").is_empty());
    // hank disappears from the CRM (his records move to erin first, so the file is valid).
    for c in doc["contacts"].as_array_mut().unwrap() {
        if c["owner"] == "hank" {
            c["owner"] = serde_json::json!("erin");
        }
    }
    for e in doc["events"].as_array_mut().unwrap() {
        if e["owner"] == "hank" {
            e["owner"] = serde_json::json!("erin");
            e["attendees"] = serde_json::json!([{"user": "erin"}]);
        }
    }
    for o in doc["organizations"].as_array_mut().unwrap() {
        o["owner"] = serde_json::json!("erin");
    }
    doc["users"]
        .as_array_mut()
        .unwrap()
        .retain(|u| u["id"] != "hank");
    h.load(&doc);
    let report = h.sync().await;
    let hank = report
        .users
        .iter()
        .find(|u| u.user.as_str() == "hank")
        .unwrap();
    assert!(hank.total().deleted >= 3, "{hank:?}");
    assert!(h.contacts("hank").is_empty() && h.events("hank").is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_phone_contact_the_crm_cannot_take_is_reported_once_and_left_alone() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    // Not an e-mail address: the CRM refuses the import.
    h.phone_create_contact("frank", "Broken", "not-an-address", true)
        .await;
    let report = h.sync().await;
    assert_all_synced(&report);
    let refused = |h: &Harness| {
        h.state
            .audit_entries(Some("frank"), None, 1000)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "not_imported")
            .count()
    };
    assert_eq!(refused(&h), 1);
    assert!(is_quiet(&h.sync().await));
    assert_eq!(refused(&h), 1, "reported once");
    assert!(
        h.contacts("frank")
            .iter()
            .any(|(m, name)| m.is_none() && name == "Broken"),
        "left on the phone"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_crm_calendar_deleted_on_the_phone_comes_back_whole() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let old = h.calendar_of("erin");
    assert_eq!(ids(&h.events("erin")), vec!["e1"]);
    // erin deletes the whole "CRM" calendar in Google Calendar.
    let key =
        crmsync::google::auth::load_service_account_key(&key_path(), Some(&h.emu.token_uri()))
            .await
            .unwrap();
    let auth = crmsync::google::auth::impersonate(&key, "erin@acme.example")
        .await
        .unwrap();
    let hub = crmsync::google::hub::calendar_hub(&h.emu.base_url(), auth).unwrap();
    hub.calendars().delete(&old).doit().await.unwrap();
    h.emu.reset_counters();
    let report = h.sync().await;
    assert_all_synced(&report);
    let new = h.calendar_of("erin");
    assert_ne!(new, old);
    assert_eq!(ids(&h.events("erin")), vec!["e1"], "recreated, once");
    assert!(audit_actions(&h, "erin").contains(&"calendar_recreated ".to_string()));
    assert!(is_quiet(&h.sync().await));
    // A quiet pass does not fetch the calendar: the incremental listing is the check.
    h.emu.reset_counters();
    h.sync().await;
    assert_eq!(h.emu.counters().endpoint("calendar.calendars.get"), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_lost_state_db_relinks_everything_by_marker_without_duplicates() {
    use crmsync::sync::engine::{Engine, SyncOptions};
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let before = h.emu.counters();
    // The state DB is gone (disk lost, no backup): a fresh one, same CRM, same Google.
    let fresh = crmsync::store::StateDb::open(&h.dir.path().join("fresh-state.db")).unwrap();
    let engine = Engine {
        config: &h.config,
        state: &fresh,
        crm: std::cell::RefCell::new(Box::new(h.crm())),
        remote: &h.remote,
        now: h.now,
    };
    let report = engine.sync_once(&SyncOptions::default()).await.unwrap();
    assert_all_synced(&report);
    for u in &report.users {
        let t = u.total();
        assert_eq!(t.created, 0, "{}: nothing re-created", u.user);
        assert!(t.linked > 0, "{}: relinked by marker", u.user);
    }
    let after = h.emu.counters();
    assert_eq!(
        after.endpoint("calendar.calendars.insert"),
        before.endpoint("calendar.calendars.insert"),
        "calendars found again, not created"
    );
    assert_eq!(
        after.endpoint("people.contactGroups.create"),
        before.endpoint("people.contactGroups.create"),
        "contact groups found again, not created"
    );
    // Exactly one item per marker in every account.
    for user in ["alice", "erin", "frank", "hank"] {
        let dump = h.emu.dump_user(&format!("{user}@acme.example")).unwrap();
        let mut markers: Vec<String> = dump
            .live_contacts()
            .into_iter()
            .filter_map(|p| {
                p.client_data
                    .iter()
                    .flatten()
                    .find(|d| d.key.as_deref() == Some("crmsync_id"))
                    .and_then(|d| d.value.clone())
            })
            .collect();
        let n = markers.len();
        markers.sort();
        markers.dedup();
        assert_eq!(n, markers.len(), "{user}: duplicate contacts");
        let calendars = dump.calendars.iter().filter(|c| !c.primary).count();
        assert_eq!(calendars, 1, "{user}: one CRM calendar");
    }
    // And the next pass on the fresh state is quiet.
    let again = engine.sync_once(&SyncOptions::default()).await.unwrap();
    assert!(is_quiet(&again), "{again:#?}");
}

/// The embedded CRM as a [`story::StoryCrm`]: the office re-loads the org document.
struct EmbeddedStoryCrm<'h> {
    h: &'h Harness,
    doc: std::cell::RefCell<serde_json::Value>,
}

impl story::StoryCrm for EmbeddedStoryCrm<'_> {
    fn name(&self) -> String {
        "embedded CRM".into()
    }

    fn open(&self) -> Box<dyn crmsync::crm::Source> {
        Box::new(self.h.crm())
    }

    fn truth(&self) -> crmsync::crm::OrgModel {
        self.h.crm().snapshot().unwrap().0
    }

    fn cast(&self) -> story::StoryCast {
        story::StoryCast {
            editor: "frank".parse().unwrap(),
            edited: "c1".parse().unwrap(),
            loser: "erin".parse().unwrap(),
            lost: "c1".parse().unwrap(),
        }
    }

    fn take_access_away(&self) {
        // frank leaves the role tree: erin (mgr_east) no longer manages him.
        let mut doc = self.doc.borrow_mut();
        doc["users"][2]["role"] = serde_json::Value::Null;
        self.h.load(&doc);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_held_back_story_runs_against_the_embedded_crm() {
    let h = Harness::start(org()).await;
    let crm = EmbeddedStoryCrm {
        h: &h,
        doc: std::cell::RefCell::new(org()),
    };
    story::held_back_story(&h, &crm).await;
}
