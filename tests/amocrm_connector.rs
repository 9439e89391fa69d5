//! The amoCRM connector against its fake API (`amocrm_support`) — the generic `Source`
//! contract runs in `crm_contract.rs`, the held-back story in `crm_stories.rs`: what is
//! mapped, paging with 204, incremental reads, and every failure path —
//! 401 with a refresh, a refused refresh token, a refused long-lived token, 429 then
//! success, 5xx then success, pacing, a malformed record skipped and reported, a deletion
//! caught by reconciliation, a rights change, a stale write-back as a conflict.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod amocrm_support;
mod connector_support;

use amocrm_support::*;
use crmsync::crm::amocrm::AmoCrmConfig;
use crmsync::crm::connector::ConnectorError;
use crmsync::crm::{CrmError, Cursor, Entity, EntityKind, Source, WriteBack};
use crmsync::model::{ObjectKind, RecordRef, ScopeLevel, UserId};
use crmsync::security::{Access, Operation};
use serde_json::json;
use std::time::Duration;

fn contact(id: &str) -> RecordRef {
    RecordRef::new(ObjectKind::Contact, id.parse().unwrap())
}

fn user(id: &str) -> UserId {
    id.parse().unwrap()
}

/// A fake, a temp dir and a config for them.
struct Setup {
    fake: FakeAmo,
    _dir: tempfile::TempDir,
    config: AmoCrmConfig,
}

fn setup() -> Setup {
    let fake = FakeAmo::start();
    let dir = tempfile::tempdir().unwrap();
    let config = long_lived_config(&fake, dir.path());
    Setup {
        fake,
        _dir: dir,
        config,
    }
}

/// An update of `record` at version `v` by `acting`.
fn update(record: RecordRef, v: i64, acting: &str, fields: serde_json::Value) -> WriteBack {
    WriteBack::Update {
        record,
        expected_version: v,
        acting_user: user(acting),
        fields: fields.as_object().unwrap().clone(),
    }
}

/// The version the shadow holds for a live record (its first read makes the feed).
fn version_of(source: &dyn Source, record: &RecordRef) -> i64 {
    source.changes_since(Cursor(0), 1).unwrap();
    source.get(record).unwrap().expect("the record is live").0
}

fn model_of(source: &dyn Source) -> crmsync::crm::OrgModel {
    let mut model = crmsync::crm::OrgModel::default();
    let mut cursor = Cursor(0);
    for _ in 0..1000 {
        let batch = source.changes_since(cursor, 100).unwrap();
        for c in batch.changes {
            match c.entity {
                Some(e) => model.insert(e, c.version),
                None => model.remove(c.kind, &c.id),
            }
        }
        cursor = batch.next_cursor;
        if !batch.more {
            break;
        }
    }
    model
}

#[test]
fn users_rights_groups_and_records_are_mapped() {
    let s = setup();
    let source = open(&s.config, &manual_clock());
    let model = model_of(&source);
    assert_eq!(model.settings.name, "Acme (amoCRM)");
    assert_eq!(model.settings.google_domains, vec!["acme.example"]);
    assert!(model.roles.is_empty() && model.sharing_rules.is_empty());
    let alice = &model.users[&user("5001")];
    assert!(alice.admin && alice.active);
    assert_eq!(alice.google_account.as_deref(), Some("alice@acme.example"));
    assert!(!model.users[&user("5005")].active, "is_active: false");
    let east = &model.teams[&"10".parse().unwrap()];
    assert_eq!(east.name, "Sales East");
    assert_eq!(east.members, vec![user("5002"), user("5003")]);
    let hank = &model.profiles[&"amocrm-user-5004".parse().unwrap()];
    let contacts = hank.object(ObjectKind::Contact);
    assert_eq!(contacts.scope.read, Some(ScopeLevel::Team));
    assert_eq!(contacts.scope.edit, Some(ScopeLevel::Team));
    assert!(!contacts.delete);

    let ada = &model.contacts[&"104".parse().unwrap()];
    assert_eq!(
        (ada.first_name.as_str(), ada.last_name.as_str()),
        ("Ada", "Lovelace")
    );
    assert_eq!(ada.owner, user("5003"));
    assert_eq!(ada.title, "CTO");
    assert_eq!(ada.phones[0].number, "+442079460000");
    assert_eq!(ada.organization.as_ref().unwrap().as_str(), "201");
    assert_eq!(model.organizations[&"201".parse().unwrap()].name, "Globex");
    let demo = &model.events[&"301".parse().unwrap()];
    assert_eq!(demo.time_zone, "Europe/Moscow");
    assert_eq!(
        demo.start,
        crmsync::model::EventTime::DateTime("2026-11-25T14:00:00".parse().unwrap())
    );
    assert!(
        !model.events.contains_key(&"303".parse().unwrap()),
        "a custom task type is not an event"
    );

    // Who may read what follows the rights.
    let access = Access::build(&model);
    let may = |u: &str, c: &str| access.may(&user(u), &contact(c), Operation::Read).unwrap();
    assert!(may("5002", "105"), "Erin: view A");
    assert!(may("5003", "104") && !may("5003", "101"), "Frank: view M");
    assert!(
        may("5004", "106") && !may("5004", "104"),
        "Hank: view G (Ivan is in West)"
    );
    assert!(
        !access
            .may(&user("5002"), &contact("104"), Operation::Edit)
            .unwrap(),
        "Erin: edit M"
    );
    assert!(!may("5005", "106"), "inactive users read nothing");
}

#[test]
fn lists_are_paged_until_a_short_page_or_204() {
    let s = setup();
    let config = AmoCrmConfig {
        page_size: 2,
        ..s.config.clone()
    };
    let source = open(&config, &manual_clock());
    let model = model_of(&source);
    assert_eq!(model.contacts.len(), 7);
    let state = s.fake.state();
    let contacts: Vec<_> = state.requests("GET", "/api/v4/contacts");
    // 7 contacts, 2 per page: pages 1–4, the last one short.
    assert_eq!(contacts.len(), 4, "{:?}", walk(&state));
    for (i, r) in contacts.iter().enumerate() {
        assert_eq!(r.param("page"), Some((i + 1).to_string().as_str()));
        assert_eq!(r.param("limit"), Some("2"));
        assert_eq!(r.status, 200);
    }
    // 2 companies fill page 1 exactly: page 2 is 204 No Content, and the walk stops there.
    let companies = state.requests("GET", "/api/v4/companies");
    assert_eq!(
        companies.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![200, 204]
    );
    assert_eq!(model.organizations.len(), 2);
    assert!(state.log.iter().all(|l| l.param("limit") != Some("250")));
}

#[test]
fn an_empty_list_is_204_and_reads_as_nothing() {
    let mut fake_state = FakeState::from_fixtures();
    fake_state.tasks.clear();
    let fake = FakeAmo::start_with(fake_state);
    let dir = tempfile::tempdir().unwrap();
    let source = open(&long_lived_config(&fake, dir.path()), &manual_clock());
    let model = model_of(&source);
    assert!(model.events.is_empty());
    assert_eq!(model.contacts.len(), 7);
    let tasks = fake.state().requests("GET", "/api/v4/tasks");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].status, 204);
}

#[test]
fn later_reads_are_incremental_from_the_newest_updated_at() {
    let s = setup();
    let source = open(&s.config, &manual_clock());
    source.pull_now(Some(true)).unwrap();
    let before = version_of(&source, &contact("102"));
    s.fake.state().edit_field(
        "contacts",
        102,
        "POSITION",
        json!([{"value": "Head of IT"}]),
    );
    let requests_before = s.fake.state().log.len();
    source.pull_now(Some(false)).unwrap();
    let state = s.fake.state();
    let read = &state.log[requests_before..];
    let contacts = read.iter().find(|l| l.path == "/api/v4/contacts").unwrap();
    // The fixture's newest contact was updated at 1789000007.
    assert_eq!(
        contacts.param("filter[updated_at][from]"),
        Some("1789000007")
    );
    assert_eq!(contacts.param("order[id]"), Some("asc"));
    let tasks = read.iter().find(|l| l.path == "/api/v4/tasks").unwrap();
    assert!(
        tasks.param("filter[task_type][]").is_none(),
        "incremental task reads see every type"
    );
    drop(state);
    assert!(version_of(&source, &contact("102")) > before);
    let Some((_, Entity::Contact(c))) = source.get(&contact("102")).unwrap() else {
        panic!()
    };
    assert_eq!(c.title, "Head of IT");
    // Users are read on every pull (rights changes move no record).
    assert_eq!(s.fake.state().requests("GET", "/api/v4/users").len(), 2);
}

#[test]
fn a_deletion_is_caught_by_the_full_reconciliation() {
    let s = setup();
    let source = open(&s.config, &manual_clock());
    source.pull_now(Some(true)).unwrap();
    s.fake.state().delete("contacts", 107);
    // An incremental read cannot see a deletion: the contact is still there.
    source.pull_now(Some(false)).unwrap();
    assert!(source.get(&contact("107")).unwrap().is_some());
    let report = source.pull_now(Some(true)).unwrap();
    assert!(report.reconciled);
    assert!(source.get(&contact("107")).unwrap().is_none());
    let tail = model_of(&source);
    assert!(!tail.contacts.contains_key(&"107".parse().unwrap()));
    assert_eq!(tail.contacts.len(), 6);
}

#[test]
fn the_policy_reconciles_fully_every_interval() {
    let s = setup();
    let clock = manual_clock();
    let config = AmoCrmConfig {
        full_reconcile_minutes: 60,
        ..s.config.clone()
    };
    let source = open(&config, &clock);
    source.changes_since(Cursor(0), 1000).unwrap(); // first pull: full
    s.fake.state().delete("contacts", 107);
    source.pull_now(None).unwrap(); // within the hour: incremental
    assert!(source.get(&contact("107")).unwrap().is_some());
    clock.advance(Duration::from_secs(3600));
    source.pull_now(None).unwrap(); // due: full
    assert!(source.get(&contact("107")).unwrap().is_none());
}

#[test]
fn a_task_that_changes_type_stops_being_an_event() {
    let s = setup();
    let source = open(&s.config, &manual_clock());
    source.pull_now(Some(true)).unwrap();
    s.fake.state().edit("tasks", 302, "task_type_id", json!(77));
    source.pull_now(Some(false)).unwrap();
    let event = RecordRef::new(ObjectKind::Event, "302".parse().unwrap());
    assert!(source.get(&event).unwrap().is_none());
}

#[test]
fn a_malformed_record_is_skipped_and_reported_and_the_rest_is_read() {
    let mut state = FakeState::from_fixtures();
    state.contacts[1]["responsible_user_id"] = json!("frank");
    state.contacts[2]["custom_fields_values"][1]["values"][0]["value"] = json!("not an e-mail");
    state.users[3]["rights"] = json!({"contacts": {"view": "A"}});
    let mut no_id = state.contacts[0].clone();
    no_id.as_object_mut().unwrap().remove("id");
    state.contacts.push(no_id);
    let fake = FakeAmo::start_with(state);
    let dir = tempfile::tempdir().unwrap();
    let source = open(&long_lived_config(&fake, dir.path()), &manual_clock());
    let db = crmsync::store::StateDb::open_in_memory().unwrap();
    let refresh = crmsync::mirror::refresh(&db, &source).unwrap();
    let mut problems: Vec<_> = refresh
        .problems
        .iter()
        .map(|p| (p.kind.clone(), p.id.clone()))
        .collect();
    problems.sort();
    assert_eq!(
        problems,
        vec![
            ("contact".to_string(), "102".to_string()),
            ("contact".to_string(), "103".to_string()),
            ("contact".to_string(), "?".to_string()),
            ("user".to_string(), "5004".to_string()),
        ],
        "{:#?}",
        refresh.problems
    );
    assert!(refresh
        .problems
        .iter()
        .any(|p| p.id == "103" && p.error.contains("emails[0]")));
    let model = db.load_org_model().unwrap();
    assert_eq!(model.contacts.len(), 5, "the other contacts are mirrored");
    assert!(!model.users.contains_key(&user("5004")));
    assert_eq!(db.mirror_problems().unwrap().len(), 4);
    // Fixed in amoCRM: read again on the next full reconciliation, and the problem clears.
    fake.state()
        .edit("contacts", 102, "responsible_user_id", json!(5002));
    source.pull_now(Some(true)).unwrap();
    let refresh = crmsync::mirror::refresh(&db, &source).unwrap();
    assert!(refresh.problems.iter().all(|p| p.id != "102"));
    assert!(db
        .load_org_model()
        .unwrap()
        .contacts
        .contains_key(&"102".parse().unwrap()));
}

#[test]
fn a_429_waits_the_retry_after_and_then_reads_everything() {
    let s = setup();
    s.fake.state().faults.push_back(Fault {
        prefix: "/api/v4/contacts".into(),
        status: 429,
        headers: vec![("retry-after".into(), "3".into())],
        ..Fault::default()
    });
    let clock = manual_clock();
    let source = open(&s.config, &clock);
    assert_eq!(model_of(&source).contacts.len(), 7);
    assert!(clock.sleeps().contains(&Duration::from_secs(3)));
    let statuses: Vec<u16> = s
        .fake
        .state()
        .requests("GET", "/api/v4/contacts")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![429, 200]);
}

#[test]
fn server_errors_are_retried_with_backoff_then_succeed_or_fail_clearly() {
    let s = setup();
    for status in [503, 500] {
        s.fake.state().faults.push_back(Fault {
            prefix: "/api/v4/users".into(),
            status,
            ..Fault::default()
        });
    }
    let clock = manual_clock();
    let source = open(&s.config, &clock);
    assert_eq!(model_of(&source).users.len(), 5);
    let backoff: Vec<_> = clock
        .sleeps()
        .into_iter()
        .filter(|d| *d >= Duration::from_millis(250))
        .collect();
    assert_eq!(backoff.len(), 2, "two jittered backoff waits: {backoff:?}");

    // Never better: bounded attempts, and a clear error; nothing is tombstoned.
    let config = AmoCrmConfig {
        max_attempts: 3,
        ..s.config.clone()
    };
    for _ in 0..3 {
        s.fake.state().faults.push_back(Fault {
            prefix: "/api/v4/contacts".into(),
            status: 502,
            ..Fault::default()
        });
    }
    let again = open(&config, &clock);
    let err = again.pull_now(Some(true)).unwrap_err();
    assert!(
        matches!(
            err,
            CrmError::Connector(ConnectorError::Unavailable {
                status: 502,
                attempts: 3,
                ..
            })
        ),
        "{err}"
    );
    assert!(
        again.get(&contact("104")).unwrap().is_some(),
        "nothing inferred"
    );
}

#[test]
fn requests_are_paced_at_seven_per_second() {
    let s = setup();
    let clock = manual_clock();
    let source = open(&s.config, &clock);
    source.pull_now(Some(true)).unwrap();
    let gaps = clock.sleeps();
    assert!(!gaps.is_empty());
    for gap in gaps {
        assert!(
            gap <= Duration::from_millis(143) && gap >= Duration::from_millis(142),
            "{gap:?}"
        );
    }
}

#[test]
fn a_refused_long_lived_token_is_a_clear_error_without_the_token() {
    let s = setup();
    s.fake.state().access_token = Some("another-token".into());
    let source = open(&s.config, &manual_clock());
    let err = source.changes_since(Cursor(0), 10).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            CrmError::Connector(ConnectorError::Unauthorized { status: 401, .. })
        ),
        "{err:?}"
    );
    assert!(text.contains("long-lived amoCRM token"), "{text}");
    assert!(!text.contains(LONG_LIVED) && !format!("{err:?}").contains(LONG_LIVED));
    assert_eq!(s.fake.state().log.len(), 1, "a 401 is not retried");
}

#[cfg(unix)]
#[test]
fn a_401_refreshes_once_saves_the_rotated_tokens_and_goes_on() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeAmo::start();
    {
        let mut state = fake.state();
        state.access_token = Some("current-access".into());
        state.refresh_token = Some("fixture-refresh-0".into());
    }
    let dir = tempfile::tempdir().unwrap();
    // The token file is amoCRM's answer as an admin saved it (no issue time).
    let tokens: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/amocrm/token.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let config = oauth_config(&fake, dir.path(), &tokens);
    let clock = manual_clock();
    let source = open(&config, &clock);
    assert_eq!(model_of(&source).contacts.len(), 7);
    {
        let state = fake.state();
        assert_eq!(state.refreshes, 1);
        assert_eq!(state.log[0].status, 401, "the saved access token was old");
        assert_eq!(state.log[1].path, "/oauth2/access_token");
        assert_eq!(state.log[2].auth, "Bearer rotated-access-1");
    }
    let token_file = config.oauth.as_ref().unwrap().token_file.clone();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&token_file).unwrap()).unwrap();
    assert_eq!(saved["refresh_token"], json!("rotated-refresh-1"));
    assert_eq!(saved["access_token"], json!("rotated-access-1"));
    let obtained = saved["obtained_at"].as_i64().unwrap();
    assert!(
        (0..10).contains(&(obtained - start_time().timestamp())),
        "{obtained}"
    );
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A later process uses the saved token; when amoCRM expires it, it refreshes again with
    // the rotated refresh token.
    fake.state().access_token = Some("server-side-new".into());
    let next = open(&config, &clock);
    next.pull_now(Some(false)).unwrap();
    assert_eq!(fake.state().refreshes, 2);
}

#[test]
fn a_refused_refresh_token_stops_with_a_clear_error_and_no_secret() {
    let fake = FakeAmo::start();
    {
        let mut state = fake.state();
        state.access_token = Some("current-access".into());
        state.refresh_token = Some("another-refresh".into());
    }
    let dir = tempfile::tempdir().unwrap();
    let config = oauth_config(
        &fake,
        dir.path(),
        &json!({"access_token": "old-access", "refresh_token": "spent-refresh-token-xyz",
                "expires_in": 86400}),
    );
    let source = open(&config, &manual_clock());
    let err = source.changes_since(Cursor(0), 10).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            CrmError::Connector(ConnectorError::Unauthorized { status: 400, .. })
        ),
        "{err:?}"
    );
    assert!(
        text.contains("refresh token") && text.contains("authorize"),
        "{text}"
    );
    for secret in ["spent-refresh-token-xyz", "old-access", CLIENT_SECRET] {
        assert!(!text.contains(secret) && !format!("{err:?}").contains(secret));
    }
    let state = fake.state();
    assert_eq!(
        state.log.len(),
        2,
        "one 401, one refused refresh: {:?}",
        walk(&state)
    );
    let token_file = config.oauth.as_ref().unwrap().token_file.clone();
    drop(state);
    let kept = std::fs::read_to_string(token_file).unwrap();
    assert!(
        kept.contains("spent-refresh-token-xyz"),
        "the file is left as it was"
    );
}

#[test]
fn an_expired_access_token_is_refreshed_before_the_call() {
    let fake = FakeAmo::start();
    fake.state().refresh_token = Some("r0".into());
    let dir = tempfile::tempdir().unwrap();
    let obtained = start_time().timestamp() - 90_000;
    let config = oauth_config(
        &fake,
        dir.path(),
        &json!({"access_token": "a0", "refresh_token": "r0", "expires_in": 86400,
                "obtained_at": obtained}),
    );
    let source = open(&config, &manual_clock());
    source.pull_now(Some(true)).unwrap();
    let state = fake.state();
    assert_eq!(
        state.log[0].path, "/oauth2/access_token",
        "no request with a dead token"
    );
    assert!(state.log.iter().all(|l| l.status != 401));
}

#[test]
fn a_stale_write_back_is_a_conflict_and_nothing_is_sent() {
    let s = setup();
    let mut source = open(&s.config, &manual_clock());
    let v = version_of(&source, &contact("104"));
    // The office changes the title after the engine read the record.
    s.fake
        .state()
        .edit_field("contacts", 104, "POSITION", json!([{"value": "CEO"}]));
    let err = source
        .apply(&update(
            contact("104"),
            v,
            "5003",
            json!({"phones": [{"number": "+14155550199", "label": "mobile"}]}),
        ))
        .unwrap_err();
    let CrmError::Conflict {
        expected, current, ..
    } = err
    else {
        panic!("{err}")
    };
    assert_eq!(expected, v);
    assert!(current > v, "the shadow took amoCRM's newer content");
    assert!(s.fake.state().requests("PATCH", "/contacts/104").is_empty());
    let Some((_, Entity::Contact(c))) = source.get(&contact("104")).unwrap() else {
        panic!()
    };
    assert_eq!(c.title, "CEO");
    assert_eq!(c.phones[0].number, "+442079460000", "not overwritten");
}

#[test]
fn a_write_back_to_a_record_deleted_meanwhile_is_not_found() {
    let s = setup();
    let mut source = open(&s.config, &manual_clock());
    let v = version_of(&source, &contact("105"));
    s.fake.state().delete("contacts", 105);
    let err = source
        .apply(&update(contact("105"), v, "5004", json!({"title": "Boss"})))
        .unwrap_err();
    assert!(matches!(err, CrmError::NotFound(_)), "{err}");
    assert!(source.get(&contact("105")).unwrap().is_none(), "tombstoned");
}

#[test]
fn event_write_backs_move_the_task_and_unmappable_fields_are_refused() {
    let s = setup();
    let mut source = open(&s.config, &manual_clock());
    let event = RecordRef::new(ObjectKind::Event, "301".parse().unwrap());
    let v = version_of(&source, &event);
    let update = |v, fields| update(event.clone(), v, "5003", fields);
    let out = source
        .apply(&update(
            v,
            json!({"title": "Demo at Globex (moved)", "start": "2026-11-25T16:00:00",
                   "end": "2026-11-25T16:45:00"}),
        ))
        .unwrap();
    assert!(out.version > v);
    {
        let mut state = s.fake.state();
        let task = state.record("tasks", 301).clone();
        assert_eq!(task["text"], json!("Demo at Globex (moved)"));
        assert_eq!(task["complete_till"], json!(1_795_611_600), "16:00 Moscow");
        assert_eq!(task["duration"], json!(2700));
    }
    let err = source
        .apply(&update(out.version, json!({"location": "Room 4"})))
        .unwrap_err();
    assert!(matches!(err, CrmError::Refused(_)), "{err}");
    let err = source
        .apply(&update(
            out.version,
            json!({"recurrence": ["RRULE:FREQ=WEEKLY"]}),
        ))
        .unwrap_err();
    assert!(matches!(err, CrmError::Refused(_)), "{err}");
    assert_eq!(s.fake.state().requests("PATCH", "/tasks/301").len(), 1);
}

#[test]
fn a_rights_change_is_a_change_in_the_feed() {
    let s = setup();
    let source = open(&s.config, &manual_clock());
    let before = model_of(&source);
    assert!(Access::build(&before)
        .may(&user("5002"), &contact("104"), Operation::Read)
        .unwrap());
    let cursor = source.changes_since(Cursor(0), 10_000).unwrap().next_cursor;
    s.fake.state().set_right(5002, "contacts", "view", "M");
    let tail = source.changes_since(cursor, 100).unwrap();
    let kinds: Vec<_> = tail
        .changes
        .iter()
        .map(|c| (c.kind, c.id.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![(EntityKind::Profile, "amocrm-user-5002".to_string())],
        "only Erin's profile changed"
    );
    let after = model_of(&source);
    assert!(!Access::build(&after)
        .may(&user("5002"), &contact("104"), Operation::Read)
        .unwrap());
}

#[test]
fn a_user_removed_from_amocrm_is_tombstoned_with_their_profile() {
    let s = setup();
    let source = open(&s.config, &manual_clock());
    source.pull_now(Some(true)).unwrap();
    s.fake.state().users.retain(|u| u["id"] != json!(5004));
    source.pull_now(Some(false)).unwrap();
    let model = model_of(&source);
    assert!(!model.users.contains_key(&user("5004")));
    assert!(!model
        .profiles
        .contains_key(&"amocrm-user-5004".parse().unwrap()));
    assert_eq!(
        model.teams[&"20".parse().unwrap()].members,
        vec![user("5005")]
    );
}

#[test]
fn an_account_without_api_filtering_costs_a_full_listing_but_loses_nothing() {
    let s = setup();
    s.fake.state().filter_enabled = false;
    let source = open(&s.config, &manual_clock());
    source.pull_now(Some(true)).unwrap();
    s.fake
        .state()
        .edit("contacts", 101, "first_name", json!("Beatrice"));
    source.pull_now(Some(false)).unwrap();
    let Some((_, Entity::Contact(c))) = source.get(&contact("101")).unwrap() else {
        panic!()
    };
    assert_eq!(c.first_name, "Beatrice");
    let unchanged = version_of(&source, &contact("103"));
    source.pull_now(Some(false)).unwrap();
    assert_eq!(
        version_of(&source, &contact("103")),
        unchanged,
        "re-reading an unchanged record is not a change"
    );
}

#[test]
fn a_quiet_pull_costs_five_paced_requests() {
    let s = setup();
    let clock = manual_clock();
    let source = open(&s.config, &clock);
    source.pull_now(Some(true)).unwrap();
    let before = s.fake.state().log.len();
    clock.clear_sleeps();
    let head = source.with_shadow(|sh| sh.head().unwrap());
    source.pull_now(Some(false)).unwrap();
    let state = s.fake.state();
    let paths: Vec<&str> = state.log[before..]
        .iter()
        .map(|l| l.path.as_str())
        .collect();
    assert_eq!(
        paths,
        vec![
            "/api/v4/account",
            "/api/v4/users",
            "/api/v4/companies",
            "/api/v4/contacts",
            "/api/v4/tasks"
        ]
    );
    let waited: Duration = clock.sleeps().into_iter().sum();
    assert!(waited < Duration::from_millis(720), "{waited:?}");
    assert_eq!(
        source.with_shadow(|sh| sh.head().unwrap()),
        head,
        "nothing changed, nothing new in the feed"
    );
}

#[test]
fn an_unknown_account_zone_is_reported_and_tasks_are_read_as_utc() {
    let mut state = FakeState::from_fixtures();
    state.account["_embedded"]["datetime_settings"]["timezone"] = json!("Mars/Olympus");
    let fake = FakeAmo::start_with(state);
    let dir = tempfile::tempdir().unwrap();
    let source = open(&long_lived_config(&fake, dir.path()), &manual_clock());
    let batch = source.changes_since(Cursor(0), 1000).unwrap();
    assert!(batch
        .problems
        .iter()
        .any(|p| p.kind == "org" && p.error.contains("Mars/Olympus")));
    let model = model_of(&source);
    assert_eq!(model.events[&"301".parse().unwrap()].time_zone, "UTC");
}

#[test]
fn an_unpaid_account_is_a_clear_error() {
    let s = setup();
    s.fake.state().faults.push_back(Fault {
        prefix: "/api/v4/account".into(),
        status: 402,
        ..Fault::default()
    });
    let err = open(&s.config, &manual_clock())
        .changes_since(Cursor(0), 10)
        .unwrap_err();
    assert!(err.to_string().contains("subscription has ended"), "{err}");
}

#[test]
fn a_write_back_amocrm_refuses_is_invalid_with_its_reason() {
    let s = setup();
    let mut source = open(&s.config, &manual_clock());
    let v = version_of(&source, &contact("104"));
    s.fake.state().faults.push_back(Fault {
        prefix: "/api/v4/contacts/104".into(),
        method: Some("PATCH".into()),
        status: 400,
        body: Some(json!({"validation-errors": [{"request_id": "0", "errors": [
            {"code": "InvalidPhone", "path": "custom_fields_values.0.values.0.value",
             "detail": "This value is not valid."}]}],
            "title": "Bad Request", "status": 400, "detail": "Request validation failed"})),
        ..Fault::default()
    });
    let err = source
        .apply(&update(
            contact("104"),
            v,
            "5003",
            json!({"phones": [{"number": "+14155550199", "label": "mobile"}]}),
        ))
        .unwrap_err();
    assert!(matches!(err, CrmError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("InvalidPhone"), "{err}");
    assert_eq!(version_of(&source, &contact("104")), v, "nothing changed");
}

#[test]
fn tokens_amocrm_issued_but_that_cannot_be_saved_are_a_clear_error() {
    let fake = FakeAmo::start();
    {
        let mut state = fake.state();
        state.access_token = Some("current-access".into());
        state.refresh_token = Some("r0".into());
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens_dir = dir.path().join("tokens");
    std::fs::create_dir(&tokens_dir).unwrap();
    let mut config = oauth_config(
        &fake,
        dir.path(),
        &json!({"access_token": "a0", "refresh_token": "r0"}),
    );
    let oauth = config.oauth.as_mut().unwrap();
    let moved = tokens_dir.join("amocrm-tokens.json");
    std::fs::rename(&oauth.token_file, &moved).unwrap();
    oauth.token_file = moved;
    let source = open(&config, &manual_clock());
    // The folder disappears after the file was read: the rotated pair cannot be written.
    std::fs::remove_dir_all(&tokens_dir).unwrap();
    let err = source.changes_since(Cursor(0), 10).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("could not be saved") && text.contains("authorize"),
        "{text}"
    );
    assert!(!text.contains("rotated-"), "{text}");
    assert_eq!(fake.state().refreshes, 1);
}

#[test]
fn a_token_answer_without_tokens_is_a_clear_error() {
    let fake = FakeAmo::start();
    {
        let mut state = fake.state();
        state.access_token = Some("current-access".into());
        state.refresh_token = Some("r0".into());
        state.refresh_answer = Some(json!({"token_type": "Bearer", "expires_in": 86400}));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = oauth_config(
        &fake,
        dir.path(),
        &json!({"access_token": "a0", "refresh_token": "r0"}),
    );
    let err = open(&config, &manual_clock())
        .changes_since(Cursor(0), 10)
        .unwrap_err();
    assert!(
        matches!(err, CrmError::Connector(ConnectorError::Protocol { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("token answer"), "{err}");
}
