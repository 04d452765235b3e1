package master

import (
	"time"

	"github.com/spindle-server/spindle/ipc"
)

// The status page shows counters summed over every worker: the worker serving it asks
// the master, which asks every worker of the serving generation and sums the replies
// that arrive within a short bound.

type statusWait struct {
	id       uint64
	asker    *proc
	askerID  uint64
	waiting  map[*proc]bool
	counters ipc.Counters
	workers  int
	done     bool
}

func (m *Master) startStatus(asker *proc, askerID uint64) {
	m.statusSeq++
	w := &statusWait{id: m.statusSeq, asker: asker, askerID: askerID, waiting: map[*proc]bool{}, counters: ipc.Counters{}}
	m.statusWaits[w.id] = w
	for _, p := range m.procs {
		if p.exited || !p.ready || p.gen != asker.gen {
			continue
		}
		if err := p.ctl.Send(ipc.StatusRequest{ID: w.id}); err == nil {
			w.waiting[p] = true
		}
	}
	if len(w.waiting) == 0 {
		m.finishStatus(w)
		return
	}
	time.AfterFunc(500*time.Millisecond, func() { m.events <- event{status: w} })
}

func (m *Master) collectStatus(p *proc, st ipc.Status) {
	w := m.statusWaits[st.ID]
	if w == nil || !w.waiting[p] {
		return
	}
	delete(w.waiting, p)
	w.workers++
	for k, v := range st.Counters {
		w.counters[k] += v
	}
	if len(w.waiting) == 0 {
		m.finishStatus(w)
	}
}

func (m *Master) finishStatus(w *statusWait) {
	if w.done {
		return
	}
	w.done = true
	delete(m.statusWaits, w.id)
	if !w.asker.exited {
		w.asker.ctl.Send(ipc.StatusReply{ID: w.askerID, Workers: w.workers, Counters: w.counters})
	}
}
