package serving

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"litefunctions.io/runtime/envelope"
	"litefunctions.io/runtime/lf"
	"litefunctions.io/runtime/settings"
)

// Flow of a call (the Python runtime's, docs/protocol.md):
//
//  1. onMsg (nats.go runs it for one message at a time) decodes and admits the call: it starts on a goroutine
//     of its own (a parked worker's, else a new one) if fewer than Concurrency handlers run, waits in a queue of
//     at most QueueDepth otherwise, or is answered BUSY. Each admitted call gets a context whose deadline is the
//     budget minus the runtime's margin (callctx.go).
//  2. Whoever comes first wins, by a compare-and-swap on the call's state: the handler's answer, or the
//     deadline (TIMEOUT is answered and the slot freed). A goroutine cannot be killed: a handler that ignores
//     ctx keeps running, counted as stuck until it returns; StuckLimit of them recycle the replica (exit 75).
//  3. SIGTERM drains: the subscription is drained (the server stops sending, what it sent is still admitted),
//     in-flight calls finish within DrainTimeout (else they are answered INTERNAL), the connection is flushed
//     and closed.

const (
	stateQueued int32 = iota
	stateRunning
	stateDone
	stateTimedOut
)

const (
	marginFraction = 0.05
	marginMax      = 50 * time.Millisecond
	maxMessage     = 4096 // an error's message can be anything; the envelope carries a readable prefix
)

var statusOf = map[envelope.ErrorKind]uint16{
	envelope.ErrHandler: 500, envelope.ErrTimeout: 504, envelope.ErrBusy: 503, envelope.ErrBadRequest: 502,
	envelope.ErrResponseTooLarge: 502, envelope.ErrInternal: 502,
}

// UsableBudget is how long the handler may take: the budget minus min(5 % of it, 50 ms).
func UsableBudget(budgetMS uint32) time.Duration {
	budget := time.Duration(budgetMS) * time.Millisecond
	margin := min(time.Duration(float64(budget)*marginFraction), marginMax)
	return budget - margin
}

type call struct {
	reply   string
	req     *envelope.Request
	started time.Time
	state   atomic.Int32
	cold    bool
	ctx     callContext
	timer   *time.Timer // the deadline: ends ctx and answers TIMEOUT (expire)
	slot    int         // index in Replica.active (-1 once removed), under Replica.mu
	out     callOutput  // with capture on: the handler's context and its output (capture.go)
	spanMu  sync.Mutex
	span    trace.Span       // with tracing on: started by execute, outside Replica.mu (tracing.go)
	spanEnd func(trace.Span) // set by endSpanOnce before execute gave the call its span
}

// Replica serves one function until stopped.
type Replica struct {
	settings *settings.Settings
	handler  lf.HandlerFunc
	log      *Log
	nc       *nats.Conn

	mu      sync.Mutex
	running int
	queued  int // live calls in queue (timed-out ones are skipped when popped)
	queue   []*call
	active  []*call // admitted and not answered (call.slot is the index)
	stuck   int
	cold    bool
	idle    chan struct{}
	workers []chan *call // idle workers, the last one parked first (its stack is the warmest)
	closed  bool         // Run returned: workers exit instead of parking

	stopOnce sync.Once
	stopped  chan int

	metrics *Metrics  // nil without LF_METRICS_PORT (metrics.go)
	ready   readiness // what /readyz says (health.go)
	capture *capture  // nil with LF_LOG_CAPTURE=0 (capture.go)
	tracing *tracing  // nil unless OTEL_* configure it (tracing.go)
}

// NewReplica prepares a replica; Run connects and serves.
func NewReplica(s *settings.Settings, handler lf.HandlerFunc, log *Log) *Replica {
	r := &Replica{
		settings: s, handler: handler, log: log,
		cold: true, stopped: make(chan int, 1),
	}
	if s.MetricsPort > 0 {
		r.metrics = &Metrics{}
	}
	return r
}

// Metrics are the replica's counters (nil when LF_METRICS_PORT is unset; their methods are no-ops then).
func (r *Replica) Metrics() *Metrics { return r.metrics }

// gauges are read at scrape time.
func (r *Replica) gauges() Gauges {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Gauges{Inflight: r.running + r.queued, Stuck: r.stuck, ColdStarted: !r.cold}
}

// NotReady is why a call sent now would not be answered, "" when it would: what GET /readyz says (health.go).
func (r *Replica) NotReady() string {
	return r.ready.notReady(func() bool {
		r.mu.Lock()
		nc := r.nc
		r.mu.Unlock()
		return nc != nil && nc.IsConnected()
	})
}

// Stop begins draining; the first reason wins. Safe from any goroutine.
func (r *Replica) Stop(code int, reason string) {
	r.stopOnce.Do(func() {
		r.ready.draining.Store(true)
		r.log.Info("stopping", "reason", reason, "exit_code", code)
		r.stopped <- code
	})
}

// Run connects, subscribes, logs "ready", serves until stopped, drains; it returns the exit code, or an error
// when NATS could not be reached or subscribed to.
func (r *Replica) Run() (int, error) {
	s := r.settings
	subject := "lf.invoke." + s.Namespace + "." + s.Function
	queue := s.Namespace + "." + s.Function
	var healthSrv *endpointServer
	if s.HealthPort > 0 { // before connecting: a probe meanwhile is told "connecting to NATS"
		var err error
		if healthSrv, err = serveHealth(r.NotReady, s.HealthHost, s.HealthPort); err != nil {
			return ExitFailure, fmt.Errorf("serving /readyz on %s:%d: %w", s.HealthHost, s.HealthPort, err)
		}
		defer healthSrv.close() // after the drain: until then it says "draining"
		r.log.Info("health_listening", "url", healthSrv.URL)
	}
	nc, err := r.connect()
	if err != nil {
		return ExitFailure, err
	}
	r.mu.Lock()
	r.nc = nc
	r.mu.Unlock()
	sub, err := nc.QueueSubscribe(subject, queue, r.onMsg)
	if err != nil {
		nc.Close()
		return ExitFailure, fmt.Errorf("subscribing to %s: %w", subject, err)
	}
	// Pending messages are handed off at once (the callback never runs a handler), so no count limit; the byte
	// limit keeps a burst of 6 MiB bodies from being dropped as a slow consumer.
	_ = sub.SetPendingLimits(-1, 256<<20)
	subDone := make(chan struct{}) // closed once nats.go delivered the subscription's last message and closed it
	sub.SetClosedHandler(func(string) { close(subDone) })
	if err := nc.Flush(); err != nil { // the server has the SUB: "ready" means calls reach us
		nc.Close()
		return ExitFailure, fmt.Errorf("subscribing to %s: %w", subject, err)
	}
	r.ready.subscribed.Store(true)
	var metricsSrv *endpointServer
	if r.metrics != nil {
		collector := newCollector(r.metrics, s.Namespace, s.Function, r.gauges)
		if metricsSrv, err = serveMetrics(collector, s.MetricsHost, s.MetricsPort); err != nil {
			nc.Close()
			return ExitFailure, fmt.Errorf("serving /metrics on %s:%d: %w", s.MetricsHost, s.MetricsPort, err)
		}
	}
	r.log.Info("ready", "subject", subject, "queue", queue, "concurrency", s.Concurrency, "queue_depth", s.QueueDepth)
	if metricsSrv != nil {
		r.log.Info("metrics_listening", "url", metricsSrv.URL)
	}
	code := <-r.stopped
	r.drain(sub, subDone)
	if r.tracing != nil {
		if err := r.tracing.shutdown(5 * time.Second); err != nil {
			r.log.Warning("tracing_shutdown_failed", "error", err.Error())
		}
	}
	if metricsSrv != nil {
		metricsSrv.close()
	}
	if nc.IsConnected() {
		if err := nc.FlushTimeout(2 * time.Second); err != nil {
			r.log.Warning("flush_failed", "error", err.Error())
		}
	}
	nc.Close()
	r.stopWorkers()
	r.log.Info("stopped", "exit_code", code)
	return code, nil
}

func (r *Replica) connect() (*nats.Conn, error) {
	s := r.settings
	opts := []nats.Option{
		nats.Name("lf-runtime-go " + s.Namespace + "." + s.Function),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			r.log.Warning("nats_error", "error", err.Error())
		}),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {
			r.ready.lost()
			r.log.Warning("nats_disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			r.log.Info("nats_reconnected")
			go func() { // nats.go sent the SUB again before this; the PONG says the server has it
				if err := r.ready.confirm(func() error { return nc.FlushTimeout(5 * time.Second) }); err != nil {
					r.log.Warning("subscription_unconfirmed", "error", err.Error())
				}
			}()
		}),
		nats.ClosedHandler(func(*nats.Conn) { r.Stop(ExitFailure, "the NATS connection closed") }),
	}
	deadline := time.Now().Add(s.ConnectTimeout)
	for {
		nc, err := nats.Connect(s.NatsURL, opts...)
		if err == nil {
			return nc, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no NATS server reachable at %s within %s: %w",
				settings.RedactedNatsURL(s.NatsURL), s.ConnectTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ------------------------------------------------------------------------------------------------ admission

func (r *Replica) onMsg(msg *nats.Msg) {
	started := time.Now()
	req, err := envelope.DecodeRequest(msg.Data)
	if err != nil {
		r.log.Warning("bad_request", "error", err.Error(), "size", len(msg.Data))
		r.metrics.Call(OutcomeBadRequest)
		if msg.Reply != "" {
			r.publish(msg.Reply, errorReply("", envelope.ErrBadRequest, "bad request envelope: "+err.Error(), 0, false))
		}
		return
	}
	if msg.Reply == "" {
		r.log.Warning("no_reply_subject", "call_id", req.CallID)
		return
	}
	budget := UsableBudget(req.BudgetMS)
	if budget <= 0 {
		message := fmt.Sprintf("no time left to run the handler (budget %d ms)", req.BudgetMS)
		r.metrics.Call(OutcomeTimeout)
		r.refuse(msg.Reply, req, errorReply(req.CallID, envelope.ErrTimeout, message, 0, false), "timeout")
		return
	}
	s := r.settings
	r.mu.Lock()
	if r.running >= s.Concurrency && r.queued >= s.QueueDepth {
		running, queued := r.running, r.queued
		r.mu.Unlock()
		message := fmt.Sprintf("replica busy: %d running, %d queued", running, queued)
		r.metrics.Call(OutcomeBusy)
		r.refuse(msg.Reply, req, errorReply(req.CallID, envelope.ErrBusy, message, time.Since(started), false), "busy")
		return
	}
	r.admitLocked(r.newCall(req, msg.Reply, started, budget))
	r.mu.Unlock()
}

// newCall is a call with `budget` to run from `started`: its context and deadline timer, and its output capture.
// The caller holds r.mu, so the timer's expire cannot act before admitLocked has counted the call.
func (r *Replica) newCall(req *envelope.Request, reply string, started time.Time, budget time.Duration) *call {
	c := &call{reply: reply, req: req, started: started}
	c.ctx.deadline = started.Add(budget)
	if r.capture != nil { // the handler's context (lf.Stdout(ctx) & co.)
		c.out = callOutput{Context: &c.ctx, capture: r.capture, id: req.CallID}
		c.out.writers = [2]streamWriter{{o: &c.out, stream: streamStdout}, {o: &c.out, stream: streamStderr}}
	}
	c.timer = time.AfterFunc(time.Until(c.ctx.deadline), func() {
		c.ctx.end(context.DeadlineExceeded)
		r.expire(c)
	})
	return c
}

// admitLocked starts c in a free slot or queues it (r.mu held).
func (r *Replica) admitLocked(c *call) {
	c.slot = len(r.active)
	r.active = append(r.active, c)
	if r.running < r.settings.Concurrency {
		if !r.startLocked(c) { // its deadline fired already: expire answers it and counts it out of the queue
			r.queued++
		}
	} else {
		r.queue = append(r.queue, c)
		r.queued++
	}
}

// refuse answers a call no handler will run ("busy", or "timeout": no time left).
func (r *Replica) refuse(reply string, req *envelope.Request, payload []byte, errType string) {
	if r.tracing != nil {
		r.tracing.refused(req, r.settings.Namespace, r.settings.Function, payload, errType)
	}
	r.publish(reply, payload)
}

// startLocked marks c running and starts its goroutine, unless its deadline came first; r.mu is held.
func (r *Replica) startLocked(c *call) bool {
	if !c.state.CompareAndSwap(stateQueued, stateRunning) { // expire won: it answered and counted
		return false
	}
	r.running++
	if r.cold {
		c.cold, r.cold = true, false
	}
	if n := len(r.workers); n > 0 {
		next := r.workers[n-1]
		r.workers[n-1] = nil
		r.workers = r.workers[:n-1]
		next <- c // buffered and empty: never blocks
	} else {
		go r.work(c, make(chan *call, 1))
	}
	return true
}

// work runs c, then every call it is handed while parked: a goroutine per running call, as with `go`, but
// reused, so a call neither creates one nor grows a fresh stack (both showed in the profile of a sync call).
// Parked workers are at most Concurrency; the others end.
func (r *Replica) work(c *call, next chan *call) {
	for c != nil {
		r.execute(c, next)
		c = <-next // nil: the replica stopped
	}
}

// parkLocked offers next (the channel of the worker that just ran a call) for the next call to start, or
// closes it (r.mu held).
func (r *Replica) parkLocked(next chan *call) {
	if next == nil { // expire released the call: no worker
		return
	}
	if r.closed || len(r.workers) >= r.settings.Concurrency {
		close(next)
		return
	}
	r.workers = append(r.workers, next)
}

// stopWorkers ends the parked workers (Run returns; a stuck handler's worker ends when it returns).
func (r *Replica) stopWorkers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, w := range r.workers {
		close(w)
	}
	r.workers = nil
}

// release frees a slot and starts queued calls in order; worker is the channel of the worker that ran c (nil:
// expire released it), parked first, so that the next queued call runs on it.
func (r *Replica) release(c *call, worker chan *call) {
	r.mu.Lock()
	r.parkLocked(worker)
	r.removeLocked(c)
	r.running--
	for r.running < r.settings.Concurrency && len(r.queue) > 0 {
		next := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		if r.startLocked(next) { // else it timed out while waiting (expire counted it out of queued)
			r.queued--
		}
	}
	r.checkIdleLocked()
	r.mu.Unlock()
}

// removeLocked takes c out of r.active: the last call takes its slot.
func (r *Replica) removeLocked(c *call) {
	if c.slot < 0 {
		return
	}
	last := len(r.active) - 1
	moved := r.active[last]
	r.active[c.slot], moved.slot = moved, c.slot
	r.active[last] = nil
	r.active = r.active[:last]
	c.slot = -1
}

func (r *Replica) checkIdleLocked() {
	if r.idle != nil && len(r.active) == 0 {
		close(r.idle)
		r.idle = nil
	}
}

// ------------------------------------------------------------------------------------------------ execution

// setSpan gives c the span execute started, unless expire or abandon answered the call first: then the span
// ends at once, as they would have ended it.
func (c *call) setSpan(span trace.Span) {
	c.spanMu.Lock()
	end := c.spanEnd
	if end == nil {
		c.span = span
	}
	c.spanMu.Unlock()
	if end != nil {
		end(span)
	}
}

// endSpanOnce ends c's span with the answer expire or abandon sent (they won the call's state), or has setSpan
// end it when execute has not started it yet.
func (c *call) endSpanOnce(payload []byte, errType string) {
	c.spanMu.Lock()
	span := c.span
	c.span = nil
	if span == nil {
		c.spanEnd = func(span trace.Span) { endSpan(span, payload, errType) }
	}
	c.spanMu.Unlock()
	endSpan(span, payload, errType) // (nil: no-op)
}

func (r *Replica) execute(c *call, next chan *call) {
	var span trace.Span
	if r.tracing != nil { // started here, not under r.mu in startLocked
		span = r.tracing.start(c.req, r.settings.Namespace, r.settings.Function, c.cold)
		c.setSpan(span)
	}
	if r.capture != nil {
		r.capture.begin(&c.out)
	}
	resp, err, panicked := r.invoke(c, span)
	var output []byte
	if r.capture != nil {
		output = r.capture.end(&c.out)
	}
	if !c.state.CompareAndSwap(stateRunning, stateDone) {
		// expire answered TIMEOUT already; this handler was stuck and is back.
		r.publishOutput(c, output)
		c.ctx.end(context.Canceled)
		r.mu.Lock()
		r.stuck--
		stuck := r.stuck
		r.parkLocked(next)
		r.mu.Unlock()
		r.log.Info("stuck_returned", "call_id", c.req.CallID, "stuck", stuck)
		return
	}
	c.timer.Stop()
	c.ctx.end(context.Canceled)
	payload, outcome := r.answer(c, resp, err, panicked)
	r.metrics.Ran(outcome, time.Since(c.started))
	if span != nil { // this goroutine won the call's state: expire and abandon leave its span alone
		if panicked != nil {
			failSpan(span, fmt.Errorf("panic: %v", panicked))
		} else if err != nil {
			failSpan(span, err)
		}
		endSpan(span, payload, "")
	}
	r.publishOutput(c, output)
	r.respond(c, payload)
	r.release(c, next)
}

// invoke runs the handler, turning a panic into a value (the replica never dies of one).
func (r *Replica) invoke(c *call, span trace.Span) (resp *lf.Response, err error, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
			r.log.Error("call_failed", "call_id", c.req.CallID, "error_kind", "HANDLER",
				"error", fmt.Sprintf("panic: %v", p), "traceback", string(debug.Stack()))
		}
	}()
	req := c.req
	var ctx context.Context = &c.ctx
	deadline := c.ctx.deadline
	if r.capture != nil {
		ctx = &c.out // answers lf.Stdout(ctx) & co., else c.ctx
	}
	if span != nil {
		ctx = trace.ContextWithSpan(ctx, span)
	}
	resp, err = r.handler(ctx, &lf.Request{
		CallID: req.CallID, Method: req.Method, Path: req.Path, RawQuery: req.Query,
		Headers: lf.Headers(req.Headers), Params: req.Params, Body: req.Body,
		TraceParent: req.TraceParent, TraceState: req.TraceState, Deadline: deadline,
	})
	return resp, err, nil
}

// expire runs at the call's deadline: answer TIMEOUT now, whatever the handler is doing.
func (r *Replica) expire(c *call) {
	budget := c.req.BudgetMS
	message := fmt.Sprintf("the handler did not answer within the call's budget (%d ms)", budget)
	if c.state.CompareAndSwap(stateQueued, stateTimedOut) {
		r.mu.Lock()
		r.queued--
		r.removeLocked(c)
		r.checkIdleLocked()
		r.mu.Unlock()
		took := time.Since(c.started)
		r.metrics.Ran(OutcomeTimeout, took)
		r.respond(c, errorReply(c.req.CallID, envelope.ErrTimeout, message, took, c.cold))
		return
	}
	if !c.state.CompareAndSwap(stateRunning, stateTimedOut) {
		return
	}
	took := time.Since(c.started)
	r.metrics.Ran(OutcomeTimeout, took)
	payload := errorReply(c.req.CallID, envelope.ErrTimeout, message, took, c.cold)
	r.mu.Lock()
	r.stuck++
	stuck := r.stuck
	r.mu.Unlock()
	if r.tracing != nil {
		c.endSpanOnce(payload, "timeout")
	}
	r.respond(c, payload)
	if r.capture != nil {
		r.publishOutput(c, r.capture.flush(&c.out))
	}
	r.log.Warning("stuck", "call_id", c.req.CallID, "stuck", stuck, "limit", r.settings.StuckLimit)
	if stuck >= r.settings.StuckLimit {
		r.Stop(ExitTempFail, fmt.Sprintf("%d handlers are stuck past their deadline", stuck))
	}
	r.release(c, nil)
}

// -------------------------------------------------------------------------------------------------- answers

// answer encodes the handler's result; the outcome is its label in litefunctions_runtime_calls_total.
func (r *Replica) answer(c *call, resp *lf.Response, err error, panicked any) ([]byte, Outcome) {
	id, took := c.req.CallID, time.Since(c.started)
	switch {
	case panicked != nil:
		return errorReply(id, envelope.ErrHandler, fmt.Sprintf("panic: %v", panicked), took, c.cold), OutcomeHandlerError
	case err != nil:
		if bad := badRequest(err); bad != nil {
			return badInput(id, bad.Message, took, c.cold), OutcomeBadRequest
		}
		r.log.Error("call_failed", "call_id", id, "error_kind", "HANDLER", "error", err.Error())
		return errorReply(id, envelope.ErrHandler, err.Error(), took, c.cold), OutcomeHandlerError
	case resp == nil:
		return encode(&envelope.Response{Status: 204, CallID: id, DurationNS: uint64(took), ColdStart: c.cold}), OutcomeOK
	}
	status := resp.Status
	if status == 0 {
		status = 200
	}
	var kind envelope.ErrorKind
	var message string
	outcome := OutcomeInternal
	switch {
	case status < 100 || status > 599:
		kind, message = envelope.ErrInternal, fmt.Sprintf("Response.Status %d is not an HTTP status code (100-599)", status)
	case len(resp.Body) > r.settings.MaxResponseBytes:
		kind, outcome = envelope.ErrResponseTooLarge, OutcomeTooLarge
		message = fmt.Sprintf("response body of %d bytes exceeds the limit of %d bytes", len(resp.Body), r.settings.MaxResponseBytes)
	default:
		return encode(&envelope.Response{
			Status: uint16(status), CallID: id, Headers: resp.Headers, Body: resp.Body, //nolint:gosec // checked above
			DurationNS: uint64(took), ColdStart: c.cold,
		}), OutcomeOK
	}
	r.log.Error("call_failed", "call_id", id, "error_kind", kindName(kind), "error", message)
	return errorReply(id, kind, message, took, c.cold), outcome
}

// badRequest is the *lf.BadRequestError in err's chain, or nil (a function of its own: errors.As's target
// is on the heap, and only a call that failed should pay for it).
func badRequest(err error) *lf.BadRequestError {
	var bad *lf.BadRequestError
	if errors.As(err, &bad) {
		return bad
	}
	return nil
}

func kindName(kind envelope.ErrorKind) string {
	return [...]string{"NONE", "HANDLER", "TIMEOUT", "BUSY", "BAD_REQUEST", "RESPONSE_TOO_LARGE", "INTERNAL"}[kind]
}

func errorReply(callID string, kind envelope.ErrorKind, message string, took time.Duration, cold bool) []byte {
	if len(message) > maxMessage {
		message = strings.ToValidUTF8(message[:maxMessage-3], "") + "…"
	}
	return encode(&envelope.Response{
		Status: statusOf[kind], ErrorKind: kind, Error: message, CallID: callID,
		DurationNS: uint64(max(took, 0)), ColdStart: cold,
	})
}

func badInput(callID, message string, took time.Duration, cold bool) []byte {
	if len(message) > maxMessage {
		message = strings.ToValidUTF8(message[:maxMessage], "")
	}
	body, _ := lf.JSON(400, map[string]any{"error": map[string]any{"code": 400, "message": message, "layer": "function"}})
	return encode(&envelope.Response{
		Status: 400, CallID: callID, Headers: body.Headers, Body: body.Body, DurationNS: uint64(max(took, 0)), ColdStart: cold,
	})
}

func encode(resp *envelope.Response) []byte {
	payload, err := resp.Encode()
	if err != nil { // only a field over 4 GiB; the body limit stops that first
		payload, _ = (&envelope.Response{Status: 502, ErrorKind: envelope.ErrInternal, CallID: resp.CallID, Error: err.Error()}).Encode()
	}
	return payload
}

// publishOutput sends a call's output record to LF_LOGS (best effort: logs never fail a call).
func (r *Replica) publishOutput(c *call, record []byte) {
	if record == nil {
		return
	}
	if err := r.nc.Publish(r.capture.subject, record); err != nil { // e.g. over max_payload
		r.log.Warning("output_not_published", "call_id", c.req.CallID, "error", err.Error())
	}
}

// respond sends a call's answer to its reply subject.
func (r *Replica) respond(c *call, payload []byte) {
	r.publish(c.reply, payload)
}

func (r *Replica) publish(reply string, payload []byte) {
	if err := r.nc.Publish(reply, payload); err != nil { // closed, or reconnecting with a full buffer
		r.log.Warning("reply_failed", "error", err.Error())
	}
}

// ---------------------------------------------------------------------------------------------------- drain

// drain stops the subscription and waits for the calls in flight; subDone is closed by the subscription's
// closed handler.
func (r *Replica) drain(sub *nats.Subscription, subDone <-chan struct{}) {
	if err := sub.Drain(); err != nil {
		r.log.Warning("unsubscribe_failed", "error", err.Error())
	} else {
		// nats.go flushes (every message sent before the UNSUB arrives), delivers what is pending to onMsg,
		// then closes the subscription; its closed handler runs once the last onMsg has returned.
		timer := time.NewTimer(r.settings.DrainTimeout)
		select {
		case <-subDone:
		case <-timer.C:
		}
		timer.Stop()
	}
	r.mu.Lock()
	inFlight, stuck := len(r.active), r.stuck
	var idle chan struct{}
	if inFlight > 0 {
		idle = make(chan struct{})
		r.idle = idle
	}
	r.mu.Unlock()
	r.log.Info("draining", "in_flight", inFlight, "stuck", stuck)
	if idle == nil {
		return
	}
	timer := time.NewTimer(r.settings.DrainTimeout)
	defer timer.Stop()
	select {
	case <-idle:
	case <-timer.C:
		r.abandon()
	}
}

// abandon answers every call still in flight after the drain timeout, so none waits for its deadline.
func (r *Replica) abandon() {
	r.mu.Lock()
	calls := make([]*call, 0, len(r.active))
	ids := make([]string, 0, len(r.active))
	for _, c := range r.active {
		calls = append(calls, c)
		ids = append(ids, c.req.CallID)
	}
	r.mu.Unlock()
	r.log.Warning("drain_timeout", "calls", ids)
	for _, c := range calls {
		if c.state.CompareAndSwap(stateRunning, stateTimedOut) || c.state.CompareAndSwap(stateQueued, stateTimedOut) {
			message := "the replica stopped before the handler answered"
			payload := errorReply(c.req.CallID, envelope.ErrInternal, message, time.Since(c.started), c.cold)
			r.metrics.Call(OutcomeInternal)
			if r.tracing != nil {
				c.endSpanOnce(payload, "drain_timeout")
			}
			r.respond(c, payload)
		}
	}
}
