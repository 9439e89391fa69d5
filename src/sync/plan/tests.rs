//! The plan table as named cases, plus the re-plan property.

use super::*;
use crate::model::{EmailAddress, EventTime, PhoneNumber};
use proptest::prelude::*;

fn id(s: &str) -> CrmId {
    CrmId::new(s).unwrap()
}

fn contact(name: &str, email: &str, notes: &str) -> SyncedContact {
    SyncedContact {
        first_name: name.into(),
        emails: if email.is_empty() {
            vec![]
        } else {
            vec![EmailAddress {
                address: email.into(),
                label: "work".into(),
            }]
        },
        notes: notes.into(),
        ..SyncedContact::default()
    }
}

fn event(title: &str) -> SyncedEvent {
    let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    SyncedEvent {
        title: title.into(),
        description: String::new(),
        location: String::new(),
        start: EventTime::DateTime(day.and_hms_opt(15, 0, 0).unwrap()),
        end: EventTime::DateTime(day.and_hms_opt(16, 0, 0).unwrap()),
        time_zone: "Europe/London".into(),
        all_day: false,
        recurrence: vec![],
        attendees: vec![],
    }
}

fn desired<T>(data: T) -> DesiredItem<T> {
    DesiredItem {
        data,
        version: 7,
        may_edit: true,
        may_delete: true,
        may_create: true,
        changed_at: None,
    }
}

fn link<T>(crm: &str, google: &str, base: T) -> Link<T> {
    Link {
        crm_id: id(crm),
        state: LinkState::Linked,
        google_id: Some(google.into()),
        etag: Some("e1".into()),
        generation: 0,
        base: Some(base),
        crm_version: Some(7),
        origin: LinkOrigin::Created,
    }
}

fn item<T>(google: &str, etag: &str, data: T) -> RemoteItem<T> {
    RemoteItem {
        google_id: google.into(),
        etag: etag.into(),
        crm_id: None,
        data,
        in_container: true,
        previous_ids: vec![],
        recurring_parent: None,
        updated: None,
        raw: serde_json::json!({"resourceName": google}),
        created_by_us: false,
    }
}

const TWO_WAY: Policies = Policies {
    direction: Direction::TwoWay,
    conflict: ConflictPolicy::CrmWins,
    google_delete: GoogleDeletePolicy::Unlink,
    may_create_in_crm: true,
};

/// One scenario's inputs, owned.
struct World<T> {
    desired: BTreeMap<CrmId, DesiredItem<T>>,
    retained: BTreeSet<CrmId>,
    links: BTreeMap<CrmId, Link<T>>,
    changes: Vec<RemoteChange<T>>,
    full: bool,
    unlinked: Vec<RemoteItem<T>>,
    reported: BTreeSet<String>,
    lost: BTreeMap<CrmId, LostReason>,
    policies: Policies,
    crm_match: CrmMatch,
}

impl<T: Synced> World<T> {
    fn new() -> Self {
        Self {
            desired: BTreeMap::new(),
            retained: BTreeSet::new(),
            links: BTreeMap::new(),
            changes: vec![],
            full: false,
            unlinked: vec![],
            reported: BTreeSet::new(),
            lost: BTreeMap::new(),
            policies: TWO_WAY,
            crm_match: CrmMatch::default(),
        }
    }

    fn want(mut self, crm: &str, d: DesiredItem<T>) -> Self {
        self.desired.insert(id(crm), d);
        self
    }

    fn linked(mut self, l: Link<T>) -> Self {
        self.links.insert(l.crm_id.clone(), l);
        self
    }

    fn listed(mut self, change: RemoteChange<T>) -> Self {
        self.changes.push(change);
        self
    }

    fn plan(&self) -> KindPlan<T> {
        let view = RemoteView::from_changes(&self.changes, self.full);
        let m = self.crm_match.clone();
        let crm_match = move |_: &T| m.clone();
        let event_id = |c: &CrmId, g: i64| format!("ev{}g{g}", c.as_str());
        let import_id = |g: &str| CrmId::new(format!("g-{}", g.replace('/', "-"))).unwrap();
        plan(&PlanInput {
            desired: &self.desired,
            retained: &self.retained,
            links: &self.links,
            remote: &view,
            unlinked: &self.unlinked,
            already_reported: &self.reported,
            lost_reasons: &self.lost,
            policies: self.policies,
            crm_match: &crm_match,
            event_id: &event_id,
            import_id: &import_id,
            marked: Default::default(),
            explain: true,
        })
    }

    fn only(&self) -> RecordPlan<T> {
        let plan = self.plan();
        assert_eq!(plan.records.len(), 1, "{:#?}", plan.records);
        plan.records.into_iter().next().unwrap()
    }
}

#[test]
fn new_event_is_created_with_a_deterministic_id() {
    let p = World::new().want("e1", desired(event("Review"))).only();
    assert_eq!(p.case, Case::New);
    match p.google {
        Some(GoogleStep::Create {
            generation: 0,
            event_id: Some(ref eid),
            ..
        }) => assert_eq!(eid, "eve1g0"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.link,
        LinkStep::Linked {
            origin: LinkOrigin::Created,
            ..
        }
    ));
}

#[test]
fn new_record_with_our_marker_on_google_is_relinked_not_created() {
    let mut w = World::new().want("c1", desired(contact("Ada", "ada@x.example", "")));
    let mut mine = item("people/c9", "e5", contact("Ada", "ada@x.example", ""));
    mine.crm_id = Some(id("c1"));
    w.unlinked.push(mine);
    let p = w.only();
    assert_eq!(p.case, Case::Relink);
    assert!(p.google.is_none(), "same content: nothing to write");
    assert!(matches!(p.link, LinkStep::Linked { google_id: Some(ref g), .. } if g == "people/c9"));
}

#[test]
fn new_contact_links_a_phone_contact_with_the_same_email() {
    let mut w = World::new().want("c1", desired(contact("Ada", "ada@x.example", "")));
    let mut phone = contact("", "ada@x.example", "from phone");
    phone.phones.push(PhoneNumber {
        number: "+442079460000".into(),
        label: "mobile".into(),
    });
    w.unlinked.push(item("people/c5", "e5", phone));
    let p = w.only();
    assert_eq!(p.case, Case::Dedup);
    let Some(GoogleStep::Update {
        ref data,
        ref google_id,
        ..
    }) = p.google
    else {
        panic!("{p:?}")
    };
    assert_eq!(google_id, "people/c5");
    assert_eq!(data.first_name, "Ada");
    assert_eq!(data.notes, "from phone", "what only the phone knew is kept");
    assert_eq!(data.phones.len(), 1);
    let Some(CrmStep::Update { ref fields, .. }) = p.crm.as_deref() else {
        panic!("the union is written back for an editor")
    };
    assert!(fields.contains_key("phones") && fields.contains_key("notes"));
    assert!(matches!(
        p.link,
        LinkStep::Linked {
            origin: LinkOrigin::LinkedExisting,
            pre_link: Some(_),
            ..
        }
    ));
}

#[test]
fn dedup_for_a_read_only_user_takes_the_crm_version() {
    let mut d = desired(contact("Ada", "ada@x.example", ""));
    d.may_edit = false;
    let mut w = World::new().want("c1", d);
    w.unlinked.push(item(
        "people/c5",
        "e5",
        contact("", "ada@x.example", "phone notes"),
    ));
    let p = w.only();
    assert_eq!(p.case, Case::Dedup);
    assert!(p.crm.is_none());
    let Some(GoogleStep::Update { ref data, .. }) = p.google else {
        panic!()
    };
    assert_eq!(data, &contact("Ada", "ada@x.example", ""));
}

#[test]
fn events_never_dedup_by_content() {
    let mut w = World::new().want("e1", desired(event("Review")));
    w.unlinked.push(item("phoneevent1", "e5", event("Review")));
    let plan = w.plan();
    assert_eq!(plan.records[0].case, Case::New);
}

#[test]
fn steady_state_plans_nothing() {
    let c = contact("Ada", "ada@x.example", "");
    let plan = World::new()
        .want("c1", desired(c.clone()))
        .linked(link("c1", "people/c1", c))
        .plan();
    assert!(plan.records.is_empty(), "{plan:?}");
}

#[test]
fn echo_of_our_own_write_only_moves_the_etag() {
    let c = contact("Ada", "ada@x.example", "");
    let p = World::new()
        .want("c1", desired(c.clone()))
        .linked(link("c1", "people/c1", c.clone()))
        .listed(RemoteChange::Present(item("people/c1", "e2", c)))
        .only();
    assert_eq!(p.case, Case::Echo);
    assert_eq!(p.link, LinkStep::Etag { etag: "e2".into() });
    assert!(p.google.is_none() && p.crm.is_none());
}

#[test]
fn our_contact_outside_our_group_is_put_back() {
    let c = contact("Ada", "ada@x.example", "");
    // Unchanged content (the group was deleted on the phone): back into the group.
    let mut outside = item("people/c1", "e2", c.clone());
    outside.in_container = false;
    let p = World::new()
        .want("c1", desired(c.clone()))
        .linked(link("c1", "people/c1", c.clone()))
        .listed(RemoteChange::Present(outside.clone()))
        .only();
    assert_eq!(p.case, Case::Push);
    assert_eq!(
        p.google,
        Some(GoogleStep::Update {
            google_id: "people/c1".into(),
            etag: "e2".into(),
            data: c.clone(),
        })
    );
    assert!(matches!(p.link, LinkStep::Linked { ref base, .. } if *base == c));

    // Edited on the phone too: written back, and the phone's version goes back in.
    let mut edited = c.clone();
    edited.notes = "from the phone".into();
    let mut outside = item("people/c1", "e3", edited.clone());
    outside.in_container = false;
    let p = World::new()
        .want("c1", desired(c.clone()))
        .linked(link("c1", "people/c1", c.clone()))
        .listed(RemoteChange::Present(outside))
        .only();
    assert!(p.crm.is_some(), "written back");
    assert!(matches!(
        p.google,
        Some(GoogleStep::Update { ref data, .. }) if *data == edited
    ));

    // Inside the group, nothing changes: the steady state plans nothing.
    let p = World::new()
        .want("c1", desired(c.clone()))
        .linked(link("c1", "people/c1", c.clone()))
        .listed(RemoteChange::Present(item("people/c1", "e1", c)))
        .plan();
    assert!(p.records.iter().all(|r| r.google.is_none()), "{p:?}");
}

#[test]
fn crm_change_is_pushed_with_the_etag() {
    let p = World::new()
        .want("c1", desired(contact("Ada", "ada@new.example", "")))
        .linked(link("c1", "people/c1", contact("Ada", "ada@x.example", "")))
        .only();
    assert_eq!(p.case, Case::Push);
    assert!(matches!(p.google, Some(GoogleStep::Update { ref etag, .. }) if etag == "e1"));
}

#[test]
fn phone_edit_by_an_editor_is_written_back() {
    let base = contact("Ada", "ada@x.example", "");
    let p = World::new()
        .want("c1", desired(base.clone()))
        .linked(link("c1", "people/c1", base))
        .listed(RemoteChange::Present(item(
            "people/c1",
            "e2",
            contact("Ada L.", "ada@x.example", ""),
        )))
        .only();
    assert_eq!(p.case, Case::Pull);
    let Some(CrmStep::Update {
        ref fields,
        expected_version,
    }) = p.crm.as_deref()
    else {
        panic!()
    };
    assert_eq!(*expected_version, 7);
    assert_eq!(fields.keys().collect::<Vec<_>>(), vec!["first_name"]);
    assert!(p.google.is_none(), "Google already has the merged value");
    assert!(
        p.revert_instead.is_some(),
        "a refused write-back reverts the phone"
    );
}

#[test]
fn phone_edit_by_a_read_only_user_is_reverted() {
    let base = contact("Ada", "ada@x.example", "");
    let mut d = desired(base.clone());
    d.may_edit = false;
    let p = World::new()
        .want("c1", d)
        .linked(link("c1", "people/c1", base.clone()))
        .listed(RemoteChange::Present(item(
            "people/c1",
            "e2",
            contact("Hacked", "ada@x.example", ""),
        )))
        .only();
    assert_eq!(p.case, Case::Pull);
    assert!(p.crm.is_none());
    assert!(
        matches!(p.google, Some(GoogleStep::Update { ref data, ref etag, .. }) if *data == base && etag == "e2")
    );
    assert_eq!(p.notes[0].action, "reverted");
}

#[test]
fn phone_edit_under_crm_to_google_is_reverted() {
    let base = contact("Ada", "ada@x.example", "");
    let mut w = World::new()
        .want("c1", desired(base.clone()))
        .linked(link("c1", "people/c1", base))
        .listed(RemoteChange::Present(item(
            "people/c1",
            "e2",
            contact("X", "ada@x.example", ""),
        )));
    w.policies.direction = Direction::CrmToGoogle;
    let p = w.only();
    assert!(p.crm.is_none());
    assert_eq!(p.notes[0].detail["why"], "direction is crm_to_google");
}

#[test]
fn both_sides_changed_merges_field_by_field_and_keeps_both_note_lines() {
    let base = contact("Ada", "ada@x.example", "one\ntwo");
    let crm = contact("Ada", "ada@new.example", "one (crm)\ntwo");
    let phone = contact("Ada L.", "ada@x.example", "one\ntwo\nthree (phone)");
    let p = World::new()
        .want("c1", desired(crm))
        .linked(link("c1", "people/c1", base))
        .listed(RemoteChange::Present(item("people/c1", "e2", phone)))
        .only();
    assert_eq!(p.case, Case::Both);
    let LinkStep::Linked { ref base, .. } = p.link else {
        panic!()
    };
    assert_eq!(base.first_name, "Ada L.");
    assert_eq!(base.emails[0].address, "ada@new.example");
    assert_eq!(base.notes, "one (crm)\ntwo\nthree (phone)");
    assert!(p.conflicts.is_empty());
    assert!(p.crm.is_some() && p.google.is_some());
}

#[test]
fn a_true_conflict_is_recorded_and_settled_by_policy() {
    let base = contact("Ada", "", "");
    let mut w = World::new()
        .want("c1", desired(contact("Ada (crm)", "", "")))
        .linked(link("c1", "people/c1", base))
        .listed(RemoteChange::Present(item(
            "people/c1",
            "e2",
            contact("Ada (phone)", "", ""),
        )));
    let p = w.only();
    assert_eq!(p.conflicts.len(), 1);
    assert!(p.crm.is_none(), "crm_wins: nothing to write back");
    w.policies.conflict = ConflictPolicy::GoogleWins;
    let p = w.only();
    assert!(p.crm.is_some());
    assert!(p.google.is_none());
}

#[test]
fn phone_delete_follows_the_policy() {
    let c = contact("Ada", "ada@x.example", "");
    let mut w = World::new()
        .want("c1", desired(c.clone()))
        .linked(link("c1", "people/c1", c))
        .listed(RemoteChange::Deleted {
            google_id: "people/c1".into(),
        });
    let p = w.only();
    assert_eq!((p.case, &p.link), (Case::PhoneDelete, &LinkStep::Unlinked));
    w.policies.google_delete = GoogleDeletePolicy::Restore;
    let p = w.only();
    assert!(matches!(
        p.google,
        Some(GoogleStep::Create { generation: 1, .. })
    ));
    w.policies.google_delete = GoogleDeletePolicy::DeleteInCrm;
    let p = w.only();
    assert!(matches!(
        p.crm.as_deref(),
        Some(CrmStep::Delete {
            expected_version: 7
        })
    ));
    w.desired.get_mut(&id("c1")).unwrap().may_delete = false;
    let p = w.only();
    assert!(p.crm.is_none());
    assert!(
        matches!(p.google, Some(GoogleStep::Create { .. })),
        "no delete right: restored"
    );
}

#[test]
fn a_full_listing_without_a_linked_item_means_it_was_deleted() {
    let c = contact("Ada", "ada@x.example", "");
    let mut w = World::new()
        .want("c1", desired(c.clone()))
        .linked(link("c1", "people/c1", c));
    w.full = true;
    assert_eq!(w.only().case, Case::PhoneDelete);
}

#[test]
fn lost_records_are_pulled_back_with_the_reason_and_the_unsynced_edit() {
    let c = contact("Ada", "ada@x.example", "");
    let mut w = World::new()
        .linked(link("c1", "people/c1", c))
        .listed(RemoteChange::Present(item(
            "people/c1",
            "e2",
            contact("Ada edited", "ada@x.example", ""),
        )));
    w.lost
        .insert(id("c1"), LostReason::NotReadable("role moved".into()));
    let p = w.only();
    assert_eq!(p.case, Case::Lost);
    assert!(
        matches!(p.google, Some(GoogleStep::Delete { etag: None, .. })),
        "access wins"
    );
    assert_eq!(p.link, LinkStep::Remove);
    assert!(p.notes[0].detail["reason"]
        .as_str()
        .unwrap()
        .contains("role moved"));
    assert_eq!(
        p.notes[0].detail["unsynced_phone_edit"]["first_name"],
        "Ada edited"
    );
}

/// Google's side of a linked contact in the link-state table.
#[derive(Debug, Clone, Copy)]
enum Side {
    Unchanged,
    Echoed,
    Edited,
    Deleted,
}

/// The row a (link state, desired?, Google side) falls into. The match over link states is
/// exhaustive, like the planner's: a new state does not compile until it has its rows here.
fn expected_case(state: LinkState, wanted: bool, side: Side) -> Option<Case> {
    use Side::*;
    match state {
        LinkState::Linked => match (wanted, side) {
            (false, _) => Some(Case::Lost),
            (true, Unchanged) => None,
            (true, Echoed) => Some(Case::Echo),
            (true, Edited) => Some(Case::Pull),
            (true, Deleted) => Some(Case::PhoneDelete),
        },
        LinkState::Unlinked => (!wanted).then_some(Case::Cleanup),
        LinkState::PendingCreate => match (wanted, side) {
            (false, _) => Some(Case::Lost),
            (true, Echoed | Edited) => Some(Case::Relink),
            (true, Unchanged | Deleted) => Some(Case::PendingRetry),
        },
        LinkState::PendingLink => match (wanted, side) {
            (false, _) => Some(Case::Lost),
            (true, Echoed | Edited) => Some(Case::Relink),
            (true, Unchanged | Deleted) => Some(Case::PendingRetry),
        },
    }
}

#[test]
fn every_link_state_is_planned_and_a_users_own_contact_is_never_deleted() {
    let base = contact("Ada", "ada@x.example", "");
    let origins = [
        LinkOrigin::Created,
        LinkOrigin::LinkedExisting,
        LinkOrigin::Imported,
    ];
    let sides = [Side::Unchanged, Side::Echoed, Side::Edited, Side::Deleted];
    let mut rows = 0;
    for state in LinkState::ALL {
        for origin in origins {
            for wanted in [false, true] {
                for side in sides {
                    let mut l = link("c1", "people/c1", base.clone());
                    l.state = state;
                    l.origin = origin;
                    let mut w = World::new().linked(l);
                    if wanted {
                        w = w.want("c1", desired(base.clone()));
                    }
                    let listed = match side {
                        Side::Unchanged => None,
                        Side::Echoed => {
                            Some(RemoteChange::Present(item("people/c1", "e2", base.clone())))
                        }
                        Side::Edited => Some(RemoteChange::Present(item(
                            "people/c1",
                            "e2",
                            contact("Ada L.", "ada@x.example", ""),
                        ))),
                        Side::Deleted => Some(RemoteChange::Deleted {
                            google_id: "people/c1".into(),
                        }),
                    };
                    if let Some(change) = listed {
                        w = w.listed(change);
                    }
                    let context = format!("{state:?} {origin:?} wanted={wanted} {side:?}");
                    let plan = w.plan();
                    let record = plan
                        .records
                        .iter()
                        .find(|r| r.crm_id.as_ref() == Some(&id("c1")));
                    assert_eq!(
                        record.map(|r| r.case),
                        expected_case(state, wanted, side),
                        "{context}: {record:#?}"
                    );
                    rows += 1;
                    let Some(r) = record else { continue };
                    // Pull-back never deletes a contact crmsync did not create (a pending
                    // create is crmsync's by definition).
                    if origin != LinkOrigin::Created && state != LinkState::PendingCreate {
                        assert!(
                            !matches!(r.google, Some(GoogleStep::Delete { .. })),
                            "{context}: {r:#?}"
                        );
                    }
                    if !wanted {
                        assert_eq!(r.link, LinkStep::Remove, "{context}");
                    }
                    if let (
                        false,
                        LinkOrigin::LinkedExisting | LinkOrigin::Imported,
                        Side::Unchanged | Side::Echoed | Side::Edited,
                        LinkState::Linked | LinkState::PendingLink,
                    ) = (wanted, origin, side, state)
                    {
                        assert!(
                            matches!(r.google, Some(GoogleStep::Release { .. })),
                            "{context}: released, not deleted: {r:#?}"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(rows, LinkState::ALL.len() * 3 * 2 * 4);
}

#[test]
fn a_crash_while_linking_a_pre_existing_contact_never_makes_it_ours_to_delete() {
    // The dedup write went through (the item now carries our marker) but the commit did
    // not: the pending_link row adopts it as LinkedExisting, never as Created.
    let base = contact("Ada", "ada@x.example", "");
    let mut pending = link("c1", "people/c5", base.clone());
    pending.state = LinkState::PendingLink;
    pending.origin = LinkOrigin::LinkedExisting;
    let mut marked = item("people/c5", "e9", base.clone());
    marked.crm_id = Some(id("c1"));
    let p = World::new()
        .want("c1", desired(base.clone()))
        .linked(pending)
        .listed(RemoteChange::Present(marked.clone()))
        .only();
    assert_eq!(p.case, Case::Relink);
    assert!(matches!(
        p.link,
        LinkStep::Linked {
            origin: LinkOrigin::LinkedExisting,
            ..
        }
    ));
    // A state-DB loss: a marked contact without our creation marker relinks as the user's.
    let mut w = World::new().want("c1", desired(base.clone()));
    w.unlinked.push(marked.clone());
    assert!(matches!(
        w.only().link,
        LinkStep::Linked {
            origin: LinkOrigin::LinkedExisting,
            ..
        }
    ));
    // …and, no longer wanted, it is released, while one crmsync created is deleted.
    let mut w = World::<SyncedContact>::new();
    w.unlinked.push(marked.clone());
    assert!(matches!(w.only().google, Some(GoogleStep::Release { .. })));
    let mut ours = marked;
    ours.created_by_us = true;
    let mut w = World::<SyncedContact>::new();
    w.unlinked.push(ours);
    assert!(matches!(w.only().google, Some(GoogleStep::Delete { .. })));
}

#[test]
fn events_aged_out_of_the_window_stay() {
    let e = event("Old");
    let mut w = World::new().linked(link("e1", "ev1", e));
    w.retained.insert(id("e1"));
    assert!(w.plan().records.is_empty());
    let mut d = desired(event("Old"));
    d.may_create = false;
    let w = World::new().want("e2", d);
    assert!(w.plan().records.is_empty(), "out of window: not created");
}

#[test]
fn phone_created_contacts_are_imported_or_reported_once() {
    let mut w: World<SyncedContact> = World::new();
    w.unlinked.push(item(
        "people/c77",
        "e1",
        contact("New", "new@x.example", ""),
    ));
    let p = w.only();
    assert_eq!(p.case, Case::PhoneNew);
    assert!(
        matches!(p.crm.as_deref(), Some(CrmStep::Create { ref new_id, .. }) if new_id.as_str() == "g-people-c77")
    );
    assert!(matches!(
        p.link,
        LinkStep::Linked {
            origin: LinkOrigin::Imported,
            ..
        }
    ));

    w.crm_match.hidden = Some(id("secret"));
    let p = w.only();
    assert_eq!(
        p.notes[0].detail["possible_duplicate_of_hidden_record"],
        "secret"
    );
    assert!(p.crm.is_some(), "a hidden match is never linked");

    w.crm_match = CrmMatch::default();
    w.policies.may_create_in_crm = false;
    let p = w.only();
    assert!(p.crm.is_none());
    assert_eq!(p.notes[0].action, "not_imported");
    w.reported.insert("people/c77".into());
    assert!(w.plan().records.is_empty(), "reported once");

    // Not in the crmsync group: none of our business.
    let mut w: World<SyncedContact> = World::new();
    let mut other = item("people/c78", "e1", contact("Other", "o@x.example", ""));
    other.in_container = false;
    w.unlinked.push(other);
    assert!(w.plan().records.is_empty());
}

#[test]
fn a_phone_contact_matching_a_readable_record_is_not_imported() {
    let mut w: World<SyncedContact> = World::new();
    w.unlinked.push(item(
        "people/c77",
        "e1",
        contact("Ada", "ada@x.example", ""),
    ));
    w.crm_match.readable = Some(id("c1"));
    let p = w.only();
    assert!(p.crm.is_none());
    assert_eq!(p.notes[0].action, "not_imported");
}

#[test]
fn pending_creates_are_resolved_before_anything_else() {
    let e = event("Review");
    let mut pending = link("e1", "eve1g0", e.clone());
    pending.state = LinkState::PendingCreate;
    // The insert went through: link it.
    let p = World::new()
        .want("e1", desired(e.clone()))
        .linked(pending.clone())
        .listed(RemoteChange::Present(item("eve1g0", "e3", e.clone())))
        .only();
    assert_eq!(p.case, Case::Relink);
    assert!(p.google.is_none());
    // Unknown outcome: retry the same id (a 409 then links it).
    let p = World::new()
        .want("e1", desired(e.clone()))
        .linked(pending.clone())
        .only();
    assert_eq!(p.case, Case::PendingRetry);
    assert!(
        matches!(p.google, Some(GoogleStep::Create { generation: 0, event_id: Some(ref i), .. }) if i == "eve1g0")
    );
    // The id is reserved by a deleted event: next generation.
    let p = World::new()
        .want("e1", desired(e))
        .linked(pending)
        .listed(RemoteChange::Deleted {
            google_id: "eve1g0".into(),
        })
        .only();
    assert!(matches!(
        p.google,
        Some(GoogleStep::Create { generation: 1, .. })
    ));
}

#[test]
fn renamed_contacts_keep_their_link() {
    let c = contact("Ada", "ada@x.example", "");
    let mut moved = item("people/c2", "e1", c.clone());
    moved.previous_ids = vec!["people/c1".into()];
    let p = World::new()
        .want("c1", desired(c.clone()))
        .linked(link("c1", "people/c1", c))
        .listed(RemoteChange::Present(moved))
        .only();
    assert_eq!(p.case, Case::Echo);
    assert!(matches!(p.link, LinkStep::Linked { google_id: Some(ref g), .. } if g == "people/c2"));
}

#[test]
fn a_rename_with_a_new_etag_moves_the_link_too() {
    // Google gives a renamed person a new etag as well: not a plain echo.
    let c = contact("Ada", "ada@x.example", "");
    let mut moved = item("people/c2", "e2", c.clone());
    moved.previous_ids = vec!["people/c1".into()];
    let p = World::new()
        .want("c1", desired(c.clone()))
        .linked(link("c1", "people/c1", c))
        .listed(RemoteChange::Present(moved))
        .only();
    assert_eq!(p.case, Case::Echo);
    assert!(matches!(
        p.link,
        LinkStep::Linked { google_id: Some(ref g), etag: Some(ref e), .. } if g == "people/c2" && e == "e2"
    ));
}

#[test]
fn an_aged_out_event_deleted_on_the_phone_is_not_restored() {
    let e = event("Old");
    let mut d = desired(e.clone());
    d.may_create = false;
    let mut w = World::new()
        .want("e1", d)
        .linked(link("e1", "ev1", e))
        .listed(RemoteChange::Deleted {
            google_id: "ev1".into(),
        });
    w.retained.insert(id("e1"));
    w.policies.google_delete = GoogleDeletePolicy::Restore;
    let p = w.only();
    assert_eq!((p.case, &p.link), (Case::PhoneDelete, &LinkStep::Remove));
    assert!(p.google.is_none(), "never created outside the window");
}

#[test]
fn leftovers_of_a_crash_for_unwanted_records_are_deleted() {
    let mut w: World<SyncedEvent> = World::new();
    let mut ours = item("evgone", "e1", event("Gone"));
    ours.crm_id = Some(id("gone"));
    w.unlinked.push(ours);
    let p = w.only();
    assert_eq!(p.case, Case::Lost);
    assert!(p.deletes_from_google());
}

#[test]
fn single_occurrence_edits_are_reported_not_imported() {
    let mut w: World<SyncedEvent> = World::new();
    let mut exception = item("ev1_20261201T150000Z", "e1", event("Moved"));
    exception.recurring_parent = Some("ev1".into());
    w.unlinked.push(exception);
    let p = w.only();
    assert!(p.crm.is_none() && p.google.is_none());
    assert_eq!(p.notes[0].action, "not_imported");
}

#[test]
fn the_breaker_ignores_small_losses_and_trips_on_mass_deletion() {
    assert!(!breaker_trips(2, 3, 0.5));
    assert!(!breaker_trips(5, 10, 0.5));
    assert!(breaker_trips(6, 10, 0.5));
    assert!(breaker_trips(100, 100, 0.5));
}

// ── property: carrying a plan out and planning again yields nothing to do ──────────────

/// A tiny in-memory model of both sides, to carry plans out without I/O.
#[derive(Debug, Clone)]
struct Sim {
    crm: BTreeMap<CrmId, (SyncedContact, i64)>,
    google: BTreeMap<String, (SyncedContact, String, Option<CrmId>)>,
    links: BTreeMap<CrmId, Link<SyncedContact>>,
    next: u64,
}

impl Sim {
    fn apply(&mut self, plans: &[RecordPlan<SyncedContact>]) -> Vec<RemoteChange<SyncedContact>> {
        let mut changed = Vec::new();
        for p in plans {
            let crm_id = p.crm_id.clone();
            if let (Some(step), Some(c)) = (p.crm.as_deref(), &crm_id) {
                match step {
                    CrmStep::Update { fields, .. } => {
                        let (data, v) = self.crm.get_mut(c).unwrap();
                        let mut json = serde_json::to_value(&*data).unwrap();
                        for (k, val) in fields {
                            json[k] = val.clone();
                        }
                        *data = serde_json::from_value(json).unwrap();
                        *v += 1;
                    }
                    CrmStep::Create { new_id, data } => {
                        self.crm.insert(new_id.clone(), (data.clone(), 1));
                    }
                    CrmStep::Delete { .. } => {
                        self.crm.remove(c);
                    }
                }
            }
            let mut written: Option<(String, String)> = None;
            match &p.google {
                Some(GoogleStep::Create { data, .. }) => {
                    self.next += 1;
                    let g = format!("people/n{}", self.next);
                    let etag = format!("t{}", self.next);
                    self.google
                        .insert(g.clone(), (data.clone(), etag.clone(), crm_id.clone()));
                    written = Some((g, etag));
                }
                Some(GoogleStep::Update {
                    google_id, data, ..
                }) => {
                    self.next += 1;
                    let etag = format!("t{}", self.next);
                    let entry = self.google.get_mut(google_id).unwrap();
                    entry.0 = data.clone();
                    entry.1 = etag.clone();
                    entry.2 = crm_id.clone();
                    written = Some((google_id.clone(), etag));
                }
                Some(GoogleStep::Delete { google_id, .. }) => {
                    self.google.remove(google_id);
                    changed.push(RemoteChange::Deleted {
                        google_id: google_id.clone(),
                    });
                }
                Some(GoogleStep::Release { google_id, .. }) => {
                    // The user's own contact stays, without our marker.
                    self.next += 1;
                    let etag = format!("t{}", self.next);
                    if let Some(entry) = self.google.get_mut(google_id) {
                        entry.1 = etag.clone();
                        entry.2 = None;
                        let mut it = item(google_id, &etag, entry.0.clone());
                        it.in_container = false;
                        changed.push(RemoteChange::Present(it));
                    }
                }
                None => {}
            }
            if let Some((g, etag)) = &written {
                let (data, _, marker) = self.google[g].clone();
                let mut it = item(g, etag, data);
                it.crm_id = marker;
                changed.push(RemoteChange::Present(it));
            }
            let Some(c) = crm_id else { continue };
            match &p.link {
                LinkStep::Linked {
                    google_id,
                    etag,
                    base,
                    origin,
                    ..
                } => {
                    let current = self.links.get(&c);
                    let (g, e) = match &written {
                        Some((g, e)) => (Some(g.clone()), Some(e.clone())),
                        None => (
                            google_id
                                .clone()
                                .or_else(|| current.and_then(|l| l.google_id.clone())),
                            etag.clone()
                                .or_else(|| current.and_then(|l| l.etag.clone())),
                        ),
                    };
                    let version = self.crm.get(&c).map(|x| x.1);
                    self.links.insert(
                        c.clone(),
                        Link {
                            crm_id: c,
                            state: LinkState::Linked,
                            google_id: g,
                            etag: e,
                            generation: 0,
                            base: Some(base.clone()),
                            crm_version: version,
                            origin: *origin,
                        },
                    );
                }
                LinkStep::Etag { etag } => {
                    self.links.get_mut(&c).unwrap().etag = Some(etag.clone());
                }
                LinkStep::Unlinked => {
                    let l = self.links.get_mut(&c).unwrap();
                    l.state = LinkState::Unlinked;
                    l.google_id = None;
                }
                LinkStep::Remove => {
                    self.links.remove(&c);
                }
                LinkStep::Keep => {}
            }
        }
        changed
    }

    fn world(
        &self,
        changes: Vec<RemoteChange<SyncedContact>>,
        policies: Policies,
    ) -> World<SyncedContact> {
        let mut w = World::new();
        w.policies = policies;
        for (c, (data, v)) in &self.crm {
            let mut d = desired(data.clone());
            d.version = *v;
            w.desired.insert(c.clone(), d);
        }
        w.links = self.links.clone();
        w.changes = changes;
        w
    }
}

fn arb_contact() -> impl Strategy<Value = SyncedContact> {
    (
        prop_oneof![Just("Ada"), Just("Bob"), Just("Cy")],
        prop_oneof![Just(""), Just("a@x.example"), Just("b@x.example")],
        prop_oneof![Just(""), Just("n1"), Just("n1\nn2"), Just("n0\nn1")],
    )
        .prop_map(|(n, e, notes)| contact(n, e, notes))
}

proptest! {
    #[test]
    fn planning_again_after_carrying_out_a_plan_changes_nothing(
        records in proptest::collection::vec((arb_contact(), arb_contact(), arb_contact(), 0u8..4), 1..6),
        policy in prop_oneof![Just(ConflictPolicy::CrmWins), Just(ConflictPolicy::GoogleWins)],
        delete_policy in prop_oneof![Just(GoogleDeletePolicy::Unlink), Just(GoogleDeletePolicy::Restore)],
    ) {
        // Each record: base, CRM now, Google now, and which of them exist.
        let mut sim = Sim { crm: BTreeMap::new(), google: BTreeMap::new(), links: BTreeMap::new(), next: 0 };
        let mut changes = Vec::new();
        for (i, (base, crm, phone, shape)) in records.into_iter().enumerate() {
            let c = id(&format!("c{i}"));
            let g = format!("people/o{i}");
            match shape {
                0 => { sim.crm.insert(c, (crm, 1)); } // new
                1 | 2 => {
                    sim.crm.insert(c.clone(), (crm, 1));
                    sim.links.insert(c.clone(), link(c.as_str(), &g, base));
                    if shape == 1 {
                        sim.google.insert(g.clone(), (phone.clone(), "x".into(), Some(c.clone())));
                        let mut it = item(&g, "x", phone);
                        it.crm_id = Some(c);
                        changes.push(RemoteChange::Present(it));
                    } else {
                        changes.push(RemoteChange::Deleted { google_id: g });
                    }
                }
                _ => {
                    // lost: linked, no longer desired
                    sim.links.insert(c.clone(), link(c.as_str(), &g, base.clone()));
                    sim.google.insert(g.clone(), (base, "x".into(), Some(c)));
                }
            }
        }
        let policies = Policies { conflict: policy, google_delete: delete_policy, ..TWO_WAY };
        let first = sim.world(changes, policies).plan();
        let echoed = sim.apply(&first.records);
        let second = sim.world(echoed, policies).plan();
        let left: Vec<_> = second.records.iter().filter(|r| !r.is_noop()).collect();
        prop_assert!(left.is_empty(), "second plan not empty: {:#?}", left);
    }
}
