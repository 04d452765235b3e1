package static

import (
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// gzip_static: nginx's ngx_http_gzip_static_module, here because it maps URIs to files
// exactly as the static handler does (root or alias, confined to its directory) and
// answers as it does (ETag, Last-Modified, conditional requests and byte ranges, all
// of the .gz file, as nginx). Whether the client may have it is the core's decision
// (httpcore Request.GzipOK), shared with the gzip filter.
type gzipStaticMode uint8

const (
	gzipStaticOff gzipStaticMode = iota
	gzipStaticOn
	gzipStaticAlways // the .gz file whatever the client says (stored compressed only)
)

// setGzipStatic: gzip_static = true | false | "on" | "off" | "always".
func setGzipStatic(c *httpcore.Cmd) error { return setStaticMode(c, &mod.Cmd(c).gzipStatic) }

// setBrotliStatic: brotli_static, ngx_brotli's, with gzip_static's values.
func setBrotliStatic(c *httpcore.Cmd) error { return setStaticMode(c, &mod.Cmd(c).brotliStatic) }

func setStaticMode(c *httpcore.Cmd, dst *gzipStaticMode) error {
	v, err := conf.StaticValue(c.Attr().Expr)
	if err != nil {
		return err
	}
	mode := gzipStaticOff
	switch {
	case v.Type() == cty.Bool:
		if v.True() {
			mode = gzipStaticOn
		}
	case v.Type() == cty.String && v.AsString() == "on":
		mode = gzipStaticOn
	case v.Type() == cty.String && v.AsString() == "always":
		mode = gzipStaticAlways
	case v.Type() == cty.String && v.AsString() == "off":
	default:
		return conf.Errorf(c.Attr().Expr.Range(), "%s is on, off or always", c.Name())
	}
	*dst = mode
	return nil
}

// serveGzipped answers with uri's file compressed beside it (file.gz), if there is one
// and the client may have it; ok is false to serve the file itself.
func (c *Conf) serveGzipped(r *httpcore.Request, t target, uri string) (a httpcore.Action, ok bool) {
	return c.serveEncoded(r, t, uri, c.gzipStatic, "gzip", ".gz")
}

// serveBrotli is serveGzipped for brotli_static: file.br for a client that takes br.
// ngx_brotli's module comes before gzip_static, so a client taking both gets .br.
func (c *Conf) serveBrotli(r *httpcore.Request, t target, uri string) (a httpcore.Action, ok bool) {
	return c.serveEncoded(r, t, uri, c.brotliStatic, "br", ".br")
}

func (c *Conf) serveEncoded(r *httpcore.Request, t target, uri string, mode gzipStaticMode, coding, ext string) (a httpcore.Action, ok bool) {
	accepts := mode == gzipStaticAlways || r.EncodingOK(coding)
	if !accepts && !httpcore.GzipConfOf(r.Location()).Vary {
		return 0, false
	}
	gt := target{dir: t.dir, rel: t.rel + ext, full: t.full + ext}
	f, fi, err := gt.open()
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if !fi.Mode().IsRegular() {
		return 0, false
	}
	if mode == gzipStaticOn {
		r.MarkGzipVary()
		if !accepts {
			return 0, false
		}
	}
	r.RespHeader().Set("Content-Encoding", coding)
	return c.send(r, f, fi, uri, gt), true
}
