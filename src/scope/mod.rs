//! Per-user sync scopes: which of the records a user may read go to their phone, and how.
//!
//! A scope says, per kind (contact, event), a [`SelectionMode`] — `mine` (owned or assigned),
//! `team` (mine, plus records owned by team-mates or owned by / assigned to users below the
//! user's role), `all_visible`, `filter` (tags and/or organizations) or `none` — plus the
//! sync `direction`, the event window (`days_past` / `days_future`), the `conflict_policy`
//! and the `google_delete` policy.
//!
//! Settings come in [`ScopeLayer`]s, resolved key by key with this precedence:
//! **user override** (state DB, `crmsync scope set`) > **role** (`[scope.role.<id>]`) >
//! **profile** (`[scope.profile.<id>]`) > **org** (`[scope.org]`) > **built-in default**.
//! [`resolve`] returns the [`EffectiveScope`] with the source of every setting and a
//! fingerprint (SHA-256 of its canonical JSON) so a later change is detected.
//!
//! A scope only narrows: [`desired_set`] is always `readable ∩ export gate ∩ selection
//! (∩ window for events)`.

mod desired;
mod parse;
pub mod window;

pub use desired::{desired_set, scoped_set, sync_verdict, SyncVerdict};
pub use parse::ScopeEdit;

use crate::crm::OrgModel;
use crate::model::{CrmId, ObjectKind, ProfileId, RoleId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use window::Window;

/// Largest accepted `days_past` / `days_future`.
pub const MAX_WINDOW_DAYS: u32 = 3_650;

/// Which records of one kind are synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionMode {
    /// Records the user owns or is assigned to.
    Mine,
    /// Mine, plus records owned by the user's team-mates and records owned by or assigned
    /// to users in roles below the user's.
    Team,
    /// Everything the user may read.
    AllVisible,
    /// Records matching the kind's tag / organization filter.
    Filter,
    /// Nothing of this kind.
    None,
}

/// Which way changes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    CrmToGoogle,
    TwoWay,
}

/// Who wins when both sides changed the same field differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    CrmWins,
    GoogleWins,
    NewestWins,
}

/// What a deletion on the phone does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoogleDelete {
    /// Keep the CRM record; stop syncing it to this user until an admin resets.
    Unlink,
    /// Put it back on the phone.
    Restore,
    /// Delete it in the CRM (only with delete permission, else restore).
    DeleteInCrm,
}

/// Every scope setting, by the name used in config, on the command line and in the DB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKey {
    Contact,
    ContactTags,
    ContactOrganizations,
    Event,
    EventTags,
    EventOrganizations,
    Direction,
    DaysPast,
    DaysFuture,
    ConflictPolicy,
    GoogleDelete,
}

impl ScopeKey {
    pub const ALL: [ScopeKey; 11] = [
        ScopeKey::Contact,
        ScopeKey::ContactTags,
        ScopeKey::ContactOrganizations,
        ScopeKey::Event,
        ScopeKey::EventTags,
        ScopeKey::EventOrganizations,
        ScopeKey::Direction,
        ScopeKey::DaysPast,
        ScopeKey::DaysFuture,
        ScopeKey::ConflictPolicy,
        ScopeKey::GoogleDelete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKey::Contact => "contact",
            ScopeKey::ContactTags => "contact_tags",
            ScopeKey::ContactOrganizations => "contact_organizations",
            ScopeKey::Event => "event",
            ScopeKey::EventTags => "event_tags",
            ScopeKey::EventOrganizations => "event_organizations",
            ScopeKey::Direction => "direction",
            ScopeKey::DaysPast => "days_past",
            ScopeKey::DaysFuture => "days_future",
            ScopeKey::ConflictPolicy => "conflict_policy",
            ScopeKey::GoogleDelete => "google_delete",
        }
    }

    /// The values the key accepts, for help and error messages.
    pub fn expected(self) -> &'static str {
        match self {
            ScopeKey::Contact | ScopeKey::Event => "mine, team, all_visible, filter or none",
            ScopeKey::ContactTags | ScopeKey::EventTags => {
                "a comma-separated list of contact tags (empty for none)"
            }
            ScopeKey::ContactOrganizations | ScopeKey::EventOrganizations => {
                "a comma-separated list of organization ids (empty for none)"
            }
            ScopeKey::Direction => "crm_to_google or two_way",
            ScopeKey::DaysPast | ScopeKey::DaysFuture => "a whole number of days, 0 to 3650",
            ScopeKey::ConflictPolicy => "crm_wins, google_wins or newest_wins",
            ScopeKey::GoogleDelete => "unlink, restore or delete_in_crm",
        }
    }
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ScopeKey {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScopeKey::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ScopeError::UnknownKey(s.to_owned()))
    }
}

/// One layer of scope settings: the org, a profile or a role default from config, or a
/// user's overrides from the state DB. Unset keys fall through to the next layer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeLayer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<SelectionMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_organizations: Option<Vec<CrmId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<SelectionMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_organizations: Option<Vec<CrmId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_past: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_future: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_policy: Option<ConflictPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google_delete: Option<GoogleDelete>,
}

impl ScopeLayer {
    /// Whether the layer sets `key`.
    pub fn is_set(&self, key: ScopeKey) -> bool {
        match key {
            ScopeKey::Contact => self.contact.is_some(),
            ScopeKey::ContactTags => self.contact_tags.is_some(),
            ScopeKey::ContactOrganizations => self.contact_organizations.is_some(),
            ScopeKey::Event => self.event.is_some(),
            ScopeKey::EventTags => self.event_tags.is_some(),
            ScopeKey::EventOrganizations => self.event_organizations.is_some(),
            ScopeKey::Direction => self.direction.is_some(),
            ScopeKey::DaysPast => self.days_past.is_some(),
            ScopeKey::DaysFuture => self.days_future.is_some(),
            ScopeKey::ConflictPolicy => self.conflict_policy.is_some(),
            ScopeKey::GoogleDelete => self.google_delete.is_some(),
        }
    }

    pub fn is_empty(&self) -> bool {
        ScopeKey::ALL.iter().all(|k| !self.is_set(*k))
    }

    /// Unsets `key`.
    pub fn clear(&mut self, key: ScopeKey) {
        match key {
            ScopeKey::Contact => self.contact = None,
            ScopeKey::ContactTags => self.contact_tags = None,
            ScopeKey::ContactOrganizations => self.contact_organizations = None,
            ScopeKey::Event => self.event = None,
            ScopeKey::EventTags => self.event_tags = None,
            ScopeKey::EventOrganizations => self.event_organizations = None,
            ScopeKey::Direction => self.direction = None,
            ScopeKey::DaysPast => self.days_past = None,
            ScopeKey::DaysFuture => self.days_future = None,
            ScopeKey::ConflictPolicy => self.conflict_policy = None,
            ScopeKey::GoogleDelete => self.google_delete = None,
        }
    }

    /// Copies every key `other` sets into `self` (later assignments win).
    pub fn apply(&mut self, other: &ScopeLayer) {
        macro_rules! take {
            ($($f:ident),*) => {$(
                if other.$f.is_some() {
                    self.$f = other.$f.clone();
                }
            )*};
        }
        take!(
            contact,
            contact_tags,
            contact_organizations,
            event,
            event_tags,
            event_organizations,
            direction,
            days_past,
            days_future,
            conflict_policy,
            google_delete
        );
    }

    /// The keys this layer sets, each with its value as JSON.
    pub fn values(&self) -> BTreeMap<ScopeKey, serde_json::Value> {
        let json = serde_json::to_value(self).unwrap_or_default();
        ScopeKey::ALL
            .into_iter()
            .filter_map(|k| json.get(k.as_str()).map(|v| (k, v.clone())))
            .collect()
    }

    /// Checks values that need no CRM knowledge (the window's range).
    pub fn check_ranges(&self) -> Result<(), ScopeError> {
        for (key, value) in [
            (ScopeKey::DaysPast, self.days_past),
            (ScopeKey::DaysFuture, self.days_future),
        ] {
            if let Some(v) = value {
                if v > MAX_WINDOW_DAYS {
                    return Err(ScopeError::BadValue {
                        key,
                        value: v.to_string(),
                        expected: key.expected(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks the tags and organizations this layer names exist in the CRM.
    pub fn check_against(
        &self,
        model: &OrgModel,
        known_tags: &BTreeSet<&str>,
    ) -> Result<(), ScopeError> {
        self.check_ranges()?;
        for (key, tags) in [
            (ScopeKey::ContactTags, &self.contact_tags),
            (ScopeKey::EventTags, &self.event_tags),
        ] {
            for tag in tags.iter().flatten() {
                if !known_tags.contains(tag.as_str()) {
                    return Err(ScopeError::UnknownTag {
                        key,
                        tag: tag.clone(),
                    });
                }
            }
        }
        for (key, orgs) in [
            (ScopeKey::ContactOrganizations, &self.contact_organizations),
            (ScopeKey::EventOrganizations, &self.event_organizations),
        ] {
            for org in orgs.iter().flatten() {
                if !model.organizations.contains_key(org) {
                    return Err(ScopeError::UnknownOrganization {
                        key,
                        organization: org.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Scope defaults from the config file: `[scope.org]`, `[scope.profile.<id>]`,
/// `[scope.role.<id>]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScopeConfig {
    pub org: ScopeLayer,
    pub profile: BTreeMap<ProfileId, ScopeLayer>,
    pub role: BTreeMap<RoleId, ScopeLayer>,
}

impl ScopeConfig {
    /// Checks what needs no CRM knowledge; returns the offending config key on error.
    pub fn check_ranges(&self) -> Result<(), (String, ScopeError)> {
        self.org
            .check_ranges()
            .map_err(|e| ("scope.org".to_owned(), e))?;
        for (id, layer) in &self.profile {
            layer
                .check_ranges()
                .map_err(|e| (format!("scope.profile.{id}"), e))?;
        }
        for (id, layer) in &self.role {
            layer
                .check_ranges()
                .map_err(|e| (format!("scope.role.{id}"), e))?;
        }
        Ok(())
    }

    /// Checks the config against the CRM: profiles, roles, tags and organizations it names
    /// must exist.
    pub fn validate(&self, model: &OrgModel) -> Result<(), ScopeError> {
        let tags = known_tags(model);
        let at = |section: String| {
            move |e: ScopeError| ScopeError::InConfig {
                section: section.clone(),
                error: Box::new(e),
            }
        };
        self.org
            .check_against(model, &tags)
            .map_err(at("scope.org".into()))?;
        for (id, layer) in &self.profile {
            if !model.profiles.contains_key(id) {
                return Err(ScopeError::UnknownProfile(id.clone()));
            }
            layer
                .check_against(model, &tags)
                .map_err(at(format!("scope.profile.{id}")))?;
        }
        for (id, layer) in &self.role {
            if !model.roles.contains_key(id) {
                return Err(ScopeError::UnknownRole(id.clone()));
            }
            layer
                .check_against(model, &tags)
                .map_err(at(format!("scope.role.{id}")))?;
        }
        Ok(())
    }
}

/// Every tag used on a contact of the CRM.
pub fn known_tags(model: &OrgModel) -> BTreeSet<&str> {
    model
        .contacts
        .values()
        .flat_map(|c| c.tags.iter().map(String::as_str))
        .collect()
}

/// Problems with scope input. Nothing is stored when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("unknown scope setting {0:?} (settings: contact, event, contact_tags, contact_organizations, event_tags, event_organizations, direction, days_past, days_future, conflict_policy, google_delete)")]
    UnknownKey(String),
    #[error("{key}={value:?} is not valid: expected {expected}")]
    BadValue {
        key: ScopeKey,
        value: String,
        expected: &'static str,
    },
    #[error("{0:?} is not a setting: expected KEY=VALUE, e.g. contact=team")]
    NotAssignment(String),
    #[error("{0} is given twice")]
    Repeated(ScopeKey),
    #[error("unknown user {:?}", .0.as_str())]
    UnknownUser(UserId),
    #[error("[scope.profile.{0}] names a profile that does not exist in the CRM")]
    UnknownProfile(ProfileId),
    #[error("[scope.role.{0}] names a role that does not exist in the CRM")]
    UnknownRole(RoleId),
    #[error("{key}: no contact in the CRM has the tag {tag:?}")]
    UnknownTag { key: ScopeKey, tag: String },
    #[error("{key}: unknown organization {:?}", .organization.as_str())]
    UnknownOrganization { key: ScopeKey, organization: CrmId },
    #[error("{kind}=filter needs {kind}_tags or {kind}_organizations (both are empty)")]
    EmptyFilter { kind: ObjectKind },
    #[error("config [{section}]: {error}")]
    InConfig {
        section: String,
        error: Box<ScopeError>,
    },
}

/// One kind's resolved selection. Filter lists are kept only for `filter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub mode: SelectionMode,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub tags: BTreeSet<String>,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub organizations: BTreeSet<CrmId>,
}

impl Selection {
    pub fn mode(mode: SelectionMode) -> Self {
        Self {
            mode,
            tags: BTreeSet::new(),
            organizations: BTreeSet::new(),
        }
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            SelectionMode::Mine => "mine",
            SelectionMode::Team => "team",
            SelectionMode::AllVisible => "all_visible",
            SelectionMode::Filter => "filter",
            SelectionMode::None => "none",
        };
        f.write_str(mode)?;
        if self.mode == SelectionMode::Filter {
            let mut parts = Vec::new();
            if !self.tags.is_empty() {
                parts.push(format!(
                    "tags {}",
                    self.tags.iter().cloned().collect::<Vec<_>>().join(",")
                ));
            }
            if !self.organizations.is_empty() {
                parts.push(format!(
                    "organizations {}",
                    self.organizations
                        .iter()
                        .map(CrmId::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                ));
            }
            write!(f, " ({})", parts.join("; "))?;
        }
        Ok(())
    }
}

/// A user's effective scope: every setting resolved. Its canonical JSON (field order fixed,
/// sets sorted) is what the fingerprint hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveScope {
    pub contact: Selection,
    pub event: Selection,
    pub direction: Direction,
    pub days_past: u32,
    pub days_future: u32,
    pub conflict_policy: ConflictPolicy,
    pub google_delete: GoogleDelete,
}

impl EffectiveScope {
    /// The built-in defaults: own records only, CRM to Google, 30 days back and a year
    /// ahead, the CRM wins conflicts, a phone deletion unlinks.
    pub fn builtin() -> Self {
        Self {
            contact: Selection::mode(SelectionMode::Mine),
            event: Selection::mode(SelectionMode::Mine),
            direction: Direction::CrmToGoogle,
            days_past: 30,
            days_future: 365,
            conflict_policy: ConflictPolicy::CrmWins,
            google_delete: GoogleDelete::Unlink,
        }
    }

    /// Stable fingerprint: hex SHA-256 of the canonical JSON.
    pub fn fingerprint(&self) -> String {
        crate::model::canonical_hash(self)
    }

    /// The event window around `now`.
    pub fn window(&self, now: DateTime<Utc>) -> Window {
        Window::around(now, self.days_past, self.days_future)
    }

    /// The selection for `kind` (organizations are never synced: `None`).
    pub fn selection(&self, kind: ObjectKind) -> Option<&Selection> {
        match kind {
            ObjectKind::Contact => Some(&self.contact),
            ObjectKind::Event => Some(&self.event),
            ObjectKind::Organization => None,
        }
    }
}

/// Where one effective setting came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "layer", content = "id", rename_all = "snake_case")]
pub enum SettingSource {
    BuiltIn,
    Org,
    Profile(ProfileId),
    Role(RoleId),
    User,
}

impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingSource::BuiltIn => f.write_str("built-in default"),
            SettingSource::Org => f.write_str("config [scope.org]"),
            SettingSource::Profile(p) => write!(f, "config [scope.profile.{p}]"),
            SettingSource::Role(r) => write!(f, "config [scope.role.{r}]"),
            SettingSource::User => f.write_str("user override (scope set)"),
        }
    }
}

/// A resolved scope: the effective settings, where each came from, and the fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedScope {
    pub user: UserId,
    pub scope: EffectiveScope,
    /// Every setting as resolved from the layers (filter lists included even when the
    /// selection is not `filter`, where they have no effect).
    pub settings: ScopeLayer,
    pub sources: BTreeMap<ScopeKey, SettingSource>,
    pub fingerprint: String,
}

impl ResolvedScope {
    /// One line per setting: `key = value (source)`.
    pub fn lines(&self) -> Vec<(ScopeKey, String, String)> {
        let s = &self.scope;
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "(none)".to_owned()
            } else {
                v.join(",")
            }
        };
        ScopeKey::ALL
            .into_iter()
            .map(|k| {
                let value = match k {
                    ScopeKey::Contact => enum_str(&s.contact.mode),
                    ScopeKey::Event => enum_str(&s.event.mode),
                    ScopeKey::ContactTags => filter_list(
                        s.contact.mode,
                        list(self.settings.contact_tags.clone().unwrap_or_default()),
                    ),
                    ScopeKey::EventTags => filter_list(
                        s.event.mode,
                        list(self.settings.event_tags.clone().unwrap_or_default()),
                    ),
                    ScopeKey::ContactOrganizations => filter_list(
                        s.contact.mode,
                        list(orgs(&self.settings.contact_organizations)),
                    ),
                    ScopeKey::EventOrganizations => {
                        filter_list(s.event.mode, list(orgs(&self.settings.event_organizations)))
                    }
                    ScopeKey::Direction => enum_str(&s.direction),
                    ScopeKey::DaysPast => s.days_past.to_string(),
                    ScopeKey::DaysFuture => s.days_future.to_string(),
                    ScopeKey::ConflictPolicy => enum_str(&s.conflict_policy),
                    ScopeKey::GoogleDelete => enum_str(&s.google_delete),
                };
                let source = self
                    .sources
                    .get(&k)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| SettingSource::BuiltIn.to_string());
                (k, value, source)
            })
            .collect()
    }
}

fn orgs(list: &Option<Vec<CrmId>>) -> Vec<String> {
    list.iter().flatten().map(|o| o.to_string()).collect()
}

/// A filter list, marked unused when the selection is not `filter`.
fn filter_list(mode: SelectionMode, shown: String) -> String {
    if mode == SelectionMode::Filter || shown == "(none)" {
        shown
    } else {
        format!("{shown} (unused: not filter)")
    }
}

fn enum_str<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Resolves `user`'s effective scope: per setting, the user's override, else their role's
/// default, else their profile's, else the org's, else the built-in one.
pub fn resolve(
    config: &ScopeConfig,
    model: &OrgModel,
    user: &UserId,
    overrides: &ScopeLayer,
) -> Result<ResolvedScope, ScopeError> {
    let u = model
        .users
        .get(user)
        .ok_or_else(|| ScopeError::UnknownUser(user.clone()))?;
    let mut layers: Vec<(SettingSource, &ScopeLayer)> = vec![(SettingSource::User, overrides)];
    if let Some(role) = &u.role {
        if let Some(layer) = config.role.get(role) {
            layers.push((SettingSource::Role(role.clone()), layer));
        }
    }
    if let Some(profile) = &u.profile {
        if let Some(layer) = config.profile.get(profile) {
            layers.push((SettingSource::Profile(profile.clone()), layer));
        }
    }
    layers.push((SettingSource::Org, &config.org));

    let mut merged = ScopeLayer::default();
    let mut sources = BTreeMap::new();
    for key in ScopeKey::ALL {
        let found = layers.iter().find(|(_, layer)| layer.is_set(key));
        let (source, layer) = match found {
            Some((source, layer)) => (source.clone(), *layer),
            None => (SettingSource::BuiltIn, &ScopeLayer::default()),
        };
        let mut one = layer.clone();
        for other in ScopeKey::ALL {
            if other != key {
                one.clear(other);
            }
        }
        merged.apply(&one);
        sources.insert(key, source);
    }
    let builtin = EffectiveScope::builtin();
    let selection = |mode: Option<SelectionMode>,
                     tags: &Option<Vec<String>>,
                     orgs: &Option<Vec<CrmId>>,
                     kind: ObjectKind,
                     default: &Selection|
     -> Result<Selection, ScopeError> {
        let mode = mode.unwrap_or(default.mode);
        if mode != SelectionMode::Filter {
            return Ok(Selection::mode(mode));
        }
        let tags: BTreeSet<String> = tags.iter().flatten().cloned().collect();
        let organizations: BTreeSet<CrmId> = orgs.iter().flatten().cloned().collect();
        if tags.is_empty() && organizations.is_empty() {
            return Err(ScopeError::EmptyFilter { kind });
        }
        Ok(Selection {
            mode,
            tags,
            organizations,
        })
    };
    let scope = EffectiveScope {
        contact: selection(
            merged.contact,
            &merged.contact_tags,
            &merged.contact_organizations,
            ObjectKind::Contact,
            &builtin.contact,
        )?,
        event: selection(
            merged.event,
            &merged.event_tags,
            &merged.event_organizations,
            ObjectKind::Event,
            &builtin.event,
        )?,
        direction: merged.direction.unwrap_or(builtin.direction),
        days_past: merged.days_past.unwrap_or(builtin.days_past),
        days_future: merged.days_future.unwrap_or(builtin.days_future),
        conflict_policy: merged.conflict_policy.unwrap_or(builtin.conflict_policy),
        google_delete: merged.google_delete.unwrap_or(builtin.google_delete),
    };
    Ok(ResolvedScope {
        user: user.clone(),
        fingerprint: scope.fingerprint(),
        scope,
        settings: merged,
        sources,
    })
}

/// Resolves every user's effective scope (what a sync pass starts with). A user whose
/// scope cannot be resolved (e.g. `filter` without criteria) gets the error, so the engine
/// can skip that user and report it without stopping the others.
pub fn resolve_all(
    config: &ScopeConfig,
    model: &OrgModel,
    overrides: &BTreeMap<UserId, ScopeLayer>,
) -> BTreeMap<UserId, Result<ResolvedScope, ScopeError>> {
    let none = ScopeLayer::default();
    model
        .users
        .keys()
        .map(|u| {
            let layer = overrides.get(u).unwrap_or(&none);
            (u.clone(), resolve(config, model, u, layer))
        })
        .collect()
}

#[cfg(test)]
mod tests;
