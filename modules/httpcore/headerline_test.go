package httpcore

import (
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/headcheck"
)

// The escape tables are ngx_lua's (ngx_http_lua_util.c, NGX_HTTP_LUA_ESCAPE_HEADER_NAME
// and _VALUE) and nginx's NGX_ESCAPE_URI, byte for byte.
func TestHeaderEscapeTables(t *testing.T) {
	for i := 0; i < 256; i++ {
		c := byte(i)
		if got := headerNameEscapes.has(c); got != !tchar[c] {
			t.Errorf("name byte %#02x escaped %v, want %v (token character: %v)", c, got, !tchar[c], tchar[c])
		}
		if got, want := headerValueEscapes.has(c), c < 0x20 && c != '\t' || c == 0x7f; got != want {
			t.Errorf("value byte %#02x escaped %v, want %v", c, got, want)
		}
		if got, want := uriEscapes.has(c), c <= 0x20 || c >= 0x7f || c == '#' || c == '%' || c == '?'; got != want {
			t.Errorf("URI byte %#02x escaped %v, want %v", c, got, want)
		}
	}
}

// cleanValue's word-at-a-time check agrees with the table for every byte at every
// position of a value.
func TestCleanValue(t *testing.T) {
	b := []byte("abcdefghijklmnopqrstuvwxyz")
	for n := 0; n <= len(b); n++ {
		for pos := 0; pos < n; pos++ {
			for i := 0; i < 256; i++ {
				v := append([]byte(nil), b[:n]...)
				v[pos] = byte(i)
				if got, want := cleanValue(string(v)), clean(string(v), headerValueEscapes); got != want {
					t.Fatalf("cleanValue(%q) = %v, want %v", v, got, want)
				}
			}
		}
	}
}

func TestEscapes(t *testing.T) {
	for _, c := range []struct {
		f        func(string) string
		in, want string
	}{
		// lua-nginx-module t/016-resp-header.t TEST 87-92, t/028-req-header.t TEST 62-66
		{EscapeHeaderValue, "value\rfoo:bar\nbar:foo", "value%0Dfoo:bar%0Abar:foo"},
		{EscapeHeaderName, "header: value\rfoo:bar\nbar:foo", "header%3A%20value%0Dfoo%3Abar%0Abar%3Afoo"},
		{EscapeHeaderName, "\nheader: value\nfoo:bar\rbar:foo", "%0Aheader%3A%20value%0Afoo%3Abar%0Dbar%3Afoo"},
		{EscapeHeaderName, "Foo\r", "Foo%0D"},
		{EscapeHeaderValue, "123\r\n", "123%0D%0A"},
		{EscapeHeaderValue, "foo\tbar", "foo\tbar"},
		{EscapeHeaderValue, "\"new\nvalue\\\"", "\"new%0Avalue\\\""},
		{EscapeHeaderValue, "caf\xc3\xa9\x00\x7f", "caf\xc3\xa9%00%7F"},
		{EscapeHeaderName, "X-Ok_1", "X-Ok_1"},
		{EscapeURI, "/ru/a\r\nInjected: yes", "/ru/a%0D%0AInjected:%20yes"},
		{EscapeURI, "/100%?#\xd0\xb9", "/100%25%3F%23%D0%B9"},
		{EscapeUnsafeURI, "http://x/a%20b?c=d#e f\r\n", "http://x/a%20b?c=d#e%20f%0D%0A"},
	} {
		if got := c.f(c.in); got != c.want {
			t.Errorf("escape %q = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestAppendHeaderLine(t *testing.T) {
	for _, c := range []struct {
		name, value, want string
		escaped, ok       bool
	}{
		{"X-A", "b c", "X-A: b c\r\n", false, true},
		{"X-A: v\r\nInjected", "1\r\nB: 2", "X-A%3A%20v%0D%0AInjected: 1%0D%0AB: 2\r\n", true, true},
		{"X", "", "X: \r\n", false, true},
		{"", "v", "", false, false},
	} {
		out, esc, ok := AppendHeaderLine([]byte("<"), c.name, c.value)
		if string(out) != "<"+c.want || esc != c.escaped || ok != c.ok {
			t.Errorf("AppendHeaderLine(%q, %q) = %q, %v, %v; want %q, %v, %v", c.name, c.value, out, esc, ok, "<"+c.want, c.escaped, c.ok)
		}
	}
}

// BenchmarkAppendHeaderLine is the cost the check adds to each line of a response
// head: a clean line is scanned once and copied.
func BenchmarkAppendHeaderLine(b *testing.B) {
	buf := make([]byte, 0, 256)
	for i := 0; i < b.N; i++ {
		buf, _, _ = AppendHeaderLine(buf[:0], "Cache-Control", "public, max-age=3600, stale-while-revalidate=60")
	}
}

// FuzzAppendHeaderLine: whatever the name and value, the line parses as exactly one
// header field with a strict HTTP/1.1 parser, holding the escaped name and value; and
// where the input had no '%' of its own, %-decoding the field gives back the bytes
// that were set (the value without the spaces and tabs around it).
func FuzzAppendHeaderLine(f *testing.F) {
	for _, s := range [][2]string{
		{"X-A", "v"},
		{"X-A: v\r\nInjected", "1\r\nB: 2"},
		{"\x00\x7f\xff", "\x00\x01\t\x7f\xff"},
		{"", "v"},
		{"X", " \t "},
		{"%0D", "%0A"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		out, escaped, ok := AppendHeaderLine(nil, name, value)
		if !ok {
			if name != "" || len(out) != 0 {
				t.Fatalf("(%q, %q) dropped: %q", name, value, out)
			}
			return
		}
		h, _, err := headcheck.ParseResponse(append(append([]byte("HTTP/1.1 200 OK\r\n"), out...), "\r\n"...))
		if err != nil {
			t.Fatalf("(%q, %q) -> %q: %v", name, value, out, err)
		}
		if len(h.Fields) != 1 {
			t.Fatalf("(%q, %q) -> %q: %d fields", name, value, out, len(h.Fields))
		}
		gotName, gotValue := h.Fields[0].Name, h.Fields[0].Value
		if gotName != EscapeHeaderName(name) || gotValue != strings.Trim(EscapeHeaderValue(value), " \t") {
			t.Fatalf("(%q, %q) -> %q", name, value, out)
		}
		if !strings.Contains(name+value, "%") && (percentDecode(gotName) != name || percentDecode(gotValue) != strings.Trim(value, " \t")) {
			t.Fatalf("(%q, %q) -> %q: decodes to (%q, %q)", name, value, out, percentDecode(gotName), percentDecode(gotValue))
		}
		if escaped == (string(out) == name+": "+value+"\r\n") {
			t.Fatalf("(%q, %q) -> %q: escaped reported %v", name, value, out, escaped)
		}
	})
}

// percentDecode decodes every %XX.
func percentDecode(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}
