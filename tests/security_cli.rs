//! `crmsync access explain|list` through the built binary, against a temp-dir config.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use cli_support::Env;

#[test]
fn explain_prints_the_decision_reasons_and_the_sync_verdict() {
    let env = Env::new("");
    let v = env.json(&[
        "access",
        "explain",
        "--user",
        "erin",
        "--record",
        "contact:c3",
        "--json",
    ]);
    assert_eq!(v["user"], "erin");
    assert_eq!(v["record"], "contact:c3");
    assert_eq!(
        (v["read"].as_bool(), v["edit"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        (v["create"].as_bool(), v["delete"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        v["reasons"],
        serde_json::json!(["sharing rule r1 grants read (owner hank in role_and_subordinates mgr_west; erin in role mgr_east)"])
    );
    assert!(v["denied"]["edit"]
        .as_str()
        .unwrap()
        .contains("grant is read"));
    // Built-in scope: contact=mine, so c3 (hank's) is not synced to erin.
    assert_eq!(v["sync"]["synced"], false);
    assert!(v["sync"]["reasons"]
        .to_string()
        .contains("outside scope contact=mine"));
    assert_eq!(v["sync"]["scope_fingerprint"].as_str().unwrap().len(), 64);

    let out = env.run(&[
        "access",
        "explain",
        "--user",
        "chris",
        "--record",
        "contact:c1",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("read    no"), "{text}");
    assert!(
        text.contains("profile gate: profile no_contacts has no read right on contact"),
        "{text}"
    );
    assert!(text.contains("role hierarchy grants full"), "{text}");

    let v = env.json(&[
        "access",
        "explain",
        "--user",
        "nina",
        "--record",
        "contact:c12",
        "--json",
    ]);
    assert_eq!(v["read"], true);
    assert_eq!(v["sync"]["synced"], false);
    assert!(v["sync"]["reasons"].to_string().contains("export gate"));
}

#[test]
fn list_prints_what_a_user_may_read() {
    let env = Env::new("");
    let v = env.json(&["access", "list", "--user", "fiona", "--json"]);
    assert_eq!(v["contact"], serde_json::json!(["c6"]));
    assert_eq!(v["event"], serde_json::json!(["e1", "e2", "e3"]));
    assert_eq!(v["organization"], serde_json::json!(["o1", "o2"]));
    let v = env.json(&[
        "access", "list", "--user", "hank", "--kind", "event", "--json",
    ]);
    assert_eq!(v["event"], serde_json::json!(["e1", "e2", "e4"]));
    assert!(v.get("contact").is_none());
    let out = env.run(&["access", "list", "--user", "leo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("contact (0): (none)"), "{text}");
}

#[test]
fn unknown_users_records_and_kinds_exit_2() {
    let env = Env::new("");
    let err = env.fails(&[
        "access",
        "explain",
        "--user",
        "zed",
        "--record",
        "contact:c1",
    ]);
    assert!(err.contains("unknown user \"zed\""), "{err}");
    let err = env.fails(&[
        "access",
        "explain",
        "--user",
        "erin",
        "--record",
        "contact:c99",
    ]);
    assert!(err.contains("no record contact:c99"), "{err}");
    let err = env.fails(&["access", "explain", "--user", "erin", "--record", "lead:l1"]);
    assert!(err.contains("unknown record kind \"lead\""), "{err}");
    let err = env.fails(&["access", "explain", "--user", "erin", "--record", "c1"]);
    assert!(err.contains("KIND:ID"), "{err}");
    let err = env.fails(&["access", "list", "--user", "erin", "--kind", "lead"]);
    assert!(err.contains("--kind"), "{err}");
    let err = env.fails(&["access", "list", "--user", "bad id"]);
    assert!(err.contains("may only contain"), "{err}");
    // A config naming an unknown profile is a configuration error.
    let bad = Env::new("[scope.profile.nosuch]\ncontact = \"mine\"\n");
    let err = bad.fails(&["access", "list", "--user", "erin"]);
    assert!(err.contains("nosuch"), "{err}");
}

#[test]
fn a_reloaded_role_move_shows_up_without_any_record_changing() {
    let env = Env::new("");
    let before = env.json(&[
        "access", "list", "--user", "gary", "--kind", "contact", "--json",
    ]);
    assert!(before["contact"].to_string().contains("\"c3\""));
    // Hank moves from West to East; the org file's records are untouched.
    let text = include_str!("fixtures/security-org.json").replace(
        r#""profile": "sales", "role": "rep_west", "google_account": "hank@acme.example""#,
        r#""profile": "sales", "role": "rep_east", "google_account": "hank@acme.example""#,
    );
    let moved = env.dir.path().join("moved.json");
    std::fs::write(&moved, text).unwrap();
    let out = env.run(&["crm", "load", moved.to_str().unwrap()]);
    assert!(out.status.success());
    let after = env.json(&[
        "access", "list", "--user", "gary", "--kind", "contact", "--json",
    ]);
    assert!(!after["contact"].to_string().contains("\"c3\""), "{after}");
    let v = env.json(&[
        "access",
        "explain",
        "--user",
        "gary",
        "--record",
        "contact:c3",
        "--json",
    ]);
    assert_eq!(v["read"], false);
}
