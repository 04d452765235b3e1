package static

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/errlog"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// docPath is a context's root or alias.
type docPath struct {
	alias     bool
	regex     bool // an alias in a regex location is the whole file path
	prefixLen int  // alias: how much of the URI (the location's prefix) it replaces
	// value is the path when it has no variables, resolved against the prefix.
	value string
	expr  *httpcore.Expr
	// lit is the text before the first variable of expr, which variables cannot change:
	// the directory part of it confines where the value may point.
	lit    string
	prefix string
	owner  *httpcore.Location
}

// eval returns the path for the request, and the directory it must stay in when
// variables made it ("" when it is constant or has no constant directory part).
func (d *docPath) eval(r *httpcore.Request) (value, base string, err error) {
	if d.expr == nil {
		return d.value, "", nil
	}
	v, err := d.expr.String(r)
	if err != nil {
		return "", "", err
	}
	lit := d.lit
	if !filepath.IsAbs(v) {
		v = d.prefix + "/" + v
		lit = d.prefix + "/" + lit
	}
	if i := strings.LastIndexByte(lit, '/'); i >= 0 && filepath.IsAbs(lit) {
		base = lit[:i+1]
	}
	return v, base, nil
}

// within reports whether p, cleaned, is dir (ending in "/") or below it.
func within(dir, p string) bool {
	p = path.Clean(p)
	return dir == "/" || p == dir[:len(dir)-1] || strings.HasPrefix(p, dir)
}

// target is where a URI leads in the filesystem.
type target struct {
	dir  string // the directory the file must stay in, opened as an os.Root
	rel  string // the path below dir, cleaned; "." for dir itself
	full string // the path as nginx builds it ($request_filename, logs)
}

var (
	errEscape = errors.New("path escapes from the document root")
	errNUL    = errors.New("path contains a NUL byte")
)

// mapURI maps a URI to a file as nginx's ngx_http_map_uri_to_path: root + URI, or the
// alias in place of the location's prefix, or (regex location) the alias itself. It
// refuses what would leave the root or alias directory: ".." segments (the core
// removes them from the request URI, but modules may set any URI, and an alias after
// a location without a trailing slash, or a regex capture, can produce "../"), and
// variables that take the path out of the constant part of its directory.
func (c *Conf) mapURI(r *httpcore.Request, uri string) (target, error) {
	d := c.doc
	v, base, err := d.eval(r)
	if err != nil {
		return target{}, err
	}
	switch {
	case !d.alias:
		t := target{dir: v, full: v + uri}
		if base != "" && !within(base, v) {
			return t, errEscape
		}
		return t.withRel(uri)
	case d.regex:
		full := v
		if rc, _ := mod.Ctx(r).(*reqCtx); rc != nil && rc.addURI {
			full += uri // try_files found uri under the alias (nginx's add_uri_to_alias)
		}
		dir := d.regexDir(v, base)
		t := target{dir: dir, full: full}
		if !strings.HasPrefix(full, dir) {
			return t, errEscape
		}
		return t.withRel(full[len(dir):])
	default:
		suffix := ""
		if len(uri) > d.prefixLen {
			suffix = uri[d.prefixLen:]
		}
		return aliasTarget(v, base, suffix)
	}
}

// regexDir is the directory an alias of a regex location confines its path to: the
// directory of a constant alias; else the constant directory its template starts
// with, or "/" when it starts with a variable (the rules on ".." still hold).
func (d *docPath) regexDir(v, base string) string {
	switch {
	case d.expr == nil:
		return v[:strings.LastIndexByte(v, '/')+1]
	case base != "":
		return base
	}
	return "/"
}

// aliasTarget is alias + suffix, confined to the alias when it ends with "/" (the
// directory it names) or else to the directory holding it.
func aliasTarget(alias, base, suffix string) (target, error) {
	dir := alias[:strings.LastIndexByte(alias, '/')+1]
	full := alias + suffix
	t := target{dir: dir, full: full}
	if base != "" && !within(base, dir) {
		return t, errEscape
	}
	return t.withRel(full[len(dir):])
}

// join is the target for name in the directory t.
func (t target) join(name string) (target, error) {
	rel := name
	if t.rel != "." {
		rel = t.rel + "/" + name
	}
	t.full += name
	return t.withRel(rel)
}

func (t target) withRel(rel string) (target, error) {
	if strings.IndexByte(rel, 0) >= 0 {
		return t, errNUL
	}
	var b strings.Builder
	for seg := range strings.SplitSeq(rel, "/") {
		switch seg {
		case "", ".":
			continue
		case "..":
			return t, errEscape
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(seg)
	}
	t.rel = b.String()
	if t.rel == "" {
		t.rel = "."
	}
	return t, nil
}

// open opens the target beneath its directory. os.Root refuses any path that leaves
// it, through ".." or a symbolic link (absolute symbolic links included); links that
// stay inside are followed. Non-blocking, so that a FIFO cannot hold the worker.
func (t target) open() (*os.File, os.FileInfo, error) {
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		return nil, nil, err
	}
	defer root.Close()
	f, err := root.OpenFile(t.rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// stat is open for tests of existence (index, try_files).
func (t target) stat() (os.FileInfo, error) {
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.Stat(t.rel)
}

// failure is the response and log entry for a file that could not be opened, as
// nginx's static handler: missing → 404, forbidden or outside the root → 403.
func (c *Conf) failure(r *httpcore.Request, op string, t target, err error) httpcore.Action {
	status, level := classify(err)
	if status != 404 || c.logNotFound {
		r.Logf(level, "%s", describe(op, t, err))
	}
	return r.Error(status)
}

func classify(err error) (int, errlog.Level) {
	var errno syscall.Errno
	switch {
	case errors.Is(err, errNUL):
		return 404, httpcore.LogError
	case errors.Is(err, errEscape):
		return 403, httpcore.LogError
	case !errors.As(err, &errno):
		// os.Root's "path escapes from parent", the only error it makes up itself.
		return 403, httpcore.LogError
	}
	switch errno {
	case syscall.ENOENT, syscall.ENOTDIR, syscall.ENAMETOOLONG:
		return 404, httpcore.LogError
	case syscall.EACCES, syscall.EPERM, syscall.ELOOP, syscall.EMLINK:
		return 403, httpcore.LogError
	}
	return 500, httpcore.LogCrit
}

// describe formats an error as nginx logs it: open() "/srv/www/x" failed (2: No such
// file or directory).
func describe(op string, t target, err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return fmt.Sprintf("%s %q failed (%s)", op, t.full, errnoText(err))
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if err.Error() == "path escapes from parent" {
		err = errEscape
	}
	return fmt.Sprintf("%s %q failed (%v: %q)", op, t.full, err, t.dir)
}

// errnoText formats a system error as nginx does: "2: No such file or directory".
func errnoText(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	msg := errno.Error()
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:]
	}
	return fmt.Sprintf("%d: %s", int(errno), msg)
}

// setRoot: root = "html" | "/srv/${host}".
func setRoot(c *httpcore.Cmd) error {
	return setDoc(c, false)
}

// setAlias: alias = "/data/images/" (location prefix replaced) or, in a regex location,
// alias = "/data/${re[1]}" (the whole path).
func setAlias(c *httpcore.Cmd) error {
	if c.Loc.Match == httpcore.MatchNamed {
		return c.Errorf("alias cannot be used inside the named location %q", c.Loc.Name)
	}
	return setDoc(c, true)
}

func setDoc(c *httpcore.Cmd, alias bool) error {
	sc := mod.Cmd(c)
	if sc.doc.owner == c.Loc {
		this, other := "root", "alias"
		if alias {
			this, other = other, this
		}
		return c.Errorf("%s is a duplicate: %s was set in this location already", this, other)
	}
	e, err := c.AttrExpr()
	if err != nil {
		return err
	}
	if err := checkNginxVars(c.Attr().Expr); err != nil {
		return err
	}
	prefix := c.Config().Main.Prefix
	d := &docPath{alias: alias, owner: c.Loc, prefix: prefix}
	if alias {
		d.regex = c.Loc.Match == httpcore.MatchRegex || c.Loc.Match == httpcore.MatchRegexCI
		d.prefixLen = len(c.Loc.Path)
	}
	if e.IsConst() {
		v, err := httpcore.ValueString(e.Const(), e.Range)
		if err != nil {
			return err
		}
		if v == "" {
			return conf.Errorf(e.Range, "%s must not be empty", c.Name())
		}
		if strings.IndexByte(v, 0) >= 0 {
			return conf.Errorf(e.Range, "%s contains a NUL byte", c.Name())
		}
		if !filepath.IsAbs(v) {
			// filepath.Join would drop the trailing slash that an alias needs.
			v = strings.TrimSuffix(prefix, "/") + "/" + v
		}
		if !alias && len(v) > 1 {
			v = strings.TrimRight(v, "/") // nginx ignores a root's trailing slash
			if v == "" {
				v = "/"
			}
		}
		d.value = v
	} else {
		d.expr = e
		d.lit = literalPrefix(c.Attr().Expr)
	}
	sc.doc = d
	return nil
}

// literalPrefix is the text of a template before its first interpolation.
func literalPrefix(e hclsyntax.Expression) string {
	t, ok := e.(*hclsyntax.TemplateExpr)
	if !ok || len(t.Parts) == 0 {
		return ""
	}
	if lit, ok := t.Parts[0].(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type() == cty.String {
		return lit.Val.AsString()
	}
	return ""
}
