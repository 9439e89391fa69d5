//! Seeded synthetic orgs: the benchmark's large org, random small orgs for property tests,
//! and random security changes. Deterministic for a given seed; reusable by other
//! benchmarks and tests (the sync engine's included).

use crate::crm::OrgModel;
use crate::model::{
    Attendee, Contact, CrmId, EmailAddress, Event, EventTime, ObjectKind, ObjectPermissions,
    OperationScopes, OrgSettings, OrgWideSharing, Organization, ParentLink, Profile, ProfileId,
    RecordRef, Role, RoleId, RuleAccess, RuleId, RuleParty, ScopeLevel, SharingDefault,
    SharingRule, Team, TeamId, User, UserId, Visibility,
};
use chrono::{Duration, NaiveDate, NaiveDateTime};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// The shape of a large synthetic org.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    pub seed: u64,
    pub users: usize,
    pub contacts: usize,
    pub events: usize,
    pub organizations: usize,
    /// Children per role at each level below the root: `[4, 4, 4, 2, 2]` is a 6-level tree.
    pub role_branching: Vec<usize>,
    pub sharing_rules: usize,
    pub teams: usize,
    /// Share of events that recur (weekly, ten times).
    pub recurring_share: f64,
}

impl SyntheticSpec {
    /// The benchmark org: 2,000 users, 200,000 contacts, 100,000 events, a 6-level
    /// role tree, 50 sharing rules, 100 teams.
    pub fn benchmark() -> Self {
        Self {
            seed: 42,
            users: 2_000,
            contacts: 200_000,
            events: 100_000,
            organizations: 20_000,
            role_branching: vec![4, 4, 4, 2, 2],
            sharing_rules: 50,
            teams: 100,
            recurring_share: 0.05,
        }
    }

    /// A scaled-down org of the same shape (quick tests).
    pub fn scaled(factor: f64) -> Self {
        let b = Self::benchmark();
        let scale = |n: usize| ((n as f64 * factor).round() as usize).max(1);
        Self {
            users: scale(b.users),
            contacts: scale(b.contacts),
            events: scale(b.events),
            organizations: scale(b.organizations),
            sharing_rules: scale(b.sharing_rules),
            teams: scale(b.teams),
            ..b
        }
    }
}

fn id<T: std::str::FromStr>(raw: String) -> T
where
    T::Err: std::fmt::Debug,
{
    // Generated ids are ASCII letters, digits and '_': always valid.
    match raw.parse() {
        Ok(v) => v,
        Err(_) => unreachable_id(),
    }
}

#[cold]
fn unreachable_id() -> ! {
    panic!("a generated id was refused")
}

fn base_time() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 6, 1)
        .and_then(|d| d.and_hms_opt(9, 0, 0))
        .unwrap_or_default()
}

fn perms(read: bool, create: bool, edit: bool, delete: bool) -> ObjectPermissions {
    ObjectPermissions {
        read,
        create,
        edit,
        delete,
        ..ObjectPermissions::default()
    }
}

fn profile(id_: &str, objects: [(ObjectKind, ObjectPermissions); 3]) -> Profile {
    Profile {
        id: id(id_.to_owned()),
        name: id_.to_owned(),
        objects: objects.into_iter().collect(),
    }
}

/// Generates the large org described by `spec`.
pub fn generate(spec: &SyntheticSpec) -> OrgModel {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut model = OrgModel {
        settings: OrgSettings {
            reader_gate: false,
            name: "Synthetic".into(),
            google_domains: vec!["synthetic.example".into()],
        },
        org_wide_sharing: OrgWideSharing {
            contact: SharingDefault::Private,
            event: SharingDefault::Private,
            organization: SharingDefault::PublicRead,
        },
        ..OrgModel::default()
    };

    // Role tree, level by level.
    let mut levels: Vec<Vec<RoleId>> = vec![vec![id("r0".into())]];
    model.roles.insert(
        levels[0][0].clone(),
        Role {
            id: levels[0][0].clone(),
            name: "Root".into(),
            parent: None,
        },
    );
    for (depth, &branching) in spec.role_branching.iter().enumerate() {
        let mut next = Vec::new();
        for parent in &levels[depth] {
            for c in 0..branching {
                let rid: RoleId = id(format!("{parent}_{c}"));
                model.roles.insert(
                    rid.clone(),
                    Role {
                        id: rid.clone(),
                        name: format!("Role {rid}"),
                        parent: Some(parent.clone()),
                    },
                );
                next.push(rid);
            }
        }
        levels.push(next);
    }

    let all = |read_all: bool, modify_all: bool| ObjectPermissions {
        read: true,
        create: true,
        edit: true,
        delete: true,
        read_all,
        modify_all,
        export: true,
        scope: OperationScopes::default(),
    };
    let profiles = [
        profile(
            "sales",
            [
                (ObjectKind::Contact, all(false, false)),
                (ObjectKind::Event, all(false, false)),
                (ObjectKind::Organization, all(false, false)),
            ],
        ),
        profile(
            "read_only",
            [
                (ObjectKind::Contact, perms(true, false, false, false)),
                (ObjectKind::Event, perms(true, false, false, false)),
                (ObjectKind::Organization, perms(true, false, false, false)),
            ],
        ),
        profile(
            "auditor",
            [
                (ObjectKind::Contact, all(true, false)),
                (ObjectKind::Event, all(true, false)),
                (ObjectKind::Organization, all(true, false)),
            ],
        ),
        profile(
            "team_scope",
            [
                (
                    ObjectKind::Contact,
                    ObjectPermissions {
                        scope: OperationScopes {
                            read: Some(ScopeLevel::Team),
                            edit: Some(ScopeLevel::Own),
                            ..OperationScopes::default()
                        },
                        ..perms(true, true, true, false)
                    },
                ),
                (ObjectKind::Event, perms(true, true, true, false)),
                (ObjectKind::Organization, perms(true, false, false, false)),
            ],
        ),
        profile(
            "no_export",
            [
                (
                    ObjectKind::Contact,
                    ObjectPermissions {
                        export: false,
                        ..perms(true, true, true, true)
                    },
                ),
                (ObjectKind::Event, perms(true, true, true, true)),
                (ObjectKind::Organization, perms(true, false, false, false)),
            ],
        ),
    ];
    let profile_ids: Vec<ProfileId> = profiles.iter().map(|p| p.id.clone()).collect();
    for p in profiles {
        model.profiles.insert(p.id.clone(), p);
    }

    // Users: most in the two lowest levels, a few near the top.
    let depth = levels.len();
    let mut user_ids: Vec<UserId> = Vec::with_capacity(spec.users);
    for i in 0..spec.users {
        let uid: UserId = id(format!("u{i:05}"));
        let level = match rng.random_range(0..100) {
            0..5 => rng.random_range(0..depth.min(3)),
            5..25 => depth.saturating_sub(3),
            _ => rng.random_range(depth.saturating_sub(2)..depth),
        };
        let role = levels[level.min(depth - 1)].choose(&mut rng).cloned();
        let admin = rng.random_bool(0.005);
        let profile = if admin {
            None
        } else {
            let p = match rng.random_range(0..100) {
                0..80 => 0,
                80..88 => 1,
                88..90 => 2,
                90..96 => 3,
                _ => 4,
            };
            Some(profile_ids[p].clone())
        };
        let email = format!("{uid}@synthetic.example");
        model.users.insert(
            uid.clone(),
            User {
                id: uid.clone(),
                name: format!("User {i}"),
                email: email.clone(),
                active: rng.random_bool(0.95),
                admin,
                profile,
                role,
                google_account: Some(email),
            },
        );
        user_ids.push(uid);
    }

    // Teams of 5–40 members.
    let mut team_ids: Vec<TeamId> = Vec::new();
    for t in 0..spec.teams {
        let tid: TeamId = id(format!("t{t:03}"));
        let size = rng.random_range(5..=40).min(user_ids.len());
        let mut members: Vec<UserId> = user_ids.choose_multiple(&mut rng, size).cloned().collect();
        members.sort();
        model.teams.insert(
            tid.clone(),
            Team {
                id: tid.clone(),
                name: format!("Team {t}"),
                members,
            },
        );
        team_ids.push(tid);
    }

    let all_roles: Vec<RoleId> = model.roles.keys().cloned().collect();
    let party = |rng: &mut StdRng| -> RuleParty {
        match rng.random_range(0..3) {
            0 => RuleParty::Role(
                all_roles
                    .choose(rng)
                    .cloned()
                    .unwrap_or_else(|| levels[0][0].clone()),
            ),
            1 => {
                // Subtrees from the middle of the tree, not the root (that would share all).
                let level = rng.random_range(1..depth.max(2)).min(depth - 1);
                RuleParty::RoleAndSubordinates(
                    levels[level]
                        .choose(rng)
                        .cloned()
                        .unwrap_or_else(|| levels[0][0].clone()),
                )
            }
            _ => match team_ids.choose(rng) {
                Some(t) => RuleParty::Team(t.clone()),
                None => RuleParty::Role(levels[0][0].clone()),
            },
        }
    };
    for r in 0..spec.sharing_rules {
        let rid: RuleId = id(format!("rule{r:02}"));
        let object = [
            ObjectKind::Contact,
            ObjectKind::Event,
            ObjectKind::Organization,
        ][rng.random_range(0..3)];
        let source = party(&mut rng);
        let target = party(&mut rng);
        model.sharing_rules.insert(
            rid.clone(),
            SharingRule {
                id: rid,
                object,
                source,
                target,
                access: if rng.random_bool(0.5) {
                    RuleAccess::Read
                } else {
                    RuleAccess::ReadWrite
                },
            },
        );
    }

    let visibility = |rng: &mut StdRng| -> Option<Visibility> {
        if !rng.random_bool(0.05) {
            return None;
        }
        Some(match rng.random_range(0..4) {
            0 => Visibility::Everyone,
            1 => Visibility::OwnerOnly,
            2 => match team_ids.choose(rng) {
                Some(t) => Visibility::Team(t.clone()),
                None => Visibility::Everyone,
            },
            _ => Visibility::Users(user_ids.choose_multiple(rng, 3).cloned().collect()),
        })
    };
    let assignees = |rng: &mut StdRng| -> Vec<UserId> {
        if rng.random_bool(0.1) {
            let n = rng.random_range(1..=2);
            user_ids.choose_multiple(rng, n).cloned().collect()
        } else {
            Vec::new()
        }
    };
    let pick_user = |rng: &mut StdRng| user_ids[rng.random_range(0..user_ids.len())].clone();

    let mut org_ids: Vec<CrmId> = Vec::with_capacity(spec.organizations);
    for o in 0..spec.organizations {
        let oid: CrmId = id(format!("o{o:06}"));
        model.organizations_mut().insert(
            oid.clone(),
            Organization {
                id: oid.clone(),
                name: format!("Organization {o}"),
                owner: pick_user(&mut rng),
                assignees: assignees(&mut rng),
                visibility: visibility(&mut rng),
                updated_at: None,
            },
        );
        org_ids.push(oid);
    }

    let tags: Vec<String> = (0..30).map(|t| format!("tag{t:02}")).collect();
    let mut contact_ids: Vec<CrmId> = Vec::with_capacity(spec.contacts);
    for c in 0..spec.contacts {
        let cid: CrmId = id(format!("c{c:07}"));
        let n_tags = rng.random_range(0..=2);
        let mut contact_tags: Vec<String> =
            tags.choose_multiple(&mut rng, n_tags).cloned().collect();
        contact_tags.sort();
        model.contacts_mut().insert(
            cid.clone(),
            Contact {
                id: cid.clone(),
                owner: pick_user(&mut rng),
                assignees: assignees(&mut rng),
                visibility: visibility(&mut rng),
                first_name: format!("First{c}"),
                last_name: format!("Last{c}"),
                organization: org_ids.choose(&mut rng).cloned(),
                title: String::new(),
                emails: vec![EmailAddress {
                    address: format!("contact{c}@customer.example"),
                    label: "work".into(),
                }],
                phones: Vec::new(),
                addresses: Vec::new(),
                notes: String::new(),
                tags: contact_tags,
                updated_at: None,
            },
        );
        contact_ids.push(cid);
    }

    let base = base_time();
    for e in 0..spec.events {
        let eid: CrmId = id(format!("e{e:07}"));
        let start = base + Duration::minutes(rng.random_range(-525_600i64..525_600) / 30 * 30);
        let end = start + Duration::minutes(30 * rng.random_range(1i64..=4));
        let mut attendees = Vec::new();
        if rng.random_bool(0.3) {
            let n = rng.random_range(1..=3);
            for u in user_ids.choose_multiple(&mut rng, n) {
                attendees.push(Attendee::User(u.clone()));
            }
        }
        if rng.random_bool(0.3) {
            if let Some(c) = contact_ids.choose(&mut rng) {
                attendees.push(Attendee::Contact(c.clone()));
            }
        }
        let mut links = Vec::new();
        if let Some(c) = contact_ids.choose(&mut rng) {
            if rng.random_bool(0.6) {
                links.push(ParentLink::Contact(c.clone()));
            }
        }
        if let Some(o) = org_ids.choose(&mut rng) {
            if rng.random_bool(0.4) {
                links.push(ParentLink::Organization(o.clone()));
            }
        }
        let recurrence = if rng.random_bool(spec.recurring_share) {
            vec!["RRULE:FREQ=WEEKLY;COUNT=10".to_owned()]
        } else {
            Vec::new()
        };
        model.events_mut().insert(
            eid.clone(),
            Event {
                id: eid,
                owner: pick_user(&mut rng),
                assignees: assignees(&mut rng),
                visibility: visibility(&mut rng),
                title: format!("Meeting {e}"),
                description: String::new(),
                location: String::new(),
                start: EventTime::DateTime(start),
                end: EventTime::DateTime(end),
                time_zone: "Europe/London".into(),
                all_day: false,
                recurrence,
                attendees,
                links,
                updated_at: None,
            },
        );
    }
    model
}

const KINDS: [ObjectKind; 3] = [
    ObjectKind::Contact,
    ObjectKind::Event,
    ObjectKind::Organization,
];

fn random_perms(rng: &mut StdRng) -> ObjectPermissions {
    let scope = |rng: &mut StdRng| -> Option<ScopeLevel> {
        match rng.random_range(0..6) {
            0 => Some(ScopeLevel::Own),
            1 => Some(ScopeLevel::Team),
            2 => Some(ScopeLevel::All),
            _ => None,
        }
    };
    let with_scopes = rng.random_bool(0.3);
    ObjectPermissions {
        read: rng.random_bool(0.8),
        create: rng.random_bool(0.5),
        edit: rng.random_bool(0.5),
        delete: rng.random_bool(0.3),
        read_all: rng.random_bool(0.1),
        modify_all: rng.random_bool(0.05),
        export: rng.random_bool(0.8),
        scope: if with_scopes {
            OperationScopes {
                read: scope(rng),
                create: None,
                edit: scope(rng),
                delete: scope(rng),
            }
        } else {
            OperationScopes::default()
        },
    }
}

fn random_default(rng: &mut StdRng, kind: ObjectKind) -> SharingDefault {
    match rng.random_range(0..if kind == ObjectKind::Event { 6 } else { 5 }) {
        0 | 1 => SharingDefault::Private,
        2 => SharingDefault::PublicRead,
        3 => SharingDefault::PublicReadWrite,
        4 => SharingDefault::PublicFull,
        _ => SharingDefault::ControlledByParent,
    }
}

fn random_party(rng: &mut StdRng, model: &OrgModel) -> RuleParty {
    let roles: Vec<&RoleId> = model.roles.keys().collect();
    let teams: Vec<&TeamId> = model.teams.keys().collect();
    match (rng.random_range(0..3), roles.choose(rng), teams.choose(rng)) {
        (0, Some(r), _) => RuleParty::Role((*r).clone()),
        (1, Some(r), _) => RuleParty::RoleAndSubordinates((*r).clone()),
        (_, _, Some(t)) => RuleParty::Team((*t).clone()),
        (_, Some(r), None) => RuleParty::Role((*r).clone()),
        (_, None, None) => RuleParty::Team(id("t0".into())),
    }
}

fn random_visibility(rng: &mut StdRng, model: &OrgModel) -> Option<Visibility> {
    let users: Vec<UserId> = model.users.keys().cloned().collect();
    match rng.random_range(0..8) {
        0 => Some(Visibility::Everyone),
        1 => Some(Visibility::OwnerOnly),
        2 => model
            .teams
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .choose(rng)
            .cloned()
            .map(Visibility::Team),
        3 => Some(Visibility::Users(
            users.choose_multiple(rng, 2).cloned().collect(),
        )),
        _ => None,
    }
}

/// A random small org (1–5 roles, 2–6 users, up to 3 profiles, 2 teams, 3 rules, 4
/// organizations, 6 contacts, 6 events) exercising every grant: scopes, visibility modes,
/// assignees, attendees, parents and every org-wide default.
pub fn small_org(seed: u64) -> OrgModel {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = OrgModel {
        settings: OrgSettings {
            reader_gate: false,
            name: "Small".into(),
            google_domains: vec![],
        },
        org_wide_sharing: OrgWideSharing {
            contact: random_default(&mut rng, ObjectKind::Contact),
            event: random_default(&mut rng, ObjectKind::Event),
            organization: random_default(&mut rng, ObjectKind::Organization),
        },
        ..OrgModel::default()
    };
    let n_roles = rng.random_range(1..=5);
    let mut roles: Vec<RoleId> = Vec::new();
    for r in 0..n_roles {
        let rid: RoleId = id(format!("role{r}"));
        let parent = if r > 0 && rng.random_bool(0.8) {
            roles.choose(&mut rng).cloned()
        } else {
            None
        };
        model.roles.insert(
            rid.clone(),
            Role {
                id: rid.clone(),
                name: rid.to_string(),
                parent,
            },
        );
        roles.push(rid);
    }
    let n_profiles = rng.random_range(1..=3);
    let mut profiles = Vec::new();
    for p in 0..n_profiles {
        let pid: ProfileId = id(format!("prof{p}"));
        let mut objects: BTreeMap<ObjectKind, ObjectPermissions> = BTreeMap::new();
        for k in KINDS {
            if rng.random_bool(0.9) {
                objects.insert(k, random_perms(&mut rng));
            }
        }
        model.profiles.insert(
            pid.clone(),
            Profile {
                id: pid.clone(),
                name: pid.to_string(),
                objects,
            },
        );
        profiles.push(pid);
    }
    let n_users = rng.random_range(2..=6);
    let mut users: Vec<UserId> = Vec::new();
    for u in 0..n_users {
        let uid: UserId = id(format!("user{u}"));
        let admin = rng.random_bool(0.1);
        model.users.insert(
            uid.clone(),
            User {
                id: uid.clone(),
                name: uid.to_string(),
                email: format!("{uid}@small.example"),
                active: rng.random_bool(0.85),
                admin,
                profile: if rng.random_bool(0.93) {
                    profiles.choose(&mut rng).cloned()
                } else {
                    None
                },
                role: if rng.random_bool(0.85) {
                    roles.choose(&mut rng).cloned()
                } else {
                    None
                },
                google_account: Some(format!("{uid}@small.example")),
            },
        );
        users.push(uid);
    }
    for t in 0..rng.random_range(0..=2) {
        let tid: TeamId = id(format!("team{t}"));
        let n = rng.random_range(0..=users.len());
        let mut members: Vec<UserId> = users.choose_multiple(&mut rng, n).cloned().collect();
        members.sort();
        model.teams.insert(
            tid.clone(),
            Team {
                id: tid,
                name: format!("team{t}"),
                members,
            },
        );
    }
    for r in 0..rng.random_range(0..=3) {
        let rid: RuleId = id(format!("rule{r}"));
        let rule = SharingRule {
            id: rid.clone(),
            object: KINDS[rng.random_range(0..3)],
            source: random_party(&mut rng, &model),
            target: random_party(&mut rng, &model),
            access: if rng.random_bool(0.5) {
                RuleAccess::Read
            } else {
                RuleAccess::ReadWrite
            },
        };
        model.sharing_rules.insert(rid, rule);
    }
    let pick = |rng: &mut StdRng| users[rng.random_range(0..users.len())].clone();
    let some_assignees = |rng: &mut StdRng| -> Vec<UserId> {
        let n = if rng.random_bool(0.3) { 1 } else { 0 };
        users.choose_multiple(rng, n).cloned().collect()
    };
    let mut orgs = Vec::new();
    for o in 0..rng.random_range(0..=4) {
        let oid: CrmId = id(format!("org{o}"));
        let org = Organization {
            id: oid.clone(),
            name: format!("Org {o}"),
            owner: pick(&mut rng),
            assignees: some_assignees(&mut rng),
            visibility: random_visibility(&mut rng, &model),
            updated_at: None,
        };
        model.organizations_mut().insert(oid.clone(), org);
        orgs.push(oid);
    }
    let tags = ["vip", "partner", "press"];
    let mut contacts = Vec::new();
    for c in 0..rng.random_range(0..=6) {
        let cid: CrmId = id(format!("con{c}"));
        let contact = Contact {
            id: cid.clone(),
            owner: pick(&mut rng),
            assignees: some_assignees(&mut rng),
            visibility: random_visibility(&mut rng, &model),
            first_name: format!("C{c}"),
            last_name: String::new(),
            organization: if rng.random_bool(0.5) {
                orgs.choose(&mut rng).cloned()
            } else {
                None
            },
            title: String::new(),
            emails: Vec::new(),
            phones: Vec::new(),
            addresses: Vec::new(),
            notes: String::new(),
            tags: tags
                .iter()
                .filter(|_| rng.random_bool(0.3))
                .map(|t| t.to_string())
                .collect(),
            updated_at: None,
        };
        model.contacts_mut().insert(cid.clone(), contact);
        contacts.push(cid);
    }
    let base = base_time();
    for e in 0..rng.random_range(0..=6) {
        let eid: CrmId = id(format!("ev{e}"));
        let start = base + Duration::days(rng.random_range(-60..60));
        let mut links = Vec::new();
        for _ in 0..rng.random_range(0..=2) {
            if rng.random_bool(0.5) {
                if let Some(c) = contacts.choose(&mut rng) {
                    links.push(ParentLink::Contact(c.clone()));
                }
            } else if let Some(o) = orgs.choose(&mut rng) {
                links.push(ParentLink::Organization(o.clone()));
            }
        }
        let mut attendees = Vec::new();
        if rng.random_bool(0.4) {
            attendees.push(Attendee::User(pick(&mut rng)));
        }
        if rng.random_bool(0.3) {
            if let Some(c) = contacts.choose(&mut rng) {
                attendees.push(Attendee::Contact(c.clone()));
            }
        }
        let event = Event {
            id: eid.clone(),
            owner: pick(&mut rng),
            assignees: some_assignees(&mut rng),
            visibility: random_visibility(&mut rng, &model),
            title: format!("Event {e}"),
            description: String::new(),
            location: String::new(),
            start: EventTime::DateTime(start),
            end: EventTime::DateTime(start + Duration::hours(1)),
            time_zone: "UTC".into(),
            all_day: false,
            recurrence: if rng.random_bool(0.2) {
                vec!["RRULE:FREQ=WEEKLY;COUNT=4".into()]
            } else {
                Vec::new()
            },
            attendees,
            links,
            updated_at: None,
        };
        model.events_mut().insert(eid, event);
    }
    model
}

/// Applies 1–8 random record changes to `model` — owners, assignees, visibility,
/// attendees, an event's links (to records that exist or not) and time, records deleted
/// (parents of events among them) and added (with ids before, between and after the
/// others, or the id an event already links to) — and returns the changed model with the
/// records changed. The security model is left untouched.
pub fn random_record_changes(model: &OrgModel, seed: u64) -> (OrgModel, Vec<RecordRef>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut m = model.clone();
    let mut changed = Vec::new();
    let users: Vec<UserId> = m.users.keys().cloned().collect();
    if users.is_empty() {
        return (m, changed);
    }
    let kinds = [
        ObjectKind::Contact,
        ObjectKind::Event,
        ObjectKind::Organization,
    ];
    let ids_of = |m: &OrgModel, kind: ObjectKind| -> Vec<CrmId> {
        match kind {
            ObjectKind::Contact => m.contacts.keys().cloned().collect(),
            ObjectKind::Event => m.events.keys().cloned().collect(),
            ObjectKind::Organization => m.organizations.keys().cloned().collect(),
        }
    };
    for step in 0..rng.random_range(1..=8) {
        let kind = kinds[rng.random_range(0..3)];
        let ids = ids_of(&m, kind);
        let user = users[rng.random_range(0..users.len())].clone();
        let visibility = random_visibility(&mut rng, &m);
        let target = ids.choose(&mut rng).cloned();
        match (rng.random_range(0..8), target) {
            (0, Some(id)) => {
                // Deleted (an event's parent among them: the event's link dangles).
                match kind {
                    ObjectKind::Contact => m.contacts_mut().remove(&id).map(|_| ()),
                    ObjectKind::Event => m.events_mut().remove(&id).map(|_| ()),
                    ObjectKind::Organization => m.organizations_mut().remove(&id).map(|_| ()),
                };
                changed.push(RecordRef::new(kind, id));
            }
            (1 | 2, source) => {
                // Added: a copy of a record of the kind (or of any contact), under an id
                // before, among or after the others, or one an event links to already.
                let dangling: Vec<CrmId> = m
                    .events
                    .values()
                    .flat_map(|e| &e.links)
                    .filter_map(|l| match (l, kind) {
                        (ParentLink::Contact(c), ObjectKind::Contact)
                            if !m.contacts.contains_key(c) =>
                        {
                            Some(c.clone())
                        }
                        (ParentLink::Organization(o), ObjectKind::Organization)
                            if !m.organizations.contains_key(o) =>
                        {
                            Some(o.clone())
                        }
                        _ => None,
                    })
                    .collect();
                let fresh = match (rng.random_range(0..4), dangling.choose(&mut rng)) {
                    (0, Some(id)) => id.clone(),
                    (1, _) => id(format!("a{seed}x{step}")),
                    (2, _) => id(format!("zz{seed}x{step}")),
                    _ => id(format!(
                        "{}{step}",
                        source.as_ref().map_or("m", |s| s.as_str())
                    )),
                };
                let added = match kind {
                    ObjectKind::Contact => {
                        add_copy(m.contacts_mut(), &model.contacts, source, &fresh)
                    }
                    ObjectKind::Event => add_copy(m.events_mut(), &model.events, source, &fresh),
                    ObjectKind::Organization => {
                        add_copy(m.organizations_mut(), &model.organizations, source, &fresh)
                    }
                };
                if let Some(record) = added {
                    *record.owner_mut() = user;
                    *record.visibility_mut() = visibility;
                    changed.push(RecordRef::new(kind, fresh));
                }
            }
            (what, Some(id)) => {
                let n = rng.random_range(0..=2);
                let assignees: Vec<UserId> = users.choose_multiple(&mut rng, n).cloned().collect();
                let link = if rng.random_bool(0.5) {
                    let contacts = ids_of(&m, ObjectKind::Contact);
                    match contacts.choose(&mut rng) {
                        Some(c) if rng.random_bool(0.8) => ParentLink::Contact(c.clone()),
                        _ => ParentLink::Contact(self::id(format!("gone{step}"))),
                    }
                } else {
                    let orgs = ids_of(&m, ObjectKind::Organization);
                    match orgs.choose(&mut rng) {
                        Some(o) if rng.random_bool(0.8) => ParentLink::Organization(o.clone()),
                        _ => ParentLink::Organization(self::id(format!("gone{step}"))),
                    }
                };
                let shift = Duration::days(rng.random_range(-90..90));
                let event_edit = rng.random_range(0..4);
                if what >= 6 {
                    if let Some(event) = m.events_mut().get_mut(&id) {
                        match event_edit {
                            0 => event.links.push(link),
                            1 => event.links.clear(),
                            2 => {
                                event.attendees.retain(|a| !matches!(a, Attendee::User(_)));
                                event.attendees.push(Attendee::User(user));
                            }
                            _ => {
                                if let (EventTime::DateTime(start), EventTime::DateTime(end)) =
                                    (&mut event.start, &mut event.end)
                                {
                                    *start += shift;
                                    *end += shift;
                                }
                            }
                        }
                        changed.push(RecordRef::new(kind, id));
                        continue;
                    }
                }
                let record: Option<&mut dyn RecordFields> = match kind {
                    ObjectKind::Contact => m.contacts_mut().get_mut(&id).map(|c| c as _),
                    ObjectKind::Event => m.events_mut().get_mut(&id).map(|e| e as _),
                    ObjectKind::Organization => m.organizations_mut().get_mut(&id).map(|o| o as _),
                };
                let Some(record) = record else {
                    continue;
                };
                match what {
                    4 => *record.assignees_mut() = assignees,
                    5 => *record.visibility_mut() = visibility,
                    _ => *record.owner_mut() = user,
                }
                changed.push(RecordRef::new(kind, id));
            }
            (_, None) => {}
        }
    }
    (m, changed)
}

/// Adds a copy of record `source` of `records` (or of the first record of `fallback`) under
/// the id `fresh`; returns it.
fn add_copy<'a, R: Clone + RecordFields>(
    records: &'a mut BTreeMap<CrmId, R>,
    fallback: &BTreeMap<CrmId, R>,
    source: Option<CrmId>,
    fresh: &CrmId,
) -> Option<&'a mut dyn RecordFields> {
    let mut copy = source
        .and_then(|s| records.get(&s).cloned())
        .or_else(|| fallback.values().next().cloned())?;
    *copy.id_mut() = fresh.clone();
    records.insert(fresh.clone(), copy);
    records.get_mut(fresh).map(|r| r as &mut dyn RecordFields)
}

/// The ownership fields every record kind has, for [`random_record_changes`].
trait RecordFields {
    fn id_mut(&mut self) -> &mut CrmId;
    fn owner_mut(&mut self) -> &mut UserId;
    fn assignees_mut(&mut self) -> &mut Vec<UserId>;
    fn visibility_mut(&mut self) -> &mut Option<Visibility>;
}

macro_rules! record_fields {
    ($($t:ty),*) => {$(
        impl RecordFields for $t {
            fn id_mut(&mut self) -> &mut CrmId { &mut self.id }
            fn owner_mut(&mut self) -> &mut UserId { &mut self.owner }
            fn assignees_mut(&mut self) -> &mut Vec<UserId> { &mut self.assignees }
            fn visibility_mut(&mut self) -> &mut Option<Visibility> { &mut self.visibility }
        }
    )*};
}
record_fields!(Contact, Event, Organization);

/// Applies 1–3 random changes to the security model of `model` (user role / profile /
/// active / admin flags, team membership, sharing rules, org-wide defaults, role parents,
/// profile rights) and returns the changed model with a description of each change.
/// Records are left untouched.
pub fn random_security_change(model: &OrgModel, seed: u64) -> (OrgModel, Vec<String>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut m = model.clone();
    let mut done = Vec::new();
    for _ in 0..rng.random_range(1..=3) {
        let users: Vec<UserId> = m.users.keys().cloned().collect();
        let roles: Vec<RoleId> = m.roles.keys().cloned().collect();
        let profiles: Vec<ProfileId> = m.profiles.keys().cloned().collect();
        let teams: Vec<TeamId> = m.teams.keys().cloned().collect();
        let Some(u) = users.choose(&mut rng).cloned() else {
            break;
        };
        match rng.random_range(0..10) {
            0 => {
                let role = roles
                    .choose(&mut rng)
                    .cloned()
                    .filter(|_| rng.random_bool(0.9));
                if let Some(user) = m.users.get_mut(&u) {
                    done.push(format!("move {u} from role {:?} to {role:?}", user.role));
                    user.role = role;
                }
            }
            1 => {
                if let Some(user) = m.users.get_mut(&u) {
                    user.active = !user.active;
                    done.push(format!("set {u} active={}", user.active));
                }
            }
            2 => {
                if let Some(user) = m.users.get_mut(&u) {
                    user.admin = !user.admin;
                    done.push(format!("set {u} admin={}", user.admin));
                }
            }
            3 => {
                let profile = profiles.choose(&mut rng).cloned();
                if let Some(user) = m.users.get_mut(&u) {
                    done.push(format!("switch {u} to profile {profile:?}"));
                    user.profile = profile;
                }
            }
            4 => {
                if let Some(t) = teams.choose(&mut rng) {
                    if let Some(team) = m.teams.get_mut(t) {
                        if let Some(pos) = team.members.iter().position(|x| *x == u) {
                            team.members.remove(pos);
                            done.push(format!("remove {u} from team {t}"));
                        } else {
                            team.members.push(u.clone());
                            team.members.sort();
                            done.push(format!("add {u} to team {t}"));
                        }
                    }
                }
            }
            5 => {
                let rules: Vec<RuleId> = m.sharing_rules.keys().cloned().collect();
                match (rng.random_range(0..3), rules.choose(&mut rng).cloned()) {
                    (0, Some(r)) => {
                        m.sharing_rules.remove(&r);
                        done.push(format!("delete rule {r}"));
                    }
                    (1, Some(r)) => {
                        let source = random_party(&mut rng, &m);
                        let target = random_party(&mut rng, &m);
                        if let Some(rule) = m.sharing_rules.get_mut(&r) {
                            rule.source = source;
                            rule.target = target;
                            done.push(format!("re-aim rule {r}"));
                        }
                    }
                    _ => {
                        let rid: RuleId = id(format!("newrule{}", m.sharing_rules.len()));
                        let rule = SharingRule {
                            id: rid.clone(),
                            object: KINDS[rng.random_range(0..3)],
                            source: random_party(&mut rng, &m),
                            target: random_party(&mut rng, &m),
                            access: RuleAccess::Read,
                        };
                        m.sharing_rules.insert(rid.clone(), rule);
                        done.push(format!("add rule {rid}"));
                    }
                }
            }
            6 => {
                let kind = KINDS[rng.random_range(0..3)];
                let default = random_default(&mut rng, kind);
                match kind {
                    ObjectKind::Contact => m.org_wide_sharing.contact = default,
                    ObjectKind::Event => m.org_wide_sharing.event = default,
                    ObjectKind::Organization => m.org_wide_sharing.organization = default,
                }
                done.push(format!("set org-wide default of {kind} to {default:?}"));
            }
            7 => {
                // Re-parent a role, never under its own subtree.
                if let Some(r) = roles.choose(&mut rng).cloned() {
                    let candidate = roles
                        .choose(&mut rng)
                        .cloned()
                        .filter(|_| rng.random_bool(0.8));
                    let creates_cycle = |m: &OrgModel, parent: &RoleId| {
                        let mut cursor = Some(parent.clone());
                        let mut steps = 0;
                        while let Some(c) = cursor {
                            if c == r || steps > m.roles.len() {
                                return true;
                            }
                            steps += 1;
                            cursor = m.roles.get(&c).and_then(|x| x.parent.clone());
                        }
                        false
                    };
                    let parent = candidate.filter(|p| !creates_cycle(&m, p));
                    if let Some(role) = m.roles.get_mut(&r) {
                        done.push(format!("re-parent role {r} under {parent:?}"));
                        role.parent = parent;
                    }
                }
            }
            8 => {
                if let Some(p) = profiles.choose(&mut rng) {
                    let kind = KINDS[rng.random_range(0..3)];
                    let perms = random_perms(&mut rng);
                    if let Some(profile) = m.profiles.get_mut(p) {
                        profile.objects.insert(kind, perms);
                        done.push(format!("change profile {p} rights on {kind}"));
                    }
                }
            }
            _ => {
                // Delete a user (records keep the dangling owner).
                m.users.remove(&u);
                for team in m.teams.values_mut() {
                    team.members.retain(|x| *x != u);
                }
                done.push(format!("delete user {u}"));
            }
        }
    }
    (m, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_shaped() {
        let spec = SyntheticSpec {
            users: 50,
            contacts: 300,
            events: 200,
            organizations: 20,
            sharing_rules: 5,
            teams: 4,
            ..SyntheticSpec::benchmark()
        };
        let a = generate(&spec);
        let b = generate(&spec);
        assert_eq!(a, b);
        assert_eq!(a.users.len(), 50);
        assert_eq!(a.contacts.len(), 300);
        assert_eq!(a.events.len(), 200);
        assert_eq!(a.roles.len(), 1 + 4 + 16 + 64 + 128 + 256);
        assert_eq!(a.sharing_rules.len(), 5);
        assert_eq!(small_org(7), small_org(7));
        let (changed, what) = random_security_change(&small_org(7), 1);
        assert!(!what.is_empty());
        assert_eq!(changed.contacts, small_org(7).contacts);
    }
}
