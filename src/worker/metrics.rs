//! The worker's metrics, rendered in the Prometheus text exposition format (version 0.0.4)
//! by hand: a few counters and gauges do not need a metrics framework.
//!
//! Labels hold ids, kinds and statuses only — user ids are the one personal-ish value,
//! as the issue allows; never names, e-mail addresses or Google's error texts.

use crate::model::UserId;
use crate::sync::affected::Affected;
use crate::sync::engine::RunReport;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// How a cycle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleOutcome {
    /// Users were synced.
    Synced,
    /// Nothing changed and nobody was due: no Google call.
    Quiet,
    /// Another command held the state DB's writer lock.
    LockBusy,
    /// Google was unreachable for the first users: the cycle stopped early.
    GoogleUnreachable,
    /// A signal asked the worker to stop during the cycle.
    Stopped,
    /// The cycle failed (state DB, CRM); the next one tries again.
    Error,
}

impl CycleOutcome {
    pub fn label(self) -> &'static str {
        match self {
            CycleOutcome::Synced => "synced",
            CycleOutcome::Quiet => "quiet",
            CycleOutcome::LockBusy => "lock_busy",
            CycleOutcome::GoogleUnreachable => "google_unreachable",
            CycleOutcome::Stopped => "stopped",
            CycleOutcome::Error => "error",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    cycles: BTreeMap<&'static str, u64>,
    cycle_seconds_total: f64,
    last_cycle_seconds: f64,
    last_cycle_end: Option<DateTime<Utc>>,
    passes: BTreeMap<&'static str, u64>,
    items: BTreeMap<(&'static str, &'static str), u64>,
    conflicts: u64,
    google_calls: BTreeMap<(String, String), u64>,
    backoffs: u64,
    outage_backoffs: u64,
    users_in_backoff: u64,
    last_success: BTreeMap<UserId, DateTime<Utc>>,
    affected: BTreeMap<&'static str, usize>,
    affected_users: usize,
    lock_held: bool,
    lock_waits: u64,
    lock_wait_seconds: f64,
    lock_busy: u64,
    other_holder: Option<(String, u32)>,
    mirror_refreshed_at: Option<DateTime<Utc>>,
    crm_changes: u64,
    model_loads: u64,
    /// Permission indexes made: patched from the kept one, built afresh.
    index_patched: u64,
    index_built: u64,
    google_reachable: bool,
    started_at: Option<DateTime<Utc>>,
}

/// The worker's metrics, shared with the HTTP listener.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

/// `/readyz`'s verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub mirror_fresh: bool,
    pub last_cycle_recent: bool,
    pub google_reachable: bool,
    pub mirror_age_secs: Option<i64>,
    pub last_cycle_age_secs: Option<i64>,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes one metric family.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(Vec<(&str, String)>, f64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let labels = if labels.is_empty() {
            String::new()
        } else {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        };
        let value = if value.is_finite() {
            format!("{value}")
        } else {
            "NaN".to_owned()
        };
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn started(&self, now: DateTime<Utc>) {
        self.with(|s| {
            s.started_at = Some(now);
            s.google_reachable = true;
        });
    }

    pub fn cycle_finished(&self, outcome: CycleOutcome, elapsed: Duration, now: DateTime<Utc>) {
        self.with(|s| {
            *s.cycles.entry(outcome.label()).or_default() += 1;
            let secs = elapsed.as_secs_f64();
            s.cycle_seconds_total += secs;
            s.last_cycle_seconds = secs;
            if !matches!(outcome, CycleOutcome::LockBusy | CycleOutcome::Error) {
                s.last_cycle_end = Some(now);
            }
        });
    }

    pub fn lock_taken(&self, waited: Duration) {
        self.with(|s| {
            s.lock_held = true;
            if !waited.is_zero() {
                s.lock_waits += 1;
                s.lock_wait_seconds += waited.as_secs_f64();
            }
        });
    }

    pub fn lock_released(&self) {
        self.with(|s| s.lock_held = false);
    }

    /// A cycle found the lock held by another command (`holder`: its command and pid).
    pub fn lock_busy(&self, holder: Option<(String, u32)>, waited: Duration) {
        self.with(|s| {
            s.lock_busy += 1;
            s.lock_waits += 1;
            s.lock_wait_seconds += waited.as_secs_f64();
            s.other_holder = holder;
        });
    }

    pub fn mirror_refreshed(&self, now: DateTime<Utc>, changes: usize) {
        self.with(|s| {
            s.mirror_refreshed_at = Some(now);
            s.crm_changes += changes as u64;
        });
    }

    /// The worker read the whole model from the mirror (it keeps it between cycles and
    /// applies the CRM's changes to it otherwise).
    pub fn model_loaded(&self) {
        self.with(|s| s.model_loads += 1);
    }

    /// The worker made a permission index: patched the kept one with the CRM's record
    /// changes, or built one afresh (at start, after a security-model change).
    pub fn index_made(&self, patched: bool) {
        self.with(|s| {
            if patched {
                s.index_patched += 1;
            } else {
                s.index_built += 1;
            }
        });
    }

    pub fn affected(&self, affected: &Affected) {
        self.with(|s| {
            s.affected = affected.count_by_reason();
            s.affected_users = affected.len();
        });
    }

    /// One Google call (a batch part counts as one) by endpoint and outcome.
    pub fn google_call(&self, endpoint: &str, status: &str) {
        self.with(|s| {
            *s.google_calls
                .entry((endpoint.to_owned(), status.to_owned()))
                .or_default() += 1;
        });
    }

    pub fn google_reachable(&self, reachable: bool) {
        self.with(|s| s.google_reachable = reachable);
    }

    pub fn outage_backoff(&self) {
        self.with(|s| s.outage_backoffs += 1);
    }

    pub fn backoffs(&self, started: usize, in_backoff: usize) {
        self.with(|s| {
            s.backoffs += started as u64;
            s.users_in_backoff = in_backoff as u64;
        });
    }

    pub fn last_successes(&self, last: BTreeMap<UserId, DateTime<Utc>>) {
        self.with(|s| s.last_success = last);
    }

    /// Passes, items by action and conflicts of a run.
    pub fn run(&self, report: &RunReport) {
        self.with(|s| {
            for user in &report.users {
                let status = user.status.as_str();
                *s.passes.entry(status).or_default() += 1;
                for (kind, c) in [("contact", &user.contacts), ("event", &user.events)] {
                    for (action, n) in [
                        ("created", c.created),
                        ("updated", c.updated),
                        ("deleted", c.deleted),
                        ("released", c.released),
                        ("linked", c.linked),
                        ("written_back", c.written_back),
                        ("imported", c.imported),
                        ("reverted", c.reverted),
                        ("unlinked", c.unlinked),
                        ("duplicates_removed", c.duplicates_removed),
                        ("failed", c.errors),
                    ] {
                        if n > 0 {
                            *s.items.entry((kind, action)).or_default() += n as u64;
                        }
                    }
                    s.conflicts += c.conflicts as u64;
                }
            }
        });
    }

    /// Whether the worker is ready: the mirror was refreshed and a cycle completed within
    /// `window`, and Google was reachable at the last try.
    pub fn readiness(&self, now: DateTime<Utc>, window: Duration) -> Readiness {
        self.with(|s| {
            let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
            let age = |t: Option<DateTime<Utc>>| t.map(|t| (now - t).num_seconds());
            let fresh = |t: Option<DateTime<Utc>>| t.is_some_and(|t| now - t <= window);
            let mirror_fresh = fresh(s.mirror_refreshed_at);
            let last_cycle_recent = fresh(s.last_cycle_end);
            Readiness {
                ready: mirror_fresh && last_cycle_recent && s.google_reachable,
                mirror_fresh,
                last_cycle_recent,
                google_reachable: s.google_reachable,
                mirror_age_secs: age(s.mirror_refreshed_at),
                last_cycle_age_secs: age(s.last_cycle_end),
            }
        })
    }

    /// The text exposition at `now`.
    pub fn render(&self, now: DateTime<Utc>) -> String {
        self.with(|s| {
            let mut out = String::new();
            let none: Vec<(&str, String)> = Vec::new();
            family(
                &mut out,
                "crmsync_worker_cycles_total",
                "counter",
                "Worker cycles by outcome.",
                &s.cycles
                    .iter()
                    .map(|(o, n)| (vec![("outcome", (*o).to_owned())], *n as f64))
                    .collect::<Vec<_>>(),
            );
            family(
                &mut out,
                "crmsync_worker_cycle_seconds_total",
                "counter",
                "Time spent in cycles.",
                &[(none.clone(), s.cycle_seconds_total)],
            );
            family(
                &mut out,
                "crmsync_worker_last_cycle_seconds",
                "gauge",
                "Duration of the last cycle.",
                &[(none.clone(), s.last_cycle_seconds)],
            );
            family(
                &mut out,
                "crmsync_worker_last_cycle_age_seconds",
                "gauge",
                "Seconds since the last cycle ended (-1: none yet).",
                &[(
                    none.clone(),
                    s.last_cycle_end
                        .map_or(-1.0, |t| (now - t).num_milliseconds() as f64 / 1000.0),
                )],
            );
            family(
                &mut out,
                "crmsync_passes_total",
                "counter",
                "User passes by status.",
                &s.passes
                    .iter()
                    .map(|(st, n)| (vec![("status", (*st).to_owned())], *n as f64))
                    .collect::<Vec<_>>(),
            );
            family(
                &mut out,
                "crmsync_items_total",
                "counter",
                "Synced items by kind and action.",
                &s.items
                    .iter()
                    .map(|((k, a), n)| {
                        (
                            vec![("kind", (*k).to_owned()), ("action", (*a).to_owned())],
                            *n as f64,
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            family(
                &mut out,
                "crmsync_conflicts_total",
                "counter",
                "Field conflicts recorded (both sides changed a field differently).",
                &[(none.clone(), s.conflicts as f64)],
            );
            let calls: Vec<_> = s
                .google_calls
                .iter()
                .map(|((e, st), n)| {
                    (
                        vec![("endpoint", e.clone()), ("status", st.clone())],
                        *n as f64,
                    )
                })
                .collect();
            family(
                &mut out,
                "crmsync_google_calls_total",
                "counter",
                "Google API calls (batch parts count one each) by endpoint and outcome \
                 (ok, or the error kind after retries).",
                &calls,
            );
            let errors: Vec<_> = calls
                .iter()
                .filter(|(l, _)| l.iter().any(|(k, v)| *k == "status" && v != "ok"))
                .cloned()
                .collect();
            family(
                &mut out,
                "crmsync_google_errors_total",
                "counter",
                "Google API calls that failed, by endpoint and error kind.",
                &errors,
            );
            family(
                &mut out,
                "crmsync_worker_backoffs_total",
                "counter",
                "Per-user backoffs started after a failed pass.",
                &[(none.clone(), s.backoffs as f64)],
            );
            family(
                &mut out,
                "crmsync_worker_users_in_backoff",
                "gauge",
                "Users waiting out a backoff.",
                &[(none.clone(), s.users_in_backoff as f64)],
            );
            family(
                &mut out,
                "crmsync_worker_outage_backoffs_total",
                "counter",
                "Cycles stopped early because Google was unreachable for everyone.",
                &[(none.clone(), s.outage_backoffs as f64)],
            );
            family(
                &mut out,
                "crmsync_worker_google_reachable",
                "gauge",
                "1 if Google was reachable at the last try.",
                &[(none.clone(), if s.google_reachable { 1.0 } else { 0.0 })],
            );
            family(
                &mut out,
                "crmsync_user_lag_seconds",
                "gauge",
                "Seconds since each user's last successful pass.",
                &s.last_success
                    .iter()
                    .map(|(u, t)| {
                        (
                            vec![("user", u.to_string())],
                            (now - *t).num_milliseconds() as f64 / 1000.0,
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            family(
                &mut out,
                "crmsync_worker_affected_users",
                "gauge",
                "Users the last cycle synced (or found owed), by reason.",
                &s.affected
                    .iter()
                    .map(|(r, n)| (vec![("reason", (*r).to_owned())], *n as f64))
                    .collect::<Vec<_>>(),
            );
            family(
                &mut out,
                "crmsync_worker_last_cycle_users",
                "gauge",
                "Users the last cycle found due.",
                &[(none.clone(), s.affected_users as f64)],
            );
            family(
                &mut out,
                "crmsync_worker_lock_held",
                "gauge",
                "1 while the worker holds the state DB's writer lock.",
                &[(none.clone(), if s.lock_held { 1.0 } else { 0.0 })],
            );
            family(
                &mut out,
                "crmsync_worker_lock_waits_total",
                "counter",
                "Cycles that found the writer lock held by another command.",
                &[(none.clone(), s.lock_waits as f64)],
            );
            family(
                &mut out,
                "crmsync_worker_lock_wait_seconds_total",
                "counter",
                "Time cycles waited for the writer lock.",
                &[(none.clone(), s.lock_wait_seconds)],
            );
            family(
                &mut out,
                "crmsync_worker_lock_busy_total",
                "counter",
                "Cycles skipped because another command held the writer lock.",
                &[(none.clone(), s.lock_busy as f64)],
            );
            if let Some((command, pid)) = &s.other_holder {
                family(
                    &mut out,
                    "crmsync_worker_lock_other_holder",
                    "gauge",
                    "The last other command seen holding the writer lock.",
                    &[(
                        vec![("command", command.clone()), ("pid", pid.to_string())],
                        1.0,
                    )],
                );
            }
            family(
                &mut out,
                "crmsync_crm_changes_total",
                "counter",
                "CRM feed changes taken into the mirror by the worker.",
                &[(none.clone(), s.crm_changes as f64)],
            );
            family(
                &mut out,
                "crmsync_model_loads_total",
                "counter",
                "Times the worker read the whole CRM model from the mirror (it keeps the model \
                 between cycles and applies the CRM's changes to it).",
                &[(none.clone(), s.model_loads as f64)],
            );
            family(
                &mut out,
                "crmsync_index_updates_total",
                "counter",
                "Permission indexes the worker made after CRM changes: patched with the changed \
                 records (how=\"patched\") or built over the whole model (how=\"built\").",
                &[
                    (vec![("how", "patched".to_owned())], s.index_patched as f64),
                    (vec![("how", "built".to_owned())], s.index_built as f64),
                ],
            );
            family(
                &mut out,
                "crmsync_mirror_age_seconds",
                "gauge",
                "Seconds since the worker last refreshed the CRM mirror (-1: not yet).",
                &[(
                    none.clone(),
                    s.mirror_refreshed_at
                        .map_or(-1.0, |t| (now - t).num_milliseconds() as f64 / 1000.0),
                )],
            );
            family(
                &mut out,
                "crmsync_worker_start_time_seconds",
                "gauge",
                "When the worker started (Unix time).",
                &[(none, s.started_at.map_or(0.0, |t| t.timestamp() as f64))],
            );
            out
        })
    }
}
