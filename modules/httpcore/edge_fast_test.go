package httpcore

import (
	"strings"
	"testing"
)

// TestScanHeadFast checks that the fast scan accepts only what the full scan accepts,
// with the same result, over heads built from well-formed and hostile pieces (each
// cut at every length, for the incomplete heads), and that it does take the common
// heads.
func TestScanHeadFast(t *testing.T) {
	lines := []string{
		"GET / HTTP/1.1", "GET /a?b=c HTTP/1.0", "POST /x HTTP/1.1", "get / HTTP/1.1",
		"GET  / HTTP/1.1", "GET / HTTP/1.2", "GET / HTTP/2.0", "GET http://a/ HTTP/1.1",
		"GET * HTTP/1.1", "GET /\x00 HTTP/1.1", "GET /\x7f HTTP/1.1", "GET / HTTP/1.1 ",
		"M-_ / HTTP/1.1", "GET /", "GET / http/1.1", " GET / HTTP/1.1", "GET /\tx HTTP/1.1",
	}
	fields := []string{
		"Host: a", "Host: localhost:8080", "host:a", "Host: a..b", "Host: ", "Host: [::1]:80",
		"Host: a/b", "Host: a\\b", "Host: .", "Host: :80", "Host: a.", "Content-Length: 3",
		"content-length:  12 ", "Content-Length: ", "Content-Length: 1x", "Content-Length: -1",
		"Content-Length: 1234567890123456789", "Content-Length: 123456789012345678",
		"Transfer-Encoding: chunked", "User-Agent: bench", "Accept: */*", "X: a\tb",
		"X: a\x00b", "X: a\x7fb", "X: a\rb", "X: a\nb", " folded", "\tfolded", ": empty",
		"Bad Name: x", "Bad\x00: x", "X:", "X-\xff: y", "X: \xff\xfe", "NoColon",
	}
	ends := []string{"\r\n", "\n", "\r", "\r\r\n"}
	lims := []headLimits{{8192, 8192, 32768}, {20, 12, 40}, {16, 8, 64}}
	var heads []string
	for _, l := range lines {
		for _, e := range ends {
			heads = append(heads, l+e+"Host: a"+e+e)
		}
		for i, f := range fields {
			for _, g := range fields[i:] {
				heads = append(heads, l+"\r\n"+f+"\r\n"+g+"\r\n\r\n")
			}
			heads = append(heads, l+"\r\n"+f+"\r\n\r\n", l+"\r\nHost: a\r\n"+f+"\n\r\n", l+"\r\n"+f+"\r\n\r\nGET / HTTP/1.1\r\n")
		}
	}
	took := 0
	for _, h := range heads {
		for cut := 0; cut <= len(h); cut++ {
			b := []byte(h[:cut])
			for _, lim := range lims {
				fast, ok := scanHeadFast(b, lim)
				if !ok {
					continue
				}
				took++
				if full := scanHeadFull(b, lim); fast != full {
					t.Fatalf("%q %+v: fast %+v, full %+v", b, lim, fast, full)
				}
			}
		}
	}
	for _, h := range []string{
		"GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.0\r\n\r\n",
	} {
		if _, ok := scanHeadFast([]byte(h), lims[0]); !ok {
			t.Errorf("fast scan refused %q", h)
		}
	}
	if took == 0 || !strings.Contains(lines[0], "GET") {
		t.Fatal("the fast scan took nothing")
	}
	t.Logf("%d heads compared", took)
}
