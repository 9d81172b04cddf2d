//! The Python face (`lf_native._native`): thin wrappers over `routing` and `envelope`, and error mapping.
//!
//! Strings are read from Python as borrowed `&str` (no copy for the UTF-8 Python already caches) and written once,
//! straight into the `bytes` object that is returned. Decoded envelopes build their Python objects once; the
//! attribute getters hand out new references to them.

use pyo3::create_exception;
use pyo3::exceptions::{PyLookupError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::envelope::{self, Pairs, RequestRef, ResponseRef};
use crate::routing::{self, FunctionEntry, LookupError, RouteEntry};

create_exception!(
    _native,
    RouteNotFound,
    PyLookupError,
    "No route matches the host and path."
);
create_exception!(
    _native,
    MethodNotAllowed,
    RouteNotFound,
    "A route matches the path, but not the method. `args[1]` is the list of allowed methods."
);
create_exception!(
    _native,
    EnvelopeError,
    PyValueError,
    "The bytes are not a well-formed envelope of a version this build reads."
);

fn envelope_err(err: &envelope::EnvelopeError) -> PyErr {
    EnvelopeError::new_err(err.to_string())
}

// -------------------------------------------------------------------------------------------------------------
// Routing

/// An immutable routing table, built once from plain Python data and swapped as a whole when routes change.
#[pyclass(frozen, module = "lf_native._native")]
pub struct RoutingTable {
    table: routing::RoutingTable<usize>,
    targets: Vec<Py<PyAny>>,
}

#[pymethods]
impl RoutingTable {
    /// Validate and compile. Raises `ValueError` naming the first bad entry (bad pattern, duplicate route).
    #[staticmethod]
    #[pyo3(signature = (functions, routes = None), text_signature = "(functions, routes=())")]
    fn build(
        py: Python<'_>,
        functions: &Bound<'_, PyAny>,
        routes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let functions: Vec<(String, String, Py<PyAny>)> = extract_entries(functions, "functions")?;
        let routes: Vec<(String, String, String, Py<PyAny>)> = match routes {
            Some(r) => extract_entries(r, "routes")?,
            None => Vec::new(),
        };
        let mut targets = Vec::with_capacity(functions.len() + routes.len());
        let mut fn_entries = Vec::with_capacity(functions.len());
        for (namespace, name, target) in &functions {
            fn_entries.push(FunctionEntry {
                namespace,
                name,
                target: targets.len(),
            });
            targets.push(target.clone_ref(py));
        }
        let mut route_entries = Vec::with_capacity(routes.len());
        for (methods, host, pattern, target) in &routes {
            route_entries.push(RouteEntry {
                methods,
                host,
                pattern,
                target: targets.len(),
            });
            targets.push(target.clone_ref(py));
        }
        let table = routing::RoutingTable::build(fn_entries, route_entries)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self { table, targets })
    }

    /// Return `(target, rest, params)`; raises `RouteNotFound` or `MethodNotAllowed`.
    fn lookup<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        host: &str,
        path: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let path_str = path.to_str()?;
        match self.table.lookup(method, host, path_str) {
            Ok(m) => {
                let target = self.targets[*m.target].bind(py).clone();
                // A route's `rest` is the whole path: hand back the caller's own string object.
                let rest = if m.rest.len() == path_str.len() {
                    path.clone()
                } else {
                    PyString::new(py, m.rest)
                };
                let params = PyList::empty(py);
                for (name, value) in m.params() {
                    params.append((name, value))?;
                }
                PyTuple::new(py, [target, rest.into_any(), params.into_any()])
            }
            Err(LookupError::NotFound) => Err(RouteNotFound::new_err(format!(
                "no route for {method} {host}{path_str}"
            ))),
            Err(LookupError::MethodNotAllowed(allowed)) => Err(MethodNotAllowed::new_err((
                format!(
                    "method {method} not allowed for {host}{path_str} (allowed: {})",
                    allowed.join(", ")
                ),
                allowed,
            ))),
        }
    }

    fn __len__(&self) -> usize {
        self.table.len()
    }
}

fn extract_entries<T>(seq: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<T>>
where
    T: for<'a, 'py> FromPyObject<'a, 'py>,
{
    let mut out = Vec::new();
    for (i, item) in seq.try_iter()?.enumerate() {
        let item = item?;
        out.push(item.extract::<T>().map_err(|e| {
            let e: PyErr = e.into();
            pyo3::exceptions::PyTypeError::new_err(format!("{what}[{i}]: {e}"))
        })?);
    }
    Ok(out)
}

// -------------------------------------------------------------------------------------------------------------
// Envelopes

/// A decoded request envelope.
#[pyclass(frozen, module = "lf_native._native")]
pub struct RequestEnvelope {
    #[pyo3(get)]
    call_id: Py<PyString>,
    #[pyo3(get)]
    method: Py<PyString>,
    #[pyo3(get)]
    path: Py<PyString>,
    #[pyo3(get)]
    query: Py<PyString>,
    #[pyo3(get)]
    headers: Py<PyList>,
    #[pyo3(get)]
    params: Py<PyList>,
    #[pyo3(get)]
    body: Py<PyBytes>,
    #[pyo3(get)]
    budget_ms: u32,
    #[pyo3(get)]
    traceparent: Py<PyString>,
    #[pyo3(get)]
    tracestate: Py<PyString>,
}

/// A decoded response envelope.
#[pyclass(frozen, module = "lf_native._native")]
pub struct ResponseEnvelope {
    #[pyo3(get)]
    status: u16,
    #[pyo3(get)]
    error_kind: u8,
    #[pyo3(get)]
    cold_start: bool,
    #[pyo3(get)]
    duration_ns: u64,
    #[pyo3(get)]
    call_id: Py<PyString>,
    #[pyo3(get)]
    error: Py<PyString>,
    #[pyo3(get)]
    headers: Py<PyList>,
    #[pyo3(get)]
    body: Py<PyBytes>,
}

/// Keeps the `(name, value)` tuples alive while their strings are borrowed.
pub(crate) fn collect_tuples<'py>(
    seq: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<Vec<Bound<'py, PyTuple>>> {
    let mut out = Vec::with_capacity(seq.len().unwrap_or(0));
    for item in seq.try_iter()? {
        let item = item?;
        match item.cast_into::<PyTuple>() {
            Ok(t) if t.len() == 2 => out.push(t),
            _ => {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "{what}[{}]: expected a (name, value) tuple of str",
                    out.len()
                )))
            }
        }
    }
    Ok(out)
}

pub(crate) fn borrow_pairs<'a>(
    tuples: &'a [Bound<'_, PyTuple>],
    what: &str,
) -> PyResult<Pairs<'a>> {
    let mut pairs = Vec::with_capacity(tuples.len());
    for (i, t) in tuples.iter().enumerate() {
        let name = t.get_borrowed_item(0)?.extract::<&str>();
        let value = t.get_borrowed_item(1)?.extract::<&str>();
        match (name, value) {
            (Ok(n), Ok(v)) => pairs.push((n, v)),
            _ => {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "{what}[{i}]: expected a (name, value) tuple of str"
                )))
            }
        }
    }
    Ok(pairs)
}

fn pairs_to_list<'py>(py: Python<'py>, pairs: &[(&str, &str)]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(
        py,
        pairs
            .iter()
            .map(|&(n, v)| PyTuple::new(py, [PyString::new(py, n), PyString::new(py, v)]))
            .collect::<PyResult<Vec<_>>>()?,
    )
}

fn s(py: Python<'_>, v: &str) -> Py<PyString> {
    PyString::new(py, v).unbind()
}

/// Encode a request envelope.
#[pyfunction]
#[pyo3(
    signature = (call_id, method, path, query, headers, body, budget_ms, params = None, traceparent = "", tracestate = ""),
    text_signature = "(call_id, method, path, query, headers, body, budget_ms, params=(), traceparent='', tracestate='')"
)]
#[allow(clippy::too_many_arguments)]
fn encode_request<'py>(
    py: Python<'py>,
    call_id: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &Bound<'py, PyAny>,
    body: &[u8],
    budget_ms: u32,
    params: Option<&Bound<'py, PyAny>>,
    traceparent: &str,
    tracestate: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let header_tuples = collect_tuples(headers, "headers")?;
    let param_tuples = match params {
        Some(p) => collect_tuples(p, "params")?,
        None => Vec::new(),
    };
    let req = RequestRef {
        call_id,
        method,
        path,
        query,
        traceparent,
        tracestate,
        headers: borrow_pairs(&header_tuples, "headers")?,
        params: borrow_pairs(&param_tuples, "params")?,
        body,
        budget_ms,
    };
    let len = req.encoded_len().map_err(|e| envelope_err(&e))?;
    PyBytes::new_with(py, len, |out| {
        req.encode_into(out);
        Ok(())
    })
}

/// Decode a request envelope; raises `EnvelopeError`.
#[pyfunction]
fn decode_request(py: Python<'_>, data: &[u8]) -> PyResult<RequestEnvelope> {
    let r = RequestRef::decode(data).map_err(|e| envelope_err(&e))?;
    Ok(RequestEnvelope {
        call_id: s(py, r.call_id),
        method: s(py, r.method),
        path: s(py, r.path),
        query: s(py, r.query),
        headers: pairs_to_list(py, &r.headers)?.unbind(),
        params: pairs_to_list(py, &r.params)?.unbind(),
        body: PyBytes::new(py, r.body).unbind(),
        budget_ms: r.budget_ms,
        traceparent: s(py, r.traceparent),
        tracestate: s(py, r.tracestate),
    })
}

/// Encode a response envelope.
#[pyfunction]
#[pyo3(signature = (status, headers, body, call_id = "", error_kind = 0, error = "", duration_ns = 0, cold_start = false))]
#[allow(clippy::too_many_arguments)]
fn encode_response<'py>(
    py: Python<'py>,
    status: u16,
    headers: &Bound<'py, PyAny>,
    body: &[u8],
    call_id: &str,
    error_kind: u8,
    error: &str,
    duration_ns: u64,
    cold_start: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let header_tuples = collect_tuples(headers, "headers")?;
    let resp = ResponseRef {
        status,
        error_kind,
        cold_start,
        duration_ns,
        call_id,
        error,
        headers: borrow_pairs(&header_tuples, "headers")?,
        body,
    };
    let len = resp.encoded_len().map_err(|e| envelope_err(&e))?;
    PyBytes::new_with(py, len, |out| {
        resp.encode_into(out);
        Ok(())
    })
}

/// Decode a response envelope; raises `EnvelopeError`.
#[pyfunction]
fn decode_response(py: Python<'_>, data: &[u8]) -> PyResult<ResponseEnvelope> {
    let r = ResponseRef::decode(data).map_err(|e| envelope_err(&e))?;
    Ok(ResponseEnvelope {
        status: r.status,
        error_kind: r.error_kind,
        cold_start: r.cold_start,
        duration_ns: r.duration_ns,
        call_id: s(py, r.call_id),
        error: s(py, r.error),
        headers: pairs_to_list(py, &r.headers)?.unbind(),
        body: PyBytes::new(py, r.body).unbind(),
    })
}

// -------------------------------------------------------------------------------------------------------------
// Registration

pub fn init_routing(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RouteNotFound", py.get_type::<RouteNotFound>())?;
    m.add("MethodNotAllowed", py.get_type::<MethodNotAllowed>())?;
    m.add_class::<RoutingTable>()
}

pub fn init_envelope(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ENVELOPE_VERSION", envelope::VERSION)?;
    m.add("EnvelopeError", py.get_type::<EnvelopeError>())?;
    m.add_class::<RequestEnvelope>()?;
    m.add_class::<ResponseEnvelope>()?;
    m.add_function(wrap_pyfunction!(encode_request, m)?)?;
    m.add_function(wrap_pyfunction!(decode_request, m)?)?;
    m.add_function(wrap_pyfunction!(encode_response, m)?)?;
    m.add_function(wrap_pyfunction!(decode_response, m)?)
}

pub fn init_build_info(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "build_profile",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    )
}

/// Runtime twins of the stub's type aliases, so `lf_native._native.Header` exists as the stub says.
pub fn init_aliases(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let generic_alias = py.import("types")?.getattr("GenericAlias")?;
    let str_type = py.get_type::<PyString>();
    let header = generic_alias.call1((py.get_type::<PyTuple>(), (&str_type, &str_type)))?;
    m.add("Header", header)
}

/// pyo3 fills `__all__` as items are added; the public list is `lf_native.__all__`, and the stub (checked by
/// stubtest) has none, so the private module keeps none either.
pub fn drop_dunder_all(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.delattr("__all__")
}
