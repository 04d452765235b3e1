package httpcore_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
	_ "github.com/spindle-server/spindle/modules/realip"
)

// proxyTLSServer is an address with both ssl and proxy_protocol, the real IP module
// trusting the PROXY header of connections from loopback.
func proxyTLSServer(t *testing.T, noLoop bool) (*testserver.Server, *tls.Config) {
	ca := e2e.NewCA(t, t.TempDir(), "ca")
	crt, key, _ := ca.Issue("srv", e2e.ECDSA, false, "srv.test")
	s := testserver.Start(t, fmt.Sprintf(`
http {
  client_header_timeout = "1s"
  server {
    listen              = ["127.0.0.1:0 ssl proxy_protocol"]
    ssl_certificate     = "%s"
    ssl_certificate_key = "%s"
    set_real_ip_from    = ["127.0.0.0/8"]
    real_ip_header      = "proxy_protocol"
    location "/" {
      echo = "${proxy_protocol_addr}|${proxy_protocol_port}|${remote_addr}|${realip_remote_addr}|${https}"
    }
  }
}`, crt, key), testserver.WithEngineOptions(httpcore.EngineOptions{WorkerConnections: 64, NoEventLoop: noLoop}))
	return s, &tls.Config{ServerName: "srv.test", RootCAs: ca.Pool}
}

// headFirstConn sends head in the same write as the first bytes of TLS (the
// ClientHello), as a balancer forwarding a client's first segment may.
type headFirstConn struct {
	net.Conn
	head string
}

func (c *headFirstConn) Write(p []byte) (int, error) {
	if c.head == "" {
		return c.Conn.Write(p)
	}
	b := append([]byte(c.head), p...)
	c.head = ""
	n, err := c.Conn.Write(b)
	return max(0, n-(len(b)-len(p))), err
}

// proxyTLSGet writes the header pieces (each after a pause, so that the server reads
// them apart: what is under test is a header split over reads) and, unless sameWrite,
// then runs the TLS handshake and a GET; sameWrite sends the whole header with the
// ClientHello. It returns the response, or the handshake's error.
func proxyTLSGet(t *testing.T, addr string, tc *tls.Config, sameWrite bool, pieces ...string) (string, error) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	var under net.Conn = nc
	if sameWrite {
		under = &headFirstConn{Conn: nc, head: strings.Join(pieces, "")}
	} else {
		for i, p := range pieces {
			if i > 0 {
				// A pause rather than e2e.WaitPeerRead: the loop only peeks at a PROXY
				// header before the handshake, so no queue shows it saw this piece.
				time.Sleep(50 * time.Millisecond)
			}
			if _, err := io.WriteString(nc, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := tls.Client(under, tc)
	if err := c.Handshake(); err != nil {
		return "", err
	}
	io.WriteString(c, getClose)
	b, _ := io.ReadAll(c)
	return string(b), nil
}

// nginx's `listen 443 ssl proxy_protocol` behind a TCP load balancer: the PROXY header
// comes before the TLS handshake; its address is $proxy_protocol_addr, and with the
// real IP module $remote_addr. On both of the engine's ways to serve a listener.
func TestProxyProtocolTLS(t *testing.T) {
	v1 := "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"
	v2 := proxyV2TCP4([4]byte{203, 0, 113, 5}, [4]byte{10, 0, 0, 1}, 40000, 8443)
	for _, noLoop := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoEventLoop=%v", noLoop), func(t *testing.T) {
			s, tc := proxyTLSServer(t, noLoop)
			for _, c := range []struct {
				name      string
				sameWrite bool
				pieces    []string
				want      string
			}{
				{"v1", false, []string{v1}, "192.0.2.1|56324|192.0.2.1|127.0.0.1|on\n"},
				{"v1 with the ClientHello", true, []string{v1}, "192.0.2.1|56324|192.0.2.1|127.0.0.1|on\n"},
				{"v1 in two writes", false, []string{v1[:17], v1[17:]}, "192.0.2.1|56324|192.0.2.1|127.0.0.1|on\n"},
				{"v2", false, []string{v2}, "203.0.113.5|40000|203.0.113.5|127.0.0.1|on\n"},
				{"v2 with the ClientHello", true, []string{v2}, "203.0.113.5|40000|203.0.113.5|127.0.0.1|on\n"},
				{"v2 in two writes", false, []string{v2[:14], v2[14:]}, "203.0.113.5|40000|203.0.113.5|127.0.0.1|on\n"},
				{"v1 unknown", false, []string{"PROXY UNKNOWN\r\n"}, "||127.0.0.1|127.0.0.1|on\n"},
			} {
				resp, err := proxyTLSGet(t, s.Addr, tc, c.sameWrite, c.pieces...)
				if err != nil || !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.HasSuffix(resp, "\r\n\r\n"+c.want) {
					t.Errorf("%s: %q %v", c.name, resp, err)
				}
			}
			// A bad header, and a ClientHello without one: closed without an answer
			// (the log shows what the server had: the loop peeks at what came, up to
			// 64 bytes; a goroutine reads byte by byte).
			for _, c := range []struct {
				name      string
				sameWrite bool
				pieces    []string
				logged    string
			}{
				{"bad v1", false, []string{"PROXY TCP5 a b c d\r\n"}, `broken header: "PROXY TCP5 a b c d\r\n`},
				{"no header", true, nil, `broken header: "\x16`},
			} {
				if resp, err := proxyTLSGet(t, s.Addr, tc, c.sameWrite, c.pieces...); err == nil {
					t.Errorf("%s: handshake done, answered %q", c.name, resp)
				}
				if !e2e.WaitFor(5*time.Second, func() bool { return strings.Contains(s.ErrorLog(), c.logged) }) {
					t.Errorf("%s: no %q in the error log:\n%s", c.name, c.logged, s.ErrorLog())
				}
			}
		})
	}
}

// A header that does not come within client_header_timeout (1s): the connection is
// closed without an answer, on both ways to serve a listener; on the loop, a plain HTTP
// request behind a valid header gets nginx's 400 for plain HTTP on an HTTPS port.
func TestProxyProtocolTLSTimeoutAndPlainHTTP(t *testing.T) {
	for _, noLoop := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoEventLoop=%v", noLoop), func(t *testing.T) {
			s, _ := proxyTLSServer(t, noLoop)
			for _, in := range []string{"", "PROXY TCP4 192.0.2.1"} {
				start := time.Now()
				if resp := proxyExchange(t, s.Addr, in); resp != "" {
					t.Errorf("%q: answered %q", in, resp)
				}
				if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
					t.Errorf("%q: closed after %v, want client_header_timeout (1s)", in, d)
				}
			}
			if !e2e.WaitFor(5*time.Second, func() bool {
				return strings.Contains(s.ErrorLog(), `broken header: "PROXY TCP4 192.0.2.1" (`) &&
					strings.Contains(s.ErrorLog(), "client timed out (110: Connection timed out) while reading PROXY protocol")
			}) {
				t.Errorf("error log:\n%s", s.ErrorLog())
			}
			if noLoop {
				return // the plain-HTTP check is the loop's
			}
			resp := proxyExchange(t, s.Addr, "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"+getClose)
			if !strings.HasPrefix(resp, "HTTP/1.1 400") || !strings.Contains(resp, "The plain HTTP request was sent to HTTPS port") {
				t.Errorf("plain HTTP after the header: %q", resp)
			}
		})
	}
}
