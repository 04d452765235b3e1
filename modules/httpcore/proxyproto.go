package httpcore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The PROXY protocol (HAProxy's, versions 1 and 2) on listen sockets marked
// `proxy_protocol`: a load balancer in front sends the client's address in a header
// before the first request. nginx reads it with the first request head, within
// client_header_timeout, and closes the connection without an answer when it is
// missing or malformed; so does spindle. The addresses are proxy_protocol_addr and
// friends; the realip module makes them remote_addr.

// proxyInfo is what a PROXY header said; nil fields for UNKNOWN (v1) and LOCAL (v2).
type proxyInfo struct {
	src, dst netip.AddrPort
}

// v1 headers are at most 107 bytes ("PROXY TCP6 " and two full IPv6 addresses and
// ports); v2 ones are bounded by the input buffer a first request head starts in.
const (
	proxyV1Max = 107
	proxyV2Max = 4096
)

var (
	proxyV1Sig = []byte("PROXY ")
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// readProxyProtocol consumes the PROXY header at the start of *buf, the buffered
// input of a connection that must send one. It returns false when the header is
// malformed (the connection is to be closed); *buf becomes what follows the header,
// or nothing while more input is needed.
func (c *conn) readProxyProtocol(buf *[]byte) bool {
	n, info, err := parseProxyHeader(*buf)
	if err != nil {
		c.e.cfg.log.Errorf("*%d broken header: %q (%v) while reading PROXY protocol, client: %s", c.id, truncate(*buf, 64), err, c.remoteAddr())
		return false
	}
	if n == 0 {
		*buf = (*buf)[:0]
		return true
	}
	c.proxy, c.proxyWanted = info, false
	c.br.Discard(n)
	*buf, _ = c.br.Peek(c.br.Buffered())
	return true
}

func truncate(b []byte, n int) []byte { return b[:min(len(b), n)] }

var errNotProxy = errors.New("not a PROXY protocol header")

// parseProxyHeader parses a v1 or v2 header at the start of b: n is its length, 0 when
// b holds only its beginning.
func parseProxyHeader(b []byte) (n int, info *proxyInfo, err error) {
	switch {
	case len(b) < len(proxyV1Sig) && bytes.HasPrefix(proxyV1Sig, b),
		len(b) < len(proxyV2Sig) && bytes.HasPrefix(proxyV2Sig, b):
		return 0, nil, nil
	case bytes.HasPrefix(b, proxyV1Sig):
		return parseProxyV1(b)
	case bytes.HasPrefix(b, proxyV2Sig):
		return parseProxyV2(b)
	}
	return 0, nil, errNotProxy
}

// parseProxyV1 reads "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" or "PROXY
// UNKNOWN ...\r\n".
func parseProxyV1(b []byte) (int, *proxyInfo, error) {
	end := bytes.Index(b[:min(len(b), proxyV1Max)], []byte("\r\n"))
	if end < 0 {
		if len(b) >= proxyV1Max {
			return 0, nil, errors.New("v1 header longer than 107 bytes")
		}
		return 0, nil, nil
	}
	f := bytes.Split(b[len(proxyV1Sig):end], []byte(" "))
	if string(f[0]) == "UNKNOWN" {
		return end + 2, &proxyInfo{}, nil
	}
	if len(f) != 5 || string(f[0]) != "TCP4" && string(f[0]) != "TCP6" {
		return 0, nil, errors.New("v1: expected TCP4, TCP6 or UNKNOWN and four fields")
	}
	src, err1 := netip.ParseAddr(string(f[1]))
	dst, err2 := netip.ParseAddr(string(f[2]))
	sp, err3 := strconv.ParseUint(string(f[3]), 10, 16)
	dp, err4 := strconv.ParseUint(string(f[4]), 10, 16)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || src.Is4() != (string(f[0]) == "TCP4") || dst.Is4() != src.Is4() {
		return 0, nil, errors.New("v1: invalid address or port")
	}
	return end + 2, &proxyInfo{src: netip.AddrPortFrom(src, uint16(sp)), dst: netip.AddrPortFrom(dst, uint16(dp))}, nil
}

// parseProxyV2 reads the binary header: signature, version and command, family and
// transport, length, addresses, then TLVs (skipped).
func parseProxyV2(b []byte) (int, *proxyInfo, error) {
	if len(b) < 16 {
		return 0, nil, nil
	}
	verCmd, fam := b[12], b[13]
	size := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if verCmd>>4 != 2 {
		return 0, nil, errors.New("v2: unknown version")
	}
	if size > proxyV2Max {
		return 0, nil, errors.New("v2 header too large")
	}
	if len(b) < size {
		return 0, nil, nil
	}
	switch verCmd & 0xf {
	case 0: // LOCAL: the balancer's own connection (health checks)
		return size, &proxyInfo{}, nil
	case 1: // PROXY
	default:
		return 0, nil, errors.New("v2: unknown command")
	}
	a := b[16:size]
	switch fam {
	case 0x11: // TCP over IPv4
		if len(a) < 12 {
			return 0, nil, errors.New("v2: short IPv4 addresses")
		}
		src := netip.AddrFrom4([4]byte(a[0:4]))
		dst := netip.AddrFrom4([4]byte(a[4:8]))
		return size, &proxyInfo{src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(a[8:])), dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(a[10:]))}, nil
	case 0x21: // TCP over IPv6
		if len(a) < 36 {
			return 0, nil, errors.New("v2: short IPv6 addresses")
		}
		src := netip.AddrFrom16([16]byte(a[0:16])).Unmap()
		dst := netip.AddrFrom16([16]byte(a[16:32])).Unmap()
		return size, &proxyInfo{src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(a[32:])), dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(a[34:]))}, nil
	}
	// UNSPEC, UDP, unix sockets: accepted without addresses, as nginx does.
	return size, &proxyInfo{}, nil
}

// ProxyProtocol returns the client address and port that the connection's PROXY
// protocol header gave; ok is false without one (or for UNKNOWN and LOCAL headers).
func (r *Request) ProxyProtocol() (addr, port string, ok bool) {
	if r.c == nil || r.c.proxy == nil || !r.c.proxy.src.IsValid() {
		return "", "", false
	}
	p := r.c.proxy.src
	return p.Addr().String(), strconv.Itoa(int(p.Port())), true
}

func init() {
	proxyVar := func(get func(p *proxyInfo) string) VarGetter {
		return func(r *Request) string {
			if r.c == nil || r.c.proxy == nil || !r.c.proxy.src.IsValid() {
				return ""
			}
			return get(r.c.proxy)
		}
	}
	RegisterVar("proxy_protocol_addr", proxyVar(func(p *proxyInfo) string { return p.src.Addr().String() }))
	RegisterVar("proxy_protocol_port", proxyVar(func(p *proxyInfo) string { return strconv.Itoa(int(p.src.Port())) }))
	RegisterVar("proxy_protocol_server_addr", proxyVar(func(p *proxyInfo) string { return p.dst.Addr().String() }))
	RegisterVar("proxy_protocol_server_port", proxyVar(func(p *proxyInfo) string { return strconv.Itoa(int(p.dst.Port())) }))
}

// On an address with both ssl and proxy_protocol the header comes before the TLS
// ClientHello, so it is read from the socket itself, ahead of crypto/tls, by the
// handshake's coroutine: the bytes are peeked (MSG_PEEK) until a whole header is
// there, then exactly that many are read, leaving the ClientHello behind it in the
// socket for the plain-HTTP check and the handshake. As on plain addresses, a
// malformed header, or none within client_header_timeout, closes the connection
// without an answer.

// readProxyTLS reads the PROXY header of a loop connection on a TLS address; false
// when the connection is to be closed.
func (c *conn) readProxyTLS() bool {
	buf := make([]byte, proxyV2Max)
	deadline := time.Unix(0, c.lt.deadline) // the handshake's too (handshakeTLS)
	have := 0
	for {
		n, _, err := unix.Recvfrom(c.lt.fd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == nil && n == 0:
			return c.proxyFailed(buf[:have], io.ErrUnexpectedEOF)
		case err == nil:
			have = n
			size, info, perr := parseProxyHeader(buf[:n])
			if perr != nil {
				return c.proxyFailed(buf[:n], perr)
			}
			if size > 0 {
				// The peeked bytes are in the socket's queue: this read takes
				// the header and nothing behind it.
				if _, err := io.ReadFull(rawFD(c.lt.fd), buf[:size]); err != nil {
					return c.proxyFailed(buf[:size], err)
				}
				c.proxy, c.proxyWanted = info, false
				return true
			}
			// A header in pieces: wait for the next one (the socket is
			// edge-triggered, and every arrival is an event).
			if err := c.waitProxy(deadline); err != nil {
				return c.proxyFailed(buf[:have], err)
			}
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := c.waitProxy(deadline); err != nil {
				return c.proxyFailed(buf[:have], err)
			}
		default:
			return c.proxyFailed(buf[:have], err)
		}
	}
}

// waitProxy waits for more of the header until the deadline, draining or not, as
// peekByte does.
func (c *conn) waitProxy(deadline time.Time) error {
	left := time.Until(deadline)
	if left <= 0 {
		return os.ErrDeadlineExceeded
	}
	if err := c.lt.waitReady(min(left, sweepInterval)); err != nil {
		select {
		case <-c.lt.l.expireCh:
			return err // worker_shutdown_timeout
		default:
		}
	}
	return nil
}

// rawFD reads a socket with read(2), outside Go's poller: the loop owns the descriptor.
type rawFD int

func (fd rawFD) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(fd), p)
		switch {
		case err == unix.EINTR:
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		default:
			return n, nil
		}
	}
}

// readProxyConn reads the PROXY header of a goroutine-served TLS connection from its
// net.Conn (its deadline set), exactly: one byte at a time up to the v2 length field
// or the v1 line's end (107 bytes at most), then the rest of a v2 header at once.
func (c *conn) readProxyConn(nc net.Conn) bool {
	b := make([]byte, 0, 128)
	for {
		size, info, err := parseProxyHeader(b)
		if err != nil {
			return c.proxyFailed(b, err)
		}
		if size > 0 {
			c.proxy, c.proxyWanted = info, false
			return true
		}
		want := 1
		if len(b) >= 16 && bytes.HasPrefix(b, proxyV2Sig) {
			want = 16 + int(binary.BigEndian.Uint16(b[14:16])) - len(b)
		}
		b = slices.Grow(b, want)
		k, err := io.ReadFull(nc, b[len(b):len(b)+want])
		b = b[:len(b)+k]
		if err != nil {
			return c.proxyFailed(b, err)
		}
	}
}

// proxyFailed logs why a TLS connection's PROXY header was refused and returns false:
// nginx's "broken header" line when bytes came, a timeout line when none did.
func (c *conn) proxyFailed(got []byte, err error) bool {
	switch {
	case len(got) > 0:
		c.e.cfg.log.Errorf("*%d broken header: %q (%v) while reading PROXY protocol, client: %s", c.id, truncate(got, 64), err, c.remoteAddr())
	case isTimeout(err) && c.e.cfg.log.Enabled(LogInfo):
		c.e.cfg.log.Infof("*%d client timed out (110: Connection timed out) while reading PROXY protocol, client: %s", c.id, c.remoteAddr())
	}
	return false
}
