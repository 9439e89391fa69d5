//! Shared by `access` and `scope`: refresh the state DB's mirror from the configured CRM
//! and read the typed model, the way the sync engine does.

use super::{runtime, usage, Failure};
use crmsync::config::Config;
use crmsync::crm::OrgModel;
use crmsync::mirror;
use crmsync::model::UserId;
use crmsync::store::StateDb;

/// The refreshed mirror and the open state DB.
pub struct Mirror {
    pub state: StateDb,
    pub model: OrgModel,
}

/// Pulls the CRM's change feed into the state DB, reports skipped rows on stderr, and
/// checks the config's scope section against the model.
pub fn refresh(config: &Config) -> Result<Mirror, Failure> {
    let crm = super::open_crm(config)?;
    let state = StateDb::open(&config.state.path).map_err(runtime)?;
    let refreshed = mirror::refresh(&state, crm.as_ref()).map_err(runtime)?;
    for problem in &refreshed.problems {
        eprintln!("warning: {problem}");
    }
    let model = state.load_org_model().map_err(runtime)?;
    config
        .scope
        .validate(&model)
        .map_err(|e| usage(anyhow::anyhow!("configuration: {e}")))?;
    Ok(Mirror { state, model })
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
