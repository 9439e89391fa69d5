//! Request/response plumbing shared by every emulated API: a fully read request, a response
//! ready to be written, and Google's two error shapes (Calendar's "errors[]" form and the
//! People API's `google.rpc.Status` form).

use serde::Serialize;
use serde_json::{json, Value};

/// Which Google API family an endpoint belongs to (decides the error shape and quota bucket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiFamily {
    /// Calendar v3 (`/calendar/v3/`, `/batch/calendar/v3`).
    Calendar,
    /// People v1 (`/v1/`).
    People,
}

/// A request read completely from the wire (or from one part of a batch).
#[derive(Clone, Debug)]
pub(crate) struct RawRequest {
    pub method: String,
    /// Path without the query string, still percent-encoded.
    pub path: String,
    pub query: Query,
    /// Lower-cased header names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Path segments after `prefix`, percent-decoded. `None` if the path does not start with it.
    pub fn segments_after(&self, prefix: &str) -> Option<Vec<String>> {
        let rest = self.path.strip_prefix(prefix)?;
        Some(
            rest.split('/')
                .filter(|s| !s.is_empty())
                .map(percent_decode)
                .collect(),
        )
    }
}

/// Decoded query string parameters, in order, repeated names kept.
#[derive(Clone, Debug, Default)]
pub(crate) struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let Some(raw) = raw else {
            return Query::default();
        };
        Query(
            url::form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// A boolean parameter (`true`/`false`); anything else is a 400.
    pub fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(ApiError::invalid_param(name, other)),
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::invalid_param(name, v)),
        }
    }

    /// A stable fingerprint of every parameter except the ones listed (used to check that a
    /// page token is replayed with the same query).
    pub fn fingerprint(&self, ignore: &[&str]) -> u64 {
        let mut pairs: Vec<&(String, String)> = self
            .0
            .iter()
            .filter(|(k, _)| {
                !ignore.contains(&k.as_str()) && !STANDARD_PARAMS.contains(&k.as_str())
            })
            .collect();
        pairs.sort();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in pairs {
            for b in k.bytes().chain([0u8]).chain(v.bytes()).chain([1u8]) {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }
}

/// System parameters every Google API accepts and that never change a listing.
pub(crate) const STANDARD_PARAMS: &[&str] = &[
    "alt",
    "fields",
    "key",
    "prettyPrint",
    "quotaUser",
    "userIp",
    "oauth_token",
    "access_token",
    "callback",
    "upload_protocol",
    "uploadType",
    "$.xgafv",
];

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response ready to be written (or embedded in a batch response).
#[derive(Clone, Debug)]
pub(crate) struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// JSON body from a serialisable value, with `null` members removed (Google omits absent
    /// fields; the crates' types serialise `None` as `null`).
    pub fn json<T: Serialize>(status: u16, value: &T) -> ApiResponse {
        let mut v = serde_json::to_value(value).unwrap_or(Value::Null);
        strip_nulls(&mut v);
        ApiResponse::json_value(status, &v)
    }

    pub fn json_value(status: u16, value: &Value) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![(
                "content-type".to_string(),
                "application/json; charset=UTF-8".to_string(),
            )],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// 204 No Content (Calendar deletes).
    pub fn no_content() -> ApiResponse {
        ApiResponse {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Remove `null` members from objects, recursively.
pub(crate) fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for v in map.values_mut() {
                strip_nulls(v);
            }
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                strip_nulls(v);
            }
        }
        _ => {}
    }
}

/// An error in Google's terms; rendered in the shape of the API family it is returned from.
/// (Boxed so `Result<_, ApiError>` stays small.)
#[derive(Clone, Debug)]
pub(crate) struct ApiError(Box<ApiErrorBody>);

#[derive(Clone, Debug)]
pub(crate) struct ApiErrorBody {
    pub code: u16,
    pub message: String,
    /// Legacy `errors[].reason` (Calendar), e.g. `notFound`, `fullSyncRequired`.
    pub reason: String,
    /// Legacy `errors[].domain`, e.g. `global`, `usageLimits`.
    pub domain: &'static str,
    pub location: Option<(&'static str, String)>,
    /// `google.rpc.Code` name (People), e.g. `FAILED_PRECONDITION`.
    pub status: &'static str,
    /// `google.rpc.ErrorInfo.reason` (People), e.g. `EXPIRED_SYNC_TOKEN`.
    pub error_info_reason: Option<&'static str>,
    pub retry_after_secs: Option<u64>,
}

impl std::ops::Deref for ApiError {
    type Target = ApiErrorBody;

    fn deref(&self) -> &ApiErrorBody {
        &self.0
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(ApiErrorBody {
            code,
            message: message.into(),
            reason: reason.to_string(),
            domain: "global",
            location: None,
            status: grpc_status_for(code),
            error_info_reason: None,
            retry_after_secs: None,
        }))
    }

    pub fn with_domain(mut self, domain: &'static str) -> ApiError {
        self.0.domain = domain;
        self
    }

    pub fn with_location(mut self, kind: &'static str, location: impl Into<String>) -> ApiError {
        self.0.location = Some((kind, location.into()));
        self
    }

    pub fn with_status(mut self, status: &'static str) -> ApiError {
        self.0.status = status;
        self
    }

    pub fn with_error_info(mut self, reason: &'static str) -> ApiError {
        self.0.error_info_reason = Some(reason);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> ApiError {
        self.0.retry_after_secs = Some(secs);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "badRequest", message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid", message)
    }

    pub fn invalid_param(name: &str, value: &str) -> ApiError {
        ApiError::new(
            400,
            "invalidParameter",
            format!("Invalid value '{value}' for {name}"),
        )
        .with_location("parameter", name)
    }

    pub fn required(what: &str) -> ApiError {
        ApiError::new(400, "required", format!("Missing {what}."))
    }

    pub fn not_found() -> ApiError {
        ApiError::new(404, "notFound", "Not Found")
    }

    pub fn people_not_found() -> ApiError {
        ApiError::new(404, "notFound", "Requested entity was not found.")
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(401, "authError", "Invalid Credentials")
            .with_location("header", "Authorization")
    }

    pub fn backend(code: u16) -> ApiError {
        match code {
            503 => ApiError::new(503, "backendError", "The service is currently unavailable."),
            // The only 403 Google asks clients to retry: an operational rate limit (e.g.
            // writing one calendar in quick succession).
            403 => ApiError::new(403, "rateLimitExceeded", "Rate Limit Exceeded")
                .with_domain("usageLimits"),
            429 => ApiError::new(429, "rateLimitExceeded", "Rate Limit Exceeded")
                .with_domain("usageLimits")
                .with_error_info("RATE_LIMIT_EXCEEDED"),
            other => ApiError::new(other, "backendError", "Backend Error"),
        }
    }

    pub fn into_response(self, family: ApiFamily) -> ApiResponse {
        let this = *self.0;
        let mut response = match family {
            ApiFamily::Calendar => {
                let mut item = json!({
                    "domain": this.domain,
                    "reason": this.reason,
                    "message": this.message,
                });
                if let Some((kind, location)) = &this.location {
                    item["locationType"] = json!(kind);
                    item["location"] = json!(location);
                }
                ApiResponse::json_value(
                    this.code,
                    &json!({"error": {"errors": [item], "code": this.code, "message": this.message}}),
                )
            }
            ApiFamily::People => {
                let mut error = json!({
                    "code": this.code,
                    "message": this.message,
                    "errors": [{"message": this.message, "domain": this.domain, "reason": this.reason}],
                    "status": this.status,
                });
                if let Some(reason) = this.error_info_reason {
                    error["details"] = json!([{
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": reason,
                        "domain": "people.googleapis.com",
                        "metadata": {"service": "people.googleapis.com"},
                    }]);
                }
                ApiResponse::json_value(this.code, &json!({ "error": error }))
            }
        };
        if let Some(secs) = this.retry_after_secs {
            response
                .headers
                .push(("retry-after".to_string(), secs.to_string()));
        }
        response
    }
}

fn grpc_status_for(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        410 => "NOT_FOUND",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_edges() {
        assert_eq!(percent_decode("a%40b"), "a@b");
        assert_eq!(percent_decode("a%4"), "a%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("x%zz"), "x%zz");
    }

    #[test]
    fn calendar_error_shape() {
        let r = ApiError::not_found().into_response(ApiFamily::Calendar);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["code"], 404);
        assert_eq!(v["error"]["errors"][0]["reason"], "notFound");
        assert_eq!(v["error"]["errors"][0]["domain"], "global");
    }

    #[test]
    fn people_error_shape() {
        let r = ApiError::new(400, "failedPrecondition", "x")
            .with_status("FAILED_PRECONDITION")
            .with_error_info("EXPIRED_SYNC_TOKEN")
            .into_response(ApiFamily::People);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["status"], "FAILED_PRECONDITION");
        assert_eq!(v["error"]["details"][0]["reason"], "EXPIRED_SYNC_TOKEN");
    }
}
