package serving

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// otlpExporter sends spans as OTLP/HTTP protobuf (an ExportTraceServiceRequest POSTed to .../v1/traces), encoded
// here with protowire. The official otlptracehttp exporter links gRPC and the OTLP service stubs into every
// replica (about 9 MiB of binary and 4.6 MiB of idle RSS, tracing on or off); this one adds next to nothing.
// It reads the standard variables: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT (ms, default 10 s)
// and _COMPRESSION (gzip or none). A failed export is reported to otel's error handler (the runtime's log) and
// its spans are dropped: no retry queue in a replica.
type otlpExporter struct {
	url         string
	headers     map[string]string
	timeout     time.Duration
	compression bool
	client      *http.Client
}

func newOTLPExporter(env map[string]string) (*otlpExporter, error) {
	get := func(name string) string {
		if v := strings.TrimSpace(env["OTEL_EXPORTER_OTLP_TRACES_"+name]); v != "" {
			return v
		}
		return strings.TrimSpace(env["OTEL_EXPORTER_OTLP_"+name])
	}
	e := &otlpExporter{headers: map[string]string{}, timeout: 10 * time.Second}
	switch {
	case strings.TrimSpace(env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]) != "":
		e.url = strings.TrimSpace(env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]) // as is
	case strings.TrimSpace(env["OTEL_EXPORTER_OTLP_ENDPOINT"]) != "":
		e.url = strings.TrimSuffix(strings.TrimSpace(env["OTEL_EXPORTER_OTLP_ENDPOINT"]), "/") + "/v1/traces"
	default:
		e.url = "http://localhost:4318/v1/traces"
	}
	if u, err := url.Parse(e.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("OTLP traces endpoint %q is not an http(s) URL", e.url)
	}
	for _, pair := range strings.Split(get("HEADERS"), ",") {
		if k, v, ok := strings.Cut(pair, "="); ok && strings.TrimSpace(k) != "" {
			key, _ := url.QueryUnescape(strings.TrimSpace(k))
			value, _ := url.QueryUnescape(strings.TrimSpace(v))
			e.headers[key] = value
		}
	}
	if raw := get("TIMEOUT"); raw != "" {
		if ms, err := strconv.Atoi(raw); err == nil && ms > 0 {
			e.timeout = time.Duration(ms) * time.Millisecond
		}
	}
	e.compression = strings.EqualFold(get("COMPRESSION"), "gzip")
	e.client = &http.Client{Timeout: e.timeout}
	return e, nil
}

// ExportSpans posts one request with every span (the batch processor calls it off the request path).
func (e *otlpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	body := encodeSpans(spans)
	if e.compression {
		var zipped bytes.Buffer
		w := gzip.NewWriter(&zipped)
		_, _ = w.Write(body)
		_ = w.Close()
		body = zipped.Bytes()
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if e.compression {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range e.headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("exporting %d spans: %w", len(spans), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("exporting %d spans: %s answered %s", len(spans), e.url, resp.Status)
	}
	return nil
}

// Shutdown closes idle connections.
func (e *otlpExporter) Shutdown(context.Context) error {
	e.client.CloseIdleConnections()
	return nil
}

// ----------------------------------------------------------------------------------------------- encoding

// encodeSpans is an ExportTraceServiceRequest (opentelemetry/proto/collector/trace/v1): the spans grouped by
// resource (one per provider) and instrumentation scope, in order.
func encodeSpans(spans []sdktrace.ReadOnlySpan) []byte {
	type scoped struct {
		scope instrumentation.Scope
		spans []byte
	}
	var out []byte
	for start := 0; start < len(spans); {
		res := spans[start].Resource()
		end := start
		for end < len(spans) && spans[end].Resource() == res {
			end++
		}
		var scopes []*scoped
		for _, span := range spans[start:end] {
			scope := span.InstrumentationScope()
			var group *scoped
			for _, s := range scopes {
				if s.scope.Name == scope.Name && s.scope.Version == scope.Version && s.scope.SchemaURL == scope.SchemaURL {
					group = s
					break
				}
			}
			if group == nil {
				group = &scoped{scope: scope}
				scopes = append(scopes, group)
			}
			group.spans = appendMessage(group.spans, 2, encodeSpan(span)) // ScopeSpans.spans
		}
		var rs []byte // ResourceSpans
		if res != nil {
			var r []byte // Resource
			for _, kv := range res.Attributes() {
				r = appendMessage(r, 1, encodeKeyValue(kv))
			}
			rs = appendMessage(rs, 1, r)
			rs = appendString(rs, 3, res.SchemaURL())
		}
		for _, s := range scopes {
			var scope []byte // InstrumentationScope
			scope = appendString(scope, 1, s.scope.Name)
			scope = appendString(scope, 2, s.scope.Version)
			ss := appendMessage(nil, 1, scope) // ScopeSpans
			ss = append(ss, s.spans...)
			ss = appendString(ss, 3, s.scope.SchemaURL)
			rs = appendMessage(rs, 2, ss)
		}
		out = appendMessage(out, 1, rs)
		start = end
	}
	return out
}

// encodeSpan is an opentelemetry.proto.trace.v1.Span.
func encodeSpan(span sdktrace.ReadOnlySpan) []byte {
	sc, parent := span.SpanContext(), span.Parent()
	traceID, spanID := sc.TraceID(), sc.SpanID()
	var b []byte
	b = appendBytes(b, 1, traceID[:])
	b = appendBytes(b, 2, spanID[:])
	b = appendString(b, 3, sc.TraceState().String())
	if parent.SpanID().IsValid() {
		parentID := parent.SpanID()
		b = appendBytes(b, 4, parentID[:])
	}
	b = appendString(b, 5, span.Name())
	b = appendVarint(b, 6, uint64(span.SpanKind())) // same numbering as OTLP's SpanKind
	b = appendFixed64(b, 7, uint64(span.StartTime().UnixNano()))
	b = appendFixed64(b, 8, uint64(span.EndTime().UnixNano()))
	for _, kv := range span.Attributes() {
		b = appendMessage(b, 9, encodeKeyValue(kv))
	}
	b = appendVarint(b, 10, uint64(max(span.DroppedAttributes(), 0)))
	for _, event := range span.Events() {
		var e []byte
		e = appendFixed64(e, 1, uint64(event.Time.UnixNano()))
		e = appendString(e, 2, event.Name)
		for _, kv := range event.Attributes {
			e = appendMessage(e, 3, encodeKeyValue(kv))
		}
		e = appendVarint(e, 4, uint64(max(event.DroppedAttributeCount, 0)))
		b = appendMessage(b, 11, e)
	}
	b = appendVarint(b, 12, uint64(max(span.DroppedEvents(), 0)))
	for _, link := range span.Links() {
		var l []byte
		linkTrace, linkSpan := link.SpanContext.TraceID(), link.SpanContext.SpanID()
		l = appendBytes(l, 1, linkTrace[:])
		l = appendBytes(l, 2, linkSpan[:])
		l = appendString(l, 3, link.SpanContext.TraceState().String())
		for _, kv := range link.Attributes {
			l = appendMessage(l, 4, encodeKeyValue(kv))
		}
		l = appendVarint(l, 5, uint64(max(link.DroppedAttributeCount, 0)))
		b = appendMessage(b, 13, l)
	}
	b = appendVarint(b, 14, uint64(max(span.DroppedLinks(), 0)))
	var status []byte // Status: message = 2, code = 3 (UNSET 0, OK 1, ERROR 2)
	switch span.Status().Code {
	case codes.Error:
		status = appendString(status, 2, span.Status().Description)
		status = appendVarint(status, 3, 2)
	case codes.Ok:
		status = appendVarint(status, 3, 1)
	}
	b = appendMessage(b, 15, status)
	b = protowire.AppendTag(b, 16, protowire.Fixed32Type) // flags: the trace flags, remote-parent bits
	flags := uint32(sc.TraceFlags()) | 0x100
	if parent.IsRemote() {
		flags |= 0x200
	}
	return protowire.AppendFixed32(b, flags)
}

func encodeKeyValue(kv attribute.KeyValue) []byte {
	b := appendString(nil, 1, string(kv.Key))
	return appendMessage(b, 2, encodeValue(kv.Value))
}

// encodeValue is an AnyValue.
func encodeValue(v attribute.Value) []byte {
	var b []byte
	array := func(n int, item func(i int) []byte) []byte {
		var values []byte // ArrayValue
		for i := range n {
			values = appendMessage(values, 1, item(i))
		}
		return appendMessage(nil, 5, values)
	}
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, v.AsString())
	case attribute.BYTESLICE:
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendBytes(b, v.AsByteSlice())
	case attribute.BOOLSLICE:
		s := v.AsBoolSlice()
		b = array(len(s), func(i int) []byte { return encodeValue(attribute.BoolValue(s[i])) })
	case attribute.INT64SLICE:
		s := v.AsInt64Slice()
		b = array(len(s), func(i int) []byte { return encodeValue(attribute.Int64Value(s[i])) })
	case attribute.FLOAT64SLICE:
		s := v.AsFloat64Slice()
		b = array(len(s), func(i int) []byte { return encodeValue(attribute.Float64Value(s[i])) })
	case attribute.STRINGSLICE:
		s := v.AsStringSlice()
		b = array(len(s), func(i int) []byte { return encodeValue(attribute.StringValue(s[i])) })
	case attribute.SLICE:
		s := v.AsSlice()
		b = array(len(s), func(i int) []byte { return encodeValue(s[i]) })
	case attribute.MAP:
		var list []byte // KeyValueList
		for _, kv := range v.AsMap() {
			list = appendMessage(list, 1, encodeKeyValue(kv))
		}
		b = appendMessage(nil, 6, list)
	default: // EMPTY: an AnyValue with nothing set
	}
	return b
}

func appendMessage(b []byte, field protowire.Number, message []byte) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, message)
}

func appendBytes(b []byte, field protowire.Number, value []byte) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, value)
}

// appendString skips an empty string (proto3 default).
func appendString(b []byte, field protowire.Number, value string) []byte {
	if value == "" {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendString(b, value)
}

// appendVarint skips zero (proto3 default).
func appendVarint(b []byte, field protowire.Number, value uint64) []byte {
	if value == 0 {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.VarintType)
	return protowire.AppendVarint(b, value)
}

func appendFixed64(b []byte, field protowire.Number, value uint64) []byte {
	b = protowire.AppendTag(b, field, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, value)
}
