package httpcore

import (
	"testing"
	"time"
)

// A loop timer's Reset to a later time, while it is still in the heap, keeps its
// place (no heap operation, as nginx's lazy timers); runTimers puts it back for its
// new time when the old one comes, runs it at that time, and drops a paused one.
func TestTimerLazyResetAndPause(t *testing.T) {
	l := &eventLoop{t0: time.Now(), timerDL: maxWhen}
	fired := 0
	tm := (&Loop{l: l}).NewTimer(func() { fired++ })
	// later moves the loop's clock on by d (its timers count from t0).
	later := func(d time.Duration) { l.t0 = l.t0.Add(-d) }

	tm.Reset(time.Hour)
	tm.Pause()
	if len(l.timers) != 1 || tm.armed {
		t.Fatalf("after Pause: %d timers, armed %v; want it left in the heap, disarmed", len(l.timers), tm.armed)
	}
	tm.Reset(2 * time.Hour)
	if len(l.timers) != 1 || tm.when >= tm.due {
		t.Fatalf("a Reset to a later time moved the timer in the heap: when %v, due %v", tm.when, tm.due)
	}
	later(90 * time.Minute)
	l.runTimers()
	if fired != 0 || len(l.timers) != 1 || tm.when != tm.due {
		t.Fatalf("at its old time: fired %d, %d timers, when %v due %v; want it back in for its due time", fired, len(l.timers), tm.when, tm.due)
	}
	later(time.Hour)
	l.runTimers()
	if fired != 1 || len(l.timers) != 0 {
		t.Fatalf("at its due time: fired %d, %d timers; want it run once and gone", fired, len(l.timers))
	}

	// A paused timer is dropped at its time without running.
	tm.Reset(time.Minute)
	tm.Pause()
	later(2 * time.Minute)
	l.runTimers()
	if fired != 1 || len(l.timers) != 0 {
		t.Fatalf("a paused timer: fired %d, %d timers left", fired, len(l.timers))
	}

	// Stop takes a paused timer out of the heap; a Reset to an earlier time moves it.
	tm.Reset(time.Hour)
	tm.Pause()
	if tm.Stop() || len(l.timers) != 0 {
		t.Fatalf("Stop of a paused timer: %d timers left (or it reported it armed)", len(l.timers))
	}
	tm.Reset(time.Hour)
	tm.Reset(time.Minute)
	if tm.when != tm.due || len(l.timers) != 1 {
		t.Fatalf("a Reset to an earlier time: when %v due %v, %d timers", tm.when, tm.due, len(l.timers))
	}
	if !tm.Stop() {
		t.Fatalf("Stop of an armed timer reported it not armed")
	}
}
