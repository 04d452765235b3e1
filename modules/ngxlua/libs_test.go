package ngxlua_test

import (
	"os"
	"strings"
	"testing"
)

// Debian's Lua libraries for OpenResty, unmodified, on the LuaJIT engine: lua-cjson
// (a C module found through package.cpath) and lua-resty-lrucache (LuaJIT's FFI and
// table.new), as apps load them.
func TestLibraries(t *testing.T) {
	s := serve(t, `
  init_by_lua = <<-LUA
    cache = require("resty.lrucache").new(2)
  LUA`, `
    location "= /cjson" {
      content_by_lua = <<-LUA
        local cjson = require "cjson"
        local t = cjson.decode('{"a":[1,2,{"b":null}],"s":"x\\"y"}')
        ngx.say(t.a[2], " ", tostring(t.a[3].b == cjson.null), " ", t.s)
        ngx.say(cjson.encode({list = {1, 2, 3}}))
        local ok, err = pcall(cjson.decode, "{bad")
        ngx.say(ok, " ", err ~= nil)
      LUA
    }
    location "= /lru" {
      content_by_lua = <<-LUA
        cache:set("a", 1)
        cache:set("b", 2)
        cache:get("a")
        cache:set("c", 3) -- evicts b, the least recently used
        ngx.say(cache:get("a"), " ", tostring(cache:get("b")), " ", (cache:get("c")))
        local pure = require("resty.lrucache.pureffi").new(4)
        pure:set("k", "v", 0.001)
        ngx.say((pure:get("k")))
      LUA
    }
    location "= /jit" {
      content_by_lua = <<-LUA
        local ffi = require "ffi"
        ffi.cdef "int abs(int);"
        ngx.say(type(jit), " ", jit.version:match("^LuaJIT") ~= nil, " ", ffi.C.abs(-7))
      LUA
    }`)
	check(t, s.Get("/cjson"), 200, "2 true x\"y\n{\"list\":[1,2,3]}\nfalse true\n")
	check(t, s.Get("/lru"), 200, "1 nil 3\nv\n")
	check(t, s.Get("/jit"), 200, "table true 7\n")
	noErrors(t, s)
}

// lua-resty-string (Debian's lua-nginx-string) calls OpenSSL's libcrypto and
// nginx's ngx_hex_dump and ngx_atoi through ffi.C: the prelude loads libcrypto
// into the global namespace and the binary exports nginx's two functions
// (ngxabi.c).
func TestRestyStringFFI(t *testing.T) {
	s := serve(t, "", `
    location "= /hash" {
      content_by_lua = <<-LUA
        local str = require "nginx.string"
        local md5, sha1 = require "nginx.md5", require "nginx.sha1"
        local m = md5:new(); m:update("hel"); m:update("lo")
        local h = sha1:new(); h:update("hello")
        ngx.say(str.to_hex(m:final()), " ", str.to_hex(h:final()))
        ngx.say(str.atoi("12345"), " ", str.atoi("12a"), " ", str.atoi(""), " ", str.to_hex("\0\255"))
      LUA
    }`)
	check(t, s.Get("/hash"), 200, "5d41402abc4b2a76b9719d911017c592 aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d\n12345 -1 -1 00ff\n")
	noErrors(t, s)
}

// LuaJIT's own modules (jit.v, jit.dump, jit.p: its trace log, dump and profiler,
// which OpenResty users load to see why code is slow) are found as in OpenResty,
// with the default package.path and with a lua_package_path ending in ";;", and
// Debian's Lua 5.1 modules still are. jit.v writes its trace log to a file.
func TestLuaJITModules(t *testing.T) {
	log := t.TempDir() + "/jit.log"
	loc := `
    location "= /jit" {
      content_by_lua = <<-LUA
        local v, dump, p = require "jit.v", require "jit.dump", require "jit.p"
        ngx.say(type(v.start), " ", type(dump.on), " ", type(p.start), " ", type(require("nginx.redis").new))
        v.start("` + log + `")
        local n = 0
        for i = 1, 200 do n = n + i % 7 end
        v.off()
        ngx.say(n)
      LUA
    }`
	for _, httpConf := range []string{"", `  lua_package_path = "/nonexistent/?.lua;;"`} {
		s := serve(t, httpConf, loc)
		check(t, s.Get("/jit"), 200, "function function function function\n598\n")
		noErrors(t, s)
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "[TRACE") {
			t.Errorf("jit.v wrote no trace: %q", b)
		}
		os.Remove(log)
	}
}
