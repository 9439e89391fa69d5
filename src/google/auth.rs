//! Service-account authentication with domain-wide delegation: one yup-oauth2
//! authenticator per impersonated user, always asking for the same scope set
//! ([`SCOPES`]), whatever scope a generated method would ask for by default.
//!
//! [`SCOPES`] is the narrowest set Google's per-method scope lists allow for what crmsync
//! does (README "Google scopes" has the table and the sources):
//! - `calendar.app.created`: create the dedicated calendar, read it (`calendars.get`), list
//!   and write its events (batch parts included) and delete it — only calendars this app
//!   created, never the user's primary or other calendars;
//! - `calendar.calendarlist.readonly`: `calendarList.list`, to find the calendar again by its
//!   marker when the stored id is lost (`calendar.app.created` does not allow it);
//! - `calendar.acls`: read and delete the calendar's sharing rules (`acl.list`/`acl.delete`,
//!   which `calendar.app.created` does not allow);
//! - `contacts`: contacts and contact groups, read and write.
//!
//! Plain `http://` is allowed only for loopback hosts (the emulator); anything else must be
//! `https://`.

use std::path::Path;

use google_calendar3::common::GetToken;
use hyper_util::client::legacy::connect::HttpConnector;
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::{CustomHyperClientBuilder, ServiceAccountAuthenticator, ServiceAccountKey};

/// Full Calendar access (every calendar of the user). crmsync does not request it; a phone
/// (the user's own client) has it.
pub const CALENDAR_SCOPE: &str = "https://www.googleapis.com/auth/calendar";
/// Secondary calendars this app creates, and their events.
pub const CALENDAR_APP_CREATED_SCOPE: &str = "https://www.googleapis.com/auth/calendar.app.created";
/// Reading the user's calendar list.
pub const CALENDAR_LIST_READONLY_SCOPE: &str =
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly";
/// Sharing rules (ACLs) of calendars the user owns.
pub const CALENDAR_ACLS_SCOPE: &str = "https://www.googleapis.com/auth/calendar.acls";
/// Read/write access to contacts and contact groups.
pub const CONTACTS_SCOPE: &str = "https://www.googleapis.com/auth/contacts";
/// The one scope set crmsync requests on every token (and the one a Workspace admin grants
/// the service account's client id under domain-wide delegation).
pub const SCOPES: [&str; 4] = [
    CALENDAR_APP_CREATED_SCOPE,
    CALENDAR_LIST_READONLY_SCOPE,
    CALENDAR_ACLS_SCOPE,
    CONTACTS_SCOPE,
];

/// The connector used for Google and the emulator: HTTPS with webpki roots, or plain HTTP.
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read service-account key {path}: {source}")]
    ReadKey {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is plain http to a non-loopback host; only https is allowed there")]
    InsecureUrl(String),
    #[error("invalid URL {0}")]
    BadUrl(String),
    #[error("cannot build the authenticator: {0}")]
    Build(#[source] std::io::Error),
    #[error("cannot obtain an access token for {subject}: {source}")]
    Token {
        subject: String,
        #[source]
        source: yup_oauth2::Error,
    },
    #[error("the token endpoint returned no access token for {0}")]
    NoToken(String),
}

/// Refuse `http://` URLs except to loopback hosts.
pub fn check_url(url: &str) -> Result<(), AuthError> {
    let parsed = url::Url::parse(url).map_err(|_| AuthError::BadUrl(url.to_string()))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(AuthError::InsecureUrl(url.to_string()))
            }
        }
        _ => Err(AuthError::BadUrl(url.to_string())),
    }
}

/// Read a service-account key file; with `token_uri`, replace the key's token endpoint
/// (e.g. with an emulator's `http://127.0.0.1:PORT/token`).
pub async fn load_service_account_key(
    path: &Path,
    token_uri: Option<&str>,
) -> Result<ServiceAccountKey, AuthError> {
    let mut key = yup_oauth2::read_service_account_key(path)
        .await
        .map_err(|source| AuthError::ReadKey {
            path: path.display().to_string(),
            source,
        })?;
    if let Some(uri) = token_uri {
        key.token_uri = uri.to_string();
    }
    check_url(&key.token_uri)?;
    Ok(key)
}

/// An HTTPS-or-HTTP connector (HTTP/1.1 and HTTP/2 over TLS, HTTP/1.1 in the clear).
pub fn connector() -> Connector {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build()
}

/// Idle connections the shared pools keep per host (enough for the users synced at once;
/// more are opened when needed and closed when done).
const MAX_IDLE_PER_HOST: usize = 16;
/// How long an idle pooled connection is kept.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The HTTP clients a remote shares among all the accounts it acts for: one TLS
/// configuration, one connection pool for the hubs' calls and one for token requests,
/// whatever the number of accounts. (A client per account kept a pool per account, and
/// every idle connection keeps a read buffer grown to the largest answer it read: the
/// engine's memory grew with the accounts synced, ~0.3 MB each.)
#[derive(Clone)]
pub struct HttpClients {
    hubs: google_calendar3::common::Client<Connector>,
    tokens: hyper_util::client::legacy::Client<Connector, String>,
}

impl HttpClients {
    pub fn new() -> Self {
        let connector = connector();
        let builder = || {
            let mut b =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
            b.pool_idle_timeout(IDLE_TIMEOUT)
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .pool_max_idle_per_host(MAX_IDLE_PER_HOST);
            b
        };
        Self {
            hubs: builder().build(connector.clone()),
            tokens: builder().build(connector),
        }
    }

    /// The client the Calendar and People hubs send their calls with.
    pub fn hubs(&self) -> google_calendar3::common::Client<Connector> {
        self.hubs.clone()
    }
}

impl Default for HttpClients {
    fn default() -> Self {
        Self::new()
    }
}

/// Tokens for one impersonated user. Implements the hubs' `GetToken`, always requesting
/// the same scopes ([`SCOPES`] unless built with [`impersonate_with_scopes`]).
#[derive(Clone)]
pub struct UserAuth {
    subject: String,
    scopes: &'static [&'static str],
    authenticator: Authenticator<Connector>,
}

impl UserAuth {
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// A current access token (cached by yup-oauth2 until shortly before expiry).
    pub async fn access_token(&self) -> Result<String, AuthError> {
        let token = self
            .authenticator
            .token(self.scopes)
            .await
            .map_err(|source| AuthError::Token {
                subject: self.subject.clone(),
                source,
            })?;
        token
            .token()
            .map(str::to_string)
            .ok_or_else(|| AuthError::NoToken(self.subject.clone()))
    }
}

impl GetToken for UserAuth {
    fn get_token<'a>(
        &'a self,
        _scopes: &'a [&str],
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<Option<String>, Box<dyn std::error::Error + Send + Sync>>,
                > + Send
                + 'a,
        >,
    > {
        Box::pin(async move {
            self.access_token()
                .await
                .map(Some)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
    }
}

/// Build the authenticator that impersonates `subject` with `key` (domain-wide delegation),
/// asking for [`SCOPES`].
pub async fn impersonate(key: &ServiceAccountKey, subject: &str) -> Result<UserAuth, AuthError> {
    impersonate_with_scopes(key, subject, &SCOPES).await
}

/// [`impersonate`] with another scope set (tests and tools that act as a full client).
pub async fn impersonate_with_scopes(
    key: &ServiceAccountKey,
    subject: &str,
    scopes: &'static [&'static str],
) -> Result<UserAuth, AuthError> {
    impersonate_on(&HttpClients::new(), key, subject, scopes).await
}

/// [`impersonate_with_scopes`] requesting tokens through `http`'s shared pool (a remote
/// acting for many accounts).
pub async fn impersonate_on(
    http: &HttpClients,
    key: &ServiceAccountKey,
    subject: &str,
    scopes: &'static [&'static str],
) -> Result<UserAuth, AuthError> {
    check_url(&key.token_uri)?;
    let authenticator = ServiceAccountAuthenticator::with_client(
        key.clone(),
        CustomHyperClientBuilder::from(http.tokens.clone()),
    )
    .subject(subject)
    .build()
    .await
    .map_err(AuthError::Build)?;
    Ok(UserAuth {
        subject: subject.to_string(),
        scopes,
        authenticator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_url("http://127.0.0.1:8085/token").is_ok());
        assert!(check_url("http://localhost:1/token").is_ok());
        assert!(check_url("https://oauth2.googleapis.com/token").is_ok());
        assert!(check_url("http://example.com/token").is_err());
        assert!(check_url("ftp://127.0.0.1/").is_err());
    }
}
