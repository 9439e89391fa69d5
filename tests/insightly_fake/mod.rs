//! A fake Insightly API v3.1 for the connector's tests, driven by the JSON fixtures in
//! `tests/fixtures/insightly/` (records shaped as the published API returns them).
//!
//! It runs on its own thread and runtime (`connector_support::ThreadServer`) at
//! `http://127.0.0.1:PORT/v3.1/` and does what the connector relies on:
//! - HTTP Basic auth with a per-user API key as the user name (unknown, revoked or inactive
//!   user's key → 401);
//! - what each key sees, like Insightly's Simple Permissions: administrators see every
//!   record; others their own records and those whose `VISIBLE_TO` is `EVERYONE`, `TEAM`
//!   (a team they are in) or `INDIVIDUALS` (listing them); `OWNER` is the owner only;
//! - `skip`/`top` paging (`top` over 500 → 400), `count_total` → `X-Total-Count`,
//!   `/Search?updated_after_utc=` (ISO-8601, strictly after), `GET /{kind}/{id}` (404 when
//!   missing or not visible), partial `PUT` (id plus the fields to set, `null` clears), and
//!   `DELETE`; every change moves `DATE_UPDATED_UTC`;
//! - `X-RateLimit-Limit` / `X-RateLimit-Remaining` on every answer, a daily quota (429 with
//!   `X-RateLimit-Remaining: 0` once spent), and scripted faults (429 with `Retry-After`,
//!   500, 503) for the next requests.
//!
//! Tests change the CRM through the methods of [`FakeInsightly`] (an edit moves the stamp,
//! `edit_silently` does not — like a permission change), and read the request log.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::connector_support::ThreadServer;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{Duration, NaiveDateTime};
use crmsync::crm::connector::pacing::ManualClock;
use crmsync::crm::connector::secret::SecretRef;
use crmsync::crm::connector::settings::OpenOptions;
use crmsync::crm::connector::source::ShadowSource;
use crmsync::crm::insightly::config::Mode;
use crmsync::crm::insightly::{self, Insightly, InsightlyConfig};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The record collections the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Organisations,
    Contacts,
    Events,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "Organisations" => Some(Kind::Organisations),
            "Contacts" => Some(Kind::Contacts),
            "Events" => Some(Kind::Events),
            _ => None,
        }
    }

    fn id_field(self) -> &'static str {
        match self {
            Kind::Organisations => "ORGANISATION_ID",
            Kind::Contacts => "CONTACT_ID",
            Kind::Events => "EVENT_ID",
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Whose key (after authentication).
    pub user: Option<i64>,
    pub status: u16,
}

#[derive(Debug, Clone)]
struct Fault {
    status: u16,
    retry_after: Option<u64>,
}

struct FakeState {
    users: BTreeMap<i64, Value>,
    teams: BTreeMap<i64, Value>,
    members: BTreeSet<(i64, i64)>,
    records: BTreeMap<Kind, BTreeMap<i64, Value>>,
    revoked: BTreeSet<i64>,
    clock: NaiveDateTime,
    faults: VecDeque<Fault>,
    quota: Option<u64>,
    used: u64,
    log: Vec<Logged>,
    next_id: i64,
}

/// The API key of a fixture user (a test secret: the leak tests look for it).
pub fn key_of(user: i64) -> String {
    format!("insightly-test-key-{user}-7c1e95")
}

fn fixture(name: &str) -> Vec<Value> {
    let text = match name {
        "users" => include_str!("../fixtures/insightly/users.json"),
        "teams" => include_str!("../fixtures/insightly/teams.json"),
        "team_members" => include_str!("../fixtures/insightly/team_members.json"),
        "organisations" => include_str!("../fixtures/insightly/organisations.json"),
        "contacts" => include_str!("../fixtures/insightly/contacts.json"),
        "events" => include_str!("../fixtures/insightly/events.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap()
}

fn int(v: &Value, field: &str) -> Option<i64> {
    v.get(field).and_then(Value::as_i64)
}

fn format_stamp(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn parse_stamp(v: &Value) -> Option<NaiveDateTime> {
    v.get("DATE_UPDATED_UTC")
        .and_then(Value::as_str)
        .and_then(|s| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok())
}

impl FakeState {
    fn load() -> Self {
        let by = |list: Vec<Value>, field: &str| -> BTreeMap<i64, Value> {
            list.into_iter()
                .map(|v| (int(&v, field).unwrap(), v))
                .collect()
        };
        let mut records = BTreeMap::new();
        records.insert(
            Kind::Organisations,
            by(fixture("organisations"), "ORGANISATION_ID"),
        );
        records.insert(Kind::Contacts, by(fixture("contacts"), "CONTACT_ID"));
        records.insert(Kind::Events, by(fixture("events"), "EVENT_ID"));
        let members = fixture("team_members")
            .iter()
            .map(|m| {
                (
                    int(m, "TEAM_ID").unwrap(),
                    int(m, "MEMBER_USER_ID").unwrap(),
                )
            })
            .collect();
        Self {
            users: by(fixture("users"), "USER_ID"),
            teams: by(fixture("teams"), "TEAM_ID"),
            members,
            records,
            revoked: BTreeSet::new(),
            clock: NaiveDateTime::parse_from_str("2026-11-20 08:00:00", "%Y-%m-%d %H:%M:%S")
                .unwrap(),
            faults: VecDeque::new(),
            quota: None,
            used: 0,
            log: Vec::new(),
            next_id: 900,
        }
    }

    fn tick(&mut self) -> String {
        self.clock += Duration::minutes(1);
        format_stamp(&self.clock)
    }

    fn user_of_key(&self, headers: &HeaderMap) -> Option<i64> {
        let raw = headers.get("authorization")?.to_str().ok()?;
        let encoded = raw.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (key, _password) = text.split_once(':')?;
        let user = self.users.keys().copied().find(|u| key_of(*u) == key)?;
        let active = self.users[&user]["ACTIVE"].as_bool().unwrap_or(false);
        (active && !self.revoked.contains(&user)).then_some(user)
    }

    fn is_admin(&self, user: i64) -> bool {
        self.users[&user]["ADMINISTRATOR"]
            .as_bool()
            .unwrap_or(false)
    }

    /// Simple Permissions, as Insightly applies them to a user's key.
    fn visible(&self, user: i64, record: &Value) -> bool {
        if self.is_admin(user) || int(record, "OWNER_USER_ID") == Some(user) {
            return true;
        }
        match record.get("VISIBLE_TO").and_then(Value::as_str) {
            None => true,
            Some(v) => match v.to_ascii_uppercase().as_str() {
                "EVERYONE" => true,
                "TEAM" => int(record, "VISIBLE_TEAM_ID")
                    .is_some_and(|t| self.members.contains(&(t, user))),
                "INDIVIDUALS" => record
                    .get("VISIBLE_USER_IDS")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .split(',')
                    .any(|p| p.trim().parse::<i64>().ok() == Some(user)),
                _ => false,
            },
        }
    }
}

fn json_response(status: u16, body: Value) -> (u16, HeaderMap, String) {
    (status, HeaderMap::new(), body.to_string())
}

fn error(status: u16, message: &str) -> (u16, HeaderMap, String) {
    json_response(status, json!({"Message": message}))
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

impl FakeState {
    fn respond(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> (u16, HeaderMap, String) {
        let Some(path) = uri.path().strip_prefix("/v3.1/") else {
            return error(404, "no such API version");
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let Some(user) = self.user_of_key(headers) else {
            return error(401, "Authorization has been denied for this request.");
        };
        if let Some(fault) = self.faults.pop_front() {
            let mut h = HeaderMap::new();
            if let Some(after) = fault.retry_after {
                h.insert("retry-after", HeaderValue::from(after));
            }
            return (fault.status, h, json!({"Message": "fault"}).to_string());
        }
        if let Some(limit) = self.quota {
            if self.used >= limit {
                let mut h = HeaderMap::new();
                h.insert("x-ratelimit-limit", HeaderValue::from(limit));
                h.insert("x-ratelimit-remaining", HeaderValue::from(0u64));
                return (429, h, json!({"Message": "API quota exceeded"}).to_string());
            }
        }
        self.used += 1;
        let q = query_map(uri);
        match (method.as_str(), segments.as_slice()) {
            ("GET", [collection]) => self.list(user, collection, &q, None),
            ("GET", [collection, "Search"]) => {
                let Some(after) = q.get("updated_after_utc") else {
                    return error(
                        400,
                        "Search needs updated_after_utc or field_name/field_value",
                    );
                };
                match NaiveDateTime::parse_from_str(after, "%Y-%m-%dT%H:%M:%SZ") {
                    Ok(t) => self.list(user, collection, &q, Some(t)),
                    Err(_) => error(400, "updated_after_utc must be yyyy-mm-ddThh:mm:ssZ"),
                }
            }
            ("GET", [collection, id]) => {
                let (Some(kind), Ok(id)) = (Kind::parse(collection), id.parse::<i64>()) else {
                    return error(404, "not found");
                };
                match self.records[&kind].get(&id) {
                    Some(r) if self.visible(user, r) => json_response(200, r.clone()),
                    _ => error(404, "not found"),
                }
            }
            ("PUT", [collection]) => self.put(user, collection, body),
            ("DELETE", [collection, id]) => {
                let (Some(kind), Ok(id)) = (Kind::parse(collection), id.parse::<i64>()) else {
                    return error(404, "not found");
                };
                let visible = self.records[&kind]
                    .get(&id)
                    .is_some_and(|r| self.visible(user, r));
                if !visible {
                    return error(404, "not found");
                }
                self.records.get_mut(&kind).unwrap().remove(&id);
                (202, HeaderMap::new(), String::new())
            }
            _ => error(405, "method not allowed"),
        }
    }

    fn list(
        &self,
        user: i64,
        collection: &str,
        q: &BTreeMap<String, String>,
        after: Option<NaiveDateTime>,
    ) -> (u16, HeaderMap, String) {
        let skip: usize = q.get("skip").and_then(|s| s.parse().ok()).unwrap_or(0);
        let top: usize = q.get("top").and_then(|s| s.parse().ok()).unwrap_or(100);
        if top > 500 {
            return error(400, "top must not be more than 500");
        }
        let items: Vec<Value> = match collection {
            "Users" => self.users.values().cloned().collect(),
            "Teams" => self.teams.values().cloned().collect(),
            "TeamMembers" => self
                .members
                .iter()
                .enumerate()
                .map(|(i, (t, u))| json!({"PERMISSION_ID": i + 1, "TEAM_ID": t, "MEMBER_USER_ID": u}))
                .collect(),
            other => match Kind::parse(other) {
                Some(kind) => self.records[&kind]
                    .values()
                    .filter(|r| self.visible(user, r))
                    .filter(|r| match after {
                        Some(t) => parse_stamp(r).is_some_and(|s| s > t),
                        None => true,
                    })
                    .cloned()
                    .collect(),
                None => return error(404, "no such collection"),
            },
        };
        let total = items.len();
        let page: Vec<Value> = items.into_iter().skip(skip).take(top).collect();
        let mut h = HeaderMap::new();
        if q.get("count_total").map(String::as_str) == Some("true") {
            h.insert("x-total-count", HeaderValue::from(total));
        }
        (200, h, Value::Array(page).to_string())
    }

    fn put(&mut self, user: i64, collection: &str, body: &Bytes) -> (u16, HeaderMap, String) {
        let Some(kind) = Kind::parse(collection) else {
            return error(405, "method not allowed");
        };
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
            return error(400, "expected a JSON object");
        };
        let Some(id) = fields.get(kind.id_field()).and_then(Value::as_i64) else {
            return error(400, "the record id is required");
        };
        let visible = self.records[&kind]
            .get(&id)
            .is_some_and(|r| self.visible(user, r));
        if !visible {
            return error(404, "not found");
        }
        let stamp = self.tick();
        let record = self.records.get_mut(&kind).unwrap().get_mut(&id).unwrap();
        for (k, v) in fields {
            record[k.as_str()] = v;
        }
        record["DATE_UPDATED_UTC"] = json!(stamp);
        json_response(200, record.clone())
    }
}

#[derive(Clone)]
struct Shared(Arc<Mutex<FakeState>>);

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.0.lock().unwrap();
    let (status, mut extra, text) = state.respond(&method, &uri, &headers, &body);
    let user = state.user_of_key(&headers);
    state.log.push(Logged {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        user,
        status,
    });
    let limit = state.quota.unwrap_or(100_000);
    if !extra.contains_key("x-ratelimit-limit") {
        extra.insert("x-ratelimit-limit", HeaderValue::from(limit));
        extra.insert(
            "x-ratelimit-remaining",
            HeaderValue::from(limit.saturating_sub(state.used)),
        );
    }
    extra.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    (StatusCode::from_u16(status).unwrap(), extra, text).into_response()
}

/// The fake, running.
pub struct FakeInsightly {
    server: ThreadServer,
    state: Arc<Mutex<FakeState>>,
}

impl FakeInsightly {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::load()));
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(Shared(Arc::clone(&state)));
        Self {
            server: ThreadServer::start(router),
            state,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// `http://127.0.0.1:PORT/v3.1/`.
    pub fn base_url(&self) -> String {
        self.server.url("/v3.1/")
    }

    /// Edits a record as a user of Insightly would: `DATE_UPDATED_UTC` moves.
    pub fn edit(&self, kind: Kind, id: i64, f: impl FnOnce(&mut Value)) {
        self.with(|s| {
            let stamp = s.tick();
            let record = s.records.get_mut(&kind).unwrap().get_mut(&id).unwrap();
            f(record);
            record["DATE_UPDATED_UTC"] = json!(stamp);
        });
    }

    /// Changes a record without moving `DATE_UPDATED_UTC` (what a permission change looks
    /// like to an incremental read).
    pub fn edit_silently(&self, kind: Kind, id: i64, f: impl FnOnce(&mut Value)) {
        self.with(|s| f(s.records.get_mut(&kind).unwrap().get_mut(&id).unwrap()));
    }

    /// Adds a record (its id field set; the stamp is now).
    pub fn insert(&self, kind: Kind, mut record: Value) -> i64 {
        self.with(|s| {
            let id = match int(&record, kind.id_field()) {
                Some(id) => id,
                None => {
                    s.next_id += 1;
                    record[kind.id_field()] = json!(s.next_id);
                    s.next_id
                }
            };
            record["DATE_UPDATED_UTC"] = json!(s.tick());
            s.records.get_mut(&kind).unwrap().insert(id, record);
            id
        })
    }

    /// Deletes a record in Insightly.
    pub fn delete(&self, kind: Kind, id: i64) {
        self.with(|s| {
            s.records.get_mut(&kind).unwrap().remove(&id);
        });
    }

    pub fn record(&self, kind: Kind, id: i64) -> Option<Value> {
        self.with(|s| s.records[&kind].get(&id).cloned())
    }

    /// Edits a user (`ACTIVE`, `ROLE_ID`, …).
    pub fn edit_user(&self, id: i64, f: impl FnOnce(&mut Value)) {
        self.with(|s| {
            let stamp = s.tick();
            let user = s.users.get_mut(&id).unwrap();
            f(user);
            user["DATE_UPDATED_UTC"] = json!(stamp);
        });
    }

    /// Moves a user from one team to another.
    pub fn move_member(&self, user: i64, from: i64, to: i64) {
        self.with(|s| {
            s.members.remove(&(from, user));
            s.members.insert((to, user));
        });
    }

    /// The user's key stops working (401).
    pub fn revoke_key(&self, user: i64) {
        self.with(|s| {
            s.revoked.insert(user);
        });
    }

    /// The next `times` requests (after authentication) get `status`.
    pub fn fail_next(&self, status: u16, retry_after: Option<u64>, times: usize) {
        self.with(|s| {
            for _ in 0..times {
                s.faults.push_back(Fault {
                    status,
                    retry_after,
                });
            }
        });
    }

    /// Drops the faults not served yet.
    pub fn clear_faults(&self) {
        self.with(|s| s.faults.clear());
    }

    /// Sets the daily quota (requests answered before 429 with none remaining).
    pub fn set_daily_quota(&self, limit: Option<u64>) {
        self.with(|s| {
            s.quota = limit;
            s.used = 0;
        });
    }

    /// A new day: the quota's count starts again.
    pub fn new_day(&self) {
        self.with(|s| s.used = 0);
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.with(|s| s.log.clone())
    }

    pub fn clear_log(&self) {
        self.with(|s| s.log.clear());
    }

    /// A connector configuration against this fake, with key files (mode 0600) in `dir`.
    pub fn config(&self, dir: &Path, mode: Mode) -> InsightlyConfig {
        let write_key = |user: i64| -> SecretRef {
            let path = dir.join(format!("key-{user}"));
            std::fs::write(&path, format!("{}\n", key_of(user))).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            SecretRef::file(path)
        };
        let model =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/insightly/model.json");
        let mut config = InsightlyConfig {
            base_url: self.base_url(),
            mode,
            shadow_path: dir.join("insightly-shadow.db"),
            model_file: Some(model),
            requests_per_second: 10.0,
            full_reconcile_minutes: 60,
            poll_interval_secs: 0,
            page_size: 2,
            ..InsightlyConfig::default()
        };
        match mode {
            Mode::AdminKey => config.admin_key = Some(write_key(100)),
            Mode::Delegated => {
                for user in [100, 101, 102, 103] {
                    config.user_keys.insert(user.to_string(), write_key(user));
                }
            }
        }
        config
    }
}

/// Test options for the connector: the given virtual clock, a fixed jitter seed, short
/// backoff steps.
pub fn options(clock: &Arc<ManualClock>) -> OpenOptions {
    OpenOptions {
        clock: clock.clone(),
        retry_seed: Some(5),
        base_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(200),
    }
}

/// A virtual clock at the fake's "now".
pub fn clock() -> Arc<ManualClock> {
    use chrono::TimeZone;
    ManualClock::starting_at(chrono::Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap())
}

/// Opens the connector.
pub fn open(config: &InsightlyConfig, clock: &Arc<ManualClock>) -> ShadowSource<Insightly> {
    insightly::open_with(config, options(clock)).unwrap()
}
