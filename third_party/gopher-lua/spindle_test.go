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
