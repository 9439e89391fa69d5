//! The Insightly API v3.1 connector: Insightly as crmsync's CRM of record.
//!
//! Built on [`crate::crm::connector`]: [`Insightly`] implements
//! [`RemoteCrm`](crate::crm::connector::source::RemoteCrm) (read into the shadow, write
//! back), and [`open`] wraps it in a [`ShadowSource`] with the configured pull policy.
//!
//! - **Reading** ([`pull`]): users, teams and team members in full on every read (they are
//!   few, and a team change is a permission change); organisations, contacts and events
//!   incrementally through the `/Search` endpoints with `updated_after_utc` (one high-water
//!   mark per key and kind), and in full on a periodic reconciliation that catches
//!   deletions and permission changes, which do not move `DATE_UPDATED_UTC`.
//! - **Permission modes** ([`config::Mode`]): `admin_key` — one key reads everything and
//!   the model file gives roles, profiles, sharing rules and org-wide sharing; `delegated`
//!   — each user's own key reads what Insightly shows that user, which becomes the records'
//!   reader lists (`RecordReaders`, the model's fail-closed reader gate), and write-backs go
//!   out with the acting user's key.
//! - **Writing** ([`write`]): contact and event fields by partial `PUT`. Insightly has no
//!   conditional update, so the record is read first and its `DATE_UPDATED_UTC` compared
//!   with the one the engine's version was read at: a record changed since is a
//!   [`CrmError::Conflict`], never an overwrite. The window between that read and the `PUT`
//!   remains (see the README).
//! - **Mapping** ([`mapping`]) and the wire shapes ([`api`]).

pub mod api;
pub mod config;
pub mod mapping;
mod pull;
mod write;

pub use config::InsightlyConfig;

use crate::crm::connector::http::{HttpClient, HttpResponse};
use crate::crm::connector::model_file::SecurityModel;
use crate::crm::connector::settings::OpenOptions;
use crate::crm::connector::shadow::Shadow;
use crate::crm::connector::source::{PullReport, RemoteCrm, ShadowSource};
use crate::crm::connector::ConnectorError;
use crate::crm::{CrmError, WriteBack, WriteOutcome};
use crate::model::UserId;
use api::{Api, Reader};
use config::Mode;
use std::sync::Arc;

/// Insightly's answer to a request over the daily quota: 429 with
/// `X-RateLimit-Remaining: 0` (a per-second burst is a 429 with requests left).
pub fn daily_quota_spent(response: &HttpResponse) -> Option<String> {
    (response.status == 429 && response.header_u64("x-ratelimit-remaining") == Some(0)).then(|| {
        match response.header_u64("x-ratelimit-limit") {
            Some(limit) => format!("Insightly's limit of {limit} requests per day is reached"),
            None => "Insightly reports no requests left today".to_owned(),
        }
    })
}

/// Where the security model comes from.
#[derive(Debug, Clone)]
pub(crate) enum ModelSource {
    File(SecurityModel),
    /// Delegated mode without a model file: Insightly's own filter decides (see README).
    DelegatedDefault,
}

/// The connector.
pub struct Insightly {
    http: HttpClient,
    base: url::Url,
    mode: Mode,
    admin: Option<Reader>,
    /// Delegated mode: every configured user key, by user id.
    users: Vec<Reader>,
    model: ModelSource,
    rules: mapping::UserRules,
    page_size: u32,
}

/// Opens the configured Insightly source with real time.
pub fn open(config: &InsightlyConfig) -> Result<ShadowSource<Insightly>, CrmError> {
    open_with(config, OpenOptions::default())
}

/// [`open`] with test hooks.
pub fn open_with(
    config: &InsightlyConfig,
    options: OpenOptions,
) -> Result<ShadowSource<Insightly>, CrmError> {
    config
        .check()
        .map_err(|(key, m)| ConnectorError::Config(format!("crm.insightly.{key}: {m}")))?;
    let mut base = url::Url::parse(&config.base_url)
        .map_err(|e| ConnectorError::Config(format!("crm.insightly.base_url: {e}")))?;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    let admin = match &config.admin_key {
        Some(key) => Some(Reader {
            user: None,
            key: key.load()?,
            who: format!("the admin API key (from {})", key.describe()),
        }),
        None => None,
    };
    let mut users = Vec::new();
    if config.mode == Mode::Delegated {
        for (id, key) in &config.user_keys {
            let user = UserId::new(id.as_str()).map_err(|e| {
                ConnectorError::Config(format!("crm.insightly.user_keys.{id}: {e}"))
            })?;
            users.push(Reader {
                who: format!("the API key of user {user} (from {})", key.describe()),
                user: Some(user),
                key: key.load()?,
            });
        }
    }
    let model = match &config.model_file {
        Some(path) => ModelSource::File(
            SecurityModel::load(path)
                .map_err(|e| ConnectorError::Config(format!("crm.insightly.model_file: {e}")))?,
        ),
        None => ModelSource::DelegatedDefault,
    };
    let common = config.common();
    let http = HttpClient::start(common.http_config(
        &config::LIMITS,
        config.daily_request_budget,
        daily_quota_spent,
        &options,
    ))?;
    let connector = Insightly {
        http,
        base,
        mode: config.mode,
        admin,
        users,
        rules: mapping::UserRules {
            google_account: config.google_account,
            google_accounts: config.google_accounts.clone(),
            delegated_default: matches!(model, ModelSource::DelegatedDefault),
        },
        model,
        page_size: config.page_size,
    };
    let shadow = Shadow::open(&config.shadow_path)?;
    Ok(ShadowSource::new(
        connector,
        shadow,
        common.pull_policy(Arc::clone(&options.clock)),
    ))
}

impl Insightly {
    fn api(&self) -> Api<'_> {
        Api {
            http: &self.http,
            base: &self.base,
            page_size: self.page_size,
        }
    }

    fn delegated(&self) -> bool {
        self.mode == Mode::Delegated
    }

    /// Requests sent so far (tests count API calls with it).
    pub fn requests_sent(&self) -> u64 {
        self.http.stats().requests
    }

    /// The keys that read records: the admin key, or every user's own key.
    fn record_readers(&self) -> Vec<&Reader> {
        if self.delegated() {
            self.users.iter().collect()
        } else {
            self.admin.iter().collect()
        }
    }

    /// The keys that may read users and teams, in the order they are tried.
    fn directory_readers(&self) -> Vec<&Reader> {
        self.admin.iter().chain(self.users.iter()).collect()
    }

    /// The key a write-back of `user` goes out with.
    fn writer_for(&self, user: &UserId) -> Result<&Reader, CrmError> {
        if !self.delegated() {
            return self
                .admin
                .as_ref()
                .ok_or_else(|| CrmError::Refused("no admin key is configured".into()));
        }
        self.users
            .iter()
            .find(|r| r.user.as_ref() == Some(user))
            .ok_or_else(|| {
                CrmError::Refused(format!(
                    "no Insightly API key is configured for user {user}; in delegated mode a \
                     write-back goes out with the user's own key"
                ))
            })
    }
}

impl RemoteCrm for Insightly {
    fn describe(&self) -> String {
        format!("insightly:{}", self.base)
    }

    fn pull(&mut self, shadow: &mut Shadow, full: bool) -> Result<PullReport, CrmError> {
        pull::pull(self, shadow, full)
    }

    fn write(&mut self, shadow: &mut Shadow, write: &WriteBack) -> Result<WriteOutcome, CrmError> {
        write::write(self, shadow, write)
    }
}
