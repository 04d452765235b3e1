// Package realip is nginx's ngx_http_realip_module for spindle: behind a trusted proxy
// or load balancer, the client's address is the one the proxy reports in a header
// (X-Real-IP, X-Forwarded-For, any other) or in the PROXY protocol header. It changes
// remote_addr and remote_port for the rest of the request, so that access rules, geo,
// limits and the logs see the real client; realip_remote_addr and realip_remote_port
// keep the connection's own.
package realip

import (
	"net"
	"net/netip"
	"strings"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/forwarded"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Conf is the module's per-context configuration.
type Conf struct {
	from   *forwarded.Trusted
	owner  *httpcore.Location // the context set_real_ip_from was written in
	header string             // the header that carries the address
	// proxyProtocol: real_ip_header = "proxy_protocol", the address of the
	// connection's PROXY protocol header (listen ... proxy_protocol).
	proxyProtocol bool
	recursive     bool
}

// Module is the realip module.
var Module = &httpcore.Module{
	Name: "realip",
	// Before every other module of the phases it runs in (post_read, preaccess), so
	// that they see the real address.
	Order:   httpcore.OrderCore + 10,
	NewConf: func() any { return &Conf{header: "X-Real-Ip"} },
	Directives: []httpcore.Directive{
		{Name: "set_real_ip_from", Context: ctxRealIP, Set: setFrom},
		{Name: "real_ip_header", Context: ctxRealIP, Set: setHeader},
		{Name: "real_ip_recursive", Context: ctxRealIP, Set: setRecursive},
	},
}

const ctxRealIP = httpcore.CtxHTTP | httpcore.CtxServer | httpcore.CtxLocation

func init() {
	Module.Install = install
	httpcore.Register(Module)
	httpcore.RegisterVar("realip_remote_addr", func(r *httpcore.Request) string {
		h, _ := splitHostPort(r.ConnRemoteAddr())
		return h
	})
	httpcore.RegisterVar("realip_remote_port", func(r *httpcore.Request) string {
		_, p := splitHostPort(r.ConnRemoteAddr())
		return p
	})
}

// install hooks the handler where nginx runs it: in the post_read phase for the
// server's configuration (before the server's rewrite directives), and again in the
// preaccess phase for locations that configure trusted addresses of their own.
func install(l *httpcore.Location) error {
	c := httpcore.LocConf[Conf](l, Module)
	if c.from == nil {
		return nil
	}
	if l.Server != nil && l.Server.Root() == l {
		l.AddInlineHandler(httpcore.PhasePostRead, Module.Order, c.handle)
	}
	l.AddInlineHandler(httpcore.PhasePreaccess, Module.Order, c.handle)
	return nil
}

// set_real_ip_from = ["192.168.1.0/24", "2001:db8::/32", "unix:"]: the trusted
// proxies. A context with a list of its own does not inherit its parent's.
func setFrom(c *httpcore.Cmd) error {
	addrs, err := conf.Strings(c.Attr())
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return c.Errorf("set_real_ip_from needs an address, a CIDR block or \"unix:\"")
	}
	cf := c.Conf().(*Conf)
	if cf.owner != c.Loc {
		cf.from, cf.owner = &forwarded.Trusted{}, c.Loc
	}
	for _, a := range addrs {
		if err := cf.from.Add(a); err != nil {
			return conf.Errorf(c.Attr().Expr.Range(), "set_real_ip_from: %v", err)
		}
	}
	return nil
}

func setHeader(c *httpcore.Cmd) error {
	h, err := conf.String(c.Attr())
	if err != nil {
		return err
	}
	h = strings.TrimSpace(h)
	if h == "" || strings.ContainsAny(h, " :\t") {
		return conf.Errorf(c.Attr().Expr.Range(), "real_ip_header needs a header name or \"proxy_protocol\"")
	}
	cf := c.Conf().(*Conf)
	cf.proxyProtocol = h == "proxy_protocol"
	cf.header = h
	return nil
}

func setRecursive(c *httpcore.Cmd) error {
	v, err := conf.Bool(c.Attr())
	c.Conf().(*Conf).recursive = v
	return err
}

// done marks a request whose address was set: a later phase does not set it again.
type done struct{}

func (c *Conf) handle(r *httpcore.Request) httpcore.Action {
	if r.IsSubrequest() || r.ModuleCtx(Module) != nil {
		return httpcore.Continue
	}
	host, _ := splitHostPort(r.ConnRemoteAddr())
	peer, _ := netip.ParseAddr(host) // invalid for a unix socket peer
	var list string
	switch {
	case c.proxyProtocol:
		a, p, ok := r.ProxyProtocol()
		if !ok {
			return httpcore.Continue
		}
		list = net.JoinHostPort(a, p)
	case strings.EqualFold(c.header, "X-Forwarded-For"):
		list = strings.Join(r.HeaderValues("X-Forwarded-For"), ", ")
	default:
		list = r.Header(c.header)
	}
	if list == "" {
		return httpcore.Continue
	}
	a, port, ok := c.from.Addr(peer.Unmap(), list, c.recursive)
	if !ok {
		return httpcore.Continue
	}
	addr := a.String()
	if port != "" {
		addr = net.JoinHostPort(addr, port)
	}
	r.SetRemoteAddr(addr)
	r.SetModuleCtx(Module, done{})
	return httpcore.Continue
}

func splitHostPort(a string) (string, string) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return a, ""
	}
	return h, p
}
