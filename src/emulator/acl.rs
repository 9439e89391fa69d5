//! Calendar v3 ACLs (`acl.list`, `acl.get`, `acl.insert`, `acl.delete`) as strict as
//! Google documents them:
//!
//! - rule ids are `user:<email>`, `group:<email>`, `domain:<domain>` or `default`; roles are
//!   `none`, `freeBusyReader`, `reader`, `writer`, `writerWithoutPrivateAccess`, `owner`;
//! - every calendar lists its owner (`user:<owner>`, role `owner`); the caller cannot change
//!   or delete its own rule (403 `cannotChangeOwnAcl`);
//! - `acl.list` pages at `maxResults` (default 100, at most 250) and ends with a
//!   `nextSyncToken`; with a `syncToken` it returns only rules changed since, deleted ones
//!   with role `none` (`showDeleted=false` is refused with a token); an expired token is
//!   410 `fullSyncRequired` (the calendar's sync epoch, shared with its events);
//! - unknown calendars and rules are 404.
//!
//! Each endpoint has its own method id (`calendar.acl.list`, …) in `calendar::CalendarRoute`,
//! which is where per-method rules (quota, faults, OAuth scopes) attach.

use std::collections::BTreeMap;

use google_calendar3::api::{Acl, AclRule, AclRuleScope};
use serde::{Deserialize, Serialize};

use super::state::{CalendarData, UserData};
use super::tokens::{PageToken, SyncToken};
use super::wire::{ApiError, ApiResponse, Query, RawRequest};

/// Change bookkeeping of one calendar's ACL (for sync tokens and deleted rules).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct AclLog {
    /// Change sequence: every ACL write takes the next value.
    pub seq: u64,
    /// Rule id → sequence of its last change (rules never changed since the calendar was
    /// created have none: they are seen by full listings only).
    pub changed: BTreeMap<String, u64>,
    /// Deleted rules, as incremental listings show them (role `none`).
    pub deleted: BTreeMap<String, AclRule>,
}

const ROLES: &[&str] = &[
    "none",
    "freeBusyReader",
    "reader",
    "writer",
    "writerWithoutPrivateAccess",
    "owner",
];
const SCOPE_TYPES: &[&str] = &["default", "user", "group", "domain"];
const DEFAULT_MAX_RESULTS: i64 = 100;
const MAX_MAX_RESULTS: i64 = 250;

fn calendar<'a>(user: &'a UserData, id: &str) -> Result<&'a CalendarData, ApiError> {
    let id = if id == "primary" { &user.email } else { id };
    user.calendars.get(id).ok_or_else(ApiError::not_found)
}

fn calendar_mut<'a>(user: &'a mut UserData, id: &str) -> Result<&'a mut CalendarData, ApiError> {
    let id = if id == "primary" {
        user.email.clone()
    } else {
        id.to_owned()
    };
    user.calendars.get_mut(&id).ok_or_else(ApiError::not_found)
}

fn calendar_key(user: &UserData, id: &str) -> String {
    if id == "primary" {
        user.email.clone()
    } else {
        id.to_owned()
    }
}

fn own_rule(user: &UserData, rule_id: &str) -> Result<(), ApiError> {
    if rule_id.eq_ignore_ascii_case(&format!("user:{}", user.email)) {
        return Err(ApiError::new(
            403,
            "cannotChangeOwnAcl",
            "Cannot change your own access level.",
        ));
    }
    Ok(())
}

fn gone() -> ApiError {
    ApiError::new(
        410,
        "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.",
    )
    .with_location("parameter", "syncToken")
}

/// `GET calendars/{id}/acl`.
pub(crate) fn list(user: &UserData, cal_id: &str, q: &Query) -> Result<ApiResponse, ApiError> {
    let cal = calendar(user, cal_id)?;
    let key = calendar_key(user, cal_id);
    let max = match q.int("maxResults")? {
        None => DEFAULT_MAX_RESULTS,
        Some(n) if n < 1 => return Err(ApiError::invalid_param("maxResults", &n.to_string())),
        Some(n) => n.min(MAX_MAX_RESULTS),
    };
    let since = match q.get("syncToken") {
        None => None,
        Some(t) => {
            if q.get("showDeleted") == Some("false") {
                return Err(ApiError::invalid(
                    "showDeleted cannot be false when a syncToken is given.",
                ));
            }
            let token = SyncToken::decode(t)
                .filter(|s| s.k == "acl" && s.u == user.email && s.s == key)
                .ok_or_else(|| {
                    ApiError::invalid("Invalid sync token value.")
                        .with_location("parameter", "syncToken")
                })?;
            if token.e != cal.sync_epoch || token.q > cal.acl_log.seq {
                return Err(gone());
            }
            Some(token.q)
        }
    };
    let show_deleted = since.is_some() || q.bool("showDeleted")?;
    let changed_after =
        |id: &str, after: u64| cal.acl_log.changed.get(id).is_some_and(|s| *s > after);
    let mut rules: Vec<AclRule> = cal
        .acl
        .values()
        .filter(|r| since.is_none_or(|s| changed_after(r.id.as_deref().unwrap_or(""), s)))
        .cloned()
        .collect();
    if show_deleted {
        rules.extend(
            cal.acl_log
                .deleted
                .iter()
                .filter(|(id, _)| since.is_none_or(|s| changed_after(id, s)))
                .map(|(_, r)| r.clone()),
        );
    }
    rules.sort_by(|a, b| a.id.cmp(&b.id));
    let fingerprint = q.fingerprint(&["pageToken", "maxResults"]);
    let offset = match q.get("pageToken") {
        None => 0,
        Some(t) => {
            PageToken::decode(t)
                .filter(|p| p.k == "acl" && p.f == fingerprint)
                .ok_or_else(|| ApiError::invalid("Invalid page token."))?
                .a
        }
    };
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(rules.len());
    let end = (start + usize::try_from(max).unwrap_or(100)).min(rules.len());
    let mut out = Acl {
        kind: Some("calendar#acl".into()),
        etag: Some(format!("\"a{}\"", cal.acl_log.seq)),
        items: Some(rules[start..end].to_vec()),
        next_page_token: None,
        next_sync_token: None,
    };
    if end < rules.len() {
        out.next_page_token = Some(
            PageToken {
                k: "acl".into(),
                f: fingerprint,
                a: end as u64,
                n: 0,
                since,
                t: 0,
            }
            .encode(),
        );
    } else {
        out.next_sync_token = Some(
            SyncToken {
                k: "acl".into(),
                u: user.email.clone(),
                s: key,
                e: cal.sync_epoch,
                q: cal.acl_log.seq,
                t: 0,
            }
            .encode(),
        );
    }
    Ok(ApiResponse::json(200, &out))
}

/// `GET calendars/{id}/acl/{ruleId}`.
pub(crate) fn get(user: &UserData, cal_id: &str, rule_id: &str) -> Result<ApiResponse, ApiError> {
    let cal = calendar(user, cal_id)?;
    let rule = cal.acl.get(rule_id).ok_or_else(ApiError::not_found)?;
    Ok(ApiResponse::json(200, rule))
}

/// The rule id a scope stands for, after checking the scope as Google does.
fn rule_id(scope: &AclRuleScope) -> Result<(String, String, Option<String>), ApiError> {
    let scope_type = scope.type_.clone().unwrap_or_else(|| "default".into());
    if !SCOPE_TYPES.contains(&scope_type.as_str()) {
        return Err(ApiError::invalid("Invalid scope type value."));
    }
    let value = scope.value.clone().filter(|v| !v.trim().is_empty());
    match (scope_type.as_str(), value) {
        ("default", None) => Ok(("default".into(), scope_type, None)),
        ("default", Some(_)) => Err(ApiError::invalid(
            "The scope value must be omitted for the default scope.",
        )),
        (_, None) => Err(ApiError::required("scope.value")),
        ("domain", Some(v)) if v.contains('@') => Err(ApiError::invalid("Invalid domain name.")),
        ("user" | "group", Some(v)) if !v.contains('@') => {
            Err(ApiError::invalid("Invalid email address."))
        }
        (_, Some(v)) => Ok((format!("{scope_type}:{v}"), scope_type, Some(v))),
    }
}

/// `POST calendars/{id}/acl` (a rule for a scope that already has one replaces its role).
pub(crate) fn insert(
    user: &mut UserData,
    cal_id: &str,
    req: &RawRequest,
) -> Result<ApiResponse, ApiError> {
    if req.body.is_empty() {
        return Err(ApiError::required("request body"));
    }
    let body: AclRule = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::new(400, "parseError", format!("Parse Error: {e}")))?;
    req.query.bool("sendNotifications")?;
    let role = body.role.ok_or_else(|| ApiError::required("role"))?;
    if !ROLES.contains(&role.as_str()) {
        return Err(ApiError::invalid("Invalid role value."));
    }
    let scope = body.scope.ok_or_else(|| ApiError::required("scope"))?;
    let (id, scope_type, value) = rule_id(&scope)?;
    own_rule(user, &id)?;
    calendar(user, cal_id)?;
    let etag = user.next_etag();
    let cal = calendar_mut(user, cal_id)?;
    let rule = AclRule {
        kind: Some("calendar#aclRule".into()),
        etag: Some(etag),
        id: Some(id.clone()),
        role: Some(role),
        scope: Some(AclRuleScope {
            type_: Some(scope_type),
            value,
        }),
    };
    cal.acl_log.seq += 1;
    cal.acl_log.changed.insert(id.clone(), cal.acl_log.seq);
    cal.acl_log.deleted.remove(&id);
    cal.acl.insert(id, rule.clone());
    Ok(ApiResponse::json(200, &rule))
}

/// `DELETE calendars/{id}/acl/{ruleId}`.
pub(crate) fn delete(
    user: &mut UserData,
    cal_id: &str,
    rule_id: &str,
) -> Result<ApiResponse, ApiError> {
    calendar(user, cal_id)?
        .acl
        .get(rule_id)
        .ok_or_else(ApiError::not_found)?;
    own_rule(user, rule_id)?;
    let etag = user.next_etag();
    let cal = calendar_mut(user, cal_id)?;
    if let Some(mut rule) = cal.acl.remove(rule_id) {
        rule.role = Some("none".into());
        rule.etag = Some(etag);
        cal.acl_log.seq += 1;
        cal.acl_log
            .changed
            .insert(rule_id.to_owned(), cal.acl_log.seq);
        cal.acl_log.deleted.insert(rule_id.to_owned(), rule);
    }
    Ok(ApiResponse::no_content())
}
