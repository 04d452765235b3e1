// Package headers is nginx's ngx_http_headers_module for spindle: add_header and
// expires, applied as a header filter to the responses of main requests.
package headers

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// Conf is the headers configuration of a context.
type Conf struct {
	headers []header
	expires expires
}

type header struct {
	name   string
	values []*httpcore.Expr
	always bool
}

type expiresMode uint8

const (
	expiresOff expiresMode = iota
	expiresEpoch
	expiresMax
	expiresAccess   // from the time of the response
	expiresModified // from the Last-Modified time
	expiresDaily    // "@15h30m": the next such time of day
)

type expires struct {
	mode expiresMode
	d    time.Duration // may be negative
}

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf { return &Conf{} })

// Module is the headers module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "headers",
	Order: httpcore.OrderHeaders,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "add_header", Context: httpcore.CtxAll, Set: setAddHeader},
		{Name: "expires", Context: httpcore.CtxAll, Set: setExpires},
	},
	Install: install,
})

func install(l *httpcore.Location) error {
	c := mod.Of(l)
	if len(c.headers) > 0 || c.expires.mode != expiresOff {
		l.AddHeaderFilter(httpcore.OrderHeaders, c.filter)
	}
	return nil
}

// setAddHeader decodes
//
//	add_header = {
//	  "X-Frame-Options" = "DENY"
//	  "X-Request-Id"    = { value = "${connection}-${msec}", always = true }
//	  "Link"            = ["</a.css>; rel=preload", "</b.js>; rel=preload"]
//	}
//
// Names in the order written; a list adds several lines; `always` adds the header
// whatever the status. A context's add_header replaces the headers it would inherit,
// as nginx's does.
func setAddHeader(c *httpcore.Cmd) error {
	fields, err := conf.ObjectFields(c.Attr().Expr)
	if err != nil {
		return conf.Errorf(c.Attr().Expr.Range(), "add_header is an object: { \"Name\" = \"value\", ... }")
	}
	var hs []header
	for _, f := range fields {
		if !validName(f.Name) {
			return conf.Errorf(f.NameRange, "invalid header name %q", f.Name)
		}
		h := header{name: httpcore.CanonicalKey(f.Name)}
		val := f.Expr
		if obj, ok := f.Expr.(*hclsyntax.ObjectConsExpr); ok {
			sub, err := conf.ObjectFields(obj)
			if err != nil {
				return err
			}
			if err := conf.CheckFields(sub, "value", "always"); err != nil {
				return err
			}
			val = nil
			for _, s := range sub {
				switch s.Name {
				case "value":
					val = s.Expr
				case "always":
					if h.always, err = conf.ExprBool(s.Expr); err != nil {
						return err
					}
				}
			}
			if val == nil {
				return conf.Errorf(obj.Range(), "header %q needs a value", f.Name)
			}
		}
		exprs := []hclsyntax.Expression{val}
		if t, ok := val.(*hclsyntax.TupleConsExpr); ok {
			exprs = t.Exprs
		}
		for _, x := range exprs {
			e, err := c.Expr(x)
			if err != nil {
				return err
			}
			if e.IsConst() && !e.Const().Type().Equals(cty.String) && !e.Const().Type().Equals(cty.Number) {
				return conf.Errorf(x.Range(), "header %q: the value must be a string", f.Name)
			}
			h.values = append(h.values, e)
		}
		hs = append(hs, h)
	}
	mod.Cmd(c).headers = hs
	return nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// setExpires decodes expires = "off" | "epoch" | "max" | "1h" | "-1" | "modified 1d" |
// "@18h30m" (a bare number is seconds).
func setExpires(c *httpcore.Cmd) error {
	s, err := conf.String(c.Attr())
	if err != nil {
		return err
	}
	e, perr := parseExpires(s)
	if perr != nil {
		return conf.Errorf(c.Attr().Expr.Range(), "expires: %v", perr)
	}
	mod.Cmd(c).expires = e
	return nil
}

func parseExpires(s string) (expires, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "off":
		return expires{mode: expiresOff}, nil
	case "epoch":
		return expires{mode: expiresEpoch}, nil
	case "max":
		return expires{mode: expiresMax}, nil
	}
	e := expires{mode: expiresAccess}
	if rest, ok := strings.CutPrefix(s, "modified"); ok {
		e.mode, s = expiresModified, strings.TrimSpace(rest)
	} else if rest, ok := strings.CutPrefix(s, "access"); ok {
		s = strings.TrimSpace(rest)
	}
	if rest, ok := strings.CutPrefix(s, "@"); ok {
		if e.mode == expiresModified {
			return e, errString("daily time \"@...\" cannot be combined with modified")
		}
		d, err := conf.ParseDuration(rest)
		if err != nil {
			return e, err
		}
		if d >= 24*time.Hour {
			return e, errString("daily time must be less than 24h")
		}
		e.mode, e.d = expiresDaily, d
		return e, nil
	}
	neg := false
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		neg, s = true, rest
	} else {
		s = strings.TrimPrefix(s, "+")
	}
	d, err := conf.ParseDuration(s)
	if err != nil {
		return e, err
	}
	if neg {
		d = -d
	}
	e.d = d
	return e, nil
}

type errString string

func (e errString) Error() string { return string(e) }

// safeStatus is nginx's list of statuses add_header (without always) and expires
// apply to.
func safeStatus(code int) bool {
	switch code {
	case 200, 201, 204, 206, 301, 302, 303, 304, 307, 308:
		return true
	}
	return false
}

func (c *Conf) filter(r *httpcore.Request) error {
	// Subrequests' headers are not the client's, as nginx's filter knows.
	if r.IsSubrequest() {
		return nil
	}
	safe := safeStatus(r.Status())
	if safe && c.expires.mode != expiresOff {
		c.expires.apply(r)
	}
	h := r.RespHeader()
	for _, hd := range c.headers {
		if !safe && !hd.always {
			continue
		}
		for _, e := range hd.values {
			v, err := e.String(r)
			if err != nil {
				r.Logf(httpcore.LogError, "add_header %s: %v", hd.name, err)
				continue
			}
			if v == "" {
				continue
			}
			switch hd.name {
			case "Last-Modified", "Etag", "ETag":
				// nginx replaces these rather than adding a second one.
				h.Set(hd.name, v)
			default:
				h.Add(hd.name, v)
			}
		}
	}
	return nil
}

var (
	epochExpires = "Thu, 01 Jan 1970 00:00:01 GMT"
	maxExpires   = "Thu, 31 Dec 2037 23:55:55 GMT"
)

func (e expires) apply(r *httpcore.Request) {
	h := r.RespHeader()
	switch e.mode {
	case expiresEpoch:
		h.Set("Expires", epochExpires)
		h.Set("Cache-Control", "no-cache")
		return
	case expiresMax:
		h.Set("Expires", maxExpires)
		h.Set("Cache-Control", "max-age=315360000")
		return
	}
	now := time.Now().Truncate(time.Second)
	var at time.Time
	var maxAge time.Duration
	switch e.mode {
	case expiresDaily:
		day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
		at = day.Add(e.d)
		if !at.After(now) {
			at = day.AddDate(0, 0, 1).Add(e.d)
		}
		maxAge = at.Sub(now)
	case expiresModified:
		if lm, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
			at = lm.Add(e.d)
			maxAge = at.Sub(now)
			break
		}
		fallthrough
	default:
		at, maxAge = now.Add(e.d), e.d
	}
	h.Set("Expires", at.UTC().Format(http.TimeFormat))
	if e.d < 0 || maxAge < 0 {
		h.Set("Cache-Control", "no-cache")
		return
	}
	h.Set("Cache-Control", "max-age="+strconv.FormatInt(int64(maxAge/time.Second), 10))
}
