package ngxlua

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/modules/redis"
)

// spindle.redis(name): the Lua fast path to the redis module's pools. The object, its
// pipelines and transactions, and the conversion of replies are Lua (prelude.lua);
// Go sends commands through the upstream's handle (modules/redis: the auto-pipeliner
// for one command, one pooled connection for a pipeline) with the VM unlocked.

// maxHandles bounds the engine's cache of handles by name: names computed per
// request must not make a worker keep a handle each.
const maxHandles = 256

// redisHandle is __sp.redis_handle(name): a handle number, or nil and an error.
func (e *engine) redisHandle(s *luajit.State) error {
	name := s.String(0)
	if id, ok := e.redisIDs[name]; ok {
		s.PushInt(id)
		return nil
	}
	h, err := redis.Client(e.cfg, name)
	if err != nil {
		return fail(s, err.Error())
	}
	e.redis = append(e.redis, redisConn{h: h, name: name})
	id := len(e.redis)
	if len(e.redisIDs) < maxHandles {
		e.redisIDs[name] = id
	}
	s.PushInt(id)
	return nil
}

type redisConn struct {
	h    *redis.Handle
	name string
}

// decodeCmds decodes the prelude's encoding of commands: for each, its argument
// count, then each argument as "<len>:<bytes>".
func decodeCmds(enc string) ([][]any, error) {
	var cmds [][]any
	next := func() (string, bool) {
		i := strings.IndexByte(enc, ':')
		if i < 0 {
			return "", false
		}
		n, err := strconv.Atoi(enc[:i])
		if err != nil || n < 0 || i+1+n > len(enc) {
			return "", false
		}
		v := enc[i+1 : i+1+n]
		enc = enc[i+1+n:]
		return v, true
	}
	for enc != "" {
		cnt, ok := next()
		if !ok {
			return nil, errors.New("bad command encoding")
		}
		n, _ := strconv.Atoi(cnt)
		args := make([]any, n)
		for i := range args {
			if args[i], ok = next(); !ok {
				return nil, errors.New("bad command encoding")
			}
		}
		cmds = append(cmds, args)
	}
	return cmds, nil
}

// redisExec is __sp.redis_exec(handle, timeout_ms, commands, single): the raw RESP
// replies of the commands, or nil and an error (logged).
func (e *engine) redisExec(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if !ru.phase.canYield() {
		// Raised by the prelude at the caller's line.
		s.PushNil()
		s.PushNil()
		s.PushString(disabled("spindle.redis", ru.phase).Error())
		return nil
	}
	id := s.Int(0)
	if id < 1 || id > len(e.redis) {
		return errors.New("spindle.redis: bad handle")
	}
	rc := e.redis[id-1]
	timeout := time.Duration(s.Number(1) * float64(time.Millisecond))
	cmds, err := decodeCmds(s.String(2))
	if err != nil {
		return err
	}
	single := s.Bool(3)
	ru.waitFor(s, func() []any {
		ctx := context.Background()
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		var raw []byte
		var err error
		op := "pipeline"
		if single {
			op, _ = cmds[0][0].(string)
			raw, err = rc.h.DoRaw(ctx, cmds[0]...)
		} else {
			var res *redis.Result
			if res, err = rc.h.Exec(ctx, "", cmds); err == nil {
				raw = res.Raw
			}
		}
		if err != nil {
			ru.logf("spindle.redis(%q) %s failed: %v", rc.name, op, err)
			return []any{nil, errText(err, redis.IsTimeout)}
		}
		return []any{raw}
	})
	return nil
}

// errText is ngx_lua's words for a backend error.
func errText(err error, isTimeout func(error) bool) string {
	switch {
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return "closed"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "i/o timeout"):
		return "timeout"
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case strings.Contains(msg, "connection reset"), strings.Contains(msg, "broken pipe"):
		return "closed"
	}
	return msg
}

func (e *engine) backendFuncs() map[string]luajit.Func {
	return map[string]luajit.Func{"redis_handle": e.redisHandle, "redis_exec": e.redisExec,
		"memc_handle": e.memcHandle, "memc_op": e.memcOp}
}
