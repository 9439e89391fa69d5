//! Crashes and faults: a pass aborted after each k-th Google call (before the call reaches
//! Google, or after Google applied it but before the engine heard back), then restarted,
//! always converges to the desired state with zero duplicates; random 500/503/429, dropped
//! connections and lost responses converge too, and no phone edit is lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sync_support;

use crmsync::emulator::faults::{FaultKind, FaultMatch, FaultRule, FaultTrigger};
use crmsync::google::remote::GoogleRemote;
use crmsync::model::{SyncedContact, SyncedEvent};
use crmsync::sync::engine::{Engine, SyncOptions};
use crmsync::sync::remote::{
    BatchResult, ContactOp, EventOp, GoogleUser, Listing, Remote, RemoteChange, RemoteError,
};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use sync_support::*;
use tokio::sync::Notify;

/// A `Remote` that "crashes the process" at its k-th call: the call never returns, so the
/// pass future is dropped mid-flight exactly as a killed process would leave things.
struct Crashing<'a> {
    inner: &'a GoogleRemote,
    calls: Cell<usize>,
    crash_at: usize,
    /// Crash after Google applied the call (a lost answer) instead of before sending it.
    after: bool,
    crashed: Rc<Notify>,
}

impl Crashing<'_> {
    async fn crash_if(&self, n: usize) {
        if n == self.crash_at {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
    }

    /// Counts calls as they start (crash before sending) or as Google's answers arrive
    /// (crash after Google applied the call); user passes run concurrently, so the two
    /// orders differ.
    async fn around<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        if !self.after {
            self.calls.set(self.calls.get() + 1);
            self.crash_if(self.calls.get()).await;
        }
        let out = call.await;
        if self.after {
            self.calls.set(self.calls.get() + 1);
            self.crash_if(self.calls.get()).await;
        }
        out
    }
}

impl Remote for Crashing<'_> {
    async fn ensure_calendar(
        &self,
        user: &GoogleUser,
        name: &str,
        known: Option<&str>,
    ) -> Result<String, RemoteError> {
        self.around(self.inner.ensure_calendar(user, name, known))
            .await
    }

    async fn ensure_group(
        &self,
        user: &GoogleUser,
        name: &str,
        known: Option<&str>,
    ) -> Result<String, RemoteError> {
        self.around(self.inner.ensure_group(user, name, known))
            .await
    }

    async fn list_events(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: Option<&str>,
    ) -> Result<Listing<SyncedEvent>, RemoteError> {
        self.around(self.inner.list_events(user, calendar, sync_token))
            .await
    }

    async fn get_event(
        &self,
        user: &GoogleUser,
        calendar: &str,
        id: &str,
    ) -> Result<RemoteChange<SyncedEvent>, RemoteError> {
        self.around(self.inner.get_event(user, calendar, id)).await
    }

    async fn event_ops(
        &self,
        user: &GoogleUser,
        calendar: &str,
        ops: &[EventOp],
    ) -> BatchResult<SyncedEvent> {
        self.around(self.inner.event_ops(user, calendar, ops)).await
    }

    async fn list_contacts(
        &self,
        user: &GoogleUser,
        group: &str,
        sync_token: Option<&str>,
    ) -> Result<Listing<SyncedContact>, RemoteError> {
        self.around(self.inner.list_contacts(user, group, sync_token))
            .await
    }

    async fn get_contact(
        &self,
        user: &GoogleUser,
        group: &str,
        resource: &str,
    ) -> Result<RemoteChange<SyncedContact>, RemoteError> {
        self.around(self.inner.get_contact(user, group, resource))
            .await
    }

    async fn contact_ops(
        &self,
        user: &GoogleUser,
        group: &str,
        ops: &[ContactOp],
    ) -> BatchResult<SyncedContact> {
        self.around(self.inner.contact_ops(user, group, ops)).await
    }
}

/// Runs one pass through `remote`; returns false if it "crashed".
async fn pass_through<R: Remote>(h: &Harness, remote: &R, crashed: &Notify) -> bool {
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

/// Every crmsync item per user, counted by marker: the proof of "no duplicates".
fn marker_counts(h: &Harness) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for user in ["alice", "erin", "frank", "hank"] {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (marker, _) in h.contacts(user).into_iter().chain(h.events(user)) {
            if let Some(m) = marker {
                *counts.entry(m).or_default() += 1;
            }
        }
        out.insert(user.to_owned(), counts);
    }
    out
}

fn assert_no_duplicates(h: &Harness, context: &str) {
    for (user, counts) in marker_counts(h) {
        for (marker, n) in counts {
            assert_eq!(n, 1, "{context}: {user} holds {marker} {n} times");
        }
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
    marker_counts(&h)
        .into_iter()
        .map(|(u, c)| (u, c.into_keys().collect()))
        .collect()
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
        let counter = Crashing {
            inner: &h.remote,
            calls: Cell::new(0),
            crash_at: usize::MAX,
            after,
            crashed: Rc::new(Notify::new()),
        };
        assert!(pass_through(&h, &counter, &counter.crashed.clone()).await);
        counter.calls.get()
    };
    assert!(calls >= 12, "the pass makes {calls} calls");
    for k in 1..=calls {
        let h = Harness::start(org()).await;
        if day_two {
            h.sync().await;
            life_happens(&h).await;
        }
        let crashing = Crashing {
            inner: &h.remote,
            calls: Cell::new(0),
            crash_at: k,
            after,
            crashed: Rc::new(Notify::new()),
        };
        let notify = crashing.crashed.clone();
        assert!(
            !pass_through(&h, &crashing, &notify).await,
            "k={k}: did not crash"
        );
        // Restart: a new engine on the same state DB, CRM and Google.
        let context = format!(
            "crash {} call {k}/{calls}",
            if after { "after" } else { "before" }
        );
        h.sync().await;
        h.sync().await;
        assert_no_duplicates(&h, &context);
        let got: BTreeMap<String, Vec<String>> = marker_counts(&h)
            .into_iter()
            .map(|(u, c)| (u, c.into_keys().collect()))
            .collect();
        assert_eq!(got, expected, "{context}");
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
        assert_no_duplicates(&h, "under faults");
    }
    assert!(h.emu.counters().faults_injected > 0, "faults were injected");
    h.emu.clear_faults();
    h.sync().await;
    h.sync().await;
    assert_no_duplicates(&h, "after faults");
    let got: BTreeMap<String, Vec<String>> = marker_counts(&h)
        .into_iter()
        .map(|(u, c)| (u, c.into_keys().collect()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(crm_contact(&h, "c1").unwrap().title, "Edited on the phone");
    assert!(is_quiet(&h.sync().await));
}
