//! The org-wide invariant, checked against what Google actually holds: every item carrying
//! crmsync's marker in a user's account must be readable by that user in the CRM as it is
//! now. The demo prints the result; every end-to-end test asserts it after every pass.

use crate::crm::OrgModel;
use crate::emulator::control::EmulatorHandle;
use crate::google::mapping::MARKER_ID;
use crate::model::{CrmId, ObjectKind, RecordRef};
use crate::security::{Access, Operation};
use serde::Serialize;

/// An item a user holds in Google but may not read in the CRM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leak {
    pub user: String,
    pub record: String,
}

/// What the check looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LeakCheck {
    pub items_checked: usize,
    pub leaks: Vec<Leak>,
}

/// Checks every user of `model` that has a Google account in the emulator.
pub fn check(emulator: &EmulatorHandle, model: &OrgModel) -> LeakCheck {
    let access = Access::build(model);
    let mut out = LeakCheck::default();
    for user in model.users.values() {
        let Some(account) = &user.google_account else {
            continue;
        };
        let Some(dump) = emulator.dump_user(account) else {
            continue;
        };
        let mut markers: Vec<(ObjectKind, String)> = Vec::new();
        for cal in &dump.calendars {
            for e in cal
                .events
                .iter()
                .filter(|e| e.status.as_deref() != Some("cancelled"))
            {
                let marker = e
                    .extended_properties
                    .as_ref()
                    .and_then(|p| p.private.as_ref())
                    .and_then(|p| p.get(MARKER_ID).cloned());
                if let Some(m) = marker {
                    markers.push((ObjectKind::Event, m));
                }
            }
        }
        for p in dump.live_contacts() {
            let marker = p
                .client_data
                .iter()
                .flatten()
                .find(|d| d.key.as_deref() == Some(MARKER_ID))
                .and_then(|d| d.value.clone());
            if let Some(m) = marker {
                markers.push((ObjectKind::Contact, m));
            }
        }
        for (kind, marker) in markers {
            out.items_checked += 1;
            let readable = user.active
                && CrmId::new(marker.as_str()).is_ok_and(|id| {
                    access
                        .may(&user.id, &RecordRef::new(kind, id), Operation::Read)
                        .unwrap_or(false)
                });
            if !readable {
                out.leaks.push(Leak {
                    user: user.id.to_string(),
                    record: format!("{kind}:{marker}"),
                });
            }
        }
    }
    out
}
