package luajit

/*
#include "engine.h"
*/
import "C"

import (
	"unsafe"
)

// Type is a Lua value's type, as lua_type gives it.
type Type int

// Lua's types.
const (
	TypeNil           Type = C.LUA_TNIL
	TypeBoolean       Type = C.LUA_TBOOLEAN
	TypeLightUserdata Type = C.LUA_TLIGHTUSERDATA
	TypeNumber        Type = C.LUA_TNUMBER
	TypeString        Type = C.LUA_TSTRING
	TypeTable         Type = C.LUA_TTABLE
	TypeFunction      Type = C.LUA_TFUNCTION
	TypeUserdata      Type = C.LUA_TUSERDATA
	TypeThread        Type = C.LUA_TTHREAD
	TypeCdata         Type = 10 // LuaJIT's FFI data (lua_type's LUA_TCDATA, not in lua.h)
)

var typeNames = [...]string{"nil", "boolean", "userdata", "number", "string", "table", "function", "userdata", "thread", "proto", "cdata"}

// String is the type's name, as Lua's type() says it.
func (t Type) String() string {
	if t >= 0 && int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "no value"
}

// The values that came from Lua: a Func's arguments, or what a Resume or Call
// returned. Index i counts from 0. They are read in place: the strings point into
// Lua's memory and stay valid until the Func returns or the next entry into the VM.
// Tables, functions and full userdata cross as their type only.

// N is the number of values.
func (s *State) N() int { return int(s.c.nin) }

func (s *State) val(i int) *C.sp_val {
	if i < 0 || i >= int(s.c.nin) {
		return nil
	}
	return &s.c.in[i]
}

// Type is the type of value i (nil past the last one).
func (s *State) Type(i int) Type {
	if v := s.val(i); v != nil {
		return Type(v._type)
	}
	return TypeNil
}

// Number is value i as a number (0 unless it is one).
func (s *State) Number(i int) float64 {
	if v := s.val(i); v != nil && v._type == C.LUA_TNUMBER {
		return float64(v.n)
	}
	return 0
}

// Int is value i as an integer (truncated).
func (s *State) Int(i int) int { return int(s.Number(i)) }

// Bool is value i's truth in Lua: false for nil and false.
func (s *State) Bool(i int) bool {
	v := s.val(i)
	if v == nil {
		return false
	}
	switch v._type {
	case C.LUA_TNIL:
		return false
	case C.LUA_TBOOLEAN:
		return v.n != 0
	}
	return true
}

// Bytes is value i's bytes, in place (nil unless it is a string; Lua's numbers are
// converted by Lua's rules when they cross as arguments). Copy what must outlive
// the call.
func (s *State) Bytes(i int) []byte {
	v := s.val(i)
	if v == nil || v._type != C.LUA_TSTRING {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(v.s)), int(v.len))
}

// String is a copy of value i's string ("" unless it is one).
func (s *State) String(i int) string {
	return string(s.Bytes(i))
}

// Pointer is value i's light userdata (nil unless it is one).
func (s *State) Pointer(i int) unsafe.Pointer {
	if v := s.val(i); v != nil && v._type == C.LUA_TLIGHTUSERDATA {
		return unsafe.Pointer(v.s)
	}
	return nil
}

// The values that go to Lua: a Func's results, or the arguments of the next Resume
// or Call (65,536 slots at most, tables' contents included). Push
// copies strings into the VM's buffer (C memory, grown when needed), so nothing is
// allocated per value.

func (s *State) push() *C.sp_val {
	s.check()
	n := int(s.c.nout)
	if n >= int(s.c.outcap) {
		if n >= maxSlots || C.sp_growout(s.c) == 0 {
			panic("luajit: too many values pushed")
		}
	}
	s.c.nout++
	return (*C.sp_val)(unsafe.Add(unsafe.Pointer(s.c.out), uintptr(n)*unsafe.Sizeof(C.sp_val{})))
}

// maxSlots bounds the values pushed at once, tables' contents included.
const maxSlots = 1 << 16

// PushTable pushes a table made of the n key/value pairs pushed next: key, value,
// key, value... (a value may be a table itself; nil or NaN keys are skipped). It
// costs no Lua call: the trampoline or Resume builds the table.
func (s *State) PushTable(n int) {
	v := s.push()
	v._type = C.SP_TTABLE
	v.len = C.uint32_t(n)
}

// PushArray pushes a table made of the n values pushed next, at 1..n.
func (s *State) PushArray(n int) {
	v := s.push()
	v._type = C.SP_TARRAY
	v.len = C.uint32_t(n)
}

// PushNil pushes nil.
func (s *State) PushNil() { s.push()._type = C.LUA_TNIL }

// PushBool pushes a boolean.
func (s *State) PushBool(b bool) {
	v := s.push()
	v._type = C.LUA_TBOOLEAN
	v.n = 0
	if b {
		v.n = 1
	}
}

// PushNumber pushes a number.
func (s *State) PushNumber(f float64) {
	v := s.push()
	v._type = C.LUA_TNUMBER
	v.n = C.double(f)
}

// PushInt pushes an integer (a Lua number).
func (s *State) PushInt(n int) { s.PushNumber(float64(n)) }

// PushPointer pushes a light userdata: a handle Lua passes back, never
// dereferences. It must not point to Go memory.
func (s *State) PushPointer(p unsafe.Pointer) {
	v := s.push()
	v._type = C.LUA_TLIGHTUSERDATA
	v.s = (*C.char)(p)
}

// PushString pushes a string.
func (s *State) PushString(str string) {
	if len(str) > 0 {
		copy(unsafe.Slice((*byte)(s.pushString(len(str))), len(str)), str)
	} else {
		s.pushString(0)
	}
}

// PushBytes pushes b as a string.
func (s *State) PushBytes(b []byte) {
	if len(b) > 0 {
		copy(unsafe.Slice((*byte)(s.pushString(len(b))), len(b)), b)
	} else {
		s.pushString(0)
	}
}

// pushString pushes a string of n bytes and returns where its bytes go in the
// buffer: one ownership check and one slot computed, where reserve, a copy into a
// slice of the whole buffer and push took ~100 instructions per string (callgrind,
// LoopMulti's capture responses: 13 strings a request).
func (s *State) pushString(n int) unsafe.Pointer {
	s.check()
	c := s.c
	off := s.blen
	if need := off + n; need > int(c.bufcap) {
		if C.sp_grow(c, C.size_t(need)) == 0 {
			panic("luajit: out of memory for a string crossing to Lua")
		}
	}
	k := int(c.nout)
	if k >= int(c.outcap) {
		if k >= maxSlots || C.sp_growout(c) == 0 {
			panic("luajit: too many values pushed")
		}
	}
	c.nout = C.int(k + 1)
	s.blen = off + n
	v := (*C.sp_val)(unsafe.Add(unsafe.Pointer(c.out), uintptr(k)*unsafe.Sizeof(C.sp_val{})))
	v._type = C.LUA_TSTRING
	v.off = C.size_t(off)
	v.len = C.uint32_t(n)
	return unsafe.Add(unsafe.Pointer(c.buf), off)
}
