// Package echo is the echo-nginx-module for spindle: a content handler that prints text,
// sleeps, flushes and issues subrequests (one after another or concurrently), with its
// directives run in the order they are written.
package echo

import (
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// Conf is a location's echo program.
type Conf struct {
	cmds []cmd
	loc  *httpcore.Location // the location the program was written in
}

type cmdKind uint8

const (
	cmdEcho cmdKind = iota
	cmdSleep
	cmdFlush
	cmdLocation
	cmdLocationAsync
	cmdDuplicate
	cmdStatus
	cmdReadBody
)

type cmd struct {
	kind    cmdKind
	texts   []*httpcore.Expr // echo lines, or subrequest URIs
	newline bool
	// lits is an echo's lines with their newlines when every one is a constant,
	// written as they are: building each line in a buffer cost an allocation per
	// request (BenchmarkLoopMulti's echo locations).
	lits  []string
	dur   time.Duration
	count int
	code  int
}

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf { return &Conf{} })

// Module is the echo module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "echo",
	Order: httpcore.OrderContent,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "echo", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: directive(parseEcho)},
		{Name: "echo_n", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: directive(parseText(false))},
		{Name: "echo_sleep", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: directive(parseSleep)},
		{Name: "echo_flush", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: directive(parseFlush)},
		{Name: "echo_location", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: directive(parseLocation(cmdLocation))},
		{Name: "echo_location_async", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: directive(parseLocation(cmdLocationAsync))},
		{Name: "echo_duplicate", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: directive(parseDuplicate)},
		{Name: "echo_status", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: directive(parseStatus)},
		{Name: "echo_read_request_body", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: directive(parseReadBody)},
	},
	Install: install,
})

// install makes the echo program the location's content handler.
func install(l *httpcore.Location) error {
	c := mod.Of(l)
	if len(c.cmds) == 0 || !c.hasOutput() {
		return nil
	}
	// A program belongs to its location and to the location's if blocks; nested
	// locations have their own content.
	if c.loc != l && !(l.Context() == httpcore.CtxIf && c.loc == l.Parent) {
		return nil
	}
	// A program that does not sleep runs inline in the event loop. Its subrequests
	// run inline too until one of them has to wait: that one takes the request out of
	// the loop (httpcore.RunAll, Request.Blocking).
	for _, k := range c.cmds {
		if k.kind == cmdSleep {
			return l.SetContent("echo", c.handle)
		}
	}
	return l.SetContentInline("echo", c.handle)
}

func (c *Conf) hasOutput() bool {
	for _, k := range c.cmds {
		if k.kind != cmdStatus {
			return true
		}
	}
	return false
}

// add appends commands to the location's program; a location that inherited a program
// from its parent starts its own.
func add(c *httpcore.Cmd, ks ...cmd) {
	conf := mod.Cmd(c)
	if conf.loc != c.Loc {
		conf.cmds = nil
		conf.loc = c.Loc
	}
	conf.cmds = append(conf.cmds, ks...)
}

// directive adapts a command parser to a directive: `echo_sleep = 1` is the one-command
// program of the `{ sleep = 1 }` element of an echo list.
func directive(parse func(*httpcore.Cmd, hclsyntax.Expression) ([]cmd, error)) func(*httpcore.Cmd) error {
	return func(c *httpcore.Cmd) error {
		ks, err := parse(c, c.Attr().Expr)
		if err == nil {
			add(c, ks...)
		}
		return err
	}
}

// commands maps the keys of command objects in an echo list to their parsers.
var commands = map[string]func(*httpcore.Cmd, hclsyntax.Expression) ([]cmd, error){
	"n":              parseText(false),
	"sleep":          parseSleep,
	"flush":          parseFlush,
	"location":       parseLocation(cmdLocation),
	"location_async": parseLocation(cmdLocationAsync),
	"duplicate":      parseDuplicate,
	"status":         parseStatus,
	"read_body":      parseReadBody,
}

// parseEcho parses `echo`: a string, or a list whose strings are echo lines and whose
// objects are other commands, in order:
//
//	echo = ["start", { location_async = ["/a", "/b"] }, { sleep = "1s" }, "end"]
func parseEcho(c *httpcore.Cmd, e hclsyntax.Expression) ([]cmd, error) {
	t, ok := e.(*hclsyntax.TupleConsExpr)
	if !ok {
		return parseText(true)(c, e)
	}
	var out []cmd
	for _, x := range t.Exprs {
		obj, ok := x.(*hclsyntax.ObjectConsExpr)
		if !ok {
			ks, err := parseText(true)(c, x)
			if err != nil {
				return nil, err
			}
			out = append(out, ks...)
			continue
		}
		fields, err := conf.ObjectFields(obj)
		if err != nil {
			return nil, err
		}
		if len(fields) != 1 {
			return nil, conf.Errorf(obj.Range(), "an echo command object has one key: n, sleep, flush, location, location_async, duplicate, status or read_body")
		}
		parse, ok := commands[fields[0].Name]
		if !ok {
			return nil, conf.Errorf(fields[0].NameRange, "unknown echo command %q (expected n, sleep, flush, location, location_async, duplicate, status or read_body)", fields[0].Name)
		}
		ks, err := parse(c, fields[0].Expr)
		if err != nil {
			return nil, err
		}
		out = append(out, ks...)
	}
	return out, nil
}

// exprs compiles a string or a list of strings, each possibly a template.
func exprs(c *httpcore.Cmd, e hclsyntax.Expression) ([]*httpcore.Expr, error) {
	if t, ok := e.(*hclsyntax.TupleConsExpr); ok {
		var out []*httpcore.Expr
		for _, x := range t.Exprs {
			ce, err := c.Expr(x)
			if err != nil {
				return nil, err
			}
			out = append(out, ce)
		}
		return out, nil
	}
	ce, err := c.Expr(e)
	if err != nil {
		return nil, err
	}
	return []*httpcore.Expr{ce}, nil
}

// Text: each line followed by a newline (echo_n: without).
func parseText(newline bool) func(*httpcore.Cmd, hclsyntax.Expression) ([]cmd, error) {
	return func(c *httpcore.Cmd, e hclsyntax.Expression) ([]cmd, error) {
		texts, err := exprs(c, e)
		if err != nil {
			return nil, err
		}
		k := cmd{kind: cmdEcho, texts: texts, newline: newline}
		for _, t := range texts {
			if !t.IsConst() {
				k.lits = nil
				break
			}
			lit, _ := t.String(nil)
			if newline {
				lit += "\n"
			}
			k.lits = append(k.lits, lit)
		}
		return []cmd{k}, nil
	}
}

// sleep = 1.5 (seconds) or "500ms".
func parseSleep(c *httpcore.Cmd, e hclsyntax.Expression) ([]cmd, error) {
	d, err := conf.ExprDuration(e)
	if err != nil {
		return nil, err
	}
	return []cmd{{kind: cmdSleep, dur: d}}, nil
}

// flush = true
func parseFlush(c *httpcore.Cmd, e hclsyntax.Expression) ([]cmd, error) {
	on, err := conf.ExprBool(e)
	if err != nil || !on {
		return nil, err
	}
	return []cmd{{kind: cmdFlush}}, nil
}

// location = "/sub?a=1" | ["/a", "/b"]: subrequests whose output is inserted;
// location_async runs them concurrently, output still in order.
func parseLocation(kind cmdKind) func(*httpcore.Cmd, hclsyntax.Expression) ([]cmd, error) {
	return func(c *httpcore.Cmd, e hclsyntax.Expression) ([]cmd, error) {
		uris, err := exprs(c, e)
		if err != nil {
			return nil, err
		}
		return []cmd{{kind: kind, texts: uris}}, nil
	}
}

// duplicate = [3, "abc"] or { count = 3, text = "abc" }
func parseDuplicate(c *httpcore.Cmd, e hclsyntax.Expression) ([]cmd, error) {
	var countExpr, textExpr hclsyntax.Expression
	switch x := e.(type) {
	case *hclsyntax.TupleConsExpr:
		if len(x.Exprs) != 2 {
			return nil, conf.Errorf(e.Range(), "echo_duplicate = [count, text]")
		}
		countExpr, textExpr = x.Exprs[0], x.Exprs[1]
	case *hclsyntax.ObjectConsExpr:
		fields, err := conf.ObjectFields(x)
		if err != nil {
			return nil, err
		}
		if err := conf.CheckFields(fields, "count", "text"); err != nil {
			return nil, err
		}
		for _, f := range fields {
			if f.Name == "count" {
				countExpr = f.Expr
			} else {
				textExpr = f.Expr
			}
		}
	default:
		return nil, conf.Errorf(e.Range(), "echo_duplicate = [count, text] or { count = N, text = \"...\" }")
	}
	if countExpr == nil || textExpr == nil {
		return nil, conf.Errorf(e.Range(), "echo_duplicate needs a count and a text")
	}
	n, err := conf.ExprInt(countExpr)
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, conf.Errorf(countExpr.Range(), "echo_duplicate count must not be negative")
	}
	t, err := c.Expr(textExpr)
	if err != nil {
		return nil, err
	}
	return []cmd{{kind: cmdDuplicate, count: n, texts: []*httpcore.Expr{t}}}, nil
}

// read_body = true: read the request body now, so that ${request_body} holds it.
func parseReadBody(c *httpcore.Cmd, e hclsyntax.Expression) ([]cmd, error) {
	on, err := conf.ExprBool(e)
	if err != nil || !on {
		return nil, err
	}
	return []cmd{{kind: cmdReadBody}}, nil
}

// status = 201: the status of the echo output (default 200).
func parseStatus(c *httpcore.Cmd, e hclsyntax.Expression) ([]cmd, error) {
	v, err := conf.StaticValue(e)
	if err != nil {
		return nil, err
	}
	if v.Type() != cty.Number {
		return nil, conf.Errorf(e.Range(), "echo_status must be a number")
	}
	n, _ := conf.ExprInt(e)
	if n < 100 || n > 999 {
		return nil, conf.Errorf(e.Range(), "invalid echo_status %d", n)
	}
	return []cmd{{kind: cmdStatus, code: n}}, nil
}

func (c *Conf) handle(r *httpcore.Request) httpcore.Action {
	r.SetStatus(200)
	for _, k := range c.cmds {
		if k.kind == cmdStatus {
			r.SetStatus(k.code)
		}
	}
	var buf []byte
	for _, k := range c.cmds {
		switch k.kind {
		case cmdEcho:
			if k.lits != nil {
				for _, lit := range k.lits {
					r.WriteString(lit)
				}
				continue
			}
			for _, t := range k.texts {
				var err error
				if buf, err = t.AppendString(buf[:0], r); err != nil {
					r.Logf(httpcore.LogError, "echo: %v", err)
					return r.Error(500)
				}
				if k.newline {
					buf = append(buf, '\n')
				}
				r.Write(buf)
			}
		case cmdDuplicate:
			s, err := k.texts[0].String(r)
			if err != nil {
				r.Logf(httpcore.LogError, "echo_duplicate: %v", err)
				return r.Error(500)
			}
			for i := 0; i < k.count; i++ {
				r.WriteString(s)
			}
		case cmdSleep:
			time.Sleep(k.dur)
		case cmdReadBody:
			if _, err := r.Body(); err != nil {
				if err == httpcore.ErrBodyTooLarge {
					return r.Error(413)
				}
				r.Logf(httpcore.LogInfo, "echo_read_request_body: %v", err)
				return r.Error(400)
			}
		case cmdFlush:
			if err := r.Flush(); err != nil {
				return httpcore.Finished
			}
		case cmdLocation, cmdLocationAsync:
			if a, ok := c.subrequests(r, k); !ok {
				return a
			}
		}
	}
	return httpcore.Finished
}

func (c *Conf) subrequests(r *httpcore.Request, k cmd) (httpcore.Action, bool) {
	subs := make([]*httpcore.Request, 0, len(k.texts))
	defer func() {
		for _, sr := range subs {
			sr.Release()
		}
	}()
	for _, t := range k.texts {
		uri, err := t.String(r)
		if err != nil {
			r.Logf(httpcore.LogError, "echo_location: %v", err)
			return r.Error(500), false
		}
		sr, err := r.NewSubrequest(uri, nil)
		if err != nil {
			r.Logf(httpcore.LogError, "echo_location %q: %v", uri, err)
			return r.Error(500), false
		}
		subs = append(subs, sr)
		if k.kind == cmdLocation {
			sr.Run()
			r.Write(sr.Output())
		}
	}
	if k.kind == cmdLocationAsync {
		httpcore.RunAll(subs)
		for _, sr := range subs {
			r.Write(sr.Output())
		}
	}
	return httpcore.Finished, true
}
