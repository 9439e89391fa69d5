//! Permission changes are changes: which users' readable sets may differ between two models.
//!
//! A role move, rule edit, team change or deactivation touches no record's `updated_at`, yet
//! it changes who may read what. [`affected_users`] finds the users concerned without
//! recomputing everyone's readable set: it derives, per user, a *signature* of everything a
//! readable set depends on besides the records themselves —
//!
//! - active / admin flags;
//! - per kind: the closed profile rights that matter for reading (`read`, `read_all`,
//!   `modify_all`, the read scope) and the export gate;
//! - for kinds the user reads record by record: the org-wide default, the set of users in
//!   roles strictly below theirs, the owners reachable through sharing rules targeting them,
//!   their teams, and (with a `team` read scope) their team-mates —
//!
//! and reports the users whose signature differs. Sets of users are compared through
//! SHA-256 digests of their sorted ids, computed once per role / rule / user. Then each
//! record that differs between the models is decided for every user under both models
//! (or, when very many records changed, whole readable sets are compared), which catches
//! record edits and `controlled_by_parent` effects. The result is sound (every user whose
//! readable set or export gate changed is included) and precise in the usual cases: a role
//! move names the mover only if their own grants changed, the users above the old and the
//! new position whose set of subordinates changed, and the targets of rules whose source
//! gained or lost the mover — not the rest of the org.

use super::index::{kind_slot, Access, Ix};
use crate::model::{ObjectKind, ScopeLevel, SharingDefault, TeamId, UserId};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Above this many (changed record × user) decisions, changed records are handled by
/// comparing whole readable sets instead.
const PAIRWISE_LIMIT: usize = 4_000_000;

/// Why a user's readable set may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "cause", content = "kind", rename_all = "snake_case")]
pub enum ChangeCause {
    /// The user is new.
    Added,
    /// The user is gone (everything synced to them must be pulled back).
    Removed,
    /// The user was activated or deactivated.
    Active,
    /// The user became or stopped being an admin.
    Admin,
    /// The profile rights that decide reading this kind changed (profile switch or edit).
    Rights(ObjectKind),
    /// The export gate on this kind changed.
    Export(ObjectKind),
    /// The org-wide default of this kind changed.
    OrgWideDefault(ObjectKind),
    /// The users strictly below the user's role changed (role move, tree change).
    Subordinates,
    /// The owners reachable through sharing rules on this kind changed.
    SharingRules(ObjectKind),
    /// The user's teams changed (visibility by team).
    Teams,
    /// The user's team-mates changed and a `team` read scope applies to this kind.
    TeamMates(ObjectKind),
    /// A record of this kind changed in a way that changes whether the user may read it.
    Records(ObjectKind),
    /// Delegated mode was switched on or off.
    ReaderGate,
}

/// Users, each with the reasons (`R`) they are named for: who a change affects and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ByUser<R: Ord> {
    pub users: BTreeMap<UserId, BTreeSet<R>>,
}

impl<R: Ord> Default for ByUser<R> {
    fn default() -> Self {
        Self {
            users: BTreeMap::new(),
        }
    }
}

impl<R: Ord> ByUser<R> {
    pub fn add(&mut self, user: &UserId, reason: R) {
        self.users.entry(user.clone()).or_default().insert(reason);
    }

    /// Every user of `other` with their reasons, added to these.
    pub fn merge(&mut self, other: ByUser<R>) {
        for (user, reasons) in other.users {
            self.users.entry(user).or_default().extend(reasons);
        }
    }

    pub fn contains(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    pub fn reasons(&self, user: &UserId) -> Option<&BTreeSet<R>> {
        self.users.get(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &UserId> {
        self.users.keys()
    }
}

/// The users whose readable sets may have changed, each with why.
pub type AffectedUsers = ByUser<ChangeCause>;

type Digest = [u8; 32];

fn digest_of<'a>(ids: impl Iterator<Item = &'a str>) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        ctx.update(id.as_bytes());
        ctx.update(b"\n");
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// What reading one kind depends on for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KindSig {
    /// The profile does not read the kind.
    Nothing { export: bool },
    /// The user reads every record of the kind.
    Everything { export: bool },
    /// Record by record.
    Some(Box<Detail>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Detail {
    export: bool,
    rights: (bool, Option<ScopeLevel>),
    owd: SharingDefault,
    below: Digest,
    rule_owners: Vec<Digest>,
    teams: Vec<TeamId>,
    team_mates: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum UserSig {
    Inactive,
    Admin,
    Normal([KindSig; 3]),
}

struct Signer<'a, 'm> {
    access: &'a Access<'m>,
    below: Vec<Option<Digest>>,
    rule_source: Vec<Option<Digest>>,
}

impl<'a, 'm> Signer<'a, 'm> {
    fn new(access: &'a Access<'m>) -> Self {
        Self {
            access,
            below: vec![None; access.roles.len()],
            rule_source: vec![None; access.rules.len()],
        }
    }

    fn name(&self, u: Ix) -> &'m str {
        self.access.users[u as usize].user.id.as_str()
    }

    fn below(&mut self, role: Ix) -> Digest {
        if let Some(d) = self.below[role as usize] {
            return d;
        }
        let a = self.access;
        let root = &a.roles[role as usize];
        let d = digest_of(
            a.roles
                .iter()
                .filter(|r| r.tin > root.tin && r.tin < root.tout)
                .flat_map(|r| r.users.iter().map(|&u| self.name(u))),
        );
        self.below[role as usize] = Some(d);
        d
    }

    fn rule_source(&mut self, rule: Ix) -> Digest {
        if let Some(d) = self.rule_source[rule as usize] {
            return d;
        }
        let a = self.access;
        let users = a.party_users(a.rules[rule as usize].source);
        let d = digest_of(users.iter().map(|&u| self.name(u)));
        self.rule_source[rule as usize] = Some(d);
        d
    }

    fn sign(&mut self, u: Ix) -> UserSig {
        let a = self.access;
        let entry = &a.users[u as usize];
        if !entry.user.active {
            return UserSig::Inactive;
        }
        if entry.user.admin {
            return UserSig::Admin;
        }
        let kinds =
            ObjectKind::ALL.map(|kind| {
                let Some(p) = entry.perms[kind_slot(kind)] else {
                    return KindSig::Nothing { export: false };
                };
                let export = p.read && p.export;
                if !p.read {
                    return KindSig::Nothing { export };
                }
                let owd = a.model.org_wide_sharing.for_kind(kind);
                let public = !matches!(
                    owd,
                    SharingDefault::Private | SharingDefault::ControlledByParent
                );
                if p.read_all || p.modify_all || p.scope.read == Some(ScopeLevel::All) || public {
                    return KindSig::Everything { export };
                }
                let below = match entry.role {
                    Some(r) => self.below(r),
                    None => digest_of(std::iter::empty()),
                };
                let mut rule_owners: Vec<Digest> = entry.rules_as_target[kind_slot(kind)]
                    .iter()
                    .map(|&r| self.rule_source(r))
                    .collect();
                rule_owners.sort_unstable();
                rule_owners.dedup();
                let team_mates =
                    (p.scope.read == Some(ScopeLevel::Team)).then(|| {
                        digest_of(entry.teams.iter().flat_map(|&t| {
                            a.teams[t as usize].members.iter().map(|&m| self.name(m))
                        }))
                    });
                KindSig::Some(Box::new(Detail {
                    export,
                    rights: (p.read, p.scope.read),
                    owd,
                    below,
                    rule_owners,
                    teams: entry
                        .teams
                        .iter()
                        .map(|&t| a.teams[t as usize].id.clone())
                        .collect(),
                    team_mates,
                }))
            });
        UserSig::Normal(kinds)
    }
}

fn compare(old: &UserSig, new: &UserSig, owd_changed: [bool; 3], out: &mut BTreeSet<ChangeCause>) {
    match (old, new) {
        (UserSig::Normal(a), UserSig::Normal(b)) => {
            for kind in ObjectKind::ALL {
                let (a, b) = (&a[kind_slot(kind)], &b[kind_slot(kind)]);
                if a != b {
                    compare_kind(kind, a, b, owd_changed[kind_slot(kind)], out);
                }
            }
        }
        (UserSig::Inactive, _) | (_, UserSig::Inactive) => {
            out.insert(ChangeCause::Active);
        }
        _ => {
            out.insert(ChangeCause::Admin);
        }
    }
}

fn compare_kind(
    kind: ObjectKind,
    a: &KindSig,
    b: &KindSig,
    owd_changed: bool,
    out: &mut BTreeSet<ChangeCause>,
) {
    let export = |s: &KindSig| match s {
        KindSig::Nothing { export } | KindSig::Everything { export } => *export,
        KindSig::Some(d) => d.export,
    };
    if export(a) != export(b) {
        out.insert(ChangeCause::Export(kind));
    }
    match (a, b) {
        (KindSig::Some(x), KindSig::Some(y)) => {
            if x.rights != y.rights {
                out.insert(ChangeCause::Rights(kind));
            }
            if x.owd != y.owd {
                out.insert(ChangeCause::OrgWideDefault(kind));
            }
            if x.below != y.below {
                out.insert(ChangeCause::Subordinates);
            }
            if x.rule_owners != y.rule_owners {
                out.insert(ChangeCause::SharingRules(kind));
            }
            if x.teams != y.teams {
                out.insert(ChangeCause::Teams);
            }
            if x.team_mates != y.team_mates {
                out.insert(ChangeCause::TeamMates(kind));
            }
        }
        (KindSig::Nothing { .. }, KindSig::Nothing { .. })
        | (KindSig::Everything { .. }, KindSig::Everything { .. }) => {}
        _ => {
            // Between nothing, everything and record by record: the profile's rights or
            // the org-wide default moved it.
            out.insert(if owd_changed {
                ChangeCause::OrgWideDefault(kind)
            } else {
                ChangeCause::Rights(kind)
            });
        }
    }
}

/// The model before a change as [`affected_users`] compares it with the next one when their
/// records are the same ([`records_shared`]): each user's signature, and the org-wide
/// settings they depend on. Taken from the old index, which can then be dropped before the
/// new one is built — two indexes of a large org at once would be tens of MiB.
#[derive(Debug, Clone)]
pub struct SignedBefore {
    users: BTreeMap<UserId, UserSig>,
    owd: [SharingDefault; 3],
    reader_gate: bool,
}

impl SignedBefore {
    pub fn of(old: &Access<'_>) -> Self {
        let mut signer = Signer::new(old);
        let users = old
            .users
            .iter()
            .enumerate()
            .map(|(u, entry)| (entry.user.id.clone(), signer.sign(u as Ix)))
            .collect();
        Self {
            users,
            owd: ObjectKind::ALL.map(|k| old.model.org_wide_sharing.for_kind(k)),
            reader_gate: old.reader_gate,
        }
    }

    /// The users whose readable sets (or export gates) may differ under `new` for any other
    /// reason than a record that changed: all of them when the records are shared.
    pub fn affected_users(&self, new: &Access<'_>) -> AffectedUsers {
        let mut out = AffectedUsers::default();
        for id in self.users.keys() {
            if !new.user_ix.contains_key(id) {
                out.add(id, ChangeCause::Removed);
            }
        }
        let owd_changed = ObjectKind::ALL
            .map(|k| self.owd[kind_slot(k)] != new.model.org_wide_sharing.for_kind(k));
        let gate_changed = self.reader_gate != new.reader_gate;
        let mut new_signer = Signer::new(new);
        for (nu, entry) in new.users.iter().enumerate() {
            let id = &entry.user.id;
            let Some(a) = self.users.get(id) else {
                out.add(id, ChangeCause::Added);
                continue;
            };
            if gate_changed {
                out.add(id, ChangeCause::ReaderGate);
            }
            let b = new_signer.sign(nu as Ix);
            if *a != b {
                let mut causes = BTreeSet::new();
                compare(a, &b, owd_changed, &mut causes);
                if causes.is_empty() {
                    causes.insert(ChangeCause::Rights(ObjectKind::Contact));
                }
                out.users.entry(id.clone()).or_default().extend(causes);
            }
        }
        out
    }
}

/// Whether two models hold the same records (one copied from the other for a permission
/// change): then no record differs between them, and [`SignedBefore::affected_users`] is
/// the whole of [`affected_users`].
pub fn records_shared(old: &crate::crm::OrgModel, new: &crate::crm::OrgModel) -> bool {
    use std::sync::Arc;
    Arc::ptr_eq(&old.contacts, &new.contacts)
        && Arc::ptr_eq(&old.events, &new.events)
        && Arc::ptr_eq(&old.organizations, &new.organizations)
        && Arc::ptr_eq(&old.readers, &new.readers)
}

/// The users whose readable sets (or export gates) may differ between the model `old` was
/// built from and the one `new` was built from, with the causes.
pub fn affected_users(old: &Access<'_>, new: &Access<'_>) -> AffectedUsers {
    let mut out = SignedBefore::of(old).affected_users(new);
    let common: Vec<(Ix, Ix)> = new
        .users
        .iter()
        .enumerate()
        .filter_map(|(nu, entry)| old.user_ix.get(&entry.user.id).map(|&ou| (ou, nu as Ix)))
        .collect();
    for kind in ObjectKind::ALL {
        let changed = changed_records(old, new, kind);
        if changed.is_empty() {
            continue;
        }
        if changed.len().saturating_mul(common.len()) > PAIRWISE_LIMIT {
            for &(ou, nu) in &common {
                if old.readable_bits(ou, kind) != new.readable_bits(nu, kind) {
                    out.add(&new.users[nu as usize].user.id, ChangeCause::Records(kind));
                }
            }
            continue;
        }
        for &(ou, nu) in &common {
            let differs = changed.iter().any(|(o, n)| {
                let before = o.is_some_and(|r| old.evaluate(ou, kind, r, false).read);
                let after = n.is_some_and(|r| new.evaluate(nu, kind, r, false).read);
                before != after
            });
            if differs {
                out.add(&new.users[nu as usize].user.id, ChangeCause::Records(kind));
            }
        }
    }
    out
}

/// [`affected_users`] for two models (builds both indexes; keep and reuse an [`Access`]
/// when you have one).
pub fn affected_users_between(
    old: &crate::crm::OrgModel,
    new: &crate::crm::OrgModel,
) -> AffectedUsers {
    affected_users(&Access::build(old), &Access::build(new))
}

/// Records of `kind` that differ between the models: (old index, new index).
fn changed_records(
    old: &Access<'_>,
    new: &Access<'_>,
    kind: ObjectKind,
) -> Vec<(Option<Ix>, Option<Ix>)> {
    let (om, nm) = (old.model, new.model);
    let mut out = Vec::new();
    macro_rules! diff {
        ($field:ident) => {{
            let (oi, ni) = (old.kind(kind), new.kind(kind));
            // Records shared by both models (one copied for a permission change) are
            // the same: not compared one by one.
            if !std::sync::Arc::ptr_eq(&om.$field, &nm.$field) {
                for (id, rec) in om.$field.iter() {
                    match nm.$field.get(id) {
                        Some(n) if n == rec => {}
                        _ => out.push((oi.ix(id), ni.ix(id))),
                    }
                }
                for id in nm.$field.keys() {
                    if !om.$field.contains_key(id) {
                        out.push((None, ni.ix(id)));
                    }
                }
            }
        }};
    }
    match kind {
        ObjectKind::Contact => diff!(contacts),
        ObjectKind::Event => diff!(events),
        ObjectKind::Organization => diff!(organizations),
    }
    if old.reader_gate || new.reader_gate {
        // Delegated mode: a record whose reader list changed is a changed record, and so is
        // an event whose linked parent's list changed (`controlled_by_parent`).
        let readers_changed = |k: ObjectKind| -> Vec<&crate::model::CrmId> {
            let (o, n) = (&om.readers, &nm.readers);
            o.iter()
                .filter(|(r, users)| r.kind == k && n.get(*r) != Some(*users))
                .map(|(r, _)| &r.id)
                .chain(
                    n.iter()
                        .filter(|(r, _)| r.kind == k && !o.contains_key(*r))
                        .map(|(r, _)| &r.id),
                )
                .collect()
        };
        let (oi, ni) = (old.kind(kind), new.kind(kind));
        let mut extra: BTreeSet<&crate::model::CrmId> = readers_changed(kind).into_iter().collect();
        if kind == ObjectKind::Event {
            let parents: std::collections::HashSet<crate::model::ParentLink> =
                readers_changed(ObjectKind::Contact)
                    .into_iter()
                    .map(|id| crate::model::ParentLink::Contact(id.clone()))
                    .chain(
                        readers_changed(ObjectKind::Organization)
                            .into_iter()
                            .map(|id| crate::model::ParentLink::Organization(id.clone())),
                    )
                    .collect();
            if !parents.is_empty() {
                for (id, event) in om.events.iter().chain(nm.events.iter()) {
                    if event.links.iter().any(|l| parents.contains(l)) {
                        extra.insert(id);
                    }
                }
            }
        }
        let mut known: std::collections::HashSet<(Option<Ix>, Option<Ix>)> =
            out.iter().copied().collect();
        for id in extra {
            let pair = (oi.ix(id), ni.ix(id));
            if known.insert(pair) {
                out.push(pair);
            }
        }
    }
    out
}
