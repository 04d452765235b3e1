package ngxlua

import "strings"

const hexDigits = "0123456789ABCDEF"

// escapeURI is ngx.escape_uri: type 2 (the default) escapes a URI component, keeping
// only RFC 3986's unreserved characters; type 0 escapes what may not appear in a URI.
func escapeURI(s string, typ int) string {
	keep := func(c byte) bool {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			return true
		}
		switch c {
		case '-', '.', '_', '~':
			return true
		}
		if typ == 0 && c > 0x20 && c < 0x7f {
			return !strings.ContainsRune("\"#%'<>?\\^`{|}", rune(c))
		}
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !keep(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	out := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep(c) {
			out = append(out, c)
		} else {
			out = append(out, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return string(out)
}

// unescapeArg decodes %XX sequences and "+" (a space), leaving malformed escapes as
// they are, as ngx.unescape_uri.
func unescapeArg(s string) string {
	// A plain loop, not strings.ContainsAny: its set of two bytes cost ~270
	// instructions per call (callgrind), four calls per get_uri_args of "a=1&b=2".
	i := 0
	for i < len(s) && s[i] != '%' && s[i] != '+' {
		i++
	}
	if i == len(s) {
		return s
	}
	out := make([]byte, 0, len(s))
	out = append(out, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			out = append(out, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// quoteSQL is ngx.quote_sql_str: a MySQL string literal.
func quoteSQL(s string) string {
	var sb strings.Builder
	sb.Grow(len(s) + 2)
	sb.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			sb.WriteString(`\0`)
		case '\b':
			sb.WriteString(`\b`)
		case '\n':
			sb.WriteString(`\n`)
		case '\r':
			sb.WriteString(`\r`)
		case '\t':
			sb.WriteString(`\t`)
		case 26:
			sb.WriteString(`\Z`)
		case '\\', '\'', '"':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		default:
			sb.WriteByte(c)
		}
	}
	sb.WriteByte('\'')
	return sb.String()
}
