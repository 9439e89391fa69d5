//! State-DB SQL of the sync engine: per-user containers and tokens, links with their base
//! snapshots, unlinked Google items, audit and conflicts.

use super::{now, StateDb, StoreError};
use crate::model::{CrmId, ObjectKind, UserId};
use crate::sync::merge::FieldConflict;
use crate::sync::plan::{Link, LinkOrigin, LinkState};
use crate::sync::remote::RemoteItem;
use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A user's sync bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncUser {
    pub user_id: String,
    pub google_account: String,
    pub calendar_id: Option<String>,
    pub group_resource: Option<String>,
    pub events_sync_token: Option<String>,
    pub contacts_sync_token: Option<String>,
    pub scope_fingerprint: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    /// When the user's data was last revoked from `google_account` (cleared when syncing
    /// starts again).
    pub revoked_at: Option<String>,
    /// Why (a `RevocationReason`, as stored).
    pub revoked_reason: Option<String>,
    /// Sync token of the dedicated calendar's ACL listing (the leak guard).
    pub acl_sync_token: Option<String>,
    /// The mirror cursor at which the user's last full plan was carried out completely
    /// (`None`: unknown, the next pass plans in full). See `store/planned.rs`.
    pub planned_cursor: Option<i64>,
    /// When that plan was made (RFC 3339).
    pub planned_at: Option<String>,
    /// When the leak guard last found the calendar shared with nobody but its owner
    /// (RFC 3339; dropped with `acl_sync_token`).
    pub acl_checked_at: Option<String>,
}

impl SyncUser {
    /// Whether this row may hold crmsync data in its account: not revoked since the last
    /// pass that wrote there.
    pub fn holds_data(&self) -> bool {
        self.revoked_at.is_none()
    }
}

fn sync_user_from(row: &Row<'_>) -> rusqlite::Result<SyncUser> {
    Ok(SyncUser {
        user_id: row.get(0)?,
        google_account: row.get(1)?,
        calendar_id: row.get(2)?,
        group_resource: row.get(3)?,
        events_sync_token: row.get(4)?,
        contacts_sync_token: row.get(5)?,
        scope_fingerprint: row.get(6)?,
        last_attempt_at: row.get(7)?,
        last_success_at: row.get(8)?,
        last_error: row.get(9)?,
        revoked_at: row.get(10)?,
        revoked_reason: row.get(11)?,
        acl_sync_token: row.get(12)?,
        planned_cursor: row.get(13)?,
        planned_at: row.get(14)?,
        acl_checked_at: row.get(15)?,
    })
}

const SYNC_USER_COLUMNS: &str = "user_id, google_account, calendar_id, group_resource, \
     events_sync_token, contacts_sync_token, scope_fingerprint, last_attempt_at, \
     last_success_at, last_error, revoked_at, revoked_reason, acl_sync_token, planned_cursor, \
     planned_at, acl_checked_at";

/// One audit line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub run_id: String,
    pub user_id: Option<String>,
    pub record: Option<String>,
    pub action: String,
    pub detail: serde_json::Value,
}

/// One recorded conflict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictEntry {
    pub id: i64,
    pub at: String,
    pub user_id: String,
    pub record: String,
    pub field: String,
    pub base: serde_json::Value,
    pub crm_value: serde_json::Value,
    pub google_value: serde_json::Value,
    pub resolution: String,
    pub policy: String,
}

pub(super) fn parse_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn kind_str(kind: ObjectKind) -> &'static str {
    kind.as_str()
}

pub(super) fn state_from(s: &str) -> Result<LinkState, StoreError> {
    match s {
        "pending_create" => Ok(LinkState::PendingCreate),
        "pending_link" => Ok(LinkState::PendingLink),
        "linked" => Ok(LinkState::Linked),
        "unlinked" => Ok(LinkState::Unlinked),
        other => Err(StoreError::Corrupt(format!("link state {other:?}"))),
    }
}

fn origin_from(s: &str) -> Result<LinkOrigin, StoreError> {
    match s {
        "created" => Ok(LinkOrigin::Created),
        "linked_existing" => Ok(LinkOrigin::LinkedExisting),
        "imported" => Ok(LinkOrigin::Imported),
        other => Err(StoreError::Corrupt(format!("link origin {other:?}"))),
    }
}

/// A link row (`crm_id, state, google_id, etag, generation, base, crm_version, origin`).
fn link_from_row<T: DeserializeOwned>(
    row: &Row<'_>,
    kind: ObjectKind,
) -> Result<Link<T>, StoreError> {
    let crm_id: String = row.get(0)?;
    let crm_id = CrmId::new(crm_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let state: String = row.get(1)?;
    let base: Option<String> = row.get(5)?;
    let origin: String = row.get(7)?;
    Ok(Link {
        state: state_from(&state)?,
        google_id: row.get(2)?,
        etag: row.get(3)?,
        generation: row.get(4)?,
        base: base
            .map(|b| parse_json(&format!("base of {kind}:{crm_id}"), &b))
            .transpose()?,
        crm_version: row.get(6)?,
        origin: origin_from(&origin)?,
        crm_id,
    })
}

impl StateDb {
    /// The user's sync row, if the user was ever synced.
    pub fn sync_user(&self, user: &UserId) -> Result<Option<SyncUser>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {SYNC_USER_COLUMNS} FROM sync_users WHERE user_id = ?1"),
                [user.as_str()],
                sync_user_from,
            )
            .optional()?)
    }

    /// Every user's sync row.
    pub fn sync_users(&self) -> Result<Vec<SyncUser>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {SYNC_USER_COLUMNS} FROM sync_users ORDER BY user_id"
        ))?;
        let rows = stmt.query_map([], sync_user_from)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Creates the user's sync row if missing, or points it at `account`, and returns it.
    /// Syncing into an account starts here, so a revoked flag is cleared. Moving a row to a
    /// different account is refused while the old account may still hold our data (its
    /// containers or links are on record and it was not revoked): revoke it first.
    pub fn ensure_sync_user(&self, user: &UserId, account: &str) -> Result<SyncUser, StoreError> {
        if let Some(row) = self.sync_user(user)? {
            if row.google_account == account && row.revoked_at.is_none() {
                // The usual case: nothing to write.
                return Ok(row);
            }
            let has_links: bool = self.conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM links WHERE user_id = ?1)",
                [user.as_str()],
                |r| r.get(0),
            )?;
            let in_use = row.revoked_at.is_none()
                && (row.calendar_id.is_some() || row.group_resource.is_some() || has_links);
            if row.google_account != account && in_use {
                return Err(StoreError::AccountInUse {
                    user: user.to_string(),
                    old: row.google_account,
                    new: account.to_owned(),
                });
            }
        }
        self.conn.execute(
            "INSERT INTO sync_users (user_id, google_account) VALUES (?1, ?2)
             ON CONFLICT (user_id) DO UPDATE SET
                 revoked_at = NULL, revoked_reason = NULL,
                 calendar_id = CASE WHEN google_account = ?2 THEN calendar_id END,
                 group_resource = CASE WHEN google_account = ?2 THEN group_resource END,
                 events_sync_token = CASE WHEN google_account = ?2 THEN events_sync_token END,
                 contacts_sync_token =
                     CASE WHEN google_account = ?2 THEN contacts_sync_token END,
                 acl_sync_token = CASE WHEN google_account = ?2 THEN acl_sync_token END,
                 acl_checked_at = CASE WHEN google_account = ?2 THEN acl_checked_at END,
                 planned_cursor = NULL, planned_at = NULL,
                 google_account = ?2",
            params![user.as_str(), account],
        )?;
        self.sync_user(user)?.ok_or(StoreError::RowCount {
            action: "insert",
            table: "sync_users",
            touched: 0,
        })
    }

    /// Stores the ids of the user's dedicated calendar and contact group.
    pub fn set_containers(
        &self,
        user: &UserId,
        calendar: &str,
        group: &str,
    ) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE sync_users SET
                 acl_sync_token = CASE WHEN calendar_id = ?2 THEN acl_sync_token END,
                 acl_checked_at = CASE WHEN calendar_id = ?2 THEN acl_checked_at END,
                 calendar_id = ?2, group_resource = ?3
             WHERE user_id = ?1",
            params![user.as_str(), calendar, group],
        )?;
        expect_one(n, "update", "sync_users")
    }

    /// Drops a sync token (the next listing is a full one).
    pub fn clear_sync_token(&self, user: &UserId, kind: ObjectKind) -> Result<(), StoreError> {
        self.write(|w| w.set_sync_token(user, kind, None))
    }

    /// Records the start of a pass.
    pub fn record_attempt(&self, user: &UserId) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sync_users SET last_attempt_at = ?2 WHERE user_id = ?1",
            params![user.as_str(), now()],
        )?;
        Ok(())
    }

    /// Records the end of a pass: success (error cleared) or the error.
    pub fn record_outcome(
        &self,
        user: &UserId,
        error: Option<&str>,
        scope_fingerprint: Option<&str>,
    ) -> Result<(), StoreError> {
        match error {
            None => self.conn.execute(
                "UPDATE sync_users SET last_success_at = ?2, last_error = NULL,
                     scope_fingerprint = COALESCE(?3, scope_fingerprint)
                 WHERE user_id = ?1",
                params![user.as_str(), now(), scope_fingerprint],
            )?,
            Some(e) => self.conn.execute(
                "UPDATE sync_users SET last_error = ?2 WHERE user_id = ?1",
                params![user.as_str(), e],
            )?,
        };
        Ok(())
    }

    /// The user's links of one kind, with their bases.
    pub fn links<T: DeserializeOwned>(
        &self,
        user: &UserId,
        kind: ObjectKind,
    ) -> Result<BTreeMap<CrmId, Link<T>>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT crm_id, state, google_id, etag, generation, base, crm_version, origin
             FROM links WHERE user_id = ?1 AND kind = ?2",
        )?;
        let mut rows = stmt.query(params![user.as_str(), kind_str(kind)])?;
        let mut out = BTreeMap::new();
        while let Some(row) = rows.next()? {
            let link = link_from_row(row, kind)?;
            out.insert(link.crm_id.clone(), link);
        }
        Ok(out)
    }

    /// The user's links of one kind to the records `ids` (those that have one).
    pub fn links_for<'i, T: DeserializeOwned>(
        &self,
        user: &UserId,
        kind: ObjectKind,
        ids: impl IntoIterator<Item = &'i CrmId>,
    ) -> Result<BTreeMap<CrmId, Link<T>>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT crm_id, state, google_id, etag, generation, base, crm_version, origin
             FROM links WHERE user_id = ?1 AND kind = ?2 AND crm_id = ?3",
        )?;
        let mut out = BTreeMap::new();
        for id in ids {
            let mut rows = stmt.query(params![user.as_str(), kind_str(kind), id.as_str()])?;
            if let Some(row) = rows.next()? {
                let link = link_from_row(row, kind)?;
                out.insert(link.crm_id.clone(), link);
            }
        }
        Ok(out)
    }

    /// How many of the user's links of one kind are not unlinked (what the delete breaker
    /// weighs a plan's deletions against).
    pub fn live_link_count(&self, user: &UserId, kind: ObjectKind) -> Result<usize, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT count(*) FROM links WHERE user_id = ?1 AND kind = ?2 AND state != 'unlinked'",
        )?;
        let n: i64 = stmt.query_row(params![user.as_str(), kind_str(kind)], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Counts of links per state for a user (status reports).
    pub fn link_counts(
        &self,
        user: &UserId,
    ) -> Result<BTreeMap<(String, String), i64>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT kind, state, count(*) FROM links WHERE user_id = ?1 GROUP BY kind, state",
        )?;
        let rows = stmt.query_map([user.as_str()], |r| {
            Ok(((r.get::<_, String>(0)?, r.get::<_, String>(1)?), r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The pre-link snapshot of a linked pre-existing item.
    pub fn pre_link(
        &self,
        user: &UserId,
        kind: ObjectKind,
        crm_id: &CrmId,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT pre_link FROM links WHERE user_id = ?1 AND kind = ?2 AND crm_id = ?3",
                params![user.as_str(), kind_str(kind), crm_id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        text.flatten()
            .map(|t| parse_json("pre_link", &t))
            .transpose()
    }

    /// Google items known but not linked, and which of them were already reported.
    pub fn unlinked_items<T: DeserializeOwned>(
        &self,
        user: &UserId,
        kind: ObjectKind,
    ) -> Result<(Vec<RemoteItem<T>>, BTreeSet<String>), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT google_id, item, reported FROM remote_unlinked
             WHERE user_id = ?1 AND kind = ?2 ORDER BY google_id",
        )?;
        let mut rows = stmt.query(params![user.as_str(), kind_str(kind)])?;
        let mut items = Vec::new();
        let mut reported = BTreeSet::new();
        while let Some(row) = rows.next()? {
            let google_id: String = row.get(0)?;
            let item: String = row.get(1)?;
            if row.get::<_, bool>(2)? {
                reported.insert(google_id.clone());
            }
            items.push(parse_json(&format!("unlinked item {google_id}"), &item)?);
        }
        Ok((items, reported))
    }

    /// Audit lines, newest last, optionally for one user and/or one record.
    pub fn audit_entries(
        &self,
        user: Option<&str>,
        record: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, at, run_id, user_id, record, action, detail FROM (
                 SELECT * FROM audit
                 WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR record = ?2)
                 ORDER BY id DESC LIMIT ?3
             ) ORDER BY id",
        )?;
        let mut rows = stmt.query(params![user, record, limit as i64])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let detail: String = r.get(6)?;
            out.push(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                run_id: r.get(2)?,
                user_id: r.get(3)?,
                record: r.get(4)?,
                action: r.get(5)?,
                detail: parse_json("audit detail", &detail)?,
            });
        }
        Ok(out)
    }

    /// Recorded conflicts, newest last.
    pub fn conflict_entries(&self, user: Option<&str>) -> Result<Vec<ConflictEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, at, user_id, record, field, base, crm_value, google_value, resolution,
                    policy
             FROM conflicts WHERE (?1 IS NULL OR user_id = ?1) ORDER BY id",
        )?;
        let mut rows = stmt.query(params![user])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let (b, c, g): (String, String, String) = (r.get(5)?, r.get(6)?, r.get(7)?);
            out.push(ConflictEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                user_id: r.get(2)?,
                record: r.get(3)?,
                field: r.get(4)?,
                base: parse_json("conflict base", &b)?,
                crm_value: parse_json("conflict crm value", &c)?,
                google_value: parse_json("conflict google value", &g)?,
                resolution: r.get(8)?,
                policy: r.get(9)?,
            });
        }
        Ok(out)
    }

    /// Runs `f` in one transaction: everything it writes commits together or not at all.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&SyncWriter<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let out = f(&SyncWriter { tx: &tx })?;
        tx.commit()?;
        Ok(out)
    }
}

pub(super) fn expect_one(
    n: usize,
    action: &'static str,
    table: &'static str,
) -> Result<(), StoreError> {
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::RowCount {
            action,
            table,
            touched: n,
        })
    }
}

/// Writes of the sync engine inside one transaction.
pub struct SyncWriter<'a> {
    pub(super) tx: &'a Transaction<'a>,
}

impl SyncWriter<'_> {
    /// Inserts or replaces a link. `pre_link` is kept when `None` is given.
    pub fn put_link<T: Serialize>(
        &self,
        user: &UserId,
        kind: ObjectKind,
        link: &Link<T>,
        pre_link: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let base = link.base.as_ref().map(to_json);
        let hash = link.base.as_ref().map(crate::model::canonical_hash);
        self.tx.execute(
            "INSERT INTO links (user_id, kind, crm_id, state, google_id, etag, generation, base,
                                base_hash, crm_version, origin, pre_link, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (user_id, kind, crm_id) DO UPDATE SET
                 state = ?4, google_id = ?5, etag = ?6, generation = ?7, base = ?8,
                 base_hash = ?9, crm_version = ?10, origin = ?11,
                 pre_link = COALESCE(?12, pre_link), updated_at = ?13",
            params![
                user.as_str(),
                kind_str(kind),
                link.crm_id.as_str(),
                link.state.as_str(),
                link.google_id,
                link.etag,
                link.generation,
                base,
                hash,
                link.crm_version,
                link.origin.as_str(),
                pre_link.map(to_json),
                now()
            ],
        )?;
        // A linked item is no longer an unlinked candidate.
        if let Some(g) = &link.google_id {
            self.remove_unlinked(user, kind, g)?;
        }
        Ok(())
    }

    pub fn set_link_etag(
        &self,
        user: &UserId,
        kind: ObjectKind,
        crm_id: &CrmId,
        etag: &str,
    ) -> Result<(), StoreError> {
        let n = self.tx.execute(
            "UPDATE links SET etag = ?4, updated_at = ?5
             WHERE user_id = ?1 AND kind = ?2 AND crm_id = ?3",
            params![user.as_str(), kind_str(kind), crm_id.as_str(), etag, now()],
        )?;
        expect_one(n, "update", "links")
    }

    pub fn delete_link(
        &self,
        user: &UserId,
        kind: ObjectKind,
        crm_id: &CrmId,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "DELETE FROM links WHERE user_id = ?1 AND kind = ?2 AND crm_id = ?3",
            params![user.as_str(), kind_str(kind), crm_id.as_str()],
        )?;
        Ok(())
    }

    /// Remembers a Google item no link points at. Its `reported` flag is kept while the item
    /// is unchanged, and cleared when it changed (a fixed phone item is considered again).
    pub fn upsert_unlinked<T: Serialize>(
        &self,
        user: &UserId,
        kind: ObjectKind,
        item: &RemoteItem<T>,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO remote_unlinked (user_id, kind, google_id, item) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id, kind, google_id) DO UPDATE SET item = ?4,
                 reported = CASE WHEN item = ?4 THEN reported ELSE 0 END",
            params![user.as_str(), kind_str(kind), item.google_id, to_json(item)],
        )?;
        Ok(())
    }

    pub fn remove_unlinked(
        &self,
        user: &UserId,
        kind: ObjectKind,
        google_id: &str,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "DELETE FROM remote_unlinked WHERE user_id = ?1 AND kind = ?2 AND google_id = ?3",
            params![user.as_str(), kind_str(kind), google_id],
        )?;
        Ok(())
    }

    /// After a full listing: forgets unlinked items Google no longer has.
    pub fn retain_unlinked(
        &self,
        user: &UserId,
        kind: ObjectKind,
        present: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT google_id FROM remote_unlinked WHERE user_id = ?1 AND kind = ?2",
        )?;
        let stored = stmt
            .query_map(params![user.as_str(), kind_str(kind)], |r| {
                r.get::<_, String>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for google_id in stored.iter().filter(|g| !present.contains(*g)) {
            self.remove_unlinked(user, kind, google_id)?;
        }
        Ok(())
    }

    pub fn mark_reported(
        &self,
        user: &UserId,
        kind: ObjectKind,
        google_id: &str,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE remote_unlinked SET reported = 1
             WHERE user_id = ?1 AND kind = ?2 AND google_id = ?3",
            params![user.as_str(), kind_str(kind), google_id],
        )?;
        Ok(())
    }

    /// Stores (or drops) a sync token; call it in the transaction of the links it covers.
    pub fn set_sync_token(
        &self,
        user: &UserId,
        kind: ObjectKind,
        token: Option<&str>,
    ) -> Result<(), StoreError> {
        let sql = match kind {
            ObjectKind::Event => "UPDATE sync_users SET events_sync_token = ?2 WHERE user_id = ?1",
            _ => "UPDATE sync_users SET contacts_sync_token = ?2 WHERE user_id = ?1",
        };
        let n = self.tx.execute(sql, params![user.as_str(), token])?;
        expect_one(n, "update", "sync_users")
    }

    pub fn audit(
        &self,
        run_id: &str,
        user: Option<&UserId>,
        record: Option<&str>,
        action: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO audit (at, run_id, user_id, record, action, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                now(),
                run_id,
                user.map(UserId::as_str),
                record,
                action,
                detail.to_string()
            ],
        )?;
        Ok(())
    }

    pub fn conflict(
        &self,
        run_id: &str,
        user: &UserId,
        record: &str,
        c: &FieldConflict,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO conflicts (at, run_id, user_id, record, field, base, crm_value,
                                    google_value, resolution, policy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                now(),
                run_id,
                user.as_str(),
                record,
                c.field,
                c.base.to_string(),
                c.crm.to_string(),
                c.google.to_string(),
                to_json(&c.resolution).trim_matches('"'),
                to_json(&c.policy).trim_matches('"')
            ],
        )?;
        Ok(())
    }
}
