package httpcore_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// TLS on both of the engine's ways to serve a listener: the event loop, and a
// goroutine per connection (listeners the loop does not take).
func TestTLSLoopAndGoroutinePerConnection(t *testing.T) {
	ca := e2e.NewCA(t, t.TempDir(), "ca")
	crt, key, _ := ca.Issue("srv", e2e.ECDSA, false, "srv.test")
	_, _, client := ca.Issue("client", e2e.ECDSA, true, "bob")
	config := fmt.Sprintf(`
http {
  server {
    listen                 = ["127.0.0.1:0 ssl"]
    ssl_certificate        = "%s"
    ssl_certificate_key    = "%s"
    ssl_client_certificate = "%s"
    ssl_verify_client      = "on"
    location "= /who" { return = { code = 200, body = "${https} ${ssl_client_verify} ${ssl_client_s_dn}" } }
  }
}`, crt, key, ca.File)
	for _, noLoop := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoEventLoop=%v", noLoop), func(t *testing.T) {
			s := testserver.Start(t, config, testserver.WithEngineOptions(httpcore.EngineOptions{WorkerConnections: 64, NoEventLoop: noLoop}))
			c, err := tls.Dial("tcp", s.Addr, &tls.Config{ServerName: "srv.test", RootCAs: ca.Pool, Certificates: []tls.Certificate{client}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for i := 0; i < 3; i++ {
				io.WriteString(c, "GET /who HTTP/1.1\r\nHost: srv.test\r\n\r\n")
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatal(err)
					}
					if line == "\r\n" {
						break
					}
				}
				got := make([]byte, len("on SUCCESS CN=bob,O=spindle tests"))
				if _, err := io.ReadFull(br, got); err != nil || string(got) != "on SUCCESS CN=bob,O=spindle tests" {
					t.Fatalf("request %d: %q %v", i, got, err)
				}
			}
		})
	}
}
