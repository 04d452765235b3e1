package httpcore

import (
	"strconv"
	"strings"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/pcre"
)

// The decision whether a response may go out gzip-compressed, shared by the gzip
// filter and gzip_static (nginx's ngx_http_gzip_ok, whose directives belong to
// nginx's core module for the same reason): gzip_vary, gzip_http_version,
// gzip_proxied and gzip_disable.

// GzipConf is the core's part of the gzip settings of a location.
type GzipConf struct {
	Vary         bool // gzip_vary: "Vary: Accept-Encoding" on responses that could be compressed
	HTTP10       bool // gzip_http_version 1.0: HTTP/1.0 requests too
	proxied      uint16
	disable      []*pcre.Regexp
	disableMSIE6 bool
}

// gzip_proxied flags.
const (
	proxiedAny = 1 << iota
	proxiedExpired
	proxiedNoCache
	proxiedNoStore
	proxiedPrivate
	proxiedNoLastModified
	proxiedNoETag
	proxiedAuth
)

var proxiedFlags = map[string]uint16{
	"any": proxiedAny, "expired": proxiedExpired, "no-cache": proxiedNoCache, "no-store": proxiedNoStore,
	"private": proxiedPrivate, "no_last_modified": proxiedNoLastModified, "no_etag": proxiedNoETag, "auth": proxiedAuth,
}

// gzipCoreMod is the handle of the gzip decision's module.
var gzipCoreMod = Define(func() *GzipConf { return &GzipConf{} })

// GzipCoreModule holds the directives of the gzip decision.
var GzipCoreModule = Register(&Module{
	Name:  "gzip_core",
	Order: OrderCore,
	Conf:  gzipCoreMod,
	Directives: []Directive{
		{Name: "gzip_vary", Context: CtxAll, Set: SetBool(func(gc *GzipConf) *bool { return &gc.Vary })},
		{Name: "gzip_http_version", Context: CtxAll, Set: func(c *Cmd) error {
			v, err := conf.String(c.Attr())
			if err != nil {
				return err
			}
			if v != "1.0" && v != "1.1" {
				return conf.Errorf(c.Attr().Expr.Range(), "gzip_http_version is \"1.0\" or \"1.1\", not %q", v)
			}
			gzipCoreMod.Cmd(c).HTTP10 = v == "1.0"
			return nil
		}},
		{Name: "gzip_proxied", Context: CtxAll, Set: func(c *Cmd) error {
			vals, err := conf.Strings(c.Attr())
			if err != nil {
				return err
			}
			var flags uint16
			for _, v := range vals {
				for _, w := range strings.Fields(v) {
					if w == "off" {
						continue
					}
					f, ok := proxiedFlags[w]
					if !ok {
						return conf.Errorf(c.Attr().Expr.Range(), "unknown gzip_proxied value %q (off, any, expired, no-cache, no-store, private, no_last_modified, no_etag, auth)", w)
					}
					flags |= f
				}
			}
			gzipCoreMod.Cmd(c).proxied = flags
			return nil
		}},
		{Name: "gzip_disable", Context: CtxAll, Set: func(c *Cmd) error {
			vals, err := conf.Strings(c.Attr())
			if err != nil {
				return err
			}
			gc := gzipCoreMod.Cmd(c)
			gc.disable, gc.disableMSIE6 = nil, false
			for _, v := range vals {
				if v == "msie6" {
					gc.disableMSIE6 = true
					continue
				}
				re, err := pcre.CompileFlags(v, pcre.Caseless)
				if err != nil {
					return conf.Errorf(c.Attr().Expr.Range(), "gzip_disable: %v", err)
				}
				gc.disable = append(gc.disable, re)
			}
			return nil
		}},
	},
})

// GzipConfOf returns the core gzip settings of a location.
func GzipConfOf(l *Location) *GzipConf { return gzipCoreMod.Of(l) }

// GzipOK reports whether the response to r may be sent gzip-compressed, as nginx's
// ngx_http_gzip_ok: a main request whose Accept-Encoding takes gzip, of an HTTP
// version gzip_http_version allows, from a client gzip_disable does not exclude, and,
// when a proxy sent it (Via), one that gzip_proxied allows given the response headers
// set so far.
func (r *Request) GzipOK() bool { return r.EncodingOK("gzip") }

// EncodingOK is GzipOK for another content coding the client must name in
// Accept-Encoding ("br" for the brotli filter and brotli_static, which follow the gzip
// settings as ngx_brotli does).
func (r *Request) EncodingOK(coding string) bool {
	if r.parent != nil || !acceptsCoding(r.Header("Accept-Encoding"), coding) {
		return false
	}
	gc := GzipConfOf(r.loc)
	if r.http10 && !gc.HTTP10 {
		return false
	}
	if ua := r.Header("User-Agent"); ua != "" {
		if gc.disableMSIE6 && isMSIE6(ua) {
			return false
		}
		for _, re := range gc.disable {
			if re.MatchString(ua) {
				return false
			}
		}
	}
	if r.Header("Via") == "" {
		return true
	}
	p := gc.proxied
	h := &r.respHdr
	cc := strings.ToLower(strings.Join(h.Values("Cache-Control"), ","))
	switch {
	case p&proxiedAny != 0,
		p&proxiedExpired != 0 && h.Get("Expires") != "",
		p&proxiedNoCache != 0 && strings.Contains(cc, "no-cache"),
		p&proxiedNoStore != 0 && strings.Contains(cc, "no-store"),
		p&proxiedPrivate != 0 && strings.Contains(cc, "private"),
		p&proxiedNoLastModified != 0 && h.Get("Last-Modified") == "",
		p&proxiedNoETag != 0 && h.Get("ETag") == "",
		p&proxiedAuth != 0 && r.Header("Authorization") != "":
		return true
	}
	return false
}

// acceptsCoding reads Accept-Encoding as nginx does: the coding ("gzip" also as
// "x-gzip") with a q value that is not zero; "*" is not taken for it.
func acceptsCoding(ae, want string) bool {
	for _, part := range strings.Split(ae, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != want && (want != "gzip" || coding != "x-gzip") {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && q <= 0 {
					return false
				}
			}
		}
		return true
	}
	return false
}

// isMSIE6 is nginx's "msie6" mask: MSIE 4 to 6, except 6.0 with SV1 (XP SP2), which
// handles gzip.
func isMSIE6(ua string) bool {
	i := strings.Index(ua, "MSIE ")
	if i < 0 || i+5 >= len(ua) {
		return false
	}
	v := ua[i+5]
	if v < '4' || v > '6' {
		return false
	}
	return !(v == '6' && strings.Contains(ua, "SV1"))
}

// MarkGzipVary adds "Vary: Accept-Encoding" to the response when gzip_vary is on, once:
// the gzip filter and gzip_static call it for every response they could compress,
// whether this client gets it compressed or not, so that caches keep both.
func (r *Request) MarkGzipVary() {
	if !GzipConfOf(r.loc).Vary {
		return
	}
	for _, v := range r.respHdr.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "Accept-Encoding") {
				return
			}
		}
	}
	r.respHdr.Add("Vary", "Accept-Encoding")
}
