//! `crmsync init`, `status` and `audit`: creating the state DB, and the operator's views of it.

use super::state_access::{StateAccess, ADMIN_WAIT};
use super::{runtime, usage, AuditArgs, CmdResult, Output};
use chrono::{DateTime, Utc};
use crmsync::config::Config;
use crmsync::crm::OrgModel;
use crmsync::model::{RecordRef, UserId};
use crmsync::revoke::RevocationState;
use crmsync::store::lock::WriterLock;
use crmsync::store::{StateDb, SyncUser};
use serde::Serialize;
use std::collections::BTreeMap;

/// `crmsync init`: creates the state DB; on an existing one, a no-op that says so (it still
/// applies migrations a newer binary brings).
pub fn init(config: &Config, out: &Output, access: &StateAccess) -> CmdResult {
    let path = &config.state.path;
    let existed = path.exists();
    if existed {
        // Refuse (exit 2) anything that is not a crmsync state DB before touching it.
        StateDb::open_existing_with(path, config.state.busy_timeout()).map_err(runtime)?;
    }
    let creating = StateAccess {
        init: true,
        ..*access
    };
    let (_guard, state) = creating.open_for_write(config, "init", ADMIN_WAIT)?;
    let version = state.schema_version().map_err(runtime)?;
    let value = serde_json::json!({
        "state": path.display().to_string(),
        "created": !existed,
        "schema_version": version,
    });
    out.emit(&value, || {
        if existed {
            format!(
                "The state DB {} exists already (schema version {version}); nothing to do.\n",
                path.display()
            )
        } else {
            format!(
                "Created the state DB {} (schema version {version}).\n",
                path.display()
            )
        }
    })
}

/// How a user stands, as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// Active, last pass succeeded recently.
    Ok,
    /// Active, no successful pass within `sync.stale_after_minutes`.
    Stale,
    /// Active with a Google account, never synced.
    NeverSynced,
    /// The last pass failed or left items failing (any user, pull-backs included).
    Failing,
    /// Inactive in the CRM (its items are pulled back by the next pass).
    Inactive,
    /// No longer in the CRM at all.
    Removed,
    /// Everything crmsync put into the account was removed and verified (`crmsync revoke`,
    /// deactivation, removal or an account change).
    Revoked,
    /// A revocation is queued (the next pass drains it).
    Revoking,
    /// A revocation is held by the mass-offboarding guard until `--force`.
    RevocationPaused,
}

impl UserState {
    /// Whether `status` exits 1 because of this user.
    fn needs_attention(self) -> bool {
        matches!(
            self,
            UserState::Stale
                | UserState::NeverSynced
                | UserState::Failing
                | UserState::RevocationPaused
        )
    }
}

/// One line of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub user: String,
    pub account: Option<String>,
    pub active: bool,
    /// Everything synced to the account was removed (and no revocation is open).
    pub revoked: bool,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
    /// An open revocation: its state (`queued` / `paused`), reason, account and why paused.
    pub revocation: Option<serde_json::Value>,
    pub state: UserState,
    pub stale: bool,
    pub last_success_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub links: BTreeMap<String, i64>,
}

/// The rows of `status`: every user the mirror or the sync bookkeeping knows.
pub fn status_rows(
    state: &StateDb,
    model: &OrgModel,
    stale_after: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Vec<StatusRow>, crmsync::store::StoreError> {
    let synced: BTreeMap<String, SyncUser> = state
        .sync_users()?
        .into_iter()
        .map(|s| (s.user_id.clone(), s))
        .collect();
    let mut ids: Vec<String> = model
        .users
        .values()
        .filter(|u| u.google_account.is_some())
        .map(|u| u.id.to_string())
        .chain(synced.keys().cloned())
        .collect();
    ids.sort();
    ids.dedup();
    let open_revocations = state.open_revocations()?;
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        let user = UserId::new(id.as_str())
            .ok()
            .and_then(|u| model.users.get(&u));
        let sync = synced.get(&id);
        let last_success = sync
            .and_then(|s| s.last_success_at.as_deref())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        let stale = last_success.is_none_or(|t| now.signed_duration_since(t) > stale_after);
        let active = user.is_some_and(|u| u.active);
        let failing = sync.is_some_and(|s| s.last_error.is_some());
        let pending = open_revocations.iter().find(|r| r.user_id == id);
        let revoked = sync.is_some_and(|s| s.revoked_at.is_some()) && pending.is_none();
        let state_of = match (user, sync) {
            _ if pending.is_some_and(|r| r.state == RevocationState::Paused) => {
                UserState::RevocationPaused
            }
            _ if pending.is_some() => UserState::Revoking,
            _ if revoked && !user.is_some_and(|u| u.active) => UserState::Revoked,
            _ if failing => UserState::Failing,
            (None, _) => UserState::Removed,
            (Some(u), _) if !u.active => UserState::Inactive,
            (Some(_), None) => UserState::NeverSynced,
            (Some(_), Some(_)) if stale => UserState::Stale,
            (Some(_), Some(_)) => UserState::Ok,
        };
        let links = match UserId::new(id.as_str()) {
            Ok(u) => state.link_counts(&u)?,
            Err(_) => BTreeMap::new(),
        }
        .into_iter()
        .map(|((kind, st), n)| (format!("{kind}_{st}"), n))
        .collect();
        rows.push(StatusRow {
            account: sync
                .map(|s| s.google_account.clone())
                .or_else(|| user.and_then(|u| u.google_account.clone())),
            user: id,
            active,
            revoked,
            revoked_at: sync.and_then(|s| s.revoked_at.clone()),
            revoked_reason: sync.and_then(|s| s.revoked_reason.clone()),
            revocation: pending.map(|r| {
                serde_json::json!({"state": r.state, "reason": r.reason,
                    "account": r.account, "why": r.paused_reason})
            }),
            state: state_of,
            stale: active && stale && !revoked,
            last_success_at: sync.and_then(|s| s.last_success_at.clone()),
            last_attempt_at: sync.and_then(|s| s.last_attempt_at.clone()),
            last_error: sync.and_then(|s| s.last_error.clone()),
            links,
        });
    }
    Ok(rows)
}

/// `crmsync status`: every user's standing; exits 1 when an active user is stale or never
/// synced, any user's last pass failed, or nothing was ever synced.
pub fn status(config: &Config, out: &Output, access: &StateAccess) -> CmdResult {
    let state = access.open_for_read(config)?;
    let model = state.load_org_model().map_err(runtime)?;
    let problems = state.mirror_problems().map_err(runtime)?;
    let stale_after = chrono::Duration::minutes(config.sync.stale_after_minutes as i64);
    let rows = status_rows(&state, &model, stale_after, Utc::now()).map_err(runtime)?;
    let writer = WriterLock::current_holder(&config.state.path)
        .ok()
        .flatten()
        .map(|h| h.map_or_else(|| "unrecorded".to_owned(), |h| h.to_string()));
    let attention = rows.iter().filter(|r| r.state.needs_attention()).count();
    // A state DB that never mirrored the CRM has synced nobody: not a healthy state either.
    let never_refreshed = state.crm_instance_id().map_err(runtime)?.is_none();
    let value = serde_json::json!({
        "ok": attention == 0 && !never_refreshed,
        "needs_attention": attention,
        "mirror_refreshed": !never_refreshed,
        "writer": writer,
        "users": rows,
        "crm_problems": problems,
    });
    out.emit(&value, || {
        let mut s = format!(
            "{:<10} {:<24} {:<12} {:<26} last error\n",
            "user", "account", "state", "last success"
        );
        for r in &rows {
            let state = serde_json::to_value(r.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            s.push_str(&format!(
                "{:<10} {:<24} {:<12} {:<26} {}\n",
                r.user,
                r.account.as_deref().unwrap_or(""),
                if r.revoked { "REVOKED" } else { &state },
                r.last_success_at.as_deref().unwrap_or("never"),
                r.last_error.as_deref().unwrap_or("")
            ));
        }
        if never_refreshed {
            s.push_str("The CRM was never mirrored: nothing is synced yet (run `crmsync sync`).\n");
        }
        if let Some(w) = &writer {
            s.push_str(&format!("writing now: {w}\n"));
        }
        for p in &problems {
            s.push_str(&format!("! {p}\n"));
        }
        s
    })?;
    if attention > 0 {
        return Err(runtime(anyhow::anyhow!(
            "{attention} user(s) failing, stale or never synced"
        )));
    }
    if never_refreshed {
        return Err(runtime(anyhow::anyhow!("nothing synced yet")));
    }
    Ok(())
}

/// `crmsync audit`: the trail, newest last. Unknown users and malformed records exit 2.
pub fn audit(config: &Config, out: &Output, access: &StateAccess, args: AuditArgs) -> CmdResult {
    let state = access.open_for_read(config)?;
    if let Some(user) = &args.user {
        let known_in_mirror = UserId::new(user.as_str()).ok().is_some_and(|u| {
            state
                .load_org_model()
                .map(|m| m.users.contains_key(&u))
                .unwrap_or(false)
        });
        let known = known_in_mirror
            || state
                .sync_users()
                .map_err(runtime)?
                .iter()
                .any(|s| &s.user_id == user)
            || !state
                .audit_entries(Some(user), None, 1)
                .map_err(runtime)?
                .is_empty();
        if !known {
            return Err(usage(anyhow::anyhow!(
                "unknown user {user:?}: not in the CRM mirror, never synced, nothing audited"
            )));
        }
    }
    if let Some(record) = &args.record {
        record
            .parse::<RecordRef>()
            .map_err(|e: String| usage(anyhow::anyhow!("--record {record:?}: {e}")))?;
    }
    let entries = state
        .audit_entries(args.user.as_deref(), args.record.as_deref(), args.limit)
        .map_err(runtime)?;
    out.emit(&entries, || {
        let mut s = String::new();
        for e in &entries {
            s.push_str(&format!(
                "{} {:<8} {:<18} {:<16} {}\n",
                e.at,
                e.user_id.as_deref().unwrap_or("-"),
                e.action,
                e.record.as_deref().unwrap_or("-"),
                e.detail
            ));
        }
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_problems_and_failures_need_attention() {
        for (state, attention) in [
            (UserState::Ok, false),
            (UserState::Stale, true),
            (UserState::NeverSynced, true),
            (UserState::Failing, true),
            (UserState::Inactive, false),
            (UserState::Removed, false),
        ] {
            assert_eq!(state.needs_attention(), attention, "{state:?}");
        }
    }
}
