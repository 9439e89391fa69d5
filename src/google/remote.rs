//! `GoogleRemote`: the engine's [`Remote`] on Calendar v3 and People v1 (Google or the
//! emulator), through the official hubs where they can express a call and reqwest where
//! they cannot (the Calendar batch endpoint with `If-Match` parts).
//!
//! Per impersonated account it keeps one authenticator, the two hubs and the pacers
//! (cached). Every call goes through the one [`RetryPolicy`] and the account's [`Pacer`];
//! every token asks for the same scope set ([`SCOPES`]).
//!
//! Batches and per-op results:
//! - events: Calendar batch requests of up to `event_batch_size` parts (≤ 1000); each part's
//!   answer becomes that op's result; parts that fail in a retryable way (429, 403 rate
//!   limits, 5xx) are sent again in a later batch after a backoff, within `max_attempts`.
//! - contacts: `batchCreateContacts` (≤ 200) — per-person statuses become per-op results;
//!   `batchUpdateContacts` (≤ 200) after one `people:batchGet` of the same contacts (their
//!   memberships and client data are kept, a stale etag is reported without writing);
//!   `batchDeleteContacts` (≤ 500). People batches fail as a whole when one item is bad: the
//!   items named in `BatchUpdateContactsErrorDetails` get their errors and the rest is sent
//!   again; without details, the chunk falls back to one call per item, so one bad item
//!   never blocks the others.
//!
//! Calls per operation (N items; each call also pays its retries):
//!
//! | operation | calls |
//! |---|---|
//! | `ensure_calendar` | 1 `calendars.get` (known id) · else ⌈calendars/250⌉ `calendarList.list` (+1 `calendars.insert`) |
//! | `ensure_group` | 1 `contactGroups.get` (known) · else ⌈groups/1000⌉ `contactGroups.list` (+1 create; +list on 409) |
//! | `list_events` | ⌈N/2500⌉ `events.list` pages |
//! | `event_ops` | ⌈N/B⌉ batch requests, B = min(1000, `event_batch_size`, pacing per minute) (500 by default); every part counts against Google's quota |
//! | `list_contacts` | ⌈N/1000⌉ `connections.list` pages |
//! | `contact_ops` creates | ⌈N/200⌉ `batchCreateContacts` |
//! | `contact_ops` updates | ⌈N/200⌉ `people:batchGet` + ⌈N/200⌉ `batchUpdateContacts` |
//! | `contact_ops` deletes | ⌈N/500⌉ `batchDeleteContacts` |
//! | `get_event` / `get_contact` | 1 |
//!
//! A chunk refused as a whole because of one item costs one more call per item of it.
//!
//! - A failure of a whole call after the retry policy gave up (auth, quota, outage) becomes
//!   the result of every op it covered and of every op not yet sent (no more calls are
//!   made for the user); the outer error of a [`BatchResult`] is reserved for failing
//!   before any call (the account's clients cannot be built).

use super::auth::{self, UserAuth, SCOPES};
use super::batch::{self, BatchRequestPart, BatchResponsePart};
use super::classify::{
    classify_auth, classify_http, classify_hub, classify_json, classify_reqwest, parse_retry_after,
    retry_after_header, SeenFailure,
};
use super::hub::{self, with_slash, GOOGLE_CALENDAR_ROOT, GOOGLE_PEOPLE_ROOT};
use super::mapping::{
    contact_from_google, contact_to_google, event_from_google, event_patch_body, event_to_google,
    mark_created, person_groups, to_json_without_nulls, GROUP_MARKER, MARKER_ID, PERSON_FIELDS,
    SYNCED_PERSON_FIELDS, UPDATE_PERSON_FIELDS,
};
use super::retry::{Failure, Pacer, Repeat, RetryConfig, RetryPolicy};
use crate::config::{GoogleConfig, SyncConfig};
use crate::model::{CrmId, SyncedContact, SyncedEvent, UserId};
use crate::sync::remote::{
    BatchResult, ContactOp, EventOp, GoogleUser, Listing, OpKey, OpOutcome, OpResult, Released,
    Remote, RemoteChange, RemoteError, RemoteErrorKind,
};
use chrono::Utc;
use google_calendar3::api::{Calendar, CalendarList, Event, Events};
use google_calendar3::common::{Delegate, FieldMask, Response, Retry};
use google_people1::api::{
    BatchCreateContactsRequest, BatchDeleteContactsRequest, BatchUpdateContactsRequest, ClientData,
    ContactGroup, ContactToCreate, CreateContactGroupRequest, GroupClientData,
    ListConnectionsResponse, ListContactGroupsResponse, Person, PersonResponse,
};
use rand::SeedableRng;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use yup_oauth2::ServiceAccountKey;

/// People batch limits.
pub const MAX_BATCH_CREATE: usize = 200;
pub const MAX_BATCH_UPDATE: usize = 200;
pub const MAX_BATCH_DELETE: usize = 500;
/// `people:batchGet` takes at most 200 resource names.
pub const MAX_BATCH_GET: usize = 200;

/// Everything `GoogleRemote` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleRemoteConfig {
    /// Root of Calendar (`{root}calendar/v3/`) and of its batch endpoint.
    pub calendar_root: String,
    /// Root of People (`{root}v1/`).
    pub people_root: String,
    pub service_account_key: PathBuf,
    /// Replaces the key's `token_uri` (the emulator's `/token`).
    pub token_uri: Option<String>,
    /// Calendar pacing per user (Google: 600/minute, batch parts counted one each).
    pub calendar_requests_per_minute: u32,
    /// People reads per user per minute.
    pub people_reads_per_minute: u32,
    /// People writes per user per minute (community reports ~90/minute; a batch is one).
    pub people_writes_per_minute: u32,
    pub retry: RetryConfig,
    /// `maxResults` of event listings (Google: ≤ 2500).
    pub event_page_size: u32,
    /// `pageSize` of connection listings (Google: ≤ 1000).
    pub contact_page_size: u32,
    /// A listing longer than this many pages is refused (bounded loops).
    pub max_pages: usize,
    /// Parts per Calendar batch request (≤ 1000; also kept ≤ the per-minute pacing).
    pub event_batch_size: usize,
}

impl GoogleRemoteConfig {
    /// From the config file's `[google]` and `[sync]` tables. With Google's default root,
    /// People goes to `people.googleapis.com`; any other root (the emulator) serves both.
    pub fn new(google: &GoogleConfig, sync: &SyncConfig) -> Self {
        let base = google.base_url.clone();
        let people_root =
            if base.trim_end_matches('/') == GOOGLE_CALENDAR_ROOT.trim_end_matches('/') {
                GOOGLE_PEOPLE_ROOT.to_owned()
            } else {
                base.clone()
            };
        Self {
            calendar_root: base,
            people_root,
            service_account_key: google.service_account_key.clone(),
            token_uri: google.token_uri.clone(),
            calendar_requests_per_minute: sync.requests_per_minute,
            people_reads_per_minute: sync.requests_per_minute,
            people_writes_per_minute: 60,
            retry: RetryConfig {
                max_attempts: sync.max_attempts,
                ..RetryConfig::default()
            },
            event_page_size: 2500,
            contact_page_size: 1000,
            max_pages: 10_000,
            event_batch_size: batch::MAX_PARTS,
        }
    }

    /// For tests against the emulator at `base_url` (both APIs; `token_uri` its `/token`,
    /// `key` its test service-account key): Google's page and batch sizes, 600 calls a
    /// minute of each kind, and fast seeded retries (4 attempts, 5–50 ms backoff, 10 s an
    /// attempt). A suite changes what it needs with struct update syntax.
    pub fn for_emulator(base_url: &str, token_uri: &str, key: &Path) -> Self {
        Self {
            calendar_root: base_url.to_owned(),
            people_root: base_url.to_owned(),
            service_account_key: key.to_owned(),
            token_uri: Some(token_uri.to_owned()),
            calendar_requests_per_minute: 600,
            people_reads_per_minute: 600,
            people_writes_per_minute: 600,
            retry: RetryConfig {
                max_attempts: 4,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(50),
                attempt_timeout: Duration::from_secs(10),
                seed: Some(42),
            },
            event_page_size: 2500,
            contact_page_size: 1000,
            max_pages: 1000,
            event_batch_size: 1000,
        }
    }

    fn batch_size(&self) -> usize {
        let by_pace = usize::try_from(self.calendar_requests_per_minute).unwrap_or(usize::MAX);
        self.event_batch_size
            .clamp(1, batch::MAX_PARTS)
            .min(by_pace.max(1))
    }
}

/// One impersonated account's clients, pacers and write lock.
struct UserClients {
    auth: UserAuth,
    calendar: hub::Calendar,
    people: hub::People,
    calendar_pacer: Pacer,
    people_read_pacer: Pacer,
    people_write_pacer: Pacer,
    /// People mutations for one user are sequential (Google's rule).
    people_writes: tokio::sync::Mutex<()>,
}

/// The engine's Google.
pub struct GoogleRemote {
    config: GoogleRemoteConfig,
    key: ServiceAccountKey,
    http: reqwest::Client,
    /// The hubs' and the token requests' pools, shared by every account.
    shared: auth::HttpClients,
    policy: RetryPolicy,
    batch_rng: std::sync::Mutex<rand::rngs::StdRng>,
    users: tokio::sync::Mutex<HashMap<String, Arc<UserClients>>>,
}

/// Records what the hubs drop from a failed answer: its status and `Retry-After`.
#[derive(Default)]
struct Capture(SeenFailure);

impl Delegate for Capture {
    fn http_failure(&mut self, response: &Response, _err: Option<&serde_json::Value>) -> Retry {
        self.0.status = Some(response.status().as_u16());
        self.0.retry_after = retry_after_header(response.headers());
        Retry::Abort
    }
}

/// A hub call's result as the retry policy sees it.
fn hub_result<T>(
    result: google_calendar3::common::Result<(Response, T)>,
    capture: Capture,
) -> Result<T, Failure> {
    result.map(|(_, v)| v).map_err(|e| hub_failure(e, capture))
}

/// Sends a hub call builder with [`SCOPES`] and a [`Capture`] as its delegate: the hub's
/// own result and what the capture saw. A macro, because the builders share no trait.
macro_rules! hub_send {
    ($call:expr) => {{
        let mut capture = Capture::default();
        let result = $call.add_scopes(SCOPES).delegate(&mut capture).doit().await;
        (result, capture)
    }};
}

/// [`hub_send!`] with the result as the retry policy sees it ([`hub_result`]).
macro_rules! hub_call {
    ($call:expr) => {{
        let (result, capture) = hub_send!($call);
        hub_result(result, capture)
    }};
}

fn hub_failure(err: google_calendar3::common::Error, capture: Capture) -> Failure {
    use google_calendar3::common::Error as E;
    let ambiguous = match &err {
        E::HttpError(e) => !e.is_connect(),
        E::Io(_) | E::JsonDecodeError(..) => true,
        _ => false,
    };
    let error = classify_hub(err, capture.0);
    Failure { error, ambiguous }
}

fn reqwest_failure(err: &reqwest::Error) -> Failure {
    Failure {
        error: classify_reqwest(err),
        ambiguous: !err.is_connect(),
    }
}

/// A Calendar listing's 410 with a sync token is Google's "token expired, list in full".
fn expired_token(sync_token: Option<&str>, mut e: RemoteError) -> RemoteError {
    if sync_token.is_some() && e.message.starts_with("HTTP 410") {
        e.kind = RemoteErrorKind::SyncTokenExpired;
    }
    e
}

fn invalid(message: impl Into<String>) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Permanent, message)
}

/// Whether a whole-call failure stops every later call for the user (as opposed to a
/// failure an item caused).
fn halts(kind: RemoteErrorKind) -> bool {
    matches!(
        kind,
        RemoteErrorKind::Unauthorized
            | RemoteErrorKind::Transient
            | RemoteErrorKind::RateLimited
            | RemoteErrorKind::QuotaExceeded
    )
}

/// `groupFields` of group listings: the marker lives in `clientData`, which Google only
/// returns when asked for.
const GROUP_FIELDS: &str = "clientData,groupType,metadata,name";

/// Names tried for a new group when personal groups already use the configured one.
const MAX_GROUP_NAME_ATTEMPTS: u32 = 5;

/// The user id in a contact group's crmsync marker, if it carries one.
pub fn group_marker(group: &ContactGroup) -> Option<String> {
    group
        .client_data
        .iter()
        .flatten()
        .find(|d| d.key.as_deref() == Some(GROUP_MARKER))
        .and_then(|d| d.value.clone())
}

/// The calendar marker: a line of the dedicated calendar's description.
pub fn calendar_marker(user: &UserId) -> String {
    format!("crmsync:{user}")
}

fn has_marker(description: Option<&str>, marker: &str) -> bool {
    description.is_some_and(|d| d.lines().any(|l| l.trim() == marker))
}

/// A google.rpc.Status code (gRPC) as the HTTP status Google would answer with.
fn http_status_of_rpc(code: i64) -> u16 {
    match code {
        0 => 200,
        1 => 499,
        3 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        9 => 400,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// The error a People per-item `Status` stands for.
fn status_error(status: &serde_json::Value) -> RemoteError {
    let code = status["code"].as_i64().unwrap_or(2);
    let http = http_status_of_rpc(code);
    let mut body = serde_json::json!({ "error": status.clone() });
    if code == 9 && body["error"]["status"].is_null() {
        body["error"]["status"] = "FAILED_PRECONDITION".into();
    }
    if code == 5 && body["error"]["status"].is_null() {
        body["error"]["status"] = "NOT_FOUND".into();
    }
    classify_json(http, &body, b"", None)
}

/// The outcome of one `PersonResponse` of a batch.
fn person_response(
    response: &PersonResponse,
    group: &str,
) -> Result<OpOutcome<SyncedContact>, RemoteError> {
    let status = response
        .status
        .as_ref()
        .filter(|s| s.code.unwrap_or(0) != 0)
        .map(|s| serde_json::to_value(s).unwrap_or(serde_json::Value::Null));
    let http = response.http_status_code.unwrap_or(200);
    if let Some(status) = status {
        return Err(status_error(&status));
    }
    if !(200..300).contains(&http) {
        let http = u16::try_from(http).unwrap_or(500);
        return Err(classify_http(http, b"", None));
    }
    let Some(person) = &response.person else {
        return Err(RemoteError::new(
            RemoteErrorKind::Transient,
            "Google answered without the person",
        ));
    };
    written_contact(person, group)
}

fn written_contact(person: &Person, group: &str) -> Result<OpOutcome<SyncedContact>, RemoteError> {
    match contact_from_google(person, group) {
        RemoteChange::Present(item) => Ok(OpOutcome::Written(item)),
        RemoteChange::Deleted { google_id } => Err(RemoteError::new(
            RemoteErrorKind::NotFound,
            format!("{google_id} was deleted"),
        )),
    }
}

fn written_event(event: &Event) -> Result<OpOutcome<SyncedEvent>, RemoteError> {
    match event_from_google(event) {
        RemoteChange::Present(item) => Ok(OpOutcome::Written(item)),
        RemoteChange::Deleted { google_id } => Err(RemoteError::new(
            RemoteErrorKind::NotFound,
            format!("event {google_id} is cancelled"),
        )),
    }
}

/// One page of an event or contact listing.
struct ListPage<T> {
    changes: Vec<RemoteChange<T>>,
    next_page: Option<String>,
    next_sync_token: Option<String>,
}

/// How a walk through a listing ended.
struct Walked {
    /// The token the last page named (`None` when the walk was stopped).
    next_sync_token: Option<String>,
    /// The caller ended the walk before the last page.
    stopped: bool,
}

impl Walked {
    /// The token to keep after a scan: only when every page was seen.
    fn token(self) -> Option<String> {
        self.next_sync_token.filter(|_| !self.stopped)
    }
}

/// Per-op results under construction.
struct Slots<T> {
    results: Vec<Option<Result<OpOutcome<T>, RemoteError>>>,
    /// Set by a whole-call failure that stops every later call.
    halted: Option<RemoteError>,
}

impl<T> Slots<T> {
    fn new(len: usize) -> Self {
        Self {
            results: (0..len).map(|_| None).collect(),
            halted: None,
        }
    }

    fn set(&mut self, index: usize, result: Result<OpOutcome<T>, RemoteError>) {
        if let Some(slot) = self.results.get_mut(index) {
            *slot = Some(result);
        }
    }

    /// A whole-call failure for `indices`; stops later calls if it is not an item's fault.
    fn fail_all(&mut self, indices: &[usize], error: &RemoteError) {
        for &i in indices {
            self.set(i, Err(error.clone()));
        }
        if halts(error.kind) && self.halted.is_none() {
            self.halted = Some(error.clone());
        }
    }

    /// After a halt: the halting error for `indices` (true); before one, nothing (false).
    fn fail_if_halted(&mut self, indices: impl IntoIterator<Item = usize>) -> bool {
        let Some(halt) = self.halted.clone() else {
            return false;
        };
        for i in indices {
            self.set(i, Err(halt.clone()));
        }
        true
    }

    /// The result of an item's own call; a whole-call failure stops every later call.
    fn record(&mut self, index: usize, result: Result<OpOutcome<T>, RemoteError>) {
        if let Err(e) = &result {
            if halts(e.kind) {
                self.halted = Some(e.clone());
            }
        }
        self.set(index, result);
    }

    /// Each op's answer, named by its key (`keys[i]` is the key of op `i`).
    fn finish(self, keys: impl IntoIterator<Item = OpKey>) -> Vec<OpResult<T>> {
        let halted = self.halted;
        keys.into_iter()
            .zip(self.results)
            .map(|(key, r)| OpResult {
                key,
                result: r.unwrap_or_else(|| {
                    Err(halted.clone().unwrap_or_else(|| {
                        RemoteError::new(RemoteErrorKind::Transient, "no answer for this op")
                    }))
                }),
            })
            .collect()
    }

    /// Replaces a successful write's outcome at `index` (a release reports what it did).
    fn replace_written(&mut self, index: usize, outcome: OpOutcome<T>) {
        if let Some(slot) = self.results.get_mut(index) {
            if let Some(Ok(OpOutcome::Written(_))) = slot {
                *slot = Some(Ok(outcome));
            }
        }
    }
}

impl GoogleRemote {
    /// Loads the service-account key (with the `token_uri` override) and prepares the
    /// shared HTTP client. Authenticators and hubs are made per account on first use.
    pub async fn new(config: GoogleRemoteConfig) -> Result<Self, RemoteError> {
        for root in [&config.calendar_root, &config.people_root] {
            auth::check_url(root).map_err(|e| classify_auth(&e))?;
        }
        let key = auth::load_service_account_key(
            &config.service_account_key,
            config.token_uri.as_deref(),
        )
        .await
        .map_err(|e| classify_auth(&e))?;
        let http = reqwest::Client::builder()
            .timeout(config.retry.attempt_timeout)
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        let batch_rng = match config.retry.seed {
            Some(seed) => rand::rngs::StdRng::seed_from_u64(seed ^ 0xba7c),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        Ok(Self {
            policy: RetryPolicy::new(config.retry.clone()),
            config,
            key,
            http,
            shared: auth::HttpClients::new(),
            batch_rng: std::sync::Mutex::new(batch_rng),
            users: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// [`GoogleRemote::new`] with [`GoogleRemoteConfig::new`] from the config file.
    pub async fn from_config(
        google: &GoogleConfig,
        sync: &SyncConfig,
    ) -> Result<Self, RemoteError> {
        Self::new(GoogleRemoteConfig::new(google, sync)).await
    }

    pub fn config(&self) -> &GoogleRemoteConfig {
        &self.config
    }

    /// The cached clients of an account, made on first use.
    async fn clients(&self, user: &GoogleUser) -> Result<Arc<UserClients>, RemoteError> {
        let mut users = self.users.lock().await;
        if let Some(c) = users.get(&user.account) {
            return Ok(c.clone());
        }
        let user_auth = auth::impersonate_on(&self.shared, &self.key, &user.account, &auth::SCOPES)
            .await
            .map_err(|e| classify_auth(&e))?;
        let calendar =
            hub::calendar_hub_on(&self.shared, &self.config.calendar_root, user_auth.clone())
                .map_err(|e| classify_auth(&e))?;
        let people = hub::people_hub_on(&self.shared, &self.config.people_root, user_auth.clone())
            .map_err(|e| classify_auth(&e))?;
        let clients = Arc::new(UserClients {
            auth: user_auth,
            calendar,
            people,
            calendar_pacer: Pacer::new(self.config.calendar_requests_per_minute),
            people_read_pacer: Pacer::new(self.config.people_reads_per_minute),
            people_write_pacer: Pacer::new(self.config.people_writes_per_minute),
            people_writes: tokio::sync::Mutex::new(()),
        });
        users.insert(user.account.clone(), clients.clone());
        Ok(clients)
    }

    // ----- Calls and listings -----------------------------------------------------------

    async fn people_read<T, F, Fut>(&self, c: &UserClients, call: F) -> Result<T, RemoteError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.policy
            .run(&c.people_read_pacer, 1, Repeat::Safe, call)
            .await
    }

    async fn people_write<T, F, Fut>(
        &self,
        c: &UserClients,
        repeat: Repeat,
        call: F,
    ) -> Result<T, RemoteError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.policy
            .run(&c.people_write_pacer, 1, repeat, call)
            .await
    }

    /// Walks a listing page by page, at most `max_pages` of them: `fetch` gets the page a
    /// token names (the first for `None`); `take` reads it and names the next page or ends
    /// the walk with the answer.
    async fn pages<P, T, F, Fut>(
        &self,
        what: &str,
        mut fetch: F,
        mut take: impl FnMut(P) -> ControlFlow<T, String>,
    ) -> Result<T, RemoteError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<P, RemoteError>>,
    {
        let mut page: Option<String> = None;
        for _ in 0..self.config.max_pages {
            match take(fetch(page.take()).await?) {
                ControlFlow::Break(answer) => return Ok(answer),
                ControlFlow::Continue(next) => page = Some(next),
            }
        }
        Err(invalid(format!("{what} did not end")))
    }

    /// Walks a listing of events or contacts ([`Self::pages`]), handing each page's changes
    /// to `keep` as it is read; `keep` answering false ends the walk there.
    async fn walk<T, P, F, Fut>(
        &self,
        what: &str,
        fetch: F,
        read: impl Fn(P) -> ListPage<T>,
        keep: &mut dyn FnMut(Vec<RemoteChange<T>>) -> bool,
    ) -> Result<Walked, RemoteError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<P, RemoteError>>,
    {
        self.pages(what, fetch, |page| {
            let page = read(page);
            if !keep(page.changes) {
                return ControlFlow::Break(Walked {
                    next_sync_token: None,
                    stopped: true,
                });
            }
            match page.next_page {
                Some(next) => ControlFlow::Continue(next),
                None => ControlFlow::Break(Walked {
                    next_sync_token: page.next_sync_token,
                    stopped: false,
                }),
            }
        })
        .await
    }

    /// Walks the events changed since `sync_token` (all of them without one), a page at a
    /// time.
    async fn walk_events(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: Option<&str>,
        keep: &mut dyn FnMut(Vec<RemoteChange<SyncedEvent>>) -> bool,
    ) -> Result<Walked, RemoteError> {
        let c = &*self.clients(user).await?;
        let page_size = i32::try_from(self.config.event_page_size.clamp(1, 2500)).unwrap_or(2500);
        self.walk(
            "events.list",
            |token| async move {
                self.policy
                    .run(&c.calendar_pacer, 1, Repeat::Safe, || {
                        let token = token.clone();
                        async move {
                            let mut call = c
                                .calendar
                                .events()
                                .list(calendar)
                                .single_events(false)
                                .max_results(page_size);
                            if let Some(s) = sync_token {
                                call = call.sync_token(s);
                            }
                            if let Some(t) = &token {
                                call = call.page_token(t);
                            }
                            hub_call!(call)
                        }
                    })
                    .await
                    .map_err(|e| expired_token(sync_token, e))
            },
            |answer: Events| ListPage {
                changes: answer
                    .items
                    .iter()
                    .flatten()
                    .map(event_from_google)
                    .collect(),
                next_page: answer.next_page_token,
                next_sync_token: answer.next_sync_token,
            },
            keep,
        )
        .await
    }

    /// Walks the contacts changed since `sync_token` (all of them without one), a page at
    /// a time.
    async fn walk_contacts(
        &self,
        user: &GoogleUser,
        group: &str,
        sync_token: Option<&str>,
        keep: &mut dyn FnMut(Vec<RemoteChange<SyncedContact>>) -> bool,
    ) -> Result<Walked, RemoteError> {
        let c = &*self.clients(user).await?;
        let page_size = i32::try_from(self.config.contact_page_size.clamp(1, 1000)).unwrap_or(1000);
        self.walk(
            "people.connections.list",
            |token| {
                self.people_read(c, move || {
                    let token = token.clone();
                    async move {
                        let mut call = c
                            .people
                            .people()
                            .connections_list("people/me")
                            .person_fields(FieldMask::from_str(PERSON_FIELDS).unwrap_or_default())
                            .page_size(page_size)
                            .request_sync_token(true);
                        if let Some(s) = sync_token {
                            call = call.sync_token(s);
                        }
                        if let Some(t) = &token {
                            call = call.page_token(t);
                        }
                        hub_call!(call)
                    }
                })
            },
            |answer: ListConnectionsResponse| ListPage {
                changes: answer
                    .connections
                    .iter()
                    .flatten()
                    .map(|p| contact_from_google(p, group))
                    .collect(),
                next_page: answer.next_page_token,
                next_sync_token: answer.next_sync_token,
            },
            keep,
        )
        .await
    }

    // ----- Calendar ---------------------------------------------------------------------

    async fn find_calendar(
        &self,
        c: &UserClients,
        marker: &str,
    ) -> Result<Option<String>, RemoteError> {
        self.pages(
            "calendarList.list",
            |token| {
                self.policy
                    .run(&c.calendar_pacer, 1, Repeat::Safe, move || {
                        let token = token.clone();
                        async move {
                            let mut call = c
                                .calendar
                                .calendar_list()
                                .list()
                                .show_hidden(true)
                                .max_results(250);
                            if let Some(t) = &token {
                                call = call.page_token(t);
                            }
                            hub_call!(call)
                        }
                    })
            },
            |list: CalendarList| {
                if let Some(found) = list.items.iter().flatten().find(|e| {
                    e.deleted != Some(true) && has_marker(e.description.as_deref(), marker)
                }) {
                    return ControlFlow::Break(found.id.clone());
                }
                list.next_page_token
                    .map_or(ControlFlow::Break(None), ControlFlow::Continue)
            },
        )
        .await
    }

    // ----- Calendar batch ---------------------------------------------------------------

    fn event_path(&self, calendar: &str, id: Option<&str>) -> Result<String, RemoteError> {
        let root = url::Url::parse(&with_slash(&self.config.calendar_root))
            .map_err(|e| invalid(format!("bad calendar root: {e}")))?;
        let mut path = format!(
            "{}calendar/v3/calendars/{}/events",
            root.path(),
            batch::encode_segment(calendar)
        );
        if let Some(id) = id {
            path.push('/');
            path.push_str(&batch::encode_segment(id));
        }
        path.push_str("?sendUpdates=none");
        Ok(path)
    }

    fn event_part(&self, calendar: &str, op: &EventOp) -> Result<BatchRequestPart, RemoteError> {
        Ok(match op {
            EventOp::Insert { id, crm_id, data } => {
                let event = event_to_google(id, crm_id, data)?;
                BatchRequestPart {
                    method: "POST",
                    path: self.event_path(calendar, None)?,
                    if_match: None,
                    body: Some(to_json_without_nulls(&event).to_string()),
                }
            }
            EventOp::Update {
                id,
                etag,
                crm_id,
                data,
            } => {
                let event = event_to_google(id, crm_id, data)?;
                BatchRequestPart {
                    method: "PATCH",
                    path: self.event_path(calendar, Some(id))?,
                    if_match: Some(etag.clone()),
                    body: Some(event_patch_body(&event).to_string()),
                }
            }
            EventOp::Delete { id, etag } => BatchRequestPart {
                method: "DELETE",
                path: self.event_path(calendar, Some(id))?,
                if_match: etag.clone(),
                body: None,
            },
        })
    }

    /// Sends one batch request (through the retry policy) and returns one answer slot per
    /// part.
    async fn send_batch(
        &self,
        c: &UserClients,
        parts: &[BatchRequestPart],
    ) -> Result<Vec<Option<BatchResponsePart>>, RemoteError> {
        let boundary = {
            let mut rng = match self.batch_rng.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            batch::choose_boundary(parts, &mut *rng)
        };
        let body = batch::encode(parts, &boundary);
        let url = format!(
            "{}batch/calendar/v3",
            with_slash(&self.config.calendar_root)
        );
        let cost = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        self.policy
            .run(&c.calendar_pacer, cost, Repeat::Safe, || {
                let body = body.clone();
                let url = url.clone();
                let boundary = boundary.clone();
                async move {
                    let token = c
                        .auth
                        .access_token()
                        .await
                        .map_err(|e| Failure::from(classify_auth(&e)))?;
                    let response = self
                        .http
                        .post(&url)
                        .bearer_auth(token)
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            format!("multipart/mixed; boundary={boundary}"),
                        )
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| reqwest_failure(&e))?;
                    let status = response.status().as_u16();
                    let retry_after = retry_after_header(response.headers());
                    let content_type = response
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let bytes = response.bytes().await.map_err(|e| reqwest_failure(&e))?;
                    if !(200..300).contains(&status) {
                        return Err(Failure::from(classify_http(status, &bytes, retry_after)));
                    }
                    let text = String::from_utf8_lossy(&bytes);
                    batch::decode(&content_type, &text, parts.len()).map_err(|e| {
                        Failure::ambiguous(RemoteError::new(RemoteErrorKind::Transient, e))
                    })
                }
            })
            .await
    }

    fn part_outcome(
        op: &EventOp,
        answer: &BatchResponsePart,
    ) -> Result<OpOutcome<SyncedEvent>, RemoteError> {
        let retry_after = answer
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, Utc::now()));
        if !(200..300).contains(&answer.status) {
            let mut error = classify_http(answer.status, answer.body.as_bytes(), retry_after);
            if answer.status == 410 {
                error.kind = RemoteErrorKind::NotFound;
            }
            return Err(error);
        }
        match op {
            EventOp::Delete { .. } => Ok(OpOutcome::Deleted),
            EventOp::Insert { .. } | EventOp::Update { .. } => {
                let event: Event = serde_json::from_str(&answer.body).map_err(|e| {
                    RemoteError::new(
                        RemoteErrorKind::Transient,
                        format!("undecodable event in a batch answer: {e}"),
                    )
                })?;
                written_event(&event)
            }
        }
    }

    // ----- People -----------------------------------------------------------------------

    /// Every live user contact group of the account, with the fields the marker needs.
    async fn user_groups(&self, c: &UserClients) -> Result<Vec<ContactGroup>, RemoteError> {
        let mut groups = Vec::new();
        self.pages(
            "contactGroups.list",
            |token| {
                self.people_read(c, move || {
                    let token = token.clone();
                    async move {
                        let mut call = c
                            .people
                            .contact_groups()
                            .list()
                            .page_size(1000)
                            .group_fields(FieldMask::from_str(GROUP_FIELDS).unwrap_or_default());
                        if let Some(t) = &token {
                            call = call.page_token(t);
                        }
                        hub_call!(call)
                    }
                })
            },
            |list: ListContactGroupsResponse| {
                groups.extend(list.contact_groups.into_iter().flatten().filter(|g| {
                    g.group_type.as_deref() == Some("USER_CONTACT_GROUP")
                        && !g.metadata.as_ref().and_then(|m| m.deleted).unwrap_or(false)
                }));
                list.next_page_token
                    .map_or(ControlFlow::Break(()), ControlFlow::Continue)
            },
        )
        .await?;
        Ok(groups)
    }

    /// The user's crmsync group, recognised by its client-data marker (never by name: a
    /// personal group may share the name).
    async fn find_group(
        &self,
        c: &UserClients,
        user: &UserId,
    ) -> Result<Option<String>, RemoteError> {
        Ok(self
            .user_groups(c)
            .await?
            .into_iter()
            .find(|g| group_marker(g).as_deref() == Some(user.as_str()))
            .and_then(|g| g.resource_name))
    }

    /// Contacts as they are now — etag, memberships, client data — (one `people:batchGet`
    /// per 200; per-contact gets if the endpoint is unavailable). Missing contacts are
    /// absent.
    async fn current_people(
        &self,
        c: &UserClients,
        resources: &[String],
    ) -> Result<HashMap<String, Person>, RemoteError> {
        // The listing's own field mask, so the etags compare like for like.
        let fields = PERSON_FIELDS;
        let mut found = HashMap::new();
        for chunk in resources.chunks(MAX_BATCH_GET) {
            let answer = self
                .people_read(c, || async move {
                    let mut call = c
                        .people
                        .people()
                        .get_batch_get()
                        .person_fields(FieldMask::from_str(fields).unwrap_or_default());
                    for r in chunk {
                        call = call.add_resource_names(r);
                    }
                    hub_call!(call)
                })
                .await;
            match answer {
                Ok(answer) => {
                    for r in answer.responses.into_iter().flatten() {
                        if let (Some(requested), Some(person)) =
                            (r.requested_resource_name.clone(), r.person.clone())
                        {
                            if r.status.as_ref().is_none_or(|s| s.code.unwrap_or(0) == 0) {
                                found.insert(requested, person);
                            }
                        }
                    }
                }
                Err(e) if halts(e.kind) => return Err(e),
                Err(_) => {
                    // No batchGet (or it refused the chunk): one get per contact.
                    for r in chunk {
                        let person = self
                            .people_read(c, || async move {
                                hub_call!(c
                                    .people
                                    .people()
                                    .get(r)
                                    .person_fields(FieldMask::from_str(fields).unwrap_or_default()))
                            })
                            .await;
                        match person {
                            Ok(p) => {
                                found.insert(r.clone(), p);
                            }
                            Err(e) if e.kind == RemoteErrorKind::NotFound => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    async fn create_one(
        &self,
        c: &UserClients,
        group: &str,
        person: &Person,
    ) -> Result<OpOutcome<SyncedContact>, RemoteError> {
        let created = self
            .people_write(c, Repeat::NotAfterSend, || async move {
                hub_call!(c
                    .people
                    .people()
                    .create_contact(person.clone())
                    .person_fields(FieldMask::from_str(PERSON_FIELDS).unwrap_or_default()))
            })
            .await?;
        written_contact(&created, group)
    }

    async fn update_one(
        &self,
        c: &UserClients,
        group: &str,
        resource: &str,
        person: &Person,
        mask: &str,
    ) -> Result<OpOutcome<SyncedContact>, RemoteError> {
        let updated = self
            .people_write(c, Repeat::Safe, || async move {
                hub_call!(c
                    .people
                    .people()
                    .update_contact(person.clone(), resource)
                    .update_person_fields(FieldMask::from_str(mask).unwrap_or_default())
                    .person_fields(FieldMask::from_str(PERSON_FIELDS).unwrap_or_default()))
            })
            .await?;
        written_contact(&updated, group)
    }

    async fn delete_one(
        &self,
        c: &UserClients,
        resource: &str,
    ) -> Result<OpOutcome<SyncedContact>, RemoteError> {
        self.people_write(c, Repeat::Safe, || async move {
            hub_call!(c.people.people().delete_contact(resource))
        })
        .await?;
        Ok(OpOutcome::Deleted)
    }

    async fn create_chunk(
        &self,
        c: &UserClients,
        group: &str,
        chunk: &[(usize, &CrmId, &SyncedContact)],
        slots: &mut Slots<SyncedContact>,
    ) {
        let persons: Vec<Person> = chunk
            .iter()
            .map(|(_, crm_id, data)| {
                let mut person = contact_to_google(crm_id, group, data, &[], &[]);
                mark_created(&mut person);
                person
            })
            .collect();
        let indices: Vec<usize> = chunk.iter().map(|(i, _, _)| *i).collect();
        let request = BatchCreateContactsRequest {
            contacts: Some(
                persons
                    .iter()
                    .map(|p| ContactToCreate {
                        contact_person: Some(p.clone()),
                    })
                    .collect(),
            ),
            read_mask: Some(FieldMask::from_str(PERSON_FIELDS).unwrap_or_default()),
            sources: None,
        };
        let answer = self
            .people_write(c, Repeat::NotAfterSend, || {
                let request = request.clone();
                async move { hub_call!(c.people.people().batch_create_contacts(request)) }
            })
            .await;
        match answer {
            Ok(answer) => {
                let created = answer.created_people.unwrap_or_default();
                // Match answers to ops by our marker (position as a fallback).
                let mut by_marker: HashMap<String, &PersonResponse> = HashMap::new();
                for r in &created {
                    let marker = r.person.as_ref().and_then(|p| {
                        p.client_data
                            .iter()
                            .flatten()
                            .find(|d| d.key.as_deref() == Some(MARKER_ID))
                            .and_then(|d| d.value.clone())
                    });
                    if let Some(m) = marker {
                        by_marker.entry(m).or_insert(r);
                    }
                }
                for (position, (index, crm_id, _)) in chunk.iter().enumerate() {
                    let response = by_marker
                        .get(crm_id.as_str())
                        .copied()
                        .or_else(|| created.get(position));
                    let result = match response {
                        Some(r) => person_response(r, group),
                        None => Err(RemoteError::new(
                            RemoteErrorKind::Transient,
                            "batchCreateContacts answered without this contact",
                        )),
                    };
                    slots.set(*index, result);
                }
            }
            Err(e) if !halts(e.kind) => {
                // One bad contact fails the whole batch: create one by one.
                for ((index, _, _), person) in chunk.iter().zip(&persons) {
                    if !slots.fail_if_halted([*index]) {
                        let result = self.create_one(c, group, person).await;
                        slots.record(*index, result);
                    }
                }
            }
            Err(e) => slots.fail_all(&indices, &e),
        }
    }

    async fn update_chunk(
        &self,
        c: &UserClients,
        group: &str,
        chunk: &[(usize, &String, &String, &CrmId, &SyncedContact)],
        slots: &mut Slots<SyncedContact>,
    ) {
        let indices: Vec<usize> = chunk.iter().map(|t| t.0).collect();
        let resources: Vec<String> = chunk.iter().map(|t| t.1.clone()).collect();
        let current = match self.current_people(c, &resources).await {
            Ok(current) => current,
            Err(e) => return slots.fail_all(&indices, &e),
        };
        // resource → (op index, person to write)
        let mut pending: Vec<(usize, String, Person)> = Vec::new();
        for &(index, resource, etag, crm_id, data) in chunk {
            let Some(now) = current.get(resource.as_str()) else {
                slots.set(
                    index,
                    Err(RemoteError::new(
                        RemoteErrorKind::NotFound,
                        format!("{resource} does not exist"),
                    )),
                );
                continue;
            };
            if let Some(moved) = now
                .resource_name
                .as_deref()
                .filter(|r| *r != resource.as_str())
            {
                slots.set(
                    index,
                    Err(RemoteError::new(
                        RemoteErrorKind::PreconditionFailed,
                        format!("{resource} is now {moved}"),
                    )),
                );
                continue;
            }
            if now.etag.as_deref() != Some(etag.as_str()) {
                slots.set(
                    index,
                    Err(RemoteError::new(
                        RemoteErrorKind::PreconditionFailed,
                        format!("{resource}: the etag is stale (the contact changed)"),
                    )),
                );
                continue;
            }
            let keep_groups = person_groups(now);
            let keep_data: Vec<ClientData> = now.client_data.clone().unwrap_or_default();
            let mut person = contact_to_google(crm_id, group, data, &keep_groups, &keep_data);
            person.etag = Some(etag.clone());
            person.resource_name = Some(resource.clone());
            pending.push((index, resource.clone(), person));
        }
        self.send_updates(c, group, pending, UPDATE_PERSON_FIELDS, slots)
            .await;
    }

    /// Writes prepared persons with `batchUpdateContacts` (≤ 200), one answer per index: a
    /// batch refused because of some contacts is sent again without them; one refused
    /// without saying which falls back to one call per contact.
    async fn send_updates(
        &self,
        c: &UserClients,
        group: &str,
        mut pending: Vec<(usize, String, Person)>,
        mask: &str,
        slots: &mut Slots<SyncedContact>,
    ) {
        // Each round either finishes the batch or removes at least one failing contact.
        let rounds = pending.len() + 1;
        for _ in 0..rounds {
            if pending.is_empty() {
                return;
            }
            if slots.fail_if_halted(pending.iter().map(|p| p.0)) {
                return;
            }
            let request = BatchUpdateContactsRequest {
                contacts: Some(
                    pending
                        .iter()
                        .map(|(_, r, p)| (r.clone(), p.clone()))
                        .collect(),
                ),
                read_mask: Some(FieldMask::from_str(PERSON_FIELDS).unwrap_or_default()),
                update_mask: Some(FieldMask::from_str(mask).unwrap_or_default()),
                sources: None,
            };
            let answer = self
                .people_write(c, Repeat::Safe, || {
                    let request = request.clone();
                    async move {
                        let (result, capture) =
                            hub_send!(c.people.people().batch_update_contacts(request));
                        match result {
                            Ok((_, answer)) => Ok(Ok(answer)),
                            // BatchUpdateContactsErrorDetails: which contacts failed.
                            Err(google_calendar3::common::Error::BadRequest(body))
                                if contact_errors(&body).is_some() =>
                            {
                                Ok(Err(contact_errors(&body).unwrap_or_default()))
                            }
                            Err(e) => Err(hub_failure(e, capture)),
                        }
                    }
                })
                .await;
            match answer {
                Ok(Ok(answer)) => {
                    let results = answer.update_result.unwrap_or_default();
                    for (index, resource, _) in &pending {
                        let result = match results.get(resource) {
                            Some(r) => person_response(r, group),
                            None => Err(RemoteError::new(
                                RemoteErrorKind::Transient,
                                "batchUpdateContacts answered without this contact",
                            )),
                        };
                        slots.set(*index, result);
                    }
                    return;
                }
                Ok(Err(errors)) => {
                    let before = pending.len();
                    pending.retain(|(index, resource, _)| match errors.get(resource) {
                        Some(status) => {
                            slots.set(*index, Err(status_error(status)));
                            false
                        }
                        None => true,
                    });
                    if pending.len() == before {
                        // Details that name none of ours: fall back to one by one.
                        break;
                    }
                }
                Err(e) if !halts(e.kind) => break,
                Err(e) => {
                    let idx: Vec<usize> = pending.iter().map(|p| p.0).collect();
                    return slots.fail_all(&idx, &e);
                }
            }
        }
        // One bad contact failed the batch without saying which: update one by one.
        for (index, resource, person) in &pending {
            if !slots.fail_if_halted([*index]) {
                let result = self.update_one(c, group, resource, person, mask).await;
                slots.record(*index, result);
            }
        }
    }

    /// Gives contacts back to their user (`ContactOp::Release`): reads them as they are now
    /// (one `people:batchGet`), computes each release ([`released_person`]) and writes
    /// them with `batchUpdateContacts`. A contact already gone, or no longer ours, needs no
    /// write.
    async fn release_chunk(
        &self,
        c: &UserClients,
        group: &str,
        chunk: &[(
            usize,
            &String,
            Option<&SyncedContact>,
            Option<&serde_json::Value>,
        )],
        slots: &mut Slots<SyncedContact>,
    ) {
        let indices: Vec<usize> = chunk.iter().map(|t| t.0).collect();
        let resources: Vec<String> = chunk.iter().map(|t| t.1.clone()).collect();
        let current = match self.current_people(c, &resources).await {
            Ok(current) => current,
            Err(e) => return slots.fail_all(&indices, &e),
        };
        let nothing_to_do = Released {
            already_released: true,
            ..Released::default()
        };
        let mut pending = Vec::new();
        let mut reports = Vec::new();
        for &(index, resource, base, pre_link) in chunk {
            let Some(now) = current.get(resource.as_str()) else {
                slots.set(index, Ok(OpOutcome::Released(nothing_to_do.clone())));
                continue;
            };
            let pre_link: Option<Person> =
                pre_link.and_then(|v| serde_json::from_value(v.clone()).ok());
            match super::release::released_person(now, group, base, pre_link.as_ref()) {
                None => slots.set(index, Ok(OpOutcome::Released(nothing_to_do.clone()))),
                Some((person, report)) => {
                    let resource = now
                        .resource_name
                        .clone()
                        .unwrap_or_else(|| resource.clone());
                    pending.push((index, resource, person));
                    reports.push((index, report));
                }
            }
        }
        self.send_updates(c, group, pending, UPDATE_PERSON_FIELDS, slots)
            .await;
        for (index, report) in reports {
            slots.replace_written(index, OpOutcome::Released(report));
        }
    }

    async fn delete_chunk(
        &self,
        c: &UserClients,
        chunk: &[(usize, &String)],
        slots: &mut Slots<SyncedContact>,
    ) {
        let indices: Vec<usize> = chunk.iter().map(|t| t.0).collect();
        let request = BatchDeleteContactsRequest {
            resource_names: Some(chunk.iter().map(|t| t.1.clone()).collect()),
        };
        let answer = self
            .people_write(c, Repeat::Safe, || {
                let request = request.clone();
                async move { hub_call!(c.people.people().batch_delete_contacts(request)) }
            })
            .await;
        match answer {
            Ok(_) => {
                for i in indices {
                    slots.set(i, Ok(OpOutcome::Deleted));
                }
            }
            Err(e) if !halts(e.kind) => {
                // One missing contact fails the whole batch: delete one by one.
                for &(index, resource) in chunk {
                    if !slots.fail_if_halted([index]) {
                        let result = self.delete_one(c, resource).await;
                        slots.record(index, result);
                    }
                }
            }
            Err(e) => slots.fail_all(&indices, &e),
        }
    }
}

/// The per-contact statuses of a failed `batchUpdateContacts`
/// (`BatchUpdateContactsErrorDetails.contactErrors`), if the error carries them.
fn contact_errors(body: &serde_json::Value) -> Option<HashMap<String, serde_json::Value>> {
    let details = body["error"]["details"].as_array()?;
    let map = details
        .iter()
        .find_map(|d| d["contactErrors"].as_object())?;
    Some(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

impl Remote for GoogleRemote {
    async fn ensure_calendar(
        &self,
        user: &GoogleUser,
        name: &str,
        known: Option<&str>,
    ) -> Result<String, RemoteError> {
        let c = self.clients(user).await?;
        let marker = calendar_marker(&user.user);
        if let Some(id) = known {
            let found = self
                .policy
                .run(&c.calendar_pacer, 1, Repeat::Safe, || async {
                    hub_call!(c.calendar.calendars().get(id))
                })
                .await;
            match found {
                Ok(_) => return Ok(id.to_owned()),
                Err(e) if e.kind == RemoteErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(id) = self.find_calendar(&c, &marker).await? {
            return Ok(id);
        }
        let request = Calendar {
            summary: Some(name.to_owned()),
            description: Some(format!(
                "Kept in step with the CRM by crmsync; edits here may be overwritten.\n{marker}"
            )),
            ..Calendar::default()
        };
        let created = self
            .policy
            .run(&c.calendar_pacer, 1, Repeat::NotAfterSend, || {
                let request = request.clone();
                let c = &c;
                async move { hub_call!(c.calendar.calendars().insert(request)) }
            })
            .await?;
        created.id.ok_or_else(|| {
            RemoteError::new(RemoteErrorKind::Transient, "calendar created without an id")
        })
    }

    async fn ensure_group(
        &self,
        user: &GoogleUser,
        name: &str,
        known: Option<&str>,
    ) -> Result<String, RemoteError> {
        let c = self.clients(user).await?;
        if let Some(id) = known {
            let found = self
                .people_read(&c, || async {
                    hub_call!(c.people.contact_groups().get(id))
                })
                .await;
            match found {
                Ok(g) if !g.metadata.as_ref().and_then(|m| m.deleted).unwrap_or(false) => {
                    return Ok(id.to_owned())
                }
                Ok(_) => {}
                Err(e) if e.kind == RemoteErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(id) = self.find_group(&c, &user.user).await? {
            return Ok(id);
        }
        let _writes = c.people_writes.lock().await;
        // Group names are unique per account: if a personal group took the name, ours gets
        // a numbered one (it is recognised by its marker, not by the name).
        let mut last = None;
        for attempt in 1..=MAX_GROUP_NAME_ATTEMPTS {
            let candidate = if attempt == 1 {
                name.to_owned()
            } else {
                format!("{name} {attempt}")
            };
            let request = CreateContactGroupRequest {
                contact_group: Some(ContactGroup {
                    name: Some(candidate),
                    client_data: Some(vec![GroupClientData {
                        key: Some(GROUP_MARKER.to_owned()),
                        value: Some(user.user.to_string()),
                    }]),
                    ..ContactGroup::default()
                }),
                read_group_fields: None,
            };
            let created = self
                .people_write(&c, Repeat::Safe, || {
                    let request = request.clone();
                    let c = &c;
                    async move { hub_call!(c.people.contact_groups().create(request)) }
                })
                .await;
            match created {
                Ok(group) => {
                    return group.resource_name.ok_or_else(|| {
                        RemoteError::new(RemoteErrorKind::Transient, "group created without a name")
                    })
                }
                // The name is taken: by ours (an earlier create went through and its answer
                // was lost), or by a personal group (try the next name).
                Err(e) if e.kind == RemoteErrorKind::AlreadyExists => {
                    if let Some(id) = self.find_group(&c, &user.user).await? {
                        return Ok(id);
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| invalid("no free contact group name")))
    }

    async fn list_events(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: Option<&str>,
    ) -> Result<Listing<SyncedEvent>, RemoteError> {
        let mut changes = Vec::new();
        let walked = self
            .walk_events(user, calendar, sync_token, &mut |page| {
                changes.extend(page);
                true
            })
            .await?;
        Ok(Listing {
            changes,
            next_sync_token: walked.next_sync_token,
            full: sync_token.is_none(),
        })
    }

    async fn scan_events(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: &str,
        keep: &mut dyn FnMut(Vec<RemoteChange<SyncedEvent>>) -> bool,
    ) -> Result<Option<String>, RemoteError> {
        let walked = self
            .walk_events(user, calendar, Some(sync_token), keep)
            .await?;
        Ok(walked.token())
    }

    async fn get_event(
        &self,
        user: &GoogleUser,
        calendar: &str,
        id: &str,
    ) -> Result<RemoteChange<SyncedEvent>, RemoteError> {
        let c = self.clients(user).await?;
        let event = self
            .policy
            .run(&c.calendar_pacer, 1, Repeat::Safe, || async {
                hub_call!(c.calendar.events().get(calendar, id))
            })
            .await?;
        Ok(event_from_google(&event))
    }

    async fn event_ops(
        &self,
        user: &GoogleUser,
        calendar: &str,
        ops: &[EventOp],
    ) -> BatchResult<SyncedEvent> {
        let c = self.clients(user).await?;
        let mut slots: Slots<SyncedEvent> = Slots::new(ops.len());
        let mut parts: Vec<Option<BatchRequestPart>> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.event_part(calendar, op) {
                Ok(part) => parts.push(Some(part)),
                Err(e) => {
                    slots.set(i, Err(e));
                    parts.push(None);
                }
            }
        }
        let mut pending: Vec<usize> = (0..ops.len()).filter(|&i| parts[i].is_some()).collect();
        let attempts = self.policy.config().max_attempts.max(1);
        let batch_size = self.config.batch_size();
        for round in 0..attempts {
            let mut again: Vec<usize> = Vec::new();
            let mut wait_at_least: Option<Duration> = None;
            for chunk in pending.chunks(batch_size) {
                if slots.fail_if_halted(chunk.iter().copied()) {
                    continue;
                }
                let chunk_parts: Vec<BatchRequestPart> =
                    chunk.iter().filter_map(|&i| parts[i].clone()).collect();
                match self.send_batch(&c, &chunk_parts).await {
                    Err(e) => slots.fail_all(chunk, &e),
                    Ok(answers) => {
                        for (position, &i) in chunk.iter().enumerate() {
                            let result = match answers.get(position).and_then(Option::as_ref) {
                                Some(answer) => Self::part_outcome(&ops[i], answer),
                                None => Err(RemoteError::new(
                                    RemoteErrorKind::Transient,
                                    "the batch answer has no part for this op",
                                )),
                            };
                            match result {
                                Err(e)
                                    if super::classify::is_retryable(e.kind)
                                        && round + 1 < attempts =>
                                {
                                    wait_at_least = wait_at_least.max(e.retry_after);
                                    slots.set(i, Err(e));
                                    again.push(i);
                                }
                                result => slots.set(i, result),
                            }
                        }
                    }
                }
            }
            if again.is_empty() || slots.halted.is_some() {
                break;
            }
            tokio::time::sleep(self.policy.delay(round, wait_at_least)).await;
            pending = again;
        }
        Ok(slots.finish(ops.iter().map(EventOp::key)))
    }

    async fn list_contacts(
        &self,
        user: &GoogleUser,
        group: &str,
        sync_token: Option<&str>,
    ) -> Result<Listing<SyncedContact>, RemoteError> {
        let mut changes = Vec::new();
        let walked = self
            .walk_contacts(user, group, sync_token, &mut |page| {
                changes.extend(page);
                true
            })
            .await?;
        Ok(Listing {
            changes,
            next_sync_token: walked.next_sync_token,
            full: sync_token.is_none(),
        })
    }

    async fn scan_contacts(
        &self,
        user: &GoogleUser,
        group: &str,
        sync_token: &str,
        keep: &mut dyn FnMut(Vec<RemoteChange<SyncedContact>>) -> bool,
    ) -> Result<Option<String>, RemoteError> {
        let walked = self
            .walk_contacts(user, group, Some(sync_token), keep)
            .await?;
        Ok(walked.token())
    }

    async fn get_contact(
        &self,
        user: &GoogleUser,
        group: &str,
        resource: &str,
    ) -> Result<RemoteChange<SyncedContact>, RemoteError> {
        let c = self.clients(user).await?;
        let person = self
            .people_read(&c, || async {
                hub_call!(c
                    .people
                    .people()
                    .get(resource)
                    .person_fields(FieldMask::from_str(PERSON_FIELDS).unwrap_or_default()))
            })
            .await?;
        Ok(contact_from_google(&person, group))
    }

    async fn contact_ops(
        &self,
        user: &GoogleUser,
        group: &str,
        ops: &[ContactOp],
    ) -> BatchResult<SyncedContact> {
        let c = self.clients(user).await?;
        let _writes = c.people_writes.lock().await;
        let mut slots: Slots<SyncedContact> = Slots::new(ops.len());
        let mut creates = Vec::new();
        let mut updates = Vec::new();
        let mut marked_updates = Vec::new();
        let mut deletes = Vec::new();
        let mut releases = Vec::new();
        let mut seen_updates = BTreeSet::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                ContactOp::Create { crm_id, data } => creates.push((i, crm_id, data)),
                ContactOp::Update {
                    resource,
                    etag,
                    crm_id,
                    data,
                    marked,
                } => {
                    // batchUpdateContacts is keyed by resource name: a second update of
                    // the same contact in one call would be lost.
                    if seen_updates.insert(resource.as_str()) {
                        let to = if *marked {
                            &mut marked_updates
                        } else {
                            &mut updates
                        };
                        to.push((i, resource, etag, crm_id, data));
                    } else {
                        slots.set(
                            i,
                            Err(invalid(format!("{resource} is updated twice in one call"))),
                        );
                    }
                }
                ContactOp::Delete { resource } => deletes.push((i, resource)),
                ContactOp::Release {
                    resource,
                    base,
                    pre_link,
                } => {
                    // Released through batchUpdateContacts too: one write per contact.
                    if seen_updates.insert(resource.as_str()) {
                        releases.push((i, resource, base.as_ref(), pre_link.as_ref()));
                    } else {
                        slots.set(
                            i,
                            Err(invalid(format!("{resource} is updated twice in one call"))),
                        );
                    }
                }
            }
        }
        for chunk in creates.chunks(MAX_BATCH_CREATE) {
            if !slots.fail_if_halted(chunk.iter().map(|t| t.0)) {
                self.create_chunk(&c, group, chunk, &mut slots).await;
            }
        }
        for chunk in updates.chunks(MAX_BATCH_UPDATE) {
            if !slots.fail_if_halted(chunk.iter().map(|t| t.0)) {
                self.update_chunk(&c, group, chunk, &mut slots).await;
            }
        }
        for chunk in marked_updates.chunks(MAX_BATCH_UPDATE) {
            if !slots.fail_if_halted(chunk.iter().map(|t| t.0)) {
                let pending = chunk
                    .iter()
                    .map(|&(index, resource, etag, crm_id, data)| {
                        let mut person = contact_to_google(crm_id, group, data, &[], &[]);
                        // Only the synced fields are written: the marker and memberships
                        // the contact carries stay as they are.
                        person.memberships = None;
                        person.client_data = None;
                        person.etag = Some(etag.clone());
                        person.resource_name = Some(resource.clone());
                        (index, resource.clone(), person)
                    })
                    .collect();
                self.send_updates(&c, group, pending, SYNCED_PERSON_FIELDS, &mut slots)
                    .await;
            }
        }
        for chunk in releases.chunks(MAX_BATCH_UPDATE) {
            if !slots.fail_if_halted(chunk.iter().map(|t| t.0)) {
                self.release_chunk(&c, group, chunk, &mut slots).await;
            }
        }
        for chunk in deletes.chunks(MAX_BATCH_DELETE) {
            if !slots.fail_if_halted(chunk.iter().map(|t| t.0)) {
                self.delete_chunk(&c, chunk, &mut slots).await;
            }
        }
        Ok(slots.finish(ops.iter().map(ContactOp::key)))
    }
}

mod offboarding;

pub use offboarding::{marker_user, revoke_url};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn people_item_statuses_map_to_kinds() {
        let stale = json!({"code": 9, "message": "Request person.etag is different"});
        assert_eq!(
            status_error(&stale).kind,
            RemoteErrorKind::PreconditionFailed
        );
        let missing = json!({"code": 5, "message": "not found"});
        assert_eq!(status_error(&missing).kind, RemoteErrorKind::NotFound);
        let bad = json!({"code": 3, "message": "invalid"});
        assert_eq!(status_error(&bad).kind, RemoteErrorKind::Permanent);
        let busy = json!({"code": 8});
        assert_eq!(status_error(&busy).kind, RemoteErrorKind::RateLimited);
    }

    #[test]
    fn contact_errors_are_read_from_error_details() {
        let body = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "details": [
            {"@type": "type.googleapis.com/google.people.v1.BatchUpdateContactsErrorDetails",
             "contactErrors": {"people/c1": {"code": 9, "message": "stale"}}}
        ]}});
        let errors = contact_errors(&body).unwrap();
        assert_eq!(errors.len(), 1);
        assert!(errors.contains_key("people/c1"));
        assert!(contact_errors(&json!({"error": {"code": 400}})).is_none());
    }

    #[test]
    fn the_calendar_marker_is_a_whole_line() {
        let marker = calendar_marker(&UserId::new("u1").unwrap());
        assert!(has_marker(Some("Kept by crmsync\ncrmsync:u1"), &marker));
        assert!(!has_marker(Some("crmsync:u10"), &marker));
        assert!(!has_marker(None, &marker));
    }

    #[test]
    fn config_defaults_follow_the_config_file() {
        let config = GoogleRemoteConfig::new(&GoogleConfig::default(), &SyncConfig::default());
        assert_eq!(config.people_root, GOOGLE_PEOPLE_ROOT);
        assert_eq!(config.retry.max_attempts, 6);
        assert_eq!(config.batch_size(), 500);
        let emulator = GoogleConfig {
            base_url: "http://127.0.0.1:9/".into(),
            ..GoogleConfig::default()
        };
        let config = GoogleRemoteConfig::new(&emulator, &SyncConfig::default());
        assert_eq!(config.people_root, "http://127.0.0.1:9/");
    }
}
