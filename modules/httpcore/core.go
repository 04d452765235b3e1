package httpcore

import (
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/zclconf/go-cty/cty"
)

// CoreConf is the core module's per-location configuration: nginx's
// ngx_http_core_module settings with nginx's defaults.
type CoreConf struct {
	DefaultType         string
	ClientMaxBodySize   int64 // 0: unlimited
	KeepaliveTimeout    time.Duration
	KeepaliveRequests   int
	ClientHeaderTimeout time.Duration
	ClientBodyTimeout   time.Duration
	SendTimeout         time.Duration
	LingeringTimeout    time.Duration
	ServerTokens        bool
	LargeHeaderBuffers  int // number of buffers
	LargeHeaderBuffer   int // size of one: the longest request line or header line
	// SatisfyAny is satisfy any: access is granted when any access-phase handler
	// grants it (see Request.access); satisfy all (the default) needs every handler
	// that decides to grant it.
	SatisfyAny bool
	// ClientBodyBufferSize is how much of a request body is kept in memory; a larger
	// body goes to a temporary file (client_body_buffer_size, nginx's 16k).
	ClientBodyBufferSize int64
	// ClientBodyTempPath is the directory of those files; "" is client_body_temp
	// under the prefix.
	ClientBodyTempPath string
	// ClientBodyInFileOnly: 0 off, 1 on (files are kept), 2 clean (removed).
	ClientBodyInFileOnly int
	// ClientBodyInSingleBuffer is accepted for nginx configs: a body in memory is
	// always one buffer here.
	ClientBodyInSingleBuffer bool
	// LogSubrequest runs the log phase for subrequests too (log_subrequest, a
	// directive of the access log module).
	LogSubrequest bool
}

// coreMod is the core module's handle.
var coreMod = Define(func() *CoreConf {
	return &CoreConf{
		DefaultType:         "text/plain",
		ClientMaxBodySize:   1 << 20,
		KeepaliveTimeout:    75 * time.Second,
		KeepaliveRequests:   1000,
		ClientHeaderTimeout: 60 * time.Second,
		ClientBodyTimeout:   60 * time.Second,
		SendTimeout:         60 * time.Second,
		LingeringTimeout:    5 * time.Second,
		ServerTokens:        true,
		LargeHeaderBuffers:  4,
		LargeHeaderBuffer:   8 << 10,
		// nginx's default on 64-bit systems: two pages.
		ClientBodyBufferSize: 16 << 10,
	}
})

// CoreModule is the HTTP core's own module: server, listen, location, timeouts and
// limits.
var CoreModule = Register(&Module{
	Name:  "core",
	Order: OrderCore,
	Conf:  coreMod,
	Directives: []Directive{
		{Name: "listen", Context: CtxServer, Set: setListen},
		{Name: "server_name", Context: CtxServer, Set: setServerName},
		{Name: "internal", Context: CtxLocation, Set: func(c *Cmd) error {
			return conf.BoolSlot(func(l *Location) *bool { return &l.Internal })(c.Loc, c.Item)
		}},
		{Name: "default_type", Context: CtxAll, Set: SetString(func(cc *CoreConf) *string { return &cc.DefaultType })},
		{Name: "client_max_body_size", Context: CtxAll, Set: SetSize(func(cc *CoreConf) *int64 { return &cc.ClientMaxBodySize })},
		{Name: "keepalive_timeout", Context: CtxAll, Set: SetDuration(func(cc *CoreConf) *time.Duration { return &cc.KeepaliveTimeout })},
		{Name: "keepalive_requests", Context: CtxAll, Set: SetCount(1, conf.NoMax, func(cc *CoreConf) *int { return &cc.KeepaliveRequests })},
		{Name: "client_header_timeout", Context: CtxHTTP | CtxServer, Set: SetDuration(func(cc *CoreConf) *time.Duration { return &cc.ClientHeaderTimeout })},
		{Name: "client_body_timeout", Context: CtxAll, Set: SetDuration(func(cc *CoreConf) *time.Duration { return &cc.ClientBodyTimeout })},
		{Name: "send_timeout", Context: CtxAll, Set: SetDuration(func(cc *CoreConf) *time.Duration { return &cc.SendTimeout })},
		{Name: "lingering_timeout", Context: CtxAll, Set: SetDuration(func(cc *CoreConf) *time.Duration { return &cc.LingeringTimeout })},
		{Name: "server_tokens", Context: CtxAll, Set: SetBool(func(cc *CoreConf) *bool { return &cc.ServerTokens })},
		{Name: "large_client_header_buffers", Context: CtxHTTP | CtxServer, Set: setLargeHeaderBuffers},
		{Name: "satisfy", Context: CtxHTTP | CtxServer | CtxLocation, Set: setSatisfy},
		{Name: "client_body_buffer_size", Context: CtxAll, Set: SetSize(func(cc *CoreConf) *int64 { return &cc.ClientBodyBufferSize })},
		{Name: "client_body_temp_path", Context: CtxAll, Set: func(c *Cmd) error {
			v, err := conf.String(c.Attr())
			if err != nil {
				return err
			}
			if v == "" {
				return conf.Errorf(c.Attr().Expr.Range(), "client_body_temp_path must not be empty")
			}
			if !filepath.IsAbs(v) {
				v = filepath.Join(c.Config().Main.Prefix, v)
			}
			coreMod.Cmd(c).ClientBodyTempPath = v
			return nil
		}},
		{Name: "client_body_in_file_only", Context: CtxAll, Set: func(c *Cmd) error {
			v, err := conf.String(c.Attr())
			if err != nil {
				return err
			}
			modes := map[string]int{"off": 0, "on": 1, "clean": 2}
			m, ok := modes[v]
			if !ok {
				return conf.Errorf(c.Attr().Expr.Range(), "client_body_in_file_only must be \"on\", \"clean\" or \"off\", not %q", v)
			}
			coreMod.Cmd(c).ClientBodyInFileOnly = m
			return nil
		}},
		{Name: "client_body_in_single_buffer", Context: CtxAll, Set: SetBool(func(cc *CoreConf) *bool { return &cc.ClientBodyInSingleBuffer })},
	},
})

// CoreConfOf returns the core configuration of a location.
func CoreConfOf(l *Location) *CoreConf { return coreMod.Of(l) }

// satisfy = "all" | "any"
func setSatisfy(c *Cmd) error {
	v, err := conf.String(c.Attr())
	if err != nil {
		return err
	}
	switch v {
	case "all", "any":
		coreMod.Cmd(c).SatisfyAny = v == "any"
	default:
		return conf.Errorf(c.Attr().Expr.Range(), "satisfy is \"all\" or \"any\", got %q", v)
	}
	return nil
}

func setListen(c *Cmd) error {
	vals, err := conf.Strings(c.Attr())
	if err != nil {
		return err
	}
	if len(vals) == 0 {
		return c.Errorf("listen needs at least one address")
	}
	for _, v := range vals {
		l, err := ParseListen(v, c.Attr().Expr.Range())
		if err != nil {
			return err
		}
		c.Server.listens = append(c.Server.listens, l)
	}
	return nil
}

func setServerName(c *Cmd) error {
	vals, err := conf.Strings(c.Attr())
	if err != nil {
		return err
	}
	for _, v := range vals {
		for _, n := range strings.Fields(v) {
			if err := c.Server.addName(n, c.Attr().Expr.Range()); err != nil {
				return err
			}
		}
	}
	return nil
}

// large_client_header_buffers = "4 8k" or { number = 4, size = "8k" }
func setLargeHeaderBuffers(c *Cmd) error {
	a := c.Attr()
	cc := coreMod.Cmd(c)
	if obj, ok := a.Expr.(*hclsyntax.ObjectConsExpr); ok {
		fields, err := conf.ObjectFields(obj)
		if err != nil {
			return err
		}
		if err := conf.CheckFields(fields, "number", "size"); err != nil {
			return err
		}
		for _, f := range fields {
			switch f.Name {
			case "number":
				if cc.LargeHeaderBuffers, err = conf.ExprInt(f.Expr); err != nil {
					return err
				}
			case "size":
				n, err := conf.ExprSize(f.Expr)
				if err != nil {
					return err
				}
				cc.LargeHeaderBuffer = int(n)
			}
		}
	} else {
		v, err := conf.StaticValue(a.Expr)
		if err != nil {
			return err
		}
		if v.Type() != cty.String {
			return conf.Errorf(a.Expr.Range(), "expected \"4 8k\" or { number = 4, size = \"8k\" }")
		}
		f := strings.Fields(v.AsString())
		if len(f) != 2 {
			return conf.Errorf(a.Expr.Range(), "expected \"NUMBER SIZE\", like \"4 8k\"")
		}
		n, err := conf.ParseSize(f[0])
		if err != nil {
			return conf.Errorf(a.Expr.Range(), "%v", err)
		}
		size, err := conf.ParseSize(f[1])
		if err != nil {
			return conf.Errorf(a.Expr.Range(), "%v", err)
		}
		cc.LargeHeaderBuffers, cc.LargeHeaderBuffer = int(n), int(size)
	}
	if cc.LargeHeaderBuffers < 1 || cc.LargeHeaderBuffer < 256 {
		return conf.Errorf(a.Expr.Range(), "large_client_header_buffers must be at least 1 buffer of 256 bytes")
	}
	return nil
}
