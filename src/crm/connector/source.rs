//! [`ShadowSource`]: the generic `Source` of a hosted-CRM connector.
//!
//! The engine pulls the change feed page by page (`changes_since`) and decides only from its
//! mirror. A `ShadowSource` reads the CRM into its [`Shadow`] when a read is due and serves
//! the feed from the shadow:
//!
//! - the first `changes_since` of a process always reads the CRM; later ones read it again
//!   when the caller has caught up with the shadow and `min_interval` has passed (so one
//!   mirror refresh costs one read of the CRM, not one per page);
//! - a read is a **full reconciliation** when `full_every` has passed since the last one
//!   finished (kept in the shadow, so it survives restarts): the connector reads every
//!   record and every reader, which catches deletions and permission changes that do not
//!   move the CRM's change stamps; otherwise it is incremental;
//! - rows the connector could not read come back as `RowProblem`s with the next page;
//! - `get` answers from the shadow; `apply` hands the write-back to the connector, which
//!   checks the version the engine saw against the CRM and updates the shadow.
//!
//! A connector implements [`RemoteCrm`]; the policy above is the same for every CRM.

use super::pacing::Clock;
use super::shadow::Shadow;
use crate::crm::{
    ChangeBatch, CrmError, Cursor, Entity, RowProblem, Source, WriteBack, WriteOutcome,
};
use crate::model::RecordRef;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a connector does against its CRM.
pub trait RemoteCrm: Send {
    /// A short name for reports (`insightly:https://api.na1.insightly.com/v3.1/`).
    fn describe(&self) -> String;

    /// Reads the CRM into the shadow: incrementally, or — `full` — every record, so that
    /// deletions and permission changes are seen. Records it cannot read are skipped and
    /// returned as problems; an error leaves the shadow consistent (what was recorded stays,
    /// nothing is inferred from an incomplete read).
    fn pull(&mut self, shadow: &mut Shadow, full: bool) -> Result<PullReport, CrmError>;

    /// Carries out one write-back. A version older than the shadow's, or a record the CRM
    /// changed since it was read, is a [`CrmError::Conflict`], never an overwrite. Updates
    /// the shadow with what the CRM holds afterwards.
    fn write(&mut self, shadow: &mut Shadow, write: &WriteBack) -> Result<WriteOutcome, CrmError>;
}

/// What one read found besides entities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullReport {
    /// Rows skipped (reported, never fatal).
    pub problems: Vec<RowProblem>,
    /// Whether a full reconciliation completed (deletions and permissions verified).
    pub reconciled: bool,
}

/// When the CRM is read.
#[derive(Clone)]
pub struct PullPolicy {
    /// At most one read per this interval within a process (the first is always made).
    pub min_interval: Duration,
    /// A full reconciliation at least this often (`Duration::ZERO`: every read).
    pub full_every: Duration,
    pub clock: Arc<dyn Clock>,
}

/// Where the time of the last finished full reconciliation is kept.
pub const LAST_FULL_KEY: &str = "last_full_reconciliation";

struct Inner<R> {
    remote: R,
    shadow: Shadow,
    policy: PullPolicy,
    last_pull: Option<Instant>,
    problems: Vec<RowProblem>,
}

/// The generic connector `Source` (see the module docs).
pub struct ShadowSource<R> {
    inner: Mutex<Inner<R>>,
}

impl<R: RemoteCrm> ShadowSource<R> {
    pub fn new(remote: R, shadow: Shadow, policy: PullPolicy) -> Self {
        Self {
            inner: Mutex::new(Inner {
                remote,
                shadow,
                policy,
                last_pull: None,
                problems: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<R>> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reads the CRM now: `Some(full)` forces the kind of read, `None` lets the policy
    /// choose. Problems found are also handed out with the next page of the feed.
    pub fn pull_now(&self, full: Option<bool>) -> Result<PullReport, CrmError> {
        let mut inner = self.lock();
        let full = match full {
            Some(f) => f,
            None => inner.full_due()?,
        };
        inner.pull(full)
    }

    /// Runs `f` on the connector (tests read its counters through this).
    pub fn with_remote<T>(&self, f: impl FnOnce(&mut R) -> T) -> T {
        f(&mut self.lock().remote)
    }

    /// Runs `f` on the shadow.
    pub fn with_shadow<T>(&self, f: impl FnOnce(&mut Shadow) -> T) -> T {
        f(&mut self.lock().shadow)
    }
}

impl<R: RemoteCrm> Inner<R> {
    fn full_due(&self) -> Result<bool, CrmError> {
        let Some(last) = self.shadow.state(LAST_FULL_KEY)? else {
            return Ok(true);
        };
        let Ok(last) = chrono::DateTime::parse_from_rfc3339(&last) else {
            return Ok(true);
        };
        let elapsed = self.policy.clock.utc_now() - last.with_timezone(&chrono::Utc);
        Ok(elapsed
            .to_std()
            .map(|e| e >= self.policy.full_every)
            .unwrap_or(true))
    }

    fn pull(&mut self, full: bool) -> Result<PullReport, CrmError> {
        let started = self.policy.clock.utc_now();
        let report = self.remote.pull(&mut self.shadow, full)?;
        if full && report.reconciled {
            self.shadow
                .set_state(LAST_FULL_KEY, &started.to_rfc3339())?;
        }
        self.last_pull = Some(self.policy.clock.now());
        self.problems.extend(report.problems.iter().cloned());
        Ok(report)
    }

    fn pull_due(&self, cursor: Cursor) -> Result<bool, CrmError> {
        let Some(last) = self.last_pull else {
            return Ok(true);
        };
        let caught_up = cursor >= self.shadow.head()?;
        let waited =
            self.policy.clock.now().saturating_duration_since(last) >= self.policy.min_interval;
        Ok(caught_up && waited)
    }
}

impl<R: RemoteCrm> Source for ShadowSource<R> {
    fn describe(&self) -> String {
        self.lock().remote.describe()
    }

    /// The shadow's: the feed's versions are the shadow's, so a new shadow is a new feed (and
    /// the mirror must be re-mirrored from it, with `--accept-new-crm`).
    fn instance_id(&self) -> Result<String, CrmError> {
        self.lock().shadow.feed().instance_id()
    }

    fn changes_since(&self, cursor: Cursor, limit: usize) -> Result<ChangeBatch, CrmError> {
        let mut inner = self.lock();
        if inner.pull_due(cursor)? {
            let full = inner.full_due()?;
            inner.pull(full)?;
        }
        let mut batch = inner.shadow.feed().changes_since(cursor, limit)?;
        batch.problems.append(&mut inner.problems);
        Ok(batch)
    }

    fn get(&self, record: &RecordRef) -> Result<Option<(i64, Entity)>, CrmError> {
        Source::get(self.lock().shadow.feed(), record)
    }

    fn apply(&mut self, write: &WriteBack) -> Result<WriteOutcome, CrmError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.remote.write(&mut inner.shadow, write)
    }
}
