package pool

import (
	"sync"
	"time"
)

// Sweeper is what the worker's sweeper calls every second: a Pool, or a module's own
// idle connections (memc's, which its memcached client keeps).
type Sweeper interface {
	Sweep(now time.Time)
}

// sweepEvery is the sweeper's period: idle connections outlive their timeout by less
// than this, as nginx's timers are coarse to its timer resolution.
const sweepEvery = time.Second

// The worker's one sweeper: a goroutine that runs while anything is registered.
var sweeper struct {
	mu      sync.Mutex
	set     map[Sweeper]struct{}
	running bool
}

// Register adds s to the worker's sweeper, which starts with its first member.
func Register(s Sweeper) { register(s) }

// Unregister removes s; the sweeper stops when nothing is left.
func Unregister(s Sweeper) { unregister(s) }

func register(s Sweeper) {
	sweeper.mu.Lock()
	defer sweeper.mu.Unlock()
	if sweeper.set == nil {
		sweeper.set = map[Sweeper]struct{}{}
	}
	sweeper.set[s] = struct{}{}
	if !sweeper.running {
		sweeper.running = true
		go sweep()
	}
}

func unregister(s Sweeper) {
	sweeper.mu.Lock()
	defer sweeper.mu.Unlock()
	delete(sweeper.set, s)
}

func sweep() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	var members []Sweeper
	for now := range t.C {
		sweeper.mu.Lock()
		if len(sweeper.set) == 0 {
			sweeper.running = false
			sweeper.mu.Unlock()
			return
		}
		members = members[:0]
		for s := range sweeper.set {
			members = append(members, s)
		}
		sweeper.mu.Unlock()
		for _, s := range members {
			s.Sweep(now)
		}
		clear(members) // no pool kept alive by the sweeper after it unregistered
	}
}

// sweepers reports how many members the sweeper has, and whether it runs (tests).
func sweepers() (int, bool) {
	sweeper.mu.Lock()
	defer sweeper.mu.Unlock()
	return len(sweeper.set), sweeper.running
}
