//! One sync pass: refresh the CRM mirror, then for every user (concurrently, bounded) ensure
//! their calendar and group, list Google's changes, compute the desired sets, plan, check the
//! breaker, execute and commit. The CLI, the daemon and the demo all call [`Engine::sync_once`].

use super::desired;
use super::execute::{execute_kind, Commit, Counts, Hooks, ItemError, RemoteKind, UserCtx};
use super::merge::ConflictPolicy;
use super::pass_model::{Changed, PassModel};
use super::plan::{
    breaker_trips, plan, CrmMatch, CrmStep, Direction, GoogleDeletePolicy, KindPlan, Link,
    LinkState, PlanInput, Policies, RecordPlan, RemoteView,
};
use super::remote::{GoogleUser, Listing, Remote, RemoteChange, RemoteErrorKind, RemoteItem};
use crate::config::Config;
use crate::crm::{OrgModel, Source};
use crate::mirror;
use crate::model::{CrmId, ObjectKind, RecordRef, SyncedContact, SyncedEvent, User, UserId};
use crate::revoke::remote::Offboarding;
use crate::scope::{self, EffectiveScope, ResolvedScope};
use crate::security::{Access, Operation};
use crate::store::{StateDb, StoreError};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

/// What to sync and how.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Only these users (all when empty).
    pub users: Vec<UserId>,
    /// Plan and print, change nothing anywhere.
    pub dry_run: bool,
    /// Override the delete breaker.
    pub force: bool,
}

/// Failures that stop a whole run (everything else is reported per user or per item).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mirror(#[from] mirror::RefreshError),
    #[error("unknown user {0} (not in the CRM)")]
    UnknownUser(UserId),
}

/// How one user's pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Synced,
    /// Some items failed; the rest went through (retried next pass).
    Partial,
    /// The breaker refused the plan, or the account is not allowed.
    Refused,
    /// Google could not be reached for this user.
    Failed,
    /// Dry run: nothing was changed.
    Planned,
    /// Everything crmsync put into the user's Google account was removed and verified
    /// (or the user stays revoked after `crmsync revoke`).
    Revoked,
}

impl UserStatus {
    /// The status as one word (reports, metric labels; the same as its JSON form).
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Synced => "synced",
            UserStatus::Partial => "partial",
            UserStatus::Refused => "refused",
            UserStatus::Failed => "failed",
            UserStatus::Planned => "planned",
            UserStatus::Revoked => "revoked",
        }
    }
}

/// One line of a dry-run plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanLine {
    pub kind: ObjectKind,
    pub case: super::plan::Case,
    pub record: Option<String>,
    pub label: String,
    pub google: Option<String>,
    pub crm: Option<String>,
    /// Per-field differences the plan writes, rendered as unified diffs.
    pub diff: Vec<String>,
}

/// The report of one user's pass.
#[derive(Debug, Clone, Serialize)]
pub struct UserReport {
    pub user: UserId,
    pub account: String,
    pub status: UserStatus,
    pub contacts: Counts,
    pub events: Counts,
    pub errors: Vec<ItemError>,
    pub message: Option<String>,
    pub plan: Vec<PlanLine>,
    /// CRM records this user's pass wrote (write-backs, imports, deletes).
    pub crm_changed: Vec<RecordRef>,
    /// Revocations drained (or planned, or held) for this user in this run.
    pub revocations: Vec<crate::revoke::run::RevocationReport>,
    /// The pass found nothing to plan (listings quiet, nothing changed for the user since
    /// their last complete plan): it made the listing calls and nothing else.
    pub quiet: bool,
    /// The pass planned only the records the CRM change touched (the user's last complete
    /// plan was made just before it, and nothing else changed for them).
    pub changes_only: bool,
    /// The plan was made and carried out in this many parts (more records than a part:
    /// `sync.max_records_in_flight` / `sync.concurrency`); 0 when made whole.
    pub parts: usize,
    /// Why the user's pass planned everything they should have (not quiet, not only the
    /// touched records): a dry run, a first pass, phone-side changes, the CRM, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_because: Option<&'static str>,
}

impl UserReport {
    fn new(user: &User, account: &str) -> Self {
        Self::for_user(&user.id, account)
    }

    /// An empty report for `user` (who may no longer be in the CRM).
    pub fn for_user(user: &UserId, account: &str) -> Self {
        Self {
            user: user.clone(),
            account: account.to_owned(),
            status: UserStatus::Synced,
            contacts: Counts::default(),
            events: Counts::default(),
            errors: Vec::new(),
            message: None,
            plan: Vec::new(),
            crm_changed: Vec::new(),
            revocations: Vec::new(),
            quiet: false,
            changes_only: false,
            parts: 0,
            planned_because: None,
        }
    }

    /// This report (revocations drained first) followed by the user's normal pass.
    pub fn then(mut self, pass: UserReport) -> Self {
        self.contacts.add(&pass.contacts);
        self.events.add(&pass.events);
        self.errors.extend(pass.errors);
        self.crm_changed.extend(pass.crm_changed);
        self.plan.extend(pass.plan);
        self.account = pass.account;
        self.status = pass.status;
        self.message = pass.message;
        self.quiet = pass.quiet;
        self.changes_only = pass.changes_only;
        self.parts = pass.parts;
        self.planned_because = pass.planned_because;
        self
    }

    /// Folds a follow-up pass of the same run into this report.
    fn absorb(&mut self, later: UserReport) {
        self.contacts.add(&later.contacts);
        self.events.add(&later.events);
        self.errors.extend(later.errors);
        self.crm_changed.extend(later.crm_changed);
        self.quiet &= later.quiet;
        self.changes_only &= later.changes_only;
        self.parts = self.parts.max(later.parts);
        self.planned_because = self.planned_because.or(later.planned_because);
        let rank = |s: UserStatus| match s {
            UserStatus::Synced | UserStatus::Planned | UserStatus::Revoked => 0,
            UserStatus::Partial => 1,
            UserStatus::Refused => 2,
            UserStatus::Failed => 3,
        };
        if rank(later.status) > rank(self.status) {
            self.status = later.status;
            self.message = later.message;
        }
    }

    pub fn total(&self) -> Counts {
        let mut c = self.contacts.clone();
        c.add(&self.events);
        c
    }
}

/// The report of a whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub dry_run: bool,
    pub crm_changes: usize,
    pub crm_problems: Vec<String>,
    pub users: Vec<UserReport>,
}

/// The engine for one run.
pub struct Engine<'a, R> {
    pub config: &'a Config,
    pub state: &'a StateDb,
    pub crm: RefCell<Box<dyn Source>>,
    pub remote: &'a R,
    pub now: DateTime<Utc>,
}

/// The deterministic Google id of an event: base32hex of a hash of (user, record,
/// generation), so a retried insert hits 409 instead of creating a duplicate.
pub fn event_id(user: &UserId, crm_id: &CrmId, generation: i64) -> String {
    let input = format!("{user}\u{0}{crm_id}\u{0}{generation}");
    let digest = ring::digest::digest(&ring::digest::SHA256, input.as_bytes());
    data_encoding::BASE32HEX_NOPAD
        .encode(&digest.as_ref()[..20])
        .to_ascii_lowercase()
}

/// The CRM id a phone-created item gets (deterministic, so a retried import is idempotent).
pub fn import_id(user: &UserId, google_id: &str) -> CrmId {
    let input = format!("{user}\u{0}{google_id}");
    let digest = ring::digest::digest(&ring::digest::SHA256, input.as_bytes());
    let tail = data_encoding::BASE32HEX_NOPAD
        .encode(&digest.as_ref()[..10])
        .to_ascii_lowercase();
    // Letters, digits and '-' only: always a valid id.
    CrmId::from_trusted(format!("phone-{tail}"))
}

/// A fresh run id (time and a random tail).
pub fn new_run_id() -> String {
    let n: u64 = rand::random();
    format!("{}-{:08x}", Utc::now().format("%Y%m%dT%H%M%SZ"), n as u32)
}

fn scope_policies(scope: &EffectiveScope, may_create: bool) -> Policies {
    Policies {
        direction: match scope.direction {
            scope::Direction::CrmToGoogle => Direction::CrmToGoogle,
            scope::Direction::TwoWay => Direction::TwoWay,
        },
        conflict: match scope.conflict_policy {
            scope::ConflictPolicy::CrmWins => ConflictPolicy::CrmWins,
            scope::ConflictPolicy::GoogleWins => ConflictPolicy::GoogleWins,
            scope::ConflictPolicy::NewestWins => ConflictPolicy::NewestWins,
        },
        google_delete: match scope.google_delete {
            scope::GoogleDelete::Unlink => GoogleDeletePolicy::Unlink,
            scope::GoogleDelete::Restore => GoogleDeletePolicy::Restore,
            scope::GoogleDelete::DeleteInCrm => GoogleDeletePolicy::DeleteInCrm,
        },
        may_create_in_crm: may_create,
    }
}

/// How the worker steers a pass.
#[derive(Default, Clone, Copy)]
pub struct PassControl<'c> {
    /// The caller refreshed the mirror just before: the pass reads it as it is (so the
    /// changes the caller looked at are exactly the ones the pass syncs).
    pub mirror_refreshed: bool,
    /// Asked before each user's pass starts: once it says stop, no further user starts
    /// (those are left out of the report) and in-flight users finish.
    pub stop: Option<&'c dyn Fn() -> bool>,
    /// The access index over the whole model, as the caller built it from the mirror the
    /// pass reads (with `mirror_refreshed`): the pass uses it instead of loading its own.
    pub access: Option<&'c Access<'c>>,
    /// What the caller's mirror update changed (with `mirror_refreshed`): users whose last
    /// complete plan was made just before it have only those records planned.
    pub changed: Option<&'c Changed>,
    /// The whole model as mirrored now, kept by the caller (with `mirror_refreshed`): the
    /// pass reads it instead of the mirror.
    pub model: Option<&'c OrgModel>,
}

/// How far a user's pass went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Planned {
    /// It stopped before planning (failure, refusal, dry run, nothing to do).
    Early,
    /// Nothing to plan: the listings' tokens were kept, nothing else.
    Quiet,
    /// Planned from the mirror at `cursor` (and carried out, unless the report says
    /// otherwise): every record, or only those the mirror update touched.
    Full {
        cursor: crate::crm::Cursor,
        changes_only: bool,
    },
}

/// What a user's pass plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode<'p> {
    /// Every record: something beyond a known mirror update may have changed.
    Full,
    /// Nothing: the last complete plan stands.
    Quiet,
    /// The records the mirror update touched: the last complete plan was made just before.
    Changes(&'p Changed),
}

/// How long a user's last complete plan stands in for a new one: the event window moves
/// with time (events enter it at its far edge), so a user is planned in full at least this
/// often even when nothing changed.
mod parts;

const REPLAN_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// From this many Google writes to one collection in a pass, the pass lists the collection
/// once more to take in their echoes (see [`Engine::absorb_echoes`]); fewer come back in the
/// next pass's listing page at no extra call — except after a full listing (a user's first
/// pass, a new collection, an expired token), where any write is taken in at once: the one
/// more call is small next to the full listing, and the pass after a full sync finds nothing
/// of its own to read back.
const ABSORB_ECHOES_FROM: usize = 100;

/// What a running pass tells a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'r> {
    /// The pass will sync this many users.
    Started { users: usize },
    /// One user's pass ended.
    UserDone(&'r UserReport),
}

impl<R: Remote + Offboarding> Engine<'_, R> {
    /// One pass over all (or the chosen) users.
    pub async fn sync_once(&self, options: &SyncOptions) -> Result<RunReport, EngineError> {
        self.sync_once_with_progress(options, &|_| {}).await
    }

    /// [`Engine::sync_once`], telling `progress` how it goes (the CLI's progress bar).
    pub async fn sync_once_with_progress(
        &self,
        options: &SyncOptions,
        progress: &dyn Fn(Progress<'_>),
    ) -> Result<RunReport, EngineError> {
        self.pass(options, progress, &PassControl::default()).await
    }

    /// The worker's pass: [`Engine::sync_once`] under `control` (see [`PassControl`]).
    pub async fn sync_once_controlled(
        &self,
        options: &SyncOptions,
        control: &PassControl<'_>,
    ) -> Result<RunReport, EngineError> {
        self.pass(options, &|_| {}, control).await
    }

    async fn pass(
        &self,
        options: &SyncOptions,
        progress: &dyn Fn(Progress<'_>),
        control: &PassControl<'_>,
    ) -> Result<RunReport, EngineError> {
        let run_id = new_run_id();
        let started = std::time::Instant::now();
        let stop = || control.stop.is_some_and(|stop| stop());
        let mirror_from = if options.dry_run || control.mirror_refreshed {
            None
        } else {
            Some(self.state.crm_cursor()?)
        };
        // The security model now; the records and the access index once a user needs a
        // plan (a dry run overlays the CRM's pending changes on the whole model up front).
        let (whole, access_cell) = (OnceCell::new(), OnceCell::new());
        let security_model;
        let mut before: Option<OrgModel> = None;
        let (model, crm_changes, crm_problems, delta) = if options.dry_run {
            let (overlaid, applied, problems, _) = self.load_model(true)?;
            (whole.get_or_init(|| overlaid), applied, problems, None)
        } else {
            let (applied, problems, delta) = if control.mirror_refreshed {
                (0, Vec::new(), None)
            } else {
                // A permission change keeps the model from before it: whom it affects is
                // told apart (the others' last plans stand), not everyone planned.
                let (applied, problems, delta, kept) = self.refresh_mirror(true)?;
                if let Some(kept) = kept {
                    before = Some(kept.before);
                    let _ = whole.set(kept.after);
                }
                (applied, problems, delta)
            };
            let kept = control
                .access
                .map(Access::model)
                .or(control.model)
                .filter(|_| control.mirror_refreshed)
                .or(whole.get());
            match kept {
                Some(model) => (model, applied, problems, delta),
                None => {
                    security_model = self.state.load_security_model()?;
                    (&security_model, applied, problems, delta)
                }
            }
        };
        let given = control
            .access
            .filter(|_| control.mirror_refreshed && !options.dry_run);
        let lazy = PassModel::new(model, &whole, &access_cell, self.state)
            .with_access(given)
            .with_model(
                control
                    .model
                    .filter(|_| control.mirror_refreshed && !options.dry_run),
            )
            .with_records_in_flight(self.config.sync.max_records_in_flight);
        if !options.dry_run {
            // Users inactive or gone from the CRM lose their ICS feeds (the feeds already
            // answer 404 from the refreshed mirror; this deletes their secrets).
            crate::ics::revoke_departed_feeds(self.state, model, &run_id)?;
        }
        let changed = match mirror_from {
            Some(from) => self.advance_unaffected(from, &lazy, delta.as_ref(), before.take())?,
            None if control.mirror_refreshed && !options.dry_run => control.changed.cloned(),
            None => None,
        };
        let lazy = lazy.with_changed(changed);
        for u in &options.users {
            if !model.users.contains_key(u) && self.state.sync_user(u)?.is_none() {
                return Err(EngineError::UnknownUser(u.clone()));
            }
        }
        // Offboarding first: whose data must leave which account (deactivated, removed from
        // the CRM, account changed or cleared), held by the mass-offboarding guard or not.
        let open = self.offboard(model, options, &run_id)?;
        let tasks = self.user_tasks(model, &open, options)?;
        let eligible: BTreeSet<UserId> = tasks
            .iter()
            .filter_map(|t| t.pass.map(|u| u.id.clone()))
            .collect();
        let concurrency = self.config.sync.concurrency.max(1);
        progress(Progress::Started { users: tasks.len() });
        super::observe::run_started(&run_id, tasks.len(), crm_changes, options.dry_run);
        let passes = futures::stream::iter(&tasks)
            // Users not started when `stop` says so are left out (in-flight ones finish).
            .take_while(|_| futures::future::ready(!stop()))
            .map(|task| async {
                let pass = self.user_task(&lazy, task, options, &run_id).await;
                if let Ok(report) = &pass {
                    progress(Progress::UserDone(report));
                }
                pass
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
        let mut reports = Vec::with_capacity(passes.len());
        for pass in passes {
            reports.push(pass?);
        }
        if !options.dry_run && !stop() {
            self.follow_up(&mut reports, &eligible, options, &run_id)
                .await?;
        }
        reports.sort_by(|a, b| a.user.cmp(&b.user));
        let report = RunReport {
            run_id,
            dry_run: options.dry_run,
            crm_changes,
            crm_problems: crm_problems.iter().map(ToString::to_string).collect(),
            users: reports,
        };
        super::observe::run_finished(&report, started.elapsed());
        Ok(report)
    }

    /// Changes this run wrote to the CRM (phone edits written back, imports, deletes) reach the
    /// other users who have or may read those records in the same run, not one pass later: the
    /// mirror is refreshed and just those users are synced once more.
    async fn follow_up(
        &self,
        reports: &mut [UserReport],
        eligible: &BTreeSet<UserId>,
        options: &SyncOptions,
        run_id: &str,
    ) -> Result<(), EngineError> {
        let mut writers: BTreeMap<RecordRef, BTreeSet<UserId>> = BTreeMap::new();
        for r in reports.iter() {
            for record in &r.crm_changed {
                writers
                    .entry(record.clone())
                    .or_default()
                    .insert(r.user.clone());
            }
        }
        if writers.is_empty() {
            return Ok(());
        }
        let from = self.state.crm_cursor()?;
        let (loaded, _, _, delta) = self.load_model(false)?;
        let (whole, access_cell) = (OnceCell::new(), OnceCell::new());
        let model = whole.get_or_init(|| loaded);
        let lazy = PassModel::new(model, &whole, &access_cell, self.state)
            .with_records_in_flight(self.config.sync.max_records_in_flight);
        let access = lazy.access()?;
        let changed = self.advance_unaffected(from, &lazy, delta.as_ref(), None)?;
        let lazy = lazy.with_changed(changed);
        let written: BTreeSet<RecordRef> = writers.keys().cloned().collect();
        let holders = self.state.link_holders(&written)?;
        let mut again = Vec::new();
        for report in reports.iter() {
            let Some(user) = model
                .users
                .get(&report.user)
                .filter(|u| u.active && eligible.contains(&u.id))
            else {
                continue;
            };
            if !matches!(report.status, UserStatus::Synced | UserStatus::Partial) {
                continue;
            }
            // The writers too: what they wrote can show in their other items (a contact's
            // name in an event's attendee lines).
            let concerned = writers.keys().any(|record| {
                holders.get(record).is_some_and(|h| h.contains(&user.id))
                    || access
                        .may(&user.id, record, Operation::Read)
                        .unwrap_or(false)
            });
            if concerned {
                again.push(user);
            }
        }
        let concurrency = self.config.sync.concurrency.max(1);
        let passes = futures::stream::iter(again)
            .map(|u| self.observed_user_pass(&lazy, u, options, run_id))
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
        for pass in passes {
            let later = pass?;
            if let Some(report) = reports.iter_mut().find(|r| r.user == later.user) {
                report.absorb(later);
            }
        }
        Ok(())
    }

    /// Refreshes the mirror: how many changes it took, the rows the CRM could not read, which
    /// entities changed (`None`: too many to name), and (`keep_before`) the model before and
    /// after a one-page permission change (see [`mirror::refresh_keeping`]).
    #[allow(clippy::type_complexity)]
    fn refresh_mirror(
        &self,
        keep_before: bool,
    ) -> Result<
        (
            usize,
            Vec<crate::crm::RowProblem>,
            Option<super::affected::MirrorDelta>,
            Option<mirror::BeforeAfter>,
        ),
        EngineError,
    > {
        let crm = self.crm.borrow();
        let (refresh, kept) = mirror::refresh_keeping(self.state, crm.as_ref(), keep_before)?;
        Ok((
            refresh.update.applied,
            refresh.problems,
            refresh.delta,
            kept,
        ))
    }

    /// What the refresh changed is named too (`None`: too much to name, or a dry run).
    #[allow(clippy::type_complexity)]
    pub(crate) fn load_model(
        &self,
        dry_run: bool,
    ) -> Result<
        (
            OrgModel,
            usize,
            Vec<crate::crm::RowProblem>,
            Option<super::affected::MirrorDelta>,
        ),
        EngineError,
    > {
        if !dry_run {
            let (applied, problems, delta, _) = self.refresh_mirror(false)?;
            return Ok((self.state.load_org_model()?, applied, problems, delta));
        }
        let crm = self.crm.borrow();
        mirror::verify_identity(self.state, crm.as_ref())?;
        let mut model = self.state.load_org_model()?;
        let mut cursor = self.state.crm_cursor()?;
        let mut applied = 0;
        let mut problems = Vec::new();
        for _ in 0..mirror::MAX_PAGES {
            let batch = crm
                .changes_since(cursor, mirror::PAGE_SIZE)
                .map_err(mirror::RefreshError::from)?;
            for change in batch.changes {
                applied += 1;
                model.apply(change);
            }
            problems.extend(batch.problems);
            cursor = batch.next_cursor;
            if !batch.more {
                break;
            }
        }
        Ok((model, applied, problems, None))
    }

    /// Moves the users a mirror update (from `from` to the mirror's cursor now, naming
    /// `delta`) cannot affect forward with it: their last complete plan still stands, so
    /// their next pass may be quiet. A change to who may read what needs `before`, the model
    /// as mirrored before it (with it, `sync::affected` compares both indexes). Nobody moves
    /// when telling would cost about as much as planning them: a permission change without
    /// `before`, more changed records than `sync::affected` checks one by one, or a delta
    /// too large to name. Returns what the update changed (for users planned just before
    /// it, only those records need planning), unless it changed who may read what.
    fn advance_unaffected(
        &self,
        from: crate::crm::Cursor,
        lazy: &PassModel<'_>,
        delta: Option<&super::affected::MirrorDelta>,
        before: Option<OrgModel>,
    ) -> Result<Option<Changed>, EngineError> {
        use super::affected::{by_mirror, touched_records, Before, MirrorInputs};
        use crate::security::{records_shared, SignedBefore};
        let to = self.state.crm_cursor()?;
        let Some(delta) = delta.filter(|_| from != to) else {
            return Ok(None);
        };
        let permissions = delta.security_model_changed();
        if permissions && before.is_none() {
            return Ok(None);
        }
        // The model before a permission change is compared through its index. When it
        // holds the same records as the model after, only its users' signatures are
        // needed: they are taken and its index dropped before the next one is built (two
        // indexes at once set the peak of a permission change's pass at scale).
        let signed = match (&before, lazy.loaded()) {
            (Some(old), (Some(new), false)) if permissions && records_shared(old, new) => {
                Some(SignedBefore::of(&Access::build(old)))
            }
            _ => None,
        };
        let access = lazy.access()?;
        let model = access.model();
        let touched = touched_records(before.as_ref(), model, delta);
        if !permissions && !super::affected::checked_one_by_one(&touched) {
            return Ok(Some(Changed { from, touched }));
        }
        let holders = self.state.link_holders(&touched)?;
        let overrides = self.state.all_scope_overrides()?;
        let scopes = scope::resolve_all(&self.config.scope, model, &overrides)
            .into_iter()
            .filter_map(|(user, r)| r.ok().map(|r| (user, r.scope)))
            .collect();
        let before_access = before
            .as_ref()
            .filter(|_| signed.is_none())
            .map(Access::build);
        let before_side = match &signed {
            Some(signed) => before.as_ref().map(|old| Before::Signed(signed, old)),
            None => before_access.as_ref().map(Before::Index),
        };
        let affected = by_mirror(&MirrorInputs {
            before: before_side,
            after: access,
            delta,
            touched: &touched,
            holders: &holders,
            scopes: &scopes,
            now: self.now,
        });
        drop(before_access);
        drop(before);
        let users: BTreeSet<UserId> = affected.users.into_keys().collect();
        let moved = self.state.advance_planned(from, to, &users)?;
        tracing::debug!(
            affected = users.len(),
            moved,
            by_signatures = signed.is_some(),
            "users the mirror update leaves as planned"
        );
        Ok((!permissions).then_some(Changed { from, touched }))
    }

    pub(crate) async fn user_pass(
        &self,
        lazy: &PassModel<'_>,
        user: &User,
        options: &SyncOptions,
        run_id: &str,
    ) -> Result<UserReport, EngineError> {
        let account = user.google_account.clone().unwrap_or_default();
        let mut report = UserReport::new(user, &account);
        if let Some(why) = self.account_refused(lazy.security(), &account) {
            report.status = UserStatus::Refused;
            report.message = Some(why);
            return Ok(report);
        }
        let resolved = match self.scope_of(lazy.security(), &user.id) {
            Ok(r) => r,
            // An inactive user gets nothing whatever the scope says: pull everything back.
            Err(_) if !user.active => ResolvedScope {
                user: user.id.clone(),
                fingerprint: EffectiveScope::builtin().fingerprint(),
                scope: EffectiveScope::builtin(),
                settings: scope::ScopeLayer::default(),
                sources: BTreeMap::new(),
            },
            Err(e) => {
                report.status = UserStatus::Refused;
                report.message = Some(format!("scope: {e}"));
                return Ok(report);
            }
        };
        let google_user = GoogleUser {
            user: user.id.clone(),
            account: account.clone(),
        };
        let known = self.state.sync_user(&user.id)?;
        if known.is_none() && !user.active {
            // Never synced and inactive: nothing to pull back.
            report.message = Some("inactive; nothing synced".into());
            return Ok(report);
        }
        if !options.dry_run {
            match self.state.ensure_sync_user(&user.id, &account) {
                Ok(_) => {}
                // The old account still holds our data: its revocation must run first.
                Err(e @ StoreError::AccountInUse { .. }) => {
                    report.status = UserStatus::Refused;
                    report.message = Some(e.to_string());
                    return Ok(report);
                }
                Err(e) => return Err(e.into()),
            }
            self.state.record_attempt(&user.id)?;
        }
        let result = self
            .user_pass_inner(
                lazy,
                user,
                &google_user,
                &resolved,
                options,
                run_id,
                &mut report,
            )
            .await;
        match result {
            Ok(planned) => {
                if !options.dry_run {
                    let error = (!report.errors.is_empty())
                        .then(|| format!("{} item(s) failed", report.errors.len()));
                    if report.status == UserStatus::Synced && error.is_some() {
                        report.status = UserStatus::Partial;
                    }
                    let failed = matches!(report.status, UserStatus::Failed | UserStatus::Refused);
                    let error = if failed {
                        report.message.clone()
                    } else {
                        error
                    };
                    self.state.record_outcome(
                        &user.id,
                        error.as_deref(),
                        (!failed).then_some(resolved.fingerprint.as_str()),
                    )?;
                    // A plan carried out completely: the next pass may find this user quiet.
                    if let Planned::Full { cursor, .. } = planned {
                        if report.status == UserStatus::Synced && report.errors.is_empty() {
                            let at = self.now.to_rfc3339();
                            self.state.set_planned(&user.id, Some((cursor, &at)))?;
                        }
                    }
                }
                report.quiet = matches!(planned, Planned::Quiet);
                report.changes_only = matches!(
                    planned,
                    Planned::Full {
                        changes_only: true,
                        ..
                    }
                );
                Ok(report)
            }
            Err(e) => Err(e),
        }
    }

    fn account_refused(&self, model: &OrgModel, account: &str) -> Option<String> {
        if self.config.google.allow_personal_accounts {
            return None;
        }
        let domain = account.rsplit_once('@').map(|(_, d)| d.to_lowercase())?;
        let domains = &model.settings.google_domains;
        (!domains.is_empty() && !domains.contains(&domain)).then(|| {
            format!(
                "Google account {account} is outside the org's domains ({}); personal accounts are not allowed",
                domains.join(", ")
            )
        })
    }

    fn scope_of(&self, model: &OrgModel, user: &UserId) -> Result<ResolvedScope, String> {
        let overrides = self
            .state
            .scope_overrides(user)
            .map_err(|e| e.to_string())?;
        scope::resolve(&self.config.scope, model, user, &overrides).map_err(|e| e.to_string())
    }

    #[allow(clippy::too_many_arguments)]
    async fn user_pass_inner(
        &self,
        lazy: &PassModel<'_>,
        user: &User,
        google_user: &GoogleUser,
        resolved: &ResolvedScope,
        options: &SyncOptions,
        run_id: &str,
        report: &mut UserReport,
    ) -> Result<Planned, EngineError> {
        let sync_user = self.state.sync_user(&user.id)?;
        // 1. The dedicated calendar and contact group.
        let known_calendar = sync_user.as_ref().and_then(|s| s.calendar_id.clone());
        let known_group = sync_user.as_ref().and_then(|s| s.group_resource.clone());
        let (mut calendar, group) = if options.dry_run {
            (known_calendar.clone(), known_group.clone())
        } else {
            // A known calendar is not fetched: the event listing below finds out (404) if it
            // is gone, which saves a call on every pass.
            let calendar = match &known_calendar {
                Some(known) => known.clone(),
                None => match self
                    .ensure_calendar_recorded(google_user, None, run_id)
                    .await?
                {
                    Ok(c) => c,
                    Err(e) => {
                        return self.fail(report, format!("cannot reach the user's calendar: {e}"))
                    }
                },
            };
            // A known group is not fetched either: a deleted group shows in the contact
            // listing as our contacts losing their membership (checked below).
            let group = match &known_group {
                Some(known) => known.clone(),
                None => match self
                    .ensure_group_recorded(google_user, None, &calendar)
                    .await?
                {
                    Ok(g) => g,
                    Err(e) => {
                        return self.fail(
                            report,
                            format!("cannot reach the user's contact group: {e}"),
                        )
                    }
                },
            };
            (Some(calendar), Some(group))
        };
        // Events are listed first: a calendar deleted on the phone is found (404), recreated
        // or found again by its marker, and listed from scratch before anything is planned.
        let event_token = sync_user.as_ref().and_then(|s| s.events_sync_token.clone());
        let event_listing = match calendar.clone() {
            Some(c) => match self
                .listing::<SyncedEvent>(google_user, &c, event_token)
                .await
            {
                Ok(l) => l,
                Err(e) if e.kind == RemoteErrorKind::NotFound && !options.dry_run => {
                    let repaired = match self
                        .ensure_calendar_recorded(google_user, Some(&c), run_id)
                        .await?
                    {
                        Ok(c) => c,
                        Err(e) => {
                            return self
                                .fail(report, format!("cannot reach the user's calendar: {e}"))
                        }
                    };
                    calendar = Some(repaired.clone());
                    match self
                        .listing::<SyncedEvent>(google_user, &repaired, None)
                        .await
                    {
                        Ok(l) => l,
                        Err(e) => return self.fail(report, format!("listing events: {e}")),
                    }
                }
                Err(e) => return self.fail(report, format!("listing events: {e}")),
            },
            None => empty_listing(),
        };
        // The leak guard: the calendar must not be shared beyond its owner. Checked once
        // per turn of `acl_check_minutes` (every pass with 0), and on every pass while the
        // ACL has no token (first pass, after a pause or a failure, a new calendar).
        // (Read afresh: a calendar found again above dropped the token.)
        let (token, checked_at) = match self.state.sync_user(&user.id)? {
            Some(s) => (s.acl_sync_token, s.acl_checked_at),
            None => (None, None),
        };
        let period = self.config.sync.acl_check_period();
        let due = crate::revoke::acl::check_due(
            &user.id,
            token.as_deref(),
            checked_at.as_deref(),
            period,
            self.now,
        );
        if let (Some(c), false, true) = (&calendar, options.dry_run, due) {
            match crate::revoke::acl::guard_calendar(
                self.remote,
                self.state,
                google_user,
                c,
                token.as_deref(),
                self.config.sync.acl_guard,
                run_id,
                &self.now.to_rfc3339(),
            )
            .await?
            {
                Ok(acl) => {
                    if let Some(why) = acl.paused {
                        report.status = UserStatus::Refused;
                        report.message = Some(why);
                        return Ok(Planned::Early);
                    }
                }
                Err(e) => {
                    return self.fail(report, format!("checking the calendar's sharing: {e}"))
                }
            }
        }
        let sync_user = self.state.sync_user(&user.id)?;
        // 2. The contact listing (from scratch while contact creates or links are pending:
        //    their outcome is found in it).
        let pending_contacts = self
            .state
            .has_pending_links(&user.id, Some(ObjectKind::Contact))?;
        let contact_token = sync_user
            .as_ref()
            .and_then(|s| s.contacts_sync_token.clone())
            .filter(|_| !pending_contacts);
        let mut contact_listing = match &group {
            Some(g) => match self
                .listing::<SyncedContact>(google_user, g, contact_token)
                .await
            {
                Ok(l) => l,
                Err(e) => return self.fail(report, format!("listing contacts: {e}")),
            },
            None => empty_listing(),
        };
        // Our contacts outside our group (the group was deleted, or they were taken out of
        // it), or a last pass with failures: the group is checked, and found again by its
        // marker or recreated; a different group is listed from scratch.
        let lost_members = contact_listing.changes.iter().any(
            |c| matches!(c, RemoteChange::Present(it) if it.crm_id.is_some() && !it.in_container),
        );
        let last_failed = sync_user.as_ref().is_some_and(|s| s.last_error.is_some());
        let group = match (&group, &calendar) {
            (Some(known), Some(c)) if !options.dry_run && (lost_members || last_failed) => {
                match self
                    .ensure_group_recorded(google_user, Some(known), c)
                    .await?
                {
                    Ok(g) if &g == known => Some(g),
                    Ok(g) => {
                        contact_listing = match self
                            .listing::<SyncedContact>(google_user, &g, None)
                            .await
                        {
                            Ok(l) => l,
                            Err(e) => return self.fail(report, format!("listing contacts: {e}")),
                        };
                        Some(g)
                    }
                    Err(e) => {
                        return self.fail(
                            report,
                            format!("cannot reach the user's contact group: {e}"),
                        )
                    }
                }
            }
            _ => group,
        };

        // 3. Nothing to plan: the listings hold only the echoes of our own writes, the
        //    mirror changed nothing for this user since their last complete plan, same
        //    scope, nothing pending. Only the new sync tokens are kept. (Or only what the
        //    mirror update touched needs planning.)
        let mode = if options.dry_run {
            Mode::Full
        } else {
            let (mode, why) = self.plan_mode(
                lazy,
                user,
                sync_user.as_ref(),
                resolved,
                &event_listing,
                &contact_listing,
            )?;
            report.planned_because = why;
            mode
        };
        if mode == Mode::Quiet {
            self.state.write(|w| {
                for (kind, token) in [
                    (ObjectKind::Event, event_listing.next_sync_token.as_deref()),
                    (
                        ObjectKind::Contact,
                        contact_listing.next_sync_token.as_deref(),
                    ),
                ] {
                    let stored = sync_user.as_ref().and_then(|s| match kind {
                        ObjectKind::Event => s.events_sync_token.as_deref(),
                        _ => s.contacts_sync_token.as_deref(),
                    });
                    if token.is_some() && token != stored {
                        w.set_sync_token(&user.id, kind, token)?;
                    }
                }
                Ok(())
            })?;
            return Ok(Planned::Quiet);
        }

        // 4. Links, desired sets and plans for both kinds. Until this plan is carried out
        //    completely, the user is planned in full again.
        let cursor = self.state.crm_cursor()?;
        if !options.dry_run {
            self.state.set_planned(&user.id, None)?;
        }
        let access = lazy.access()?;
        // What the plan will hold in memory until it is carried out grows with its records:
        // the pass's budget of records in flight is taken before any of it is built.
        let records = match mode {
            Mode::Changes(changed) => changed.touched.len(),
            Mode::Full | Mode::Quiet => {
                let mut records = 0;
                for kind in [ObjectKind::Contact, ObjectKind::Event] {
                    records += self.state.live_link_count(&user.id, kind)?;
                    if user.active {
                        records +=
                            crate::scope::scoped_set(access, &user.id, &resolved.scope, kind)
                                .map_or(0, |set| set.len());
                    }
                }
                records
            }
        };
        // A user with more records than a part is planned and carried out part by part.
        let part = self.plan_part_size();
        let in_parts = mode == Mode::Full && !options.dry_run && records > part;
        let _records = lazy.records(if in_parts { part } else { records }).await;
        if in_parts {
            let (Some(calendar), Some(group)) = (&calendar, &group) else {
                return self.fail(report, "no calendar or contact group".into());
            };
            return self
                .plan_in_parts(
                    access,
                    user,
                    google_user,
                    resolved,
                    options,
                    run_id,
                    report,
                    (calendar, group),
                    (contact_listing, event_listing),
                    cursor,
                )
                .await;
        }
        let may_create_contact = access
            .may_create(&user.id, ObjectKind::Contact)
            .unwrap_or(false);
        let may_create_event = access
            .may_create(&user.id, ObjectKind::Event)
            .unwrap_or(false);
        let only = match mode {
            Mode::Changes(changed) => Some((
                changed.ids(ObjectKind::Contact),
                changed.ids(ObjectKind::Event),
            )),
            Mode::Full | Mode::Quiet => None,
        };
        let (contact_links, event_links): (
            BTreeMap<CrmId, Link<SyncedContact>>,
            BTreeMap<CrmId, Link<SyncedEvent>>,
        ) = match &only {
            Some((contacts, events)) => (
                self.state
                    .links_for(&user.id, ObjectKind::Contact, contacts)?,
                self.state.links_for(&user.id, ObjectKind::Event, events)?,
            ),
            None => (
                self.state.links(&user.id, ObjectKind::Contact)?,
                self.state.links(&user.id, ObjectKind::Event)?,
            ),
        };
        let sets = desired::contact_sets(
            access,
            user,
            &resolved.scope,
            self.now,
            contact_links.keys(),
            only.as_ref().map(|o| &o.0),
        )
        .and_then(|c| {
            desired::event_sets(
                access,
                user,
                &resolved.scope,
                self.now,
                event_links.keys(),
                only.as_ref().map(|o| &o.1),
            )
            .map(|e| (c, e))
        });
        let (contact_sets, event_sets) = match sets {
            Ok(sets) => sets,
            Err(e) => return self.fail(report, format!("desired sets: {e}")),
        };

        // Duplicates already in Google go before anything is planned (full listings only).
        let (contact_listing, event_listing) = self
            .sweep_duplicates(
                (google_user, options, run_id, &mut *report),
                (&group, contact_listing, &contact_links),
                (&calendar, event_listing, &event_links),
            )
            .await?;

        let model = access.model();
        let contact_match = |data: &SyncedContact| crm_contact_match(access, &user.id, data);
        let no_match = |_: &SyncedEvent| CrmMatch::default();
        let user_id = user.id.clone();
        let event_id_fn = move |c: &CrmId, g: i64| event_id(&user_id, c, g);
        let user_id = user.id.clone();
        let import_id_fn = move |g: &str| import_id(&user_id, g);

        // Planning only what changed: the listings hold nothing but echoes of linked items
        // (checked), and the links outside the touched records are not loaded, so none of
        // the listings is shown to the planner (it would take those items for unlinked ones).
        let (c_unlinked, c_reported) = if only.is_some() {
            self.unlinked::<SyncedContact>(&user.id, &incremental_nothing())?
        } else {
            self.unlinked::<SyncedContact>(&user.id, &contact_listing)?
        };
        let (e_unlinked, e_reported) = if only.is_some() {
            self.unlinked::<SyncedEvent>(&user.id, &incremental_nothing())?
        } else {
            self.unlinked::<SyncedEvent>(&user.id, &event_listing)?
        };
        let (c_view, e_view) = if only.is_some() {
            (
                RemoteView::from_changes(&[], false),
                RemoteView::from_changes(&[], false),
            )
        } else {
            (
                RemoteView::from_changes(&contact_listing.changes, contact_listing.full),
                RemoteView::from_changes(&event_listing.changes, event_listing.full),
            )
        };
        let c_input = PlanInput {
            desired: &contact_sets.desired,
            retained: &contact_sets.retained,
            links: &contact_links,
            remote: &c_view,
            unlinked: &c_unlinked,
            already_reported: &c_reported,
            lost_reasons: &contact_sets.lost,
            policies: scope_policies(&resolved.scope, may_create_contact),
            crm_match: &contact_match,
            event_id: &event_id_fn,
            import_id: &import_id_fn,
            marked: Default::default(),
            explain: options.dry_run,
        };
        let e_input = PlanInput {
            desired: &event_sets.desired,
            retained: &event_sets.retained,
            links: &event_links,
            remote: &e_view,
            unlinked: &e_unlinked,
            already_reported: &e_reported,
            lost_reasons: &event_sets.lost,
            policies: scope_policies(&resolved.scope, may_create_event),
            crm_match: &no_match,
            event_id: &event_id_fn,
            import_id: &import_id_fn,
            marked: Default::default(),
            explain: options.dry_run,
        };
        let mut c_plan = plan(&c_input);
        let mut e_plan = plan(&e_input);
        if only.is_some() {
            // The breaker weighs deletions against everything linked, not the part planned.
            c_plan.linked_before = self.state.live_link_count(&user.id, ObjectKind::Contact)?;
            e_plan.linked_before = self.state.live_link_count(&user.id, ObjectKind::Event)?;
        }

        // 3. The breaker: a plan that pulls back too much is refused (not for inactive users,
        //    whose revocation is the point).
        let weighed = [
            (
                ObjectKind::Contact,
                c_plan.google_deletions(),
                c_plan.linked_before,
            ),
            (
                ObjectKind::Event,
                e_plan.google_deletions(),
                e_plan.linked_before,
            ),
        ];
        if self.breaker_refuses(model, user, options, run_id, report, weighed)? {
            return Ok(Planned::Early);
        }

        if options.dry_run {
            report.status = UserStatus::Planned;
            report.plan.extend(plan_lines(&c_plan));
            report.plan.extend(plan_lines(&e_plan));
            report.contacts = planned_counts(&c_plan);
            report.events = planned_counts(&e_plan);
            return Ok(Planned::Early);
        }

        // 4. Execute: contacts then events, each committed with its sync token.
        let (Some(calendar), Some(group)) = (calendar, group) else {
            return self.fail(report, "no calendar or contact group".into());
        };
        let hooks = UserHooks::new(access, &user.id);
        let contact_ctx = UserCtx {
            remote: self.remote,
            state: self.state,
            crm: &self.crm,
            google_user,
            container: &group,
            run_id,
        };
        let outcome = execute_kind(
            &contact_ctx,
            &c_input,
            c_plan.records,
            &hooks.contacts(),
            Commit::whole(&contact_listing),
        )
        .await?;
        let listed = (group.as_str(), contact_listing.full);
        self.fold_outcome::<SyncedContact>(report, outcome, google_user, listed)
            .await?;
        let event_ctx = UserCtx {
            container: &calendar,
            ..contact_ctx
        };
        let outcome = execute_kind(
            &event_ctx,
            &e_input,
            e_plan.records,
            &hooks.events(),
            Commit::whole(&event_listing),
        )
        .await?;
        let listed = (calendar.as_str(), event_listing.full);
        self.fold_outcome::<SyncedEvent>(report, outcome, google_user, listed)
            .await?;
        Ok(Planned::Full {
            cursor,
            changes_only: only.is_some(),
        })
    }

    /// Finds or creates the user's calendar (`known` is the id on record, if any) and records
    /// it. A different calendar than the one on record means the old one is gone with its
    /// events: the event links and token are dropped, so everything is created again.
    async fn ensure_calendar_recorded(
        &self,
        google_user: &GoogleUser,
        known: Option<&str>,
        run_id: &str,
    ) -> Result<Result<String, super::remote::RemoteError>, EngineError> {
        let user = &google_user.user;
        let calendar = match self
            .remote
            .ensure_calendar(google_user, &self.config.google.calendar_name, known)
            .await
        {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        if known == Some(calendar.as_str()) {
            return Ok(Ok(calendar));
        }
        let group = self
            .state
            .sync_user(user)?
            .and_then(|s| s.group_resource)
            .unwrap_or_default();
        self.state.write(|w| {
            if known.is_some() {
                let links: BTreeMap<CrmId, Link<serde_json::Value>> =
                    self.state.links(user, ObjectKind::Event)?;
                for id in links.keys() {
                    w.delete_link(user, ObjectKind::Event, id)?;
                }
                w.set_sync_token(user, ObjectKind::Event, None)?;
                w.audit(
                    run_id,
                    Some(user),
                    None,
                    "calendar_recreated",
                    &serde_json::json!({"old": known, "new": calendar}),
                )?;
            }
            Ok(())
        })?;
        self.state.set_containers(user, &calendar, &group)?;
        Ok(Ok(calendar))
    }

    /// Finds or creates the user's contact group (`known` is the one on record, if any) and
    /// records it. A different group than the one on record is listed from scratch: the
    /// contact token is dropped.
    async fn ensure_group_recorded(
        &self,
        google_user: &GoogleUser,
        known: Option<&str>,
        calendar: &str,
    ) -> Result<Result<String, super::remote::RemoteError>, EngineError> {
        let user = &google_user.user;
        let group = match self
            .remote
            .ensure_group(google_user, &self.config.google.contact_group_name, known)
            .await
        {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        if known != Some(group.as_str()) {
            if known.is_some() {
                self.state.clear_sync_token(user, ObjectKind::Contact)?;
                self.state.set_planned(user, None)?;
            }
            self.state.set_containers(user, calendar, &group)?;
        }
        Ok(Ok(group))
    }

    /// What `user`'s pass must plan. Nothing (quiet) when their last complete plan was made
    /// from the mirror as it is now (users a mirror update does not affect are moved forward
    /// with it), recently enough for the event window, under the same scope, with nothing
    /// pending and no failure since, and both listings are incremental and hold only the
    /// echoes of our own writes (items at the etag we last synced, deletions of items we
    /// hold no record of). Only the touched records when all that holds but the plan was
    /// made just before this pass's mirror update (which changed no permission). Everything
    /// otherwise.
    fn plan_mode<'p>(
        &self,
        lazy: &'p PassModel<'_>,
        user: &User,
        row: Option<&crate::store::SyncUser>,
        resolved: &ResolvedScope,
        events: &Listing<SyncedEvent>,
        contacts: &Listing<SyncedContact>,
    ) -> Result<(Mode<'p>, Option<&'static str>), StoreError> {
        let full = |why: &'static str| Ok((Mode::Full, Some(why)));
        let Some((row, planned)) = row.and_then(|r| r.planned_cursor.map(|p| (r, p))) else {
            return full("no complete plan since the last change");
        };
        let recent = row
            .planned_at
            .as_deref()
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&Utc))
            .is_some_and(|at| at <= self.now && self.now - at < REPLAN_AFTER);
        let why = if !user.active {
            Some("inactive")
        } else if !recent {
            Some("the last plan is over an hour old (the event window moves)")
        } else if events.full || contacts.full {
            Some("a full listing (no sync token)")
        } else if row.revoked_at.is_some() {
            Some("revoked before")
        } else if row.last_error.is_some() {
            Some("the last pass failed")
        } else if row.scope_fingerprint.as_deref() != Some(resolved.fingerprint.as_str()) {
            Some("the scope changed")
        } else if self.state.has_pending_links(&user.id, None)? {
            Some("writes pending")
        } else {
            None
        };
        if let Some(why) = why {
            return full(why);
        }
        if !self.echoes_only(&user.id, &events.changes)? {
            return full("events changed in Google");
        }
        if !self.echoes_only(&user.id, &contacts.changes)? {
            return full("contacts changed in Google");
        }
        if planned == self.state.crm_cursor()?.0 {
            return Ok((Mode::Quiet, None));
        }
        match lazy.changed().filter(|c| c.from.0 == planned) {
            Some(changed) => Ok((Mode::Changes(changed), None)),
            None => full("the CRM changed for this user since the last plan"),
        }
    }

    /// Whether every one of `changes` is the echo of our own write: an item at the etag
    /// its link was last synced at (in our container), or the deletion of an item we hold no
    /// link or index entry for.
    fn echoes_only<T: RemoteKind>(
        &self,
        user: &UserId,
        changes: &[RemoteChange<T>],
    ) -> Result<bool, StoreError> {
        if changes.is_empty() {
            return Ok(true);
        }
        let ids = changes.iter().map(|c| match c {
            RemoteChange::Present(it) => it.google_id.as_str(),
            RemoteChange::Deleted { google_id } => google_id.as_str(),
        });
        let links = self.state.link_etags(user, T::KIND, ids)?;
        for change in changes {
            let echo = match change {
                RemoteChange::Present(it) => {
                    it.in_container
                        && links.get(&it.google_id).is_some_and(|(state, etag)| {
                            *state == LinkState::Linked && etag.as_deref() == Some(it.etag.as_str())
                        })
                }
                RemoteChange::Deleted { google_id } => {
                    !links.contains_key(google_id)
                        && !self.state.is_indexed_unlinked(user, T::KIND, google_id)?
                }
            };
            if !echo {
                // What made the user's pass plan (with `planned_because`): enough to tell
                // a phone edit from an echo the engine failed to recognise.
                match change {
                    RemoteChange::Present(it) => tracing::debug!(
                        user = %user,
                        kind = %T::KIND,
                        google_id = %it.google_id,
                        etag = %it.etag,
                        in_container = it.in_container,
                        link = ?links.get(&it.google_id),
                        "listed item is not an echo of our own write"
                    ),
                    RemoteChange::Deleted { google_id } => tracing::debug!(
                        user = %user,
                        kind = %T::KIND,
                        google_id = %google_id,
                        link = ?links.get(google_id),
                        "listed deletion is not an echo of our own write"
                    ),
                }
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The breaker of DESIGN.md §3 over a plan's Google deletions and live links per kind:
    /// refuses (and says so in the report and the audit) a plan that pulls back too much,
    /// or anything while the CRM holds no record of a kind. Not for inactive users, whose
    /// revocation is the point, nor when forced.
    fn breaker_refuses(
        &self,
        model: &OrgModel,
        user: &User,
        options: &SyncOptions,
        run_id: &str,
        report: &mut UserReport,
        weighed: [(ObjectKind, usize, usize); 2],
    ) -> Result<bool, StoreError> {
        if !user.active || options.force {
            return Ok(false);
        }
        for (kind, deletions, linked) in weighed {
            let crm_empty = match kind {
                ObjectKind::Contact => model.contacts.is_empty(),
                _ => model.events.is_empty(),
            };
            if breaker_trips(deletions, linked, self.config.sync.max_delete_fraction)
                || (crm_empty && linked > 0 && deletions > 0)
            {
                super::observe::breaker_refused(&user.id, kind, deletions, linked);
                report.status = UserStatus::Refused;
                report.message = Some(format!(
                    "refused: the plan would delete {deletions} of {linked} synced {kind}s \
                     (max_delete_fraction {}); run with --force if this is intended",
                    self.config.sync.max_delete_fraction
                ));
                if !options.dry_run {
                    self.state.write(|w| {
                        w.audit(
                            run_id,
                            Some(&user.id),
                            None,
                            "breaker_refused",
                            &serde_json::json!({"kind": kind, "deletions": deletions, "linked": linked}),
                        )
                    })?;
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Takes one kind's execution into the user's report, and its echoes in when it wrote
    /// enough to them (see [`Engine::absorb_echoes`]); `listed_in_full`: the pass listed
    /// the collection in full.
    async fn fold_outcome<T: RemoteKind>(
        &self,
        report: &mut UserReport,
        outcome: super::execute::KindOutcome,
        google_user: &GoogleUser,
        (container, listed_in_full): (&str, bool),
    ) -> Result<(), StoreError> {
        match T::KIND {
            ObjectKind::Contact => report.contacts.add(&outcome.counts),
            _ => report.events.add(&outcome.counts),
        }
        if absorbs(&outcome, listed_in_full) {
            self.absorb_echoes::<T>(google_user, container).await?;
        }
        report.errors.extend(outcome.errors);
        report.crm_changed.extend(
            outcome
                .crm_changed
                .into_iter()
                .map(|id| RecordRef::new(T::KIND, id)),
        );
        Ok(())
    }

    /// Lists `container` once more from the token this pass just saved, after many writes
    /// to it: when the listing holds nothing but the echoes of those writes, its token is
    /// kept, so the next pass does not download and check them again (the first pass after
    /// a full sync would otherwise read every item back). Anything else in it (a phone edit
    /// made meanwhile), or a failed listing, leaves the saved token: the next pass lists
    /// from there as it would have anyway.
    async fn absorb_echoes<T: RemoteKind>(
        &self,
        google_user: &GoogleUser,
        container: &str,
    ) -> Result<(), StoreError> {
        let user = &google_user.user;
        if self.state.has_pending_links(user, Some(T::KIND))? {
            return Ok(());
        }
        let Some(token) = self.state.sync_user(user)?.and_then(|s| match T::KIND {
            ObjectKind::Event => s.events_sync_token,
            _ => s.contacts_sync_token,
        }) else {
            return Ok(());
        };
        // Page by page: a collection of thousands of echoes is never held whole, and the
        // first page with anything else ends the listing.
        let mut failed = None;
        let mut keep = |page: Vec<RemoteChange<T>>| match self.echoes_only(user, &page) {
            Ok(echoes) => echoes,
            Err(e) => {
                failed = Some(e);
                false
            }
        };
        let scanned = T::scan(self.remote, google_user, container, &token, &mut keep).await;
        if let Some(e) = failed {
            return Err(e);
        }
        match scanned {
            Ok(Some(next)) => self
                .state
                .write(|w| w.set_sync_token(user, T::KIND, Some(&next))),
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::debug!(user = %user, kind = %T::KIND, error = %e, "echo listing failed; the next pass lists them");
                Ok(())
            }
        }
    }

    fn fail(&self, report: &mut UserReport, message: String) -> Result<Planned, EngineError> {
        report.status = UserStatus::Failed;
        report.message = Some(message);
        Ok(Planned::Early)
    }

    /// Lists a kind: incrementally with the token, fully without one or when Google says the
    /// token expired.
    async fn listing<T: RemoteKind>(
        &self,
        user: &GoogleUser,
        container: &str,
        token: Option<String>,
    ) -> Result<Listing<T>, super::remote::RemoteError> {
        let listed = match T::list(self.remote, user, container, token.as_deref()).await {
            Err(e) if e.kind == RemoteErrorKind::SyncTokenExpired && token.is_some() => {
                T::list(self.remote, user, container, None).await
            }
            other => other,
        };
        if let Ok(l) = &listed {
            tracing::debug!(user = %user.user, kind = %T::KIND, changes = l.changes.len(), full = l.full, "listed");
        }
        listed
    }

    /// The index of unlinked Google items as it stands after this listing.
    fn unlinked<T: RemoteKind>(
        &self,
        user: &UserId,
        listing: &Listing<T>,
    ) -> Result<(Vec<RemoteItem<T>>, BTreeSet<String>), StoreError> {
        let (stored, reported) = self.state.unlinked_items::<T>(user, T::KIND)?;
        let mut by_id: BTreeMap<String, RemoteItem<T>> = if listing.full {
            BTreeMap::new()
        } else {
            stored
                .into_iter()
                .map(|i| (i.google_id.clone(), i))
                .collect()
        };
        for change in &listing.changes {
            match change {
                RemoteChange::Present(item) => {
                    by_id.insert(item.google_id.clone(), item.clone());
                }
                RemoteChange::Deleted { google_id } => {
                    by_id.remove(google_id);
                }
            }
        }
        Ok((by_id.into_values().collect(), reported))
    }
}

/// Which operation a CRM step needs the user to be allowed.
/// What the executor asks of the CRM on a user's behalf, for both kinds: whether a write is
/// still allowed (edit rights re-checked at execution time), what a phone item becomes when
/// imported, and how a CRM entity shows on the phone.
struct UserHooks<'a> {
    contact_may: MayWrite<'a, SyncedContact>,
    event_may: MayWrite<'a, SyncedEvent>,
    import_contact: Import<'a, SyncedContact>,
    import_event: Import<'a, SyncedEvent>,
    project_contact: Project<'a, SyncedContact>,
    project_event: Project<'a, SyncedEvent>,
}

type MayWrite<'a, T> = Box<dyn Fn(&CrmStep<T>, Option<&CrmId>) -> bool + 'a>;
type Import<'a, T> = Box<dyn Fn(&CrmId, &T) -> Option<crate::crm::Entity> + 'a>;
type Project<'a, T> = Box<dyn Fn(&crate::crm::Entity) -> Option<T> + 'a>;

impl<'a> UserHooks<'a> {
    fn new(access: &'a Access<'a>, user: &'a UserId) -> Self {
        let may = move |kind: ObjectKind, op: Operation, id: Option<&CrmId>| match (op, id) {
            (Operation::Create, _) => access.may_create(user, kind).unwrap_or(false),
            (op, Some(id)) => access
                .may(user, &RecordRef::new(kind, id.clone()), op)
                .unwrap_or(false),
            (_, None) => false,
        };
        let model = access.model();
        Self {
            contact_may: Box::new(move |s, id| may(ObjectKind::Contact, s.op(), id)),
            event_may: Box::new(move |s, id| may(ObjectKind::Event, s.op(), id)),
            import_contact: Box::new(move |id, d| {
                Some(desired::import_contact(access, user, id, d))
            }),
            import_event: Box::new(move |id, d| Some(desired::import_event(user, id, d))),
            project_contact: Box::new(move |e| desired::project_contact_entity(model, e)),
            project_event: Box::new(move |e| match e {
                crate::crm::Entity::Event(ev) => Some(desired::project_event(access, user, ev)),
                _ => None,
            }),
        }
    }

    fn contacts(&self) -> Hooks<'_, SyncedContact> {
        Hooks {
            may_write: &*self.contact_may,
            import_entity: &*self.import_contact,
            project: &*self.project_contact,
        }
    }

    fn events(&self) -> Hooks<'_, SyncedEvent> {
        Hooks {
            may_write: &*self.event_may,
            import_entity: &*self.import_event,
            project: &*self.project_event,
        }
    }
}

trait StepKind {
    fn op(&self) -> Operation;
}

impl<T> StepKind for CrmStep<T> {
    fn op(&self) -> Operation {
        match self {
            CrmStep::Update { .. } => Operation::Edit,
            CrmStep::Create { .. } => Operation::Create,
            CrmStep::Delete { .. } => Operation::Delete,
        }
    }
}

/// A listing that changes nothing (the stored index of unlinked items stands as it is).
/// Whether a kind's execution wrote enough, and completely, to take in its echoes now
/// (see [`ABSORB_ECHOES_FROM`]).
fn absorbs(outcome: &super::execute::KindOutcome, listed_in_full: bool) -> bool {
    let writes = outcome.counts.google_writes();
    outcome.token_saved
        && outcome.errors.is_empty()
        && (writes >= ABSORB_ECHOES_FROM || (listed_in_full && writes > 0))
}

fn incremental_nothing<T>() -> Listing<T> {
    Listing {
        changes: Vec::new(),
        next_sync_token: None,
        full: false,
    }
}

fn empty_listing<T>() -> Listing<T> {
    Listing {
        changes: Vec::new(),
        next_sync_token: None,
        full: true,
    }
}

/// Matches a phone contact against the CRM: readable records first; a match among hidden
/// records is reported, never linked.
fn crm_contact_match(access: &Access<'_>, user: &UserId, data: &SyncedContact) -> CrmMatch {
    use super::plan::Synced;
    let keys: BTreeSet<String> = data.match_keys().into_iter().collect();
    if keys.is_empty() {
        return CrmMatch::default();
    }
    let model = access.model();
    let mut out = CrmMatch::default();
    for c in model.contacts.values() {
        let hit = c
            .emails
            .iter()
            .any(|e| keys.contains(&format!("email:{}", e.address)))
            || c.phones
                .iter()
                .any(|p| keys.contains(&format!("phone:{}", p.number)));
        if !hit {
            continue;
        }
        let readable = access
            .may(
                user,
                &RecordRef::new(ObjectKind::Contact, c.id.clone()),
                Operation::Read,
            )
            .unwrap_or(false);
        if readable && out.readable.is_none() {
            out.readable = Some(c.id.clone());
        } else if !readable && out.hidden.is_none() {
            out.hidden = Some(c.id.clone());
        }
    }
    out
}

fn planned_counts<T>(plan: &KindPlan<T>) -> Counts {
    use super::plan::GoogleStep;
    let mut c = Counts::default();
    for r in &plan.records {
        match &r.google {
            Some(GoogleStep::Create { .. }) => c.created += 1,
            Some(GoogleStep::Update { .. }) => c.updated += 1,
            Some(GoogleStep::Delete { .. }) => c.deleted += 1,
            Some(GoogleStep::Release { .. }) => c.released += 1,
            None => {}
        }
        match r.crm.as_deref() {
            Some(CrmStep::Create { .. }) => c.imported += 1,
            Some(_) => c.written_back += 1,
            None => {}
        }
        c.conflicts += r.conflicts.len();
    }
    c
}

fn plan_lines<T: super::plan::Synced>(plan: &KindPlan<T>) -> Vec<PlanLine> {
    plan.records
        .iter()
        .filter(|r| !r.is_noop())
        .map(|r| plan_line(plan.kind, r))
        .collect()
}

fn plan_line<T: super::plan::Synced>(kind: ObjectKind, r: &RecordPlan<T>) -> PlanLine {
    use super::plan::GoogleStep;
    let google = r.google.as_ref().map(|g| match g {
        GoogleStep::Create { .. } => "create".to_owned(),
        GoogleStep::Update { google_id, .. } => format!("update {google_id}"),
        GoogleStep::Delete { google_id, .. } => format!("delete {google_id}"),
        GoogleStep::Release { google_id, .. } => format!("release {google_id}"),
    });
    let crm = r.crm.as_deref().map(|c| match c {
        CrmStep::Update { fields, .. } => format!(
            "write back {}",
            fields.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        CrmStep::Create { new_id, .. } => format!("create {kind}:{new_id}"),
        CrmStep::Delete { .. } => "delete".to_owned(),
    });
    let mut diff = Vec::new();
    if let (Some(base), Some(GoogleStep::Update { data, .. })) = (&r.base, &r.google) {
        diff.extend(field_diffs(
            base.as_ref(),
            data,
            "google now",
            "google after",
        ));
    }
    if let (Some(before), Some(CrmStep::Update { fields, .. })) = (&r.before, r.crm.as_deref()) {
        if let Ok(mut after) = serde_json::to_value(before) {
            for (k, v) in fields {
                after[k] = v.clone();
            }
            if let Ok(before) = serde_json::to_value(before) {
                diff.extend(field_diffs(&before, &after, "crm now", "crm after"));
            }
        }
    }
    PlanLine {
        kind,
        case: r.case,
        record: r.crm_id.as_ref().map(|c| format!("{kind}:{c}")),
        label: r.label.clone(),
        google,
        crm,
        diff,
    }
}

/// Unified diffs, one per changed field, rendered with `similar`.
pub fn field_diffs<T: serde::Serialize>(
    before: &T,
    after: &T,
    before_label: &str,
    after_label: &str,
) -> Vec<String> {
    let changed = super::plan::changed_fields(before, after);
    let Ok(serde_json::Value::Object(old)) = serde_json::to_value(before) else {
        return Vec::new();
    };
    changed
        .into_iter()
        .map(|(field, new)| {
            let render = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => s.clone(),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            };
            let old_text = old.get(&field).map(render).unwrap_or_default();
            let new_text = render(&new);
            let diff = similar::TextDiff::from_lines(&old_text, &new_text);
            format!(
                "{field}:\n{}",
                diff.unified_diff()
                    .context_radius(2)
                    .header(before_label, after_label)
            )
        })
        .collect()
}
