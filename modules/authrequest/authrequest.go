// Package authrequest is nginx's ngx_http_auth_request_module for spindle: access is
// decided by a subrequest to another location. A 2xx answer grants access, 401 and 403
// are passed on to the client (a 401 with its WWW-Authenticate headers), anything else
// is a 500. auth_request_set copies values out of the subrequest.
package authrequest

import (
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/access"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Conf is the auth_request configuration of a context.
type Conf struct {
	URI  string // "" when off
	vars []setVar
}

type setVar struct {
	name    string
	idx     int
	builtin bool
	e       *httpcore.Expr
}

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf { return &Conf{} })

// Module is the auth_request module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "auth_request",
	Order: httpcore.OrderAuth,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "auth_request", Context: ctxAuth, Set: setAuthRequest},
		{Name: "auth_request_set", Context: ctxAuth, Set: setAuthRequestSet},
	},
	Install: install,
})

const ctxAuth = httpcore.CtxHTTP | httpcore.CtxServer | httpcore.CtxLocation

func install(l *httpcore.Location) error {
	c := mod.Of(l)
	if c.URI != "" {
		l.AddHandler(httpcore.PhaseAccess, httpcore.OrderAuth, c.handle)
	}
	return nil
}

// auth_request = "/auth" | "off"
func setAuthRequest(c *httpcore.Cmd) error {
	v, err := conf.String(c.Attr())
	if err != nil {
		return err
	}
	cf := mod.Cmd(c)
	if v == "off" {
		cf.URI = ""
		return nil
	}
	if len(v) == 0 || v[0] != '/' {
		return conf.Errorf(c.Attr().Expr.Range(), "auth_request needs a URI starting with \"/\", or \"off\"")
	}
	cf.URI = v
	return nil
}

// auth_request_set = { user = sent_http.x_user, ... }: variables set, once the
// subrequest is done, from expressions evaluated in the subrequest (its response
// headers are sent_http.NAME, its status is status).
func setAuthRequestSet(c *httpcore.Cmd) error {
	obj, ok := c.Attr().Expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return conf.Errorf(c.Attr().Expr.Range(), "auth_request_set is an object: { name = value, ... }")
	}
	fields, err := conf.ObjectFields(obj)
	if err != nil {
		return err
	}
	var vars []setVar
	for _, f := range fields {
		sv := setVar{name: f.Name}
		if exists, writable := httpcore.BuiltinVar(f.Name); exists {
			if !writable {
				return conf.Errorf(f.NameRange, "variable %q is built in and cannot be set", f.Name)
			}
			sv.builtin = true
		} else if sv.idx, err = c.DeclareVar(f.Name, f.NameRange); err != nil {
			return err
		}
		if sv.e, err = c.Expr(f.Expr); err != nil {
			return err
		}
		vars = append(vars, sv)
	}
	mod.Cmd(c).vars = vars
	return nil
}

func (c *Conf) handle(r *httpcore.Request) httpcore.Action {
	// The subrequest is a GET without the request body (nginx gives it an empty one)
	// and shares the request's variables, as nginx's subrequests do.
	sr, err := r.NewSubrequest(c.URI, &httpcore.SubrequestOptions{HasBody: true, Body: nil, ShareVars: true})
	if err != nil {
		r.Logf(httpcore.LogError, "auth request %q: %v", c.URI, err)
		return r.Error(500)
	}
	defer sr.Release()
	sr.Run()
	status := sr.Status()
	// Variables are set whatever the verdict, so that error pages can use them too.
	for _, v := range c.vars {
		s, err := v.e.String(sr)
		if err != nil {
			r.Logf(httpcore.LogError, "auth_request_set %s: %v", v.name, err)
			return r.Error(500)
		}
		if v.builtin {
			r.SetVar(v.name, s)
		} else {
			r.SetUserVar(v.idx, s)
		}
	}
	switch {
	case status >= 200 && status < 300:
		return access.Allow(r)
	case status == 401:
		for _, v := range sr.RespHeader().Values("WWW-Authenticate") {
			r.RespHeader().Add("WWW-Authenticate", v)
		}
		return access.Deny(r, 401)
	case status == 403:
		return access.Deny(r, 403)
	}
	r.Logf(httpcore.LogError, "auth request unexpected status: %d", status)
	return r.Error(500)
}
