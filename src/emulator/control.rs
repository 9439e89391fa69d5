//! The control and inspection API: typed methods on [`EmulatorHandle`] (used in-process by
//! tests) and the same operations as JSON routes under `/_emulator/`:
//!
//! | method | path | body / answer |
//! |---|---|---|
//! | POST | `/_emulator/reset` | forget all data, tokens, faults, counters |
//! | GET | `/_emulator/users` | `["a@x", ...]` |
//! | GET | `/_emulator/users/{email}` | [`UserDump`] (404 if unknown) |
//! | POST | `/_emulator/sync-tokens/expire` | `{"user"?: "a@x", "api"?: "calendar"\|"people"}` |
//! | GET/POST/DELETE | `/_emulator/faults` | list / add [`FaultRule`] → `{"id"}` / clear |
//! | DELETE | `/_emulator/faults/{id}` | remove one rule |
//! | POST | `/_emulator/faults/seed` | `{"seed": 7}` re-seed the fault RNG |
//! | GET/PUT | `/_emulator/settings` | [`EmulatorSettings`] |
//! | GET | `/_emulator/clock` | `{"now": RFC 3339, "offset_ms"}` |
//! | POST | `/_emulator/clock/advance` | `{"seconds": 60}` or `{"ms": 1500}` |
//! | POST | `/_emulator/contacts/rename` | `{"user", "resource_name"}` → [`ContactRename`] |
//! | POST | `/_emulator/refresh-tokens` | `{"user", "scopes": [...]}` → `{"refresh_token"}` |
//! | POST | `/_emulator/access-tokens` | `{"user", "scopes": [...]}` → `{"access_token"}` |
//! | GET | `/_emulator/counters` | [`Counters`] |
//! | POST | `/_emulator/counters/reset` | zero the counters |
//! | POST | `/_emulator/save` | write the state file now |

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use google_calendar3::api::{AclRule, Calendar, Event};
use google_people1::api::{ContactGroup, Person};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::faults::{ActiveFault, FaultRule};
use super::oauth;
use super::state::{self, Inner};
use super::wire::{ApiResponse, RawRequest};
use super::{ApiFamily, Counters, EmulatorError, EmulatorOptions, EmulatorSettings};

pub(crate) struct Core {
    inner: Mutex<Inner>,
    pub domains: Vec<String>,
    pub public_key: Vec<u8>,
    pub state_file: Option<PathBuf>,
}

/// A cheap, cloneable handle on a running (or not yet serving) emulator.
#[derive(Clone)]
pub struct EmulatorHandle {
    pub(crate) core: Arc<Core>,
}

/// One calendar in a [`UserDump`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CalendarDump {
    pub calendar: Calendar,
    pub primary: bool,
    pub acl: Vec<AclRule>,
    /// Every stored event, cancelled ones included (`status: "cancelled"`).
    pub events: Vec<Event>,
}

/// One contact in a [`UserDump`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContactDump {
    pub person: Person,
    pub deleted: bool,
}

/// Everything one user has.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserDump {
    pub email: String,
    pub calendars: Vec<CalendarDump>,
    pub contacts: Vec<ContactDump>,
    /// Live contact groups (system and user groups).
    pub groups: Vec<ContactGroup>,
}

impl UserDump {
    /// Live (non-cancelled) events of the calendar with this id.
    pub fn live_events(&self, calendar_id: &str) -> Vec<&Event> {
        self.calendars
            .iter()
            .filter(|c| c.calendar.id.as_deref() == Some(calendar_id))
            .flat_map(|c| c.events.iter())
            .filter(|e| e.status.as_deref() != Some("cancelled"))
            .collect()
    }

    /// Live (non-deleted) contacts.
    pub fn live_contacts(&self) -> Vec<&Person> {
        self.contacts
            .iter()
            .filter(|c| !c.deleted)
            .map(|c| &c.person)
            .collect()
    }
}

/// Result of renaming a contact's resource name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContactRename {
    pub old_resource_name: String,
    pub new_resource_name: String,
}

impl EmulatorHandle {
    /// Build the emulator state (loading the state file if configured).
    pub fn new(options: EmulatorOptions) -> Result<EmulatorHandle, EmulatorError> {
        let mut inner = Inner::new(options.settings.clone(), options.fault_seed);
        if let Some(path) = &options.state_file {
            if let Some(data) = state::load(path)? {
                inner.data = data;
            }
        }
        Ok(EmulatorHandle {
            core: Arc::new(Core {
                inner: Mutex::new(inner),
                domains: options.domains.clone(),
                public_key: oauth::test_public_key_der(),
                state_file: options.state_file.clone(),
            }),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.core
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forget all data, tokens, faults, counters and quota windows (settings stay).
    pub fn reset(&self) {
        self.lock().reset();
    }

    /// Users that have data.
    pub fn users(&self) -> Vec<String> {
        self.lock().data.users.keys().cloned().collect()
    }

    /// Everything `user` has, or `None` if the user never made a call.
    pub fn dump_user(&self, user: &str) -> Option<UserDump> {
        let inner = self.lock();
        let data = inner.data.users.get(user)?;
        Some(UserDump {
            email: data.email.clone(),
            calendars: data
                .calendars
                .values()
                .map(|c| CalendarDump {
                    calendar: c.meta.clone(),
                    primary: c.primary,
                    acl: c.acl.values().cloned().collect(),
                    events: c.events.values().map(|s| s.event.clone()).collect(),
                })
                .collect(),
            contacts: data
                .people
                .contacts
                .values()
                .map(|c| ContactDump {
                    person: c.person.clone(),
                    deleted: c.deleted,
                })
                .collect(),
            groups: data
                .people
                .groups
                .values()
                .filter(|g| !g.deleted)
                .map(|g| g.group.clone())
                .collect(),
        })
    }

    /// Invalidate sync tokens of one user (or all users), for one API (or both). The next
    /// incremental listing answers 410 `fullSyncRequired` (Calendar) or 400
    /// `EXPIRED_SYNC_TOKEN` (People).
    pub fn expire_sync_tokens(&self, user: Option<&str>, api: Option<ApiFamily>) {
        let mut inner = self.lock();
        for (email, data) in inner.data.users.iter_mut() {
            if user.is_some_and(|u| u != email) {
                continue;
            }
            if api != Some(ApiFamily::People) {
                super::calendar::expire_sync_tokens(data);
            }
            if api != Some(ApiFamily::Calendar) {
                super::people::expire_sync_tokens(data);
            }
        }
        inner.dirty = true;
    }

    /// Add a fault rule; returns its id.
    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        self.lock().faults.add(rule)
    }

    pub fn remove_fault(&self, id: u64) -> bool {
        self.lock().faults.remove(id)
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn faults(&self) -> Vec<ActiveFault> {
        self.lock().faults.list()
    }

    /// Re-seed the RNG behind rate-based faults.
    pub fn reseed_faults(&self, seed: u64) {
        self.lock().faults.reseed(seed);
    }

    pub fn settings(&self) -> EmulatorSettings {
        self.lock().settings.clone()
    }

    pub fn set_settings(&self, settings: EmulatorSettings) {
        self.lock().settings = settings;
    }

    /// Move the emulator clock forward (quota windows, sync-token age, propagation delay).
    pub fn advance_clock(&self, by: std::time::Duration) {
        let mut inner = self.lock();
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2);
        inner.data.clock_offset_ms = inner.data.clock_offset_ms.saturating_add(ms);
        inner.dirty = true;
    }

    /// The emulator clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.lock().now()
    }

    /// Give `user`'s contact a new resource name; the old one then answers 404.
    pub fn rename_contact(&self, user: &str, resource_name: &str) -> Result<ContactRename, String> {
        let mut inner = self.lock();
        let now = inner.now();
        let at = super::people::Stamp::new(now, &inner.settings);
        let data = inner
            .data
            .users
            .get_mut(user)
            .ok_or_else(|| format!("unknown user {user}"))?;
        let new = super::people::rename_contact(data, resource_name, at)
            .map_err(|e| e.message.clone())?;
        inner.dirty = true;
        Ok(ContactRename {
            old_resource_name: resource_name.to_string(),
            new_resource_name: new,
        })
    }

    /// Mint a refresh token for `user` (stands in for the installed-app consent flow).
    pub fn mint_refresh_token(&self, user: &str, scopes: &[&str]) -> Result<String, String> {
        oauth::check_subject(user, &self.core.domains).map_err(|e| e.description)?;
        let mut inner = self.lock();
        inner.dirty = true;
        Ok(inner.data.tokens.issue_refresh(
            user,
            oauth::INSTALLED_APP_CLIENT,
            scopes.iter().map(|s| s.to_string()).collect(),
        ))
    }

    /// Mint an access token for `user` directly (for hand-written HTTP in tests). It belongs
    /// to the same app as the test service account (`calendar.app.created` reaches the
    /// calendars that account created).
    pub fn mint_access_token(&self, user: &str, scopes: &[&str]) -> Result<String, String> {
        oauth::check_subject(user, &self.core.domains).map_err(|e| e.description)?;
        let mut inner = self.lock();
        let lifetime = inner.settings.access_token_lifetime_secs;
        inner.dirty = true;
        Ok(inner
            .data
            .tokens
            .issue_access(
                user,
                oauth::TEST_SERVICE_ACCOUNT_EMAIL,
                scopes.iter().map(|s| s.to_string()).collect(),
                lifetime,
                None,
            )
            .0)
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    pub fn reset_counters(&self) {
        self.lock().counters = Counters::default();
    }

    /// Write the state file now (no-op without one).
    pub fn save(&self) -> Result<(), EmulatorError> {
        let Some(path) = &self.core.state_file else {
            return Ok(());
        };
        let mut inner = self.lock();
        state::save(path, &inner.data)?;
        inner.dirty = false;
        Ok(())
    }

    pub(crate) fn save_if_dirty(&self) -> Result<(), EmulatorError> {
        if self.core.state_file.is_some() && self.lock().dirty {
            self.save()?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct ExpireBody {
    user: Option<String>,
    api: Option<ApiFamilyName>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ApiFamilyName {
    Calendar,
    People,
}

#[derive(Deserialize)]
struct AdvanceBody {
    seconds: Option<u64>,
    ms: Option<u64>,
}

#[derive(Deserialize)]
struct RenameBody {
    user: String,
    resource_name: String,
}

#[derive(Deserialize)]
struct MintBody {
    user: String,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct SeedBody {
    seed: u64,
}

fn error(status: u16, message: impl Into<String>) -> ApiResponse {
    ApiResponse::json_value(
        status,
        &json!({"error": {"code": status, "message": message.into()}}),
    )
}

fn body<T: serde::de::DeserializeOwned>(req: &RawRequest) -> Result<T, ApiResponse> {
    let bytes: &[u8] = if req.body.is_empty() {
        b"{}"
    } else {
        &req.body
    };
    serde_json::from_slice(bytes).map_err(|e| error(400, format!("invalid JSON body: {e}")))
}

/// Serve one `/_emulator/...` request.
pub(crate) fn handle_control(handle: &EmulatorHandle, req: &RawRequest) -> ApiResponse {
    handle.lock().counters.control_requests += 1;
    match route_control(handle, req) {
        Ok(r) | Err(r) => r,
    }
}

fn route_control(handle: &EmulatorHandle, req: &RawRequest) -> Result<ApiResponse, ApiResponse> {
    let segs = req.segments_after("/_emulator").unwrap_or_default();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let ok = |v: Value| Ok(ApiResponse::json_value(200, &v));
    match (req.method.as_str(), s.as_slice()) {
        ("POST", ["reset"]) => {
            handle.reset();
            ok(json!({}))
        }
        ("GET", ["users"]) => ok(json!(handle.users())),
        ("GET", ["users", user]) => match handle.dump_user(user) {
            Some(dump) => Ok(ApiResponse::json(200, &dump)),
            None => Err(error(404, format!("unknown user {user}"))),
        },
        ("POST", ["sync-tokens", "expire"]) => {
            let b: ExpireBody = body(req)?;
            let api = b.api.map(|a| match a {
                ApiFamilyName::Calendar => ApiFamily::Calendar,
                ApiFamilyName::People => ApiFamily::People,
            });
            handle.expire_sync_tokens(b.user.as_deref(), api);
            ok(json!({}))
        }
        ("GET", ["faults"]) => Ok(ApiResponse::json(200, &handle.faults())),
        ("POST", ["faults"]) => {
            let rule: FaultRule = body(req)?;
            ok(json!({"id": handle.add_fault(rule)}))
        }
        ("DELETE", ["faults"]) => {
            handle.clear_faults();
            ok(json!({}))
        }
        ("POST", ["faults", "seed"]) => {
            let b: SeedBody = body(req)?;
            handle.reseed_faults(b.seed);
            ok(json!({}))
        }
        ("DELETE", ["faults", id]) => {
            let id: u64 = id
                .parse()
                .map_err(|_| error(400, "fault id must be a number"))?;
            if handle.remove_fault(id) {
                ok(json!({}))
            } else {
                Err(error(404, format!("no fault {id}")))
            }
        }
        ("GET", ["settings"]) => Ok(ApiResponse::json(200, &handle.settings())),
        ("PUT", ["settings"]) => {
            let settings: EmulatorSettings = body(req)?;
            handle.set_settings(settings.clone());
            Ok(ApiResponse::json(200, &settings))
        }
        ("GET", ["clock"]) => {
            let inner = handle.lock();
            ok(json!({"now": inner.now().to_rfc3339(), "offset_ms": inner.data.clock_offset_ms}))
        }
        ("POST", ["clock", "advance"]) => {
            let b: AdvanceBody = body(req)?;
            let ms = b.ms.unwrap_or(0) + b.seconds.unwrap_or(0).saturating_mul(1000);
            handle.advance_clock(std::time::Duration::from_millis(ms));
            ok(json!({"now": handle.now().to_rfc3339()}))
        }
        ("POST", ["contacts", "rename"]) => {
            let b: RenameBody = body(req)?;
            handle
                .rename_contact(&b.user, &b.resource_name)
                .map(|r| ApiResponse::json(200, &r))
                .map_err(|e| error(404, e))
        }
        ("POST", ["refresh-tokens"]) => {
            let b: MintBody = body(req)?;
            let scopes: Vec<&str> = b.scopes.iter().map(String::as_str).collect();
            handle
                .mint_refresh_token(&b.user, &scopes)
                .map(|t| ApiResponse::json_value(200, &json!({"refresh_token": t})))
                .map_err(|e| error(400, e))
        }
        ("POST", ["access-tokens"]) => {
            let b: MintBody = body(req)?;
            let scopes: Vec<&str> = b.scopes.iter().map(String::as_str).collect();
            handle
                .mint_access_token(&b.user, &scopes)
                .map(|t| ApiResponse::json_value(200, &json!({"access_token": t})))
                .map_err(|e| error(400, e))
        }
        ("GET", ["counters"]) => Ok(ApiResponse::json(200, &handle.counters())),
        ("POST", ["counters", "reset"]) => {
            handle.reset_counters();
            ok(json!({}))
        }
        ("POST", ["save"]) => handle
            .save()
            .map(|_| ApiResponse::json_value(200, &json!({})))
            .map_err(|e| error(500, e.to_string())),
        _ => Err(error(
            404,
            format!("no control route {} {}", req.method, req.path),
        )),
    }
}
