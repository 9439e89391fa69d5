//! The permission engine: may user U read / edit / create / delete record R, and why.
//!
//! This is the decision procedure of `shared/SECURITY_MODEL.md`, made from the mirrored
//! [`OrgModel`](crate::crm::OrgModel) only (no I/O). [`Access::build`] indexes the model once
//! (role tree as an Euler tour, team membership, rules by target, records by owner, assignee,
//! visibility and attendee, per-role and per-rule record sets); after that
//!
//! - [`Access::decide`] answers one (user, record) pair for all four operations with the
//!   [`Reason`]s that produced the answer and, per denied operation, the gate that denied it
//!   (what `crmsync access explain` prints);
//! - [`Access::readable`] computes the whole readable set of a user for one kind from the
//!   indexes (unions of precomputed sets), never by testing every pair;
//! - [`affected_users`] compares two models and names the users whose readable sets may have
//!   changed (permission changes are changes: a role move touches no record's `updated_at`).
//!
//! Decision, in order (SECURITY_MODEL.md, with the choices this module makes explicit):
//! 0. an inactive user is denied everything; 1. an admin is allowed everything;
//! 2. the profile gate (flags after closure) denies an operation the profile lacks, whatever
//!    else grants it; a non-admin without a (known) profile has no rights;
//! 3. `read_all` (read) / `modify_all` (read, edit, delete) / an operation scope covering the
//!    record (`all`; `team`: the owner shares a team with U; `own`: U owns or is assigned)
//!    allow the operation;
//! 4. otherwise the record-level grant is the maximum of: owner/assignee (full); owner or an
//!    assignee in a role strictly below U's (full; an inactive owner still counts); the
//!    org-wide default (`controlled_by_parent`: the minimum of U's effective access over the
//!    event's linked parents, none without parents); sharing rules whose source holds the
//!    owner and whose target holds U; simple visibility (everyone / team / users: full;
//!    `owner_only` adds nothing beyond the owner — it does not veto the other grants);
//!    user attendee of an event (read);
//! 5. read needs a read grant, edit an edit grant, delete a full grant; create is the
//!    profile's create flag (a kind-level right). Edit and delete also need read, and delete
//!    needs edit: nobody may change what they may not see.
//!
//! Delegated mode (`OrgSettings::reader_gate`, set by connectors that read the CRM with each
//! user's own key): in front of steps 1–5 (after step 0), a record is readable, editable and
//! deletable by U only if the CRM showed it to U's key (`RecordReaders`); a record the CRM
//! showed to nobody is readable by nobody. The model then decides among those users, so a
//! record reaches U only if the CRM's own filter *and* crmsync's model allow it. Bulk
//! readable sets are intersected with the per-user reader lists, so they stay equal to the
//! per-pair decision.

mod bits;
mod changes;
mod decide;
mod index;
mod readable;
pub mod synthetic;

pub use bits::Bits;
pub use changes::{
    affected_users, affected_users_between, records_shared, AffectedUsers, ByUser, ChangeCause,
    SignedBefore,
};
pub use index::{Access, RecordIndex};
pub use readable::RecordSet;

use crate::model::{
    ObjectKind, ProfileId, RecordRef, RoleId, RuleAccess, RuleId, RuleParty, ScopeLevel,
    SharingDefault, UserId,
};
use serde::Serialize;
use std::fmt;

/// An operation on a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Read,
    Edit,
    Create,
    Delete,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::Read,
        Operation::Edit,
        Operation::Create,
        Operation::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Edit => "edit",
            Operation::Create => "create",
            Operation::Delete => "delete",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record-level access level (step 4 of the decision): none < read < edit < full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AccessLevel {
    #[default]
    None,
    Read,
    Edit,
    Full,
}

impl AccessLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::None => "none",
            AccessLevel::Read => "read",
            AccessLevel::Edit => "edit",
            AccessLevel::Full => "full",
        }
    }

    /// What an org-wide default grants by itself (`controlled_by_parent` is resolved per
    /// record, so it is `None` here).
    pub fn of_default(default: SharingDefault) -> AccessLevel {
        match default {
            SharingDefault::Private | SharingDefault::ControlledByParent => AccessLevel::None,
            SharingDefault::PublicRead => AccessLevel::Read,
            SharingDefault::PublicReadWrite => AccessLevel::Edit,
            SharingDefault::PublicFull => AccessLevel::Full,
        }
    }

    pub fn of_rule(access: RuleAccess) -> AccessLevel {
        match access {
            RuleAccess::Read => AccessLevel::Read,
            RuleAccess::ReadWrite => AccessLevel::Edit,
        }
    }
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the permission engine's lookups.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("unknown user {:?}", .0.as_str())]
    UnknownUser(UserId),
    #[error("no record {0} in the CRM mirror")]
    UnknownRecord(RecordRef),
}

/// One fact that took part in a decision. `Display` renders it as a sentence for
/// `access explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Step 0: the user is deactivated.
    Inactive { user: UserId },
    /// Step 1: admins may do everything.
    Admin { user: UserId },
    /// Step 2: a non-admin without a (known) profile has no rights.
    NoProfile {
        user: UserId,
        profile: Option<ProfileId>,
    },
    /// Step 2: the profile lacks the operation on this kind.
    ProfileLacks {
        profile: ProfileId,
        kind: ObjectKind,
        op: Operation,
    },
    /// Step 3: `read_all` on the kind.
    ReadAll {
        profile: ProfileId,
        kind: ObjectKind,
    },
    /// Step 3: `modify_all` on the kind.
    ModifyAll {
        profile: ProfileId,
        kind: ObjectKind,
    },
    /// Step 3: an operation scope of the profile covers the record.
    OperationScope {
        profile: ProfileId,
        kind: ObjectKind,
        op: Operation,
        scope: ScopeLevel,
        detail: String,
    },
    /// Step 4: the user owns the record.
    Owner { user: UserId },
    /// Step 4: the user is an assignee of the record.
    Assignee { user: UserId },
    /// Step 4: the record's owner or an assignee is in a role strictly below the user's.
    RoleHierarchy {
        holder: UserId,
        holder_is_owner: bool,
        /// From the holder's role up to the user's role.
        path: Vec<RoleId>,
        user: UserId,
    },
    /// Step 4: the org-wide default of the kind.
    OrgWideDefault {
        kind: ObjectKind,
        default: SharingDefault,
        level: AccessLevel,
    },
    /// Step 4: `controlled_by_parent`: the minimum of the user's access over the parents.
    ControlledByParent {
        parents: Vec<(RecordRef, AccessLevel)>,
        level: AccessLevel,
    },
    /// Step 4: a sharing rule.
    SharingRule {
        rule: RuleId,
        access: RuleAccess,
        owner: UserId,
        source: RuleParty,
        user: UserId,
        target: RuleParty,
    },
    /// Step 4: the record's simple visibility.
    Visibility { mode: String, level: AccessLevel },
    /// Step 4: the user is a user attendee of the event.
    Attendee { user: UserId },
    /// Step 4: nothing grants the user access to the record.
    NoGrant { user: UserId },
    /// Delegated mode: the CRM showed the record to the user's own API key.
    ReaderListed { user: UserId },
    /// Delegated mode: the CRM did not show the record to the user's own API key, so no
    /// grant of the model counts.
    ReaderGate {
        user: UserId,
        /// Whether the CRM showed it to anybody at all.
        shown_to_anyone: bool,
    },
}

fn party(p: &RuleParty) -> String {
    match p {
        RuleParty::Role(r) => format!("role {r}"),
        RuleParty::RoleAndSubordinates(r) => format!("role_and_subordinates {r}"),
        RuleParty::Team(t) => format!("team {t}"),
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Inactive { user } => {
                write!(f, "{user} is inactive: a deactivated user is denied everything")
            }
            Reason::Admin { user } => write!(f, "{user} is an admin: admins may do everything"),
            Reason::NoProfile {
                user,
                profile: None,
            } => write!(f, "{user} has no profile and is not an admin: no rights"),
            Reason::NoProfile {
                user,
                profile: Some(p),
            } => write!(f, "{user}'s profile {p} does not exist: no rights"),
            Reason::ProfileLacks { profile, kind, op } => write!(
                f,
                "profile {profile} does not allow {op} on {kind} (the profile gate beats every grant)"
            ),
            Reason::ReadAll { profile, kind } => {
                write!(f, "profile {profile} has read_all on {kind}")
            }
            Reason::ModifyAll { profile, kind } => {
                write!(f, "profile {profile} has modify_all on {kind}")
            }
            Reason::OperationScope {
                profile,
                kind,
                op,
                scope,
                detail,
            } => {
                let scope = match scope {
                    ScopeLevel::Own => "own",
                    ScopeLevel::Team => "team",
                    ScopeLevel::All => "all",
                };
                write!(
                    f,
                    "profile {profile} scopes {op} on {kind} to {scope}, which covers this record ({detail})"
                )
            }
            Reason::Owner { user } => write!(f, "{user} owns the record (full)"),
            Reason::Assignee { user } => write!(f, "{user} is assigned to the record (full)"),
            Reason::RoleHierarchy {
                holder,
                holder_is_owner,
                path,
                user,
            } => {
                let what = if *holder_is_owner { "owner" } else { "assignee" };
                let chain = path
                    .iter()
                    .map(RoleId::as_str)
                    .collect::<Vec<_>>()
                    .join(" < ");
                write!(
                    f,
                    "role hierarchy grants full ({what} {holder} is below {user}: {chain})"
                )
            }
            Reason::OrgWideDefault {
                kind,
                default,
                level,
            } => {
                let default = serde_json::to_value(default)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                write!(f, "org-wide default for {kind} is {default} (grants {level})")
            }
            Reason::ControlledByParent { parents, level } => {
                if parents.is_empty() {
                    write!(
                        f,
                        "org-wide default for event is controlled_by_parent and the event has no parents (grants none)"
                    )
                } else {
                    let list = parents
                        .iter()
                        .map(|(r, l)| format!("{r}: {l}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    write!(
                        f,
                        "org-wide default for event is controlled_by_parent: minimum over parents ({list}) grants {level}"
                    )
                }
            }
            Reason::SharingRule {
                rule,
                access,
                owner,
                source,
                user,
                target,
            } => {
                let access = match access {
                    RuleAccess::Read => "read",
                    RuleAccess::ReadWrite => "read_write",
                };
                write!(
                    f,
                    "sharing rule {rule} grants {access} (owner {owner} in {}; {user} in {})",
                    party(source),
                    party(target)
                )
            }
            Reason::Visibility { mode, level } => {
                write!(f, "record visibility {mode} grants {level}")
            }
            Reason::Attendee { user } => {
                write!(f, "{user} is an attendee of the event (read only)")
            }
            Reason::ReaderListed { user } => write!(
                f,
                "the CRM shows this record to {user}'s own API key (delegated mode)"
            ),
            Reason::ReaderGate {
                user,
                shown_to_anyone: true,
            } => write!(
                f,
                "the CRM does not show this record to {user}'s own API key (delegated mode): \
                 no other grant counts"
            ),
            Reason::ReaderGate {
                user: _,
                shown_to_anyone: false,
            } => write!(
                f,
                "the CRM has not shown this record to any user's own API key (delegated mode): \
                 readable by nobody"
            ),
            Reason::NoGrant { user } => write!(
                f,
                "nothing grants {user} access to the record (not its owner or an assignee, not \
                 above them in the role tree, not reached by a sharing rule, its visibility or \
                 as an attendee, and the org-wide default grants nothing)"
            ),
        }
    }
}

/// The gate that denied one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "gate", rename_all = "snake_case")]
pub enum Denial {
    /// The user is inactive.
    Inactive,
    /// The user has no (known) profile and is not an admin.
    NoProfile,
    /// The profile lacks the operation (after closure).
    Profile { profile: ProfileId },
    /// The record-level grant is below what the operation needs.
    Grant {
        level: AccessLevel,
        needed: AccessLevel,
    },
    /// Edit/delete need read (or edit) first, which was denied.
    Prerequisite { needs: Operation },
    /// Delegated mode: the CRM does not show the record to the user's own key.
    ReaderGate,
}

/// The answer for one (user, record) pair: all four operations, the reasons, and for each
/// denied operation the gate that denied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub user: UserId,
    pub record: RecordRef,
    pub read: bool,
    pub edit: bool,
    pub create: bool,
    pub delete: bool,
    /// The record-level grant of step 4 (`full` for admins).
    pub level: AccessLevel,
    pub reasons: Vec<Reason>,
    pub denied: Vec<(Operation, Denial)>,
}

impl Decision {
    pub fn allows(&self, op: Operation) -> bool {
        match op {
            Operation::Read => self.read,
            Operation::Edit => self.edit,
            Operation::Create => self.create,
            Operation::Delete => self.delete,
        }
    }

    /// The gate that denied `op`, if it was denied.
    pub fn denial(&self, op: Operation) -> Option<&Denial> {
        self.denied.iter().find(|(o, _)| *o == op).map(|(_, d)| d)
    }

    /// The reasons as sentences.
    pub fn reason_lines(&self) -> Vec<String> {
        self.reasons.iter().map(ToString::to_string).collect()
    }

    /// "edit denied by …" sentences, one per denied operation.
    pub fn denial_lines(&self) -> Vec<String> {
        self.denied
            .iter()
            .map(|(op, d)| format!("{op} denied: {}", describe_denial(*op, d, self.record.kind)))
            .collect()
    }
}

fn describe_denial(op: Operation, denial: &Denial, kind: ObjectKind) -> String {
    match denial {
        Denial::Inactive => "the user is inactive".into(),
        Denial::NoProfile => "the user has no profile (profile gate)".into(),
        Denial::Profile { profile } => {
            format!("profile gate: profile {profile} has no {op} right on {kind}")
        }
        Denial::Grant { level, needed } => format!(
            "the record-level grant is {level}, {op} needs {needed}{}",
            if *level == AccessLevel::None {
                " (no grant)"
            } else {
                ""
            }
        ),
        Denial::Prerequisite { needs } => format!("{op} needs {needs}, which is denied"),
        Denial::ReaderGate => {
            "delegated mode: the CRM does not show this record to the user's own API key".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_reason_reads_as_a_sentence() {
        let r = Reason::SharingRule {
            rule: RuleId::new("r1").unwrap(),
            access: RuleAccess::Read,
            owner: UserId::new("hank").unwrap(),
            source: RuleParty::RoleAndSubordinates(RoleId::new("mgr_west").unwrap()),
            user: UserId::new("erin").unwrap(),
            target: RuleParty::Role(RoleId::new("mgr_east").unwrap()),
        };
        assert_eq!(
            r.to_string(),
            "sharing rule r1 grants read (owner hank in role_and_subordinates mgr_west; erin in role mgr_east)"
        );
    }

    #[test]
    fn the_index_can_be_shared_between_sync_workers() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Access<'static>>();
        shareable::<RecordSet<'static>>();
    }

    #[test]
    fn the_reader_gate_denies_what_the_crm_did_not_show_and_says_so() {
        let mut model = synthetic::small_org(3);
        let admin = model.users.keys().next().cloned().unwrap();
        if let Some(u) = model.users.get_mut(&admin) {
            u.admin = true;
            u.active = true;
        }
        let ids: Vec<crate::model::CrmId> = model.contacts.keys().take(2).cloned().collect();
        let [shown, hidden] =
            [&ids[0], &ids[1]].map(|id| RecordRef::new(ObjectKind::Contact, id.clone()));
        model.settings.reader_gate = true;
        model
            .readers_mut()
            .insert(shown.clone(), vec![admin.clone()]);
        let access = Access::build(&model);
        let d = access.decide(&admin, &shown).unwrap();
        assert!(d.read && d.edit && d.delete, "an admin the CRM shows it to");
        assert!(
            d.reason_lines()[0].contains("shows this record"),
            "{:?}",
            d.reason_lines()
        );
        let d = access.decide(&admin, &hidden).unwrap();
        assert!(
            !d.read && !d.edit && !d.delete,
            "fail-closed: never shown to anyone"
        );
        assert!(d.create, "create is a kind-level right");
        assert_eq!(d.denial(Operation::Read), Some(&Denial::ReaderGate));
        assert!(
            d.reason_lines()[0].contains("readable by nobody"),
            "{:?}",
            d.reason_lines()
        );
        assert!(d.denial_lines()[0].contains("delegated mode"));
        assert!(!access
            .readable(&admin, ObjectKind::Contact)
            .unwrap()
            .contains(&hidden.id));
        assert!(access
            .readable(&admin, ObjectKind::Contact)
            .unwrap()
            .contains(&shown.id));
    }

    #[test]
    fn levels_are_ordered() {
        assert!(AccessLevel::None < AccessLevel::Read);
        assert!(AccessLevel::Edit < AccessLevel::Full);
        assert_eq!(
            AccessLevel::of_default(SharingDefault::PublicReadWrite),
            AccessLevel::Edit
        );
        assert_eq!(
            AccessLevel::of_rule(RuleAccess::ReadWrite),
            AccessLevel::Edit
        );
    }
}
