//! Who is affected by a mirror update: the users whose next pass could change anything in
//! their Google account, each with the reasons — so that a pass (the worker's cycle, or a
//! one-shot `sync`) can leave everyone else alone.
//!
//! Pure: the callers read the inputs (the mirror before and after, the changed entities, who
//! holds links to which records, stored and effective scope fingerprints, pending work) and
//! get an [`Affected`] back. Sources of work, each a function:
//!
//! - [`by_mirror`]: what changed between two cursors of the CRM feed ([`MirrorDelta`]) —
//!   - records: the users who hold a link to a changed (or deleted) record, and the users who
//!     should have it now (read access ∩ export gate ∩ scope ∩ event window). "Changed"
//!     includes the records that *show* a changed entity ([`touched_records`]): an event
//!     lists its attendees' names (users and contacts) and is selected through its linked
//!     contacts and organizations; a contact shows its organization's name;
//!   - permissions: [`crate::security::changes::affected_users`] between the two models;
//!   - the users whose own entity changed (deactivation, role/profile/team moves, account
//!     or name changes), and the users with a `team` scope whose team-mates or
//!     subordinates changed (a `team` scope selects by them even where reading does not
//!     depend on them, e.g. for admins);
//!   - org settings (domains, the reader gate): everyone.
//!
//!   Without the model as it was before (or when the caller knows its "before" already
//!   included some of the changes), a security-model change affects everyone
//!   ([`Reason::MirrorUnknown`]): sound, never silent.
//! - [`by_scope`]: the stored fingerprint of the scope a user was last synced under differs
//!   from the effective one (an admin's `scope set`, a config change, a role move).
//! - [`by_pending`]: unfinished work — `pending_create`/`pending_link` rows, queued
//!   revocations, a last pass that failed or left items failing.
//!
//! The result is sound (every user whose desired set, synced forms or pending state may have
//! changed is included) and precise in the usual cases: a contact edited in the CRM names the
//! users who hold it and those whose scope selects it, not everyone who may read it.

use crate::crm::{Change, EntityKind, OrgModel};
use crate::model::{Attendee, CrmId, ObjectKind, ParentLink, RecordRef, RoleId, UserId};
use crate::scope::{desired_set, sync_verdict, EffectiveScope, SelectionMode};
use crate::security::ByUser;
use crate::security::SignedBefore;
use crate::security::{affected_users, ChangeCause};
use crate::security::{Access, Operation};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Above this many changed records of one kind, whether a user should have one of them is
/// decided from the user's whole desired set instead of record by record.
const PER_RECORD_LIMIT: usize = 32;

/// Why a user needs a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum Reason {
    /// A record of this kind that the user should have now (in their desired set) changed,
    /// or shows an entity that changed.
    RecordChanged(ObjectKind),
    /// The user holds a link to a record of this kind that changed or was deleted.
    LinkedRecordChanged(ObjectKind),
    /// What the user may read may have changed (security model change).
    Permission(ChangeCause),
    /// The user's own entity changed (activation, role, profile, account, name…).
    OwnEntity,
    /// The user has a `team` scope and their team-mates or subordinates changed.
    TeamScope,
    /// The org settings changed (Google domains, the reader gate).
    OrgSettings,
    /// A security-model change whose "before" is unknown: everyone is checked.
    MirrorUnknown,
    /// The effective scope differs from the one the user was last synced under.
    ScopeChanged,
    /// `pending_create` / `pending_link` rows to resolve.
    PendingLink,
    /// A queued revocation (offboarding) to drain.
    Revocation,
    /// The last pass failed or left items failing.
    LastPassFailed,
    /// An earlier cycle (or run) found the user affected and did not finish their pass.
    Unfinished,
    /// The worker started without knowing what changed while it was away.
    Startup,
    /// The periodic full reconciliation is due.
    Reconcile,
    /// The periodic phone poll is due (incremental listings: phone edits).
    PhonePoll,
}

impl Reason {
    /// A short label (metrics, logs).
    pub fn label(self) -> &'static str {
        match self {
            Reason::RecordChanged(_) => "record_changed",
            Reason::LinkedRecordChanged(_) => "linked_record_changed",
            Reason::Permission(_) => "permission",
            Reason::OwnEntity => "own_entity",
            Reason::TeamScope => "team_scope",
            Reason::OrgSettings => "org_settings",
            Reason::MirrorUnknown => "mirror_unknown",
            Reason::ScopeChanged => "scope_changed",
            Reason::PendingLink => "pending_link",
            Reason::Revocation => "revocation",
            Reason::LastPassFailed => "last_pass_failed",
            Reason::Unfinished => "unfinished",
            Reason::Startup => "startup",
            Reason::Reconcile => "reconcile",
            Reason::PhonePoll => "phone_poll",
        }
    }

    /// Whether this reason comes from a change (CRM, permissions, scope, pending work), as
    /// opposed to the schedule (startup, reconciliation, phone poll).
    pub fn is_change(self) -> bool {
        !matches!(
            self,
            Reason::Startup | Reason::Reconcile | Reason::PhonePoll
        )
    }
}

/// The affected users, each with why.
pub type Affected = ByUser<Reason>;

impl ByUser<Reason> {
    /// How many users have each reason (by [`Reason::label`]).
    pub fn count_by_reason(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for reasons in self.users.values() {
            let labels: BTreeSet<&'static str> = reasons.iter().map(|r| r.label()).collect();
            for label in labels {
                *out.entry(label).or_default() += 1;
            }
        }
        out
    }
}

/// Every user who may be synced (has a Google account) in `model`, with `reason`.
pub fn everyone(model: &OrgModel, reason: Reason) -> Affected {
    let mut out = Affected::default();
    for user in model.users.values() {
        if user.google_account.is_some() {
            out.add(&user.id, reason);
        }
    }
    out
}

/// The entities that changed between two cursors of the CRM's change feed (new versions
/// and tombstones alike).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorDelta {
    pub entities: BTreeSet<(EntityKind, String)>,
    /// The caller's "before" model already included some of these security-model changes
    /// (another process refreshed the mirror in between), so the permission diff cannot be
    /// trusted: security-model changes then affect everyone.
    pub before_incomplete: bool,
}

impl MirrorDelta {
    /// The entities named by a run of the change feed.
    pub fn from_changes<'c>(changes: impl IntoIterator<Item = &'c Change>) -> Self {
        let mut delta = Self::default();
        for c in changes {
            delta.insert(c.kind, &c.id);
        }
        delta
    }

    /// The entities that differ between two models (added, changed or removed), compared
    /// whole: for callers that hold both models but not the feed between them.
    pub fn between(before: &OrgModel, after: &OrgModel) -> Self {
        let index = |m: &OrgModel| -> BTreeMap<(EntityKind, String), String> {
            m.entities()
                .into_iter()
                .map(|e| ((e.kind(), e.id()), e.to_json()))
                .collect()
        };
        let (old, new) = (index(before), index(after));
        let mut delta = Self::default();
        for (key, body) in &old {
            if new.get(key) != Some(body) {
                delta.entities.insert(key.clone());
            }
        }
        for key in new.keys() {
            if !old.contains_key(key) {
                delta.entities.insert(key.clone());
            }
        }
        delta
    }

    pub fn insert(&mut self, kind: EntityKind, id: &str) {
        self.entities.insert((kind, id.to_owned()));
    }

    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether an entity of the security model (users, roles, profiles, teams, rules,
    /// org-wide sharing, reader lists) or the org settings changed: [`by_mirror`] then needs
    /// the model as it was before.
    pub fn security_model_changed(&self) -> bool {
        self.entities
            .iter()
            .any(|(k, _)| k.is_security_model() || *k == EntityKind::Org)
    }

    fn ids(&self, kind: EntityKind) -> impl Iterator<Item = &str> {
        self.entities
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, id)| id.as_str())
    }

    fn has(&self, kind: EntityKind) -> bool {
        self.ids(kind).next().is_some()
    }
}

/// The contacts and events whose synced form or selection may differ after `delta`: the
/// changed ones, events whose attendees (users, contacts) or linked parents (contacts,
/// organizations) changed, contacts whose organization changed, and records whose reader
/// list changed. Looked up in `after` (a deleted record is named by the delta itself).
/// With `before`, a changed user counts only if what attendee lines show of them (name,
/// e-mail) changed; without it, every changed user does.
pub fn touched_records(
    before: Option<&OrgModel>,
    after: &OrgModel,
    delta: &MirrorDelta,
) -> BTreeSet<RecordRef> {
    let mut out = BTreeSet::new();
    let crm_ids = |kind: EntityKind| -> BTreeSet<CrmId> {
        delta
            .ids(kind)
            .filter_map(|id| CrmId::new(id).ok())
            .collect()
    };
    let contacts = crm_ids(EntityKind::Contact);
    let events = crm_ids(EntityKind::Event);
    let mut organizations = crm_ids(EntityKind::Organization);
    let shown =
        |m: &OrgModel, u: &UserId| m.users.get(u).map(|u| (u.name.clone(), u.email.clone()));
    let users: BTreeSet<UserId> = delta
        .ids(EntityKind::User)
        .filter_map(|id| UserId::new(id).ok())
        .filter(|u| before.is_none_or(|b| shown(b, u) != shown(after, u)))
        .collect();
    let mut contacts_shown = contacts.clone();
    for id in delta.ids(EntityKind::RecordReaders) {
        let Ok(record) = id.parse::<RecordRef>() else {
            continue;
        };
        match record.kind {
            ObjectKind::Organization => {
                organizations.insert(record.id);
            }
            ObjectKind::Contact => {
                contacts_shown.insert(record.id.clone());
                out.insert(record);
            }
            ObjectKind::Event => {
                out.insert(record);
            }
        }
    }
    out.extend(
        contacts
            .iter()
            .map(|id| RecordRef::new(ObjectKind::Contact, id.clone())),
    );
    out.extend(
        events
            .iter()
            .map(|id| RecordRef::new(ObjectKind::Event, id.clone())),
    );
    if !organizations.is_empty() {
        for c in after.contacts.values() {
            if c.organization
                .as_ref()
                .is_some_and(|o| organizations.contains(o))
            {
                out.insert(RecordRef::new(ObjectKind::Contact, c.id.clone()));
            }
        }
    }
    if !(contacts_shown.is_empty() && organizations.is_empty() && users.is_empty()) {
        for e in after.events.values() {
            let attends = e.attendees.iter().any(|a| match a {
                Attendee::User(u) => users.contains(u),
                Attendee::Contact(c) => contacts_shown.contains(c),
            });
            let linked = e.links.iter().any(|l| match l {
                ParentLink::Contact(c) => contacts_shown.contains(c),
                ParentLink::Organization(o) => organizations.contains(o),
            });
            if attends || linked {
                out.insert(RecordRef::new(ObjectKind::Event, e.id.clone()));
            }
        }
    }
    out
}

/// The mirror before an update, as [`by_mirror`] compares it with the one after.
#[derive(Clone, Copy)]
pub enum Before<'x, 'b> {
    /// Its access index.
    Index(&'x Access<'b>),
    /// Its users' signatures and its model, when it holds the same records as the one
    /// after (see [`crate::security::records_shared`]): its index was dropped
    /// before the next one was built.
    Signed(&'x SignedBefore, &'x OrgModel),
}

impl<'x> Before<'x, '_> {
    pub fn model(&self) -> &'x OrgModel {
        match *self {
            Self::Index(access) => access.model(),
            Self::Signed(_, model) => model,
        }
    }

    fn affected_users(&self, after: &Access<'_>) -> crate::security::AffectedUsers {
        match self {
            Self::Index(before) => affected_users(before, after),
            Self::Signed(signed, _) => signed.affected_users(after),
        }
    }
}

/// The mirror update [`by_mirror`] looks at.
pub struct MirrorInputs<'x, 'b, 'a> {
    /// The mirror before the update; needed when [`MirrorDelta::security_model_changed`]
    /// (without it such a change affects everyone).
    pub before: Option<Before<'x, 'b>>,
    /// The mirror after the update.
    pub after: &'x Access<'a>,
    pub delta: &'x MirrorDelta,
    /// [`touched_records`] of `before`, `after` and `delta`.
    pub touched: &'x BTreeSet<RecordRef>,
    /// Who holds a link (any state) to each touched record.
    pub holders: &'x BTreeMap<RecordRef, BTreeSet<UserId>>,
    /// Each user's effective scope under `after`; a user without one (unresolvable scope) is
    /// judged by read access alone.
    pub scopes: &'x BTreeMap<UserId, EffectiveScope>,
    /// "Now" for the event window.
    pub now: DateTime<Utc>,
}

/// The users a mirror update affects (see the module docs).
pub fn by_mirror(inputs: &MirrorInputs<'_, '_, '_>) -> Affected {
    let delta = inputs.delta;
    let after = inputs.after.model();
    let mut out = Affected::default();
    if delta.is_empty() {
        return out;
    }
    if delta.security_model_changed() {
        match inputs.before.filter(|_| !delta.before_incomplete) {
            Some(before) => {
                for (user, causes) in before.affected_users(inputs.after).users {
                    for cause in causes {
                        out.add(&user, Reason::Permission(cause));
                    }
                }
                team_scopes(before.model(), after, inputs.scopes, delta, &mut out);
            }
            None => {
                out.merge(everyone(after, Reason::MirrorUnknown));
                if let Some(before) = inputs.before {
                    out.merge(everyone(before.model(), Reason::MirrorUnknown));
                }
            }
        }
        if delta.has(EntityKind::Org) {
            out.merge(everyone(after, Reason::OrgSettings));
        }
        let known = |u: &UserId| {
            after.users.contains_key(u)
                || inputs
                    .before
                    .is_some_and(|b| b.model().users.contains_key(u))
        };
        for id in delta.ids(EntityKind::User) {
            if let Ok(user) = UserId::new(id) {
                if known(&user) {
                    out.add(&user, Reason::OwnEntity);
                }
            }
        }
    }
    for record in inputs.touched {
        if let Some(users) = inputs.holders.get(record) {
            for user in users {
                out.add(user, Reason::LinkedRecordChanged(record.kind));
            }
        }
    }
    should_have_now(inputs, &mut out, PER_RECORD_LIMIT);
    out
}

fn exists(model: &OrgModel, record: &RecordRef) -> bool {
    match record.kind {
        ObjectKind::Contact => model.contacts.contains_key(&record.id),
        ObjectKind::Event => model.events.contains_key(&record.id),
        ObjectKind::Organization => false,
    }
}

/// Whether [`by_mirror`] decides who should have `touched` record by record (cheap) rather
/// than from every user's whole desired set (as costly as planning everyone).
pub fn checked_one_by_one(touched: &BTreeSet<RecordRef>) -> bool {
    [ObjectKind::Contact, ObjectKind::Event]
        .iter()
        .all(|k| touched.iter().filter(|r| r.kind == *k).count() <= PER_RECORD_LIMIT)
}

/// Adds the users who should have one of the touched records now: record by record when
/// there are at most `per_record_limit` of a kind, else from each user's desired set.
fn should_have_now(inputs: &MirrorInputs<'_, '_, '_>, out: &mut Affected, per_record_limit: usize) {
    let access = inputs.after;
    for kind in [ObjectKind::Contact, ObjectKind::Event] {
        let records: Vec<&RecordRef> = inputs
            .touched
            .iter()
            .filter(|r| r.kind == kind)
            .filter(|r| exists(access.model(), r))
            .collect();
        if records.is_empty() {
            continue;
        }
        for user in access.model().users.values() {
            if !user.active || user.google_account.is_none() {
                continue;
            }
            let scope = inputs.scopes.get(&user.id);
            let wants = if records.len() <= per_record_limit {
                records.iter().any(|r| {
                    access.may(&user.id, r, Operation::Read).unwrap_or(false)
                        && scope.is_none_or(|s| {
                            sync_verdict(access, &user.id, s, r, inputs.now)
                                .map_or(true, |v| v.synced)
                        })
                })
            } else {
                let set = match scope {
                    Some(s) => desired_set(access, &user.id, s, kind, inputs.now),
                    None => access.readable(&user.id, kind),
                };
                match set {
                    Ok(set) => records.iter().any(|r| set.contains(&r.id)),
                    Err(_) => true,
                }
            };
            if wants {
                out.add(&user.id, Reason::RecordChanged(kind));
            }
        }
    }
}

/// Users with a `team` scope whose team-mates or subordinates differ between the models.
fn team_scopes(
    before: &OrgModel,
    after: &OrgModel,
    scopes: &BTreeMap<UserId, EffectiveScope>,
    delta: &MirrorDelta,
    out: &mut Affected,
) {
    if !(delta.has(EntityKind::Team) || delta.has(EntityKind::Role) || delta.has(EntityKind::User))
    {
        return;
    }
    let team_users: Vec<&UserId> = scopes
        .iter()
        .filter(|(_, s)| {
            s.contact.mode == SelectionMode::Team || s.event.mode == SelectionMode::Team
        })
        .map(|(u, _)| u)
        .collect();
    if team_users.is_empty() {
        return;
    }
    let (old, new) = (TeamView::of(before), TeamView::of(after));
    for user in team_users {
        if old.reach(before, user) != new.reach(after, user) {
            out.add(user, Reason::TeamScope);
        }
    }
}

/// Who a `team` scope reaches through people: team-mates and users in roles below.
struct TeamView<'m> {
    /// Users strictly below each role.
    below: BTreeMap<&'m RoleId, BTreeSet<&'m UserId>>,
    /// Teams of each user.
    teams: BTreeMap<&'m UserId, Vec<&'m crate::model::Team>>,
}

impl<'m> TeamView<'m> {
    fn of(model: &'m OrgModel) -> Self {
        let mut below: BTreeMap<&RoleId, BTreeSet<&UserId>> = BTreeMap::new();
        for user in model.users.values() {
            let mut role = user.role.as_ref().and_then(|r| model.roles.get(r));
            // Bounded: a role tree is at most as deep as it has roles (cycles are refused
            // on load, and the bound keeps a corrupt mirror from looping).
            for _ in 0..model.roles.len() {
                let Some(parent) = role.and_then(|r| r.parent.as_ref()) else {
                    break;
                };
                below.entry(parent).or_default().insert(&user.id);
                role = model.roles.get(parent);
            }
        }
        let mut teams: BTreeMap<&UserId, Vec<&crate::model::Team>> = BTreeMap::new();
        for team in model.teams.values() {
            for m in &team.members {
                teams.entry(m).or_default().push(team);
            }
        }
        Self { below, teams }
    }

    fn reach(&self, model: &'m OrgModel, user: &UserId) -> BTreeSet<&'m UserId> {
        let mut out = BTreeSet::new();
        if let Some(role) = model.users.get(user).and_then(|u| u.role.as_ref()) {
            if let Some(users) = self.below.get(role) {
                out.extend(users.iter().copied());
            }
        }
        for team in self.teams.get(user).into_iter().flatten() {
            out.extend(team.members.iter());
        }
        out
    }
}

/// Users whose stored scope fingerprint (`None`: never recorded) differs from their
/// effective one. Users without a stored row were never synced and are not named here.
pub fn by_scope(
    stored: &BTreeMap<UserId, Option<String>>,
    effective: &BTreeMap<UserId, String>,
) -> Affected {
    let mut out = Affected::default();
    for (user, fingerprint) in effective {
        if let Some(recorded) = stored.get(user) {
            if recorded.as_deref() != Some(fingerprint.as_str()) {
                out.add(user, Reason::ScopeChanged);
            }
        }
    }
    out
}

/// Unfinished work in the state DB (`StateDb::pending_work`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingWork {
    /// Users with `pending_create` or `pending_link` rows.
    pub pending_links: BTreeSet<UserId>,
    /// Users with a queued (not paused) revocation.
    pub revocations: BTreeSet<UserId>,
    /// Users whose last pass failed or left items failing.
    pub failing: BTreeSet<UserId>,
}

/// The users with unfinished work.
pub fn by_pending(pending: &PendingWork) -> Affected {
    let mut out = Affected::default();
    for (users, reason) in [
        (&pending.pending_links, Reason::PendingLink),
        (&pending.revocations, Reason::Revocation),
        (&pending.failing, Reason::LastPassFailed),
    ] {
        for user in users {
            out.add(user, reason);
        }
    }
    out
}

#[cfg(test)]
mod tests;
