// Package pebble runs Let's Encrypt's test ACME server, pebble, with
// pebble-challtestsrv as its DNS server, on loopback for tests: internal/acme's
// protocol tests and the end-to-end tests of a spindle that obtains its certificates.
// Both programs are go.mod's tool dependencies, built once per test process.
package pebble

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

var (
	toolsOnce sync.Once
	toolsDir  string
	toolsErr  error
)

// tools builds pebble and pebble-challtestsrv once per test process.
func tools(t testing.TB) string {
	t.Helper()
	toolsOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if toolsDir, toolsErr = os.MkdirTemp("", "spindle-pebble-"); toolsErr != nil {
			return
		}
		for _, p := range []string{"pebble", "pebble-challtestsrv"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(toolsDir, p), "github.com/letsencrypt/pebble/v2/cmd/"+p)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				toolsErr = fmt.Errorf("go build %s: %v\n%s", p, err, out)
				return
			}
		}
	})
	if toolsErr != nil {
		t.Fatal(toolsErr)
	}
	return toolsDir
}

// CA is a pebble ACME server on loopback that resolves every name to 127.0.0.1
// through a pebble-challtestsrv DNS server, and validates HTTP-01 on HTTPPort and
// TLS-ALPN-01 on TLSPort.
type CA struct {
	Directory         string
	HTTPPort, TLSPort int
	// Client trusts pebble's own listener (RootFile).
	Client *http.Client
	// RootFile is the PEM certificate of pebble's listener, to trust the directory.
	RootFile string
	mgmt     string
	stop     func()
}

// Start runs pebble, issuing certificates valid for validity; the test's cleanup
// stops it.
func Start(t testing.TB, validity time.Duration) *CA {
	t.Helper()
	bin := tools(t)
	dir := t.TempDir()
	certPEM, keyPEM := SelfSigned(t, "127.0.0.1")
	c := &CA{HTTPPort: e2e.FreePort(t), TLSPort: e2e.FreePort(t), RootFile: filepath.Join(dir, "cert.pem")}
	os.WriteFile(c.RootFile, certPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600)
	dnsPort, listen, mgmt := e2e.FreePort(t), e2e.FreePort(t), e2e.FreePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", listen),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":             filepath.Join(dir, "cert.pem"),
		"privateKey":              filepath.Join(dir, "key.pem"),
		"httpPort":                c.HTTPPort,
		"tlsPort":                 c.TLSPort,
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles": map[string]any{"default": map[string]any{
			"description": "test", "validityPeriod": int(validity.Seconds())}},
	}}
	b, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(dir, "pebble.json"), b, 0o600)

	var stops []func()
	run := func(name string, env []string, args ...string) {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Env = append(os.Environ(), env...)
		var out strings.Builder
		var mu sync.Mutex
		w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cmd.Process.Kill()
				cmd.Wait()
			})
		}
		stops = append(stops, stop)
		t.Cleanup(func() {
			stop()
			if t.Failed() {
				mu.Lock()
				t.Logf("%s output:\n%s", name, out.String())
				mu.Unlock()
			}
		})
	}
	run("pebble-challtestsrv", nil, "-http01", "", "-https01", "", "-doh", "", "-tlsalpn01", "",
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort), "-management", fmt.Sprintf("127.0.0.1:%d", e2e.FreePort(t)),
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	run("pebble", []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		"-config", filepath.Join(dir, "pebble.json"), "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	c.stop = func() {
		for _, s := range stops {
			s()
		}
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c.Client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	c.Directory = fmt.Sprintf("https://127.0.0.1:%d/dir", listen)
	c.mgmt = fmt.Sprintf("https://127.0.0.1:%d", mgmt)
	if !e2e.WaitFor(10*time.Second, func() bool {
		resp, err := c.Client.Get(c.Directory)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}) {
		t.Fatal("pebble did not come up")
	}
	return c
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Stop stops pebble before the test ends: its directory stops answering.
func (c *CA) Stop() { c.stop() }

// Roots returns the pool of pebble's issuing roots, to verify what it issued. (pebble
// makes a new root at every start.)
func (c *CA) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	resp, err := c.Client.Get(c.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no root from pebble: %q", b)
	}
	return pool
}

// SelfSigned makes a self-signed ECDSA certificate for host (an IP address).
func SelfSigned(t testing.TB, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(host)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}
