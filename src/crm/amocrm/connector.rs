//! [`AmoCrm`]: the amoCRM side of the generic [`ShadowSource`](super::super::connector::source::ShadowSource).
//!
//! **Reading** (`pull`), in this order, recording each page in the shadow as it arrives:
//! 1. `GET account?with=users_groups,datetime_settings`: the org, the groups, the zone;
//! 2. every page of `GET users` — on every pull, because a rights change does not move any
//!    record's `updated_at`: users, their profiles and the teams; users gone from amoCRM
//!    are tombstoned (the engine then pulls everything back from them);
//! 3. companies, contacts and tasks: incrementally `filter[updated_at][from]=<mark>` (the
//!    largest `updated_at` seen, kept in the shadow; `from` is inclusive, so nothing in the
//!    same second is missed; amoCRM ignores this filter on accounts where API filtering is
//!    off, which costs a whole listing but loses nothing); or, on a full reconciliation,
//!    every record, and ids not seen are tombstoned (deletions). A record that cannot be
//!    mapped is skipped and reported as a row problem, never tombstoned; the rest go on.
//!    Pages are walked by number in id order; a record deleted while a listing is being
//!    paged can shift a concurrently updated one onto a page already read: the next full
//!    reconciliation catches it.
//!
//! **Writing** (`write`): amoCRM has no conditional update, so an update is checked, then
//! sent: (1) the version the engine saw must be the shadow's; (2) a fresh `GET` of the
//! record must show the same content (else the shadow takes the newer content and the
//! write-back is a [`CrmError::Conflict`]); (3) `PATCH` only the changed fields (with
//! `updated_by` = the acting user); (4) `GET` again and record what amoCRM holds. The race
//! window is between (2) and (3) — one request, well under a second at 7 requests per
//! second: an office edit of the *same fields* landing in it is overwritten by the phone's
//! value (other fields are not sent, so they are kept). Creates and deletes are refused:
//! amoCRM assigns record ids itself (a phone-created contact cannot keep the id the engine
//! gave it, and a retried create would duplicate it) and API v4 has no delete for
//! contacts, companies or tasks.

use super::api::{AmoApi, ApiAccount, ApiCompany, ApiContact, ApiTask, ApiUser};
use super::auth::{Auth, OAuthSession, CRM};
use super::mapping::{self, EventRules};
use super::AmoCrmConfig;
use crate::crm::connector::http::HttpClient;
use crate::crm::connector::settings::{no_daily_quota, OpenOptions};
use crate::crm::connector::shadow::Shadow;
use crate::crm::connector::source::{PullReport, RemoteCrm};
use crate::crm::connector::ConnectorError;
use crate::crm::{
    updated_record, CrmError, Entity, EntityKind, RowProblem, WriteBack, WriteOutcome,
};
use crate::model::{ObjectKind, OrgWideSharing, RecordRef};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// What the connector reads besides the auth.
#[derive(Debug, Clone)]
struct Settings {
    page_size: u32,
    google_domains: Vec<String>,
    org_name: String,
    time_zone: String,
    event_task_types: Vec<i64>,
    event_seconds: i64,
}

/// One kind of amoCRM record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordKind {
    Companies,
    Contacts,
    Tasks,
}

impl RecordKind {
    const ALL: [RecordKind; 3] = [
        RecordKind::Companies,
        RecordKind::Contacts,
        RecordKind::Tasks,
    ];

    fn path(self) -> &'static str {
        match self {
            RecordKind::Companies => "companies",
            RecordKind::Contacts => "contacts",
            RecordKind::Tasks => "tasks",
        }
    }

    fn entity(self) -> EntityKind {
        match self {
            RecordKind::Companies => EntityKind::Organization,
            RecordKind::Contacts => EntityKind::Contact,
            RecordKind::Tasks => EntityKind::Event,
        }
    }

    fn of(kind: ObjectKind) -> Self {
        match kind {
            ObjectKind::Contact => RecordKind::Contacts,
            ObjectKind::Organization => RecordKind::Companies,
            ObjectKind::Event => RecordKind::Tasks,
        }
    }

    /// The shadow's key for the kind's high-water mark of `updated_at`.
    fn mark_key(self) -> String {
        format!("amocrm:updated_at_mark:{}", self.path())
    }
}

/// The amoCRM connector (see the module docs).
pub struct AmoCrm {
    api: AmoApi,
    settings: Settings,
    describe: String,
    /// The zone of the last account read (tasks' times), for write-backs between reads.
    zone: Option<Tz>,
}

fn problem(kind: EntityKind, id: &str, error: impl Into<String>) -> RowProblem {
    RowProblem {
        kind: kind.as_str().to_owned(),
        id: id.to_owned(),
        version: 0,
        error: error.into(),
    }
}

impl AmoCrm {
    /// Starts the HTTP thread and loads the credentials (a missing token is a configuration
    /// error, reported before anything is sent).
    pub fn connect(config: &AmoCrmConfig, options: &OpenOptions) -> Result<Self, CrmError> {
        let clock = Arc::clone(&options.clock);
        let config_error = |m: String| CrmError::from(ConnectorError::Config(m));
        let api_base = config
            .api_base()
            .map_err(|m| config_error(format!("crm.amocrm.base_url: {m}")))?;
        let auth = match (&config.access_token, &config.oauth) {
            (Some(token), _) => Auth::LongLived {
                token: token.load()?,
                who: format!("the long-lived amoCRM token ({})", token.describe()),
            },
            (None, Some(oauth)) => Auth::OAuth(Box::new(OAuthSession::new(
                oauth.client_id.clone(),
                oauth.client_secret.load()?,
                oauth.redirect_uri.clone(),
                oauth.token_file.clone(),
                config
                    .token_url()
                    .map_err(|m| config_error(format!("crm.amocrm.base_url: {m}")))?,
            )?)),
            (None, None) => {
                return Err(config_error(
                    "crm.amocrm: give access_token or [crm.amocrm.oauth]".into(),
                ))
            }
        };
        // amoCRM limits requests per second (429), not per day.
        let http = HttpClient::start(config.common().http_config(
            &super::LIMITS,
            None,
            no_daily_quota,
            options,
        ))?;
        Ok(Self {
            describe: format!("amocrm:{api_base}"),
            api: AmoApi {
                http,
                api_base,
                auth,
                clock,
            },
            settings: Settings {
                page_size: config.page_size,
                google_domains: config.google_domains.clone(),
                org_name: config.org_name.clone(),
                time_zone: config.time_zone.clone(),
                event_task_types: config.event_task_types.clone(),
                event_seconds: i64::from(config.event_minutes) * 60,
            },
            zone: None,
        })
    }

    /// Requests sent so far (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.api.http.stats().requests
    }

    fn event_rules(&self) -> EventRules {
        EventRules {
            zone: self.zone.unwrap_or(chrono_tz::UTC),
            task_types: self.settings.event_task_types.clone(),
            default_seconds: self.settings.event_seconds,
        }
    }

    /// Reads the account: the org's name and zone.
    fn read_account(&mut self, problems: &mut Vec<RowProblem>) -> Result<ApiAccount, CrmError> {
        let query = [(
            "with".to_owned(),
            "users_groups,datetime_settings".to_owned(),
        )];
        let body = self.api.get("account", &query)?.ok_or_else(|| {
            CrmError::from(ConnectorError::Protocol {
                crm: CRM.into(),
                path: "account".into(),
                message: "no account in the answer".into(),
            })
        })?;
        let account: ApiAccount = serde_json::from_value(body).map_err(|e| {
            CrmError::from(ConnectorError::Protocol {
                crm: CRM.into(),
                path: "account".into(),
                message: format!("unreadable account: {e}"),
            })
        })?;
        let zone_name = if self.settings.time_zone.is_empty() {
            account
                .embedded
                .as_ref()
                .and_then(|e| e.datetime_settings.as_ref())
                .and_then(|d| d.timezone.clone())
                .unwrap_or_else(|| "UTC".into())
        } else {
            self.settings.time_zone.clone()
        };
        self.zone = Some(match zone_name.parse::<Tz>() {
            Ok(zone) => zone,
            Err(_) => {
                problems.push(problem(
                    EntityKind::Org,
                    crate::crm::SINGLETON_ID,
                    format!("unknown account time zone {zone_name:?}; task times are read as UTC"),
                ));
                chrono_tz::UTC
            }
        });
        Ok(account)
    }

    /// Reads every user: users, their profiles and the teams, with the org singletons.
    fn read_users(
        &mut self,
        shadow: &mut Shadow,
        account: &ApiAccount,
        problems: &mut Vec<RowProblem>,
    ) -> Result<(), CrmError> {
        let mut users: Vec<ApiUser> = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let limit = self.settings.page_size;
        self.api
            .for_each_page("users", "users", &[], limit, |items| {
                for raw in items {
                    let id = raw.get("id").and_then(Value::as_i64);
                    let shown = id.map(|i| i.to_string()).unwrap_or_else(|| "?".into());
                    if let Some(i) = id {
                        seen.insert(i.to_string());
                    }
                    match serde_json::from_value::<ApiUser>(raw) {
                        Ok(user) => users.push(user),
                        Err(e) => problems.push(problem(EntityKind::User, &shown, e.to_string())),
                    }
                }
                Ok(())
            })?;
        let name = if self.settings.org_name.is_empty() {
            account.name.clone().unwrap_or_else(|| "amoCRM".into())
        } else {
            self.settings.org_name.clone()
        };
        let mut entities = vec![
            Entity::Org(mapping::org(&name, &self.settings.google_domains)),
            Entity::OrgWideSharing(OrgWideSharing::default()),
        ];
        let mut profiles_seen = BTreeSet::new();
        let mut profile_entities = Vec::new();
        let mut user_entities = Vec::new();
        for api in &users {
            match mapping::user(api, &self.settings.google_domains) {
                Ok((user, profile)) => {
                    profiles_seen.insert(profile.id.to_string());
                    profile_entities.push(Entity::Profile(profile));
                    user_entities.push(Entity::User(user));
                }
                Err(e) => problems.push(problem(EntityKind::User, &api.id.to_string(), e)),
            }
        }
        // A user that could not be read keeps its last profile too.
        for id in &seen {
            if let Ok(n) = id.parse::<i64>() {
                if let Ok(p) = mapping::profile_id(n) {
                    profiles_seen.insert(p.to_string());
                }
            }
        }
        let teams = mapping::teams(account, &users);
        let team_ids: BTreeSet<String> = teams.iter().map(|t| t.id.to_string()).collect();
        entities.extend(teams.into_iter().map(Entity::Team));
        entities.extend(profile_entities);
        entities.extend(user_entities);
        shadow.record(&entities)?;
        for (kind, keep) in [
            (EntityKind::User, &seen),
            (EntityKind::Profile, &profiles_seen),
            (EntityKind::Team, &team_ids),
        ] {
            shadow.remove_missing(kind, keep)?;
        }
        Ok(())
    }

    /// Reads one kind of record, incrementally or fully (see the module docs).
    fn read_records(
        &mut self,
        shadow: &mut Shadow,
        kind: RecordKind,
        full: bool,
        problems: &mut Vec<RowProblem>,
    ) -> Result<(), CrmError> {
        let mark: Option<i64> = shadow.state(&kind.mark_key())?.and_then(|m| m.parse().ok());
        let incremental = !full && mark.is_some();
        let mut query: Vec<(String, String)> = Vec::new();
        if let (true, Some(m)) = (incremental, mark) {
            query.push(("filter[updated_at][from]".into(), m.to_string()));
        }
        if kind == RecordKind::Tasks && !incremental {
            // A full read needs only the synced types (a type change shows as a missing
            // id); an incremental one reads every type, so a task that changed type drops.
            for t in &self.settings.event_task_types {
                query.push(("filter[task_type][]".into(), t.to_string()));
            }
        }
        query.push(("order[id]".into(), "asc".into()));
        let rules = self.event_rules();
        let entity_kind = kind.entity();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut newest = mark;
        self.api.for_each_page(
            kind.path(),
            kind.path(),
            &query,
            self.settings.page_size,
            |items| {
                let mut live = Vec::new();
                let mut gone = Vec::new();
                for raw in items {
                    let Some(id) = raw.get("id").and_then(Value::as_i64) else {
                        problems.push(problem(entity_kind, "?", "a record without an id"));
                        continue;
                    };
                    let id = id.to_string();
                    seen.insert(id.clone());
                    if let Some(at) = raw.get("updated_at").and_then(Value::as_i64) {
                        newest = Some(newest.map_or(at, |n| n.max(at)));
                    }
                    match map_record(kind, raw, &rules) {
                        Ok(Some(entity)) => live.push(entity),
                        Ok(None) => gone.push(id),
                        Err(e) => problems.push(problem(entity_kind, &id, e)),
                    }
                }
                shadow.record(&live)?;
                shadow.remove(entity_kind, &gone)?;
                Ok(())
            },
        )?;
        if !incremental {
            shadow.remove_missing(entity_kind, &seen)?;
        }
        if let Some(n) = newest {
            shadow.set_state(&kind.mark_key(), &n.to_string())?;
        }
        Ok(())
    }

    /// One record as amoCRM holds it now: `Ok(None)` when it is gone (or no longer an
    /// event), which is tombstoned in the shadow at once.
    fn fetch(
        &mut self,
        shadow: &mut Shadow,
        record: &RecordRef,
    ) -> Result<Option<Entity>, CrmError> {
        let kind = RecordKind::of(record.kind);
        let path = format!("{}/{}", kind.path(), record.id);
        let entity = match self.api.get(&path, &[])? {
            None => None,
            Some(raw) => map_record(kind, raw, &self.event_rules()).map_err(|e| {
                CrmError::from(ConnectorError::Protocol {
                    crm: CRM.into(),
                    path: path.clone(),
                    message: format!("amoCRM's copy of {record} is unreadable: {e}"),
                })
            })?,
        };
        if entity.is_none() {
            shadow.remove(kind.entity(), &[record.id.to_string()])?;
        }
        Ok(entity)
    }

    fn update(
        &mut self,
        shadow: &mut Shadow,
        record: &RecordRef,
        expected: i64,
        acting: &crate::model::UserId,
        fields: &Map<String, Value>,
    ) -> Result<WriteOutcome, CrmError> {
        let (current, seen) = shadow.expect_version(record, expected)?;
        let target = updated_record(record, &seen, fields)?;
        if target.without_stamp() == seen.without_stamp() {
            return Ok(WriteOutcome {
                record: record.clone(),
                version: current,
            });
        }
        let body = match &target {
            Entity::Contact(c) => mapping::contact_patch(c, fields, acting)?,
            Entity::Organization(o) => mapping::company_patch(o, fields, acting)?,
            Entity::Event(e) => mapping::event_patch(e, fields, acting)?,
            other => {
                return Err(CrmError::Refused(format!(
                    "a {} cannot be written back",
                    other.kind()
                )))
            }
        };
        // amoCRM has no conditional write: check its copy first (see the module docs).
        let fresh = self
            .fetch(shadow, record)?
            .ok_or_else(|| CrmError::NotFound(record.clone()))?;
        shadow.recheck(record, expected, fresh)?;
        let path = format!("{}/{}", RecordKind::of(record.kind).path(), record.id);
        self.api.patch(&path, body)?;
        // What amoCRM holds now is what the shadow records (and the engine's new version).
        let after = self
            .fetch(shadow, record)?
            .ok_or_else(|| CrmError::NotFound(record.clone()))?;
        shadow.record(std::slice::from_ref(&after))?;
        let (version, _) = shadow
            .get(after.kind(), record.id.as_str())?
            .ok_or_else(|| CrmError::NotFound(record.clone()))?;
        Ok(WriteOutcome {
            record: record.clone(),
            version,
        })
    }
}

/// Maps one listed record: `Ok(Some)` live, `Ok(None)` gone (deleted, or a task that is not
/// an event), `Err` unreadable.
fn map_record(kind: RecordKind, raw: Value, rules: &EventRules) -> Result<Option<Entity>, String> {
    match kind {
        RecordKind::Contacts => serde_json::from_value::<ApiContact>(raw)
            .map_err(|e| e.to_string())
            .and_then(|c| mapping::contact(&c))
            .map(|c| c.map(Entity::Contact)),
        RecordKind::Companies => serde_json::from_value::<ApiCompany>(raw)
            .map_err(|e| e.to_string())
            .and_then(|c| mapping::organization(&c))
            .map(|o| o.map(Entity::Organization)),
        RecordKind::Tasks => serde_json::from_value::<ApiTask>(raw)
            .map_err(|e| e.to_string())
            .and_then(|t| mapping::event(&t, rules))
            .map(|e| e.map(Entity::Event)),
    }
}

impl RemoteCrm for AmoCrm {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn pull(&mut self, shadow: &mut Shadow, full: bool) -> Result<PullReport, CrmError> {
        let mut problems = Vec::new();
        let account = self.read_account(&mut problems)?;
        self.read_users(shadow, &account, &mut problems)?;
        for kind in RecordKind::ALL {
            self.read_records(shadow, kind, full, &mut problems)?;
        }
        Ok(PullReport {
            problems,
            reconciled: full,
        })
    }

    fn write(&mut self, shadow: &mut Shadow, write: &WriteBack) -> Result<WriteOutcome, CrmError> {
        match write {
            WriteBack::Update {
                record,
                expected_version,
                acting_user,
                fields,
            } => {
                if self.zone.is_none() {
                    let mut ignored = Vec::new();
                    self.read_account(&mut ignored)?;
                }
                self.update(shadow, record, *expected_version, acting_user, fields)
            }
            WriteBack::Create { entity, .. } => Err(CrmError::Refused(format!(
                "amoCRM assigns record ids itself, so crmsync does not create {}s there: the \
                 phone's new item stays on the phone and is reported",
                entity.kind()
            ))),
            WriteBack::Delete { record, .. } => Err(CrmError::Refused(format!(
                "amoCRM API v4 cannot delete a {}: the phone's copy is restored",
                record.kind
            ))),
        }
    }
}
