package ngxlua

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// The Go side of the ngx API: functions registered as __sp.NAME, which prelude.lua
// builds the ngx table from. Each finds its run in e.cur (set before every resume).

var errNoRequest = errors.New("no request found")

// run returns the run being resumed.
func (e *engine) run() (*run, error) {
	if e.cur == nil {
		return nil, errors.New("no Lua handler is running")
	}
	return e.cur, nil
}

// req returns the run being resumed and its request.
func (e *engine) req() (*run, *httpcore.Request, error) {
	ru, err := e.run()
	if err != nil {
		return nil, nil, err
	}
	if ru.r == nil {
		return nil, nil, errNoRequest
	}
	return ru, ru.r, nil
}

func disabled(api string, p phase) error {
	return fmt.Errorf("API disabled in the context of %s", p.directive())
}

// strArg is argument i as a string: a string, a number as Lua formats it, or "".
func strArg(s *luajit.State, i int) string {
	if s.Type(i) == luajit.TypeNumber {
		return string(appendNumber(nil, s.Number(i)))
	}
	return s.String(i)
}

// appendNumber formats as Lua's tostring does (%.14g).
func appendNumber(buf []byte, f float64) []byte {
	if f == 0 && math.Signbit(f) {
		return append(buf, "-0"...)
	}
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

// waitAsync makes the calling coroutine yield until the wait that start starts calls
// done, from any goroutine, once; done's values are the Lua function's results.
// start runs with the VM locked and must not block.
func (ru *run) waitAsync(s *luajit.State, start func(done func([]any))) {
	ru.cur.start = start
	s.PushString(waitMark)
	s.Yield()
}

// waitFor makes the calling coroutine yield until the run's driver has run w with the
// VM unlocked; w's results are the Lua function's.
func (ru *run) waitFor(s *luajit.State, w func() []any) {
	ru.cur.wait = w
	s.PushString(waitMark)
	s.Yield()
}

// end makes the run end now (ngx.exit, exec, redirect): the coroutine yields and is
// never resumed, so no pcall can catch it.
func (ru *run) end(s *luajit.State) {
	s.PushString(waitMark)
	s.Yield()
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

// register adds the Go functions of the ngx API.
func (e *engine) register(s *luajit.State) error {
	fs := map[string]luajit.Func{
		"constants":      e.constants,
		"out":            e.out,
		"flush":          e.flush,
		"eof":            e.eof,
		"send_headers":   e.sendHeaders,
		"exit":           e.exit,
		"exec":           e.exec_,
		"redirect":       e.redirect,
		"get_phase":      e.getPhase,
		"sleep":          e.sleep,
		"log_enabled":    e.logEnabled,
		"log":            e.log,
		"var_get":        e.varGet,
		"var_set":        e.varSet,
		"arg_check":      e.argCheck,
		"req_id":         e.reqID,
		"status_get":     e.statusGet,
		"status_set":     e.statusSet,
		"headers_sent":   e.headersSent,
		"is_subrequest":  e.isSubrequest,
		"header_get":     e.headerGet,
		"header_set":     e.headerSet,
		"resp_headers":   e.respHeaders,
		"req_headers":    e.reqHeaders,
		"req_set_header": e.reqSetHeader,
		"req_uri_args":   e.reqURIArgs,
		"req_post_args":  e.reqPostArgs,
		"decode_args": func(s *luajit.State) error {
			return pushArgs(s, s.String(0), s.Int(1))
		},
		"req_set_uri":       e.reqSetURI,
		"req_set_uri_args":  e.reqSetURIArgs,
		"req_read_body":     e.reqReadBody,
		"req_discard_body":  e.reqReadBody,
		"req_get_body_data": e.reqGetBodyData,
		"req_get_body_file": e.reqGetBodyFile,
		"req_set_body_data": e.reqSetBodyData,
		"req_raw_header":    e.reqRawHeader,
		"capture_add":       e.captureAdd,
		"capture_uris":      e.captureURIs,
		"nocache_run": func(s *luajit.State) error {
			// The run's number when lua_code_cache is off, else 0.
			if ru := e.cur; ru != nil && ru.conf != nil && !ru.conf.codeCache {
				s.PushNumber(float64(ru.seq))
				return nil
			}
			s.PushInt(0)
			return nil
		},
		"thread_spawn":   e.threadSpawn,
		"capture_run":    e.captureRun,
		"capture_result": e.captureResult,
		"prefix": func(s *luajit.State) error {
			p := e.cfg.Main.Prefix
			if !strings.HasSuffix(p, "/") {
				p += "/"
			}
			s.PushString(p)
			return nil
		},
		"worker_pid": func(s *luajit.State) error { s.PushInt(os.Getpid()); return nil },
		"engine_id":  func(s *luajit.State) error { s.PushInt(e.ffiID); return nil },
		"engine_rt":  func(s *luajit.State) error { s.PushPointer(unsafe.Pointer(e.rt)); return nil },
		// ngx.process.type and get_master_pid: init code runs before the workers
		// exist ("master"); a worker without a master to reach (the core run
		// in-process) is nginx's "single".
		"process_type": func(s *luajit.State) error {
			switch {
			case e.worker == nil || e.cur != nil && e.cur.phase == phaseInit:
				s.PushString("master")
			case e.worker.Cluster == nil:
				s.PushString("single")
			default:
				s.PushString("worker")
			}
			return nil
		},
		"master_pid": func(s *luajit.State) error {
			if e.worker != nil && e.worker.Cluster != nil {
				s.PushInt(os.Getppid())
			} else {
				s.PushInt(os.Getpid())
			}
			return nil
		},
		// ngx.errlog.get_sys_filter_level: error_log's level as ngx.ERR and friends.
		"errlog_level": func(s *luajit.State) error {
			lvl := logErr
			if l := e.cfg.Log(); l != nil {
				lvl = int(l.Level()) + 1
			}
			s.PushInt(lvl)
			return nil
		},
		"worker_id": func(s *luajit.State) error {
			if e.worker == nil {
				s.PushNil()
			} else {
				s.PushInt(e.worker.ID)
			}
			return nil
		},
		"worker_count": func(s *luajit.State) error {
			n := 1
			if e.worker != nil && e.worker.Count > 0 {
				n = e.worker.Count
			}
			s.PushInt(n)
			return nil
		},
		"worker_exiting": func(s *luajit.State) error { s.PushBool(e.exiting.Load()); return nil },
	}
	for k, f := range reqGetters(e) {
		fs[k] = f
	}
	for k, f := range e.semaFuncs() {
		fs[k] = f
	}
	for k, f := range e.backendFuncs() {
		fs[k] = f
	}
	for k, f := range e.reFuncs() {
		fs[k] = f
	}
	for k, f := range e.threadFuncs() {
		fs[k] = f
	}
	for k, f := range e.sockFuncs() {
		fs[k] = f
	}
	fs["req_socket"] = e.reqSocket
	for k, f := range e.udpFuncs() {
		fs[k] = f
	}
	for k, f := range e.timerCounts() {
		fs[k] = f
	}
	for k, f := range pureFuncs() {
		fs[k] = f
	}
	for name, f := range fs {
		reg := s.Register
		if name == "timer_new" || name == "thread_spawn" {
			reg = s.RegisterRefs // keeps the timer's function
		}
		if err := reg("__sp."+name, e.withOut(f)); err != nil {
			return err
		}
	}
	if err := e.registerOut(s); err != nil {
		return err
	}
	return s.RegisterRefs("__sp.set_runner", func(s *luajit.State) error {
		ref, ok := s.Ref(0)
		if !ok {
			return errors.New("set_runner: a function expected")
		}
		e.runner = ref
		return nil
	})
}

// constants is the ngx.HTTP_* names and values, as one flat array.
func (e *engine) constants(s *luajit.State) error {
	vals := make([]any, 0, 2*(len(httpStatuses)+len(httpMethods)))
	for k, v := range httpStatuses {
		vals = append(vals, k, v)
	}
	for _, m := range httpMethods {
		vals = append(vals, "HTTP_"+m.name, m.bit)
	}
	s.PushArray(len(vals))
	pushAll(s, vals)
	return nil
}

// out is ngx.say/print's write: buffered until the run waits or ends, or flushed
// past 16 KB.
func (e *engine) out(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if !ru.phase.canOutput() {
		return disabled("output", ru.phase)
	}
	if d := peekData(ru.r); d != nil && (d.eof || d.reqSock == reqSockRaw) {
		s.PushNil()
		if d.eof {
			s.PushString("seen eof")
		} else {
			s.PushString("raw request socket acquired")
		}
		return nil
	}
	if s.N() <= 2 {
		ru.out = append(ru.out, s.Bytes(0)...)
	} else {
		// out(nl, true, values...): ngx.say/print's arguments as they are, when
		// each is a string, number, boolean or nil (outArgs checked); no
		// concatenation in Lua.
		need := 1
		for i := 3; i < s.N(); i++ {
			need += len(s.Bytes(i)) + 24 // 24: a number's or a boolean's text at most
		}
		ru.out = slices.Grow(ru.out, need)
		for i := 3; i < s.N(); i++ {
			switch s.Type(i) {
			case luajit.TypeString:
				ru.out = append(ru.out, s.Bytes(i)...)
			case luajit.TypeNumber:
				ru.out = appendNumber(ru.out, s.Number(i))
			case luajit.TypeBoolean:
				ru.out = strconv.AppendBool(ru.out, s.Bool(i))
			default:
				ru.out = append(ru.out, "nil"...)
			}
		}
	}
	if s.Bool(1) {
		ru.out = append(ru.out, '\n')
	}
	ru.committed = true
	if len(ru.out) >= 16<<10 {
		ru.cur.inline = true
		ru.waitFor(s, func() []any {
			if err := ru.writeOut(); err != nil {
				return []any{nil, err.Error()}
			}
			return []any{1}
		})
		return nil
	}
	s.PushInt(1)
	return nil
}

// outOp yields so that the driver writes the buffered output and runs op, both
// with the VM unlocked (filters may run Lua code).
func (e *engine) outOp(s *luajit.State, api string, op func(r *httpcore.Request) error) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if !ru.phase.canOutput() {
		return disabled(api, ru.phase)
	}
	if ru.r != nil && rawSocketTaken(ru.r) {
		s.PushNil()
		s.PushString("raw request socket acquired")
		return nil
	}
	ru.committed = true
	ru.cur.inline = true
	ru.waitFor(s, func() []any {
		err := ru.writeOut()
		if err == nil {
			err = op(ru.r)
		}
		if err != nil {
			return []any{nil, err.Error()}
		}
		return []any{1}
	})
	return nil
}

func (e *engine) flush(s *luajit.State) error {
	return e.outOp(s, "ngx.flush", func(r *httpcore.Request) error { return r.Flush() })
}

func (e *engine) sendHeaders(s *luajit.State) error {
	return e.outOp(s, "ngx.send_headers", func(r *httpcore.Request) error { return r.SendHeader() })
}

func (e *engine) eof(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if ru.r != nil {
		d := dataOf(ru.r)
		if d.reqSock == reqSockRaw {
			s.PushNil()
			s.PushString("raw request socket acquired")
			return nil
		}
		if d.eof {
			s.PushNil()
			s.PushString("seen eof")
			return nil
		}
		d.eof = true
		e.outStopped()
	}
	return e.outOp(s, "ngx.eof", func(r *httpcore.Request) error { return r.EOF() })
}

// exit is ngx.exit: ngx.exit(ngx.OK) ends the current phase handler, ngx.exit(status
// >= 200) the request.
func (e *engine) exit(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	switch ru.phase {
	case phaseRewrite, phaseAccess, phaseContent, phaseHeaderFilter, phaseTimer:
	default:
		return disabled("ngx.exit", ru.phase)
	}
	if s.Type(0) != luajit.TypeNumber && !(s.Type(0) == luajit.TypeString && isNumeric(s.String(0))) {
		return fmt.Errorf("bad argument #1 to 'exit' (number expected, got %s)", s.Type(0))
	}
	code := int(s.Number(0))
	if s.Type(0) == luajit.TypeString {
		code, _ = strconv.Atoi(s.String(0))
	}
	if !(code == ngxOK || code == ngxError || code == ngxDone || code == ngxDeclined || code >= 200 && code < 1000) {
		return fmt.Errorf("bad argument #1 to 'exit' (bad status code %d)", code)
	}
	ru.exit, ru.code = exitStatus, code
	ru.end(s)
	return nil
}

func isNumeric(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// exec_ is ngx.exec(uri, args): an internal redirect once the handler has ended.
// It returns an error message for prelude.lua to raise at the caller.
func (e *engine) exec_(s *luajit.State) error {
	ru, r, err := e.req()
	if err != nil {
		return err
	}
	if !ru.phase.canOutput() {
		return disabled("ngx.exec", ru.phase)
	}
	uri := s.String(0)
	if uri == "" {
		s.PushString("bad argument #1 to 'exec' (empty uri)")
		return nil
	}
	args := strArg(s, 1)
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
			s.PushString(fmt.Sprintf("unsafe uri %q in ngx.exec", uri))
			return nil
		}
		uri = norm
	}
	if r.HeaderSent() || len(ru.out) > 0 {
		s.PushString("attempt to call ngx.exec after sending out response headers")
		return nil
	}
	ru.exit, ru.execURI, ru.execArgs = exitExec, uri, args
	ru.end(s)
	return nil
}

func (e *engine) redirect(s *luajit.State) error {
	ru, r, err := e.req()
	if err != nil {
		return err
	}
	if !ru.phase.canOutput() {
		return disabled("ngx.redirect", ru.phase)
	}
	uri := s.String(0)
	code := 302
	if s.Type(1) == luajit.TypeNumber {
		code = s.Int(1)
	}
	switch code {
	case 301, 302, 303, 307, 308:
	default:
		return errors.New("only ngx.HTTP_MOVED_TEMPORARILY, ngx.HTTP_MOVED_PERMANENTLY, ngx.HTTP_PERMANENT_REDIRECT, ngx.HTTP_SEE_OTHER, and ngx.HTTP_TEMPORARY_REDIRECT are allowed")
	}
	for i := 0; i < len(uri); i++ {
		// As ngx_lua (t/022-redirect.t TEST 18-22): a control byte but HTAB, or DEL,
		// is an error, and the request a 500 without a Location.
		if c := uri[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("unsafe byte \"0x%02x\" in redirect uri \"%s\"", c, escapeLog(uri))
		}
	}
	if r.HeaderSent() || len(ru.out) > 0 {
		return errors.New("attempt to call ngx.redirect after sending out the headers")
	}
	if strings.HasPrefix(uri, "/") {
		uri = r.AbsoluteURL(uri)
	}
	r.RespHeader().Set("Location", uri)
	ru.exit, ru.code = exitStatus, code
	ru.end(s)
	return nil
}

func (e *engine) getPhase(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	s.PushString(ru.phase.String())
	return nil
}

// sleep is ngx.sleep(seconds): a Go timer ends the wait; a content handler's request
// is parked meanwhile (see thread.go), others wait on their goroutine.
func (e *engine) sleep(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if !ru.phase.canYield() {
		return disabled("ngx.sleep", ru.phase)
	}
	sec := s.Number(0)
	if s.Type(0) != luajit.TypeNumber || sec < 0 || math.IsNaN(sec) {
		return errors.New("bad argument #1 to 'sleep' (invalid sleeping time)")
	}
	d := time.Duration(sec * float64(time.Second))
	ru.waitAsync(s, func(done func([]any)) {
		if d <= 0 {
			done(nil)
			return
		}
		ru.afterFunc(d, func() { done(nil) })
	})
	return nil
}

// maxLoopTimer bounds the loop's timers (their deadline must not overflow).
const maxLoopTimer = 100 * 365 * 24 * time.Hour

// stopper is a timer afterFunc made: a *time.Timer or the loop's *httpcore.Timer.
type stopper interface{ Stop() bool }

// afterFunc calls fn after d, which must not wait. A run with a request on the event
// loop (HTTP/1) uses a timer of the loop (httpcore.Loop.NewTimer): it fires on the
// loop's leader, between its events, and a parked run it resumes is posted to the
// same pass of the loop; time.AfterFunc's fires on a goroutine of the runtime's,
// which then has to wake the leader (an eventfd write, a futex) to hand it over.
// Other runs (timers, HTTP/2 streams) have no loop to use.
func (ru *run) afterFunc(d time.Duration, fn func()) stopper {
	if ru.r != nil && d < maxLoopTimer {
		if lp := ru.r.Loop(); lp != nil {
			t := lp.NewTimer(fn)
			t.Reset(d)
			return t
		}
	}
	return time.AfterFunc(d, fn)
}

func (e *engine) logEnabled(s *luajit.State) error {
	s.PushBool(e.cfg.Log().Enabled(errlogLevel(s.Int(0))))
	return nil
}

// log is ngx.log and print: "[lua] content_by_lua(spindle.hcl:12):3: message".
func (e *engine) log(s *luajit.State) error {
	lvl := errlogLevel(s.Int(0))
	where, text := s.String(1), s.String(2)
	msg := "[lua] " + where + ": " + text
	switch {
	case s.Bool(3):
		msg = text // ngx.errlog.raw_log: the message as it is
	case where == "":
		msg = "[lua] " + text
	}
	switch ru := e.cur; {
	case ru != nil && ru.r != nil:
		ru.r.Logf(lvl, "%s", msg)
	case ru != nil:
		e.cfg.Log().Logf(lvl, "%s, context: %s", msg, ru.phase.directive())
	default:
		e.cfg.Log().Logf(lvl, "%s", msg)
	}
	return nil
}

func (e *engine) varGet(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	if s.Type(0) == luajit.TypeNumber {
		n := s.Int(0)
		if caps := r.Captures(); n >= 0 && n < len(caps) {
			s.PushString(caps[n])
		} else {
			s.PushNil()
		}
		return nil
	}
	name := argView(s, 0) // read, not kept: the value pushed is a copy
	if len(name) > 4 && name[:4] == "arg_" {
		if val, ok := httpcore.ArgValue(r.Args(), name[4:]); ok {
			s.PushString(val)
		} else {
			s.PushNil()
		}
		return nil
	}
	if val, ok := r.Var(name); ok {
		s.PushString(val)
	} else {
		s.PushNil()
	}
	return nil
}

// varSet returns an error message for the prelude to raise at its caller.
func (e *engine) varSet(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	name := s.String(0)
	if !r.SetVar(name, s.String(1)) {
		s.PushString(fmt.Sprintf("variable %q not found for writing; maybe it is a built-in variable that is not changeable or you forgot to define it first (set_by_lua %q, or `set`)", name, name))
	}
	return nil
}

func (e *engine) argCheck(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if ru.phase != phaseBodyFilter {
		s.PushString("attempt to write to ngx.arg in " + ru.phase.directive())
	}
	return nil
}

// reqID is the key of the request's ngx.ctx, 0 for runs without a request.
func (e *engine) reqID(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if ru.r == nil {
		s.PushInt(0)
		return nil
	}
	s.PushNumber(e.ctxID(ru.r))
	return nil
}

func (e *engine) statusGet(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	s.PushInt(r.Status())
	return nil
}

func (e *engine) statusSet(s *luajit.State) error {
	ru, r, err := e.req()
	if err != nil {
		return err
	}
	switch ru.phase {
	case phaseRewrite, phaseAccess, phaseContent, phaseHeaderFilter, phaseSet:
	default:
		s.PushString(disabled("ngx.status", ru.phase).Error())
		return nil
	}
	if s.Type(0) != luajit.TypeNumber && !(s.Type(0) == luajit.TypeString && isNumeric(s.String(0))) {
		s.PushString("bad argument #3 to '__newindex' (number expected, got " + s.Type(0).String() + ")")
		return nil
	}
	n := s.Int(0)
	if s.Type(0) == luajit.TypeString {
		n, _ = strconv.Atoi(s.String(0))
	}
	if (r.HeaderSent() || ru.committed) && ru.phase != phaseHeaderFilter {
		r.Logf(httpcore.LogError, "attempt to set ngx.status after sending out response headers")
		return nil
	}
	r.SetStatus(n)
	return nil
}

func (e *engine) headersSent(s *luajit.State) error {
	ru, r, err := e.req()
	if err != nil {
		return err
	}
	s.PushBool(r.HeaderSent() || ru.committed && ru.phase.canOutput())
	return nil
}

func (e *engine) isSubrequest(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	s.PushBool(r.IsSubrequest())
	return nil
}

// headerName maps ngx.header.content_type to Content-Type, as ngx_lua with
// lua_transform_underscores_in_response_headers on (its default).
func headerName(k string) string {
	if strings.IndexByte(k, '_') < 0 {
		return k // most names: no scan for a count first, as ReplaceAll makes
	}
	return strings.ReplaceAll(k, "_", "-")
}

// headerGet is ngx.header[name]: the value, and the number of values; with a
// second argument i, the i-th value.
func (e *engine) headerGet(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	name := headerName(s.String(0))
	if strings.EqualFold(name, "Content-Length") {
		if n := r.ContentLength(); n >= 0 {
			s.PushString(strconv.FormatInt(n, 10))
		} else {
			s.PushNil()
		}
		return nil
	}
	vals := r.RespHeader().Values(name)
	if s.Type(1) == luajit.TypeNumber {
		if i := s.Int(1); i >= 1 && i <= len(vals) {
			s.PushString(vals[i-1])
		} else {
			s.PushNil()
		}
		return nil
	}
	if len(vals) == 0 {
		s.PushNil()
		return nil
	}
	s.PushString(vals[0])
	s.PushInt(len(vals))
	return nil
}

// headerSet is ngx.header[name] = v: ("one", value or nil) or ("list", values...).
// It returns an error message for the prelude to raise at its caller.
func (e *engine) headerSet(s *luajit.State) error {
	ru, r, err := e.req()
	if err != nil {
		return err
	}
	p := ru.phase
	switch p {
	case phaseRewrite, phaseAccess, phaseContent, phaseHeaderFilter, phaseBodyFilter, phaseSet:
	default:
		s.PushString(disabled("ngx.header", p).Error())
		return nil
	}
	name := headerName(s.String(0))
	if (r.HeaderSent() || ru.committed) && p != phaseHeaderFilter {
		r.Logf(httpcore.LogError, "attempt to set ngx.header.HEADER after sending out response headers")
		return nil
	}
	var buf [2]string // most headers have one value: no slice to allocate
	vals := buf[:0]
	for i := 2; i < s.N(); i++ {
		if s.Type(i) == luajit.TypeNil {
			continue
		}
		vals = append(vals, strArg(s, i))
	}
	// As ngx_lua (t/016-resp-header.t TEST 87-93): what could end or split the line
	// is %-escaped, in the name and in every value.
	name = httpcore.EscapeHeaderName(name)
	for i, v := range vals {
		vals[i] = httpcore.EscapeHeaderValue(v)
	}
	if len(name) == len("Content-Length") && strings.EqualFold(name, "Content-Length") {
		n := int64(-1)
		if len(vals) > 0 {
			var err error
			if n, err = strconv.ParseInt(vals[len(vals)-1], 10, 64); err != nil || n < 0 {
				s.PushString(fmt.Sprintf("invalid Content-Length %q", vals[len(vals)-1]))
				return nil
			}
		}
		r.SetContentLength(n)
		return nil
	}
	h := r.RespHeader()
	if s.String(1) != "add" {
		h.Del(name)
	}
	for _, v := range vals {
		h.Add(name, v)
	}
	return nil
}

// respHeaders is ngx.resp.get_headers' pairs: name, value, name, value...
func (e *engine) respHeaders(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	raw := s.Bool(0)
	fields := r.RespHeader().Fields()
	n := 2 * len(fields)
	cl := r.ContentLength()
	if cl >= 0 {
		n += 2
	}
	s.PushArray(n)
	for _, f := range fields {
		k := f.Key
		if !raw {
			k = strings.ToLower(k)
		}
		s.PushString(k)
		s.PushString(f.Value)
	}
	if cl >= 0 {
		if raw {
			s.PushString("Content-Length")
		} else {
			s.PushString("content-length")
		}
		s.PushString(strconv.FormatInt(cl, 10))
	}
	return nil
}

// reqHeaders is ngx.req.get_headers' Go side: (table, truncated, flat). The table
// maps each name to its value when no name repeats; otherwise it is a flat array
// name, value, ... (flat true) that the prelude folds into lists. Names are
// lowercased into a buffer kept by the engine: no allocation per header.
func (e *engine) reqHeaders(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	raw, max := s.Bool(0), s.Int(1)
	kv := e.kv[:0]
	lbuf := e.lbuf[:0]
	truncated := false
	r.VisitHeaderViews(func(k, v string) {
		if max > 0 && len(kv) >= 2*max {
			truncated = true
			return
		}
		if !raw {
			k, lbuf = lowerView(k, lbuf)
		}
		kv = append(kv, k, v)
	})
	e.kv, e.lbuf = kv[:0], lbuf[:0]
	dup := hasDupKeys(kv)
	pushPairs(s, kv, dup)
	if truncated {
		s.PushString("truncated")
	} else {
		s.PushNil()
	}
	s.PushBool(dup)
	clear(kv)
	return nil
}

// lowerView returns k lowercased: k itself when it has no upper-case letter, else a
// string over bytes appended to buf (valid while the caller keeps it; a later append
// that moves buf leaves the earlier strings on the old array).
func lowerView(k string, buf []byte) (string, []byte) {
	i := 0
	for i < len(k) && (k[i] < 'A' || k[i] > 'Z') {
		i++
	}
	if i == len(k) {
		return k, buf
	}
	start := len(buf)
	for j := 0; j < len(k); j++ {
		c := k[j]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	return unsafe.String(&buf[start], len(k)), buf
}

// hasDupKeys tells whether a name repeats in kv (name, value, ...).
func hasDupKeys(kv []string) bool {
	n := len(kv) / 2
	if n > 32 {
		seen := make(map[string]struct{}, n)
		for i := 0; i < len(kv); i += 2 {
			if _, ok := seen[kv[i]]; ok {
				return true
			}
			seen[kv[i]] = struct{}{}
		}
		return false
	}
	for i := 0; i < len(kv); i += 2 {
		for j := i + 2; j < len(kv); j += 2 {
			if kv[i] == kv[j] {
				return true
			}
		}
	}
	return false
}

// pushPairs pushes kv (name, value, ...) as a table of the pairs, or as a flat
// array when a name repeats (dup).
func pushPairs(s *luajit.State, kv []string, dup bool) {
	if dup {
		s.PushArray(len(kv))
	} else {
		s.PushTable(len(kv) / 2)
	}
	for _, x := range kv {
		s.PushString(x)
	}
}

// reqSetHeader is ngx.req.set_header and clear_header: ("one", value or nil) or
// ("list", values...); ngx.req.add_header (lua-resty-core's ngx.req): ("add",
// values...).
func (e *engine) reqSetHeader(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	// As ngx_lua (t/028-req-header.t TEST 62-66): the name and values are
	// %-escaped where they could end or split a header line.
	name := httpcore.EscapeHeaderName(s.String(0))
	switch s.String(1) {
	case "add":
		for i := 2; i < s.N(); i++ {
			r.AddHeader(name, httpcore.EscapeHeaderValue(strArg(s, i)))
		}
		return nil
	case "list":
		r.SetHeader(name, "")
		for i := 2; i < s.N(); i++ {
			r.AddHeader(name, httpcore.EscapeHeaderValue(strArg(s, i)))
		}
		return nil
	}
	r.SetHeader(name, httpcore.EscapeHeaderValue(strArg(s, 2)))
	return nil
}

// pushArgs pushes the query arguments of q, at most max pairs (0: all), as
// (table, truncated, flat): a table of name = value (true for a name without "=")
// when no name repeats, else a flat array name, value, ... (flat true).
func pushArgs(s *luajit.State, q string, max int) error {
	var buf [16]queryArg
	args := buf[:0]
	truncated := false
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		if kv == "" {
			continue
		}
		if max > 0 && len(args) >= max {
			truncated = true
			break
		}
		k, v, hasVal := strings.Cut(kv, "=")
		args = append(args, queryArg{unescapeArg(k), unescapeArg(v), hasVal})
	}
	dup := false
	for i := range args {
		for j := i + 1; j < len(args) && !dup; j++ {
			dup = args[i].k == args[j].k
		}
	}
	if dup {
		s.PushArray(2 * len(args))
	} else {
		s.PushTable(len(args))
	}
	for _, a := range args {
		s.PushString(a.k)
		if a.hasVal {
			s.PushString(a.v)
		} else {
			s.PushBool(true)
		}
	}
	if truncated {
		s.PushString("truncated")
	} else {
		s.PushNil()
	}
	s.PushBool(dup)
	return nil
}

type queryArg struct {
	k, v   string
	hasVal bool
}

func (e *engine) reqURIArgs(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	return pushArgs(s, r.Args(), s.Int(0))
}

func (e *engine) reqPostArgs(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	if d := peekData(r); d == nil || !d.bodyRead {
		return errors.New("request body not read: call ngx.req.read_body() first (or set lua_need_request_body)")
	}
	body, _ := r.Body()
	return pushArgs(s, string(body), s.Int(0))
}

// reqSetURI is ngx.req.set_uri(uri, jump): with jump (rewrite_by_lua only) the
// location is searched again for the new URI, as `rewrite ... last`.
func (e *engine) reqSetURI(s *luajit.State) error {
	ru, r, err := e.req()
	if err != nil {
		return err
	}
	uri := s.String(0)
	if uri == "" {
		s.PushString("bad argument #1 to 'set_uri' (attempt to use zero-length uri)")
		return nil
	}
	jump := s.Bool(1)
	if jump && ru.phase != phaseRewrite {
		s.PushString(fmt.Sprintf("API disabled in the context of %s (ngx.req.set_uri with jump is only allowed in rewrite_by_lua*)", ru.phase.directive()))
		return nil
	}
	r.SetURI(uri)
	if jump {
		ru.exit = exitJump
		ru.end(s)
	}
	return nil
}

func (e *engine) reqSetURIArgs(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	r.SetArgs(strArg(s, 0))
	return nil
}

// readBody reads the whole request body into memory; the status says why it failed.
func readBody(r *httpcore.Request) int {
	_, err := r.Body()
	if err != nil {
		if errors.Is(err, httpcore.ErrBodyTooLarge) {
			return 413
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 408
		}
		return 400
	}
	dataOf(r).bodyRead = true
	return 0
}

// reqReadBody is ngx.req.read_body (and discard_body): the body is read on the
// request's goroutine with the VM unlocked.
func (e *engine) reqReadBody(s *luajit.State) error {
	ru, r, err := e.req()
	if err != nil {
		return err
	}
	if !ru.phase.canOutput() {
		return disabled("ngx.req.read_body", ru.phase)
	}
	if d := peekData(r); d != nil && (d.bodyRead || d.reqSock != reqSockNone) {
		// Read, or being read through ngx.req.socket: nothing to do, as ngx_lua.
		return nil
	}
	// The body is the request's: read on the driver's goroutine, off the loop.
	ru.cur.inline = true
	ru.waitFor(s, func() []any {
		r.Blocking()
		if status := readBody(r); status != 0 {
			// As ngx_lua: a body that cannot be read ends the request.
			ru.exit, ru.code = exitStatus, status
		}
		return nil
	})
	return nil
}

func (e *engine) reqGetBodyData(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	d := peekData(r)
	if d == nil || !d.bodyRead || r.BodyFile() != "" {
		// As OpenResty: nil when the body was buffered to a file (get_body_file).
		s.PushNil()
		return nil
	}
	body, err := r.Body()
	if err != nil || len(body) == 0 {
		s.PushNil()
		return nil
	}
	if max := s.Int(0); max > 0 && len(body) > max {
		body = body[:max]
	}
	s.PushBytes(body)
	return nil
}

func (e *engine) reqGetBodyFile(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	if name := r.BodyFile(); peekData(r) != nil && peekData(r).bodyRead && name != "" {
		s.PushString(name)
		return nil
	}
	s.PushNil()
	return nil
}

func (e *engine) reqSetBodyData(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	data := s.String(0)
	r.SetBody([]byte(data))
	r.SetHeader("Content-Length", strconv.Itoa(len(data)))
	dataOf(r).bodyRead = true
	return nil
}

func (e *engine) reqRawHeader(s *luajit.State) error {
	_, r, err := e.req()
	if err != nil {
		return err
	}
	var sb strings.Builder
	if !s.Bool(0) {
		m := r.Main()
		sb.WriteString(m.Method() + " " + m.RequestURI() + " " + m.Proto() + "\r\n")
	}
	r.VisitHeaders(func(k, val string) {
		sb.WriteString(k)
		sb.WriteString(": ")
		sb.WriteString(val)
		sb.WriteString("\r\n")
	})
	sb.WriteString("\r\n")
	s.PushString(sb.String())
	return nil
}

// reqGetters are the ngx.req functions that read one field.
func reqGetters(e *engine) map[string]luajit.Func {
	return map[string]luajit.Func{
		"req_get_method": func(s *luajit.State) error {
			_, r, err := e.req()
			if err != nil {
				return err
			}
			s.PushString(r.Method())
			return nil
		},
		"req_set_method": func(s *luajit.State) error {
			_, r, err := e.req()
			if err != nil {
				return err
			}
			name, ok := methodName(s.Int(0))
			if !ok {
				return fmt.Errorf("bad argument #1 to 'set_method' (unsupported HTTP method: %d)", s.Int(0))
			}
			r.SetMethod(name)
			return nil
		},
		"req_http_version": func(s *luajit.State) error {
			_, r, err := e.req()
			if err != nil {
				return err
			}
			if r.Proto() == "HTTP/1.0" {
				s.PushNumber(1.0)
			} else {
				s.PushNumber(1.1)
			}
			return nil
		},
		"req_start_time": func(s *luajit.State) error {
			_, r, err := e.req()
			if err != nil {
				return err
			}
			s.PushNumber(float64(r.StartTime().UnixMilli()) / 1000)
			return nil
		},
		"req_is_internal": func(s *luajit.State) error {
			_, r, err := e.req()
			if err != nil {
				return err
			}
			s.PushBool(r.Internal())
			return nil
		},
	}
}

// captureReq is one ngx.location.capture subrequest of a run.
type captureReq struct {
	sr       *httpcore.Request
	inherits bool // reads the parent's body
}

// captureAdd creates a subrequest: (uri, method, args, body, copy_all_vars,
// share_all_vars, vars, headers, always_forward_body, first, has_ctx). It returns
// the subrequest's ngx.ctx key (true when it has no ctx option: a subrequest's
// ngx.ctx is made when its own code uses it), or nil and an error message.
func (e *engine) captureAdd(s *luajit.State) error {
	ru, r, err := e.req()
	if err != nil {
		return err
	}
	if !ru.phase.canOutput() {
		return disabled("ngx.location.capture", ru.phase)
	}
	if s.Bool(9) {
		ru.releaseSubs()
	}
	uri := s.String(0)
	if strings.HasPrefix(uri, "@") {
		s.PushNil()
		s.PushString(fmt.Sprintf("ngx.location.capture cannot use the named location %q", uri))
		return nil
	}
	var opts httpcore.SubrequestOptions
	opts.Method = "GET"
	if s.Type(1) != luajit.TypeNil {
		name, ok := methodName(s.Int(1))
		if s.Type(1) != luajit.TypeNumber || !ok {
			s.PushNil()
			s.PushString("ngx.location.capture: unsupported HTTP method " + strArg(s, 1))
			return nil
		}
		opts.Method = name
	}
	opts.Args = strArg(s, 2)
	hasBody := s.Type(3) != luajit.TypeNil
	if hasBody {
		opts.Body, opts.HasBody = []byte(strArg(s, 3)), true
	}
	opts.CopyVars, opts.ShareVars = s.Bool(4), s.Bool(5)
	opts.Vars = pairsMap(s.String(6))
	// Escaped as ngx.req.set_header escapes (ngx_lua's subrequest headers).
	for k, v := range pairsMap(s.String(7)) {
		if opts.Headers == nil {
			opts.Headers = map[string]string{}
		}
		opts.Headers[httpcore.EscapeHeaderName(k)] = httpcore.EscapeHeaderValue(v)
	}
	inherits := false
	if !hasBody {
		// As ngx_lua: only POST and PUT subrequests inherit the parent's body, unless
		// always_forward_body.
		if s.Bool(8) || opts.Method == "POST" || opts.Method == "PUT" {
			inherits = true
		} else {
			opts.HasBody = true
		}
	}
	sr, err := r.NewSubrequest(uri, &opts)
	if err != nil {
		s.PushNil()
		s.PushString(fmt.Sprintf("failed to issue subrequest %q: %v", uri, err))
		return nil
	}
	ru.subOpts = append(ru.subOpts, captureReq{sr: sr, inherits: inherits})
	if s.Bool(10) {
		s.PushNumber(e.ctxID(sr))
	} else {
		s.PushBool(true)
	}
	return nil
}

// plainCapture is the options of a subrequest given none: GET, no body of its own
// to inherit (a GET does not read the parent's), as captureAdd makes them.
var plainCapture = httpcore.SubrequestOptions{Method: "GET", HasBody: true}

// captureURIs is capture_multi's (and capture's) common case: subrequests with no
// options, given as their URIs (prelude.lua: up to 4). It adds them and runs them as
// capture_add and capture_run do, in one call from Lua instead of one per
// subrequest and one to run: capture_multi of two locations had crossed into Go
// three times with 22 arguments (callgrind, BenchmarkLoopMulti). An error returns
// false and its message, with nothing run.
func (e *engine) captureURIs(s *luajit.State) error {
	ru, r, err := e.req()
	if err != nil {
		return err
	}
	if !ru.phase.canOutput() {
		return disabled("ngx.location.capture", ru.phase)
	}
	ru.releaseSubs()
	for i := range s.N() {
		uri := e.internURI(s.Bytes(i))
		if strings.HasPrefix(uri, "@") {
			ru.releaseSubs()
			s.PushBool(false)
			s.PushString(fmt.Sprintf("ngx.location.capture cannot use the named location %q", uri))
			return nil
		}
		sr, err := r.NewSubrequest(uri, &plainCapture)
		if err != nil {
			ru.releaseSubs()
			s.PushBool(false)
			s.PushString(fmt.Sprintf("failed to issue subrequest %q: %v", uri, err))
			return nil
		}
		ru.subOpts = append(ru.subOpts, captureReq{sr: sr})
	}
	e.startCaptures(s, ru, true)
	return nil
}

// internURI is b as a string, the same one each time for the first maxURIs URIs
// of up to 128 bytes: a copy per subrequest was two of capture_multi's three
// allocations per request (TestCaptureMultiAllocations).
func (e *engine) internURI(b []byte) string {
	if u, ok := e.uris[string(b)]; ok {
		return u
	}
	u := string(b)
	if len(u) <= 128 && len(e.uris) < maxURIs {
		if e.uris == nil {
			e.uris = map[string]string{}
		}
		e.uris[u] = u
	}
	return u
}

// maxURIs bounds internURI's map: locations a worker captures are few.
const maxURIs = 256

func pairsMap(s string) map[string]string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, "\x00")
	m := make(map[string]string, len(parts)/2)
	for i := 0; i+1 < len(parts); i += 2 {
		m[parts[i]] = parts[i+1]
	}
	return m
}

func (ru *run) releaseSubs() {
	for _, c := range ru.subOpts {
		c.sr.Release()
	}
	clear(ru.subOpts)
	ru.subOpts = ru.subOpts[:0]
}

// maxCaptureRets is the most subrequests whose responses capture_run returns itself
// (prelude.lua's capture_multi has the same figure); past it Lua reads each with
// capture_result.
const maxCaptureRets = 16

// captureRun runs the subrequests added with the VM unlocked (they may run Lua). Its
// coroutine is resumed with their responses, tables built by the binding as the
// resume pushes them (pushCaptures): no call back into Go per response. capture_multi
// of two locations had made three callbacks and a yield, ~1,000 instructions each
// callback (callgrind).
func (e *engine) captureRun(s *luajit.State) error {
	ru, _, err := e.req()
	if err != nil {
		return err
	}
	e.startCaptures(s, ru, false)
	return nil
}

// startCaptures makes the coroutine wait for the run's subrequests; flat: their
// responses come back as status, body and header table each.
func (e *engine) startCaptures(s *luajit.State, ru *run, flat bool) {
	if ru.captureFn == nil {
		// Made once per run struct (release keeps them).
		ru.captureFn = ru.runCaptures
		ru.captureRets = []any{pusher(ru.pushCaptures), pusher(ru.pushCapturesFlat)}
	}
	ru.captureFlat = flat
	// Subrequests work on the request: they run on the driver's goroutine.
	ru.cur.inline = true
	ru.waitFor(s, ru.captureFn)
}

// runCaptures is captureRun's wait, with the VM unlocked.
func (ru *run) runCaptures() []any {
	r := ru.r
	ru.subs = ru.subs[:0]
	inherit := false
	for _, c := range ru.subOpts {
		ru.subs = append(ru.subs, c.sr)
		inherit = inherit || c.inherits
	}
	// Subrequests inheriting the body run concurrently: read it once first.
	if inherit {
		if d := peekData(r); d == nil || !d.bodyRead {
			r.Blocking()
			readBody(r)
		}
	}
	httpcore.RunAll(ru.subs)
	clear(ru.subs)
	if len(ru.subOpts) > maxCaptureRets {
		return nil
	}
	if ru.captureFlat {
		return ru.captureRets[1:]
	}
	return ru.captureRets[:1]
}

// pushCaptures pushes the responses of the run's subrequests (the VM locked, as the
// coroutine is resumed) and releases the subrequests.
func (ru *run) pushCaptures(s *luajit.State) {
	for i := range ru.subOpts {
		ru.e.pushCapture(s, ru.subOpts[i].sr)
	}
	ru.releaseSubs()
}

// pushCapturesFlat pushes the responses as pushCaptures does, each as its status,
// body and header table: prelude.lua makes the response tables (a table
// constructor with constant keys), where building them here had cost ~1,000
// instructions each, the keys interned again for every response (callgrind,
// BenchmarkLoopMulti).
func (ru *run) pushCapturesFlat(s *luajit.State) {
	for i := range ru.subOpts {
		sr := ru.subOpts[i].sr
		status := captureStatus(sr)
		s.PushInt(status)
		s.PushBytes(sr.Output())
		if kv := ru.e.captureHeaders(sr, status); len(kv) == 2 && kv[0] == "Content-Type" {
			// A lone Content-Type (echo's, a default_type) comes as its value, and
			// prelude.lua makes the table, its key a constant of Lua's: 25.6k ->
			// 24.2k instructions per capture_multi of two echo locations
			// (BenchmarkLoopMulti).
			s.PushString(kv[1])
			clear(kv)
		} else {
			pushHeaderTable(s, kv)
		}
	}
	ru.releaseSubs()
}

// pushCapture pushes sr's response as ngx.location.capture returns it: a table of
// status, body, truncated and header.
func (e *engine) pushCapture(s *luajit.State, sr *httpcore.Request) {
	status := captureStatus(sr)
	s.PushTable(4)
	s.PushString("status")
	s.PushInt(status)
	s.PushString("body")
	s.PushBytes(sr.Output())
	s.PushString("truncated")
	s.PushBool(false)
	s.PushString("header")
	pushHeaderTable(s, e.captureHeaders(sr, status))
}

// pushHeaderTable pushes a response header's pairs kv (captureHeaders's) as a
// table (a header given more than once has an array of its values, as prelude.lua's
// kv_table makes), and clears kv.
func pushHeaderTable(s *luajit.State, kv []string) {
	keys := 0
	for i := 0; i < len(kv); i += 2 {
		if firstKey(kv, i) {
			keys++
		}
	}
	s.PushTable(keys)
	for i := 0; i < len(kv); i += 2 {
		if !firstKey(kv, i) {
			continue
		}
		n := 1
		for j := i + 2; j < len(kv); j += 2 {
			if kv[j] == kv[i] {
				n++
			}
		}
		s.PushString(kv[i])
		if n == 1 {
			s.PushString(kv[i+1])
			continue
		}
		s.PushArray(n)
		for j := i; j < len(kv); j += 2 {
			if kv[j] == kv[i] {
				s.PushString(kv[j+1])
			}
		}
	}
	clear(kv)
}

// firstKey reports whether kv's key at i is not at an earlier even index.
func firstKey(kv []string, i int) bool {
	for j := 0; j < i; j += 2 {
		if kv[j] == kv[i] {
			return false
		}
	}
	return true
}

func captureStatus(sr *httpcore.Request) int {
	if status := sr.Status(); status != 0 {
		return status
	}
	return 200
}

// captureHeaders is sr's response header as name/value pairs, in e.kv (scratch).
func (e *engine) captureHeaders(sr *httpcore.Request, status int) []string {
	h := sr.RespHeader()
	kv := e.kv[:0]
	for _, f := range h.Fields() {
		kv = append(kv, f.Key, f.Value)
	}
	if h.Get("Content-Type") == "" && status >= 200 && status != 204 && status != 304 {
		if dt := httpcore.CoreConfOf(sr.Location()).DefaultType; dt != "" {
			kv = append(kv, "Content-Type", dt)
		}
	}
	if n := sr.ContentLength(); n >= 0 {
		kv = append(kv, "Content-Length", strconv.FormatInt(n, 10))
	}
	e.kv = kv
	return kv
}

// captureResult is subrequest i's status, body and header pairs (capture_multi of
// more than maxCaptureRets subrequests).
func (e *engine) captureResult(s *luajit.State) error {
	ru, _, err := e.req()
	if err != nil {
		return err
	}
	i := s.Int(0) - 1
	if i < 0 || i >= len(ru.subOpts) {
		return errors.New("no such subrequest")
	}
	sr := ru.subOpts[i].sr
	status := captureStatus(sr)
	s.PushInt(status)
	s.PushBytes(sr.Output())
	kv := e.captureHeaders(sr, status)
	s.PushArray(len(kv))
	for _, x := range kv {
		s.PushString(x)
	}
	clear(kv)
	if i == len(ru.subOpts)-1 {
		ru.releaseSubs()
	}
	return nil
}

// pureFuncs are the functions without request state: strings and time.
func pureFuncs() map[string]luajit.Func {
	str := func(f func(string) string) luajit.Func {
		return func(s *luajit.State) error { s.PushString(f(strArg(s, 0))); return nil }
	}
	unix := func(s *luajit.State) time.Time {
		return time.Unix(int64(math.Floor(s.Number(0))), 0).UTC()
	}
	return map[string]luajit.Func{
		"md5":      str(func(x string) string { sum := md5.Sum([]byte(x)); return hex.EncodeToString(sum[:]) }),
		"md5_bin":  str(func(x string) string { sum := md5.Sum([]byte(x)); return string(sum[:]) }),
		"sha1_bin": str(func(x string) string { sum := sha1.Sum([]byte(x)); return string(sum[:]) }),
		"hmac_sha1": func(s *luajit.State) error {
			m := hmac.New(sha1.New, []byte(strArg(s, 0)))
			m.Write([]byte(strArg(s, 1)))
			s.PushBytes(m.Sum(nil))
			return nil
		},
		"crc32": func(s *luajit.State) error { s.PushNumber(float64(crc32.ChecksumIEEE(s.Bytes(0)))); return nil },
		"encode_base64": func(s *luajit.State) error {
			enc := base64.StdEncoding
			if s.Bool(1) {
				enc = base64.RawStdEncoding
			}
			s.PushString(enc.EncodeToString([]byte(strArg(s, 0))))
			return nil
		},
		"decode_base64": func(s *luajit.State) error {
			x := s.String(0)
			b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(x, "="))
			if err != nil || (len(x)%4 != 0 && strings.HasSuffix(x, "=")) {
				s.PushNil()
				return nil
			}
			s.PushBytes(b)
			return nil
		},
		"escape_uri": func(s *luajit.State) error {
			typ := 2
			if s.Type(1) == luajit.TypeNumber {
				typ = s.Int(1)
			}
			s.PushString(escapeURI(strArg(s, 0), typ))
			return nil
		},
		"unescape_uri":  str(unescapeArg),
		"quote_sql_str": str(quoteSQL),
		"now": func(s *luajit.State) error {
			s.PushNumber(float64(time.Now().UnixMilli()) / 1000)
			return nil
		},
		"time":        func(s *luajit.State) error { s.PushNumber(float64(time.Now().Unix())); return nil },
		"update_time": func(s *luajit.State) error { return nil },
		"today":       func(s *luajit.State) error { s.PushString(time.Now().Format("2006-01-02")); return nil },
		"localtime": func(s *luajit.State) error {
			s.PushString(time.Now().Format("2006-01-02 15:04:05"))
			return nil
		},
		"utctime": func(s *luajit.State) error {
			s.PushString(time.Now().UTC().Format("2006-01-02 15:04:05"))
			return nil
		},
		"http_time":   func(s *luajit.State) error { s.PushString(unix(s).Format(http.TimeFormat)); return nil },
		"cookie_time": func(s *luajit.State) error { s.PushString(unix(s).Format("Mon, 02-Jan-06 15:04:05 GMT")); return nil },
		"parse_http_time": func(s *luajit.State) error {
			x := s.String(0)
			for _, layout := range []string{http.TimeFormat, time.RFC850, time.ANSIC, "Mon, 02-Jan-06 15:04:05 GMT", "Mon, 02-Jan-2006 15:04:05 GMT"} {
				if tm, err := time.Parse(layout, x); err == nil {
					s.PushNumber(float64(tm.Unix()))
					return nil
				}
			}
			s.PushNil()
			return nil
		},
	}
}

// escapeLog writes the bytes of s that would be unclear in the error log as \xHH, as
// ngx_lua's ngx_http_lua_escape_log: control bytes, DEL, bytes above 0x7f, '"' and
// the backslash.
func escapeLog(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}
