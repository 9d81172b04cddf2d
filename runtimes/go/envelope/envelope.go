// Package envelope is the Go codec of the call envelope, version 1 (docs/protocol.md).
//
// It is sans-IO and allocation-lean: Decode copies nothing but the strings (Go strings are immutable), and the
// body aliases the input buffer. DecodeRequest copies the envelope's head (everything before the body) into one
// string, and every string field of the request is a part of it: a handful of allocations per request, not one
// per header name and value. The golden vectors in native/vectors/ are the truth; envelope_test.go checks
// this codec against them byte for byte, and FuzzDecodeRequest fuzzes the decoder.
package envelope

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Format constants (docs/protocol.md).
const (
	Version       = 1
	KindRequest   = 1
	KindResponse  = 2
	FlagColdStart = 1
)

// ErrorKind is the response's error_kind byte.
type ErrorKind uint8

// Error kinds (docs/protocol.md "Error kinds").
const (
	ErrNone ErrorKind = iota
	ErrHandler
	ErrTimeout
	ErrBusy
	ErrBadRequest
	ErrResponseTooLarge
	ErrInternal
)

// Pair is one header or route parameter; order is kept and names may repeat.
type Pair struct {
	Name  string
	Value string
}

// Request is a decoded request envelope.
type Request struct {
	BudgetMS    uint32
	CallID      string
	Method      string
	Path        string
	Query       string
	TraceParent string
	TraceState  string
	Headers     []Pair
	Params      []Pair
	Body        []byte
}

// Response is a response envelope.
type Response struct {
	Status     uint16
	ErrorKind  ErrorKind
	ColdStart  bool
	DurationNS uint64
	CallID     string
	Error      string
	Headers    []Pair
	Body       []byte
}

// ErrEnvelope is wrapped by every decoding error.
var ErrEnvelope = errors.New("bad envelope")

type reader struct {
	buf []byte
	pos int
	// check: validate only (strings come back empty, no pair list is made). cut: strings are cut from head, a
	// copy of buf's beginning that a checking pass accepted.
	check, cut bool
	head       string
}

func (r *reader) fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrEnvelope, fmt.Sprintf(format, args...))
}

func (r *reader) take(field string, n int) ([]byte, error) {
	if n < 0 || n > len(r.buf)-r.pos {
		return nil, r.short(field, n)
	}
	b := r.buf[r.pos : r.pos+n : r.pos+n]
	r.pos += n
	return b, nil
}

// short is take's error (a function of its own, so that take is inlined).
func (r *reader) short(field string, n int) error {
	return r.fail("%s: %d bytes needed at offset %d, %d left", field, n, r.pos, len(r.buf)-r.pos)
}

func (r *reader) u32(field string) (uint32, error) {
	b, err := r.take(field, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (r *reader) bytes(field string) ([]byte, error) {
	n, err := r.u32(field)
	if err != nil {
		return nil, err
	}
	if uint64(n) > uint64(len(r.buf)-r.pos) {
		return nil, r.pastEnd(field, n)
	}
	return r.take(field, int(n))
}

func (r *reader) pastEnd(field string, n uint32) error {
	return r.fail("%s: length %d runs past the end (%d bytes left)", field, n, len(r.buf)-r.pos)
}

func (r *reader) str(field string) (string, error) {
	b, err := r.bytes(field)
	if err != nil {
		return "", err
	}
	if r.cut {
		return r.head[r.pos-len(b) : r.pos], nil
	}
	if !utf8.Valid(b) {
		return "", r.fail("%s: invalid UTF-8", field)
	}
	if r.check {
		return "", nil
	}
	return string(b), nil
}

// pairs reads a counted list of name/value strings; nameField and valueField label their errors (constants, so
// a decode allocates no label per pair).
func (r *reader) pairs(field, nameField, valueField string) ([]Pair, error) {
	n, err := r.u32(field)
	if err != nil {
		return nil, err
	}
	// Each pair takes at least 8 bytes: never reserve memory from a count alone.
	if uint64(n)*8 > uint64(len(r.buf)-r.pos) {
		return nil, r.fail("%s: count %d runs past the end (%d bytes left)", field, n, len(r.buf)-r.pos)
	}
	if n == 0 {
		return nil, nil
	}
	if r.check {
		for range n {
			if _, err = r.str(nameField); err != nil {
				return nil, err
			}
			if _, err = r.str(valueField); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	out := make([]Pair, n)
	for i := range out {
		if out[i].Name, err = r.str(nameField); err != nil {
			return nil, err
		}
		if out[i].Value, err = r.str(valueField); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *reader) header(kind byte) error {
	head, err := r.take("header", 4)
	if err != nil {
		return err
	}
	if head[0] != 'L' || head[1] != 'F' {
		return r.fail("wrong magic %q", head[:2])
	}
	if head[2] != Version {
		return r.fail("unknown version %d", head[2])
	}
	if head[3] != kind {
		return r.fail("wrong kind %d (expected %d)", head[3], kind)
	}
	return nil
}

func (r *reader) end() error {
	if r.pos != len(r.buf) {
		return r.fail("%d trailing bytes", len(r.buf)-r.pos)
	}
	return nil
}

// DecodeRequest decodes a request envelope. The returned Body aliases buf; the strings share one copy of the
// envelope's head.
func DecodeRequest(buf []byte) (*Request, error) {
	var check Request
	r := reader{buf: buf, check: true}
	if err := r.request(&check); err != nil {
		return nil, err
	}
	bodyAt := len(buf) - len(check.Body)
	req := &Request{}
	r = reader{buf: buf, cut: true, head: string(buf[:bodyAt])}
	if err := r.request(req); err != nil { // accepted above: cannot fail
		return nil, err
	}
	return req, nil
}

func (r *reader) request(req *Request) error {
	if err := r.header(KindRequest); err != nil {
		return err
	}
	var err error
	if req.BudgetMS, err = r.u32("budget_ms"); err != nil {
		return err
	}
	if _, err = r.u32("flags"); err != nil { // reserved, ignored
		return err
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"call_id", &req.CallID}, {"method", &req.Method}, {"path", &req.Path}, {"query", &req.Query},
		{"traceparent", &req.TraceParent}, {"tracestate", &req.TraceState},
	} {
		if *f.dst, err = r.str(f.name); err != nil {
			return err
		}
	}
	if req.Headers, err = r.pairs("headers", "headers name", "headers value"); err != nil {
		return err
	}
	if req.Params, err = r.pairs("params", "params name", "params value"); err != nil {
		return err
	}
	if req.Body, err = r.bytes("body"); err != nil {
		return err
	}
	return r.end()
}

// DecodeResponse decodes a response envelope. The returned Body aliases buf.
func DecodeResponse(buf []byte) (*Response, error) {
	r := reader{buf: buf}
	if err := r.header(KindResponse); err != nil {
		return nil, err
	}
	fixed, err := r.take("fixed fields", 12)
	if err != nil {
		return nil, err
	}
	resp := &Response{
		Status:     binary.LittleEndian.Uint16(fixed[0:2]),
		ErrorKind:  ErrorKind(fixed[2]),
		ColdStart:  fixed[3]&FlagColdStart != 0,
		DurationNS: binary.LittleEndian.Uint64(fixed[4:12]),
	}
	if resp.CallID, err = r.str("call_id"); err != nil {
		return nil, err
	}
	if resp.Error, err = r.str("error"); err != nil {
		return nil, err
	}
	if resp.Headers, err = r.pairs("headers", "headers name", "headers value"); err != nil {
		return nil, err
	}
	if resp.Body, err = r.bytes("body"); err != nil {
		return nil, err
	}
	return resp, r.end()
}

func pairsLen(pairs []Pair) int {
	n := 4
	for _, p := range pairs {
		n += 8 + len(p.Name) + len(p.Value)
	}
	return n
}

func putBytes(out []byte, b []byte) []byte {
	out = binary.LittleEndian.AppendUint32(out, uint32(len(b))) //nolint:gosec // checked by checkLen
	return append(out, b...)
}

func putStr(out []byte, s string) []byte {
	out = binary.LittleEndian.AppendUint32(out, uint32(len(s))) //nolint:gosec // checked by checkLen
	return append(out, s...)
}

func putPairs(out []byte, pairs []Pair) []byte {
	out = binary.LittleEndian.AppendUint32(out, uint32(len(pairs))) //nolint:gosec // checked by checkLen
	for _, p := range pairs {
		out = putStr(out, p.Name)
		out = putStr(out, p.Value)
	}
	return out
}

func checkLen(n int) error {
	if n > math.MaxUint32 {
		return fmt.Errorf("%w: a field of %d bytes does not fit a u32 length", ErrEnvelope, n)
	}
	return nil
}

// Encode writes the request envelope.
func (req *Request) Encode() ([]byte, error) {
	size := 12 + 6*4 + len(req.CallID) + len(req.Method) + len(req.Path) + len(req.Query) +
		len(req.TraceParent) + len(req.TraceState) + pairsLen(req.Headers) + pairsLen(req.Params) + 4 + len(req.Body)
	if err := checkLen(size); err != nil {
		return nil, err
	}
	out := make([]byte, 0, size)
	out = append(out, 'L', 'F', Version, KindRequest)
	out = binary.LittleEndian.AppendUint32(out, req.BudgetMS)
	out = binary.LittleEndian.AppendUint32(out, 0)
	for _, s := range []string{req.CallID, req.Method, req.Path, req.Query, req.TraceParent, req.TraceState} {
		out = putStr(out, s)
	}
	out = putPairs(out, req.Headers)
	out = putPairs(out, req.Params)
	return putBytes(out, req.Body), nil
}

// Encode writes the response envelope.
func (resp *Response) Encode() ([]byte, error) {
	size := 16 + 8 + len(resp.CallID) + len(resp.Error) + pairsLen(resp.Headers) + 4 + len(resp.Body)
	if err := checkLen(size); err != nil {
		return nil, err
	}
	out := make([]byte, 0, size)
	out = append(out, 'L', 'F', Version, KindResponse)
	out = binary.LittleEndian.AppendUint16(out, resp.Status)
	var flags byte
	if resp.ColdStart {
		flags = FlagColdStart
	}
	out = append(out, byte(resp.ErrorKind), flags)
	out = binary.LittleEndian.AppendUint64(out, resp.DurationNS)
	out = putStr(out, resp.CallID)
	out = putStr(out, resp.Error)
	out = putPairs(out, resp.Headers)
	return putBytes(out, resp.Body), nil
}
