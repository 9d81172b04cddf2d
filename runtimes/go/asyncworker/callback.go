package asyncworker

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

// Callback URLs guarded against SSRF, as lf_core.ssrf: http/https only, no credentials, and every address
// the host resolves to must be public (loopback, private, link-local incl. the metadata service, CGNAT,
// multicast, reserved, documentation and unspecified ranges refused; IPv4 inside IPv6 unwrapped first); hosts
// written as inet_aton numbers (2130706433, 0177.0.0.1, 0x7f.1) are read as such. The request then goes to a
// checked address only (no second resolution: DNS rebinding). allowPrivate lifts the address checks.

const maxURLLength = 2048

// UnsafeURLError is a callback URL that is malformed or points where callbacks may not go.
type UnsafeURLError struct{ Reason string }

func (e *UnsafeURLError) Error() string { return e.Reason }

func unsafeURL(format string, args ...any) error {
	return &UnsafeURLError{Reason: fmt.Sprintf(format, args...)}
}

// Target is a checked callback URL.
type Target struct {
	Scheme, Host string
	Port         int
	Addresses    []netip.Addr
}

var nonPublic = func() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []string{
		// IPv4 (Python's ipaddress is_private / is_reserved / is_global, plus CGNAT and multicast)
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
		"203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
		// IPv6
		"::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "2002::/16",
		"3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}()

var nat64 = netip.MustParsePrefix("64:ff9b::/96")
var sixToFour = netip.MustParsePrefix("2002::/16")

// embeddedV4 is the IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4).
func embeddedV4(a netip.Addr) (netip.Addr, bool) {
	if a.Is4() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case a.Is4In6():
		return a.Unmap(), true
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	for _, x := range b[:12] {
		if x != 0 {
			return netip.Addr{}, false
		}
	}
	v4 := netip.AddrFrom4([4]byte(b[12:16]))
	if v4.As4() == [4]byte{} || v4.As4() == [4]byte{0, 0, 0, 1} { // :: and ::1 are themselves
		return netip.Addr{}, false
	}
	return v4, true
}

// IsPublic tells whether a callback may go to address a.
func IsPublic(a netip.Addr) bool {
	a = a.WithZone("")
	if inner, ok := embeddedV4(a); ok {
		return IsPublic(inner)
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return a.IsGlobalUnicast()
}

// numericHost is the address a host names by itself: an IP literal or an inet_aton number.
func numericHost(host string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return a, true
	}
	if host == "" || host[0] < '0' || host[0] > '9' || strings.Trim(host, "0123456789abcdefxABCDEFX.") != "" {
		return netip.Addr{}, false
	}
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	values := make([]uint64, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 0, 32) // 0x.. hex, 0.. octal, else decimal, like inet_aton
		if err != nil {
			return netip.Addr{}, false
		}
		values[i] = v
	}
	var n uint64
	last := len(values) - 1
	for i, v := range values[:last] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	if values[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n |= values[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// Resolver looks a host up (net.DefaultResolver.LookupNetIP in production).
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

func systemResolver(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// ResolveTarget checks a callback URL, resolves its host and checks every address.
func ResolveTarget(ctx context.Context, raw string, allowPrivate bool, resolve Resolver) (*Target, error) {
	if len(raw) > maxURLLength {
		return nil, unsafeURL("callback URL longer than %d characters", maxURLLength)
	}
	if strings.IndexFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || r < 0x20 }) >= 0 {
		return nil, unsafeURL("callback URL holds whitespace or control characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, unsafeURL("callback URL is malformed: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		scheme := u.Scheme
		if scheme == "" {
			scheme = "relative"
		}
		return nil, unsafeURL("callback URL must be http or https, not '%s'", scheme)
	}
	if u.User != nil {
		return nil, unsafeURL("callback URL may not carry credentials")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return nil, unsafeURL("callback URL has no host")
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 65535 {
			return nil, unsafeURL("callback URL has a bad port")
		}
		if n != 0 {
			port = n
		}
	}
	var addresses []netip.Addr
	if literal, ok := numericHost(host); ok {
		addresses = []netip.Addr{literal}
	} else {
		found, err := resolve(ctx, host)
		if err != nil {
			return nil, unsafeURL("callback host '%s' does not resolve: %v", host, err)
		}
		if len(found) == 0 {
			return nil, unsafeURL("callback host '%s' does not resolve", host)
		}
		addresses = found
	}
	for _, a := range addresses {
		if !allowPrivate && !IsPublic(a) {
			// not the address: the message becomes the callback outcome in the call record, which the caller reads
			return nil, unsafeURL("callback host '%s' resolves to a non-public address", host)
		}
	}
	return &Target{Scheme: u.Scheme, Host: host, Port: port, Addresses: addresses}, nil
}

// Post sends body as JSON to a checked address of url; the response status.
func Post(raw string, body []byte, callID string, allowPrivate bool) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CallbackTimeout)
	defer cancel()
	target, err := ResolveTarget(ctx, raw, allowPrivate, systemResolver)
	if err != nil {
		return 0, err
	}
	address := net.JoinHostPort(target.Addresses[0].Unmap().WithZone("").String(), strconv.Itoa(target.Port))
	dialer := &net.Dialer{Timeout: CallbackTimeout}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, address) // the checked address, never a new lookup
		},
		TLSClientConfig:   &tls.Config{ServerName: target.Host, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
		Proxy:             nil,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport: transport, Timeout: CallbackTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Call-Id", callID)
	req.Header.Set("User-Agent", "litefunctions-callback")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
