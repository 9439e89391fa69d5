//! Shared set-up of the `GoogleRemote` integration tests: an in-process emulator on
//! 127.0.0.1:0 and a `GoogleRemote` pointed at it with the shipped test key, fast retries
//! (millisecond backoff, seeded jitter) and generous pacing.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::{NaiveDate, NaiveDateTime};
use crmsync::emulator::{EmulatorOptions, EmulatorSettings, QuotaConfig, TestEmulator};
use crmsync::google::remote::{GoogleRemote, GoogleRemoteConfig};
use crmsync::model::{
    AttendeeLine, CrmId, EmailAddress, EventTime, PhoneNumber, PostalAddress, SyncedContact,
    SyncedEvent, UserId,
};
use crmsync::sync::remote::{GoogleUser, OpOutcome, OpResult, RemoteItem};
use std::path::PathBuf;

pub const ALICE: &str = "alice@example.com";

pub fn key_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/emulator-service-account.json")
}

pub fn unlimited() -> EmulatorOptions {
    EmulatorOptions {
        settings: EmulatorSettings {
            quota: QuotaConfig::unlimited(),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn config_for(emu: &TestEmulator) -> GoogleRemoteConfig {
    GoogleRemoteConfig::for_emulator(&emu.base_url(), &emu.token_uri(), &key_path())
}

pub async fn start(options: EmulatorOptions) -> (TestEmulator, GoogleRemote) {
    start_with(options, |_| {}).await
}

pub async fn start_with(
    options: EmulatorOptions,
    tweak: impl FnOnce(&mut GoogleRemoteConfig),
) -> (TestEmulator, GoogleRemote) {
    let emu = TestEmulator::start(options).await.expect("emulator starts");
    let mut config = config_for(&emu);
    tweak(&mut config);
    let remote = GoogleRemote::new(config).await.expect("remote");
    (emu, remote)
}

pub fn user(account: &str) -> GoogleUser {
    let local = account.split('@').next().unwrap();
    GoogleUser {
        user: UserId::new(format!("u-{local}")).unwrap(),
        account: account.to_owned(),
    }
}

pub fn alice() -> GoogleUser {
    user(ALICE)
}

pub fn crm(id: &str) -> CrmId {
    CrmId::new(id).unwrap()
}

pub fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(h, min, 0)
        .unwrap()
}

/// A timed event with attendees and a multi-line description.
pub fn meeting(title: &str, start: NaiveDateTime, zone: &str) -> SyncedEvent {
    SyncedEvent {
        title: title.to_owned(),
        description: "Agenda:\n- numbers\n- plans ✓".into(),
        location: "Room 4, Berlin".into(),
        start: EventTime::DateTime(start),
        end: EventTime::DateTime(start + chrono::Duration::minutes(90)),
        time_zone: zone.to_owned(),
        all_day: false,
        recurrence: vec![],
        attendees: vec![
            AttendeeLine {
                name: "Ada Lovelace".into(),
                email: "ada@globex.example".into(),
            },
            AttendeeLine {
                name: "Grace Hopper".into(),
                email: "grace@initech.example".into(),
            },
        ],
    }
}

pub fn all_day(title: &str, day: NaiveDate, zone: &str) -> SyncedEvent {
    SyncedEvent {
        title: title.to_owned(),
        description: String::new(),
        location: String::new(),
        start: EventTime::Date(day),
        end: EventTime::Date(day.succ_opt().unwrap()),
        time_zone: zone.to_owned(),
        all_day: true,
        recurrence: vec![],
        attendees: vec![],
    }
}

pub fn person(first: &str, last: &str, email: &str) -> SyncedContact {
    SyncedContact {
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        organization: "Globex".into(),
        title: "Buyer".into(),
        emails: vec![EmailAddress {
            address: email.to_owned(),
            label: "work".into(),
        }],
        phones: vec![PhoneNumber {
            number: "+442079460000".into(),
            label: "mobile".into(),
        }],
        addresses: vec![PostalAddress {
            street: "1 Main St".into(),
            city: "London".into(),
            postal_code: "N1 1AA".into(),
            country: "UK".into(),
            ..PostalAddress::default()
        }],
        notes: "Met at the fair.\nPrefers e-mail.".into(),
    }
}

/// The item of a successful write.
pub fn written<T: std::fmt::Debug>(result: &OpResult<T>) -> &RemoteItem<T> {
    match &result.result {
        Ok(OpOutcome::Written(item)) => item,
        other => panic!("expected a written item, got {other:?}"),
    }
}
