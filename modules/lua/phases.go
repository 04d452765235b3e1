package lua

import (
	"fmt"

	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// The phase handlers: each runs its chunk as a handler run and turns how the run
// ended into what the HTTP core does next.

// start prepares a run of ch for r, or answers 500 when the code cannot be loaded (a
// *_by_lua_file whose file changed or vanished with lua_code_cache off).
func start(r *httpcore.Request, p phase, c *Conf, ch *chunk) (*vm, *run, *glua.LFunction, bool) {
	v := vmOf(r.Config())
	if v == nil {
		r.Logf(httpcore.LogAlert, "%s: the worker's Lua VM is not running", ch.directive)
		return nil, nil, nil, false
	}
	ru := v.newRun(r, p, c)
	fn, err := v.chunkFunction(ru, ch)
	if err != nil {
		r.Logf(httpcore.LogError, "failed to load %s: %v", ch.directive, err)
		ru.free()
		return v, nil, nil, false
	}
	return v, ru, fn, true
}

// needBody reads the request body first when lua_need_request_body is on.
func needBody(r *httpcore.Request, c *Conf) (httpcore.Action, bool) {
	if !c.needBody {
		return 0, true
	}
	if d := peekData(r); d != nil && d.bodyRead {
		return 0, true
	}
	if status := readBody(r); status != 0 {
		return r.Error(status), false
	}
	return 0, true
}

func runRewrite(r *httpcore.Request, c *Conf, ch *chunk) httpcore.Action {
	return runHandler(r, c, ch, phaseRewrite)
}

// runAccess runs access_by_lua, which the core's access checker combines with the
// other access handlers under satisfy (subrequests skip the phase, in the core). As
// ngx_lua's: returning, or ngx.exit(ngx.OK), grants access; ngx.exit(ngx.DECLINED)
// leaves the decision to the other handlers; ngx.exit(403) or 401 refuses it.
func runAccess(r *httpcore.Request, c *Conf, ch *chunk) httpcore.Action {
	return runHandler(r, c, ch, phaseAccess)
}

func runContent(r *httpcore.Request, c *Conf, ch *chunk) httpcore.Action {
	return runHandler(r, c, ch, phaseContent)
}

// runHandler runs a rewrite, access or content chunk, after the request body when the
// location asks for it, and maps how it ended to the core's next step.
func runHandler(r *httpcore.Request, c *Conf, ch *chunk, ph phase) httpcore.Action {
	if a, ok := needBody(r, c); !ok {
		return a
	}
	v, ru, fn, ok := start(r, ph, c, ch)
	if !ok {
		return r.Error(500)
	}
	v.call(ru, fn, 0)
	a := ru.result(ph)
	ru.free()
	return a
}

// result maps how a rewrite, access or content run ended to the core's next step.
func (ru *run) result(ph phase) httpcore.Action {
	r := ru.r
	content := ph == phaseContent
	// An access handler that ends normally grants access (nginx's NGX_OK).
	done := httpcore.Continue
	if ph == phaseAccess {
		done = httpcore.NextPhase
	}
	switch ru.exit {
	case exitNone:
		// A rewrite or access handler that sent output ended the request.
		if content || r.HeaderSent() {
			return httpcore.Finished
		}
		return done
	case exitExec:
		return r.InternalRedirect(ru.execURI, ru.execArgs)
	case exitJump:
		return r.ReLocate()
	case exitError:
		ru.logErr("entry thread")
		if r.HeaderSent() {
			// The response is under way: send what there is and cut it short, so that
			// the client sees a truncated response.
			truncate(r)
			return httpcore.Finished
		}
		return r.Error(500)
	}
	code := ru.code
	switch {
	case code == ngxOK || code == ngxDone || code == ngxDeclined:
		if content || r.HeaderSent() {
			return httpcore.Finished
		}
		if code == ngxDeclined {
			return httpcore.Continue
		}
		return done
	case code == ngxError:
		if r.HeaderSent() {
			truncate(r)
			return httpcore.Finished
		}
		return r.Error(500)
	case code == 444:
		r.CloseConnection()
		return httpcore.Finished
	case r.HeaderSent():
		if code >= 300 && code != r.Status() {
			r.Logf(httpcore.LogError, "attempt to set status %d via ngx.exit after sending out the response status %d", code, r.Status())
		}
		return httpcore.Finished
	case code < 300:
		r.SetStatus(code)
		return httpcore.Finished
	}
	return r.Error(code)
}

// truncate ends a response whose header went out without its end: what was written
// is sent (chunked, or up to a Content-Length that it falls short of) and the
// connection closed.
func truncate(r *httpcore.Request) {
	if !r.IsSubrequest() {
		if r.ContentLength() < 0 {
			r.Flush()
		}
	}
	r.CloseConnection()
}

func runSet(r *httpcore.Request, op *setOp) httpcore.Action {
	args := make([]glua.LValue, len(op.args))
	for i, x := range op.args {
		s, err := x.String(r)
		if err != nil {
			r.Logf(httpcore.LogError, "set_by_lua %q: %v", op.name, err)
			return r.Error(500)
		}
		args[i] = glua.LString(s)
	}
	v, ru, fn, ok := start(r, phaseSet, op.conf, op.ch)
	if !ok {
		return r.Error(500)
	}
	ru.arg = args
	rets := v.call(ru, fn, 1)
	defer ru.free()
	if ru.exit == exitError {
		ru.logErr("set_by_lua")
		return r.Error(500)
	}
	val := ""
	if len(rets) > 0 {
		switch x := rets[0].(type) {
		case glua.LString:
			val = string(x)
		case glua.LNumber:
			val = string(appendNumber(nil, float64(x)))
		case glua.LBool:
			val = fmt.Sprint(bool(x))
		case *glua.LNilType:
		default:
			r.Logf(httpcore.LogError, "set_by_lua %q: bad return value type %s", op.name, x.Type())
			return r.Error(500)
		}
	}
	r.SetUserVar(op.idx, val)
	return httpcore.Continue
}

func runHeaderFilter(r *httpcore.Request, c *Conf, ch *chunk) error {
	v, ru, fn, ok := start(r, phaseHeaderFilter, c, ch)
	if !ok {
		return fmt.Errorf("failed to load header_filter_by_lua")
	}
	v.call(ru, fn, 0)
	defer ru.free()
	switch {
	case ru.exit == exitError:
		ru.logErr("header_filter_by_lua")
		return fmt.Errorf("header_filter_by_lua failed")
	case ru.exit == exitStatus && ru.code == ngxError:
		return fmt.Errorf("header_filter_by_lua: ngx.exit(ngx.ERROR)")
	}
	return nil
}

func runBodyFilter(r *httpcore.Request, c *Conf, ch *chunk, p []byte, last bool) ([]byte, error) {
	d := dataOf(r)
	if d.filterEOF {
		return nil, nil
	}
	v, ru, fn, ok := start(r, phaseBodyFilter, c, ch)
	if !ok {
		return nil, fmt.Errorf("failed to load body_filter_by_lua")
	}
	ru.arg = []glua.LValue{glua.LString(p), glua.LBool(last)}
	rets := v.call(ru, fn, 1)
	defer ru.free()
	if ru.exit == exitError {
		ru.logErr("body_filter_by_lua")
		return nil, fmt.Errorf("body_filter_by_lua failed")
	}
	if len(rets) > 0 && rets[0] == glua.LNumber(ngxError) {
		return nil, fmt.Errorf("body_filter_by_lua returned ngx.ERROR")
	}
	if !last && glua.LVAsBool(ru.arg[1]) {
		d.filterEOF = true
	}
	switch x := ru.arg[0].(type) {
	case glua.LString:
		if len(x) == len(p) && (len(p) == 0 || string(x) == string(p)) {
			return p, nil
		}
		return []byte(x), nil
	}
	return nil, nil
}

func runLog(r *httpcore.Request, c *Conf, ch *chunk) {
	v, ru, fn, ok := start(r, phaseLog, c, ch)
	if !ok {
		return
	}
	v.call(ru, fn, 0)
	defer ru.free()
	if ru.exit == exitError {
		ru.logErr("log_by_lua")
	}
}
