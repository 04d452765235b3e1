package ngxlua_test

import (
	"strings"
	"testing"
)

// Header names and values set from Lua are %-escaped where they would end or split
// the line, as ngx_lua's (t/016-resp-header.t TEST 87-93, t/028-req-header.t TEST
// 62-66); reading them back gives what went on the wire.
func TestHeaderEscaping(t *testing.T) {
	s := serve(t, "", `
    location "= /resp" {
      content_by_lua = <<-LUA
        ngx.header["X-Val"] = "a\r\nInjected: 1"
        ngx.header["X-Bad Name\r\n"] = "v"
        ngx.header["X-List"] = {"1\n", "2"}
        local resp = require "ngx.resp"
        resp.add_header("X-List", "3")
        ngx.resp.add_header("X-Add", "x\0y")
        ngx.say(ngx.header["X-Val"])
      LUA
    }
    location "= /req" {
      content_by_lua = <<-LUA
        ngx.req.set_header("X-In", "p\r\nq")
        ngx.req.set_header("X-In Name", {"a", "b\n"})
        ngx.say(ngx.var.http_x_in, " ", table.concat(ngx.req.get_headers()["x-in%20name"], ","))
      LUA
    }`)
	r := s.Get("/resp")
	if r.Body != "a%0D%0AInjected: 1\n" || r.Header.Get("X-Val") != "a%0D%0AInjected: 1" ||
		r.Header.Get("Injected") != "" || r.Header.Get("X-Bad%20Name%0D%0A") != "v" ||
		strings.Join(r.Header.Values("X-List"), ",") != "1%0A,2,3" || r.Header.Get("X-Add") != "x%00y" {
		t.Errorf("response headers: %q %v", r.Body, r.Header)
	}
	check(t, s.Get("/req"), 200, "p%0D%0Aq a,b%0A\n")
}
