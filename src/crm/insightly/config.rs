//! `[crm.insightly]`: how crmsync reaches an Insightly instance (`config/crmsync.toml`
//! documents every key; `config/insightly.example.toml` is a whole example).

use crate::crm::connector::secret::SecretRef;
use crate::crm::connector::settings::{ApiLimits, CommonSettings};
use crate::model::UserId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What Insightly's API allows: about 10 requests per second, `top` ≤ 500.
pub const LIMITS: ApiLimits = ApiLimits {
    crm: "Insightly",
    max_requests_per_second: 10.0,
    max_page_size: 500,
};

/// Whose keys read the CRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One administrator's key reads everything; roles, profiles' permissions, sharing rules
    /// and org-wide sharing come from `model_file` (the API does not expose them).
    #[default]
    AdminKey,
    /// Each user's own key: Insightly filters what each user sees, crmsync's model filters
    /// again (fail-closed), and write-backs go out with that user's key.
    Delegated,
}

/// Where a user's Google account comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GoogleAccountRule {
    /// The user's Insightly e-mail address (lower-cased).
    #[default]
    Email,
    /// Only users listed in `google_accounts` are synced.
    None,
}

/// The `[crm.insightly]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InsightlyConfig {
    /// The instance's API root, `https://api.<pod>.insightly.com/v3.1/`.
    pub base_url: String,
    pub mode: Mode,
    /// The connector's shadow of what it last read (SQLite, created with mode 0600).
    pub shadow_path: PathBuf,
    /// An administrator's API key (required in `admin_key` mode; in `delegated` mode it
    /// reads users and teams if given).
    pub admin_key: Option<SecretRef>,
    /// Delegated mode: each user's own API key, by Insightly user id (`USER_ID`).
    pub user_keys: BTreeMap<String, SecretRef>,
    /// Roles, profiles, sharing rules and org-wide sharing (JSON in the org file's format;
    /// required in `admin_key` mode; optional in `delegated` mode).
    pub model_file: Option<PathBuf>,
    pub google_account: GoogleAccountRule,
    /// Per-user Google accounts, by Insightly user id (override the rule).
    pub google_accounts: BTreeMap<String, String>,
    /// Requests per second across all keys (Insightly allows about 10).
    pub requests_per_second: f64,
    /// Requests per UTC day crmsync may spend (leave room for other integrations).
    pub daily_request_budget: Option<u64>,
    /// Attempts per request (429, 5xx, timeouts) before the run reports the failure.
    pub max_attempts: u32,
    pub request_timeout_secs: u64,
    /// Within one process, the CRM is read at most this often.
    pub poll_interval_secs: u64,
    /// A full reconciliation (every record and reader, catching deletions and permission
    /// changes) at least this often; 0 makes every read full.
    pub full_reconcile_minutes: u64,
    /// Records per page (`top`, at most 500).
    pub page_size: u32,
}

impl Default for InsightlyConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.na1.insightly.com/v3.1/".into(),
            mode: Mode::AdminKey,
            shadow_path: PathBuf::from("insightly-shadow.db"),
            admin_key: None,
            user_keys: BTreeMap::new(),
            model_file: None,
            google_account: GoogleAccountRule::Email,
            google_accounts: BTreeMap::new(),
            requests_per_second: 8.0,
            daily_request_budget: None,
            max_attempts: 5,
            request_timeout_secs: 30,
            poll_interval_secs: 60,
            full_reconcile_minutes: 24 * 60,
            page_size: 500,
        }
    }
}

impl InsightlyConfig {
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

    /// Checks values; an error names the key (relative to `[crm.insightly]`).
    pub fn check(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
        match url::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return fail(
                    "base_url",
                    format!("{:?} is not an http(s) URL", self.base_url),
                )
            }
        }
        self.common().check(&LIMITS)?;
        if self.daily_request_budget == Some(0) {
            return fail("daily_request_budget", "must be at least 1".into());
        }
        if let Some(key) = &self.admin_key {
            key.check().map_err(|m| ("admin_key".to_owned(), m))?;
        }
        for (user, key) in &self.user_keys {
            UserId::new(user.as_str()).map_err(|e| (format!("user_keys.{user}"), e.to_string()))?;
            key.check().map_err(|m| (format!("user_keys.{user}"), m))?;
        }
        for (user, account) in &self.google_accounts {
            UserId::new(user.as_str())
                .map_err(|e| (format!("google_accounts.{user}"), e.to_string()))?;
            crate::model::normalize::email(account)
                .map_err(|e| (format!("google_accounts.{user}"), e.to_string()))?;
        }
        match self.mode {
            Mode::AdminKey => {
                if self.admin_key.is_none() {
                    return fail(
                        "admin_key",
                        "admin_key mode needs admin_key = { env = \"…\" } or { file = \"…\" }"
                            .into(),
                    );
                }
                if self.model_file.is_none() {
                    return fail(
                        "model_file",
                        "admin_key mode needs a model file (roles, profiles, sharing rules, \
                         org-wide sharing: the API does not expose them)"
                            .into(),
                    );
                }
            }
            Mode::Delegated => {
                if self.user_keys.is_empty() {
                    return fail(
                        "user_keys",
                        "delegated mode needs at least one user's key".into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// Resolves relative paths against the config file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() && p.as_os_str() != ":memory:" {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.shadow_path);
        if let Some(p) = &mut self.model_file {
            resolve(p);
        }
        if let Some(k) = &mut self.admin_key {
            k.resolve_paths(base);
        }
        for k in self.user_keys.values_mut() {
            k.resolve_paths(base);
        }
    }
}
