//! State-DB SQL behind `sync::affected`: who holds links to which records, the scope
//! fingerprints users were last synced under, and unfinished work.

use super::{StateDb, StoreError};
use crate::model::{CrmId, ObjectKind, RecordRef, UserId};
use crate::sync::affected::PendingWork;
use rusqlite::params_from_iter;
use std::collections::{BTreeMap, BTreeSet};

/// Records per holder query (well below SQLite's parameter limit).
const HOLDER_CHUNK: usize = 400;

impl StateDb {
    /// Who holds a link (in any state) to each of `records` (records nobody holds are absent).
    pub fn link_holders(
        &self,
        records: &BTreeSet<RecordRef>,
    ) -> Result<BTreeMap<RecordRef, BTreeSet<UserId>>, StoreError> {
        let mut out: BTreeMap<RecordRef, BTreeSet<UserId>> = BTreeMap::new();
        for kind in [ObjectKind::Contact, ObjectKind::Event] {
            let ids: Vec<&str> = records
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.id.as_str())
                .collect();
            for chunk in ids.chunks(HOLDER_CHUNK) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let sql = format!(
                    "SELECT user_id, crm_id FROM links WHERE kind = ? AND crm_id IN ({marks})"
                );
                let mut stmt = self.conn.prepare(&sql)?;
                let params = std::iter::once(kind.as_str()).chain(chunk.iter().copied());
                let rows = stmt.query_map(params_from_iter(params), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                for row in rows {
                    let (user, id) = row?;
                    let (Ok(user), Ok(id)) = (UserId::new(user), CrmId::new(id)) else {
                        continue;
                    };
                    out.entry(RecordRef::new(kind, id))
                        .or_default()
                        .insert(user);
                }
            }
        }
        Ok(out)
    }

    /// The fingerprint of the scope each synced user was last synced under (`None`: never
    /// recorded). Revoked users are left out: they get no ordinary pass.
    pub fn stored_scope_fingerprints(
        &self,
    ) -> Result<BTreeMap<UserId, Option<String>>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT user_id, scope_fingerprint FROM sync_users WHERE revoked_at IS NULL",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (user, fingerprint) = row?;
            if let Ok(user) = UserId::new(user) {
                out.insert(user, fingerprint);
            }
        }
        Ok(out)
    }

    /// Unfinished work: pending link rows, queued revocations, users whose last pass failed
    /// or left items failing.
    pub fn pending_work(&self) -> Result<PendingWork, StoreError> {
        let users = |sql: &str| -> Result<BTreeSet<UserId>, StoreError> {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = BTreeSet::new();
            for row in rows {
                if let Ok(user) = UserId::new(row?) {
                    out.insert(user);
                }
            }
            Ok(out)
        };
        Ok(PendingWork {
            pending_links: users(
                "SELECT DISTINCT user_id FROM links
                 WHERE state IN ('pending_create', 'pending_link')",
            )?,
            revocations: users("SELECT DISTINCT user_id FROM revocations WHERE state = 'queued'")?,
            failing: users(
                "SELECT user_id FROM sync_users
                 WHERE last_error IS NOT NULL AND revoked_at IS NULL",
            )?,
        })
    }
}
