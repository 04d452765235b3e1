package ngxlua_test

import (
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/headcheck"
	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// The lines writeHead writes itself; a script's header of one of these names has
// other semantics, and the fuzz tests leave such names out.
var coreHeaders = []string{"Server", "Date", "Content-Type", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive"}

func isCoreHeader(name string) bool {
	for _, c := range coreHeaders {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}

// FuzzLuaResponseHeaders sets response headers from Lua with arbitrary bytes
// (ngx.header with one value and with two, ngx.resp.add_header, ngx.redirect) and parses the response
// with a strict HTTP/1.1 parser: the head is well formed, and holds exactly the lines
// the script set, %-escaped as ngx_lua escapes them, never one more.
func FuzzLuaResponseHeaders(f *testing.F) {
	for _, s := range []struct {
		mode        uint8
		name, value string
	}{
		{0, "X-A", "v"},
		{0, "header", "value\rfoo:bar\nbar:foo"},
		{0, "header: value\rfoo:bar\nbar:foo", "xx"},
		{0, "\nheader: value\nfoo:bar\rbar:foo", "xx"},
		{1, "foo", "foo\nxx:bar"},
		{0, "x_under_score", " \tpadded\t "},
		{0, "X-A: v\r\nInjected: yes\r\nX-B", "1"},
		{0, "", "empty name"},
		{0, "X-Nul\x00", "a\x00b\x7f\xff"},
		{2, "", "http://x/foo\rfoo:bar\nbar:foo"},
		{2, "", "/local\tpath"},
		{2, "", "https://example.com/caf\xc3\xa9"},
		{3, "X-Added", "a\r\nInjected: yes"},
	} {
		f.Add(s.mode, s.name, s.value)
	}
	s := testserver.Start(f, `http {
  server {
    listen = ["127.0.0.1:0"]
    location "= /h" {
      content_by_lua = <<-LUA
        local n = ngx.unescape_uri(ngx.var.arg_n or "")
        local v = ngx.unescape_uri(ngx.var.arg_v or "")
        local m = ngx.var.arg_m
        if m == "0" then
          ngx.header[n] = v
        elseif m == "1" then
          ngx.header[n] = { v, "second " .. v }
        elseif m == "3" then
          ngx.header[n] = "first"
          require("ngx.resp").add_header(n, v)
        else
          return ngx.redirect(v)
        end
        ngx.print("ok")
      LUA
    }
  }
}`)
	f.Fuzz(func(t *testing.T, mode uint8, name, value string) {
		mode %= 4
		if len(name) > 400 || len(value) > 400 {
			return
		}
		wire := httpcore.EscapeHeaderName(strings.ReplaceAll(name, "_", "-"))
		if mode != 2 && isCoreHeader(wire) {
			return
		}
		target := "/h?m=" + string('0'+mode) + "&n=" + headcheck.PercentAll(name) + "&v=" + headcheck.PercentAll(value)
		h, status, raw := headcheck.Fetch(t, s.Addr, target)
		got := h.Without(coreHeaders...)
		var want []headcheck.Field
		v := strings.Trim(httpcore.EscapeHeaderValue(value), " \t")
		switch {
		case mode == 2:
			unsafe := strings.ContainsFunc(value, func(c rune) bool { return c < 0x20 && c != '\t' || c == 0x7f })
			if unsafe {
				if status != 500 {
					t.Fatalf("ngx.redirect(%q): status %d, want 500\n%q", value, status, raw)
				}
				break
			}
			loc := h.Values("Location")
			if status != 302 || len(loc) != 1 || !strings.HasSuffix(loc[0], strings.Trim(value, " \t")) {
				t.Fatalf("ngx.redirect(%q): status %d, Location %q\n%q", value, status, loc, raw)
			}
			want = []headcheck.Field{{Name: "Location", Value: loc[0]}}
		case wire == "":
			// No line can be written for an empty name: none is.
		case mode == 0:
			want = []headcheck.Field{{Name: wire, Value: v}}
		case mode == 1:
			second := strings.Trim(httpcore.EscapeHeaderValue("second "+value), " \t")
			want = []headcheck.Field{{Name: wire, Value: v}, {Name: wire, Value: second}}
		case mode == 3:
			want = []headcheck.Field{{Name: wire, Value: "first"}, {Name: wire, Value: v}}
		}
		if mode != 2 && status != 200 {
			t.Fatalf("ngx.header[%q] = %q: status %d\n%q", name, value, status, raw)
		}
		if !headcheck.Equal(got, want) {
			t.Fatalf("ngx.header[%q] = %q (mode %d): lines %q, want %q\n%q", name, value, mode, got, want, raw)
		}
	})
}
