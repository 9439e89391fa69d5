//! ICS feeds: a read-only iCalendar subscription per user (`GET /ics/<secret>.ics`, served
//! by [`serve::feed_router`]) and `crmsync export ics`, both rendering the same document.
//!
//! **What a feed holds** is the sync engine's desired event set for that user, nothing
//! wider: [`crate::scope::desired_set`] (read access ∩ export gate ∩ the user's event
//! selection ∩ the event window) with every event projected by
//! [`crate::sync::desired::project_event`] — the Google mapping's projection, so the
//! attendee lines name users and only the contacts the user may read. The window is taken
//! around the current hour (not the second), so a feed polled within the hour renders the
//! same bytes. Contacts are not in feeds. An inactive or unknown user has no feed (404).
//!
//! **Secrets** ([`secret`]): only their SHA-256 is stored (`store::feeds`); `feed create`
//! and `feed rotate` print the URL once; rotation replaces the hash in one statement;
//! [`StateDb::revoke_feed`](crate::store::StateDb::revoke_feed) deletes it, and each sync
//! pass calls [`revoke_departed_feeds`] for users who are inactive or gone from the CRM
//! (serving checks the mirror on every request, so their feeds answer 404 even before).
//!
//! **Documents** ([`document`]): stable UIDs per (user, record), `TZID` + `VTIMEZONE`
//! ([`vtimezone`]), all-day dates, recurrence lines, `DTSTAMP`/`LAST-MODIFIED` from the
//! mirror, `SEQUENCE` from the CRM version; attendees only in the description.

pub mod document;
pub mod secret;
pub mod serve;
mod vtimezone;

pub use document::{event_uid, render_document, DocumentMeta, FeedEvent};
pub use secret::{FeedSecret, SecretHash};
pub use serve::{feed_router, FeedService};

use crate::crm::OrgModel;
use crate::model::{ObjectKind, UserId};
use crate::scope::{self, desired_set, EffectiveScope, ResolvedScope, ScopeConfig, ScopeLayer};
use crate::security::{Access, AccessError};
use crate::store::{StateDb, StoreError};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// The `[ics]` section of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IcsConfig {
    /// Where the worker's feeds are reached from outside, e.g.
    /// `https://crm-feeds.example.com`; `feed create|rotate` print `<this>/ics/<secret>.ics`.
    /// Unset: they print the path alone.
    pub public_base_url: Option<String>,
    /// The calendar's display name in subscribing apps.
    pub calendar_name: String,
    /// How often subscribing apps are asked to re-fetch, in minutes.
    pub refresh_minutes: u32,
}

impl Default for IcsConfig {
    fn default() -> Self {
        Self {
            public_base_url: None,
            calendar_name: "CRM".into(),
            refresh_minutes: 60,
        }
    }
}

impl IcsConfig {
    /// Checks the values: `(key, message)` for the first bad one.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(base) = &self.public_base_url {
            let parsed = url::Url::parse(base)
                .map_err(|e| ("ics.public_base_url", format!("{base:?}: {e}")))?;
            let bare = parsed.query().is_none() && parsed.fragment().is_none();
            if !matches!(parsed.scheme(), "http" | "https") || !bare {
                return Err((
                    "ics.public_base_url",
                    format!("{base:?} is not an http(s) URL without query or fragment"),
                ));
            }
        }
        if !(5..=10_080).contains(&self.refresh_minutes) {
            return Err((
                "ics.refresh_minutes",
                format!("{} is not in 5..=10080", self.refresh_minutes),
            ));
        }
        Ok(())
    }

    /// The URL (or, without `public_base_url`, the path) of a feed.
    pub fn feed_url(&self, secret: &FeedSecret) -> String {
        let path = format!("/ics/{}.ics", secret.expose());
        match &self.public_base_url {
            Some(base) => format!("{}{path}", base.trim_end_matches('/')),
            None => path,
        }
    }
}

/// Failures of the feed machinery.
#[derive(Debug, thiserror::Error)]
pub enum IcsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("sync scope of {user}: {message}")]
    Scope { user: UserId, message: String },
    #[error(transparent)]
    Random(#[from] secret::RandomUnavailable),
    #[error("cannot start the feed renderer: {0}")]
    Spawn(std::io::Error),
    #[error("the feed renderer has stopped")]
    Stopped,
}

/// A rendered feed: the document and its ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFeed {
    pub user: UserId,
    pub events: usize,
    pub body: Arc<str>,
    /// A strong ETag (quoted) of `body`.
    pub etag: Arc<str>,
}

/// "Now" as feeds see it: the start of the current hour, so that renders within an hour
/// agree byte for byte (and the window's event set is computed once per hour).
pub fn feed_now(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(Duration::hours(1)).unwrap_or(now)
}

/// The scope a feed of `user` is rendered under, or `None` when the user has no feed to
/// serve (unknown to the mirror or inactive).
pub fn feed_scope(
    config: &ScopeConfig,
    model: &OrgModel,
    user: &UserId,
    overrides: &ScopeLayer,
) -> Result<Option<ResolvedScope>, IcsError> {
    if !model.users.get(user).is_some_and(|u| u.active) {
        return Ok(None);
    }
    scope::resolve(config, model, user, overrides)
        .map(Some)
        .map_err(|e| IcsError::Scope {
            user: user.clone(),
            message: e.to_string(),
        })
}

/// The events of `user`'s feed: the engine's desired event set (readable ∩ export gate ∩
/// selection ∩ window around `now`), projected as the engine projects them for Google,
/// ordered by record id.
pub fn feed_events(
    access: &Access<'_>,
    user: &UserId,
    scope: &EffectiveScope,
    now: DateTime<Utc>,
    mirror_times: &HashMap<String, DateTime<Utc>>,
) -> Result<Vec<FeedEvent>, AccessError> {
    let model = access.model();
    let set = desired_set(access, user, scope, ObjectKind::Event, now)?;
    let mut ids: Vec<_> = set.iter().collect();
    ids.sort();
    Ok(ids
        .into_iter()
        .filter_map(|id| {
            let event = model.events.get(id)?;
            let record = crate::model::RecordRef::new(ObjectKind::Event, id.clone());
            let version = model.versions.get(&record).copied().unwrap_or(0);
            Some(FeedEvent {
                record: id.clone(),
                data: crate::sync::desired::project_event(access, user, event),
                sequence: u32::try_from(version.max(0)).unwrap_or(u32::MAX),
                modified: mirror_times
                    .get(id.as_str())
                    .copied()
                    .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            })
        })
        .collect())
}

/// Renders `user`'s feed under `resolved` at `now` (already [`feed_now`]).
pub fn render_feed(
    access: &Access<'_>,
    mirror_times: &HashMap<String, DateTime<Utc>>,
    ics: &IcsConfig,
    resolved: &ResolvedScope,
    now: DateTime<Utc>,
) -> Result<RenderedFeed, IcsError> {
    let user = &resolved.user;
    let events = feed_events(access, user, &resolved.scope, now, mirror_times)?;
    let meta = DocumentMeta {
        name: &ics.calendar_name,
        refresh_minutes: ics.refresh_minutes,
        horizon: resolved.scope.window(now).end,
    };
    let body = render_document(user, &events, &meta);
    let digest = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
    let etag = format!(
        "\"{}\"",
        data_encoding::BASE64URL_NOPAD.encode(digest.as_ref())
    );
    Ok(RenderedFeed {
        user: user.clone(),
        events: events.len(),
        body: body.into(),
        etag: etag.into(),
    })
}

/// Creates `user`'s feed: the new secret (to be shown once), or `None` when the user
/// already has one.
pub fn create_feed(
    state: &StateDb,
    user: &UserId,
    now: DateTime<Utc>,
) -> Result<Option<FeedSecret>, IcsError> {
    with_new_secret(|hash| state.create_feed(user, hash, now))
}

/// Gives `user`'s feed a new secret (the old URL answers 404 from now on): the new secret,
/// or `None` when the user has no feed.
pub fn rotate_feed(
    state: &StateDb,
    user: &UserId,
    now: DateTime<Utc>,
) -> Result<Option<FeedSecret>, IcsError> {
    with_new_secret(|hash| state.rotate_feed(user, hash, now))
}

/// A fresh secret, if `store` (given its hash) took it.
fn with_new_secret(
    store: impl FnOnce(&str) -> Result<bool, StoreError>,
) -> Result<Option<FeedSecret>, IcsError> {
    let secret = FeedSecret::generate()?;
    Ok(store(secret.hash().as_str())?.then_some(secret))
}

/// The sync pass's hook: deletes the feeds of users who are inactive or gone from the CRM
/// (`model` is the freshly refreshed mirror) and audits each. Returns those users.
pub fn revoke_departed_feeds(
    state: &StateDb,
    model: &OrgModel,
    run_id: &str,
) -> Result<Vec<UserId>, StoreError> {
    let mut revoked = Vec::new();
    for feed in state.feeds()? {
        let Ok(user) = UserId::new(feed.user_id.as_str()) else {
            continue;
        };
        let reason = match model.users.get(&user) {
            Some(u) if u.active => continue,
            Some(_) => "user inactive in the CRM",
            None => "user removed from the CRM",
        };
        if state.revoke_feed(&user)? {
            state.write(|w| {
                w.audit(
                    run_id,
                    Some(&user),
                    None,
                    "feed_revoked",
                    &serde_json::json!({ "reason": reason }),
                )
            })?;
            tracing::info!(user = %user, reason, "ics feed revoked");
            revoked.push(user);
        }
    }
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn feed_now_is_the_start_of_the_hour() {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 9, 41, 7).unwrap();
        assert_eq!(
            feed_now(t),
            Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
        );
    }

    #[test]
    fn config_checks_the_base_url_and_refresh() {
        let mut c = IcsConfig::default();
        assert!(c.check().is_ok());
        c.public_base_url = Some("ftp://x".into());
        assert_eq!(c.check().unwrap_err().0, "ics.public_base_url");
        c.public_base_url = Some("https://feeds.example.com/crm/".into());
        assert!(c.check().is_ok());
        let secret = FeedSecret::parse(&"a".repeat(secret::SECRET_LEN)).unwrap();
        assert_eq!(
            c.feed_url(&secret),
            format!("https://feeds.example.com/crm/ics/{}.ics", "a".repeat(43))
        );
        c.refresh_minutes = 1;
        assert_eq!(c.check().unwrap_err().0, "ics.refresh_minutes");
    }
}
