package echo_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

const conf = `
http {
  server {
    listen = ["127.0.0.1:0"]
    location "= /hello" { echo = "hello, ${arg.who}" }
    location "= /lines" {
      echo   = ["a", "b"]
      echo_n = "c"
    }
    location "= /dup" { echo_duplicate = [3, "ab"] }
    location "= /moon" { echo = "moon" }
    location "= /earth" {
      echo_sleep = "50ms"
      echo = "earth"
    }
    location "= /sync" { echo_location = ["/moon", "/earth"] }
    location "= /async" {
      echo = ["start", { location_async = ["/earth", "/moon", "/internal"] }, "end"]
    }
    location "/internal" {
      internal = true
      echo = "internal ${uri} ${args}"
    }
    location "= /status" {
      echo_status = 201
      echo = "created"
    }
    location "= /flush" {
      echo = ["first", { flush = true }, { sleep = "100ms" }, "second"]
    }
    location "= /ordered" {
      echo_n     = "a"
      echo_sleep = "10ms"
      echo       = "b"
    }
    location "= /args" { echo_location = "/internal?x=1" }
  }
}
`

func TestEcho(t *testing.T) {
	s := testserver.Start(t, conf)
	cases := []struct {
		path, body string
		status     int
	}{
		{"/hello?who=world", "hello, world\n", 200},
		{"/lines", "a\nb\nc", 200},
		{"/dup", "ababab", 200},
		{"/sync", "moon\nearth\n", 200},
		{"/async", "start\nearth\nmoon\ninternal /internal \nend\n", 200},
		{"/status", "created\n", 201},
		{"/args", "internal /internal x=1\n", 200},
		{"/internal", "", 404},
		{"/ordered", "ab\n", 200},
	}
	for _, c := range cases {
		r := s.Get(c.path)
		if r.Status != c.status || (c.body != "" && r.Body != c.body) {
			t.Errorf("GET %s = %d %q, want %d %q", c.path, r.Status, r.Body, c.status, c.body)
		}
	}
}

func TestEchoAsyncRunsConcurrently(t *testing.T) {
	s := testserver.Start(t, strings.Replace(conf, `location_async = ["/earth", "/moon", "/internal"]`,
		`location_async = ["/earth", "/earth", "/earth", "/earth"]`, 1))
	start := time.Now()
	r := s.Get("/async")
	if d := time.Since(start); d > 180*time.Millisecond {
		t.Errorf("4 subrequests sleeping 50ms each took %v: not concurrent", d)
	}
	if r.Body != "start\n"+strings.Repeat("earth\n", 4)+"end\n" {
		t.Errorf("body %q", r.Body)
	}
}

func TestEchoFlushStreams(t *testing.T) {
	s := testserver.Start(t, conf)
	raw := s.Raw("GET /flush HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3*time.Second)
	if !strings.Contains(raw, "Transfer-Encoding: chunked") || !strings.Contains(raw, "6\r\nfirst\n\r\n") || !strings.HasSuffix(raw, "0\r\n\r\n") {
		t.Errorf("flushed response not chunked:\n%q", raw)
	}
}

// The client's address and port as the event loop got them from accept, over IPv4 and
// IPv6.
func TestRemoteAddress(t *testing.T) {
	s := testserver.Start(t, `
http {
  server {
    listen = ["127.0.0.1:0", "[::1]:0"]
    location "/" { echo = "${remote_addr} ${remote_port}" }
  }
}
`)
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0"} {
		c, err := net.Dial("tcp", s.AddrOf(listen))
		if err != nil {
			t.Fatalf("%s: %v", listen, err)
		}
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		host, port, _ := net.SplitHostPort(c.LocalAddr().String())
		if got, want := strings.TrimSpace(string(body)), host+" "+port; got != want {
			t.Errorf("%s: remote_addr remote_port = %q, want %q", listen, got, want)
		}
	}
}
