package ngxlua_test

import "testing"

// A chunk that never writes a global runs with the shared globals (no table per
// run); one that may gets an environment of its own over them.
func TestPureChunks(t *testing.T) {
	s := serve(t, "", `
    location "= /pure" {
      content_by_lua = "local f = function() end ngx.say(tostring(debug.getfenv(f) == package.loaded._G))"
    }
    location "= /writes" {
      content_by_lua = "local f = function() x = 1 end ngx.say(tostring(debug.getfenv(f) == package.loaded._G))"
    }
    location "= /uses_G" {
      content_by_lua = "local g = _G ngx.say(tostring(debug.getfenv(1) == package.loaded._G))"
    }`)
	check(t, s.Get("/pure"), 200, "true\n")
	check(t, s.Get("/writes"), 200, "false\n")
	check(t, s.Get("/uses_G"), 200, "false\n")
}
