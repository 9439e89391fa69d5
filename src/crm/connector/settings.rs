//! What every connector's configuration section shares: the same keys under the same names,
//! checked the same way, turned into the same HTTP policy and pull policy.
//!
//! `[crm.insightly]` and `[crm.amocrm]` each have `requests_per_second`, `max_attempts`,
//! `request_timeout_secs`, `page_size`, `poll_interval_secs` and `full_reconcile_minutes`.
//! A section hands them over as [`CommonSettings`] together with its CRM's [`ApiLimits`];
//! [`OpenOptions`] are the hooks tests use to open any connector on virtual time.

use super::http::{HttpConfig, QuotaTest};
use super::pacing::{Clock, PacingConfig, RetryPolicy, SystemClock};
use super::source::PullPolicy;
use std::sync::Arc;
use std::time::Duration;

/// What a CRM's API allows.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// The CRM's name in messages.
    pub crm: &'static str,
    /// Above this rate the CRM answers 429 (or worse).
    pub max_requests_per_second: f64,
    /// The largest page the API serves.
    pub max_page_size: u32,
}

/// The keys every connector section has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommonSettings {
    /// Requests per second, across all of the connector's keys.
    pub requests_per_second: f64,
    /// Attempts per request (429, 5xx, timeouts) before the run reports the failure.
    pub max_attempts: u32,
    /// Whole-request timeout of one attempt.
    pub request_timeout_secs: u64,
    /// Records per page.
    pub page_size: u32,
    /// Within one process the CRM is read at most this often.
    pub poll_interval_secs: u64,
    /// A full reconciliation at least this often; 0 makes every read full.
    pub full_reconcile_minutes: u64,
}

/// Test hooks for opening a connector: the clock and the retry policy's jitter seed and
/// steps. Production uses real time, OS entropy and [`RetryPolicy`]'s default steps.
#[derive(Clone)]
pub struct OpenOptions {
    pub clock: Arc<dyn Clock>,
    pub retry_seed: Option<u64>,
    /// The retry policy's first backoff step and its cap.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        Self {
            clock: Arc::new(SystemClock),
            retry_seed: None,
            base_delay: retry.base_delay,
            max_delay: retry.max_delay,
        }
    }
}

impl CommonSettings {
    /// Checks the values against the CRM's limits: `Err((key, message))` names the key
    /// within the section.
    pub fn check(&self, limits: &ApiLimits) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
        let ApiLimits {
            crm,
            max_requests_per_second: max_rate,
            max_page_size,
        } = *limits;
        if !(self.requests_per_second > 0.0 && self.requests_per_second <= max_rate) {
            return fail(
                "requests_per_second",
                format!(
                    "{} is not in (0, {max_rate}] ({crm} answers 429 above about {max_rate} \
                     requests per second)",
                    self.requests_per_second
                ),
            );
        }
        if !(1..=20).contains(&self.max_attempts) {
            return fail(
                "max_attempts",
                format!("{} is not in 1..=20", self.max_attempts),
            );
        }
        if !(1..=600).contains(&self.request_timeout_secs) {
            return fail(
                "request_timeout_secs",
                format!("{} is not in 1..=600", self.request_timeout_secs),
            );
        }
        if !(1..=max_page_size).contains(&self.page_size) {
            return fail(
                "page_size",
                format!(
                    "{} is not in 1..={max_page_size} ({crm} serves at most {max_page_size} \
                     records per page)",
                    self.page_size
                ),
            );
        }
        Ok(())
    }

    /// The HTTP policy of the connector's client.
    pub fn http_config(
        &self,
        limits: &ApiLimits,
        daily_budget: Option<u64>,
        quota_test: QuotaTest,
        options: &OpenOptions,
    ) -> HttpConfig {
        HttpConfig {
            crm: limits.crm.to_owned(),
            pacing: PacingConfig {
                requests_per_second: self.requests_per_second,
                daily_budget,
            },
            retry: RetryPolicy {
                max_attempts: self.max_attempts,
                base_delay: options.base_delay,
                max_delay: options.max_delay,
                seed: options.retry_seed,
                ..RetryPolicy::default()
            },
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            connect_timeout: Duration::from_secs(self.request_timeout_secs.min(10)),
            quota_test,
            clock: Arc::clone(&options.clock),
        }
    }

    /// When the CRM is read.
    pub fn pull_policy(&self, clock: Arc<dyn Clock>) -> PullPolicy {
        PullPolicy {
            min_interval: Duration::from_secs(self.poll_interval_secs),
            full_every: Duration::from_secs(self.full_reconcile_minutes.saturating_mul(60)),
            clock,
        }
    }
}

/// For a CRM whose API has no daily quota: a 429 is always a burst limit, retried.
pub fn no_daily_quota(_: &super::http::HttpResponse) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ApiLimits = ApiLimits {
        crm: "Example",
        max_requests_per_second: 7.0,
        max_page_size: 250,
    };

    fn settings() -> CommonSettings {
        CommonSettings {
            requests_per_second: 7.0,
            max_attempts: 5,
            request_timeout_secs: 30,
            page_size: 250,
            poll_interval_secs: 60,
            full_reconcile_minutes: 0,
        }
    }

    #[test]
    fn each_bad_value_names_its_key_and_the_limit() {
        assert!(settings().check(&LIMITS).is_ok());
        let key = |s: CommonSettings| s.check(&LIMITS).unwrap_err();
        let (k, m) = key(CommonSettings {
            requests_per_second: 7.5,
            ..settings()
        });
        assert_eq!(k, "requests_per_second");
        assert!(m.contains("(0, 7]") && m.contains("Example"), "{m}");
        let (k, m) = key(CommonSettings {
            page_size: 251,
            ..settings()
        });
        assert_eq!(k, "page_size");
        assert!(m.contains("1..=250"), "{m}");
        for (bad, name) in [
            (
                CommonSettings {
                    requests_per_second: 0.0,
                    ..settings()
                },
                "requests_per_second",
            ),
            (
                CommonSettings {
                    max_attempts: 0,
                    ..settings()
                },
                "max_attempts",
            ),
            (
                CommonSettings {
                    max_attempts: 21,
                    ..settings()
                },
                "max_attempts",
            ),
            (
                CommonSettings {
                    request_timeout_secs: 0,
                    ..settings()
                },
                "request_timeout_secs",
            ),
            (
                CommonSettings {
                    page_size: 0,
                    ..settings()
                },
                "page_size",
            ),
        ] {
            assert_eq!(key(bad).0, name);
        }
    }

    #[test]
    fn the_policies_follow_the_settings_and_the_options() {
        let options = OpenOptions {
            retry_seed: Some(3),
            base_delay: Duration::from_millis(10),
            ..OpenOptions::default()
        };
        let http = settings().http_config(&LIMITS, Some(100), no_daily_quota, &options);
        assert_eq!(http.crm, "Example");
        assert_eq!(http.pacing.daily_budget, Some(100));
        assert_eq!(http.retry.max_attempts, 5);
        assert_eq!(http.retry.seed, Some(3));
        assert_eq!(http.retry.base_delay, Duration::from_millis(10));
        assert_eq!(http.connect_timeout, Duration::from_secs(10));
        let pull = CommonSettings {
            full_reconcile_minutes: 90,
            ..settings()
        }
        .pull_policy(options.clock.clone());
        assert_eq!(pull.min_interval, Duration::from_secs(60));
        assert_eq!(pull.full_every, Duration::from_secs(90 * 60));
    }
}
