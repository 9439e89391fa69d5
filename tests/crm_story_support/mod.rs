//! The held-back story, written once and run against every CRM source exactly as against
//! the embedded CRM (`crm_stories.rs` runs it against the embedded CRM, Insightly in both
//! modes and amoCRM): the real engine, the in-process Google emulator and the real Google
//! clients (`sync_support::Harness`), with the CRM behind any `crm::Source`.
//!
//! The story: the first pass syncs to each user exactly what they may read (and may
//! export), and the next pass is quiet; an editor changes a contact's title and phone
//! number on the phone, which is written back to the CRM (audited) and reaches every other
//! user who holds the record in the same run; the CRM's admin takes a user's access away
//! without touching the record (a role, team or rights change), and the copy is pulled back
//! from that user's phone (audited once) while the record stays. Every pass is followed by
//! the org-wide leak check against the CRM as it is now, read without the engine.
//!
//! A CRM takes part by implementing [`StoryCrm`]: how to open it as `crmsync sync` would,
//! how to read it independently (the truth), who plays which part, and how its admin takes
//! access away.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::sync_support::{assert_all_synced, is_quiet, key_path, user_report, Harness};
use crmsync::crm::{OrgModel, Source};
use crmsync::demo::phone::Phone;
use crmsync::google::mapping::MARKER_ID;
use crmsync::google::remote::GoogleRemote;
use crmsync::model::{CrmId, ObjectKind, PhoneNumber, RecordRef, User, UserId};
use crmsync::security::{Access, Operation};
use crmsync::sync::engine::{Engine, RunReport, SyncOptions};
use crmsync::sync::remote::GoogleUser;
use std::cell::RefCell;
use std::collections::BTreeSet;

/// Who plays which part in the story.
#[derive(Debug, Clone)]
pub struct StoryCast {
    /// May edit `edited` and does, on the phone.
    pub editor: UserId,
    pub edited: CrmId,
    /// Reads `lost` at first and loses access to it in `take_access_away`.
    pub loser: UserId,
    pub lost: CrmId,
}

/// A CRM the story runs against.
pub trait StoryCrm {
    /// The CRM's name in assertion messages.
    fn name(&self) -> String;
    /// The source one `crmsync sync` run opens.
    fn open(&self) -> Box<dyn Source>;
    /// The CRM as it is now, read without the engine's mirror (or a connector's shadow).
    fn truth(&self) -> OrgModel;
    fn cast(&self) -> StoryCast;
    /// The CRM's admin takes `loser`'s access to `lost` away without changing the record.
    fn take_access_away(&mut self);
}

/// The title the editor types.
pub const NEW_TITLE: &str = "Chief Technology Officer";
/// The phone number the editor types, and as the CRM and every phone hold it.
pub const NEW_PHONE: &str = "+1 415 555 0199";
pub const NEW_PHONE_E164: &str = "+14155550199";

impl Harness {
    /// One pass against `crm` (a fresh source, as each CLI run opens one), then the leak
    /// check against its truth.
    pub async fn sync_from(&self, crm: &dyn StoryCrm, options: &SyncOptions) -> RunReport {
        let engine = Engine {
            config: &self.config,
            state: &self.state,
            crm: RefCell::new(crm.open()),
            remote: &self.remote,
            now: self.now,
        };
        let report = engine.sync_once(options).await.unwrap();
        let check = crmsync::demo::leaks::check(&self.emu, &crm.truth());
        assert!(
            check.leaks.is_empty(),
            "{}: LEAKS: {:?}",
            crm.name(),
            check.leaks
        );
        assert!(
            check.items_checked > 0,
            "{}: nothing was checked",
            crm.name()
        );
        report
    }

    /// A user's phone, reaching the Google account the CRM names for them.
    pub fn phone_of(&self, user: &User) -> Phone<'_, GoogleRemote> {
        Phone {
            remote: &self.remote,
            state: &self.state,
            user: GoogleUser {
                user: user.id.clone(),
                account: user.google_account.clone().expect("a synced user"),
            },
            root: self.emu.base_url(),
            key: key_path(),
            token_uri: Some(self.emu.token_uri()),
        }
    }

    /// The crmsync ids of the live contacts in `account` that carry our marker.
    pub fn contact_markers(&self, account: &str) -> BTreeSet<String> {
        let Some(dump) = self.emu.dump_user(account) else {
            return BTreeSet::new();
        };
        dump.live_contacts()
            .into_iter()
            .filter_map(|p| {
                p.client_data
                    .iter()
                    .flatten()
                    .find(|d| d.key.as_deref() == Some(MARKER_ID))
                    .and_then(|d| d.value.clone())
            })
            .collect()
    }
}

fn user<'m>(truth: &'m OrgModel, id: &UserId) -> &'m User {
    truth.users.get(id).expect("the cast is in the CRM")
}

/// Every user with a Google account holds exactly the contacts they may read and export
/// (the harness syncs everything visible, two-way).
pub fn assert_contacts_are_exactly_the_readable(h: &Harness, crm: &dyn StoryCrm) {
    let truth = crm.truth();
    let access = Access::build(&truth);
    for u in truth.users.values() {
        let Some(account) = &u.google_account else {
            continue;
        };
        let exported = u.active && access.may_export(&u.id, ObjectKind::Contact).unwrap();
        let expected: BTreeSet<String> = truth
            .contacts
            .keys()
            .filter(|id| {
                exported
                    && access
                        .may(
                            &u.id,
                            &RecordRef::new(ObjectKind::Contact, (*id).clone()),
                            Operation::Read,
                        )
                        .unwrap()
            })
            .map(|id| id.to_string())
            .collect();
        assert_eq!(
            h.contact_markers(account),
            expected,
            "{}: contacts of {}",
            crm.name(),
            u.id
        );
    }
}

/// The story (see the module docs).
pub async fn held_back_story(h: &Harness, crm: &mut dyn StoryCrm) {
    let name = crm.name();
    let cast = crm.cast();
    let truth = crm.truth();
    let editor = user(&truth, &cast.editor).clone();
    let loser = user(&truth, &cast.loser).clone();
    let edited = cast.edited.to_string();
    let lost = cast.lost.to_string();
    let steady = SyncOptions::default();

    // 1. The first pass syncs exactly what each user may read; the next one is quiet.
    let first = h.sync_from(crm, &steady).await;
    assert_all_synced(&first);
    assert!(!first.users.is_empty(), "{name}: nobody was synced");
    assert_contacts_are_exactly_the_readable(h, crm);
    let editor_account = editor.google_account.clone().unwrap();
    assert!(h.contact_markers(&editor_account).contains(&edited));
    assert!(h
        .contact_markers(loser.google_account.as_ref().unwrap())
        .contains(&lost));
    let holders: Vec<User> = truth
        .users
        .values()
        .filter(|u| u.id != editor.id)
        .filter(|u| {
            u.google_account
                .as_ref()
                .is_some_and(|a| h.contact_markers(a).contains(&edited))
        })
        .cloned()
        .collect();
    assert!(!holders.is_empty(), "{name}: someone else holds {edited}");
    let quiet = h.sync_from(crm, &steady).await;
    assert!(
        is_quiet(&quiet),
        "{name}: second pass did something: {quiet:#?}"
    );

    // 2. The editor changes the title and the phone number on the phone: written back, and
    //    on every other holder's phone after the same run.
    h.phone_of(&editor)
        .edit_contact(&edited, |c| {
            c.title = NEW_TITLE.into();
            c.phones = vec![PhoneNumber {
                number: NEW_PHONE.into(),
                label: "mobile".into(),
            }]
        })
        .await
        .unwrap();
    let report = h.sync_from(crm, &steady).await;
    assert_all_synced(&report);
    assert_eq!(
        user_report(&report, editor.id.as_str())
            .contacts
            .written_back,
        1,
        "{name}: {report:#?}"
    );
    let in_crm = crm.truth().contacts[&cast.edited].clone();
    assert_eq!(
        in_crm.title, NEW_TITLE,
        "{name}: the CRM has the phone's title"
    );
    assert_eq!(
        in_crm
            .phones
            .iter()
            .map(|p| p.number.as_str())
            .collect::<Vec<_>>(),
        vec![NEW_PHONE_E164],
        "{name}: the CRM has the phone's number"
    );
    for other in &holders {
        let on_phone = h
            .phone_of(other)
            .contact(&edited)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: {} lost {edited}", other.id));
        assert_eq!(on_phone.title, NEW_TITLE, "{name}: {}", other.id);
        let numbers: Vec<_> = on_phone.phones.into_iter().map(|p| p.number).collect();
        assert_eq!(
            numbers,
            vec![NEW_PHONE_E164.to_string()],
            "{name}: {}",
            other.id
        );
    }
    let audit = h
        .state
        .audit_entries(Some(editor.id.as_str()), None, 10_000)
        .unwrap();
    assert!(
        audit.iter().any(|e| e.action == "written_back"
            && e.record.as_deref() == Some(&format!("contact:{edited}"))),
        "{name}: {audit:#?}"
    );
    let quiet = h.sync_from(crm, &steady).await;
    assert!(is_quiet(&quiet), "{name}: after the write-back: {quiet:#?}");

    // 3. The admin takes access away without touching the record: pulled back on the next
    //    ordinary pass.
    crm.take_access_away();
    let report = h.sync_from(crm, &steady).await;
    assert_all_synced(&report);
    assert!(
        !h.contact_markers(loser.google_account.as_ref().unwrap())
            .contains(&lost),
        "{name}: {lost} was pulled back from {}",
        loser.id
    );
    assert_contacts_are_exactly_the_readable(h, crm);
    let pulled: Vec<_> = h
        .state
        .audit_entries(Some(loser.id.as_str()), None, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.action == "pulled_back" && e.record.as_deref() == Some(&format!("contact:{lost}"))
        })
        .collect();
    assert_eq!(pulled.len(), 1, "{name}: {pulled:#?}");
    assert!(
        crm.truth().contacts.contains_key(&cast.lost),
        "{name}: the record itself is untouched"
    );
    let quiet = h.sync_from(crm, &steady).await;
    assert!(is_quiet(&quiet), "{name}: after the pull-back: {quiet:#?}");
}
