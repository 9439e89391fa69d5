//! The contract every `crm::Source` keeps, written once and run against each adapter (the
//! embedded CRM in `crm_contract.rs`, each hosted-CRM connector against its fake API):
//!
//! - the change feed is monotonic, pages, and holds every live entity once;
//! - an update names the version the engine saw: a stale one is a `Conflict`, never an
//!   overwrite; ownership is never written; invalid values change nothing; writing the same
//!   values is not a change;
//! - creates and deletes either work as the embedded CRM's do (ids never reused, stale
//!   deletes refused, a delete is a tombstone) or are refused as a whole and change nothing
//!   (a CRM whose API cannot do them: the engine then restores the phone instead).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crmsync::crm::{CrmError, Cursor, Entity, EntityKind, Source, WriteBack};
use crmsync::model::{CrmId, ObjectKind, RecordRef, UserId};
use serde_json::json;

/// Whether a source carries out a kind of write-back or refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Supported,
    Refused,
}

/// What the contract needs to know about one source's data.
#[derive(Debug, Clone)]
pub struct ContractCase {
    /// Live entities in the feed (security model and records).
    pub live_entities: usize,
    /// A contact `acting_user` may edit (its title is written, then an invalid e-mail).
    pub contact: RecordRef,
    pub acting_user: UserId,
    /// Another user: a phone may never make them a record's owner.
    pub other_user: UserId,
    pub creates: Capability,
    pub deletes: Capability,
}

/// Every page of the feed from the start: `(version, kind, id, live)`.
pub fn whole_feed(source: &dyn Source, page: usize) -> Vec<(i64, EntityKind, String, bool)> {
    let mut cursor = Cursor(0);
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let batch = source.changes_since(cursor, page).unwrap();
        assert!(batch.changes.len() <= page, "a page holds at most `limit`");
        for c in &batch.changes {
            out.push((c.version, c.kind, c.id.clone(), c.entity.is_some()));
        }
        cursor = batch.next_cursor;
        if !batch.more {
            return out;
        }
    }
    panic!("the feed never ended");
}

/// The version the feed shows for a live record.
pub fn version_of(source: &dyn Source, record: &RecordRef) -> i64 {
    let kind = EntityKind::from_object(record.kind);
    whole_feed(source, 7)
        .into_iter()
        .rfind(|(_, k, id, _)| *k == kind && id == record.id.as_str())
        .and_then(|(v, _, _, live)| live.then_some(v))
        .expect("the record is live")
}

pub fn feed_is_monotonic_and_pages(source: &dyn Source, case: &ContractCase) {
    let feed = whole_feed(source, 4);
    let mut last = 0;
    for (version, ..) in &feed {
        assert!(*version > last, "versions increase along the feed");
        last = *version;
    }
    let live: std::collections::BTreeSet<_> = feed
        .iter()
        .filter(|(.., live)| *live)
        .map(|(_, k, id, _)| (*k, id.clone()))
        .collect();
    assert_eq!(live.len(), feed.len(), "each entity appears once: {feed:?}");
    assert_eq!(live.len(), case.live_entities, "{live:?}");
    let head = Cursor(last);
    let after = source.changes_since(head, 4).unwrap();
    assert!(after.changes.is_empty() && !after.more);
}

fn update(case: &ContractCase, expected: i64, fields: serde_json::Value) -> WriteBack {
    WriteBack::Update {
        record: case.contact.clone(),
        expected_version: expected,
        acting_user: case.acting_user.clone(),
        fields: fields.as_object().unwrap().clone(),
    }
}

pub fn updates_need_the_current_version(source: &mut dyn Source, case: &ContractCase) {
    let v = version_of(source, &case.contact);
    let out = source
        .apply(&update(
            case,
            v,
            json!({"title": "Chief Technology Officer"}),
        ))
        .unwrap();
    assert!(out.version > v);
    assert_eq!(out.record, case.contact);
    let Some((_, Entity::Contact(now))) = source.get(&case.contact).unwrap() else {
        panic!("the contact is gone");
    };
    assert_eq!(now.title, "Chief Technology Officer");

    // The engine saw version v; the record is now newer: refused, not overwritten.
    let err = source
        .apply(&update(case, v, json!({"title": "Intern"})))
        .unwrap_err();
    assert!(
        matches!(err, CrmError::Conflict { expected, current, .. } if expected == v && current == out.version),
        "{err}"
    );
    // Ownership and sharing are never written from a phone.
    let err = source
        .apply(&update(
            case,
            out.version,
            json!({"owner": case.other_user.as_str()}),
        ))
        .unwrap_err();
    assert!(matches!(err, CrmError::Refused(_)), "{err}");
    // Invalid values are refused and change nothing.
    let err = source
        .apply(&update(
            case,
            out.version,
            json!({"emails": [{"address": "nope", "label": "work"}]}),
        ))
        .unwrap_err();
    assert!(matches!(err, CrmError::Invalid(_)), "{err}");
    assert_eq!(version_of(source, &case.contact), out.version);
    // Writing the same values is not a change.
    let same = source
        .apply(&update(
            case,
            out.version,
            json!({"title": "Chief Technology Officer"}),
        ))
        .unwrap();
    assert_eq!(same.version, out.version);
    let Some((_, Entity::Contact(after))) = source.get(&case.contact).unwrap() else {
        panic!("the contact is gone");
    };
    assert_eq!(after.title, "Chief Technology Officer", "not overwritten");
}

pub fn creates_and_deletes(source: &mut dyn Source, case: &ContractCase) {
    // Reading the feed first (a connector reads its CRM on the first `changes_since`).
    let head = whole_feed(source, 50).last().map(|(v, ..)| *v).unwrap_or(0);
    let Some((_, Entity::Contact(mut contact))) = source.get(&case.contact).unwrap() else {
        panic!("the contact is gone");
    };
    contact.id = CrmId::new("contract-new").unwrap();
    contact.owner = case.other_user.clone();
    let create = WriteBack::Create {
        acting_user: case.acting_user.clone(),
        entity: Box::new(Entity::Contact(contact)),
    };
    let record = RecordRef::new(ObjectKind::Contact, CrmId::new("contract-new").unwrap());
    match case.creates {
        Capability::Refused => {
            let err = source.apply(&create).unwrap_err();
            assert!(matches!(err, CrmError::Refused(_)), "{err}");
            assert!(source.get(&record).unwrap().is_none());
        }
        Capability::Supported => {
            let created = source.apply(&create).unwrap();
            assert_eq!(created.record, record);
            let err = source.apply(&create).unwrap_err();
            assert!(
                matches!(err, CrmError::Refused(_)),
                "ids are never reused: {err}"
            );
            let delete = |expected| WriteBack::Delete {
                record: record.clone(),
                expected_version: expected,
                acting_user: case.acting_user.clone(),
            };
            assert!(matches!(
                source.apply(&delete(created.version - 1)).unwrap_err(),
                CrmError::Conflict { .. }
            ));
            let deleted = source.apply(&delete(created.version)).unwrap();
            let tail = source
                .changes_since(Cursor(created.version), 10)
                .unwrap()
                .changes;
            assert_eq!(tail.len(), 1);
            assert_eq!(tail[0].version, deleted.version);
            assert!(
                tail[0].entity.is_none(),
                "a delete is a tombstone in the feed"
            );
            assert!(matches!(
                source.apply(&delete(deleted.version)).unwrap_err(),
                CrmError::NotFound(_)
            ));
            return;
        }
    }
    let v = version_of(source, &case.contact);
    let delete = WriteBack::Delete {
        record: case.contact.clone(),
        expected_version: v,
        acting_user: case.acting_user.clone(),
    };
    match case.deletes {
        Capability::Refused => {
            let err = source.apply(&delete).unwrap_err();
            assert!(matches!(err, CrmError::Refused(_)), "{err}");
            assert_eq!(version_of(source, &case.contact), v, "nothing changed");
        }
        Capability::Supported => {
            let deleted = source.apply(&delete).unwrap();
            assert!(deleted.version > v);
            assert!(source.get(&case.contact).unwrap().is_none());
        }
    }
    let new_head = whole_feed(source, 50).last().map(|(v, ..)| *v).unwrap_or(0);
    if case.deletes == Capability::Refused {
        assert_eq!(new_head, head, "refused writes leave the feed as it was");
    }
}

/// The whole contract, each part on a fresh source from `open`.
pub fn keeps_the_source_contract(open: &dyn Fn() -> Box<dyn Source>, case: &ContractCase) {
    feed_is_monotonic_and_pages(open().as_ref(), case);
    updates_need_the_current_version(open().as_mut(), case);
    creates_and_deletes(open().as_mut(), case);
}
