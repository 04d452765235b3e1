package httpcore

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"
)

// The buffers an idle TLS connection gives back are found in crypto/tls's Conn by name
// and type (tls.go): this fails when a Go release moves them, so that the saving is
// not lost silently.
func TestTLSBuffersReleasable(t *testing.T) {
	if !tlsBufs.ok {
		t.Fatal("crypto/tls.Conn has no rawInput/hand bytes.Buffer or input bytes.Reader any more: update releaseTLSBuffers")
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
