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

    /// The `CloudEvent` this call carries, or `None` when the request is not one (no `ce-specversion`
    /// header). It reads the `ce-*` headers on each call and costs nothing until called: keep the result.
    /// Values are percent-decoded (the HTTP binding); the first of a repeated header counts.
    pub fn event(&self) -> Option<CloudEvent> {
        if !self.headers.iter().any(|(name, _)| {
            ce_attribute(name).is_some_and(|a| a.eq_ignore_ascii_case("specversion"))
        }) {
            return None;
        }
        let mut event = CloudEvent::default();
        let mut seen = std::collections::BTreeSet::new();
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("content-type") {
                if event.datacontenttype.is_none() {
                    event.datacontenttype = Some(value.clone());
                }
                continue;
            }
            let Some(attribute) = ce_attribute(name).map(str::to_ascii_lowercase) else {
                continue;
            };
            if !seen.insert(attribute.clone()) {
                continue;
            }
            let value = percent_decoded(value);
            match attribute.as_str() {
                "id" => event.id = value,
                "source" => event.source = value,
                "type" => event.ty = value,
                "specversion" => event.specversion = value,
                "subject" => event.subject = Some(value),
                "dataschema" => event.dataschema = Some(value),
                "time" => event.time = rfc3339(&value),
                _ => {
                    event.extensions.insert(attribute, value);
                }
            }
        }
        Some(event)
    }
}

/// The `CloudEvent` a call carries (`Request::event`): its attributes, typed. The event's data is the
/// request's body, its type `datacontenttype` (the `Content-Type` header).
///
/// The ingestor accepts an event in either HTTP mode (`ce-*` headers, or `application/cloudevents+json`) and
/// hands every runtime the binary mode, after checking that `specversion` is "1.0", that `id`, `source` and
/// `type` are there and that the time is RFC 3339 (docs/protocol.md, "`CloudEvents`").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    /// The `type` attribute.
    pub ty: String,
    pub specversion: String,
    pub subject: Option<String>,
    /// With the event's own offset; `None` when absent (or not RFC 3339: the ingestor refuses those).
    pub time: Option<time::OffsetDateTime>,
    /// The `Content-Type` header.
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    /// Every other attribute (a `ce-{name}` header) by name, as a string.
    pub extensions: std::collections::BTreeMap<String, String>,
}

/// The attribute a `ce-{name}` header names (`name` as written), `None` for other headers.
fn ce_attribute(header: &str) -> Option<&str> {
    header
        .get(..3)
        .filter(|prefix| prefix.eq_ignore_ascii_case("ce-"))
        .map(|_| &header[3..])
}

/// The binding's percent-encoding undone (as UTF-8, lossy); a `%` without two hex digits stays as it is.
fn percent_decoded(value: &str) -> String {
    if !value.contains('%') {
        return value.to_owned();
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit)) // (from_str_radix would take "+1")
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An RFC 3339 timestamp (`t` and `z` may be lowercase), `None` when it is not one.
fn rfc3339(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(
        &text.to_ascii_uppercase(),
        &time::format_description::well_known::Rfc3339,
    )
    .ok()
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

#[cfg(test)]
mod tests {
    use super::{CloudEvent, Request};
    use time::{OffsetDateTime, UtcOffset};

    /// 2026-12-07T10:11:12Z in Unix seconds.
    const AT: i128 = 1_796_638_272;

    /// The time `AT` plus `nanos`, seen at `offset_s` from UTC.
    #[allow(clippy::unnecessary_wraps)] // compared with `CloudEvent::time`
    fn at(nanos: i128, offset_s: i32) -> Option<OffsetDateTime> {
        let utc = OffsetDateTime::from_unix_timestamp_nanos(AT * 1_000_000_000 + nanos).unwrap();
        Some(utc.to_offset(UtcOffset::from_whole_seconds(offset_s).unwrap()))
    }

    fn request(extra: &[(&str, &str)]) -> Request {
        let mut headers = vec![
            ("ce-specversion", "1.0"),
            ("ce-id", "e-1"),
            ("ce-source", "/orders"),
            ("ce-type", "order.created"),
        ];
        headers.extend_from_slice(extra);
        request_with(&headers)
    }

    fn request_with(headers: &[(&str, &str)]) -> Request {
        Request {
            call_id: "c".into(),
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            params: Vec::new(),
            body: Vec::new(),
            traceparent: String::new(),
            tracestate: String::new(),
            deadline: std::time::Instant::now(),
            output: crate::capture::Output::default(),
        }
    }

    #[test]
    fn every_attribute_is_typed() {
        let event = request(&[
            ("Ce-Subject", "42"),
            ("ce-time", "2026-12-07T10:11:12.345678+02:00"),
            ("ce-dataschema", "https://example.com/s"),
            ("Content-Type", "application/json"),
            ("CE-TraceId", "t-1"),
            ("x-other", "no"),
        ])
        .event();
        let expected = CloudEvent {
            id: "e-1".into(),
            source: "/orders".into(),
            ty: "order.created".into(),
            specversion: "1.0".into(),
            subject: Some("42".into()),
            time: at(345_678_000 - 7200 * 1_000_000_000, 7200),
            datacontenttype: Some("application/json".into()),
            dataschema: Some("https://example.com/s".into()),
            extensions: [("traceid".to_owned(), "t-1".to_owned())].into(),
        };
        assert_eq!(event, Some(expected));
        let offset = event
            .and_then(|e| e.time)
            .map(|t| t.offset().whole_seconds());
        assert_eq!(offset, Some(7200));
    }

    #[test]
    fn no_event_without_ce_specversion() {
        assert_eq!(
            request_with(&[("ce-id", "1"), ("content-type", "text/plain")]).event(),
            None
        );
        assert_eq!(request_with(&[]).event(), None);
    }

    #[test]
    fn values_are_percent_decoded_and_the_first_header_counts() {
        let event = request(&[
            ("ce-subject", "na%C3%AFve%20%22q%22%20100%25"),
            ("ce-subject", "second"),
            ("ce-bad", "100%"),
            ("ce-sign", "%+1"),
        ])
        .event()
        .expect("an event");
        assert_eq!(event.subject.as_deref(), Some("naïve \"q\" 100%"));
        assert_eq!(event.extensions["bad"], "100%");
        assert_eq!(event.extensions["sign"], "%+1");
    }

    #[test]
    fn time_is_rfc3339_with_its_offset_or_none() {
        let cases = [
            ("2026-12-07T10:11:12Z", at(0, 0)),
            ("2026-12-07t10:11:12.123456789z", at(123_456_789, 0)),
            (
                "2026-12-07T10%3A11%3A12-01:30",
                at(5400 * 1_000_000_000, -5400),
            ),
            ("2026-12-07", None), // not RFC 3339: None (the ingestor refuses it)
            ("2026-02-30T00:00:00Z", None),
            ("soon", None),
        ];
        for (text, expected) in cases {
            let event = request(&[("ce-time", text)]).event().expect("an event");
            assert_eq!(event.time, expected, "{text}");
        }
    }

    #[test]
    fn missing_attributes_are_empty_or_none() {
        let event = request_with(&[("ce-specversion", "1.0")]).event();
        let expected = CloudEvent {
            specversion: "1.0".into(),
            ..CloudEvent::default()
        };
        assert_eq!(event, Some(expected));
    }
}
