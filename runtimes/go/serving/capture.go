package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"litefunctions.io/runtime/internal/callctx"
)

// A function's stdout and stderr, captured per call and published to lf.logs.{namespace}.{function} (the
// Python runtime's lf_runtime/capture.py: same record, same 64 KiB cap, same subject; the attribution rule is
// in the lf package's doc, lf/output.go).
//
// os.Stdout and os.Stderr are replaced by the write ends of two pipes. Everything read from them is written
// through to the original streams (lf dev and kubectl logs still show it) and, when exactly one handler is
// running, kept under that call's id. The pipes are read by a goroutine each whenever data arrives, and also
// drained at once, under the same lock, each time a handler starts or returns: the set of running handlers
// only changes at those points, so whatever is read was written while the set was the one it is attributed
// to. A call's own writers (lf.Stdout(ctx), ...) write under its id directly. The runtime's own log keeps the
// original stderr, and so does anything written to file descriptor 2 itself (a fatal error's trace).
//
// A call that prints nothing costs one epoll_wait(2) (an epoll set of the two pipes, level-triggered, asked
// without waiting) when its handler starts and one when it returns: half the cost of a poll(2) of the two.

// maxCallOutput is what a call keeps of its output (the Python runtime's MAX_BYTES); the rest is counted.
const maxCallOutput = 64 * 1024

const (
	streamStdout = iota
	streamStderr
)

var streamNames = [2]string{"stdout", "stderr"}

type chunk struct {
	stream int
	text   []byte
}

// callOutput is one call's captured output, and the context its handler runs with (it answers
// callctx.Key with itself, so lf.Stdout(ctx) finds it). It lives in the call, so a call allocates none.
type callOutput struct {
	context.Context
	capture *capture
	id      string
	size    int
	dropped int
	chunks  []chunk
	done    bool // the handler returned: its own writers pass through only
	writers [2]streamWriter
}

func (o *callOutput) Value(key any) any {
	if key == (callctx.Key{}) {
		return callctx.Output(o)
	}
	return o.Context.Value(key)
}

func (o *callOutput) Stdout() io.Writer { return &o.writers[streamStdout] }
func (o *callOutput) Stderr() io.Writer { return &o.writers[streamStderr] }

// add keeps text (not retained: copied) unless the call's cap is reached; the caller holds capture.mu.
func (o *callOutput) add(stream int, text []byte) {
	if o.done || len(text) == 0 {
		return
	}
	if o.size+len(text) > maxCallOutput {
		o.dropped += len(text)
		return
	}
	o.size += len(text)
	if n := len(o.chunks); n > 0 && o.chunks[n-1].stream == stream {
		o.chunks[n-1].text = append(o.chunks[n-1].text, text...)
		return
	}
	o.chunks = append(o.chunks, chunk{stream: stream, text: append([]byte(nil), text...)})
}

type streamWriter struct {
	o      *callOutput
	stream int
}

func (w *streamWriter) Write(p []byte) (int, error) {
	c := w.o.capture
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drainLocked() // what the process streams got before comes first
	w.o.add(w.stream, p)
	return c.real[w.stream].Write(p)
}

// capture owns the two pipes and the set of running handlers.
type capture struct {
	mu      sync.Mutex
	subject string
	meta    recordMeta
	real    [2]*os.File // the original stdout and stderr
	writeTo [2]*os.File // the pipes' write ends, installed as os.Stdout and os.Stderr
	readers [2]*os.File // their read ends (non-blocking)
	fds     [2]int      // the read ends' descriptors, read directly when draining
	epoll   int         // an epoll set of the two, level-triggered: which has data
	events  [2]unix.EpollEvent
	running []*callOutput
	buf     []byte
	pumps   sync.WaitGroup
}

// installCapture replaces *stdout and *stderr (os.Stdout and os.Stderr in the runtime) with pipes it reads.
func installCapture(namespace, function string, stdout, stderr **os.File) (*capture, error) {
	host, _ := os.Hostname()
	c := &capture{
		subject: "lf.logs." + namespace + "." + function,
		meta:    recordMeta{namespace: namespace, function: function, replica: host + "/" + strconv.Itoa(os.Getpid())},
		buf:     make([]byte, 64*1024),
	}
	var err error
	if c.epoll, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, err
	}
	targets := [2]**os.File{stdout, stderr}
	for i, target := range targets {
		r, w, err := os.Pipe() // both ends non-blocking, on Go's poller
		if err != nil {
			return nil, err
		}
		raw, err := r.SyscallConn()
		if err != nil {
			return nil, err
		}
		_ = raw.Control(func(fd uintptr) { c.fds[i] = int(fd) }) // (r.Fd() would make it blocking)
		event := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}
		if err := unix.EpollCtl(c.epoll, unix.EPOLL_CTL_ADD, c.fds[i], &event); err != nil {
			return nil, err
		}
		c.real[i], c.writeTo[i], c.readers[i] = *target, w, r
		c.pumps.Add(1)
		go c.pump(i, raw)
	}
	for i, target := range targets {
		*target = c.writeTo[i]
	}
	return c, nil
}

// pump drains pipe i whenever the poller says it is readable, until its write end is closed.
func (c *capture) pump(i int, raw syscall.RawConn) {
	defer c.pumps.Done()
	_ = raw.Read(func(uintptr) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.drainPipeLocked(i)
	})
}

// drainLocked empties both pipes: one epoll_wait(2) for the two (nothing to read is the common case), then
// reads.
func (c *capture) drainLocked() {
	n, err := unix.EpollWait(c.epoll, c.events[:], 0)
	switch {
	case err != nil: // (EINTR) read both
		c.drainPipeLocked(streamStdout)
		c.drainPipeLocked(streamStderr)
	default:
		for _, event := range c.events[:n] {
			c.drainPipeLocked(int(event.Fd))
		}
	}
}

// drainPipeLocked reads pipe i until it is empty, writing through and attributing; true at end of file.
func (c *capture) drainPipeLocked(i int) bool {
	for {
		n, err := syscall.Read(c.fds[i], c.buf)
		if n > 0 {
			data := c.buf[:n]
			_, _ = c.real[i].Write(data)
			if len(c.running) == 1 {
				c.running[0].add(i, data)
			}
			continue
		}
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return false
		default: // 0 bytes: the write end is closed; or the descriptor failed
			return true
		}
	}
}

// begin is called just before o's handler runs.
func (c *capture) begin(o *callOutput) {
	c.mu.Lock()
	c.drainLocked()
	c.running = append(c.running, o)
	c.mu.Unlock()
}

// end is called when o's handler returned: the record of what it wrote since the last one, or nil.
func (c *capture) end(o *callOutput) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drainLocked()
	for i, r := range c.running {
		if r == o {
			last := len(c.running) - 1
			c.running[i], c.running[last] = c.running[last], nil
			c.running = c.running[:last]
			break
		}
	}
	o.done = true
	return c.takeLocked(o)
}

// flush is the record of what o's handler wrote so far (the call timed out; the handler may still write).
func (c *capture) flush(o *callOutput) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drainLocked()
	return c.takeLocked(o)
}

func (c *capture) takeLocked(o *callOutput) []byte {
	if len(o.chunks) == 0 && o.dropped == 0 {
		return nil
	}
	record := buildRecord(c.meta, o.id, o.chunks, o.dropped, time.Now())
	o.chunks, o.size, o.dropped = nil, 0, 0
	return record
}

// close writes through what is left and restores nothing (the process is about to exit).
func (c *capture) close() {
	for _, w := range c.writeTo {
		_ = w.Close()
	}
	done := make(chan struct{})
	go func() { c.pumps.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second): // a handler's goroutine still holds a write in flight
	}
}

// --------------------------------------------------------------------------------------------------- records

type recordMeta struct{ namespace, function, replica string }

type outputLine struct {
	Stream string `json:"stream"`
	Text   string `json:"text"`
}

// outputRecord is the LF_LOGS message, field for field the Python runtime's.
type outputRecord struct {
	TS           float64      `json:"ts"`
	CallID       string       `json:"call_id"`
	Namespace    string       `json:"namespace"`
	Function     string       `json:"function"`
	Replica      string       `json:"replica"`
	Lines        []outputLine `json:"lines"`
	DroppedBytes int          `json:"dropped_bytes,omitempty"`
}

// buildRecord is the JSON message of a call's output: each chunk split into lines as Python's
// str.splitlines() does, streams kept.
func buildRecord(meta recordMeta, callID string, chunks []chunk, dropped int, now time.Time) []byte {
	lines := make([]outputLine, 0, len(chunks))
	for _, ch := range chunks {
		for _, text := range splitLines(string(ch.text)) {
			lines = append(lines, outputLine{Stream: streamNames[ch.stream], Text: text})
		}
	}
	record := outputRecord{
		TS: float64(now.UnixNano()) / 1e9, CallID: callID, Namespace: meta.namespace, Function: meta.function,
		Replica: meta.replica, Lines: lines, DroppedBytes: dropped,
	}
	var out bytes.Buffer
	encoder := json.NewEncoder(&out)
	encoder.SetEscapeHTML(false) // like json.dumps(ensure_ascii=False)
	_ = encoder.Encode(record)   // strings and numbers only: cannot fail
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}

// splitLines splits at the line boundaries of Python's str.splitlines(): \n, \r, \r\n, \v, \f, \x1c, \x1d,
// \x1e, U+0085, U+2028 and U+2029; no trailing empty line.
func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch r {
		case '\n', '\v', '\f', '\x1c', '\x1d', '\x1e', '\u0085', '\u2028', '\u2029':
			out = append(out, s[start:i])
			i += size
			start = i
		case '\r':
			out = append(out, s[start:i])
			i += size
			if i < len(s) && s[i] == '\n' {
				i++
			}
			start = i
		default:
			i += size
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
