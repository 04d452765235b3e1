// Package brotli is ngx_brotli's filter for spindle: brotli, brotli_types,
// brotli_min_length, brotli_comp_level (brotli_static is the static module's, beside
// gzip_static). It compresses with github.com/andybalholm/brotli, the pure-Go port of
// Google's encoder, and follows the gzip filter's rules: the same statuses, no HEAD,
// 204/304 or subrequests, Vary by gzip_vary, and the client's Accept-Encoding judged
// with the gzip settings (gzip_http_version, gzip_proxied, gzip_disable) as
// ngx_brotli's. Its filter runs before gzip's, so a client that takes both gets br.
package brotli

import (
	"bytes"
	"io"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/gzip"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Conf is the brotli configuration of a context, with ngx_brotli's defaults.
type Conf struct {
	On        bool
	Types     []string // brotli_types: media types besides text/html; "*" for any
	anyType   bool
	MinLength int64 // brotli_min_length, compared with the response's Content-Length
	Level     int   // brotli_comp_level, 0-11
}

// Order puts the filter just before gzip's: the first to set Content-Encoding wins.
const Order = gzip.Order - 1

var mod = httpcore.Define(func() *Conf { return &Conf{MinLength: 20, Level: 6} })

// Module is the brotli filter module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "brotli",
	Order: Order,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "brotli", Context: httpcore.CtxAll, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.On })},
		{Name: "brotli_types", Context: httpcore.CtxAll, Set: setTypes},
		{Name: "brotli_min_length", Context: httpcore.CtxAll, Set: httpcore.SetSize(func(c *Conf) *int64 { return &c.MinLength })},
		{Name: "brotli_comp_level", Context: httpcore.CtxAll, Set: httpcore.SetCount(0, 11, func(c *Conf) *int { return &c.Level })},
	},
	Install: install,
})

func setTypes(c *httpcore.Cmd) error {
	vals, err := conf.Strings(c.Attr())
	if err != nil {
		return err
	}
	bc := mod.Cmd(c)
	bc.Types, bc.anyType = nil, false
	for _, v := range vals {
		for _, t := range strings.Fields(v) {
			if t == "*" {
				bc.anyType = true
				continue
			}
			if !strings.Contains(t, "/") {
				return conf.Errorf(c.Attr().Expr.Range(), "%q is not a MIME type (type/subtype, or *)", t)
			}
			bc.Types = append(bc.Types, strings.ToLower(t))
		}
	}
	return nil
}

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
	w     encoder
	out   bytes.Buffer
	level int
}

// header decides as ngx_brotli's header filter (and the gzip filter): a 200, 403 or 404
// response with a body, not encoded already, at least brotli_min_length long when the
// length is known, of a type brotli_types lists, to a client whose Accept-Encoding
// takes br. It then drops Content-Length and Accept-Ranges (no ranges of a compressed
// body) and weakens the ETag.
func (c *Conf) header(r *httpcore.Request) error {
	if r.IsSubrequest() {
		return nil
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
		ct = httpcore.CoreConfOf(r.Location()).DefaultType
	}
	if !c.typeOK(ct) {
		return nil
	}
	r.MarkGzipVary()
	if !r.EncodingOK("br") {
		return nil
	}
	h.Set("Content-Encoding", "br")
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

// body compresses the response as it is written; what the encoder has produced so far
// goes on, the rest at the end.
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

// encoder is either of andybalholm/brotli's writers.
type encoder interface {
	io.WriteCloser
	Reset(io.Writer)
}

// newEncoder picks the writer for a level. At 4 to 6, the levels ngx_brotli users
// pick, NewWriterV2 (the port's newer match finder) is both faster and smaller on
// scripts/bench.sh's 100 KB page (BenchmarkCompress, -cpu 1, best of 3, loaded
// machine): level 4 2.0 ms ratio 9.0 against the reference encoder's 5.6 ms 8.4;
// level 5 2.0 ms 10.8 against 3.0 ms 9.9; level 6 2.9 ms 10.8 against 3.1 ms 9.9.
// Other levels keep the reference encoder (V2 stops at 7).
func newEncoder(dst io.Writer, level int) encoder {
	if level >= 4 && level <= 6 {
		return brotli.NewWriterV2(dst, level)
	}
	return brotli.NewWriterLevel(dst, level)
}

// Encoders are kept for reuse per level, as the gzip filter's writers: an encoder's
// tables cost more to make than a page costs to compress. They are large (one
// encoder and a 100 KB page allocate 1.8 MB at level 1, 3.5-4.2 MB at 4 to 6, 42 MB
// at 11), so a worker keeps two per level, and none at 10 and 11 (levels meant for
// brotli_static's files compressed once, not for every response).
const sparesPerLevel = 2

func spareLimit(level int) int {
	if level >= 10 {
		return 0
	}
	return sparesPerLevel
}

var spares struct {
	sync.Mutex
	w [12][]encoder
}

func getWriter(dst *bytes.Buffer, level int) encoder {
	spares.Lock()
	if n := len(spares.w[level]); n > 0 {
		w := spares.w[level][n-1]
		spares.w[level] = spares.w[level][:n-1]
		spares.Unlock()
		w.Reset(dst)
		return w
	}
	spares.Unlock()
	return newEncoder(dst, level)
}

func putWriter(w encoder, level int) {
	w.Reset(nil)
	spares.Lock()
	if len(spares.w[level]) < spareLimit(level) {
		spares.w[level] = append(spares.w[level], w)
	}
	spares.Unlock()
}
