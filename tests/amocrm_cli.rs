//! The built binary with `[crm] source = "amocrm"` against the fake amoCRM: `access
//! explain` reads amoCRM's rights through the connector (paced at 7 requests per second on
//! real time), `crm show|load|export` are refused naming amoCRM, and configuration problems
//! exit 2 naming the cause.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod amocrm_support;
mod connector_support;

use amocrm_support::{private_file, FakeAmo, LONG_LIVED};
use std::path::Path;
use std::process::{Command, Output};

fn write_config(dir: &Path, fake: &FakeAmo, auth: &str) -> std::path::PathBuf {
    let path = dir.join("crmsync.toml");
    std::fs::write(
        &path,
        format!(
            "[state]\npath = \"state.db\"\n[crm]\nsource = \"amocrm\"\n[crm.amocrm]\n\
             base_url = \"{}\"\ngoogle_domains = [\"acme.example\"]\n{auth}\n",
            fake.base_url()
        ),
    )
    .unwrap();
    // The state DB is created only on purpose, once (init sends nothing to amoCRM).
    if !dir.join("state.db").exists() {
        let init = run(&path, &["init"]);
        assert!(init.status.success(), "{init:?}");
    }
    path
}

fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crmsync"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CRMSYNC_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn access_explain_reads_amocrm_rights_and_crm_show_is_refused() {
    let fake = FakeAmo::start();
    let dir = tempfile::tempdir().unwrap();
    private_file(dir.path(), "token", LONG_LIVED);
    let config = write_config(dir.path(), &fake, "access_token = { file = \"token\" }");
    let out = run(
        &config,
        &[
            "access",
            "explain",
            "--user",
            "5002",
            "--record",
            "contact:104",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Erin: contacts view A, edit M; Ada Lovelace is Frank's.
    assert_eq!(v["read"], true);
    assert_eq!(v["edit"], false);
    assert!(!stderr.contains(LONG_LIVED));
    assert!(fake
        .state()
        .log
        .iter()
        .all(|l| l.auth == format!("Bearer {LONG_LIVED}")));

    // The embedded CRM's commands are refused, naming the configured CRM.
    let org = format!(
        "{}/tests/fixtures/example-org.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let export = dir.path().join("export.json");
    for args in [
        vec!["crm", "show", "contact", "104"],
        vec!["crm", "load", org.as_str()],
        vec!["crm", "export", export.to_str().unwrap()],
    ] {
        let out = run(&config, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("embedded CRM only")
                && stderr.contains("amoCRM ([crm] source = \"amocrm\")"),
            "{args:?}: {stderr}"
        );
    }
    assert!(!export.exists() && !dir.path().join("crmsync-crm.db").exists());
}

#[test]
fn configuration_problems_exit_2_and_name_the_cause() {
    let fake = FakeAmo::start();
    let dir = tempfile::tempdir().unwrap();
    // A token file others may read.
    let token = dir.path().join("token");
    std::fs::write(&token, LONG_LIVED).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = write_config(dir.path(), &fake, "access_token = { file = \"token\" }");
        let out = run(&config, &["access", "list", "--user", "5002"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    }
    // A missing token file for the refresh flow.
    let config = write_config(
        dir.path(),
        &fake,
        "[crm.amocrm.oauth]\nclient_id = \"i\"\nclient_secret = { env = \"PATH\" }\n\
         redirect_uri = \"https://x.example/cb\"\ntoken_file = \"missing.json\"",
    );
    let out = run(&config, &["access", "list", "--user", "5002"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
    // A bad key in the section.
    let config = write_config(
        dir.path(),
        &fake,
        "access_token = { env = \"PATH\" }\nrequests_per_second = 20",
    );
    let out = run(&config, &["access", "list", "--user", "5002"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("crm.amocrm.requests_per_second"));
    assert!(fake.state().log.is_empty(), "nothing was sent");
}
