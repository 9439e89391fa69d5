//! Sync pass benchmark: a seeded synthetic org synced to the in-process emulator through the
//! real Google clients — a full first pass, a no-op pass, a pass after 1 % of the contacts
//! changed in the CRM, and a pass after a permission change — reporting wall time, Google API
//! calls (as the emulator counts them: every batch part is one call) and the lower bound of
//! calls for the work done (listings + writes at the batch limits).
//!
//! `cargo bench --bench sync_passes` (scale with `CRMSYNC_SYNC_BENCH_SCALE`, default 0.01:
//! 20 users, 2,000 contacts, 1,000 events).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use crmsync::config::Config;
use crmsync::crm::sqlite::SqliteCrm;
use crmsync::emulator::{EmulatorOptions, EmulatorSettings, QuotaConfig, TestEmulator};
use crmsync::google::remote::{GoogleRemote, GoogleRemoteConfig};
use crmsync::google::retry::RetryConfig;
use crmsync::scope::{Direction, ScopeLayer, SelectionMode};
use crmsync::security::synthetic::{generate, SyntheticSpec};
use crmsync::store::StateDb;
use crmsync::sync::engine::{Engine, RunReport, SyncOptions};
use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn lower_bound(report: &RunReport) -> u64 {
    let div = |n: usize, by: usize| n.div_ceil(by) as u64;
    report
        .users
        .iter()
        .map(|u| {
            let (c, e) = (&u.contacts, &u.events);
            // Three listings every pass must make (events, contacts, the calendar's ACL),
            // then the writes at the batch limits.
            3 + div(c.created, 200)
                + div(c.updated, 200)
                + div(c.deleted, 500)
                + (e.created + e.updated + e.deleted) as u64
        })
        .sum()
}

fn changed(report: &RunReport) -> usize {
    report
        .users
        .iter()
        .map(|u| {
            let t = u.total();
            t.created + t.updated + t.deleted
        })
        .sum()
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let scale: f64 = std::env::var("CRMSYNC_SYNC_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.01);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(scale));
}

async fn run(scale: f64) {
    let spec = SyntheticSpec::scaled(scale);
    let mut model = generate(&spec);
    println!(
        "synthetic org: {} users, {} contacts, {} events (scale {scale})",
        model.users.len(),
        model.contacts.len(),
        model.events.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let emu = TestEmulator::start(EmulatorOptions {
        settings: EmulatorSettings {
            quota: QuotaConfig::unlimited(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let key =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/emulator-service-account.json");
    let mut config = Config::default();
    config.state.path = dir.path().join("state.db");
    config.crm.path = dir.path().join("crm.db");
    config.google.base_url = format!("{}/", emu.base_url());
    config.google.service_account_key = key.clone();
    config.google.token_uri = Some(emu.token_uri());
    config.sync.concurrency = 8;
    config.scope.org = ScopeLayer {
        contact: Some(SelectionMode::Team),
        event: Some(SelectionMode::Team),
        direction: Some(Direction::TwoWay),
        ..ScopeLayer::default()
    };
    let state = StateDb::create(&config.state.path).unwrap();
    SqliteCrm::open(&config.crm.path)
        .unwrap()
        .load(&model)
        .unwrap();
    let remote = GoogleRemote::new(GoogleRemoteConfig {
        calendar_root: emu.base_url(),
        people_root: emu.base_url(),
        service_account_key: key,
        token_uri: Some(emu.token_uri()),
        calendar_requests_per_minute: 1_000_000,
        people_reads_per_minute: 1_000_000,
        people_writes_per_minute: 1_000_000,
        retry: RetryConfig {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            attempt_timeout: Duration::from_secs(30),
            seed: Some(1),
        },
        event_page_size: 2500,
        contact_page_size: 1000,
        max_pages: 10_000,
        event_batch_size: 1000,
    })
    .await
    .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap();
    let pass = |label: &'static str| {
        let (config, state, remote, emu) = (&config, &state, &remote, &emu);
        async move {
            let before = emu.counters().api_calls;
            let engine = Engine {
                config,
                state,
                crm: RefCell::new(Box::new(SqliteCrm::open(&config.crm.path).unwrap())),
                remote,
                now,
            };
            let started = Instant::now();
            let report = engine
                .sync_once(&SyncOptions {
                    force: true,
                    ..Default::default()
                })
                .await
                .unwrap();
            let seconds = started.elapsed().as_secs_f64();
            let calls = emu.counters().api_calls - before;
            let errors: usize = report.users.iter().map(|u| u.errors.len()).sum();
            let bound = lower_bound(&report);
            println!(
                "{label:<22} {seconds:>8.2} s {calls:>8} calls {:>8} items {bound:>8} lower bound {:>6.2}x {errors:>3} errors",
                changed(&report),
                calls as f64 / bound.max(1) as f64,
            );
        }
    };
    println!(
        "{:<22} {:>10} {:>14} {:>14} {:>20} {:>7} {:>10}",
        "pass", "time", "api calls", "items", "lower bound", "ratio", "errors"
    );
    pass("full (first) pass").await;
    pass("no-op pass").await;

    // 1 % of the contacts change in the CRM.
    let ids: Vec<_> = model.contacts.keys().cloned().collect();
    for id in ids.iter().step_by(100) {
        if let Some(c) = model.contacts.get_mut(id) {
            c.title = format!("{} (promoted)", c.title);
        }
    }
    SqliteCrm::open(&config.crm.path)
        .unwrap()
        .load(&model)
        .unwrap();
    pass("1 % contacts changed").await;

    // A permission change: a user with a role moves to another role.
    let mover = model
        .users
        .values()
        .filter(|u| u.role.is_some() && !u.admin)
        .nth(3)
        .map(|u| u.id.clone())
        .unwrap();
    let other_role = model.roles.keys().nth(2).cloned();
    if let Some(u) = model.users.get_mut(&mover) {
        u.role = other_role;
    }
    SqliteCrm::open(&config.crm.path)
        .unwrap()
        .load(&model)
        .unwrap();
    pass("role move (1 user)").await;
    pass("no-op pass").await;
    println!("peak RSS {:.0} MiB", peak_rss_mib());
    emu.shutdown().await;
}
