//! The held-back story (`crm_story_support`) run the same way against every CRM source:
//! the embedded CRM, and Insightly (a fake of its API) with an admin key and with each
//! user's own key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connector_support;
mod crm_story_support;
mod insightly_fake;
mod sync_support;

use crm_story_support::{held_back_story, StoryCrm};
use crmsync::crm::connector::pacing::ManualClock;
use crmsync::crm::insightly::config::Mode;
use crmsync::crm::insightly::{mapping, InsightlyConfig};
use crmsync::crm::sqlite::SqliteCrm;
use crmsync::crm::{orgfile, Entity, EntityKind, Source};
use crmsync::model::{Contact, CrmId, UserId};
use insightly_fake::{FakeInsightly, Kind};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The embedded CRM, loaded from the stories' org document; the admin edits the document.
struct Embedded {
    _dir: tempfile::TempDir,
    path: PathBuf,
    doc: Value,
}

impl Embedded {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        let crm = Embedded {
            _dir: dir,
            path,
            doc: sync_support::org(),
        };
        crm.load();
        crm
    }

    fn load(&self) {
        let model = orgfile::parse("story", &self.doc.to_string()).unwrap();
        SqliteCrm::open(&self.path).unwrap().load(&model).unwrap();
    }
}

impl StoryCrm for Embedded {
    fn source(&self) -> Box<dyn Source> {
        Box::new(SqliteCrm::open(&self.path).unwrap())
    }

    fn user(&self, name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    fn contact(&self, name: &str) -> CrmId {
        let id = match name {
            "ada" => "c1",
            "hal" => "c2",
            "eve" => "c3",
            other => panic!("no contact {other} in the story"),
        };
        CrmId::new(id).unwrap()
    }

    fn crm_contact(&self, name: &str) -> Contact {
        let crm = SqliteCrm::open(&self.path).unwrap();
        match crm
            .get(EntityKind::Contact, self.contact(name).as_str())
            .unwrap()
        {
            Some((_, Entity::Contact(c))) => c,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn move_erin_west(&mut self) {
        for user in self.doc["users"].as_array_mut().unwrap() {
            if user["id"] == "erin" {
                user["role"] = json!("rep_west");
            }
        }
        self.doc["teams"][0]["members"] = json!(["frank"]);
        self.load();
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
    fn source(&self) -> Box<dyn Source> {
        Box::new(insightly_fake::open(&self.config, &self.clock))
    }

    fn user(&self, name: &str) -> UserId {
        let id = match name {
            "alice" => "100",
            "erin" => "101",
            "frank" => "102",
            "hank" => "103",
            other => panic!("no user {other} in the story"),
        };
        UserId::new(id).unwrap()
    }

    fn contact(&self, name: &str) -> CrmId {
        let id = match name {
            "ada" => "400",
            "hal" => "401",
            "eve" => "402",
            other => panic!("no contact {other} in the story"),
        };
        CrmId::new(id).unwrap()
    }

    fn crm_contact(&self, name: &str) -> Contact {
        let id: i64 = self.contact(name).as_str().parse().unwrap();
        mapping::contact(&self.fake.record(Kind::Contacts, id).unwrap()).unwrap()
    }

    fn move_erin_west(&mut self) {
        self.fake.edit_user(101, |u| u["ROLE_ID"] = json!(6));
        self.fake.move_member(101, 200, 201);
        // In delegated mode, what Erin's key no longer sees is found by the full
        // reconciliation: let it come due.
        self.clock.advance(Duration::from_secs(61 * 60));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_story_with_the_embedded_crm() {
    held_back_story(Embedded::new()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_story_with_insightly_and_an_admin_key() {
    held_back_story(Insightly::new(Mode::AdminKey)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_story_with_insightly_and_each_users_own_key() {
    held_back_story(Insightly::new(Mode::Delegated)).await;
}
