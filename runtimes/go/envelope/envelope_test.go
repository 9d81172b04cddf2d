package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// vectorsDir is native/vectors/, shared by the Rust, Python and Go tests.
var vectorsDir = filepath.Join("..", "..", "..", "native", "vectors")

type vectorFile struct {
	Vectors []struct {
		Name   string          `json:"name"`
		Kind   string          `json:"kind"`
		File   string          `json:"file"`
		Fields json.RawMessage `json:"fields"`
	} `json:"vectors"`
}

type fields struct {
	CallID      string      `json:"call_id"`
	Method      string      `json:"method"`
	Path        string      `json:"path"`
	Query       string      `json:"query"`
	Headers     [][2]string `json:"headers"`
	Params      [][2]string `json:"params"`
	BodyB64     string      `json:"body_b64"`
	BudgetMS    uint32      `json:"budget_ms"`
	TraceParent string      `json:"traceparent"`
	TraceState  string      `json:"tracestate"`
	Status      uint16      `json:"status"`
	ErrorKind   uint8       `json:"error_kind"`
	ColdStart   bool        `json:"cold_start"`
	DurationNS  uint64      `json:"duration_ns"`
	Error       string      `json:"error"`
}

func toPairs(raw [][2]string) []Pair {
	if len(raw) == 0 {
		return nil
	}
	out := make([]Pair, len(raw))
	for i, p := range raw {
		out[i] = Pair{p[0], p[1]}
	}
	return out
}

func loadVectors(t *testing.T) vectorFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vectorsDir, "vectors.json"))
	if err != nil {
		t.Fatalf("golden vectors: %v", err)
	}
	var vf vectorFile
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	return vf
}

func TestGoldenVectors(t *testing.T) {
	for _, v := range loadVectors(t).Vectors {
		t.Run(v.Name, func(t *testing.T) {
			golden, err := os.ReadFile(filepath.Join(vectorsDir, v.File))
			if err != nil {
				t.Fatal(err)
			}
			var f fields
			if err := json.Unmarshal(v.Fields, &f); err != nil {
				t.Fatal(err)
			}
			body, err := base64.StdEncoding.DecodeString(f.BodyB64)
			if err != nil {
				t.Fatal(err)
			}
			var encoded []byte
			switch v.Kind {
			case "request":
				want := Request{
					BudgetMS: f.BudgetMS, CallID: f.CallID, Method: f.Method, Path: f.Path, Query: f.Query,
					TraceParent: f.TraceParent, TraceState: f.TraceState,
					Headers: toPairs(f.Headers), Params: toPairs(f.Params), Body: body,
				}
				got, err := DecodeRequest(golden)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Body, want.Body) {
					t.Fatalf("body: got %x want %x", got.Body, want.Body)
				}
				got.Body, want.Body = nil, nil
				if !reflect.DeepEqual(*got, want) {
					t.Fatalf("decoded\n got %+v\nwant %+v", *got, want)
				}
				want.Body = body
				encoded, err = want.Encode()
				if err != nil {
					t.Fatal(err)
				}
			case "response":
				want := Response{
					Status: f.Status, ErrorKind: ErrorKind(f.ErrorKind), ColdStart: f.ColdStart,
					DurationNS: f.DurationNS, CallID: f.CallID, Error: f.Error, Headers: toPairs(f.Headers), Body: body,
				}
				got, err := DecodeResponse(golden)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Body, want.Body) {
					t.Fatalf("body: got %x want %x", got.Body, want.Body)
				}
				got.Body, want.Body = nil, nil
				if !reflect.DeepEqual(*got, want) {
					t.Fatalf("decoded\n got %+v\nwant %+v", *got, want)
				}
				want.Body = body
				encoded, err = want.Encode()
				if err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatalf("unknown kind %q", v.Kind)
			}
			if !bytes.Equal(encoded, golden) {
				t.Fatalf("encoding differs from %s:\n got %x\nwant %x", v.File, encoded, golden)
			}
		})
	}
}

func TestDecoderRejects(t *testing.T) {
	good, err := (&Request{CallID: "c", Method: "GET", Path: "/", Body: []byte("x")}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := map[string][]byte{
		"empty":         {},
		"wrong magic":   mutate(func(b []byte) []byte { b[0] = 'X'; return b }),
		"wrong version": mutate(func(b []byte) []byte { b[2] = 2; return b }),
		"wrong kind":    mutate(func(b []byte) []byte { b[3] = KindResponse; return b }),
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte(nil), good...), 0),
		"bad utf-8":     mutate(func(b []byte) []byte { b[16] = 0xff; return b }), // the call id's byte
		"huge count": mutate(func(b []byte) []byte {
			// headers count sits after the header (12) and six strings (4 + len each).
			off := 12 + 4*6 + len("c") + len("GET") + len("/")
			b[off], b[off+1], b[off+2], b[off+3] = 0xff, 0xff, 0xff, 0x7f
			return b
		}),
	}
	for name, buf := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeRequest(buf); !errors.Is(err, ErrEnvelope) {
				t.Fatalf("expected ErrEnvelope, got %v", err)
			}
		})
	}
}

func TestReservedFlagsIgnored(t *testing.T) {
	good, _ := (&Request{CallID: "c"}).Encode()
	good[8] = 0xff
	if _, err := DecodeRequest(good); err != nil {
		t.Fatalf("reserved request flags must be ignored: %v", err)
	}
	resp, _ := (&Response{Status: 200}).Encode()
	resp[7] = 0xfe
	got, err := DecodeResponse(resp)
	if err != nil || got.ColdStart {
		t.Fatalf("reserved response flags must be ignored: %v %+v", err, got)
	}
}

// BenchmarkDecodeRequest10Headers: a request as the ingestor sends it (10 headers, 1 KiB body); allocations are
// the strings of the decoded fields, none for error labels.
func BenchmarkDecodeRequest10Headers(b *testing.B) {
	req := &Request{BudgetMS: 5000, CallID: "0193b2c4d5e6f7a8", Method: "POST", Path: "/orders/42", Query: "a=1"}
	for i := 0; i < 10; i++ {
		req.Headers = append(req.Headers, Pair{Name: "x-header-" + string(rune('a'+i)), Value: "value"})
	}
	req.Body = bytes.Repeat([]byte("x"), 1024)
	buf, err := req.Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest(buf); err != nil {
			b.Fatal(err)
		}
	}
}
