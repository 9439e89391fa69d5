//! The contract every `crm::Source` adapter must keep: a monotonic change feed with
//! tombstones, and write-backs that refuse stale versions instead of overwriting.
//! The contract itself is written once in `contract_support` and run against each adapter;
//! this file runs it against the embedded CRM and checks what only the embedded CRM does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract_support;

use contract_support::{keeps_the_source_contract, Capability, ContractCase};
use crmsync::crm::sqlite::SqliteCrm;
use crmsync::crm::{orgfile, Entity, EntityKind, Source, WriteBack};
use crmsync::mirror;
use crmsync::store::StateDb;
use std::path::Path;

fn example_model() -> crmsync::crm::OrgModel {
    orgfile::parse("example", include_str!("fixtures/example-org.json")).unwrap()
}

fn embedded() -> SqliteCrm {
    let mut crm = SqliteCrm::open(Path::new(":memory:")).unwrap();
    crm.load(&example_model()).unwrap();
    crm
}

fn case() -> ContractCase {
    ContractCase {
        live_entities: 18,
        contact: "contact:c1".parse().unwrap(),
        acting_user: "frank".parse().unwrap(),
        other_user: "hank".parse().unwrap(),
        creates: Capability::Supported,
        deletes: Capability::Supported,
    }
}

#[test]
fn embedded_crm_keeps_the_source_contract() {
    keeps_the_source_contract(&|| Box::new(embedded()), &case());
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
