//! Carrying out a kind's plan for one user: CRM write-backs first (re-checked at execution
//! time), then Google writes in batches, then one state-DB transaction with the links, the
//! audit, the conflicts and — only when every item went through — the sync token.
//!
//! Per-item failures are collected and the pass goes on; only state-DB failures stop it.
//! Creates are preceded by `pending_create` rows so a crash between the Google call and the
//! commit never leads to a duplicate: the next pass finds the item by id or marker.

use super::plan::{
    plan_record, CrmStep, GoogleStep, Link, LinkOrigin, LinkState, LinkStep, PlanInput, RecordPlan,
    RemoteState, Synced,
};
use super::remote::{
    BatchResult, ContactOp, EventOp, GoogleUser, Listing, OpKey, OpOutcome, OpResult, Released,
    Remote, RemoteChange, RemoteError, RemoteErrorKind, RemoteItem,
};
use crate::crm::{CrmError, Entity, Source, WriteBack};
use crate::model::{CrmId, ObjectKind, RecordRef, SyncedContact, SyncedEvent, UserId};
use crate::store::{StateDb, StoreError};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// How often one record is re-read and re-planned after a stale etag within a pass.
pub const MAX_REPLANS: usize = 3;

/// Google calls per kind, dispatched to the right `Remote` methods.
#[allow(async_fn_in_trait)]
pub trait RemoteKind: Synced {
    async fn list<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        token: Option<&str>,
    ) -> Result<Listing<Self>, RemoteError>;

    /// The changes since `token`, a page at a time (see [`Remote::scan_events`]).
    async fn scan<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        token: &str,
        keep: &mut dyn FnMut(Vec<RemoteChange<Self>>) -> bool,
    ) -> Result<Option<String>, RemoteError>;

    async fn get<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        id: &str,
    ) -> Result<RemoteChange<Self>, RemoteError>;

    /// The wire-level op a step becomes.
    type Op: KeyedOp;

    /// The op for one outgoing step.
    fn to_op(out: &Outgoing<Self>) -> Self::Op;

    /// Sends ops (batched by the remote); every answer names its op.
    async fn send<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        ops: &[Self::Op],
    ) -> BatchResult<Self>;
}

/// An op that names itself, so its answer can be found by identity.
pub trait KeyedOp {
    fn op_key(&self) -> OpKey;
}

impl KeyedOp for EventOp {
    fn op_key(&self) -> OpKey {
        self.key()
    }
}

impl KeyedOp for ContactOp {
    fn op_key(&self) -> OpKey {
        self.key()
    }
}

/// One Google write about to leave: the record it is for, the step, and (releases) the
/// pre-link snapshot to restore.
#[derive(Debug, Clone)]
pub struct Outgoing<T> {
    pub crm_id: CrmId,
    pub step: GoogleStep<T>,
    pub pre_link: Option<serde_json::Value>,
    /// An update of an item whose link is linked at the etag the update is conditional on:
    /// the item carries our marker and container membership, so only the synced fields
    /// need writing.
    pub marked: bool,
}

impl RemoteKind for SyncedEvent {
    async fn list<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        token: Option<&str>,
    ) -> Result<Listing<Self>, RemoteError> {
        remote.list_events(user, container, token).await
    }

    async fn scan<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        token: &str,
        keep: &mut dyn FnMut(Vec<RemoteChange<Self>>) -> bool,
    ) -> Result<Option<String>, RemoteError> {
        remote.scan_events(user, container, token, keep).await
    }

    async fn get<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        id: &str,
    ) -> Result<RemoteChange<Self>, RemoteError> {
        remote.get_event(user, container, id).await
    }

    type Op = EventOp;

    fn to_op(out: &Outgoing<Self>) -> EventOp {
        match &out.step {
            GoogleStep::Create { event_id, data, .. } => EventOp::Insert {
                id: event_id.clone().unwrap_or_default(),
                crm_id: out.crm_id.clone(),
                data: data.clone(),
            },
            GoogleStep::Update {
                google_id,
                etag,
                data,
            } => EventOp::Update {
                id: google_id.clone(),
                etag: etag.clone(),
                crm_id: out.crm_id.clone(),
                data: data.clone(),
            },
            GoogleStep::Delete { google_id, etag } => EventOp::Delete {
                id: google_id.clone(),
                etag: etag.clone(),
            },
            // Events of the dedicated calendar are all ours: the planner never releases
            // one, and if it did, taking it off the calendar is what release means there.
            GoogleStep::Release { google_id, .. } => EventOp::Delete {
                id: google_id.clone(),
                etag: None,
            },
        }
    }

    async fn send<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        ops: &[EventOp],
    ) -> BatchResult<Self> {
        remote.event_ops(user, container, ops).await
    }
}

impl RemoteKind for SyncedContact {
    async fn list<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        token: Option<&str>,
    ) -> Result<Listing<Self>, RemoteError> {
        remote.list_contacts(user, container, token).await
    }

    async fn scan<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        token: &str,
        keep: &mut dyn FnMut(Vec<RemoteChange<Self>>) -> bool,
    ) -> Result<Option<String>, RemoteError> {
        remote.scan_contacts(user, container, token, keep).await
    }

    async fn get<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        id: &str,
    ) -> Result<RemoteChange<Self>, RemoteError> {
        remote.get_contact(user, container, id).await
    }

    type Op = ContactOp;

    fn to_op(out: &Outgoing<Self>) -> ContactOp {
        match &out.step {
            GoogleStep::Create { data, .. } => ContactOp::Create {
                crm_id: out.crm_id.clone(),
                data: data.clone(),
            },
            GoogleStep::Update {
                google_id,
                etag,
                data,
            } => ContactOp::Update {
                resource: google_id.clone(),
                etag: etag.clone(),
                crm_id: out.crm_id.clone(),
                data: data.clone(),
                marked: out.marked,
            },
            GoogleStep::Delete { google_id, .. } => ContactOp::Delete {
                resource: google_id.clone(),
            },
            GoogleStep::Release { google_id, base } => ContactOp::Release {
                resource: google_id.clone(),
                base: base.clone(),
                pre_link: out.pre_link.clone(),
            },
        }
    }

    async fn send<R: Remote>(
        remote: &R,
        user: &GoogleUser,
        container: &str,
        ops: &[ContactOp],
    ) -> BatchResult<Self> {
        remote.contact_ops(user, container, ops).await
    }
}

/// What a kind's execution did, for the user's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    /// Contacts the user had before (or made on the phone) given back instead of deleted.
    pub released: usize,
    pub linked: usize,
    pub written_back: usize,
    pub imported: usize,
    pub reverted: usize,
    pub unlinked: usize,
    pub conflicts: usize,
    pub text_merges: usize,
    pub errors: usize,
    /// Duplicates (a second item with one record's marker) deleted by the sweep.
    pub duplicates_removed: usize,
}

impl Counts {
    /// Writes to Google items (each comes back once in the next incremental listing).
    pub fn google_writes(&self) -> usize {
        self.created
            + self.updated
            + self.deleted
            + self.released
            + self.linked
            + self.reverted
            + self.duplicates_removed
    }

    pub fn add(&mut self, other: &Counts) {
        self.created += other.created;
        self.updated += other.updated;
        self.deleted += other.deleted;
        self.released += other.released;
        self.linked += other.linked;
        self.written_back += other.written_back;
        self.imported += other.imported;
        self.reverted += other.reverted;
        self.unlinked += other.unlinked;
        self.conflicts += other.conflicts;
        self.text_merges += other.text_merges;
        self.errors += other.errors;
        self.duplicates_removed += other.duplicates_removed;
    }
}

/// One item that could not be synced in this pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemError {
    pub kind: ObjectKind,
    pub record: Option<String>,
    pub google_id: Option<String>,
    pub error: String,
}

/// The result of executing one kind's plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindOutcome {
    pub counts: Counts,
    pub errors: Vec<ItemError>,
    /// Whether the sync token was advanced (every item went through).
    pub token_saved: bool,
    /// Whether every item of this execution went through.
    pub complete: bool,
    /// CRM records this execution wrote (write-backs, imports, deletes).
    pub crm_changed: Vec<CrmId>,
    /// Items taken off Google: deleted, or released (contacts crmsync did not create).
    pub removed: Vec<RemovedItem>,
    /// The Google ids of the items this execution deleted.
    pub deleted: BTreeSet<String>,
}

/// An item this execution took off Google.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedItem {
    pub record: Option<String>,
    pub google_id: Option<String>,
    /// `None`: deleted; `Some`: released (restored or stripped), never deleted.
    pub released: Option<Released>,
}

/// Kind-specific knowledge the executor needs from the engine.
pub struct Hooks<'a, T> {
    /// Whether the user may still make this CRM write (re-checked at execution time).
    pub may_write: &'a dyn Fn(&CrmStep<T>, Option<&CrmId>) -> bool,
    /// The CRM record a phone item becomes when imported.
    pub import_entity: &'a dyn Fn(&CrmId, &T) -> Option<Entity>,
    /// The synced form of a CRM entity (what the phone shows for it).
    pub project: &'a dyn Fn(&Entity) -> Option<T>,
}

/// Everything the executor works with for one user.
pub struct UserCtx<'a, R> {
    pub remote: &'a R,
    pub state: &'a StateDb,
    pub crm: &'a RefCell<Box<dyn Source>>,
    pub google_user: &'a GoogleUser,
    pub container: &'a str,
    pub run_id: &'a str,
}

impl<R> UserCtx<'_, R> {
    fn user(&self) -> &UserId {
        &self.google_user.user
    }
}

#[derive(Debug)]
enum Status {
    Pending,
    Done,
    /// Not carried out now; the next pass plans it again (e.g. the CRM moved on meanwhile).
    Deferred(String),
    Failed(String),
}

struct Work<T> {
    plan: RecordPlan<T>,
    crm_version: Option<i64>,
    /// Where the Google write left the item: its id and etag, all the link row needs (the
    /// item Google answered with is dropped at once: a part holds thousands of these).
    written: Option<Written>,
    status: Status,
    replans: usize,
    reverted_write_back: bool,
    /// The kind of the last Google error, for the fix-ups.
    google_error: Option<RemoteErrorKind>,
    /// A `pending_link` row was written for this item before its Google write.
    pending_link: bool,
    /// The CRM values a write-back replaced (kept in the audit for `audit undo`).
    replaced: Option<serde_json::Value>,
    /// What a release did.
    released: Option<Released>,
}

/// The id and etag of an item a Google write left.
struct Written {
    google_id: String,
    etag: String,
}

impl Written {
    fn of<T>(item: RemoteItem<T>) -> Self {
        Self {
            google_id: item.google_id,
            etag: item.etag,
        }
    }
}

/// What an execution commits besides its items' links and audit.
#[derive(Clone, Copy)]
pub enum Commit<'l, T> {
    /// The whole plan, or the last part of one planned in parts: the index of unlinked
    /// items is brought up to date from `listing`, and its sync token is saved when every
    /// item went through (in the parts before too: `earlier_complete`).
    Listing {
        listing: &'l Listing<T>,
        earlier_complete: bool,
        /// Google items the parts before deleted (the listing, made before them, may
        /// still show them).
        deleted_before: &'l BTreeSet<String>,
    },
    /// A part of a plan: its links and audit only.
    Part,
}

/// No Google item deleted before (a plan made whole).
static NONE_DELETED: BTreeSet<String> = BTreeSet::new();

impl<'l, T> Commit<'l, T> {
    /// The whole plan, committed with `listing`.
    pub fn whole(listing: &'l Listing<T>) -> Self {
        Commit::Listing {
            listing,
            earlier_complete: true,
            deleted_before: &NONE_DELETED,
        }
    }
}

/// Carries out `plans` (made from `input`) and commits the result (see [`Commit`]).
pub async fn execute_kind<T: RemoteKind, R: Remote>(
    ctx: &UserCtx<'_, R>,
    input: &PlanInput<'_, T>,
    plans: Vec<RecordPlan<T>>,
    hooks: &Hooks<'_, T>,
    commit: Commit<'_, T>,
) -> Result<KindOutcome, StoreError> {
    let kind = T::KIND;
    let user = ctx.user().clone();
    let mut work: Vec<Work<T>> = plans
        .into_iter()
        .map(|plan| Work {
            plan,
            crm_version: None,
            written: None,
            status: Status::Pending,
            replans: 0,
            reverted_write_back: false,
            google_error: None,
            pending_link: false,
            replaced: None,
            released: None,
        })
        .collect();

    // 1. pending rows before any create, or any write marking a pre-existing item as ours,
    //    leaves the machine.
    ctx.state.write(|w| {
        for item in &mut work {
            if let (
                Some(GoogleStep::Update {
                    google_id, etag, ..
                }),
                Some(crm_id),
                LinkStep::Linked {
                    base,
                    origin: LinkOrigin::LinkedExisting,
                    pre_link: Some(pre_link),
                    ..
                },
            ) = (&item.plan.google, &item.plan.crm_id, &item.plan.link)
            {
                w.put_link(
                    &user,
                    kind,
                    &Link {
                        crm_id: crm_id.clone(),
                        state: LinkState::PendingLink,
                        google_id: Some(google_id.clone()),
                        etag: Some(etag.clone()),
                        generation: 0,
                        base: Some(base.clone()),
                        crm_version: input.desired.get(crm_id).map(|d| d.version),
                        origin: LinkOrigin::LinkedExisting,
                    },
                    Some(pre_link),
                )?;
                item.pending_link = true;
            }
            if let (
                Some(GoogleStep::Create {
                    generation,
                    event_id,
                    data,
                }),
                Some(crm_id),
            ) = (&item.plan.google, &item.plan.crm_id)
            {
                let origin = match &item.plan.link {
                    LinkStep::Linked { origin, .. } => *origin,
                    _ => LinkOrigin::Created,
                };
                w.put_link(
                    &user,
                    kind,
                    &Link {
                        crm_id: crm_id.clone(),
                        state: LinkState::PendingCreate,
                        google_id: event_id.clone(),
                        etag: None,
                        generation: *generation,
                        base: Some(data.clone()),
                        crm_version: input.desired.get(crm_id).map(|d| d.version),
                        origin,
                    },
                    None,
                )?;
            }
        }
        Ok(())
    })?;

    // 2. CRM writes, one by one, re-checked now.
    for item in &mut work {
        run_crm_step(ctx, hooks, item);
    }

    // 3. Google writes, batched.
    let batch: Vec<usize> = work
        .iter()
        .enumerate()
        .filter(|(_, w)| matches!(w.status, Status::Pending) && w.plan.google.is_some())
        .map(|(i, _)| i)
        .collect();
    if !batch.is_empty() {
        let mut sent: Vec<usize> = Vec::with_capacity(batch.len());
        let mut ops: Vec<T::Op> = Vec::with_capacity(batch.len());
        for &i in &batch {
            match outgoing(ctx, &work[i]) {
                Ok(Some(out)) => {
                    ops.push(T::to_op(&out));
                    sent.push(i);
                }
                Ok(None) => {
                    work[i].status = Status::Failed("a Google write without a record".into())
                }
                Err(e) => work[i].status = Status::Failed(e.to_string()),
            }
        }
        let keys: Vec<OpKey> = ops.iter().map(KeyedOp::op_key).collect();
        match T::send(ctx.remote, ctx.google_user, ctx.container, &ops).await {
            Ok(results) => {
                for (i, result) in match_results(&sent, &keys, results) {
                    handle_google_result(&mut work[i], result);
                }
            }
            Err(e) => {
                for &i in &sent {
                    work[i].status = Status::Failed(e.to_string());
                }
            }
        }
    }

    // 4. Fix-ups one by one: 409 on a create (already there), 412/404 on an update.
    for item in &mut work {
        for _ in 0..=MAX_REPLANS {
            let Status::Failed(_) = item.status else {
                break;
            };
            if !fix_up(ctx, input, hooks, item).await {
                break;
            }
        }
    }

    // 5. One transaction: links, audit, conflicts, index of unlinked items, token.
    let mut outcome = KindOutcome::default();
    let complete = work
        .iter()
        .all(|w| matches!(w.status, Status::Done | Status::Pending));
    let token_saved = ctx.state.write(|w| {
        let mut linked_ids: BTreeSet<String> = BTreeSet::new();
        let mut to_mark: Vec<String> = Vec::new();
        for item in &work {
            let record = item
                .plan
                .crm_id
                .as_ref()
                .map(|c| RecordRef::new(kind, c.clone()).to_string());
            match &item.status {
                Status::Done | Status::Pending => {}
                Status::Deferred(why) => {
                    // Nothing went to Google: a pending link row written for it is void.
                    if let (true, Some(crm_id)) = (item.pending_link, &item.plan.crm_id) {
                        w.delete_link(&user, kind, crm_id)?;
                    }
                    w.audit(
                        ctx.run_id,
                        Some(&user),
                        record.as_deref(),
                        "deferred",
                        &serde_json::json!({"why": why}),
                    )?;
                    continue;
                }
                Status::Failed(error) => {
                    outcome.counts.errors += 1;
                    outcome.errors.push(ItemError {
                        kind,
                        record: record.clone(),
                        google_id: item.plan.google_id.clone(),
                        error: error.clone(),
                    });
                    w.audit(
                        ctx.run_id,
                        Some(&user),
                        record.as_deref(),
                        "error",
                        &serde_json::json!({"error": error, "case": item.plan.case}),
                    )?;
                    continue;
                }
            }
            count(&mut outcome.counts, item);
            if let (Status::Done, Some(GoogleStep::Delete { google_id, .. })) =
                (&item.status, &item.plan.google)
            {
                // Gone from Google: not an unlinked item either (its deletion, listed next
                // time, is then known as our own).
                w.remove_unlinked(&user, kind, google_id)?;
                outcome.deleted.insert(google_id.clone());
            }
            if let Some(GoogleStep::Delete { .. } | GoogleStep::Release { .. }) = &item.plan.google
            {
                outcome.removed.push(RemovedItem {
                    record: record.clone(),
                    google_id: item.plan.google_id.clone(),
                    released: item.released.clone(),
                });
            }
            if let (Some(_), Some(id)) = (&item.plan.crm, &item.plan.crm_id) {
                outcome.crm_changed.push(id.clone());
            }
            commit_link(w, &user, kind, item, input, &mut linked_ids)?;
            for n in &item.plan.notes {
                let mut detail = n.detail.clone();
                if let Some(g) = &item.plan.google_id {
                    detail["google_id"] = serde_json::json!(g);
                }
                w.audit(
                    ctx.run_id,
                    Some(&user),
                    record.as_deref(),
                    &n.action,
                    &detail,
                )?;
                if n.action == "not_imported" {
                    to_mark.extend(item.plan.google_id.iter().cloned());
                }
            }
            if let Some(r) = &record {
                for c in &item.plan.conflicts {
                    w.conflict(ctx.run_id, &user, r, c)?;
                }
                if let Some(action) = audit_action(item) {
                    let mut detail =
                        serde_json::json!({"case": item.plan.case, "label": item.plan.label});
                    if let (
                        Some(CrmStep::Update {
                            fields,
                            expected_version,
                        }),
                        Some(before),
                    ) = (item.plan.crm.as_deref(), &item.replaced)
                    {
                        // What `crmsync audit undo` needs: the values replaced, the values
                        // written, and the versions before and after.
                        detail["before"] = before.clone();
                        detail["after"] = serde_json::json!(fields);
                        detail["version_before"] = serde_json::json!(expected_version);
                        detail["version_after"] = serde_json::json!(item.crm_version);
                    }
                    if let Some(released) = &item.released {
                        detail["released"] = serde_json::json!(released);
                    }
                    w.audit(ctx.run_id, Some(&user), Some(r), action, &detail)?;
                }
            }
        }
        let Commit::Listing {
            listing,
            earlier_complete,
            deleted_before,
        } = commit
        else {
            for google_id in &to_mark {
                w.mark_reported(&user, kind, google_id)?;
            }
            return Ok(false);
        };
        // Keep the index of unlinked Google items current from this listing; a full listing
        // is the whole truth, so items it does not show are gone.
        if listing.full {
            let present: BTreeSet<String> = listing
                .changes
                .iter()
                .filter_map(|c| match c {
                    RemoteChange::Present(it) => Some(it.google_id.clone()),
                    RemoteChange::Deleted { .. } => None,
                })
                .collect();
            w.retain_unlinked(&user, kind, &present)?;
        }
        let links_now = ctx.state.linked_google_ids(&user, kind)?;
        for change in &listing.changes {
            match change {
                RemoteChange::Present(it) => {
                    let gone = outcome.deleted.contains(&it.google_id)
                        || deleted_before.contains(&it.google_id);
                    if gone
                        || links_now.contains(&it.google_id)
                        || linked_ids.contains(&it.google_id)
                    {
                        w.remove_unlinked(&user, kind, &it.google_id)?;
                    } else {
                        w.upsert_unlinked(&user, kind, it)?;
                    }
                }
                RemoteChange::Deleted { google_id } => w.remove_unlinked(&user, kind, google_id)?,
            }
        }
        // After the index is current, so that items first seen in this listing are marked.
        for google_id in &to_mark {
            w.mark_reported(&user, kind, google_id)?;
        }
        let save = complete && earlier_complete;
        if save {
            w.set_sync_token(&user, kind, listing.next_sync_token.as_deref())?;
        }
        Ok(save)
    })?;
    outcome.token_saved = token_saved;
    outcome.complete = complete;
    Ok(outcome)
}

/// Contacts created from phone items have their CRM id only after the CRM create.
fn placeholder_id<T>(w: &Work<T>) -> Option<CrmId> {
    match w.plan.crm.as_deref() {
        Some(CrmStep::Create { new_id, .. }) => Some(new_id.clone()),
        _ => None,
    }
}

/// The outgoing write of a work item (a release carries its pre-link snapshot).
fn outgoing<T: Synced, R>(
    ctx: &UserCtx<'_, R>,
    w: &Work<T>,
) -> Result<Option<Outgoing<T>>, StoreError> {
    let (Some(crm_id), Some(step)) = (
        w.plan.crm_id.clone().or_else(|| placeholder_id(w)),
        w.plan.google.clone(),
    ) else {
        return Ok(None);
    };
    let pre_link = match &step {
        GoogleStep::Release { .. } => ctx.state.pre_link(ctx.user(), T::KIND, &crm_id)?,
        GoogleStep::Create { .. } | GoogleStep::Update { .. } | GoogleStep::Delete { .. } => None,
    };
    let marked = match &step {
        GoogleStep::Update {
            google_id, etag, ..
        } => ctx
            .state
            .link_etags(ctx.user(), T::KIND, [google_id.as_str()])?
            .get(google_id)
            .is_some_and(|(state, at)| {
                *state == LinkState::Linked && at.as_deref() == Some(etag.as_str())
            }),
        _ => false,
    };
    Ok(Some(Outgoing {
        crm_id,
        step,
        pre_link,
        marked,
    }))
}

/// Pairs answers with the work items that sent them, by the op each answer names. An op
/// without an answer, or sharing its key with another op of the call, fails (and is planned
/// again next pass); an answer naming no op, or a second answer for one, is ignored.
fn match_results<T>(
    sent: &[usize],
    keys: &[OpKey],
    results: Vec<OpResult<T>>,
) -> Vec<(usize, Result<OpOutcome<T>, RemoteError>)> {
    let mut senders: BTreeMap<&OpKey, Vec<usize>> = BTreeMap::new();
    for (key, &i) in keys.iter().zip(sent) {
        senders.entry(key).or_default().push(i);
    }
    let mut answers: BTreeMap<usize, Result<OpOutcome<T>, RemoteError>> = BTreeMap::new();
    for r in results {
        if let Some([i]) = senders.get(&r.key).map(Vec::as_slice) {
            answers.entry(*i).or_insert(r.result);
        }
    }
    sent.iter()
        .zip(keys)
        .map(|(&i, key)| {
            let shared = senders.get(key).is_some_and(|s| s.len() > 1);
            let answer = match answers.remove(&i) {
                Some(answer) if !shared => answer,
                _ if shared => Err(RemoteError::new(
                    RemoteErrorKind::Transient,
                    "two writes to the same item in one call",
                )),
                _ => Err(RemoteError::new(
                    RemoteErrorKind::Transient,
                    "Google's answer did not include this write",
                )),
            };
            (i, answer)
        })
        .collect()
}

fn run_crm_step<T: RemoteKind, R>(ctx: &UserCtx<'_, R>, hooks: &Hooks<'_, T>, item: &mut Work<T>) {
    let Some(step) = item.plan.crm.as_deref().cloned() else {
        return;
    };
    let user = ctx.user().clone();
    let record = |id: &CrmId| RecordRef::new(T::KIND, id.clone());
    if !(hooks.may_write)(&step, item.plan.crm_id.as_ref()) {
        revert_instead(item, "the CRM no longer lets this user make this change");
        return;
    }
    let write = match &step {
        CrmStep::Update {
            expected_version,
            fields,
        } => {
            let Some(crm_id) = &item.plan.crm_id else {
                item.status = Status::Failed("write-back without a record".into());
                return;
            };
            WriteBack::Update {
                record: record(crm_id),
                expected_version: *expected_version,
                acting_user: user.clone(),
                fields: fields.clone().into_iter().collect(),
            }
        }
        CrmStep::Create { new_id, data } => {
            let Some(entity) = (hooks.import_entity)(new_id, data) else {
                item.status = Status::Failed("the phone item cannot become a CRM record".into());
                return;
            };
            WriteBack::Create {
                acting_user: user.clone(),
                entity: Box::new(entity),
            }
        }
        CrmStep::Delete { expected_version } => {
            let Some(crm_id) = &item.plan.crm_id else {
                item.status = Status::Failed("delete without a record".into());
                return;
            };
            WriteBack::Delete {
                record: record(crm_id),
                expected_version: *expected_version,
                acting_user: user.clone(),
            }
        }
    };
    if let (CrmStep::Update { fields, .. }, Some(crm_id)) = (&step, &item.plan.crm_id) {
        item.replaced = replaced_values(ctx, T::KIND, crm_id, fields.keys());
    }
    let result = ctx.crm.borrow_mut().apply(&write);
    let created = |item: &mut Work<T>| {
        if let CrmStep::Create { new_id, .. } = &step {
            // The phone item shows what the CRM made of it.
            if let Ok(Some((version, entity))) = crm_entity(ctx, T::KIND, new_id) {
                item.crm_version = Some(version);
                if let Some(projected) = (hooks.project)(&entity) {
                    set_target(item, projected);
                }
            }
        }
    };
    match result {
        Ok(out) => {
            item.crm_version = Some(out.version);
            created(item);
        }
        Err(CrmError::Conflict { current, .. }) => {
            item.status = Status::Deferred(format!(
                "the record changed in the CRM meanwhile (now version {current}); planned again next pass"
            ));
        }
        Err(CrmError::NotFound(r)) => {
            item.status = Status::Deferred(format!("{r} was deleted in the CRM meanwhile"));
        }
        Err(CrmError::Refused(why))
            if matches!(step, CrmStep::Create { .. }) && why.contains("already exists") =>
        {
            // A crash after an earlier import: the record is there, link it.
            created(item);
        }
        Err(CrmError::Refused(why)) | Err(CrmError::Invalid(why))
            if matches!(step, CrmStep::Create { .. }) =>
        {
            // A phone item the CRM cannot take (e.g. an invalid e-mail): left on the phone
            // and reported once, like any item that is not imported.
            item.plan.crm = None;
            item.plan.crm_id = None;
            item.plan.google = None;
            item.plan.link = LinkStep::Keep;
            item.plan.notes = vec![super::plan::Note {
                action: "not_imported".into(),
                detail: serde_json::json!({"why": format!("the CRM refused it: {why}")}),
            }];
        }
        Err(CrmError::Refused(why)) | Err(CrmError::Invalid(why)) => {
            revert_instead(item, &format!("the CRM refused the write-back: {why}"));
        }
        Err(e) => item.status = Status::Failed(format!("CRM write failed: {e}")),
    }
}

/// The CRM's current values of `fields` of a record (JSON by field name), read just before a
/// write-back replaces them.
fn replaced_values<'f, R>(
    ctx: &UserCtx<'_, R>,
    kind: ObjectKind,
    id: &CrmId,
    fields: impl Iterator<Item = &'f String>,
) -> Option<serde_json::Value> {
    let (_, entity) = crm_entity(ctx, kind, id).ok()??;
    let body: serde_json::Value = serde_json::from_str(&entity.to_json()).ok()?;
    Some(serde_json::Value::Object(
        fields
            .map(|f| {
                (
                    f.clone(),
                    body.get(f).cloned().unwrap_or(serde_json::Value::Null),
                )
            })
            .collect(),
    ))
}

fn crm_entity<R>(
    ctx: &UserCtx<'_, R>,
    kind: ObjectKind,
    id: &CrmId,
) -> Result<Option<(i64, Entity)>, CrmError> {
    ctx.crm.borrow().get(&RecordRef::new(kind, id.clone()))
}

/// Replaces what the plan writes to Google and keeps as base.
fn set_target<T: Clone>(item: &mut Work<T>, data: T) {
    if let Some(GoogleStep::Update { data: d, .. } | GoogleStep::Create { data: d, .. }) =
        &mut item.plan.google
    {
        *d = data.clone();
    }
    if let LinkStep::Linked { base, .. } = &mut item.plan.link {
        *base = data;
    }
}

fn revert_instead<T: Clone>(item: &mut Work<T>, why: &str) {
    item.plan.crm = None;
    match item.plan.revert_instead.take() {
        Some(step) => {
            let step = *step;
            let data = match &step {
                GoogleStep::Update { data, .. } | GoogleStep::Create { data, .. } => {
                    Some(data.clone())
                }
                GoogleStep::Delete { .. } | GoogleStep::Release { .. } => None,
            };
            item.plan.google = Some(step);
            if let (Some(data), LinkStep::Linked { base, .. }) = (data.clone(), &mut item.plan.link)
            {
                *base = data;
            } else if let (Some(data), LinkStep::Remove) = (data, &item.plan.link) {
                // A refused CRM delete: the restored item is linked again.
                item.plan.link = LinkStep::Linked {
                    google_id: None,
                    etag: None,
                    base: data,
                    origin: LinkOrigin::Created,
                    pre_link: None,
                };
            }
            item.reverted_write_back = true;
            item.plan.notes.push(super::plan::Note {
                action: "write_back_refused".into(),
                detail: serde_json::json!({"why": why}),
            });
        }
        None => item.status = Status::Deferred(why.to_owned()),
    }
}

fn handle_google_result<T>(item: &mut Work<T>, result: Result<OpOutcome<T>, RemoteError>) {
    match result {
        Ok(OpOutcome::Written(written)) => {
            item.written = Some(Written::of(written));
            item.status = Status::Done;
        }
        Ok(OpOutcome::Deleted) => item.status = Status::Done,
        Ok(OpOutcome::Released(released)) => {
            item.released = Some(released);
            item.status = Status::Done;
        }
        Err(e) => {
            let deleting = matches!(item.plan.google, Some(GoogleStep::Delete { .. }));
            if deleting && e.kind == RemoteErrorKind::NotFound {
                item.status = Status::Done; // already gone
            } else {
                item.google_error = Some(e.kind);
                item.status = Status::Failed(e.to_string());
            }
        }
    }
}

/// Handles a failed Google write that can be healed in this pass. Returns whether it tried.
async fn fix_up<T: RemoteKind, R: Remote>(
    ctx: &UserCtx<'_, R>,
    input: &PlanInput<'_, T>,
    hooks: &Hooks<'_, T>,
    item: &mut Work<T>,
) -> bool {
    if !matches!(item.status, Status::Failed(_)) {
        return false;
    }
    let kind = item.google_error.take();
    if item.replans >= MAX_REPLANS {
        return false;
    }
    item.replans += 1;
    let Some(crm_id) = item.plan.crm_id.clone() else {
        return false;
    };
    match (kind, item.plan.google.clone()) {
        // Our earlier insert went through: read it and link it (then push if it differs).
        (
            Some(RemoteErrorKind::AlreadyExists),
            Some(GoogleStep::Create {
                event_id: Some(id),
                data,
                ..
            }),
        ) => match T::get(ctx.remote, ctx.google_user, ctx.container, &id).await {
            Ok(RemoteChange::Present(found)) if found.data == data => {
                item.written = Some(Written::of(found));
                item.status = Status::Done;
                true
            }
            Ok(RemoteChange::Present(found)) => {
                item.plan.google = Some(GoogleStep::Update {
                    google_id: found.google_id.clone(),
                    etag: found.etag.clone(),
                    data,
                });
                single_google(ctx, item).await;
                true
            }
            Ok(RemoteChange::Deleted { .. }) => {
                // The id is reserved by a deleted event: take the next generation.
                if let Some(GoogleStep::Create { generation, .. }) = &item.plan.google {
                    let generation = generation + 1;
                    item.plan.google = Some(GoogleStep::Create {
                        generation,
                        event_id: Some((input.event_id)(&crm_id, generation)),
                        data,
                    });
                    if let Err(e) = store_pending(ctx, item) {
                        item.status = Status::Failed(e.to_string());
                        return false;
                    }
                    single_google(ctx, item).await;
                }
                true
            }
            Err(e) => {
                item.status = Status::Failed(e.to_string());
                false
            }
        },
        // The item changed (412) or vanished (404) under us: re-read, re-plan, retry.
        (
            Some(RemoteErrorKind::PreconditionFailed | RemoteErrorKind::NotFound),
            Some(GoogleStep::Update { google_id, .. }),
        ) => {
            let now = match T::get(ctx.remote, ctx.google_user, ctx.container, &google_id).await {
                Ok(now) => now,
                Err(e) if e.kind == RemoteErrorKind::NotFound => RemoteChange::Deleted {
                    google_id: google_id.clone(),
                },
                Err(e) => {
                    item.status = Status::Failed(e.to_string());
                    return false;
                }
            };
            let state = match &now {
                RemoteChange::Present(it) => RemoteState::Present(it),
                RemoteChange::Deleted { .. } => RemoteState::Deleted,
            };
            let mut claimed = BTreeSet::new();
            let desired = input.desired.get(&crm_id);
            let link = input.links.get(&crm_id);
            let Some(replanned) = plan_record(input, &crm_id, desired, link, state, &mut claimed)
            else {
                item.status = Status::Done;
                return true;
            };
            item.plan = replanned;
            item.status = Status::Pending;
            run_crm_step(ctx, hooks, item);
            if matches!(item.status, Status::Pending) {
                if item.plan.google.is_some() {
                    if matches!(item.plan.google, Some(GoogleStep::Create { .. })) {
                        if let Err(e) = store_pending(ctx, item) {
                            item.status = Status::Failed(e.to_string());
                            return false;
                        }
                    }
                    single_google(ctx, item).await;
                } else {
                    item.status = Status::Done;
                }
            }
            true
        }
        // The contact changed between our read and our write: the release reads it again.
        (Some(RemoteErrorKind::PreconditionFailed), Some(GoogleStep::Release { .. })) => {
            item.status = Status::Pending;
            single_google(ctx, item).await;
            true
        }
        _ => false,
    }
}

fn store_pending<T: Synced, R>(ctx: &UserCtx<'_, R>, item: &Work<T>) -> Result<(), StoreError> {
    let (
        Some(GoogleStep::Create {
            generation,
            event_id,
            data,
        }),
        Some(crm_id),
    ) = (&item.plan.google, &item.plan.crm_id)
    else {
        return Ok(());
    };
    ctx.state.write(|w| {
        w.put_link(
            ctx.user(),
            T::KIND,
            &Link {
                crm_id: crm_id.clone(),
                state: LinkState::PendingCreate,
                google_id: event_id.clone(),
                etag: None,
                generation: *generation,
                base: Some(data.clone()),
                crm_version: None,
                origin: LinkOrigin::Created,
            },
            None,
        )
    })
}

async fn single_google<T: RemoteKind, R: Remote>(ctx: &UserCtx<'_, R>, item: &mut Work<T>) {
    let out = match outgoing(ctx, item) {
        Ok(Some(out)) => out,
        Ok(None) => {
            item.status = Status::Done;
            return;
        }
        Err(e) => {
            item.status = Status::Failed(e.to_string());
            return;
        }
    };
    let op = T::to_op(&out);
    let key = op.op_key();
    match T::send(ctx.remote, ctx.google_user, ctx.container, &[op]).await {
        Ok(results) => {
            for (_, result) in match_results(&[0], &[key], results) {
                handle_google_result(item, result);
            }
        }
        Err(e) => item.status = Status::Failed(e.to_string()),
    }
}

fn count<T>(c: &mut Counts, item: &Work<T>) {
    use super::plan::Case;
    match (&item.plan.google, item.plan.case) {
        (Some(GoogleStep::Create { .. }), _) => c.created += 1,
        (Some(GoogleStep::Update { .. }), Case::Relink | Case::Dedup) => c.linked += 1,
        (Some(GoogleStep::Update { .. }), Case::PhoneNew) => {}
        (Some(GoogleStep::Update { .. }), _) => c.updated += 1,
        (Some(GoogleStep::Delete { .. }), _) => c.deleted += 1,
        (Some(GoogleStep::Release { .. }), _) => c.released += 1,
        (None, Case::Relink | Case::Dedup) => c.linked += 1,
        _ => {}
    }
    match item.plan.crm.as_deref() {
        Some(CrmStep::Update { .. }) | Some(CrmStep::Delete { .. }) => c.written_back += 1,
        Some(CrmStep::Create { .. }) => c.imported += 1,
        None => {}
    }
    if item.reverted_write_back || item.plan.notes.iter().any(|n| n.action == "reverted") {
        c.reverted += 1;
    }
    if matches!(item.plan.link, LinkStep::Unlinked) {
        c.unlinked += 1;
    }
    c.conflicts += item.plan.conflicts.len();
    c.text_merges += item
        .plan
        .notes
        .iter()
        .filter(|n| n.action == "text_merged")
        .count();
}

fn audit_action<T>(item: &Work<T>) -> Option<&'static str> {
    match (&item.plan.google, item.plan.crm.as_deref()) {
        (_, Some(CrmStep::Update { .. })) => Some("written_back"),
        (_, Some(CrmStep::Delete { .. })) => None,
        (_, Some(CrmStep::Create { .. })) => None,
        (Some(GoogleStep::Create { .. }), None) => Some("copied_to_google"),
        (Some(GoogleStep::Update { .. }), None) => Some("updated_in_google"),
        (Some(GoogleStep::Delete { .. }), None) => None,
        (Some(GoogleStep::Release { .. }), None) => Some("released"),
        (None, None) => None,
    }
}

fn commit_link<T: Synced>(
    w: &crate::store::SyncWriter<'_>,
    user: &UserId,
    kind: ObjectKind,
    item: &Work<T>,
    input: &PlanInput<'_, T>,
    linked_ids: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    let Some(crm_id) = &item.plan.crm_id else {
        return Ok(());
    };
    let current = input.links.get(crm_id);
    match &item.plan.link {
        LinkStep::Keep => Ok(()),
        LinkStep::Remove => w.delete_link(user, kind, crm_id),
        LinkStep::Etag { etag } => w.set_link_etag(user, kind, crm_id, etag),
        LinkStep::Unlinked => {
            let mut link = current.cloned().ok_or(StoreError::RowCount {
                action: "unlink",
                table: "links",
                touched: 0,
            })?;
            link.state = LinkState::Unlinked;
            link.google_id = None;
            link.etag = None;
            w.put_link(user, kind, &link, None)
        }
        LinkStep::Linked {
            google_id,
            etag,
            base,
            origin,
            pre_link,
        } => {
            let (google_id, etag) = match &item.written {
                Some(written) => (Some(written.google_id.clone()), Some(written.etag.clone())),
                None => (
                    google_id
                        .clone()
                        .or_else(|| current.and_then(|l| l.google_id.clone())),
                    etag.clone()
                        .or_else(|| current.and_then(|l| l.etag.clone())),
                ),
            };
            let generation = match &item.plan.google {
                Some(GoogleStep::Create { generation, .. }) => *generation,
                _ => current.map_or(0, |l| l.generation),
            };
            let crm_version = item
                .crm_version
                .or_else(|| input.desired.get(crm_id).map(|d| d.version));
            if let Some(g) = &google_id {
                linked_ids.insert(g.clone());
            }
            w.put_link(
                user,
                kind,
                &Link {
                    crm_id: crm_id.clone(),
                    state: LinkState::Linked,
                    google_id,
                    etag,
                    generation,
                    base: Some(base.clone()),
                    crm_version,
                    origin: *origin,
                },
                pre_link.as_ref(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(key: OpKey) -> OpResult<SyncedContact> {
        OpResult {
            key,
            result: Ok(OpOutcome::Deleted),
        }
    }

    fn g(id: &str) -> OpKey {
        OpKey::Google(id.into())
    }

    #[test]
    fn answers_find_their_ops_by_key_not_by_position() {
        let keys = [g("a"), OpKey::Create(CrmId::new("c1").unwrap()), g("b")];
        // Answers out of order, one missing, one for an op never sent, one twice.
        let answers = vec![
            ok(g("b")),
            OpResult {
                key: g("a"),
                result: Err(RemoteError::new(RemoteErrorKind::PreconditionFailed, "412")),
            },
            ok(g("zz")),
            ok(g("b")),
        ];
        let matched = match_results(&[10, 11, 12], &keys, answers);
        assert_eq!(matched.len(), 3);
        let by_work: BTreeMap<usize, _> = matched.into_iter().collect();
        assert_eq!(
            by_work[&10].as_ref().unwrap_err().kind,
            RemoteErrorKind::PreconditionFailed
        );
        assert!(by_work[&11]
            .as_ref()
            .unwrap_err()
            .message
            .contains("did not include"));
        assert_eq!(by_work[&12], Ok(OpOutcome::Deleted));
    }

    #[test]
    fn two_ops_on_one_item_in_one_call_both_fail() {
        let keys = [g("a"), g("a")];
        let matched = match_results(&[0, 1], &keys, vec![ok(g("a")), ok(g("a"))]);
        assert_eq!(matched.len(), 2);
        assert!(matched
            .iter()
            .all(|(_, r)| r.as_ref().unwrap_err().message.contains("same item")));
    }
}
