//! Failed commands and their exit codes: 1 runtime failure, 2 usage or configuration error,
//! 3 the state DB is in use by another writer (the writer lock, or SQLite busy/locked).
//!
//! [`runtime`] looks through the error's chain for the library's error kinds, so every path
//! that meets a held lock, a busy database, a missing state DB or a different CRM exits with
//! the right code without each command having to know.

use crmsync::crm::CrmError;
use crmsync::db::{Busy, DbError};
use crmsync::mirror::RefreshError;
use crmsync::store::lock::LockError;
use crmsync::store::StoreError;
use crmsync::sync::engine::EngineError;
use std::error::Error;

/// Exit code of a runtime failure.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code of a usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when another writer holds the state DB (or SQLite stayed busy).
pub const EXIT_LOCKED: u8 = 3;

/// A failed command and the code it exits with.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        self.code
    }
}

/// A runtime failure: exit 1, unless the error is one with its own code (a held lock or a
/// busy database: 3; a missing state DB or a different CRM: 2).
pub fn runtime(error: impl Into<anyhow::Error>) -> Failure {
    let error = error.into();
    let code = error.chain().find_map(code_of).unwrap_or(EXIT_RUNTIME);
    Failure { code, error }
}

/// A usage or configuration error (exit 2).
pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        error: error.into(),
    }
}

/// The exit code an error in the chain calls for, if it is one of the kinds that have one.
fn code_of(error: &(dyn Error + 'static)) -> Option<u8> {
    if let Some(e) = error.downcast_ref::<LockError>() {
        return matches!(e, LockError::Held { .. }).then_some(EXIT_LOCKED);
    }
    if error.downcast_ref::<Busy>().is_some() {
        return Some(EXIT_LOCKED);
    }
    if let Some(e) = error.downcast_ref::<EngineError>() {
        return match e {
            EngineError::Store(s) => store_code(s),
            EngineError::Mirror(m) => refresh_code(m),
            EngineError::UnknownUser(_) => Some(EXIT_USAGE),
        };
    }
    if let Some(e) = error.downcast_ref::<RefreshError>() {
        return refresh_code(e);
    }
    if let Some(e) = error.downcast_ref::<StoreError>() {
        return store_code(e);
    }
    if let Some(e) = error.downcast_ref::<CrmError>() {
        return crm_code(e);
    }
    if let Some(e) = error.downcast_ref::<DbError>() {
        return db_code(e);
    }
    None
}

fn refresh_code(e: &RefreshError) -> Option<u8> {
    match e {
        RefreshError::DifferentCrm { .. } => Some(EXIT_USAGE),
        RefreshError::Crm(c) => crm_code(c),
        RefreshError::Store(s) => store_code(s),
        RefreshError::Incomplete { .. } => None,
    }
}

fn store_code(e: &StoreError) -> Option<u8> {
    match e {
        StoreError::Busy(_) => Some(EXIT_LOCKED),
        StoreError::Missing { .. } | StoreError::NotInitialised { .. } => Some(EXIT_USAGE),
        StoreError::Open(d) => db_code(d),
        _ => None,
    }
}

fn crm_code(e: &CrmError) -> Option<u8> {
    match e {
        CrmError::Busy(_) => Some(EXIT_LOCKED),
        CrmError::Db(d) => db_code(d),
        _ => None,
    }
}

fn db_code(e: &DbError) -> Option<u8> {
    match e {
        DbError::Busy { .. } => Some(EXIT_LOCKED),
        DbError::Missing { .. } | DbError::NotInitialised { .. } | DbError::TooNew { .. } => {
            Some(EXIT_USAGE)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_library_error_kinds_through_wrappers() {
        let busy = || Busy {
            code: "SQLITE_BUSY",
        };
        assert_eq!(runtime(StoreError::Busy(busy())).code, EXIT_LOCKED);
        assert_eq!(
            runtime(EngineError::Store(StoreError::Busy(busy()))).code,
            EXIT_LOCKED
        );
        assert_eq!(
            runtime(EngineError::Mirror(RefreshError::Crm(CrmError::Busy(
                busy()
            ))))
            .code,
            EXIT_LOCKED
        );
        assert_eq!(
            runtime(StoreError::Missing {
                path: "s.db".into()
            })
            .code,
            EXIT_USAGE
        );
        assert_eq!(
            runtime(EngineError::Mirror(RefreshError::DifferentCrm {
                source_name: "sqlite:crm.db".into(),
                expected: "a".into(),
                found: "b".into(),
            }))
            .code,
            EXIT_USAGE
        );
        let held = LockError::Held {
            state: "s.db".into(),
            lock_file: "s.db.lock".into(),
            holder: None,
            waited: std::time::Duration::ZERO,
        };
        assert_eq!(runtime(held).code, EXIT_LOCKED);
        assert_eq!(
            runtime(anyhow::anyhow!("something else")).code,
            EXIT_RUNTIME
        );
        assert_eq!(
            runtime(anyhow::Error::new(StoreError::Busy(busy())).context("syncing")).code,
            EXIT_LOCKED,
            "found under context too"
        );
    }
}
