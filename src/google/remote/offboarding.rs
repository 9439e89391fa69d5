//! `GoogleRemote` as [`Offboarding`]: marked calendars and groups, deleting them, the
//! calendar ACL, and releasing an account's credentials.
//!
//! Calls per operation: `marked_calendars` ⌈calendars/250⌉ `calendarList.list`;
//! `marked_groups` ⌈groups/1000⌉ `contactGroups.list`; `list_acl` ⌈rules/250⌉ `acl.list`
//! (one call on a quiet pass with a sync token); deletes 1 each; `release_credentials` one
//! POST to the token endpoint's `/revoke`.

use super::{group_marker, hub_failure, hub_result, Capture, GoogleRemote, UserClients, SCOPES};
use crate::google::classify::{classify_http, retry_after_header};
use crate::google::retry::{Failure, Repeat};
use crate::model::UserId;
use crate::revoke::remote::{
    AclEntry, AclListing, CredentialRelease, MarkedCalendar, MarkedGroup, Offboarding,
};
use crate::sync::remote::{GoogleUser, RemoteError, RemoteErrorKind};
use google_calendar3::api::{Acl, CalendarList};
use std::ops::ControlFlow;
use std::sync::Arc;

/// The CRM user named by a crmsync marker line in a calendar description, if any.
pub fn marker_user(description: Option<&str>) -> Option<String> {
    description?.lines().find_map(|l| {
        let user = l.trim().strip_prefix("crmsync:")?;
        UserId::new(user).ok().map(|u| u.to_string())
    })
}

/// The token endpoint's revocation URL: `…/token` → `…/revoke` (Google:
/// `https://oauth2.googleapis.com/revoke`; the emulator serves both on one port).
pub fn revoke_url(token_uri: &str) -> String {
    match token_uri.trim_end_matches('/').rsplit_once('/') {
        Some((base, _)) => format!("{base}/revoke"),
        None => format!("{token_uri}/revoke"),
    }
}

fn not_found_is_gone(result: Result<(), RemoteError>) -> Result<bool, RemoteError> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind == RemoteErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl GoogleRemote {
    /// The cached clients of an account, without making them.
    async fn cached_clients(&self, user: &GoogleUser) -> Option<Arc<UserClients>> {
        self.users.lock().await.get(&user.account).cloned()
    }
}

impl Offboarding for GoogleRemote {
    async fn marked_calendars(
        &self,
        user: &GoogleUser,
    ) -> Result<Vec<MarkedCalendar>, RemoteError> {
        let c = &*self.clients(user).await?;
        let mut found = Vec::new();
        self.pages(
            "calendarList.list",
            |token| {
                self.policy
                    .run(&c.calendar_pacer, 1, Repeat::Safe, move || {
                        let token = token.clone();
                        async move {
                            let mut call = c
                                .calendar
                                .calendar_list()
                                .list()
                                .show_hidden(true)
                                .max_results(250);
                            if let Some(t) = &token {
                                call = call.page_token(t);
                            }
                            hub_call!(call)
                        }
                    })
            },
            |list: CalendarList| {
                for entry in list.items.iter().flatten() {
                    if entry.deleted == Some(true) || entry.primary == Some(true) {
                        continue;
                    }
                    if let (Some(id), Some(marker_user)) =
                        (&entry.id, marker_user(entry.description.as_deref()))
                    {
                        found.push(MarkedCalendar {
                            id: id.clone(),
                            summary: entry.summary.clone().unwrap_or_default(),
                            marker_user,
                        });
                    }
                }
                list.next_page_token
                    .map_or(ControlFlow::Break(()), ControlFlow::Continue)
            },
        )
        .await?;
        Ok(found)
    }

    async fn delete_calendar(
        &self,
        user: &GoogleUser,
        calendar: &str,
    ) -> Result<bool, RemoteError> {
        let c = self.clients(user).await?;
        let result = self
            .policy
            .run(&c.calendar_pacer, 1, Repeat::Safe, || async {
                let (result, capture) = hub_send!(c.calendar.calendars().delete(calendar));
                result.map(|_| ()).map_err(|e| hub_failure(e, capture))
            })
            .await;
        not_found_is_gone(result)
    }

    async fn marked_groups(&self, user: &GoogleUser) -> Result<Vec<MarkedGroup>, RemoteError> {
        let c = self.clients(user).await?;
        Ok(self
            .user_groups(&c)
            .await?
            .into_iter()
            .filter_map(|g| {
                let marker_user = group_marker(&g)?;
                Some(MarkedGroup {
                    resource: g.resource_name.clone()?,
                    name: g.name.clone().unwrap_or_default(),
                    marker_user,
                })
            })
            .collect())
    }

    async fn delete_group(&self, user: &GoogleUser, group: &str) -> Result<bool, RemoteError> {
        let c = self.clients(user).await?;
        let _writes = c.people_writes.lock().await;
        let result = self
            .people_write(&c, Repeat::Safe, || async {
                hub_call!(c
                    .people
                    .contact_groups()
                    .delete(group)
                    .delete_contacts(false))
                .map(|_| ())
            })
            .await;
        not_found_is_gone(result)
    }

    async fn list_acl(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: Option<&str>,
    ) -> Result<AclListing, RemoteError> {
        let c = &*self.clients(user).await?;
        let mut entries = Vec::new();
        self.pages(
            "acl.list",
            |token| async move {
                self.policy
                    .run(&c.calendar_pacer, 1, Repeat::Safe, || {
                        let token = token.clone();
                        async move {
                            let mut call = c.calendar.acl().list(calendar).max_results(250);
                            if let Some(s) = sync_token {
                                call = call.sync_token(s);
                            }
                            if let Some(t) = &token {
                                call = call.page_token(t);
                            }
                            hub_call!(call)
                        }
                    })
                    .await
                    .map_err(|e| super::expired_token(sync_token, e))
            },
            |acl: Acl| {
                for rule in acl.items.iter().flatten() {
                    let scope = rule.scope.clone().unwrap_or_default();
                    entries.push(AclEntry {
                        id: rule.id.clone().unwrap_or_default(),
                        role: rule.role.clone().unwrap_or_default(),
                        scope_type: scope.type_.unwrap_or_default(),
                        scope_value: scope.value,
                    });
                }
                match acl.next_page_token {
                    Some(next) => ControlFlow::Continue(next),
                    None => ControlFlow::Break(acl.next_sync_token),
                }
            },
        )
        .await
        .map(|next_sync_token| AclListing {
            entries,
            next_sync_token,
            full: sync_token.is_none(),
        })
    }

    async fn delete_acl(
        &self,
        user: &GoogleUser,
        calendar: &str,
        rule: &str,
    ) -> Result<bool, RemoteError> {
        let c = self.clients(user).await?;
        let result = self
            .policy
            .run(&c.calendar_pacer, 1, Repeat::Safe, || async {
                let (result, capture) = hub_send!(c.calendar.acl().delete(calendar, rule));
                result.map(|_| ()).map_err(|e| hub_failure(e, capture))
            })
            .await;
        not_found_is_gone(result)
    }

    async fn release_credentials(
        &self,
        user: &GoogleUser,
    ) -> Result<CredentialRelease, RemoteError> {
        let Some(c) = self.cached_clients(user).await else {
            return Ok(CredentialRelease::NoneHeld);
        };
        let url = revoke_url(&self.key.token_uri);
        let outcome =
            self.policy
                .run(&c.calendar_pacer, 1, Repeat::Safe, || {
                    let url = url.clone();
                    let c = &c;
                    async move {
                        let token = c.auth.access_token().await.map_err(|e| {
                            Failure::from(crate::google::classify::classify_auth(&e))
                        })?;
                        let response = self
                            .http
                            .post(&url)
                            .form(&[("token", token.as_str())])
                            .send()
                            .await
                            .map_err(|e| super::reqwest_failure(&e))?;
                        let status = response.status().as_u16();
                        let retry_after = retry_after_header(response.headers());
                        let body = response
                            .bytes()
                            .await
                            .map_err(|e| super::reqwest_failure(&e))?;
                        match status {
                            200..=299 => Ok(CredentialRelease::AccessTokenRevoked),
                            // invalid_token: expired or already revoked.
                            400 => Ok(CredentialRelease::AlreadyInvalid),
                            _ => Err(Failure::from(classify_http(status, &body, retry_after))),
                        }
                    }
                })
                .await?;
        self.users.lock().await.remove(&user.account);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_lines_name_the_user() {
        assert_eq!(
            marker_user(Some("Kept by crmsync.\ncrmsync:erin")),
            Some("erin".into())
        );
        assert_eq!(marker_user(Some("crmsync: ")), None);
        assert_eq!(marker_user(Some("my calendar")), None);
        assert_eq!(marker_user(None), None);
    }

    #[test]
    fn the_revoke_url_sits_next_to_the_token_url() {
        assert_eq!(
            revoke_url("https://oauth2.googleapis.com/token"),
            "https://oauth2.googleapis.com/revoke"
        );
        assert_eq!(
            revoke_url("http://127.0.0.1:9/token"),
            "http://127.0.0.1:9/revoke"
        );
    }
}
