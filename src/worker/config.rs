//! `[worker]`: how `crmsync run` paces itself (see `config/crmsync.toml`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The sync worker's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Where `/healthz`, `/readyz`, `/metrics` and `/ics/<secret>.ics` are served (loopback
    /// by default; put a TLS-terminating proxy in front to publish the feeds).
    pub listen: SocketAddr,
    /// Seconds between two cycles (each polls the CRM's change feed).
    pub interval_secs: u64,
    /// On SIGINT/SIGTERM, how long in-flight users may take to finish (a second signal
    /// exits at once).
    pub drain_timeout_secs: u64,
    /// A user whose pass failed waits this long before the next try, doubling per
    /// consecutive failure (with jitter) up to `backoff_cap_secs`.
    pub backoff_base_secs: u64,
    pub backoff_cap_secs: u64,
    /// Every user gets a full reconciliation (full listings, duplicate sweep) this often,
    /// staggered over the period; 0 = never.
    pub reconcile_minutes: u64,
    /// Every user's phone is polled (incremental listings: phone edits) this often,
    /// staggered over the period; 0 = only when something changed.
    pub phone_poll_minutes: u64,
    /// A cycle stops early when the first this-many users all fail to reach Google
    /// (transport or authentication errors, no call succeeded): Google is down for
    /// everyone; the worker then backs off as a whole.
    pub unreachable_after_users: usize,
    /// The cap of that global backoff (it starts at `interval_secs` and doubles).
    pub outage_backoff_cap_secs: u64,
    /// How long a cycle waits for another writer's state-DB lock before it is skipped.
    pub lock_wait_secs: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            interval_secs: 60,
            drain_timeout_secs: 30,
            backoff_base_secs: 120,
            backoff_cap_secs: 3600,
            reconcile_minutes: 1440,
            phone_poll_minutes: 10,
            unreachable_after_users: 3,
            outage_backoff_cap_secs: 900,
            lock_wait_secs: 5,
        }
    }
}

impl WorkerConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    pub fn lock_wait(&self) -> Duration {
        Duration::from_secs(self.lock_wait_secs)
    }

    /// Checks ranges; the key and message of the first problem.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let range = |key: &'static str, value: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err((key, format!("{value} is not in {lo}..={hi}")))
            }
        };
        range("worker.interval_secs", self.interval_secs, 1, 86_400)?;
        range(
            "worker.drain_timeout_secs",
            self.drain_timeout_secs,
            0,
            3_600,
        )?;
        range(
            "worker.backoff_base_secs",
            self.backoff_base_secs,
            1,
            86_400,
        )?;
        range(
            "worker.backoff_cap_secs",
            self.backoff_cap_secs,
            self.backoff_base_secs,
            7 * 86_400,
        )?;
        range(
            "worker.reconcile_minutes",
            self.reconcile_minutes,
            0,
            43_200,
        )?;
        range(
            "worker.phone_poll_minutes",
            self.phone_poll_minutes,
            0,
            1_440,
        )?;
        range(
            "worker.unreachable_after_users",
            self.unreachable_after_users as u64,
            1,
            1_000,
        )?;
        range(
            "worker.outage_backoff_cap_secs",
            self.outage_backoff_cap_secs,
            1,
            86_400,
        )?;
        range("worker.lock_wait_secs", self.lock_wait_secs, 0, 600)?;
        Ok(())
    }
}
