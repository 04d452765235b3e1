package httpcore

import "testing"

// The buffers an idle TLS connection gives back are found in crypto/tls's Conn by name
// and type (tls.go): this fails when a Go release moves them, so that the saving is
// not lost silently.
func TestTLSBuffersReleasable(t *testing.T) {
	if !tlsBufs.ok {
		t.Fatal("crypto/tls.Conn has no rawInput/hand bytes.Buffer or input bytes.Reader any more: update releaseTLSBuffers")
	}
}
