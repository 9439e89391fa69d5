//! The amoCRM / Kommo API v4 connector (`[crm] source = "amocrm"`).
//!
//! amoCRM (`https://<subdomain>.amocrm.ru/`) and Kommo (`https://<subdomain>.kommo.com/`)
//! serve the same REST API v4 under `api/v4/`. The connector reads it into its shadow
//! ([`ShadowSource`]) and maps it onto crmsync's model:
//!
//! | amoCRM | crmsync |
//! |---|---|
//! | `GET api/v4/account?with=users_groups,datetime_settings` | the org (name, time zone of tasks) and the user groups (→ teams) |
//! | `GET api/v4/users` with `rights` | users (`is_active` → active, `is_admin` → admin) and one profile per user (rights → per-operation scopes) |
//! | `GET api/v4/contacts` | contacts (name, `POSITION`, `EMAIL`, `PHONE`, the linked company, tags) |
//! | `GET api/v4/companies` | organizations (name) |
//! | `GET api/v4/tasks` of the configured types (1 call, 2 meeting) | events (text, `complete_till` + `duration`, the linked contact or company) |
//!
//! Rights: `A` → all, `G` → the user's group (team), `M` → records the user is responsible
//! for (own), `D` → none; `export` narrows what crmsync reads (it only ever reads to
//! export) and `export: D` keeps the kind off Google (the export gate). See
//! [`mapping`] for the exact rules and what is not mapped.
//!
//! Reads: the account and every user on every pull (rights changes do not move any record's
//! `updated_at`), records incrementally with `filter[updated_at][from]`, and a periodic full
//! reconciliation of every record id (deletions). Writes: `PATCH` of the changed fields after
//! a fresh `GET` showed the record as the engine last saw it (amoCRM has no conditional
//! write: see [`connector`] for the race window). Creates and deletes are refused.
//!
//! Auth ([`auth`]): a long-lived token, or the authorization-code flow's rotating refresh
//! tokens kept in a 0600 file; a 401 refreshes once, then fails with a clear error.

pub mod api;
pub mod auth;
pub mod connector;
pub mod mapping;

pub use connector::AmoCrm;

use super::connector::secret::SecretRef;
use super::connector::settings::{ApiLimits, CommonSettings, OpenOptions};
use super::connector::shadow::Shadow;
use super::connector::source::ShadowSource;
use super::connector::ConnectorError;
use super::CrmError;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What amoCRM's API allows: about 7 requests per second (above it answers 429, and blocks
/// the account with 403 on repeated excess), `limit` ≤ 250 per page.
pub const LIMITS: ApiLimits = ApiLimits {
    crm: "amoCRM",
    max_requests_per_second: 7.0,
    max_page_size: 250,
};

/// `[crm.amocrm]`: see `config/crmsync.toml` for every key with its default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmoCrmConfig {
    /// The account's address; the API is under `api/v4/`, OAuth at `oauth2/access_token`.
    pub base_url: String,
    /// The connector's shadow of what it read (SQLite, 0600).
    pub shadow_path: PathBuf,
    /// Google Workspace domains the users' e-mail addresses may be synced to.
    pub google_domains: Vec<String>,
    /// The org's name in reports; empty: the account's name.
    pub org_name: String,
    /// The zone task times are shown in; empty: the account's (`datetime_settings.timezone`).
    pub time_zone: String,
    /// Task types synced as events (amoCRM's 1 = call, 2 = meeting; custom types by id).
    pub event_task_types: Vec<i64>,
    /// The length of a task without a duration, in minutes.
    pub event_minutes: u32,
    /// Requests per second, at most 7 (above, amoCRM answers 429).
    pub requests_per_second: f64,
    /// Records per page (amoCRM's maximum is 250).
    pub page_size: u32,
    /// Attempts per request (429 and 5xx are retried with backoff).
    pub max_attempts: u32,
    pub request_timeout_secs: u64,
    /// At most one read of amoCRM per this many seconds within a process.
    pub poll_interval_secs: u64,
    /// A full reconciliation (every record id: deletions) at least this often; 0 makes
    /// every read full.
    pub full_reconcile_minutes: u64,
    /// A long-lived token (exactly one of this or `oauth`).
    pub access_token: Option<SecretRef>,
    /// The authorization-code flow with rotating refresh tokens.
    pub oauth: Option<OAuthConfig>,
}

impl Default for AmoCrmConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            shadow_path: PathBuf::from("amocrm-shadow.db"),
            google_domains: Vec::new(),
            org_name: String::new(),
            time_zone: String::new(),
            event_task_types: vec![1, 2],
            event_minutes: 30,
            requests_per_second: LIMITS.max_requests_per_second,
            page_size: LIMITS.max_page_size,
            max_attempts: 5,
            request_timeout_secs: 30,
            poll_interval_secs: 60,
            full_reconcile_minutes: 360,
            access_token: None,
            oauth: None,
        }
    }
}

/// `[crm.amocrm.oauth]`: the integration's keys and the file holding the current tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The integration's id.
    pub client_id: String,
    /// The integration's secret key.
    pub client_secret: SecretRef,
    /// The redirect URI registered with the integration (amoCRM checks it on refresh).
    pub redirect_uri: String,
    /// The tokens (amoCRM's `/oauth2/access_token` answer as JSON), mode 0600. Rewritten
    /// with every refresh: a refresh token can be used once.
    pub token_file: PathBuf,
}

impl AmoCrmConfig {
    /// Resolves relative paths against the config file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.shadow_path.is_relative() && self.shadow_path.as_os_str() != ":memory:" {
            self.shadow_path = base.join(&self.shadow_path);
        }
        if let Some(token) = &mut self.access_token {
            token.resolve_paths(base);
        }
        if let Some(oauth) = &mut self.oauth {
            oauth.client_secret.resolve_paths(base);
            if oauth.token_file.is_relative() {
                oauth.token_file = base.join(&oauth.token_file);
            }
        }
    }

    /// Checks the section: `Err((key, message))` names the key under `crm.amocrm`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
        match self.api_base() {
            Ok(_) => {}
            Err(message) => return fail("base_url", message),
        }
        if self.shadow_path.as_os_str().is_empty() {
            return fail("shadow_path", "must not be empty".into());
        }
        for (i, domain) in self.google_domains.iter().enumerate() {
            if domain.trim().is_empty() || domain.contains('@') || domain.contains(' ') {
                return fail(
                    &format!("google_domains[{i}]"),
                    format!("{domain:?} is not a domain"),
                );
            }
        }
        if !self.time_zone.is_empty() && self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return fail(
                "time_zone",
                format!("{:?} is not an IANA time zone", self.time_zone),
            );
        }
        if let Some(bad) = self.event_task_types.iter().find(|t| **t <= 0) {
            return fail("event_task_types", format!("{bad} is not a task type id"));
        }
        if !(1..=1440).contains(&self.event_minutes) {
            return fail(
                "event_minutes",
                format!("{} is not in 1..=1440", self.event_minutes),
            );
        }
        self.common().check(&LIMITS)?;
        match (&self.access_token, &self.oauth) {
            (Some(token), None) => {
                if let Err(message) = token.check() {
                    return fail("access_token", message);
                }
            }
            (None, Some(oauth)) => {
                if oauth.client_id.trim().is_empty() {
                    return fail("oauth.client_id", "must not be empty".into());
                }
                if let Err(message) = oauth.client_secret.check() {
                    return fail("oauth.client_secret", message);
                }
                if url::Url::parse(&oauth.redirect_uri).is_err() {
                    return fail(
                        "oauth.redirect_uri",
                        format!("{:?} is not a URL", oauth.redirect_uri),
                    );
                }
                if oauth.token_file.as_os_str().is_empty() {
                    return fail("oauth.token_file", "must not be empty".into());
                }
            }
            (Some(_), Some(_)) => {
                return fail(
                    "access_token",
                    "give either access_token (a long-lived token) or [crm.amocrm.oauth], not both"
                        .into(),
                )
            }
            (None, None) => {
                return fail(
                    "access_token",
                    "give access_token = { env = \"VARIABLE\" } (a long-lived token) or a \
                     [crm.amocrm.oauth] section"
                        .into(),
                )
            }
        }
        Ok(())
    }

    /// `<base_url>/api/v4/`.
    pub fn api_base(&self) -> Result<url::Url, String> {
        let base = self.account_url()?;
        base.join("api/v4/")
            .map_err(|e| format!("{:?}: {e}", self.base_url))
    }

    /// `<base_url>/oauth2/access_token`.
    pub fn token_url(&self) -> Result<url::Url, String> {
        let base = self.account_url()?;
        base.join("oauth2/access_token")
            .map_err(|e| format!("{:?}: {e}", self.base_url))
    }

    fn account_url(&self) -> Result<url::Url, String> {
        if self.base_url.trim().is_empty() {
            return Err(
                "give the account's address, e.g. \"https://example.amocrm.ru/\" or \
                 \"https://example.kommo.com/\""
                    .into(),
            );
        }
        let mut url = url::Url::parse(&self.base_url)
            .map_err(|e| format!("{:?} is not a URL: {e}", self.base_url))?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(format!("{:?} is not an http(s) address", self.base_url));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{:?}: give the account's address without a query",
                self.base_url
            ));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(url)
    }

    /// The keys every connector section shares.
    pub fn common(&self) -> CommonSettings {
        CommonSettings {
            requests_per_second: self.requests_per_second,
            max_attempts: self.max_attempts,
            request_timeout_secs: self.request_timeout_secs,
            page_size: self.page_size,
            poll_interval_secs: self.poll_interval_secs,
            full_reconcile_minutes: self.full_reconcile_minutes,
        }
    }
}

/// The configured amoCRM source on real time.
pub fn open(config: &AmoCrmConfig) -> Result<ShadowSource<AmoCrm>, CrmError> {
    open_with(config, OpenOptions::default())
}

/// [`open`] with test hooks (a clock the tests drive, a jitter seed).
pub fn open_with(
    config: &AmoCrmConfig,
    options: OpenOptions,
) -> Result<ShadowSource<AmoCrm>, CrmError> {
    config
        .check()
        .map_err(|(key, message)| ConnectorError::Config(format!("crm.amocrm.{key}: {message}")))?;
    let remote = AmoCrm::connect(config, &options)?;
    let shadow = Shadow::open(&config.shadow_path)?;
    Ok(ShadowSource::new(
        remote,
        shadow,
        config.common().pull_policy(Arc::clone(&options.clock)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token() -> AmoCrmConfig {
        AmoCrmConfig {
            base_url: "https://acme.amocrm.ru".into(),
            access_token: Some(SecretRef::env("AMOCRM_TOKEN")),
            ..AmoCrmConfig::default()
        }
    }

    #[test]
    fn the_api_and_token_addresses_follow_the_base_url() {
        let c = with_token();
        assert!(c.check().is_ok());
        assert_eq!(
            c.api_base().unwrap().as_str(),
            "https://acme.amocrm.ru/api/v4/"
        );
        let kommo = AmoCrmConfig {
            base_url: "https://acme.kommo.com/".into(),
            ..with_token()
        };
        assert_eq!(
            kommo.token_url().unwrap().as_str(),
            "https://acme.kommo.com/oauth2/access_token"
        );
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let config = crate::config::Config::parse(
            "config/amocrm.example.toml",
            include_str!("../../../config/amocrm.example.toml"),
        )
        .unwrap();
        assert_eq!(config.crm.source, crate::config::CrmKind::Amocrm);
        let amo = config.crm.amocrm.unwrap();
        assert!(amo.oauth.is_some() && amo.access_token.is_none());
        assert_eq!(amo.google_domains, vec!["acme.example"]);
    }

    #[test]
    fn the_section_is_required_and_checked_through_the_config() {
        let err =
            crate::config::Config::parse("c.toml", "[crm]\nsource = \"amocrm\"\n").unwrap_err();
        assert_eq!(err.key, "crm.amocrm");
        let err = crate::config::Config::parse(
            "c.toml",
            "[crm]\nsource = \"amocrm\"\n[crm.amocrm]\nbase_url = \"https://a.kommo.com/\"\n\
             access_token = { env = \"T\" }\npage_size = 500\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "crm.amocrm.page_size");
        let err = crate::config::Config::parse(
            "c.toml",
            "[crm.amocrm]\nbase_url = \"https://a.kommo.com/\"\ntoken = \"abc\"\n",
        )
        .unwrap_err();
        assert!(err.key.starts_with("crm.amocrm"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[crm]\nsource = \"amocrm\"\n[crm.amocrm]\nbase_url = \"https://a.kommo.com/\"\n\
             [crm.amocrm.oauth]\nclient_id = \"i\"\nclient_secret = { file = \"secret\" }\n\
             redirect_uri = \"https://x.example/cb\"\ntoken_file = \"tokens.json\"\n",
        )
        .unwrap();
        let config = crate::config::Config::load(&path).unwrap();
        let amo = config.crm.amocrm.unwrap();
        assert_eq!(amo.shadow_path, dir.path().join("amocrm-shadow.db"));
        let oauth = amo.oauth.unwrap();
        assert_eq!(oauth.token_file, dir.path().join("tokens.json"));
        assert_eq!(oauth.client_secret.file, Some(dir.path().join("secret")));
    }

    #[test]
    fn bad_values_name_their_key() {
        let key = |c: AmoCrmConfig| c.check().unwrap_err().0;
        assert_eq!(
            key(AmoCrmConfig {
                base_url: "ftp://x".into(),
                ..with_token()
            }),
            "base_url"
        );
        assert_eq!(
            key(AmoCrmConfig {
                page_size: 251,
                ..with_token()
            }),
            "page_size"
        );
        assert_eq!(
            key(AmoCrmConfig {
                requests_per_second: 8.0,
                ..with_token()
            }),
            "requests_per_second"
        );
        assert_eq!(
            key(AmoCrmConfig {
                time_zone: "Mars/Base".into(),
                ..with_token()
            }),
            "time_zone"
        );
        assert_eq!(
            key(AmoCrmConfig {
                access_token: None,
                ..with_token()
            }),
            "access_token"
        );
        let both = AmoCrmConfig {
            oauth: Some(OAuthConfig {
                client_id: "id".into(),
                client_secret: SecretRef::env("S"),
                redirect_uri: "https://example.com/cb".into(),
                token_file: "t.json".into(),
            }),
            ..with_token()
        };
        assert!(both.check().unwrap_err().1.contains("not both"));
        let inline: Result<AmoCrmConfig, _> =
            toml::from_str("base_url = \"https://a.amocrm.ru/\"\naccess_token = \"abc\"");
        assert!(inline.is_err(), "a token is never written in the config");
    }
}
