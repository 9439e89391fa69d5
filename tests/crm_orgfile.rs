//! The org file: every error class names its JSON path and writes nothing; re-loads are
//! ordinary CRM changes (versions and tombstones).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crmsync::crm::orgfile::{self, OrgFileError};
use crmsync::crm::sqlite::SqliteCrm;
use crmsync::crm::{Cursor, EntityKind, Source};
use serde_json::{json, Value};
use std::path::Path;

fn example() -> Value {
    serde_json::from_str(include_str!("fixtures/example-org.json")).unwrap()
}

fn parse(doc: &Value) -> Result<crmsync::crm::OrgModel, OrgFileError> {
    orgfile::parse("test.json", &doc.to_string())
}

/// Asserts the document is refused with a problem at `path` whose message contains `needle`.
fn assert_problem(doc: &Value, path: &str, needle: &str) {
    let err = parse(doc).expect_err("document should be refused");
    assert!(
        err.problems
            .iter()
            .any(|p| p.path == path && p.message.contains(needle)),
        "expected a problem at {path} containing {needle:?}, got:\n{err}"
    );
    assert!(err.to_string().contains("nothing was loaded"));
}

#[test]
fn the_example_parses_and_normalises() {
    let model = parse(&example()).unwrap();
    assert_eq!(model.users.len(), 4);
    let c1 = &model.contacts[&"c1".parse().unwrap()];
    assert_eq!(c1.phones[0].number, "+442079460000");
    assert_eq!(c1.emails[0].address, "ada@globex.example");
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let mut doc = example();
    doc["contacts"][0]["nickname"] = json!("Ada");
    assert_problem(&doc, "contacts[0].nickname", "unknown field `nickname`");
    let mut doc = example();
    doc["profiles"][0]["objects"]["contact"]["fly"] = json!(true);
    assert_problem(
        &doc,
        "profiles[0].objects.contact.fly",
        "unknown field `fly`",
    );
    let mut doc = example();
    doc["extra"] = json!(1);
    assert_problem(&doc, "extra", "unknown field `extra`");
}

#[test]
fn wrong_types_and_bad_values_are_refused_with_their_path() {
    let mut doc = example();
    doc["users"][1]["active"] = json!("yes");
    assert_problem(&doc, "users[1].active", "invalid type");
    let mut doc = example();
    doc["org_wide_sharing"]["contact"] = json!("secret");
    assert_problem(&doc, "org_wide_sharing.contact", "unknown variant `secret`");
    let mut doc = example();
    doc["users"][2]["id"] = json!("frank smith");
    assert_problem(&doc, "users[2].id", "may only contain");
    let err = orgfile::parse("t.json", "{\"org\": ").unwrap_err();
    assert!(err.problems[0].message.contains("invalid JSON"), "{err}");
}

#[test]
fn dangling_references_are_refused() {
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Mutation, &str, &str)> = vec![
        (
            Box::new(|d| d["users"][1]["role"] = json!("ghost")),
            "users[1].role",
            "unknown role \"ghost\"",
        ),
        (
            Box::new(|d| d["users"][1]["profile"] = json!("ghost")),
            "users[1].profile",
            "unknown profile",
        ),
        (
            Box::new(|d| d["roles"][1]["parent"] = json!("ghost")),
            "roles[1].parent",
            "unknown role",
        ),
        (
            Box::new(|d| d["teams"][0]["members"][0] = json!("ghost")),
            "teams[0].members[0]",
            "unknown user",
        ),
        (
            Box::new(|d| d["contacts"][0]["owner"] = json!("ghost")),
            "contacts[0].owner",
            "unknown user",
        ),
        (
            Box::new(|d| d["contacts"][0]["assignees"] = json!(["ghost"])),
            "contacts[0].assignees[0]",
            "unknown user",
        ),
        (
            Box::new(|d| d["contacts"][0]["organization"] = json!("o9")),
            "contacts[0].organization",
            "unknown organization",
        ),
        (
            Box::new(|d| d["contacts"][0]["visibility"] = json!({"team": "west"})),
            "contacts[0].visibility.team",
            "unknown team",
        ),
        (
            Box::new(|d| d["events"][0]["attendees"][1] = json!({"contact": "c9"})),
            "events[0].attendees[1].contact",
            "unknown contact",
        ),
        (
            Box::new(|d| d["events"][0]["links"][1] = json!({"organization": "o9"})),
            "events[0].links[1].organization",
            "unknown organization",
        ),
        (
            Box::new(|d| d["sharing_rules"][0]["target"] = json!({"team": "west"})),
            "sharing_rules[0].target",
            "unknown team",
        ),
    ];
    for (mutate, path, needle) in cases {
        let mut doc = example();
        mutate(&mut doc);
        assert_problem(&doc, path, needle);
    }
}

#[test]
fn role_cycles_and_duplicate_ids_are_refused() {
    let mut doc = example();
    doc["roles"][0]["parent"] = json!("rep_east");
    assert_problem(&doc, "roles[0].parent", "cycle");
    let mut doc = example();
    let dup = doc["contacts"][0].clone();
    doc["contacts"].as_array_mut().unwrap().push(dup);
    assert_problem(&doc, "contacts[1].id", "duplicate id \"c1\"");
    // One Google account per user (compared case-insensitively).
    let mut doc = example();
    doc["users"][2]["google_account"] = json!("ERIN@acme.example");
    assert_problem(
        &doc,
        "users[2].google_account",
        "already used by users[1] (\"erin\")",
    );
}

#[test]
fn bad_times_zones_and_rules_are_refused() {
    let mut doc = example();
    doc["events"][0]["end"] = json!("2026-12-01T14:00:00");
    assert_problem(&doc, "events[0].end", "is not after start");
    let mut doc = example();
    doc["events"][0]["time_zone"] = json!("Europe/Atlantis");
    assert_problem(&doc, "events[0].time_zone", "not an IANA time zone");
    let mut doc = example();
    doc["events"][0]["recurrence"] = json!(["RRULE:FREQ=FORTNIGHTLY"]);
    assert_problem(&doc, "events[0].recurrence", "not a valid recurrence");
    let mut doc = example();
    doc["events"][0]["recurrence"] = json!(["DTSTART:20261201T150000"]);
    assert_problem(&doc, "events[0].recurrence[0]", "only RRULE");
    let mut doc = example();
    doc["events"][0]["all_day"] = json!(true);
    assert_problem(&doc, "events[0].start", "all-day event needs dates");
    let mut doc = example();
    doc["contacts"][0]["emails"][0]["address"] = json!("not-an-address");
    assert_problem(&doc, "contacts[0].emails[0].address", "not an e-mail");
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut doc = example();
    doc["users"][1]["role"] = json!("ghost");
    doc["contacts"][0]["owner"] = json!("ghost");
    let err = parse(&doc).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
}

fn crm() -> SqliteCrm {
    SqliteCrm::open(Path::new(":memory:")).unwrap()
}

fn versions(crm: &SqliteCrm) -> std::collections::BTreeMap<(String, String), (i64, bool)> {
    let mut stmt = crm
        .connection()
        .prepare("SELECT kind, id, version, deleted FROM entities")
        .unwrap();
    stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn reloading_keeps_unchanged_versions_bumps_changed_and_tombstones_removed() {
    let mut crm = crm();
    let first = crm.load(&parse(&example()).unwrap()).unwrap();
    assert_eq!(first.created[&EntityKind::Contact], 1);
    let before = versions(&crm);

    let again = crm.load(&parse(&example()).unwrap()).unwrap();
    assert_eq!(again.total_changes(), 0);
    assert_eq!(
        versions(&crm),
        before,
        "an identical re-load changes nothing"
    );

    let mut doc = example();
    doc["contacts"][0]["title"] = json!("CEO");
    doc["events"] = json!([]);
    doc["events"].as_array_mut().unwrap().clear();
    let report = crm.load(&parse(&doc).unwrap()).unwrap();
    assert_eq!(report.updated[&EntityKind::Contact], 1);
    assert_eq!(report.deleted[&EntityKind::Event], 1);
    let after = versions(&crm);
    let key = |k: &str, i: &str| (k.to_owned(), i.to_owned());
    assert!(after[&key("contact", "c1")].0 > before[&key("contact", "c1")].0);
    assert_eq!(after[&key("user", "erin")], before[&key("user", "erin")]);
    assert!(
        after[&key("event", "e1")].1,
        "removed records become tombstones"
    );

    // The feed after the first load shows exactly the two changes, tombstone included.
    let cursor = Cursor(before.values().map(|v| v.0).max().unwrap());
    let batch = crm.changes_since(cursor, 100).unwrap();
    let seen: Vec<_> = batch
        .changes
        .iter()
        .map(|c| (c.kind, c.id.as_str(), c.entity.is_some()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (EntityKind::Contact, "c1", true),
            (EntityKind::Event, "e1", false)
        ]
    );

    // A refused file writes nothing.
    let mut bad = example();
    bad["contacts"][0]["owner"] = json!("ghost");
    assert!(parse(&bad).is_err());
    assert_eq!(versions(&crm), after);
}
