//! Shared set-up of the end-to-end sync stories: an embedded CRM loaded from an org document,
//! a state DB, the in-process emulator on 127.0.0.1:0, and the real `GoogleRemote` — the
//! whole engine as `crmsync sync` runs it. After every pass the org-wide invariant is
//! checked: no Google item exists that its user may not read.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeZone, Utc};
use crmsync::config::Config;
use crmsync::crm::orgfile;
use crmsync::crm::sqlite::SqliteCrm;

use crmsync::emulator::{EmulatorOptions, EmulatorSettings, QuotaConfig, TestEmulator};
use crmsync::google::remote::{GoogleRemote, GoogleRemoteConfig};
use crmsync::google::retry::RetryConfig;
use crmsync::model::{ObjectKind, UserId};
use crmsync::scope::{Direction, ScopeLayer, SelectionMode};
use crmsync::store::StateDb;
use crmsync::sync::engine::{Engine, RunReport, SyncOptions, UserStatus};
use crmsync::sync::remote::GoogleUser;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

pub fn key_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/emulator-service-account.json")
}

/// "Now" for every story: events of the fixture fall inside the default window.
pub fn story_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

/// A small company: Chief > SalesDir > {MgrEast > RepEast, MgrWest > RepWest}; private
/// contacts and events; r1 shares West's contacts read-only with MgrEast.
pub fn org() -> Value {
    let mut doc: Value =
        serde_json::from_str(include_str!("../fixtures/example-org.json")).unwrap();
    doc["events"][0]["recurrence"] = json!([]);
    let contacts = doc["contacts"].as_array_mut().unwrap();
    let base = contacts[0].clone();
    let mut add = |id: &str, owner: &str, first: &str, email: &str| {
        let mut c = base.clone();
        c["id"] = json!(id);
        c["owner"] = json!(owner);
        c["first_name"] = json!(first);
        c["last_name"] = json!("Test");
        c["emails"] = json!([{"address": email, "label": "work"}]);
        c["phones"] = json!([]);
        c["notes"] = json!("line one\nline two");
        contacts.push(c);
    };
    add("c2", "hank", "Hal", "hal@initech.example");
    add("c3", "erin", "Eve", "eve@initech.example");
    add("c4", "frank", "Fay", "fay@initech.example");
    add("c5", "hank", "Hugo", "hugo@initech.example");
    let events = doc["events"].as_array_mut().unwrap();
    let mut e2 = events[0].clone();
    e2["id"] = json!("e2");
    e2["owner"] = json!("hank");
    e2["title"] = json!("West pipeline");
    e2["attendees"] = json!([{"user": "hank"}, {"contact": "c2"}]);
    e2["links"] = json!([{"contact": "c2"}]);
    events.push(e2);
    doc
}

/// The entity `id` of the org file's list `list` (`"users"`, `"contacts"`, ...), to edit.
pub fn entity_mut<'d>(doc: &'d mut Value, list: &str, id: &str) -> &'d mut Value {
    doc[list]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["id"] == id)
        .unwrap()
}

/// `org()` with `n` more contacts owned by alice (`bulk0`, `bulk1`, ...).
pub fn org_with_bulk(n: usize) -> Value {
    let mut doc = org();
    let contacts = doc["contacts"].as_array_mut().unwrap();
    let base = contacts[0].clone();
    for i in 0..n {
        let mut c = base.clone();
        c["id"] = json!(format!("bulk{i}"));
        c["owner"] = json!("alice");
        c["first_name"] = json!(format!("Bulk{i}"));
        c["emails"] = json!([{"address": format!("bulk{i}@initech.example"), "label": "work"}]);
        contacts.push(c);
    }
    doc
}

pub struct Harness {
    pub emu: TestEmulator,
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub state: StateDb,
    pub remote: GoogleRemote,
    pub now: DateTime<Utc>,
}

/// [`GoogleRemoteConfig::for_emulator`] with more People pacing and quicker retries.
pub fn remote_config(emu: &TestEmulator) -> GoogleRemoteConfig {
    GoogleRemoteConfig {
        people_reads_per_minute: 6000,
        people_writes_per_minute: 6000,
        retry: RetryConfig {
            max_attempts: 5,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
            attempt_timeout: Duration::from_secs(10),
            seed: Some(7),
        },
        ..GoogleRemoteConfig::for_emulator(&emu.base_url(), &emu.token_uri(), &key_path())
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

impl Harness {
    pub async fn start(org: Value) -> Harness {
        Self::start_with(org, emulator_options()).await
    }

    pub async fn start_with(org: Value, options: EmulatorOptions) -> Harness {
        let emu = TestEmulator::start(options).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.crm.path = dir.path().join("crm.db");
        config.state.path = dir.path().join("state.db");
        config.google.base_url = format!("{}/", emu.base_url());
        config.google.service_account_key = key_path();
        config.google.token_uri = Some(emu.token_uri());
        config.scope.org = ScopeLayer {
            contact: Some(SelectionMode::AllVisible),
            event: Some(SelectionMode::AllVisible),
            direction: Some(Direction::TwoWay),
            ..ScopeLayer::default()
        };
        let state = StateDb::create(&config.state.path).unwrap();
        let remote = GoogleRemote::new(remote_config(&emu)).await.unwrap();
        let h = Harness {
            emu,
            dir,
            config,
            state,
            remote,
            now: story_now(),
        };
        h.load(&org);
        h
    }

    /// Loads (or re-loads, as a CRM change) the org document.
    pub fn load(&self, org: &Value) {
        let model = orgfile::parse("story", &org.to_string()).unwrap();
        self.crm().load(&model).unwrap();
    }

    pub fn crm(&self) -> SqliteCrm {
        SqliteCrm::open(&self.config.crm.path).unwrap()
    }

    pub async fn sync(&self) -> RunReport {
        self.sync_with(&SyncOptions::default()).await
    }

    pub async fn sync_with(&self, options: &SyncOptions) -> RunReport {
        let engine = Engine {
            config: &self.config,
            state: &self.state,
            crm: RefCell::new(Box::new(self.crm())),
            remote: &self.remote,
            now: self.now,
        };
        let report = engine.sync_once(options).await.unwrap();
        self.assert_nothing_leaks();
        report
    }

    pub fn google_user(&self, user: &str) -> GoogleUser {
        GoogleUser {
            user: UserId::new(user).unwrap(),
            account: format!("{user}@acme.example"),
        }
    }

    pub fn calendar_of(&self, user: &str) -> String {
        self.state
            .sync_user(&UserId::new(user).unwrap())
            .unwrap()
            .and_then(|s| s.calendar_id)
            .expect("user has a calendar")
    }

    pub fn group_of(&self, user: &str) -> String {
        self.state
            .sync_user(&UserId::new(user).unwrap())
            .unwrap()
            .and_then(|s| s.group_resource)
            .expect("user has a group")
    }

    /// Titles of the live events in the user's CRM calendar, with their crmsync ids.
    pub fn events(&self, user: &str) -> Vec<(Option<String>, String)> {
        let Some(sync) = self.state.sync_user(&UserId::new(user).unwrap()).unwrap() else {
            return Vec::new();
        };
        let Some(calendar) = sync.calendar_id else {
            return Vec::new();
        };
        let dump = self.emu.dump_user(&format!("{user}@acme.example"));
        let Some(dump) = dump else { return Vec::new() };
        let mut out: Vec<_> = dump
            .live_events(&calendar)
            .into_iter()
            .map(|e| {
                let marker = e
                    .extended_properties
                    .as_ref()
                    .and_then(|p| p.private.as_ref())
                    .and_then(|p| p.get("crmsync_id").cloned());
                (marker, e.summary.clone().unwrap_or_default())
            })
            .collect();
        out.sort();
        out
    }

    /// (crmsync id, given name) of the user's live contacts that are ours or in our group.
    pub fn contacts(&self, user: &str) -> Vec<(Option<String>, String)> {
        let dump = self.emu.dump_user(&format!("{user}@acme.example"));
        let Some(dump) = dump else { return Vec::new() };
        let group = self
            .state
            .sync_user(&UserId::new(user).unwrap())
            .unwrap()
            .and_then(|s| s.group_resource);
        let mut out: Vec<_> = dump
            .live_contacts()
            .into_iter()
            .filter_map(|p| {
                let marker = p
                    .client_data
                    .iter()
                    .flatten()
                    .find(|d| d.key.as_deref() == Some("crmsync_id"))
                    .and_then(|d| d.value.clone());
                let in_group = p.memberships.iter().flatten().any(|m| {
                    m.contact_group_membership
                        .as_ref()
                        .and_then(|g| g.contact_group_resource_name.as_ref())
                        == group.as_ref()
                });
                (marker.is_some() || in_group).then(|| {
                    let name = p
                        .names
                        .iter()
                        .flatten()
                        .next()
                        .and_then(|n| n.given_name.clone())
                        .unwrap_or_default();
                    (marker, name)
                })
            })
            .collect();
        out.sort();
        out
    }

    /// The invariant of invariants: every Google item carrying our marker is readable by
    /// the user whose account holds it, per the CRM as it is now.
    pub fn assert_nothing_leaks(&self) {
        let (model, _) = self.crm().snapshot().unwrap();
        let check = crmsync::demo::leaks::check(&self.emu, &model);
        assert!(check.leaks.is_empty(), "LEAKS: {:?}", check.leaks);
    }

    /// Completeness: `user`'s phone holds exactly their desired contacts and events under
    /// the CRM as it is now (what a full plan would give them).
    pub fn assert_holds_what_they_should(&self, user: &str) {
        use crmsync::security::Access;
        let (model, _) = self.crm().snapshot().unwrap();
        let access = Access::build(&model);
        let id = UserId::new(user).unwrap();
        let overrides = self.state.scope_overrides(&id).unwrap();
        let scope = crmsync::scope::resolve(&self.config.scope, &model, &id, &overrides)
            .unwrap()
            .scope;
        for (kind, held) in [
            (ObjectKind::Contact, ids(&self.contacts(user))),
            (ObjectKind::Event, ids(&self.events(user))),
        ] {
            let mut held = held;
            held.sort();
            let desired: Vec<String> =
                crmsync::scope::desired_set(&access, &id, &scope, kind, self.now)
                    .unwrap()
                    .iter()
                    .map(|id| id.to_string())
                    .collect();
            assert_eq!(held, desired, "{user}'s {kind}s");
        }
    }

    /// The invariant, for passes that knowingly leave copies of records deleted from the
    /// CRM (a refused breaker; another user's delete written back in the same run): every
    /// marked item whose record still exists is readable by its user.
    pub fn assert_nothing_leaks_but_deleted_records(&self) {
        let (model, _) = self.crm().snapshot().unwrap();
        let check = crmsync::demo::leaks::check(&self.emu, &model);
        let exists = |record: &str| match record.split_once(':') {
            Some(("contact", id)) => model.contacts.contains_key(&CrmId::new(id).unwrap()),
            Some(("event", id)) => model.events.contains_key(&CrmId::new(id).unwrap()),
            _ => true,
        };
        let leaks: Vec<_> = check.leaks.iter().filter(|l| exists(&l.record)).collect();
        assert!(leaks.is_empty(), "LEAKS: {leaks:?}");
    }

    /// A pass checked with [`Harness::assert_nothing_leaks_but_deleted_records`].
    pub async fn sync_leaving_deleted(&self, options: &SyncOptions) -> RunReport {
        let engine = Engine {
            config: &self.config,
            state: &self.state,
            crm: RefCell::new(Box::new(self.crm())),
            remote: &self.remote,
            now: self.now,
        };
        let report = engine.sync_once(options).await.unwrap();
        self.assert_nothing_leaks_but_deleted_records();
        report
    }
}

/// Asserts every user of the report synced (or had nothing to do).
pub fn assert_all_synced(report: &RunReport) {
    for u in &report.users {
        assert!(
            matches!(u.status, UserStatus::Synced),
            "{} ended {:?}: {:?} {:?}",
            u.user,
            u.status,
            u.message,
            u.errors
        );
    }
}

/// Whether the report did nothing at all (a steady pass).
pub fn is_quiet(report: &RunReport) -> bool {
    report.users.iter().all(|u| {
        let t = u.total();
        t.created + t.updated + t.deleted + t.linked + t.written_back + t.imported + t.reverted == 0
            && u.errors.is_empty()
    })
}

pub fn ids(list: &[(Option<String>, String)]) -> Vec<String> {
    list.iter().filter_map(|(m, _)| m.clone()).collect()
}

// ── the phone: edits made through the Google APIs as the user ──────────────────────────

use crmsync::demo::phone::Phone;
use crmsync::model::{CrmId, SyncedContact, SyncedEvent};
use crmsync::sync::plan::Link;

impl Harness {
    pub fn link_of<T: serde::de::DeserializeOwned>(
        &self,
        user: &str,
        kind: ObjectKind,
        id: &str,
    ) -> Option<Link<T>> {
        self.state
            .links::<T>(&UserId::new(user).unwrap(), kind)
            .unwrap()
            .remove(&CrmId::new(id).unwrap())
    }

    /// The user's phone.
    pub fn phone(&self, user: &str) -> Phone<'_, GoogleRemote> {
        Phone {
            remote: &self.remote,
            state: &self.state,
            user: self.google_user(user),
            root: self.emu.base_url(),
            key: key_path(),
            token_uri: Some(self.emu.token_uri()),
        }
    }

    pub async fn phone_contact(&self, user: &str, id: &str) -> Option<SyncedContact> {
        self.phone(user).contact(id).await.unwrap()
    }

    pub async fn phone_event(&self, user: &str, id: &str) -> Option<SyncedEvent> {
        self.phone(user).event(id).await.unwrap()
    }

    pub async fn phone_edit_contact(
        &self,
        user: &str,
        id: &str,
        edit: impl FnOnce(&mut SyncedContact),
    ) {
        self.phone(user).edit_contact(id, edit).await.unwrap();
    }

    pub async fn phone_edit_event(
        &self,
        user: &str,
        id: &str,
        edit: impl FnOnce(&mut SyncedEvent),
    ) {
        self.phone(user).edit_event(id, edit).await.unwrap();
    }

    pub async fn phone_delete_contact(&self, user: &str, id: &str) {
        self.phone(user).delete_contact(id).await.unwrap();
    }

    /// A contact created on the phone (no crmsync marker), optionally in the CRM group.
    pub async fn phone_create_contact(
        &self,
        user: &str,
        given: &str,
        email: &str,
        in_group: bool,
    ) -> String {
        self.phone(user)
            .create_contact(given, "", email, in_group)
            .await
            .unwrap()
    }

    /// A contact the user had on the phone before crmsync first ran.
    pub async fn phone_create_contact_before_sync(
        &self,
        user: &str,
        given: &str,
        email: &str,
    ) -> String {
        self.phone_create_contact(user, given, email, false).await
    }
}

/// Reads one record of the CRM as it is now.
pub fn crm_contact(h: &Harness, id: &str) -> Option<crmsync::model::Contact> {
    match h
        .crm()
        .get(crmsync::crm::EntityKind::Contact, id)
        .unwrap()
        .map(|(_, e)| e)
    {
        Some(crmsync::crm::Entity::Contact(c)) => Some(c),
        _ => None,
    }
}

pub fn audit_actions(h: &Harness, user: &str) -> Vec<String> {
    h.state
        .audit_entries(Some(user), None, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.action, e.record.unwrap_or_default()))
        .collect()
}

// ── raw Google calls as the user: what a phone does that the engine's `Remote` never does ──

pub const CALENDAR_SCOPE: &str = "https://www.googleapis.com/auth/calendar";
pub const CONTACTS_SCOPE: &str = "https://www.googleapis.com/auth/contacts";

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Harness {
    /// One HTTP call to the emulator as `user` (a token minted over the control API).
    pub async fn raw(
        &self,
        user: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let account = format!("{user}@acme.example");
        let token = self
            .emu
            .mint_access_token(&account, &[CALENDAR_SCOPE, CONTACTS_SCOPE])
            .unwrap();
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.emu.base_url()))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `/calendar/v3/calendars/{the user's CRM calendar}/events`.
    pub fn events_path(&self, user: &str) -> String {
        format!(
            "/calendar/v3/calendars/{}/events",
            enc(&self.calendar_of(user))
        )
    }

    /// The event's Google id, from the user's link.
    pub fn event_google_id(&self, user: &str, crm_id: &str) -> String {
        self.link_of::<SyncedEvent>(user, ObjectKind::Event, crm_id)
            .and_then(|l| l.google_id)
            .expect("event is linked")
    }

    /// The contact's resource name, from the user's link.
    pub fn contact_resource(&self, user: &str, crm_id: &str) -> String {
        self.link_of::<SyncedContact>(user, ObjectKind::Contact, crm_id)
            .and_then(|l| l.google_id)
            .expect("contact is linked")
    }

    /// An event created in the user's CRM calendar by the phone (no crmsync marker).
    pub async fn phone_create_event(&self, user: &str, body: Value) -> String {
        let (status, v) = self
            .raw(
                user,
                reqwest::Method::POST,
                &self.events_path(user),
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn phone_delete_event(&self, user: &str, crm_id: &str) {
        let path = format!(
            "{}/{}",
            self.events_path(user),
            self.event_google_id(user, crm_id)
        );
        let (status, v) = self.raw(user, reqwest::Method::DELETE, &path, None).await;
        assert_eq!(status, 204, "{v}");
    }

    /// The raw stored events (live) of the user's CRM calendar, as Google holds them.
    pub fn stored_events(&self, user: &str) -> Vec<google_calendar3::api::Event> {
        let calendar = self.calendar_of(user);
        self.emu
            .dump_user(&format!("{user}@acme.example"))
            .map(|d| d.live_events(&calendar).into_iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many live Google items carry each crmsync marker (contacts and events).
    pub fn marker_counts(&self, user: &str) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for (m, _) in self.contacts(user).into_iter().chain(self.events(user)) {
            if let Some(m) = m {
                *out.entry(m).or_insert(0) += 1;
            }
        }
        out
    }

    /// Asserts no crmsync marker appears on more than one live item, for every user.
    pub fn assert_no_duplicates(&self) {
        self.assert_no_duplicates_while("");
    }

    /// [`Harness::assert_no_duplicates`], naming the situation in the failure.
    pub fn assert_no_duplicates_while(&self, context: &str) {
        for user in ["alice", "erin", "frank", "hank"] {
            let counts = self.marker_counts(user);
            let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
            assert!(
                dups.is_empty(),
                "{context}: {user} has duplicates: {dups:?}"
            );
        }
    }

    /// The crmsync markers each user's Google account holds.
    pub fn synced_markers(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        ["alice", "erin", "frank", "hank"]
            .into_iter()
            .map(|u| (u.to_owned(), self.marker_counts(u).into_keys().collect()))
            .collect()
    }

    /// Sets one user's scope overrides (as `crmsync scope set` does).
    pub fn set_scope(&mut self, user: &str, layer: &ScopeLayer) {
        self.state
            .replace_scope_overrides(&UserId::new(user).unwrap(), layer)
            .unwrap();
    }
}

/// Reads one event of the CRM as it is now.
pub fn crm_event(h: &Harness, id: &str) -> Option<crmsync::model::Event> {
    match h
        .crm()
        .get(crmsync::crm::EntityKind::Event, id)
        .unwrap()
        .map(|(_, e)| e)
    {
        Some(crmsync::crm::Entity::Event(e)) => Some(e),
        _ => None,
    }
}

pub fn user_report<'a>(report: &'a RunReport, user: &str) -> &'a crmsync::sync::engine::UserReport {
    report
        .users
        .iter()
        .find(|u| u.user.as_str() == user)
        .unwrap()
}

/// Audit entries of one action for one user.
pub fn audit_of(h: &Harness, user: &str, action: &str) -> Vec<crmsync::store::AuditEntry> {
    h.state
        .audit_entries(Some(user), None, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

impl Harness {
    /// One pass through another `Remote` (a wrapper around `self.remote`).
    pub async fn sync_via<
        R: crmsync::sync::remote::Remote + crmsync::revoke::remote::Offboarding,
    >(
        &self,
        remote: &R,
        options: &SyncOptions,
    ) -> RunReport {
        let engine = Engine {
            config: &self.config,
            state: &self.state,
            crm: RefCell::new(Box::new(self.crm())),
            remote,
            now: self.now,
        };
        let report = engine.sync_once(options).await.unwrap();
        self.assert_nothing_leaks();
        report
    }

    /// Google API write calls the emulator has served (reads and control calls excluded).
    pub fn google_writes(&self) -> u64 {
        self.emu
            .counters()
            .by_endpoint
            .iter()
            .filter(|(e, _)| {
                !(e.ends_with(".list") || e.ends_with(".get") || e.ends_with(".instances"))
            })
            .filter(|(e, _)| {
                e.starts_with("calendar.")
                    || e.starts_with("people.people")
                    || e.starts_with("people.contactGroups")
            })
            .map(|(_, n)| n)
            .sum()
    }
}

// ── a Remote with hooks around every call (crash and mid-pass stories) ────────────────────

use crmsync::sync::remote::{
    BatchResult, ContactOp as HookContactOp, EventOp as HookEventOp, Listing, Remote,
    RemoteChange as HookRemoteChange, RemoteError,
};

/// Which `Remote` method is being called, and for whom.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub method: &'static str,
    pub user: &'a GoogleUser,
}

/// Runs before and after every call of a [`Hooked`] remote.
#[allow(async_fn_in_trait)]
pub trait CallHook {
    async fn before(&self, _call: Call<'_>) {}
    async fn after(&self, _call: Call<'_>) {}
}

/// Delegates every call to `inner`, running `hook` around it.
pub struct Hooked<'a, H> {
    pub inner: &'a GoogleRemote,
    pub hook: H,
}

impl<H: CallHook> Hooked<'_, H> {
    async fn around<T>(
        &self,
        method: &'static str,
        user: &GoogleUser,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        self.hook.before(Call { method, user }).await;
        let out = call.await;
        self.hook.after(Call { method, user }).await;
        out
    }
}

impl<H: CallHook> Remote for Hooked<'_, H> {
    async fn ensure_calendar(
        &self,
        user: &GoogleUser,
        name: &str,
        known: Option<&str>,
    ) -> Result<String, RemoteError> {
        let call = self.inner.ensure_calendar(user, name, known);
        self.around("ensure_calendar", user, call).await
    }

    async fn ensure_group(
        &self,
        user: &GoogleUser,
        name: &str,
        known: Option<&str>,
    ) -> Result<String, RemoteError> {
        let call = self.inner.ensure_group(user, name, known);
        self.around("ensure_group", user, call).await
    }

    async fn list_events(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: Option<&str>,
    ) -> Result<Listing<SyncedEvent>, RemoteError> {
        let call = self.inner.list_events(user, calendar, sync_token);
        self.around("list_events", user, call).await
    }

    async fn get_event(
        &self,
        user: &GoogleUser,
        calendar: &str,
        id: &str,
    ) -> Result<HookRemoteChange<SyncedEvent>, RemoteError> {
        let call = self.inner.get_event(user, calendar, id);
        self.around("get_event", user, call).await
    }

    async fn event_ops(
        &self,
        user: &GoogleUser,
        calendar: &str,
        ops: &[HookEventOp],
    ) -> BatchResult<SyncedEvent> {
        let call = self.inner.event_ops(user, calendar, ops);
        self.around("event_ops", user, call).await
    }

    async fn list_contacts(
        &self,
        user: &GoogleUser,
        group: &str,
        sync_token: Option<&str>,
    ) -> Result<Listing<SyncedContact>, RemoteError> {
        let call = self.inner.list_contacts(user, group, sync_token);
        self.around("list_contacts", user, call).await
    }

    async fn get_contact(
        &self,
        user: &GoogleUser,
        group: &str,
        resource: &str,
    ) -> Result<HookRemoteChange<SyncedContact>, RemoteError> {
        let call = self.inner.get_contact(user, group, resource);
        self.around("get_contact", user, call).await
    }

    async fn contact_ops(
        &self,
        user: &GoogleUser,
        group: &str,
        ops: &[HookContactOp],
    ) -> BatchResult<SyncedContact> {
        let call = self.inner.contact_ops(user, group, ops);
        self.around("contact_ops", user, call).await
    }
}

use crmsync::revoke::remote::{
    AclListing, CredentialRelease, MarkedCalendar, MarkedGroup, Offboarding,
};

impl<H: CallHook> Offboarding for Hooked<'_, H> {
    async fn marked_calendars(
        &self,
        user: &GoogleUser,
    ) -> Result<Vec<MarkedCalendar>, RemoteError> {
        let call = self.inner.marked_calendars(user);
        self.around("marked_calendars", user, call).await
    }

    async fn delete_calendar(
        &self,
        user: &GoogleUser,
        calendar: &str,
    ) -> Result<bool, RemoteError> {
        let call = self.inner.delete_calendar(user, calendar);
        self.around("delete_calendar", user, call).await
    }

    async fn marked_groups(&self, user: &GoogleUser) -> Result<Vec<MarkedGroup>, RemoteError> {
        let call = self.inner.marked_groups(user);
        self.around("marked_groups", user, call).await
    }

    async fn delete_group(&self, user: &GoogleUser, group: &str) -> Result<bool, RemoteError> {
        let call = self.inner.delete_group(user, group);
        self.around("delete_group", user, call).await
    }

    async fn list_acl(
        &self,
        user: &GoogleUser,
        calendar: &str,
        sync_token: Option<&str>,
    ) -> Result<AclListing, RemoteError> {
        let call = self.inner.list_acl(user, calendar, sync_token);
        self.around("list_acl", user, call).await
    }

    async fn delete_acl(
        &self,
        user: &GoogleUser,
        calendar: &str,
        rule: &str,
    ) -> Result<bool, RemoteError> {
        let call = self.inner.delete_acl(user, calendar, rule);
        self.around("delete_acl", user, call).await
    }

    async fn release_credentials(
        &self,
        user: &GoogleUser,
    ) -> Result<CredentialRelease, RemoteError> {
        let call = self.inner.release_credentials(user);
        self.around("release_credentials", user, call).await
    }
}
