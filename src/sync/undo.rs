//! Undo of a write-back (`crmsync audit undo ID`): a phone edit written to the CRM is put
//! back to the values it replaced — kept in the audit line of the write-back — provided the
//! record has not changed since (its version is still the one the write-back produced).
//! Otherwise nothing is written and the reason is given. The undo is itself audited
//! (`undone`), and the next pass pushes the restored values to every phone that has them.

use crate::crm::{CrmError, Source, WriteBack};
use crate::model::{RecordRef, UserId};
use crate::store::{StateDb, StoreError};
use serde::Serialize;

/// Why an undo was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("no audit line {0}")]
    NotFound(i64),
    #[error("audit line {id} is a {action:?}, not a write-back; only write-backs can be undone")]
    NotAWriteBack { id: i64, action: String },
    #[error(
        "audit line {0} does not keep the values the write-back replaced (written before \
         crmsync kept them); undo it by hand"
    )]
    NoPreviousValues(i64),
    #[error("audit line {id} was already undone (audit line {by})")]
    AlreadyUndone { id: i64, by: i64 },
    #[error("{0} no longer exists in the CRM")]
    RecordGone(RecordRef),
    #[error(
        "{record} changed in the CRM after the write-back (version {current} now, {expected} \
         right after it); undoing would overwrite that change"
    )]
    RecordChanged {
        record: RecordRef,
        expected: i64,
        current: i64,
    },
    #[error("the CRM refused the undo: {0}")]
    Crm(#[from] CrmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an undo did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UndoOutcome {
    pub audit_id: i64,
    pub record: String,
    /// The fields put back, with the values they have again.
    pub restored: serde_json::Value,
    /// The record's version after the undo.
    pub version: i64,
}

/// Undoes the write-back of audit line `audit_id`.
pub fn undo_write_back(
    state: &StateDb,
    crm: &mut dyn Source,
    audit_id: i64,
    run_id: &str,
) -> Result<UndoOutcome, UndoError> {
    let entry = state
        .audit_entry(audit_id)?
        .ok_or(UndoError::NotFound(audit_id))?;
    if entry.action != "written_back" {
        return Err(UndoError::NotAWriteBack {
            id: audit_id,
            action: entry.action,
        });
    }
    if let Some(by) = state.audit_undone_by(audit_id)? {
        return Err(UndoError::AlreadyUndone { id: audit_id, by });
    }
    let record: RecordRef = entry
        .record
        .as_deref()
        .and_then(|r| r.parse().ok())
        .ok_or(UndoError::NoPreviousValues(audit_id))?;
    let (Some(before), Some(expected)) = (
        entry
            .detail
            .get("before")
            .and_then(|b| b.as_object())
            .cloned(),
        entry
            .detail
            .get("version_after")
            .and_then(serde_json::Value::as_i64),
    ) else {
        return Err(UndoError::NoPreviousValues(audit_id));
    };
    let acting_user = entry
        .user_id
        .as_deref()
        .and_then(|u| UserId::new(u).ok())
        .ok_or(UndoError::NoPreviousValues(audit_id))?;
    let (current, _) = crm
        .get(&record)?
        .ok_or_else(|| UndoError::RecordGone(record.clone()))?;
    if current != expected {
        return Err(UndoError::RecordChanged {
            record,
            expected,
            current,
        });
    }
    let outcome = crm
        .apply(&WriteBack::Update {
            record: record.clone(),
            expected_version: expected,
            acting_user: acting_user.clone(),
            fields: before.clone(),
        })
        .map_err(|e| match e {
            CrmError::Conflict {
                record,
                expected,
                current,
            } => UndoError::RecordChanged {
                record,
                expected,
                current,
            },
            CrmError::NotFound(r) => UndoError::RecordGone(r),
            other => UndoError::Crm(other),
        })?;
    let restored = serde_json::Value::Object(before);
    state.write(|w| {
        w.audit(
            run_id,
            Some(&acting_user),
            Some(&record.to_string()),
            "undone",
            &serde_json::json!({
                "undoes": audit_id,
                "restored": restored,
                "version_before": expected,
                "version_after": outcome.version,
            }),
        )
    })?;
    Ok(UndoOutcome {
        audit_id,
        record: record.to_string(),
        restored,
        version: outcome.version,
    })
}
