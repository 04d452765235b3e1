package httpcore

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/errlog"
)

// Config is a built HTTP configuration: the servers with their locations, compiled
// expressions, and every module's per-location settings. A worker builds one from the
// config bundle the master sent; the master builds one to validate a config.
type Config struct {
	Main    *conf.Config
	Servers []*Server
	// Listens are the distinct listen addresses, in config order, with their options.
	Listens []Listen

	root     *Location // the http context
	byAddr   map[string]*addrServers
	vars     *varTable
	src      *conf.Source
	all      []*Location // every context, for Install
	log      *errlog.Logger
	worker   *Worker
	modState []any // per-module runtime state set by InitWorker
}

// Root is the http context's configuration, the parent of every server.
func (c *Config) Root() *Location { return c.root }

// Log is the error log (set by the worker; a logger to stderr before that).
func (c *Config) Log() *errlog.Logger { return c.log }

// SetLog sets the error log requests write to.
func (c *Config) SetLog(l *errlog.Logger) { c.log = l }

// Worker describes the worker process the config runs in (nil in the master).
func (c *Config) Worker() *Worker { return c.worker }

// ModuleState returns state module m stored with SetModuleState.
func (c *Config) ModuleState(m *Module) any { return c.modState[m.idx] }

// SetModuleState stores per-worker runtime state of module m (pools, compiled code).
func (c *Config) SetModuleState(m *Module, v any) { c.modState[m.idx] = v }

// Locations returns every context of the configuration: the http block, servers,
// locations (nested included) and if blocks.
func (c *Config) Locations() []*Location { return c.all }

// Worker is what a module's InitWorker learns about the process it runs in.
type Worker struct {
	ID    int // slot number, 0..Count-1 (ngx.worker.id)
	Count int // worker_processes
	Pid   int
	// Generation counts reloads: the workers of a reload have the next one.
	Generation int
	// Exiting is closed when the worker starts draining.
	Exiting <-chan struct{}
	// Cluster reaches the master and the other workers; nil in tests that run the
	// core in-process.
	Cluster Cluster
	// Counters returns this worker's own status counters (Engine.Counters): what a
	// status page shows when there is no cluster to sum over.
	Counters func() map[string]int64
}

// Cluster is the worker's view of the master, provided by the worker package.
type Cluster interface {
	// SumCounters returns the status counters summed over all live workers and the
	// number of workers that answered.
	SumCounters() (map[string]int64, int, error)
}

type builder struct {
	cfg *Config
	src *conf.Source
	es  conf.Errors
}

// Build decodes the http block of a parsed configuration with the registered modules'
// directives, compiles its expressions and installs the modules' handlers. The result
// is what a worker serves; building it is also how the master validates a config.
func Build(mc *conf.Config) (*Config, error) {
	cfg := &Config{
		Main:     mc,
		byAddr:   map[string]*addrServers{},
		src:      mc.Source,
		log:      errlog.Stderr(errlog.Error),
		modState: make([]any, len(registry)),
	}
	cfg.vars = newVarTable(cfg)
	b := &builder{cfg: cfg, src: mc.Source}
	root := &Location{Name: "http", ctx: CtxHTTP, cfg: cfg, confs: make([]any, len(registry))}
	for i, m := range registry {
		if m.newConf != nil {
			root.confs[i] = m.newConf()
		}
	}
	cfg.root = root
	cfg.all = append(cfg.all, root)
	if mc.HTTP != nil {
		root.Range = mc.HTTP.TypeRange
		b.body(mc.HTTP.Body, root, nil)
	}
	if len(b.es) == 0 {
		b.es = append(b.es, cfg.vars.check()...)
	}
	if len(b.es) == 0 {
		b.finish()
	}
	if len(b.es) > 0 {
		return nil, b.es
	}
	return cfg, nil
}

// contextual directives create a nested configuration context; they are applied after
// the plain directives of their parent so that inheritance does not depend on order.
func isContextBlock(name string) bool {
	return name == "server" || name == "location"
}

// body applies the directives of one context: plain directives first, in source order,
// then the nested contexts.
func (b *builder) body(body *hclsyntax.Body, l *Location, srv *Server) {
	items, es := b.src.Items(body)
	b.es = append(b.es, es...)
	b.items(items, l, srv)
}

func (b *builder) items(items []conf.Item, l *Location, srv *Server) {
	var nested []conf.Item
	for _, it := range items {
		if isContextBlock(it.Name) && it.Block != nil {
			nested = append(nested, it)
			continue
		}
		if it.Name == "if" && it.Block != nil {
			// if keeps its place among the rewrite-phase directives; its body is
			// built after the plain directives like any nested context.
			op := &ifOp{}
			l.rewrite = append(l.rewrite, op)
			nested = append(nested, it)
			l.pendingIfs = append(l.pendingIfs, op)
			continue
		}
		b.directive(it, l, srv)
	}
	ifs := l.pendingIfs
	l.pendingIfs = nil
	for _, it := range nested {
		switch it.Name {
		case "server":
			b.server(it, l)
		case "location":
			b.location(it, l, srv)
		case "if":
			op := ifs[0]
			ifs = ifs[1:]
			b.ifBlock(it, l, srv, op)
		}
	}
}

func (b *builder) directive(it conf.Item, l *Location, srv *Server) {
	d, ok := directives[it.Name]
	if !ok {
		b.es = append(b.es, conf.Errorf(it.Range(), "unknown directive %q", it.Name))
		return
	}
	if d.Context&l.ctx == 0 {
		b.es = append(b.es, conf.Errorf(it.Range(), "%q is not allowed in %s context", it.Name, l.ctx))
		return
	}
	if d.Block && it.Block == nil {
		b.es = append(b.es, conf.Errorf(it.Range(), "%q must be written as a block: %s ... { }", it.Name, it.Name))
		return
	}
	if !d.Block && it.Attr == nil {
		b.es = append(b.es, conf.Errorf(it.Range(), "%q is a setting: write it as %s = value", it.Name, it.Name))
		return
	}
	c := &Cmd{Item: it, Context: l.ctx, Loc: l, Server: srv, b: b, mod: d.mod}
	if err := d.Set(c); err != nil {
		b.es.Add(it.Range(), err)
	}
}

func (b *builder) child(parent *Location, ctx Context, srv *Server, rng hcl.Range) *Location {
	l := &Location{ctx: ctx, Parent: parent, Server: srv, cfg: b.cfg, Range: rng, confs: make([]any, len(registry))}
	for i, c := range parent.confs {
		l.confs[i] = cloneConf(c)
	}
	b.cfg.all = append(b.cfg.all, l)
	return l
}

func (b *builder) server(it conf.Item, http *Location) {
	if http.ctx != CtxHTTP {
		b.es = append(b.es, conf.Errorf(it.Range(), "server is only allowed in the http block"))
		return
	}
	if len(it.Block.Labels) > 0 {
		b.es = append(b.es, conf.Errorf(it.Block.LabelRanges[0], "server block takes no label; use server_name = [...]"))
		return
	}
	srv := &Server{cfg: b.cfg, Range: it.Block.TypeRange}
	srv.root = b.child(http, CtxServer, srv, it.Block.TypeRange)
	srv.root.Name = "server"
	b.cfg.Servers = append(b.cfg.Servers, srv)
	b.body(it.Block.Body, srv.root, srv)
	if len(srv.listens) == 0 {
		// nginx listens on *:80 without a listen directive; spindle runs unprivileged
		// by default, so 8080 is the port nobody has to grant.
		srv.listens = []Listen{{Addr: "0.0.0.0:8080"}}
	}
	b.es = append(b.es, srv.root.children.finish()...)
}

func (b *builder) location(it conf.Item, parent *Location, srv *Server) {
	if srv == nil {
		b.es = append(b.es, conf.Errorf(it.Range(), "location is only allowed in a server or location"))
		return
	}
	if parent.ctx != CtxServer && parent.ctx != CtxLocation {
		b.es = append(b.es, conf.Errorf(it.Range(), "location is not allowed in %s context", parent.ctx))
		return
	}
	if len(it.Block.Labels) != 1 {
		b.es = append(b.es, conf.Errorf(it.Block.TypeRange, "location needs one label: location \"/path\" { ... }"))
		return
	}
	l := b.child(parent, CtxLocation, srv, it.Block.TypeRange)
	if err := l.parseMatch(it.Block.Labels[0], it.Block.LabelRanges[0]); err != nil {
		b.es.Add(it.Block.LabelRanges[0], err)
		return
	}
	if parent.ctx == CtxLocation {
		if err := checkNested(parent, l, it.Block.LabelRanges[0]); err != nil {
			b.es.Add(it.Block.LabelRanges[0], err)
			return
		}
	}
	if l.Match == MatchNamed && parent.ctx != CtxServer {
		b.es = append(b.es, conf.Errorf(it.Block.LabelRanges[0], "named location %q can only be on server level", l.Name))
		return
	}
	if l.Match == MatchNamed {
		srv.named = append(srv.named, l)
	} else {
		parent.children.add(l)
	}
	b.body(it.Block.Body, l, srv)
	b.es = append(b.es, l.children.finish()...)
}

func (b *builder) finish() {
	for _, srv := range b.cfg.Servers {
		if err := b.cfg.addServer(srv); err != nil {
			b.es.Add(srv.Range, err)
		}
		for _, n := range srv.named {
			for _, other := range srv.named {
				if other != n && other.Name == n.Name && other.Range.Start.Byte > n.Range.Start.Byte {
					b.es = append(b.es, conf.Errorf(other.Range, "duplicate location %q", n.Name))
				}
			}
		}
	}
	if len(b.es) > 0 {
		return
	}
	for _, l := range b.cfg.all {
		for _, m := range registry {
			if m.Install != nil {
				if err := m.Install(l); err != nil {
					b.es.Add(l.Range, err)
				}
			}
		}
		l.finishHandlers()
	}
	// An if block switches a request's configuration in the middle of the rewrite
	// phase: a location whose if blocks may wait may wait.
	for _, l := range b.cfg.all {
		if l.ctx == CtxIf && l.mayBlock {
			for p := l.Parent; p != nil; p = p.Parent {
				p.mayBlock = true
				if p.ctx != CtxIf {
					break
				}
			}
		}
	}
	for _, m := range registry {
		if m.Postconfig != nil {
			if err := m.Postconfig(b.cfg); err != nil {
				b.es.Add(hcl.Range{}, err)
			}
		}
	}
}

// InitWorker runs every module's InitWorker hook in a worker process.
func (c *Config) InitWorker(w *Worker) error {
	c.worker = w
	for _, m := range registry {
		if m.InitWorker != nil {
			if err := m.InitWorker(c, w); err != nil {
				return err
			}
		}
	}
	return nil
}

// ExitWorker runs every module's ExitWorker hook, in reverse order.
func (c *Config) ExitWorker() {
	for i := len(registry) - 1; i >= 0; i-- {
		if m := registry[i]; m.ExitWorker != nil {
			m.ExitWorker(c)
		}
	}
}

// Reopen runs every module's Reopen hook (log rotation).
func (c *Config) Reopen() {
	for _, m := range registry {
		if m.Reopen != nil {
			m.Reopen(c)
		}
	}
}

// Files lists the files modules write, for the master to create with the workers'
// owner.
func (c *Config) Files() []string {
	var out []string
	for _, m := range registry {
		if m.Files != nil {
			out = append(out, m.Files(c)...)
		}
	}
	return out
}
