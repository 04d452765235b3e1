// Package status is nginx's stub_status for spindle: a content handler answering with
// the connection and request counters of every worker of the current generation, summed
// by the master over the control pipe, in nginx's text format or as JSON with the
// responses counted by status class too.
package status

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// Conf is a location's stub_status setting.
type Conf struct {
	on   bool
	json bool               // answer JSON unless ?format=text asks otherwise
	loc  *httpcore.Location // the location stub_status was written in
}

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf { return &Conf{} })

// Module is the stub_status module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "stub_status",
	Order: httpcore.OrderContent,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "stub_status", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: setStubStatus},
	},
	Install: install,
})

// setStubStatus decodes
//
//	stub_status = true
//	stub_status = { format = "json" }    # text (default) | json
func setStubStatus(c *httpcore.Cmd) error {
	cf := mod.Cmd(c)
	e := c.Attr().Expr
	*cf = Conf{loc: c.Loc}
	if obj, ok := e.(*hclsyntax.ObjectConsExpr); ok {
		fields, err := conf.ObjectFields(obj)
		if err != nil {
			return err
		}
		if err := conf.CheckFields(fields, "format"); err != nil {
			return err
		}
		cf.on = true
		for _, f := range fields {
			s, err := conf.ExprString(f.Expr)
			if err != nil {
				return err
			}
			switch s {
			case "text":
			case "json":
				cf.json = true
			default:
				return conf.Errorf(f.Expr.Range(), "unknown stub_status format %q (expected text or json)", s)
			}
		}
		return nil
	}
	v, err := conf.StaticValue(e)
	if err != nil {
		return err
	}
	if v.Type() == cty.Bool || v.Type() == cty.String {
		on, err := conf.ExprBool(e)
		cf.on = on
		return err
	}
	return conf.Errorf(e.Range(), "expected true, false or { format = \"json\" }")
}

// install makes the status page the content handler of the location that asks for it
// and of its if blocks; nested locations have their own content.
func install(l *httpcore.Location) error {
	cf := mod.Of(l)
	if !cf.on {
		return nil
	}
	if cf.loc != l && !(l.Context() == httpcore.CtxIf && cf.loc == l.Parent) {
		return nil
	}
	return l.SetContent("stub_status", cf.handle)
}

func (cf *Conf) handle(r *httpcore.Request) httpcore.Action {
	if m := r.Method(); m != "GET" && m != "HEAD" {
		r.RespHeader().Set("Allow", "GET, HEAD")
		return r.Error(405)
	}
	counters, workers := Counters(r)
	asJSON := cf.json
	if f, ok := httpcore.ArgValue(r.Args(), "format"); ok {
		asJSON = f == "json"
	}
	var body []byte
	if asJSON {
		body = appendJSON(nil, counters, workers, r)
		r.RespHeader().Set("Content-Type", "application/json")
	} else {
		body = appendText(nil, counters)
		r.RespHeader().Set("Content-Type", "text/plain")
	}
	r.SetStatus(200)
	r.SetContentLength(int64(len(body)))
	r.Write(body)
	return httpcore.Finished
}

// Counters returns the status counters of the workers of the current generation
// summed by the master, and how many workers answered. Without a cluster (the core run
// in-process) or when the master does not answer, it returns this worker's own.
func Counters(r *httpcore.Request) (map[string]int64, int) {
	w := r.Config().Worker()
	if w == nil {
		return map[string]int64{}, 0
	}
	if w.Cluster != nil {
		c, n, err := w.Cluster.SumCounters()
		if err == nil && n > 0 {
			return c, n
		}
		if err != nil {
			r.Logf(httpcore.LogWarn, "stub_status shows this worker's counters only: %v", err)
		}
	}
	if w.Counters != nil {
		return w.Counters(), 1
	}
	return map[string]int64{}, 0
}

// appendText writes nginx's stub_status page, trailing spaces included, which scripts
// parsing it may expect.
func appendText(dst []byte, c map[string]int64) []byte {
	dst = append(dst, "Active connections: "...)
	dst = strconv.AppendInt(dst, c["active"], 10)
	dst = append(dst, " \nserver accepts handled requests\n "...)
	dst = strconv.AppendInt(dst, c["accepts"], 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, c["handled"], 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, c["requests"], 10)
	dst = append(dst, " \nReading: "...)
	dst = strconv.AppendInt(dst, c["reading"], 10)
	dst = append(dst, " Writing: "...)
	dst = strconv.AppendInt(dst, c["writing"], 10)
	dst = append(dst, " Waiting: "...)
	dst = strconv.AppendInt(dst, c["active"]-c["reading"]-c["writing"], 10)
	dst = append(dst, " \n"...)
	return dst
}

// Page is the JSON form of the status page.
type Page struct {
	Connections Connections      `json:"connections"`
	Requests    Requests         `json:"requests"`
	Responses   map[string]int64 `json:"responses"` // by status class: "1xx" ... "5xx"
	Workers     int              `json:"workers"`   // workers whose counters are summed
	Generation  int              `json:"generation"`
}

// Connections are the connection counters of the JSON page, stub_status's numbers.
type Connections struct {
	Active   int64 `json:"active"`
	Accepted int64 `json:"accepted"`
	Handled  int64 `json:"handled"`
	Reading  int64 `json:"reading"`
	Writing  int64 `json:"writing"`
	Waiting  int64 `json:"waiting"`
}

// Requests are the request counters of the JSON page.
type Requests struct {
	Total int64 `json:"total"`
}

func appendJSON(dst []byte, c map[string]int64, workers int, r *httpcore.Request) []byte {
	p := Page{
		Connections: Connections{
			Active: c["active"], Accepted: c["accepts"], Handled: c["handled"],
			Reading: c["reading"], Writing: c["writing"], Waiting: c["active"] - c["reading"] - c["writing"],
		},
		Requests:  Requests{Total: c["requests"]},
		Responses: map[string]int64{},
		Workers:   workers,
	}
	if w := r.Config().Worker(); w != nil {
		p.Generation = w.Generation
	}
	for k, v := range c {
		if len(k) == 3 && k[0] >= '1' && k[0] <= '9' && strings.HasSuffix(k, "xx") {
			p.Responses[k] = v
		}
	}
	b, _ := json.Marshal(p)
	dst = append(dst, b...)
	return append(dst, '\n')
}
