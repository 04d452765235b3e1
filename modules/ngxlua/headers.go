package ngxlua

import "strings"

// Header names and values set from Lua are %-escaped where they could end or split a
// header line, as ngx_lua's ngx_http_lua_copy_escaped_header: a name keeps only
// RFC 9110's token characters, a value loses its control bytes but HTAB, and DEL
// ("a\r\nb" -> "a%0D%0Ab"); reading the header back gives what goes on the wire.
// These are httpcore.EscapeHeaderName and EscapeHeaderValue of the headers branch
// (issue 14), kept here until that branch is on main.

const upperHex = "0123456789ABCDEF"

var headerNameEscapes, headerValueEscapes [256]bool

func init() {
	for i := range 256 {
		c := byte(i)
		headerNameEscapes[i] = !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c != 0 && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0)
		headerValueEscapes[i] = c < 0x20 && c != '\t' || c == 0x7f
	}
}

func escapeWith(s string, set *[256]bool) string {
	for i := 0; i < len(s); i++ {
		if set[s[i]] {
			out := append(make([]byte, 0, len(s)+16), s[:i]...)
			for ; i < len(s); i++ {
				if c := s[i]; set[c] {
					out = append(out, '%', upperHex[c>>4], upperHex[c&15])
				} else {
					out = append(out, c)
				}
			}
			return string(out)
		}
	}
	return s
}

func escapeHeaderName(s string) string  { return escapeWith(s, &headerNameEscapes) }
func escapeHeaderValue(s string) string { return escapeWith(s, &headerValueEscapes) }
