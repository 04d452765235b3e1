// Package rewrite is nginx's ngx_http_rewrite_module for spindle: return, rewrite, set,
// break and rewrite_log. Their operations run in source order, interleaved with the
// core's if blocks, in the server-rewrite phase (server context) and the rewrite phase
// (location context).
package rewrite

import (
	"strings"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// Conf is the rewrite module's per-context configuration.
type Conf struct {
	// Log is rewrite_log: matches and results of rewrite go to the error log at
	// notice level.
	Log bool
	// NoUninitWarn is `uninitialized_variable_warn = false`.
	NoUninitWarn bool
	// relocate is set where a rewrite may change the URI of a location: the location
	// then searches its location again after the rewrite phase (nginx's post_rewrite).
	relocate bool
}

const ctxRewrite = httpcore.CtxServer | httpcore.CtxLocation | httpcore.CtxIf

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf { return &Conf{} })

// Module is the rewrite module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "rewrite",
	Order: httpcore.OrderRewrite,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "return", Context: ctxRewrite, Set: setReturn},
		{Name: "rewrite", Context: ctxRewrite, Block: true, Set: setRewrite},
		{Name: "set", Context: ctxRewrite, Block: true, Set: setSet},
		{Name: "break", Context: ctxRewrite, Set: setBreak},
		{Name: "rewrite_log", Context: httpcore.CtxAll, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.Log })},
		{Name: "uninitialized_variable_warn", Context: httpcore.CtxAll, Set: func(c *httpcore.Cmd) error {
			v, err := conf.Bool(c.Attr())
			if err == nil {
				c.Conf().(*Conf).NoUninitWarn = !v
			}
			return err
		}},
	},
	Install:          install,
	UninitializedVar: warnUninitialized,
})

// warnUninitialized is nginx's warning for a variable read before any set gave it a
// value (it reads as "").
func warnUninitialized(r *httpcore.Request, name string) {
	if !mod.Of(r.Location()).NoUninitWarn {
		r.Logf(httpcore.LogWarn, "using uninitialized %q variable", name)
	}
}

// install adds the post-rewrite step to contexts whose rewrites may have changed the
// URI without "last": nginx searches the location again once the rewrite phase is over.
func install(l *httpcore.Location) error {
	c := mod.Of(l)
	if c.relocate && (l.Context() == httpcore.CtxLocation || l.Context() == httpcore.CtxIf) {
		l.AddInlineHandler(httpcore.PhasePostRewrite, httpcore.OrderRewrite, postRewrite)
	}
	return nil
}

// reqCtx is the rewrite module's per-request state.
type reqCtx struct {
	uriChanged bool // a location's rewrite changed the URI (nginx's r->uri_changed)
}

func setURIChanged(r *httpcore.Request, v bool) {
	rc, _ := mod.Ctx(r).(*reqCtx)
	if rc == nil {
		if !v {
			return
		}
		rc = &reqCtx{}
		mod.SetCtx(r, rc)
	}
	rc.uriChanged = v
}

func postRewrite(r *httpcore.Request) httpcore.Action {
	rc, _ := mod.Ctx(r).(*reqCtx)
	if rc == nil || !rc.uriChanged {
		return httpcore.Continue
	}
	rc.uriChanged = false
	return r.ReLocate()
}

// serverLevel reports whether directives of c run in the server-rewrite phase, where
// location search follows anyway.
func serverLevel(c *httpcore.Cmd) bool {
	l := c.Loc
	if l.Context() == httpcore.CtxIf {
		l = l.Parent
	}
	return l.Context() == httpcore.CtxServer
}

// returnOp is `return`: finish the request with a status, and a body or a redirect.
type returnOp struct {
	code int
	body *httpcore.Expr // response text, for non-redirect codes
	url  *httpcore.Expr // Location, for redirect codes
}

// setReturn decodes
//
//	return = 404
//	return = "https://example.com/"                 # 302 to the URL
//	return = { code = 200, body = "hello ${arg.who}\n" }
//	return = { code = 301, url = "https://${host}${request_uri}" }
func setReturn(c *httpcore.Cmd) error {
	a := c.Attr()
	op := &returnOp{}
	if obj, ok := a.Expr.(*hclsyntax.ObjectConsExpr); ok {
		fields, err := conf.ObjectFields(obj)
		if err != nil {
			return err
		}
		if err := conf.CheckFields(fields, "code", "body", "url", "text"); err != nil {
			return err
		}
		for _, f := range fields {
			switch f.Name {
			case "code":
				if op.code, err = conf.ExprInt(f.Expr); err != nil {
					return err
				}
			case "body", "text":
				if op.body, err = c.Expr(f.Expr); err != nil {
					return err
				}
			case "url":
				if op.url, err = c.Expr(f.Expr); err != nil {
					return err
				}
			}
		}
		if op.code == 0 {
			if op.url == nil {
				return c.Errorf("return needs a code")
			}
			op.code = 302
		}
	} else {
		v, err := conf.StaticValue(a.Expr)
		if err == nil && v.Type() == cty.Number {
			if op.code, err = conf.Int(a); err != nil {
				return err
			}
		} else {
			// A URL, possibly with variables: a 302 redirect as nginx's `return URL`.
			if op.url, err = c.Expr(a.Expr); err != nil {
				return err
			}
			op.code = 302
		}
	}
	if op.code < 0 || op.code > 999 {
		return conf.Errorf(a.Expr.Range(), "invalid return code %d", op.code)
	}
	redirect := op.code == 301 || op.code == 302 || op.code == 303 || op.code == 307 || op.code == 308
	if op.url != nil && !redirect {
		return conf.Errorf(a.Expr.Range(), "return with a url needs a redirect code (301, 302, 303, 307 or 308), got %d", op.code)
	}
	if redirect && op.body != nil && op.url == nil {
		// nginx's `return 301 URL` spelled with body: treat the text as the URL.
		op.url, op.body = op.body, nil
	}
	c.AddRewriteOp(op)
	return nil
}

func (op *returnOp) Run(r *httpcore.Request) httpcore.Action {
	if op.code == 444 {
		r.CloseConnection()
		return httpcore.Finished
	}
	if op.url != nil {
		// The decoded URI in the target is escaped: no request can split the head.
		u, err := op.url.RedirectString(r)
		if err != nil {
			r.Logf(httpcore.LogError, "return: %v", err)
			return r.Error(500)
		}
		if strings.HasPrefix(u, "/") {
			u = r.AbsoluteURL(u)
		}
		r.RespHeader().Set("Location", u)
		return r.Error(op.code)
	}
	if op.body == nil {
		return r.Error(op.code)
	}
	r.SetStatus(op.code)
	body, err := op.body.String(r)
	if err != nil {
		r.Logf(httpcore.LogError, "return: %v", err)
		return r.Error(500)
	}
	// The length is known before the header filters run, as nginx's return sets it
	// (gzip_min_length looks at it).
	r.SetContentLength(int64(len(body)))
	r.WriteString(body)
	return httpcore.Finished
}
