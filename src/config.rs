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
    /// ICS feeds: `[ics]` (public base URL, calendar name, refresh interval).
    pub ics: crate::ics::IcsConfig,
    /// The sync worker `crmsync run`: `[worker]`.
    pub worker: crate::worker::WorkerConfig,
}

/// Where crmsync keeps its own state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// The state DB file (created with mode 0600 by `crmsync init`).
    pub path: PathBuf,
    /// How long a command waits for another connection's SQLite write transaction before it
    /// gives up with a "busy" error (exit 3).
    pub busy_timeout_ms: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("crmsync-state.db"),
            busy_timeout_ms: 10_000,
        }
    }
}

impl StateConfig {
    pub fn busy_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.busy_timeout_ms)
    }
}

/// Which CRM is the source of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CrmKind {
    /// The embedded CRM (a SQLite file, loaded from org files).
    #[default]
    Sqlite,
    /// Insightly API v3.1 (`[crm.insightly]`).
    Insightly,
    /// amoCRM / Kommo API v4 (`[crm.amocrm]`).
    Amocrm,
}

impl CrmKind {
    /// The value of `[crm] source` (and the name of the connector's section).
    pub fn key(self) -> &'static str {
        match self {
            CrmKind::Sqlite => "sqlite",
            CrmKind::Insightly => "insightly",
            CrmKind::Amocrm => "amocrm",
        }
    }

    /// The CRM's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            CrmKind::Sqlite => "the embedded CRM",
            CrmKind::Insightly => "Insightly",
            CrmKind::Amocrm => "amoCRM",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrmConfig {
    pub source: CrmKind,
    /// The embedded CRM's database file.
    pub path: PathBuf,
    /// The Insightly connector (`source = "insightly"`).
    pub insightly: Option<crate::crm::insightly::InsightlyConfig>,
    /// The amoCRM / Kommo connector (`source = "amocrm"`).
    pub amocrm: Option<crate::crm::amocrm::AmoCrmConfig>,
}

impl Default for CrmConfig {
    fn default() -> Self {
        Self {
            source: CrmKind::Sqlite,
            path: PathBuf::from("crmsync-crm.db"),
            insightly: None,
            amocrm: None,
        }
    }
}

impl CrmConfig {
    /// Every connector section is checked the same way: the one `source` names must be
    /// there, and any section given is checked (a typo in a section not yet in use is
    /// reported now, not when the source is switched). `Err((key, message))` names the key.
    fn check_connectors(&self) -> Result<(), (String, String)> {
        let sections = [
            (
                CrmKind::Insightly,
                self.insightly.as_ref().map(|c| c.check()),
            ),
            (CrmKind::Amocrm, self.amocrm.as_ref().map(|c| c.check())),
        ];
        for (kind, checked) in sections {
            let section = format!("crm.{}", kind.key());
            match checked {
                None if self.source == kind => {
                    return Err((
                        section.clone(),
                        format!("source = \"{}\" needs a [{section}] section", kind.key()),
                    ))
                }
                Some(Err((key, message))) => return Err((format!("{section}.{key}"), message)),
                None | Some(Ok(())) => {}
            }
        }
        Ok(())
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
    /// Name of each user's dedicated calendar (recognised by its marker, never by name).
    pub calendar_name: String,
    /// Name of each user's dedicated contact group (recognised by its marker; a personal
    /// group of that name makes ours take a numbered name).
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
            calendar_name: "CRM (crmsync)".into(),
            contact_group_name: "CRM (crmsync)".into(),
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
    /// Records being planned and written at once across the users synced at the same time
    /// (what bounds a pass's memory: a user's plan holds a few KiB per record). A user with
    /// more records than this divided by `concurrency` is planned and written in parts of
    /// that size.
    pub max_records_in_flight: usize,
    /// A pass that would delete more than this fraction of a user's linked items is refused
    /// (outside revocation) unless forced.
    pub max_delete_fraction: f64,
    /// Pacing per Google user, below Google's 600/minute quota.
    pub requests_per_minute: u32,
    /// Attempts per Google call before an item is reported as failed.
    pub max_attempts: u32,
    /// `status` flags users without a successful pass for this long.
    pub stale_after_minutes: u64,
    /// More than this fraction of the synced users offboarded (deactivated, removed,
    /// account changed or cleared) by one CRM change pauses those revocations until
    /// `--force`; one person is never paused.
    pub max_offboarding_fraction: f64,
    /// What the leak guard does with sharing of a dedicated calendar beyond its owner.
    pub acl_guard: crate::revoke::acl::AclGuardMode,
    /// How often the leak guard lists a user's calendar ACL: once per turn of this many
    /// minutes (staggered per user like the worker's phone poll; 0 = every pass).
    pub acl_check_minutes: u64,
}

impl SyncConfig {
    /// [`SyncConfig::acl_check_minutes`] as a period (zero: every pass).
    pub fn acl_check_period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.acl_check_minutes.saturating_mul(60))
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_records_in_flight: 10_000,
            max_delete_fraction: 0.5,
            requests_per_minute: 500,
            max_attempts: 6,
            stale_after_minutes: 60,
            max_offboarding_fraction: 0.2,
            acl_guard: crate::revoke::acl::AclGuardMode::Remove,
            acl_check_minutes: 10,
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
        if let Some(insightly) = &mut self.crm.insightly {
            insightly.resolve_paths(base);
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
        if !(0.0..=1.0).contains(&s.max_offboarding_fraction) {
            return fail(
                "sync.max_offboarding_fraction",
                format!("{} is not between 0 and 1", s.max_offboarding_fraction),
            );
        }
        if s.acl_check_minutes > 1440 {
            return fail(
                "sync.acl_check_minutes",
                format!("{} is not in 0..=1440", s.acl_check_minutes),
            );
        }
        if s.concurrency == 0 || s.concurrency > 256 {
            return fail(
                "sync.concurrency",
                format!("{} is not in 1..=256", s.concurrency),
            );
        }
        if !(100..=10_000_000).contains(&s.max_records_in_flight) {
            return fail(
                "sync.max_records_in_flight",
                format!("{} is not in 100..=10000000", s.max_records_in_flight),
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
        if self.state.busy_timeout_ms > 600_000 {
            return fail(
                "state.busy_timeout_ms",
                format!("{} is not in 0..=600000", self.state.busy_timeout_ms),
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
        if let Err((key, message)) = self.crm.check_connectors() {
            return fail(&key, message);
        }
        if let Err((key, message)) = self.ics.check() {
            return fail(key, message);
        }
        if let Err((key, message)) = self.worker.check() {
            return fail(key, message);
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
        let defaults = Config::default();
        assert_eq!(
            config.sync, defaults.sync,
            "the example shows the [sync] defaults"
        );
        assert_eq!(config.google.calendar_name, defaults.google.calendar_name);
        assert_eq!(
            config.google.contact_group_name,
            defaults.google.contact_group_name
        );
        assert_eq!(config.ics, crate::ics::IcsConfig::default());
        assert_eq!(
            config.worker,
            crate::worker::WorkerConfig::default(),
            "the example shows the [worker] defaults"
        );
    }

    #[test]
    fn worker_keys_are_checked() {
        let err = Config::parse("c.toml", "[worker]\ninterval_secs = 0\n").unwrap_err();
        assert_eq!(err.key, "worker.interval_secs");
        let err = Config::parse(
            "c.toml",
            "[worker]\nbackoff_base_secs = 600\nbackoff_cap_secs = 60\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "worker.backoff_cap_secs");
        let err = Config::parse("c.toml", "[worker]\nlisten = \"nowhere\"\n").unwrap_err();
        assert_eq!(err.key, "worker.listen");
        let ok = Config::parse("c.toml", "[worker]\nlisten = \"0.0.0.0:9000\"\n").unwrap();
        assert_eq!(ok.worker.listen.port(), 9000);
    }

    /// The commented `[crm.NAME]` section of `config/crmsync.toml`, uncommented: its
    /// `# key = value` lines (its `# # …` lines are comments), as a TOML table.
    fn documented_connector_section(name: &str) -> toml::Value {
        let text = include_str!("../config/crmsync.toml");
        let start = text.find(&format!("# [crm.{name}]\n")).unwrap();
        let end = text.find(&format!("# # (end of [crm.{name}])")).unwrap();
        let toml: String = text[start..end]
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let parsed: toml::Value = toml::from_str(&toml).unwrap();
        parsed["crm"][name].clone()
    }

    #[test]
    fn the_documented_connector_keys_are_the_keys_with_their_defaults() {
        use crate::crm::amocrm::AmoCrmConfig;
        use crate::crm::insightly::InsightlyConfig;
        // Keys without a default are documented with an example value: set aside, the
        // rest must be the defaults.
        let mut insightly: InsightlyConfig = documented_connector_section("insightly")
            .try_into()
            .unwrap();
        assert!(insightly.admin_key.is_some() && insightly.model_file.is_some());
        assert!(!insightly.user_keys.is_empty() && !insightly.google_accounts.is_empty());
        insightly.admin_key = None;
        insightly.model_file = None;
        insightly.user_keys.clear();
        insightly.google_accounts.clear();
        assert_eq!(insightly, InsightlyConfig::default());
        let mut amocrm: AmoCrmConfig = documented_connector_section("amocrm").try_into().unwrap();
        assert!(amocrm.access_token.is_some() && amocrm.oauth.is_some());
        amocrm.access_token = None;
        amocrm.oauth = None;
        assert_eq!(amocrm, AmoCrmConfig::default());
    }

    #[test]
    fn a_connector_section_is_needed_by_its_source_and_checked_when_given() {
        let amocrm_address = "base_url = \"https://acme.kommo.com/\"\n";
        for (kind, name, first) in [
            (CrmKind::Insightly, "insightly", ""),
            (CrmKind::Amocrm, "amocrm", amocrm_address),
        ] {
            assert_eq!(kind.key(), name);
            let err =
                Config::parse("c.toml", &format!("[crm]\nsource = \"{name}\"\n")).unwrap_err();
            assert_eq!(err.key, format!("crm.{name}"));
            assert!(err.message.contains(&format!("[crm.{name}]")), "{err}");
            // A section given for another source is checked all the same.
            let err = Config::parse(
                "c.toml",
                &format!("[crm]\nsource = \"sqlite\"\n[crm.{name}]\n{first}max_attempts = 0\n"),
            )
            .unwrap_err();
            assert_eq!(err.key, format!("crm.{name}.max_attempts"), "{err}");
        }
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

        let err = Config::parse("c.toml", "[sync]\nmax_records_in_flight = 10\n").unwrap_err();
        assert_eq!(err.key, "sync.max_records_in_flight");

        let err = Config::parse("c.toml", "[sync]\nmax_delete_fraction = 1.5\n").unwrap_err();
        assert_eq!(err.key, "sync.max_delete_fraction");
        assert!(err
            .to_string()
            .starts_with("c.toml: sync.max_delete_fraction:"));

        let err = Config::parse("c.toml", "[sync]\nmax_offboarding_fraction = -0.1\n").unwrap_err();
        assert_eq!(err.key, "sync.max_offboarding_fraction");
        let err = Config::parse("c.toml", "[sync]\nacl_guard = \"ignore\"\n").unwrap_err();
        assert_eq!(err.key, "sync.acl_guard");
        let err = Config::parse("c.toml", "[sync]\nacl_check_minutes = 1441\n").unwrap_err();
        assert_eq!(err.key, "sync.acl_check_minutes");
        assert!(err.to_string().contains("0..=1440"), "{err}");

        let err = Config::parse("c.toml", "[google]\nbase_url = \"not a url\"\n").unwrap_err();
        assert_eq!(err.key, "google.base_url");

        let err = Config::parse("c.toml", "[sync\n").unwrap_err();
        assert!(!err.message.is_empty());
    }

    #[test]
    fn the_insightly_example_is_valid_and_its_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("insightly.toml");
        std::fs::write(&path, include_str!("../config/insightly.example.toml")).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.crm.source, CrmKind::Insightly);
        let insightly = config.crm.insightly.unwrap();
        assert_eq!(
            insightly.shadow_path,
            dir.path().join("insightly-shadow.db")
        );
        assert_eq!(
            insightly.model_file,
            Some(dir.path().join("insightly-model.example.json"))
        );
        let model = include_str!("../config/insightly-model.example.json");
        crate::crm::connector::model_file::SecurityModel::parse("example", model).unwrap();
    }

    #[test]
    fn insightly_keys_are_strict_and_name_the_key() {
        let base = "[crm]\nsource = \"insightly\"\n";
        let err = Config::parse("c.toml", base).unwrap_err();
        assert_eq!(err.key, "crm.insightly");
        let err = Config::parse(
            "c.toml",
            &format!("{base}[crm.insightly]\nmode = \"admin_key\"\nbase_url = \"x\"\n"),
        )
        .unwrap_err();
        assert_eq!(err.key, "crm.insightly.base_url");
        let err = Config::parse("c.toml", &format!("{base}[crm.insightly]\npage_sise = 5\n"))
            .unwrap_err();
        assert!(
            err.key.ends_with("page_sise") && err.message.contains("unknown field"),
            "{err}"
        );
        // A key itself is never accepted in the file.
        let err = Config::parse(
            "c.toml",
            &format!("{base}[crm.insightly]\nadmin_key = {{ key = \"abc\" }}\n"),
        )
        .unwrap_err();
        assert!(err.message.contains("unknown field"), "{err}");
        let err = Config::parse(
            "c.toml",
            &format!("{base}[crm.insightly]\nadmin_key = {{ env = \"K\" }}\n"),
        )
        .unwrap_err();
        assert_eq!(err.key, "crm.insightly.model_file");
        let err = Config::parse(
            "c.toml",
            &format!("{base}[crm.insightly]\nmode = \"delegated\"\n"),
        )
        .unwrap_err();
        assert_eq!(err.key, "crm.insightly.user_keys");
        let err = Config::parse(
            "c.toml",
            &format!(
                "{base}[crm.insightly]\nmode = \"delegated\"\nrequests_per_second = 50.0\n[crm.insightly.user_keys]\n\"7\" = {{ env = \"K\" }}\n"
            ),
        )
        .unwrap_err();
        assert_eq!(err.key, "crm.insightly.requests_per_second");
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
