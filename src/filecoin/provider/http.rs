//! Small HTTP pieces the provider's routes share: replies, JSON bodies, byte ranges.
//! Pure where it can be: [`parse_range`] has no I/O.

use std::io::Read;

use tiny_http::{Header, Request, Response, StatusCode};

/// What a route answers: a status, headers and a body (bytes, or a reader of known length).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

pub enum Body {
    Bytes(Vec<u8>),
    Reader(Box<dyn Read + Send>, usize),
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: Body::Bytes(Vec::new()) }
    }

    /// A plain-text error, as Curio answers them.
    pub fn error(status: u16, text: impl Into<String>) -> Reply {
        let mut r = Reply::status(status);
        r.body = Body::Bytes(format!("{}\n", text.into()).into_bytes());
        r.headers.push(("Content-Type".into(), "text/plain; charset=utf-8".into()));
        r
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        let mut r = Reply::status(status);
        r.body = Body::Bytes(value.to_string().into_bytes());
        r.headers.push(("Content-Type".into(), "application/json".into()));
        r
    }

    /// The body as text (for errors passed on).
    pub fn text(&self) -> String {
        match &self.body {
            Body::Bytes(b) => format!("{} {}", self.status, String::from_utf8_lossy(b).trim()),
            Body::Reader(..) => self.status.to_string(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends the reply (a failure only means the client went away).
    pub fn send(self, request: Request) {
        let headers: Vec<Header> =
            self.headers.iter().filter_map(|(k, v)| Header::from_bytes(k.as_bytes(), v.as_bytes()).ok()).collect();
        let status = StatusCode(self.status);
        let result = match self.body {
            Body::Bytes(b) => {
                let len = b.len();
                let r = Response::new(status, headers, std::io::Cursor::new(b), Some(len), None);
                request.respond(r.with_chunked_threshold(usize::MAX))
            }
            // a known length is sent as Content-Length, never chunked (HEAD shows the size)
            Body::Reader(r, len) => {
                request.respond(Response::new(status, headers, r, Some(len), None).with_chunked_threshold(usize::MAX))
            }
        };
        if let Err(e) = result {
            log::debug!("provider: the client went away before the reply was sent: {e}");
        }
    }
}

/// Most bytes a JSON request body may have.
const MAX_JSON_BODY: u64 = 1 << 20;

/// Reads a JSON request body (at most 1 MiB); a 400 reply says what is wrong with it.
pub fn json_body(request: &mut Request) -> Result<serde_json::Value, Reply> {
    let mut text = Vec::new();
    request
        .as_reader()
        .take(MAX_JSON_BODY + 1)
        .read_to_end(&mut text)
        .map_err(|e| Reply::error(400, format!("reading the request body: {e}")))?;
    if text.len() as u64 > MAX_JSON_BODY {
        return Err(Reply::error(413, "the JSON body is larger than 1 MiB"));
    }
    serde_json::from_slice(&text).map_err(|e| Reply::error(400, format!("the body is not JSON: {e}")))
}

/// The string field `name` of a JSON object, or a 400 naming it.
pub fn str_field<'a>(v: &'a serde_json::Value, name: &str) -> Result<&'a str, Reply> {
    v.get(name).and_then(|f| f.as_str()).ok_or_else(|| Reply::error(400, format!("missing string field {name:?}")))
}

/// A request header's value.
pub fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers().iter().find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// No range, or one to ignore: the whole body.
    Whole,
    /// Bytes `start..end` (end exclusive).
    Part(u64, u64),
    /// Nothing of the body is in range: 416.
    Unsatisfiable,
}

/// Reads a `Range` header: one `bytes=` range (`a-b`, `a-`, `-n`). A malformed header is
/// ignored (the whole body, as RFC 9110 allows); several ranges are refused as
/// unsatisfiable rather than answered with the whole body.
pub fn parse_range(value: Option<&str>, len: u64) -> Range {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else { return Range::Whole };
    if spec.contains(',') {
        return Range::Unsatisfiable;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Range::Whole };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), _) if start >= len => Range::Unsatisfiable,
        (Ok(start), Ok(end)) if end >= start => Range::Part(start, end.min(len - 1) + 1),
        (Ok(_), Ok(_)) => Range::Whole,
        (Ok(start), Err(_)) if b.is_empty() => Range::Part(start, len),
        (Err(_), Ok(n)) if a.is_empty() => match n {
            0 => Range::Unsatisfiable,
            n => Range::Part(len.saturating_sub(n), len),
        },
        _ => Range::Whole,
    }
}

/// A fresh random upload id in UUID form.
pub fn new_uuid() -> String {
    let b = super::super::keys::random_salt().unwrap_or_else(|_| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(&t.to_le_bytes());
        b
    });
    let h = super::super::wallet::encode_hex(&b[..16]);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_rfc_9110_says() {
        let r = |v: &str| parse_range(Some(v), 100);
        assert_eq!(r("bytes=0-9"), Range::Part(0, 10));
        assert_eq!(r("bytes=90-"), Range::Part(90, 100));
        assert_eq!(r("bytes=-10"), Range::Part(90, 100));
        assert_eq!(r("bytes=-1000"), Range::Part(0, 100));
        assert_eq!(r("bytes=50-1000"), Range::Part(50, 100));
        assert_eq!(r("bytes=100-"), Range::Unsatisfiable);
        assert_eq!(r("bytes=-0"), Range::Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), Range::Unsatisfiable);
        assert_eq!(r("bytes=9-3"), Range::Whole);
        assert_eq!(r("items=0-1"), Range::Whole);
        assert_eq!(parse_range(None, 100), Range::Whole);
    }

    #[test]
    fn upload_ids_look_like_uuids_and_differ() {
        let (a, b) = (new_uuid(), new_uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}
