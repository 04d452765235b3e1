package headcheck

import "testing"

func TestParse(t *testing.T) {
	good := "HTTP/1.1 200 OK\r\nX-A:  v w \t\r\nX-B:\r\nX-C: caf\xc3\xa9\ttab\r\n\r\nbody"
	h, code, err := ParseResponse([]byte(good))
	if err != nil || code != 200 {
		t.Fatalf("ParseResponse(%q) = %v, %d", good, err, code)
	}
	want := []Field{{"X-A", "v w"}, {"x-b", ""}, {"X-C", "caf\xc3\xa9\ttab"}}
	if !Equal(h.Fields, want) || h.Size != len(good)-4 {
		t.Errorf("fields %q size %d, want %q size %d", h.Fields, h.Size, want, len(good)-4)
	}
	for _, bad := range []string{
		"HTTP/1.1 200 OK\r\nX-A: v\nInjected: yes\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: v\rInjected: yes\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: v\x00\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: v\x01\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: v\x7f\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX A: v\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: v\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A v\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: v\r\n folded\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: v\r\n",
		"HTTP/1.0 200 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
	} {
		if _, _, err := ParseResponse([]byte(bad)); err == nil {
			t.Errorf("ParseResponse(%q) accepted", bad)
		}
	}
	if _, m, target, err := ParseRequest([]byte("GET /a%20b?c HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil || m != "GET" || target != "/a%20b?c" {
		t.Errorf("ParseRequest: %v %q %q", err, m, target)
	}
	for _, bad := range []string{
		"GET /a b HTTP/1.1\r\n\r\n",
		"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
		"G(T / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
	} {
		if _, _, _, err := ParseRequest([]byte(bad)); err == nil {
			t.Errorf("ParseRequest(%q) accepted", bad)
		}
	}
}
