package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// tlsSetup is a CA and the certificates of two TLS servers: a.test (ECDSA and RSA,
// the default server) and b.test (ECDSA, asks for client certificates).
type tlsSetup struct {
	ca                       *e2e.CA
	aEC, aECKey, aRSA, aRKey string
	bEC, bECKey              string
	client                   tls.Certificate // signed by ca
	stranger                 tls.Certificate // signed by another CA
}

func newTLSSetup(t *testing.T) *tlsSetup {
	dir := t.TempDir()
	s := &tlsSetup{ca: e2e.NewCA(t, dir, "ca")}
	s.aEC, s.aECKey, _ = s.ca.Issue("a-ec", e2e.ECDSA, false, "a.test", "127.0.0.1")
	s.aRSA, s.aRKey, _ = s.ca.Issue("a-rsa", e2e.RSA, false, "a.test", "127.0.0.1")
	s.bEC, s.bECKey, _ = s.ca.Issue("b-ec", e2e.ECDSA, false, "b.test")
	_, _, s.client = s.ca.Issue("client", e2e.ECDSA, true, "alice")
	other := e2e.NewCA(t, dir, "other")
	_, _, s.stranger = other.Issue("stranger", e2e.ECDSA, true, "mallory")
	return s
}

const tlsVarsBody = `${https}|${scheme}|${ssl_protocol}|${ssl_cipher}|${ssl_server_name}|${ssl_session_reused}|${ssl_client_verify}|${ssl_client_s_dn}`

func (s *tlsSetup) conf(workers int, extraA string) string {
	return fmt.Sprintf(`
worker_processes        = %d
worker_shutdown_timeout = "10s"
error_log               = { path = "logs/error.log", level = "info" }
http {
  server {
    listen              = ["127.0.0.1:{{PORT}} ssl backlog=4096"]
    server_name         = ["a.test"]
    ssl_certificate     = ["%s", "%s"]
    ssl_certificate_key = ["%s", "%s"]
    %s
    location "= /hello" { return = { code = 200, body = "hello a\n" } }
    location "= /vars" { return = { code = 200, body = "a|%s\n" } }
  }
  server {
    listen                 = ["127.0.0.1:{{PORT}} ssl"]
    server_name            = ["b.test"]
    ssl_certificate        = "%s"
    ssl_certificate_key    = "%s"
    ssl_client_certificate = "%s"
    ssl_verify_client      = "optional"
    location "= /vars" { return = { code = 200, body = "b|%s\n" } }
  }
}
`, workers, s.aEC, s.aRSA, s.aECKey, s.aRKey, extraA, tlsVarsBody, s.bEC, s.bECKey, s.ca.File, tlsVarsBody)
}

// tlsGet sends one request over a new TLS connection and returns the status line's
// code, the body and the connection's state.
func tlsGet(t *testing.T, addr, host, path string, cfg *tls.Config) (int, string, tls.ConnectionState) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := tls.Client(nc, cfg)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host)
	st, body := readHTTP(t, bufio.NewReader(c))
	return st, body, c.ConnectionState()
}

func readHTTP(t *testing.T, br *bufio.Reader) (int, string) {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the status line: %v", err)
	}
	var code int
	fmt.Sscanf(line, "HTTP/1.1 %d", &code)
	n := -1
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "Content-Length") {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &n)
		}
	}
	body := make([]byte, max(n, 0))
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatal(err)
	}
	return code, string(body)
}

func TestTLSServersAndVariables(t *testing.T) {
	s := newTLSSetup(t)
	inst := e2e.Start(t, s.conf(1, ""), nil)
	addr := inst.Addr()

	t.Run("SNI selects the server and its certificate", func(t *testing.T) {
		code, body, cs := tlsGet(t, addr, "b.test", "/vars", &tls.Config{ServerName: "b.test", RootCAs: s.ca.Pool})
		if code != 200 || !strings.HasPrefix(body, "b|on|https|TLSv1.3|TLS_AES_") || !strings.Contains(body, "|b.test|.|NONE|") {
			t.Errorf("b.test: %d %q", code, body)
		}
		if cs.PeerCertificates[0].Subject.CommonName != "b.test" {
			t.Errorf("b.test got the certificate of %s", cs.PeerCertificates[0].Subject.CommonName)
		}
	})
	t.Run("no SNI gets the default server's certificate", func(t *testing.T) {
		code, body, cs := tlsGet(t, addr, "a.test", "/vars", &tls.Config{InsecureSkipVerify: true})
		if code != 200 || !strings.Contains(body, "||.|NONE|") || !strings.HasPrefix(body, "a|on|https|") {
			t.Errorf("no SNI: %d %q", code, body)
		}
		if cs.PeerCertificates[0].Subject.CommonName != "a.test" {
			t.Errorf("no SNI got %s", cs.PeerCertificates[0].Subject.CommonName)
		}
	})
	t.Run("unknown SNI gets the default server", func(t *testing.T) {
		_, _, cs := tlsGet(t, addr, "a.test", "/vars", &tls.Config{ServerName: "c.test", InsecureSkipVerify: true})
		if cs.PeerCertificates[0].Subject.CommonName != "a.test" {
			t.Errorf("c.test got %s", cs.PeerCertificates[0].Subject.CommonName)
		}
	})
	t.Run("ECDSA or RSA by what the client supports", func(t *testing.T) {
		_, _, cs := tlsGet(t, addr, "a.test", "/hello", &tls.Config{ServerName: "a.test", RootCAs: s.ca.Pool})
		if _, ok := cs.PeerCertificates[0].PublicKey.(*ecdsa.PublicKey); !ok {
			t.Errorf("a client that takes ECDSA got %T", cs.PeerCertificates[0].PublicKey)
		}
		rsaOnly := &tls.Config{ServerName: "a.test", RootCAs: s.ca.Pool, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
		code, body, cs := tlsGet(t, addr, "a.test", "/vars", rsaOnly)
		if _, ok := cs.PeerCertificates[0].PublicKey.(*rsa.PublicKey); !ok {
			t.Errorf("an RSA-only client got %T", cs.PeerCertificates[0].PublicKey)
		}
		if code != 200 || !strings.Contains(body, "|TLSv1.2|ECDHE-RSA-AES128-GCM-SHA256|a.test|") {
			t.Errorf("TLS 1.2 variables: %q", body)
		}
	})
	t.Run("client certificates", func(t *testing.T) {
		cfg := &tls.Config{ServerName: "b.test", RootCAs: s.ca.Pool, Certificates: []tls.Certificate{s.client}}
		_, body, _ := tlsGet(t, addr, "b.test", "/vars", cfg)
		if !strings.Contains(body, "|SUCCESS|CN=alice,O=spindle tests") {
			t.Errorf("a client certificate from the CA: %q", body)
		}
		// Go's client sends only certificates from the CAs the server names: force it.
		cfg.Certificates = nil
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &s.stranger, nil }
		code, body, _ := tlsGet(t, addr, "b.test", "/vars", cfg)
		if code != 400 || !strings.Contains(body, "The SSL certificate error") {
			t.Errorf("a certificate from another CA: %d %q", code, body)
		}
	})
	t.Run("plain HTTP to the TLS port", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: a.test\r\n\r\n")
		code, body := readHTTP(t, bufio.NewReader(c))
		if code != 400 || !strings.Contains(body, "<title>400 The plain HTTP request was sent to HTTPS port</title>") {
			t.Errorf("plain HTTP: %d %q", code, body)
		}
	})
	t.Run("keepalive requests on one connection", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: s.ca.Pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		// Pipelined: the second request sits in crypto/tls's buffers behind the first.
		io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: a.test\r\n\r\nGET /vars HTTP/1.1\r\nHost: a.test\r\n\r\n")
		for i := 0; i < 2; i++ {
			if code, _ := readHTTP(t, br); code != 200 {
				t.Fatalf("pipelined request %d: %d", i, code)
			}
		}
		for i := 0; i < 20; i++ {
			io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: a.test\r\n\r\n")
			if code, body := readHTTP(t, br); code != 200 || body != "hello a\n" {
				t.Fatalf("request %d: %d %q", i, code, body)
			}
		}
	})
}

func TestTLSWithCurlAndOpenSSL(t *testing.T) {
	for _, tool := range []string{"curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/test.sh installs it)", tool)
		}
	}
	s := newTLSSetup(t)
	inst := e2e.Start(t, s.conf(1, ""), nil)
	port := fmt.Sprint(inst.Port)
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader("GET /vars HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	out := run("curl", "-sS", "--max-time", "10", "--cacert", s.ca.File, "--resolve", "b.test:"+port+":127.0.0.1", "https://b.test:"+port+"/vars")
	if !strings.HasPrefix(out, "b|on|https|TLSv1.3|") || !strings.Contains(out, "|b.test|.|NONE|") {
		t.Errorf("curl to b.test: %q", out)
	}
	out = run("curl", "-sS", "--max-time", "10", "--cacert", s.ca.File, "--resolve", "a.test:"+port+":127.0.0.1", "--tlsv1.2", "--tls-max", "1.2", "https://a.test:"+port+"/vars")
	if !strings.HasPrefix(out, "a|on|https|TLSv1.2|ECDHE-ECDSA-") {
		t.Errorf("curl with TLS 1.2 to a.test: %q", out)
	}
	out = run("openssl", "s_client", "-quiet", "-connect", "127.0.0.1:"+port, "-servername", "b.test", "-CAfile", s.ca.File, "-verify_return_error")
	if !strings.Contains(out, "b|on|https|TLSv1.3|") {
		t.Errorf("openssl s_client: %q", out)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	s := newTLSSetup(t)
	bad := strings.Replace(s.conf(1, ""), s.bECKey, "/nonexistent/b.key", 1)
	out, code := e2e.StartFailing(t, bad)
	if code == 0 || !strings.Contains(out, "spindle.hcl:") || !strings.Contains(out, "/nonexistent/b.key") {
		t.Errorf("a missing key file: exit %d\n%s", code, out)
	}
	noCert := strings.Replace(s.conf(1, ""), `ssl_certificate        = "`+s.bEC+`"`, "", 1)
	noCert = strings.Replace(noCert, `ssl_certificate_key    = "`+s.bECKey+`"`, "", 1)
	out, code = e2e.StartFailing(t, noCert)
	if code == 0 || !strings.Contains(out, "no ssl_certificate is defined") {
		t.Errorf("a TLS server without a certificate: exit %d\n%s", code, out)
	}
}
