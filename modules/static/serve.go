package static

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
)

// staticHandler serves the file the URI maps to, as nginx's ngx_http_static_handler:
// GET and HEAD (POST gets 405 once the file is found, other methods at once), a
// directory without the trailing slash is redirected to the URI with it. It is the
// last content-phase handler, as in nginx: a URI ending in "/" that index and
// autoindex left alone is a directory without an index, 403.
func (c *Conf) staticHandler(r *httpcore.Request) httpcore.Action {
	m := r.Method()
	if m != "GET" && m != "HEAD" && m != "POST" {
		return r.Error(405)
	}
	uri := r.URI()
	if strings.HasSuffix(uri, "/") {
		if t, err := c.mapURI(r, uri); err == nil {
			r.Logf(httpcore.LogError, "directory index of %q is forbidden", t.full)
		}
		return r.Error(403)
	}
	t, err := c.mapURI(r, uri)
	if err != nil {
		return c.mapFailure(r, t, err)
	}
	if c.gzipStatic != gzipStaticOff && m != "POST" {
		if a, ok := c.serveGzipped(r, t, uri); ok {
			return a
		}
	}
	f, fi, err := t.open()
	if err != nil {
		return c.failure(r, "open()", t, err)
	}
	defer f.Close()
	if fi.IsDir() {
		loc := escapeURI(uri) + "/"
		if a := r.Args(); a != "" {
			loc += "?" + a
		}
		r.RespHeader().Set("Location", r.AbsoluteURL(loc))
		return r.Error(301)
	}
	if !fi.Mode().IsRegular() {
		r.Logf(httpcore.LogCrit, "%q is not a regular file", t.full)
		return r.Error(404)
	}
	if m == "POST" {
		return r.Error(405)
	}
	return c.send(r, f, fi, uri, t)
}

// mapFailure answers a URI that cannot be mapped: outside the root (403), or a root
// expression that failed (500).
func (c *Conf) mapFailure(r *httpcore.Request, t target, err error) httpcore.Action {
	if errors.Is(err, errEscape) || errors.Is(err, errNUL) {
		return c.failure(r, "open()", t, err)
	}
	r.Logf(httpcore.LogError, "evaluating the document root: %v", err)
	return r.Error(500)
}

// send answers with the file: headers, then the preconditions (304, 412), then the
// byte ranges (206, 416), then the body.
func (c *Conf) send(r *httpcore.Request, f *os.File, fi os.FileInfo, uri string, t target) httpcore.Action {
	size := fi.Size()
	mtime := fi.ModTime().Unix()
	h := r.RespHeader()
	ctype := c.contentType(r, uri)
	r.SetStatus(200)
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	h.Set("Last-Modified", time.Unix(mtime, 0).UTC().Format(httpTimeFormat))
	etag := ""
	if c.etag {
		etag = `"` + strconv.FormatInt(mtime, 16) + "-" + strconv.FormatInt(size, 16) + `"`
		h.Set("ETag", etag)
	}
	// As nginx's not_modified and range filters: for the main request only.
	if r.Main() == r {
		switch c.preconditions(r, etag, mtime) {
		case 412:
			return r.Error(412)
		case 304:
			r.SetStatus(304)
			if err := r.SendHeader(); err != nil {
				r.Logf(httpcore.LogError, "header filter: %v", err)
			}
			return httpcore.Finished
		}
		if c.maxRanges != 0 {
			rs, res := c.requestedRanges(r, size, etag, mtime)
			switch res {
			case rangesOK:
				return c.sendRanges(r, f, size, rs, ctype, t)
			case rangesUnsatisfiable:
				h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
				return r.Error(416)
			}
			h.Set("Accept-Ranges", "bytes")
		}
	}
	r.SetContentLength(size)
	c.sendBody(r, f, 0, size, t)
	return httpcore.Finished
}

// sendBody sends a section of the file; failures to read it are logged as nginx does
// (the client's own disconnects are the core's to log).
func (c *Conf) sendBody(r *httpcore.Request, f *os.File, off, n int64, t target) error {
	err := r.SendFile(f, off, n)
	var pe *os.PathError
	switch {
	case err == nil:
	case errors.Is(err, httpcore.ErrFileTruncated):
		r.Logf(httpcore.LogAlert, "%q was truncated while being sent", t.full)
	case errors.As(err, &pe):
		r.Logf(httpcore.LogCrit, "pread() %q failed (%v)", t.full, pe.Err)
	}
	return err
}

const httpTimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// parseHTTPTime reads the three date formats HTTP allows (RFC 9110 5.6.7).
func parseHTTPTime(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{httpTimeFormat, "Monday, 02-Jan-06 15:04:05 GMT", time.ANSIC} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Unix(), true
		}
	}
	return 0, false
}

// contentType is the type of the URI's extension in the context's types, else
// default_type. The extension is the URI's, not the file's, as in nginx.
func (c *Conf) contentType(r *httpcore.Request, uri string) string {
	if ext := extension(uri); ext != "" {
		if t, ok := c.types[ext]; ok {
			return t
		}
		if lower := strings.ToLower(ext); lower != ext {
			if t, ok := c.types[lower]; ok {
				return t
			}
		}
	}
	return httpcore.CoreConfOf(r.Location()).DefaultType
}

// extension is nginx's r->exten: what follows the last dot of the last path segment,
// unless the dot starts the segment (".htaccess" has none).
func extension(uri string) string {
	for i := len(uri) - 1; i > 1; i-- {
		switch {
		case uri[i] == '.' && uri[i-1] != '/':
			return uri[i+1:]
		case uri[i] == '/':
			return ""
		}
	}
	return ""
}

// preconditions evaluates the conditional request headers as nginx's not_modified
// filter: If-Unmodified-Since and If-Match can fail the request (412);
// If-Modified-Since and If-None-Match, when every one present says so, make it a 304.
func (c *Conf) preconditions(r *httpcore.Request, etag string, mtime int64) int {
	if v := r.Header("If-Unmodified-Since"); v != "" {
		// An invalid date is ignored (RFC 9110 13.1.4); nginx would answer 412.
		if t, ok := parseHTTPTime(v); ok && t < mtime {
			return 412
		}
	}
	if v := headerList(r, "If-Match"); v != "" && !matchETag(v, etag, false) {
		return 412
	}
	ims, inm := r.Header("If-Modified-Since"), headerList(r, "If-None-Match")
	if ims == "" && inm == "" {
		return 0
	}
	if ims != "" && c.modifiedSince(ims, mtime) {
		return 0
	}
	if inm != "" && !matchETag(inm, etag, true) {
		return 0
	}
	return 304
}

func headerList(r *httpcore.Request, name string) string {
	vs := r.HeaderValues(name)
	if len(vs) <= 1 {
		return r.Header(name)
	}
	return strings.Join(vs, ", ")
}

// modifiedSince reports whether the file counts as modified since the date, per
// if_modified_since: off always, exact unless the date is the file's, before unless
// the date is the file's or later.
func (c *Conf) modifiedSince(v string, mtime int64) bool {
	if c.ims == imsOff {
		return true
	}
	t, ok := parseHTTPTime(v)
	if !ok {
		return true
	}
	if t == mtime {
		return false
	}
	return c.ims == imsExact || t < mtime
}

// matchETag is nginx's ngx_http_test_if_match: whether the comma-separated list
// holds etag ("*" holds any). The weak comparison (If-None-Match) ignores "W/".
func matchETag(list, etag string, weak bool) bool {
	if etag == "" {
		return false
	}
	list = strings.TrimSpace(list)
	if list == "*" {
		return true
	}
	if weak && strings.HasPrefix(etag, "W/") {
		etag = etag[2:]
	}
	s := list
	for len(s) > 0 {
		if weak && len(s) > 2 && s[0] == 'W' && s[1] == '/' {
			s = s[2:]
		}
		if len(etag) > len(s) {
			return false
		}
		if strings.HasPrefix(s, etag) {
			rest := strings.TrimLeft(s[len(etag):], " \t")
			if rest == "" || rest[0] == ',' {
				return true
			}
		}
		i := strings.IndexByte(s, ',')
		if i < 0 {
			return false
		}
		s = strings.TrimLeft(s[i:], " \t,")
	}
	return false
}

// byteRange is a section of the file; end is exclusive.
type byteRange struct{ start, end int64 }

type rangesResult uint8

const (
	rangesNone          rangesResult = iota // no usable Range: the whole file, 200
	rangesOK                                // 206
	rangesUnsatisfiable                     // 416
)

// requestedRanges reads Range (and If-Range) as nginx's range filter.
func (c *Conf) requestedRanges(r *httpcore.Request, size int64, etag string, mtime int64) ([]byteRange, rangesResult) {
	hv := r.Header("Range")
	if len(hv) < 7 || !strings.EqualFold(hv[:6], "bytes=") {
		return nil, rangesNone
	}
	if ir := r.Header("If-Range"); ir != "" {
		// An entity tag must be the file's exactly; a date must be its Last-Modified.
		if len(ir) >= 2 && ir[len(ir)-1] == '"' {
			if etag == "" || ir != etag {
				return nil, rangesNone
			}
		} else if t, ok := parseHTTPTime(ir); !ok || t != mtime {
			return nil, rangesNone
		}
	}
	return parseRanges(hv[6:], size, c.maxRanges)
}

// parseRanges is nginx's ngx_http_range_parse. A range past the end is cut to the
// file; a syntax error or no satisfiable range at all gives 416. More ranges than
// max (unless max < 0), or ranges adding up to more than the file (overlapping
// ranges, a way to make a server send a file many times over), are ignored: the whole
// file is sent.
func parseRanges(s string, size int64, max int) ([]byteRange, rangesResult) {
	const cutoff, cutlim = math.MaxInt64 / 10, math.MaxInt64 % 10
	i := 0
	at := func() byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	skipSpaces := func() {
		for at() == ' ' {
			i++
		}
	}
	number := func() (int64, bool) {
		var n int64
		for c := at(); c >= '0' && c <= '9'; c = at() {
			d := int64(c - '0')
			if n >= cutoff && (n > cutoff || d > cutlim) {
				return 0, false
			}
			n = n*10 + d
			i++
		}
		return n, true
	}
	var rs []byteRange
	var total int64
	left := max
	for {
		var start, end int64
		skipSpaces()
		openEnded := false
		if at() != '-' {
			if c := at(); c < '0' || c > '9' {
				return nil, rangesUnsatisfiable
			}
			var ok bool
			if start, ok = number(); !ok {
				return nil, rangesUnsatisfiable
			}
			skipSpaces()
			if at() != '-' {
				return nil, rangesUnsatisfiable
			}
			i++
			skipSpaces()
			if c := at(); c == ',' || c == 0 {
				end, openEnded = size, true
			}
		} else {
			i++
			if c := at(); c < '0' || c > '9' {
				return nil, rangesUnsatisfiable
			}
			n, ok := number()
			if !ok {
				return nil, rangesUnsatisfiable
			}
			// A suffix: the last n bytes.
			start, end = max64(size-n, 0), size
			openEnded = true
			skipSpaces()
			if c := at(); c != ',' && c != 0 {
				return nil, rangesUnsatisfiable
			}
		}
		if !openEnded {
			if c := at(); c < '0' || c > '9' {
				return nil, rangesUnsatisfiable
			}
			var ok bool
			if end, ok = number(); !ok {
				return nil, rangesUnsatisfiable
			}
			skipSpaces()
			if c := at(); c != ',' && c != 0 {
				return nil, rangesUnsatisfiable
			}
			if end >= size {
				end = size
			} else {
				end++
			}
		}
		if start < end {
			rs = append(rs, byteRange{start, end})
			if total > math.MaxInt64-(end-start) {
				return nil, rangesUnsatisfiable
			}
			total += end - start
			if max >= 0 {
				if left == 0 {
					return nil, rangesNone
				}
				left--
			}
		} else if start == 0 {
			return nil, rangesNone
		}
		if at() != ',' {
			break
		}
		i++
	}
	if len(rs) == 0 {
		return nil, rangesUnsatisfiable
	}
	if total > size {
		return nil, rangesNone
	}
	return rs, rangesOK
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// boundarySeq numbers multipart boundaries as nginx's temp numbers do, from a random
// start so that two workers do not use the same ones.
var boundarySeq atomic.Uint64

func init() { boundarySeq.Store(rand.Uint64N(1e12)) }

func nextBoundary() string {
	s := strconv.FormatUint(boundarySeq.Add(1), 10)
	return strings.Repeat("0", max(0, 20-len(s))) + s
}

// sendRanges answers 206: one range with Content-Range, several as
// multipart/byteranges with a part header before each.
func (c *Conf) sendRanges(r *httpcore.Request, f *os.File, size int64, rs []byteRange, ctype string, t target) httpcore.Action {
	h := r.RespHeader()
	r.SetStatus(206)
	sz := strconv.FormatInt(size, 10)
	span := func(rg byteRange) string {
		return strconv.FormatInt(rg.start, 10) + "-" + strconv.FormatInt(rg.end-1, 10) + "/" + sz
	}
	if len(rs) == 1 {
		h.Set("Content-Range", "bytes "+span(rs[0]))
		r.SetContentLength(rs[0].end - rs[0].start)
		c.sendBody(r, f, rs[0].start, rs[0].end-rs[0].start, t)
		return httpcore.Finished
	}
	boundary := nextBoundary()
	head := "\r\n--" + boundary + "\r\n"
	if ctype != "" {
		head += "Content-Type: " + ctype + "\r\n"
	}
	head += "Content-Range: bytes "
	tail := "\r\n--" + boundary + "--\r\n"
	heads := make([]string, len(rs))
	n := int64(len(tail))
	for i, rg := range rs {
		heads[i] = head + span(rg) + "\r\n\r\n"
		n += int64(len(heads[i])) + rg.end - rg.start
	}
	h.Set("Content-Type", "multipart/byteranges; boundary="+boundary)
	r.SetContentLength(n)
	for i, rg := range rs {
		r.WriteString(heads[i])
		if err := c.sendBody(r, f, rg.start, rg.end-rg.start, t); err != nil {
			return httpcore.Finished
		}
	}
	r.WriteString(tail)
	return httpcore.Finished
}

// escapeURI escapes what nginx's NGX_ESCAPE_URI does, for a Location header: controls,
// space, "#", "%", "?" and bytes outside ASCII. A decoded URI may hold CR and LF.
func escapeURI(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func needsEscape(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '#' || c == '%' || c == '?'
}
