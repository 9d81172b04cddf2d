// Package asyncworker is a replica's async side (docs/architecture.md, "An async call"), the Go twin of the Python runtime's
// lf_runtime.asyncworker: pull calls from the function's durable consumer on LF_ASYNC, run them like sync
// calls, store results with compare-and-set, retry with backoff, dead-letter, call back.
//
//   - One durable pull consumer per function ({ns}_{fn}, filter lf.async.{ns}.{fn}.*), shared by its replicas
//     whatever their runtime; each replica pulls at most its free concurrency (capped by LF_ASYNC_CONCURRENCY),
//     one pull request at a time, expiring after PullExpires; the next is sent as soon as it is satisfied or
//     expired and a slot is free.
//   - ack wait = timeout + LF_ASYNC_ACK_GRACE: a replica that dies mid-call (kill -9) has its call redelivered
//     after that; a call that runs long sends in-progress acks every half ack wait.
//   - The record (LF_RESULTS[{call id}]) moves on only by compare-and-set on the revision this worker read or
//     wrote: before running (→ running), after (→ succeeded | failed (retry scheduled) | dead). A zombie, a
//     replica paused past the ack wait whose call was redelivered and run elsewhere, finds the revision moved
//     and drops its result without acking (an ack would acknowledge the other replica's delivery).
//   - Retries follow Policy (lf_core.asynccalls.policy): a retry is a NAK with the backoff as delay; the delivery
//     count is the attempt number. The last failure, a 4xx, a delivery past MaxAttempts (the replica died on the last
//     attempt) or a call past MaxAge goes to LF_DEAD (Nats-Msg-Id {call id}.d{redrives}), then TERM.
//   - Callbacks: after the final record, the record view is POSTed to the call's X-Callback-Url by this replica
//     (CallbackAttempts with backoff), SSRF-checked at delivery time and sent to the checked address only.
package asyncworker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"litefunctions.io/runtime/envelope"
)

// Timings of the Python worker's.
const (
	PullExpires       = time.Second
	CallbackAttempts  = 4
	CallbackBackoff   = 500 * time.Millisecond
	CallbackTimeout   = 10 * time.Second
	brokerRetries     = 20
	watchdogInterval  = 500 * time.Millisecond
	maxLetterErrorLen = 1024
)

// Runner runs a call on the replica like a sync one (same concurrency limit and deadline handling); done gets
// the encoded response envelope, exactly once, from any goroutine.
type Runner interface {
	FreeSlots() int
	RunAsync(req *envelope.Request, done func(payload []byte))
}

// Logger is the replica's structured log.
type Logger interface {
	Info(event string, fields ...any)
	Warning(event string, fields ...any)
	Error(event string, fields ...any)
}

// Options of a worker, from the replica's settings.
type Options struct {
	Namespace, Function   string
	Timeout, AckGrace     time.Duration
	Concurrency           int // LF_ASYNC_CONCURRENCY
	MaxInflight           int // the consumer's max_ack_pending
	Policy                Policy
	AllowPrivateCallbacks bool
}

var errWrongSequence = errors.New("wrong last sequence")

// Worker pulls and runs the async calls of one replica.
type Worker struct {
	opts     Options
	runner   Runner
	log      Logger
	events   Events
	js       jetstream.JetStream
	ackWait  time.Duration
	workerID string

	consumer jetstream.Consumer
	results  jetstream.KeyValue

	running  atomic.Int64
	freed    chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	pulled   chan struct{} // closed when the pull loop ended
	calls    sync.WaitGroup
}

// New prepares a worker on the replica's connection; Start begins pulling.
func New(nc *nats.Conn, opts Options, runner Runner, log Logger, events Events) (*Worker, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if events == nil {
		events = Nop{}
	}
	host, _ := os.Hostname()
	return &Worker{
		opts: opts, runner: runner, log: log, events: events, js: js,
		ackWait: opts.Timeout + opts.AckGrace, workerID: host + ":" + strconv.Itoa(os.Getpid()),
		freed: make(chan struct{}, 1), stop: make(chan struct{}), pulled: make(chan struct{}),
	}, nil
}

// Start sets up the streams and the consumer (retrying until the broker answers) and pulls until StopPulling.
func (w *Worker) Start() { go w.run() }

// StopPulling sends no more pull requests and returns once the last one ended (at most PullExpires later); the
// calls it delivered have been handed to the replica by then.
func (w *Worker) StopPulling() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.pulled
}

// Close waits up to timeout for the calls this worker holds to be stored and acked (and callbacks sent).
func (w *Worker) Close(timeout time.Duration) {
	done := make(chan struct{})
	go func() { w.calls.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		w.log.Warning("async_close_timeout", "running", w.running.Load())
	}
}

func (w *Worker) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// pause waits d or until stopped; false when stopped.
func (w *Worker) pause(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-w.stop:
		return false
	case <-timer.C:
		return true
	}
}

func (w *Worker) run() {
	defer close(w.pulled)
	if !w.setup() {
		return
	}
	w.log.Info("async_ready", "consumer", ConsumerName(w.opts.Namespace, w.opts.Function),
		"ack_wait_s", w.ackWait.Seconds())
	for !w.stopped() {
		batch := w.window()
		if batch <= 0 {
			timer := time.NewTimer(watchdogInterval)
			select {
			case <-w.stop:
			case <-w.freed:
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		messages, err := w.consumer.Fetch(batch, jetstream.FetchMaxWait(PullExpires))
		if err != nil {
			w.log.Warning("async_pull_failed", "error", err.Error())
			if errors.Is(err, jetstream.ErrConsumerNotFound) && !w.setup() {
				return
			}
			w.pause(watchdogInterval)
			continue
		}
		for msg := range messages.Messages() {
			w.dispatch(msg)
		}
		if err := messages.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) &&
			!errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			w.log.Warning("async_pull_failed", "error", err.Error())
			if errors.Is(err, jetstream.ErrConsumerNotFound) && !w.setup() {
				return
			}
			w.pause(watchdogInterval)
		}
	}
}

// setup creates the streams, buckets and the consumer (updating its ack wait), retrying with backoff; false
// when stopped first.
func (w *Worker) setup() bool {
	delay := 200 * time.Millisecond
	for {
		err := w.trySetup()
		if err == nil {
			return true
		}
		w.log.Warning("async_setup_failed", "error", err.Error())
		if !w.pause(delay) {
			return false
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (w *Worker) trySetup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 4*APITimeout)
	defer cancel()
	if err := EnsureAll(ctx, w.js, max(w.opts.Policy.ResultTTL, DefaultResultTTL)); err != nil {
		return err
	}
	cfg := ConsumerConfig(w.opts.Namespace, w.opts.Function, w.ackWait, w.opts.MaxInflight)
	consumer, err := w.js.CreateOrUpdateConsumer(ctx, AsyncStream, cfg)
	if err != nil {
		return err
	}
	results, err := w.js.KeyValue(ctx, ResultsBucket)
	if err != nil {
		return err
	}
	w.consumer, w.results = consumer, results
	return nil
}

func (w *Worker) window() int {
	return min(w.runner.FreeSlots(), w.opts.Concurrency-int(w.running.Load()))
}

func (w *Worker) dispatch(msg jetstream.Msg) {
	w.running.Add(1)
	w.calls.Add(1)
	go func() {
		defer func() {
			w.running.Add(-1)
			w.calls.Done()
			select {
			case w.freed <- struct{}{}:
			default:
			}
		}()
		w.process(msg)
	}()
}

// ------------------------------------------------------------------------------------------------ one call

func (w *Worker) process(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Warning("async_bad_message", "error", err.Error())
		return
	}
	w.events.SetAsyncPending(int(min(meta.NumPending, uint64(1)<<31))) //nolint:gosec // capped
	attempt := int(min(meta.NumDelivered, 1<<31))                      //nolint:gosec // capped
	headers := msg.Headers()
	submitted := float64(meta.Timestamp.UnixNano()) / 1e9
	if v, err := strconv.ParseFloat(headers.Get(HeaderSubmitted), 64); err == nil && v != 0 {
		submitted = v
	}
	redrives, _ := strconv.Atoi(headers.Get(HeaderRedrive))
	callback := headers.Get(HeaderCallback)
	payload := msg.Data()
	req, err := envelope.DecodeRequest(payload)
	if err == nil && !ValidCallID(req.CallID) {
		err = fmt.Errorf("not a call id: %q", req.CallID)
	}
	if err != nil {
		w.log.Warning("async_bad_envelope", "error", err.Error())
		w.ack(msg, msg.Term)
		return
	}
	callID := req.CallID
	record, revision, err := w.get(callID)
	if err != nil {
		w.log.Error("async_call_failed", "call_id", callID, "error", err.Error())
		return // not acked: redelivered after the ack wait
	}
	if record != nil && Terminal(record.Status) {
		if record.Status == StatusDead && record.Redrives == redrives { // died after the record, before the letter
			if w.deadLetter(payload, headers, record) == nil {
				w.ack(msg, msg.Term)
			}
		} else {
			w.ack(msg, msg.Ack)
		}
		return
	}
	now := epoch()
	base := record
	if base == nil {
		base = &Record{CallID: callID, Namespace: w.opts.Namespace, Function: w.opts.Function, Status: StatusQueued, SubmittedAt: submitted}
	}
	if base.SubmittedAt == 0 {
		base.SubmittedAt = submitted
	}
	base.Redrives = redrives
	base.Callback = ""
	if callback != "" {
		base.Callback = "pending"
	}
	if before := BeforeAttempt(attempt, submitted, now, w.opts.Policy); before.Action == ActionDead {
		base.Attempts = max(base.Attempts, attempt-1)
		w.finishDead(msg, payload, headers, base, revision, before.Reason, callback)
		return
	}
	base.Status, base.Attempts, base.UpdatedAt, base.Worker = StatusRunning, attempt, now, w.workerID
	revision, err = w.put(base, revision)
	if errors.Is(err, errWrongSequence) {
		w.log.Info("async_call_taken", "call_id", callID, "attempt", attempt)
		return // another delivery of this call moved the record first: it owns the call
	}
	if err != nil {
		w.log.Error("async_call_failed", "call_id", callID, "error", err.Error())
		return
	}
	w.events.AsyncRun()
	resp, err := w.runHandler(msg, req)
	if err != nil { // the replica answered garbage: a crash, retryable
		resp = &envelope.Response{Status: 502, ErrorKind: envelope.ErrInternal, Error: err.Error()}
	}
	status := int(resp.Status)
	result := &Result{Status: status, Headers: make([][2]string, 0, len(resp.Headers)), Body: resp.Body}
	for _, h := range resp.Headers {
		result.Headers = append(result.Headers, [2]string{h.Name, h.Value})
	}
	now = epoch()
	decision := AfterAttempt(attempt, status, submitted, now, w.opts.Policy, rand.Float64()) //nolint:gosec // jitter
	base.UpdatedAt = now
	switch decision.Action {
	case ActionDone:
		base.Status, base.Result, base.LastError = StatusSucceeded, result, ""
		if !w.storeFinal(base, revision) {
			return
		}
		w.ack(msg, msg.Ack)
		w.callback(base, callback)
		return
	case ActionRetry:
		base.Status, base.Result, base.LastError = StatusFailed, result, errorOf(resp)
		base.NextAttemptAt = now + decision.Delay.Seconds()
		if !w.storeFinal(base, revision) {
			return
		}
		w.events.AsyncRetry()
		w.ack(msg, func() error { return msg.NakWithDelay(decision.Delay) })
		return
	}
	base.Result = result
	w.finishDead(msg, payload, headers, base, revision, decision.Reason+": "+errorOf(resp), callback)
}

func errorOf(resp *envelope.Response) string {
	if resp.Error != "" {
		return resp.Error
	}
	return fmt.Sprintf("status %d", resp.Status)
}

// runHandler runs the call on the replica, telling JetStream every half ack wait that it is still running.
func (w *Worker) runHandler(msg jetstream.Msg, req *envelope.Request) (*envelope.Response, error) {
	answered := make(chan []byte, 1)
	w.runner.RunAsync(req, func(payload []byte) {
		select {
		case answered <- payload:
		default:
		}
	})
	ticker := time.NewTicker(max(w.ackWait/2, 500*time.Millisecond))
	defer ticker.Stop()
	for {
		select {
		case payload := <-answered:
			return envelope.DecodeResponse(payload)
		case <-ticker.C:
			if err := msg.InProgress(); err != nil {
				w.log.Warning("async_ack_lost", "call_id", req.CallID, "error", err.Error())
			}
		}
	}
}

func (w *Worker) finishDead(msg jetstream.Msg, payload []byte, headers nats.Header, record *Record, revision uint64,
	reason, callback string,
) {
	record.Status, record.LastError, record.UpdatedAt = StatusDead, reason, epoch()
	if !w.storeFinal(record, revision) {
		return
	}
	if err := w.deadLetter(payload, headers, record); err != nil {
		w.log.Error("async_call_failed", "call_id", record.CallID, "error", err.Error())
		return // not acked: the next delivery finds the dead record and sends the letter
	}
	w.events.AsyncDead()
	w.ack(msg, msg.Term)
	w.log.Warning("async_dead_letter", "call_id", record.CallID, "attempts", record.Attempts, "error", reason)
	w.callback(record, callback)
}

// DeadLetterHeaders are the Lf-* headers of a call's dead letter (besides the envelope it carries).
func DeadLetterHeaders(record *Record, callback string) nats.Header {
	reason := strings.NewReplacer("\r", " ", "\n", " ").Replace(record.LastError)
	if runes := []rune(reason); len(runes) > maxLetterErrorLen {
		reason = string(runes[:maxLetterErrorLen])
	}
	if reason == "" {
		reason = "unknown"
	}
	h := nats.Header{}
	h.Set(HeaderMsgID, fmt.Sprintf("%s.d%d", record.CallID, record.Redrives))
	h.Set(HeaderError, reason)
	h.Set(HeaderAttempts, strconv.Itoa(record.Attempts))
	h.Set(HeaderSubmitted, strconv.FormatFloat(record.SubmittedAt, 'f', 6, 64))
	h.Set(HeaderDeadAt, strconv.FormatFloat(record.UpdatedAt, 'f', 6, 64))
	h.Set(HeaderRedrive, strconv.Itoa(record.Redrives))
	if record.Result != nil {
		h.Set(HeaderStatus, strconv.Itoa(record.Result.Status))
	}
	if callback != "" {
		h.Set(HeaderCallback, callback)
	}
	return h
}

func (w *Worker) deadLetter(payload []byte, headers nats.Header, record *Record) error {
	letter := &nats.Msg{
		Subject: DeadSubject(record.Namespace, record.Function, record.CallID), Data: payload,
		Header: DeadLetterHeaders(record, headers.Get(HeaderCallback)),
	}
	return w.retrying(func(ctx context.Context) error {
		_, err := w.js.PublishMsg(ctx, letter)
		return err
	})
}

// storeFinal CASes the record; false (and nothing acked) when a newer delivery moved it: this is a zombie.
func (w *Worker) storeFinal(record *Record, revision uint64) bool {
	_, err := w.put(record, revision)
	if errors.Is(err, errWrongSequence) {
		w.events.AsyncZombie()
		w.log.Warning("async_stale_result_dropped", "call_id", record.CallID, "status", record.Status)
		return false
	}
	if err != nil {
		w.log.Error("async_call_failed", "call_id", record.CallID, "error", err.Error())
		return false
	}
	return true
}

// get is the record of a call and its revision (nil, 0 when it has none).
func (w *Worker) get(callID string) (*Record, uint64, error) {
	var entry jetstream.KeyValueEntry
	err := w.retrying(func(ctx context.Context) error {
		var err error
		entry, err = w.results.Get(ctx, callID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			entry, err = nil, nil
		}
		return err
	})
	if err != nil || entry == nil {
		return nil, 0, err
	}
	record, err := DecodeRecord(entry.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("record of %s: %w", callID, err)
	}
	return record, entry.Revision(), nil
}

// put writes the record if its revision is still `revision` (0: create-only), with the result TTL; the new
// revision, or errWrongSequence.
func (w *Worker) put(record *Record, revision uint64) (uint64, error) {
	msg := nats.NewMsg("$KV." + ResultsBucket + "." + record.CallID)
	msg.Data = EncodeRecord(record)
	msg.Header.Set("Nats-Expected-Last-Subject-Sequence", strconv.FormatUint(revision, 10))
	msg.Header.Set("Nats-TTL", strconv.Itoa(max(1, int(w.opts.Policy.ResultTTL.Seconds())))+"s")
	var seq uint64
	err := w.retrying(func(ctx context.Context) error {
		ack, err := w.js.PublishMsg(ctx, msg)
		if err == nil {
			seq = ack.Sequence
		}
		return err
	})
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == ErrWrongLastSequence {
		return 0, errWrongSequence
	}
	return seq, err
}

// retrying runs a broker call until it succeeds, the server refuses it (an API error: not retried), or it
// failed brokerRetries times (a broker restart is waited out with backoff).
func (w *Worker) retrying(call func(ctx context.Context) error) error {
	delay := 100 * time.Millisecond
	var err error
	for range brokerRetries {
		ctx, cancel := context.WithTimeout(context.Background(), APITimeout)
		err = call(ctx)
		cancel()
		var apiErr *jetstream.APIError
		if err == nil || errors.As(err, &apiErr) {
			return err
		}
		time.Sleep(delay)
		delay = min(delay*2, 2*time.Second)
	}
	return err
}

func (w *Worker) ack(msg jetstream.Msg, how func() error) {
	if err := how(); err != nil {
		w.log.Warning("async_ack_lost", "reply", msg.Reply(), "error", err.Error())
	}
}

func epoch() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// -------------------------------------------------------------------------------------------------- callbacks

func (w *Worker) callback(record *Record, url string) {
	if url == "" {
		return
	}
	snapshot := *record
	w.calls.Add(1)
	go func() {
		defer w.calls.Done()
		w.deliverCallback(&snapshot, url)
	}()
}

func (w *Worker) deliverCallback(record *Record, url string) {
	body := RecordView(record)
	outcome := "failed"
	attempt := 1
	for ; attempt <= CallbackAttempts; attempt++ {
		status, err := Post(url, body, record.CallID, w.opts.AllowPrivateCallbacks)
		var unsafe *UnsafeURLError
		switch {
		case errors.As(err, &unsafe):
			outcome = "refused: " + unsafe.Error()
		case err != nil:
			outcome = "failed: " + err.Error()
		case status >= 200 && status < 300:
			outcome = "delivered"
		default:
			outcome = fmt.Sprintf("failed: status %d", status)
		}
		if unsafe != nil || outcome == "delivered" {
			break
		}
		if attempt < CallbackAttempts {
			time.Sleep(CallbackBackoff << (attempt - 1))
		}
	}
	w.log.Info("async_callback", "call_id", record.CallID, "outcome", outcome, "attempts", min(attempt, CallbackAttempts))
	current, revision, err := w.get(record.CallID)
	if err != nil || current == nil {
		return
	}
	current.Callback = outcome
	_, _ = w.put(current, revision) // a newer write wins
}
