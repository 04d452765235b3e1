package accesslog

import (
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// A log format is a template over request variables, compiled once to a list of
// operations: literal text, variables (whose values are escaped as the format says)
// and HCL expressions. Formats accept both spindle's `${var}` interpolations and
// nginx's `$var` in literal text, so that a format copied from nginx.conf works as it
// is: HCL keeps a `$` not followed by `{` as literal text.

// Escaping is how variable values are written into a line (nginx's escape=).
type Escaping uint8

// The escapings of nginx's log_format.
const (
	// EscapeDefault writes `"`, `\`, control characters and bytes >= 0x7f as \xHH and a
	// variable without a value as "-".
	EscapeDefault Escaping = iota
	// EscapeJSON escapes as a JSON string body; a variable without a value writes
	// nothing.
	EscapeJSON
	// EscapeNone writes values as they are; a variable without a value writes nothing.
	EscapeNone
)

func parseEscaping(s string) (Escaping, bool) {
	switch s {
	case "default":
		return EscapeDefault, true
	case "json":
		return EscapeJSON, true
	case "none":
		return EscapeNone, true
	}
	return 0, false
}

type opKind uint8

const (
	opLiteral opKind = iota
	opBuiltin        // a built-in variable, read by name
	opPrefix         // ns.NAME (http.user_agent): has a value only when present
	opUser           // a user variable: has a value once set
	opCapture        // re[N]
	opExpr           // any other HCL expression
)

type op struct {
	kind    opKind
	lit     string
	name    string // variable name as httpcore.Request.Var takes it
	user    int    // user variable index, resolved once the whole config is read
	n       int    // capture number
	expr    *httpcore.Expr
	emptyOK bool // a built-in variable whose empty value is a value (is_args)
	rng     hcl.Range
}

// format is a compiled log_format.
type format struct {
	name   string
	escape Escaping
	ops    []op
	rng    hcl.Range
}

// The nginx variables whose empty value is still a value (written as "" rather than
// "-"): everything else that is empty counts as not found, as nginx's $args, $http_*,
// $remote_user, $content_type... do.
var emptyIsValue = map[string]bool{"is_args": true, "https": true, "server_name": true}

// varIndex knows the variable names the core and modules registered, to tell built-in
// variables from namespaces when compiling.
var varIndex = sync.OnceValue(func() (idx struct {
	builtin  map[string]bool
	prefixes []string // longest first, so that sent_http_ wins over http_
}) {
	idx.builtin = map[string]bool{}
	for _, n := range httpcore.VarNames() {
		if p, ok := strings.CutSuffix(n, ".NAME"); ok {
			idx.prefixes = append(idx.prefixes, p)
		} else {
			idx.builtin[n] = true
		}
	}
	sort.Slice(idx.prefixes, func(i, j int) bool { return len(idx.prefixes[i]) > len(idx.prefixes[j]) })
	return idx
})

// compiler turns format text into operations. cmd is nil for the predefined formats,
// which use only variables.
type compiler struct {
	cmd *httpcore.Cmd
	ops []op
}

func (c *compiler) literal(s string) {
	if s == "" {
		return
	}
	if n := len(c.ops); n > 0 && c.ops[n-1].kind == opLiteral {
		c.ops[n-1].lit += s
		return
	}
	c.ops = append(c.ops, op{kind: opLiteral, lit: s})
}

// text compiles literal text, in which nginx's `$name` and `${name}` are variables.
func (c *compiler) text(s string, rng hcl.Range) error {
	for s != "" {
		i := strings.IndexByte(s, '$')
		if i < 0 || i == len(s)-1 {
			c.literal(s)
			return nil
		}
		c.literal(s[:i])
		s = s[i+1:]
		bracket := s[0] == '{'
		if bracket {
			s = s[1:]
		}
		j := 0
		for j < len(s) && isNameByte(s[j]) {
			j++
		}
		name := s[:j]
		s = s[j:]
		if bracket {
			if s == "" || s[0] != '}' {
				return conf.Errorf(rng, "the closing bracket in \"${%s\" is missing", name)
			}
			s = s[1:]
		}
		if name == "" {
			// A lone "$" is text, as in "cost: $ 5".
			c.literal("$")
			if bracket {
				c.literal("{}")
			}
			continue
		}
		c.nginxVar(name, rng)
	}
	return nil
}

func isNameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_'
}

// nginxVar compiles an nginx variable name: a built-in variable, a namespace written
// nginx's way (http_user_agent, sent_http_content_type, arg_id, cookie_sid), a capture
// ($1) or a user variable.
func (c *compiler) nginxVar(name string, rng hcl.Range) {
	idx := varIndex()
	switch {
	case idx.builtin[name]:
		c.ops = append(c.ops, op{kind: opBuiltin, name: name, emptyOK: emptyIsValue[name], rng: rng})
		return
	case allDigits(name):
		n, _ := strconv.Atoi(name)
		c.ops = append(c.ops, op{kind: opCapture, n: n, rng: rng})
		return
	}
	for _, p := range idx.prefixes {
		if key, ok := strings.CutPrefix(name, p+"_"); ok && key != "" {
			c.ops = append(c.ops, op{kind: opPrefix, name: p + "." + key, rng: rng})
			return
		}
	}
	c.ops = append(c.ops, op{kind: opUser, name: name, user: -1, rng: rng})
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// expr compiles one part of an HCL template: a literal, a variable reference or an
// expression.
func (c *compiler) expr(e hclsyntax.Expression) error {
	switch x := e.(type) {
	case *hclsyntax.LiteralValueExpr:
		if x.Val.Type() == cty.String {
			return c.text(x.Val.AsString(), x.SrcRange)
		}
	case *hclsyntax.TemplateExpr:
		for _, p := range x.Parts {
			if err := c.expr(p); err != nil {
				return err
			}
		}
		return nil
	case *hclsyntax.TemplateWrapExpr:
		return c.expr(x.Wrapped)
	case *hclsyntax.ScopeTraversalExpr:
		if o, ok, err := c.traversal(x.Traversal); ok || err != nil {
			if err == nil {
				c.ops = append(c.ops, o)
			}
			return err
		}
	}
	if c.cmd == nil {
		return conf.Errorf(e.Range(), "expressions are not allowed here")
	}
	ex, err := c.cmd.Expr(e)
	if err != nil {
		return err
	}
	if ex.IsConst() {
		s, err := httpcore.ValueString(ex.Const(), e.Range())
		if err != nil {
			return err
		}
		c.literal(s)
		return nil
	}
	c.ops = append(c.ops, op{kind: opExpr, expr: ex, rng: e.Range()})
	return nil
}

// traversal compiles a plain variable reference: uri, http.user_agent, re[1], myvar.
func (c *compiler) traversal(tr hcl.Traversal) (op, bool, error) {
	idx := varIndex()
	root := tr.RootName()
	rng := tr.SourceRange()
	switch {
	case idx.builtin[root] && len(tr) == 1:
		return op{kind: opBuiltin, name: root, emptyOK: emptyIsValue[root], rng: rng}, true, nil
	case root == "re" && len(tr) == 2:
		if key, ok := traversalKey(tr[1]); ok && allDigits(key) {
			n, _ := strconv.Atoi(key)
			return op{kind: opCapture, n: n, rng: rng}, true, nil
		}
		return op{}, false, conf.Errorf(rng, "re needs a capture number: re[1]")
	case len(tr) == 2:
		for _, p := range idx.prefixes {
			if p == root {
				key, ok := traversalKey(tr[1])
				if !ok {
					return op{}, false, conf.Errorf(rng, "%s needs a name: %s.NAME", root, root)
				}
				return op{kind: opPrefix, name: p + "." + key, rng: rng}, true, nil
			}
		}
	case len(tr) == 1:
		return op{kind: opUser, name: root, user: -1, rng: rng}, true, nil
	}
	return op{}, false, nil
}

func traversalKey(t hcl.Traverser) (string, bool) {
	switch s := t.(type) {
	case hcl.TraverseAttr:
		return s.Name, true
	case hcl.TraverseIndex:
		switch s.Key.Type() {
		case cty.String:
			return s.Key.AsString(), true
		case cty.Number:
			return s.Key.AsBigFloat().Text('f', -1), true
		}
	}
	return "", false
}

// finish drops one trailing newline: a heredoc format ends with one, and every line
// gets its own.
func (c *compiler) finish() []op {
	if n := len(c.ops); n > 0 && c.ops[n-1].kind == opLiteral {
		c.ops[n-1].lit = strings.TrimSuffix(c.ops[n-1].lit, "\n")
		if c.ops[n-1].lit == "" {
			c.ops = c.ops[:n-1]
		}
	}
	return c.ops
}

// compileFormat compiles a format: a string or template, or a list of them written one
// after the other (nginx's format given in several strings).
func compileFormat(cmd *httpcore.Cmd, e hclsyntax.Expression) ([]op, error) {
	c := &compiler{cmd: cmd}
	if t, ok := e.(*hclsyntax.TupleConsExpr); ok {
		for _, x := range t.Exprs {
			if err := c.expr(x); err != nil {
				return nil, err
			}
		}
	} else if err := c.expr(e); err != nil {
		return nil, err
	}
	return c.finish(), nil
}

// compileText compiles nginx-style text ("$remote_addr [$time_local]"), for the
// predefined formats and for `if=$var` in the string form of access_log.
func compileText(s string, rng hcl.Range) ([]op, error) {
	c := &compiler{}
	if err := c.text(s, rng); err != nil {
		return nil, err
	}
	return c.ops, nil
}

// resolve checks the user variables the operations use, now that every `set` of the
// configuration is known.
func resolveOps(cfg *httpcore.Config, ops []op) error {
	for i := range ops {
		o := &ops[i]
		if o.kind != opUser {
			continue
		}
		o.user = cfg.UserVarIndex(o.name)
		if o.user < 0 {
			return conf.Errorf(o.rng, "unknown variable %q", o.name)
		}
	}
	return nil
}

// value computes an operation's variable value and whether it has one.
func (o *op) value(r *httpcore.Request) (string, bool) {
	switch o.kind {
	case opBuiltin:
		v, _ := r.Var(o.name)
		return v, v != "" || o.emptyOK
	case opPrefix:
		return r.Var(o.name)
	case opUser:
		return r.UserVar(o.user)
	case opCapture:
		caps := r.Captures()
		if o.n < len(caps) {
			return caps[o.n], true
		}
		return "", false
	case opExpr:
		v, err := o.expr.String(r)
		if err != nil {
			r.Logf(httpcore.LogError, "access log: %v", err)
		}
		return v, true
	}
	return o.lit, true
}

// appendOps appends the text of ops for r to dst, escaping variable values.
func appendOps(dst []byte, ops []op, esc Escaping, r *httpcore.Request) []byte {
	for i := range ops {
		o := &ops[i]
		if o.kind == opLiteral {
			dst = append(dst, o.lit...)
			continue
		}
		v, found := o.value(r)
		switch esc {
		case EscapeDefault:
			if !found {
				dst = append(dst, '-')
			} else {
				dst = appendEscaped(dst, v)
			}
		case EscapeJSON:
			dst = appendJSON(dst, v)
		default:
			dst = append(dst, v...)
		}
	}
	return dst
}

const hexUpper = "0123456789ABCDEF"

// appendEscaped is nginx's default log escaping: `"`, `\`, bytes below 0x20 and bytes
// from 0x7f up become \xHH.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x20 || b >= 0x7f || b == '"' || b == '\\' {
			dst = append(dst, '\\', 'x', hexUpper[b>>4], hexUpper[b&0xf])
			continue
		}
		dst = append(dst, b)
	}
	return dst
}

// appendJSON is nginx's escape=json: the body of a JSON string, with bytes from 0x80
// up passed through (UTF-8 stays readable).
func appendJSON(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b == '"' || b == '\\':
			dst = append(dst, '\\', b)
		case b == '\n':
			dst = append(dst, '\\', 'n')
		case b == '\r':
			dst = append(dst, '\\', 'r')
		case b == '\t':
			dst = append(dst, '\\', 't')
		case b == '\b':
			dst = append(dst, '\\', 'b')
		case b == '\f':
			dst = append(dst, '\\', 'f')
		case b < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexUpper[b>>4], hexUpper[b&0xf])
		default:
			dst = append(dst, b)
		}
	}
	return dst
}
