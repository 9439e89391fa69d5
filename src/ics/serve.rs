//! Serving feeds: `GET /ics/<secret>.ics` as an axum [`Router`] for the worker to mount.
//!
//! Answers: 200 `text/calendar; charset=utf-8` with a strong `ETag` and
//! `Cache-Control: private`; 304 when `If-None-Match` names the current ETag; 404 — the
//! same body whatever the reason (malformed, unknown, rotated or revoked secret, inactive or
//! removed user); 405 for any method but GET (HEAD is GET without the body, as HTTP
//! wants). Logs name the user id, never the secret; do not mount this router under a layer
//! that logs request paths.
//!
//! **Cost.** Nothing calls the CRM or Google: a feed comes from the state DB's mirror. The
//! permission index is what is expensive to build (about a second for 2,000 users and
//! 300,000 records, see README), so it is built once per mirror version, not per request:
//! one renderer thread ([`FeedService`]) owns a state-DB connection, the typed model and its
//! [`Access`] index, and answers requests in turn. Before each answer it reads the mirror's
//! cursor (one indexed row); when the cursor moved it reloads the model and rebuilds the
//! index. Each user's rendered document is cached under (mirror cursor, scope fingerprint,
//! hour), so a feed polled again with nothing changed costs a secret lookup, a cursor read
//! and a scope read. After [`IDLE_UNLOAD`] without requests the model is dropped.

use super::{feed_now, feed_scope, render_feed, FeedSecret, IcsError};
use super::{RenderedFeed, SecretHash};
use crate::config::Config;
use crate::crm::Cursor;
use crate::model::UserId;
use crate::security::Access;
use crate::store::StateDb;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The renderer drops its model after this long without a request.
pub const IDLE_UNLOAD: Duration = Duration::from_secs(15 * 60);

/// `last_fetched_at` is written at most once per this gap per feed.
const FETCH_RECORD_GAP: chrono::Duration = chrono::Duration::minutes(1);

/// Where "now" comes from (tests pass a fixed clock).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// What a secret leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedAnswer {
    /// Unknown or revoked secret, or a user without a feed to serve: 404.
    NotFound,
    Feed(RenderedFeed),
}

struct Job {
    hash: SecretHash,
    reply: oneshot::Sender<Result<FeedAnswer, IcsError>>,
}

/// The feed renderer: a thread that owns the model and index (see the module docs), and
/// the handle requests go through. Dropping every handle (and the router) stops it.
#[derive(Clone)]
pub struct FeedService {
    jobs: mpsc::Sender<Job>,
}

impl FeedService {
    /// Starts the renderer on `state` (its own connection) with `config`'s scope and
    /// `[ics]` settings.
    pub fn start(state: StateDb, config: Config, clock: Clock) -> Result<Self, IcsError> {
        let (jobs, inbox) = mpsc::channel();
        std::thread::Builder::new()
            .name("ics-feeds".into())
            .spawn(move || {
                Renderer {
                    state,
                    config,
                    clock,
                }
                .run(&inbox)
            })
            .map_err(IcsError::Spawn)?;
        Ok(Self { jobs })
    }

    /// What `secret` leads to now.
    pub async fn lookup(&self, secret: &FeedSecret) -> Result<FeedAnswer, IcsError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                hash: secret.hash(),
                reply,
            })
            .map_err(|_| IcsError::Stopped)?;
        answer.await.map_err(|_| IcsError::Stopped)?
    }

    /// The router answering `GET /ics/<secret>.ics`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/ics/{file}", get(serve_feed))
            .with_state(self)
    }
}

/// The feed router over the configured state DB, for the worker to mount (merge) into its
/// HTTP listener.
pub fn feed_router(config: &Config) -> Result<Router, IcsError> {
    let state = StateDb::open_existing_with(&config.state.path, config.state.busy_timeout())?;
    Ok(FeedService::start(state, config.clone(), system_clock())?.router())
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, RFC 9110 §13.1.2).
fn none_match_hits(header: &HeaderValue, etag: &str) -> bool {
    let Ok(text) = header.to_str() else {
        return false;
    };
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = strip(etag);
    text.split(',')
        .any(|candidate| candidate.trim() == "*" || strip(candidate) == ours)
}

async fn serve_feed(
    State(service): State<FeedService>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(secret) = file.strip_suffix(".ics").and_then(FeedSecret::parse) else {
        tracing::info!("ics feed: malformed feed path");
        return not_found();
    };
    let feed = match service.lookup(&secret).await {
        Ok(FeedAnswer::Feed(feed)) => feed,
        Ok(FeedAnswer::NotFound) => {
            tracing::info!("ics feed: no feed for this secret (unknown, revoked or inactive)");
            return not_found();
        }
        Err(e) => {
            tracing::error!(error = %e, "ics feed failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "feed unavailable\n").into_response();
        }
    };
    let etag = HeaderValue::from_str(&feed.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("private")),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|h| none_match_hits(h, &feed.etag))
    {
        tracing::info!(user = %feed.user, status = 304, "ics feed served");
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    tracing::info!(user = %feed.user, status = 200, events = feed.events, "ics feed served");
    (
        StatusCode::OK,
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/calendar; charset=utf-8"),
        )],
        feed.body.to_string(),
    )
        .into_response()
}

/// What a cached document depends on besides the mirror version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CacheKey {
    fingerprint: String,
    hour: DateTime<Utc>,
}

struct Renderer {
    state: StateDb,
    config: Config,
    clock: Clock,
}

/// The model and index of one mirror version, with the documents rendered from them.
struct Loaded<'a, 'm> {
    cursor: Cursor,
    access: &'a Access<'m>,
    mirror_times: &'a HashMap<String, DateTime<Utc>>,
    cache: HashMap<UserId, (CacheKey, RenderedFeed)>,
}

impl Renderer {
    fn run(self, inbox: &mpsc::Receiver<Job>) {
        let mut pending: Option<Job> = None;
        loop {
            let job = match pending.take() {
                Some(job) => job,
                None => match inbox.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
            };
            let loaded = self.state.crm_cursor().and_then(|cursor| {
                Ok((
                    cursor,
                    self.state.load_org_model()?,
                    self.state.event_mirror_times()?,
                ))
            });
            let (cursor, model, mirror_times) = match loaded {
                Ok(loaded) => loaded,
                Err(e) => {
                    let _ = job.reply.send(Err(e.into()));
                    continue;
                }
            };
            let access = Access::build(&model);
            let mut current = Loaded {
                cursor,
                access: &access,
                mirror_times: &mirror_times,
                cache: HashMap::new(),
            };
            let mut job = job;
            loop {
                let answer = self.answer(&mut current, &job.hash);
                let _ = job.reply.send(answer);
                job = match inbox.recv_timeout(IDLE_UNLOAD) {
                    Ok(next) => next,
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                };
                match self.state.crm_cursor() {
                    Ok(cursor) if cursor == current.cursor => {}
                    Ok(_) => {
                        pending = Some(job);
                        break;
                    }
                    Err(e) => {
                        let _ = job.reply.send(Err(e.into()));
                        pending = None;
                        break;
                    }
                }
            }
        }
    }

    fn answer(
        &self,
        loaded: &mut Loaded<'_, '_>,
        hash: &SecretHash,
    ) -> Result<FeedAnswer, IcsError> {
        let Some((feed, stored)) = self.state.feed_by_secret_hash(hash.as_str())? else {
            return Ok(FeedAnswer::NotFound);
        };
        if !hash.matches(&stored) {
            return Ok(FeedAnswer::NotFound);
        }
        let Ok(user) = UserId::new(feed.user_id.as_str()) else {
            return Ok(FeedAnswer::NotFound);
        };
        let overrides = self.state.scope_overrides(&user)?;
        let model = loaded.access.model();
        let Some(resolved) = feed_scope(&self.config.scope, model, &user, &overrides)? else {
            tracing::info!(user = %user, "ics feed: user inactive or not in the CRM");
            return Ok(FeedAnswer::NotFound);
        };
        let now = (self.clock)();
        let hour = feed_now(now);
        let key = CacheKey {
            fingerprint: resolved.fingerprint.clone(),
            hour,
        };
        let feed = match loaded.cache.get(&user) {
            Some((cached, feed)) if *cached == key => feed.clone(),
            _ => {
                let feed = render_feed(
                    loaded.access,
                    loaded.mirror_times,
                    &self.config.ics,
                    &resolved,
                    hour,
                )?;
                loaded.cache.insert(user.clone(), (key, feed.clone()));
                feed
            }
        };
        // Bookkeeping only: a busy state DB must not fail the fetch.
        if let Err(e) = self.state.record_feed_fetch(&user, now, FETCH_RECORD_GAP) {
            tracing::warn!(user = %user, error = %e, "ics feed: last fetch not recorded");
        }
        Ok(FeedAnswer::Feed(feed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let etag = "\"abc\"";
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(none_match_hits(&h("\"abc\""), etag));
        assert!(none_match_hits(&h("W/\"abc\""), etag));
        assert!(none_match_hits(&h("\"x\", \"abc\""), etag));
        assert!(none_match_hits(&h("*"), etag));
        assert!(!none_match_hits(&h("\"abd\""), etag));
        assert!(!none_match_hits(&h("abc"), etag));
    }
}
