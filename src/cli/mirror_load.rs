//! Shared by `access` and `scope`: refresh the state DB's mirror from the configured CRM
//! and read the typed model, the way the sync engine does.

use super::state_access::{StateAccess, ADMIN_WAIT};
use super::{runtime, usage, Failure};
use crmsync::config::Config;
use crmsync::crm::OrgModel;
use crmsync::mirror;
use crmsync::model::UserId;
use crmsync::store::lock::WriterGuard;
use crmsync::store::StateDb;

/// The refreshed mirror and the open state DB (with the writer lock, when it was taken).
pub struct Mirror {
    pub state: StateDb,
    pub model: OrgModel,
    pub _guard: Option<WriterGuard>,
}

/// What the command will do with the state DB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent<'a> {
    /// Only read: refresh the mirror if the lock is free, else answer from it as it is.
    Read(&'a str),
    /// Write (e.g. `scope set`): the lock is required (waiting `--wait`, default 30 s).
    Write(&'a str),
}

/// Pulls the CRM's change feed into the state DB (when holding the lock), reports skipped
/// rows on stderr, and checks the config's scope section against the model.
pub fn refresh(
    config: &Config,
    access: &StateAccess,
    intent: Intent<'_>,
) -> Result<Mirror, Failure> {
    let (guard, state) = match intent {
        Intent::Write(command) => {
            let (guard, state) = access.open_for_write(config, command, ADMIN_WAIT)?;
            (Some(guard), state)
        }
        Intent::Read(command) => {
            let guard = access.try_lock_for_refresh(config, command)?;
            (guard, access.open_for_read(config)?)
        }
    };
    if guard.is_some() {
        let crm = access.open_crm_for_sync(config, &state)?;
        let refreshed = mirror::refresh(&state, crm.as_ref()).map_err(runtime)?;
        for problem in &refreshed.problems {
            eprintln!("warning: {problem}");
        }
    }
    // A reader lets go as soon as the mirror is fresh, so a sync starting now is not refused.
    let guard = match intent {
        Intent::Read(_) => None,
        Intent::Write(_) => guard,
    };
    let model = state.load_org_model().map_err(runtime)?;
    config
        .scope
        .validate(&model)
        .map_err(|e| usage(anyhow::anyhow!("configuration: {e}")))?;
    Ok(Mirror {
        state,
        model,
        _guard: guard,
    })
}

/// A user id from the command line that must exist in the mirror.
pub fn known_user(model: &OrgModel, raw: &str) -> Result<UserId, Failure> {
    let id = UserId::new(raw).map_err(|e| usage(anyhow::anyhow!("user {raw:?}: {e}")))?;
    if !model.users.contains_key(&id) {
        return Err(usage(anyhow::anyhow!(
            "unknown user {raw:?} (not in the CRM mirror; {} users known)",
            model.users.len()
        )));
    }
    Ok(id)
}
