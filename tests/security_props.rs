//! Property tests over random small orgs (seeded generator in `security::synthetic`):
//! the bulk readable set equals the per-pair decision, and every user whose readable set
//! changes under a random security (and record) change is reported as affected, and an
//! index kept and patched with record changes answers as one built afresh.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crmsync::crm::OrgModel;
use crmsync::model::{CrmId, ObjectKind, RecordRef, UserId, Visibility};
use crmsync::security::synthetic::{
    generate, random_record_changes, random_security_change, small_org, SyntheticSpec,
};
use crmsync::security::{affected_users, Access, Operation};
use proptest::prelude::*;

fn record_ids(model: &OrgModel, kind: ObjectKind) -> Vec<crmsync::model::CrmId> {
    match kind {
        ObjectKind::Contact => model.contacts.keys().cloned().collect(),
        ObjectKind::Event => model.events.keys().cloned().collect(),
        ObjectKind::Organization => model.organizations.keys().cloned().collect(),
    }
}

fn readable_by_pairs(access: &Access<'_>, user: &UserId, kind: ObjectKind) -> Vec<String> {
    record_ids(access.model(), kind)
        .into_iter()
        .filter(|id| {
            access
                .may(user, &RecordRef::new(kind, id.clone()), Operation::Read)
                .unwrap()
        })
        .map(|id| id.to_string())
        .collect()
}

fn readable_ids(access: &Access<'_>, user: &UserId, kind: ObjectKind) -> Vec<String> {
    access
        .readable(user, kind)
        .unwrap()
        .iter()
        .map(|id| id.to_string())
        .collect()
}

/// Small record edits mixed into a change: owner, visibility, links.
fn mutate_records(model: &mut OrgModel, pick: u64) {
    let users: Vec<UserId> = model.users.keys().cloned().collect();
    if users.is_empty() {
        return;
    }
    let user = users[(pick as usize) % users.len()].clone();
    match pick % 4 {
        0 => {
            if let Some(c) = model.contacts_mut().values_mut().next() {
                c.owner = user;
            }
        }
        1 => {
            if let Some(c) = model.contacts_mut().values_mut().last() {
                c.visibility = Some(Visibility::Everyone);
            }
        }
        2 => {
            if let Some(e) = model.events_mut().values_mut().next() {
                e.links.clear();
            }
        }
        _ => {
            let first = model.contacts.keys().next().cloned();
            if let Some(id) = first {
                model.contacts_mut().remove(&id);
            }
        }
    }
}

/// Delegated mode on a model: the reader gate on, and for each record (seeded) either no
/// reader list (the CRM showed it to nobody yet) or a random subset of the users.
fn with_readers(model: &mut OrgModel, seed: u64) {
    let users: Vec<UserId> = model.users.keys().cloned().collect();
    model.settings.reader_gate = true;
    model.readers_mut().clear();
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let records: Vec<RecordRef> = ObjectKind::ALL
        .into_iter()
        .flat_map(|kind| {
            record_ids(model, kind)
                .into_iter()
                .map(move |id| RecordRef::new(kind, id))
        })
        .collect();
    for record in records {
        if next() % 5 == 0 {
            continue;
        }
        let list: Vec<UserId> = users.iter().filter(|_| next() % 3 != 0).cloned().collect();
        model.readers_mut().insert(record, list);
    }
}

/// Changes who the CRM shows one record to (delegated mode), or drops its list.
fn mutate_readers(model: &mut OrgModel, pick: u64) {
    let users: Vec<UserId> = model.users.keys().cloned().collect();
    let records: Vec<RecordRef> = model.readers.keys().cloned().collect();
    if records.is_empty() || users.is_empty() {
        return;
    }
    let record = records[(pick as usize / 7) % records.len()].clone();
    match pick % 3 {
        0 => {
            model.readers_mut().remove(&record);
        }
        1 => {
            let user = users[(pick as usize / 3) % users.len()].clone();
            let list = model.readers_mut().entry(record).or_default();
            match list.iter().position(|u| *u == user) {
                Some(i) => {
                    list.remove(i);
                }
                None => list.push(user),
            }
        }
        _ => {
            let id: CrmId = record.id.clone();
            model
                .readers_mut()
                .insert(RecordRef::new(record.kind, id), users.clone());
        }
    }
}

/// The bulk path on a realistic shape: a 1% scale of the benchmark org (20 users, 2,000
/// contacts, 1,000 events, 469 roles, rules, teams, visibility, recurring events).
#[test]
fn bulk_equals_per_pair_on_a_scaled_benchmark_org() {
    let model = generate(&SyntheticSpec::scaled(0.01));
    let access = Access::build(&model);
    for user in model.users.keys() {
        for kind in ObjectKind::ALL {
            assert_eq!(
                readable_ids(&access, user, kind),
                readable_by_pairs(&access, user, kind),
                "{user} {kind}"
            );
        }
    }
    // And the change property, on twenty random changes.
    for change in 0..20 {
        let (new, what) = random_security_change(&model, change);
        let new_access = Access::build(&new);
        let affected = affected_users(&access, &new_access);
        for user in new.users.keys().filter(|u| model.users.contains_key(*u)) {
            for kind in ObjectKind::ALL {
                if readable_ids(&access, user, kind) != readable_ids(&new_access, user, kind) {
                    assert!(affected.contains(user), "{user} {kind} after {what:?}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn bulk_readable_sets_equal_per_pair_decisions(seed in any::<u64>()) {
        let model = small_org(seed);
        let access = Access::build(&model);
        for user in model.users.keys() {
            for kind in ObjectKind::ALL {
                let bulk = readable_ids(&access, user, kind);
                let pairs = readable_by_pairs(&access, user, kind);
                prop_assert_eq!(&bulk, &pairs, "user {} kind {}", user, kind);
                // Decide (with reasons) agrees with the fast path.
                for id in record_ids(&model, kind) {
                    let r = RecordRef::new(kind, id);
                    let d = access.decide(user, &r).unwrap();
                    for op in Operation::ALL {
                        prop_assert_eq!(d.allows(op), access.may(user, &r, op).unwrap());
                    }
                    // Nobody may change what they may not see.
                    prop_assert!(!d.edit || d.read);
                    prop_assert!(!d.delete || d.edit);
                }
            }
        }
    }

    #[test]
    fn the_reader_gate_keeps_bulk_sets_equal_to_per_pair_decisions(seed in any::<u64>(), readers in any::<u64>()) {
        let mut model = small_org(seed);
        let ungated = Access::build(&model);
        let before: Vec<Vec<String>> = model
            .users
            .keys()
            .flat_map(|u| ObjectKind::ALL.map(|k| readable_ids(&ungated, u, k)))
            .collect();
        with_readers(&mut model, readers);
        let access = Access::build(&model);
        let mut i = 0;
        for user in model.users.keys() {
            for kind in ObjectKind::ALL {
                let bulk = readable_ids(&access, user, kind);
                let pairs = readable_by_pairs(&access, user, kind);
                prop_assert_eq!(&bulk, &pairs, "user {} kind {}", user, kind);
                // The gate only narrows, and only to records the CRM showed the user.
                for id in &bulk {
                    prop_assert!(before[i].contains(id), "{} gained {} through the gate", user, id);
                    let r = RecordRef::new(kind, id.parse().unwrap());
                    prop_assert!(model.readers.get(&r).is_some_and(|l| l.contains(user)));
                }
                i += 1;
                for id in record_ids(&model, kind) {
                    let r = RecordRef::new(kind, id);
                    let d = access.decide(user, &r).unwrap();
                    for op in Operation::ALL {
                        prop_assert_eq!(d.allows(op), access.may(user, &r, op).unwrap());
                    }
                    prop_assert!(!d.edit || d.read);
                    prop_assert!(!d.delete || d.edit);
                }
            }
        }
    }

    #[test]
    fn every_user_whose_gated_readable_set_changed_is_affected(
        seed in any::<u64>(),
        readers in any::<u64>(),
        change in any::<u64>(),
        kind_of_change in 0u8..3,
    ) {
        let mut old = small_org(seed);
        with_readers(&mut old, readers);
        let mut new = old.clone();
        match kind_of_change {
            0 => mutate_readers(&mut new, change),
            1 => {
                let (changed, _) = random_security_change(&old, change);
                new = changed;
                mutate_readers(&mut new, change / 11);
            }
            _ => new.settings.reader_gate = false,
        }
        let (old_access, new_access) = (Access::build(&old), Access::build(&new));
        let affected = affected_users(&old_access, &new_access);
        for user in old.users.keys().filter(|u| new.users.contains_key(*u)) {
            for kind in ObjectKind::ALL {
                let before = readable_ids(&old_access, user, kind);
                let after = readable_ids(&new_access, user, kind);
                if before != after {
                    prop_assert!(
                        affected.contains(user),
                        "{}'s readable {} changed ({:?} → {:?}), not reported",
                        user, kind, before, after
                    );
                }
            }
        }
    }

    #[test]
    fn every_user_whose_readable_set_changed_is_affected(
        seed in any::<u64>(),
        change in any::<u64>(),
        touch_records in any::<bool>(),
    ) {
        let old = small_org(seed);
        let (mut new, what) = random_security_change(&old, change);
        if touch_records {
            mutate_records(&mut new, change);
        }
        let (old_access, new_access) = (Access::build(&old), Access::build(&new));
        let affected = affected_users(&old_access, &new_access);
        for user in old.users.keys() {
            if !new.users.contains_key(user) {
                prop_assert!(affected.contains(user), "removed user {} not reported", user);
                continue;
            }
            for kind in ObjectKind::ALL {
                let before = readable_ids(&old_access, user, kind);
                let after = readable_ids(&new_access, user, kind);
                if before != after {
                    prop_assert!(
                        affected.contains(user),
                        "{}'s readable {} changed ({:?} → {:?}) after {:?}, not reported (reported: {:?})",
                        user, kind, before, after, what, affected.users
                    );
                }
                let export_before = old_access.may_export(user, kind).unwrap();
                let export_after = new_access.may_export(user, kind).unwrap();
                if export_before != export_after {
                    prop_assert!(affected.contains(user), "export gate of {} changed", user);
                }
            }
        }
        // Identical models: nobody.
        let same = affected_users(&old_access, &Access::build(&old));
        prop_assert!(same.is_empty(), "{:?}", same.users);
    }
}

/// Everything `patched` and `fresh` (two indexes of the same model) answer, compared.
fn assert_same_answers(
    patched: &Access<'_>,
    fresh: &Access<'_>,
    model: &OrgModel,
) -> Result<(), TestCaseError> {
    use crmsync::scope::{desired_set, EffectiveScope, Selection, SelectionMode};
    let now: chrono::DateTime<chrono::Utc> = "2026-05-01T00:00:00Z".parse().unwrap();
    let scope = EffectiveScope {
        contact: Selection::mode(SelectionMode::AllVisible),
        event: Selection::mode(SelectionMode::AllVisible),
        days_past: 20,
        days_future: 40,
        ..EffectiveScope::builtin()
    };
    for kind in ObjectKind::ALL {
        prop_assert_eq!(
            patched.record_count(kind),
            fresh.record_count(kind),
            "{}",
            kind
        );
    }
    for user in model.users.keys() {
        for kind in ObjectKind::ALL {
            prop_assert_eq!(
                readable_ids(patched, user, kind),
                readable_ids(fresh, user, kind),
                "{} {}",
                user,
                kind
            );
            let ids = |a: &Access<'_>| -> Vec<String> {
                desired_set(a, user, &scope, kind, now)
                    .unwrap()
                    .iter()
                    .map(|id| id.to_string())
                    .collect()
            };
            prop_assert_eq!(ids(patched), ids(fresh), "desired {} {}", user, kind);
            for id in record_ids(model, kind) {
                let r = RecordRef::new(kind, id);
                for op in Operation::ALL {
                    prop_assert_eq!(
                        patched.may(user, &r, op).unwrap(),
                        fresh.may(user, &r, op).unwrap(),
                        "{} {:?} {:?}",
                        user,
                        r,
                        op
                    );
                }
                prop_assert_eq!(
                    format!("{:?}", patched.decide(user, &r).unwrap()),
                    format!("{:?}", fresh.decide(user, &r).unwrap())
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn a_patched_index_answers_as_one_built_afresh(
        seed in any::<u64>(),
        changes in any::<u64>(),
        rounds in 1u64..4,
        gated in any::<bool>(),
    ) {
        let mut model = small_org(seed);
        if gated {
            with_readers(&mut model, seed ^ changes);
        }
        let mut records = Access::build(&model).into_records();
        for round in 0..rounds {
            let (next, changed) = random_record_changes(&model, changes.wrapping_add(round));
            let patched = Access::patched(&next, records, &changed);
            let fresh = Access::build(&next);
            assert_same_answers(&patched, &fresh, &next)?;
            records = patched.into_records();
            model = next;
        }
    }

    #[test]
    fn a_kept_index_is_not_patched_across_a_security_change(
        seed in any::<u64>(),
        change in any::<u64>(),
    ) {
        let model = small_org(seed);
        let (next, _) = random_security_change(&model, change);
        let (next, changed) = random_record_changes(&next, change);
        let records = Access::build(&model).into_records();
        let patched = Access::patched(&next, records, &changed);
        assert_same_answers(&patched, &Access::build(&next), &next)?;
        // Unless the change left the security model as it was, the records were built afresh.
        let same = Access::build(&model).into_records();
        prop_assert!(Access::patched(&model, same, &[]).was_patched());
    }
}
