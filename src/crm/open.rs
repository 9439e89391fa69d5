//! The one place that builds the configured CRM source (`[crm] source = …`): the CLI's
//! `sync`, `access` and `scope` commands all get their `Box<dyn Source>` here.

use super::connector::ConnectorError;
use super::sqlite::SqliteCrm;
use super::{CrmError, Source};
use crate::config::{Config, CrmKind};

/// Opens the CRM of record the configuration names. Configuration problems (a missing key,
/// an unreadable model file) are errors whose [`CrmError::is_config`] is true.
pub fn open_source(config: &Config) -> Result<Box<dyn Source>, CrmError> {
    let missing = |kind: CrmKind| {
        ConnectorError::Config(format!(
            "[crm] source = \"{0}\" needs [crm.{0}]",
            kind.key()
        ))
    };
    match config.crm.source {
        // The embedded CRM must exist: only `crm load` creates one.
        CrmKind::Sqlite => Ok(Box::new(SqliteCrm::open_with(
            &config.crm.path,
            &crate::db::OpenOptions {
                mode: crate::db::OpenMode::Existing,
                busy_timeout: config.state.busy_timeout(),
            },
        )?)),
        kind @ CrmKind::Insightly => {
            let section = config.crm.insightly.as_ref().ok_or_else(|| missing(kind))?;
            Ok(Box::new(super::insightly::open(section)?))
        }
        kind @ CrmKind::Amocrm => {
            let section = config.crm.amocrm.as_ref().ok_or_else(|| missing(kind))?;
            Ok(Box::new(super::amocrm::open(section)?))
        }
    }
}
