//! State-DB SQL of incremental planning (`sync_users.planned_cursor` / `planned_at`, migration
//! state/0007): recording a plan carried out completely, moving the users a mirror update does
//! not affect forward with it, and the small lookups a pass makes to tell a quiet listing
//! (nothing but the echoes of our own writes) without loading the user's links.

use super::sync::state_from;
use super::{StateDb, StoreError};
use crate::crm::Cursor;
use crate::model::{CrmId, ObjectKind, UserId};
use crate::sync::plan::LinkState;
use rusqlite::{params, OptionalExtension};
use std::collections::{BTreeMap, BTreeSet};

impl StateDb {
    /// Records that `user`'s plan at mirror `cursor` was carried out completely, planned at
    /// `at` (RFC 3339); `None` forgets it, so the next pass plans the user in full.
    pub fn set_planned(
        &self,
        user: &UserId,
        planned: Option<(Cursor, &str)>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sync_users SET planned_cursor = ?2, planned_at = ?3 WHERE user_id = ?1",
            params![
                user.as_str(),
                planned.map(|(c, _)| c.0),
                planned.map(|(_, at)| at)
            ],
        )?;
        Ok(())
    }

    /// The users whose last complete plan was at `from` and who are not in `affected` (the
    /// users the mirror update from `from` to `to` may change anything for) are planned at
    /// `to` as well: what they should have is what it was. Returns how many moved.
    pub fn advance_planned(
        &self,
        from: Cursor,
        to: Cursor,
        affected: &BTreeSet<UserId>,
    ) -> Result<usize, StoreError> {
        if from == to {
            return Ok(0);
        }
        let tx = self.conn.unchecked_transaction()?;
        let users: Vec<String> = {
            let mut stmt =
                tx.prepare("SELECT user_id FROM sync_users WHERE planned_cursor = ?1")?;
            let rows = stmt.query_map([from.0], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let skip: BTreeSet<&str> = affected.iter().map(UserId::as_str).collect();
        let mut moved = 0;
        {
            let mut stmt = tx.prepare(
                "UPDATE sync_users SET planned_cursor = ?2
                 WHERE user_id = ?1 AND planned_cursor = ?3",
            )?;
            for user in users {
                if skip.contains(user.as_str()) {
                    continue;
                }
                moved += stmt.execute(params![user, to.0, from.0])?;
            }
        }
        tx.commit()?;
        Ok(moved)
    }

    /// For each of `google_ids` that one of `user`'s links of `kind` holds: the link's state
    /// and the etag it was last synced at (ids no link holds are absent).
    pub fn link_etags<'i>(
        &self,
        user: &UserId,
        kind: ObjectKind,
        google_ids: impl IntoIterator<Item = &'i str>,
    ) -> Result<BTreeMap<String, (LinkState, Option<String>)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, etag FROM links WHERE user_id = ?1 AND kind = ?2 AND google_id = ?3",
        )?;
        let mut out = BTreeMap::new();
        for id in google_ids {
            let row = stmt
                .query_row(params![user.as_str(), kind.as_str(), id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .optional()?;
            if let Some((state, etag)) = row {
                out.insert(id.to_owned(), (state_from(&state)?, etag));
            }
        }
        Ok(out)
    }

    /// The records `user` has a link row for, in any state (in no particular order).
    pub fn linked_crm_ids(
        &self,
        user: &UserId,
        kind: ObjectKind,
    ) -> Result<Vec<CrmId>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT crm_id FROM links WHERE user_id = ?1 AND kind = ?2")?;
        let rows = stmt.query_map(params![user.as_str(), kind.as_str()], |r| {
            r.get::<_, String>(0)
        })?;
        let mut ids = Vec::new();
        for id in rows {
            let id = id?;
            let parsed = CrmId::new(id.as_str());
            ids.push(parsed.map_err(|e| StoreError::Corrupt(format!("link crm_id {id:?}: {e}")))?);
        }
        Ok(ids)
    }

    /// The Google ids `user`'s links of `kind` hold (without reading their bases).
    pub fn linked_google_ids(
        &self,
        user: &UserId,
        kind: ObjectKind,
    ) -> Result<BTreeSet<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT google_id FROM links
             WHERE user_id = ?1 AND kind = ?2 AND google_id IS NOT NULL",
        )?;
        let rows = stmt.query_map(params![user.as_str(), kind.as_str()], |r| {
            r.get::<_, String>(0)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether `google_id` is in `user`'s index of unlinked Google items of `kind`.
    pub fn is_indexed_unlinked(
        &self,
        user: &UserId,
        kind: ObjectKind,
        google_id: &str,
    ) -> Result<bool, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM remote_unlinked
                 WHERE user_id = ?1 AND kind = ?2 AND google_id = ?3)",
        )?;
        Ok(
            stmt.query_row(params![user.as_str(), kind.as_str(), google_id], |r| {
                r.get(0)
            })?,
        )
    }

    /// Whether `user` has links (of `kind`, or of any kind) whose outcome is not known yet
    /// (pending create or link).
    pub fn has_pending_links(
        &self,
        user: &UserId,
        kind: Option<ObjectKind>,
    ) -> Result<bool, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM links WHERE user_id = ?1
                 AND (?2 IS NULL OR kind = ?2)
                 AND state IN ('pending_create', 'pending_link'))",
        )?;
        Ok(
            stmt.query_row(params![user.as_str(), kind.map(ObjectKind::as_str)], |r| {
                r.get(0)
            })?,
        )
    }
}
