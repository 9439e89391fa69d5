//! State-DB SQL of offboarding: the revocation outbox, the revoked flag of sync users, the
//! calendar ACL's sync token, and lookups the audit undo needs.

use super::sync::{expect_one, parse_json};
use super::{now, StateDb, StoreError};
use crate::model::UserId;
use crate::revoke::{Revocation, RevocationReason, RevocationState};
use rusqlite::{params, OptionalExtension, Row};

const REVOCATION_COLUMNS: &str = "id, user_id, google_account, reason, state, paused_reason, \
     queued_at, started_at, attempts, last_error, inventory, receipt, finished_at";

/// A row as stored; reason, state and JSON columns are checked by [`StateDb::revocations_where`].
struct RawRevocation {
    id: i64,
    user_id: String,
    account: String,
    reason: String,
    state: String,
    paused_reason: Option<String>,
    queued_at: String,
    started_at: Option<String>,
    attempts: i64,
    last_error: Option<String>,
    inventory: Option<String>,
    receipt: Option<String>,
    finished_at: Option<String>,
}

fn raw_revocation(row: &Row<'_>) -> rusqlite::Result<RawRevocation> {
    Ok(RawRevocation {
        id: row.get(0)?,
        user_id: row.get(1)?,
        account: row.get(2)?,
        reason: row.get(3)?,
        state: row.get(4)?,
        paused_reason: row.get(5)?,
        queued_at: row.get(6)?,
        started_at: row.get(7)?,
        attempts: row.get(8)?,
        last_error: row.get(9)?,
        inventory: row.get(10)?,
        receipt: row.get(11)?,
        finished_at: row.get(12)?,
    })
}

fn typed(raw: RawRevocation) -> Result<Revocation, StoreError> {
    Ok(Revocation {
        id: raw.id,
        user_id: raw.user_id,
        account: raw.account,
        reason: raw.reason.parse().map_err(StoreError::Corrupt)?,
        state: raw.state.parse().map_err(StoreError::Corrupt)?,
        paused_reason: raw.paused_reason,
        queued_at: raw.queued_at,
        started_at: raw.started_at,
        attempts: raw.attempts,
        last_error: raw.last_error,
        inventory: raw
            .inventory
            .map(|t| parse_json("revocation inventory", &t))
            .transpose()?,
        receipt: raw
            .receipt
            .map(|t| parse_json("revocation receipt", &t))
            .transpose()?,
        finished_at: raw.finished_at,
    })
}

impl StateDb {
    fn revocations_where(
        &self,
        condition: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Revocation>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {REVOCATION_COLUMNS} FROM revocations WHERE {condition} ORDER BY id"
        ))?;
        let rows = stmt.query_map(args, raw_revocation)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(typed(row?)?);
        }
        Ok(out)
    }

    /// Queues a revocation of `user`'s data in `account` (paused, with the reason, when the
    /// mass-offboarding guard holds it). Idempotent: an open one for the same (user, account)
    /// is kept as it is. Returns the new row's id, if one was added.
    pub fn queue_revocation(
        &self,
        user: &str,
        account: &str,
        reason: RevocationReason,
        paused: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let state = if paused.is_some() {
            RevocationState::Paused
        } else {
            RevocationState::Queued
        };
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO revocations
                 (user_id, google_account, reason, state, paused_reason, queued_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                user,
                account,
                reason.as_str(),
                state.as_str(),
                paused,
                now()
            ],
        )?;
        Ok((n == 1).then(|| self.conn.last_insert_rowid()))
    }

    /// Open revocations (queued or paused), oldest first.
    pub fn open_revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.revocations_where("state IN ('queued', 'paused')", &[])
    }

    /// Every revocation of one user, oldest first.
    pub fn revocations_of(&self, user: &str) -> Result<Vec<Revocation>, StoreError> {
        self.revocations_where("user_id = ?1", &[&user])
    }

    pub fn revocation(&self, id: i64) -> Result<Option<Revocation>, StoreError> {
        Ok(self
            .revocations_where("id = ?1", &[&id])?
            .into_iter()
            .next())
    }

    /// Releases paused revocations (`--force`).
    pub fn unpause_revocation(&self, id: i64) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE revocations SET state = 'queued', paused_reason = NULL
             WHERE id = ?1 AND state = 'paused'",
            [id],
        )?;
        expect_one(n, "unpause", "revocations")
    }

    /// Drops a paused revocation whose cause went away.
    pub fn cancel_revocation(&self, id: i64) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE revocations SET state = 'cancelled', finished_at = ?2
             WHERE id = ?1 AND state = 'paused'",
            params![id, now()],
        )?;
        expect_one(n, "cancel", "revocations")
    }

    /// Records an attempt; the first one also stores what the account held then.
    pub fn start_revocation(
        &self,
        id: i64,
        inventory: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE revocations SET attempts = attempts + 1,
                 started_at = COALESCE(started_at, ?2),
                 inventory = COALESCE(inventory, ?3)
             WHERE id = ?1 AND state = 'queued'",
            params![id, now(), inventory.to_string()],
        )?;
        expect_one(n, "start", "revocations")
    }

    /// Records why an attempt did not finish (the next pass tries again).
    pub fn fail_revocation(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE revocations SET last_error = ?2 WHERE id = ?1",
            params![id, error],
        )?;
        Ok(())
    }

    /// Closes a drained, verified revocation in one transaction: the outbox row keeps the
    /// receipt, the audit gets it too (action `revoked`), the user's bookkeeping for that
    /// account is cleared (links, unlinked items, containers, tokens) and the user is flagged
    /// revoked ([`StateDb::is_revoked`]).
    ///
    /// Extension point: any other per-user credential crmsync keeps (ICS feed secrets, per-user
    /// OAuth refresh tokens) is dropped here, in this same transaction, so it dies with the
    /// receipt.
    pub fn finish_revocation(
        &self,
        run_id: &str,
        revocation: &Revocation,
        receipt: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let user = UserId::new(revocation.user_id.as_str())
            .map_err(|e| StoreError::Corrupt(format!("revocation user: {e}")))?;
        self.write(|w| {
            let tx = w.tx;
            let n = tx.execute(
                "UPDATE revocations SET state = 'done', receipt = ?2, finished_at = ?3,
                     last_error = NULL
                 WHERE id = ?1 AND state = 'queued'",
                params![revocation.id, receipt.to_string(), now()],
            )?;
            expect_one(n, "finish", "revocations")?;
            tx.execute(
                "DELETE FROM links WHERE user_id = ?1",
                [revocation.user_id.as_str()],
            )?;
            tx.execute(
                "DELETE FROM remote_unlinked WHERE user_id = ?1",
                [revocation.user_id.as_str()],
            )?;
            tx.execute(
                "UPDATE sync_users SET revoked_at = ?3, revoked_reason = ?4, calendar_id = NULL,
                     group_resource = NULL, events_sync_token = NULL,
                     contacts_sync_token = NULL, acl_sync_token = NULL, acl_checked_at = NULL,
                     last_error = NULL
                 WHERE user_id = ?1 AND google_account = ?2",
                params![
                    revocation.user_id,
                    revocation.account,
                    now(),
                    revocation.reason.as_str()
                ],
            )?;
            // Someone who leaves loses their ICS feed in the same transaction.
            let feed_revoked = revocation.reason.offboards()
                && tx.execute(
                    "DELETE FROM ics_feeds WHERE user_id = ?1",
                    [revocation.user_id.as_str()],
                )? > 0;
            w.audit(
                run_id,
                Some(&user),
                None,
                "revoked",
                &serde_json::json!({"revocation": revocation.id, "receipt": receipt,
                    "feed_revoked": feed_revoked}),
            )
        })
    }

    /// Whether the user's data was revoked (and the user not synced again since): what a
    /// feature holding its own per-user access (e.g. ICS feeds) checks before serving.
    pub fn is_revoked(&self, user: &UserId) -> Result<bool, StoreError> {
        Ok(self
            .sync_user(user)?
            .is_some_and(|r| r.revoked_at.is_some()))
    }

    /// Records a leak-guard check: the ACL listing's sync token and when the calendar was
    /// found clean (`checked_at`), or — with `None` — drops both, so that the next pass
    /// lists the ACL in full.
    pub fn set_acl_checked(
        &self,
        user: &UserId,
        checked: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let (token, at) = checked.unzip();
        let n = self.conn.execute(
            "UPDATE sync_users SET acl_sync_token = ?2, acl_checked_at = ?3 WHERE user_id = ?1",
            params![user.as_str(), token, at],
        )?;
        expect_one(n, "update", "sync_users")
    }

    /// One audit line by id.
    pub fn audit_entry(&self, id: i64) -> Result<Option<super::AuditEntry>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT id, at, run_id, user_id, record, action, detail FROM audit WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(id, at, run_id, user_id, record, action, detail)| {
            Ok(super::AuditEntry {
                id,
                at,
                run_id,
                user_id,
                record,
                action,
                detail: parse_json("audit detail", &detail)?,
            })
        })
        .transpose()
    }

    /// The audit line that undid audit line `id`, if any.
    pub fn audit_undone_by(&self, id: i64) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM audit WHERE action = 'undone'
                     AND json_extract(detail, '$.undoes') = ?1 ORDER BY id LIMIT 1",
                [id],
                |r| r.get(0),
            )
            .optional()?)
    }
}
