//! Bulk readable sets: everything a user may read of one kind, as a union of precomputed
//! index sets — never by testing every (user, record) pair.

use super::bits::Bits;
use super::index::{kind_slot, Access, Ix, KindIndex};
use super::AccessError;
use crate::model::{CrmId, ObjectKind, ScopeLevel, SharingDefault, UserId};

/// A set of records of one kind (a readable or desired set).
#[derive(Clone)]
pub struct RecordSet<'a> {
    index: &'a KindIndex,
    bits: Bits,
}

impl std::fmt::Debug for RecordSet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSet")
            .field("kind", &self.index.kind)
            .field("ids", &self.iter().collect::<Vec<_>>())
            .finish()
    }
}

impl PartialEq for RecordSet<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.index.kind == other.index.kind && self.bits == other.bits
    }
}

impl<'a> RecordSet<'a> {
    pub(crate) fn new(index: &'a KindIndex, bits: Bits) -> Self {
        Self { index, bits }
    }

    pub fn kind(&self) -> ObjectKind {
        self.index.kind
    }

    /// How many records the set holds.
    pub fn len(&self) -> usize {
        self.bits.count()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    pub fn contains(&self, id: &CrmId) -> bool {
        self.index.ix(id).is_some_and(|i| self.bits.contains(i))
    }

    /// The ids in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = &'a CrmId> + '_ {
        let ids = &self.index.ids;
        let at = move |i: u32| &ids[i as usize];
        // Records added to a kept index since it was built sit after the others: their
        // ids may not.
        let direct = self.index.in_order.then(|| self.bits.iter().map(at));
        let mut sorted: Vec<&'a CrmId> = Vec::new();
        if !self.index.in_order {
            sorted = self.bits.iter().map(at).collect();
            sorted.sort_unstable();
        }
        direct.into_iter().flatten().chain(sorted)
    }

    /// The ids, owned and ascending.
    pub fn to_ids(&self) -> Vec<CrmId> {
        self.iter().cloned().collect()
    }

    pub fn is_subset(&self, other: &RecordSet<'_>) -> bool {
        self.index.kind == other.index.kind && self.bits.is_subset(&other.bits)
    }

    /// The underlying bit set over the kind's record indexes.
    pub fn bits(&self) -> &Bits {
        &self.bits
    }

    pub(crate) fn bits_mut(&mut self) -> &mut Bits {
        &mut self.bits
    }
}

impl<'m> Access<'m> {
    /// Everything `user` may read of `kind`.
    pub fn readable(&self, user: &UserId, kind: ObjectKind) -> Result<RecordSet<'_>, AccessError> {
        let u = self.user_or_err(user)?;
        Ok(RecordSet::new(self.kind(kind), self.readable_bits(u, kind)))
    }

    /// The users of the model, ascending (what bulk callers iterate).
    pub fn user_ids(&self) -> impl Iterator<Item = &'m UserId> + '_ {
        self.users.iter().map(|u| &u.user.id)
    }

    /// Number of records of `kind` in the model.
    pub fn record_count(&self, kind: ObjectKind) -> usize {
        self.kind(kind).live.count()
    }

    /// The readable set as bits, from the indexes: what the model grants, cut down in
    /// delegated mode to the records the CRM showed to the user's own key.
    pub(crate) fn readable_bits(&self, u: Ix, kind: ObjectKind) -> Bits {
        let mut bits = self.granted_bits(u, kind);
        if self.reader_gate {
            let index = self.kind(kind);
            let mut shown = Bits::empty(index.ids.len());
            if let Some(list) = index.by_reader.get(u as usize) {
                shown.extend(list);
            }
            bits.intersect_with(&shown);
        }
        bits
    }

    /// What the model grants `u` to read of `kind`, before the reader gate.
    fn granted_bits(&self, u: Ix, kind: ObjectKind) -> Bits {
        let index = self.kind(kind);
        let n = index.ids.len();
        let entry = &self.users[u as usize];
        if !entry.user.active {
            return Bits::empty(n);
        }
        if entry.user.admin {
            return index.live.clone();
        }
        let Some(perms) = entry.perms[kind_slot(kind)].filter(|p| p.read) else {
            return Bits::empty(n);
        };
        let default = self.model.org_wide_sharing.for_kind(kind);
        let public = !matches!(
            default,
            SharingDefault::Private | SharingDefault::ControlledByParent
        );
        if perms.read_all || perms.modify_all || perms.scope.read == Some(ScopeLevel::All) || public
        {
            return index.live.clone();
        }
        let ui = u as usize;
        // Owner or assignee (this also covers an `own` read scope).
        let mut bits = Bits::empty(n);
        bits.extend(&index.by_party[ui]);
        // Records of users strictly below in the role tree.
        if let Some(role) = entry.role {
            if let Some(below) = &index.below_role[role as usize] {
                bits.union_with(below);
            }
        }
        // Sharing rules targeting the user.
        for r in &entry.rules_as_target[kind_slot(kind)] {
            if let Some(source) = index.rule_source.get(r) {
                bits.union_with(source);
            }
        }
        // A `team` read scope: records owned by team-mates.
        if perms.scope.read == Some(ScopeLevel::Team) {
            for &t in &entry.teams {
                for &m in &self.teams[t as usize].members {
                    bits.extend(&index.by_owner[m as usize]);
                }
            }
        }
        // Simple visibility.
        bits.union_with(&index.visible_everyone);
        for &t in &entry.teams {
            bits.extend(&index.visible_team[t as usize]);
        }
        bits.extend(&index.visible_users[ui]);
        if kind == ObjectKind::Event {
            bits.extend(&index.attended[ui]);
            if default == SharingDefault::ControlledByParent {
                self.add_controlled_by_parent(u, &mut bits);
            }
        }
        bits
    }

    /// Events readable through `controlled_by_parent`: every linked parent readable (and at
    /// least one parent). Candidates are the events linked from readable parents.
    fn add_controlled_by_parent(&self, u: Ix, events: &mut Bits) {
        let contacts = self.readable_bits(u, ObjectKind::Contact);
        let orgs = self.readable_bits(u, ObjectKind::Organization);
        let event_index = self.kind(ObjectKind::Event);
        let parent_readable = |kind: ObjectKind, p: Option<Ix>| match (kind, p) {
            (ObjectKind::Contact, Some(p)) => contacts.contains(p),
            (ObjectKind::Organization, Some(p)) => orgs.contains(p),
            _ => false,
        };
        for (set, kind) in [
            (&contacts, ObjectKind::Contact),
            (&orgs, ObjectKind::Organization),
        ] {
            let linked = &self.kind(kind).linked_events;
            for p in set.iter() {
                for &e in &linked[p as usize] {
                    if events.contains(e) {
                        continue;
                    }
                    let rec = &event_index.records[e as usize];
                    if rec.parents().iter().all(|(k, p)| parent_readable(*k, *p)) {
                        events.insert(e);
                    }
                }
            }
        }
    }
}
