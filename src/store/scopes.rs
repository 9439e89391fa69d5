//! State-DB SQL for sync scopes: per-user overrides and the last-synced scope fingerprint.

use super::{now, StateDb, StoreError};
use crate::model::UserId;
use crate::scope::{ScopeKey, ScopeLayer};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;

fn layer_from_rows(user: &str, rows: Vec<(String, String)>) -> Result<ScopeLayer, StoreError> {
    let mut object = serde_json::Map::new();
    for (key, value) in rows {
        let value: serde_json::Value = serde_json::from_str(&value)
            .map_err(|e| StoreError::Corrupt(format!("scope override {user}.{key}: {e}")))?;
        object.insert(key, value);
    }
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| StoreError::Corrupt(format!("scope overrides of {user}: {e}")))
}

impl StateDb {
    /// A user's scope overrides (empty when none are set).
    pub fn scope_overrides(&self, user: &UserId) -> Result<ScopeLayer, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM scope_overrides WHERE user_id = ?1 ORDER BY key")?;
        let rows = stmt
            .query_map([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<(String, String)>, _>>()?;
        layer_from_rows(user.as_str(), rows)
    }

    /// Every user's overrides (users without any are absent).
    pub fn all_scope_overrides(&self) -> Result<BTreeMap<UserId, ScopeLayer>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT user_id, key, value FROM scope_overrides ORDER BY user_id, key")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<Vec<(String, String, String)>, _>>()?;
        let mut grouped: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (user, key, value) in rows {
            grouped.entry(user).or_default().push((key, value));
        }
        let mut out = BTreeMap::new();
        for (user, rows) in grouped {
            let id = UserId::new(user.clone())
                .map_err(|e| StoreError::Corrupt(format!("scope override user {user:?}: {e}")))?;
            out.insert(id, layer_from_rows(&user, rows)?);
        }
        Ok(out)
    }

    /// Replaces a user's overrides with `layer` (an empty layer removes them all), in one
    /// transaction.
    pub fn replace_scope_overrides(
        &mut self,
        user: &UserId,
        layer: &ScopeLayer,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM scope_overrides WHERE user_id = ?1",
            [user.as_str()],
        )?;
        let stamp = now();
        for (key, value) in layer.values() {
            let touched = tx.execute(
                "INSERT INTO scope_overrides (user_id, key, value, set_at) VALUES (?1, ?2, ?3, ?4)",
                params![user.as_str(), key.as_str(), value.to_string(), stamp],
            )?;
            if touched != 1 {
                return Err(StoreError::RowCount {
                    action: "insert",
                    table: "scope_overrides",
                    touched,
                });
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Drops a user's overrides; returns how many settings were removed.
    pub fn reset_scope_overrides(&mut self, user: &UserId) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM scope_overrides WHERE user_id = ?1",
            [user.as_str()],
        )?)
    }

    /// When each of a user's overrides was set.
    pub fn scope_override_times(
        &self,
        user: &UserId,
    ) -> Result<BTreeMap<ScopeKey, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, set_at FROM scope_overrides WHERE user_id = ?1")?;
        let rows = stmt
            .query_map([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<(String, String)>, _>>()?;
        rows.into_iter()
            .map(|(k, t)| {
                k.parse::<ScopeKey>()
                    .map(|k| (k, t))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    /// The fingerprint of the scope `user` was last synced under.
    pub fn scope_fingerprint(&self, user: &UserId) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT fingerprint FROM scope_fingerprints WHERE user_id = ?1",
                [user.as_str()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records the fingerprint of the scope `user` was just synced under.
    pub fn record_scope_fingerprint(
        &self,
        user: &UserId,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO scope_fingerprints (user_id, fingerprint, recorded_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id) DO UPDATE SET fingerprint = ?2, recorded_at = ?3",
            params![user.as_str(), fingerprint, now()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::{Direction, SelectionMode};

    #[test]
    fn overrides_round_trip_replace_and_reset() {
        let mut db = StateDb::open_in_memory().unwrap();
        let erin = UserId::new("erin").unwrap();
        assert!(db.scope_overrides(&erin).unwrap().is_empty());
        let layer = ScopeLayer {
            contact: Some(SelectionMode::Filter),
            contact_tags: Some(vec!["vip".into()]),
            direction: Some(Direction::TwoWay),
            days_past: Some(7),
            ..ScopeLayer::default()
        };
        db.replace_scope_overrides(&erin, &layer).unwrap();
        assert_eq!(db.scope_overrides(&erin).unwrap(), layer);
        assert_eq!(db.scope_override_times(&erin).unwrap().len(), 4);
        let all = db.all_scope_overrides().unwrap();
        assert_eq!(all.get(&erin), Some(&layer));
        let smaller = ScopeLayer {
            direction: Some(Direction::CrmToGoogle),
            ..ScopeLayer::default()
        };
        db.replace_scope_overrides(&erin, &smaller).unwrap();
        assert_eq!(db.scope_overrides(&erin).unwrap(), smaller);
        assert_eq!(db.reset_scope_overrides(&erin).unwrap(), 1);
        assert!(db.scope_overrides(&erin).unwrap().is_empty());
        assert_eq!(db.reset_scope_overrides(&erin).unwrap(), 0);
    }

    #[test]
    fn fingerprints_are_upserted() {
        let db = StateDb::open_in_memory().unwrap();
        let erin = UserId::new("erin").unwrap();
        assert_eq!(db.scope_fingerprint(&erin).unwrap(), None);
        db.record_scope_fingerprint(&erin, "abc").unwrap();
        db.record_scope_fingerprint(&erin, "def").unwrap();
        assert_eq!(db.scope_fingerprint(&erin).unwrap().as_deref(), Some("def"));
    }
}
