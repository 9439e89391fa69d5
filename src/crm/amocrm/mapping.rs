//! amoCRM records and rights ↔ crmsync's model. Pure functions, no I/O.
//!
//! **Users and rights.** Each user gets a profile of their own (`amocrm-user-<id>`), since
//! amoCRM sets rights per user. For contacts (→ `contact`) and companies (→
//! `organization`), each of `view` / `edit` / `delete` becomes the operation's flag (not
//! `D`) and scope: `A` → `all`, `G` → `team` (the user's group; a user without a group:
//! `own`), `M` → `own` (records the user is responsible for). amoCRM's dependencies are
//! applied first (edit ≤ view, delete ≤ edit, export ≤ view: a wider right than what it
//! depends on is narrowed), as amoCRM's own client does. `add: A` → create. `export: D` →
//! the export gate is closed (the kind never reaches the user's Google account); `export:
//! G` or `M` narrows the read scope to that reach, because crmsync reads only to export.
//! Letters other than `A`/`G`/`M`/`D` count as `D`. Tasks (→ `event`) have only `edit`
//! and `delete` rights: a user reads the tasks they are responsible for, and as far as
//! their `edit` right reaches (editing needs seeing). `is_admin` → admin, `is_active:
//! false` → inactive; free users (`is_free`) get no rights at all. amoCRM has no role
//! tree, sharing rules or org-wide sharing: roles are left empty and every kind is
//! private, so only the rights above grant anything.
//!
//! **Groups** → teams (members: the users whose `rights.group_id` is the group).
//!
//! **Contacts**: `first_name` / `last_name` (or `name` when both are empty), the
//! `POSITION` field → title, `EMAIL` / `PHONE` values → e-mails / phones (enum codes →
//! labels: `WORK` → work, `PRIV` → home, `MOB` → mobile, `HOME` → home, `FAX` → workFax,
//! `WORKDD` → work, `OTHER` → other), the linked company → organization, tags,
//! `responsible_user_id` → owner, `updated_at`. Not mapped: other custom fields, notes
//! (amoCRM keeps them as separate note entities), postal addresses (contacts have none),
//! leads, customers. A record with `is_deleted: true` counts as deleted.
//!
//! **Companies** → organizations: `name`, `responsible_user_id`, `updated_at`.
//!
//! **Tasks** of the configured types (default 1 = call, 2 = meeting) → events: `text` →
//! title, `complete_till` → start, `complete_till + duration` → end (a task without a
//! duration lasts `event_minutes`), in the account's time zone; the linked contact or
//! company → the event's parent link. Not mapped: the task's result, completion (completed
//! tasks stay events: the sync window decides), links to leads or customers.
//!
//! **Write-backs** ([`contact_patch`], [`event_patch`], [`company_patch`]) send only the
//! changed fields; a field amoCRM cannot hold (an address, notes, an event's description,
//! location, recurrence or all-day flag) refuses the whole write-back.

use super::api::{
    ApiAccount, ApiCompany, ApiContact, ApiEntityRights, ApiFieldValue, ApiTask, ApiUser,
};
use crate::crm::CrmError;
use crate::model::{
    Contact, CrmId, EmailAddress, Event, EventTime, ObjectKind, ObjectPermissions, OperationScopes,
    OrgSettings, Organization, ParentLink, PhoneNumber, Profile, ProfileId, ScopeLevel, Team,
    TeamId, User, UserId,
};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// How far one right reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    Denied,
    Responsible,
    Group,
    All,
}

impl Reach {
    /// `A` / `G` / `M` / `D`; anything else (or nothing) is `D`.
    pub fn parse(letter: Option<&str>) -> Self {
        match letter.map(str::trim) {
            Some("A") => Reach::All,
            Some("G") => Reach::Group,
            Some("M") => Reach::Responsible,
            _ => Reach::Denied,
        }
    }

    fn scope(self, has_group: bool) -> Option<ScopeLevel> {
        match self {
            Reach::Denied => None,
            Reach::Responsible => Some(ScopeLevel::Own),
            Reach::Group if has_group => Some(ScopeLevel::Team),
            Reach::Group => Some(ScopeLevel::Own),
            Reach::All => Some(ScopeLevel::All),
        }
    }
}

/// The rights of one contact/company kind, with amoCRM's dependencies applied.
pub fn entity_permissions(rights: &ApiEntityRights, has_group: bool) -> ObjectPermissions {
    let view = Reach::parse(rights.view.as_deref());
    let edit = Reach::parse(rights.edit.as_deref()).min(view);
    let delete = Reach::parse(rights.delete.as_deref()).min(edit);
    let export = Reach::parse(rights.export.as_deref()).min(view);
    let add = rights.add.as_deref().map(str::trim) == Some("A");
    // crmsync reads only to export: an export narrower than view narrows what it reads.
    let read_reach = if export == Reach::Denied {
        view
    } else {
        view.min(export)
    };
    ObjectPermissions {
        read: view != Reach::Denied,
        create: add,
        edit: edit != Reach::Denied,
        delete: delete != Reach::Denied,
        read_all: false,
        modify_all: false,
        export: export != Reach::Denied,
        scope: OperationScopes {
            read: read_reach.scope(has_group),
            create: None,
            edit: edit.scope(has_group),
            delete: delete.scope(has_group),
        },
    }
}

/// Tasks: read own tasks and as far as `edit` reaches; edit and delete as given.
pub fn task_permissions(
    edit: Option<&str>,
    delete: Option<&str>,
    has_group: bool,
) -> ObjectPermissions {
    let edit = Reach::parse(edit);
    let delete = Reach::parse(delete).min(edit);
    let read = edit.max(Reach::Responsible);
    ObjectPermissions {
        read: true,
        create: false,
        edit: edit != Reach::Denied,
        delete: delete != Reach::Denied,
        read_all: false,
        modify_all: false,
        export: true,
        scope: OperationScopes {
            read: read.scope(has_group),
            create: None,
            edit: edit.scope(has_group),
            delete: delete.scope(has_group),
        },
    }
}

/// The profile id of a user's rights.
pub fn profile_id(user: i64) -> Result<ProfileId, String> {
    ProfileId::new(format!("amocrm-user-{user}")).map_err(|e| e.to_string())
}

fn positive_id(what: &str, id: i64) -> Result<String, String> {
    if id <= 0 {
        return Err(format!("{what} {id} is not an amoCRM id"));
    }
    Ok(id.to_string())
}

fn user_id(id: i64) -> Result<UserId, String> {
    UserId::new(positive_id("user", id)?).map_err(|e| e.to_string())
}

fn crm_id(id: i64) -> Result<CrmId, String> {
    CrmId::new(positive_id("record", id)?).map_err(|e| e.to_string())
}

fn stamp(unix: Option<i64>) -> Option<DateTime<Utc>> {
    unix.and_then(|s| Utc.timestamp_opt(s, 0).single())
}

/// A user and the profile holding their rights.
pub fn user(api: &ApiUser, google_domains: &[String]) -> Result<(User, Profile), String> {
    let id = user_id(api.id)?;
    let profile_id = profile_id(api.id)?;
    let rights = &api.rights;
    let has_group = rights.group_id.is_some();
    let mut objects = BTreeMap::new();
    if !rights.is_free {
        let none = ApiEntityRights::default();
        objects.insert(
            ObjectKind::Contact,
            entity_permissions(rights.contacts.as_ref().unwrap_or(&none), has_group),
        );
        objects.insert(
            ObjectKind::Organization,
            entity_permissions(rights.companies.as_ref().unwrap_or(&none), has_group),
        );
        let tasks = rights.tasks.clone().unwrap_or_default();
        objects.insert(
            ObjectKind::Event,
            task_permissions(tasks.edit.as_deref(), tasks.delete.as_deref(), has_group),
        );
    }
    let name = api
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("amoCRM user {}", api.id));
    let email = api.email.clone().unwrap_or_default().trim().to_lowercase();
    let google_account = crate::model::normalize::email(&email).ok().filter(|e| {
        google_domains.is_empty()
            || e.rsplit_once('@')
                .is_some_and(|(_, d)| google_domains.iter().any(|g| g.eq_ignore_ascii_case(d)))
    });
    let user = User {
        id,
        name: name.clone(),
        email,
        active: rights.is_active,
        admin: rights.is_admin,
        profile: Some(profile_id.clone()),
        role: None,
        google_account,
    };
    let profile = Profile {
        id: profile_id,
        name: format!("amoCRM rights of {name}"),
        objects,
    };
    Ok((user, profile))
}

/// Teams from the account's groups and the users' `group_id`s.
pub fn teams(account: &ApiAccount, users: &[ApiUser]) -> Vec<Team> {
    let mut names: BTreeMap<i64, String> = BTreeMap::new();
    if let Some(embedded) = &account.embedded {
        for g in &embedded.users_groups {
            let name = g
                .name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("group {}", g.id));
            names.insert(g.id, name);
        }
    }
    let mut members: BTreeMap<i64, BTreeSet<UserId>> = BTreeMap::new();
    for u in users {
        if let (Some(group), Ok(id)) = (u.rights.group_id, user_id(u.id)) {
            members.entry(group).or_default().insert(id);
            names
                .entry(group)
                .or_insert_with(|| format!("group {group}"));
        }
    }
    names
        .into_iter()
        .filter_map(|(id, name)| {
            Some(Team {
                id: TeamId::new(id.to_string()).ok()?,
                name,
                members: members
                    .remove(&id)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            })
        })
        .collect()
}

/// The org's settings.
pub fn org(name: &str, google_domains: &[String]) -> OrgSettings {
    OrgSettings {
        name: name.to_owned(),
        google_domains: google_domains
            .iter()
            .map(|d| d.trim().to_lowercase())
            .collect(),
        reader_gate: false,
    }
}

fn text_value(v: &ApiFieldValue) -> String {
    match &v.value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn field<'a>(api: &'a ApiContact, code: &str) -> Vec<&'a ApiFieldValue> {
    api.custom_fields_values
        .iter()
        .flatten()
        .filter(|f| f.field_code.as_deref() == Some(code))
        .flat_map(|f| f.values.iter().flatten())
        .collect()
}

fn enum_of(v: &ApiFieldValue) -> String {
    v.enum_code
        .clone()
        .or_else(|| v.enum_name.clone())
        .unwrap_or_default()
        .trim()
        .to_uppercase()
}

/// A phone's enum code → label.
pub fn phone_label(code: &str) -> &'static str {
    match code {
        "WORK" | "WORKDD" => "work",
        "MOB" => "mobile",
        "HOME" => "home",
        "FAX" => "workFax",
        "" => "",
        _ => "other",
    }
}

/// A phone label → enum code.
pub fn phone_code(label: &str) -> Option<&'static str> {
    match label.trim() {
        "" => None,
        "work" => Some("WORK"),
        "mobile" => Some("MOB"),
        "home" => Some("HOME"),
        "workFax" | "homeFax" | "otherFax" | "fax" => Some("FAX"),
        _ => Some("OTHER"),
    }
}

/// An e-mail's enum code → label.
pub fn email_label(code: &str) -> &'static str {
    match code {
        "WORK" => "work",
        "PRIV" => "home",
        "" => "",
        _ => "other",
    }
}

/// An e-mail label → enum code.
pub fn email_code(label: &str) -> Option<&'static str> {
    match label.trim() {
        "" => None,
        "work" => Some("WORK"),
        "home" => Some("PRIV"),
        _ => Some("OTHER"),
    }
}

/// A contact (normalised), `None` when amoCRM marks it deleted.
pub fn contact(api: &ApiContact) -> Result<Option<Contact>, String> {
    if api.is_deleted == Some(true) {
        return Ok(None);
    }
    let id = crm_id(api.id)?;
    let owner = user_id(api.responsible_user_id)?;
    let mut first = api.first_name.clone().unwrap_or_default();
    let last = api.last_name.clone().unwrap_or_default();
    if first.trim().is_empty() && last.trim().is_empty() {
        first = api.name.clone().unwrap_or_default();
    }
    let title = field(api, "POSITION")
        .first()
        .map(|v| text_value(v))
        .unwrap_or_default();
    let emails = field(api, "EMAIL")
        .into_iter()
        .filter(|v| !text_value(v).trim().is_empty())
        .map(|v| EmailAddress {
            address: text_value(v),
            label: email_label(&enum_of(v)).into(),
        })
        .collect();
    let phones = field(api, "PHONE")
        .into_iter()
        .filter(|v| !text_value(v).trim().is_empty())
        .map(|v| PhoneNumber {
            number: text_value(v),
            label: phone_label(&enum_of(v)).into(),
        })
        .collect();
    let embedded = api.embedded.clone().unwrap_or_default();
    let organization = match embedded.companies.first() {
        Some(c) => Some(crm_id(c.id)?),
        None => None,
    };
    let contact = Contact {
        id,
        owner,
        assignees: Vec::new(),
        visibility: None,
        first_name: first,
        last_name: last,
        organization,
        title,
        emails,
        phones,
        addresses: Vec::new(),
        notes: String::new(),
        tags: embedded.tags.into_iter().map(|t| t.name).collect(),
        updated_at: stamp(api.updated_at),
    };
    contact
        .normalized()
        .map(Some)
        .map_err(|problems| describe(&problems))
}

fn describe(problems: &[(String, crate::model::normalize::NormalizeError)]) -> String {
    problems
        .iter()
        .map(|(field, e)| format!("{field}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An organization, `None` when amoCRM marks it deleted.
pub fn organization(api: &ApiCompany) -> Result<Option<Organization>, String> {
    if api.is_deleted == Some(true) {
        return Ok(None);
    }
    Ok(Some(Organization {
        id: crm_id(api.id)?,
        name: api.name.clone().unwrap_or_default().trim().to_owned(),
        owner: user_id(api.responsible_user_id)?,
        assignees: Vec::new(),
        visibility: None,
        updated_at: stamp(api.updated_at),
    }))
}

/// How tasks become events.
#[derive(Debug, Clone)]
pub struct EventRules {
    pub zone: Tz,
    pub task_types: Vec<i64>,
    /// Seconds a task without a duration lasts.
    pub default_seconds: i64,
}

/// An event, `None` for a task of a type that is not synced.
pub fn event(api: &ApiTask, rules: &EventRules) -> Result<Option<Event>, String> {
    if !rules.task_types.contains(&api.task_type_id) {
        return Ok(None);
    }
    let start = Utc
        .timestamp_opt(api.complete_till, 0)
        .single()
        .ok_or_else(|| format!("complete_till {} is not a time", api.complete_till))?;
    let seconds = match api.duration {
        Some(d) if d > 0 => d,
        _ => rules.default_seconds,
    };
    let end = start + chrono::Duration::seconds(seconds);
    let local = |t: DateTime<Utc>| EventTime::DateTime(t.with_timezone(&rules.zone).naive_local());
    let links = match (api.entity_type.as_deref(), api.entity_id) {
        (Some("contacts"), Some(id)) => vec![ParentLink::Contact(crm_id(id)?)],
        (Some("companies"), Some(id)) => vec![ParentLink::Organization(crm_id(id)?)],
        _ => Vec::new(),
    };
    let event = Event {
        id: crm_id(api.id)?,
        owner: user_id(api.responsible_user_id)?,
        assignees: Vec::new(),
        visibility: None,
        title: api.text.clone().unwrap_or_default(),
        description: String::new(),
        location: String::new(),
        start: local(start),
        end: local(end),
        time_zone: rules.zone.name().to_owned(),
        all_day: false,
        recurrence: Vec::new(),
        attendees: Vec::new(),
        links,
        updated_at: stamp(api.updated_at),
    };
    event
        .normalized()
        .map(Some)
        .map_err(|problems| describe(&problems))
}

fn refused(what: &str) -> CrmError {
    CrmError::Refused(format!(
        "{what}: amoCRM has no place for it, so the phone's change is not written back"
    ))
}

fn field_values(code: &str, values: Vec<Value>) -> Value {
    json!({
        "field_code": code,
        "values": if values.is_empty() { Value::Null } else { Value::Array(values) },
    })
}

/// The `PATCH api/v4/contacts/{id}` body for the `changed` fields, from the contact as it
/// will be (`target`, normalised). `acting` becomes `updated_by` when it is an amoCRM id.
pub fn contact_patch(
    target: &Contact,
    changed: &Map<String, Value>,
    acting: &UserId,
) -> Result<Value, CrmError> {
    let mut body = Map::new();
    let mut custom = Vec::new();
    for key in changed.keys() {
        match key.as_str() {
            "first_name" | "last_name" => {
                body.insert("first_name".into(), json!(target.first_name));
                body.insert("last_name".into(), json!(target.last_name));
                body.insert("name".into(), json!(target.display_name()));
            }
            "title" => {
                let values = if target.title.is_empty() {
                    Vec::new()
                } else {
                    vec![json!({"value": target.title})]
                };
                custom.push(field_values("POSITION", values));
            }
            "emails" => custom.push(field_values(
                "EMAIL",
                target
                    .emails
                    .iter()
                    .map(|e| match email_code(&e.label) {
                        Some(code) => json!({"value": e.address, "enum_code": code}),
                        None => json!({"value": e.address}),
                    })
                    .collect(),
            )),
            "phones" => custom.push(field_values(
                "PHONE",
                target
                    .phones
                    .iter()
                    .map(|p| match phone_code(&p.label) {
                        Some(code) => json!({"value": p.number, "enum_code": code}),
                        None => json!({"value": p.number}),
                    })
                    .collect(),
            )),
            "addresses" if !target.addresses.is_empty() => {
                return Err(refused("a contact's postal address"))
            }
            "notes" if !target.notes.is_empty() => return Err(refused("a contact's notes")),
            "addresses" | "notes" => {}
            other => {
                return Err(CrmError::Refused(format!(
                    "field {other:?} of a contact cannot be written back"
                )))
            }
        }
    }
    if !custom.is_empty() {
        body.insert("custom_fields_values".into(), Value::Array(custom));
    }
    add_updated_by(&mut body, acting);
    Ok(Value::Object(body))
}

fn add_updated_by(body: &mut Map<String, Value>, acting: &UserId) {
    if let Ok(id) = acting.as_str().parse::<i64>() {
        if id > 0 && !body.is_empty() {
            body.insert("updated_by".into(), json!(id));
        }
    }
}

/// The `PATCH api/v4/companies/{id}` body.
pub fn company_patch(
    target: &Organization,
    changed: &Map<String, Value>,
    acting: &UserId,
) -> Result<Value, CrmError> {
    let mut body = Map::new();
    for key in changed.keys() {
        match key.as_str() {
            "name" => {
                body.insert("name".into(), json!(target.name));
            }
            other => {
                return Err(CrmError::Refused(format!(
                    "field {other:?} of an organization cannot be written back"
                )))
            }
        }
    }
    add_updated_by(&mut body, acting);
    Ok(Value::Object(body))
}

/// The `PATCH api/v4/tasks/{id}` body: title → `text`; start/end (in the event's zone) →
/// `complete_till` and `duration`.
pub fn event_patch(
    target: &Event,
    changed: &Map<String, Value>,
    acting: &UserId,
) -> Result<Value, CrmError> {
    let mut body = Map::new();
    let mut times = false;
    for key in changed.keys() {
        match key.as_str() {
            "title" => {
                body.insert("text".into(), json!(target.title));
            }
            "start" | "end" | "time_zone" => times = true,
            "description" if !target.description.is_empty() => {
                return Err(refused("an event's description"))
            }
            "location" if !target.location.is_empty() => {
                return Err(refused("an event's location"))
            }
            "recurrence" if !target.recurrence.is_empty() => {
                return Err(refused("a repeating event (amoCRM tasks do not repeat)"))
            }
            "all_day" if target.all_day => return Err(refused("an all-day event")),
            "description" | "location" | "recurrence" | "all_day" => {}
            other => {
                return Err(CrmError::Refused(format!(
                    "field {other:?} of an event cannot be written back"
                )))
            }
        }
    }
    if times {
        let zone: Tz = target
            .time_zone
            .parse()
            .map_err(|_| CrmError::Invalid(format!("unknown time zone {:?}", target.time_zone)))?;
        let instant = |t: EventTime, which: &str| match t {
            EventTime::DateTime(local) => zone
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| {
                    CrmError::Invalid(format!("{which} {local} does not exist in {zone}"))
                }),
            EventTime::Date(_) => Err(refused("an all-day event")),
        };
        let start = instant(target.start, "start")?;
        let end = instant(target.end, "end")?;
        body.insert("complete_till".into(), json!(start.timestamp()));
        body.insert("duration".into(), json!((end - start).num_seconds().max(0)));
    }
    add_updated_by(&mut body, acting);
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::amocrm::api::{ApiRights, ApiTaskRights};

    fn rights(view: &str, edit: &str, delete: &str, export: &str) -> ApiEntityRights {
        ApiEntityRights {
            view: Some(view.into()),
            edit: Some(edit.into()),
            add: Some("A".into()),
            delete: Some(delete.into()),
            export: Some(export.into()),
        }
    }

    #[test]
    fn letters_map_onto_scopes_with_amocrms_dependencies() {
        let p = entity_permissions(&rights("A", "G", "M", "A"), true);
        assert!(p.read && p.edit && p.delete && p.export && p.create);
        assert_eq!(p.scope.read, Some(ScopeLevel::All));
        assert_eq!(p.scope.edit, Some(ScopeLevel::Team));
        assert_eq!(p.scope.delete, Some(ScopeLevel::Own));
        // edit wider than view is narrowed to view; delete to edit.
        let p = entity_permissions(&rights("M", "A", "A", "A"), true);
        assert_eq!(p.scope.edit, Some(ScopeLevel::Own));
        assert_eq!(p.scope.delete, Some(ScopeLevel::Own));
        assert_eq!(p.scope.read, Some(ScopeLevel::Own));
        // view D: nothing at all.
        let p = entity_permissions(&rights("D", "A", "A", "A"), true);
        assert!(!p.read && !p.edit && !p.delete && !p.export);
        // G without a group reaches only the user's own records.
        let p = entity_permissions(&rights("G", "G", "D", "G"), false);
        assert_eq!(p.scope.read, Some(ScopeLevel::Own));
        // Unknown letters are D.
        let p = entity_permissions(&rights("X", "", "D", "A"), true);
        assert!(!p.read);
    }

    #[test]
    fn export_is_the_gate_and_narrows_what_is_read() {
        let closed = entity_permissions(&rights("A", "A", "A", "D"), true);
        assert!(closed.read && !closed.export, "readable, never synced");
        assert_eq!(closed.scope.read, Some(ScopeLevel::All));
        let own = entity_permissions(&rights("A", "A", "A", "M"), true);
        assert!(own.export);
        assert_eq!(own.scope.read, Some(ScopeLevel::Own));
        let team = entity_permissions(&rights("G", "G", "G", "A"), true);
        assert_eq!(team.scope.read, Some(ScopeLevel::Team), "export ≤ view");
    }

    #[test]
    fn tasks_are_read_by_their_responsible_and_as_far_as_edit_reaches() {
        let p = task_permissions(Some("D"), Some("A"), true);
        assert!(p.read && !p.edit && !p.delete);
        assert_eq!(p.scope.read, Some(ScopeLevel::Own));
        let p = task_permissions(Some("G"), Some("M"), true);
        assert_eq!(p.scope.read, Some(ScopeLevel::Team));
        assert_eq!(p.scope.edit, Some(ScopeLevel::Team));
        assert_eq!(p.scope.delete, Some(ScopeLevel::Own));
    }

    fn api_user(admin: bool, active: bool, free: bool, email: &str) -> ApiUser {
        ApiUser {
            id: 7,
            name: Some("Frank".into()),
            email: Some(email.into()),
            rights: ApiRights {
                contacts: Some(rights("M", "M", "D", "A")),
                companies: None,
                tasks: Some(ApiTaskRights {
                    edit: Some("M".into()),
                    delete: Some("D".into()),
                }),
                is_admin: admin,
                is_free: free,
                is_active: active,
                group_id: Some(3),
            },
        }
    }

    #[test]
    fn users_carry_admin_active_and_their_google_account() {
        let domains = vec!["acme.example".to_string()];
        let (u, p) = user(
            &api_user(true, false, false, "Frank@Acme.example"),
            &domains,
        )
        .unwrap();
        assert!(u.admin && !u.active);
        assert_eq!(u.google_account.as_deref(), Some("frank@acme.example"));
        assert_eq!(u.profile.as_ref(), Some(&p.id));
        assert!(p.object(ObjectKind::Contact).read);
        assert!(
            !p.object(ObjectKind::Organization).read,
            "companies: no rights given"
        );
        let (u, _) = user(
            &api_user(false, true, false, "frank@gmail.example"),
            &domains,
        )
        .unwrap();
        assert_eq!(u.google_account, None, "outside the configured domains");
        let (_, p) = user(&api_user(false, true, true, "f@acme.example"), &domains).unwrap();
        assert!(p.objects.is_empty(), "free users get no rights");
    }

    fn api_contact(value: Value) -> ApiContact {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn contacts_map_their_standard_fields() {
        let c = contact(&api_contact(json!({
            "id": 101, "name": "Ada Lovelace", "first_name": "Ada", "last_name": "Lovelace",
            "responsible_user_id": 3, "updated_at": 1790000000,
            "custom_fields_values": [
                {"field_id": 1, "field_code": "POSITION", "values": [{"value": "CTO"}]},
                {"field_id": 2, "field_code": "EMAIL", "values": [{"value": "Ada@Globex.example", "enum_code": "WORK"}]},
                {"field_id": 3, "field_code": "PHONE", "values": [{"value": "+44 20 7946 0000", "enum": "MOB"}]},
                {"field_id": 4, "field_code": null, "values": [{"value": "ignored"}]}
            ],
            "_embedded": {"tags": [{"id": 1, "name": "vip"}], "companies": [{"id": 201}]}
        })))
        .unwrap()
        .unwrap();
        assert_eq!(c.id.as_str(), "101");
        assert_eq!(c.owner.as_str(), "3");
        assert_eq!(c.title, "CTO");
        assert_eq!(c.emails[0].address, "ada@globex.example");
        assert_eq!(c.emails[0].label, "work");
        assert_eq!(c.phones[0].number, "+442079460000");
        assert_eq!(c.phones[0].label, "mobile");
        assert_eq!(c.organization.unwrap().as_str(), "201");
        assert_eq!(c.tags, vec!["vip"]);
        assert_eq!(c.updated_at.unwrap().timestamp(), 1_790_000_000);
        // Only a name: it becomes the first name.
        let n = contact(&api_contact(
            json!({"id": 5, "name": "Globex desk", "first_name": "",
            "last_name": "", "responsible_user_id": 3}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(n.first_name, "Globex desk");
        // Deleted, or unreadable.
        assert!(contact(&api_contact(
            json!({"id": 6, "responsible_user_id": 3, "is_deleted": true})
        ))
        .unwrap()
        .is_none());
        let bad = contact(&api_contact(json!({"id": 7, "responsible_user_id": 3,
            "custom_fields_values": [{"field_code": "EMAIL", "values": [{"value": "not an address"}]}]})))
        .unwrap_err();
        assert!(bad.contains("emails[0]"), "{bad}");
        assert!(contact(&api_contact(json!({"id": -1, "responsible_user_id": 3}))).is_err());
    }

    fn rules() -> EventRules {
        EventRules {
            zone: "Europe/Moscow".parse().unwrap(),
            task_types: vec![1, 2],
            default_seconds: 1800,
        }
    }

    fn api_task(value: Value) -> ApiTask {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn tasks_of_the_synced_types_become_events_in_the_account_zone() {
        // 2026-11-25 11:00 UTC = 14:00 in Moscow.
        let e = event(
            &api_task(
                json!({"id": 301, "responsible_user_id": 3, "entity_id": 104,
                "entity_type": "contacts", "task_type_id": 2, "text": "Demo at Globex",
                "duration": 3600, "complete_till": 1795604400, "updated_at": 1790000000}),
            ),
            &rules(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.title, "Demo at Globex");
        assert_eq!(
            e.start,
            EventTime::DateTime("2026-11-25T14:00:00".parse().unwrap())
        );
        assert_eq!(
            e.end,
            EventTime::DateTime("2026-11-25T15:00:00".parse().unwrap())
        );
        assert_eq!(e.time_zone, "Europe/Moscow");
        assert_eq!(e.links, vec![ParentLink::Contact("104".parse().unwrap())]);
        let short = event(
            &api_task(
                json!({"id": 302, "responsible_user_id": 3, "task_type_id": 1,
                "duration": 0, "complete_till": 1795604400}),
            ),
            &rules(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            short.end,
            EventTime::DateTime("2026-11-25T14:30:00".parse().unwrap())
        );
        assert!(event(
            &api_task(
                json!({"id": 303, "responsible_user_id": 3, "task_type_id": 9,
                "complete_till": 1795604400})
            ),
            &rules()
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn patches_send_only_what_changed_and_refuse_what_amocrm_cannot_hold() {
        let c = contact(&api_contact(
            json!({"id": 101, "first_name": "Ada", "last_name": "L",
            "responsible_user_id": 3}),
        ))
        .unwrap()
        .unwrap();
        let mut target = c.clone();
        target.phones = vec![PhoneNumber {
            number: "+14155550199".into(),
            label: "mobile".into(),
        }];
        let changed = json!({"phones": []}).as_object().unwrap().clone();
        let body = contact_patch(&target, &changed, &"3".parse().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"custom_fields_values": [{"field_code": "PHONE",
                "values": [{"value": "+14155550199", "enum_code": "MOB"}]}], "updated_by": 3})
        );
        let changed = json!({"title": ""}).as_object().unwrap().clone();
        let body = contact_patch(&c, &changed, &"x".parse().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"custom_fields_values": [{"field_code": "POSITION", "values": null}]}),
            "an emptied field is cleared; a non-amoCRM acting user is not named"
        );
        let mut with_notes = c.clone();
        with_notes.notes = "call back".into();
        let changed = json!({"notes": "call back"}).as_object().unwrap().clone();
        assert!(matches!(
            contact_patch(&with_notes, &changed, &"3".parse().unwrap()),
            Err(CrmError::Refused(_))
        ));

        let mut e = event(
            &api_task(
                json!({"id": 301, "responsible_user_id": 3, "task_type_id": 2,
                "duration": 3600, "complete_till": 1795604400}),
            ),
            &rules(),
        )
        .unwrap()
        .unwrap();
        e.start = EventTime::DateTime("2026-11-25T16:00:00".parse().unwrap());
        e.end = EventTime::DateTime("2026-11-25T16:45:00".parse().unwrap());
        let changed = json!({"start": 0, "end": 0}).as_object().unwrap().clone();
        let body = event_patch(&e, &changed, &"3".parse().unwrap()).unwrap();
        assert_eq!(body["complete_till"], json!(1_795_611_600));
        assert_eq!(body["duration"], json!(2700));
        e.description = "agenda".into();
        let changed = json!({"description": "agenda"})
            .as_object()
            .unwrap()
            .clone();
        assert!(matches!(
            event_patch(&e, &changed, &"3".parse().unwrap()),
            Err(CrmError::Refused(_))
        ));
    }
}
