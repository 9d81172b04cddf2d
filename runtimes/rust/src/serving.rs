//! One replica serving one function over NATS: subscription, concurrency limit, deadlines, busy answers, drain.
//!
//! The flow is the Python and Go runtimes' (docs/protocol.md):
//!
//! 1. The subscription loop decodes each message and admits the call: it takes a permit if one is free, waits
//!    for one (FIFO, tokio's semaphore is fair) if fewer than `queue_depth` calls wait, or is answered BUSY.
//! 2. Each admitted call runs in its own task with one deadline (budget minus the runtime's margin), queue
//!    time included. Whoever comes first wins: the handler's answer, or the deadline (TIMEOUT is answered and
//!    the permit freed). An async handler is aborted then; a sync one cannot be, and counts as stuck until it
//!    returns; `stuck_limit` of them recycle the replica (exit 75).
//! 3. SIGTERM drains: UNSUB, flush (every message sent before it arrives), admit what is buffered, let
//!    in-flight calls finish within `drain_timeout` (else answer them INTERNAL), flush and close.
//!
//! Every answer goes through `finish`, which publishes only if it wins the call's state (compare-and-swap), so a
//! call is answered once whatever races (handler, deadline, drain timeout).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use _native::envelope::{error_kind, RequestRef, ResponseRef};
use async_nats::{Client, Event, Message, Subject, Subscriber};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinError;

use crate::capture::Capture;
use crate::handlers::{panic_message, Handler};
use crate::health::{self, Readiness};
use crate::logs::Log;
use crate::metrics::{self, Metrics, Outcome};
use crate::settings::{redacted_nats_url, Settings};
use crate::tracing::{CallSpan, Tracing};
use crate::types::{BadRequest, Request, Response, Result};

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

/// Exit codes, the same as the Python runtime's (docs/operations.md): a clean stop, a failure, bad settings,
/// stuck handlers forced a restart.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_CONFIG: i32 = 2;
pub const EXIT_TEMPFAIL: i32 = 75;

const MARGIN_FRACTION: f64 = 0.05;
const MARGIN_MAX: Duration = Duration::from_millis(50);
const MAX_MESSAGE: usize = 4096;
/// How long a PING/PONG round trip may take (the Python runtime's `ROUND_TRIP_TIMEOUT_S`).
pub const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// A PING/PONG round trip: the server processed everything sent before. An error at once while disconnected
/// (async-nats would wait for the next connection), or after `ROUND_TRIP_TIMEOUT` without a PONG.
pub async fn round_trip(client: &Client) -> std::result::Result<(), String> {
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err("not connected to NATS".to_owned());
    }
    match tokio::time::timeout(ROUND_TRIP_TIMEOUT, client.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no PONG within {ROUND_TRIP_TIMEOUT:?}")),
    }
}

/// How long the handler may take: the budget minus `min(5 % of it, 50 ms)` (docs/protocol.md "Timeouts").
pub fn usable_budget(budget_ms: u32) -> Duration {
    let budget = Duration::from_millis(u64::from(budget_ms));
    budget.saturating_sub(budget.mul_f64(MARGIN_FRACTION).min(MARGIN_MAX))
}

fn status_of(kind: u8) -> u16 {
    match kind {
        error_kind::HANDLER => 500,
        error_kind::TIMEOUT => 504,
        error_kind::BUSY => 503,
        _ => 502,
    }
}

fn kind_name(kind: u8) -> &'static str {
    [
        "NONE",
        "HANDLER",
        "TIMEOUT",
        "BUSY",
        "BAD_REQUEST",
        "RESPONSE_TOO_LARGE",
        "INTERNAL",
    ]
    .get(usize::from(kind))
    .copied()
    .unwrap_or("?")
}

#[allow(clippy::struct_field_names)] // `call_id` is the envelope's name for it
struct Call {
    id: u64,
    state: AtomicU8,
    reply: Subject,
    call_id: String,
    budget_ms: u32,
    started: Instant,
    cold: AtomicBool,
    /// With tracing on: the call's span from its handler's start until it is answered.
    span: Mutex<Option<CallSpan>>,
}

impl Call {
    fn took(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn cold(&self) -> bool {
        self.cold.load(Ordering::Relaxed)
    }
}

/// Serves one function until stopped.
pub struct Replica<H, M> {
    settings: Settings,
    handler: Arc<H>,
    log: Log,
    metrics: Arc<Metrics>,
    capture: Option<Arc<Capture>>,
    tracing: Option<Arc<Tracing>>,
    _marker: std::marker::PhantomData<fn() -> M>,
}

struct Shared<H, M> {
    settings: Settings,
    handler: Arc<H>,
    log: Log,
    client: Client,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    metrics: Arc<Metrics>,
    capture: Option<Arc<Capture>>,
    tracing: Option<Arc<Tracing>>,
    next_id: AtomicU64,
    calls: Mutex<HashMap<u64, Arc<Call>>>,
    idle: Notify,
    stop: mpsc::UnboundedSender<(i32, String)>,
    stopping: OnceLock<()>,
    _marker: std::marker::PhantomData<fn() -> M>,
}

impl<H: Handler<M>, M: 'static> Replica<H, M> {
    pub fn new(settings: Settings, handler: Arc<H>, log: Log) -> Self {
        Self {
            metrics: Arc::new(Metrics::new(&settings.namespace, &settings.function)),
            settings,
            handler,
            log,
            capture: None,
            tracing: None,
            _marker: std::marker::PhantomData,
        }
    }

    /// Keep each call's output (`capture.rs`) and publish it to `LF_LOGS` when the call is answered.
    #[must_use]
    pub fn with_capture(mut self, capture: Option<Arc<Capture>>) -> Self {
        self.capture = capture;
        self
    }

    /// One span per call (`tracing.rs`).
    #[must_use]
    pub fn with_tracing(mut self, tracing: Option<Arc<Tracing>>) -> Self {
        self.tracing = tracing;
        self
    }

    /// The replica's counters (`/metrics`), for the parts that count from outside this module.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Connect, subscribe, log `ready`, serve until stopped, drain; return the exit code.
    pub async fn run(self) -> Result<i32, String> {
        let (stop_tx, mut stop_rx) = mpsc::unbounded_channel();
        let s = &self.settings;
        let readiness = Arc::new(Readiness::default());
        // Before connecting: a probe meanwhile is told "connecting to NATS". Aborted when `run` returns.
        let _health = start_health(s, &self.log, &readiness).await?;
        let client = connect(
            &self.settings,
            &self.log,
            stop_tx.clone(),
            readiness.clone(),
        )
        .await?;
        let subject = format!("lf.invoke.{}.{}", s.namespace, s.function);
        let queue = format!("{}.{}", s.namespace, s.function);
        let mut sub = client
            .queue_subscribe(subject.clone(), queue.clone())
            .await
            .map_err(|e| format!("subscribing to {subject}: {e}"))?;
        client
            .flush()
            .await
            .map_err(|e| format!("subscribing to {subject}: {e}"))?;
        readiness.subscribed(client.clone());
        let log = self.log.clone();
        let _confirming = AbortOnDrop(tokio::spawn(readiness.clone().confirm_reconnects(
            move |error| log.warning("subscription_unconfirmed", &[("error", json!(error))]),
        )));
        let shared = Arc::new(Shared {
            permits: Arc::new(Semaphore::new(s.concurrency)),
            settings: self.settings.clone(),
            handler: self.handler,
            log: self.log.clone(),
            client: client.clone(),
            waiting: AtomicUsize::new(0),
            metrics: self.metrics.clone(),
            capture: self.capture.clone(),
            tracing: self.tracing.clone(),
            next_id: AtomicU64::new(0),
            calls: Mutex::new(HashMap::new()),
            idle: Notify::new(),
            stop: stop_tx,
            stopping: OnceLock::new(),
            _marker: std::marker::PhantomData,
        });
        tokio::spawn(watch_signals(shared.stop.clone()));
        let listener = start_metrics(s, &self.metrics).await?;
        self.log.info(
            "ready",
            &[
                ("subject", json!(subject)),
                ("queue", json!(queue)),
                ("concurrency", json!(s.concurrency)),
                ("queue_depth", json!(s.queue_depth)),
            ],
        );
        if listener.is_some() {
            let url = format!("http://{}:{}/metrics", s.metrics_host, s.metrics_port);
            self.log.info("metrics_listening", &[("url", json!(url))]);
        }
        let code = loop {
            tokio::select! {
                biased;
                Some((code, reason)) = stop_rx.recv() => {
                    if shared.stopping.set(()).is_ok() {
                        readiness.draining();
                        self.log.info("stopping", &[("reason", json!(reason)), ("exit_code", json!(code))]);
                        break code;
                    }
                }
                message = sub.next() => match message {
                    Some(message) => shared.admit(message),
                    None => break EXIT_FAILURE,
                },
            }
        };
        shared.drain(&mut sub).await;
        if let Err(error) = round_trip(&client).await {
            self.log.warning("flush_failed", &[("error", json!(error))]);
        }
        // Bounded like the round trips: with the broker gone, async-nats would wait for it for ever.
        let _ = tokio::time::timeout(ROUND_TRIP_TIMEOUT, client.drain()).await;
        if let Some(listener) = listener {
            listener.abort();
        }
        self.log.info("stopped", &[("exit_code", json!(code))]);
        Ok(code)
    }
}

/// The `/readyz` listener (`LF_HEALTH_PORT` > 0), until the returned guard is dropped.
async fn start_health(
    s: &Settings,
    log: &Log,
    readiness: &Arc<Readiness>,
) -> Result<Option<AbortOnDrop<()>>, String> {
    if s.health_port == 0 {
        return Ok(None);
    }
    let address = format!("{}:{}", s.health_host, s.health_port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("health listener on {address}: {e}"))?;
    let task = AbortOnDrop(tokio::spawn(health::serve(listener, readiness.clone())));
    let url = format!("http://{address}/readyz");
    log.info("health_listening", &[("url", json!(url))]);
    Ok(Some(task))
}

/// The `/metrics` listener (`LF_METRICS_PORT` > 0).
async fn start_metrics(
    s: &Settings,
    metrics: &Arc<Metrics>,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    if s.metrics_port == 0 {
        return Ok(None);
    }
    let address = format!("{}:{}", s.metrics_host, s.metrics_port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("metrics listener on {address}: {e}"))?;
    Ok(Some(tokio::spawn(metrics::serve(
        listener,
        metrics.clone(),
    ))))
}

/// Aborts its task when dropped (the listeners and the confirming loop end with `run`).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn connect(
    settings: &Settings,
    log: &Log,
    stop: mpsc::UnboundedSender<(i32, String)>,
    readiness: Arc<Readiness>,
) -> Result<Client, String> {
    let log = log.clone();
    let options = async_nats::ConnectOptions::new()
        .name(format!(
            "lf-runtime-rust {}.{}",
            settings.namespace, settings.function
        ))
        .max_reconnects(None)
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let (log, stop, readiness) = (log.clone(), stop.clone(), readiness.clone());
            async move {
                match event {
                    Event::Disconnected => {
                        readiness.lost();
                        log.warning("nats_disconnected", &[]);
                    }
                    Event::Connected => {
                        readiness.connected();
                        log.info("nats_connected", &[]);
                    }
                    Event::Closed => {
                        let _ = stop.send((EXIT_FAILURE, "the NATS connection closed".into()));
                    }
                    other => {
                        log.warning("nats_event", &[("event_detail", json!(other.to_string()))]);
                    }
                }
            }
        });
    let servers: Vec<async_nats::ServerAddr> = settings
        .nats_url
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("LF_NATS_URL: {e}"))?;
    match tokio::time::timeout(settings.connect_timeout, options.connect(servers)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(format!("connecting to NATS: {error}")),
        Err(_) => Err(format!(
            "no NATS server reachable at {} within {:?}",
            redacted_nats_url(&settings.nats_url),
            settings.connect_timeout
        )),
    }
}

async fn watch_signals(stop: mpsc::UnboundedSender<(i32, String)>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let _ = stop.send((EXIT_OK, name.into()));
}

impl<H: Handler<M>, M: 'static> Shared<H, M> {
    // ----------------------------------------------------------------------------------------- admission

    fn admit(self: &Arc<Self>, message: Message) {
        let started = Instant::now();
        let decoded = RequestRef::decode(&message.payload);
        let Some(reply) = message.reply else {
            if decoded.is_err() {
                self.metrics.count(Outcome::BadRequest);
            }
            let call_id = decoded.map(|r| r.call_id.to_owned()).unwrap_or_default();
            self.log
                .warning("no_reply_subject", &[("call_id", json!(call_id))]);
            return;
        };
        let req = match decoded {
            Ok(req) => req,
            Err(error) => {
                self.metrics.count(Outcome::BadRequest);
                self.log.warning(
                    "bad_request",
                    &[
                        ("error", json!(error.to_string())),
                        ("size", json!(message.payload.len())),
                    ],
                );
                let message = format!("bad request envelope: {error}");
                self.spawn_publish(
                    reply,
                    error_reply("", error_kind::BAD_REQUEST, &message, 0, false),
                );
                return;
            }
        };
        let budget = usable_budget(req.budget_ms);
        if budget.is_zero() {
            let message = format!(
                "no time left to run the handler (budget {} ms)",
                req.budget_ms
            );
            self.metrics.count(Outcome::Timeout);
            let payload = error_reply(req.call_id, error_kind::TIMEOUT, &message, 0, false);
            self.refuse(&req, reply, payload, "timeout");
            return;
        }
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if self.waiting.load(Ordering::Relaxed) < self.settings.queue_depth => {
                self.waiting.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(_) => {
                let message = format!(
                    "replica busy: {} running, {} queued",
                    self.settings.concurrency,
                    self.waiting.load(Ordering::Relaxed)
                );
                let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(0);
                self.metrics.count(Outcome::Busy);
                let payload = error_reply(req.call_id, error_kind::BUSY, &message, took, false);
                self.refuse(&req, reply, payload, "busy");
                return;
            }
        };
        self.launch(req.to_owned(), reply, started, started + budget, permit);
    }

    /// Count a call in (`calls`, in-flight) and run it in its own task, answering `reply`.
    fn launch(
        self: &Arc<Self>,
        envelope: _native::envelope::Request,
        reply: Subject,
        started: Instant,
        deadline: Instant,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let call = Arc::new(Call {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            state: AtomicU8::new(QUEUED),
            reply,
            call_id: envelope.call_id.clone(),
            budget_ms: envelope.budget_ms,
            started,
            cold: AtomicBool::new(false),
            span: Mutex::new(None),
        });
        let request = Request {
            call_id: envelope.call_id,
            method: envelope.method,
            path: envelope.path,
            query: envelope.query,
            headers: envelope.headers,
            params: envelope.params,
            body: envelope.body,
            traceparent: envelope.traceparent,
            tracestate: envelope.tracestate,
            deadline,
            output: crate::capture::Output::default(),
        };
        self.calls.lock().unwrap().insert(call.id, call.clone());
        self.metrics.admitted();
        tokio::spawn(self.clone().serve(call, request, permit, deadline.into()));
    }

    /// Answer a call no handler will run (`busy`, or `timeout`: no time left); traced as refused.
    fn refuse(
        self: &Arc<Self>,
        req: &RequestRef<'_>,
        reply: Subject,
        payload: Vec<u8>,
        error: &str,
    ) {
        if let Some(tracing) = &self.tracing {
            let envelope = crate::tracing::Envelope {
                call_id: req.call_id,
                method: req.method,
                traceparent: req.traceparent,
                tracestate: req.tracestate,
            };
            let s = &self.settings;
            tracing.refused(&s.namespace, &s.function, &envelope, &payload, error);
        }
        self.spawn_publish(reply, payload);
    }

    // ----------------------------------------------------------------------------------------- execution

    async fn serve(
        self: Arc<Self>,
        call: Arc<Call>,
        mut request: Request,
        permit: Option<OwnedSemaphorePermit>,
        deadline: tokio::time::Instant,
    ) {
        let permit = if let Some(permit) = permit {
            permit
        } else {
            let acquired = tokio::select! {
                permit = self.permits.clone().acquire_owned() => permit.ok(),
                () = tokio::time::sleep_until(deadline) => None,
            };
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            let Some(permit) = acquired else {
                self.finish(&call, Self::timeout_reply(&call), Outcome::Timeout, true)
                    .await;
                return;
            };
            permit
        };
        if call
            .state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.forget(&call); // answered by the drain timeout while it waited
            return;
        }
        if !self.metrics.cold_started.swap(true, Ordering::Relaxed) {
            call.cold.store(true, Ordering::Relaxed);
        }
        if let Some(capture) = &self.capture {
            capture.begin(call.id, &call.call_id);
            request.output = capture.output(call.id);
        }
        if let Some(tracing) = &self.tracing {
            let s = &self.settings;
            let span = tracing.start(&s.namespace, &s.function, &mut request, call.cold());
            *call.span.lock().unwrap() = Some(span);
        }
        let started = self.handler.clone().start(request);
        let mut join = started.join;
        tokio::select! {
            result = &mut join => {
                let (payload, outcome) = self.answer(&call, result);
                self.publish_output(&call, true).await; // before the answer, as the Python runtime does
                self.finish(&call, payload, outcome, true).await;
                drop(permit);
            }
            () = tokio::time::sleep_until(deadline) => {
                self.finish(&call, Self::timeout_reply(&call), Outcome::Timeout, true).await;
                drop(permit);
                if started.cancellable {
                    join.abort();
                    self.publish_output(&call, true).await;
                } else {
                    self.publish_output(&call, false).await;
                    self.stuck_until_done(&call, join).await;
                    self.publish_output(&call, true).await;
                }
            }
        }
    }

    async fn stuck_until_done(&self, call: &Call, join: tokio::task::JoinHandle<Result<Response>>) {
        let stuck = self.metrics.stuck.fetch_add(1, Ordering::Relaxed) + 1;
        let limit = self.settings.stuck_limit;
        self.log.warning(
            "stuck",
            &[
                ("call_id", json!(call.call_id)),
                ("stuck", json!(stuck)),
                ("limit", json!(limit)),
            ],
        );
        if stuck >= limit {
            let reason = format!("{stuck} sync handlers are stuck past their deadline");
            let _ = self.stop.send((EXIT_TEMPFAIL, reason));
        }
        let _ = join.await;
        let stuck = self.metrics.stuck.fetch_sub(1, Ordering::Relaxed) - 1;
        self.log.info(
            "stuck_returned",
            &[("call_id", json!(call.call_id)), ("stuck", json!(stuck))],
        );
    }

    /// Publish `payload` if this is the call's first answer (and count it: with its duration if `timed`),
    /// then forget the call.
    async fn finish(&self, call: &Call, payload: Vec<u8>, outcome: Outcome, timed: bool) {
        let won = [QUEUED, RUNNING].iter().any(|&from| {
            call.state
                .compare_exchange(from, DONE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        if won {
            if self.tracing.is_some() {
                if let Some(span) = call.span.lock().unwrap().take() {
                    let error = match outcome {
                        Outcome::Timeout => "timeout",
                        Outcome::Internal if !timed => "drain_timeout",
                        _ => "",
                    };
                    span.end(&payload, error);
                }
            }
            if timed {
                self.metrics.record(outcome, call.took());
            } else {
                self.metrics.count(outcome);
            }
            self.publish(call.reply.clone(), payload).await;
        }
        self.forget(call);
    }

    fn forget(&self, call: &Call) {
        let mut calls = self.calls.lock().unwrap();
        if calls.remove(&call.id).is_some() {
            self.metrics.left();
        }
        if calls.is_empty() {
            self.idle.notify_waiters();
        }
    }

    // ------------------------------------------------------------------------------------------- answers

    fn timeout_reply(call: &Call) -> Vec<u8> {
        let message = format!(
            "the handler did not answer within the call's budget ({} ms)",
            call.budget_ms
        );
        error_reply(
            &call.call_id,
            error_kind::TIMEOUT,
            &message,
            call.took(),
            call.cold(),
        )
    }

    fn answer(
        &self,
        call: &Call,
        result: Result<Result<Response>, JoinError>,
    ) -> (Vec<u8>, Outcome) {
        let (id, took, cold) = (call.call_id.as_str(), call.took(), call.cold());
        let (kind, message, outcome) = match result {
            Ok(Ok(response)) => {
                if !(100..=599).contains(&response.status) {
                    (
                        error_kind::INTERNAL,
                        format!(
                            "Response.status {} is not an HTTP status code (100-599)",
                            response.status
                        ),
                        Outcome::Internal,
                    )
                } else if response.body.len() > self.settings.max_response_bytes {
                    (
                        error_kind::RESPONSE_TOO_LARGE,
                        format!(
                            "response body of {} bytes exceeds the limit of {} bytes",
                            response.body.len(),
                            self.settings.max_response_bytes
                        ),
                        Outcome::TooLarge,
                    )
                } else {
                    let headers = response
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    let payload = encode(&ResponseRef {
                        status: response.status,
                        error_kind: error_kind::NONE,
                        cold_start: cold,
                        duration_ns: took,
                        call_id: id,
                        error: "",
                        headers,
                        body: &response.body,
                    });
                    return (payload, Outcome::Ok);
                }
            }
            Ok(Err(error)) => {
                if let Some(bad) = error.downcast_ref::<BadRequest>() {
                    return (bad_input(id, &bad.0, took, cold), Outcome::BadRequest);
                }
                self.fail_span(call, &error.to_string());
                (
                    error_kind::HANDLER,
                    error.to_string(),
                    Outcome::HandlerError,
                )
            }
            Err(error) if error.is_panic() => {
                let message = format!("panic: {}", panic_message(&*error.into_panic()));
                self.fail_span(call, &message);
                (error_kind::HANDLER, message, Outcome::HandlerError)
            }
            Err(_) => (
                error_kind::INTERNAL,
                "the handler was cancelled".to_owned(),
                Outcome::Internal,
            ),
        };
        self.log.error(
            "call_failed",
            &[
                ("call_id", json!(id)),
                ("error_kind", json!(kind_name(kind))),
                ("error", json!(message)),
            ],
        );
        (error_reply(id, kind, &message, took, cold), outcome)
    }

    fn fail_span(&self, call: &Call, message: &str) {
        if self.tracing.is_some() {
            if let Some(span) = call.span.lock().unwrap().as_mut() {
                span.fail(message);
            }
        }
    }

    /// What the handler wrote (so far, unless `done`), to `LF_LOGS`; best effort: logs never fail a call.
    async fn publish_output(&self, call: &Call, done: bool) {
        let Some(capture) = &self.capture else { return };
        let record = if done {
            capture.end(call.id)
        } else {
            capture.take_so_far(call.id)
        };
        let Some(record) = record else { return };
        if let Err(error) = self
            .client
            .publish(capture.subject.clone(), record.into())
            .await
        {
            self.log.warning(
                "output_not_published",
                &[
                    ("call_id", json!(call.call_id)),
                    ("error", json!(error.to_string())),
                ],
            );
        }
    }

    async fn publish(&self, reply: Subject, payload: Vec<u8>) {
        if let Err(error) = self.client.publish(reply, payload.into()).await {
            self.log
                .warning("reply_failed", &[("error", json!(error.to_string()))]);
        }
    }

    fn spawn_publish(self: &Arc<Self>, reply: Subject, payload: Vec<u8>) {
        let this = self.clone();
        tokio::spawn(async move { this.publish(reply, payload).await });
    }

    // --------------------------------------------------------------------------------------------- drain

    async fn drain(self: &Arc<Self>, sub: &mut Subscriber) {
        if let Err(error) = sub.drain().await {
            self.log
                .warning("unsubscribe_failed", &[("error", json!(error.to_string()))]);
        } else {
            {
                // After the round trip every message the server sent before the UNSUB is buffered here.
                let _ = round_trip(&self.client).await;
                while let Ok(Some(message)) =
                    tokio::time::timeout(Duration::from_millis(50), sub.next()).await
                {
                    self.admit(message);
                }
            }
        }
        let in_flight = self.calls.lock().unwrap().len();
        self.log.info(
            "draining",
            &[
                ("in_flight", json!(in_flight)),
                ("stuck", json!(self.metrics.stuck.load(Ordering::Relaxed))),
            ],
        );
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.calls.lock().unwrap().is_empty() {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(self.settings.drain_timeout, wait)
            .await
            .is_err()
        {
            self.abandon().await;
        }
    }

    /// The drain timed out: answer every call still in flight, so none waits for its deadline.
    async fn abandon(&self) {
        let calls: Vec<Arc<Call>> = self.calls.lock().unwrap().values().cloned().collect();
        let ids: Vec<&str> = calls.iter().map(|c| c.call_id.as_str()).collect();
        self.log.warning("drain_timeout", &[("calls", json!(ids))]);
        for call in &calls {
            let message = "the replica stopped before the handler answered";
            let payload = error_reply(
                &call.call_id,
                error_kind::INTERNAL,
                message,
                call.took(),
                call.cold(),
            );
            self.finish(call, payload, Outcome::Internal, false).await;
        }
    }
}

fn encode(response: &ResponseRef<'_>) -> Vec<u8> {
    response.encode().unwrap_or_else(|error| {
        // Only a field over 4 GiB; the body limit stops that first.
        error_reply(
            response.call_id,
            error_kind::INTERNAL,
            &error.to_string(),
            0,
            false,
        )
    })
}

fn truncate(message: &str, max: usize) -> &str {
    let mut end = message.len().min(max);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

fn error_reply(call_id: &str, kind: u8, message: &str, took: u64, cold: bool) -> Vec<u8> {
    let mut text = truncate(message, MAX_MESSAGE).to_owned();
    if text.len() < message.len() {
        text.push('…');
    }
    ResponseRef {
        status: status_of(kind),
        error_kind: kind,
        cold_start: cold,
        duration_ns: took,
        call_id,
        error: &text,
        headers: Vec::new(),
        body: &[],
    }
    .encode()
    .unwrap_or_default()
}

fn bad_input(call_id: &str, message: &str, took: u64, cold: bool) -> Vec<u8> {
    let body = json!({"error": {"code": 400, "message": truncate(message, MAX_MESSAGE), "layer": "function"}});
    let body = body.to_string();
    encode(&ResponseRef {
        status: 400,
        error_kind: error_kind::NONE,
        cold_start: cold,
        duration_ns: took,
        call_id,
        error: "",
        headers: vec![("content-type", "application/json")],
        body: body.as_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_five_percent_capped_at_50ms() {
        assert_eq!(usable_budget(60_000), Duration::from_millis(59_950));
        assert_eq!(usable_budget(200), Duration::from_millis(190));
        assert_eq!(usable_budget(0), Duration::ZERO);
    }

    #[test]
    fn margin_and_error_kinds_are_the_cross_runtime_facts() {
        let facts = crate::facts::read();
        let margin = &facts["runtime_margin"];
        assert_eq!(margin["fraction"].as_f64(), Some(MARGIN_FRACTION));
        assert_eq!(
            margin["max_ms"].as_u64().map(Duration::from_millis),
            Some(MARGIN_MAX)
        );
        let kinds: std::collections::BTreeMap<String, u8> =
            serde_json::from_value(facts["error_kinds"].clone()).unwrap();
        let ours = [
            ("none", error_kind::NONE),
            ("handler", error_kind::HANDLER),
            ("timeout", error_kind::TIMEOUT),
            ("busy", error_kind::BUSY),
            ("bad_request", error_kind::BAD_REQUEST),
            ("response_too_large", error_kind::RESPONSE_TOO_LARGE),
            ("internal", error_kind::INTERNAL),
        ];
        assert_eq!(
            kinds,
            ours.iter().map(|&(k, v)| (k.to_owned(), v)).collect()
        );
    }

    #[test]
    fn error_replies_decode() {
        let payload = error_reply("c1", error_kind::TIMEOUT, &"é".repeat(5000), 7, true);
        let decoded = _native::envelope::ResponseRef::decode(&payload).unwrap();
        assert_eq!(
            (decoded.status, decoded.error_kind, decoded.cold_start),
            (504, 2, true)
        );
        assert!(decoded.error.ends_with('…') && decoded.error.len() <= MAX_MESSAGE + 3);
    }
}
