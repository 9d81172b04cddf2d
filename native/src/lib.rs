//! `LiteFunctions` native core: the HTTP routing table and the call envelope codec.
//!
//! `routing` and `envelope` are pure Rust (the Rust runtime uses them directly, and `cargo test` needs no
//! interpreter); `python` is their pyo3 face, compiled with the `python` feature into `lf_native._native`.

pub mod envelope;
pub mod routing;

#[cfg(feature = "python")]
mod python;

#[cfg(feature = "python")]
#[pyo3::pymodule(gil_used = false)]
fn _native(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    python::init_build_info(m)?;
    python::init_routing(m)?;
    python::init_envelope(m)?;
    python::init_aliases(m)?;
    python::drop_dunder_all(m)
}
