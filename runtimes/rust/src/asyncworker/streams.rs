//! Names and definitions of `lf_core.asynccalls.streams`: the streams, buckets and consumer the worker creates when
//! they are missing (each left as it is when it exists: an operator may have tuned it), and the message headers on
//! `LF_ASYNC` and `LF_DEAD`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::settings::DEFAULT_ASYNC_RESULT_TTL_S;

pub const ASYNC_STREAM: &str = "LF_ASYNC";
pub const DEAD_STREAM: &str = "LF_DEAD";
pub const RESULTS_BUCKET: &str = "LF_RESULTS";
pub const IDEMPOTENCY_BUCKET: &str = "LF_IDEMPOTENCY";
const DUPLICATE_WINDOW_S: f64 = 600.0;
const DEAD_MAX_AGE_S: f64 = 14.0 * 24.0 * 3600.0;

pub(super) const MSG_ID: &str = "Nats-Msg-Id";
pub(super) const CALLBACK_HEADER: &str = "Lf-Callback-Url";
pub(super) const SUBMITTED_HEADER: &str = "Lf-Submitted";
pub(super) const REDRIVE_HEADER: &str = "Lf-Redrive";
pub(super) const ERROR_HEADER: &str = "Lf-Error";
pub(super) const ATTEMPTS_HEADER: &str = "Lf-Attempts";
pub(super) const STATUS_HEADER: &str = "Lf-Status";
pub(super) const DEAD_AT_HEADER: &str = "Lf-Dead-At";

/// The `JetStream` API's answer to a stream that does not exist.
pub(super) const ERR_STREAM_NOT_FOUND: u64 = 10059;

pub(super) fn ns(seconds: f64) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let value = (seconds * 1e9) as u64;
    value
}

pub fn consumer_name(namespace: &str, function: &str) -> String {
    format!("{namespace}_{function}")
}

pub(super) fn stream_configs(result_ttl_s: f64) -> Vec<Value> {
    let kv = |bucket: &str, ttl_s: f64| {
        json!({
            "name": format!("KV_{bucket}"), "subjects": [format!("$KV.{bucket}.>")], "retention": "limits",
            "storage": "file", "num_replicas": 1, "max_msgs_per_subject": 1, "max_age": ns(ttl_s),
            "duplicate_window": ns(ttl_s.min(120.0)), "discard": "new", "deny_delete": true, "deny_purge": false,
            "allow_rollup_hdrs": true, "allow_direct": true, "allow_msg_ttl": true,
        })
    };
    vec![
        json!({
            "name": ASYNC_STREAM, "subjects": ["lf.async.>"], "retention": "workqueue", "storage": "file",
            "num_replicas": 1, "duplicate_window": ns(DUPLICATE_WINDOW_S), "discard": "old", "allow_direct": true,
        }),
        json!({
            "name": DEAD_STREAM, "subjects": ["lf.dead.>"], "retention": "limits", "storage": "file",
            "num_replicas": 1, "max_age": ns(DEAD_MAX_AGE_S), "duplicate_window": ns(DUPLICATE_WINDOW_S),
            "discard": "old", "allow_direct": true,
        }),
        kv(RESULTS_BUCKET, result_ttl_s),
        kv(IDEMPOTENCY_BUCKET, DEFAULT_ASYNC_RESULT_TTL_S),
    ]
}

pub(super) fn consumer_config(
    namespace: &str,
    function: &str,
    ack_wait: Duration,
    max_ack_pending: usize,
) -> Value {
    json!({
        "durable_name": consumer_name(namespace, function),
        "filter_subject": format!("lf.async.{namespace}.{function}.*"),
        "ack_policy": "explicit",
        "ack_wait": ns(ack_wait.as_secs_f64()),
        "deliver_policy": "all",
        "max_deliver": -1,
        "max_ack_pending": max_ack_pending,
        "max_waiting": 512,
        "replay_policy": "instant",
    })
}
