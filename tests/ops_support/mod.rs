//! The built `crmsync` binary against the in-process emulator: a temp-dir config (optionally
//! with the token endpoint behind a [`Gate`]), the org file, and helpers to run commands and
//! look at what Google holds. Shared by the operations tests (lock, identity, status, logs).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crmsync::emulator::{EmulatorOptions, EmulatorSettings, QuotaConfig, TestEmulator};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tokio::sync::{mpsc, watch};

pub fn key_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/emulator-service-account.json")
}

/// The example org of `tests/fixtures`, with `extra` more contacts (`x1`, `x2`, …) spread over
/// the four users, each with its own e-mail address.
pub fn org_with(extra: usize) -> Value {
    let mut doc: Value =
        serde_json::from_str(include_str!("../fixtures/example-org.json")).unwrap();
    let contacts = doc["contacts"].as_array_mut().unwrap();
    let base = contacts[0].clone();
    for i in 1..=extra {
        let mut c = base.clone();
        c["id"] = json!(format!("x{i}"));
        c["owner"] = json!(["frank", "erin", "hank", "alice"][i % 4]);
        c["first_name"] = json!(format!("Extra{i}"));
        c["emails"] = json!([{"address": format!("extra{i}@initech.example"), "label": "work"}]);
        c["phones"] = json!([]);
        contacts.push(c);
    }
    doc
}

/// A TCP gate in front of the emulator: connections wait until it opens, then are passed
/// through byte for byte (so the `Host` a client sends reaches the emulator unchanged).
/// Every arrival is reported, so a test knows a process got as far as calling Google.
pub struct Gate {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    pub arrivals: mpsc::UnboundedReceiver<()>,
}

impl Gate {
    pub async fn start(upstream: SocketAddr) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, open_rx) = watch::channel(false);
        let (arrived, arrivals) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let _ = arrived.send(());
                let mut open_rx = open_rx.clone();
                tokio::spawn(async move {
                    if open_rx.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Gate {
            addr,
            open,
            arrivals,
        }
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// The token endpoint behind the gate.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

pub fn emulator_options() -> EmulatorOptions {
    EmulatorOptions {
        settings: EmulatorSettings {
            quota: QuotaConfig::unlimited(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A config in a temp dir for the binary, against `emu`.
pub struct BinEnv {
    pub dir: tempfile::TempDir,
}

impl BinEnv {
    /// Writes `crmsync.toml` (state, CRM, Google at `emu`, tokens from `token_uri`, every
    /// user two-way on everything readable) plus `extra` TOML.
    pub fn new(emu: &TestEmulator, token_uri: Option<String>, extra: &str) -> BinEnv {
        Self::new_with(emu, token_uri, "", extra)
    }

    /// [`BinEnv::new`] with more keys of the `[state]` section.
    pub fn new_with(
        emu: &TestEmulator,
        token_uri: Option<String>,
        state_extra: &str,
        extra: &str,
    ) -> BinEnv {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"[state]
path = "state.db"
{state_extra}

[crm]
path = "crm.db"

[google]
base_url = "{base}/"
token_uri = "{token}"
service_account_key = "{key}"

[sync]
max_attempts = 2

[scope.org]
contact = "all_visible"
event = "all_visible"
direction = "two_way"
{extra}
"#,
            base = emu.base_url(),
            token = token_uri.unwrap_or_else(|| emu.token_uri()),
            key = key_path().display(),
        );
        std::fs::write(dir.path().join("crmsync.toml"), text).unwrap();
        BinEnv { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.path("crmsync.toml")
    }

    /// The binary with `--config`, ready to run or spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crmsync"));
        cmd.arg("--config")
            .arg(self.config())
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("CRMSYNC_CONFIG")
            .env_remove("CRMSYNC_LOG");
        cmd
    }

    /// Runs the binary on a blocking thread (the emulator keeps serving meanwhile).
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    /// Writes an org document to `name` in the temp dir.
    pub fn write_org(&self, name: &str, doc: &Value) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, serde_json::to_string_pretty(doc).unwrap()).unwrap();
        path
    }

    /// `crm load` of `doc` (must succeed).
    pub async fn load(&self, doc: &Value) {
        let file = self.write_org("org.json", doc);
        ok(&self.run(&["crm", "load", file.to_str().unwrap()]).await);
    }
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts success and parses stdout as JSON (`Null` for human output).
pub fn ok(out: &Output) -> Value {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Asserts the exit code and returns stderr.
pub fn fails_with(out: &Output, code: i32) -> String {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    stderr
}

pub const USERS: [&str; 4] = ["alice", "erin", "frank", "hank"];

/// Per user: how many live Google items carry each crmsync marker (contacts, and events of
/// every calendar; series exceptions excluded), and how many "CRM" calendars and groups
/// the account holds.
pub struct GoogleCounts {
    pub markers: BTreeMap<String, BTreeMap<String, usize>>,
    pub containers: BTreeMap<String, (usize, usize)>,
}

impl GoogleCounts {
    pub fn of(emu: &TestEmulator) -> GoogleCounts {
        let mut markers = BTreeMap::new();
        let mut containers = BTreeMap::new();
        for user in USERS {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            let Some(dump) = emu.dump_user(&format!("{user}@acme.example")) else {
                markers.insert(user.to_owned(), counts);
                containers.insert(user.to_owned(), (0, 0));
                continue;
            };
            for p in dump.live_contacts() {
                let marker = p
                    .client_data
                    .iter()
                    .flatten()
                    .find(|d| d.key.as_deref() == Some("crmsync_id"))
                    .and_then(|d| d.value.clone());
                if let Some(m) = marker {
                    *counts.entry(format!("contact:{m}")).or_default() += 1;
                }
            }
            let mut calendars = 0;
            for cal in &dump.calendars {
                if cal.calendar.summary.as_deref() == Some("CRM") {
                    calendars += 1;
                }
                let id = cal.calendar.id.clone().unwrap_or_default();
                for e in dump.live_events(&id) {
                    if e.recurring_event_id.is_some() {
                        continue;
                    }
                    let marker = e
                        .extended_properties
                        .as_ref()
                        .and_then(|p| p.private.as_ref())
                        .and_then(|p| p.get("crmsync_id").cloned());
                    if let Some(m) = marker {
                        *counts.entry(format!("event:{m}")).or_default() += 1;
                    }
                }
            }
            let groups = dump
                .groups
                .iter()
                .filter(|g| g.name.as_deref() == Some("CRM"))
                .count();
            markers.insert(user.to_owned(), counts);
            containers.insert(user.to_owned(), (calendars, groups));
        }
        GoogleCounts {
            markers,
            containers,
        }
    }

    /// Items carrying a marker, over all users.
    pub fn total(&self) -> usize {
        self.markers.values().flat_map(|m| m.values()).sum()
    }

    /// Asserts one item per marker and at most one "CRM" calendar and group per user.
    pub fn assert_no_duplicates(&self, context: &str) {
        for (user, counts) in &self.markers {
            let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
            assert!(dups.is_empty(), "{context}: {user} has duplicates {dups:?}");
        }
        for (user, (calendars, groups)) in &self.containers {
            assert!(
                *calendars <= 1 && *groups <= 1,
                "{context}: {user} has {calendars} CRM calendars and {groups} CRM groups"
            );
        }
    }

    pub fn has(&self, user: &str, marker: &str) -> bool {
        self.markers
            .get(user)
            .is_some_and(|m| m.contains_key(marker))
    }
}

/// Whether a path exists (readable helper for assertions).
pub fn exists(path: &Path) -> bool {
    path.exists()
}
