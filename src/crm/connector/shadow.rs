//! [`Shadow`]: a connector's local copy of what it last read from a hosted CRM.
//!
//! The file is a database in the embedded CRM's format (created with mode 0600), so the
//! change feed a connector serves is exactly the embedded CRM's: one monotonic version
//! counter over every entity, tombstones for deletions. The shadow adds a small key/value
//! table for the connector's read state (incremental high-water marks, the time of the last
//! full reconciliation); this module owns that table's SQL, `crm::sqlite` the entities'.
//!
//! Versions are assigned here, not by the CRM: a read that shows a real content change
//! (canonical comparison, the CRM's change stamp left out) gets a new version; a stamp that
//! moved alone is stored without one; unchanged entities keep theirs.
//!
//! What every connector does with it in the same way lives here too: tombstoning what a
//! complete listing no longer shows ([`Shadow::remove_missing`]), and the two checks of a
//! write-back to a CRM without conditional writes — the version the engine saw against the
//! shadow ([`Shadow::expect_version`]), then the CRM's fresh copy against that version
//! ([`Shadow::recheck`]).

use super::super::sqlite::{Observed, SqliteCrm};
use super::super::{CrmError, Cursor, Entity, EntityKind};
use crate::db::Migration;
use crate::model::RecordRef;
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeSet;
use std::path::Path;

/// The shadow's schema: the embedded CRM's (entities, instance id), then the connector's
/// state. Append only.
pub const SHADOW_MIGRATIONS: &[Migration] = &[
    Migration {
        name: "crm/0001_entities.sql",
        sql: include_str!("../../../migrations/crm/0001_entities.sql"),
    },
    Migration {
        name: "crm/0002_identity_and_write_backs.sql",
        sql: include_str!("../../../migrations/crm/0002_identity_and_write_backs.sql"),
    },
    Migration {
        name: "shadow/0001_connector_state.sql",
        sql: include_str!("../../../migrations/shadow/0001_connector_state.sql"),
    },
];

/// A connector's shadow database.
pub struct Shadow {
    crm: SqliteCrm,
}

impl Shadow {
    /// Opens (creating with mode 0600) the shadow at `path`; `:memory:` for a private one.
    pub fn open(path: &Path) -> Result<Self, CrmError> {
        Ok(Self {
            crm: SqliteCrm::open_schema(path, SHADOW_MIGRATIONS)?,
        })
    }

    /// The entities as a feed (`changes_since`, `get`).
    pub fn feed(&self) -> &SqliteCrm {
        &self.crm
    }

    /// Records entities as read (see [`SqliteCrm::record_observed`]).
    pub fn record(&mut self, entities: &[Entity]) -> Result<Observed, CrmError> {
        if entities.is_empty() {
            return Ok(Observed::default());
        }
        self.crm.record_observed(entities)
    }

    /// Tombstones the live entities of `kind` among `ids`.
    pub fn remove(&mut self, kind: EntityKind, ids: &[String]) -> Result<usize, CrmError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.crm.remove_entities(kind, ids)
    }

    /// Tombstones the live entities of `kind` that are not in `keep` (what a complete
    /// listing did not show); returns their ids.
    pub fn remove_missing(
        &mut self,
        kind: EntityKind,
        keep: &BTreeSet<String>,
    ) -> Result<Vec<String>, CrmError> {
        let gone: Vec<String> = self.live_ids(kind)?.difference(keep).cloned().collect();
        self.remove(kind, &gone)?;
        Ok(gone)
    }

    /// The shadow's version and entity of `record`, which a write-back names as `expected`:
    /// [`CrmError::NotFound`] when the record is not live, [`CrmError::Conflict`] when the
    /// shadow holds another version.
    pub fn expect_version(
        &self,
        record: &RecordRef,
        expected: i64,
    ) -> Result<(i64, Entity), CrmError> {
        let (version, entity) = self
            .get(EntityKind::from_object(record.kind), record.id.as_str())?
            .ok_or_else(|| CrmError::NotFound(record.clone()))?;
        if version != expected {
            return Err(CrmError::Conflict {
                record: record.clone(),
                expected,
                current: version,
            });
        }
        Ok((version, entity))
    }

    /// Records `fresh`, the record as the CRM holds it just before a write-back, and checks
    /// that it still has the `expected` version: a content change since gives it a new
    /// version, which is a [`CrmError::Conflict`] (the shadow keeps the fresh content, so
    /// the next pass plans against it). A change stamp that moved alone is not a conflict.
    pub fn recheck(
        &mut self,
        record: &RecordRef,
        expected: i64,
        fresh: Entity,
    ) -> Result<(), CrmError> {
        self.record(std::slice::from_ref(&fresh))?;
        let now = self
            .get(EntityKind::from_object(record.kind), record.id.as_str())?
            .map_or(expected, |(v, _)| v);
        if now != expected {
            return Err(CrmError::Conflict {
                record: record.clone(),
                expected,
                current: now,
            });
        }
        Ok(())
    }

    /// The ids of the live entities of `kind`.
    pub fn live_ids(&self, kind: EntityKind) -> Result<BTreeSet<String>, CrmError> {
        self.crm.live_ids(kind)
    }

    /// One live entity with its version.
    pub fn get(&self, kind: EntityKind, id: &str) -> Result<Option<(i64, Entity)>, CrmError> {
        self.crm.get(kind, id)
    }

    /// The newest version of the feed.
    pub fn head(&self) -> Result<Cursor, CrmError> {
        self.crm.head()
    }

    /// A value of the connector's read state.
    pub fn state(&self, key: &str) -> Result<Option<String>, CrmError> {
        Ok(self
            .crm
            .connection()
            .query_row(
                "SELECT value FROM connector_state WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Sets a value of the connector's read state.
    pub fn set_state(&mut self, key: &str, value: &str) -> Result<(), CrmError> {
        self.crm.connection().execute(
            "INSERT INTO connector_state (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = ?2",
            params![key, value],
        )?;
        Ok(())
    }

    /// Drops every state value whose key starts with `prefix` (e.g. a reader's marks).
    pub fn clear_state(&mut self, prefix: &str) -> Result<usize, CrmError> {
        let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
        Ok(self.crm.connection().execute(
            "DELETE FROM connector_state WHERE key LIKE ?1 ESCAPE '\\'",
            params![pattern],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::Source;
    use crate::model::{Contact, CrmId, UserId};
    use chrono::TimeZone;

    fn contact(title: &str, hour: u32) -> Entity {
        Entity::Contact(Contact {
            id: CrmId::new("7").unwrap(),
            owner: UserId::new("1").unwrap(),
            assignees: vec![],
            visibility: None,
            first_name: "Ada".into(),
            last_name: "L".into(),
            organization: None,
            title: title.into(),
            emails: vec![],
            phones: vec![],
            addresses: vec![],
            notes: String::new(),
            tags: vec![],
            updated_at: Some(
                chrono::Utc
                    .with_ymd_and_hms(2026, 1, 1, hour, 0, 0)
                    .unwrap(),
            ),
        })
    }

    #[test]
    fn versions_follow_content_not_stamps() {
        let mut shadow = Shadow::open(Path::new(":memory:")).unwrap();
        let first = shadow.record(&[contact("CTO", 1)]).unwrap();
        assert_eq!(first.created, 1);
        let v1 = shadow.get(EntityKind::Contact, "7").unwrap().unwrap().0;
        // The stamp moved, the content did not: no new version, the new stamp is kept.
        let again = shadow.record(&[contact("CTO", 2)]).unwrap();
        assert_eq!(again.restamped, 1);
        let (v, e) = shadow.get(EntityKind::Contact, "7").unwrap().unwrap();
        assert_eq!(v, v1);
        assert_eq!(e.stamp().unwrap().format("%H").to_string(), "02");
        assert_eq!(shadow.record(&[contact("CTO", 2)]).unwrap().unchanged, 1);
        // A real change: a new version, and the feed shows it once.
        assert_eq!(shadow.record(&[contact("CEO", 3)]).unwrap().changed, 1);
        let v2 = shadow.get(EntityKind::Contact, "7").unwrap().unwrap().0;
        assert!(v2 > v1);
        let feed = shadow.feed().changes_since(Cursor(v1), 10).unwrap();
        assert_eq!(feed.changes.len(), 1);
        // Deleted: a tombstone; read again later: back with a newer version.
        assert_eq!(
            shadow.remove(EntityKind::Contact, &["7".into()]).unwrap(),
            1
        );
        assert_eq!(
            shadow.remove(EntityKind::Contact, &["7".into()]).unwrap(),
            0
        );
        let tail = shadow.feed().changes_since(Cursor(v2), 10).unwrap();
        assert!(tail.changes[0].entity.is_none());
        assert!(shadow.live_ids(EntityKind::Contact).unwrap().is_empty());
        assert_eq!(shadow.record(&[contact("CEO", 3)]).unwrap().created, 1);
        assert!(shadow.head().unwrap().0 > tail.next_cursor.0);
    }

    #[test]
    fn write_backs_are_checked_against_the_shadow_then_the_fresh_copy() {
        let mut shadow = Shadow::open(Path::new(":memory:")).unwrap();
        shadow.record(&[contact("CTO", 1)]).unwrap();
        let record: RecordRef = "contact:7".parse().unwrap();
        let (v, _) = shadow.expect_version(&record, 1).unwrap();
        assert!(matches!(
            shadow.expect_version(&record, v + 1).unwrap_err(),
            CrmError::Conflict { expected, current, .. } if expected == v + 1 && current == v
        ));
        let missing: RecordRef = "contact:8".parse().unwrap();
        assert!(matches!(
            shadow.expect_version(&missing, v).unwrap_err(),
            CrmError::NotFound(_)
        ));
        // The CRM's copy moved its stamp only: still the version the engine saw.
        shadow.recheck(&record, v, contact("CTO", 2)).unwrap();
        // Someone changed it in the CRM: a conflict, and the shadow keeps their content.
        let err = shadow.recheck(&record, v, contact("CEO", 3)).unwrap_err();
        let CrmError::Conflict { current, .. } = err else {
            panic!("{err}")
        };
        assert!(current > v);
        let (now, Entity::Contact(c)) = shadow.expect_version(&record, current).unwrap() else {
            panic!("not a contact")
        };
        assert_eq!((now, c.title.as_str()), (current, "CEO"));
    }

    #[test]
    fn what_a_complete_listing_lacks_is_tombstoned() {
        let mut shadow = Shadow::open(Path::new(":memory:")).unwrap();
        let mut other = contact("CFO", 1);
        if let Entity::Contact(c) = &mut other {
            c.id = CrmId::new("8").unwrap();
        }
        shadow.record(&[contact("CTO", 1), other]).unwrap();
        let keep: BTreeSet<String> = ["7".to_owned()].into();
        assert_eq!(
            shadow.remove_missing(EntityKind::Contact, &keep).unwrap(),
            vec!["8".to_owned()]
        );
        assert_eq!(shadow.live_ids(EntityKind::Contact).unwrap(), keep);
        assert!(shadow
            .remove_missing(EntityKind::Contact, &keep)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn read_state_is_kept_by_key() {
        let mut shadow = Shadow::open(Path::new(":memory:")).unwrap();
        assert_eq!(shadow.state("mark:1:contact").unwrap(), None);
        shadow.set_state("mark:1:contact", "a").unwrap();
        shadow.set_state("mark:1:contact", "b").unwrap();
        shadow.set_state("mark:10:contact", "c").unwrap();
        shadow.set_state("mark:1_:x", "d").unwrap();
        assert_eq!(
            shadow.state("mark:1:contact").unwrap().as_deref(),
            Some("b")
        );
        assert_eq!(shadow.clear_state("mark:1:").unwrap(), 1);
        assert_eq!(
            shadow.state("mark:10:contact").unwrap().as_deref(),
            Some("c")
        );
        assert_eq!(shadow.state("mark:1_:x").unwrap().as_deref(), Some("d"));
    }
}
