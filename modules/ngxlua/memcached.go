package ngxlua

import (
	"errors"
	"strconv"
	"strings"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/modules/memc"
)

// spindle.memcached(name): the fast path's object with lua-resty-memcached's
// methods over the memc module's pools. Arguments are checked in Lua
// (prelude.lua); each call is one memc_op with the VM unlocked.

type memcConn struct {
	h    *memc.Handle
	name string
}

// memcHandle is __sp.memc_handle(name): a handle number, or nil and an error.
func (e *engine) memcHandle(s *luajit.State) error {
	name := s.String(0)
	if id, ok := e.memcIDs[name]; ok {
		s.PushInt(id)
		return nil
	}
	h, err := memc.Client(e.cfg, name)
	if err != nil {
		return fail(s, err.Error())
	}
	e.memcs = append(e.memcs, memcConn{h: h, name: name})
	id := len(e.memcs)
	if len(e.memcIDs) < maxHandles {
		e.memcIDs[name] = id
	}
	s.PushInt(id)
	return nil
}

// failure turns an error of the memc handle into lua-resty-memcached's words: the
// server's answer, or for failures to reach it the cosocket's words (logged).
func (mc memcConn) failure(ru *run, op string, err error) string {
	switch {
	case errors.Is(err, memc.ErrNotStored):
		return "NOT_STORED"
	case errors.Is(err, memc.ErrCacheMiss):
		return "NOT_FOUND"
	case errors.Is(err, memc.ErrCASConflict):
		return "EXISTS"
	case errors.Is(err, memc.ErrMalformedKey):
		return "CLIENT_ERROR bad command line format"
	case errors.Is(err, memcache.ErrServerError):
		return "SERVER_ERROR"
	}
	clientErr := ""
	for e := err; e != nil; e = errors.Unwrap(e) {
		if m, ok := strings.CutPrefix(e.Error(), "memcache: client error: "); ok {
			clientErr = "CLIENT_ERROR " + m // the innermost: without the upstream's words
		}
	}
	if clientErr != "" {
		return clientErr
	}
	ru.logf("spindle.memcached(%q) %s failed: %v", mc.name, op, err)
	return errText(err, memc.IsTimeout)
}

// memcOp is __sp.memc_op(handle, op, key, value, a, b): a is exptime, delta or
// delay, b the flags. Results as lua-resty-memcached's methods return them; a
// third value with nil, nil is an error to raise at the caller.
func (e *engine) memcOp(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if !ru.phase.canYield() {
		s.PushNil()
		s.PushNil()
		s.PushString(disabled("spindle.memcached", ru.phase).Error())
		return nil
	}
	id := s.Int(0)
	if id < 1 || id > len(e.memcs) {
		return errors.New("spindle.memcached: bad handle")
	}
	mc := e.memcs[id-1]
	op, key, val := s.String(1), memc.EscapeKey(s.String(2)), s.String(3)
	a, b := int64(s.Number(4)), uint32(s.Number(5))
	ru.waitFor(s, func() []any {
		var err error
		switch op {
		case "get":
			it, err := mc.h.Get(key)
			if errors.Is(err, memc.ErrCacheMiss) {
				return []any{nil, nil, nil}
			}
			if err != nil {
				return []any{nil, nil, mc.failure(ru, op, err)}
			}
			return []any{it.Value, float64(it.Flags)}
		case "set", "add", "replace", "append", "prepend":
			it := &memcache.Item{Key: key, Value: []byte(val), Expiration: int32(a), Flags: b}
			switch op {
			case "set":
				err = mc.h.Set(it)
			case "add":
				err = mc.h.Add(it)
			case "replace":
				err = mc.h.Replace(it)
			case "append":
				err = mc.h.Append(it)
			default:
				err = mc.h.Prepend(it)
			}
		case "delete":
			err = mc.h.Delete(key)
		case "touch":
			err = mc.h.Touch(key, int32(a))
		case "flush_all":
			err = mc.h.FlushAll(int(a))
		case "incr", "decr":
			var n uint64
			if op == "incr" {
				n, err = mc.h.Increment(key, uint64(a))
			} else {
				n, err = mc.h.Decrement(key, uint64(a))
			}
			if err == nil {
				return []any{float64(n)}
			}
		case "stats", "version":
			line := op
			if op == "stats" && val != "" {
				line += " " + val
			}
			out, err := mc.h.Admin(nil, line)
			if err != nil {
				if m := err.Error(); strings.HasPrefix(m, "memcached: ") && strings.Contains(m, "ERROR") {
					return []any{nil, strings.TrimPrefix(m, "memcached: ")}
				}
				return []any{nil, mc.failure(ru, op, err)}
			}
			out = strings.TrimRight(out, "\r\n")
			if op == "version" {
				v, found := strings.CutPrefix(out, "VERSION ")
				if !found {
					return []any{nil, out}
				}
				return []any{v}
			}
			var lines []string
			for _, l := range strings.Split(out, "\r\n") {
				if l != "END" && l != "" {
					lines = append(lines, l)
				}
			}
			return []any{strings.Join(lines, "\n")}
		default:
			return []any{nil, "unknown operation " + strconv.Quote(op)}
		}
		if err != nil {
			return []any{nil, mc.failure(ru, op, err)}
		}
		return []any{1}
	})
	return nil
}
