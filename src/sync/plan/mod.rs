//! The planner: a pure function from (desired CRM items, links with their base, Google's
//! changes) to a list of per-record plans. No I/O happens here; `execute` carries plans out.
//!
//! Each record falls into exactly one row of the plan table in DESIGN.md §3, decided by one
//! exhaustive `match` in [`plan_record`]; a conflict is part of a plan, never an error.

use super::merge::{merge, ConflictPolicy, FieldConflict};
use super::remote::{RemoteChange, RemoteItem};
use crate::model::synced::crm_owned_fields;
use crate::model::{CrmId, ObjectKind, SyncedContact, SyncedEvent};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

/// A synced form the planner can work with.
pub trait Synced: Clone + Debug + PartialEq + Serialize + DeserializeOwned {
    const KIND: ObjectKind;

    /// Normalised keys that identify the same real-world item on both sides, strongest first
    /// (contacts: e-mail addresses, then phone numbers). Events have none: they are matched
    /// by our id and marker only.
    fn match_keys(&self) -> Vec<String>;

    /// A short human label for reports.
    fn label(&self) -> String;

    /// Link a pre-existing item into `crm`: keep the CRM's values and add what only the phone
    /// knew (extra e-mails, phones, addresses; fields the CRM leaves empty).
    fn union_with(&self, phone: &Self) -> Self;
}

impl Synced for SyncedContact {
    const KIND: ObjectKind = ObjectKind::Contact;

    fn match_keys(&self) -> Vec<String> {
        let emails = self.emails.iter().map(|e| format!("email:{}", e.address));
        let phones = self.phones.iter().map(|p| format!("phone:{}", p.number));
        emails.chain(phones).collect()
    }

    fn label(&self) -> String {
        let name = format!("{} {}", self.first_name, self.last_name);
        let name = name.trim();
        if name.is_empty() {
            self.emails
                .first()
                .map(|e| e.address.clone())
                .unwrap_or_else(|| "(no name)".into())
        } else {
            name.to_owned()
        }
    }

    fn union_with(&self, phone: &Self) -> Self {
        let mut out = self.clone();
        for (mine, theirs) in [
            (&mut out.first_name, &phone.first_name),
            (&mut out.last_name, &phone.last_name),
            (&mut out.title, &phone.title),
            (&mut out.notes, &phone.notes),
        ] {
            if mine.is_empty() {
                mine.clone_from(theirs);
            }
        }
        for e in &phone.emails {
            if !out.emails.iter().any(|x| x.address == e.address) {
                out.emails.push(e.clone());
            }
        }
        for p in &phone.phones {
            if !out.phones.iter().any(|x| x.number == p.number) {
                out.phones.push(p.clone());
            }
        }
        for a in &phone.addresses {
            if !out.addresses.contains(a) {
                out.addresses.push(a.clone());
            }
        }
        out
    }
}

impl Synced for SyncedEvent {
    const KIND: ObjectKind = ObjectKind::Event;

    fn match_keys(&self) -> Vec<String> {
        Vec::new()
    }

    fn label(&self) -> String {
        self.title.clone()
    }

    fn union_with(&self, _phone: &Self) -> Self {
        self.clone()
    }
}

/// Which way changes may flow for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    CrmToGoogle,
    #[default]
    TwoWay,
}

/// What a phone-side delete of a synced item does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GoogleDeletePolicy {
    /// Keep the CRM record; stop syncing it to this user until an admin resets the link.
    #[default]
    Unlink,
    /// Put it back on the phone.
    Restore,
    /// Delete the CRM record too (only with delete permission and two-way; else restore).
    DeleteInCrm,
}

/// The per-user settings the planner needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Policies {
    pub direction: Direction,
    pub conflict: ConflictPolicy,
    pub google_delete: GoogleDeletePolicy,
    /// The user may create records of this kind in the CRM (profile create flag).
    pub may_create_in_crm: bool,
}

/// A CRM record that should be on the user's phone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredItem<T> {
    pub data: T,
    /// The CRM version `data` was projected from (expected version of write-backs).
    pub version: i64,
    pub may_edit: bool,
    pub may_delete: bool,
    /// False for events that aged out of the window: kept and updated if already synced,
    /// never created.
    pub may_create: bool,
    pub changed_at: Option<DateTime<Utc>>,
}

/// The state of a link row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// A create was sent (or is about to be); its outcome is not known yet.
    PendingCreate,
    Linked,
    /// The phone deleted it under the `unlink` policy: not synced until an admin resets.
    Unlinked,
    /// A pre-existing phone item (dedup) is being marked as ours; its outcome is not known
    /// yet. Written before the write leaves, with the pre-link snapshot, so a crash never
    /// makes the user's own item look like one crmsync created.
    PendingLink,
}

impl LinkState {
    /// Every state (tests walk them all).
    pub const ALL: [LinkState; 4] = [
        LinkState::PendingCreate,
        LinkState::Linked,
        LinkState::Unlinked,
        LinkState::PendingLink,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::PendingCreate => "pending_create",
            LinkState::Linked => "linked",
            LinkState::Unlinked => "unlinked",
            LinkState::PendingLink => "pending_link",
        }
    }

    /// A write whose outcome is not known yet (resolved against a full listing).
    pub fn is_pending(self) -> bool {
        match self {
            LinkState::PendingCreate | LinkState::PendingLink => true,
            LinkState::Linked | LinkState::Unlinked => false,
        }
    }
}

/// How a link came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOrigin {
    /// The engine created the Google item.
    Created,
    /// A pre-existing Google item was linked (dedup); its pre-link snapshot is kept.
    LinkedExisting,
    /// A phone-created item was imported into the CRM.
    Imported,
}

impl LinkOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkOrigin::Created => "created",
            LinkOrigin::LinkedExisting => "linked_existing",
            LinkOrigin::Imported => "imported",
        }
    }
}

/// One (user, record) link as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link<T> {
    pub crm_id: CrmId,
    pub state: LinkState,
    pub google_id: Option<String>,
    pub etag: Option<String>,
    pub generation: i64,
    /// The synced form both sides last agreed on.
    pub base: Option<T>,
    pub crm_version: Option<i64>,
    pub origin: LinkOrigin,
}

/// Why a record left a user's desired set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LostReason {
    /// The user may no longer read it in the CRM (with the deciding reasons).
    NotReadable(String),
    /// Readable, but outside the user's sync scope.
    OutOfScope,
    /// Deleted in the CRM.
    DeletedInCrm,
    /// The user is inactive.
    UserInactive,
    /// The user's data is being revoked from this Google account (offboarding).
    Revoked,
}

impl std::fmt::Display for LostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LostReason::NotReadable(why) => write!(f, "no longer readable ({why})"),
            LostReason::OutOfScope => f.write_str("outside the user's sync scope"),
            LostReason::DeletedInCrm => f.write_str("deleted in the CRM"),
            LostReason::UserInactive => f.write_str("user is inactive"),
            LostReason::Revoked => f.write_str("revoked from this Google account"),
        }
    }
}

/// What a phone-created item matches in the CRM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct CrmMatch {
    /// A record the user may read with a matching key (linked instead of created).
    pub readable: Option<CrmId>,
    /// A record the user may NOT read with a matching key: never linked, reported to admins.
    pub hidden: Option<CrmId>,
}

/// The row of the plan table a record fell into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    New,
    /// A Google item carrying our marker for this record was found (after a crash or a state
    /// loss): linked instead of created again.
    Relink,
    /// Linked to a pre-existing phone item found by e-mail/phone.
    Dedup,
    Push,
    Pull,
    Both,
    PhoneDelete,
    Lost,
    PhoneNew,
    /// A listing showed our own write (same content, newer etag).
    Echo,
    /// A pending create whose outcome is unknown: retried idempotently.
    PendingRetry,
    /// A link row nothing needs any more (unlinked and no longer desired).
    Cleanup,
}

/// A write to Google.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum GoogleStep<T> {
    /// Create the item (events: with id `event_id`; contacts: the id comes back).
    Create {
        generation: i64,
        event_id: Option<String>,
        data: T,
    },
    /// Replace the synced fields (and set our marker), conditional on `etag`.
    Update {
        google_id: String,
        etag: String,
        data: T,
    },
    /// Delete the item (unconditional when `etag` is `None`).
    Delete {
        google_id: String,
        etag: Option<String>,
    },
    /// Give a contact crmsync did not create back to its user: restored to its pre-link
    /// snapshot where it still shows `base` (what we last wrote), the phone's values where
    /// the phone changed them since; our marker and group removed. Never a delete.
    Release { google_id: String, base: Option<T> },
}

/// A write to the CRM on behalf of the user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum CrmStep<T> {
    /// Write `fields` (synced field names) of the record seen at `expected_version`.
    Update {
        expected_version: i64,
        fields: BTreeMap<String, serde_json::Value>,
    },
    /// Create a record owned by the user from a phone item.
    Create { new_id: CrmId, data: T },
    /// Delete the record seen at `expected_version`.
    Delete { expected_version: i64 },
}

/// What the link row becomes once the steps succeeded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum LinkStep<T> {
    /// Set the row to linked with this base. The google id and etag come from the Google
    /// step's result when there is one, else from `google_id`/`etag` here, else they stay.
    Linked {
        google_id: Option<String>,
        etag: Option<String>,
        base: T,
        origin: LinkOrigin,
        pre_link: Option<serde_json::Value>,
    },
    /// Only the etag moved (our own write echoed back).
    Etag {
        etag: String,
    },
    Unlinked,
    Remove,
    Keep,
}

/// One thing worth an audit line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Note {
    pub action: String,
    pub detail: serde_json::Value,
}

fn note(action: &str, detail: serde_json::Value) -> Note {
    Note {
        action: action.to_owned(),
        detail,
    }
}

/// The plan for one record (or one phone-side item).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordPlan<T> {
    pub case: Case,
    /// The CRM record, when there is one.
    pub crm_id: Option<CrmId>,
    /// The Google item, when there is one.
    pub google_id: Option<String>,
    pub label: String,
    /// Applied first: a write-back, CRM create or CRM delete.
    pub crm: Option<Box<CrmStep<T>>>,
    /// Then the Google write.
    pub google: Option<GoogleStep<T>>,
    /// If the CRM refuses the write-back at execution time (edit access re-checked, version
    /// moved), this Google write restores the CRM's version on the phone instead.
    pub revert_instead: Option<Box<GoogleStep<T>>>,
    /// Finally the link row.
    pub link: LinkStep<T>,
    pub conflicts: Vec<FieldConflict>,
    pub notes: Vec<Note>,
    /// The CRM data the plan was made from (for diffs in dry runs; kept only when the
    /// input asks to `explain`).
    #[serde(skip)]
    pub before: Option<Box<T>>,
    /// The base the plan was made against: what Google had when both sides last agreed
    /// (kept only when the input asks to `explain`).
    #[serde(skip)]
    pub base: Option<Box<T>>,
}

impl<T> RecordPlan<T> {
    fn new(case: Case, crm_id: Option<CrmId>, google_id: Option<String>, label: String) -> Self {
        Self {
            case,
            crm_id,
            google_id,
            label,
            crm: None,
            google: None,
            revert_instead: None,
            link: LinkStep::Keep,
            conflicts: Vec::new(),
            notes: Vec::new(),
            before: None,
            base: None,
        }
    }

    /// Whether carrying the plan out changes anything at all.
    pub fn is_noop(&self) -> bool {
        self.crm.is_none()
            && self.google.is_none()
            && matches!(self.link, LinkStep::Keep)
            && self.notes.is_empty()
    }

    /// Whether the plan takes a synced item off the phone — deletes it, or releases a
    /// contact the user had before (counts toward the breaker).
    pub fn deletes_from_google(&self) -> bool {
        matches!(
            self.google,
            Some(GoogleStep::Delete { .. } | GoogleStep::Release { .. })
        )
    }
}

/// Google's side of a linked record in this pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RemoteState<'a, T> {
    /// Not in the (incremental) listing: as it was.
    Unchanged,
    Present(&'a RemoteItem<T>),
    Deleted,
}

/// The Google side as the planner sees it.
#[derive(Debug, Clone)]
pub struct RemoteView<T> {
    pub full: bool,
    pub present: BTreeMap<String, RemoteItem<T>>,
    pub deleted: BTreeSet<String>,
    /// previous resource name → current one.
    pub renamed: BTreeMap<String, String>,
}

impl<T: Clone> RemoteView<T> {
    /// Builds the view of one listing.
    pub fn from_changes(changes: &[RemoteChange<T>], full: bool) -> Self {
        let mut view = Self {
            full,
            present: BTreeMap::new(),
            deleted: BTreeSet::new(),
            renamed: BTreeMap::new(),
        };
        for change in changes {
            match change {
                RemoteChange::Present(item) => {
                    for old in &item.previous_ids {
                        view.renamed.insert(old.clone(), item.google_id.clone());
                    }
                    view.deleted.remove(&item.google_id);
                    view.present.insert(item.google_id.clone(), item.clone());
                }
                RemoteChange::Deleted { google_id } => {
                    view.present.remove(google_id);
                    view.deleted.insert(google_id.clone());
                }
            }
        }
        view
    }

    /// The state of the item a link points at (following renames).
    pub fn state_of(&self, google_id: &str) -> RemoteState<'_, T> {
        let id = self
            .renamed
            .get(google_id)
            .map_or(google_id, String::as_str);
        if let Some(item) = self.present.get(id) {
            RemoteState::Present(item)
        } else if self.deleted.contains(id) || self.full {
            RemoteState::Deleted
        } else {
            RemoteState::Unchanged
        }
    }
}

/// Everything the planner needs for one user and one kind.
pub struct PlanInput<'a, T> {
    pub desired: &'a BTreeMap<CrmId, DesiredItem<T>>,
    /// Readable, in-scope events outside the window: neither created nor pulled back.
    pub retained: &'a BTreeSet<CrmId>,
    pub links: &'a BTreeMap<CrmId, Link<T>>,
    pub remote: &'a RemoteView<T>,
    /// Google items in the user's account not linked to any record (known from this and
    /// earlier listings): dedup candidates, relink candidates and phone-created items.
    pub unlinked: &'a [RemoteItem<T>],
    /// Phone-created items already reported as not importable (reported once).
    pub already_reported: &'a BTreeSet<String>,
    pub lost_reasons: &'a BTreeMap<CrmId, LostReason>,
    pub policies: Policies,
    /// Matches a phone item against the CRM (readable and hidden records).
    pub crm_match: &'a dyn Fn(&T) -> CrmMatch,
    /// The deterministic Google id of an event for (record, generation).
    pub event_id: &'a dyn Fn(&CrmId, i64) -> String,
    /// The CRM id a phone-created item gets when imported (deterministic).
    pub import_id: &'a dyn Fn(&str) -> CrmId,
    /// The items of `unlinked` and `remote` carrying our marker, by the record they name
    /// (built on first use: one lookup per record instead of a scan of every item).
    pub marked: std::cell::OnceCell<BTreeMap<CrmId, Vec<&'a RemoteItem<T>>>>,
    /// Keep in each record plan the data it was made from (`before`, `base`): a dry run
    /// shows them as diffs; a real pass does not pay for the copies.
    pub explain: bool,
}

/// The plan for one user and one kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindPlan<T> {
    pub kind: ObjectKind,
    pub records: Vec<RecordPlan<T>>,
    /// Linked items before the pass (the breaker's denominator).
    pub linked_before: usize,
}

impl<T> KindPlan<T> {
    pub fn google_deletions(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.deletes_from_google() && r.case == Case::Lost)
            .count()
    }
}

/// Plans one user's pass for one kind.
pub fn plan<T: Synced>(input: &PlanInput<'_, T>) -> KindPlan<T> {
    let mut claimed = claimed_by_links(
        input.links.values().filter_map(|l| l.google_id.clone()),
        input.remote,
    );
    let mut records = plan_records(input, &mut claimed);
    records.extend(plan_phone_new(input, &mut claimed));
    KindPlan {
        kind: T::KIND,
        records,
        linked_before: input
            .links
            .values()
            .filter(|l| l.state != LinkState::Unlinked)
            .count(),
    }
}

/// The Google items linked records hold (under their new ids too, when the listing shows
/// them renamed): taken, never matched to another record or imported.
pub fn claimed_by_links<T>(
    google_ids: impl IntoIterator<Item = String>,
    remote: &RemoteView<T>,
) -> BTreeSet<String> {
    google_ids
        .into_iter()
        .flat_map(|g| {
            let renamed = remote.renamed.get(&g).cloned();
            std::iter::once(g).chain(renamed)
        })
        .collect()
}

/// Plans the records of `input` (its desired set and links), in id order, taking the
/// Google items they relink or match into `claimed`. With [`claimed_by_links`] over all of
/// a user's links, records can be planned part by part (in id order) to the same result.
pub fn plan_records<T: Synced>(
    input: &PlanInput<'_, T>,
    claimed: &mut BTreeSet<String>,
) -> Vec<RecordPlan<T>> {
    let mut records = Vec::new();
    let ids: BTreeSet<&CrmId> = input.desired.keys().chain(input.links.keys()).collect();
    for crm_id in ids {
        let desired = input.desired.get(crm_id);
        let link = input.links.get(crm_id);
        let remote = link
            .and_then(|l| l.google_id.as_deref())
            .map(|g| input.remote.state_of(g))
            .unwrap_or(RemoteState::Unchanged);
        if let Some(p) = plan_record(input, crm_id, desired, link, remote, claimed) {
            records.push(p);
        }
    }
    records
}

/// Finds an unlinked Google item carrying our marker for `crm_id` (a create that went
/// through before a crash, or a state DB restored from an older backup).
fn marked_item<'a, T>(
    input: &PlanInput<'a, T>,
    crm_id: &CrmId,
    claimed: &BTreeSet<String>,
) -> Option<&'a RemoteItem<T>> {
    let index = input.marked.get_or_init(|| {
        let mut index: BTreeMap<CrmId, Vec<&'a RemoteItem<T>>> = BTreeMap::new();
        for item in input.unlinked.iter().chain(input.remote.present.values()) {
            if let (Some(id), None) = (&item.crm_id, &item.recurring_parent) {
                index.entry(id.clone()).or_default().push(item);
            }
        }
        index
    });
    index
        .get(crm_id)?
        .iter()
        .copied()
        .find(|i| !claimed.contains(&i.google_id))
}

/// Finds an unlinked, unmarked Google item sharing a match key with `data`.
fn dedup_candidate<'a, T: Synced>(
    input: &'a PlanInput<'_, T>,
    data: &T,
    claimed: &BTreeSet<String>,
) -> Option<&'a RemoteItem<T>> {
    let keys = data.match_keys();
    if keys.is_empty() {
        return None;
    }
    let candidates: Vec<&RemoteItem<T>> = input
        .unlinked
        .iter()
        .filter(|i| i.crm_id.is_none() && !claimed.contains(&i.google_id))
        .collect();
    // Strongest key first: every e-mail before any phone number.
    keys.iter().find_map(|key| {
        candidates
            .iter()
            .copied()
            .filter(|i| i.data.match_keys().contains(key))
            .min_by(|a, b| a.google_id.cmp(&b.google_id))
    })
}

/// Fields whose values differ between two synced forms.
pub fn changed_fields<T: Serialize>(from: &T, to: &T) -> BTreeMap<String, serde_json::Value> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(from), serde_json::to_value(to))
    else {
        return BTreeMap::new();
    };
    b.into_iter().filter(|(k, v)| a.get(k) != Some(v)).collect()
}

fn write_back_fields<T: Synced>(crm: &T, merged: &T) -> BTreeMap<String, serde_json::Value> {
    let owned = crm_owned_fields(T::KIND);
    changed_fields(crm, merged)
        .into_iter()
        .filter(|(k, _)| !owned.contains(&k.as_str()))
        .collect()
}

fn create_step<T: Synced>(
    input: &PlanInput<'_, T>,
    crm_id: &CrmId,
    generation: i64,
    data: &T,
) -> GoogleStep<T> {
    GoogleStep::Create {
        generation,
        event_id: (T::KIND == ObjectKind::Event).then(|| (input.event_id)(crm_id, generation)),
        data: data.clone(),
    }
}

/// Plans one record: the exhaustive decision of DESIGN.md §3. Also used to re-plan a record
/// after a stale etag, with the item as re-read.
///
/// The match is over (desired?, link state) with no wildcard: a new link state does not
/// compile until every row of the table says what it does with it.
pub fn plan_record<T: Synced>(
    input: &PlanInput<'_, T>,
    crm_id: &CrmId,
    desired: Option<&DesiredItem<T>>,
    link: Option<&Link<T>>,
    remote: RemoteState<'_, T>,
    claimed: &mut BTreeSet<String>,
) -> Option<RecordPlan<T>> {
    let label = desired
        .map(|d| d.data.label())
        .or_else(|| link.and_then(|l| l.base.as_ref()).map(Synced::label))
        .unwrap_or_else(|| crm_id.to_string());
    let google_id = link.and_then(|l| l.google_id.clone());
    let mut plan = RecordPlan::new(Case::New, Some(crm_id.clone()), google_id, label);
    if input.explain {
        plan.before = desired.map(|d| Box::new(d.data.clone()));
        plan.base = link.and_then(|l| l.base.clone()).map(Box::new);
    }

    match (desired, link) {
        // ── not desired, nothing linked: nothing to do.
        (None, None) => None,
        // ── new: relink our own item, dedup against a phone item, or create.
        (Some(d), None) => plan_new(input, plan, crm_id, d, claimed),
        (Some(d), Some(l)) => match l.state {
            // Linked and desired: the steady / push / pull / both / phone-delete rows.
            LinkState::Linked => plan_linked(input, plan, crm_id, d, l, remote),
            // Unlinked by a phone delete: left alone while desired.
            LinkState::Unlinked => None,
            // A create whose outcome is unknown.
            LinkState::PendingCreate => {
                plan_pending_create(input, plan, crm_id, d, l, remote, claimed)
            }
            // A pre-existing item being marked as ours, outcome unknown.
            LinkState::PendingLink => plan_pending_link(input, plan, crm_id, d, l, remote, claimed),
        },
        (None, Some(l)) => match l.state {
            // Lost: no longer desired. Access wins over an unsynced phone edit (audited).
            LinkState::Linked => plan_lost(input, plan, crm_id, l, remote),
            // Unlinked and no longer desired: the row is dropped.
            LinkState::Unlinked => {
                plan.case = Case::Cleanup;
                plan.link = LinkStep::Remove;
                Some(plan)
            }
            // The record is no longer wanted: delete whatever the create left behind.
            LinkState::PendingCreate => {
                plan_abandoned_create(input, plan, crm_id, l, remote, claimed)
            }
            // No longer wanted before the link was confirmed: give the item back (whether
            // or not our write reached it), never delete it.
            LinkState::PendingLink => plan_lost(input, plan, crm_id, l, remote),
        },
    }
}

fn plan_new<T: Synced>(
    input: &PlanInput<'_, T>,
    mut plan: RecordPlan<T>,
    crm_id: &CrmId,
    d: &DesiredItem<T>,
    claimed: &mut BTreeSet<String>,
) -> Option<RecordPlan<T>> {
    let two_way = input.policies.direction == Direction::TwoWay;
    if let Some(item) = marked_item(input, crm_id, claimed) {
        claimed.insert(item.google_id.clone());
        plan.case = Case::Relink;
        plan.google_id = Some(item.google_id.clone());
        // Only items carrying our own-creation marker count as created by us: anything else
        // (a linked pre-existing contact after a state loss) is the user's and is never
        // deleted on pull-back.
        let origin = if item.created_by_us {
            LinkOrigin::Created
        } else {
            LinkOrigin::LinkedExisting
        };
        return Some(adopt(plan, d, item, origin, None));
    }
    if !d.may_create {
        return None;
    }
    if let Some(item) = dedup_candidate(input, &d.data, claimed) {
        claimed.insert(item.google_id.clone());
        plan.case = Case::Dedup;
        plan.google_id = Some(item.google_id.clone());
        let linked = d.data.union_with(&item.data);
        let target = if two_way && d.may_edit {
            linked
        } else {
            d.data.clone()
        };
        if target != d.data {
            plan.crm = Some(Box::new(CrmStep::Update {
                expected_version: d.version,
                fields: write_back_fields(&d.data, &target),
            }));
            plan.revert_instead = Some(Box::new(GoogleStep::Update {
                google_id: item.google_id.clone(),
                etag: item.etag.clone(),
                data: d.data.clone(),
            }));
        }
        plan.google = Some(GoogleStep::Update {
            google_id: item.google_id.clone(),
            etag: item.etag.clone(),
            data: target.clone(),
        });
        plan.link = LinkStep::Linked {
            google_id: Some(item.google_id.clone()),
            etag: None,
            base: target,
            origin: LinkOrigin::LinkedExisting,
            pre_link: Some(item.raw.clone()),
        };
        plan.notes.push(note(
            "linked_existing",
            serde_json::json!({"google_id": item.google_id, "pre_link": item.raw}),
        ));
        return Some(plan);
    }
    plan.case = Case::New;
    plan.google = Some(create_step(input, crm_id, 0, &d.data));
    plan.link = LinkStep::Linked {
        google_id: None,
        etag: None,
        base: d.data.clone(),
        origin: LinkOrigin::Created,
        pre_link: None,
    };
    Some(plan)
}

fn plan_pending_create<T: Synced>(
    input: &PlanInput<'_, T>,
    mut plan: RecordPlan<T>,
    crm_id: &CrmId,
    d: &DesiredItem<T>,
    l: &Link<T>,
    remote: RemoteState<'_, T>,
    claimed: &mut BTreeSet<String>,
) -> Option<RecordPlan<T>> {
    let found = match remote {
        RemoteState::Present(item) => Some(item),
        RemoteState::Unchanged | RemoteState::Deleted => marked_item(input, crm_id, claimed),
    };
    if let Some(item) = found {
        claimed.insert(item.google_id.clone());
        plan.case = Case::Relink;
        plan.google_id = Some(item.google_id.clone());
        return Some(adopt(plan, d, item, l.origin, None));
    }
    plan.case = Case::PendingRetry;
    // A deleted (reserved) event id needs the next generation.
    let generation = match remote {
        RemoteState::Deleted if T::KIND == ObjectKind::Event => l.generation + 1,
        RemoteState::Deleted | RemoteState::Unchanged | RemoteState::Present(_) => l.generation,
    };
    plan.google = Some(create_step(input, crm_id, generation, &d.data));
    plan.link = LinkStep::Linked {
        google_id: None,
        etag: None,
        base: d.data.clone(),
        origin: l.origin,
        pre_link: None,
    };
    Some(plan)
}

fn plan_abandoned_create<T: Synced>(
    input: &PlanInput<'_, T>,
    mut plan: RecordPlan<T>,
    crm_id: &CrmId,
    l: &Link<T>,
    remote: RemoteState<'_, T>,
    claimed: &mut BTreeSet<String>,
) -> Option<RecordPlan<T>> {
    plan.case = Case::Lost;
    let found = match remote {
        RemoteState::Present(item) => Some(item),
        RemoteState::Unchanged | RemoteState::Deleted => marked_item(input, crm_id, claimed),
    };
    if let Some(item) = found {
        plan.google = Some(GoogleStep::Delete {
            google_id: item.google_id.clone(),
            etag: None,
        });
        plan.google_id = Some(item.google_id.clone());
    } else if let (ObjectKind::Event, Some(g)) = (T::KIND, &l.google_id) {
        if !matches!(remote, RemoteState::Deleted) {
            plan.google = Some(GoogleStep::Delete {
                google_id: g.clone(),
                etag: None,
            });
        }
    }
    plan.link = LinkStep::Remove;
    plan.notes.push(note(
        "pulled_back",
        serde_json::json!({"reason": lost_reason(input, crm_id).to_string()}),
    ));
    Some(plan)
}

fn plan_pending_link<T: Synced>(
    input: &PlanInput<'_, T>,
    mut plan: RecordPlan<T>,
    crm_id: &CrmId,
    d: &DesiredItem<T>,
    l: &Link<T>,
    remote: RemoteState<'_, T>,
    claimed: &mut BTreeSet<String>,
) -> Option<RecordPlan<T>> {
    let found = match remote {
        RemoteState::Present(item) => Some(item),
        RemoteState::Unchanged | RemoteState::Deleted => marked_item(input, crm_id, claimed),
    };
    if let Some(item) = found {
        // Whether or not our write reached it, the item is the user's pre-existing one.
        claimed.insert(item.google_id.clone());
        plan.case = Case::Relink;
        plan.google_id = Some(item.google_id.clone());
        return Some(adopt(plan, d, item, LinkOrigin::LinkedExisting, None));
    }
    match (remote, &l.google_id) {
        // Not in this (incremental) listing: send the link write again, conditional on the
        // etag we saw; if our earlier write went through, the stale etag makes the fix-up
        // read it and adopt it.
        (RemoteState::Unchanged, Some(google_id)) => {
            plan.case = Case::PendingRetry;
            let data = l.base.clone().unwrap_or_else(|| d.data.clone());
            plan.google = Some(GoogleStep::Update {
                google_id: google_id.clone(),
                etag: l.etag.clone().unwrap_or_default(),
                data: data.clone(),
            });
            plan.link = LinkStep::Linked {
                google_id: Some(google_id.clone()),
                etag: None,
                base: data,
                origin: LinkOrigin::LinkedExisting,
                pre_link: None,
            };
            Some(plan)
        }
        // The phone deleted the item before the link was confirmed: create the record anew.
        (RemoteState::Unchanged | RemoteState::Deleted | RemoteState::Present(_), _) => {
            plan.case = Case::PendingRetry;
            plan.google = Some(create_step(input, crm_id, l.generation, &d.data));
            plan.link = LinkStep::Linked {
                google_id: None,
                etag: None,
                base: d.data.clone(),
                origin: LinkOrigin::Created,
                pre_link: None,
            };
            Some(plan)
        }
    }
}

fn plan_lost<T: Synced>(
    input: &PlanInput<'_, T>,
    mut plan: RecordPlan<T>,
    crm_id: &CrmId,
    l: &Link<T>,
    remote: RemoteState<'_, T>,
) -> Option<RecordPlan<T>> {
    if input.retained.contains(crm_id) {
        return None;
    }
    plan.case = Case::Lost;
    let reason = lost_reason(input, crm_id);
    let mut detail = serde_json::json!({"reason": reason.to_string()});
    match (remote, &l.google_id) {
        (RemoteState::Deleted, _) | (_, None) => {}
        (state, Some(g)) => {
            let google_id = match state {
                RemoteState::Present(item) => {
                    if l.base.as_ref() != Some(&item.data) {
                        detail["unsynced_phone_edit"] =
                            serde_json::to_value(&item.data).unwrap_or_default();
                    }
                    item.google_id.clone()
                }
                RemoteState::Unchanged | RemoteState::Deleted => g.clone(),
            };
            plan.google = Some(pull_back_step(l, google_id));
            if let Some(GoogleStep::Release { .. }) = plan.google {
                detail["released"] = serde_json::json!(l.origin);
            }
        }
    }
    plan.link = LinkStep::Remove;
    plan.notes.push(note("pulled_back", detail));
    Some(plan)
}

/// How a lost item leaves Google: deleted if crmsync created it (or it is an event of the
/// dedicated calendar); a contact the user had before (linked by dedup) or made on the
/// phone (imported) is released — restored or stripped — never deleted.
fn pull_back_step<T: Synced>(l: &Link<T>, google_id: String) -> GoogleStep<T> {
    let release = match (T::KIND, l.origin) {
        (ObjectKind::Contact, LinkOrigin::LinkedExisting | LinkOrigin::Imported) => true,
        (ObjectKind::Contact, LinkOrigin::Created) => false,
        (ObjectKind::Event | ObjectKind::Organization, _) => false,
    };
    if release {
        GoogleStep::Release {
            google_id,
            base: l.base.clone(),
        }
    } else {
        GoogleStep::Delete {
            google_id,
            etag: None,
        }
    }
}

/// Linked and desired. An item of ours found outside our container (the user's crmsync
/// group was deleted on the phone, or the contact taken out of it) is put back: whatever
/// the row plans, the item gets a Google write, which restores the membership (it is not
/// at the etag its link was synced at, so the write reads the contact first).
fn plan_linked<T: Synced>(
    input: &PlanInput<'_, T>,
    plan: RecordPlan<T>,
    crm_id: &CrmId,
    d: &DesiredItem<T>,
    l: &Link<T>,
    remote: RemoteState<'_, T>,
) -> Option<RecordPlan<T>> {
    let outside = match remote {
        RemoteState::Present(item) if !item.in_container => Some(item),
        RemoteState::Present(_) | RemoteState::Unchanged | RemoteState::Deleted => None,
    };
    let fallback = outside.map(|_| plan.clone());
    let planned = plan_linked_row(input, plan, crm_id, d, l, remote);
    let Some(item) = outside else {
        return planned;
    };
    let mut p = match planned {
        Some(p)
            if p.google.is_some() || matches!(p.link, LinkStep::Unlinked | LinkStep::Remove) =>
        {
            return Some(p)
        }
        Some(p) => p,
        None => fallback?,
    };
    // What Google should hold after the row: the base it settles on, or the item as it is.
    let data = match &p.link {
        LinkStep::Linked { base, .. } => base.clone(),
        LinkStep::Keep | LinkStep::Etag { .. } | LinkStep::Remove | LinkStep::Unlinked => {
            item.data.clone()
        }
    };
    if p.case == Case::Echo || matches!(p.link, LinkStep::Keep | LinkStep::Etag { .. }) {
        p.case = Case::Push;
    }
    p.google = Some(GoogleStep::Update {
        google_id: item.google_id.clone(),
        etag: item.etag.clone(),
        data: data.clone(),
    });
    if !matches!(p.link, LinkStep::Linked { .. }) {
        p.link = LinkStep::Linked {
            google_id: None,
            etag: None,
            base: data,
            origin: l.origin,
            pre_link: None,
        };
    }
    Some(p)
}

fn plan_linked_row<T: Synced>(
    input: &PlanInput<'_, T>,
    mut plan: RecordPlan<T>,
    crm_id: &CrmId,
    d: &DesiredItem<T>,
    l: &Link<T>,
    remote: RemoteState<'_, T>,
) -> Option<RecordPlan<T>> {
    let two_way = input.policies.direction == Direction::TwoWay;
    let Some(google_id) = l.google_id.clone() else {
        // A linked row without a Google id cannot happen; recreate to heal it.
        plan.case = Case::PendingRetry;
        plan.google = Some(create_step(input, crm_id, l.generation + 1, &d.data));
        plan.link = LinkStep::Linked {
            google_id: None,
            etag: None,
            base: d.data.clone(),
            origin: l.origin,
            pre_link: None,
        };
        return Some(plan);
    };
    let base = l.base.clone().unwrap_or_else(|| d.data.clone());
    let crm_changed = d.data != base;
    let (google_now, etag) = match remote {
        RemoteState::Unchanged => (None, l.etag.clone().unwrap_or_default()),
        RemoteState::Present(item) if item.data == base => {
            // A renamed item (previousResourceNames) also moves the link's id below.
            if Some(&item.etag) != l.etag.as_ref() && !crm_changed && item.google_id == google_id {
                plan.case = Case::Echo;
                plan.link = LinkStep::Etag {
                    etag: item.etag.clone(),
                };
                return Some(plan);
            }
            (None, item.etag.clone())
        }
        RemoteState::Present(item) => (Some(item), item.etag.clone()),
        RemoteState::Deleted => {
            return Some(phone_delete(input, plan, d, l, crm_id));
        }
    };
    let new_id = match remote {
        RemoteState::Present(item) if item.google_id != google_id => Some(item.google_id.clone()),
        RemoteState::Present(_) | RemoteState::Unchanged | RemoteState::Deleted => None,
    };
    let target_id = new_id.clone().unwrap_or(google_id);
    match (crm_changed, google_now) {
        (false, None) => {
            if new_id.is_some() {
                plan.case = Case::Echo;
                plan.link = LinkStep::Linked {
                    google_id: new_id,
                    etag: Some(etag),
                    base,
                    origin: l.origin,
                    pre_link: None,
                };
                return Some(plan);
            }
            None
        }
        (true, None) => {
            plan.case = Case::Push;
            plan.google = Some(GoogleStep::Update {
                google_id: target_id,
                etag,
                data: d.data.clone(),
            });
            plan.link = LinkStep::Linked {
                google_id: None,
                etag: None,
                base: d.data.clone(),
                origin: l.origin,
                pre_link: None,
            };
            Some(plan)
        }
        (changed, Some(item)) => {
            plan.case = if changed { Case::Both } else { Case::Pull };
            Some(pull_or_merge(
                input, plan, d, &base, item, target_id, etag, l.origin, two_way,
            ))
        }
    }
}

fn lost_reason<T>(input: &PlanInput<'_, T>, crm_id: &CrmId) -> LostReason {
    input
        .lost_reasons
        .get(crm_id)
        .cloned()
        .unwrap_or(LostReason::DeletedInCrm)
}

/// Links an existing Google item to a desired record: the item is what we (or the phone)
/// have; CRM changes since are pushed, the item's extra content is not written back.
fn adopt<T: Synced>(
    mut plan: RecordPlan<T>,
    d: &DesiredItem<T>,
    item: &RemoteItem<T>,
    origin: LinkOrigin,
    pre_link: Option<serde_json::Value>,
) -> RecordPlan<T> {
    if item.data != d.data {
        plan.google = Some(GoogleStep::Update {
            google_id: item.google_id.clone(),
            etag: item.etag.clone(),
            data: d.data.clone(),
        });
    }
    plan.link = LinkStep::Linked {
        google_id: Some(item.google_id.clone()),
        etag: Some(item.etag.clone()),
        base: d.data.clone(),
        origin,
        pre_link,
    };
    plan
}

fn phone_delete<T: Synced>(
    input: &PlanInput<'_, T>,
    mut plan: RecordPlan<T>,
    d: &DesiredItem<T>,
    l: &Link<T>,
    crm_id: &CrmId,
) -> RecordPlan<T> {
    plan.case = Case::PhoneDelete;
    let p = input.policies;
    let restore = |plan: &mut RecordPlan<T>, why: &str| {
        if !d.may_create {
            // Aged out of the window: kept while it was on the phone, never created again.
            plan.link = LinkStep::Remove;
            plan.notes.push(note(
                "not_restored",
                serde_json::json!({"why": "deleted on the phone after leaving the event window"}),
            ));
            return;
        }
        plan.google = Some(create_step(input, crm_id, l.generation + 1, &d.data));
        plan.link = LinkStep::Linked {
            google_id: None,
            etag: None,
            base: d.data.clone(),
            origin: LinkOrigin::Created,
            pre_link: None,
        };
        plan.notes
            .push(note("restored", serde_json::json!({"why": why})));
    };
    match p.google_delete {
        GoogleDeletePolicy::Unlink => {
            plan.link = LinkStep::Unlinked;
            plan.notes.push(note(
                "unlinked",
                serde_json::json!({"why": "deleted on the phone; policy unlink"}),
            ));
        }
        GoogleDeletePolicy::Restore => restore(&mut plan, "deleted on the phone; policy restore"),
        GoogleDeletePolicy::DeleteInCrm => {
            if p.direction == Direction::TwoWay && d.may_delete {
                plan.crm = Some(Box::new(CrmStep::Delete {
                    expected_version: d.version,
                }));
                plan.revert_instead = Some(Box::new(create_step(
                    input,
                    crm_id,
                    l.generation + 1,
                    &d.data,
                )));
                plan.link = LinkStep::Remove;
                plan.notes.push(note(
                    "deleted_in_crm",
                    serde_json::json!({"why": "deleted on the phone; policy delete_in_crm"}),
                ));
            } else {
                restore(
                    &mut plan,
                    "deleted on the phone, but the user may not delete it in the CRM",
                );
            }
        }
    }
    plan
}

#[allow(clippy::too_many_arguments)]
fn pull_or_merge<T: Synced>(
    input: &PlanInput<'_, T>,
    mut plan: RecordPlan<T>,
    d: &DesiredItem<T>,
    base: &T,
    item: &RemoteItem<T>,
    google_id: String,
    etag: String,
    origin: LinkOrigin,
    two_way: bool,
) -> RecordPlan<T> {
    let revert = |plan: &mut RecordPlan<T>, why: &str| {
        plan.google = Some(GoogleStep::Update {
            google_id: google_id.clone(),
            etag: etag.clone(),
            data: d.data.clone(),
        });
        plan.link = LinkStep::Linked {
            google_id: None,
            etag: None,
            base: d.data.clone(),
            origin,
            pre_link: None,
        };
        plan.notes.push(note(
            "reverted",
            serde_json::json!({"why": why, "phone_version": item.data}),
        ));
    };
    if !two_way {
        revert(&mut plan, "direction is crm_to_google");
        return plan;
    }
    if !d.may_edit {
        revert(
            &mut plan,
            "read-only: the user may not edit this record in the CRM",
        );
        return plan;
    }
    let merged = match merge(
        T::KIND,
        base,
        &d.data,
        &item.data,
        input.policies.conflict,
        d.changed_at,
        item.updated,
    ) {
        Ok(m) => m,
        Err(e) => {
            revert(&mut plan, &format!("merge failed: {e}"));
            return plan;
        }
    };
    let (item_id, item_etag) = (google_id.clone(), etag.clone());
    let fields = write_back_fields(&d.data, &merged.value);
    if !fields.is_empty() {
        plan.crm = Some(Box::new(CrmStep::Update {
            expected_version: d.version,
            fields,
        }));
        plan.revert_instead = Some(Box::new(GoogleStep::Update {
            google_id: google_id.clone(),
            etag: etag.clone(),
            data: d.data.clone(),
        }));
    }
    if merged.value != item.data {
        plan.google = Some(GoogleStep::Update {
            google_id,
            etag,
            data: merged.value.clone(),
        });
    }
    for field in &merged.reverted {
        plan.notes.push(note(
            "reverted_field",
            serde_json::json!({"field": field, "why": "owned by the CRM"}),
        ));
    }
    for field in &merged.text_merged {
        plan.notes
            .push(note("text_merged", serde_json::json!({"field": field})));
    }
    plan.conflicts = merged.conflicts;
    plan.link = LinkStep::Linked {
        google_id: Some(item_id),
        etag: Some(item_etag),
        base: merged.value,
        origin,
        pre_link: None,
    };
    plan
}

/// Items on the phone that no record is linked to: phone-created items to import (or leave).
pub fn plan_phone_new<T: Synced>(
    input: &PlanInput<'_, T>,
    claimed: &mut BTreeSet<String>,
) -> Vec<RecordPlan<T>> {
    let p = input.policies;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let items = input.unlinked.iter().chain(input.remote.present.values());
    for item in items {
        if claimed.contains(&item.google_id)
            || !item.in_container
            || !seen.insert(item.google_id.clone())
            || input.remote.deleted.contains(&item.google_id)
            // Reported as not importable, and unchanged since: nothing new to say or do.
            || input.already_reported.contains(&item.google_id)
        {
            continue;
        }
        let mut plan = RecordPlan::new(
            Case::PhoneNew,
            None,
            Some(item.google_id.clone()),
            item.data.label(),
        );
        if item.recurring_parent.is_some() {
            if !input.already_reported.contains(&item.google_id) {
                plan.notes.push(note(
                    "not_imported",
                    serde_json::json!({"why": "edits to a single occurrence of a series are not synced back"}),
                ));
                out.push(plan);
            }
            continue;
        }
        if let Some(marker) = &item.crm_id {
            // Ours, for a record that is neither linked nor desired: a leftover from a crash
            // or a lost state DB. Deleted only if crmsync created it; a marked contact
            // without our creation marker is the user's own, released (stripped).
            if !input.desired.contains_key(marker) {
                plan.case = Case::Lost;
                plan.crm_id = Some(marker.clone());
                plan.google = Some(if item.created_by_us {
                    GoogleStep::Delete {
                        google_id: item.google_id.clone(),
                        etag: None,
                    }
                } else {
                    GoogleStep::Release {
                        google_id: item.google_id.clone(),
                        base: None,
                    }
                });
                plan.notes.push(note(
                    "pulled_back",
                    serde_json::json!({"reason": lost_reason(input, marker).to_string(), "leftover": true}),
                ));
                claimed.insert(item.google_id.clone());
                out.push(plan);
            }
            continue;
        }
        let refuse = |why: &str| note("not_imported", serde_json::json!({"why": why}));
        if p.direction != Direction::TwoWay {
            if !input.already_reported.contains(&item.google_id) {
                plan.notes.push(refuse("direction is crm_to_google"));
                out.push(plan);
            }
            continue;
        }
        let found = (input.crm_match)(&item.data);
        if let Some(existing) = &found.readable {
            // The phone item is a record the user can already read (synced, or outside the
            // scope): importing it would duplicate it in the CRM.
            if !input.already_reported.contains(&item.google_id) {
                plan.notes.push(note(
                    "not_imported",
                    serde_json::json!({"why": "matches a CRM record the user can already read", "crm_id": existing}),
                ));
                out.push(plan);
            }
            continue;
        }
        if !p.may_create_in_crm {
            if !input.already_reported.contains(&item.google_id) {
                plan.notes.push(refuse(
                    "the user may not create records of this kind in the CRM",
                ));
                out.push(plan);
            }
            continue;
        }
        let new_id = (input.import_id)(&item.google_id);
        plan.crm_id = Some(new_id.clone());
        plan.crm = Some(Box::new(CrmStep::Create {
            new_id,
            data: item.data.clone(),
        }));
        plan.link = LinkStep::Linked {
            google_id: Some(item.google_id.clone()),
            etag: Some(item.etag.clone()),
            base: item.data.clone(),
            origin: LinkOrigin::Imported,
            pre_link: Some(item.raw.clone()),
        };
        // Mark the phone item as ours so it is recognised after a state loss.
        plan.google = Some(GoogleStep::Update {
            google_id: item.google_id.clone(),
            etag: item.etag.clone(),
            data: item.data.clone(),
        });
        let mut detail = serde_json::json!({"google_id": item.google_id});
        if let Some(hidden) = &found.hidden {
            detail["possible_duplicate_of_hidden_record"] = serde_json::json!(hidden);
        }
        plan.notes.push(note("imported", detail));
        claimed.insert(item.google_id.clone());
        out.push(plan);
    }
    out
}

/// The breaker of DESIGN.md §3: refuse a plan that would pull back more than `fraction` of
/// a user's linked items (a CRM outage returning empty lists must not wipe phones).
pub fn breaker_trips(deletions: usize, linked_before: usize, fraction: f64) -> bool {
    /// Below this many deletions the breaker never trips: losing 2 of 3 records after a role
    /// change is ordinary, not an outage.
    const MIN_DELETIONS: usize = 5;
    deletions >= MIN_DELETIONS && (deletions as f64) > fraction * linked_before as f64
}

#[cfg(test)]
mod tests;
