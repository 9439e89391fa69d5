//! The Insightly connector's failure paths, against the fake API: a refused key (admin and
//! delegated), 429 then success, 5xx then success, an outage longer than the retries, the
//! daily quota (clear error, nothing lost, the next day resumes), a malformed record
//! (reported and skipped, the rest goes on), deletions and silent permission changes
//! caught by the full reconciliation, incremental reads, and write-backs with the user's
//! own key. (No key in any log line: `insightly_secrets.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connector_support;
mod insightly_fake;

use crmsync::crm::connector::pacing::ManualClock;
use crmsync::crm::connector::source::ShadowSource;
use crmsync::crm::insightly::config::Mode;
use crmsync::crm::insightly::{Insightly, InsightlyConfig};
use crmsync::crm::{CrmError, Entity, Source, WriteBack};
use crmsync::mirror::{self, RefreshError};
use crmsync::model::{RecordRef, UserId, Visibility};
use crmsync::security::{Access, Operation};
use crmsync::store::StateDb;
use insightly_fake::{key_of, FakeInsightly, Kind};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct Bench {
    fake: FakeInsightly,
    _dir: tempfile::TempDir,
    config: InsightlyConfig,
    clock: Arc<ManualClock>,
    state: StateDb,
}

impl Bench {
    fn new(mode: Mode) -> Self {
        let fake = FakeInsightly::start();
        let dir = tempfile::tempdir().unwrap();
        let config = fake.config(dir.path(), mode);
        Bench {
            fake,
            _dir: dir,
            config,
            clock: insightly_fake::clock(),
            state: StateDb::open_in_memory().unwrap(),
        }
    }

    fn open(&self) -> ShadowSource<Insightly> {
        insightly_fake::open(&self.config, &self.clock)
    }

    /// One mirror refresh through a new connection (an engine run's first step).
    fn refresh(&self) -> Result<mirror::Refresh, RefreshError> {
        mirror::refresh(&self.state, &self.open())
    }

    fn model(&self) -> crmsync::crm::OrgModel {
        self.state.load_org_model().unwrap()
    }

    fn reconcile_due(&self) {
        self.clock.advance(Duration::from_secs(61 * 60));
    }

    fn may_read(&self, user: &str, record: &str) -> bool {
        let model = self.model();
        let access = Access::build(&model);
        access
            .may(
                &UserId::new(user).unwrap(),
                &record.parse().unwrap(),
                Operation::Read,
            )
            .unwrap_or(false)
    }
}

fn contact(model: &crmsync::crm::OrgModel, id: &str) -> Option<crmsync::model::Contact> {
    model.contacts.get(&id.parse().unwrap()).cloned()
}

fn update(record: &str, user: &str, expected: i64, fields: serde_json::Value) -> WriteBack {
    WriteBack::Update {
        record: record.parse().unwrap(),
        expected_version: expected,
        acting_user: UserId::new(user).unwrap(),
        fields: fields.as_object().unwrap().clone(),
    }
}

#[test]
fn a_refused_admin_key_is_a_clear_error_naming_the_key_never_showing_it() {
    let b = Bench::new(Mode::AdminKey);
    b.fake.revoke_key(100);
    let err = b.refresh().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("admin API key (from file"), "{text}");
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(!text.contains(&key_of(100)) && !format!("{err:?}").contains(&key_of(100)));
    assert!(matches!(
        err,
        RefreshError::Crm(CrmError::Connector(
            crmsync::crm::connector::ConnectorError::Unauthorized { .. }
        ))
    ));
    assert_eq!(b.fake.requests().len(), 1, "a refused key is not retried");
}

#[test]
fn a_users_refused_key_withholds_their_records_only_and_is_reported() {
    let b = Bench::new(Mode::Delegated);
    b.refresh().unwrap();
    assert!(b.may_read("102", "contact:400"), "Frank's own contact");
    b.fake.revoke_key(102);
    let refresh = b.refresh().unwrap();
    let problem = refresh
        .problems
        .iter()
        .find(|p| p.kind == "user" && p.id == "102")
        .expect("the refused key is reported");
    assert!(problem.error.contains("user 102") && !problem.error.contains(&key_of(102)));
    assert!(!b.may_read("102", "contact:400"), "fail-closed: withheld");
    assert!(b.may_read("101", "contact:400"), "Erin still reads it");
}

#[test]
fn a_429_is_waited_out_as_asked_and_the_read_goes_on() {
    let b = Bench::new(Mode::AdminKey);
    b.fake.fail_next(429, Some(3), 2);
    b.refresh().unwrap();
    let threes = b
        .clock
        .sleeps()
        .into_iter()
        .filter(|d| *d == Duration::from_secs(3))
        .count();
    assert_eq!(threes, 2, "{:?}", b.clock.sleeps());
    assert_eq!(b.model().contacts.len(), 5);
}

#[test]
fn server_errors_are_retried_and_the_read_goes_on() {
    let b = Bench::new(Mode::AdminKey);
    b.fake.fail_next(500, None, 1);
    b.fake.fail_next(503, None, 1);
    b.refresh().unwrap();
    assert_eq!(b.model().contacts.len(), 5);
    assert_eq!(b.model().events.len(), 2);
    let statuses: Vec<u16> = b.fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], &[500, 503, 200]);
}

#[test]
fn an_outage_longer_than_the_retries_fails_the_read_and_loses_nothing() {
    let b = Bench::new(Mode::AdminKey);
    b.refresh().unwrap();
    b.fake
        .edit(Kind::Contacts, 401, |c| c["TITLE"] = json!("CEO"));
    b.fake.fail_next(503, None, 20);
    let err = b.refresh().unwrap_err();
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert_eq!(
        contact(&b.model(), "401").unwrap().title,
        "CTO",
        "nothing half-applied"
    );
    b.fake.clear_faults();
    b.refresh().unwrap();
    assert_eq!(contact(&b.model(), "401").unwrap().title, "CEO", "resumed");
}

#[test]
fn an_exhausted_daily_quota_stops_the_read_clearly_and_the_next_day_resumes() {
    let b = Bench::new(Mode::AdminKey);
    b.refresh().unwrap();
    b.fake
        .edit(Kind::Contacts, 401, |c| c["TITLE"] = json!("CEO"));
    b.fake
        .edit(Kind::Events, 500, |e| e["LOCATION"] = json!("Room 2"));
    // Enough for the directory and two of the three record searches.
    b.fake.set_daily_quota(Some(7));
    let source = b.open();
    let err = mirror::refresh(&b.state, &source).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("daily API quota"), "{text}");
    assert!(text.contains("limit of 7 requests per day"), "{text}");
    assert!(text.contains("nothing was lost"), "{text}");
    assert!(
        text.contains("2026-11-24T00:00:00"),
        "when it resets: {text}"
    );
    let served = b.fake.requests().len();
    // The same day, nothing more is even sent.
    assert!(mirror::refresh(&b.state, &source).is_err());
    assert_eq!(b.fake.requests().len(), served);
    let model = b.model();
    assert_eq!(
        contact(&model, "401").unwrap().title,
        "CTO",
        "the mirror takes whole reads"
    );

    // The next day, with quota again, a new run brings both changes.
    b.fake.set_daily_quota(Some(100));
    b.clock.advance(Duration::from_secs(24 * 3600));
    b.refresh().unwrap();
    let model = b.model();
    assert_eq!(contact(&model, "401").unwrap().title, "CEO");
    let e = &model.events[&"500".parse().unwrap()];
    assert_eq!(e.location, "Room 2");
    assert_eq!(model.contacts.len(), 5);
}

#[test]
fn a_malformed_record_is_reported_and_skipped_and_the_rest_goes_on() {
    let b = Bench::new(Mode::AdminKey);
    b.refresh().unwrap();
    b.fake.edit(Kind::Contacts, 403, |c| {
        c["EMAIL_ADDRESS"] = json!("not an address")
    });
    b.fake
        .edit(Kind::Contacts, 402, |c| c["TITLE"] = json!("COO"));
    let strange = b.fake.insert(
        Kind::Contacts,
        json!({"FIRST_NAME": "Odd", "OWNER_USER_ID": 101, "VISIBLE_TO": "FRIENDS"}),
    );
    let refresh = b.refresh().unwrap();
    let mut bad: Vec<(String, String)> = refresh
        .problems
        .iter()
        .map(|p| (p.kind.clone(), p.id.clone()))
        .collect();
    bad.sort();
    assert_eq!(
        bad,
        vec![
            ("contact".to_string(), "403".to_string()),
            ("contact".to_string(), strange.to_string())
        ]
    );
    let model = b.model();
    assert_eq!(
        contact(&model, "402").unwrap().title,
        "COO",
        "the rest went on"
    );
    assert_eq!(
        contact(&model, "403").unwrap().emails[0].address,
        "fay@initech.example",
        "the last good version stays"
    );
    assert_eq!(b.state.mirror_problems().unwrap().len(), 2);
    // Fixed in Insightly: the problem clears.
    b.fake.edit(Kind::Contacts, 403, |c| {
        c["EMAIL_ADDRESS"] = json!("fay@new.example")
    });
    b.refresh().unwrap();
    assert_eq!(
        contact(&b.model(), "403").unwrap().emails[0].address,
        "fay@new.example"
    );
    assert_eq!(b.state.mirror_problems().unwrap().len(), 1);
}

#[test]
fn reads_are_incremental_with_updated_after_utc_and_cheap() {
    let b = Bench::new(Mode::AdminKey);
    b.refresh().unwrap();
    b.fake
        .edit(Kind::Contacts, 402, |c| c["TITLE"] = json!("COO"));
    b.refresh().unwrap();
    let mark = b.fake.record(Kind::Contacts, 402).unwrap()["DATE_UPDATED_UTC"].clone();
    assert_eq!(mark, "2026-11-20 08:01:00");
    b.fake.clear_log();
    b.fake
        .edit(Kind::Contacts, 401, |c| c["TITLE"] = json!("CEO"));
    b.refresh().unwrap();
    assert_eq!(contact(&b.model(), "401").unwrap().title, "CEO");
    let log = b.fake.requests();
    let searches: Vec<_> = log.iter().filter(|r| r.path.ends_with("/Search")).collect();
    assert_eq!(searches.len(), 3, "one page per record kind: {log:#?}");
    let contacts = searches
        .iter()
        .find(|r| r.path.ends_with("/Contacts/Search"))
        .unwrap();
    // The high-water mark minus one second: a change in the same second is read again,
    // never missed.
    assert!(
        contacts
            .query
            .contains("updated_after_utc=2026-11-20T08%3A00%3A59Z"),
        "{contacts:?}"
    );
    // The directory (users, teams, members: 2 + 1 + 2 pages of 2) and three searches.
    assert_eq!(log.len(), 8, "{log:#?}");
    assert!(log.iter().all(|r| r.query.contains("count_total=true")));
}

#[test]
fn deletions_are_caught_by_the_full_reconciliation() {
    let b = Bench::new(Mode::AdminKey);
    b.refresh().unwrap();
    b.fake.delete(Kind::Contacts, 402);
    b.refresh().unwrap();
    assert!(
        contact(&b.model(), "402").is_some(),
        "an incremental read cannot see it"
    );
    b.reconcile_due();
    b.refresh().unwrap();
    assert!(
        contact(&b.model(), "402").is_none(),
        "the reconciliation did"
    );
    assert_eq!(b.model().contacts.len(), 4);
}

#[test]
fn a_silent_visibility_change_is_caught_by_the_full_reconciliation() {
    let b = Bench::new(Mode::AdminKey);
    b.refresh().unwrap();
    assert!(b.may_read("101", "contact:400"));
    // (A later change moves the contacts' mark past Ada's stamp.)
    b.fake
        .edit(Kind::Contacts, 402, |c| c["TITLE"] = json!("COO"));
    b.refresh().unwrap();
    b.fake.edit_silently(Kind::Contacts, 400, |c| {
        c["VISIBLE_TO"] = json!("OWNER");
        c["VISIBLE_TEAM_ID"] = json!(null);
    });
    b.fake.edit_user(101, |u| u["ROLE_ID"] = json!(6));
    b.refresh().unwrap();
    assert!(
        matches!(
            contact(&b.model(), "400").unwrap().visibility,
            Some(Visibility::Team(_))
        ),
        "DATE_UPDATED_UTC did not move"
    );
    b.reconcile_due();
    b.refresh().unwrap();
    assert_eq!(
        contact(&b.model(), "400").unwrap().visibility,
        Some(Visibility::OwnerOnly)
    );
    assert!(!b.may_read("101", "contact:400"));
    assert!(b.may_read("102", "contact:400"));
}

#[test]
fn delegated_a_key_that_stops_seeing_a_record_loses_it_at_the_reconciliation() {
    let b = Bench::new(Mode::Delegated);
    b.refresh().unwrap();
    assert!(
        b.may_read("101", "contact:400"),
        "Erin's key sees it (team)"
    );
    assert!(!b.may_read("103", "contact:400"), "Hank's does not");
    b.fake
        .edit(Kind::Contacts, 402, |c| c["TITLE"] = json!("COO"));
    b.refresh().unwrap();
    b.fake.edit_silently(Kind::Contacts, 400, |c| {
        c["VISIBLE_TO"] = json!("OWNER");
    });
    b.refresh().unwrap();
    assert!(
        b.may_read("101", "contact:400"),
        "not seen before the reconciliation"
    );
    b.reconcile_due();
    b.refresh().unwrap();
    assert!(!b.may_read("101", "contact:400"));
    assert!(
        b.may_read("102", "contact:400"),
        "the owner's key still sees it"
    );
    assert!(b.may_read("100", "contact:400"), "and the admin's");
    // An edit that hides a record from a key (the stamp moves) takes effect at once.
    b.fake.edit(Kind::Contacts, 402, |c| {
        c["VISIBLE_TO"] = json!("INDIVIDUALS");
        c["VISIBLE_USER_IDS"] = json!("103");
    });
    assert!(b.may_read("102", "contact:402"));
    b.refresh().unwrap();
    assert!(
        !b.may_read("102", "contact:402"),
        "Frank's search no longer lists it"
    );
    assert!(b.may_read("103", "contact:402"));
    assert!(b.may_read("101", "contact:402"), "the owner");
    // A record shown to a key only now is readable at once.
    b.fake
        .edit(Kind::Contacts, 404, |c| c["VISIBLE_TO"] = json!("EVERYONE"));
    b.refresh().unwrap();
    assert!(b.may_read("101", "contact:404"));
}

#[test]
fn delegated_write_backs_go_out_with_the_acting_users_key() {
    let mut b = Bench::new(Mode::Delegated);
    b.config.user_keys.remove("103");
    let mut source = b.open();
    mirror::refresh(&b.state, &source).unwrap();
    let v = source
        .get(&"contact:402".parse().unwrap())
        .unwrap()
        .unwrap()
        .0;
    b.fake.clear_log();
    source
        .apply(&update("contact:402", "101", v, json!({"title": "COO"})))
        .unwrap();
    let put = b
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(put.user, Some(101), "Erin's own key");
    assert_eq!(b.fake.record(Kind::Contacts, 402).unwrap()["TITLE"], "COO");
    // No key for Hank: refused, nothing sent.
    let v = source
        .get(&"contact:402".parse().unwrap())
        .unwrap()
        .unwrap()
        .0;
    b.fake.clear_log();
    let err = source
        .apply(&update("contact:402", "103", v, json!({"title": "Hacked"})))
        .unwrap_err();
    assert!(matches!(err, CrmError::Refused(_)), "{err}");
    assert!(b.fake.requests().is_empty());
    // Insightly forbids it: refused (the CRM wins), not a failure.
    b.fake.fail_next(403, None, 1);
    let err = source
        .apply(&update("contact:402", "101", v, json!({"title": "CFO"})))
        .unwrap_err();
    assert!(
        matches!(err, CrmError::Refused(ref m) if m.contains("403")),
        "{err}"
    );
    assert_eq!(b.fake.record(Kind::Contacts, 402).unwrap()["TITLE"], "COO");
}

#[test]
fn a_remote_change_is_never_overwritten_by_a_write_back() {
    let b = Bench::new(Mode::AdminKey);
    let mut source = b.open();
    mirror::refresh(&b.state, &source).unwrap();
    let record: RecordRef = "event:500".parse().unwrap();
    let v = source.get(&record).unwrap().unwrap().0;
    b.fake
        .edit(Kind::Events, 500, |e| e["LOCATION"] = json!("Room 2"));
    let err = source
        .apply(&update(
            "event:500",
            "102",
            v,
            json!({"location": "Room 9"}),
        ))
        .unwrap_err();
    assert!(
        matches!(err, CrmError::Conflict { expected, .. } if expected == v),
        "{err}"
    );
    assert_eq!(
        b.fake.record(Kind::Events, 500).unwrap()["LOCATION"],
        "Room 2"
    );
    // A stamp that moved without a content change is not a conflict.
    let v = source.get(&record).unwrap().unwrap().0;
    b.fake.edit(Kind::Events, 500, |_| {});
    let out = source
        .apply(&update(
            "event:500",
            "102",
            v,
            json!({"location": "Room 9"}),
        ))
        .unwrap();
    assert!(out.version > v);
    assert_eq!(
        b.fake.record(Kind::Events, 500).unwrap()["LOCATION"],
        "Room 9"
    );
    // Creating from a phone is not supported: refused, so the engine leaves the item alone.
    let Some((_, Entity::Contact(c))) = source.get(&"contact:402".parse().unwrap()).unwrap() else {
        panic!()
    };
    let err = source
        .apply(&WriteBack::Create {
            acting_user: UserId::new("102").unwrap(),
            entity: Box::new(Entity::Contact(c)),
        })
        .unwrap_err();
    assert!(matches!(err, CrmError::Refused(_)));
}
