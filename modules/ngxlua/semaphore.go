package ngxlua

import (
	"errors"
	"sync"
	"time"

	"github.com/spindle-server/spindle/internal/luajit"
)

// ngx.semaphore (lua-resty-core's): a counter of resources shared by the worker's
// runs. A wait that finds none yields (waitAsync): a post or a timer ends it, and a
// parked request is resumed on the event loop (step 2 of docs/lua-engine.md).

type semaphore struct {
	mu      sync.Mutex
	count   int
	waiters []*semWaiter
}

// semWaiter is a run waiting in sema:wait.
type semWaiter struct {
	done func([]any)
	tm   stopper
}

func (e *engine) semaNew(s *luajit.State) error {
	n := s.Int(0)
	if n < 0 {
		return errors.New("bad argument #1 to 'new' (no negative number)")
	}
	e.semas = append(e.semas, &semaphore{count: n})
	s.PushInt(len(e.semas))
	return nil
}

func (e *engine) sema(s *luajit.State) (*semaphore, error) {
	id := s.Int(0)
	if id < 1 || id > len(e.semas) {
		return nil, errors.New("ngx.semaphore: not a semaphore")
	}
	return e.semas[id-1], nil
}

// semaPost is sema:post(n): wakes up to n waiters, counts the rest.
func (e *engine) semaPost(s *luajit.State) error {
	sem, err := e.sema(s)
	if err != nil {
		return err
	}
	n := 1
	if s.Type(1) == luajit.TypeNumber {
		n = s.Int(1)
	}
	var woken []*semWaiter
	sem.mu.Lock()
	for ; n > 0; n-- {
		if len(sem.waiters) > 0 {
			w := sem.waiters[0]
			sem.waiters[0] = nil
			sem.waiters = sem.waiters[1:]
			w.tm.Stop()
			woken = append(woken, w)
		} else {
			sem.count++
		}
	}
	sem.mu.Unlock()
	for _, w := range woken {
		w.done([]any{true})
	}
	s.PushBool(true)
	return nil
}

// semaWait is sema:wait(timeout): true, or nil and "timeout".
func (e *engine) semaWait(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	sem, err := e.sema(s)
	if err != nil {
		return err
	}
	sem.mu.Lock()
	if sem.count > 0 {
		sem.count--
		sem.mu.Unlock()
		s.PushBool(true)
		return nil
	}
	timeout := time.Duration(s.Number(1) * float64(time.Second))
	if timeout <= 0 {
		sem.mu.Unlock()
		return fail(s, "timeout")
	}
	if !ru.phase.canYield() {
		sem.mu.Unlock()
		return disabled("ngx.semaphore", ru.phase)
	}
	sem.mu.Unlock()
	ru.waitAsync(s, func(done func([]any)) {
		w := &semWaiter{done: done}
		sem.mu.Lock()
		defer sem.mu.Unlock()
		if sem.count > 0 {
			// Posted to since (by a goroutine of a run in step 1).
			sem.count--
			done([]any{true})
			return
		}
		sem.waiters = append(sem.waiters, w)
		w.tm = ru.afterFunc(timeout, func() {
			sem.mu.Lock()
			for i, x := range sem.waiters {
				if x == w {
					sem.waiters = append(sem.waiters[:i], sem.waiters[i+1:]...)
					sem.mu.Unlock()
					done([]any{nil, "timeout"})
					return
				}
			}
			sem.mu.Unlock() // posted to as the timer fired
		})
	})
	return nil
}

func (e *engine) semaCount(s *luajit.State) error {
	sem, err := e.sema(s)
	if err != nil {
		return err
	}
	sem.mu.Lock()
	n := sem.count - len(sem.waiters)
	sem.mu.Unlock()
	s.PushInt(n)
	return nil
}

func (e *engine) semaFuncs() map[string]luajit.Func {
	return map[string]luajit.Func{"sema_new": e.semaNew, "sema_post": e.semaPost, "sema_wait": e.semaWait, "sema_count": e.semaCount}
}
