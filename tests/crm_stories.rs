//! The held-back story (`crm_story_support`) run the same way against every CRM source:
//! the embedded CRM, Insightly (a fake of its API) with an admin key and with each user's
//! own key, and amoCRM (a fake of its API).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod amocrm_support;
mod connector_support;
mod crm_story_support;
mod insightly_fake;
mod sync_support;

use amocrm_support::FakeAmo;
use crm_story_support::{held_back_story, StoryCast, StoryCrm};
use crmsync::crm::amocrm::AmoCrmConfig;
use crmsync::crm::connector::pacing::ManualClock;
use crmsync::crm::insightly::config::Mode;
use crmsync::crm::insightly::InsightlyConfig;
use crmsync::crm::{OrgModel, Source};
use insightly_fake::FakeInsightly;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use sync_support::{org, Harness};

/// The embedded CRM of the harness, loaded from the stories' org document; the admin edits
/// the document (`access_change`) and loads it again.
struct Embedded<'h> {
    h: &'h Harness,
    doc: Value,
    access_change: fn(&mut Value),
}

/// Erin moves to the West: another role, another team.
fn erin_moves_west(doc: &mut Value) {
    for user in doc["users"].as_array_mut().unwrap() {
        if user["id"] == "erin" {
            user["role"] = json!("rep_west");
        }
    }
    doc["teams"][0]["members"] = json!(["frank"]);
}

/// Frank, Ada's owner, leaves the role tree: Erin (MgrEast) no longer manages him.
fn frank_leaves_the_role_tree(doc: &mut Value) {
    for user in doc["users"].as_array_mut().unwrap() {
        if user["id"] == "frank" {
            user["role"] = Value::Null;
        }
    }
}

impl StoryCrm for Embedded<'_> {
    fn name(&self) -> String {
        "the embedded CRM".into()
    }

    fn open(&self) -> Box<dyn Source> {
        Box::new(self.h.crm())
    }

    fn truth(&self) -> OrgModel {
        self.h.crm().snapshot().unwrap().0
    }

    fn cast(&self) -> StoryCast {
        StoryCast {
            // Frank edits his own Ada; Erin (his manager, his team) reads her.
            editor: "frank".parse().unwrap(),
            edited: "c1".parse().unwrap(),
            loser: "erin".parse().unwrap(),
            lost: "c1".parse().unwrap(),
        }
    }

    fn take_access_away(&mut self) {
        (self.access_change)(&mut self.doc);
        self.h.load(&self.doc);
    }
}

/// Insightly through the connector against the fake API, on a virtual clock.
struct Insightly {
    fake: FakeInsightly,
    _dir: tempfile::TempDir,
    config: InsightlyConfig,
    clock: Arc<ManualClock>,
}

impl Insightly {
    fn new(mode: Mode) -> Self {
        let fake = FakeInsightly::start();
        let dir = tempfile::tempdir().unwrap();
        let mut config = fake.config(dir.path(), mode);
        config.page_size = 500;
        Insightly {
            fake,
            _dir: dir,
            config,
            clock: insightly_fake::clock(),
        }
    }
}

impl StoryCrm for Insightly {
    fn name(&self) -> String {
        format!("Insightly ({:?}, fake API)", self.config.mode)
    }

    fn open(&self) -> Box<dyn Source> {
        Box::new(insightly_fake::open(&self.config, &self.clock))
    }

    fn truth(&self) -> OrgModel {
        // A fresh connector into a private shadow: a full read of Insightly as it is now.
        let config = InsightlyConfig {
            shadow_path: ":memory:".into(),
            ..self.config.clone()
        };
        let source = insightly_fake::open(&config, &self.clock);
        source.pull_now(Some(true)).unwrap();
        source.with_shadow(|s| s.feed().snapshot().unwrap().0)
    }

    fn cast(&self) -> StoryCast {
        StoryCast {
            // Frank (102) edits his own Ada (400); Erin (101) reads her.
            editor: "102".parse().unwrap(),
            edited: "400".parse().unwrap(),
            loser: "101".parse().unwrap(),
            lost: "400".parse().unwrap(),
        }
    }

    fn take_access_away(&mut self) {
        // Erin moves to the West: another role, another team.
        self.fake.edit_user(101, |u| u["ROLE_ID"] = json!(6));
        self.fake.move_member(101, 200, 201);
        // In delegated mode, what Erin's key no longer sees is found by the full
        // reconciliation: let it come due.
        self.clock.advance(Duration::from_secs(61 * 60));
    }
}

/// amoCRM through the connector against the fake API, on a virtual clock.
struct Amo {
    fake: FakeAmo,
    config: AmoCrmConfig,
    clock: Arc<ManualClock>,
}

impl StoryCrm for Amo {
    fn name(&self) -> String {
        "amoCRM (fake API)".into()
    }

    fn open(&self) -> Box<dyn Source> {
        Box::new(amocrm_support::open(&self.config, &self.clock))
    }

    fn truth(&self) -> OrgModel {
        amocrm_support::truth(&self.fake)
    }

    fn cast(&self) -> StoryCast {
        StoryCast {
            // Frank (5003, contacts M/M) edits his own Ada Lovelace; Erin (5002, view A)
            // reads her.
            editor: "5003".parse().unwrap(),
            edited: "104".parse().unwrap(),
            loser: "5002".parse().unwrap(),
            lost: "104".parse().unwrap(),
        }
    }

    fn take_access_away(&mut self) {
        // Erin's contacts view right goes from A (all) to M (her own): no record moves.
        self.fake.state().set_right(5002, "contacts", "view", "M");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_story_with_the_embedded_crm() {
    let h = Harness::start(org()).await;
    let mut crm = Embedded {
        h: &h,
        doc: org(),
        access_change: erin_moves_west,
    };
    held_back_story(&h, &mut crm).await;
}

/// The same story where the owner's role changes rather than the reader's.
#[tokio::test(flavor = "current_thread")]
async fn the_story_with_the_embedded_crm_when_the_owner_leaves_the_role_tree() {
    let h = Harness::start(org()).await;
    let mut crm = Embedded {
        h: &h,
        doc: org(),
        access_change: frank_leaves_the_role_tree,
    };
    held_back_story(&h, &mut crm).await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_story_with_insightly_and_an_admin_key() {
    let h = Harness::start(org()).await;
    held_back_story(&h, &mut Insightly::new(Mode::AdminKey)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_story_with_insightly_and_each_users_own_key() {
    let h = Harness::start(org()).await;
    held_back_story(&h, &mut Insightly::new(Mode::Delegated)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_story_with_amocrm() {
    let h = Harness::start(org()).await;
    let fake = FakeAmo::start();
    let mut crm = Amo {
        config: amocrm_support::long_lived_config(&fake, h.dir.path()),
        fake,
        clock: amocrm_support::manual_clock(),
    };
    held_back_story(&h, &mut crm).await;

    // The write-back was one PATCH of the changed fields, in Frank's name, between a fresh
    // GET (the check) and another (the read-back).
    let state = crm.fake.state();
    let patches = state.requests("PATCH", "/contacts/104");
    assert_eq!(patches.len(), 1, "{patches:#?}");
    assert_eq!(
        patches[0].body,
        json!({"custom_fields_values": [
            {"field_code": "PHONE", "values": [{"value": "+14155550199", "enum_code": "MOB"}]},
            {"field_code": "POSITION", "values": [{"value": "Chief Technology Officer"}]}],
            "updated_by": 5003})
    );
    let log = &state.log;
    let patch_at = log
        .iter()
        .position(|l| l.method == "PATCH")
        .expect("a patch");
    assert_eq!(
        log[patch_at - 1].path,
        "/api/v4/contacts/104",
        "checked first"
    );
    assert_eq!(
        log[patch_at + 1].path,
        "/api/v4/contacts/104",
        "read back after"
    );
}
