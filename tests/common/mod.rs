//! Shared helpers for the emulator tests: start an in-process emulator, authenticate through
//! yup-oauth2 with the shipped test key (token_uri pointed at the emulator), build the official
//! hubs, and read Google errors.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use crmsync::emulator::{EmulatorOptions, TestEmulator};
use crmsync::google::{auth, hub};
use serde_json::Value;

pub const ALICE: &str = "alice@example.com";
pub const BOB: &str = "bob@example.com";

/// What a full client (a phone, the user) holds.
pub const FULL_SCOPES: &[&str] = &[auth::CALENDAR_SCOPE, auth::CONTACTS_SCOPE];

pub fn key_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/emulator-service-account.json")
}

pub struct Env {
    pub emu: TestEmulator,
    pub key: yup_oauth2::ServiceAccountKey,
    pub http: reqwest::Client,
}

pub async fn start() -> Env {
    start_with(EmulatorOptions::default()).await
}

pub async fn start_with(options: EmulatorOptions) -> Env {
    let emu = TestEmulator::start(options).await.expect("emulator starts");
    let key = auth::load_service_account_key(&key_path(), Some(&emu.token_uri()))
        .await
        .expect("test key loads");
    Env {
        emu,
        key,
        http: reqwest::Client::new(),
    }
}

impl Env {
    /// A full client's authenticator (`calendar` + `contacts`: the emulator tests work on
    /// primary calendars too). [`Env::engine_auth`] asks for crmsync's own scopes.
    pub async fn auth(&self, user: &str) -> auth::UserAuth {
        auth::impersonate_with_scopes(&self.key, user, FULL_SCOPES)
            .await
            .expect("authenticator")
    }

    /// An authenticator with crmsync's scope set ([`auth::SCOPES`]).
    pub async fn engine_auth(&self, user: &str) -> auth::UserAuth {
        auth::impersonate(&self.key, user)
            .await
            .expect("authenticator")
    }

    pub async fn calendar(&self, user: &str) -> hub::Calendar {
        hub::calendar_hub(&self.emu.base_url(), self.auth(user).await).expect("calendar hub")
    }

    pub async fn people(&self, user: &str) -> hub::People {
        hub::people_hub(&self.emu.base_url(), self.auth(user).await).expect("people hub")
    }

    /// An access token for `user` obtained through the JWT flow (for hand-written HTTP).
    pub async fn token(&self, user: &str) -> String {
        self.auth(user).await.access_token().await.expect("token")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.emu.base_url(), path)
    }
}

/// The JSON error body of a hub error, if the server answered with one.
pub fn error_body(err: &google_calendar3::Error) -> Option<&Value> {
    match err {
        google_calendar3::Error::BadRequest(v) => Some(v),
        _ => None,
    }
}

/// HTTP status of a hub error answered by the server.
pub fn status(err: &google_calendar3::Error) -> Option<u64> {
    match err {
        google_calendar3::Error::BadRequest(v) => v["error"]["code"].as_u64(),
        google_calendar3::Error::Failure(r) => Some(u64::from(r.status().as_u16())),
        _ => None,
    }
}

/// `errors[0].reason` (Calendar) of a hub error.
pub fn reason(err: &google_calendar3::Error) -> Option<String> {
    error_body(err).and_then(|v| {
        v["error"]["errors"][0]["reason"]
            .as_str()
            .map(str::to_string)
    })
}

/// `status` (People, google.rpc.Code) of a hub error.
pub fn rpc_status(err: &google_calendar3::Error) -> Option<String> {
    error_body(err).and_then(|v| v["error"]["status"].as_str().map(str::to_string))
}

pub fn timed(
    start: chrono::DateTime<chrono::Utc>,
    minutes: i64,
) -> google_calendar3::api::EventDateTime {
    google_calendar3::api::EventDateTime {
        date_time: Some(start + chrono::Duration::minutes(minutes)),
        time_zone: Some("Europe/Berlin".into()),
        date: None,
    }
}

/// A one-hour event at `start`, with an optional id and a private `crmsync_id`.
pub fn event(
    id: Option<&str>,
    start: chrono::DateTime<chrono::Utc>,
    crm_id: &str,
) -> google_calendar3::api::Event {
    let mut private = std::collections::HashMap::new();
    private.insert("crmsync_id".to_string(), crm_id.to_string());
    google_calendar3::api::Event {
        id: id.map(str::to_string),
        summary: Some(format!("Meeting {crm_id}")),
        start: Some(timed(start, 0)),
        end: Some(timed(start, 60)),
        extended_properties: Some(google_calendar3::api::EventExtendedProperties {
            private: Some(private),
            shared: None,
        }),
        ..Default::default()
    }
}

pub fn base_time() -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2025, 6, 2, 8, 0, 0).unwrap()
}
