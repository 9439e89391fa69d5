//! Crashes and faults: a pass aborted after each k-th Google call (before the call reaches
//! Google, or after Google applied it but before the engine heard back), then restarted,
//! always converges to the desired state with zero duplicates; random 500/503/429, dropped
//! connections and lost responses converge too, and no phone edit is lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sync_support;

use crmsync::emulator::faults::{FaultKind, FaultMatch, FaultRule, FaultTrigger};
use crmsync::sync::engine::{Engine, SyncOptions};
use crmsync::sync::remote::Remote;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use sync_support::*;
use tokio::sync::Notify;

/// "Crashes the process" at the k-th Google call: the call never returns, so the pass future
/// is dropped mid-flight exactly as a killed process would leave things. Calls are counted as
/// they start (crash before sending) or as Google's answers arrive (crash after Google applied
/// the call); user passes run concurrently, so the two orders differ.
struct Crash {
    calls: Cell<usize>,
    crash_at: usize,
    after: bool,
    crashed: Rc<Notify>,
}

impl Crash {
    async fn count(&self, at_end: bool) {
        if at_end != self.after {
            return;
        }
        self.calls.set(self.calls.get() + 1);
        if self.calls.get() == self.crash_at {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

impl CallHook for Crash {
    async fn before(&self, _call: Call<'_>) {
        self.count(false).await;
    }

    async fn after(&self, _call: Call<'_>) {
        self.count(true).await;
    }
}

fn crashing(h: &Harness, crash_at: usize, after: bool) -> Hooked<'_, Crash> {
    Hooked {
        inner: &h.remote,
        hook: Crash {
            calls: Cell::new(0),
            crash_at,
            after,
            crashed: Rc::new(Notify::new()),
        },
    }
}

/// Runs one pass through `remote`; returns false if it "crashed".
async fn pass_through<R: Remote + crmsync::revoke::remote::Offboarding>(
    h: &Harness,
    remote: &R,
    crashed: &Notify,
) -> bool {
    let engine = Engine {
        config: &h.config,
        state: &h.state,
        crm: RefCell::new(Box::new(h.crm())),
        remote,
        now: h.now,
    };
    let options = SyncOptions::default();
    tokio::select! {
        report = engine.sync_once(&options) => { report.unwrap(); true }
        _ = crashed.notified() => false,
    }
}

/// What a clean run of the same story ends with.
async fn reference(org_doc: &serde_json::Value, day_two: bool) -> BTreeMap<String, Vec<String>> {
    let h = Harness::start(org_doc.clone()).await;
    h.sync().await;
    if day_two {
        life_happens(&h).await;
        h.sync().await;
        h.sync().await;
    }
    h.synced_markers()
}

/// Day two: a phone edit, a CRM edit, a deletion in the CRM.
async fn life_happens(h: &Harness) {
    h.phone_edit_contact("frank", "c1", |c| c.title = "Edited on the phone".into())
        .await;
    let mut doc = org();
    doc["contacts"][3]["title"] = serde_json::json!("Edited in the CRM");
    doc["contacts"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["id"] != "c5");
    h.load(&doc);
}

async fn crash_story(day_two: bool, after: bool) {
    let expected = reference(&org(), day_two).await;
    // How many Google calls the pass under test makes when nothing goes wrong.
    let calls = {
        let h = Harness::start(org()).await;
        if day_two {
            h.sync().await;
            life_happens(&h).await;
        }
        let counter = crashing(&h, usize::MAX, after);
        let notify = counter.hook.crashed.clone();
        assert!(pass_through(&h, &counter, &notify).await);
        counter.hook.calls.get()
    };
    assert!(calls >= 12, "the pass makes {calls} calls");
    for k in 1..=calls {
        let h = Harness::start(org()).await;
        if day_two {
            h.sync().await;
            life_happens(&h).await;
        }
        let remote = crashing(&h, k, after);
        let notify = remote.hook.crashed.clone();
        assert!(
            !pass_through(&h, &remote, &notify).await,
            "k={k}: did not crash"
        );
        // Restart: a new engine on the same state DB, CRM and Google.
        let context = format!(
            "crash {} call {k}/{calls}",
            if after { "after" } else { "before" }
        );
        h.sync().await;
        h.sync().await;
        h.assert_no_duplicates_while(&context);
        assert_eq!(h.synced_markers(), expected, "{context}");
        assert!(is_quiet(&h.sync().await), "{context}: not converged");
        if day_two {
            let c1 = crm_contact(&h, "c1").unwrap();
            assert_eq!(
                c1.title, "Edited on the phone",
                "{context}: the phone edit was lost"
            );
            let c4 = h.phone_contact("frank", "c4").await.unwrap();
            assert_eq!(c4.title, "Edited in the CRM", "{context}");
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_first_pass_crashing_before_any_call_converges_without_duplicates() {
    crash_story(false, false).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_first_pass_crashing_after_google_applied_a_call_converges_without_duplicates() {
    crash_story(false, true).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_pass_crashing_anywhere_loses_no_edit_and_duplicates_nothing() {
    crash_story(true, false).await;
    crash_story(true, true).await;
}

#[tokio::test(flavor = "current_thread")]
async fn random_server_errors_rate_limits_drops_and_lost_answers_converge() {
    let expected = reference(&org(), true).await;
    let h = Harness::start(org()).await;
    h.sync().await;
    life_happens(&h).await;
    // 15 % of all Google calls fail in one of five ways, from a fixed seed.
    let kinds = [
        FaultKind::Status {
            code: 500,
            retry_after_secs: None,
        },
        FaultKind::Status {
            code: 503,
            retry_after_secs: None,
        },
        FaultKind::Status {
            code: 429,
            retry_after_secs: Some(1),
        },
        FaultKind::DropConnection,
        FaultKind::LostResponse,
    ];
    for fault in kinds {
        h.emu.add_fault(FaultRule {
            matches: FaultMatch {
                endpoint: Some("*".into()),
                ..FaultMatch::default()
            },
            trigger: FaultTrigger::Rate { probability: 0.03 },
            fault,
        });
    }
    // Bounded: a few passes under fire, then the faults stop and two clean passes finish.
    for _ in 0..4 {
        h.sync().await;
        h.assert_no_duplicates_while("under faults");
    }
    assert!(h.emu.counters().faults_injected > 0, "faults were injected");
    h.emu.clear_faults();
    h.sync().await;
    h.sync().await;
    h.assert_no_duplicates_while("after faults");
    assert_eq!(h.synced_markers(), expected);
    assert_eq!(crm_contact(&h, "c1").unwrap().title, "Edited on the phone");
    assert!(is_quiet(&h.sync().await));
}
