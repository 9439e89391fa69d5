//! The demo's last day: someone leaves the company, and their Google account is given back as
//! it was before crmsync — everything crmsync put there removed and verified, the contacts of
//! their own (one of which crmsync had linked to a CRM record) as they were.

use crate::emulator::control::UserDump;
use crate::emulator::TestEmulator;
use crate::sync::engine::RunReport;
use google_people1::api::Person;
use serde::Serialize;
use std::collections::BTreeMap;

/// What a contact shows its user: names, e-mails, phones and groups (output-only metadata
/// left out), comparable before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactFace {
    pub name: String,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub groups: Vec<String>,
}

impl ContactFace {
    fn of(person: &Person) -> Self {
        let name = person
            .names
            .iter()
            .flatten()
            .map(|n| {
                [n.given_name.as_deref(), n.family_name.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .next()
            .unwrap_or_default();
        let mut emails: Vec<String> = person
            .email_addresses
            .iter()
            .flatten()
            .filter_map(|e| e.value.clone())
            .collect();
        let mut phones: Vec<String> = person
            .phone_numbers
            .iter()
            .flatten()
            .filter_map(|p| p.value.clone())
            .collect();
        let mut groups: Vec<String> = person
            .memberships
            .iter()
            .flatten()
            .filter_map(|m| m.contact_group_membership.as_ref())
            .filter_map(|g| g.contact_group_resource_name.clone())
            .collect();
        emails.sort();
        phones.sort();
        groups.sort();
        Self {
            name,
            emails,
            phones,
            groups,
        }
    }
}

/// The user's own contacts (by resource name) as they show now.
pub fn own_contacts(
    emu: &TestEmulator,
    account: &str,
    resources: &[String],
) -> BTreeMap<String, ContactFace> {
    let Some(dump) = emu.dump_user(account) else {
        return BTreeMap::new();
    };
    live_people(&dump)
        .filter(|p| {
            p.resource_name
                .as_ref()
                .is_some_and(|r| resources.contains(r))
        })
        .filter_map(|p| Some((p.resource_name.clone()?, ContactFace::of(p))))
        .collect()
}

fn live_people(dump: &UserDump) -> impl Iterator<Item = &Person> {
    dump.contacts
        .iter()
        .filter(|c| !c.deleted)
        .map(|c| &c.person)
}

/// What is left in an account after offboarding, as Google itself shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountAfter {
    /// Calendars other than the user's primary one.
    pub secondary_calendars: usize,
    /// Contact groups the user made or crmsync made (system groups not counted).
    pub user_groups: usize,
    /// Live contacts.
    pub contacts: usize,
}

pub fn account_after(emu: &TestEmulator, account: &str) -> AccountAfter {
    let Some(dump) = emu.dump_user(account) else {
        return AccountAfter::default();
    };
    AccountAfter {
        secondary_calendars: dump.calendars.iter().filter(|c| !c.primary).count(),
        user_groups: dump
            .groups
            .iter()
            .filter(|g| g.group_type.as_deref() == Some("USER_CONTACT_GROUP"))
            .count(),
        contacts: live_people(&dump).count(),
    }
}

/// The last day, as the story tells it.
#[derive(Debug, Clone, Serialize)]
pub struct Offboarding {
    pub user: String,
    pub report: RunReport,
    /// The leaver's own contacts before the first sync and after offboarding.
    pub own_before: BTreeMap<String, ContactFace>,
    pub own_after: BTreeMap<String, ContactFace>,
    pub account_after: AccountAfter,
}

impl Offboarding {
    /// Whether the account holds exactly the leaver's own contacts, as they were.
    pub fn given_back_as_it_was(&self) -> bool {
        self.own_after == self.own_before
            && self.account_after
                == AccountAfter {
                    secondary_calendars: 0,
                    user_groups: 0,
                    contacts: self.own_before.len(),
                }
    }

    /// The story's lines for this day.
    pub fn tell(&self, out: &mut String) {
        use std::fmt::Write;
        let user = &self.user;
        let _ = writeln!(
            out,
            "\nDay 5: {user} leaves Acme (deactivated in the CRM). The next pass offboarded her \
             Google account:"
        );
        let revocations = self
            .report
            .users
            .iter()
            .filter(|u| u.user.as_str() == user)
            .flat_map(|u| u.revocations.iter());
        for r in revocations {
            let events = r
                .inventory
                .get("events")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "  removed: {} contact(s) crmsync had created, {} calendar(s) with {events} \
                 event(s), {} contact group(s)",
                r.contacts_deleted.len(),
                r.calendars_deleted.len(),
                r.groups_deleted.len()
            );
            let _ = writeln!(
                out,
                "  given back: {} contact(s) of her own that crmsync had linked to CRM records \
                 (restored as they were before)",
                r.contacts_released.len()
            );
            let verified = r.verification.as_ref().is_some_and(|v| v.is_clean());
            let _ = writeln!(
                out,
                "  verified by listing her account: {} (receipt #{} in the audit: `crmsync \
                 audit --user {user}`)",
                if verified {
                    "nothing marked by crmsync remains"
                } else {
                    "SOMETHING OF OURS REMAINS"
                },
                r.id
            );
        }
        for (resource, face) in &self.own_after {
            let same = self.own_before.get(resource) == Some(face);
            let _ = writeln!(
                out,
                "  her own contact \"{}\": {}",
                face.name,
                if same { "as before" } else { "CHANGED" }
            );
        }
        let a = &self.account_after;
        let _ = writeln!(
            out,
            "  her account now: {} secondary calendar(s), {} contact group(s), {} contact(s) — \
             {}",
            a.secondary_calendars,
            a.user_groups,
            a.contacts,
            if self.given_back_as_it_was() {
                "exactly what she had before crmsync"
            } else {
                "NOT what she had before"
            }
        );
    }
}
