//! The part of the security model a CRM's API does not expose, given in a file.
//!
//! Hosted CRMs expose users and teams, but not (all of) roles, profiles' permissions,
//! sharing rules or organisation-wide sharing. A connector reads those from a JSON file in
//! the org file's format (`shared/ORG_FILE.md`) holding only the sections
//! `org`, `org_wide_sharing`, `roles`, `profiles` and `sharing_rules`. Validation is the org
//! file's own (duplicate ids, unknown roles, cycles in the role tree, …), with the same JSON
//! paths in messages; teams named by sharing rules come from the CRM, so they are not
//! checked here.

use super::super::orgfile;
use crate::model::{
    OrgSettings, OrgWideSharing, Profile, ProfileId, Role, RoleId, RuleId, RuleParty, SharingRule,
};
use std::collections::BTreeMap;
use std::path::Path;

/// The sections a model file may hold.
pub const SECTIONS: [&str; 5] = [
    "org",
    "org_wide_sharing",
    "roles",
    "profiles",
    "sharing_rules",
];

/// The security model given by configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityModel {
    pub settings: OrgSettings,
    pub org_wide_sharing: OrgWideSharing,
    pub roles: BTreeMap<RoleId, Role>,
    pub profiles: BTreeMap<ProfileId, Profile>,
    pub sharing_rules: BTreeMap<RuleId, SharingRule>,
}

impl SecurityModel {
    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the model file {}: {e}", path.display()))?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses and validates a model file's text.
    pub fn parse(source_name: &str, text: &str) -> Result<Self, String> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("{source_name}: invalid JSON: {e}"))?;
        let Some(object) = doc.as_object() else {
            return Err(format!("{source_name}: $: expected a JSON object"));
        };
        if let Some(bad) = object.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            return Err(format!(
                "{source_name}: {bad}: unknown section (a model file holds only {}; users, \
                 teams and records come from the CRM)",
                SECTIONS.join(", ")
            ));
        }
        // Validate as an org file: the teams sharing rules name come from the CRM, so
        // stand-ins let the org file's checks pass for them.
        let mut teams = Vec::new();
        if let Some(rules) = object.get("sharing_rules").and_then(|r| r.as_array()) {
            for rule in rules {
                for side in ["source", "target"] {
                    if let Some(team) = rule
                        .get(side)
                        .and_then(|p| p.get("team"))
                        .and_then(|t| t.as_str())
                    {
                        if !teams.iter().any(|t: &serde_json::Value| t["id"] == team) {
                            teams.push(serde_json::json!({"id": team, "name": team}));
                        }
                    }
                }
            }
        }
        let mut full = object.clone();
        full.insert("teams".into(), serde_json::Value::Array(teams));
        let model = orgfile::parse(source_name, &serde_json::Value::Object(full).to_string())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            settings: model.settings,
            org_wide_sharing: model.org_wide_sharing,
            roles: model.roles,
            profiles: model.profiles,
            sharing_rules: model.sharing_rules,
        })
    }

    /// The teams its sharing rules name (they must exist in the CRM to match anyone).
    pub fn rule_teams(&self) -> Vec<&crate::model::TeamId> {
        let mut out = Vec::new();
        for rule in self.sharing_rules.values() {
            for party in [&rule.source, &rule.target] {
                if let RuleParty::Team(t) = party {
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "org": {"name": "Acme", "google_domains": ["acme.example"]},
        "org_wide_sharing": {"contact": "private", "event": "public_read"},
        "roles": [{"id": "1", "name": "Boss"}, {"id": "2", "name": "Rep", "parent": "1"}],
        "profiles": [{"id": "10", "name": "Sales",
                      "objects": {"contact": {"read": true, "edit": true}}}],
        "sharing_rules": [{"id": "r1", "object": "contact", "source": {"team": "5"},
                           "target": {"role": "1"}, "access": "read"}]
    }"#;

    #[test]
    fn a_model_file_gives_roles_profiles_rules_and_defaults() {
        let m = SecurityModel::parse("m.json", GOOD).unwrap();
        assert_eq!(m.settings.name, "Acme");
        assert_eq!(m.roles.len(), 2);
        assert_eq!(m.profiles.len(), 1);
        assert_eq!(m.sharing_rules.len(), 1);
        assert_eq!(m.rule_teams().len(), 1);
        assert_eq!(
            m.org_wide_sharing.event,
            crate::model::SharingDefault::PublicRead
        );
    }

    #[test]
    fn problems_name_their_path() {
        let err = SecurityModel::parse(
            "m.json",
            &GOOD.replace("\"parent\": \"1\"", "\"parent\": \"9\""),
        )
        .unwrap_err();
        assert!(err.contains("roles[1].parent"), "{err}");
        let err =
            SecurityModel::parse("m.json", r#"{"org": {"name": "A"}, "users": []}"#).unwrap_err();
        assert!(err.contains("users: unknown section"), "{err}");
        let err =
            SecurityModel::parse("m.json", r#"{"org": {"name": "A", "flavour": 1}}"#).unwrap_err();
        assert!(err.contains("org"), "{err}");
    }
}
