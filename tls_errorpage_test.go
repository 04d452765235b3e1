package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// rawPlain sends one plain HTTP request to addr and returns all the server sends
// until it closes, without the Date line.
func rawPlain(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer to a plain request: %v (got %q)", err, b)
	}
	return regexp.MustCompile("Date: [^\r]*\r\n").ReplaceAllString(string(b), "")
}

// TestTLSErrorPages: nginx's TLS codes 497 (plain HTTP to a TLS port), 496 (no
// required client certificate) and 495 (a bad one) go through the error_page of the
// server the request's Host selects, as nginx's; without one they are 400 with
// nginx's texts. The expected answers are nginx 1.22's for the same configuration
// (Server and Date aside, spindle's own error page bodies and its reason phrase
// "Found" for 302).
func TestTLSErrorPages(t *testing.T) {
	s := newTLSSetup(t)
	gCert, gKey, _ := s.ca.Issue("g-ec", e2e.ECDSA, false, "a.test", "b.test", "c.test", "d.test", "e.test", "f.test", "g.test")
	cert := fmt.Sprintf("ssl_certificate = %q\n    ssl_certificate_key = %q", gCert, gKey)
	inst := e2e.Start(t, fmt.Sprintf(`
error_log = { path = "logs/error.log", level = "info" }
http {
  server_tokens = false
  default_type  = "text/plain"
  server {
    listen      = ["127.0.0.1:{{PORT}} ssl"]
    server_name = ["a.test"]
    %[1]s
    error_page  = ["497 https://${host}:{{PORT}}${request_uri}"]
    location "/" { return = { code = 200, body = "hi" } }
  }
  server {
    listen      = ["127.0.0.1:{{PORT}} ssl"]
    server_name = ["b.test"]
    %[1]s
    error_page  = ["497 =301 https://${host}${request_uri}"]
  }
  server {
    listen      = ["127.0.0.1:{{PORT}} ssl"]
    server_name = ["c.test"]
    %[1]s
  }
  server {
    listen      = ["127.0.0.1:{{PORT}} ssl"]
    server_name = ["d.test"]
    %[1]s
    error_page  = ["497 /plain"]
    location "= /plain" { return = { code = 200, body = "use https\n" } }
  }
  server {
    listen      = ["127.0.0.1:{{PORT}} ssl"]
    server_name = ["e.test"]
    %[1]s
    error_page  = ["497 =200 /plain"]
    location "= /plain" { return = { code = 200, body = "use https\n" } }
  }
  server {
    listen      = ["127.0.0.1:{{PORT}} ssl"]
    server_name = ["f.test"]
    %[1]s
    # in a location: not seen, the request is answered before location search
    location "/" { error_page = ["497 =301 https://x/"] }
  }
  server {
    listen                 = ["127.0.0.1:{{PORT}} ssl"]
    server_name            = ["g.test"]
    %[1]s
    ssl_client_certificate = %[2]q
    ssl_verify_client      = "on"
    error_page             = ["495 496 =403 /nocert"]
    location "= /nocert" { return = { code = 200, body = "a certificate, please\n" } }
  }
}
`, cert, s.ca.File), nil)
	addr := inst.Addr()
	plainPage := "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>spindle</center>\r\n</body>\r\n</html>\r\n"
	cases := []struct{ host, head, body string }{
		{"a.test", "HTTP/1.1 302 Found\r\nServer: spindle\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\nLocation: https://a.test:" + fmt.Sprint(inst.Port) + "/p?q=1\r\n\r\n", "302"},
		{"b.test", "HTTP/1.1 301 Moved Permanently\r\nServer: spindle\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\nLocation: https://b.test/p?q=1\r\n\r\n", "301"},
		{"c.test", "HTTP/1.1 400 Bad Request\r\nServer: spindle\r\nContent-Type: text/html\r\nContent-Length: 250\r\nConnection: close\r\n\r\n", plainPage},
		{"d.test", "HTTP/1.1 400 Bad Request\r\nServer: spindle\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\n", "use https\n"},
		{"e.test", "HTTP/1.1 200 OK\r\nServer: spindle\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\n", "use https\n"},
		{"f.test", "HTTP/1.1 400 Bad Request\r\nServer: spindle\r\nContent-Type: text/html\r\nContent-Length: 250\r\nConnection: close\r\n\r\n", plainPage},
	}
	for _, c := range cases {
		got := rawPlain(t, addr, "GET /p?q=1 HTTP/1.1\r\nHost: "+c.host+"\r\n\r\n")
		head, body, _ := strings.Cut(got, "\r\n\r\n")
		head += "\r\n\r\n"
		want := c.head
		if strings.Contains(want, "%d") {
			// a redirect: spindle's own page for the code
			want = fmt.Sprintf(want, len(body))
			if !strings.Contains(body, "<title>"+c.body+" ") {
				t.Errorf("%s: body %q", c.host, body)
			}
		} else if body != c.body {
			t.Errorf("%s: body %q, want %q", c.host, body, c.body)
		}
		if head != want {
			t.Errorf("%s:\n got %q\nwant %q", c.host, head, want)
		}
	}

	// curl follows the 301 of b.test... to b.test: resolve it to the TLS port.
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("curl", "-sS", "-L", "--max-time", "10", "--cacert", s.ca.File,
			"--resolve", fmt.Sprintf("a.test:%d:127.0.0.1", inst.Port),
			fmt.Sprintf("http://a.test:%d/over?tls=1", inst.Port), "-w", " %{http_code} %{url_effective}").CombinedOutput()
		if want := fmt.Sprintf("hi 200 https://a.test:%d/over?tls=1", inst.Port); string(out) != want || err != nil {
			t.Errorf("curl -L from http to https: %q (%v), want %q", out, err, want)
		}
	} else {
		t.Error("curl is not installed (scripts/test.sh installs it)")
	}

	// 496: no client certificate, error_page =403 with a page; over TLS, keepalive off.
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "g.test", RootCAs: s.ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: g.test\r\n\r\n")
	code, body := readHTTP(t, bufio.NewReader(conn))
	if code != 403 || body != "a certificate, please\n" {
		t.Errorf("496 with error_page =403: %d %q", code, body)
	}
	// 495: a certificate from another CA.
	cfg := &tls.Config{ServerName: "g.test", RootCAs: s.ca.Pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &s.stranger, nil }}
	if code, body, _ := tlsGet(t, addr, "g.test", "/", cfg); code != 403 || body != "a certificate, please\n" {
		t.Errorf("495 with error_page =403: %d %q", code, body)
	}
	// And a good one gets through.
	cfg = &tls.Config{ServerName: "g.test", RootCAs: s.ca.Pool, Certificates: []tls.Certificate{s.client}}
	if code, _, _ := tlsGet(t, addr, "g.test", "/nocert", cfg); code != 200 {
		t.Errorf("a good client certificate: %d", code)
	}
	if !e2e.WaitFor(5*time.Second, func() bool {
		return strings.Contains(inst.ErrorLog(), "client sent plain HTTP request to HTTPS port while reading client request headers")
	}) {
		t.Errorf("no info line for the plain request:\n%s", inst.ErrorLog())
	}
}
