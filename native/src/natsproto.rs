//! The NATS client protocol, sans-IO: a streaming parser of what a server sends and builders of what a client
//! sends (<https://docs.nats.io/reference/reference-protocols/nats-protocol>).
//!
//! The parser is fed arbitrary byte chunks as they come off the socket (an op may be split anywhere, a chunk may
//! hold many ops) and hands each complete op to a callback, borrowing subject, payload and headers from the
//! chunk itself when the chunk holds whole ops (the common case: no copy), or from its own buffer when an op
//! straddles chunks. It keeps hard limits so a garbage stream fails fast instead of buffering without end: a
//! control line longer than `max_control_line` (INFO may be longer, up to `MAX_INFO_LINE`, as it lists cluster
//! URLs) and a message larger than the server's `max_payload` (from INFO; `DEFAULT_MAX_PAYLOAD` before it) are
//! protocol errors. After an error the connection is to be dropped: the parser's state is then undefined.
//!
//! Builders size their output exactly, then write it once, and refuse a subject, reply or header that would
//! inject protocol text (whitespace, CR, LF).

use std::fmt;

/// The NATS server's own default control-line limit.
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
/// INFO carries JSON that grows with the cluster (`connect_urls`), so it gets more room.
pub const MAX_INFO_LINE: usize = 64 * 1024;
/// The server default, assumed until INFO says otherwise.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// nats-server refuses a `max_payload` above 64 MiB; an INFO claiming more is clamped to it.
pub const MAX_MAX_PAYLOAD: usize = 64 * 1024 * 1024;
/// The status line of a header block.
pub const HEADER_VERSION: &[u8] = b"NATS/1.0";
/// The status of a "no responders" reply.
pub const STATUS_NO_RESPONDERS: u16 = 503;

/// Why a server stream or a value to encode is not valid NATS protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// A control line without CRLF within the limit.
    LineTooLong { limit: usize },
    /// An op name this client does not know (the first bytes of the line, lossily decoded).
    UnknownOp(String),
    /// Wrong number or form of arguments for `op`.
    BadArgs { op: &'static str },
    /// A message larger than the server's `max_payload`.
    PayloadTooLarge { size: usize, limit: usize },
    /// A message body not followed by CRLF.
    MissingTrailer,
    /// A header block that does not start with `NATS/1.0` or has a malformed line.
    BadHeaders,
    /// Text that must be UTF-8 (subject, INFO, -ERR) is not.
    InvalidUtf8 { op: &'static str },
    /// Encoding: a subject, reply or header that is empty where it may not be, or holds whitespace/CR/LF.
    BadToken { field: &'static str },
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong { limit } => write!(f, "control line longer than {limit} bytes"),
            Self::UnknownOp(op) => write!(f, "unknown protocol operation {op:?}"),
            Self::BadArgs { op } => write!(f, "malformed {op} arguments"),
            Self::PayloadTooLarge { size, limit } => {
                write!(f, "message of {size} bytes over max_payload {limit}")
            }
            Self::MissingTrailer => write!(f, "message payload not followed by CRLF"),
            Self::BadHeaders => write!(f, "malformed header block"),
            Self::InvalidUtf8 { op } => write!(f, "{op} text is not UTF-8"),
            Self::BadToken { field } => write!(f, "invalid {field}: empty or holds whitespace"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// One message (MSG or HMSG), borrowed from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    pub subject: &'a str,
    pub sid: u64,
    pub reply: Option<&'a str>,
    /// The raw header block (`NATS/1.0 ...\r\n...\r\n\r\n`) of an HMSG; `None` for MSG.
    pub headers: Option<&'a [u8]>,
    /// The status code on the header block's first line (503 = no responders); 0 when there is none.
    pub status: u16,
    pub payload: &'a [u8],
}

/// A server → client operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOp<'a> {
    /// The JSON object after `INFO`.
    Info(&'a str),
    Msg(Msg<'a>),
    Ping,
    Pong,
    Ok,
    /// The message of `-ERR 'message'`, without the quotes.
    Err(&'a str),
}

/// The limits a parser enforces; `max_payload` follows the server's INFO.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_control_line: usize,
    max_payload: usize,
}

/// A streaming parser of server → client ops. See the module docs.
#[derive(Debug)]
pub struct Parser {
    /// The start of an op that straddles chunks (empty between ops).
    buf: Vec<u8>,
    /// How many bytes `buf` must hold before parsing can progress (0: unknown, try on every chunk).
    need: usize,
    limits: Limits,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CONTROL_LINE)
    }
}

impl Parser {
    pub fn new(max_control_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            need: 0,
            limits: Limits {
                max_control_line,
                max_payload: DEFAULT_MAX_PAYLOAD,
            },
        }
    }

    /// The largest message accepted: the server's `max_payload` once INFO has been seen.
    pub fn max_payload(&self) -> usize {
        self.limits.max_payload
    }

    /// Bytes held back, waiting for the rest of an op.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Parse `data`, calling `on_op` for each complete op in order; keep an incomplete tail for the next call.
    ///
    /// An INFO op updates `max_payload` before the ops after it are parsed. The callback's error stops parsing
    /// and is returned (so a binding can pass its own error type through).
    pub fn feed<E, F>(&mut self, data: &[u8], mut on_op: F) -> Result<(), E>
    where
        E: From<ProtoError>,
        F: FnMut(ServerOp<'_>) -> Result<(), E>,
    {
        if self.buf.is_empty() {
            let (used, need) = parse_all(data, &mut self.limits, &mut on_op)?;
            self.buf.extend_from_slice(&data[used..]);
            self.need = need;
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() < self.need {
            return Ok(());
        }
        let (used, need) = parse_all(&self.buf, &mut self.limits, &mut on_op)?;
        self.buf.drain(..used);
        self.need = need;
        Ok(())
    }
}

/// Outcome of parsing at one position.
enum Step<'a> {
    /// An op and the bytes it took.
    Op(ServerOp<'a>, usize),
    /// Not enough bytes; the total the op needs, or 0 when not known yet.
    Incomplete(usize),
}

/// Parse every complete op in `data`: returns the bytes consumed and what the incomplete tail needs.
fn parse_all<E, F>(data: &[u8], limits: &mut Limits, on_op: &mut F) -> Result<(usize, usize), E>
where
    E: From<ProtoError>,
    F: FnMut(ServerOp<'_>) -> Result<(), E>,
{
    let mut pos = 0;
    while pos < data.len() {
        match parse_op(&data[pos..], limits)? {
            Step::Op(op, used) => {
                if let ServerOp::Info(json) = op {
                    if let Some(max) = info_max_payload(json) {
                        limits.max_payload = usize::try_from(max)
                            .unwrap_or(MAX_MAX_PAYLOAD)
                            .min(MAX_MAX_PAYLOAD);
                    }
                }
                on_op(op)?;
                pos += used;
            }
            Step::Incomplete(need) => return Ok((pos, need)),
        }
    }
    Ok((pos, 0))
}

fn parse_op<'a>(data: &'a [u8], limits: &Limits) -> Result<Step<'a>, ProtoError> {
    let is_info = data.len() >= 4 && data[..4].eq_ignore_ascii_case(b"INFO");
    let limit = if is_info {
        MAX_INFO_LINE
    } else {
        limits.max_control_line
    };
    let window = &data[..data.len().min(limit + 2)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        if data.len() > limit + 1 {
            return Err(ProtoError::LineTooLong { limit });
        }
        return Ok(Step::Incomplete(0));
    };
    let line = data[..nl].strip_suffix(b"\r").unwrap_or(&data[..nl]);
    let after = nl + 1;
    let (op, args) = split_op(line);
    let simple = |op| Ok(Step::Op(op, after));
    if op.eq_ignore_ascii_case(b"MSG") {
        parse_msg(data, after, args, limits, false)
    } else if op.eq_ignore_ascii_case(b"HMSG") {
        parse_msg(data, after, args, limits, true)
    } else if op.eq_ignore_ascii_case(b"PING") {
        simple(ServerOp::Ping)
    } else if op.eq_ignore_ascii_case(b"PONG") {
        simple(ServerOp::Pong)
    } else if op.eq_ignore_ascii_case(b"+OK") {
        simple(ServerOp::Ok)
    } else if op.eq_ignore_ascii_case(b"-ERR") {
        let text = utf8(trim(args), "-ERR")?;
        let text = text
            .strip_prefix('\'')
            .and_then(|t| t.strip_suffix('\''))
            .unwrap_or(text);
        simple(ServerOp::Err(text))
    } else if op.eq_ignore_ascii_case(b"INFO") {
        simple(ServerOp::Info(utf8(trim(args), "INFO")?))
    } else {
        let shown = &line[..line.len().min(16)];
        Err(ProtoError::UnknownOp(
            String::from_utf8_lossy(shown).into_owned(),
        ))
    }
}

/// MSG <subject> <sid> [reply] <size> / HMSG <subject> <sid> [reply] <hdr size> <total size>.
fn parse_msg<'a>(
    data: &'a [u8],
    body_at: usize,
    args: &'a [u8],
    limits: &Limits,
    with_headers: bool,
) -> Result<Step<'a>, ProtoError> {
    let op = if with_headers { "HMSG" } else { "MSG" };
    let bad = || ProtoError::BadArgs { op };
    let mut fields = [&b""[..]; 5];
    let mut n = 0;
    for field in args
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|f| !f.is_empty())
    {
        if n == fields.len() {
            return Err(bad());
        }
        fields[n] = field;
        n += 1;
    }
    let sizes = if with_headers { 2 } else { 1 };
    let reply = match n.checked_sub(sizes) {
        Some(2) => None,
        Some(3) => Some(utf8(fields[2], op)?),
        _ => return Err(bad()),
    };
    let subject = utf8(fields[0], op)?;
    let sid = parse_u64(fields[1]).ok_or_else(bad)?;
    let total = parse_size(fields[n - 1]).ok_or_else(bad)?;
    let header_len = if with_headers {
        let h = parse_size(fields[n - 2]).ok_or_else(bad)?;
        if h > total || h < HEADER_VERSION.len() {
            return Err(bad());
        }
        h
    } else {
        0
    };
    if total > limits.max_payload {
        return Err(ProtoError::PayloadTooLarge {
            size: total,
            limit: limits.max_payload,
        });
    }
    let end = body_at + total;
    if data.len() < end + 2 {
        return Ok(Step::Incomplete(end + 2));
    }
    if &data[end..end + 2] != b"\r\n" {
        return Err(ProtoError::MissingTrailer);
    }
    let body = &data[body_at..end];
    let (headers, status) = if with_headers {
        let block = &body[..header_len];
        (Some(block), header_status(block)?)
    } else {
        (None, 0)
    };
    Ok(Step::Op(
        ServerOp::Msg(Msg {
            subject,
            sid,
            reply,
            headers,
            status,
            payload: &body[header_len..],
        }),
        end + 2,
    ))
}

fn split_op(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[]),
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

fn utf8<'a>(s: &'a [u8], op: &'static str) -> Result<&'a str, ProtoError> {
    std::str::from_utf8(s).map_err(|_| ProtoError::InvalidUtf8 { op })
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn parse_size(s: &[u8]) -> Option<usize> {
    parse_u64(s).and_then(|n| usize::try_from(n).ok())
}

/// The status code of a header block (`NATS/1.0 503` → 503; `NATS/1.0` → 0), checking only its first line.
pub fn header_status(block: &[u8]) -> Result<u16, ProtoError> {
    let rest = block
        .strip_prefix(HEADER_VERSION)
        .ok_or(ProtoError::BadHeaders)?;
    let line_end = rest.iter().position(|&b| b == b'\r' || b == b'\n');
    let first = trim(&rest[..line_end.unwrap_or(rest.len())]);
    if first.is_empty() {
        return Ok(0);
    }
    let code = &first[..first.len().min(3)];
    if code.len() != 3 || (first.len() > 3 && !matches!(first[3], b' ' | b'\t')) {
        return Err(ProtoError::BadHeaders);
    }
    parse_u64(code)
        .and_then(|c| u16::try_from(c).ok())
        .ok_or(ProtoError::BadHeaders)
}

/// A parsed header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers<'a> {
    /// 0 when the status line has no code.
    pub status: u16,
    /// The text after the code (`NATS/1.0 408 Request Timeout` → "Request Timeout").
    pub description: &'a str,
    /// Header lines in order, repeats kept, names as sent, values trimmed.
    pub pairs: Vec<(&'a str, &'a str)>,
}

/// Parse a whole header block: status line, then `Name: value` lines up to the empty line.
pub fn parse_headers(block: &[u8]) -> Result<Headers<'_>, ProtoError> {
    let status = header_status(block)?;
    let text = std::str::from_utf8(block).map_err(|_| ProtoError::BadHeaders)?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("")[HEADER_VERSION.len()..].trim();
    let description = if status == 0 { "" } else { first[3..].trim() };
    let mut pairs = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(ProtoError::BadHeaders)?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(ProtoError::BadHeaders);
        }
        pairs.push((name, value.trim()));
    }
    Ok(Headers {
        status,
        description,
        pairs,
    })
}

/// `max_payload` from INFO's JSON: the number under that key at the top level of the object, if any.
///
/// A small scanner (strings and nesting skipped properly), so the core needs no JSON library: the client parses
/// the rest of INFO itself, once per connection.
pub fn info_max_payload(json: &str) -> Option<u64> {
    let b = json.as_bytes();
    let (mut i, mut depth) = (0, 0usize);
    let mut last_key_at_top: Option<(usize, usize)> = None;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i + 1;
                i = start;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if i >= b.len() {
                    return None;
                }
                last_key_at_top = (depth == 1).then_some((start, i));
            }
            b'{' | b'[' => {
                depth += 1;
                last_key_at_top = None;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                last_key_at_top = None;
            }
            b':' => {
                if let Some((s, e)) = last_key_at_top.take() {
                    if &b[s..e] == b"max_payload" {
                        let digits = b[i + 1..].trim_ascii_start();
                        let n = digits.iter().take_while(|d| d.is_ascii_digit()).count();
                        return parse_u64(&digits[..n]);
                    }
                }
            }
            b',' => last_key_at_top = None,
            _ => {}
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------------------------------
// Builders (client → server)

pub const PING: &[u8] = b"PING\r\n";
pub const PONG: &[u8] = b"PONG\r\n";

/// A subject, reply or queue group: non-empty, no whitespace or control characters.
fn check_token(s: &str, field: &'static str) -> Result<(), ProtoError> {
    if s.is_empty() || s.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ProtoError::BadToken { field });
    }
    Ok(())
}

/// Decimal digits of `n`, right-aligned in a stack buffer (a `u128` inbox token has up to 39).
struct Decimal {
    digits: [u8; 39],
    start: usize,
}

/// 10^19: the largest power of ten in a `u64`.
const TEN_19: u64 = 10_000_000_000_000_000_000;

impl Decimal {
    fn new(n: u64) -> Self {
        let mut d = Self {
            digits: [0u8; 39],
            start: 39,
        };
        d.push(n, 1);
        d
    }

    /// A `u128`: 19 digits at a time split off by 128-bit division (at most twice), each chunk then written with
    /// `u64` arithmetic (a 128-bit division per digit would be a library call each).
    fn wide(mut n: u128) -> Self {
        let mut d = Self {
            digits: [0u8; 39],
            start: 39,
        };
        while u64::try_from(n).is_err() {
            let chunk = u64::try_from(n % u128::from(TEN_19)).unwrap_or(0);
            d.push(chunk, 19);
            n /= u128::from(TEN_19);
        }
        d.push(u64::try_from(n).unwrap_or(0), 1);
        d
    }

    /// Prepend the digits of `n`, zero-padded to at least `width`.
    fn push(&mut self, mut n: u64, width: usize) {
        let end = self.start;
        loop {
            self.start -= 1;
            self.digits[self.start] = b'0' + u8::try_from(n % 10).unwrap_or(0);
            n /= 10;
            if n == 0 && end - self.start >= width {
                break;
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

/// Writes into an exactly sized buffer.
struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
}

/// A PUB (or HPUB, when `headers` is given) of a message.
///
/// The reply subject is `reply`, followed by the decimal `reply_token` when one is given: a request to an inbox
/// (`_INBOX.abc.` + 42) is built without formatting a string first. The token is a `u128` because a client's
/// tokens must be unguessable (random, at least 96 bits): whoever answers a request sees its reply subject and
/// could otherwise aim a forged reply at the next one.
#[derive(Debug, Clone, Copy)]
pub struct Pub<'a> {
    pub subject: &'a str,
    pub reply: &'a str,
    pub reply_token: Option<u128>,
    pub headers: Option<&'a [(&'a str, &'a str)]>,
    pub payload: &'a [u8],
}

impl<'a> Pub<'a> {
    pub fn new(subject: &'a str, payload: &'a [u8]) -> Self {
        Self {
            subject,
            reply: "",
            reply_token: None,
            headers: None,
            payload,
        }
    }

    fn header_block_len(&self) -> Result<usize, ProtoError> {
        let Some(pairs) = self.headers else {
            return Ok(0);
        };
        let mut len = HEADER_VERSION.len() + 4;
        for (name, value) in pairs {
            check_token(name, "header name")?;
            if name.contains(':') {
                return Err(ProtoError::BadToken {
                    field: "header name",
                });
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(ProtoError::BadToken {
                    field: "header value",
                });
            }
            len += name.len() + 2 + value.len() + 2;
        }
        Ok(len)
    }

    /// The exact encoded size; checks subject, reply and headers.
    pub fn encoded_len(&self) -> Result<usize, ProtoError> {
        check_token(self.subject, "subject")?;
        let token = self.reply_token.map(Decimal::wide);
        let token_len = token.as_ref().map_or(0, |d| d.as_bytes().len());
        let reply_len = self.reply.len() + token_len;
        if reply_len > 0 {
            if self.reply.is_empty() {
                return Err(ProtoError::BadToken { field: "reply" });
            }
            check_token(self.reply, "reply")?;
        }
        let headers = self.header_block_len()?;
        let total = headers + self.payload.len();
        let mut len = if self.headers.is_some() { 5 } else { 4 } + self.subject.len() + 1;
        if reply_len > 0 {
            len += reply_len + 1;
        }
        if self.headers.is_some() {
            len += Decimal::new(headers as u64).as_bytes().len() + 1;
        }
        len += Decimal::new(total as u64).as_bytes().len() + 2 + total + 2;
        Ok(len)
    }

    /// Write into `out`, which must be exactly `encoded_len()` long (call that first: it validates).
    pub fn encode_into(&self, out: &mut [u8]) {
        let mut o = Out { buf: out, pos: 0 };
        let headers = self.header_block_len().unwrap_or(0);
        o.put(if self.headers.is_some() {
            b"HPUB "
        } else {
            b"PUB "
        });
        o.put(self.subject.as_bytes());
        o.put(b" ");
        if !self.reply.is_empty() {
            o.put(self.reply.as_bytes());
            if let Some(t) = self.reply_token {
                o.put(Decimal::wide(t).as_bytes());
            }
            o.put(b" ");
        }
        if self.headers.is_some() {
            o.put(Decimal::new(headers as u64).as_bytes());
            o.put(b" ");
        }
        o.put(Decimal::new((headers + self.payload.len()) as u64).as_bytes());
        o.put(b"\r\n");
        if let Some(pairs) = self.headers {
            o.put(HEADER_VERSION);
            o.put(b"\r\n");
            for (name, value) in pairs {
                o.put(name.as_bytes());
                o.put(b": ");
                o.put(value.as_bytes());
                o.put(b"\r\n");
            }
            o.put(b"\r\n");
        }
        o.put(self.payload);
        o.put(b"\r\n");
        debug_assert_eq!(o.pos, o.buf.len());
    }

    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let mut out = vec![0; self.encoded_len()?];
        self.encode_into(&mut out);
        Ok(out)
    }
}

/// `CONNECT {json}\r\n`; the JSON (built by the caller) must be one line.
pub fn encode_connect(options_json: &str) -> Result<Vec<u8>, ProtoError> {
    if options_json.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(ProtoError::BadToken {
            field: "CONNECT options",
        });
    }
    Ok([b"CONNECT ", options_json.as_bytes(), b"\r\n"].concat())
}

/// `SUB <subject> [queue] <sid>\r\n`.
pub fn encode_sub(subject: &str, queue: Option<&str>, sid: u64) -> Result<Vec<u8>, ProtoError> {
    check_token(subject, "subject")?;
    let mut out = [b"SUB ", subject.as_bytes(), b" "].concat();
    if let Some(q) = queue {
        check_token(q, "queue group")?;
        out.extend_from_slice(q.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(Decimal::new(sid).as_bytes());
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// `UNSUB <sid> [max_msgs]\r\n`.
pub fn encode_unsub(sid: u64, max_msgs: Option<u64>) -> Vec<u8> {
    let mut out = [b"UNSUB ", Decimal::new(sid).as_bytes()].concat();
    if let Some(m) = max_msgs {
        out.push(b' ');
        out.extend_from_slice(Decimal::new(m).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(parser: &mut Parser, data: &[u8]) -> Result<Vec<String>, ProtoError> {
        let mut out = Vec::new();
        parser.feed(data, |op| {
            out.push(format!("{op:?}"));
            Ok::<(), ProtoError>(())
        })?;
        Ok(out)
    }

    #[test]
    fn decimal_digits() {
        assert_eq!(Decimal::new(0).as_bytes(), b"0");
        assert_eq!(Decimal::new(42).as_bytes(), b"42");
        assert_eq!(
            Decimal::new(u64::MAX).as_bytes(),
            u64::MAX.to_string().as_bytes()
        );
        for n in [
            0,
            9,
            u128::from(u64::MAX),
            u128::from(u64::MAX) + 1,
            u128::from(TEN_19),
            u128::from(TEN_19) * u128::from(TEN_19),
            u128::from(TEN_19) * u128::from(TEN_19) - 1,
            u128::from(TEN_19) * u128::from(TEN_19) + 7,
            (1 << 96) - 1,
            u128::MAX,
        ] {
            assert_eq!(Decimal::wide(n).as_bytes(), n.to_string().as_bytes(), "{n}");
        }
    }

    #[test]
    fn pub_with_token_reply() {
        let p = Pub {
            reply: "_INBOX.ab.",
            reply_token: Some(17),
            ..Pub::new("lf.invoke.default.hello", b"hi")
        };
        assert_eq!(
            p.encode().unwrap(),
            b"PUB lf.invoke.default.hello _INBOX.ab.17 2\r\nhi\r\n"
        );
    }

    #[test]
    fn status_line() {
        assert_eq!(header_status(b"NATS/1.0 503\r\n\r\n"), Ok(503));
        assert_eq!(header_status(b"NATS/1.0\r\nA: b\r\n\r\n"), Ok(0));
        assert_eq!(
            header_status(b"NATS/1.0 408 Request Timeout\r\n\r\n"),
            Ok(408)
        );
        assert_eq!(
            header_status(b"HTTP/1.1 200\r\n\r\n"),
            Err(ProtoError::BadHeaders)
        );
        assert_eq!(
            header_status(b"NATS/1.0 5x3\r\n\r\n"),
            Err(ProtoError::BadHeaders)
        );
        assert_eq!(
            header_status(b"NATS/1.0 5030\r\n\r\n"),
            Err(ProtoError::BadHeaders)
        );
    }

    #[test]
    fn info_scanner_reads_top_level_key_only() {
        assert_eq!(
            info_max_payload(r#"{"max_payload":8388608}"#),
            Some(8_388_608)
        );
        assert_eq!(
            info_max_payload(r#"{"a":{"max_payload":1},"s":"max_payload","max_payload" : 5}"#),
            Some(5)
        );
        assert_eq!(info_max_payload(r#"{"x":"\"max_payload\":3"}"#), None);
        assert_eq!(info_max_payload(r#"{"max_payload":"#), None);
    }

    #[test]
    fn info_raises_the_payload_limit_for_later_ops() {
        let mut p = Parser::default();
        let big = DEFAULT_MAX_PAYLOAD + 1;
        let data = format!("INFO {{\"max_payload\":8388608}}\r\nMSG a 1 {big}\r\n");
        assert_eq!(ops(&mut p, data.as_bytes()).unwrap().len(), 1);
        assert_eq!(p.max_payload(), 8_388_608);
        assert_eq!(p.buffered(), format!("MSG a 1 {big}\r\n").len());
    }

    #[test]
    fn waits_for_the_whole_payload_without_reparsing() {
        let mut p = Parser::default();
        assert!(ops(&mut p, b"MSG a 1 10\r\n0123").unwrap().is_empty());
        assert_eq!(p.need, b"MSG a 1 10\r\n0123456789\r\n".len());
        assert!(ops(&mut p, b"45").unwrap().is_empty());
        assert_eq!(ops(&mut p, b"6789\r\n").unwrap().len(), 1);
        assert_eq!(p.buffered(), 0);
    }
}
