package httpapi

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds how many X-Forwarded-For entries we walk: no real
// chain of proxies is longer, and a client can send thousands.
const maxForwardedHops = 32

type clientAddrKey struct{}

// ClientAddr returns the request's client address as resolved by the
// authentication layer (the peer, or the right-most untrusted
// X-Forwarded-For hop behind trusted proxies), or "" when unknown.
func ClientAddr(ctx context.Context) string {
	a, _ := ctx.Value(clientAddrKey{}).(netip.Addr)
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// parseHop reads one address as proxies write it: a bare IPv4 or IPv6
// address, optionally with a port ("1.2.3.4:80", "[::1]:80") or in
// brackets. IPv4-mapped IPv6 addresses become IPv4 and zones are dropped,
// so one client has one spelling.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(s)
		if err2 != nil {
			if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
				a, err = netip.ParseAddr(s[1 : len(s)-1])
			}
			if err != nil {
				return netip.Addr{}, false
			}
		} else {
			a = ap.Addr()
		}
	}
	return a.Unmap().WithZone(""), true
}

func trustedAddr(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddress decides who the client is. The peer address is the truth
// unless the peer is one of our trusted proxies; then X-Forwarded-For is
// read from the right (the entry our own proxy appended) leftwards, skipping
// trusted proxies, and the first untrusted address is the client. Entries
// further left were written by the client itself and are never believed.
// An unreadable entry stops the walk at the last trusted hop.
func clientAddress(remoteAddr string, forwardedFor []string, trusted []netip.Prefix) netip.Addr {
	peer, ok := parseHop(remoteAddr)
	if !ok {
		host, _, err := net.SplitHostPort(remoteAddr)
		if err != nil {
			return netip.Addr{}
		}
		if peer, ok = parseHop(host); !ok {
			return netip.Addr{}
		}
	}
	if len(trusted) == 0 || !trustedAddr(peer, trusted) {
		return peer
	}
	client := peer
	hops := 0
	for i := len(forwardedFor) - 1; i >= 0; i-- {
		entries := strings.Split(forwardedFor[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			hops++
			if hops > maxForwardedHops {
				return client
			}
			a, ok := parseHop(entries[j])
			if !ok {
				return client
			}
			client = a
			if !trustedAddr(a, trusted) {
				return a
			}
		}
	}
	return client
}

// rateKeyOf is the rate-limit key of an address: IPv6 clients are keyed by
// their /64, because one host is usually given a whole /64 and could
// otherwise use a fresh address for every request.
func rateKeyOf(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return a.String()
}

// resolveClientAddr resolves the request's client and remembers it in the
// context.
func (s *Server) resolveClientAddr(r *http.Request) (netip.Addr, context.Context) {
	a := clientAddress(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), s.opts.Identity.TrustedProxies)
	return a, context.WithValue(r.Context(), clientAddrKey{}, a)
}
