package ngxlua

import (
	"errors"
	"fmt"

	"github.com/spindle-server/spindle/modules/httpcore"
)

// The phase handlers: each runs its chunk as a handler run and turns how the run
// ended into what the HTTP core does next.

// start prepares a run of ch for r, or nil when the worker has no VM.
func start(r *httpcore.Request, p phase, c *Conf, ch *chunk) *run {
	e := engineOf(r.Config())
	if e == nil {
		r.Logf(httpcore.LogAlert, "%s: the worker's Lua VM is not running", ch.directive)
		return nil
	}
	return e.newRun(r, p, c)
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

// runHandler runs a rewrite, access or content chunk, after the request body when the
// location asks for it, and maps how it ended to the core's next step. As ngx_lua's
// access_by_lua: returning, or ngx.exit(ngx.OK), grants access;
// ngx.exit(ngx.DECLINED) leaves the decision to the other handlers.
func runHandler(r *httpcore.Request, c *Conf, ch *chunk, ph phase) httpcore.Action {
	if a, ok := needBody(r, c); !ok {
		return a
	}
	ru := start(r, ph, c, ch)
	if ru == nil {
		return r.Error(500)
	}
	ru.park = r.CanPark()
	ru.e.exec(ru, ch, kindHandler)
	if ru.parked {
		return httpcore.Parked
	}
	a := ru.result(ph)
	ru.e.release(ru)
	return a
}

// result maps how a rewrite, access or content run ended to the core's next step.
func (ru *run) result(ph phase) httpcore.Action {
	r := ru.r
	if rawSocketTaken(r) {
		// The handler owns the connection (ngx.req.socket(true)): however it ended,
		// the core sends nothing more and closes it.
		if ru.exit == exitError {
			ru.logErr("entry thread")
		}
		return httpcore.Finished
	}
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
	args := make([]any, len(op.args))
	for i, x := range op.args {
		s, err := x.String(r)
		if err != nil {
			r.Logf(httpcore.LogError, "set_by_lua %q: %v", op.name, err)
			return r.Error(500)
		}
		args[i] = s
	}
	ru := start(r, phaseSet, op.conf, op.ch)
	if ru == nil {
		return r.Error(500)
	}
	ru.e.exec(ru, op.ch, kindSet, args...)
	if ru.exit == exitError {
		ru.logErr("set_by_lua")
		return r.Error(500)
	}
	val := ""
	if len(ru.rets) > 0 {
		switch x := ru.rets[0].(type) {
		case string:
			val = x
		case float64:
			val = string(appendNumber(nil, x))
		case bool:
			val = fmt.Sprint(x)
		case nil:
		default:
			r.Logf(httpcore.LogError, "set_by_lua %q: bad return value type %v", op.name, x)
			return r.Error(500)
		}
	}
	r.SetUserVar(op.idx, val)
	return httpcore.Continue
}

func runHeaderFilter(r *httpcore.Request, c *Conf, ch *chunk) error {
	ru := start(r, phaseHeaderFilter, c, ch)
	if ru == nil {
		return errors.New("failed to load header_filter_by_lua")
	}
	ru.e.exec(ru, ch, kindHandler)
	switch {
	case ru.exit == exitError:
		ru.logErr("header_filter_by_lua")
		return errors.New("header_filter_by_lua failed")
	case ru.exit == exitStatus && ru.code == ngxError:
		return errors.New("header_filter_by_lua: ngx.exit(ngx.ERROR)")
	}
	return nil
}

func runBodyFilter(r *httpcore.Request, c *Conf, ch *chunk, p []byte, last bool) ([]byte, error) {
	d := dataOf(r)
	if d.filterEOF {
		return nil, nil
	}
	ru := start(r, phaseBodyFilter, c, ch)
	if ru == nil {
		return nil, errors.New("failed to load body_filter_by_lua")
	}
	ru.e.exec(ru, ch, kindFilter, p, last)
	if ru.exit == exitError {
		ru.logErr("body_filter_by_lua")
		return nil, errors.New("body_filter_by_lua failed")
	}
	var chunkOut any
	eof := false
	if len(ru.rets) > 0 {
		chunkOut = ru.rets[0]
	}
	if len(ru.rets) > 1 {
		eof, _ = ru.rets[1].(bool)
	}
	if !last && eof {
		d.filterEOF = true
	}
	if x, ok := chunkOut.(string); ok {
		if len(x) == len(p) && (len(p) == 0 || x == string(p)) {
			return p, nil
		}
		return []byte(x), nil
	}
	return nil, nil
}

func runLog(r *httpcore.Request, c *Conf, ch *chunk) {
	ru := start(r, phaseLog, c, ch)
	if ru == nil {
		return
	}
	ru.e.exec(ru, ch, kindHandler)
	if ru.exit == exitError {
		ru.logErr("log_by_lua")
	}
}
