package httpcore

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// nginx's variables are spindle's HCL variables: `uri`, `remote_addr`, `arg.who`,
// `http.user_agent`, `cookie.sid`, `re[1]` (regex captures) and the user variables
// that `set` defines. Expressions and templates over them are parsed once at load;
// templates made only of text and variables are compiled to plain string
// concatenation, everything else is evaluated by HCL with only the variables it
// references.

// VarGetter computes a variable for a request.
type VarGetter func(r *Request) string

// VarSetter changes a writable variable (ngx.var.args = ...).
type VarSetter func(r *Request, v string)

// PrefixGetter computes a variable of a namespace (arg.NAME, http.NAME): its value and
// whether it exists.
type PrefixGetter func(r *Request, name string) (string, bool)

type builtinVar struct {
	get VarGetter
	set VarSetter
}

type prefixVar struct {
	get PrefixGetter
	all func(r *Request) map[string]string
	// key normalises a name as written in the config (http.user_agent → user-agent).
	key func(string) string
}

var (
	builtinVars = map[string]*builtinVar{}
	prefixVars  = map[string]*prefixVar{}
)

// RegisterVar adds a variable computed per request. Modules call it in init.
func RegisterVar(name string, get VarGetter) {
	if _, dup := builtinVars[name]; dup {
		panic("httpcore: variable " + name + " registered twice")
	}
	builtinVars[name] = &builtinVar{get: get}
}

// RegisterWritableVar adds a variable that handlers may also change.
func RegisterWritableVar(name string, get VarGetter, set VarSetter) {
	RegisterVar(name, get)
	builtinVars[name].set = set
}

// RegisterPrefixVar adds a namespace of variables, like arg.NAME. all, if not nil,
// lists the whole namespace for expressions that use it as an object; key, if not nil,
// normalises names as written.
func RegisterPrefixVar(prefix string, get PrefixGetter, all func(r *Request) map[string]string, key func(string) string) {
	if _, dup := prefixVars[prefix]; dup {
		panic("httpcore: variable namespace " + prefix + " registered twice")
	}
	prefixVars[prefix] = &prefixVar{get: get, all: all, key: key}
}

// varTable holds a configuration's user variables.
type varTable struct {
	cfg      *Config
	index    map[string]int
	names    []string
	declared []bool
	firstRef []hcl.Range
	lazy     []lazyVar // by index: variables modules compute (DefineVar)
}

type lazyVar struct {
	get      VarGetter
	volatile bool
	rng      hcl.Range
}

func newVarTable(cfg *Config) *varTable { return &varTable{cfg: cfg, index: map[string]int{}} }

func (t *varTable) ref(name string, rng hcl.Range) int {
	if i, ok := t.index[name]; ok {
		return i
	}
	i := len(t.names)
	t.index[name] = i
	t.names = append(t.names, name)
	t.declared = append(t.declared, false)
	t.firstRef = append(t.firstRef, rng)
	return i
}

func (t *varTable) declare(name string, rng hcl.Range) (int, error) {
	if _, ok := builtinVars[name]; ok {
		return 0, conf.Errorf(rng, "variable %q is built in and cannot be set", name)
	}
	if _, ok := prefixVars[name]; ok || name == "re" {
		return 0, conf.Errorf(rng, "%q is a variable namespace and cannot be set", name)
	}
	if !validVarName(name) {
		return 0, conf.Errorf(rng, "invalid variable name %q", name)
	}
	i := t.ref(name, rng)
	t.declared[i] = true
	return i, nil
}

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' || i > 0 && c == '-') {
			return false
		}
	}
	return true
}

// check reports variables that are used but neither built in nor set anywhere, as
// nginx's "unknown variable" error.
func (t *varTable) check() conf.Errors {
	var es conf.Errors
	for i, n := range t.names {
		if !t.declared[i] {
			es = append(es, conf.Errorf(t.firstRef[i], "unknown variable %q", n))
		}
	}
	return es
}

// UserVarIndex returns the index of a user variable, or -1.
func (c *Config) UserVarIndex(name string) int {
	if i, ok := c.vars.index[name]; ok && c.vars.declared[i] {
		return i
	}
	return -1
}

// SetUserVar sets user variable i for the request.
func (r *Request) SetUserVar(i int, v string) {
	if r.sub.shared {
		r.parent.SetUserVar(i, v)
		return
	}
	r.growVars(i)
	r.vars[i] = userVar{val: v, set: true}
}

// growVars makes room for user variable i. The slice is reused from the connection's
// previous request: the slots it uncovers are cleared, not the earlier values.
func (r *Request) growVars(i int) {
	if i < len(r.vars) {
		return
	}
	n := len(r.cfg.vars.names)
	if cap(r.vars) >= n {
		old := len(r.vars)
		r.vars = r.vars[:n]
		clear(r.vars[old:])
	} else {
		nv := make([]userVar, n)
		copy(nv, r.vars)
		r.vars = nv
	}
}

// UserVar returns user variable i and whether it was set for this request. A variable
// that a module defined (DefineVar) is computed here on first use.
func (r *Request) UserVar(i int) (string, bool) {
	if r.sub.shared {
		return r.parent.UserVar(i)
	}
	if i < len(r.vars) && r.vars[i].set {
		return r.vars[i].val, true
	}
	if i < len(r.cfg.vars.lazy) && r.cfg.vars.lazy[i].get != nil {
		return r.lazyValue(i), true
	}
	return "", false
}

// lazyValue computes variable i with its module's getter, remembering the value for
// the rest of the request unless the variable is volatile.
func (r *Request) lazyValue(i int) string {
	lv := r.cfg.vars.lazy[i]
	r.growVars(i)
	if r.vars[i].busy {
		r.Logf(LogError, "cycle while evaluating variable %q", r.cfg.vars.names[i])
		return ""
	}
	r.vars[i].busy = true
	v := lv.get(r)
	// The getter may have grown r.vars: index again.
	r.vars[i].busy = false
	if !lv.volatile {
		r.vars[i] = userVar{val: v, set: true}
	}
	return v
}

// DefineVar declares a variable whose value a module computes when a request first
// uses it (nginx's variables with a get handler: map, geo, split_clients results). It
// is kept for the rest of the request unless volatile. `set` may still change it, as
// nginx's map variables are changeable.
func (c *Cmd) DefineVar(name string, rng hcl.Range, get VarGetter, volatile bool) error {
	t := c.b.cfg.vars
	i, err := t.declare(name, rng)
	if err != nil {
		return err
	}
	for len(t.lazy) <= i {
		t.lazy = append(t.lazy, lazyVar{})
	}
	if prev := t.lazy[i]; prev.get != nil {
		return conf.Errorf(rng, "variable %q is already defined at %s:%d,%d", name, prev.rng.Filename, prev.rng.Start.Line, prev.rng.Start.Column)
	}
	t.lazy[i] = lazyVar{get: get, volatile: volatile, rng: rng}
	return nil
}

// Var looks a variable up by name as nginx's $name (ngx.var.NAME): built-in
// variables, user variables, and namespaced ones written arg_NAME, http_NAME,
// cookie_NAME as in nginx or arg.NAME as in spindle's expressions.
func (r *Request) Var(name string) (string, bool) {
	if b, ok := builtinVars[name]; ok {
		return b.get(r), true
	}
	if i, ok := r.cfg.vars.index[name]; ok && r.cfg.vars.declared[i] {
		v, _ := r.UserVar(i)
		return v, true
	}
	// Only digits can name a capture; Atoi's error for anything else allocates.
	if name != "" && name[0] >= '0' && name[0] <= '9' {
		if n, err := strconv.Atoi(name); err == nil {
			if n < len(r.caps) {
				return r.caps[n], true
			}
			return "", false
		}
	}
	for _, sep := range []byte{'.', '_'} {
		if i := strings.IndexByte(name, sep); i > 0 {
			if p, ok := prefixVars[name[:i]]; ok {
				key := name[i+1:]
				if p.key != nil {
					key = p.key(key)
				}
				return p.get(r, key)
			}
		}
	}
	// nginx's multi-word prefixes: sent_http_, upstream_http_, cookie_.
	for prefix, p := range prefixVars {
		if strings.HasPrefix(name, prefix+"_") {
			key := name[len(prefix)+1:]
			if p.key != nil {
				key = p.key(key)
			}
			return p.get(r, key)
		}
	}
	return "", false
}

// SetVar changes a variable by name: a user variable or a writable built-in one. It
// reports false when the variable cannot be set (nginx: "variable not changeable").
func (r *Request) SetVar(name, value string) bool {
	if b, ok := builtinVars[name]; ok {
		if b.set == nil {
			return false
		}
		b.set(r, value)
		return true
	}
	if i, ok := r.cfg.vars.index[name]; ok && r.cfg.vars.declared[i] {
		r.SetUserVar(i, value)
		return true
	}
	return false
}

// Expr is a compiled expression or template over request variables.
type Expr struct {
	Range hcl.Range
	src   hclsyntax.Expression
	konst bool
	kval  cty.Value
	kstr  string
	parts []exprPart // set when the expression is text and variables only
	roots []*rootRef // variables to provide for HCL evaluation otherwise
}

type exprPart struct {
	lit     string
	get     func(r *Request) string
	decoded uint8 // decodedNever, decodedAlways, decodedCaptures (headerline.go)
}

// rootRef is a root variable an expression references, with the namespace keys used.
type rootRef struct {
	name  string
	kind  int // refBuiltin, refPrefix, refUser, refCaptures
	b     *builtinVar
	p     *prefixVar
	user  int
	keys  []prefixKey
	whole bool // the namespace is used as a whole object
}

// prefixKey is a name of a namespace as an expression writes it (http.x_token, the
// attribute HCL looks up) and as the namespace's getter takes it (x-token).
type prefixKey struct{ attr, key string }

const (
	refBuiltin = iota
	refPrefix
	refUser
	refCaptures
)

// IsConst reports whether the expression references no variable.
func (e *Expr) IsConst() bool { return e.konst }

// Const returns the constant value of a constant expression.
func (e *Expr) Const() cty.Value { return e.kval }

// Source is the expression's syntax.
func (e *Expr) Source() hclsyntax.Expression { return e.src }

func (t *varTable) compile(src hclsyntax.Expression, l *Location) (*Expr, error) {
	e := &Expr{Range: src.Range(), src: src}
	travs := src.Variables()
	if len(travs) == 0 {
		v, diags := src.Value(&hcl.EvalContext{Functions: exprFuncs()})
		if diags.HasErrors() {
			return nil, conf.FromDiags(diags)
		}
		e.konst, e.kval = true, v
		if sv, err := convert.Convert(v, cty.String); err == nil && sv.IsKnown() && !sv.IsNull() {
			e.kstr = sv.AsString()
		}
		return e, nil
	}
	roots := map[string]*rootRef{}
	var order []string
	for _, tr := range travs {
		name := tr.RootName()
		ref := roots[name]
		if ref == nil {
			var err error
			if ref, err = t.root(name, tr); err != nil {
				return nil, err
			}
			roots[name] = ref
			order = append(order, name)
		}
		switch ref.kind {
		case refPrefix:
			if len(tr) > 2 {
				if _, ok := traversalKey(tr[:2]); ok {
					return nil, conf.Errorf(tr.SourceRange(), "variable %s is a string and has no attributes", hclTraversalName(tr[:2]))
				}
			}
			if attr, ok := traversalKey(tr); ok {
				key := attr
				if ref.p.key != nil {
					key = ref.p.key(key)
				}
				ref.keys = append(ref.keys, prefixKey{attr: attr, key: key})
			} else {
				if ref.p.all == nil {
					return nil, conf.Errorf(tr.SourceRange(), "%s needs a name: %s.NAME", name, name)
				}
				ref.whole = true
			}
		case refBuiltin, refUser:
			if len(tr) > 1 {
				return nil, conf.Errorf(tr.SourceRange(), "variable %q is a string and has no attributes", name)
			}
		}
	}
	for _, n := range order {
		e.roots = append(e.roots, roots[n])
	}
	e.parts = t.fastParts(src)
	// Check the functions and syntax now rather than per request.
	if err := checkFuncs(src); err != nil {
		return nil, err
	}
	if e.parts == nil {
		if err := e.check(); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// check evaluates the expression once at load with every variable unknown (a string
// of any value): HCL then reports only the errors that every request would meet, such
// as an attribute of a string (uri.x), a missing namespace name, a function given the
// wrong number or type of arguments, so that `spindle -t` catches them instead of each
// request answering 500.
func (e *Expr) check() error {
	vars := make(map[string]cty.Value, len(e.roots))
	for _, ref := range e.roots {
		switch ref.kind {
		case refBuiltin, refUser:
			vars[ref.name] = cty.UnknownVal(cty.String)
		case refPrefix:
			if ref.whole {
				vars[ref.name] = cty.DynamicVal
				continue
			}
			m := map[string]cty.Value{}
			for _, k := range ref.keys {
				m[k.attr] = cty.UnknownVal(cty.String)
			}
			vars[ref.name] = cty.ObjectVal(m)
		case refCaptures:
			vars[ref.name] = cty.DynamicVal
		}
	}
	if _, diags := e.src.Value(&hcl.EvalContext{Variables: vars, Functions: exprFuncs()}); diags.HasErrors() {
		return conf.FromDiags(diags)
	}
	return nil
}

func (t *varTable) root(name string, tr hcl.Traversal) (*rootRef, error) {
	if b, ok := builtinVars[name]; ok {
		return &rootRef{name: name, kind: refBuiltin, b: b}, nil
	}
	if p, ok := prefixVars[name]; ok {
		return &rootRef{name: name, kind: refPrefix, p: p}, nil
	}
	if name == "re" {
		return &rootRef{name: name, kind: refCaptures}, nil
	}
	return &rootRef{name: name, kind: refUser, user: t.ref(name, tr.SourceRange())}, nil
}

// hclTraversalName writes ns.NAME or ns["NAME"] back as the config wrote it.
func hclTraversalName(tr hcl.Traversal) string {
	if a, ok := tr[1].(hcl.TraverseAttr); ok {
		return tr.RootName() + "." + a.Name
	}
	k, _ := traversalKey(tr)
	return tr.RootName() + "[" + strconv.Quote(k) + "]"
}

// traversalKey returns the name in ns.NAME or ns["NAME"].
func traversalKey(tr hcl.Traversal) (string, bool) {
	if len(tr) != 2 {
		return "", false
	}
	switch s := tr[1].(type) {
	case hcl.TraverseAttr:
		return s.Name, true
	case hcl.TraverseIndex:
		if s.Key.Type() == cty.String {
			return s.Key.AsString(), true
		}
		if s.Key.Type() == cty.Number {
			return s.Key.AsBigFloat().Text('f', -1), true
		}
	}
	return "", false
}

// fastParts compiles a template of literals and plain variable references to getters,
// or returns nil when the expression needs HCL.
func (t *varTable) fastParts(src hclsyntax.Expression) []exprPart {
	var exprs []hclsyntax.Expression
	switch x := src.(type) {
	case *hclsyntax.TemplateExpr:
		exprs = x.Parts
	case *hclsyntax.TemplateWrapExpr:
		exprs = []hclsyntax.Expression{x.Wrapped}
	case *hclsyntax.ScopeTraversalExpr:
		exprs = []hclsyntax.Expression{x}
	default:
		return nil
	}
	var parts []exprPart
	for _, pe := range exprs {
		switch x := pe.(type) {
		case *hclsyntax.LiteralValueExpr:
			if x.Val.Type() != cty.String {
				return nil
			}
			parts = append(parts, exprPart{lit: x.Val.AsString()})
		case *hclsyntax.ScopeTraversalExpr:
			g := t.getter(x.Traversal)
			if g == nil {
				return nil
			}
			parts = append(parts, exprPart{get: g, decoded: decodedKind(x.Traversal.RootName())})
		default:
			return nil
		}
	}
	return parts
}

func (t *varTable) getter(tr hcl.Traversal) func(r *Request) string {
	name := tr.RootName()
	if b, ok := builtinVars[name]; ok && len(tr) == 1 {
		return b.get
	}
	if p, ok := prefixVars[name]; ok {
		key, ok := traversalKey(tr)
		if !ok {
			return nil
		}
		if p.key != nil {
			key = p.key(key)
		}
		get := p.get
		return func(r *Request) string { v, _ := get(r, key); return v }
	}
	if name == "re" {
		key, ok := traversalKey(tr)
		if !ok {
			return nil
		}
		if n, err := strconv.Atoi(key); err == nil {
			return func(r *Request) string { return r.Capture(n) }
		}
		return nil
	}
	if len(tr) == 1 {
		i := t.ref(name, tr.SourceRange())
		return func(r *Request) string {
			v, ok := r.UserVar(i)
			if !ok && uninitMod != nil {
				uninitMod.UninitializedVar(r, name)
			}
			return v
		}
	}
	return nil
}

// String evaluates the expression as a string.
func (e *Expr) String(r *Request) (string, error) {
	if e.konst {
		return e.kstr, nil
	}
	if e.parts != nil {
		if len(e.parts) == 1 && e.parts[0].get != nil {
			return e.parts[0].get(r), nil
		}
		var sb strings.Builder
		for _, p := range e.parts {
			if p.get != nil {
				sb.WriteString(p.get(r))
			} else {
				sb.WriteString(p.lit)
			}
		}
		return sb.String(), nil
	}
	v, err := e.Value(r)
	if err != nil {
		return "", err
	}
	return ValueString(v, e.Range)
}

// ValueString converts an expression result to the string nginx variables hold.
func ValueString(v cty.Value, rng hcl.Range) (string, error) {
	if v.IsNull() {
		return "", nil
	}
	sv, err := convert.Convert(v, cty.String)
	if err != nil || !sv.IsKnown() {
		return "", conf.Errorf(rng, "expression gives %s, expected a string", v.Type().FriendlyName())
	}
	return sv.AsString(), nil
}

// AppendString appends the expression's string value to dst.
func (e *Expr) AppendString(dst []byte, r *Request) ([]byte, error) {
	if e.konst {
		return append(dst, e.kstr...), nil
	}
	if e.parts != nil {
		for _, p := range e.parts {
			if p.get != nil {
				dst = append(dst, p.get(r)...)
			} else {
				dst = append(dst, p.lit...)
			}
		}
		return dst, nil
	}
	s, err := e.String(r)
	return append(dst, s...), err
}

// Value evaluates the expression with HCL, providing only the variables it references.
func (e *Expr) Value(r *Request) (cty.Value, error) {
	if e.konst {
		return e.kval, nil
	}
	vars := make(map[string]cty.Value, len(e.roots))
	for _, ref := range e.roots {
		switch ref.kind {
		case refBuiltin:
			vars[ref.name] = cty.StringVal(ref.b.get(r))
		case refUser:
			v, ok := r.UserVar(ref.user)
			if !ok && uninitMod != nil {
				uninitMod.UninitializedVar(r, ref.name)
			}
			vars[ref.name] = cty.StringVal(v)
		case refPrefix:
			m := map[string]cty.Value{}
			if ref.whole {
				for k, v := range ref.p.all(r) {
					m[k] = cty.StringVal(v)
				}
			}
			for _, k := range ref.keys {
				v, _ := ref.p.get(r, k.key)
				m[k.attr] = cty.StringVal(v)
			}
			vars[ref.name] = cty.ObjectVal(m)
		case refCaptures:
			m := map[string]cty.Value{}
			for i, c := range r.caps {
				m[strconv.Itoa(i)] = cty.StringVal(c)
			}
			for i := len(r.caps); i < 10; i++ {
				m[strconv.Itoa(i)] = cty.StringVal("")
			}
			vars[ref.name] = cty.ObjectVal(m)
		}
	}
	v, diags := e.src.Value(&hcl.EvalContext{Variables: vars, Functions: exprFuncs()})
	if diags.HasErrors() {
		return cty.NilVal, conf.FromDiags(diags)
	}
	return v, nil
}

// Bool evaluates the expression as a condition: a bool, or a string that is true
// unless empty or "0" (nginx's `if ($var)`).
func (e *Expr) Bool(r *Request) (bool, error) {
	if e.parts != nil || e.konst && e.kval.Type() == cty.String {
		s, err := e.String(r)
		return s != "" && s != "0", err
	}
	v, err := e.Value(r)
	if err != nil {
		return false, err
	}
	if v.IsNull() {
		return false, nil
	}
	if v.Type() == cty.Bool {
		return v.True(), nil
	}
	s, err := ValueString(v, e.Range)
	return s != "" && s != "0", err
}

// VarNames lists every variable name known to the build, for error messages and docs.
func VarNames() []string {
	var out []string
	for n := range builtinVars {
		out = append(out, n)
	}
	for n := range prefixVars {
		out = append(out, n+".NAME")
	}
	sort.Strings(out)
	return out
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
