use super::*;
use crate::crm::{sqlite::SqliteCrm, Source};

const ORG: &str = include_str!("../../tests/fixtures/example-org.json");

/// An embedded CRM in memory holding the example org.
fn example_crm() -> SqliteCrm {
    let mut crm = SqliteCrm::open(Path::new(":memory:")).unwrap();
    crm.load(&crate::crm::orgfile::parse("example", ORG).unwrap())
        .unwrap();
    crm
}

#[test]
fn mirror_follows_the_change_feed_with_a_cursor() {
    let crm = example_crm();
    let state = StateDb::open_in_memory().unwrap();
    let mut cursor = state.crm_cursor().unwrap();
    assert_eq!(cursor, Cursor(0));
    let mut pages = 0;
    loop {
        let batch = crm.changes_since(cursor, 3).unwrap();
        pages += 1;
        let update = state.apply_crm_changes(&batch).unwrap();
        assert!(update.applied <= 3);
        cursor = state.crm_cursor().unwrap();
        assert_eq!(cursor, batch.next_cursor);
        if !batch.more {
            break;
        }
        assert!(pages < 100);
    }
    assert!(pages > 1, "a small limit pages the feed");
    let mirrored = state.load_org_model().unwrap();
    let (direct, problems) = crm.snapshot().unwrap();
    assert!(problems.is_empty());
    assert_eq!(mirrored, direct);
    // Nothing new: an empty batch at the same cursor.
    let batch = crm.changes_since(cursor, 100).unwrap();
    assert!(batch.changes.is_empty() && !batch.more);
    assert_eq!(batch.next_cursor, cursor);
}

#[test]
fn state_db_schema_is_current_after_open() {
    let state = StateDb::open_in_memory().unwrap();
    assert_eq!(state.schema_version().unwrap(), MIGRATIONS.len() as i64);
}

#[test]
fn the_state_db_is_created_only_on_purpose_and_busy_is_a_kind_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let err = StateDb::open_existing(&path).err().unwrap();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("crmsync init"), "{err}");
    assert!(!path.exists());
    StateDb::create(&path).unwrap();
    let state = StateDb::open_existing_with(&path, Duration::from_millis(50)).unwrap();

    let foreign = rusqlite::Connection::open(&path).unwrap();
    foreign
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO settings (key, value) VALUES ('x', 'y');")
        .unwrap();
    let err = state.set_setting("crm_cursor", "7").unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert_eq!(err.to_string(), "the state DB is busy");
    foreign.execute_batch("ROLLBACK;").unwrap();
    state.set_setting("crm_cursor", "7").unwrap();
}

#[test]
fn an_account_is_switched_only_once_the_old_one_holds_nothing_of_ours() {
    let state = StateDb::open_in_memory().unwrap();
    let erin = crate::model::UserId::new("erin").unwrap();
    state.ensure_sync_user(&erin, "erin@a.example").unwrap();
    // Nothing synced there yet: switching is fine.
    let row = state.ensure_sync_user(&erin, "erin@b.example").unwrap();
    assert_eq!(row.google_account, "erin@b.example");
    state
        .set_containers(&erin, "cal", "contactGroups/g")
        .unwrap();
    let err = state.ensure_sync_user(&erin, "erin@c.example").unwrap_err();
    assert!(matches!(err, StoreError::AccountInUse { .. }), "{err}");
    assert!(err.to_string().contains("revoked there before"));
    // Revoked: the next account starts clean.
    let id = state
        .queue_revocation(
            "erin",
            "erin@b.example",
            crate::revoke::RevocationReason::AccountChanged,
            None,
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        state
            .queue_revocation(
                "erin",
                "erin@b.example",
                crate::revoke::RevocationReason::AccountChanged,
                None
            )
            .unwrap(),
        None,
        "one open revocation per (user, account)"
    );
    state
        .start_revocation(id, &serde_json::json!({"events": 0}))
        .unwrap();
    let rev = state.revocation(id).unwrap().unwrap();
    state
        .finish_revocation("run", &rev, &serde_json::json!({"ok": true}))
        .unwrap();
    assert!(state.is_revoked(&erin).unwrap());
    let row = state.ensure_sync_user(&erin, "erin@c.example").unwrap();
    assert_eq!(row.google_account, "erin@c.example");
    assert!(row.calendar_id.is_none() && row.revoked_at.is_none());
    assert_eq!(
        state.revocation(id).unwrap().unwrap().receipt,
        Some(serde_json::json!({"ok": true}))
    );
}

#[test]
fn a_mirror_row_that_does_not_read_is_a_corrupt_error_naming_it() {
    let crm = example_crm();
    let state = StateDb::open_in_memory().unwrap();
    state
        .apply_crm_changes(&crm.changes_since(Cursor(0), 10_000).unwrap())
        .unwrap();
    assert!(state.load_org_model().is_ok());
    let id: String = state
        .conn
        .query_row(
            "SELECT id FROM mirror_entities WHERE kind = 'contact' ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    state
        .conn
        .execute(
            "UPDATE mirror_entities SET body = '{\"id\": 7}' WHERE kind = 'contact' AND id = ?1",
            [&id],
        )
        .unwrap();
    match state.load_org_model() {
        Err(StoreError::Corrupt(why)) => {
            assert!(why.contains(&format!("mirror contact:{id}")), "{why}")
        }
        other => panic!("expected a corrupt mirror, got {other:?}"),
    }
}
