package luajit

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func newVM(t testing.TB, opts Options) *VM {
	t.Helper()
	vm, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Close)
	return vm
}

// runThread loads code as a chunk named name, runs it on a new coroutine to its
// end and returns its results as strings (numbers formatted by Lua's tostring
// rules are not needed here: the tests return strings, numbers and booleans).
func runThread(t testing.TB, s *State, name, code string) ([]any, error) {
	t.Helper()
	fn, err := s.Load(name, code)
	if err != nil {
		return nil, err
	}
	defer s.Unref(fn)
	th, err := s.NewThread(fn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.CloseThread(th)
	st, err := s.Resume(th)
	if err != nil {
		return nil, err
	}
	if st != Finished {
		t.Fatalf("status %v, want finished", st)
	}
	return values(s), nil
}

func values(s *State) []any {
	var vs []any
	for i := 0; i < s.N(); i++ {
		switch s.Type(i) {
		case TypeNumber:
			vs = append(vs, s.Number(i))
		case TypeString:
			vs = append(vs, s.String(i))
		case TypeBoolean:
			vs = append(vs, s.Bool(i))
		case TypeNil:
			vs = append(vs, nil)
		default:
			vs = append(vs, s.Type(i).String())
		}
	}
	return vs
}

func expect(t *testing.T, got []any, want ...any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("value %d: got %#v, want %#v (all: %v)", i, got[i], want[i], got)
		}
	}
}

func TestCallbacks(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	if err := s.Register("add", func(s *State) error {
		s.PushNumber(s.Number(0) + s.Number(1))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Register("ngx.req.echo", func(s *State) error {
		for i := 0; i < s.N(); i++ {
			switch s.Type(i) {
			case TypeString:
				s.PushString(strings.ToUpper(string(s.Bytes(i))))
			case TypeBoolean:
				s.PushBool(!s.Bool(i))
			case TypeLightUserdata:
				s.PushPointer(s.Pointer(i))
			default:
				s.PushString(s.Type(i).String())
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := runThread(t, s, "cb.lua", `
		local p = ngx.req.echo("hello", true, nil, {}, print)
		return add(1, 2.5), p, select(2, ngx.req.echo("hello", true, nil, {}, print))`)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, 3.5, "HELLO", false, "nil", "table", "function")
}

func TestYieldFromCallback(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	// wait(key) suspends the coroutine with ("wait", key); the resumer's values are
	// its results, as ngx.sleep and cosocket reads will work.
	s.Register("wait", func(s *State) error {
		key := s.String(0)
		s.PushString("wait")
		s.PushString(key)
		s.Yield()
		return nil
	})
	fn, err := s.Load("yield.lua", `
		local a = wait("first")
		local ok, b, c = pcall(wait, "inside pcall")
		local t = setmetatable({}, {__index = function(_, k) return wait(k) end})
		return a .. "|" .. tostring(ok) .. "|" .. b .. "|" .. tostring(c) .. "|" .. t.meta`)
	if err != nil {
		t.Fatal(err)
	}
	th, err := s.NewThread(fn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.CloseThread(th)
	resumes := []func(){
		func() { s.PushString("A") },
		func() { s.PushString("B"); s.PushNumber(7) },
		func() { s.PushString("M") },
	}
	wantKeys := []string{"first", "inside pcall", "meta"}
	for i, push := range resumes {
		st, err := s.Resume(th)
		if err != nil || st != Suspended {
			t.Fatalf("resume %d: %v %v", i, st, err)
		}
		expect(t, values(s), "wait", wantKeys[i])
		push()
	}
	st, err := s.Resume(th)
	if err != nil || st != Finished {
		t.Fatalf("last resume: %v %v", st, err)
	}
	expect(t, values(s), "A|true|B|7|M")
	if _, err := s.Resume(th); err == nil {
		t.Fatal("resume of a finished thread succeeded")
	}
}

func TestErrorsCarryFileLine(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	s.Register("fail", func(s *State) error { return errors.New("backend said no") })
	s.Register("boom", func(s *State) error { panic("index out of range") })

	_, err := runThread(t, s, "handler.lua", "local x = 1\n\nerror('boom')\n")
	var le *Error
	if !errors.As(err, &le) || le.Code != ErrRun || le.Message != "handler.lua:3: boom" {
		t.Fatalf("error %#v", err)
	}
	if !strings.Contains(le.Traceback, "stack traceback:") || !strings.Contains(le.Traceback, "handler.lua:3: in main chunk") {
		t.Fatalf("traceback %q", le.Traceback)
	}

	_, err = runThread(t, s, "go.lua", "local x = 1\nfail()\n")
	if !errors.As(err, &le) || le.Message != "go.lua:2: backend said no" {
		t.Fatalf("error of a Go function: %#v", err)
	}
	// A Go panic becomes a Lua error that pcall can catch; the VM goes on.
	got, err := runThread(t, s, "panic.lua", "local ok, e = pcall(function()\n boom()\nend)\nreturn ok, e\n")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, false, "panic.lua:2: go panic: index out of range")

	_, err = runThread(t, s, "obj.lua", "error({})")
	if !errors.As(err, &le) || le.Message != "(error object is a table value)" {
		t.Fatalf("error object: %#v", err)
	}

	_, err = s.Load("bad.lua", "local x = \n\n if")
	if !errors.As(err, &le) || le.Code != ErrSyntax || !strings.HasPrefix(le.Message, "bad.lua:3:") {
		t.Fatalf("syntax error: %#v", err)
	}

	// Errors of code on the main state (init code) carry a traceback too.
	err = s.DoString("init.lua", "local function f() error('init failed') end\nf()\n")
	if !errors.As(err, &le) || le.Message != "init.lua:1: init failed" || !strings.Contains(le.Traceback, "init.lua:2: in main chunk") {
		t.Fatalf("init error: %#v", err)
	}
}

func TestSwap(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	got, err := runThread(t, s, "swap.lua", `
		local a, b = 1, 2
		a, b = b, a
		local t = {x = "x", y = "y"}
		t.x, t.y = t.y, t.x
		local i, j = 1, 2
		local arr = {"p", "q"}
		arr[i], arr[j] = arr[j], arr[i]
		return a, b, t.x, t.y, arr[1], arr[2]`)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, 2.0, 1.0, "y", "x", "q", "p")
}

func TestDeepRecursionIsAnError(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	_, err := runThread(t, s, "rec.lua", "local function f(n) return 1 + f(n + 1) end\nreturn f(1)")
	if err == nil || !strings.Contains(err.Error(), "stack overflow") {
		t.Fatalf("deep recursion: %v", err)
	}
	// Coroutines resuming coroutines, each a level deeper (gopher-lua overflowed
	// Go's stack here and killed the process).
	got, err := runThread(t, s, "co.lua", `
		local function nest(n)
			local co = coroutine.create(function() return nest(n + 1) end)
			local ok, err = coroutine.resume(co)
			if not ok then error(err, 0) end
			return err
		end
		local ok, err = pcall(nest, 1)
		return ok, err`)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != false || !strings.Contains(got[1].(string), "coroutines nested too deep (200 levels)") {
		t.Fatalf("nested coroutines: %v", got)
	}
	// The VM still works.
	got, err = runThread(t, s, "after.lua", "return 1 + 1")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, 2.0)
}

func TestOutOfMemoryFailsTheCall(t *testing.T) {
	vm := newVM(t, Options{MemoryLimit: 32 << 20})
	s := vm.Lock()
	defer s.Unlock()
	for round := 0; round < 2; round++ {
		_, err := runThread(t, s, "hog.lua", `
			local t = {}
			for i = 1, 1e8 do t[i] = string.rep("x", 64) .. i end`)
		var le *Error
		if !errors.As(err, &le) || le.Code != ErrMem || le.Message != "not enough memory" {
			t.Fatalf("round %d: %#v", round, err)
		}
		got, err := runThread(t, s, "after.lua", "return #table.concat({'a', 'b', string.rep('c', 1000)})")
		if err != nil {
			t.Fatal(err)
		}
		expect(t, got, 1002.0)
	}
	// Strings passed to a resume under a limit are pushed in a protected call.
	fn, _ := s.Load("arg.lua", "local a, b = ... return a .. b")
	th, _ := s.NewThread(fn)
	s.PushString("x")
	s.PushString(strings.Repeat("y", 100))
	if st, err := s.Resume(th); st != Finished || err != nil || len(s.String(0)) != 101 {
		t.Fatal(st, err)
	}
	s.CloseThread(th)
	// On the main state too.
	err := s.DoString("hog.lua", "local t = {} for i = 1, 1e8 do t[i] = {i} end")
	var le *Error
	if !errors.As(err, &le) || le.Code != ErrMem {
		t.Fatalf("main state: %#v", err)
	}
}

func TestThreadsAreAnchoredWhileSuspended(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	s.Register("wait", func(s *State) error { s.Yield(); return nil })
	fn, err := s.Load("anchor.lua", "local t = {} for i = 1, 100 do t[i] = tostring(i) end\nlocal r = wait()\nreturn #t .. r")
	if err != nil {
		t.Fatal(err)
	}
	ths := make([]*Thread, 200)
	for i := range ths {
		if ths[i], err = s.NewThread(fn); err != nil {
			t.Fatal(err)
		}
		if st, err := s.Resume(ths[i]); st != Suspended || err != nil {
			t.Fatal(st, err)
		}
	}
	// Garbage made meanwhile, and full collections: the suspended coroutines and
	// their locals survive (they are referred to from the registry only).
	s.DoString("garbage.lua", "for i = 1, 1e5 do local _ = {i} end")
	s.Collect()
	s.Collect()
	for i, th := range ths {
		s.PushString("!")
		if st, err := s.Resume(th); st != Finished || err != nil {
			t.Fatal(i, st, err)
		}
		expect(t, values(s), "100!")
		s.CloseThread(th)
	}
}

// The VM is entered by one goroutine at a time whatever the scheduler does: with
// GOMAXPROCS=1, a long Lua call lets sysmon give the P to another thread, whose
// goroutines then try to enter. The C side counts entries made while another is in
// progress.
func TestSingleOwner(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	vm := newVM(t, Options{})
	s := vm.Lock()
	s.Register("id", func(s *State) error { s.PushNumber(s.Number(0)); return nil })
	long, err := s.Load("long.lua", "local x = 0 for i = 1, 5e7 do x = x + i % 7 end return x")
	if err != nil {
		t.Fatal(err)
	}
	short, err := s.Load("short.lua", "local n = ... return id(n) * 2")
	if err != nil {
		t.Fatal(err)
	}
	s.Unlock()

	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := vm.Lock()
		defer s.Unlock()
		close(started)
		th, _ := s.NewThread(long)
		if _, err := s.Resume(th); err != nil {
			t.Error(err)
		}
		s.CloseThread(th)
	}()
	<-started
	errs := make(chan error, 64)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				s := vm.Lock()
				th, err := s.NewThread(short)
				if err != nil {
					errs <- err
				} else {
					s.PushInt(g*1000 + i)
					if _, err := s.Resume(th); err != nil {
						errs <- err
					} else if got := s.Number(0); got != float64(2*(g*1000+i)) {
						errs <- errors.New("wrong result")
					}
					s.CloseThread(th)
				}
				s.Unlock()
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v := vm.Violations(); v != 0 {
		t.Fatalf("%d concurrent entries", v)
	}
}

func TestNestedEntryIsRefused(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	var nested error
	s.Register("reenter", func(s *State) error {
		_, nested = s.Load("x", "return 1")
		return nil
	})
	if _, err := runThread(t, s, "re.lua", "reenter()"); err != nil {
		t.Fatal(err)
	}
	if nested != ErrNested {
		t.Fatalf("nested entry: %v", nested)
	}
	// The entries that return no error panic, which the trampoline turns into a
	// Lua error; the VM and the main state's stack are left as they were.
	s.Register("collect", func(s *State) error { s.Collect(); return nil })
	err := s.DoString("init.lua", "local a, b = 1, 2\ncollect()\n")
	var le *Error
	if !errors.As(err, &le) || le.Message != "init.lua:2: go panic: "+ErrNested.Error() {
		t.Fatalf("Collect in a callback: %v", err)
	}
	got, err := runThread(t, s, "after.lua", "return 40 + 2")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, 42.0)
	if vm.Violations() != 0 {
		t.Fatal("an entry from a callback reached the C side")
	}
}

func TestPackagePaths(t *testing.T) {
	vm := newVM(t, Options{PackagePath: "/srv/lua/?.lua;;"})
	s := vm.Lock()
	defer s.Unlock()
	got, err := runThread(t, s, "paths.lua", "return package.path, package.cpath")
	if err != nil {
		t.Fatal(err)
	}
	path, cpath := got[0].(string), got[1].(string)
	for _, want := range []string{"/srv/lua/?.lua;", "/usr/share/lua/5.1/?.lua", "/usr/share/lua/5.1/?/init.lua"} {
		if !strings.Contains(path, want) {
			t.Errorf("package.path %q lacks %q", path, want)
		}
	}
	if !strings.Contains(cpath, "/lua/5.1/?.so") || strings.Contains(path+cpath, "./?") {
		t.Errorf("package.cpath %q", cpath)
	}
}

var _ = time.Second

func TestFinishedThreadsAreReused(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	s.Register("wait", func(s *State) error { s.Yield(); return nil })
	a, _ := s.Load("a.lua", "local x = ... return 'a' .. x")
	b, _ := s.Load("b.lua", "local x, y = ... wait() return 'b' .. x .. y, coroutine.running() ~= nil")
	th, _ := s.NewThread(a)
	s.PushString("1")
	if st, err := s.Resume(th); st != Finished || err != nil {
		t.Fatal(st, err)
	}
	expect(t, values(s), "a1")
	s.CloseThread(th)
	th2, _ := s.NewThread(b)
	if th2 != th {
		t.Fatal("a finished coroutine was not reused")
	}
	s.PushString("2")
	s.PushString("3")
	if st, err := s.Resume(th2); st != Suspended || err != nil {
		t.Fatal(st, err)
	}
	if st, err := s.Resume(th2); st != Finished || err != nil {
		t.Fatal(st, err)
	}
	expect(t, values(s), "b23", true)
	s.CloseThread(th2)
	// A thread that failed is not reused.
	th3, _ := s.NewThread(a)
	if _, err := s.Resume(th3); err == nil {
		t.Fatal("concatenating nil succeeded")
	}
	s.CloseThread(th3)
	if th4, _ := s.NewThread(a); th4 == th3 {
		t.Fatal("a dead coroutine was reused")
	}
}

// The Lua memory a request waiting in a handler holds: its coroutine with a few
// locals (issue 16's budget for a Lua request in flight is 6 KB in all).
func TestMemoryPerSuspendedThread(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	s.Register("wait", func(s *State) error { s.Yield(); return nil })
	fn, _ := s.Load("wait.lua", `local args, headers = {a = "1"}, {host = "example.com"}
		local data = wait()
		return data`)
	s.Collect()
	before := s.MemoryInUse()
	const n = 10000
	ths := make([]*Thread, n)
	for i := range ths {
		ths[i], _ = s.NewThread(fn)
		if st, err := s.Resume(ths[i]); st != Suspended || err != nil {
			t.Fatal(st, err)
		}
	}
	s.Collect()
	per := (s.MemoryInUse() - before) / n
	t.Logf("Lua heap per suspended request: %d bytes", per)
	if per > 6<<10 {
		t.Fatalf("%d bytes per suspended coroutine", per)
	}
	for _, th := range ths {
		s.CloseThread(th)
	}
}

// Handlers sandboxed as ngx_lua runs them: globals they assign are their own.
func TestSandboxedThreads(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	s.Register("wait", func(s *State) error { s.Yield(); return nil })
	if err := s.DoString("init.lua", "shared = 'from init'"); err != nil {
		t.Fatal(err)
	}
	factory, err := s.LoadSandboxed("handler.lua", `local id = ...
		counter = (counter or 0) + 1
		mine = id
		wait()
		if id == "b" then error("failing on line 5") end
		return mine, counter, shared, rawget(_G, "mine") == nil, string.upper("ok")`)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.NewSandboxedThread(factory)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.NewSandboxedThread(factory)
	for _, th := range []*Thread{a, b} {
		s.PushString(map[*Thread]string{a: "a", b: "b"}[th])
		if st, err := s.Resume(th); st != Suspended || err != nil {
			t.Fatal(st, err)
		}
	}
	if st, err := s.Resume(a); st != Finished || err != nil {
		t.Fatal(st, err)
	}
	expect(t, values(s), "a", 1.0, "from init", true, "OK")
	_, err = s.Resume(b)
	var le *Error
	if !errors.As(err, &le) || le.Message != "handler.lua:5: failing on line 5" {
		t.Fatalf("line numbers in a sandboxed chunk: %v", err)
	}
	s.CloseThread(a)
	s.CloseThread(b)
	// A reused coroutine gets a fresh environment.
	c, _ := s.NewSandboxedThread(factory)
	if c != a {
		t.Fatal("the finished coroutine was not reused")
	}
	s.PushString("c")
	s.Resume(c)
	if st, err := s.Resume(c); st != Finished || err != nil {
		t.Fatal(st, err)
	}
	expect(t, values(s), "c", 1.0, "from init", true, "OK")
}

// Results around the LUA_MINSTACK slots a C function has, where the trampoline
// stops skipping luaL_checkstack: 20 and 21 values, 200, and yields of 12 and 20
// values resumed with 8 and 30.
func TestCallbackResultsAroundMinStack(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	s.Register("many", func(s *State) error {
		for i := 1; i <= s.Int(0); i++ {
			s.PushInt(i)
		}
		return nil
	})
	s.Register("wait", func(s *State) error {
		for i := 1; i <= s.Int(0); i++ {
			s.PushInt(i)
		}
		s.Yield()
		return nil
	})
	fn, err := s.Load("minstack.lua", `
		local a = select("#", many(20))
		local b = select("#", many(21))
		local c = select(200, many(200))
		local r1 = {wait(12)}
		local r2 = {wait(20)}
		return a, b, c, #r1, r1[8], #r2, r2[30]`)
	if err != nil {
		t.Fatal(err)
	}
	th, err := s.NewThread(fn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.CloseThread(th)
	for _, c := range []struct{ yielded, resume int }{{12, 8}, {20, 30}} {
		if st, err := s.Resume(th); st != Suspended || err != nil {
			t.Fatal(st, err)
		}
		if s.N() != c.yielded || s.Int(c.yielded-1) != c.yielded {
			t.Fatalf("yielded %d values, want %d", s.N(), c.yielded)
		}
		for i := 1; i <= c.resume; i++ {
			s.PushInt(i)
		}
	}
	if st, err := s.Resume(th); st != Finished || err != nil {
		t.Fatal(st, err)
	}
	expect(t, values(s), 20.0, 21.0, 200.0, 8.0, 8.0, 30.0, 30.0)
}
