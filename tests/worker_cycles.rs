//! The sync worker's cycles through the library, against the embedded CRM and the
//! in-process emulator with the real `GoogleRemote`: changes picked up without a restart
//! and synced only to the users they affect (counted with the emulator's per-user
//! counters), per-user backoff on an injected clock, the early stop when Google is down
//! for everyone, a cycle skipped while another command holds the lock, and the HTTP
//! listener's health, readiness and metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sync_support;

use chrono::{DateTime, Duration as Span, Utc};
use crmsync::emulator::{FaultKind, FaultMatch, FaultRule, FaultTrigger};
use crmsync::google::remote::GoogleRemote;
use crmsync::ics::serve::Clock;
use crmsync::model::UserId;
use crmsync::scope::{ScopeLayer, SelectionMode};
use crmsync::store::lock::WriterLock;
use crmsync::sync::affected::Reason;
use crmsync::worker::metrics::{CycleOutcome, Metrics};
use crmsync::worker::{CycleReport, Worker};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_support::{entity_mut, org, remote_config, story_now, Harness};

const USERS: [&str; 4] = ["alice", "erin", "frank", "hank"];

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(story_now())))
    }
    fn clock(&self) -> Clock {
        let me = self.clone();
        Arc::new(move || *me.0.lock().unwrap())
    }
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
    fn advance(&self, by: Span) {
        *self.0.lock().unwrap() += by;
    }
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// A worker over the harness's CRM and emulator; `tune` adjusts `[worker]`/`[sync]`.
async fn worker(
    h: &Harness,
    clock: &ManualClock,
    tune: impl FnOnce(&mut crmsync::config::Config),
) -> Worker<GoogleRemote> {
    let mut config = h.config.clone();
    // Only changes drive these tests unless a test asks for the schedule.
    config.worker.phone_poll_minutes = 0;
    config.worker.reconcile_minutes = 0;
    config.worker.lock_wait_secs = 0;
    tune(&mut config);
    let remote = GoogleRemote::new(remote_config(&h.emu)).await.unwrap();
    Worker::new(
        config,
        Box::new(h.crm()),
        remote,
        Arc::new(Metrics::default()),
        clock.clock(),
        7,
    )
}

/// Google API calls per user so far.
fn calls(h: &Harness) -> BTreeMap<String, u64> {
    let counters = h.emu.counters();
    USERS
        .iter()
        .map(|u| (u.to_string(), counters.user(&format!("{u}@acme.example"))))
        .collect()
}

/// Users whose call count moved.
fn called_between(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<String> {
    USERS
        .iter()
        .filter(|u| before[**u] != after[**u])
        .map(|u| u.to_string())
        .collect()
}

fn due(report: &CycleReport) -> Vec<&str> {
    report.due.ids().map(UserId::as_str).collect()
}

fn contact_mut<'d>(doc: &'d mut Value, id: &str) -> &'d mut Value {
    entity_mut(doc, "contacts", id)
}

#[tokio::test(flavor = "current_thread")]
async fn changes_are_picked_up_without_restart_and_only_affected_users_are_synced() {
    let mut h = Harness::start(org()).await;
    // Frank starts without events; widening his scope later is the scope change.
    h.set_scope(
        "frank",
        &ScopeLayer {
            event: Some(SelectionMode::None),
            ..ScopeLayer::default()
        },
    );
    let clock = ManualClock::new();
    let w = worker(&h, &clock, |_| {}).await;

    // First start: the worker cannot know what changed before it: everyone.
    let first = w.cycle().await.unwrap();
    assert_eq!(first.outcome, CycleOutcome::Synced);
    assert_eq!(due(&first), USERS);
    assert!(first
        .due
        .reasons(&uid("erin"))
        .unwrap()
        .contains(&Reason::Startup));
    h.assert_nothing_leaks();
    assert!(h.events("frank").is_empty());

    // Nothing changed: a quiet cycle, no Google call at all.
    let before = calls(&h);
    let quiet = w.cycle().await.unwrap();
    assert_eq!(quiet.outcome, CycleOutcome::Quiet);
    assert!(quiet.run.is_none() && quiet.due.is_empty());
    assert_eq!(calls(&h), before, "a quiet cycle calls Google for nobody");

    // A record change: c5 is hank's; erin reads it through the sharing rule, alice is an
    // admin; frank may not read it.
    let mut doc = org();
    contact_mut(&mut doc, "c5")["title"] = json!("Head of Purchasing");
    h.load(&doc);
    let before = calls(&h);
    let record = w.cycle().await.unwrap();
    assert_eq!(record.crm_changes, 1);
    assert_eq!(due(&record), ["alice", "erin", "hank"]);
    assert!(record
        .due
        .reasons(&uid("hank"))
        .unwrap()
        .contains(&Reason::LinkedRecordChanged(
            crmsync::model::ObjectKind::Contact
        )));
    assert_eq!(
        called_between(&before, &calls(&h)),
        ["alice", "erin", "hank"]
    );
    let c5 = h.phone_contact("hank", "c5").await.unwrap();
    assert_eq!(c5.title, "Head of Purchasing");
    h.assert_nothing_leaks();

    // A permission change: hank moves under erin (rep_west → rep_east); erin may now read
    // his event e2. Nobody else's access changes.
    entity_mut(&mut doc, "users", "hank")["role"] = json!("rep_east");
    h.load(&doc);
    let before = calls(&h);
    let permission = w.cycle().await.unwrap();
    assert_eq!(due(&permission), ["erin", "hank"], "{:?}", permission.due);
    assert!(permission
        .due
        .reasons(&uid("hank"))
        .unwrap()
        .contains(&Reason::OwnEntity));
    assert_eq!(called_between(&before, &calls(&h)), ["erin", "hank"]);
    assert!(
        sync_support::ids(&h.events("erin")).contains(&"e2".to_owned()),
        "erin got hank's event: {:?}",
        h.events("erin")
    );
    h.assert_nothing_leaks();

    // A scope change (an admin's `scope set` between cycles, no CRM change): only frank.
    h.set_scope("frank", &ScopeLayer::default());
    let before = calls(&h);
    let scope = w.cycle().await.unwrap();
    assert_eq!(scope.crm_changes, 0);
    assert_eq!(due(&scope), ["frank"]);
    assert_eq!(
        scope.due.reasons(&uid("frank")),
        Some(&BTreeSet::from([Reason::ScopeChanged]))
    );
    assert_eq!(called_between(&before, &calls(&h)), ["frank"]);
    assert!(sync_support::ids(&h.events("frank")).contains(&"e1".to_owned()));
    h.assert_nothing_leaks();

    // And quiet again.
    let before = calls(&h);
    assert_eq!(w.cycle().await.unwrap().outcome, CycleOutcome::Quiet);
    assert_eq!(calls(&h), before);
    h.assert_no_duplicates();
}

#[tokio::test(flavor = "current_thread")]
async fn phone_polls_and_reconciliations_are_staggered_and_periodic() {
    let h = Harness::start(org()).await;
    let clock = ManualClock::new();
    let w = worker(&h, &clock, |c| {
        c.worker.phone_poll_minutes = 10;
        c.worker.reconcile_minutes = 60;
    })
    .await;
    w.cycle().await.unwrap();
    let full_listings = |w: &Worker<GoogleRemote>| {
        check_exposition(&w.metrics().render(story_now()))
            ["crmsync_google_calls_total{endpoint=\"events.list_full\",status=\"ok\"}"]
    };
    assert_eq!(
        full_listings(&w),
        4.0,
        "the first cycle lists everything once"
    );
    // Over an hour: every user is polled about every ten minutes (a reconciliation counts
    // as a poll) and reconciled once, at their own offsets rather than all at once.
    let mut passes: BTreeMap<String, usize> = BTreeMap::new();
    let mut reconciled: BTreeMap<String, usize> = BTreeMap::new();
    let mut busy_minutes = 0;
    let acl_checks = || h.emu.counters().endpoint("calendar.acl.list");
    let acl_before = acl_checks();
    for _ in 0..60 {
        clock.advance(Span::minutes(1));
        let report = w.cycle().await.unwrap();
        if !report.due.is_empty() {
            busy_minutes += 1;
        }
        for (user, reasons) in &report.due.users {
            assert!(
                reasons
                    .iter()
                    .all(|r| matches!(r, Reason::PhonePoll | Reason::Reconcile)),
                "{user}: {reasons:?}"
            );
            *passes.entry(user.to_string()).or_default() += 1;
            if reasons.contains(&Reason::Reconcile) {
                *reconciled.entry(user.to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(passes.keys().map(String::as_str).collect::<Vec<_>>(), USERS);
    assert!(passes.values().all(|n| (5..=7).contains(n)), "{passes:?}");
    assert!(reconciled.values().all(|n| *n == 1), "{reconciled:?}");
    assert_eq!(reconciled.len(), 4, "{reconciled:?}");
    assert!(
        busy_minutes >= 12,
        "spread out: {busy_minutes} minutes had passes"
    );
    assert_eq!(
        full_listings(&w),
        8.0,
        "each reconciliation listed everything"
    );
    // `sync.acl_check_minutes` (10 by default) runs on the same grid as the polls: every
    // poll checked the calendar's sharing, once.
    assert_eq!(
        acl_checks() - acl_before,
        passes.values().sum::<usize>() as u64,
        "one ACL listing per poll"
    );
    h.assert_no_duplicates();
}

/// 503 on every Calendar and People call (of one user, or of everyone).
fn google_down(h: &Harness, user: Option<&str>) {
    for endpoint in ["calendar.*", "people.*"] {
        h.emu.add_fault(FaultRule {
            matches: FaultMatch {
                endpoint: Some(endpoint.into()),
                method: None,
                user: user.map(|u| format!("{u}@acme.example")),
            },
            trigger: FaultTrigger::Always,
            fault: FaultKind::Status {
                code: 503,
                retry_after_secs: None,
            },
        });
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_user_backs_off_with_growing_delays_while_the_others_go_on() {
    let h = Harness::start(org()).await;
    let clock = ManualClock::new();
    let w = worker(&h, &clock, |c| {
        c.worker.backoff_base_secs = 60;
        c.worker.backoff_cap_secs = 3600;
    })
    .await;
    google_down(&h, Some("hank"));
    let first = w.cycle().await.unwrap();
    assert_eq!(first.outcome, CycleOutcome::Synced, "others reached Google");
    assert_eq!(first.backoffs_started, 1);
    let hank = uid("hank");
    let s1 = w.schedule_of(&hank).unwrap();
    assert_eq!(s1.failures, 1);
    let wait1 = s1.next_attempt_at.unwrap() - clock.now();
    assert!(
        wait1 >= Span::seconds(30) && wait1 <= Span::seconds(60),
        "{wait1}"
    );
    assert_eq!(w.schedule_of(&uid("erin")).unwrap().failures, 0);

    // While hank waits, a change for everyone syncs the others and skips him.
    let mut doc = org();
    doc["events"][0]["title"] = json!("Quarterly review (moved)");
    contact_mut(&mut doc, "c5")["title"] = json!("Buyer");
    h.load(&doc);
    clock.advance(Span::seconds(20));
    let before = calls(&h);
    let skipped = w.cycle().await.unwrap();
    assert!(skipped.in_backoff.contains(&hank), "{skipped:?}");
    assert!(!skipped.due.contains(&hank));
    assert!(!called_between(&before, &calls(&h)).contains(&"hank".to_owned()));
    assert!(!called_between(&before, &calls(&h)).is_empty());

    // After the wait he is tried again (the owed change kept), fails, waits longer.
    clock.advance(wait1);
    let retry = w.cycle().await.unwrap();
    assert!(retry.due.contains(&hank));
    let s2 = w.schedule_of(&hank).unwrap();
    assert_eq!(s2.failures, 2);
    let wait2 = s2.next_attempt_at.unwrap() - clock.now();
    assert!(
        wait2 >= Span::seconds(60) && wait2 <= Span::seconds(120),
        "{wait2}"
    );
    assert!(wait2 >= wait1);
    assert!(!s2.pending.is_empty(), "the owed pass is kept");

    // Google answers hank again: the next try after the wait syncs him and resets.
    h.emu.clear_faults();
    clock.advance(wait2);
    let healed = w.cycle().await.unwrap();
    assert!(healed.due.contains(&hank));
    let s3 = w.schedule_of(&hank).unwrap();
    assert_eq!((s3.failures, s3.next_attempt_at), (0, None));
    assert!(s3.pending.is_empty());
    assert_eq!(
        h.phone_contact("hank", "c5").await.unwrap().title,
        "Buyer",
        "the change he missed arrived"
    );
    h.assert_nothing_leaks();
}

#[tokio::test(flavor = "current_thread")]
async fn google_down_for_everyone_stops_the_cycle_early_and_backs_off_globally() {
    let h = Harness::start(org()).await;
    let clock = ManualClock::new();
    let w = worker(&h, &clock, |c| {
        c.sync.concurrency = 1;
        c.worker.unreachable_after_users = 2;
        c.worker.interval_secs = 60;
        c.worker.outage_backoff_cap_secs = 600;
    })
    .await;
    google_down(&h, None);
    let before = calls(&h);
    let down = w.cycle().await.unwrap();
    assert_eq!(down.outcome, CycleOutcome::GoogleUnreachable);
    assert_eq!(
        down.users_called.len(),
        2,
        "stopped after two users: {down:?}"
    );
    let called = called_between(&before, &calls(&h));
    assert_eq!(called.len(), 2, "{called:?}");
    assert_eq!(w.next_delay(), Duration::from_secs(60));
    for user in USERS {
        let s = w.schedule_of(&uid(user)).unwrap();
        assert_eq!(s.failures, 0, "{user}: an outage is nobody's own failure");
        assert!(!s.pending.is_empty(), "{user} is still owed a pass");
    }
    let ready = w.metrics().readiness(clock.now(), Duration::from_secs(600));
    assert!(!ready.ready && !ready.google_reachable, "{ready:?}");

    // Still down: the global backoff doubles.
    clock.advance(Span::seconds(60));
    assert_eq!(
        w.cycle().await.unwrap().outcome,
        CycleOutcome::GoogleUnreachable
    );
    assert_eq!(w.next_delay(), Duration::from_secs(120));

    // Back: everyone owed is synced, the backoff resets.
    h.emu.clear_faults();
    clock.advance(Span::seconds(120));
    let back = w.cycle().await.unwrap();
    assert_eq!(back.outcome, CycleOutcome::Synced);
    assert_eq!(due(&back), USERS);
    assert_eq!(w.next_delay(), Duration::from_secs(60));
    assert!(
        w.metrics()
            .readiness(clock.now(), Duration::from_secs(600))
            .ready
    );
    h.assert_nothing_leaks();
    h.assert_no_duplicates();
}

#[tokio::test(flavor = "current_thread")]
async fn a_cycle_is_skipped_while_another_command_holds_the_lock() {
    let h = Harness::start(org()).await;
    let clock = ManualClock::new();
    let w = worker(&h, &clock, |_| {}).await;
    let held = WriterLock::acquire(&h.config.state.path, "scope set", Duration::ZERO).unwrap();
    let before = calls(&h);
    let skipped = w.cycle().await.unwrap();
    assert_eq!(skipped.outcome, CycleOutcome::LockBusy);
    assert_eq!(calls(&h), before);
    let text = w.metrics().render(clock.now());
    assert!(text.contains("crmsync_worker_lock_busy_total 1"), "{text}");
    assert!(
        text.contains("crmsync_worker_cycles_total{outcome=\"lock_busy\"} 1"),
        "{text}"
    );
    drop(held);
    assert_eq!(w.cycle().await.unwrap().outcome, CycleOutcome::Synced);
}

/// One line of the Prometheus text format: `# HELP`/`# TYPE` or a sample.
fn check_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed: BTreeSet<String> = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(rest.split_once(' ').is_some(), "HELP needs a text: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(typed.insert(name.to_owned()), "{name} typed twice");
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{name}"
        );
        assert!(typed.contains(name), "{name} has no TYPE before it");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels.strip_prefix('{').unwrap().strip_suffix('}').unwrap();
                for pair in inner.split("\",") {
                    let (k, v) = pair.split_once("=\"").unwrap();
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{k}"
                    );
                    assert!(!v.contains('\n'), "{v}");
                }
            }
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

#[tokio::test(flavor = "current_thread")]
async fn health_readiness_and_metrics_answer_over_http() {
    let h = Harness::start(org()).await;
    let clock = ManualClock::new();
    let w = worker(&h, &clock, |_| {}).await;
    let metrics = w.metrics().clone();
    metrics.started(clock.now());
    let router = crmsync::worker::http::router(
        metrics.clone(),
        clock.clock(),
        Duration::from_secs(180),
        Some(crmsync::ics::feed_router(&h.config).unwrap()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crmsync::worker::http::serve(listener, router, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let http = http.clone();
        let url = format!("http://{addr}{path}");
        async move { http.get(url).send().await.unwrap() }
    };

    assert_eq!(get("/healthz").await.status(), 200);
    // Before any cycle: alive, not ready.
    let not_yet = get("/readyz").await;
    assert_eq!(not_yet.status(), 503);
    let body: Value = not_yet.json().await.unwrap();
    assert_eq!(body["mirror_fresh"], false);

    w.cycle().await.unwrap();
    let ready = get("/readyz").await;
    assert_eq!(ready.status(), 200);
    // Stale after the window.
    clock.advance(Span::minutes(10));
    assert_eq!(get("/readyz").await.status(), 503);
    clock.advance(Span::minutes(-10));

    let response = get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    let samples = check_exposition(&text);
    assert_eq!(
        samples["crmsync_worker_cycles_total{outcome=\"synced\"}"],
        1.0
    );
    assert_eq!(samples["crmsync_passes_total{status=\"synced\"}"], 4.0);
    assert!(samples["crmsync_items_total{kind=\"contact\",action=\"created\"}"] > 0.0);
    assert!(
        samples.contains_key(
            "crmsync_google_calls_total{endpoint=\"events.list_full\",status=\"ok\"}"
        ),
        "{text}"
    );
    assert!(samples.contains_key("crmsync_user_lag_seconds{user=\"erin\"}"));
    assert_eq!(samples["crmsync_worker_lock_held"], 0.0);
    assert_eq!(samples["crmsync_worker_google_reachable"], 1.0);
    assert!(samples.contains_key("crmsync_worker_users_in_backoff"));
    assert!(samples.contains_key("crmsync_conflicts_total"));
    // Only ids in labels: no e-mail address, name or Google text.
    assert!(!text.contains('@'), "{text}");
    assert!(!text.contains("Erin"), "{text}");

    // The feed router is mounted: an unknown secret is a 404, like the feeds' own.
    assert_eq!(get("/ics/not-a-secret.ics").await.status(), 404);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// `crmsync_model_loads_total` as the worker's metrics show it.
fn model_loads(w: &Worker<GoogleRemote>, clock: &ManualClock) -> u64 {
    w.metrics()
        .render(clock.now())
        .lines()
        .find_map(|l| l.strip_prefix("crmsync_model_loads_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Permission indexes the worker made: (patched, built).
fn index_updates(w: &Worker<GoogleRemote>, clock: &ManualClock) -> (u64, u64) {
    let text = w.metrics().render(clock.now());
    let count = |how: &str| -> u64 {
        let prefix = format!("crmsync_index_updates_total{{how=\"{how}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (count("patched"), count("built"))
}

#[tokio::test(flavor = "current_thread")]
async fn the_worker_keeps_its_model_and_applies_the_crm_changes_to_it() {
    let h = Harness::start(org()).await;
    let clock = ManualClock::new();
    let w = worker(&h, &clock, |_| {}).await;
    w.cycle().await.unwrap();
    assert_eq!(model_loads(&w, &clock), 1, "read once at the start");
    assert_eq!(
        index_updates(&w, &clock),
        (0, 1),
        "the first index is built"
    );
    assert!(sync_support::ids(&h.contacts("erin")).contains(&"c3".to_owned()));

    // An edit, a delete, a create and a permission change, one cycle each: all taken into
    // the kept model (no second read), and the phones follow each of them.
    let mut doc = org();
    contact_mut(&mut doc, "c5")["title"] = json!("Head of Purchasing");
    h.load(&doc);
    w.cycle().await.unwrap();
    assert_eq!(
        index_updates(&w, &clock),
        (1, 1),
        "an edited record is patched into the kept index"
    );
    assert_eq!(
        h.phone_contact("hank", "c5").await.unwrap().title,
        "Head of Purchasing"
    );
    doc["contacts"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["id"] != "c3");
    h.load(&doc);
    w.cycle().await.unwrap();
    assert_eq!(index_updates(&w, &clock), (2, 1));
    assert!(
        !sync_support::ids(&h.contacts("erin")).contains(&"c3".to_owned()),
        "pulled back"
    );
    let mut c6 = contact_mut(&mut doc, "c4").clone();
    c6["id"] = json!("c6");
    c6["first_name"] = json!("Nina");
    c6["emails"] = json!([{"address": "nina@initech.example", "label": "work"}]);
    doc["contacts"].as_array_mut().unwrap().push(c6);
    h.load(&doc);
    w.cycle().await.unwrap();
    assert_eq!(index_updates(&w, &clock), (3, 1));
    assert_eq!(
        h.phone_contact("frank", "c6").await.unwrap().first_name,
        "Nina"
    );
    entity_mut(&mut doc, "users", "hank")["role"] = json!("rep_east");
    h.load(&doc);
    w.cycle().await.unwrap();
    assert_eq!(
        index_updates(&w, &clock),
        (3, 2),
        "a permission change builds the index afresh"
    );
    assert!(sync_support::ids(&h.events("erin")).contains(&"e2".to_owned()));
    assert_eq!(
        model_loads(&w, &clock),
        1,
        "changes applied to the kept model"
    );
    h.assert_nothing_leaks();

    // Another command moves the mirror on (a one-shot sync): the worker reads it afresh,
    // and syncs from what it read.
    contact_mut(&mut doc, "c5")["title"] = json!("VP Purchasing");
    h.load(&doc);
    h.sync().await;
    contact_mut(&mut doc, "c6")["title"] = json!("Buyer");
    h.load(&doc);
    w.cycle().await.unwrap();
    assert_eq!(
        index_updates(&w, &clock),
        (3, 3),
        "so does a model read afresh"
    );
    assert_eq!(model_loads(&w, &clock), 2);
    assert_eq!(h.phone_contact("frank", "c6").await.unwrap().title, "Buyer");
    h.assert_nothing_leaks();
    h.assert_no_duplicates();
}
