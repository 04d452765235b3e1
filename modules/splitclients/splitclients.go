// Package splitclients is nginx's ngx_http_split_clients_module for spindle, for A/B
// testing: a variable whose value is chosen by the MurmurHash2 of a template, split
// by percentages, so that one client (one address, one cookie) always gets the same.
package splitclients

import (
	"strconv"
	"strings"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Module is the split_clients module.
var Module = &httpcore.Module{
	Name: "split_clients",
	Directives: []httpcore.Directive{
		{Name: "split_clients", Context: httpcore.CtxHTTP, Block: true, Set: setSplit},
	},
}

func init() { httpcore.Register(Module) }

type split struct {
	source *httpcore.Expr
	parts  []part
}

type part struct {
	bound uint32 // the hash is below it; 0 for "*", which takes the rest
	value string
}

// split_clients "variant" { source = "${remote_addr}AAA", values = { "0.5%" = ".one", "*" = "" } }.
func setSplit(c *httpcore.Cmd) error {
	b := c.Block()
	if len(b.Labels) != 1 {
		return c.Errorf(`split_clients needs one label, the variable it defines: split_clients "name" { source = ..., values = { ... } }`)
	}
	items, err := c.Items(b.Body)
	if err != nil {
		return err
	}
	s := &split{}
	var values []conf.Field
	for _, it := range items {
		if it.Attr == nil {
			return conf.Errorf(it.Range(), "unknown block %q in split_clients (expected source, values)", it.Name)
		}
		switch it.Name {
		case "source":
			s.source, err = c.Expr(it.Attr.Expr)
		case "values":
			values, err = conf.ObjectFields(it.Attr.Expr)
		default:
			err = conf.Errorf(it.Range(), "unknown setting %q in split_clients (expected source, values)", it.Name)
		}
		if err != nil {
			return err
		}
	}
	if s.source == nil {
		return c.Errorf("split_clients %q needs a source, e.g. source = \"${remote_addr}\"", b.Labels[0])
	}
	if len(values) == 0 {
		return c.Errorf("split_clients %q needs values: percentages and their values", b.Labels[0])
	}
	// As nginx: percentages in hundredths, each part's bound the running total scaled
	// to the 32-bit hash range; "*" takes what is left.
	var sum uint64
	var last uint32
	for i, f := range values {
		v, err := conf.ExprString(f.Expr)
		if err != nil {
			return err
		}
		p := part{value: v}
		if f.Name == "*" {
			if i != len(values)-1 {
				return conf.Errorf(f.NameRange, `"*" must be the last value: it takes every client the percentages above it leave`)
			}
			sum = 10000
		} else {
			pct, ok := parsePercent(f.Name)
			if !ok {
				return conf.Errorf(f.NameRange, "invalid percentage %q (expected e.g. \"0.5%%\", \"25%%\" or \"*\")", f.Name)
			}
			sum += pct
			if sum > 10000 {
				return conf.Errorf(f.NameRange, "percent total is greater than 100%%")
			}
			last += uint32(pct * 0xffffffff / 10000)
			p.bound = last
		}
		s.parts = append(s.parts, p)
	}
	return c.DefineVar(b.Labels[0], b.LabelRanges[0], s.get, false)
}

// parsePercent reads "12.34%" as 1234 hundredths, nginx's ngx_atofp with 2 places.
func parsePercent(s string) (uint64, bool) {
	s, ok := strings.CutSuffix(s, "%")
	if !ok || s == "" {
		return 0, false
	}
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 2 || whole == "" && frac == "" {
		return 0, false
	}
	frac += strings.Repeat("0", 2-len(frac))
	n, err := strconv.ParseUint(whole+frac, 10, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return n, true
}

func (s *split) get(r *httpcore.Request) string {
	key, err := s.source.String(r)
	if err != nil {
		r.Logf(httpcore.LogError, "split_clients source: %v", err)
	}
	h := MurmurHash2([]byte(key))
	for _, p := range s.parts {
		if h < p.bound || p.bound == 0 {
			return p.value
		}
	}
	return ""
}

// MurmurHash2 is nginx's ngx_murmur_hash2 (Austin Appleby's MurmurHash2 with seed 0
// and nginx's tail handling), which split_clients hashes its string with.
func MurmurHash2(data []byte) uint32 {
	const m = 0x5bd1e995
	h := uint32(len(data))
	for len(data) >= 4 {
		k := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16 | uint32(data[3])<<24
		k *= m
		k ^= k >> 24
		k *= m
		h *= m
		h ^= k
		data = data[4:]
	}
	switch len(data) {
	case 3:
		h ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
