//! The binary end to end: `crm load`, `sync --json`, `sync --dry-run`, `status --json`,
//! `audit --json`, exit codes — against an in-process emulator, with a TOML config in a
//! temp dir. The binary runs on a blocking thread while the emulator serves in the test's
//! runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crmsync::emulator::{EmulatorOptions, EmulatorSettings, QuotaConfig, TestEmulator};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn key_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/emulator-service-account.json")
}

fn fixture() -> String {
    format!(
        "{}/tests/fixtures/example-org.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn write_config(dir: &Path, emu: &TestEmulator, key: &Path) -> PathBuf {
    let cfg = dir.join("crmsync.toml");
    let text = format!(
        r#"[state]
path = "state.db"

[crm]
path = "crm.db"

[google]
base_url = "{base}/"
token_uri = "{token}"
service_account_key = "{key}"

[scope.org]
contact = "all_visible"
event = "all_visible"
direction = "two_way"
"#,
        base = emu.base_url(),
        token = emu.token_uri(),
        key = key.display(),
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Runs the binary on a blocking thread (the emulator keeps serving meanwhile).
async fn crmsync(dir: &Path, args: &[&str]) -> Output {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_crmsync"))
            .args(&args)
            .current_dir(&dir)
            .env_remove("CRMSYNC_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

async fn emulator() -> TestEmulator {
    TestEmulator::start(EmulatorOptions {
        settings: EmulatorSettings {
            quota: QuotaConfig::unlimited(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

fn user<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == id)
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn load_sync_dry_run_status_and_audit_through_the_binary() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &emu, &key_path());
    let cfg = cfg.to_str().unwrap();

    ok(&crmsync(dir.path(), &["--config", cfg, "crm", "load", &fixture()]).await);
    ok(&crmsync(dir.path(), &["--config", cfg, "init"]).await);

    // A dry run before anything was synced: a plan, nothing written to Google.
    let dry = ok(&crmsync(
        dir.path(),
        &["--config", cfg, "--json", "sync", "--dry-run"],
    )
    .await);
    assert_eq!(dry["dry_run"], true);
    let frank = user(&dry, "frank");
    assert_eq!(frank["status"], "planned");
    assert!(frank["plan"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["record"] == "contact:c1" && l["case"] == "new"));
    assert!(
        emu.dump_user("frank@acme.example").is_none(),
        "nothing in Google"
    );

    // The real pass.
    let report = ok(&crmsync(dir.path(), &["--config", cfg, "--json", "sync"]).await);
    assert_eq!(report["dry_run"], false);
    for u in report["users"].as_array().unwrap() {
        assert_eq!(u["status"], "synced", "{u}");
    }
    assert_eq!(user(&report, "frank")["contacts"]["created"], 1);
    assert_eq!(user(&report, "alice")["contacts"]["created"], 1);
    let dump = emu.dump_user("frank@acme.example").unwrap();
    assert_eq!(dump.live_contacts().len(), 1);

    // A second pass is quiet; the human report also works.
    let again = ok(&crmsync(dir.path(), &["--config", cfg, "--json", "sync"]).await);
    for u in again["users"].as_array().unwrap() {
        for kind in ["contacts", "events"] {
            for field in ["created", "updated", "deleted", "written_back", "errors"] {
                assert_eq!(u[kind][field], 0, "{} {kind}.{field}", u["user"]);
            }
        }
    }
    let human = crmsync(dir.path(), &["--config", cfg, "sync", "--user", "frank"]).await;
    assert!(human.status.success());
    assert!(String::from_utf8_lossy(&human.stdout).contains("frank"));

    let status = ok(&crmsync(dir.path(), &["--config", cfg, "--json", "status"]).await);
    let rows = status["users"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert!(r["last_success_at"].is_string(), "{r}");
        assert_eq!(r["stale"], false);
        assert!(r["last_error"].is_null());
    }
    let frank = rows.iter().find(|r| r["user"] == "frank").unwrap();
    assert_eq!(frank["links"]["contact_linked"], 1);

    let audit = ok(&crmsync(
        dir.path(),
        &["--config", cfg, "--json", "audit", "--user", "frank"],
    )
    .await);
    let lines = audit.as_array().unwrap();
    assert!(lines
        .iter()
        .any(|e| e["action"] == "copied_to_google" && e["record"] == "contact:c1"));
    assert!(lines.iter().all(|e| e["user_id"] == "frank"));

    // Usage errors exit 2: an unknown user.
    let nobody = crmsync(dir.path(), &["--config", cfg, "sync", "--user", "nobody"]).await;
    assert_eq!(nobody.status.code(), Some(2), "{nobody:?}");
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("nobody"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_config_with_a_bad_key_exits_2() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    // A config key that does not exist.
    let cfg = dir.path().join("typo.toml");
    std::fs::write(&cfg, "[google]\nbase_urll = \"http://127.0.0.1:1/\"\n").unwrap();
    let out = crmsync(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "sync", "--json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("base_urll"));

    // A service-account key file that is not a key.
    let bad_key = dir.path().join("not-a-key.json");
    std::fs::write(&bad_key, "{\"type\": \"nonsense\"}").unwrap();
    let cfg = write_config(dir.path(), &emu, &bad_key);
    ok(&crmsync(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "crm", "load", &fixture()],
    )
    .await);
    ok(&crmsync(dir.path(), &["--config", cfg.to_str().unwrap(), "init"]).await);
    let out = crmsync(dir.path(), &["--config", cfg.to_str().unwrap(), "sync"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(emu.dump_user("frank@acme.example").is_none());
}
