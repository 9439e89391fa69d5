//! The binary: `crm load` / `crm show`, configuration errors and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn crmsync(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crmsync"))
        .args(args)
        .current_dir(dir)
        .env_remove("CRMSYNC_CONFIG")
        .output()
        .unwrap()
}

fn fixture() -> String {
    format!(
        "{}/tests/fixtures/example-org.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn load_then_show_prints_the_normalised_contact() {
    let dir = tempfile::tempdir().unwrap();
    let out = crmsync(dir.path(), &["crm", "load", &fixture()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("18 change(s)"));

    let out = crmsync(dir.path(), &["crm", "show", "contact", "c1", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["record"]["phones"][0]["number"], "+442079460000");
    assert_eq!(v["record"]["emails"][0]["address"], "ada@globex.example");
    assert_eq!(v["kind"], "contact");

    let out = crmsync(dir.path(), &["crm", "show", "contact", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no contact with id \"nope\""));
}

#[test]
fn a_bad_org_file_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"org": {"name": "X"}, "users": [{"id": "u", "name": "U", "email": "u@x.example", "role": "ghost"}]}"#).unwrap();
    let out = crmsync(dir.path(), &["crm", "load", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("users[0].role: unknown role \"ghost\""),
        "{err}"
    );
    assert!(!dir.path().join("crmsync-crm.db").exists());
}

#[test]
fn a_bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[sync]\nmax_delete_fraction = 2\n").unwrap();
    let out = crmsync(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "crm", "load", &fixture()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sync.max_delete_fraction"));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = crmsync(dir.path(), &["crm", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_corrupt_state_db_is_a_clear_error_that_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("crmsync-state.db"),
        b"this is not a database at all, sorry",
    )
    .unwrap();
    let out = crmsync(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("crmsync-state.db"), "{err}");
    assert!(err.contains("not a database"), "{err}");
    // Nothing was rewritten.
    assert_eq!(
        std::fs::read(dir.path().join("crmsync-state.db")).unwrap(),
        b"this is not a database at all, sorry"
    );
}
