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
    Attendee, CrmId, ObjectKind, ObjectPermissions, Owned, ParentLink, Profile, RoleId, RuleParty,
    ScopeLevel, SharingRule, TeamId, User, UserId, Visibility,
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

pub(crate) enum Vis {
    Unset,
    Everyone,
    OwnerOnly,
    Team(Option<Ix>),
    Users(Box<[Ix]>),
}

pub(crate) struct RecordEntry {
    /// `None` when the owner is not a known user.
    pub owner: Option<Ix>,
    pub assignees: Box<[Ix]>,
    pub visibility: Vis,
    /// Events: user attendees.
    pub attendees: Box<[Ix]>,
    /// Events: linked parents (kind, index if the parent exists).
    pub parents: Box<[(ObjectKind, Option<Ix>)]>,
    /// Delegated mode: the users the CRM showed the record to, ascending (`None`: the CRM
    /// has shown it to nobody yet).
    pub readers: Option<Box<[Ix]>>,
}

pub(crate) struct KindIndex<'m> {
    pub kind: ObjectKind,
    pub ids: Vec<&'m CrmId>,
    pub by_id: IdMap<&'m CrmId, Ix>,
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
    /// Per role: records owned by or assigned to users strictly below it (`None`: none).
    pub below_role: Vec<Option<Bits>>,
    /// Per rule of this kind: records owned by users in its source.
    pub rule_source: HashMap<Ix, Bits>,
    /// Events: when each happens (for the sync window).
    pub timings: Vec<EventTiming>,
    /// Delegated mode, per user: the records the CRM showed to that user's key, ascending.
    pub by_reader: Vec<Vec<Ix>>,
}

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
    pub(crate) kinds: [KindIndex<'m>; 3],
    /// Events overlapping recently asked windows (`[start, end)` in unix seconds): the
    /// window test is the same for every user, so it is done once per window.
    pub(crate) window_cache: Mutex<Vec<((i64, i64), Bits)>>,
    /// Delegated mode: records are readable only by the users the CRM showed them to.
    pub(crate) reader_gate: bool,
}

impl<'m> Access<'m> {
    /// Indexes `model`. Linear in its size, plus one bit set per non-leaf role and per rule.
    pub fn build(model: &'m OrgModel) -> Self {
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
            kinds: [
                KindIndex::empty(ObjectKind::Contact),
                KindIndex::empty(ObjectKind::Event),
                KindIndex::empty(ObjectKind::Organization),
            ],
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
        // Contacts and organizations first: events resolve their parents through them.
        for kind in [
            ObjectKind::Contact,
            ObjectKind::Organization,
            ObjectKind::Event,
        ] {
            let index = access.index_kind(kind);
            access.kinds[kind_slot(kind)] = index;
        }
        let mut linked: [Vec<Vec<Ix>>; 2] = [
            vec![Vec::new(); access.kinds[0].ids.len()],
            vec![Vec::new(); access.kinds[2].ids.len()],
        ];
        for (e, rec) in access.kinds[1].records.iter().enumerate() {
            for (kind, parent) in rec.parents.iter() {
                if let Some(p) = parent {
                    let list = if *kind == ObjectKind::Contact {
                        &mut linked[0]
                    } else {
                        &mut linked[1]
                    };
                    list[*p as usize].push(ix(e));
                }
            }
        }
        let [contacts_linked, orgs_linked] = linked;
        access.kinds[0].linked_events = contacts_linked;
        access.kinds[2].linked_events = orgs_linked;
        for slot in 0..3 {
            let below = access.below_role_sets(slot);
            access.kinds[slot].below_role = below;
            let sources = access.rule_source_sets(slot);
            access.kinds[slot].rule_source = sources;
        }
        access
    }

    /// The model this index was built from.
    pub fn model(&self) -> &'m OrgModel {
        self.model
    }

    pub(crate) fn kind(&self, kind: ObjectKind) -> &KindIndex<'m> {
        &self.kinds[kind_slot(kind)]
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

    fn index_kind(&self, kind: ObjectKind) -> KindIndex<'m> {
        let model = self.model;
        let mut index = KindIndex::empty(kind);
        let n_users = self.users.len();
        index.by_party = vec![Vec::new(); n_users];
        index.by_owner = vec![Vec::new(); n_users];
        index.visible_team = vec![Vec::new(); self.teams.len()];
        index.visible_users = vec![Vec::new(); n_users];
        if kind == ObjectKind::Event {
            index.attended = vec![Vec::new(); n_users];
        }
        let records: Vec<(&'m CrmId, &'m dyn Owned)> = match kind {
            ObjectKind::Contact => model
                .contacts
                .iter()
                .map(|(id, r)| (id, r as &dyn Owned))
                .collect(),
            ObjectKind::Event => model
                .events
                .iter()
                .map(|(id, r)| (id, r as &dyn Owned))
                .collect(),
            ObjectKind::Organization => model
                .organizations
                .iter()
                .map(|(id, r)| (id, r as &dyn Owned))
                .collect(),
        };
        index.visible_everyone = Bits::empty(records.len());
        index.ids.reserve(records.len());
        index.records.reserve(records.len());
        for (i, (id, rec)) in records.iter().enumerate() {
            let i = ix(i);
            index.ids.push(id);
            index.by_id.insert(id, i);
            let owner = self.user_index(rec.owner());
            let mut assignees: Vec<Ix> = rec
                .assignees()
                .iter()
                .filter_map(|a| self.user_index(a))
                .collect();
            assignees.sort_unstable();
            assignees.dedup();
            if let Some(o) = owner {
                index.by_owner[o as usize].push(i);
                index.by_party[o as usize].push(i);
            }
            for &a in &assignees {
                if Some(a) != owner {
                    index.by_party[a as usize].push(i);
                }
            }
            let visibility = match rec.visibility() {
                None => Vis::Unset,
                Some(Visibility::Everyone) => {
                    index.visible_everyone.insert(i);
                    Vis::Everyone
                }
                Some(Visibility::OwnerOnly) => Vis::OwnerOnly,
                Some(Visibility::Team(t)) => {
                    let t = self.team_ix.get(t).copied();
                    if let Some(t) = t {
                        index.visible_team[t as usize].push(i);
                    }
                    Vis::Team(t)
                }
                Some(Visibility::Users(list)) => {
                    let mut list: Vec<Ix> =
                        list.iter().filter_map(|u| self.user_index(u)).collect();
                    list.sort_unstable();
                    list.dedup();
                    for &u in &list {
                        index.visible_users[u as usize].push(i);
                    }
                    Vis::Users(list.into_boxed_slice())
                }
            };
            index.records.push(RecordEntry {
                owner,
                assignees: assignees.into_boxed_slice(),
                visibility,
                attendees: Box::new([]),
                parents: Box::new([]),
                readers: None,
            });
        }
        index.by_reader = vec![Vec::new(); n_users];
        for (record, users) in &model.readers {
            if record.kind != kind {
                continue;
            }
            let Some(&r) = index.by_id.get(&record.id) else {
                continue;
            };
            let mut list: Vec<Ix> = users.iter().filter_map(|u| self.user_index(u)).collect();
            list.sort_unstable();
            list.dedup();
            for &u in &list {
                index.by_reader[u as usize].push(r);
            }
            index.records[r as usize].readers = Some(list.into_boxed_slice());
        }
        for list in &mut index.by_reader {
            list.sort_unstable();
        }
        if kind == ObjectKind::Event {
            let contact_ix = &self.kind(ObjectKind::Contact).by_id;
            let org_ix = &self.kind(ObjectKind::Organization).by_id;
            index.timings.reserve(model.events.len());
            for (i, event) in model.events.values().enumerate() {
                let mut attendees: Vec<Ix> = event
                    .attendees
                    .iter()
                    .filter_map(|a| match a {
                        Attendee::User(u) => self.user_index(u),
                        Attendee::Contact(_) => None,
                    })
                    .collect();
                attendees.sort_unstable();
                attendees.dedup();
                for &u in &attendees {
                    index.attended[u as usize].push(ix(i));
                }
                let parents: Vec<(ObjectKind, Option<Ix>)> = event
                    .links
                    .iter()
                    .map(|l| match l {
                        ParentLink::Contact(c) => (ObjectKind::Contact, contact_ix.get(c).copied()),
                        ParentLink::Organization(o) => {
                            (ObjectKind::Organization, org_ix.get(o).copied())
                        }
                    })
                    .collect();
                let rec = &mut index.records[i];
                rec.attendees = attendees.into_boxed_slice();
                rec.parents = parents.into_boxed_slice();
                index.timings.push(EventTiming::of(event));
            }
        }
        index
    }

    /// Per role, the records owned by or assigned to users strictly below it: children
    /// before parents (descending tour order), each role's set is the union over its
    /// children of (their users' records ∪ their own below-set).
    fn below_role_sets(&self, slot: usize) -> Vec<Option<Bits>> {
        let index = &self.kinds[slot];
        let n = index.ids.len();
        let mut children: Vec<Vec<Ix>> = vec![Vec::new(); self.roles.len()];
        for (r, role) in self.roles.iter().enumerate() {
            if let Some(p) = role.parent {
                children[p as usize].push(ix(r));
            }
        }
        let mut order: Vec<Ix> = (0..self.roles.len()).map(ix).collect();
        order.sort_by_key(|&r| std::cmp::Reverse(self.roles[r as usize].tin));
        let mut below: Vec<Option<Bits>> = (0..self.roles.len()).map(|_| None).collect();
        for r in order {
            let kids = &children[r as usize];
            if kids.is_empty() {
                continue;
            }
            let mut bits = Bits::empty(n);
            for &c in kids {
                if let Some(b) = &below[c as usize] {
                    bits.union_with(b);
                }
                for &u in &self.roles[c as usize].users {
                    bits.extend(&index.by_party[u as usize]);
                }
            }
            below[r as usize] = Some(bits);
        }
        below
    }

    /// Per rule of this kind, the records owned by users in its source.
    fn rule_source_sets(&self, slot: usize) -> HashMap<Ix, Bits> {
        let index = &self.kinds[slot];
        let mut out = HashMap::new();
        for (r, rule) in self.rules.iter().enumerate() {
            if kind_slot(rule.rule.object) != slot {
                continue;
            }
            let mut bits = Bits::empty(index.ids.len());
            for u in self.party_users(rule.source) {
                bits.extend(&index.by_owner[u as usize]);
            }
            out.insert(ix(r), bits);
        }
        out
    }

    /// Delegated mode: whether the CRM showed record `rec` to user `u` (always true without
    /// the reader gate).
    pub(crate) fn reader_listed(&self, u: Ix, rec: &RecordEntry) -> bool {
        !self.reader_gate
            || rec
                .readers
                .as_deref()
                .is_some_and(|list| list.binary_search(&u).is_ok())
    }

    /// Whether the operation scope `level` covers a record for user `u`.
    pub(crate) fn scope_covers(&self, u: Ix, rec: &RecordEntry, level: ScopeLevel) -> bool {
        match level {
            ScopeLevel::All => true,
            ScopeLevel::Team => rec.owner.is_some_and(|o| self.share_team(u, o)),
            ScopeLevel::Own => rec.owner == Some(u) || rec.assignees.contains(&u),
        }
    }
}

impl<'m> KindIndex<'m> {
    fn empty(kind: ObjectKind) -> Self {
        Self {
            kind,
            ids: Vec::new(),
            by_id: IdMap::default(),
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
        }
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
