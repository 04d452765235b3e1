package httpcore

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/pcre"
)

// Server is one server block.
type Server struct {
	Names []string // server_name as written
	Range hcl.Range

	cfg     *Config
	root    *Location
	listens []Listen
	named   []*Location

	exact    map[string]bool
	wildHead []string // "*.example.com" stored as ".example.com"
	wildTail []string // "www.example.*" stored as "www.example."
	regexes  []*pcre.Regexp

	tls *serverTLS // the server's TLS settings, for its addresses with the ssl flag
}

// Root is the server block's own configuration context.
func (s *Server) Root() *Location { return s.root }

// Listens are the server's listen addresses.
func (s *Server) Listens() []Listen { return s.listens }

// Listen is one listen address with its options.
type Listen struct {
	Addr          string // normalised host:port
	DefaultServer bool
	Backlog       int
	// SSL: connections on the address speak TLS (the "ssl" flag; one server's flag
	// makes the whole address TLS, as in nginx).
	SSL bool
	// ProxyProtocol: connections start with a PROXY protocol header (proxyproto.go).
	ProxyProtocol bool
	// HTTP2: the address speaks HTTP/2 as well: ALPN h2 with ssl, prior knowledge
	// (h2c) without (the "http2" flag; one server's flag makes the whole address so).
	HTTP2 bool
	Range hcl.Range
}

// ParseListen parses nginx's listen syntax: "127.0.0.1:8080", "8080", "[::1]:80",
// "*:80", followed by options default_server, backlog=N, reuseport, ssl, http2 and
// proxy_protocol.
func ParseListen(s string, rng hcl.Range) (Listen, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return Listen{}, conf.Errorf(rng, "empty listen address")
	}
	l := Listen{Backlog: 511, Range: rng}
	addr := f[0]
	if _, err := strconv.Atoi(addr); err == nil {
		addr = "0.0.0.0:" + addr
	}
	if strings.HasPrefix(addr, "*:") {
		addr = "0.0.0.0" + addr[1:]
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Listen{}, conf.Errorf(rng, "invalid listen address %q: %v", f[0], err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return Listen{}, conf.Errorf(rng, "invalid port in listen address %q", f[0])
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if ip := net.ParseIP(host); ip == nil {
		if host != "localhost" {
			return Listen{}, conf.Errorf(rng, "listen address %q: host must be an IP address", f[0])
		}
		host = "127.0.0.1"
	} else {
		host = ip.String()
	}
	l.Addr = net.JoinHostPort(host, strconv.Itoa(p))
	for _, opt := range f[1:] {
		switch {
		case opt == "default_server" || opt == "default":
			l.DefaultServer = true
		case strings.HasPrefix(opt, "backlog="):
			n, err := strconv.Atoi(opt[len("backlog="):])
			if err != nil || n < 1 {
				return Listen{}, conf.Errorf(rng, "invalid backlog in %q", opt)
			}
			l.Backlog = n
		case opt == "ssl":
			l.SSL = true
		case opt == "proxy_protocol":
			l.ProxyProtocol = true
		case opt == "http2":
			l.HTTP2 = true
		case opt == "reuseport":
			// spindle always gives each worker slot its own SO_REUSEPORT socket.
		default:
			return Listen{}, conf.Errorf(rng, "unknown listen option %q", opt)
		}
	}
	return l, nil
}

func (s *Server) addName(name string, rng hcl.Range) error {
	if strings.HasPrefix(name, "~") {
		// nginx matches server_name regexes caselessly against the lowercased host; the
		// pattern itself keeps its case (lowercasing it would turn \W into \w).
		re, err := CompileRegex("(?i)" + strings.TrimSpace(name[1:]))
		if err != nil {
			return conf.Errorf(rng, "server_name: %v", err)
		}
		s.regexes = append(s.regexes, re)
		s.Names = append(s.Names, name)
		return nil
	}
	name = strings.ToLower(name)
	switch {
	case strings.HasPrefix(name, "*."):
		s.wildHead = append(s.wildHead, name[1:])
	case strings.HasPrefix(name, "."):
		// ".example.com" is example.com and *.example.com.
		s.wildHead = append(s.wildHead, name)
		s.exactName(name[1:])
	case strings.HasSuffix(name, ".*"):
		s.wildTail = append(s.wildTail, name[:len(name)-1])
	case strings.Contains(name, "*"):
		return conf.Errorf(rng, "invalid server name %q: a wildcard must be a leading \"*.\" or a trailing \".*\"", name)
	default:
		s.exactName(name)
	}
	s.Names = append(s.Names, name)
	return nil
}

func (s *Server) exactName(n string) {
	if s.exact == nil {
		s.exact = map[string]bool{}
	}
	s.exact[n] = true
}

// addrServers are the servers listening on one address, for name-based selection.
type addrServers struct {
	listen  Listen
	servers []*Server
	def     *Server
	tls     *tls.Config // TLS address: selects the server's settings by SNI (tls.go)
}

func (c *Config) addServer(srv *Server) error {
	for _, l := range srv.listens {
		as := c.byAddr[l.Addr]
		if as == nil {
			as = &addrServers{listen: l}
			c.byAddr[l.Addr] = as
			c.Listens = append(c.Listens, l)
		}
		for _, other := range as.servers {
			if other == srv {
				return conf.Errorf(l.Range, "duplicate listen %s", l.Addr)
			}
		}
		if l.SSL && !as.listen.SSL {
			as.listen.SSL = true
			for i := range c.Listens {
				if c.Listens[i].Addr == l.Addr {
					c.Listens[i].SSL = true
				}
			}
		}
		if l.HTTP2 {
			markHTTP2(c, as)
		}
		as.servers = append(as.servers, srv)
		if l.ProxyProtocol {
			// An option of the socket: one server asking for it is enough, as in nginx.
			as.listen.ProxyProtocol = true
			for i := range c.Listens {
				if c.Listens[i].Addr == l.Addr {
					c.Listens[i].ProxyProtocol = true
				}
			}
		}
		if l.DefaultServer {
			if as.def != nil && as.listen.DefaultServer {
				return conf.Errorf(l.Range, "a duplicate default server for %s", l.Addr)
			}
			as.def = srv
			as.listen.DefaultServer = true
			for i := range c.Listens {
				if c.Listens[i].Addr == l.Addr {
					c.Listens[i].DefaultServer = true
				}
			}
		} else if as.def == nil {
			as.def = srv
		}
	}
	return nil
}

// selectServer picks the server for a connection accepted on addr and a request for
// host, as nginx does: exact name, longest leading wildcard, longest trailing wildcard,
// first matching regex, else the address's default server.
func (c *Config) selectServer(addr string, host []byte) *Server {
	return c.byAddr[addr].selectServer(host)
}

// selectServer is Config.selectServer on the address's servers: a connection has
// them (conn.as is its engine's config's byAddr[conn.as.listen.Addr], from Serve),
// so its requests skip the map lookup by address, ~130 instructions a request
// (callgrind, BenchmarkLoopHello).
func (as *addrServers) selectServer(host []byte) *Server {
	if as == nil {
		return nil
	}
	if len(as.servers) == 1 || len(host) == 0 {
		return as.def
	}
	h := normalizeHost(host)
	for _, s := range as.servers {
		if s.exact[h] {
			return s
		}
	}
	var best *Server
	bestLen := 0
	for _, s := range as.servers {
		for _, w := range s.wildHead {
			if strings.HasSuffix(h, w) && len(w) > bestLen {
				best, bestLen = s, len(w)
			}
		}
	}
	if best != nil {
		return best
	}
	for _, s := range as.servers {
		for _, w := range s.wildTail {
			if strings.HasPrefix(h, w) && len(w) > bestLen {
				best, bestLen = s, len(w)
			}
		}
	}
	if best != nil {
		return best
	}
	for _, s := range as.servers {
		for _, re := range s.regexes {
			if re.MatchString(h) {
				return s
			}
		}
	}
	return as.def
}

// normalizeHost lowercases the Host header and strips its port and a trailing dot.
func normalizeHost(host []byte) string {
	h := string(host)
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[:i+1]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h)
}

// ServerFor returns the server that serves host on addr, or nil if nothing listens on
// addr (exported for tests of server selection).
func (c *Config) ServerFor(addr, host string) *Server { return c.selectServer(addr, []byte(host)) }

func (s *Server) String() string {
	if len(s.Names) > 0 {
		return fmt.Sprintf("server %s", s.Names[0])
	}
	return fmt.Sprintf("server at line %d", s.Range.Start.Line)
}
