package lua

import "sort"

// spindle: upstream's 32 and 32 gave every table that grows from empty a 512-byte array
// or a map of about 2 KB at its first element; a request's tables have a few. The
// array now starts small and grows as Go's slices do; string keys start in the
// table's small part (maxSmall).
const defaultArrayCap = 4

type lValueArraySorter struct {
	L      *LState
	Fn     *LFunction
	Values []LValue
}

func (lv lValueArraySorter) Len() int {
	return len(lv.Values)
}

func (lv lValueArraySorter) Swap(i, j int) {
	lv.Values[i], lv.Values[j] = lv.Values[j], lv.Values[i]
}

func (lv lValueArraySorter) Less(i, j int) bool {
	if lv.Fn != nil {
		lv.L.Push(lv.Fn)
		lv.L.Push(lv.Values[i])
		lv.L.Push(lv.Values[j])
		lv.L.Call(2, 1)
		return LVAsBool(lv.L.reg.Pop())
	}
	return lessThan(lv.L, lv.Values[i], lv.Values[j])
}

func newLTable(acap int, hcap int) *LTable {
	if acap < 0 {
		acap = 0
	}
	if hcap < 0 {
		hcap = 0
	}
	// spindle: a table made for a few elements gets them in the same allocation.
	var tb *LTable
	switch {
	case acap == 0 && hcap == 0:
		tb = &LTable{}
	case acap == 0 && hcap <= 2:
		x := &struct {
			t     LTable
			small [2]strField
		}{}
		tb = &x.t
		tb.small = x.small[:0]
	case acap == 0 && hcap <= 4:
		x := &struct {
			t     LTable
			small [4]strField
		}{}
		tb = &x.t
		tb.small = x.small[:0]
	case hcap == 0 && acap <= 2:
		x := &struct {
			t     LTable
			array [2]LValue
		}{}
		tb = &x.t
		tb.array = x.array[:0]
	case hcap == 0 && acap <= 4:
		x := &struct {
			t     LTable
			array [4]LValue
		}{}
		tb = &x.t
		tb.array = x.array[:0]
	case acap <= 4 && hcap <= 4:
		x := &struct {
			t     LTable
			array [4]LValue
			small [4]strField
		}{}
		tb = &x.t
		tb.array, tb.small = x.array[:0], x.small[:0]
	default:
		tb = &LTable{}
		if acap != 0 {
			tb.array = make([]LValue, 0, acap)
		}
		if hcap > maxSmall {
			tb.strdict = make(map[string]LValue, hcap)
		} else if hcap != 0 {
			tb.small = make([]strField, 0, hcap)
		}
	}
	tb.Metatable = LNil
	return tb
}

// maxSmall is the number of string keys a table holds without a map.
//
// spindle: upstream gives every table with a string key a Go map. Most tables a
// request handler makes are objects and argument lists with a few fields (lua-resty-
// redis's client has two), for which the map costs about 300 bytes and a hash per
// access; up to maxSmall keys are compared in order instead, which is cheaper for
// short keys, and then move to the map for good.
const maxSmall = 8

// smallIndex is the position of key in the small part, or -1.
func (tb *LTable) smallIndex(key string) int {
	for i := range tb.small {
		if tb.small[i].key == key {
			return i
		}
	}
	return -1
}

// getStr is the value of a string key, LNil if it has none.
func (tb *LTable) getStr(key string) LValue {
	if tb.strdict != nil {
		if v, ok := tb.strdict[key]; ok {
			return v
		}
		return LNil
	}
	for i := range tb.small {
		if tb.small[i].key == key {
			return tb.small[i].value
		}
	}
	return LNil
}

// strLen is the number of string keys the table holds.
func (tb *LTable) strLen() int {
	if tb.strdict != nil {
		return len(tb.strdict)
	}
	return len(tb.small)
}

// Len returns length of this LTable without using __len.
func (tb *LTable) Len() int {
	if tb.array == nil {
		return 0
	}
	var prev LValue = LNil
	for i := len(tb.array) - 1; i >= 0; i-- {
		v := tb.array[i]
		if prev == LNil && v != LNil {
			return i + 1
		}
		prev = v
	}
	return 0
}

// Append appends a given LValue to this LTable.
func (tb *LTable) Append(value LValue) {
	if value == LNil {
		return
	}
	if tb.array == nil {
		tb.array = make([]LValue, 0, defaultArrayCap)
	}
	if len(tb.array) == 0 || tb.array[len(tb.array)-1] != LNil {
		tb.array = append(tb.array, value)
	} else {
		i := len(tb.array) - 2
		for ; i >= 0; i-- {
			if tb.array[i] != LNil {
				break
			}
		}
		tb.array[i+1] = value
	}
}

// Insert inserts a given LValue at position `i` in this table.
func (tb *LTable) Insert(i int, value LValue) {
	if tb.array == nil {
		tb.array = make([]LValue, 0, defaultArrayCap)
	}
	if i > len(tb.array) {
		tb.RawSetInt(i, value)
		return
	}
	if i <= 0 {
		tb.RawSet(LNumber(i), value)
		return
	}
	i -= 1
	tb.array = append(tb.array, LNil)
	copy(tb.array[i+1:], tb.array[i:])
	tb.array[i] = value
}

// MaxN returns a maximum number key that nil value does not exist before it.
func (tb *LTable) MaxN() int {
	if tb.array == nil {
		return 0
	}
	for i := len(tb.array) - 1; i >= 0; i-- {
		if tb.array[i] != LNil {
			return i + 1
		}
	}
	return 0
}

// Remove removes from this table the element at a given position.
func (tb *LTable) Remove(pos int) LValue {
	if tb.array == nil {
		return LNil
	}
	larray := len(tb.array)
	if larray == 0 {
		return LNil
	}
	i := pos - 1
	oldval := LNil
	switch {
	case i >= larray:
		// nothing to do
	case i == larray-1 || i < 0:
		oldval = tb.array[larray-1]
		tb.array = tb.array[:larray-1]
	default:
		oldval = tb.array[i]
		copy(tb.array[i:], tb.array[i+1:])
		tb.array[larray-1] = nil
		tb.array = tb.array[:larray-1]
	}
	return oldval
}

// RawSet sets a given LValue to a given index without the __newindex metamethod.
// It is recommended to use `RawSetString` or `RawSetInt` for performance
// if you already know the given LValue is a string or number.
func (tb *LTable) RawSet(key LValue, value LValue) {
	switch v := key.(type) {
	case LNumber:
		if isArrayKey(v) {
			if tb.array == nil {
				tb.array = make([]LValue, 0, defaultArrayCap)
			}
			index := int(v) - 1
			alen := len(tb.array)
			switch {
			case index == alen:
				tb.array = append(tb.array, value)
			case index > alen:
				for i := 0; i < (index - alen); i++ {
					tb.array = append(tb.array, LNil)
				}
				tb.array = append(tb.array, value)
			case index < alen:
				tb.array[index] = value
			}
			return
		}
	case LString:
		tb.RawSetString(string(v), value)
		return
	}

	tb.RawSetH(key, value)
}

// RawSetInt sets a given LValue at a position `key` without the __newindex metamethod.
func (tb *LTable) RawSetInt(key int, value LValue) {
	if key < 1 || key >= MaxArrayIndex {
		tb.RawSetH(LNumber(key), value)
		return
	}
	if tb.array == nil {
		tb.array = make([]LValue, 0, defaultArrayCap)
	}
	index := key - 1
	alen := len(tb.array)
	switch {
	case index == alen:
		tb.array = append(tb.array, value)
	case index > alen:
		for i := 0; i < (index - alen); i++ {
			tb.array = append(tb.array, LNil)
		}
		tb.array = append(tb.array, value)
	case index < alen:
		tb.array[index] = value
	}
}

// RawSetString sets a given LValue to a given string index without the __newindex metamethod.
func (tb *LTable) RawSetString(key string, value LValue) {
	if tb.strdict == nil {
		i := tb.smallIndex(key)
		switch {
		case i >= 0 && isNil(value):
			last := len(tb.small) - 1
			tb.small[i] = tb.small[last]
			tb.small[last] = strField{}
			tb.small = tb.small[:last]
			return
		case i >= 0:
			tb.small[i].value = value
			return
		case isNil(value):
			return
		case len(tb.small) < maxSmall:
			tb.small = append(tb.small, strField{key, value})
		default:
			tb.strdict = make(map[string]LValue, 2*maxSmall)
			for _, f := range tb.small {
				tb.strdict[f.key] = f.value
			}
			tb.small = nil
			tb.strdict[key] = value
		}
		if tb.ext != nil { // (boxing the key costs an allocation)
			tb.ordered(LString(key))
		}
		return
	}

	if isNil(value) {
		// TODO tb.keys and tb.k2i should also be removed
		delete(tb.strdict, key)
	} else {
		tb.strdict[key] = value
		if tb.ext != nil {
			tb.ordered(LString(key))
		}
	}
}

// ordered adds a new key to the iteration order, if the table has one.
//
// spindle: no iteration order is kept until the first Next (see orderKeys).
func (tb *LTable) ordered(key LValue) {
	x := tb.ext
	if x == nil || x.keys == nil {
		return
	}
	if _, ok := x.k2i[key]; !ok {
		x.k2i[key] = len(x.keys)
		x.keys = append(x.keys, key)
	}
}

// extra returns the table's rarely used part, making it on first use.
func (tb *LTable) extra() *tableExt {
	if tb.ext == nil {
		tb.ext = &tableExt{}
	}
	return tb.ext
}

// dict returns the map of keys other than strings and array indexes, nil if none.
func (tb *LTable) dict() map[LValue]LValue {
	if tb.ext == nil {
		return nil
	}
	return tb.ext.dict
}

// RawSetH sets a given LValue to a given index without the __newindex metamethod.
func (tb *LTable) RawSetH(key LValue, value LValue) {
	if s, ok := key.(LString); ok {
		tb.RawSetString(string(s), value)
		return
	}
	x := tb.extra()
	if x.dict == nil {
		x.dict = make(map[LValue]LValue, tb.strLen())
	}

	if isNil(value) {
		// TODO tb.keys and tb.k2i should also be removed
		delete(x.dict, key)
	} else {
		x.dict[key] = value
		tb.ordered(key)
	}
}

// RawGet returns an LValue associated with a given key without __index metamethod.
func (tb *LTable) RawGet(key LValue) LValue {
	switch v := key.(type) {
	case LNumber:
		if isArrayKey(v) {
			if tb.array == nil {
				return LNil
			}
			index := int(v) - 1
			if index >= len(tb.array) {
				return LNil
			}
			return tb.array[index]
		}
	case LString:
		return tb.getStr(string(v))
	}
	if v, ok := tb.dict()[key]; ok {
		return v
	}
	return LNil
}

// RawGetInt returns an LValue at position `key` without __index metamethod.
func (tb *LTable) RawGetInt(key int) LValue {
	if tb.array == nil {
		return LNil
	}
	index := int(key) - 1
	if index >= len(tb.array) || index < 0 {
		return LNil
	}
	return tb.array[index]
}

// RawGet returns an LValue associated with a given key without __index metamethod.
func (tb *LTable) RawGetH(key LValue) LValue {
	if s, sok := key.(LString); sok {
		return tb.getStr(string(s))
	}
	if v, ok := tb.dict()[key]; ok {
		return v
	}
	return LNil
}

// RawGetString returns an LValue associated with a given key without __index metamethod.
func (tb *LTable) RawGetString(key string) LValue {
	return tb.getStr(key)
}

// ForEach iterates over this table of elements, yielding each in turn to a given function.
func (tb *LTable) ForEach(cb func(LValue, LValue)) {
	if tb.array != nil {
		for i, v := range tb.array {
			if v != LNil {
				cb(LNumber(i+1), v)
			}
		}
	}
	if tb.strdict != nil {
		for k, v := range tb.strdict {
			if v != LNil {
				cb(LString(k), v)
			}
		}
	}
	if len(tb.small) > 0 {
		// cb may change the table: what it sees is the fields as they were.
		var small [maxSmall]strField
		n := copy(small[:], tb.small)
		for _, f := range small[:n] {
			cb(LString(f.key), f.value)
		}
	}
	for k, v := range tb.dict() {
		if v != LNil {
			cb(k, v)
		}
	}
}

// This function is equivalent to lua_next ( http://www.lua.org/manual/5.1/manual.html#lua_next ).
func (tb *LTable) Next(key LValue) (LValue, LValue) {
	if (tb.ext == nil || tb.ext.keys == nil) && (tb.strLen() != 0 || len(tb.dict()) != 0) {
		tb.orderKeys()
	}
	var keys []LValue
	var k2i map[LValue]int
	if x := tb.ext; x != nil {
		keys, k2i = x.keys, x.k2i
	}
	init := false
	if key == LNil {
		key = LNumber(0)
		init = true
	}

	if init || key != LNumber(0) {
		if kv, ok := key.(LNumber); ok && isInteger(kv) && int(kv) >= 0 && kv < LNumber(MaxArrayIndex) {
			index := int(kv)
			if tb.array != nil {
				for ; index < len(tb.array); index++ {
					if v := tb.array[index]; v != LNil {
						return LNumber(index + 1), v
					}
				}
			}
			if tb.array == nil || index == len(tb.array) {
				if len(tb.dict()) == 0 && tb.strLen() == 0 {
					return LNil, LNil
				}
				key = keys[0]
				if v := tb.RawGetH(key); v != LNil {
					return key, v
				}
			}
		}
	}

	for i := k2i[key] + 1; i < len(keys); i++ {
		key := keys[i]
		if v := tb.RawGetH(key); v != LNil {
			return key, v
		}
	}
	return LNil, LNil
}

// orderKeys builds the order in which Next visits the hash part.
//
// spindle: upstream keeps that order (keys and k2i) from a table's first hash key on,
// which costs every table with string keys a slice and a second map, and a request
// handler creates many tables that are never iterated (see upstream issue #249). The
// order is built at the first Next instead and kept up to date from then on, as
// before. Strings come first, sorted, then numbers in ascending order, so that pairs()
// visits a table's keys in the same order in every run; the other keys follow in map
// order.
func (tb *LTable) orderKeys() {
	dict := tb.dict()
	n := tb.strLen() + len(dict)
	keys := make([]LValue, 0, n)
	k2i := make(map[LValue]int, n)
	strs := make([]string, 0, tb.strLen())
	for k, v := range tb.strdict {
		if v != LNil {
			strs = append(strs, k)
		}
	}
	for _, f := range tb.small {
		strs = append(strs, f.key)
	}
	sort.Strings(strs)
	for _, k := range strs {
		keys = append(keys, LString(k))
	}
	var nums []float64
	for k, v := range dict {
		if v == LNil {
			continue
		}
		if num, ok := k.(LNumber); ok {
			nums = append(nums, float64(num))
		}
	}
	sort.Float64s(nums)
	for _, num := range nums {
		keys = append(keys, LNumber(num))
	}
	for k, v := range dict {
		if _, ok := k.(LNumber); !ok && v != LNil {
			keys = append(keys, k)
		}
	}
	for i, k := range keys {
		k2i[k] = i
	}
	x := tb.extra()
	x.keys, x.k2i = keys, k2i
}
