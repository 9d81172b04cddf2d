//! The replica's `/metrics` (`LF_METRICS_PORT` > 0): atomics on the hot path, prometheus-client at scrape time.
//!
//! The same families, types, labels, outcomes and buckets as the Python runtime
//! (`runtimes/python/src/lf_runtime/metrics.py`, docs/metrics.md). A call costs the replica three relaxed atomic additions (its outcome, its
//! duration's bucket found by a binary search over integer nanoseconds, the duration sum) plus an increment and
//! a decrement of the in-flight gauge; no lock and no allocation. At scrape time a prometheus-client `Collector`
//! reads the atomics and renders the Prometheus text format 0.0.4 (what the Python replica serves), so the
//! crate never runs per call. The one difference in the text: prometheus-client writes bucket bounds the way Go
//! does (`le="1"`, where Python writes `le="1.0"`); Prometheus parses both to the same number.
//!
//! The listener is a minimal HTTP/1.1 responder on a tokio `TcpListener` (one request per connection, `GET` or
//! `HEAD /metrics` only, 5 s to send the request head), like the Python runtime's asyncio one: nothing in the
//! runtime's dependency tree serves HTTP, and a scrape endpoint does not justify hyper's.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Label values of `litefunctions_runtime_calls_total{outcome}`, indexed by [`Outcome`].
pub const OUTCOMES: [&str; 7] = [
    "ok",
    "handler_error",
    "timeout",
    "busy",
    "bad_request",
    "too_large",
    "internal",
];

/// How a call was answered (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok = 0,
    HandlerError = 1,
    Timeout = 2,
    Busy = 3,
    BadRequest = 4,
    TooLarge = 5,
    Internal = 6,
}

/// The ingestor's duration buckets in seconds (`native/vectors/facts.json`, checked by the tests).
pub const DURATION_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// `DURATION_BUCKETS` in nanoseconds, so a duration is placed with integer comparisons.
const BUCKETS_NS: [u64; 18] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    120_000_000_000,
    300_000_000_000,
];

const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEAD: usize = 8192;

/// The replica's counters; shared (`Arc`) between the serving tasks and the listener.
#[derive(Debug)]
pub struct Metrics {
    namespace: String,
    function: String,
    calls: [AtomicU64; OUTCOMES.len()],
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    duration: [AtomicU64; BUCKETS_NS.len() + 1],
    duration_sum_ns: AtomicU64,
    inflight: AtomicUsize,
    /// Whether the replica's first call has started (the cold-start counter is 0 or 1).
    pub(crate) cold_started: AtomicBool,
    /// Sync handlers still running past their call's deadline (the serving code keeps it).
    pub(crate) stuck: AtomicUsize,
}

impl Metrics {
    pub fn new(namespace: &str, function: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            function: function.to_owned(),
            calls: Default::default(),
            duration: Default::default(),
            duration_sum_ns: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            cold_started: AtomicBool::new(false),
            stuck: AtomicUsize::new(0),
        }
    }

    /// A call answered with `outcome`, without a duration (refused before it ran: busy, bad envelope, ...).
    pub fn count(&self, outcome: Outcome) {
        self.calls[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A call that ran (or timed out) answered with `outcome` after `duration_ns` since its arrival.
    pub fn record(&self, outcome: Outcome, duration_ns: u64) {
        self.count(outcome);
        let bucket = BUCKETS_NS.partition_point(|&bound| bound < duration_ns); // `le`: bound >= duration
        self.duration[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_ns
            .fetch_add(duration_ns, Ordering::Relaxed);
    }

    pub(crate) fn admitted(&self) {
        self.inflight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn left(&self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The Prometheus text (format 0.0.4) of every family.
    pub fn render(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

fn load(value: &AtomicU64) -> u64 {
    value.load(Ordering::Relaxed)
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let (ns, function) = (self.namespace.as_str(), self.function.as_str());
        let labels = [("namespace", ns), ("function", function)];

        let mut family = encoder.encode_descriptor(
            "litefunctions_runtime_calls",
            "Calls this replica answered, by outcome",
            None,
            MetricType::Counter,
        )?;
        for (outcome, count) in OUTCOMES.iter().zip(&self.calls) {
            let labels = [
                ("namespace", ns),
                ("function", function),
                ("outcome", outcome),
            ];
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&load(count), None)?;
        }

        let mut family = encoder.encode_descriptor(
            "litefunctions_runtime_handler_duration_seconds",
            "Time from a call's arrival in the replica to its answer (calls that ran, timeouts included)",
            None,
            MetricType::Histogram,
        )?;
        let counts: Vec<u64> = self.duration.iter().map(load).collect();
        let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(counts.iter().copied())
            .collect();
        #[allow(clippy::cast_precision_loss)]
        // a sum of nanoseconds past 2^53 (104 days) loses a few
        let sum = load(&self.duration_sum_ns) as f64 / 1e9;
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)?;

        let inflight = self.inflight.load(Ordering::Relaxed);
        gauge(
            &mut encoder,
            "litefunctions_runtime_inflight",
            "Calls running or queued",
            &labels,
            inflight,
        )?;
        counter(
            &mut encoder,
            "litefunctions_runtime_cold_starts",
            "Cold starts of this replica (0 or 1)",
            &labels,
            u64::from(self.cold_started.load(Ordering::Relaxed)),
        )?;
        gauge(
            &mut encoder,
            "litefunctions_runtime_stuck_handlers",
            "Sync handler threads still running past their call's deadline",
            &labels,
            self.stuck.load(Ordering::Relaxed),
        )
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &[(&str, &str); 2],
    value: u64,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &[(&str, &str); 2],
    value: usize,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_family(labels)?
        .encode_gauge(&value)
}

/// Serve `GET /metrics` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    serve_http(listener, move |path| {
        if path == b"/metrics" {
            (
                "200 OK",
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                metrics.render(),
            )
        } else {
            not_found()
        }
    })
    .await;
}

/// An answer of the listener: status line (e.g. "200 OK"), content type, body.
pub type Answer = (&'static str, &'static str, String);

/// The answer to a path the listener does not serve.
pub fn not_found() -> Answer {
    ("404 Not Found", "text/plain", "not found\n".to_owned())
}

/// Serve `answer(path)` (the path without its query) to `GET` and `HEAD` on `listener` until the task is aborted:
/// the one HTTP responder of the runtime, for `/metrics` and `/readyz` (`crate::health`).
pub async fn serve_http<F>(listener: TcpListener, answer: F)
where
    F: Fn(&[u8]) -> Answer + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // e.g. EMFILE: don't spin
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(READ_TIMEOUT, respond(stream, &*answer)).await;
        });
    }
}

async fn respond<F>(mut stream: TcpStream, answer: &F) -> std::io::Result<()>
where
    F: Fn(&[u8]) -> Answer,
{
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, content_type, body) = if method != b"GET" && method != b"HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        )
    } else {
        answer(path)
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != b"HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn buckets_and_outcomes_are_the_cross_runtime_facts() {
        let facts = crate::facts::read();
        let buckets: Vec<f64> =
            serde_json::from_value(facts["duration_buckets_s"].clone()).unwrap();
        assert_eq!(DURATION_BUCKETS.as_slice(), buckets.as_slice());
        let outcomes: Vec<String> =
            serde_json::from_value(facts["runtime_call_outcomes"].clone()).unwrap();
        assert_eq!(OUTCOMES.as_slice(), outcomes.as_slice());
    }

    #[test]
    fn buckets_match_the_seconds() {
        for (ns, s) in BUCKETS_NS.iter().zip(DURATION_BUCKETS) {
            #[allow(clippy::cast_precision_loss)]
            let seconds = *ns as f64 / 1e9;
            assert!((seconds - s).abs() < 1e-12, "{ns} ns vs {s} s");
        }
    }

    #[test]
    fn exposition_has_the_python_families() {
        let metrics = Arc::new(Metrics::new("default", "hello"));
        metrics.record(Outcome::Ok, 400_000); // 0.4 ms: first bucket
        metrics.record(Outcome::Ok, 500_000); // exactly 0.5 ms: still the first (le)
        metrics.record(Outcome::Timeout, 2_000_000_000);
        metrics.count(Outcome::Busy);
        metrics.admitted();
        metrics.cold_started.store(true, Ordering::Relaxed);
        let text = metrics.render();
        let l = r#"{namespace="default",function="hello""#;
        let expect = [
            (
                format!("litefunctions_runtime_calls_total{l},outcome=\"ok\"}}"),
                2.0,
            ),
            (
                format!("litefunctions_runtime_calls_total{l},outcome=\"timeout\"}}"),
                1.0,
            ),
            (
                format!("litefunctions_runtime_calls_total{l},outcome=\"busy\"}}"),
                1.0,
            ),
            (
                format!("litefunctions_runtime_calls_total{l},outcome=\"internal\"}}"),
                0.0,
            ),
            (
                format!("litefunctions_runtime_handler_duration_seconds_bucket{l},le=\"0.0005\"}}"),
                2.0,
            ),
            (
                format!("litefunctions_runtime_handler_duration_seconds_bucket{l},le=\"2.5\"}}"),
                3.0,
            ),
            (
                format!("litefunctions_runtime_handler_duration_seconds_bucket{l},le=\"+Inf\"}}"),
                3.0,
            ),
            (
                format!("litefunctions_runtime_handler_duration_seconds_count{l}}}"),
                3.0,
            ),
            (
                format!("litefunctions_runtime_handler_duration_seconds_sum{l}}}"),
                2.0009,
            ),
            (format!("litefunctions_runtime_inflight{l}}}"), 1.0),
            (format!("litefunctions_runtime_cold_starts_total{l}}}"), 1.0),
            (format!("litefunctions_runtime_stuck_handlers{l}}}"), 0.0),
        ];
        for (name, value) in expect {
            let got = sample(&text, &name).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
            assert!((got - value).abs() < 1e-9, "{name}: {got} != {value}");
        }
        for outcome in OUTCOMES {
            assert!(
                text.contains(&format!("outcome=\"{outcome}\"")),
                "{outcome}"
            );
        }
        let buckets = text
            .lines()
            .filter(|l| l.starts_with("litefunctions_runtime_handler_duration_seconds_bucket"))
            .count();
        assert_eq!(buckets, DURATION_BUCKETS.len() + 1);
        for line in [
            "# TYPE litefunctions_runtime_calls_total counter",
            "# TYPE litefunctions_runtime_handler_duration_seconds histogram",
            "# TYPE litefunctions_runtime_inflight gauge",
            "# TYPE litefunctions_runtime_cold_starts_total counter",
            "# TYPE litefunctions_runtime_stuck_handlers gauge",
            "# HELP litefunctions_runtime_calls_total Calls this replica answered, by outcome",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }

    #[tokio::test]
    async fn listener_answers_get_metrics_only() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new("ns", "f"));
        metrics.count(Outcome::Ok);
        let server = tokio::spawn(serve(listener, metrics));
        let get = |request: &'static str| async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let ok = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(ok.contains(
            r#"litefunctions_runtime_calls_total{namespace="ns",function="f",outcome="ok"} 1"#
        ));
        assert!(get("GET /other HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 405"));
        let head = get("HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        server.abort();
    }
}
