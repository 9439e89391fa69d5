//! The HTTP side: accept loop (hyper 1, HTTP/1.1 with keep-alive), request dispatch by path,
//! the per-call pipeline shared by direct calls and batch parts, and the OAuth endpoints.
//!
//! Dropped connections are produced by returning an error from the hyper service: hyper then
//! closes the connection without writing a response, which is what a client sees when a
//! Google front end drops it.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use super::calendar::{self, CalendarRoute};
use super::control::{self, EmulatorHandle};
use super::faults::FaultKind;
use super::oauth;
use super::people::{self, PeopleRoute};
use super::quota::Limit;
use super::scopes::{self, Reach};
use super::state::Inner;
use super::wire::{percent_decode, ApiError, ApiFamily, ApiResponse, Query, RawRequest};

/// Largest request body accepted (a 1000-part batch of large events fits).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What to do with a request: answer it, or close the connection without answering.
pub(crate) enum Reply {
    Respond(ApiResponse),
    Drop,
}

/// Returned to hyper to make it close the connection without a response.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

/// Serve until `shutdown` resolves; then stop accepting, let in-flight requests finish
/// (bounded) and return.
pub async fn serve(listener: TcpListener, handle: EmulatorHandle, shutdown: impl Future) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let saver = handle.core.state_file.is_some().then(|| {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                if let Err(e) = handle.save_if_dirty() {
                    tracing::warn!("emulator: cannot write state file: {e}");
                }
            }
        })
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                handle.lock().counters.connections += 1;
                let handle = handle.clone();
                let mut stop = stop_rx.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let handle = handle.clone();
                        async move { handle_http(handle, req).await }
                    });
                    let conn = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        connections.abort_all();
    }
    if let Some(saver) = saver {
        saver.abort();
    }
}

async fn handle_http(
    handle: EmulatorHandle,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => {
            return Ok(to_hyper(ApiResponse::json_value(
                413,
                &json!({"error": {"code": 413, "message": "Request body too large"}}),
            )))
        }
    };
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect();
    if !headers.iter().any(|(k, _)| k == "host") {
        if let Some(authority) = parts.uri.authority() {
            headers.push(("host".to_string(), authority.to_string()));
        }
    }
    let raw = RawRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: Query::parse(parts.uri.query()),
        headers,
        body,
    };
    match dispatch(&handle, raw).await {
        Reply::Respond(r) => Ok(to_hyper(r)),
        Reply::Drop => Err(DropConnection),
    }
}

fn to_hyper(r: ApiResponse) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(r.status);
    for (k, v) in &r.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(Full::new(Bytes::from(r.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Route a request by path.
pub(crate) async fn dispatch(handle: &EmulatorHandle, req: RawRequest) -> Reply {
    let path = req.path.as_str();
    if path == "/token" || path == "/o/oauth2/token" {
        return token_endpoint(handle, &req).await;
    }
    if path == "/revoke" || path == "/o/oauth2/revoke" {
        return Reply::Respond(revoke_endpoint(handle, &req));
    }
    if path == "/_emulator" || path.starts_with("/_emulator/") {
        return Reply::Respond(control::handle_control(handle, &req));
    }
    if path.trim_end_matches('/') == "/batch/calendar/v3" {
        return super::batch::handle_batch(handle, &req).await;
    }
    let route = match resolve_route(&req) {
        Ok(route) => route,
        Err(response) => {
            handle.lock().counters.http_requests += 1;
            return Reply::Respond(response);
        }
    };
    handle.lock().counters.http_requests += 1;
    api_call(handle, &route, &req).await
}

/// A resolved API endpoint.
#[derive(Clone, Debug)]
pub(crate) enum ApiRoute {
    Calendar(CalendarRoute),
    People(PeopleRoute),
}

impl ApiRoute {
    pub fn family(&self) -> ApiFamily {
        match self {
            ApiRoute::Calendar(_) => ApiFamily::Calendar,
            ApiRoute::People(_) => ApiFamily::People,
        }
    }

    pub fn method_id(&self) -> &'static str {
        match self {
            ApiRoute::Calendar(r) => r.method_id(),
            ApiRoute::People(r) => r.method_id(),
        }
    }

    pub fn is_write(&self) -> bool {
        match self {
            ApiRoute::Calendar(r) => r.is_write(),
            ApiRoute::People(r) => r.is_write(),
        }
    }
}

/// Map a path to an endpoint; unknown paths get a 404 in the API family's shape.
pub(crate) fn resolve_route(req: &RawRequest) -> Result<ApiRoute, ApiResponse> {
    if let Some(segs) = req.segments_after("/calendar/v3/") {
        return calendar::route(&req.method, &segs)
            .map(ApiRoute::Calendar)
            .ok_or_else(|| ApiError::not_found().into_response(ApiFamily::Calendar));
    }
    if let Some(rest) = req.path.strip_prefix("/v1/") {
        return people::route(&req.method, &percent_decode(rest))
            .map(ApiRoute::People)
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "notFound",
                    format!("Method not found: {} {}", req.method, req.path),
                )
                .into_response(ApiFamily::People)
            });
    }
    Err(ApiResponse::json_value(
        404,
        &json!({"error": {"code": 404, "message": format!("Not Found: {}", req.path), "status": "NOT_FOUND"}}),
    ))
}

fn bearer_token(req: &RawRequest) -> Option<String> {
    if let Some(h) = req.header("authorization") {
        let (scheme, token) = h.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
            return Some(token.trim().to_string());
        }
        return None;
    }
    req.query
        .get("access_token")
        .or_else(|| req.query.get("oauth_token"))
        .map(str::to_string)
}

/// A call that passed authentication and the scope check.
pub(crate) struct Admitted {
    /// The impersonated user.
    pub user: String,
    /// The OAuth client (app) of the token.
    pub client: String,
    pub fault: Option<FaultKind>,
}

/// Authentication, counting, the scope check ([`scopes`]) and the fault decision for one call
/// (under the lock).
pub(crate) fn admit(
    inner: &mut Inner,
    route: &ApiRoute,
    req: &RawRequest,
) -> Result<Admitted, ApiResponse> {
    let family = route.family();
    let grant = bearer_token(req).and_then(|t| inner.data.tokens.lookup(&t).cloned());
    let Some(grant) = grant else {
        inner.counters.record_call(route.method_id(), None);
        inner.counters.record_status(401);
        return Err(ApiError::unauthenticated().into_response(family));
    };
    inner
        .counters
        .record_call(route.method_id(), Some(&grant.subject));
    match scopes::reach(route.method_id(), &grant.scopes) {
        None => {
            inner.counters.record_status(403);
            return Err(scopes::insufficient_scopes(route.method_id(), family));
        }
        Some(Reach::AppCreatedCalendars) => {
            if !calendar_visible_to_app(inner, route, &grant.subject, &grant.client) {
                inner.counters.record_status(404);
                return Err(ApiError::not_found().into_response(family));
            }
        }
        Some(Reach::Everywhere) => {}
    }
    let fault = inner
        .faults
        .decide(route.method_id(), &req.method, Some(&grant.subject));
    if fault.is_some() {
        inner.counters.faults_injected += 1;
    }
    Ok(Admitted {
        user: grant.subject,
        client: grant.client,
        fault,
    })
}

/// Whether a token reaching only app-created calendars may touch the calendar `route` names:
/// it may if that calendar was created by `client` (or does not exist, which the handler
/// answers with 404 anyway); any other calendar is invisible to it.
fn calendar_visible_to_app(inner: &Inner, route: &ApiRoute, user: &str, client: &str) -> bool {
    let ApiRoute::Calendar(r) = route else {
        return true;
    };
    let Some(id) = r.calendar_id() else {
        return true;
    };
    let id = if id == "primary" { user } else { id };
    inner
        .data
        .users
        .get(user)
        .and_then(|u| u.calendars.get(id))
        .is_none_or(|c| c.created_by_app.as_deref() == Some(client))
}

fn window() -> chrono::Duration {
    chrono::Duration::seconds(60)
}

/// Quota buckets, by the limit that refused a call.
const CALENDAR_USER_BUCKET: &str = "calendar";
const CALENDAR_PROJECT_BUCKET: &str = "calendar-project";

/// The error for a call refused by `bucket`'s limit, in Google's terms: the per-user Calendar
/// quota answers 403 `userRateLimitExceeded`, the per-project one 403 (or, with
/// `calendar_project_limit_status = 429`, 429) `rateLimitExceeded`, both in the
/// `usageLimits` domain; People answers 429 `RESOURCE_EXHAUSTED`.
fn quota_error(bucket: &str, route: &ApiRoute, project_status: u16) -> ApiError {
    match (route.family(), bucket) {
        (ApiFamily::Calendar, CALENDAR_USER_BUCKET) => {
            ApiError::new(403, "userRateLimitExceeded", "User Rate Limit Exceeded")
                .with_domain("usageLimits")
        }
        (ApiFamily::Calendar, _) => {
            let code = if project_status == 429 { 429 } else { 403 };
            ApiError::new(code, "rateLimitExceeded", "Rate Limit Exceeded")
                .with_domain("usageLimits")
        }
        (ApiFamily::People, _) => {
            let metric = if route.is_write() {
                "Critical write requests"
            } else {
                "Critical read requests"
            };
            ApiError::new(
                429,
                "rateLimitExceeded",
                format!(
                    "Quota exceeded for quota metric '{metric}' and limit '{metric} per minute per user' of service 'people.googleapis.com' for consumer 'project_number:emulator'."
                ),
            )
            .with_domain("usageLimits")
            .with_status("RESOURCE_EXHAUSTED")
            .with_error_info("RATE_LIMIT_EXCEEDED")
        }
    }
}

/// Quota check and execution for one admitted call (under the lock).
pub(crate) fn run(
    inner: &mut Inner,
    route: &ApiRoute,
    caller: &Admitted,
    req: &RawRequest,
) -> ApiResponse {
    let user = caller.user.as_str();
    let family = route.family();
    let now = inner.now();
    let q = inner.settings.quota.clone();
    let mut limits: Vec<Limit<'_>> = Vec::new();
    match family {
        ApiFamily::Calendar => {
            if let Some(limit) = q.calendar_per_user_per_minute {
                limits.push(Limit {
                    bucket: CALENDAR_USER_BUCKET,
                    key: user,
                    limit,
                    window: window(),
                });
            }
            if let Some(limit) = q.calendar_per_project_per_minute {
                limits.push(Limit {
                    bucket: CALENDAR_PROJECT_BUCKET,
                    key: "*",
                    limit,
                    window: window(),
                });
            }
        }
        ApiFamily::People => {
            let (bucket, limit) = if route.is_write() {
                ("people-write", q.people_writes_per_user_per_minute)
            } else {
                ("people-read", q.people_reads_per_user_per_minute)
            };
            if let Some(limit) = limit {
                limits.push(Limit {
                    bucket,
                    key: user,
                    limit,
                    window: window(),
                });
            }
        }
    }
    if let Err(refused) = inner.quota.take(&limits, now) {
        inner.counters.quota_rejections += 1;
        let error = quota_error(refused.bucket, route, q.calendar_project_limit_status);
        inner.counters.record_status(error.code);
        return error
            .with_retry_after(refused.retry_after_secs)
            .into_response(family);
    }
    let new_calendar_id = matches!(route, ApiRoute::Calendar(CalendarRoute::CalendarsInsert))
        .then(|| inner.data.new_calendar_id());
    let settings = inner.settings.clone();
    let data = inner.user_mut(user);
    let result = match route {
        ApiRoute::Calendar(r) => {
            let call = calendar::CallContext {
                client: &caller.client,
                new_calendar_id,
            };
            calendar::execute(data, &settings, now, r, req, call)
        }
        ApiRoute::People(r) => people::execute(data, &settings, now, r, req),
    };
    let response = match result {
        Ok(r) => r,
        Err(e) => e.into_response(family),
    };
    inner.counters.record_status(response.status);
    if route.is_write() && response.is_success() {
        inner.dirty = true;
    }
    response
}

fn fault_response(family: ApiFamily, code: u16, retry_after: Option<u64>) -> ApiResponse {
    let mut e = ApiError::backend(code);
    if let Some(secs) = retry_after {
        e = e.with_retry_after(secs);
    }
    e.into_response(family)
}

/// The full pipeline for a direct (non-batch) API call.
async fn api_call(handle: &EmulatorHandle, route: &ApiRoute, req: &RawRequest) -> Reply {
    let admitted = {
        let mut inner = handle.lock();
        admit(&mut inner, route, req)
    };
    let caller = match admitted {
        Ok(a) => a,
        Err(response) => return Reply::Respond(response),
    };
    let mut lose_response = false;
    match caller.fault.clone() {
        None => {}
        Some(FaultKind::Status {
            code,
            retry_after_secs,
        }) => {
            handle.lock().counters.record_status(code);
            return Reply::Respond(fault_response(route.family(), code, retry_after_secs));
        }
        Some(FaultKind::Delay { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Some(FaultKind::DropConnection) => return Reply::Drop,
        Some(FaultKind::LostResponse) => lose_response = true,
    }
    let response = {
        let mut inner = handle.lock();
        run(&mut inner, route, &caller, req)
    };
    if lose_response {
        Reply::Drop
    } else {
        Reply::Respond(response)
    }
}

/// One batch part: same pipeline, but only status faults apply (a part cannot drop the
/// shared connection on its own).
pub(crate) fn api_call_in_batch(
    handle: &EmulatorHandle,
    route: &ApiRoute,
    req: &RawRequest,
) -> ApiResponse {
    let mut inner = handle.lock();
    let caller = match admit(&mut inner, route, req) {
        Ok(a) => a,
        Err(response) => return response,
    };
    if let Some(FaultKind::Status {
        code,
        retry_after_secs,
    }) = caller.fault
    {
        inner.counters.record_status(code);
        return fault_response(route.family(), code, retry_after_secs);
    }
    run(&mut inner, route, &caller, req)
}

// ---------------------------------------------------------------------------------------------
// OAuth endpoints

fn form(req: &RawRequest) -> Query {
    let mut q = Query::parse(std::str::from_utf8(&req.body).ok());
    q.0.extend(req.query.0.iter().cloned());
    q
}

async fn token_endpoint(handle: &EmulatorHandle, req: &RawRequest) -> Reply {
    let fault = {
        let mut inner = handle.lock();
        inner.counters.token_requests += 1;
        *inner
            .counters
            .by_endpoint
            .entry("oauth2.token".to_string())
            .or_default() += 1;
        inner.faults.decide("oauth2.token", &req.method, None)
    };
    match fault {
        None => {}
        Some(FaultKind::Status { code, .. }) => {
            return Reply::Respond(ApiResponse::json_value(
                code,
                &json!({"error": "internal_failure", "error_description": "Backend Error"}),
            ))
        }
        Some(FaultKind::Delay { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Some(FaultKind::DropConnection) | Some(FaultKind::LostResponse) => return Reply::Drop,
    }
    if req.method != "POST" {
        return Reply::Respond(
            oauth::OAuthError {
                status: 405,
                error: "invalid_request",
                description: "Token requests must be POSTed.".into(),
            }
            .into_response(),
        );
    }
    let params = form(req);
    let grant_type = params.get("grant_type").unwrap_or_default();
    let response = match grant_type {
        oauth::JWT_BEARER => {
            let host = req.header("host").unwrap_or("127.0.0.1");
            let endpoint = format!("http://{host}{}", req.path);
            match oauth::verify_assertion(
                params.get("assertion").unwrap_or_default(),
                &oauth::accepted_audiences(&endpoint),
                &handle.core.public_key,
                &handle.core.domains,
            ) {
                Ok(verified) => {
                    let mut inner = handle.lock();
                    let lifetime = inner.settings.access_token_lifetime_secs;
                    let (token, expires_in) = inner.data.tokens.issue_access(
                        &verified.subject,
                        &verified.client,
                        verified.scopes,
                        lifetime,
                        None,
                    );
                    inner.dirty = true;
                    ApiResponse::json_value(
                        200,
                        &json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}),
                    )
                }
                Err(e) => e.into_response(),
            }
        }
        "refresh_token" => {
            let refresh = params.get("refresh_token").unwrap_or_default().to_string();
            let mut inner = handle.lock();
            match inner.data.tokens.refresh.get(&refresh).cloned() {
                Some(grant) => {
                    let lifetime = inner.settings.access_token_lifetime_secs;
                    let scope = grant.scopes.join(" ");
                    let (token, expires_in) = inner.data.tokens.issue_access(
                        &grant.subject,
                        &grant.client,
                        grant.scopes,
                        lifetime,
                        Some(refresh),
                    );
                    inner.dirty = true;
                    ApiResponse::json_value(
                        200,
                        &json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer", "scope": scope}),
                    )
                }
                None => oauth::OAuthError {
                    status: 400,
                    error: "invalid_grant",
                    description: "Token has been expired or revoked.".into(),
                }
                .into_response(),
            }
        }
        other => oauth::OAuthError {
            status: 400,
            error: "unsupported_grant_type",
            description: format!("Invalid grant_type: {other}"),
        }
        .into_response(),
    };
    Reply::Respond(response)
}

fn revoke_endpoint(handle: &EmulatorHandle, req: &RawRequest) -> ApiResponse {
    let params = form(req);
    let mut inner = handle.lock();
    inner.counters.token_requests += 1;
    *inner
        .counters
        .by_endpoint
        .entry("oauth2.revoke".to_string())
        .or_default() += 1;
    // Fault injection answers with a status here (the endpoint is synchronous).
    if let Some(FaultKind::Status { code, .. }) =
        inner.faults.decide("oauth2.revoke", &req.method, None)
    {
        inner.counters.faults_injected += 1;
        return ApiResponse::json_value(
            code,
            &json!({"error": "internal_failure", "error_description": "Backend Error"}),
        );
    }
    let token = params.get("token").unwrap_or_default().to_string();
    if inner.data.tokens.revoke(&token) {
        inner.dirty = true;
        ApiResponse::json_value(200, &json!({}))
    } else {
        oauth::OAuthError {
            status: 400,
            error: "invalid_token",
            description: "Token expired or revoked".into(),
        }
        .into_response()
    }
}
