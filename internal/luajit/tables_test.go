package luajit

import (
	"math"
	"strconv"
	"testing"
)

// Tables built from Go values: what ngx.req.get_headers, get_uri_args and
// ngx.location.capture return.
func TestTablesFromGo(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	s.Register("headers", func(s *State) error {
		s.PushTable(4)
		s.PushString("host")
		s.PushString("example.com")
		s.PushString("accept")
		s.PushArray(2)
		s.PushString("text/html")
		s.PushString("*/*")
		s.PushNumber(math.NaN()) // not a key: skipped
		s.PushBool(true)
		s.PushNil() // not a key: skipped
		s.PushBool(true)
		s.PushString("after")
		return nil
	})
	s.Register("big", func(s *State) error {
		n := s.Int(0)
		s.PushTable(n)
		for i := 0; i < n; i++ {
			s.PushString("k" + strconv.Itoa(i))
			s.PushInt(i)
		}
		return nil
	})
	s.Register("wait", func(s *State) error { s.Yield(); return nil })
	got, err := runThread(t, s, "tables.lua", `
		local h, after = headers()
		local n = 0
		for _ in pairs(h) do n = n + 1 end
		local b = big(1000)
		local sum = 0
		for k, v in pairs(b) do sum = sum + v end
		return h.host, h.accept[1], h.accept[2], #h.accept, n, after, sum, b.k999`)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, "example.com", "text/html", "*/*", 2.0, 2.0, "after", 499500.0, 999.0)

	// A table as what a yielded callback returns (a capture's response).
	fn, _ := s.Load("resume.lua", "local res = wait() return res.status, res.header['content-type'], res.body")
	th, _ := s.NewThread(fn)
	if st, err := s.Resume(th); st != Suspended || err != nil {
		t.Fatal(st, err)
	}
	s.PushTable(3)
	s.PushString("status")
	s.PushInt(200)
	s.PushString("header")
	s.PushTable(1)
	s.PushString("content-type")
	s.PushString("text/plain")
	s.PushString("body")
	s.PushString("hello")
	if st, err := s.Resume(th); st != Finished || err != nil {
		t.Fatal(st, err)
	}
	expect(t, values(s), 200.0, "text/plain", "hello")
	s.CloseThread(th)
}

// Keys given by reference: a table kept with Ref is a key; a reference to nil
// (LUA_REFNIL) is not, and its pair is skipped as a nil key's.
func TestTableRefKeys(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	var kept Ref
	s.RegisterRefs("keep", func(s *State) error {
		kept, _ = s.Ref(0)
		return nil
	})
	s.Register("keyed", func(s *State) error {
		s.PushTable(3)
		s.PushRef(kept)
		s.PushString("by table")
		s.PushRef(Ref(-1)) // LUA_REFNIL
		s.PushString("skipped")
		s.PushString("k")
		s.PushString("v")
		return nil
	})
	got, err := runThread(t, s, "refkeys.lua", `
		local key = {}
		keep(key)
		local t = keyed()
		local n = 0
		for _ in pairs(t) do n = n + 1 end
		return t[key], t.k, n`)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, "by table", "v", 2.0)
}
