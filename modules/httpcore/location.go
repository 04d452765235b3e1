package httpcore

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/hcl/v2"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/pcre"
)

// MatchKind is how a location matches the URI, as nginx's location modifiers.
type MatchKind uint8

// Location match kinds.
const (
	MatchPrefix     MatchKind = iota // location "/path"
	MatchExact                       // location "= /path"
	MatchPrefixStop                  // location "^~ /path": a match skips the regexes
	MatchRegex                       // location "~ re"
	MatchRegexCI                     // location "~* re"
	MatchNamed                       // location "@name"
	MatchNone                        // not a location (http, server, if contexts)
)

// Location is one configuration context: a location block, and also the http block,
// each server block and each if block, which carry configuration the same way.
type Location struct {
	Name   string // the label as written, "= /hello", "@fallback"; "server"/"http"/"if" otherwise
	Match  MatchKind
	Path   string // the prefix or exact path
	Regex  *pcre.Regexp
	Parent *Location
	Server *Server // nil for the http context
	Range  hcl.Range

	// Internal locations only serve internal requests (redirects, subrequests).
	Internal bool

	ctx      Context
	cfg      *Config
	confs    []any
	children locTree

	rewrite    []RewriteOp
	pendingIfs []*ifOp

	handlers      [numPhases][]orderedHandler
	run           [numPhases][]Handler
	content       Handler
	contentMod    string
	contentInline bool
	mayBlock      bool // some handler may wait: requests leave the event loop
	// waits learns, per worker, whether requests to this location whose handlers
	// run inline (Lua) wait anyway: see conn.mayBlock.
	waits         atomic.Int32
	headerFilters []orderedHeaderFilter
	bodyFilters   []orderedBodyFilter
	hfilters      []HeaderFilter
	bfilters      []BodyFilter
}

// Context is the kind of configuration context l is.
func (l *Location) Context() Context { return l.ctx }

// Config is the configuration l belongs to.
func (l *Location) Config() *Config { return l.cfg }

// String names the location for logs and errors.
func (l *Location) String() string {
	if l.Match == MatchNone {
		return l.Name
	}
	return fmt.Sprintf("location %q", l.Name)
}

func (l *Location) parseMatch(label string, rng hcl.Range) error {
	l.Name = label
	mod, arg, hasArg := strings.Cut(label, " ")
	arg = strings.TrimSpace(arg)
	switch {
	case strings.HasPrefix(label, "@"):
		l.Match = MatchNamed
		if strings.ContainsAny(label, " \t") || len(label) == 1 {
			return conf.Errorf(rng, "invalid named location %q", label)
		}
		return nil
	case hasArg && mod == "=":
		l.Match, l.Path = MatchExact, arg
	case hasArg && mod == "^~":
		l.Match, l.Path = MatchPrefixStop, arg
	case hasArg && (mod == "~" || mod == "~*"):
		expr := arg
		l.Match = MatchRegex
		if mod == "~*" {
			l.Match = MatchRegexCI
			expr = "(?i)" + expr
		}
		re, err := CompileRegex(expr)
		if err != nil {
			return conf.Errorf(rng, "%v", err)
		}
		l.Regex = re
		return nil
	case hasArg:
		return conf.Errorf(rng, "invalid location modifier %q (expected =, ^~, ~ or ~*)", mod)
	default:
		l.Match, l.Path = MatchPrefix, label
	}
	if l.Path == "" {
		return conf.Errorf(rng, "empty location path")
	}
	return nil
}

// CompileRegex compiles an nginx regular expression with PCRE2, as nginx does: the
// same syntax (lookarounds, backreferences, atomic groups) and byte semantics.
func CompileRegex(expr string) (*pcre.Regexp, error) {
	re, err := pcre.Compile(expr)
	if e, ok := err.(*pcre.Error); ok {
		return nil, fmt.Errorf("invalid regex %q: %s at offset %d", expr, e.Msg, e.Offset)
	}
	return re, err
}

func checkNested(parent, l *Location, rng hcl.Range) error {
	if parent.Match == MatchExact {
		return conf.Errorf(rng, "location %q cannot be inside the exact location %q", l.Name, parent.Name)
	}
	if parent.Match == MatchNamed {
		return conf.Errorf(rng, "location %q cannot be inside the named location %q", l.Name, parent.Name)
	}
	if (l.Match == MatchPrefix || l.Match == MatchExact || l.Match == MatchPrefixStop) &&
		(parent.Match == MatchPrefix || parent.Match == MatchPrefixStop) && !strings.HasPrefix(l.Path, parent.Path) {
		return conf.Errorf(rng, "location %q is outside location %q", l.Name, parent.Name)
	}
	return nil
}

// locTree holds the locations directly inside one context, organised for nginx's
// search: exact and prefix locations first (longest prefix wins, exact ends the
// search), then regexes in config order.
type locTree struct {
	exact    map[string]*Location
	prefixes []*Location // longest first
	regexes  []*Location
	all      []*Location
}

func (t *locTree) add(l *Location) {
	t.all = append(t.all, l)
}

func (t *locTree) finish() conf.Errors {
	var es conf.Errors
	seen := map[string]*Location{}
	for _, l := range t.all {
		key := l.Name
		switch l.Match {
		case MatchExact:
			key = "= " + l.Path
			if t.exact == nil {
				t.exact = map[string]*Location{}
			}
			t.exact[l.Path] = l
		case MatchPrefix, MatchPrefixStop:
			key = l.Path
			t.prefixes = append(t.prefixes, l)
		case MatchRegex, MatchRegexCI:
			t.regexes = append(t.regexes, l)
		}
		if prev, ok := seen[key]; ok {
			es = append(es, conf.Errorf(l.Range, "duplicate location %q (first at line %d)", l.Name, prev.Range.Start.Line))
			continue
		}
		seen[key] = l
	}
	sort.SliceStable(t.prefixes, func(i, j int) bool { return len(t.prefixes[i].Path) > len(t.prefixes[j].Path) })
	return es
}

// Results of a location search level, as nginx's NGX_OK / NGX_AGAIN / NGX_DECLINED.
const (
	findDeclined = iota // nothing matched at this level
	findPrefix          // a prefix matched; regexes of outer levels may still win
	findFinal           // an exact or regex match: the search is over
)

// find implements ngx_http_core_find_location: an exact match ends the search; else the
// longest prefix is taken and its nested locations searched; then, unless that prefix
// is "^~", this level's regexes are tried in order and the first match wins (its own
// nested locations searched in turn). It returns the location, the submatch indexes of
// the regex that matched, and the result code.
func (t *locTree) find(uri string, cur *Location) (*Location, []int, int) {
	if l, ok := t.exact[uri]; ok {
		return l, nil, findFinal
	}
	loc, rc, noregex := cur, findDeclined, false
	var caps []int
	for _, l := range t.prefixes {
		if strings.HasPrefix(uri, l.Path) {
			loc, rc, noregex = l, findPrefix, l.Match == MatchPrefixStop
			nl, ncaps, nrc := l.children.find(uri, l)
			if nrc == findFinal {
				return nl, ncaps, findFinal
			}
			loc = nl
			break
		}
	}
	if !noregex {
		for _, l := range t.regexes {
			if m := l.Regex.FindStringSubmatchIndex(uri); m != nil {
				nl, ncaps, nrc := l.children.find(uri, l)
				if nrc == findFinal && ncaps != nil {
					m = ncaps
				}
				return nl, m, findFinal
			}
		}
	}
	return loc, caps, rc
}

// FindLocation returns the location of server s that serves uri, with regex captures
// (as submatch indexes into uri) when a regex location matched. It returns nil when no
// location matches (nginx then answers 404).
func (s *Server) FindLocation(uri string) (*Location, []int) {
	l, caps, rc := s.root.children.find(uri, nil)
	if rc == findDeclined {
		return nil, nil
	}
	return l, caps
}

// foundLocation is the last FindLocation of a request: the conn's mayBlock looks the
// location up before the phases run, and find_config would do it again for the same
// URI (~160 instructions a lookup on /hello, callgrind).
type foundLocation struct {
	srv  *Server
	uri  string
	loc  *Location
	caps []int
}

// findLocation is srv.FindLocation(r.uri), remembered for the request: the result
// depends on the server and the URI alone.
func (r *Request) findLocation(srv *Server) (*Location, []int) {
	if f := &r.found; f.srv == srv && f.srv != nil && f.uri == r.uri {
		return f.loc, f.caps
	}
	loc, caps := srv.FindLocation(r.uri)
	r.found = foundLocation{srv: srv, uri: r.uri, loc: loc, caps: caps}
	return loc, caps
}

// Named returns the named location "@name" of the server, or nil.
func (s *Server) Named(name string) *Location {
	for _, l := range s.named {
		if l.Name == name {
			return l
		}
	}
	return nil
}
