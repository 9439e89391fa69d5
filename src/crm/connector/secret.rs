//! API keys and tokens: referenced from the configuration, never written in it, never
//! printed.
//!
//! A [`SecretRef`] names where a secret lives — an environment variable or a file that only
//! its owner may read (mode 0600) — and is what the TOML holds. [`SecretRef::load`] reads it
//! into a [`Secret`], whose `Debug` is redacted and which has no `Display`: the value leaves
//! it only through [`Secret::expose`], at the one place an HTTP header is built.

use super::ConnectorError;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A secret value (API key, token). `Debug` prints `Secret(…)`, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value (tests and fakes; production code loads through [`SecretRef`]).
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// The value, for building an authorization header. Never log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Where a secret lives: exactly one of `env` (an environment variable's name) or `file`
/// (a file readable by its owner only). A secret itself is never accepted in the
/// configuration, so a config file can be shared or committed safely.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl SecretRef {
    /// A reference to an environment variable.
    pub fn env(name: impl Into<String>) -> Self {
        Self {
            env: Some(name.into()),
            file: None,
        }
    }

    /// A reference to a file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            env: None,
            file: Some(path.into()),
        }
    }

    /// Checks the shape (exactly one source, non-empty names).
    pub fn check(&self) -> Result<(), String> {
        match (&self.env, &self.file) {
            (Some(name), None) if !name.trim().is_empty() => Ok(()),
            (None, Some(path)) if !path.as_os_str().is_empty() => Ok(()),
            (Some(_), Some(_)) => Err("give either env or file, not both".into()),
            _ => Err("give env = \"VARIABLE\" or file = \"path\" (the secret itself never goes in the config)".into()),
        }
    }

    /// Where the secret comes from, for messages (`env INSIGHTLY_KEY`, `file /etc/key`).
    pub fn describe(&self) -> String {
        match (&self.env, &self.file) {
            (Some(name), _) => format!("env {name}"),
            (None, Some(path)) => format!("file {}", path.display()),
            (None, None) => "nowhere".into(),
        }
    }

    /// Resolves a relative file path against the config file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(path) = &mut self.file {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Reads the secret. A file must not be readable by group or others (mode 0600 or
    /// stricter); surrounding white space (a trailing newline) is dropped; an empty secret is
    /// an error.
    pub fn load(&self) -> Result<Secret, ConnectorError> {
        self.check().map_err(ConnectorError::Config)?;
        let raw = match (&self.env, &self.file) {
            (Some(name), _) => std::env::var(name).map_err(|_| {
                ConnectorError::Config(format!("environment variable {name} is not set"))
            })?,
            (None, Some(path)) => {
                check_private(path)?;
                std::fs::read_to_string(path).map_err(|e| {
                    ConnectorError::Config(format!("cannot read key file {}: {e}", path.display()))
                })?
            }
            (None, None) => return Err(ConnectorError::Config("no secret source".into())),
        };
        let value = raw.trim();
        if value.is_empty() {
            return Err(ConnectorError::Config(format!(
                "the secret from {} is empty",
                self.describe()
            )));
        }
        Ok(Secret::new(value))
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), ConnectorError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        ConnectorError::Config(format!("cannot read key file {}: {e}", path.display()))
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConnectorError::Config(format!(
            "key file {} is readable by others (mode {mode:o}); run chmod 600 on it",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), ConnectorError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug() {
        let s = Secret::new("k-123-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(…)");
        assert_eq!(s.expose(), "k-123-very-secret");
    }

    #[test]
    fn exactly_one_source_is_accepted() {
        assert!(SecretRef::env("X").check().is_ok());
        assert!(SecretRef::file("k").check().is_ok());
        let both = SecretRef {
            env: Some("X".into()),
            file: Some("k".into()),
        };
        assert!(both.check().unwrap_err().contains("not both"));
        let none = SecretRef {
            env: None,
            file: None,
        };
        assert!(none.check().is_err());
        let inline: Result<SecretRef, _> = toml::from_str("key = \"abc\"");
        assert!(inline.unwrap_err().to_string().contains("unknown field"));
    }

    #[test]
    fn a_missing_variable_is_a_config_error_naming_it() {
        let err = SecretRef::env("CRMSYNC_TEST_SURELY_UNSET_VARIABLE")
            .load()
            .unwrap_err();
        assert!(err.is_config());
        assert!(err
            .to_string()
            .contains("CRMSYNC_TEST_SURELY_UNSET_VARIABLE"));
    }

    #[cfg(unix)]
    #[test]
    fn key_files_must_be_private_and_non_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "  the-key\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretRef::file(&path).load().unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!err.to_string().contains("the-key"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(SecretRef::file(&path).load().unwrap().expose(), "the-key");
        std::fs::write(&path, "\n").unwrap();
        assert!(SecretRef::file(&path).load().unwrap_err().is_config());
        let mut relative = SecretRef::file("key");
        relative.resolve_paths(dir.path());
        assert_eq!(relative.file.as_deref(), Some(path.as_path()));
    }
}
