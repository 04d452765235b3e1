package httpcore

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Automatic certificates in a worker. The master runs the ACME protocol and sends
// what the workers must serve over the control pipe (worker/acme.go): the
// certificates it obtained, by the set of names a server's ssl_acme asks for, and the
// answers to the CA's challenges while an order is open. Whichever worker the CA's
// validation connection reaches answers it: HTTP-01 on any plain address, before a
// location runs (answerHTTP01), TLS-ALPN-01 on any TLS address, in the handshake
// (alpnConfig).
//
// Handshakes read the maps without a lock (atomic pointers to maps that are never
// changed once published); the worker's control goroutine, the only writer, copies
// them.

// acmeALPN is the ALPN protocol of TLS-ALPN-01 validations (RFC 8737).
const acmeALPN = "acme-tls/1"

// acmeHTTP01Prefix is where HTTP-01 answers are served (RFC 8555 8.3).
const acmeHTTP01Prefix = "/.well-known/acme-challenge/"

type http01Answer struct{ domain, keyAuth string }

// acmeState is what the master delivered to this worker.
type acmeState struct {
	mu    sync.Mutex                                  // writers
	certs atomic.Pointer[map[string]*tls.Certificate] // by acmeKey
	http  atomic.Pointer[map[string]http01Answer]     // by token
	alpn  atomic.Pointer[map[string]*tls.Certificate] // by domain
}

func acmeLoadMap[V any](p *atomic.Pointer[map[string]V], k string) (V, bool) {
	if m := p.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// acmeStoreMap publishes a copy of the map with k set to v (or deleted).
func acmeStoreMap[V any](p *atomic.Pointer[map[string]V], k string, v V, del bool) {
	n := map[string]V{}
	if m := p.Load(); m != nil {
		for kk, vv := range *m {
			n[kk] = vv
		}
	}
	if del {
		delete(n, k)
	} else {
		n[k] = v
	}
	p.Store(&n)
}

func acmeCert(chain [][]byte, key []byte) (*tls.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("the key cannot sign")
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: signer, Leaf: leaf}, nil
}

// SetACMECertificate makes the servers whose ssl_acme names are names serve the
// certificate (DER chain, leaf first; PKCS #8 DER key) from their next handshake on.
// Certificates for names no server asks for are ignored.
func (c *Config) SetACMECertificate(names []string, chain [][]byte, key []byte) error {
	st := acmeRoot(c).state
	if st == nil {
		return nil
	}
	cert, err := acmeCert(chain, key)
	if err != nil {
		return fmt.Errorf("ACME certificate for %s: %w", strings.Join(names, ", "), err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	acmeStoreMap(&st.certs, acmeKey(names), cert, false)
	return nil
}

// SetACMEChallenge adds (remove false) or withdraws the answer to one of the CA's
// challenges: for HTTP-01 keyAuth served at the token's path for domain, for
// TLS-ALPN-01 the certificate (chain, key) an acme-tls/1 handshake for domain gets.
func (c *Config) SetACMEChallenge(kind, domain, token, keyAuth string, chain [][]byte, key []byte, remove bool) error {
	st := acmeRoot(c).state
	if st == nil {
		return nil
	}
	domain = strings.ToLower(domain)
	st.mu.Lock()
	defer st.mu.Unlock()
	switch kind {
	case "http-01":
		acmeStoreMap(&st.http, token, http01Answer{domain, keyAuth}, remove)
	case "tls-alpn-01":
		var cert *tls.Certificate
		if !remove {
			var err error
			if cert, err = acmeCert(chain, key); err != nil {
				return fmt.Errorf("TLS-ALPN-01 certificate for %s: %w", domain, err)
			}
		}
		acmeStoreMap(&st.alpn, domain, cert, remove)
	default:
		return fmt.Errorf("unknown ACME challenge type %q", kind)
	}
	return nil
}

// answerHTTP01 serves an open HTTP-01 challenge's key authorization, on plain
// connections, before the server's rewrites and locations.
func answerHTTP01(r *Request) Action {
	uri := r.URI()
	if !strings.HasPrefix(uri, acmeHTTP01Prefix) || r.parent != nil || r.connTLS() != nil {
		return Continue
	}
	st := acmeRoot(r.Server.cfg).state
	a, ok := acmeLoadMap(&st.http, uri[len(acmeHTTP01Prefix):])
	if !ok || (r.Method() != "GET" && r.Method() != "HEAD") {
		return Continue
	}
	host := strings.ToLower(r.Host())
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.HasPrefix(host, "[") {
		host = h
	}
	if host != a.domain {
		return Continue
	}
	r.SetStatus(200)
	r.RespHeader().Set("Content-Type", "text/plain")
	r.Write([]byte(a.keyAuth))
	return Finished
}

// acmeCertificate gives a server with ssl_acme the certificate the master delivered
// for its names; until there is one, its ssl_certificate if it has one, else the
// handshake fails (as Caddy's does: a certificate the client cannot verify would
// teach users to click through warnings).
func (srv *Server) acmeCertificate(tc *tls.Config) {
	ac := acmeMod.Of(srv.root)
	cfg := srv.cfg
	tc.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if cert, ok := acmeLoadMap(&acmeRoot(cfg).state.certs, ac.key); ok {
			return cert, nil
		}
		if len(tc.Certificates) > 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("no certificate for %s yet (ssl_acme)", strings.ReplaceAll(ac.key, " ", ", "))
	}
}

// alpnConfig chooses the handshake's configuration by the client's ALPN protocols
// where they call for one of their own: a TLS-ALPN-01 validation (acme-tls/1) gets
// the challenge certificate for its SNI name, and nothing else. ok false: the
// server's configuration applies.
func alpnConfig(cfg *Config, hello *tls.ClientHelloInfo) (tc *tls.Config, ok bool, err error) {
	if !slices.Contains(hello.SupportedProtos, acmeALPN) {
		return nil, false, nil
	}
	st := acmeRoot(cfg).state
	if st == nil {
		return nil, true, errors.New("acme-tls/1 without ACME")
	}
	cert, found := acmeLoadMap(&st.alpn, strings.ToLower(hello.ServerName))
	if !found {
		return nil, true, fmt.Errorf("no TLS-ALPN-01 challenge open for %q", hello.ServerName)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{*cert},
		NextProtos:   []string{acmeALPN},
		MinVersion:   tls.VersionTLS12,
	}, true, nil
}
