//! Desired sets: the records that should be on a user's phone — readable ∩ export gate ∩
//! selection (∩ the event window) — and the per-record verdict `access explain` prints.

use super::window::Window;
use super::{EffectiveScope, Selection, SelectionMode};
use crate::model::{Contact, Event, ObjectKind, ParentLink, RecordRef, UserId};
use crate::security::{Access, AccessError, Bits, RecordSet};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The records of `kind` in `user`'s scope, before the event window: readable ∩ export
/// gate ∩ selection. A linked event that is here but not in [`desired_set`] has aged out of
/// the window (DESIGN §3: it stays on the phone); one that is not here is lost.
pub fn scoped_set<'a>(
    access: &'a Access<'_>,
    user: &UserId,
    scope: &EffectiveScope,
    kind: ObjectKind,
) -> Result<RecordSet<'a>, AccessError> {
    let mut set = access.readable(user, kind)?;
    let u = access.user_or_err(user)?;
    let universe = set.bits().universe();
    let selection = match scope.selection(kind) {
        Some(s) if s.mode != SelectionMode::None && access.export_allowed(u, kind) => s,
        _ => {
            *set.bits_mut() = Bits::empty(universe);
            return Ok(set);
        }
    };
    let index = access.kind(kind);
    match selection.mode {
        SelectionMode::None | SelectionMode::AllVisible => {}
        SelectionMode::Mine => {
            let mut mine = Bits::empty(universe);
            mine.extend(&index.by_party[u as usize]);
            set.bits_mut().intersect_with(&mine);
        }
        SelectionMode::Team => {
            let entry = &access.users[u as usize];
            let mut team = Bits::empty(universe);
            team.extend(&index.by_party[u as usize]);
            for &t in &entry.teams {
                for &m in &access.teams[t as usize].members {
                    team.extend(&index.by_owner[m as usize]);
                }
            }
            if let Some(Some(below)) = entry.role.map(|r| &index.below_role[r as usize]) {
                team.union_with(below);
            }
            set.bits_mut().intersect_with(&team);
        }
        SelectionMode::Filter => {
            let ctx = Context::new(access, u, selection);
            let mut keep = Bits::empty(universe);
            for r in set.bits().iter() {
                if ctx.selected(kind, r) {
                    keep.insert(r);
                }
            }
            *set.bits_mut() = keep;
        }
    }
    Ok(set)
}

/// The records of `kind` that should be synced to `user` under `scope` at time `now`.
///
/// Always a subset of [`Access::readable`]: empty for organizations (not synced), for an
/// inactive user and when the export gate closes the kind; events are kept when any
/// occurrence overlaps the scope's window around `now`.
pub fn desired_set<'a>(
    access: &'a Access<'_>,
    user: &UserId,
    scope: &EffectiveScope,
    kind: ObjectKind,
    now: DateTime<Utc>,
) -> Result<RecordSet<'a>, AccessError> {
    let mut set = scoped_set(access, user, scope, kind)?;
    if kind == ObjectKind::Event && !set.is_empty() {
        let in_window = events_in_window(access, &scope.window(now));
        set.bits_mut().intersect_with(&in_window);
    }
    Ok(set)
}

/// Cached windows kept per access index.
const WINDOW_CACHE: usize = 8;

/// The events with an occurrence in `window` (computed once per window and index).
fn events_in_window(access: &Access<'_>, window: &Window) -> Bits {
    let key = (window.start.timestamp(), window.end.timestamp());
    if let Ok(cache) = access.window_cache.lock() {
        if let Some((_, bits)) = cache.iter().find(|(k, _)| *k == key) {
            return bits.clone();
        }
    }
    let index = access.kind(ObjectKind::Event);
    let mut bits = Bits::empty(index.ids.len());
    for (r, timing) in index.timings.iter().enumerate() {
        if !index.live.contains(r as u32) {
            continue;
        }
        let fetch = || {
            index
                .ids
                .get(r)
                .and_then(|id| access.model().events.get(id))
        };
        if timing.overlaps_with(window, fetch) {
            bits.insert(r as u32);
        }
    }
    if let Ok(mut cache) = access.window_cache.lock() {
        if cache.len() >= WINDOW_CACHE {
            cache.remove(0);
        }
        cache.push((key, bits.clone()));
    }
    bits
}

/// Whether one record would be synced to a user, and why (not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncVerdict {
    pub synced: bool,
    pub reasons: Vec<String>,
}

/// The per-record form of [`desired_set`], with reasons: would `record` be synced to
/// `user` under `scope` at `now`?
pub fn sync_verdict(
    access: &Access<'_>,
    user: &UserId,
    scope: &EffectiveScope,
    record: &RecordRef,
    now: DateTime<Utc>,
) -> Result<SyncVerdict, AccessError> {
    let (u, r) = access.resolve(user, record)?;
    let kind = record.kind;
    let mut reasons = Vec::new();
    let mut synced = true;
    let readable = access.may(user, record, crate::security::Operation::Read)?;
    if readable {
        reasons.push(format!("{user} may read it"));
    } else {
        synced = false;
        reasons.push(format!("not synced: {user} may not read it"));
    }
    let Some(selection) = scope.selection(kind) else {
        return Ok(SyncVerdict {
            synced: false,
            reasons: vec!["not synced: organizations are not synced to Google".into()],
        });
    };
    if !access.export_allowed(u, kind) {
        synced = false;
        let entry = &access.model().users[user];
        reasons.push(match &entry.profile {
            Some(p) if entry.active => format!(
                "not synced: export gate — profile {p} does not allow exporting {kind} (a phone copy is an export)"
            ),
            _ if !entry.active => format!("not synced: {user} is inactive"),
            _ => format!("not synced: export gate — {user} has no profile"),
        });
    }
    let ctx = Context::new(access, u, selection);
    let label = format!("{kind}={selection}");
    if selection.mode == SelectionMode::None {
        synced = false;
        reasons.push(format!("not synced: scope {label}"));
    } else if ctx.selected(kind, r) {
        reasons.push(format!("in scope {label}"));
    } else {
        synced = false;
        let why = match selection.mode {
            SelectionMode::Mine => format!("{user} neither owns nor is assigned to it"),
            SelectionMode::Team => format!(
                "not {user}'s, not owned by a team-mate, not owned by or assigned to anyone below {user}'s role"
            ),
            SelectionMode::Filter => "it does not match the filter".to_owned(),
            SelectionMode::AllVisible | SelectionMode::None => String::new(),
        };
        reasons.push(format!("not synced: outside scope {label}: {why}"));
    }
    if kind == ObjectKind::Event {
        let window = scope.window(now);
        let span = format!(
            "{} days past to {} days ahead of {}",
            scope.days_past,
            scope.days_future,
            now.format("%Y-%m-%d %H:%M UTC")
        );
        if ctx.in_window(r, &window) {
            reasons.push(format!("in the event window ({span})"));
        } else {
            synced = false;
            reasons.push(format!(
                "not synced: no occurrence in the event window ({span})"
            ));
        }
    }
    Ok(SyncVerdict { synced, reasons })
}

/// What selection checks need about one user.
struct Context<'x, 'm> {
    access: &'x Access<'m>,
    u: u32,
    selection: &'x Selection,
    /// Contacts the user may read (for event filters that look through linked contacts).
    readable_contacts: Option<Bits>,
    readable_orgs: Option<Bits>,
}

impl<'x, 'm> Context<'x, 'm> {
    fn new(access: &'x Access<'m>, u: u32, selection: &'x Selection) -> Self {
        let filter = selection.mode == SelectionMode::Filter;
        Self {
            access,
            u,
            selection,
            readable_contacts: filter.then(|| access.readable_bits(u, ObjectKind::Contact)),
            readable_orgs: filter.then(|| access.readable_bits(u, ObjectKind::Organization)),
        }
    }

    fn contact(&self, id: &crate::model::CrmId) -> Option<&'m Contact> {
        self.access.model().contacts.get(id)
    }

    fn event(&self, r: u32) -> Option<&'m Event> {
        let id = self.access.kind(ObjectKind::Event).ids.get(r as usize)?;
        self.access.model().events.get(id)
    }

    fn selected(&self, kind: ObjectKind, r: u32) -> bool {
        let a = self.access;
        let index = a.kind(kind);
        let rec = &index.records[r as usize];
        let u = self.u;
        let mine = rec.owner == Some(u) || rec.assignees().contains(&u);
        match self.selection.mode {
            SelectionMode::None => false,
            SelectionMode::AllVisible => true,
            SelectionMode::Mine => mine,
            SelectionMode::Team => {
                if mine || rec.owner.is_some_and(|o| a.share_team(u, o)) {
                    return true;
                }
                let Some(my_role) = a.users[u as usize].role else {
                    return false;
                };
                rec.owner
                    .into_iter()
                    .chain(rec.assignees().iter().copied())
                    .filter_map(|h| a.users[h as usize].role)
                    .any(|hr| a.role_strictly_below(hr, my_role))
            }
            SelectionMode::Filter => match kind {
                ObjectKind::Contact => index
                    .ids
                    .get(r as usize)
                    .and_then(|id| self.contact(id))
                    .is_some_and(|c| self.contact_matches(c)),
                ObjectKind::Event => self.event(r).is_some_and(|e| self.event_matches(e)),
                ObjectKind::Organization => false,
            },
        }
    }

    fn contact_matches(&self, c: &Contact) -> bool {
        let s = self.selection;
        let tags = s.tags.is_empty() || c.tags.iter().any(|t| s.tags.contains(t));
        let orgs = s.organizations.is_empty()
            || c.organization
                .as_ref()
                .is_some_and(|o| s.organizations.contains(o));
        tags && orgs
    }

    /// An event matches through its links: a readable linked contact with one of the tags;
    /// a readable linked organization in the list, or a readable linked contact belonging
    /// to one. Hidden records never decide (no leak by association).
    fn event_matches(&self, e: &Event) -> bool {
        let s = self.selection;
        let contacts_index = self.access.kind(ObjectKind::Contact);
        let orgs_index = self.access.kind(ObjectKind::Organization);
        let readable_contact = |id| {
            contacts_index.ix(id).is_some_and(|i| {
                self.readable_contacts
                    .as_ref()
                    .is_some_and(|b| b.contains(i))
            })
        };
        let readable_org = |id| {
            orgs_index
                .ix(id)
                .is_some_and(|i| self.readable_orgs.as_ref().is_some_and(|b| b.contains(i)))
        };
        let linked_contacts: Vec<&Contact> = e
            .links
            .iter()
            .filter_map(|l| match l {
                ParentLink::Contact(c) if readable_contact(c) => self.contact(c),
                _ => None,
            })
            .collect();
        let tags = s.tags.is_empty()
            || linked_contacts
                .iter()
                .any(|c| c.tags.iter().any(|t| s.tags.contains(t)));
        let orgs = s.organizations.is_empty()
            || e.links.iter().any(|l| match l {
                ParentLink::Organization(o) => s.organizations.contains(o) && readable_org(o),
                ParentLink::Contact(_) => false,
            })
            || linked_contacts.iter().any(|c| {
                c.organization
                    .as_ref()
                    .is_some_and(|o| s.organizations.contains(o))
            });
        tags && orgs
    }

    fn in_window(&self, r: u32, window: &Window) -> bool {
        let index = self.access.kind(ObjectKind::Event);
        index
            .timings
            .get(r as usize)
            .is_some_and(|timing| timing.overlaps_with(window, || self.event(r)))
    }
}
