//! Refreshing the state DB's mirror of the CRM from a `crm::Source`.
//!
//! The engine never decides from a live CRM call: it pulls the change feed into the mirror
//! (one transaction per page, cursor included, so a crash resumes where it stopped), then
//! reads the typed model from the mirror.

use crate::crm::{CrmError, RowProblem, Source};
use crate::store::{MirrorUpdate, StateDb, StoreError};

/// Changes pulled per page of the feed.
pub const PAGE_SIZE: usize = 5_000;
/// Upper bound on pages per refresh (a feed longer than this resumes on the next refresh).
pub const MAX_PAGES: usize = 10_000;

/// What a refresh pulled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refresh {
    pub update: MirrorUpdate,
    /// Rows skipped because the CRM could not read them (reported, never fatal).
    pub problems: Vec<RowProblem>,
    /// Whether the feed had more than `MAX_PAGES` pages left.
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("reading the CRM change feed: {0}")]
    Crm(#[from] CrmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pulls every change after the mirror's cursor into the mirror.
pub fn refresh(state: &StateDb, source: &dyn Source) -> Result<Refresh, RefreshError> {
    let mut out = Refresh::default();
    for _ in 0..MAX_PAGES {
        let cursor = state.crm_cursor()?;
        let batch = source.changes_since(cursor, PAGE_SIZE)?;
        let update = state.apply_crm_changes(&batch)?;
        out.update.kinds.extend(update.kinds);
        out.update.applied += update.applied;
        out.update.skipped += update.skipped;
        out.problems.extend(batch.problems);
        if !batch.more {
            return Ok(out);
        }
    }
    out.truncated = true;
    Ok(out)
}
