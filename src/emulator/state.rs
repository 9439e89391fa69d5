//! The emulator's data: one isolated [`UserData`] per impersonated subject (calendars with
//! their events and ACLs, contacts and contact groups), OAuth tokens, the clock offset, and
//! the runtime settings. Everything persisted lives in [`StoreData`] (serialised as JSON to
//! the state file); quota windows, faults and counters are in-memory only.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use google_calendar3::api::{AclRule, AclRuleScope, Calendar, Event};
use google_people1::api::{ContactGroup, Person};
use serde::{Deserialize, Serialize};

use super::faults::FaultState;
use super::oauth::TokenStore;
use super::quota::QuotaState;
use super::{Counters, EmulatorError, EmulatorSettings};

/// Version tag of the state file format.
const STATE_FORMAT: u32 = 1;

/// Everything that survives a restart when a state file is configured.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct StoreData {
    pub format: u32,
    pub users: BTreeMap<String, UserData>,
    pub tokens: TokenStore,
    /// Milliseconds the emulator clock runs ahead of the wall clock.
    pub clock_offset_ms: i64,
    /// Serial behind secondary calendar ids, which are unique across all users (as Google's).
    pub calendar_serial: u64,
}

impl StoreData {
    /// A secondary calendar id no user has: `c_<26 base32hex>@group.calendar.google.com`,
    /// from a bijective mix of a global serial (checked against every calendar anyway, for
    /// state files written before the serial existed).
    pub fn new_calendar_id(&mut self) -> String {
        loop {
            self.calendar_serial += 1;
            let mixed = self
                .calendar_serial
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
            let mut body = String::with_capacity(26);
            let mut rest = u128::from(mixed) << 64 | u128::from(self.calendar_serial);
            for _ in 0..26 {
                let digit = (rest % 32) as u8;
                rest /= 32;
                body.push(char::from(if digit < 10 {
                    b'0' + digit
                } else {
                    b'a' + digit - 10
                }));
            }
            let id = format!("c_{body}@group.calendar.google.com");
            if !self.users.values().any(|u| u.calendars.contains_key(&id)) {
                return id;
            }
        }
    }
}

/// One Google account's data; nothing here is visible to any other subject.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct UserData {
    pub email: String,
    pub calendars: BTreeMap<String, CalendarData>,
    /// Emulator-clock times of recent `calendars.insert` calls (creation quota).
    pub calendar_creations: Vec<DateTime<Utc>>,
    pub people: PeopleData,
    /// Per-user counter for etags and generated ids.
    pub next_id: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct CalendarData {
    pub meta: Calendar,
    pub primary: bool,
    /// The OAuth client (app) that created this secondary calendar; `None` for primary
    /// calendars. Tokens whose only calendar scope is `calendar.app.created` see a calendar
    /// only if their client created it.
    pub created_by_app: Option<String>,
    pub events: BTreeMap<String, StoredEvent>,
    pub acl: BTreeMap<String, AclRule>,
    /// Change bookkeeping of the ACL (sync tokens, deleted rules).
    pub acl_log: super::acl::AclLog,
    /// Change sequence: every event write takes the next value.
    pub seq: u64,
    /// Bumped to invalidate every sync token issued for this calendar.
    pub sync_epoch: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    pub event: Event,
    pub seq: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct PeopleData {
    /// By current resource name; deleted contacts stay as tombstones.
    pub contacts: BTreeMap<String, StoredPerson>,
    pub groups: BTreeMap<String, StoredGroup>,
    pub seq: u64,
    pub sync_epoch: u64,
    pub group_seq: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StoredPerson {
    pub person: Person,
    pub seq: u64,
    /// Emulator time of the last change (propagation delay).
    pub changed_at: DateTime<Utc>,
    pub deleted: bool,
    /// Earlier versions listings may still show while this one propagates (oldest first;
    /// empty without a propagation delay).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<StoredPerson>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StoredGroup {
    pub group: ContactGroup,
    pub seq: u64,
    pub deleted: bool,
}

/// System contact groups every account has.
pub(crate) const SYSTEM_GROUPS: &[(&str, &str)] = &[
    ("myContacts", "My Contacts"),
    ("starred", "Starred"),
    ("friends", "Friends"),
    ("family", "Family"),
    ("coworkers", "Coworkers"),
];

impl UserData {
    pub fn new(email: &str, now: DateTime<Utc>) -> UserData {
        let mut user = UserData {
            email: email.to_string(),
            ..Default::default()
        };
        let mut primary = CalendarData {
            meta: Calendar {
                kind: Some("calendar#calendar".into()),
                id: Some(email.to_string()),
                summary: Some(email.to_string()),
                time_zone: Some("UTC".into()),
                ..Default::default()
            },
            primary: true,
            ..Default::default()
        };
        primary.meta.etag = Some(user.next_etag());
        primary
            .acl
            .insert(format!("user:{email}"), owner_rule(email, user.next_etag()));
        user.calendars.insert(email.to_string(), primary);
        for (id, name) in SYSTEM_GROUPS {
            let etag = user.next_people_etag();
            user.people.groups.insert(
                format!("contactGroups/{id}"),
                StoredGroup {
                    group: ContactGroup {
                        resource_name: Some(format!("contactGroups/{id}")),
                        etag: Some(etag),
                        name: Some((*id).to_string()),
                        formatted_name: Some((*name).to_string()),
                        group_type: Some("SYSTEM_CONTACT_GROUP".into()),
                        metadata: Some(google_people1::api::ContactGroupMetadata {
                            update_time: Some(now.trunc_subsecs(3)),
                            deleted: None,
                        }),
                        ..Default::default()
                    },
                    seq: 0,
                    deleted: false,
                },
            );
        }
        user
    }

    pub fn bump(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A Calendar-style etag: a quoted decimal number.
    pub fn next_etag(&mut self) -> String {
        let n = self.bump();
        format!("\"{}\"", 3_400_000_000_000_000u64 + n)
    }

    /// A People-style etag: `%` followed by base64.
    pub fn next_people_etag(&mut self) -> String {
        use base64::Engine as _;
        let n = self.bump();
        let mut bytes = b"emu".to_vec();
        bytes.extend_from_slice(&n.to_be_bytes());
        format!(
            "%{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }
}

pub(crate) fn owner_rule(email: &str, etag: String) -> AclRule {
    AclRule {
        kind: Some("calendar#aclRule".into()),
        etag: Some(etag),
        id: Some(format!("user:{email}")),
        role: Some("owner".into()),
        scope: Some(AclRuleScope {
            type_: Some("user".into()),
            value: Some(email.to_string()),
        }),
    }
}

/// All mutable emulator state, behind one mutex.
pub(crate) struct Inner {
    pub data: StoreData,
    pub settings: EmulatorSettings,
    pub quota: QuotaState,
    pub faults: FaultState,
    pub counters: Counters,
    /// Set by every successful write; cleared when the state file is written.
    pub dirty: bool,
}

impl Inner {
    pub fn new(settings: EmulatorSettings, fault_seed: u64) -> Inner {
        Inner {
            data: StoreData {
                format: STATE_FORMAT,
                ..Default::default()
            },
            settings,
            quota: QuotaState::default(),
            faults: FaultState::new(fault_seed),
            counters: Counters::default(),
            dirty: false,
        }
    }

    /// The emulator clock: wall clock plus the offset advanced through the control API,
    /// truncated to milliseconds (Google's timestamps have millisecond precision).
    pub fn now(&self) -> DateTime<Utc> {
        (Utc::now() + Duration::milliseconds(self.data.clock_offset_ms)).trunc_subsecs(3)
    }

    /// The subject's data, created on first use (a fresh account with a primary calendar and
    /// the system contact groups).
    pub fn user_mut(&mut self, email: &str) -> &mut UserData {
        let now = self.now();
        self.data
            .users
            .entry(email.to_string())
            .or_insert_with(|| UserData::new(email, now))
    }

    /// Forget all data, tokens, faults, counters and quota windows; keep settings.
    pub fn reset(&mut self) {
        let seed = self.faults.seed();
        self.data = StoreData {
            format: STATE_FORMAT,
            ..Default::default()
        };
        self.quota = QuotaState::default();
        self.faults = FaultState::new(seed);
        self.counters = Counters::default();
        self.dirty = true;
    }
}

/// Write the persisted part atomically (temporary file + rename).
pub(crate) fn save(path: &Path, data: &StoreData) -> Result<(), EmulatorError> {
    let bytes = serde_json::to_vec(data).map_err(|e| EmulatorError::State(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| EmulatorError::Io(tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| EmulatorError::Io(path.display().to_string(), e))
}

/// Read the state file; a missing file is an empty state.
pub(crate) fn load(path: &Path) -> Result<Option<StoreData>, EmulatorError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| EmulatorError::State(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EmulatorError::Io(path.display().to_string(), e)),
    }
}
