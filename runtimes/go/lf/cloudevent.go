package lf

import (
	"net/url"
	"strings"
	"time"
)

// CloudEvent is the CloudEvent a call carries (Request.Event): its attributes, typed. The event's data is the
// request's Body, its type DataContentType (the Content-Type header).
//
// The ingestor accepts an event in either HTTP mode (ce-* headers, or application/cloudevents+json) and hands
// every runtime the binary mode, after checking that SpecVersion is "1.0", that ID, Source and Type are there
// and that the time is RFC 3339 (docs/protocol.md, "CloudEvents").
type CloudEvent struct {
	ID          string
	Source      string
	Type        string
	SpecVersion string
	Subject     string    // "" when absent
	Time        time.Time // zero when absent (or not RFC 3339: the ingestor refuses those)
	// DataContentType is the Content-Type header, "" when absent.
	DataContentType string
	DataSchema      string // "" when absent
	// Extensions are every other attribute (a ce-{name} header) by name, as strings; nil when there are none.
	Extensions map[string]string
}

// Event returns the CloudEvent this call carries, or nil when the request is not one (no ce-specversion
// header). It reads the ce-* headers on each call and costs nothing until called: keep the result. Values are
// percent-decoded (the HTTP binding); the first of a repeated header counts.
func (r *Request) Event() *CloudEvent {
	var event *CloudEvent
	for _, h := range r.Headers {
		if len(h.Name) > 3 && strings.EqualFold(h.Name[:3], "ce-") && strings.EqualFold(h.Name[3:], "specversion") {
			event = &CloudEvent{}
			break
		}
	}
	if event == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, h := range r.Headers {
		if strings.EqualFold(h.Name, "content-type") {
			if !seen["content-type"] {
				seen["content-type"] = true
				event.DataContentType = h.Value
			}
			continue
		}
		if len(h.Name) <= 3 || !strings.EqualFold(h.Name[:3], "ce-") {
			continue
		}
		name := strings.ToLower(h.Name[3:])
		if seen["ce-"+name] {
			continue
		}
		seen["ce-"+name] = true
		value := percentDecoded(h.Value)
		switch name {
		case "id":
			event.ID = value
		case "source":
			event.Source = value
		case "type":
			event.Type = value
		case "specversion":
			event.SpecVersion = value
		case "subject":
			event.Subject = value
		case "dataschema":
			event.DataSchema = value
		case "time":
			event.Time = rfc3339(value)
		default:
			if event.Extensions == nil {
				event.Extensions = map[string]string{}
			}
			event.Extensions[name] = value
		}
	}
	return event
}

// percentDecoded undoes the binding's percent-encoding; a malformed escape leaves the value as received.
func percentDecoded(value string) string {
	if !strings.Contains(value, "%") {
		return value
	}
	decoded, err := url.PathUnescape(value)
	if err != nil {
		return value
	}
	return decoded
}

// rfc3339 parses an RFC 3339 timestamp ('t' and 'z' may be lowercase), the zero time when it is not one.
func rfc3339(text string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(text))
	if err != nil {
		return time.Time{}
	}
	return t
}
