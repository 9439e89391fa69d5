//! One writer per state DB, through the real binary: racing `crmsync sync` processes, a
//! `--wait` loser, a killed holder's lock file, a foreign SQLite writer, a missing state DB.
//!
//! Races are made deterministic with a [`Gate`] in front of the emulator's token endpoint:
//! the process that wins the lock blocks at its first Google call until the test opens the
//! gate, so the others are sure to find the lock taken.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ops_support;

use crmsync::emulator::TestEmulator;
use crmsync::store::lock::WriterLock;
use ops_support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Long enough for a loaded machine; a broken lock fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(90);

fn created(report: &Value) -> u64 {
    report["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            u["contacts"]["created"].as_u64().unwrap() + u["events"]["created"].as_u64().unwrap()
        })
        .sum()
}

fn assert_complete(report: &Value, context: &str) {
    let users = report["users"].as_array().unwrap();
    assert_eq!(users.len(), USERS.len(), "{context}: {report}");
    for u in users {
        assert_eq!(u["status"], "synced", "{context}: {u}");
    }
}

fn assert_quiet(report: &Value, context: &str) {
    for u in report["users"].as_array().unwrap() {
        for kind in ["contacts", "events"] {
            for field in [
                "created",
                "updated",
                "deleted",
                "duplicates_removed",
                "errors",
            ] {
                assert_eq!(u[kind][field], 0, "{context}: {} {kind}.{field}", u["user"]);
            }
        }
    }
}

/// Spawns the binary; its output arrives on `done` tagged with `tag`.
fn spawn_sync(
    env: &BinEnv,
    args: &[&str],
    tag: usize,
    done: &mpsc::UnboundedSender<(usize, Output)>,
) -> u32 {
    let child = env
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let done = done.clone();
    std::thread::spawn(move || {
        let out = child.wait_with_output().unwrap();
        let _ = done.send((tag, out));
    });
    pid
}

/// Spawns a `-v` sync that is willing to wait; `waiting` fires once it logs that it waits
/// for the lock. Returns the thread that yields its output (stderr included).
fn spawn_waiter(
    env: &BinEnv,
    waiting: mpsc::UnboundedSender<()>,
) -> std::thread::JoinHandle<Output> {
    let mut child = env
        .command(&["-v", "--json", "--wait", "300", "sync"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr);
        let mut text = String::new();
        let mut told = false;
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if !told && line.contains("waiting for the state DB's writer lock") {
                told = true;
                let _ = waiting.send(());
            }
            text.push_str(&line);
        }
        let mut rest = String::new();
        lines.read_to_string(&mut rest).unwrap();
        text + &rest
    });
    std::thread::spawn(move || {
        let mut out = child.wait_with_output().unwrap();
        out.stderr = reader.join().unwrap().into_bytes();
        out
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_racing_syncs_leave_one_writer_no_duplicates_and_a_waiter_runs_after() {
    let emu = TestEmulator::start(emulator_options()).await.unwrap();
    let mut gate = Gate::start(emu.addr()).await;
    let env = BinEnv::new(&emu, Some(gate.token_uri()), "");
    env.load(&org_with(0)).await;
    ok(&env.run(&["init"]).await);
    let mut items_before = 0;
    for round in 0..3u64 {
        if round > 0 {
            // The CRM grows between rounds.
            env.load(&org_with(3 * round as usize)).await;
        }
        gate.close();
        while gate.arrivals.try_recv().is_ok() {}
        let (done, mut outputs) = mpsc::unbounded_channel();
        let pids: Vec<u32> = (0..3)
            .map(|i| spawn_sync(&env, &["--json", "sync"], i, &done))
            .collect();

        // Two exit at once; the third holds the lock, held at Google's door by the gate.
        let mut losers = Vec::new();
        for _ in 0..2 {
            let lost = timeout(PATIENCE, outputs.recv())
                .await
                .expect("a loser exits while the winner holds the lock")
                .unwrap();
            losers.push(lost);
        }
        let winner = (0..3).find(|i| losers.iter().all(|(j, _)| j != i)).unwrap();
        for (_, out) in &losers {
            let err = fails_with(out, 3);
            assert!(err.contains("is in use by `crmsync sync`"), "{err}");
            assert!(
                err.contains(&format!("pid {}", pids[winner])),
                "the loser names the winner: {err}"
            );
            assert!(err.contains("--wait"), "{err}");
            assert!(out.stdout.is_empty(), "a loser prints no report");
        }

        if round == 0 {
            // While the winner is at Google's door (its mirror refreshed): readers answer
            // from the mirror, and status names the writer.
            timeout(PATIENCE, gate.arrivals.recv())
                .await
                .expect("the winner reaches Google")
                .unwrap();
            let out = env.run(&["scope", "show", "frank"]).await;
            let (shown, err) = text(&out);
            assert!(out.status.success(), "{err}");
            assert!(shown.contains("Sync scope of frank"), "{shown}");
            assert!(err.contains("answering from the CRM mirror"), "{err}");
            let out = env.run(&["--json", "status"]).await;
            let status: Value = serde_json::from_slice(&out.stdout).unwrap();
            let writer = status["writer"].as_str().unwrap_or_default();
            assert!(
                writer.contains("crmsync sync")
                    && writer.contains(&format!("pid {}", pids[winner])),
                "{status}"
            );
        }

        // A fourth, willing to wait, waits for the winner and runs after it.
        let (waiting_tx, mut waiting) = mpsc::unbounded_channel();
        let waiter = spawn_waiter(&env, waiting_tx);
        timeout(PATIENCE, waiting.recv())
            .await
            .expect("the --wait sync says it waits")
            .unwrap();
        gate.open();

        let (tag, out) = timeout(PATIENCE, outputs.recv())
            .await
            .expect("the winner finishes")
            .unwrap();
        assert_eq!(tag, winner);
        let report = ok(&out);
        assert_complete(&report, &format!("round {round}: the winner"));
        let after_winner = GoogleCounts::of(&emu);
        after_winner.assert_no_duplicates(&format!("round {round}, after the winner"));
        assert_eq!(
            after_winner.total() as u64,
            items_before + created(&report),
            "round {round}: the winner's report accounts for everything in Google"
        );
        assert!(
            created(&report) > 0,
            "round {round}: the winner synced something"
        );

        let waited = tokio::task::spawn_blocking(move || waiter.join().unwrap())
            .await
            .unwrap();
        let waited_report = ok(&waited);
        assert_complete(&waited_report, &format!("round {round}: the waiter"));
        assert_quiet(&waited_report, &format!("round {round}: the waiter"));
        let counts = GoogleCounts::of(&emu);
        counts.assert_no_duplicates(&format!("round {round}, after the waiter"));
        assert_eq!(counts.total(), after_winner.total());
        items_before = counts.total() as u64;
    }
    // Every contact the CRM grew by reached its owner, once.
    let counts = GoogleCounts::of(&emu);
    for i in 1..=6 {
        let owner = ["frank", "erin", "hank", "alice"][i % 4];
        assert!(counts.has(owner, &format!("contact:x{i}")), "x{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_leaves_a_lock_file_that_blocks_nobody() {
    let emu = TestEmulator::start(emulator_options()).await.unwrap();
    let mut gate = Gate::start(emu.addr()).await;
    let env = BinEnv::new(&emu, Some(gate.token_uri()), "");
    env.load(&org_with(2)).await;
    ok(&env.run(&["init"]).await);
    let state = env.path("state.db");

    let mut holder = env
        .command(&["sync"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It holds the lock and is calling Google.
    timeout(PATIENCE, gate.arrivals.recv())
        .await
        .expect("the holder reaches Google")
        .unwrap();
    let pid = holder.id();
    assert_eq!(
        WriterLock::current_holder(&state)
            .unwrap()
            .flatten()
            .map(|h| h.pid),
        Some(pid)
    );
    holder.kill().unwrap();
    holder.wait().unwrap();

    // Its record stays behind, but the OS lock died with it.
    assert_eq!(
        WriterLock::recorded_holder(&state).map(|h| h.pid),
        Some(pid)
    );
    assert_eq!(WriterLock::current_holder(&state).unwrap(), None);
    gate.open();
    let report = ok(&env.run(&["--json", "sync"]).await);
    assert_complete(&report, "after a killed holder");
    GoogleCounts::of(&emu).assert_no_duplicates("after a killed holder");
    assert_eq!(
        WriterLock::recorded_holder(&state),
        None,
        "released cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_write_transaction_is_a_clear_busy_error_with_exit_3() {
    let emu = TestEmulator::start(emulator_options()).await.unwrap();
    let env = BinEnv::new_with(&emu, None, "busy_timeout_ms = 200", "");
    env.load(&org_with(0)).await;
    ok(&env.run(&["init"]).await);

    // Another connection (think `sqlite3 state.db`) holds a write transaction.
    let foreign = rusqlite::Connection::open(env.path("state.db")).unwrap();
    foreign
        .execute_batch(
            "BEGIN IMMEDIATE; INSERT INTO settings (key, value) VALUES ('foreign', 'x');",
        )
        .unwrap();
    for args in [&["sync"][..], &["scope", "set", "frank", "contact=mine"]] {
        let err = fails_with(&env.run(args).await, 3);
        assert!(err.contains("the state DB is busy"), "{args:?}: {err}");
        assert!(
            err.contains("another connection held a write transaction"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("database is locked"), "raw SQLite: {err}");
    }
    assert!(
        emu.dump_user("frank@acme.example").is_none(),
        "nothing reached Google"
    );

    // The same for the embedded CRM.
    let foreign_crm = rusqlite::Connection::open(env.path("crm.db")).unwrap();
    foreign_crm.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let org = env.write_org("grown.json", &org_with(1));
    let err = fails_with(&env.run(&["crm", "load", org.to_str().unwrap()]).await, 3);
    assert!(err.contains("the CRM database is busy"), "{err}");
    foreign_crm.execute_batch("ROLLBACK;").unwrap();

    foreign.execute_batch("ROLLBACK;").unwrap();
    let report = ok(&env.run(&["--json", "sync"]).await);
    assert_complete(&report, "once the foreign writer is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_state_db_is_an_error_naming_it_and_only_init_creates_it() {
    let emu = TestEmulator::start(emulator_options()).await.unwrap();
    let env = BinEnv::new(&emu, None, "");
    env.load(&org_with(0)).await;
    let state = env.path("state.db");
    for args in [
        &["sync"][..],
        &["sync", "--dry-run"],
        &["status"],
        &["audit"],
        &["scope", "show", "frank"],
        &["scope", "set", "frank", "contact=mine"],
        &["access", "list", "--user", "frank"],
    ] {
        let err = fails_with(&env.run(args).await, 2);
        assert!(
            err.contains(&state.display().to_string()),
            "{args:?}: {err}"
        );
        assert!(err.contains("crmsync init"), "{args:?}: {err}");
    }
    assert!(!state.exists(), "no silent new state");
    assert!(
        !WriterLock::lock_path(&state).exists(),
        "no lock file either"
    );
    assert!(emu.dump_user("frank@acme.example").is_none());

    let created = ok(&env.run(&["--json", "init"]).await);
    assert_eq!(created["created"], true);
    assert!(state.exists());
    let again = ok(&env.run(&["--json", "init"]).await);
    assert_eq!(again["created"], false, "init on an existing DB is a no-op");
    assert_eq!(again["schema_version"], created["schema_version"]);
    let (human, _) = text(&env.run(&["init"]).await);
    assert!(human.contains("exists already"), "{human}");
    ok(&env.run(&["--json", "sync"]).await);

    // `--init` creates it on the command that needs it.
    let other = BinEnv::new(&emu, None, "");
    other.load(&org_with(0)).await;
    let report = ok(&other.run(&["--init", "--json", "sync"]).await);
    assert_complete(&report, "--init sync");

    // A file that is not a crmsync state DB is refused, and left alone.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(other.path(&format!("state.db{suffix}")));
    }
    let foreign = rusqlite::Connection::open(other.path("state.db")).unwrap();
    foreign
        .execute_batch("CREATE TABLE notes (text TEXT);")
        .unwrap();
    drop(foreign);
    let err = fails_with(&other.run(&["init"]).await, 2);
    assert!(err.contains("not a crmsync state DB"), "{err}");
    let err = fails_with(&other.run(&["sync"]).await, 2);
    assert!(err.contains("not a crmsync state DB"), "{err}");
}
