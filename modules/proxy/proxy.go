// Package proxy is spindle's proxy module, nginx's ngx_http_proxy_module: proxy_pass
// to an upstream block or a URL over HTTP/1.1 with keepalive connections, request and
// response bodies streamed in both directions (never held whole in memory), the
// next server tried on connection failures and timeouts for requests that can be
// repeated, and WebSocket (and any HTTP Upgrade) tunnels.
package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/upstream"
)

// Conf is a location's proxy configuration.
type Conf struct {
	loc  *httpcore.Location // the location proxy_pass is written in
	pass *target

	headers        []setHeader
	hide           []string
	passHeaders    []string
	connectTimeout time.Duration
	sendTimeout    time.Duration
	readTimeout    time.Duration
	next           nextSet
	nextTries      int
	nextTimeout    time.Duration
	redirect       redirectMode
	redirects      []redirectRule
	passReqHeaders bool
	passReqBody    bool
	intercept      bool
}

type setHeader struct {
	name  string
	lname string // name in lower case, for the per-request comparisons
	val   *httpcore.Expr
}

type redirectMode uint8

const (
	redirectDefault redirectMode = iota
	redirectOff
	redirectRules
)

type redirectRule struct{ from, to *httpcore.Expr }

// nextSet is proxy_next_upstream: the failures after which the next server is tried.
type nextSet uint16

const (
	nextError nextSet = 1 << iota
	nextTimeout
	nextInvalidHeader
	nextHTTP500
	nextHTTP502
	nextHTTP503
	nextHTTP504
	nextHTTP403
	nextHTTP404
	nextHTTP429
	nextNonIdempotent
)

var nextNames = map[string]nextSet{
	"error": nextError, "timeout": nextTimeout, "invalid_header": nextInvalidHeader,
	"http_500": nextHTTP500, "http_502": nextHTTP502, "http_503": nextHTTP503, "http_504": nextHTTP504,
	"http_403": nextHTTP403, "http_404": nextHTTP404, "http_429": nextHTTP429, "non_idempotent": nextNonIdempotent,
}

func statusNext(code int) nextSet {
	switch code {
	case 500:
		return nextHTTP500
	case 502:
		return nextHTTP502
	case 503:
		return nextHTTP503
	case 504:
		return nextHTTP504
	case 403:
		return nextHTTP403
	case 404:
		return nextHTTP404
	case 429:
		return nextHTTP429
	}
	return 0
}

// target is where proxy_pass sends requests: fixed when it has no variables,
// computed per request otherwise.
type target struct {
	up     *upstream.Upstream
	host   string // $proxy_host: the upstream name or host[:port] as written
	port   string // $proxy_port
	uri    string // the URI part, if any
	hasURI bool
	expr   *httpcore.Expr
	prefix string // the location prefix the URI part replaces
}

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf {
	return &Conf{
		connectTimeout: 60 * time.Second,
		sendTimeout:    60 * time.Second,
		readTimeout:    60 * time.Second,
		next:           nextError | nextTimeout,
		passReqHeaders: true,
		passReqBody:    true,
	}
})

// Module is the proxy module.
var Module = httpcore.Register(&httpcore.Module{
	Name:  "proxy",
	Order: httpcore.OrderContent,
	Conf:  mod,
	Directives: []httpcore.Directive{
		{Name: "proxy_pass", Context: httpcore.CtxLocation | httpcore.CtxIf, Set: setPass},
		{Name: "proxy_set_header", Context: httpcore.CtxAll, Set: setHeaders},
		{Name: "proxy_hide_header", Context: httpcore.CtxAll, Set: httpcore.SetList(func(c *Conf) *[]string { return &c.hide })},
		{Name: "proxy_pass_header", Context: httpcore.CtxAll, Set: httpcore.SetList(func(c *Conf) *[]string { return &c.passHeaders })},
		{Name: "proxy_connect_timeout", Context: httpcore.CtxAll, Set: httpcore.SetDuration(func(c *Conf) *time.Duration { return &c.connectTimeout })},
		{Name: "proxy_send_timeout", Context: httpcore.CtxAll, Set: httpcore.SetDuration(func(c *Conf) *time.Duration { return &c.sendTimeout })},
		{Name: "proxy_read_timeout", Context: httpcore.CtxAll, Set: httpcore.SetDuration(func(c *Conf) *time.Duration { return &c.readTimeout })},
		{Name: "proxy_next_upstream", Context: httpcore.CtxAll, Set: setNext},
		{Name: "proxy_next_upstream_tries", Context: httpcore.CtxAll, Set: httpcore.SetCount(0, conf.NoMax, func(c *Conf) *int { return &c.nextTries })},
		{Name: "proxy_next_upstream_timeout", Context: httpcore.CtxAll, Set: httpcore.SetDuration(func(c *Conf) *time.Duration { return &c.nextTimeout })},
		{Name: "proxy_redirect", Context: httpcore.CtxAll, Set: setRedirect},
		{Name: "proxy_pass_request_headers", Context: httpcore.CtxAll, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.passReqHeaders })},
		{Name: "proxy_pass_request_body", Context: httpcore.CtxAll, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.passReqBody })},
		{Name: "proxy_intercept_errors", Context: httpcore.CtxAll, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.intercept })},
	},
	Install:    install,
	InitWorker: initWorker,
	ExitWorker: exitWorker,
})

func init() {
	registerVars()
}

func install(l *httpcore.Location) error {
	c := mod.Of(l)
	if c.pass == nil {
		return nil
	}
	// proxy_pass belongs to its location and that location's if blocks.
	if c.loc != l && !(l.Context() == httpcore.CtxIf && c.loc == l.Parent) {
		return nil
	}
	return l.SetContent("proxy", c.handle)
}

// setPass parses proxy_pass: "http://upstream_name[/uri]", "http://host:port[/uri]",
// or a template with variables resolved per request.
func setPass(c *httpcore.Cmd) error {
	pc := mod.Cmd(c)
	e, err := c.AttrExpr()
	if err != nil {
		return err
	}
	pc.loc = c.Loc
	if !e.IsConst() {
		pc.pass = &target{expr: e}
		return nil
	}
	s, err := conf.String(c.Attr())
	if err != nil {
		return err
	}
	t, err := parseTarget(c.Config(), s, c.Attr().Expr.Range())
	if err != nil {
		return err
	}
	if t.hasURI {
		l := c.Loc
		if l.Context() == httpcore.CtxIf || l.Match == httpcore.MatchRegex || l.Match == httpcore.MatchRegexCI || l.Match == httpcore.MatchNamed {
			return conf.Errorf(c.Attr().Expr.Range(), "proxy_pass cannot have a URI part in a location given by a regular expression, inside a named location or inside an if block")
		}
		t.prefix = l.Path
	}
	pc.pass = t
	return nil
}

func parseTarget(cfg *httpcore.Config, s string, rng hcl.Range) (*target, error) {
	rest, ok := strings.CutPrefix(s, "http://")
	if !ok {
		if strings.HasPrefix(s, "https://") {
			return nil, conf.Errorf(rng, "https upstreams are not supported: proxy_pass takes http:// URLs")
		}
		return nil, conf.Errorf(rng, "invalid URL prefix in %q: proxy_pass takes http://", s)
	}
	hostport, uri := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hostport, uri = rest[:i], rest[i:]
		if uri[0] == '?' {
			uri = "/" + uri
		}
	}
	if hostport == "" {
		return nil, conf.Errorf(rng, "no host in %q", s)
	}
	t := &target{uri: uri, hasURI: uri != ""}
	u, err := upstream.Resolve(cfg, upstream.TypeHTTP, hostport, rng)
	if err != nil {
		return nil, err
	}
	t.up = u
	t.host, t.port = hostport, "80"
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		t.port = p
		if p == "80" {
			t.host = h
		}
	}
	return t, nil
}

// setHeaders parses proxy_set_header = { Name = "value template", ... }; an empty
// value keeps the header from being passed.
func setHeaders(c *httpcore.Cmd) error {
	fields, err := conf.ObjectFields(c.Attr().Expr)
	if err != nil {
		return err
	}
	var hs []setHeader
	for _, f := range fields {
		e, err := c.Expr(f.Expr)
		if err != nil {
			return err
		}
		hs = append(hs, setHeader{name: f.Name, lname: strings.ToLower(f.Name), val: e})
	}
	mod.Cmd(c).headers = hs
	return nil
}

func setNext(c *httpcore.Cmd) error {
	names, err := conf.Strings(c.Attr())
	if err != nil {
		return err
	}
	var set nextSet
	for _, n := range names {
		if n == "off" {
			if len(names) > 1 {
				return conf.Errorf(c.Attr().Expr.Range(), "\"off\" cannot be combined with other proxy_next_upstream values")
			}
			continue
		}
		v, ok := nextNames[n]
		if !ok {
			return conf.Errorf(c.Attr().Expr.Range(), "unknown proxy_next_upstream value %q", n)
		}
		set |= v
	}
	mod.Cmd(c).next = set
	return nil
}

// setRedirect parses proxy_redirect: "default", "off", or a list of [from, to] pairs.
func setRedirect(c *httpcore.Cmd) error {
	pc := mod.Cmd(c)
	e := c.Attr().Expr
	if t, ok := e.(*hclsyntax.TupleConsExpr); ok {
		pc.redirect, pc.redirects = redirectRules, nil
		for _, x := range t.Exprs {
			pair, ok := x.(*hclsyntax.TupleConsExpr)
			if !ok || len(pair.Exprs) != 2 {
				return conf.Errorf(x.Range(), "proxy_redirect rules are [from, to] pairs")
			}
			from, err := c.Expr(pair.Exprs[0])
			if err != nil {
				return err
			}
			to, err := c.Expr(pair.Exprs[1])
			if err != nil {
				return err
			}
			pc.redirects = append(pc.redirects, redirectRule{from, to})
		}
		return nil
	}
	s, err := conf.ExprString(e)
	if err != nil {
		return err
	}
	switch s {
	case "default":
		pc.redirect = redirectDefault
	case "off":
		pc.redirect = redirectOff
	default:
		return conf.Errorf(e.Range(), "proxy_redirect is \"default\", \"off\" or a list of [from, to] pairs")
	}
	return nil
}

// reqState is the proxy module's per-request context, for $proxy_host and friends.
type reqState struct {
	host, port string
}

func registerVars() {
	httpcore.RegisterVar("proxy_host", func(r *httpcore.Request) string {
		if s, ok := mod.Ctx(r).(*reqState); ok {
			return s.host
		}
		return ""
	})
	httpcore.RegisterVar("proxy_port", func(r *httpcore.Request) string {
		if s, ok := mod.Ctx(r).(*reqState); ok {
			return s.port
		}
		return ""
	})
	httpcore.RegisterVar("proxy_add_x_forwarded_for", addXForwardedFor)
}

func addXForwardedFor(r *httpcore.Request) string {
	ip, _, err := net.SplitHostPort(r.RemoteAddr())
	if err != nil {
		ip = r.RemoteAddr()
	}
	if prev := r.HeaderValues("X-Forwarded-For"); len(prev) > 0 {
		return strings.Join(prev, ", ") + ", " + ip
	}
	return ip
}

// workerState holds a worker's keepalive pools, one per http upstream.
type workerState struct {
	mu    sync.Mutex
	pools map[*upstream.Upstream]*pool
}

var lazyMu sync.Mutex

func initWorker(cfg *httpcore.Config, w *httpcore.Worker) error {
	ws := &workerState{pools: map[*upstream.Upstream]*pool{}}
	for _, u := range upstream.All(cfg) {
		if u.Type == upstream.TypeHTTP {
			ws.pools[u] = newPool(u)
		}
	}
	mod.SetState(cfg, ws)
	return nil
}

func exitWorker(cfg *httpcore.Config) {
	ws, _ := mod.State(cfg).(*workerState)
	if ws == nil {
		return
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, p := range ws.pools {
		p.close()
	}
}

func poolFor(cfg *httpcore.Config, u *upstream.Upstream) *pool {
	ws, _ := mod.State(cfg).(*workerState)
	if ws == nil {
		lazyMu.Lock()
		ws, _ = mod.State(cfg).(*workerState)
		if ws == nil {
			initWorker(cfg, nil)
			ws = mod.State(cfg).(*workerState)
		}
		lazyMu.Unlock()
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	p := ws.pools[u]
	if p == nil {
		p = newPool(u)
		ws.pools[u] = p
	}
	return p
}

// PoolStats reports, for tests and status pages, the idle connections a worker keeps
// for an upstream and how many connections it has dialed.
func PoolStats(cfg *httpcore.Config, u *upstream.Upstream) (idle int, dialed int64) {
	p := poolFor(cfg, u)
	return p.Idle(), p.created.Load()
}

// hop-by-hop headers are not passed in either direction (RFC 9110 7.6.1), nor are the
// framing headers spindle sets itself.
func hopByHop(name string) bool { return lowerIn(name, hopByHopNames) }

// forwardingNames are the headers buildHead sets from the client's address.
var forwardingNames = []string{"x-forwarded-for", "x-real-ip", "x-forwarded-proto"}

var hopByHopNames = []string{"connection", "keep-alive", "proxy-connection", "te", "trailer",
	"transfer-encoding", "upgrade", "content-length", "expect", "host"}

// lowerIs reports whether name in ASCII lower case is lower, a lower-case name: the
// header name comparisons of every proxied request, without the copy that
// strings.ToLower makes of a name with capitals (User-Agent). Header names are
// tokens, ASCII. Compared this way rather than through strings.ToLower and a map of
// the names proxy_set_header sets, a proxied GET with three request headers runs
// ~3,400 fewer of its ~62,000 instructions (buildHead 10.1k -> 7.2k, hidden 750 ->
// 220; BenchmarkProxyLoopback under callgrind) and makes 7 fewer allocations.
func lowerIs(name, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// lowerIn reports whether name is one of the lower-case names (lowerIs).
func lowerIn(name string, names []string) bool {
	for _, n := range names {
		if lowerIs(name, n) {
			return true
		}
	}
	return false
}

// sets reports whether proxy_set_header names the header (even with an empty value,
// which keeps the client's from being passed).
func (c *Conf) sets(name string) bool {
	for i := range c.headers {
		if lowerIs(name, c.headers[i].lname) {
			return true
		}
	}
	return false
}

func idempotent(method string) bool {
	switch method {
	case "POST", "LOCK", "PATCH":
		return false
	}
	return true
}

// failure is one failed attempt at a server.
type failure struct {
	kind    nextSet // nextError, nextTimeout or nextInvalidHeader
	status  int     // 502 or 504
	counted bool    // counts against the server's max_fails
}

func classify(err error) failure {
	var bh *errBadHeader
	switch {
	case errors.As(err, &bh):
		return failure{kind: nextInvalidHeader, status: 502, counted: true}
	case isTimeout(err):
		return failure{kind: nextTimeout, status: 504, counted: true}
	}
	return failure{kind: nextError, status: 502, counted: true}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// staleConn reports errors of a reused keepalive connection the server had already
// closed: the request never reached it, so it may go again on a new connection.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// request is one proxied request in flight.
type request struct {
	c       *Conf
	r       *httpcore.Request
	t       *target
	pl      *pool
	method  string
	uri     string
	upgrade string // the protocol the client asks to switch to
	head    []byte // the request head, minus the Connection header
	body    io.Reader
	bodyLen int64  // -1: chunked
	replay  []byte // the whole body when it can be sent again
	touched bool   // the streamed client body was read from
	start   time.Time
}

func (c *Conf) handle(r *httpcore.Request) httpcore.Action {
	t := c.pass
	if t.expr != nil {
		s, err := t.expr.String(r)
		if err != nil {
			r.Logf(httpcore.LogError, "proxy_pass: %v", err)
			return r.Error(500)
		}
		if t, err = runtimeTarget(r, s); err != nil {
			r.Logf(httpcore.LogError, "proxy_pass %q: %v", s, err)
			return r.Error(500)
		}
	}
	mod.SetCtx(r, &reqState{host: t.host, port: t.port})
	q := &request{c: c, r: r, t: t, method: r.Method(), start: time.Now()}
	q.pl = poolFor(r.Config(), t.up)
	q.uri = c.upstreamURI(r, t)
	if up := r.Header("Upgrade"); up != "" && !r.IsSubrequest() && r.Proto() == "HTTP/1.1" && connectionHas(r.HeaderValues("Connection"), "upgrade") {
		q.upgrade = up
	}
	if err := q.prepareBody(); err != nil {
		return q.clientBodyError(err)
	}
	var err error
	if q.head, err = q.buildHead(); err != nil {
		r.Logf(httpcore.LogError, "proxy: %v", err)
		return r.Error(500)
	}
	return q.run()
}

// runtimeTarget resolves a proxy_pass computed from variables: an upstream block by
// name, else an address, as nginx does (without a resolver for new names: they are
// looked up with the system's).
func runtimeTarget(r *httpcore.Request, s string) (*target, error) {
	rest, ok := strings.CutPrefix(s, "http://")
	if !ok {
		return nil, errors.New("invalid URL prefix (proxy_pass takes http://)")
	}
	hostport, uri := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hostport, uri = rest[:i], rest[i:]
		if uri[0] == '?' {
			uri = "/" + uri
		}
	}
	u, err := upstream.ResolveRuntime(r.Config(), upstream.TypeHTTP, hostport)
	if err != nil {
		return nil, err
	}
	t := &target{up: u, host: hostport, port: "80", uri: uri, hasURI: uri != ""}
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		t.port = p
		if p == "80" {
			t.host = h
		}
	}
	// With variables the URI given is the whole request URI (nginx).
	t.prefix = ""
	return t, nil
}

func connectionHas(values []string, token string) bool {
	for _, v := range values {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), token) {
				return true
			}
		}
	}
	return false
}

// upstreamURI is the request target sent upstream: without a URI part in
// proxy_pass, the client's URI as it came (or the changed URI, escaped); with one,
// the URI part replacing the location's prefix.
func (c *Conf) upstreamURI(r *httpcore.Request, t *target) string {
	uri, args := r.URI(), r.Args()
	if !t.hasURI {
		if !r.IsSubrequest() {
			raw := r.RequestURI()
			if strings.HasPrefix(raw, "/") {
				p, q, _ := strings.Cut(raw, "?")
				if n, ok := httpcore.NormalizePathString(p); ok && n == uri && q == args {
					return raw
				}
			}
		}
		return withArgs(escapePath(uri), args)
	}
	if c.pass.expr != nil {
		// A computed proxy_pass with a URI gives the whole URI.
		return t.uri
	}
	base, baseArgs, _ := strings.Cut(t.uri, "?")
	out := base
	if t.prefix != "" && strings.HasPrefix(uri, t.prefix) {
		out += escapePath(uri[len(t.prefix):])
	} else if t.prefix == "" {
		out += escapePath(strings.TrimPrefix(uri, "/"))
	} else {
		out = escapePath(uri)
	}
	switch {
	case baseArgs != "" && args != "":
		return out + "?" + baseArgs + "&" + args
	case baseArgs != "":
		return out + "?" + baseArgs
	}
	return withArgs(out, args)
}

func withArgs(p, args string) string {
	if args == "" {
		return p
	}
	return p + "?" + args
}

// escapePath escapes what a decoded URI may hold but a request target may not, as
// nginx's ngx_escape_uri does for proxied URIs.
func escapePath(s string) string {
	need := false
	for i := 0; i < len(s); i++ {
		if pathEscape(s[i]) {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if pathEscape(ch) {
			b.WriteByte('%')
			b.WriteByte(hex[ch>>4])
			b.WriteByte(hex[ch&15])
		} else {
			b.WriteByte(ch)
		}
	}
	return b.String()
}

func pathEscape(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '%' || c == '?' || c == '#' || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' || c == '`' || c == '{' || c == '|' || c == '}'
}

// prepareBody decides how the request body travels: streamed from the client (and
// then not repeatable once read), or from memory (subrequests, bodies already read).
func (q *request) prepareBody() error {
	r := q.r
	if !q.c.passReqBody {
		return nil
	}
	if r.IsSubrequest() {
		b, err := r.Body()
		if err != nil {
			return err
		}
		if len(b) > 0 {
			q.replay, q.bodyLen = b, int64(len(b))
		}
		return nil
	}
	if !r.HasBody() {
		return nil
	}
	q.bodyLen = r.RequestContentLength()
	q.body = &touchReader{rd: r.BodyReader(), q: q}
	return nil
}

type touchReader struct {
	rd io.Reader
	q  *request
}

func (t *touchReader) Read(p []byte) (int, error) {
	t.q.touched = true
	return t.rd.Read(p)
}

// clientErr marks an error reading the client's body, which is no fault of the
// upstream's.
type clientErr struct{ err error }

func (e clientErr) Error() string { return e.err.Error() }
func (e clientErr) Unwrap() error { return e.err }

func (q *request) clientBodyError(err error) httpcore.Action {
	r := q.r
	switch {
	case errors.Is(err, httpcore.ErrBodyTooLarge):
		return r.Error(413)
	case isTimeout(err):
		r.Logf(httpcore.LogInfo, "client timed out sending the request body")
		return r.Error(408)
	}
	r.Logf(httpcore.LogInfo, "client prematurely closed connection while sending the request body: %v", err)
	return r.Error(400)
}

// buildHead writes the request line and headers, except Connection, which depends
// on the connection used.
func (q *request) buildHead() ([]byte, error) {
	r, c := q.r, q.c
	// The request line and every header line go through the core's writers, which
	// %-escape what would end or split a line (a decoded URI in a computed proxy_pass,
	// a variable in proxy_set_header) and log it.
	b := r.AppendRequestLine(make([]byte, 0, 512), q.method, q.uri)
	emit := func(k, v string) {
		if v == "" {
			return // nginx sends no line for an empty proxy_set_header value
		}
		b = r.AppendHeaderLine(b, "upstream request header", k, v)
	}
	// proxy_set_header, then the defaults it does not override.
	var hostSet bool
	for _, h := range c.headers {
		v, err := h.val.String(r)
		if err != nil {
			return nil, err
		}
		if h.lname == "host" {
			hostSet = true
		} else if hopByHop(h.name) {
			continue
		}
		emit(h.name, v)
	}
	if !hostSet {
		emit("Host", q.t.host)
	}
	remote, _, err := net.SplitHostPort(r.RemoteAddr())
	if err != nil {
		remote = r.RemoteAddr()
	}
	if !c.sets("x-real-ip") {
		emit("X-Real-IP", remote)
	}
	if !c.sets("x-forwarded-for") {
		emit("X-Forwarded-For", addXForwardedFor(r))
	}
	if !c.sets("x-forwarded-proto") {
		emit("X-Forwarded-Proto", "http")
	}
	if c.passReqHeaders {
		conn := r.HeaderValues("Connection")
		r.VisitHeaders(func(k, v string) {
			if c.sets(k) || hopByHop(k) || connectionHas(conn, k) {
				return
			}
			if lowerIn(k, forwardingNames) {
				// Replaced by the values above unless proxy_set_header removed them.
				return
			}
			emit(k, v)
		})
	}
	if q.upgrade != "" {
		emit("Upgrade", q.upgrade)
	}
	switch {
	case q.replay != nil || q.bodyLen > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, q.bodyLen, 10)
		b = append(b, "\r\n"...)
	case q.bodyLen < 0 && q.body != nil:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case q.method == "POST" || q.method == "PUT" || q.method == "PATCH":
		b = append(b, "Content-Length: 0\r\n"...)
	}
	return b, nil
}
