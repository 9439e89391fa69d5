//! crmsync's configuration file (`config/crmsync.toml` documents every key).
//!
//! Loading is two steps, as in ripgrep's low/high args: TOML is parsed strictly into raw
//! structs (unknown keys are errors naming the key), then checked into the values the engine
//! uses (ranges, paths resolved against the config file's folder). Every key has a default, so
//! the demo and tests need no file at all.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A configuration problem: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {key}: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub key: String,
    pub message: String,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub state: StateConfig,
    pub crm: CrmConfig,
    pub google: GoogleConfig,
    pub sync: SyncConfig,
    /// Sync-scope defaults: `[scope.org]`, `[scope.profile.<id>]`, `[scope.role.<id>]`
    /// (precedence: user override > role > profile > org > built-in; see `scope`).
    pub scope: crate::scope::ScopeConfig,
}

/// Where crmsync keeps its own state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// The state DB file (created with mode 0600).
    pub path: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("crmsync-state.db"),
        }
    }
}

/// Which CRM is the source of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CrmKind {
    /// The embedded CRM (a SQLite file, loaded from org files).
    #[default]
    Sqlite,
    /// amoCRM / Kommo API v4 (`[crm.amocrm]`).
    Amocrm,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrmConfig {
    pub source: CrmKind,
    /// The embedded CRM's database file.
    pub path: PathBuf,
    /// The amoCRM / Kommo connector (`source = "amocrm"`).
    pub amocrm: Option<crate::crm::amocrm::AmoCrmConfig>,
}

impl Default for CrmConfig {
    fn default() -> Self {
        Self {
            source: CrmKind::Sqlite,
            path: PathBuf::from("crmsync-crm.db"),
            amocrm: None,
        }
    }
}

/// How Google is reached.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoogleConfig {
    /// Root URL of the Google APIs; Calendar lives under `calendar/v3/`, People under `v1/`.
    pub base_url: String,
    /// Service-account key with domain-wide delegation.
    pub service_account_key: PathBuf,
    /// Override of the key's `token_uri` (the emulator's `/token`).
    pub token_uri: Option<String>,
    /// Name of each user's dedicated calendar.
    pub calendar_name: String,
    /// Name of each user's dedicated contact group.
    pub contact_group_name: String,
    /// Sync to Google accounts outside the org's `google_domains`.
    pub allow_personal_accounts: bool,
}

impl Default for GoogleConfig {
    fn default() -> Self {
        Self {
            base_url: "https://www.googleapis.com/".into(),
            service_account_key: PathBuf::from("config/emulator-service-account.json"),
            token_uri: None,
            calendar_name: "CRM".into(),
            contact_group_name: "CRM".into(),
            allow_personal_accounts: false,
        }
    }
}

/// Engine settings that are not per-user scope.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Users synced at the same time.
    pub concurrency: usize,
    /// A pass that would delete more than this fraction of a user's linked items is refused
    /// (outside revocation) unless forced.
    pub max_delete_fraction: f64,
    /// Pacing per Google user, below Google's 600/minute quota.
    pub requests_per_minute: u32,
    /// Attempts per Google call before an item is reported as failed.
    pub max_attempts: u32,
    /// `status` flags users without a successful pass for this long.
    pub stale_after_minutes: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_delete_fraction: 0.5,
            requests_per_minute: 500,
            max_attempts: 6,
            stale_after_minutes: 60,
        }
    }
}

impl Config {
    /// Reads a config file; relative paths in it are resolved against its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        let mut config = Self::parse(&name, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and checks config text.
    pub fn parse(source_name: &str, text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let message = e.message().to_owned();
            let key = key_of_span(text, e.span());
            ConfigError {
                source_name: source_name.to_owned(),
                key,
                message,
            }
        })?;
        config.check(source_name)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.state.path,
            &mut self.crm.path,
            &mut self.google.service_account_key,
        ] {
            if p.is_relative() && p.as_os_str() != ":memory:" {
                *p = base.join(&*p);
            }
        }
        if let Some(amocrm) = &mut self.crm.amocrm {
            amocrm.resolve_paths(base);
        }
    }

    fn check(&self, source_name: &str) -> Result<(), ConfigError> {
        let fail = |key: &str, message: String| {
            Err(ConfigError {
                source_name: source_name.to_owned(),
                key: key.to_owned(),
                message,
            })
        };
        let s = &self.sync;
        if !(0.0..=1.0).contains(&s.max_delete_fraction) {
            return fail(
                "sync.max_delete_fraction",
                format!("{} is not between 0 and 1", s.max_delete_fraction),
            );
        }
        if s.concurrency == 0 || s.concurrency > 256 {
            return fail(
                "sync.concurrency",
                format!("{} is not in 1..=256", s.concurrency),
            );
        }
        if s.requests_per_minute == 0 || s.requests_per_minute > 600 {
            return fail(
                "sync.requests_per_minute",
                format!(
                    "{} is not in 1..=600 (Google's per-user quota is 600/minute)",
                    s.requests_per_minute
                ),
            );
        }
        if s.max_attempts == 0 || s.max_attempts > 20 {
            return fail(
                "sync.max_attempts",
                format!("{} is not in 1..=20", s.max_attempts),
            );
        }
        if url::Url::parse(&self.google.base_url).is_err() {
            return fail(
                "google.base_url",
                format!("{:?} is not a URL", self.google.base_url),
            );
        }
        for (key, name) in [
            ("google.calendar_name", &self.google.calendar_name),
            ("google.contact_group_name", &self.google.contact_group_name),
        ] {
            if name.trim().is_empty() {
                return fail(key, "must not be empty".into());
            }
        }
        if let Err((section, err)) = self.scope.check_ranges() {
            return fail(&section, err.to_string());
        }
        match (&self.crm.source, &self.crm.amocrm) {
            (CrmKind::Amocrm, None) => {
                return fail(
                    "crm.amocrm",
                    "source = \"amocrm\" needs a [crm.amocrm] section".into(),
                )
            }
            (_, Some(amocrm)) => {
                if let Err((key, message)) = amocrm.check() {
                    return fail(&format!("crm.amocrm.{key}"), message);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Names the dotted key at a TOML error's position, as best the text allows.
fn key_of_span(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return "(document)".into();
    };
    let before = &text[..span.start.min(text.len())];
    let table = before
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .map(|t| t.trim_matches(['[', ']']).to_owned())
        })
        .unwrap_or_default();
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_owned())
        .unwrap_or_default();
    match (table.is_empty(), key.is_empty()) {
        (true, true) => "(document)".into(),
        (true, false) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_is_valid() {
        let text = include_str!("../config/crmsync.toml");
        let config = Config::parse("config/crmsync.toml", text).unwrap();
        assert_eq!(config.sync.max_delete_fraction, 0.5);
    }

    #[test]
    fn empty_config_takes_defaults() {
        assert_eq!(Config::parse("x", "").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Config::parse("c.toml", "[sync]\nconcurency = 3\n").unwrap_err();
        assert_eq!(err.key, "sync.concurency");
        assert!(err.message.contains("unknown field"), "{err}");

        let err = Config::parse("c.toml", "[sync]\nconcurrency = \"four\"\n").unwrap_err();
        assert_eq!(err.key, "sync.concurrency");

        let err = Config::parse("c.toml", "[sync]\nmax_delete_fraction = 1.5\n").unwrap_err();
        assert_eq!(err.key, "sync.max_delete_fraction");
        assert!(err
            .to_string()
            .starts_with("c.toml: sync.max_delete_fraction:"));

        let err = Config::parse("c.toml", "[google]\nbase_url = \"not a url\"\n").unwrap_err();
        assert_eq!(err.key, "google.base_url");

        let err = Config::parse("c.toml", "[sync\n").unwrap_err();
        assert!(!err.message.is_empty());
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crmsync.toml");
        std::fs::write(&path, "[state]\npath = \"s.db\"\n").unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.state.path, dir.path().join("s.db"));
    }
}
