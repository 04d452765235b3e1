package ngxlua

import (
	"errors"
	"sync"
	"time"

	"github.com/spindle-server/spindle/internal/luajit"
)

// ngx.semaphore (lua-resty-core's): a counter of resources shared by the worker's
// runs. A wait that finds none yields; its run's goroutine waits for a post or the
// timeout with the VM unlocked.

type semaphore struct {
	mu      sync.Mutex
	count   int
	waiters []chan struct{}
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
	sem.mu.Lock()
	for ; n > 0; n-- {
		if len(sem.waiters) > 0 {
			close(sem.waiters[0])
			sem.waiters = sem.waiters[1:]
		} else {
			sem.count++
		}
	}
	sem.mu.Unlock()
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
	ch := make(chan struct{})
	sem.waiters = append(sem.waiters, ch)
	sem.mu.Unlock()
	ru.waitFor(s, func() []any {
		tm := time.NewTimer(timeout)
		defer tm.Stop()
		select {
		case <-ch:
			return []any{true}
		case <-tm.C:
		}
		sem.mu.Lock()
		defer sem.mu.Unlock()
		for i, w := range sem.waiters {
			if w == ch {
				sem.waiters = append(sem.waiters[:i], sem.waiters[i+1:]...)
				return []any{nil, "timeout"}
			}
		}
		return []any{true} // posted to as the timer fired
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
