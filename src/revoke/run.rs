//! Draining the revocation outbox: one revocation at a time per user, every step
//! idempotent, so an attempt cut short by a crash, a 500 or a 429 is simply repeated by the
//! next pass (and one user's failure never holds up another's).
//!
//! Steps for (user, account):
//! 1. first attempt: the inventory of what the account holds is stored with the outbox row;
//! 2. contacts: a full listing, then the planner with nothing desired and every link lost
//!    for reason `revoked` — created contacts are deleted, linked pre-existing and imported
//!    contacts released (restored or stripped), leftovers carrying our marker handled the
//!    same way by their own-creation marker — executed in batches like any pass;
//! 3. the dedicated contact group (the one on record and any carrying this user's marker)
//!    is deleted, keeping its members;
//! 4. the dedicated calendar (on record and by marker) is deleted with its events;
//! 5. verification by listing: no calendar or group with this user's marker, no contact
//!    with a crmsync marker; leftovers are removed and the listing repeated once;
//! 6. the credentials held for the account are released;
//! 7. the receipt (inventory, what was deleted / restored / stripped, verification, when)
//!    closes the outbox row and goes into the audit; `status` shows the user revoked.

use super::remote::{CredentialRelease, MarkedCalendar, MarkedGroup, Offboarding};
use super::{detect, Revocation, RevocationReason, RevocationState};
use crate::crm::OrgModel;
use crate::model::{CrmId, ObjectKind, SyncedContact, SyncedEvent, UserId};
use crate::store::StoreError;
use crate::sync::engine::{Engine, EngineError, SyncOptions};
use crate::sync::execute::{execute_kind, Hooks, RemovedItem, UserCtx};
use crate::sync::merge::ConflictPolicy;
use crate::sync::plan::{
    plan, Case, CrmMatch, Direction, GoogleDeletePolicy, Link, LinkOrigin, LostReason, PlanInput,
    Policies, RemoteView,
};
use crate::sync::remote::{
    ContactOp, GoogleUser, Listing, OpOutcome, Remote, RemoteChange, RemoteError,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// How an attempt at a revocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationOutcome {
    /// Drained and verified; the receipt is in the audit.
    Done,
    /// Not finished (Google failed or something is left); the next pass goes on.
    Incomplete,
    /// Held by the mass-offboarding guard.
    Paused,
    /// Dry run: what would be removed and restored.
    Planned,
    /// Nothing of ours in the account (never synced there, or already revoked).
    NothingToRevoke,
}

/// What a verification listing found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub at: String,
    /// Calendars carrying this user's marker.
    pub calendars: Vec<String>,
    /// Contact groups carrying this user's marker.
    pub groups: Vec<String>,
    /// Contacts carrying a crmsync marker.
    pub contacts: Vec<String>,
}

impl Verification {
    pub fn is_clean(&self) -> bool {
        self.calendars.is_empty() && self.groups.is_empty() && self.contacts.is_empty()
    }
}

/// A contact given back to its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleasedContact {
    pub record: Option<String>,
    pub google_id: Option<String>,
    pub restored: Vec<String>,
    /// Fields the phone changed after crmsync linked it: the phone's values were kept.
    pub kept_phone_edits: Vec<String>,
    /// No pre-link snapshot: only our marker and group membership were removed.
    pub stripped_only: bool,
}

/// The report of one revocation attempt (and, when done, its receipt).
#[derive(Debug, Clone, Serialize)]
pub struct RevocationReport {
    pub id: i64,
    pub user: String,
    pub account: String,
    pub reason: RevocationReason,
    pub outcome: RevocationOutcome,
    pub message: Option<String>,
    /// What the account held when the revocation first started.
    pub inventory: serde_json::Value,
    /// Contacts crmsync created, deleted (records, or Google ids of leftovers).
    pub contacts_deleted: Vec<String>,
    /// Contacts the user had before (or made on the phone), restored or stripped.
    pub contacts_released: Vec<ReleasedContact>,
    pub calendars_deleted: Vec<String>,
    pub groups_deleted: Vec<String>,
    pub verification: Option<Verification>,
    pub credentials: Option<CredentialRelease>,
    pub errors: Vec<String>,
}

impl RevocationReport {
    fn new(rev: &Revocation, outcome: RevocationOutcome) -> Self {
        Self {
            id: rev.id,
            user: rev.user_id.clone(),
            account: rev.account.clone(),
            reason: rev.reason,
            outcome,
            message: None,
            inventory: rev.inventory.clone().unwrap_or(serde_json::Value::Null),
            contacts_deleted: Vec::new(),
            contacts_released: Vec::new(),
            calendars_deleted: Vec::new(),
            groups_deleted: Vec::new(),
            verification: None,
            credentials: None,
            errors: Vec::new(),
        }
    }

    fn absorb_removed(&mut self, removed: Vec<RemovedItem>) {
        for item in removed {
            match item.released {
                None => self.contacts_deleted.push(
                    item.record
                        .or(item.google_id)
                        .unwrap_or_else(|| "(unknown)".into()),
                ),
                Some(r) if r.already_released => {}
                Some(r) => self.contacts_released.push(ReleasedContact {
                    record: item.record,
                    google_id: item.google_id,
                    restored: r.restored,
                    kept_phone_edits: r.kept_phone_edits,
                    stripped_only: r.stripped_only,
                }),
            }
        }
    }

    /// The receipt kept in the outbox row and the audit.
    fn receipt(&self, started_at: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "revocation": self.id,
            "user": self.user,
            "account": self.account,
            "reason": self.reason,
            "started_at": started_at,
            "finished_at": crate::store::now(),
            "inventory": self.inventory,
            "contacts_deleted": self.contacts_deleted,
            "contacts_released": self.contacts_released,
            "calendars_deleted": self.calendars_deleted,
            "groups_deleted": self.groups_deleted,
            "verified": self.verification,
            "credentials": self.credentials,
        })
    }
}

/// How a manual `crmsync revoke` ran.
#[derive(Debug, Clone, Default)]
pub struct RevokeOptions {
    pub dry_run: bool,
}

/// Users sharing one Google account: account (lower case) → users, for accounts claimed
/// by more than one CRM user. All of them are refused (a shared account would mix two
/// users' permissions on one phone, and revoking one would wipe the other). An inactive
/// user counts only while their data may still be in that account (`holds_data`), so a
/// leaver's account can be given to someone else once the leaver was revoked.
pub fn shared_accounts(
    model: &OrgModel,
    holds_data: impl Fn(&UserId, &str) -> bool,
) -> BTreeMap<String, Vec<UserId>> {
    let mut by_account: BTreeMap<String, Vec<UserId>> = BTreeMap::new();
    for u in model.users.values() {
        if let Some(a) = u
            .google_account
            .as_ref()
            .filter(|a| u.active || holds_data(&u.id, a))
        {
            by_account
                .entry(a.trim().to_lowercase())
                .or_default()
                .push(u.id.clone());
        }
    }
    by_account.retain(|_, users| users.len() > 1);
    by_account
}

impl<R: Remote + Offboarding> Engine<'_, R> {
    /// Updates the outbox for the CRM as mirrored now and returns the open revocations
    /// (in a dry run, as they would be, without storing anything).
    pub fn offboard(
        &self,
        model: &OrgModel,
        options: &SyncOptions,
        run_id: &str,
    ) -> Result<Vec<Revocation>, EngineError> {
        let rows = self.state.sync_users()?;
        let open = self.state.open_revocations()?;
        // `--force` releases what the guard holds, for the users this run concerns.
        let forced = |user: &str| {
            options.force
                && (options.users.is_empty() || options.users.iter().any(|u| u.as_str() == user))
        };
        let decision = detect::decide(
            model,
            &rows,
            &open,
            self.config.sync.max_offboarding_fraction,
            forced,
        );
        if options.dry_run {
            let mut open = open;
            open.retain(|r| !decision.cancel.contains(&r.id));
            for r in open.iter_mut().filter(|r| decision.unpause.contains(&r.id)) {
                r.state = RevocationState::Queued;
            }
            for (i, q) in decision.queue.iter().enumerate() {
                open.push(Revocation {
                    id: -(i as i64) - 1,
                    user_id: q.user.clone(),
                    account: q.account.clone(),
                    reason: q.reason,
                    state: if q.paused.is_some() {
                        RevocationState::Paused
                    } else {
                        RevocationState::Queued
                    },
                    paused_reason: q.paused.clone(),
                    queued_at: String::new(),
                    started_at: None,
                    attempts: 0,
                    last_error: None,
                    inventory: None,
                    receipt: None,
                    finished_at: None,
                });
            }
            return Ok(open);
        }
        for id in &decision.cancel {
            self.state.cancel_revocation(*id)?;
        }
        for id in &decision.unpause {
            self.state.unpause_revocation(*id)?;
        }
        let mut queued = Vec::new();
        for q in &decision.queue {
            if let Some(id) =
                self.state
                    .queue_revocation(&q.user, &q.account, q.reason, q.paused.as_deref())?
            {
                queued.push(serde_json::json!({"id": id, "user": q.user, "account": q.account, "reason": q.reason, "paused": q.paused.is_some()}));
            }
        }
        self.state.write(|w| {
            for id in &decision.cancel {
                w.audit(run_id, None, None, "revocation_cancelled", &serde_json::json!({"revocation": id, "why": "the user is active again with the same account"}))?;
            }
            for id in &decision.unpause {
                w.audit(run_id, None, None, "revocation_released", &serde_json::json!({"revocation": id, "why": "--force"}))?;
            }
            if !queued.is_empty() {
                let action = if decision.paused.is_some() {
                    "revocations_paused"
                } else {
                    "revocations_queued"
                };
                w.audit(
                    run_id,
                    None,
                    None,
                    action,
                    &serde_json::json!({"revocations": queued, "why": decision.paused}),
                )?;
            }
            Ok(())
        })?;
        Ok(self.state.open_revocations()?)
    }

    /// `crmsync revoke USER`: queues a revocation of everything synced to the user's Google
    /// account (unpausing one the guard holds: naming the user is explicit) and drains it
    /// now. A dry run changes nothing anywhere and reports what would be removed and
    /// restored.
    pub async fn revoke_now(
        &self,
        user: &UserId,
        options: &RevokeOptions,
    ) -> Result<RevocationReport, EngineError> {
        let run_id = crate::sync::engine::new_run_id();
        let (model, _, _, _) = self.load_model(options.dry_run)?;
        if self.state.sync_user(user)?.is_none() && !model.users.contains_key(user) {
            return Err(EngineError::UnknownUser(user.clone()));
        }
        // Revocations already open for this user (an old account first), then the account
        // the user is synced into now; bounded: each round closes one or stops.
        let mut last = None;
        for _ in 0..4 {
            let Some(rev) = self.next_manual_revocation(user, options, &run_id, last.is_some())?
            else {
                break;
            };
            let report = self.run_revocation(&rev, options.dry_run, &run_id).await?;
            let finished = report.outcome == RevocationOutcome::Done;
            last = Some(report);
            if !finished {
                break;
            }
        }
        if let Some(report) = last {
            return Ok(report);
        }
        let row = self.state.sync_user(user)?;
        let account = row
            .as_ref()
            .map(|r| r.google_account.clone())
            .unwrap_or_default();
        let mut report = RevocationReport::new(
            &manual_revocation(user, &account),
            RevocationOutcome::NothingToRevoke,
        );
        report.message = Some(match row {
            Some(r) => format!(
                "{user} was already revoked from {} ({})",
                r.google_account,
                r.revoked_at.unwrap_or_default()
            ),
            None => format!("{user} was never synced: nothing to revoke"),
        });
        Ok(report)
    }

    /// The next revocation `crmsync revoke USER` runs: an open one (a paused one is
    /// released: naming the user is explicit), else a new manual one for the account the
    /// user's data is in, if it still holds any. A dry run stores nothing (and plans one).
    fn next_manual_revocation(
        &self,
        user: &UserId,
        options: &RevokeOptions,
        run_id: &str,
        after_one: bool,
    ) -> Result<Option<Revocation>, EngineError> {
        let open = self
            .state
            .open_revocations()?
            .into_iter()
            .find(|r| r.user_id == user.as_str());
        if let Some(mut rev) = open {
            if options.dry_run && after_one {
                return Ok(None);
            }
            if rev.state == RevocationState::Paused {
                if !options.dry_run {
                    self.state.unpause_revocation(rev.id)?;
                }
                rev.state = RevocationState::Queued;
            }
            return Ok(Some(rev));
        }
        let Some(row) = self.state.sync_user(user)?.filter(|r| r.holds_data()) else {
            return Ok(None);
        };
        if options.dry_run {
            return Ok((!after_one).then(|| manual_revocation(user, &row.google_account)));
        }
        let mut rev = manual_revocation(user, &row.google_account);
        if let Some(id) = self.state.queue_revocation(
            user.as_str(),
            &row.google_account,
            RevocationReason::Manual,
            None,
        )? {
            rev.id = id;
        }
        self.state.write(|w| {
            w.audit(
                run_id,
                Some(user),
                None,
                "revocations_queued",
                &serde_json::json!({"revocations": [{"id": rev.id, "user": user, "account": rev.account, "reason": RevocationReason::Manual}]}),
            )
        })?;
        Ok(Some(rev))
    }

    /// One attempt at a queued revocation (or, in a dry run, its plan).
    pub async fn run_revocation(
        &self,
        rev: &Revocation,
        dry_run: bool,
        run_id: &str,
    ) -> Result<RevocationReport, EngineError> {
        let user = UserId::new(rev.user_id.as_str())
            .map_err(|e| StoreError::Corrupt(format!("revocation user: {e}")))?;
        let google_user = GoogleUser {
            user: user.clone(),
            account: rev.account.clone(),
        };
        if rev.state == RevocationState::Paused {
            let mut report = RevocationReport::new(rev, RevocationOutcome::Paused);
            report.message = rev.paused_reason.clone();
            return Ok(report);
        }
        let row = self
            .state
            .sync_user(&user)?
            .filter(|r| r.google_account.eq_ignore_ascii_case(&rev.account));
        let known_calendar = row.as_ref().and_then(|r| r.calendar_id.clone());
        let known_group = row.as_ref().and_then(|r| r.group_resource.clone());
        let contact_links: BTreeMap<CrmId, Link<SyncedContact>> =
            self.state.links(&user, ObjectKind::Contact)?;
        let event_links: BTreeMap<CrmId, Link<SyncedEvent>> =
            self.state.links(&user, ObjectKind::Event)?;
        let inventory = inventory(&contact_links, &event_links, &known_calendar, &known_group);
        let mut report = RevocationReport::new(rev, RevocationOutcome::Incomplete);
        if report.inventory.is_null() {
            report.inventory = inventory.clone();
        }
        if !dry_run && rev.id > 0 {
            self.state.start_revocation(rev.id, &inventory)?;
        }
        let result = self
            .revoke_steps(
                &google_user,
                &contact_links,
                known_calendar,
                known_group,
                dry_run,
                run_id,
                &mut report,
            )
            .await?;
        match result {
            Err(e) => {
                report.outcome = RevocationOutcome::Incomplete;
                report.message = Some(e.clone());
                report.errors.push(e.clone());
                if !dry_run && rev.id > 0 {
                    self.state.fail_revocation(rev.id, &e)?;
                }
            }
            Ok(()) if dry_run => report.outcome = RevocationOutcome::Planned,
            Ok(()) => {
                report.outcome = RevocationOutcome::Done;
                let started = self.state.revocation(rev.id)?.and_then(|r| r.started_at);
                if let Some(stored) = self.state.revocation(rev.id)?.and_then(|r| r.inventory) {
                    report.inventory = stored;
                }
                let receipt = report.receipt(started.as_deref());
                self.state.finish_revocation(run_id, rev, &receipt)?;
            }
        }
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn revoke_steps(
        &self,
        google_user: &GoogleUser,
        contact_links: &BTreeMap<CrmId, Link<SyncedContact>>,
        known_calendar: Option<String>,
        known_group: Option<String>,
        dry_run: bool,
        run_id: &str,
        report: &mut RevocationReport,
    ) -> Result<Result<(), String>, EngineError> {
        let user = &google_user.user;
        let group = known_group.clone().unwrap_or_default();
        // 2. Contacts.
        let listing = match self.remote.list_contacts(google_user, &group, None).await {
            Ok(l) => l,
            Err(e) => return Ok(Err(format!("listing contacts: {e}"))),
        };
        let view = RemoteView::from_changes(&listing.changes, true);
        let unlinked: Vec<_> = present(&listing);
        let desired = BTreeMap::new();
        let retained = BTreeSet::new();
        let reported = BTreeSet::new();
        let lost: BTreeMap<CrmId, LostReason> = contact_links
            .keys()
            .map(|id| (id.clone(), LostReason::Revoked))
            .chain(
                unlinked
                    .iter()
                    .filter_map(|i| i.crm_id.clone())
                    .map(|id| (id, LostReason::Revoked)),
            )
            .collect();
        let no_match = |_: &SyncedContact| CrmMatch::default();
        let no_event_id = |_: &CrmId, _: i64| String::new();
        // Nothing is imported during a revocation (phone items are left out of the plan).
        let import_id = |g: &str| crate::sync::engine::import_id(user, g);
        let input = PlanInput {
            desired: &desired,
            retained: &retained,
            links: contact_links,
            remote: &view,
            unlinked: &unlinked,
            already_reported: &reported,
            lost_reasons: &lost,
            policies: Policies {
                direction: Direction::CrmToGoogle,
                conflict: ConflictPolicy::CrmWins,
                google_delete: GoogleDeletePolicy::Unlink,
                may_create_in_crm: false,
            },
            crm_match: &no_match,
            event_id: &no_event_id,
            import_id: &import_id,
            marked: Default::default(),
            explain: false,
        };
        let mut records = plan(&input).records;
        // Unmarked phone items in our group are the user's own: the group's deletion only
        // takes their membership.
        records.retain(|r| r.case != Case::PhoneNew);
        let calendars = match self.remote.marked_calendars(google_user).await {
            Ok(c) => own_calendars(c, user, known_calendar.as_deref()),
            Err(e) => return Ok(Err(format!("listing calendars: {e}"))),
        };
        let groups = match self.remote.marked_groups(google_user).await {
            Ok(g) => own_groups(g, user, known_group.as_deref()),
            Err(e) => return Ok(Err(format!("listing contact groups: {e}"))),
        };
        if dry_run {
            for r in &records {
                let name = r
                    .crm_id
                    .as_ref()
                    .map(|c| format!("contact:{c}"))
                    .or_else(|| r.google_id.clone())
                    .unwrap_or_default();
                match &r.google {
                    Some(crate::sync::plan::GoogleStep::Delete { .. }) => {
                        report.contacts_deleted.push(name)
                    }
                    Some(crate::sync::plan::GoogleStep::Release { .. }) => {
                        report.contacts_released.push(ReleasedContact {
                            record: r.crm_id.as_ref().map(|c| format!("contact:{c}")),
                            google_id: r.google_id.clone(),
                            restored: Vec::new(),
                            kept_phone_edits: Vec::new(),
                            stripped_only: false,
                        })
                    }
                    _ => {}
                }
            }
            report.calendars_deleted = calendars;
            report.groups_deleted = groups;
            return Ok(Ok(()));
        }
        // Revocation writes nothing to the CRM.
        let hooks_may =
            |_: &crate::sync::plan::CrmStep<SyncedContact>, _: Option<&CrmId>| -> bool { false };
        let hooks_import = |_: &CrmId, _: &SyncedContact| -> Option<crate::crm::Entity> { None };
        let hooks_project = |_: &crate::crm::Entity| -> Option<SyncedContact> { None };
        let ctx = UserCtx {
            remote: self.remote,
            state: self.state,
            crm: &self.crm,
            google_user,
            container: &group,
            run_id,
        };
        let outcome = execute_kind(
            &ctx,
            &input,
            records,
            &Hooks {
                may_write: &hooks_may,
                import_entity: &hooks_import,
                project: &hooks_project,
            },
            crate::sync::execute::Commit::whole(&listing),
        )
        .await?;
        report.absorb_removed(outcome.removed);
        if !outcome.errors.is_empty() {
            let errors: Vec<String> = outcome
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.record
                            .as_deref()
                            .or(e.google_id.as_deref())
                            .unwrap_or("?"),
                        e.error
                    )
                })
                .collect();
            report.errors.extend(errors.iter().cloned());
            return Ok(Err(format!(
                "{} contact(s) could not be removed yet",
                errors.len()
            )));
        }
        // 3. The group, then 4. the calendar with its events.
        for g in groups {
            match self.remote.delete_group(google_user, &g).await {
                Ok(true) => report.groups_deleted.push(g),
                Ok(false) => {} // already gone (an earlier attempt, or the user)
                Err(e) => return Ok(Err(format!("deleting contact group {g}: {e}"))),
            }
        }
        for c in calendars {
            match self.remote.delete_calendar(google_user, &c).await {
                Ok(true) => report.calendars_deleted.push(c),
                Ok(false) => {}
                Err(e) => return Ok(Err(format!("deleting calendar {c}: {e}"))),
            }
        }
        self.state.write(|w| {
            let events: BTreeMap<CrmId, Link<serde_json::Value>> =
                self.state.links(user, ObjectKind::Event)?;
            for id in events.keys() {
                w.delete_link(user, ObjectKind::Event, id)?;
            }
            Ok(())
        })?;
        // 5. Verify by listing; leftovers are removed and the listing repeated once.
        for round in 0..2 {
            let verification = match self.verify(google_user).await {
                Ok(v) => v,
                Err(e) => return Ok(Err(format!("verifying: {e}"))),
            };
            let clean = verification.0.is_clean();
            report.verification = Some(verification.0.clone());
            if clean {
                break;
            }
            if round == 1 {
                return Ok(Err(format!(
                    "verification found crmsync items left: {:?}",
                    verification.0
                )));
            }
            if let Err(e) = self
                .remove_leftovers(google_user, verification, report)
                .await
            {
                return Ok(Err(format!("removing leftovers: {e}")));
            }
        }
        // 6. Credentials, last: they were needed until now.
        match self.remote.release_credentials(google_user).await {
            Ok(c) => report.credentials = Some(c),
            Err(e) => return Ok(Err(format!("releasing credentials: {e}"))),
        }
        Ok(Ok(()))
    }

    /// Lists what carries a crmsync marker in the account (calendars and groups of this
    /// user, any marked contact).
    async fn verify(
        &self,
        google_user: &GoogleUser,
    ) -> Result<(Verification, Leftovers), RemoteError> {
        let user = &google_user.user;
        let calendars = own_calendars(self.remote.marked_calendars(google_user).await?, user, None);
        let groups = own_groups(self.remote.marked_groups(google_user).await?, user, None);
        let listing = self.remote.list_contacts(google_user, "", None).await?;
        let contacts: Vec<(String, bool)> = present(&listing)
            .into_iter()
            .filter(|i| i.crm_id.is_some())
            .map(|i| (i.google_id, i.created_by_us))
            .collect();
        Ok((
            Verification {
                at: crate::store::now(),
                calendars: calendars.clone(),
                groups: groups.clone(),
                contacts: contacts.iter().map(|(g, _)| g.clone()).collect(),
            },
            Leftovers { contacts },
        ))
    }

    async fn remove_leftovers(
        &self,
        google_user: &GoogleUser,
        (found, leftovers): (Verification, Leftovers),
        report: &mut RevocationReport,
    ) -> Result<(), RemoteError> {
        for c in &found.calendars {
            self.remote.delete_calendar(google_user, c).await?;
            report.calendars_deleted.push(c.clone());
        }
        for g in &found.groups {
            self.remote.delete_group(google_user, g).await?;
            report.groups_deleted.push(g.clone());
        }
        let ops: Vec<ContactOp> = leftovers
            .contacts
            .iter()
            .map(|(resource, created)| {
                if *created {
                    ContactOp::Delete {
                        resource: resource.clone(),
                    }
                } else {
                    ContactOp::Release {
                        resource: resource.clone(),
                        base: None,
                        pre_link: None,
                    }
                }
            })
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        for r in self.remote.contact_ops(google_user, "", &ops).await? {
            let resource = match &r.key {
                crate::sync::remote::OpKey::Google(g) => g.clone(),
                crate::sync::remote::OpKey::Create(c) => c.to_string(),
            };
            match r.result {
                Ok(OpOutcome::Released(released)) => {
                    report.contacts_released.push(ReleasedContact {
                        record: None,
                        google_id: Some(resource),
                        restored: released.restored,
                        kept_phone_edits: released.kept_phone_edits,
                        stripped_only: released.stripped_only,
                    })
                }
                Ok(_) => report.contacts_deleted.push(resource),
                Err(e) if e.kind == crate::sync::remote::RemoteErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A manual revocation not stored (yet).
fn manual_revocation(user: &UserId, account: &str) -> Revocation {
    Revocation {
        id: 0,
        user_id: user.to_string(),
        account: account.to_owned(),
        reason: RevocationReason::Manual,
        state: RevocationState::Queued,
        paused_reason: None,
        queued_at: String::new(),
        started_at: None,
        attempts: 0,
        last_error: None,
        inventory: None,
        receipt: None,
        finished_at: None,
    }
}

/// Marked contacts a verification found: (resource, created by crmsync).
struct Leftovers {
    contacts: Vec<(String, bool)>,
}

fn present<T: Clone>(listing: &Listing<T>) -> Vec<crate::sync::remote::RemoteItem<T>> {
    listing
        .changes
        .iter()
        .filter_map(|c| match c {
            RemoteChange::Present(i) => Some(i.clone()),
            RemoteChange::Deleted { .. } => None,
        })
        .collect()
}

/// This user's calendars: the one on record, and any carrying this user's marker.
fn own_calendars(found: Vec<MarkedCalendar>, user: &UserId, known: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = known.map(str::to_owned).into_iter().collect();
    for c in found.into_iter().filter(|c| c.marker_user == user.as_str()) {
        if !out.contains(&c.id) {
            out.push(c.id);
        }
    }
    out
}

/// This user's contact groups: the one on record, and any carrying this user's marker.
fn own_groups(found: Vec<MarkedGroup>, user: &UserId, known: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = known.map(str::to_owned).into_iter().collect();
    for g in found.into_iter().filter(|g| g.marker_user == user.as_str()) {
        if !out.contains(&g.resource) {
            out.push(g.resource);
        }
    }
    out
}

fn inventory(
    contacts: &BTreeMap<CrmId, Link<SyncedContact>>,
    events: &BTreeMap<CrmId, Link<SyncedEvent>>,
    calendar: &Option<String>,
    group: &Option<String>,
) -> serde_json::Value {
    let ids = |origin: LinkOrigin| -> Vec<String> {
        contacts
            .values()
            .filter(|l| l.origin == origin)
            .map(|l| l.crm_id.to_string())
            .collect()
    };
    serde_json::json!({
        "contacts_created": ids(LinkOrigin::Created),
        "contacts_linked_existing": ids(LinkOrigin::LinkedExisting),
        "contacts_imported": ids(LinkOrigin::Imported),
        "events": events.len(),
        "calendar": calendar,
        "group": group,
    })
}

/// What one user gets in a pass: revocations to drain first, then (maybe) a normal pass.
#[derive(Debug)]
pub struct UserTask<'m> {
    pub user: UserId,
    pub account: String,
    pub revocations: Vec<Revocation>,
    /// The normal pass, after the revocations (an account change: old account first).
    pub pass: Option<&'m crate::model::User>,
    /// Why the user gets no pass although active with an account (reported).
    pub held: Option<(crate::sync::engine::UserStatus, String)>,
}

impl<R: Remote + Offboarding> Engine<'_, R> {
    /// Every user the pass concerns: CRM users with a Google account, users with data to
    /// revoke, users held back (shared account, revoked by `crmsync revoke`).
    pub fn user_tasks<'m>(
        &self,
        model: &'m OrgModel,
        open: &[Revocation],
        options: &SyncOptions,
    ) -> Result<Vec<UserTask<'m>>, EngineError> {
        use crate::sync::engine::UserStatus;
        let rows: BTreeMap<String, crate::store::SyncUser> = self
            .state
            .sync_users()?
            .into_iter()
            .map(|r| (r.user_id.clone(), r))
            .collect();
        let shared = shared_accounts(model, |user, account| {
            rows.get(user.as_str())
                .is_some_and(|r| r.holds_data() && r.google_account.eq_ignore_ascii_case(account))
        });
        let mut ids: BTreeSet<String> = model.users.keys().map(|u| u.to_string()).collect();
        ids.extend(rows.keys().cloned());
        ids.extend(open.iter().map(|r| r.user_id.clone()));
        let mut tasks = Vec::new();
        for id in ids {
            let Ok(user_id) = UserId::new(id.as_str()) else {
                continue;
            };
            if !options.users.is_empty() && !options.users.contains(&user_id) {
                continue;
            }
            let revocations: Vec<Revocation> =
                open.iter().filter(|r| r.user_id == id).cloned().collect();
            let user = model.users.get(&user_id);
            let account = user
                .and_then(|u| u.google_account.clone())
                .or_else(|| revocations.first().map(|r| r.account.clone()))
                .or_else(|| rows.get(&id).map(|r| r.google_account.clone()))
                .unwrap_or_default();
            let mut pass = None;
            let mut held = None;
            if let Some(u) = user.filter(|u| u.active) {
                if let Some(a) = &u.google_account {
                    let row = rows.get(&id);
                    let manual_revoked = row.is_some_and(|r| {
                        r.revoked_at.is_some()
                            && r.revoked_reason.as_deref()
                                == Some(RevocationReason::Manual.as_str())
                            && r.google_account.eq_ignore_ascii_case(a)
                    });
                    let named = options.force && options.users.contains(&user_id);
                    if let Some(others) = shared.get(&a.trim().to_lowercase()) {
                        let names: Vec<&str> = others.iter().map(UserId::as_str).collect();
                        held = Some((
                            UserStatus::Refused,
                            format!(
                                "Google account {a} is shared by users {}; none of them is \
                                 synced until each has an account of their own",
                                names.join(", ")
                            ),
                        ));
                    } else if manual_revoked && !named {
                        held = Some((
                            UserStatus::Revoked,
                            format!(
                                "revoked with `crmsync revoke`; `crmsync sync --user {id} \
                                 --force` syncs again"
                            ),
                        ));
                    } else {
                        pass = Some(u);
                    }
                }
            }
            if revocations.is_empty() && pass.is_none() && held.is_none() {
                continue;
            }
            tasks.push(UserTask {
                user: user_id,
                account,
                revocations,
                pass,
                held,
            });
        }
        Ok(tasks)
    }

    /// Runs one user's task: revocations first (oldest first; a paused or unfinished one
    /// stops the user here), then the normal pass.
    pub async fn user_task(
        &self,
        lazy: &crate::sync::pass_model::PassModel<'_>,
        task: &UserTask<'_>,
        options: &SyncOptions,
        run_id: &str,
    ) -> Result<crate::sync::engine::UserReport, EngineError> {
        use crate::sync::engine::{UserReport, UserStatus};
        let mut report = UserReport::for_user(&task.user, &task.account);
        for rev in &task.revocations {
            let done = self.run_revocation(rev, options.dry_run, run_id).await?;
            report.contacts.deleted += done.contacts_deleted.len();
            report.contacts.released += done.contacts_released.len();
            if matches!(
                done.outcome,
                RevocationOutcome::Done | RevocationOutcome::Planned
            ) {
                report.events.deleted += done
                    .inventory
                    .get("events")
                    .and_then(serde_json::Value::as_u64)
                    .map_or(0, |n| usize::try_from(n).unwrap_or(0));
            }
            let outcome = done.outcome;
            let message = done.message.clone();
            report.revocations.push(done);
            match outcome {
                RevocationOutcome::Done | RevocationOutcome::NothingToRevoke => {
                    report.status = UserStatus::Revoked;
                }
                RevocationOutcome::Planned => report.status = UserStatus::Planned,
                RevocationOutcome::Paused => {
                    report.status = UserStatus::Refused;
                    report.message = message;
                    return Ok(report);
                }
                RevocationOutcome::Incomplete => {
                    report.status = UserStatus::Failed;
                    report.message = Some(format!(
                        "revocation from {} not finished (next pass goes on): {}",
                        rev.account,
                        message.unwrap_or_default()
                    ));
                    return Ok(report);
                }
            }
        }
        if let Some((status, message)) = &task.held {
            report.status = *status;
            report.message = Some(message.clone());
            return Ok(report);
        }
        let Some(user) = task.pass else {
            return Ok(report);
        };
        if options.dry_run && !task.revocations.is_empty() {
            report.message = Some(format!(
                "would sync into {} once the old account is revoked",
                task.account
            ));
            return Ok(report);
        }
        let pass = self.observed_user_pass(lazy, user, options, run_id).await?;
        Ok(report.then(pass))
    }
}
