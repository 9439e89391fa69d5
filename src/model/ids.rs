//! Validated identifier newtypes.
//!
//! Every identifier that crosses a boundary (org file, CLI, state DB, Google) is wrapped in a
//! newtype so a user id can never be passed where a record id is expected. Construction
//! validates: ids are 1–128 characters of letters, digits and `_ - . @ :`, so they are safe to
//! print, to store and to put into URLs and audit lines. An id of up to 24 bytes (most of
//! them) is held inline, without an allocation of its own: a large org's model and access
//! index hold several hundred thousand of them.

use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("an id must not be empty")]
    Empty,
    #[error("id {0:?} is longer than 128 characters")]
    TooLong(String),
    #[error("id {0:?} may only contain letters, digits and _ - . @ :")]
    BadCharacter(String),
}

pub(crate) fn validate_id(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.chars().count() > 128 {
        return Err(IdError::TooLong(raw.to_owned()));
    }
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | ':');
    if !raw.chars().all(allowed) {
        return Err(IdError::BadCharacter(raw.to_owned()));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(CompactString);

        impl $name {
            /// Validates and wraps `raw`.
            pub fn new(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                validate_id(&raw)?;
                Ok(Self(CompactString::from(raw)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Wraps a string the caller built from the id alphabet (no validation).
            #[allow(dead_code)]
            pub(crate) fn from_trusted(raw: String) -> Self {
                debug_assert!(validate_id(&raw).is_ok(), "{raw:?}");
                Self(CompactString::from(raw))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = CompactString::deserialize(deserializer)?;
                validate_id(&raw).map_err(serde::de::Error::custom)?;
                Ok(Self(raw))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A CRM user.
    UserId
);
string_id!(
    /// A node of the CRM role tree.
    RoleId
);
string_id!(
    /// A CRM permission profile.
    ProfileId
);
string_id!(
    /// A CRM team.
    TeamId
);
string_id!(
    /// A CRM sharing rule.
    RuleId
);
string_id!(
    /// A CRM record (contact, event, organization) within its kind.
    CrmId
);

/// The kinds of CRM object the permission model knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Contact,
    Event,
    Organization,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 3] = [
        ObjectKind::Contact,
        ObjectKind::Event,
        ObjectKind::Organization,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Contact => "contact",
            ObjectKind::Event => "event",
            ObjectKind::Organization => "organization",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ObjectKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "contact" => Ok(ObjectKind::Contact),
            "event" => Ok(ObjectKind::Event),
            "organization" => Ok(ObjectKind::Organization),
            other => Err(format!(
                "unknown record kind {other:?} (expected contact, event or organization)"
            )),
        }
    }
}

/// `KIND:ID`, e.g. `contact:c1`: how CLI arguments and audit lines name one record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordRef {
    pub kind: ObjectKind,
    pub id: CrmId,
}

impl RecordRef {
    pub fn new(kind: ObjectKind, id: CrmId) -> Self {
        Self { kind, id }
    }
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

impl std::str::FromStr for RecordRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = s
            .split_once(':')
            .ok_or_else(|| format!("expected KIND:ID such as contact:c1, got {s:?}"))?;
        let kind: ObjectKind = kind.parse()?;
        let id = CrmId::new(id).map_err(|e| e.to_string())?;
        Ok(Self { kind, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(UserId::new("erin").is_ok());
        assert!(UserId::new("erin@acme.example").is_ok());
        assert_eq!(UserId::new(""), Err(IdError::Empty));
        assert!(matches!(UserId::new("a b"), Err(IdError::BadCharacter(_))));
        assert!(matches!(
            CrmId::new("x".repeat(129)),
            Err(IdError::TooLong(_))
        ));
        let err = serde_json::from_str::<UserId>("\"bad id\"").unwrap_err();
        assert!(err.to_string().contains("may only contain"));
    }

    #[test]
    fn record_refs_parse() {
        let r: RecordRef = "contact:c1".parse().unwrap();
        assert_eq!(r.kind, ObjectKind::Contact);
        assert_eq!(r.id.as_str(), "c1");
        assert_eq!(r.to_string(), "contact:c1");
        assert!("lead:c1".parse::<RecordRef>().is_err());
        assert!("c1".parse::<RecordRef>().is_err());
    }
}
