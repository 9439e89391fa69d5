//! The demo is the main job: it must tell a true story, end converged and leak nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crmsync::sync::engine::UserStatus;

#[tokio::test(flavor = "current_thread")]
async fn the_demo_story_happens_and_nothing_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let out = crmsync::demo::run(dir.path()).await.unwrap();
    assert!(out
        .first
        .users
        .iter()
        .all(|u| u.status == UserStatus::Synced));
    let user = |r: &crmsync::sync::engine::RunReport, name: &str| {
        r.users
            .iter()
            .find(|u| u.user.as_str() == name)
            .unwrap()
            .clone()
    };
    // Day 3: the conflict, the merge, the import, the revert and the role change.
    let frank = user(&out.second, "frank");
    assert_eq!(frank.contacts.conflicts, 1);
    assert_eq!(frank.contacts.written_back, 1);
    assert_eq!(frank.contacts.text_merges, 1);
    assert_eq!(user(&out.second, "gina").contacts.imported, 1);
    assert_eq!(user(&out.second, "olivia").contacts.reverted, 1);
    assert!(
        user(&out.second, "erin").contacts.created > 0,
        "erin gains ivan's records"
    );
    assert_eq!(
        user(&out.second, "hank").status,
        UserStatus::Refused,
        "the breaker"
    );
    let forced = out.forced.as_ref().expect("the admin forces hank's pass");
    assert!(
        user(forced, "hank").total().deleted > 0,
        "hank loses ivan's records"
    );
    // Day 4: nothing left to do (the write-backs reached the others within day 3's run),
    // nothing fails, and no phone holds anything its owner may not read.
    assert!(out.third.users.iter().all(|u| u.errors.is_empty()));
    let leftover: usize = out
        .third
        .users
        .iter()
        .map(|u| {
            let t = u.total();
            t.created + t.updated + t.deleted + t.written_back + t.imported
        })
        .sum();
    assert_eq!(leftover, 0, "{:#?}", out.third);
    assert!(
        out.leak_check.items_checked > 800,
        "{}",
        out.leak_check.items_checked
    );
    assert!(
        out.leak_check.leaks.is_empty(),
        "{:?}",
        out.leak_check.leaks
    );
    assert!(out.story.contains("conflict on contact:"));
    // Day 5: dana leaves; her account is given back exactly as it was before crmsync: her
    // two own contacts as they were (one had been linked to a CRM record), nothing else.
    let leaver = &out.offboarding;
    assert_eq!(leaver.own_before.len(), 2, "{leaver:#?}");
    assert!(leaver.given_back_as_it_was(), "{leaver:#?}");
    let dana = user(&leaver.report, "dana");
    assert_eq!(dana.status, UserStatus::Revoked, "{dana:#?}");
    let receipt = &dana.revocations[0];
    assert!(receipt.verification.as_ref().unwrap().is_clean());
    assert_eq!(receipt.contacts_released.len(), 1, "the linked customer");
    assert!(!receipt.contacts_deleted.is_empty() && receipt.calendars_deleted.len() == 1);
    assert!(out.story.contains("exactly what she had before crmsync"));
    // Incremental: the quiet-ish third pass costs a fraction of the first.
    assert!(
        out.api_calls[2] * 3 < out.api_calls[0],
        "{:?}",
        out.api_calls
    );
}
