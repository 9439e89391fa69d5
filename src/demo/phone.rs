//! A simulated phone: edits a user makes on their phone, sent through the Google APIs as
//! that user (the same official clients the engine uses). The demo tells its story with it,
//! and the end-to-end tests use it to play the phone's side.

use crate::google::auth::{impersonate, load_service_account_key};
use crate::google::hub::people_hub;
use crate::model::{CrmId, ObjectKind, SyncedContact, SyncedEvent, UserId};
use crate::store::StateDb;
use crate::sync::plan::Link;
use crate::sync::remote::{
    ContactOp, EventOp, GoogleUser, OpResult, Remote, RemoteChange, RemoteError, RemoteErrorKind,
};
use google_people1::api::{ContactGroupMembership, EmailAddress, Membership, Name, Person};
use google_people1::FieldMask;
use std::path::PathBuf;

/// What went wrong on the phone.
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    #[error("{0} is not synced to this phone")]
    NotSynced(String),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("People API: {0}")]
    People(String),
}

/// One user's phone.
pub struct Phone<'a, R> {
    pub remote: &'a R,
    pub state: &'a StateDb,
    pub user: GoogleUser,
    /// Root URL of the Google APIs (the emulator's) and the service-account key, for the
    /// calls the engine's `Remote` does not make (creating an unmarked contact).
    pub root: String,
    pub key: PathBuf,
    pub token_uri: Option<String>,
}

impl<R: Remote> Phone<'_, R> {
    fn sync_ids(&self) -> Result<(Option<String>, Option<String>), PhoneError> {
        let s = self.state.sync_user(&self.user.user)?;
        Ok((
            s.as_ref().and_then(|s| s.calendar_id.clone()),
            s.and_then(|s| s.group_resource),
        ))
    }

    fn group(&self) -> Result<String, PhoneError> {
        self.sync_ids()?
            .1
            .ok_or_else(|| PhoneError::NotSynced("the contact group".into()))
    }

    fn calendar(&self) -> Result<String, PhoneError> {
        self.sync_ids()?
            .0
            .ok_or_else(|| PhoneError::NotSynced("the calendar".into()))
    }

    fn google_id(&self, kind: ObjectKind, id: &str) -> Result<String, PhoneError> {
        let crm_id = CrmId::new(id).map_err(|_| PhoneError::NotSynced(id.to_owned()))?;
        let links: std::collections::BTreeMap<CrmId, Link<serde_json::Value>> =
            self.state.links(&self.user.user, kind)?;
        links
            .get(&crm_id)
            .and_then(|l| l.google_id.clone())
            .ok_or_else(|| PhoneError::NotSynced(format!("{kind}:{id}")))
    }

    /// The contact as the phone shows it now (`None` if deleted).
    pub async fn contact(&self, id: &str) -> Result<Option<SyncedContact>, PhoneError> {
        let resource = self.google_id(ObjectKind::Contact, id)?;
        match self
            .remote
            .get_contact(&self.user, &self.group()?, &resource)
            .await
        {
            Ok(RemoteChange::Present(item)) => Ok(Some(item.data)),
            Ok(RemoteChange::Deleted { .. }) => Ok(None),
            Err(e) if e.kind == RemoteErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Edits a synced contact on the phone.
    pub async fn edit_contact(
        &self,
        id: &str,
        edit: impl FnOnce(&mut SyncedContact),
    ) -> Result<(), PhoneError> {
        let resource = self.google_id(ObjectKind::Contact, id)?;
        let group = self.group()?;
        let RemoteChange::Present(item) = self
            .remote
            .get_contact(&self.user, &group, &resource)
            .await?
        else {
            return Err(PhoneError::NotSynced(format!("contact:{id}")));
        };
        let mut data = item.data.clone();
        edit(&mut data);
        let crm_id = CrmId::new(id).map_err(|_| PhoneError::NotSynced(id.to_owned()))?;
        let op = ContactOp::Update {
            resource,
            etag: item.etag,
            crm_id,
            data,
            marked: false,
        };
        expect_written(self.remote.contact_ops(&self.user, &group, &[op]).await?)
    }

    /// Deletes a synced contact on the phone.
    pub async fn delete_contact(&self, id: &str) -> Result<(), PhoneError> {
        let resource = self.google_id(ObjectKind::Contact, id)?;
        let op = ContactOp::Delete { resource };
        expect_written(
            self.remote
                .contact_ops(&self.user, &self.group()?, &[op])
                .await?,
        )
    }

    /// The event as the phone shows it now (`None` if deleted).
    pub async fn event(&self, id: &str) -> Result<Option<SyncedEvent>, PhoneError> {
        let event_id = self.google_id(ObjectKind::Event, id)?;
        match self
            .remote
            .get_event(&self.user, &self.calendar()?, &event_id)
            .await
        {
            Ok(RemoteChange::Present(item)) => Ok(Some(item.data)),
            Ok(RemoteChange::Deleted { .. }) => Ok(None),
            Err(e) if e.kind == RemoteErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Edits a synced event on the phone.
    pub async fn edit_event(
        &self,
        id: &str,
        edit: impl FnOnce(&mut SyncedEvent),
    ) -> Result<(), PhoneError> {
        let event_id = self.google_id(ObjectKind::Event, id)?;
        let calendar = self.calendar()?;
        let RemoteChange::Present(item) = self
            .remote
            .get_event(&self.user, &calendar, &event_id)
            .await?
        else {
            return Err(PhoneError::NotSynced(format!("event:{id}")));
        };
        let mut data = item.data.clone();
        edit(&mut data);
        let crm_id = CrmId::new(id).map_err(|_| PhoneError::NotSynced(id.to_owned()))?;
        let op = EventOp::Update {
            id: event_id,
            etag: item.etag,
            crm_id,
            data,
        };
        expect_written(self.remote.event_ops(&self.user, &calendar, &[op]).await?)
    }

    /// Creates a contact the way a phone does: no crmsync marker; in the user's crmsync
    /// group when `in_crm_group` (else only in "My contacts"). Returns its resource name.
    pub async fn create_contact(
        &self,
        given: &str,
        family: &str,
        email: &str,
        in_crm_group: bool,
    ) -> Result<String, PhoneError> {
        let people_err = |e: String| PhoneError::People(e);
        let key = load_service_account_key(&self.key, self.token_uri.as_deref())
            .await
            .map_err(|e| people_err(e.to_string()))?;
        let auth = impersonate(&key, &self.user.account)
            .await
            .map_err(|e| people_err(e.to_string()))?;
        let hub = people_hub(&self.root, auth).map_err(|e| people_err(e.to_string()))?;
        let membership = |group: String| Membership {
            contact_group_membership: Some(ContactGroupMembership {
                contact_group_resource_name: Some(group),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut memberships = vec![membership("contactGroups/myContacts".into())];
        if in_crm_group {
            memberships.push(membership(self.group()?));
        }
        let person = Person {
            names: Some(vec![Name {
                given_name: Some(given.into()),
                family_name: (!family.is_empty()).then(|| family.into()),
                ..Default::default()
            }]),
            email_addresses: Some(vec![EmailAddress {
                value: Some(email.into()),
                type_: Some("work".into()),
                ..Default::default()
            }]),
            memberships: Some(memberships),
            ..Default::default()
        };
        let (_, created) = hub
            .people()
            .create_contact(person)
            .person_fields(FieldMask::new(&["names", "emailAddresses", "memberships"]))
            .doit()
            .await
            .map_err(|e| people_err(e.to_string()))?;
        created
            .resource_name
            .ok_or_else(|| people_err("created contact has no resource name".into()))
    }
}

fn expect_written<T>(results: Vec<OpResult<T>>) -> Result<(), PhoneError> {
    match results.into_iter().next().map(|r| r.result) {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e.into()),
        None => Err(PhoneError::People("no answer for the write".into())),
    }
}

/// A phone for `user` of the given Google account.
pub fn google_user(user: &UserId, account: &str) -> GoogleUser {
    GoogleUser {
        user: user.clone(),
        account: account.to_owned(),
    }
}
