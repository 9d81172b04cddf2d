package asyncworker

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names and definitions of lf_core.asynccalls.streams (docs/protocol.md "Async calls"): whoever starts first
// creates the streams and buckets, each left as it is when it exists (an operator may have tuned it).
const (
	AsyncStream       = "LF_ASYNC"
	DeadStream        = "LF_DEAD"
	ResultsBucket     = "LF_RESULTS"
	IdempotencyBucket = "LF_IDEMPOTENCY"
	AsyncPrefix       = "lf.async"
	DeadPrefix        = "lf.dead"

	DefaultResultTTL  = 24 * time.Hour
	IdempotencyTTL    = 24 * time.Hour
	DuplicateWindow   = 10 * time.Minute
	DeadMaxAge        = 14 * 24 * time.Hour
	APITimeout        = 5 * time.Second
	maxDuplicateOfKV  = 120 * time.Second
	consumerMaxWaitng = 512
)

// Message headers on LF_ASYNC and LF_DEAD.
const (
	HeaderMsgID     = "Nats-Msg-Id"
	HeaderCallback  = "Lf-Callback-Url"
	HeaderSubmitted = "Lf-Submitted"
	HeaderRedrive   = "Lf-Redrive"
	HeaderError     = "Lf-Error"
	HeaderAttempts  = "Lf-Attempts"
	HeaderStatus    = "Lf-Status"
	HeaderDeadAt    = "Lf-Dead-At"
)

// ErrWrongLastSequence is the server's answer to a compare-and-set write that lost.
const ErrWrongLastSequence jetstream.ErrorCode = 10071

// ConsumerName is the function's durable pull consumer, shared by its replicas.
func ConsumerName(namespace, function string) string { return namespace + "_" + function }

// AsyncFilter is what the function's consumer pulls: every call of that function.
func AsyncFilter(namespace, function string) string {
	return AsyncPrefix + "." + namespace + "." + function + ".*"
}

// DeadSubject is where a call's dead letter goes.
func DeadSubject(namespace, function, callID string) string {
	return DeadPrefix + "." + namespace + "." + function + "." + callID
}

// ValidCallID: 1-64 of [0-9a-zA-Z-], what may appear in a subject and a KV key.
func ValidCallID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	hasAlnum := false
	for _, c := range []byte(id) {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			hasAlnum = true
		case c == '-':
		default:
			return false
		}
	}
	return hasAlnum
}

// StreamConfigs are LF_ASYNC, LF_DEAD, and the streams of the LF_RESULTS and LF_IDEMPOTENCY buckets.
func StreamConfigs(resultTTL time.Duration) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name: AsyncStream, Subjects: []string{AsyncPrefix + ".>"}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Replicas: 1, Duplicates: DuplicateWindow, Discard: jetstream.DiscardOld,
			AllowDirect: true,
		},
		{
			Name: DeadStream, Subjects: []string{DeadPrefix + ".>"}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, Replicas: 1, MaxAge: DeadMaxAge, Duplicates: DuplicateWindow,
			Discard: jetstream.DiscardOld, AllowDirect: true,
		},
		kvConfig(ResultsBucket, resultTTL),
		kvConfig(IdempotencyBucket, IdempotencyTTL),
	}
}

// kvConfig is a KV bucket's stream as nats-py and the nats CLI create it: history 1, per-message TTL on.
func kvConfig(bucket string, ttl time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: "KV_" + bucket, Subjects: []string{"$KV." + bucket + ".>"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.FileStorage, Replicas: 1, MaxMsgsPerSubject: 1, MaxAge: ttl,
		Duplicates: min(ttl, maxDuplicateOfKV), Discard: jetstream.DiscardNew, DenyDelete: true, DenyPurge: false,
		AllowRollup: true, AllowDirect: true, AllowMsgTTL: true, MaxMsgs: -1, MaxBytes: -1, MaxMsgSize: -1,
	}
}

// ConsumerConfig is the function's durable pull consumer. Redeliveries are counted and stopped by the
// runtimes (MaxAttempts), not by max_deliver, so the last failure can still be dead-lettered.
func ConsumerConfig(namespace, function string, ackWait time.Duration, maxAckPending int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: ConsumerName(namespace, function), FilterSubject: AsyncFilter(namespace, function),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver: -1, MaxAckPending: maxAckPending, MaxWaiting: consumerMaxWaitng,
		ReplayPolicy: jetstream.ReplayInstantPolicy,
	}
}

// EnsureAll creates each stream unless it exists (a concurrent creator with the same config wins quietly).
func EnsureAll(ctx context.Context, js jetstream.JetStream, resultTTL time.Duration) error {
	for _, cfg := range StreamConfigs(resultTTL) {
		call, cancel := context.WithTimeout(ctx, APITimeout)
		_, err := js.Stream(call, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(call, cfg)
			if err != nil && (errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || strings.Contains(err.Error(), "already")) {
				err = nil
			}
		}
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}
