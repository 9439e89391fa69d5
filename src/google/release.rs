//! Giving a contact crmsync did not create back to its user (pull-back and revocation of a
//! pre-existing contact that dedup linked, or of a phone-made contact that was imported).
//!
//! Per Google field crmsync manages (names, organizations, e-mails, phones, addresses,
//! biographies): if the contact still shows what crmsync last wrote (the link's base), the
//! value it had before crmsync linked it (the pre-link snapshot, Google's raw person) is put
//! back; if the phone changed the field since, the phone's value stays and the field is
//! reported. Our client-data keys and our group membership go; every other client-data key
//! and membership stays. A user's own contact is never deleted.

use super::mapping::{contact_fields, person_groups, MARKER_ID, MARKER_ORIGIN, MY_CONTACTS};
use crate::model::SyncedContact;
use crate::sync::remote::Released;
use google_people1::api::{ContactGroupMembership, Membership, Person};

/// One Google field of a person and the synced fields it carries.
struct ManagedField {
    name: &'static str,
    /// Whether the synced fields behind it are equal in `a` and `b`.
    same: fn(&SyncedContact, &SyncedContact) -> bool,
    /// Copies the field from `from` to `to`, without per-value metadata (output only).
    copy: fn(&Person, &mut Person),
}

macro_rules! copy_field {
    ($field:ident) => {
        |from: &Person, to: &mut Person| {
            to.$field = from.$field.clone().map(|values| {
                values
                    .into_iter()
                    .map(|mut v| {
                        v.metadata = None;
                        v
                    })
                    .collect()
            });
        }
    };
}

impl ManagedField {
    /// The field of `p` exactly as Google holds it (per-value metadata aside).
    fn raw(&self, p: &Person) -> serde_json::Value {
        let mut only = Person::default();
        (self.copy)(p, &mut only);
        serde_json::to_value(only).unwrap_or(serde_json::Value::Null)
    }
}

const MANAGED: [ManagedField; 6] = [
    ManagedField {
        name: "names",
        same: |a, b| a.first_name == b.first_name && a.last_name == b.last_name,
        copy: copy_field!(names),
    },
    ManagedField {
        name: "organizations",
        same: |a, b| a.organization == b.organization && a.title == b.title,
        copy: copy_field!(organizations),
    },
    ManagedField {
        name: "emailAddresses",
        same: |a, b| a.emails == b.emails,
        copy: copy_field!(email_addresses),
    },
    ManagedField {
        name: "phoneNumbers",
        same: |a, b| a.phones == b.phones,
        copy: copy_field!(phone_numbers),
    },
    ManagedField {
        name: "addresses",
        same: |a, b| a.addresses == b.addresses,
        copy: copy_field!(addresses),
    },
    ManagedField {
        name: "biographies",
        same: |a, b| a.notes == b.notes,
        copy: copy_field!(biographies),
    },
];

fn is_ours(key: Option<&str>) -> bool {
    matches!(key, Some(k) if k == MARKER_ID || k == MARKER_ORIGIN)
}

/// The person to write to release `current` from crmsync (`our_group` is the user's
/// crmsync group), and what it does. `None` when there is nothing left to release: no
/// marker of ours, not in our group.
pub fn released_person(
    current: &Person,
    our_group: &str,
    base: Option<&SyncedContact>,
    pre_link: Option<&Person>,
) -> Option<(Person, Released)> {
    let marked = current
        .client_data
        .iter()
        .flatten()
        .any(|c| is_ours(c.key.as_deref()));
    let groups = person_groups(current);
    let in_group = groups.iter().any(|g| g == our_group);
    if !marked && !in_group {
        return None;
    }
    let mut out = Person {
        resource_name: current.resource_name.clone(),
        etag: current.etag.clone(),
        ..Person::default()
    };
    for field in &MANAGED {
        (field.copy)(current, &mut out);
    }
    let mut report = Released::default();
    match (base, pre_link) {
        (Some(base), Some(pre)) => {
            let now = contact_fields(current);
            for field in &MANAGED {
                if !(field.same)(&now, base) {
                    report.kept_phone_edits.push(field.name.to_owned());
                } else if field.raw(current) != field.raw(pre) {
                    // Exactly as it was: the phone's own spelling, labels and extra
                    // sub-fields, not the normalised form crmsync writes.
                    (field.copy)(pre, &mut out);
                    report.restored.push(field.name.to_owned());
                }
            }
        }
        _ => report.stripped_only = true,
    }
    out.client_data = Some(
        current
            .client_data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !is_ours(c.key.as_deref()))
            .map(|mut c| {
                c.metadata = None;
                c
            })
            .collect(),
    );
    let mut keep: Vec<String> = groups.into_iter().filter(|g| g != our_group).collect();
    if keep.is_empty() {
        keep.push(MY_CONTACTS.to_owned());
    }
    out.memberships = Some(
        keep.into_iter()
            .map(|g| Membership {
                contact_group_membership: Some(ContactGroupMembership {
                    contact_group_resource_name: Some(g),
                    contact_group_id: None,
                }),
                ..Membership::default()
            })
            .collect(),
    );
    Some((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::google::mapping::{contact_to_google, mark_created, person_marker};
    use crate::model::{CrmId, EmailAddress, PhoneNumber};
    use google_people1::api::ClientData;

    const GROUP: &str = "contactGroups/crm1";

    fn synced(first: &str, email: &str, phone: &str, notes: &str) -> SyncedContact {
        SyncedContact {
            first_name: first.into(),
            emails: vec![EmailAddress {
                address: email.into(),
                label: "work".into(),
            }],
            phones: (!phone.is_empty())
                .then(|| PhoneNumber {
                    number: phone.into(),
                    label: "mobile".into(),
                })
                .into_iter()
                .collect(),
            notes: notes.into(),
            ..SyncedContact::default()
        }
    }

    /// What the phone had before crmsync: a personal label and another app's client data.
    fn pre_link() -> Person {
        let mut p = contact_to_google(
            &CrmId::new("x").unwrap(),
            "contactGroups/family",
            &synced("Ada", "ada@home.example", "+442079460000", "my notes"),
            &["contactGroups/family".to_owned()],
            &[ClientData {
                key: Some("other_app".into()),
                value: Some("7".into()),
                metadata: None,
            }],
        );
        p.client_data
            .as_mut()
            .unwrap()
            .retain(|c| c.key.as_deref() != Some(MARKER_ID));
        p.resource_name = Some("people/c1".into());
        p
    }

    /// The contact after crmsync linked it and wrote the CRM's version.
    fn linked(base: &SyncedContact) -> Person {
        let pre = pre_link();
        let mut p = contact_to_google(
            &CrmId::new("c1").unwrap(),
            GROUP,
            base,
            &person_groups(&pre),
            pre.client_data.as_deref().unwrap_or(&[]),
        );
        p.resource_name = Some("people/c1".into());
        p.etag = Some("%e2".into());
        p
    }

    fn keys(p: &Person) -> Vec<String> {
        p.client_data
            .iter()
            .flatten()
            .filter_map(|c| c.key.clone())
            .collect()
    }

    #[test]
    fn an_untouched_contact_is_restored_to_its_pre_link_snapshot() {
        let base = synced("Ada CRM", "ada@home.example", "+442079460001", "crm notes");
        let current = linked(&base);
        let (out, report) =
            released_person(&current, GROUP, Some(&base), Some(&pre_link())).unwrap();
        assert_eq!(contact_fields(&out), contact_fields(&pre_link()));
        assert!(report.kept_phone_edits.is_empty());
        assert_eq!(report.restored, ["names", "phoneNumbers", "biographies"]);
        assert_eq!(person_marker(&out), None);
        assert_eq!(keys(&out), ["other_app"], "other apps' client data stays");
        assert_eq!(
            person_groups(&out),
            ["contactGroups/family"],
            "our group goes"
        );
        assert_eq!(out.etag.as_deref(), Some("%e2"));
    }

    #[test]
    fn fields_the_phone_changed_since_keep_the_phone_values_and_are_reported() {
        let base = synced("Ada CRM", "ada@home.example", "+442079460001", "crm notes");
        let mut current = linked(&base);
        current.biographies.as_mut().unwrap()[0].value = Some("edited on the phone".into());
        let (out, report) =
            released_person(&current, GROUP, Some(&base), Some(&pre_link())).unwrap();
        assert_eq!(report.kept_phone_edits, ["biographies"]);
        assert_eq!(contact_fields(&out).notes, "edited on the phone");
        assert_eq!(
            contact_fields(&out).first_name,
            "Ada",
            "untouched fields restored"
        );
        assert_eq!(person_marker(&out), None);
    }

    #[test]
    fn without_a_snapshot_only_our_marks_go() {
        let base = synced("Ada CRM", "ada@home.example", "", "");
        let mut current = linked(&base);
        mark_created(&mut current);
        let (out, report) = released_person(&current, GROUP, Some(&base), None).unwrap();
        assert!(report.stripped_only);
        assert_eq!(contact_fields(&out), contact_fields(&current));
        assert_eq!(keys(&out), ["other_app"]);
    }

    #[test]
    fn a_released_contact_is_left_alone_and_the_last_membership_falls_back() {
        let base = synced("Ada", "ada@home.example", "", "");
        let mut current = linked(&base);
        current.memberships = Some(vec![Membership {
            contact_group_membership: Some(ContactGroupMembership {
                contact_group_resource_name: Some(GROUP.into()),
                contact_group_id: None,
            }),
            ..Membership::default()
        }]);
        let (out, _) = released_person(&current, GROUP, Some(&base), None).unwrap();
        assert_eq!(person_groups(&out), [MY_CONTACTS]);
        let mut again = out.clone();
        again.etag = Some("%e3".into());
        assert!(released_person(&again, GROUP, Some(&base), None).is_none());
    }
}
