// Package conf reads spindle's HCL configuration: it parses the files, walks bodies in
// source order, decodes and validates the main context (worker_processes, pid,
// error_log, events, ...) and offers the value decoders that the HTTP core and its
// modules use for their own directives. Every error carries its file:line,col.
package conf

import (
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/internal/errlog"
	"github.com/zclconf/go-cty/cty"
)

// DefaultPath is the config file used without -c, relative to the prefix.
const DefaultPath = "conf/spindle.hcl"

// AffinityMode says how workers are pinned to CPUs.
type AffinityMode int

// Affinity modes, as nginx's worker_cpu_affinity.
const (
	AffinityOff   AffinityMode = iota // no pinning
	AffinityAuto                      // worker i on CPU i mod ncpu
	AffinityMasks                     // worker i on Masks[i mod len(Masks)]
)

// Affinity is the decoded worker_cpu_affinity.
type Affinity struct {
	Mode  AffinityMode
	Masks []uint64
}

// CPUs returns the CPUs worker slot i is pinned to, or nil for no pinning.
func (a Affinity) CPUs(slot, ncpu int) []int {
	switch a.Mode {
	case AffinityAuto:
		if ncpu <= 0 {
			return nil
		}
		return []int{slot % ncpu}
	case AffinityMasks:
		m := a.Masks[slot%len(a.Masks)]
		var cpus []int
		for i := 0; i < 64; i++ {
			if m&(1<<uint(i)) != 0 {
				cpus = append(cpus, i)
			}
		}
		return cpus
	}
	return nil
}

// Config is the main context of a configuration. The http block is kept as syntax: the
// HTTP core decodes it with the directives its modules register.
type Config struct {
	Source *Source
	Prefix string
	Path   string

	WorkerProcesses       int
	CPUAffinity           Affinity
	WorkerShutdownTimeout time.Duration // 0: wait for in-flight requests without a bound, as nginx
	WorkerStartTimeout    time.Duration // how long a new generation may take to report READY
	UpgradeTimeout        time.Duration // how long a new binary may take to become ready
	WorkerRlimitNofile    int
	Pid                   string
	ErrorLog              string // absolute path, or "stderr"
	ErrorLogLevel         errlog.Level
	User, Group           string
	WorkerConnections     int
	MultiAccept           bool

	HTTP *hclsyntax.Block // nil when the config has no http block
}

// Parse parses and validates the main context of a bundle.
func Parse(b *Bundle) (*Config, error) {
	src := &Source{Bundle: b, files: map[string]*hclsyntax.Body{}}
	var es Errors
	for path, data := range b.Files {
		f, diags := hclsyntax.ParseConfig(data, path, hcl.Pos{Line: 1, Column: 1})
		if diags.HasErrors() {
			es = append(es, FromDiags(diags)...)
			continue
		}
		src.files[path] = f.Body.(*hclsyntax.Body)
	}
	if len(es) > 0 {
		return nil, es
	}
	// From here on errors are collected: the caller gets the config with every error
	// found, so that one run reports them all.
	c := &Config{
		Source:             src,
		Prefix:             b.Prefix,
		Path:               b.Path,
		WorkerProcesses:    1,
		WorkerStartTimeout: 60 * time.Second,
		UpgradeTimeout:     60 * time.Second,
		Pid:                Resolve(b.Prefix, "logs/spindle.pid"),
		ErrorLog:           Resolve(b.Prefix, "logs/error.log"),
		ErrorLogLevel:      errlog.Error,
		WorkerConnections:  512,
	}
	items, ies := src.Items(src.Body(b.Path))
	es = append(es, ies...)
	for _, it := range items {
		es.Add(it.Range(), c.set(it))
	}
	return c, es.Err()
}

// MainDirectives is the directive table of the main context, nginx's core module.
var MainDirectives = Table[Config]{
	{Name: "worker_processes", Set: setWorkerProcesses},
	{Name: "worker_cpu_affinity", Set: (*Config).setAffinity},
	{Name: "worker_shutdown_timeout", Set: DurationSlot(func(c *Config) *time.Duration { return &c.WorkerShutdownTimeout })},
	{Name: "worker_start_timeout", Set: DurationSlot(func(c *Config) *time.Duration { return &c.WorkerStartTimeout })},
	{Name: "upgrade_timeout", Set: DurationSlot(func(c *Config) *time.Duration { return &c.UpgradeTimeout })},
	{Name: "worker_rlimit_nofile", Set: CountSlot(0, NoMax, func(c *Config) *int { return &c.WorkerRlimitNofile })},
	{Name: "pid", Set: setPid},
	{Name: "error_log", Set: (*Config).setErrorLog},
	{Name: "user", Set: StringSlot(func(c *Config) *string { return &c.User })},
	{Name: "group", Set: StringSlot(func(c *Config) *string { return &c.Group })},
	{Name: "events", Block: true, Set: (*Config).setEvents},
	{Name: "http", Block: true, Set: setHTTP},
}

// EventsDirectives is the directive table of the events block.
var EventsDirectives = Table[Config]{
	{Name: "worker_connections", Set: CountSlot(1, 1<<20, func(c *Config) *int { return &c.WorkerConnections })},
	{Name: "multi_accept", Set: BoolSlot(func(c *Config) *bool { return &c.MultiAccept })},
	// Accepted for nginx familiarity: each worker has sockets of its own (no mutex to
	// take) and spindle always uses epoll.
	{Name: "accept_mutex", Set: func(*Config, Item) error { return nil }},
	{Name: "use", Set: func(*Config, Item) error { return nil }},
}

func (c *Config) set(it Item) error {
	return MainDirectives.Apply(c, it, func(it Item) error {
		return Errorf(it.Range(), "unknown directive %q", it.Name)
	})
}

func setHTTP(c *Config, it Item) error {
	if c.HTTP != nil {
		return Errorf(it.Range(), "http block is duplicate")
	}
	if len(it.Block.Labels) > 0 {
		return Errorf(it.Block.LabelRanges[0], "http block takes no label")
	}
	c.HTTP = it.Block
	return nil
}

func setWorkerProcesses(c *Config, it Item) error {
	a := it.Attr
	v, err := StaticValue(a.Expr)
	if err != nil {
		return err
	}
	if v.Type() == cty.String && v.AsString() == "auto" {
		c.WorkerProcesses = runtime.NumCPU()
		return nil
	}
	n, err := Int(a)
	if err != nil {
		return Errorf(a.Expr.Range(), "worker_processes must be a number or \"auto\"")
	}
	if n < 1 || n > 1024 {
		return Errorf(a.Expr.Range(), "worker_processes must be between 1 and 1024, got %d", n)
	}
	c.WorkerProcesses = n
	return nil
}

func setPid(c *Config, it Item) error {
	s, err := String(it.Attr)
	if err != nil {
		return err
	}
	c.Pid = Resolve(c.Prefix, s)
	return nil
}

func (c *Config) setEvents(it Item) error {
	b := it.Block
	if len(b.Labels) > 0 {
		return Errorf(b.LabelRanges[0], "events block takes no label")
	}
	items, es := c.Source.Items(b.Body)
	for _, it := range items {
		es.Add(it.Range(), EventsDirectives.Apply(c, it, func(it Item) error {
			return Errorf(it.Range(), "unknown directive %q in events", it.Name)
		}))
	}
	return es.Err()
}

func (c *Config) setAffinity(it Item) error {
	a := it.Attr
	vals, err := Strings(a)
	if err != nil {
		return err
	}
	if len(vals) == 1 {
		vals = strings.Fields(vals[0])
	}
	if len(vals) == 1 && (vals[0] == "auto" || vals[0] == "off") {
		if vals[0] == "auto" {
			c.CPUAffinity = Affinity{Mode: AffinityAuto}
		} else {
			c.CPUAffinity = Affinity{Mode: AffinityOff}
		}
		return nil
	}
	if len(vals) == 0 {
		return Errorf(a.Expr.Range(), "worker_cpu_affinity needs \"auto\", \"off\" or CPU masks like \"0101\"")
	}
	masks := make([]uint64, 0, len(vals))
	for _, v := range vals {
		m, err := strconv.ParseUint(v, 2, 64)
		if err != nil || m == 0 {
			return Errorf(a.Expr.Range(), "invalid CPU mask %q: expected binary digits like \"0010\", \"auto\" or \"off\"", v)
		}
		masks = append(masks, m)
	}
	c.CPUAffinity = Affinity{Mode: AffinityMasks, Masks: masks}
	return nil
}

// error_log = "logs/error.log" | "stderr" | { path = "...", level = "warn" }
func (c *Config) setErrorLog(it Item) error {
	a := it.Attr
	if _, ok := a.Expr.(*hclsyntax.ObjectConsExpr); !ok {
		s, err := String(a)
		if err != nil {
			return err
		}
		// nginx's "file level" form in one string.
		if f := strings.Fields(s); len(f) == 2 {
			lvl, err := errlog.ParseLevel(f[1])
			if err != nil {
				return Errorf(a.Expr.Range(), "%v", err)
			}
			c.ErrorLogLevel = lvl
			s = f[0]
		}
		c.ErrorLog = logPath(c.Prefix, s)
		return nil
	}
	fields, err := ObjectFields(a.Expr)
	if err != nil {
		return err
	}
	if err := CheckFields(fields, "path", "level"); err != nil {
		return err
	}
	for _, f := range fields {
		s, err := ExprString(f.Expr)
		if err != nil {
			return err
		}
		switch f.Name {
		case "path":
			c.ErrorLog = logPath(c.Prefix, s)
		case "level":
			lvl, err := errlog.ParseLevel(s)
			if err != nil {
				return Errorf(f.Expr.Range(), "%v", err)
			}
			c.ErrorLogLevel = lvl
		}
	}
	return nil
}

func logPath(prefix, s string) string {
	if s == "stderr" || s == "" {
		return "stderr"
	}
	return Resolve(prefix, s)
}

// Dump renders the bundle's files for `spindle -T`, each preceded by its name as nginx
// does.
func (b *Bundle) Dump() string {
	var sb strings.Builder
	paths := []string{b.Path}
	for p := range b.Files {
		if p != b.Path {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths[1:])
	for _, p := range paths {
		fmt.Fprintf(&sb, "# configuration file %s:\n%s", p, b.Files[p])
		if data := b.Files[p]; len(data) > 0 && data[len(data)-1] != '\n' {
			sb.WriteByte('\n')
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}
