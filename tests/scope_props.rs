//! Property tests: a scope never widens access. Over random small orgs and random scopes,
//! every desired set is a subset of the readable set, is empty when the export gate is
//! closed, and agrees record by record with `sync_verdict`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use crmsync::model::{CrmId, ObjectKind, RecordRef};
use crmsync::scope::{
    desired_set, scoped_set, sync_verdict, EffectiveScope, Selection, SelectionMode,
};
use crmsync::security::synthetic::small_org;
use crmsync::security::Access;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn mode(i: u8) -> SelectionMode {
    [
        SelectionMode::Mine,
        SelectionMode::Team,
        SelectionMode::AllVisible,
        SelectionMode::Filter,
        SelectionMode::None,
    ][usize::from(i % 5)]
}

fn selection(m: u8, tags: u8, orgs: &[CrmId], pick: u8) -> Selection {
    let mode = mode(m);
    if mode != SelectionMode::Filter {
        return Selection::mode(mode);
    }
    let all = ["vip", "partner", "press"];
    let mut t: BTreeSet<String> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| tags & (1 << i) != 0)
        .map(|(_, s)| s.to_string())
        .collect();
    let o: BTreeSet<CrmId> = orgs
        .iter()
        .enumerate()
        .filter(|(i, _)| pick & (1 << i) != 0)
        .map(|(_, o)| o.clone())
        .collect();
    if t.is_empty() && o.is_empty() {
        t.insert("vip".into());
    }
    Selection {
        mode,
        tags: t,
        organizations: o,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn scope_never_widens_access(
        seed in any::<u64>(),
        contact_mode in any::<u8>(),
        event_mode in any::<u8>(),
        tags in any::<u8>(),
        pick in any::<u8>(),
        days_past in 0u32..120,
        days_future in 0u32..120,
    ) {
        let model = small_org(seed);
        let access = Access::build(&model);
        let orgs: Vec<CrmId> = model.organizations.keys().cloned().collect();
        let scope = EffectiveScope {
            contact: selection(contact_mode, tags, &orgs, pick),
            event: selection(event_mode, tags, &orgs, pick),
            days_past,
            days_future,
            ..EffectiveScope::builtin()
        };
        let now: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        for user in model.users.keys() {
            for kind in ObjectKind::ALL {
                let readable = access.readable(user, kind).unwrap();
                let desired = desired_set(&access, user, &scope, kind, now).unwrap();
                prop_assert!(desired.is_subset(&readable), "{} {}: {:?} ⊄ {:?}", user, kind, desired, readable);
                let scoped = scoped_set(&access, user, &scope, kind).unwrap();
                prop_assert!(desired.is_subset(&scoped) && scoped.is_subset(&readable));
                if kind != ObjectKind::Event {
                    prop_assert_eq!(&desired, &scoped);
                }
                if !access.may_export(user, kind).unwrap() || kind == ObjectKind::Organization {
                    prop_assert!(desired.is_empty());
                }
                let ids: Vec<CrmId> = match kind {
                    ObjectKind::Contact => model.contacts.keys().cloned().collect(),
                    ObjectKind::Event => model.events.keys().cloned().collect(),
                    ObjectKind::Organization => model.organizations.keys().cloned().collect(),
                };
                for id in ids {
                    let v = sync_verdict(&access, user, &scope, &RecordRef::new(kind, id.clone()), now).unwrap();
                    prop_assert_eq!(v.synced, desired.contains(&id), "{} {}:{} {:?}", user, kind, id, v.reasons);
                }
            }
        }
    }
}
