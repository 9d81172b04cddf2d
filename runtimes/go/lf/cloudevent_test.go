package lf

import (
	"reflect"
	"testing"
	"time"
)

var binary = Headers{
	{Name: "ce-specversion", Value: "1.0"}, {Name: "ce-id", Value: "e-1"},
	{Name: "ce-source", Value: "/orders"}, {Name: "ce-type", Value: "order.created"},
}

func withHeaders(extra ...Pair) *Request {
	return &Request{Headers: append(append(Headers{}, binary...), extra...)}
}

func TestEventHasEveryAttributeTyped(t *testing.T) {
	req := withHeaders(
		Pair{Name: "Ce-Subject", Value: "42"},
		Pair{Name: "ce-time", Value: "2026-12-07T10:11:12.345678+02:00"},
		Pair{Name: "ce-dataschema", Value: "https://example.com/s"},
		Pair{Name: "Content-Type", Value: "application/json"},
		Pair{Name: "CE-TraceId", Value: "t-1"},
		Pair{Name: "x-other", Value: "no"},
	)
	got := req.Event()
	want := &CloudEvent{
		ID: "e-1", Source: "/orders", Type: "order.created", SpecVersion: "1.0", Subject: "42",
		Time:            time.Date(2026, 12, 7, 10, 11, 12, 345678000, time.FixedZone("", 2*3600)),
		DataContentType: "application/json", DataSchema: "https://example.com/s",
		Extensions: map[string]string{"traceid": "t-1"},
	}
	if got == nil || !got.Time.Equal(want.Time) {
		t.Fatalf("event %+v, want time %v", got, want.Time)
	}
	if _, offset := got.Time.Zone(); offset != 7200 {
		t.Fatalf("offset %d, want 7200 (the event's own)", offset)
	}
	got.Time, want.Time = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("event %+v, want %+v", got, want)
	}
}

func TestNoEventWithoutSpecVersion(t *testing.T) {
	req := &Request{Headers: Headers{{Name: "ce-id", Value: "1"}, {Name: "content-type", Value: "text/plain"}}}
	if ev := req.Event(); ev != nil {
		t.Fatalf("event %+v from a request without ce-specversion", ev)
	}
	if ev := (&Request{}).Event(); ev != nil {
		t.Fatalf("event %+v from a request without headers", ev)
	}
}

func TestEventValuesArePercentDecodedFirstHeaderCounts(t *testing.T) {
	ev := withHeaders(
		Pair{Name: "ce-subject", Value: "na%C3%AFve%20%22q%22%20100%25"},
		Pair{Name: "ce-subject", Value: "second"},
		Pair{Name: "ce-bad", Value: "100%"},
	).Event()
	if ev.Subject != `naïve "q" 100%` || ev.Extensions["bad"] != "100%" {
		t.Fatalf("subject %q, bad %q", ev.Subject, ev.Extensions["bad"])
	}
}

func TestEventTime(t *testing.T) {
	utc := time.Date(2026, 12, 7, 10, 11, 12, 0, time.UTC)
	cases := map[string]time.Time{
		"2026-12-07T10:11:12Z":           utc,
		"2026-12-07t10:11:12.123456789z": utc.Add(123456789),
		"2026-12-07T10%3A11%3A12-01:30":  time.Date(2026, 12, 7, 10, 11, 12, 0, time.FixedZone("", -5400)),
		"2026-12-07":                     {}, // not RFC 3339: zero (the ingestor refuses it)
		"2026-02-30T00:00:00Z":           {},
		"soon":                           {},
	}
	for text, want := range cases {
		ev := withHeaders(Pair{Name: "ce-time", Value: text}).Event()
		if !ev.Time.Equal(want) {
			t.Errorf("time %q: %v, want %v", text, ev.Time, want)
		}
	}
}

func TestEventMissingAttributesAreEmpty(t *testing.T) {
	ev := (&Request{Headers: Headers{{Name: "ce-specversion", Value: "1.0"}}}).Event()
	want := &CloudEvent{SpecVersion: "1.0"}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("event %+v, want %+v", ev, want)
	}
}
