package ngxlua

import (
	"fmt"
	"strconv"
	"strings"

	"unsafe"

	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/internal/pcre"
)

// ngx.re on PCRE2 (internal/pcre): Go compiles, with a cache bounded by
// lua_regex_cache_max_entries. ngx.re.match and find of a cached pattern match in C
// through the FFI (ngxabi.c's spindle_re_exec, the pattern's pointer from
// re_compile): per call in a Lua loop, find 480-850 ns through Go, 88-100 through
// the FFI (OpenResty: 63-81); match 1,000-1,500 -> 240-460 (OpenResty: 325-555).
// The rest (gmatch, sub, gsub, split) and uncached patterns match in Go.

// regexFlags parses ngx_lua's option letters.
func regexFlags(opts string) (pcre.Flags, error) {
	var flags pcre.Flags
	for _, f := range opts {
		switch f {
		case 'i':
			flags |= pcre.Caseless
		case 'm':
			flags |= pcre.Multiline
		case 's':
			flags |= pcre.Dotall
		case 'x':
			flags |= pcre.Extended
		case 'a':
			flags |= pcre.Anchored
		case 'u':
			flags |= pcre.UTF
		case 'U':
			flags |= pcre.NoUTFCheck
		case 'D':
			flags |= pcre.DupNames
		case 'j', 'o', 'J', 'd':
		default:
			return 0, fmt.Errorf("unknown flag \"%c\" (flags \"%s\")", f, opts)
		}
	}
	return flags, nil
}

// reKey is a compiled regex's key in the worker's cache.
type reKey struct {
	flags   pcre.Flags
	pattern string
}

// compileRegex compiles pattern with ngx_lua's option letters, or finds it in the
// cache. pattern may be a view of Lua's string (argView): it is copied only when
// the regex is cached.
func (e *engine) compileRegex(pattern, opts string) (*pcre.Regexp, string, error) {
	flags, err := regexFlags(opts)
	if err != nil {
		return nil, "", err
	}
	if re := e.regexes[reKey{flags, pattern}]; re != nil {
		return re, "", nil
	}
	pattern = strings.Clone(pattern)
	re, err := pcre.CompileFlags(pattern, flags)
	if err != nil {
		msg := err.Error()
		if pe, ok := err.(*pcre.Error); ok {
			msg = pe.Msg
		}
		return nil, fmt.Sprintf("failed to compile regex \"%s\": pcre2_compile() failed: %s in \"%s\"", pattern, msg, pattern), nil
	}
	if e.regexes == nil {
		e.regexes = map[reKey]*pcre.Regexp{}
	}
	if len(e.regexes) < e.main.regexCacheMax {
		e.regexes[reKey{flags, pattern}] = re
	}
	return re, "", nil
}

// argView is argument i's string in place, valid until the function returns: for
// what is read and not kept.
func argView(s *luajit.State, i int) string {
	b := s.Bytes(i)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// ovector returns the engine's match offsets buffer sized for re.
func (e *engine) ovector(re *pcre.Regexp) []int {
	n := 2 * (re.NumSubexp() + 1)
	if cap(e.ovec) < n {
		e.ovec = make([]int, n)
	}
	return e.ovec[:n]
}

// reCompile is __sp.re_compile(pattern, opts): the compiled pattern (a pointer for
// spindle_re_exec), its offsets per match (2 per group and the match) and its group
// names, for prelude.lua to match through the FFI. The pattern must stay compiled:
// nil when the cache is full (the caller then matches through re_match); nil and
// the error message when it does not compile.
func (e *engine) reCompile(s *luajit.State) error {
	pattern, opts := argView(s, 0), argView(s, 1)
	re, msg, err := e.compileRegex(pattern, opts)
	if err != nil {
		return err
	}
	if msg != "" {
		return fail(s, msg)
	}
	if flags, _ := regexFlags(opts); e.regexes[reKey{flags, pattern}] != re {
		s.PushNil()
		return nil
	}
	s.PushPointer(re.Code())
	s.PushInt(2 * (re.NumSubexp() + 1))
	pushNames(s, re)
	return nil
}

// reMatch is __sp.re_match(subject, pattern, opts, pos): ngx.re.match's table of
// captures ([0] the match, [i] group i or false, and the named groups) and where
// the match ends; nil if no match; nil and the error.
func (e *engine) reMatch(s *luajit.State) error {
	subject := argView(s, 0)
	re, msg, err := e.compileRegex(argView(s, 1), argView(s, 2))
	if err != nil {
		return err
	}
	if msg != "" {
		return fail(s, msg)
	}
	m := e.ovector(re)
	ok, err := re.MatchAt(subject, max(s.Int(3), 0), m)
	if err != nil {
		return fail(s, "pcre2_match() failed: "+err.Error())
	}
	if !ok {
		s.PushNil()
		return nil
	}
	names := re.SubexpNames()
	n := len(m) / 2
	for _, name := range names {
		if name != "" {
			n++
		}
	}
	s.PushTable(n)
	group := func(i int) {
		if a := m[2*i]; a >= 0 {
			s.PushString(subject[a:m[2*i+1]])
		} else {
			s.PushBool(false)
		}
	}
	for i := range len(m) / 2 {
		s.PushInt(i)
		group(i)
	}
	for i, name := range names {
		if name != "" && 2*i < len(m) {
			s.PushString(name)
			group(i)
		}
	}
	s.PushInt(m[1])
	return nil
}

// reFind is __sp.re_find(subject, pattern, opts, pos, nth): ngx.re.find's from and
// to (1-based, inclusive) of the match or its group nth, and where the match ends;
// nil if no match (or no such group); nil, nil and the error.
func (e *engine) reFind(s *luajit.State) error {
	subject := argView(s, 0)
	re, msg, err := e.compileRegex(argView(s, 1), argView(s, 2))
	if err != nil {
		return err
	}
	if msg != "" {
		s.PushNil()
		s.PushNil()
		s.PushString(msg)
		return nil
	}
	m := e.ovector(re)
	ok, err := re.MatchAt(subject, max(s.Int(3), 0), m)
	if err != nil {
		s.PushNil()
		s.PushNil()
		s.PushString("pcre2_match() failed: " + err.Error())
		return nil
	}
	nth := s.Int(4)
	if !ok || nth < 0 || 2*nth+2 > len(m) || m[2*nth] < 0 {
		s.PushNil()
		return nil
	}
	s.PushInt(m[2*nth] + 1)
	s.PushInt(m[2*nth+1])
	s.PushInt(m[1])
	return nil
}

// pushNames pushes the names of re's groups as an array (group i at i+1, "" when
// unnamed), or nil when none has a name.
func pushNames(s *luajit.State, re *pcre.Regexp) {
	names := re.SubexpNames()
	named := false
	for _, n := range names {
		named = named || n != ""
	}
	if !named {
		s.PushNil()
		return
	}
	s.PushArray(len(names))
	for _, n := range names {
		s.PushString(n)
	}
}

// reAll is __sp.re_all(subject, pattern, opts, limit): every match's offsets, one
// flat array, the number of offsets per match, and the group names.
func (e *engine) reAll(s *luajit.State) error {
	subject := s.String(0)
	re, msg, err := e.compileRegex(s.String(1), s.String(2))
	if err != nil {
		return err
	}
	if msg != "" {
		return fail(s, msg)
	}
	all := re.FindAllStringSubmatchIndex(subject, s.Int(3))
	per := 2 * (re.NumSubexp() + 1)
	s.PushArray(len(all) * per)
	for _, m := range all {
		for i := 0; i < per; i++ {
			if i < len(m) {
				s.PushInt(m[i])
			} else {
				s.PushInt(-1)
			}
		}
	}
	s.PushInt(per)
	pushNames(s, re)
	return nil
}

// reSub is __sp.re_sub(subject, pattern, template, opts, global): ngx.re.sub and
// gsub with a string replacement.
func (e *engine) reSub(s *luajit.State) error {
	subject := s.String(0)
	tmpl, err := parseTemplate(strArg(s, 2))
	if err != nil {
		s.PushNil()
		s.PushNil()
		s.PushString(err.Error())
		return nil
	}
	re, msg, err := e.compileRegex(s.String(1), s.String(3))
	if err != nil {
		return err
	}
	if msg != "" {
		s.PushNil()
		s.PushNil()
		s.PushString(msg)
		return nil
	}
	limit := 1
	if s.Bool(4) {
		limit = -1
	}
	all := re.FindAllStringSubmatchIndex(subject, limit)
	if len(all) == 0 {
		s.PushString(subject)
		s.PushInt(0)
		return nil
	}
	var out []byte
	last := 0
	for _, m := range all {
		out = append(out, subject[last:m[0]]...)
		for _, p := range tmpl {
			if p.group < 0 {
				out = append(out, p.lit...)
			} else if 2*p.group+1 < len(m) && m[2*p.group] >= 0 {
				out = append(out, subject[m[2*p.group]:m[2*p.group+1]]...)
			}
		}
		last = m[1]
	}
	out = append(out, subject[last:]...)
	s.PushBytes(out)
	s.PushInt(len(all))
	return nil
}

func (e *engine) reFuncs() map[string]luajit.Func {
	return map[string]luajit.Func{"re_match": e.reMatch, "re_compile": e.reCompile, "re_find": e.reFind, "re_all": e.reAll, "re_sub": e.reSub}
}

type tmplPart struct {
	lit   string
	group int // -1 for a literal
}

func parseTemplate(s string) ([]tmplPart, error) {
	var parts []tmplPart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, tmplPart{lit: lit.String(), group: -1})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			lit.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("invalid capturing variable name at the end of %q", s)
		}
		switch c := s[i+1]; {
		case c == '$':
			lit.WriteByte('$')
			i++
		case c >= '0' && c <= '9':
			j := i + 1
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			n, _ := strconv.Atoi(s[i+1 : j])
			flush()
			parts = append(parts, tmplPart{group: n})
			i = j - 1
		case c == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return nil, fmt.Errorf("the closing bracket in %q is missing", s)
			}
			n, err := strconv.Atoi(s[i+2 : i+2+end])
			if err != nil {
				return nil, fmt.Errorf("invalid capturing variable name in %q", s)
			}
			flush()
			parts = append(parts, tmplPart{group: n})
			i += 2 + end
		default:
			return nil, fmt.Errorf("invalid capturing variable name in %q", s)
		}
	}
	flush()
	return parts, nil
}
