//! [`Access`]: the mirrored model indexed once for fast decisions and readable sets.
//!
//! Every entity gets a dense index (`u32`); the role tree becomes an Euler tour so "role A is
//! strictly below role B" is two integer comparisons; records are listed per owner, per
//! owner-or-assignee, per visibility team / user and per attendee. Two kinds of record sets
//! are precomputed as bit sets, because every readable set is a union of them:
//! per role, the records owned by or assigned to users strictly below it; per sharing rule,
//! the records owned by users in its source.

use super::bits::Bits;
use crate::crm::OrgModel;
use crate::model::{
    Attendee, Contact, CrmId, Event, ObjectKind, ObjectPermissions, Organization, Owned,
    ParentLink, Profile, RecordRef, RoleId, RuleParty, ScopeLevel, SharingRule, TeamId, User,
    UserId, Visibility,
};
use crate::scope::window::EventTiming;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

pub(crate) type Ix = u32;

/// A small, fast, non-cryptographic hasher (Fx-style rotate-multiply) for the id maps:
/// ids come from the CRM, not from an adversary, and SipHash dominates index build time.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // Fold the high bits (where the differing bytes of similar ids end up after the
        // multiply) into the low bits the table indexes by.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
}

/// A hash map keyed by ids, with [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

pub(crate) fn kind_slot(kind: ObjectKind) -> usize {
    match kind {
        ObjectKind::Contact => 0,
        ObjectKind::Event => 1,
        ObjectKind::Organization => 2,
    }
}

fn ix(i: usize) -> Ix {
    u32::try_from(i).unwrap_or(u32::MAX)
}

pub(crate) struct UserEntry<'m> {
    pub user: &'m User,
    /// The user's profile, if it names one that exists.
    pub profile: Option<&'m Profile>,
    /// Closed rights per kind; `None` when the user has no (known) profile.
    pub perms: [Option<ObjectPermissions>; 3],
    pub role: Option<Ix>,
    /// Teams the user is a member of, ascending.
    pub teams: Vec<Ix>,
    /// Per kind: the sharing rules whose target holds the user.
    pub rules_as_target: [Vec<Ix>; 3],
}

pub(crate) struct RoleEntry<'m> {
    pub role: &'m RoleId,
    pub parent: Option<Ix>,
    /// Euler tour: the role's subtree is the roles with `tin` in `tin..tout`.
    pub tin: u32,
    pub tout: u32,
    pub users: Vec<Ix>,
}

pub(crate) struct TeamEntry<'m> {
    pub id: &'m TeamId,
    /// Known members, ascending.
    pub members: Vec<Ix>,
}

/// A rule party resolved to indexes; `Unknown` (a dangling id) matches nobody.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Party {
    Role(Ix),
    Subtree(Ix),
    Team(Ix),
    Unknown,
}

pub(crate) struct RuleEntry<'m> {
    pub rule: &'m SharingRule,
    pub source: Party,
    pub target: Party,
}

#[derive(Default, Clone, Copy)]
pub(crate) enum Vis {
    #[default]
    Unset,
    Everyone,
    OwnerOnly,
    Team(Option<Ix>),
    /// The users named are [`RecordEntry::visible_to`].
    Users,
}

/// One record as the index holds it: 24 bytes, with its lists (assignees, users named by
/// its visibility, attendees, parents, readers) behind one box that only records with any
/// of them have — most have none, and a large org has hundreds of thousands of records.
#[derive(Default)]
pub(crate) struct RecordEntry {
    /// `None` when the owner is not a known user.
    pub owner: Option<Ix>,
    pub visibility: Vis,
    lists: Option<Box<RecordLists>>,
}

#[derive(Default)]
struct RecordLists {
    assignees: Box<[Ix]>,
    visible_to: Box<[Ix]>,
    attendees: Box<[Ix]>,
    parents: Box<[(ObjectKind, Option<Ix>)]>,
    readers: Option<Box<[Ix]>>,
}

impl RecordEntry {
    /// Assigned users, ascending.
    pub fn assignees(&self) -> &[Ix] {
        self.lists.as_deref().map_or(&[], |l| &l.assignees)
    }

    /// Visibility `users`: the users named, ascending.
    pub fn visible_to(&self) -> &[Ix] {
        self.lists.as_deref().map_or(&[], |l| &l.visible_to)
    }

    /// Events: user attendees, ascending.
    pub fn attendees(&self) -> &[Ix] {
        self.lists.as_deref().map_or(&[], |l| &l.attendees)
    }

    /// Events: linked parents (kind, index if the parent exists).
    pub fn parents(&self) -> &[(ObjectKind, Option<Ix>)] {
        self.lists.as_deref().map_or(&[], |l| &l.parents)
    }

    /// Delegated mode: the users the CRM showed the record to, ascending (`None`: the CRM
    /// has shown it to nobody yet).
    pub fn readers(&self) -> Option<&[Ix]> {
        self.lists.as_deref().and_then(|l| l.readers.as_deref())
    }

    /// Changes the lists with `change`; the box goes when they are all empty again.
    fn change_lists(&mut self, change: impl FnOnce(&mut RecordLists)) {
        let lists = self.lists.get_or_insert_default();
        change(lists);
        let empty = lists.assignees.is_empty()
            && lists.visible_to.is_empty()
            && lists.attendees.is_empty()
            && lists.parents.is_empty()
            && lists.readers.is_none();
        if empty {
            self.lists = None;
        }
    }
}

/// The hasher of [`KindIndex`]'s id table.
fn id_hash(id: &CrmId) -> u64 {
    use std::hash::BuildHasher;
    BuildHasherDefault::<IdHasher>::default().hash_one(id)
}

fn id_hash_str(id: &str) -> u64 {
    use std::hash::BuildHasher;
    BuildHasherDefault::<IdHasher>::default().hash_one(id)
}

pub(crate) struct KindIndex {
    pub kind: ObjectKind,
    /// Record ids by index. A record deleted since the build keeps its slot, not live.
    pub ids: Vec<CrmId>,
    /// Indexes of the live records, found by their id (the ids are held once, in `ids`).
    by_id: hashbrown::HashTable<Ix>,
    /// The slots holding a record (all but those deleted since the build).
    pub live: Bits,
    /// Whether indexes ascend with ids: no record was added since the build with an id
    /// below the last one.
    pub in_order: bool,
    pub records: Vec<RecordEntry>,
    /// Per user: records the user owns or is assigned to, ascending.
    pub by_party: Vec<Vec<Ix>>,
    /// Per user: records the user owns, ascending.
    pub by_owner: Vec<Vec<Ix>>,
    pub visible_everyone: Bits,
    /// Per team: records with visibility `team` naming it.
    pub visible_team: Vec<Vec<Ix>>,
    /// Per user: records with visibility `users` naming them.
    pub visible_users: Vec<Vec<Ix>>,
    /// Per user: events the user attends (events only).
    pub attended: Vec<Vec<Ix>>,
    /// Per record (contacts, organizations): events linking to it.
    pub linked_events: Vec<Vec<Ix>>,
    /// Per role: records owned by or assigned to users strictly below it (`None`: a role
    /// with no role below it).
    pub below_role: Vec<Option<Bits>>,
    /// Per rule of this kind: records owned by users in its source.
    pub rule_source: HashMap<Ix, Bits>,
    /// Events: when each happens (for the sync window).
    pub timings: Vec<EventTiming>,
    /// Delegated mode, per user: the records the CRM showed to that user's key, ascending.
    pub by_reader: Vec<Vec<Ix>>,
    /// Events: links naming a parent the model does not hold, by that parent (an update
    /// that adds the parent links them).
    dangling: HashMap<(ObjectKind, CrmId), Vec<Ix>>,
}

/// The record half of the permission index: every record of every kind placed in the
/// lists and sets [`Access`] answers from. It depends on the security model only through
/// the dense indexes of users, roles, teams and rules, so it can be kept while only
/// records change and patched record by record ([`RecordIndex::patch`]) instead of being
/// rebuilt; any change to the security model needs a new one.
pub struct RecordIndex {
    kinds: [KindIndex; 3],
    shape: Shape,
    /// Records deleted or added since the build (a rebuild is due when they grow large).
    churn: usize,
}

/// What a [`RecordIndex`] assumes of the security model it was built over: a fingerprint
/// of everything its lists and sets are made from (the users in index order with their
/// roles, the role tree, the teams with their members, the rules' kinds and sources, the
/// reader gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape(u64);

/// The permission index over one [`OrgModel`]. Build it once per mirror state; it borrows
/// the model.
pub struct Access<'m> {
    pub(crate) model: &'m OrgModel,
    pub(crate) users: Vec<UserEntry<'m>>,
    pub(crate) user_ix: IdMap<&'m UserId, Ix>,
    pub(crate) roles: Vec<RoleEntry<'m>>,
    pub(crate) teams: Vec<TeamEntry<'m>>,
    pub(crate) team_ix: IdMap<&'m TeamId, Ix>,
    pub(crate) rules: Vec<RuleEntry<'m>>,
    records: Box<RecordIndex>,
    /// The record half was patched from a kept one (not built): see [`Access::patched`].
    patched: bool,
    /// Events overlapping recently asked windows (`[start, end)` in unix seconds): the
    /// window test is the same for every user, so it is done once per window.
    pub(crate) window_cache: Mutex<Vec<((i64, i64), Bits)>>,
    /// Delegated mode: records are readable only by the users the CRM showed them to.
    pub(crate) reader_gate: bool,
}

impl<'m> Access<'m> {
    /// Indexes `model`. Linear in its size, plus one bit set per non-leaf role and per rule.
    pub fn build(model: &'m OrgModel) -> Self {
        let mut access = Self::security(model);
        access.records = Box::new(RecordIndex::build(&access));
        access
    }

    /// Indexes `model` with the record half of an earlier index of it, `records`, patched
    /// with `changed`: the contacts, events and organizations added, changed or deleted
    /// since. Only the security model is indexed anew, and the cost of the records is that
    /// of the changes. When the security model is not the one `records` was built over (a
    /// user, role, team, rule or reader gate changed), or `records` is worn by churn, the
    /// records are indexed afresh instead.
    pub fn patched<'r>(
        model: &'m OrgModel,
        mut records: RecordIndex,
        changed: impl IntoIterator<Item = &'r RecordRef>,
    ) -> Self {
        let mut access = Self::security(model);
        if records.fits(&access) {
            records.patch(&access, changed);
            access.patched = true;
        } else {
            records = RecordIndex::build(&access);
        }
        access.records = Box::new(records);
        access
    }

    /// Whether [`Access::patched`] patched the kept records (`false`: it built them afresh,
    /// as [`Access::build`] does).
    pub fn was_patched(&self) -> bool {
        self.patched
    }

    /// The record half, to keep for [`Access::patched`].
    pub fn into_records(self) -> RecordIndex {
        *self.records
    }

    /// The security model indexed, no records yet.
    fn security(model: &'m OrgModel) -> Self {
        let user_ix: IdMap<&UserId, Ix> = model
            .users
            .keys()
            .enumerate()
            .map(|(i, id)| (id, ix(i)))
            .collect();
        let role_ix: IdMap<&RoleId, Ix> = model
            .roles
            .keys()
            .enumerate()
            .map(|(i, id)| (id, ix(i)))
            .collect();
        let team_ix: IdMap<&TeamId, Ix> = model
            .teams
            .keys()
            .enumerate()
            .map(|(i, id)| (id, ix(i)))
            .collect();

        let mut roles = build_roles(model, &role_ix);
        let mut teams: Vec<TeamEntry> = model
            .teams
            .values()
            .map(|t| {
                let mut members: Vec<Ix> = t
                    .members
                    .iter()
                    .filter_map(|m| user_ix.get(m).copied())
                    .collect();
                members.sort_unstable();
                members.dedup();
                TeamEntry { id: &t.id, members }
            })
            .collect();
        teams.shrink_to_fit();

        let mut users: Vec<UserEntry> = model
            .users
            .values()
            .map(|u| {
                let profile = u.profile.as_ref().and_then(|p| model.profiles.get(p));
                let perms = ObjectKind::ALL.map(|k| profile.map(|p| p.object(k)));
                UserEntry {
                    user: u,
                    profile,
                    perms,
                    role: u.role.as_ref().and_then(|r| role_ix.get(r).copied()),
                    teams: Vec::new(),
                    rules_as_target: [Vec::new(), Vec::new(), Vec::new()],
                }
            })
            .collect();
        for (t, team) in teams.iter().enumerate() {
            for &m in &team.members {
                users[m as usize].teams.push(ix(t));
            }
        }
        for (u, user) in users.iter().enumerate() {
            if let Some(r) = user.role {
                roles[r as usize].users.push(ix(u));
            }
        }

        let party = |p: &RuleParty| match p {
            RuleParty::Role(r) => role_ix.get(r).map_or(Party::Unknown, |&i| Party::Role(i)),
            RuleParty::RoleAndSubordinates(r) => role_ix
                .get(r)
                .map_or(Party::Unknown, |&i| Party::Subtree(i)),
            RuleParty::Team(t) => team_ix.get(t).map_or(Party::Unknown, |&i| Party::Team(i)),
        };
        let rules: Vec<RuleEntry> = model
            .sharing_rules
            .values()
            .map(|rule| RuleEntry {
                rule,
                source: party(&rule.source),
                target: party(&rule.target),
            })
            .collect();

        let mut access = Access {
            model,
            users,
            user_ix,
            roles,
            teams,
            team_ix,
            rules,
            records: Box::new(RecordIndex::empty()),
            patched: false,
            window_cache: Mutex::new(Vec::new()),
            reader_gate: model.settings.reader_gate,
        };
        for (r, rule) in access.rules.iter().enumerate() {
            let slot = kind_slot(rule.rule.object);
            for u in access.party_users(rule.target) {
                access.users[u as usize].rules_as_target[slot].push(ix(r));
            }
        }
        for user in &mut access.users {
            for list in &mut user.rules_as_target {
                list.sort_unstable();
                list.dedup();
            }
        }
        access
    }

    fn shape(&self) -> Shape {
        let mut h = IdHasher::default();
        let mut add = |word: u64| h.write_u64(word);
        add(u64::from(self.reader_gate));
        add(self.users.len() as u64);
        for user in &self.users {
            add(id_hash_str(user.user.id.as_str()));
            add(user.role.map_or(u64::MAX, u64::from));
        }
        add(self.roles.len() as u64);
        for role in &self.roles {
            add(role.parent.map_or(u64::MAX, u64::from));
        }
        add(self.teams.len() as u64);
        for team in &self.teams {
            add(id_hash_str(team.id.as_str()));
            add(team.members.len() as u64);
            for &m in &team.members {
                add(u64::from(m));
            }
        }
        add(self.rules.len() as u64);
        for rule in &self.rules {
            add(kind_slot(rule.rule.object) as u64);
            let (tag, at) = match rule.source {
                Party::Role(r) => (1, r),
                Party::Subtree(r) => (2, r),
                Party::Team(t) => (3, t),
                Party::Unknown => (4, 0),
            };
            add(tag);
            add(u64::from(at));
        }
        Shape(h.finish())
    }

    /// The model this index was built from.
    pub fn model(&self) -> &'m OrgModel {
        self.model
    }

    pub(crate) fn kind(&self, kind: ObjectKind) -> &KindIndex {
        &self.records.kinds[kind_slot(kind)]
    }

    pub(crate) fn user_index(&self, user: &UserId) -> Option<Ix> {
        self.user_ix.get(user).copied()
    }

    /// Users of a rule party, ascending.
    pub(crate) fn party_users(&self, party: Party) -> Vec<Ix> {
        let mut out = match party {
            Party::Role(r) => self.roles[r as usize].users.clone(),
            Party::Subtree(r) => {
                let root = &self.roles[r as usize];
                self.roles
                    .iter()
                    .filter(|x| x.tin >= root.tin && x.tin < root.tout)
                    .flat_map(|x| x.users.iter().copied())
                    .collect()
            }
            Party::Team(t) => self.teams[t as usize].members.clone(),
            Party::Unknown => Vec::new(),
        };
        out.sort_unstable();
        out
    }

    /// Whether user `u` belongs to `party`.
    pub(crate) fn in_party(&self, u: Ix, party: Party) -> bool {
        let user = &self.users[u as usize];
        match party {
            Party::Role(r) => user.role == Some(r),
            Party::Subtree(r) => user.role.is_some_and(|ur| self.role_within(ur, r)),
            Party::Team(t) => user.teams.binary_search(&t).is_ok(),
            Party::Unknown => false,
        }
    }

    /// Role `a` is `b` or in `b`'s subtree.
    pub(crate) fn role_within(&self, a: Ix, b: Ix) -> bool {
        let (a, b) = (&self.roles[a as usize], &self.roles[b as usize]);
        a.tin >= b.tin && a.tin < b.tout
    }

    /// Role `a` is strictly below role `b`.
    pub(crate) fn role_strictly_below(&self, a: Ix, b: Ix) -> bool {
        a != b && self.role_within(a, b)
    }

    /// Users `a` and `b` share a team.
    pub(crate) fn share_team(&self, a: Ix, b: Ix) -> bool {
        let (ta, tb) = (&self.users[a as usize].teams, &self.users[b as usize].teams);
        let (mut i, mut j) = (0, 0);
        while i < ta.len() && j < tb.len() {
            match ta[i].cmp(&tb[j]) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
            }
        }
        false
    }

    /// The role path from `from` up to `to` (inclusive), for explanations.
    pub(crate) fn role_path(&self, from: Ix, to: Ix) -> Vec<RoleId> {
        let mut path = vec![self.roles[from as usize].role.clone()];
        let mut cursor = self.roles[from as usize].parent;
        let mut guard = self.roles.len();
        while let Some(r) = cursor {
            path.push(self.roles[r as usize].role.clone());
            if r == to || guard == 0 {
                break;
            }
            guard -= 1;
            cursor = self.roles[r as usize].parent;
        }
        path
    }

    /// Delegated mode: whether the CRM showed record `rec` to user `u` (always true without
    /// the reader gate).
    pub(crate) fn reader_listed(&self, u: Ix, rec: &RecordEntry) -> bool {
        !self.reader_gate
            || rec
                .readers()
                .is_some_and(|list| list.binary_search(&u).is_ok())
    }

    /// Whether the operation scope `level` covers a record for user `u`.
    pub(crate) fn scope_covers(&self, u: Ix, rec: &RecordEntry, level: ScopeLevel) -> bool {
        match level {
            ScopeLevel::All => true,
            ScopeLevel::Team => rec.owner.is_some_and(|o| self.share_team(u, o)),
            ScopeLevel::Own => rec.owner == Some(u) || rec.assignees().contains(&u),
        }
    }
}

/// A record as the index reads it.
#[derive(Clone, Copy)]
enum Rec<'a> {
    Contact(&'a Contact),
    Event(&'a Event),
    Organization(&'a Organization),
}

impl<'a> Rec<'a> {
    fn of(model: &'a OrgModel, kind: ObjectKind, id: &CrmId) -> Option<Self> {
        match kind {
            ObjectKind::Contact => model.contacts.get(id).map(Rec::Contact),
            ObjectKind::Event => model.events.get(id).map(Rec::Event),
            ObjectKind::Organization => model.organizations.get(id).map(Rec::Organization),
        }
    }
}

/// Adds `r` to an ascending list (once).
fn insert_sorted(list: &mut Vec<Ix>, r: Ix) {
    if let Err(at) = list.binary_search(&r) {
        list.insert(at, r);
    }
}

/// Removes `r` from an ascending list.
fn remove_sorted(list: &mut Vec<Ix>, r: Ix) {
    if let Ok(at) = list.binary_search(&r) {
        list.remove(at);
    }
}

/// The roles strictly above `role`, nearest first (bounded: the tour cut every cycle).
fn ancestors<'a>(sec: &'a Access<'_>, role: Ix) -> impl Iterator<Item = Ix> + 'a {
    let mut cursor = sec.roles[role as usize].parent;
    let mut guard = sec.roles.len();
    std::iter::from_fn(move || {
        let r = cursor.filter(|_| guard > 0)?;
        guard -= 1;
        cursor = sec.roles[r as usize].parent;
        Some(r)
    })
}

impl RecordIndex {
    fn empty() -> Self {
        Self {
            kinds: ObjectKind::ALL.map(KindIndex::empty),
            shape: Shape(0),
            churn: 0,
        }
    }

    /// Every record of `sec`'s model, over its indexed security model.
    fn build(sec: &Access<'_>) -> Self {
        let model = sec.model;
        let mut index = Self {
            kinds: ObjectKind::ALL.map(|kind| KindIndex::sized(sec, kind)),
            shape: sec.shape(),
            churn: 0,
        };
        // Every id first (events resolve their parents through the other kinds), then
        // the records in id order, so every list is filled ascending.
        index.kinds[0].reserve(model.contacts.len());
        index.kinds[1].reserve(model.events.len());
        index.kinds[2].reserve(model.organizations.len());
        for id in model.contacts.keys() {
            index.kinds[0].push_id(id.clone());
        }
        for id in model.events.keys() {
            index.kinds[1].push_id(id.clone());
        }
        for id in model.organizations.keys() {
            index.kinds[2].push_id(id.clone());
        }
        for kind in &mut index.kinds {
            kind.size_bits();
        }
        for (r, c) in model.contacts.values().enumerate() {
            index.link(sec, ix(r), Rec::Contact(c));
        }
        for (r, o) in model.organizations.values().enumerate() {
            index.link(sec, ix(r), Rec::Organization(o));
        }
        for (r, e) in model.events.values().enumerate() {
            index.link(sec, ix(r), Rec::Event(e));
        }
        for (record, users) in model.readers.iter() {
            let slot = kind_slot(record.kind);
            if let Some(r) = index.kinds[slot].ix(&record.id) {
                index.kinds[slot].link_readers(sec, r, users);
            }
        }
        index
    }

    /// Takes record changes in: `changed` names records (contacts, events, organizations)
    /// that were added, changed or deleted in `sec`'s model since this index last matched
    /// it. `sec` must index the same security model this index was built over (changes to
    /// users, roles, profiles, teams, rules, reader lists or org settings need a new index:
    /// [`RecordIndex::fits`] tells).
    fn patch<'r>(&mut self, sec: &Access<'_>, changed: impl IntoIterator<Item = &'r RecordRef>) {
        let model = sec.model;
        for record in changed {
            let slot = kind_slot(record.kind);
            let id = &record.id;
            let old = self.kinds[slot].ix(id);
            let now = Rec::of(model, record.kind, id);
            match (old, now) {
                (Some(r), Some(rec)) => {
                    self.unlink(slot, r);
                    self.link(sec, r, rec);
                    self.relink_readers(sec, slot, r);
                }
                (Some(r), None) => {
                    self.unlink(slot, r);
                    self.kinds[slot].forget_id(id);
                    self.churn += 1;
                    // Events linking to it now link to nothing there.
                    if record.kind != ObjectKind::Event {
                        let linked =
                            std::mem::take(&mut self.kinds[slot].linked_events[r as usize]);
                        self.relink_events(sec, linked);
                    }
                }
                (None, Some(rec)) => {
                    let r = self.kinds[slot].push_id(id.clone());
                    self.kinds[slot].size_bits();
                    self.link(sec, r, rec);
                    self.relink_readers(sec, slot, r);
                    self.churn += 1;
                    // Events that named it before it existed link to it now.
                    if record.kind != ObjectKind::Event {
                        let waiting = self.kinds[1]
                            .dangling
                            .get(&(record.kind, id.clone()))
                            .cloned()
                            .unwrap_or_default();
                        self.relink_events(sec, waiting);
                    }
                }
                (None, None) => {}
            }
        }
    }

    /// Whether this index may be patched to match `sec`'s model: built over a security
    /// model of the same shape, and not worn by churn (deleted and added records above a
    /// quarter of the slots make a rebuild cheaper to use than the holes).
    fn fits(&self, sec: &Access<'_>) -> bool {
        let slots: usize = self.kinds.iter().map(|k| k.ids.len()).sum();
        self.shape == sec.shape() && self.churn * 4 <= slots.max(64)
    }

    fn relink_events(&mut self, sec: &Access<'_>, events: Vec<Ix>) {
        for e in events {
            let Some(id) = self.kinds[1].ids.get(e as usize).cloned() else {
                continue;
            };
            if !self.kinds[1].live.contains(e) {
                continue;
            }
            if let Some(rec) = Rec::of(sec.model, ObjectKind::Event, &id) {
                self.unlink(1, e);
                self.link(sec, e, rec);
                self.relink_readers(sec, 1, e);
            }
        }
    }

    fn relink_readers(&mut self, sec: &Access<'_>, slot: usize, r: Ix) {
        let index = &mut self.kinds[slot];
        let Some(id) = index.ids.get(r as usize) else {
            return;
        };
        let record = RecordRef::new(index.kind, id.clone());
        if let Some(users) = sec.model.readers.get(&record) {
            index.link_readers(sec, r, users);
        }
    }

    /// Places record `r` in every list and set of its kind.
    fn link(&mut self, sec: &Access<'_>, r: Ix, rec: Rec<'_>) {
        let [contacts, events, orgs] = &mut self.kinds;
        match rec {
            Rec::Event(event) => {
                let mut entry = events.link_owned(sec, r, event);
                events.link_event(sec, r, event, contacts, orgs, &mut entry);
                events.records[r as usize] = entry;
                events.live.insert(r);
            }
            Rec::Contact(c) => {
                contacts.records[r as usize] = contacts.link_owned(sec, r, c);
                contacts.live.insert(r);
            }
            Rec::Organization(o) => {
                orgs.records[r as usize] = orgs.link_owned(sec, r, o);
                orgs.live.insert(r);
            }
        }
    }

    /// Takes record `r` of kind `slot` out of every list and set (its slot stays, not
    /// live); what other records hold of it (events' links to it) is left to the caller.
    fn unlink(&mut self, slot: usize, r: Ix) {
        let [contacts, events, orgs] = &mut self.kinds;
        let index = match slot {
            0 => contacts,
            1 => events,
            _ => orgs,
        };
        let Some(entry) = index.unlink_owned(r) else {
            return;
        };
        if slot != 1 {
            return;
        }
        let [contacts, events, orgs] = &mut self.kinds;
        for &u in entry.attendees() {
            remove_sorted(&mut events.attended[u as usize], r);
        }
        for &(kind, p) in entry.parents() {
            if let Some(p) = p {
                let parent_index = if kind == ObjectKind::Contact {
                    &mut *contacts
                } else {
                    &mut *orgs
                };
                remove_sorted(&mut parent_index.linked_events[p as usize], r);
            }
        }
        if entry.parents().iter().any(|(_, p)| p.is_none()) {
            events.dangling.retain(|_, waiting| {
                remove_sorted(waiting, r);
                !waiting.is_empty()
            });
        }
    }
}

impl KindIndex {
    /// Places record `r` in the lists and sets every kind has; returns its entry.
    fn link_owned(&mut self, sec: &Access<'_>, r: Ix, owned: &dyn Owned) -> RecordEntry {
        let owner = sec.user_index(owned.owner());
        let mut assignees: Vec<Ix> = owned
            .assignees()
            .iter()
            .filter_map(|a| sec.user_index(a))
            .collect();
        assignees.sort_unstable();
        assignees.dedup();
        if let Some(o) = owner {
            insert_sorted(&mut self.by_owner[o as usize], r);
            insert_sorted(&mut self.by_party[o as usize], r);
        }
        for &a in &assignees {
            insert_sorted(&mut self.by_party[a as usize], r);
        }
        // Below a role: records of its strict subordinates (owner or assignee).
        for &u in owner.iter().chain(&assignees) {
            if let Some(role) = sec.users[u as usize].role {
                for above in ancestors(sec, role) {
                    if let Some(bits) = &mut self.below_role[above as usize] {
                        bits.insert(r);
                    }
                }
            }
        }
        if let Some(o) = owner {
            for (rule, bits) in &mut self.rule_source {
                if sec.in_party(o, sec.rules[*rule as usize].source) {
                    bits.insert(r);
                }
            }
        }
        let mut visible_to = Vec::new();
        let visibility = match owned.visibility() {
            None => Vis::Unset,
            Some(Visibility::Everyone) => {
                self.visible_everyone.insert(r);
                Vis::Everyone
            }
            Some(Visibility::OwnerOnly) => Vis::OwnerOnly,
            Some(Visibility::Team(t)) => {
                let t = sec.team_ix.get(t).copied();
                if let Some(t) = t {
                    insert_sorted(&mut self.visible_team[t as usize], r);
                }
                Vis::Team(t)
            }
            Some(Visibility::Users(list)) => {
                let mut list: Vec<Ix> = list.iter().filter_map(|u| sec.user_index(u)).collect();
                list.sort_unstable();
                list.dedup();
                for &u in &list {
                    insert_sorted(&mut self.visible_users[u as usize], r);
                }
                visible_to = list;
                Vis::Users
            }
        };
        let mut entry = RecordEntry {
            owner,
            visibility,
            lists: None,
        };
        if !assignees.is_empty() || !visible_to.is_empty() {
            entry.change_lists(|l| {
                l.assignees = assignees.into_boxed_slice();
                l.visible_to = visible_to.into_boxed_slice();
            });
        }
        entry
    }

    /// An event's own lists: attendees, links to its parents (or, for a parent the model
    /// lacks, a wait for it), its timing.
    fn link_event(
        &mut self,
        sec: &Access<'_>,
        r: Ix,
        event: &Event,
        contacts: &mut KindIndex,
        orgs: &mut KindIndex,
        entry: &mut RecordEntry,
    ) {
        let mut attendees: Vec<Ix> = event
            .attendees
            .iter()
            .filter_map(|a| match a {
                Attendee::User(u) => sec.user_index(u),
                Attendee::Contact(_) => None,
            })
            .collect();
        attendees.sort_unstable();
        attendees.dedup();
        for &u in &attendees {
            insert_sorted(&mut self.attended[u as usize], r);
        }
        let mut parents = Vec::with_capacity(event.links.len());
        for link in &event.links {
            let (kind, id, parent_index) = match link {
                ParentLink::Contact(c) => (ObjectKind::Contact, c, &mut *contacts),
                ParentLink::Organization(o) => (ObjectKind::Organization, o, &mut *orgs),
            };
            let p = parent_index.ix(id);
            match p {
                Some(p) => insert_sorted(&mut parent_index.linked_events[p as usize], r),
                None => insert_sorted(self.dangling.entry((kind, id.clone())).or_default(), r),
            }
            parents.push((kind, p));
        }
        let had = !entry.attendees().is_empty() || !entry.parents().is_empty();
        if had || !attendees.is_empty() || !parents.is_empty() {
            entry.change_lists(|l| {
                l.attendees = attendees.into_boxed_slice();
                l.parents = parents.into_boxed_slice();
            });
        }
        let timing = EventTiming::of(event);
        match self.timings.get_mut(r as usize) {
            Some(slot) => *slot = timing,
            None => self.timings.push(timing),
        }
    }

    /// Takes record `r` out of the lists and sets every kind has; returns its entry.
    fn unlink_owned(&mut self, r: Ix) -> Option<RecordEntry> {
        let entry = self.records.get_mut(r as usize).map(std::mem::take)?;
        self.live.remove(r);
        if let Some(o) = entry.owner {
            remove_sorted(&mut self.by_owner[o as usize], r);
            remove_sorted(&mut self.by_party[o as usize], r);
        }
        for &a in entry.assignees() {
            remove_sorted(&mut self.by_party[a as usize], r);
        }
        for bits in self.below_role.iter_mut().flatten() {
            bits.remove(r);
        }
        for bits in self.rule_source.values_mut() {
            bits.remove(r);
        }
        match &entry.visibility {
            Vis::Everyone => self.visible_everyone.remove(r),
            Vis::Team(Some(t)) => remove_sorted(&mut self.visible_team[*t as usize], r),
            Vis::Users => {
                for &u in entry.visible_to() {
                    remove_sorted(&mut self.visible_users[u as usize], r);
                }
            }
            Vis::Unset | Vis::OwnerOnly | Vis::Team(None) => {}
        }
        for &u in entry.readers().into_iter().flatten() {
            remove_sorted(&mut self.by_reader[u as usize], r);
        }
        Some(entry)
    }
    fn empty(kind: ObjectKind) -> Self {
        Self {
            kind,
            ids: Vec::new(),
            by_id: hashbrown::HashTable::new(),
            live: Bits::empty(0),
            in_order: true,
            records: Vec::new(),
            by_party: Vec::new(),
            by_owner: Vec::new(),
            visible_everyone: Bits::empty(0),
            visible_team: Vec::new(),
            visible_users: Vec::new(),
            attended: Vec::new(),
            linked_events: Vec::new(),
            below_role: Vec::new(),
            rule_source: HashMap::new(),
            timings: Vec::new(),
            by_reader: Vec::new(),
            dangling: HashMap::new(),
        }
    }

    /// An empty index with a list per user, team and role and a set per rule of `sec`.
    fn sized(sec: &Access<'_>, kind: ObjectKind) -> Self {
        let mut index = Self::empty(kind);
        let n_users = sec.users.len();
        index.by_party = vec![Vec::new(); n_users];
        index.by_owner = vec![Vec::new(); n_users];
        index.visible_team = vec![Vec::new(); sec.teams.len()];
        index.visible_users = vec![Vec::new(); n_users];
        index.by_reader = vec![Vec::new(); n_users];
        if kind == ObjectKind::Event {
            index.attended = vec![Vec::new(); n_users];
        }
        let mut has_children = vec![false; sec.roles.len()];
        for role in &sec.roles {
            if let Some(p) = role.parent {
                has_children[p as usize] = true;
            }
        }
        index.below_role = has_children
            .into_iter()
            .map(|yes| yes.then(|| Bits::empty(0)))
            .collect();
        let slot = kind_slot(kind);
        index.rule_source = (0..sec.rules.len())
            .filter(|&r| kind_slot(sec.rules[r].rule.object) == slot)
            .map(|r| (ix(r), Bits::empty(0)))
            .collect();
        index
    }

    /// The index of the live record `id`.
    pub(crate) fn ix(&self, id: &CrmId) -> Option<Ix> {
        let ids = &self.ids;
        self.by_id
            .find(id_hash(id), |&i| ids[i as usize] == *id)
            .copied()
    }

    /// A new slot for `id`, not live until linked (bit sets are sized by
    /// [`KindIndex::size_bits`]).
    fn push_id(&mut self, id: CrmId) -> Ix {
        let r = ix(self.ids.len());
        let ids = &self.ids;
        self.by_id
            .insert_unique(id_hash(&id), r, |&i| id_hash(&ids[i as usize]));
        if self.ids.last().is_some_and(|last| *last >= id) {
            self.in_order = false;
        }
        self.ids.push(id);
        self.records.push(RecordEntry::default());
        if self.kind != ObjectKind::Event {
            self.linked_events.push(Vec::new());
        }
        r
    }

    /// Room for `n` more slots, exactly (a build knows how many records there are).
    fn reserve(&mut self, n: usize) {
        self.ids.reserve_exact(n);
        self.records.reserve_exact(n);
        self.by_id.reserve(n, |&i| id_hash(&self.ids[i as usize]));
        if self.kind == ObjectKind::Event {
            self.timings.reserve_exact(n);
        } else {
            self.linked_events.reserve_exact(n);
        }
    }

    /// Forgets a deleted record's id (its slot stays, not live).
    fn forget_id(&mut self, id: &CrmId) {
        let ids = &self.ids;
        if let Ok(entry) = self
            .by_id
            .find_entry(id_hash(id), |&i| ids[i as usize] == *id)
        {
            entry.remove();
        }
    }

    /// Sizes every bit set to the slots.
    fn size_bits(&mut self) {
        let n = self.ids.len();
        self.live.grow(n);
        self.visible_everyone.grow(n);
        for bits in self.below_role.iter_mut().flatten() {
            bits.grow(n);
        }
        for bits in self.rule_source.values_mut() {
            bits.grow(n);
        }
    }

    fn link_readers(&mut self, sec: &Access<'_>, r: Ix, users: &[UserId]) {
        let mut list: Vec<Ix> = users.iter().filter_map(|u| sec.user_index(u)).collect();
        list.sort_unstable();
        list.dedup();
        let entry = &mut self.records[r as usize];
        for &u in entry.readers().into_iter().flatten() {
            remove_sorted(&mut self.by_reader[u as usize], r);
        }
        for &u in &list {
            insert_sorted(&mut self.by_reader[u as usize], r);
        }
        entry.change_lists(|l| l.readers = Some(list.into_boxed_slice()));
    }
}

/// The role tree as an Euler tour. Roles whose parent chain never reaches a root (a cycle
/// in a mirrored model) are toured as roots of their own, so every role has a position.
fn build_roles<'m>(model: &'m OrgModel, role_ix: &IdMap<&'m RoleId, Ix>) -> Vec<RoleEntry<'m>> {
    let mut roles: Vec<RoleEntry> = model
        .roles
        .values()
        .map(|r| RoleEntry {
            role: &r.id,
            parent: r.parent.as_ref().and_then(|p| role_ix.get(p).copied()),
            tin: 0,
            tout: 0,
            users: Vec::new(),
        })
        .collect();
    let n = roles.len();
    let mut children: Vec<Vec<Ix>> = vec![Vec::new(); n];
    for (r, role) in roles.iter().enumerate() {
        if let Some(p) = role.parent {
            children[p as usize].push(ix(r));
        }
    }
    let mut visited = vec![false; n];
    let mut clock = 0u32;
    let roots: Vec<Ix> = (0..n)
        .filter(|&r| roles[r].parent.is_none())
        .map(ix)
        .collect();
    let mut tour = |start: Ix, roles: &mut Vec<RoleEntry>, visited: &mut Vec<bool>| {
        // Iterative DFS: (role, next child position).
        let mut stack: Vec<(Ix, usize)> = vec![(start, 0)];
        visited[start as usize] = true;
        roles[start as usize].tin = clock;
        clock += 1;
        while let Some((r, next)) = stack.last_mut() {
            let r = *r;
            if let Some(&c) = children[r as usize].get(*next) {
                *next += 1;
                if !visited[c as usize] {
                    visited[c as usize] = true;
                    roles[c as usize].tin = clock;
                    clock += 1;
                    stack.push((c, 0));
                }
            } else {
                roles[r as usize].tout = clock;
                stack.pop();
            }
        }
    };
    for r in roots {
        tour(r, &mut roles, &mut visited);
    }
    for r in 0..n {
        if !visited[r] {
            // Part of a cycle: cut it here.
            roles[r].parent = None;
            tour(ix(r), &mut roles, &mut visited);
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::synthetic::{random_record_changes, small_org};
    use std::collections::BTreeSet;

    /// An index's links between events and their parents, by id: per event its parents
    /// (kind, id if the parent exists), per contact or organization the events linking to it.
    fn links_by_id(access: &Access<'_>) -> (BTreeSet<String>, BTreeSet<String>) {
        let events = access.kind(ObjectKind::Event);
        let id_of = |kind: ObjectKind, p: Ix| access.kind(kind).ids[p as usize].to_string();
        let mut parents = BTreeSet::new();
        for (e, rec) in events.records.iter().enumerate() {
            if !events.live.contains(ix(e)) {
                continue;
            }
            for &(kind, p) in rec.parents() {
                let parent = p.map(|p| id_of(kind, p));
                parents.insert(format!("{} -> {kind}:{parent:?}", events.ids[e]));
            }
        }
        let mut linked = BTreeSet::new();
        for kind in [ObjectKind::Contact, ObjectKind::Organization] {
            let index = access.kind(kind);
            for (p, list) in index.linked_events.iter().enumerate() {
                if !index.live.contains(ix(p)) {
                    continue;
                }
                for &e in list {
                    linked.insert(format!(
                        "{kind}:{} <- {}",
                        index.ids[p],
                        id_of(ObjectKind::Event, e)
                    ));
                }
            }
        }
        (parents, linked)
    }

    #[test]
    fn records_are_built_afresh_when_what_they_were_made_from_changed() {
        let model = (0..100u64)
            .map(small_org)
            .find(|m| m.roles.len() >= 2 && m.users.values().any(|u| u.role.is_some()))
            .unwrap();
        let records = Access::build(&model).into_records();
        let same = Access::patched(&model, records, &[]);
        assert!(same.was_patched());
        // A role change moves records between the roles' below-sets: built afresh.
        let mut moved = model.clone();
        let (user, role) = {
            let user = moved.users.values().find(|u| u.role.is_some()).unwrap();
            let other = moved.roles.keys().find(|r| Some(*r) != user.role.as_ref());
            (user.id.clone(), other.cloned())
        };
        if let Some(u) = moved.users.get_mut(&user) {
            u.role = role;
        }
        let records = same.into_records();
        let rebuilt = Access::patched(&moved, records, &[]);
        assert!(!rebuilt.was_patched());
        // A new user shifts every user index after it.
        let mut grown = moved.clone();
        let mut newcomer = grown.users.values().next().unwrap().clone();
        newcomer.id = UserId::new("aaa-first").unwrap();
        grown.users.insert(newcomer.id.clone(), newcomer);
        assert!(!Access::patched(&grown, rebuilt.into_records(), &[]).was_patched());
    }

    #[test]
    fn patched_links_between_events_and_parents_match_a_fresh_build() {
        let mut waited = 0;
        for seed in 0..400u64 {
            let mut model = small_org(seed);
            let mut records = Access::build(&model).into_records();
            for round in 0..4 {
                let (next, changed) = random_record_changes(&model, seed * 7 + round);
                let patched = Access::patched(&next, records, &changed);
                let fresh = Access::build(&next);
                assert_eq!(
                    links_by_id(&patched),
                    links_by_id(&fresh),
                    "seed {seed} round {round}"
                );
                waited += patched.kind(ObjectKind::Event).dangling.len();
                records = patched.into_records();
                model = next;
            }
        }
        assert!(waited > 0, "some event linked to a record the model lacked");
    }

    #[test]
    fn a_record_holds_its_lists_only_while_it_has_any() {
        assert_eq!(std::mem::size_of::<RecordEntry>(), 24);
        let mut entry = RecordEntry::default();
        assert!(entry.lists.is_none() && entry.readers().is_none());
        entry.change_lists(|l| l.readers = Some(vec![3, 5].into_boxed_slice()));
        entry.change_lists(|l| l.attendees = vec![1].into_boxed_slice());
        assert_eq!(entry.readers(), Some(&[3, 5][..]));
        assert_eq!(entry.attendees(), &[1]);
        assert!(entry.assignees().is_empty() && entry.parents().is_empty());
        // Shown to nobody is not the same as not shown yet: the box stays.
        entry.change_lists(|l| {
            l.readers = Some(Box::default());
            l.attendees = Box::default();
        });
        assert_eq!(entry.readers(), Some(&[][..]));
        entry.change_lists(|l| l.readers = None);
        assert!(entry.lists.is_none(), "every list empty: no box");
    }
}
