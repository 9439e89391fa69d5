//! The calendar leak guard: the dedicated calendar must not be shared beyond its owner (a
//! shared calendar would show other people what the CRM lets only this user read).
//!
//! A pass lists the calendar's ACL when the check is due ([`check_due`]): once per user's
//! turn of `sync.acl_check_minutes` (the worker's phone-poll grid; 0 = every pass), and on
//! every pass while no clean check is recorded. The listing is incremental — the ACL's own
//! sync token (stored per user, dropped when the calendar changes) — so a check where nobody
//! touched the sharing costs one small call; a full listing happens on the first pass, after
//! a 410, and while a user is paused. Entries beyond the owner are removed and audited
//! (`acl_guard = "remove"`, the default), or the user's sync is paused while they exist
//! (`acl_guard = "pause"`).

use super::remote::{AclEntry, AclListing, Offboarding};
use crate::model::UserId;
use crate::store::{StateDb, StoreError};
use crate::sync::remote::{GoogleUser, RemoteError, RemoteErrorKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What the guard does with entries beyond the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AclGuardMode {
    /// Remove them (and audit each).
    #[default]
    Remove,
    /// Leave them, audit, and pause the user's sync until they are gone.
    Pause,
}

/// Entries of a listing that share the calendar beyond its owner: live rules other than the
/// account's own owner entry (and the calendar's own identity, which Google may list as an
/// owner of a secondary calendar).
pub fn foreign_entries(listing: &AclListing, account: &str, calendar: &str) -> Vec<AclEntry> {
    let own = |e: &AclEntry| {
        e.role == "owner"
            && e.scope_type == "user"
            && e.scope_value.as_deref().is_some_and(|v| {
                v.eq_ignore_ascii_case(account) || v.eq_ignore_ascii_case(calendar)
            })
    };
    listing
        .entries
        .iter()
        .filter(|e| !e.is_deleted() && !own(e))
        .cloned()
        .collect()
}

/// Whether the guard lists `user`'s calendar ACL in a pass at `now`: always without a
/// stored token or time of the last clean check (the first pass, a new calendar, a pause, a
/// failure), else once a turn of `period` (staggered per user, see [`crate::sync::turns`])
/// passed since that check; a zero `period` means every pass.
pub fn check_due(
    user: &UserId,
    token: Option<&str>,
    checked_at: Option<&str>,
    period: Duration,
    now: DateTime<Utc>,
) -> bool {
    let last = checked_at
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .map(|t| t.with_timezone(&Utc));
    match (token, last) {
        (Some(_), Some(last)) => {
            period.is_zero() || crate::sync::turns::turn_passed(user, Some(last), period, now)
        }
        _ => true,
    }
}

/// How the guard left a user's calendar.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AclOutcome {
    /// Entries removed in this pass.
    pub removed: Vec<AclEntry>,
    /// Set when the user's pass must not go on (pause mode with foreign entries, or an
    /// entry that could not be removed).
    pub paused: Option<String>,
}

/// Checks `calendar`'s ACL for `user` and acts per `mode`. Google failures other than an
/// expired token are returned (the pass reports them); the ACL token, and `now` as the
/// time of the check, are stored only when the calendar is clean.
#[allow(clippy::too_many_arguments)]
pub async fn guard_calendar<R: Offboarding>(
    remote: &R,
    state: &StateDb,
    user: &GoogleUser,
    calendar: &str,
    token: Option<&str>,
    mode: AclGuardMode,
    run_id: &str,
    now: &str,
) -> Result<Result<AclOutcome, RemoteError>, StoreError> {
    let listing = match remote.list_acl(user, calendar, token).await {
        Err(e) if e.kind == RemoteErrorKind::SyncTokenExpired && token.is_some() => {
            remote.list_acl(user, calendar, None).await
        }
        other => other,
    };
    let listing = match listing {
        Ok(l) => l,
        Err(e) => return Ok(Err(e)),
    };
    let foreign = foreign_entries(&listing, &user.account, calendar);
    let mut outcome = AclOutcome::default();
    match mode {
        AclGuardMode::Pause if !foreign.is_empty() => {
            let shared: Vec<String> = foreign.iter().map(|e| e.id.clone()).collect();
            state.write(|w| {
                w.audit(
                    run_id,
                    Some(&user.user),
                    None,
                    "acl_paused",
                    &serde_json::json!({"calendar": calendar, "entries": foreign}),
                )
            })?;
            outcome.paused = Some(format!(
                "paused: the CRM calendar is shared with {} (acl_guard = \"pause\"); remove the \
                 sharing to resume",
                shared.join(", ")
            ));
            // No token: while paused, every pass looks at the whole ACL again.
            state.set_acl_checked(&user.user, None)?;
            return Ok(Ok(outcome));
        }
        AclGuardMode::Pause | AclGuardMode::Remove => {}
    }
    let mut failed = Vec::new();
    for entry in foreign {
        match remote.delete_acl(user, calendar, &entry.id).await {
            Ok(_) => {
                state.write(|w| {
                    w.audit(
                        run_id,
                        Some(&user.user),
                        None,
                        "acl_removed",
                        &serde_json::json!({"calendar": calendar, "entry": entry}),
                    )
                })?;
                outcome.removed.push(entry);
            }
            Err(e) => failed.push(format!("{}: {e}", entry.id)),
        }
    }
    if failed.is_empty() {
        let checked = listing.next_sync_token.as_deref().map(|t| (t, now));
        state.set_acl_checked(&user.user, checked)?;
    } else {
        state.set_acl_checked(&user.user, None)?;
        outcome.paused = Some(format!(
            "paused: the CRM calendar is shared and the sharing could not be removed ({})",
            failed.join("; ")
        ));
    }
    Ok(Ok(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(id: &str, role: &str) -> AclEntry {
        let (scope_type, scope_value) = match id.split_once(':') {
            Some((t, v)) => (t.to_owned(), Some(v.to_owned())),
            None => (id.to_owned(), None),
        };
        AclEntry {
            id: id.into(),
            role: role.into(),
            scope_type,
            scope_value,
        }
    }

    #[test]
    fn everything_but_the_owner_is_foreign() {
        let listing = AclListing {
            entries: vec![
                entry("user:erin@acme.example", "owner"),
                entry("user:cal1@group.calendar.google.com", "owner"),
                entry("user:spy@acme.example", "reader"),
                entry("user:boss@acme.example", "owner"),
                entry("domain:acme.example", "freeBusyReader"),
                entry("default", "reader"),
                entry("user:gone@acme.example", "none"),
            ],
            next_sync_token: None,
            full: true,
        };
        let foreign: Vec<String> = foreign_entries(
            &listing,
            "Erin@acme.example",
            "cal1@group.calendar.google.com",
        )
        .into_iter()
        .map(|e| e.id)
        .collect();
        assert_eq!(
            foreign,
            [
                "user:spy@acme.example",
                "user:boss@acme.example",
                "domain:acme.example",
                "default"
            ]
        );
    }

    #[test]
    fn the_check_is_due_without_a_clean_check_and_once_per_turn_after_one() {
        let erin = UserId::new("erin").unwrap();
        let period = Duration::from_secs(600);
        let at = Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap();
        let token = Some("t1");
        let stamp = at.to_rfc3339();
        let checked = Some(stamp.as_str());
        let due = |token, checked, period, now| check_due(&erin, token, checked, period, now);
        // Nothing stored, no token, an unreadable time: every pass.
        assert!(due(None, None, period, at));
        assert!(due(None, checked, period, at));
        assert!(due(token, None, period, at));
        assert!(due(token, Some("yesterday"), period, at));
        // Checked: not again within the turn; once the next one came, yes.
        assert!(!due(token, checked, period, at));
        let next = (1..=600)
            .map(|s| at + chrono::Duration::seconds(s))
            .find(|t| due(token, checked, period, *t))
            .expect("a turn comes within one period");
        assert!(next <= at + chrono::Duration::minutes(10));
        assert!(!due(
            token,
            checked,
            period,
            next - chrono::Duration::seconds(1)
        ));
        // A zero period: every pass.
        assert!(due(token, checked, Duration::ZERO, at));
    }
}
