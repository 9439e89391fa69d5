//! The CRM's security model: users, roles, profiles, teams, sharing rules and org-wide sharing.
//!
//! These types are the mirrored form of what the CRM says; the decisions made from them live
//! in `security`. Their serde shape is the org file's (see `shared/ORG_FILE.md`): unknown keys
//! are refused, optional keys take the documented defaults.

use super::ids::{ObjectKind, ProfileId, RecordRef, RoleId, RuleId, TeamId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Organisation-level settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OrgSettings {
    pub name: String,
    /// Google Workspace domains whose accounts may be synced to.
    #[serde(default)]
    pub google_domains: Vec<String>,
    /// Delegated mode (set by CRM connectors that read with each user's own key): a record
    /// is readable by a user only if its [`RecordReaders`] list that user. A record without
    /// a reader list is readable by nobody (fail-closed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reader_gate: bool,
}

/// Who the CRM itself showed a record to (delegated mode): the users whose own API key
/// listed it. Under [`OrgSettings::reader_gate`] this is a gate in front of every other
/// grant: the permission model decides only among these users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordReaders {
    pub record: RecordRef,
    /// Ascending, without duplicates.
    pub users: Vec<UserId>,
}

impl RecordReaders {
    /// A reader list in its canonical form (sorted, unique).
    pub fn new(record: RecordRef, users: impl IntoIterator<Item = UserId>) -> Self {
        let mut users: Vec<UserId> = users.into_iter().collect();
        users.sort();
        users.dedup();
        Self { record, users }
    }
}

/// A CRM user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub email: String,
    #[serde(default = "default_true")]
    pub active: bool,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub profile: Option<ProfileId>,
    #[serde(default)]
    pub role: Option<RoleId>,
    /// The Google identity we sync into; `None` means the user is not synced.
    #[serde(default)]
    pub google_account: Option<String>,
}

fn default_true() -> bool {
    true
}

/// A node of the role tree: users see records of users in roles strictly below theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub id: RoleId,
    pub name: String,
    #[serde(default)]
    pub parent: Option<RoleId>,
}

/// How far a per-operation scope reaches (amoCRM-style rights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeLevel {
    Own,
    Team,
    All,
}

/// Optional per-operation scopes of a profile object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationScopes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<ScopeLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<ScopeLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<ScopeLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<ScopeLevel>,
}

/// A profile's rights on one kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectPermissions {
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub create: bool,
    #[serde(default)]
    pub edit: bool,
    #[serde(default)]
    pub delete: bool,
    #[serde(default)]
    pub read_all: bool,
    #[serde(default)]
    pub modify_all: bool,
    /// A synced phone copy is an export: `false` keeps this object off Google.
    #[serde(default = "default_true")]
    pub export: bool,
    #[serde(default)]
    pub scope: OperationScopes,
}

impl Default for ObjectPermissions {
    /// No rights at all (what a profile gives an object it does not mention).
    fn default() -> Self {
        Self {
            read: false,
            create: false,
            edit: false,
            delete: false,
            read_all: false,
            modify_all: false,
            export: true,
            scope: OperationScopes::default(),
        }
    }
}

impl ObjectPermissions {
    /// The closure applied on load: edit⇒read, delete⇒edit, modify_all⇒read_all+edit+delete,
    /// read_all⇒read. Idempotent.
    pub fn closed(mut self) -> Self {
        if self.modify_all {
            self.read_all = true;
            self.edit = true;
            self.delete = true;
        }
        if self.delete {
            self.edit = true;
        }
        if self.edit || self.read_all {
            self.read = true;
        }
        self
    }
}

/// A permission profile: per object kind, what its users may do at most.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub id: ProfileId,
    pub name: String,
    #[serde(default, deserialize_with = "objects_by_kind")]
    pub objects: BTreeMap<ObjectKind, ObjectPermissions>,
}

/// The org file's `objects` block: only the known object kinds, each at most once (parsed as
/// a struct so an error names its path, e.g. `profiles[0].objects.contact.fly`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileObjects {
    #[serde(default)]
    contact: Option<ObjectPermissions>,
    #[serde(default)]
    event: Option<ObjectPermissions>,
    #[serde(default)]
    organization: Option<ObjectPermissions>,
}

fn objects_by_kind<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<ObjectKind, ObjectPermissions>, D::Error> {
    let raw = ProfileObjects::deserialize(deserializer)?;
    Ok([
        (ObjectKind::Contact, raw.contact),
        (ObjectKind::Event, raw.event),
        (ObjectKind::Organization, raw.organization),
    ]
    .into_iter()
    .filter_map(|(kind, perms)| perms.map(|p| (kind, p)))
    .collect())
}

impl Profile {
    /// The (closed) rights this profile gives on `kind`; none if the kind is not mentioned.
    pub fn object(&self, kind: ObjectKind) -> ObjectPermissions {
        self.objects
            .get(&kind)
            .copied()
            .map(ObjectPermissions::closed)
            .unwrap_or_default()
    }
}

/// A team of users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub id: TeamId,
    pub name: String,
    #[serde(default)]
    pub members: Vec<UserId>,
}

/// Who a sharing rule is about: exactly one of a role, a role subtree or a team.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleParty {
    Role(RoleId),
    RoleAndSubordinates(RoleId),
    Team(TeamId),
}

/// What a sharing rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAccess {
    Read,
    ReadWrite,
}

/// A sharing rule: records of `object` owned by users in `source` are shared with users in
/// `target` at `access`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharingRule {
    pub id: RuleId,
    pub object: ObjectKind,
    pub source: RuleParty,
    pub target: RuleParty,
    pub access: RuleAccess,
}

/// Org-wide default access to records of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharingDefault {
    #[default]
    Private,
    PublicRead,
    PublicReadWrite,
    PublicFull,
    /// Events: the minimum access over the linked parent records; no parent ⇒ none.
    ControlledByParent,
}

/// Org-wide defaults per object kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgWideSharing {
    #[serde(default)]
    pub contact: SharingDefault,
    #[serde(default)]
    pub event: SharingDefault,
    #[serde(default)]
    pub organization: SharingDefault,
}

impl OrgWideSharing {
    pub fn for_kind(&self, kind: ObjectKind) -> SharingDefault {
        match kind {
            ObjectKind::Contact => self.contact,
            ObjectKind::Event => self.event,
            ObjectKind::Organization => self.organization,
        }
    }
}

/// Simple per-record visibility (Insightly-style), on top of the other grants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Visibility {
    Everyone,
    OwnerOnly,
    Team(TeamId),
    Users(Vec<UserId>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_implies_weaker_rights() {
        let p = ObjectPermissions {
            modify_all: true,
            ..ObjectPermissions::default()
        }
        .closed();
        assert!(p.read && p.read_all && p.edit && p.delete);
        let p = ObjectPermissions {
            delete: true,
            ..ObjectPermissions::default()
        }
        .closed();
        assert!(p.read && p.edit && !p.read_all);
        assert_eq!(p, p.closed());
    }

    #[test]
    fn visibility_and_parties_parse_in_both_forms() {
        let v: Option<Visibility> = serde_json::from_str("null").unwrap();
        assert_eq!(v, None);
        let v: Visibility = serde_json::from_str("\"owner_only\"").unwrap();
        assert_eq!(v, Visibility::OwnerOnly);
        let v: Visibility = serde_json::from_str(r#"{"team":"east"}"#).unwrap();
        assert_eq!(v, Visibility::Team(TeamId::new("east").unwrap()));
        let p: RuleParty = serde_json::from_str(r#"{"role_and_subordinates":"mgr_west"}"#).unwrap();
        assert_eq!(
            p,
            RuleParty::RoleAndSubordinates(RoleId::new("mgr_west").unwrap())
        );
        assert!(serde_json::from_str::<RuleParty>(r#"{"role":"a","team":"b"}"#).is_err());
    }
}
