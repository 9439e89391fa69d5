//! Human rendering of run reports (the CLI prints JSON itself with `--json`).

use super::engine::{RunReport, UserStatus};
use crate::revoke::run::RevocationOutcome;
use std::fmt::Write;

/// A table of users with what happened to each, then messages, errors and (dry runs) plans.
pub fn render(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}: {} CRM change(s) mirrored.",
        if report.dry_run { "Dry run" } else { "Run" },
        report.run_id,
        report.crm_changes
    );
    for p in &report.crm_problems {
        let _ = writeln!(out, "  ! {p}");
    }
    let _ = writeln!(
        out,
        "{:<10} {:<8} {:>7} {:>7} {:>7} {:>6} {:>7} {:>8} {:>8} {:>9} {:>6}",
        "user",
        "status",
        "created",
        "updated",
        "deleted",
        "linked",
        "written",
        "imported",
        "reverted",
        "conflicts",
        "errors"
    );
    for u in &report.users {
        let t = u.total();
        let _ = writeln!(
            out,
            "{:<10} {:<8} {:>7} {:>7} {:>7} {:>6} {:>7} {:>8} {:>8} {:>9} {:>6}",
            u.user.as_str(),
            UserStatus::as_str(u.status),
            t.created,
            t.updated,
            t.deleted,
            t.linked,
            t.written_back,
            t.imported,
            t.reverted,
            t.conflicts,
            t.errors
        );
    }
    for u in &report.users {
        for r in &u.revocations {
            let _ = writeln!(
                out,
                "  {}: {} from {} ({}): {} contact(s) deleted, {} given back as the user's own, \
                 {} calendar(s) and {} group(s) deleted{}",
                u.user,
                match r.outcome {
                    RevocationOutcome::Done => "revoked",
                    RevocationOutcome::Planned => "would revoke",
                    RevocationOutcome::Paused => "revocation paused",
                    RevocationOutcome::Incomplete => "revocation not finished",
                    RevocationOutcome::NothingToRevoke => "nothing to revoke",
                },
                r.account,
                r.reason,
                r.contacts_deleted.len(),
                r.contacts_released.len(),
                r.calendars_deleted.len(),
                r.groups_deleted.len(),
                match &r.verification {
                    Some(v) if v.is_clean() => "; verified: nothing of ours remains",
                    Some(_) => "; verification found leftovers",
                    None => "",
                }
            );
        }
        if let Some(m) = &u.message {
            let _ = writeln!(out, "  {}: {m}", u.user);
        }
        for e in &u.errors {
            let _ = writeln!(
                out,
                "  {}: {} {} failed: {}",
                u.user,
                e.kind,
                e.record
                    .as_deref()
                    .or(e.google_id.as_deref())
                    .unwrap_or("?"),
                e.error
            );
        }
        for line in &u.plan {
            let _ = writeln!(
                out,
                "  {} {:?} {} \"{}\"{}{}",
                u.user,
                line.case,
                line.record.as_deref().unwrap_or("(phone item)"),
                line.label,
                line.google
                    .as_deref()
                    .map(|g| format!(" google: {g}"))
                    .unwrap_or_default(),
                line.crm
                    .as_deref()
                    .map(|c| format!(" crm: {c}"))
                    .unwrap_or_default(),
            );
            for d in &line.diff {
                for l in d.lines() {
                    let _ = writeln!(out, "      {l}");
                }
            }
        }
    }
    out
}
