//! The call envelope (`docs/protocol.md`): request and response, version 1, encoded and decoded.
//!
//! `RequestRef`/`ResponseRef` borrow their strings and body from the decoded buffer (zero-copy) or from the caller
//! (encoding); `Request`/`Response` own theirs. Encoding sizes the output exactly first, then writes once.
//! Decoding is strict (magic, version, kind, every length, UTF-8, no trailing bytes) and never panics: every read
//! is bounds-checked and a count never pre-allocates more than the remaining bytes could hold. Reserved flag bits
//! are written as 0 and ignored when read, so a later version may use them.

use std::fmt;

pub const MAGIC: [u8; 2] = *b"LF";
pub const VERSION: u8 = 1;
pub const KIND_REQUEST: u8 = 1;
pub const KIND_RESPONSE: u8 = 2;
/// Response flag bit 0: the first call served by this replica.
pub const FLAG_COLD_START: u8 = 1;

/// Fixed part of a request: magic, version, kind, `budget_ms`, flags.
const REQUEST_HEAD: usize = 12;
/// Fixed part of a response: magic, version, kind, status, `error_kind`, flags, `duration_ns`.
const RESPONSE_HEAD: usize = 16;

/// `error_kind` values.
pub mod error_kind {
    pub const NONE: u8 = 0;
    pub const HANDLER: u8 = 1;
    pub const TIMEOUT: u8 = 2;
    pub const BUSY: u8 = 3;
    pub const BAD_REQUEST: u8 = 4;
    pub const RESPONSE_TOO_LARGE: u8 = 5;
    pub const INTERNAL: u8 = 6;
}

/// Why bytes are not a well-formed envelope, or why a value cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The first two bytes are not `"LF"`.
    BadMagic,
    UnsupportedVersion(u8),
    WrongKind {
        expected: u8,
        found: u8,
    },
    /// `field`, starting at `offset`, runs past the end of the bytes.
    Truncated {
        field: &'static str,
        offset: usize,
    },
    /// The `str` `field` at `offset` is not UTF-8.
    InvalidUtf8 {
        field: &'static str,
        offset: usize,
    },
    /// Bytes are left after the last field.
    TrailingBytes(usize),
    /// Encoding: `field` is longer than a `u32` length (or count) can say.
    TooLong {
        field: &'static str,
        len: usize,
    },
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("not an envelope: bad magic (expected b\"LF\")"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "unsupported envelope version {v} (this build reads {VERSION})"
            ),
            Self::WrongKind { expected, found } => write!(
                f,
                "wrong envelope kind {found} (expected {expected}: {})",
                if *expected == KIND_REQUEST {
                    "request"
                } else {
                    "response"
                }
            ),
            Self::Truncated { field, offset } => write!(
                f,
                "truncated envelope: {field} at offset {offset} runs past the end"
            ),
            Self::InvalidUtf8 { field, offset } => {
                write!(f, "invalid UTF-8 in {field} at offset {offset}")
            }
            Self::TrailingBytes(n) => write!(f, "{n} trailing byte(s) after the last field"),
            Self::TooLong { field, len } => {
                write!(f, "{field} is too long to encode ({len} > {})", u32::MAX)
            }
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// `(name, value)` pairs: headers and route parameters, in order, names may repeat.
pub type Pairs<'a> = Vec<(&'a str, &'a str)>;

/// A request envelope borrowing its data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestRef<'a> {
    pub call_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub traceparent: &'a str,
    pub tracestate: &'a str,
    pub headers: Pairs<'a>,
    pub params: Pairs<'a>,
    pub body: &'a [u8],
    pub budget_ms: u32,
}

/// A response envelope borrowing its data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseRef<'a> {
    pub status: u16,
    pub error_kind: u8,
    pub cold_start: bool,
    pub duration_ns: u64,
    pub call_id: &'a str,
    pub error: &'a str,
    pub headers: Pairs<'a>,
    pub body: &'a [u8],
}

/// A request envelope owning its data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub call_id: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub traceparent: String,
    pub tracestate: String,
    pub headers: Vec<(String, String)>,
    pub params: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub budget_ms: u32,
}

/// A response envelope owning its data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub error_kind: u8,
    pub cold_start: bool,
    pub duration_ns: u64,
    pub call_id: String,
    pub error: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn own_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|&(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

fn borrow_pairs(pairs: &[(String, String)]) -> Pairs<'_> {
    pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Sizing and writing

fn len_prefixed(field: &'static str, len: usize) -> Result<usize, EnvelopeError> {
    if u32::try_from(len).is_err() {
        return Err(EnvelopeError::TooLong { field, len });
    }
    Ok(4 + len)
}

/// Encoded size of a `pairs` field.
pub fn pairs_len(field: &'static str, pairs: &[(&str, &str)]) -> Result<usize, EnvelopeError> {
    let mut total = len_prefixed(field, 0)?;
    if u32::try_from(pairs.len()).is_err() {
        return Err(EnvelopeError::TooLong {
            field,
            len: pairs.len(),
        });
    }
    for (n, v) in pairs {
        total = checked_sum(
            field,
            &[
                total,
                len_prefixed(field, n.len())?,
                len_prefixed(field, v.len())?,
            ],
        )?;
    }
    Ok(total)
}

fn checked_sum(field: &'static str, parts: &[usize]) -> Result<usize, EnvelopeError> {
    parts
        .iter()
        .try_fold(0usize, |acc, &p| acc.checked_add(p))
        .ok_or(EnvelopeError::TooLong {
            field,
            len: usize::MAX,
        })
}

/// Writes into a buffer sized by `encoded_len`; writing past its end is a bug and panics.
struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }

    /// Lengths were checked against `u32::MAX` while sizing.
    #[allow(clippy::cast_possible_truncation)]
    fn len_bytes(&mut self, bytes: &[u8]) {
        self.put(&(bytes.len() as u32).to_le_bytes());
        self.put(bytes);
    }

    fn str(&mut self, s: &str) {
        self.len_bytes(s.as_bytes());
    }

    #[allow(clippy::cast_possible_truncation)]
    fn pairs(&mut self, pairs: &[(&str, &str)]) {
        self.put(&(pairs.len() as u32).to_le_bytes());
        for (n, v) in pairs {
            self.str(n);
            self.str(v);
        }
    }
}

impl<'a> RequestRef<'a> {
    /// Exact size of the encoding; fails when a field is too long for the format.
    pub fn encoded_len(&self) -> Result<usize, EnvelopeError> {
        let strs = [
            ("call_id", self.call_id),
            ("method", self.method),
            ("path", self.path),
            ("query", self.query),
            ("traceparent", self.traceparent),
            ("tracestate", self.tracestate),
        ];
        let mut parts = [0usize; 10];
        for (slot, (field, s)) in parts.iter_mut().zip(strs) {
            *slot = len_prefixed(field, s.len())?;
        }
        parts[6] = pairs_len("headers", &self.headers)?;
        parts[7] = pairs_len("params", &self.params)?;
        parts[8] = len_prefixed("body", self.body.len())?;
        parts[9] = REQUEST_HEAD;
        checked_sum("request", &parts)
    }

    /// Write the encoding into `out`, which must be exactly `encoded_len()` bytes long.
    ///
    /// # Panics
    /// When `out` is shorter than `encoded_len()`.
    pub fn encode_into(&self, out: &mut [u8]) {
        let mut w = Writer { buf: out, pos: 0 };
        w.put(&MAGIC);
        w.put(&[VERSION, KIND_REQUEST]);
        w.put(&self.budget_ms.to_le_bytes());
        w.put(&0u32.to_le_bytes());
        for s in [
            self.call_id,
            self.method,
            self.path,
            self.query,
            self.traceparent,
            self.tracestate,
        ] {
            w.str(s);
        }
        w.pairs(&self.headers);
        w.pairs(&self.params);
        w.len_bytes(self.body);
        debug_assert_eq!(w.pos, w.buf.len());
    }

    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = vec![0u8; self.encoded_len()?];
        self.encode_into(&mut out);
        Ok(out)
    }

    /// Decode, borrowing strings and body from `buf`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, EnvelopeError> {
        let mut r = Reader::new(buf);
        r.head(KIND_REQUEST)?;
        let budget_ms = r.u32("budget_ms")?;
        let _reserved_flags = r.u32("flags")?;
        let req = Self {
            call_id: r.str("call_id")?,
            method: r.str("method")?,
            path: r.str("path")?,
            query: r.str("query")?,
            traceparent: r.str("traceparent")?,
            tracestate: r.str("tracestate")?,
            headers: r.pairs("headers")?,
            params: r.pairs("params")?,
            body: r.bytes("body")?,
            budget_ms,
        };
        r.finish()?;
        Ok(req)
    }

    pub fn to_owned(&self) -> Request {
        Request {
            call_id: self.call_id.to_owned(),
            method: self.method.to_owned(),
            path: self.path.to_owned(),
            query: self.query.to_owned(),
            traceparent: self.traceparent.to_owned(),
            tracestate: self.tracestate.to_owned(),
            headers: own_pairs(&self.headers),
            params: own_pairs(&self.params),
            body: self.body.to_vec(),
            budget_ms: self.budget_ms,
        }
    }
}

impl<'a> ResponseRef<'a> {
    /// Exact size of the encoding; fails when a field is too long for the format.
    pub fn encoded_len(&self) -> Result<usize, EnvelopeError> {
        checked_sum(
            "response",
            &[
                RESPONSE_HEAD,
                len_prefixed("call_id", self.call_id.len())?,
                len_prefixed("error", self.error.len())?,
                pairs_len("headers", &self.headers)?,
                len_prefixed("body", self.body.len())?,
            ],
        )
    }

    /// Write the encoding into `out`, which must be exactly `encoded_len()` bytes long.
    ///
    /// # Panics
    /// When `out` is shorter than `encoded_len()`.
    pub fn encode_into(&self, out: &mut [u8]) {
        let mut w = Writer { buf: out, pos: 0 };
        w.put(&MAGIC);
        w.put(&[VERSION, KIND_RESPONSE]);
        w.put(&self.status.to_le_bytes());
        w.put(&[
            self.error_kind,
            if self.cold_start { FLAG_COLD_START } else { 0 },
        ]);
        w.put(&self.duration_ns.to_le_bytes());
        w.str(self.call_id);
        w.str(self.error);
        w.pairs(&self.headers);
        w.len_bytes(self.body);
        debug_assert_eq!(w.pos, w.buf.len());
    }

    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = vec![0u8; self.encoded_len()?];
        self.encode_into(&mut out);
        Ok(out)
    }

    /// Decode, borrowing strings and body from `buf`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, EnvelopeError> {
        let mut r = Reader::new(buf);
        r.head(KIND_RESPONSE)?;
        let status = r.u16("status")?;
        let error_kind = r.u8("error_kind")?;
        let flags = r.u8("flags")?;
        let resp = Self {
            status,
            error_kind,
            cold_start: flags & FLAG_COLD_START != 0,
            duration_ns: r.u64("duration_ns")?,
            call_id: r.str("call_id")?,
            error: r.str("error")?,
            headers: r.pairs("headers")?,
            body: r.bytes("body")?,
        };
        r.finish()?;
        Ok(resp)
    }

    pub fn to_owned(&self) -> Response {
        Response {
            status: self.status,
            error_kind: self.error_kind,
            cold_start: self.cold_start,
            duration_ns: self.duration_ns,
            call_id: self.call_id.to_owned(),
            error: self.error.to_owned(),
            headers: own_pairs(&self.headers),
            body: self.body.to_vec(),
        }
    }
}

impl Request {
    pub fn as_ref(&self) -> RequestRef<'_> {
        RequestRef {
            call_id: &self.call_id,
            method: &self.method,
            path: &self.path,
            query: &self.query,
            traceparent: &self.traceparent,
            tracestate: &self.tracestate,
            headers: borrow_pairs(&self.headers),
            params: borrow_pairs(&self.params),
            body: &self.body,
            budget_ms: self.budget_ms,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        self.as_ref().encode()
    }

    pub fn decode(buf: &[u8]) -> Result<Self, EnvelopeError> {
        RequestRef::decode(buf).map(|r| r.to_owned())
    }
}

impl Response {
    pub fn as_ref(&self) -> ResponseRef<'_> {
        ResponseRef {
            status: self.status,
            error_kind: self.error_kind,
            cold_start: self.cold_start,
            duration_ns: self.duration_ns,
            call_id: &self.call_id,
            error: &self.error,
            headers: borrow_pairs(&self.headers),
            body: &self.body,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        self.as_ref().encode()
    }

    pub fn decode(buf: &[u8]) -> Result<Self, EnvelopeError> {
        ResponseRef::decode(buf).map(|r| r.to_owned())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

/// A bounds-checked cursor: every read either succeeds inside `buf` or returns `Truncated`.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let start = self.pos;
        let end = start.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                self.pos = end;
                Ok(&self.buf[start..end])
            }
            None => Err(EnvelopeError::Truncated {
                field,
                offset: start,
            }),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EnvelopeError> {
        let bytes = self.take(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EnvelopeError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, EnvelopeError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, EnvelopeError> {
        self.array(field).map(u64::from_le_bytes)
    }

    fn head(&mut self, kind: u8) -> Result<(), EnvelopeError> {
        let magic = self.take("magic", 2).map_err(|_| {
            if self.buf.is_empty() || self.buf[..] == MAGIC[..1] {
                EnvelopeError::Truncated {
                    field: "magic",
                    offset: 0,
                }
            } else {
                EnvelopeError::BadMagic
            }
        })?;
        if magic != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        let version = self.u8("version")?;
        if version != VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        let found = self.u8("kind")?;
        if found != kind {
            return Err(EnvelopeError::WrongKind {
                expected: kind,
                found,
            });
        }
        Ok(())
    }

    /// A `bytes` field; a `Truncated` error points at its length prefix.
    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], EnvelopeError> {
        let offset = self.pos;
        let len = self.u32(field)?;
        // A u32 always fits the usize of the platforms we build for (32 and 64 bits).
        self.take(field, len as usize)
            .map_err(|_| EnvelopeError::Truncated { field, offset })
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, EnvelopeError> {
        let offset = self.pos;
        let bytes = self.bytes(field)?;
        std::str::from_utf8(bytes).map_err(|_| EnvelopeError::InvalidUtf8 { field, offset })
    }

    fn pairs(&mut self, field: &'static str) -> Result<Pairs<'a>, EnvelopeError> {
        let count = self.u32(field)? as usize;
        // Each pair takes at least 8 bytes, so a forged count cannot make us reserve more than the input size.
        let mut pairs = Vec::with_capacity(count.min((self.buf.len() - self.pos) / 8));
        for _ in 0..count {
            let name = self.str(field)?;
            let value = self.str(field)?;
            pairs.push((name, value));
        }
        Ok(pairs)
    }

    fn finish(&self) -> Result<(), EnvelopeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(EnvelopeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_request_is_fixed_size() {
        let req = RequestRef {
            method: "GET",
            path: "/",
            ..RequestRef::default()
        };
        let bytes = req.encode().unwrap();
        assert_eq!(bytes.len(), req.encoded_len().unwrap());
        assert_eq!(&bytes[..4], b"LF\x01\x01");
        assert_eq!(RequestRef::decode(&bytes).unwrap(), req);
    }

    #[test]
    fn reserved_flags_are_ignored() {
        let mut bytes = RequestRef::default().encode().unwrap();
        bytes[8] = 0xFF;
        assert!(RequestRef::decode(&bytes).is_ok());
    }

    #[test]
    fn forged_pair_count_does_not_preallocate() {
        let mut bytes = ResponseRef::default().encode().unwrap();
        let at = RESPONSE_HEAD + 8; // after call_id and error (both empty)
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            ResponseRef::decode(&bytes),
            Err(EnvelopeError::Truncated {
                field: "headers",
                ..
            })
        ));
    }
}
