// Package memc is spindle's memc module, the interface of memc-nginx-module: a
// location runs one memcached command (get, set, add, replace, append, prepend,
// delete, incr, decr, touch, flush_all, stats, version) whose command, key, value,
// expiration time and flags are templates, and answers with memc's status mapping.
//
// Connections go through github.com/bradfitz/gomemcache, one client per server of
// the upstream, with the number of connections per server bounded by the upstream's
// keepalive (see Handle). Other modules (Lua) reach the same pools through Client.
package memc

import (
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/upstream"
)

// Conf is a location's memc configuration.
type Conf struct {
	loc     *httpcore.Location
	up      *upstream.Upstream
	passE   *httpcore.Expr
	cmd     *httpcore.Expr
	key     *httpcore.Expr
	value   *httpcore.Expr
	exptime *httpcore.Expr
	flags   *httpcore.Expr
	allowed []string
}

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf { return &Conf{} })

// Module is the memc module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "memc",
	Order: httpcore.OrderContent,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "memc_pass", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: setPass},
		{Name: "memc_cmd", Context: httpcore.CtxAll, Set: httpcore.SetTemplate(func(c *Conf) **httpcore.Expr { return &c.cmd })},
		{Name: "memc_key", Context: httpcore.CtxAll, Set: httpcore.SetTemplate(func(c *Conf) **httpcore.Expr { return &c.key })},
		{Name: "memc_value", Context: httpcore.CtxAll, Set: httpcore.SetTemplate(func(c *Conf) **httpcore.Expr { return &c.value })},
		{Name: "memc_exptime", Context: httpcore.CtxAll, Set: httpcore.SetTemplate(func(c *Conf) **httpcore.Expr { return &c.exptime })},
		{Name: "memc_flags", Context: httpcore.CtxAll, Set: httpcore.SetTemplate(func(c *Conf) **httpcore.Expr { return &c.flags })},
		{Name: "memc_cmds_allowed", Context: httpcore.CtxAll, Set: setAllowed},
	},
	Install:    install,
	InitWorker: initWorker,
	ExitWorker: exitWorker,
})

func init() {
	httpcore.RegisterVar("memc_flags", func(r *httpcore.Request) string {
		if st, ok := mod.Ctx(r).(*reqState); ok && st.got {
			return strconv.FormatUint(uint64(st.flags), 10)
		}
		return ""
	})
}

// reqState remembers the flags of the item a get returned, for $memc_flags.
type reqState struct {
	flags uint32
	got   bool
}

var commands = map[string]bool{
	"get": true, "set": true, "add": true, "replace": true, "append": true, "prepend": true,
	"delete": true, "incr": true, "decr": true, "touch": true, "flush_all": true, "stats": true, "version": true,
}

func setPass(c *httpcore.Cmd) error {
	mc := mod.Cmd(c)
	e, err := c.AttrExpr()
	if err != nil {
		return err
	}
	mc.loc, mc.up, mc.passE = c.Loc, nil, nil
	if !e.IsConst() {
		mc.passE = e
		return nil
	}
	s, err := conf.String(c.Attr())
	if err != nil {
		return err
	}
	mc.up, err = upstream.Resolve(c.Config(), upstream.TypeMemcached, s, c.Attr().Expr.Range())
	return err
}

func setAllowed(c *httpcore.Cmd) error {
	names, err := conf.Strings(c.Attr())
	if err != nil {
		return err
	}
	for _, n := range names {
		if !commands[n] {
			return conf.Errorf(c.Attr().Expr.Range(), "unknown memcached command %q", n)
		}
	}
	mod.Cmd(c).allowed = names
	return nil
}

func install(l *httpcore.Location) error {
	mc := mod.Of(l)
	if mc.up == nil && mc.passE == nil {
		return nil
	}
	if mc.loc != l && !(l.Context() == httpcore.CtxIf && mc.loc == l.Parent) {
		return nil
	}
	if mc.cmd != nil && mc.cmd.IsConst() {
		if s, _ := mc.cmd.String(nil); !commands[s] {
			return conf.Errorf(mc.cmd.Range, "unknown memcached command %q", s)
		}
	}
	return l.SetContent("memc", mc.handle)
}

// EscapeKey escapes a key as memc_pass locations do, for other users of the Go API
// (the Lua fast path) that must find the same items.
func EscapeKey(k string) string { return escapeKey(k) }

// escapeKey escapes what memcached keys may not hold (spaces, control characters)
// and "%", as memc does with ngx_escape_uri(NGX_ESCAPE_MEMCACHED).
func escapeKey(k string) string {
	need := false
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c == '%' || c == 0x7f {
			need = true
			break
		}
	}
	if !need {
		return k
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c == '%' || c == 0x7f {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func (mc *Conf) str(r *httpcore.Request, e *httpcore.Expr) (string, error) {
	if e == nil {
		return "", nil
	}
	return e.String(r)
}

func (mc *Conf) handle(r *httpcore.Request) httpcore.Action {
	u := mc.up
	if mc.passE != nil {
		name, err := mc.passE.String(r)
		if err == nil {
			u, err = upstream.ResolveRuntime(r.Config(), upstream.TypeMemcached, name)
		}
		if err != nil {
			r.Logf(httpcore.LogError, "memc_pass: %v", err)
			return r.Error(500)
		}
	}
	cmd, err := mc.str(r, mc.cmd)
	if err != nil {
		r.Logf(httpcore.LogError, "memc_cmd: %v", err)
		return r.Error(500)
	}
	if cmd == "" {
		// memc's defaults by HTTP method.
		switch r.Method() {
		case "GET", "HEAD":
			cmd = "get"
		case "POST":
			cmd = "add"
		case "PUT":
			cmd = "set"
		case "DELETE":
			cmd = "delete"
		default:
			return r.Error(405)
		}
	}
	if !commands[cmd] {
		r.Logf(httpcore.LogError, "unknown $memc_cmd %q", cmd)
		return r.Error(400)
	}
	if mc.allowed != nil {
		ok := false
		for _, a := range mc.allowed {
			ok = ok || a == cmd
		}
		if !ok {
			r.Logf(httpcore.LogError, "memcached command %q not allowed", cmd)
			return r.Error(403)
		}
	}
	key, err := mc.str(r, mc.key)
	if err != nil {
		r.Logf(httpcore.LogError, "memc_key: %v", err)
		return r.Error(500)
	}
	key = escapeKey(key)
	needsKey := cmd != "flush_all" && cmd != "stats" && cmd != "version"
	if needsKey && key == "" {
		r.Logf(httpcore.LogError, "the memcached key (memc_key) is empty")
		return r.Error(400)
	}
	if len(key) > 250 {
		r.Logf(httpcore.LogError, "the memcached key is longer than 250 bytes")
		return r.Error(400)
	}
	exptime, flags := int64(0), uint64(0)
	if mc.exptime != nil {
		s, err := mc.exptime.String(r)
		if err != nil || s != "" {
			if exptime, err = strconv.ParseInt(s, 10, 32); err != nil || exptime < 0 {
				r.Logf(httpcore.LogError, "invalid memcached exptime %q", s)
				return r.Error(400)
			}
		}
	}
	if mc.flags != nil {
		s, err := mc.flags.String(r)
		if err != nil || s != "" {
			if flags, err = strconv.ParseUint(s, 10, 32); err != nil {
				r.Logf(httpcore.LogError, "invalid memcached flags %q", s)
				return r.Error(400)
			}
		}
	}
	var value []byte
	switch cmd {
	case "set", "add", "replace", "append", "prepend", "incr", "decr":
		if mc.value != nil {
			s, err := mc.value.String(r)
			if err != nil {
				r.Logf(httpcore.LogError, "memc_value: %v", err)
				return r.Error(500)
			}
			value = []byte(s)
		} else if cmd == "incr" || cmd == "decr" {
			r.Logf(httpcore.LogError, "%s needs memc_value (the amount)", cmd)
			return r.Error(400)
		} else if value, err = r.Body(); err != nil {
			if err == httpcore.ErrBodyTooLarge {
				return r.Error(413)
			}
			return r.Error(400)
		}
	}
	h, err := stateOf(r.Config()).handle(u)
	if err != nil {
		return r.Error(502)
	}
	start := time.Now()
	status, body, peer, err := run(h, cmd, key, value, int32(exptime), uint32(flags), r)
	try := upstream.Try{Addr: u.Name, Connect: -1, Header: -1, Response: time.Since(start)}
	if peer != nil {
		try.Addr = peer.String()
	}
	if err != nil {
		status = 502
		if IsTimeout(err) {
			status = 504
			r.Logf(httpcore.LogError, "memcached timed out: %v", err)
		} else {
			r.Logf(httpcore.LogError, "memcached: %v", err)
		}
	}
	try.Status, try.Header = status, try.Response
	upstream.Record(r, try)
	if status >= 400 {
		return r.Error(status)
	}
	r.SetStatus(status)
	r.SetContentLength(int64(len(body)))
	r.Write(body)
	return httpcore.Finished
}

// run executes a memc command and maps the outcome to memc's status and body:
// STORED 201, NOT_STORED and EXISTS 200 with the reply as body, NOT_FOUND 404,
// errors of the server or of the connection 502 (504 for timeouts).
func run(h *Handle, cmd, key string, value []byte, exptime int32, flags uint32, r *httpcore.Request) (int, []byte, *upstream.Peer, error) {
	var p *upstream.Peer
	var err error
	item := &memcache.Item{Key: key, Value: value, Flags: flags, Expiration: exptime}
	stored := func(f func(*memcache.Client) error) (int, []byte, *upstream.Peer, error) {
		p, err = h.on(key, cmd == "set", f)
		switch err {
		case nil:
			return 201, []byte("STORED\r\n"), p, nil
		case memcache.ErrNotStored:
			return 200, []byte("NOT_STORED\r\n"), p, nil
		case memcache.ErrCASConflict:
			return 200, []byte("EXISTS\r\n"), p, nil
		case memcache.ErrCacheMiss:
			return 404, nil, p, nil
		}
		return 0, nil, p, err
	}
	switch cmd {
	case "get":
		var it *memcache.Item
		it, p, err = h.get(key)
		if err == memcache.ErrCacheMiss {
			return 404, nil, p, nil
		}
		if err != nil {
			return 0, nil, p, err
		}
		mod.SetCtx(r, &reqState{flags: it.Flags, got: true})
		return 200, it.Value, p, nil
	case "set":
		return stored(func(c *memcache.Client) error { return c.Set(item) })
	case "add":
		return stored(func(c *memcache.Client) error { return c.Add(item) })
	case "replace":
		return stored(func(c *memcache.Client) error { return c.Replace(item) })
	case "append":
		return stored(func(c *memcache.Client) error { return c.Append(item) })
	case "prepend":
		return stored(func(c *memcache.Client) error { return c.Prepend(item) })
	case "delete":
		p, err = h.on(key, false, func(c *memcache.Client) error { return c.Delete(key) })
		switch err {
		case nil:
			return 200, []byte("DELETED\r\n"), p, nil
		case memcache.ErrCacheMiss:
			return 404, nil, p, nil
		}
		return 0, nil, p, err
	case "touch":
		p, err = h.on(key, true, func(c *memcache.Client) error { return c.Touch(key, exptime) })
		switch err {
		case nil:
			return 200, []byte("TOUCHED\r\n"), p, nil
		case memcache.ErrCacheMiss:
			return 404, nil, p, nil
		}
		return 0, nil, p, err
	case "incr", "decr":
		delta, perr := strconv.ParseUint(string(value), 10, 64)
		if perr != nil {
			r.Logf(httpcore.LogError, "invalid %s amount %q", cmd, value)
			return 400, nil, nil, nil
		}
		var v uint64
		p, err = h.on(key, false, func(c *memcache.Client) error {
			var err error
			if cmd == "incr" {
				v, err = c.Increment(key, delta)
			} else {
				v, err = c.Decrement(key, delta)
			}
			return err
		})
		switch err {
		case nil:
			return 200, append(strconv.AppendUint(nil, v, 10), '\r', '\n'), p, nil
		case memcache.ErrCacheMiss:
			return 404, nil, p, nil
		}
		return 0, nil, p, err
	case "flush_all", "stats", "version":
		line := cmd
		if cmd == "flush_all" {
			line = flushLine(int(exptime))
		}
		tries := h.u.TriesKey(key)
		p = tries.Next()
		if p == nil {
			return 0, nil, nil, ErrNoServer
		}
		out, err := h.Admin(p, line)
		h.u.Release(p, err != nil && !strings.HasPrefix(err.Error(), "memcached: "))
		if err != nil {
			return 0, nil, p, err
		}
		return 200, []byte(out), p, nil
	}
	return 400, nil, nil, nil
}
