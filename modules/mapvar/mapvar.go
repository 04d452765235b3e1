// Package mapvar is nginx's ngx_http_map_module for spindle: a variable whose value
// depends on another value (a variable, a template), looked up in a table of exact
// strings, host name wildcards and regular expressions. The value is computed when a
// request first uses the variable, as nginx computes it.
package mapvar

import (
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/pcre"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Module is the map module.
var Module = httpcore.Register(&httpcore.Module{
	Name: "map",
	Directives: []httpcore.Directive{
		{Name: "map", Context: httpcore.CtxHTTP, Block: true, Set: setMap},
	},
})

// table is one map block.
type table struct {
	source    *httpcore.Expr
	hostnames bool
	exact     map[string]*httpcore.Expr // lowercased source values
	head      []wildcard                // "*.example.com", ".example.com": longest first
	tail      []wildcard                // "www.example.*": longest first
	regexes   []regexEntry              // in the order written
	def       *httpcore.Expr
}

type wildcard struct {
	part  string // ".example.com" for a head wildcard, "www.example." for a tail one
	bare  bool   // ".example.com" also matches "example.com"
	value *httpcore.Expr
}

type regexEntry struct {
	re    *pcre.Regexp
	named []namedCapture
	value *httpcore.Expr
}

type namedCapture struct {
	group int
	index int // the user variable
}

// compileRegex is where the module compiles its regular expressions, with PCRE as
// nginx's map: `~RE` is case sensitive, `~*RE` not.
func compileRegex(key string) (*pcre.Regexp, error) {
	if src, ok := strings.CutPrefix(key[1:], "*"); ok {
		return pcre.CompileFlags(src, pcre.Caseless)
	}
	return pcre.Compile(key[1:])
}

// mapBlock is what the settings of one map block configure: the table, whether the
// variable is volatile, and the values, added once the block is read (hostnames
// changes how they read).
type mapBlock struct {
	*table
	cmd        *httpcore.Cmd
	volatile   bool
	values     []conf.Field
	valuesSeen bool
}

// mapSettings is the directive table of a map block, in the order an error about an
// unknown setting lists them.
var mapSettings = conf.Table[mapBlock]{
	{Name: "source", Set: func(m *mapBlock, it conf.Item) (err error) {
		m.source, err = m.cmd.Expr(it.Attr.Expr)
		return err
	}},
	{Name: "default", Set: func(m *mapBlock, it conf.Item) (err error) {
		m.def, err = m.cmd.Expr(it.Attr.Expr)
		return err
	}},
	{Name: "hostnames", Set: conf.BoolSlot(func(m *mapBlock) *bool { return &m.hostnames })},
	{Name: "volatile", Set: conf.BoolSlot(func(m *mapBlock) *bool { return &m.volatile })},
	{Name: "values", Set: func(m *mapBlock, it conf.Item) (err error) {
		m.values, err = conf.ObjectFields(it.Attr.Expr)
		m.valuesSeen = true
		return err
	}},
}

// map "name" { source = http.host, default = "0", values = { "example.com" = "1" } }.
func setMap(c *httpcore.Cmd) error {
	b := c.Block()
	if len(b.Labels) != 1 {
		return c.Errorf(`map needs one label, the variable it defines: map "name" { source = ..., values = { ... } }`)
	}
	name, nameRange := b.Labels[0], b.LabelRanges[0]
	items, err := c.Items(b.Body)
	if err != nil {
		return err
	}
	t := &table{exact: map[string]*httpcore.Expr{}}
	m := &mapBlock{table: t, cmd: c}
	if err := mapSettings.ApplyAll(m, items, "map"); err != nil {
		return err
	}
	if t.source == nil {
		return c.Errorf("map %q needs a source: the value to look up, e.g. source = http.host", name)
	}
	if !m.valuesSeen && t.def == nil {
		return c.Errorf("map %q has neither values nor a default", name)
	}
	for _, f := range m.values {
		if err := t.add(c, f); err != nil {
			return err
		}
	}
	sort.SliceStable(t.head, func(i, j int) bool { return len(t.head[i].part) > len(t.head[j].part) })
	sort.SliceStable(t.tail, func(i, j int) bool { return len(t.tail[i].part) > len(t.tail[j].part) })
	return c.DefineVar(name, nameRange, t.get, m.volatile)
}

func (t *table) add(c *httpcore.Cmd, f conf.Field) error {
	value, err := c.Expr(f.Expr)
	if err != nil {
		return err
	}
	key := f.Name
	if strings.HasPrefix(key, "~") {
		re, err := compileRegex(key)
		if err != nil {
			return conf.Errorf(f.NameRange, "invalid regular expression %q: %v", key, err)
		}
		e := regexEntry{re: re, value: value}
		for i, n := range re.SubexpNames() {
			if n == "" {
				continue
			}
			idx, err := c.DeclareVar(n, f.NameRange)
			if err != nil {
				return err
			}
			e.named = append(e.named, namedCapture{group: i, index: idx})
		}
		t.regexes = append(t.regexes, e)
		return nil
	}
	// A leading backslash escapes a value that would read as a regex ("\\~x").
	key = strings.TrimPrefix(key, `\`)
	key = strings.ToLower(key)
	if t.hostnames {
		switch {
		case strings.HasPrefix(key, "*."):
			return t.addWild(&t.head, wildcard{part: key[1:], value: value}, f.NameRange)
		case strings.HasPrefix(key, "."):
			return t.addWild(&t.head, wildcard{part: key, bare: true, value: value}, f.NameRange)
		case strings.HasSuffix(key, ".*"):
			return t.addWild(&t.tail, wildcard{part: key[:len(key)-1], value: value}, f.NameRange)
		case strings.Contains(key, "*"):
			return conf.Errorf(f.NameRange, "invalid host name wildcard %q: \"*\" goes first (\"*.example.com\") or last (\"www.example.*\")", f.Name)
		}
		key = strings.TrimSuffix(key, ".")
	}
	if _, dup := t.exact[key]; dup {
		return conf.Errorf(f.NameRange, "duplicate map value %q", f.Name)
	}
	t.exact[key] = value
	return nil
}

func (t *table) addWild(list *[]wildcard, w wildcard, rng hcl.Range) error {
	for _, o := range *list {
		if o.part == w.part && o.bare == w.bare {
			return conf.Errorf(rng, "duplicate host name wildcard")
		}
	}
	*list = append(*list, w)
	return nil
}

// get computes the variable: an exact match, then the longest "*.suffix" wildcard,
// then the longest "prefix.*", then the regexes in order, then the default — nginx's
// order.
func (t *table) get(r *httpcore.Request) string {
	src, err := t.source.String(r)
	if err != nil {
		r.Logf(httpcore.LogError, "map source: %v", err)
		return ""
	}
	key := strings.ToLower(src)
	if t.hostnames {
		key = strings.TrimSuffix(key, ".")
	}
	if v, ok := t.exact[key]; ok {
		return eval(r, v)
	}
	for _, w := range t.head {
		if strings.HasSuffix(key, w.part) && len(key) > len(w.part) || w.bare && key == w.part[1:] {
			return eval(r, w.value)
		}
	}
	for _, w := range t.tail {
		if strings.HasPrefix(key, w.part) && len(key) > len(w.part) {
			return eval(r, w.value)
		}
	}
	for _, e := range t.regexes {
		m := e.re.FindStringSubmatchIndex(src)
		if m == nil {
			continue
		}
		caps := make([]string, len(m)/2)
		for i := range caps {
			if m[2*i] >= 0 {
				caps[i] = src[m[2*i]:m[2*i+1]]
			}
		}
		for _, n := range e.named {
			r.SetUserVar(n.index, caps[n.group])
		}
		// As nginx documents: the match's captures replace the request's re[N], for the
		// value and for the directives that use them afterwards.
		r.SetCaptures(caps)
		return eval(r, e.value)
	}
	if t.def != nil {
		return eval(r, t.def)
	}
	return ""
}

func eval(r *httpcore.Request, e *httpcore.Expr) string {
	v, err := e.String(r)
	if err != nil {
		r.Logf(httpcore.LogError, "map value: %v", err)
	}
	return v
}
