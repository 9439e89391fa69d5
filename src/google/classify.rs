//! Error classification, in one place: every failure of a Google call — an HTTP status with
//! Google's error JSON, a transport error, a token error — becomes a [`RemoteError`] whose
//! [`RemoteErrorKind`] the retry policy and the engine branch on.
//!
//! | what Google said | kind | retried |
//! |---|---|---|
//! | 5xx | `Transient` | yes |
//! | 429; 403 `rateLimitExceeded` / `userRateLimitExceeded`; `RESOURCE_EXHAUSTED` | `RateLimited` | yes |
//! | 403 `insufficientPermissions` (a scope the token lacks) | `Permanent` | no |
//! | timeouts, refused / dropped connections | `Transient` | yes (see `retry` for writes) |
//! | 403 `quotaExceeded` / `dailyLimitExceeded` (calendar creation quota) | `QuotaExceeded` | no |
//! | 404; 410 on a single item | `NotFound` | no |
//! | 410 `fullSyncRequired`; People `EXPIRED_SYNC_TOKEN` | `SyncTokenExpired` | no |
//! | 409 | `AlreadyExists` | no |
//! | 412; People 400 `FAILED_PRECONDITION` (stale etag) | `PreconditionFailed` | no |
//! | 401; OAuth `invalid_grant` and other token-endpoint refusals | `Unauthorized` | no |
//! | anything else (400, 403 forbidden…) | `Permanent` | no |

use crate::google::auth::AuthError;
use crate::sync::remote::{RemoteError, RemoteErrorKind};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

/// Whether the retry policy tries a call again after this kind of failure.
pub fn is_retryable(kind: RemoteErrorKind) -> bool {
    matches!(
        kind,
        RemoteErrorKind::Transient | RemoteErrorKind::RateLimited
    )
}

/// `Retry-After`: delta-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.with_timezone(&Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of an answer's headers (hub or reqwest: the same `http` map), as of now.
pub fn retry_after_header(headers: &hyper::HeaderMap) -> Option<Duration> {
    headers
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()))
}

/// The reasons a Google error body carries: Calendar `error.errors[].reason`, People
/// `error.details[].reason` (ErrorInfo), and `error.status`.
fn reasons(body: &Value) -> (Vec<String>, Option<String>) {
    let error = &body["error"];
    let mut reasons: Vec<String> = Vec::new();
    for list in [&error["errors"], &error["details"]] {
        if let Some(items) = list.as_array() {
            reasons.extend(
                items
                    .iter()
                    .filter_map(|i| i["reason"].as_str())
                    .map(str::to_owned),
            );
        }
    }
    let status = error["status"].as_str().map(str::to_owned);
    (reasons, status)
}

fn message_of(status: u16, body: &Value, raw: &[u8]) -> String {
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| body["error_description"].as_str().map(str::to_owned))
        .or_else(|| body["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(raw);
            text.chars().take(200).collect()
        });
    format!("HTTP {status}: {message}")
}

/// Classifies an HTTP answer that is not a success, from its status and body.
pub fn classify_http(status: u16, body: &[u8], retry_after: Option<Duration>) -> RemoteError {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    classify_json(status, &json, body, retry_after)
}

/// Classifies an error answer whose body is already parsed (`raw` only feeds the message
/// when the body is not Google's JSON).
pub fn classify_json(
    status: u16,
    body: &Value,
    raw: &[u8],
    retry_after: Option<Duration>,
) -> RemoteError {
    let (reasons, rpc_status) = reasons(body);
    let has = |r: &str| reasons.iter().any(|x| x.eq_ignore_ascii_case(r));
    let oauth_error = body["error"].as_str();
    use RemoteErrorKind as K;
    let kind = if oauth_error.is_some() {
        // The token endpoint: {"error": "invalid_grant", "error_description": …}.
        if status >= 500 {
            K::Transient
        } else {
            K::Unauthorized
        }
    } else if has("EXPIRED_SYNC_TOKEN") || has("fullSyncRequired") {
        K::SyncTokenExpired
    } else if status == 429
        || has("rateLimitExceeded")
        || has("userRateLimitExceeded")
        || rpc_status.as_deref() == Some("RESOURCE_EXHAUSTED") && status != 403
    {
        K::RateLimited
    } else if status >= 500 {
        K::Transient
    } else {
        match status {
            401 => K::Unauthorized,
            403 if has("quotaExceeded") || has("dailyLimitExceeded") => K::QuotaExceeded,
            403 if rpc_status.as_deref() == Some("RESOURCE_EXHAUSTED") => K::QuotaExceeded,
            404 | 410 => K::NotFound,
            409 => K::AlreadyExists,
            412 => K::PreconditionFailed,
            400 if rpc_status.as_deref() == Some("FAILED_PRECONDITION")
                || has("failedPrecondition") =>
            {
                K::PreconditionFailed
            }
            400 if rpc_status.as_deref() == Some("NOT_FOUND") => K::NotFound,
            _ => K::Permanent,
        }
    };
    RemoteError {
        kind,
        message: message_of(status, body, raw),
        retry_after,
    }
}

/// A transport failure of a reqwest call (our batch and raw calls). Timeouts, refused and
/// dropped connections are transient.
pub fn classify_reqwest(err: &reqwest::Error) -> RemoteError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_decode() || err.is_body() {
        "the answer broke off"
    } else {
        "the connection failed"
    };
    RemoteError::new(RemoteErrorKind::Transient, format!("{what}: {err}"))
}

/// A failure to get an access token for the impersonated user.
pub fn classify_auth(err: &AuthError) -> RemoteError {
    let kind = match err {
        AuthError::Token { source, .. } => classify_token_error(source),
        AuthError::NoToken(_) => RemoteErrorKind::Transient,
        AuthError::ReadKey { .. }
        | AuthError::InsecureUrl(_)
        | AuthError::BadUrl(_)
        | AuthError::Build(_) => RemoteErrorKind::Permanent,
    };
    RemoteError::new(kind, err.to_string())
}

fn classify_token_error(err: &yup_oauth2::Error) -> RemoteErrorKind {
    use yup_oauth2::Error as E;
    match err {
        // The token endpoint refused the grant (unknown user, consent revoked, bad key…).
        // Codes outside RFC 6749 (`internal_failure`, `temporarily_unavailable`…) come with
        // the endpoint's own 5xx: try again.
        E::AuthError(auth) => match auth.error {
            yup_oauth2::error::AuthErrorCode::Other(_) => RemoteErrorKind::Transient,
            _ => RemoteErrorKind::Unauthorized,
        },
        // Connection problems, or a non-OAuth answer (a 5xx page) we could not decode.
        E::HttpError(_)
        | E::HttpClientError(_)
        | E::LowLevelError(_)
        | E::JSONError(_)
        | E::MissingAccessToken => RemoteErrorKind::Transient,
        E::UserError(_) | E::StorageError(_) | E::CredentialSourceError(_) => {
            RemoteErrorKind::Permanent
        }
    }
}

/// What the hub delegate saw of a failed answer (the hub's error value drops the status
/// and the headers).
#[derive(Debug, Clone, Copy, Default)]
pub struct SeenFailure {
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
}

/// A failure of a call made through a generated hub.
pub fn classify_hub(err: google_calendar3::common::Error, seen: SeenFailure) -> RemoteError {
    use google_calendar3::common::Error as E;
    match err {
        E::BadRequest(body) => {
            let status = seen
                .status
                .or_else(|| {
                    body["error"]["code"]
                        .as_u64()
                        .and_then(|c| u16::try_from(c).ok())
                })
                .unwrap_or(400);
            classify_json(status, &body, b"", seen.retry_after)
        }
        E::Failure(response) => {
            let status = response.status().as_u16();
            let retry_after = seen
                .retry_after
                .or_else(|| retry_after_header(response.headers()));
            classify_http(status, b"", retry_after)
        }
        E::HttpError(e) => RemoteError::new(
            RemoteErrorKind::Transient,
            format!("the connection failed: {e}"),
        ),
        E::Io(e) => RemoteError::new(RemoteErrorKind::Transient, format!("I/O error: {e}")),
        E::JsonDecodeError(text, e) => {
            // A success status with a body that is not the JSON we expect: a proxy page or a
            // truncated answer. Retrying is the best bet.
            let snippet: String = text.chars().take(120).collect();
            RemoteError::new(
                RemoteErrorKind::Transient,
                format!("undecodable answer ({e}): {snippet}"),
            )
        }
        E::MissingToken(e) => match e.downcast_ref::<AuthError>() {
            Some(auth) => classify_auth(auth),
            None => RemoteError::new(RemoteErrorKind::Transient, format!("no token: {e}")),
        },
        other => RemoteError::new(RemoteErrorKind::Permanent, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(status: u16, body: Value) -> RemoteErrorKind {
        classify_http(status, body.to_string().as_bytes(), None).kind
    }

    fn calendar(code: u16, reason: &str) -> Value {
        json!({"error": {"code": code, "message": "m", "errors": [{"domain": "usageLimits", "reason": reason, "message": "m"}]}})
    }

    fn people(code: u16, status: &str, info: Option<&str>) -> Value {
        let mut e = json!({"error": {"code": code, "message": "m", "status": status}});
        if let Some(reason) = info {
            e["error"]["details"] = json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}]);
        }
        e
    }

    #[test]
    fn calendar_errors() {
        use RemoteErrorKind as K;
        assert_eq!(
            kind(403, calendar(403, "rateLimitExceeded")),
            K::RateLimited
        );
        assert_eq!(
            kind(403, calendar(403, "userRateLimitExceeded")),
            K::RateLimited
        );
        assert_eq!(kind(403, calendar(403, "quotaExceeded")), K::QuotaExceeded);
        assert_eq!(kind(403, calendar(403, "forbidden")), K::Permanent);
        // A missing scope is permanent: retrying cannot grant it.
        let insufficient = json!({"error": {"code": 403, "message": "Request had insufficient authentication scopes.",
            "errors": [{"message": "Insufficient Permission", "domain": "global", "reason": "insufficientPermissions"}],
            "status": "PERMISSION_DENIED",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com"}]}});
        assert_eq!(kind(403, insufficient), K::Permanent);
        assert_eq!(
            kind(403, calendar(403, "userRateLimitExceeded")),
            K::RateLimited
        );
        assert_eq!(
            kind(429, calendar(429, "rateLimitExceeded")),
            K::RateLimited
        );
        assert_eq!(
            kind(410, calendar(410, "fullSyncRequired")),
            K::SyncTokenExpired
        );
        assert_eq!(kind(410, calendar(410, "deleted")), K::NotFound);
        assert_eq!(kind(404, calendar(404, "notFound")), K::NotFound);
        assert_eq!(kind(409, calendar(409, "duplicate")), K::AlreadyExists);
        assert_eq!(
            kind(412, calendar(412, "conditionNotMet")),
            K::PreconditionFailed
        );
        assert_eq!(kind(500, calendar(500, "backendError")), K::Transient);
        assert_eq!(kind(503, Value::Null), K::Transient);
        assert_eq!(kind(400, calendar(400, "invalid")), K::Permanent);
        assert_eq!(kind(401, calendar(401, "authError")), K::Unauthorized);
    }

    #[test]
    fn people_errors() {
        use RemoteErrorKind as K;
        assert_eq!(
            kind(
                400,
                people(400, "FAILED_PRECONDITION", Some("EXPIRED_SYNC_TOKEN"))
            ),
            K::SyncTokenExpired
        );
        assert_eq!(
            kind(400, people(400, "FAILED_PRECONDITION", None)),
            K::PreconditionFailed
        );
        assert_eq!(
            kind(400, people(400, "INVALID_ARGUMENT", None)),
            K::Permanent
        );
        assert_eq!(
            kind(429, people(429, "RESOURCE_EXHAUSTED", None)),
            K::RateLimited
        );
        assert_eq!(
            kind(409, people(409, "ALREADY_EXISTS", None)),
            K::AlreadyExists
        );
        assert_eq!(kind(404, people(404, "NOT_FOUND", None)), K::NotFound);
    }

    #[test]
    fn oauth_errors() {
        use RemoteErrorKind as K;
        assert_eq!(
            kind(
                400,
                json!({"error": "invalid_grant", "error_description": "Invalid email or User ID"})
            ),
            K::Unauthorized
        );
        assert_eq!(
            kind(401, json!({"error": "unauthorized_client"})),
            K::Unauthorized
        );
        assert_eq!(
            kind(503, json!({"error": "temporarily_unavailable"})),
            K::Transient
        );
        let e = classify_http(
            400,
            br#"{"error":"invalid_grant","error_description":"no such user"}"#,
            None,
        );
        assert!(e.message.contains("no such user"), "{}", e.message);
    }

    #[test]
    fn token_endpoint_errors() {
        use yup_oauth2::error::{AuthError as OAuth, AuthErrorCode};
        let refused = |code| {
            yup_oauth2::Error::AuthError(OAuth {
                error: code,
                error_description: None,
                error_uri: None,
            })
        };
        assert_eq!(
            classify_token_error(&refused(AuthErrorCode::InvalidGrant)),
            RemoteErrorKind::Unauthorized
        );
        assert_eq!(
            classify_token_error(&refused(AuthErrorCode::UnauthorizedClient)),
            RemoteErrorKind::Unauthorized
        );
        assert_eq!(
            classify_token_error(&refused(AuthErrorCode::Other("internal_failure".into()))),
            RemoteErrorKind::Transient
        );
        assert_eq!(
            classify_token_error(&yup_oauth2::Error::MissingAccessToken),
            RemoteErrorKind::Transient
        );
    }

    #[test]
    fn only_transient_and_rate_limits_are_retried() {
        use RemoteErrorKind as K;
        for k in [K::Transient, K::RateLimited] {
            assert!(is_retryable(k));
        }
        for k in [
            K::NotFound,
            K::PreconditionFailed,
            K::AlreadyExists,
            K::SyncTokenExpired,
            K::QuotaExceeded,
            K::Unauthorized,
            K::Permanent,
        ] {
            assert!(!is_retryable(k));
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn garbage_bodies_do_not_panic() {
        let e = classify_http(502, b"<html>bad gateway</html>", None);
        assert_eq!(e.kind, RemoteErrorKind::Transient);
        assert!(e.message.contains("bad gateway"));
        assert_eq!(
            classify_http(418, &[0xff, 0xfe], None).kind,
            RemoteErrorKind::Permanent
        );
    }
}
