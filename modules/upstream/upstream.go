// Package upstream is spindle's upstream module: the `upstream "name" { ... }` blocks
// of the http context, with their servers, load balancing (weighted round robin,
// least connections, hashing over a template, optionally consistent), failure
// accounting (max_fails/fail_timeout) and keepalive settings. The proxy, redis and
// memc modules look an upstream up by name (or make an implicit one for a plain
// "host:port") while the configuration is built, and pick peers from it per request.
//
// The configuration objects belong to one built Config. A worker builds its own
// Config, so the runtime state kept on them (failure counters, active connections,
// round-robin weights) is per worker process, as nginx's is without a shared zone.
// Modules that keep connection pools for an upstream create them in their InitWorker
// hook and close them in ExitWorker; the master only builds configs to validate them.
package upstream

import (
	"context"
	"fmt"
	"hash/crc32"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Upstream types.
const (
	TypeHTTP      = "http"
	TypeRedis     = "redis"
	TypeMemcached = "memcached"
)

// Balance is a load-balancing method.
type Balance uint8

// Balancing methods.
const (
	RoundRobin Balance = iota // smooth weighted round robin (nginx's default)
	LeastConn                 // fewest active connections relative to weight
	Hash                      // hash of a key template, optionally consistent
)

func (b Balance) String() string {
	switch b {
	case LeastConn:
		return "least_conn"
	case Hash:
		return "hash"
	}
	return "round_robin"
}

// Defaults of an upstream's settings.
const (
	DefaultKeepalive         = 32
	DefaultKeepaliveTimeout  = 60 * time.Second
	DefaultKeepaliveRequests = 1000
	DefaultTimeout           = 60 * time.Second
	DefaultFailTimeout       = 10 * time.Second
)

// Upstream is a group of servers: an `upstream` block, or the implicit group made for
// an address written directly in proxy_pass, redis_pass or memc_pass.
type Upstream struct {
	Name     string
	Type     string
	Range    hcl.Range
	Implicit bool // made for a plain address, not declared with an upstream block

	// Peers are the primary servers, Backups the backup ones, each in config order
	// (a server name that resolves to several addresses gives a peer per address).
	Peers   []*Peer
	Backups []*Peer

	Balance    Balance
	HashKey    *httpcore.Expr // Hash: the key template (nil: the caller supplies the key)
	Consistent bool           // Hash: ketama-style ring instead of modulo

	// Keepalive is, for http upstreams, the number of idle connections each worker
	// keeps (nginx's keepalive); for redis and memcached upstreams, the size of each
	// worker's connection pool per server, a bound on the connections it opens.
	// 0 means a new connection per request.
	Keepalive         int
	KeepaliveTimeout  time.Duration
	KeepaliveRequests int

	// Timeouts of redis and memcached upstreams (http upstreams use the proxy_*
	// timeouts of the location).
	ConnectTimeout time.Duration
	SendTimeout    time.Duration
	ReadTimeout    time.Duration

	// Redis settings.
	Cluster          bool   // the servers are seed nodes of a Redis Cluster
	SentinelMaster   string // the servers are sentinels watching this master
	SentinelPassword string
	Username         string
	Password         string
	DB               int

	mu    sync.Mutex
	ring  []ringPoint // consistent hashing over Peers
	owner *registry
}

// Peer is one server address of an upstream, with its per-worker state.
type Peer struct {
	Name        string // as written: "backend.local:8080", "unix:/tmp/s.sock"
	Network     string // "tcp" or "unix"
	Addr        string // the address to dial: "127.0.0.1:8080" or a socket path
	Weight      int
	MaxFails    int
	FailTimeout time.Duration
	MaxConns    int // 0: unlimited
	Backup      bool
	Down        bool
	Index       int // position among the upstream's peers (backups after primaries)

	// runtime state, guarded by the upstream's mutex
	fails   int
	checked time.Time // last failure, or when the failed peer was last probed
	active  int
	cw, ew  int // smooth round-robin current and effective weights
}

// String is the peer's address as nginx prints it in $upstream_addr.
func (p *Peer) String() string {
	if p.Network == "unix" {
		return "unix:" + p.Addr
	}
	return p.Addr
}

// Conf is the upstream module's configuration: the http context holds the registry of
// upstreams, shared (by pointer) with every nested context.
type Conf struct {
	reg *registry
}

type registry struct {
	byName   map[string]*Upstream
	implicit map[string]*Upstream
	all      []*Upstream
	cfg      *httpcore.Config
	// runtimeMade counts implicit upstreams made for targets computed per request.
	runtimeMade int
}

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf { return &Conf{} })

// Module is the upstream module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "upstream",
	Order: httpcore.OrderContent - 50,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "upstream", Context: httpcore.CtxHTTP, Block: true, Set: setUpstream},
	},
	InitWorker: initWorker,
})

func init() {
	registerVars()
}

func regOf(cfg *httpcore.Config) *registry {
	c := mod.Of(cfg.Root())
	if c.reg == nil {
		c.reg = &registry{byName: map[string]*Upstream{}, implicit: map[string]*Upstream{}, cfg: cfg}
	}
	return c.reg
}

// Lookup returns the upstream block called name, or nil. Modules call it while the
// configuration is built (every upstream block of the http context is defined before
// any server is) and at run time.
func Lookup(cfg *httpcore.Config, name string) *Upstream {
	return regOf(cfg).byName[name]
}

// All returns every upstream of the configuration, declared and implicit.
func All(cfg *httpcore.Config) []*Upstream { return regOf(cfg).all }

// Resolve returns the upstream block called target if there is one of type typ, else
// the implicit upstream for target taken as an address ("host:port", "host" with the
// type's default port, "unix:/path"). One implicit upstream is shared by every
// directive naming the same address. rng positions errors.
func Resolve(cfg *httpcore.Config, typ, target string, rng hcl.Range) (*Upstream, error) {
	reg := regOf(cfg)
	if u := reg.byName[target]; u != nil {
		if u.Type != typ {
			return nil, conf.Errorf(rng, "upstream %q is of type %s, not %s", target, u.Type, typ)
		}
		return u, nil
	}
	key := typ + " " + target
	if u := reg.implicit[key]; u != nil {
		return u, nil
	}
	u := newUpstream(target, typ, rng)
	u.Implicit = true
	peers, err := parseAddress(target, typ, rng)
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		p.Weight, p.MaxFails, p.FailTimeout = 1, 1, DefaultFailTimeout
	}
	u.Peers = peers
	u.finish()
	reg.implicit[key] = u
	reg.all = append(reg.all, u)
	u.owner = reg
	return u, nil
}

// ResolveRuntime is Resolve for a target computed per request (a template with
// variables): an upstream block by name, or an implicit upstream for an address,
// created the first time it is seen in this worker.
func ResolveRuntime(cfg *httpcore.Config, typ, target string) (*Upstream, error) {
	reg := regOf(cfg)
	runtimeMu.Lock()
	defer runtimeMu.Unlock()
	isNew := reg.byName[target] == nil && reg.implicit[typ+" "+target] == nil
	// Each new address gets state and a pool in every worker: a target taken from
	// the request must not grow them without end.
	if isNew && reg.runtimeMade >= maxRuntimeUpstreams {
		return nil, fmt.Errorf("more than %d upstream addresses computed at run time", maxRuntimeUpstreams)
	}
	u, err := Resolve(reg.cfg, typ, target, hcl.Range{})
	if err == nil && isNew {
		reg.runtimeMade++
	}
	return u, err
}

const maxRuntimeUpstreams = 1024

var runtimeMu sync.Mutex

func newUpstream(name, typ string, rng hcl.Range) *Upstream {
	return &Upstream{
		Name:              name,
		Type:              typ,
		Range:             rng,
		Keepalive:         DefaultKeepalive,
		KeepaliveTimeout:  DefaultKeepaliveTimeout,
		KeepaliveRequests: DefaultKeepaliveRequests,
		ConnectTimeout:    DefaultTimeout,
		SendTimeout:       DefaultTimeout,
		ReadTimeout:       DefaultTimeout,
	}
}

func defaultPort(typ string) string {
	switch typ {
	case TypeRedis:
		return "6379"
	case TypeMemcached:
		return "11211"
	}
	return "80"
}

// parseAddress turns a server address into peers: a unix socket, or host:port where a
// host name is resolved now (as nginx resolves upstream names when it loads its
// configuration), giving one peer per address.
func parseAddress(s, typ string, rng hcl.Range) ([]*Peer, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return nil, conf.Errorf(rng, "no path in %q", s)
		}
		return []*Peer{{Name: s, Network: "unix", Addr: path}}, nil
	}
	if strings.Contains(s, "://") || strings.ContainsAny(s, "/?# \t") {
		return nil, conf.Errorf(rng, "invalid server address %q (expected host:port)", s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			return nil, conf.Errorf(rng, "invalid server address %q", s)
		}
		host, port = strings.Trim(s, "[]"), defaultPort(typ)
	}
	if host == "" {
		return nil, conf.Errorf(rng, "no host in server address %q", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, conf.Errorf(rng, "invalid port in server address %q", s)
	}
	if ip := net.ParseIP(host); ip != nil {
		return []*Peer{{Name: s, Network: "tcp", Addr: net.JoinHostPort(ip.String(), port)}}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil || len(addrs) == 0 {
		return nil, conf.Errorf(rng, "host not found in upstream %q", s)
	}
	var out []*Peer
	seen := map[string]bool{}
	for _, a := range addrs {
		addr := net.JoinHostPort(a, port)
		if seen[addr] {
			continue
		}
		seen[addr] = true
		out = append(out, &Peer{Name: s, Network: "tcp", Addr: addr})
	}
	return out, nil
}

// setUpstream parses an upstream block:
//
//	upstream "backend" {
//	  servers   = ["10.0.0.1:8080 weight=3", "10.0.0.2:8080 max_fails=2 fail_timeout=5s", "10.0.0.3:8080 backup"]
//	  keepalive = 32
//	}
func setUpstream(c *httpcore.Cmd) error {
	b := c.Block()
	if len(b.Labels) != 1 || b.Labels[0] == "" {
		return conf.Errorf(b.TypeRange, "upstream needs a name: upstream \"name\" { ... }")
	}
	name := b.Labels[0]
	reg := regOf(c.Config())
	if prev := reg.byName[name]; prev != nil {
		return conf.Errorf(b.LabelRanges[0], "duplicate upstream %q (first defined at %s)", name, prev.Range)
	}
	u := newUpstream(name, TypeHTTP, b.TypeRange)
	items, err := c.Items(b.Body)
	if err != nil {
		return err
	}
	var es conf.Errors
	attrs := map[string]*hclsyntax.Attribute{}
	for _, it := range items {
		if it.Attr == nil {
			es = append(es, conf.Errorf(it.Range(), "unknown block %q in upstream (settings are written name = value)", it.Name))
			continue
		}
		attrs[it.Name] = it.Attr
	}
	if a := attrs["type"]; a != nil {
		t, err := conf.String(a)
		if err != nil {
			es.Add(a.Range(), err)
		} else if t != TypeHTTP && t != TypeRedis && t != TypeMemcached {
			es = append(es, conf.Errorf(a.Expr.Range(), "unknown upstream type %q (expected http, redis or memcached)", t))
		} else {
			u.Type = t
		}
	}
	if u.Type == TypeMemcached {
		// memcached clients spread keys over servers with consistent hashing.
		u.Balance, u.Consistent = Hash, true
	}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	// Settings that change how servers are read come first, the rest in source order.
	first := func(k string) bool { return k == "cluster" || k == "sentinel" }
	sort.Slice(keys, func(i, j int) bool {
		if first(keys[i]) != first(keys[j]) {
			return first(keys[i])
		}
		return attrs[keys[i]].NameRange.Start.Byte < attrs[keys[j]].NameRange.Start.Byte
	})
	ub := &upstreamBlock{Upstream: u, cmd: c}
	for _, k := range keys {
		it := conf.Item{Name: k, Attr: attrs[k]}
		es.Add(it.Range(), Settings.Apply(ub, it, func(it conf.Item) error {
			return conf.Errorf(it.Range(), "unknown upstream setting %q", it.Name)
		}))
	}
	if attrs["servers"] == nil {
		es = append(es, conf.Errorf(b.TypeRange, "upstream %q has no servers", name))
	}
	if len(es) > 0 {
		return es.Err()
	}
	if err := u.check(b.TypeRange); err != nil {
		return err
	}
	u.finish()
	u.owner = reg
	reg.byName[name] = u
	reg.all = append(reg.all, u)
	return nil
}

// upstreamBlock is what the settings of one upstream block configure.
type upstreamBlock struct {
	*Upstream
	cmd        *httpcore.Cmd
	balanceSet bool // balance or hash was written
}

// Settings is the directive table of an upstream block. The block reads type first,
// then cluster and sentinel (they change how servers are read), then the rest in
// source order.
var Settings = conf.Table[upstreamBlock]{
	{Name: "type", Set: func(*upstreamBlock, conf.Item) error { return nil }}, // read first by setUpstream
	{Name: "servers", Set: func(b *upstreamBlock, it conf.Item) error { return b.parseServers(it.Attr.Expr) }},
	{Name: "balance", Set: setBalance},
	{Name: "hash", Set: setHash},
	{Name: "keepalive", Set: conf.CountSlot(0, conf.NoMax, func(b *upstreamBlock) *int { return &b.Keepalive })},
	{Name: "keepalive_timeout", Set: conf.DurationSlot(func(b *upstreamBlock) *time.Duration { return &b.KeepaliveTimeout })},
	{Name: "keepalive_requests", Set: conf.CountSlot(1, conf.NoMax, func(b *upstreamBlock) *int { return &b.KeepaliveRequests })},
	{Name: "connect_timeout", Set: backendTimeout(func(b *upstreamBlock) *time.Duration { return &b.ConnectTimeout })},
	{Name: "send_timeout", Set: backendTimeout(func(b *upstreamBlock) *time.Duration { return &b.SendTimeout })},
	{Name: "read_timeout", Set: backendTimeout(func(b *upstreamBlock) *time.Duration { return &b.ReadTimeout })},
	{Name: "cluster", Set: redisOnly(conf.BoolSlot(func(b *upstreamBlock) *bool { return &b.Cluster }))},
	{Name: "sentinel", Set: redisOnly(setSentinel)},
	{Name: "username", Set: redisOnly(conf.StringSlot(func(b *upstreamBlock) *string { return &b.Username }))},
	{Name: "password", Set: redisOnly(conf.StringSlot(func(b *upstreamBlock) *string { return &b.Password }))},
	{Name: "db", Set: redisOnly(conf.CountSlot(0, conf.NoMax, func(b *upstreamBlock) *int { return &b.DB }))},
}

func redisOnly(set conf.Setter[upstreamBlock]) conf.Setter[upstreamBlock] {
	return func(b *upstreamBlock, it conf.Item) error {
		if b.Type != TypeRedis {
			return conf.Errorf(it.Attr.NameRange, "%s is a setting of redis upstreams", it.Name)
		}
		return set(b, it)
	}
}

// backendTimeout is a timeout of redis and memcached upstreams. Unlike the other
// times it must be positive: their clients read 0 as "the client's default" (go-redis:
// 3 s), not as "no timeout".
func backendTimeout(field func(*upstreamBlock) *time.Duration) conf.Setter[upstreamBlock] {
	slot := conf.DurationSlot(field)
	return func(b *upstreamBlock, it conf.Item) error {
		if b.Type == TypeHTTP {
			return conf.Errorf(it.Attr.NameRange, "%s is a setting of redis and memcached upstreams; http upstreams use proxy_%s in the location", it.Name, it.Name)
		}
		if d, err := conf.Duration(it.Attr); err == nil && d <= 0 {
			return conf.Errorf(it.Attr.Expr.Range(), "%s must be positive", it.Name)
		}
		return slot(b, it)
	}
}

func setBalance(b *upstreamBlock, it conf.Item) error {
	a := it.Attr
	s, err := conf.String(a)
	if err != nil {
		return err
	}
	switch s {
	case "round_robin":
		b.Balance = RoundRobin
	case "least_conn":
		b.Balance = LeastConn
	case "hash", "consistent_hash":
		b.Balance = Hash
		b.Consistent = s == "consistent_hash"
	default:
		return conf.Errorf(a.Expr.Range(), "unknown balance %q (expected round_robin, least_conn, hash or consistent_hash)", s)
	}
	if b.balanceSet && b.Balance != Hash {
		return conf.Errorf(a.NameRange, "balance = %q conflicts with hash", s)
	}
	b.balanceSet = true
	return nil
}

func setHash(b *upstreamBlock, it conf.Item) error {
	a := it.Attr
	if b.balanceSet && b.Balance != Hash {
		return conf.Errorf(a.NameRange, "hash conflicts with balance = %q", b.Balance)
	}
	b.balanceSet = true
	b.Balance = Hash
	keyExpr := hclsyntax.Expression(a.Expr)
	if obj, ok := a.Expr.(*hclsyntax.ObjectConsExpr); ok {
		fields, err := conf.ObjectFields(obj)
		if err != nil {
			return err
		}
		if err := conf.CheckFields(fields, "key", "consistent"); err != nil {
			return err
		}
		keyExpr = nil
		for _, f := range fields {
			switch f.Name {
			case "key":
				keyExpr = f.Expr
			case "consistent":
				v, err := conf.ExprBool(f.Expr)
				if err != nil {
					return err
				}
				b.Consistent = v
			}
		}
		if keyExpr == nil {
			return conf.Errorf(a.Expr.Range(), "hash needs a key: hash = { key = \"${...}\", consistent = true }")
		}
	}
	e, err := b.cmd.Expr(keyExpr)
	if err != nil {
		return err
	}
	b.HashKey = e
	return nil
}

// sentinel = { master = "mymaster", password = "..." }
func setSentinel(b *upstreamBlock, it conf.Item) error {
	a := it.Attr
	fields, err := conf.ObjectFields(a.Expr)
	if err != nil {
		return err
	}
	if err := conf.CheckFields(fields, "master", "password"); err != nil {
		return err
	}
	for _, f := range fields {
		s, err := conf.ExprString(f.Expr)
		if err != nil {
			return err
		}
		if f.Name == "master" {
			b.SentinelMaster = s
		} else {
			b.SentinelPassword = s
		}
	}
	if b.SentinelMaster == "" {
		return conf.Errorf(a.Expr.Range(), "sentinel needs the master's name: sentinel = { master = \"mymaster\" }")
	}
	return nil
}

// parseServers reads the servers list: nginx's server lines as strings
// ("10.0.0.1:8080 weight=2 max_fails=3 fail_timeout=10s max_conns=100 backup down"),
// or objects { addr = "10.0.0.1:8080", weight = 2, ... }.
func (u *Upstream) parseServers(e hclsyntax.Expression) error {
	t, ok := e.(*hclsyntax.TupleConsExpr)
	if !ok {
		return conf.Errorf(e.Range(), "servers must be a list: servers = [\"127.0.0.1:8080\", ...]")
	}
	if len(t.Exprs) == 0 {
		return conf.Errorf(e.Range(), "servers must not be empty")
	}
	var es conf.Errors
	for _, x := range t.Exprs {
		peers, err := u.parseServer(x)
		if err != nil {
			es.Add(x.Range(), err)
			continue
		}
		for _, p := range peers {
			if p.Backup {
				u.Backups = append(u.Backups, p)
			} else {
				u.Peers = append(u.Peers, p)
			}
		}
	}
	return es.Err()
}

func (u *Upstream) parseServer(x hclsyntax.Expression) ([]*Peer, error) {
	tmpl := Peer{Weight: 1, MaxFails: 1, FailTimeout: DefaultFailTimeout}
	var addr string
	if obj, ok := x.(*hclsyntax.ObjectConsExpr); ok {
		fields, err := conf.ObjectFields(obj)
		if err != nil {
			return nil, err
		}
		if err := conf.CheckFields(fields, "addr", "weight", "max_fails", "fail_timeout", "max_conns", "backup", "down"); err != nil {
			return nil, err
		}
		for _, f := range fields {
			var err error
			switch f.Name {
			case "addr":
				addr, err = conf.ExprString(f.Expr)
			case "weight":
				tmpl.Weight, err = conf.ExprInt(f.Expr)
			case "max_fails":
				tmpl.MaxFails, err = conf.ExprInt(f.Expr)
			case "fail_timeout":
				tmpl.FailTimeout, err = conf.ExprDuration(f.Expr)
			case "max_conns":
				tmpl.MaxConns, err = conf.ExprInt(f.Expr)
			case "backup":
				tmpl.Backup, err = conf.ExprBool(f.Expr)
			case "down":
				tmpl.Down, err = conf.ExprBool(f.Expr)
			}
			if err != nil {
				return nil, err
			}
		}
		if addr == "" {
			return nil, conf.Errorf(x.Range(), "a server object needs addr")
		}
	} else {
		s, err := conf.ExprString(x)
		if err != nil {
			return nil, err
		}
		f := strings.Fields(s)
		if len(f) == 0 {
			return nil, conf.Errorf(x.Range(), "empty server")
		}
		addr = f[0]
		for _, opt := range f[1:] {
			k, v, hasV := strings.Cut(opt, "=")
			var perr error
			switch {
			case k == "backup" && !hasV:
				tmpl.Backup = true
			case k == "down" && !hasV:
				tmpl.Down = true
			case k == "weight" && hasV:
				tmpl.Weight, perr = strconv.Atoi(v)
			case k == "max_fails" && hasV:
				tmpl.MaxFails, perr = strconv.Atoi(v)
			case k == "max_conns" && hasV:
				tmpl.MaxConns, perr = strconv.Atoi(v)
			case k == "fail_timeout" && hasV:
				tmpl.FailTimeout, perr = conf.ParseDuration(v)
			default:
				return nil, conf.Errorf(x.Range(), "unknown server parameter %q (expected weight=, max_fails=, fail_timeout=, max_conns=, backup or down)", opt)
			}
			if perr != nil {
				return nil, conf.Errorf(x.Range(), "invalid server parameter %q", opt)
			}
		}
	}
	if tmpl.Weight < 1 {
		return nil, conf.Errorf(x.Range(), "server weight must be at least 1")
	}
	if tmpl.MaxFails < 0 || tmpl.MaxConns < 0 {
		return nil, conf.Errorf(x.Range(), "max_fails and max_conns must not be negative")
	}
	if tmpl.FailTimeout <= 0 {
		return nil, conf.Errorf(x.Range(), "fail_timeout must be positive")
	}
	if u.Cluster || u.SentinelMaster != "" {
		// Seeds of a cluster or sentinels: go-redis resolves and follows them.
		p := tmpl
		p.Name, p.Network, p.Addr = addr, "tcp", addr
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, conf.Errorf(x.Range(), "invalid server address %q (expected host:port)", addr)
		}
		return []*Peer{&p}, nil
	}
	peers, err := parseAddress(addr, u.Type, x.Range())
	if err != nil {
		return nil, err
	}
	for i, p := range peers {
		cp := tmpl
		cp.Name, cp.Network, cp.Addr = p.Name, p.Network, p.Addr
		peers[i] = &cp
	}
	return peers, nil
}

// check validates combinations of settings once the block is read.
func (u *Upstream) check(rng hcl.Range) error {
	if u.Type != TypeRedis && (u.Cluster || u.SentinelMaster != "") {
		return conf.Errorf(rng, "cluster and sentinel are settings of redis upstreams")
	}
	if u.Cluster && u.SentinelMaster != "" {
		return conf.Errorf(rng, "an upstream is either a cluster or watched by sentinels, not both")
	}
	if (u.Cluster || u.SentinelMaster != "") && u.Keepalive == 0 {
		return conf.Errorf(rng, "cluster and sentinel upstreams need a connection pool (keepalive > 0)")
	}
	if (u.Cluster || u.SentinelMaster != "") && (len(u.Backups) > 0 || u.Balance != RoundRobin) {
		return conf.Errorf(rng, "cluster and sentinel upstreams route commands themselves: no backup servers or balance settings")
	}
	if u.Type == TypeMemcached && u.Balance != Hash {
		return conf.Errorf(rng, "memcached upstreams spread keys by hashing: balance must be hash or consistent_hash")
	}
	if u.Balance == Hash && u.HashKey == nil && u.Type == TypeHTTP {
		return conf.Errorf(rng, "hash balancing needs a key: hash = \"${request_uri}\"")
	}
	if u.Balance == Hash && len(u.Backups) > 0 {
		// nginx: "invalid parameter "backup"" with hash balancing.
		return conf.Errorf(rng, "backup servers cannot be used with hash balancing")
	}
	if len(u.Peers) == 0 {
		return conf.Errorf(rng, "upstream %q has no primary servers", u.Name)
	}
	return nil
}

// finish computes what balancing needs once the peers are known.
func (u *Upstream) finish() {
	for i, p := range u.Peers {
		p.Index = i
		p.ew = p.Weight
	}
	for i, p := range u.Backups {
		p.Index = len(u.Peers) + i
		p.ew = p.Weight
	}
	if u.Balance == Hash && u.Consistent {
		u.buildRing()
	}
}

// ringPoint is a point of the consistent-hashing ring.
type ringPoint struct {
	hash uint32
	peer *Peer
}

// buildRing places 160 points per unit of weight for each peer, as nginx's
// consistent hash (and ketama) do, so that adding or removing a server moves only
// the keys of its arcs.
func (u *Upstream) buildRing() {
	u.ring = u.ring[:0]
	for _, p := range u.Peers {
		for i := 0; i < 160*p.Weight; i++ {
			h := crc32.ChecksumIEEE([]byte(p.Name + "-" + strconv.Itoa(i)))
			u.ring = append(u.ring, ringPoint{h, p})
		}
	}
	sort.Slice(u.ring, func(i, j int) bool { return u.ring[i].hash < u.ring[j].hash })
}

func initWorker(cfg *httpcore.Config, w *httpcore.Worker) error {
	for _, u := range regOf(cfg).all {
		u.mu.Lock()
		for _, p := range u.allPeers() {
			p.fails, p.active, p.cw, p.ew = 0, 0, 0, p.Weight
			p.checked = time.Time{}
		}
		u.mu.Unlock()
	}
	return nil
}

func (u *Upstream) allPeers() []*Peer {
	if len(u.Backups) == 0 {
		return u.Peers
	}
	return append(append([]*Peer(nil), u.Peers...), u.Backups...)
}

// NumPeers is the number of peers, backups included.
func (u *Upstream) NumPeers() int { return len(u.Peers) + len(u.Backups) }

// String names the upstream for logs.
func (u *Upstream) String() string {
	if u.Implicit {
		return u.Name
	}
	return fmt.Sprintf("upstream %q", u.Name)
}
