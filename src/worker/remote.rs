//! Google as the worker's passes see it: the real [`Remote`] wrapped to count every call
//! (by endpoint and outcome, for `/metrics`) and to notice when Google is unreachable for
//! everyone.
//!
//! **Early stop.** Within a cycle, once `unreachable_after` different users have had a
//! call fail with a transport or authentication error (after the retry policy gave up)
//! and no call of the cycle has succeeded, the circuit opens: every further call fails at
//! once without reaching Google, and the worker's pass stops starting users. Users failed
//! this way are owed a pass but get no per-user backoff (the outage is not theirs); the
//! worker backs off as a whole instead.

use super::metrics::Metrics;
use crate::model::{SyncedContact, SyncedEvent, UserId};
use crate::revoke::remote::{
    AclListing, CredentialRelease, MarkedCalendar, MarkedGroup, Offboarding,
};
use crate::sync::remote::{
    BatchResult, ContactOp, EventOp, GoogleUser, Listing, Remote, RemoteChange, RemoteError,
    RemoteErrorKind,
};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Circuit {
    successes: usize,
    unreachable_users: BTreeSet<UserId>,
    open: bool,
    users_called: BTreeSet<UserId>,
}

/// The observed remote.
pub struct Observed<R> {
    inner: R,
    metrics: Arc<Metrics>,
    unreachable_after: usize,
    circuit: Mutex<Circuit>,
}

/// The error calls get once the circuit is open.
pub const CIRCUIT_OPEN: &str = "Google is unreachable for everyone this cycle; not called";

fn status_of(kind: RemoteErrorKind) -> &'static str {
    match kind {
        RemoteErrorKind::NotFound => "not_found",
        RemoteErrorKind::PreconditionFailed => "precondition_failed",
        RemoteErrorKind::AlreadyExists => "already_exists",
        RemoteErrorKind::SyncTokenExpired => "sync_token_expired",
        RemoteErrorKind::RateLimited => "rate_limited",
        RemoteErrorKind::Transient => "transient",
        RemoteErrorKind::QuotaExceeded => "quota_exceeded",
        RemoteErrorKind::Unauthorized => "unauthorized",
        RemoteErrorKind::Permanent => "permanent",
    }
}

/// Whether an error says Google could not be reached at all (rather than refusing one
/// item): transport failures and refused credentials.
fn is_unreachable(kind: RemoteErrorKind) -> bool {
    matches!(
        kind,
        RemoteErrorKind::Transient | RemoteErrorKind::Unauthorized
    )
}

impl<R> Observed<R> {
    pub fn new(inner: R, metrics: Arc<Metrics>, unreachable_after: usize) -> Self {
        Self {
            inner,
            metrics,
            unreachable_after: unreachable_after.max(1),
            circuit: Mutex::new(Circuit::default()),
        }
    }

    pub fn inner(&self) -> &R {
        &self.inner
    }

    fn circuit<T>(&self, f: impl FnOnce(&mut Circuit) -> T) -> T {
        match self.circuit.lock() {
            Ok(mut c) => f(&mut c),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Starts a cycle: a closed circuit, nothing counted.
    pub fn begin_cycle(&self) {
        self.circuit(|c| *c = Circuit::default());
    }

    /// Whether this cycle found Google unreachable for everyone.
    pub fn is_open(&self) -> bool {
        self.circuit(|c| c.open)
    }

    /// Whether any call of this cycle succeeded.
    pub fn reached_google(&self) -> bool {
        self.circuit(|c| c.successes > 0)
    }

    /// Users whose calls failed as unreachable this cycle.
    pub fn unreachable_users(&self) -> BTreeSet<UserId> {
        self.circuit(|c| c.unreachable_users.clone())
    }

    /// Users for whom Google was called this cycle.
    pub fn users_called(&self) -> BTreeSet<UserId> {
        self.circuit(|c| c.users_called.clone())
    }

    fn note(&self, endpoint: &str, user: &UserId, outcome: Result<(), RemoteErrorKind>) {
        self.metrics.google_call(
            endpoint,
            match outcome {
                Ok(()) => "ok",
                Err(k) => status_of(k),
            },
        );
        self.circuit(|c| match outcome {
            Err(kind) if is_unreachable(kind) => {
                c.unreachable_users.insert(user.clone());
                if c.successes == 0 && c.unreachable_users.len() >= self.unreachable_after {
                    c.open = true;
                }
            }
            // Any answer from Google, even a refusal of one item, means it is reachable.
            _ => c.successes += 1,
        });
    }

    async fn call<T>(
        &self,
        endpoint: &'static str,
        user: &GoogleUser,
        call: impl Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        if self.is_open() {
            self.metrics.google_call(endpoint, "skipped");
            self.circuit(|c| {
                c.unreachable_users.insert(user.user.clone());
            });
            return Err(RemoteError::new(RemoteErrorKind::Transient, CIRCUIT_OPEN));
        }
        self.circuit(|c| {
            c.users_called.insert(user.user.clone());
        });
        let result = call.await;
        self.note(
            endpoint,
            &user.user,
            result.as_ref().map(|_| ()).map_err(|e| e.kind),
        );
        result
    }

    /// A batch: each op's answer counts as one call (as Google's quota counts them).
    async fn batch<T>(
        &self,
        endpoint: &'static str,
        user: &GoogleUser,
        call: impl Future<Output = BatchResult<T>>,
    ) -> BatchResult<T> {
        if self.is_open() {
            self.metrics.google_call(endpoint, "skipped");
            return Err(RemoteError::new(RemoteErrorKind::Transient, CIRCUIT_OPEN));
        }
        self.circuit(|c| {
            c.users_called.insert(user.user.clone());
        });
        match call.await {
            Err(e) => {
                self.note(endpoint, &user.user, Err(e.kind));
                Err(e)
            }
            Ok(results) => {
                for r in &results {
                    self.metrics.google_call(
                        endpoint,
                        r.result
                            .as_ref()
                            .map_or_else(|e| status_of(e.kind), |_| "ok"),
                    );
                }
                // Google answered the batch: it is reachable.
                self.circuit(|c| c.successes += 1);
                Ok(results)
            }
        }
    }
}

impl<R: Remote> Remote for Observed<R> {
    async fn ensure_calendar(
        &self,
        user: &GoogleUser,
        name: &str,
        known: Option<&str>,
    ) -> Result<String, RemoteError> {
        self.call(
            "calendar.ensure",
            user,
            self.inner.ensure_calendar(user, name, known),
        )
        .await
    }

    async fn ensure_group(
        &self,
        user: &GoogleUser,
        name: &str,
        known: Option<&str>,
    ) -> Result<String, RemoteError> {
        self.call(
            "contact_group.ensure",
            user,
            self.inner.ensure_group(user, name, known),
        )
        .await
    }

    async fn list_events(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: Option<&str>,
    ) -> Result<Listing<SyncedEvent>, RemoteError> {
        let endpoint = if sync_token.is_some() {
            "events.list_incremental"
        } else {
            "events.list_full"
        };
        self.call(
            endpoint,
            user,
            self.inner.list_events(user, calendar, sync_token),
        )
        .await
    }

    async fn scan_events(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: &str,
        keep: &mut dyn FnMut(Vec<RemoteChange<SyncedEvent>>) -> bool,
    ) -> Result<Option<String>, RemoteError> {
        self.call(
            "events.list_incremental",
            user,
            self.inner.scan_events(user, calendar, sync_token, keep),
        )
        .await
    }

    async fn get_event(
        &self,
        user: &GoogleUser,
        calendar: &str,
        id: &str,
    ) -> Result<RemoteChange<SyncedEvent>, RemoteError> {
        self.call("events.get", user, self.inner.get_event(user, calendar, id))
            .await
    }

    async fn event_ops(
        &self,
        user: &GoogleUser,
        calendar: &str,
        ops: &[EventOp],
    ) -> BatchResult<SyncedEvent> {
        self.batch(
            "events.write",
            user,
            self.inner.event_ops(user, calendar, ops),
        )
        .await
    }

    async fn list_contacts(
        &self,
        user: &GoogleUser,
        group: &str,
        sync_token: Option<&str>,
    ) -> Result<Listing<SyncedContact>, RemoteError> {
        let endpoint = if sync_token.is_some() {
            "contacts.list_incremental"
        } else {
            "contacts.list_full"
        };
        self.call(
            endpoint,
            user,
            self.inner.list_contacts(user, group, sync_token),
        )
        .await
    }

    async fn scan_contacts(
        &self,
        user: &GoogleUser,
        group: &str,
        sync_token: &str,
        keep: &mut dyn FnMut(Vec<RemoteChange<SyncedContact>>) -> bool,
    ) -> Result<Option<String>, RemoteError> {
        self.call(
            "contacts.list_incremental",
            user,
            self.inner.scan_contacts(user, group, sync_token, keep),
        )
        .await
    }

    async fn get_contact(
        &self,
        user: &GoogleUser,
        group: &str,
        resource: &str,
    ) -> Result<RemoteChange<SyncedContact>, RemoteError> {
        self.call(
            "contacts.get",
            user,
            self.inner.get_contact(user, group, resource),
        )
        .await
    }

    async fn contact_ops(
        &self,
        user: &GoogleUser,
        group: &str,
        ops: &[ContactOp],
    ) -> BatchResult<SyncedContact> {
        self.batch(
            "contacts.write",
            user,
            self.inner.contact_ops(user, group, ops),
        )
        .await
    }
}

impl<R: Offboarding> Offboarding for Observed<R> {
    async fn marked_calendars(
        &self,
        user: &GoogleUser,
    ) -> Result<Vec<MarkedCalendar>, RemoteError> {
        self.call(
            "calendar_list.list",
            user,
            self.inner.marked_calendars(user),
        )
        .await
    }

    async fn delete_calendar(
        &self,
        user: &GoogleUser,
        calendar: &str,
    ) -> Result<bool, RemoteError> {
        self.call(
            "calendars.delete",
            user,
            self.inner.delete_calendar(user, calendar),
        )
        .await
    }

    async fn marked_groups(&self, user: &GoogleUser) -> Result<Vec<MarkedGroup>, RemoteError> {
        self.call("contact_groups.list", user, self.inner.marked_groups(user))
            .await
    }

    async fn delete_group(&self, user: &GoogleUser, group: &str) -> Result<bool, RemoteError> {
        self.call(
            "contact_groups.delete",
            user,
            self.inner.delete_group(user, group),
        )
        .await
    }

    async fn list_acl(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: Option<&str>,
    ) -> Result<AclListing, RemoteError> {
        self.call(
            "acl.list",
            user,
            self.inner.list_acl(user, calendar, sync_token),
        )
        .await
    }

    async fn delete_acl(
        &self,
        user: &GoogleUser,
        calendar: &str,
        rule: &str,
    ) -> Result<bool, RemoteError> {
        self.call(
            "acl.delete",
            user,
            self.inner.delete_acl(user, calendar, rule),
        )
        .await
    }

    async fn release_credentials(
        &self,
        user: &GoogleUser,
    ) -> Result<CredentialRelease, RemoteError> {
        self.call("oauth.revoke", user, self.inner.release_credentials(user))
            .await
    }
}
