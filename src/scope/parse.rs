//! `KEY=VALUE` scope assignments, as given to `crmsync scope set USER KEY=VALUE…`.
//!
//! Keys are the config keys (`contact`, `event`, `contact_tags`, `contact_organizations`,
//! `event_tags`, `event_organizations`, `direction`, `days_past`, `days_future`,
//! `conflict_policy`, `google_delete`); lists are comma-separated; the value `inherit`
//! removes the user's override of that key so it falls back to role / profile / org.

use super::{ScopeError, ScopeKey, ScopeLayer, MAX_WINDOW_DAYS};
use crate::model::CrmId;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;

/// A parsed `scope set` command line: values to set and keys to fall back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeEdit {
    pub set: ScopeLayer,
    pub inherit: BTreeSet<ScopeKey>,
}

impl ScopeEdit {
    /// Parses `KEY=VALUE` assignments; each key at most once.
    pub fn parse<S: AsRef<str>>(assignments: &[S]) -> Result<Self, ScopeError> {
        let mut edit = ScopeEdit::default();
        let mut seen = BTreeSet::new();
        for raw in assignments {
            let raw = raw.as_ref();
            let (key, value) = raw
                .split_once('=')
                .ok_or_else(|| ScopeError::NotAssignment(raw.to_owned()))?;
            let key: ScopeKey = key.trim().parse()?;
            if !seen.insert(key) {
                return Err(ScopeError::Repeated(key));
            }
            let value = value.trim();
            if value == "inherit" {
                edit.inherit.insert(key);
                continue;
            }
            set_value(&mut edit.set, key, value)?;
        }
        edit.set.check_ranges()?;
        Ok(edit)
    }

    /// `current` overrides with this edit applied.
    pub fn applied_to(&self, current: &ScopeLayer) -> ScopeLayer {
        let mut out = current.clone();
        out.apply(&self.set);
        for key in &self.inherit {
            out.clear(*key);
        }
        out
    }
}

fn bad(key: ScopeKey, value: &str) -> ScopeError {
    ScopeError::BadValue {
        key,
        value: value.to_owned(),
        expected: key.expected(),
    }
}

fn word<T: DeserializeOwned>(key: ScopeKey, value: &str) -> Result<T, ScopeError> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).map_err(|_| bad(key, value))
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn days(key: ScopeKey, value: &str) -> Result<u32, ScopeError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|d| *d <= MAX_WINDOW_DAYS)
        .ok_or_else(|| bad(key, value))
}

fn set_value(layer: &mut ScopeLayer, key: ScopeKey, value: &str) -> Result<(), ScopeError> {
    let orgs = |value: &str| -> Result<Vec<CrmId>, ScopeError> {
        list(value)
            .into_iter()
            .map(|o| CrmId::new(o.clone()).map_err(|_| bad(key, &o)))
            .collect()
    };
    match key {
        ScopeKey::Contact => layer.contact = Some(word(key, value)?),
        ScopeKey::Event => layer.event = Some(word(key, value)?),
        ScopeKey::ContactTags => layer.contact_tags = Some(list(value)),
        ScopeKey::EventTags => layer.event_tags = Some(list(value)),
        ScopeKey::ContactOrganizations => layer.contact_organizations = Some(orgs(value)?),
        ScopeKey::EventOrganizations => layer.event_organizations = Some(orgs(value)?),
        ScopeKey::Direction => layer.direction = Some(word(key, value)?),
        ScopeKey::DaysPast => layer.days_past = Some(days(key, value)?),
        ScopeKey::DaysFuture => layer.days_future = Some(days(key, value)?),
        ScopeKey::ConflictPolicy => layer.conflict_policy = Some(word(key, value)?),
        ScopeKey::GoogleDelete => layer.google_delete = Some(word(key, value)?),
    }
    Ok(())
}
