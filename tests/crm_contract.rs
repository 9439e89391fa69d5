//! The contract every `crm::Source` adapter must keep: a monotonic change feed with
//! tombstones, and write-backs that refuse stale versions instead of overwriting.
//! Written once, run against each adapter (today the embedded CRM).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crmsync::crm::sqlite::SqliteCrm;
use crmsync::crm::{orgfile, CrmError, Cursor, Entity, EntityKind, Source, WriteBack};
use crmsync::mirror;
use crmsync::model::{ObjectKind, RecordRef};
use crmsync::store::StateDb;
use serde_json::json;
use std::path::Path;

fn example_model() -> crmsync::crm::OrgModel {
    orgfile::parse("example", include_str!("fixtures/example-org.json")).unwrap()
}

fn embedded() -> SqliteCrm {
    let mut crm = SqliteCrm::open(Path::new(":memory:")).unwrap();
    crm.load(&example_model()).unwrap();
    crm
}

fn c1() -> RecordRef {
    "contact:c1".parse().unwrap()
}

fn version_of(source: &dyn Source, record: &RecordRef) -> i64 {
    let mut cursor = Cursor(0);
    let mut found = None;
    for _ in 0..1000 {
        let batch = source.changes_since(cursor, 7).unwrap();
        for change in &batch.changes {
            if change.kind == EntityKind::from_object(record.kind)
                && change.id == record.id.as_str()
            {
                found = change.entity.as_ref().map(|_| change.version);
            }
        }
        cursor = batch.next_cursor;
        if !batch.more {
            break;
        }
    }
    found.expect("record is live")
}

fn feed_is_monotonic_and_pages(source: &dyn Source) {
    let mut cursor = Cursor(0);
    let mut last = 0;
    let mut total = 0;
    for _ in 0..1000 {
        let batch = source.changes_since(cursor, 4).unwrap();
        assert!(batch.changes.len() <= 4);
        for c in &batch.changes {
            assert!(c.version > last, "versions increase along the feed");
            last = c.version;
            total += 1;
        }
        cursor = batch.next_cursor;
        if !batch.more {
            break;
        }
    }
    assert_eq!(total, 18, "every entity of the example appears once");
    assert!(source.changes_since(cursor, 4).unwrap().changes.is_empty());
}

fn updates_need_the_current_version(source: &mut dyn Source) {
    let v = version_of(source, &c1());
    let update = |expected, fields: serde_json::Value| WriteBack::Update {
        record: c1(),
        expected_version: expected,
        acting_user: "frank".parse().unwrap(),
        fields: fields.as_object().unwrap().clone(),
    };
    let out = source
        .apply(&update(v, json!({"title": "Chief Technology Officer"})))
        .unwrap();
    assert!(out.version > v);

    // The engine saw version v; the record is now newer: refused, not overwritten.
    let err = source
        .apply(&update(v, json!({"title": "Intern"})))
        .unwrap_err();
    assert!(
        matches!(err, CrmError::Conflict { expected, current, .. } if expected == v && current == out.version),
        "{err}"
    );
    // Ownership and sharing are never written from a phone.
    let err = source
        .apply(&update(out.version, json!({"owner": "hank"})))
        .unwrap_err();
    assert!(matches!(err, CrmError::Refused(_)), "{err}");
    // Invalid values are refused and change nothing.
    let err = source
        .apply(&update(
            out.version,
            json!({"emails": [{"address": "nope", "label": "work"}]}),
        ))
        .unwrap_err();
    assert!(matches!(err, CrmError::Invalid(_)), "{err}");
    assert_eq!(version_of(source, &c1()), out.version);
    // Writing the same values is not a change.
    let same = source
        .apply(&update(
            out.version,
            json!({"title": "Chief Technology Officer"}),
        ))
        .unwrap();
    assert_eq!(same.version, out.version);
}

fn creates_and_deletes(source: &mut dyn Source) {
    let mut contact = example_model().contacts[&"c1".parse().unwrap()].clone();
    contact.id = "c-new".parse().unwrap();
    contact.owner = "hank".parse().unwrap();
    let created = source
        .apply(&WriteBack::Create {
            acting_user: "erin".parse().unwrap(),
            entity: Box::new(Entity::Contact(contact.clone())),
        })
        .unwrap();
    let record = RecordRef::new(ObjectKind::Contact, "c-new".parse().unwrap());
    assert_eq!(created.record, record);
    let err = source
        .apply(&WriteBack::Create {
            acting_user: "erin".parse().unwrap(),
            entity: Box::new(Entity::Contact(contact)),
        })
        .unwrap_err();
    assert!(
        matches!(err, CrmError::Refused(_)),
        "ids are never reused: {err}"
    );

    let delete = |expected| WriteBack::Delete {
        record: record.clone(),
        expected_version: expected,
        acting_user: "erin".parse().unwrap(),
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
}

/// An instance id is stable for one CRM (across changes and re-opening), and differs between
/// two CRMs: the mirror's guard against a different CRM behind the same configuration.
fn instance_id_is_stable_and_distinct(
    open: &dyn Fn() -> Box<dyn Source>,
    other: &dyn Source,
    change: &dyn Fn(&mut dyn Source),
) {
    let mut source = open();
    let id = source.instance_id().unwrap();
    assert!(!id.is_empty());
    change(source.as_mut());
    assert_eq!(source.instance_id().unwrap(), id, "changes keep the id");
    drop(source);
    assert_eq!(open().instance_id().unwrap(), id, "re-opening keeps the id");
    assert_ne!(
        other.instance_id().unwrap(),
        id,
        "another CRM has another id"
    );
}

#[test]
fn embedded_crm_keeps_the_source_contract() {
    feed_is_monotonic_and_pages(&embedded());
    updates_need_the_current_version(&mut embedded());
    creates_and_deletes(&mut embedded());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.db");
    SqliteCrm::open(&path)
        .unwrap()
        .load(&example_model())
        .unwrap();
    instance_id_is_stable_and_distinct(
        &|| Box::new(SqliteCrm::open_existing(&path).unwrap()),
        &embedded(),
        &|source| creates_and_deletes(source),
    );
}

#[test]
fn created_records_belong_to_the_acting_user() {
    let mut crm = embedded();
    let mut contact = example_model().contacts[&"c1".parse().unwrap()].clone();
    contact.id = "c-phone".parse().unwrap();
    contact.owner = "hank".parse().unwrap();
    crm.apply(&WriteBack::Create {
        acting_user: "erin".parse().unwrap(),
        entity: Box::new(Entity::Contact(contact)),
    })
    .unwrap();
    let (_, entity) = crm.get(EntityKind::Contact, "c-phone").unwrap().unwrap();
    let Entity::Contact(stored) = entity else {
        panic!("not a contact")
    };
    assert_eq!(stored.owner.as_str(), "erin");
}

#[test]
fn a_broken_crm_row_is_reported_and_skipped_and_the_rest_is_mirrored() {
    let crm = embedded();
    crm.connection()
        .execute(
            "UPDATE entities SET body = '{\"id\": \"c1\", \"owner\": 42}' WHERE kind = 'contact'",
            [],
        )
        .unwrap();
    let state = StateDb::open_in_memory().unwrap();
    let refresh = mirror::refresh(&state, &crm).unwrap();
    assert_eq!(refresh.problems.len(), 1);
    assert_eq!(refresh.problems[0].id, "c1");
    assert!(
        refresh.problems[0].error.contains("unreadable body"),
        "{:?}",
        refresh.problems
    );
    let model = state.load_org_model().unwrap();
    assert!(model.contacts.is_empty());
    assert_eq!(model.users.len(), 4, "the other rows were mirrored");
    assert_eq!(state.mirror_problems().unwrap().len(), 1);

    // Fixing the row in the CRM (a new version) clears the problem on the next refresh.
    let mut crm = crm;
    crm.load(&example_model()).unwrap();
    let refresh = mirror::refresh(&state, &crm).unwrap();
    assert!(refresh.problems.is_empty());
    assert!(state.mirror_problems().unwrap().is_empty());
    assert_eq!(state.load_org_model().unwrap().contacts.len(), 1);
}
