use super::*;
use crate::crm::orgfile;
use crate::model::{Attendee, Contact, TeamId};
use crate::scope::Selection;
use crate::security::synthetic::{random_security_change, small_org};
use crate::sync::desired::{project_contact, project_event};
use chrono::TimeZone;
use rand::prelude::*;
use rand::rngs::StdRng;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

fn example() -> OrgModel {
    orgfile::parse(
        "example",
        include_str!("../../../tests/fixtures/example-org.json"),
    )
    .unwrap()
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn rec(kind: ObjectKind, id: &str) -> RecordRef {
    RecordRef::new(kind, CrmId::new(id).unwrap())
}

fn scope(mode: SelectionMode) -> EffectiveScope {
    EffectiveScope {
        contact: Selection::mode(mode),
        event: Selection::mode(mode),
        ..EffectiveScope::builtin()
    }
}

fn scopes(model: &OrgModel, mode: SelectionMode) -> BTreeMap<UserId, EffectiveScope> {
    model
        .users
        .keys()
        .map(|u| (u.clone(), scope(mode)))
        .collect()
}

/// `by_mirror` for two models, the delta between them and the given holders. When the
/// models share their records, the users' signatures alone (the index before dropped) must
/// decide exactly as the index does.
fn affected(
    before: &OrgModel,
    after: &OrgModel,
    holders: &BTreeMap<RecordRef, BTreeSet<UserId>>,
    scopes: &BTreeMap<UserId, EffectiveScope>,
) -> Affected {
    let delta = MirrorDelta::between(before, after);
    let (old, new) = (Access::build(before), Access::build(after));
    let touched = touched_records(Some(before), after, &delta);
    let with = |side: Before<'_, '_>| {
        by_mirror(&MirrorInputs {
            before: Some(side),
            after: &new,
            delta: &delta,
            touched: &touched,
            holders,
            scopes,
            now: now(),
        })
    };
    let indexed = with(Before::Index(&old));
    if crate::security::records_shared(before, after) {
        let signed = crate::security::SignedBefore::of(&old);
        assert_eq!(with(Before::Signed(&signed, before)), indexed);
    }
    indexed
}

fn users_of(a: &Affected) -> Vec<&str> {
    a.ids().map(UserId::as_str).collect()
}

fn contact_mut<'m>(m: &'m mut OrgModel, id: &str) -> &'m mut Contact {
    m.contacts_mut().get_mut(&CrmId::new(id).unwrap()).unwrap()
}

#[test]
fn deltas_name_changed_entities_and_tell_security_changes_apart() {
    let before = example();
    let mut after = before.clone();
    contact_mut(&mut after, "c1").title = "CEO".into();
    let delta = MirrorDelta::between(&before, &after);
    assert_eq!(
        delta.entities,
        BTreeSet::from([(EntityKind::Contact, "c1".to_owned())])
    );
    assert!(!delta.security_model_changed());
    after.users.get_mut(&uid("hank")).unwrap().name = "Hank W.".into();
    let delta = MirrorDelta::between(&before, &after);
    assert_eq!(delta.len(), 2);
    assert!(delta.security_model_changed());
    assert!(MirrorDelta::between(&before, &before).is_empty());
    let mut org_only = MirrorDelta::default();
    org_only.insert(EntityKind::Org, "org");
    assert!(
        org_only.security_model_changed(),
        "org settings need a look too"
    );
}

#[test]
fn touched_records_follow_what_a_synced_form_shows() {
    let model = example();
    let mut delta = MirrorDelta::default();
    delta.insert(EntityKind::Contact, "c1");
    // c1 itself, and e1 which lists c1 as an attendee and parent.
    assert_eq!(
        touched_records(None, &model, &delta),
        BTreeSet::from([rec(ObjectKind::Contact, "c1"), rec(ObjectKind::Event, "e1")])
    );
    // An organization rename: its contacts (they show its name) and events linked to it.
    let mut delta = MirrorDelta::default();
    delta.insert(EntityKind::Organization, "o1");
    assert_eq!(
        touched_records(None, &model, &delta),
        BTreeSet::from([rec(ObjectKind::Contact, "c1"), rec(ObjectKind::Event, "e1")])
    );
    // A user rename: the events that list them as an attendee.
    let mut delta = MirrorDelta::default();
    delta.insert(EntityKind::User, "erin");
    assert_eq!(
        touched_records(None, &model, &delta),
        BTreeSet::from([rec(ObjectKind::Event, "e1")])
    );
    delta = MirrorDelta::default();
    delta.insert(EntityKind::User, "hank");
    assert!(touched_records(None, &model, &delta).is_empty());
    // With the model before: a role move shows on no attendee line, a rename does.
    let mut moved = model.clone();
    moved.users.get_mut(&uid("erin")).unwrap().role = None;
    let mut delta = MirrorDelta::default();
    delta.insert(EntityKind::User, "erin");
    assert!(touched_records(Some(&model), &moved, &delta).is_empty());
    moved.users.get_mut(&uid("erin")).unwrap().name = "Erin E.".into();
    assert_eq!(
        touched_records(Some(&model), &moved, &delta),
        BTreeSet::from([rec(ObjectKind::Event, "e1")])
    );
    // A deleted record is named by the delta alone.
    let mut delta = MirrorDelta::default();
    delta.insert(EntityKind::Event, "gone");
    assert_eq!(
        touched_records(None, &model, &delta),
        BTreeSet::from([rec(ObjectKind::Event, "gone")])
    );
}

#[test]
fn a_record_change_names_its_holders_and_who_should_have_it_now() {
    let before = example();
    let mut after = before.clone();
    contact_mut(&mut after, "c1").title = "CEO".into();
    // c1 is frank's; erin manages frank; alice is an admin; hank may not read it.
    let all = scopes(&before, SelectionMode::AllVisible);
    let none = BTreeMap::new();
    let got = affected(&before, &after, &none, &all);
    assert_eq!(users_of(&got), ["alice", "erin", "frank"]);
    assert_eq!(
        got.reasons(&uid("frank")),
        Some(&BTreeSet::from([
            Reason::RecordChanged(ObjectKind::Contact),
            Reason::RecordChanged(ObjectKind::Event)
        ]))
    );
    // Under `mine`, only the owner (of c1 and of e1, which shows c1) wants it.
    let mine = scopes(&before, SelectionMode::Mine);
    let got = affected(&before, &after, &none, &mine);
    assert_eq!(users_of(&got), ["frank"]);
    // A holder is named whatever it may read now (it may have to lose the record).
    let holders = BTreeMap::from([(
        rec(ObjectKind::Contact, "c1"),
        BTreeSet::from([uid("hank")]),
    )]);
    let got = affected(&before, &after, &holders, &mine);
    assert_eq!(users_of(&got), ["frank", "hank"]);
    assert_eq!(
        got.reasons(&uid("hank")),
        Some(&BTreeSet::from([Reason::LinkedRecordChanged(
            ObjectKind::Contact
        )]))
    );
    // Nobody else, and nothing at all for an unchanged mirror.
    assert!(affected(&before, &before, &holders, &all).is_empty());
}

#[test]
fn a_deleted_record_names_only_its_holders() {
    let before = example();
    let mut after = before.clone();
    after.contacts_mut().remove(&CrmId::new("c1").unwrap());
    let holders = BTreeMap::from([(
        rec(ObjectKind::Contact, "c1"),
        BTreeSet::from([uid("frank"), uid("erin")]),
    )]);
    let all = scopes(&before, SelectionMode::AllVisible);
    let got = affected(&before, &after, &holders, &all);
    // e1 showed c1 as an attendee: its readers see the line go.
    assert!(got
        .reasons(&uid("frank"))
        .unwrap()
        .contains(&Reason::LinkedRecordChanged(ObjectKind::Contact)));
    assert!(got
        .reasons(&uid("alice"))
        .unwrap()
        .contains(&Reason::RecordChanged(ObjectKind::Event)));
    assert!(!got.contains(&uid("hank")));
}

#[test]
fn a_permission_change_names_the_users_whose_access_changed_and_the_mover() {
    let before = example();
    let mut after = before.clone();
    // hank moves from rep_west to rep_east: erin (mgr_east) now reads his records.
    after.users.get_mut(&uid("hank")).unwrap().role = Some("rep_east".parse().unwrap());
    let mine = scopes(&before, SelectionMode::Mine);
    let got = affected(&before, &after, &BTreeMap::new(), &mine);
    let hank = got.reasons(&uid("hank")).unwrap();
    assert!(hank.contains(&Reason::OwnEntity), "{hank:?}");
    let erin = got.reasons(&uid("erin")).unwrap();
    assert!(
        erin.contains(&Reason::Permission(ChangeCause::Subordinates)),
        "{erin:?}"
    );
    assert!(!got.contains(&uid("frank")), "{got:?}");
    assert!(
        !got.contains(&uid("alice")),
        "the admin reads everything anyway: {got:?}"
    );

    // Without the model as it was, a security change affects everyone, with that reason.
    let delta = MirrorDelta::between(&before, &after);
    let new = Access::build(&after);
    let touched = touched_records(None, &after, &delta);
    let blind = by_mirror(&MirrorInputs {
        before: None,
        after: &new,
        delta: &delta,
        touched: &touched,
        holders: &BTreeMap::new(),
        scopes: &mine,
        now: now(),
    });
    assert_eq!(users_of(&blind), ["alice", "erin", "frank", "hank"]);
    assert!(blind
        .reasons(&uid("alice"))
        .unwrap()
        .contains(&Reason::MirrorUnknown));
    // Same when the caller says its "before" already held part of the change.
    let old = Access::build(&before);
    let partial = MirrorDelta {
        before_incomplete: true,
        ..delta.clone()
    };
    let blind = by_mirror(&MirrorInputs {
        before: Some(Before::Index(&old)),
        after: &new,
        delta: &partial,
        touched: &touched,
        holders: &BTreeMap::new(),
        scopes: &mine,
        now: now(),
    });
    assert_eq!(blind.len(), 4);
}

#[test]
fn a_team_scope_notices_new_team_mates_even_for_admins() {
    let before = example();
    let mut after = before.clone();
    let team: TeamId = "west".parse().unwrap();
    after.teams.insert(
        team.clone(),
        crate::model::Team {
            id: team,
            name: "West".into(),
            members: vec![uid("alice"), uid("hank")],
        },
    );
    let mut team_scopes = scopes(&before, SelectionMode::Mine);
    team_scopes.insert(uid("alice"), scope(SelectionMode::Team));
    let got = affected(&before, &after, &BTreeMap::new(), &team_scopes);
    assert!(
        got.reasons(&uid("alice"))
            .unwrap()
            .contains(&Reason::TeamScope),
        "{got:?}"
    );
    // Under `mine` the admin's selection does not depend on team-mates.
    let got = affected(
        &before,
        &after,
        &BTreeMap::new(),
        &scopes(&before, SelectionMode::Mine),
    );
    assert!(!got.contains(&uid("alice")), "{got:?}");
}

#[test]
fn org_settings_affect_everyone() {
    let before = example();
    let mut after = before.clone();
    after.settings.google_domains.push("other.example".into());
    let got = affected(
        &before,
        &after,
        &BTreeMap::new(),
        &scopes(&before, SelectionMode::Mine),
    );
    assert_eq!(got.len(), 4);
    assert!(got
        .reasons(&uid("hank"))
        .unwrap()
        .contains(&Reason::OrgSettings));
}

#[test]
fn scope_fingerprints_and_pending_work() {
    let stored = BTreeMap::from([
        (uid("erin"), Some("a".to_owned())),
        (uid("frank"), Some("b".to_owned())),
        (uid("hank"), None),
    ]);
    let effective = BTreeMap::from([
        (uid("alice"), "x".to_owned()),
        (uid("erin"), "a".to_owned()),
        (uid("frank"), "changed".to_owned()),
        (uid("hank"), "h".to_owned()),
    ]);
    let got = by_scope(&stored, &effective);
    assert_eq!(users_of(&got), ["frank", "hank"]);
    assert!(got
        .reasons(&uid("frank"))
        .unwrap()
        .contains(&Reason::ScopeChanged));

    let pending = PendingWork {
        pending_links: BTreeSet::from([uid("erin")]),
        revocations: BTreeSet::from([uid("hank"), uid("erin")]),
        failing: BTreeSet::from([uid("frank")]),
    };
    let got = by_pending(&pending);
    assert_eq!(
        got.reasons(&uid("erin")),
        Some(&BTreeSet::from([Reason::PendingLink, Reason::Revocation]))
    );
    assert_eq!(got.count_by_reason()["revocation"], 2);
    let mut all = got.clone();
    all.merge(by_scope(&stored, &effective));
    assert_eq!(all.reasons(&uid("frank")).unwrap().len(), 2);
}

/// Everything a user's Google account should hold under `model`: per record, its synced
/// form (events as this user sees them).
fn view(model: &OrgModel, user: &UserId, scope: &EffectiveScope) -> BTreeMap<String, String> {
    let access = Access::build(model);
    let mut out = BTreeMap::new();
    let Some(u) = model.users.get(user) else {
        return out;
    };
    if !u.active {
        return out;
    }
    for kind in [ObjectKind::Contact, ObjectKind::Event] {
        let Ok(set) = desired_set(&access, user, scope, kind, now()) else {
            continue;
        };
        for id in set.iter() {
            let form = match kind {
                ObjectKind::Contact => {
                    serde_json::to_string(&project_contact(model, &model.contacts[id]))
                }
                _ => serde_json::to_string(&project_event(&access, user, &model.events[id])),
            }
            .unwrap();
            out.insert(format!("{kind}:{id}"), form);
        }
    }
    out
}

/// A random change to records or to what records show (names), never to permissions.
fn random_record_change(model: &OrgModel, seed: u64) -> OrgModel {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut m = model.clone();
    let users: Vec<UserId> = m.users.keys().cloned().collect();
    let contacts: Vec<CrmId> = m.contacts.keys().cloned().collect();
    let events: Vec<CrmId> = m.events.keys().cloned().collect();
    let orgs: Vec<CrmId> = m.organizations.keys().cloned().collect();
    for _ in 0..rng.random_range(1..=3) {
        match rng.random_range(0..8) {
            0 => {
                if let Some(c) = contacts.choose(&mut rng) {
                    if let Some(c) = m.contacts_mut().get_mut(c) {
                        c.last_name = format!("Renamed{}", rng.random::<u16>());
                    }
                }
            }
            1 => {
                if let (Some(c), Some(u)) = (contacts.choose(&mut rng), users.choose(&mut rng)) {
                    if let Some(c) = m.contacts_mut().get_mut(c) {
                        c.owner = u.clone();
                    }
                }
            }
            2 => {
                if let (Some(c), Some(o)) = (contacts.choose(&mut rng), orgs.choose(&mut rng)) {
                    if let Some(c) = m.contacts_mut().get_mut(c) {
                        c.organization = Some(o.clone());
                    }
                }
            }
            3 => {
                if let Some(o) = orgs.choose(&mut rng) {
                    if let Some(o) = m.organizations_mut().get_mut(o) {
                        o.name = format!("Org{}", rng.random::<u16>());
                    }
                }
            }
            4 => {
                if let Some(c) = contacts.choose(&mut rng) {
                    m.contacts_mut().remove(c);
                }
            }
            5 => {
                if let (Some(e), Some(c)) = (events.choose(&mut rng), contacts.choose(&mut rng)) {
                    if let Some(e) = m.events_mut().get_mut(e) {
                        e.attendees.push(Attendee::Contact(c.clone()));
                    }
                }
            }
            6 => {
                if let Some(e) = events.choose(&mut rng) {
                    if let Some(e) = m.events_mut().get_mut(e) {
                        e.title = format!("Moved{}", rng.random::<u16>());
                        if let Some(u) = users.choose(&mut rng) {
                            e.owner = u.clone();
                        }
                    }
                }
            }
            _ => {
                if let Some(u) = users.choose(&mut rng) {
                    if let Some(u) = m.users.get_mut(u) {
                        u.name = format!("User{}", rng.random::<u16>());
                    }
                }
            }
        }
    }
    m
}

/// Soundness: whoever's Google account should hold something else after a change (another
/// set of records, or another synced form of one) is named — for random permission changes
/// and random record changes, under random scopes, with links as the old state left them.
#[test]
fn every_user_whose_account_should_change_is_named() {
    let modes = [
        SelectionMode::Mine,
        SelectionMode::Team,
        SelectionMode::AllVisible,
        SelectionMode::None,
    ];
    let mut checked = 0;
    for seed in 0..120u64 {
        let before = small_org(seed);
        let after = if seed % 2 == 0 {
            random_security_change(&before, seed).0
        } else {
            random_record_change(&before, seed)
        };
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let user_scopes: BTreeMap<UserId, EffectiveScope> = before
            .users
            .keys()
            .chain(after.users.keys())
            .map(|u| (u.clone(), scope(*modes.choose(&mut rng).unwrap())))
            .collect();
        let mut holders: BTreeMap<RecordRef, BTreeSet<UserId>> = BTreeMap::new();
        let mut old_views = BTreeMap::new();
        for (user, s) in &user_scopes {
            let v = view(&before, user, s);
            for key in v.keys() {
                holders
                    .entry(key.parse().unwrap())
                    .or_default()
                    .insert(user.clone());
            }
            old_views.insert(user.clone(), v);
        }
        let got = affected(&before, &after, &holders, &user_scopes);
        for (user, s) in &user_scopes {
            let new_view = view(&after, user, s);
            if old_views[user] != new_view {
                checked += 1;
                assert!(
                    got.contains(user),
                    "seed {seed}: {user}'s account should change but is not named: {got:?}"
                );
            }
        }
    }
    assert!(
        checked > 30,
        "the changes changed too few accounts ({checked})"
    );
}

/// Deciding record by record and from whole desired sets gives the same users.
#[test]
fn both_ways_of_finding_who_wants_a_record_agree() {
    for seed in 0..40u64 {
        let before = small_org(seed);
        let after = random_record_change(&before, seed + 1000);
        let delta = MirrorDelta::between(&before, &after);
        let access = Access::build(&after);
        let touched: BTreeSet<RecordRef> = after
            .contacts
            .keys()
            .map(|id| RecordRef::new(ObjectKind::Contact, id.clone()))
            .chain(
                after
                    .events
                    .keys()
                    .map(|id| RecordRef::new(ObjectKind::Event, id.clone())),
            )
            .collect();
        let user_scopes = scopes(&after, SelectionMode::Team);
        let inputs = MirrorInputs {
            before: None,
            after: &access,
            delta: &delta,
            touched: &touched,
            holders: &BTreeMap::new(),
            scopes: &user_scopes,
            now: now(),
        };
        let (mut one, mut bulk) = (Affected::default(), Affected::default());
        should_have_now(&inputs, &mut one, usize::MAX);
        should_have_now(&inputs, &mut bulk, 0);
        assert_eq!(one, bulk, "seed {seed}");
    }
}
