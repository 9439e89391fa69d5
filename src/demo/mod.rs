//! `crmsync demo`: the whole product on an embedded demo company.
//!
//! Loads `config/demo-org.json` (embedded in the binary) into a fresh embedded CRM, starts the
//! Google API emulator in-process on 127.0.0.1, and runs real sync passes through the official
//! Google clients. Between passes it plays a few days of real life — a phone edit, a
//! conflicting CRM edit, a contact created on a phone, a read-only user's edit, and a role
//! change that removes access — then someone leaves the company and their Google account is
//! given back as it was; and it tells what happened, from the run reports and the audit trail.

pub mod leaks;
pub mod offboarding;
pub mod phone;

use crate::config::Config;
use crate::crm::sqlite::SqliteCrm;
use crate::crm::{orgfile, OrgModel};
use crate::emulator::{EmulatorOptions, TestEmulator};
use crate::google::remote::GoogleRemote;
use crate::model::{SyncedContact, UserId};
use crate::scope::{Direction, ScopeLayer, SelectionMode};
use crate::store::StateDb;
use crate::sync::engine::{Engine, RunReport, SyncOptions};
use chrono::{DateTime, TimeZone, Utc};
use phone::Phone;
use serde::Serialize;
use std::cell::RefCell;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The demo company.
pub const DEMO_ORG: &str = include_str!("../../config/demo-org.json");
/// The emulator's test service-account key (a test key, accepted only by the emulator).
pub const TEST_KEY: &str = include_str!("../../config/emulator-service-account.json");

/// Why the demo could not finish.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo set-up: {0}")]
    Setup(String),
    #[error("sync: {0}")]
    Sync(#[from] crate::sync::engine::EngineError),
    #[error("phone: {0}")]
    Phone(#[from] phone::PhoneError),
}

fn setup<E: std::fmt::Display>(e: E) -> DemoError {
    DemoError::Setup(e.to_string())
}

/// What the demo did, for humans (`story`) and scripts (the reports).
#[derive(Debug, Serialize)]
pub struct DemoOutcome {
    pub dir: PathBuf,
    pub first: RunReport,
    pub second: RunReport,
    /// The admin's forced pass for users whose second pass the delete breaker refused.
    pub forced: Option<RunReport>,
    pub third: RunReport,
    /// The last day: a user leaves and is offboarded.
    pub offboarding: offboarding::Offboarding,
    pub story: String,
    /// The org-wide invariant after the last pass.
    pub leak_check: leaks::LeakCheck,
    /// Google API calls the emulator served, per pass (days 1, 3, 4 and 5; the admin's
    /// forced pass on day 3 is not counted).
    pub api_calls: [u64; 4],
}

/// The demo's clock: its events are spread around this day.
pub fn demo_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
        .single()
        .unwrap_or_else(Utc::now)
}

fn demo_config(dir: &Path, emu: &TestEmulator) -> Config {
    let mut config = Config::default();
    config.state.path = dir.join("crmsync-state.db");
    config.crm.path = dir.join("crmsync-crm.db");
    config.google.base_url = format!("{}/", emu.base_url());
    config.google.service_account_key = dir.join("emulator-service-account.json");
    config.google.token_uri = Some(emu.token_uri());
    // Reps and managers get their team's records both ways; the read-only analyst gets
    // everything she may read, one way; the admin everything.
    config.scope.org = ScopeLayer {
        contact: Some(SelectionMode::Team),
        event: Some(SelectionMode::Team),
        direction: Some(Direction::TwoWay),
        ..ScopeLayer::default()
    };
    for (id, layer) in [
        (
            "read_only",
            ScopeLayer {
                contact: Some(SelectionMode::AllVisible),
                event: Some(SelectionMode::AllVisible),
                direction: Some(Direction::CrmToGoogle),
                ..ScopeLayer::default()
            },
        ),
        (
            "leadership",
            ScopeLayer {
                contact: Some(SelectionMode::AllVisible),
                ..ScopeLayer::default()
            },
        ),
    ] {
        if let Ok(p) = id.parse() {
            config.scope.profile.insert(p, layer);
        }
    }
    if let Ok(chief) = "chief".parse() {
        config.scope.role.insert(
            chief,
            ScopeLayer {
                contact: Some(SelectionMode::AllVisible),
                event: Some(SelectionMode::AllVisible),
                ..ScopeLayer::default()
            },
        );
    }
    config
}

struct Demo<'a> {
    config: &'a Config,
    state: &'a StateDb,
    remote: &'a GoogleRemote,
    emu: &'a TestEmulator,
    now: DateTime<Utc>,
}

impl Demo<'_> {
    async fn pass(&self) -> Result<(RunReport, u64), DemoError> {
        self.pass_with(&SyncOptions::default()).await
    }

    async fn pass_with(&self, options: &SyncOptions) -> Result<(RunReport, u64), DemoError> {
        let before = self.emu.counters().api_calls;
        let crm = SqliteCrm::open(&self.config.crm.path).map_err(setup)?;
        let engine = Engine {
            config: self.config,
            state: self.state,
            crm: RefCell::new(Box::new(crm)),
            remote: self.remote,
            now: self.now,
        };
        let report = engine.sync_once(options).await?;
        Ok((report, self.emu.counters().api_calls - before))
    }

    fn phone(&self, user: &str) -> Result<Phone<'_, GoogleRemote>, DemoError> {
        let id = UserId::new(user).map_err(setup)?;
        Ok(Phone {
            remote: self.remote,
            state: self.state,
            user: phone::google_user(&id, &format!("{user}@acme.example")),
            root: self.emu.base_url(),
            key: self.config.google.service_account_key.clone(),
            token_uri: self.config.google.token_uri.clone(),
        })
    }

    fn load(&self, doc: &serde_json::Value) -> Result<(), DemoError> {
        let model = orgfile::parse("demo-org.json", &doc.to_string()).map_err(setup)?;
        SqliteCrm::open(&self.config.crm.path)
            .map_err(setup)?
            .load(&model)
            .map_err(setup)?;
        Ok(())
    }
}

/// Runs the demo in `dir` (which must exist and may be a temporary folder).
pub async fn run(dir: &Path) -> Result<DemoOutcome, DemoError> {
    let emu = TestEmulator::start(EmulatorOptions {
        domains: vec!["acme.example".into()],
        ..EmulatorOptions::default()
    })
    .await
    .map_err(setup)?;
    let outcome = run_with(dir, &emu).await;
    emu.shutdown().await;
    outcome
}

async fn run_with(dir: &Path, emu: &TestEmulator) -> Result<DemoOutcome, DemoError> {
    let config = demo_config(dir, emu);
    std::fs::write(&config.google.service_account_key, TEST_KEY).map_err(setup)?;
    let state = StateDb::create(&config.state.path).map_err(setup)?;
    let remote = GoogleRemote::from_config(&config.google, &config.sync)
        .await
        .map_err(setup)?;
    let demo = Demo {
        config: &config,
        state: &state,
        remote: &remote,
        emu,
        now: demo_now(),
    };
    let mut doc: serde_json::Value = serde_json::from_str(DEMO_ORG).map_err(setup)?;
    demo.load(&doc)?;
    let model_before: OrgModel = orgfile::parse("demo-org.json", DEMO_ORG).map_err(setup)?;

    // Before crmsync: Dana's phone already holds two contacts of her own — a customer the CRM
    // has too (crmsync links it rather than adding a duplicate) and a personal one.
    let leaver = "dana";
    let leaver_account = format!("{leaver}@acme.example");
    let customer = first_owned_contact(&model_before, "erin")
        .and_then(|id| model_before.contacts.get(&id.parse().ok()?).cloned())
        .ok_or_else(|| setup("the demo org has no contact owned by erin"))?;
    let customer_email = customer
        .emails
        .first()
        .map(|e| e.address.clone())
        .unwrap_or_default();
    let dana_phone = demo.phone(leaver)?;
    let own = vec![
        dana_phone
            .create_contact(
                &customer.first_name,
                &customer.last_name,
                &customer_email,
                false,
            )
            .await?,
        dana_phone
            .create_contact("Rosa", "Diaz", "rosa.diaz@home.example", false)
            .await?,
    ];
    let own_before = offboarding::own_contacts(emu, &leaver_account, &own);

    // Day 1: everyone's phone gets their CRM calendar and contact group.
    let (first, calls1) = demo.pass().await?;

    // Day 2: life happens.
    // - Frank edits a customer on his phone: new title, and a note line added.
    let frank_contact = first_owned_contact(&model_before, "frank").unwrap_or_default();
    let frank = demo.phone("frank")?;
    frank
        .edit_contact(&frank_contact, |c: &mut SyncedContact| {
            c.title = "Chief Procurement Officer".into();
            c.notes = format!("{}\nCalled on Monday: wants a quote by Friday.", c.notes);
        })
        .await?;
    // - Meanwhile the office changes the same contact in the CRM: another title (a real
    //   conflict) and the first note line (which merges with the phone's new line).
    let contact = contact_mut(&mut doc, &frank_contact);
    if let Some(c) = contact {
        c["title"] = serde_json::json!("Head of Purchasing");
        let notes = c["notes"].as_str().unwrap_or_default().to_owned();
        let mut lines: Vec<String> = notes.lines().map(str::to_owned).collect();
        if let Some(first_line) = lines.first_mut() {
            *first_line = format!("{first_line} (confirmed by the office)");
        }
        c["notes"] = serde_json::json!(lines.join("\n"));
    }
    // - Gina adds a new lead to her phone's CRM group.
    demo.phone("gina")?
        .create_contact("Nadia", "Novak", "nadia.novak@newprospect.example", true)
        .await?;
    // - Olivia (read-only) tries to fix a phone number on a contact she may only read.
    let olivia_contact = first_owned_contact(&model_before, "ivan").unwrap_or_default();
    demo.phone("olivia")?
        .edit_contact(&olivia_contact, |c| {
            c.phones = vec![crate::model::PhoneNumber {
                number: "+44 20 7946 0999".into(),
                label: "mobile".into(),
            }];
        })
        .await?;
    // - Ivan moves from the West team to the East team: Hank (Manager West) no longer
    //   manages him and loses his records; Erin (Manager East) gains them.
    if let Some(users) = doc["users"].as_array_mut() {
        for u in users.iter_mut() {
            if u["id"] == "ivan" {
                u["role"] = serde_json::json!("rep_east");
            }
        }
    }
    demo.load(&doc)?;

    // Day 3: the next pass sorts it all out — except where the delete breaker stops a pass
    // that would empty much of a phone; the admin reviews and confirms those with --force.
    let (second, calls2) = demo.pass().await?;
    let refused: Vec<UserId> = second
        .users
        .iter()
        .filter(|u| u.status == crate::sync::engine::UserStatus::Refused)
        .map(|u| u.user.clone())
        .collect();
    let forced = if refused.is_empty() {
        None
    } else {
        let options = SyncOptions {
            users: refused,
            force: true,
            ..SyncOptions::default()
        };
        Some(demo.pass_with(&options).await?.0)
    };
    // Day 4: and the one after has (almost) nothing left to do.
    let (third, calls3) = demo.pass().await?;

    // Day 5: Dana leaves the company: deactivated in the CRM, offboarded by the next pass.
    if let Some(users) = doc["users"].as_array_mut() {
        for u in users.iter_mut() {
            if u["id"] == leaver {
                u["active"] = serde_json::json!(false);
            }
        }
    }
    demo.load(&doc)?;
    let (report, calls5) = demo.pass().await?;
    let offboarding = offboarding::Offboarding {
        user: leaver.to_owned(),
        report,
        own_after: offboarding::own_contacts(emu, &leaver_account, &own),
        own_before,
        account_after: offboarding::account_after(emu, &leaver_account),
    };

    let (model_after, _) = SqliteCrm::open(&config.crm.path)
        .map_err(setup)?
        .snapshot()
        .map_err(setup)?;
    let leak_check = leaks::check(emu, &model_after);
    let story = tell(
        &demo,
        &leak_check,
        [&first, &second, &third],
        forced.as_ref(),
        &offboarding,
        &frank_contact,
        &olivia_contact,
    )
    .await?;
    Ok(DemoOutcome {
        dir: dir.to_owned(),
        first,
        second,
        forced,
        third,
        offboarding,
        story,
        leak_check,
        api_calls: [calls1, calls2, calls3, calls5],
    })
}

fn first_owned_contact(model: &OrgModel, owner: &str) -> Option<String> {
    model
        .contacts
        .values()
        .find(|c| c.owner.as_str() == owner && c.visibility.is_none())
        .map(|c| c.id.to_string())
}

fn contact_mut<'a>(doc: &'a mut serde_json::Value, id: &str) -> Option<&'a mut serde_json::Value> {
    doc["contacts"]
        .as_array_mut()?
        .iter_mut()
        .find(|c| c["id"] == id)
}

async fn tell(
    demo: &Demo<'_>,
    leak_check: &leaks::LeakCheck,
    [first, second, third]: [&RunReport; 3],
    forced: Option<&RunReport>,
    leaver: &offboarding::Offboarding,
    frank_contact: &str,
    olivia_contact: &str,
) -> Result<String, DemoError> {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "crmsync demo — Acme Robotics (8 users, 200 contacts, 60 events)\n"
    );
    let _ = writeln!(s, "Day 1: first sync. Each user got a \"CRM (crmsync)\" calendar and contact group with exactly what they may see:");
    for u in &first.users {
        let t = u.total();
        let _ = writeln!(
            s,
            "  {:<8} {:>3} contacts, {:>3} events{}",
            u.user.as_str(),
            u.contacts.created + u.contacts.linked,
            u.events.created + u.events.linked,
            if t.errors > 0 { " (with errors)" } else { "" }
        );
    }
    let _ = writeln!(s, "\nDay 2: on the phones and in the office…");
    let _ = writeln!(
        s,
        "  - frank edited contact {frank_contact} on his phone (title + a note line);"
    );
    let _ = writeln!(
        s,
        "    the office changed the same contact in the CRM (another title + the first note line)"
    );
    let _ = writeln!(
        s,
        "  - gina created \"Nadia Novak\" in her phone's CRM group"
    );
    let _ = writeln!(
        s,
        "  - olivia (read-only) changed a phone number of contact {olivia_contact} on her phone"
    );
    let _ = writeln!(
        s,
        "  - ivan moved from Rep West to Rep East in the CRM role tree\n"
    );
    let _ = writeln!(s, "Day 3: second sync:");
    let audit = demo
        .state
        .audit_entries(None, None, 100_000)
        .map_err(setup)?;
    let of_run = |run: &str, action: &str| -> Vec<String> {
        audit
            .iter()
            .filter(|e| e.run_id == run && e.action == action)
            .map(|e| {
                format!(
                    "{} {}",
                    e.user_id.as_deref().unwrap_or("?"),
                    e.record.as_deref().unwrap_or("")
                )
            })
            .collect()
    };
    let conflicts = demo.state.conflict_entries(None).map_err(setup)?;
    for c in conflicts
        .iter()
        .filter(|c| c.record.ends_with(frank_contact))
    {
        let _ = writeln!(
            s,
            "  conflict on {} for {}: field {} — phone {} vs CRM {} → kept {} ({} policy)",
            c.record, c.user_id, c.field, c.google_value, c.crm_value, c.resolution, c.policy
        );
    }
    for line in of_run(&second.run_id, "text_merged") {
        let _ = writeln!(s, "  notes merged line by line (both edits kept): {line}");
    }
    for line in of_run(&second.run_id, "written_back") {
        let _ = writeln!(s, "  written back to the CRM: {line}");
    }
    for line in of_run(&second.run_id, "imported") {
        let _ = writeln!(s, "  imported from a phone into the CRM: {line}");
    }
    for line in of_run(&second.run_id, "reverted") {
        let _ = writeln!(
            s,
            "  reverted on the phone (no edit right in the CRM): {line}"
        );
    }
    for u in second
        .users
        .iter()
        .filter(|u| u.status == crate::sync::engine::UserStatus::Refused)
    {
        let _ = writeln!(
            s,
            "  {}'s pass was stopped by the delete breaker: {}",
            u.user,
            u.message.as_deref().unwrap_or("")
        );
    }
    let mut pulled = of_run(&second.run_id, "pulled_back");
    if let Some(f) = forced {
        let _ = writeln!(
            s,
            "  the admin reviewed it and re-ran those users with --force"
        );
        pulled.extend(of_run(&f.run_id, "pulled_back"));
    }
    let mut per_user: std::collections::BTreeMap<&str, usize> = Default::default();
    for p in &pulled {
        *per_user
            .entry(p.split(' ').next().unwrap_or("?"))
            .or_default() += 1;
    }
    let _ = writeln!(
        s,
        "  pulled back from phones after the role change: {} item(s) ({})",
        pulled.len(),
        per_user
            .iter()
            .map(|(u, n)| format!("{u}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let gained: usize = second
        .users
        .iter()
        .map(|u| u.contacts.created + u.events.created)
        .sum();
    let _ = writeln!(
        s,
        "  new on phones (incl. gains from the role change): {gained} item(s)"
    );
    if let Ok(Some(c)) = demo.phone("frank")?.contact(frank_contact).await {
        let _ = writeln!(
            s,
            "\n  frank's phone now shows {frank_contact}: title \"{}\"",
            c.title
        );
        for l in c.notes.lines() {
            let _ = writeln!(s, "    | {l}");
        }
    }
    let t3: usize = third
        .users
        .iter()
        .map(|u| {
            let t = u.total();
            t.created + t.updated + t.deleted + t.written_back + t.imported + t.reverted
        })
        .sum();
    let _ = writeln!(
        s,
        "  (within that run, the users who hold the records edited or imported from phones got \
         them too: a run's write-backs reach the others in the same run)"
    );
    let _ = writeln!(
        s,
        "\nDay 4: third sync: {t3} change(s) — nothing was left over: the run converged."
    );
    leaver.tell(&mut s);
    let _ = writeln!(
        s,
        "\nChecked against Google itself: {} synced item(s) across all phones, {} that its owner may not read in the CRM.",
        leak_check.items_checked,
        leak_check.leaks.len()
    );
    for leak in &leak_check.leaks {
        let _ = writeln!(s, "  LEAK: {} holds {}", leak.user, leak.record);
    }
    Ok(s)
}
