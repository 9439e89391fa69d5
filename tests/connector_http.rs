//! The connector HTTP client against a scripted server on its own thread: pacing, 429 with
//! Retry-After, 5xx and lost connections retried with bounded backoff, 401/403 as a
//! permanent error naming the key's owner (never the key), the daily quota, and calls made
//! from inside a tokio current-thread runtime (as the engine makes them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connector_support;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::TimeZone;
use connector_support::ThreadServer;
use crmsync::crm::connector::http::{
    Credential, HttpClient, HttpConfig, HttpRequest, HttpResponse,
};
use crmsync::crm::connector::pacing::{ManualClock, PacingConfig, RetryPolicy};
use crmsync::crm::connector::secret::Secret;
use crmsync::crm::connector::ConnectorError;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A status and extra headers.
type Answer = (u16, Vec<(&'static str, String)>);

/// What the server answers, in order; `[]` with 200 once the script is spent.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    seen_auth: Arc<Mutex<Vec<String>>>,
}

impl Script {
    fn push(&self, status: u16, headers: &[(&'static str, &str)]) {
        self.answers.lock().unwrap().push_back((
            status,
            headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ));
    }

    fn served(&self) -> usize {
        self.seen_auth.lock().unwrap().len()
    }
}

fn server(script: Script) -> ThreadServer {
    let router = axum::Router::new().fallback(move |headers: HeaderMap| {
        let script = script.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            script.seen_auth.lock().unwrap().push(auth);
            let next = script.answers.lock().unwrap().pop_front();
            let (status, extra) = next.unwrap_or((200, Vec::new()));
            let mut out = HeaderMap::new();
            for (k, v) in extra {
                out.insert(k, v.parse().unwrap());
            }
            (StatusCode::from_u16(status).unwrap(), out, "[]").into_response()
        }
    });
    ThreadServer::start(router)
}

fn quota_when_none_left(r: &HttpResponse) -> Option<String> {
    (r.header_u64("x-ratelimit-remaining") == Some(0)).then(|| "0 requests left today".to_owned())
}

fn client(clock: Arc<ManualClock>, attempts: u32) -> HttpClient {
    HttpClient::start(HttpConfig {
        crm: "FakeCRM".into(),
        pacing: PacingConfig {
            requests_per_second: 1000.0,
            daily_budget: None,
        },
        retry: RetryPolicy {
            max_attempts: attempts,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(60),
            seed: Some(11),
        },
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        quota_test: quota_when_none_left,
        clock,
    })
    .unwrap()
}

fn clock() -> Arc<ManualClock> {
    ManualClock::starting_at(chrono::Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap())
}

const KEY: &str = "0f3c-secret-key-never-printed";

fn get(srv: &ThreadServer, path: &str) -> HttpRequest {
    HttpRequest::get(
        url::Url::parse(&srv.url(path)).unwrap(),
        Credential::Basic {
            username: Secret::new(KEY),
            password: None,
        },
        "the API key of user 7 (from env FAKE_KEY)",
    )
}

#[test]
fn a_429_waits_the_retry_after_then_succeeds() {
    let script = Script::default();
    script.push(429, &[("retry-after", "7")]);
    let srv = server(script.clone());
    let clock = clock();
    let http = client(clock.clone(), 4);
    let resp = http.call(get(&srv, "/v1/things")).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(script.served(), 2);
    let sleeps = clock.sleeps();
    assert!(
        sleeps.contains(&Duration::from_secs(7)),
        "Retry-After honoured: {sleeps:?}"
    );
    assert_eq!(http.stats().retries, 1);
    // Basic auth: the key as user name, an empty password.
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{KEY}:")
        )
    );
    assert_eq!(script.seen_auth.lock().unwrap()[0], expected);
}

#[test]
fn server_errors_are_retried_with_bounded_jittered_backoff_then_reported() {
    let script = Script::default();
    script.push(503, &[]);
    script.push(500, &[]);
    let srv = server(script.clone());
    let clock = clock();
    let http = client(clock.clone(), 4);
    assert_eq!(http.call(get(&srv, "/x")).unwrap().status, 200);
    let waits: Vec<_> = clock
        .sleeps()
        .into_iter()
        .filter(|d| *d > Duration::from_millis(50))
        .collect();
    assert_eq!(waits.len(), 2, "{waits:?}");
    assert!(waits[0] >= Duration::from_millis(100) && waits[0] <= Duration::from_millis(200));
    assert!(waits[1] >= Duration::from_millis(200) && waits[1] <= Duration::from_millis(400));

    // Never better: the attempts are bounded and the error says what happened.
    for _ in 0..3 {
        script.push(502, &[]);
    }
    let err = client(clock.clone(), 3).call(get(&srv, "/y")).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectorError::Unavailable {
                status: 502,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("/y"), "{err}");
}

#[test]
fn a_refused_key_is_permanent_and_names_its_owner_not_the_key() {
    for status in [401, 403] {
        let script = Script::default();
        script.push(status, &[]);
        let srv = server(script.clone());
        let err = client(clock(), 5).call(get(&srv, "/me")).unwrap_err();
        assert_eq!(script.served(), 1, "not retried");
        let text = err.to_string();
        assert!(matches!(err, ConnectorError::Unauthorized { .. }));
        assert!(text.contains("user 7"), "{text}");
        assert!(!text.contains(KEY) && !format!("{err:?}").contains(KEY));
    }
}

#[test]
fn an_exhausted_daily_quota_stops_all_calls_until_midnight() {
    let script = Script::default();
    script.push(429, &[("x-ratelimit-remaining", "0"), ("retry-after", "1")]);
    let srv = server(script.clone());
    let clock = clock();
    let http = client(clock.clone(), 5);
    let err = http.call(get(&srv, "/a")).unwrap_err();
    assert!(
        matches!(err, ConnectorError::QuotaExhausted { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("nothing was lost"), "{err}");
    // Not retried, and the next call does not even reach the server.
    assert!(http.call(get(&srv, "/b")).is_err());
    assert_eq!(script.served(), 1);
    clock.advance(Duration::from_secs(15 * 3600));
    assert_eq!(http.call(get(&srv, "/c")).unwrap().status, 200);
}

#[test]
fn a_retry_after_longer_than_we_wait_fails_as_rate_limited() {
    let script = Script::default();
    script.push(429, &[("retry-after", "3600")]);
    let srv = server(script.clone());
    let err = client(clock(), 5).call(get(&srv, "/slow")).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectorError::RateLimited {
                retry_after: Some(3600),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_server_that_is_not_there_is_retried_then_reported() {
    let srv = server(Script::default());
    let url = srv.url("/gone");
    drop(srv);
    let clock = clock();
    let http = client(clock.clone(), 3);
    let request = HttpRequest::get(
        url::Url::parse(&url).unwrap(),
        Credential::Bearer(Secret::new(KEY)),
        "the token",
    );
    let err = http.call(request).unwrap_err();
    assert!(
        matches!(err, ConnectorError::Transport { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains(KEY));
}

#[tokio::test(flavor = "current_thread")]
async fn calls_from_inside_a_current_thread_runtime_do_not_deadlock() {
    // The engine calls `Source` synchronously from its runtime; the fake lives on its own.
    let script = Script::default();
    script.push(500, &[]);
    let srv = server(script.clone());
    let http = client(clock(), 3);
    let resp = http.call(get(&srv, "/inside")).unwrap();
    assert_eq!(resp.status, 200);
    drop(http);
}
