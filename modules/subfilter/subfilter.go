// Package subfilter is nginx's ngx_http_sub_module for spindle: a body filter that
// replaces strings in responses of chosen MIME types as they stream through, a match
// being found even when it spans two pieces of the body.
package subfilter

import (
	"bytes"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// Conf is the module's per-context configuration.
type Conf struct {
	pairs        []pair
	owner        *httpcore.Location
	many         bool     // sub_filter_once = false
	types        []string // besides text/html; "*" for any
	lastModified bool
}

type pair struct {
	match, repl *httpcore.Expr
}

// Module is the sub_filter module.
var Module = &httpcore.Module{
	Name: "sub_filter",
	// Before add_header and the scripting filters see the body, as nginx's sub filter
	// sits before the gzip filter.
	Order:   httpcore.OrderHeaders - 50,
	NewConf: func() any { return &Conf{} },
	Directives: []httpcore.Directive{
		{Name: "sub_filter", Context: ctxSub, Set: setSubFilter},
		{Name: "sub_filter_once", Context: ctxSub, Set: setOnce},
		{Name: "sub_filter_types", Context: ctxSub, Set: setTypes},
		{Name: "sub_filter_last_modified", Context: ctxSub, Set: setLastModified},
	},
}

const ctxSub = httpcore.CtxHTTP | httpcore.CtxServer | httpcore.CtxLocation

func init() {
	Module.Install = install
	httpcore.Register(Module)
}

func install(l *httpcore.Location) error {
	c := httpcore.LocConf[Conf](l, Module)
	if len(c.pairs) == 0 {
		return nil
	}
	l.AddHeaderFilter(Module.Order, c.headerFilter)
	l.AddBodyFilter(Module.Order, bodyFilter)
	l.AddInlineHandler(httpcore.PhasePreaccess, Module.Order, noRanges)
	return nil
}

// noRanges drops a request's Range: a byte range of the original body is not one of
// the filtered body, and nginx answers a filtered response whole (its range filter
// sees no length). The content type is known only once the response starts, so every
// request of the location is answered whole, which HTTP allows for any response.
func noRanges(r *httpcore.Request) httpcore.Action {
	if r.Header("Range") != "" {
		r.SetHeader("Range", "")
		r.SetHeader("If-Range", "")
	}
	return httpcore.Continue
}

// sub_filter = { "string" = "replacement", ... }: strings and replacements are
// templates; strings match without regard to case. A context with sub_filter of its
// own does not inherit its parent's.
func setSubFilter(c *httpcore.Cmd) error {
	obj, ok := c.Attr().Expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return conf.Errorf(c.Attr().Expr.Range(), `sub_filter is an object: { "string" = "replacement", ... }`)
	}
	cf := c.Conf().(*Conf)
	if cf.owner != c.Loc {
		cf.pairs, cf.owner = nil, c.Loc
	}
	for _, item := range obj.Items {
		key := item.KeyExpr
		if k, ok := key.(*hclsyntax.ObjectConsKeyExpr); ok {
			key = k.Wrapped
			if name := hcl.ExprAsKeyword(k.Wrapped); name != "" && !k.ForceNonLiteral {
				// { foo = "bar" } matches the string "foo", as HCL reads such keys.
				key = &hclsyntax.LiteralValueExpr{Val: cty.StringVal(name), SrcRange: k.Range()}
			}
		}
		m, err := c.Expr(key)
		if err != nil {
			return err
		}
		if m.IsConst() {
			s, err := httpcore.ValueString(m.Const(), m.Range)
			if err != nil {
				return err
			}
			if s == "" {
				return conf.Errorf(key.Range(), "sub_filter: the string to match is empty")
			}
		}
		r, err := c.Expr(item.ValueExpr)
		if err != nil {
			return err
		}
		cf.pairs = append(cf.pairs, pair{match: m, repl: r})
	}
	if len(cf.pairs) == 0 {
		return c.Errorf("sub_filter needs at least one string and its replacement")
	}
	return nil
}

func setOnce(c *httpcore.Cmd) error {
	once, err := conf.Bool(c.Attr())
	c.Conf().(*Conf).many = !once
	return err
}

func setLastModified(c *httpcore.Cmd) error {
	v, err := conf.Bool(c.Attr())
	c.Conf().(*Conf).lastModified = v
	return err
}

func setTypes(c *httpcore.Cmd) error {
	ts, err := conf.Strings(c.Attr())
	if err != nil {
		return err
	}
	for i := range ts {
		ts[i] = strings.ToLower(strings.TrimSpace(ts[i]))
	}
	c.Conf().(*Conf).types = ts
	return nil
}

func (c *Conf) wants(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt == "text/html" {
		return true
	}
	for _, t := range c.types {
		if t == "*" || t == mt {
			return true
		}
	}
	return false
}

// state is a response being filtered.
type state struct {
	pats  [][]byte // lowercased strings to match; nil once replaced under once
	repls [][]byte
	once  bool
	left  int    // patterns not yet replaced (once)
	carry []byte // the end of the last piece, which may begin a match
	max   int    // the longest pattern
	lower []byte // scratch: the lowercased window
	next  []int  // scratch: per pattern, its next occurrence (see filter)
}

func (c *Conf) headerFilter(r *httpcore.Request) error {
	h := r.RespHeader()
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = httpcore.CoreConfOf(r.Location()).DefaultType
	}
	if r.ContentLength() == 0 || !c.wants(ct) || h.Get("Content-Encoding") != "" {
		return nil
	}
	st := &state{once: !c.many}
	for _, p := range c.pairs {
		m, err := p.match.String(r)
		if err != nil {
			return err
		}
		if m == "" {
			continue
		}
		rep, err := p.repl.String(r)
		if err != nil {
			return err
		}
		st.pats = append(st.pats, []byte(lowerASCII(m)))
		st.repls = append(st.repls, []byte(rep))
		st.max = max(st.max, len(m))
	}
	if len(st.pats) == 0 {
		return nil
	}
	st.left = len(st.pats)
	r.SetModuleCtx(Module, st)
	if r.Parent() == nil {
		r.SetContentLength(-1)
		h.Del("Content-Length")
		h.Del("Accept-Ranges")
	}
	if !c.lastModified {
		h.Del("Last-Modified")
		h.Del("ETag")
	} else if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		// The body changes: the tag can only say the content is equivalent.
		h.Set("ETag", "W/"+et)
	}
	return nil
}

func bodyFilter(r *httpcore.Request, chunk []byte, last bool) ([]byte, error) {
	st, _ := r.ModuleCtx(Module).(*state)
	if st == nil {
		return chunk, nil
	}
	return st.filter(chunk, last), nil
}

// filter replaces matches in carry+chunk and keeps back the longest tail that may
// begin a match completed by the next piece.
func (st *state) filter(chunk []byte, last bool) []byte {
	data := chunk
	if len(st.carry) > 0 {
		data = append(st.carry, chunk...)
		st.carry = nil
	}
	if st.left == 0 {
		return data
	}
	st.lower = appendLower(st.lower[:0], data)
	low := st.lower
	out := make([]byte, 0, len(data))
	pos := 0
	// next[i] is where pattern i next occurs at or after pos (-1: nowhere in this
	// piece), searched again only once pos has passed it: a pattern that does not occur
	// costs one scan per piece, not one per replacement of another.
	st.next = st.next[:0]
	for range st.pats {
		st.next = append(st.next, -2)
	}
	for pos < len(data) && st.left > 0 {
		at, which := -1, -1
		for i, p := range st.pats {
			if p == nil {
				continue
			}
			if n := st.next[i]; n == -2 || n >= 0 && n < pos {
				st.next[i] = -1
				if j := bytes.Index(low[pos:], p); j >= 0 {
					st.next[i] = pos + j
				}
			}
			if n := st.next[i]; n >= 0 && (at < 0 || n < at) {
				at, which = n, i
			}
		}
		if at < 0 {
			break
		}
		out = append(out, data[pos:at]...)
		out = append(out, st.repls[which]...)
		pos = at + len(st.pats[which])
		if st.once {
			st.pats[which] = nil
			st.left--
		}
	}
	keep := 0
	if !last && st.left > 0 {
		keep = st.partial(low[pos:])
	}
	out = append(out, data[pos:len(data)-keep]...)
	if keep > 0 {
		st.carry = append([]byte(nil), data[len(data)-keep:]...)
	}
	return out
}

// partial is the length of the longest tail of low that is a proper prefix of a
// pattern still looked for.
func (st *state) partial(low []byte) int {
	for n := min(len(low), st.max-1); n > 0; n-- {
		tail := low[len(low)-n:]
		for _, p := range st.pats {
			if p != nil && len(p) > n && bytes.Equal(p[:n], tail) {
				return n
			}
		}
	}
	return 0
}

func appendLower(dst, s []byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(s))[:n+len(s)]
	for i, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[n+i] = c
	}
	return dst
}

func lowerASCII(s string) string { return string(appendLower(nil, []byte(s))) }
