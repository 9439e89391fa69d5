//! Bulk readable sets on the synthetic org: 2,000 users, 200,000 contacts, 100,000
//! events, a 6-level role tree, 50 sharing rules, 100 teams (seeded, see
//! `crmsync::security::synthetic`).
//!
//! Run: `cargo bench --bench security_bulk`. Reports the time to build the index, the time
//! for every user's readable sets (contacts, events, organizations), the per-user median,
//! the desired sets under the built-in scope, and the peak RSS (VmHWM).
//! `CRMSYNC_BENCH_SCALE=0.1` runs a scaled-down org.

use crmsync::model::ObjectKind;
use crmsync::scope::{desired_set, EffectiveScope, Selection, SelectionMode};
use crmsync::security::synthetic::{generate, SyntheticSpec};
use crmsync::security::{affected_users, Access};
use std::time::{Duration, Instant};

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

fn mib(kb: Option<u64>) -> String {
    kb.map(|k| format!("{:.0} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
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
        "security_bulk: {} users, {} contacts, {} events, {} organizations, {} roles levels, {} rules, {} teams (seed {})",
        spec.users,
        spec.contacts,
        spec.events,
        spec.organizations,
        spec.role_branching.len() + 1,
        spec.sharing_rules,
        spec.teams,
        spec.seed
    );

    let t = Instant::now();
    let model = generate(&spec);
    let generated = t.elapsed();
    let rss_model = status_kb("VmRSS:");
    println!(
        "generate org:            {} (RSS after: {}, {} roles)",
        ms(generated),
        mib(rss_model),
        model.roles.len()
    );

    let t = Instant::now();
    let access = Access::build(&model);
    let built = t.elapsed();
    println!(
        "build access index:      {} (RSS after: {})",
        ms(built),
        mib(status_kb("VmRSS:"))
    );

    let users: Vec<_> = access.user_ids().collect();
    let mut per_user = Vec::with_capacity(users.len());
    let mut totals = [0usize; 3];
    let t = Instant::now();
    for user in &users {
        let started = Instant::now();
        for (i, kind) in ObjectKind::ALL.into_iter().enumerate() {
            let set = access
                .readable(user, kind)
                .unwrap_or_else(|e| panic!("{e}"));
            totals[i] += set.len();
        }
        per_user.push(started.elapsed());
    }
    let all = t.elapsed();
    per_user.sort();
    println!(
        "all users' readable sets: {} for {} users × 3 kinds ({} contact, {} event, {} organization memberships)",
        ms(all),
        users.len(),
        totals[0],
        totals[1],
        totals[2]
    );
    println!(
        "per user (3 kinds):      median {}, p95 {}, max {}",
        ms(percentile(&per_user, 0.5)),
        ms(percentile(&per_user, 0.95)),
        ms(percentile(&per_user, 1.0))
    );

    let now = "2026-06-01T00:00:00Z"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    for mode in [SelectionMode::Mine, SelectionMode::AllVisible] {
        let scope = EffectiveScope {
            contact: Selection::mode(mode),
            event: Selection::mode(mode),
            ..EffectiveScope::builtin()
        };
        let mut desired = 0usize;
        let mut per_user = Vec::with_capacity(users.len());
        let t = Instant::now();
        for user in &users {
            let started = Instant::now();
            for kind in [ObjectKind::Contact, ObjectKind::Event] {
                desired += desired_set(&access, user, &scope, kind, now)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .len();
            }
            per_user.push(started.elapsed());
        }
        per_user.sort();
        println!(
            "desired sets ({mode:?}, 30d/365d window): {} total, median {} per user, {} records",
            ms(t.elapsed()),
            ms(percentile(&per_user, 0.5)),
            desired
        );
    }
    println!(
        "peak RSS (VmHWM) so far:  {} (one org model + its access index)",
        mib(status_kb("VmHWM:"))
    );
    // A permission change: one user moves to another role; who must be recomputed?
    let mut moved = model.clone();
    let mover = users[users.len() / 2].clone();
    let target_role = moved.roles.keys().nth(7).cloned();
    if let Some(user) = moved.users.get_mut(&mover) {
        user.role = target_role;
    }
    let moved_access = Access::build(&moved);
    let t = Instant::now();
    let affected = affected_users(&access, &moved_access);
    let changed = users
        .iter()
        .filter(|u| {
            ObjectKind::ALL.into_iter().any(|k| {
                access.readable(u, k).map(|s| s.bits().clone()).ok()
                    != moved_access.readable(u, k).map(|s| s.bits().clone()).ok()
            })
        })
        .count();
    println!(
        "affected users after moving {mover}: {} ({} reported, {} readable sets actually changed)",
        ms(t.elapsed()),
        affected.len(),
        changed
    );
    drop(moved_access);
    drop(moved);
    println!(
        "peak RSS (VmHWM) at end:  {} (two models and two indexes for the change step)",
        mib(status_kb("VmHWM:"))
    );
}
