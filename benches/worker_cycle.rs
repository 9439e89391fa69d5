//! Worker cycle benchmark on the seeded synthetic org (`security::synthetic`, 2,000 users,
//! 200,000 contacts, 100,000 events at scale 1): every user with a Google account has a
//! sync row (as after a first pass) and the worker has processed the whole feed. Measures
//! CPU time (user + system, this process) and Google calls (as the in-process emulator
//! counts them) for: the first cycle after a start (loads the model once to compare scope
//! fingerprints), quiet cycles (no CRM change, nobody due), and a cycle after one contact
//! changed in the CRM (only the users who hold it or should have it are synced), then
//! after another (the permission index kept from the first is patched, not rebuilt).
//!
//! `cargo bench --bench worker_cycle`, or unoptimised `cargo test --bench worker_cycle`;
//! scale with `CRMSYNC_BENCH_SCALE` (default 1.0).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use crmsync::config::Config;
use crmsync::crm::sqlite::SqliteCrm;
use crmsync::emulator::{EmulatorOptions, EmulatorSettings, QuotaConfig, TestEmulator};
use crmsync::google::remote::{GoogleRemote, GoogleRemoteConfig};
use crmsync::security::synthetic::{generate, SyntheticSpec};
use crmsync::store::StateDb;
use crmsync::worker::metrics::{CycleOutcome, Metrics};
use crmsync::worker::Worker;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// CPU time of this process so far (utime + stime from /proc, in clock ticks of 10 ms).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 of stat (1-based) are the 12th and 13th after the command.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn main() {
    let scale: f64 = std::env::var("CRMSYNC_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(scale));
}

async fn run(scale: f64) {
    let setup = Instant::now();
    let spec = SyntheticSpec::scaled(scale);
    let model = generate(&spec);
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
    config.crm.path = dir.path().join("crm.db");
    config.state.path = dir.path().join("state.db");
    config.google.base_url = format!("{}/", emu.base_url());
    config.google.service_account_key = key.clone();
    config.google.token_uri = Some(emu.token_uri());
    config.google.allow_personal_accounts = true;
    config.worker.phone_poll_minutes = 0;
    config.worker.reconcile_minutes = 0;
    config.worker.lock_wait_secs = 0;
    let mut crm = SqliteCrm::open(&config.crm.path).unwrap();
    crm.load(&model).unwrap();
    let state = StateDb::create(&config.state.path).unwrap();
    crmsync::mirror::refresh(&state, &crm).unwrap();
    // Every user with an account as after a successful first pass.
    let overrides = state.all_scope_overrides().unwrap();
    let mut rows = 0;
    for (id, result) in crmsync::scope::resolve_all(&config.scope, &model, &overrides) {
        let user = &model.users[&id];
        let (Some(account), true, Ok(resolved)) = (&user.google_account, user.active, result)
        else {
            continue;
        };
        state.ensure_sync_user(&id, account).unwrap();
        state
            .record_outcome(&id, None, Some(resolved.fingerprint.as_str()))
            .unwrap();
        rows += 1;
    }
    state
        .save_worker_cycle(state.crm_cursor().unwrap(), &[], &[])
        .unwrap();
    let remote = GoogleRemote::new(GoogleRemoteConfig::for_emulator(
        &emu.base_url(),
        &emu.token_uri(),
        &key,
    ))
    .await
    .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    let worker = Worker::new(
        config.clone(),
        Box::new(SqliteCrm::open(&config.crm.path).unwrap()),
        remote,
        Arc::new(Metrics::default()),
        Arc::new(move || now),
        7,
    );
    println!(
        "worker_cycle: scale {scale}: {} users ({rows} with sync rows), {} contacts, {} events; set-up {:.1} s",
        model.users.len(),
        model.contacts.len(),
        model.events.len(),
        setup.elapsed().as_secs_f64()
    );

    let measure = |label: &str,
                   cpu0: Duration,
                   wall0: Instant,
                   calls0: u64,
                   report: &crmsync::worker::CycleReport| {
        println!(
            "{label:<40} cpu {:>8.1} ms  wall {:>8.1} ms  google calls {:>5}  users synced {:>4}  users called {:>4}",
            (cpu() - cpu0).as_secs_f64() * 1000.0,
            wall0.elapsed().as_secs_f64() * 1000.0,
            emu.counters().api_calls - calls0,
            report.due.len(),
            report.users_called.len(),
        );
    };

    let (c0, w0, k0) = (cpu(), Instant::now(), emu.counters().api_calls);
    let first = worker.cycle().await.unwrap();
    assert_eq!(first.outcome, CycleOutcome::Quiet, "{first:?}");
    measure("first cycle after a start", c0, w0, k0, &first);
    assert_eq!(emu.counters().api_calls, 0);

    let rounds = 20;
    let (c0, w0) = (cpu(), Instant::now());
    for _ in 0..rounds {
        let quiet = worker.cycle().await.unwrap();
        assert_eq!(quiet.outcome, CycleOutcome::Quiet);
    }
    println!(
        "{:<40} cpu {:>8.1} ms  wall {:>8.1} ms  google calls {:>5}  (mean of {rounds})",
        "quiet cycle",
        (cpu() - c0).as_secs_f64() * 1000.0 / f64::from(rounds),
        w0.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds),
        emu.counters().api_calls,
    );
    assert_eq!(
        emu.counters().api_calls,
        0,
        "quiet cycles call Google for nobody"
    );

    // One contact changes in the CRM.
    let mut changed = model.clone();
    let (id, contact) = changed.contacts_mut().iter_mut().next().unwrap();
    contact.title = "Changed by the benchmark".into();
    let id = id.clone();
    crm.load(&changed).unwrap();
    let (c0, w0, k0) = (cpu(), Instant::now(), emu.counters().api_calls);
    let report = worker.cycle().await.unwrap();
    measure(&format!("one contact ({id}) changed"), c0, w0, k0, &report);
    let called = report.users_called.len();
    assert!(called <= report.due.len());
    assert!(
        report.due.len() < rows,
        "only the affected users: {} of {rows}",
        report.due.len()
    );
    let (c0, w0, k0) = (cpu(), Instant::now(), emu.counters().api_calls);
    let after = worker.cycle().await.unwrap();
    measure("quiet again", c0, w0, k0, &after);
    assert_eq!(after.outcome, CycleOutcome::Quiet);

    // Another contact changes: the worker patches the index it kept from the last change.
    let (id, contact) = changed.contacts_mut().iter_mut().nth(1).unwrap();
    contact.title = "Changed by the benchmark too".into();
    let id = id.clone();
    crm.load(&changed).unwrap();
    let (c0, w0, k0) = (cpu(), Instant::now(), emu.counters().api_calls);
    let report = worker.cycle().await.unwrap();
    measure(
        &format!("another contact ({id}) changed"),
        c0,
        w0,
        k0,
        &report,
    );
    let metrics = worker.metrics().render(Utc::now());
    let patched = metrics
        .lines()
        .any(|l| l == "crmsync_index_updates_total{how=\"patched\"} 1");
    assert!(patched, "the kept index was patched:\n{metrics}");
    emu.shutdown().await;
}
