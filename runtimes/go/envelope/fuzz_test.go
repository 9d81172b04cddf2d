package envelope

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeRequest: the decoder never panics, and whatever it accepts re-encodes to the same bytes
// (reserved flags aside, which the encoder writes as 0). Seeded with the golden request vectors.
func FuzzDecodeRequest(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(vectorsDir, "request_*.bin"))
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(data)
		if err != nil {
			return
		}
		again, err := req.Encode()
		if err != nil {
			t.Fatal(err)
		}
		want := append([]byte(nil), data...)
		copy(want[8:12], []byte{0, 0, 0, 0})
		if !bytes.Equal(again, want) {
			t.Fatalf("round trip differs:\n got %x\nwant %x", again, want)
		}
	})
}

// FuzzDecodeResponse: never panics; accepted input round-trips (flag bits other than cold start cleared).
func FuzzDecodeResponse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(vectorsDir, "response_*.bin"))
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, err := DecodeResponse(data)
		if err != nil {
			return
		}
		again, err := resp.Encode()
		if err != nil {
			t.Fatal(err)
		}
		want := append([]byte(nil), data...)
		want[7] &= FlagColdStart
		if !bytes.Equal(again, want) {
			t.Fatalf("round trip differs:\n got %x\nwant %x", again, want)
		}
	})
}
