//! `crmsync revoke`, `crmsync audit undo` and the revoked flag of `crmsync status`, through
//! the binary against an in-process emulator: output, effects and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crmsync::demo::phone::Phone;
use crmsync::emulator::{EmulatorOptions, EmulatorSettings, QuotaConfig, TestEmulator};
use crmsync::google::remote::{GoogleRemote, GoogleRemoteConfig};
use crmsync::model::UserId;
use crmsync::store::StateDb;
use crmsync::sync::remote::GoogleUser;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn key_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/emulator-service-account.json")
}

fn write_config(dir: &Path, emu: &TestEmulator) -> PathBuf {
    let cfg = dir.join("crmsync.toml");
    let text = format!(
        "[state]\npath = \"state.db\"\n[crm]\npath = \"crm.db\"\n[google]\nbase_url = \
         \"{}/\"\ntoken_uri = \"{}\"\nservice_account_key = \"{}\"\n[scope.org]\ncontact = \
         \"all_visible\"\nevent = \"all_visible\"\ndirection = \"two_way\"\n",
        emu.base_url(),
        emu.token_uri(),
        key_path().display()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Runs the binary on a blocking thread (the emulator keeps serving meanwhile).
async fn crmsync(cfg: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--config".to_owned(), cfg.display().to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_crmsync"))
            .args(&all)
            .env_remove("CRMSYNC_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn revoke_status_and_undo_through_the_binary() {
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
    let cfg = write_config(dir.path(), &emu);
    let fixture = format!(
        "{}/tests/fixtures/example-org.json",
        env!("CARGO_MANIFEST_DIR")
    );
    json(&crmsync(&cfg, &["--json", "crm", "load", &fixture]).await);
    json(&crmsync(&cfg, &["--json", "init"]).await);
    json(&crmsync(&cfg, &["--json", "sync"]).await);
    let frank_before = emu.dump_user("frank@acme.example").unwrap();
    assert!(!frank_before.live_contacts().is_empty());

    // A dry run says what would go and changes nothing.
    let dry = json(&crmsync(&cfg, &["--json", "revoke", "frank", "--dry-run"]).await);
    assert_eq!(dry["outcome"], "planned");
    assert_eq!(dry["contacts_deleted"], serde_json::json!(["contact:c1"]));
    assert_eq!(dry["calendars_deleted"].as_array().unwrap().len(), 1);
    assert_eq!(
        serde_json::to_value(emu.dump_user("frank@acme.example").unwrap()).unwrap(),
        serde_json::to_value(&frank_before).unwrap()
    );

    // frank has an ICS feed: it goes with his Google data.
    json(&crmsync(&cfg, &["--json", "feed", "create", "frank"]).await);

    // The real thing, in human form.
    let out = crmsync(&cfg, &["revoke", "frank"]).await;
    assert!(out.status.success(), "{out:?}");
    let feeds = json(&crmsync(&cfg, &["--json", "feed", "list"]).await);
    assert!(
        feeds
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["user_id"] != "frank"),
        "a revoked user's feed is deleted with the revocation: {feeds}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Revoked frank from frank@acme.example"),
        "{text}"
    );
    assert!(text.contains("nothing marked by crmsync remains"), "{text}");
    let dump = emu.dump_user("frank@acme.example").unwrap();
    assert!(dump.live_contacts().is_empty());
    assert_eq!(dump.calendars.len(), 1, "only the primary calendar is left");

    // status shows frank revoked (and not stale); the audit keeps the receipt.
    let status = json(&crmsync(&cfg, &["--json", "status"]).await);
    let frank = status["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "frank")
        .unwrap()
        .clone();
    assert_eq!(frank["revoked"], true, "{frank}");
    assert_eq!(frank["revoked_reason"], "manual");
    assert_eq!(frank["stale"], false);
    let human = crmsync(&cfg, &["status"]).await;
    assert!(String::from_utf8_lossy(&human.stdout).contains("REVOKED"));
    let audit = json(&crmsync(&cfg, &["--json", "audit", "--user", "frank"]).await);
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "revoked"
            && e["detail"]["receipt"]["verified"]["contacts"] == serde_json::json!([])));

    // Revoking again has nothing to do; an unknown user is a usage error.
    let again = json(&crmsync(&cfg, &["--json", "revoke", "frank"]).await);
    assert_eq!(again["outcome"], "nothing_to_revoke");
    let nobody = crmsync(&cfg, &["revoke", "nobody"]).await;
    assert_eq!(nobody.status.code(), Some(2), "{nobody:?}");

    // erin edits a contact on her phone; it is written back; an admin undoes it.
    let state = StateDb::open_existing(&dir.path().join("state.db")).unwrap();
    let remote = GoogleRemote::new(GoogleRemoteConfig::for_emulator(
        &emu.base_url(),
        &emu.token_uri(),
        &key_path(),
    ))
    .await
    .unwrap();
    let phone = Phone {
        remote: &remote,
        state: &state,
        user: GoogleUser {
            user: UserId::new("erin").unwrap(),
            account: "erin@acme.example".into(),
        },
        root: emu.base_url(),
        key: key_path(),
        token_uri: Some(emu.token_uri()),
    };
    phone
        .edit_contact("c1", |c| c.title = "Edited on erin's phone".into())
        .await
        .unwrap();
    json(&crmsync(&cfg, &["--json", "sync"]).await);
    let lines = json(&crmsync(&cfg, &["--json", "audit", "--record", "contact:c1"]).await);
    let write_back = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "written_back")
        .unwrap()
        .clone();
    let id = write_back["id"].as_i64().unwrap().to_string();
    let undone = json(&crmsync(&cfg, &["--json", "audit", "undo", &id]).await);
    assert_eq!(undone["record"], "contact:c1");
    assert_eq!(undone["restored"]["title"], "CTO");
    let shown = json(&crmsync(&cfg, &["--json", "crm", "show", "contact", "c1"]).await);
    assert_eq!(shown["record"]["title"], "CTO");
    // Twice: refused, exit 1, with the reason.
    let twice = crmsync(&cfg, &["audit", "undo", &id]).await;
    assert_eq!(twice.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already undone"));
    let missing = crmsync(&cfg, &["audit", "undo", "999999"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no audit line 999999"));
}
