//! State-DB SQL of the ICS feeds: one row per user with a feed, holding the SHA-256 of the
//! feed's secret (never the secret), when it was created, rotated and last fetched. Every
//! write is one statement, so each is its own short transaction.

use super::{StateDb, StoreError};
use crate::model::UserId;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use std::collections::HashMap;

/// A user's feed, as `feed list` shows it (no secret, no hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedRow {
    pub user_id: String,
    pub created_at: String,
    pub rotated_at: Option<String>,
    pub last_fetched_at: Option<String>,
}

fn feed_row(row: &Row<'_>) -> rusqlite::Result<FeedRow> {
    Ok(FeedRow {
        user_id: row.get(0)?,
        created_at: row.get(1)?,
        rotated_at: row.get(2)?,
        last_fetched_at: row.get(3)?,
    })
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl StateDb {
    /// Creates `user`'s feed with the given secret hash; `false` (and nothing written) when
    /// the user already has one.
    pub fn create_feed(
        &self,
        user: &UserId,
        secret_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "INSERT INTO ics_feeds (user_id, secret_hash, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id) DO NOTHING",
            params![user.as_str(), secret_hash, stamp(at)],
        )?;
        Ok(n == 1)
    }

    /// Replaces `user`'s secret hash (the old secret stops working with this statement);
    /// `false` when the user has no feed.
    pub fn rotate_feed(
        &self,
        user: &UserId,
        secret_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE ics_feeds SET secret_hash = ?2, rotated_at = ?3 WHERE user_id = ?1",
            params![user.as_str(), secret_hash, stamp(at)],
        )?;
        Ok(n == 1)
    }

    /// Deletes `user`'s feed, secret hash and all: the feed's URL answers 404 from now on.
    /// `false` when there was none. Offboarding and the sync pass's hook for inactive or
    /// removed users call this.
    pub fn revoke_feed(&self, user: &UserId) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM ics_feeds WHERE user_id = ?1", [user.as_str()])?;
        Ok(n == 1)
    }

    /// Every feed, by user.
    pub fn feeds(&self) -> Result<Vec<FeedRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT user_id, created_at, rotated_at, last_fetched_at FROM ics_feeds
             ORDER BY user_id",
        )?;
        let rows = stmt.query_map([], feed_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The feed whose secret hashes to `secret_hash`, with the stored hash (for the
    /// caller's constant-time check).
    pub fn feed_by_secret_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<(FeedRow, String)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT user_id, created_at, rotated_at, last_fetched_at, secret_hash
                 FROM ics_feeds WHERE secret_hash = ?1",
            )?
            .query_row([secret_hash], |r| Ok((feed_row(r)?, r.get(4)?)))
            .optional()?)
    }

    /// Records a fetch of `user`'s feed at `at`, unless one was recorded less than
    /// `min_gap` before (a feed polled often costs at most one write per `min_gap`).
    pub fn record_feed_fetch(
        &self,
        user: &UserId,
        at: DateTime<Utc>,
        min_gap: chrono::Duration,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE ics_feeds SET last_fetched_at = ?2
                 WHERE user_id = ?1 AND (last_fetched_at IS NULL OR last_fetched_at <= ?3)",
            )?
            .execute(params![user.as_str(), stamp(at), stamp(at - min_gap)])?;
        Ok(())
    }

    /// When the mirror took in the current version of each event (an event's "last
    /// revised in the calendar store" for its feed entries).
    pub fn event_mirror_times(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, mirrored_at FROM mirror_entities WHERE kind = 'event'")?;
        let mut rows = stmt.query([])?;
        let mut out = HashMap::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let at: String = row.get(1)?;
            let at = DateTime::parse_from_rfc3339(&at)
                .map_err(|e| StoreError::Corrupt(format!("mirrored_at of event {id}: {e}")))?;
            out.insert(id, at.with_timezone(&Utc));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }

    #[test]
    fn a_feed_is_created_once_rotated_and_revoked() {
        let db = StateDb::open_in_memory().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap();
        let erin = user("erin");
        assert!(db.create_feed(&erin, "h1", t0).unwrap());
        assert!(
            !db.create_feed(&erin, "h2", t0).unwrap(),
            "one feed per user"
        );
        assert_eq!(db.feed_by_secret_hash("h1").unwrap().unwrap().1, "h1");
        assert!(db.feed_by_secret_hash("h2").unwrap().is_none());

        assert!(db.rotate_feed(&erin, "h3", t0).unwrap());
        assert!(
            db.feed_by_secret_hash("h1").unwrap().is_none(),
            "old hash gone"
        );
        assert_eq!(
            db.feed_by_secret_hash("h3").unwrap().unwrap().0.user_id,
            "erin"
        );
        assert!(!db.rotate_feed(&user("frank"), "h4", t0).unwrap());

        assert!(db.revoke_feed(&erin).unwrap());
        assert!(!db.revoke_feed(&erin).unwrap());
        assert!(db.feeds().unwrap().is_empty());
    }

    #[test]
    fn fetches_are_recorded_at_most_once_per_gap() {
        let db = StateDb::open_in_memory().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap();
        let erin = user("erin");
        db.create_feed(&erin, "h1", t0).unwrap();
        let gap = chrono::Duration::minutes(1);
        let fetched = |db: &StateDb| db.feeds().unwrap()[0].last_fetched_at.clone();
        db.record_feed_fetch(&erin, t0, gap).unwrap();
        assert_eq!(fetched(&db), Some(stamp(t0)));
        db.record_feed_fetch(&erin, t0 + chrono::Duration::seconds(30), gap)
            .unwrap();
        assert_eq!(fetched(&db), Some(stamp(t0)), "within the gap: no write");
        let later = t0 + chrono::Duration::seconds(61);
        db.record_feed_fetch(&erin, later, gap).unwrap();
        assert_eq!(fetched(&db), Some(stamp(later)));
    }
}
