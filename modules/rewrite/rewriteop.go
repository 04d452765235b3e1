package rewrite

import (
	"strings"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/pcre"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// rewrite is nginx's `rewrite regex replacement [flag]`, written as a block so that it
// may repeat and keep its place among set, return and if:
//
//	rewrite "^/users/(\\d+)$" { to = "/u?id=${re[1]}" }
//	rewrite "^/old/(.*)$" "permanent" { to = "/new/${re[1]}" }
//	rewrite "^/a/(.*)$" {
//	  to   = "/b/${re[1]}"
//	  flag = "last"
//	}
//
// The label is the regex, matched against $uri; its captures are re[1], re[2], ... in
// the replacement and in the directives that follow. The flag is an optional second
// label or a flag attribute.
type rewriteOp struct {
	re     *pcre.Regexp
	src    string
	flag   flag
	server bool // server context: location search follows anyway
	code   int  // redirect status
	repl   replacement
}

type flag uint8

const (
	flagNone flag = iota
	flagLast
	flagBreak
	flagRedirect
	flagPermanent
)

// replacement is the `to` template split the way nginx splits it when it compiles the
// replacement: the text before the first literal "?" is the URI, the rest new
// arguments; a trailing "?" keeps the request's arguments from being appended; a
// replacement starting with http://, https:// or ${scheme} is a redirect.
type replacement struct {
	uri      *httpcore.Expr
	args     *httpcore.Expr // nil without a literal "?"
	addArgs  bool
	redirect bool
	// whole is set when `to` is an expression other than a template (a function
	// call): it is split after evaluation instead.
	whole *httpcore.Expr
}

func setRewrite(c *httpcore.Cmd) error {
	blk := c.Block()
	if len(blk.Labels) < 1 || len(blk.Labels) > 2 {
		return c.Errorf("rewrite takes the regex as its label, and optionally the flag: rewrite \"^/old/(.*)$\" \"last\" { to = \"/new/${re[1]}\" }")
	}
	op := &rewriteOp{src: blk.Labels[0], server: serverLevel(c)}
	re, err := httpcore.CompileRegex(blk.Labels[0])
	if err != nil {
		return conf.Errorf(blk.LabelRanges[0], "%v", err)
	}
	op.re = re
	flagName, flagRange := "", blk.TypeRange
	if len(blk.Labels) == 2 {
		flagName, flagRange = blk.Labels[1], blk.LabelRanges[1]
	}
	items, err := c.Items(blk.Body)
	if err != nil {
		return err
	}
	var to hclsyntax.Expression
	for _, it := range items {
		if it.Attr == nil {
			return conf.Errorf(it.Range(), "unexpected block %q in rewrite", it.Name)
		}
		switch it.Name {
		case "to", "replacement":
			to = it.Attr.Expr
		case "flag":
			if flagName != "" && len(blk.Labels) == 2 {
				return conf.Errorf(it.Range(), "the flag is already given as a label")
			}
			if flagName, err = conf.String(it.Attr); err != nil {
				return err
			}
			flagRange = it.Attr.Expr.Range()
		default:
			return conf.Errorf(it.Range(), "unknown rewrite field %q (expected to, flag)", it.Name)
		}
	}
	if to == nil {
		return c.Errorf("rewrite needs a replacement: to = \"/new/${re[1]}\"")
	}
	switch flagName {
	case "":
	case "last":
		op.flag = flagLast
	case "break":
		op.flag = flagBreak
	case "redirect":
		op.flag, op.code = flagRedirect, 302
	case "permanent":
		op.flag, op.code = flagPermanent, 301
	default:
		return conf.Errorf(flagRange, "invalid rewrite flag %q (expected last, break, redirect or permanent)", flagName)
	}
	if op.repl, err = compileReplacement(c, to); err != nil {
		return err
	}
	if op.repl.redirect && op.code == 0 {
		op.code = 302
	}
	if !op.server {
		mod.Cmd(c).relocate = true
	}
	c.AddRewriteOp(op)
	return nil
}

func compileReplacement(c *httpcore.Cmd, e hclsyntax.Expression) (replacement, error) {
	var rp replacement
	var parts []hclsyntax.Expression
	switch x := e.(type) {
	case *hclsyntax.TemplateExpr:
		parts = append(parts, x.Parts...)
	case *hclsyntax.TemplateWrapExpr:
		parts = []hclsyntax.Expression{x.Wrapped}
	case *hclsyntax.LiteralValueExpr:
		if x.Val.Type() != cty.String {
			return rp, conf.Errorf(e.Range(), "the replacement must be a string")
		}
		parts = []hclsyntax.Expression{x}
	default:
		var err error
		rp.whole, err = c.Expr(e)
		return rp, err
	}
	for _, p := range parts {
		if lit, ok := p.(*hclsyntax.LiteralValueExpr); ok {
			if s, ok := literal(lit); ok && nginxCapture.MatchString(s) {
				return rp, conf.Errorf(lit.SrcRange, "captures are written ${re[1]} in spindle, not $1")
			}
		}
	}
	// A replacement starting with http://, https:// or $scheme redirects.
	if len(parts) > 0 {
		switch p := parts[0].(type) {
		case *hclsyntax.LiteralValueExpr:
			if s, ok := literal(p); ok && (strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")) {
				rp.redirect = true
			}
		case *hclsyntax.ScopeTraversalExpr:
			rp.redirect = p.Traversal.RootName() == "scheme" && len(p.Traversal) == 1
		}
	}
	// A trailing "?" drops the request's arguments instead of appending them.
	rp.addArgs = true
	if n := len(parts); n > 0 {
		if lit, ok := parts[n-1].(*hclsyntax.LiteralValueExpr); ok {
			if s, ok := literal(lit); ok && strings.HasSuffix(s, "?") {
				rp.addArgs = false
				parts[n-1] = strLit(s[:len(s)-1], lit)
			}
		}
	}
	uriParts, argParts := parts, []hclsyntax.Expression(nil)
	for i, p := range parts {
		lit, ok := p.(*hclsyntax.LiteralValueExpr)
		if !ok {
			continue
		}
		s, ok := literal(lit)
		if !ok {
			continue
		}
		if q := strings.IndexByte(s, '?'); q >= 0 {
			uriParts = append(append([]hclsyntax.Expression(nil), parts[:i]...), strLit(s[:q], lit))
			argParts = append([]hclsyntax.Expression{strLit(s[q+1:], lit)}, parts[i+1:]...)
			break
		}
	}
	var err error
	if rp.uri, err = c.Expr(&hclsyntax.TemplateExpr{Parts: uriParts, SrcRange: e.Range()}); err != nil {
		return rp, err
	}
	if argParts != nil {
		if rp.args, err = c.Expr(&hclsyntax.TemplateExpr{Parts: argParts, SrcRange: e.Range()}); err != nil {
			return rp, err
		}
	}
	return rp, nil
}

// nginxCapture finds nginx's $1 in a replacement, a habit worth an error: spindle would
// keep it as text.
var nginxCapture = pcre.MustCompile(`\$[0-9]`)

func literal(l *hclsyntax.LiteralValueExpr) (string, bool) {
	if l.Val.Type() != cty.String || l.Val.IsNull() {
		return "", false
	}
	return l.Val.AsString(), true
}

func strLit(s string, like *hclsyntax.LiteralValueExpr) *hclsyntax.LiteralValueExpr {
	return &hclsyntax.LiteralValueExpr{Val: cty.StringVal(s), SrcRange: like.SrcRange}
}

// eval computes the new URI and arguments. hasArgs tells whether the replacement
// carried arguments of its own. With target, the replacement is evaluated as a
// redirect's target: the decoded URI and its captures are %-escaped
// (Expr.RedirectString).
func (rp *replacement) eval(r *httpcore.Request, target bool) (uri, args string, hasArgs, addArgs, redirect bool, err error) {
	str := (*httpcore.Expr).String
	if target {
		str = (*httpcore.Expr).RedirectString
	}
	if rp.whole != nil {
		s, err := str(rp.whole, r)
		if err != nil {
			return "", "", false, false, false, err
		}
		redirect = strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
		addArgs = true
		if strings.HasSuffix(s, "?") {
			s, addArgs = s[:len(s)-1], false
		}
		uri, args, hasArgs = strings.Cut(s, "?")
		return uri, args, hasArgs, addArgs, redirect, nil
	}
	if uri, err = str(rp.uri, r); err != nil {
		return
	}
	if rp.args != nil {
		if args, err = str(rp.args, r); err != nil {
			return
		}
		hasArgs = true
	}
	return uri, args, hasArgs, rp.addArgs, rp.redirect, nil
}

func (op *rewriteOp) Run(r *httpcore.Request) httpcore.Action {
	cur := r.URI()
	logOn := mod.Of(r.Location()).Log
	m := op.re.FindStringSubmatch(cur)
	if m == nil {
		if logOn {
			r.Logf(httpcore.LogNotice, "%q does not match %q", op.src, cur)
		}
		return httpcore.Continue
	}
	if logOn {
		r.Logf(httpcore.LogNotice, "%q matches %q", op.src, cur)
	}
	r.SetURICaptures(m)
	uri, args, hasArgs, addArgs, redirect, err := op.repl.eval(r, false)
	if err == nil && (redirect || op.flag == flagRedirect || op.flag == flagPermanent) {
		redirect = true
		uri, args, hasArgs, addArgs, _, err = op.repl.eval(r, true)
	}
	if err != nil {
		r.Logf(httpcore.LogError, "rewrite: %v", err)
		return r.Error(500)
	}
	if redirect {
		code := op.code
		if code == 0 {
			code = 302
		}
		u := uri
		if hasArgs {
			u += "?" + args
		}
		if addArgs && r.Args() != "" {
			if hasArgs {
				u += "&" + r.Args()
			} else {
				u += "?" + r.Args()
			}
		}
		if logOn {
			r.Logf(httpcore.LogNotice, "rewritten redirect: %q", u)
		}
		if strings.HasPrefix(u, "/") {
			u = r.AbsoluteURL(u)
		}
		r.RespHeader().Set("Location", httpcore.EscapeUnsafeURI(u))
		return r.Error(code)
	}
	if uri == "" {
		r.Logf(httpcore.LogError, "the rewritten URI has a zero length")
		return r.Error(500)
	}
	switch {
	case hasArgs:
		if addArgs && r.Args() != "" {
			args += "&" + r.Args()
		}
		r.SetArgs(args)
	case !addArgs:
		r.SetArgs("")
	}
	r.SetURI(uri)
	if logOn {
		r.Logf(httpcore.LogNotice, "rewritten data: %q, args: %q", uri, r.Args())
	}
	switch op.flag {
	case flagLast:
		if !op.server {
			setURIChanged(r, true)
		}
		return httpcore.NextPhase
	case flagBreak:
		setURIChanged(r, false)
		return httpcore.NextPhase
	}
	if !op.server {
		setURIChanged(r, true)
	}
	return httpcore.Continue
}

// break stops the rewrite directives of the context, as nginx's `break;`.
func setBreak(c *httpcore.Cmd) error {
	on, err := conf.Bool(c.Attr())
	if err != nil {
		return err
	}
	if !on {
		return conf.Errorf(c.Attr().Expr.Range(), "break takes no value but true: break = true")
	}
	c.AddRewriteOp(httpcore.RewriteFunc(func(r *httpcore.Request) httpcore.Action {
		setURIChanged(r, false)
		return httpcore.NextPhase
	}))
	return nil
}

// set assigns variables, in the order written:
//
//	set {
//	  user = lower(arg.user)
//	  key  = "${user}:${arg.page}"
//	}
//
// Each name becomes a user variable (nginx's `set $user ...`); a writable built-in
// variable such as args is changed instead.
type setOp struct {
	assigns []assign
}

type assign struct {
	name    string
	idx     int
	builtin bool
	e       *httpcore.Expr
}

func setSet(c *httpcore.Cmd) error {
	blk := c.Block()
	if len(blk.Labels) > 0 {
		return conf.Errorf(blk.LabelRanges[0], "set takes no label: set { name = value }")
	}
	items, err := c.Items(blk.Body)
	if err != nil {
		return err
	}
	op := &setOp{}
	for _, it := range items {
		if it.Attr == nil {
			return conf.Errorf(it.Range(), "unexpected block %q in set: write name = value", it.Name)
		}
		a := assign{name: it.Name}
		if exists, writable := httpcore.BuiltinVar(it.Name); exists {
			if !writable {
				return conf.Errorf(it.Range(), "variable %q is built in and cannot be set", it.Name)
			}
			a.builtin = true
		} else if a.idx, err = c.DeclareVar(it.Name, it.Attr.NameRange); err != nil {
			return err
		}
		if a.e, err = c.Expr(it.Attr.Expr); err != nil {
			return err
		}
		op.assigns = append(op.assigns, a)
	}
	if len(op.assigns) == 0 {
		return c.Errorf("set needs at least one name = value")
	}
	c.AddRewriteOp(op)
	return nil
}

func (op *setOp) Run(r *httpcore.Request) httpcore.Action {
	for _, a := range op.assigns {
		v, err := a.e.String(r)
		if err != nil {
			r.Logf(httpcore.LogError, "set %s: %v", a.name, err)
			return r.Error(500)
		}
		if a.builtin {
			r.SetVar(a.name, v)
		} else {
			r.SetUserVar(a.idx, v)
		}
	}
	return httpcore.Continue
}
