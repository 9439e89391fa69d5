//! Who must be offboarded after a CRM change, and whether the mass-offboarding guard holds
//! it: a pure function of the mirrored CRM, the users crmsync syncs into, and the open
//! outbox rows.
//!
//! "One CRM change" is everything one mirror refresh brings in — all CRM changes between
//! two passes (one `crm load`, or one connector delta). If, in it, more than
//! `sync.max_offboarding_fraction` of the users crmsync currently syncs into would have
//! their Google data revoked (deactivated, removed, account changed or cleared), and more
//! than one user is concerned, those revocations are queued **paused** until a pass runs
//! with `--force`; offboarding one person is never paused. A paused revocation whose cause
//! went away (the user is active again with the same account — e.g. the bad load was
//! reverted) is cancelled.

use super::{Revocation, RevocationReason, RevocationState};
use crate::crm::OrgModel;
use crate::model::UserId;
use crate::store::SyncUser;
use serde::Serialize;

/// A revocation to queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewRevocation {
    pub user: String,
    pub account: String,
    pub reason: RevocationReason,
    /// Set when the guard holds it (the message says why).
    pub paused: Option<String>,
}

/// What to do with the outbox after a refresh.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    pub queue: Vec<NewRevocation>,
    /// Set when the guard tripped for this change (the message says why); users the run is
    /// forced for are queued unpaused all the same.
    pub paused: Option<String>,
    /// Paused revocations released by `--force`.
    pub unpause: Vec<i64>,
    /// Paused revocations whose cause went away.
    pub cancel: Vec<i64>,
}

fn same_account(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Why `row`'s account must be revoked under the CRM as it is now, if it must.
pub fn revocation_reason(model: &OrgModel, row: &SyncUser) -> Option<RevocationReason> {
    if !row.holds_data() {
        return None;
    }
    let Ok(id) = UserId::new(row.user_id.as_str()) else {
        return Some(RevocationReason::Removed);
    };
    let Some(user) = model.users.get(&id) else {
        return Some(RevocationReason::Removed);
    };
    if !user.active {
        return Some(RevocationReason::Deactivated);
    }
    match &user.google_account {
        None => Some(RevocationReason::AccountCleared),
        Some(account) if !same_account(account, &row.google_account) => {
            Some(RevocationReason::AccountChanged)
        }
        Some(_) => None,
    }
}

/// Decides the outbox changes for the CRM as mirrored now. `forced(user)` says whether this
/// run is forced (`--force`) for that user: every user, or just those the run names.
pub fn decide(
    model: &OrgModel,
    rows: &[SyncUser],
    open: &[Revocation],
    max_fraction: f64,
    forced: impl Fn(&str) -> bool,
) -> Decision {
    let is_open = |user: &str, account: &str| {
        open.iter()
            .any(|r| r.user_id == user && same_account(&r.account, account))
    };
    let mut decision = Decision::default();
    for row in rows {
        if let Some(reason) = revocation_reason(model, row) {
            if !is_open(&row.user_id, &row.google_account) {
                decision.queue.push(NewRevocation {
                    user: row.user_id.clone(),
                    account: row.google_account.clone(),
                    reason,
                    paused: None,
                });
            }
        }
    }
    let synced = rows.iter().filter(|r| r.holds_data()).count();
    let offboarded = decision.queue.len();
    if offboarded > 1 && offboarded as f64 > max_fraction * synced as f64 {
        let why = format!(
            "{offboarded} of {synced} synced users would lose their CRM data in one CRM change \
             (more than {:.0} %); their revocations are paused until `crmsync sync --force`",
            max_fraction * 100.0
        );
        for q in decision.queue.iter_mut().filter(|q| !forced(&q.user)) {
            q.paused = Some(why.clone());
        }
        decision.paused = Some(why);
    }
    for r in open.iter().filter(|r| r.state == RevocationState::Paused) {
        let cause_gone = UserId::new(r.user_id.as_str())
            .ok()
            .and_then(|id| model.users.get(&id))
            .is_some_and(|u| {
                u.active
                    && u.google_account
                        .as_deref()
                        .is_some_and(|a| same_account(a, &r.account))
            });
        if cause_gone && r.reason != RevocationReason::Manual {
            decision.cancel.push(r.id);
        } else if forced(&r.user_id) {
            decision.unpause.push(r.id);
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;

    fn user(id: &str, active: bool, account: Option<&str>) -> User {
        User {
            id: UserId::new(id).unwrap(),
            name: id.into(),
            email: format!("{id}@acme.example"),
            active,
            admin: false,
            profile: None,
            role: None,
            google_account: account.map(str::to_owned),
        }
    }

    fn row(id: &str) -> SyncUser {
        SyncUser {
            user_id: id.into(),
            google_account: format!("{id}@acme.example"),
            calendar_id: Some("cal".into()),
            group_resource: Some("contactGroups/g".into()),
            events_sync_token: None,
            contacts_sync_token: None,
            scope_fingerprint: None,
            last_attempt_at: None,
            last_success_at: None,
            last_error: None,
            revoked_at: None,
            revoked_reason: None,
            acl_sync_token: None,
            planned_cursor: None,
            planned_at: None,
            acl_checked_at: None,
        }
    }

    fn org(users: &[User]) -> OrgModel {
        let mut model = OrgModel::default();
        for u in users {
            model.users.insert(u.id.clone(), u.clone());
        }
        model
    }

    fn ten_users() -> (Vec<User>, Vec<SyncUser>) {
        let ids: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
        let users = ids
            .iter()
            .map(|id| user(id, true, Some(&format!("{id}@acme.example"))))
            .collect();
        let rows = ids.iter().map(|id| row(id)).collect();
        (users, rows)
    }

    fn paused(id: i64, user: &str, reason: RevocationReason) -> Revocation {
        Revocation {
            id,
            user_id: user.into(),
            account: format!("{user}@acme.example"),
            reason,
            state: RevocationState::Paused,
            paused_reason: Some("guard".into()),
            queued_at: String::new(),
            started_at: None,
            attempts: 0,
            last_error: None,
            inventory: None,
            receipt: None,
            finished_at: None,
        }
    }

    #[test]
    fn every_cause_is_recognised() {
        let (mut users, rows) = ten_users();
        users[0].active = false;
        users.remove(1); // u1
        users[1].google_account = Some("u2@other.example".into()); // u2
        users[2].google_account = None; // u3
        let d = decide(&org(&users), &rows, &[], 0.5, |_| false);
        let got: Vec<(String, RevocationReason)> =
            d.queue.iter().map(|q| (q.user.clone(), q.reason)).collect();
        assert_eq!(
            got,
            vec![
                ("u0".into(), RevocationReason::Deactivated),
                ("u1".into(), RevocationReason::Removed),
                ("u2".into(), RevocationReason::AccountChanged),
                ("u3".into(), RevocationReason::AccountCleared),
            ]
        );
        assert_eq!(
            d.queue[2].account, "u2@acme.example",
            "the old account is revoked"
        );
        assert!(d.paused.is_none(), "4 of 10 is within 50 %");
    }

    #[test]
    fn one_person_is_never_paused_but_a_mass_deactivation_is() {
        let (mut users, mut rows) = ten_users();
        rows.truncate(2);
        users.truncate(2);
        users[0].active = false;
        let d = decide(&org(&users), &rows, &[], 0.2, |_| false);
        assert_eq!(d.queue.len(), 1);
        assert!(
            d.paused.is_none(),
            "1 of 2 is 50 %, but one person is never paused"
        );

        let (mut users, rows) = ten_users();
        users[0].active = false;
        users[1].active = false;
        let d = decide(&org(&users), &rows, &[], 0.2, |_| false);
        assert!(d.paused.is_none(), "2 of 10 is not more than 20 %");
        users[2].active = false;
        let d = decide(&org(&users), &rows, &[], 0.2, |_| false);
        assert_eq!(d.queue.len(), 3);
        assert!(d.paused.as_deref().unwrap().contains("3 of 10"));
        assert!(d.queue.iter().all(|q| q.paused.is_some()));
        let forced = decide(&org(&users), &rows, &[], 0.2, |_| true);
        assert!(forced.queue.iter().all(|q| q.paused.is_none()));
        // `sync --user u0 --force`: only u0 goes ahead.
        let one = decide(&org(&users), &rows, &[], 0.2, |u| u == "u0");
        let held: Vec<&str> = one
            .queue
            .iter()
            .filter(|q| q.paused.is_some())
            .map(|q| q.user.as_str())
            .collect();
        assert_eq!(held, ["u1", "u2"]);
    }

    #[test]
    fn open_revocations_are_not_queued_twice_and_force_releases_paused_ones() {
        let (mut users, rows) = ten_users();
        users[0].active = false;
        users[1].active = false;
        let open = [
            paused(7, "u0", RevocationReason::Deactivated),
            paused(8, "u1", RevocationReason::Deactivated),
        ];
        let d = decide(&org(&users), &rows, &open, 0.2, |_| false);
        assert!(d.queue.is_empty() && d.unpause.is_empty() && d.cancel.is_empty());
        let d = decide(&org(&users), &rows, &open, 0.2, |_| true);
        assert_eq!(d.unpause, vec![7, 8]);
        let d = decide(&org(&users), &rows, &open, 0.2, |u| u == "u1");
        assert_eq!(d.unpause, vec![8]);
    }

    #[test]
    fn a_paused_revocation_whose_cause_went_away_is_cancelled() {
        let (users, rows) = ten_users();
        let open = [
            paused(7, "u0", RevocationReason::Deactivated),
            paused(8, "u1", RevocationReason::Manual),
        ];
        let d = decide(&org(&users), &rows, &open, 0.2, |_| false);
        assert_eq!(d.cancel, vec![7], "a manual revocation stays until forced");
    }

    #[test]
    fn revoked_rows_and_case_differences_are_not_offboardings() {
        let (mut users, mut rows) = ten_users();
        users[0].google_account = Some("U0@ACME.example".into());
        rows[1].revoked_at = Some("2026-01-01T00:00:00Z".into());
        users[1].active = false;
        let d = decide(&org(&users), &rows, &[], 0.2, |_| false);
        assert!(d.queue.is_empty(), "{d:?}");
    }
}
