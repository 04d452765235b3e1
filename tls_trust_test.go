package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
)

// TestTLSTrustedCertificate: ssl_client_certificate's CAs verify client certificates
// and are named in the CertificateRequest; ssl_trusted_certificate's verify them too
// but are not named (nginx's difference, checked with Go's client and openssl
// s_client); ssl_dhparam is read, checked and not used, with a notice.
func TestTLSTrustedCertificate(t *testing.T) {
	s := newTLSSetup(t)
	dir := t.TempDir()
	trusted := e2e.NewCA(t, dir, "trusted")
	_, _, viaTrusted := trusted.Issue("bob", e2e.ECDSA, true, "bob")
	dh := filepath.Join(dir, "dhparam.pem")
	if out, err := exec.Command("openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "dh_param:ffdhe2048", "-out", dh).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v %s", err, out)
	}
	inst := e2e.Start(t, fmt.Sprintf(`
error_log = { path = "logs/error.log", level = "notice" }
http {
  server {
    listen                  = ["127.0.0.1:{{PORT}} ssl"]
    server_name             = ["b.test"]
    ssl_certificate         = %q
    ssl_certificate_key     = %q
    ssl_client_certificate  = %q
    ssl_trusted_certificate = %q
    ssl_verify_client       = "optional"
    ssl_dhparam             = %q
    location "/" { return = { code = 200, body = "${ssl_client_verify} ${ssl_client_s_dn}" } }
  }
}
`, s.bEC, s.bECKey, s.ca.File, trusted.File, dh), nil)
	addr := inst.Addr()

	var named []string
	get := func(cert *tls.Certificate) (int, string) {
		cfg := &tls.Config{ServerName: "b.test", RootCAs: s.ca.Pool,
			GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
				named = named[:0]
				for _, dn := range cri.AcceptableCAs {
					named = append(named, string(dn))
				}
				if cert == nil {
					return &tls.Certificate{}, nil
				}
				return cert, nil
			}}
		code, body, _ := tlsGet(t, addr, "b.test", "/", cfg)
		return code, body
	}
	if code, got := get(&viaTrusted); code != 200 || got != "SUCCESS CN=bob,O=spindle tests" {
		t.Errorf("a certificate of the trusted CA: %d %q", code, got)
	}
	if len(named) != 1 || !strings.Contains(named[0], "ca") || strings.Contains(named[0], "trusted") {
		t.Errorf("the CertificateRequest names %q, want the ssl_client_certificate CA only", named)
	}
	if code, got := get(&s.client); code != 200 || got != "SUCCESS CN=alice,O=spindle tests" {
		t.Errorf("a certificate of the client CA: %d %q", code, got)
	}
	if code, got := get(&s.stranger); code != 400 || !strings.Contains(got, "The SSL certificate error") {
		t.Errorf("a certificate of neither: %d %q", code, got)
	}

	cmd := exec.Command("openssl", "s_client", "-connect", addr, "-servername", "b.test", "-CAfile", s.ca.File)
	cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	_, cas, _ := strings.Cut(string(out), "Acceptable client certificate CA names")
	cas, _, _ = strings.Cut(cas, "---")
	if !strings.Contains(cas, "CN = ca") || strings.Contains(cas, "trusted") {
		t.Errorf("openssl s_client's acceptable CA names: %q", cas)
	}
	if !e2e.WaitFor(5*time.Second, func() bool {
		return strings.Contains(inst.ErrorLog(), "ssl_dhparam \""+dh+"\" is not used: Go's crypto/tls has no finite-field DHE")
	}) {
		t.Errorf("no notice for ssl_dhparam:\n%s", inst.ErrorLog())
	}

	// Load errors name the directive's line.
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not PEM\n"), 0o644)
	for _, c := range []struct{ directive, want string }{
		{fmt.Sprintf("ssl_dhparam = %q", bad), "spindle.hcl:7,19: ssl_dhparam: \"" + bad + "\": no PEM \"DH PARAMETERS\" block"},
		{fmt.Sprintf("ssl_dhparam = %q", s.ca.File), "spindle.hcl:7,19: ssl_dhparam:"},
		{fmt.Sprintf("ssl_trusted_certificate = %q", bad), "spindle.hcl:7,31: ssl_trusted_certificate " + fmt.Sprintf("%q", bad) + ": no PEM certificate"},
		{`ssl_trusted_certificate = "/nonexistent.pem"`, "spindle.hcl:7,31: ssl_trusted_certificate: open /nonexistent.pem"},
	} {
		_, err := testserver.BuildString(t, fmt.Sprintf(`http {
  server {
    listen              = ["127.0.0.1:0 ssl"]
    ssl_certificate     = %q
    ssl_certificate_key = %q
    location "/" { return = 204 }
    %s
  }
}
`, s.bEC, s.bECKey, c.directive), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.directive, err, c.want)
		}
	}
}

// TestTLSVerifyDepth: ssl_verify_depth is the number of CA certificates above the
// client's, as nginx's (default 1: issued by a CA of ssl_client_certificate directly);
// a certificate issued by an intermediate, sent with it, needs 2.
func TestTLSVerifyDepth(t *testing.T) {
	s := newTLSSetup(t)
	inter := s.ca.Intermediate("intermediate")
	_, _, leaf := inter.Issue("carol", e2e.ECDSA, true, "carol")
	leaf.Certificate = append(leaf.Certificate, inter.Cert.Raw)
	srvCert, srvKey, _ := s.ca.Issue("b-both", e2e.ECDSA, false, "b.test", "b2.test")
	server := func(name string, depth int) string {
		d := ""
		if depth > 0 {
			d = fmt.Sprintf("ssl_verify_depth = %d", depth)
		}
		return fmt.Sprintf(`
  server {
    listen                 = ["127.0.0.1:{{PORT}} ssl"]
    server_name            = [%q]
    ssl_certificate        = %q
    ssl_certificate_key    = %q
    ssl_client_certificate = %q
    ssl_verify_client      = "optional"
    %s
    location "/" { return = { code = 200, body = "${ssl_client_verify}" } }
  }`, name, srvCert, srvKey, s.ca.File, d)
	}
	inst := e2e.Start(t, "http {"+server("b.test", 0)+server("b2.test", 2)+"\n}\n", nil)
	for _, c := range []struct {
		host string
		cert tls.Certificate
		code int
		want string
	}{
		{"b.test", s.client, 200, "SUCCESS"},
		{"b.test", leaf, 400, "The SSL certificate error"},
		{"b2.test", leaf, 200, "SUCCESS"},
	} {
		cfg := &tls.Config{ServerName: c.host, RootCAs: s.ca.Pool, Certificates: []tls.Certificate{c.cert}}
		code, body, _ := tlsGet(t, inst.Addr(), c.host, "/", cfg)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s with %s: %d %q", c.host, c.cert.Leaf.Subject.CommonName, code, body)
		}
	}
}
