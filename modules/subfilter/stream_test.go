package subfilter_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/proxy"
)

// A proxied body streamed in two parts, the string to replace cut between them: the
// client gets the first part at once, without the beginning of the match, which
// waits for the second part and is then replaced whole.
func TestSubFilterStreamedBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan struct{})
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "before <a hr")
		w.(http.Flusher).Flush()
		select {
		case <-second:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, `ef="http://127.0.0.1:8080/x">after`)
	})}
	go backend.Serve(ln)
	t.Cleanup(func() { backend.Close() })

	s := testserver.Start(t, fmt.Sprintf(`
http {
  server {
    listen = ["127.0.0.1:0"]
    location "/" {
      proxy_pass = "http://%s"
      sub_filter = { "<a href=\"http://127.0.0.1:8080/" = "<a href=\"/" }
    }
  }
}
`, ln.Addr()))
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Length") != "" {
		t.Errorf("Content-Length %q on a filtered stream", resp.Header.Get("Content-Length"))
	}
	var got strings.Builder
	buf := make([]byte, 1024)
	for got.Len() < len("before ") {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("after %q: %v", got.String(), err)
		}
	}
	if got.String() != "before " {
		t.Fatalf("first part %q: the possible beginning of a match went out", got.String())
	}
	close(second)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if all := got.String() + string(rest); all != `before <a href="/x">after` {
		t.Errorf("%q", all)
	}
}
