//! The retry policy against the emulator's fault injection and quotas: what is retried and
//! succeeds, what ends as which `RemoteErrorKind`, `Retry-After`, and writes that must not be
//! repeated. Backoff is milliseconds (seeded jitter), so the suite stays fast.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod google_remote_support;

use crmsync::emulator::{
    EmulatorOptions, EmulatorSettings, FaultKind, FaultMatch, FaultRule, FaultTrigger, QuotaConfig,
};
use crmsync::sync::remote::{ContactOp, EventOp, OpOutcome, Remote, RemoteErrorKind};
use google_remote_support::*;
use std::time::{Duration, Instant};

fn on(endpoint: &str, trigger: FaultTrigger, fault: FaultKind) -> FaultRule {
    FaultRule {
        matches: FaultMatch {
            endpoint: Some(endpoint.into()),
            ..Default::default()
        },
        trigger,
        fault,
    }
}

fn first(times: u64) -> FaultTrigger {
    FaultTrigger::Nth { n: 1, times }
}

fn status(code: u16) -> FaultKind {
    FaultKind::Status {
        code,
        retry_after_secs: None,
    }
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_retried_until_they_succeed() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();

    for fault in [
        status(500),
        status(503),
        status(429),
        FaultKind::DropConnection,
    ] {
        emu.clear_faults();
        emu.reset_counters();
        emu.add_fault(on("calendar.events.list", first(2), fault.clone()));
        let listing = remote.list_events(&alice, &cal, None).await;
        assert!(listing.is_ok(), "{fault:?}: {listing:?}");
        assert_eq!(
            emu.counters().endpoint("calendar.events.list"),
            3,
            "{fault:?}"
        );
    }

    // People reads, and the token endpoint itself.
    let group = remote.ensure_group(&alice, "CRM", None).await.unwrap();
    emu.clear_faults();
    emu.add_fault(on("people.people.connections.list", first(2), status(503)));
    remote.list_contacts(&alice, &group, None).await.unwrap();
    let (emu2, fresh) = start(unlimited()).await;
    emu2.add_fault(on("oauth2.token", first(1), status(503)));
    fresh.ensure_calendar(&alice, "CRM", None).await.unwrap();
    assert_eq!(emu2.counters().token_requests, 2);
    drop(emu);
}

#[tokio::test]
async fn failed_batch_requests_and_failed_parts_are_retried() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    let ops: Vec<EventOp> = (0..4)
        .map(|i| EventOp::Insert {
            id: format!("crmrtr{i:04}"),
            crm_id: crm(&format!("ev-{i}")),
            data: meeting(&format!("M{i}"), local(2026, 7, 1, 9 + i, 0), "Europe/Rome"),
        })
        .collect();
    // The whole batch fails once (503), then is dropped once; then two parts fail once each.
    emu.add_fault(on("calendar.batch", first(1), status(503)));
    emu.add_fault(on(
        "calendar.batch",
        FaultTrigger::Nth { n: 2, times: 1 },
        FaultKind::DropConnection,
    ));
    emu.add_fault(on(
        "calendar.events.insert",
        FaultTrigger::Nth { n: 2, times: 2 },
        status(500),
    ));
    let results = remote.event_ops(&alice, &cal, &ops).await.unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r.result, Ok(OpOutcome::Written(_)))),
        "{results:?}"
    );
    let dump = emu.dump_user(ALICE).unwrap();
    assert_eq!(dump.live_events(&cal).len(), 4);
    // 4 parts, 2 of them sent a second time in a later batch.
    assert_eq!(emu.counters().endpoint("calendar.events.insert"), 6);
}

#[tokio::test]
async fn a_lost_answer_never_duplicates_an_event() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    // Google applies the batch, the answer is lost; the retry's insert meets our own id.
    emu.add_fault(on("calendar.batch", first(1), FaultKind::LostResponse));
    let op = EventOp::Insert {
        id: "crmlost00001".into(),
        crm_id: crm("ev-lost"),
        data: meeting("Lost", local(2026, 8, 3, 10, 0), "UTC"),
    };
    let results = remote.event_ops(&alice, &cal, &[op]).await.unwrap();
    assert_eq!(
        results[0].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::AlreadyExists
    );
    assert_eq!(emu.dump_user(ALICE).unwrap().live_events(&cal).len(), 1);
}

#[tokio::test]
async fn persistent_failures_end_as_the_right_kind_after_max_attempts() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    let group = remote.ensure_group(&alice, "CRM", None).await.unwrap();

    emu.add_fault(on(
        "calendar.events.list",
        FaultTrigger::Always,
        status(503),
    ));
    let err = remote.list_events(&alice, &cal, None).await.unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Transient);
    assert!(
        err.message.contains("gave up after 4 attempts"),
        "{}",
        err.message
    );
    assert_eq!(emu.counters().endpoint("calendar.events.list"), 4);

    emu.add_fault(on(
        "people.people.connections.list",
        FaultTrigger::Always,
        status(429),
    ));
    let err = remote
        .list_contacts(&alice, &group, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::RateLimited);
    assert_eq!(emu.counters().endpoint("people.people.connections.list"), 4);

    // A whole batch that keeps failing: every op carries the error, none is lost.
    emu.add_fault(on(
        "calendar.batch",
        FaultTrigger::Always,
        FaultKind::DropConnection,
    ));
    let ops = vec![
        EventOp::Delete {
            id: "crmaaaaa0001".into(),
            etag: None,
        },
        EventOp::Delete {
            id: "crmaaaaa0002".into(),
            etag: None,
        },
    ];
    let results = remote.event_ops(&alice, &cal, &ops).await.unwrap();
    assert!(results
        .iter()
        .all(|r| r.result.as_ref().unwrap_err().kind == RemoteErrorKind::Transient));

    // Permanent answers are not retried.
    emu.clear_faults();
    emu.reset_counters();
    emu.add_fault(on("calendar.events.get", FaultTrigger::Always, status(400)));
    let err = remote
        .get_event(&alice, &cal, "crmaaaaa0001")
        .await
        .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Permanent);
    assert_eq!(emu.counters().endpoint("calendar.events.get"), 1);
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_the_cap() {
    // Jitter alone would wait at most a millisecond; the 429's Retry-After (1 s, capped at
    // 300 ms here) decides the wait.
    let (emu, remote) = start_with(unlimited(), |c| {
        c.retry.base_delay = Duration::from_micros(500);
        c.retry.max_delay = Duration::from_millis(300);
    })
    .await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    emu.add_fault(on(
        "calendar.events.list",
        first(1),
        FaultKind::Status {
            code: 429,
            retry_after_secs: Some(1),
        },
    ));
    let started = Instant::now();
    remote.list_events(&alice, &cal, None).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

fn limited(calendar_per_minute: u32) -> EmulatorOptions {
    EmulatorOptions {
        settings: EmulatorSettings {
            quota: QuotaConfig {
                calendar_per_user_per_minute: Some(calendar_per_minute),
                ..QuotaConfig::unlimited()
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Moves the emulator clock past the quota window as soon as Google (the emulator) has
/// refused a call for quota — what a minute of waiting would do, without the minute.
fn free_the_window_after_a_rejection(
    emu: &crmsync::emulator::TestEmulator,
) -> tokio::task::JoinHandle<()> {
    let handle = emu.handle().clone();
    let before = handle.counters().quota_rejections;
    tokio::spawn(async move {
        while handle.counters().quota_rejections == before {
            tokio::task::yield_now().await;
        }
        handle.advance_clock(Duration::from_secs(61));
    })
}

#[tokio::test]
async fn google_rate_limits_403_are_retried_after_the_window_frees() {
    // Calendar quota of 3 per user per minute (emulator clock). Once the window is full, a
    // call meets 403 userRateLimitExceeded (Retry-After ≈ 60 s, capped at 100 ms here); the
    // window frees and the retry succeeds — a direct call, then a batch part.
    let (emu, remote) = start_with(limited(3), |c| {
        c.retry.base_delay = Duration::from_millis(1);
        c.retry.max_delay = Duration::from_millis(100);
    })
    .await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap(); // 2 calls
    remote.list_events(&alice, &cal, None).await.unwrap(); // 3rd: the window is full
    let watcher = free_the_window_after_a_rejection(&emu);
    remote.list_events(&alice, &cal, None).await.unwrap();
    watcher.await.unwrap();
    let rejected = emu.counters().quota_rejections;
    assert!(rejected >= 1);

    remote.list_events(&alice, &cal, None).await.unwrap();
    remote.list_events(&alice, &cal, None).await.unwrap(); // full again
    let watcher = free_the_window_after_a_rejection(&emu);
    let op = EventOp::Insert {
        id: "crmquota0001".into(),
        crm_id: crm("ev-q"),
        data: meeting("Q", local(2026, 9, 1, 9, 0), "UTC"),
    };
    let results = remote.event_ops(&alice, &cal, &[op]).await.unwrap();
    watcher.await.unwrap();
    assert!(
        matches!(results[0].result, Ok(OpOutcome::Written(_))),
        "{results:?}"
    );
    assert!(emu.counters().quota_rejections > rejected);
}

/// The project-wide Calendar limit answers 403 `rateLimitExceeded` (or 429): retried like the
/// per-user one, for direct calls and batch parts, and other users' calls fill the window.
#[tokio::test]
async fn project_rate_limits_403_and_429_are_retried() {
    for status in [403u16, 429] {
        let options = EmulatorOptions {
            settings: EmulatorSettings {
                quota: QuotaConfig {
                    calendar_per_project_per_minute: Some(4),
                    calendar_project_limit_status: status,
                    ..QuotaConfig::unlimited()
                },
                ..Default::default()
            },
            ..Default::default()
        };
        let (emu, remote) = start_with(options, |c| {
            c.retry.base_delay = Duration::from_millis(1);
            c.retry.max_delay = Duration::from_millis(100);
        })
        .await;
        let alice = alice();
        let bob = user("bob@example.com");
        let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap(); // 2 calls
        let bobs = remote.ensure_calendar(&bob, "CRM", None).await.unwrap(); // 4: full
        let watcher = free_the_window_after_a_rejection(&emu);
        remote.list_events(&alice, &cal, None).await.unwrap();
        watcher.await.unwrap();
        assert_eq!(emu.counters().quota_rejections, 1, "{status}");
        assert_eq!(emu.counters().by_status.get(&status), Some(&1), "{status}");

        remote.list_events(&bob, &bobs, None).await.unwrap();
        remote.list_events(&bob, &bobs, None).await.unwrap();
        remote.list_events(&alice, &cal, None).await.unwrap(); // full again
        let watcher = free_the_window_after_a_rejection(&emu);
        let op = EventOp::Insert {
            id: format!("crmproject{status}"),
            crm_id: crm("ev-p"),
            data: meeting("P", local(2026, 9, 1, 9, 0), "UTC"),
        };
        let results = remote.event_ops(&alice, &cal, &[op]).await.unwrap();
        watcher.await.unwrap();
        assert!(
            matches!(results[0].result, Ok(OpOutcome::Written(_))),
            "{status}: {results:?}"
        );
        assert_eq!(emu.counters().quota_rejections, 2, "{status}");
    }
}

/// An operational 403 `rateLimitExceeded` (writing one calendar too fast; injected here) is
/// retried too, in a batch part and on a direct call.
#[tokio::test]
async fn operational_403_rate_limits_are_retried() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap();
    emu.add_fault(on("calendar.events.insert", first(2), status(403)));
    let op = EventOp::Insert {
        id: "crmoperational1".into(),
        crm_id: crm("ev-o"),
        data: meeting("O", local(2026, 9, 1, 9, 0), "UTC"),
    };
    let results = remote.event_ops(&alice, &cal, &[op]).await.unwrap();
    assert!(
        matches!(results[0].result, Ok(OpOutcome::Written(_))),
        "{results:?}"
    );
    assert_eq!(emu.counters().endpoint("calendar.events.insert"), 3);
    emu.add_fault(on("calendar.events.list", first(1), status(403)));
    remote.list_events(&alice, &cal, None).await.unwrap();
    assert_eq!(emu.counters().endpoint("calendar.events.list"), 2);
}

#[tokio::test]
async fn a_rate_limit_that_persists_ends_as_rate_limited() {
    let (emu, remote) = start(limited(2)).await;
    let alice = alice();
    let cal = remote.ensure_calendar(&alice, "CRM", None).await.unwrap(); // fills the window
    let err = remote.list_events(&alice, &cal, None).await.unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::RateLimited);
    assert_eq!(emu.counters().quota_rejections, 4);
}

#[tokio::test]
async fn calendar_creation_quota_is_not_retried() {
    let options = EmulatorOptions {
        settings: EmulatorSettings {
            quota: QuotaConfig {
                calendar_creations_per_user: Some(0),
                ..QuotaConfig::unlimited()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let (emu, remote) = start(options).await;
    let err = remote
        .ensure_calendar(&alice(), "CRM", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::QuotaExceeded);
    assert_eq!(emu.counters().endpoint("calendar.calendars.insert"), 1);
}

#[tokio::test]
async fn unknown_users_are_unauthorized_and_not_retried() {
    let options = EmulatorOptions {
        domains: vec!["example.com".into()],
        ..unlimited()
    };
    let (emu, remote) = start(options).await;
    let eve = user("eve@elsewhere.example");
    let err = remote.ensure_calendar(&eve, "CRM", None).await.unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Unauthorized, "{err:?}");
    assert_eq!(emu.counters().token_requests, 1);
    // Batch calls of that user fail the same way, op by op.
    let results = remote
        .contact_ops(
            &eve,
            "contactGroups/x",
            &[ContactOp::Delete {
                resource: "people/c1".into(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        results[0].result.as_ref().unwrap_err().kind,
        RemoteErrorKind::Unauthorized
    );
}

#[tokio::test]
async fn contact_creates_are_not_repeated_when_the_answer_may_be_lost() {
    let (emu, remote) = start(unlimited()).await;
    let alice = alice();
    let group = remote.ensure_group(&alice, "CRM", None).await.unwrap();
    let ops = vec![ContactOp::Create {
        crm_id: crm("c-once"),
        data: person("Once", "Only", "once@x.example"),
    }];
    // Applied, answer lost: reported as Transient, and exactly one contact exists (the
    // engine's pending-create resolution finds it by its clientData marker).
    emu.add_fault(on(
        "people.people.batchCreateContacts",
        first(1),
        FaultKind::LostResponse,
    ));
    let results = remote.contact_ops(&alice, &group, &ops).await.unwrap();
    let err = results[0].result.as_ref().unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Transient);
    assert!(
        err.message.contains("may have been applied"),
        "{}",
        err.message
    );
    let dump = emu.dump_user(ALICE).unwrap();
    assert_eq!(dump.live_contacts().len(), 1);
    // A 503 (not applied) is retried, and creates exactly once.
    emu.add_fault(on(
        "people.people.batchCreateContacts",
        first(1),
        status(503),
    ));
    let ops = vec![ContactOp::Create {
        crm_id: crm("c-twice"),
        data: person("Twice", "Tried", "twice@x.example"),
    }];
    let results = remote.contact_ops(&alice, &group, &ops).await.unwrap();
    assert!(
        matches!(results[0].result, Ok(OpOutcome::Written(_))),
        "{results:?}"
    );
    assert_eq!(emu.dump_user(ALICE).unwrap().live_contacts().len(), 2);
}
