package httpcore

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/spindle-server/spindle/conf"
	"github.com/zclconf/go-cty/cty"
)

// SSLConf is the TLS configuration of a server (nginx's ngx_http_ssl_module settings,
// in the http and server contexts). It is applied to the server's addresses that have
// the ssl flag in their listen.
type SSLConf struct {
	Certificates    []string // ssl_certificate: one per key, ECDSA and RSA side by side
	CertificateKeys []string // ssl_certificate_key, in the same order
	certRange       hcl.Range
	keyRange        hcl.Range
	Protocols       []string // ssl_protocols
	protoRange      hcl.Range
	minVersion      uint16
	maxVersion      uint16
	Ciphers         string   // ssl_ciphers (TLS 1.2; Go picks TLS 1.3's)
	cipherSuites    []uint16 // nil: Go's defaults
	PreferServer    bool     // ssl_prefer_server_ciphers (Go always decides: kept for configs)
	curves          []tls.CurveID
	ClientCA        string // ssl_client_certificate
	clientCARange   hcl.Range
	TrustedCA       string // ssl_trusted_certificate: verifies, never named to the client
	trustedRange    hcl.Range
	DHParam         string // ssl_dhparam: checked, unused (crypto/tls has no finite-field DHE)
	dhRange         hcl.Range
	VerifyClient    int // verifyOff, verifyOn, verifyOptional, verifyOptionalNoCA
	VerifyDepth     int
	SessionTickets  bool
	SessionTimeout  time.Duration
	TicketKeyFiles  []string // ssl_session_ticket_key
	ticketKeyRange  hcl.Range
	StaplingFile    string // ssl_stapling_file: a DER OCSP response stapled to every handshake
	staplingRange   hcl.Range
}

// ssl_verify_client modes.
const (
	verifyOff = iota
	verifyOn
	verifyOptional
	verifyOptionalNoCA
)

// sslMod is the handle of the TLS settings' module.
var sslMod = Define(func() *SSLConf {
	return &SSLConf{
		Protocols:      []string{"TLSv1.2", "TLSv1.3"},
		minVersion:     tls.VersionTLS12,
		maxVersion:     tls.VersionTLS13,
		Ciphers:        "HIGH:!aNULL:!MD5",
		VerifyDepth:    1,
		SessionTickets: true,
		SessionTimeout: 5 * time.Minute,
	}
})

// SSLModule holds the TLS directives. The handshakes themselves are the engine's
// (tls.go): a TLS address belongs to the core as a plain one does.
var SSLModule = Register(&Module{
	Name:  "ssl",
	Order: OrderCore,
	Conf:  sslMod,
	Directives: []Directive{
		{Name: "ssl_certificate", Context: CtxHTTP | CtxServer, Set: func(c *Cmd) error {
			v, err := conf.Strings(c.Attr())
			sc := sslMod.Cmd(c)
			sc.Certificates, sc.certRange = v, c.Attr().Expr.Range()
			return err
		}},
		{Name: "ssl_certificate_key", Context: CtxHTTP | CtxServer, Set: func(c *Cmd) error {
			v, err := conf.Strings(c.Attr())
			sc := sslMod.Cmd(c)
			sc.CertificateKeys, sc.keyRange = v, c.Attr().Expr.Range()
			return err
		}},
		{Name: "ssl_protocols", Context: CtxHTTP | CtxServer, Set: setSSLProtocols},
		{Name: "ssl_ciphers", Context: CtxHTTP | CtxServer, Set: func(c *Cmd) error {
			v, err := conf.String(c.Attr())
			if err != nil {
				return err
			}
			ids, err := parseCiphers(v)
			if err != nil {
				return conf.Errorf(c.Attr().Expr.Range(), "ssl_ciphers: %v", err)
			}
			sc := sslMod.Cmd(c)
			sc.Ciphers, sc.cipherSuites = v, ids
			return nil
		}},
		{Name: "ssl_prefer_server_ciphers", Context: CtxHTTP | CtxServer, Set: SetBool(func(sc *SSLConf) *bool { return &sc.PreferServer })},
		{Name: "ssl_ecdh_curve", Context: CtxHTTP | CtxServer, Set: func(c *Cmd) error {
			v, err := conf.String(c.Attr())
			if err != nil {
				return err
			}
			curves, err := parseCurves(v)
			if err != nil {
				return conf.Errorf(c.Attr().Expr.Range(), "ssl_ecdh_curve: %v", err)
			}
			sslMod.Cmd(c).curves = curves
			return nil
		}},
		{Name: "ssl_client_certificate", Context: CtxHTTP | CtxServer, Set: func(c *Cmd) error {
			v, err := conf.String(c.Attr())
			sc := sslMod.Cmd(c)
			sc.ClientCA, sc.clientCARange = v, c.Attr().Expr.Range()
			return err
		}},
		{Name: "ssl_trusted_certificate", Context: CtxHTTP | CtxServer, Set: func(c *Cmd) error {
			v, err := conf.String(c.Attr())
			sc := sslMod.Cmd(c)
			sc.TrustedCA, sc.trustedRange = v, c.Attr().Expr.Range()
			return err
		}},
		{Name: "ssl_dhparam", Context: CtxHTTP | CtxServer, Set: func(c *Cmd) error {
			v, err := conf.String(c.Attr())
			sc := sslMod.Cmd(c)
			sc.DHParam, sc.dhRange = v, c.Attr().Expr.Range()
			return err
		}},
		{Name: "ssl_verify_client", Context: CtxHTTP | CtxServer, Set: func(c *Cmd) error {
			v, err := conf.StaticValue(c.Attr().Expr)
			if err != nil {
				return err
			}
			mode := -1
			switch {
			case v.Type() == cty.String:
				switch v.AsString() {
				case "on":
					mode = verifyOn
				case "off":
					mode = verifyOff
				case "optional":
					mode = verifyOptional
				case "optional_no_ca":
					mode = verifyOptionalNoCA
				}
			case v.Type() == cty.Bool:
				mode = verifyOff
				if v.True() {
					mode = verifyOn
				}
			}
			if mode < 0 {
				return conf.Errorf(c.Attr().Expr.Range(), "ssl_verify_client must be on, off, optional or optional_no_ca")
			}
			sslMod.Cmd(c).VerifyClient = mode
			return nil
		}},
		{Name: "ssl_verify_depth", Context: CtxHTTP | CtxServer, Set: SetCount(0, conf.NoMax, func(sc *SSLConf) *int { return &sc.VerifyDepth })},
		{Name: "ssl_session_tickets", Context: CtxHTTP | CtxServer, Set: SetBool(func(sc *SSLConf) *bool { return &sc.SessionTickets })},
		{Name: "ssl_session_timeout", Context: CtxHTTP | CtxServer, Set: SetDuration(func(sc *SSLConf) *time.Duration { return &sc.SessionTimeout })},
		{Name: "ssl_session_ticket_key", Context: CtxHTTP | CtxServer, Set: func(c *Cmd) error {
			v, err := conf.Strings(c.Attr())
			sc := sslMod.Cmd(c)
			sc.TicketKeyFiles, sc.ticketKeyRange = v, c.Attr().Expr.Range()
			return err
		}},
		// crypto/tls has no server-side session cache: sessions resume with tickets,
		// whose keys the master shares (what nginx's shared cache is for). Accepted
		// and checked so that nginx configurations load.
		{Name: "ssl_session_cache", Context: CtxHTTP | CtxServer, Set: func(c *Cmd) error {
			vals, err := conf.Strings(c.Attr())
			if err != nil {
				return err
			}
			for _, v := range vals {
				for _, w := range strings.Fields(v) {
					kind, rest, _ := strings.Cut(w, ":")
					ok := false
					switch kind {
					case "off", "none":
						ok = rest == ""
					case "builtin":
						ok = true
					case "shared":
						name, size, found := strings.Cut(rest, ":")
						_, serr := conf.ParseSize(size)
						ok = found && name != "" && serr == nil
					}
					if !ok {
						return conf.Errorf(c.Attr().Expr.Range(), "invalid ssl_session_cache %q (off, none, builtin[:size], shared:name:size)", w)
					}
				}
			}
			return nil
		}},
		{Name: "ssl_stapling_file", Context: CtxHTTP | CtxServer, Set: func(c *Cmd) error {
			v, err := conf.String(c.Attr())
			sc := sslMod.Cmd(c)
			sc.StaplingFile, sc.staplingRange = v, c.Attr().Expr.Range()
			return err
		}},
	},
	Install:    installSSL,
	Postconfig: buildTLS,
	InitWorker: dhparamNotice,
})

// dhparamNotice says once (by the first worker) that ssl_dhparam files are checked
// but not used.
func dhparamNotice(cfg *Config, w *Worker) error {
	if w.ID != 0 || cfg.log == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, l := range cfg.Locations() {
		if l.ctx != CtxServer {
			continue
		}
		sc := sslMod.Of(l)
		if sc.DHParam == "" || seen[sc.DHParam] {
			continue
		}
		seen[sc.DHParam] = true
		cfg.log.Noticef("%s:%d: ssl_dhparam %q is not used: Go's crypto/tls has no finite-field DHE (TLS 1.2 key exchange is ECDHE, TLS 1.3's is ECDHE)",
			sc.dhRange.Filename, sc.dhRange.Start.Line, sc.DHParam)
	}
	return nil
}

var tlsVersions = map[string]uint16{
	"TLSv1": tls.VersionTLS10, "TLSv1.1": tls.VersionTLS11, "TLSv1.2": tls.VersionTLS12, "TLSv1.3": tls.VersionTLS13,
}

// setSSLProtocols: crypto/tls takes a range of versions, so the listed ones must be
// contiguous (nginx's lists in practice are).
func setSSLProtocols(c *Cmd) error {
	vals, err := conf.Strings(c.Attr())
	if err != nil {
		return err
	}
	var words []string
	for _, v := range vals {
		words = append(words, strings.Fields(v)...)
	}
	rng := c.Attr().Expr.Range()
	if len(words) == 0 {
		return conf.Errorf(rng, "ssl_protocols needs at least one protocol")
	}
	var min, max uint16
	seen := map[uint16]bool{}
	for _, w := range words {
		v, ok := tlsVersions[w]
		if !ok {
			if w == "SSLv2" || w == "SSLv3" {
				return conf.Errorf(rng, "ssl_protocols: %s is not supported (TLSv1 to TLSv1.3 are)", w)
			}
			return conf.Errorf(rng, "ssl_protocols: unknown protocol %q (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)", w)
		}
		seen[v] = true
		if min == 0 || v < min {
			min = v
		}
		if v > max {
			max = v
		}
	}
	for v := min; v <= max; v++ {
		if !seen[v] {
			return conf.Errorf(rng, "ssl_protocols: the protocols must be a contiguous range of versions (crypto/tls takes a minimum and a maximum)")
		}
	}
	sc := sslMod.Cmd(c)
	sc.Protocols, sc.minVersion, sc.maxVersion, sc.protoRange = words, min, max, rng
	return nil
}

// installSSL makes servers that verify client certificates answer requests whose
// certificate is missing or bad as nginx does (495/496, sent as 400 with nginx's
// text), per request, with the server the Host header selected.
func installSSL(l *Location) error {
	if l.ctx != CtxServer || sslMod.Of(l).VerifyClient == verifyOff {
		return nil
	}
	l.AddInlineHandler(PhasePostRead, OrderCore, checkClientCert)
	return nil
}

// buildTLS loads every TLS server's certificates and makes its tls.Config, and one
// for each TLS address, which picks the server by SNI. Errors point at the directive
// that names the bad file.
func buildTLS(cfg *Config) error {
	var es conf.Errors
	built := map[*Server]bool{}
	for _, l := range cfg.Listens {
		if !l.SSL {
			continue
		}
		as := cfg.byAddr[l.Addr]
		for _, srv := range as.servers {
			if built[srv] {
				continue
			}
			built[srv] = true
			st, err := srv.buildTLS(l)
			if err != nil {
				es.Add(l.Range, err)
				continue
			}
			srv.tls = st
		}
		if len(es) == 0 {
			as.tls = addrTLSConfig(cfg, as)
		}
	}
	if len(es) > 0 {
		return es
	}
	return nil
}

func (srv *Server) buildTLS(l Listen) (*serverTLS, error) {
	sc := sslMod.Of(srv.root)
	prefix := srv.cfg.Main.Prefix
	acme := acmeMod.Of(srv.root).on
	if len(sc.Certificates) == 0 && !acme {
		return nil, conf.Errorf(l.Range, "no ssl_certificate is defined for the listen ... ssl directive in %s", srv)
	}
	if len(sc.CertificateKeys) != len(sc.Certificates) {
		return nil, conf.Errorf(sc.keyRange, "ssl_certificate_key must name one key for each ssl_certificate (%d certificates, %d keys)", len(sc.Certificates), len(sc.CertificateKeys))
	}
	st := &serverTLS{verify: sc.VerifyClient, depth: sc.VerifyDepth, timeout: sc.SessionTimeout}
	tc := &tls.Config{
		MinVersion:       sc.minVersion,
		MaxVersion:       sc.maxVersion,
		CipherSuites:     sc.cipherSuites,
		CurvePreferences: curvePreferences(sc.curves),
		// Go decides the order itself (ssl_prefer_server_ciphers is accepted only).
		SessionTicketsDisabled: !sc.SessionTickets,
	}
	var staple []byte
	if sc.StaplingFile != "" {
		b, err := os.ReadFile(conf.Resolve(prefix, sc.StaplingFile))
		if err != nil {
			return nil, conf.Errorf(sc.staplingRange, "ssl_stapling_file: %v", err)
		}
		staple = b
	}
	for i, certFile := range sc.Certificates {
		cert, err := tls.LoadX509KeyPair(conf.Resolve(prefix, certFile), conf.Resolve(prefix, sc.CertificateKeys[i]))
		if err != nil {
			return nil, conf.Errorf(sc.certRange, "ssl_certificate %q with key %q: %v", certFile, sc.CertificateKeys[i], err)
		}
		cert.OCSPStaple = staple
		tc.Certificates = append(tc.Certificates, cert)
	}
	if acme {
		srv.acmeCertificate(tc)
	}
	if sc.VerifyClient != verifyOff {
		// The handshake asks for a certificate and never fails for it: the request
		// learns the verdict ($ssl_client_verify) and is answered 400 when the server
		// requires one, as nginx does.
		tc.ClientAuth = tls.RequestClientCert
		if sc.ClientCA == "" && sc.VerifyClient != verifyOptionalNoCA {
			return nil, conf.Errorf(l.Range, "no ssl_client_certificate for ssl_verify_client in %s", srv)
		}
	}
	// ssl_client_certificate's CAs verify client certificates and are named to the
	// client in the CertificateRequest (tls.Config.ClientCAs); ssl_trusted_certificate's
	// only verify, as OpenSSL's store for nginx: clients are not told of them.
	if sc.ClientCA != "" {
		pem, err := os.ReadFile(conf.Resolve(prefix, sc.ClientCA))
		if err != nil {
			return nil, conf.Errorf(sc.clientCARange, "ssl_client_certificate: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, conf.Errorf(sc.clientCARange, "ssl_client_certificate %q: no PEM certificate in it", sc.ClientCA)
		}
		tc.ClientCAs = pool
		st.clientCAs = x509.NewCertPool()
		st.clientCAs.AppendCertsFromPEM(pem)
	}
	if sc.TrustedCA != "" {
		pem, err := os.ReadFile(conf.Resolve(prefix, sc.TrustedCA))
		if err != nil {
			return nil, conf.Errorf(sc.trustedRange, "ssl_trusted_certificate: %v", err)
		}
		if st.clientCAs == nil {
			st.clientCAs = x509.NewCertPool()
		}
		if !st.clientCAs.AppendCertsFromPEM(pem) {
			return nil, conf.Errorf(sc.trustedRange, "ssl_trusted_certificate %q: no PEM certificate in it", sc.TrustedCA)
		}
	}
	if sc.DHParam != "" {
		if err := checkDHParam(conf.Resolve(prefix, sc.DHParam)); err != nil {
			return nil, conf.Errorf(sc.dhRange, "ssl_dhparam: %v", err)
		}
	}
	if len(sc.TicketKeyFiles) > 0 {
		keys, err := readTicketKeys(prefix, sc.TicketKeyFiles)
		if err != nil {
			return nil, conf.Errorf(sc.ticketKeyRange, "ssl_session_ticket_key: %v", err)
		}
		st.fixedKeys = true
		tc.SetSessionTicketKeys(keys)
	}
	st.config = tc
	if sc.SessionTickets {
		st.limitSessions()
	}
	st.h2config = h2TLSConfig(tc)
	return st, nil
}

// readTicketKeys reads nginx's ticket key files: 80 bytes (AES-256) or 48 bytes
// (AES-128) of random data each, the first file's key encrypting. crypto/tls takes a
// 32-byte key and derives its own AES and HMAC keys from it: each file's bytes are
// hashed into one, so the same files give the same keys in every worker, generation
// and spindle instance (not tickets OpenSSL-based nginx can read).
func readTicketKeys(prefix string, files []string) ([][32]byte, error) {
	var keys [][32]byte
	for _, f := range files {
		b, err := os.ReadFile(conf.Resolve(prefix, f))
		if err != nil {
			return nil, err
		}
		if len(b) != 80 && len(b) != 48 {
			return nil, errorf("%q must contain 80 or 48 bytes, not %d", f, len(b))
		}
		keys = append(keys, ticketKeyFrom(b))
	}
	return keys, nil
}

// checkDHParam reads an ssl_dhparam file as nginx does at load (a missing or broken
// file is an error there too), though its parameters are not used.
func checkDHParam(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return errorf("%q: no PEM \"DH PARAMETERS\" block in it", path)
		}
		if blk.Type == "DH PARAMETERS" || blk.Type == "X9.42 DH PARAMETERS" {
			return nil
		}
	}
}
