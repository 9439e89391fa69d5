//! The contract every `crm::Source` adapter must keep: a monotonic change feed with
//! tombstones, paging, `get`, and write-backs that refuse stale versions instead of
//! overwriting. One story, written once ([`contract_story`]), run against every source
//! through a [`Subject`]: the embedded CRM and Insightly (a fake of its API). Another
//! connector joins with one `Subject` impl and one `#[test]`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connector_support;
mod insightly_fake;

use crmsync::crm::connector::pacing::ManualClock;
use crmsync::crm::insightly::config::Mode;
use crmsync::crm::sqlite::SqliteCrm;
use crmsync::crm::{
    orgfile, Change, CrmError, Cursor, Entity, EntityKind, OrgModel, Source, WriteBack,
};
use crmsync::mirror;
use crmsync::model::{ObjectKind, RecordRef, UserId};
use crmsync::store::StateDb;
use insightly_fake::{FakeInsightly, Kind};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn example_model() -> OrgModel {
    orgfile::parse("example", include_str!("fixtures/example-org.json")).unwrap()
}

fn embedded() -> SqliteCrm {
    let mut crm = SqliteCrm::open(Path::new(":memory:")).unwrap();
    crm.load(&example_model()).unwrap();
    crm
}

/// A CRM source under the contract, and the CRM behind it.
trait Subject {
    /// A connection to the CRM, as the engine opens one per run.
    fn open(&self) -> Box<dyn Source>;
    /// Live entities the feed holds at first.
    fn live_entities(&self) -> usize;
    /// A contact, and a user who may edit it.
    fn editable(&self) -> (RecordRef, UserId);
    /// Someone changes the contact's title in the CRM itself (not through crmsync).
    fn change_outside(&mut self, record: &RecordRef, title: &str);
    /// Someone deletes the contact in the CRM itself; the source's next read sees it.
    fn delete_outside(&mut self, record: &RecordRef);
}

/// Every change of the feed from `cursor`, page by page (`limit` per page), checking that
/// versions only grow and pages keep their size.
fn drain(source: &dyn Source, cursor: Cursor, limit: usize) -> (Vec<Change>, Cursor) {
    let mut cursor = cursor;
    let mut out: Vec<Change> = Vec::new();
    for _ in 0..10_000 {
        let batch = source.changes_since(cursor, limit).unwrap();
        assert!(batch.changes.len() <= limit);
        for c in &batch.changes {
            let last = out.last().map_or(cursor.0, |l: &Change| l.version);
            assert!(c.version > last, "versions increase along the feed");
        }
        out.extend(batch.changes);
        assert!(batch.next_cursor >= cursor);
        cursor = batch.next_cursor;
        if !batch.more {
            return (out, cursor);
        }
    }
    panic!("the feed never ended");
}

fn version_of(source: &dyn Source, record: &RecordRef) -> i64 {
    source.get(record).unwrap().expect("record is live").0
}

fn update(
    record: &RecordRef,
    user: &UserId,
    expected: i64,
    fields: serde_json::Value,
) -> WriteBack {
    WriteBack::Update {
        record: record.clone(),
        expected_version: expected,
        acting_user: user.clone(),
        fields: fields.as_object().unwrap().clone(),
    }
}

fn title_of(source: &dyn Source, record: &RecordRef) -> String {
    match source.get(record).unwrap() {
        Some((_, Entity::Contact(c))) => c.title,
        other => panic!("not a live contact: {other:?}"),
    }
}

/// The contract, as one story.
fn contract_story(subject: &mut dyn Subject) {
    // The feed: every live entity once, in growing versions, page by page.
    let mut source = subject.open();
    let instance = source.instance_id().unwrap();
    assert!(!instance.is_empty());
    let (all, head) = drain(source.as_ref(), Cursor(0), 4);
    assert_eq!(all.len(), subject.live_entities(), "{all:#?}");
    assert!(
        all.iter().all(|c| c.entity.is_some()),
        "no tombstones at first"
    );
    assert!(source.changes_since(head, 4).unwrap().changes.is_empty());

    // `get` answers with the feed's version and entity.
    let (record, user) = subject.editable();
    let in_feed = all
        .iter()
        .find(|c| c.kind == EntityKind::from_object(record.kind) && c.id == record.id.as_str())
        .expect("the record is in the feed");
    let (v, entity) = source.get(&record).unwrap().unwrap();
    assert_eq!(v, in_feed.version);
    assert_eq!(Some(&entity), in_feed.entity.as_ref());

    // A write-back with the current version: a new version, in the feed once.
    let out = source
        .apply(&update(
            &record,
            &user,
            v,
            json!({"title": "Chief Technology Officer"}),
        ))
        .unwrap();
    assert!(out.version > v);
    assert_eq!(version_of(source.as_ref(), &record), out.version);
    assert_eq!(
        title_of(source.as_ref(), &record),
        "Chief Technology Officer"
    );
    let (tail, head) = drain(source.as_ref(), head, 4);
    assert_eq!(
        tail.iter().filter(|c| c.id == record.id.as_str()).count(),
        1,
        "{tail:#?}"
    );
    // The same values again: not a change.
    let same = source
        .apply(&update(
            &record,
            &user,
            out.version,
            json!({"title": "Chief Technology Officer"}),
        ))
        .unwrap();
    assert_eq!(same.version, out.version);

    // The engine saw v; the record is newer now: refused, not overwritten.
    let err = source
        .apply(&update(&record, &user, v, json!({"title": "Intern"})))
        .unwrap_err();
    assert!(
        matches!(err, CrmError::Conflict { expected, current, .. } if expected == v && current == out.version),
        "{err}"
    );
    // Ownership is never written from a phone; invalid values change nothing.
    let err = source
        .apply(&update(&record, &user, out.version, json!({"owner": "x"})))
        .unwrap_err();
    assert!(matches!(err, CrmError::Refused(_)), "{err}");
    let err = source
        .apply(&update(
            &record,
            &user,
            out.version,
            json!({"emails": [{"address": "nope", "label": "work"}]}),
        ))
        .unwrap_err();
    assert!(matches!(err, CrmError::Invalid(_)), "{err}");
    assert_eq!(version_of(source.as_ref(), &record), out.version);

    // Someone changes the record in the CRM: a write-back at the version the engine saw is a
    // conflict (the CRM's change is not overwritten), and the feed brings the change.
    subject.change_outside(&record, "Founder");
    let err = source
        .apply(&update(
            &record,
            &user,
            out.version,
            json!({"title": "Intern"}),
        ))
        .unwrap_err();
    assert!(
        matches!(err, CrmError::Conflict { expected, .. } if expected == out.version),
        "{err}"
    );
    let (tail, head) = drain(source.as_ref(), head, 4);
    let change = tail
        .iter()
        .rev()
        .find(|c| c.id == record.id.as_str())
        .expect("the outside change is in the feed");
    assert!(change.version > out.version);
    assert_eq!(title_of(source.as_ref(), &record), "Founder");
    let now = version_of(source.as_ref(), &record);

    // Deleted in the CRM: a tombstone with a larger version; the record is gone.
    subject.delete_outside(&record);
    let (tail, _) = drain(source.as_ref(), head, 4);
    let tombstone = tail
        .iter()
        .find(|c| c.id == record.id.as_str() && c.kind == EntityKind::from_object(record.kind))
        .expect("a tombstone");
    assert!(tombstone.entity.is_none() && tombstone.version > now);
    assert_eq!(source.get(&record).unwrap(), None);
    let err = source
        .apply(&update(&record, &user, now, json!({"title": "Ghost"})))
        .unwrap_err();
    assert!(matches!(err, CrmError::NotFound(_)), "{err}");
    // A new connection sees the same CRM, with the same instance id (changes keep it); another
    // CRM has another: the mirror's guard against a different CRM behind one configuration.
    assert_eq!(
        source.instance_id().unwrap(),
        instance,
        "changes keep the id"
    );
    source = subject.open();
    assert_eq!(source.get(&record).unwrap(), None);
    assert_eq!(
        source.instance_id().unwrap(),
        instance,
        "re-opening keeps it"
    );
    assert_ne!(
        embedded().instance_id().unwrap(),
        instance,
        "another CRM, another id"
    );
}

/// The embedded CRM in a temporary file; "outside" changes are org-file loads.
struct EmbeddedSubject {
    _dir: tempfile::TempDir,
    path: PathBuf,
    model: OrgModel,
}

impl EmbeddedSubject {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        let model = example_model();
        SqliteCrm::open(&path).unwrap().load(&model).unwrap();
        Self {
            _dir: dir,
            path,
            model,
        }
    }
}

impl Subject for EmbeddedSubject {
    fn open(&self) -> Box<dyn Source> {
        Box::new(SqliteCrm::open(&self.path).unwrap())
    }

    fn live_entities(&self) -> usize {
        18
    }

    fn editable(&self) -> (RecordRef, UserId) {
        ("contact:c1".parse().unwrap(), "frank".parse().unwrap())
    }

    fn change_outside(&mut self, record: &RecordRef, title: &str) {
        let crm = SqliteCrm::open(&self.path).unwrap();
        let (_, Entity::Contact(mut c)) = crm
            .get(EntityKind::Contact, record.id.as_str())
            .unwrap()
            .unwrap()
        else {
            panic!("not a contact")
        };
        c.title = title.into();
        self.model.contacts.insert(c.id.clone(), c);
        SqliteCrm::open(&self.path)
            .unwrap()
            .load(&self.model)
            .unwrap();
    }

    fn delete_outside(&mut self, record: &RecordRef) {
        self.model.contacts.remove(&record.id);
        self.model.events.values_mut().for_each(|e| {
            e.links.retain(|l| l.id() != &record.id);
            e.attendees
                .retain(|a| !matches!(a, crmsync::model::Attendee::Contact(c) if c == &record.id));
        });
        SqliteCrm::open(&self.path)
            .unwrap()
            .load(&self.model)
            .unwrap();
    }
}

/// Insightly through the connector, against the fake API; a virtual clock moves time on.
struct InsightlySubject {
    fake: FakeInsightly,
    _dir: tempfile::TempDir,
    config: crmsync::crm::insightly::InsightlyConfig,
    clock: Arc<ManualClock>,
}

impl InsightlySubject {
    fn new(mode: Mode) -> Self {
        let fake = FakeInsightly::start();
        let dir = tempfile::tempdir().unwrap();
        let config = fake.config(dir.path(), mode);
        Self {
            fake,
            _dir: dir,
            config,
            clock: insightly_fake::clock(),
        }
    }
}

impl Subject for InsightlySubject {
    fn open(&self) -> Box<dyn Source> {
        Box::new(insightly_fake::open(&self.config, &self.clock))
    }

    fn live_entities(&self) -> usize {
        // org, org-wide sharing, 6 roles, 1 profile, 1 rule, 4 users, 2 teams,
        // 1 organisation, 5 contacts, 2 events; in delegated mode also one reader list
        // per record.
        match self.config.mode {
            Mode::AdminKey => 24,
            Mode::Delegated => 24 + 8,
        }
    }

    fn editable(&self) -> (RecordRef, UserId) {
        ("contact:400".parse().unwrap(), "102".parse().unwrap())
    }

    fn change_outside(&mut self, record: &RecordRef, title: &str) {
        let id = record.id.as_str().parse().unwrap();
        self.fake
            .edit(Kind::Contacts, id, |c| c["TITLE"] = json!(title));
    }

    fn delete_outside(&mut self, record: &RecordRef) {
        self.fake
            .delete(Kind::Contacts, record.id.as_str().parse().unwrap());
        // Deletions are caught by the full reconciliation: let it come due.
        self.clock.advance(Duration::from_secs(61 * 60));
    }
}

#[test]
fn embedded_crm_keeps_the_source_contract() {
    contract_story(&mut EmbeddedSubject::new());
}

#[test]
fn insightly_with_an_admin_key_keeps_the_source_contract() {
    contract_story(&mut InsightlySubject::new(Mode::AdminKey));
}

#[test]
fn insightly_with_delegated_keys_keeps_the_source_contract() {
    contract_story(&mut InsightlySubject::new(Mode::Delegated));
}

#[test]
fn embedded_creates_and_deletes() {
    let mut source = embedded();
    let source: &mut dyn Source = &mut source;
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
