//! The contract every `crm::Source` adapter must keep, written once and run against every
//! source through a [`Subject`]: the embedded CRM, Insightly (a fake of its API) with an
//! admin key and with each user's own key, and amoCRM (a fake of its API). Another
//! connector joins with one `Subject` impl and one `#[test]`.
//!
//! [`contract_story`]: the change feed holds every live entity once, in growing versions,
//! page by page, and ends; `get` answers with the feed's version and entity; a write-back
//! names the version the engine saw — the current one gives a new version (in the feed
//! once), the same values again are not a change, a stale one is a `Conflict`, never an
//! overwrite, ownership is never written and invalid values change nothing (and a hosted
//! CRM is sent none of these); a change made in the CRM itself makes the engine's version
//! stale and comes through the feed; a record deleted in the CRM becomes a tombstone with a
//! larger version and is `NotFound` to write-backs; the instance id survives changes and
//! re-opening, and another CRM has another.
//!
//! [`creates_and_deletes`] (on a fresh CRM): creates and deletes either work as the embedded
//! CRM's do (ids never reused, stale deletes refused, a delete is a tombstone, deleting
//! again is `NotFound`) or are refused as a whole and change nothing — a CRM whose API
//! cannot do them; the engine then keeps the phone's item or restores it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod amocrm_support;
mod connector_support;
mod insightly_fake;

use amocrm_support::FakeAmo;
use crmsync::crm::amocrm::AmoCrmConfig;
use crmsync::crm::connector::pacing::ManualClock;
use crmsync::crm::insightly::config::Mode;
use crmsync::crm::sqlite::SqliteCrm;
use crmsync::crm::{
    orgfile, Change, CrmError, Cursor, Entity, EntityKind, OrgModel, Source, WriteBack,
};
use crmsync::mirror;
use crmsync::model::{CrmId, ObjectKind, RecordRef, UserId};
use crmsync::store::StateDb;
use insightly_fake::{FakeInsightly, Kind};
use serde_json::json;
use std::collections::BTreeSet;
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

/// Whether a source carries out a kind of write-back or refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capability {
    Supported,
    Refused,
}

/// A CRM source under the contract, and the CRM behind it.
trait Subject {
    /// A connection to the CRM, as the engine opens one per run.
    fn open(&self) -> Box<dyn Source>;
    /// Live entities the feed holds at first.
    fn live_entities(&self) -> usize;
    /// A contact, and a user who may edit it.
    fn editable(&self) -> (RecordRef, UserId);
    /// Another user: a phone may never make them a record's owner.
    fn other_user(&self) -> UserId;
    /// Whether records are created from phones.
    fn creates(&self) -> Capability;
    /// Whether records are deleted from phones.
    fn deletes(&self) -> Capability;
    /// Write requests (create, change, delete) the CRM received so far; `None` for a CRM
    /// that is not reached over an API.
    fn writes_received(&self) -> Option<usize>;
    /// Someone changes the contact's title in the CRM itself (not through crmsync).
    fn change_outside(&mut self, record: &RecordRef, title: &str);
    /// Someone deletes the contact in the CRM itself; the source's next read sees it.
    fn delete_outside(&mut self, record: &RecordRef);
}

/// Every change of the feed from `cursor`, page by page (`limit` per page), checking that
/// versions only grow, pages keep their size and the feed ends (`more` false, nothing after).
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
            let after = source.changes_since(cursor, limit).unwrap();
            assert!(after.changes.is_empty() && !after.more, "the feed ended");
            return (out, cursor);
        }
    }
    panic!("the feed never ended");
}

/// The version of the newest change in the whole feed (0 when empty).
fn feed_head(source: &dyn Source) -> i64 {
    drain(source, Cursor(0), 50)
        .0
        .last()
        .map_or(0, |c| c.version)
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
    let distinct: BTreeSet<(EntityKind, &str)> =
        all.iter().map(|c| (c.kind, c.id.as_str())).collect();
    assert_eq!(distinct.len(), all.len(), "each entity appears once");
    let writes_at_first = subject.writes_received();

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
    assert_eq!(out.record, record);
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
    // Ownership is never written from a phone (not even to a real user); invalid values
    // change nothing.
    let other = subject.other_user();
    let err = source
        .apply(&update(
            &record,
            &user,
            out.version,
            json!({"owner": other.as_str()}),
        ))
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
    assert_eq!(
        title_of(source.as_ref(), &record),
        "Chief Technology Officer",
        "not overwritten"
    );
    // Of all these write-backs, only the one real change reached the CRM.
    if let Some(before) = writes_at_first {
        assert_eq!(subject.writes_received(), Some(before + 1));
    }

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

/// Creates and deletes from phones: carried out as the embedded CRM does, or refused as a
/// whole with nothing changed (see the module docs). Run on a fresh CRM.
fn creates_and_deletes(subject: &mut dyn Subject) {
    let mut source = subject.open();
    let (record, user) = subject.editable();
    let head = feed_head(source.as_ref());
    let Some((_, Entity::Contact(mut contact))) = source.get(&record).unwrap() else {
        panic!("{record} is not a live contact");
    };
    let new_id = CrmId::new("contract-new").unwrap();
    contact.id = new_id.clone();
    contact.owner = subject.other_user();
    let create = WriteBack::Create {
        acting_user: user.clone(),
        entity: Box::new(Entity::Contact(contact)),
    };
    let created = RecordRef::new(ObjectKind::Contact, new_id);
    let writes_at_first = subject.writes_received();
    // What a delete removes: the record created here, else the editable one.
    let (target, version) = match subject.creates() {
        Capability::Refused => {
            let err = source.apply(&create).unwrap_err();
            assert!(matches!(err, CrmError::Refused(_)), "{err}");
            assert_eq!(source.get(&created).unwrap(), None, "nothing was created");
            assert_eq!(feed_head(source.as_ref()), head, "the feed is as it was");
            let v = version_of(source.as_ref(), &record);
            (record.clone(), v)
        }
        Capability::Supported => {
            let out = source.apply(&create).unwrap();
            assert_eq!(out.record, created);
            let err = source.apply(&create).unwrap_err();
            assert!(
                matches!(err, CrmError::Refused(_)),
                "ids are never reused: {err}"
            );
            (created.clone(), out.version)
        }
    };
    let delete = |expected| WriteBack::Delete {
        record: target.clone(),
        expected_version: expected,
        acting_user: user.clone(),
    };
    match subject.deletes() {
        Capability::Refused => {
            let err = source.apply(&delete(version)).unwrap_err();
            assert!(matches!(err, CrmError::Refused(_)), "{err}");
            assert_eq!(version_of(source.as_ref(), &target), version);
            assert_eq!(feed_head(source.as_ref()), head, "the feed is as it was");
            if let Some(before) = writes_at_first {
                assert_eq!(subject.writes_received(), Some(before), "nothing was sent");
            }
        }
        Capability::Supported => {
            let err = source.apply(&delete(version - 1)).unwrap_err();
            assert!(
                matches!(err, CrmError::Conflict { expected, current, .. } if expected == version - 1 && current == version),
                "a stale delete is refused: {err}"
            );
            assert_eq!(version_of(source.as_ref(), &target), version);
            let before = feed_head(source.as_ref());
            let deleted = source.apply(&delete(version)).unwrap();
            assert!(deleted.version > version);
            assert_eq!(source.get(&target).unwrap(), None);
            // The delete is one tombstone in the feed, and changes nothing else but the
            // record's own reader list (a connector in delegated mode).
            let (tail, _) = drain(source.as_ref(), Cursor(before), 10);
            let readers = target.to_string();
            assert!(
                tail.iter().all(|c| c.entity.is_none()
                    && ((c.kind == EntityKind::Contact && c.id == target.id.as_str())
                        || (c.kind == EntityKind::RecordReaders && c.id == readers))),
                "{tail:#?}"
            );
            let tombstones: Vec<_> = tail
                .iter()
                .filter(|c| c.kind == EntityKind::Contact)
                .collect();
            assert_eq!(tombstones.len(), 1, "{tail:#?}");
            assert_eq!(tombstones[0].version, deleted.version);
            let err = source.apply(&delete(deleted.version)).unwrap_err();
            assert!(matches!(err, CrmError::NotFound(_)), "{err}");
        }
    }
}

/// The whole contract against a source: the story, then creates and deletes on a fresh CRM.
fn keeps_the_source_contract<S: Subject>(new: impl Fn() -> S) {
    contract_story(&mut new());
    creates_and_deletes(&mut new());
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

    fn other_user(&self) -> UserId {
        "hank".parse().unwrap()
    }

    fn creates(&self) -> Capability {
        Capability::Supported
    }

    fn deletes(&self) -> Capability {
        Capability::Supported
    }

    fn writes_received(&self) -> Option<usize> {
        None
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
        self.model.contacts_mut().insert(c.id.clone(), c);
        SqliteCrm::open(&self.path)
            .unwrap()
            .load(&self.model)
            .unwrap();
    }

    fn delete_outside(&mut self, record: &RecordRef) {
        self.model.contacts_mut().remove(&record.id);
        self.model.events_mut().values_mut().for_each(|e| {
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

    fn other_user(&self) -> UserId {
        "103".parse().unwrap()
    }

    fn creates(&self) -> Capability {
        // Insightly assigns ids: a phone's new item stays on the phone.
        Capability::Refused
    }

    fn deletes(&self) -> Capability {
        Capability::Supported
    }

    fn writes_received(&self) -> Option<usize> {
        Some(
            self.fake
                .requests()
                .iter()
                .filter(|l| matches!(l.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
                .count(),
        )
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

/// amoCRM through the connector, against the fake API; a virtual clock moves time on.
struct AmoSubject {
    fake: FakeAmo,
    _dir: tempfile::TempDir,
    config: AmoCrmConfig,
    clock: Arc<ManualClock>,
}

impl AmoSubject {
    fn new() -> Self {
        let fake = FakeAmo::start();
        let dir = tempfile::tempdir().unwrap();
        let config = amocrm_support::long_lived_config(&fake, dir.path());
        Self {
            fake,
            _dir: dir,
            config,
            clock: amocrm_support::manual_clock(),
        }
    }
}

impl Subject for AmoSubject {
    fn open(&self) -> Box<dyn Source> {
        Box::new(amocrm_support::open(&self.config, &self.clock))
    }

    fn live_entities(&self) -> usize {
        // org, org-wide sharing, 3 teams, 5 profiles, 5 users, 2 companies, 7 contacts,
        // 2 events (tasks of types 1 and 2; type 77 is not synced).
        26
    }

    fn editable(&self) -> (RecordRef, UserId) {
        // Ada Lovelace, Frank's.
        ("contact:104".parse().unwrap(), "5003".parse().unwrap())
    }

    fn other_user(&self) -> UserId {
        "5004".parse().unwrap()
    }

    fn creates(&self) -> Capability {
        // amoCRM assigns ids: a phone's new item stays on the phone.
        Capability::Refused
    }

    fn deletes(&self) -> Capability {
        // API v4 has no delete for contacts, companies or tasks.
        Capability::Refused
    }

    fn writes_received(&self) -> Option<usize> {
        let state = self.fake.state();
        Some(
            state
                .log
                .iter()
                .filter(|l| l.path.starts_with("/api/v4/") && l.method != "GET")
                .count(),
        )
    }

    fn change_outside(&mut self, record: &RecordRef, title: &str) {
        let id = record.id.as_str().parse().unwrap();
        self.fake
            .state()
            .edit_field("contacts", id, "POSITION", json!([{ "value": title }]));
    }

    fn delete_outside(&mut self, record: &RecordRef) {
        self.fake
            .state()
            .delete("contacts", record.id.as_str().parse().unwrap());
        // Deletions are caught by the full reconciliation: let it come due.
        let every = self.config.full_reconcile_minutes;
        self.clock.advance(Duration::from_secs((every + 1) * 60));
    }
}

#[test]
fn embedded_crm_keeps_the_source_contract() {
    keeps_the_source_contract(EmbeddedSubject::new);
}

#[test]
fn insightly_with_an_admin_key_keeps_the_source_contract() {
    keeps_the_source_contract(|| InsightlySubject::new(Mode::AdminKey));
}

#[test]
fn insightly_with_delegated_keys_keeps_the_source_contract() {
    keeps_the_source_contract(|| InsightlySubject::new(Mode::Delegated));
}

#[test]
fn amocrm_keeps_the_source_contract() {
    keeps_the_source_contract(AmoSubject::new);
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
