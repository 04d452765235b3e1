package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/pebble"
	"github.com/spindle-server/spindle/master"
)

// acmeConf is a spindle whose server asks pebble for a certificate for names: plain
// HTTP on pebble's HTTP-01 port ({{PORT}}), TLS on its TLS-ALPN-01 port. Every
// location but /hello redirects to https, as a site that moved to TLS does: the
// HTTP-01 answers must be served before it.
func acmeConf(ca *pebble.CA, workers int, challenges, renewBefore string, names ...string) string {
	return fmt.Sprintf(`
worker_processes        = %d
worker_shutdown_timeout = "5s"
error_log               = { path = "logs/error.log", level = "info" }
http {
  log_format "pid" { format = "$pid $status $request" }
  access_log = "logs/access.log pid"
  acme {
    directory    = %q
    email        = "ops@spindle.test"
    challenges   = [%s]
    ca_root      = %q
    renew_before = %q
  }
  server {
    listen      = ["127.0.0.1:{{PORT}}", "127.0.0.1:%d ssl"]
    server_name = [%s]
    ssl_acme    = true
    location "/" { return = { code = 301, url = "https://${host}${request_uri}" } }
    location "= /hello" { return = { code = 200, body = "hello ${scheme}\n" } }
  }
}
`, workers, ca.Directory, challenges, ca.RootFile, renewBefore, ca.TLSPort, `"`+strings.Join(names, `", "`)+`"`)
}

// served makes a TLS handshake for name and returns the certificate spindle
// presented if it verifies against pebble's root, else nil.
func served(t *testing.T, ca *pebble.CA, roots *x509.CertPool, name string) *x509.Certificate {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", ca.TLSPort), &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// waitServed waits until spindle serves a certificate for name that verifies and
// that accept takes.
func waitServed(t *testing.T, ca *pebble.CA, roots *x509.CertPool, name string, timeout time.Duration, accept func(*x509.Certificate) bool) *x509.Certificate {
	t.Helper()
	var got *x509.Certificate
	if !e2e.WaitFor(timeout, func() bool {
		got = served(t, ca, roots, name)
		return got != nil && accept(got)
	}) {
		t.Fatalf("no certificate for %s from pebble served within %s", name, timeout)
	}
	return got
}

func anyCert(*x509.Certificate) bool { return true }

// HTTP-01 with two workers: the CA's validation requests go to whichever worker the
// kernel gives them and every worker answers (the master asked the CA to validate
// only once both had the answer), ahead of a location that redirects everything to
// https. The certificate then serves every name without a reload, and survives a
// reload (the same certificate, no new order) and a binary upgrade whose new master
// finds it in storage while the CA is down.
func TestACMEHTTP01(t *testing.T) {
	ca := pebble.Start(t, time.Hour)
	names := []string{"a.spindle.test", "b.spindle.test", "c.spindle.test", "d.spindle.test"}
	inst := e2e.Start(t, acmeConf(ca, 2, `"http-01"`, "20m", names...), &e2e.Options{Port: ca.HTTPPort})
	workers := e2e.Workers(inst.MasterPid())
	roots := ca.Roots(t)
	// Before the certificate: the handshake fails rather than present something the
	// client cannot verify (checked against any root).
	start := time.Now()
	cert := waitServed(t, ca, roots, "c.spindle.test", 60*time.Second, anyCert)
	t.Logf("a certificate for 4 names served %s after the start", time.Since(start).Round(time.Millisecond))
	for _, n := range names {
		if err := cert.VerifyHostname(n); err != nil {
			t.Errorf("the certificate does not cover %s: %v", n, err)
		}
		if c := served(t, ca, roots, n); c == nil || !c.Equal(cert) {
			t.Errorf("%s: another certificate or none", n)
		}
	}
	if got := e2e.Workers(inst.MasterPid()); fmt.Sprint(got) != fmt.Sprint(workers) {
		t.Errorf("workers changed from %v to %v: the certificate came with a reload?", workers, got)
	}
	// The validation requests were answered 200 by the workers, the redirect
	// notwithstanding; which ones, the kernel decided.
	logb, _ := os.ReadFile(filepath.Join(inst.Prefix, "logs/access.log"))
	chal := regexp.MustCompile(`(?m)^(\d+) (\d+) GET /\.well-known/acme-challenge/\S+ HTTP/1\.1$`).FindAllStringSubmatch(string(logb), -1)
	pids := map[string]int{}
	for _, m := range chal {
		if m[2] != "200" {
			t.Errorf("a validation request was answered %s", m[2])
		}
		pids[m[1]]++
	}
	if len(chal) < len(names) {
		t.Errorf("%d validation requests logged, want %d:\n%s", len(chal), len(names), logb)
	}
	t.Logf("validation requests by worker pid: %v", pids)
	// A stray token is not answered: the location's redirect applies.
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noRedirect.Get("http://" + inst.Addr() + "/.well-known/acme-challenge/nothing-open"); err != nil || resp.StatusCode != 301 {
		t.Errorf("unknown token: %v %v, want the location's 301", resp, err)
	} else {
		resp.Body.Close()
	}
	if !strings.Contains(inst.ErrorLog(), "sent to 2 worker processes") {
		t.Errorf("no delivery in the error log:\n%s", inst.ErrorLog())
	}

	// A reload keeps the certificate and its manager: no new order.
	if out, code := inst.Spindle("-s", "reload"); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	if !e2e.WaitFor(10*time.Second, func() bool {
		w := e2e.Workers(inst.MasterPid())
		for _, p := range w {
			if p == workers[0] || p == workers[1] {
				return false
			}
		}
		return len(w) == 2
	}) {
		t.Fatal("the reload did not replace the workers")
	}
	if c := served(t, ca, roots, "a.spindle.test"); c == nil || !c.Equal(cert) {
		t.Error("after the reload another certificate or none")
	}
	if n := strings.Count(inst.ErrorLog(), "acme: obtained a certificate"); n != 1 {
		t.Errorf("%d certificates obtained, want 1 (the reload restarted the manager?)", n)
	}

	// A reload that adds a name orders the new set's certificate, served without a
	// further reload; the old set's renewal stops.
	inst.WriteConfig(acmeConf(ca, 2, `"http-01"`, "20m", append(names, "e.spindle.test")...))
	if out, code := inst.Spindle("-s", "reload"); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	cert = waitServed(t, ca, roots, "e.spindle.test", 60*time.Second, anyCert)
	if c := served(t, ca, roots, "a.spindle.test"); c == nil || !c.Equal(cert) {
		t.Error("the new certificate does not serve the other names")
	}
	if n := strings.Count(inst.ErrorLog(), "acme: obtained a certificate"); n != 2 {
		t.Errorf("%d certificates obtained, want 2", n)
	}

	// An upgrade's new master serves the stored certificate, the CA being down.
	ca.Stop()
	old := inst.MasterPid()
	if out, code := inst.Spindle("-s", "upgrade"); code != 0 {
		t.Fatalf("upgrade: %d %s\n%s", code, out, inst.ErrorLog())
	}
	if inst.MasterPid() == old {
		t.Fatal("the pid file still names the old master")
	}
	if !e2e.WaitFor(10*time.Second, func() bool { return !e2e.Alive(old) }) {
		t.Fatal("the old master did not exit")
	}
	if c := served(t, ca, roots, "d.spindle.test"); c == nil || !c.Equal(cert) {
		t.Error("after the upgrade another certificate or none")
	}
}

// TLS-ALPN-01, then renewals delivered to the workers without a reload, then a
// directory that stops answering: the failure is logged with the retry time and the
// last certificate keeps serving.
func TestACMETLSALPN01RenewalAndFailure(t *testing.T) {
	ca := pebble.Start(t, time.Hour)
	// Renew 5 s after issuance (a third of the hour left would be 40 minutes).
	inst := e2e.Start(t, acmeConf(ca, 2, `"tls-alpn-01"`, "59m55s", "alpn.spindle.test"), &e2e.Options{Port: ca.HTTPPort})
	workers := e2e.Workers(inst.MasterPid())
	roots := ca.Roots(t)
	start := time.Now()
	first := waitServed(t, ca, roots, "alpn.spindle.test", 60*time.Second, anyCert)
	t.Logf("a certificate over TLS-ALPN-01 served %s after the start", time.Since(start).Round(time.Millisecond))
	if logb, _ := os.ReadFile(filepath.Join(inst.Prefix, "logs/access.log")); strings.Contains(string(logb), "acme-challenge") {
		t.Errorf("HTTP-01 was used:\n%s", logb)
	}
	// A plain client asking for another protocol still gets the served certificate,
	// and a request goes through.
	if code, body, _ := tlsGet(t, fmt.Sprintf("127.0.0.1:%d", ca.TLSPort), "alpn.spindle.test", "/hello", &tls.Config{ServerName: "alpn.spindle.test", RootCAs: roots}); code != 200 || body != "hello https\n" {
		t.Errorf("GET /hello over TLS: %d %q", code, body)
	}
	// acme-tls/1 with no challenge open fails the handshake.
	if c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ca.TLSPort), &tls.Config{ServerName: "alpn.spindle.test", NextProtos: []string{"acme-tls/1"}, InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Error("an acme-tls/1 handshake without an open challenge succeeded")
	}

	renewed := waitServed(t, ca, roots, "alpn.spindle.test", 60*time.Second, func(c *x509.Certificate) bool { return !c.Equal(first) })
	t.Logf("the renewal served %s after the first certificate was issued (due 5 s after)", time.Since(first.NotBefore).Round(time.Millisecond))
	if renewed.NotBefore.Before(first.NotBefore) {
		t.Errorf("the renewal is older than the first certificate")
	}
	if got := e2e.Workers(inst.MasterPid()); fmt.Sprint(got) != fmt.Sprint(workers) {
		t.Errorf("workers changed from %v to %v: the renewal came with a reload?", workers, got)
	}
	if strings.Contains(inst.ErrorLog(), "reconfiguring") {
		t.Error("the renewal reloaded")
	}

	ca.Stop()
	retry := regexp.MustCompile(`\[error\] .*acme: .*; retrying in 1m0s, at 20\d\d-\d\d-\d\dT`)
	if !e2e.WaitFor(30*time.Second, func() bool { return retry.MatchString(inst.ErrorLog()) }) {
		t.Fatalf("no failed renewal with its retry time in the error log:\n%s", inst.ErrorLog())
	}
	last := served(t, ca, roots, "alpn.spindle.test")
	if last == nil || last.NotAfter.Before(time.Now()) {
		t.Fatal("the last certificate is no longer served after a failed renewal")
	}
	// The failure did not replace it.
	if again := served(t, ca, roots, "alpn.spindle.test"); again == nil || !again.Equal(last) {
		t.Error("the served certificate changed after the failure")
	}
}

// Names a CA cannot validate over HTTP-01 or TLS-ALPN-01, and bad acme settings,
// stop the configuration with their position.
func TestACMEConfigErrors(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`server {
  listen = ["127.0.0.1:8443 ssl"]
  server_name = ["*.example.com"]
  ssl_acme = true
}`, `spindle.hcl:5,14: ssl_acme: server_name "*.example.com" is a wildcard`},
		{`server {
  listen = ["127.0.0.1:8443 ssl"]
  server_name = ["example.com", "~^www\\d+\\.example\\.com$"]
  ssl_acme = true
}`, `spindle.hcl:5,14: ssl_acme: server_name "~^www\\d+\\.example\\.com$" is a regular expression`},
		{`server {
  listen = ["127.0.0.1:8443 ssl"]
  server_name = [".example.com"]
  ssl_acme = true
}`, `spindle.hcl:5,14: ssl_acme: server_name ".example.com" is a wildcard`},
		{`server {
  listen = ["127.0.0.1:8443 ssl"]
  server_name = ["_", "localhost"]
  ssl_acme = true
}`, `spindle.hcl:5,14: ssl_acme: server _ has no server_name a CA can issue a certificate for`},
		{`server {
  listen = ["127.0.0.1:8080"]
  server_name = ["example.com"]
  ssl_acme = true
}`, `spindle.hcl:5,14: ssl_acme: server example.com has no listen ... ssl address`},
		{`acme {
  challenges = ["dns-01"]
}`, `spindle.hcl:3,16: unsupported challenge type "dns-01"`},
		{`acme {
  directory = "http://ca.example/dir"
}`, `spindle.hcl:2,1: acme: directory must be an https:// URL`},
		{`acme {
  ca_root = "missing.pem"
}`, `spindle.hcl:2,1: acme: ca_root: stat`},
		{`acme {
  retry = "1m"
}`, `spindle.hcl:3,3: unknown acme setting "retry"`},
		{`acme {
}
acme {
}`, `spindle.hcl:4,1: duplicate acme block`},
		{`server {
  listen = ["127.0.0.1:8080"]
  location "/" {
    ssl_acme = true
  }
}`, `ssl_acme`},
	} {
		prefix := t.TempDir()
		os.MkdirAll(filepath.Join(prefix, "conf"), 0o755)
		path := filepath.Join(prefix, "conf/spindle.hcl")
		os.WriteFile(path, []byte("http {\n"+c.body+"\n}\n"), 0o644)
		_, _, err := master.Load(prefix, path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\ngot %v\nwant %q", c.body, err, c.want)
		}
	}
}

// Until the first certificate arrives a server with ssl_acme fails the handshake for
// its names, or serves its ssl_certificate when it has one; the failed order is
// logged with its retry time.
func TestACMENoCertificateYet(t *testing.T) {
	dir := t.TempDir()
	ca := e2e.NewCA(t, dir, "ca")
	standIn, standInKey, _ := ca.Issue("standin", e2e.ECDSA, false, "b.spindle.test")
	tlsPort := e2e.FreePort(t)
	inst := e2e.Start(t, fmt.Sprintf(`
worker_processes = 1
error_log        = { path = "logs/error.log", level = "info" }
http {
  acme {
    directory = "https://127.0.0.1:%d/dir"
  }
  server {
    listen      = ["127.0.0.1:{{PORT}}", "127.0.0.1:%d ssl"]
    server_name = ["a.spindle.test"]
    ssl_acme    = true
  }
  server {
    listen              = ["127.0.0.1:%d ssl"]
    server_name         = ["b.spindle.test"]
    ssl_acme            = true
    ssl_certificate     = %q
    ssl_certificate_key = %q
    location "= /hello" { return = { code = 200, body = "hello b\n" } }
  }
}
`, e2e.FreePort(t), tlsPort, tlsPort, standIn, standInKey), nil)
	addr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	_, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.spindle.test", InsecureSkipVerify: true})
	if err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("handshake for a name without its certificate: %v, want a TLS alert", err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca.File)
	pool.AppendCertsFromPEM(pem)
	if code, body, _ := tlsGet(t, addr, "b.spindle.test", "/hello", &tls.Config{ServerName: "b.spindle.test", RootCAs: pool}); code != 200 || body != "hello b\n" {
		t.Errorf("the stand-in ssl_certificate: %d %q", code, body)
	}
	retry := regexp.MustCompile(`\[error\] .*acme: registering the account at https://127\.0\.0\.1:\d+/dir: .*; retrying in 1m0s, at `)
	if !e2e.WaitFor(20*time.Second, func() bool { return retry.MatchString(inst.ErrorLog()) }) {
		t.Errorf("no failed order with its retry time in the error log:\n%s", inst.ErrorLog())
	}
}
