//! The state DB: the only module that holds SQL for crmsync's own state.
//!
//! It keeps the mirror of the CRM (every entity of the CRM's change feed as last seen, and the
//! feed cursor), and — as later migrations add them — links, base snapshots, sync tokens,
//! scopes, the audit log and conflicts. Schema changes are append-only numbered migrations in
//! `migrations/state/`, embedded in the binary and applied on open.

use crate::crm::{Change, ChangeBatch, Cursor, Entity, EntityKind, OrgModel, RowProblem};
use crate::db::{self, DbError, Migration};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

mod affected;
mod feeds;
pub mod lock;
mod planned;
mod scopes;
mod worker;

/// The state DB's schema, oldest first. Append only: never edit a landed migration.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "state/0001_mirror.sql",
        sql: include_str!("../../migrations/state/0001_mirror.sql"),
    },
    Migration {
        name: "state/0002_scopes.sql",
        sql: include_str!("../../migrations/state/0002_scopes.sql"),
    },
    Migration {
        name: "state/0003_sync.sql",
        sql: include_str!("../../migrations/state/0003_sync.sql"),
    },
    Migration {
        name: "state/0004_revoke.sql",
        sql: include_str!("../../migrations/state/0004_revoke.sql"),
    },
    Migration {
        name: "state/0005_feeds.sql",
        sql: include_str!("../../migrations/state/0005_feeds.sql"),
    },
    Migration {
        name: "state/0006_worker.sql",
        sql: include_str!("../../migrations/state/0006_worker.sql"),
    },
    Migration {
        name: "state/0007_planned.sql",
        sql: include_str!("../../migrations/state/0007_planned.sql"),
    },
    Migration {
        name: "state/0008_pending_links.sql",
        sql: include_str!("../../migrations/state/0008_pending_links.sql"),
    },
    Migration {
        name: "state/0009_acl_checked.sql",
        sql: include_str!("../../migrations/state/0009_acl_checked.sql"),
    },
];

/// Errors of the state DB. Any of them stops a run: state we cannot write is state we cannot
/// trust.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no state DB at {path}: create it with `crmsync init` (or add --init to this command); \
         if it should exist, check [state] path in the configuration"
    )]
    Missing { path: String },
    #[error(
        "{path} is not a crmsync state DB (empty or another program's file); \
         move it away and run `crmsync init`"
    )]
    NotInitialised { path: String },
    #[error(transparent)]
    Open(DbError),
    /// SQLite busy/locked: another connection held a write transaction too long.
    #[error("the state DB is busy")]
    Busy(#[source] crate::db::Busy),
    #[error("state DB: {0}")]
    Sqlite(rusqlite::Error),
    #[error("state DB: expected to {action} one row of {table}, touched {touched}")]
    RowCount {
        action: &'static str,
        table: &'static str,
        touched: usize,
    },
    #[error("state DB holds an unreadable value: {0}")]
    Corrupt(String),
    #[error(
        "user {user} is synced into {old}; it must be revoked there before syncing into {new}"
    )]
    AccountInUse {
        user: String,
        old: String,
        new: String,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match crate::db::Busy::from_sqlite(&error) {
            Some(busy) => StoreError::Busy(busy),
            None => StoreError::Sqlite(error),
        }
    }
}

impl From<DbError> for StoreError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Missing { path } => StoreError::Missing { path },
            DbError::NotInitialised { path } => StoreError::NotInitialised { path },
            DbError::Busy { source, .. } => StoreError::Busy(source),
            other => StoreError::Open(other),
        }
    }
}

impl StoreError {
    /// Whether this is SQLite's busy/locked condition (another writer), not a fault.
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Busy(_))
    }
}

/// What applying a batch of CRM changes to the mirror changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorUpdate {
    /// Entity kinds with at least one change.
    pub kinds: BTreeSet<EntityKind>,
    pub applied: usize,
    pub skipped: usize,
}

impl MirrorUpdate {
    /// Whether who-may-read-what may have changed (any security-model entity changed).
    pub fn security_model_changed(&self) -> bool {
        self.kinds.iter().any(|k| k.is_security_model())
    }
}

/// An open state DB.
pub struct StateDb {
    conn: Connection,
}

const CRM_CURSOR_KEY: &str = "crm_cursor";
const CRM_INSTANCE_KEY: &str = "crm_instance_id";

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl StateDb {
    /// Creates the state DB at `path` (mode 0600, every migration applied), or opens and
    /// migrates the one already there. Only `crmsync init` (and `--init`), the demo and test
    /// harnesses that own a fresh folder create state; everything else uses
    /// [`StateDb::open_existing`].
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: db::open(path, MIGRATIONS)?,
        })
    }

    /// Opens the existing state DB at `path` (migrating it if it is older than the binary).
    /// A missing file is [`StoreError::Missing`], never a new empty state.
    pub fn open_existing(path: &Path) -> Result<Self, StoreError> {
        Self::open_existing_with(path, db::DEFAULT_BUSY_TIMEOUT)
    }

    /// [`StateDb::open_existing`] with a chosen SQLite busy timeout.
    pub fn open_existing_with(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        let options = db::OpenOptions {
            mode: db::OpenMode::Existing,
            busy_timeout,
        };
        Ok(Self {
            conn: db::open_with(path, MIGRATIONS, &options)?,
        })
    }

    /// A private in-memory state DB (tests, dry runs).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::create(Path::new(":memory:"))
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(db::schema_version(&self.conn)?)
    }

    /// A small setting, if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = ?2",
            params![key, value],
        )?;
        Ok(())
    }

    /// Where the mirror stands in the CRM's change feed.
    pub fn crm_cursor(&self) -> Result<Cursor, StoreError> {
        match self.setting(CRM_CURSOR_KEY)? {
            None => Ok(Cursor(0)),
            Some(v) => v
                .parse()
                .map(Cursor)
                .map_err(|_| StoreError::Corrupt(format!("{CRM_CURSOR_KEY} = {v:?}"))),
        }
    }

    /// Applies one batch of the change feed and advances the cursor, in one transaction.
    /// Rows the CRM could not read are recorded as problems (the mirror keeps the last good
    /// version of such an entity); a later good version clears the problem.
    pub fn apply_crm_changes(&self, batch: &ChangeBatch) -> Result<MirrorUpdate, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let mut update = MirrorUpdate::default();
        let stamp = now();
        for change in &batch.changes {
            update.kinds.insert(change.kind);
            update.applied += 1;
            match &change.entity {
                Some(entity) => {
                    tx.execute(
                        "INSERT INTO mirror_entities (kind, id, version, body, mirrored_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (kind, id) DO UPDATE SET version = ?3, body = ?4,
                             mirrored_at = ?5",
                        params![
                            change.kind.as_str(),
                            change.id,
                            change.version,
                            entity.to_json(),
                            stamp
                        ],
                    )?;
                }
                None => {
                    tx.execute(
                        "DELETE FROM mirror_entities WHERE kind = ?1 AND id = ?2",
                        params![change.kind.as_str(), change.id],
                    )?;
                }
            }
            tx.execute(
                "DELETE FROM mirror_problems WHERE kind = ?1 AND id = ?2",
                params![change.kind.as_str(), change.id],
            )?;
        }
        for problem in &batch.problems {
            update.skipped += 1;
            tx.execute(
                "INSERT INTO mirror_problems (kind, id, version, error, seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (kind, id) DO UPDATE SET version = ?3, error = ?4, seen_at = ?5",
                params![
                    problem.kind,
                    problem.id,
                    problem.version,
                    problem.error,
                    stamp
                ],
            )?;
        }
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = ?2",
            params![CRM_CURSOR_KEY, batch.next_cursor.0.to_string()],
        )?;
        tx.commit()?;
        Ok(update)
    }

    /// The instance id of the CRM this mirror holds (`None` before the first refresh).
    pub fn crm_instance_id(&self) -> Result<Option<String>, StoreError> {
        self.setting(CRM_INSTANCE_KEY)
    }

    /// Records the instance id of the CRM this mirror holds.
    pub fn set_crm_instance_id(&self, id: &str) -> Result<(), StoreError> {
        self.set_setting(CRM_INSTANCE_KEY, id)
    }

    /// Replaces the whole mirror with a complete read of a CRM's feed (`changes` from the
    /// start up to `cursor`), in one transaction: entities the read lacks are removed, rows
    /// it could not read keep their last mirrored version. Records `instance` as the
    /// mirrored CRM and audits the replacement. Returns how many entities were removed.
    pub fn replace_mirror(
        &self,
        changes: &[Change],
        problems: &[RowProblem],
        cursor: Cursor,
        instance: &str,
    ) -> Result<usize, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let previous: Option<String> = tx
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                [CRM_INSTANCE_KEY],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS remirror_seen (kind TEXT, id TEXT,
                 PRIMARY KEY (kind, id));
             DELETE FROM remirror_seen;",
        )?;
        let stamp = now();
        for change in changes {
            tx.execute(
                "INSERT OR IGNORE INTO remirror_seen (kind, id) VALUES (?1, ?2)",
                params![change.kind.as_str(), change.id],
            )?;
            match &change.entity {
                Some(entity) => {
                    tx.execute(
                        "INSERT INTO mirror_entities (kind, id, version, body, mirrored_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (kind, id) DO UPDATE SET version = ?3, body = ?4,
                             mirrored_at = ?5",
                        params![
                            change.kind.as_str(),
                            change.id,
                            change.version,
                            entity.to_json(),
                            stamp
                        ],
                    )?;
                }
                None => {
                    tx.execute(
                        "DELETE FROM mirror_entities WHERE kind = ?1 AND id = ?2",
                        params![change.kind.as_str(), change.id],
                    )?;
                }
            }
        }
        for problem in problems {
            tx.execute(
                "INSERT OR IGNORE INTO remirror_seen (kind, id) VALUES (?1, ?2)",
                params![problem.kind, problem.id],
            )?;
        }
        let removed = tx.execute(
            "DELETE FROM mirror_entities WHERE NOT EXISTS (
                 SELECT 1 FROM remirror_seen s
                 WHERE s.kind = mirror_entities.kind AND s.id = mirror_entities.id)",
            [],
        )?;
        tx.execute("DELETE FROM mirror_problems", [])?;
        for problem in problems {
            tx.execute(
                "INSERT INTO mirror_problems (kind, id, version, error, seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (kind, id) DO UPDATE SET version = ?3, error = ?4, seen_at = ?5",
                params![
                    problem.kind,
                    problem.id,
                    problem.version,
                    problem.error,
                    stamp
                ],
            )?;
        }
        tx.execute("DELETE FROM remirror_seen", [])?;
        for (key, value) in [
            (CRM_CURSOR_KEY, cursor.0.to_string()),
            (CRM_INSTANCE_KEY, instance.to_owned()),
        ] {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            )?;
        }
        tx.execute(
            "INSERT INTO audit (at, run_id, user_id, record, action, detail)
             VALUES (?1, 'remirror', NULL, NULL, 'crm_replaced', ?2)",
            params![
                stamp,
                serde_json::json!({
                    "previous_instance": previous,
                    "instance": instance,
                    "entities": changes.iter().filter(|c| c.entity.is_some()).count(),
                    "removed": removed,
                })
                .to_string()
            ],
        )?;
        tx.commit()?;
        Ok(removed)
    }

    /// CRM rows currently skipped because they could not be read.
    pub fn mirror_problems(&self) -> Result<Vec<RowProblem>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, id, version, error FROM mirror_problems ORDER BY kind, id")?;
        let rows = stmt.query_map([], |r| {
            Ok(RowProblem {
                kind: r.get(0)?,
                id: r.get(1)?,
                version: r.get(2)?,
                error: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The mirrored CRM, typed.
    pub fn load_org_model(&self) -> Result<OrgModel, StoreError> {
        self.load_model_where("")
    }

    /// The security model alone, as mirrored: the org settings, org-wide sharing, users,
    /// roles, profiles, teams and sharing rules — no records, no reader lists. Small at any
    /// org size: who is synced, into which account, under which scope, is decided from it.
    pub fn load_security_model(&self) -> Result<OrgModel, StoreError> {
        self.load_model_where(
            "WHERE kind IN ('org', 'org_wide_sharing', 'user', 'role', 'profile', 'team', \
             'sharing_rule')",
        )
    }

    fn load_model_where(&self, filter: &str) -> Result<OrgModel, StoreError> {
        let mut builder = crate::crm::ModelBuilder::default();
        let mut counts = self.conn.prepare(&format!(
            "SELECT kind, count(*) FROM mirror_entities {filter} GROUP BY kind"
        ))?;
        let mut rows = counts.query([])?;
        while let Some(row) = rows.next()? {
            let kind: String = row.get(0)?;
            let n: i64 = row.get(1)?;
            if let (Ok(kind), Ok(n)) = (kind.parse::<EntityKind>(), usize::try_from(n)) {
                builder.reserve(kind, n);
            }
        }
        let mut stmt = self.conn.prepare(&format!(
            "SELECT kind, id, version, body FROM mirror_entities {filter}"
        ))?;
        let mut rows = stmt.query([])?;
        // The row's text is read in place (no copy per row: a large org has hundreds of
        // thousands, and their copies would be freed among the records kept).
        while let Some(row) = rows.next()? {
            let kind: EntityKind = row
                .get_ref(0)?
                .as_str()
                .map_err(|e| StoreError::Corrupt(format!("mirror kind: {e}")))?
                .parse()
                .map_err(StoreError::Corrupt)?;
            let version: i64 = row.get(2)?;
            let body = row
                .get_ref(3)?
                .as_str()
                .map_err(|e| StoreError::Corrupt(format!("mirror {kind} body: {e}")))?;
            let entity = Entity::from_json(kind, body).map_err(|e| {
                let id = row.get_ref(1).ok().and_then(|v| v.as_str().ok());
                StoreError::Corrupt(format!("mirror {kind}:{}: {e}", id.unwrap_or("?")))
            })?;
            builder.add(entity, version);
        }
        Ok(builder.build())
    }
}

mod revoke;
mod sync;

pub use feeds::FeedRow;
pub use sync::{AuditEntry, ConflictEntry, SyncUser, SyncWriter};
pub use worker::WorkerUserRow;

#[cfg(test)]
mod tests;
