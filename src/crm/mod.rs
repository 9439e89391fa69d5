//! The CRM of record, behind the small `Source` trait.
//!
//! A source hands out a single monotonic change feed over every entity the engine needs —
//! the security model (users, roles, profiles, teams, sharing rules, org-wide sharing) as well
//! as records — so a permission change is a change like any other. Deletions come as
//! tombstones. Write-backs carry the version the engine last saw: a stale version is a
//! [`CrmError::Conflict`], never an overwrite.
//!
//! Adapters: [`sqlite::SqliteCrm`] (the embedded CRM used by the demo, the tests and imports
//! through the org file), and the connectors to hosted CRMs, [`insightly`] (Insightly API
//! v3.1) and [`amocrm`] (amoCRM / Kommo API v4), built on the shared machinery of
//! [`connector`] (HTTP thread, pacing, retries, secrets, the local shadow that serves the
//! feed). [`open_source`] builds the configured one. Every adapter builds what an update
//! makes of a record with [`updated_record`], so all refuse and accept the same fields.

pub mod amocrm;
pub mod connector;
pub mod insightly;
pub mod open;
pub mod orgfile;
pub mod sqlite;

pub use open::open_source;

use crate::model::{
    Contact, CrmId, Event, ObjectKind, OrgSettings, OrgWideSharing, Organization, Profile,
    ProfileId, RecordReaders, RecordRef, Role, RoleId, RuleId, SharingRule, Team, TeamId, User,
    UserId,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Every kind of entity in the change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Org,
    OrgWideSharing,
    User,
    Role,
    Profile,
    Team,
    SharingRule,
    Organization,
    Contact,
    Event,
    /// Delegated mode: who the CRM showed a record to (see [`RecordReaders`]).
    RecordReaders,
}

impl EntityKind {
    pub const ALL: [EntityKind; 11] = [
        EntityKind::Org,
        EntityKind::OrgWideSharing,
        EntityKind::User,
        EntityKind::Role,
        EntityKind::Profile,
        EntityKind::Team,
        EntityKind::SharingRule,
        EntityKind::Organization,
        EntityKind::Contact,
        EntityKind::Event,
        EntityKind::RecordReaders,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Org => "org",
            EntityKind::OrgWideSharing => "org_wide_sharing",
            EntityKind::User => "user",
            EntityKind::Role => "role",
            EntityKind::Profile => "profile",
            EntityKind::Team => "team",
            EntityKind::SharingRule => "sharing_rule",
            EntityKind::Organization => "organization",
            EntityKind::Contact => "contact",
            EntityKind::Event => "event",
            EntityKind::RecordReaders => "record_readers",
        }
    }

    /// Entities of the security model: a change to one may change who can read what.
    pub fn is_security_model(self) -> bool {
        !matches!(
            self,
            EntityKind::Organization | EntityKind::Contact | EntityKind::Event | EntityKind::Org
        )
    }

    pub fn from_object(kind: ObjectKind) -> Self {
        match kind {
            ObjectKind::Contact => EntityKind::Contact,
            ObjectKind::Event => EntityKind::Event,
            ObjectKind::Organization => EntityKind::Organization,
        }
    }

    pub fn as_object(self) -> Option<ObjectKind> {
        match self {
            EntityKind::Contact => Some(ObjectKind::Contact),
            EntityKind::Event => Some(ObjectKind::Event),
            EntityKind::Organization => Some(ObjectKind::Organization),
            _ => None,
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EntityKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown entity kind {s:?}"))
    }
}

/// The id singletons (org settings, org-wide sharing) are stored under.
pub const SINGLETON_ID: &str = "org";

/// One entity, typed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Entity {
    Org(OrgSettings),
    OrgWideSharing(OrgWideSharing),
    User(User),
    Role(Role),
    Profile(Profile),
    Team(Team),
    SharingRule(SharingRule),
    Organization(Organization),
    Contact(Contact),
    Event(Event),
    RecordReaders(RecordReaders),
}

impl Entity {
    pub fn kind(&self) -> EntityKind {
        match self {
            Entity::Org(_) => EntityKind::Org,
            Entity::OrgWideSharing(_) => EntityKind::OrgWideSharing,
            Entity::User(_) => EntityKind::User,
            Entity::Role(_) => EntityKind::Role,
            Entity::Profile(_) => EntityKind::Profile,
            Entity::Team(_) => EntityKind::Team,
            Entity::SharingRule(_) => EntityKind::SharingRule,
            Entity::Organization(_) => EntityKind::Organization,
            Entity::Contact(_) => EntityKind::Contact,
            Entity::Event(_) => EntityKind::Event,
            Entity::RecordReaders(_) => EntityKind::RecordReaders,
        }
    }

    pub fn id(&self) -> String {
        match self {
            Entity::Org(_) | Entity::OrgWideSharing(_) => SINGLETON_ID.to_owned(),
            Entity::User(u) => u.id.to_string(),
            Entity::Role(r) => r.id.to_string(),
            Entity::Profile(p) => p.id.to_string(),
            Entity::Team(t) => t.id.to_string(),
            Entity::SharingRule(r) => r.id.to_string(),
            Entity::Organization(o) => o.id.to_string(),
            Entity::Contact(c) => c.id.to_string(),
            Entity::Event(e) => e.id.to_string(),
            Entity::RecordReaders(r) => r.record.to_string(),
        }
    }

    /// Parses a stored JSON body of the given kind (strictly: unknown keys are errors).
    pub fn from_json(kind: EntityKind, body: &str) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            EntityKind::Org => Entity::Org(serde_json::from_str(body)?),
            EntityKind::OrgWideSharing => Entity::OrgWideSharing(serde_json::from_str(body)?),
            EntityKind::User => Entity::User(serde_json::from_str(body)?),
            EntityKind::Role => Entity::Role(serde_json::from_str(body)?),
            EntityKind::Profile => Entity::Profile(serde_json::from_str(body)?),
            EntityKind::Team => Entity::Team(serde_json::from_str(body)?),
            EntityKind::SharingRule => Entity::SharingRule(serde_json::from_str(body)?),
            EntityKind::Organization => Entity::Organization(serde_json::from_str(body)?),
            EntityKind::Contact => Entity::Contact(serde_json::from_str(body)?),
            EntityKind::Event => Entity::Event(serde_json::from_str(body)?),
            EntityKind::RecordReaders => Entity::RecordReaders(serde_json::from_str(body)?),
        })
    }

    /// The entity without the CRM's change stamp (`updated_at`): what "the content changed"
    /// is decided on, so a stamp that moved without a real change is not a new version.
    pub fn without_stamp(&self) -> Entity {
        let mut copy = self.clone();
        match &mut copy {
            Entity::Contact(c) => c.updated_at = None,
            Entity::Event(e) => e.updated_at = None,
            Entity::Organization(o) => o.updated_at = None,
            _ => {}
        }
        copy
    }

    /// The CRM's change stamp of a record (`updated_at`), if it has one.
    pub fn stamp(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            Entity::Contact(c) => c.updated_at,
            Entity::Event(e) => e.updated_at,
            Entity::Organization(o) => o.updated_at,
            _ => None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A position in a source's change feed: every change with a larger version comes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Cursor(pub i64);

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub version: i64,
    pub kind: EntityKind,
    pub id: String,
    /// `None` for a tombstone (the entity was deleted).
    pub entity: Option<Entity>,
}

/// A row the source could not read; it is skipped and reported, the rest of the feed goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowProblem {
    pub kind: String,
    pub id: String,
    pub version: i64,
    pub error: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CRM row {}:{} (version {}) skipped: {}",
            self.kind, self.id, self.version, self.error
        )
    }
}

/// A page of the change feed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChangeBatch {
    pub changes: Vec<Change>,
    pub problems: Vec<RowProblem>,
    /// Where the next call should continue (covers skipped rows too).
    pub next_cursor: Cursor,
    /// Whether more changes follow `next_cursor` already.
    pub more: bool,
}

/// A change the engine asks the CRM to make on behalf of a user (phone-side edits).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum WriteBack {
    /// Set whitelisted fields of a record the engine saw at `expected_version`.
    Update {
        record: RecordRef,
        expected_version: i64,
        acting_user: UserId,
        fields: serde_json::Map<String, serde_json::Value>,
    },
    /// Create a record owned by the acting user.
    Create {
        acting_user: UserId,
        entity: Box<Entity>,
    },
    /// Delete a record the engine saw at `expected_version`.
    Delete {
        record: RecordRef,
        expected_version: i64,
        acting_user: UserId,
    },
}

/// What a write-back produced: the record's new version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteOutcome {
    pub record: RecordRef,
    pub version: i64,
}

/// Fields a write-back may set, per kind. Ownership, sharing and links are never written
/// from a phone.
pub fn writable_fields(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::Contact => &[
            "first_name",
            "last_name",
            "title",
            "emails",
            "phones",
            "addresses",
            "notes",
        ],
        ObjectKind::Event => &[
            "title",
            "description",
            "location",
            "start",
            "end",
            "time_zone",
            "all_day",
            "recurrence",
        ],
        ObjectKind::Organization => &["name"],
    }
}

/// A record entity normalised for writing (contacts' e-mails and phones, events' zones and
/// times, organisations' names); problems are one [`CrmError::Invalid`] naming each field,
/// and an entity that is not a record is [`CrmError::Refused`].
pub fn normalized_record(entity: Entity) -> Result<Entity, CrmError> {
    let invalid = |list: Vec<(String, crate::model::normalize::NormalizeError)>| {
        CrmError::Invalid(
            list.into_iter()
                .map(|(f, e)| format!("{f}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    Ok(match entity {
        Entity::Contact(c) => Entity::Contact(c.normalized().map_err(invalid)?),
        Entity::Event(e) => Entity::Event(e.normalized().map_err(invalid)?),
        Entity::Organization(o) => Entity::Organization(o.normalized().map_err(invalid)?),
        other => {
            return Err(CrmError::Refused(format!(
                "{} is not a record kind that can be written back",
                other.kind()
            )))
        }
    })
}

/// What `record` becomes when an update sets `fields` on `current` (the record as the
/// source holds it): a field outside [`writable_fields`] is [`CrmError::Refused`], a value
/// that does not read or normalise is [`CrmError::Invalid`]; the result is normalised.
pub fn updated_record(
    record: &RecordRef,
    current: &Entity,
    fields: &serde_json::Map<String, serde_json::Value>,
) -> Result<Entity, CrmError> {
    let allowed = writable_fields(record.kind);
    if let Some(bad) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(CrmError::Refused(format!(
            "field {bad:?} of a {} cannot be written back",
            record.kind
        )));
    }
    let mut value = serde_json::to_value(current)
        .map_err(|e| CrmError::Invalid(format!("{record} is unreadable: {e}")))?;
    if let Some(object) = value.as_object_mut() {
        for (k, v) in fields {
            object.insert(k.clone(), v.clone());
        }
    }
    let merged = Entity::from_json(EntityKind::from_object(record.kind), &value.to_string())
        .map_err(|e| CrmError::Invalid(format!("{record}: {e}")))?;
    normalized_record(merged)
}

/// Errors of a CRM source, with the kinds the engine branches on.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("{0} not found in the CRM")]
    NotFound(RecordRef),
    #[error("{record} changed in the CRM (now version {current}, expected {expected})")]
    Conflict {
        record: RecordRef,
        expected: i64,
        current: i64,
    },
    #[error("write refused: {0}")]
    Refused(String),
    #[error("invalid record: {0}")]
    Invalid(String),
    #[error(transparent)]
    Db(crate::db::DbError),
    /// SQLite busy/locked: another connection held a write transaction too long.
    #[error("the CRM database is busy")]
    Busy(#[source] crate::db::Busy),
    #[error("CRM database: {0}")]
    Sqlite(rusqlite::Error),
    /// A hosted CRM behind a connector: unreachable, refusing the key, out of quota, or
    /// misconfigured (see [`connector::ConnectorError`]).
    #[error(transparent)]
    Connector(#[from] connector::ConnectorError),
}

impl From<rusqlite::Error> for CrmError {
    fn from(error: rusqlite::Error) -> Self {
        match crate::db::Busy::from_sqlite(&error) {
            Some(busy) => CrmError::Busy(busy),
            None => CrmError::Sqlite(error),
        }
    }
}

impl From<crate::db::DbError> for CrmError {
    fn from(error: crate::db::DbError) -> Self {
        match error {
            crate::db::DbError::Busy { source, .. } => CrmError::Busy(source),
            other => CrmError::Db(other),
        }
    }
}

impl CrmError {
    /// Whether the error is a configuration problem (CLI exit code 2) rather than a
    /// runtime failure.
    pub fn is_config(&self) -> bool {
        matches!(self, CrmError::Connector(c) if c.is_config())
    }
}

/// The CRM of record as the engine sees it.
pub trait Source: Send {
    /// A short name for reports (`sqlite:/path/crm.db`).
    fn describe(&self) -> String;

    /// A stable id of this CRM instance and its change feed (the embedded CRM's is created
    /// once, by a migration; a connector's is its shadow's, whose versions the feed carries). The mirror records it and refuses a
    /// different CRM behind the same configuration.
    fn instance_id(&self) -> Result<String, CrmError>;

    /// Up to `limit` changes after `cursor`, oldest first.
    fn changes_since(&self, cursor: Cursor, limit: usize) -> Result<ChangeBatch, CrmError>;

    /// One live record with its version (`None` if it does not exist or was deleted).
    fn get(&self, record: &RecordRef) -> Result<Option<(i64, Entity)>, CrmError>;

    /// Applies a write-back atomically, or refuses it.
    fn apply(&mut self, write: &WriteBack) -> Result<WriteOutcome, CrmError>;
}

/// The whole CRM, typed: what the security engine and the planner read.
///
/// The record maps are shared between clones (`Arc`): a model and a copy of it changed
/// only in its security model (a permission change told apart from the model before it)
/// hold their records once. Change them through [`OrgModel::contacts_mut`] and its kin,
/// which copy a map only while another model shares it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OrgModel {
    pub settings: OrgSettings,
    pub org_wide_sharing: OrgWideSharing,
    pub users: BTreeMap<UserId, User>,
    pub roles: BTreeMap<RoleId, Role>,
    pub profiles: BTreeMap<ProfileId, Profile>,
    pub teams: BTreeMap<TeamId, Team>,
    pub sharing_rules: BTreeMap<RuleId, SharingRule>,
    pub organizations: Arc<BTreeMap<CrmId, Organization>>,
    pub contacts: Arc<BTreeMap<CrmId, Contact>>,
    pub events: Arc<BTreeMap<CrmId, Event>>,
    /// The CRM version of each record (for write-backs with an expected version).
    pub versions: Arc<BTreeMap<RecordRef, i64>>,
    /// Delegated mode: who the CRM itself showed each record to (a gate in front of every
    /// other grant when `settings.reader_gate` is on; see [`RecordReaders`]).
    pub readers: Arc<BTreeMap<RecordRef, Vec<UserId>>>,
}

impl OrgModel {
    /// The organizations, to change (copied first while another model shares them).
    pub fn organizations_mut(&mut self) -> &mut BTreeMap<CrmId, Organization> {
        Arc::make_mut(&mut self.organizations)
    }

    /// The contacts, to change (copied first while another model shares them).
    pub fn contacts_mut(&mut self) -> &mut BTreeMap<CrmId, Contact> {
        Arc::make_mut(&mut self.contacts)
    }

    /// The events, to change (copied first while another model shares them).
    pub fn events_mut(&mut self) -> &mut BTreeMap<CrmId, Event> {
        Arc::make_mut(&mut self.events)
    }

    /// The record versions, to change (copied first while another model shares them).
    pub fn versions_mut(&mut self) -> &mut BTreeMap<RecordRef, i64> {
        Arc::make_mut(&mut self.versions)
    }

    /// The reader lists, to change (copied first while another model shares them).
    pub fn readers_mut(&mut self) -> &mut BTreeMap<RecordRef, Vec<UserId>> {
        Arc::make_mut(&mut self.readers)
    }

    /// Adds or replaces one entity.
    pub fn insert(&mut self, entity: Entity, version: i64) {
        match entity {
            Entity::Org(s) => self.settings = s,
            Entity::OrgWideSharing(s) => self.org_wide_sharing = s,
            Entity::User(u) => {
                self.users.insert(u.id.clone(), u);
            }
            Entity::Role(r) => {
                self.roles.insert(r.id.clone(), r);
            }
            Entity::Profile(p) => {
                self.profiles.insert(p.id.clone(), p);
            }
            Entity::Team(t) => {
                self.teams.insert(t.id.clone(), t);
            }
            Entity::SharingRule(r) => {
                self.sharing_rules.insert(r.id.clone(), r);
            }
            Entity::Organization(o) => {
                let o = trimmed_organization(o);
                self.versions_mut().insert(
                    RecordRef::new(ObjectKind::Organization, o.id.clone()),
                    version,
                );
                self.organizations_mut().insert(o.id.clone(), o);
            }
            Entity::Contact(c) => {
                let c = trimmed_contact(c);
                self.versions_mut()
                    .insert(RecordRef::new(ObjectKind::Contact, c.id.clone()), version);
                self.contacts_mut().insert(c.id.clone(), c);
            }
            Entity::Event(e) => {
                let e = trimmed_event(e);
                self.versions_mut()
                    .insert(RecordRef::new(ObjectKind::Event, e.id.clone()), version);
                self.events_mut().insert(e.id.clone(), e);
            }
            Entity::RecordReaders(r) => {
                self.readers_mut().insert(r.record, r.users);
            }
        }
    }

    /// Takes one change of the feed as the mirror does: an entity replaces what was there,
    /// a tombstone removes it. (Rows the CRM could not read are not changes: the mirror
    /// keeps their last good version, and so does the model.)
    pub fn apply(&mut self, change: Change) {
        match change.entity {
            Some(entity) => self.insert(entity, change.version),
            None => self.remove(change.kind, &change.id),
        }
    }

    /// Removes one entity (a tombstone of the change feed). Singletons go back to defaults.
    pub fn remove(&mut self, kind: EntityKind, id: &str) {
        fn parsed<T: std::str::FromStr>(id: &str) -> Option<T> {
            id.parse().ok()
        }
        match kind {
            EntityKind::Org => self.settings = OrgSettings::default(),
            EntityKind::OrgWideSharing => self.org_wide_sharing = OrgWideSharing::default(),
            EntityKind::User => {
                parsed(id).map(|u: UserId| self.users.remove(&u));
            }
            EntityKind::Role => {
                parsed(id).map(|r: RoleId| self.roles.remove(&r));
            }
            EntityKind::Profile => {
                parsed(id).map(|p: ProfileId| self.profiles.remove(&p));
            }
            EntityKind::Team => {
                parsed(id).map(|t: TeamId| self.teams.remove(&t));
            }
            EntityKind::SharingRule => {
                parsed(id).map(|r: RuleId| self.sharing_rules.remove(&r));
            }
            EntityKind::Organization | EntityKind::Contact | EntityKind::Event => {
                let Some(object) = kind.as_object() else {
                    return;
                };
                let Some(crm_id) = parsed::<CrmId>(id) else {
                    return;
                };
                self.versions_mut()
                    .remove(&RecordRef::new(object, crm_id.clone()));
                match object {
                    ObjectKind::Contact => {
                        self.contacts_mut().remove(&crm_id);
                    }
                    ObjectKind::Event => {
                        self.events_mut().remove(&crm_id);
                    }
                    ObjectKind::Organization => {
                        self.organizations_mut().remove(&crm_id);
                    }
                }
            }
            EntityKind::RecordReaders => {
                parsed(id).map(|r: RecordRef| self.readers_mut().remove(&r));
            }
        }
    }

    /// Every entity, in a stable order (singletons first).
    pub fn entities(&self) -> Vec<Entity> {
        let mut out = vec![
            Entity::Org(self.settings.clone()),
            Entity::OrgWideSharing(self.org_wide_sharing),
        ];
        out.extend(self.roles.values().cloned().map(Entity::Role));
        out.extend(self.profiles.values().cloned().map(Entity::Profile));
        out.extend(self.users.values().cloned().map(Entity::User));
        out.extend(self.teams.values().cloned().map(Entity::Team));
        out.extend(
            self.sharing_rules
                .values()
                .cloned()
                .map(Entity::SharingRule),
        );
        out.extend(
            self.organizations
                .values()
                .cloned()
                .map(Entity::Organization),
        );
        out.extend(self.contacts.values().cloned().map(Entity::Contact));
        out.extend(self.events.values().cloned().map(Entity::Event));
        out.extend(self.readers.iter().map(|(record, users)| {
            Entity::RecordReaders(RecordReaders::new(record.clone(), users.clone()))
        }));
        out
    }

    /// The teams a user belongs to.
    pub fn teams_of(&self, user: &UserId) -> Vec<&TeamId> {
        self.teams
            .values()
            .filter(|t| t.members.contains(user))
            .map(|t| &t.id)
            .collect()
    }

    /// The record `r`, typed, if it exists.
    pub fn record(&self, r: &RecordRef) -> Option<Entity> {
        match r.kind {
            ObjectKind::Contact => self.contacts.get(&r.id).cloned().map(Entity::Contact),
            ObjectKind::Event => self.events.get(&r.id).cloned().map(Entity::Event),
            ObjectKind::Organization => self
                .organizations
                .get(&r.id)
                .cloned()
                .map(Entity::Organization),
        }
    }
}

// Lists parsed from JSON keep spare capacity (four slots for one email); at a few hundred
// thousand records that is a good part of the model.
fn trimmed_organization(mut o: Organization) -> Organization {
    o.assignees.shrink_to_fit();
    o
}

fn trimmed_contact(mut c: Contact) -> Contact {
    c.assignees.shrink_to_fit();
    c.emails.shrink_to_fit();
    c.phones.shrink_to_fit();
    c.addresses.shrink_to_fit();
    c.tags.shrink_to_fit();
    c
}

fn trimmed_event(mut e: Event) -> Event {
    e.assignees.shrink_to_fit();
    e.recurrence.shrink_to_fit();
    e.attendees.shrink_to_fit();
    e.links.shrink_to_fit();
    e
}

/// Builds a whole model from its entities in any order (as the mirror is read), with the
/// record maps built in one go: each kind's records are gathered in a list sized up front
/// and the map is made from it with full nodes. (Inserted one by one, a map's nodes stay
/// about half empty; repacking it afterwards held the half-empty map, a list and the
/// packed map at once — the engine's memory peak at a few hundred thousand records.)
#[derive(Default)]
pub struct ModelBuilder {
    model: OrgModel,
    organizations: Vec<(CrmId, Organization)>,
    contacts: Vec<(CrmId, Contact)>,
    events: Vec<(CrmId, Event)>,
    versions: Vec<(RecordRef, i64)>,
    readers: Vec<(RecordRef, Vec<UserId>)>,
}

impl ModelBuilder {
    /// Room for `n` more entities of `kind` (a hint: a wrong one costs only memory moves).
    pub fn reserve(&mut self, kind: EntityKind, n: usize) {
        match kind {
            EntityKind::Contact => self.contacts.reserve_exact(n),
            EntityKind::Event => self.events.reserve_exact(n),
            EntityKind::Organization => self.organizations.reserve_exact(n),
            EntityKind::RecordReaders => self.readers.reserve_exact(n),
            _ => return,
        }
        if kind != EntityKind::RecordReaders {
            self.versions.reserve_exact(n);
        }
    }

    /// Adds one entity (each id once: the mirror holds one row per entity).
    pub fn add(&mut self, entity: Entity, version: i64) {
        let mut versioned = |kind, id: &CrmId| {
            self.versions
                .push((RecordRef::new(kind, id.clone()), version));
        };
        match entity {
            Entity::Organization(o) => {
                versioned(ObjectKind::Organization, &o.id);
                self.organizations
                    .push((o.id.clone(), trimmed_organization(o)));
            }
            Entity::Contact(c) => {
                versioned(ObjectKind::Contact, &c.id);
                self.contacts.push((c.id.clone(), trimmed_contact(c)));
            }
            Entity::Event(e) => {
                versioned(ObjectKind::Event, &e.id);
                self.events.push((e.id.clone(), trimmed_event(e)));
            }
            Entity::RecordReaders(r) => self.readers.push((r.record, r.users)),
            other => self.model.insert(other, version),
        }
    }

    /// The model. Each map is made from its list, and the list freed, before the next
    /// one.
    pub fn build(self) -> OrgModel {
        let Self {
            mut model,
            organizations,
            contacts,
            events,
            versions,
            readers,
        } = self;
        model.organizations = Arc::new(organizations.into_iter().collect());
        model.contacts = Arc::new(contacts.into_iter().collect());
        model.events = Arc::new(events.into_iter().collect());
        model.versions = Arc::new(versions.into_iter().collect());
        model.readers = Arc::new(readers.into_iter().collect());
        model
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contact() -> Entity {
        Entity::Contact(Contact {
            id: CrmId::new("c1").unwrap(),
            owner: UserId::new("u1").unwrap(),
            assignees: vec![],
            visibility: None,
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            organization: None,
            title: "CTO".into(),
            emails: vec![],
            phones: vec![],
            addresses: vec![],
            notes: String::new(),
            tags: vec![],
            updated_at: None,
        })
    }

    fn fields(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_built_model_equals_one_inserted_entity_by_entity() {
        let org = include_str!("../../tests/fixtures/example-org.json");
        let model = orgfile::parse("org", org).unwrap();
        let mut entities = model.entities();
        entities.reverse();
        let mut inserted = OrgModel::default();
        let mut builder = ModelBuilder::default();
        builder.reserve(EntityKind::Contact, 1);
        for (n, entity) in entities.into_iter().enumerate() {
            let version = 7 + n as i64;
            inserted.insert(entity.clone(), version);
            builder.add(entity, version);
        }
        let built = builder.build();
        assert!(!built.contacts.is_empty() && !built.events.is_empty());
        assert!(!built.users.is_empty() && !built.versions.is_empty());
        assert_eq!(built, inserted);
    }

    #[test]
    fn an_update_sets_only_writable_fields_and_normalises_them() {
        let record: RecordRef = "contact:c1".parse().unwrap();
        let updated = updated_record(
            &record,
            &contact(),
            &fields(json!({"title": " CEO ", "phones": [{"number": "+1 415 555 0199", "label": "mobile"}]})),
        )
        .unwrap();
        let Entity::Contact(c) = updated else {
            panic!("not a contact")
        };
        assert_eq!(c.title, "CEO");
        assert_eq!(c.phones[0].number, "+14155550199");
        assert_eq!(c.first_name, "Ada", "other fields stay");
        let err = updated_record(&record, &contact(), &fields(json!({"owner": "u2"}))).unwrap_err();
        assert!(matches!(err, CrmError::Refused(_)), "{err}");
        let err = updated_record(
            &record,
            &contact(),
            &fields(json!({"emails": [{"address": "nope", "label": "work"}]})),
        )
        .unwrap_err();
        assert!(matches!(err, CrmError::Invalid(_)), "{err}");
        let err = updated_record(&record, &contact(), &fields(json!({"title": 7}))).unwrap_err();
        assert!(matches!(err, CrmError::Invalid(_)), "{err}");
        let team = Entity::Team(Team {
            id: TeamId::new("t1").unwrap(),
            name: "East".into(),
            members: vec![],
        });
        assert!(matches!(
            normalized_record(team).unwrap_err(),
            CrmError::Refused(_)
        ));
    }
}
