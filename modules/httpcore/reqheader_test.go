package httpcore

import (
	"fmt"
	"strings"
	"testing"
)

func TestReqHeader(t *testing.T) {
	var h reqHeader
	head := "POST /a?b=1 HTTP/1.1\r\nhost: Example.COM\r\nX-Multi: one\r\nCookie: a=1; sid=x=y ;flag\r\n" +
		"x-multi:  two \t\r\nContent-Length: 12\r\nCookie: late=3\r\nConnection: Keep-Alive, Close\r\n\r\n"
	if err := h.parse([]byte(head)); err != nil {
		t.Fatal(err)
	}
	if string(h.Method()) != "POST" || string(h.RequestURI()) != "/a?b=1" || !h.IsHTTP11() {
		t.Fatalf("request line: %q %q %v", h.Method(), h.RequestURI(), h.IsHTTP11())
	}
	if string(h.Host()) != "Example.COM" || h.ContentLength() != 12 || !h.ConnectionClose() {
		t.Fatalf("host %q, length %d, close %v", h.Host(), h.ContentLength(), h.ConnectionClose())
	}
	if got := string(h.Peek("X-MULTI")); got != "one" {
		t.Fatalf("Peek: %q", got)
	}
	if got := fmt.Sprintf("%q", h.PeekAll("x-multi")); got != `["one" "two"]` {
		t.Fatalf("PeekAll: %s", got)
	}
	if h.Peek("Missing") != nil || h.PeekAll("Missing") != nil {
		t.Fatal("a missing header has a value")
	}
	for name, want := range map[string]string{"a": "1", "sid": "x=y", "late": "3", "flag": ""} {
		if v := h.Cookie(name); v == nil || string(v) != want {
			t.Errorf("Cookie(%q) = %q, want %q", name, v, want)
		}
	}
	if h.Cookie("A") != nil || h.Cookie("none") != nil {
		t.Error("cookie names are case-sensitive and absent ones nil")
	}
	var names []string
	h.Visit(func(name, value []byte) { names = append(names, string(name)) })
	if got := strings.Join(names, ","); got != "host,X-Multi,Cookie,x-multi,Content-Length,Cookie,Connection" {
		t.Fatalf("Visit: %s", got)
	}
	if got := string(h.RawHeaders()); got != head[strings.Index(head, "\n")+1:] {
		t.Fatalf("RawHeaders: %q", got)
	}

	// The connection's fate by version and Connection tokens (RFC 9112 §9.3).
	for _, c := range []struct {
		head  string
		close bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade,CLOSE\r\n\r\n", true},
		{"GET / HTTP/1.0\r\n\r\n", true},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false},
		{"GET / HTTP/1.0\r\nConnection: TE, Keep-Alive\r\n\r\n", false},
	} {
		if err := h.parse([]byte(c.head)); err != nil {
			t.Fatalf("%q: %v", c.head, err)
		}
		if h.ConnectionClose() != c.close {
			t.Errorf("%q: close %v, want %v", c.head, h.ConnectionClose(), c.close)
		}
		if len(h.fields) == 0 && (h.Host() != nil || h.ContentLength() != -1) {
			t.Errorf("%q: host %q, length %d after a head without them", c.head, h.Host(), h.ContentLength())
		}
	}

	// Heads built from HTTP/2 fields are read by the same parser, which refuses what
	// the edge would have.
	for _, bad := range []string{
		"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
		"GET / HTTP/1.1\r\ncontent-length: 1x\r\n\r\n",
		"GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nno colon\r\n\r\n",
		"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
		"GET  HTTP/1.1\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"GET / HTTP/1.1\r\nhost: a\r\n",
	} {
		if err := h.parse([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}

	// The zero value, before any head, has no headers.
	var zero reqHeader
	if zero.Host() != nil || zero.Peek("Host") != nil || len(zero.RawHeaders()) != 0 {
		t.Fatal("the zero reqHeader has headers")
	}
}

// BenchmarkReqHeader is the cost of reading wrk's request head (one Host line) once
// the edge accepted it.
func BenchmarkReqHeader(b *testing.B) {
	head := []byte("GET /lua HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
	var h reqHeader
	for b.Loop() {
		if err := h.parse(head); err != nil {
			b.Fatal(err)
		}
		_ = h.Host()
	}
}
