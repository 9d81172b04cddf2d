//! The async puller of one replica: pull, run, store with compare-and-set, retry, dead-letter, call back (the
//! module's documentation says how).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use _native::envelope::{error_kind, Request as Envelope, RequestRef, ResponseRef};
use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::{Client, HeaderMap, Message};
use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};

use super::callback;
use super::events::AsyncCounters;
use super::policy::{after_attempt, before_attempt, Decision, Policy};
use super::record::{record_view, CallRecord, CallResult};
use super::streams::{
    consumer_config, consumer_name, ns, stream_configs, ASYNC_STREAM, ATTEMPTS_HEADER,
    CALLBACK_HEADER, DEAD_AT_HEADER, ERROR_HEADER, ERR_STREAM_NOT_FOUND, MSG_ID, REDRIVE_HEADER,
    RESULTS_BUCKET, STATUS_HEADER, SUBMITTED_HEADER,
};
use crate::logs::Log;
use crate::settings::{AsyncSettings, DEFAULT_ASYNC_RESULT_TTL_S};

const API_TIMEOUT: Duration = Duration::from_secs(5);
const PULL_EXPIRES: Duration = Duration::from_secs(1);
const STORE_ATTEMPTS: u32 = 20;

/// What the worker needs of the replica: its free slots, and running one call like a sync one.
pub trait Runner: Send + Sync + 'static {
    /// Handlers that could start now without queueing.
    fn free_slots(&self) -> usize;
    /// Notified each time a slot is freed (by a sync or an async call), so a puller with no free slot can wait.
    fn slot_freed(&self) -> Arc<Notify>;
    /// Run the call under its envelope's budget; the response envelope arrives on the receiver.
    fn run_call(self: Arc<Self>, envelope: Envelope) -> oneshot::Receiver<Vec<u8>>;
}

/// The async puller of one replica: `start` it after `ready`, `stop_pulling` on SIGTERM, `close` after the
/// sync drain.
pub struct AsyncWorker {
    inner: Arc<Inner>,
    main: tokio::task::JoinHandle<()>,
}

struct Inner {
    settings: AsyncSettings,
    policy: Policy,
    namespace: String,
    function: String,
    client: Client,
    js: jetstream::Context,
    runner: Arc<dyn Runner>,
    counters: Arc<dyn AsyncCounters>,
    log: Log,
    ack_wait: Duration,
    worker_id: String,
    running: AtomicUsize,
    callbacks: AtomicUsize,
    pulling: AtomicBool,
    wake: Notify,
    idle: Notify,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

enum StoreError {
    /// The record moved on since the revision we hold: another delivery owns the call.
    Moved,
    Failed(String),
}

impl AsyncWorker {
    pub fn start(
        settings: AsyncSettings,
        namespace: &str,
        function: &str,
        client: Client,
        runner: Arc<dyn Runner>,
        counters: Arc<dyn AsyncCounters>,
        log: Log,
    ) -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_or_else(|_| "localhost".to_owned(), |h| h.trim().to_owned());
        let inner = Arc::new(Inner {
            policy: Policy::from_settings(&settings),
            ack_wait: settings.timeout + settings.ack_grace,
            settings,
            namespace: namespace.to_owned(),
            function: function.to_owned(),
            js: jetstream::new(client.clone()),
            client,
            runner,
            counters,
            log,
            worker_id: format!("{hostname}:{}", std::process::id()),
            running: AtomicUsize::new(0),
            callbacks: AtomicUsize::new(0),
            pulling: AtomicBool::new(true),
            wake: Notify::new(),
            idle: Notify::new(),
        });
        let main = tokio::spawn(inner.clone().run());
        Self { inner, main }
    }

    /// Stop pulling: the open pull request is read to its end (what it delivers is run), none is sent again.
    pub async fn stop_pulling(&mut self) {
        self.inner.pulling.store(false, Ordering::SeqCst);
        self.inner.wake.notify_one();
        if tokio::time::timeout(PULL_EXPIRES * 3, &mut self.main)
            .await
            .is_err()
        {
            self.main.abort();
        }
    }

    /// Wait (up to `timeout`) for the calls this worker holds to be stored and acked.
    pub async fn close(&self, timeout: Duration) {
        let inner = &self.inner;
        let wait = async {
            loop {
                let idle = inner.idle.notified();
                if inner.running.load(Ordering::SeqCst) + inner.callbacks.load(Ordering::SeqCst)
                    == 0
                {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_err() {
            inner.log.warning(
                "async_close_timeout",
                &[("running", json!(inner.running.load(Ordering::SeqCst)))],
            );
        }
        let _ = inner.client.flush().await;
    }
}

impl Inner {
    fn pulling(&self) -> bool {
        self.pulling.load(Ordering::SeqCst)
    }

    async fn run(self: Arc<Self>) {
        let mut delay = Duration::from_millis(200);
        let consumer = loop {
            if !self.pulling() {
                return;
            }
            match self.setup().await {
                Ok(consumer) => break consumer,
                Err(error) => {
                    self.log
                        .warning("async_setup_failed", &[("error", json!(error))]);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.log.info(
            "async_ready",
            &[
                (
                    "consumer",
                    json!(consumer_name(&self.namespace, &self.function)),
                ),
                ("ack_wait_s", json!(self.ack_wait.as_secs_f64())),
            ],
        );
        let slot_freed = self.runner.slot_freed();
        while self.pulling() {
            let running = self.running.load(Ordering::SeqCst);
            let window =
                (self.runner.free_slots()).min(self.settings.concurrency.saturating_sub(running));
            if window == 0 {
                // A freed slot or a finished async call changes the window; `notify_one` keeps a wake-up
                // that comes before this wait, so none is lost.
                tokio::select! {
                    () = slot_freed.notified() => {}
                    () = self.wake.notified() => {}
                }
                continue;
            }
            let batch = consumer
                .batch()
                .max_messages(window)
                .expires(PULL_EXPIRES)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    self.log
                        .warning("async_pull_failed", &[("error", json!(error.to_string()))]);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Some(message) = batch.next().await {
                match message {
                    Ok(message) => self.clone().spawn(message.message),
                    Err(error) => {
                        // 409s (leadership change, limits) end the pull; the next one follows.
                        self.log
                            .warning("async_pull_failed", &[("error", json!(error.to_string()))]);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        break;
                    }
                }
            }
        }
    }

    async fn setup(
        &self,
    ) -> Result<jetstream::consumer::Consumer<jetstream::consumer::pull::Config>, String> {
        let ttl = self
            .settings
            .result_ttl
            .as_secs_f64()
            .max(DEFAULT_ASYNC_RESULT_TTL_S);
        for config in stream_configs(ttl) {
            self.ensure_stream(&config).await?;
        }
        let name = consumer_name(&self.namespace, &self.function);
        let config = consumer_config(
            &self.namespace,
            &self.function,
            self.ack_wait,
            self.settings.max_inflight,
        );
        let subject = format!("$JS.API.CONSUMER.CREATE.{ASYNC_STREAM}.{name}");
        let body = json!({"stream_name": ASYNC_STREAM, "config": config});
        if self.api(&subject, Some(&body)).await.is_err() {
            let body = json!({"stream_name": ASYNC_STREAM, "config": config, "action": "update"});
            self.api(&subject, Some(&body))
                .await
                .map_err(|(_, e)| format!("creating the consumer {name}: {e}"))?;
        }
        self.js
            .get_consumer_from_stream(name.clone(), ASYNC_STREAM)
            .await
            .map_err(|e| format!("consumer {name}: {e}"))
    }

    /// Create a stream unless it exists (an operator may have tuned it).
    async fn ensure_stream(&self, config: &Value) -> Result<(), String> {
        let name = config["name"].as_str().unwrap_or_default();
        match self.api(&format!("$JS.API.STREAM.INFO.{name}"), None).await {
            Ok(_) => return Ok(()),
            Err((Some(ERR_STREAM_NOT_FOUND), _)) => {}
            Err((_, error)) => return Err(format!("stream {name}: {error}")),
        }
        match self
            .api(&format!("$JS.API.STREAM.CREATE.{name}"), Some(config))
            .await
        {
            Err((_, error))
                if !error.contains("already in use") && !error.contains("already exists") =>
            {
                Err(format!("creating stream {name}: {error}"))
            }
            _ => Ok(()),
        }
    }

    /// A `JetStream` API request; an error answer is `(Some(err_code), description)`.
    async fn api(
        &self,
        subject: &str,
        body: Option<&Value>,
    ) -> Result<Value, (Option<u64>, String)> {
        let payload = body.map(Value::to_string).unwrap_or_default();
        let request = self.client.request(subject.to_owned(), payload.into());
        let reply = match tokio::time::timeout(API_TIMEOUT, request).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => return Err((None, error.to_string())),
            Err(_) => return Err((None, format!("{subject}: timed out"))),
        };
        let data: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
        if let Some(error) = data.get("error") {
            let description = error["description"].as_str().unwrap_or_default();
            return Err((
                error["err_code"].as_u64(),
                format!("{}/{}: {description}", error["code"], error["err_code"]),
            ));
        }
        Ok(data)
    }

    fn spawn(self: Arc<Self>, message: Message) {
        self.running.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            self.process(message).await;
            if self.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.idle.notify_waiters();
            }
            self.wake.notify_one();
        });
    }

    async fn ack(&self, reply: &str, what: &str) {
        if let Err(error) = self
            .client
            .publish(reply.to_owned(), what.to_owned().into())
            .await
        {
            self.log.warning(
                "async_ack_lost",
                &[("reply", json!(reply)), ("error", json!(error.to_string()))],
            );
        }
    }

    // -------------------------------------------------------------------------------------- one call

    #[allow(clippy::too_many_lines)]
    async fn process(self: &Arc<Self>, message: Message) {
        let Some(reply) = message.reply.as_ref().map(ToString::to_string) else {
            return;
        };
        let Some((attempt, _sequence, published, pending)) = parse_ack_subject(&reply) else {
            self.log
                .warning("async_bad_ack_subject", &[("reply", json!(reply))]);
            return;
        };
        self.counters.set_async_pending(pending);
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let submitted = header(SUBMITTED_HEADER).parse().unwrap_or(published);
        let redrives: u32 = header(REDRIVE_HEADER).parse().unwrap_or(0);
        let callback = header(CALLBACK_HEADER);
        let envelope = match RequestRef::decode(&message.payload) {
            Ok(envelope) => envelope.to_owned(),
            Err(error) => {
                self.log
                    .warning("async_bad_envelope", &[("error", json!(error.to_string()))]);
                self.ack(&reply, "+TERM").await;
                return;
            }
        };
        let call_id = envelope.call_id.clone();
        let (record, mut revision) = match self.kv_get(&call_id).await {
            Ok(found) => found.map_or((None, 0), |(record, revision)| (Some(record), revision)),
            Err(error) => {
                self.log.error(
                    "async_call_failed",
                    &[("call_id", json!(call_id)), ("error", json!(error))],
                );
                return; // redelivered after the ack wait
            }
        };
        if let Some(record) = &record {
            if record.terminal() {
                if record.status == "dead" && record.redrives == redrives {
                    // died after the record, before the letter
                    if let Err(error) = self.dead_letter(&message.payload, record, &callback).await
                    {
                        self.log.error(
                            "async_call_failed",
                            &[("call_id", json!(call_id)), ("error", json!(error))],
                        );
                        return;
                    }
                    self.ack(&reply, "+TERM").await;
                } else {
                    self.ack(&reply, "+ACK").await;
                }
                return;
            }
        }
        let mut base = record.unwrap_or_else(|| CallRecord {
            call_id: call_id.clone(),
            namespace: self.namespace.clone(),
            function: self.function.clone(),
            status: "queued".to_owned(),
            submitted_at: submitted,
            ..CallRecord::default()
        });
        if base.submitted_at == 0.0 {
            base.submitted_at = submitted;
        }
        base.redrives = redrives;
        base.callback = if callback.is_empty() {
            String::new()
        } else {
            "pending".to_owned()
        };
        if let Decision::Dead { reason } = before_attempt(attempt, submitted, now(), &self.policy) {
            base.attempts = base.attempts.max(attempt - 1);
            self.finish_dead(&reply, &message.payload, base, revision, reason, &callback)
                .await;
            return;
        }
        "running".clone_into(&mut base.status);
        base.attempts = attempt;
        base.updated_at = now();
        base.worker.clone_from(&self.worker_id);
        revision = match self.put(&base, revision).await {
            Ok(revision) => revision,
            Err(StoreError::Moved) => {
                self.log.info(
                    "async_call_taken",
                    &[("call_id", json!(call_id)), ("attempt", json!(attempt))],
                );
                return; // another delivery of this call moved the record first: it owns the call
            }
            Err(StoreError::Failed(error)) => {
                self.log.error(
                    "async_call_failed",
                    &[("call_id", json!(call_id)), ("error", json!(error))],
                );
                return;
            }
        };
        self.counters.async_run();
        let payload = self.run_handler(&reply, envelope).await;
        let (status, result, error) = match ResponseRef::decode(&payload) {
            Ok(response) => (
                response.status,
                CallResult {
                    status: response.status,
                    headers: response
                        .headers
                        .iter()
                        .map(|&(n, v)| (n.to_owned(), v.to_owned()))
                        .collect(),
                    body: response.body.to_vec(),
                },
                response.error.to_owned(),
            ),
            Err(error) => (
                502,
                CallResult {
                    status: 502,
                    headers: Vec::new(),
                    body: Vec::new(),
                },
                format!("bad response envelope: {error}"),
            ),
        };
        let at = now();
        base.updated_at = at;
        let decision = after_attempt(
            attempt,
            status,
            submitted,
            at,
            &self.policy,
            rand::random::<f64>(),
        );
        let error = if error.is_empty() {
            format!("status {status}")
        } else {
            error
        };
        match decision {
            Decision::Done | Decision::Run => {
                "succeeded".clone_into(&mut base.status);
                base.result = Some(result);
                base.last_error = String::new();
                if self.store_final(&base, revision).await {
                    self.ack(&reply, "+ACK").await;
                    self.callback(base, callback);
                }
            }
            Decision::Retry { delay_s } => {
                "failed".clone_into(&mut base.status);
                base.result = Some(result);
                base.last_error = error;
                base.next_attempt_at = at + delay_s;
                if self.store_final(&base, revision).await {
                    self.counters.async_retry();
                    self.ack(&reply, &nak_body(delay_s)).await;
                }
            }
            Decision::Dead { reason } => {
                base.result = Some(result);
                let reason = format!("{reason}: {error}");
                self.finish_dead(&reply, &message.payload, base, revision, reason, &callback)
                    .await;
            }
        }
    }

    /// Run the handler; `+WPI` every half ack wait while it runs.
    async fn run_handler(&self, reply: &str, envelope: Envelope) -> Vec<u8> {
        let call_id = envelope.call_id.clone();
        let mut answered = self.runner.clone().run_call(envelope);
        let keepalive = (self.ack_wait / 2).max(Duration::from_millis(500));
        loop {
            tokio::select! {
                payload = &mut answered => {
                    return payload.unwrap_or_else(|_| {
                        ResponseRef {
                            status: 502,
                            error_kind: error_kind::INTERNAL,
                            call_id: &call_id,
                            error: "the replica dropped the call",
                            ..ResponseRef::default()
                        }
                        .encode()
                        .unwrap_or_default()
                    });
                }
                () = tokio::time::sleep(keepalive) => self.ack(reply, "+WPI").await, // still working
            }
        }
    }

    async fn finish_dead(
        self: &Arc<Self>,
        reply: &str,
        payload: &[u8],
        mut record: CallRecord,
        revision: u64,
        reason: String,
        callback: &str,
    ) {
        "dead".clone_into(&mut record.status);
        record.last_error = reason;
        record.updated_at = now();
        if !self.store_final(&record, revision).await {
            return;
        }
        if let Err(error) = self.dead_letter(payload, &record, callback).await {
            self.log.error(
                "async_call_failed",
                &[("call_id", json!(record.call_id)), ("error", json!(error))],
            );
            return; // redelivered: the record is dead with these redrives, so the letter is sent again
        }
        self.counters.async_dead();
        self.ack(reply, "+TERM").await;
        self.log.warning(
            "async_dead_letter",
            &[
                ("call_id", json!(record.call_id)),
                ("attempts", json!(record.attempts)),
                ("error", json!(record.last_error)),
            ],
        );
        self.callback(record, callback.to_owned());
    }

    /// POST the final record to the call's callback URL (in the background: the call is acked already).
    fn callback(self: &Arc<Self>, record: CallRecord, url: String) {
        if url.is_empty() {
            return;
        }
        let this = self.clone();
        this.callbacks.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let body = record_view(&record);
            let allow_private = this.settings.callback_allow_private;
            let (outcome, attempts) =
                callback::deliver(&url, &body, &record.call_id, allow_private).await;
            this.log.info(
                "async_callback",
                &[
                    ("call_id", json!(record.call_id)),
                    ("outcome", json!(outcome)),
                    ("attempts", json!(attempts)),
                ],
            );
            if let Ok(Some((mut current, revision))) = this.kv_get(&record.call_id).await {
                current.callback = outcome;
                let _ = this.put(&current, revision).await; // a newer write wins
            }
            if this.callbacks.fetch_sub(1, Ordering::SeqCst) == 1 {
                this.idle.notify_waiters();
            }
        });
    }

    async fn dead_letter(
        &self,
        payload: &[u8],
        record: &CallRecord,
        callback: &str,
    ) -> Result<(), String> {
        let mut headers = HeaderMap::new();
        for (name, value) in dead_letter_headers(record, callback) {
            headers.insert(name, value.as_str());
        }
        let subject = format!(
            "lf.dead.{}.{}.{}",
            record.namespace, record.function, record.call_id
        );
        self.publish(&subject, headers, payload.to_vec())
            .await
            .map(|_| ())
            .map_err(|e| match e {
                StoreError::Moved => "unexpected sequence".to_owned(),
                StoreError::Failed(e) => e,
            })
    }

    /// CAS the record; false (and nothing acked) when a newer delivery of the call moved it: we are a zombie.
    async fn store_final(&self, record: &CallRecord, revision: u64) -> bool {
        match self.put(record, revision).await {
            Ok(_) => true,
            Err(StoreError::Moved) => {
                self.counters.async_zombie();
                self.log.warning(
                    "async_stale_result_dropped",
                    &[
                        ("call_id", json!(record.call_id)),
                        ("status", json!(record.status)),
                    ],
                );
                false
            }
            Err(StoreError::Failed(error)) => {
                self.log.error(
                    "async_call_failed",
                    &[("call_id", json!(record.call_id)), ("error", json!(error))],
                );
                false
            }
        }
    }

    async fn put(&self, record: &CallRecord, revision: u64) -> Result<u64, StoreError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            revision.to_string().as_str(),
        );
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ttl = (self.settings.result_ttl.as_secs_f64() as u64).max(1);
        headers.insert("Nats-TTL", format!("{ttl}s").as_str());
        let subject = format!("$KV.{RESULTS_BUCKET}.{}", record.call_id);
        self.publish(&subject, headers, record.encode()).await
    }

    /// A `JetStream` publish, retried while the broker is away (a broker restart); a lost CAS is not retried.
    async fn publish(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Vec<u8>,
    ) -> Result<u64, StoreError> {
        let mut delay = Duration::from_millis(100);
        let mut last = String::new();
        for _ in 0..STORE_ATTEMPTS {
            let sent = self
                .js
                .publish_with_headers(subject.to_owned(), headers.clone(), payload.clone().into())
                .await;
            let acked = match sent {
                Ok(future) => future.await,
                Err(error) => Err(error),
            };
            match acked {
                Ok(ack) => return Ok(ack.sequence),
                Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                    return Err(StoreError::Moved)
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        PublishErrorKind::TimedOut
                            | PublishErrorKind::BrokenPipe
                            | PublishErrorKind::StreamNotFound
                    ) =>
                {
                    last = error.to_string();
                }
                Err(error) => return Err(StoreError::Failed(error.to_string())),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(StoreError::Failed(last))
    }

    /// `(record, revision)` of a call, or None when it has none (never written, expired or deleted).
    async fn kv_get(&self, call_id: &str) -> Result<Option<(CallRecord, u64)>, String> {
        let subject = format!("$JS.API.STREAM.MSG.GET.KV_{RESULTS_BUCKET}");
        let body = json!({"last_by_subj": format!("$KV.{RESULTS_BUCKET}.{call_id}")});
        let mut delay = Duration::from_millis(100);
        let mut last = String::new();
        for _ in 0..STORE_ATTEMPTS {
            match self.api(&subject, Some(&body)).await {
                Ok(reply) => return decode_stored(&reply["message"]),
                Err((Some(10037), _)) => return Ok(None),
                Err((Some(_), error)) if error.starts_with("404/") => return Ok(None),
                Err((Some(_), error)) => return Err(error),
                Err((None, error)) => last = error,
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(last)
    }
}

/// A `STREAM.MSG.GET` message of `LF_RESULTS`: the record and its revision, None for a delete marker.
fn decode_stored(message: &Value) -> Result<Option<(CallRecord, u64)>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(hdrs) = message["hdrs"].as_str() {
        let hdrs = b64.decode(hdrs).map_err(|e| e.to_string())?;
        if hdrs.windows(12).any(|w| w == b"KV-Operation") {
            return Ok(None);
        }
    }
    let data = b64
        .decode(message["data"].as_str().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let record: CallRecord =
        serde_json::from_slice(&data).map_err(|e| format!("a bad call record: {e}"))?;
    let sequence = message["seq"]
        .as_u64()
        .ok_or("a stored message without seq")?;
    Ok(Some((record, sequence)))
}

/// The headers of a dead letter (`_dead_letter` in the Python worker), in the same order.
pub fn dead_letter_headers(record: &CallRecord, callback: &str) -> Vec<(&'static str, String)> {
    let error: String = record
        .last_error
        .replace(['\r', '\n'], " ")
        .chars()
        .take(1024)
        .collect();
    let mut letter = vec![
        (MSG_ID, format!("{}.d{}", record.call_id, record.redrives)),
        (
            ERROR_HEADER,
            if error.is_empty() {
                "unknown".to_owned()
            } else {
                error
            },
        ),
        (ATTEMPTS_HEADER, record.attempts.to_string()),
        (SUBMITTED_HEADER, format!("{:.6}", record.submitted_at)),
        (DEAD_AT_HEADER, format!("{:.6}", record.updated_at)),
        (REDRIVE_HEADER, record.redrives.to_string()),
    ];
    if let Some(result) = &record.result {
        letter.push((STATUS_HEADER, result.status.to_string()));
    }
    if !callback.is_empty() {
        letter.push((CALLBACK_HEADER, callback.to_owned()));
    }
    letter
}

/// `(delivered, stream sequence, published at, pending)` from a `JetStream` ack subject (v1 and v2 formats).
pub fn parse_ack_subject(reply: &str) -> Option<(u32, u64, f64, u64)> {
    let tokens: Vec<&str> = reply.split('.').collect();
    let base = match tokens.len() {
        9 => 4,            // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        n if n >= 11 => 6, // $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        _ => return None,
    };
    let delivered = tokens[base].parse().ok()?;
    let sequence = tokens[base + 1].parse().ok()?;
    let ts: u64 = tokens[base + 3].parse().ok()?;
    let pending = tokens[base + 4].parse().ok()?;
    #[allow(clippy::cast_precision_loss)]
    Some((delivered, sequence, ts as f64 / 1e9, pending))
}

/// The NAK that schedules a retry after `delay_s` (the Python worker's `-NAK {"delay": ns}`).
pub fn nak_body(delay_s: f64) -> String {
    format!("-NAK {{\"delay\": {}}}", ns(delay_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_headers_like_python() {
        let record = CallRecord {
            call_id: "abc".into(),
            attempts: 3,
            submitted_at: 1.5,
            updated_at: 2.25,
            last_error: "status 500 on the last of 3 attempts: boom\r\nline".into(),
            result: Some(CallResult {
                status: 500,
                headers: Vec::new(),
                body: Vec::new(),
            }),
            redrives: 1,
            ..CallRecord::default()
        };
        let headers = dead_letter_headers(&record, "https://example.com/cb");
        let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "Nats-Msg-Id",
                "Lf-Error",
                "Lf-Attempts",
                "Lf-Submitted",
                "Lf-Dead-At",
                "Lf-Redrive",
                "Lf-Status",
                "Lf-Callback-Url"
            ]
        );
        assert_eq!(headers[0].1, "abc.d1");
        assert_eq!(
            headers[1].1,
            "status 500 on the last of 3 attempts: boom  line"
        );
        assert_eq!(
            (headers[3].1.as_str(), headers[4].1.as_str()),
            ("1.500000", "2.250000")
        );
        let empty = dead_letter_headers(&CallRecord::default(), "");
        assert_eq!(empty[1].1, "unknown");
        assert_eq!(empty.len(), 6);
    }

    #[test]
    fn ack_subjects() {
        assert_eq!(
            parse_ack_subject("$JS.ACK.LF_ASYNC.default_f.2.17.9.1764382284000000000.5"),
            Some((2, 17, 1_764_382_284.0, 5))
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.dom.hash.LF_ASYNC.default_f.1.3.3.1500000000.0.tok"),
            Some((1, 3, 1.5, 0))
        );
        assert_eq!(parse_ack_subject("_INBOX.x"), None);
        assert_eq!(nak_body(1.5), r#"-NAK {"delay": 1500000000}"#);
    }
}
