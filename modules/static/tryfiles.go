package static

import (
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/pcre"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// tryFiles is try_files: files (or directories, written with a trailing "/") to look
// for in order, then the fallback.
type tryFiles struct {
	tries []tryItem
	code  int            // fallback "=404"
	named string         // fallback "@name"
	uri   *httpcore.Expr // fallback URI, with "?args" possibly
	owner *httpcore.Location
}

type tryItem struct {
	e   *httpcore.Expr
	dir bool // written with a trailing slash: looks for a directory
}

// reqCtx is the module's per-request state.
type reqCtx struct {
	// addURI: try_files found the URI under the alias of a regex location, which then
	// names a directory the URI is appended to (nginx's add_uri_to_alias).
	addURI bool
}

var codeFallback = pcre.MustCompile(`^=([0-9]{3})$`)

// setTryFiles: try_files = ["${uri}", "${uri}/", "/index.html"] — the last element is
// a URI, "@named" location or "=code".
func setTryFiles(c *httpcore.Cmd) error {
	if err := checkNginxVars(c.Attr().Expr); err != nil {
		return err
	}
	exprs, err := listExprs(c)
	if err != nil {
		return err
	}
	if len(exprs) < 2 {
		return c.Errorf("try_files needs at least one file and a fallback: [\"${uri}\", \"=404\"]")
	}
	tf := &tryFiles{owner: c.Loc}
	srcs := c.Attr().Expr.(*hclsyntax.TupleConsExpr).Exprs
	for i, e := range exprs[:len(exprs)-1] {
		tf.tries = append(tf.tries, tryItem{e: e, dir: endsWithSlash(e, srcs[i])})
	}
	last := exprs[len(exprs)-1]
	if last.IsConst() {
		v, err := httpcore.ValueString(last.Const(), last.Range)
		if err != nil {
			return err
		}
		switch {
		case codeFallback.MatchString(v):
			tf.code, _ = strconv.Atoi(v[1:])
			if tf.code < 100 || tf.code > 999 {
				return conf.Errorf(last.Range, "invalid code %q", v)
			}
		case strings.HasPrefix(v, "@"):
			tf.named = v
		case strings.HasPrefix(v, "="):
			return conf.Errorf(last.Range, "invalid code %q (expected =NNN)", v)
		case v == "":
			return conf.Errorf(last.Range, "the try_files fallback must not be empty")
		}
	}
	if tf.code == 0 && tf.named == "" {
		tf.uri = last
	}
	mod.Cmd(c).try = tf
	return nil
}

// endsWithSlash tells a directory test from a file test the way nginx does, by the
// element as written: "${uri}/" tests a directory even when uri is "/".
func endsWithSlash(e *httpcore.Expr, src hclsyntax.Expression) bool {
	if e.IsConst() {
		v, err := httpcore.ValueString(e.Const(), e.Range)
		return err == nil && strings.HasSuffix(v, "/")
	}
	t, ok := src.(*hclsyntax.TemplateExpr)
	if !ok || len(t.Parts) == 0 {
		return false
	}
	lit, ok := t.Parts[len(t.Parts)-1].(*hclsyntax.LiteralValueExpr)
	return ok && lit.Val.Type() == cty.String && strings.HasSuffix(lit.Val.AsString(), "/")
}

// listExprs compiles a directive's value: a list of templates, or a single one.
func listExprs(c *httpcore.Cmd) ([]*httpcore.Expr, error) {
	t, ok := c.Attr().Expr.(*hclsyntax.TupleConsExpr)
	if !ok {
		e, err := c.AttrExpr()
		if err != nil {
			return nil, err
		}
		if c.Name() == "try_files" {
			return nil, c.Errorf("try_files takes a list: [\"${uri}\", \"${uri}/\", \"/index.html\"]")
		}
		return []*httpcore.Expr{e}, nil
	}
	out := make([]*httpcore.Expr, 0, len(t.Exprs))
	for _, x := range t.Exprs {
		e, err := c.Expr(x)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// tryFilesHandler runs try_files in its phase, as nginx's
// ngx_http_core_try_files_phase: the first element that exists as the right kind
// (directory or not) becomes the URI and processing goes on to the content phase;
// if none does, the fallback ends the request with a code, or redirects internally
// to a named location or a URI (whose "?args" replace the query string).
func (c *Conf) tryFilesHandler(r *httpcore.Request) httpcore.Action {
	tf := c.try
	d := c.doc
	for _, it := range tf.tries {
		name, err := it.e.String(r)
		if err != nil {
			r.Logf(httpcore.LogError, "try_files: %v", err)
			return r.Error(500)
		}
		var t target
		var newURI string
		switch {
		case !d.alias:
			t, err = c.mapURI(r, name)
			newURI = name
		case d.regex:
			v, base, eerr := d.eval(r)
			if eerr != nil {
				r.Logf(httpcore.LogError, "try_files: %v", eerr)
				return r.Error(500)
			}
			dir := d.regexDir(v, base)
			t = target{dir: dir, full: v + name}
			if strings.HasPrefix(t.full, dir) {
				t, err = t.withRel(t.full[len(dir):])
			} else {
				err = errEscape
			}
			newURI = name
		default:
			// The location's prefix in the element is replaced by the alias.
			v, base, eerr := d.eval(r)
			if eerr != nil {
				r.Logf(httpcore.LogError, "try_files: %v", eerr)
				return r.Error(500)
			}
			uri := r.URI()
			prefix := uri[:min(d.prefixLen, len(uri))]
			suffix := strings.TrimPrefix(name, prefix)
			t, err = aliasTarget(v, base, suffix)
			newURI = prefix + suffix
		}
		if err != nil {
			r.Logf(httpcore.LogError, "try_files: %s", describe("open()", t, err))
			continue
		}
		fi, err := t.stat()
		if err != nil {
			if status, level := classify(err); status != 404 {
				r.Logf(level, "%s", describe("open()", t, err))
			}
			continue
		}
		if fi.IsDir() != it.dir {
			continue
		}
		if d.alias && d.regex {
			if !it.dir {
				r.SetURI(newURI)
				mod.SetCtx(r, &reqCtx{addURI: true})
			}
		} else {
			r.SetURI(newURI)
		}
		return httpcore.NextPhase
	}
	switch {
	case tf.code != 0:
		return r.Error(tf.code)
	case tf.named != "":
		return r.InternalRedirect(tf.named, r.Args())
	}
	u, err := tf.uri.String(r)
	if err != nil {
		r.Logf(httpcore.LogError, "try_files: %v", err)
		return r.Error(500)
	}
	if strings.HasPrefix(u, "@") {
		return r.InternalRedirect(u, r.Args())
	}
	path, args, _ := strings.Cut(u, "?")
	return r.InternalRedirect(path, args)
}
