//! `crmsync run`: the sync worker. It shares the one-pass code path ([`Engine`]) with
//! `crmsync sync`; what it adds is *which users* each pass covers, and running forever.
//!
//! **A cycle** (every `[worker] interval_secs`):
//!
//! 1. takes the state DB's writer lock (waiting at most `lock_wait_secs`; if another
//!    command holds it, the cycle is skipped, logged and counted) — per cycle, so admins'
//!    `scope set` and the like get their turn between cycles;
//! 2. reads the CRM's change feed from the point the worker last processed
//!    (`worker_cursor`) and takes what is new into the mirror;
//! 3. finds the users owed a pass ([`crate::sync::affected`]): what the CRM change
//!    touched (records → holders and who should have them; permissions; own entities;
//!    team scopes), scope fingerprints that differ, pending work (pending links, queued
//!    revocations, failing users), passes owed from earlier cycles, and the staggered
//!    schedule (phone poll every `phone_poll_minutes`, full reconciliation every
//!    `reconcile_minutes`); users waiting out a backoff are skipped;
//! 4. runs one [`Engine`] pass for exactly those users, on the mirror as refreshed
//!    (bounded concurrency, `sync.concurrency`), and nothing at all when nobody is due;
//! 5. records each user's outcome (backoff after failures, with jitter and a cap), the
//!    processed cursor and the schedules in one transaction, and releases the lock.
//!
//! **A quiet cycle** (no CRM change, nobody due) costs: the lock, opening the state DB,
//! one read of the CRM's change feed (one indexed query on the embedded CRM), a few small
//! state-DB queries (scope overrides, pending work, sync rows), and no Google call and no
//! model load. Phone polls are the steady cost: 3 Google calls per polled user (the two
//! incremental listings and the ACL listing; a user with nothing new is not planned, and
//! the records are not loaded unless someone is). A cycle with CRM changes loads the
//! model and builds the access index once (twice for permission changes: before and
//! after); the pass plans from that index, and users whose last plan was made just before
//! the change have only the touched records planned.
//!
//! **Stopping.** On SIGINT/SIGTERM no further user starts; users in flight finish within
//! `drain_timeout_secs` (else the worker exits anyway: every write is crash-safe and the
//! next start resumes from the stored cursor and owed passes); a second signal exits at
//! once. **Google down for everyone**: see [`remote`]; the worker then waits
//! `interval_secs`, doubling per consecutive outage up to `outage_backoff_cap_secs`.

pub mod config;
pub mod http;
pub mod metrics;
pub mod remote;
pub mod schedule;

pub use config::WorkerConfig;

use crate::config::Config;
use crate::crm::{ChangeBatch, CrmError, Cursor, EntityKind, OrgModel, Source};
use crate::ics::serve::Clock;
use crate::mirror::{self, RefreshError};
use crate::model::{RecordRef, UserId};
use crate::revoke::remote::Offboarding;
use crate::scope::{EffectiveScope, ScopeLayer};
use crate::security::{Access, RecordIndex};
use crate::store::lock::{LockError, WriterLock};
use crate::store::{StateDb, StoreError};
use crate::sync::affected::{
    by_mirror, by_pending, by_scope, everyone, touched_records, Affected, Before, MirrorDelta,
    MirrorInputs, Reason,
};
use crate::sync::engine::{Engine, EngineError, PassControl, RunReport, SyncOptions, UserStatus};
use crate::sync::pass_model::Changed;
use crate::sync::remote::Remote;
use chrono::{DateTime, Utc};
use metrics::{CycleOutcome, Metrics};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use remote::Observed;
use schedule::{PassOutcome, UserSchedule};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What stops the worker (everything else is logged and retried next cycle).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Mirror(#[from] RefreshError),
    #[error("reading the CRM change feed: {0}")]
    Crm(#[from] CrmError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the worker's CRM connection was lost in an interrupted cycle")]
    CrmGone,
    #[error("a blocking task failed: {0}")]
    Join(String),
}

impl WorkerError {
    /// Errors that no later cycle can fix (an operator must act): the worker exits.
    pub fn is_fatal(&self) -> bool {
        match self {
            WorkerError::Mirror(e) => e.is_different_crm(),
            WorkerError::Engine(EngineError::Mirror(e)) => e.is_different_crm(),
            WorkerError::Store(e) | WorkerError::Engine(EngineError::Store(e)) => matches!(
                e,
                StoreError::Missing { .. } | StoreError::NotInitialised { .. }
            ),
            WorkerError::CrmGone => true,
            _ => false,
        }
    }
}

/// What one cycle did.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub outcome: CycleOutcome,
    /// CRM changes taken into the mirror.
    pub crm_changes: usize,
    /// The users the cycle ran a pass for (or tried to), with why.
    pub due: Affected,
    /// Users owed a pass but waiting out a backoff.
    pub in_backoff: Vec<UserId>,
    /// Users for whom Google was called.
    pub users_called: BTreeSet<UserId>,
    /// Backoffs started by this cycle.
    pub backoffs_started: usize,
    /// The engine's report (`None` when nobody was due).
    pub run: Option<RunReport>,
}

impl CycleReport {
    fn empty(outcome: CycleOutcome) -> Self {
        Self {
            outcome,
            crm_changes: 0,
            due: Affected::default(),
            in_backoff: Vec::new(),
            users_called: BTreeSet::new(),
            backoffs_started: 0,
            run: None,
        }
    }
}

/// How `run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Stopped by a signal; users in flight finished.
    Drained,
    /// Stopped by a signal; users in flight were abandoned after the drain timeout.
    DrainTimedOut,
    /// A second signal: stopped at once.
    Forced,
}

/// The signal count `run` watches (the binary feeds SIGINT/SIGTERM in; tests their own).
pub fn signal_channel() -> (watch::Sender<u32>, watch::Receiver<u32>) {
    watch::channel(0)
}

/// What the worker remembers between cycles.
#[derive(Default)]
struct Memory {
    /// Loaded on the first cycle.
    schedules: Option<BTreeMap<UserId, UserSchedule>>,
    /// The scope overrides the last cycle saw (a change means fingerprints are compared).
    overrides: Option<BTreeMap<UserId, ScopeLayer>>,
    /// Consecutive cycles that found Google unreachable for everyone.
    outages: u32,
    /// The whole model as the mirror held it after the last cycle: the next cycle applies
    /// the CRM's changes to it instead of reading the mirror again.
    model: Option<KeptModel>,
}

/// The mirror's model kept between cycles, for one CRM instance at one cursor.
struct KeptModel {
    instance: Option<String>,
    at: Cursor,
    /// When it was last read from the mirror: it is read afresh every reconcile period, so
    /// whatever changed the mirror behind the cursor (a replaced mirror) is taken in.
    loaded_at: DateTime<Utc>,
    model: OrgModel,
    /// The record half of the permission index over `model`, when one was built: the next
    /// cycle patches it with the record changes instead of indexing every record again.
    /// Dropped when the security model changed (the next index is built afresh).
    records: Option<RecordIndex>,
}

/// The sync worker.
pub struct Worker<R> {
    config: Config,
    crm: RefCell<Option<Box<dyn Source>>>,
    remote: Observed<R>,
    metrics: Arc<Metrics>,
    clock: Clock,
    stop: AtomicBool,
    memory: RefCell<Memory>,
    rng: RefCell<StdRng>,
}

/// The CRM feed read by a cycle.
struct Feed {
    batches: Vec<ChangeBatch>,
    delta: MirrorDelta,
    /// Where this feed starts (the worker's cursor).
    from: Cursor,
    /// Where the mirror stood before this cycle.
    mirror_at: Cursor,
    /// Where the feed ended.
    end: Cursor,
    /// The worker never processed this mirror before: it cannot know what changed.
    first_run: bool,
}

impl<R: Remote + Offboarding> Worker<R> {
    /// A worker over `crm` and Google (`remote`), counting into `metrics`, with `clock` as
    /// "now" and `seed` for the backoff jitter.
    pub fn new(
        config: Config,
        crm: Box<dyn Source>,
        remote: R,
        metrics: Arc<Metrics>,
        clock: Clock,
        seed: u64,
    ) -> Self {
        let unreachable_after = config.worker.unreachable_after_users;
        Self {
            remote: Observed::new(remote, metrics.clone(), unreachable_after),
            config,
            crm: RefCell::new(Some(crm)),
            metrics,
            clock,
            stop: AtomicBool::new(false),
            memory: RefCell::new(Memory::default()),
            rng: RefCell::new(StdRng::seed_from_u64(seed)),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn remote(&self) -> &R {
        self.remote.inner()
    }

    /// Asks the current cycle to start no further user (what the first signal does).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// How long to wait after a cycle: the interval, or the global outage backoff.
    pub fn next_delay(&self) -> Duration {
        let outages = self.memory.borrow().outages;
        let interval = self.config.worker.interval();
        if outages == 0 {
            return interval;
        }
        let cap = Duration::from_secs(self.config.worker.outage_backoff_cap_secs);
        interval
            .checked_mul(1u32 << (outages - 1).min(20))
            .unwrap_or(cap)
            .min(cap)
            .max(interval.min(cap))
    }

    /// Runs cycles until a signal (`signals` counts them): the first stops starting users
    /// and drains those in flight (up to `drain_timeout_secs`), the second stops at once.
    pub async fn run(&self, signals: watch::Receiver<u32>) -> Result<Exit, WorkerError> {
        self.metrics.started((self.clock)());
        let wait_for = |rx: &watch::Receiver<u32>, n: u32| {
            let mut rx = rx.clone();
            async move {
                if rx.wait_for(|count| *count >= n).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tracing::info!(
            interval_secs = self.config.worker.interval_secs,
            "sync worker started"
        );
        // Bounded by the signals: every turn ends in one (or in a fatal error).
        loop {
            if *signals.borrow() >= 1 {
                return Ok(Exit::Drained);
            }
            let cycle = self.cycle();
            tokio::pin!(cycle);
            let finished = {
                let first = wait_for(&signals, 1);
                tokio::select! {
                    r = &mut cycle => Some(r),
                    () = first => None,
                }
            };
            let result = match finished {
                Some(r) => r,
                None => {
                    self.request_stop();
                    tracing::info!(
                        drain_timeout_secs = self.config.worker.drain_timeout_secs,
                        "stopping: finishing the users already being synced"
                    );
                    let second = wait_for(&signals, 2);
                    let drain = tokio::time::sleep(self.config.worker.drain_timeout());
                    return tokio::select! {
                        r = &mut cycle => {
                            if let Err(e) = r {
                                tracing::warn!(error = %e, "the last cycle failed while stopping");
                            }
                            tracing::info!("sync worker stopped");
                            Ok(Exit::Drained)
                        }
                        () = drain => {
                            tracing::warn!("drain timeout: stopping with users in flight (the next start resumes)");
                            Ok(Exit::DrainTimedOut)
                        }
                        () = second => Ok(Exit::Forced),
                    };
                }
            };
            if let Err(e) = result {
                if e.is_fatal() {
                    return Err(e);
                }
                tracing::error!(
                    error_kind = error_kind(&e),
                    "worker cycle failed; the next one tries again"
                );
            }
            let delay = self.next_delay();
            let first = wait_for(&signals, 1);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = first => return Ok(Exit::Drained),
            }
        }
    }

    /// One cycle (see the module docs).
    pub async fn cycle(&self) -> Result<CycleReport, WorkerError> {
        let started = std::time::Instant::now();
        let now = (self.clock)();
        let result = self.cycle_at(now).await;
        let outcome = match &result {
            Ok(r) => r.outcome,
            Err(_) => CycleOutcome::Error,
        };
        self.metrics
            .cycle_finished(outcome, started.elapsed(), (self.clock)());
        if let Ok(r) = &result {
            tracing::info!(
                outcome = outcome.label(),
                crm_changes = r.crm_changes,
                users = r.due.len(),
                users_called = r.users_called.len(),
                in_backoff = r.in_backoff.len(),
                duration_ms = started.elapsed().as_millis() as u64,
                "worker cycle finished"
            );
        }
        result
    }

    async fn cycle_at(&self, now: DateTime<Utc>) -> Result<CycleReport, WorkerError> {
        let path = self.config.state.path.clone();
        let wait = self.config.worker.lock_wait();
        let acquired = tokio::task::spawn_blocking(move || WriterLock::acquire(&path, "run", wait))
            .await
            .map_err(|e| WorkerError::Join(e.to_string()))?;
        let guard = match acquired {
            Ok(guard) => guard,
            Err(LockError::Held { holder, waited, .. }) => {
                let holder = holder.map(|h| (h.command.clone(), h.pid));
                tracing::warn!(
                    holder_command = holder.as_ref().map(|h| h.0.as_str()).unwrap_or(""),
                    holder_pid = holder.as_ref().map_or(0, |h| h.1),
                    "worker cycle skipped: another command holds the state DB's writer lock"
                );
                self.metrics.lock_busy(holder, waited);
                return Ok(CycleReport::empty(CycleOutcome::LockBusy));
            }
            Err(e) => return Err(e.into()),
        };
        self.metrics.lock_taken(guard.waited());
        let state =
            StateDb::open_existing_with(&self.config.state.path, self.config.state.busy_timeout());
        let result = match state {
            Ok(state) => {
                let mut slot = self.crm.borrow_mut().take();
                let result = self.locked_cycle(&state, &mut slot, now).await;
                *self.crm.borrow_mut() = slot;
                result
            }
            Err(e) => Err(e.into()),
        };
        drop(guard);
        self.metrics.lock_released();
        result
    }

    /// Keeps `kept` for the next cycle if it is still the mirror's model (a pass that wrote
    /// to the CRM refreshed the mirror past it: the next cycle reads it afresh).
    fn keep_model(&self, state: &StateDb, kept: KeptModel) -> Result<(), WorkerError> {
        if state.crm_cursor()? == kept.at {
            self.memory.borrow_mut().model = Some(kept);
        }
        Ok(())
    }

    /// Reads the feed from where the worker stopped; does not touch the mirror yet.
    fn read_feed(&self, state: &StateDb, crm: &dyn Source) -> Result<Feed, WorkerError> {
        mirror::check_identity(state, crm)?;
        let mirror_at = state.crm_cursor()?;
        let (from, first_run) = match state.worker_cursor()? {
            Some(w) if w <= mirror_at => (w, false),
            _ => (mirror_at, true),
        };
        let mut batches = Vec::new();
        let mut cursor = from;
        for _ in 0..mirror::MAX_PAGES {
            let batch = crm.changes_since(cursor, mirror::PAGE_SIZE)?;
            cursor = batch.next_cursor.max(cursor);
            let more = batch.more;
            batches.push(batch);
            if !more {
                break;
            }
        }
        let mut delta = MirrorDelta::from_changes(batches.iter().flat_map(|b| &b.changes));
        if from < mirror_at && delta.security_model_changed() {
            // Another process took part of this feed into the mirror: the mirror as it is
            // already holds those security changes, so it cannot serve as "before".
            for c in batches.iter().flat_map(|b| &b.changes) {
                if !(c.kind.is_security_model() || c.kind == EntityKind::Org) {
                    continue;
                }
                let seen = c.version <= mirror_at.0
                    || state
                        .mirror_version(c.kind, &c.id)?
                        .is_some_and(|v| v > from.0);
                if seen {
                    delta.before_incomplete = true;
                    break;
                }
            }
        }
        Ok(Feed {
            batches,
            delta,
            from,
            mirror_at,
            end: cursor,
            first_run,
        })
    }

    /// Takes what the mirror does not hold yet into it; returns how many changes.
    fn apply_feed(state: &StateDb, feed: &Feed) -> Result<usize, WorkerError> {
        let mut applied = 0;
        let after = |v: i64| v > feed.mirror_at.0;
        for batch in &feed.batches {
            if batch.next_cursor <= feed.mirror_at {
                continue;
            }
            let fresh = ChangeBatch {
                changes: batch
                    .changes
                    .iter()
                    .filter(|c| after(c.version))
                    .cloned()
                    .collect(),
                problems: batch
                    .problems
                    .iter()
                    .filter(|p| after(p.version))
                    .cloned()
                    .collect(),
                next_cursor: batch.next_cursor,
                more: batch.more,
            };
            applied += state.apply_crm_changes(&fresh)?.applied;
        }
        Ok(applied)
    }

    async fn locked_cycle(
        &self,
        state: &StateDb,
        slot: &mut Option<Box<dyn Source>>,
        now: DateTime<Utc>,
    ) -> Result<CycleReport, WorkerError> {
        let feed = {
            let crm = slot.as_deref().ok_or(WorkerError::CrmGone)?;
            self.read_feed(state, crm)?
        };
        // The model kept from the last cycle, when the mirror is still where it left it.
        let instance = state.crm_instance_id()?;
        let reload = Duration::from_secs(self.config.worker.reconcile_minutes * 60);
        let mut kept = self.memory.borrow_mut().model.take().filter(|k| {
            k.at == feed.mirror_at
                && k.instance == instance
                && (reload.is_zero() || (now - k.loaded_at).to_std().is_ok_and(|age| age < reload))
        });
        let before = if feed.delta.security_model_changed() && !feed.delta.before_incomplete {
            Some(match &kept {
                Some(k) => k.model.clone(),
                None => state.load_org_model()?,
            })
        } else {
            None
        };
        let crm_changes = Self::apply_feed(state, &feed)?;
        self.metrics.mirror_refreshed(now, crm_changes);
        let mirror_now = state.crm_cursor()?;
        // The records the feed changed, for the kept index (`None`: it changed more).
        let mut record_changes: Option<Vec<RecordRef>> = Some(Vec::new());
        if let Some(k) = &mut kept {
            // What `apply_feed` took into the mirror, the same way.
            for change in feed
                .batches
                .iter()
                .filter(|b| b.next_cursor > feed.mirror_at)
                .flat_map(|b| &b.changes)
                .filter(|c| c.version > feed.mirror_at.0)
            {
                match (change.kind.as_object(), &mut record_changes) {
                    (Some(kind), Some(list)) => {
                        if let Ok(id) = change.id.parse() {
                            list.push(RecordRef::new(kind, id));
                        } else {
                            record_changes = None;
                        }
                    }
                    _ => record_changes = None,
                }
                k.model.apply(change.clone());
            }
            k.at = mirror_now;
        }

        // Who is owed a pass.
        let overrides = state.all_scope_overrides()?;
        let rows = state.sync_users()?;
        let (first_cycle, overrides_changed) = {
            let memory = self.memory.borrow();
            (
                memory.schedules.is_none(),
                memory.overrides.as_ref() != Some(&overrides),
            )
        };
        let need_model =
            !feed.delta.is_empty() || overrides_changed || first_cycle || feed.first_run;
        let mut owed = Affected::default();
        let mut known: BTreeSet<UserId> = rows
            .iter()
            .filter_map(|r| UserId::new(r.user_id.as_str()).ok())
            .collect();
        // The whole model when the mirror changed (who a change affects is decided on it,
        // and the pass below plans from the same index); the security model is enough to
        // resolve scopes otherwise.
        // (The kept model serves as both; it is read from the mirror when there is none.)
        let mut kept = match kept {
            Some(k) => k,
            None => {
                let model = state.load_org_model()?;
                self.metrics.model_loaded();
                KeptModel {
                    instance: instance.clone(),
                    at: mirror_now,
                    loaded_at: now,
                    model,
                    records: None,
                }
            }
        };
        // The index of the model as it is now: the kept record half patched with the
        // records the feed changed, or (after a security change, or with none kept) built.
        let mut kept_records = kept.records.take();
        let after_model = Some(&kept.model).filter(|_| need_model);
        let after_access = after_model.filter(|_| !feed.delta.is_empty()).map(|model| {
            let access = match (kept_records.take(), &record_changes) {
                (Some(records), Some(changed)) => Access::patched(model, records, changed),
                _ => Access::build(model),
            };
            self.metrics.index_made(access.was_patched());
            access
        });
        let mut mirror_changed = None;
        if let Some(after) = after_model {
            known.extend(after.users.keys().cloned());
            let resolved = crate::scope::resolve_all(&self.config.scope, after, &overrides);
            let mut scopes: BTreeMap<UserId, EffectiveScope> = BTreeMap::new();
            let mut effective: BTreeMap<UserId, String> = BTreeMap::new();
            for (user, r) in resolved {
                if let Ok(r) = r {
                    effective.insert(user.clone(), r.fingerprint);
                    scopes.insert(user, r.scope);
                }
            }
            owed.merge(by_scope(&state.stored_scope_fingerprints()?, &effective));
            if let Some(after_access) = &after_access {
                let touched = touched_records(before.as_ref(), after, &feed.delta);
                let holders = state.link_holders(&touched)?;
                let before_access = before.as_ref().map(Access::build);
                let mirror = by_mirror(&MirrorInputs {
                    before: before_access.as_ref().map(Before::Index),
                    after: after_access,
                    delta: &feed.delta,
                    touched: &touched,
                    holders: &holders,
                    scopes: &scopes,
                    now,
                });
                // Whom the update leaves alone keeps their last complete plan (their next
                // pass may be quiet).
                if !feed.first_run {
                    let users: BTreeSet<UserId> = mirror.ids().cloned().collect();
                    state.advance_planned(feed.from, feed.end, &users)?;
                    if !feed.delta.security_model_changed() {
                        mirror_changed = Some(Changed {
                            from: feed.from,
                            touched,
                        });
                    }
                }
                owed.merge(mirror);
            }
            if feed.first_run {
                owed.merge(everyone(after, Reason::Startup));
            }
        } else {
            known.extend(state.mirrored_user_ids()?);
        }
        if feed.first_run {
            for user in &known {
                if rows.iter().any(|r| r.user_id == user.as_str()) {
                    owed.add(user, Reason::Startup);
                }
            }
        }
        owed.merge(by_pending(&state.pending_work()?));
        for r in state.open_revocations()? {
            if let Ok(user) = UserId::new(r.user_id.as_str()) {
                known.insert(user);
            }
        }

        // The schedule: owed passes, phone polls, reconciliations, backoffs.
        let poll = Duration::from_secs(self.config.worker.phone_poll_minutes * 60);
        let reconcile = Duration::from_secs(self.config.worker.reconcile_minutes * 60);
        let (due, in_backoff, mut changed, forget) = {
            let mut memory = self.memory.borrow_mut();
            memory.overrides = Some(overrides);
            if memory.schedules.is_none() {
                let stored = state.worker_users()?;
                memory.schedules = Some(
                    stored
                        .iter()
                        .map(|(u, row)| (u.clone(), UserSchedule::from_row(row)))
                        .collect(),
                );
            }
            let mut changed: BTreeSet<UserId> = BTreeSet::new();
            let schedules = memory.schedules.get_or_insert_with(BTreeMap::new);
            let forget: Vec<UserId> = schedules
                .keys()
                .filter(|u| !known.contains(*u))
                .cloned()
                .collect();
            for user in &forget {
                schedules.remove(user);
            }
            for row in rows.iter().filter(|r| r.holds_data()) {
                let Ok(user) = UserId::new(row.user_id.as_str()) else {
                    continue;
                };
                let s = schedules.entry(user.clone()).or_insert_with(|| {
                    changed.insert(user.clone());
                    UserSchedule::first_seen(now, poll, reconcile)
                });
                if s.poll_due(&user, poll, now) {
                    owed.add(&user, Reason::PhonePoll);
                }
                if s.reconcile_due(&user, reconcile, now) {
                    owed.add(&user, Reason::Reconcile);
                }
            }
            for (user, s) in schedules.iter() {
                for reason in &s.pending {
                    owed.add(user, *reason);
                }
            }
            let mut due = Affected::default();
            let mut in_backoff = Vec::new();
            for (user, reasons) in owed.users {
                if !known.contains(&user) {
                    continue;
                }
                let s = schedules
                    .entry(user.clone())
                    .or_insert_with(|| UserSchedule::first_seen(now, poll, reconcile));
                if s.in_backoff(now) {
                    let owed_before = s.pending.len();
                    s.pending
                        .extend(reasons.iter().copied().filter(|r| r.is_change()));
                    if s.pending.len() != owed_before {
                        changed.insert(user.clone());
                    }
                    in_backoff.push(user);
                    continue;
                }
                due.users.insert(user, reasons);
            }
            (due, in_backoff, changed, forget)
        };
        self.metrics.affected(&due);

        let mut report = CycleReport {
            crm_changes,
            in_backoff,
            ..CycleReport::empty(CycleOutcome::Quiet)
        };
        if due.is_empty() {
            kept.records = after_access.map(Access::into_records).or(kept_records);
            self.keep_model(state, kept)?;
            self.save(state, &feed, &changed, &forget)?;
            self.metrics.backoffs(0, report.in_backoff.len());
            return Ok(report);
        }

        // The pass.
        for (user, reasons) in &due.users {
            if reasons.contains(&Reason::Reconcile) && state.sync_user(user)?.is_some() {
                state.clear_sync_token(user, crate::model::ObjectKind::Contact)?;
                state.clear_sync_token(user, crate::model::ObjectKind::Event)?;
            }
        }
        self.remote.begin_cycle();
        let stop = || self.stop.load(Ordering::SeqCst) || self.remote.is_open();
        let crm = slot.take().ok_or(WorkerError::CrmGone)?;
        let engine = Engine {
            config: &self.config,
            state,
            crm: RefCell::new(crm),
            remote: &self.remote,
            now,
        };
        let options = SyncOptions {
            users: due.ids().cloned().collect(),
            ..SyncOptions::default()
        };
        let control = PassControl {
            mirror_refreshed: true,
            stop: Some(&stop),
            access: after_access.as_ref(),
            changed: mirror_changed.as_ref(),
            model: Some(&kept.model),
        };
        let result = engine.sync_once_controlled(&options, &control).await;
        *slot = Some(engine.crm.into_inner());
        kept.records = after_access.map(Access::into_records).or(kept_records);
        self.keep_model(state, kept)?;
        let run = result?;

        // Outcomes.
        let stopped = self.stop.load(Ordering::SeqCst);
        let outage = self.remote.is_open();
        let unreachable = self.remote.unreachable_users();
        let reports: BTreeMap<&UserId, &crate::sync::engine::UserReport> =
            run.users.iter().map(|u| (&u.user, u)).collect();
        let backoff = (
            Duration::from_secs(self.config.worker.backoff_base_secs),
            Duration::from_secs(self.config.worker.backoff_cap_secs),
        );
        let mut memory = self.memory.borrow_mut();
        let schedules = memory.schedules.get_or_insert_with(BTreeMap::new);
        let mut started = 0;
        for (user, reasons) in &due.users {
            let outcome = match reports.get(user) {
                None if stopped || outage => PassOutcome::NotStarted,
                None => PassOutcome::Nothing,
                Some(r) => match r.status {
                    UserStatus::Synced | UserStatus::Revoked | UserStatus::Planned => {
                        PassOutcome::Done
                    }
                    UserStatus::Partial => PassOutcome::Partial,
                    UserStatus::Failed if outage && unreachable.contains(user) => {
                        PassOutcome::Outage
                    }
                    UserStatus::Failed | UserStatus::Refused => PassOutcome::Failed,
                },
            };
            let reconciled = reasons.contains(&Reason::Reconcile)
                && matches!(outcome, PassOutcome::Done | PassOutcome::Partial);
            let jitter: f64 = self.rng.borrow_mut().random();
            let s = schedules
                .entry(user.clone())
                .or_insert_with(|| UserSchedule::first_seen(now, poll, reconcile));
            if let Some(delay) = s.record(outcome, reasons, reconciled, now, backoff, jitter) {
                started += 1;
                tracing::info!(
                    user = %user,
                    failures = s.failures,
                    retry_in_secs = delay.as_secs(),
                    "user backs off after a failed pass"
                );
            }
            changed.insert(user.clone());
        }
        let in_backoff_now = schedules.values().filter(|s| s.in_backoff(now)).count();
        if outage {
            memory.outages = memory.outages.saturating_add(1);
        } else if self.remote.reached_google() {
            memory.outages = 0;
        }
        drop(memory);
        self.save(state, &feed, &changed, &forget)?;

        self.metrics.run(&run);
        self.metrics.backoffs(started, in_backoff_now);
        self.metrics.last_successes(state.last_successes()?);
        if outage {
            self.metrics.google_reachable(false);
            self.metrics.outage_backoff();
            tracing::warn!(
                users_failed = unreachable.len(),
                retry_in_secs = self.next_delay().as_secs(),
                "Google is unreachable for everyone: cycle stopped early, backing off"
            );
        } else if self.remote.reached_google() {
            self.metrics.google_reachable(true);
        }
        report.outcome = if outage {
            CycleOutcome::GoogleUnreachable
        } else if stopped {
            CycleOutcome::Stopped
        } else {
            CycleOutcome::Synced
        };
        report.due = due;
        report.users_called = self.remote.users_called();
        report.backoffs_started = started;
        report.run = Some(run);
        Ok(report)
    }

    /// Stores the processed cursor and the changed schedules in one transaction.
    fn save(
        &self,
        state: &StateDb,
        feed: &Feed,
        changed: &BTreeSet<UserId>,
        forget: &[UserId],
    ) -> Result<(), WorkerError> {
        let memory = self.memory.borrow();
        let rows: Vec<_> = memory
            .schedules
            .iter()
            .flatten()
            .filter(|(u, _)| changed.contains(*u))
            .map(|(u, s)| s.to_row(u))
            .collect();
        state.save_worker_cycle(feed.end, &rows, forget)?;
        Ok(())
    }

    /// The schedule the worker holds for `user` (tests and status).
    pub fn schedule_of(&self, user: &UserId) -> Option<UserSchedule> {
        self.memory
            .borrow()
            .schedules
            .as_ref()
            .and_then(|s| s.get(user).cloned())
    }
}

/// The kind of a cycle error, for logs (its text may quote CRM data).
fn error_kind(e: &WorkerError) -> &'static str {
    match e {
        WorkerError::Store(s) if s.is_busy() => "state_db_busy",
        WorkerError::Store(_) => "state_db",
        WorkerError::Lock(_) => "lock",
        WorkerError::Mirror(_) | WorkerError::Crm(_) => "crm",
        WorkerError::Engine(_) => "engine",
        WorkerError::CrmGone | WorkerError::Join(_) => "internal",
    }
}
