package lua

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spindle-server/spindle/internal/pcre"
	glua "github.com/yuin/gopher-lua"
)

// ngx.re is ngx_lua's regex API on PCRE2 with its JIT, as ngx_lua's: the same syntax
// (lookarounds, backreferences, atomic groups, possessive quantifiers) and the same
// option letters: i, m, s, x, a, u, U and D change the match; j (JIT: always on where
// the platform has it), o (every regex is compiled once and cached per worker, up to
// lua_regex_cache_max_entries), d and J are accepted. An invalid regex returns nil and
// ngx_lua's "failed to compile regex" error.

type regexCache struct {
	m   map[string]*pcre.Regexp
	max int
}

type compiled struct {
	re *pcre.Regexp
}

func (v *vm) installRegex(ngx *glua.LTable) {
	L := v.L
	re := L.NewTable()
	setFuncs(L, re, map[string]glua.LGFunction{
		"match":  v.reMatch,
		"find":   v.reFind,
		"gmatch": v.reGmatch,
		"sub":    func(L *glua.LState) int { return v.reSub(L, false) },
		"gsub":   func(L *glua.LState) int { return v.reSub(L, true) },
	})
	ngx.RawSetString("re", re)
}

// compileRegex returns the compiled regex, or an error message for the caller to
// return. An unknown option letter raises, as in ngx_lua.
func (v *vm) compileRegex(L *glua.LState, pattern, opts string, argOpts int) (compiled, string) {
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
			L.ArgError(argOpts, fmt.Sprintf("unknown flag \"%c\" (flags \"%s\")", f, opts))
		}
	}
	key := strconv.FormatUint(uint64(flags), 16) + "/" + pattern
	if re := v.regexes.m[key]; re != nil {
		return compiled{re}, ""
	}
	re, err := pcre.CompileFlags(pattern, flags)
	if err != nil {
		msg := err.Error()
		if e, ok := err.(*pcre.Error); ok {
			msg = e.Msg
		}
		return compiled{}, fmt.Sprintf("failed to compile regex \"%s\": pcre2_compile() failed: %s in \"%s\"", pattern, msg, pattern)
	}
	if v.regexes.m == nil {
		v.regexes.m = map[string]*pcre.Regexp{}
	}
	if len(v.regexes.m) < v.regexes.max {
		v.regexes.m[key] = re
	}
	return compiled{re}, ""
}

// start reads ctx.pos (1-based) for match and find.
func ctxPos(ctx *glua.LTable) int {
	if ctx == nil {
		return 0
	}
	if p, ok := ctx.RawGetString("pos").(glua.LNumber); ok && p > 1 {
		return int(p) - 1
	}
	return 0
}

// matchAt finds the first match in subject at or after byte offset pos; the indexes
// are absolute. PCRE sees the bytes before pos (lookbehind, \b), as ngx_lua's ctx.pos.
// A match PCRE2 gives up on (its match limit) is an error, reported as ngx_lua's
// "pcre_exec() failed" return value.
func (c compiled) matchAt(subject string, pos int) ([]int, string) {
	m := make([]int, 2*(c.re.NumSubexp()+1))
	ok, err := c.re.MatchAt(subject, pos, m)
	if err != nil {
		return nil, "pcre2_match() failed: " + err.Error()
	}
	if !ok {
		return nil, ""
	}
	return m, ""
}

// captures builds ngx_lua's captures table: [0] the match, [n] the groups (false when
// unmatched), and the named groups by name.
func capturesTable(L *glua.LState, re *pcre.Regexp, subject string, m []int, tbl *glua.LTable) *glua.LTable {
	if tbl == nil {
		tbl = L.CreateTable(len(m)/2, 0)
	}
	names := re.SubexpNames()
	for i := 0; i*2 < len(m); i++ {
		var val glua.LValue = glua.LFalse
		if m[2*i] >= 0 {
			val = glua.LString(subject[m[2*i]:m[2*i+1]])
		}
		tbl.RawSetInt(i, val)
		if i < len(names) && names[i] != "" {
			tbl.RawSetString(names[i], val)
		}
	}
	return tbl
}

func (v *vm) reMatch(L *glua.LState) int {
	subject := L.CheckString(1)
	c, errMsg := v.compileRegex(L, L.CheckString(2), L.OptString(3, ""), 3)
	if errMsg != "" {
		L.Push(glua.LNil)
		L.Push(glua.LString(errMsg))
		return 2
	}
	ctx := L.OptTable(4, nil)
	m, errMsg := c.matchAt(subject, ctxPos(ctx))
	if m == nil {
		L.Push(glua.LNil)
		if errMsg != "" {
			L.Push(glua.LString(errMsg))
			return 2
		}
		return 1
	}
	if ctx != nil {
		ctx.RawSetString("pos", glua.LNumber(m[1]+1))
	}
	L.Push(capturesTable(L, c.re, subject, m, L.OptTable(5, nil)))
	return 1
}

func (v *vm) reFind(L *glua.LState) int {
	subject := L.CheckString(1)
	c, errMsg := v.compileRegex(L, L.CheckString(2), L.OptString(3, ""), 3)
	if errMsg != "" {
		L.Push(glua.LNil)
		L.Push(glua.LNil)
		L.Push(glua.LString(errMsg))
		return 3
	}
	ctx := L.OptTable(4, nil)
	nth := optInt(L, 5, 0)
	m, errMsg := c.matchAt(subject, ctxPos(ctx))
	if errMsg != "" {
		L.Push(glua.LNil)
		L.Push(glua.LNil)
		L.Push(glua.LString(errMsg))
		return 3
	}
	if m == nil || nth < 0 || 2*nth+1 >= len(m) || m[2*nth] < 0 {
		L.Push(glua.LNil)
		return 1
	}
	if ctx != nil {
		ctx.RawSetString("pos", glua.LNumber(m[1]+1))
	}
	L.Push(glua.LNumber(m[2*nth] + 1))
	L.Push(glua.LNumber(m[2*nth+1]))
	return 2
}

// allMatches finds the successive matches from pos, as PCRE global matching does.
func (c compiled) allMatches(subject string, limit int) [][]int {
	return c.re.FindAllStringSubmatchIndex(subject, limit)
}

func (v *vm) reGmatch(L *glua.LState) int {
	subject := L.CheckString(1)
	c, errMsg := v.compileRegex(L, L.CheckString(2), L.OptString(3, ""), 3)
	if errMsg != "" {
		L.Push(glua.LNil)
		L.Push(glua.LString(errMsg))
		return 2
	}
	all := c.allMatches(subject, -1)
	i := 0
	L.Push(L.NewFunction(func(L *glua.LState) int {
		if i >= len(all) {
			L.Push(glua.LNil)
			return 1
		}
		m := all[i]
		i++
		L.Push(capturesTable(L, c.re, subject, m, nil))
		return 1
	}))
	return 1
}

// reSub is ngx.re.sub and gsub: the replacement is a template ($0, $1, ${1}, $$) or a
// function of the captures table.
func (v *vm) reSub(L *glua.LState, global bool) int {
	subject := L.CheckString(1)
	pattern := L.CheckString(2)
	repl := L.Get(3)
	var tmpl []tmplPart
	fn, isFn := repl.(*glua.LFunction)
	if !isFn {
		s, ok := repl.(glua.LString)
		if n, isNum := repl.(glua.LNumber); isNum {
			s, ok = glua.LString(appendNumber(nil, float64(n))), true
		}
		if !ok {
			L.ArgError(3, "string or function expected")
		}
		var err error
		if tmpl, err = parseTemplate(string(s)); err != nil {
			L.Push(glua.LNil)
			L.Push(glua.LNil)
			L.Push(glua.LString(err.Error()))
			return 3
		}
	}
	c, errMsg := v.compileRegex(L, pattern, L.OptString(4, ""), 4)
	if errMsg != "" {
		L.Push(glua.LNil)
		L.Push(glua.LNil)
		L.Push(glua.LString(errMsg))
		return 3
	}
	limit := 1
	if global {
		limit = -1
	}
	all := c.allMatches(subject, limit)
	if len(all) == 0 {
		L.Push(glua.LString(subject))
		L.Push(glua.LNumber(0))
		return 2
	}
	var out []byte
	last := 0
	for _, m := range all {
		out = append(out, subject[last:m[0]]...)
		if isFn {
			L.Push(fn)
			L.Push(capturesTable(L, c.re, subject, m, nil))
			L.Call(1, 1)
			r := L.Get(-1)
			L.Pop(1)
			switch x := r.(type) {
			case glua.LString:
				out = append(out, x...)
			case glua.LNumber:
				out = appendNumber(out, float64(x))
			default:
				L.RaiseError("bad return value from the replacement function: string expected, got %s", r.Type())
			}
		} else {
			for _, p := range tmpl {
				if p.group < 0 {
					out = append(out, p.lit...)
				} else if 2*p.group+1 < len(m) && m[2*p.group] >= 0 {
					out = append(out, subject[m[2*p.group]:m[2*p.group+1]]...)
				}
			}
		}
		last = m[1]
	}
	out = append(out, subject[last:]...)
	L.Push(glua.LString(out))
	L.Push(glua.LNumber(len(all)))
	return 2
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
