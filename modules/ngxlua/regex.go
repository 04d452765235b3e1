package ngxlua

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/internal/pcre"
)

// ngx.re on PCRE2 (internal/pcre): Go compiles (with a cache bounded by
// lua_regex_cache_max_entries) and matches; prelude.lua builds the capture tables
// from the match offsets.

// compileRegex compiles pattern with ngx_lua's option letters.
func (e *engine) compileRegex(pattern, opts string) (*pcre.Regexp, string, error) {
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
			return nil, "", fmt.Errorf("unknown flag \"%c\" (flags \"%s\")", f, opts)
		}
	}
	key := strconv.FormatUint(uint64(flags), 16) + "/" + pattern
	if re := e.regexes[key]; re != nil {
		return re, "", nil
	}
	re, err := pcre.CompileFlags(pattern, flags)
	if err != nil {
		msg := err.Error()
		if pe, ok := err.(*pcre.Error); ok {
			msg = pe.Msg
		}
		return nil, fmt.Sprintf("failed to compile regex \"%s\": pcre2_compile() failed: %s in \"%s\"", pattern, msg, pattern), nil
	}
	if e.regexes == nil {
		e.regexes = map[string]*pcre.Regexp{}
	}
	if len(e.regexes) < e.main.regexCacheMax {
		e.regexes[key] = re
	}
	return re, "", nil
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

// reExec is __sp.re_exec(subject, pattern, opts, pos): the offsets of the match
// (an array of 2*(groups+1), -1 for a group that did not take part) and the group
// names; nil if no match; nil and the error.
func (e *engine) reExec(s *luajit.State) error {
	subject := s.String(0)
	re, msg, err := e.compileRegex(s.String(1), s.String(2))
	if err != nil {
		return err
	}
	if msg != "" {
		return fail(s, msg)
	}
	pos := max(s.Int(3), 0)
	m := make([]int, 2*(re.NumSubexp()+1))
	ok, err := re.MatchAt(subject, pos, m)
	if err != nil {
		return fail(s, "pcre2_match() failed: "+err.Error())
	}
	if !ok {
		s.PushNil()
		return nil
	}
	s.PushArray(len(m))
	for _, x := range m {
		s.PushInt(x)
	}
	pushNames(s, re)
	return nil
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
	return map[string]luajit.Func{"re_exec": e.reExec, "re_all": e.reAll, "re_sub": e.reSub}
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
