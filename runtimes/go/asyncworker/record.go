package asyncworker

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Record is `LF_RESULTS[{call id}]` (lf_core.asynccalls.streams.CallRecord): one per call, moved on only by
// compare-and-set. EncodeRecord writes the bytes msgspec writes for the same record (field order, defaults
// omitted, float and string forms), so the ingestor, `lf dlq` and the Python runtime read and CAS the same value.
type Record struct {
	CallID        string  `json:"call_id"`
	Namespace     string  `json:"namespace"`
	Function      string  `json:"function"`
	Status        string  `json:"status"`
	Attempts      int     `json:"attempts"`
	SubmittedAt   float64 `json:"submitted_at"`
	UpdatedAt     float64 `json:"updated_at"`
	NextAttemptAt float64 `json:"next_attempt_at"`
	LastError     string  `json:"last_error"`
	Worker        string  `json:"worker"`
	Result        *Result `json:"result"`
	Callback      string  `json:"callback"` // "" none, "pending", "delivered", "failed: ..."
	Redrives      int     `json:"redrives"`
}

// Result is the last attempt's answer (lf_core.asynccalls.streams.CallResult; all fields always written).
type Result struct {
	Status  int         `json:"status"`
	Headers [][2]string `json:"headers"`
	Body    []byte      `json:"body"` // base64 in JSON
}

// Record statuses.
const (
	StatusQueued    = "queued"
	StatusRunning   = "running"
	StatusFailed    = "failed" // a retry is scheduled
	StatusSucceeded = "succeeded"
	StatusDead      = "dead"
	StatusCancelled = "cancelled"
)

// Terminal tells whether a record's call is over.
func Terminal(status string) bool {
	return status == StatusSucceeded || status == StatusDead || status == StatusCancelled
}

// DecodeRecord reads a record (unknown fields ignored).
func DecodeRecord(data []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// EncodeRecord writes r as msgspec does (CallRecord has omit_defaults; CallResult writes every field).
func EncodeRecord(r *Record) []byte {
	b := make([]byte, 0, 256+len(r.LastError)+resultSize(r.Result))
	b = append(b, `{"call_id":`...)
	b = msgspecString(b, r.CallID)
	b = append(b, `,"namespace":`...)
	b = msgspecString(b, r.Namespace)
	b = append(b, `,"function":`...)
	b = msgspecString(b, r.Function)
	b = append(b, `,"status":`...)
	b = msgspecString(b, r.Status)
	if r.Attempts != 0 {
		b = strconv.AppendInt(append(b, `,"attempts":`...), int64(r.Attempts), 10)
	}
	for _, f := range []struct {
		key   string
		value float64
	}{{`,"submitted_at":`, r.SubmittedAt}, {`,"updated_at":`, r.UpdatedAt}, {`,"next_attempt_at":`, r.NextAttemptAt}} {
		if f.value != 0 {
			b = msgspecFloat(append(b, f.key...), f.value)
		}
	}
	if r.LastError != "" {
		b = msgspecString(append(b, `,"last_error":`...), r.LastError)
	}
	if r.Worker != "" {
		b = msgspecString(append(b, `,"worker":`...), r.Worker)
	}
	if r.Result != nil {
		b = append(b, `,"result":{"status":`...)
		b = strconv.AppendInt(b, int64(r.Result.Status), 10)
		b = append(b, `,"headers":[`...)
		for i, h := range r.Result.Headers {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = msgspecString(b, h[0])
			b = append(b, ',')
			b = msgspecString(b, h[1])
			b = append(b, ']')
		}
		b = append(b, `],"body":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Result.Body)
		b = append(b, `"}`...)
	}
	if r.Callback != "" {
		b = msgspecString(append(b, `,"callback":`...), r.Callback)
	}
	if r.Redrives != 0 {
		b = strconv.AppendInt(append(b, `,"redrives":`...), int64(r.Redrives), 10)
	}
	return append(b, '}')
}

func resultSize(r *Result) int {
	if r == nil {
		return 0
	}
	return 64 + base64.StdEncoding.EncodedLen(len(r.Body)) + 32*len(r.Headers)
}

// msgspecString: `"` and `\` escaped, \n \r \t \b \f short, other control characters as \u00xx, everything
// else (non-ASCII too) as UTF-8. Invalid UTF-8 (which a Python str cannot hold) becomes U+FFFD.
func msgspecString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b = append(b, '\\', '"')
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// msgspecFloat: the shortest repr that reads back the same, with ".0" on whole numbers (1.0, 1732850000.5);
// outside [1e-5, 1e16) msgspec writes an exponent without "+" or leading zeros (1e16, 1e-6).
func msgspecFloat(b []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	if abs == 0 || (abs >= 1e-5 && abs < 1e16) {
		start := len(b)
		b = strconv.AppendFloat(b, f, 'f', -1, 64)
		if !strings.ContainsRune(string(b[start:]), '.') {
			b = append(b, '.', '0')
		}
		return b
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // 1e+16, 1.5e-06
	mantissa, exp, _ := strings.Cut(s, "e")
	n, _ := strconv.Atoi(exp)
	return strconv.AppendInt(append(append(b, mantissa...), 'e'), int64(n), 10)
}

// pyFloat is Python's repr(float) (what json.dumps writes): like msgspec's in [1e-4, 1e16), else 1e+16, 1e-05.
func pyFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs == 0 || (abs >= 1e-4 && abs < 1e16) || math.IsInf(f, 0) || math.IsNaN(f) {
		return msgspecFloat(b, f)
	}
	s := strconv.FormatFloat(f, 'e', -1, 64)
	mantissa, exp, _ := strings.Cut(s, "e")
	sign, digits := exp[:1], strings.TrimLeft(exp[1:], "0")
	if len(digits) < 2 {
		digits = strings.Repeat("0", 2-len(digits)) + digits
	}
	return append(append(append(b, mantissa...), 'e'), sign+digits...)
}

// pyString is json.dumps' string (ensure_ascii): printable ASCII as is, `"` `\` and \n \r \t \b \f escaped,
// everything else as \uxxxx (UTF-16 surrogate pairs above U+FFFF).
func pyString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '"':
			b = append(b, '\\', '"')
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r >= 0x20 && r < 0x7f:
			b = append(b, byte(r))
		case r > 0xffff:
			r -= 0x10000
			b = appendU(appendU(b, 0xd800+(r>>10)), 0xdc00+(r&0x3ff))
		default:
			b = appendU(b, r)
		}
	}
	return append(b, '"')
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// RecordView is lf_core.asynccalls.streams.record_view serialised as `json.dumps(view, separators=(",", ":"))`: what a
// callback receives (and GET /invocations/{id} answers).
func RecordView(r *Record) []byte {
	b := make([]byte, 0, 256+resultSize(r.Result))
	b = pyString(append(b, `{"callId":`...), r.CallID)
	b = pyString(append(b, `,"function":`...), r.Function)
	b = pyString(append(b, `,"namespace":`...), r.Namespace)
	b = pyString(append(b, `,"status":`...), r.Status)
	b = strconv.AppendInt(append(b, `,"attempts":`...), int64(r.Attempts), 10)
	b = pyFloat(append(b, `,"submittedAt":`...), r.SubmittedAt)
	b = pyFloat(append(b, `,"updatedAt":`...), r.UpdatedAt)
	if r.LastError != "" {
		b = pyString(append(b, `,"lastError":`...), r.LastError)
	}
	if r.NextAttemptAt != 0 && r.Status == StatusFailed {
		b = pyFloat(append(b, `,"nextAttemptAt":`...), r.NextAttemptAt)
	}
	if r.Callback != "" {
		b = pyString(append(b, `,"callback":`...), r.Callback)
	}
	if r.Result != nil {
		b = strconv.AppendInt(append(b, `,"result":{"status":`...), int64(r.Result.Status), 10)
		b = append(b, `,"headers":[`...)
		for i, h := range r.Result.Headers {
			if i > 0 {
				b = append(b, ',')
			}
			b = pyString(append(b, '['), h[0])
			b = pyString(append(b, ','), h[1])
			b = append(b, ']')
		}
		b = append(b, ']')
		if utf8.Valid(r.Result.Body) {
			b = pyString(append(b, `,"body":`...), string(r.Result.Body))
		} else {
			b = append(b, `,"bodyBase64":"`...)
			b = base64.StdEncoding.AppendEncode(b, r.Result.Body)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}
