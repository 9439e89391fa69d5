//! The one place that builds the configured CRM source (`[crm] source = …`): the CLI's
//! `sync`, `access` and `scope` commands all get their `Box<dyn Source>` here.

use super::connector::ConnectorError;
use super::sqlite::SqliteCrm;
use super::{CrmError, Source};
use crate::config::{Config, CrmKind};

/// Opens the CRM of record the configuration names. Configuration problems (a missing key,
/// an unreadable model file) are errors whose [`CrmError::is_config`] is true.
pub fn open_source(config: &Config) -> Result<Box<dyn Source>, CrmError> {
    match config.crm.source {
        CrmKind::Sqlite => Ok(Box::new(SqliteCrm::open(&config.crm.path)?)),
        CrmKind::Amocrm => {
            let amocrm = config.crm.amocrm.as_ref().ok_or_else(|| {
                ConnectorError::Config("[crm] source = \"amocrm\" needs [crm.amocrm]".into())
            })?;
            Ok(Box::new(super::amocrm::open(amocrm)?))
        }
    }
}
