//! The cross-runtime facts (`native/vectors/facts.json`: error kinds, runtime margin, duration buckets, call
//! outcomes), which the tests compare with this runtime's constants.

use serde_json::Value;

pub fn read() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../native/vectors/facts.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}
