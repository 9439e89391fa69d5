//! Sliding-window rate limits on the emulator clock (so tests advance the clock instead of
//! sleeping). Calendar: per user and per project; People: writes per user and, optionally,
//! reads per user. Limits come from [`QuotaConfig`](super::QuotaConfig).

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Default)]
pub(crate) struct QuotaState {
    windows: HashMap<(String, String), VecDeque<DateTime<Utc>>>,
}

/// One limit to check: `limit` calls per `window` for (`bucket`, `key`).
pub(crate) struct Limit<'a> {
    pub bucket: &'static str,
    pub key: &'a str,
    pub limit: u32,
    pub window: Duration,
}

/// Why a call was refused: the first full limit (in the order given) and the seconds after
/// which every full window frees a slot (for `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub bucket: &'static str,
    pub retry_after_secs: u64,
}

impl QuotaState {
    /// Charge one call against every limit, or none of them.
    pub fn take(&mut self, limits: &[Limit<'_>], now: DateTime<Utc>) -> Result<(), Refused> {
        let mut retry_after: Option<u64> = None;
        let mut first_full: Option<&'static str> = None;
        for limit in limits {
            let window = self
                .windows
                .entry((limit.bucket.to_string(), limit.key.to_string()))
                .or_default();
            while window.front().is_some_and(|t| *t + limit.window <= now) {
                window.pop_front();
            }
            if window.len() >= limit.limit as usize {
                let oldest = window.front().copied().unwrap_or(now);
                let wait = (oldest + limit.window - now).num_milliseconds().max(0);
                let secs = u64::try_from((wait + 999) / 1000).unwrap_or(1).max(1);
                retry_after = Some(retry_after.map_or(secs, |r| r.max(secs)));
                first_full = first_full.or(Some(limit.bucket));
            }
        }
        if let (Some(secs), Some(bucket)) = (retry_after, first_full) {
            return Err(Refused {
                bucket,
                retry_after_secs: secs,
            });
        }
        for limit in limits {
            self.windows
                .entry((limit.bucket.to_string(), limit.key.to_string()))
                .or_default()
                .push_back(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn window_slides() {
        let mut q = QuotaState::default();
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let limit = |key| Limit {
            bucket: "b",
            key,
            limit: 2,
            window: Duration::seconds(60),
        };
        assert!(q.take(&[limit("u")], t0).is_ok());
        assert!(q.take(&[limit("u")], t0 + Duration::seconds(10)).is_ok());
        assert_eq!(
            q.take(&[limit("u")], t0 + Duration::seconds(20)),
            Err(Refused {
                bucket: "b",
                retry_after_secs: 40
            })
        );
        assert!(q
            .take(&[limit("other")], t0 + Duration::seconds(20))
            .is_ok());
        assert!(q.take(&[limit("u")], t0 + Duration::seconds(60)).is_ok());
    }

    #[test]
    fn the_first_full_limit_names_the_refusal() {
        let mut q = QuotaState::default();
        let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let user = |key, limit| Limit {
            bucket: "user",
            key,
            limit,
            window: Duration::seconds(60),
        };
        let project = |limit| Limit {
            bucket: "project",
            key: "*",
            limit,
            window: Duration::seconds(60),
        };
        assert!(q.take(&[user("a", 5), project(2)], t0).is_ok());
        assert!(q.take(&[user("b", 5), project(2)], t0).is_ok());
        // a's own window has room; the project's does not.
        assert_eq!(
            q.take(&[user("a", 5), project(2)], t0)
                .map_err(|r| r.bucket),
            Err("project")
        );
        assert_eq!(
            q.take(&[user("a", 1), project(2)], t0)
                .map_err(|r| r.bucket),
            Err("user")
        );
    }
}
