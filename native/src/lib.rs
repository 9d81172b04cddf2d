//! `LiteFunctions` native core: the HTTP routing table, the call envelope codec and the NATS protocol codec.
//!
//! `routing`, `envelope` and `natsproto` are pure Rust (the Rust runtime uses them directly, and `cargo test`
//! needs no interpreter); `python` and `python_nats` are their pyo3 face, compiled with the `python` feature into
//! `lf_native._native`.

pub mod envelope;
pub mod natsproto;
pub mod routing;

#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_nats;

#[cfg(feature = "python")]
#[pyo3::pymodule(gil_used = false)]
fn _native(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    python::init_build_info(m)?;
    python::init_routing(m)?;
    python::init_envelope(m)?;
    python_nats::init_nats(m)?;
    python::init_aliases(m)?;
    python::drop_dunder_all(m)
}
