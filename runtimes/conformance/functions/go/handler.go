// Package conformance is the conformance function in Go: one behaviour per first path segment (see the
// suite's README).
package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"litefunctions.io/runtime/lf"
)

// Handle answers one call.
func Handle(ctx context.Context, req *lf.Request) (*lf.Response, error) {
	path := strings.Trim(req.Path, "/")
	if rest, ok := strings.CutPrefix(path, "runs"); ok && (rest == "" || rest[0] == '/') {
		countRun(req) // the async suite counts runs
		path = strings.TrimPrefix(rest, "/")
	}
	action, arg, _ := strings.Cut(path, "/")
	switch action {
	case "echo":
		contentType := req.Headers.Get("content-type")
		if contentType == "" {
			contentType = "application/octet-stream"
		}
		resp := &lf.Response{Status: 200, Body: req.Body}
		resp.Headers.Add("content-type", contentType)
		for _, v := range req.Headers.Values("x-echo") {
			resp.Headers.Add("x-echo", v)
		}
		return resp, nil
	case "headers":
		resp := lf.Text(200, "headers")
		resp.Headers = lf.Headers{{Name: "content-type", Value: "text/plain"}}
		for _, h := range [][2]string{{"set-cookie", "a=1"}, {"set-cookie", "b=2"}, {"x-multi", "one"}, {"x-multi", "two"}} {
			resp.Headers.Add(h[0], h[1])
		}
		return resp, nil
	case "status":
		code, err := strconv.Atoi(arg)
		if err != nil {
			return nil, err
		}
		return &lf.Response{Status: code, Headers: lf.Headers{{Name: "content-type", Value: "text/plain"}}, Body: []byte("status " + arg)}, nil
	case "empty":
		return &lf.Response{Status: 200}, nil
	case "size":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return nil, err
		}
		return lf.Bytes(200, bytes.Repeat([]byte("x"), n)), nil
	case "error":
		return nil, errors.New("conformance failure")
	case "panic":
		panic("conformance panic")
	case "json":
		var received any
		if err := req.JSON(&received); err != nil {
			return nil, err
		}
		return lf.JSON(200, map[string]any{"received": received})
	case "print":
		// Output capture (LF_LOGS): os.Stdout/os.Stderr are attributed while this is the only call running;
		// lf.Stdout(ctx) always is.
		fmt.Println("stdout " + arg)
		fmt.Fprintln(os.Stderr, "stderr "+arg)
		fmt.Fprintln(lf.Stdout(ctx), "output "+arg)
		return lf.Text(200, "printed"), nil
	case "sleep":
		ms, _ := strconv.Atoi(arg)
		time.Sleep(time.Duration(ms) * time.Millisecond) // ignores ctx on purpose
		return &lf.Response{Status: 200, Headers: lf.Headers{{Name: "content-type", Value: "text/plain"}}, Body: []byte("slept")}, nil
	case "event": // the call's CloudEvent as the runtime types it (test_cloudevents.py)
		return event(req)
	case "flaky": // 503 the first time (it creates the file X-Flaky names), 200 after: a retried call
		if f, err := os.OpenFile(req.Headers.Get("x-flaky"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
			_ = f.Close()
			return lf.Text(503, "failing once"), nil
		}
		return lf.Text(200, "recovered"), nil
	}
	return inspect(req)
}

// event answers the call's CloudEvent as JSON: absent attributes null, the time as Unix microseconds and its
// offset in seconds (so every runtime's answer compares equal), and the body's size and digest.
func event(req *lf.Request) (*lf.Response, error) {
	sum := sha256.Sum256(req.Body)
	answer := map[string]any{"event": nil, "body_size": len(req.Body), "body_sha256": hex.EncodeToString(sum[:])}
	ev := req.Event()
	if ev == nil {
		return lf.JSON(200, answer)
	}
	orNull := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	var unixMicro, offset any
	if !ev.Time.IsZero() {
		_, seconds := ev.Time.Zone()
		unixMicro, offset = ev.Time.UnixMicro(), seconds
	}
	extensions := ev.Extensions
	if extensions == nil {
		extensions = map[string]string{}
	}
	answer["event"] = map[string]any{
		"specversion": ev.SpecVersion, "id": ev.ID, "source": ev.Source, "type": ev.Type,
		"subject": orNull(ev.Subject), "time_unix_us": unixMicro, "time_offset_s": offset,
		"datacontenttype": orNull(ev.DataContentType), "dataschema": orNull(ev.DataSchema), "extensions": extensions,
	}
	return lf.JSON(200, answer)
}

// countRun appends a line for this run to the file the X-Runs-Log header names.
func countRun(req *lf.Request) {
	name := req.Headers.Get("x-runs-log")
	if name == "" {
		return
	}
	line, _ := json.Marshal(map[string]any{
		"call": req.CallID, "pid": os.Getpid(), "t": float64(time.Now().UnixNano()) / 1e9,
	})
	f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	_, _ = f.Write(append(line, '\n'))
	_ = f.Close()
}

func inspect(req *lf.Request) (*lf.Response, error) {
	query := map[string][]string{}
	for _, part := range strings.Split(req.RawQuery, "&") {
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		name, _ = url.QueryUnescape(name)
		value, _ = url.QueryUnescape(value)
		query[name] = append(query[name], value)
	}
	headers := [][2]string{}
	for _, h := range req.Headers {
		headers = append(headers, [2]string{strings.ToLower(h.Name), h.Value})
	}
	params := [][2]string{}
	for _, p := range req.Params {
		params = append(params, [2]string{p.Name, p.Value})
	}
	sum := sha256.Sum256(req.Body)
	return lf.JSON(200, map[string]any{
		"method": req.Method, "path": req.Path, "query": req.RawQuery, "query_params": query,
		"headers": headers, "params": params, "body_size": len(req.Body), "body_sha256": hex.EncodeToString(sum[:]),
	})
}
