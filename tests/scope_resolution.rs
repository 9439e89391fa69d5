//! Sync scopes: precedence (user > role > profile > org > built-in), fingerprints, bad
//! input, and desired sets on the security fixture.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use crmsync::config::Config;
use crmsync::crm::{orgfile, OrgModel};
use crmsync::model::{ObjectKind, RecordRef, UserId};
use crmsync::scope::{
    desired_set, resolve, scoped_set, sync_verdict, ConflictPolicy, Direction, EffectiveScope,
    GoogleDelete, ScopeEdit, ScopeError, ScopeKey, ScopeLayer, Selection, SelectionMode,
    SettingSource,
};
use crmsync::security::Access;

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

fn now() -> DateTime<Utc> {
    "2026-11-20T00:00:00Z".parse().unwrap()
}

const CONFIG: &str = r#"
[scope.org]
contact = "all_visible"
event = "mine"
direction = "two_way"
days_past = 10

[scope.profile.sales]
contact = "team"
conflict_policy = "newest_wins"
days_past = 20

[scope.role.mgr_east]
contact = "mine"
days_past = 40
"#;

#[test]
fn precedence_is_user_then_role_then_profile_then_org_then_builtin() {
    let model = fixture();
    let config = Config::parse("test.toml", CONFIG).unwrap();
    let none = ScopeLayer::default();

    // erin: role mgr_east, profile sales.
    let erin = resolve(&config.scope, &model, &id("erin"), &none).unwrap();
    assert_eq!(erin.scope.contact.mode, SelectionMode::Mine);
    assert_eq!(
        erin.sources[&ScopeKey::Contact],
        SettingSource::Role("mgr_east".parse().unwrap())
    );
    assert_eq!(erin.scope.days_past, 40, "role beats profile and org");
    assert_eq!(erin.scope.conflict_policy, ConflictPolicy::NewestWins);
    assert_eq!(
        erin.sources[&ScopeKey::ConflictPolicy],
        SettingSource::Profile("sales".parse().unwrap())
    );
    assert_eq!(erin.scope.direction, Direction::TwoWay);
    assert_eq!(erin.sources[&ScopeKey::Direction], SettingSource::Org);
    assert_eq!(erin.scope.google_delete, GoogleDelete::Unlink);
    assert_eq!(
        erin.sources[&ScopeKey::GoogleDelete],
        SettingSource::BuiltIn
    );
    assert_eq!(erin.scope.days_future, 365);

    // frank: profile sales, role rep_east (no role section): profile beats org.
    let frank = resolve(&config.scope, &model, &id("frank"), &none).unwrap();
    assert_eq!(frank.scope.contact.mode, SelectionMode::Team);
    assert_eq!(frank.scope.days_past, 20);

    // kate: profile read_only, no sections: org, then built-in.
    let kate = resolve(&config.scope, &model, &id("kate"), &none).unwrap();
    assert_eq!(kate.scope.contact.mode, SelectionMode::AllVisible);
    assert_eq!(kate.scope.days_past, 10);
    assert_eq!(kate.scope.conflict_policy, ConflictPolicy::CrmWins);

    // A user override beats everything.
    let edit = ScopeEdit::parse(&["contact=none", "days_past=5"]).unwrap();
    let over = edit.applied_to(&none);
    let erin2 = resolve(&config.scope, &model, &id("erin"), &over).unwrap();
    assert_eq!(erin2.scope.contact.mode, SelectionMode::None);
    assert_eq!(erin2.scope.days_past, 5);
    assert_eq!(erin2.sources[&ScopeKey::DaysPast], SettingSource::User);
    assert_ne!(erin.fingerprint, erin2.fingerprint);

    // No config at all: the built-in defaults.
    let plain = resolve(&Config::default().scope, &model, &id("erin"), &none).unwrap();
    assert_eq!(plain.scope, EffectiveScope::builtin());
    assert!(plain.sources.values().all(|s| *s == SettingSource::BuiltIn));
}

#[test]
fn fingerprints_are_stable_and_change_with_the_scope() {
    let a = EffectiveScope::builtin();
    assert_eq!(a.fingerprint(), EffectiveScope::builtin().fingerprint());
    assert_eq!(a.fingerprint().len(), 64);
    let mut b = a.clone();
    b.days_future = 364;
    assert_ne!(a.fingerprint(), b.fingerprint());
    // Filter lists are sets: order and duplicates do not matter.
    let model = fixture();
    let config = Config::default();
    let one = ScopeEdit::parse(&["contact=filter", "contact_tags=vip,partner"]).unwrap();
    let two = ScopeEdit::parse(&["contact=filter", "contact_tags=partner,vip,vip"]).unwrap();
    let r1 = resolve(&config.scope, &model, &id("erin"), &one.set).unwrap();
    let r2 = resolve(&config.scope, &model, &id("erin"), &two.set).unwrap();
    assert_eq!(r1.fingerprint, r2.fingerprint);
    // The same scope reached through different layers has the same fingerprint.
    let via_config = Config::parse("t", "[scope.org]\ndays_future = 364\n").unwrap();
    let r3 = resolve(
        &via_config.scope,
        &model,
        &id("erin"),
        &ScopeLayer::default(),
    )
    .unwrap();
    assert_eq!(r3.fingerprint, b.fingerprint());
}

#[test]
fn bad_input_is_refused_with_the_problem_named() {
    let model = fixture();
    let config = Config::default();
    let err = |args: &[&str]| ScopeEdit::parse(args).unwrap_err().to_string();
    assert!(err(&["colour=red"]).contains("unknown scope setting \"colour\""));
    assert!(err(&["contact=everything"]).contains("contact=\"everything\" is not valid"));
    assert!(err(&["days_past=-1"]).contains("days_past"));
    assert!(err(&["days_future=5000"]).contains("0 to 3650"));
    assert!(err(&["direction"]).contains("expected KEY=VALUE"));
    assert!(err(&["direction=two_way", "direction=crm_to_google"]).contains("given twice"));
    assert!(err(&["conflict_policy=loudest"]).contains("crm_wins, google_wins or newest_wins"));
    assert!(err(&["google_delete=shred"]).contains("unlink, restore or delete_in_crm"));

    let tags = crmsync::scope::known_tags(&model);
    let layer = ScopeEdit::parse(&["contact_tags=nosuch"]).unwrap().set;
    assert_eq!(
        layer.check_against(&model, &tags).unwrap_err().to_string(),
        "contact_tags: no contact in the CRM has the tag \"nosuch\""
    );
    let layer = ScopeEdit::parse(&["event_organizations=o1,o9"])
        .unwrap()
        .set;
    assert_eq!(
        layer.check_against(&model, &tags).unwrap_err().to_string(),
        "event_organizations: unknown organization \"o9\""
    );
    let empty = ScopeEdit::parse(&["contact=filter"]).unwrap().set;
    assert_eq!(
        resolve(&config.scope, &model, &id("erin"), &empty).unwrap_err(),
        ScopeError::EmptyFilter {
            kind: ObjectKind::Contact
        }
    );
    assert_eq!(
        resolve(&config.scope, &model, &id("zed"), &ScopeLayer::default())
            .unwrap_err()
            .to_string(),
        "unknown user \"zed\""
    );

    // Config naming unknown profiles, roles, tags or organizations.
    let bad = Config::parse("t", "[scope.profile.nosuch]\ncontact = \"mine\"\n").unwrap();
    assert!(bad
        .scope
        .validate(&model)
        .unwrap_err()
        .to_string()
        .contains("nosuch"));
    let bad = Config::parse("t", "[scope.role.boss]\ncontact = \"mine\"\n").unwrap();
    assert_eq!(
        bad.scope.validate(&model).unwrap_err().to_string(),
        "[scope.role.boss] names a role that does not exist in the CRM"
    );
    let bad = Config::parse("t", "[scope.org]\ncontact_tags = [\"nosuch\"]\n").unwrap();
    assert!(bad
        .scope
        .validate(&model)
        .unwrap_err()
        .to_string()
        .starts_with("config [scope.org]"));
    // Unknown keys and values in the config are refused at parse time, naming the key.
    let err = Config::parse("t", "[scope.org]\ncontact = \"some\"\n").unwrap_err();
    assert!(err.key.starts_with("scope.org"), "{err}");
    let err = Config::parse("t", "[scope.org]\ncolour = \"red\"\n").unwrap_err();
    assert!(err.message.contains("unknown field"), "{err}");
    let err = Config::parse("t", "[scope.org]\ndays_past = 9999\n").unwrap_err();
    assert_eq!(err.key, "scope.org");
    Config::parse("t", include_str!("../config/crmsync.toml")).unwrap();
}

fn scope_of(contact: SelectionMode, event: SelectionMode) -> EffectiveScope {
    EffectiveScope {
        contact: Selection::mode(contact),
        event: Selection::mode(event),
        ..EffectiveScope::builtin()
    }
}

fn desired(
    access: &Access<'_>,
    user: &str,
    scope: &EffectiveScope,
    kind: ObjectKind,
) -> Vec<String> {
    desired_set(access, &id(user), scope, kind, now())
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn desired_sets_on_the_fixture() {
    let model = fixture();
    let access = Access::build(&model);
    use SelectionMode::*;
    let c = ObjectKind::Contact;
    let e = ObjectKind::Event;
    // erin owns c2 and e7/e8; her team (east) holds frank and fiona; below her: rep_east.
    assert_eq!(desired(&access, "erin", &scope_of(Mine, Mine), c), ["c2"]);
    assert_eq!(
        desired(&access, "erin", &scope_of(Team, Team), c),
        ["c1", "c12", "c2", "c5", "c7", "c8", "c9"]
    );
    // all_visible = everything readable (here also hank's and the West's via rule r1).
    assert_eq!(
        desired(&access, "erin", &scope_of(AllVisible, AllVisible), c),
        access
            .readable(&id("erin"), c)
            .unwrap()
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
    );
    assert!(desired(&access, "erin", &scope_of(None, None), c).is_empty());
    // Event window: e8 (January 2025) is out; the monthly e7 has an occurrence in the
    // window (30 days back, a year ahead of 2026-11-20).
    assert_eq!(desired(&access, "erin", &scope_of(Mine, Mine), e), ["e7"]);
    let wide = EffectiveScope {
        days_past: 800,
        ..scope_of(Mine, Mine)
    };
    assert_eq!(desired(&access, "erin", &wide, e), ["e7", "e8"]);
    // e8 is in scope but aged out of the window (kept on a phone that has it, not lost).
    let scoped: Vec<String> = scoped_set(&access, &id("erin"), &scope_of(Mine, Mine), e)
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect();
    assert_eq!(scoped, ["e7", "e8"]);
    // The organization kind is never synced.
    assert!(desired(
        &access,
        "erin",
        &scope_of(AllVisible, AllVisible),
        ObjectKind::Organization
    )
    .is_empty());
    // Export gate: nina reads her contact c12 but it never goes to her phone.
    assert!(access
        .readable(&id("nina"), c)
        .unwrap()
        .contains(&"c12".parse().unwrap()));
    assert!(desired(&access, "nina", &scope_of(AllVisible, AllVisible), c).is_empty());
    assert!(!desired(&access, "nina", &scope_of(AllVisible, AllVisible), e).is_empty());
    // Inactive users get nothing.
    assert!(desired(&access, "leo", &scope_of(AllVisible, AllVisible), c).is_empty());
    // A scope never widens: team for fiona does not include frank's private contacts
    // (she may not read them) although frank is her team-mate.
    assert_eq!(
        desired(&access, "fiona", &scope_of(Team, Team), c),
        Vec::<String>::new()
    );
}

#[test]
fn filters_select_by_tag_and_organization_without_leaking() {
    let model = fixture();
    let access = Access::build(&model);
    let config = Config::default();
    let run = |user: &str, args: &[&str], kind| {
        let layer = ScopeEdit::parse(args).unwrap().set;
        let r = resolve(&config.scope, &model, &id(user), &layer).unwrap();
        let wide = EffectiveScope {
            days_past: 3650,
            ..r.scope
        };
        desired(&access, user, &wide, kind)
    };
    assert_eq!(
        run(
            "erin",
            &["contact=filter", "contact_tags=vip"],
            ObjectKind::Contact
        ),
        ["c1", "c3"]
    );
    assert_eq!(
        run(
            "erin",
            &[
                "contact=filter",
                "contact_tags=vip",
                "contact_organizations=o1"
            ],
            ObjectKind::Contact
        ),
        ["c1", "c3"]
    );
    assert_eq!(
        run(
            "erin",
            &["contact=filter", "contact_organizations=o2"],
            ObjectKind::Contact
        ),
        ["c10"]
    );
    // Events by organization: e1 (links o1), e5/e6 hidden from erin.
    assert_eq!(
        run(
            "erin",
            &["event=filter", "event_organizations=o1"],
            ObjectKind::Event
        ),
        ["e1"]
    );
    // dana reads e5 and e6 (below her): e6 links c3 (vip).
    assert_eq!(
        run(
            "dana",
            &["event=filter", "event_tags=vip"],
            ObjectKind::Event
        ),
        ["e1", "e6"]
    );
    // Hank attends e1 but may not read its linked contact c1: the contact's vip tag must
    // not pull e1 into hank's phone.
    assert!(run(
        "hank",
        &["event=filter", "event_tags=vip"],
        ObjectKind::Event
    )
    .is_empty());
}

#[test]
fn sync_verdicts_say_why_not() {
    let model = fixture();
    let access = Access::build(&model);
    let verdict = |user: &str, record: &str, scope: &EffectiveScope| {
        sync_verdict(
            &access,
            &id(user),
            scope,
            &record.parse::<RecordRef>().unwrap(),
            now(),
        )
        .unwrap()
    };
    let mine = scope_of(SelectionMode::Mine, SelectionMode::Mine);
    let v = verdict("erin", "contact:c3", &mine);
    assert!(!v.synced);
    assert!(
        v.reasons
            .iter()
            .any(|r| r.contains("outside scope contact=mine")),
        "{v:?}"
    );
    let v = verdict("nina", "contact:c12", &mine);
    assert!(!v.synced);
    assert!(v.reasons.iter().any(|r| r.contains("export gate")), "{v:?}");
    let v = verdict("erin", "event:e8", &mine);
    assert!(!v.synced);
    assert!(
        v.reasons.iter().any(|r| r.contains("event window")),
        "{v:?}"
    );
    let v = verdict("erin", "event:e7", &mine);
    assert!(v.synced, "{v:?}");
    let v = verdict(
        "fiona",
        "contact:c1",
        &scope_of(SelectionMode::AllVisible, SelectionMode::AllVisible),
    );
    assert!(!v.synced);
    assert!(v.reasons[0].contains("may not read"));
    let v = verdict("erin", "organization:o1", &mine);
    assert!(!v.synced && v.reasons[0].contains("organizations are not synced"));
}
