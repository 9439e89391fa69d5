//! OAuth scopes enforced per method, through the official crates (crmsync's own scope set)
//! and through plain reqwest with tokens holding one scope each; calendar ids unique across
//! users.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use crmsync::emulator::scopes::{method_scopes, METHOD_SCOPES, SCOPE_PREFIX};
use crmsync::google::auth::{self, CALENDAR_SCOPE, CONTACTS_SCOPE};
use google_calendar3::api::{AclRule, AclRuleScope, Calendar, Event, EventDateTime};
use google_people1::api::{ContactGroup, CreateContactGroupRequest, Name, Person};
use serde_json::{json, Value};

fn scope(short: &str) -> String {
    format!("{SCOPE_PREFIX}{short}")
}

fn event(summary: &str) -> Event {
    let at = |h| EventDateTime {
        date_time: Some(
            chrono::DateTime::parse_from_rfc3339(&format!("2025-05-01T{h:02}:00:00Z"))
                .unwrap()
                .with_timezone(&chrono::Utc),
        ),
        ..Default::default()
    };
    Event {
        summary: Some(summary.into()),
        start: Some(at(9)),
        end: Some(at(10)),
        ..Default::default()
    }
}

fn assert_insufficient(err: &google_calendar3::Error, rpc: &str) {
    assert_eq!(status(err), Some(403), "{err}");
    let body = error_body(err).unwrap();
    assert_eq!(
        body["error"]["errors"][0]["reason"],
        "insufficientPermissions"
    );
    assert_eq!(
        body["error"]["message"],
        "Request had insufficient authentication scopes."
    );
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(
        body["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    );
    assert_eq!(body["error"]["details"][0]["metadata"]["method"], rpc);
}

/// crmsync's own scopes through the official crates: everything the engine does works on the
/// calendar it created; the primary calendar is out of reach (404), the calendar list is
/// readable, not writable; ACLs of its calendar can be read and deleted; contacts and groups
/// are read and written.
#[tokio::test]
async fn crmsync_scopes_reach_exactly_what_the_engine_does() {
    let env = start().await;
    let hub = hub_with(&env, ALICE, &auth::SCOPES).await;
    let (_, cal) = hub
        .calendars()
        .insert(Calendar {
            summary: Some("CRM".into()),
            ..Default::default()
        })
        .doit()
        .await
        .unwrap();
    let id = cal.id.unwrap();
    hub.calendars().get(&id).doit().await.unwrap();
    let (_, list) = hub.calendar_list().list().doit().await.unwrap();
    assert!(list
        .items
        .unwrap()
        .iter()
        .any(|e| e.id.as_deref() == Some(id.as_str())));
    let (_, inserted) = hub.events().insert(event("a"), &id).doit().await.unwrap();
    let event_id = inserted.id.unwrap();
    let mut change = event("b");
    change.id = Some(event_id.clone());
    hub.events()
        .patch(change, &id, &event_id)
        .doit()
        .await
        .unwrap();
    hub.events().list(&id).doit().await.unwrap();
    hub.events().get(&id, &event_id).doit().await.unwrap();
    hub.events().delete(&id, &event_id).doit().await.unwrap();
    let (_, acl) = hub.acl().list(&id).doit().await.unwrap();
    assert_eq!(acl.items.unwrap().len(), 1, "the owner's rule");

    // The user's primary calendar is invisible to calendar.app.created.
    for err in [
        hub.events().list("primary").doit().await.unwrap_err(),
        hub.events()
            .insert(event("x"), "primary")
            .doit()
            .await
            .unwrap_err(),
        hub.calendars().get("primary").doit().await.unwrap_err(),
    ] {
        assert_eq!(status(&err), Some(404), "{err}");
    }
    // A secondary calendar another app created (an installed app with full access: the
    // user's phone) is as invisible as the primary one.
    let phone = installed_app_token(&env, CALENDAR_SCOPE).await;
    let (code, theirs) = post(
        &env,
        &phone,
        "/calendar/v3/calendars",
        json!({"summary": "Private"}),
    )
    .await;
    assert_eq!(code, 200);
    let theirs = theirs["id"].as_str().unwrap().to_string();
    let err = hub.events().list(&theirs).doit().await.unwrap_err();
    assert_eq!(status(&err), Some(404), "{err}");
    // ... though calendarList.list (a different scope) shows it exists.
    let (_, list) = hub.calendar_list().list().doit().await.unwrap();
    assert_eq!(list.items.unwrap().len(), 3);

    // Contacts and contact groups, read and write.
    let people = people_with(&env, ALICE, &auth::SCOPES).await;
    let (_, group) = people
        .contact_groups()
        .create(CreateContactGroupRequest {
            contact_group: Some(ContactGroup {
                name: Some("CRM".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .doit()
        .await
        .unwrap();
    let (_, person) = people
        .people()
        .create_contact(Person {
            names: Some(vec![Name {
                given_name: Some("Ada".into()),
                ..Default::default()
            }]),
            ..Default::default()
        })
        .doit()
        .await
        .unwrap();
    people
        .people()
        .delete_contact(person.resource_name.as_deref().unwrap())
        .doit()
        .await
        .unwrap();
    people
        .contact_groups()
        .delete(group.resource_name.as_deref().unwrap())
        .doit()
        .await
        .unwrap();

    // Deleting its own calendar works (after the ACL rules are read).
    hub.calendars().delete(&id).doit().await.unwrap();
}

/// A token without any scope a method lists gets Google's insufficient-scope answer, through
/// the official crates.
#[tokio::test]
async fn missing_scopes_are_403_insufficient_permissions() {
    let env = start().await;
    const READONLY: &[&str] = &[
        "https://www.googleapis.com/auth/calendar.readonly",
        "https://www.googleapis.com/auth/contacts.readonly",
    ];
    let hub = hub_with(&env, ALICE, READONLY).await;
    hub.events().list("primary").doit().await.unwrap();
    let err = hub
        .events()
        .insert(event("x"), "primary")
        .doit()
        .await
        .unwrap_err();
    assert_insufficient(&err, "calendar.v3.Events.Insert");
    let err = hub.acl().list("primary").doit().await.unwrap_err();
    assert_insufficient(&err, "calendar.v3.Acl.List");

    let people = people_with(&env, ALICE, READONLY).await;
    people
        .people()
        .connections_list("people/me")
        .person_fields(google_people1::FieldMask::new(&["names"]))
        .doit()
        .await
        .unwrap();
    let err = people
        .people()
        .create_contact(Person::default())
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(403), "{err}");
    let body = error_body(&err).unwrap();
    assert_eq!(
        body["error"]["errors"][0]["reason"],
        "insufficientPermissions"
    );
    assert_eq!(
        body["error"]["details"][0]["metadata"]["method"],
        "google.people.v1.PeopleService.CreateContact"
    );
    // Nothing was written.
    assert!(env.emu.dump_user(ALICE).unwrap().live_contacts().is_empty());

    // Acl writes are refused to acls.readonly, allowed with acls.
    let acl_ro = hub_with(
        &env,
        ALICE,
        &["https://www.googleapis.com/auth/calendar.acls.readonly"],
    )
    .await;
    acl_ro.acl().list("primary").doit().await.unwrap();
    let rule = AclRule {
        role: Some("reader".into()),
        scope: Some(AclRuleScope {
            type_: Some("user".into()),
            value: Some(BOB.into()),
        }),
        ..Default::default()
    };
    let err = acl_ro
        .acl()
        .insert(rule.clone(), "primary")
        .doit()
        .await
        .unwrap_err();
    assert_insufficient(&err, "calendar.v3.Acl.Insert");
    let acl_rw = hub_with(
        &env,
        ALICE,
        &["https://www.googleapis.com/auth/calendar.acls"],
    )
    .await;
    acl_rw.acl().insert(rule, "primary").doit().await.unwrap();
}

/// Every method the emulator serves, called with hand-written HTTP and tokens that hold one
/// scope each: allowed exactly when the table lists the scope (on a calendar the token's app
/// created, so `calendar.app.created` counts where listed), refused with Google's answer
/// (403 and a `WWW-Authenticate` naming the scopes that would do) otherwise.
#[tokio::test]
async fn each_scope_allows_exactly_its_methods() {
    let env = start().await;
    let full = env
        .emu
        .mint_access_token(ALICE, &[CALENDAR_SCOPE, CONTACTS_SCOPE])
        .unwrap();
    // A calendar created by the app all minted tokens belong to, with one event.
    let cal: Value = post(
        &env,
        &full,
        "/calendar/v3/calendars",
        json!({"summary": "CRM"}),
    )
    .await
    .1;
    let cal = cal["id"].as_str().unwrap().to_string();
    let enc = |s: &str| s.replace('@', "%40");
    let events = format!("/calendar/v3/calendars/{}/events", enc(&cal));
    let body = json!({"start": {"dateTime": "2025-05-01T09:00:00Z"}, "end": {"dateTime": "2025-05-01T10:00:00Z"}});
    let (_, ev) = post(&env, &full, &events, body.clone()).await;
    let ev = ev["id"].as_str().unwrap().to_string();

    // (method id, HTTP method, path, body); reads and harmless writes only, so that every
    // call can be repeated with each token.
    let calls: Vec<(&str, &str, String, Option<Value>)> = vec![
        (
            "calendar.calendarList.list",
            "GET",
            "/calendar/v3/users/me/calendarList".into(),
            None,
        ),
        (
            "calendar.calendarList.get",
            "GET",
            format!("/calendar/v3/users/me/calendarList/{}", enc(&cal)),
            None,
        ),
        (
            "calendar.calendars.get",
            "GET",
            format!("/calendar/v3/calendars/{}", enc(&cal)),
            None,
        ),
        ("calendar.events.list", "GET", events.clone(), None),
        ("calendar.events.get", "GET", format!("{events}/{ev}"), None),
        (
            "calendar.events.instances",
            "GET",
            format!("{events}/{ev}/instances"),
            None,
        ),
        (
            "calendar.events.patch",
            "PATCH",
            format!("{events}/{ev}"),
            Some(json!({"summary": "p"})),
        ),
        (
            "calendar.events.update",
            "PUT",
            format!("{events}/{ev}"),
            Some(body.clone()),
        ),
        (
            "calendar.acl.list",
            "GET",
            format!("/calendar/v3/calendars/{}/acl", enc(&cal)),
            None,
        ),
        (
            "calendar.acl.get",
            "GET",
            format!(
                "/calendar/v3/calendars/{}/acl/user:{}",
                enc(&cal),
                enc(ALICE)
            ),
            None,
        ),
        (
            "people.people.connections.list",
            "GET",
            "/v1/people/me/connections?personFields=names".into(),
            None,
        ),
        (
            "people.contactGroups.list",
            "GET",
            "/v1/contactGroups".into(),
            None,
        ),
        (
            "people.contactGroups.get",
            "GET",
            "/v1/contactGroups/myContacts".into(),
            None,
        ),
    ];
    let scopes = [
        "calendar",
        "calendar.readonly",
        "calendar.events",
        "calendar.events.readonly",
        "calendar.events.owned",
        "calendar.events.owned.readonly",
        "calendar.app.created",
        "calendar.calendars",
        "calendar.calendars.readonly",
        "calendar.calendarlist",
        "calendar.calendarlist.readonly",
        "calendar.acls",
        "calendar.acls.readonly",
        "calendar.events.freebusy",
        "calendar.settings.readonly",
        "contacts",
        "contacts.readonly",
        "contacts.other.readonly",
    ];
    for short in scopes {
        let token = env
            .emu
            .mint_access_token(ALICE, &[scope(short).as_str()])
            .unwrap();
        for (method, verb, path, body) in &calls {
            let allowed = method_scopes(method).unwrap().scopes.contains(&short);
            let mut request = env
                .http
                .request(verb.parse().unwrap(), env.url(path))
                .bearer_auth(&token);
            if let Some(b) = body {
                request = request.json(b);
            }
            let r = request.send().await.unwrap();
            let code = r.status().as_u16();
            if allowed {
                assert_eq!(code, 200, "{short} should allow {method}");
            } else {
                assert_eq!(code, 403, "{short} should not allow {method}");
                let wanted = r.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .to_string();
                assert!(wanted.contains("insufficient_scope"), "{wanted}");
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"]["errors"][0]["reason"], "insufficientPermissions");
            }
        }
    }
    // The table covers every method the emulator routes.
    for (method, ..) in &calls {
        assert!(METHOD_SCOPES.iter().any(|m| m.method == *method));
    }
}

/// `calendar.app.created` reaches a calendar only if the token's app created it: refresh
/// tokens minted for another (installed) app see none of the service account's calendars.
#[tokio::test]
async fn app_created_is_per_app() {
    let env = start().await;
    let engine = hub_with(&env, ALICE, &auth::SCOPES).await;
    let (_, cal) = engine
        .calendars()
        .insert(Calendar {
            summary: Some("CRM".into()),
            ..Default::default()
        })
        .doit()
        .await
        .unwrap();
    let id = cal.id.unwrap();
    let other_app = installed_app_token(&env, auth::CALENDAR_APP_CREATED_SCOPE).await;
    let r = env
        .http
        .get(env.url(&format!(
            "/calendar/v3/calendars/{}/events",
            id.replace('@', "%40")
        )))
        .bearer_auth(&other_app)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// Calendar ids are unique across users, as Google's: two users' calendars never share an
/// id, and a user cannot reach another's calendar by its id.
#[tokio::test]
async fn calendar_ids_are_unique_across_users() {
    let env = start().await;
    let alice = env.calendar(ALICE).await;
    let bob = env.calendar(BOB).await;
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..5 {
        for hub in [&alice, &bob] {
            let (_, cal) = hub
                .calendars()
                .insert(Calendar {
                    summary: Some(format!("c{i}")),
                    ..Default::default()
                })
                .doit()
                .await
                .unwrap();
            let id = cal.id.unwrap();
            assert!(id.ends_with("@group.calendar.google.com"), "{id}");
            assert!(ids.insert(id), "duplicate calendar id");
        }
    }
    let alices = env.emu.dump_user(ALICE).unwrap().calendars;
    let theirs = alices.iter().find(|c| !c.primary).unwrap();
    let id = theirs.calendar.id.clone().unwrap();
    let err = bob.events().list(&id).doit().await.unwrap_err();
    assert_eq!(status(&err), Some(404));
    let err = bob.calendars().get(&id).doit().await.unwrap_err();
    assert_eq!(status(&err), Some(404));
}

/// An access token of another app (an installed app's refresh token, exchanged at /token).
async fn installed_app_token(env: &Env, scope: &str) -> String {
    let refresh = env.emu.mint_refresh_token(ALICE, &[scope]).unwrap();
    let r: Value = env
        .http
        .post(env.emu.token_uri())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_string()
}

async fn post(env: &Env, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = env
        .http
        .post(env.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

async fn hub_with(
    env: &Env,
    user: &str,
    scopes: &'static [&'static str],
) -> crmsync::google::hub::Calendar {
    let auth = auth::impersonate_with_scopes(&env.key, user, scopes)
        .await
        .unwrap();
    crmsync::google::hub::calendar_hub(&env.emu.base_url(), auth).unwrap()
}

async fn people_with(
    env: &Env,
    user: &str,
    scopes: &'static [&'static str],
) -> crmsync::google::hub::People {
    let auth = auth::impersonate_with_scopes(&env.key, user, scopes)
        .await
        .unwrap();
    crmsync::google::hub::people_hub(&env.emu.base_url(), auth).unwrap()
}
