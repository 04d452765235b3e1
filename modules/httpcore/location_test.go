package httpcore_test

import (
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

// The examples of nginx's location documentation, plus nested and named locations.
const locationConf = `
http {
  server {
    listen = ["127.0.0.1:0"]
    location "= /" { return = { code = 200, body = "A" } }
    location "/" { return = { code = 200, body = "B" } }
    location "/documents/" { return = { code = 200, body = "C" } }
    location "^~ /images/" { return = { code = 200, body = "D" } }
    location "~* \\.(gif|jpg|jpeg)$" { return = { code = 200, body = "E" } }
    location "/nest/" {
      return = { code = 200, body = "nest" }
      location "/nest/inner/" { return = { code = 200, body = "inner" } }
      location "~ \\.txt$" { return = { code = 200, body = "nested-regex" } }
    }
    location "^~ /stop/" {
      return = { code = 200, body = "stop" }
      location "~ \\.png$" { return = { code = 200, body = "stop-png" } }
    }
    location "~ ^/cap/(?P<name>[a-z]+)/(\\d+)$" { return = { code = 200, body = "${re[1]}-${re[2]}" } }
    location "/secret/" {
      internal = true
      return = { code = 200, body = "secret" }
    }
    location "@named" { return = { code = 200, body = "named" } }
  }
}
`

func TestLocationSelection(t *testing.T) {
	s := testserver.Start(t, locationConf)
	cases := []struct {
		path   string
		status int
		body   string
	}{
		{"/", 200, "A"},
		{"/index.html", 200, "B"},
		{"/documents/document.html", 200, "C"},
		{"/images/1.gif", 200, "D"},
		{"/documents/1.jpg", 200, "E"},
		{"/DOCUMENTS/1.JPG", 200, "E"},
		{"/nest/x", 200, "nest"},
		{"/nest/inner/x", 200, "inner"},
		{"/nest/inner/x.txt", 200, "nested-regex"},
		{"/nest/a.jpg", 200, "E"},
		{"/stop/a.jpg", 200, "stop"},
		{"/stop/a.png", 200, "stop-png"},
		{"/cap/abc/42", 200, "abc-42"},
		{"/secret/x", 404, ""},
		{"/@named", 200, "B"},
		{"/a/../documents/x", 200, "C"},
		{"/documents//x", 200, "C"},
		{"/%64ocuments/x", 200, "C"},
	}
	for _, c := range cases {
		r := s.Get(c.path)
		if r.Status != c.status || (c.body != "" && r.Body != c.body) {
			t.Errorf("GET %s = %d %q, want %d %q", c.path, r.Status, r.Body, c.status, c.body)
		}
	}
}

func TestMalformedRequests(t *testing.T) {
	s := testserver.Start(t, locationConf)
	cases := []struct {
		name, req string
		status    int
	}{
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400},
		{"mixed LF", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"duplicate CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400},
		{"invalid CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", 400},
		{"space in header name", "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n", 400},
		{"folded header", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad method", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		// Methods as nginx parses them: upper-case letters, '_' and '-'.
		{"lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"mixed-case method", "GEt / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"digit in method", "G1T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		// Host values nginx 1.22 rejects (and '\\', which would reach paths).
		{"Host ..", "GET / HTTP/1.1\r\nHost: ..\r\n\r\n", 400},
		{"Host a..b", "GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", 400},
		{"Host .", "GET / HTTP/1.1\r\nHost: .\r\n\r\n", 400},
		{"Host :80", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400},
		{"empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400},
		{"Host with /", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"Host with \\", "GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n", 400},
		{"Host with NUL", "GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400},
		{"bad version", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"extra space", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"unknown TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"above root", "GET /../x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"encoded above root", "GET /%2e%2e/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"NUL", "GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"long URI", "GET /" + string(make([]byte, 0)) + repeat("a", 9000) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
		{"long header", "GET / HTTP/1.1\r\nHost: a\r\nX: " + repeat("b", 9000) + "\r\n\r\n", 431},
	}
	for _, c := range cases {
		raw := s.Raw(c.req, 3*time.Second)
		resps, _, err := testserver.ReadResponses(raw)
		if err != nil || len(resps) != 1 {
			t.Errorf("%s: got %q (%v)", c.name, raw, err)
			continue
		}
		if resps[0].StatusCode != c.status || !resps[0].Close {
			t.Errorf("%s: status %d close=%v, want %d and close", c.name, resps[0].StatusCode, resps[0].Close, c.status)
		}
	}
	// The worker carries on.
	if r := s.Get("/"); r.Status != 200 {
		t.Fatalf("after malformed requests: %d", r.Status)
	}
	// Well-formed unusual values are served, as nginx serves them.
	for _, req := range []string{
		"G_T / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: .a\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.:80\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n",
	} {
		raw := s.Raw(req, 3*time.Second)
		if resps, _, err := testserver.ReadResponses(raw); err != nil || len(resps) != 1 || resps[0].StatusCode == 400 {
			t.Errorf("%q: got %q (%v)", req, raw, err)
		}
	}
}

func repeat(s string, n int) string {
	b := make([]byte, 0, len(s)*n)
	for i := 0; i < n; i++ {
		b = append(b, s...)
	}
	return string(b)
}
