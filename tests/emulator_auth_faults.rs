//! OAuth, isolation, quota, fault injection, control API and persistence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use crmsync::emulator::{
    EmulatorOptions, FaultKind, FaultMatch, FaultRule, FaultTrigger, TestEmulator,
    GOOGLE_TOKEN_AUDIENCE, TEST_SERVICE_ACCOUNT_EMAIL,
};
use crmsync::google::auth::{self, AuthError, CALENDAR_SCOPE, CONTACTS_SCOPE};
use google_calendar3::api::Event;
use serde_json::{json, Value};

/// Sign a JWT with the shipped test key (ring), for hand-made assertions.
fn sign_jwt(claims: &Value) -> String {
    let key_json: Value = serde_json::from_slice(&std::fs::read(key_path()).unwrap()).unwrap();
    let pem = key_json["private_key"].as_str().unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let input = format!(
        "{}.{}",
        enc(br#"{"alg":"RS256","typ":"JWT"}"#),
        enc(claims.to_string().as_bytes())
    );
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", enc(&sig))
}

fn claims(env: &Env, sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": TEST_SERVICE_ACCOUNT_EMAIL,
        "aud": env.emu.token_uri(),
        "iat": now,
        "exp": now + 3600,
        "sub": sub,
        "scope": format!("{CALENDAR_SCOPE} {CONTACTS_SCOPE}"),
    })
}

async fn post_assertion(env: &Env, assertion: &str) -> (u16, Value) {
    let r = env
        .http
        .post(env.emu.token_uri())
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn is_invalid_grant(err: &AuthError) -> bool {
    matches!(
        err,
        AuthError::Token {
            source: yup_oauth2::Error::AuthError(e),
            ..
        } if e.error == yup_oauth2::error::AuthErrorCode::InvalidGrant
    )
}

/// The token endpoint checks signature, iss, aud, iat/exp and scope like Google.
#[tokio::test]
async fn jwt_bearer_grant_is_verified() {
    let env = start().await;
    let good = claims(&env, ALICE);
    let (code, body) = post_assertion(&env, &sign_jwt(&good)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);

    // Tampered signature.
    let mut tampered = sign_jwt(&good);
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (code, body) = post_assertion(&env, &tampered).await;
    assert_eq!((code, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(body["error_description"], "Invalid JWT Signature.");

    // Google's token URL is an accepted audience whatever endpoint receives the assertion
    // (google-auth always sends it), as is the endpoint's own URL.
    let mut google_aud = good.clone();
    google_aud["aud"] = json!(GOOGLE_TOKEN_AUDIENCE);
    let (code, body) = post_assertion(&env, &sign_jwt(&google_aud)).await;
    assert_eq!(code, 200, "{body}");
    let mut alias = good.clone();
    alias["aud"] = json!(env.url("/o/oauth2/token"));
    let r = env
        .http
        .post(env.url("/o/oauth2/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", sign_jwt(&alias).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Any other audience fails the audience check, as at Google.
    for aud in [
        json!("https://accounts.google.com/o/oauth2/token"),
        json!("https://www.googleapis.com/oauth2/v4/token"),
        json!("https://www.googleapis.com/calendar/v3/"),
        json!("http://127.0.0.1:1/token"),
        json!(env.url("/o/oauth2/token")),
        json!(format!("{}/", env.emu.token_uri())),
        json!(null),
    ] {
        let mut c = good.clone();
        c["aud"] = aud;
        let (code, body) = post_assertion(&env, &sign_jwt(&c)).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{c}"
        );
        assert_eq!(
            body["error_description"], "Invalid JWT: Failed audience check.",
            "{c}"
        );
    }

    // Claims signed correctly but wrong.
    let mut cases = Vec::new();
    let mut c = good.clone();
    c["iss"] = json!("someone-else@emulator.invalid");
    cases.push((c, "invalid_grant"));
    let mut c = good.clone();
    c["exp"] = json!(chrono::Utc::now().timestamp() - 10);
    cases.push((c, "invalid_grant"));
    let mut c = good.clone();
    c["exp"] = json!(chrono::Utc::now().timestamp() + 7200);
    cases.push((c, "invalid_grant"));
    let mut c = good.clone();
    c["scope"] = json!("");
    cases.push((c, "invalid_scope"));
    let mut c = good.clone();
    c["sub"] = json!("not-an-email");
    cases.push((c, "invalid_grant"));
    for (c, expected) in cases {
        let (code, body) = post_assertion(&env, &sign_jwt(&c)).await;
        assert_eq!((code, body["error"].as_str()), (400, Some(expected)), "{c}");
    }
    let r = env
        .http
        .post(env.emu.token_uri())
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
}

/// A key the emulator does not trust (same client_email, other RSA key) is refused through
/// yup-oauth2, and the hub call fails without reaching the API.
#[tokio::test]
async fn untrusted_key_is_refused() {
    let env = start().await;
    let mut key = env.key.clone();
    key.private_key = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/common/untrusted-test-key.pem"
    ))
    .unwrap();
    let untrusted = auth::impersonate(&key, ALICE).await.unwrap();
    let err = untrusted.access_token().await.unwrap_err();
    assert!(is_invalid_grant(&err), "{err}");
    let hub = crmsync::google::hub::calendar_hub(&env.emu.base_url(), untrusted).unwrap();
    let err = hub.events().list("primary").doit().await.unwrap_err();
    assert!(
        matches!(err, google_calendar3::Error::MissingToken(_)),
        "{err}"
    );
    assert_eq!(env.emu.counters().api_calls, 0);
}

/// With domains configured, only subjects in them get tokens.
#[tokio::test]
async fn foreign_domain_subject_is_refused() {
    let env = start_with(EmulatorOptions {
        domains: vec!["example.com".into()],
        ..Default::default()
    })
    .await;
    env.token(ALICE).await;
    let err = env
        .auth("eve@evil.test")
        .await
        .access_token()
        .await
        .unwrap_err();
    assert!(is_invalid_grant(&err), "{err}");
    assert!(env
        .emu
        .mint_refresh_token("eve@evil.test", &[CALENDAR_SCOPE])
        .is_err());
}

/// Bearer tokens are required and checked; scopes are enforced; refresh tokens minted through
/// the control API work until revoked, and revoking one kills its access tokens.
#[tokio::test]
async fn bearer_tokens_scopes_refresh_and_revoke() {
    let env = start().await;
    let events = env.url("/calendar/v3/calendars/primary/events");
    let r = env.http.get(&events).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["errors"][0]["reason"], "authError");
    let r = env
        .http
        .get(env.url("/v1/people/me/connections?personFields=names"))
        .bearer_auth("nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");

    // A contacts-only token cannot call Calendar.
    let contacts_only = env.emu.mint_access_token(ALICE, &[CONTACTS_SCOPE]).unwrap();
    let r = env
        .http
        .get(&events)
        .bearer_auth(&contacts_only)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Refresh token minted over the control API, exchanged at /token.
    let r: Value = env
        .http
        .post(env.url("/_emulator/refresh-tokens"))
        .json(&json!({"user": ALICE, "scopes": [CALENDAR_SCOPE]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = r["refresh_token"].as_str().unwrap().to_string();
    let exchange = || {
        env.http
            .post(env.emu.token_uri())
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
            ])
            .send()
    };
    let r = exchange().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let access = v["access_token"].as_str().unwrap().to_string();
    let r = env
        .http
        .get(&events)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Revoke the access token by query, then the refresh token by form body.
    let jwt_token = env.token(BOB).await;
    let r = env
        .http
        .post(env.url(&format!("/revoke?token={jwt_token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = env
        .http
        .get(&events)
        .bearer_auth(&jwt_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = env
        .http
        .post(env.url("/revoke"))
        .form(&[("token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = exchange().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_grant");
    let r = env
        .http
        .get(&events)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "access tokens of a revoked refresh token die with it"
    );
}

/// Each subject's data is isolated.
#[tokio::test]
async fn users_are_isolated() {
    let env = start().await;
    let alice = env.calendar(ALICE).await;
    let bob = env.calendar(BOB).await;
    alice
        .events()
        .insert(event(Some("shared0001"), base_time(), "a"), "primary")
        .doit()
        .await
        .unwrap();
    // Same id in another account: no conflict.
    bob.events()
        .insert(event(Some("shared0001"), base_time(), "b"), "primary")
        .doit()
        .await
        .unwrap();
    let (_, bobs) = bob.events().list("primary").doit().await.unwrap();
    let items = bobs.items.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].summary.as_deref(), Some("Meeting b"));
    let err = bob.events().list(ALICE).doit().await.unwrap_err();
    assert_eq!(
        status(&err),
        Some(404),
        "alice's calendar does not exist for bob"
    );

    let alice_people = env.people(ALICE).await;
    alice_people
        .people()
        .create_contact(google_people1::api::Person::default())
        .doit()
        .await
        .unwrap();
    let bob_people = env.people(BOB).await;
    let (_, list) = bob_people
        .people()
        .connections_list("people/me")
        .person_fields(google_people1::FieldMask::new(&["names"]))
        .doit()
        .await
        .unwrap();
    assert!(list.connections.unwrap_or_default().is_empty());
    let alice_contact = env.emu.dump_user(ALICE).unwrap().contacts[0]
        .person
        .resource_name
        .clone()
        .unwrap();
    let err = bob_people
        .people()
        .get(&alice_contact)
        .person_fields(google_people1::FieldMask::new(&["names"]))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(404));
    assert_eq!(env.emu.counters().user(BOB), 5);
}

/// Calendar per-user quota: 403 usageLimits/userRateLimitExceeded with Retry-After, per user,
/// sliding on the emulator clock.
#[tokio::test]
async fn calendar_quota_is_403_with_retry_after() {
    let env = start().await;
    let mut settings = env.emu.settings();
    settings.quota.calendar_per_user_per_minute = Some(5);
    env.emu.set_settings(settings);
    let cal = env.calendar(ALICE).await;
    for _ in 0..5 {
        cal.events().list("primary").doit().await.unwrap();
    }
    let err = cal.events().list("primary").doit().await.unwrap_err();
    assert_eq!(status(&err), Some(403));
    assert_eq!(reason(&err).as_deref(), Some("userRateLimitExceeded"));
    let body = error_body(&err).unwrap();
    assert_eq!(body["error"]["errors"][0]["domain"], "usageLimits");
    assert_eq!(body["error"]["message"], "User Rate Limit Exceeded");
    let r = env
        .http
        .get(env.url("/calendar/v3/calendars/primary/events"))
        .bearer_auth(env.token(ALICE).await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // Another user has their own window.
    env.calendar(BOB)
        .await
        .events()
        .list("primary")
        .doit()
        .await
        .unwrap();
    env.emu.advance_clock(Duration::from_secs(60));
    cal.events().list("primary").doit().await.unwrap();
    assert_eq!(env.emu.counters().quota_rejections, 2);
}

/// The per-project Calendar limit answers 403 `rateLimitExceeded` (or 429 when so set), not
/// the per-user reason; one user's calls count against the project window of all.
#[tokio::test]
async fn calendar_project_quota_is_rate_limit_exceeded() {
    for status_code in [403u16, 429] {
        let env = start().await;
        let mut settings = env.emu.settings();
        settings.quota.calendar_per_project_per_minute = Some(3);
        settings.quota.calendar_project_limit_status = status_code;
        env.emu.set_settings(settings);
        let alice = env.calendar(ALICE).await;
        let bob = env.calendar(BOB).await;
        alice.events().list("primary").doit().await.unwrap();
        alice.events().list("primary").doit().await.unwrap();
        bob.events().list("primary").doit().await.unwrap();
        let err = bob.events().list("primary").doit().await.unwrap_err();
        assert_eq!(status(&err), Some(u64::from(status_code)));
        assert_eq!(reason(&err).as_deref(), Some("rateLimitExceeded"));
        let body = error_body(&err).unwrap();
        assert_eq!(body["error"]["errors"][0]["domain"], "usageLimits");
        assert_eq!(body["error"]["message"], "Rate Limit Exceeded");
        env.emu.advance_clock(Duration::from_secs(60));
        bob.events().list("primary").doit().await.unwrap();
    }
}

fn nth(endpoint: &str, n: u64, fault: FaultKind) -> FaultRule {
    FaultRule {
        matches: FaultMatch {
            endpoint: Some(endpoint.into()),
            ..Default::default()
        },
        trigger: FaultTrigger::Nth { n, times: 1 },
        fault,
    }
}

/// Scripted 500, 503 and 429 (with Retry-After), on the n-th matching call only; also inside a
/// batch part.
#[tokio::test]
async fn scripted_status_faults() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    env.emu.add_fault(nth(
        "calendar.events.list",
        2,
        FaultKind::Status {
            code: 500,
            retry_after_secs: None,
        },
    ));
    env.emu.add_fault(nth(
        "calendar.events.list",
        3,
        FaultKind::Status {
            code: 503,
            retry_after_secs: None,
        },
    ));
    env.emu.add_fault(nth(
        "calendar.events.list",
        4,
        FaultKind::Status {
            code: 429,
            retry_after_secs: Some(7),
        },
    ));
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(match cal.events().list("primary").doit().await {
            Ok(_) => 200,
            Err(e) => status(&e).unwrap(),
        });
    }
    assert_eq!(codes, vec![200, 500, 503, 429, 200]);
    env.emu.clear_faults();
    env.emu.add_fault(FaultRule {
        matches: FaultMatch {
            endpoint: Some("calendar.events.*".into()),
            user: Some(ALICE.into()),
            method: Some("GET".into()),
        },
        trigger: FaultTrigger::Always,
        fault: FaultKind::Status {
            code: 429,
            retry_after_secs: Some(7),
        },
    });
    let r = env
        .http
        .get(env.url("/calendar/v3/calendars/primary/events"))
        .bearer_auth(env.token(ALICE).await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    // Inside a batch the faulted part fails, the others do not.
    let body = "--b\r\nContent-Type: application/http\r\n\r\nGET /calendar/v3/calendars/primary/events HTTP/1.1\r\n\r\n\r\n--b\r\nContent-Type: application/http\r\n\r\nGET /calendar/v3/users/me/calendarList HTTP/1.1\r\n\r\n\r\n--b--\r\n";
    let text = env
        .http
        .post(env.url("/batch/calendar/v3"))
        .bearer_auth(env.token(ALICE).await)
        .header("Content-Type", "multipart/mixed; boundary=b")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let statuses: Vec<&str> = text.lines().filter(|l| l.starts_with("HTTP/1.1")).collect();
    assert_eq!(
        statuses,
        vec!["HTTP/1.1 429 Too Many Requests", "HTTP/1.1 200 OK"]
    );
    assert_eq!(env.emu.counters().faults_injected, 5);
}

/// A slow response arrives after the configured delay.
#[tokio::test]
async fn slow_response_fault() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    cal.events().list("primary").doit().await.unwrap();
    env.emu
        .add_fault(nth("calendar.events.list", 1, FaultKind::Delay { ms: 300 }));
    let started = Instant::now();
    cal.events().list("primary").doit().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// A dropped connection: the client gets a transport error and nothing was written.
#[tokio::test]
async fn dropped_connection_fault() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    env.emu
        .add_fault(nth("calendar.events.insert", 1, FaultKind::DropConnection));
    let err = cal
        .events()
        .insert(event(Some("dropped01"), base_time(), "d"), "primary")
        .doit()
        .await
        .unwrap_err();
    assert!(
        matches!(err, google_calendar3::Error::HttpError(_)),
        "{err}"
    );
    assert!(
        env.emu
            .dump_user(ALICE)
            .is_none_or(|d| d.live_events(ALICE).is_empty()),
        "nothing was written"
    );
    // The retry succeeds.
    cal.events()
        .insert(event(Some("dropped01"), base_time(), "d"), "primary")
        .doit()
        .await
        .unwrap();
}

/// A lost response: the write is applied although the client saw an error; the retry with the
/// same id gets 409.
#[tokio::test]
async fn lost_response_fault() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    env.emu
        .add_fault(nth("calendar.events.insert", 1, FaultKind::LostResponse));
    let err = cal
        .events()
        .insert(event(Some("lost00001"), base_time(), "l"), "primary")
        .doit()
        .await
        .unwrap_err();
    assert!(
        matches!(err, google_calendar3::Error::HttpError(_)),
        "{err}"
    );
    let dump = env.emu.dump_user(ALICE).unwrap();
    assert_eq!(dump.live_events(ALICE).len(), 1, "the write was applied");
    let err = cal
        .events()
        .insert(event(Some("lost00001"), base_time(), "l"), "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(409));

    // Same for People.
    let people = env.people(ALICE).await;
    env.emu.add_fault(nth(
        "people.people.createContact",
        1,
        FaultKind::LostResponse,
    ));
    let err = people
        .people()
        .create_contact(google_people1::api::Person::default())
        .doit()
        .await
        .unwrap_err();
    assert!(matches!(err, google_people1::Error::HttpError(_)), "{err}");
    assert_eq!(env.emu.dump_user(ALICE).unwrap().live_contacts().len(), 1);
}

/// Rate-based faults are reproducible from the seed.
#[tokio::test]
async fn rate_faults_are_deterministic_with_a_seed() {
    let env = start().await;
    let cal = env.calendar(ALICE).await;
    let rule = FaultRule {
        matches: FaultMatch {
            endpoint: Some("calendar.events.list".into()),
            ..Default::default()
        },
        trigger: FaultTrigger::Rate { probability: 0.5 },
        fault: FaultKind::Status {
            code: 503,
            retry_after_secs: None,
        },
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        env.emu.clear_faults();
        env.emu.reseed_faults(42);
        env.emu.add_fault(rule.clone());
        let mut pattern = Vec::new();
        for _ in 0..30 {
            pattern.push(cal.events().list("primary").doit().await.is_ok());
        }
        runs.push(pattern);
    }
    assert_eq!(runs[0], runs[1]);
    let failures = runs[0].iter().filter(|ok| !**ok).count();
    assert!((5..=25).contains(&failures), "{failures}");
}

/// The control API over HTTP: reset, faults, clock, dumps, counters (API calls exclude token
/// and control requests).
#[tokio::test]
async fn control_api_over_http() {
    let env = start().await;
    let control = |path: &str| env.url(&format!("/_emulator/{path}"));
    let cal = env.calendar(ALICE).await;
    cal.events()
        .insert(event(Some("ctl000001"), base_time(), "c"), "primary")
        .doit()
        .await
        .unwrap();
    let r = env.http.post(control("reset")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(env.emu.dump_user(ALICE).is_none());

    let cal = env.calendar(ALICE).await; // fresh tokens after the reset
    let fault: Value = env
        .http
        .post(control("faults"))
        .json(&json!({
            "matches": {"endpoint": "calendar.events.get"},
            "trigger": {"mode": "nth", "n": 1},
            "fault": {"kind": "status", "code": 500}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(fault["id"].as_u64().is_some());
    cal.events()
        .insert(event(Some("ctl000002"), base_time(), "c"), "primary")
        .doit()
        .await
        .unwrap();
    let err = cal
        .events()
        .get("primary", "ctl000002")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(status(&err), Some(500));
    let faults: Value = env
        .http
        .get(control("faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults[0]["fired"], 1);
    env.http.delete(control("faults")).send().await.unwrap();
    cal.events()
        .get("primary", "ctl000002")
        .doit()
        .await
        .unwrap();

    let before = env.emu.now();
    let r: Value = env
        .http
        .post(control("clock/advance"))
        .json(&json!({"seconds": 3600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["now"].is_string());
    assert!(env.emu.now() - before >= chrono::Duration::seconds(3600));

    let dump: Value = env
        .http
        .get(control(&format!("users/{ALICE}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dump["calendars"][0]["events"][0]["id"], "ctl000002");
    let r = env
        .http
        .get(control("users/nobody@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let counters: Value = env
        .http
        .get(control("counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["api_calls"], 3, "insert, failed get, get");
    assert_eq!(counters["by_user"][ALICE], 3);
    assert_eq!(counters["by_endpoint"]["calendar.events.get"], 2);
    assert!(counters["token_requests"].as_u64().unwrap() >= 1);
    assert!(counters["control_requests"].as_u64().unwrap() >= 5);

    let r = env
        .http
        .post(control("sync-tokens/expire"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let settings: Value = env
        .http
        .get(control("settings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["quota"]["calendar_per_user_per_minute"], 600);
}

/// With a state file, data and tokens survive a restart.
#[tokio::test]
async fn state_file_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("emulator-state.json");
    let options = EmulatorOptions {
        state_file: Some(path.clone()),
        ..Default::default()
    };
    let env = start_with(options.clone()).await;
    let cal = env.calendar(ALICE).await;
    cal.events()
        .insert(
            Event {
                summary: Some("persisted".into()),
                ..event(Some("persist01"), base_time(), "p")
            },
            "primary",
        )
        .doit()
        .await
        .unwrap();
    let token = env.token(ALICE).await;
    env.emu.shutdown().await;
    assert!(path.exists());

    let emu = TestEmulator::start(options).await.unwrap();
    let dump = emu.dump_user(ALICE).unwrap();
    assert_eq!(
        dump.live_events(ALICE)[0].summary.as_deref(),
        Some("persisted")
    );
    let r = reqwest::Client::new()
        .get(format!(
            "{}/calendar/v3/calendars/primary/events/persist01",
            emu.base_url()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The CLI entry point binds, serves until the shutdown future completes (any output type,
/// e.g. `tokio::signal::ctrl_c()`), and writes the state file.
#[tokio::test]
async fn run_until_shutdown_stops_and_writes_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let options = EmulatorOptions {
        state_file: Some(path.clone()),
        ..Default::default()
    };
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crmsync::emulator::run_until_shutdown(
        addr, options, stopped,
    ));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(path.exists());
    // Type check only: ctrl_c() is accepted as a shutdown future.
    let _ = || {
        crmsync::emulator::run_until_shutdown(
            addr,
            EmulatorOptions::default(),
            tokio::signal::ctrl_c(),
        )
    };
}
