// Package accesslog is nginx's ngx_http_log_module for spindle: named log formats over
// request variables (nginx's combined predefined; default, JSON or no escaping) and
// access logs per http/server/location context, written after each response in the
// log phase, optionally buffered, and reopened on USR1.
//
// Every worker appends to the same files. A line is always written whole by one
// write(2) on a descriptor opened with O_APPEND (a buffer holds whole lines only), so
// lines of different workers never interleave.
package accesslog

import (
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/zclconf/go-cty/cty"
)

// CombinedFormat is nginx's predefined "combined" format, the default of access_log.
const CombinedFormat = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`

// DefaultPath is the access log of contexts that configure none, as nginx's.
const DefaultPath = "logs/access.log"

// Conf is a context's access log configuration.
type Conf struct {
	main *mainConf
	// logs are the access logs of requests served in this context; empty with
	// `access_log = "off"`. A context's access_log replaces the list it inherited (the
	// directive is an attribute, written at most once per block).
	logs []*logSpec
}

// mainConf is shared by every context of one configuration: the formats, and the
// files the logs write to.
type mainConf struct {
	formats map[string]*format // by lower-cased name
	files   []*fileSpec
	byPath  map[string]*fileSpec
}

// logSpec is one access log: a file, a format and a condition.
type logSpec struct {
	path       string // as written; resolved against the prefix into file
	formatName string
	formatRng  hcl.Range
	rng        hcl.Range
	buffer     int64
	flush      time.Duration
	gzip       int
	bufferSet  bool
	ifExpr     *httpcore.Expr // `if = expression`
	ifOps      []op           // `if=$var` in the string form
	format     *format
	file       *fileSpec
}

// fileSpec is a log file and how it is written. Logs that name the same file share it,
// and its buffer, as in nginx.
type fileSpec struct {
	idx    int
	path   string
	buffer int64
	flush  time.Duration
	gzip   int
	owner  *logSpec // the log that set the buffering
}

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf {
	m := &mainConf{formats: map[string]*format{}, byPath: map[string]*fileSpec{}}
	ops, err := compileText(CombinedFormat, hcl.Range{})
	if err != nil {
		panic(err)
	}
	m.formats["combined"] = &format{name: "combined", ops: ops}
	return &Conf{main: m, logs: []*logSpec{{path: DefaultPath, formatName: "combined"}}}
})

// Module is the access log module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "access_log",
	Order: httpcore.OrderAccessLog,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "log_format", Context: httpcore.CtxHTTP, Block: true, Set: setLogFormat},
		{Name: "access_log", Context: httpcore.CtxAll, Set: setAccessLog},
		{Name: "log_subrequest", Context: httpcore.CtxAll, Set: setLogSubrequest},
	},
	Install:    install,
	Postconfig: postconfig,
	InitWorker: initWorker,
	ExitWorker: exitWorker,
	Reopen:     reopen,
	Files:      files,
})

// setLogFormat decodes
//
//	log_format "main" {
//	  escape = "json"                       # default | json | none
//	  format = "$remote_addr ${request_time} \"${request}\""
//	}
func setLogFormat(c *httpcore.Cmd) error {
	b := c.Block()
	if len(b.Labels) != 1 {
		return conf.Errorf(b.TypeRange, "log_format needs a name: log_format \"main\" { format = \"...\" }")
	}
	name := b.Labels[0]
	m := mod.Cmd(c).main
	if _, dup := m.formats[strings.ToLower(name)]; dup {
		return conf.Errorf(b.LabelRanges[0], "duplicate log_format name %q", name)
	}
	if len(b.Body.Blocks) > 0 {
		return conf.Errorf(b.Body.Blocks[0].TypeRange, "unexpected block %q in log_format", b.Body.Blocks[0].Type)
	}
	f := &format{name: name, rng: b.TypeRange}
	var fa *hclsyntax.Attribute
	for _, a := range b.Body.Attributes {
		switch a.Name {
		case "format":
			fa = a
		case "escape":
			s, err := conf.String(a)
			if err != nil {
				return err
			}
			esc, ok := parseEscaping(s)
			if !ok {
				return conf.Errorf(a.Expr.Range(), "unknown log format escaping %q (expected default, json or none)", s)
			}
			f.escape = esc
		default:
			return conf.Errorf(a.NameRange, "unknown field %q in log_format (expected format or escape)", a.Name)
		}
	}
	if fa == nil {
		return conf.Errorf(b.TypeRange, "log_format %q needs a format", name)
	}
	ops, err := compileFormat(c, fa.Expr)
	if err != nil {
		return err
	}
	f.ops = ops
	m.formats[strings.ToLower(name)] = f
	return nil
}

// setAccessLog decodes
//
//	access_log = "off"
//	access_log = "logs/access.log"                                   # combined
//	access_log = "logs/access.log main buffer=32k flush=5s gzip=1 if=$loggable"
//	access_log = { path = "logs/api.log", format = "json", buffer = "64k", flush = "1s",
//	               if = status != "200" }
//	access_log = ["logs/access.log", { path = "logs/json.log", format = "json" }]
func setAccessLog(c *httpcore.Cmd) error {
	cf := mod.Cmd(c)
	e := c.Attr().Expr
	var elems []hclsyntax.Expression
	if t, ok := e.(*hclsyntax.TupleConsExpr); ok {
		elems = t.Exprs
		if len(elems) == 0 {
			return conf.Errorf(e.Range(), "access_log needs a path, or \"off\"")
		}
	} else {
		elems = []hclsyntax.Expression{e}
	}
	var logs []*logSpec
	for _, x := range elems {
		spec, off, err := parseLog(c, x)
		if err != nil {
			return err
		}
		if off {
			if len(elems) > 1 {
				return conf.Errorf(x.Range(), "\"off\" turns the access log off and cannot be listed with logs")
			}
			cf.logs = nil
			return nil
		}
		logs = append(logs, spec)
	}
	cf.logs = logs
	return nil
}

// parseLog decodes one access log, in the string or the object form.
func parseLog(c *httpcore.Cmd, e hclsyntax.Expression) (*logSpec, bool, error) {
	spec := &logSpec{formatName: "combined", rng: e.Range(), formatRng: e.Range()}
	if obj, ok := e.(*hclsyntax.ObjectConsExpr); ok {
		fields, err := conf.ObjectFields(obj)
		if err != nil {
			return nil, false, err
		}
		if err := conf.CheckFields(fields, "path", "format", "buffer", "flush", "gzip", "if"); err != nil {
			return nil, false, err
		}
		for _, f := range fields {
			switch f.Name {
			case "path":
				if spec.path, err = staticString(f.Expr, "access_log paths"); err != nil {
					return nil, false, err
				}
				spec.rng = f.Expr.Range()
			case "format":
				if spec.formatName, err = conf.ExprString(f.Expr); err != nil {
					return nil, false, err
				}
				spec.formatRng = f.Expr.Range()
			case "buffer":
				if spec.buffer, err = conf.ExprSize(f.Expr); err != nil {
					return nil, false, err
				}
				if spec.buffer == 0 {
					return nil, false, conf.Errorf(f.Expr.Range(), "invalid buffer size 0")
				}
				spec.bufferSet = true
			case "flush":
				if spec.flush, err = conf.ExprDuration(f.Expr); err != nil {
					return nil, false, err
				}
				if spec.flush <= 0 {
					return nil, false, conf.Errorf(f.Expr.Range(), "invalid flush time 0")
				}
			case "gzip":
				if spec.gzip, err = parseGzip(f.Expr); err != nil {
					return nil, false, err
				}
			case "if":
				if spec.ifExpr, err = c.Expr(f.Expr); err != nil {
					return nil, false, err
				}
			}
		}
		if spec.path == "" {
			return nil, false, conf.Errorf(obj.Range(), "access_log needs a path")
		}
		if spec.path == "off" {
			return nil, false, conf.Errorf(obj.Range(), "write access_log = \"off\" to turn the access log off")
		}
	} else {
		s, err := staticString(e, "access_log paths")
		if err != nil {
			return nil, false, err
		}
		fields := strings.Fields(s)
		if len(fields) == 0 {
			return nil, false, conf.Errorf(e.Range(), "access_log needs a path, or \"off\"")
		}
		if fields[0] == "off" {
			if len(fields) > 1 {
				return nil, false, conf.Errorf(e.Range(), "invalid parameter %q after \"off\"", fields[1])
			}
			return nil, true, nil
		}
		spec.path = fields[0]
		params := fields[1:]
		if len(params) > 0 && !strings.Contains(params[0], "=") && params[0] != "gzip" {
			spec.formatName = params[0]
			params = params[1:]
		}
		for _, p := range params {
			k, v, _ := strings.Cut(p, "=")
			switch k {
			case "buffer":
				n, err := conf.ParseSize(v)
				if err != nil || n == 0 {
					return nil, false, conf.Errorf(e.Range(), "invalid buffer size %q", v)
				}
				spec.buffer, spec.bufferSet = n, true
			case "flush":
				d, err := conf.ParseDuration(v)
				if err != nil || d <= 0 {
					return nil, false, conf.Errorf(e.Range(), "invalid flush time %q", v)
				}
				spec.flush = d
			case "gzip":
				spec.gzip = 1
				if p != "gzip" {
					n, ok := gzipLevel(v)
					if !ok {
						return nil, false, conf.Errorf(e.Range(), "invalid compression level %q", v)
					}
					spec.gzip = n
				}
			case "if":
				if spec.ifOps, err = compileText(v, e.Range()); err != nil {
					return nil, false, err
				}
			default:
				return nil, false, conf.Errorf(e.Range(), "invalid parameter %q", p)
			}
		}
	}
	if spec.flush > 0 && !spec.bufferSet && spec.gzip == 0 {
		return nil, false, conf.Errorf(e.Range(), "no buffer is defined for access_log %q", spec.path)
	}
	if spec.gzip > 0 && !spec.bufferSet {
		spec.buffer, spec.bufferSet = 64<<10, true
	}
	return spec, false, nil
}

// staticString decodes a string that may not refer to request variables.
func staticString(e hclsyntax.Expression, what string) (string, error) {
	if len(e.Variables()) > 0 {
		return "", conf.Errorf(e.Range(), "variables are not supported in %s", what)
	}
	return conf.ExprString(e)
}

func parseGzip(e hclsyntax.Expression) (int, error) {
	v, err := conf.StaticValue(e)
	if err != nil {
		return 0, err
	}
	if v.Type() == cty.Bool {
		if v.True() {
			return 1, nil
		}
		return 0, nil
	}
	s, err := conf.ExprString(e)
	if err != nil {
		return 0, err
	}
	n, ok := gzipLevel(s)
	if !ok {
		return 0, conf.Errorf(e.Range(), "invalid compression level %q (expected 1 to 9)", s)
	}
	return n, nil
}

func gzipLevel(s string) (int, bool) {
	if len(s) == 1 && s[0] >= '1' && s[0] <= '9' {
		return int(s[0] - '0'), true
	}
	return 0, false
}

func setLogSubrequest(c *httpcore.Cmd) error {
	return conf.BoolSlot(func(cc *httpcore.CoreConf) *bool { return &cc.LogSubrequest })(httpcore.CoreConfOf(c.Loc), c.Item)
}

// install adds the log-phase handler of every context that logs.
func install(l *httpcore.Location) error {
	cf := mod.Of(l)
	// The http context serves no request itself: its logs are only inherited.
	if len(cf.logs) == 0 || l.Context() == httpcore.CtxHTTP {
		return nil
	}
	logs := cf.logs
	l.AddInlineHandler(httpcore.PhaseLog, httpcore.OrderAccessLog, func(r *httpcore.Request) httpcore.Action {
		writeLogs(r, logs)
		return httpcore.Continue
	})
	return nil
}

// postconfig resolves the logs of the whole configuration: formats by name, user
// variables, and the files, which logs naming the same path share.
func postconfig(cfg *httpcore.Config) error {
	m := mod.Of(cfg.Root()).main
	var es conf.Errors
	for _, f := range m.formats {
		es.Add(f.rng, resolveOps(cfg, f.ops))
	}
	seen := map[*logSpec]bool{}
	for _, l := range cfg.Locations() {
		if l.Context() == httpcore.CtxHTTP {
			continue
		}
		for _, spec := range mod.Of(l).logs {
			if seen[spec] {
				continue
			}
			seen[spec] = true
			es.Add(spec.rng, resolveLog(cfg, m, spec))
		}
	}
	return es.Err()
}

func resolveLog(cfg *httpcore.Config, m *mainConf, spec *logSpec) error {
	f := m.formats[strings.ToLower(spec.formatName)]
	if f == nil {
		return conf.Errorf(spec.formatRng, "unknown log format %q", spec.formatName)
	}
	spec.format = f
	if err := resolveOps(cfg, spec.ifOps); err != nil {
		return err
	}
	path := conf.Resolve(cfg.Main.Prefix, spec.path)
	fs := m.byPath[path]
	if fs == nil {
		if err := checkWritable(path); err != nil {
			return conf.Errorf(spec.rng, "access log %s: %v", path, err)
		}
		fs = &fileSpec{idx: len(m.files), path: path}
		m.files = append(m.files, fs)
		m.byPath[path] = fs
	}
	spec.file = fs
	if spec.bufferSet {
		if fs.owner != nil && (fs.buffer != spec.buffer || fs.flush != spec.flush || fs.gzip != spec.gzip) {
			return conf.Errorf(spec.rng, "access_log %q already defined with conflicting parameters at %s", spec.path, fs.owner.rng)
		}
		fs.buffer, fs.flush, fs.gzip, fs.owner = spec.buffer, spec.flush, spec.gzip, spec
	}
	return nil
}

// files lists the access log files, for a master running as root to create them for
// its workers' user.
func files(cfg *httpcore.Config) []string {
	m := mod.Of(cfg.Root()).main
	out := make([]string, 0, len(m.files))
	for _, f := range m.files {
		out = append(out, f.path)
	}
	return out
}

// initWorker opens the log files of this worker.
func initWorker(cfg *httpcore.Config, w *httpcore.Worker) error {
	m := mod.Of(cfg.Root()).main
	st := &state{cfg: cfg, files: make([]*logFile, len(m.files))}
	for i, fs := range m.files {
		lf, err := openLogFile(cfg, fs)
		if err != nil {
			st.close()
			return err
		}
		st.files[i] = lf
	}
	mod.SetState(cfg, st)
	return nil
}

// exitWorker writes out the buffers and closes the files.
func exitWorker(cfg *httpcore.Config) {
	if st, ok := mod.State(cfg).(*state); ok {
		st.close()
	}
}

// reopen writes out the buffers and opens the files anew (log rotation, USR1).
func reopen(cfg *httpcore.Config) {
	if st, ok := mod.State(cfg).(*state); ok {
		st.reopen()
	}
}

// state is a worker's open log files.
type state struct {
	cfg   *httpcore.Config
	files []*logFile
}

func (st *state) close() {
	for _, f := range st.files {
		if f != nil {
			f.close()
		}
	}
}

func (st *state) reopen() {
	for _, f := range st.files {
		f.reopen()
	}
}

// writeLogs writes the request's line to each of logs.
func writeLogs(r *httpcore.Request, logs []*logSpec) {
	st, ok := mod.State(r.Config()).(*state)
	if !ok {
		return
	}
	bp := linePool.Get().(*[]byte)
	for _, spec := range logs {
		if !spec.enabled(r) {
			continue
		}
		line := appendOps((*bp)[:0], spec.format.ops, spec.format.escape, r)
		line = append(line, '\n')
		st.files[spec.file.idx].write(line)
		*bp = line
	}
	if cap(*bp) <= 64<<10 {
		linePool.Put(bp)
	}
}

// enabled evaluates the log's condition: nginx's if=, false when the value is empty
// or "0".
func (spec *logSpec) enabled(r *httpcore.Request) bool {
	switch {
	case spec.ifExpr != nil:
		ok, err := spec.ifExpr.Bool(r)
		if err != nil {
			r.Logf(httpcore.LogError, "access_log if: %v", err)
		}
		return ok
	case spec.ifOps != nil:
		v := string(appendOps(nil, spec.ifOps, EscapeNone, r))
		return v != "" && v != "0"
	}
	return true
}
