//! How the connector authenticates to amoCRM: a long-lived token, or OAuth 2.0's
//! authorization-code flow with rotating refresh tokens.
//!
//! - A **long-lived token** (amoCRM issues them for private and external integrations, valid
//!   for 1 day to 5 years, without a refresh token) comes from an environment variable or a
//!   0600 file ([`SecretRef`]). A 401 is final: the token was revoked or expired.
//! - The **refresh flow**: the token file (0600) holds amoCRM's `/oauth2/access_token`
//!   answer (`token_type`, `expires_in`, `access_token`, `refresh_token`), as an admin saved
//!   it after exchanging the authorization code. An access token lives 24 hours; a refresh
//!   token can be exchanged **once** and dies after 3 months unused. Before a call with an
//!   expired (or missing) access token, and once after a 401, the connector posts
//!   `grant_type=refresh_token` and writes the new pair to the file (a temporary 0600 file
//!   renamed over the old one) before it uses it. A refused refresh is a clear error asking
//!   for a new authorization; tokens are never logged or formatted into messages.

use super::super::connector::http::{HttpClient, HttpRequest};
use super::super::connector::pacing::Clock;
use super::super::connector::secret::{Secret, SecretRef};
use super::super::connector::ConnectorError;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The CRM's name in messages.
pub const CRM: &str = "amoCRM";

/// Refresh this long before the access token's stated expiry.
const EXPIRY_MARGIN_SECONDS: i64 = 60;

/// The token file: amoCRM's token answer, plus when we obtained it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_in: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    refresh_token: String,
    /// Unix seconds when `access_token` was issued (absent in a file an admin saved from
    /// amoCRM's answer: the token is then tried, and refreshed on a 401).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    obtained_at: Option<i64>,
}

struct Tokens {
    access: Option<Secret>,
    refresh: Secret,
    expires_at: Option<DateTime<Utc>>,
}

/// The refresh flow's state.
pub struct OAuthSession {
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uri: String,
    pub token_file: PathBuf,
    pub token_url: url::Url,
    tokens: Option<Tokens>,
}

impl OAuthSession {
    /// A session on the tokens in `token_file`, read now: a missing, unreadable or
    /// group-readable file is a configuration error before anything is sent.
    pub fn new(
        client_id: String,
        client_secret: Secret,
        redirect_uri: String,
        token_file: PathBuf,
        token_url: url::Url,
    ) -> Result<Self, ConnectorError> {
        let mut session = Self {
            client_id,
            client_secret,
            redirect_uri,
            token_file,
            token_url,
            tokens: None,
        };
        session.load()?;
        Ok(session)
    }

    fn who_refresh(&self) -> String {
        format!(
            "the OAuth refresh token in {} (a refresh token works once and expires after 3 \
             months unused, and disabling the integration revokes it: authorize the \
             integration again and save amoCRM's token answer to that file)",
            self.token_file.display()
        )
    }

    fn who_access(&self) -> String {
        format!(
            "the OAuth access token from {} (even after a refresh; is the integration still \
             enabled, and is its user active?)",
            self.token_file.display()
        )
    }

    fn load(&mut self) -> Result<&Tokens, ConnectorError> {
        if self.tokens.is_none() {
            let raw = SecretRef::file(&self.token_file).load()?;
            let file: TokenFile = serde_json::from_str(raw.expose()).map_err(|e| {
                ConnectorError::Config(format!(
                    "token file {} is not amoCRM's token answer (JSON with refresh_token): {}",
                    self.token_file.display(),
                    shape_of(&e)
                ))
            })?;
            if file.refresh_token.trim().is_empty() {
                return Err(ConnectorError::Config(format!(
                    "token file {} has an empty refresh_token",
                    self.token_file.display()
                )));
            }
            self.tokens = Some(tokens_of(&file));
        }
        self.tokens
            .as_ref()
            .ok_or_else(|| ConnectorError::Config("no tokens".into()))
    }

    /// The access token to send now, refreshed first when it is missing or expired.
    pub fn bearer(
        &mut self,
        http: &HttpClient,
        clock: &dyn Clock,
    ) -> Result<(Secret, String), ConnectorError> {
        let now = clock.utc_now();
        let usable = {
            let tokens = self.load()?;
            let fresh = tokens
                .expires_at
                .is_none_or(|at| at - chrono::Duration::seconds(EXPIRY_MARGIN_SECONDS) > now);
            tokens.access.clone().filter(|_| fresh)
        };
        let access = match usable {
            Some(access) => access,
            None => self.refresh(http, clock)?,
        };
        Ok((access, self.who_access()))
    }

    /// Exchanges the refresh token for a new pair, saves it, returns the access token.
    pub fn refresh(
        &mut self,
        http: &HttpClient,
        clock: &dyn Clock,
    ) -> Result<Secret, ConnectorError> {
        let refresh = self.load()?.refresh.clone();
        let body = serde_json::json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose(),
            "grant_type": "refresh_token",
            "refresh_token": refresh.expose(),
            "redirect_uri": self.redirect_uri,
        });
        let request = HttpRequest {
            method: Method::POST,
            url: self.token_url.clone(),
            credential: None,
            who: self.who_refresh(),
            json: Some(body),
        };
        let response = match http.call(request) {
            Ok(r) => r,
            Err(ConnectorError::Unauthorized { status, .. }) => {
                return Err(self.refused(status));
            }
            Err(e) => return Err(e),
        };
        if matches!(response.status, 400 | 401 | 403) {
            return Err(self.refused(response.status));
        }
        if response.status != 200 {
            return Err(ConnectorError::Protocol {
                crm: CRM.into(),
                path: self.token_url.path().to_owned(),
                message: format!("HTTP {} from the token endpoint", response.status),
            });
        }
        let mut file: TokenFile =
            serde_json::from_str(&response.body).map_err(|e| ConnectorError::Protocol {
                crm: CRM.into(),
                path: self.token_url.path().to_owned(),
                message: format!(
                    "the token answer is not JSON with tokens ({})",
                    shape_of(&e)
                ),
            })?;
        let Some(access) = file.access_token.clone().filter(|a| !a.is_empty()) else {
            return Err(ConnectorError::Protocol {
                crm: CRM.into(),
                path: self.token_url.path().to_owned(),
                message: "the token answer has no access_token".into(),
            });
        };
        file.obtained_at = Some(clock.utc_now().timestamp());
        // The old refresh token is spent now: save the new pair before anything else.
        write_private(&self.token_file, &file)?;
        let tokens = tokens_of(&file);
        self.tokens = Some(tokens);
        Ok(Secret::new(access))
    }

    fn refused(&self, status: u16) -> ConnectorError {
        ConnectorError::Unauthorized {
            crm: CRM.into(),
            who: self.who_refresh(),
            status,
        }
    }
}

/// Where a JSON document holding secrets is wrong, without quoting any of it (serde's
/// messages can quote values).
fn shape_of(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {}, column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn tokens_of(file: &TokenFile) -> Tokens {
    let expires_at = match (file.obtained_at, file.expires_in) {
        (Some(at), Some(ttl)) => DateTime::<Utc>::from_timestamp(at.saturating_add(ttl), 0),
        _ => None,
    };
    Tokens {
        access: file
            .access_token
            .clone()
            .filter(|a| !a.is_empty())
            .map(Secret::new),
        refresh: Secret::new(file.refresh_token.clone()),
        expires_at,
    }
}

/// Writes `value` as JSON to `path` through a 0600 temporary file in the same folder,
/// renamed over `path` (so a crash leaves the old file or the new one, never half of one).
fn write_private(path: &Path, value: &impl Serialize) -> Result<(), ConnectorError> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        ConnectorError::Config(format!(
            "amoCRM issued new tokens but they could not be saved to {} ({what}: {e}); the old \
             refresh token is spent, so authorize the integration again",
            path.display()
        ))
    };
    let text = serde_json::to_string_pretty(value).map_err(|e| failed("encode", &e))?;
    // tempfile creates the file with mode 0600 on Unix.
    let mut file = tempfile::NamedTempFile::new_in(folder).map_err(|e| failed("create", &e))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.as_file().sync_all())
        .map_err(|e| failed("write", &e))?;
    file.persist(path).map_err(|e| failed("rename", &e.error))?;
    Ok(())
}

/// How requests authenticate.
pub enum Auth {
    /// A long-lived token; `who` says where it came from.
    LongLived { token: Secret, who: String },
    /// The refresh flow.
    OAuth(Box<OAuthSession>),
}

impl Auth {
    /// The token to send and whose it is (for error messages).
    pub fn bearer(
        &mut self,
        http: &HttpClient,
        clock: &dyn Clock,
    ) -> Result<(Secret, String), ConnectorError> {
        match self {
            Auth::LongLived { token, who } => Ok((token.clone(), who.clone())),
            Auth::OAuth(session) => session.bearer(http, clock),
        }
    }

    /// After a 401: a new access token if this auth can get one.
    pub fn refresh_after_401(
        &mut self,
        http: &HttpClient,
        clock: &dyn Clock,
    ) -> Option<Result<Secret, ConnectorError>> {
        match self {
            Auth::LongLived { .. } => None,
            Auth::OAuth(session) => Some(session.refresh(http, clock)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_token_answer_is_a_token_file() {
        let raw = r#"{"token_type":"Bearer","expires_in":86400,"access_token":"a1","refresh_token":"r1"}"#;
        let file: TokenFile = serde_json::from_str(raw).unwrap();
        let tokens = tokens_of(&file);
        assert_eq!(tokens.access.unwrap().expose(), "a1");
        assert_eq!(tokens.refresh.expose(), "r1");
        assert!(
            tokens.expires_at.is_none(),
            "no issue time: tried, refreshed on 401"
        );
        let dated = TokenFile {
            obtained_at: Some(1_000),
            ..file
        };
        assert_eq!(tokens_of(&dated).expires_at.unwrap().timestamp(), 87_400);
    }

    #[cfg(unix)]
    #[test]
    fn tokens_are_written_privately_and_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, "old").unwrap();
        let file = TokenFile {
            token_type: None,
            expires_in: Some(10),
            access_token: Some("a".into()),
            refresh_token: "r".into(),
            obtained_at: Some(5),
        };
        write_private(&path, &file).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back: TokenFile =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back.refresh_token, "r");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no leftovers"
        );
    }
}
