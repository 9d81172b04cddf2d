//! The runtime's OpenTelemetry span around each call, when tracing is configured: the Python runtime's
//! (`runtimes/python/src/lf_runtime/tracing.py`, docs/metrics.md "Tracing").
//!
//! On when `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_TRACES_EXPORTER` is set,
//! unless `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` (read once at start-up). Off, serving tests
//! one `Option` per call and nothing of OpenTelemetry runs. On: an SDK tracer provider with a batch span
//! processor (its own thread; `OTEL_BSP_*`) over the OTLP exporter, protobuf over HTTP (`http/protobuf`, the
//! only protocol built in). The SDK reads `OTEL_SERVICE_NAME` (default `litefunctions-runtime`),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)` and the exporter `OTEL_EXPORTER_OTLP_*` itself.
//! The exporter's HTTP client is the tiny blocking HTTP/1.1 one below (plain `http://`, as an in-cluster
//! collector is): no reqwest, hyper or TLS stack in the runtime for it.
//!
//! One span per call, named after the function, kind SERVER, its parent the envelope's W3C
//! `traceparent`/`tracestate`; attributes `faas.invocation_id`, `faas.trigger` (`http`), `faas.coldstart`, `faas.name`, `litefunctions.namespace`, `http.request.method`, and at
//! the end `http.response.status_code` (and `error.type`: `timeout`, `drain_timeout`). A call refused before any
//! handler ran (busy, no budget left) gets a span begun and ended at once, `error.type` `busy` or `timeout`. Status ERROR for any
//! runtime error kind or a 5xx; a handler's error or panic is recorded as an `exception` event with the status
//! description the error's message. The handler sees the span's context as `req.traceparent`/`req.tracestate`,
//! so its own spans and outgoing calls nest under the runtime's. Spans are exported at `shutdown`, after the
//! drain.
//!
//! Built with the `otel` cargo feature, on by default (it costs a cold build about 21 s of CPU); without it a
//! configured OTEL logs `tracing_unavailable` once and serving goes on untraced.

/// Whether the standard variables ask for traces (`lf_core.tracing.configured`).
pub fn configured<S: std::hash::BuildHasher>(
    env: &std::collections::HashMap<String, String, S>,
) -> bool {
    let get = |key: &str| env.get(key).map_or("", |v| v.trim());
    if get("OTEL_SDK_DISABLED").eq_ignore_ascii_case("true") {
        return false;
    }
    let exporter = get("OTEL_TRACES_EXPORTER").to_ascii_lowercase();
    if exporter == "none" {
        return false;
    }
    !exporter.is_empty()
        || !get("OTEL_EXPORTER_OTLP_ENDPOINT").is_empty()
        || !get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_empty()
}

#[cfg(feature = "otel")]
pub use enabled::{CallSpan, Tracing};

#[cfg(not(feature = "otel"))]
pub use disabled::{CallSpan, Tracing};

/// What a span is started from: the request envelope's fields.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub call_id: &'a str,
    pub method: &'a str,
    pub traceparent: &'a str,
    pub tracestate: &'a str,
}

/// What ends a span: the response envelope (status at bytes 4..6, error kind at 6) and an `error.type`.
fn answered(payload: &[u8]) -> (u16, u8) {
    if payload.len() > 6 {
        (u16::from_le_bytes([payload[4], payload[5]]), payload[6])
    } else {
        (0, 0)
    }
}

#[cfg(not(feature = "otel"))]
mod disabled {
    /// Built without the `otel` feature: never constructed.
    #[derive(Debug)]
    pub struct Tracing(());

    #[derive(Debug)]
    pub struct CallSpan(());

    impl Tracing {
        pub fn setup() -> Result<Self, String> {
            Err("this binary was built without the `otel` feature of lf-runtime".to_owned())
        }

        pub fn start(&self, _: &str, _: &str, _: &mut crate::types::Request, _: bool) -> CallSpan {
            CallSpan(())
        }

        pub fn shutdown(&self) -> Result<(), String> {
            Ok(())
        }

        pub fn refused(&self, _: &str, _: &str, _: &super::Envelope<'_>, _: &[u8], _: &str) {}
    }

    impl CallSpan {
        pub fn fail(&mut self, _: &str) {}

        pub fn end(self, payload: &[u8], _: &str) {
            let _ = super::answered(payload);
        }
    }
}

#[cfg(feature = "otel")]
mod enabled {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{
        Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
    };
    use opentelemetry::{Context, KeyValue};
    use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};
    use opentelemetry_sdk::Resource;

    const SERVICE: &str = "litefunctions-runtime";
    const TRACER: &str = "litefunctions";

    /// The process's tracer provider.
    #[derive(Debug)]
    pub struct Tracing {
        provider: SdkTracerProvider,
        tracer: SdkTracer,
    }

    /// One call's span, until the call is answered (and whether `fail` set its status already).
    #[derive(Debug)]
    pub struct CallSpan(Span, bool);

    impl Tracing {
        pub fn setup() -> Result<Self, String> {
            let exporters = std::env::var("OTEL_TRACES_EXPORTER").unwrap_or_default();
            for name in exporters.split(',').map(str::trim) {
                if !matches!(name, "" | "otlp" | "none") {
                    return Err(format!(
                        "OTEL_TRACES_EXPORTER={name:?}: only otlp is built into the Rust runtime"
                    ));
                }
            }
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_http_client(BlockingHttp {
                    timeout: export_timeout(),
                })
                .build()
                .map_err(|e| format!("OTLP exporter: {e}"))?;
            let mut resource = Resource::builder().build(); // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
            let service = resource
                .get(&opentelemetry::Key::new("service.name"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            if service.is_empty() || service.starts_with("unknown_service") {
                resource = Resource::builder().with_service_name(SERVICE).build();
            }
            let provider = SdkTracerProvider::builder()
                .with_resource(resource)
                .with_batch_exporter(exporter)
                .build();
            let tracer = provider.tracer(TRACER);
            Ok(Self { provider, tracer })
        }

        /// Start the call's span under the envelope's trace context; `req.traceparent`/`tracestate` become the
        /// span's, for the handler.
        pub fn start(
            &self,
            namespace: &str,
            function: &str,
            req: &mut crate::types::Request,
            cold: bool,
        ) -> CallSpan {
            let envelope = super::Envelope {
                call_id: &req.call_id,
                method: &req.method,
                traceparent: &req.traceparent,
                tracestate: &req.tracestate,
            };
            let span = self.span(namespace, function, &envelope, cold);
            let context = Context::new().with_remote_span_context(span.span_context().clone());
            let mut outgoing = HashMap::new();
            TraceContextPropagator::new().inject_context(&context, &mut outgoing);
            if let Some(traceparent) = outgoing.remove("traceparent") {
                req.traceparent = traceparent;
                req.tracestate = outgoing.remove("tracestate").unwrap_or_default();
            }
            CallSpan(span, false)
        }

        /// A call answered before any handler ran (`busy`, or `timeout`: no budget left): a span begun and ended
        /// at once, so the trace shows which replica refused it and why.
        pub fn refused(
            &self,
            namespace: &str,
            function: &str,
            envelope: &super::Envelope<'_>,
            payload: &[u8],
            error: &str,
        ) {
            CallSpan(self.span(namespace, function, envelope, false), false).end(payload, error);
        }

        fn span(
            &self,
            namespace: &str,
            function: &str,
            req: &super::Envelope<'_>,
            cold: bool,
        ) -> Span {
            let mut carrier = HashMap::new();
            if !req.traceparent.is_empty() {
                carrier.insert("traceparent".to_owned(), req.traceparent.to_owned());
                carrier.insert("tracestate".to_owned(), req.tracestate.to_owned());
            }
            let parent = TraceContextPropagator::new().extract(&carrier);
            self.tracer
                .span_builder(function.to_owned())
                .with_kind(SpanKind::Server)
                .with_attributes([
                    KeyValue::new("faas.invocation_id", req.call_id.to_owned()),
                    KeyValue::new("faas.trigger", "http"),
                    KeyValue::new("faas.coldstart", cold),
                    KeyValue::new("faas.name", function.to_owned()),
                    KeyValue::new("litefunctions.namespace", namespace.to_owned()),
                    KeyValue::new("http.request.method", req.method.to_owned()),
                ])
                .start_with_context(&self.tracer, &parent)
        }

        /// Export what is buffered and stop (after the drain).
        pub fn shutdown(&self) -> Result<(), String> {
            self.provider.shutdown().map_err(|e| e.to_string())
        }
    }

    impl CallSpan {
        /// The handler failed (an error or a panic): an `exception` event, status ERROR with the message.
        pub fn fail(&mut self, message: &str) {
            self.0.add_event(
                "exception",
                vec![
                    KeyValue::new("exception.type", "handler_error"),
                    KeyValue::new("exception.message", message.to_owned()),
                ],
            );
            self.0.set_status(Status::error(message.to_owned()));
            self.1 = true;
        }

        /// End with what the call answered; `error` is the `error.type` (`timeout`, `drain_timeout`) or "".
        pub fn end(mut self, payload: &[u8], error: &str) {
            let (status, kind) = super::answered(payload);
            let span = &mut self.0;
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if kind != 0 || status >= 500 || !error.is_empty() {
                if !error.is_empty() {
                    span.set_attribute(KeyValue::new("error.type", error.to_owned()));
                }
                if !self.1 {
                    span.set_status(Status::error(error.to_owned())); // else keep fail()'s description
                }
            }
            span.end();
        }
    }

    fn export_timeout() -> Duration {
        [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .iter()
        .find_map(|key| std::env::var(key).ok()?.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
    }

    /// A blocking HTTP/1.1 client for the exporter (the batch processor runs exports on its own thread).
    #[derive(Debug)]
    struct BlockingHttp {
        timeout: Duration,
    }

    #[async_trait::async_trait]
    impl HttpClient for BlockingHttp {
        async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
            post(&request, self.timeout)
        }
    }

    fn post(request: &Request<Bytes>, timeout: Duration) -> Result<Response<Bytes>, HttpError> {
        let uri = request.uri();
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "{uri}: only http:// collectors are supported by the Rust runtime's exporter"
            )
            .into());
        }
        let host = uri.host().ok_or("no host in the OTLP endpoint")?;
        let port = uri.port_u16().unwrap_or(80);
        let address = (host, port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        let mut stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = uri.authority().map_or(host, |a| a.as_str());
        let mut head = format!(
            "{} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n",
            request.method()
        );
        for (name, value) in request.headers() {
            if name == http::header::CONTENT_LENGTH || name == http::header::CONNECTION {
                continue;
            }
            head.push_str(name.as_str());
            head.push_str(": ");
            head.push_str(value.to_str().unwrap_or_default());
            head.push_str("\r\n");
        }
        head.push_str("Content-Length: ");
        head.push_str(&request.body().len().to_string());
        head.push_str("\r\n\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(request.body())?;
        let mut answer = Vec::new();
        stream.take(4 << 20).read_to_end(&mut answer)?;
        parse_response(&answer)
    }

    fn parse_response(answer: &[u8]) -> Result<Response<Bytes>, HttpError> {
        let end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("the collector's answer has no header end")?;
        let head = std::str::from_utf8(&answer[..end])?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or("the collector's answer has no status")?;
        let mut builder = Response::builder().status(status);
        let mut chunked = false;
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                chunked |= name.trim().eq_ignore_ascii_case("transfer-encoding")
                    && value.trim().eq_ignore_ascii_case("chunked");
                builder = builder.header(name.trim(), value.trim());
            }
        }
        let mut body = answer[end + 4..].to_vec();
        if chunked {
            body = dechunk(&body);
        }
        Ok(builder.body(Bytes::from(body))?)
    }

    fn dechunk(mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&data[..line_end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .unwrap_or(0);
            let start = line_end + 2;
            if size == 0 || start + size > data.len() {
                break;
            }
            out.extend_from_slice(&data[start..start + size]);
            data = &data[(start + size + 2).min(data.len())..];
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A real export: the span's parent, kind, attributes and status as a collector receives them.
        #[test]
        #[allow(clippy::too_many_lines)] // one export, checked field by field
        fn exports_the_call_span_under_the_envelope_context() {
            use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
            use opentelemetry_proto::tonic::common::v1::any_value::Value;
            use prost::Message as _;

            let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let endpoint = format!("http://{}/v1/traces", sink.local_addr().unwrap());
            let received = std::thread::spawn(move || {
                let (mut stream, _) = sink.accept().unwrap();
                let mut data = Vec::new();
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = stream.read(&mut buf).unwrap();
                    data.extend_from_slice(&buf[..n]);
                    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    if data.len() >= end + 4 + length {
                        stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                            .unwrap();
                        return (head, data[end + 4..end + 4 + length].to_vec());
                    }
                }
            });
            std::env::set_var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint);
            let tracing = Tracing::setup().unwrap();
            let parent_trace = "0af7651916cd43dd8448eb211c80319c";
            let parent_span = "b7ad6b7169203331";
            let mut req = crate::types::Request {
                call_id: "call-1".into(),
                method: "POST".into(),
                path: "/".into(),
                query: String::new(),
                headers: Vec::new(),
                params: Vec::new(),
                body: Vec::new(),
                traceparent: format!("00-{parent_trace}-{parent_span}-01"),
                tracestate: "k=v".into(),
                deadline: std::time::Instant::now(),
                output: crate::capture::Output::default(),
            };
            let mut span = tracing.start("ns", "hello", &mut req, true);
            span.fail("boom");
            let payload = _native::envelope::ResponseRef {
                status: 500,
                error_kind: 1,
                cold_start: true,
                duration_ns: 1,
                call_id: "call-1",
                error: "boom",
                headers: Vec::new(),
                body: &[],
            }
            .encode()
            .unwrap();
            span.end(&payload, "");
            tracing.shutdown().unwrap();
            let (head, body) = received.join().unwrap();
            assert!(head.starts_with("post /v1/traces http/1.1"), "{head}");
            assert!(
                head.contains("content-type: application/x-protobuf"),
                "{head}"
            );
            let export = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            let resource = export.resource_spans[0].resource.as_ref().unwrap();
            let service = resource
                .attributes
                .iter()
                .find(|a| a.key == "service.name")
                .unwrap();
            assert_eq!(
                service.value.as_ref().unwrap().value,
                Some(Value::StringValue("litefunctions-runtime".into()))
            );
            let spans = &export.resource_spans[0].scope_spans[0].spans;
            assert_eq!(spans.len(), 1);
            let span = &spans[0];
            assert_eq!(span.name, "hello");
            assert_eq!(span.kind, 2); // SERVER
            assert_eq!(hex(&span.trace_id), parent_trace);
            assert_eq!(hex(&span.parent_span_id), parent_span);
            // The handler saw the runtime span's context.
            assert_eq!(
                req.traceparent,
                format!("00-{parent_trace}-{}-01", hex(&span.span_id))
            );
            assert_eq!(req.tracestate, "k=v");
            let attribute = |key: &str| {
                span.attributes
                    .iter()
                    .find(|a| a.key == key)
                    .and_then(|a| a.value.clone()?.value)
            };
            assert_eq!(
                attribute("faas.invocation_id"),
                Some(Value::StringValue("call-1".into()))
            );
            assert_eq!(
                attribute("faas.trigger"),
                Some(Value::StringValue("http".into()))
            );
            assert_eq!(attribute("faas.coldstart"), Some(Value::BoolValue(true)));
            assert_eq!(
                attribute("faas.name"),
                Some(Value::StringValue("hello".into()))
            );
            assert_eq!(
                attribute("litefunctions.namespace"),
                Some(Value::StringValue("ns".into()))
            );
            assert_eq!(
                attribute("http.request.method"),
                Some(Value::StringValue("POST".into()))
            );
            assert_eq!(
                attribute("http.response.status_code"),
                Some(Value::IntValue(500))
            );
            let status = span.status.as_ref().unwrap();
            assert_eq!((status.code, status.message.as_str()), (2, "boom")); // ERROR, fail()'s message kept
            assert_eq!(span.events[0].name, "exception");
        }

        fn hex(bytes: &[u8]) -> String {
            bytes.iter().fold(String::new(), |mut out, b| {
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{b:02x}"));
                out
            })
        }

        #[test]
        fn parses_plain_and_chunked_answers() {
            let plain = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
            assert_eq!(
                (plain.status().as_u16(), plain.body().as_ref()),
                (200, &b"ok"[..])
            );
            let chunked = parse_response(
                b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            )
            .unwrap();
            assert_eq!(chunked.status().as_u16(), 400);
            assert_eq!(chunked.body().as_ref(), b"abcde");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn configured_like_the_python_runtime() {
        assert!(!configured(&env(&[])));
        assert!(configured(&env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://c:4318"
        )])));
        assert!(configured(&env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
        assert!(configured(&env(&[("OTEL_TRACES_EXPORTER", "otlp")])));
        assert!(!configured(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none")
        ])));
        assert!(!configured(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "TRUE")
        ])));
    }

    #[test]
    fn reads_status_and_kind_from_the_envelope() {
        let payload = _native::envelope::ResponseRef {
            status: 504,
            error_kind: 2,
            cold_start: false,
            duration_ns: 1,
            call_id: "c",
            error: "late",
            headers: Vec::new(),
            body: &[],
        }
        .encode()
        .unwrap();
        assert_eq!(answered(&payload), (504, 2));
    }
}
