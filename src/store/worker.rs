//! State-DB SQL of the sync worker (`crmsync run`): the feed cursor it has processed and
//! each user's schedule (pending reasons, backoff, last poll and reconciliation).

use super::{StateDb, StoreError};
use crate::crm::Cursor;
use crate::model::UserId;
use chrono::{DateTime, Utc};
use rusqlite::params;
use std::collections::BTreeMap;

const WORKER_CURSOR_KEY: &str = "worker_cursor";

/// One user's schedule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkerUserRow {
    pub user: Option<UserId>,
    /// Reasons (labels) of a pass that is still owed.
    pub pending: Vec<String>,
    pub failures: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_reconcile_at: Option<DateTime<Utc>>,
}

fn time_text(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn parse_time(column: &str, text: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| StoreError::Corrupt(format!("worker_users.{column} = {t:?}: {e}")))
    })
    .transpose()
}

impl StateDb {
    /// The point of the CRM's change feed the worker has processed (`None`: it never ran).
    pub fn worker_cursor(&self) -> Result<Option<Cursor>, StoreError> {
        self.setting(WORKER_CURSOR_KEY)?
            .map(|v| {
                v.parse()
                    .map(Cursor)
                    .map_err(|_| StoreError::Corrupt(format!("{WORKER_CURSOR_KEY} = {v:?}")))
            })
            .transpose()
    }

    /// Every user's stored schedule.
    pub fn worker_users(&self) -> Result<BTreeMap<UserId, WorkerUserRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT user_id, pending, failures, next_attempt_at, last_poll_at, last_reconcile_at
             FROM worker_users",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (user, pending, failures, next, poll, reconcile) = row?;
            let Ok(user) = UserId::new(user) else {
                continue;
            };
            let pending: Vec<String> = match pending {
                Some(p) => super::sync::parse_json("worker_users.pending", &p)?,
                None => Vec::new(),
            };
            out.insert(
                user.clone(),
                WorkerUserRow {
                    user: Some(user),
                    pending,
                    failures: u32::try_from(failures).unwrap_or(0),
                    next_attempt_at: parse_time("next_attempt_at", next)?,
                    last_poll_at: parse_time("last_poll_at", poll)?,
                    last_reconcile_at: parse_time("last_reconcile_at", reconcile)?,
                },
            );
        }
        Ok(out)
    }

    /// Stores the end of a cycle in one transaction: the processed feed cursor and the
    /// schedules of the users it touched (`forget`: users no longer known anywhere).
    pub fn save_worker_cycle(
        &self,
        cursor: Cursor,
        rows: &[WorkerUserRow],
        forget: &[UserId],
    ) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        for row in rows {
            let Some(user) = &row.user else { continue };
            let pending = (!row.pending.is_empty())
                .then(|| serde_json::to_string(&row.pending).unwrap_or_default());
            tx.execute(
                "INSERT INTO worker_users (user_id, pending, failures, next_attempt_at,
                     last_poll_at, last_reconcile_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (user_id) DO UPDATE SET pending = ?2, failures = ?3,
                     next_attempt_at = ?4, last_poll_at = ?5, last_reconcile_at = ?6",
                params![
                    user.as_str(),
                    pending,
                    i64::from(row.failures),
                    time_text(row.next_attempt_at),
                    time_text(row.last_poll_at),
                    time_text(row.last_reconcile_at),
                ],
            )?;
        }
        for user in forget {
            tx.execute(
                "DELETE FROM worker_users WHERE user_id = ?1",
                [user.as_str()],
            )?;
        }
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = ?2",
            params![WORKER_CURSOR_KEY, cursor.0.to_string()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// When each user's last successful pass ended (per-user lag).
    pub fn last_successes(&self) -> Result<BTreeMap<UserId, DateTime<Utc>>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT user_id, last_success_at FROM sync_users
             WHERE last_success_at IS NOT NULL AND revoked_at IS NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (user, at) = row?;
            let (Ok(user), Ok(at)) = (UserId::new(user), DateTime::parse_from_rfc3339(&at)) else {
                continue;
            };
            out.insert(user, at.with_timezone(&Utc));
        }
        Ok(out)
    }

    /// The ids of the users in the mirror.
    pub fn mirrored_user_ids(&self) -> Result<Vec<UserId>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM mirror_entities WHERE kind = 'user'")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            if let Ok(user) = UserId::new(row?) {
                out.push(user);
            }
        }
        Ok(out)
    }

    /// The mirror's version of one entity, if mirrored.
    pub fn mirror_version(
        &self,
        kind: crate::crm::EntityKind,
        id: &str,
    ) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                "SELECT version FROM mirror_entities WHERE kind = ?1 AND id = ?2",
                params![kind.as_str(), id],
                |r| r.get(0),
            )
            .optional()?)
    }
}
