//! People v1: contacts (create/get/update/delete and the batch variants), the
//! `people/me/connections` listing with sync tokens, deleted tombstones, expiry and propagation
//! delay, and contact groups with membership rules.

use chrono::{DateTime, Duration, Utc};
use google_people1::api::{
    BatchCreateContactsRequest, BatchDeleteContactsRequest, BatchUpdateContactsRequest,
    ContactGroup, ContactGroupMembership, ContactGroupMetadata, CreateContactGroupRequest,
    ListConnectionsResponse, ListContactGroupsResponse, Membership,
    ModifyContactGroupMembersRequest, ModifyContactGroupMembersResponse, Person, PersonMetadata,
    Source,
};
use serde_json::{json, Map, Value};

use super::state::{PeopleData, StoredGroup, StoredPerson, UserData};
use super::tokens::{PageToken, SyncToken};
use super::wire::{strip_nulls, ApiError, ApiResponse, Query, RawRequest};
use super::EmulatorSettings;

/// A resolved People v1 endpoint.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PeopleRoute {
    CreateContact,
    Get(String),
    /// `people:batchGet` (at most [`MAX_BATCH_GET`] resource names).
    BatchGet,
    UpdateContact(String),
    DeleteContact(String),
    BatchCreate,
    BatchUpdate,
    BatchDelete,
    ConnectionsList(String),
    GroupsCreate,
    GroupsGet(String),
    GroupsList,
    GroupsDelete(String),
    GroupsModifyMembers(String),
}

/// Route a request path (the part after `/v1/`, percent-decoded).
/// `people:batchGet` takes at most this many `resourceNames` (Google's limit).
pub(crate) const MAX_BATCH_GET: usize = 200;

pub(crate) fn route(method: &str, rest: &str) -> Option<PeopleRoute> {
    use PeopleRoute as R;
    let (path, verb) = match rest.rsplit_once(':') {
        Some((p, v)) if !v.contains('/') => (p, Some(v)),
        _ => (rest, None),
    };
    let segs: Vec<&str> = path.split('/').collect();
    Some(match (method, segs.as_slice(), verb) {
        ("POST", ["people"], Some("createContact")) => R::CreateContact,
        ("POST", ["people"], Some("batchCreateContacts")) => R::BatchCreate,
        ("POST", ["people"], Some("batchUpdateContacts")) => R::BatchUpdate,
        ("POST", ["people"], Some("batchDeleteContacts")) => R::BatchDelete,
        ("GET", ["people"], Some("batchGet")) => R::BatchGet,
        ("GET", ["people", id], None) => R::Get(format!("people/{id}")),
        ("PATCH", ["people", id], Some("updateContact")) => {
            R::UpdateContact(format!("people/{id}"))
        }
        ("DELETE", ["people", id], Some("deleteContact")) => {
            R::DeleteContact(format!("people/{id}"))
        }
        ("GET", ["people", id, "connections"], None) => R::ConnectionsList(format!("people/{id}")),
        ("POST", ["contactGroups"], None) => R::GroupsCreate,
        ("GET", ["contactGroups"], None) => R::GroupsList,
        ("GET", ["contactGroups", id], None) => R::GroupsGet(format!("contactGroups/{id}")),
        ("DELETE", ["contactGroups", id], None) => R::GroupsDelete(format!("contactGroups/{id}")),
        ("POST", ["contactGroups", id, "members"], Some("modify")) => {
            R::GroupsModifyMembers(format!("contactGroups/{id}"))
        }
        _ => return None,
    })
}

impl PeopleRoute {
    pub fn method_id(&self) -> &'static str {
        use PeopleRoute as R;
        match self {
            R::CreateContact => "people.people.createContact",
            R::Get(_) => "people.people.get",
            R::BatchGet => "people.people.getBatchGet",
            R::UpdateContact(_) => "people.people.updateContact",
            R::DeleteContact(_) => "people.people.deleteContact",
            R::BatchCreate => "people.people.batchCreateContacts",
            R::BatchUpdate => "people.people.batchUpdateContacts",
            R::BatchDelete => "people.people.batchDeleteContacts",
            R::ConnectionsList(_) => "people.people.connections.list",
            R::GroupsCreate => "people.contactGroups.create",
            R::GroupsGet(_) => "people.contactGroups.get",
            R::GroupsList => "people.contactGroups.list",
            R::GroupsDelete(_) => "people.contactGroups.delete",
            R::GroupsModifyMembers(_) => "people.contactGroups.members.modify",
        }
    }

    pub fn is_write(&self) -> bool {
        use PeopleRoute as R;
        !matches!(
            self,
            R::Get(_) | R::BatchGet | R::ConnectionsList(_) | R::GroupsGet(_) | R::GroupsList
        )
    }
}

/// Fields a `personFields`/`readMask` may name.
const PERSON_FIELDS: &[&str] = &[
    "addresses",
    "ageRanges",
    "biographies",
    "birthdays",
    "calendarUrls",
    "clientData",
    "coverPhotos",
    "emailAddresses",
    "events",
    "externalIds",
    "genders",
    "imClients",
    "interests",
    "locales",
    "locations",
    "memberships",
    "metadata",
    "miscKeywords",
    "names",
    "nicknames",
    "occupations",
    "organizations",
    "phoneNumbers",
    "photos",
    "relations",
    "sipAddresses",
    "skills",
    "urls",
    "userDefined",
];

/// Fields an `updatePersonFields`/`updateMask` may name.
const UPDATE_FIELDS: &[&str] = &[
    "addresses",
    "biographies",
    "birthdays",
    "calendarUrls",
    "clientData",
    "emailAddresses",
    "events",
    "externalIds",
    "genders",
    "imClients",
    "interests",
    "locales",
    "locations",
    "memberships",
    "miscKeywords",
    "names",
    "nicknames",
    "occupations",
    "organizations",
    "phoneNumbers",
    "relations",
    "sipAddresses",
    "urls",
    "userDefined",
];

/// Fields that take at most one value on a contact.
const SINGLETON_FIELDS: &[&str] = &["names", "biographies", "birthdays", "genders"];

/// System groups that may receive members.
const ASSIGNABLE_SYSTEM_GROUPS: &[&str] = &["contactGroups/myContacts", "contactGroups/starred"];

const MY_CONTACTS: &str = "contactGroups/myContacts";

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "badRequest", message).with_status("INVALID_ARGUMENT")
}

fn failed_precondition(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "failedPrecondition", message).with_status("FAILED_PRECONDITION")
}

fn parse_body<T: serde::de::DeserializeOwned>(req: &RawRequest) -> Result<T, ApiError> {
    let body: &[u8] = if req.body.is_empty() {
        b"{}"
    } else {
        &req.body
    };
    serde_json::from_slice(body).map_err(|e| invalid(format!("Invalid JSON payload received. {e}")))
}

/// Parse a comma-separated field mask against the allowed names.
fn parse_mask(
    raw: Option<&str>,
    name: &str,
    allowed: &[&str],
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let part = part.strip_prefix("person.").unwrap_or(part);
        if !allowed.contains(&part) {
            return Err(invalid(format!(
                "Invalid {name} mask path: \"{part}\". Valid paths are documented at https://developers.google.com/people/api/rest/v1/people/get."
            )));
        }
        out.push(part.to_string());
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(out))
}

fn required_mask(raw: Option<&str>, name: &str, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    parse_mask(raw, name, allowed)?.ok_or_else(|| {
        invalid(format!(
            "{name} mask is required. Please specify one or more valid paths. Valid paths are documented at https://developers.google.com/people/api/rest/v1/people/get."
        ))
    })
}

fn to_value(person: &Person) -> Value {
    let mut v = serde_json::to_value(person).unwrap_or(Value::Null);
    strip_nulls(&mut v);
    v
}

fn from_value(v: Value) -> Result<Person, ApiError> {
    serde_json::from_value(v).map_err(|e| invalid(format!("Invalid person: {e}")))
}

/// The person as a reader with this field mask sees it (`None` = all fields).
fn masked(person: &Person, fields: Option<&[String]>) -> Value {
    let full = to_value(person);
    let Some(fields) = fields else {
        return full;
    };
    let mut out = Map::new();
    if let Value::Object(map) = full {
        for (k, v) in map {
            if k == "resourceName" || k == "etag" || fields.contains(&k) {
                out.insert(k, v);
            }
        }
    }
    Value::Object(out)
}

fn memberships_of(person: &Person) -> Vec<String> {
    person
        .memberships
        .iter()
        .flatten()
        .filter_map(|m| {
            m.contact_group_membership
                .as_ref()
                .and_then(|c| c.contact_group_resource_name.clone())
        })
        .collect()
}

fn membership(group: &str) -> Membership {
    Membership {
        contact_group_membership: Some(ContactGroupMembership {
            contact_group_id: group.strip_prefix("contactGroups/").map(str::to_string),
            contact_group_resource_name: Some(group.to_string()),
        }),
        ..Default::default()
    }
}

fn set_memberships(person: &mut Person, groups: &[String]) {
    person.memberships = Some(groups.iter().map(|g| membership(g)).collect());
}

/// Check the contents a client sent for a contact (singletons, memberships).
fn validate_person(people: &PeopleData, person: &Person) -> Result<(), ApiError> {
    let v = to_value(person);
    for field in SINGLETON_FIELDS {
        if v.get(*field)
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1)
        {
            return Err(invalid(format!(
                "Invalid person.{field}: only one value is allowed for this singleton field."
            )));
        }
    }
    for m in person.memberships.iter().flatten() {
        let Some(group) = m.contact_group_membership.as_ref().and_then(|c| {
            c.contact_group_resource_name.clone().or_else(|| {
                c.contact_group_id
                    .as_ref()
                    .map(|id| format!("contactGroups/{id}"))
            })
        }) else {
            return Err(invalid("Membership must name a contact group."));
        };
        let assignable = ASSIGNABLE_SYSTEM_GROUPS.contains(&group.as_str())
            || people.groups.get(&group).is_some_and(|g| {
                !g.deleted && g.group.group_type.as_deref() == Some("USER_CONTACT_GROUP")
            });
        if !assignable {
            return Err(invalid(format!(
                "Invalid contact group resource name: {group}"
            )));
        }
    }
    Ok(())
}

/// Normalise memberships to resource-name form (`contactGroupId` → resource name).
fn normalised_groups(person: &Person) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for m in person.memberships.iter().flatten() {
        if let Some(c) = &m.contact_group_membership {
            let name = c.contact_group_resource_name.clone().or_else(|| {
                c.contact_group_id
                    .as_ref()
                    .map(|id| format!("contactGroups/{id}"))
            });
            if let Some(name) = name {
                if !groups.contains(&name) {
                    groups.push(name);
                }
            }
        }
    }
    groups
}

fn new_resource_name(user: &mut UserData) -> String {
    let n = user.bump();
    let mixed = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 1) % 9_000_000_000_000_000_000;
    format!("people/c{}", 1_000_000_000_000_000_000u64 + mixed)
}

/// When a People write happens, and how long it stays invisible to listings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub now: DateTime<Utc>,
    /// The propagation delay in force.
    pub delay: Duration,
}

impl Stamp {
    pub fn new(now: DateTime<Utc>, settings: &EmulatorSettings) -> Stamp {
        Stamp {
            now,
            delay: Duration::milliseconds(
                i64::try_from(settings.people_propagation_delay_ms).unwrap_or(i64::MAX / 2),
            ),
        }
    }
}

/// The versions of a contact a listing may still have to show once `previous` is replaced
/// at `at`: `previous` and its own earlier versions, oldest first, without those a later
/// version already visible at `at` supersedes (listings only move forward in time). With no
/// propagation delay, none.
fn earlier_versions(previous: Option<StoredPerson>, at: Stamp) -> Vec<StoredPerson> {
    let Some(mut previous) = previous else {
        return Vec::new();
    };
    if at.delay <= Duration::zero() {
        return Vec::new();
    }
    let mut versions = std::mem::take(&mut previous.earlier);
    versions.push(previous);
    let cutoff = at.now - at.delay;
    if let Some(newest_visible) = versions.iter().rposition(|v| v.changed_at <= cutoff) {
        versions.drain(..newest_visible);
    }
    versions
}

/// Stamp server fields after a write and record the change.
fn commit_person(
    user: &mut UserData,
    resource_name: &str,
    mut person: Person,
    at: Stamp,
    deleted: bool,
) -> Person {
    let etag = user.next_people_etag();
    let source_etag = user.next_people_etag();
    let source_id = format!("{:x}", user.next_id.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let previous = person
        .metadata
        .as_ref()
        .and_then(|m| m.previous_resource_names.clone());
    let source_id = person
        .metadata
        .as_ref()
        .and_then(|m| m.sources.as_ref())
        .and_then(|s| s.first())
        .and_then(|s| s.id.clone())
        .unwrap_or(source_id);
    person.resource_name = Some(resource_name.to_string());
    person.etag = Some(etag);
    person.metadata = Some(PersonMetadata {
        sources: Some(vec![Source {
            type_: Some("CONTACT".into()),
            id: Some(source_id),
            etag: Some(source_etag),
            update_time: Some(at.now),
            profile_metadata: None,
        }]),
        object_type: Some("PERSON".into()),
        previous_resource_names: previous,
        deleted: deleted.then_some(true),
        linked_people_resource_names: None,
    });
    let people = &mut user.people;
    people.seq += 1;
    let earlier = earlier_versions(people.contacts.remove(resource_name), at);
    people.contacts.insert(
        resource_name.to_string(),
        StoredPerson {
            person: person.clone(),
            seq: people.seq,
            changed_at: at.now,
            deleted,
            earlier,
        },
    );
    person
}

/// What clients see of a person outside sync listings (`previousResourceNames` is only
/// populated in `connections.list` with a sync token, as Google documents).
fn public_view(person: &Person) -> Person {
    let mut p = person.clone();
    if let Some(m) = p.metadata.as_mut() {
        m.previous_resource_names = None;
    }
    p
}

fn live_contact<'a>(people: &'a PeopleData, name: &str) -> Result<&'a StoredPerson, ApiError> {
    people
        .contacts
        .get(name)
        .filter(|c| !c.deleted)
        .ok_or_else(ApiError::people_not_found)
}

/// Execute a routed People call for `user`.
pub(crate) fn execute(
    user: &mut UserData,
    settings: &EmulatorSettings,
    now: DateTime<Utc>,
    route: &PeopleRoute,
    req: &RawRequest,
) -> Result<ApiResponse, ApiError> {
    use PeopleRoute as R;
    let q = &req.query;
    let at = Stamp::new(now, settings);
    match route {
        R::CreateContact => {
            let fields = parse_mask(q.get("personFields"), "personFields", PERSON_FIELDS)?;
            let person: Person = parse_body(req)?;
            let created = create_contact(user, person, at)?;
            Ok(ApiResponse::json_value(
                200,
                &masked(&public_view(&created), fields.as_deref()),
            ))
        }
        R::Get(name) => {
            let fields = required_mask(q.get("personFields"), "personFields", PERSON_FIELDS)?;
            if name == "people/me" {
                return Ok(ApiResponse::json_value(200, &profile(user, &fields)));
            }
            let stored = live_contact(&user.people, name)?;
            Ok(ApiResponse::json_value(
                200,
                &masked(&public_view(&stored.person), Some(&fields)),
            ))
        }
        R::BatchGet => {
            let fields = required_mask(q.get("personFields"), "personFields", PERSON_FIELDS)?;
            let names = q.all("resourceNames");
            if names.is_empty() || names.len() > MAX_BATCH_GET {
                return Err(invalid(format!(
                    "resourceNames must name between 1 and {MAX_BATCH_GET} people."
                )));
            }
            let responses: Vec<Value> = names
                .iter()
                .map(|name| match live_contact(&user.people, name) {
                    Ok(stored) => json!({
                        "requestedResourceName": name,
                        "person": masked(&public_view(&stored.person), Some(&fields)),
                        "status": {},
                    }),
                    Err(_) => json!({
                        "requestedResourceName": name,
                        "status": {"code": 5, "message": "Requested entity was not found."},
                    }),
                })
                .collect();
            Ok(ApiResponse::json_value(
                200,
                &json!({"responses": responses}),
            ))
        }
        R::UpdateContact(name) => {
            let update = required_mask(
                q.get("updatePersonFields"),
                "updatePersonFields",
                UPDATE_FIELDS,
            )?;
            let fields = parse_mask(q.get("personFields"), "personFields", PERSON_FIELDS)?;
            let body: Person = parse_body(req)?;
            let updated = update_contact(user, name, body, &update, at)?;
            Ok(ApiResponse::json_value(
                200,
                &masked(&public_view(&updated), fields.as_deref()),
            ))
        }
        R::DeleteContact(name) => {
            delete_contact(user, name, at)?;
            Ok(ApiResponse::json_value(200, &json!({})))
        }
        R::BatchCreate => batch_create(user, req, at),
        R::BatchUpdate => batch_update(user, req, at),
        R::BatchDelete => batch_delete(user, req, at),
        R::ConnectionsList(name) => {
            if name != "people/me" {
                return Err(invalid("Only people/me is supported for connections."));
            }
            list_connections(user, settings, now, q)
        }
        R::GroupsCreate => create_group(user, req, now),
        R::GroupsGet(name) => get_group(user, name, q),
        R::GroupsList => list_groups(user, q),
        R::GroupsDelete(name) => delete_group(user, name, q, at),
        R::GroupsModifyMembers(name) => modify_members(user, name, req, at),
    }
}

fn profile(user: &UserData, fields: &[String]) -> Value {
    let person = Person {
        resource_name: Some("people/me".into()),
        etag: Some("%EgUBAi43PRoEAQIFByIMemulatorProfile".into()),
        email_addresses: Some(vec![google_people1::api::EmailAddress {
            value: Some(user.email.clone()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    masked(&person, Some(fields))
}

fn create_contact(user: &mut UserData, mut person: Person, at: Stamp) -> Result<Person, ApiError> {
    validate_person(&user.people, &person)?;
    let mut groups = normalised_groups(&person);
    if !groups.iter().any(|g| g == MY_CONTACTS) {
        groups.insert(0, MY_CONTACTS.to_string());
    }
    set_memberships(&mut person, &groups);
    person.metadata = None;
    let name = new_resource_name(user);
    Ok(commit_person(user, &name, person, at, false))
}

fn check_etag(current: &Person, body: &Person) -> Result<(), ApiError> {
    let current_source = current
        .metadata
        .as_ref()
        .and_then(|m| m.sources.as_ref())
        .and_then(|s| s.first())
        .and_then(|s| s.etag.clone());
    let body_source = body
        .metadata
        .as_ref()
        .and_then(|m| m.sources.as_ref())
        .and_then(|s| {
            s.iter()
                .find(|s| s.type_.as_deref().is_none_or(|t| t == "CONTACT"))
        })
        .and_then(|s| s.etag.clone());
    match (&body.etag, &body_source) {
        (None, None) => Err(invalid(
            "Request must set person.etag or person.metadata.sources.etag for the source that is being updated.",
        )),
        (Some(e), _) if Some(e) != current.etag.as_ref() => Err(failed_precondition(
            "Request person.etag is different than the current person.etag. Clear local cache and get the latest person.",
        )),
        (_, Some(s)) if Some(s) != current_source.as_ref() => Err(failed_precondition(
            "Request person.metadata.sources.etag is different than the current person.metadata.sources.etag. Clear local cache and get the latest person.",
        )),
        _ => Ok(()),
    }
}

/// Validate an update against the current contact and produce the new contact (not stored).
fn prepare_update(
    people: &PeopleData,
    name: &str,
    body: &Person,
    update: &[String],
) -> Result<Person, ApiError> {
    let current = live_contact(people, name)?;
    if let Some(rn) = &body.resource_name {
        if rn != name {
            return Err(invalid("person.resourceName does not match the request."));
        }
    }
    check_etag(&current.person, body)?;
    validate_person(people, body)?;
    let mut merged = to_value(&current.person);
    let incoming = to_value(body);
    if let (Value::Object(m), Value::Object(i)) = (&mut merged, &incoming) {
        for field in update {
            match i.get(field) {
                Some(v) => {
                    m.insert(field.clone(), v.clone());
                }
                None => {
                    m.remove(field);
                }
            }
        }
    }
    let mut next = from_value(merged)?;
    if update.iter().any(|f| f == "memberships") {
        let groups = normalised_groups(&next);
        if groups.is_empty() {
            return Err(invalid(
                "A contact must keep at least one contact group membership.",
            ));
        }
        set_memberships(&mut next, &groups);
    }
    Ok(next)
}

fn update_contact(
    user: &mut UserData,
    name: &str,
    body: Person,
    update: &[String],
    at: Stamp,
) -> Result<Person, ApiError> {
    let next = prepare_update(&user.people, name, &body, update)?;
    Ok(commit_person(user, name, next, at, false))
}

fn delete_contact(user: &mut UserData, name: &str, at: Stamp) -> Result<(), ApiError> {
    let current = live_contact(&user.people, name)?.person.clone();
    let tombstone = Person {
        metadata: current.metadata.clone(),
        ..Default::default()
    };
    commit_person(user, name, tombstone, at, true);
    Ok(())
}

fn batch_create(user: &mut UserData, req: &RawRequest, at: Stamp) -> Result<ApiResponse, ApiError> {
    let body: BatchCreateContactsRequest = parse_body(req)?;
    let read_mask = body.read_mask.as_ref().map(|m| m.to_string());
    let fields = required_mask(read_mask.as_deref(), "readMask", PERSON_FIELDS)?;
    let contacts = body.contacts.unwrap_or_default();
    if contacts.is_empty() {
        return Err(invalid("contacts must not be empty."));
    }
    if contacts.len() > 200 {
        return Err(invalid(
            "Too many contacts in the request: at most 200 are allowed.",
        ));
    }
    let persons: Vec<Person> = contacts
        .into_iter()
        .map(|c| c.contact_person.unwrap_or_default())
        .collect();
    for p in &persons {
        validate_person(&user.people, p)?;
    }
    let mut created = Vec::new();
    for p in persons {
        let person = create_contact(user, p, at)?;
        created.push(json!({
            "person": masked(&public_view(&person), Some(&fields)),
            "httpStatusCode": 200,
        }));
    }
    Ok(ApiResponse::json_value(
        200,
        &json!({ "createdPeople": created }),
    ))
}

fn batch_update(user: &mut UserData, req: &RawRequest, at: Stamp) -> Result<ApiResponse, ApiError> {
    let body: BatchUpdateContactsRequest = parse_body(req)?;
    let update_mask = body.update_mask.as_ref().map(|m| m.to_string());
    let update = required_mask(update_mask.as_deref(), "updateMask", UPDATE_FIELDS)?;
    let read_mask = body.read_mask.as_ref().map(|m| m.to_string());
    let fields = required_mask(read_mask.as_deref(), "readMask", PERSON_FIELDS)?;
    let contacts = body.contacts.unwrap_or_default();
    if contacts.is_empty() {
        return Err(invalid("contacts must not be empty."));
    }
    if contacts.len() > 200 {
        return Err(invalid(
            "Too many contacts in the request: at most 200 are allowed.",
        ));
    }
    let mut prepared = Vec::new();
    let mut names: Vec<&String> = contacts.keys().collect();
    names.sort();
    for name in names {
        let person = &contacts[name];
        prepared.push((
            name.clone(),
            prepare_update(&user.people, name, person, &update)?,
        ));
    }
    let mut results = Map::new();
    for (name, next) in prepared {
        let person = commit_person(user, &name, next, at, false);
        results.insert(
            name.clone(),
            json!({
                "person": masked(&public_view(&person), Some(&fields)),
                "httpStatusCode": 200,
                "requestedResourceName": name,
            }),
        );
    }
    Ok(ApiResponse::json_value(
        200,
        &json!({ "updateResult": results }),
    ))
}

fn batch_delete(user: &mut UserData, req: &RawRequest, at: Stamp) -> Result<ApiResponse, ApiError> {
    let body: BatchDeleteContactsRequest = parse_body(req)?;
    let names = body.resource_names.unwrap_or_default();
    if names.is_empty() {
        return Err(invalid("resourceNames must not be empty."));
    }
    if names.len() > 500 {
        return Err(invalid("Too many resource names: at most 500 are allowed."));
    }
    for name in &names {
        live_contact(&user.people, name)?;
    }
    for name in &names {
        if live_contact(&user.people, name).is_ok() {
            delete_contact(user, name, at)?;
        }
    }
    Ok(ApiResponse::json_value(200, &json!({})))
}

// ---------------------------------------------------------------------------------------------
// connections.list

fn list_connections(
    user: &UserData,
    settings: &EmulatorSettings,
    now: DateTime<Utc>,
    q: &Query,
) -> Result<ApiResponse, ApiError> {
    let fields = required_mask(q.get("personFields"), "personFields", PERSON_FIELDS)?;
    let page_size = match q.int("pageSize")? {
        None | Some(0) => 100usize,
        Some(n) if !(1..=1000).contains(&n) => {
            return Err(invalid("pageSize must be between 1 and 1000, inclusive."))
        }
        Some(n) => usize::try_from(n).unwrap_or(100),
    };
    let sort = q.get("sortOrder").unwrap_or("LAST_MODIFIED_ASCENDING");
    if ![
        "LAST_MODIFIED_ASCENDING",
        "LAST_MODIFIED_DESCENDING",
        "FIRST_NAME_ASCENDING",
        "LAST_NAME_ASCENDING",
    ]
    .contains(&sort)
    {
        return Err(invalid(format!("Invalid value for sortOrder: {sort}")));
    }
    let request_sync_token = q.bool("requestSyncToken")?;
    let fingerprint = q.fingerprint(&["pageToken"]);
    let page = match q.get("pageToken") {
        None => None,
        Some(t) => Some(
            PageToken::decode(t)
                .filter(|p| p.k == "connections")
                .ok_or_else(|| invalid("Page token is not valid."))
                .and_then(|p| {
                    if p.f == fingerprint {
                        Ok(p)
                    } else {
                        Err(invalid(
                            "Parameters provided with the page token must match the first call.",
                        ))
                    }
                })?,
        ),
    };
    let people = &user.people;
    let since = match q.get("syncToken") {
        None => None,
        Some(t) => {
            let token = SyncToken::decode(t)
                .filter(|s| s.k == "people" && s.u == user.email)
                .ok_or_else(|| invalid("Sync token is invalid."))?;
            let too_old = settings.people_sync_token_max_age_secs.is_some_and(|max| {
                now.timestamp_millis() - token.t
                    > i64::try_from(max)
                        .unwrap_or(i64::MAX / 1000)
                        .saturating_mul(1000)
            });
            if token.e != people.sync_epoch || token.q > people.seq || too_old {
                return Err(failed_precondition(
                    "Sync token is expired. Clear local cache and retry call without the sync token.",
                )
                .with_error_info("EXPIRED_SYNC_TOKEN"));
            }
            Some(token.q)
        }
    };
    let incremental = since.is_some();
    // Full listings and incremental ones alike see the people list as it was before the
    // writes that are still propagating: each contact in its newest visible version.
    let snap = match &page {
        Some(p) => p.n,
        None => visible_seq(people, since.unwrap_or(0), settings, now),
    };
    let visible: Vec<&StoredPerson> = people
        .contacts
        .values()
        .filter_map(|c| version_at(c, snap))
        .collect();
    let mut items: Vec<&StoredPerson> = visible
        .iter()
        .copied()
        .filter(|c| c.seq > since.unwrap_or(0) && (incremental || !c.deleted))
        .collect();
    let total = visible.iter().filter(|c| !c.deleted).count();
    let mut out = ListConnectionsResponse::default();
    let mut connections = Vec::new();
    let by_seq = sort == "LAST_MODIFIED_ASCENDING";
    let next_page;
    if by_seq {
        let after = page.as_ref().map_or(0, |p| p.a);
        items.retain(|c| c.seq > after);
        items.sort_by_key(|c| c.seq);
        let more = items.len() > page_size;
        items.truncate(page_size);
        next_page = more.then(|| items.last().map_or(after, |c| c.seq));
        for c in &items {
            connections.push(render_listed(c, &fields, incremental));
        }
    } else {
        match sort {
            "LAST_MODIFIED_DESCENDING" => items.sort_by_key(|c| std::cmp::Reverse(c.seq)),
            "FIRST_NAME_ASCENDING" => items.sort_by_key(|c| name_key(&c.person, true)),
            _ => items.sort_by_key(|c| name_key(&c.person, false)),
        }
        let offset = page.as_ref().map_or(0, |p| p.a) as usize;
        let start = offset.min(items.len());
        let end = (start + page_size).min(items.len());
        for c in &items[start..end] {
            connections.push(render_listed(c, &fields, incremental));
        }
        next_page = (end < items.len()).then_some(end as u64);
    }
    let started = page.as_ref().map_or(now.timestamp_millis(), |p| p.t);
    if let Some(a) = next_page {
        out.next_page_token = Some(
            PageToken {
                k: "connections".into(),
                f: fingerprint,
                a,
                n: snap,
                since,
                t: started,
            }
            .encode(),
        );
    } else if request_sync_token {
        out.next_sync_token = Some(
            SyncToken {
                k: "people".into(),
                u: user.email.clone(),
                s: String::new(),
                e: people.sync_epoch,
                q: snap,
                t: now.timestamp_millis(),
            }
            .encode(),
        );
    }
    let total = i32::try_from(total).unwrap_or(i32::MAX);
    out.total_items = Some(total);
    out.total_people = Some(total);
    let mut v = serde_json::to_value(&out).unwrap_or(Value::Null);
    strip_nulls(&mut v);
    if !connections.is_empty() {
        v["connections"] = Value::Array(connections);
    }
    Ok(ApiResponse::json_value(200, &v))
}

fn name_key(p: &Person, first: bool) -> String {
    p.names
        .as_ref()
        .and_then(|n| n.first())
        .and_then(|n| {
            if first {
                n.given_name.clone()
            } else {
                n.family_name.clone()
            }
        })
        .unwrap_or_default()
        .to_lowercase()
}

/// The newest version of `contact` a listing with snapshot `snap` shows, if any.
fn version_at(contact: &StoredPerson, snap: u64) -> Option<&StoredPerson> {
    if contact.seq <= snap {
        return Some(contact);
    }
    contact.earlier.iter().rev().find(|v| v.seq <= snap)
}

/// Highest change sequence a listing may see: changes younger than the propagation delay
/// (and everything after them) are not visible yet.
fn visible_seq(
    people: &PeopleData,
    since: u64,
    settings: &EmulatorSettings,
    now: DateTime<Utc>,
) -> u64 {
    if settings.people_propagation_delay_ms == 0 {
        return people.seq;
    }
    let delay = Duration::milliseconds(
        i64::try_from(settings.people_propagation_delay_ms).unwrap_or(i64::MAX / 2),
    );
    let cutoff = now - delay;
    people
        .contacts
        .values()
        .filter(|c| c.seq > since && c.changed_at > cutoff)
        .map(|c| c.seq - 1)
        .min()
        .unwrap_or(people.seq)
}

fn render_listed(c: &StoredPerson, fields: &[String], incremental: bool) -> Value {
    if c.deleted {
        return json!({
            "resourceName": c.person.resource_name,
            "etag": c.person.etag,
            "metadata": {"deleted": true, "objectType": "PERSON"},
        });
    }
    let mut person = c.person.clone();
    if !incremental {
        person = public_view(&person);
    }
    let mut v = masked(&person, Some(fields));
    // previousResourceNames are reported in sync listings even without the metadata mask.
    if incremental {
        if let Some(prev) = c
            .person
            .metadata
            .as_ref()
            .and_then(|m| m.previous_resource_names.clone())
        {
            if v.get("metadata").is_none() {
                v["metadata"] = json!({});
            }
            v["metadata"]["previousResourceNames"] = json!(prev);
        }
    }
    v
}

/// Invalidate every People sync token of `user`.
pub(crate) fn expire_sync_tokens(user: &mut UserData) {
    user.people.sync_epoch += 1;
}

/// Give a contact a new resource name (as Google does when linking a contact to a profile).
pub(crate) fn rename_contact(
    user: &mut UserData,
    name: &str,
    at: Stamp,
) -> Result<String, ApiError> {
    let stored = live_contact(&user.people, name)?.clone();
    user.people.contacts.remove(name);
    let new_name = new_resource_name(user);
    let mut person = stored.person.clone();
    // Until the propagation delay has passed, listings still show the contact as it was
    // (under its old name): its versions move to the new name.
    user.people.contacts.insert(new_name.clone(), stored);
    let meta = person.metadata.get_or_insert_with(PersonMetadata::default);
    let mut previous = meta.previous_resource_names.clone().unwrap_or_default();
    previous.push(name.to_string());
    meta.previous_resource_names = Some(previous);
    commit_person(user, &new_name, person, at, false);
    Ok(new_name)
}

// ---------------------------------------------------------------------------------------------
// Contact groups

fn member_names(people: &PeopleData, group: &str) -> Vec<String> {
    people
        .contacts
        .iter()
        .filter(|(_, c)| !c.deleted && memberships_of(&c.person).iter().any(|g| g == group))
        .map(|(n, _)| n.clone())
        .collect()
}

fn render_group(
    people: &PeopleData,
    g: &StoredGroup,
    max_members: usize,
    fields: Option<&[String]>,
) -> Value {
    let name = g.group.resource_name.clone().unwrap_or_default();
    let members = member_names(people, &name);
    let mut group = g.group.clone();
    group.member_count =
        (!members.is_empty()).then(|| i32::try_from(members.len()).unwrap_or(i32::MAX));
    if max_members > 0 && !members.is_empty() {
        group.member_resource_names = Some(members.into_iter().take(max_members).collect());
    }
    let mut v = serde_json::to_value(&group).unwrap_or(Value::Null);
    strip_nulls(&mut v);
    if let (Some(fields), Value::Object(map)) = (fields, &mut v) {
        map.retain(|k, _| {
            k == "resourceName"
                || k == "etag"
                || k == "formattedName"
                || k == "memberResourceNames"
                || fields.iter().any(|f| f == k)
        });
    }
    v
}

const GROUP_FIELDS: &[&str] = &["clientData", "groupType", "memberCount", "metadata", "name"];

/// What `contactGroups.get`/`list` return without `groupFields` (Google: "defaults to
/// metadata, groupType, memberCount, and name"; `clientData` only when asked for).
fn group_fields_or_default(fields: Option<Vec<String>>) -> Vec<String> {
    fields.filter(|f| !f.is_empty()).unwrap_or_else(|| {
        ["metadata", "groupType", "memberCount", "name"]
            .map(str::to_owned)
            .to_vec()
    })
}

fn create_group(
    user: &mut UserData,
    req: &RawRequest,
    now: DateTime<Utc>,
) -> Result<ApiResponse, ApiError> {
    let body: CreateContactGroupRequest = parse_body(req)?;
    let requested = body.contact_group.unwrap_or_default();
    let name = requested
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| invalid("contactGroup.name is required."))?;
    let duplicate = user.people.groups.values().any(|g| {
        !g.deleted
            && (g.group.name.as_deref() == Some(name.as_str())
                || g.group.formatted_name.as_deref() == Some(name.as_str()))
    });
    if duplicate {
        return Err(
            ApiError::new(409, "duplicate", "Contact group name already exists.")
                .with_status("ALREADY_EXISTS"),
        );
    }
    let n = user.bump();
    let resource_name = format!(
        "contactGroups/{:x}",
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 8
    );
    let etag = user.next_people_etag();
    user.people.group_seq += 1;
    let group = ContactGroup {
        resource_name: Some(resource_name.clone()),
        etag: Some(etag),
        name: Some(name.clone()),
        formatted_name: Some(name),
        group_type: Some("USER_CONTACT_GROUP".into()),
        client_data: requested.client_data,
        metadata: Some(ContactGroupMetadata {
            update_time: Some(now),
            deleted: None,
        }),
        ..Default::default()
    };
    let stored = StoredGroup {
        group,
        seq: user.people.group_seq,
        deleted: false,
    };
    let v = render_group(&user.people, &stored, 0, None);
    user.people.groups.insert(resource_name, stored);
    Ok(ApiResponse::json_value(200, &v))
}

fn live_group<'a>(people: &'a PeopleData, name: &str) -> Result<&'a StoredGroup, ApiError> {
    people
        .groups
        .get(name)
        .filter(|g| !g.deleted)
        .ok_or_else(ApiError::people_not_found)
}

fn get_group(user: &UserData, name: &str, q: &Query) -> Result<ApiResponse, ApiError> {
    let fields = Some(group_fields_or_default(parse_mask(
        q.get("groupFields"),
        "groupFields",
        GROUP_FIELDS,
    )?));
    let max_members = q.int("maxMembers")?.unwrap_or(0).max(0);
    let g = live_group(&user.people, name)?;
    Ok(ApiResponse::json_value(
        200,
        &render_group(
            &user.people,
            g,
            usize::try_from(max_members).unwrap_or(0),
            fields.as_deref(),
        ),
    ))
}

fn list_groups(user: &UserData, q: &Query) -> Result<ApiResponse, ApiError> {
    let fields = Some(group_fields_or_default(parse_mask(
        q.get("groupFields"),
        "groupFields",
        GROUP_FIELDS,
    )?));
    let page_size = match q.int("pageSize")? {
        None | Some(0) => 30usize,
        Some(n) if !(1..=1000).contains(&n) => {
            return Err(invalid("pageSize must be between 1 and 1000, inclusive."))
        }
        Some(n) => usize::try_from(n).unwrap_or(30),
    };
    let people = &user.people;
    let since = match q.get("syncToken") {
        None => None,
        Some(t) => {
            let token = SyncToken::decode(t)
                .filter(|s| s.k == "groups" && s.u == user.email)
                .ok_or_else(|| invalid("Sync token is invalid."))?;
            if token.e != people.sync_epoch {
                return Err(failed_precondition(
                    "Sync token is expired. Clear local cache and retry call without the sync token.",
                )
                .with_error_info("EXPIRED_SYNC_TOKEN"));
            }
            Some(token.q)
        }
    };
    let fingerprint = q.fingerprint(&["pageToken"]);
    let offset = match q.get("pageToken") {
        None => 0,
        Some(t) => {
            PageToken::decode(t)
                .filter(|p| p.k == "groups" && p.f == fingerprint)
                .ok_or_else(|| invalid("Page token is not valid."))?
                .a as usize
        }
    };
    let groups: Vec<&StoredGroup> = people
        .groups
        .values()
        .filter(|g| match since {
            Some(s) => g.seq > s,
            None => !g.deleted,
        })
        .collect();
    let start = offset.min(groups.len());
    let end = (start + page_size).min(groups.len());
    let items: Vec<Value> = groups[start..end]
        .iter()
        .map(|g| {
            if g.deleted {
                json!({"resourceName": g.group.resource_name, "etag": g.group.etag, "metadata": {"deleted": true}})
            } else {
                render_group(people, g, 0, fields.as_deref())
            }
        })
        .collect();
    let mut out = ListContactGroupsResponse {
        total_items: Some(i32::try_from(groups.len()).unwrap_or(i32::MAX)),
        ..Default::default()
    };
    if end < groups.len() {
        out.next_page_token = Some(
            PageToken {
                k: "groups".into(),
                f: fingerprint,
                a: end as u64,
                n: 0,
                since,
                t: 0,
            }
            .encode(),
        );
    } else {
        out.next_sync_token = Some(
            SyncToken {
                k: "groups".into(),
                u: user.email.clone(),
                s: String::new(),
                e: people.sync_epoch,
                q: people.group_seq,
                t: 0,
            }
            .encode(),
        );
    }
    let mut v = serde_json::to_value(&out).unwrap_or(Value::Null);
    strip_nulls(&mut v);
    if !items.is_empty() {
        v["contactGroups"] = Value::Array(items);
    }
    Ok(ApiResponse::json_value(200, &v))
}

fn delete_group(
    user: &mut UserData,
    name: &str,
    q: &Query,
    at: Stamp,
) -> Result<ApiResponse, ApiError> {
    let delete_contacts = q.bool("deleteContacts")?;
    let g = live_group(&user.people, name)?;
    if g.group.group_type.as_deref() != Some("USER_CONTACT_GROUP") {
        return Err(failed_precondition(
            "System contact groups cannot be deleted.",
        ));
    }
    let members = member_names(&user.people, name);
    for member in members {
        if delete_contacts {
            delete_contact(user, &member, at)?;
        } else {
            let mut person = live_contact(&user.people, &member)?.person.clone();
            let mut groups: Vec<String> = memberships_of(&person)
                .into_iter()
                .filter(|g| g != name)
                .collect();
            if groups.is_empty() {
                groups.push(MY_CONTACTS.to_string());
            }
            set_memberships(&mut person, &groups);
            commit_person(user, &member, person, at, false);
        }
    }
    let etag = user.next_people_etag();
    user.people.group_seq += 1;
    let seq = user.people.group_seq;
    if let Some(g) = user.people.groups.get_mut(name) {
        g.deleted = true;
        g.seq = seq;
        g.group.etag = Some(etag);
    }
    Ok(ApiResponse::json_value(200, &json!({})))
}

fn modify_members(
    user: &mut UserData,
    name: &str,
    req: &RawRequest,
    at: Stamp,
) -> Result<ApiResponse, ApiError> {
    let body: ModifyContactGroupMembersRequest = parse_body(req)?;
    let add = body.resource_names_to_add.unwrap_or_default();
    let remove = body.resource_names_to_remove.unwrap_or_default();
    if add.len() + remove.len() > 1000 {
        return Err(invalid(
            "Too many resource names: at most 1000 adds and removes are allowed.",
        ));
    }
    let g = live_group(&user.people, name)?;
    let assignable = g.group.group_type.as_deref() == Some("USER_CONTACT_GROUP")
        || ASSIGNABLE_SYSTEM_GROUPS.contains(&name);
    if !add.is_empty() && !assignable {
        return Err(failed_precondition(
            "Members cannot be added to this system contact group.",
        ));
    }
    let mut response = ModifyContactGroupMembersResponse::default();
    let mut not_found = Vec::new();
    let mut cannot_remove = Vec::new();
    for member in &add {
        let Ok(stored) = live_contact(&user.people, member) else {
            not_found.push(member.clone());
            continue;
        };
        let mut person = stored.person.clone();
        let mut groups = memberships_of(&person);
        if !groups.iter().any(|x| x == name) {
            groups.push(name.to_string());
            set_memberships(&mut person, &groups);
            commit_person(user, member, person, at, false);
        }
    }
    for member in &remove {
        let Ok(stored) = live_contact(&user.people, member) else {
            not_found.push(member.clone());
            continue;
        };
        let mut person = stored.person.clone();
        let groups = memberships_of(&person);
        if !groups.iter().any(|x| x == name) {
            continue;
        }
        let remaining: Vec<String> = groups.into_iter().filter(|x| x != name).collect();
        if remaining.is_empty() {
            cannot_remove.push(member.clone());
            continue;
        }
        set_memberships(&mut person, &remaining);
        commit_person(user, member, person, at, false);
    }
    if !not_found.is_empty() {
        response.not_found_resource_names = Some(not_found);
    }
    if !cannot_remove.is_empty() {
        response.can_not_remove_last_contact_group_resource_names = Some(cannot_remove);
    }
    Ok(ApiResponse::json(200, &response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve() {
        assert_eq!(
            route("POST", "people:createContact"),
            Some(PeopleRoute::CreateContact)
        );
        assert_eq!(
            route("PATCH", "people/c123:updateContact"),
            Some(PeopleRoute::UpdateContact("people/c123".into()))
        );
        assert_eq!(
            route("GET", "people/me/connections"),
            Some(PeopleRoute::ConnectionsList("people/me".into()))
        );
        assert_eq!(
            route("POST", "contactGroups/abc/members:modify"),
            Some(PeopleRoute::GroupsModifyMembers("contactGroups/abc".into()))
        );
        assert_eq!(route("GET", "people/c1:updateContact"), None);
    }

    #[test]
    fn masks_are_validated() {
        assert!(parse_mask(Some("names,emailAddresses"), "personFields", PERSON_FIELDS).is_ok());
        assert!(parse_mask(Some("names,bogus"), "personFields", PERSON_FIELDS).is_err());
        assert!(required_mask(None, "personFields", PERSON_FIELDS).is_err());
    }
}
