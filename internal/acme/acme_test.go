package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/pebble"
)

// answers is a Challenger that serves HTTP-01 on one port and TLS-ALPN-01 on another,
// as spindle's workers do, and counts what it was asked to serve.
type answers struct {
	mu       sync.Mutex
	http     map[string]string
	alpn     map[string]*tls.Certificate
	served   map[string]int
	presents int
}

func serveAnswers(t *testing.T, c *pebble.CA) *answers {
	a := &answers{http: map[string]string{}, alpn: map[string]*tls.Certificate{}, served: map[string]int{}}
	hl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", c.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		body, ok := a.http[strings.TrimPrefix(r.URL.Path, HTTP01Prefix)]
		if ok {
			a.served[HTTP01]++
		}
		a.mu.Unlock()
		if !ok || !strings.HasPrefix(r.URL.Path, HTTP01Prefix) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	})}
	go hs.Serve(hl)
	t.Cleanup(func() { hs.Close() })
	tl, err := tls.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", c.TLSPort), &tls.Config{
		NextProtos: []string{ALPNProto},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			if cert := a.alpn[h.ServerName]; cert != nil && len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == ALPNProto {
				a.served[TLSALPN01]++
				return cert, nil
			}
			return nil, fmt.Errorf("no answer for %q", h.ServerName)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			conn, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				conn.(*tls.Conn).Handshake()
				conn.Close()
			}()
		}
	}()
	t.Cleanup(func() { tl.Close() })
	return a
}

func (a *answers) Present(ch Challenge) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.presents++
	switch ch.Type {
	case HTTP01:
		a.http[ch.Token] = ch.KeyAuth
	case TLSALPN01:
		a.alpn[ch.Domain] = ch.Cert
	}
	return nil
}

func (a *answers) CleanUp(ch Challenge) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.http, ch.Token)
	delete(a.alpn, ch.Domain)
}

func (a *answers) count(typ string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.served[typ]
}

func newManager(t *testing.T, c *pebble.CA, a *answers, dir string, challenges ...string) *Manager {
	t.Helper()
	m, err := New(Config{
		DirectoryURL: c.Directory, Email: "ops@spindle.test", Dir: dir, Challenges: challenges,
		Challenger: a, HTTPClient: c.Client, RetryMin: 100 * time.Millisecond, RetryMax: 400 * time.Millisecond,
		Logf: func(level, format string, args ...any) { t.Logf(level+": "+format, args...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func verify(t *testing.T, c *pebble.CA, cert *tls.Certificate, names ...string) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(ic)
	}
	for _, n := range names {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: c.Roots(t), Intermediates: inter}); err != nil {
			t.Errorf("certificate for %s does not verify against pebble's root: %v", n, err)
		}
	}
}

func TestObtainHTTP01AndTLSALPN01(t *testing.T) {
	c := pebble.Start(t, 24*time.Hour)
	a := serveAnswers(t, c)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	m := newManager(t, c, a, dir, HTTP01)
	cert, err := m.Obtain(ctx, []string{"www.spindle.test", "spindle.test"})
	if err != nil {
		t.Fatal(err)
	}
	verify(t, c, cert, "www.spindle.test", "spindle.test")
	if a.count(HTTP01) == 0 || a.count(TLSALPN01) != 0 {
		t.Errorf("answers served: %v", a.served)
	}
	// The certificate and the account key are stored, 0600, and load back.
	for _, f := range []string{"account.key", "certificates/www.spindle.test/cert.pem", "certificates/www.spindle.test/key.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, st, err)
		}
	}
	loaded, err := m.Load([]string{"www.spindle.test", "spindle.test"})
	if err != nil || loaded.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) != 0 {
		t.Errorf("Load: %v", err)
	}
	if _, err := m.Load([]string{"www.spindle.test", "other.spindle.test"}); err == nil {
		t.Error("Load returned a certificate that does not cover every name")
	}

	// TLS-ALPN-01 through the same account (a second manager reads the stored key).
	m2 := newManager(t, c, a, dir, TLSALPN01)
	cert2, err := m2.Obtain(ctx, []string{"alpn.spindle.test"})
	if err != nil {
		t.Fatal(err)
	}
	verify(t, c, cert2, "alpn.spindle.test")
	if a.count(TLSALPN01) == 0 {
		t.Errorf("no TLS-ALPN-01 answer was served: %v", a.served)
	}
}

// switchable answers the CA's challenges, or refuses them (as when no worker could take
// the answer) while fail is set.
type switchable struct {
	*answers
	fail atomic.Bool
}

func (s *switchable) Present(ch Challenge) error {
	if s.fail.Load() {
		return fmt.Errorf("no listener took the answer")
	}
	return s.answers.Present(ch)
}

// Maintain obtains a certificate, renews it when due, keeps the old one while
// renewals fail (retried with backoff) and delivers the new one once one succeeds.
func TestMaintainRenewsRetriesAndKeepsOld(t *testing.T) {
	c := pebble.Start(t, time.Hour)
	ch := &switchable{answers: serveAnswers(t, c)}
	var mu sync.Mutex
	var failures []time.Time
	m, err := New(Config{
		DirectoryURL: c.Directory, Dir: t.TempDir(), Challenger: ch, HTTPClient: c.Client,
		RetryMin: 200 * time.Millisecond, RetryMax: 400 * time.Millisecond,
		// Renew a second after issuance instead of after 40 minutes.
		RenewAt: func(*x509.Certificate) time.Time { return time.Now().Add(time.Second) },
		Logf: func(level, format string, args ...any) {
			t.Logf(level+": "+format, args...)
			if level == "error" {
				mu.Lock()
				failures = append(failures, time.Now())
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := make(chan *tls.Certificate, 10)
	done := make(chan struct{})
	go func() {
		m.Maintain(ctx, []string{"renew.spindle.test"}, func(c *tls.Certificate) { got <- c })
		close(done)
	}()
	next := func() *tls.Certificate {
		select {
		case c := <-got:
			return c
		case <-ctx.Done():
			t.Fatal("no certificate delivered")
			return nil
		}
	}
	first := next()
	ch.fail.Store(true)
	if !e2e.WaitFor(20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(failures) >= 4 }) {
		t.Fatal("failed renewals were not retried")
	}
	select {
	case <-got:
		t.Fatal("a failed renewal delivered a certificate")
	default:
	}
	mu.Lock()
	// Backoff: 200 ms, then 400 ms, then capped at 400 ms.
	if d := failures[1].Sub(failures[0]); d < 180*time.Millisecond {
		t.Errorf("first retry after %s, want about 200ms", d)
	}
	if d := failures[2].Sub(failures[1]); d < 350*time.Millisecond {
		t.Errorf("second retry after %s, want about 400ms", d)
	}
	mu.Unlock()
	ch.fail.Store(false)
	second := next()
	if first.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) == 0 {
		t.Fatal("the renewal delivered the same certificate")
	}
	verify(t, c, second, "renew.spindle.test")
	cancel()
	<-done
}

// A stored certificate that is not due is delivered at once, without the CA.
func TestMaintainDeliversStored(t *testing.T) {
	c := pebble.Start(t, time.Hour)
	a := serveAnswers(t, c)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cert, err := newManager(t, c, a, dir).Obtain(ctx, []string{"stored.spindle.test"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{DirectoryURL: "https://127.0.0.1:1/dir", Dir: dir, Challenger: a})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *tls.Certificate, 1)
	done := make(chan struct{})
	go func() {
		m.Maintain(ctx, []string{"stored.spindle.test"}, func(c *tls.Certificate) { got <- c })
		close(done)
	}()
	select {
	case c := <-got:
		if c.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) != 0 {
			t.Error("delivered another certificate than the stored one")
		}
	case <-ctx.Done():
		t.Fatal("the stored certificate was not delivered")
	}
	cancel()
	<-done
}

func TestConfigChecks(t *testing.T) {
	for _, cfg := range []Config{
		{Dir: "x", Challenger: &answers{}},
		{DirectoryURL: "https://x/dir", Challenger: &answers{}},
		{DirectoryURL: "https://x/dir", Dir: "x"},
		{DirectoryURL: "https://x/dir", Dir: "x", Challenger: &answers{}, Challenges: []string{"dns-01"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
