package serving

import (
	"errors"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"litefunctions.io/runtime/envelope"
)

func TestTracingIsOnOnlyWhenConfigured(t *testing.T) {
	for _, tc := range []struct {
		env map[string]string
		on  bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, false},
		{map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, false},
		{map[string]string{"OTEL_SERVICE_NAME": "x"}, false},
	} {
		if got := tracingConfigured(tc.env); got != tc.on {
			t.Errorf("%v: configured=%v, want %v", tc.env, got, tc.on)
		}
	}
}

func recorded(t *testing.T) (*tracing, *tracetest.SpanRecorder) {
	t.Helper()
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	return &tracing{provider: provider, tracer: provider.Tracer(tracerName)}, recorder
}

func attrs(span sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range span.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

func TestTheCallsSpanContinuesTheEnvelopesTraceWithFaaSAttributes(t *testing.T) {
	tr, recorder := recorded(t)
	req := &envelope.Request{
		CallID: "c1", Method: "POST", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		TraceState: "vendor=x",
	}
	span := tr.start(req, "default", "hello", true)
	failSpan(span, errors.New("boom"))
	endSpan(span, errorReply("c1", envelope.ErrHandler, "boom", 0, true), "")
	ended := recorder.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans", len(ended))
	}
	s := ended[0]
	if s.Name() != "hello" || s.SpanKind() != trace.SpanKindServer {
		t.Errorf("name %q kind %v", s.Name(), s.SpanKind())
	}
	if s.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent().SpanID().String() != "00f067aa0ba902b7" ||
		s.SpanContext().TraceID() != s.Parent().TraceID() || s.SpanContext().TraceState().String() != "vendor=x" {
		t.Errorf("not the envelope's trace: parent %v, own %v", s.Parent(), s.SpanContext())
	}
	a := attrs(s)
	if a["faas.invocation_id"].AsString() != "c1" || a["faas.trigger"].AsString() != "http" || !a["faas.coldstart"].AsBool() ||
		a["faas.name"].AsString() != "hello" || a["litefunctions.namespace"].AsString() != "default" ||
		a["http.request.method"].AsString() != "POST" || a["http.response.status_code"].AsInt64() != 500 {
		t.Errorf("attributes %v", a)
	}
	if s.Status().Code != codes.Error || s.Status().Description != "boom" || len(s.Events()) != 1 || s.Events()[0].Name != "exception" {
		t.Errorf("status %v, events %v", s.Status(), s.Events())
	}
}

func TestRefusedAndTimedOutCallsAreErrorSpans(t *testing.T) {
	tr, recorder := recorded(t)
	req := &envelope.Request{CallID: "c2", Method: "GET"}
	tr.refused(req, "default", "hello", errorReply("c2", envelope.ErrBusy, "busy", 0, false), "busy")
	ok := tr.start(req, "default", "hello", false)
	endSpan(ok, encode(&envelope.Response{Status: 200, CallID: "c2"}), "")
	ended := recorder.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans", len(ended))
	}
	busy, done := ended[0], ended[1]
	if busy.Status().Code != codes.Error || attrs(busy)["error.type"].AsString() != "busy" ||
		attrs(busy)["http.response.status_code"].AsInt64() != 503 || busy.Parent().IsValid() {
		t.Errorf("busy span: status %v attrs %v", busy.Status(), attrs(busy))
	}
	if done.Status().Code == codes.Error || done.SpanKind() != trace.SpanKindServer || attrs(done)["faas.trigger"].AsString() != "http" {
		t.Errorf("answered call's span: status %v kind %v attrs %v", done.Status(), done.SpanKind(), attrs(done))
	}
}

// expire (or abandon) may answer a call before its worker started the call's span: the span is ended once,
// with the timeout, whichever of the two comes first.
func TestATimedOutCallsSpanEndsOnceWhicheverComesFirst(t *testing.T) {
	for _, expireFirst := range []bool{true, false} {
		tr, recorder := recorded(t)
		req := &envelope.Request{CallID: "c1", Method: "GET"}
		c := &call{req: req}
		payload := errorReply("c1", envelope.ErrTimeout, "late", 0, false)
		if expireFirst {
			c.endSpanOnce(payload, "timeout")
			c.setSpan(tr.start(req, "default", "hello", false))
		} else {
			c.setSpan(tr.start(req, "default", "hello", false))
			c.endSpanOnce(payload, "timeout")
		}
		ended := recorder.Ended()
		if len(ended) != 1 {
			t.Fatalf("expire first %v: %d spans ended, want 1", expireFirst, len(ended))
		}
		got := attrs(ended[0])
		if got["error.type"].AsString() != "timeout" || got["http.response.status_code"].AsInt64() != 504 {
			t.Fatalf("expire first %v: attributes %v", expireFirst, got)
		}
	}
}
