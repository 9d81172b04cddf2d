package serving

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"litefunctions.io/runtime/envelope"
)

// factsFile holds the constants every runtime and the ingestor agree on (error kinds, runtime margin, duration
// buckets, call outcomes); this runtime's must equal them.
var factsFile = filepath.Join("..", "..", "..", "native", "vectors", "facts.json")

type facts struct {
	ErrorKinds    map[string]envelope.ErrorKind `json:"error_kinds"`
	RuntimeMargin struct {
		Fraction float64 `json:"fraction"`
		MaxMS    int64   `json:"max_ms"`
	} `json:"runtime_margin"`
	DurationBuckets []float64 `json:"duration_buckets_s"`
	CallOutcomes    []string  `json:"runtime_call_outcomes"`
}

func readFacts(t *testing.T) facts {
	t.Helper()
	data, err := os.ReadFile(factsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f facts
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", factsFile, err)
	}
	return f
}

func TestErrorKindsAreTheFacts(t *testing.T) {
	ours := map[string]envelope.ErrorKind{
		"none": envelope.ErrNone, "handler": envelope.ErrHandler, "timeout": envelope.ErrTimeout,
		"busy": envelope.ErrBusy, "bad_request": envelope.ErrBadRequest,
		"response_too_large": envelope.ErrResponseTooLarge, "internal": envelope.ErrInternal,
	}
	if f := readFacts(t); !reflect.DeepEqual(ours, f.ErrorKinds) {
		t.Fatalf("error kinds %v, the facts say %v", ours, f.ErrorKinds)
	}
}

func TestMarginIsTheFacts(t *testing.T) {
	f := readFacts(t).RuntimeMargin
	if marginFraction != f.Fraction || marginMax != time.Duration(f.MaxMS)*time.Millisecond {
		t.Fatalf("margin %v capped at %v, the facts say %v capped at %d ms", marginFraction, marginMax, f.Fraction,
			f.MaxMS)
	}
}

func TestBucketsAndOutcomesAreTheFacts(t *testing.T) {
	f := readFacts(t)
	if !reflect.DeepEqual(DurationBuckets[:], f.DurationBuckets) {
		t.Errorf("duration buckets %v, the facts say %v", DurationBuckets, f.DurationBuckets)
	}
	if !reflect.DeepEqual(outcomeNames[:], f.CallOutcomes) {
		t.Errorf("outcomes %v, the facts say %v", outcomeNames, f.CallOutcomes)
	}
}
