//! Shared machinery for connectors to hosted CRMs (Insightly, amoCRM, …) behind the
//! synchronous [`Source`](super::Source) trait.
//!
//! A hosted CRM has no change feed like the embedded CRM's, and the engine calls `Source`
//! synchronously from a tokio current-thread runtime. The pieces here make any REST CRM fit:
//!
//! - [`http`]: an [`http::HttpClient`] that runs an async `reqwest` client on a **dedicated
//!   thread with its own runtime** and hands requests over a channel, so the engine's thread
//!   blocks on a channel (never on `reqwest::blocking`, which panics inside a runtime) and a
//!   test's fake API server on yet another thread never deadlocks with it. Every call goes
//!   through one policy: a per-connector [`pacing::Pacer`] (requests per second and an
//!   optional daily budget), 429 with `Retry-After` honoured, 5xx and transport failures
//!   retried with bounded jittered backoff, a CRM-specific quota test, and 401/403 as a
//!   permanent error naming whose key it was — never the key.
//! - [`secret`]: API keys and tokens referenced from the configuration (an environment
//!   variable or a 0600 file), never inline; [`secret::Secret`] never prints its value.
//! - [`shadow`]: the connector's local shadow of what it last read (a SQLite file in the
//!   embedded CRM's format, 0600). It assigns monotonic versions itself when a read shows a
//!   real content change (canonical comparison, the CRM's change stamp excluded), writes
//!   tombstones, and is what `changes_since` serves.
//! - [`source`]: [`source::ShadowSource`], the generic `Source`: pull from the CRM into the
//!   shadow when due (incremental, or a periodic full reconciliation that catches deletions
//!   and permission changes), then serve the feed from the shadow. A connector implements the
//!   small [`source::RemoteCrm`] trait (pull, write) and gets the rest.
//! - [`settings`]: the keys every connector section shares (`requests_per_second`,
//!   `max_attempts`, `request_timeout_secs`, `page_size`, `poll_interval_secs`,
//!   `full_reconcile_minutes`), checked against the CRM's limits and turned into the HTTP
//!   and pull policies; [`settings::OpenOptions`], the tests' hooks (clock, jitter seed).
//! - [`model_file`]: the part of the security model a CRM API does not expose (roles,
//!   profiles' permissions, sharing rules, org-wide sharing), given as a JSON file in the
//!   org file's format.
//!
//! Delegated mode (each user's own key; the CRM filters what each user sees) is carried into
//! the permission model through `RecordReaders` entities and `OrgSettings::reader_gate`
//! (see `security`): a record is readable by U only if U's key saw it **and** the model
//! allows it.

pub mod http;
pub mod model_file;
pub mod pacing;
pub mod secret;
pub mod settings;
pub mod shadow;
pub mod source;

/// Failures talking to a hosted CRM, with the kinds a caller branches on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// The CRM refused the key (401) or the key's owner (403). Permanent: retrying does not
    /// help. Names whose key it was (never the key itself).
    #[error(
        "{crm} refused {who} (HTTP {status}): the key is wrong or revoked, or its user is \
         inactive or lacks permission; fix it and run again"
    )]
    Unauthorized {
        crm: String,
        who: String,
        status: u16,
    },
    /// The daily quota is used up (the CRM said so, or the configured budget is spent).
    #[error(
        "{crm}: the daily API quota is used up ({detail}); nothing was lost — the next run \
         resumes where this one stopped once the quota resets ({resets})"
    )]
    QuotaExhausted {
        crm: String,
        detail: String,
        resets: String,
    },
    /// Still 429 after every attempt (or a `Retry-After` longer than we wait).
    #[error("{crm} kept answering 429 (too many requests) for {path} after {attempts} attempt(s){}", .retry_after.map(|s| format!("; it asks to wait {s} s")).unwrap_or_default())]
    RateLimited {
        crm: String,
        path: String,
        attempts: u32,
        retry_after: Option<u64>,
    },
    /// Still 5xx after every attempt.
    #[error("{crm} is unavailable: HTTP {status} for {path} after {attempts} attempt(s)")]
    Unavailable {
        crm: String,
        path: String,
        status: u16,
        attempts: u32,
    },
    /// No answer (timeout, connection refused or reset) after every attempt.
    #[error("{crm} could not be reached for {path} after {attempts} attempt(s): {message}")]
    Transport {
        crm: String,
        path: String,
        attempts: u32,
        message: String,
    },
    /// An answer the connector cannot use (unexpected status or body).
    #[error("{crm}: unexpected answer for {path}: {message}")]
    Protocol {
        crm: String,
        path: String,
        message: String,
    },
    /// The connector's configuration cannot work (missing key, unreadable key file, …).
    #[error("configuration: {0}")]
    Config(String),
    /// The connector's HTTP thread is gone (it panicked or could not start).
    #[error("{crm}: the HTTP worker thread stopped")]
    WorkerGone { crm: String },
}

impl ConnectorError {
    /// A configuration problem (exit code 2 in the CLI), not a runtime failure.
    pub fn is_config(&self) -> bool {
        matches!(self, ConnectorError::Config(_))
    }
}
