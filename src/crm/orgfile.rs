//! The org file (`shared/ORG_FILE.md`): a whole CRM in one JSON document.
//!
//! Parsing is strict — unknown keys, wrong types, dangling references, duplicate ids, cycles in
//! the role tree, invalid zones, recurrence rules or times are errors that name the JSON path.
//! Every problem found is reported at once; nothing is written when there is any.

use super::OrgModel;
use crate::model::{
    Attendee, Contact, Event, ObjectKind, OrgSettings, OrgWideSharing, Organization, Owned,
    ParentLink, Profile, Role, RoleId, RuleParty, SharingDefault, SharingRule, Team, User, UserId,
    Visibility,
};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::Path;

/// The document as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgFileDoc {
    org: OrgSettings,
    #[serde(default)]
    org_wide_sharing: OrgWideSharing,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(default)]
    profiles: Vec<Profile>,
    #[serde(default)]
    teams: Vec<Team>,
    #[serde(default)]
    users: Vec<User>,
    #[serde(default)]
    sharing_rules: Vec<SharingRule>,
    #[serde(default)]
    organizations: Vec<Organization>,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    events: Vec<Event>,
}

/// One problem, at a JSON path such as `contacts[3].owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for OrgProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why an org file was refused: every problem found, each with its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct OrgFileError {
    pub source_name: String,
    pub problems: Vec<OrgProblem>,
}

impl fmt::Display for OrgFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} problem{}; nothing was loaded:",
            self.source_name,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Reads and validates an org file from disk.
pub fn load_path(path: &Path) -> Result<OrgModel, OrgFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| OrgFileError {
        source_name: name.clone(),
        problems: vec![OrgProblem {
            path: "$".into(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    parse(&name, &text)
}

/// Parses and validates an org file's text.
pub fn parse(source_name: &str, text: &str) -> Result<OrgModel, OrgFileError> {
    let fail = |problems| OrgFileError {
        source_name: source_name.to_owned(),
        problems,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let doc: OrgFileDoc = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("invalid JSON: {inner}")
            }
            _ => strip_position(&inner.to_string()),
        };
        fail(vec![OrgProblem {
            path: if path == "." { "$".into() } else { path },
            message,
        }])
    })?;
    let mut trailing = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    trailing.next();
    if trailing.next().is_some() {
        return Err(fail(vec![OrgProblem {
            path: "$".into(),
            message: "trailing content after the JSON document".into(),
        }]));
    }
    validate(doc).map_err(fail)
}

/// The org file of `model`: the inverse of [`parse`] (`crmsync crm export`). Sections come in
/// the documented order, entities in id order, each as the CRM stores it, so parsing the
/// document gives `model` back (record versions aside).
pub fn to_document(model: &OrgModel) -> serde_json::Value {
    fn list<T: serde::Serialize>(items: impl IntoIterator<Item = T>) -> serde_json::Value {
        serde_json::Value::Array(
            items
                .into_iter()
                .filter_map(|i| serde_json::to_value(i).ok())
                .collect(),
        )
    }
    let mut doc = serde_json::Map::new();
    let mut put = |key: &str, value: serde_json::Value| {
        doc.insert(key.to_owned(), value);
    };
    put(
        "org",
        serde_json::to_value(&model.settings).unwrap_or_default(),
    );
    put(
        "org_wide_sharing",
        serde_json::to_value(model.org_wide_sharing).unwrap_or_default(),
    );
    put("roles", list(model.roles.values()));
    put("profiles", list(model.profiles.values()));
    put("teams", list(model.teams.values()));
    put("users", list(model.users.values()));
    put("sharing_rules", list(model.sharing_rules.values()));
    put("organizations", list(model.organizations.values()));
    put("contacts", list(model.contacts.values()));
    put("events", list(model.events.values()));
    serde_json::Value::Object(doc)
}

/// serde_json appends " at line L column C"; the path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

struct Problems(Vec<OrgProblem>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(OrgProblem {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn validate(doc: OrgFileDoc) -> Result<OrgModel, Vec<OrgProblem>> {
    let mut p = Problems(Vec::new());
    let mut model = OrgModel {
        org_wide_sharing: doc.org_wide_sharing,
        ..OrgModel::default()
    };
    if doc.org.name.trim().is_empty() {
        p.push("org.name", "must not be empty");
    }
    for (i, d) in doc.org.google_domains.iter().enumerate() {
        if d.trim().is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
            p.push(
                format!("org.google_domains[{i}]"),
                format!("{d:?} is not a domain name"),
            );
        }
    }
    if doc.org.reader_gate {
        p.push(
            "org.reader_gate",
            "is set by CRM connectors in delegated mode, not by org files",
        );
    }
    model.settings = OrgSettings {
        reader_gate: false,
        name: doc.org.name.trim().to_owned(),
        google_domains: doc
            .org
            .google_domains
            .iter()
            .map(|d| d.trim().to_lowercase())
            .collect(),
    };
    for kind in [ObjectKind::Contact, ObjectKind::Organization] {
        if doc.org_wide_sharing.for_kind(kind) == SharingDefault::ControlledByParent {
            p.push(
                format!("org_wide_sharing.{kind}"),
                "controlled_by_parent applies to events only",
            );
        }
    }

    macro_rules! index {
        ($list:expr, $section:literal, $map:expr) => {
            for (i, item) in $list.into_iter().enumerate() {
                if $map.contains_key(&item.id) {
                    p.push(
                        format!("{}[{i}].id", $section),
                        format!("duplicate id {:?}", item.id.as_str()),
                    );
                } else {
                    $map.insert(item.id.clone(), (i, item));
                }
            }
        };
    }
    let mut roles = BTreeMap::new();
    index!(doc.roles, "roles", roles);
    let mut profiles = BTreeMap::new();
    index!(doc.profiles, "profiles", profiles);
    let mut teams = BTreeMap::new();
    index!(doc.teams, "teams", teams);
    let mut users = BTreeMap::new();
    index!(doc.users, "users", users);
    let mut rules = BTreeMap::new();
    index!(doc.sharing_rules, "sharing_rules", rules);
    let mut orgs = BTreeMap::new();
    index!(doc.organizations, "organizations", orgs);
    let mut contacts = BTreeMap::new();
    index!(doc.contacts, "contacts", contacts);
    let mut events = BTreeMap::new();
    index!(doc.events, "events", events);

    // Roles: parents exist, and the tree has no cycle.
    for (id, (i, role)) in &roles {
        if let Some(parent) = &role.parent {
            if !roles.contains_key(parent) {
                p.push(
                    format!("roles[{i}].parent"),
                    format!("unknown role {:?}", parent.as_str()),
                );
            }
        }
        let mut seen: HashSet<&RoleId> = HashSet::from([id]);
        let mut cursor = role.parent.as_ref();
        while let Some(next) = cursor {
            if !seen.insert(next) {
                p.push(
                    format!("roles[{i}].parent"),
                    format!("the role tree has a cycle through {:?}", id.as_str()),
                );
                break;
            }
            cursor = roles.get(next).and_then(|(_, r)| r.parent.as_ref());
        }
    }

    for (i, user) in users.values() {
        let path = |f: &str| format!("users[{i}].{f}");
        if let Some(profile) = &user.profile {
            if !profiles.contains_key(profile) {
                p.push(
                    path("profile"),
                    format!("unknown profile {:?}", profile.as_str()),
                );
            }
        }
        if let Some(role) = &user.role {
            if !roles.contains_key(role) {
                p.push(path("role"), format!("unknown role {:?}", role.as_str()));
            }
        }
        let mut user = user.clone();
        match crate::model::normalize::email(&user.email) {
            Ok(e) => user.email = e,
            Err(e) => p.push(path("email"), e.to_string()),
        }
        if let Some(account) = &user.google_account {
            match crate::model::normalize::email(account) {
                Ok(e) => user.google_account = Some(e),
                Err(e) => p.push(path("google_account"), e.to_string()),
            }
        }
        model.users.insert(user.id.clone(), user);
    }
    // One Google account per user: a shared account would mix two users' permissions on
    // one phone (and revoking one would wipe the other).
    let mut accounts: Vec<(usize, &UserId, String)> = users
        .values()
        .filter_map(|(i, u)| {
            let account = model.users.get(&u.id)?.google_account.clone()?;
            Some((*i, &u.id, account.to_lowercase()))
        })
        .collect();
    accounts.sort();
    let mut first_user: BTreeMap<String, (usize, &UserId)> = BTreeMap::new();
    for (i, id, account) in accounts {
        match first_user.get(&account) {
            Some((j, other)) => p.push(
                format!("users[{i}].google_account"),
                format!(
                    "Google account {account:?} is already used by users[{j}] ({:?}); each \
                     user needs a Google account of their own",
                    other.as_str()
                ),
            ),
            None => {
                first_user.insert(account, (i, id));
            }
        }
    }

    for (i, team) in teams.values() {
        let mut members = BTreeSet::new();
        for (j, m) in team.members.iter().enumerate() {
            if !users.contains_key(m) {
                p.push(
                    format!("teams[{i}].members[{j}]"),
                    format!("unknown user {:?}", m.as_str()),
                );
            }
            members.insert(m.clone());
        }
        let mut team = team.clone();
        team.members = members.into_iter().collect();
        model.teams.insert(team.id.clone(), team);
    }

    let check_party = |p: &mut Problems, path: String, party: &RuleParty| match party {
        RuleParty::Role(r) | RuleParty::RoleAndSubordinates(r) => {
            if !roles.contains_key(r) {
                p.push(path, format!("unknown role {:?}", r.as_str()));
            }
        }
        RuleParty::Team(t) => {
            if !teams.contains_key(t) {
                p.push(path, format!("unknown team {:?}", t.as_str()));
            }
        }
    };
    for (i, rule) in rules.values() {
        check_party(&mut p, format!("sharing_rules[{i}].source"), &rule.source);
        check_party(&mut p, format!("sharing_rules[{i}].target"), &rule.target);
        model.sharing_rules.insert(rule.id.clone(), rule.clone());
    }

    let check_owned = |p: &mut Problems, section: &str, i: usize, record: &dyn Owned| {
        if !users.contains_key(record.owner()) {
            p.push(
                format!("{section}[{i}].owner"),
                format!("unknown user {:?}", record.owner().as_str()),
            );
        }
        for (j, a) in record.assignees().iter().enumerate() {
            if !users.contains_key(a) {
                p.push(
                    format!("{section}[{i}].assignees[{j}]"),
                    format!("unknown user {:?}", a.as_str()),
                );
            }
        }
        match record.visibility() {
            Some(Visibility::Team(t)) if !teams.contains_key(t) => p.push(
                format!("{section}[{i}].visibility.team"),
                format!("unknown team {:?}", t.as_str()),
            ),
            Some(Visibility::Users(list)) => {
                for (j, u) in list.iter().enumerate() {
                    if !users.contains_key(u) {
                        p.push(
                            format!("{section}[{i}].visibility.users[{j}]"),
                            format!("unknown user {:?}", u.as_str()),
                        );
                    }
                }
            }
            _ => {}
        }
    };
    let record_problems = |p: &mut Problems, section: &str, i: usize, list: Vec<(String, _)>| {
        for (field, err) in list {
            let err: crate::model::normalize::NormalizeError = err;
            p.push(format!("{section}[{i}].{field}"), err.to_string());
        }
    };

    for (i, org) in orgs.values() {
        check_owned(&mut p, "organizations", *i, org);
        match org.clone().normalized() {
            Ok(o) => {
                model.organizations_mut().insert(o.id.clone(), o);
            }
            Err(list) => record_problems(&mut p, "organizations", *i, list),
        }
    }
    for (i, contact) in contacts.values() {
        check_owned(&mut p, "contacts", *i, contact);
        if let Some(org) = &contact.organization {
            if !orgs.contains_key(org) {
                p.push(
                    format!("contacts[{i}].organization"),
                    format!("unknown organization {:?}", org.as_str()),
                );
            }
        }
        match contact.clone().normalized() {
            Ok(c) => {
                model.contacts_mut().insert(c.id.clone(), c);
            }
            Err(list) => record_problems(&mut p, "contacts", *i, list),
        }
    }
    for (i, event) in events.values() {
        check_owned(&mut p, "events", *i, event);
        for (j, a) in event.attendees.iter().enumerate() {
            match a {
                Attendee::User(u) if !users.contains_key(u) => p.push(
                    format!("events[{i}].attendees[{j}].user"),
                    format!("unknown user {:?}", u.as_str()),
                ),
                Attendee::Contact(c) if !contacts.contains_key(c) => p.push(
                    format!("events[{i}].attendees[{j}].contact"),
                    format!("unknown contact {:?}", c.as_str()),
                ),
                _ => {}
            }
        }
        for (j, link) in event.links.iter().enumerate() {
            let known = match link {
                ParentLink::Contact(c) => contacts.contains_key(c),
                ParentLink::Organization(o) => orgs.contains_key(o),
            };
            if !known {
                p.push(
                    format!("events[{i}].links[{j}].{}", link.kind()),
                    format!("unknown {} {:?}", link.kind(), link.id().as_str()),
                );
            }
        }
        match event.clone().normalized() {
            Ok(e) => {
                model.events_mut().insert(e.id.clone(), e);
            }
            Err(list) => record_problems(&mut p, "events", *i, list),
        }
    }
    for (_, (_, role)) in roles {
        model.roles.insert(role.id.clone(), role);
    }
    for (_, (_, profile)) in profiles {
        model.profiles.insert(profile.id.clone(), profile);
    }

    if p.0.is_empty() {
        Ok(model)
    } else {
        Err(p.0)
    }
}
