//! What a Rust function sees: the `Request` it gets and the `Response` it returns.

use std::fmt;
use std::time::Instant;

use crate::capture::Output;

/// Any error a handler returns; its `Display` becomes the 500's message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// A handler's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One call. Headers and params are kept as received: order is kept and names may repeat.
#[derive(Debug, Clone)]
pub struct Request {
    pub call_id: String,
    pub method: String,
    /// The path after the function's name: `/a/b` for `/function/name/a/b`, `/` when empty.
    pub path: String,
    /// The query string without `?`, undecoded.
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// Route parameters of an HTTP trigger.
    pub params: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// W3C trace context, may be empty.
    pub traceparent: String,
    pub tracestate: String,
    /// When the runtime stops waiting for the handler (the budget minus the runtime's margin).
    pub deadline: Instant,
    /// The call's own stdout and stderr (`req.output.println(..)`), published with the call's id to `LF_LOGS`
    /// whatever else runs at the time; `println!` is captured only while no other call runs (see `capture`).
    pub output: Output,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` in the order received.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The route parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query string decoded into pairs (`+` is a space, blank values kept, order kept).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (name, value) = part.split_once('=').unwrap_or((part, ""));
                (form_decode(name), form_decode(value))
            })
            .collect()
    }

    /// The body as JSON; a body that isn't JSON is answered 400 when the error is returned.
    pub fn json(&self) -> Result<serde_json::Value, BadRequest> {
        serde_json::from_slice(&self.body)
            .map_err(|e| BadRequest(format!("the request body is not valid JSON: {e}")))
    }
}

fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Returned by a handler, answered 400 with a JSON error body (`layer: function`) rather than 500: the
/// request could not be read the way the handler needed.
#[derive(Debug, Clone)]
pub struct BadRequest(pub String);

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRequest {}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Default for Response {
    fn default() -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

impl Response {
    /// A `text/plain` 200.
    pub fn text(text: impl Into<String>) -> Self {
        Self::default()
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(text.into().into_bytes())
    }

    /// An `application/octet-stream` 200.
    pub fn bytes(body: impl Into<Vec<u8>>) -> Self {
        Self::default()
            .with_header("content-type", "application/octet-stream")
            .with_body(body)
    }

    /// An `application/json` 200.
    pub fn json(value: &serde_json::Value) -> Self {
        Self::default()
            .with_header("content-type", "application/json")
            .with_body(value.to_string().into_bytes())
    }

    /// An empty answer with `status`.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a header (a repeated name is sent as a repeated header).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// The secret `name`: the text of `LF_SECRETS_DIR/name` without one trailing newline.
pub fn secret(name: &str) -> Result<String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(format!("secret name {name:?} is not a plain file name").into());
    }
    let dir = std::env::var("LF_SECRETS_DIR").unwrap_or_default();
    if dir.is_empty() {
        return Err(format!(
            "secret {name:?}: no secrets are configured (LF_SECRETS_DIR is not set)"
        )
        .into());
    }
    let text = std::fs::read_to_string(std::path::Path::new(&dir).join(name))
        .map_err(|_| format!("secret {name:?} is not mounted in {dir:?}"))?;
    let trimmed = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(trimmed.to_owned())
}
