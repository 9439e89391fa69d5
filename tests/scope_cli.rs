//! `crmsync scope show|set|reset` through the built binary, against a temp-dir config.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

mod cli_support;

use cli_support::Env;

fn setting<'a>(v: &'a Value, key: &str) -> (&'a str, &'a str) {
    let s = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap();
    (s["value"].as_str().unwrap(), s["source"].as_str().unwrap())
}

const CONFIG: &str = r#"
[scope.org]
event = "all_visible"
[scope.profile.sales]
contact = "team"
[scope.role.mgr_east]
days_future = 90
"#;

#[test]
fn show_set_reset_with_sources_and_fingerprints() {
    let env = Env::new(CONFIG);
    let v = env.json(&["scope", "show", "erin", "--json"]);
    assert_eq!(
        setting(&v, "contact"),
        ("team", "config [scope.profile.sales]")
    );
    assert_eq!(setting(&v, "event"), ("all_visible", "config [scope.org]"));
    assert_eq!(
        setting(&v, "days_future"),
        ("90", "config [scope.role.mgr_east]")
    );
    assert_eq!(
        setting(&v, "direction"),
        ("crm_to_google", "built-in default")
    );
    let before = v["fingerprint"].as_str().unwrap().to_owned();

    let v = env.json(&[
        "scope",
        "set",
        "erin",
        "contact=filter",
        "contact_tags=vip",
        "direction=two_way",
        "conflict_policy=newest_wins",
        "google_delete=restore",
        "days_past=7",
        "--json",
    ]);
    assert_eq!(
        setting(&v, "contact"),
        ("filter", "user override (scope set)")
    );
    assert_eq!(
        setting(&v, "contact_tags"),
        ("vip", "user override (scope set)")
    );
    assert_eq!(
        setting(&v, "direction"),
        ("two_way", "user override (scope set)")
    );
    assert_eq!(
        setting(&v, "google_delete"),
        ("restore", "user override (scope set)")
    );
    assert_ne!(v["fingerprint"].as_str().unwrap(), before);
    // Persisted: show sees it, and explain syncs c1 (vip) but not c2.
    let shown = env.json(&["scope", "show", "erin", "--json"]);
    assert_eq!(shown["fingerprint"], v["fingerprint"]);
    let c1 = env.json(&[
        "access",
        "explain",
        "--user",
        "erin",
        "--record",
        "contact:c1",
        "--json",
    ]);
    assert_eq!(c1["sync"]["synced"], true, "{c1}");
    let c2 = env.json(&[
        "access",
        "explain",
        "--user",
        "erin",
        "--record",
        "contact:c2",
        "--json",
    ]);
    assert_eq!(c2["sync"]["synced"], false);

    // `inherit` drops one override.
    let v = env.json(&["scope", "set", "erin", "direction=inherit", "--json"]);
    assert_eq!(
        setting(&v, "direction"),
        ("crm_to_google", "built-in default")
    );
    assert_eq!(
        setting(&v, "contact"),
        ("filter", "user override (scope set)")
    );

    let out = env.run(&["scope", "reset", "erin"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Removed 5 override(s) of erin."));
    let v = env.json(&["scope", "show", "erin", "--json"]);
    assert_eq!(
        v["fingerprint"].as_str().unwrap(),
        before,
        "back to the defaults"
    );
}

#[test]
fn bad_input_exits_2_and_stores_nothing() {
    let env = Env::new("");
    let before = env.json(&["scope", "show", "erin", "--json"]);
    for (args, needle) in [
        (
            vec!["scope", "set", "erin", "colour=red"],
            "unknown scope setting \"colour\"",
        ),
        (
            vec!["scope", "set", "erin", "contact=most"],
            "contact=\"most\" is not valid",
        ),
        (
            vec!["scope", "set", "erin", "contact=filter"],
            "contact=filter needs contact_tags or contact_organizations",
        ),
        (
            vec![
                "scope",
                "set",
                "erin",
                "contact=filter",
                "contact_tags=nosuch",
            ],
            "no contact in the CRM has the tag \"nosuch\"",
        ),
        (
            vec![
                "scope",
                "set",
                "erin",
                "contact=filter",
                "contact_organizations=o9",
            ],
            "unknown organization \"o9\"",
        ),
        (
            vec!["scope", "set", "erin", "days_past=lots"],
            "days_past=\"lots\" is not valid",
        ),
        (
            vec!["scope", "set", "erin", "direction=two_way", "bogus"],
            "expected KEY=VALUE",
        ),
        (
            vec!["scope", "set", "zed", "contact=mine"],
            "unknown user \"zed\"",
        ),
        (vec!["scope", "show", "zed"], "unknown user \"zed\""),
        (vec!["scope", "reset", "zed"], "unknown user \"zed\""),
    ] {
        let err = env.fails(&args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A valid setting together with an invalid one stores neither.
    env.fails(&["scope", "set", "erin", "direction=two_way", "contact=most"]);
    let after = env.json(&["scope", "show", "erin", "--json"]);
    assert_eq!(before, after);

    // Config naming an unknown role.
    let bad = Env::new("[scope.role.boss]\ncontact = \"mine\"\n");
    let err = bad.fails(&["scope", "show", "erin"]);
    assert!(
        err.contains("[scope.role.boss] names a role that does not exist"),
        "{err}"
    );
}

#[test]
fn set_help_documents_the_syntax() {
    let env = Env::new("");
    let out = env.run(&["scope", "set", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "contact=mine|team|all_visible|filter|none",
        "contact_tags=",
        "KEY=inherit",
        "google_delete=",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}
