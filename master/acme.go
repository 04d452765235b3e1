package master

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/acme"
	"github.com/spindle-server/spindle/ipc"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Automatic certificates (ssl_acme). The master alone speaks to the ACME directory:
// one internal/acme.Manager per account (acme block settings) and one Maintain
// goroutine per certificate (a server's set of names), however many workers and
// generations there are. What they obtain, or find stored, is sent to every worker
// (ipc ACME_CERTIFICATE) and with every new worker's CONFIG; a challenge is opened in
// every worker (ACME_CHALLENGE) and the CA is asked to validate once each worker
// acknowledged it, or after acmePresentWait.
//
// Across reloads a certificate whose names and settings are unchanged keeps its
// goroutine (and its renewal timer and backoff); new ones start when the new
// configuration is loaded, and ones it no longer asks for stop once the reload is
// over, either way. A binary upgrade's new master reads the stored certificates
// before its first workers start.
//
// The goroutines reach the master's state only through its event loop (event.acme).

// acmePresentWait bounds how long a challenge waits for the workers' acknowledgement:
// a worker stuck for longer makes the validation fail if the CA reaches it, and the
// order is retried with backoff.
const acmePresentWait = 10 * time.Second

type acmeState struct {
	accounts map[string]*acme.Manager       // by settings fingerprint
	running  map[string]*acmeTask           // by fingerprint and certificate key
	certs    map[string]ipc.ACMECertificate // by certificate key: what the workers serve
	open     map[uint64]*acmeChallenge      // challenges the workers were asked to answer
	seq      atomic.Uint64                  // challenge IDs
	// The ACME part of the configurations in use (the serving one and one being
	// loaded), taken from the build startGeneration makes anyway.
	setups map[*conf.Config]*acmeSetup
}

type acmeTask struct {
	cancel context.CancelFunc
}

type acmeChallenge struct {
	msg     ipc.ACMEChallenge
	waiting map[int]bool // workers that have not acknowledged
	done    chan struct{}
	closed  bool
}

func (c *acmeChallenge) finish() {
	if !c.closed {
		c.closed = true
		close(c.done)
	}
}

// acmeSetup is the ACME part of a configuration.
type acmeSetup struct {
	settings *httpcore.ACMESettings
	certs    []httpcore.ACMECertificate
}

func (m *Master) acmeOf(cfg *conf.Config) (*acmeSetup, error) {
	m.acmeInit()
	if setup, ok := m.acme.setups[cfg]; ok {
		return setup, nil
	}
	hcfg, err := httpcore.Build(cfg)
	if err != nil {
		return nil, err
	}
	m.acmeNote(cfg, hcfg)
	return m.acme.setups[cfg], nil
}

// acmeNote notes the ACME part of a configuration the master built, and reads the
// stored certificates it asks for that the master has none of yet, so that the
// workers about to start serve them from their first handshake.
func (m *Master) acmeNote(cfg *conf.Config, hcfg *httpcore.Config) {
	m.acmeInit()
	var setup *acmeSetup
	if s, certs := hcfg.ACME(); s != nil && len(certs) > 0 {
		setup = &acmeSetup{settings: s, certs: certs}
	}
	m.acme.setups[cfg] = setup
	if setup != nil {
		m.acmeLoad(setup)
	}
}

func acmeFingerprint(s *httpcore.ACMESettings) string {
	return fmt.Sprintf("%s|%s|%s|%s|%s|%s", s.Directory, s.Email, strings.Join(s.Challenges, ","), s.CARoot, s.Storage, s.RenewBefore)
}

func (m *Master) acmeInit() {
	if m.acme == nil {
		m.acme = &acmeState{
			accounts: map[string]*acme.Manager{}, running: map[string]*acmeTask{},
			certs: map[string]ipc.ACMECertificate{}, open: map[uint64]*acmeChallenge{},
			setups: map[*conf.Config]*acmeSetup{},
		}
	}
}

// acmeAccount returns the manager of the settings' account, made on first use.
func (m *Master) acmeAccount(s *httpcore.ACMESettings) (*acme.Manager, error) {
	fp := acmeFingerprint(s)
	if a := m.acme.accounts[fp]; a != nil {
		return a, nil
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if s.CARoot != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(s.CARoot)
		if err != nil {
			return nil, err
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("acme: ca_root %s holds no PEM certificate", s.CARoot)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	cfg := acme.Config{
		DirectoryURL: s.Directory, Email: s.Email, Dir: s.Storage, Challenges: s.Challenges,
		Challenger: &acmeChallenger{m: m}, HTTPClient: client,
		Logf: func(level, format string, args ...any) {
			switch level {
			case "error":
				m.log.Errorf(format, args...)
			case "warn":
				m.log.Warnf(format, args...)
			default:
				m.log.Noticef(format, args...)
			}
		},
	}
	if before := s.RenewBefore; before > 0 {
		cfg.RenewAt = func(leaf *x509.Certificate) time.Time { return leaf.NotAfter.Add(-before) }
	}
	a, err := acme.New(cfg)
	if err != nil {
		return nil, err
	}
	m.acme.accounts[fp] = a
	return a, nil
}

// acmeLoad reads the stored certificates the master has none of yet.
func (m *Master) acmeLoad(setup *acmeSetup) {
	a, err := m.acmeAccount(setup.settings)
	if err != nil {
		m.log.Errorf("acme: %v", err)
		return
	}
	for _, c := range setup.certs {
		if _, ok := m.acme.certs[c.Key()]; ok {
			continue
		}
		if cert, err := a.Load(c.Names); err == nil {
			m.acmeStore(c.Names, cert)
		}
	}
}

// acmeStart starts keeping the certificates of a configuration that are not kept
// yet.
func (m *Master) acmeStart(cfg *conf.Config) {
	setup, err := m.acmeOf(cfg)
	if err != nil || setup == nil {
		return
	}
	a, err := m.acmeAccount(setup.settings)
	if err != nil {
		m.log.Errorf("acme: %v", err)
		return
	}
	fp := acmeFingerprint(setup.settings)
	for _, c := range setup.certs {
		id := fp + "|" + c.Key()
		if m.acme.running[id] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		m.acme.running[id] = &acmeTask{cancel: cancel}
		names := c.Names
		go a.Maintain(ctx, names, func(cert *tls.Certificate) {
			m.events <- event{acme: func() {
				if ctx.Err() == nil {
					m.acmeDeliver(names, cert)
				}
			}}
		})
	}
}

// acmeRetire stops keeping the certificates cfg does not ask for (after a reload, or
// on the way out with cfg nil).
func (m *Master) acmeRetire(cfg *conf.Config) {
	if m.acme == nil {
		return
	}
	keep := map[string]bool{}
	if cfg != nil {
		if setup, err := m.acmeOf(cfg); err == nil && setup != nil {
			fp := acmeFingerprint(setup.settings)
			for _, c := range setup.certs {
				keep[fp+"|"+c.Key()] = true
			}
		}
	}
	for id, t := range m.acme.running {
		if !keep[id] {
			t.cancel()
			delete(m.acme.running, id)
		}
	}
	for c := range m.acme.setups {
		if c != cfg {
			delete(m.acme.setups, c)
		}
	}
}

func (m *Master) acmeStore(names []string, cert *tls.Certificate) (ipc.ACMECertificate, bool) {
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		m.log.Errorf("acme: the key of the certificate for %s: %v", strings.Join(names, ", "), err)
		return ipc.ACMECertificate{}, false
	}
	msg := ipc.ACMECertificate{Names: names, Chain: cert.Certificate, Key: key}
	k := httpcore.ACMECertificate{Names: names}.Key()
	if old, ok := m.acme.certs[k]; ok && len(old.Chain) > 0 && string(old.Chain[0]) == string(msg.Chain[0]) {
		return msg, false
	}
	m.acme.certs[k] = msg
	return msg, true
}

// acmeDeliver sends a certificate Maintain delivered to every worker.
func (m *Master) acmeDeliver(names []string, cert *tls.Certificate) {
	msg, changed := m.acmeStore(names, cert)
	if !changed {
		return
	}
	n := 0
	for _, p := range m.procs {
		if !p.exited {
			if err := p.ctl.Send(msg); err != nil {
				m.log.Alertf("sending the certificate for %s to worker %d: %v", strings.Join(names, ", "), p.pid, err)
				continue
			}
			n++
		}
	}
	m.log.Noticef("acme: certificate for %s, valid until %s, sent to %d worker processes", strings.Join(names, ", "),
		cert.Leaf.NotAfter.UTC().Format(time.RFC3339), n)
}

// acmeConfig is what a new worker's CONFIG carries: every certificate and every open
// challenge.
func (m *Master) acmeConfig() ([]ipc.ACMECertificate, []ipc.ACMEChallenge) {
	if m.acme == nil {
		return nil, nil
	}
	var certs []ipc.ACMECertificate
	for _, c := range m.acme.certs {
		certs = append(certs, c)
	}
	var chals []ipc.ACMEChallenge
	for _, c := range m.acme.open {
		chals = append(chals, c.msg)
	}
	return certs, chals
}

// acmeOpen asks every worker to answer a challenge; done closes once all did.
func (m *Master) acmeOpen(c *acmeChallenge) {
	c.waiting = map[int]bool{}
	for _, p := range m.procs {
		if p.exited {
			continue
		}
		if err := p.ctl.Send(c.msg); err != nil {
			m.log.Alertf("sending an ACME challenge to worker %d: %v", p.pid, err)
			continue
		}
		// A draining worker takes no new connections, and reads no more messages.
		if !p.quitting {
			c.waiting[p.pid] = true
		}
	}
	m.acme.open[c.msg.ID] = c
	if len(c.waiting) == 0 {
		c.finish()
	}
}

// acmeAck notes a worker's acknowledgement of a challenge.
func (m *Master) acmeAck(p *proc, id uint64) {
	if m.acme == nil {
		return
	}
	if c := m.acme.open[id]; c != nil {
		delete(c.waiting, p.pid)
		if len(c.waiting) == 0 {
			c.finish()
		}
	}
}

// acmeGone stops waiting for a worker that exited.
func (m *Master) acmeGone(p *proc) {
	if m.acme == nil {
		return
	}
	for _, c := range m.acme.open {
		if c.waiting[p.pid] {
			m.acmeAck(p, c.msg.ID)
		}
	}
}

// acmeClose withdraws a challenge from every worker.
func (m *Master) acmeClose(match func(ipc.ACMEChallenge) bool) {
	for id, c := range m.acme.open {
		if !match(c.msg) {
			continue
		}
		delete(m.acme.open, id)
		c.finish()
		rm := ipc.ACMEChallenge{ID: id, Remove: true, Kind: c.msg.Kind, Domain: c.msg.Domain, Token: c.msg.Token}
		for _, p := range m.procs {
			if !p.exited {
				p.ctl.Send(rm)
			}
		}
	}
}

// acmeChallenger is internal/acme's Challenger: the workers, through the master's
// event loop.
type acmeChallenger struct{ m *Master }

func acmeChallengeMsg(ch acme.Challenge) (ipc.ACMEChallenge, error) {
	msg := ipc.ACMEChallenge{Kind: ch.Type, Domain: ch.Domain, Token: ch.Token, KeyAuth: ch.KeyAuth}
	if ch.Cert != nil {
		key, err := x509.MarshalPKCS8PrivateKey(ch.Cert.PrivateKey)
		if err != nil {
			return msg, err
		}
		msg.Chain, msg.Key = ch.Cert.Certificate, key
	}
	return msg, nil
}

func sameACMEChallenge(a, b ipc.ACMEChallenge) bool {
	return a.Kind == b.Kind && a.Domain == b.Domain && a.Token == b.Token
}

// Present returns once every worker serves the answer, or after acmePresentWait.
func (c *acmeChallenger) Present(ch acme.Challenge) error {
	msg, err := acmeChallengeMsg(ch)
	if err != nil {
		return err
	}
	m := c.m
	msg.ID = m.acme.seq.Add(1)
	open := &acmeChallenge{msg: msg, done: make(chan struct{})}
	m.events <- event{acme: func() { m.acmeOpen(open) }}
	t := time.NewTimer(acmePresentWait)
	defer t.Stop()
	select {
	case <-open.done:
	case <-t.C:
		m.log.Warnf("acme: not every worker process acknowledged the %s answer for %s within %s; asking the CA to validate anyway",
			ch.Type, ch.Domain, acmePresentWait)
	}
	return nil
}

// CleanUp withdraws the answer from every worker.
func (c *acmeChallenger) CleanUp(ch acme.Challenge) {
	msg, _ := acmeChallengeMsg(ch)
	m := c.m
	m.events <- event{acme: func() { m.acmeClose(func(o ipc.ACMEChallenge) bool { return sameACMEChallenge(o, msg) }) }}
}
