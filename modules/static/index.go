package static

import (
	"html"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// indexFile is one entry of index: a name, or a template.
type indexFile struct {
	name string
	expr *httpcore.Expr
}

// setIndex: index = ["index.html", "index.htm"]; a name may hold variables, and an
// absolute one ("/index.php") is redirected to without a test (use it last).
func setIndex(c *httpcore.Cmd) error {
	if err := checkNginxVars(c.Attr().Expr); err != nil {
		return err
	}
	exprs, err := listExprs(c)
	if err != nil {
		return err
	}
	var out []indexFile
	for _, e := range exprs {
		if !e.IsConst() {
			out = append(out, indexFile{expr: e})
			continue
		}
		v, err := httpcore.ValueString(e.Const(), e.Range)
		if err != nil {
			return err
		}
		if v == "" {
			return conf.Errorf(e.Range, "index names must not be empty")
		}
		out = append(out, indexFile{name: v})
	}
	mod.Cmd(c).index = out
	return nil
}

// indexHandler is nginx's index module: for a URI ending in "/", the first index file
// that exists (and is not a directory, which nginx would redirect to in circles) is
// served through an internal redirect to URI + name. When none exists the request
// goes on to autoindex, else ends in 403; when the directory itself does not exist,
// 404.
func (c *Conf) indexHandler(r *httpcore.Request) httpcore.Action {
	uri := r.URI()
	if !strings.HasSuffix(uri, "/") {
		return httpcore.Continue
	}
	if m := r.Method(); m != "GET" && m != "HEAD" && m != "POST" {
		return httpcore.Continue
	}
	dirT, err := c.mapURI(r, uri)
	if err != nil {
		return c.mapFailure(r, dirT, err)
	}
	dirTested := false
	for _, ix := range c.index {
		name := ix.name
		if ix.expr != nil {
			var err error
			if name, err = ix.expr.String(r); err != nil {
				r.Logf(httpcore.LogError, "index: %v", err)
				return r.Error(500)
			}
			if name == "" {
				continue
			}
		}
		if name[0] == '/' {
			return r.InternalRedirect(name, r.Args())
		}
		// The name goes after the directory's path, as nginx appends it: with a
		// regex location's alias, mapping URI + name would give another file.
		t, err := dirT.join(name)
		if err != nil {
			return c.mapFailure(r, t, err)
		}
		fi, err := t.stat()
		if err == nil {
			if fi.IsDir() {
				continue
			}
			return r.InternalRedirect(uri+name, r.Args())
		}
		status, _ := classify(err)
		if status != 404 || !os.IsNotExist(err) {
			return c.failure(r, "open()", t, err)
		}
		if !dirTested {
			dt := dirT
			dfi, derr := dt.stat()
			if derr != nil {
				if status, _ := classify(derr); status == 404 {
					if c.logNotFound {
						r.Logf(httpcore.LogError, "%q is not found (%v)", t.full, errnoText(derr))
					}
					return r.Error(404)
				}
				return c.failure(r, "stat()", dt, derr)
			}
			if !dfi.IsDir() {
				r.Logf(httpcore.LogError, "%q is not a directory", dt.full)
				return r.Error(404)
			}
			dirTested = true
		}
	}
	return httpcore.Continue
}

// autoindexHandler lists a directory as nginx's autoindex (html format, exact sizes,
// times in UTC): directories first, then files, by name; names starting with "." are
// left out.
func (c *Conf) autoindexHandler(r *httpcore.Request) httpcore.Action {
	uri := r.URI()
	if !strings.HasSuffix(uri, "/") {
		return httpcore.Continue
	}
	if m := r.Method(); m != "GET" && m != "HEAD" {
		return httpcore.Continue
	}
	t, err := c.mapURI(r, uri)
	if err != nil {
		return c.mapFailure(r, t, err)
	}
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		return c.failure(r, "opendir()", t, err)
	}
	defer root.Close()
	dir, err := root.Open(t.rel)
	if err != nil {
		return c.failure(r, "opendir()", t, err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		r.Logf(httpcore.LogCrit, "readdir() %q failed (%v)", t.full, err)
		return r.Error(500)
	}
	type entry struct {
		name  string
		dir   bool
		size  int64
		mtime time.Time
	}
	var entries []entry
	for _, n := range names {
		if strings.HasPrefix(n, ".") {
			continue
		}
		// Stat through the root: an entry whose link leads outside is not listed,
		// like a dangling one.
		fi, err := root.Stat(joinRel(t.rel, n))
		if err != nil {
			continue
		}
		entries = append(entries, entry{n, fi.IsDir(), fi.Size(), fi.ModTime()})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if a.dir != b.dir {
			if a.dir {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})

	var b strings.Builder
	esc := html.EscapeString(uri)
	b.WriteString("<html>\r\n<head><title>Index of ")
	b.WriteString(esc)
	b.WriteString("</title></head>\r\n<body>\r\n<h1>Index of ")
	b.WriteString(esc)
	b.WriteString("</h1><hr><pre><a href=\"../\">../</a>\r\n")
	for _, e := range entries {
		name := e.name
		if e.dir {
			name += "/"
		}
		b.WriteString(`<a href="`)
		b.WriteString(html.EscapeString(url.PathEscape(e.name)))
		if e.dir {
			b.WriteByte('/')
		}
		b.WriteString(`">`)
		// Names longer than 50 characters are cut, with "..>" for the rest.
		width := utf8.RuneCountInString(name)
		if width > 50 {
			runes := []rune(name)
			name = string(runes[:47]) + "..>"
			width = 50
		}
		b.WriteString(html.EscapeString(name))
		b.WriteString("</a>")
		b.WriteString(strings.Repeat(" ", 51-width))
		b.WriteString(e.mtime.UTC().Format("02-Jan-2006 15:04"))
		b.WriteByte(' ')
		size := "-"
		if !e.dir {
			size = strconv.FormatInt(e.size, 10)
		}
		b.WriteString(strings.Repeat(" ", max(0, 19-len(size))))
		b.WriteString(size)
		b.WriteString("\r\n")
	}
	b.WriteString("</pre><hr></body>\r\n</html>\r\n")
	r.SetStatus(200)
	r.RespHeader().Set("Content-Type", "text/html")
	r.SetContentLength(int64(b.Len()))
	r.WriteString(b.String())
	return httpcore.Finished
}

func joinRel(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}
