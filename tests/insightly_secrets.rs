//! No Insightly key appears in any log line (every level, every thread: the connector's
//! HTTP thread logs through the subscriber of the thread that started it) or in any
//! message, through a read, a write-back, a 429, a refused key and a failed write. Alone in
//! its test binary: tracing's per-callsite interest cache is process-wide, and tests on
//! other threads would race with this one's scoped subscriber.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connector_support;
mod insightly_fake;

use base64::Engine as _;
use crmsync::crm::insightly::config::Mode;
use crmsync::crm::{Source, WriteBack};
use crmsync::mirror;
use crmsync::model::UserId;
use crmsync::store::StateDb;
use insightly_fake::{key_of, FakeInsightly};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn update(record: &str, user: &str, expected: i64, fields: serde_json::Value) -> WriteBack {
    WriteBack::Update {
        record: record.parse().unwrap(),
        expected_version: expected,
        acting_user: UserId::new(user).unwrap(),
        fields: fields.as_object().unwrap().clone(),
    }
}

/// Captures every log line of every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_key_appears_in_any_log_line_or_message() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let fake = FakeInsightly::start();
    let dir = tempfile::tempdir().unwrap();
    let config = fake.config(dir.path(), Mode::Delegated);
    let clock = insightly_fake::clock();
    let state = StateDb::open_in_memory().unwrap();
    let mut messages = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        let mut source = insightly_fake::open(&config, &clock);
        mirror::refresh(&state, &source).unwrap();
        let v = source
            .get(&"contact:402".parse().unwrap())
            .unwrap()
            .unwrap()
            .0;
        source
            .apply(&update("contact:402", "101", v, json!({"title": "COO"})))
            .unwrap();
        fake.fail_next(429, Some(1), 1);
        fake.revoke_key(103);
        clock.advance(Duration::from_secs(61 * 60));
        let refresh = mirror::refresh(&state, &source).unwrap();
        messages.extend(refresh.problems.iter().map(|p| p.to_string()));
        fake.revoke_key(101);
        let v = source
            .get(&"contact:402".parse().unwrap())
            .unwrap()
            .unwrap()
            .0;
        let err = source
            .apply(&update("contact:402", "101", v, json!({"title": "CEO"})))
            .unwrap_err();
        messages.push(err.to_string());
        messages.push(format!("{err:?}"));
    });
    messages.push(format!("{config:?}"));
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("CRM request"),
        "the logs were captured: {logs}"
    );
    assert!(
        messages.iter().any(|m| m.contains("user 101")),
        "{messages:?}"
    );
    for user in [100, 101, 102, 103] {
        let key = key_of(user);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        for text in messages.iter().chain(std::iter::once(&logs)) {
            assert!(!text.contains(&key), "key of {user} in {text}");
            assert!(
                !text.contains(&basic),
                "Basic credential of {user} in {text}"
            );
        }
    }
}
