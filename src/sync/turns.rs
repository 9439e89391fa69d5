//! Periodic per-user work on a staggered grid: every `period`, each user's turn comes at an
//! offset of their own, so the work is spread over the period instead of due for everyone at
//! once. The worker's phone poll and reconciliation use it, and so does the engine's
//! calendar leak guard (`[sync] acl_check_minutes`): with the same period, a user's poll
//! turns and guard turns coincide, so every poll also checks the calendar's sharing.

use crate::model::UserId;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Where in a period a user's turn falls: a stable offset from their id.
pub fn stagger(user: &UserId, period: Duration) -> Duration {
    let digest = ring::digest::digest(&ring::digest::SHA256, user.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    let millis = period.as_millis().max(1) as u64;
    Duration::from_millis(u64::from_be_bytes(first) % millis)
}

/// Whether one of `user`'s turns came between `last` (when the work was last done; `None`:
/// never) and `now`. A zero `period` has no turns (never due). Work done for another
/// reason in between does not move the user's turns.
pub fn turn_passed(
    user: &UserId,
    last: Option<DateTime<Utc>>,
    period: Duration,
    now: DateTime<Utc>,
) -> bool {
    if period.is_zero() {
        return false;
    }
    let length = i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1);
    let offset = i64::try_from(stagger(user, period).as_millis()).unwrap_or(0);
    let turn = |t: DateTime<Utc>| (t.timestamp_millis() - offset).div_euclid(length);
    last.is_none_or(|last| turn(now) > turn(last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::BTreeSet;

    #[test]
    fn staggering_spreads_users_over_the_period_and_is_stable() {
        let period = Duration::from_secs(600);
        let offsets: BTreeSet<u64> = (0..200)
            .map(|i| stagger(&UserId::new(format!("u{i}")).unwrap(), period).as_secs() / 60)
            .collect();
        assert!(offsets.len() >= 9, "all ten minutes get users: {offsets:?}");
        let erin = UserId::new("erin").unwrap();
        assert_eq!(stagger(&erin, period), stagger(&erin, period));
        assert!(stagger(&erin, period) < period);
    }

    #[test]
    fn a_turn_passes_once_per_period_at_the_users_offset() {
        let period = Duration::from_secs(600);
        let erin = UserId::new("erin").unwrap();
        let offset = chrono::Duration::from_std(stagger(&erin, period)).unwrap();
        let start = Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap() + offset;
        let minutes = |m: i64| start + chrono::Duration::minutes(m);
        assert!(turn_passed(&erin, None, period, start), "never done: due");
        // Done just after a turn: not due again within the period, due from the next turn.
        let done = minutes(0) + chrono::Duration::seconds(1);
        assert!(!turn_passed(&erin, Some(done), period, minutes(9)));
        assert!(turn_passed(&erin, Some(done), period, minutes(10)));
        // Done just before a turn (e.g. for another reason): due right after it.
        let early = minutes(10) - chrono::Duration::seconds(1);
        assert!(turn_passed(&erin, Some(early), period, minutes(10)));
        assert!(!turn_passed(&erin, Some(minutes(10)), period, minutes(19)));
        assert!(
            !turn_passed(&erin, None, Duration::ZERO, start),
            "no period: never"
        );
    }
}
