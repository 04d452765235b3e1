package ngxlua

import (
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
)

func directives() []httpcore.Directive {
	var ds []httpcore.Directive
	code := func(name string, ctx httpcore.Context, set func(file bool) func(*httpcore.Cmd) error) {
		ds = append(ds,
			httpcore.Directive{Name: name, Context: ctx, Set: set(false)},
			httpcore.Directive{Name: name + "_file", Context: ctx, Set: set(true)})
	}
	code("rewrite_by_lua", httpcore.CtxAll, handlerCode("rewrite_by_lua", hRewrite))
	code("access_by_lua", httpcore.CtxAll, handlerCode("access_by_lua", hAccess))
	code("content_by_lua", httpcore.CtxLocation|httpcore.CtxIf, handlerCode("content_by_lua", hContent))
	code("header_filter_by_lua", httpcore.CtxAll, handlerCode("header_filter_by_lua", hHeaderFilter))
	code("body_filter_by_lua", httpcore.CtxAll, handlerCode("body_filter_by_lua", hBodyFilter))
	code("log_by_lua", httpcore.CtxAll, handlerCode("log_by_lua", hLog))
	code("init_by_lua", httpcore.CtxHTTP, initCode("init_by_lua", func(m *mainConf) **chunk { return &m.init }))
	code("init_worker_by_lua", httpcore.CtxHTTP, initCode("init_worker_by_lua", func(m *mainConf) **chunk { return &m.initWorker }))
	ctxSet := httpcore.CtxServer | httpcore.CtxLocation | httpcore.CtxIf
	ds = append(ds,
		httpcore.Directive{Name: "set_by_lua", Context: ctxSet, Block: true, Set: setByLua(false)},
		httpcore.Directive{Name: "set_by_lua_file", Context: ctxSet, Block: true, Set: setByLua(true)},
		httpcore.Directive{Name: "lua_package_path", Context: httpcore.CtxHTTP, Set: setPackagePath},
		httpcore.Directive{Name: "lua_code_cache", Context: httpcore.CtxAll, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.codeCache })},
		httpcore.Directive{Name: "lua_need_request_body", Context: httpcore.CtxAll, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.needBody })},
		httpcore.Directive{Name: "lua_max_run_time", Context: httpcore.CtxAll, Set: setMaxRunTime},
		httpcore.Directive{Name: "lua_socket_connect_timeout", Context: httpcore.CtxAll, Set: httpcore.SetDuration(func(c *Conf) *time.Duration { return &c.sock.connectTimeout })},
		httpcore.Directive{Name: "lua_socket_send_timeout", Context: httpcore.CtxAll, Set: httpcore.SetDuration(func(c *Conf) *time.Duration { return &c.sock.sendTimeout })},
		httpcore.Directive{Name: "lua_socket_read_timeout", Context: httpcore.CtxAll, Set: httpcore.SetDuration(func(c *Conf) *time.Duration { return &c.sock.readTimeout })},
		httpcore.Directive{Name: "lua_socket_keepalive_timeout", Context: httpcore.CtxAll, Set: httpcore.SetDuration(func(c *Conf) *time.Duration { return &c.sock.keepaliveTimeout })},
		httpcore.Directive{Name: "lua_socket_pool_size", Context: httpcore.CtxAll, Set: httpcore.SetCount(1, conf.NoMax, func(c *Conf) *int { return &c.sock.poolSize })},
		httpcore.Directive{Name: "lua_socket_buffer_size", Context: httpcore.CtxAll, Set: setBufferSize},
		httpcore.Directive{Name: "lua_socket_log_errors", Context: httpcore.CtxAll, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.sock.logErrors })},
		httpcore.Directive{Name: "lua_max_pending_timers", Context: httpcore.CtxHTTP, Set: httpcore.SetCount(1, conf.NoMax, func(c *Conf) *int { return &c.main.maxPending })},
		httpcore.Directive{Name: "lua_max_running_timers", Context: httpcore.CtxHTTP, Set: httpcore.SetCount(1, conf.NoMax, func(c *Conf) *int { return &c.main.maxRunning })},
		httpcore.Directive{Name: "lua_regex_cache_max_entries", Context: httpcore.CtxHTTP, Set: httpcore.SetCount(0, conf.NoMax, func(c *Conf) *int { return &c.main.regexCacheMax })},
		httpcore.Directive{Name: "lua_shared_dict", Context: httpcore.CtxHTTP, Set: func(c *httpcore.Cmd) error {
			return c.Errorf("lua_shared_dict: ngx.shared dictionaries are not implemented yet")
		}},
	)
	return ds
}

// handlerCode sets a phase handler's code: `content_by_lua = <<-LUA ... LUA` or
// `content_by_lua_file = "lua/content.lua"`.
func handlerCode(name string, h int) func(file bool) func(*httpcore.Cmd) error {
	return func(file bool) func(*httpcore.Cmd) error {
		return func(c *httpcore.Cmd) error {
			lc := mod.Cmd(c)
			if lc.chunks[h] != nil && lc.owner(h) == c.Loc {
				return c.Errorf("%s is duplicate: %s and %s_file cannot both be set", c.Name(), name, name)
			}
			ch, err := compileCmd(c, name, file)
			if err != nil {
				return err
			}
			lc.chunks[h] = ch
			lc.setOwner(h, c.Loc)
			if h == hContent {
				lc.contentLoc = c.Loc
			}
			return nil
		}
	}
}

func compileCmd(c *httpcore.Cmd, name string, file bool) (*chunk, error) {
	var ch *chunk
	var err error
	if file {
		ch, err = fileChunk(c, name)
	} else {
		ch, err = inlineChunk(c, name)
	}
	if err != nil {
		return nil, err
	}
	mc := mod.Cmd(c).main
	mc.used = true
	mc.chunks = append(mc.chunks, ch)
	return ch, nil
}

func initCode(name string, slot func(*mainConf) **chunk) func(file bool) func(*httpcore.Cmd) error {
	return func(file bool) func(*httpcore.Cmd) error {
		return func(c *httpcore.Cmd) error {
			mc := mod.Cmd(c).main
			if *slot(mc) != nil {
				return c.Errorf("%s is duplicate: %s and %s_file cannot both be set", c.Name(), name, name)
			}
			ch, err := compileCmd(c, name, file)
			if err != nil {
				return err
			}
			if ch.fileExpr != nil {
				return c.Errorf("%s_file runs without a request: its path cannot use variables", name)
			}
			*slot(mc) = ch
			return nil
		}
	}
}

// owner tracks which context set each handler, so that a nested context may replace
// an inherited handler but not set one twice.
func (c *Conf) owner(h int) *httpcore.Location {
	if c.owners == nil {
		return nil
	}
	return c.owners[h]
}

func (c *Conf) setOwner(h int, l *httpcore.Location) {
	// The array is copied, not shared, with the configuration of nested contexts.
	var o [numHandlers]*httpcore.Location
	if c.owners != nil {
		o = *c.owners
	}
	o[h] = l
	c.owners = &o
}

// setOp is set_by_lua: a rewrite-phase operation, run in source order with set, rewrite
// and if, that stores its code's result in a variable.
type setOp struct {
	ch   *chunk
	args []*httpcore.Expr
	idx  int
	name string
	conf *Conf
}

func (op *setOp) Run(r *httpcore.Request) httpcore.Action { return runSet(r, op) }

// setByLua decodes
//
//	set_by_lua "sum" {
//	  code = "return tonumber(ngx.arg[1]) + tonumber(ngx.arg[2])"
//	  args = [arg.a, arg.b]
//	}
//	set_by_lua_file "sum" { file = "lua/sum.lua", args = [arg.a, arg.b] }
func setByLua(file bool) func(*httpcore.Cmd) error {
	return func(c *httpcore.Cmd) error {
		blk := c.Block()
		name := c.Name()
		if len(blk.Labels) != 1 {
			return c.Errorf("%s needs the variable to set as its label: %s \"var\" { ... }", name, name)
		}
		items, err := c.Items(blk.Body)
		if err != nil {
			return err
		}
		key := "code"
		if file {
			key = "file"
		}
		op := &setOp{name: blk.Labels[0], conf: mod.Cmd(c)}
		for _, it := range items {
			if it.Attr == nil {
				return conf.Errorf(it.Range(), "unexpected block %q in %s", it.Name, name)
			}
			switch it.Name {
			case key:
				sub := *c
				sub.Item = it
				if op.ch, err = compileCmd(&sub, "set_by_lua", file); err != nil {
					return err
				}
			case "args":
				if op.args, err = exprList(c, it); err != nil {
					return err
				}
			default:
				return conf.Errorf(it.Range(), "unknown field %q in %s (expected %s and args)", it.Name, name, key)
			}
		}
		if op.ch == nil {
			return c.Errorf("%s needs %s = ...", name, key)
		}
		idx, err := c.DeclareVar(op.name, blk.LabelRanges[0])
		if err != nil {
			return err
		}
		op.idx = idx
		c.AddRewriteOp(op)
		return nil
	}
}

// exprList compiles `args = [a, "${b}", ...]` (or a single value) as request
// expressions.
func exprList(c *httpcore.Cmd, it conf.Item) ([]*httpcore.Expr, error) {
	exprs := []hclsyntax.Expression{it.Attr.Expr}
	if t, ok := it.Attr.Expr.(*hclsyntax.TupleConsExpr); ok {
		exprs = t.Exprs
	}
	out := make([]*httpcore.Expr, 0, len(exprs))
	for _, e := range exprs {
		x, err := c.Expr(e)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

func setPackagePath(c *httpcore.Cmd) error {
	s, err := conf.String(c.Attr())
	if err != nil {
		return err
	}
	mc := mod.Cmd(c).main
	mc.path, mc.pathSet = s, true
	return nil
}

// packagePath is package.path: lua_package_path with $prefix replaced and ";;"
// standing for the default, which is the prefix's lua/ directory, then LuaJIT's own
// default without "./" (luajit.Options: its jit/ modules, jit.v, jit.p, jit.dump,
// which OpenResty finds there too, then /usr/local/share/lua/5.1 and
// /usr/share/lua/5.1, where Debian installs lua-nginx-redis and friends). The
// trailing ";;" is for package luajit to expand.
func (m *mainConf) packagePath(prefix string) string {
	def := prefix + "/lua/?.lua;" + prefix + "/lua/?/init.lua;;"
	if !m.pathSet {
		return def
	}
	p := strings.ReplaceAll(m.path, "$prefix", prefix)
	return strings.ReplaceAll(p, ";;", ";"+def)
}

func setBufferSize(c *httpcore.Cmd) error {
	n, err := conf.Size(c.Attr())
	if err != nil {
		return err
	}
	if n < 1 || n > 1<<30 {
		return conf.Errorf(c.Attr().Expr.Range(), "lua_socket_buffer_size must be between 1 and 1g")
	}
	mod.Cmd(c).sock.bufferSize = int(n)
	return nil
}

// lua_max_run_time = "5s" | "off"
func setMaxRunTime(c *httpcore.Cmd) error {
	if s, err := conf.String(c.Attr()); err == nil && (s == "off" || s == "0") {
		mod.Cmd(c).maxRunTime = 0
		return nil
	}
	return httpcore.SetDuration(func(c *Conf) *time.Duration { return &c.maxRunTime })(c)
}
