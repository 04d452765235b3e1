// Package geo is nginx's ngx_http_geo_module for spindle: a variable whose value
// depends on the client's IP address (or an address another value holds), from a
// table of CIDR blocks (the longest match wins) or of address ranges.
package geo

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/forwarded"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Module is the geo module.
var Module = &httpcore.Module{
	Name: "geo",
	Directives: []httpcore.Directive{
		{Name: "geo", Context: httpcore.CtxHTTP, Block: true, Set: setGeo},
	},
}

func init() { httpcore.Register(Module) }

// table is one geo block.
type table struct {
	source    *httpcore.Expr // nil: the client address
	proxies   forwarded.Trusted
	recursive bool
	def       string

	// CIDR mode: the blocks by length, longest first, per address family.
	nets       map[netip.Prefix]string
	lens4      []int
	lens6      []int
	rangesMode bool
	ranges     []addrRange // ranges mode: disjoint, sorted
}

type addrRange struct {
	from, to netip.Addr
	value    string
}

const settings = "source, default, values, delete, ranges, proxy, proxy_recursive"

// geo "name" { default = "0", values = { "10.0.0.0/8" = "1" } }.
func setGeo(c *httpcore.Cmd) error {
	b := c.Block()
	if len(b.Labels) != 1 {
		return c.Errorf(`geo needs one label, the variable it defines: geo "name" { values = { ... } }`)
	}
	items, err := c.Items(b.Body)
	if err != nil {
		return err
	}
	t := &table{nets: map[netip.Prefix]string{}}
	var values []conf.Field
	var deletes []string
	for _, it := range items {
		if it.Attr == nil {
			return conf.Errorf(it.Range(), "unknown block %q in geo (expected %s)", it.Name, settings)
		}
		var err error
		switch it.Name {
		case "source":
			t.source, err = c.Expr(it.Attr.Expr)
		case "default":
			t.def, err = conf.String(it.Attr)
		case "ranges":
			t.rangesMode, err = conf.Bool(it.Attr)
		case "proxy_recursive":
			t.recursive, err = conf.Bool(it.Attr)
		case "proxy":
			var ps []string
			if ps, err = conf.Strings(it.Attr); err == nil {
				for _, p := range ps {
					if err = t.proxies.Add(p); err != nil {
						err = conf.Errorf(it.Attr.Expr.Range(), "proxy: %v", err)
						break
					}
				}
			}
		case "delete":
			deletes, err = conf.Strings(it.Attr)
		case "values":
			values, err = conf.ObjectFields(it.Attr.Expr)
		default:
			err = conf.Errorf(it.Range(), "unknown setting %q in geo (expected %s)", it.Name, settings)
		}
		if err != nil {
			return err
		}
	}
	if t.source != nil && !t.proxies.Empty() {
		return c.Errorf("geo: proxy applies to the client address; it cannot be combined with source")
	}
	for _, f := range values {
		v, err := conf.ExprString(f.Expr)
		if err != nil {
			return err
		}
		if err := t.add(f.Name, v); err != nil {
			return conf.Errorf(f.NameRange, "%v", err)
		}
	}
	for _, d := range deletes {
		if err := t.delete(d); err != nil {
			return c.Errorf("delete: %v", err)
		}
	}
	t.finish()
	return c.DefineVar(b.Labels[0], b.LabelRanges[0], t.get, false)
}

func (t *table) add(key, value string) error {
	if !t.rangesMode {
		p, err := forwarded.ParsePrefix(key)
		if err != nil {
			return err
		}
		t.nets[p] = value
		return nil
	}
	r, err := parseRange(key)
	if err != nil {
		return err
	}
	for _, o := range t.ranges {
		if !r.to.Less(o.from) && !o.to.Less(r.from) {
			return fmt.Errorf("range %q overlaps \"%s-%s\"", key, o.from, o.to)
		}
	}
	r.value = value
	t.ranges = append(t.ranges, r)
	return nil
}

// parseRange reads "192.168.1.0-192.168.1.255"; nginx's ranges are IPv4 only.
func parseRange(s string) (addrRange, error) {
	a, b, ok := strings.Cut(s, "-")
	from, err1 := netip.ParseAddr(strings.TrimSpace(a))
	to, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || !from.Unmap().Is4() || !to.Unmap().Is4() {
		return addrRange{}, fmt.Errorf("invalid range %q (expected an IPv4 range such as \"10.0.0.0-10.0.255.255\")", s)
	}
	from, to = from.Unmap(), to.Unmap()
	if to.Less(from) {
		return addrRange{}, fmt.Errorf("invalid range %q: its end is before its start", s)
	}
	return addrRange{from: from, to: to}, nil
}

// delete removes a network (or, with ranges, a range) given in values, as nginx's
// delete does.
func (t *table) delete(s string) error {
	if !t.rangesMode {
		p, err := forwarded.ParsePrefix(s)
		if err != nil {
			return err
		}
		delete(t.nets, p)
		return nil
	}
	r, err := parseRange(s)
	if err != nil {
		return err
	}
	kept := t.ranges[:0]
	for _, o := range t.ranges {
		if o.from != r.from || o.to != r.to {
			kept = append(kept, o)
		}
	}
	t.ranges = kept
	return nil
}

func (t *table) finish() {
	seen := map[int]bool{}
	for p := range t.nets {
		k := p.Bits()
		if p.Addr().Is6() {
			k += 1000
		}
		if !seen[k] {
			seen[k] = true
			if p.Addr().Is4() {
				t.lens4 = append(t.lens4, p.Bits())
			} else {
				t.lens6 = append(t.lens6, p.Bits())
			}
		}
	}
	sort.Slice(t.ranges, func(i, j int) bool { return t.ranges[i].from.Less(t.ranges[j].from) })
	sort.Sort(sort.Reverse(sort.IntSlice(t.lens4)))
	sort.Sort(sort.Reverse(sort.IntSlice(t.lens6)))
}

// get computes the variable for the request's address.
func (t *table) get(r *httpcore.Request) string {
	a := t.addr(r)
	if !a.IsValid() {
		a = none
	}
	return t.lookup(a)
}

// none is what nginx looks up for a value that is no address (and a unix socket
// client): INADDR_NONE.
var none = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// addr is the address looked up: the source's value, else the client's address, or
// with proxy, the one X-Forwarded-For gives when the client is a trusted proxy.
func (t *table) addr(r *httpcore.Request) netip.Addr {
	if t.source != nil {
		s, err := t.source.String(r)
		if err != nil {
			r.Logf(httpcore.LogError, "geo source: %v", err)
		}
		a, _ := netip.ParseAddr(strings.TrimSpace(s))
		return a.Unmap()
	}
	peer := clientAddr(r)
	if t.proxies.Empty() {
		return peer
	}
	xff := strings.Join(r.HeaderValues("X-Forwarded-For"), ", ")
	a, _, _ := t.proxies.Addr(peer, xff, t.recursive)
	return a
}

func clientAddr(r *httpcore.Request) netip.Addr {
	host := r.RemoteAddr()
	if ap, err := netip.ParseAddrPort(host); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

func (t *table) lookup(a netip.Addr) string {
	if t.rangesMode {
		// The first range that ends at or after a is the only one that can hold it.
		i := sort.Search(len(t.ranges), func(i int) bool { return !t.ranges[i].to.Less(a) })
		if i < len(t.ranges) && !a.Less(t.ranges[i].from) {
			return t.ranges[i].value
		}
		return t.def
	}
	lens := t.lens4
	if a.Is6() {
		lens = t.lens6
	}
	for _, n := range lens {
		p, _ := a.Prefix(n)
		if v, ok := t.nets[p]; ok {
			return v
		}
	}
	return t.def
}
