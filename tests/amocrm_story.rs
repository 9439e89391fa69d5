//! The held-back story (`sync_support::story`) against amoCRM's fake API, exactly as
//! against the embedded CRM: sync, a phone edit written back, access loss pulled back —
//! here a rights change (Erin's contacts `view` from A to M) that moves no record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod amocrm_support;
mod sync_support;

use amocrm_support::{long_lived_config, manual_clock, FakeAmo};
use crmsync::crm::amocrm::AmoCrmConfig;
use crmsync::crm::connector::pacing::ManualClock;
use std::sync::Arc;
use sync_support::story::{self, StoryCast, StoryCrm};
use sync_support::{org, Harness};

struct AmoStoryCrm {
    fake: FakeAmo,
    config: AmoCrmConfig,
    clock: Arc<ManualClock>,
}

impl StoryCrm for AmoStoryCrm {
    fn name(&self) -> String {
        "amoCRM (fake API)".into()
    }

    fn open(&self) -> Box<dyn crmsync::crm::Source> {
        Box::new(amocrm_support::open(&self.config, &self.clock))
    }

    fn truth(&self) -> crmsync::crm::OrgModel {
        amocrm_support::truth(&self.fake)
    }

    fn cast(&self) -> StoryCast {
        StoryCast {
            // Frank (contacts M/M) edits his own Ada Lovelace; Erin (view A) holds it too.
            editor: "5003".parse().unwrap(),
            edited: "104".parse().unwrap(),
            loser: "5002".parse().unwrap(),
            lost: "104".parse().unwrap(),
        }
    }

    fn take_access_away(&self) {
        self.fake.state().set_right(5002, "contacts", "view", "M");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_held_back_story_runs_against_amocrm() {
    let h = Harness::start(org()).await;
    let fake = FakeAmo::start();
    let crm = AmoStoryCrm {
        config: long_lived_config(&fake, h.dir.path()),
        fake,
        clock: manual_clock(),
    };
    story::held_back_story(&h, &crm).await;

    // The write-back was one PATCH of the phone field, in Frank's name, after a fresh GET.
    let state = crm.fake.state();
    let patches = state.requests("PATCH", "/contacts/104");
    assert_eq!(patches.len(), 1, "{patches:#?}");
    assert_eq!(
        patches[0].body,
        serde_json::json!({"custom_fields_values": [{"field_code": "PHONE",
            "values": [{"value": "+14155550199", "enum_code": "MOB"}]}], "updated_by": 5003})
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
