// Package acme obtains and renews TLS certificates from an ACME directory (RFC 8555:
// Let's Encrypt, or pebble in tests) for spindle's master process, which nginx cannot do.
//
// The master alone talks to the directory: one account, one order per certificate, and
// one renewal timer per certificate, however many workers there are. What the CA checks
// must be answered by whichever worker the CA's connection reaches, so the answers are
// handed to a Challenger (the master sends them to every worker over the control pipe)
// before the CA is asked to validate, and withdrawn afterwards. A certificate, once
// obtained, is stored under the state directory and delivered the same way, without a
// reload. A failed renewal is logged and retried with backoff while the old certificate
// keeps serving.
//
// golang.org/x/crypto/acme is the protocol client: it is small and leaves the process
// model to the caller. certmagic and autocert both assume that the process that answers
// the challenges is the one that runs the protocol, and certmagic brings its own storage,
// locking and logging; spindle's split between master and workers needs neither.
package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// Challenge types, as ACME names them.
const (
	HTTP01    = "http-01"
	TLSALPN01 = "tls-alpn-01"
)

// ALPNProto is the ALPN protocol a TLS-ALPN-01 validation connection asks for; a
// listener answers it with Challenge.Cert for the requested server name.
const ALPNProto = acme.ALPNProto

// HTTP01Prefix is the path under which HTTP-01 answers are served.
const HTTP01Prefix = "/.well-known/acme-challenge/"

// Challenge is one answer the CA will look for.
type Challenge struct {
	Type   string // HTTP01 or TLSALPN01
	Domain string
	// Token names the HTTP-01 answer: it is served at HTTP01Prefix+Token with body
	// KeyAuth (Content-Type text/plain) on port 80 of Domain.
	Token   string
	KeyAuth string
	// Cert is the TLS-ALPN-01 answer: the certificate a TLS listener presents on port
	// 443 to a client asking for ALPNProto with SNI Domain.
	Cert *tls.Certificate
}

// Challenger makes challenge answers available to whatever serves port 80 and 443.
// Present must return only once every server can answer it.
type Challenger interface {
	Present(ch Challenge) error
	CleanUp(ch Challenge)
}

// Config configures a Manager.
type Config struct {
	// DirectoryURL is the ACME directory, e.g. Let's Encrypt's
	// https://acme-v02.api.letsencrypt.org/directory.
	DirectoryURL string
	// Email is the account's contact, optional.
	Email string
	// Dir holds the account key and the certificates (0700; files 0600).
	Dir string
	// Challenges are the types to use, in order of preference; default HTTP-01, then
	// TLS-ALPN-01.
	Challenges []string
	Challenger Challenger
	// HTTPClient talks to the directory; nil means http.DefaultClient.
	HTTPClient *http.Client
	// RenewAt says when a certificate is due for renewal; nil means when a third of
	// its lifetime is left, as Let's Encrypt recommends (30 days of 90).
	RenewAt func(leaf *x509.Certificate) time.Time
	// RetryMin and RetryMax bound the backoff after a failure (default 1 minute and
	// 1 hour; the delay doubles from one to the other).
	RetryMin, RetryMax time.Duration
	// Logf reports progress and failures; level is "info", "warn" or "error".
	Logf func(level, format string, args ...any)
}

// Manager obtains and renews the certificates of one account.
type Manager struct {
	cfg Config

	mu     sync.Mutex
	client *acme.Client
}

// New checks cfg and returns a Manager; it does not contact the directory yet.
func New(cfg Config) (*Manager, error) {
	if cfg.DirectoryURL == "" {
		return nil, errors.New("acme: no directory URL")
	}
	if cfg.Dir == "" {
		return nil, errors.New("acme: no storage directory")
	}
	if cfg.Challenger == nil {
		return nil, errors.New("acme: no challenger")
	}
	if len(cfg.Challenges) == 0 {
		cfg.Challenges = []string{HTTP01, TLSALPN01}
	}
	for _, c := range cfg.Challenges {
		if c != HTTP01 && c != TLSALPN01 {
			return nil, fmt.Errorf("acme: unsupported challenge type %q (http-01 or tls-alpn-01)", c)
		}
	}
	if cfg.RenewAt == nil {
		cfg.RenewAt = func(leaf *x509.Certificate) time.Time {
			return leaf.NotAfter.Add(-leaf.NotAfter.Sub(leaf.NotBefore) / 3)
		}
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Minute
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(time.Hour, cfg.RetryMin)
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, string, ...any) {}
	}
	return &Manager{cfg: cfg}, nil
}

// certName is the storage name of a certificate for names: the first name, as
// certbot names its lineages, with "*" spelt "_".
func certName(names []string) string {
	return strings.ReplaceAll(names[0], "*", "_")
}

func (m *Manager) certDir(names []string) string {
	return filepath.Join(m.cfg.Dir, "certificates", certName(names))
}

// Load returns the stored certificate for names, if there is one that covers them all.
func (m *Manager) Load(names []string) (*tls.Certificate, error) {
	dir := m.certDir(names)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if err := cert.Leaf.VerifyHostname(n); err != nil {
			return nil, fmt.Errorf("acme: stored certificate %s does not cover %s", dir, n)
		}
	}
	return &cert, nil
}

// account returns a client registered with the directory, creating the account key
// and the account on first use.
func (m *Manager) account(ctx context.Context) (*acme.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client != nil {
		return m.client, nil
	}
	key, err := loadOrCreateKey(filepath.Join(m.cfg.Dir, "account.key"))
	if err != nil {
		return nil, err
	}
	c := &acme.Client{Key: key, DirectoryURL: m.cfg.DirectoryURL, HTTPClient: m.cfg.HTTPClient, UserAgent: "spindle"}
	acct := &acme.Account{}
	if m.cfg.Email != "" {
		acct.Contact = []string{"mailto:" + m.cfg.Email}
	}
	if _, err := c.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("acme: registering the account at %s: %w", m.cfg.DirectoryURL, err)
	}
	m.client = c
	return c, nil
}

// Obtain orders a certificate for names, answers the CA's challenges through the
// Challenger, stores the certificate and returns it.
func (m *Manager) Obtain(ctx context.Context, names []string) (*tls.Certificate, error) {
	if len(names) == 0 {
		return nil, errors.New("acme: no names")
	}
	c, err := m.account(ctx)
	if err != nil {
		return nil, err
	}
	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs(names...))
	if err != nil {
		return nil, fmt.Errorf("acme: new order for %s: %w", strings.Join(names, ", "), err)
	}
	for _, u := range order.AuthzURLs {
		if err := m.authorize(ctx, c, u); err != nil {
			return nil, err
		}
	}
	orderURI := order.URI
	if order, err = c.WaitOrder(ctx, orderURI); err != nil {
		return nil, fmt.Errorf("acme: order for %s: %w", strings.Join(names, ", "), err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
	}, key)
	if err != nil {
		return nil, err
	}
	if order.URI == "" {
		order.URI = orderURI
	}
	// CreateCertFromOrder, not CreateOrderCert: a CA that finalizes asynchronously
	// (pebble does) answers "processing", and only the order's URL can be polled.
	der, _, err := c.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		return nil, fmt.Errorf("acme: finalizing the order for %s: %w", strings.Join(names, ", "), err)
	}
	cert, err := m.store(names, der, key)
	if err != nil {
		return nil, err
	}
	m.cfg.Logf("info", "acme: obtained a certificate for %s, valid until %s", strings.Join(names, ", "),
		cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return cert, nil
}

// authorize proves control of one identifier with the first challenge type of the
// configured preference that the CA offers.
func (m *Manager) authorize(ctx context.Context, c *acme.Client, url string) error {
	z, err := c.GetAuthorization(ctx, url)
	if err != nil {
		return fmt.Errorf("acme: authorization %s: %w", url, err)
	}
	if z.Status == acme.StatusValid {
		return nil
	}
	domain := z.Identifier.Value
	var chal *acme.Challenge
	for _, typ := range m.cfg.Challenges {
		i := slices.IndexFunc(z.Challenges, func(ch *acme.Challenge) bool { return ch.Type == typ })
		if i >= 0 {
			chal = z.Challenges[i]
			break
		}
	}
	if chal == nil {
		return fmt.Errorf("acme: %s offers none of the challenge types %s for %s", m.cfg.DirectoryURL,
			strings.Join(m.cfg.Challenges, ", "), domain)
	}
	answer := Challenge{Type: chal.Type, Domain: domain, Token: chal.Token}
	switch chal.Type {
	case HTTP01:
		if answer.KeyAuth, err = c.HTTP01ChallengeResponse(chal.Token); err != nil {
			return err
		}
	case TLSALPN01:
		cert, err := c.TLSALPN01ChallengeCert(chal.Token, domain)
		if err != nil {
			return err
		}
		answer.Cert = &cert
	}
	if err := m.cfg.Challenger.Present(answer); err != nil {
		return fmt.Errorf("acme: presenting the %s answer for %s: %w", chal.Type, domain, err)
	}
	defer m.cfg.Challenger.CleanUp(answer)
	if _, err := c.Accept(ctx, chal); err != nil {
		return fmt.Errorf("acme: %s for %s: %w", chal.Type, domain, err)
	}
	if _, err := c.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("acme: %s validation of %s failed: %w", chal.Type, domain, err)
	}
	return nil
}

// store writes the chain and key (each through a temporary file and a rename, so a
// crash never leaves half a certificate) and returns them as a tls.Certificate.
func (m *Manager) store(names []string, der [][]byte, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	var chain []byte
	for _, b := range der {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b})...)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	cert, err := tls.X509KeyPair(chain, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("acme: the CA's certificate does not match its key: %w", err)
	}
	dir := m.certDir(names)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, "key.pem"), keyPEM); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, "cert.pem"), chain); err != nil {
		return nil, err
	}
	return &cert, nil
}

func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func loadOrCreateKey(path string) (crypto.Signer, error) {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("acme: %s holds no PEM key", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("acme: %s: %w", path, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("acme: %s: not a signing key", path)
		}
		return s, nil
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return key, writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
}

// Maintain keeps a certificate for names until ctx ends: it delivers the stored one
// at once if there is one, obtains one when none is stored or the stored one is due,
// and renews it when RenewAt says. A failure is logged and retried with backoff
// (RetryMin doubling up to RetryMax); the certificate delivered last keeps serving.
func (m *Manager) Maintain(ctx context.Context, names []string, deliver func(*tls.Certificate)) {
	cur, err := m.Load(names)
	if err == nil {
		deliver(cur)
	}
	backoff := m.cfg.RetryMin
	for {
		wait := time.Duration(0)
		if cur != nil {
			wait = time.Until(m.cfg.RenewAt(cur.Leaf))
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		next, err := m.Obtain(ctx, names)
		if err == nil {
			cur, backoff = next, m.cfg.RetryMin
			deliver(cur)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		m.cfg.Logf("error", "%v; retrying in %s, at %s", err, backoff, time.Now().Add(backoff).Format(time.RFC3339))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, m.cfg.RetryMax)
	}
}
