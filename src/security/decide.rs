//! Per-pair decisions: [`Access::decide`] (with reasons) and [`Access::may`] (fast).

use super::index::{kind_slot, Access, Ix, Party, RecordEntry, Vis};
use super::{AccessError, AccessLevel, Decision, Denial, Operation, Reason};
use crate::model::{
    Attendee, Event, ObjectKind, ObjectPermissions, ProfileId, RecordRef, ScopeLevel,
    SharingDefault, UserId,
};

/// The outcome of evaluating one pair, reasons only when asked for.
#[derive(Debug, Default)]
pub(crate) struct Evaluation {
    pub read: bool,
    pub edit: bool,
    pub create: bool,
    pub delete: bool,
    pub level: AccessLevel,
    pub reasons: Vec<Reason>,
    pub denied: Vec<(Operation, Denial)>,
}

impl Evaluation {
    /// The strongest access this evaluation amounts to (for `controlled_by_parent`).
    fn effective_level(&self) -> AccessLevel {
        if self.delete {
            AccessLevel::Full
        } else if self.edit {
            AccessLevel::Edit
        } else if self.read {
            AccessLevel::Read
        } else {
            AccessLevel::None
        }
    }
}

impl<'m> Access<'m> {
    /// Read, edit, create and delete for `user` on `record`, with the reasons and, per denied
    /// operation, the gate that denied it.
    pub fn decide(&self, user: &UserId, record: &RecordRef) -> Result<Decision, AccessError> {
        let (u, r) = self.resolve(user, record)?;
        let ev = self.evaluate(u, record.kind, r, true);
        Ok(Decision {
            user: user.clone(),
            record: record.clone(),
            read: ev.read,
            edit: ev.edit,
            create: ev.create,
            delete: ev.delete,
            level: ev.level,
            reasons: ev.reasons,
            denied: ev.denied,
        })
    }

    /// Whether `user` may perform `op` on `record` (no reasons; what write-back re-checks).
    pub fn may(
        &self,
        user: &UserId,
        record: &RecordRef,
        op: Operation,
    ) -> Result<bool, AccessError> {
        let (u, r) = self.resolve(user, record)?;
        let ev = self.evaluate(u, record.kind, r, false);
        Ok(match op {
            Operation::Read => ev.read,
            Operation::Edit => ev.edit,
            Operation::Create => ev.create,
            Operation::Delete => ev.delete,
        })
    }

    /// Whether `user` may create records of `kind` (the profile's create flag; admins may).
    pub fn may_create(&self, user: &UserId, kind: ObjectKind) -> Result<bool, AccessError> {
        let u = self.user_or_err(user)?;
        let entry = &self.users[u as usize];
        Ok(entry.user.active
            && (entry.user.admin || entry.perms[kind_slot(kind)].is_some_and(|p| p.create)))
    }

    /// The export gate: whether records of `kind` may be synced to `user`'s Google account
    /// at all (active, and an admin or a profile that reads the kind with `export` on).
    pub fn may_export(&self, user: &UserId, kind: ObjectKind) -> Result<bool, AccessError> {
        let u = self.user_or_err(user)?;
        Ok(self.export_allowed(u, kind))
    }

    pub(crate) fn export_allowed(&self, u: Ix, kind: ObjectKind) -> bool {
        let entry = &self.users[u as usize];
        entry.user.active
            && (entry.user.admin
                || entry.perms[kind_slot(kind)].is_some_and(|p| p.read && p.export))
    }

    /// The attendees of `event` as they may be written to `user`'s Google account: users,
    /// and only the contacts `user` may read (no e-mail address leaks through an event).
    pub fn visible_attendees<'e>(
        &self,
        user: &UserId,
        event: &'e Event,
    ) -> Result<Vec<&'e Attendee>, AccessError> {
        let u = self.user_or_err(user)?;
        let contacts = self.kind(ObjectKind::Contact);
        Ok(event
            .attendees
            .iter()
            .filter(|a| match a {
                Attendee::User(_) => true,
                Attendee::Contact(c) => contacts
                    .ix(c)
                    .is_some_and(|r| self.evaluate(u, ObjectKind::Contact, r, false).read),
            })
            .collect())
    }

    pub(crate) fn user_or_err(&self, user: &UserId) -> Result<Ix, AccessError> {
        self.user_index(user)
            .ok_or_else(|| AccessError::UnknownUser(user.clone()))
    }

    pub(crate) fn resolve(
        &self,
        user: &UserId,
        record: &RecordRef,
    ) -> Result<(Ix, Ix), AccessError> {
        let u = self.user_or_err(user)?;
        let r = self
            .kind(record.kind)
            .ix(&record.id)
            .ok_or_else(|| AccessError::UnknownRecord(record.clone()))?;
        Ok((u, r))
    }

    /// Steps 0–5 of the decision for user `u` on record `r` of `kind`, behind the reader
    /// gate in delegated mode: a record the CRM did not show to the user's own key is
    /// neither readable nor editable nor deletable, whatever the model grants (fail-closed:
    /// a record the CRM showed to nobody yet is readable by nobody).
    pub(crate) fn evaluate(&self, u: Ix, kind: ObjectKind, r: Ix, explain: bool) -> Evaluation {
        let mut ev = self.evaluate_model(u, kind, r, explain);
        if !self.reader_gate || !self.users[u as usize].user.active {
            return ev;
        }
        let rec = &self.kind(kind).records[r as usize];
        let user = self.users[u as usize].user.id.clone();
        if self.reader_listed(u, rec) {
            if explain {
                ev.reasons.insert(0, Reason::ReaderListed { user });
            }
            return ev;
        }
        ev.read = false;
        ev.edit = false;
        ev.delete = false;
        if explain {
            ev.reasons.insert(
                0,
                Reason::ReaderGate {
                    user,
                    shown_to_anyone: rec.readers().is_some_and(|l| !l.is_empty()),
                },
            );
            let create = ev
                .denied
                .iter()
                .find(|(op, _)| *op == Operation::Create)
                .cloned();
            ev.denied = Operation::ALL
                .into_iter()
                .filter_map(|op| match op {
                    Operation::Create => create.clone(),
                    _ => Some((op, Denial::ReaderGate)),
                })
                .collect();
        }
        ev
    }

    /// Steps 0–5 of the decision from the permission model alone.
    fn evaluate_model(&self, u: Ix, kind: ObjectKind, r: Ix, explain: bool) -> Evaluation {
        let entry = &self.users[u as usize];
        let user_id = &entry.user.id;
        let mut ev = Evaluation::default();
        if !entry.user.active {
            if explain {
                ev.reasons.push(Reason::Inactive {
                    user: user_id.clone(),
                });
                ev.denied = Operation::ALL.map(|op| (op, Denial::Inactive)).to_vec();
            }
            return ev;
        }
        if entry.user.admin {
            ev.read = true;
            ev.edit = true;
            ev.create = true;
            ev.delete = true;
            ev.level = AccessLevel::Full;
            if explain {
                ev.reasons.push(Reason::Admin {
                    user: user_id.clone(),
                });
            }
            return ev;
        }
        let (Some(perms), Some(profile)) = (entry.perms[kind_slot(kind)], entry.profile) else {
            if explain {
                ev.reasons.push(Reason::NoProfile {
                    user: user_id.clone(),
                    profile: entry.user.profile.clone(),
                });
                ev.denied = Operation::ALL.map(|op| (op, Denial::NoProfile)).to_vec();
            }
            return ev;
        };
        let rec = &self.kind(kind).records[r as usize];
        let mut reasons = explain.then(Vec::new);
        ev.level = self.grant_level(u, kind, rec, reasons.as_mut());

        // Operation scopes that cover this record (step 3).
        let covering = |scope: Option<ScopeLevel>| scope.filter(|s| self.scope_covers(u, rec, *s));
        let read_scope = covering(perms.scope.read);
        let edit_scope = covering(perms.scope.edit);
        let delete_scope = covering(perms.scope.delete);

        ev.read =
            perms.read && (perms.read_all || read_scope.is_some() || ev.level >= AccessLevel::Read);
        ev.edit = perms.edit
            && ev.read
            && (perms.modify_all || edit_scope.is_some() || ev.level >= AccessLevel::Edit);
        ev.delete = perms.delete
            && ev.edit
            && (perms.modify_all || delete_scope.is_some() || ev.level >= AccessLevel::Full);
        ev.create = perms.create;

        if let Some(mut reasons) = reasons {
            let mut gate = Vec::new();
            for (op, has) in [
                (Operation::Read, perms.read),
                (Operation::Edit, perms.edit),
                (Operation::Create, perms.create),
                (Operation::Delete, perms.delete),
            ] {
                if !has {
                    gate.push(Reason::ProfileLacks {
                        profile: profile.id.clone(),
                        kind,
                        op,
                    });
                }
            }
            let mut step3 = Vec::new();
            if perms.modify_all {
                step3.push(Reason::ModifyAll {
                    profile: profile.id.clone(),
                    kind,
                });
            } else if perms.read_all {
                step3.push(Reason::ReadAll {
                    profile: profile.id.clone(),
                    kind,
                });
            }
            for (op, scope) in [
                (Operation::Read, read_scope),
                (Operation::Edit, edit_scope),
                (Operation::Delete, delete_scope),
            ] {
                let Some(scope) = scope else { continue };
                let detail = match scope {
                    ScopeLevel::All => "every record".to_owned(),
                    ScopeLevel::Own => format!("{user_id} owns or is assigned to it"),
                    ScopeLevel::Team => {
                        let owner = rec
                            .owner
                            .map(|o| self.users[o as usize].user.id.to_string())
                            .unwrap_or_default();
                        format!("owner {owner} shares a team with {user_id}")
                    }
                };
                step3.push(Reason::OperationScope {
                    profile: profile.id.clone(),
                    kind,
                    op,
                    scope,
                    detail,
                });
            }
            if ev.level == AccessLevel::None && step3.is_empty() {
                reasons.push(Reason::NoGrant {
                    user: user_id.clone(),
                });
            }
            gate.extend(step3);
            gate.extend(reasons);
            ev.reasons = gate;
            ev.denied = denials(&profile.id, &perms, &ev);
        }
        ev
    }

    /// Step 4: the maximum record-level grant, collecting the reasons when asked.
    fn grant_level(
        &self,
        u: Ix,
        kind: ObjectKind,
        rec: &RecordEntry,
        mut reasons: Option<&mut Vec<Reason>>,
    ) -> AccessLevel {
        let entry = &self.users[u as usize];
        let user_id = &entry.user.id;
        let explain = reasons.is_some();
        let mut level = AccessLevel::None;
        let note = |reasons: &mut Option<&mut Vec<Reason>>, reason: Reason| {
            if let Some(list) = reasons.as_deref_mut() {
                list.push(reason);
            }
        };

        if rec.owner == Some(u) {
            level = AccessLevel::Full;
            note(
                &mut reasons,
                Reason::Owner {
                    user: user_id.clone(),
                },
            );
        }
        if rec.assignees().contains(&u) {
            level = AccessLevel::Full;
            note(
                &mut reasons,
                Reason::Assignee {
                    user: user_id.clone(),
                },
            );
        }
        if let Some(my_role) = entry.role {
            let holders = rec
                .owner
                .map(|o| (o, true))
                .into_iter()
                .chain(rec.assignees().iter().map(|&a| (a, false)));
            for (holder, is_owner) in holders {
                let Some(holder_role) = self.users[holder as usize].role else {
                    continue;
                };
                if self.role_strictly_below(holder_role, my_role) {
                    level = AccessLevel::Full;
                    if !explain {
                        break;
                    }
                    note(
                        &mut reasons,
                        Reason::RoleHierarchy {
                            holder: self.users[holder as usize].user.id.clone(),
                            holder_is_owner: is_owner,
                            path: self.role_path(holder_role, my_role),
                            user: user_id.clone(),
                        },
                    );
                }
            }
        }
        if level == AccessLevel::Full && !explain {
            return level;
        }

        let default = self.model.org_wide_sharing.for_kind(kind);
        if default == SharingDefault::ControlledByParent {
            if kind == ObjectKind::Event {
                let mut parents = Vec::new();
                let mut min = if rec.parents().is_empty() {
                    AccessLevel::None
                } else {
                    AccessLevel::Full
                };
                for (pkind, p) in rec.parents() {
                    let parent_level = match p {
                        Some(p) => self.evaluate(u, *pkind, *p, false).effective_level(),
                        None => AccessLevel::None,
                    };
                    min = min.min(parent_level);
                    if explain {
                        let id = match p {
                            Some(p) => self.kind(*pkind).ids[*p as usize].clone(),
                            None => continue,
                        };
                        parents.push((RecordRef::new(*pkind, id), parent_level));
                    }
                }
                level = level.max(min);
                note(
                    &mut reasons,
                    Reason::ControlledByParent {
                        parents,
                        level: min,
                    },
                );
            }
        } else {
            let owd = AccessLevel::of_default(default);
            if owd > AccessLevel::None {
                level = level.max(owd);
                note(
                    &mut reasons,
                    Reason::OrgWideDefault {
                        kind,
                        default,
                        level: owd,
                    },
                );
            }
        }

        if let Some(owner) = rec.owner {
            for &ri in &entry.rules_as_target[kind_slot(kind)] {
                let rule = &self.rules[ri as usize];
                if !self.in_party(owner, rule.source) {
                    continue;
                }
                let granted = AccessLevel::of_rule(rule.rule.access);
                level = level.max(granted);
                note(
                    &mut reasons,
                    Reason::SharingRule {
                        rule: rule.rule.id.clone(),
                        access: rule.rule.access,
                        owner: self.users[owner as usize].user.id.clone(),
                        source: rule.rule.source.clone(),
                        user: user_id.clone(),
                        target: rule.rule.target.clone(),
                    },
                );
            }
        }

        let visibility = match &rec.visibility {
            Vis::Unset => None,
            Vis::Everyone => Some(("everyone".to_owned(), AccessLevel::Full)),
            Vis::OwnerOnly => Some((
                "owner_only (adds nothing beyond the owner)".to_owned(),
                AccessLevel::None,
            )),
            Vis::Team(t) => {
                let name = t
                    .map(|t| self.teams[t as usize].id.to_string())
                    .unwrap_or_else(|| "(unknown)".into());
                let member = t.is_some_and(|t| self.in_party(u, Party::Team(t)));
                Some((
                    if member {
                        format!("team {name} (which {user_id} is in)")
                    } else {
                        format!("team {name} ({user_id} is not in it)")
                    },
                    if member {
                        AccessLevel::Full
                    } else {
                        AccessLevel::None
                    },
                ))
            }
            Vis::Users => {
                let named = rec.visible_to().contains(&u);
                Some((
                    if named {
                        format!("users (naming {user_id})")
                    } else {
                        format!("users (not naming {user_id})")
                    },
                    if named {
                        AccessLevel::Full
                    } else {
                        AccessLevel::None
                    },
                ))
            }
        };
        if let Some((mode, granted)) = visibility {
            level = level.max(granted);
            note(
                &mut reasons,
                Reason::Visibility {
                    mode,
                    level: granted,
                },
            );
        }

        if kind == ObjectKind::Event && rec.attendees().contains(&u) {
            level = level.max(AccessLevel::Read);
            note(
                &mut reasons,
                Reason::Attendee {
                    user: user_id.clone(),
                },
            );
        }
        level
    }
}

fn denials(
    profile_id: &ProfileId,
    perms: &ObjectPermissions,
    ev: &Evaluation,
) -> Vec<(Operation, Denial)> {
    let mut out = Vec::new();
    let profile = |p: &ObjectPermissions, op| match op {
        Operation::Read => p.read,
        Operation::Edit => p.edit,
        Operation::Create => p.create,
        Operation::Delete => p.delete,
    };
    let needed = |op| match op {
        Operation::Read => AccessLevel::Read,
        Operation::Edit => AccessLevel::Edit,
        Operation::Create | Operation::Delete => AccessLevel::Full,
    };
    for op in Operation::ALL {
        let allowed = match op {
            Operation::Read => ev.read,
            Operation::Edit => ev.edit,
            Operation::Create => ev.create,
            Operation::Delete => ev.delete,
        };
        if allowed {
            continue;
        }
        let denial = if !profile(perms, op) {
            Denial::Profile {
                profile: profile_id.clone(),
            }
        } else if op == Operation::Edit && !ev.read {
            Denial::Prerequisite {
                needs: Operation::Read,
            }
        } else if op == Operation::Delete && !ev.edit {
            Denial::Prerequisite {
                needs: Operation::Edit,
            }
        } else {
            Denial::Grant {
                level: ev.level,
                needed: needed(op),
            }
        };
        out.push((op, denial));
    }
    out
}
