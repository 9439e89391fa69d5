//! Write-backs to Insightly: contact and event fields (partial `PUT`), and deletes.
//!
//! Insightly has no conditional update, so a write-back first checks, in order:
//! 1. the engine's expected version against the shadow (older → conflict);
//! 2. the record as Insightly holds it now (`GET`, with the writing key) against the shadow:
//!    the fresh copy is recorded, and if that gave the record a new version (its content
//!    changed since it was read) the write-back is a conflict, never an overwrite — a moved
//!    `DATE_UPDATED_UTC` without a content change is not one;
//! 3. then sends only the fields the engine asked for, and records Insightly's answer.
//!
//! What remains is the window between that `GET` and the `PUT` (typically well under a
//! second): an edit landing inside it is overwritten for the fields written here.
//! Records are not created from phones (Insightly assigns ids; such items stay on the phone
//! and are reported), and organisations are not written.

use super::api::excerpt;
use super::mapping;
use super::Insightly;
use crate::crm::connector::shadow::Shadow;
use crate::crm::connector::ConnectorError;
use crate::crm::{updated_record, CrmError, Entity, EntityKind, WriteBack, WriteOutcome};
use crate::model::{ObjectKind, RecordReaders, RecordRef, UserId};
use serde_json::{Map, Value};

fn collection(kind: ObjectKind) -> Result<&'static str, CrmError> {
    match kind {
        ObjectKind::Contact => Ok("Contacts"),
        ObjectKind::Event => Ok("Events"),
        ObjectKind::Organization => Err(CrmError::Refused(
            "organisations are not written back to Insightly".into(),
        )),
    }
}

pub(super) fn write(
    connector: &Insightly,
    shadow: &mut Shadow,
    write: &WriteBack,
) -> Result<WriteOutcome, CrmError> {
    match write {
        WriteBack::Create { .. } => Err(CrmError::Refused(
            "records are not created in Insightly from a phone (create them in Insightly)".into(),
        )),
        WriteBack::Update {
            record,
            expected_version,
            acting_user,
            fields,
        } => update(
            connector,
            shadow,
            record,
            *expected_version,
            acting_user,
            fields,
        ),
        WriteBack::Delete {
            record,
            expected_version,
            acting_user,
        } => delete(connector, shadow, record, *expected_version, acting_user),
    }
}

/// Reads the record as Insightly holds it now and records it: a new version means it
/// changed since the engine read it.
fn recheck(
    connector: &Insightly,
    shadow: &mut Shadow,
    record: &RecordRef,
    version: i64,
    reader: &super::api::Reader,
) -> Result<(), CrmError> {
    let live = connector
        .api()
        .get(reader, collection(record.kind)?, record.id.as_str())?
        .ok_or_else(|| CrmError::NotFound(record.clone()))?;
    let entity = mapping::record(record.kind, &live).map_err(|bad| {
        CrmError::Invalid(format!("{record} as Insightly holds it now: {}", bad.error))
    })?;
    shadow.recheck(record, version, entity)
}

/// A refused key or a forbidden record, as the engine's "refused" (the CRM wins).
fn refusal(e: ConnectorError) -> CrmError {
    match e {
        ConnectorError::Unauthorized {
            status: 403, who, ..
        } => CrmError::Refused(format!(
            "Insightly does not let {who} change this record (HTTP 403)"
        )),
        other => other.into(),
    }
}

fn answered(
    shadow: &mut Shadow,
    record: &RecordRef,
    response: &crate::crm::connector::http::HttpResponse,
    acting_user: &UserId,
    delegated: bool,
) -> Result<i64, CrmError> {
    match response.status {
        s if (200..300).contains(&s) => {}
        404 => return Err(CrmError::NotFound(record.clone())),
        400 | 422 => {
            return Err(CrmError::Invalid(format!(
                "Insightly refused the values: {}",
                excerpt(&response.body)
            )))
        }
        s => {
            return Err(ConnectorError::Protocol {
                crm: super::api::CRM.into(),
                path: record.to_string(),
                message: format!("HTTP {s}: {}", excerpt(&response.body)),
            }
            .into())
        }
    }
    let value: Value =
        serde_json::from_str(&response.body).map_err(|e| ConnectorError::Protocol {
            crm: super::api::CRM.into(),
            path: record.to_string(),
            message: format!("the answer to the update is not JSON: {e}"),
        })?;
    let entity = mapping::record(record.kind, &value)
        .map_err(|bad| CrmError::Invalid(format!("{record} after the update: {}", bad.error)))?;
    shadow.record(&[entity])?;
    if delegated {
        // The writer's key shows the record (it just changed it).
        let list_id = record.to_string();
        let mut users: Vec<UserId> = match shadow.get(EntityKind::RecordReaders, &list_id)? {
            Some((_, Entity::RecordReaders(r))) => r.users,
            _ => Vec::new(),
        };
        if !users.contains(acting_user) {
            users.push(acting_user.clone());
            shadow.record(&[Entity::RecordReaders(RecordReaders::new(
                record.clone(),
                users,
            ))])?;
        }
    }
    shadow
        .get(EntityKind::from_object(record.kind), record.id.as_str())?
        .map(|(v, _)| v)
        .ok_or_else(|| CrmError::NotFound(record.clone()))
}

fn update(
    connector: &Insightly,
    shadow: &mut Shadow,
    record: &RecordRef,
    expected: i64,
    acting_user: &UserId,
    fields: &Map<String, Value>,
) -> Result<WriteOutcome, CrmError> {
    let collection = collection(record.kind)?;
    let (version, entity) = shadow.expect_version(record, expected)?;
    let merged = updated_record(record, &entity, fields)?;
    if merged.without_stamp() == entity.without_stamp() {
        return Ok(WriteOutcome {
            record: record.clone(),
            version,
        });
    }
    let body = match &merged {
        Entity::Contact(c) => mapping::contact_body(c, fields)?,
        Entity::Event(e) => mapping::event_body(e, fields)?,
        _ => return Err(CrmError::Refused(format!("{record} cannot be written"))),
    };
    let reader = connector.writer_for(acting_user)?;
    recheck(connector, shadow, record, version, reader).map_err(|e| match e {
        CrmError::Connector(c) => refusal(c),
        other => other,
    })?;
    let response = connector
        .api()
        .put(reader, collection, body)
        .map_err(refusal)?;
    let version = answered(
        shadow,
        record,
        &response,
        acting_user,
        connector.delegated(),
    )?;
    tracing::info!(record = %record, version, "written back to Insightly");
    Ok(WriteOutcome {
        record: record.clone(),
        version,
    })
}

fn delete(
    connector: &Insightly,
    shadow: &mut Shadow,
    record: &RecordRef,
    expected: i64,
    acting_user: &UserId,
) -> Result<WriteOutcome, CrmError> {
    let collection = collection(record.kind)?;
    shadow.expect_version(record, expected)?;
    let reader = connector.writer_for(acting_user)?;
    recheck(connector, shadow, record, expected, reader).map_err(|e| match e {
        CrmError::Connector(c) => refusal(c),
        other => other,
    })?;
    let response = connector
        .api()
        .delete(reader, collection, record.id.as_str())
        .map_err(refusal)?;
    match response.status {
        s if (200..300).contains(&s) || s == 404 => {}
        s => {
            return Err(ConnectorError::Protocol {
                crm: super::api::CRM.into(),
                path: record.to_string(),
                message: format!("HTTP {s}: {}", excerpt(&response.body)),
            }
            .into())
        }
    }
    shadow.remove(
        EntityKind::from_object(record.kind),
        &[record.id.to_string()],
    )?;
    let version = shadow.head()?.0;
    shadow.remove(EntityKind::RecordReaders, &[record.to_string()])?;
    Ok(WriteOutcome {
        record: record.clone(),
        version,
    })
}
