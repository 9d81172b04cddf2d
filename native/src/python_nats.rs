//! The Python face of `natsproto`, shaped for the ingestor's hot path (one reply per call on one inbox).
//!
//! `NatsParser.feed(chunk)` returns one flat tuple per op, `(kind, sid, key, reply, payload, status, headers)`.
//! A message on the parser's inbox (`<inbox prefix><decimal token>`) comes back as kind `REPLY` with the token as
//! an `int` below 2**128 (the client's dict key: no subject string is built, an int hashes for free); any other message as
//! kind `MSG` with its subject. Absent parts are `None` (no object built), headers stay raw bytes (parsed only on
//! demand by `parse_nats_headers`), and the status code of the header block's first line is read natively
//! (503 = no responders). So a plain reply costs a tuple, an int and the payload bytes.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::natsproto::{self, Msg, ProtoError, Pub, ServerOp};
use crate::python::{borrow_pairs, collect_tuples};

create_exception!(
    _native,
    NatsProtocolError,
    PyValueError,
    "The server sent bytes that are not NATS protocol (or over a limit), or a value cannot be encoded as such."
);

/// Carries either a protocol error or a Python error out of the parser's callback.
enum FeedError {
    Proto(ProtoError),
    Py(PyErr),
}

impl From<ProtoError> for FeedError {
    fn from(e: ProtoError) -> Self {
        Self::Proto(e)
    }
}

impl From<FeedError> for PyErr {
    fn from(e: FeedError) -> Self {
        match e {
            FeedError::Proto(p) => proto_err(&p),
            FeedError::Py(e) => e,
        }
    }
}

fn proto_err(e: &ProtoError) -> PyErr {
    NatsProtocolError::new_err(e.to_string())
}

const REPLY: u8 = 0;
const MSG: u8 = 1;
const PING: u8 = 2;
const PONG: u8 = 3;
const INFO: u8 = 4;
const OK: u8 = 5;
const ERR: u8 = 6;

/// A streaming parser of server → client NATS ops for one connection (make a new one per connection).
#[pyclass(module = "lf_native._native")]
pub struct NatsParser {
    parser: natsproto::Parser,
    inbox_prefix: Vec<u8>,
}

#[pymethods]
impl NatsParser {
    #[new]
    #[pyo3(
        signature = (inbox_prefix = "", max_control_line = natsproto::DEFAULT_MAX_CONTROL_LINE),
        text_signature = "(inbox_prefix='', max_control_line=4096)"
    )]
    fn new(inbox_prefix: &str, max_control_line: usize) -> Self {
        Self {
            parser: natsproto::Parser::new(max_control_line),
            inbox_prefix: inbox_prefix.as_bytes().to_vec(),
        }
    }

    #[classattr]
    const REPLY: u8 = REPLY;
    #[classattr]
    const MSG: u8 = MSG;
    #[classattr]
    const PING: u8 = PING;
    #[classattr]
    const PONG: u8 = PONG;
    #[classattr]
    const INFO: u8 = INFO;
    #[classattr]
    const OK: u8 = OK;
    #[classattr]
    const ERR: u8 = ERR;

    /// The server's `max_payload` once INFO was parsed (1 MiB before).
    #[getter]
    fn max_payload(&self) -> usize {
        self.parser.max_payload()
    }

    /// Bytes held back waiting for the rest of an op.
    #[getter]
    fn buffered(&self) -> usize {
        self.parser.buffered()
    }

    /// Parse a chunk; return the complete ops in it (see the module docs for the tuple).
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        let prefix = &self.inbox_prefix;
        self.parser.feed(data, |op| {
            let item = op_tuple(py, prefix, &op).map_err(FeedError::Py)?;
            out.append(item).map_err(FeedError::Py)
        })?;
        Ok(out)
    }
}

/// The token of a subject `<prefix><decimal token>`: up to 39 digits, at most `u128::MAX` (a client draws its
/// tokens at random, 96 bits or more, so a replica that sees one reply subject cannot aim at another).
fn inbox_token(prefix: &[u8], subject: &str) -> Option<u128> {
    if prefix.is_empty() {
        return None;
    }
    let rest = subject.as_bytes().strip_prefix(prefix)?;
    if rest.is_empty() || rest.len() > 39 {
        return None;
    }
    rest.iter().try_fold(0u128, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u128::from(d - b'0'))
        } else {
            None
        }
    })
}

fn op_tuple<'py>(
    py: Python<'py>,
    prefix: &[u8],
    op: &ServerOp<'_>,
) -> PyResult<Bound<'py, PyTuple>> {
    let none = || py.None().into_bound(py);
    let simple = |kind: u8, key: Bound<'py, PyAny>| {
        PyTuple::new(
            py,
            [
                kind.into_pyobject(py)?.into_any(),
                0u8.into_pyobject(py)?.into_any(),
                key,
                none(),
                none(),
                0u8.into_pyobject(py)?.into_any(),
                none(),
            ],
        )
    };
    match *op {
        ServerOp::Msg(ref m) => msg_tuple(py, prefix, m),
        ServerOp::Ping => simple(PING, none()),
        ServerOp::Pong => simple(PONG, none()),
        ServerOp::Ok => simple(OK, none()),
        ServerOp::Info(json) => simple(INFO, PyString::new(py, json).into_any()),
        ServerOp::Err(text) => simple(ERR, PyString::new(py, text).into_any()),
    }
}

fn msg_tuple<'py>(py: Python<'py>, prefix: &[u8], m: &Msg<'_>) -> PyResult<Bound<'py, PyTuple>> {
    let (kind, key) = match inbox_token(prefix, m.subject) {
        Some(token) => (REPLY, token.into_pyobject(py)?.into_any()),
        None => (MSG, PyString::new(py, m.subject).into_any()),
    };
    let reply = match m.reply {
        Some(r) => PyString::new(py, r).into_any(),
        None => py.None().into_bound(py),
    };
    let headers = match m.headers {
        Some(h) => PyBytes::new(py, h).into_any(),
        None => py.None().into_bound(py),
    };
    PyTuple::new(
        py,
        [
            kind.into_pyobject(py)?.into_any(),
            m.sid.into_pyobject(py)?.into_any(),
            key,
            reply,
            PyBytes::new(py, m.payload).into_any(),
            m.status.into_pyobject(py)?.into_any(),
            headers,
        ],
    )
}

fn pub_bytes<'py>(py: Python<'py>, p: &Pub<'_>) -> PyResult<Bound<'py, PyBytes>> {
    let len = p.encoded_len().map_err(|e| proto_err(&e))?;
    PyBytes::new_with(py, len, |out| {
        p.encode_into(out);
        Ok(())
    })
}

/// `PUB <subject> [reply] <size>` with the payload; `reply` "" means none.
#[pyfunction]
#[pyo3(signature = (subject, reply, payload))]
fn encode_pub<'py>(
    py: Python<'py>,
    subject: &str,
    reply: &str,
    payload: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let p = Pub {
        reply,
        ..Pub::new(subject, payload)
    };
    pub_bytes(py, &p)
}

/// A request to an inbox: `PUB <subject> <inbox_prefix><token> <size>` with the payload (`token` < 2**128).
#[pyfunction]
fn encode_inbox_pub<'py>(
    py: Python<'py>,
    subject: &str,
    inbox_prefix: &str,
    token: u128,
    payload: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let p = Pub {
        reply: inbox_prefix,
        reply_token: Some(token),
        ..Pub::new(subject, payload)
    };
    pub_bytes(py, &p)
}

/// `HPUB <subject> [reply] <header size> <total size>` with a `NATS/1.0` header block and the payload.
#[pyfunction]
fn encode_hpub<'py>(
    py: Python<'py>,
    subject: &str,
    reply: &str,
    headers: &Bound<'py, PyAny>,
    payload: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let tuples = collect_tuples(headers, "headers")?;
    let pairs = borrow_pairs(&tuples, "headers")?;
    let p = Pub {
        reply,
        headers: Some(&pairs),
        ..Pub::new(subject, payload)
    };
    pub_bytes(py, &p)
}

/// `SUB <subject> [queue] <sid>`; `queue` "" means none.
#[pyfunction]
#[pyo3(signature = (subject, sid, queue = ""))]
fn encode_sub<'py>(
    py: Python<'py>,
    subject: &str,
    sid: u64,
    queue: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let queue = (!queue.is_empty()).then_some(queue);
    let out = natsproto::encode_sub(subject, queue, sid).map_err(|e| proto_err(&e))?;
    Ok(PyBytes::new(py, &out))
}

/// `UNSUB <sid> [max_msgs]`; `max_msgs` 0 means none.
#[pyfunction]
#[pyo3(signature = (sid, max_msgs = 0))]
fn encode_unsub(py: Python<'_>, sid: u64, max_msgs: u64) -> Bound<'_, PyBytes> {
    let max = (max_msgs > 0).then_some(max_msgs);
    PyBytes::new(py, &natsproto::encode_unsub(sid, max))
}

/// `CONNECT <options_json>`; the JSON must be one line.
#[pyfunction]
fn encode_connect<'py>(py: Python<'py>, options_json: &str) -> PyResult<Bound<'py, PyBytes>> {
    let out = natsproto::encode_connect(options_json).map_err(|e| proto_err(&e))?;
    Ok(PyBytes::new(py, &out))
}

/// `(status, description, headers)` of a raw header block from `NatsParser.feed`.
#[pyfunction]
fn parse_nats_headers<'py>(
    py: Python<'py>,
    block: &[u8],
) -> PyResult<(u16, Bound<'py, PyString>, Bound<'py, PyList>)> {
    let h = natsproto::parse_headers(block).map_err(|e| proto_err(&e))?;
    let pairs = PyList::empty(py);
    for (n, v) in &h.pairs {
        pairs.append((PyString::new(py, n), PyString::new(py, v)))?;
    }
    Ok((h.status, PyString::new(py, h.description), pairs))
}

pub fn init_nats(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("NatsProtocolError", py.get_type::<NatsProtocolError>())?;
    m.add_class::<NatsParser>()?;
    m.add_function(wrap_pyfunction!(encode_pub, m)?)?;
    m.add_function(wrap_pyfunction!(encode_inbox_pub, m)?)?;
    m.add_function(wrap_pyfunction!(encode_hpub, m)?)?;
    m.add_function(wrap_pyfunction!(encode_sub, m)?)?;
    m.add_function(wrap_pyfunction!(encode_unsub, m)?)?;
    m.add_function(wrap_pyfunction!(encode_connect, m)?)?;
    m.add_function(wrap_pyfunction!(parse_nats_headers, m)?)
}
