package httpcore

import (
	"sync"
	"time"
)

// goPool runs functions on long-lived goroutines. A fresh goroutine starts with a small
// stack that the request path grows by copying, every time; a pooled one keeps its
// grown stack between tasks (fasthttp's workerpool does the same). Goroutines idle for
// longer than poolIdle exit, so a burst leaves no memory behind.
type goPool struct {
	mu      sync.Mutex
	idle    []*poolWorker
	janitor bool
}

type poolWorker struct {
	ch   chan func()
	last time.Time
}

const poolIdle = 10 * time.Second

var workers goPool

// Go runs f on a pooled goroutine.
func (p *goPool) Go(f func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.ch <- f
		return
	}
	if !p.janitor {
		p.janitor = true
		go p.clean()
	}
	p.mu.Unlock()
	w := &poolWorker{ch: make(chan func(), 1)}
	go w.run(p, f)
}

func (w *poolWorker) run(p *goPool, f func()) {
	for f != nil {
		f()
		f = nil
		w.last = time.Now()
		p.mu.Lock()
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		f = <-w.ch
	}
}

// clean stops goroutines idle for too long, oldest first (they are at the bottom of
// the stack of idle workers).
func (p *goPool) clean() {
	for {
		time.Sleep(poolIdle)
		cutoff := time.Now().Add(-poolIdle)
		p.mu.Lock()
		n := 0
		for n < len(p.idle) && p.idle[n].last.Before(cutoff) {
			p.idle[n].ch <- nil
			n++
		}
		if n > 0 {
			rest := copy(p.idle, p.idle[n:])
			for i := rest; i < len(p.idle); i++ {
				p.idle[i] = nil
			}
			p.idle = p.idle[:rest]
		}
		p.mu.Unlock()
	}
}
