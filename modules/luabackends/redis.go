package luabackends

import (
	"context"
	"strings"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/lua"
	"github.com/spindle-server/spindle/modules/redis"
	glua "github.com/yuin/gopher-lua"
)

// spindle.redis(name) returns an object whose methods are Redis commands, as
// lua-resty-redis's: red:get(k), red:hget(h, f), any command name in lower case, and
// red:command(name, ...) for names that are not valid Lua identifiers. A single
// command goes through the upstream's auto-pipeliner, so the commands of all the
// worker's requests share round trips on few connections; several commands go as one
// pipeline on one pooled connection (init_pipeline/commit_pipeline, pipeline, and
// multi ... exec).
//
// An object is small (one allocation) and cheap to make per request; what is costly
// (the upstream's pools) is shared through the handle cache. An object holds the state
// lua-resty-redis keeps per connection (a pipeline being built, a transaction, a
// timeout), so, as with lua-resty-redis, it belongs to one request at a time.

// redisLib is a VM's spindle.redis.
type redisLib struct {
	ready    bool
	cfg      *httpcore.Config
	env      *glua.LTable
	null     glua.LValue
	handles  map[string]*redis.Handle
	meta     *glua.LTable // objects' metatable: __index = methods
	methods  *glua.LTable
	nMethods int // command methods made on demand
	argBuf   []byte
}

// redisObj is one object returned by spindle.redis. The userdata is embedded so that
// an object is a single allocation.
type redisObj struct {
	ud      glua.LUserData
	h       *redis.Handle
	name    string
	timeout time.Duration
	piping  bool    // between init_pipeline and commit_pipeline
	pipe    [][]any // the commands queued meanwhile
	inTx    bool    // between multi and exec (or discard) outside a pipeline
	tx      [][]any
}

// Kinds of commands that are not sent as they come.
const (
	cmdPlain uint8 = iota
	cmdMulti
	cmdExec
	cmdDiscard
	cmdHmset
)

// Argument checks some commands need per call.
const (
	checkNone   uint8 = iota
	checkClient       // client: CLIENT REPLY breaks a pooled connection
)

// command is a Redis command as a method.
type command struct {
	name  string
	arg   any // name, boxed once
	kind  uint8
	check uint8
	// never says why the command cannot go at all: it would change the state of a
	// pooled connection for its next users. (go-redis's auto-pipeliner sends such
	// commands, and blocking ones, on a pooled connection of their own rather than
	// on the shared one, but that does not undo what they do to it.)
	never string
}

const (
	whyPubSub = "needs a connection of its own (pub/sub, replication): use a cosocket (lua-resty-redis) for it"
	whyWatch  = "needs a connection of its own (WATCH): use a cosocket (lua-resty-redis) for it"
	whyState  = "would change the state of a pooled connection: the upstream's db, username and password settings choose them"
	whyReply  = "CLIENT REPLY would desynchronise a pooled connection"
)

func newCommand(name string) *command {
	c := &command{name: name, arg: name}
	switch strings.ToLower(name) {
	case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe", "monitor", "sync", "psync":
		c.never = whyPubSub
	case "watch", "unwatch":
		c.never = whyWatch
	case "select", "auth", "hello", "quit", "reset", "readonly", "readwrite":
		c.never = whyState
	case "client":
		c.check = checkClient
	case "multi":
		c.kind = cmdMulti
	case "exec":
		c.kind = cmdExec
	case "discard":
		c.kind = cmdDiscard
	case "hmset":
		c.kind = cmdHmset
	}
	return c
}

// maxMethods bounds the command methods a VM makes on demand (red:anything makes one).
const maxMethods = 512

func openRedis(L *glua.LState) glua.LValue {
	lib := &redisLib{env: L.G.Global, handles: map[string]*redis.Handle{}}
	lib.methods = L.NewTable()
	for name, f := range map[string]glua.LGFunction{
		"command":         lib.commandMethod,
		"pipeline":        lib.pipelineMethod,
		"init_pipeline":   lib.initPipeline,
		"commit_pipeline": lib.commitPipeline,
		"cancel_pipeline": lib.cancelPipeline,
		"set_timeout":     lib.setTimeout,
		"set_keepalive":   returnOne,
		"close":           returnOne,
		"add_commands":    returnNothing,
		"connect":         lib.connect,
		"array_to_hash":   arrayToHash,
	} {
		lib.methods.RawSetString(name, L.NewFunction(f))
	}
	// Command methods are made on first use, as lua-resty-redis makes them.
	mm := L.NewTable()
	mm.RawSetString("__index", L.NewFunction(lib.makeMethod))
	L.SetMetatable(lib.methods, mm)
	lib.meta = L.NewTable()
	lib.meta.RawSetString("__index", lib.methods)
	lib.meta.RawSetString("__metatable", glua.LString("spindle.redis"))
	lib.meta.RawSetString("__tostring", L.NewFunction(func(L *glua.LState) int {
		obj := lib.self(L)
		L.Push(glua.LString("spindle.redis(\"" + obj.name + "\")"))
		return 1
	}))
	return L.NewFunction(lib.new)
}

// new is spindle.redis(name): an object for the upstream called name, or for an
// address ("host:port", "unix:/path"), or nil and an error.
func (lib *redisLib) new(L *glua.LState) int {
	name := nameArg(L, "spindle.redis")
	if !lib.ready {
		lib.cfg, lib.null, lib.ready = lua.Config(L), lua.Null(L), true
	}
	h := lib.handles[name]
	if h == nil {
		if lib.cfg == nil {
			L.RaiseError("spindle.redis: not in a worker")
		}
		var err error
		if h, err = redis.Client(lib.cfg, name); err != nil {
			return returnErr(L, err.Error())
		}
		if len(lib.handles) < maxHandles {
			lib.handles[name] = h
		}
	}
	obj := &redisObj{h: h, name: name}
	obj.ud.Value, obj.ud.Env, obj.ud.Metatable = obj, lib.env, lib.meta
	L.Push(&obj.ud)
	return 1
}

// self checks that the method was called on an object (red:get, not red.get).
func (lib *redisLib) self(L *glua.LState) *redisObj {
	if ud, ok := L.Get(1).(*glua.LUserData); ok {
		if obj, ok := ud.Value.(*redisObj); ok {
			return obj
		}
	}
	L.RaiseError("spindle.redis: call methods with a colon (red:get(k), not red.get(k))")
	return nil
}

// makeMethod is the methods table's __index: red:anything sends ANYTHING.
func (lib *redisLib) makeMethod(L *glua.LState) int {
	name, ok := L.Get(2).(glua.LString)
	if !ok || len(name) == 0 {
		L.Push(glua.LNil)
		return 1
	}
	c := newCommand(string(name))
	fn := L.NewFunction(func(L *glua.LState) int { return lib.call(L, c, 2) })
	if lib.nMethods < maxMethods && len(name) <= 32 {
		lib.nMethods++
		lib.methods.RawSetString(string(name), fn)
	}
	L.Push(fn)
	return 1
}

// commandMethod is red:command(name, ...).
func (lib *redisLib) commandMethod(L *glua.LState) int {
	name, ok := L.Get(2).(glua.LString)
	if !ok || name == "" {
		argError(L, 1, "command", "command name expected")
	}
	return lib.call(L, newCommand(string(name)), 3)
}

// call runs command c with the arguments from index first on.
func (lib *redisLib) call(L *glua.LState, c *command, first int) int {
	obj := lib.self(L)
	args := lib.args(L, c, first)
	if c.kind == cmdPlain && c.check == checkNone && c.never == "" && !obj.piping && !obj.inTx {
		return lib.do(L, obj, c.name, args)
	}
	never(L, c, args)
	if obj.piping {
		obj.pipe = append(obj.pipe, args)
		return 0
	}
	if obj.inTx {
		switch c.kind {
		case cmdMulti:
			L.Push(glua.LFalse)
			L.Push(glua.LString("ERR MULTI calls can not be nested"))
			return 2
		case cmdDiscard:
			obj.inTx, obj.tx = false, nil
			L.Push(lvOK)
			return 1
		case cmdExec:
			cmds := append(obj.tx, args)
			obj.inTx, obj.tx = false, nil
			return lib.exec(L, obj, cmds, true)
		}
		obj.tx = append(obj.tx, args)
		L.Push(lvQd)
		return 1
	}
	switch c.kind {
	case cmdMulti:
		// MULTI ... EXEC outside a pipeline is gathered and sent as one pipeline at
		// EXEC: sent as they come, other requests' commands would land inside the
		// transaction on the shared connection.
		obj.inTx, obj.tx = true, [][]any{args}
		L.Push(lvOK)
		return 1
	case cmdExec, cmdDiscard:
		L.Push(glua.LFalse)
		L.Push(glua.LString("ERR " + strings.ToUpper(c.name) + " without MULTI"))
		return 2
	}
	return lib.do(L, obj, c.name, args)
}

// never raises the error of a command that cannot go through a pooled connection at
// all, alone or in a pipeline.
func never(L *glua.LState, c *command, args []any) {
	if c.never != "" {
		L.RaiseError("spindle.redis: %s %s", c.name, c.never)
	}
	if c.check == checkClient && len(args) > 1 {
		if s, ok := args[1].(string); ok && strings.EqualFold(s, "reply") {
			L.RaiseError("spindle.redis: %s", whyReply)
		}
	}
}

// args converts the call's arguments from index first on, after the command name,
// as lua-resty-redis does with tostring: strings, numbers and booleans. hmset takes
// a table of fields too, as lua-resty-redis's.
//
// The slice is not reused for the next call: the command that holds it belongs to
// go-redis's auto-pipeliner, whose batching code may still read a command's
// arguments on its own goroutines after the caller's wait has ended (and does when
// the caller stopped waiting at set_timeout's deadline).
func (lib *redisLib) args(L *glua.LState, c *command, first int) []any {
	top := L.GetTop()
	args := make([]any, 0, top-first+2)
	args = append(args, c.arg)
	for i := first; i <= top; i++ {
		if c.kind == cmdHmset && i == top && i == first+1 {
			if t, ok := L.Get(i).(*glua.LTable); ok {
				t.ForEach(func(k, v glua.LValue) {
					args = append(args, lib.arg(L, k, i, c.name), lib.arg(L, v, i, c.name))
				})
				continue
			}
		}
		args = append(args, lib.arg(L, L.Get(i), i, c.name))
	}
	return args
}

func (lib *redisLib) arg(L *glua.LState, v glua.LValue, i int, name string) any {
	switch x := v.(type) {
	case glua.LString:
		return string(x)
	case glua.LNumber:
		if f := float64(x); f == float64(int64(f)) && f > -1<<53 && f < 1<<53 {
			return int64(f) // one allocation fewer than its text
		}
		lib.argBuf = numberText(lib.argBuf[:0], x)
		return string(lib.argBuf)
	case glua.LBool:
		if x {
			return "true"
		}
		return "false"
	}
	L.RaiseError("bad argument #%d to '%s' (string, number or boolean expected, got %s)", i-1, name, v.Type().String())
	return nil
}

// do runs one command through the auto-pipeliner, the VM released meanwhile.
func (lib *redisLib) do(L *glua.LState, obj *redisObj, op string, args []any) int {
	var raw []byte
	var err error
	if obj.timeout > 0 {
		raw, err = obj.doTimeout(L, args)
	} else {
		lua.Blocking(L, "spindle.redis", func() { raw, err = obj.h.DoRaw(context.Background(), args...) })
	}
	if err != nil {
		logFailure(L, "spindle.redis", obj.name, op, err)
		return returnErr(L, errText(err, redis.IsTimeout))
	}
	v, isErr, msg, _, ok := lib.reply(L, string(raw), 0)
	if !ok {
		return returnErr(L, "bad reply")
	}
	if isErr {
		L.Push(glua.LFalse)
		L.Push(glua.LString(msg))
		return 2
	}
	L.Push(v)
	return 1
}

// doTimeout is a command bounded by the object's set_timeout. (Kept apart: the
// context costs allocations the common case does without.)
func (obj *redisObj) doTimeout(L *glua.LState, args []any) (raw []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), obj.timeout)
	defer cancel()
	lua.Blocking(L, "spindle.redis", func() { raw, err = obj.h.DoRaw(ctx, args...) })
	return raw, err
}

// exec runs several commands as one pipeline on one connection. It returns their
// replies as lua-resty-redis's commit_pipeline does (error replies as {false, err}),
// or with last only the last reply (EXEC's) as a single command's.
func (lib *redisLib) exec(L *glua.LState, obj *redisObj, cmds [][]any, last bool) int {
	var res *redis.Result
	var err error
	func() {
		ctx := context.Background()
		if obj.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, obj.timeout)
			defer cancel()
		}
		lua.Blocking(L, "spindle.redis", func() { res, err = obj.h.Exec(ctx, "", cmds) })
	}()
	if err != nil {
		logFailure(L, "spindle.redis", obj.name, "pipeline", err)
		return returnErr(L, errText(err, redis.IsTimeout))
	}
	s := string(res.Raw)
	var out *glua.LTable
	if !last {
		out = L.CreateTable(len(cmds), 0)
	}
	for i := range cmds {
		v, isErr, msg, rest, ok := lib.reply(L, s, 0)
		if !ok {
			return returnErr(L, "bad reply")
		}
		s = rest
		if last {
			if i < len(cmds)-1 {
				continue
			}
			if isErr {
				L.Push(glua.LFalse)
				L.Push(glua.LString(msg))
				return 2
			}
			L.Push(v)
			return 1
		}
		if isErr {
			v = errPair(L, msg)
		}
		out.RawSetInt(i+1, v)
	}
	L.Push(out)
	return 1
}

func errPair(L *glua.LState, msg string) *glua.LTable {
	t := L.CreateTable(2, 0)
	t.RawSetInt(1, glua.LFalse)
	t.RawSetInt(2, glua.LString(msg))
	return t
}

// maxDepth bounds the nesting of arrays in a reply.
const maxDepth = 64

// reply converts the RESP reply at the start of s to a Lua value, as lua-resty-redis
// does: bulk strings and statuses to strings, nil to ngx.null, integers to numbers,
// arrays to Lua arrays with error elements as {false, err}. An error reply gives
// isErr and its message instead. The strings share the memory of s (one copy of
// the raw reply for all of them).
func (lib *redisLib) reply(L *glua.LState, s string, depth int) (v glua.LValue, isErr bool, msg string, rest string, ok bool) {
	i := strings.IndexByte(s, '\n')
	if i < 2 || s[i-1] != '\r' {
		return nil, false, "", s, false
	}
	line, rest := s[1:i-1], s[i+1:]
	switch s[0] {
	case '+':
		switch line {
		case "OK":
			return lvOK, false, "", rest, true
		case "PONG":
			return lvPong, false, "", rest, true
		case "QUEUED":
			return lvQd, false, "", rest, true
		}
		return glua.LString(line), false, "", rest, true
	case '-':
		return nil, true, line, rest, true
	case ':':
		n, ok := atoi(line)
		if !ok {
			return nil, false, "", s, false
		}
		return glua.LNumber(n), false, "", rest, true
	case '_':
		return lib.null, false, "", rest, true
	case ',', '(', '#':
		// RESP3 double, big number, boolean: text, as RESP2 sends them.
		return glua.LString(line), false, "", rest, true
	case '$', '=', '!':
		n, ok := atoi(line)
		if !ok {
			return nil, false, "", s, false
		}
		if n < 0 {
			return lib.null, false, "", rest, true
		}
		if int64(len(rest)) < n+2 {
			return nil, false, "", s, false
		}
		str := rest[:n]
		rest = rest[n+2:]
		if s[0] == '!' {
			return nil, true, str, rest, true
		}
		return glua.LString(str), false, "", rest, true
	case '*', '~', '>', '%':
		n, ok := atoi(line)
		if !ok || depth >= maxDepth {
			return nil, false, "", s, false
		}
		if n < 0 {
			return lib.null, false, "", rest, true
		}
		if s[0] == '%' {
			n *= 2
		}
		if n > int64(len(rest)) {
			return nil, false, "", s, false
		}
		t := L.CreateTable(int(n), 0)
		for k := 1; k <= int(n); k++ {
			var e glua.LValue
			var eErr bool
			var eMsg string
			if e, eErr, eMsg, rest, ok = lib.reply(L, rest, depth+1); !ok {
				return nil, false, "", s, false
			}
			if eErr {
				e = errPair(L, eMsg)
			}
			t.RawSetInt(k, e)
		}
		return t, false, "", rest, true
	}
	return nil, false, "", s, false
}

// atoi parses a RESP length or integer without allocating.
func atoi(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	neg := s[0] == '-'
	if neg {
		s = s[1:]
		if s == "" {
			return 0, false
		}
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' || n > (1<<62)/10 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// The methods that are not commands.

func (lib *redisLib) initPipeline(L *glua.LState) int {
	obj := lib.self(L)
	if obj.inTx {
		L.RaiseError("spindle.redis: init_pipeline inside MULTI")
	}
	obj.piping = true
	obj.pipe = make([][]any, 0, L.OptInt(2, 4))
	return 0
}

func (lib *redisLib) cancelPipeline(L *glua.LState) int {
	obj := lib.self(L)
	obj.piping, obj.pipe = false, nil
	return 0
}

func (lib *redisLib) commitPipeline(L *glua.LState) int {
	obj := lib.self(L)
	if !obj.piping {
		return returnErr(L, "no pipeline")
	}
	cmds := obj.pipe
	obj.piping, obj.pipe = false, nil
	return lib.runPipeline(L, obj, cmds)
}

// pipelineMethod is red:pipeline({ {"get", "a"}, {"set", "b", 1} }).
func (lib *redisLib) pipelineMethod(L *glua.LState) int {
	obj := lib.self(L)
	t, ok := L.Get(2).(*glua.LTable)
	if !ok {
		argError(L, 1, "pipeline", "table of commands expected, got "+L.Get(2).Type().String())
	}
	n := t.Len()
	cmds := make([][]any, 0, n)
	for i := 1; i <= n; i++ {
		ct, ok := t.RawGetInt(i).(*glua.LTable)
		if !ok || ct.Len() == 0 {
			argError(L, 1, "pipeline", `commands expected as arrays: { {"get", "a"}, {"set", "b", 1} }`)
		}
		name, ok := ct.RawGetInt(1).(glua.LString)
		if !ok || name == "" {
			argError(L, 1, "pipeline", "command name expected as the first element of each command")
		}
		c := newCommand(string(name))
		m := ct.Len()
		args := make([]any, 1, m)
		args[0] = c.arg
		if c.kind == cmdHmset && m == 3 {
			if ft, ok := ct.RawGetInt(3).(*glua.LTable); ok {
				args = append(args, lib.arg(L, ct.RawGetInt(2), 2, c.name))
				ft.ForEach(func(k, v glua.LValue) {
					args = append(args, lib.arg(L, k, 3, c.name), lib.arg(L, v, 3, c.name))
				})
				cmds = append(cmds, args)
				continue
			}
		}
		for k := 2; k <= m; k++ {
			args = append(args, lib.arg(L, ct.RawGetInt(k), k, c.name))
		}
		never(L, c, args)
		cmds = append(cmds, args)
	}
	return lib.runPipeline(L, obj, cmds)
}

// runPipeline checks that a pipeline leaves its connection as it found it (every
// MULTI closed by EXEC or DISCARD) and runs it.
func (lib *redisLib) runPipeline(L *glua.LState, obj *redisObj, cmds [][]any) int {
	if len(cmds) == 0 {
		L.Push(L.CreateTable(0, 0))
		return 1
	}
	inMulti := false
	for _, args := range cmds {
		name, _ := args[0].(string)
		switch strings.ToLower(name) {
		case "multi":
			inMulti = true
		case "exec", "discard":
			inMulti = false
		}
	}
	if inMulti {
		L.RaiseError("spindle.redis: a pipeline with MULTI must end the transaction with EXEC or DISCARD")
	}
	return lib.exec(L, obj, cmds, false)
}

// setTimeout is red:set_timeout(ms): a bound on how long the object's calls wait,
// within the upstream's own timeouts (which still bound every command).
func (lib *redisLib) setTimeout(L *glua.LState) int {
	obj := lib.self(L)
	n, ok := L.Get(2).(glua.LNumber)
	if !ok || n < 0 {
		argError(L, 1, "set_timeout", "timeout in milliseconds expected")
	}
	ms := float64(n)
	obj.timeout = time.Duration(ms * float64(time.Millisecond))
	return 0
}

func (lib *redisLib) connect(L *glua.LState) int {
	L.RaiseError("spindle.redis: connect is not needed: the object uses the pools of its upstream")
	return 0
}

// arrayToHash is lua-resty-redis's red:array_to_hash(t).
func arrayToHash(L *glua.LState) int {
	t, ok := L.Get(2).(*glua.LTable)
	if !ok {
		argError(L, 1, "array_to_hash", "table expected, got "+L.Get(2).Type().String())
	}
	n := t.Len()
	h := L.CreateTable(0, n/2)
	for i := 1; i+1 <= n; i += 2 {
		if k := t.RawGetInt(i); k != glua.LNil {
			h.RawSet(k, t.RawGetInt(i+1))
		}
	}
	L.Push(h)
	return 1
}

func returnOne(L *glua.LState) int {
	L.Push(lvOne)
	return 1
}

func returnNothing(L *glua.LState) int { return 0 }
