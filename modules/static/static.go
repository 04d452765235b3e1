// Package static serves files for spindle as nginx's static, index, autoindex and
// try_files machinery does: root and alias map URIs to the filesystem, index and
// try_files pick the file, and the static handler sends it with nginx's headers,
// conditional requests and byte ranges. Files are opened beneath their document root
// with os.Root, so no URI, alias capture or symbolic link reaches outside it.
package static

import (
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/pcre"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// Conf is a location's static-file configuration.
type Conf struct {
	doc         *docPath          // root or alias
	index       []indexFile       // index files, in order
	try         *tryFiles         // try_files of the context that wrote it
	types       map[string]string // extension → MIME type
	etag        bool
	ims         imsMode
	autoindex   bool
	maxRanges   int // -1: no limit
	logNotFound bool
	gzipStatic  gzipStaticMode
	// brotliStatic is ngx_brotli's brotli_static (file.br), with gzip_static's modes.
	brotliStatic gzipStaticMode
}

// imsMode is if_modified_since.
type imsMode uint8

const (
	imsExact  imsMode = iota // 304 only when the date is the file's
	imsOff                   // If-Modified-Since is ignored
	imsBefore                // 304 when the file is not newer than the date
)

const ctxHSL = httpcore.CtxHTTP | httpcore.CtxServer | httpcore.CtxLocation

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf {
	return &Conf{
		doc:         &docPath{value: "html"},
		index:       []indexFile{{name: "index.html"}},
		types:       defaultTypes,
		etag:        true,
		maxRanges:   -1,
		logNotFound: true,
	}
})

// Module is the static module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "static",
	Order: httpcore.OrderContent,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "root", Context: httpcore.CtxAll, Set: setRoot},
		{Name: "alias", Context: httpcore.CtxLocation, Set: setAlias},
		{Name: "index", Context: ctxHSL, Set: setIndex},
		{Name: "try_files", Context: httpcore.CtxServer | httpcore.CtxLocation, Set: setTryFiles},
		{Name: "types", Context: ctxHSL, Set: setTypes},
		{Name: "etag", Context: ctxHSL, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.etag })},
		{Name: "if_modified_since", Context: ctxHSL, Set: setIMS},
		{Name: "autoindex", Context: ctxHSL, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.autoindex })},
		{Name: "max_ranges", Context: ctxHSL, Set: httpcore.SetCount(0, conf.NoMax, func(c *Conf) *int { return &c.maxRanges })}, // 0 turns byte ranges off
		{Name: "log_not_found", Context: ctxHSL, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.logNotFound })},
		{Name: "gzip_static", Context: httpcore.CtxAll, Set: setGzipStatic},
		{Name: "brotli_static", Context: httpcore.CtxAll, Set: setBrotliStatic},
	},
	Install: install,
})

func init() {
	httpcore.RegisterVar("document_root", func(r *httpcore.Request) string {
		v, _, _ := confOf(r).doc.eval(r)
		return v
	})
	httpcore.RegisterVar("realpath_root", func(r *httpcore.Request) string {
		v, _, err := confOf(r).doc.eval(r)
		if err != nil {
			return ""
		}
		real, err := filepath.EvalSymlinks(v)
		if err != nil {
			return ""
		}
		return real
	})
	httpcore.RegisterVar("request_filename", func(r *httpcore.Request) string {
		t, _ := confOf(r).mapURI(r, r.URI())
		return t.full
	})
}

func confOf(r *httpcore.Request) *Conf { return mod.Of(r.Location()) }

// defaultTypes is nginx's mime.types as an extension table.
var defaultTypes = func() map[string]string {
	m := map[string]string{}
	for _, t := range nginxTypes {
		for _, e := range t.exts {
			m[e] = t.typ
		}
	}
	return m
}()

// install adds the handlers: try_files in the context that wrote it (and its if
// blocks: nginx's if loses try_files, which nobody wants), and the content-phase
// handlers everywhere, as nginx's index, autoindex and static handlers, which serve a
// location that has no content handler of its own.
func install(l *httpcore.Location) error {
	c := mod.Of(l)
	if c.doc.prefix == "" {
		// Contexts that set no root: the default "html" under the prefix.
		prefix := l.Config().Main.Prefix
		cp := *c.doc
		cp.prefix = prefix
		if cp.expr == nil && !filepath.IsAbs(cp.value) {
			cp.value = filepath.Join(prefix, cp.value)
		}
		c.doc = &cp
	}
	if t := c.try; t != nil && (t.owner == l || l.Context() == httpcore.CtxIf && t.owner == l.Parent) {
		l.AddInlineHandler(httpcore.PhaseTryFiles, httpcore.OrderContent, c.tryFilesHandler)
	}
	l.AddInlineHandler(httpcore.PhaseContent, httpcore.OrderContent+10, c.indexHandler)
	if c.autoindex {
		l.AddInlineHandler(httpcore.PhaseContent, httpcore.OrderContent+20, c.autoindexHandler)
	}
	l.AddInlineHandler(httpcore.PhaseContent, httpcore.OrderContent+30, c.staticHandler)
	return nil
}

// nginxVar finds nginx's `$name` in the literal text of an expression: HCL reads it as
// text, so a config ported from nginx would silently look for a file named "$uri".
var nginxVar = pcre.MustCompile(`\$[A-Za-z_][A-Za-z0-9_]*`)

func checkNginxVars(e hclsyntax.Expression) error {
	var err error
	hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
		if lit, ok := n.(*hclsyntax.LiteralValueExpr); ok && err == nil && lit.Val.Type() == cty.String {
			if m := nginxVar.FindString(lit.Val.AsString()); m != "" {
				err = conf.Errorf(lit.SrcRange, "%q is nginx's variable syntax; spindle writes it ${%s}", m, strings.TrimPrefix(m, "$"))
			}
		}
		return nil
	})
	return err
}

// setTypes: types = { "text/html" = ["html", "htm"], "image/webp" = "webp" }. The table
// replaces the inherited one, as nginx's types block; `types = {}` with default_type
// gives every file one type.
func setTypes(c *httpcore.Cmd) error {
	fields, err := conf.ObjectFields(c.Attr().Expr)
	if err != nil {
		return err
	}
	m := map[string]string{}
	for _, f := range fields {
		if !strings.Contains(f.Name, "/") {
			return conf.Errorf(f.NameRange, "%q is not a MIME type (type/subtype)", f.Name)
		}
		v, err := conf.StaticValue(f.Expr)
		if err != nil {
			return err
		}
		var exts []string
		if v.Type() == cty.String {
			exts = []string{v.AsString()}
		} else if exts, err = conf.ExprStrings(f.Expr); err != nil {
			return err
		}
		for _, e := range exts {
			e = strings.TrimPrefix(e, ".")
			if e == "" || strings.ContainsAny(e, "/ ") {
				return conf.Errorf(f.Expr.Range(), "invalid extension %q", e)
			}
			m[e] = f.Name
		}
	}
	mod.Cmd(c).types = m
	return nil
}

// setIMS: if_modified_since = "off" | "exact" | "before".
func setIMS(c *httpcore.Cmd) error {
	v, err := conf.String(c.Attr())
	if err != nil {
		return err
	}
	sc := mod.Cmd(c)
	switch v {
	case "off":
		sc.ims = imsOff
	case "exact":
		sc.ims = imsExact
	case "before":
		sc.ims = imsBefore
	default:
		return conf.Errorf(c.Attr().Expr.Range(), "if_modified_since is \"off\", \"exact\" or \"before\", not %q", v)
	}
	return nil
}
