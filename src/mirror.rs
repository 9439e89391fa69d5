//! Refreshing the state DB's mirror of the CRM from a `crm::Source`.
//!
//! The engine never decides from a live CRM call: it pulls the change feed into the mirror
//! (one transaction per page, cursor included, so a crash resumes where it stopped), then
//! reads the typed model from the mirror.
//!
//! The mirror belongs to one CRM: the first refresh records the source's instance id, and
//! every refresh checks it, so a different CRM behind the same path (a restored or replaced
//! database, a wrong config) is refused instead of being read from a cursor that means
//! nothing to it. [`remirror`] accepts the new CRM on purpose: it reads its whole feed, and
//! only a complete read replaces the mirror (deletions are inferred from nothing less).

use crate::crm::{Change, CrmError, Cursor, EntityKind, OrgModel, RowProblem, Source};
use crate::store::{MirrorUpdate, StateDb, StoreError};
use crate::sync::affected::MirrorDelta;

/// Changes pulled per page of the feed.
pub const PAGE_SIZE: usize = 5_000;
/// Upper bound on pages per refresh (a feed longer than this resumes on the next refresh).
pub const MAX_PAGES: usize = 10_000;
/// Up to this many changed entities a refresh names them ([`Refresh::delta`]); beyond, it
/// says only that much changed (callers then treat every user as affected).
pub const MAX_DELTA: usize = 50_000;

/// What a refresh pulled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refresh {
    pub update: MirrorUpdate,
    /// Rows skipped because the CRM could not read them (reported, never fatal).
    pub problems: Vec<RowProblem>,
    /// Whether the feed had more than `MAX_PAGES` pages left.
    pub truncated: bool,
    /// The entities this refresh changed, when there were at most [`MAX_DELTA`] of them.
    pub delta: Option<MirrorDelta>,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("reading the CRM change feed: {0}")]
    Crm(#[from] CrmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured CRM is not the one the state DB mirrors.
    #[error(
        "the CRM at {source_name} is a different CRM (instance {found}) than the one this \
         state DB mirrors (instance {expected}); nothing was synced. Point the configuration \
         at the right CRM, or, if the CRM was replaced on purpose, re-run with \
         --accept-new-crm to re-mirror it in full (records it lacks are pulled back from \
         every phone)"
    )]
    DifferentCrm {
        source_name: String,
        expected: String,
        found: String,
    },
    /// A re-mirror could not read the whole feed: nothing was changed.
    #[error(
        "re-mirroring {source_name}: the change feed has more than {pages} pages of {PAGE_SIZE}; \
         nothing was changed"
    )]
    Incomplete { source_name: String, pages: usize },
}

impl RefreshError {
    /// Whether the CRM is a different one than the mirror's (an operator decision, exit 2).
    pub fn is_different_crm(&self) -> bool {
        matches!(self, RefreshError::DifferentCrm { .. })
    }
}

/// Refuses a CRM other than the one the mirror holds; records the id of the first one.
pub fn check_identity(state: &StateDb, source: &dyn Source) -> Result<(), RefreshError> {
    if let Some(found) = verify_identity(state, source)? {
        // The first refresh (or a state DB older than identity checks) adopts the CRM.
        state.set_crm_instance_id(&found)?;
    }
    Ok(())
}

/// [`check_identity`] without writing anything (dry runs): returns the source's id when the
/// mirror has none recorded yet.
pub fn verify_identity(
    state: &StateDb,
    source: &dyn Source,
) -> Result<Option<String>, RefreshError> {
    let found = source.instance_id()?;
    match state.crm_instance_id()? {
        Some(expected) if expected == found => Ok(None),
        Some(expected) => Err(RefreshError::DifferentCrm {
            source_name: source.describe(),
            expected,
            found,
        }),
        None => Ok(Some(found)),
    }
}

/// Pulls every change after the mirror's cursor into the mirror.
pub fn refresh(state: &StateDb, source: &dyn Source) -> Result<Refresh, RefreshError> {
    Ok(refresh_keeping(state, source, false)?.0)
}

/// The model as the mirror held it before a refresh, and as it holds it after.
pub struct BeforeAfter {
    pub before: OrgModel,
    pub after: OrgModel,
}

/// [`refresh`]; when `keep_before` and the feed is one page that changes the security
/// model (who may read what), also the whole model as mirrored before and after it, so the
/// caller can tell whom the change affects. (A longer feed, or a first refresh, is not
/// worth telling apart: `None`.)
pub fn refresh_keeping(
    state: &StateDb,
    source: &dyn Source,
    keep_before: bool,
) -> Result<(Refresh, Option<BeforeAfter>), RefreshError> {
    check_identity(state, source)?;
    let mut out = Refresh {
        delta: Some(MirrorDelta::default()),
        ..Refresh::default()
    };
    let mut kept = None;
    for page in 0..MAX_PAGES {
        let cursor = state.crm_cursor()?;
        let batch = source.changes_since(cursor, PAGE_SIZE)?;
        let security = batch
            .changes
            .iter()
            .any(|c| c.kind.is_security_model() || c.kind == EntityKind::Org);
        if keep_before && page == 0 && !batch.more && security && cursor.0 > 0 {
            let before = state.load_org_model()?;
            let mut after = before.clone();
            for change in &batch.changes {
                after.apply(change.clone());
            }
            kept = Some(BeforeAfter { before, after });
        }
        let update = state.apply_crm_changes(&batch)?;
        if let Some(delta) = &mut out.delta {
            for change in &batch.changes {
                delta.insert(change.kind, &change.id);
            }
            if delta.len() > MAX_DELTA {
                out.delta = None;
            }
        }
        out.update.kinds.extend(update.kinds);
        out.update.applied += update.applied;
        out.update.skipped += update.skipped;
        out.problems.extend(batch.problems);
        if !batch.more {
            return Ok((out, kept));
        }
    }
    out.truncated = true;
    Ok((out, kept))
}

/// What [`remirror`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remirror {
    /// The instance id the mirror held before (`None` if it held none).
    pub previous: Option<String>,
    pub instance: String,
    /// Entities in the new CRM.
    pub entities: usize,
    /// Mirrored entities the new CRM lacks (removed from the mirror, so pulled back).
    pub removed: usize,
    pub problems: Vec<RowProblem>,
}

/// Accepts the configured CRM as the mirror's, whatever it mirrored before: reads the whole
/// change feed from the start, and only when that read is complete replaces the mirror with
/// it in one transaction (entities it lacks are removed, so the next pass pulls them back
/// from the phones). A failed or truncated read changes nothing. Rows the new CRM cannot read
/// keep their last mirrored version, as in [`refresh`].
pub fn remirror(state: &StateDb, source: &dyn Source) -> Result<Remirror, RefreshError> {
    let instance = source.instance_id()?;
    let previous = state.crm_instance_id()?;
    let mut changes: Vec<Change> = Vec::new();
    let mut problems = Vec::new();
    let mut cursor = Cursor(0);
    let mut complete = false;
    for _ in 0..MAX_PAGES {
        let batch = source.changes_since(cursor, PAGE_SIZE)?;
        changes.extend(batch.changes);
        problems.extend(batch.problems);
        cursor = batch.next_cursor;
        if !batch.more {
            complete = true;
            break;
        }
    }
    if !complete {
        return Err(RefreshError::Incomplete {
            source_name: source.describe(),
            pages: MAX_PAGES,
        });
    }
    let entities = changes.iter().filter(|c| c.entity.is_some()).count();
    let removed = state.replace_mirror(&changes, &problems, cursor, &instance)?;
    Ok(Remirror {
        previous,
        instance,
        entities,
        removed,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::sqlite::SqliteCrm;
    use crate::crm::{ChangeBatch, Entity, WriteBack, WriteOutcome};
    use crate::model::RecordRef;
    use std::cell::Cell;
    use std::path::Path;
    use std::sync::Arc;

    const ORG: &str = include_str!("../tests/fixtures/example-org.json");

    fn crm_with(edit: impl FnOnce(&mut serde_json::Value)) -> SqliteCrm {
        let mut doc: serde_json::Value = serde_json::from_str(ORG).unwrap();
        edit(&mut doc);
        let mut crm = SqliteCrm::open(Path::new(":memory:")).unwrap();
        crm.load(&crate::crm::orgfile::parse("org", &doc.to_string()).unwrap())
            .unwrap();
        crm
    }

    /// A CRM whose feed fails after `pages_ok` pages (pages of one change each).
    struct Failing {
        inner: SqliteCrm,
        pages_ok: usize,
        calls: Cell<usize>,
    }

    impl Source for Failing {
        fn describe(&self) -> String {
            "failing".into()
        }
        fn instance_id(&self) -> Result<String, CrmError> {
            self.inner.instance_id()
        }
        fn changes_since(&self, cursor: Cursor, _limit: usize) -> Result<ChangeBatch, CrmError> {
            let n = self.calls.get();
            self.calls.set(n + 1);
            if n >= self.pages_ok {
                return Err(CrmError::Refused("the CRM went away".into()));
            }
            self.inner.changes_since(cursor, 1)
        }
        fn get(&self, record: &RecordRef) -> Result<Option<(i64, Entity)>, CrmError> {
            Source::get(&self.inner, record)
        }
        fn apply(&mut self, write: &WriteBack) -> Result<WriteOutcome, CrmError> {
            self.inner.apply(write)
        }
    }

    /// A CRM whose feed never ends (always "more"), without any change.
    struct Endless(SqliteCrm);

    impl Source for Endless {
        fn describe(&self) -> String {
            "endless".into()
        }
        fn instance_id(&self) -> Result<String, CrmError> {
            Ok("endless-instance".into())
        }
        fn changes_since(&self, cursor: Cursor, _limit: usize) -> Result<ChangeBatch, CrmError> {
            Ok(ChangeBatch {
                next_cursor: Cursor(cursor.0 + 1),
                more: true,
                ..ChangeBatch::default()
            })
        }
        fn get(&self, record: &RecordRef) -> Result<Option<(i64, Entity)>, CrmError> {
            Source::get(&self.0, record)
        }
        fn apply(&mut self, write: &WriteBack) -> Result<WriteOutcome, CrmError> {
            self.0.apply(write)
        }
    }

    #[test]
    fn a_truncated_remirror_changes_nothing() {
        let state = StateDb::open_in_memory().unwrap();
        let first = crm_with(|_| {});
        refresh(&state, &first).unwrap();
        let before = state.load_org_model().unwrap();
        let cursor = state.crm_cursor().unwrap();
        let err = remirror(&state, &Endless(crm_with(|_| {}))).unwrap_err();
        assert!(matches!(err, RefreshError::Incomplete { .. }), "{err}");
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        assert_eq!(state.load_org_model().unwrap(), before);
        assert_eq!(state.crm_cursor().unwrap(), cursor);
        assert_eq!(
            state.crm_instance_id().unwrap(),
            Some(first.instance_id().unwrap())
        );
    }

    #[test]
    fn a_different_crm_is_refused_and_the_first_one_is_adopted() {
        let state = StateDb::open_in_memory().unwrap();
        let first = crm_with(|_| {});
        refresh(&state, &first).unwrap();
        assert_eq!(
            state.crm_instance_id().unwrap(),
            Some(first.instance_id().unwrap())
        );
        let cursor = state.crm_cursor().unwrap();
        let other = crm_with(|_| {});
        assert_ne!(other.instance_id().unwrap(), first.instance_id().unwrap());
        let err = refresh(&state, &other).unwrap_err();
        assert!(err.is_different_crm(), "{err}");
        assert!(err.to_string().contains("--accept-new-crm"), "{err}");
        assert_eq!(state.crm_cursor().unwrap(), cursor, "nothing was read");
        // The same CRM again is fine.
        refresh(&state, &first).unwrap();
    }

    #[test]
    fn remirror_replaces_the_mirror_with_a_complete_read_only() {
        let state = StateDb::open_in_memory().unwrap();
        let first = crm_with(|_| {});
        refresh(&state, &first).unwrap();
        let before = state.load_org_model().unwrap();
        assert!(!before.contacts.is_empty());
        // The new CRM lacks every contact.
        let second = crm_with(|doc| {
            doc["contacts"] = serde_json::json!([]);
            doc["events"] = serde_json::json!([]);
        });

        // A read that fails half-way changes nothing.
        let failing = Failing {
            inner: second,
            pages_ok: 3,
            calls: Cell::new(0),
        };
        let err = remirror(&state, &failing).unwrap_err();
        assert!(matches!(err, RefreshError::Crm(_)), "{err}");
        assert_eq!(state.load_org_model().unwrap(), before);
        assert_eq!(
            state.crm_instance_id().unwrap(),
            Some(first.instance_id().unwrap())
        );

        // A complete read replaces it: the contacts are gone, the new id recorded.
        let second = failing.inner;
        let done = remirror(&state, &second).unwrap();
        assert_eq!(done.previous, Some(first.instance_id().unwrap()));
        assert_eq!(done.instance, second.instance_id().unwrap());
        assert!(done.removed >= before.contacts.len(), "{done:?}");
        let after = state.load_org_model().unwrap();
        let (direct, _) = second.snapshot().unwrap();
        assert_eq!(after, direct);
        refresh(&state, &second).unwrap();
        assert_eq!(state.load_org_model().unwrap(), direct, "refresh continues");
    }

    #[test]
    fn a_permission_change_keeps_the_model_before_it_without_a_second_copy_of_the_records() {
        let state = StateDb::open_in_memory().unwrap();
        let mut crm = crm_with(|_| {});
        refresh(&state, &crm).unwrap();
        let hank = crate::model::UserId::new("hank").unwrap();

        // hank moves to another role: before and after hold their records once.
        let mut model = state.load_org_model().unwrap();
        model.users.get_mut(&hank).unwrap().role = Some("rep_east".parse().unwrap());
        crm.load(&model).unwrap();
        let (_, kept) = refresh_keeping(&state, &crm, true).unwrap();
        let kept = kept.expect("a one-page permission change keeps the model before it");
        assert_ne!(kept.before.users[&hank].role, kept.after.users[&hank].role);
        assert!(Arc::ptr_eq(&kept.before.contacts, &kept.after.contacts));
        assert!(Arc::ptr_eq(&kept.before.events, &kept.after.events));
        assert!(Arc::ptr_eq(&kept.before.versions, &kept.after.versions));
        assert_eq!(kept.after, state.load_org_model().unwrap());

        // With a contact changed too, the contacts are copied (the model before keeps the
        // old one); the events are still shared.
        let mut model = state.load_org_model().unwrap();
        model.users.get_mut(&hank).unwrap().role = Some("rep_west".parse().unwrap());
        let c1: crate::model::CrmId = "c1".parse().unwrap();
        model.contacts_mut().get_mut(&c1).unwrap().title = "Changed".into();
        crm.load(&model).unwrap();
        let (_, kept) = refresh_keeping(&state, &crm, true).unwrap();
        let kept = kept.unwrap();
        assert!(!Arc::ptr_eq(&kept.before.contacts, &kept.after.contacts));
        assert_ne!(kept.before.contacts[&c1].title, "Changed");
        assert_eq!(kept.after.contacts[&c1].title, "Changed");
        assert!(Arc::ptr_eq(&kept.before.events, &kept.after.events));
        assert_eq!(kept.after, state.load_org_model().unwrap());
    }
}
