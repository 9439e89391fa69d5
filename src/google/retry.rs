//! The one retry policy every Google call goes through, and per-user pacing.
//!
//! - What is retried is decided by [`classify`](super::classify): 5xx, 429, 403 rate limits,
//!   timeouts and connection failures. Everything else is returned at once.
//! - Delays are exponential with full jitter: before retry `n` (0-based) the policy waits a
//!   uniformly random time in `[0, min(max_delay, base_delay · 2ⁿ)]`, drawn from a seedable
//!   RNG. A `Retry-After` from Google is honoured (the wait is at least
//!   `min(Retry-After, max_delay)`; the cap keeps tests fast and bounds a hostile header).
//! - Attempts are bounded (`max_attempts`, counting the first) and each is bounded in time
//!   (`attempt_timeout`, a timeout is transient).
//! - A write that is not safe to repeat ([`Repeat::NotAfterSend`]: contact and calendar
//!   creation, where Google would make a second one) is not retried after an *ambiguous*
//!   failure — one that may have happened after Google applied it (timeout, dropped
//!   connection, broken answer). It is reported as `Transient`; `ensure_calendar` finds the
//!   calendar by its marker and the engine's pending-create resolution finds the contact by
//!   its `clientData`. 5xx and 429 answers are still retried: Google did not apply them.
//! - Pacing: every attempt first takes its cost (a Calendar batch costs one per part) from
//!   the user's [`Pacer`], a sliding 60-second window that never admits more than
//!   `requests_per_minute` — the shape of Google's own per-user quota, so pacing below it
//!   means we are never the reason for a 403.

use super::classify::is_retryable;
use crate::sync::remote::{RemoteError, RemoteErrorKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Retry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts per call, the first included (≥ 1).
    pub max_attempts: u32,
    /// The backoff cap before the first retry; doubles with each retry.
    pub base_delay: Duration,
    /// Upper bound of any single wait, `Retry-After` included.
    pub max_delay: Duration,
    /// Time allowed for one attempt (connect, send, answer).
    pub attempt_timeout: Duration,
    /// Seed of the jitter RNG (`None`: from the OS).
    pub seed: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(32),
            attempt_timeout: Duration::from_secs(60),
            seed: None,
        }
    }
}

/// The backoff cap before retry `retry` (0-based): `min(max_delay, base_delay · 2^retry)`.
pub fn backoff_cap(config: &RetryConfig, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX);
    config
        .base_delay
        .checked_mul(factor)
        .unwrap_or(config.max_delay)
        .min(config.max_delay)
}

/// The wait before retry `retry`, for a jitter draw `unit` in `[0, 1)`: full jitter over
/// [`backoff_cap`], but never less than `Retry-After` (itself capped by `max_delay`).
pub fn retry_delay(
    config: &RetryConfig,
    retry: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let jitter = backoff_cap(config, retry).mul_f64(unit);
    match retry_after {
        Some(after) => jitter.max(after.min(config.max_delay)),
        None => jitter,
    }
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: RemoteError,
    /// The failure happened after the request may have reached Google (timeout, dropped
    /// connection, broken answer): a write may have been applied.
    pub ambiguous: bool,
}

impl From<RemoteError> for Failure {
    fn from(error: RemoteError) -> Self {
        Self {
            error,
            ambiguous: false,
        }
    }
}

impl Failure {
    /// A transport failure after the request may have reached Google.
    pub fn ambiguous(error: RemoteError) -> Self {
        Self {
            error,
            ambiguous: true,
        }
    }
}

/// Whether a call may be sent again after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Reads, and writes whose repetition Google refuses harmlessly (inserts with our id →
    /// 409, conditional updates → 412, deletes → 404).
    Safe,
    /// Writes that would be applied twice (contact and calendar creation): not retried
    /// after an ambiguous failure.
    NotAfterSend,
}

/// A sliding-window limiter: at most `per_minute` cost units in any 60 seconds.
#[derive(Debug)]
pub struct Pacer {
    per_minute: u32,
    sent: Mutex<VecDeque<(Instant, u32)>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl Pacer {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            sent: Mutex::new(VecDeque::new()),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Waits until `cost` more units fit in the window, then takes them. A cost above the
    /// whole budget waits for an empty window.
    pub async fn acquire(&self, cost: u32) {
        let cost = cost.clamp(1, self.per_minute);
        loop {
            let wake = {
                let mut sent = match self.sent.lock() {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                let now = Instant::now();
                while sent.front().is_some_and(|(at, _)| *at + WINDOW <= now) {
                    sent.pop_front();
                }
                let used: u32 = sent.iter().map(|(_, c)| *c).sum();
                if used + cost <= self.per_minute {
                    sent.push_back((now, cost));
                    return;
                }
                // Free enough of the oldest entries.
                let mut freed = 0;
                let mut wake = now;
                for (at, c) in sent.iter() {
                    freed += c;
                    wake = *at + WINDOW;
                    if used - freed + cost <= self.per_minute {
                        break;
                    }
                }
                wake
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// The retry policy: jitter RNG and settings.
#[derive(Debug)]
pub struct RetryPolicy {
    config: RetryConfig,
    rng: Mutex<StdRng>,
}

impl RetryPolicy {
    pub fn new(config: RetryConfig) -> Self {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            config,
            rng: Mutex::new(rng),
        }
    }

    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    /// The wait before retry `retry` (0-based), drawing the jitter from the policy's RNG.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let unit: f64 = match self.rng.lock() {
            Ok(mut rng) => rng.random(),
            Err(poisoned) => poisoned.into_inner().random(),
        };
        retry_delay(&self.config, retry, retry_after, unit)
    }

    fn retries(&self, failure: &Failure, repeat: Repeat) -> bool {
        is_retryable(failure.error.kind) && !(failure.ambiguous && repeat == Repeat::NotAfterSend)
    }

    /// Runs `attempt` until it succeeds, fails in a way that is not retried, or runs out of
    /// attempts. Each attempt first takes `cost` from `pacer` and is bounded by
    /// `attempt_timeout`.
    pub async fn run<T, F, Fut>(
        &self,
        pacer: &Pacer,
        cost: u32,
        repeat: Repeat,
        mut attempt: F,
    ) -> Result<T, RemoteError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let attempts = self.config.max_attempts.max(1);
        let mut retry = 0;
        loop {
            pacer.acquire(cost).await;
            let outcome = match tokio::time::timeout(self.config.attempt_timeout, attempt()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure::ambiguous(RemoteError::new(
                    RemoteErrorKind::Transient,
                    format!(
                        "no answer within {} s",
                        self.config.attempt_timeout.as_secs_f64()
                    ),
                ))),
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(failure) if self.retries(&failure, repeat) && retry + 1 < attempts => {
                    let wait = self.delay(retry, failure.error.retry_after);
                    // The kind only: Google's message may quote the item's content.
                    tracing::debug!(
                        attempt = retry + 1,
                        wait_ms = wait.as_millis() as u64,
                        error_kind = ?failure.error.kind,
                        "retrying a Google call"
                    );
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                Err(mut failure) => {
                    if self.retries(&failure, repeat) {
                        failure.error.message = format!(
                            "{} (gave up after {attempts} attempts)",
                            failure.error.message
                        );
                    } else if failure.ambiguous && is_retryable(failure.error.kind) {
                        failure.error.message = format!(
                            "{} (not retried: the write may have been applied)",
                            failure.error.message
                        );
                    }
                    return Err(failure.error);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn config() -> RetryConfig {
        RetryConfig {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
            seed: Some(7),
        }
    }

    #[test]
    fn caps_double_up_to_the_maximum() {
        let c = config();
        let caps: Vec<u128> = (0..7).map(|n| backoff_cap(&c, n).as_millis()).collect();
        assert_eq!(caps, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff_cap(&c, 1000), Duration::from_secs(2));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_cap() {
        let c = config();
        assert_eq!(retry_delay(&c, 3, None, 0.0), Duration::ZERO);
        assert_eq!(retry_delay(&c, 3, None, 0.5), Duration::from_millis(400));
        assert_eq!(retry_delay(&c, 3, None, 1.0), Duration::from_millis(800));
        assert_eq!(retry_delay(&c, 3, None, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_a_floor_capped_by_max_delay() {
        let c = config();
        let after = Some(Duration::from_secs(1));
        assert_eq!(retry_delay(&c, 0, after, 0.0), Duration::from_secs(1));
        assert_eq!(retry_delay(&c, 0, after, 1.0), Duration::from_secs(1));
        assert_eq!(
            retry_delay(&c, 0, Some(Duration::from_secs(3600)), 0.3),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn seeded_policies_draw_the_same_delays() {
        let a = RetryPolicy::new(config());
        let b = RetryPolicy::new(config());
        let da: Vec<_> = (0..5).map(|n| a.delay(n, None)).collect();
        let db: Vec<_> = (0..5).map(|n| b.delay(n, None)).collect();
        assert_eq!(da, db);
        for (n, d) in da.iter().enumerate() {
            assert!(*d <= backoff_cap(&config(), n as u32));
        }
    }

    fn failing(kind: RemoteErrorKind) -> Failure {
        Failure::from(RemoteError::new(kind, "x"))
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_success() {
        let policy = RetryPolicy::new(config());
        let pacer = Pacer::new(600);
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let result = policy
            .run(&pacer, 1, Repeat::Safe, || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    Err(failing(RemoteErrorKind::Transient))
                } else {
                    Ok(n)
                }
            })
            .await;
        assert_eq!(result, Ok(2));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Two waits, each within its cap.
        assert!(start.elapsed() <= Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let policy = RetryPolicy::new(config());
        let pacer = Pacer::new(600);
        for kind in [
            RemoteErrorKind::NotFound,
            RemoteErrorKind::QuotaExceeded,
            RemoteErrorKind::PreconditionFailed,
            RemoteErrorKind::Unauthorized,
        ] {
            let calls = AtomicU32::new(0);
            let result: Result<(), _> = policy
                .run(&pacer, 1, Repeat::Safe, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(failing(kind))
                })
                .await;
            assert_eq!(result.unwrap_err().kind, kind);
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn persistent_rate_limits_end_as_rate_limited_after_max_attempts() {
        let policy = RetryPolicy::new(config());
        let pacer = Pacer::new(600);
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = policy
            .run(&pacer, 1, Repeat::Safe, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(failing(RemoteErrorKind::RateLimited))
            })
            .await;
        let err = result.unwrap_err();
        assert_eq!(err.kind, RemoteErrorKind::RateLimited);
        assert!(err.message.contains("gave up after 4 attempts"));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_waited_out() {
        let policy = RetryPolicy::new(config());
        let pacer = Pacer::new(600);
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let _ = policy
            .run(&pacer, 1, Repeat::Safe, || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    let mut e = RemoteError::new(RemoteErrorKind::RateLimited, "slow down");
                    e.retry_after = Some(Duration::from_millis(1500));
                    Err(Failure::from(e))
                } else {
                    Ok(())
                }
            })
            .await;
        assert!(start.elapsed() >= Duration::from_millis(1500));
        assert!(start.elapsed() < Duration::from_millis(1600));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_attempts_time_out_as_transient() {
        let mut c = config();
        c.max_attempts = 2;
        let policy = RetryPolicy::new(c);
        let pacer = Pacer::new(600);
        let result: Result<(), _> = policy
            .run(&pacer, 1, Repeat::Safe, || async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            })
            .await;
        assert_eq!(result.unwrap_err().kind, RemoteErrorKind::Transient);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_that_may_have_landed_are_not_repeated() {
        let policy = RetryPolicy::new(config());
        let pacer = Pacer::new(600);
        let count = |repeat: Repeat, failure: Failure| {
            let policy = &policy;
            let pacer = &pacer;
            async move {
                let calls = AtomicU32::new(0);
                let result: Result<(), _> = policy
                    .run(pacer, 1, repeat, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Err(failure.clone())
                    })
                    .await;
                (result.unwrap_err(), calls.load(Ordering::SeqCst))
            }
        };
        let dropped = Failure::ambiguous(RemoteError::new(RemoteErrorKind::Transient, "reset"));
        let (err, calls) = count(Repeat::NotAfterSend, dropped.clone()).await;
        assert_eq!((err.kind, calls), (RemoteErrorKind::Transient, 1));
        assert!(err.message.contains("may have been applied"));
        // The same failure on a safe call is retried.
        assert_eq!(count(Repeat::Safe, dropped).await.1, 4);
        // A 503 (Google did not apply the write) is retried even for creates.
        assert_eq!(
            count(Repeat::NotAfterSend, failing(RemoteErrorKind::Transient))
                .await
                .1,
            4
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_of_creates_are_not_repeated() {
        let policy = RetryPolicy::new(config());
        let pacer = Pacer::new(600);
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = policy
            .run(&pacer, 1, Repeat::NotAfterSend, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            })
            .await;
        assert_eq!(result.unwrap_err().kind, RemoteErrorKind::Transient);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_never_exceeds_the_window() {
        let pacer = Pacer::new(10);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..25 {
            pacer.acquire(1).await;
            times.push(start.elapsed());
        }
        // 10 at once, the next 10 a minute later, then 5 more a minute after that.
        assert!(times[..10].iter().all(|t| *t == Duration::ZERO));
        assert!(times[10..20].iter().all(|t| *t == Duration::from_secs(60)));
        assert!(times[20..].iter().all(|t| *t == Duration::from_secs(120)));
        // Any 60-second window holds at most 10.
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .filter(|u| **u < *t + Duration::from_secs(60))
                .count();
            assert!(in_window <= 10);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn batch_costs_are_paced_by_their_parts() {
        let pacer = Pacer::new(100);
        let start = Instant::now();
        pacer.acquire(60).await;
        pacer.acquire(60).await; // does not fit with the first 60
        assert_eq!(start.elapsed(), Duration::from_secs(60));
        pacer.acquire(500).await; // above the budget: waits for an empty window
        assert_eq!(start.elapsed(), Duration::from_secs(120));
    }
}
