//! What the engine tells the logs: `tracing` events and spans for a run (start, end), each
//! user's pass (a `user_pass` span; its end with counts, status and duration), the delete
//! breaker and item errors.
//!
//! Events carry ids, counts, kinds, statuses and durations only — never a token, a key, an
//! e-mail address, a phone number, a name or a Google error's text (which may echo any of
//! them): those stay in the run report and the audit, which are meant to hold them.

use super::engine::{Engine, EngineError, RunReport, SyncOptions, UserReport, UserStatus};
use super::remote::Remote;
use crate::model::{ObjectKind, User, UserId};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// A run begins.
pub fn run_started(run_id: &str, users: usize, crm_changes: usize, dry_run: bool) {
    tracing::info!(run_id, users, crm_changes, dry_run, "sync run started");
}

/// A run ended: how many users ended in each status, and how long it took.
pub fn run_finished(report: &RunReport, elapsed: Duration) {
    let count = |s: UserStatus| report.users.iter().filter(|u| u.status == s).count();
    tracing::info!(
        run_id = %report.run_id,
        users = report.users.len(),
        synced = count(UserStatus::Synced),
        partial = count(UserStatus::Partial),
        refused = count(UserStatus::Refused),
        failed = count(UserStatus::Failed),
        planned = count(UserStatus::Planned),
        duration_ms = elapsed.as_millis() as u64,
        "sync run finished"
    );
}

/// The breaker refused a user's plan.
pub fn breaker_refused(user: &UserId, kind: ObjectKind, deletions: usize, linked: usize) {
    tracing::warn!(
        user = %user,
        kind = %kind,
        deletions,
        linked,
        "delete breaker refused the user's plan"
    );
}

/// A user's pass ended.
pub fn user_pass_finished(report: &UserReport, elapsed: Duration) {
    let t = report.total();
    let user = report.user.as_str();
    let status = format!("{:?}", report.status).to_lowercase();
    let duration_ms = elapsed.as_millis() as u64;
    let errors = report.errors.len();
    macro_rules! pass_event {
        ($level:ident, $message:literal) => {
            tracing::$level!(
                user,
                status,
                created = t.created,
                updated = t.updated,
                deleted = t.deleted,
                written_back = t.written_back,
                imported = t.imported,
                conflicts = t.conflicts,
                duplicates_removed = t.duplicates_removed,
                errors,
                duration_ms,
                $message
            )
        };
    }
    match report.status {
        UserStatus::Failed | UserStatus::Refused => {
            pass_event!(warn, "user pass did not complete (see the run report)")
        }
        _ => pass_event!(info, "user pass finished"),
    }
    for e in &report.errors {
        tracing::debug!(
            user,
            kind = %e.kind,
            record = e.record.as_deref().unwrap_or(""),
            google_id = e.google_id.as_deref().unwrap_or(""),
            "item failed (see the run report)"
        );
    }
}

impl<R: Remote + crate::revoke::remote::Offboarding> Engine<'_, R> {
    /// One user's pass inside a `user_pass` span, with its end logged.
    pub(crate) async fn observed_user_pass(
        &self,
        lazy: &crate::sync::pass_model::PassModel<'_>,
        user: &User,
        options: &SyncOptions,
        run_id: &str,
    ) -> Result<UserReport, EngineError> {
        let span = tracing::info_span!("user_pass", user = %user.id, run_id);
        async {
            let started = Instant::now();
            let pass = self.user_pass(lazy, user, options, run_id).await;
            match &pass {
                Ok(report) => user_pass_finished(report, started.elapsed()),
                Err(e) => tracing::error!(
                    user = %user.id,
                    error_kind = error_kind(e),
                    "user pass stopped the run (see the command's error)"
                ),
            }
            pass
        }
        .instrument(span)
        .await
    }
}

/// The kind of a run-stopping error, for logs (its text may quote CRM data).
fn error_kind(e: &EngineError) -> &'static str {
    match e {
        EngineError::Store(s) if s.is_busy() => "state_db_busy",
        EngineError::Store(_) => "state_db",
        EngineError::Mirror(_) => "crm_mirror",
        EngineError::UnknownUser(_) => "unknown_user",
    }
}
