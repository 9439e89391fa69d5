//! A Google API emulator: Calendar v3, People v1 and the OAuth 2.0 token endpoint on one port,
//! as strict as Google where sync engines break (sync tokens, etags, reserved ids, quotas),
//! plus fault injection and a control/inspection API under `/_emulator/`.
//!
//! Layout:
//! - [`server`]: the hyper accept loop, request dispatch and the per-call pipeline
//!   (auth → counters → faults → quota → handler);
//! - `calendar`, `acl`, `people`, `recurrence`: the emulated resources;
//! - `batch`: `POST /batch/calendar/v3` (multipart/mixed);
//! - [`oauth`]: JWT bearer and refresh-token grants, revocation;
//! - [`scopes`]: the method → scopes table and the scope check;
//! - `times`: event `start`/`end` as Google reads them (offsets, local time + `timeZone`);
//! - [`faults`], `quota`, `state`, `tokens`, `wire`: infrastructure;
//! - [`control`]: `/_emulator/` routes and the typed [`EmulatorHandle`];
//! - [`TestEmulator`]: the in-process helper for tests.
//!
//! Deviations from Google are listed in `docs`-style comments where they occur and in
//! [`DEVIATIONS`].

mod acl;
mod batch;
mod calendar;
pub mod control;
pub mod faults;
pub mod oauth;
mod people;
mod quota;
mod recurrence;
pub mod scopes;
pub mod server;
mod state;
mod test_support;
mod times;
mod tokens;
mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use control::{ContactRename, EmulatorHandle, UserDump};
pub use faults::{ActiveFault, FaultKind, FaultMatch, FaultRule, FaultTrigger};
pub use oauth::{GOOGLE_TOKEN_AUDIENCE, TEST_SERVICE_ACCOUNT_EMAIL};
pub use test_support::TestEmulator;
pub use wire::ApiFamily;

/// Known, deliberate differences from Google (kept short; see module docs for detail).
pub const DEVIATIONS: &[&str] = &[
    "Calendar dateTime values are returned in UTC (Z); the event's timeZone is kept separately (Google answers in the event's or calendar's zone).",
    "Access-token lifetime is measured on the wall clock; advancing the emulator clock does not expire them.",
    "events.list with singleEvents=true and a syncToken is refused (400) instead of expanding changed series.",
    "calendarList.list has no sync tokens; calendars shared through ACLs do not appear in other users' lists, and another user's calendar is never reachable (404), whatever its ACL.",
    "People batch calls count as one request against the per-user write quota.",
    "batchDeleteContacts with an unknown or deleted resource name fails the whole batch with 404.",
    "Concurrent People mutations for one user are not rejected (Google may fail them).",
    "Scopes that give Google's reduced views (calendar.events.freebusy, calendar.events.public.readonly, the profile scopes for people/me) are refused instead (403).",
    "A token whose only calendar scope is calendar.app.created gets 404 for calendars its app did not create (Google does not document the answer).",
    "A propagation delay raised at runtime applies to People writes made after the change; earlier writes are already visible.",
    "Errors of refused event times use reason invalid/required with the emulator's own messages beyond \"Missing time zone definition for start time.\".",
    "acl.insert for a scope that already has a rule replaces its role; sendNotifications is accepted and ignored.",
];

/// Rate limits. Every limit is a sliding window of 60 s on the emulator clock, except the
/// calendar-creation limit which has its own window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaConfig {
    /// Calendar requests per user per minute (Google: 600). Batch parts count one each.
    pub calendar_per_user_per_minute: Option<u32>,
    /// Calendar requests per project (all users) per minute (Google: 10,000).
    pub calendar_per_project_per_minute: Option<u32>,
    /// People mutations per user per minute. Default 90, after community reports of Google's
    /// per-user write limit (GOOGLE_API.md); a batch call counts as one.
    pub people_writes_per_user_per_minute: Option<u32>,
    /// People reads per user per minute (default: unlimited).
    pub people_reads_per_user_per_minute: Option<u32>,
    /// `calendars.insert` per user within `calendar_creation_window_secs` (default 25).
    pub calendar_creations_per_user: Option<u32>,
    /// Window of the calendar-creation limit (default 3600 s).
    pub calendar_creation_window_secs: u64,
    /// HTTP status of a call refused by the per-project Calendar limit: 403 (default) or 429,
    /// both `usageLimits`/`rateLimitExceeded` — Google documents either. (The per-user limit
    /// always answers 403 `userRateLimitExceeded`.)
    pub calendar_project_limit_status: u16,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            calendar_per_user_per_minute: Some(600),
            calendar_per_project_per_minute: Some(10_000),
            people_writes_per_user_per_minute: Some(90),
            people_reads_per_user_per_minute: None,
            calendar_creations_per_user: Some(25),
            calendar_creation_window_secs: 3600,
            calendar_project_limit_status: 403,
        }
    }
}

impl QuotaConfig {
    /// No limits at all (benchmarks, bulk fixtures).
    pub fn unlimited() -> QuotaConfig {
        QuotaConfig {
            calendar_per_user_per_minute: None,
            calendar_per_project_per_minute: None,
            people_writes_per_user_per_minute: None,
            people_reads_per_user_per_minute: None,
            calendar_creations_per_user: None,
            calendar_creation_window_secs: 3600,
            calendar_project_limit_status: 403,
        }
    }
}

/// Settings that can be changed at runtime through the control API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmulatorSettings {
    pub quota: QuotaConfig,
    /// People writes stay invisible to sync-token listings for this long (default 0).
    pub people_propagation_delay_ms: u64,
    /// Calendar sync tokens older than this answer 410 (default: no age limit; Google
    /// publishes none, and tokens can still be expired on demand).
    pub calendar_sync_token_max_age_secs: Option<u64>,
    /// People sync tokens older than this answer EXPIRED_SYNC_TOKEN (default 7 days).
    pub people_sync_token_max_age_secs: Option<u64>,
    /// Lifetime of access tokens (default 3600 s, wall clock).
    pub access_token_lifetime_secs: u64,
}

impl Default for EmulatorSettings {
    fn default() -> Self {
        EmulatorSettings {
            quota: QuotaConfig::default(),
            people_propagation_delay_ms: 0,
            calendar_sync_token_max_age_secs: None,
            people_sync_token_max_age_secs: Some(7 * 24 * 3600),
            access_token_lifetime_secs: 3600,
        }
    }
}

/// How to run the emulator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmulatorOptions {
    /// With domains, only subjects in them get tokens (others: 400 `invalid_grant`).
    pub domains: Vec<String>,
    /// Persist state to this file (written shortly after changes and at shutdown) and
    /// reload it at start.
    pub state_file: Option<PathBuf>,
    pub settings: EmulatorSettings,
    /// Seed of the RNG behind rate-based faults.
    pub fault_seed: u64,
}

/// Request counters, as read through the control API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Calendar/People operations executed or refused (batch parts count one each; the batch
    /// envelope, token and control requests do not count).
    pub api_calls: u64,
    /// HTTP requests to the APIs (a batch counts once).
    pub http_requests: u64,
    pub token_requests: u64,
    pub control_requests: u64,
    /// TCP connections accepted (every client's pool shows here: a client per account
    /// opens connections per account).
    #[serde(default)]
    pub connections: u64,
    pub faults_injected: u64,
    pub quota_rejections: u64,
    /// By Google method id (`calendar.events.insert`, `calendar.batch`, `oauth2.token`, ...).
    pub by_endpoint: BTreeMap<String, u64>,
    /// API calls by impersonated user.
    pub by_user: BTreeMap<String, u64>,
    /// API calls by user, then method id.
    pub by_user_endpoint: BTreeMap<String, BTreeMap<String, u64>>,
    /// API responses by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
}

impl Counters {
    pub(crate) fn record_call(&mut self, endpoint: &str, user: Option<&str>) {
        self.api_calls += 1;
        *self.by_endpoint.entry(endpoint.to_string()).or_default() += 1;
        if let Some(user) = user {
            *self.by_user.entry(user.to_string()).or_default() += 1;
            *self
                .by_user_endpoint
                .entry(user.to_string())
                .or_default()
                .entry(endpoint.to_string())
                .or_default() += 1;
        }
    }

    pub(crate) fn record_status(&mut self, status: u16) {
        *self.by_status.entry(status).or_default() += 1;
    }

    /// API calls made for `endpoint` (0 if none).
    pub fn endpoint(&self, endpoint: &str) -> u64 {
        self.by_endpoint.get(endpoint).copied().unwrap_or(0)
    }

    /// API calls made for `user` (0 if none).
    pub fn user(&self, user: &str) -> u64 {
        self.by_user.get(user).copied().unwrap_or(0)
    }
}

/// Why the emulator could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("I/O error on {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("invalid state file: {0}")]
    State(String),
}

/// Run the emulator on `listen` until `shutdown` completes (its output is ignored, so
/// `tokio::signal::ctrl_c()` can be passed as is), then drain connections and write the state
/// file (if any).
pub async fn run_until_shutdown(
    listen: SocketAddr,
    options: EmulatorOptions,
    shutdown: impl Future,
) -> Result<(), EmulatorError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| EmulatorError::Bind(listen, e))?;
    let handle = EmulatorHandle::new(options)?;
    server::serve(listener, handle.clone(), shutdown).await;
    handle.save()
}
