package lua

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Tests of spindle's changes (SPINDLE.md).

func TestNextOrderBuiltLazily(t *testing.T) {
	L := NewState()
	defer L.Close()
	// The order pairs() sees is the same in every run: array part, then string keys
	// sorted, then number keys ascending; keys added after the first traversal come
	// last, in insertion order; a key set to nil before the traversal reaches it is not visited.
	err := L.DoString(`
		local t = {10, 20, zeta = 1, alpha = 2, mid = 3}
		t[2.5] = "x"; t[-1] = "y"; t[true] = "z"
		local out = {}
		for k, v in pairs(t) do out[#out + 1] = tostring(k) end
		t.added = 4; t.aaa = 5
		local out2 = {}
		for k, v in pairs(t) do
			out2[#out2 + 1] = tostring(k)
			if k == "alpha" then t.mid = nil end
		end
		local out3 = {}
		for k in pairs(t) do out3[#out3 + 1] = tostring(k) end
		result = table.concat(out, ",") .. "|" .. table.concat(out2, ",") .. "|" .. table.concat(out3, ",")
	`)
	if err != nil {
		t.Fatal(err)
	}
	want := "1,2,alpha,mid,zeta,-1,2.5,true|1,2,alpha,zeta,-1,2.5,true,added,aaa|1,2,alpha,zeta,-1,2.5,true,added,aaa"
	if got := L.GetGlobal("result").String(); got != want {
		t.Errorf("pairs order\n got %s\nwant %s", got, want)
	}
}

func TestNextOnTableBuiltFromGo(t *testing.T) {
	L := NewState()
	defer L.Close()
	tb := L.NewTable()
	tb.RawSetString("b", LNumber(2))
	tb.RawSetString("a", LNumber(1))
	tb.RawSetString("gone", LNumber(3))
	tb.RawSetString("gone", LNil)
	var keys []string
	for k, _ := tb.Next(LNil); k != LNil; k, _ = tb.Next(k) {
		keys = append(keys, k.String())
	}
	if got := strings.Join(keys, ","); got != "a,b" {
		t.Errorf("keys %q, want a,b", got)
	}
	if k, _ := L.NewTable().Next(LNil); k != LNil {
		t.Errorf("empty table: first key %v", k)
	}
}

func TestContextCheckedInLuaLoops(t *testing.T) {
	L := NewState()
	defer L.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	L.SetContext(ctx)
	start := time.Now()
	err := L.DoString(`local n = 0 while true do n = n + 1 end`)
	if err == nil || !strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
		t.Fatalf("err = %v, want %v", err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stopped after %v", d)
	}
}

// A table's string keys behave the same in the small part and in the map: random
// sets, overwrites and deletes against a Go map, through RawGet, Next and ForEach,
// on tables that stay small and tables that outgrow it.
func TestSmallStringKeys(t *testing.T) {
	keys := []string{"a", "b", "c", "_sock", "_subscribed", "x", "yy", "zzz", "k9", "k10", "k11", "k12"}
	for _, nkeys := range []int{3, maxSmall, len(keys)} {
		for seed := uint32(1); seed <= 50; seed++ {
			tb := newLTable(0, 0)
			model := map[string]LValue{}
			r := seed
			for step := 0; step < 60; step++ {
				r = r*1664525 + 1013904223
				k := keys[int(r>>8)%nkeys]
				var v LValue = LNumber(step)
				if r>>24%3 == 0 {
					v = LNil
				}
				tb.RawSetString(k, v)
				if v == LNil {
					delete(model, k)
				} else {
					model[k] = v
				}
				for _, k := range keys {
					want, ok := model[k]
					if !ok {
						want = LNil
					}
					if got := tb.RawGet(LString(k)); got != want {
						t.Fatalf("keys %d seed %d step %d: %s = %v, want %v", nkeys, seed, step, k, got, want)
					}
				}
			}
			seen := map[string]LValue{}
			for k, v := tb.Next(LNil); k != LNil; k, v = tb.Next(k) {
				seen[k.String()] = v
			}
			each := map[string]LValue{}
			tb.ForEach(func(k, v LValue) { each[k.String()] = v })
			if len(seen) != len(model) || len(each) != len(model) {
				t.Fatalf("keys %d seed %d: next saw %d, ForEach %d, want %d", nkeys, seed, len(seen), len(each), len(model))
			}
			for k, v := range model {
				if seen[k] != v || each[k] != v {
					t.Fatalf("keys %d seed %d: %s: next %v, ForEach %v, want %v", nkeys, seed, k, seen[k], each[k], v)
				}
			}
		}
	}
}

// Fields may be cleared while pairs() or ForEach walks a small table.
func TestSmallStringKeysClearedWhileWalking(t *testing.T) {
	L := NewState()
	defer L.Close()
	err := L.DoString(`
		local t = {a = 1, b = 2, c = 3, d = 4}
		local n = 0
		for k in pairs(t) do t[k] = nil; n = n + 1 end
		result = n .. " " .. tostring(next(t))
	`)
	if err != nil {
		t.Fatal(err)
	}
	if got := L.GetGlobal("result").String(); got != "4 nil" {
		t.Errorf("got %q, want %q", got, "4 nil")
	}
	tb := L.NewTable()
	for _, k := range []string{"a", "b", "c", "d"} {
		tb.RawSetString(k, LTrue)
	}
	n := 0
	tb.ForEach(func(k, _ LValue) { tb.RawSet(k, LNil); n++ })
	if n != 4 || tb.RawGetString("a") != LNil || tb.strLen() != 0 {
		t.Errorf("ForEach clearing: visited %d, %d keys left", n, tb.strLen())
	}
}

func TestTablesMadeWithInlineParts(t *testing.T) {
	// Tables made for a few elements hold them in their own allocation and move them
	// out when they grow: every size hint must give the same table as upstream's.
	for _, c := range []struct{ acap, hcap int }{
		{0, 0}, {0, 1}, {0, 2}, {0, 3}, {0, 4}, {0, 5}, {1, 0}, {2, 0}, {3, 0}, {4, 0},
		{5, 0}, {1, 1}, {2, 4}, {4, 4}, {4, 5}, {5, 4}, {40, 40},
	} {
		tb := newLTable(c.acap, c.hcap)
		if tb.Metatable != LNil {
			t.Fatalf("%v: metatable %v", c, tb.Metatable)
		}
		for i := 1; i <= 12; i++ {
			tb.RawSetInt(i, LNumber(i*10))
			tb.RawSetString(string(rune('a'+i-1)), LNumber(i))
			tb.RawSet(LBool(i%2 == 0), LNumber(i))
		}
		tb.RawSetString("c", LNil)
		for i := 1; i <= 12; i++ {
			if got := tb.RawGetInt(i); got != LNumber(i*10) {
				t.Errorf("%v: [%d] = %v", c, i, got)
			}
			want := LValue(LNumber(i))
			if i == 3 {
				want = LNil
			}
			if got := tb.RawGetString(string(rune('a' + i - 1))); got != want {
				t.Errorf("%v: [%q] = %v, want %v", c, string(rune('a'+i-1)), got, want)
			}
		}
		if got := tb.RawGet(LTrue); got != LNumber(12) {
			t.Errorf("%v: [true] = %v", c, got)
		}
		n := 0
		for k, _ := tb.Next(LNil); k != LNil; k, _ = tb.Next(k) {
			n++
		}
		if n != 12+11+2 {
			t.Errorf("%v: Next visits %d keys, want 25", c, n)
		}
	}
}

func TestSmallTableIsOneAllocation(t *testing.T) {
	var keep *LTable
	for _, c := range []struct {
		acap, hcap int
		fill       func(*LTable)
	}{
		{0, 2, func(tb *LTable) { tb.RawSetString("_sock", LTrue); tb.RawSetString("_subscribed", LFalse) }},
		{0, 4, func(tb *LTable) {
			tb.RawSetString("status", LTrue)
			tb.RawSetString("body", LTrue)
			tb.RawSetString("truncated", LFalse)
			tb.RawSetString("header", LTrue)
		}},
		{2, 0, func(tb *LTable) { tb.RawSetInt(1, LTrue); tb.RawSetInt(2, LFalse) }},
		{3, 3, func(tb *LTable) { tb.RawSetInt(1, LTrue); tb.RawSetString("x", LFalse) }},
	} {
		n := testing.AllocsPerRun(100, func() {
			tb := newLTable(c.acap, c.hcap)
			c.fill(tb)
			keep = tb
		})
		if n != 1 {
			t.Errorf("newLTable(%d, %d) and its elements: %v allocations, want 1", c.acap, c.hcap, n)
		}
	}
	_ = keep
}

func TestFieldsOfTablesWithoutMetatable(t *testing.T) {
	// Tables without a metatable are read and written without looking for __index
	// and __newindex; the errors and the metamethods of other tables are as before.
	L := NewState()
	defer L.Close()
	err := L.DoString(`
		local t = {}
		t.a = 1; t[2] = "two"; t[true] = 3
		assert(t.a == 1 and t[2] == "two" and t[true] == 3 and t.missing == nil and t[9] == nil)
		local ok, err = pcall(function() t[nil] = 1 end)
		assert(not ok and err:find("table index is nil"), err)
		ok, err = pcall(function() t[0/0] = 1 end)
		assert(not ok and err:find("table index is NaN"), err)
		local seen = {}
		local p = setmetatable({}, {__index = {inherited = "yes"}, __newindex = function(_, k, v) seen[k] = v end})
		assert(p.inherited == "yes" and p.missing == nil)
		p.x = 5; p[1] = 6
		assert(rawget(p, "x") == nil and seen.x == 5 and seen[1] == 6)
		setmetatable(t, {__index = function(_, k) return "meta " .. tostring(k) end})
		assert(t.a == 1 and t.other == "meta other")
	`)
	if err != nil {
		t.Fatal(err)
	}
}
