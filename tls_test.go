package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
    location "= /cert" { return = { code = 200, body = "${ssl_client_cert}" } }
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
		if _, pemTabbed, _ := tlsGet(t, addr, "b.test", "/cert", cfg); !strings.HasPrefix(pemTabbed, "-----BEGIN CERTIFICATE-----\n\t") ||
			!strings.HasSuffix(pemTabbed, "\n\t-----END CERTIFICATE-----") {
			t.Errorf("$ssl_client_cert: %q", pemTabbed)
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
	static := t.TempDir()
	page := strings.Repeat("0123456789abcdef", 200<<10/16) // 200 KB: above sendfile's threshold
	if err := os.WriteFile(filepath.Join(static, "page.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	inst := e2e.Start(t, s.conf(1, fmt.Sprintf(`client_max_body_size = "4m"
    client_body_buffer_size = "4m" # request_body is empty for a body in a file, as nginx's
    location "/static/" { alias = "%s/" }
    location "= /upload" {
      # request_body is empty when the body went to a file, as nginx's: keep it in memory.
      client_body_buffer_size = "2m"
      echo_read_request_body = true
      echo                   = "${content_length} ${request_body}"
    }`, static)), nil)
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
	// A static file goes through crypto/tls (no sendfile), and a large body comes in
	// as 16 KB records read by the request's coroutine.
	out = run("curl", "-sS", "--max-time", "20", "--cacert", s.ca.File, "--resolve", "a.test:"+port+":127.0.0.1", "https://a.test:"+port+"/static/page.html")
	if out != page {
		t.Errorf("a 200 KB static file over TLS: %d bytes, want %d", len(out), len(page))
	}
	body := strings.Repeat("x", 1<<20)
	bodyFile := filepath.Join(static, "body")
	if err := os.WriteFile(bodyFile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out = run("curl", "-sS", "--max-time", "20", "--cacert", s.ca.File, "--resolve", "a.test:"+port+":127.0.0.1", "--data-binary", "@"+bodyFile, "https://a.test:"+port+"/upload")
	if out != fmt.Sprint(len(body))+" "+body+"\n" {
		t.Errorf("a 1 MB request body over TLS: got %d bytes back", len(out))
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

// Reloads and binary upgrades lose no TLS request, on keepalive connections and with a
// new connection (a resumed handshake) per request.
func TestTLSReloadsAndUpgradesUnderLoad(t *testing.T) {
	s := newTLSSetup(t)
	bin := e2e.CopyBinary(t, t.TempDir())
	inst := e2e.Start(t, s.conf(2, ""), &e2e.Options{Bin: bin})
	client := &tls.Config{ServerName: "a.test", RootCAs: s.ca.Pool, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	keep := e2e.StartTLSLoad(inst.Addr(), "/hello", 12, true, client)
	fresh := e2e.StartTLSLoad(inst.Addr(), "/hello", 4, false, client)
	for i := 1; i <= 10; i++ {
		inst.WriteConfig(s.conf(2, fmt.Sprintf("# generation %d", i)))
		if out, code := inst.Spindle("-s", "reload"); code != 0 {
			t.Fatalf("reload %d: exit %d: %s", i, code, out)
		}
		// Each generation answers requests before the next reload: what is under test
		// is traffic across reloads, not reloads back to back.
		served := keep.Answered()
		if !e2e.WaitFor(10*time.Second, func() bool { return keep.Answered() >= served+20 }) {
			t.Fatalf("reload %d: the load is not answered", i)
		}
	}
	for i := 1; i <= 2; i++ {
		old := inst.MasterPid()
		e2e.CopyBinary(t, filepath.Dir(bin))
		if out, code := inst.Spindle("-s", "upgrade"); code != 0 {
			t.Fatalf("upgrade %d: exit %d: %s\n%s", i, code, out, inst.ErrorLog())
		}
		if !e2e.WaitFor(15*time.Second, func() bool { return !e2e.Alive(old) }) {
			t.Fatalf("upgrade %d: old master %d still running", i, old)
		}
	}
	// The last generation answers the load too: traffic after an upgrade is under
	// test, not only traffic during one.
	served := keep.Answered()
	if !e2e.WaitFor(10*time.Second, func() bool { return keep.Answered() >= served+100 }) {
		t.Fatalf("the load is not answered after the upgrades")
	}
	res, resFresh := keep.Stop(), fresh.Stop()
	t.Logf("10 reloads and 2 upgrades over TLS, keepalive: %v", res)
	t.Logf("10 reloads and 2 upgrades over TLS, new connection per request: %v", resFresh)
	if res.Failed != 0 || resFresh.Failed != 0 {
		t.Errorf("failed TLS requests: %v / %v", res, resFresh)
	}
	if res.Requests < 500 || resFresh.Requests < 50 {
		t.Errorf("too few TLS requests served: %v / %v", res, resFresh)
	}
}

// A reload with a certificate that does not load fails with the directive's position
// and the running configuration keeps serving.
func TestTLSReloadWithBadCertificateKeepsServing(t *testing.T) {
	s := newTLSSetup(t)
	inst := e2e.Start(t, s.conf(1, ""), nil)
	if err := os.WriteFile(filepath.Join(inst.Prefix, "broken.crt"), []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inst.WriteConfig(strings.Replace(s.conf(1, ""), `ssl_certificate        = "`+s.bEC+`"`, `ssl_certificate        = "broken.crt"`, 1))
	out, code := inst.Spindle("-s", "reload")
	want := filepath.Join(inst.Prefix, "conf/spindle.hcl") + ":18,30: ssl_certificate \"broken.crt\""
	if code == 0 || !strings.Contains(out, want) {
		t.Errorf("reload with a broken certificate: exit %d, output %q, want %q", code, out, want)
	}
	code2, body, _ := tlsGet(t, inst.Addr(), "b.test", "/vars", &tls.Config{ServerName: "b.test", RootCAs: s.ca.Pool})
	if code2 != 200 || !strings.HasPrefix(body, "b|on|") {
		t.Errorf("after the failed reload: %d %q", code2, body)
	}
}

// ssl_verify_client on: a request without a certificate gets nginx's 400 page for its
// 496; one with a certificate from the CA is served.
func TestTLSVerifyClientOn(t *testing.T) {
	s := newTLSSetup(t)
	inst := e2e.Start(t, strings.Replace(s.conf(1, ""), `ssl_verify_client      = "optional"`, `ssl_verify_client      = "on"`, 1), nil)
	cfg := &tls.Config{ServerName: "b.test", RootCAs: s.ca.Pool}
	code, body, _ := tlsGet(t, inst.Addr(), "b.test", "/vars", cfg)
	if code != 400 || !strings.Contains(body, "No required SSL certificate was sent") {
		t.Errorf("no certificate: %d %q", code, body)
	}
	cfg.Certificates = []tls.Certificate{s.client}
	code, body, _ = tlsGet(t, inst.Addr(), "b.test", "/vars", cfg)
	if code != 200 || !strings.Contains(body, "|SUCCESS|CN=alice,") {
		t.Errorf("with a certificate: %d %q", code, body)
	}
}

// resumeConf serves /who with the worker's pid and whether the session was resumed.
func (s *tlsSetup) resumeConf(workers int, extra string) string {
	return fmt.Sprintf(`
worker_processes        = %d
worker_shutdown_timeout = "10s"
error_log               = { path = "logs/error.log", level = "info" }
http {
  server {
    listen              = ["127.0.0.1:{{PORT}} ssl"]
    server_name         = ["a.test"]
    ssl_certificate     = "%s"
    ssl_certificate_key = "%s"
    %s
    location "= /who" { return = { code = 200, body = "${pid}|${ssl_session_reused}" } }
  }
}
`, workers, s.aEC, s.aECKey, extra)
}

// who makes a new TLS connection and returns the worker's pid and $ssl_session_reused.
func who(t *testing.T, addr string, cfg *tls.Config) (pid, reused string) {
	t.Helper()
	code, body, cs := tlsGet(t, addr, "a.test", "/who", cfg)
	p, r, _ := strings.Cut(body, "|")
	if code != 200 || (r == "r") != cs.DidResume {
		t.Fatalf("/who: %d %q, the client resumed: %v", code, body, cs.DidResume)
	}
	return p, r
}

// A session ticket issued by one worker resumes on the other, and on the workers of the
// next generation after a reload, and after a binary upgrade.
func TestTLSSessionResumesAcrossWorkersReloadsAndUpgrades(t *testing.T) {
	s := newTLSSetup(t)
	bin := e2e.CopyBinary(t, t.TempDir())
	inst := e2e.Start(t, s.resumeConf(2, ""), &e2e.Options{Bin: bin})
	cfg := &tls.Config{ServerName: "a.test", RootCAs: s.ca.Pool, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	prev, _ := who(t, inst.Addr(), cfg)
	crossed := map[string]bool{}
	for i := 0; i < 300 && len(crossed) < 2; i++ {
		pid, reused := who(t, inst.Addr(), cfg)
		if reused != "r" {
			t.Fatalf("connection %d (worker %s, ticket from worker %s) was not resumed", i, pid, prev)
		}
		if pid != prev {
			crossed[pid] = true // resumed with the other worker's ticket
		}
		prev = pid
	}
	if len(crossed) < 2 {
		t.Fatalf("resumption across workers seen on %d of 2 workers", len(crossed))
	}

	master := inst.MasterPid()
	before := fmt.Sprint(e2e.Workers(master))
	inst.WriteConfig(s.resumeConf(2, "# reloaded"))
	if out, code := inst.Spindle("-s", "reload"); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	if !e2e.WaitFor(15*time.Second, func() bool { w := e2e.Workers(master); return len(w) == 2 && fmt.Sprint(w) != before }) {
		t.Fatalf("the reload's workers did not replace %s", before)
	}
	if pid, reused := who(t, inst.Addr(), cfg); reused != "r" {
		t.Errorf("after a reload, worker %s did not resume a ticket of the previous generation", pid)
	}

	e2e.CopyBinary(t, filepath.Dir(bin))
	if out, code := inst.Spindle("-s", "upgrade"); code != 0 {
		t.Fatalf("upgrade: %d %s", code, out)
	}
	if !e2e.WaitFor(15*time.Second, func() bool { return !e2e.Alive(master) }) {
		t.Fatalf("the old master %d did not exit", master)
	}
	if pid, reused := who(t, inst.Addr(), cfg); reused != "r" {
		t.Errorf("after a binary upgrade, worker %s did not resume a ticket of the old master's workers", pid)
	}
}

// ssl_session_tickets off issues none; ssl_session_ticket_key files give two spindle
// instances the same keys (ssl_session_timeout: TestTLSSessionTimeoutFromCreation).
func TestTLSSessionTicketSettings(t *testing.T) {
	s := newTLSSetup(t)
	newCfg := func() *tls.Config {
		return &tls.Config{ServerName: "a.test", RootCAs: s.ca.Pool, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	}
	off := e2e.Start(t, s.resumeConf(1, "ssl_session_tickets = false"), nil)
	cfg := newCfg()
	who(t, off.Addr(), cfg)
	if _, reused := who(t, off.Addr(), cfg); reused != "." {
		t.Errorf("ssl_session_tickets off: a session resumed")
	}

	key := filepath.Join(t.TempDir(), "ticket.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 80)), 0o600); err != nil {
		t.Fatal(err)
	}
	withKey := s.resumeConf(1, fmt.Sprintf(`ssl_session_ticket_key = ["%s"]`, key))
	a, b := e2e.Start(t, withKey, nil), e2e.Start(t, withKey, nil)
	cfg = newCfg()
	who(t, a.Addr(), cfg)
	if _, reused := who(t, b.Addr(), cfg); reused != "r" {
		t.Errorf("ssl_session_ticket_key: another instance with the same key file did not resume")
	}
	other := e2e.Start(t, s.resumeConf(1, ""), nil)
	who(t, a.Addr(), cfg)
	if _, reused := who(t, other.Addr(), cfg); reused != "." {
		t.Errorf("an instance with its own keys resumed a ticket of the key file's")
	}

}

// ssl_session_timeout counts from the session's creation, as OpenSSL counts it for
// nginx: a TLS 1.2 session resumed every 100 ms stops resuming when it ends, though
// every resumption brings a new ticket; a TLS 1.3 resumption makes a new session with
// a new ticket, so a client that keeps using the newest one keeps resuming (as with
// nginx: measured with openssl s_client -sess_in/-sess_out against nginx 1.22, both
// versions), while a client that offers its first ticket again is refused when it ends.
// createdAt is in whole seconds: a session of 2 s resumes for 1 to 2 s.
func TestTLSSessionTimeoutFromCreation(t *testing.T) {
	s := newTLSSetup(t)
	const timeout = 2 * time.Second
	inst := e2e.Start(t, s.resumeConf(1, `ssl_session_timeout = "2s"`), nil)
	run := func(t *testing.T, version uint16, cache tls.ClientSessionCache, slides bool) {
		t.Parallel()
		cfg := &tls.Config{ServerName: "a.test", RootCAs: s.ca.Pool, MaxVersion: version, ClientSessionCache: cache}
		start := time.Now()
		if _, reused := who(t, inst.Addr(), cfg); reused != "." {
			t.Fatal("the first connection resumed")
		}
		pace := time.NewTicker(100 * time.Millisecond)
		defer pace.Stop()
		resumed := 0
		for {
			<-pace.C
			_, reused := who(t, inst.Addr(), cfg)
			age := time.Since(start)
			switch {
			case reused == "r" && !slides && age > timeout+time.Second:
				t.Fatalf("resumed %v after the session's full handshake (ssl_session_timeout %v)", age, timeout)
			case reused == "r" && slides && age > timeout+time.Second:
				return // resumed all along, past the first session's end
			case reused == "r":
				resumed++
			case slides:
				t.Fatalf("a full handshake %v after the first, after %d resumptions: the session's newest ticket was refused", age, resumed)
			case age < timeout-time.Second:
				t.Fatalf("a full handshake %v after the first (ssl_session_timeout %v): the session ended early", age, timeout)
			default:
				t.Logf("the session resumed %d times, the next connection %v after its creation made a new one", resumed, age)
				return
			}
		}
	}
	t.Run("TLS1.2", func(t *testing.T) { run(t, tls.VersionTLS12, tls.NewLRUClientSessionCache(4), false) })
	t.Run("TLS1.3/FirstTicket", func(t *testing.T) { run(t, tls.VersionTLS13, &firstTicket{}, false) })
	t.Run("TLS1.3/NewestTicket", func(t *testing.T) { run(t, tls.VersionTLS13, tls.NewLRUClientSessionCache(4), true) })
}

// firstTicket is a client session cache that keeps the first session it is given:
// every resumption offers that one ticket, whatever the server sent since.
type firstTicket struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (f *firstTicket) Get(string) (*tls.ClientSessionState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cs, f.cs != nil
}

func (f *firstTicket) Put(_ string, cs *tls.ClientSessionState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cs == nil {
		f.cs = cs
	}
}

// More of the TLS settings and paths: a WebSocket proxied from a TLS connection (the
// connection leaves the loop with crypto/tls's state), OCSP stapling from a file,
// ssl_protocols, $ssl_client_cert, TLS 1.2 session resumption.
func TestTLSTunnelStaplingProtocols(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				buf := make([]byte, 4096)
				for {
					n, err := br.Read(buf)
					if n > 0 {
						c.Write([]byte(strings.ToUpper(string(buf[:n]))))
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	s := newTLSSetup(t)
	staple := filepath.Join(t.TempDir(), "ocsp.der")
	if err := os.WriteFile(staple, []byte("an OCSP response, as far as the client knows"), 0o600); err != nil {
		t.Fatal(err)
	}
	inst := e2e.Start(t, s.conf(1, fmt.Sprintf(`ssl_stapling_file = "%s"
    ssl_protocols     = ["TLSv1.3"]
    client_header_timeout = "1s"
    location "/ws" { proxy_pass = "http://%s" }`, staple, backend.Addr())), nil)
	cfg := &tls.Config{ServerName: "a.test", RootCAs: s.ca.Pool}

	c, err := tls.Dial("tcp", inst.Addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if string(c.ConnectionState().OCSPResponse) != "an OCSP response, as far as the client knows" {
		t.Errorf("stapled OCSP response: %q", c.ConnectionState().OCSPResponse)
	}
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Fatalf("upgrade over TLS: %q", line)
	}
	for {
		if line, err := br.ReadString('\n'); err != nil || line == "\r\n" {
			break
		}
	}
	for _, msg := range []string{"hello", "over tls"} {
		io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != strings.ToUpper(msg) {
			t.Fatalf("tunnel over TLS: %q, %v", got, err)
		}
	}

	// A client that connects and never starts its handshake is closed after
	// client_header_timeout (1 s here: the wait is what is under test).
	silent, err := net.Dial("tcp", inst.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	n, err := silent.Read(make([]byte, 1))
	t.Logf("a silent client was closed after %v", time.Since(start))
	if err != io.EOF || time.Since(start) > 5*time.Second {
		t.Errorf("a silent client: read %d, %v after %v (want the server's close after about 1 s)", n, err, time.Since(start))
	}

	old := &tls.Config{ServerName: "a.test", RootCAs: s.ca.Pool, MaxVersion: tls.VersionTLS12}
	if c, err := tls.Dial("tcp", inst.Addr(), old); err == nil {
		c.Close()
		t.Errorf("ssl_protocols TLSv1.3: a TLS 1.2 client was served")
	}

	// b.test: TLS 1.2 with tickets, and the client certificate as a variable.
	code, body, _ := tlsGet(t, inst.Addr(), "b.test", "/vars", &tls.Config{ServerName: "b.test", RootCAs: s.ca.Pool,
		MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{s.client}})
	if code != 200 || !strings.Contains(body, "|TLSv1.2|") {
		t.Errorf("TLS 1.2 on b.test: %d %q", code, body)
	}
	two := &tls.Config{ServerName: "b.test", RootCAs: s.ca.Pool, MaxVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	tlsGet(t, inst.Addr(), "b.test", "/vars", two)
	if _, body, cs := tlsGet(t, inst.Addr(), "b.test", "/vars", two); !cs.DidResume || !strings.Contains(body, "|r|") {
		t.Errorf("TLS 1.2 resumption: resumed %v, %q", cs.DidResume, body)
	}
}

// Workers that drop root still load a private key only root can read: the
// configuration is built before the privileges go, as nginx's master reads keys.
func TestTLSKeyReadableByRootOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	s := newTLSSetup(t)
	for _, f := range []string{s.aECKey, s.aRKey, s.bECKey} {
		os.Chmod(f, 0o600)
	}
	inst := e2eStartWithMode(t, strings.Replace(s.conf(2, ""), "worker_processes", "user = \"nobody\"\nworker_processes", 1))
	for _, w := range e2e.Workers(inst.MasterPid()) {
		if uid := procUID(w); uid != 65534 {
			t.Errorf("worker %d uid %d, want 65534 (nobody)", w, uid)
		}
	}
	if code, body, _ := tlsGet(t, inst.Addr(), "a.test", "/hello", &tls.Config{ServerName: "a.test", RootCAs: s.ca.Pool}); code != 200 || body != "hello a\n" {
		t.Errorf("GET /hello: %d %q", code, body)
	}
}
