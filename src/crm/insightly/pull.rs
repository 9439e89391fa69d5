//! Reading Insightly into the shadow.
//!
//! 1. **Directory**, in full every time: `Users`, `Teams`, `TeamMembers` (read with the
//!    admin key, or the first user key Insightly accepts), mapped to users and teams; the
//!    model file (or, in delegated mode without one, the built-in permissive model) gives
//!    the org settings, org-wide sharing, roles, profiles and sharing rules. Entities gone
//!    from a complete, stable listing are tombstoned.
//! 2. **Records**, organisations then contacts then events, per reading key: incrementally
//!    (`/Search?updated_after_utc=` the key's high-water mark minus one second, so a record
//!    changed in the same second is read again rather than missed), or in full when a full
//!    reconciliation is due or the key has no mark yet.
//! 3. **Readers** (delegated mode): a key that saw a record is one of its readers; a key's
//!    complete listing also removes it from every record it did not list, and its
//!    incremental listing from every record another key showed changed after the mark but
//!    it did not list (a `VISIBLE_TO` edit is seen at once; what changes without moving the
//!    stamp waits for the reconciliation); a key Insightly refuses (401/403) is removed from
//!    every list (fail-closed) and reported.
//! 4. **Deletions**, on a full reconciliation only, and only when every key's listing was
//!    complete and stable: a live record no key listed is tombstoned.
//!
//! A record that cannot be read is reported and keeps its last good version (it is neither
//! updated nor tombstoned). An error (quota, outage) stops the read: what was recorded
//! stays, each key's mark moves only after its listing was recorded, so the next read
//! resumes without losing anything.

use super::api::Reader;
use super::mapping::{self, DELEGATED_PROFILE};
use super::{Insightly, ModelSource};
use crate::crm::connector::shadow::Shadow;
use crate::crm::connector::source::PullReport;
use crate::crm::connector::ConnectorError;
use crate::crm::{CrmError, Entity, EntityKind, RowProblem};
use crate::model::{
    ObjectKind, ObjectPermissions, OrgSettings, OrgWideSharing, Profile, ProfileId, RecordReaders,
    RecordRef, SharingDefault, UserId,
};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Insightly's collection of each record kind, in reading order (events link to the
/// others).
const RECORD_KINDS: [(ObjectKind, &str); 3] = [
    (ObjectKind::Organization, "Organisations"),
    (ObjectKind::Contact, "Contacts"),
    (ObjectKind::Event, "Events"),
];

fn mark_key(reader: &Reader, kind: ObjectKind) -> String {
    format!("mark:{}:{kind}", reader.tag())
}

struct Pull<'a> {
    connector: &'a Insightly,
    shadow: &'a mut Shadow,
    problems: Vec<RowProblem>,
    version: i64,
}

impl Pull<'_> {
    fn problem(&mut self, kind: &str, id: &str, error: String) {
        self.problems.push(RowProblem {
            kind: kind.to_owned(),
            id: id.to_owned(),
            version: self.version,
            error,
        });
    }
}

/// One read (see the module docs).
pub(super) fn pull(
    connector: &Insightly,
    shadow: &mut Shadow,
    full: bool,
) -> Result<PullReport, CrmError> {
    let version = shadow.head()?.0;
    let mut pull = Pull {
        connector,
        shadow,
        problems: Vec::new(),
        version,
    };
    read_directory(&mut pull)?;
    let mut reconciled = true;
    for (kind, collection) in RECORD_KINDS {
        reconciled &= read_records(&mut pull, kind, collection, full)?;
    }
    tracing::info!(
        full,
        reconciled,
        problems = pull.problems.len(),
        requests = connector.requests_sent(),
        "Insightly read"
    );
    Ok(PullReport {
        problems: pull.problems,
        reconciled: full && reconciled,
    })
}

fn model_entities(connector: &Insightly) -> Vec<Entity> {
    let gate = connector.delegated();
    match &connector.model {
        ModelSource::File(model) => {
            let mut out = vec![
                Entity::Org(OrgSettings {
                    reader_gate: gate,
                    ..model.settings.clone()
                }),
                Entity::OrgWideSharing(model.org_wide_sharing),
            ];
            out.extend(model.roles.values().cloned().map(Entity::Role));
            out.extend(model.profiles.values().cloned().map(Entity::Profile));
            out.extend(
                model
                    .sharing_rules
                    .values()
                    .cloned()
                    .map(Entity::SharingRule),
            );
            out
        }
        ModelSource::DelegatedDefault => {
            let all = ObjectPermissions {
                read: true,
                create: true,
                edit: true,
                delete: true,
                ..ObjectPermissions::default()
            };
            vec![
                Entity::Org(OrgSettings {
                    name: "Insightly".into(),
                    google_domains: Vec::new(),
                    reader_gate: true,
                }),
                Entity::OrgWideSharing(OrgWideSharing {
                    contact: SharingDefault::PublicFull,
                    event: SharingDefault::PublicFull,
                    organization: SharingDefault::PublicFull,
                }),
                Entity::Profile(Profile {
                    id: ProfileId::from_trusted(DELEGATED_PROFILE.to_owned()),
                    name: "Insightly decides (delegated mode)".into(),
                    objects: ObjectKind::ALL.into_iter().map(|k| (k, all)).collect(),
                }),
            ]
        }
    }
}

/// Lists `collection` with the first directory key Insightly accepts.
fn list_directory(pull: &mut Pull<'_>, collection: &str) -> Result<super::api::Listing, CrmError> {
    let readers = pull.connector.directory_readers();
    let mut last = None;
    for reader in readers {
        match pull.connector.api().list(reader, collection, None) {
            Ok(listing) => return Ok(listing),
            Err(e @ ConnectorError::Unauthorized { .. }) if reader.user.is_some() => {
                last = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .unwrap_or_else(|| ConnectorError::Config("no Insightly API key is configured".into()))
        .into())
}

fn read_directory(pull: &mut Pull<'_>) -> Result<(), CrmError> {
    let users = list_directory(pull, "Users")?;
    let teams = list_directory(pull, "Teams")?;
    let members = list_directory(pull, "TeamMembers")?;
    let mut entities = model_entities(pull.connector);
    let mut keep: BTreeMap<EntityKind, BTreeSet<String>> = BTreeMap::new();
    for entity in &entities {
        keep.entry(entity.kind()).or_default().insert(entity.id());
    }
    for value in &users.items {
        match mapping::user(value, &pull.connector.rules) {
            Ok(user) => {
                warn_unmodelled(pull.connector, &user);
                entities.push(Entity::User(user));
            }
            Err(bad) => {
                keep.entry(EntityKind::User)
                    .or_default()
                    .insert(bad.id.clone());
                pull.problem("user", &bad.id, bad.error);
            }
        }
    }
    let mut by_team: BTreeMap<i64, Vec<UserId>> = BTreeMap::new();
    for value in &members.items {
        match mapping::team_member(value) {
            Ok((team, user)) => by_team.entry(team).or_default().push(user),
            Err(bad) => pull.problem("team_member", &bad.id, bad.error),
        }
    }
    for value in &teams.items {
        match mapping::team(value, &by_team) {
            Ok(team) => entities.push(Entity::Team(team)),
            Err(bad) => {
                keep.entry(EntityKind::Team)
                    .or_default()
                    .insert(bad.id.clone());
                pull.problem("team", &bad.id, bad.error);
            }
        }
    }
    for entity in &entities {
        keep.entry(entity.kind()).or_default().insert(entity.id());
    }
    pull.shadow.record(&entities)?;
    let stable = users.stable && teams.stable && members.stable;
    if stable {
        for kind in [
            EntityKind::User,
            EntityKind::Team,
            EntityKind::Role,
            EntityKind::Profile,
            EntityKind::SharingRule,
        ] {
            let kept = keep.remove(&kind).unwrap_or_default();
            pull.shadow.remove_missing(kind, &kept)?;
        }
    }
    Ok(())
}

/// A user whose `PROFILE_ID` or `ROLE_ID` the model file does not define gets no rights
/// from it (fail-closed); say so, since it is most likely a gap in the model file.
fn warn_unmodelled(connector: &Insightly, user: &crate::model::User) {
    let ModelSource::File(model) = &connector.model else {
        return;
    };
    if !user.active || user.admin {
        return;
    }
    if let Some(profile) = user
        .profile
        .as_ref()
        .filter(|p| !model.profiles.contains_key(*p))
    {
        tracing::warn!(user = %user.id, profile = %profile, "the user's PROFILE_ID is not in the model file: no rights");
    }
    if let Some(role) = user.role.as_ref().filter(|r| !model.roles.contains_key(*r)) {
        tracing::warn!(user = %user.id, role = %role, "the user's ROLE_ID is not in the model file: no role");
    }
}

/// What one key's listing of one kind showed.
struct Seen {
    ids: BTreeSet<String>,
    /// The listing was full (not incremental) and stable: it is the key's whole view.
    complete: bool,
    /// An incremental, stable listing: every record the key sees that changed after this.
    changed_after: Option<DateTime<Utc>>,
}

/// Reads one kind with every key; returns whether the read was a complete reconciliation.
fn read_records(
    pull: &mut Pull<'_>,
    kind: ObjectKind,
    collection: &str,
    full: bool,
) -> Result<bool, CrmError> {
    let connector = pull.connector;
    let mut seen: Vec<(Option<UserId>, Seen)> = Vec::new();
    let mut refused: BTreeSet<UserId> = BTreeSet::new();
    // The newest change stamp of each record any key listed in this read.
    let mut stamps: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for reader in connector.record_readers() {
        let key = mark_key(reader, kind);
        let mark = match full {
            true => None,
            false => pull
                .shadow
                .state(&key)?
                .and_then(|m| DateTime::parse_from_rfc3339(&m).ok())
                .map(|m| m.with_timezone(&Utc)),
        };
        let after = mark.map(|m| m - chrono::Duration::seconds(1));
        let listing = match connector.api().list(reader, collection, after) {
            Ok(listing) => listing,
            Err(e @ ConnectorError::Unauthorized { .. }) if reader.user.is_some() => {
                // Delegated mode: this user's records are withheld until the key works.
                let user = reader
                    .user
                    .clone()
                    .unwrap_or_else(|| UserId::from_trusted("?".into()));
                if refused.insert(user.clone()) {
                    pull.problem(
                        "user",
                        user.as_str(),
                        format!(
                            "{e}; the records only this key showed are withheld until it works"
                        ),
                    );
                }
                pull.shadow
                    .clear_state(&format!("mark:{}:", reader.tag()))?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut entities = Vec::new();
        let mut ids = BTreeSet::new();
        let mut newest = mark;
        for value in &listing.items {
            match mapping::record(kind, value) {
                Ok(entity) => {
                    ids.insert(entity.id());
                    newest = newest.max(entity.stamp());
                    entities.push(entity);
                }
                Err(bad) => {
                    ids.insert(bad.id.clone());
                    pull.problem(kind.as_str(), &bad.id, bad.error);
                }
            }
        }
        pull.shadow.record(&entities)?;
        if let Some(newest) = newest {
            pull.shadow.set_state(&key, &newest.to_rfc3339())?;
        }
        for entity in &entities {
            if let Some(stamp) = entity.stamp() {
                let at = stamps.entry(entity.id()).or_insert(stamp);
                *at = (*at).max(stamp);
            }
        }
        seen.push((
            reader.user.clone(),
            Seen {
                ids,
                complete: mark.is_none() && listing.stable,
                changed_after: after.filter(|_| listing.stable),
            },
        ));
    }
    if connector.delegated() {
        update_readers(pull, kind, &seen, &refused, &stamps)?;
    }
    let complete = seen.iter().all(|(_, s)| s.complete)
        && seen.len() + refused.len() == connector.record_readers().len();
    if full && complete {
        let listed: BTreeSet<String> = seen
            .iter()
            .flat_map(|(_, s)| s.ids.iter().cloned())
            .collect();
        let gone = pull
            .shadow
            .remove_missing(EntityKind::from_object(kind), &listed)?;
        if !gone.is_empty() {
            tracing::info!(kind = %kind, count = gone.len(), "records gone from Insightly");
        }
        let lists: Vec<String> = gone
            .iter()
            .filter_map(|id| {
                id.parse()
                    .ok()
                    .map(|id| RecordRef::new(kind, id).to_string())
            })
            .collect();
        pull.shadow.remove(EntityKind::RecordReaders, &lists)?;
    }
    Ok(complete)
}

/// Delegated mode: brings every reader list of `kind` up to date with what the keys showed.
fn update_readers(
    pull: &mut Pull<'_>,
    kind: ObjectKind,
    seen: &[(Option<UserId>, Seen)],
    refused: &BTreeSet<UserId>,
    stamps: &BTreeMap<String, DateTime<Utc>>,
) -> Result<(), CrmError> {
    // Only a complete listing or a refused key can take a user off a list; otherwise only
    // the records a key listed can change.
    let candidates: BTreeSet<String> =
        if refused.is_empty() && seen.iter().all(|(_, s)| !s.complete) {
            seen.iter()
                .flat_map(|(_, s)| s.ids.iter().cloned())
                .collect()
        } else {
            pull.shadow.live_ids(EntityKind::from_object(kind))?
        };
    let mut lists = Vec::new();
    for id in candidates {
        let Ok(crm_id) = id.parse() else { continue };
        let record = RecordRef::new(kind, crm_id);
        let old: BTreeSet<UserId> = match pull
            .shadow
            .get(EntityKind::RecordReaders, &record.to_string())?
        {
            Some((_, Entity::RecordReaders(r))) => r.users.into_iter().collect(),
            _ => BTreeSet::new(),
        };
        let mut new = old.clone();
        new.retain(|u| !refused.contains(u));
        for (user, s) in seen {
            let Some(user) = user else { continue };
            // A key's incremental search lists every record it sees that changed after its
            // mark: one it did not list although the record changed since no longer shows
            // it (e.g. its VISIBLE_TO was edited).
            let changed_unseen = s
                .changed_after
                .zip(stamps.get(&id))
                .is_some_and(|(after, stamp)| *stamp > after);
            if s.ids.contains(&id) {
                new.insert(user.clone());
            } else if s.complete || changed_unseen {
                new.remove(user);
            }
        }
        if new != old {
            lists.push(Entity::RecordReaders(RecordReaders::new(record, new)));
        }
    }
    pull.shadow.record(&lists)?;
    Ok(())
}
