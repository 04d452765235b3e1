package ngxlua

import (
	"errors"
	"strings"

	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// A run's coroutines: its entry coroutine and its light threads (ngx.thread.spawn),
// driven by resume. A coroutine that waits yields with its wait, of one of two kinds:
//
//   - start (waitAsync): it starts the wait and returns; whatever ends the wait (a
//     timer) calls done with the results, from any goroutine. A content handler
//     whose request can park (httpcore.Request.CanPark) and that has no light threads
//     parks (step 2 of docs/lua-engine.md): the handler returns httpcore.Parked, the
//     VM is unlocked and nothing waits on a goroutine; done hands the rest of the
//     run to the event loop (Request.Resume), which resumes the coroutine there.
//     Otherwise done sends the results to the run's channel, which the driver waits
//     on (step 1).
//   - wait (waitFor): a function to run with the VM unlocked; with one coroutine the
//     driver runs it itself, on the request's goroutine; once there are light
//     threads, each wait runs on a goroutine of its own and its completion comes back
//     on the run's channel, so that threads wait at the same time, as ngx_lua's do.

type coro struct {
	id    int
	t     *luajit.Thread
	entry bool
	wait  func() []any // set by the Go function that yielded
	start func(done func([]any))
	// complete ends its waits (engine.complete), made once; completeHere from the
	// event loop's readiness callbacks (engine.completeHere)
	complete     func([]any)
	completeHere func([]any)
	spawn        luajit.Ref // set by ngx.thread.spawn: the child's coroutine
	spawned      bool
	waitIDs      []int // blocked in ngx.thread.wait on these threads
	pending      bool  // its wait runs on a goroutine
	inline       bool  // its wait writes the response: it runs on the driver's goroutine

	done, killed, failed bool
	collected            bool // ngx.thread.wait returned it
	errMsg               string
}

type readyCo struct {
	co   *coro
	vals []any
}

type completion struct {
	co  *coro
	res []any
}

// resume runs the runner with ref (a chunk's factory, or a timer's function) on a
// new coroutine, then every coroutine of the run until all are done (or the run
// ends early: ngx.exit, an error in the entry coroutine), and unlocks the VM.
func (e *engine) resume(s *luajit.State, ru *run, ref luajit.Ref, kind int, args []any) {
	t, err := s.NewThread(e.runner)
	if err != nil {
		s.Unlock()
		ru.exit, ru.errMsg = exitError, err.Error()
		return
	}
	if ru.conf != nil {
		t.Limit = ru.conf.maxRunTime
	}
	// The entry coroutine's completions are made once per run struct (release keeps
	// them): they refer to ru and &ru.entryCo, which a reused run keeps.
	ru.entryCo = coro{t: t, entry: true, complete: ru.entryCo.complete, completeHere: ru.entryCo.completeHere}
	ru.entry = &ru.entryCo
	s.PushRef(ref)
	s.PushInt(kind)
	pushAll(s, args)
	e.drive(s, ru, ru.entry, nil, true)
}

// drive resumes next (with vals, unless first), then the run's other coroutines,
// until the run is over or parks (ru.parked); either way it unlocks the VM.
func (e *engine) drive(s *luajit.State, ru *run, next *coro, vals []any, first bool) {
	for ru.exit == exitNone || ru.exit == exitJump && !ru.entry.done {
		if next == nil {
			if len(ru.ready) == 0 && ru.pending > 0 {
				// Every coroutine waits: take the completions that came, else park
				// (the completion that comes first resumes the run on the event
				// loop) or wait for one on this goroutine.
				ru.mu.Lock()
				q := ru.q
				if len(q) > 0 {
					ru.q, ru.qSpare = ru.qSpare[:0], nil
				}
				if len(q) == 0 && ru.park {
					if ru.unparkFn == nil {
						ru.unparkFn = func() httpcore.Action { return e.unpark(ru) }
					}
					ru.sleeping = true
					ru.mu.Unlock()
					ru.parked = true
					s.Unlock()
					if len(ru.out) > 0 {
						ru.writeOut()
					}
					return
				}
				if len(q) == 0 && ru.sig == nil {
					// Made only by a driver that waits on it (a parked run never
					// does): completions after this look for it under mu.
					ru.sig = make(chan struct{}, 1)
				}
				ru.mu.Unlock()
				if len(q) == 0 {
					if ru.r != nil {
						ru.r.Blocking()
					}
					s.Unlock()
					if len(ru.out) > 0 {
						ru.writeOut()
					}
					<-ru.sig
					s = e.vm.Lock()
					continue
				}
				for _, c := range q {
					if c.co.killed || !c.co.pending {
						continue
					}
					c.co.pending = false
					ru.pending--
					ru.ready = append(ru.ready, readyCo{c.co, c.res})
				}
				clear(q)
				ru.mu.Lock()
				if ru.qSpare == nil {
					ru.qSpare = q[:0] // the next q (no allocation per wait)
				}
				ru.mu.Unlock()
				continue
			}
			if len(ru.ready) == 0 {
				break // all done, or blocked for ever on ngx.thread.wait
			}
			next, vals = ru.ready[0].co, ru.ready[0].vals
			// Shifted down, not resliced: the array is kept for the next waits.
			n := copy(ru.ready, ru.ready[1:])
			ru.ready[n] = readyCo{}
			ru.ready = ru.ready[:n]
		}
		if !first {
			pushAll(s, vals)
		}
		first = false
		co := next
		next = nil
		e.cur, ru.cur = ru, co
		e.beforeResume(ru)
		st, err := s.Resume(co.t)
		e.afterResume(ru)
		if e.sb.kaid != 0 {
			e.takeBack() // a setkeepalive answered in C: pooled now
		}
		e.cur, ru.cur = nil, nil
		switch {
		case err != nil:
			co.done, co.failed = true, true
			msg := errorText(err, ru)
			if co.entry {
				if ru.exit == exitNone || ru.exit == exitJump {
					ru.exit, ru.errMsg = exitError, msg
				}
			} else {
				co.errMsg = strings.SplitN(msg, "\n", 2)[0]
				ru.logf("lua user thread aborted: runtime error: %s", msg)
				e.threadDone(ru, co)
			}
		case st == luajit.Finished:
			co.done = true
			if co.entry {
				if n := s.N(); n > 0 {
					ru.rets = make([]any, n)
					for i := range n {
						ru.rets[i] = value(s, i)
					}
				}
			} else {
				e.threadDone(ru, co)
			}
		case ru.exit != exitNone:
			// ngx.exit and friends: the coroutines are never resumed.
		case co.spawned:
			co.spawned = false
			child, err := s.ThreadOf(co.spawn)
			if err != nil {
				ru.ready = append([]readyCo{{co, []any{nil, err.Error()}}}, ru.ready...)
				break
			}
			if ru.conf != nil {
				child.Limit = ru.conf.maxRunTime
			}
			ch := &coro{id: len(ru.threads) + 1, t: child}
			ru.threads = append(ru.threads, ch)
			// The child runs first, until it waits or ends; then its parent goes on.
			ru.ready = append([]readyCo{{ch, nil}, {co, []any{ch.id}}}, ru.ready...)
		case co.start != nil:
			start := co.start
			co.start = nil
			ru.await(co)
			if co.complete == nil {
				// Made once per coroutine: a request may wait many times.
				co.complete = func(res []any) { e.complete(ru, co, res) }
			}
			ru.starting = co
			start(co.complete)
			ru.starting = nil
		case co.wait != nil:
			w, inline := co.wait, co.inline
			co.wait, co.inline = nil, false
			if len(ru.threads) == 0 && !ru.park || inline {
				// One coroutine that cannot park, or a wait that works on the
				// request (not safe for concurrent use): the wait runs here, with the
				// VM unlocked. A wait that blocks takes the request off the event
				// loop first; an inline one blocks itself if it must.
				if !inline && ru.r != nil {
					ru.r.Blocking()
				}
				s.Unlock()
				if len(ru.out) > 0 {
					ru.writeOut()
				}
				res := w()
				s = e.vm.Lock()
				next, vals = co, res
				break
			}
			// A light thread's blocking wait, or one of a run that can park (a
			// connect): on a goroutine of its own, while the others go on or the
			// request is parked (a goroutine switch either way, and the request's
			// connection stays with the loop).
			ru.await(co)
			go func() { e.complete(ru, co, w()) }()
		case co.waitIDs != nil:
			// blocked in ngx.thread.wait until a thread it waits for ends
		default:
			// a bare coroutine.yield: it goes on after the others
			ru.ready = append(ru.ready, readyCo{co, nil})
		}
	}
	for _, co := range ru.threads {
		if !co.done {
			co.killed = true
		}
		if co.pending {
			ru.abandoned = true
		}
		s.CloseThread(co.t)
	}
	s.CloseThread(ru.entry.t)
	if len(ru.socks) > 0 {
		e.closeSockets(ru)
	}
	if len(ru.udps) > 0 {
		e.closeUDP(ru)
	}
	s.Unlock()
	if len(ru.out) > 0 {
		ru.writeOut()
	}
}

// await counts co's wait, which complete ends.
func (ru *run) await(co *coro) {
	co.pending = true
	ru.pending++
}

// complete hands a wait's results to its run, from any goroutine: a parked run is
// resumed on the event loop; a driver waiting on its goroutine is woken.
func (e *engine) complete(ru *run, co *coro, res []any) { e.completeOn(ru, co, res, false) }

// completeHere is complete from a function the event loop's leader calls for a
// socket's readiness (sockWait.ready): a parked run goes on there and then, without a
// post back to the loop.
func (e *engine) completeHere(ru *run, co *coro, res []any) { e.completeOn(ru, co, res, true) }

// completeOn is complete and completeHere; here: the caller is the loop's leader.
func (e *engine) completeOn(ru *run, co *coro, res []any, here bool) {
	ru.mu.Lock()
	ru.q = append(ru.q, completion{co, res})
	if ru.sleeping {
		ru.sleeping = false
		ru.mu.Unlock()
		if here {
			ru.r.ResumeHere(ru.unparkFn)
		} else {
			ru.r.Resume(ru.unparkFn)
		}
		return
	}
	sig := ru.sig
	ru.mu.Unlock()
	if sig != nil {
		select {
		case sig <- struct{}{}:
		default:
		}
	}
}

// unpark goes on with a parked run on the event loop, a wait of it being over. It
// returns the content handler's action: Parked again, or the run's outcome.
func (e *engine) unpark(ru *run) httpcore.Action {
	select {
	case <-e.stop:
		return ru.r.Error(500) // the worker's VM is gone
	default:
	}
	s := e.vm.Lock()
	ru.parked = false
	e.drive(s, ru, nil, nil, false)
	if ru.parked {
		return httpcore.Parked
	}
	a := ru.result(ru.phase)
	e.release(ru)
	return a
}

// threadDone wakes the coroutine waiting for co in ngx.thread.wait.
func (e *engine) threadDone(ru *run, co *coro) {
	for _, w := range append([]*coro{ru.entry}, ru.threads...) {
		if w.waitIDs == nil {
			continue
		}
		for _, id := range w.waitIDs {
			if id == co.id {
				w.waitIDs = nil
				co.collected = true
				ru.ready = append(ru.ready, readyCo{w, threadResult(co)})
				return
			}
		}
	}
}

// threadResult is what ngx.thread.wait's Go side returns for a finished thread:
// its id, and false and the error if it failed.
func threadResult(co *coro) []any {
	if co.failed {
		return []any{co.id, false, co.errMsg}
	}
	return []any{co.id, true}
}

// logf logs at error level with the run's request, or its context.
func (ru *run) logf(format string, args ...any) {
	if ru.r != nil {
		ru.r.Logf(httpcore.LogError, format, args...)
	} else {
		ru.e.logf(logErr, format+", context: %s", append(args, ru.phase.directive())...)
	}
}

// threadSpawn is __sp.thread_spawn(co): co is the coroutine the prelude made of the
// thread's function. It yields; the driver runs the child first, then resumes the
// caller with the child's id.
func (e *engine) threadSpawn(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if !ru.phase.canYield() {
		return disabled("ngx.thread.spawn", ru.phase)
	}
	ref, ok := s.Ref(0)
	if !ok {
		return errors.New("bad argument #1 to 'spawn' (function expected)")
	}
	ru.cur.spawn, ru.cur.spawned = ref, true
	s.PushString(waitMark)
	s.Yield()
	return nil
}

func (ru *run) thread(id int) *coro {
	if id >= 1 && id <= len(ru.threads) {
		return ru.threads[id-1]
	}
	return nil
}

// threadWait is __sp.thread_wait(ids...): the id of the first of them that ended,
// with true, or false and its error; it yields until one ends.
func (e *engine) threadWait(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if !ru.phase.canYield() {
		return disabled("ngx.thread.wait", ru.phase)
	}
	var ids []int
	for i := 0; i < s.N(); i++ {
		co := ru.thread(s.Int(i))
		if co == nil {
			return errors.New("bad argument #" + itoa(i+1) + " to 'wait' (not a thread of this request)")
		}
		if co.done && !co.collected && !co.killed {
			co.collected = true
			pushAll(s, threadResult(co))
			return nil
		}
		if !co.done && !co.killed {
			ids = append(ids, co.id)
		}
	}
	if len(ids) == 0 {
		s.PushNil()
		s.PushString("already waited or killed")
		return nil
	}
	ru.cur.waitIDs = ids
	s.PushString(waitMark)
	s.Yield()
	return nil
}

// threadKill is __sp.thread_kill(id).
func (e *engine) threadKill(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	co := ru.thread(s.Int(0))
	if co == nil {
		return errors.New("bad argument #1 to 'kill' (not a thread of this request)")
	}
	switch {
	case co.killed || co.collected:
		return fail(s, "already waited or killed")
	case co.done:
		return fail(s, "already terminated")
	}
	co.killed, co.done = true, true
	if co.pending {
		// Its wait goes on on its goroutine; the run does not wait for it.
		co.pending = false
		ru.pending--
		ru.abandoned = true
	}
	for i, r := range ru.ready {
		if r.co == co {
			ru.ready = append(ru.ready[:i], ru.ready[i+1:]...)
			break
		}
	}
	s.PushInt(1)
	return nil
}

func itoa(n int) string { return string(appendNumber(nil, float64(n))) }

func (e *engine) threadFuncs() map[string]luajit.Func {
	return map[string]luajit.Func{
		"thread_wait": e.threadWait,
		"thread_kill": e.threadKill,
	}
}
