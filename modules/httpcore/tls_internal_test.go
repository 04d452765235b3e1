package httpcore

import (
	"crypto/tls"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// The buffers an idle TLS connection gives back are found in crypto/tls's Conn by name
// and type (tls.go): this fails when a Go release moves them, so that the saving is
// not lost silently.
func TestTLSBuffersReleasable(t *testing.T) {
	if !tlsBufs.ok {
		t.Fatal("crypto/tls.Conn has no rawInput/hand bytes.Buffer or input bytes.Reader any more: update releaseTLSBuffers")
	}
}

// ssl_session_timeout counts from a session's creation (limitSessions), which is read
// from crypto/tls's SessionState by name and type: this fails when a Go release moves
// it, and checks, with real handshakes over a pipe, that a TLS 1.2 session resumed
// an hour later is re-wrapped with its first creation time, read alike from the field
// and from the session's encoding.
func TestSessionCreatedAt(t *testing.T) {
	if !sessionCreatedAt.ok {
		t.Error("crypto/tls.SessionState has no uint64 createdAt any more: sessionCreated encodes every session to read it")
	}
	ca := e2e.NewCA(t, t.TempDir(), "ca")
	_, _, cert := ca.Issue("srv", e2e.ECDSA, false, "srv.test")
	now := time.Now().Truncate(time.Second)
	first := now
	var issued []*tls.SessionState
	srv := &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12, Time: func() time.Time { return now }}
	srv.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		issued = append(issued, ss)
		return srv.EncryptTicket(cs, ss)
	}
	cli := &tls.Config{ServerName: "srv.test", RootCAs: ca.Pool, ClientSessionCache: tls.NewLRUClientSessionCache(1)}
	handshake := func() tls.ConnectionState {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		a.SetDeadline(time.Now().Add(10 * time.Second))
		b.SetDeadline(time.Now().Add(10 * time.Second))
		errc := make(chan error, 1)
		go func() { errc <- tls.Server(a, srv).Handshake() }()
		c := tls.Client(b, cli)
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		return c.ConnectionState()
	}
	handshake()
	now = now.Add(time.Hour)
	if !handshake().DidResume {
		t.Fatal("the second handshake did not resume")
	}
	if len(issued) != 2 {
		t.Fatalf("%d tickets issued, want 2", len(issued))
	}
	for i, ss := range issued {
		byField, ok1 := sessionCreated(ss)
		byBytes, ok2 := sessionCreatedEncoded(ss)
		if !ok1 || !ok2 || !byField.Equal(first) || !byBytes.Equal(first) {
			t.Errorf("ticket %d: created %v (%v) / %v (%v), want %v", i, byField, ok1, byBytes, ok2, first)
		}
	}
}

func TestParseCiphers(t *testing.T) {
	ids, err := parseCiphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE+CHACHA20:!aNULL:!MD5:@STRENGTH:TLS_AES_128_GCM_SHA256")
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint16]bool{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       true,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: true,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:   true,
	}
	if len(ids) != len(want) {
		t.Errorf("got %d suites, want %d: %v", len(ids), len(want), ids)
	}
	for _, id := range ids {
		if !want[id] {
			t.Errorf("unexpected suite %s", tls.CipherSuiteName(id))
		}
	}
	// "!" removes for good; "-" only until added again.
	ids, _ = parseCiphers("HIGH:!AES256:-ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
	for _, id := range ids {
		if n := cipherName(id); strings.Contains(n, "AES256") || strings.Contains(n, "DES-CBC3") {
			t.Errorf("%s selected", n)
		}
	}
	if !slices.Contains(ids, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) {
		t.Errorf("a suite removed with - and added again is missing")
	}
	for _, bad := range []string{"NO-SUCH-CIPHER", "!ALL", "RC4-SHA"} {
		if _, err := parseCiphers(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
