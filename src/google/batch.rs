//! The Calendar batch wire format (`POST {root}/batch/calendar/v3`, `multipart/mixed`):
//! encoding requests and decoding the per-part answers. Pure functions; `remote` sends.
//!
//! Each part is an `application/http` request with `Content-ID: <item-N>`; Google answers
//! each with `Content-ID: <response-item-N>`, an HTTP status line, headers and a body. Parts
//! are matched back by that id (by position when an answer carries none).

use crate::multipart;
use rand::Rng;

/// Google's limit on calls in one batch request.
pub const MAX_PARTS: usize = 1000;

/// One call inside a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequestPart {
    pub method: &'static str,
    /// Absolute path with query, e.g. `/calendar/v3/calendars/c/events?sendUpdates=none`.
    pub path: String,
    pub if_match: Option<String>,
    /// JSON body, if any.
    pub body: Option<String>,
}

/// The answer to one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResponsePart {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl BatchResponsePart {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-encodes one path segment (calendar ids contain `@` and may contain `#`).
pub fn encode_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A boundary that occurs in none of the bodies.
pub fn choose_boundary(parts: &[BatchRequestPart], rng: &mut impl Rng) -> String {
    loop {
        let boundary = format!("crmsync_batch_{:016x}", rng.random::<u64>());
        if parts
            .iter()
            .all(|p| p.body.as_deref().is_none_or(|b| !b.contains(&boundary)))
        {
            return boundary;
        }
    }
}

/// The multipart body of a batch request.
pub fn encode(parts: &[BatchRequestPart], boundary: &str) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        multipart::write_part_head(&mut out, boundary, &format!("item-{i}"));
        let if_match = part.if_match.as_deref().map(|etag| ("If-Match", etag));
        let content_type = part
            .body
            .as_ref()
            .map(|_| ("Content-Type", "application/json; charset=UTF-8"));
        multipart::write_message(
            &mut out,
            &format!("{} {} HTTP/1.1", part.method, part.path),
            if_match.into_iter().chain(content_type),
            part.body.as_deref().map(str::as_bytes),
        );
    }
    multipart::write_close(&mut out, boundary);
    out
}

/// The boundary named by a `multipart/mixed` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let kind = content_type.split(';').next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    multipart::boundary_param(content_type)
}

/// The index `N` of a `response-item-N` content id.
fn item_index(content_id: &str) -> Option<usize> {
    content_id
        .trim()
        .trim_matches(['<', '>'])
        .strip_prefix("response-")
        .unwrap_or(content_id)
        .strip_prefix("item-")?
        .parse()
        .ok()
}

/// Decodes a batch answer into one slot per request part (`None` where Google sent no
/// answer for it). Malformed parts are skipped.
pub fn decode(
    content_type: &str,
    body: &str,
    parts: usize,
) -> Result<Vec<Option<BatchResponsePart>>, String> {
    let boundary = boundary_of(content_type)
        .ok_or_else(|| format!("the batch answer is not multipart/mixed: {content_type:?}"))?;
    let mut slots: Vec<Option<BatchResponsePart>> = vec![None; parts];
    for (position, part) in multipart::parts(body, &boundary).into_iter().enumerate() {
        let index = part.content_id().and_then(item_index).unwrap_or(position);
        let message = multipart::message(part.http);
        let Some(status) = message
            .start_line
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u16>().ok())
        else {
            continue;
        };
        let part = BatchResponsePart {
            status,
            headers: message.headers,
            body: message.body.to_owned(),
        };
        if let Some(slot) = slots.get_mut(index) {
            *slot = Some(part);
        }
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn encodes_parts_with_ids_and_if_match() {
        let parts = vec![
            BatchRequestPart {
                method: "POST",
                path: "/calendar/v3/calendars/a%40b/events?sendUpdates=none".into(),
                if_match: None,
                body: Some("{\"id\":\"abcde\"}".into()),
            },
            BatchRequestPart {
                method: "DELETE",
                path: "/calendar/v3/calendars/a%40b/events/abcde?sendUpdates=none".into(),
                if_match: Some("\"e1\"".into()),
                body: None,
            },
        ];
        let text = encode(&parts, "B");
        assert!(text.starts_with("--B\r\nContent-Type: application/http\r\nContent-ID: <item-0>\r\n\r\nPOST /calendar/v3/calendars/a%40b/events?sendUpdates=none HTTP/1.1\r\n"));
        assert!(text.contains("Content-ID: <item-1>\r\n\r\nDELETE /calendar/v3/calendars/a%40b/events/abcde?sendUpdates=none HTTP/1.1\r\nIf-Match: \"e1\"\r\n"));
        assert!(text.ends_with("--B--\r\n"));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let boundary = choose_boundary(&parts, &mut rng);
        assert!(!text.contains(&boundary));
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(
            encode_segment("abc@group.calendar.google.com"),
            "abc@group.calendar.google.com"
        );
        assert_eq!(encode_segment("en.usa#holiday@x"), "en.usa%23holiday@x");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn decodes_answers_by_content_id_in_any_order() {
        let body = "--R\r\nContent-Type: application/http\r\nContent-ID: <response-item-1>\r\n\r\nHTTP/1.1 412 Precondition Failed\r\nContent-Type: application/json\r\n\r\n{\"error\":{\"code\":412}}\r\n--R\r\nContent-Type: application/http\r\nContent-ID: <response-item-0>\r\n\r\nHTTP/1.1 200 OK\r\nRetry-After: 3\r\n\r\n{\"id\":\"abcde\"}\r\n--R--\r\n";
        let slots = decode("multipart/mixed; boundary=R", body, 3).unwrap();
        let first = slots[0].as_ref().unwrap();
        assert_eq!(first.status, 200);
        assert_eq!(first.body, "{\"id\":\"abcde\"}");
        assert_eq!(first.header("Retry-After"), Some("3"));
        assert_eq!(slots[1].as_ref().unwrap().status, 412);
        assert!(slots[2].is_none());
    }

    #[test]
    fn decodes_lf_only_answers_without_ids_by_position_and_a_204() {
        let body = "preamble\n--R\nContent-Type: application/http\n\nHTTP/1.1 204 No Content\n\n\n--R\nContent-Type: application/http\n\nHTTP/1.1 404 Not Found\n\n{}\n--R--";
        let slots = decode("multipart/mixed; boundary=\"R\"", body, 2).unwrap();
        assert_eq!(slots[0].as_ref().unwrap().status, 204);
        assert_eq!(slots[0].as_ref().unwrap().body, "");
        assert_eq!(slots[1].as_ref().unwrap().status, 404);
    }

    #[test]
    fn garbage_answers_do_not_panic() {
        assert!(decode("application/json", "{}", 1).is_err());
        let slots = decode(
            "multipart/mixed; boundary=R",
            "--R\r\nnonsense\r\n--R\r\n\r\n\r\nHTTP/1.1 abc\r\n--R--",
            1,
        )
        .unwrap();
        assert!(slots[0].is_none());
        let slots = decode(
            "multipart/mixed; boundary=R",
            "--R\r\nContent-ID: <response-item-99>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}",
            1,
        )
        .unwrap();
        assert!(slots[0].is_none());
    }
}
