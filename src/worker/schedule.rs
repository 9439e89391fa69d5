//! Per-user scheduling, pure: exponential backoff with jitter, the staggered phone poll
//! and full reconciliation, and what a pass's outcome does to a user's schedule.

use crate::model::UserId;
use crate::store::WorkerUserRow;
use crate::sync::affected::Reason;
use crate::sync::turns::turn_passed;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::time::Duration;

/// The backoff before the next try after `failures` consecutive failures (≥ 1):
/// `min(cap, base · 2^(failures-1))`, jittered into its upper half by `unit` ∈ [0, 1) —
/// so delays grow (each at least half its cap) but users failing together spread out.
pub fn backoff_delay(base: Duration, cap: Duration, failures: u32, unit: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let ceiling = base
        .checked_mul(1u32 << exp)
        .unwrap_or(cap)
        .min(cap)
        .max(base.min(cap));
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ceiling.mul_f64(0.5 + 0.5 * unit)
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// How a user's pass ended, as the schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassOutcome {
    /// Synced (or revoked): everything owed is done.
    Done,
    /// Went through with some items failing: done, but retried after a backoff.
    Partial,
    /// Failed or refused for this user: retried after a backoff.
    Failed,
    /// Failed while Google was unreachable for everyone: owed, no per-user backoff.
    Outage,
    /// Not started (the cycle stopped): owed.
    NotStarted,
    /// The pass had nothing to do for the user (no account, nothing to revoke).
    Nothing,
}

/// One user's schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserSchedule {
    /// Reasons for a pass that is still owed.
    pub pending: BTreeSet<Reason>,
    /// Consecutive failed passes.
    pub failures: u32,
    /// Backoff: no pass before this.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_reconcile_at: Option<DateTime<Utc>>,
}

impl UserSchedule {
    /// A user the worker has not scheduled before: their first poll and reconciliation
    /// come at their next turn (see [`UserSchedule::poll_due`]).
    pub fn first_seen(now: DateTime<Utc>, poll: Duration, reconcile: Duration) -> Self {
        Self {
            last_poll_at: (!poll.is_zero()).then_some(now),
            last_reconcile_at: (!reconcile.is_zero()).then_some(now),
            ..Self::default()
        }
    }

    /// From a stored row (pending reasons come back as [`Reason::Unfinished`]).
    pub fn from_row(row: &WorkerUserRow) -> Self {
        Self {
            pending: if row.pending.is_empty() {
                BTreeSet::new()
            } else {
                BTreeSet::from([Reason::Unfinished])
            },
            failures: row.failures,
            next_attempt_at: row.next_attempt_at,
            last_poll_at: row.last_poll_at,
            last_reconcile_at: row.last_reconcile_at,
        }
    }

    pub fn to_row(&self, user: &UserId) -> WorkerUserRow {
        WorkerUserRow {
            user: Some(user.clone()),
            pending: self.pending.iter().map(|r| r.label().to_owned()).collect(),
            failures: self.failures,
            next_attempt_at: self.next_attempt_at,
            last_poll_at: self.last_poll_at,
            last_reconcile_at: self.last_reconcile_at,
        }
    }

    /// Whether the user is waiting out a backoff at `now` (skipped, not retried).
    pub fn in_backoff(&self, now: DateTime<Utc>) -> bool {
        self.next_attempt_at.is_some_and(|t| t > now)
    }

    /// Whether the phone poll is due at `now` (`period` zero: never): a turn of the
    /// user's staggered grid ([`turn_passed`]) passed since the last poll.
    pub fn poll_due(&self, user: &UserId, period: Duration, now: DateTime<Utc>) -> bool {
        turn_passed(user, self.last_poll_at, period, now)
    }

    /// Whether the full reconciliation is due at `now` (`period` zero: never).
    pub fn reconcile_due(&self, user: &UserId, period: Duration, now: DateTime<Utc>) -> bool {
        turn_passed(user, self.last_reconcile_at, period, now)
    }

    /// Applies a pass's outcome at `now`; `served` are the reasons the pass was for,
    /// `reconciled` whether it listed everything. Returns the backoff started, if any
    /// (`jitter` ∈ [0, 1) is drawn by the caller).
    pub fn record(
        &mut self,
        outcome: PassOutcome,
        served: &BTreeSet<Reason>,
        reconciled: bool,
        now: DateTime<Utc>,
        (base, cap): (Duration, Duration),
        jitter: f64,
    ) -> Option<Duration> {
        let done = |s: &mut Self| {
            s.pending.clear();
            s.last_poll_at = Some(now);
            if reconciled {
                s.last_reconcile_at = Some(now);
            }
        };
        let back_off = |s: &mut Self| {
            s.failures = s.failures.saturating_add(1);
            let delay = backoff_delay(base, cap, s.failures, jitter);
            s.next_attempt_at = Some(now + chrono(delay));
            Some(delay)
        };
        match outcome {
            PassOutcome::Done => {
                done(self);
                self.failures = 0;
                self.next_attempt_at = None;
                None
            }
            PassOutcome::Partial => {
                done(self);
                back_off(self)
            }
            PassOutcome::Failed => {
                self.pending.extend(served.iter().copied());
                back_off(self)
            }
            PassOutcome::Outage | PassOutcome::NotStarted => {
                self.pending.extend(served.iter().copied());
                None
            }
            PassOutcome::Nothing => {
                self.pending.clear();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
    }

    const BASE: Duration = Duration::from_secs(120);
    const CAP: Duration = Duration::from_secs(3600);

    #[test]
    fn backoff_grows_within_jitter_bounds_up_to_the_cap() {
        let mut last_floor = Duration::ZERO;
        for failures in 1..=8u32 {
            let ceiling = BASE.saturating_mul(1 << (failures - 1)).min(CAP);
            let low = backoff_delay(BASE, CAP, failures, 0.0);
            let high = backoff_delay(BASE, CAP, failures, 0.999_999);
            assert_eq!(low, ceiling / 2, "{failures}");
            assert!(
                high <= ceiling && high > ceiling.mul_f64(0.99),
                "{failures}"
            );
            assert!(low >= last_floor, "never shrinks");
            last_floor = low;
        }
        assert_eq!(backoff_delay(BASE, CAP, 40, 1.0), CAP);
        assert_eq!(backoff_delay(BASE, CAP, 1, f64::NAN), BASE / 2);
        assert_eq!(backoff_delay(BASE, CAP, 0, 0.0), BASE / 2);
    }

    #[test]
    fn a_user_is_due_at_their_turn_once_per_period() {
        let poll = Duration::from_secs(600);
        let user = UserId::new("erin").unwrap();
        let mut s = UserSchedule::first_seen(t0(), poll, Duration::ZERO);
        assert!(!s.poll_due(&user, poll, t0()));
        let minutes = |s: &UserSchedule, from: DateTime<Utc>| {
            (1..=20)
                .map(|m| from + chrono::Duration::minutes(m))
                .filter(|t| s.poll_due(&user, poll, *t))
                .collect::<Vec<_>>()
        };
        let turns = minutes(&s, t0());
        let first = turns[0];
        assert!(first <= t0() + chrono::Duration::minutes(10));
        // A pass for another reason between turns does not move the next turn.
        let between = first - chrono::Duration::minutes(1);
        if between > t0() {
            s.last_poll_at = Some(between);
            assert!(s.poll_due(&user, poll, first));
        }
        s.last_poll_at = Some(first);
        let next = minutes(&s, first);
        assert_eq!(next[0], first + chrono::Duration::minutes(10));
        assert!(!s.reconcile_due(&user, Duration::ZERO, t0() + chrono::Duration::days(400)));
    }

    #[test]
    fn outcomes_move_the_schedule() {
        let user = UserId::new("erin").unwrap();
        let poll = Duration::from_secs(600);
        let mut s = UserSchedule::first_seen(t0(), poll, poll);
        let served = BTreeSet::from([Reason::PhonePoll, Reason::Reconcile]);
        // Two failures: growing backoff, reasons kept.
        let first = s
            .record(PassOutcome::Failed, &served, false, t0(), (BASE, CAP), 0.5)
            .unwrap();
        assert!(s.in_backoff(t0() + chrono(first) - chrono::Duration::seconds(1)));
        assert!(!s.in_backoff(t0() + chrono(first)));
        let second = s
            .record(PassOutcome::Failed, &served, false, t0(), (BASE, CAP), 0.5)
            .unwrap();
        assert!(second > first);
        assert_eq!(s.pending, served);
        // An outage or a stop keeps what is owed without counting a failure.
        assert_eq!(
            s.record(PassOutcome::Outage, &served, false, t0(), (BASE, CAP), 0.5),
            None
        );
        assert_eq!(s.failures, 2);
        // Success clears everything and restarts the periods.
        let later = t0() + chrono::Duration::hours(2);
        assert_eq!(
            s.record(PassOutcome::Done, &served, true, later, (BASE, CAP), 0.5),
            None
        );
        assert_eq!(s.failures, 0);
        assert!(s.pending.is_empty() && !s.in_backoff(later));
        assert!(!s.poll_due(&user, poll, later) && s.poll_due(&user, poll, later + chrono(poll)));
        assert!(!s.reconcile_due(&user, poll, later));
        // Partial: done, but the failing items are retried only after a backoff.
        assert!(s
            .record(
                PassOutcome::Partial,
                &served,
                false,
                later,
                (BASE, CAP),
                0.5
            )
            .is_some());
        assert!(s.pending.is_empty() && s.in_backoff(later));
        // A row round-trips (pending reasons come back as "unfinished").
        s.pending.insert(Reason::ScopeChanged);
        let back = UserSchedule::from_row(&s.to_row(&user));
        assert_eq!(back.pending, BTreeSet::from([Reason::Unfinished]));
        assert_eq!(back.next_attempt_at, s.next_attempt_at);
        assert_eq!(back.failures, s.failures);
    }
}
