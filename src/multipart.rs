//! `multipart/mixed` bodies of `application/http` parts (the Calendar batch endpoint): the
//! framing the client (`google::batch`) and the emulator (`emulator::batch`) share. Each side
//! checks the media type and reads the start line (status line or request line) itself.
//!
//! Reading is lenient about line ends (CRLF or LF) and blank lines around a part; writing
//! uses CRLF throughout.

/// The `boundary` parameter of a content type (one of the fields after the media type).
pub(crate) fn boundary_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|f| {
        let (k, v) = f.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Splits `text` at the first blank line (CRLF or LF) into (head, rest).
pub(crate) fn split_head(text: &str) -> (&str, &str) {
    let crlf = text.find("\r\n\r\n").map(|i| (i, 4));
    let lf = text.find("\n\n").map(|i| (i, 2));
    let cut = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match cut {
        Some((i, n)) => (&text[..i], &text[i + n..]),
        None => (text, ""),
    }
}

/// `Name: value` lines as (lower-cased name, trimmed value); other lines are skipped.
pub(crate) fn header_lines(head: &str) -> Vec<(String, String)> {
    head.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

/// One part of a body: its own headers and the HTTP message it carries.
pub(crate) struct Part<'a> {
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub http: &'a str,
}

impl Part<'_> {
    /// The part's `Content-ID`, as written (angle brackets and all).
    pub fn content_id(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == "content-id")
            .map(|(_, v)| v.as_str())
    }
}

/// The parts between `--boundary` delimiters, in order, up to the closing `--boundary--`
/// (the preamble before the first delimiter is skipped).
pub(crate) fn parts<'a>(body: &'a str, boundary: &str) -> Vec<Part<'a>> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    for chunk in body.split(delimiter.as_str()).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let (head, http) = split_head(chunk.trim_start_matches(['\r', '\n']));
        parts.push(Part {
            headers: header_lines(head),
            http,
        });
    }
    parts
}

/// An HTTP message inside a part.
pub(crate) struct Message<'a> {
    /// The request or status line; `None` for an empty message.
    pub start_line: Option<&'a str>,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Without the line ends that close the part.
    pub body: &'a str,
}

/// Reads the HTTP message of a part.
pub(crate) fn message(http: &str) -> Message<'_> {
    let http = http.trim_start_matches(['\r', '\n']);
    let (head, body) = split_head(http);
    let mut lines = head.lines();
    let start_line = lines.next();
    Message {
        start_line,
        headers: header_lines(&lines.collect::<Vec<_>>().join("\n")),
        body: body.trim_end_matches(['\r', '\n']),
    }
}

/// Opens a part: the delimiter and the part's own headers.
pub(crate) fn write_part_head(out: &mut String, boundary: &str, content_id: &str) {
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{content_id}>\r\n\r\n"
    ));
}

/// The HTTP message of a part: start line, headers, and with a body its `Content-Length`,
/// the body and a line end; without one, just the blank line.
pub(crate) fn write_message<'h>(
    out: &mut String,
    start_line: &str,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    body: Option<&[u8]>,
) {
    out.push_str(&format!("{start_line}\r\n"));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    match body {
        Some(body) => {
            out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            out.push_str(&String::from_utf8_lossy(body));
            out.push_str("\r\n");
        }
        None => out.push_str("\r\n"),
    }
}

/// Closes the body.
pub(crate) fn write_close(out: &mut String, boundary: &str) {
    out.push_str(&format!("--{boundary}--\r\n"));
}
