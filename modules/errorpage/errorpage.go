// Package errorpage is nginx's error_page and recursive_error_pages for spindle: error
// statuses answered by an internal redirect to a URI or a named location, or by a
// redirect to a URL, with an optional change of the response code.
package errorpage

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// Conf is the error_page configuration of a context.
type Conf struct {
	pages []page
	// Recursive is recursive_error_pages: an error page's own error may be redirected
	// to an error page again.
	Recursive bool
}

type page struct {
	codes []int
	// overwrite is nginx's: -1 keeps the error's status, 0 ("=") takes the status of
	// whatever answers the error page, N ("=N") sends N.
	overwrite int
	uri       *httpcore.Expr
	rng       hcl.Range
}

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf { return &Conf{} })

// Module is the error_page module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "error_page",
	Order: httpcore.OrderHeaders,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "error_page", Context: httpcore.CtxAll, Set: setErrorPage},
		{Name: "recursive_error_pages", Context: httpcore.CtxHTTP | httpcore.CtxServer | httpcore.CtxLocation, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.Recursive })},
	},
	Postconfig: checkNamed,
	ErrorPage:  hook,
})

// setErrorPage decodes a list of pages, each nginx's arguments as a string or an
// object:
//
//	error_page = [
//	  "404 /404.html",
//	  "500 502 503 504 /50x.html",
//	  "410 =200 /gone?from=${uri}",
//	  "403 = @login",
//	  { codes = [401], code = 302, uri = "https://login.example.com/" },
//	]
//
// A context's error_page replaces the pages it would inherit.
func setErrorPage(c *httpcore.Cmd) error {
	e := c.Attr().Expr
	exprs := []hclsyntax.Expression{e}
	if t, ok := e.(*hclsyntax.TupleConsExpr); ok {
		exprs = t.Exprs
	}
	var pages []page
	for _, x := range exprs {
		var p page
		var err error
		if obj, ok := x.(*hclsyntax.ObjectConsExpr); ok {
			p, err = objectPage(c, obj)
		} else {
			p, err = stringPage(c, x)
		}
		if err != nil {
			return err
		}
		pages = append(pages, p)
	}
	if len(pages) == 0 {
		return c.Errorf("error_page needs at least one page")
	}
	mod.Cmd(c).pages = pages
	return nil
}

func objectPage(c *httpcore.Cmd, obj *hclsyntax.ObjectConsExpr) (page, error) {
	p := page{overwrite: -1}
	fields, err := conf.ObjectFields(obj)
	if err != nil {
		return p, err
	}
	if err := conf.CheckFields(fields, "codes", "code", "uri"); err != nil {
		return p, err
	}
	for _, f := range fields {
		switch f.Name {
		case "codes":
			v, err := conf.StaticValue(f.Expr)
			if err != nil {
				return p, err
			}
			var vals []cty.Value
			if v.Type() == cty.Number || v.Type() == cty.String {
				vals = []cty.Value{v}
			} else if v.CanIterateElements() {
				for it := v.ElementIterator(); it.Next(); {
					_, ev := it.Element()
					vals = append(vals, ev)
				}
			}
			for _, ev := range vals {
				code, ok := number(ev)
				if !ok || code < 300 || code > 599 {
					return p, conf.Errorf(f.Expr.Range(), "codes are status codes between 300 and 599")
				}
				p.codes = append(p.codes, code)
			}
		case "code":
			v, err := conf.StaticValue(f.Expr)
			if err != nil {
				return p, err
			}
			if v.Type() == cty.String && v.AsString() == "=" {
				p.overwrite = 0
				continue
			}
			code, ok := number(v)
			if !ok || code < 100 || code > 999 {
				return p, conf.Errorf(f.Expr.Range(), "code is a status code, or \"=\" for the status of the page itself")
			}
			p.overwrite = code
		case "uri":
			if p.uri, err = c.Expr(f.Expr); err != nil {
				return p, err
			}
		}
	}
	if len(p.codes) == 0 || p.uri == nil {
		return p, conf.Errorf(obj.Range(), "an error page needs codes and a uri")
	}
	p.rng = obj.Range()
	return p, nil
}

func number(v cty.Value) (int, bool) {
	if v.Type() == cty.String {
		n, err := strconv.Atoi(v.AsString())
		return n, err == nil
	}
	if v.Type() != cty.Number {
		return 0, false
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	return int(n), bf.IsInt() && acc == 0
}

// stringPage parses nginx's "CODE... [=[RESPONSE]] URI". The URI may hold variables:
// the codes are read from the template's leading text.
func stringPage(c *httpcore.Cmd, x hclsyntax.Expression) (page, error) {
	p := page{overwrite: -1}
	var parts []hclsyntax.Expression
	switch t := x.(type) {
	case *hclsyntax.TemplateExpr:
		parts = append(parts, t.Parts...)
	case *hclsyntax.LiteralValueExpr:
		parts = []hclsyntax.Expression{t}
	}
	var lead *hclsyntax.LiteralValueExpr
	if len(parts) > 0 {
		lead, _ = parts[0].(*hclsyntax.LiteralValueExpr)
	}
	if lead == nil || lead.Val.Type() != cty.String {
		return p, conf.Errorf(x.Range(), "an error page is \"CODE... [=[CODE]] URI\" or { codes = [...], code = ..., uri = \"...\" }")
	}
	s := lead.Val.AsString()
	for {
		s = strings.TrimLeft(s, " \t")
		tok, rest, found := strings.Cut(s, " ")
		if !found && len(parts) > 1 {
			// the rest of this text runs into a variable: it is the start of the URI
			break
		}
		if tok == "" {
			break
		}
		if tok[0] == '=' {
			if p.overwrite >= 0 {
				return p, conf.Errorf(x.Range(), "only one =CODE is allowed")
			}
			if tok == "=" {
				p.overwrite = 0
			} else {
				n, err := strconv.Atoi(tok[1:])
				if err != nil || n < 100 || n > 999 {
					return p, conf.Errorf(x.Range(), "invalid response code %q", tok)
				}
				p.overwrite = n
			}
			s = rest
			continue
		}
		n, err := strconv.Atoi(tok)
		if err != nil {
			break
		}
		if p.overwrite >= 0 {
			return p, conf.Errorf(x.Range(), "the codes come before =CODE")
		}
		if n < 300 || n > 599 {
			return p, conf.Errorf(x.Range(), "value %d must be between 300 and 599", n)
		}
		p.codes = append(p.codes, n)
		s = rest
		if !found {
			s = ""
		}
	}
	s = strings.TrimLeft(s, " \t")
	if len(p.codes) == 0 {
		return p, conf.Errorf(x.Range(), "an error page starts with status codes: \"404 /404.html\"")
	}
	if strings.ContainsAny(strings.TrimRight(s, " \t"), " \t") {
		return p, conf.Errorf(x.Range(), "an error page has one URI, got %q", strings.TrimSpace(s))
	}
	uriParts := append([]hclsyntax.Expression{&hclsyntax.LiteralValueExpr{Val: cty.StringVal(strings.TrimRight(s, " \t")), SrcRange: lead.SrcRange}}, parts[1:]...)
	var err error
	if p.uri, err = c.Expr(&hclsyntax.TemplateExpr{Parts: uriParts, SrcRange: x.Range()}); err != nil {
		return p, err
	}
	if p.uri.IsConst() && p.uri.Const().AsString() == "" {
		return p, conf.Errorf(x.Range(), "an error page needs a URI after the codes")
	}
	p.rng = x.Range()
	return p, nil
}

// checkNamed reports error pages that name a location the server does not have, once
// the configuration is built (named locations may come later in the file).
func checkNamed(cfg *httpcore.Config) error {
	var es conf.Errors
	seen := map[string]bool{}
	for _, l := range cfg.Locations() {
		if l.Server == nil {
			continue
		}
		for _, p := range mod.Of(l).pages {
			if !p.uri.IsConst() {
				continue
			}
			u, _ := httpcore.ValueString(p.uri.Const(), p.rng)
			key := fmt.Sprintf("%p %s:%d,%d", l.Server, p.rng.Filename, p.rng.Start.Line, p.rng.Start.Column)
			if strings.HasPrefix(u, "@") && l.Server.Named(u) == nil && !seen[key] {
				seen[key] = true
				es = append(es, conf.Errorf(p.rng, "error_page: no location %q in the server at line %d", u, l.Server.Range.Start.Line))
			}
		}
	}
	return es.Err()
}

// hook answers an error status with the current context's error pages.
func hook(r *httpcore.Request, status int) (httpcore.Action, bool) {
	cf := mod.Of(r.Location())
	if len(cf.pages) == 0 {
		return httpcore.Continue, true
	}
	for _, p := range cf.pages {
		for _, code := range p.codes {
			if code == status {
				return send(r, p), cf.Recursive
			}
		}
	}
	return httpcore.Continue, cf.Recursive
}

func send(r *httpcore.Request, p page) httpcore.Action {
	uri, err := p.uri.String(r)
	if err != nil {
		r.Logf(httpcore.LogError, "error_page: %v", err)
		return httpcore.Continue
	}
	if p.overwrite >= 0 {
		r.ForceStatus(p.overwrite)
	}
	switch {
	case strings.HasPrefix(uri, "/"):
		path, args, _ := strings.Cut(uri, "?")
		if r.Method() != "HEAD" {
			r.SetMethod("GET")
		}
		return r.InternalRedirect(path, args)
	case strings.HasPrefix(uri, "@"):
		if r.Server.Named(uri) == nil {
			r.Logf(httpcore.LogError, "could not find named location %q", uri)
			r.ForceStatus(500)
			r.SetStatus(500)
			return httpcore.Continue
		}
		return r.InternalRedirect(uri, "")
	case uri == "":
		return httpcore.Continue
	}
	code := p.overwrite
	switch code {
	case 301, 302, 303, 307, 308:
	default:
		code = 302
	}
	// A redirect's target: evaluated again with the decoded URI %-escaped, so that
	// no request can split the head (Expr.RedirectString).
	if uri, err = p.uri.RedirectString(r); err != nil {
		r.Logf(httpcore.LogError, "error_page: %v", err)
		return httpcore.Continue
	}
	r.RespHeader().Set("Location", uri)
	r.ForceStatus(code)
	r.SetStatus(code)
	return httpcore.Continue
}
