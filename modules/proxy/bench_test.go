package proxy_test

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spindle-server/spindle/internal/errlog"
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

// BenchmarkProxyLoopback is the bench script's proxy workload in process: a worker's
// event loop serving a listening socket, 50 clients on loopback keepalive connections
// (as the script's wrk and ab runs), each GET proxied to an upstream on a pooled
// keepalive connection. Unlike BenchmarkProxyKeepalive it takes the production path
// (epoll loop, request coroutines, kernel sockets on both sides), so it is the one to
// run under valgrind --tool=callgrind (GODEBUG=asyncpreemptoff=1) to count the
// instructions of a request.
func BenchmarkProxyLoopback(b *testing.B) {
	conf := strings.Replace(`
http {
  keepalive_requests = 1000000000
  upstream "be" {
    servers   = ["BACKEND"]
    keepalive = 64
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/" { proxy_pass = "http://be" }
  }
}
`, "BACKEND", rawBackend(b), 1)
	s := testserver.Start(b, conf, testserver.WithLogLevel(errlog.Error))
	const clients = 50
	req := []byte("GET /x HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	// get sends one request and reads its response, which ends with the backend's
	// body (the client does no more parsing than the backend).
	get := func(c net.Conn, buf []byte) error {
		if _, err := c.Write(req); err != nil {
			return err
		}
		n := 0
		for !bytes.HasSuffix(buf[:n], []byte("\r\n\r\nhello\n")) {
			m, err := c.Read(buf[n:])
			if err != nil {
				return err
			}
			n += m
		}
		return nil
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	b.ReportAllocs()
	b.ResetTimer()
	for _, c := range conns {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			buf := make([]byte, 4096)
			for next.Add(1) <= int64(b.N) {
				if err := get(c, buf); err != nil {
					errs <- err
					return
				}
			}
		}(c)
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
