//! Calendar batch: `POST /batch/calendar/v3` with a `multipart/mixed` body of at most 1000
//! `application/http` parts. Each part is an independent call (authenticated with the outer
//! `Authorization` unless it carries its own, counted and rate-limited on its own), answered in
//! order with `Content-ID: <response-…>`.

use std::time::Duration;

use super::control::EmulatorHandle;
use super::faults::FaultKind;
use super::server::{api_call_in_batch, resolve_route, ApiRoute, Reply};
use super::wire::{ApiError, ApiFamily, ApiResponse, Query, RawRequest};
use crate::multipart;

/// Google's limit on calls in one batch.
pub const MAX_BATCH_PARTS: usize = 1000;

struct Part {
    content_id: Option<String>,
    request: Result<RawRequest, String>,
}

fn boundary_of(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.trim_start().starts_with("multipart/mixed") {
        return None;
    }
    multipart::boundary_param(content_type)
}

fn parse_inner(http: &str) -> Result<RawRequest, String> {
    let message = multipart::message(http);
    let request_line = message.start_line.ok_or("empty part")?;
    let mut words = request_line.split_whitespace();
    let method = words.next().ok_or("missing method")?.to_ascii_uppercase();
    let target = words.next().ok_or("missing request target")?;
    let target = match target.find("://") {
        Some(i) => {
            let after = &target[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        None => target,
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    Ok(RawRequest {
        method,
        path: path.to_string(),
        query: Query::parse(query),
        headers: message.headers,
        body: message.body.as_bytes().to_vec(),
    })
}

fn parse_parts(body: &str, boundary: &str) -> Vec<Part> {
    multipart::parts(body, boundary)
        .into_iter()
        .map(|part| Part {
            content_id: part
                .content_id()
                .map(|v| v.trim_matches(['<', '>']).to_string()),
            request: parse_inner(part.http),
        })
        .collect()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Serve one batch request.
pub(crate) async fn handle_batch(handle: &EmulatorHandle, req: &RawRequest) -> Reply {
    let fault = {
        let mut inner = handle.lock();
        inner.counters.http_requests += 1;
        *inner
            .counters
            .by_endpoint
            .entry("calendar.batch".to_string())
            .or_default() += 1;
        let user = req
            .header("authorization")
            .and_then(|h| h.split_once(' '))
            .and_then(|(_, t)| inner.data.tokens.lookup(t.trim()))
            .map(|g| g.subject.clone());
        let fault = inner
            .faults
            .decide("calendar.batch", &req.method, user.as_deref());
        if fault.is_some() {
            inner.counters.faults_injected += 1;
        }
        fault
    };
    let mut lose_response = false;
    match fault {
        None => {}
        Some(FaultKind::Status {
            code,
            retry_after_secs,
        }) => {
            let mut e = ApiError::backend(code);
            if let Some(s) = retry_after_secs {
                e = e.with_retry_after(s);
            }
            return Reply::Respond(e.into_response(ApiFamily::Calendar));
        }
        Some(FaultKind::Delay { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Some(FaultKind::DropConnection) => return Reply::Drop,
        Some(FaultKind::LostResponse) => lose_response = true,
    }
    let response = execute_batch(handle, req);
    if lose_response {
        Reply::Drop
    } else {
        Reply::Respond(response)
    }
}

fn execute_batch(handle: &EmulatorHandle, req: &RawRequest) -> ApiResponse {
    if req.method != "POST" {
        return ApiError::new(405, "badRequest", "Batch requests must be POSTed.")
            .into_response(ApiFamily::Calendar);
    }
    let Some(boundary) = req.header("content-type").and_then(boundary_of) else {
        return ApiError::bad_request("Batch requests must be multipart/mixed with a boundary.")
            .into_response(ApiFamily::Calendar);
    };
    let body = String::from_utf8_lossy(&req.body);
    let parts = parse_parts(&body, &boundary);
    if parts.is_empty() {
        return ApiError::bad_request("The batch request contains no parts.")
            .into_response(ApiFamily::Calendar);
    }
    if parts.len() > MAX_BATCH_PARTS {
        return ApiError::bad_request(format!(
            "A batch request may contain at most {MAX_BATCH_PARTS} calls; this one has {}.",
            parts.len()
        ))
        .into_response(ApiFamily::Calendar);
    }
    let outer_auth = req.header("authorization").map(str::to_string);
    let response_boundary = format!("batch_emu_{:016x}", req.body.len() as u64 ^ 0x5eed);
    let mut out = String::new();
    for (i, part) in parts.into_iter().enumerate() {
        let response = match part.request {
            Err(e) => ApiError::bad_request(format!("Malformed batch part: {e}"))
                .into_response(ApiFamily::Calendar),
            Ok(mut inner_req) => {
                if inner_req.header("authorization").is_none() {
                    if let Some(auth) = &outer_auth {
                        inner_req
                            .headers
                            .push(("authorization".into(), auth.clone()));
                    }
                }
                match resolve_route(&inner_req) {
                    Ok(route @ ApiRoute::Calendar(_)) => {
                        api_call_in_batch(handle, &route, &inner_req)
                    }
                    Ok(ApiRoute::People(_)) => ApiError::bad_request(
                        "Only Calendar calls may be sent to /batch/calendar/v3.",
                    )
                    .into_response(ApiFamily::Calendar),
                    Err(r) => r,
                }
            }
        };
        let content_id = part.content_id.map_or_else(
            || format!("response-{}", i + 1),
            |id| format!("response-{id}"),
        );
        multipart::write_part_head(&mut out, &response_boundary, &content_id);
        multipart::write_message(
            &mut out,
            &format!(
                "HTTP/1.1 {} {}",
                response.status,
                reason_phrase(response.status)
            ),
            response
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
            Some(&response.body),
        );
    }
    multipart::write_close(&mut out, &response_boundary);
    ApiResponse {
        status: 200,
        headers: vec![(
            "content-type".to_string(),
            format!("multipart/mixed; boundary={response_boundary}"),
        )],
        body: out.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts_with_crlf_and_lf() {
        let body = "--b\r\nContent-Type: application/http\r\nContent-ID: <item1>\r\n\r\nGET /calendar/v3/calendars/primary/events/abcde HTTP/1.1\r\n\r\n\r\n--b\nContent-Type: application/http\n\nPOST https://www.googleapis.com/calendar/v3/calendars/primary/events?x=1 HTTP/1.1\nContent-Type: application/json\n\n{\"a\":1}\n--b--\n";
        let parts = parse_parts(body, "b");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_id.as_deref(), Some("item1"));
        let r0 = parts[0].request.as_ref().unwrap();
        assert_eq!(r0.method, "GET");
        assert_eq!(r0.path, "/calendar/v3/calendars/primary/events/abcde");
        let r1 = parts[1].request.as_ref().unwrap();
        assert_eq!(r1.path, "/calendar/v3/calendars/primary/events");
        assert_eq!(r1.query.get("x"), Some("1"));
        assert_eq!(r1.body, b"{\"a\":1}");
    }

    #[test]
    fn boundary_is_read_from_content_type() {
        assert_eq!(
            boundary_of("multipart/mixed; boundary=\"xyz\"").as_deref(),
            Some("xyz")
        );
        assert_eq!(boundary_of("application/json"), None);
    }
}
