//! `crmsync run`, the real binary: SIGTERM in the middle of a pass drains the user in
//! flight and exits 0; a restart picks up what was owed and converges (no duplicates,
//! nothing left for a later `sync`); the HTTP listener answers; logs at every verbosity
//! hold no token, key or contact data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ops_support;

use crmsync::emulator::TestEmulator;
use ops_support::{emulator_options, key_path, ok, org_with, BinEnv, Gate, GoogleCounts, USERS};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WORKER: &str = r#"
[worker]
listen = "127.0.0.1:0"
interval_secs = 1
phone_poll_minutes = 0
reconcile_minutes = 0
drain_timeout_secs = 30
lock_wait_secs = 0
"#;

/// A running `crmsync run` and its stderr, line by line.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(env: &BinEnv, args: &[&str], trace_env: bool) -> Running {
        let mut cmd = env.command(args);
        if trace_env {
            cmd.env("CRMSYNC_LOG", "trace");
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stderr until a line satisfies `want` (bounded: 120 s without it fails).
    fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("no {what} ({e}); stderr so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn address(&mut self) -> String {
        let line = self.wait_for("listening line", |l| l.contains("listening on http://"));
        let rest = line.split("http://").nth(1).unwrap();
        rest.split_whitespace().next().unwrap().to_owned()
    }

    fn wait_for_quiet_cycle(&mut self) {
        self.wait_for("a quiet cycle", |l| {
            l.contains("worker cycle finished") && l.contains("quiet")
        });
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; returns the code and the whole stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

fn with_concurrency_one(env: &BinEnv) {
    let path = env.config();
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("[sync]\n", "[sync]\nconcurrency = 1\n");
    std::fs::write(path, text).unwrap();
}

async fn get(addr: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_pass_drains_and_a_restart_converges() {
    let emu = TestEmulator::start(emulator_options()).await.unwrap();
    let mut gate = Gate::start(emu.addr()).await;
    let env = BinEnv::new(&emu, Some(gate.token_uri()), WORKER);
    with_concurrency_one(&env);
    let doc = org_with(40);
    env.load(&doc).await;
    ok(&env.run(&["init"]).await);

    // The first user's first token request waits at the gate: the pass is in flight.
    let mut first = Running::start(&env, &["-v", "--log-format", "json", "run"], false);
    let addr = first.address();
    gate.arrivals.recv().await.unwrap();
    let (status, body) = get(&addr, "/healthz").await;
    assert_eq!(
        (status, body.trim()),
        (200, "ok"),
        "alive while a pass runs"
    );
    first.signal("TERM");
    gate.open();
    let (code, stderr) = first.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    let after_stop = GoogleCounts::of(&emu);
    after_stop.assert_no_duplicates("after SIGTERM");
    let filled: Vec<&str> = USERS
        .iter()
        .copied()
        .filter(|u| !after_stop.markers[*u].is_empty())
        .collect();
    assert_eq!(
        filled.len(),
        1,
        "only the user in flight finished: {filled:?}"
    );

    // Restart: the users owed a pass are synced; then quiet cycles.
    let mut second = Running::start(&env, &["-v", "--log-format", "json", "run"], false);
    let addr = second.address();
    second.wait_for_quiet_cycle();
    let (status, _) = get(&addr, "/readyz").await;
    assert_eq!(status, 200);
    let (status, metrics) = get(&addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("crmsync_passes_total{status=\"synced\"} 3"),
        "{metrics}"
    );
    second.signal("INT");
    let (code, stderr) = second.finish();
    assert_eq!(code, Some(0), "{stderr}");

    let converged = GoogleCounts::of(&emu);
    converged.assert_no_duplicates("after the restart");
    for user in USERS {
        assert!(!converged.markers[user].is_empty(), "{user} was synced");
    }
    // Nothing lost: a one-shot pass finds nothing left to do and changes nothing.
    let report = ok(&env.run(&["--json", "sync"]).await);
    for user in report["users"].as_array().unwrap() {
        for kind in ["contacts", "events"] {
            for count in ["created", "updated", "deleted"] {
                assert_eq!(user[kind][count], 0, "{user}");
            }
        }
    }
    assert_eq!(GoogleCounts::of(&emu).markers, converged.markers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_pass_ends_at_the_drain_timeout_or_a_second_signal_and_a_restart_converges() {
    let emu = TestEmulator::start(emulator_options()).await.unwrap();
    let mut gate = Gate::start(emu.addr()).await;
    let env = BinEnv::new(
        &emu,
        Some(gate.token_uri()),
        &WORKER.replace("drain_timeout_secs = 30", "drain_timeout_secs = 1"),
    );
    with_concurrency_one(&env);
    env.load(&org_with(10)).await;
    ok(&env.run(&["init"]).await);

    // Google never answers the user in flight: one signal waits out the drain timeout.
    let mut first = Running::start(&env, &["-v", "--log-format", "json", "run"], false);
    first.address();
    gate.arrivals.recv().await.unwrap();
    let signalled = std::time::Instant::now();
    first.signal("TERM");
    let (code, stderr) = first.finish();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("drain timeout"), "{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "bounded by the drain timeout, not by Google"
    );

    // A second signal does not wait at all.
    let mut second = Running::start(&env, &["-v", "--log-format", "json", "run"], false);
    second.address();
    gate.arrivals.recv().await.unwrap();
    second.signal("TERM");
    second.wait_for("the first signal taken", |l| l.contains("stopping after"));
    second.signal("TERM");
    let (code, stderr) = second.finish();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("second signal"), "{stderr}");
    GoogleCounts::of(&emu).assert_no_duplicates("after the abandoned passes");

    // Google answers again: a restart syncs everyone, once.
    gate.open();
    let mut third = Running::start(&env, &["-v", "--log-format", "json", "run"], false);
    third.address();
    third.wait_for_quiet_cycle();
    third.signal("INT");
    let (code, stderr) = third.finish();
    assert_eq!(code, Some(0), "{stderr}");
    let converged = GoogleCounts::of(&emu);
    converged.assert_no_duplicates("after the restart");
    for user in USERS {
        assert!(!converged.markers[user].is_empty(), "{user} was synced");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_logs_hold_no_token_key_or_contact_data_at_any_verbosity() {
    let emu = TestEmulator::start(emulator_options()).await.unwrap();
    let env = BinEnv::new(&emu, None, WORKER);
    let doc = org_with(3);
    env.load(&doc).await;
    ok(&env.run(&["init"]).await);
    let key: Value = serde_json::from_str(&std::fs::read_to_string(key_path()).unwrap()).unwrap();
    let mut forbidden: Vec<String> = vec![
        "ya29.".into(),
        "Bearer".into(),
        "PRIVATE KEY".into(),
        "eyJ".into(),
        "assertion".into(),
        "CPsy".into(),
        "access_token".into(),
    ];
    forbidden.extend(
        key["private_key"]
            .as_str()
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 20)
            .map(str::to_owned),
    );
    for c in doc["contacts"].as_array().unwrap() {
        for e in c["emails"].as_array().unwrap() {
            forbidden.push(e["address"].as_str().unwrap().to_owned());
        }
    }
    let runs: [(&[&str], bool); 5] = [
        (&["-v", "run"], false),
        (&["-vv", "run"], false),
        (&["-vvv", "run"], false),
        (&["-vvv", "--log-format", "json", "run"], false),
        (&["-v", "run"], true),
    ];
    for (i, (args, trace)) in runs.into_iter().enumerate() {
        // Each run has a CRM change to sync, and full listings again (more to log).
        let mut changed = doc.clone();
        changed["contacts"][0]["title"] = Value::from(format!("Title {i}"));
        env.load(&changed).await;
        emu.expire_sync_tokens(None, None);
        let mut running = Running::start(&env, args, trace);
        let addr = running.address();
        running.wait_for_quiet_cycle();
        // A feed request too: its URL holds a secret that must not be logged either.
        let (status, _) = get(
            &addr,
            "/ics/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.ics",
        )
        .await;
        assert_eq!(status, 404);
        running.signal("TERM");
        let (code, stderr) = running.finish();
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        for secret in forbidden
            .iter()
            .map(String::as_str)
            .chain(["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"])
        {
            assert!(
                !stderr.contains(secret),
                "run {i} {args:?}: the log holds {secret:?}:\n{stderr}"
            );
        }
        assert!(
            !stderr.to_ascii_lowercase().contains("authorization"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("user pass finished"), "{args:?}: {stderr}");
    }
}
