//! End-to-end stories for the hard paths: expired sync tokens, renamed contacts, People
//! propagation delay, stale etags within a pass, scope changes, the delete breaker and dry
//! runs, phone-delete and conflict policies, and accounts outside the org's domains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sync_support;

use crmsync::emulator::ApiFamily;
use crmsync::model::{ObjectKind, UserId};
use crmsync::scope::{ConflictPolicy, GoogleDelete, ScopeLayer, SelectionMode};
use crmsync::sync::engine::{SyncOptions, UserStatus};
use serde_json::json;
use std::cell::Cell;
use std::time::Duration;
use sync_support::*;

// ── sync tokens ─────────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "current_thread")]
async fn expired_sync_tokens_rescan_without_duplicates_deletions_or_lost_edits() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let before: Vec<_> = ["alice", "erin", "frank", "hank"]
        .iter()
        .map(|u| (h.contacts(u), h.events(u)))
        .collect();
    // Phone edits land, then Google invalidates every token (Calendar 410, People
    // EXPIRED_SYNC_TOKEN) before the next pass.
    h.phone_edit_contact("frank", "c4", |c| c.title = "Head of Ops".into())
        .await;
    h.phone_edit_event("frank", "e1", |e| e.location = "Room 7".into())
        .await;
    h.emu.expire_sync_tokens(None, None);
    let report = h.sync().await;
    assert_all_synced(&report);
    h.assert_no_duplicates();
    for u in &report.users {
        let t = u.total();
        assert_eq!((t.created, t.deleted), (0, 0), "{}: {t:?}", u.user);
    }
    assert_eq!(crm_contact(&h, "c4").unwrap().title, "Head of Ops");
    assert_eq!(crm_event(&h, "e1").unwrap().location, "Room 7");
    let frank = user_report(&report, "frank");
    assert_eq!(frank.contacts.written_back + frank.events.written_back, 2);
    // Every link survived; the others get the edits next pass, as CRM changes.
    assert_all_synced(&h.sync().await);
    let after: Vec<_> = ["alice", "erin", "frank", "hank"]
        .iter()
        .map(|u| (h.contacts(u), h.events(u)))
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        h.phone_contact("erin", "c4").await.unwrap().title,
        "Head of Ops"
    );
    assert!(is_quiet(&h.sync().await));

    // Expiring only one API's tokens works the same.
    h.emu
        .expire_sync_tokens(Some("erin@acme.example"), Some(ApiFamily::People));
    let report = h.sync().await;
    assert_all_synced(&report);
    assert!(is_quiet(&report), "{report:#?}");
    h.assert_no_duplicates();
}

// ── previousResourceNames ───────────────────────────────────────────────────────────────

#[tokio::test(flavor = "current_thread")]
async fn a_renamed_contact_is_followed_without_duplicate_or_pull_back() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let old = h.contact_resource("frank", "c4");
    let rename = h.emu.rename_contact("frank@acme.example", &old).unwrap();
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(h.contact_resource("frank", "c4"), rename.new_resource_name);
    let t = user_report(&report, "frank").total();
    assert_eq!((t.created, t.deleted, t.unlinked), (0, 0, 0), "{t:?}");
    assert!(audit_of(&h, "frank", "pulled_back").is_empty());
    assert_eq!(ids(&h.contacts("frank")), vec!["c1", "c4"]);
    h.assert_no_duplicates();
    // Edits reach the renamed contact, both ways.
    let mut doc = org();
    doc["contacts"][3]["title"] = json!("Renamed but reachable");
    h.load(&doc);
    assert_all_synced(&h.sync().await);
    assert_eq!(
        h.phone_contact("frank", "c4").await.unwrap().title,
        "Renamed but reachable"
    );
    h.phone_edit_contact("frank", "c4", |c| c.last_name = "Renamed".into())
        .await;
    assert_all_synced(&h.sync().await);
    assert_eq!(crm_contact(&h, "c4").unwrap().last_name, "Renamed");
    assert_all_synced(&h.sync().await);
    assert!(is_quiet(&h.sync().await));
    h.assert_no_duplicates();
}

// ── People propagation delay ────────────────────────────────────────────────────────────

#[tokio::test(flavor = "current_thread")]
async fn a_phone_edit_hidden_by_propagation_delay_is_picked_up_later() {
    let h = Harness::start(org()).await;
    let mut settings = h.emu.settings();
    settings.people_propagation_delay_ms = 120_000;
    h.emu.set_settings(settings);
    assert_all_synced(&h.sync().await);
    // Our own creates are invisible to the next incremental listing: nothing is recreated.
    let report = h.sync().await;
    assert_all_synced(&report);
    assert!(is_quiet(&report), "{report:#?}");
    h.assert_no_duplicates();

    h.phone_edit_contact("frank", "c1", |c| c.first_name = "Augusta".into())
        .await;
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(
        crm_contact(&h, "c1").unwrap().first_name,
        "Ada",
        "not visible yet"
    );
    // Minutes later the listing shows it (and the echoes of our creates): it is written back.
    h.emu.advance_clock(Duration::from_secs(180));
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(crm_contact(&h, "c1").unwrap().first_name, "Augusta");
    let t = user_report(&report, "frank").total();
    assert_eq!((t.created, t.deleted, t.written_back), (0, 0, 1), "{t:?}");
    h.assert_no_duplicates();
    // The others get it as a CRM change; their own writes, invisible for a while, never
    // duplicate anything.
    assert_all_synced(&h.sync().await);
    h.emu.advance_clock(Duration::from_secs(180));
    assert_all_synced(&h.sync().await);
    assert_eq!(
        h.phone_contact("erin", "c1").await.unwrap().first_name,
        "Augusta"
    );
    h.emu.advance_clock(Duration::from_secs(180));
    assert!(is_quiet(&h.sync().await));
    h.assert_no_duplicates();
}

// ── stale etag within a pass ────────────────────────────────────────────────────────────

/// Right after frank's contact (or event) listing, once, the phone edits a contact (or an
/// event) — between the engine's listing and its push.
struct EditAfterListing<'a> {
    h: &'a Harness,
    fired: Cell<bool>,
    /// Edit the event e1 after the event listing instead of the contact c4.
    events: bool,
}

impl CallHook for EditAfterListing<'_> {
    async fn after(&self, call: Call<'_>) {
        let wanted = if self.events {
            "list_events"
        } else {
            "list_contacts"
        };
        if call.method != wanted || call.user.user.as_str() != "frank" || self.fired.replace(true) {
            return;
        }
        if self.events {
            self.h
                .phone_edit_event("frank", "e1", |e| {
                    e.location = "Room 9 (phone, mid-pass)".into()
                })
                .await;
        } else {
            self.h
                .phone_edit_contact("frank", "c4", |c| {
                    c.first_name = "Fiona".into();
                    c.notes = "line one\nline two\nline three (phone, mid-pass)".into();
                })
                .await;
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_phone_edit_between_listing_and_push_is_reread_and_merged_in_the_same_pass() {
    let mut doc = org();
    let h = Harness::start(doc.clone()).await;
    assert_all_synced(&h.sync().await);
    // The CRM changes c4's title; the pass will push it with the etag it listed...
    doc["contacts"][3]["title"] = json!("VP Sales");
    h.load(&doc);
    let remote = Hooked {
        inner: &h.remote,
        hook: EditAfterListing {
            h: &h,
            fired: Cell::new(false),
            events: false,
        },
    };
    let report = h.sync_via(&remote, &SyncOptions::default()).await;
    assert!(remote.hook.fired.get());
    // ...which is stale by then: PreconditionFailed (GoogleRemote's pre-read sees the new
    // etag before Google would answer failedPrecondition) → re-read → re-planned as "both".
    assert_all_synced(&report);
    let frank = user_report(&report, "frank");
    assert!(frank.errors.is_empty(), "{:?}", frank.errors);
    assert_eq!(frank.contacts.written_back, 1);
    let crm = crm_contact(&h, "c4").unwrap();
    assert_eq!(
        (crm.first_name.as_str(), crm.title.as_str()),
        ("Fiona", "VP Sales")
    );
    assert_eq!(
        crm.notes,
        "line one\nline two\nline three (phone, mid-pass)"
    );
    let phone = h.phone_contact("frank", "c4").await.unwrap();
    assert_eq!(
        (phone.first_name.as_str(), phone.title.as_str()),
        ("Fiona", "VP Sales")
    );
    assert!(h.state.conflict_entries(Some("frank")).unwrap().is_empty());
    assert_all_synced(&h.sync().await);
    assert_eq!(
        h.phone_contact("erin", "c4").await.unwrap().first_name,
        "Fiona"
    );
    assert!(is_quiet(&h.sync().await));
    h.assert_no_duplicates();
}

#[tokio::test(flavor = "current_thread")]
async fn an_event_edited_between_listing_and_push_gets_412_and_is_merged_in_the_same_pass() {
    let mut doc = org();
    let h = Harness::start(doc.clone()).await;
    assert_all_synced(&h.sync().await);
    doc["events"][0]["title"] = json!("Quarterly review (agenda v2)");
    h.load(&doc);
    let remote = Hooked {
        inner: &h.remote,
        hook: EditAfterListing {
            h: &h,
            fired: Cell::new(false),
            events: true,
        },
    };
    h.emu.reset_counters();
    let report = h.sync_via(&remote, &SyncOptions::default()).await;
    assert!(remote.hook.fired.get());
    // The push carried If-Match with the listed etag: Calendar answered 412.
    assert!(h.emu.counters().by_status.get(&412).copied().unwrap_or(0) >= 1);
    assert_all_synced(&report);
    let frank = user_report(&report, "frank");
    assert!(frank.errors.is_empty(), "{:?}", frank.errors);
    assert_eq!(frank.events.written_back, 1);
    let crm = crm_event(&h, "e1").unwrap();
    assert_eq!(crm.title, "Quarterly review (agenda v2)");
    assert_eq!(crm.location, "Room 9 (phone, mid-pass)");
    let phone = h.phone_event("frank", "e1").await.unwrap();
    assert_eq!(
        (phone.title.as_str(), phone.location.as_str()),
        ("Quarterly review (agenda v2)", "Room 9 (phone, mid-pass)")
    );
    assert_all_synced(&h.sync().await);
    assert!(is_quiet(&h.sync().await));
    h.assert_no_duplicates();
}

// ── scope changes ───────────────────────────────────────────────────────────────────────

#[tokio::test(flavor = "current_thread")]
async fn narrowing_the_scope_pulls_back_and_widening_brings_back() {
    let mut h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let erin = UserId::new("erin").unwrap();
    let first = h.state.sync_user(&erin).unwrap().unwrap().scope_fingerprint;
    assert!(first.is_some());
    assert_eq!(ids(&h.contacts("erin")), vec!["c1", "c2", "c3", "c4", "c5"]);

    h.set_scope(
        "erin",
        &ScopeLayer {
            contact: Some(SelectionMode::Mine),
            ..ScopeLayer::default()
        },
    );
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(ids(&h.contacts("erin")), vec!["c3"]);
    assert_eq!(
        ids(&h.events("erin")),
        vec!["e1"],
        "events keep their scope"
    );
    let pulled = audit_of(&h, "erin", "pulled_back");
    assert_eq!(pulled.len(), 4, "{pulled:#?}");
    for p in &pulled {
        assert_eq!(p.detail["reason"], "outside the user's sync scope", "{p:?}");
    }
    // The CRM is untouched and frank keeps his.
    assert!(crm_contact(&h, "c1").is_some());
    assert_eq!(ids(&h.contacts("frank")), vec!["c1", "c4"]);
    let narrowed = h.state.sync_user(&erin).unwrap().unwrap().scope_fingerprint;
    assert!(
        narrowed.is_some() && narrowed != first,
        "fingerprint stored"
    );
    assert!(is_quiet(&h.sync().await));

    h.set_scope("erin", &ScopeLayer::default());
    let report = h.sync().await;
    assert_all_synced(&report);
    assert_eq!(user_report(&report, "erin").contacts.created, 4);
    assert_eq!(ids(&h.contacts("erin")), vec!["c1", "c2", "c3", "c4", "c5"]);
    let widened = h.state.sync_user(&erin).unwrap().unwrap().scope_fingerprint;
    assert_eq!(widened, first);
    assert!(is_quiet(&h.sync().await));
    h.assert_no_duplicates();
}

// ── the breaker and dry runs ────────────────────────────────────────────────────────────

/// The org with (almost) every contact gone, as a broken CRM export would look.
fn org_without_contacts() -> serde_json::Value {
    let mut doc = org();
    doc["contacts"] = json!([]);
    for e in doc["events"].as_array_mut().unwrap() {
        e["links"] = json!([{"organization": "o1"}]);
        let users: Vec<_> = e["attendees"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a.get("user").is_some())
            .cloned()
            .collect();
        e["attendees"] = json!(users);
    }
    doc
}

#[tokio::test(flavor = "current_thread")]
async fn a_crm_that_suddenly_returns_no_contacts_is_refused_until_forced() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let before: Vec<_> = ["alice", "erin", "frank", "hank"]
        .iter()
        .map(|u| h.contacts(u))
        .collect();
    h.load(&org_without_contacts());
    // A refused pass keeps the phones' copies of what the CRM no longer lists: that is the
    // point of the breaker.
    let report = h.sync_leaving_deleted(&SyncOptions::default()).await;
    for u in &report.users {
        assert_eq!(u.status, UserStatus::Refused, "{}: {:?}", u.user, u.message);
        let msg = u.message.as_deref().unwrap();
        assert!(msg.contains("refused") && msg.contains("--force"), "{msg}");
        assert_eq!(u.total().deleted, 0);
    }
    let after: Vec<_> = ["alice", "erin", "frank", "hank"]
        .iter()
        .map(|u| h.contacts(u))
        .collect();
    assert_eq!(before, after, "nothing deleted");
    assert!(!audit_of(&h, "alice", "breaker_refused").is_empty());
    let status = h
        .state
        .sync_user(&UserId::new("frank").unwrap())
        .unwrap()
        .unwrap();
    assert!(status.last_error.unwrap().contains("refused"));

    let forced = h
        .sync_with(&SyncOptions {
            force: true,
            ..SyncOptions::default()
        })
        .await;
    assert_all_synced(&forced);
    for u in ["alice", "erin", "frank", "hank"] {
        assert!(h.contacts(u).is_empty(), "{u}");
    }
    assert_eq!(user_report(&forced, "alice").contacts.deleted, 5);
    assert!(is_quiet(&h.sync().await));
}

#[tokio::test(flavor = "current_thread")]
async fn a_dry_run_prints_plans_with_field_diffs_and_changes_nothing() {
    let mut doc = org();
    let h = Harness::start(doc.clone()).await;
    assert_all_synced(&h.sync().await);
    doc["contacts"][3]["title"] = json!("VP");
    h.load(&doc);
    h.phone_edit_contact("frank", "c1", |c| c.first_name = "Augusta".into())
        .await;
    h.phone_create_contact("frank", "Grace", "grace@newco.example", true)
        .await;

    let snapshot = |h: &Harness| {
        let mut out = Vec::new();
        for u in ["alice", "erin", "frank", "hank"] {
            let id = UserId::new(u).unwrap();
            let c: std::collections::BTreeMap<_, _> = h
                .state
                .links::<serde_json::Value>(&id, ObjectKind::Contact)
                .unwrap();
            let e: std::collections::BTreeMap<_, _> = h
                .state
                .links::<serde_json::Value>(&id, ObjectKind::Event)
                .unwrap();
            let s = h.state.sync_user(&id).unwrap().unwrap();
            out.push(json!({
                "contacts": serde_json::to_value(&c).unwrap(),
                "events": serde_json::to_value(&e).unwrap(),
                "tokens": [s.contacts_sync_token, s.events_sync_token],
                "success": s.last_success_at, "attempt": s.last_attempt_at,
                "unlinked": h.state.unlinked_items::<serde_json::Value>(&id, ObjectKind::Contact).unwrap().0.len(),
                "google": serde_json::to_value(h.emu.dump_user(&format!("{u}@acme.example")).unwrap()).unwrap(),
            }));
        }
        let (model, _) = h.crm().snapshot().unwrap();
        out.push(json!({
            "crm_versions": format!("{:?}", model.versions),
            "crm_contacts": model.contacts.len(),
            "audit": h.state.audit_entries(None, None, 100_000).unwrap().len(),
            "cursor": h.state.crm_cursor().unwrap(),
        }));
        out
    };
    let before = snapshot(&h);
    let writes = h.google_writes();
    let report = h
        .sync_with(&SyncOptions {
            dry_run: true,
            ..SyncOptions::default()
        })
        .await;
    assert!(report.dry_run);
    assert_eq!(h.google_writes(), writes, "no Google writes");
    assert_eq!(snapshot(&h), before, "nothing changed anywhere");

    for u in &report.users {
        assert_eq!(u.status, UserStatus::Planned, "{}", u.user);
    }
    let frank = user_report(&report, "frank");
    let push = frank
        .plan
        .iter()
        .find(|l| l.record.as_deref() == Some("contact:c4"))
        .unwrap();
    assert!(push.google.as_deref().unwrap().starts_with("update"));
    assert!(
        push.diff
            .iter()
            .any(|d| d.starts_with("title:") && d.contains("-CTO") && d.contains("+VP")),
        "{:?}",
        push.diff
    );
    let pull = frank
        .plan
        .iter()
        .find(|l| l.record.as_deref() == Some("contact:c1"))
        .unwrap();
    assert_eq!(pull.crm.as_deref(), Some("write back first_name"));
    assert!(
        pull.diff
            .iter()
            .any(|d| d.starts_with("first_name:") && d.contains("-Ada") && d.contains("+Augusta")),
        "{:?}",
        pull.diff
    );
    assert!(frank.plan.iter().any(|l| l
        .crm
        .as_deref()
        .is_some_and(|c| c.starts_with("create contact:"))));
    assert_eq!(frank.contacts.imported, 1);

    // The real pass then does exactly that.
    let real = h.sync().await;
    assert_all_synced(&real);
    let frank = user_report(&real, "frank");
    assert_eq!(
        (frank.contacts.written_back, frank.contacts.imported),
        (1, 1)
    );
    assert_eq!(crm_contact(&h, "c1").unwrap().first_name, "Augusta");
}

// ── phone-delete and conflict policies ──────────────────────────────────────────────────

#[tokio::test(flavor = "current_thread")]
async fn delete_in_crm_deletes_with_permission_and_restores_without() {
    let mut h = Harness::start(org()).await;
    h.config.scope.org.google_delete = Some(GoogleDelete::DeleteInCrm);
    assert_all_synced(&h.sync().await);
    // frank owns c4 (profile: contact delete) → deleted in the CRM.
    h.phone_delete_contact("frank", "c4").await;
    // erin reads hank's c2 only through rule r1 → restored on her phone.
    h.phone_delete_contact("erin", "c2").await;
    // events: the profile has no delete → frank's e1 is restored with a new id.
    let old_e1 = h.event_google_id("frank", "e1");
    h.phone_delete_event("frank", "e1").await;
    // The run's follow-up pass pulls c4 back from alice and erin at once: the strict leak
    // check (every item readable by its holder) holds right after this run.
    let report = h.sync_with(&SyncOptions::default()).await;
    for user in ["alice", "erin"] {
        assert!(
            !ids(&h.contacts(user)).contains(&"c4".to_string()),
            "{user}"
        );
    }
    assert_all_synced(&report);
    assert!(crm_contact(&h, "c4").is_none(), "deleted in the CRM");
    assert!(audit_actions(&h, "frank").contains(&"deleted_in_crm contact:c4".to_string()));
    assert_eq!(user_report(&report, "frank").contacts.written_back, 1);
    assert!(crm_contact(&h, "c2").is_some());
    assert!(ids(&h.contacts("erin")).contains(&"c2".to_string()));
    assert!(audit_actions(&h, "erin").contains(&"restored contact:c2".to_string()));
    assert!(crm_event(&h, "e1").is_some());
    assert_ne!(h.event_google_id("frank", "e1"), old_e1);
    assert_eq!(ids(&h.events("frank")), vec!["e1"]);
    // The deletion reaches everyone else who had c4.
    assert_all_synced(&h.sync().await);
    for u in ["alice", "erin", "frank"] {
        assert!(!ids(&h.contacts(u)).contains(&"c4".to_string()), "{u}");
    }
    let pulled = audit_of(&h, "erin", "pulled_back");
    assert!(pulled
        .iter()
        .any(|p| p.detail["reason"] == "deleted in the CRM"));
    assert!(is_quiet(&h.sync().await));
    h.assert_no_duplicates();
}

async fn conflict_on_c4_title(policy: ConflictPolicy, crm_updated_at: &str) -> (Harness, String) {
    let mut doc = org();
    let mut h = Harness::start(doc.clone()).await;
    h.config.scope.org.conflict_policy = Some(policy);
    assert_all_synced(&h.sync().await);
    doc["contacts"][3]["title"] = json!("Title from the CRM");
    doc["contacts"][3]["updated_at"] = json!(crm_updated_at);
    h.load(&doc);
    h.phone_edit_contact("frank", "c4", |c| c.title = "Title from the phone".into())
        .await;
    assert_all_synced(&h.sync().await);
    let crm = crm_contact(&h, "c4").unwrap().title;
    assert_eq!(h.phone_contact("frank", "c4").await.unwrap().title, crm);
    let conflicts = h.state.conflict_entries(Some("frank")).unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:#?}");
    assert_eq!(conflicts[0].google_value, "Title from the phone");
    assert_eq!(conflicts[0].crm_value, "Title from the CRM");
    // Converged: the winner reaches the others, then nothing.
    assert_all_synced(&h.sync().await);
    assert_eq!(h.phone_contact("erin", "c4").await.unwrap().title, crm);
    assert!(is_quiet(&h.sync().await));
    let resolution = conflicts[0].resolution.clone();
    (h, format!("{crm}|{resolution}"))
}

#[tokio::test(flavor = "current_thread")]
async fn google_wins_takes_the_phone_value_and_writes_it_back() {
    let (_h, outcome) =
        conflict_on_c4_title(ConflictPolicy::GoogleWins, "2026-11-20T10:00:00Z").await;
    assert_eq!(outcome, "Title from the phone|google");
}

#[tokio::test(flavor = "current_thread")]
async fn newest_wins_takes_the_newer_side() {
    // The CRM edit is stamped long after the phone's (emulator clock = now).
    let (_h, outcome) =
        conflict_on_c4_title(ConflictPolicy::NewestWins, "2099-01-01T00:00:00Z").await;
    assert_eq!(outcome, "Title from the CRM|crm");
    // The CRM edit is old: the phone's is newer.
    let (_h, outcome) =
        conflict_on_c4_title(ConflictPolicy::NewestWins, "2001-01-01T00:00:00Z").await;
    assert_eq!(outcome, "Title from the phone|google");
}

// ── accounts outside the org's domains ──────────────────────────────────────────────────

#[tokio::test(flavor = "current_thread")]
async fn a_personal_google_account_is_refused_unless_allowed() {
    let mut doc = org();
    doc["users"][3]["google_account"] = json!("hank@gmail.example");
    let mut h = Harness::start(doc).await;
    let report = h.sync().await;
    let hank = user_report(&report, "hank");
    assert_eq!(hank.status, UserStatus::Refused);
    let msg = hank.message.as_deref().unwrap();
    assert!(
        msg.contains("hank@gmail.example") && msg.contains("acme.example"),
        "{msg}"
    );
    assert!(
        h.emu.dump_user("hank@gmail.example").is_none(),
        "nothing written there"
    );
    for u in ["alice", "erin", "frank"] {
        assert_eq!(user_report(&report, u).status, UserStatus::Synced);
    }
    h.config.google.allow_personal_accounts = true;
    let report = h.sync().await;
    assert_all_synced(&report);
    let dump = h.emu.dump_user("hank@gmail.example").unwrap();
    assert_eq!(dump.live_contacts().len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_listing_forgets_phone_items_that_are_gone() {
    use crmsync::sync::remote::{ContactOp, Remote};
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let resource = h
        .phone_create_contact("frank", "Mum", "mum@home.example", false)
        .await;
    assert_all_synced(&h.sync().await);
    let frank = crmsync::model::UserId::new("frank").unwrap();
    let known = |h: &Harness| {
        let (items, _) = h
            .state
            .unlinked_items::<crmsync::model::SyncedContact>(
                &frank,
                crmsync::model::ObjectKind::Contact,
            )
            .unwrap();
        items.iter().any(|i| i.google_id == resource)
    };
    assert!(known(&h), "the phone's own contact is a dedup candidate");
    // Deleted on the phone while crmsync's token expired: only a full listing tells.
    h.remote
        .contact_ops(
            &h.google_user("frank"),
            &h.group_of("frank"),
            &[ContactOp::Delete {
                resource: resource.clone(),
            }],
        )
        .await
        .unwrap();
    h.emu.expire_sync_tokens(Some("frank@acme.example"), None);
    assert_all_synced(&h.sync().await);
    assert!(!known(&h), "forgotten after the full listing");
}

// ── calendar ids ────────────────────────────────────────────────────────────────────────

/// Google's calendar ids are unique across users: every user's dedicated calendar has its
/// own id, owned by that user alone, and holds only that user's events.
#[tokio::test(flavor = "current_thread")]
async fn every_user_gets_a_calendar_of_its_own_id() {
    let h = Harness::start(org()).await;
    assert_all_synced(&h.sync().await);
    let users = ["alice", "erin", "frank", "hank"];
    let ids: std::collections::BTreeSet<String> = users.iter().map(|u| h.calendar_of(u)).collect();
    assert_eq!(ids.len(), users.len(), "{ids:?}");
    for u in users {
        let id = h.calendar_of(u);
        for other in users.iter().filter(|o| **o != u) {
            let dump = h.emu.dump_user(&format!("{other}@acme.example")).unwrap();
            assert!(
                dump.calendars
                    .iter()
                    .all(|c| c.calendar.id.as_deref() != Some(id.as_str())),
                "{u}'s calendar {id} also belongs to {other}"
            );
        }
    }
    assert!(is_quiet(&h.sync().await));
}
