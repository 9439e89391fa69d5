//! What should be on a user's phone: the scope's desired set (always within read access and
//! the export gate), projected into synced forms, plus why linked records left it.

use super::plan::{DesiredItem, LostReason};
use crate::crm::{Entity, OrgModel};
use crate::google::mapping::{canonical_contact, canonical_event};
use crate::model::{
    Attendee, AttendeeLine, Contact, CrmId, Event, ObjectKind, RecordRef, SyncedContact,
    SyncedEvent, User, UserId,
};
use crate::scope::{desired_set, scoped_set, EffectiveScope};
use crate::security::{Access, AccessError, Operation};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// A user's sets for one kind.
#[derive(Debug, Clone)]
pub struct UserSets<T> {
    pub desired: BTreeMap<CrmId, DesiredItem<T>>,
    /// Readable and selected, but outside the event window: kept if synced, never created.
    pub retained: BTreeSet<CrmId>,
    /// Why each linked record that is neither desired nor retained left.
    pub lost: BTreeMap<CrmId, LostReason>,
}

impl<T> Default for UserSets<T> {
    fn default() -> Self {
        Self {
            desired: BTreeMap::new(),
            retained: BTreeSet::new(),
            lost: BTreeMap::new(),
        }
    }
}

/// The synced form of a contact (canonical, as Google will give it back).
pub fn project_contact(model: &OrgModel, c: &Contact) -> SyncedContact {
    canonical_contact(&SyncedContact {
        first_name: c.first_name.clone(),
        last_name: c.last_name.clone(),
        organization: c
            .organization
            .as_ref()
            .and_then(|o| model.organizations.get(o))
            .map(|o| o.name.clone())
            .unwrap_or_default(),
        title: c.title.clone(),
        emails: c.emails.clone(),
        phones: c.phones.clone(),
        addresses: c.addresses.clone(),
        notes: c.notes.clone(),
    })
}

/// The synced form of an event as `viewer` sees it: attendees limited to users and the
/// contacts the viewer may read.
pub fn project_event(access: &Access<'_>, viewer: &UserId, e: &Event) -> SyncedEvent {
    let model = access.model();
    let attendees = access
        .visible_attendees(viewer, e)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|a| match a {
            Attendee::User(u) => model.users.get(u).map(|u| AttendeeLine {
                name: u.name.clone(),
                email: u.email.clone(),
            }),
            Attendee::Contact(c) => model.contacts.get(c).map(|c| AttendeeLine {
                name: c.display_name(),
                email: c
                    .emails
                    .first()
                    .map(|e| e.address.clone())
                    .unwrap_or_default(),
            }),
        })
        .collect();
    canonical_event(&SyncedEvent {
        title: e.title.clone(),
        description: e.description.clone(),
        location: e.location.clone(),
        start: e.start,
        end: e.end,
        time_zone: e.time_zone.clone(),
        all_day: e.all_day,
        recurrence: e.recurrence.clone(),
        attendees,
    })
}

/// Projects any record entity of a user's view.
pub fn project_contact_entity(model: &OrgModel, entity: &Entity) -> Option<SyncedContact> {
    match entity {
        Entity::Contact(c) => Some(project_contact(model, c)),
        _ => None,
    }
}

/// A phone-created contact as a new CRM contact owned by `owner`. Its organization is
/// linked by name only among the organizations `owner` may read: a name matching an
/// organization hidden from them links nothing (linking would reveal it, and attach their
/// contact to a record they cannot see).
pub fn import_contact(
    access: &Access<'_>,
    owner: &UserId,
    id: &CrmId,
    data: &SyncedContact,
) -> Entity {
    let model = access.model();
    let wanted = data.organization.trim().to_lowercase();
    let organization = (!wanted.is_empty())
        .then(|| {
            model
                .organizations
                .values()
                .filter(|o| o.name.to_lowercase() == wanted)
                .find(|o| {
                    access
                        .may(
                            owner,
                            &RecordRef::new(ObjectKind::Organization, o.id.clone()),
                            Operation::Read,
                        )
                        .unwrap_or(false)
                })
                .map(|o| o.id.clone())
        })
        .flatten();
    Entity::Contact(Contact {
        id: id.clone(),
        owner: owner.clone(),
        assignees: Vec::new(),
        visibility: None,
        first_name: data.first_name.clone(),
        last_name: data.last_name.clone(),
        organization,
        title: data.title.clone(),
        emails: data.emails.clone(),
        phones: data.phones.clone(),
        addresses: data.addresses.clone(),
        notes: data.notes.clone(),
        tags: Vec::new(),
        updated_at: Some(Utc::now()),
    })
}

/// A phone-created event as a new CRM event owned by `owner`.
pub fn import_event(owner: &UserId, id: &CrmId, data: &SyncedEvent) -> Entity {
    Entity::Event(Event {
        id: id.clone(),
        owner: owner.clone(),
        assignees: Vec::new(),
        visibility: None,
        title: data.title.clone(),
        description: data.description.clone(),
        location: data.location.clone(),
        start: data.start,
        end: data.end,
        time_zone: data.time_zone.clone(),
        all_day: data.all_day,
        recurrence: data.recurrence.clone(),
        attendees: Vec::new(),
        links: Vec::new(),
        updated_at: Some(Utc::now()),
    })
}

fn lost_reason(access: &Access<'_>, user: &User, kind: ObjectKind, id: &CrmId) -> LostReason {
    if !user.active {
        return LostReason::UserInactive;
    }
    let record = RecordRef::new(kind, id.clone());
    match access.decide(&user.id, &record) {
        Err(AccessError::UnknownRecord(_)) => LostReason::DeletedInCrm,
        Err(e) => LostReason::NotReadable(e.to_string()),
        Ok(d) if !d.read => LostReason::NotReadable(d.denial_lines().join("; ")),
        Ok(_) => LostReason::OutOfScope,
    }
}

fn item<T>(
    access: &Access<'_>,
    user: &UserId,
    kind: ObjectKind,
    id: &CrmId,
    data: T,
    may_create: bool,
    changed_at: Option<DateTime<Utc>>,
) -> DesiredItem<T> {
    let record = RecordRef::new(kind, id.clone());
    let model = access.model();
    DesiredItem {
        data,
        version: model.versions.get(&record).copied().unwrap_or(0),
        may_edit: access.may(user, &record, Operation::Edit).unwrap_or(false),
        may_delete: access
            .may(user, &record, Operation::Delete)
            .unwrap_or(false),
        may_create,
        changed_at,
    }
}

/// The contact sets of `user`; `linked` are the records currently linked for them. With
/// `only`, the sets are restricted to those records (a pass that plans just what changed).
pub fn contact_sets<'a>(
    access: &Access<'_>,
    user: &User,
    scope: &EffectiveScope,
    now: DateTime<Utc>,
    linked: impl Iterator<Item = &'a CrmId>,
    only: Option<&BTreeSet<CrmId>>,
) -> Result<UserSets<SyncedContact>, AccessError> {
    let model = access.model();
    let mut sets = UserSets::default();
    let wanted = |id: &CrmId| only.is_none_or(|o| o.contains(id));
    if user.active {
        for id in desired_set(access, &user.id, scope, ObjectKind::Contact, now)?.iter() {
            if !wanted(id) {
                continue;
            }
            if let Some(c) = model.contacts.get(id) {
                let data = project_contact(model, c);
                let d = item(
                    access,
                    &user.id,
                    ObjectKind::Contact,
                    id,
                    data,
                    true,
                    c.updated_at,
                );
                sets.desired.insert(id.clone(), d);
            }
        }
    }
    for id in linked {
        if !sets.desired.contains_key(id) {
            sets.lost.insert(
                id.clone(),
                lost_reason(access, user, ObjectKind::Contact, id),
            );
        }
    }
    Ok(sets)
}

/// The event sets of `user` (events outside the window are retained, not lost); `only` as
/// for [`contact_sets`].
pub fn event_sets<'a>(
    access: &Access<'_>,
    user: &User,
    scope: &EffectiveScope,
    now: DateTime<Utc>,
    linked: impl Iterator<Item = &'a CrmId>,
    only: Option<&BTreeSet<CrmId>>,
) -> Result<UserSets<SyncedEvent>, AccessError> {
    let model = access.model();
    let mut sets = UserSets::default();
    let wanted = |id: &CrmId| only.is_none_or(|o| o.contains(id));
    if user.active {
        let in_window = desired_set(access, &user.id, scope, ObjectKind::Event, now)?;
        let selected = scoped_set(access, &user.id, scope, ObjectKind::Event)?;
        for id in selected.iter() {
            if !wanted(id) {
                continue;
            }
            let Some(e) = model.events.get(id) else {
                continue;
            };
            let data = project_event(access, &user.id, e);
            let within = in_window.contains(id);
            if !within {
                sets.retained.insert(id.clone());
            }
            let d = item(
                access,
                &user.id,
                ObjectKind::Event,
                id,
                data,
                within,
                e.updated_at,
            );
            sets.desired.insert(id.clone(), d);
        }
    }
    for id in linked {
        if !sets.desired.contains_key(id) {
            sets.lost
                .insert(id.clone(), lost_reason(access, user, ObjectKind::Event, id));
        }
    }
    Ok(sets)
}
