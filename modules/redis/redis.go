// Package redis is spindle's redis module, in the style of ngx_redis2: a location
// sends one or more Redis commands built from templates (or a raw query) to a redis
// upstream and answers with the replies, as RESP like redis2 or as plain values.
//
// Connections are per worker and bounded: each server of an upstream gets a go-redis
// client (github.com/redis/go-redis/v9) whose pool holds at most the upstream's
// keepalive connections, and single commands go through go-redis's auto-pipeliner,
// so the commands of all the requests a worker serves at once share round trips on
// few connections. Redis Cluster and Sentinel upstreams use go-redis's cluster and
// failover clients. Other modules (Lua) reach the same pools through Client.
package redis

import (
	"context"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/upstream"
)

// Conf is a location's redis configuration.
type Conf struct {
	loc     *httpcore.Location
	up      *upstream.Upstream // redis_pass without variables
	passE   *httpcore.Expr     // redis_pass with variables
	queries [][]*httpcore.Expr
	raw     *httpcore.Expr
	value   bool // redis_reply = "value"
	body    bool // a query uses the request body
}

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf { return &Conf{} })

// Module is the redis module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "redis",
	Order: httpcore.OrderContent,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "redis_pass", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: setPass},
		{Name: "redis_query", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: setQuery},
		{Name: "redis_raw_query", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: setRaw},
		{Name: "redis_reply", Context: httpcore.CtxAll, Set: setReply},
	},
	Install:    install,
	InitWorker: initWorker,
	ExitWorker: exitWorker,
})

// own makes the location the owner of the commands: nested locations and if blocks
// start from their parent's, and a location that sets its own replaces them.
func own(c *httpcore.Cmd) *Conf {
	rc := mod.Cmd(c)
	if rc.loc != c.Loc {
		rc.loc = c.Loc
		rc.queries, rc.raw, rc.body = nil, nil, false
	}
	return rc
}

func setPass(c *httpcore.Cmd) error {
	rc := own(c)
	e, err := c.AttrExpr()
	if err != nil {
		return err
	}
	rc.up, rc.passE = nil, nil
	if !e.IsConst() {
		rc.passE = e
		return nil
	}
	s, err := conf.String(c.Attr())
	if err != nil {
		return err
	}
	u, err := upstream.Resolve(c.Config(), upstream.TypeRedis, s, c.Attr().Expr.Range())
	if err != nil {
		return err
	}
	rc.up = u
	return nil
}

// setQuery parses redis_query: one command as a list of arguments, or a pipeline as a
// list of such lists. Each argument is a template.
func setQuery(c *httpcore.Cmd) error {
	rc := own(c)
	t, ok := c.Attr().Expr.(*hclsyntax.TupleConsExpr)
	if !ok || len(t.Exprs) == 0 {
		return conf.Errorf(c.Attr().Expr.Range(), "redis_query is a command [\"get\", \"${arg.key}\"] or a list of commands")
	}
	var cmds []*hclsyntax.TupleConsExpr
	if _, nested := t.Exprs[0].(*hclsyntax.TupleConsExpr); nested {
		for _, x := range t.Exprs {
			sub, ok := x.(*hclsyntax.TupleConsExpr)
			if !ok || len(sub.Exprs) == 0 {
				return conf.Errorf(x.Range(), "each command of a pipeline is a non-empty list of arguments")
			}
			cmds = append(cmds, sub)
		}
	} else {
		cmds = []*hclsyntax.TupleConsExpr{t}
	}
	rc.queries = nil
	for _, cmd := range cmds {
		var args []*httpcore.Expr
		for _, x := range cmd.Exprs {
			e, err := c.Expr(x)
			if err != nil {
				return err
			}
			args = append(args, e)
			rc.body = rc.body || usesBody(x)
		}
		rc.queries = append(rc.queries, args)
	}
	rc.raw = nil
	return nil
}

func usesBody(x hclsyntax.Expression) bool {
	for _, tr := range x.Variables() {
		if tr.RootName() == "request_body" {
			return true
		}
	}
	return false
}

func setRaw(c *httpcore.Cmd) error {
	rc := own(c)
	e, err := c.AttrExpr()
	if err != nil {
		return err
	}
	if e.IsConst() {
		s, err := conf.String(c.Attr())
		if err != nil {
			return err
		}
		if _, err := ParseQueries(s); err != nil {
			return conf.Errorf(c.Attr().Expr.Range(), "%v", err)
		}
	}
	rc.raw, rc.queries = e, nil
	rc.body = usesBody(c.Attr().Expr)
	return nil
}

func setReply(c *httpcore.Cmd) error {
	s, err := conf.String(c.Attr())
	if err != nil {
		return err
	}
	switch s {
	case "resp":
		mod.Cmd(c).value = false
	case "value":
		mod.Cmd(c).value = true
	default:
		return conf.Errorf(c.Attr().Expr.Range(), "redis_reply is \"resp\" or \"value\"")
	}
	return nil
}

func install(l *httpcore.Location) error {
	rc := mod.Of(l)
	if rc.up == nil && rc.passE == nil {
		return nil
	}
	if rc.loc != l && !(l.Context() == httpcore.CtxIf && rc.loc == l.Parent) {
		return nil
	}
	if len(rc.queries) == 0 && rc.raw == nil {
		return conf.Errorf(l.Range, "redis_pass needs redis_query or redis_raw_query")
	}
	return l.SetContent("redis", rc.handle)
}

func (rc *Conf) handle(r *httpcore.Request) httpcore.Action {
	u := rc.up
	if rc.passE != nil {
		name, err := rc.passE.String(r)
		if err == nil {
			u, err = upstream.ResolveRuntime(r.Config(), upstream.TypeRedis, name)
		}
		if err != nil {
			r.Logf(httpcore.LogError, "redis_pass: %v", err)
			return r.Error(500)
		}
	}
	if rc.body && r.HasBody() {
		if _, err := r.Body(); err != nil {
			if err == httpcore.ErrBodyTooLarge {
				return r.Error(413)
			}
			return r.Error(400)
		}
	}
	cmds, err := rc.commands(r)
	if err != nil {
		r.Logf(httpcore.LogError, "redis query: %v", err)
		return r.Error(500)
	}
	if len(cmds) == 0 {
		r.Logf(httpcore.LogError, "empty redis query")
		return r.Error(400)
	}
	h, err := stateOf(r.Config()).handle(u)
	if err != nil {
		r.Logf(httpcore.LogError, "redis: %v", err)
		return r.Error(502)
	}
	key := ""
	if u.HashKey != nil {
		if key, err = u.HashKey.String(r); err != nil {
			r.Logf(httpcore.LogError, "upstream hash key: %v", err)
		}
	}
	start := time.Now()
	res, err := h.Exec(context.Background(), key, cmds)
	try := upstream.Try{Addr: u.Name, Connect: -1, Header: -1, Response: time.Since(start)}
	if res != nil && res.Peer != nil {
		try.Addr = res.Peer.String()
	}
	if err != nil {
		st := 502
		if IsTimeout(err) {
			st = 504
			r.Logf(httpcore.LogError, "redis upstream timed out: %v", err)
		} else {
			r.Logf(httpcore.LogError, "redis upstream failed: %v", err)
		}
		try.Status = st
		upstream.Record(r, try)
		return r.Error(st)
	}
	try.Status, try.Header = 200, try.Response
	upstream.Record(r, try)
	if !rc.value {
		r.SetStatus(200)
		r.SetContentLength(int64(len(res.Raw)))
		r.Write(res.Raw)
		return httpcore.Finished
	}
	reps, err := res.Replies()
	if err != nil {
		r.Logf(httpcore.LogError, "redis: %v", err)
		return r.Error(502)
	}
	if len(reps) == 1 && reps[0].IsNil() {
		return r.Error(404)
	}
	var out []byte
	for i, rep := range reps {
		if rep.Kind == KindError {
			r.Logf(httpcore.LogError, "redis replied with an error to %q: %s", cmdName(cmds[i]), rep.Str)
			return r.Error(502)
		}
		if i > 0 {
			out = append(out, '\n')
		}
		out = rep.AppendText(out)
	}
	r.SetStatus(200)
	r.SetContentLength(int64(len(out)))
	r.Write(out)
	return httpcore.Finished
}

func cmdName(c []any) string {
	if len(c) == 0 {
		return ""
	}
	return strings.ToUpper(argString(c[0]))
}

// commands evaluates the location's query templates for r.
func (rc *Conf) commands(r *httpcore.Request) ([][]any, error) {
	if rc.raw != nil {
		s, err := rc.raw.String(r)
		if err != nil {
			return nil, err
		}
		qs, err := ParseQueries(s)
		if err != nil {
			return nil, err
		}
		out := make([][]any, len(qs))
		for i, q := range qs {
			args := make([]any, len(q))
			for j, a := range q {
				args[j] = a
			}
			out[i] = args
		}
		return out, nil
	}
	out := make([][]any, len(rc.queries))
	for i, q := range rc.queries {
		args := make([]any, len(q))
		for j, e := range q {
			s, err := e.String(r)
			if err != nil {
				return nil, err
			}
			args[j] = s
		}
		out[i] = args
	}
	return out, nil
}
