package static_test

import (
	"bufio"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
)

// bigFile is larger than the output buffer (64 KiB) and than loopback socket buffers,
// so that it is streamed and the server has to wait for the client.
func bigFile() string {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 6<<20+123)
	for i := range b {
		b[i] = byte('a' + rng.IntN(26))
	}
	return string(b)
}

func largeServer(t *testing.T) (*testserver.Server, string) {
	big := bigFile()
	s := serve(t, `
    root         = "html"
    send_timeout = "1s"
    location "/" {}
    location "= /sub" { echo_location = "/big.txt" }`, map[string]string{
		"html/big.txt":   big,
		"html/small.txt": "small",
		"html/mid.txt":   big[:20000],
	})
	return s, big
}

func TestLargeFile(t *testing.T) {
	s, big := largeServer(t)
	size := strconv.Itoa(len(big))
	run(t, s, []check{
		{path: "/big.txt", status: 200, body: big, hdr: map[string]string{"Content-Length": size}},
		{path: "/mid.txt", status: 200, body: big[:20000], hdr: map[string]string{"Content-Length": "20000"}},
		{method: "HEAD", path: "/big.txt", status: 200, noBody: true, hdr: map[string]string{"Content-Length": size}},
		{path: "/big.txt", headers: []string{"Range: bytes=1000000-3999999"}, status: 206, body: big[1000000:4000000],
			hdr: map[string]string{"Content-Length": "3000000", "Content-Range": "bytes 1000000-3999999/" + size}},
		{path: "/big.txt", headers: []string{"Range: bytes=-70000"}, status: 206, body: big[len(big)-70000:]},
		// Subrequests capture the file through memory, in chunks.
		{path: "/sub", status: 200, body: big},
	})

	r := s.Get("/big.txt", "Range: bytes=0-99999,5000000-5099999,6000000-")
	_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if r.Status != 206 || r.Header.Get("Content-Length") != strconv.Itoa(len(r.Body)) {
		t.Fatalf("status %d, Content-Length %s, body %d bytes", r.Status, r.Header.Get("Content-Length"), len(r.Body))
	}
	mr := multipart.NewReader(strings.NewReader(r.Body), params["boundary"])
	for _, want := range []string{big[:100000], big[5000000:5100000], big[6000000:]} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		if string(b) != want {
			t.Fatalf("part of %d bytes differs from the file's %d", len(b), len(want))
		}
	}
}

// Responses sent with sendfile keep their order with pipelined requests and leave
// the connection usable, also after the client was too slow for a while and the
// connection then idled for longer than send_timeout.
func TestLargeFileKeepalive(t *testing.T) {
	s, big := largeServer(t)
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	req := func(method, path string, hdr ...string) string {
		return method + " " + path + " HTTP/1.1\r\nHost: h\r\n" + strings.Join(append(hdr, ""), "\r\n") + "\r\n"
	}
	read := func(method string) (*http.Response, string) {
		t.Helper()
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%v\n%s", err, s.ErrorLog())
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%v (%d bytes)\n%s", err, len(b), s.ErrorLog())
		}
		return resp, string(b)
	}
	// The client's slowness and its idling are what is under test: real delays.
	pause := func(d time.Duration) { time.Sleep(d) }
	// Pipelined: big, HEAD big, small, a range, big through a subrequest.
	io.WriteString(c, req("GET", "/big.txt")+req("HEAD", "/big.txt")+req("GET", "/small.txt")+
		req("GET", "/big.txt", "Range: bytes=10-19")+req("GET", "/sub"))
	// Let the server fill the socket and wait on it.
	pause(300 * time.Millisecond)
	for i, want := range []struct {
		method, body string
		status       int
	}{{"GET", big, 200}, {"HEAD", "", 200}, {"GET", "small", 200}, {"GET", big[10:20], 206}, {"GET", big, 200}} {
		resp, body := read(want.method)
		if resp.StatusCode != want.status || body != want.body {
			t.Fatalf("response %d: status %d, %d bytes, want %d, %d bytes", i, resp.StatusCode, len(body), want.status, len(want.body))
		}
	}
	// Idle past send_timeout: the deadline armed while waiting must not fail the next
	// response.
	for _, path := range []string{"/small.txt", "/big.txt", "/sub"} {
		pause(1500 * time.Millisecond)
		io.WriteString(c, req("GET", path))
		pause(200 * time.Millisecond)
		resp, body := read("GET")
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("%s after idling: status %d, %d bytes", path, resp.StatusCode, len(body))
		}
	}
}

// A client that stops reading is let go after send_timeout: the server closes the
// connection (the kernel may still hold what was sent).
func TestLargeFileSendTimeout(t *testing.T) {
	s, _ := largeServer(t)
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(4096)
	}
	io.WriteString(c, "GET /big.txt HTTP/1.1\r\nHost: h\r\n\r\n")
	start := time.Now()
	if !e2e.WaitFor(5*time.Second, func() bool { return s.Engine.Counters()["writing"] == 1 }) {
		t.Fatalf("%d requests being written, want the one", s.Engine.Counters()["writing"])
	}
	if !e2e.WaitFor(10*time.Second, func() bool { return s.Engine.Counters()["active"] == 0 }) {
		t.Fatalf("the server still holds a connection whose client stopped reading: %v", s.Engine.Counters())
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("connection closed after %v, before send_timeout", d)
	}
}
