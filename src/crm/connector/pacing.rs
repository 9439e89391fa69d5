//! Pacing and backoff for CRM HTTP calls, on a [`Clock`] the tests can drive.
//!
//! - [`Pacer`]: at most `requests_per_second` calls (one connector shares one pacer across
//!   all its keys), and an optional daily budget counted per UTC day; once the CRM says the
//!   daily quota is used up, nothing more is sent until the next UTC midnight.
//! - [`Backoff`]: bounded exponential backoff with "equal jitter" (a delay uniformly drawn
//!   from the upper half of the exponential step), from a seedable RNG so tests are
//!   deterministic.
//! - [`Clock`]: real time ([`SystemClock`]) or a [`ManualClock`] whose `sleep` advances
//!   virtual time at once and records what was asked — backoff and pacing are tested
//!   without waiting.

use chrono::{DateTime, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A boxed sleep.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Time as the connector sees it.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now (pacing).
    fn now(&self) -> Instant;
    /// Wall-clock now (daily quotas, reconciliation intervals).
    fn utc_now(&self) -> DateTime<Utc>;
    /// Waits `duration` (runs inside the connector's HTTP thread).
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// Real time: tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn utc_now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

#[derive(Debug)]
struct ManualState {
    base: Instant,
    offset: Duration,
    utc_base: DateTime<Utc>,
    slept: Vec<Duration>,
}

/// Virtual time for tests: `sleep` returns at once after advancing the clock by the asked
/// duration, and remembers every sleep.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<ManualState>,
}

impl ManualClock {
    /// A clock whose wall time starts at `utc`.
    pub fn starting_at(utc: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(ManualState {
                base: Instant::now(),
                offset: Duration::ZERO,
                utc_base: utc,
                slept: Vec::new(),
            }),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut ManualState) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Moves time forward (what happens between two runs).
    pub fn advance(&self, by: Duration) {
        self.with(|s| s.offset += by);
    }

    /// Every sleep asked for so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.with(|s| s.slept.clone())
    }

    /// Forgets the recorded sleeps.
    pub fn clear_sleeps(&self) {
        self.with(|s| s.slept.clear());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.with(|s| s.base + s.offset)
    }

    fn utc_now(&self) -> DateTime<Utc> {
        self.with(|s| {
            s.utc_base + chrono::Duration::from_std(s.offset).unwrap_or(chrono::Duration::zero())
        })
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        self.with(|s| {
            s.offset += duration;
            s.slept.push(duration);
        });
        Box::pin(std::future::ready(()))
    }
}

/// How fast a connector may call its CRM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacingConfig {
    /// Sustained request rate across all of the connector's keys.
    pub requests_per_second: f64,
    /// Requests per UTC day the connector may spend (leave room for other integrations);
    /// `None`: only the CRM's own quota answers stop it.
    pub daily_budget: Option<u64>,
}

/// Why the pacer will not let a request go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaStop {
    pub detail: String,
    pub resets: String,
}

/// Spaces requests and counts them per UTC day.
#[derive(Debug)]
pub struct Pacer {
    gap: Duration,
    next_at: Option<Instant>,
    budget: Option<u64>,
    day: Option<NaiveDate>,
    used: u64,
    blocked: Option<(DateTime<Utc>, String)>,
}

fn next_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = now.date_naive().succ_opt().unwrap_or(now.date_naive());
    tomorrow
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now)
}

impl Pacer {
    pub fn new(config: PacingConfig) -> Self {
        let rps = if config.requests_per_second.is_finite() && config.requests_per_second > 0.0 {
            config.requests_per_second
        } else {
            1.0
        };
        Self {
            gap: Duration::from_secs_f64(1.0 / rps),
            next_at: None,
            budget: config.daily_budget,
            day: None,
            used: 0,
            blocked: None,
        }
    }

    /// Requests sent on the current UTC day.
    pub fn used_today(&self) -> u64 {
        self.used
    }

    fn roll_day(&mut self, now: DateTime<Utc>) {
        let today = now.date_naive();
        if self.day != Some(today) {
            self.day = Some(today);
            self.used = 0;
        }
        if self
            .blocked
            .as_ref()
            .is_some_and(|(until, _)| now >= *until)
        {
            self.blocked = None;
        }
    }

    /// Waits for the request's turn, or refuses it when the day's quota is spent.
    pub async fn admit(&mut self, clock: &dyn Clock) -> Result<(), QuotaStop> {
        let utc = clock.utc_now();
        self.roll_day(utc);
        if let Some((until, detail)) = &self.blocked {
            return Err(QuotaStop {
                detail: detail.clone(),
                resets: until.to_rfc3339(),
            });
        }
        if let Some(budget) = self.budget {
            if self.used >= budget {
                return Err(QuotaStop {
                    detail: format!("the configured daily budget of {budget} requests is spent"),
                    resets: next_midnight(utc).to_rfc3339(),
                });
            }
        }
        let now = clock.now();
        if let Some(at) = self.next_at {
            if at > now {
                clock.sleep(at - now).await;
            }
        }
        self.next_at = Some(clock.now() + self.gap);
        self.used += 1;
        Ok(())
    }

    /// The CRM said the daily quota is used up: nothing more until the next UTC midnight.
    pub fn exhausted(&mut self, clock: &dyn Clock, detail: String) -> QuotaStop {
        let until = next_midnight(clock.utc_now());
        self.blocked = Some((until, detail.clone()));
        QuotaStop {
            detail,
            resets: until.to_rfc3339(),
        }
    }
}

/// Retries of one call: how many attempts and how long to wait between them.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per call (the first included).
    pub max_attempts: u32,
    /// The first backoff step; each next step doubles, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails as rate limited.
    pub max_retry_after: Duration,
    /// Seed of the jitter (tests); `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            seed: None,
        }
    }
}

/// Jittered exponential backoff steps.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    rng: StdRng,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        let rng = match policy.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self { policy, rng }
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The wait after the `failed`-th failed attempt (1-based): uniformly in
    /// `[step/2, step]` where `step = min(max_delay, base_delay · 2^(failed-1))`.
    pub fn delay(&mut self, failed: u32) -> Duration {
        let exp = failed.saturating_sub(1).min(30);
        let step = self
            .policy
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.policy.max_delay);
        let half = step / 2;
        let spread = (step - half).as_nanos() as u64;
        let extra = if spread == 0 {
            0
        } else {
            self.rng.random_range(0..=spread)
        };
        half + Duration::from_nanos(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn clock() -> Arc<ManualClock> {
        ManualClock::starting_at(Utc.with_ymd_and_hms(2026, 11, 23, 23, 59, 58).unwrap())
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn requests_are_spaced_to_the_rate() {
        let clock = clock();
        let mut pacer = Pacer::new(PacingConfig {
            requests_per_second: 10.0,
            daily_budget: None,
        });
        block_on(async {
            for _ in 0..4 {
                pacer.admit(clock.as_ref()).await.unwrap();
            }
        });
        let sleeps = clock.sleeps();
        assert_eq!(sleeps.len(), 3, "the first request goes at once");
        for s in sleeps {
            assert!((s.as_millis() as i64 - 100).abs() <= 1, "{s:?}");
        }
        assert_eq!(pacer.used_today(), 4);
    }

    #[test]
    fn the_daily_budget_stops_requests_until_the_next_utc_day() {
        let clock = clock();
        let mut pacer = Pacer::new(PacingConfig {
            requests_per_second: 1000.0,
            daily_budget: Some(2),
        });
        block_on(async {
            pacer.admit(clock.as_ref()).await.unwrap();
            pacer.admit(clock.as_ref()).await.unwrap();
            let stop = pacer.admit(clock.as_ref()).await.unwrap_err();
            assert!(stop.detail.contains("budget of 2"), "{stop:?}");
            assert!(stop.resets.starts_with("2026-11-24T00:00:00"), "{stop:?}");
            clock.advance(Duration::from_secs(5));
            pacer.admit(clock.as_ref()).await.unwrap();
        });
    }

    #[test]
    fn an_exhausted_quota_blocks_until_midnight() {
        let clock = clock();
        let mut pacer = Pacer::new(PacingConfig {
            requests_per_second: 1000.0,
            daily_budget: None,
        });
        let stop = pacer.exhausted(clock.as_ref(), "the CRM says 0 left".into());
        assert!(stop.resets.starts_with("2026-11-24T00:00:00"));
        block_on(async {
            assert!(pacer.admit(clock.as_ref()).await.is_err());
            clock.advance(Duration::from_secs(3));
            assert!(pacer.admit(clock.as_ref()).await.is_ok());
        });
    }

    #[test]
    fn backoff_is_bounded_jittered_and_reproducible() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
            seed: Some(7),
            ..RetryPolicy::default()
        };
        let mut a = Backoff::new(policy.clone());
        let mut b = Backoff::new(policy);
        for failed in 1..12 {
            let d = a.delay(failed);
            assert_eq!(d, b.delay(failed), "same seed, same delays");
            let step = Duration::from_millis(100 * (1 << (failed - 1).min(3)));
            assert!(
                d >= step / 2 && d <= step,
                "{failed}: {d:?} not in [{:?}, {step:?}]",
                step / 2
            );
        }
    }
}
