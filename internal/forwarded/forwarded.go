// Package forwarded finds a client's address behind trusted proxies, as nginx's
// ngx_http_get_forwarded_addr does for the realip and geo modules: a header such as
// X-Forwarded-For is believed only when the address that sent it is trusted.
package forwarded

import (
	"fmt"
	"net/netip"
	"strings"
)

// Trusted is a set of proxy addresses: CIDR blocks, single addresses and "unix:" for
// clients on unix sockets (nginx's set_real_ip_from, geo's proxy).
type Trusted struct {
	prefixes []netip.Prefix
	unix     bool
}

// Add adds an address, a CIDR block or "unix:".
func (t *Trusted) Add(s string) error {
	if s == "unix:" {
		t.unix = true
		return nil
	}
	p, err := ParsePrefix(s)
	if err != nil {
		return err
	}
	t.prefixes = append(t.prefixes, p)
	return nil
}

// Empty reports whether nothing is trusted.
func (t *Trusted) Empty() bool { return len(t.prefixes) == 0 && !t.unix }

// ParsePrefix parses "10.0.0.0/8", "2001:db8::/32" or a single address, masking low
// bits as nginx does and reading an IPv4-mapped IPv6 block as IPv4.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("invalid CIDR block %q", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address %q (expected an address or a CIDR block)", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Contains reports whether a peer is trusted; an invalid addr is a unix socket peer.
func (t *Trusted) Contains(addr netip.Addr) bool {
	if !addr.IsValid() {
		return t.unix
	}
	addr = addr.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Addr is the client address that a list of forwarded addresses (one header value or
// several joined by commas, the nearest proxy last) gives for a connection from peer.
// Without recursive, it is the last address of the list; with recursive, the last
// one that is not trusted (or the first of the list when all are). ok is false when
// peer is not trusted or the list gives no address; port is the address's port when
// the list has one ("192.0.2.1:51234", "[2001:db8::1]:443").
func (t *Trusted) Addr(peer netip.Addr, list string, recursive bool) (addr netip.Addr, port string, ok bool) {
	addr = peer
	for t.Contains(addr) {
		list = strings.TrimRight(list, " ,")
		if list == "" {
			break
		}
		i := strings.LastIndexAny(list, " ,")
		a, p, err := parseAddrPort(list[i+1:])
		if err != nil {
			break
		}
		addr, port, ok = a, p, true
		list = list[:max(i, 0)]
		if !recursive || i < 0 {
			break
		}
	}
	return addr, port, ok
}

func parseAddrPort(s string) (netip.Addr, string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), "", nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, "", err
	}
	return ap.Addr().Unmap(), fmt.Sprint(ap.Port()), nil
}
