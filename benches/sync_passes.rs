//! Sync pass benchmark and growth table: a seeded synthetic org synced through the real Google
//! clients to `crmsync emulator` — a full first pass, the first quiet pass after it, a pass
//! after 1 % of the contacts changed in the CRM, a pass after a role move, and a later quiet
//! pass — reporting wall time, the engine's CPU, Google API calls (as the emulator counts
//! them: every batch part is one call), the lower bound of calls for the work done, how many
//! users were quiet (listings only) or had only the changed records planned, and peak RSS.
//!
//! Three processes per scale, so that each is measured alone: this one generates the org,
//! loads it into the embedded CRM and changes the CRM between passes; `crmsync emulator`
//! plays Google on 127.0.0.1; and a child of this binary is the engine, which runs each pass
//! when told to (one line on its stdin) and answers with its figures (one line on stdout).
//!
//! `cargo bench --bench sync_passes` runs scales 0.01 and 0.1; `CRMSYNC_SYNC_BENCH_SCALES`
//! takes a comma-separated list (scale 1.0: 2,000 users, 200,000 contacts, 100,000 events).
//! At most `CRMSYNC_SYNC_BENCH_MAX_USERS` users (default 200) are synced: the whole org is
//! mirrored, indexed and planned from at every scale, but the emulator keeps every synced
//! item in memory (1 GiB for 188 users at scale 0.1), so 2,000 Google accounts would not fit
//! in this machine.

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

/// The engine child allocates as the `crmsync` binary does (see the `mimalloc` feature).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crmsync::store::StateDb;
use crmsync::sync::engine::{Engine, RunReport, SyncOptions};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Listings every pass makes per user: events and contacts. (The calendar's ACL, the leak
/// guard, is listed once per user's turn of `sync.acl_check_minutes`: the bound counts the
/// checks the pass made.)
const LISTINGS_PER_USER: u64 = 2;

/// One pass of one scale.
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
    /// Access tokens asked of the emulator's token endpoint (not counted in `calls`).
    token_requests: u64,
    lower_bound: u64,
    items: usize,
    quiet_users: usize,
    changes_only_users: usize,
    errors: usize,
    /// A few of the item errors, distinct by message (what to look into when there are any).
    error_samples: Vec<String>,
    /// Calls by endpoint (quiet passes only: what a quiet pass spends its calls on).
    endpoints: BTreeMap<String, u64>,
    /// Quiet passes only: users planned in full, and why (a few).
    planned: Vec<String>,
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
    if let Ok(dir) = std::env::var("CRMSYNC_SYNC_BENCH_ENGINE") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(engine(PathBuf::from(dir)));
        return;
    }
    let mut rows: Vec<PassRow> = Vec::new();
    for scale in scales() {
        rows.extend(drive(scale));
    }
    print_growth(&rows);
}

fn print_growth(rows: &[PassRow]) {
    println!();
    println!(
        "growth table (wall s, the engine's CPU s, API calls and their ratio to the lower bound, users quiet / planned for the changes only):"
    );
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
                            "{:.2} s, CPU {:.2} s ({per_user:.2} ms/user), {} calls ({:.2}×), {} quiet, {} changes only",
                            r.seconds,
                            r.cpu_seconds,
                            r.calls,
                            r.calls as f64 / r.lower_bound.max(1) as f64,
                            r.quiet_users,
                            r.changes_only_users
                        )
                    })
            })
            .collect();
        println!("| {pass} | {} |", cells.join(" | "));
    }
    let rss: Vec<String> = scales
        .iter()
        .map(|s| {
            let of = |f: fn(&PassRow) -> f64| {
                rows.iter()
                    .filter(|r| r.scale == *s)
                    .map(f)
                    .fold(0.0, f64::max)
            };
            format!(
                "engine {:.0} MiB, emulator {:.0} MiB",
                of(|r| r.engine_rss_mib),
                of(|r| r.emulator_rss_mib)
            )
        })
        .collect();
    println!("| peak RSS | {} |", rss.join(" | "));
}

/// `crmsync emulator` on a free loopback port.
struct Emulator {
    child: Child,
    base: String,
}

impl Emulator {
    fn start() -> Self {
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
        let up = (0..200).any(|_| {
            let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if !ok {
                std::thread::sleep(Duration::from_millis(50));
            }
            ok
        });
        assert!(up, "the emulator did not start");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
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

/// The engine child: its stdin names the passes to run, its stdout answers each.
struct EngineChild {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl EngineChild {
    fn pass(&mut self, label: &str) -> PassRow {
        use std::io::Write;
        writeln!(self.stdin, "{label}").unwrap();
        self.stdin.flush().unwrap();
        for line in self.stdout.by_ref() {
            let line = line.unwrap();
            match line.strip_prefix("RESULT ") {
                Some(json) => return serde_json::from_str(json).unwrap(),
                None => println!("{line}"),
            }
        }
        panic!("the engine child ended before answering {label:?}");
    }
}

/// One scale: the org, the CRM and its changes here; Google and the engine in processes of
/// their own.
fn drive(scale: f64) -> Vec<PassRow> {
    let max_users: usize = std::env::var("CRMSYNC_SYNC_BENCH_MAX_USERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let spec = SyntheticSpec::scaled(scale);
    let mut model = generate(&spec);
    let synced: Vec<String> = model
        .users
        .values()
        .filter(|u| u.active && u.google_account.is_some())
        .map(|u| u.id.to_string())
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
    let crm_path = dir.path().join("crm.db");
    let load = |model: &crmsync::crm::OrgModel| {
        SqliteCrm::open(&crm_path).unwrap().load(model).unwrap();
    };
    load(&model);
    let emu = Emulator::start();
    // `CRMSYNC_SYNC_BENCH_WRAP="heaptrack -o /tmp/engine"` (with `--no-default-features`:
    // heaptrack sees the system allocator only) runs the engine child under a
    // profiler (words split on spaces, the bench binary appended).
    let exe = std::env::current_exe().unwrap();
    let wrap = std::env::var("CRMSYNC_SYNC_BENCH_WRAP").unwrap_or_default();
    let mut words: Vec<&std::ffi::OsStr> = wrap.split_whitespace().map(AsRef::as_ref).collect();
    words.push(exe.as_os_str());
    let mut child = Command::new(words[0])
        .args(&words[1..])
        .env("CRMSYNC_SYNC_BENCH_ENGINE", dir.path())
        .env("CRMSYNC_SYNC_BENCH_EMULATOR", &emu.base)
        .env("CRMSYNC_SYNC_BENCH_USERS", synced.join(","))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut engine = EngineChild {
        child,
        stdin,
        stdout,
    };
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>6} {:>7} {:>6} {:>8}",
        "pass",
        "wall s",
        "cpu s",
        "calls",
        "items",
        "bound",
        "ratio",
        "quiet",
        "changes",
        "errors",
        "rss MiB"
    );
    let (org_users, contacts, events) =
        (model.users.len(), model.contacts.len(), model.events.len());
    let mut rows = Vec::new();
    let mut pass = |label: &str, engine: &mut EngineChild| {
        let mut row = engine.pass(label);
        row.scale = scale;
        row.org_users = org_users;
        row.contacts = contacts;
        row.events = events;
        row.emulator_rss_mib = emu.rss_mib();
        println!(
            "{:<22} {:>9.2} {:>9.2} {:>9} {:>8} {:>8} {:>6.2}x {:>6} {:>7} {:>6} {:>8.0}",
            row.pass,
            row.seconds,
            row.cpu_seconds,
            row.calls,
            row.items,
            row.lower_bound,
            row.calls as f64 / row.lower_bound.max(1) as f64,
            row.quiet_users,
            row.changes_only_users,
            row.errors,
            row.engine_rss_mib
        );
        if !row.endpoints.is_empty() {
            println!(
                "  calls by endpoint: {:?}, token requests: {}",
                row.endpoints, row.token_requests
            );
        }
        for planned in &row.planned {
            println!("  planned: {planned}");
        }
        for sample in &row.error_samples {
            println!("  error: {sample}");
        }
        rows.push(row);
    };
    pass("full (first) pass", &mut engine);
    pass("first quiet pass", &mut engine);

    // 1 % of the contacts change in the CRM.
    let ids: Vec<_> = model.contacts.keys().cloned().collect();
    for id in ids.iter().step_by(100) {
        if let Some(c) = model.contacts_mut().get_mut(id) {
            c.title = format!("{} (promoted)", c.title);
        }
    }
    load(&model);
    pass("1 % contacts changed", &mut engine);

    // A permission change: a synced user with a role moves to another role.
    let mover = synced
        .iter()
        .filter_map(|u| model.users.get(&UserId::new(u.as_str()).unwrap()))
        .filter(|u| u.role.is_some() && !u.admin)
        .nth(3)
        .map(|u| u.id.clone())
        .unwrap();
    let other_role = model.roles.keys().nth(2).cloned();
    if let Some(u) = model.users.get_mut(&mover) {
        u.role = other_role;
    }
    load(&model);
    pass("role move (1 user)", &mut engine);
    pass("later quiet pass", &mut engine);
    // `CRMSYNC_SYNC_BENCH_QUIET_REPEAT=N`: N more quiet passes, not reported (so that a
    // profiler wrapping the engine sees mostly quiet passes at the end of its run).
    let repeat: usize = std::env::var("CRMSYNC_SYNC_BENCH_QUIET_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for _ in 0..repeat.min(10_000) {
        engine.pass("quiet pass (repeated)");
    }
    drop(engine.stdin);
    engine.child.wait().unwrap();
    println!(
        "peak RSS: engine {:.0} MiB, emulator {:.0} MiB",
        rows.iter().map(|r| r.engine_rss_mib).fold(0.0, f64::max),
        emu.rss_mib()
    );
    rows
}

/// The engine child: runs a pass for every line on stdin, answers with a `RESULT` line.
async fn engine(dir: PathBuf) {
    // `CRMSYNC_SYNC_BENCH_LOG=crmsync=debug`: the engine's events on stderr (e.g. why a
    // user was planned in a quiet pass).
    if let Ok(filter) = std::env::var("CRMSYNC_SYNC_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let base = std::env::var("CRMSYNC_SYNC_BENCH_EMULATOR").unwrap();
    let synced: Vec<UserId> = std::env::var("CRMSYNC_SYNC_BENCH_USERS")
        .unwrap()
        .split(',')
        .map(|u| UserId::new(u).unwrap())
        .collect();
    let http = reqwest::Client::new();
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
    let counters = async || -> Counters {
        http.get(format!("{base}/_emulator/counters"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let key =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/emulator-service-account.json");
    let mut config = Config::default();
    config.state.path = dir.join("state.db");
    config.crm.path = dir.join("crm.db");
    config.google.base_url = format!("{base}/");
    config.google.service_account_key = key.clone();
    config.google.token_uri = Some(format!("{base}/token"));
    config.sync.concurrency = 8;
    // `CRMSYNC_SYNC_BENCH_RECORDS_IN_FLIGHT`: the pass's memory budget (default: the config's).
    if let Some(n) = std::env::var("CRMSYNC_SYNC_BENCH_RECORDS_IN_FLIGHT")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        config.sync.max_records_in_flight = n;
    }
    config.scope.org = ScopeLayer {
        contact: Some(SelectionMode::Team),
        event: Some(SelectionMode::Team),
        direction: Some(Direction::TwoWay),
        ..ScopeLayer::default()
    };
    let state = StateDb::create(&config.state.path).unwrap();
    let remote = GoogleRemote::new(GoogleRemoteConfig {
        calendar_root: base.clone(),
        people_root: base.clone(),
        service_account_key: key,
        token_uri: Some(format!("{base}/token")),
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
    let stdin = std::io::stdin();
    for line in std::io::BufRead::lines(stdin.lock()) {
        let label = line.unwrap();
        if label.is_empty() {
            break;
        }
        let before = counters().await;
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
        let after = counters().await;
        let row = PassRow {
            scale: 0.0,
            pass: label.clone(),
            org_users: 0,
            synced_users: synced.len(),
            contacts: 0,
            events: 0,
            seconds,
            cpu_seconds,
            calls: after.api_calls - before.api_calls,
            token_requests: after.token_requests - before.token_requests,
            lower_bound: lower_bound(&report) + after.endpoint("calendar.acl.list")
                - before.endpoint("calendar.acl.list"),
            items: changed(&report),
            quiet_users: report.users.iter().filter(|u| u.quiet).count(),
            changes_only_users: report.users.iter().filter(|u| u.changes_only).count(),
            errors: report.users.iter().map(|u| u.errors.len()).sum(),
            error_samples: report
                .users
                .iter()
                .flat_map(|u| &u.errors)
                .map(|e| e.error.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .take(5)
                .collect(),
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
            planned: if label.contains("quiet") {
                report
                    .users
                    .iter()
                    .filter(|u| !u.quiet && !u.changes_only)
                    .take(5)
                    .map(|u| format!("{}: {}", u.user, u.planned_because.unwrap_or("-")))
                    .collect()
            } else {
                Vec::new()
            },
            engine_rss_mib: peak_rss_mib("self"),
            emulator_rss_mib: 0.0,
        };
        println!("RESULT {}", serde_json::to_string(&row).unwrap());
    }
}
