package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"litefunctions.io/runtime/lf"
)

func TestSplitLinesIsPythonsSplitlines(t *testing.T) {
	for text, want := range map[string][]string{
		"":                 nil,
		"a":                {"a"},
		"a\n":              {"a"},
		"a\nb":             {"a", "b"},
		"a\r\nb\rc\n\n":    {"a", "b", "c", ""},
		"\n":               {""},
		"x\vy\fz\x1cw":     {"x", "y", "z", "w"},
		"é\u2028ü\u0085!":  {"é", "ü", "!"},
		"tab\tstays\n end": {"tab\tstays", " end"},
	} {
		if got := splitLines(text); !reflect.DeepEqual(got, want) {
			t.Errorf("splitLines(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestRecordIsThePythonRuntimesShape(t *testing.T) {
	meta := recordMeta{namespace: "default", function: "hello", replica: "host/42"}
	chunks := []chunk{{streamStdout, []byte("one\ntwo <&>\n")}, {streamStderr, []byte("oops")}, {streamStdout, []byte("é\n")}}
	at := time.Unix(1700000000, 500_000_000)
	got := string(buildRecord(meta, "c1", chunks, 0, at))
	want := `{"ts":1700000000.5,"call_id":"c1","namespace":"default","function":"hello","replica":"host/42",` +
		`"lines":[{"stream":"stdout","text":"one"},{"stream":"stdout","text":"two <&>"},` +
		`{"stream":"stderr","text":"oops"},{"stream":"stdout","text":"é"}]}`
	if got != want {
		t.Fatalf("record\n got %s\nwant %s", got, want)
	}
	dropped := string(buildRecord(meta, "c2", nil, 10, at))
	if !strings.HasSuffix(dropped, `"lines":[],"dropped_bytes":10}`) {
		t.Fatalf("a call over its cap: %s", dropped)
	}
}

// fakeStreams installs a capture over two variables standing for os.Stdout and os.Stderr, their originals
// being files the test reads back.
func fakeStreams(t *testing.T) (c *capture, stdout, stderr **os.File, passed func() string) {
	t.Helper()
	dir := t.TempDir()
	var out, errs *os.File
	for _, f := range []**os.File{&out, &errs} {
		file, err := os.Create(filepath.Join(dir, fmt.Sprint(len(dir), f == &errs)))
		if err != nil {
			t.Fatal(err)
		}
		*f = file
	}
	realOut, realErr := out, errs
	c, err := installCapture("default", "hello", &out, &errs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.close()
		realOut.Close()
		realErr.Close()
	})
	return c, &out, &errs, func() string {
		a, _ := os.ReadFile(realOut.Name())
		b, _ := os.ReadFile(realErr.Name())
		return string(a) + "|" + string(b)
	}
}

func newOutput(c *capture, id string) *callOutput {
	o := &callOutput{Context: context.Background(), capture: c, id: id}
	o.writers = [2]streamWriter{{o: o, stream: streamStdout}, {o: o, stream: streamStderr}}
	return o
}

type record struct {
	CallID  string `json:"call_id"`
	Replica string `json:"replica"`
	Lines   []struct {
		Stream string `json:"stream"`
		Text   string `json:"text"`
	} `json:"lines"`
	Dropped int `json:"dropped_bytes"`
}

func decode(t *testing.T, data []byte) record {
	t.Helper()
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	return r
}

func lines(r record) string {
	var out []string
	for _, l := range r.Lines {
		out = append(out, l.Stream+":"+l.Text)
	}
	return strings.Join(out, ",")
}

func TestOutputOfTheOnlyRunningHandlerIsItsCalls(t *testing.T) {
	c, stdout, stderr, passed := fakeStreams(t)
	before := newOutput(c, "early")
	fmt.Fprintln(*stdout, "before any call") // no call running: passed through only
	a := newOutput(c, "a")
	c.begin(a)
	fmt.Fprintln(*stdout, "hello")
	fmt.Fprint(*stderr, "warn")
	fmt.Fprintln(*stderr, "ing")
	rec := c.end(a)
	if rec == nil {
		t.Fatal("no record for a call that printed")
	}
	got := decode(t, rec)
	// (between the two streams order is not kept: each stream's lines are)
	if got.CallID != "a" || !strings.Contains(got.Replica, "/") ||
		(lines(got) != "stdout:hello,stderr:warning" && lines(got) != "stderr:warning,stdout:hello") {
		t.Fatalf("record %+v", got)
	}
	if c.end(before) != nil {
		t.Fatal("output written while no handler ran was attributed")
	}
	fmt.Fprintln(*stdout, "after") // a has returned: not its output
	b := newOutput(c, "b")
	c.begin(b)
	if rec := c.end(b); rec != nil {
		t.Fatalf("b printed nothing, got %s", rec)
	}
	c.mu.Lock()
	c.drainLocked()
	c.mu.Unlock()
	if want := "before any call\nhello\nafter\n|warning\n"; passed() != want {
		t.Fatalf("passed through %q, want %q", passed(), want)
	}
}

func TestConcurrentHandlersGetOnlyTheirOwnWritersOutput(t *testing.T) {
	c, stdout, _, _ := fakeStreams(t)
	a, b := newOutput(c, "a"), newOutput(c, "b")
	c.begin(a)
	c.begin(b)
	fmt.Fprintln(*stdout, "whose?")
	fmt.Fprintln(lf.Stdout(a), "mine: a")
	fmt.Fprintln(lf.Stderr(b), "mine: b")
	logger := lf.Logger(b)
	logger.SetFlags(0)
	logger.Print("logged")
	ra, rb := c.end(a), c.end(b)
	if got := lines(decode(t, ra)); got != "stdout:mine: a" {
		t.Fatalf("a: %s", got)
	}
	if got := lines(decode(t, rb)); got != "stderr:mine: b,stderr:logged" {
		t.Fatalf("b: %s", got)
	}
	fmt.Fprintln(lf.Stdout(a), "late") // after its call: passed through, kept nowhere
	if c.flush(a) != nil {
		t.Fatal("output after the call was kept")
	}
}

func TestACallKeepsAtMost64KiB(t *testing.T) {
	c, _, _, _ := fakeStreams(t)
	a := newOutput(c, "a")
	c.begin(a)
	w := lf.Stdout(a)
	line := strings.Repeat("x", 1023) + "\n"
	for range 70 {
		fmt.Fprint(w, line)
	}
	got := decode(t, c.end(a))
	if len(got.Lines) != 64 || got.Dropped != 6*1024 {
		t.Fatalf("%d lines kept, %d bytes dropped", len(got.Lines), got.Dropped)
	}
}

func TestATimedOutCallsOutputIsFlushedThenTheRest(t *testing.T) {
	c, stdout, _, _ := fakeStreams(t)
	a := newOutput(c, "a")
	c.begin(a)
	fmt.Fprintln(*stdout, "before the deadline")
	if got := lines(decode(t, c.flush(a))); got != "stdout:before the deadline" {
		t.Fatalf("flushed %s", got)
	}
	fmt.Fprintln(*stdout, "after it")
	if got := lines(decode(t, c.end(a))); got != "stdout:after it" {
		t.Fatalf("at return %s", got)
	}
}

func TestLfWritersOutsideACallAreTheProcessStreams(t *testing.T) {
	ctx := context.Background()
	if lf.Stdout(ctx) != os.Stdout || lf.Stderr(ctx) != os.Stderr {
		t.Fatal("outside a call, lf.Stdout/lf.Stderr are os.Stdout/os.Stderr")
	}
}

// BenchmarkSilentCall is what capture adds to a call that prints nothing: begin and end (a poll(2) each).
func BenchmarkSilentCall(b *testing.B) {
	dir := b.TempDir()
	out, _ := os.Create(filepath.Join(dir, "out"))
	errs, _ := os.Create(filepath.Join(dir, "err"))
	defer out.Close()
	defer errs.Close()
	c, err := installCapture("default", "hello", &out, &errs)
	if err != nil {
		b.Fatal(err)
	}
	defer c.close()
	o := newOutput(c, "c1")
	b.ReportAllocs()
	for b.Loop() {
		c.begin(o)
		if c.end(o) != nil {
			b.Fatal("a record for a silent call")
		}
		o.done = false
	}
}
