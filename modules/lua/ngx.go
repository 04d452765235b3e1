package lua

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/spindle-server/spindle/internal/errlog"
	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// lOne is 1 as a Lua value, boxed once: APIs return it on success.
var lOne glua.LValue = glua.LNumber(1)

// ngx_lua's constants.
const (
	ngxOK       = 0
	ngxError    = -1
	ngxAgain    = -2
	ngxDone     = -4
	ngxDeclined = -5
)

// ngx.STDERR .. ngx.DEBUG, nginx's log levels.
const (
	logStderr = iota
	logEmerg
	logAlert
	logCrit
	logErr
	logWarn
	logNotice
	logInfo
	logDebug
)

func errlogLevel(l int) errlog.Level {
	switch {
	case l <= logEmerg:
		return errlog.Emerg
	case l >= logDebug:
		return errlog.Debug
	}
	return errlog.Level(l - 1)
}

var httpStatuses = map[string]int{
	"HTTP_CONTINUE": 100, "HTTP_SWITCHING_PROTOCOLS": 101,
	"HTTP_OK": 200, "HTTP_CREATED": 201, "HTTP_ACCEPTED": 202, "HTTP_NO_CONTENT": 204, "HTTP_PARTIAL_CONTENT": 206,
	"HTTP_SPECIAL_RESPONSE": 300, "HTTP_MOVED_PERMANENTLY": 301, "HTTP_MOVED_TEMPORARILY": 302, "HTTP_SEE_OTHER": 303,
	"HTTP_NOT_MODIFIED": 304, "HTTP_TEMPORARY_REDIRECT": 307, "HTTP_PERMANENT_REDIRECT": 308,
	"HTTP_BAD_REQUEST": 400, "HTTP_UNAUTHORIZED": 401, "HTTP_PAYMENT_REQUIRED": 402, "HTTP_FORBIDDEN": 403,
	"HTTP_NOT_FOUND": 404, "HTTP_NOT_ALLOWED": 405, "HTTP_NOT_ACCEPTABLE": 406, "HTTP_REQUEST_TIMEOUT": 408,
	"HTTP_CONFLICT": 409, "HTTP_GONE": 410, "HTTP_UPGRADE_REQUIRED": 426, "HTTP_TOO_MANY_REQUESTS": 429,
	"HTTP_CLOSE": 444, "HTTP_ILLEGAL": 451,
	"HTTP_INTERNAL_SERVER_ERROR": 500, "HTTP_METHOD_NOT_IMPLEMENTED": 501, "HTTP_BAD_GATEWAY": 502,
	"HTTP_SERVICE_UNAVAILABLE": 503, "HTTP_GATEWAY_TIMEOUT": 504, "HTTP_VERSION_NOT_SUPPORTED": 505,
	"HTTP_INSUFFICIENT_STORAGE": 507,
}

// ngx.HTTP_GET and friends are nginx's method bits.
var httpMethods = []struct {
	name string
	bit  int
}{
	{"GET", 0x2}, {"HEAD", 0x4}, {"POST", 0x8}, {"PUT", 0x10}, {"DELETE", 0x20}, {"MKCOL", 0x40},
	{"COPY", 0x80}, {"MOVE", 0x100}, {"OPTIONS", 0x200}, {"PROPFIND", 0x400}, {"PROPPATCH", 0x800},
	{"LOCK", 0x1000}, {"UNLOCK", 0x2000}, {"PATCH", 0x4000}, {"TRACE", 0x8000},
}

func methodName(bit int) (string, bool) {
	for _, m := range httpMethods {
		if m.bit == bit {
			return m.name, true
		}
	}
	return "", false
}

func setFuncs(L *glua.LState, t *glua.LTable, fs map[string]glua.LGFunction) {
	for k, f := range fs {
		t.RawSetString(k, L.NewFunction(f))
	}
}

// installNgx builds the ngx table of the VM.
func (v *vm) installNgx() {
	L := v.L
	ngx := L.NewTable()
	v.ngx = ngx
	v.null = L.NewUserData()
	nullMeta := L.NewTable()
	nullMeta.RawSetString("__tostring", L.NewFunction(func(L *glua.LState) int {
		L.Push(glua.LString("null"))
		return 1
	}))
	v.null.Metatable = nullMeta
	ngx.RawSetString("null", v.null)
	for k, n := range map[string]int{"OK": ngxOK, "ERROR": ngxError, "AGAIN": ngxAgain, "DONE": ngxDone, "DECLINED": ngxDeclined} {
		ngx.RawSetString(k, glua.LNumber(n))
	}
	for i, n := range []string{"STDERR", "EMERG", "ALERT", "CRIT", "ERR", "WARN", "NOTICE", "INFO", "DEBUG"} {
		ngx.RawSetString(n, glua.LNumber(i))
	}
	for k, n := range httpStatuses {
		ngx.RawSetString(k, glua.LNumber(n))
	}
	for _, m := range httpMethods {
		ngx.RawSetString("HTTP_"+m.name, glua.LNumber(m.bit))
	}
	setFuncs(L, ngx, map[string]glua.LGFunction{
		"say":          func(L *glua.LState) int { return v.output(L, true) },
		"print":        func(L *glua.LState) int { return v.output(L, false) },
		"flush":        v.ngxFlush,
		"eof":          v.ngxEOF,
		"send_headers": v.ngxSendHeaders,
		"exit":         v.ngxExit,
		"exec":         v.ngxExec,
		"redirect":     v.ngxRedirect,
		"log":          v.ngxLog,
		"get_phase":    func(L *glua.LState) int { L.Push(glua.LString(v.current(L).run.phase.String())); return 1 },
		"on_abort": func(L *glua.LState) int {
			L.Push(glua.LNil)
			L.Push(glua.LString("lua_check_client_abort is off"))
			return 2
		},
	})
	v.installVar(ngx)
	v.installReq(ngx)
	v.installResp(ngx)
	v.installLocation(ngx)
	v.installTime(ngx)
	v.installString(ngx)
	v.installRegex(ngx)
	v.installThread(ngx)
	v.installTimer(ngx)
	v.installSocket(ngx)
	v.installMisc(ngx)

	// ngx.status, ngx.ctx, ngx.headers_sent and ngx.is_subrequest are computed per
	// request.
	meta := L.NewTable()
	meta.RawSetString("__index", L.NewFunction(v.ngxIndex))
	meta.RawSetString("__newindex", L.NewFunction(v.ngxNewIndex))
	ngx.Metatable = meta
	L.SetGlobal("ngx", ngx)
	v.loaded.RawSetString("ngx", ngx)

	// print logs at NOTICE level, as in ngx_lua.
	L.SetGlobal("print", L.NewFunction(func(L *glua.LState) int {
		return v.logArgs(L, logNotice, 1)
	}))
}

func (v *vm) installMisc(ngx *glua.LTable) {
	L := v.L
	cfg := L.NewTable()
	cfg.RawSetString("subsystem", glua.LString("http"))
	cfg.RawSetString("debug", glua.LFalse)
	cfg.RawSetString("nginx_version", glua.LNumber(1025003))
	cfg.RawSetString("ngx_lua_version", glua.LNumber(10029))
	setFuncs(L, cfg, map[string]glua.LGFunction{
		"prefix": func(L *glua.LState) int {
			p := v.cfg.Main.Prefix
			if !strings.HasSuffix(p, "/") {
				p += "/"
			}
			L.Push(glua.LString(p))
			return 1
		},
		"nginx_configure": func(L *glua.LState) int { L.Push(glua.LString("")); return 1 },
	})
	ngx.RawSetString("config", cfg)
	w := L.NewTable()
	setFuncs(L, w, map[string]glua.LGFunction{
		"pid": func(L *glua.LState) int { L.Push(glua.LNumber(pid())); return 1 },
		"id": func(L *glua.LState) int {
			if v.worker == nil {
				L.Push(glua.LNil)
			} else {
				L.Push(glua.LNumber(v.worker.ID))
			}
			return 1
		},
		"count": func(L *glua.LState) int {
			n := 1
			if v.worker != nil && v.worker.Count > 0 {
				n = v.worker.Count
			}
			L.Push(glua.LNumber(n))
			return 1
		},
		"exiting": func(L *glua.LState) int { L.Push(glua.LBool(v.exiting.Load())); return 1 },
	})
	ngx.RawSetString("worker", w)
}

// current returns the thread running Lua code in the VM.
func (v *vm) current(L *glua.LState) *thread {
	t := v.cur.Load()
	if t == nil {
		L.RaiseError("no Lua handler is running")
	}
	return t
}

// request returns the running thread and its request, raising outside of requests.
func (v *vm) request(L *glua.LState) (*thread, *httpcore.Request) {
	t := v.current(L)
	if t.run.r == nil {
		L.RaiseError("no request found")
	}
	return t, t.run.r
}

func (v *vm) ngxIndex(L *glua.LState) int {
	key := L.CheckString(2)
	switch key {
	case "status":
		_, r := v.request(L)
		L.Push(glua.LNumber(r.Status()))
	case "ctx":
		L.Push(v.ctxTable(L))
	case "headers_sent":
		_, r := v.request(L)
		L.Push(glua.LBool(r.HeaderSent()))
	case "is_subrequest":
		_, r := v.request(L)
		L.Push(glua.LBool(r.IsSubrequest()))
	default:
		L.Push(glua.LNil)
	}
	return 1
}

func (v *vm) ngxNewIndex(L *glua.LState) int {
	key := L.CheckString(2)
	switch key {
	case "status":
		t, r := v.request(L)
		if p := t.run.phase; p != phaseRewrite && p != phaseAccess && p != phaseContent && p != phaseHeaderFilter && p != phaseSet {
			return apiDisabled(L, "ngx.status", p)
		}
		n := checkInt(L, 3)
		if r.HeaderSent() && t.run.phase != phaseHeaderFilter {
			r.Logf(httpcore.LogError, "attempt to set ngx.status after sending out response headers")
			return 0
		}
		r.SetStatus(n)
	case "ctx":
		tbl := L.CheckTable(3)
		t := v.current(L)
		if t.run.r != nil {
			dataOf(t.run.r).ctx = tbl
		} else {
			t.run.ctx = tbl
		}
	default:
		L.RawSet(L.CheckTable(1), L.Get(2), L.Get(3))
	}
	return 0
}

// reqData is the Lua module's per-request state, kept across phases (r.ModuleCtx);
// an internal redirect resets it, and with it ngx.ctx, as in ngx_lua.
type reqData struct {
	ctx       *glua.LTable
	bodyRead  bool
	eof       bool // ngx.eof was called
	filterEOF bool // a body filter set ngx.arg[2]: the rest of the body is dropped
}

func dataOf(r *httpcore.Request) *reqData {
	d, _ := mod.Ctx(r).(*reqData)
	if d == nil {
		d = &reqData{}
		mod.SetCtx(r, d)
	}
	return d
}

func peekData(r *httpcore.Request) *reqData {
	d, _ := mod.Ctx(r).(*reqData)
	return d
}

// ctxTable is ngx.ctx: per request, shared by its phases; per run for timers.
func (v *vm) ctxTable(L *glua.LState) *glua.LTable {
	t := v.current(L)
	if t.run.r == nil {
		if t.run.ctx == nil {
			t.run.ctx = L.CreateTable(0, 4)
		}
		return t.run.ctx
	}
	d := dataOf(t.run.r)
	if d.ctx == nil {
		d.ctx = L.CreateTable(0, 4)
	}
	return d.ctx
}

// output is ngx.say and ngx.print.
func (v *vm) output(L *glua.LState, newline bool) int {
	t := v.current(L)
	ru := t.run
	if !ru.phase.canOutput() {
		return apiDisabled(L, "output", ru.phase)
	}
	r := ru.r
	if d := peekData(r); d != nil && d.eof {
		L.Push(glua.LNil)
		L.Push(glua.LString("seen eof"))
		return 2
	}
	buf := v.scratch[:0]
	v.scratch = nil // ours until the write is done, even while the VM is unlocked
	top := L.GetTop()
	for i := 1; i <= top; i++ {
		buf = v.appendValue(L, buf, L.Get(i), i, newline)
	}
	if newline {
		buf = append(buf, '\n')
	}
	var err error
	if !r.Location().HasFilters() && len(r.Output())+len(buf) < 16<<10 {
		// Only buffered: no filter to run, no flush to the client.
		_, err = r.Write(buf)
	} else {
		// Header and body filters may run Lua code, and the write may wait for the
		// client.
		v.unlockVM(t)
		_, err = r.Write(buf)
		v.lockVM(t)
	}
	if cap(buf) <= 64<<10 && (v.scratch == nil || cap(v.scratch) < cap(buf)) {
		v.scratch = buf[:0]
	}
	if t.killed.Load() {
		panic(v.killErr)
	}
	if err != nil {
		L.Push(glua.LNil)
		L.Push(glua.LString(err.Error()))
		return 2
	}
	L.Push(lOne)
	return 1
}

// appendValue formats one argument of ngx.say/print: strings, numbers, booleans, nil,
// ngx.null and (nested) arrays of them.
func (v *vm) appendValue(L *glua.LState, buf []byte, lv glua.LValue, arg int, say bool) []byte {
	switch x := lv.(type) {
	case glua.LString:
		return append(buf, x...)
	case glua.LNumber:
		return appendNumber(buf, float64(x))
	case glua.LBool:
		if x {
			return append(buf, "true"...)
		}
		return append(buf, "false"...)
	case *glua.LNilType:
		return append(buf, "nil"...)
	case *glua.LUserData:
		if x == v.null {
			return append(buf, "null"...)
		}
	case *glua.LTable:
		n := x.MaxN()
		cnt := 0
		x.ForEach(func(glua.LValue, glua.LValue) { cnt++ })
		if cnt != n {
			L.ArgError(arg, "non-array table found")
		}
		for i := 1; i <= n; i++ {
			buf = v.appendValue(L, buf, x.RawGetInt(i), arg, say)
		}
		return buf
	}
	name := "print"
	if say {
		name = "say"
	}
	L.RaiseError("bad argument #%d to '%s' (string, number, boolean, nil, ngx.null, or array table expected, got %s)", arg, name, lv.Type())
	return buf
}

// appendNumber formats as Lua's tostring does (%.14g).
func appendNumber(buf []byte, f float64) []byte {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.AppendInt(buf, int64(f), 10)
	}
	if math.IsInf(f, 0) {
		if f > 0 {
			return append(buf, "inf"...)
		}
		return append(buf, "-inf"...)
	}
	if math.IsNaN(f) {
		return append(buf, "nan"...)
	}
	return strconv.AppendFloat(buf, f, 'g', 14, 64)
}

func (v *vm) ngxFlush(L *glua.LState) int {
	t := v.current(L)
	if !t.run.phase.canOutput() {
		return apiDisabled(L, "ngx.flush", t.run.phase)
	}
	var err error
	v.busy(t, func() { err = t.run.r.Flush() })
	return okOrErr(L, err)
}

func (v *vm) ngxEOF(L *glua.LState) int {
	t := v.current(L)
	if !t.run.phase.canOutput() {
		return apiDisabled(L, "ngx.eof", t.run.phase)
	}
	r := t.run.r
	d := dataOf(r)
	if d.eof {
		L.Push(glua.LNil)
		L.Push(glua.LString("seen eof"))
		return 2
	}
	d.eof = true
	var err error
	v.busy(t, func() { err = r.EOF() })
	return okOrErr(L, err)
}

func (v *vm) ngxSendHeaders(L *glua.LState) int {
	t := v.current(L)
	if !t.run.phase.canOutput() {
		return apiDisabled(L, "ngx.send_headers", t.run.phase)
	}
	var err error
	v.busy(t, func() { err = t.run.r.SendHeader() })
	return okOrErr(L, err)
}

func okOrErr(L *glua.LState, err error) int {
	if err != nil {
		L.Push(glua.LNil)
		L.Push(glua.LString(err.Error()))
		return 2
	}
	L.Push(lOne)
	return 1
}

// ngxExit ends the handler: ngx.exit(ngx.OK) only the current phase handler,
// ngx.exit(status >= 200) the request.
func (v *vm) ngxExit(L *glua.LState) int {
	t := v.current(L)
	ru := t.run
	switch ru.phase {
	case phaseRewrite, phaseAccess, phaseContent, phaseHeaderFilter, phaseTimer:
	default:
		return apiDisabled(L, "ngx.exit", ru.phase)
	}
	code := checkInt(L, 1)
	if !(code == ngxOK || code == ngxError || code == ngxDone || code == ngxDeclined || code >= 200 && code < 1000) {
		L.ArgError(1, fmt.Sprintf("bad status code %d", code))
	}
	ru.exit, ru.code = exitStatus, code
	return v.unwind(t)
}

func (v *vm) ngxExec(L *glua.LState) int {
	t, r := v.request(L)
	ru := t.run
	if !ru.phase.canOutput() {
		return apiDisabled(L, "ngx.exec", ru.phase)
	}
	uri := L.CheckString(1)
	if uri == "" {
		L.ArgError(1, "empty uri")
	}
	args := ""
	if L.GetTop() >= 2 {
		args = v.argsString(L, 2)
	}
	if !strings.HasPrefix(uri, "@") {
		if p, q, ok := strings.Cut(uri, "?"); ok {
			uri = p
			if args == "" {
				args = q
			} else if q != "" {
				args = q + "&" + args
			}
		}
		norm, ok := httpcore.NormalizePathString(uri)
		if !ok {
			L.RaiseError("unsafe uri %q in ngx.exec", uri)
		}
		uri = norm
	}
	if r.HeaderSent() {
		L.RaiseError("attempt to call ngx.exec after sending out response headers")
	}
	ru.exit, ru.execURI, ru.execArgs = exitExec, uri, args
	return v.unwind(t)
}

func (v *vm) ngxRedirect(L *glua.LState) int {
	t, r := v.request(L)
	ru := t.run
	if !ru.phase.canOutput() {
		return apiDisabled(L, "ngx.redirect", ru.phase)
	}
	uri := L.CheckString(1)
	code := optInt(L, 2, 302)
	switch code {
	case 301, 302, 303, 307, 308:
	default:
		L.RaiseError("only ngx.HTTP_MOVED_TEMPORARILY, ngx.HTTP_MOVED_PERMANENTLY, ngx.HTTP_PERMANENT_REDIRECT, ngx.HTTP_SEE_OTHER, and ngx.HTTP_TEMPORARY_REDIRECT are allowed")
	}
	for i := 0; i < len(uri); i++ {
		// As ngx_lua (t/022-redirect.t TEST 18-22): a control byte but HTAB, or DEL,
		// is an error, and the request a 500 without a Location.
		if c := uri[i]; c < 0x20 && c != '\t' || c == 0x7f {
			L.RaiseError("unsafe byte \"0x%02x\" in redirect uri \"%s\"", c, escapeLog(uri))
		}
	}
	if r.HeaderSent() {
		L.RaiseError("attempt to call ngx.redirect after sending out the headers")
	}
	if strings.HasPrefix(uri, "/") {
		uri = r.AbsoluteURL(uri)
	}
	r.RespHeader().Set("Location", uri)
	ru.exit, ru.code = exitStatus, code
	return v.unwind(t)
}

// ngxLog is ngx.log(level, ...).
func (v *vm) ngxLog(L *glua.LState) int {
	level := checkInt(L, 1)
	if level < logStderr || level > logDebug {
		L.ArgError(1, fmt.Sprintf("bad log level: %d", level))
	}
	return v.logArgs(L, level, 2)
}

// logArgs writes the arguments from index first to the error log with the caller's
// position, as ngx_lua: "[lua] content_by_lua(spindle.hcl:12):3: message".
func (v *vm) logArgs(L *glua.LState, level, first int) int {
	lvl := errlogLevel(level)
	if !v.cfg.Log().Enabled(lvl) {
		return 0
	}
	var sb strings.Builder
	for i := first; i <= L.GetTop(); i++ {
		switch x := L.Get(i).(type) {
		case glua.LString:
			sb.WriteString(string(x))
		case glua.LNumber:
			sb.Write(appendNumber(nil, float64(x)))
		case *glua.LNilType:
			sb.WriteString("nil")
		case glua.LBool:
			if x {
				sb.WriteString("true")
			} else {
				sb.WriteString("false")
			}
		case *glua.LUserData:
			if x == v.null {
				sb.WriteString("null")
				break
			}
			sb.WriteString(L.ToStringMeta(x).String())
		default:
			if s := L.ToStringMeta(x); s.Type() == glua.LTString {
				sb.WriteString(s.String())
			} else {
				L.ArgError(i, "string, number, boolean, or nil expected, got "+x.Type().String())
			}
		}
	}
	where := strings.TrimSuffix(L.Where(1), ":")
	msg := "[lua] " + where + ": " + sb.String()
	if where == "" {
		msg = "[lua] " + sb.String()
	}
	t := v.cur.Load()
	if t != nil && t.run.r != nil {
		t.run.r.Logf(lvl, "%s", msg)
	} else if t != nil {
		v.cfg.Log().Logf(lvl, "%s, context: %s", msg, t.run.phase.directive())
	} else {
		v.cfg.Log().Logf(lvl, "%s", msg)
	}
	return 0
}

// checkInt reads an integer argument; numeric strings count, as with Lua's
// luaL_checkinteger (gopher-lua's CheckInt refuses them).
func checkInt(L *glua.LState, n int) int { return int(L.CheckNumber(n)) }

// optInt is checkInt with a default for a missing or nil argument.
func optInt(L *glua.LState, n, d int) int {
	if L.Get(n) == glua.LNil {
		return d
	}
	return checkInt(L, n)
}

// escapeLog writes the bytes of s that would be unclear in the error log as \xHH, as
// ngx_lua's ngx_http_lua_escape_log: control bytes, DEL, bytes above 0x7f, '"' and
// the backslash.
func escapeLog(s string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}
