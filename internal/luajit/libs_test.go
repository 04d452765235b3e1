package luajit

import (
	"strings"
	"testing"
)

// The Lua modules of Debian's packages, unmodified (scripts/test.sh installs
// lua-cjson and lua-resty-lrucache), found through the default package paths.

func TestCJSON(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	got, err := runThread(t, s, "cjson.lua", `
		local cjson = require "cjson"
		local doc = {name = "spindle", list = {1, 2.5, "three", true}, nested = {q = 'say "hi"\n'}}
		local back = cjson.decode(cjson.encode(doc))
		local arr = cjson.decode('[1, null, {"k": "v"}]')
		local ok, err = pcall(cjson.decode, "{bad")
		return back.name, back.list[2], back.list[3], back.list[4], back.nested.q,
			arr[2] == cjson.null, arr[3].k, cjson.encode({1, 2, 3}), ok, err`)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 {
		t.Fatalf("got %v", got)
	}
	expect(t, got[:9], "spindle", 2.5, "three", true, "say \"hi\"\n", true, "v", "[1,2,3]", false)
	if msg, _ := got[9].(string); !strings.Contains(msg, "Expected object key string") {
		t.Fatalf("cjson.decode error: %q", got[9])
	}

	got, err = runThread(t, s, "safe.lua", `
		local safe = require "cjson.safe"
		local v, err = safe.decode("{bad")
		return v, err, safe.encode({a = {b = "c"}})`)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != nil || !strings.Contains(got[1].(string), "Expected object key string") || got[2] != `{"a":{"b":"c"}}` {
		t.Fatalf("cjson.safe: %v", got)
	}
}

func TestLRUCache(t *testing.T) {
	for _, mod := range []string{"resty.lrucache", "resty.lrucache.pureffi"} {
		t.Run(mod, func(t *testing.T) {
			vm := newVM(t, Options{})
			s := vm.Lock()
			defer s.Unlock()
			// lua-resty-lrucache reads the time through ngx.now, here the test's clock.
			now := 1000.0
			if err := s.Register("ngx.now", func(s *State) error { s.PushNumber(now); return nil }); err != nil {
				t.Fatal(err)
			}
			if err := s.DoString("cache.lua", `
				local lrucache = require(...)
				cache = assert(lrucache.new(2))
				cache:set("a", 1)
				cache:set("b", {2})
				cache:set("c", "three", 10) -- evicts a, the least recently used
			`, mod); err != nil {
				t.Fatal(err)
			}
			got, err := runThread(t, s, "get.lua", `
				return cache:get("a"), cache:get("b")[1], cache:get("c"), cache:count(), cache:capacity()`)
			if err != nil {
				t.Fatal(err)
			}
			expect(t, got, nil, 2.0, "three", 2.0, 2.0)
			now += 11 // c's ttl of 10 s has passed
			got, err = runThread(t, s, "stale.lua", `
				local v, stale = cache:get("c")
				cache:delete("b")
				return v, stale, cache:get("b")`)
			if err != nil {
				t.Fatal(err)
			}
			expect(t, got, nil, "three", nil)
		})
	}
}

func TestFFI(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	got, err := runThread(t, s, "ffi.lua", `
		local ffi = require "ffi"
		ffi.cdef[[size_t strlen(const char *s);]]
		local buf = ffi.new("int[4]", {1, 2, 3, 4})
		local sum = 0
		for i = 0, 3 do sum = sum + buf[i] end
		return tonumber(ffi.C.strlen("hello")), sum, ffi.sizeof("uint64_t")`)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, 5.0, 10.0, 8.0)
}
