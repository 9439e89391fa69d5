//! ICS feed serving cost on the synthetic org (2,000 users, 200,000 contacts,
//! 100,000 events; `CRMSYNC_BENCH_SCALE=0.1` for a smaller one), every user's events scope
//! `all_visible` (the largest documents): the embedded CRM is loaded and mirrored into a
//! state DB, every user gets a feed, then the feed service answers
//!
//! - the first request after a mirror change (model load + permission index + one render),
//! - one request for each of 200 users (each a fresh render),
//! - the same 200 again (cached: secret lookup, mirror cursor and scope reads only),
//!
//! and the peak RSS is reported. Run: `cargo bench --bench ics_feeds`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use crmsync::config::Config;
use crmsync::crm::sqlite::SqliteCrm;
use crmsync::ics::serve::FeedAnswer;
use crmsync::ics::{create_feed, FeedSecret, FeedService};
use crmsync::scope::{ScopeLayer, SelectionMode};
use crmsync::security::synthetic::{generate, SyntheticSpec};
use crmsync::store::StateDb;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let scale: f64 = std::env::var("CRMSYNC_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let spec = if (scale - 1.0).abs() < f64::EPSILON {
        SyntheticSpec::benchmark()
    } else {
        SyntheticSpec::scaled(scale)
    };
    println!(
        "ics_feeds: {} users, {} contacts, {} events (seed {})",
        spec.users, spec.contacts, spec.events, spec.seed
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.crm.path = dir.path().join("crm.db");
    config.state.path = dir.path().join("state.db");
    config.scope.org = ScopeLayer {
        event: Some(SelectionMode::AllVisible),
        ..ScopeLayer::default()
    };

    let t = Instant::now();
    let model = generate(&spec);
    let mut crm = SqliteCrm::open(&config.crm.path).unwrap();
    crm.load(&model).unwrap();
    let state = StateDb::create(&config.state.path).unwrap();
    crmsync::mirror::refresh(&state, &crm).unwrap();
    println!("load CRM and mirror:     {}", ms(t.elapsed()));

    let now = Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap();
    let mut users: Vec<_> = model.users.values().filter(|u| u.active).collect();
    users.sort_by(|a, b| a.id.cmp(&b.id));
    let secrets: Vec<FeedSecret> = users
        .iter()
        .map(|u| create_feed(&state, &u.id, now).unwrap().unwrap())
        .collect();
    drop(model);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let service = FeedService::start(
        StateDb::open_existing(&config.state.path).unwrap(),
        config.clone(),
        Arc::new(move || now),
    )
    .unwrap();
    let ask = |secret: &FeedSecret| {
        let t = Instant::now();
        let answer = runtime.block_on(service.lookup(secret)).unwrap();
        let FeedAnswer::Feed(feed) = answer else {
            panic!("no feed")
        };
        (t.elapsed(), feed)
    };

    let (first, _) = ask(&secrets[0]);
    println!("first request (load, index, render): {}", ms(first));

    let sample: Vec<&FeedSecret> = secrets
        .iter()
        .skip(1)
        .step_by((secrets.len() / 200).max(1))
        .take(200)
        .collect();
    let mut fresh = Vec::new();
    let mut events = Vec::new();
    let mut bytes = Vec::new();
    for s in &sample {
        let (d, feed) = ask(s);
        fresh.push(d);
        events.push(feed.events);
        bytes.push(feed.body.len());
    }
    fresh.sort();
    events.sort();
    bytes.sort();
    println!(
        "fresh render, {} users:  median {}, p95 {}, max {} (events per feed: median {}, max {}; median {} KiB)",
        fresh.len(),
        ms(percentile(&fresh, 0.5)),
        ms(percentile(&fresh, 0.95)),
        ms(percentile(&fresh, 1.0)),
        events[events.len() / 2],
        events[events.len() - 1],
        bytes[bytes.len() / 2] / 1024
    );

    let mut cached = Vec::new();
    for s in &sample {
        cached.push(ask(s).0);
    }
    cached.sort();
    println!(
        "cached, same users:      median {}, p99 {}",
        ms(percentile(&cached, 0.5)),
        ms(percentile(&cached, 0.99))
    );
    println!("peak RSS:                {:.0} MiB", peak_rss_mib());
}
