package serving

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"compress/gzip"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"litefunctions.io/runtime/envelope"
)

// received is what a fake collector got: each request decoded with the official OTLP Go types.
type received struct {
	mu       sync.Mutex
	requests []*collectorpb.ExportTraceServiceRequest
	headers  []http.Header
}

func fakeCollector(t *testing.T) (*httptest.Server, *received) {
	t.Helper()
	got := &received{}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad request", 400)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			body = zr
		}
		data, _ := io.ReadAll(body)
		request := &collectorpb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(data, request); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		got.mu.Lock()
		got.requests = append(got.requests, request)
		got.headers = append(got.headers, r.Header.Clone())
		got.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(server.Close)
	return server, got
}

func TestOTLPExportDecodesWithTheOfficialTypes(t *testing.T) {
	server, got := fakeCollector(t)
	exporter, err := newOTLPExporter(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": server.URL + "/", "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s%20ecret,other=1",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
	})
	if err != nil {
		t.Fatal(err)
	}
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	tr := &tracing{provider: provider, tracer: provider.Tracer(tracerName)}
	req := &envelope.Request{CallID: "c1", Method: "GET", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "vendor=x"}
	span := tr.start(req, "default", "hello", true)
	span.SetAttributes(attribute.StringSlice("tags", []string{"a", "b"}), attribute.Float64("ratio", 0.5))
	failSpan(span, errors.New("boom"))
	endSpan(span, errorReply("c1", envelope.ErrHandler, "boom", 0, true), "")
	_, inner := provider.Tracer("handler").Start(context.Background(), "inner")
	inner.End()
	if err := exporter.ExportSpans(context.Background(), recorder.Ended()); err != nil {
		t.Fatal(err)
	}
	if len(got.requests) != 1 || got.headers[0].Get("X-Api-Key") != "s ecret" || got.headers[0].Get("Other") != "1" {
		t.Fatalf("%d requests, headers %v", len(got.requests), got.headers)
	}
	rs := got.requests[0].GetResourceSpans()
	if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 2 {
		t.Fatalf("resource spans %v", rs)
	}
	var service string
	for _, kv := range rs[0].GetResource().GetAttributes() {
		if kv.GetKey() == "service.name" {
			service = kv.GetValue().GetStringValue()
		}
	}
	if service == "" {
		t.Errorf("no service.name in %v", rs[0].GetResource())
	}
	scope := rs[0].GetScopeSpans()[0]
	if scope.GetScope().GetName() != tracerName || len(scope.GetSpans()) != 1 {
		t.Fatalf("scope %v", scope)
	}
	s := scope.GetSpans()[0]
	attrs := map[string]string{}
	for _, kv := range s.GetAttributes() {
		attrs[kv.GetKey()] = kv.GetValue().String()
	}
	if s.GetName() != "hello" || s.GetKind() != tracepb.Span_SPAN_KIND_SERVER ||
		string(s.GetParentSpanId()) != "\x00\xf0\x67\xaa\x0b\xa9\x02\xb7" || s.GetTraceState() != "vendor=x" ||
		len(s.GetTraceId()) != 16 || len(s.GetSpanId()) != 8 || s.GetEndTimeUnixNano() < s.GetStartTimeUnixNano() ||
		s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR || s.GetStatus().GetMessage() != "boom" ||
		len(s.GetEvents()) != 1 || s.GetEvents()[0].GetName() != "exception" {
		t.Errorf("span %v", s)
	}
	for key, want := range map[string]string{
		"faas.invocation_id": `string_value:"c1"`, "faas.coldstart": `bool_value:true`,
		"http.response.status_code": `int_value:500`, "ratio": `double_value:0.5`,
		"tags": `array_value:{values:{string_value:"a"} values:{string_value:"b"}}`,
	} {
		if normalize(attrs[key]) != normalize(want) {
			t.Errorf("%s = %s, want %s", key, attrs[key], want)
		}
	}
	if other := rs[0].GetScopeSpans()[1]; other.GetScope().GetName() != "handler" || other.GetSpans()[0].GetName() != "inner" {
		t.Errorf("handler scope %v", other)
	}
}

func normalize(s string) string {
	out := []rune{}
	for _, r := range s {
		if r != ' ' {
			out = append(out, r)
		}
	}
	return string(out)
}

func TestOTLPExportFailsOnAnErrorAnswer(t *testing.T) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer server.Close()
	exporter, err := newOTLPExporter(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": server.URL + "/custom"})
	if err != nil {
		t.Fatal(err)
	}
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	_, span := provider.Tracer("t").Start(context.Background(), "s")
	span.End()
	if err := exporter.ExportSpans(context.Background(), recorder.Ended()); err == nil {
		t.Fatal("a 503 answer was taken for a success")
	}
	if _, err := newOTLPExporter(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}); err == nil {
		t.Fatal("an endpoint without scheme was accepted")
	}
}
