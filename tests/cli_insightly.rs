//! The binary with `[crm] source = "insightly"`: `sync` and `access` go through
//! `crm::open_source` against the fake Insightly API (its own thread) and the in-process
//! Google emulator; `crm load` is refused (exit 2); configuration problems with keys exit 2;
//! an unreachable Insightly exits 1; no key shows on stderr even at `-vv`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connector_support;
mod insightly_fake;

use base64::Engine as _;
use crmsync::emulator::{EmulatorOptions, EmulatorSettings, QuotaConfig, TestEmulator};
use insightly_fake::{key_of, FakeInsightly};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn key_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/emulator-service-account.json")
}

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/insightly/model.json")
}

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A config using Insightly at `base_url` with the admin key in `admin.key`.
fn write_config(dir: &Path, base_url: &str, google: Option<&TestEmulator>, extra: &str) -> String {
    private_file(&dir.join("admin.key"), &format!("{}\n", key_of(100)));
    let google = match google {
        Some(emu) => format!(
            "[google]\nbase_url = \"{}/\"\ntoken_uri = \"{}\"\nservice_account_key = \"{}\"\n",
            emu.base_url(),
            emu.token_uri(),
            key_path().display()
        ),
        None => String::new(),
    };
    let text = format!(
        r#"[state]
path = "state.db"

[crm]
source = "insightly"

[crm.insightly]
base_url = "{base_url}"
mode = "admin_key"
shadow_path = "insightly-shadow.db"
admin_key = {{ file = "admin.key" }}
model_file = "{model}"
requests_per_second = 10.0
{extra}

{google}
[scope.org]
contact = "all_visible"
event = "all_visible"
direction = "two_way"
"#,
        model = model_path().display(),
    );
    let path = dir.join("crmsync.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_owned();
    // The state DB is created only on purpose.
    let init = run(
        dir,
        &["--config".to_owned(), path.clone(), "init".to_owned()],
    );
    assert!(init.status.success(), "{init:?}");
    path
}

fn run(dir: &Path, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crmsync"))
        .args(args)
        .current_dir(dir)
        .env_remove("CRMSYNC_CONFIG")
        .env_remove("CRMSYNC_LOG")
        .output()
        .unwrap()
}

/// Runs the binary on a blocking thread (the emulator keeps serving meanwhile).
async fn crmsync(dir: &Path, args: &[&str]) -> Output {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || run(&dir, &args))
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn assert_no_key(text: &str) {
    let key = key_of(100);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    assert!(!text.contains(&key), "the key leaked: {text}");
    assert!(
        !text.contains(&basic),
        "the Basic credential leaked: {text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn sync_and_access_run_against_insightly() {
    let fake = FakeInsightly::start();
    let emu = TestEmulator::start(EmulatorOptions {
        settings: EmulatorSettings {
            quota: QuotaConfig::unlimited(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &fake.base_url(), Some(&emu), "");

    let out = crmsync(dir.path(), &["--config", &cfg, "--json", "-vv", "sync"]).await;
    let report = ok(&out);
    assert_no_key(&stderr(&out));
    let users = report["users"].as_array().unwrap();
    assert_eq!(users.len(), 4);
    for u in users {
        assert_eq!(u["status"], "synced", "{u}");
    }
    let frank = users.iter().find(|u| u["user"] == "102").unwrap();
    assert!(
        frank["contacts"]["created"].as_u64().unwrap() >= 2,
        "{frank}"
    );
    assert!(emu.dump_user("frank@acme.example").is_some());
    assert!(
        fake.requests().iter().all(|r| r.user == Some(100)),
        "the admin key only"
    );

    let explain = ok(&crmsync(
        dir.path(),
        &[
            "--config",
            &cfg,
            "--json",
            "access",
            "explain",
            "--user",
            "101",
            "--record",
            "contact:400",
        ],
    )
    .await);
    assert_eq!(explain["read"], true, "{explain}");
    let reasons = explain["reasons"].to_string();
    assert!(reasons.contains("role hierarchy"), "{reasons}");
    // The shadow file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("insightly-shadow.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
}

#[test]
fn crm_load_is_refused_for_insightly() {
    let fake = FakeInsightly::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &fake.base_url(), None, "");
    let fixture = format!(
        "{}/tests/fixtures/example-org.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = run(
        dir.path(),
        &["--config".into(), cfg, "crm".into(), "load".into(), fixture],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).contains("embedded CRM only")
            && stderr(&out).contains("Insightly ([crm] source = \"insightly\")"),
        "{}",
        stderr(&out)
    );
    assert!(fake.requests().is_empty());
}

#[test]
fn key_problems_are_configuration_errors_naming_the_key_source() {
    let fake = FakeInsightly::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &fake.base_url(), None, "");
    let access = |cfg: &str| {
        run(
            dir.path(),
            &[
                "--config".into(),
                cfg.into(),
                "access".into(),
                "list".into(),
                "--user".into(),
                "101".into(),
            ],
        )
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("admin.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = access(&cfg);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
        assert_no_key(&stderr(&out));
    }
    std::fs::remove_file(dir.path().join("admin.key")).unwrap();
    let out = access(&cfg);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("admin.key"), "{}", stderr(&out));
    assert!(fake.requests().is_empty(), "nothing was sent");
}

#[test]
fn an_unreachable_insightly_is_a_runtime_failure() {
    let fake = FakeInsightly::start();
    let base = fake.base_url();
    drop(fake);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &base, None, "max_attempts = 1");
    let out = run(
        dir.path(),
        &[
            "--config".into(),
            cfg,
            "access".into(),
            "list".into(),
            "--user".into(),
            "101".into(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("could not be reached"),
        "{}",
        stderr(&out)
    );
    assert_no_key(&stderr(&out));
}
