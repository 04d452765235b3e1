package proxy_test

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/testserver"
)

// rawBackend answers every request on every connection with a fixed 200, with no
// parsing beyond the end of the head: the benchmark measures the proxy, not Go's
// HTTP server.
func rawBackend(b *testing.B) string {
	b.Helper()
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n\r\nhello\n")
	return testserver.TCPServer(b, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 && strings.TrimSpace(string(line)) == "" {
				if _, err := c.Write(resp); err != nil {
					return
				}
			}
		}
	})
}

// BenchmarkProxyKeepalive is a GET through proxy_pass to an upstream with keepalive
// connections: each request takes a connection from the worker's pool and puts it
// back.
func BenchmarkProxyKeepalive(b *testing.B) {
	conf := strings.Replace(`
http {
  keepalive_requests = 1000000000
  upstream "be" {
    servers   = ["BACKEND"]
    keepalive = 8
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/" { proxy_pass = "http://be" }
  }
}
`, "BACKEND", rawBackend(b), 1)
	testserver.BenchPath(b, conf, "GET /x HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
}
