package httpcore

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/spindle-server/spindle/conf"
)

// ACMESettings is the http block's `acme { ... }`: the ACME directory the master
// obtains certificates from, and how.
type ACMESettings struct {
	Directory   string        // directory: the CA's directory URL
	Email       string        // email: the account's contact
	Challenges  []string      // challenges: "http-01", "tls-alpn-01", in order of preference
	CARoot      string        // ca_root: a PEM file of roots to trust the directory with, beside the system's
	Storage     string        // storage: where the account key and certificates are kept (resolved)
	RenewBefore time.Duration // renew_before: renew this long before expiry; 0: at a third of the lifetime left
	Range       hcl.Range     // the acme block, or the first ssl_acme when there is none
}

// ACMECertificate is one certificate the servers ask for: a server's server_name
// names, the first naming its storage (as certbot names its lineages).
type ACMECertificate struct {
	Names []string
	Range hcl.Range // the ssl_acme that asks for it
}

// Key identifies the certificate of a set of names, in the master and the workers.
func (c ACMECertificate) Key() string { return acmeKey(c.Names) }

func acmeKey(names []string) string { return strings.Join(names, " ") }

// LetsEncrypt is the directory used when the http block has no acme block.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// acmeConf is the acme module's configuration: the settings live in the http
// context's, ssl_acme in each server's.
type acmeConf struct {
	settings *ACMESettings // set by the acme block; shared by every context
	on       bool          // ssl_acme
	onRange  hcl.Range
	key      string            // a server's: the acmeKey of its names
	certs    []ACMECertificate // the http context's, after Postconfig
	state    *acmeState        // the http context's: what the master delivered (acme.go)
}

var acmeMod = Define(func() *acmeConf { return &acmeConf{} })

// ACMEModule holds the directives of automatic certificates: the http block's acme
// block and each server's ssl_acme. The master runs the protocol (master/acme.go);
// the workers serve what it obtains and the CA's challenges (acme.go).
var ACMEModule = Register(&Module{
	Name:  "acme",
	Order: OrderCore,
	Conf:  acmeMod,
	Directives: []Directive{
		{Name: "acme", Context: CtxHTTP, Block: true, Set: setACME},
		{Name: "ssl_acme", Context: CtxServer, Set: func(c *Cmd) error {
			v, err := conf.Bool(c.Attr())
			ac := acmeMod.Cmd(c)
			ac.on, ac.onRange = v, c.Attr().Expr.Range()
			return err
		}},
	},
	Install:    installACME,
	Postconfig: collectACME,
})

// ACMESettingsTable is the directive table of the acme block.
var ACMESettingsTable = conf.Table[ACMESettings]{
	{Name: "directory", Set: conf.StringSlot(func(s *ACMESettings) *string { return &s.Directory })},
	{Name: "email", Set: conf.StringSlot(func(s *ACMESettings) *string { return &s.Email })},
	{Name: "challenges", Set: func(s *ACMESettings, it conf.Item) error {
		v, err := conf.Strings(it.Attr)
		if err != nil {
			return err
		}
		if len(v) == 0 {
			return conf.Errorf(it.Attr.Expr.Range(), "challenges needs at least one of \"http-01\", \"tls-alpn-01\"")
		}
		for _, c := range v {
			if c != "http-01" && c != "tls-alpn-01" {
				return conf.Errorf(it.Attr.Expr.Range(), "unsupported challenge type %q (\"http-01\" or \"tls-alpn-01\"; dns-01 needs a DNS provider spindle does not have)", c)
			}
		}
		s.Challenges = v
		return nil
	}},
	{Name: "ca_root", Set: conf.StringSlot(func(s *ACMESettings) *string { return &s.CARoot })},
	{Name: "storage", Set: conf.StringSlot(func(s *ACMESettings) *string { return &s.Storage })},
	{Name: "renew_before", Set: conf.DurationSlot(func(s *ACMESettings) *time.Duration { return &s.RenewBefore })},
}

// defaultACME is the settings without an acme block: Let's Encrypt, both challenge
// types, the certificates under the state directory — systemd's StateDirectory=
// ($STATE_DIRECTORY) when it set one, else the prefix's state/acme.
func defaultACME(prefix string) *ACMESettings {
	storage := filepath.Join(prefix, "state", "acme")
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		// systemd may list several, colon-separated: the first is the unit's own.
		storage = filepath.Join(strings.Split(d, ":")[0], "acme")
	}
	return &ACMESettings{Directory: LetsEncrypt, Challenges: []string{"http-01", "tls-alpn-01"}, Storage: storage}
}

func setACME(c *Cmd) error {
	b := c.Block()
	ac := acmeMod.Cmd(c)
	if ac.settings != nil {
		return conf.Errorf(b.TypeRange, "duplicate acme block (first at %s)", ac.settings.Range)
	}
	if len(b.Labels) > 0 {
		return conf.Errorf(b.LabelRanges[0], "the acme block takes no label: acme { directory = \"...\" }")
	}
	items, err := c.Items(b.Body)
	if err != nil {
		return err
	}
	prefix := c.Config().Main.Prefix
	s := defaultACME(prefix)
	s.Range = b.TypeRange
	var es conf.Errors
	for _, it := range items {
		es.Add(it.Range(), ACMESettingsTable.Apply(s, it, func(it conf.Item) error {
			return conf.Errorf(it.Range(), "unknown acme setting %q (directory, email, challenges, ca_root, storage, renew_before)", it.Name)
		}))
	}
	if len(es) > 0 {
		return es.Err()
	}
	if !strings.HasPrefix(s.Directory, "https://") {
		return conf.Errorf(b.TypeRange, "acme: directory must be an https:// URL, not %q", s.Directory)
	}
	if s.CARoot != "" {
		s.CARoot = conf.Resolve(prefix, s.CARoot)
		if _, err := os.Stat(s.CARoot); err != nil {
			return conf.Errorf(b.TypeRange, "acme: ca_root: %v", err)
		}
	}
	s.Storage = conf.Resolve(prefix, s.Storage)
	ac.settings = s
	return nil
}

// installACME makes every server answer HTTP-01 challenges before its rewrite
// phase, whatever its locations do (a `return 301 https://...` location would
// otherwise send the CA away), when the configuration asks for certificates at all.
func installACME(l *Location) error {
	if l.ctx == CtxServer && acmeWanted(l.cfg) {
		l.AddInlineHandler(PhasePostRead, OrderCore, answerHTTP01)
	}
	return nil
}

func acmeRoot(cfg *Config) *acmeConf { return acmeMod.Of(cfg.root) }

// acmeWanted: the configuration has an acme block or a server with ssl_acme.
func acmeWanted(cfg *Config) bool {
	if acmeRoot(cfg).settings != nil {
		return true
	}
	return slices.ContainsFunc(cfg.Servers, func(s *Server) bool { return acmeMod.Of(s.root).on })
}

// collectACME checks the servers with ssl_acme and lists the certificates they ask
// for. The CA validates each name by connecting to it: a wildcard needs DNS-01 and a
// regex names no host, so both are refused.
func collectACME(cfg *Config) error {
	root := acmeRoot(cfg)
	root.state = &acmeState{}
	var es conf.Errors
	seen := map[string]bool{}
	for _, srv := range cfg.Servers {
		ac := acmeMod.Of(srv.root)
		if !ac.on {
			continue
		}
		if root.settings == nil {
			root.settings = defaultACME(cfg.Main.Prefix)
			root.settings.Range = ac.onRange
		}
		var names []string
		for _, n := range srv.Names {
			switch {
			case strings.HasPrefix(n, "~"):
				es.Add(ac.onRange, conf.Errorf(ac.onRange, "ssl_acme: server_name %q is a regular expression; a certificate needs the names themselves", n))
			case strings.Contains(n, "*") || strings.HasPrefix(n, "."):
				es.Add(ac.onRange, conf.Errorf(ac.onRange, "ssl_acme: server_name %q is a wildcard, which only DNS-01 validates; spindle answers HTTP-01 and TLS-ALPN-01", n))
			case n == "" || n == "_" || n == "localhost" || !strings.Contains(n, "."):
				// nginx's catch-all conventions: not names a CA issues for.
			default:
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
		if len(names) == 0 {
			es.Add(ac.onRange, conf.Errorf(ac.onRange, "ssl_acme: %s has no server_name a CA can issue a certificate for", srv))
			continue
		}
		ssl := false
		for _, l := range srv.listens {
			ssl = ssl || l.SSL
		}
		if !ssl {
			es.Add(ac.onRange, conf.Errorf(ac.onRange, "ssl_acme: %s has no listen ... ssl address to serve the certificate on", srv))
			continue
		}
		ac.key = acmeKey(names)
		if !seen[ac.key] {
			seen[ac.key] = true
			root.certs = append(root.certs, ACMECertificate{Names: names, Range: ac.onRange})
		}
	}
	if len(es) > 0 {
		return es
	}
	return nil
}

// ACME returns the acme settings and the certificates the servers ask for; nil
// settings when no server has ssl_acme and there is no acme block.
func (c *Config) ACME() (*ACMESettings, []ACMECertificate) {
	root := acmeRoot(c)
	return root.settings, root.certs
}
