//! OAuth scopes per method, as one table ([`METHOD_SCOPES`]): which scopes let a token call
//! which method, after the "Authorization" section of each method's page in Google's API
//! reference (developers.google.com/workspace/calendar/api/v3/reference/…,
//! developers.google.com/people/api/rest/v1/…). A method missing from the table is refused
//! with every token, so a new endpoint needs its row.
//!
//! Two scopes reach only part of what their methods touch, and are modelled:
//! - `calendar.app.created` covers the secondary calendars *the app* (the OAuth client that
//!   the token was issued to) created; any other calendar is invisible to it (404);
//! - `calendar.events.owned` / `.readonly` cover calendars the user owns — every calendar a
//!   user can reach in the emulator, so they act as full event scopes.
//!
//! Left out on purpose (a token holding only them is refused where Google would answer a
//! reduced view): `calendar.events.freebusy`, `calendar.events.public.readonly`, and for
//! `people.get` of `people/me` the profile scopes (`userinfo.*`, `user.*`).
//!
//! A token lacking every listed scope gets Google's answer: 403 `insufficientPermissions`,
//! "Request had insufficient authentication scopes.", status `PERMISSION_DENIED`, an
//! `ErrorInfo` with reason `ACCESS_TOKEN_SCOPE_INSUFFICIENT`, and a `WWW-Authenticate`
//! header naming the scopes that would do.

use serde_json::json;

use super::wire::{ApiFamily, ApiResponse};

/// Prefix of every Google OAuth scope URL.
pub const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// The scope that reaches only the calendars the app created.
const APP_CREATED: &str = "calendar.app.created";

/// One method: its id (as in the emulator's counters and fault rules), Google's RPC method
/// name (reported in `ErrorInfo.metadata.method`) and the scopes that allow it, without
/// [`SCOPE_PREFIX`].
#[derive(Debug, Clone, Copy)]
pub struct MethodScopes {
    pub method: &'static str,
    pub rpc: &'static str,
    pub scopes: &'static [&'static str],
}

const CAL_ACL_WRITE: &[&str] = &["calendar", "calendar.acls"];
const CAL_ACL_READ: &[&str] = &["calendar", "calendar.acls", "calendar.acls.readonly"];
const CAL_ACL_GET: &[&str] = &[
    "calendar",
    "calendar.readonly",
    "calendar.acls",
    "calendar.acls.readonly",
];
const CAL_LIST_READ: &[&str] = &[
    "calendar",
    "calendar.readonly",
    "calendar.calendarlist",
    "calendar.calendarlist.readonly",
];
const CAL_CALENDAR_WRITE: &[&str] = &["calendar", "calendar.app.created", "calendar.calendars"];
const CAL_CALENDAR_READ: &[&str] = &[
    "calendar",
    "calendar.readonly",
    "calendar.app.created",
    "calendar.calendars",
    "calendar.calendars.readonly",
];
const CAL_EVENTS_READ: &[&str] = &[
    "calendar",
    "calendar.readonly",
    "calendar.events",
    "calendar.events.readonly",
    "calendar.app.created",
    "calendar.events.owned",
    "calendar.events.owned.readonly",
];
const CAL_EVENTS_WRITE: &[&str] = &[
    "calendar",
    "calendar.events",
    "calendar.app.created",
    "calendar.events.owned",
];
const CONTACTS_READ: &[&str] = &["contacts", "contacts.readonly"];
const CONTACTS_WRITE: &[&str] = &["contacts"];

/// Every method the emulator serves (and those the next endpoints will need), one row each.
pub const METHOD_SCOPES: &[MethodScopes] = &[
    row("calendar.acl.list", "calendar.v3.Acl.List", CAL_ACL_READ),
    row("calendar.acl.get", "calendar.v3.Acl.Get", CAL_ACL_GET),
    row(
        "calendar.acl.insert",
        "calendar.v3.Acl.Insert",
        CAL_ACL_WRITE,
    ),
    row(
        "calendar.acl.delete",
        "calendar.v3.Acl.Delete",
        CAL_ACL_WRITE,
    ),
    row(
        "calendar.calendarList.list",
        "calendar.v3.CalendarList.List",
        CAL_LIST_READ,
    ),
    row(
        "calendar.calendarList.get",
        "calendar.v3.CalendarList.Get",
        CAL_LIST_READ,
    ),
    row(
        "calendar.calendars.insert",
        "calendar.v3.Calendars.Insert",
        CAL_CALENDAR_WRITE,
    ),
    row(
        "calendar.calendars.get",
        "calendar.v3.Calendars.Get",
        CAL_CALENDAR_READ,
    ),
    row(
        "calendar.calendars.delete",
        "calendar.v3.Calendars.Delete",
        CAL_CALENDAR_WRITE,
    ),
    row(
        "calendar.events.list",
        "calendar.v3.Events.List",
        CAL_EVENTS_READ,
    ),
    row(
        "calendar.events.get",
        "calendar.v3.Events.Get",
        CAL_EVENTS_READ,
    ),
    row(
        "calendar.events.instances",
        "calendar.v3.Events.Instances",
        CAL_EVENTS_READ,
    ),
    row(
        "calendar.events.insert",
        "calendar.v3.Events.Insert",
        CAL_EVENTS_WRITE,
    ),
    row(
        "calendar.events.update",
        "calendar.v3.Events.Update",
        CAL_EVENTS_WRITE,
    ),
    row(
        "calendar.events.patch",
        "calendar.v3.Events.Patch",
        CAL_EVENTS_WRITE,
    ),
    row(
        "calendar.events.delete",
        "calendar.v3.Events.Delete",
        CAL_EVENTS_WRITE,
    ),
    row(
        "people.people.connections.list",
        "google.people.v1.PeopleService.ListConnections",
        CONTACTS_READ,
    ),
    row(
        "people.people.get",
        "google.people.v1.PeopleService.GetPerson",
        CONTACTS_READ,
    ),
    row(
        "people.people.getBatchGet",
        "google.people.v1.PeopleService.GetPeople",
        CONTACTS_READ,
    ),
    row(
        "people.people.createContact",
        "google.people.v1.PeopleService.CreateContact",
        CONTACTS_WRITE,
    ),
    row(
        "people.people.updateContact",
        "google.people.v1.PeopleService.UpdateContact",
        CONTACTS_WRITE,
    ),
    row(
        "people.people.deleteContact",
        "google.people.v1.PeopleService.DeleteContact",
        CONTACTS_WRITE,
    ),
    row(
        "people.people.batchCreateContacts",
        "google.people.v1.PeopleService.BatchCreateContacts",
        CONTACTS_WRITE,
    ),
    row(
        "people.people.batchUpdateContacts",
        "google.people.v1.PeopleService.BatchUpdateContacts",
        CONTACTS_WRITE,
    ),
    row(
        "people.people.batchDeleteContacts",
        "google.people.v1.PeopleService.BatchDeleteContacts",
        CONTACTS_WRITE,
    ),
    row(
        "people.contactGroups.list",
        "google.people.v1.ContactGroupService.ListContactGroups",
        CONTACTS_READ,
    ),
    row(
        "people.contactGroups.get",
        "google.people.v1.ContactGroupService.GetContactGroup",
        CONTACTS_READ,
    ),
    row(
        "people.contactGroups.create",
        "google.people.v1.ContactGroupService.CreateContactGroup",
        CONTACTS_WRITE,
    ),
    row(
        "people.contactGroups.delete",
        "google.people.v1.ContactGroupService.DeleteContactGroup",
        CONTACTS_WRITE,
    ),
    row(
        "people.contactGroups.members.modify",
        "google.people.v1.ContactGroupMembersService.ModifyContactGroupMembers",
        CONTACTS_WRITE,
    ),
];

const fn row(
    method: &'static str,
    rpc: &'static str,
    scopes: &'static [&'static str],
) -> MethodScopes {
    MethodScopes {
        method,
        rpc,
        scopes,
    }
}

/// The row of a method, if it has one.
pub fn method_scopes(method: &str) -> Option<&'static MethodScopes> {
    METHOD_SCOPES.iter().find(|m| m.method == method)
}

/// How far a token's scopes let it go with one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Everything the user can reach.
    Everywhere,
    /// Only calendars created by the token's app (`calendar.app.created` is the only
    /// granting scope).
    AppCreatedCalendars,
}

/// What `granted` (full scope URLs) allows for `method`; `None`: insufficient scopes.
pub(crate) fn reach(method: &str, granted: &[String]) -> Option<Reach> {
    let row = method_scopes(method)?;
    let mut reach = None;
    for scope in granted {
        let Some(short) = scope.strip_prefix(SCOPE_PREFIX) else {
            continue;
        };
        if !row.scopes.contains(&short) {
            continue;
        }
        if short == APP_CREATED {
            reach = reach.or(Some(Reach::AppCreatedCalendars));
        } else {
            return Some(Reach::Everywhere);
        }
    }
    reach
}

/// Google's answer to a token without any of `method`'s scopes.
pub(crate) fn insufficient_scopes(method: &str, family: ApiFamily) -> ApiResponse {
    let row = method_scopes(method);
    let service = match family {
        ApiFamily::Calendar => "calendar-json.googleapis.com",
        ApiFamily::People => "people.googleapis.com",
    };
    let message = "Request had insufficient authentication scopes.";
    let body = json!({"error": {
        "code": 403,
        "message": message,
        "errors": [{"message": "Insufficient Permission", "domain": "global", "reason": "insufficientPermissions"}],
        "status": "PERMISSION_DENIED",
        "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "domain": "googleapis.com",
            "metadata": {"service": service, "method": row.map_or(method, |r| r.rpc)},
        }],
    }});
    let mut response = ApiResponse::json_value(403, &body);
    let wanted: Vec<String> = row
        .map(|r| {
            r.scopes
                .iter()
                .map(|s| format!("{SCOPE_PREFIX}{s}"))
                .collect()
        })
        .unwrap_or_default();
    response.headers.push((
        "www-authenticate".to_string(),
        format!(
            "Bearer realm=\"https://accounts.google.com/\", error=\"insufficient_scope\", scope=\"{}\"",
            wanted.join(" ")
        ),
    ));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(short: &[&str]) -> Vec<String> {
        short.iter().map(|s| format!("{SCOPE_PREFIX}{s}")).collect()
    }

    #[test]
    fn rows_are_unique_and_name_real_scopes() {
        for (i, a) in METHOD_SCOPES.iter().enumerate() {
            assert!(
                METHOD_SCOPES[i + 1..].iter().all(|b| b.method != a.method),
                "{} twice",
                a.method
            );
            assert!(!a.scopes.is_empty(), "{}", a.method);
            for s in a.scopes {
                assert!(
                    s.starts_with("calendar") || s.starts_with("contacts"),
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn every_routed_method_has_a_row() {
        let segs = |p: &str| p.split('/').map(str::to_string).collect::<Vec<_>>();
        let calendar = [
            ("POST", "calendars"),
            ("GET", "calendars/c"),
            ("DELETE", "calendars/c"),
            ("GET", "users/me/calendarList"),
            ("GET", "users/me/calendarList/c"),
            ("POST", "calendars/c/events"),
            ("GET", "calendars/c/events"),
            ("GET", "calendars/c/events/e"),
            ("PUT", "calendars/c/events/e"),
            ("PATCH", "calendars/c/events/e"),
            ("DELETE", "calendars/c/events/e"),
            ("GET", "calendars/c/events/e/instances"),
            ("GET", "calendars/c/acl"),
            ("POST", "calendars/c/acl"),
            ("GET", "calendars/c/acl/r"),
            ("DELETE", "calendars/c/acl/r"),
        ];
        for (verb, path) in calendar {
            let route = super::super::calendar::route(verb, &segs(path)).unwrap();
            assert!(method_scopes(route.method_id()).is_some(), "{verb} {path}");
        }
        let people = [
            ("POST", "people:createContact"),
            ("GET", "people/c1"),
            ("GET", "people:batchGet"),
            ("PATCH", "people/c1:updateContact"),
            ("DELETE", "people/c1:deleteContact"),
            ("POST", "people:batchCreateContacts"),
            ("POST", "people:batchUpdateContacts"),
            ("POST", "people:batchDeleteContacts"),
            ("GET", "people/me/connections"),
            ("POST", "contactGroups"),
            ("GET", "contactGroups"),
            ("GET", "contactGroups/g"),
            ("DELETE", "contactGroups/g"),
            ("POST", "contactGroups/g/members:modify"),
        ];
        for (verb, path) in people {
            let route = super::super::people::route(verb, path).unwrap();
            assert!(method_scopes(route.method_id()).is_some(), "{verb} {path}");
        }
    }

    #[test]
    fn reach_follows_the_table() {
        use Reach::*;
        let cases: &[(&str, &[&str], Option<Reach>)] = &[
            ("calendar.events.list", &["calendar"], Some(Everywhere)),
            ("calendar.events.insert", &["calendar.readonly"], None),
            (
                "calendar.events.insert",
                &["calendar.events"],
                Some(Everywhere),
            ),
            (
                "calendar.events.insert",
                &["calendar.app.created"],
                Some(AppCreatedCalendars),
            ),
            (
                "calendar.events.insert",
                &["calendar.app.created", "calendar.events.owned"],
                Some(Everywhere),
            ),
            (
                "calendar.calendarList.list",
                &["calendar.app.created"],
                None,
            ),
            (
                "calendar.calendarList.list",
                &["calendar.calendarlist.readonly"],
                Some(Everywhere),
            ),
            ("calendar.acl.list", &["calendar.app.created"], None),
            ("calendar.acl.delete", &["calendar.acls.readonly"], None),
            ("calendar.acl.delete", &["calendar.acls"], Some(Everywhere)),
            ("calendar.calendars.delete", &["calendar.events"], None),
            (
                "people.people.connections.list",
                &["contacts.readonly"],
                Some(Everywhere),
            ),
            ("people.people.createContact", &["contacts.readonly"], None),
            (
                "people.contactGroups.delete",
                &["contacts"],
                Some(Everywhere),
            ),
            ("people.people.createContact", &["calendar"], None),
            ("calendar.events.list", &["contacts"], None),
            ("calendar.colors.get", &["calendar"], None),
        ];
        for (method, scopes, want) in cases {
            assert_eq!(reach(method, &full(scopes)), *want, "{method} {scopes:?}");
        }
        // Scopes are compared whole: a look-alike does not count.
        assert_eq!(
            reach(
                "calendar.events.list",
                &["https://www.googleapis.com/auth/calendarX".to_string()]
            ),
            None
        );
    }

    #[test]
    fn insufficient_scope_answer_has_googles_shape() {
        let r = insufficient_scopes("calendar.calendarList.list", ApiFamily::Calendar);
        assert_eq!(r.status, 403);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["errors"][0]["reason"], "insufficientPermissions");
        assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
        assert_eq!(
            v["error"]["details"][0]["metadata"]["method"],
            "calendar.v3.CalendarList.List"
        );
        let auth = r
            .headers
            .iter()
            .find(|(k, _)| k == "www-authenticate")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert!(auth.contains("calendar.calendarlist.readonly"), "{auth}");
    }
}
