// Package httpcore is spindle's HTTP core, the part every module plugs into: the module
// and directive registry, the http/server/location configuration tree with nginx's
// matching rules, the request phases, variables and templates, subrequests, and the
// HTTP/1.1 engine that reads requests and writes responses. Modules import httpcore;
// httpcore never imports a module.
package httpcore

import (
	"fmt"
	"reflect"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
)

// Context is the set of config contexts a directive may appear in.
type Context uint8

// Config contexts, as nginx's NGX_HTTP_*_CONF.
const (
	CtxHTTP     Context = 1 << iota // the http block
	CtxServer                       // a server block
	CtxLocation                     // a location block
	CtxIf                           // an if block (in a server or location)
)

// CtxAll is every context that holds location configuration.
const CtxAll = CtxHTTP | CtxServer | CtxLocation | CtxIf

func (c Context) String() string {
	switch c {
	case CtxHTTP:
		return "http"
	case CtxServer:
		return "server"
	case CtxLocation:
		return "location"
	case CtxIf:
		return "if"
	}
	return fmt.Sprintf("context(%d)", uint8(c))
}

// Directive is one configuration directive a module understands.
type Directive struct {
	Name    string
	Context Context
	// Block is true for directives written as blocks (`rewrite "re" { ... }`); false for
	// attributes (`root = "html"`).
	Block bool
	// Set applies the directive in the context described by c.
	Set func(c *Cmd) error
}

// Module is a unit of HTTP functionality: directives, per-location configuration and
// the phase handlers and filters it installs. Register modules in init.
type Module struct {
	Name       string
	Directives []Directive

	// Install is called for every location (including each server's and the http
	// block's own context and if blocks) once the tree is built; it adds the module's
	// phase handlers and filters to l.
	Install func(l *Location) error

	// Postconfig is called once after the tree is built and installed, for checks that
	// span the whole configuration.
	Postconfig func(cfg *Config) error

	// InitWorker runs in each worker after the configuration is built, before it
	// serves; ExitWorker when it stops.
	InitWorker func(cfg *Config, w *Worker) error
	ExitWorker func(cfg *Config)

	// Reopen reopens the module's log files (USR1), in each worker.
	Reopen func(cfg *Config)

	// Files lists the files the module writes (access logs), so that a master running
	// as root can create them for the unprivileged workers.
	Files func(cfg *Config) []string

	// Order places the module's handlers relative to other modules' in the same phase
	// and in the filter chains; lower runs first. See the Order* constants.
	Order int

	// Conf is the module's typed handle (Define), through which its functions reach
	// their configuration, state and request context without naming the Module value
	// they are part of. Its constructor makes the module's default per-location
	// configuration (nginx's create_loc_conf). Nested contexts start from a shallow
	// copy of their parent's configuration, taken after the parent's own directives
	// are applied (directives are applied before nested blocks, whatever their order
	// in the file). A module without configuration leaves it nil.
	Conf handle

	// ErrorPage, set by the one module that provides error pages (error_page), answers
	// an error status in place of the core's default page. It returns Finished when it
	// sent a response itself, Redirected after r.InternalRedirect (the core then
	// processes the request at the new URI), or Continue for the default page of
	// r.Status(), which it may have changed (a 302 with a Location header). recursive
	// allows a further error page redirect for the request (recursive_error_pages);
	// otherwise later errors get the default page. The core stops offering redirects
	// once the request used up its URI changes.
	ErrorPage func(r *Request, status int) (a Action, recursive bool)

	// UninitializedVar, set by the one module that reports them (rewrite's
	// uninitialized_variable_warn), is called when an expression reads a user variable
	// that was not set for the request.
	UninitializedVar func(r *Request, name string)

	newConf func() any // from Conf
	idx     int
}

// Orders of the built-in modules, CoreDNS plugin.cfg style: handlers of one phase run in
// ascending order, header and body filters in ascending order too.
const (
	OrderCore      = 0
	OrderRewrite   = 100
	OrderAccess    = 200 // allow/deny
	OrderAuth      = 300 // auth_request
	OrderScript    = 400 // rewrite_by_lua, access_by_lua, ...
	OrderHeaders   = 500 // add_header
	OrderContent   = 600
	OrderLog       = 900
	OrderAccessLog = 1000
)

var (
	registry   []*Module
	directives = map[string]*regDirective{}
)

type regDirective struct {
	Directive
	mod *Module
}

// The providers of the core's hooks, each set by the one module that registers it.
var (
	errorPageMod *Module
	uninitMod    *Module
)

// Register adds a module; it panics on a duplicate directive name or a second provider
// of a hook (ErrorPage, UninitializedVar), programming errors caught by every test run.
func Register(m *Module) *Module {
	if m.Conf != nil {
		m.newConf = m.Conf.bind(m)
	}
	for _, h := range []struct {
		set  bool
		prov **Module
		name string
	}{{m.ErrorPage != nil, &errorPageMod, "ErrorPage"}, {m.UninitializedVar != nil, &uninitMod, "UninitializedVar"}} {
		if !h.set {
			continue
		}
		if *h.prov != nil {
			panic(fmt.Sprintf("httpcore: %s provided by %s and %s", h.name, (*h.prov).Name, m.Name))
		}
		*h.prov = m
	}
	m.idx = len(registry)
	registry = append(registry, m)
	for _, d := range m.Directives {
		if prev, ok := directives[d.Name]; ok {
			panic(fmt.Sprintf("httpcore: directive %q registered by %s and %s", d.Name, prev.mod.Name, m.Name))
		}
		directives[d.Name] = &regDirective{Directive: d, mod: m}
	}
	sort.SliceStable(registry, func(i, j int) bool { return registry[i].Order < registry[j].Order })
	for i, mod := range registry {
		mod.idx = i
	}
	return m
}

// DirectiveNames lists every directive of the http block and its contexts: the
// blocks the core reads itself (server, location, if) and every registered module's.
// The docs test checks that each has a section in conf/README.md.
func DirectiveNames() []string {
	names := []string{"server", "location", "if"}
	for _, m := range registry {
		for _, d := range m.Directives {
			names = append(names, d.Name)
		}
	}
	return names
}

// Modules lists the registered modules in order.
func Modules() []*Module { return append([]*Module(nil), registry...) }

// handle is what Module.Conf holds: a Handle of some configuration type.
type handle interface {
	bind(m *Module) func() any
}

// Handle is a module's typed handle: declared as a package variable with Define and
// named in the module's literal (Module.Conf), it gives the module's functions their
// configuration for a location, their per-worker state and their per-request context.
// The functions a Module literal names cannot refer to that Module variable (a Go
// initialization cycle); they refer to the handle instead, whose initializer names no
// function of the module.
type Handle[T any] struct {
	newConf func() *T
	mod     *Module
}

// Define returns the handle of a module whose per-location configuration is T, made
// by newConf (nginx's create_loc_conf; see Module.Conf for inheritance).
func Define[T any](newConf func() *T) *Handle[T] { return &Handle[T]{newConf: newConf} }

func (h *Handle[T]) bind(m *Module) func() any {
	if h.mod != nil {
		panic(fmt.Sprintf("httpcore: handle of %s used by %s too", h.mod.Name, m.Name))
	}
	h.mod = m
	return func() any { return h.newConf() }
}

// Module is the module the handle was registered with.
func (h *Handle[T]) Module() *Module { return h.mod }

// Of returns the module's configuration for location l.
func (h *Handle[T]) Of(l *Location) *T { return l.confs[h.mod.idx].(*T) }

// Cmd returns the module's configuration in the context of a directive being set.
func (h *Handle[T]) Cmd(c *Cmd) *T { return c.Loc.confs[h.mod.idx].(*T) }

// Req returns the module's configuration for the location serving r.
func (h *Handle[T]) Req(r *Request) *T { return h.Of(r.Location()) }

// State returns the per-worker state the module stored with SetState.
func (h *Handle[T]) State(cfg *Config) any { return cfg.modState[h.mod.idx] }

// SetState stores the module's per-worker runtime state (pools, compiled code).
func (h *Handle[T]) SetState(cfg *Config, v any) { cfg.modState[h.mod.idx] = v }

// Ctx returns the module's per-request context (nginx's ngx_http_get_module_ctx),
// nil until SetCtx. It is reset by an internal redirect.
func (h *Handle[T]) Ctx(r *Request) any { return r.moduleCtx(h.mod) }

// SetCtx stores the module's per-request context.
func (h *Handle[T]) SetCtx(r *Request, v any) { r.setModuleCtx(h.mod, v) }

func cloneConf(v any) any {
	if v == nil {
		return nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer {
		return v
	}
	cp := reflect.New(rv.Elem().Type())
	cp.Elem().Set(rv.Elem())
	return cp.Interface()
}

// Cmd is what a directive's Set function sees: the directive as written and the context
// it appears in.
type Cmd struct {
	Item    conf.Item
	Context Context
	Loc     *Location // the context's configuration (server and http contexts have one too)
	Server  *Server   // nil in the http context
	b       *builder
	mod     *Module
}

// Name is the directive name.
func (c *Cmd) Name() string { return c.Item.Name }

// Attr is the attribute, or nil for a block directive.
func (c *Cmd) Attr() *hclsyntax.Attribute { return c.Item.Attr }

// Block is the block, or nil for an attribute directive.
func (c *Cmd) Block() *hclsyntax.Block { return c.Item.Block }

// Range is where the directive starts.
func (c *Cmd) Range() hcl.Range { return c.Item.Range() }

// Errorf returns a positioned error at the directive.
func (c *Cmd) Errorf(format string, args ...any) error {
	return conf.Errorf(c.Range(), format, args...)
}

// conf is the calling module's configuration in this context, for the shared setters;
// a module's own setters use its handle (mod.Cmd(c)).
func (c *Cmd) conf() any { return c.Loc.confs[c.mod.idx] }

// Config is the HTTP configuration being built.
func (c *Cmd) Config() *Config { return c.b.cfg }

// Source gives access to the config files, e.g. to walk a block's body in order.
func (c *Cmd) Source() *conf.Source { return c.b.src }

// Items walks a block body in source order (includes spliced in).
func (c *Cmd) Items(body *hclsyntax.Body) ([]conf.Item, error) {
	items, es := c.b.src.Items(body)
	return items, es.Err()
}

// Expr compiles an expression over request variables.
func (c *Cmd) Expr(e hclsyntax.Expression) (*Expr, error) { return c.b.cfg.vars.compile(e, c.Loc) }

// AttrExpr compiles the directive's attribute value as an expression.
func (c *Cmd) AttrExpr() (*Expr, error) {
	if c.Item.Attr == nil {
		return nil, c.Errorf("%s must be written as %s = value", c.Name(), c.Name())
	}
	return c.Expr(c.Item.Attr.Expr)
}

// AddRewriteOp appends an operation to the context's rewrite program, which runs
// set/rewrite/return/if and friends in source order (server context: server_rewrite
// phase; location and if contexts: rewrite phase).
func (c *Cmd) AddRewriteOp(op RewriteOp) {
	c.Loc.rewrite = append(c.Loc.rewrite, op)
}

// DeclareVar declares a user variable (as `set` does) and returns its index.
func (c *Cmd) DeclareVar(name string, rng hcl.Range) (int, error) {
	return c.b.cfg.vars.declare(name, rng)
}
