// Package lf is what a Go function sees: the Request it gets and the Response it returns.
//
// A function is a package that exports
//
//	func Handle(ctx context.Context, req *lf.Request) (*lf.Response, error)
//
// compiled with the runtime (`lf dev` and the image build generate the main package). ctx ends at the call's
// deadline (the envelope's budget minus the runtime's margin); a handler that runs past it is answered 504 for
// it. An error becomes a 500 carrying its message; a panic too, and the replica keeps serving. A nil Response
// with a nil error is a 204.
//
// # Output
//
// What a handler writes during a call is captured and published, one message per call, to the JetStream stream
// LF_LOGS (`lf logs NAME [--call ID]`), and still reaches the process's stdout and stderr (LF_LOG_CAPTURE=0
// turns capture off). Stdout(ctx), Stderr(ctx) and Logger(ctx) are always attributed to the call. Plain
// os.Stdout and os.Stderr (fmt.Println, the log package, slog's default handler) are attributed to a call only
// when its handler was the only one running in the replica while they were written (always, with concurrency
// 1); otherwise they reach the process's streams but no call's record. See Stdout.
//
// # Tracing
//
// With tracing configured (OTEL_EXPORTER_OTLP_ENDPOINT, docs/metrics.md), ctx carries the runtime's span of the
// call, so otel.Tracer("…").Start(ctx, "…") in a handler starts a child of it.
package lf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"litefunctions.io/runtime/envelope"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Pair is one header or route parameter, as received: order is kept and names may repeat. It is the
// envelope's own pair type, so a request's headers reach the handler without a copy.
type Pair = envelope.Pair

// Headers are HTTP headers as a list of pairs. Get and Values compare names case-insensitively.
type Headers []Pair

// Get returns the first value of name, or "".
func (h Headers) Get(name string) string {
	for _, p := range h {
		if strings.EqualFold(p.Name, name) {
			return p.Value
		}
	}
	return ""
}

// Values returns every value of name in the order received.
func (h Headers) Values(name string) []string {
	var out []string
	for _, p := range h {
		if strings.EqualFold(p.Name, name) {
			out = append(out, p.Value)
		}
	}
	return out
}

// Add appends a header (a repeated name is sent as a repeated header).
func (h *Headers) Add(name, value string) {
	*h = append(*h, Pair{Name: name, Value: value})
}

// Request is one call.
type Request struct {
	CallID string
	Method string
	// Path is the path after the function's name: "/a/b" for /function/name/a/b, "/" when empty.
	Path string
	// RawQuery is the query string without "?", undecoded.
	RawQuery    string
	Headers     Headers
	Params      []Pair // route parameters of an HTTP trigger
	Body        []byte
	TraceParent string // W3C trace context, may be empty
	TraceState  string
	// Deadline is when the runtime stops waiting for the handler (ctx carries it too).
	Deadline time.Time
}

// Query parses RawQuery (blank values kept). A malformed query yields what could be parsed.
func (r *Request) Query() url.Values {
	values, _ := url.ParseQuery(r.RawQuery)
	return values
}

// Param returns the route parameter name, or "".
func (r *Request) Param(name string) string {
	for _, p := range r.Params {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// JSON decodes the body into v; a body that isn't JSON is the caller's fault, answered 400 when returned.
func (r *Request) JSON(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return &BadRequestError{Message: "the request body is not valid JSON: " + err.Error()}
	}
	return nil
}

// BadRequestError, returned by a handler, is answered 400 with a JSON error body (layer "function")
// rather than 500: the request could not be read the way the handler needed.
type BadRequestError struct{ Message string }

func (e *BadRequestError) Error() string { return e.Message }

// Response is what a handler answers. Status 0 means 200.
type Response struct {
	Status  int
	Headers Headers
	Body    []byte
}

// Text is a text/plain answer.
func Text(status int, text string) *Response {
	return &Response{Status: status, Headers: Headers{{Name: "content-type", Value: "text/plain; charset=utf-8"}}, Body: []byte(text)}
}

// Bytes is an application/octet-stream answer.
func Bytes(status int, body []byte) *Response {
	return &Response{Status: status, Headers: Headers{{Name: "content-type", Value: "application/octet-stream"}}, Body: body}
}

// JSON is an application/json answer of v.
func JSON(status int, v any) (*Response, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding the JSON answer: %w", err)
	}
	return &Response{Status: status, Headers: Headers{{Name: "content-type", Value: "application/json"}}, Body: body}, nil
}

// ErrSecretNotFound is wrapped by Secret when the secret is not mounted.
var ErrSecretNotFound = errors.New("secret not found")

// Secret returns the secret name: the text of LF_SECRETS_DIR/name without one trailing newline.
func Secret(name string) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return "", fmt.Errorf("secret name %q is not a plain file name", name)
	}
	dir := os.Getenv("LF_SECRETS_DIR")
	if dir == "" {
		return "", fmt.Errorf("%w: %q (LF_SECRETS_DIR is not set)", ErrSecretNotFound, name)
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("%w: %q in %s", ErrSecretNotFound, name, dir)
	}
	value := string(data)
	if v, ok := strings.CutSuffix(value, "\r\n"); ok {
		return v, nil
	}
	return strings.TrimSuffix(value, "\n"), nil
}

// HandlerFunc is the signature of a function's Handle.
type HandlerFunc func(ctx context.Context, req *Request) (*Response, error)
