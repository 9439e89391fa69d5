//! The permission matrix on `tests/fixtures/security-org.json`: one named case per row.
//!
//! Roles: Chief > SalesDir > {MgrEast > RepEast, MgrWest > RepWest}, Analyst under Chief.
//! Contacts and events private, organizations public_read. Rule r1: contacts owned in
//! mgr_west's subtree → mgr_east, read. Rule r2: events owned by rep_east → rep_east,
//! read_write. Our model has no lead kind: the issue's lead cases are covered with
//! contacts, events and organizations (the Contractor profile has no event rights, standing
//! in for "no leads").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crmsync::crm::{orgfile, OrgModel};
use crmsync::model::{ObjectKind, RecordRef, SharingDefault, UserId};
use crmsync::security::{Access, AccessLevel, Denial, Operation};

fn fixture() -> OrgModel {
    orgfile::parse(
        "security-org.json",
        include_str!("fixtures/security-org.json"),
    )
    .unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    /// The fixture as is.
    Base,
    /// Events' org-wide default switched to controlled_by_parent.
    EventsControlledByParent,
}

struct Case {
    name: &'static str,
    user: &'static str,
    record: &'static str,
    read: bool,
    edit: bool,
    /// Checked when given.
    delete: Option<bool>,
    create: Option<bool>,
    /// A sentence fragment one of the reasons must contain.
    reason: Option<&'static str>,
    variant: Variant,
}

const fn case(
    name: &'static str,
    user: &'static str,
    record: &'static str,
    read: bool,
    edit: bool,
) -> Case {
    Case {
        name,
        user,
        record,
        read,
        edit,
        delete: None,
        create: None,
        reason: None,
        variant: Variant::Base,
    }
}

impl Case {
    const fn delete(mut self, d: bool) -> Self {
        self.delete = Some(d);
        self
    }
    const fn create(mut self, c: bool) -> Self {
        self.create = Some(c);
        self
    }
    const fn because(mut self, r: &'static str) -> Self {
        self.reason = Some(r);
        self
    }
    const fn cbp(mut self) -> Self {
        self.variant = Variant::EventsControlledByParent;
        self
    }
}

fn cases() -> Vec<Case> {
    vec![
        // Profile gate.
        case("profile gate beats hierarchy: chief without contact rights", "chris", "contact:c1", false, false)
            .because("profile no_contacts does not allow read on contact"),
        case("same chief reads the subordinate's event (profile allows events)", "chris", "event:e3", true, true)
            .because("role hierarchy grants full"),
        case("hierarchy capped by a read-only profile", "oscar", "contact:c1", true, false)
            .because("role hierarchy grants full"),
        case("contractor reads a subordinate's contact but may not edit", "carl", "contact:c1", true, false)
            .create(false),
        case("contractor has no event rights at all (the 'no leads' gate)", "carl", "event:e3", false, false)
            .because("profile contractor does not allow read on event"),
        // Role hierarchy.
        case("manager sees and edits a subordinate's contact", "erin", "contact:c1", true, true)
            .delete(true)
            .create(true)
            .because("owner frank is below erin: rep_east < mgr_east"),
        case("director sees two levels down", "dana", "contact:c1", true, true),
        case("no upward visibility: rep to manager's contact", "frank", "contact:c2", false, false)
            .because("nothing grants frank access"),
        case("no sideways visibility: peer in the same role", "fiona", "contact:c1", false, false),
        case("no cross-branch visibility: east manager to west event", "erin", "event:e4", false, false),
        case("same role is not below: rep_west peer of an inactive owner", "hank", "contact:c4", false, false),
        case("analyst under chief sees nothing of the sales branch", "paul", "contact:c1", false, false),
        // Sharing rules.
        case("read-only rule r1 blocks edit for the east manager", "erin", "contact:c3", true, false)
            .because("sharing rule r1 grants read (owner hank in role_and_subordinates mgr_west; erin in role mgr_east)"),
        case("while hierarchy grants edit to the director", "dana", "contact:c3", true, true),
        case("rule r1 reaches the west manager's own contacts too", "erin", "contact:c10", true, false),
        case("rule r1 does not reach east reps (target is the role only)", "frank", "contact:c3", false, false),
        case("read_write rule r2 lets a peer rep edit, not delete", "fiona", "event:e3", true, true)
            .delete(false)
            .because("sharing rule r2 grants read_write"),
        case("rule r2 is for events only", "fiona", "contact:c1", false, false),
        // read_all / modify_all.
        case("read_all is not an edit grant", "ivan", "contact:c1", true, false)
            .delete(false)
            .because("profile auditor has read_all on contact"),
        case("read_all reads private events", "ivan", "event:e4", true, false),
        case("modify_all overrides private", "judy", "contact:c1", true, true)
            .delete(true)
            .because("profile superuser has modify_all on contact"),
        // Active flags and admins.
        case("inactive user sees nothing, not even their own contact", "leo", "contact:c4", false, false)
            .delete(false)
            .create(false)
            .because("leo is inactive"),
        case("an inactive owner does not hide records from their manager", "gary", "contact:c4", true, true)
            .because("owner leo is below gary"),
        case("nor from the director", "dana", "contact:c4", true, true),
        case("admin sees all", "alice", "contact:c12", true, true)
            .delete(true)
            .create(true)
            .because("alice is an admin"),
        case("admin edits any event", "alice", "event:e4", true, true),
        // Owner and assignees.
        case("owner has full access", "frank", "contact:c1", true, true).delete(true),
        case("assignee (not owner) reads and edits the event", "hank", "event:e2", true, true)
            .because("hank is assigned to the record"),
        case("a read-only profile caps an assignee", "kate", "contact:c5", true, false)
            .because("kate is assigned to the record"),
        case("assignee's manager sees through the assignee", "erin", "contact:c5", true, true)
            .because("assignee kate is below erin"),
        // Attendees.
        case("user attendee reads someone else's private event", "hank", "event:e1", true, false)
            .because("hank is an attendee of the event (read only)"),
        case("a non-attendee peer does not", "mia", "event:e2", true, false)
            .because("profile amo scopes read on event to all"),
        // Organizations and association.
        case("public_read organization is readable", "fiona", "organization:o1", true, false)
            .because("org-wide default for organization is public_read (grants read)"),
        case("organization owner edits it", "hank", "organization:o1", true, true),
        case("a private contact is not visible through a public organization", "fiona", "contact:c3", false, false),
        case("a private contact is not visible through an event one attends", "hank", "contact:c1", false, false),
        // Simple visibility.
        case("visibility everyone grants full", "fiona", "contact:c6", true, true)
            .because("record visibility everyone grants full"),
        case("visibility owner_only keeps peers out", "fiona", "contact:c7", false, false),
        case("owner_only adds nothing but does not veto the hierarchy", "erin", "contact:c7", true, true),
        case("visibility team grants its members", "hank", "contact:c8", true, true)
            .because("team west (which hank is in)"),
        case("visibility team keeps others out", "fiona", "contact:c8", false, false),
        case("visibility users grants the named user", "paul", "contact:c9", true, true),
        case("visibility users keeps others out", "fiona", "contact:c9", false, false),
        // amoCRM-style per-operation scopes.
        case("read scope team: a team-mate's contact is readable", "mia", "contact:c10", true, false)
            .because("owner gary shares a team with mia"),
        case("edit scope own: own contact is editable and deletable", "mia", "contact:c11", true, true)
            .delete(true),
        case("read scope team does not reach outside the team", "mia", "contact:c1", false, false),
        case("read scope all on events, without an edit right", "mia", "event:e3", true, false),
        // Export gate does not change reading.
        case("export gate leaves read access alone", "nina", "contact:c12", true, true),
        // controlled_by_parent.
        case("controlled_by_parent: minimum over parents (public org → read)", "paul", "event:e5", true, false)
            .because("minimum over parents (organization:o1: read) grants read")
            .cbp(),
        case("controlled_by_parent: a hidden parent hides the event", "paul", "event:e6", false, false)
            .cbp(),
        case("controlled_by_parent: no parents means none", "paul", "event:e4", false, false)
            .because("has no parents (grants none)")
            .cbp(),
        case("controlled_by_parent: parents readable with edit on both → edit", "dana", "event:e6", true, true)
            .cbp(),
        case("controlled_by_parent: the owner still has full access", "hank", "event:e4", true, true).cbp(),
        case("under private the same event stays hidden", "paul", "event:e5", false, false),
    ]
}

#[test]
fn permission_matrix() {
    let base = fixture();
    let mut cbp = base.clone();
    cbp.org_wide_sharing.event = SharingDefault::ControlledByParent;
    let base_access = Access::build(&base);
    let cbp_access = Access::build(&cbp);
    let cases = cases();
    assert!(cases.len() >= 30, "the matrix has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let access = match c.variant {
            Variant::Base => &base_access,
            Variant::EventsControlledByParent => &cbp_access,
        };
        let user = UserId::new(c.user).unwrap();
        let record: RecordRef = c.record.parse().unwrap();
        let d = access.decide(&user, &record).unwrap();
        let mut wrong = Vec::new();
        if d.read != c.read {
            wrong.push(format!("read {} (expected {})", d.read, c.read));
        }
        if d.edit != c.edit {
            wrong.push(format!("edit {} (expected {})", d.edit, c.edit));
        }
        if let Some(del) = c.delete {
            if d.delete != del {
                wrong.push(format!("delete {} (expected {del})", d.delete));
            }
        }
        if let Some(cr) = c.create {
            if d.create != cr {
                wrong.push(format!("create {} (expected {cr})", d.create));
            }
        }
        let lines = d.reason_lines();
        if let Some(fragment) = c.reason {
            if !lines.iter().any(|l| l.contains(fragment)) {
                wrong.push(format!("no reason containing {fragment:?}"));
            }
        }
        // The fast path agrees with the explained one.
        for op in Operation::ALL {
            if access.may(&user, &record, op).unwrap() != d.allows(op) {
                wrong.push(format!("may({op}) disagrees with decide"));
            }
        }
        // Every denied operation names its gate.
        for op in Operation::ALL {
            if !d.allows(op) && d.denial(op).is_none() {
                wrong.push(format!("{op} denied without a gate"));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {} → {}: {}\n    reasons: {:?}",
                c.name,
                c.user,
                c.record,
                wrong.join(", "),
                lines
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_issue_example_explains_with_the_rule_sentence() {
    let model = fixture();
    let access = Access::build(&model);
    let d = access
        .decide(
            &UserId::new("erin").unwrap(),
            &"contact:c3".parse().unwrap(),
        )
        .unwrap();
    assert!(d.read && !d.edit && d.create && !d.delete);
    assert_eq!(
        d.reason_lines(),
        vec!["sharing rule r1 grants read (owner hank in role_and_subordinates mgr_west; erin in role mgr_east)"]
    );
    assert_eq!(d.level, AccessLevel::Read);
    assert_eq!(
        d.denial(Operation::Edit),
        Some(&Denial::Grant {
            level: AccessLevel::Read,
            needed: AccessLevel::Edit
        })
    );
    assert!(d.denial_lines()[0].starts_with("edit denied: the record-level grant is read"));
}

#[test]
fn the_profile_gate_is_named_as_the_denying_gate() {
    let model = fixture();
    let access = Access::build(&model);
    let d = access
        .decide(
            &UserId::new("chris").unwrap(),
            &"contact:c1".parse().unwrap(),
        )
        .unwrap();
    assert!(!d.read);
    // The hierarchy grant is still listed, so the admin sees what the gate overrode.
    assert_eq!(d.level, AccessLevel::Full);
    assert!(
        matches!(d.denial(Operation::Read), Some(Denial::Profile { profile }) if profile.as_str() == "no_contacts")
    );
    let d = access
        .decide(&UserId::new("leo").unwrap(), &"contact:c4".parse().unwrap())
        .unwrap();
    assert_eq!(d.denial(Operation::Read), Some(&Denial::Inactive));
}

#[test]
fn export_gate_and_create_rights() {
    let model = fixture();
    let access = Access::build(&model);
    let id = |s: &str| UserId::new(s).unwrap();
    assert!(!access.may_export(&id("nina"), ObjectKind::Contact).unwrap());
    assert!(access.may_export(&id("nina"), ObjectKind::Event).unwrap());
    assert!(access
        .may_export(&id("alice"), ObjectKind::Contact)
        .unwrap());
    assert!(!access.may_export(&id("leo"), ObjectKind::Contact).unwrap());
    assert!(!access.may_export(&id("carl"), ObjectKind::Event).unwrap());
    assert!(access.may_create(&id("erin"), ObjectKind::Contact).unwrap());
    assert!(!access.may_create(&id("kate"), ObjectKind::Contact).unwrap());
    assert!(!access.may_create(&id("leo"), ObjectKind::Contact).unwrap());
    assert!(access.may_create(&id("alice"), ObjectKind::Event).unwrap());
}

#[test]
fn attendee_lists_keep_only_readable_contacts() {
    let model = fixture();
    let access = Access::build(&model);
    let e1 = &model.events[&"e1".parse().unwrap()];
    // Hank attends e1 but may not read contact c1: only the user attendee stays.
    let hank = access
        .visible_attendees(&UserId::new("hank").unwrap(), e1)
        .unwrap();
    assert_eq!(hank.len(), 1);
    let erin = access
        .visible_attendees(&UserId::new("erin").unwrap(), e1)
        .unwrap();
    assert_eq!(erin.len(), 2);
}

#[test]
fn unknown_users_and_records_are_errors() {
    let model = fixture();
    let access = Access::build(&model);
    let err = access
        .decide(&UserId::new("zed").unwrap(), &"contact:c1".parse().unwrap())
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown user \"zed\"");
    let err = access
        .decide(
            &UserId::new("erin").unwrap(),
            &"contact:c99".parse().unwrap(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "no record contact:c99 in the CRM mirror");
}

#[test]
fn readable_sets_on_the_fixture() {
    let model = fixture();
    let access = Access::build(&model);
    let ids = |user: &str, kind| {
        access
            .readable(&UserId::new(user).unwrap(), kind)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
    };
    // Erin: everything below her (frank, fiona, kate, nina), rule r1 (the west subtree:
    // gary, hank, leo, mia) and her own.
    assert_eq!(
        ids("erin", ObjectKind::Contact),
        ["c1", "c10", "c11", "c12", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"]
    );
    assert_eq!(ids("kate", ObjectKind::Contact), ["c5", "c6"]);
    assert_eq!(ids("fiona", ObjectKind::Contact), ["c6"]);
    assert_eq!(ids("leo", ObjectKind::Contact), Vec::<String>::new());
    assert_eq!(ids("hank", ObjectKind::Event), ["e1", "e2", "e4"]);
    assert_eq!(ids("alice", ObjectKind::Event).len(), model.events.len());
    assert_eq!(ids("fiona", ObjectKind::Organization), ["o1", "o2"]);
}
