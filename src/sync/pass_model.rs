//! The mirror as one pass reads it: the security model (users, roles, profiles, teams,
//! sharing rules, org settings) always — it is small, and who is synced, into which account,
//! under which scope is decided from it — and the records with the access index only once a
//! user's pass needs a plan. A quiet pass over a large org never loads them.

use crate::crm::{Cursor, OrgModel};
use crate::model::{CrmId, ObjectKind, RecordRef};
use crate::security::Access;
use crate::store::{StateDb, StoreError};
use std::cell::OnceCell;
use std::collections::BTreeSet;

/// What the mirror update at the start of a pass changed: the records whose synced form or
/// selection may differ (`sync::affected::touched_records`), when the update changed no
/// security-model entity. A user whose last complete plan was made at `from` needs only
/// these records planned again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    pub from: Cursor,
    pub touched: BTreeSet<RecordRef>,
}

impl Changed {
    /// The touched records of `kind`.
    pub fn ids(&self, kind: ObjectKind) -> BTreeSet<CrmId> {
        self.touched
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.id.clone())
            .collect()
    }
}

/// One pass's view of the mirror. The cells live in the pass's frame (the access index
/// borrows the model), so both outlive every user's pass.
pub struct PassModel<'c> {
    security: &'c OrgModel,
    model: &'c OnceCell<OrgModel>,
    access: &'c OnceCell<Access<'c>>,
    given: Option<&'c Access<'c>>,
    given_model: Option<&'c OrgModel>,
    changed: Option<Changed>,
    state: &'c StateDb,
    /// Records in flight (see [`PassModel::records`]).
    records: tokio::sync::Semaphore,
    records_budget: usize,
}

impl<'c> PassModel<'c> {
    /// `security` is the security model (or the whole model, when the caller has it);
    /// `model` may already hold the whole model, else it is loaded from `state` when first
    /// needed.
    pub fn new(
        security: &'c OrgModel,
        model: &'c OnceCell<OrgModel>,
        access: &'c OnceCell<Access<'c>>,
        state: &'c StateDb,
    ) -> Self {
        let default_budget = crate::config::SyncConfig::default().max_records_in_flight;
        Self {
            security,
            model,
            access,
            given: None,
            given_model: None,
            changed: None,
            state,
            records: tokio::sync::Semaphore::new(default_budget),
            records_budget: default_budget,
        }
    }

    /// At most `budget` records planned and written at once across the pass's users.
    pub fn with_records_in_flight(mut self, budget: usize) -> Self {
        let budget = budget.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self.records = tokio::sync::Semaphore::new(budget);
        self.records_budget = budget;
        self
    }

    /// Waits until `records` more records may be planned and written (a plan larger than
    /// the whole budget waits for all of it: it runs alone). The permit is held until the
    /// plan is carried out; what a plan holds in memory grows with its records, so this
    /// bounds the pass's memory whatever the number of users synced at once.
    pub async fn records(&self, records: usize) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let wanted = records.clamp(1, self.records_budget);
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        // Never closed: `None` would only let the plan go ahead unbounded.
        self.records.acquire_many(wanted).await.ok()
    }

    /// Records what the mirror update at the start of the pass changed.
    pub fn with_changed(mut self, changed: Option<Changed>) -> Self {
        self.changed = changed;
        self
    }

    /// What the mirror update at the start of the pass changed, when it is known.
    pub fn changed(&self) -> Option<&Changed> {
        self.changed.as_ref()
    }

    /// Uses `access` (built by the caller over the whole model as mirrored now) instead of
    /// loading one.
    pub fn with_access(mut self, access: Option<&'c Access<'c>>) -> Self {
        self.given = access;
        self
    }

    /// Uses `model` (the whole model as mirrored now, kept by the caller) instead of loading
    /// it when the access index is first needed.
    pub fn with_model(mut self, model: Option<&'c OrgModel>) -> Self {
        self.given_model = model;
        self
    }

    /// The whole model, if it is at hand without reading the mirror (given, or read
    /// already), and whether its access index is built yet.
    pub fn loaded(&self) -> (Option<&'c OrgModel>, bool) {
        let access = self.given.or_else(|| self.access.get());
        let model = access
            .map(|a| a.model())
            .or(self.given_model)
            .or_else(|| self.model.get());
        (model, access.is_some())
    }

    /// Users, roles, profiles, teams, sharing rules and org settings.
    pub fn security(&self) -> &'c OrgModel {
        self.security
    }

    /// The access index over the whole model, which is read from the mirror the first time
    /// it is asked for (the mirror does not change within a pass: the writer lock is held).
    pub fn access(&self) -> Result<&'c Access<'c>, StoreError> {
        if let Some(access) = self.given.or_else(|| self.access.get()) {
            return Ok(access);
        }
        let model = match self.given_model.or_else(|| self.model.get()) {
            Some(model) => model,
            None => {
                let loaded = self.state.load_org_model()?;
                self.model.get_or_init(|| loaded)
            }
        };
        Ok(self.access.get_or_init(|| Access::build(model)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn plans_beyond_the_budget_wait_for_those_in_flight() {
        let state = StateDb::open_in_memory().unwrap();
        let model = OrgModel::default();
        let (whole, access) = (OnceCell::new(), OnceCell::new());
        let pass = PassModel::new(&model, &whole, &access, &state).with_records_in_flight(10);
        let first = pass.records(6).await;
        assert!(first.is_some());
        assert!(
            pass.records(6).now_or_never().is_none(),
            "6 + 6 records exceed the budget of 10: the second plan waits"
        );
        let small = pass.records(4).now_or_never().flatten();
        assert!(small.is_some(), "6 + 4 fit");
        drop((first, small));
        // A plan larger than the whole budget takes all of it: it runs alone.
        let big = pass.records(50).now_or_never().flatten();
        assert!(big.is_some());
        assert!(pass.records(1).now_or_never().is_none());
        drop(big);
        assert!(pass.records(1).now_or_never().flatten().is_some());
    }
}
