//! The held-back story, written once and run against every CRM source the same way: the
//! real engine, the in-process Google emulator and the real Google clients, with the CRM
//! behind any `crm::Source`. A CRM joins by implementing [`StoryCrm`] (how to open it, who
//! the story's people and contacts are in it, and how its admin moves Erin out of the East).
//!
//! The story: everyone gets what they may read; Frank edits a contact on his phone and the
//! edit is written back to the CRM and reaches Erin in the same run; Erin moves out of the
//! East in the CRM (no record changes) and loses the contact on her phone. After every pass,
//! no Google item exists that its user may not read in the CRM as it is now.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::sync_support::{emulator_options, is_quiet, key_path, remote_config, story_now};
use chrono::{DateTime, Utc};
use crmsync::config::Config;
use crmsync::crm::{OrgModel, Source};
use crmsync::demo::phone::Phone;
use crmsync::emulator::TestEmulator;
use crmsync::google::remote::GoogleRemote;
use crmsync::model::{Contact, CrmId, SyncedContact, UserId};
use crmsync::scope::{Direction, ScopeLayer, SelectionMode};
use crmsync::store::StateDb;
use crmsync::sync::engine::{Engine, RunReport, SyncOptions, UserStatus};
use crmsync::sync::remote::GoogleUser;
use std::cell::RefCell;

/// A CRM under the story.
pub trait StoryCrm {
    /// A connection for one engine run.
    fn source(&self) -> Box<dyn Source>;
    /// The CRM's id of a person of the story (alice, erin, frank, hank).
    fn user(&self, name: &str) -> UserId;
    /// The CRM's id of a contact of the story (ada: Frank's, which Erin may read).
    fn contact(&self, name: &str) -> CrmId;
    /// The contact as the CRM itself holds it now.
    fn crm_contact(&self, name: &str) -> Contact;
    /// The CRM's admin moves Erin out of the East (role and team); no record changes.
    fn move_erin_west(&mut self);
}

/// The story's Google side and state, around a CRM.
pub struct Story<C> {
    pub crm: C,
    pub emu: TestEmulator,
    pub state: StateDb,
    pub remote: GoogleRemote,
    pub config: Config,
    pub now: DateTime<Utc>,
    _dir: tempfile::TempDir,
}

fn account(name: &str) -> String {
    format!("{name}@acme.example")
}

impl<C: StoryCrm> Story<C> {
    pub async fn start(crm: C) -> Self {
        let emu = TestEmulator::start(emulator_options()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.state.path = dir.path().join("state.db");
        config.google.base_url = format!("{}/", emu.base_url());
        config.google.service_account_key = key_path();
        config.google.token_uri = Some(emu.token_uri());
        config.scope.org = ScopeLayer {
            contact: Some(SelectionMode::AllVisible),
            event: Some(SelectionMode::AllVisible),
            direction: Some(Direction::TwoWay),
            ..ScopeLayer::default()
        };
        let state = StateDb::create(&config.state.path).unwrap();
        let remote = GoogleRemote::new(remote_config(&emu)).await.unwrap();
        Self {
            crm,
            emu,
            state,
            remote,
            config,
            now: story_now(),
            _dir: dir,
        }
    }

    /// The CRM as crmsync's model, read afresh through a new connection and mirror.
    pub fn crm_model(&self) -> OrgModel {
        let state = StateDb::open_in_memory().unwrap();
        let source = self.crm.source();
        crmsync::mirror::refresh(&state, source.as_ref()).unwrap();
        state.load_org_model().unwrap()
    }

    /// One engine run, then the invariant: nothing on any phone its user may not read.
    pub async fn sync_with(&self, options: &SyncOptions) -> RunReport {
        let engine = Engine {
            config: &self.config,
            state: &self.state,
            crm: RefCell::new(self.crm.source()),
            remote: &self.remote,
            now: self.now,
        };
        let report = engine.sync_once(options).await.unwrap();
        let check = crmsync::demo::leaks::check(&self.emu, &self.crm_model());
        assert!(check.leaks.is_empty(), "LEAKS: {:?}", check.leaks);
        assert!(check.items_checked > 0);
        report
    }

    pub async fn sync(&self) -> RunReport {
        self.sync_with(&SyncOptions::default()).await
    }

    /// The CRM ids of the contacts on a person's phone (ours, by marker).
    pub fn contacts_on_phone(&self, name: &str) -> Vec<CrmId> {
        let Some(dump) = self.emu.dump_user(&account(name)) else {
            return Vec::new();
        };
        let mut out: Vec<CrmId> = dump
            .live_contacts()
            .into_iter()
            .filter_map(|p| {
                p.client_data
                    .iter()
                    .flatten()
                    .find(|d| d.key.as_deref() == Some("crmsync_id"))
                    .and_then(|d| d.value.clone())
            })
            .map(|m| CrmId::new(m).unwrap())
            .collect();
        out.sort();
        out
    }

    pub fn has_on_phone(&self, name: &str, contact: &str) -> bool {
        self.contacts_on_phone(name)
            .contains(&self.crm.contact(contact))
    }

    fn phone(&self, name: &str) -> Phone<'_, GoogleRemote> {
        Phone {
            remote: &self.remote,
            state: &self.state,
            user: GoogleUser {
                user: self.crm.user(name),
                account: account(name),
            },
            root: self.emu.base_url(),
            key: key_path(),
            token_uri: Some(self.emu.token_uri()),
        }
    }

    pub async fn phone_contact(&self, name: &str, contact: &str) -> Option<SyncedContact> {
        let id = self.crm.contact(contact);
        self.phone(name).contact(id.as_str()).await.unwrap()
    }

    pub async fn phone_edit_contact(
        &self,
        name: &str,
        contact: &str,
        edit: impl FnOnce(&mut SyncedContact),
    ) {
        let id = self.crm.contact(contact);
        self.phone(name)
            .edit_contact(id.as_str(), edit)
            .await
            .unwrap();
    }
}

fn assert_synced(report: &RunReport) {
    for u in &report.users {
        assert!(
            matches!(u.status, UserStatus::Synced),
            "{} ended {:?}: {:?} {:?}",
            u.user,
            u.status,
            u.message,
            u.errors
        );
    }
}

/// The story (see the module docs), against `crm`.
pub async fn held_back_story<C: StoryCrm>(crm: C) {
    let mut story = Story::start(crm).await;

    // Everyone gets what they may read: Ada is Frank's; Erin (his manager, his team) reads
    // her; Hank (West) does not.
    let first = story.sync().await;
    assert_synced(&first);
    assert!(story.has_on_phone("frank", "ada"));
    assert!(story.has_on_phone("erin", "ada"));
    assert!(story.has_on_phone("alice", "ada"));
    assert!(!story.has_on_phone("hank", "ada"));
    let again = story.sync().await;
    assert_synced(&again);
    assert!(
        is_quiet(&again),
        "the second pass did something: {again:#?}"
    );

    // Frank edits Ada on his phone: written back to the CRM, and on Erin's phone in the same run.
    story
        .phone_edit_contact("frank", "ada", |c| {
            c.title = "Chief Technology Officer".into()
        })
        .await;
    let edit = story.sync().await;
    assert_synced(&edit);
    let frank = edit
        .users
        .iter()
        .find(|u| u.user == story.crm.user("frank"))
        .unwrap();
    assert_eq!(frank.contacts.written_back, 1, "{frank:?}");
    assert_eq!(
        story.crm.crm_contact("ada").title,
        "Chief Technology Officer"
    );
    assert_eq!(
        story.phone_contact("erin", "ada").await.unwrap().title,
        "Chief Technology Officer"
    );
    let quiet = story.sync().await;
    assert!(is_quiet(&quiet), "after the write-back: {quiet:#?}");

    // Erin moves out of the East in the CRM: no record changed, yet she loses Ada.
    story.crm.move_erin_west();
    let moved = story
        .sync_with(&SyncOptions {
            force: true,
            ..SyncOptions::default()
        })
        .await;
    assert_synced(&moved);
    assert!(!story.has_on_phone("erin", "ada"), "pulled back from Erin");
    assert!(
        story.has_on_phone("frank", "ada"),
        "Frank keeps his contact"
    );
    let after = story.sync().await;
    assert_synced(&after);
    assert!(is_quiet(&after), "after the pull-back: {after:#?}");
}
