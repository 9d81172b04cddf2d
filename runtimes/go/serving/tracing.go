package serving

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"litefunctions.io/runtime/envelope"
)

// OpenTelemetry tracing, off unless configured, as in the Python runtime (runtimes/python/src/lf_runtime/
// tracing.py, docs/metrics.md "Tracing"): one span per call named after the function, whose parent is the
// request envelope's W3C trace context (the ingestor's span, or the caller's traceparent as it came), with the
// FaaS attributes; it is in the handler's ctx, so spans the handler starts (otel.Tracer(...).Start(ctx, ...))
// nest under it. Off, the replica has no tracer and the hot path tests one nil pointer; nothing of the SDK
// runs.
//
// On when OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER is set,
// unless OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true. The exporter is OTLP over HTTP/protobuf (otlp.go,
// reading OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT/HEADERS/TIMEOUT/COMPRESSION); the SDK reads the other standard
// variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*). The batch processor
// is flushed when the replica stops.

const (
	runtimeService = "litefunctions-runtime"
	tracerName     = "litefunctions"
)

// tracingConfigured is the Python runtime's lf_core.tracing.configured.
func tracingConfigured(env map[string]string) bool {
	if strings.EqualFold(strings.TrimSpace(env["OTEL_SDK_DISABLED"]), "true") {
		return false
	}
	exporter := strings.ToLower(strings.TrimSpace(env["OTEL_TRACES_EXPORTER"]))
	if exporter == "none" {
		return false
	}
	return exporter != "" || env["OTEL_EXPORTER_OTLP_ENDPOINT"] != "" || env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != ""
}

// tracing is the replica's tracer and the provider to flush at stop.
type tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
}

// setupTracing installs the process's TracerProvider (also as otel's global one, for the handler's spans).
// warn gets what is configured but not supported.
func setupTracing(env map[string]string, warn func(event string, fields ...any)) (*tracing, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", runtimeService)))
	if err != nil {
		return nil, err
	}
	if fromEnv, err := resource.New(context.Background(), resource.WithFromEnv()); err == nil {
		if merged, err := resource.Merge(res, fromEnv); err == nil { // OTEL_SERVICE_NAME wins over our default
			res = merged
		}
	}
	options := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)} // sampler: OTEL_TRACES_SAMPLER
	exporters := env["OTEL_TRACES_EXPORTER"]
	if strings.TrimSpace(exporters) == "" {
		exporters = "otlp"
	}
	added := false
	for _, name := range strings.Split(strings.ToLower(exporters), ",") {
		switch name = strings.TrimSpace(name); name {
		case "", "none":
		case "otlp":
			if added {
				continue
			}
			exporter, err := traceExporter(env, warn)
			if err != nil {
				return nil, err
			}
			options = append(options, sdktrace.WithBatcher(exporter)) // OTEL_BSP_* from the environment
			added = true
		default: // "console" too: the Python runtime's console exporter has no twin here
			warn("unsupported_traces_exporter", "exporter", name)
		}
	}
	provider := sdktrace.NewTracerProvider(options...)
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &tracing{provider: provider, tracer: provider.Tracer(tracerName)}, nil
}

func traceExporter(env map[string]string, warn func(event string, fields ...any)) (sdktrace.SpanExporter, error) {
	protocol := env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"]
	if protocol == "" {
		protocol = env["OTEL_EXPORTER_OTLP_PROTOCOL"]
	}
	if protocol != "" && protocol != "http/protobuf" {
		warn("only OTLP over http/protobuf is built in; using it", "requested", protocol)
	}
	return newOTLPExporter(env) // endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_* (otlp.go)
}

// start begins a call's span (the handler's ctx gets it in Replica.invoke).
func (t *tracing) start(req *envelope.Request, namespace, function string, cold bool) trace.Span {
	parent := context.Background()
	if req.TraceParent != "" {
		parent = propagation.TraceContext{}.Extract(parent, &traceCarrier{req.TraceParent, req.TraceState})
	}
	_, span := t.tracer.Start(parent, function,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("faas.invocation_id", req.CallID),
			attribute.String("faas.trigger", "http"),
			attribute.Bool("faas.coldstart", cold),
			attribute.String("faas.name", function),
			attribute.String("litefunctions.namespace", namespace),
			attribute.String("http.request.method", req.Method),
		))
	return span
}

// traceCarrier is the request envelope's trace context as a propagation.TextMapCarrier (a MapCarrier is a map
// built per call).
type traceCarrier struct{ parent, state string }

func (c *traceCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.parent
	case "tracestate":
		return c.state
	}
	return ""
}

func (c *traceCarrier) Set(string, string) {}

func (c *traceCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// refused is the span of a call answered before any handler ran (errType "busy", or "timeout": no time
// left), begun and ended at once, so the trace shows which replica refused it and why.
func (t *tracing) refused(req *envelope.Request, namespace, function string, payload []byte, errType string) {
	endSpan(t.start(req, namespace, function, false), payload, errType)
}

// failSpan records what the handler returned or panicked with.
func failSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// endSpan ends span with the call's answer (a response envelope: status at 4..6, error kind at 6); errType
// ("timeout", "drain_timeout") names a runtime failure.
func endSpan(span trace.Span, payload []byte, errType string) {
	if span == nil {
		return
	}
	var status uint16
	var kind byte
	if len(payload) > 6 {
		status, kind = binary.LittleEndian.Uint16(payload[4:6]), payload[6]
	}
	span.SetAttributes(attribute.Int("http.response.status_code", int(status)))
	if kind != 0 || status >= 500 || errType != "" {
		if errType != "" {
			span.SetAttributes(attribute.String("error.type", errType))
		}
		if ro, ok := span.(sdktrace.ReadOnlySpan); !ok || ro.Status().Code != codes.Error { // keep failSpan's
			span.SetStatus(codes.Error, errType)
		}
	}
	span.End()
}

// shutdown exports what is buffered (within timeout).
func (t *tracing) shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("exporting the last spans: %w", err)
	}
	return nil
}
