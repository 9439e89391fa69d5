//! How commands get at the state DB and the CRM: the writer lock first, then the databases,
//! then (where asked) the CRM identity check or its acceptance.
//!
//! - Writers (`sync`, `init`, `scope set|reset`, …) take [`WriterLock`] before opening
//!   anything; they wait `--wait SECS` (default: 0 for `sync`, [`ADMIN_WAIT`] for short admin
//!   commands) and otherwise exit 3 naming the holder.
//! - Readers that refresh the mirror (`access`, `scope show`) take the lock only if it is free
//!   (or within `--wait`); when another writer holds it they answer from the mirror as it is,
//!   with a warning, rather than wait for a long sync.
//! - Plain readers (`status`, `audit`) take no lock: SQLite's WAL lets them read beside a
//!   writer.
//! - The state DB is never created here except by `init` or `--init`: a missing path exits 2
//!   naming it.

use super::{runtime, usage, Failure};
use crmsync::config::{Config, CrmKind};
use crmsync::crm::sqlite::SqliteCrm;
use crmsync::crm::Source;
use crmsync::mirror;
use crmsync::store::lock::{LockError, WriterGuard, WriterLock};
use crmsync::store::StateDb;
use std::time::Duration;

/// Default `--wait` of short admin commands (`init`, `scope set|reset`): long enough to slip
/// in between two worker cycles, short enough that a forgotten terminal is noticed.
pub const ADMIN_WAIT: Duration = Duration::from_secs(30);

/// The global flags about the state DB and the CRM, as given.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateAccess {
    /// `--wait SECS`.
    pub wait: Option<u64>,
    /// `--init`: create the state DB if it does not exist.
    pub init: bool,
    /// `--accept-new-crm`: re-mirror a CRM other than the one the state DB mirrors.
    pub accept_new_crm: bool,
}

impl StateAccess {
    fn wait_or(&self, default: Duration) -> Duration {
        self.wait.map_or(default, Duration::from_secs)
    }

    /// Takes the writer lock for `command` (waiting `--wait`, else `default_wait`), then
    /// opens the state DB (creating it only with `--init`).
    pub fn open_for_write(
        &self,
        config: &Config,
        command: &str,
        default_wait: Duration,
    ) -> Result<(WriterGuard, StateDb), Failure> {
        let path = &config.state.path;
        if !self.init && !path.exists() {
            // Before the lock, so a mistyped path leaves no lock file behind.
            return Err(runtime(crmsync::store::StoreError::Missing {
                path: path.display().to_string(),
            }));
        }
        let guard =
            WriterLock::acquire(path, command, self.wait_or(default_wait)).map_err(runtime)?;
        let state = if self.init {
            StateDb::create(path)
        } else {
            StateDb::open_existing_with(path, config.state.busy_timeout())
        }
        .map_err(runtime)?;
        Ok((guard, state))
    }

    /// Opens the existing state DB without the lock (commands that only read).
    pub fn open_for_read(&self, config: &Config) -> Result<StateDb, Failure> {
        StateDb::open_existing_with(&config.state.path, config.state.busy_timeout())
            .map_err(runtime)
    }

    /// For readers that refresh the mirror: the lock if it can be had within `--wait`
    /// (default 0), else `None` (another writer is busy; answer from the mirror as it is).
    pub fn try_lock_for_refresh(
        &self,
        config: &Config,
        command: &str,
    ) -> Result<Option<WriterGuard>, Failure> {
        if !config.state.path.exists() {
            return Ok(None);
        }
        match WriterLock::acquire(&config.state.path, command, self.wait_or(Duration::ZERO)) {
            Ok(guard) => Ok(Some(guard)),
            Err(LockError::Held { holder, .. }) => {
                let who = holder.map_or_else(|| "another crmsync".to_owned(), |h| h.to_string());
                eprintln!(
                    "warning: {who} is writing the state DB; answering from the CRM mirror \
                     as of its last refresh (pass --wait SECS to wait for it)"
                );
                Ok(None)
            }
            Err(e) => Err(runtime(e)),
        }
    }

    /// The configured CRM, which must exist, with its identity checked against the mirror's
    /// — or, with `--accept-new-crm`, accepted by re-mirroring it in full (needs the lock:
    /// call it only while holding the writer lock).
    pub fn open_crm_for_sync(
        &self,
        config: &Config,
        state: &StateDb,
    ) -> Result<Box<dyn Source>, Failure> {
        let crm = open_crm(config)?;
        match mirror::verify_identity(state, crm.as_ref()) {
            Ok(_) => {}
            Err(e) if e.is_different_crm() && self.accept_new_crm => {
                let done = mirror::remirror(state, crm.as_ref()).map_err(runtime)?;
                eprintln!(
                    "Accepted {} (instance {}) in place of instance {}: {} entities mirrored, \
                     {} that it lacks removed from the mirror (pulled back from phones by this \
                     pass).",
                    crm.describe(),
                    done.instance,
                    done.previous.as_deref().unwrap_or("none"),
                    done.entities,
                    done.removed
                );
                for p in &done.problems {
                    eprintln!("warning: {p}");
                }
            }
            Err(e) => return Err(runtime(e)),
        }
        Ok(crm)
    }
}

/// The configured CRM of record, which must exist: configuration problems (a missing
/// embedded CRM, a connector's key or model file) exit 2, the rest 1.
pub fn open_crm(config: &Config) -> Result<Box<dyn Source>, Failure> {
    if config.crm.source == CrmKind::Sqlite {
        missing_embedded_crm(config)?;
    }
    crmsync::crm::open_source(config).map_err(|e| if e.is_config() { usage(e) } else { runtime(e) })
}

/// The embedded CRM itself, which must exist (`crm export`, `crm show`).
pub fn open_embedded_crm(config: &Config) -> Result<SqliteCrm, Failure> {
    missing_embedded_crm(config)?;
    let options = crmsync::db::OpenOptions {
        mode: crmsync::db::OpenMode::Existing,
        busy_timeout: config.state.busy_timeout(),
    };
    SqliteCrm::open_with(&config.crm.path, &options).map_err(runtime)
}

fn missing_embedded_crm(config: &Config) -> Result<(), Failure> {
    let path = &config.crm.path;
    if path.exists() {
        return Ok(());
    }
    Err(usage(anyhow::anyhow!(
        "no embedded CRM at {}: load one with `crmsync crm load ORG.json` (or check \
         [crm] path in the configuration)",
        path.display()
    )))
}

/// The embedded CRM, created if missing (`crm load` only).
pub fn open_or_create_crm(config: &Config) -> Result<SqliteCrm, Failure> {
    let options = crmsync::db::OpenOptions {
        mode: crmsync::db::OpenMode::CreateOrOpen,
        busy_timeout: config.state.busy_timeout(),
    };
    SqliteCrm::open_with(&config.crm.path, &options).map_err(runtime)
}
