//! `crmsync revoke USER [--dry-run]` and `crmsync audit undo ID`.

use super::state_access::{open_crm, StateAccess, ADMIN_WAIT};
use super::sync_cmd::tokio_runtime;
use super::{runtime, usage, CmdResult, Output, RevokeArgs};
use crmsync::config::Config;
use crmsync::google::remote::GoogleRemote;
use crmsync::model::UserId;
use crmsync::revoke::run::{RevocationOutcome, RevocationReport, RevokeOptions};
use crmsync::sync::engine::{new_run_id, Engine, EngineError};
use crmsync::sync::undo::{undo_write_back, UndoError};
use std::cell::RefCell;
use std::fmt::Write;

pub fn revoke(config: &Config, out: &Output, access: &StateAccess, args: RevokeArgs) -> CmdResult {
    let user = UserId::new(args.user.as_str())
        .map_err(|e| usage(anyhow::anyhow!("user {:?}: {e}", args.user)))?;
    // One writer, as for `sync`: a dry run writes nothing and takes no lock.
    let (_guard, state) = if args.dry_run {
        (None, access.open_for_read(config)?)
    } else {
        let (guard, state) = access.open_for_write(config, "revoke", ADMIN_WAIT)?;
        (Some(guard), state)
    };
    let crm = if args.dry_run {
        open_crm(config)?
    } else {
        access.open_crm_for_sync(config, &state)?
    };
    let rt = tokio_runtime()?;
    let report = rt.block_on(async {
        let remote = GoogleRemote::from_config(&config.google, &config.sync)
            .await
            .map_err(usage)?;
        let engine = Engine {
            config,
            state: &state,
            crm: RefCell::new(crm),
            remote: &remote,
            now: chrono::Utc::now(),
        };
        engine
            .revoke_now(
                &user,
                &RevokeOptions {
                    dry_run: args.dry_run,
                },
            )
            .await
            .map_err(|e| match e {
                EngineError::UnknownUser(_) => usage(e),
                other => runtime(other),
            })
    })?;
    out.emit(&report, || render(&report))?;
    match report.outcome {
        RevocationOutcome::Done
        | RevocationOutcome::Planned
        | RevocationOutcome::NothingToRevoke => Ok(()),
        RevocationOutcome::Incomplete | RevocationOutcome::Paused => Err(runtime(anyhow::anyhow!(
            "the revocation of {} is not finished; it stays queued and the next sync goes on",
            report.user
        ))),
    }
}

fn render(r: &RevocationReport) -> String {
    let mut s = String::new();
    let verb = match r.outcome {
        RevocationOutcome::Planned => "Would revoke",
        RevocationOutcome::Done => "Revoked",
        RevocationOutcome::Incomplete => "Not finished revoking",
        RevocationOutcome::Paused => "Paused revoking",
        RevocationOutcome::NothingToRevoke => "Nothing to revoke for",
    };
    let _ = writeln!(s, "{verb} {} from {} ({}).", r.user, r.account, r.reason);
    if let Some(m) = &r.message {
        let _ = writeln!(s, "  {m}");
    }
    let would = if r.outcome == RevocationOutcome::Planned {
        "to delete"
    } else {
        "deleted"
    };
    let _ = writeln!(
        s,
        "  contacts crmsync created {would}: {}",
        r.contacts_deleted.len()
    );
    for c in &r.contacts_released {
        let name = c
            .record
            .as_deref()
            .or(c.google_id.as_deref())
            .unwrap_or("?");
        let how = if r.outcome == RevocationOutcome::Planned {
            "to restore (or strip where the phone changed it)".to_owned()
        } else if !c.kept_phone_edits.is_empty() {
            format!(
                "stripped of crmsync; the phone's edits to {} were kept",
                c.kept_phone_edits.join(", ")
            )
        } else if c.stripped_only {
            "stripped of crmsync (no pre-link snapshot)".to_owned()
        } else {
            "restored to how it was before crmsync".to_owned()
        };
        let _ = writeln!(s, "  the user's own contact {name}: {how}");
    }
    let _ = writeln!(
        s,
        "  calendars {would}: {}; contact groups {would}: {}",
        list(&r.calendars_deleted),
        list(&r.groups_deleted)
    );
    if let Some(v) = &r.verification {
        let _ = writeln!(
            s,
            "  verified at {}: {}",
            v.at,
            if v.is_clean() {
                "nothing marked by crmsync remains".to_owned()
            } else {
                format!("left: {v:?}")
            }
        );
    }
    if let Some(c) = &r.credentials {
        let _ = writeln!(s, "  credentials: {c:?}");
    }
    for e in &r.errors {
        let _ = writeln!(s, "  ! {e}");
    }
    s
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

pub fn undo(config: &Config, out: &Output, access: &StateAccess, id: i64) -> CmdResult {
    let (_guard, state) = access.open_for_write(config, "audit undo", ADMIN_WAIT)?;
    let mut crm = access.open_crm_for_sync(config, &state)?;
    match undo_write_back(&state, crm.as_mut(), id, &new_run_id()) {
        Ok(done) => out.emit(&done, || {
            format!(
                "Undid audit line {}: {} is back to {} (version {}). The next sync pushes it to \
                 the phones.\n",
                done.audit_id, done.record, done.restored, done.version
            )
        }),
        Err(e @ (UndoError::Store(_) | UndoError::Crm(_))) => Err(runtime(e)),
        Err(refused) => {
            if out.json {
                let value = serde_json::json!({"audit_id": id, "undone": false, "why": refused.to_string()});
                let _ = out.emit(&value, String::new);
            }
            Err(runtime(anyhow::anyhow!("not undone: {refused}")))
        }
    }
}
