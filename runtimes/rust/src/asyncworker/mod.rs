//! A replica's async side (docs/architecture.md, "An async call"), the Python runtime's `lf_runtime.asyncworker` in Rust: pull calls
//! from the function's durable consumer on `LF_ASYNC`, run them like sync calls, store results with
//! compare-and-set, retry with backoff, dead-letter.
//!
//! - One durable pull consumer per function (`{ns}_{fn}`, filter `lf.async.{ns}.{fn}.*`), shared by its
//!   replicas; each replica pulls at most its free concurrency (capped by `LF_ASYNC_CONCURRENCY`), one pull
//!   request at a time, expiring after `PULL_EXPIRES`; the next is sent once it is satisfied or expired and a
//!   slot is free (a freed slot or a finished async call wakes the puller).
//! - ack wait = timeout + `LF_ASYNC_ACK_GRACE`; a call that runs long sends `+WPI` every half ack wait.
//! - The call's record (`LF_RESULTS[{call id}]`) moves only by compare-and-set on the revision this worker read
//!   or wrote. A zombie (paused past the ack wait while the call was run elsewhere) finds the revision moved and
//!   drops its result without acking.
//! - Retries: the same policy as `lf_core.asynccalls.policy` (retryable 408, 429, 5xx; backoff
//!   `backoff * 2^(n-1)` capped, plus up to 20 % jitter; `maxAttempts` in total; `maxAge`); a retry is a NAK
//!   with that delay, the delivery count of the ack subject is the attempt number. The last failure, a 4xx, a
//!   delivery past `maxAttempts` or a call past `maxAge` goes to `LF_DEAD` (`Nats-Msg-Id` = `{id}.d{redrives}`),
//!   then TERM.
//! - The record's JSON is byte for byte what the Python runtime writes (msgspec, fields in declaration order,
//!   defaults omitted), since `GET /invocations/{id}` and `lf dlq` read both.
//!
//! - Callbacks (`X-Callback-Url`): after the final record, this replica POSTs the record view (`callback`).
//!
//! The files are the Go runtime's (`runtimes/go/asyncworker`): `policy` (retries), `record` (the stored record and
//! its view), `streams` (names, headers and definitions), `events` (what the metrics count), `callback` and the
//! `worker`. The `LF_ASYNC_*` settings are `crate::settings::AsyncSettings`.

pub mod callback;
pub mod events;
pub mod policy;
pub mod record;
pub mod streams;
pub mod worker;

pub use events::AsyncCounters;
pub use worker::{AsyncWorker, Runner};
