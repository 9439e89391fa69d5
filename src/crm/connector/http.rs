//! [`HttpClient`]: a blocking front for an async `reqwest` client that lives on its own
//! thread, with the one retry and pacing policy every CRM call goes through.
//!
//! Why a thread: `crm::Source` is synchronous and the engine calls it from a tokio
//! current-thread runtime. `reqwest::blocking` panics inside a runtime, and blocking on a
//! future of the engine's own runtime would deadlock. So each client owns a thread with a
//! private current-thread runtime; `call` sends the request over a channel and blocks the
//! caller on the answer. The fake CRM servers of the tests run on threads of their own, so
//! nothing the engine's thread blocks on ever needs that thread.
//!
//! The policy, per call: wait for the [`Pacer`]; send; then
//! - 2xx–4xx other than below: the answer (the connector decides what a 404 means);
//! - 401 / 403: [`ConnectorError::Unauthorized`] naming whose key it was (never the key);
//! - 429 that the CRM-specific quota test recognises as the daily quota: the pacer stops
//!   every further call until the next UTC midnight, [`ConnectorError::QuotaExhausted`];
//! - other 429, 500, 502, 503, 504: wait `Retry-After` if given (up to
//!   `max_retry_after`), else a jittered backoff step, and try again, up to `max_attempts`;
//! - no answer (timeout, refused, reset): retried the same way for idempotent methods.
//!
//! The authorization header is marked sensitive, and neither the key nor the header value
//! is ever formatted into a message or a log event.

use super::pacing::{Backoff, Clock, Pacer, PacingConfig, RetryPolicy};
use super::secret::Secret;
use super::ConnectorError;
use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER};
use reqwest::Method;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Credential {
    /// HTTP Basic (`username:password`, base64); an API key as the user name with an empty
    /// password is Insightly's scheme.
    Basic {
        username: Secret,
        password: Option<Secret>,
    },
    /// `Authorization: Bearer <token>` (OAuth 2.0).
    Bearer(Secret),
}

impl Credential {
    fn header(&self) -> Option<HeaderValue> {
        let text = match self {
            Credential::Basic { username, password } => {
                let pair = format!(
                    "{}:{}",
                    username.expose(),
                    password.as_ref().map(Secret::expose).unwrap_or("")
                );
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            Credential::Bearer(token) => format!("Bearer {}", token.expose()),
        };
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub url: url::Url,
    pub credential: Option<Credential>,
    /// Whose key this is, for error messages ("the API key of user 1001 (from env X)").
    pub who: String,
    pub json: Option<serde_json::Value>,
}

impl HttpRequest {
    pub fn get(url: url::Url, credential: Credential, who: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            url,
            credential: Some(credential),
            who: who.into(),
            json: None,
        }
    }

    /// Whether a lost answer may be retried (the request may have been applied).
    fn idempotent(&self) -> bool {
        !matches!(self.method, Method::POST | Method::PATCH)
    }
}

/// One answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl HttpResponse {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header as a number.
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.header(name).and_then(|v| v.trim().parse().ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A CRM-specific test: `Some(detail)` when a 429 means the daily quota is used up (so
/// retrying is pointless) rather than a burst limit.
pub type QuotaTest = fn(&HttpResponse) -> Option<String>;

/// Everything the client needs.
#[derive(Clone)]
pub struct HttpConfig {
    /// The CRM's name in messages ("Insightly").
    pub crm: String,
    pub pacing: PacingConfig,
    pub retry: RetryPolicy,
    /// Whole-request timeout (one attempt).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub quota_test: QuotaTest,
    pub clock: Arc<dyn Clock>,
}

/// Counters of what the client sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Requests sent (attempts, retries included).
    pub requests: u64,
    /// Attempts that were retried.
    pub retries: u64,
}

struct Job {
    request: HttpRequest,
    reply: mpsc::SyncSender<Result<HttpResponse, ConnectorError>>,
}

/// The blocking client (see the module docs).
pub struct HttpClient {
    crm: String,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Mutex<HttpStats>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("crm", &self.crm)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl HttpClient {
    /// Starts the client's thread (with its runtime and connection pool).
    pub fn start(config: HttpConfig) -> Result<Self, ConnectorError> {
        let crm = config.crm.clone();
        let stats = Arc::new(Mutex::new(HttpStats::default()));
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let worker_stats = Arc::clone(&stats);
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let thread = std::thread::Builder::new()
            .name(format!("{}-http", crm.to_lowercase()))
            .spawn(move || {
                let _logs = tracing::dispatcher::set_default(&dispatch);
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start a runtime: {e}")));
                        return;
                    }
                };
                let client = {
                    let _enter = runtime.enter();
                    reqwest::Client::builder()
                        .timeout(config.request_timeout)
                        .connect_timeout(config.connect_timeout)
                        .build()
                };
                let client = match client {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot build the HTTP client: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let mut worker = Worker {
                    pacer: Pacer::new(config.pacing),
                    backoff: Backoff::new(config.retry.clone()),
                    config,
                    client,
                    stats: worker_stats,
                };
                while let Ok(job) = inbox.recv() {
                    let result = runtime.block_on(worker.execute(&job.request));
                    let _ = job.reply.send(result);
                }
            })
            .map_err(|e| ConnectorError::Config(format!("cannot start the {crm} thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(ConnectorError::Config(message)),
            Err(_) => return Err(ConnectorError::WorkerGone { crm }),
        }
        Ok(Self {
            crm,
            jobs: Mutex::new(Some(jobs)),
            thread: Some(thread),
            stats,
        })
    }

    /// Sends `request` under the policy and waits for the outcome.
    pub fn call(&self, request: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let gone = || ConnectorError::WorkerGone {
            crm: self.crm.clone(),
        };
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let jobs = lock(&self.jobs);
            let sender = jobs.as_ref().ok_or_else(gone)?;
            sender.send(Job { request, reply }).map_err(|_| gone())?;
        }
        answer.recv().map_err(|_| gone())?
    }

    /// What was sent so far.
    pub fn stats(&self) -> HttpStats {
        *lock(&self.stats)
    }
}

impl Drop for HttpClient {
    fn drop(&mut self) {
        lock(&self.jobs).take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the policy does with an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Done,
    Unauthorized,
    Quota(String),
    Retry { after: Option<Duration> },
}

fn retry_after(response: &HttpResponse, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let raw = response.header(RETRY_AFTER.as_str())?.trim();
    if let Ok(seconds) = raw.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn classify(
    response: &HttpResponse,
    quota_test: QuotaTest,
    now: chrono::DateTime<chrono::Utc>,
) -> Verdict {
    match response.status {
        401 | 403 => Verdict::Unauthorized,
        429 => match quota_test(response) {
            Some(detail) => Verdict::Quota(detail),
            None => Verdict::Retry {
                after: retry_after(response, now),
            },
        },
        500 | 502 | 503 | 504 => Verdict::Retry {
            after: retry_after(response, now),
        },
        _ => Verdict::Done,
    }
}

struct Worker {
    config: HttpConfig,
    pacer: Pacer,
    backoff: Backoff,
    client: reqwest::Client,
    stats: Arc<Mutex<HttpStats>>,
}

impl Worker {
    async fn execute(&mut self, request: &HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let crm = self.config.crm.clone();
        let clock = Arc::clone(&self.config.clock);
        let path = request.url.path().to_owned();
        let max = self.config.retry.max_attempts.max(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.pacer.admit(clock.as_ref()).await.map_err(|stop| {
                ConnectorError::QuotaExhausted {
                    crm: crm.clone(),
                    detail: stop.detail,
                    resets: stop.resets,
                }
            })?;
            lock(&self.stats).requests += 1;
            tracing::debug!(crm = %crm, method = %request.method, path = %path, attempt, "CRM request");
            let outcome = self.send(request).await;
            let wait = match outcome {
                Err(message) => {
                    tracing::debug!(crm = %crm, path = %path, attempt, error = %message, "CRM request failed");
                    if attempt >= max || !request.idempotent() {
                        return Err(ConnectorError::Transport {
                            crm,
                            path,
                            attempts: attempt,
                            message,
                        });
                    }
                    self.backoff.delay(attempt)
                }
                Ok(response) => {
                    match classify(&response, self.config.quota_test, clock.utc_now()) {
                        Verdict::Done => return Ok(response),
                        Verdict::Unauthorized => {
                            return Err(ConnectorError::Unauthorized {
                                crm,
                                who: request.who.clone(),
                                status: response.status,
                            })
                        }
                        Verdict::Quota(detail) => {
                            let stop = self.pacer.exhausted(clock.as_ref(), detail);
                            return Err(ConnectorError::QuotaExhausted {
                                crm,
                                detail: stop.detail,
                                resets: stop.resets,
                            });
                        }
                        Verdict::Retry { after } => {
                            let give_up = |attempts| {
                                if response.status == 429 {
                                    ConnectorError::RateLimited {
                                        crm: crm.clone(),
                                        path: path.clone(),
                                        attempts,
                                        retry_after: after.map(|d| d.as_secs()),
                                    }
                                } else {
                                    ConnectorError::Unavailable {
                                        crm: crm.clone(),
                                        path: path.clone(),
                                        status: response.status,
                                        attempts,
                                    }
                                }
                            };
                            if attempt >= max {
                                return Err(give_up(attempt));
                            }
                            match after {
                                Some(d) if d > self.config.retry.max_retry_after => {
                                    return Err(give_up(attempt))
                                }
                                Some(d) => d,
                                None => self.backoff.delay(attempt),
                            }
                        }
                    }
                }
            };
            tracing::debug!(crm = %crm, path = %path, attempt, wait_ms = wait.as_millis() as u64, "CRM request retried");
            lock(&self.stats).retries += 1;
            clock.sleep(wait).await;
        }
    }

    async fn send(&self, request: &HttpRequest) -> Result<HttpResponse, String> {
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .header(ACCEPT, "application/json");
        if let Some(value) = request.credential.as_ref().and_then(Credential::header) {
            builder = builder.header(AUTHORIZATION, value);
        }
        if let Some(body) = &request.json {
            builder = builder.json(body);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .map_err(|e| e.without_url().to_string())?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn response(status: u16, headers: &[(&'static str, &str)]) -> HttpResponse {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        HttpResponse {
            status,
            headers: map,
            body: String::new(),
        }
    }

    fn no_quota(_: &HttpResponse) -> Option<String> {
        None
    }

    fn remaining_zero(r: &HttpResponse) -> Option<String> {
        (r.header_u64("x-ratelimit-remaining") == Some(0)).then(|| "0 left".to_owned())
    }

    #[test]
    fn answers_are_classified_by_the_policy() {
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
        assert_eq!(classify(&response(200, &[]), no_quota, now), Verdict::Done);
        assert_eq!(classify(&response(404, &[]), no_quota, now), Verdict::Done);
        assert_eq!(classify(&response(400, &[]), no_quota, now), Verdict::Done);
        assert_eq!(
            classify(&response(401, &[]), no_quota, now),
            Verdict::Unauthorized
        );
        assert_eq!(
            classify(&response(403, &[]), no_quota, now),
            Verdict::Unauthorized
        );
        assert_eq!(
            classify(&response(429, &[("retry-after", "7")]), no_quota, now),
            Verdict::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify(
                &response(429, &[("retry-after", "Mon, 23 Nov 2026 09:00:30 GMT")]),
                no_quota,
                now
            ),
            Verdict::Retry {
                after: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(
            classify(
                &response(429, &[("x-ratelimit-remaining", "0")]),
                remaining_zero,
                now
            ),
            Verdict::Quota("0 left".into())
        );
        assert_eq!(
            classify(&response(503, &[]), no_quota, now),
            Verdict::Retry { after: None }
        );
        assert_eq!(classify(&response(501, &[]), no_quota, now), Verdict::Done);
    }

    #[test]
    fn the_authorization_header_is_sensitive_and_well_formed() {
        let basic = Credential::Basic {
            username: Secret::new("key-1"),
            password: None,
        }
        .header()
        .unwrap();
        assert!(basic.is_sensitive());
        assert_eq!(basic.to_str().unwrap(), "Basic a2V5LTE6");
        assert!(!format!("{basic:?}").contains("a2V5"));
        let bearer = Credential::Bearer(Secret::new("tok")).header().unwrap();
        assert!(bearer.is_sensitive());
        assert!(!format!("{:?}", Credential::Bearer(Secret::new("tok"))).contains("tok"));
    }
}
