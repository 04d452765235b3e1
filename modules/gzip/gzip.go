// Package gzip is nginx's ngx_http_gzip_module for spindle: a header and body filter
// that compresses responses with github.com/klauspost/compress (gzip, gzip_types,
// gzip_min_length, gzip_comp_level; gzip_buffers is accepted). Whether a client may
// get a compressed response is the core's decision (httpcore Request.GzipOK, with
// gzip_vary, gzip_http_version, gzip_proxied and gzip_disable), shared with the static
// module's gzip_static.
package gzip

import (
	"bytes"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Conf is the gzip configuration of a context, with nginx's defaults.
type Conf struct {
	On        bool
	Types     []string // gzip_types: media types besides text/html; "*" for any
	anyType   bool
	MinLength int64 // gzip_min_length, compared with the response's Content-Length
	Level     int   // gzip_comp_level, 1-9
}

// Order places the filters after the Lua filters and add_header, as nginx's gzip
// filter follows the headers filter: filters that look at the body see it
// uncompressed, and the compressed length is what goes out.
const Order = httpcore.OrderHeaders + 50

// mod is the module's typed handle.
var mod = httpcore.Define(func() *Conf { return &Conf{MinLength: 20, Level: 1} })

// Module is the gzip filter module.
var Module = httpcore.Register(&httpcore.Module{
	Name:    "gzip",
	Order:   Order,
	Conf:    mod,
	Install: install,
	Directives: []httpcore.Directive{
		{Name: "gzip", Context: httpcore.CtxAll, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.On })},
		{Name: "gzip_types", Context: httpcore.CtxAll, Set: func(c *httpcore.Cmd) error {
			vals, err := conf.Strings(c.Attr())
			if err != nil {
				return err
			}
			gc := mod.Cmd(c)
			gc.Types, gc.anyType = nil, false
			for _, v := range vals {
				for _, t := range strings.Fields(v) {
					if t == "*" {
						gc.anyType = true
						continue
					}
					if !strings.Contains(t, "/") {
						return conf.Errorf(c.Attr().Expr.Range(), "%q is not a MIME type (type/subtype, or *)", t)
					}
					gc.Types = append(gc.Types, strings.ToLower(t))
				}
			}
			return nil
		}},
		{Name: "gzip_min_length", Context: httpcore.CtxAll, Set: httpcore.SetSize(func(c *Conf) *int64 { return &c.MinLength })},
		{Name: "gzip_comp_level", Context: httpcore.CtxAll, Set: httpcore.SetCount(1, 9, func(c *Conf) *int { return &c.Level })},
		// The compressor's output goes to the response as it comes: nginx's buffer
		// settings have nothing to size. Accepted so that nginx configurations load.
		{Name: "gzip_buffers", Context: httpcore.CtxAll, Set: func(c *httpcore.Cmd) error {
			_, err := conf.Strings(c.Attr())
			return err
		}},
	},
})

func install(l *httpcore.Location) error {
	c := mod.Of(l)
	if c.On {
		l.AddHeaderFilter(Order, c.header)
		l.AddBodyFilter(Order, c.body)
	}
	return nil
}

// state is the compression of one response.
type state struct {
	w     *gzip.Writer
	out   bytes.Buffer
	level int
}

// header decides, as nginx's gzip header filter: a 200, 403 or 404 response with a
// body, not encoded already, at least gzip_min_length long when the length is known,
// of a type gzip_types lists, to a client the core says may have it. It then drops
// Content-Length and Accept-Ranges and weakens the ETag (the bytes differ from the
// identity representation's).
func (c *Conf) header(r *httpcore.Request) error {
	if r.IsSubrequest() {
		return nil // captured by its parent, which is compressed if anything
	}
	switch r.Status() {
	case 200, 403, 404:
	default:
		return nil
	}
	h := r.RespHeader()
	if h.Get("Content-Encoding") != "" || r.Method() == "HEAD" {
		return nil
	}
	if n := r.ContentLength(); n >= 0 && n < c.MinLength {
		return nil
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = httpcore.CoreConfOf(r.Location()).DefaultType // what the core will send
	}
	if !c.typeOK(ct) {
		return nil
	}
	r.MarkGzipVary()
	if !r.GzipOK() {
		return nil
	}
	h.Set("Content-Encoding", "gzip")
	h.Del("Content-Length")
	h.Del("Accept-Ranges")
	r.SetContentLength(-1)
	if et := h.Get("ETag"); et != "" {
		switch {
		case strings.HasPrefix(et, "W/"):
		case strings.HasPrefix(et, `"`):
			h.Set("ETag", "W/"+et)
		default:
			h.Del("ETag")
		}
	}
	st := &state{level: c.Level}
	st.w = getWriter(&st.out, c.Level)
	mod.SetCtx(r, st)
	return nil
}

func (c *Conf) typeOK(ct string) bool {
	if c.anyType {
		return true
	}
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt == "text/html" {
		return true
	}
	for _, t := range c.Types {
		if t == mt {
			return true
		}
	}
	return false
}

// body compresses the response as it is written; what the compressor has produced
// so far goes on, the rest at the end.
func (c *Conf) body(r *httpcore.Request, p []byte, last bool) ([]byte, error) {
	st, _ := mod.Ctx(r).(*state)
	if st == nil || st.w == nil {
		return p, nil
	}
	st.out.Reset()
	if len(p) > 0 {
		if _, err := st.w.Write(p); err != nil {
			return nil, err
		}
	}
	if last {
		if err := st.w.Close(); err != nil {
			return nil, err
		}
		putWriter(st.w, st.level)
		st.w = nil
	}
	// The caller copies the bytes before the next call reuses the buffer.
	return st.out.Bytes(), nil
}

// Compressors are kept for reuse per level, a few of each: a klauspost writer
// allocates about 0.9 MB of tables when made (level 1; 1.1 MB at level 5), so making
// one per response cost more than the compression (spindle served a 100 KB page at a
// fifth of nginx's rate with writers from a sync.Pool, which every garbage collection
// empties). A worker runs most requests one after the other: a few spares are enough.
const sparesPerLevel = 4

var spares struct {
	sync.Mutex
	w [10][]*gzip.Writer
}

func getWriter(dst *bytes.Buffer, level int) *gzip.Writer {
	spares.Lock()
	if n := len(spares.w[level]); n > 0 {
		w := spares.w[level][n-1]
		spares.w[level] = spares.w[level][:n-1]
		spares.Unlock()
		w.Reset(dst)
		return w
	}
	spares.Unlock()
	w, _ := gzip.NewWriterLevel(dst, level)
	return w
}

func putWriter(w *gzip.Writer, level int) {
	w.Reset(nil)
	spares.Lock()
	if len(spares.w[level]) < sparesPerLevel {
		spares.w[level] = append(spares.w[level], w)
	}
	spares.Unlock()
}
