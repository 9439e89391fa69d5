//! A fake amoCRM API v4 for the connector's tests, built from the published request and
//! response shapes, driven by the JSON fixtures in `tests/fixtures/amocrm/` and served on
//! 127.0.0.1:0 from its own thread (`connector_support::ThreadServer`).
//!
//! What it does like amoCRM: `Authorization: Bearer` checked (401 problem+json otherwise);
//! `POST /oauth2/access_token` with `grant_type=refresh_token` rotating the pair (the old
//! refresh token dies; a wrong one is 400); HAL lists of `account`, `users`, `contacts`,
//! `companies`, `tasks` with `page` / `limit` (> 250 is 400), a `next` link while a page is
//! full, and `204 No Content` past the end or for nothing; `filter[updated_at][from]`,
//! `filter[task_type][]`, `order[id]`; `GET …/{id}` (204 when missing); `PATCH …/{id}`
//! that changes fields and moves `updated_at`. Faults are scripted per path prefix (429
//! with `Retry-After`, 5xx). Every request is logged, so tests can check what was sent.
//! Office-side changes (an edit, a rights change, a delete, a malformed record) are made
//! directly on the state.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::connector_support::ThreadServer;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// The integration's keys the fake expects on a refresh.
pub const CLIENT_ID: &str = "fake-integration-id";
pub const CLIENT_SECRET: &str = "fake-integration-secret-never-printed";
pub const REDIRECT_URI: &str = "https://crmsync.example/amocrm/callback";
/// The access token the fixture's long-lived-token tests use.
pub const LONG_LIVED: &str = "long-lived-token-never-printed";

/// One logged request.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub auth: String,
    pub status: u16,
    pub body: Value,
}

impl Logged {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted answer for the next request whose path starts with `prefix` (and whose
/// method is `method`, when given).
#[derive(Debug, Clone, Default)]
pub struct Fault {
    pub prefix: String,
    pub method: Option<String>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body (a problem+json document when `None`).
    pub body: Option<Value>,
}

/// The fake's data and behaviour.
pub struct FakeState {
    pub account: Value,
    pub users: Vec<Value>,
    pub contacts: Vec<Value>,
    pub companies: Vec<Value>,
    pub tasks: Vec<Value>,
    /// Unix seconds of the next change (`updated_at`).
    pub clock: i64,
    /// The valid access token; `None`: every token is refused.
    pub access_token: Option<String>,
    /// The refresh token the next refresh must present; `None`: refreshes are refused.
    pub refresh_token: Option<String>,
    pub refreshes: u32,
    pub faults: VecDeque<Fault>,
    pub log: Vec<Logged>,
    /// Whether `filter[updated_at]` is honoured (accounts without API filtering ignore it).
    pub filter_enabled: bool,
    /// What a successful refresh answers instead of the new tokens (a broken answer).
    pub refresh_answer: Option<Value>,
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/amocrm")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn embedded(doc: Value, key: &str) -> Vec<Value> {
    doc["_embedded"][key].as_array().unwrap().clone()
}

impl FakeState {
    pub fn from_fixtures() -> Self {
        Self {
            account: fixture("account.json"),
            users: embedded(fixture("users.json"), "users"),
            contacts: embedded(fixture("contacts.json"), "contacts"),
            companies: embedded(fixture("companies.json"), "companies"),
            tasks: embedded(fixture("tasks.json"), "tasks"),
            clock: 1_790_000_000,
            access_token: Some(LONG_LIVED.into()),
            refresh_token: None,
            refreshes: 0,
            faults: VecDeque::new(),
            log: Vec::new(),
            filter_enabled: true,
            refresh_answer: None,
        }
    }

    fn list(&mut self, kind: &str) -> &mut Vec<Value> {
        match kind {
            "users" => &mut self.users,
            "contacts" => &mut self.contacts,
            "companies" => &mut self.companies,
            "tasks" => &mut self.tasks,
            other => panic!("no list {other}"),
        }
    }

    /// The record of `kind` with `id`.
    pub fn record(&mut self, kind: &str, id: i64) -> &mut Value {
        self.list(kind)
            .iter_mut()
            .find(|r| r["id"] == json!(id))
            .unwrap_or_else(|| panic!("no {kind} {id}"))
    }

    /// An office edit: sets `key` and moves `updated_at`.
    pub fn edit(&mut self, kind: &str, id: i64, key: &str, value: Value) {
        let at = self.tick();
        let record = self.record(kind, id);
        record[key] = value;
        record["updated_at"] = json!(at);
    }

    /// An office edit of a custom field's values (`PHONE`, `EMAIL`, `POSITION`).
    pub fn edit_field(&mut self, kind: &str, id: i64, code: &str, values: Value) {
        let at = self.tick();
        let record = self.record(kind, id);
        set_field(record, code, values);
        record["updated_at"] = json!(at);
    }

    /// A rights change (no record's `updated_at` moves).
    pub fn set_right(&mut self, user: i64, entity: &str, action: &str, letter: &str) {
        self.record("users", user)["rights"][entity][action] = json!(letter);
    }

    /// A record deleted in amoCRM: gone from lists and `GET`.
    pub fn delete(&mut self, kind: &str, id: i64) {
        self.list(kind).retain(|r| r["id"] != json!(id));
    }

    pub fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    /// Requests of `method` whose path ends with `suffix`.
    pub fn requests(&self, method: &str, suffix: &str) -> Vec<Logged> {
        self.log
            .iter()
            .filter(|l| l.method == method && l.path.ends_with(suffix))
            .cloned()
            .collect()
    }
}

fn set_field(record: &mut Value, code: &str, values: Value) {
    let id = match code {
        "POSITION" => 1001,
        "EMAIL" => 1002,
        "PHONE" => 1003,
        _ => 1999,
    };
    if !record["custom_fields_values"].is_array() {
        record["custom_fields_values"] = json!([]);
    }
    let fields = record["custom_fields_values"].as_array_mut().unwrap();
    fields.retain(|f| f["field_code"] != json!(code));
    if !values.is_null() {
        fields.push(json!({"field_id": id, "field_code": code, "values": values}));
    }
}

/// The fake server and its state.
pub struct FakeAmo {
    pub state: Arc<Mutex<FakeState>>,
    pub server: ThreadServer,
}

impl FakeAmo {
    pub fn start() -> Self {
        Self::start_with(FakeState::from_fixtures())
    }

    pub fn start_with(state: FakeState) -> Self {
        let state = Arc::new(Mutex::new(state));
        let shared = Arc::clone(&state);
        let router = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = Arc::clone(&shared);
                async move { handle(&shared, method, uri, headers, body) }
            },
        );
        Self {
            state,
            server: ThreadServer::start(router),
        }
    }

    /// The account's address (`base_url`).
    pub fn base_url(&self) -> String {
        self.server.url("/")
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }
}

fn problem(status: u16, title: &str, detail: &str) -> Response {
    let body = json!({"title": title, "type": format!("https://httpstatus.es/{status}"),
        "status": status, "detail": detail});
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn hal(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/hal+json")],
        body.to_string(),
    )
        .into_response()
}

fn handle(
    shared: &Arc<Mutex<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.lock().unwrap();
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_owned();
    let response = route(&mut state, &method, &path, &query, &auth, &json_body);
    state.log.push(Logged {
        method: method.to_string(),
        path,
        query,
        auth,
        status: response.status().as_u16(),
        body: json_body,
    });
    response
}

fn route(
    state: &mut FakeState,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    auth: &str,
    body: &Value,
) -> Response {
    let applies = |f: &Fault| {
        path.starts_with(&f.prefix) && f.method.as_deref().is_none_or(|m| m == method.as_str())
    };
    if let Some(i) = state.faults.iter().position(applies) {
        let fault = state.faults.remove(i).unwrap();
        let mut response = match &fault.body {
            Some(body) => (
                StatusCode::from_u16(fault.status).unwrap(),
                [("content-type", "application/problem+json")],
                body.to_string(),
            )
                .into_response(),
            None => problem(fault.status, "Scripted", "a scripted fault"),
        };
        for (k, v) in fault.headers {
            response.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        return response;
    }
    if path == "/oauth2/access_token" && method == Method::POST {
        return refresh(state, body);
    }
    let Some(rest) = path.strip_prefix("/api/v4/") else {
        return problem(404, "Not Found", "no such path");
    };
    let token = auth.strip_prefix("Bearer ").unwrap_or("");
    if state.access_token.as_deref() != Some(token) || token.is_empty() {
        return problem(401, "Unauthorized", "Authorization is required");
    }
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match (method.clone(), parts.as_slice()) {
        (Method::GET, ["account"]) => hal(state.account.clone()),
        (Method::GET, [kind @ ("users" | "contacts" | "companies" | "tasks")]) => {
            list(state, kind, query)
        }
        (Method::GET, [kind @ ("contacts" | "companies" | "tasks"), id]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            match state.list(kind).iter().find(|r| r["id"] == json!(id)) {
                Some(r) => hal(r.clone()),
                None => StatusCode::NO_CONTENT.into_response(),
            }
        }
        (Method::PATCH, [kind @ ("contacts" | "companies" | "tasks"), id]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            patch(state, kind, id, body)
        }
        _ => problem(404, "Not Found", "no such method"),
    }
}

fn refresh(state: &mut FakeState, body: &Value) -> Response {
    let ok = body["grant_type"] == json!("refresh_token")
        && body["client_id"] == json!(CLIENT_ID)
        && body["client_secret"] == json!(CLIENT_SECRET)
        && body["redirect_uri"] == json!(REDIRECT_URI)
        && state.refresh_token.is_some()
        && body["refresh_token"].as_str() == state.refresh_token.as_deref();
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            json!({"hint": "Token has been revoked", "title": "Некорректный запрос",
                "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
                "status": 400, "detail": "В запросе отсутствует ряд параметров или параметры невалидны"})
                .to_string(),
        )
            .into_response();
    }
    state.refreshes += 1;
    let n = state.refreshes;
    state.access_token = Some(format!("rotated-access-{n}"));
    state.refresh_token = Some(format!("rotated-refresh-{n}"));
    if let Some(answer) = state.refresh_answer.clone() {
        return (StatusCode::OK, answer.to_string()).into_response();
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"token_type": "Bearer", "expires_in": 86400,
            "access_token": format!("rotated-access-{n}"),
            "refresh_token": format!("rotated-refresh-{n}")})
        .to_string(),
    )
        .into_response()
}

fn list(state: &mut FakeState, kind: &str, query: &[(String, String)]) -> Response {
    let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let limit: usize = get("limit").and_then(|l| l.parse().ok()).unwrap_or(50);
    if limit == 0 || limit > 250 {
        return problem(400, "Bad Request", "limit must be in 1..=250");
    }
    let page: usize = get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let from: Option<i64> = get("filter[updated_at][from]").and_then(|f| f.parse().ok());
    let types: Vec<i64> = query
        .iter()
        .filter(|(k, _)| k == "filter[task_type][]")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let filter_enabled = state.filter_enabled;
    let mut items: Vec<Value> = state
        .list(kind)
        .iter()
        .filter(|r| match (from, filter_enabled) {
            (Some(f), true) => r["updated_at"].as_i64().unwrap_or(0) >= f,
            _ => true,
        })
        .filter(|r| types.is_empty() || types.contains(&r["task_type_id"].as_i64().unwrap_or(0)))
        .cloned()
        .collect();
    items.sort_by_key(|r| r["id"].as_i64().unwrap_or(0));
    let start = (page - 1) * limit;
    if start >= items.len() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let slice: Vec<Value> = items[start..(start + limit).min(items.len())].to_vec();
    let href = |p: usize| format!("https://acme.amocrm.ru/api/v4/{kind}?limit={limit}&page={p}");
    let mut links = json!({"self": {"href": href(page)}});
    if slice.len() == limit {
        links["next"] = json!({"href": href(page + 1)});
    }
    hal(json!({"_page": page, "_links": links, "_embedded": {kind: slice}}))
}

fn patch(state: &mut FakeState, kind: &str, id: i64, body: &Value) -> Response {
    let Some(fields) = body.as_object() else {
        return problem(400, "Bad Request", "a single record object is expected");
    };
    let allowed: &[&str] = match kind {
        "contacts" => &[
            "first_name",
            "last_name",
            "name",
            "custom_fields_values",
            "updated_by",
        ],
        "companies" => &["name", "updated_by"],
        _ => &["text", "complete_till", "duration", "updated_by"],
    };
    if let Some(bad) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return (
            StatusCode::BAD_REQUEST,
            json!({"validation-errors": [{"request_id": "0", "errors": [{"code": "NotSupportedChoice",
                "path": bad, "detail": "This field is not expected."}]}],
                "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400,
                "detail": "Request validation failed"})
            .to_string(),
        )
            .into_response();
    }
    if !state.list(kind).iter().any(|r| r["id"] == json!(id)) {
        return StatusCode::NO_CONTENT.into_response();
    }
    let at = state.tick();
    let record = state.record(kind, id);
    for (k, v) in fields {
        if k == "custom_fields_values" {
            for f in v.as_array().into_iter().flatten() {
                let code = f["field_code"].as_str().unwrap_or("");
                set_field(record, code, f["values"].clone());
            }
        } else {
            record[k] = v.clone();
        }
    }
    record["updated_at"] = json!(at);
    let name = record["name"].clone();
    hal(
        json!({"id": id, "name": name, "updated_at": at, "_links": {"self": {"href":
        format!("https://acme.amocrm.ru/api/v4/{kind}/{id}")}}}),
    )
}

/// `(method, path, page, status)` of every logged request, for assertions on the walk.
pub fn walk(state: &FakeState) -> Vec<(String, String, Option<String>, u16)> {
    state
        .log
        .iter()
        .map(|l| {
            (
                l.method.clone(),
                l.path.clone(),
                l.param("page").map(str::to_owned),
                l.status,
            )
        })
        .collect()
}

/// Counts of logged requests by path.
pub fn counts(state: &FakeState) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for l in &state.log {
        *out.entry(l.path.clone()).or_insert(0) += 1;
    }
    out
}

// ── the connector against the fake ───────────────────────────────────────────────────────

use chrono::TimeZone;
use crmsync::crm::amocrm::{self, AmoCrm, AmoCrmConfig, OAuthConfig};
use crmsync::crm::connector::pacing::ManualClock;
use crmsync::crm::connector::secret::SecretRef;
use crmsync::crm::connector::settings::OpenOptions;
use crmsync::crm::connector::source::ShadowSource;
use crmsync::crm::OrgModel;
use std::path::PathBuf;

/// "Now" of the connector tests (the fixture's tasks fall a few days later).
pub fn start_time() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

pub fn manual_clock() -> Arc<ManualClock> {
    ManualClock::starting_at(start_time())
}

/// Writes `text` to `dir/name` with mode 0600.
pub fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// A config for the fake with the long-lived token (from a 0600 file in `dir`).
pub fn long_lived_config(fake: &FakeAmo, dir: &Path) -> AmoCrmConfig {
    let token = private_file(dir, "amocrm-token", &format!("{LONG_LIVED}\n"));
    AmoCrmConfig {
        base_url: fake.base_url(),
        shadow_path: dir.join("amocrm-shadow.db"),
        google_domains: vec!["acme.example".into()],
        poll_interval_secs: 0,
        access_token: Some(SecretRef::file(token)),
        ..AmoCrmConfig::default()
    }
}

/// A config for the fake with the refresh flow; `tokens` is the token file's content.
pub fn oauth_config(fake: &FakeAmo, dir: &Path, tokens: &Value) -> AmoCrmConfig {
    let secret = private_file(dir, "client-secret", CLIENT_SECRET);
    let token_file = private_file(dir, "amocrm-tokens.json", &tokens.to_string());
    AmoCrmConfig {
        access_token: None,
        oauth: Some(OAuthConfig {
            client_id: CLIENT_ID.into(),
            client_secret: SecretRef::file(secret),
            redirect_uri: REDIRECT_URI.into(),
            token_file,
        }),
        ..long_lived_config(fake, dir)
    }
}

/// The connector's `Source` on a manual clock (sleeps are virtual, jitter seeded).
pub fn open(config: &AmoCrmConfig, clock: &Arc<ManualClock>) -> ShadowSource<AmoCrm> {
    let options = OpenOptions {
        clock: clock.clone(),
        retry_seed: Some(7),
        ..OpenOptions::default()
    };
    amocrm::open_with(config, options).unwrap()
}

/// amoCRM as it is now, read by a fresh connector into a private shadow (a full read).
pub fn truth(fake: &FakeAmo) -> OrgModel {
    let dir = tempfile::tempdir().unwrap();
    let config = AmoCrmConfig {
        shadow_path: ":memory:".into(),
        ..long_lived_config(fake, dir.path())
    };
    let source = open(&config, &manual_clock());
    source.pull_now(Some(true)).unwrap();
    source.with_shadow(|s| s.feed().snapshot().unwrap().0)
}
