package httpcore_test

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
)

const engineConf = `
http {
  client_max_body_size  = "1k"
  client_header_timeout = "1s"
  keepalive_timeout     = "2s"
  server {
    listen = ["127.0.0.1:0"]
    location "= /a" { echo = "a" }
    location "= /b" { echo = "b" }
    location "= /body" {
      echo_read_request_body = true
      echo = "[${request_body}]"
    }
    location "= /big" {
      client_max_body_size = "10m"
      echo_read_request_body = true
      echo = "${content_length}"
    }
    location "= /large-response" { echo_duplicate = [100000, "0123456789"] }
    location "= /vars" {
      echo = "${request_method} ${uri} ${args} ${request_uri} ${server_protocol} ${host} ${arg.x} ${http.user_agent} ${cookie.sid}"
    }
  }
}
`

func exchange(t *testing.T, addr, raw string) string {
	t.Helper()
	return testserver.Raw(t, addr, raw, 3*time.Second)
}

func TestPipelining(t *testing.T) {
	s := testserver.Start(t, engineConf)
	raw := exchange(t, s.Addr, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resps, bodies, err := testserver.ReadResponses(raw, "GET", "HEAD", "GET")
	if err != nil || len(resps) != 3 {
		t.Fatalf("pipelined: %d responses, %v\n%q", len(resps), err, raw)
	}
	if bodies[0] != "a\n" || bodies[1] != "" || bodies[2] != "b\n" {
		t.Errorf("bodies %q", bodies)
	}
	if resps[1].ContentLength != 2 {
		t.Errorf("HEAD Content-Length = %d, want 2", resps[1].ContentLength)
	}
	if !resps[2].Close {
		t.Errorf("last response does not close")
	}
}

func TestRequestBodies(t *testing.T) {
	s := testserver.Start(t, engineConf)
	cases := []struct {
		name, req string
		status    int
		body      string
	}{
		{"content-length", "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", 200, "[hello]\n"},
		{"chunked", "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nTrailer: x\r\n\r\n", 200, "[hello]\n"},
		{"too large declared", "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n", 413, ""},
		{"too large chunked", "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + strings.Repeat("x", 2048) + "\r\n0\r\n\r\n", 413, ""},
		// "Transfer-Encoding:<TAB>chunked": a tab is OWS (RFC 9110).
		{"TE after a tab", "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, "[abc]\n"},
		// Refused when the size line arrives, not after waiting for data never sent.
		{"chunk above client_max_body_size", "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n801\r\n", 413, ""},
		{"chunk size 2^63", "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\n", 400, ""},
		{"chunk size overflow", "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000a\r\n", 400, ""},
		{"bad chunk size", "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400, ""},
		{"larger limit in location", "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\nConnection: close\r\n\r\n" + strings.Repeat("y", 3000), 200, "3000\n"},
	}
	for _, c := range cases {
		raw := exchange(t, s.Addr, c.req)
		resps, bodies, err := testserver.ReadResponses(raw)
		if err != nil || len(resps) != 1 {
			t.Errorf("%s: %v %q", c.name, err, raw)
			continue
		}
		if resps[0].StatusCode != c.status || (c.body != "" && bodies[0] != c.body) {
			t.Errorf("%s: %d %q, want %d %q", c.name, resps[0].StatusCode, bodies[0], c.status, c.body)
		}
	}
}

// A body the handler does not read is discarded; the connection carries on.
func TestUnreadBodyDiscarded(t *testing.T) {
	s := testserver.Start(t, engineConf)
	raw := exchange(t, s.Addr, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcdGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	_, bodies, err := testserver.ReadResponses(raw)
	if err != nil || len(bodies) != 2 || bodies[0] != "a\n" || bodies[1] != "b\n" {
		t.Fatalf("got %q (%v)", bodies, err)
	}
}

func TestExpectContinue(t *testing.T) {
	s := testserver.Start(t, engineConf)
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim response %q %v", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, "abc")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "[abc]\n" {
		t.Errorf("body %q", b)
	}
	// A location that never reads the body sends no 100 Continue: the final response
	// comes at once and the connection closes (the client still holds its body).
	io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("no-read location: %v %v", resp, err)
	}
}

func TestTimeouts(t *testing.T) {
	s := testserver.Start(t, engineConf)
	// A request head that never completes is closed after client_header_timeout,
	// without a response, as nginx does (its access log says 408).
	start := time.Now()
	raw := testserver.Raw(t, s.Addr, "GET /a HTTP/1.1\r\nHost: x\r\n", 5*time.Second)
	if raw != "" {
		t.Errorf("slow head: %q, want the connection closed without a response", raw)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("closed after %v, want about 1s", d)
	}
	if log := s.ErrorLog(); !strings.Contains(log, "client timed out (110: Connection timed out) while reading client request headers") {
		t.Errorf("error log has no timeout line:\n%s", log)
	}
	// An idle keepalive connection is closed after keepalive_timeout.
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.Close {
		t.Fatalf("keepalive response: %v %v", resp, err)
	} else {
		io.ReadAll(resp.Body)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start = time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle keepalive connection: %v, want EOF", err)
	}
	if d := time.Since(start); d < 1500*time.Millisecond || d > 4*time.Second {
		t.Errorf("idle connection closed after %v, want about 2s", d)
	}
}

// A client that trickles its request does not hold up anyone else.
func TestSlowClientDoesNotBlock(t *testing.T) {
	s := testserver.Start(t, engineConf)
	slow, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "GET /a HT")
	for i := 0; i < 50; i++ {
		if r := s.Get("/b"); r.Body != "b\n" {
			t.Fatalf("request %d: %q", i, r.Body)
		}
	}
	io.WriteString(slow, "TP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	slow.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, _ := io.ReadAll(slow)
	if !strings.HasSuffix(string(b), "\r\n\r\na\n") {
		t.Errorf("slow client got %q", b)
	}
}

func TestLargeResponseStreams(t *testing.T) {
	s := testserver.Start(t, engineConf)
	r := s.Get("/large-response")
	if len(r.Body) != 1000000 || r.Body[:10] != "0123456789" {
		t.Fatalf("large response: %d bytes", len(r.Body))
	}
}

func TestHTTP10AndConnectionHeader(t *testing.T) {
	s := testserver.Start(t, engineConf)
	cases := []struct {
		req       string
		keepalive bool
	}{
		{"GET /a HTTP/1.0\r\n\r\n", false},
		{"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
		{"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false},
		{"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", true},
	}
	for _, c := range cases {
		raw := testserver.Raw(t, s.Addr, c.req, 500*time.Millisecond)
		if got := strings.Contains(raw, "Connection: keep-alive\r\n"); got != c.keepalive {
			t.Errorf("%q: keep-alive=%v, want %v\n%s", c.req, got, c.keepalive, raw)
		}
	}
}

func TestVariables(t *testing.T) {
	s := testserver.Start(t, engineConf)
	raw := exchange(t, s.Addr, "GET http://Example.COM:8080/va%72s?x=1&y=2 HTTP/1.1\r\nHost: ignored\r\nUser-Agent: tester\r\nCookie: a=1; sid=abc\r\nConnection: close\r\n\r\n")
	_, bodies, err := testserver.ReadResponses(raw)
	want := "GET /vars x=1&y=2 http://Example.COM:8080/va%72s?x=1&y=2 HTTP/1.1 example.com 1 tester abc\n"
	if err != nil || len(bodies) != 1 || bodies[0] != want {
		t.Errorf("got %q, want %q (%v)", bodies, want, err)
	}
}

const serversConf = `
http {
  server {
    listen = ["127.0.0.1:0"]
    server_name = ["first.test"]
    location "/" { echo = "first" }
  }
  server {
    listen = ["127.0.0.1:0 default_server"]
    server_name = ["example.com", "*.example.com", "www.example.*"]
    location "/" { echo = "example ${host}" }
  }
  server {
    listen = ["127.0.0.1:0"]
    server_name = ["~^app(\\d+)\\.test$", "*.deep.example.com"]
    location "/" { echo = "regex" }
  }
  server {
    listen = ["127.0.0.2:0"]
    location "/" { echo = "other address" }
  }
}
`

func TestServerSelection(t *testing.T) {
	s := testserver.Start(t, serversConf)
	cases := []struct{ host, want string }{
		{"first.test", "first"},
		{"FIRST.test.", "first"},
		{"first.test:8080", "first"},
		{"example.com", "example example.com"},
		{"a.example.com", "example a.example.com"},
		{"a.b.example.com", "example a.b.example.com"},
		{"x.deep.example.com", "regex"}, // the longest leading wildcard wins
		{"www.example.org", "example www.example.org"},
		{"app42.test", "regex"},
		{"unknown.test", "example unknown.test"}, // default_server
	}
	for _, c := range cases {
		if r := s.Get("/", "Host: "+c.host); r.Body != c.want+"\n" {
			t.Errorf("Host %q: %q, want %q", c.host, r.Body, c.want)
		}
	}
	// HTTP/1.0 without Host goes to the default server.
	raw := testserver.Raw(t, s.Addr, "GET / HTTP/1.0\r\n\r\n", 2*time.Second)
	if !strings.HasSuffix(raw, "example example.com\n") { // $host falls back to the server name
		t.Errorf("no Host: %q", raw)
	}
	other := s.AddrOf("127.0.0.2:0")
	raw = testserver.Raw(t, other, "GET / HTTP/1.1\r\nHost: first.test\r\nConnection: close\r\n\r\n", 2*time.Second)
	if !strings.HasSuffix(raw, "other address\n") {
		t.Errorf("by address: %q", raw)
	}
}

func TestConfigErrors(t *testing.T) {
	wrap := func(server string) string {
		return "http {\n  server {\n    listen = [\"127.0.0.1:0\"]\n" + server + "\n  }\n}\n"
	}
	cases := []struct{ conf, want string }{
		{wrap("location \"= /x\" {\n return = 200\n }\nlocation \"= /x\" {\n return = 201\n }"), `7,1: duplicate location "= /x" (first at line 4)`},
		{wrap("location \"~ (?<=a+)b\" {}"), "4,10: invalid regex \"(?<=a+)b\": lookbehind assertion is not fixed length at offset 0"},
		{"http {\n  server {\n    listen = [\"nope\"]\n  }\n}\n", "3,14: invalid listen address"},
		{wrap("location \"/\" {\n echo = \"${nosuchvar}\"\n }"), `5,12: unknown variable "nosuchvar"`},
		{wrap("location \"/\" {\n echo = \"${nosuchfunc(uri)}\"\n }"), `5,12: unknown function "nosuchfunc"`},
		{wrap("location \"/\" {\n location \"/other\" {}\n }"), ""},
		{wrap("location \"/a\" {\n location \"/b\" {}\n }"), `5,11: location "/b" is outside location "/a"`},
		{wrap("location \"/\" {\n if {\n return = 200\n }\n }"), "5,2: if needs a condition"},
		{wrap("server {\n}"), "4,1: server is only allowed in the http block"},
		{"http {\n  location \"/\" {}\n}\n", "2,3: location is only allowed in a server or location"},
		{wrap("client_max_body_size = \"12q\""), `4,24: invalid size`},
		{wrap("keepalive_timeout = \"5 parsecs\""), `4,21: invalid time`},
		{wrap("no_such = 1"), `4,1: unknown directive "no_such"`},
		{wrap("location \"/\" {\n listen = [\"127.0.0.1:1\"]\n }"), `5,2: "listen" is not allowed in location context`},
		{wrap("echo = \"x\""), `4,1: "echo" is not allowed in server context`},
	}
	for _, c := range cases {
		_, err := testserver.BuildString(t, c.conf, nil)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.conf, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), "spindle.hcl:"+c.want)):
			t.Errorf("%s: error %v, want spindle.hcl:%s", c.conf, err, c.want)
		}
	}
}

func TestKeepaliveRequestsLimit(t *testing.T) {
	s := testserver.Start(t, strings.Replace(engineConf, `keepalive_timeout     = "2s"`, `keepalive_timeout = "2s"
  keepalive_requests = 3`, 1))
	raw := exchange(t, s.Addr, strings.Repeat("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 5))
	resps, _, _ := testserver.ReadResponses(raw)
	if len(resps) != 3 || resps[1].Close || !resps[2].Close {
		t.Fatalf("keepalive_requests = 3: %d responses %s", len(resps), fmt.Sprint(raw))
	}
}
