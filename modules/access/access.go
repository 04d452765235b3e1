// Package access is nginx's ngx_http_access_module for spindle: allow and deny by
// address and CIDR, checked in the order written, the first match deciding. Like
// every access-phase handler it grants (NextPhase), refuses (403) or declines, and the
// core's `satisfy` combines the verdicts (httpcore's Request.access).
package access

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// Conf is the access module's per-context configuration.
type Conf struct {
	rules []rule
	owner *httpcore.Location // the context the rules were written in
}

type rule struct {
	all    bool
	prefix netip.Prefix
	deny   bool
	text   string
}

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf { return &Conf{} })

// Module is the access module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "access",
	Order: httpcore.OrderAccess,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "allow", Context: ctxAccess, Set: setRules(false)},
		{Name: "deny", Context: ctxAccess, Set: setRules(true)},
		{Name: "access_rules", Context: ctxAccess, Set: setRuleList},
	},
	Install: install,
})

const ctxAccess = httpcore.CtxHTTP | httpcore.CtxServer | httpcore.CtxLocation

func install(l *httpcore.Location) error {
	c := mod.Of(l)
	if len(c.rules) > 0 {
		l.AddInlineHandler(httpcore.PhaseAccess, httpcore.OrderAccess, c.check)
	}
	return nil
}

// add appends rules to the context's list; a context that inherited rules from its
// parent starts a list of its own, as nginx's allow/deny do.
func add(c *httpcore.Cmd, rs ...rule) {
	cf := mod.Cmd(c)
	if cf.owner != c.Loc {
		cf.rules, cf.owner = nil, c.Loc
	}
	cf.rules = append(cf.rules, rs...)
}

// allow = "10.0.0.0/8" or a list; deny likewise. Between themselves and access_rules
// they apply in the order they are written.
func setRules(deny bool) func(c *httpcore.Cmd) error {
	return func(c *httpcore.Cmd) error {
		addrs, err := conf.Strings(c.Attr())
		if err != nil {
			return err
		}
		if len(addrs) == 0 {
			return c.Errorf("%s needs an address, a CIDR block or \"all\"", c.Name())
		}
		var rs []rule
		for _, a := range addrs {
			r, err := parseRule(a, deny)
			if err != nil {
				return conf.Errorf(c.Attr().Expr.Range(), "%s: %v", c.Name(), err)
			}
			rs = append(rs, r)
		}
		add(c, rs...)
		return nil
	}
}

// access_rules = ["deny 192.168.1.1", "allow 192.168.1.0/24", "deny all"]: nginx's
// interleaved allow and deny lines, in order.
func setRuleList(c *httpcore.Cmd) error {
	e := c.Attr().Expr
	exprs := []hclsyntax.Expression{e}
	if t, ok := e.(*hclsyntax.TupleConsExpr); ok {
		exprs = t.Exprs
	}
	var rs []rule
	for _, x := range exprs {
		v, err := conf.StaticValue(x)
		if err != nil {
			return err
		}
		if v.Type() != cty.String {
			return conf.Errorf(x.Range(), "expected a rule such as \"allow 10.0.0.0/8\" or \"deny all\"")
		}
		verb, arg, _ := strings.Cut(strings.TrimSpace(v.AsString()), " ")
		arg = strings.TrimSpace(arg)
		var deny bool
		switch verb {
		case "allow":
		case "deny":
			deny = true
		default:
			return conf.Errorf(x.Range(), "a rule starts with allow or deny, got %q", v.AsString())
		}
		r, err := parseRule(arg, deny)
		if err != nil {
			return conf.Errorf(x.Range(), "%v", err)
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return c.Errorf("access_rules needs at least one rule")
	}
	add(c, rs...)
	return nil
}

func parseRule(s string, deny bool) (rule, error) {
	s = strings.TrimSpace(s)
	r := rule{deny: deny, text: s}
	if s == "all" {
		r.all = true
		return r, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return r, fmt.Errorf("invalid address or CIDR block %q", s)
		}
		// nginx masks the address and warns about low bits set; masking is what it
		// does, so do it quietly.
		r.prefix = p.Masked()
		if r.prefix.Addr().Is4In6() {
			r.prefix = netip.PrefixFrom(r.prefix.Addr().Unmap(), r.prefix.Bits()-96).Masked()
		}
		return r, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return r, fmt.Errorf("invalid address %q (expected an IPv4 or IPv6 address, a CIDR block or \"all\")", s)
	}
	a = a.Unmap()
	r.prefix = netip.PrefixFrom(a, a.BitLen())
	return r, nil
}

func (c *Conf) check(r *httpcore.Request) httpcore.Action {
	host := r.RemoteAddr()
	if ap, err := netip.ParseAddrPort(host); err == nil {
		host = ap.Addr().String()
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		// Not an IP client (a unix socket): only "all" rules apply.
		addr = netip.Addr{}
	}
	addr = addr.Unmap()
	for _, rl := range c.rules {
		if rl.all || (addr.IsValid() && rl.prefix.Contains(addr)) {
			if rl.deny {
				// Under satisfy any the core logs the refusal if nothing grants access.
				if !httpcore.CoreConfOf(r.Location()).SatisfyAny {
					r.Logf(httpcore.LogError, "access forbidden by rule")
				}
				return Deny(r, 403)
			}
			return Allow(r)
		}
	}
	return httpcore.Continue
}

// Allow is an access-phase handler's grant, spelled out: httpcore.NextPhase (nginx's
// NGX_OK). The core's access checker combines it with the other handlers' verdicts
// under satisfy.
func Allow(r *httpcore.Request) httpcore.Action { return httpcore.NextPhase }

// Deny is an access-phase handler's refusal with status, 403 or 401 (with a
// WWW-Authenticate header set): r.Error(status). Under satisfy any the core sends it
// only if no other handler grants access.
func Deny(r *httpcore.Request, status int) httpcore.Action { return r.Error(status) }
