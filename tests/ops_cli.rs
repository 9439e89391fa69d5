//! Guards against operator mistakes and the operator's views, through the real binary:
//! a different CRM behind the same path (refused, or re-mirrored with `--accept-new-crm`),
//! `crm load` undoing write-backs (refused unless `--force`), `crm export` round trips,
//! `status` exit codes and JSON, `audit` input checks, and logs without secrets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ops_support;
mod sync_support;

use crmsync::crm::orgfile;
use crmsync::crm::sqlite::{SqliteCrm, UndoEffect};
use crmsync::crm::{Entity, Source, WriteBack};
use crmsync::emulator::{FaultKind, FaultMatch, FaultRule, FaultTrigger, TestEmulator};
use crmsync::model::{ObjectKind, RecordRef, UserId};
use ops_support::*;
use serde_json::{json, Value};
use std::path::Path;

fn state_setting(path: &Path, key: &str) -> Option<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
        r.get(0)
    })
    .ok()
}

fn mirrored_entities(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM mirror_entities", [], |r| r.get(0))
        .unwrap()
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_crm_is_refused_and_accept_new_crm_remirrors_it_in_full() {
    let emu = TestEmulator::start(emulator_options()).await.unwrap();
    let env = BinEnv::new(&emu, None, "");
    env.load(&org_with(2)).await;
    ok(&env.run(&["init"]).await);
    ok(&env.run(&["--json", "sync"]).await);
    let before = GoogleCounts::of(&emu);
    assert!(before.has("erin", "contact:x1") && before.has("hank", "contact:x2"));
    let state = env.path("state.db");
    let first_instance = state_setting(&state, "crm_instance_id").unwrap();
    let first_entities = mirrored_entities(&state);

    // Another CRM appears behind the same path: the same company without x1 and x2.
    remove_db(&env.path("crm.db"));
    env.load(&org_with(0)).await;
    for args in [&["sync"][..], &["access", "list", "--user", "frank"]] {
        let err = fails_with(&env.run(args).await, 2);
        assert!(err.contains("is a different CRM"), "{args:?}: {err}");
        assert!(err.contains("--accept-new-crm"), "{err}");
        assert!(err.contains("crm.db"), "{err}");
    }
    assert_eq!(
        GoogleCounts::of(&emu).total(),
        before.total(),
        "nothing synced"
    );
    let err = fails_with(
        &env.run(&["--accept-new-crm", "sync", "--dry-run"]).await,
        2,
    );
    assert!(err.contains("dry run"), "{err}");

    // A read of the new CRM that fails half-way changes nothing.
    let damage = rusqlite::Connection::open(env.path("crm.db")).unwrap();
    damage
        .execute_batch("ALTER TABLE entities RENAME TO entities_elsewhere;")
        .unwrap();
    let err = fails_with(&env.run(&["--accept-new-crm", "sync"]).await, 1);
    assert!(err.contains("reading the CRM change feed"), "{err}");
    assert_eq!(
        state_setting(&state, "crm_instance_id").unwrap(),
        first_instance
    );
    assert_eq!(mirrored_entities(&state), first_entities);
    assert_eq!(GoogleCounts::of(&emu).total(), before.total());
    damage
        .execute_batch("ALTER TABLE entities_elsewhere RENAME TO entities;")
        .unwrap();
    drop(damage);

    // Accepted: re-mirrored in full, and what it lacks is pulled back from every phone.
    let out = env.run(&["--accept-new-crm", "--json", "sync"]).await;
    let report = ok(&out);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("Accepted"), "{stderr}");
    for u in report["users"].as_array().unwrap() {
        assert_eq!(u["status"], "synced", "{u}");
    }
    let after = GoogleCounts::of(&emu);
    after.assert_no_duplicates("after the re-mirror");
    for user in USERS {
        assert!(!after.has(user, "contact:x1") && !after.has(user, "contact:x2"));
    }
    assert!(after.has("frank", "contact:c1"), "the rest stays");
    let copies_of_x: usize = before
        .markers
        .values()
        .flat_map(|m| m.iter())
        .filter(|(k, _)| k.as_str() == "contact:x1" || k.as_str() == "contact:x2")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(after.total(), before.total() - copies_of_x);
    assert_ne!(
        state_setting(&state, "crm_instance_id").unwrap(),
        first_instance
    );
    let audit = ok(&env.run(&["--json", "audit"]).await);
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "crm_replaced"));
    // From now on it is the CRM: plain syncs work and find nothing to do.
    let quiet = ok(&env.run(&["--json", "sync"]).await);
    for u in quiet["users"].as_array().unwrap() {
        assert_eq!(u["contacts"]["deleted"], 0);
        assert_eq!(u["contacts"]["created"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_load_refuses_to_undo_write_backs_and_export_round_trips() {
    let h = sync_support::Harness::start(sync_support::org()).await;
    sync_support::assert_all_synced(&h.sync().await);
    h.phone_edit_contact("frank", "c1", |c| c.title = "Chief Scientist".into())
        .await;
    let report = h.sync().await;
    assert_eq!(
        sync_support::user_report(&report, "frank")
            .contacts
            .written_back,
        1
    );
    let title =
        |h: &sync_support::Harness, id: &str| sync_support::crm_contact(h, id).unwrap().title;
    assert_eq!(title(&h, "c1"), "Chief Scientist");

    // The binary, on the harness's CRM.
    let dir = h.dir.path();
    std::fs::write(
        dir.join("ops.toml"),
        "[state]\npath = \"state.db\"\n[crm]\npath = \"crm.db\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_crmsync"))
            .arg("--config")
            .arg(dir.join("ops.toml"))
            .args(args)
            .env_remove("CRMSYNC_CONFIG")
            .output()
            .unwrap()
    };
    let original = dir.join("original.json");
    std::fs::write(&original, sync_support::org().to_string()).unwrap();
    let original = original.to_str().unwrap();

    // The old file would put the old title back: refused, naming record, field and user.
    let err = fails_with(&run(&["crm", "load", original]), 2);
    assert!(err.contains("contact:c1: would revert title"), "{err}");
    assert!(err.contains("frank"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(err.contains("crm export"), "{err}");
    assert_eq!(title(&h, "c1"), "Chief Scientist", "nothing loaded");

    // Export → load changes nothing.
    let exported = dir.join("exported.json");
    let summary = ok(&run(&[
        "--json",
        "crm",
        "export",
        exported.to_str().unwrap(),
    ]));
    assert_eq!(summary["contacts"], 5);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    let c1 = doc["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "c1")
        .unwrap();
    assert_eq!(c1["title"], "Chief Scientist");
    let loaded = ok(&run(&["--json", "crm", "load", exported.to_str().unwrap()]));
    for key in ["created", "updated", "deleted"] {
        assert_eq!(loaded[key], json!({}), "{key}: {loaded}");
    }

    // Export → edit → load changes only what was edited.
    let mut edited = doc.clone();
    for c in edited["contacts"].as_array_mut().unwrap() {
        if c["id"] == "c2" {
            c["notes"] = json!("called back on Monday");
        }
    }
    std::fs::write(&exported, edited.to_string()).unwrap();
    let loaded = ok(&run(&["--json", "crm", "load", exported.to_str().unwrap()]));
    assert_eq!(loaded["updated"], json!({"contact": 1}), "{loaded}");
    assert_eq!(loaded["created"], json!({}));
    assert_eq!(loaded["deleted"], json!({}));
    assert_eq!(
        sync_support::crm_contact(&h, "c2").unwrap().notes,
        "called back on Monday"
    );
    assert_eq!(title(&h, "c1"), "Chief Scientist");

    // Another phone edit since that load: the old file is refused again, and --force loads
    // it anyway, saying what it undoes.
    h.phone_edit_contact("frank", "c1", |c| c.title = "Chief Analyst".into())
        .await;
    sync_support::assert_all_synced(&h.sync().await);
    assert_eq!(title(&h, "c1"), "Chief Analyst");
    let err = fails_with(&run(&["crm", "load", original]), 2);
    assert!(err.contains("contact:c1: would revert title"), "{err}");
    let out = run(&["crm", "load", "--force", original]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("contact:c1: would revert title"),
        "{stderr}"
    );
    assert_eq!(title(&h, "c1"), "CTO");
    // Nothing is written back since that load: loading it again is fine.
    ok(&run(&["crm", "load", original]));
}

#[test]
fn the_undo_check_covers_imports_deletes_and_edits_and_exports_round_trip() {
    let doc: Value = serde_json::from_str(include_str!("fixtures/example-org.json")).unwrap();
    let mut crm = SqliteCrm::open(Path::new(":memory:")).unwrap();
    let model = orgfile::parse("org", &doc.to_string()).unwrap();
    crm.load(&model).unwrap();
    assert!(crm.undone_write_backs(&model).unwrap().is_empty());

    let frank = UserId::new("frank").unwrap();
    let c1 = RecordRef::new(ObjectKind::Contact, "c1".parse().unwrap());
    let version = |crm: &SqliteCrm, r: &RecordRef| Source::get(crm, r).unwrap().unwrap().0;
    // A phone edit, a phone-created contact, and a phone delete are written back.
    let mut fields = serde_json::Map::new();
    fields.insert("title".into(), json!("CEO"));
    fields.insert(
        "notes".into(),
        json!(model.contacts.values().next().unwrap().notes),
    );
    crm.apply(&WriteBack::Update {
        record: c1.clone(),
        expected_version: version(&crm, &c1),
        acting_user: frank.clone(),
        fields,
    })
    .unwrap();
    let mut imported = model.contacts.values().next().unwrap().clone();
    imported.id = "phone-abc".parse().unwrap();
    imported.emails.clear();
    imported.phones.clear();
    crm.apply(&WriteBack::Create {
        acting_user: frank.clone(),
        entity: Box::new(Entity::Contact(imported)),
    })
    .unwrap();
    let e1 = RecordRef::new(ObjectKind::Event, "e1".parse().unwrap());
    crm.apply(&WriteBack::Delete {
        record: e1.clone(),
        expected_version: version(&crm, &e1),
        acting_user: frank.clone(),
    })
    .unwrap();

    // The original file undoes all three; only the field that changed is named.
    let undone = crm.undone_write_backs(&model).unwrap();
    let effects: Vec<(String, UndoEffect, Vec<String>)> = undone
        .iter()
        .map(|u| (u.record.clone(), u.effect, u.fields.clone()))
        .collect();
    assert_eq!(
        effects,
        vec![
            (
                "contact:c1".into(),
                UndoEffect::Revert,
                vec!["title".into()]
            ),
            ("contact:phone-abc".into(), UndoEffect::Remove, vec![]),
            ("event:e1".into(), UndoEffect::Restore, vec![]),
        ]
    );
    assert!(undone
        .iter()
        .all(|u| u.acting_users == vec!["frank".to_owned()]));

    // An export agrees with every write-back; loading it changes nothing.
    let (exported, problems) = crm.export().unwrap();
    assert!(problems.is_empty());
    let again = orgfile::parse("export", &exported.to_string()).unwrap();
    assert!(crm.undone_write_backs(&again).unwrap().is_empty());
    assert_eq!(crm.load(&again).unwrap().total_changes(), 0);
    // After a load, earlier write-backs are settled.
    assert!(crm.undone_write_backs(&model).unwrap().is_empty());
}

#[test]
fn the_demo_org_round_trips_through_export() {
    let mut crm = SqliteCrm::open(Path::new(":memory:")).unwrap();
    let model = orgfile::parse("demo", crmsync::demo::DEMO_ORG).unwrap();
    crm.load(&model).unwrap();
    let (doc, _) = crm.export().unwrap();
    let back = orgfile::parse("export", &doc.to_string()).unwrap();
    assert_eq!(crm.load(&back).unwrap().total_changes(), 0);
    let (again, _) = crm.export().unwrap();
    assert_eq!(again, doc, "export is stable");
}

fn fault_always(endpoint: &str, user: &str) -> FaultRule {
    FaultRule {
        matches: FaultMatch {
            endpoint: Some(endpoint.into()),
            method: None,
            user: Some(format!("{user}@acme.example")),
        },
        trigger: FaultTrigger::Always,
        fault: FaultKind::Status {
            code: 400,
            retry_after_secs: None,
        },
    }
}

fn states(status: &Value) -> Vec<(String, String)> {
    status["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user"].as_str().unwrap().to_owned(),
                u["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn state_of(status: &Value, user: &str) -> String {
    states(status)
        .into_iter()
        .find(|(u, _)| u == user)
        .map(|(_, s)| s)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exits_1_for_failing_or_stale_users_and_shows_inactive_ones() {
    let emu = TestEmulator::start(emulator_options()).await.unwrap();
    let env = BinEnv::new(&emu, None, "");
    env.load(&org_with(0)).await;
    ok(&env.run(&["init"]).await);

    // Nothing synced yet: not healthy.
    let out = env.run(&["--json", "status"]).await;
    fails_with(&out, 1);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["ok"], false);
    assert_eq!(status["mirror_refreshed"], false);
    assert_eq!(
        states(&status).len(),
        0,
        "the mirror is empty before a refresh"
    );

    ok(&env.run(&["sync"]).await);
    let status = ok(&env.run(&["--json", "status"]).await);
    assert_eq!(status["ok"], true);
    for u in status["users"].as_array().unwrap() {
        assert_eq!(u["state"], "ok", "{u}");
        assert_eq!(u["revoked"], false);
        assert_eq!(u["active"], true);
    }

    // Frank leaves the company (inactive); Google refuses every calendar call for hank.
    let mut doc = org_with(0);
    for u in doc["users"].as_array_mut().unwrap() {
        if u["id"] == "frank" {
            u["active"] = json!(false);
        }
    }
    env.load(&doc).await;
    emu.add_fault(fault_always("calendar.*", "hank"));
    fails_with(&env.run(&["sync"]).await, 1);
    let out = env.run(&["--json", "status"]).await;
    fails_with(&out, 1);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["ok"], false);
    assert_eq!(status["needs_attention"], 1);
    // Deactivation revokes frank's account in the same pass: revoked, needing no attention.
    assert_eq!(state_of(&status, "frank"), "revoked");
    assert_eq!(state_of(&status, "hank"), "failing");
    assert_eq!(state_of(&status, "alice"), "ok");
    let hank = status["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "hank")
        .unwrap();
    assert!(hank["last_error"].is_string(), "{hank}");
    let out = env.run(&["status"]).await;
    let err = fails_with(&out, 1);
    assert!(err.contains("1 user(s) failing"), "{err}");
    let (human, _) = text(&out);
    assert!(
        human.contains("REVOKED") && human.contains("failing"),
        "{human}"
    );

    // Hank recovers; an inactive user needs no attention.
    emu.clear_faults();
    ok(&env.run(&["sync"]).await);
    let status = ok(&env.run(&["--json", "status"]).await);
    assert_eq!(state_of(&status, "hank"), "ok");
    assert_eq!(state_of(&status, "frank"), "revoked");

    // Stale: no success within stale_after_minutes.
    let strict = std::fs::read_to_string(env.config()).unwrap().replace(
        "max_attempts = 2",
        "max_attempts = 2\nstale_after_minutes = 0",
    );
    let strict_path = env.path("strict.toml");
    std::fs::write(&strict_path, strict).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crmsync"))
        .args([
            "--config",
            strict_path.to_str().unwrap(),
            "--json",
            "status",
        ])
        .output()
        .unwrap();
    fails_with(&out, 1);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state_of(&status, "alice"), "stale");
    assert_eq!(
        state_of(&status, "frank"),
        "revoked",
        "a revoked user is never stale"
    );

    // audit: unknown users and record kinds exit 2.
    let err = fails_with(&env.run(&["audit", "--user", "nobody"]).await, 2);
    assert!(err.contains("unknown user \"nobody\""), "{err}");
    for record in ["gadget:1", "contact", "contact:"] {
        let err = fails_with(&env.run(&["audit", "--record", record]).await, 2);
        assert!(err.contains("--record"), "{record}: {err}");
    }
    let lines = ok(&env.run(&["--json", "audit", "--user", "frank"]).await);
    assert!(!lines.as_array().unwrap().is_empty());
}

/// Contact e-mail addresses and phone numbers of an org document, as written and as digits.
fn personal_data(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for c in doc["contacts"].as_array().unwrap() {
        for e in c["emails"].as_array().unwrap() {
            out.push(e["address"].as_str().unwrap().to_owned());
        }
        for p in c["phones"].as_array().unwrap() {
            let raw = p["number"].as_str().unwrap();
            out.push(raw.to_owned());
            out.push(raw.chars().filter(|c| !c.is_whitespace()).collect());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_token_key_header_or_contact_data_at_any_verbosity() {
    let emu = TestEmulator::start(emulator_options()).await.unwrap();
    let env = BinEnv::new(&emu, None, "");
    let doc = org_with(3);
    env.load(&doc).await;
    ok(&env.run(&["init"]).await);
    // One 503 on frank's first event listing: a retry to log.
    emu.add_fault(FaultRule {
        matches: FaultMatch {
            endpoint: Some("calendar.events.list".into()),
            method: None,
            user: Some("frank@acme.example".into()),
        },
        trigger: FaultTrigger::Nth { n: 1, times: 1 },
        fault: FaultKind::Status {
            code: 503,
            retry_after_secs: None,
        },
    });
    let key: Value = serde_json::from_str(&std::fs::read_to_string(key_path()).unwrap()).unwrap();
    let private_key = key["private_key"].as_str().unwrap();
    let key_body: Vec<&str> = private_key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .collect();
    let mut forbidden: Vec<String> = vec![
        "ya29.".into(),        // access tokens (the emulator's look like Google's)
        "Bearer".into(),       // Authorization header values
        "PRIVATE KEY".into(),  // key material
        "eyJ".into(),          // a JWT (the signed assertion) or any base64 JSON
        "assertion".into(),    // the token request's body
        "CPsy".into(),         // sync tokens
        "access_token".into(), // token responses
    ];
    forbidden.extend(key_body.iter().map(|l| l.to_string()));
    forbidden.extend(personal_data(&doc));

    let runs: [&[&str]; 6] = [
        &["-vvv", "sync"],
        &["-v", "sync"],
        &["-vv", "sync"],
        &["-vvv", "--log-format", "json", "sync"],
        &["-vv", "--log-format", "json", "status"],
        // CRMSYNC_LOG=trace (below) asks for everything: the ceilings still hold.
        &["sync"],
    ];
    for (i, args) in runs.iter().enumerate() {
        if i == 2 {
            // Full listings again.
            emu.expire_sync_tokens(None, None);
        }
        let mut cmd = env.command(args);
        if i == 5 {
            emu.expire_sync_tokens(None, None);
            cmd.env("CRMSYNC_LOG", "trace");
        }
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        for secret in &forbidden {
            assert!(
                !stderr.contains(secret.as_str()),
                "{args:?}: the log holds {secret:?}:\n{stderr}"
            );
        }
        assert!(
            !stderr.to_ascii_lowercase().contains("authorization"),
            "{args:?}: {stderr}"
        );
        if args.contains(&"sync") {
            assert!(stderr.contains("sync run finished"), "{args:?}: {stderr}");
            assert!(stderr.contains("user pass finished"), "{args:?}: {stderr}");
        }
        if i == 0 {
            assert!(
                stderr.contains("retrying a Google call"),
                "the retry is logged: {stderr}"
            );
        }
        if args.contains(&"json") {
            for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {line}"));
                assert!(v["level"].is_string(), "{line}");
            }
        }
    }
}
