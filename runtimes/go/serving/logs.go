package serving

import (
	"encoding/json"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// Log writes the runtime's structured log: one JSON object per line on stderr, the same events and leading
// fields (ts, level, event, function, namespace) as the Python runtime. Successful calls are not logged.
type Log struct {
	mu      sync.Mutex
	out     io.Writer
	context []any
}

// NewLog logs to stderr with context fields (key, value, ...).
func NewLog(context ...any) *Log { return &Log{out: os.Stderr, context: context} }

// Event writes one line; fields are key, value pairs kept in order.
func (l *Log) Event(event string, level string, fields ...any) {
	now := time.Now().UTC()
	buf := make([]byte, 0, 256)
	buf = append(buf, `{"ts":"`...)
	buf = now.AppendFormat(buf, "2006-01-02T15:04:05.000Z")
	buf = append(buf, `","level":`...)
	buf = strconv.AppendQuote(buf, level)
	buf = append(buf, `,"event":`...)
	buf = appendJSON(buf, event)
	for _, kv := range [][]any{l.context, fields} {
		for i := 0; i+1 < len(kv); i += 2 {
			key, _ := kv[i].(string)
			buf = append(buf, ',')
			buf = appendJSON(buf, key)
			buf = append(buf, ':')
			buf = appendJSON(buf, kv[i+1])
		}
	}
	buf = append(buf, "}\n"...)
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.out.Write(buf)
}

func appendJSON(buf []byte, v any) []byte {
	if d, ok := v.(time.Duration); ok {
		v = d.Seconds()
	}
	data, err := json.Marshal(v)
	if err != nil {
		data, _ = json.Marshal(err.Error())
	}
	return append(buf, data...)
}

// Info, Warning and Error are Event at that level.
func (l *Log) Info(event string, fields ...any)    { l.Event(event, "info", fields...) }
func (l *Log) Warning(event string, fields ...any) { l.Event(event, "warning", fields...) }
func (l *Log) Error(event string, fields ...any)   { l.Event(event, "error", fields...) }
