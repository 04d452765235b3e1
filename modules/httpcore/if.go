package httpcore

import (
	"os"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/pcre"
	"github.com/zclconf/go-cty/cty"
)

// An if block runs its directives when its condition holds and, like nginx's if, makes
// its own configuration the request's for the rest of processing:
//
//	if {
//	  cond   = [request_method, "=", "POST"]   # nginx's conditions as a list
//	  return = 405
//	}
//	if {
//	  cond = arg.debug != "" && remote_addr == "127.0.0.1"  # or any HCL condition
//	  ...
//	}
//
// The list forms are nginx's: [a, "=", b], [a, "!=", b], [a, "~", "re"], [a, "~*", "re"],
// [a, "!~", "re"], [a, "!~*", "re"] (a regex match sets re[1], re[2], ...), and
// ["-f", path], ["!-f", path], with -d, -e and -x likewise. A single value is true
// unless empty or "0".
type ifOp struct {
	cond cond
	loc  *Location
}

type cond interface {
	eval(r *Request) (bool, error)
}

func (op *ifOp) Run(r *Request) Action {
	ok, err := op.cond.eval(r)
	if err != nil {
		r.Logf(LogError, "if condition: %v", err)
		return r.Error(500)
	}
	if !ok {
		return Continue
	}
	r.loc = op.loc
	// The block's directives run as if written in place of the if: a break (NextPhase)
	// stops the enclosing context's program too, as nginx's if shares its parent's
	// script.
	for _, o := range op.loc.rewrite {
		if a := o.Run(r); a != Continue {
			return a
		}
	}
	return Continue
}

func (b *builder) ifBlock(it conf.Item, parent *Location, srv *Server, op *ifOp) {
	blk := it.Block
	if parent.ctx != CtxServer && parent.ctx != CtxLocation {
		b.es = append(b.es, conf.Errorf(it.Range(), "if is not allowed in %s context", parent.ctx))
		return
	}
	if len(blk.Labels) > 0 {
		b.es = append(b.es, conf.Errorf(blk.LabelRanges[0], "if takes no label; write the condition as cond = ..."))
		return
	}
	l := b.child(parent, CtxIf, srv, blk.TypeRange)
	l.Name = "if"
	l.Match = MatchNone
	l.Internal = parent.Internal
	op.loc = l
	items, es := b.src.Items(blk.Body)
	b.es = append(b.es, es...)
	var rest []conf.Item
	for _, item := range items {
		if item.Name == "cond" && item.Attr != nil {
			c, err := b.compileCond(item.Attr.Expr, l)
			if err != nil {
				b.es.Add(item.Range(), err)
				return
			}
			op.cond = c
			continue
		}
		if item.Name == "if" {
			b.es = append(b.es, conf.Errorf(item.Range(), "if blocks cannot be nested"))
			continue
		}
		rest = append(rest, item)
	}
	if op.cond == nil {
		b.es = append(b.es, conf.Errorf(blk.TypeRange, "if needs a condition: cond = ..."))
		return
	}
	b.items(rest, l, srv)
}

func (b *builder) compileCond(e hclsyntax.Expression, l *Location) (cond, error) {
	t, ok := e.(*hclsyntax.TupleConsExpr)
	if !ok {
		x, err := b.cfg.vars.compile(e, l)
		if err != nil {
			return nil, err
		}
		return exprCond{x}, nil
	}
	lit := func(i int) (string, bool) {
		if i >= len(t.Exprs) {
			return "", false
		}
		v, err := conf.StaticValue(t.Exprs[i])
		if err != nil || v.Type() != cty.String {
			return "", false
		}
		return v.AsString(), true
	}
	switch len(t.Exprs) {
	case 1:
		x, err := b.cfg.vars.compile(t.Exprs[0], l)
		if err != nil {
			return nil, err
		}
		return exprCond{x}, nil
	case 2:
		op, ok := lit(0)
		if !ok {
			break
		}
		neg := false
		if len(op) > 1 && op[0] == '!' {
			neg, op = true, op[1:]
		}
		switch op {
		case "-f", "-d", "-e", "-x":
			x, err := b.cfg.vars.compile(t.Exprs[1], l)
			if err != nil {
				return nil, err
			}
			return fileCond{path: x, test: op[1], neg: neg, prefix: b.cfg.Main.Prefix}, nil
		}
		return nil, conf.Errorf(t.Exprs[0].Range(), "unknown file test %q (expected -f, -d, -e, -x or their ! forms)", op)
	case 3:
		op, ok := lit(1)
		if !ok {
			return nil, conf.Errorf(t.Exprs[1].Range(), "the operator must be a string: \"=\", \"!=\", \"~\", \"~*\", \"!~\" or \"!~*\"")
		}
		left, err := b.cfg.vars.compile(t.Exprs[0], l)
		if err != nil {
			return nil, err
		}
		switch op {
		case "=", "!=":
			right, err := b.cfg.vars.compile(t.Exprs[2], l)
			if err != nil {
				return nil, err
			}
			return eqCond{left, right, op == "!="}, nil
		case "~", "~*", "!~", "!~*":
			pat, ok := lit(2)
			if !ok {
				return nil, conf.Errorf(t.Exprs[2].Range(), "the regex must be a constant string")
			}
			neg := op[0] == '!'
			if op[len(op)-1] == '*' {
				pat = "(?i)" + pat
			}
			re, err := CompileRegex(pat)
			if err != nil {
				return nil, conf.Errorf(t.Exprs[2].Range(), "%v", err)
			}
			return regexCond{left, re, neg}, nil
		}
		return nil, conf.Errorf(t.Exprs[1].Range(), "unknown operator %q (expected =, !=, ~, ~*, !~ or !~*)", op)
	}
	return nil, conf.Errorf(e.Range(), "a condition list is [value, operator, value] or [file-test, path]")
}

type exprCond struct{ e *Expr }

func (c exprCond) eval(r *Request) (bool, error) { return c.e.Bool(r) }

type eqCond struct {
	left, right *Expr
	neg         bool
}

func (c eqCond) eval(r *Request) (bool, error) {
	a, err := c.left.String(r)
	if err != nil {
		return false, err
	}
	b, err := c.right.String(r)
	if err != nil {
		return false, err
	}
	return (a == b) != c.neg, nil
}

type regexCond struct {
	left *Expr
	re   *pcre.Regexp
	neg  bool
}

func (c regexCond) eval(r *Request) (bool, error) {
	s, err := c.left.String(r)
	if err != nil {
		return false, err
	}
	m := c.re.FindStringSubmatch(s)
	if m == nil {
		return c.neg, nil
	}
	if !c.neg {
		r.SetCaptures(m)
		r.capsDecoded = c.left.holdsDecodedURI()
	}
	return !c.neg, nil
}

type fileCond struct {
	path   *Expr
	test   byte
	neg    bool
	prefix string
}

func (c fileCond) eval(r *Request) (bool, error) {
	p, err := c.path.String(r)
	if err != nil {
		return false, err
	}
	p = conf.Resolve(c.prefix, p)
	st, err := os.Stat(p)
	var ok bool
	switch c.test {
	case 'f':
		ok = err == nil && st.Mode().IsRegular()
	case 'd':
		ok = err == nil && st.IsDir()
	case 'e':
		ok = err == nil
	case 'x':
		ok = err == nil && !st.IsDir() && st.Mode().Perm()&0o111 != 0
	}
	return ok != c.neg, nil
}
