package asyncworker

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Policy is lf_core.asynccalls.policy.AsyncPolicy: what follows an attempt. Pure, no clock of its own.
type Policy struct {
	MaxAttempts int           // in total (spec retries + 1)
	Backoff     time.Duration // before attempt 2; doubled each time
	MaxBackoff  time.Duration
	Jitter      float64       // up to this fraction added to a delay, never taken off
	MaxAge      time.Duration // 0: no limit
	ResultTTL   time.Duration
}

// Defaults shared with lf_core.asynccalls.policy.
const (
	DefaultMaxBackoff = 300 * time.Second
	DefaultJitter     = 0.2
)

// Action is what to do with a call.
type Action int

// The actions of a Decision.
const (
	ActionRun Action = iota
	ActionDone
	ActionRetry
	ActionDead
)

// Decision is BeforeAttempt's or AfterAttempt's answer.
type Decision struct {
	Action Action
	Delay  time.Duration
	Reason string
}

// IsRetryable: 408, 429 and every 5xx retry; any other 4xx would fail the same way again.
func IsRetryable(status int) bool { return status == 408 || status == 429 || status >= 500 }

// IsSuccess: 1xx-3xx.
func IsSuccess(status int) bool { return status < 400 }

// BackoffDelay is how long to wait after failed attempt `attempt` (1-based) before the next one:
// backoff * 2**(attempt-1), capped at MaxBackoff, plus up to Jitter of it; rand is in [0, 1).
func BackoffDelay(attempt int, p Policy, rand float64) time.Duration {
	base := min(p.Backoff.Seconds()*math.Pow(2, float64(max(0, attempt-1))), p.MaxBackoff.Seconds())
	return time.Duration(base * (1 + p.Jitter*rand) * float64(time.Second))
}

// BeforeAttempt: may delivery number `attempt` run? A delivery past MaxAttempts is a replica that died on the
// last one. Times are seconds since the epoch.
func BeforeAttempt(attempt int, submittedAt, now float64, p Policy) Decision {
	if attempt > p.MaxAttempts {
		return Decision{Action: ActionDead, Reason: fmt.Sprintf("the replica stopped during attempt %d of %d", attempt-1, p.MaxAttempts)}
	}
	if p.MaxAge > 0 && now-submittedAt > p.MaxAge.Seconds() {
		return Decision{Action: ActionDead, Reason: fmt.Sprintf("older than maxAge (%s s) before attempt %d", pyG(p.MaxAge.Seconds()), attempt)}
	}
	return Decision{Action: ActionRun}
}

// AfterAttempt is what follows attempt `attempt` that answered `status`.
func AfterAttempt(attempt, status int, submittedAt, now float64, p Policy, rand float64) Decision {
	if IsSuccess(status) {
		return Decision{Action: ActionDone}
	}
	if !IsRetryable(status) {
		return Decision{Action: ActionDead, Reason: fmt.Sprintf("status %d is not retryable", status)}
	}
	if attempt >= p.MaxAttempts {
		return Decision{Action: ActionDead, Reason: fmt.Sprintf("status %d on the last of %d attempts", status, p.MaxAttempts)}
	}
	delay := BackoffDelay(attempt, p, rand)
	if p.MaxAge > 0 && now+delay.Seconds()-submittedAt > p.MaxAge.Seconds() {
		return Decision{Action: ActionDead, Reason: fmt.Sprintf("status %d; the next attempt would pass maxAge (%s s)", status, pyG(p.MaxAge.Seconds()))}
	}
	return Decision{Action: ActionRetry, Delay: delay, Reason: fmt.Sprintf("status %d", status)}
}

// pyG formats like Python's f"{x:g}" (6 significant digits, trailing zeros dropped).
func pyG(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }
