package httpcore

import (
	"strings"
	"unsafe"
)

// Every header line spindle writes, in a response head (writeHead) or in a request
// head sent upstream (the proxy module), goes through AppendHeaderLine, which never
// lets a CR, LF or NUL — or anything else that would change how the line parses —
// out raw, whatever put it into the name or value: a script, a variable holding the
// decoded URI, an upstream's response. The bytes are %-escaped as ngx_lua escapes
// the header names and values set from Lua (lua-nginx-module's
// ngx_http_lua_copy_escaped_header: a name keeps only RFC 9110's token characters, a
// value loses control bytes but HTAB, and DEL), so that a script reading back what it
// set sees what went on the wire.

// escapeSet tells the bytes to %-escape (a byte per entry: one load per byte checked,
// where a bit table needs shifts too).
type escapeSet [256]bool

func (s *escapeSet) has(c byte) bool { return s[c] }

func newEscapeSet(f func(c byte) bool) *escapeSet {
	var s escapeSet
	for i := range s {
		s[i] = f(byte(i))
	}
	return &s
}

var (
	// headerNameEscapes: every byte that is not a token character (ngx_lua's
	// NGX_HTTP_LUA_ESCAPE_HEADER_NAME): controls, space, DEL, bytes above 0x7f and
	// "(),/:;<=>?@[\]{}.
	headerNameEscapes = newEscapeSet(func(c byte) bool {
		// edge.go's tchar, which its init fills only after this is built.
		return !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c != 0 && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0)
	})
	// headerValueEscapes: control bytes except HTAB, and DEL (ngx_lua's
	// NGX_HTTP_LUA_ESCAPE_HEADER_VALUE); bytes above 0x7f are obs-text and stay.
	headerValueEscapes = newEscapeSet(func(c byte) bool { return c < 0x20 && c != '\t' || c == 0x7f })
	// uriEscapes is nginx's NGX_ESCAPE_URI (ngx_escape_uri): space, "#", "%", "?",
	// controls, DEL and bytes above 0x7f; for decoded values put into a URI.
	uriEscapes = newEscapeSet(func(c byte) bool {
		return c <= ' ' || c >= 0x7f || c == '#' || c == '%' || c == '?'
	})
	// unsafeURIEscapes are the bytes that may never appear in a URI as sent (RFC 3986:
	// controls, space, DEL, non-ASCII, and "<>\^`{|} and the double quote). "%", "?"
	// and "#" stay, so a URI already escaped, with its query, is unchanged.
	unsafeURIEscapes = newEscapeSet(func(c byte) bool {
		return c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}", c) >= 0
	})
)

const upperHex = "0123456789ABCDEF"

// appendEscaped appends s to dst with the bytes of set %-escaped.
func appendEscaped(dst []byte, s string, set *escapeSet) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; set.has(c) {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// escapeString returns s with the bytes of set %-escaped (s itself when none is).
func escapeString(s string, set *escapeSet) string {
	for i := 0; i < len(s); i++ {
		if set.has(s[i]) {
			return string(appendEscaped(append(make([]byte, 0, len(s)+16), s[:i]...), s[i:], set))
		}
	}
	return s
}

// clean reports whether s has no byte of set.
func clean(s string, set *escapeSet) bool {
	for i := 0; i < len(s); i++ {
		if set[s[i]] {
			return false
		}
	}
	return true
}

// EscapeHeaderName %-escapes every byte of a header name that is not a token
// character, as ngx_lua does for names set from Lua ("a b\r\n" -> "a%20b%0D%0A").
func EscapeHeaderName(s string) string { return escapeString(s, headerNameEscapes) }

// EscapeHeaderValue %-escapes the control bytes (but HTAB) and DEL of a header value,
// as ngx_lua does for values set from Lua ("a\r\nb" -> "a%0D%0Ab").
func EscapeHeaderValue(s string) string {
	if cleanValue(s) { // 8 bytes at a time: most values have nothing to escape
		return s
	}
	return escapeString(s, headerValueEscapes)
}

// EscapeURI %-escapes a decoded path for use in a URI sent to a client or a server,
// as nginx's ngx_escape_uri with NGX_ESCAPE_URI: space, "#", "%", "?", control
// bytes, DEL and bytes above 0x7f ("/a b\r\n" -> "/a%20b%0D%0A").
func EscapeURI(s string) string { return escapeString(s, uriEscapes) }

// EscapeUnsafeURI %-escapes the bytes that may never appear in a URI (control bytes,
// space, DEL, non-ASCII, and "<>\^`{|} and the double quote), keeping "%", "?" and
// "#": a URI that is already escaped comes back unchanged.
func EscapeUnsafeURI(s string) string { return escapeString(s, unsafeURIEscapes) }

// EscapeHeaderField returns a header field's name and value with the bytes that may
// not appear in them %-escaped (see EscapeHeaderName and EscapeHeaderValue): the one
// check every response head goes through, HTTP/1.1's lines (AppendHeaderLine) and
// HTTP/2's fields alike. escaped reports whether any byte was. A field with an empty
// name is not to be sent (ok false): there is no way to write it that parses.
func EscapeHeaderField(name, value string) (n, v string, escaped, ok bool) {
	if name == "" {
		return name, value, false, false
	}
	if clean(name, headerNameEscapes) && cleanValue(value) {
		return name, value, false, true
	}
	return EscapeHeaderName(name), EscapeHeaderValue(value), true, true
}

// AppendHeaderLine appends the header line "name: value\r\n" to dst, with the bytes
// that may not appear in a name or a value %-escaped (EscapeHeaderField). escaped
// reports whether any was; a line with an empty name is not written (ok false).
func AppendHeaderLine(dst []byte, name, value string) (out []byte, escaped, ok bool) {
	name, value, escaped, ok = EscapeHeaderField(name, value)
	if !ok {
		return dst, false, false
	}
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...), escaped, true
}

// HeaderField is EscapeHeaderField for a field of r's response head or of a request
// head r sends to a server (what is "response header" or "upstream request header",
// for the log): a field that had to be escaped or dropped is logged at warn level.
// Whatever put a CR or LF there, it cannot add a line or a field.
func (r *Request) HeaderField(what, name, value string) (n, v string, ok bool) {
	n, v, escaped, ok := EscapeHeaderField(name, value)
	switch {
	case !ok:
		r.Logf(LogWarn, "%s with an empty name dropped", what)
	case escaped:
		r.Logf(LogWarn, "%s with unsafe bytes sent %%-escaped: \"%s: %s\"", what, n, v)
	}
	return n, v, ok
}

// AppendHeaderLine appends a header line of r's response head or of a request head
// r sends to a server with the bytes that may not appear in it escaped and logged
// (Request.HeaderField).
func (r *Request) AppendHeaderLine(dst []byte, what, name, value string) []byte {
	name, value, ok := r.HeaderField(what, name, value)
	if !ok {
		return dst
	}
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// AppendRequestLine appends the request line "METHOD target HTTP/1.1\r\n" of a
// request sent to a server, with the bytes of the method that are not token
// characters and the bytes that may never appear in a URI %-escaped (see
// EscapeUnsafeURI); it logs at warn level when any had to be.
func (r *Request) AppendRequestLine(dst []byte, method, target string) []byte {
	start := len(dst)
	dst = appendEscaped(dst, method, headerNameEscapes)
	dst = append(dst, ' ')
	dst = appendEscaped(dst, target, unsafeURIEscapes)
	if len(dst)-start != len(method)+1+len(target) {
		r.Logf(LogWarn, "upstream request line with unsafe bytes sent %%-escaped: \"%s\"", dst[start:])
	}
	return append(dst, " HTTP/1.1\r\n"...)
}

// RedirectString evaluates the expression as the target of a redirect (return,
// rewrite, error_page): the values of variables that hold the decoded URI (uri,
// document_uri, and re[N] when the last regex matched the URI) are escaped with
// EscapeURI, so "http://x${uri}" for a request for /a%0D%0Ab gives
// http://x/a%0D%0Ab, never a header line of its own (nginx sends $uri raw); the rest
// of the target keeps its "%", "?" and "#" and has only the bytes that may never
// appear in a URI escaped (EscapeUnsafeURI).
func (e *Expr) RedirectString(r *Request) (string, error) {
	if e.parts == nil {
		s, err := e.String(r)
		return EscapeUnsafeURI(s), err
	}
	var b []byte
	for _, p := range e.parts {
		switch {
		case p.get == nil:
			b = appendEscaped(b, p.lit, unsafeURIEscapes)
		case p.decoded == decodedAlways, p.decoded == decodedCaptures && r.capsDecoded:
			b = appendEscaped(b, p.get(r), uriEscapes)
		default:
			b = appendEscaped(b, p.get(r), unsafeURIEscapes)
		}
	}
	return string(b), nil
}

// How a template part's variable relates to the decoded URI (exprPart.decoded).
const (
	decodedNever    = iota
	decodedAlways   // uri, document_uri
	decodedCaptures // re[N]: decoded when the last regex matched the URI
)

// decodedKind tells whether a variable holds the decoded URI.
func decodedKind(name string) uint8 {
	switch name {
	case "uri", "document_uri":
		return decodedAlways
	case "re":
		return decodedCaptures
	}
	return decodedNever
}

// holdsDecodedURI reports whether the expression is the decoded URI alone (`if`
// regexes matched against it give decoded captures).
func (e *Expr) holdsDecodedURI() bool {
	return len(e.parts) == 1 && e.parts[0].decoded == decodedAlways
}

// cleanValue is clean(s, headerValueEscapes), eight bytes at a time: a byte below
// 0x20 or equal to 0x7f in a word sends the word to the exact check (an HTAB, which is
// allowed, too). Response heads are mostly values: ~5x faster than a table lookup per
// byte on a 50-byte value.
func cleanValue(s string) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	p := unsafe.Pointer(unsafe.StringData(s))
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := *(*uint64)(unsafe.Add(p, i))
		y := x ^ (0x7f * ones)
		if ((x-0x20*ones)&^x|(y-ones)&^y)&highs != 0 {
			if !clean(s[i:i+8], headerValueEscapes) {
				return false
			}
		}
	}
	return clean(s[i:], headerValueEscapes)
}
