//! OAuth 2.0 as Google's token endpoint does it for what crmsync uses: the service-account
//! JWT bearer grant (RS256 checked against the shipped test key, `sub` = impersonated user),
//! the refresh-token grant (refresh tokens are minted through the control API, standing in
//! for the installed-app consent flow), and revocation. Access tokens live for
//! `access_token_lifetime_secs` of *wall-clock* time, because clients cache them by wall-clock
//! expiry; advancing the emulator clock does not expire them.

use std::collections::HashMap;

use base64::Engine as _;
use chrono::Utc;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::wire::ApiResponse;

/// The `client_email` of the test service account in `config/emulator-service-account.json`.
pub const TEST_SERVICE_ACCOUNT_EMAIL: &str = "crmsync-test-key@emulator.invalid";

/// Public half of the test key, PKCS#1 PEM (the private half ships in the key file).
const TEST_PUBLIC_KEY_PEM: &str = include_str!("test_key_public.pem");

/// The service-account grant type.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The audience Google's own client libraries (google-auth ≥ 1.35, google-auth-library-java)
/// put in every service-account assertion, whatever the key's `token_uri` says. Google's
/// token endpoint accepts it besides its own URL (the URL the assertion is posted to).
pub const GOOGLE_TOKEN_AUDIENCE: &str = "https://oauth2.googleapis.com/token";
/// The OAuth client behind access tokens minted from control-API refresh tokens (standing in
/// for an installed app's client id).
pub(crate) const INSTALLED_APP_CLIENT: &str = "emulator-installed-app";
const MAX_JWT_LIFETIME_SECS: i64 = 3600;
const CLOCK_SKEW_SECS: i64 = 300;

/// A live access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AccessGrant {
    pub subject: String,
    pub scopes: Vec<String>,
    /// The OAuth client (app) the token was issued to: the service account's `client_email`
    /// for JWT grants. `calendar.app.created` reaches only calendars this client created.
    #[serde(default)]
    pub client: String,
    /// Wall-clock expiry, seconds since the epoch.
    pub expires_at: i64,
    /// The refresh token this access token was minted from, if any.
    pub refresh_token: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RefreshGrant {
    pub subject: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub client: String,
}

/// Issued tokens (persisted with the state, so a restarted emulator honours them).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct TokenStore {
    pub access: HashMap<String, AccessGrant>,
    pub refresh: HashMap<String, RefreshGrant>,
}

impl TokenStore {
    /// The grant behind a bearer token, if it is live.
    pub fn lookup(&self, token: &str) -> Option<&AccessGrant> {
        let grant = self.access.get(token)?;
        (grant.expires_at > Utc::now().timestamp()).then_some(grant)
    }

    pub fn issue_access(
        &mut self,
        subject: &str,
        client: &str,
        scopes: Vec<String>,
        lifetime_secs: u64,
        refresh_token: Option<String>,
    ) -> (String, u64) {
        let now = Utc::now().timestamp();
        if self.access.len() > 10_000 {
            self.access.retain(|_, g| g.expires_at > now);
        }
        let token = format!("ya29.emu-{}", random_hex(24));
        let lifetime = i64::try_from(lifetime_secs).unwrap_or(3600);
        self.access.insert(
            token.clone(),
            AccessGrant {
                subject: subject.to_string(),
                scopes,
                client: client.to_string(),
                expires_at: now + lifetime,
                refresh_token,
            },
        );
        (token, lifetime_secs)
    }

    pub fn issue_refresh(&mut self, subject: &str, client: &str, scopes: Vec<String>) -> String {
        let token = format!("1//emu-{}", random_hex(24));
        self.refresh.insert(
            token.clone(),
            RefreshGrant {
                subject: subject.to_string(),
                scopes,
                client: client.to_string(),
            },
        );
        token
    }

    /// Revoke an access or refresh token; revoking a refresh token also kills the access
    /// tokens minted from it. Returns whether the token was known.
    pub fn revoke(&mut self, token: &str) -> bool {
        if self.refresh.remove(token).is_some() {
            self.access
                .retain(|_, g| g.refresh_token.as_deref() != Some(token));
            return true;
        }
        self.access.remove(token).is_some()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// The DER (PKCS#1 RSAPublicKey) bytes of the embedded test public key.
pub(crate) fn test_public_key_der() -> Vec<u8> {
    let body: String = TEST_PUBLIC_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap_or_default()
}

/// An OAuth error reply (`{"error": ..., "error_description": ...}`, 400 unless said).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn grant(description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: 400,
            error: "invalid_grant",
            description: description.into(),
        }
    }

    pub fn into_response(self) -> ApiResponse {
        ApiResponse::json_value(
            self.status,
            &json!({"error": self.error, "error_description": self.description}),
        )
    }
}

/// What a verified assertion asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VerifiedAssertion {
    pub subject: String,
    pub scopes: Vec<String>,
    /// The service account that signed it (`iss`).
    pub client: String,
}

fn b64url(part: &str) -> Option<Vec<u8>> {
    // yup-oauth2 signs with padded base64url; RFC 7515 says unpadded. Accept both.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    sub: Option<String>,
    scope: Option<String>,
}

/// Verify a service-account JWT assertion like Google's token endpoint: RS256 signature by
/// the test key, `iss` = the key's `client_email`, `aud` one of `accepted_audiences` (this
/// endpoint's own URL and [`GOOGLE_TOKEN_AUDIENCE`], see [`accepted_audiences`]), `iat`/`exp`
/// a short-lived window around now, scopes present, and the subject allowed by `domains`.
pub(crate) fn verify_assertion(
    assertion: &str,
    accepted_audiences: &[String],
    public_key_der: &[u8],
    domains: &[String],
) -> Result<VerifiedAssertion, OAuthError> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err(OAuthError::grant("Invalid JWT: malformed assertion."));
    };
    let header: Value = b64url(header_b64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| OAuthError::grant("Invalid JWT: malformed header."))?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(OAuthError::grant(
            "Invalid JWT: unsupported signing algorithm.",
        ));
    }
    let claims: Claims = b64url(claims_b64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| OAuthError::grant("Invalid JWT: malformed claim set."))?;
    if claims.iss.as_deref() != Some(TEST_SERVICE_ACCOUNT_EMAIL) {
        return Err(OAuthError::grant("Invalid grant: account not found"));
    }
    let signature =
        b64url(signature_b64).ok_or_else(|| OAuthError::grant("Invalid JWT Signature."))?;
    let signing_input_len = header_b64.len() + 1 + claims_b64.len();
    let signing_input = &assertion.as_bytes()[..signing_input_len];
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key_der,
    )
    .verify(signing_input, &signature)
    .map_err(|_| OAuthError::grant("Invalid JWT Signature."))?;
    if !claims
        .aud
        .as_deref()
        .is_some_and(|aud| accepted_audiences.iter().any(|a| a == aud))
    {
        return Err(OAuthError::grant("Invalid JWT: Failed audience check."));
    }
    let now = Utc::now().timestamp();
    let (Some(iat), Some(exp)) = (claims.iat, claims.exp) else {
        return Err(OAuthError::grant("Invalid JWT: missing iat or exp."));
    };
    if exp <= now || iat > now + CLOCK_SKEW_SECS || exp - iat > MAX_JWT_LIFETIME_SECS || exp < iat {
        return Err(OAuthError::grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        ));
    }
    let scopes: Vec<String> = claims
        .scope
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        return Err(OAuthError {
            status: 400,
            error: "invalid_scope",
            description: "Empty or missing scope not allowed.".into(),
        });
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| !s.starts_with("https://www.googleapis.com/auth/"))
    {
        return Err(OAuthError {
            status: 400,
            error: "invalid_scope",
            description: format!("Invalid OAuth scope or ID token audience provided: {bad}"),
        });
    }
    let subject = claims
        .sub
        .unwrap_or_else(|| TEST_SERVICE_ACCOUNT_EMAIL.to_string());
    check_subject(&subject, domains)?;
    Ok(VerifiedAssertion {
        subject,
        scopes,
        client: TEST_SERVICE_ACCOUNT_EMAIL.to_string(),
    })
}

/// The audiences the token endpoint at `endpoint_url` (the URL an assertion was posted to)
/// accepts, as Google's does: its own URL, and [`GOOGLE_TOKEN_AUDIENCE`], which Google's
/// token endpoints accept whichever of them receives the assertion (google-auth sends it
/// even to a proxy or private endpoint named by the key's `token_uri`). Anything else —
/// another Google endpoint's URL (`https://accounts.google.com/o/oauth2/token`,
/// `https://www.googleapis.com/oauth2/v4/token`), a resource URL — fails the audience check.
pub(crate) fn accepted_audiences(endpoint_url: &str) -> Vec<String> {
    let mut out = vec![endpoint_url.to_string()];
    if endpoint_url != GOOGLE_TOKEN_AUDIENCE {
        out.push(GOOGLE_TOKEN_AUDIENCE.to_string());
    }
    out
}

/// A subject must be an e-mail address in one of `domains` (any domain when empty).
pub(crate) fn check_subject(subject: &str, domains: &[String]) -> Result<(), OAuthError> {
    let Some((local, domain)) = subject.rsplit_once('@') else {
        return Err(OAuthError::grant("Invalid email or User ID"));
    };
    if local.is_empty() || domain.is_empty() {
        return Err(OAuthError::grant("Invalid email or User ID"));
    }
    if !domains.is_empty() && !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
        return Err(OAuthError::grant("Invalid email or User ID"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_public_key_decodes() {
        assert!(test_public_key_der().len() > 256);
    }

    #[test]
    fn subjects_are_checked_against_domains() {
        let domains = vec!["example.com".to_string()];
        assert!(check_subject("a@example.com", &domains).is_ok());
        assert!(check_subject("a@other.com", &domains).is_err());
        assert!(check_subject("nobody", &[]).is_err());
        assert!(check_subject("a@any.org", &[]).is_ok());
    }

    #[test]
    fn garbage_assertions_are_invalid_grant() {
        let err = verify_assertion(
            "a.b",
            &accepted_audiences("http://x/token"),
            &test_public_key_der(),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.error, "invalid_grant");
    }

    #[test]
    fn audiences_are_the_endpoint_and_googles_token_url() {
        assert_eq!(
            accepted_audiences("http://127.0.0.1:9/token"),
            vec!["http://127.0.0.1:9/token", GOOGLE_TOKEN_AUDIENCE]
        );
        assert_eq!(
            accepted_audiences(GOOGLE_TOKEN_AUDIENCE),
            vec![GOOGLE_TOKEN_AUDIENCE]
        );
    }

    #[test]
    fn revoking_refresh_token_kills_its_access_tokens() {
        let mut store = TokenStore::default();
        let refresh = store.issue_refresh("a@b.c", "app", vec!["s".into()]);
        let (access, _) =
            store.issue_access("a@b.c", "app", vec!["s".into()], 60, Some(refresh.clone()));
        assert!(store.lookup(&access).is_some());
        assert!(store.revoke(&refresh));
        assert!(store.lookup(&access).is_none());
        assert!(!store.revoke(&refresh));
    }
}
