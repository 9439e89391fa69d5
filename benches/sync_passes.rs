//! Sync pass benchmark and growth table: a seeded synthetic org synced through the real Google
//! clients to `crmsync emulator` running as a separate process on 127.0.0.1 (so the engine's
//! memory is measured alone) — a full first pass, the first quiet pass after it, a pass after
//! 1 % of the contacts changed in the CRM, a pass after a role move, and a later quiet pass —
//! reporting wall time, process CPU, Google API calls (as the emulator counts them: every batch
//! part is one call), the lower bound of calls for the work done, how many users were quiet
//! (listings only), and the peak RSS of the engine and of the emulator.
//!
//! `cargo bench --bench sync_passes` runs scales 0.01 and 0.1; `CRMSYNC_SYNC_BENCH_SCALES`
//! takes a comma-separated list (scale 1.0: 2,000 users, 200,000 contacts, 100,000 events).
//! Each scale runs in a child process of its own, so its peak RSS is its own. At most
//! `CRMSYNC_SYNC_BENCH_MAX_USERS` users (default 200) are synced: the whole org is mirrored
//! and indexed at every scale, but the emulator keeps every synced item of every user in
//! memory, and 2,000 users with team scopes would not fit in this machine or in 10 minutes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use crmsync::config::Config;
use crmsync::crm::sqlite::SqliteCrm;
use crmsync::emulator::{Counters, EmulatorSettings, QuotaConfig};
use crmsync::google::remote::{GoogleRemote, GoogleRemoteConfig};
use crmsync::google::retry::RetryConfig;
use crmsync::model::UserId;
use crmsync::scope::{Direction, ScopeLayer, SelectionMode};
use crmsync::security::synthetic::{generate, SyntheticSpec};
use crmsync::store::StateDb;
use crmsync::sync::engine::{Engine, RunReport, SyncOptions};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Listings every pass makes per user: events, contacts, the calendar's ACL (the leak guard).
const LISTINGS_PER_USER: u64 = 3;

/// One pass of one scale, as the child reports it to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PassRow {
    scale: f64,
    pass: String,
    org_users: usize,
    synced_users: usize,
    contacts: usize,
    events: usize,
    seconds: f64,
    cpu_seconds: f64,
    calls: u64,
    lower_bound: u64,
    items: usize,
    quiet_users: usize,
    errors: usize,
    /// Calls by endpoint (quiet passes only: what a quiet pass spends its calls on).
    endpoints: BTreeMap<String, u64>,
    engine_rss_mib: f64,
    emulator_rss_mib: f64,
}

fn lower_bound(report: &RunReport) -> u64 {
    let div = |n: usize, by: usize| n.div_ceil(by) as u64;
    report
        .users
        .iter()
        .map(|u| {
            let (c, e) = (&u.contacts, &u.events);
            LISTINGS_PER_USER
                + div(c.created, 200)
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

/// `VmHWM` (peak resident set) of a process, in MiB.
fn peak_rss_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User + system CPU time of this process so far (all threads), in seconds.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is the first; utime and
    // stime are the 12th and 13th, in clock ticks (100 per second on Linux).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => 0.0,
    }
}

fn scales() -> Vec<f64> {
    std::env::var("CRMSYNC_SYNC_BENCH_SCALES")
        .unwrap_or_else(|_| "0.01,0.1".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn main() {
    if let Some(scale) = std::env::var("CRMSYNC_SYNC_BENCH_ONE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for row in rt.block_on(run(scale)) {
            println!("RESULT {}", serde_json::to_string(&row).unwrap());
        }
        return;
    }
    let me = std::env::current_exe().unwrap();
    let mut rows: Vec<PassRow> = Vec::new();
    for scale in scales() {
        let out = Command::new(&me)
            .env("CRMSYNC_SYNC_BENCH_ONE", scale.to_string())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            match line.strip_prefix("RESULT ") {
                Some(json) => rows.push(serde_json::from_str(json).unwrap()),
                None => println!("{line}"),
            }
        }
        assert!(out.status.success(), "scale {scale} failed");
    }
    print_growth(&rows);
}

fn print_growth(rows: &[PassRow]) {
    println!();
    println!("growth table (wall s / process CPU s / API calls, ratio to the lower bound):");
    let mut scales: Vec<f64> = rows.iter().map(|r| r.scale).collect();
    scales.dedup();
    println!(
        "| pass | {} |",
        scales
            .iter()
            .map(|s| {
                let r = rows.iter().find(|r| r.scale == *s).unwrap();
                format!(
                    "scale {s} ({} of {} users synced, {} contacts, {} events)",
                    r.synced_users, r.org_users, r.contacts, r.events
                )
            })
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(scales.len()));
    let passes: Vec<String> = rows
        .iter()
        .filter(|r| r.scale == scales[0])
        .map(|r| r.pass.clone())
        .collect();
    for pass in &passes {
        let cells: Vec<String> = scales
            .iter()
            .map(|s| {
                rows.iter()
                    .find(|r| r.scale == *s && &r.pass == pass)
                    .map_or("-".into(), |r| {
                        let per_user = r.cpu_seconds * 1000.0 / r.synced_users.max(1) as f64;
                        format!(
                            "{:.2} s, CPU {:.2} s ({per_user:.2} ms/user), {} calls ({:.2}×), {} quiet",
                            r.seconds,
                            r.cpu_seconds,
                            r.calls,
                            r.calls as f64 / r.lower_bound.max(1) as f64,
                            r.quiet_users
                        )
                    })
            })
            .collect();
        println!("| {pass} | {} |", cells.join(" | "));
    }
    let rss: Vec<String> = scales
        .iter()
        .map(|s| {
            let r = rows.iter().rfind(|r| r.scale == *s).unwrap();
            format!(
                "engine {:.0} MiB, emulator {:.0} MiB",
                r.engine_rss_mib, r.emulator_rss_mib
            )
        })
        .collect();
    println!("| peak RSS | {} |", rss.join(" | "));
}

/// `crmsync emulator` on a free loopback port, with unlimited quota.
struct Emulator {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Emulator {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_crmsync"))
            .args(["emulator", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut up = false;
        for _ in 0..200 {
            if http
                .get(format!("{base}/_emulator/settings"))
                .send()
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "the emulator did not start");
        let settings = EmulatorSettings {
            quota: QuotaConfig::unlimited(),
            ..EmulatorSettings::default()
        };
        let put = http
            .put(format!("{base}/_emulator/settings"))
            .json(&settings)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
        Self { child, base, http }
    }

    async fn counters(&self) -> Counters {
        self.http
            .get(format!("{}/_emulator/counters", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn rss_mib(&self) -> f64 {
        peak_rss_mib(&self.child.id().to_string())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn run(scale: f64) -> Vec<PassRow> {
    let max_users: usize = std::env::var("CRMSYNC_SYNC_BENCH_MAX_USERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let spec = SyntheticSpec::scaled(scale);
    let mut model = generate(&spec);
    let synced: Vec<UserId> = model
        .users
        .values()
        .filter(|u| u.active && u.google_account.is_some())
        .map(|u| u.id.clone())
        .take(max_users)
        .collect();
    println!(
        "scale {scale}: {} users ({} synced), {} contacts, {} events",
        model.users.len(),
        synced.len(),
        model.contacts.len(),
        model.events.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start().await;
    let key =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/emulator-service-account.json");
    let mut config = Config::default();
    config.state.path = dir.path().join("state.db");
    config.crm.path = dir.path().join("crm.db");
    config.google.base_url = format!("{}/", emu.base);
    config.google.service_account_key = key.clone();
    config.google.token_uri = Some(format!("{}/token", emu.base));
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
        calendar_root: emu.base.clone(),
        people_root: emu.base.clone(),
        service_account_key: key,
        token_uri: Some(format!("{}/token", emu.base)),
        calendar_requests_per_minute: 1_000_000,
        people_reads_per_minute: 1_000_000,
        people_writes_per_minute: 1_000_000,
        retry: RetryConfig {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            attempt_timeout: Duration::from_secs(60),
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
    let (org_users, contacts, events) =
        (model.users.len(), model.contacts.len(), model.events.len());
    let mut rows = Vec::new();
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>6} {:>6}",
        "pass", "wall s", "cpu s", "calls", "items", "bound", "ratio", "quiet", "errors"
    );
    let mut pass = async |label: &str| {
        let before = emu.counters().await;
        let engine = Engine {
            config: &config,
            state: &state,
            crm: RefCell::new(Box::new(SqliteCrm::open(&config.crm.path).unwrap())),
            remote: &remote,
            now,
        };
        let (started, cpu) = (Instant::now(), cpu_seconds());
        let report = engine
            .sync_once(&SyncOptions {
                users: synced.clone(),
                force: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let (seconds, cpu_seconds) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        let after = emu.counters().await;
        let calls = after.api_calls - before.api_calls;
        let row = PassRow {
            scale,
            pass: label.to_owned(),
            org_users,
            synced_users: synced.len(),
            contacts,
            events,
            seconds,
            cpu_seconds,
            calls,
            lower_bound: lower_bound(&report),
            items: changed(&report),
            quiet_users: report.users.iter().filter(|u| u.quiet).count(),
            errors: report.users.iter().map(|u| u.errors.len()).sum(),
            endpoints: if label.contains("quiet") {
                after
                    .by_endpoint
                    .iter()
                    .map(|(k, v)| (k.clone(), v - before.by_endpoint.get(k).unwrap_or(&0)))
                    .filter(|(_, v)| *v > 0)
                    .collect()
            } else {
                BTreeMap::new()
            },
            engine_rss_mib: peak_rss_mib("self"),
            emulator_rss_mib: emu.rss_mib(),
        };
        println!(
            "{:<22} {:>9.2} {:>9.2} {:>9} {:>8} {:>8} {:>6.2}x {:>6} {:>6}",
            row.pass,
            row.seconds,
            row.cpu_seconds,
            row.calls,
            row.items,
            row.lower_bound,
            row.calls as f64 / row.lower_bound.max(1) as f64,
            row.quiet_users,
            row.errors
        );
        if !row.endpoints.is_empty() {
            println!("  calls by endpoint: {:?}", row.endpoints);
        }
        rows.push(row);
    };
    pass("full (first) pass").await;
    pass("first quiet pass").await;

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

    // A permission change: a synced user with a role moves to another role.
    let mover = synced
        .iter()
        .filter_map(|u| model.users.get(u))
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
    pass("later quiet pass").await;
    println!(
        "peak RSS: engine {:.0} MiB, emulator {:.0} MiB",
        peak_rss_mib("self"),
        emu.rss_mib()
    );
    rows
}
