//! The embedded CRM of record: one SQLite file, one row per entity, one change feed.
//!
//! Used by the demo and the tests, and by companies that feed crmsync from any CRM export
//! through the org file. Loading an org file is an ordinary change: records that changed get
//! a new version, removed ones become tombstones, unchanged ones keep their version.

use super::{
    normalized_record, updated_record, writable_fields, Change, ChangeBatch, CrmError, Cursor,
    Entity, EntityKind, OrgModel, RowProblem, Source, WriteBack, WriteOutcome,
};
use crate::db::{self, Migration};
use crate::model::{ObjectKind, RecordRef};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The embedded CRM's schema, oldest first. Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "crm/0001_entities.sql",
        sql: include_str!("../../migrations/crm/0001_entities.sql"),
    },
    Migration {
        name: "crm/0002_identity_and_write_backs.sql",
        sql: include_str!("../../migrations/crm/0002_identity_and_write_backs.sql"),
    },
];

/// The embedded CRM.
pub struct SqliteCrm {
    conn: Connection,
    path: PathBuf,
}

/// Counts of what a load changed, per entity kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    pub created: BTreeMap<EntityKind, usize>,
    pub updated: BTreeMap<EntityKind, usize>,
    pub deleted: BTreeMap<EntityKind, usize>,
    pub unchanged: BTreeMap<EntityKind, usize>,
}

impl LoadReport {
    pub fn total_changes(&self) -> usize {
        self.created
            .values()
            .chain(self.updated.values())
            .chain(self.deleted.values())
            .sum()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A write-back made since the last load that an org file would undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UndoneWriteBack {
    /// `contact:c1`.
    pub record: String,
    /// What the file would do to it.
    pub effect: UndoEffect,
    /// The written-back fields the file sets to other values (for [`UndoEffect::Revert`]).
    pub fields: Vec<String>,
    /// When the (last) write-back happened.
    pub written_at: String,
    /// Who made it (the phone's user).
    pub acting_users: Vec<String>,
}

/// How loading a file would undo a write-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoEffect {
    /// Set fields written back from a phone to the file's (older) values.
    Revert,
    /// Remove a record imported from a phone, or edited from one.
    Remove,
    /// Bring back a record deleted from a phone.
    Restore,
}

impl std::fmt::Display for UndoneWriteBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by = self.acting_users.join(", ");
        match self.effect {
            UndoEffect::Revert => write!(
                f,
                "{}: would revert {} (written back from {by}'s phone at {})",
                self.record,
                self.fields.join(", "),
                self.written_at
            ),
            UndoEffect::Remove => write!(
                f,
                "{}: would remove it (created or edited from {by}'s phone at {})",
                self.record, self.written_at
            ),
            UndoEffect::Restore => write!(
                f,
                "{}: would bring it back (deleted from {by}'s phone at {})",
                self.record, self.written_at
            ),
        }
    }
}

impl SqliteCrm {
    /// Opens (creating if needed) the CRM database at `path`; `:memory:` for a private one.
    /// Only `crmsync crm load` and fixtures create a CRM; readers use
    /// [`SqliteCrm::open_existing`].
    pub fn open(path: &Path) -> Result<Self, CrmError> {
        Self::open_schema(path, MIGRATIONS)
    }

    /// Opens (creating if needed) a database in the embedded CRM's format whose schema is
    /// `migrations` (a connector's shadow adds its own tables after the CRM's).
    pub fn open_schema(path: &Path, migrations: &[Migration]) -> Result<Self, CrmError> {
        let conn = db::open(path, migrations)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Opens the CRM database at `path`, which must exist (a missing file is an error, never
    /// a new empty CRM).
    pub fn open_existing(path: &Path) -> Result<Self, CrmError> {
        Self::open_with(
            path,
            &db::OpenOptions {
                mode: db::OpenMode::Existing,
                ..db::OpenOptions::default()
            },
        )
    }

    /// Opens the CRM database at `path` as `options` say (creation, busy timeout).
    pub fn open_with(path: &Path, options: &db::OpenOptions) -> Result<Self, CrmError> {
        let conn = db::open_with(path, MIGRATIONS, options)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Write-backs made since the last load (phone edits, imports, deletes the engine wrote
    /// here) that loading `model` would undo. Empty when the file agrees with them — e.g.
    /// a file made by [`SqliteCrm::export`] after those write-backs.
    pub fn undone_write_backs(&self, model: &OrgModel) -> Result<Vec<UndoneWriteBack>, CrmError> {
        undone_write_backs_in(&self.conn, model)
    }

    /// Loads `model` unless it would undo write-backs made since the last load (then nothing
    /// is loaded and they are returned); with `force`, loads anyway and returns them too. The
    /// check and the load are one IMMEDIATE transaction, so no write-back slips in between.
    pub fn load_guarded(
        &mut self,
        model: &OrgModel,
        force: bool,
    ) -> Result<(Option<LoadReport>, Vec<UndoneWriteBack>), CrmError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let undone = undone_write_backs_in(&tx, model)?;
        if !undone.is_empty() && !force {
            return Ok((None, undone));
        }
        let report = load_in(&tx, model)?;
        tx.commit()?;
        Ok((Some(report), undone))
    }

    /// The whole live CRM as an org file (`shared/ORG_FILE.md`): loading it back changes
    /// nothing.
    pub fn export(&self) -> Result<(serde_json::Value, Vec<RowProblem>), CrmError> {
        let (model, problems) = self.snapshot()?;
        Ok((super::orgfile::to_document(&model), problems))
    }

    /// Direct access for tests that need to damage a row on purpose.
    #[doc(hidden)]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Replaces the CRM's content with `model` in one transaction.
    pub fn load(&mut self, model: &OrgModel) -> Result<LoadReport, CrmError> {
        let tx = self.conn.transaction()?;
        let report = load_in(&tx, model)?;
        tx.commit()?;
        Ok(report)
    }

    /// The live entity `kind:id` with its version.
    pub fn get(&self, kind: EntityKind, id: &str) -> Result<Option<(i64, Entity)>, CrmError> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT version, body FROM entities WHERE kind = ?1 AND id = ?2 AND deleted = 0",
                params![kind.as_str(), id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some((version, body)) => Entity::from_json(kind, &body)
                .map(|e| Some((version, e)))
                .map_err(|e| CrmError::Invalid(format!("{kind}:{id} is unreadable: {e}"))),
        }
    }

    /// The whole live CRM, typed; unreadable rows are skipped and returned as problems.
    pub fn snapshot(&self) -> Result<(OrgModel, Vec<RowProblem>), CrmError> {
        let mut model = OrgModel::default();
        let mut problems = Vec::new();
        let mut cursor = Cursor(0);
        for _ in 0..=i64::MAX as u64 {
            let batch = self.changes_since(cursor, 10_000)?;
            for change in batch.changes {
                if let Some(entity) = change.entity {
                    model.insert(entity, change.version);
                }
            }
            problems.extend(batch.problems);
            cursor = batch.next_cursor;
            if !batch.more {
                break;
            }
        }
        Ok((model, problems))
    }

    fn current_version(&self, record: &RecordRef) -> Result<Option<(i64, String)>, CrmError> {
        Ok(self
            .conn
            .query_row(
                "SELECT version, body FROM entities WHERE kind = ?1 AND id = ?2 AND deleted = 0",
                params![record.kind.as_str(), record.id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn user_exists(&self, user: &crate::model::UserId) -> Result<bool, CrmError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM entities WHERE kind = 'user' AND id = ?1 AND deleted = 0",
                params![user.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

/// Write-backs since the last load that loading `model` would undo (see
/// [`SqliteCrm::undone_write_backs`]).
fn undone_write_backs_in(
    conn: &Connection,
    model: &OrgModel,
) -> Result<Vec<UndoneWriteBack>, CrmError> {
    let last_load: i64 = conn.query_row(
        "SELECT value FROM counters WHERE name = 'last_load'",
        [],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(
        "SELECT kind, id, action, fields, acting_user, at FROM write_backs
             WHERE version > ?1 ORDER BY version",
    )?;
    let rows = stmt.query_map([last_load], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    // Per record: the written fields (union), whether it was created or deleted, who, when.
    struct Written {
        fields: std::collections::BTreeSet<String>,
        created: bool,
        users: std::collections::BTreeSet<String>,
        at: String,
    }
    let mut written: BTreeMap<(String, String), Written> = BTreeMap::new();
    for row in rows {
        let (kind, id, action, fields, user, at) = row?;
        let fields: Vec<String> = serde_json::from_str(&fields).unwrap_or_default();
        let entry = written.entry((kind, id)).or_insert_with(|| Written {
            fields: Default::default(),
            created: false,
            users: Default::default(),
            at: String::new(),
        });
        entry.fields.extend(fields);
        entry.created |= action == "create";
        entry.users.insert(user);
        entry.at = at;
    }
    let in_file: HashMap<(String, String), serde_json::Value> = model
        .entities()
        .into_iter()
        .filter(|e| e.kind().as_object().is_some())
        .filter_map(|e| {
            let value = serde_json::to_value(&e).ok()?;
            Some(((e.kind().as_str().to_owned(), e.id()), value))
        })
        .collect();
    let mut out = Vec::new();
    for ((kind, id), w) in written {
        let current: Option<String> = conn
            .query_row(
                "SELECT body FROM entities WHERE kind = ?1 AND id = ?2 AND deleted = 0",
                params![kind, id],
                |r| r.get(0),
            )
            .optional()?;
        let current: Option<serde_json::Value> =
            current.and_then(|b| serde_json::from_str(&b).ok());
        let file = in_file.get(&(kind.clone(), id.clone()));
        let (effect, fields) = match (current, file) {
            (None, None) => continue,
            (None, Some(_)) => (UndoEffect::Restore, Vec::new()),
            (Some(_), None) => (UndoEffect::Remove, Vec::new()),
            (Some(now), Some(file)) => {
                let differs = |f: &String| now.get(f) != file.get(f);
                let fields: Vec<String> = if w.created {
                    writable_fields_of(&kind)
                        .iter()
                        .map(|f| (*f).to_owned())
                        .filter(differs)
                        .collect()
                } else {
                    w.fields.iter().filter(|f| differs(f)).cloned().collect()
                };
                if fields.is_empty() {
                    continue;
                }
                (UndoEffect::Revert, fields)
            }
        };
        out.push(UndoneWriteBack {
            record: format!("{kind}:{id}"),
            effect,
            fields,
            written_at: w.at,
            acting_users: w.users.into_iter().collect(),
        });
    }
    Ok(out)
}

/// Replaces the CRM's content with `model` inside the caller's transaction.
fn load_in(tx: &Connection, model: &OrgModel) -> Result<LoadReport, CrmError> {
    let mut existing: HashMap<(String, String), (bool, Option<String>)> = HashMap::new();
    {
        let mut stmt = tx.prepare("SELECT kind, id, deleted, body FROM entities")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                (r.get::<_, bool>(2)?, r.get::<_, Option<String>>(3)?),
            ))
        })?;
        for row in rows {
            let (key, value) = row?;
            existing.insert(key, value);
        }
    }
    let mut report = LoadReport::default();
    let stamp = now();
    let mut seen = std::collections::HashSet::new();
    for entity in model.entities() {
        let kind = entity.kind();
        let id = entity.id();
        let body = entity.to_json();
        let key = (kind.as_str().to_owned(), id.clone());
        let counter = match existing.get(&key) {
            Some((false, Some(old))) if *old == body => &mut report.unchanged,
            Some((false, _)) => &mut report.updated,
            _ => &mut report.created,
        };
        *counter.entry(kind).or_default() += 1;
        let changed = !matches!(existing.get(&key), Some((false, Some(old))) if *old == body);
        if changed {
            let version = next_version(tx)?;
            tx.execute(
                "INSERT INTO entities (kind, id, version, deleted, body, changed_at)
                     VALUES (?1, ?2, ?3, 0, ?4, ?5)
                     ON CONFLICT (kind, id) DO UPDATE SET version = ?3, deleted = 0,
                         body = ?4, changed_at = ?5",
                params![kind.as_str(), id, version, body, stamp],
            )?;
        }
        seen.insert(key);
    }
    for ((kind, id), (deleted, _)) in &existing {
        if *deleted || seen.contains(&(kind.clone(), id.clone())) {
            continue;
        }
        let version = next_version(tx)?;
        tombstone(tx, kind, id, version, &stamp)?;
        if let Ok(kind) = kind.parse::<EntityKind>() {
            *report.deleted.entry(kind).or_default() += 1;
        }
    }
    // Write-backs up to here are what this load decided on.
    tx.execute(
        "UPDATE counters SET value = (SELECT value FROM counters WHERE name = 'version')
             WHERE name = 'last_load'",
        [],
    )?;
    Ok(report)
}

/// Records a write-back in the journal (same transaction as the write).
fn journal(
    conn: &Connection,
    version: i64,
    record: &RecordRef,
    action: &str,
    fields: &[String],
    acting_user: &crate::model::UserId,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO write_backs (version, kind, id, action, fields, acting_user, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            version,
            record.kind.as_str(),
            record.id.as_str(),
            action,
            serde_json::to_string(fields).unwrap_or_else(|_| "[]".into()),
            acting_user.as_str(),
            now()
        ],
    )?;
    Ok(())
}

/// The fields a phone may write of a record kind named by its entity kind.
fn writable_fields_of(kind: &str) -> &'static [&'static str] {
    match kind
        .parse::<EntityKind>()
        .ok()
        .and_then(EntityKind::as_object)
    {
        Some(k) => writable_fields(k),
        None => &[],
    }
}

fn next_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "UPDATE counters SET value = value + 1 WHERE name = 'version' RETURNING value",
        [],
        |r| r.get(0),
    )
}

fn tombstone(
    conn: &Connection,
    kind: &str,
    id: &str,
    version: i64,
    stamp: &str,
) -> rusqlite::Result<()> {
    let n = conn.execute(
        "UPDATE entities SET version = ?3, deleted = 1, body = NULL, changed_at = ?4
         WHERE kind = ?1 AND id = ?2",
        params![kind, id, version, stamp],
    )?;
    if n == 1 {
        Ok(())
    } else {
        Err(rusqlite::Error::QueryReturnedNoRows)
    }
}

impl Source for SqliteCrm {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn instance_id(&self) -> Result<String, CrmError> {
        Ok(self.conn.query_row(
            "SELECT value FROM meta WHERE key = 'instance_id'",
            [],
            |r| r.get(0),
        )?)
    }

    fn changes_since(&self, cursor: Cursor, limit: usize) -> Result<ChangeBatch, CrmError> {
        let limit = limit.clamp(1, 100_000);
        let mut stmt = self.conn.prepare_cached(
            "SELECT kind, id, version, deleted, body FROM entities
             WHERE version > ?1 ORDER BY version LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![cursor.0, limit as i64 + 1], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut batch = ChangeBatch {
            next_cursor: cursor,
            ..ChangeBatch::default()
        };
        for (n, row) in rows.enumerate() {
            let (kind_name, id, version, deleted, body) = row?;
            if n == limit {
                batch.more = true;
                break;
            }
            batch.next_cursor = Cursor(version);
            let problem = |error: String| RowProblem {
                kind: kind_name.clone(),
                id: id.clone(),
                version,
                error,
            };
            let kind = match kind_name.parse::<EntityKind>() {
                Ok(k) => k,
                Err(e) => {
                    batch.problems.push(problem(e));
                    continue;
                }
            };
            if deleted {
                batch.changes.push(Change {
                    version,
                    kind,
                    id,
                    entity: None,
                });
                continue;
            }
            let Some(body) = body else {
                batch
                    .problems
                    .push(problem("live row without a body".into()));
                continue;
            };
            match Entity::from_json(kind, &body) {
                Ok(entity) if entity.id() == id => batch.changes.push(Change {
                    version,
                    kind,
                    id,
                    entity: Some(entity),
                }),
                Ok(entity) => batch
                    .problems
                    .push(problem(format!("body carries id {:?}", entity.id()))),
                Err(e) => batch
                    .problems
                    .push(problem(format!("unreadable body: {e}"))),
            }
        }
        Ok(batch)
    }

    fn get(&self, record: &RecordRef) -> Result<Option<(i64, Entity)>, CrmError> {
        SqliteCrm::get(
            self,
            EntityKind::from_object(record.kind),
            record.id.as_str(),
        )
    }

    fn apply(&mut self, write: &WriteBack) -> Result<WriteOutcome, CrmError> {
        match write {
            WriteBack::Update {
                record,
                expected_version,
                acting_user,
                fields,
            } => {
                let (current, body) = self
                    .current_version(record)?
                    .ok_or_else(|| CrmError::NotFound(record.clone()))?;
                if current != *expected_version {
                    return Err(CrmError::Conflict {
                        record: record.clone(),
                        expected: *expected_version,
                        current,
                    });
                }
                let stored = Entity::from_json(EntityKind::from_object(record.kind), &body)
                    .map_err(|e| CrmError::Invalid(format!("{record} is unreadable: {e}")))?;
                let new_body = updated_record(record, &stored, fields)?.to_json();
                if new_body == body {
                    return Ok(WriteOutcome {
                        record: record.clone(),
                        version: current,
                    });
                }
                let changed: Vec<String> = match (
                    serde_json::from_str::<serde_json::Value>(&body),
                    serde_json::from_str::<serde_json::Value>(&new_body),
                ) {
                    (Ok(old), Ok(new)) => fields
                        .keys()
                        .filter(|k| old.get(k.as_str()) != new.get(k.as_str()))
                        .cloned()
                        .collect(),
                    _ => fields.keys().cloned().collect(),
                };
                let tx = self.conn.transaction()?;
                let version = next_version(&tx)?;
                tx.execute(
                    "UPDATE entities SET version = ?3, body = ?4, changed_at = ?5
                     WHERE kind = ?1 AND id = ?2",
                    params![
                        record.kind.as_str(),
                        record.id.as_str(),
                        version,
                        new_body,
                        now()
                    ],
                )?;
                journal(&tx, version, record, "update", &changed, acting_user)?;
                tx.commit()?;
                Ok(WriteOutcome {
                    record: record.clone(),
                    version,
                })
            }
            WriteBack::Create {
                acting_user,
                entity,
            } => {
                let kind = entity.kind().as_object().ok_or_else(|| {
                    CrmError::Refused(format!("cannot create a {}", entity.kind()))
                })?;
                if !self.user_exists(acting_user)? {
                    return Err(CrmError::Refused(format!(
                        "unknown acting user {acting_user}"
                    )));
                }
                let mut entity = normalized_record(Entity::clone(entity.as_ref()))?;
                match &mut entity {
                    Entity::Contact(c) => c.owner = acting_user.clone(),
                    Entity::Event(e) => e.owner = acting_user.clone(),
                    Entity::Organization(o) => o.owner = acting_user.clone(),
                    _ => {}
                }
                let id = entity.id();
                let record = RecordRef::new(
                    kind,
                    crate::model::CrmId::new(id.clone())
                        .map_err(|e| CrmError::Invalid(e.to_string()))?,
                );
                let tx = self.conn.transaction()?;
                let exists: Option<i64> = tx
                    .query_row(
                        "SELECT version FROM entities WHERE kind = ?1 AND id = ?2",
                        params![kind.as_str(), id],
                        |r| r.get(0),
                    )
                    .optional()?;
                if exists.is_some() {
                    return Err(CrmError::Refused(format!("{record} already exists")));
                }
                let version = next_version(&tx)?;
                tx.execute(
                    "INSERT INTO entities (kind, id, version, deleted, body, changed_at)
                     VALUES (?1, ?2, ?3, 0, ?4, ?5)",
                    params![kind.as_str(), id, version, entity.to_json(), now()],
                )?;
                journal(&tx, version, &record, "create", &[], acting_user)?;
                tx.commit()?;
                Ok(WriteOutcome { record, version })
            }
            WriteBack::Delete {
                record,
                expected_version,
                acting_user,
            } => {
                let (current, _) = self
                    .current_version(record)?
                    .ok_or_else(|| CrmError::NotFound(record.clone()))?;
                if current != *expected_version {
                    return Err(CrmError::Conflict {
                        record: record.clone(),
                        expected: *expected_version,
                        current,
                    });
                }
                let tx = self.conn.transaction()?;
                let version = next_version(&tx)?;
                tombstone(
                    &tx,
                    record.kind.as_str(),
                    record.id.as_str(),
                    version,
                    &now(),
                )?;
                journal(&tx, version, record, "delete", &[], acting_user)?;
                tx.commit()?;
                Ok(WriteOutcome {
                    record: record.clone(),
                    version,
                })
            }
        }
    }
}

impl ObjectKind {
    /// The entity kind of this record kind.
    pub fn entity_kind(self) -> EntityKind {
        EntityKind::from_object(self)
    }
}

/// What recording observed entities changed (see [`SqliteCrm::record_observed`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// New entities, or deleted ones that came back.
    pub created: usize,
    /// Entities whose content changed: a new version each.
    pub changed: usize,
    /// Entities whose change stamp moved without a content change: stored, no new version.
    pub restamped: usize,
    pub unchanged: usize,
}

impl Observed {
    /// Entities that got a new version.
    pub fn versioned(&self) -> usize {
        self.created + self.changed
    }
}

/// Entities as read from a hosted CRM (a connector's shadow is a database in this format).
impl SqliteCrm {
    /// Records entities as a connector read them, in one transaction: an entity whose
    /// content differs from the stored one (compared canonically, the CRM's change stamp
    /// `updated_at` left out) gets a new version; one whose stamp alone moved is stored
    /// without a new version; an identical one is left alone.
    pub fn record_observed(&mut self, entities: &[Entity]) -> Result<Observed, CrmError> {
        let tx = self.conn.transaction()?;
        let mut out = Observed::default();
        let stamp = now();
        for entity in entities {
            let kind = entity.kind();
            let id = entity.id();
            let body = entity.to_json();
            let stored: Option<(bool, Option<String>)> = tx
                .query_row(
                    "SELECT deleted, body FROM entities WHERE kind = ?1 AND id = ?2",
                    params![kind.as_str(), id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let live_body = match &stored {
                Some((false, Some(old))) => Some(old.as_str()),
                _ => None,
            };
            let same_content = live_body.is_some_and(|old| {
                Entity::from_json(kind, old)
                    .map(|e| e.without_stamp() == entity.without_stamp())
                    .unwrap_or(false)
            });
            if same_content {
                if live_body == Some(body.as_str()) {
                    out.unchanged += 1;
                } else {
                    tx.execute(
                        "UPDATE entities SET body = ?3 WHERE kind = ?1 AND id = ?2",
                        params![kind.as_str(), id, body],
                    )?;
                    out.restamped += 1;
                }
                continue;
            }
            if live_body.is_some() {
                out.changed += 1;
            } else {
                out.created += 1;
            }
            let version = next_version(&tx)?;
            tx.execute(
                "INSERT INTO entities (kind, id, version, deleted, body, changed_at)
                 VALUES (?1, ?2, ?3, 0, ?4, ?5)
                 ON CONFLICT (kind, id) DO UPDATE SET version = ?3, deleted = 0,
                     body = ?4, changed_at = ?5",
                params![kind.as_str(), id, version, body, stamp],
            )?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// Tombstones the live entities of `kind` among `ids` (a new version each); returns how
    /// many were live.
    pub fn remove_entities(&mut self, kind: EntityKind, ids: &[String]) -> Result<usize, CrmError> {
        let tx = self.conn.transaction()?;
        let stamp = now();
        let mut removed = 0;
        for id in ids {
            let live: Option<i64> = tx
                .query_row(
                    "SELECT version FROM entities WHERE kind = ?1 AND id = ?2 AND deleted = 0",
                    params![kind.as_str(), id],
                    |r| r.get(0),
                )
                .optional()?;
            if live.is_none() {
                continue;
            }
            let version = next_version(&tx)?;
            tombstone(&tx, kind.as_str(), id, version, &stamp)?;
            removed += 1;
        }
        tx.commit()?;
        Ok(removed)
    }

    /// The ids of the live entities of `kind`.
    pub fn live_ids(
        &self,
        kind: EntityKind,
    ) -> Result<std::collections::BTreeSet<String>, CrmError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM entities WHERE kind = ?1 AND deleted = 0")?;
        let rows = stmt.query_map(params![kind.as_str()], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest version of the feed (`Cursor(0)` when empty).
    pub fn head(&self) -> Result<Cursor, CrmError> {
        Ok(Cursor(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM entities",
            [],
            |r| r.get(0),
        )?))
    }
}
