//! Permission changes are changes: a role move pulls access without any record changing,
//! and the affected-users set names the right users and not the unrelated ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crmsync::crm::{orgfile, OrgModel};
use crmsync::model::{ObjectKind, RoleId, RuleParty, SharingDefault, UserId};
use crmsync::security::{affected_users, Access, ChangeCause};

fn fixture() -> OrgModel {
    orgfile::parse(
        "security-org.json",
        include_str!("fixtures/security-org.json"),
    )
    .unwrap()
}

fn id(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn contacts(access: &Access<'_>, user: &str) -> Vec<String> {
    access
        .readable(&id(user), ObjectKind::Contact)
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn a_role_move_pulls_access_without_any_record_changing() {
    let old = fixture();
    let mut new = old.clone();
    // Hank moves from West to East.
    new.users.get_mut(&id("hank")).unwrap().role = Some(RoleId::new("rep_east").unwrap());
    assert_eq!(old.contacts, new.contacts, "no record changed");
    assert_eq!(old.events, new.events);
    assert_eq!(old.versions, new.versions);

    let (a, b) = (Access::build(&old), Access::build(&new));
    // Gary (West manager) loses Hank's contacts c3 and c5; c6 is visible to everyone.
    let before = contacts(&a, "gary");
    let after = contacts(&b, "gary");
    assert_ne!(before, after);
    assert!(before.contains(&"c3".to_string()) && !after.contains(&"c3".to_string()));
    assert!(after.contains(&"c6".to_string()));

    let affected = affected_users(&a, &b);
    let names: Vec<&str> = affected.ids().map(|u| u.as_str()).collect();
    // Above the old position: gary. Above the new one: erin, oscar, carl (mgr_east).
    // Rule r1 (source: the West subtree) targets mgr_east; rule r2 (source: rep_east)
    // targets rep_east, which Hank now joins (frank, fiona, kate, nina see his events; he
    // sees theirs).
    for user in [
        "gary", "erin", "oscar", "carl", "hank", "frank", "fiona", "kate", "nina",
    ] {
        assert!(
            affected.contains(&id(user)),
            "{user} should be affected; got {names:?}"
        );
    }
    // Unrelated: the director and chief see Hank either way; the admin, read_all and
    // modify_all users see everything; the analyst and the other West reps are untouched.
    for user in [
        "dana", "chris", "alice", "ivan", "judy", "paul", "mia", "leo",
    ] {
        assert!(
            !affected.contains(&id(user)),
            "{user} should not be affected; got {names:?}"
        );
    }
    assert!(affected.users[&id("gary")].contains(&ChangeCause::Subordinates));
    assert!(affected.users[&id("hank")].contains(&ChangeCause::SharingRules(ObjectKind::Event)));

    // Every user whose readable set really changed is reported. The report is "may
    // change": carl (contacts only) is reported because both of his inputs moved — the
    // hierarchy gained Hank and rule r1 lost him — though the union happens to be equal.
    for user in old.users.keys() {
        let changed = ObjectKind::ALL.iter().any(|&k| {
            a.readable(user, k).unwrap().to_ids() != b.readable(user, k).unwrap().to_ids()
        });
        if changed {
            assert!(affected.contains(user), "{user}");
        } else if user.as_str() != "carl" {
            assert!(!affected.contains(user), "{user} reported but unchanged");
        }
    }
}

#[test]
fn an_org_wide_default_change_affects_record_by_record_readers_only() {
    let old = fixture();
    let mut new = old.clone();
    new.org_wide_sharing.contact = SharingDefault::PublicRead;
    let (a, b) = (Access::build(&old), Access::build(&new));
    let affected = affected_users(&a, &b);
    // Admin, read_all, modify_all users read every contact already; chris has no contact
    // rights; leo is inactive.
    for user in ["alice", "ivan", "judy", "chris", "leo"] {
        assert!(!affected.contains(&id(user)), "{user}");
    }
    for user in ["erin", "frank", "hank", "paul", "mia", "kate"] {
        assert!(affected.contains(&id(user)), "{user}");
        assert!(
            affected.users[&id(user)].contains(&ChangeCause::OrgWideDefault(ObjectKind::Contact))
        );
    }
}

#[test]
fn a_rule_retarget_affects_old_and_new_targets_only() {
    let old = fixture();
    let mut new = old.clone();
    let r1 = new.sharing_rules.get_mut(&"r1".parse().unwrap()).unwrap();
    r1.target = RuleParty::Role(RoleId::new("analyst").unwrap());
    let (a, b) = (Access::build(&old), Access::build(&new));
    let affected = affected_users(&a, &b);
    let mut names: Vec<&str> = affected.ids().map(|u| u.as_str()).collect();
    names.sort();
    // Old targets (mgr_east: carl, erin, oscar), new ones (analyst: paul; ivan and judy
    // read all contacts anyway).
    assert_eq!(names, ["carl", "erin", "oscar", "paul"]);
    // A rule's access level (read → read_write) changes no readable set.
    let mut newer = old.clone();
    newer
        .sharing_rules
        .get_mut(&"r1".parse().unwrap())
        .unwrap()
        .access = crmsync::model::RuleAccess::ReadWrite;
    assert!(affected_users(&a, &Access::build(&newer)).is_empty());
}

#[test]
fn deactivation_and_team_changes() {
    let old = fixture();
    let mut new = old.clone();
    new.users.get_mut(&id("frank")).unwrap().active = false;
    let (a, b) = (Access::build(&old), Access::build(&new));
    let affected = affected_users(&a, &b);
    let names: Vec<&str> = affected.ids().map(|u| u.as_str()).collect();
    // Only frank: an inactive owner does not hide records from anyone.
    assert_eq!(names, ["frank"]);
    assert!(affected.users[&id("frank")].contains(&ChangeCause::Active));

    let mut new = old.clone();
    new.teams
        .get_mut(&"west".parse().unwrap())
        .unwrap()
        .members
        .retain(|m| m.as_str() != "gary");
    let b = Access::build(&new);
    let affected = affected_users(&a, &b);
    // gary leaves West: he loses c8 (visibility team west); mia's team read scope loses
    // gary's contacts.
    assert!(affected.contains(&id("gary")));
    assert!(affected.contains(&id("mia")));
    assert!(!affected.contains(&id("hank")), "{:?}", affected.users);
}

#[test]
fn record_changes_affect_the_users_who_gain_or_lose_the_record() {
    let old = fixture();
    let mut new = old.clone();
    // c1 moves from frank to hank.
    new.contacts_mut()
        .get_mut(&"c1".parse().unwrap())
        .unwrap()
        .owner = id("hank");
    let (a, b) = (Access::build(&old), Access::build(&new));
    let affected = affected_users(&a, &b);
    for user in ["frank", "hank", "gary"] {
        assert!(affected.contains(&id(user)), "{user}: {:?}", affected.users);
    }
    // Erin reads c1 before (hierarchy) and after (rule r1); dana and admins always.
    for user in ["erin", "dana", "alice", "fiona"] {
        assert!(
            !affected.contains(&id(user)),
            "{user}: {:?}",
            affected.users
        );
    }
}
