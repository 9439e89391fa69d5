//! Requests per second the emulator sustains over loopback: `events.insert`,
//! incremental `events.list` (with a sync token) and People `createContact`.
//!
//! Run: `cargo bench --bench emulator_throughput` (optionally `-- --requests N
//! --concurrency C`). Quotas are disabled; access tokens are minted through the control API so
//! the JWT exchange is not measured. Each operation uses 8 users, bounded concurrency, and a
//! bounded number of requests; the default run takes a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crmsync::emulator::{EmulatorOptions, EmulatorSettings, QuotaConfig, TestEmulator};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

const USERS: usize = 8;
const SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/contacts",
];

struct Outcome {
    name: &'static str,
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
}

#[derive(Clone, Copy)]
enum Op {
    Insert,
    ListIncremental,
    CreateContact,
}

async fn run(
    name: &'static str,
    op: Op,
    base: &str,
    tokens: &[String],
    sync_tokens: &[String],
    requests: usize,
    concurrency: usize,
) -> Outcome {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let gate = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..requests {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let client = client.clone();
        let user = i % USERS;
        let token = tokens[user].clone();
        let sync = sync_tokens.get(user).cloned().unwrap_or_default();
        let base = base.to_string();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let request = match op {
                Op::Insert => client
                    .post(format!("{base}/calendar/v3/calendars/primary/events"))
                    .json(&json!({
                        "id": format!("bench{i:08}"),
                        "summary": format!("bench event {i}"),
                        "start": {"dateTime": "2025-06-02T08:00:00Z", "timeZone": "Europe/Berlin"},
                        "end": {"dateTime": "2025-06-02T09:00:00Z", "timeZone": "Europe/Berlin"},
                        "extendedProperties": {"private": {"crmsync_id": format!("c{i}")}},
                    })),
                Op::ListIncremental => client
                    .get(format!("{base}/calendar/v3/calendars/primary/events"))
                    .query(&[("syncToken", sync.as_str())]),
                Op::CreateContact => {
                    client
                        .post(format!("{base}/v1/people:createContact"))
                        .json(&json!({
                            "names": [{"givenName": format!("Bench{i}"), "familyName": "Load"}],
                            "emailAddresses": [{"value": format!("bench{i}@customer.test")}],
                            "clientData": [{"key": "crmsync_id", "value": format!("c{i}")}],
                        }))
                }
            };
            let ok = match request.bearer_auth(token).send().await {
                Ok(r) => {
                    let ok = r.status().is_success();
                    let _ = r.bytes().await;
                    ok
                }
                Err(_) => false,
            };
            drop(permit);
            (t0.elapsed(), ok)
        });
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (latency, ok) = done.unwrap();
        latencies.push(latency);
        if !ok {
            errors += 1;
        }
    }
    Outcome {
        name,
        requests,
        elapsed: started.elapsed(),
        latencies,
        errors,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let requests = arg("--requests", 4000);
    let concurrency = arg("--concurrency", 16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let emu = TestEmulator::start(EmulatorOptions {
            settings: EmulatorSettings {
                quota: QuotaConfig::unlimited(),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
        let base = emu.base_url();
        let users: Vec<String> = (0..USERS).map(|i| format!("bench{i}@example.com")).collect();
        let tokens: Vec<String> = users
            .iter()
            .map(|u| emu.mint_access_token(u, SCOPES).unwrap())
            .collect();

        let mut outcomes = Vec::new();
        outcomes.push(run("events.insert", Op::Insert, &base, &tokens, &[], requests, concurrency).await);

        // Sync tokens after the inserts: incremental listings then return no or few items
        // while scanning calendars of requests/USERS events each.
        let client = reqwest::Client::new();
        let mut sync_tokens = Vec::new();
        for token in &tokens {
            let mut page: Option<String> = None;
            let sync = loop {
                let mut req = client
                    .get(format!("{base}/calendar/v3/calendars/primary/events"))
                    .query(&[("maxResults", "2500")])
                    .bearer_auth(token);
                if let Some(p) = &page {
                    req = req.query(&[("pageToken", p.as_str())]);
                }
                let v: Value = req.send().await.unwrap().json().await.unwrap();
                if let Some(p) = v["nextPageToken"].as_str() {
                    page = Some(p.to_string());
                } else {
                    break v["nextSyncToken"].as_str().unwrap().to_string();
                }
            };
            sync_tokens.push(sync);
        }
        outcomes.push(
            run("events.list (incremental)", Op::ListIncremental, &base, &tokens, &sync_tokens, requests, concurrency).await,
        );
        outcomes.push(
            run("people.createContact", Op::CreateContact, &base, &tokens, &[], requests / 2, concurrency).await,
        );

        println!();
        println!(
            "emulator throughput over loopback ({USERS} users, concurrency {concurrency}, {} worker threads, quotas off)",
            2
        );
        println!(
            "{:<28} {:>9} {:>8} {:>10} {:>9} {:>9} {:>7}",
            "operation", "requests", "seconds", "req/s", "p50 ms", "p99 ms", "errors"
        );
        for mut o in outcomes {
            o.latencies.sort();
            let secs = o.elapsed.as_secs_f64();
            println!(
                "{:<28} {:>9} {:>8.2} {:>10.0} {:>9.2} {:>9.2} {:>7}",
                o.name,
                o.requests,
                secs,
                o.requests as f64 / secs,
                percentile(&o.latencies, 0.5).as_secs_f64() * 1000.0,
                percentile(&o.latencies, 0.99).as_secs_f64() * 1000.0,
                o.errors
            );
        }
        emu.shutdown().await;
    });
}
