package master

import (
	"fmt"
	"os"
	"time"

	"github.com/spindle-server/spindle/signals"
	"github.com/spindle-server/spindle/systemd"
)

// reload validates the config anew and starts a generation of workers on it; the old
// generation keeps serving until every new worker is ready, and keeps serving for good
// if anything goes wrong.
func (m *Master) reload() {
	m.reloadStarted = time.Now().UnixNano()
	systemd.Reloading()
	bundle, cfg, err := Load(m.opts.Prefix, m.opts.ConfPath)
	if err != nil {
		m.reloadFailed(err.Error())
		return
	}
	if cfg.Pid != m.pidFile {
		m.log.Warnf("pid file path changed to %s; it takes effect after a restart", cfg.Pid)
	}
	g, err := m.startGeneration(bundle, cfg)
	if err != nil {
		m.reloadFailed(err.Error())
		return
	}
	m.acmeStart(cfg)
	m.pending = g
	m.workersHalted = false
	g.timer = time.AfterFunc(cfg.WorkerStartTimeout, func() { m.events <- event{gen: g} })
}

// finishReload retires the old generation once every new worker is ready.
func (m *Master) finishReload() {
	g := m.pending
	g.timer.Stop()
	m.pending = nil
	if m.cur != nil {
		m.quitGeneration(m.cur)
		m.old = append(m.old, m.cur)
	}
	m.cur = g
	m.cfg = g.cfg
	if m.log.Level() != g.cfg.ErrorLogLevel || m.log.Path() != g.cfg.ErrorLog {
		m.log.Noticef("error log settings change with a restart")
	}
	msg := fmt.Sprintf("reload: generation %d ready, %d worker processes", g.id, g.n)
	m.log.Noticef("%s", msg)
	m.record("reload", true, msg, g.id)
	systemd.Ready(msg)
	m.retireGenerations()
	m.acmeRetire(m.cfg)
	m.afterReload()
}

func (m *Master) failPending(reason string) {
	g := m.pending
	if g == nil {
		return
	}
	g.timer.Stop()
	m.pending = nil
	m.killGeneration(g)
	m.old = append(m.old, g)
	m.reloadFailed(reason)
	m.retireGenerations()
}

func (m *Master) reloadFailed(reason string) {
	msg := "reload failed, the running configuration keeps serving:\n" + reason
	m.log.Errorf("%s", msg)
	m.record("reload", false, msg, 0)
	systemd.Ready("reload failed: " + reason)
	m.acmeRetire(m.cfg)
	m.afterReload()
}

func (m *Master) afterReload() {
	switch {
	case m.reloadQueued:
		m.reloadQueued = false
		m.reload()
	case m.upgradeQueued:
		m.upgradeQueued = false
		m.upgrade()
	}
}

func (m *Master) record(op string, ok bool, msg string, gen int) {
	started := m.reloadStarted
	if op == "upgrade" {
		started = m.upgradeStart
	}
	o := signals.Outcome{Pid: os.Getpid(), Op: op, Started: started, Finished: time.Now().UnixNano(), OK: ok, Message: msg, Generation: gen}
	if op == "upgrade" && ok {
		if pid, err := signals.ReadPid(m.pidFile); err == nil {
			o.NewPid = pid
		}
	}
	if err := signals.AppendOutcome(m.outcome, o); err != nil {
		m.log.Alertf("record %s outcome: %v", op, err)
	}
}

// upgrade starts the new binary (tableflip): it inherits the listening sockets, starts
// its own workers and reports ready; this master then drains and exits. If the new
// binary fails, this master keeps serving.
func (m *Master) upgrade() {
	m.upgradeStart = time.Now().UnixNano()
	if m.upgrading {
		return
	}
	if err := m.socks.register(); err != nil {
		m.record("upgrade", false, "upgrade failed: "+err.Error(), 0)
		return
	}
	if err := m.registerTicketKeys(); err != nil {
		m.record("upgrade", false, "upgrade failed: "+err.Error(), 0)
		return
	}
	m.upgrading = true
	os.Setenv(EnvOutcome, m.outcome)
	systemd.Reloading()
	go func() {
		err := m.upg.Upgrade()
		m.events <- event{upg: &err}
	}()
}

func (m *Master) onUpgrade(err error) {
	if m.stopping {
		return
	}
	m.upgrading = false
	if err != nil {
		msg := "upgrade failed, this master keeps serving: " + err.Error()
		if err.Error() == "parent hasn't exited" {
			msg = "upgrade refused: the previous master is still draining its workers; try again once it has exited"
		} else if reason := m.childFailure(); reason != "" {
			msg += "\n" + reason
		}
		m.log.Errorf("%s", msg)
		m.record("upgrade", false, msg, 0)
		systemd.Ready("upgrade failed")
		return
	}
	pid, _ := signals.ReadPid(m.pidFile)
	msg := fmt.Sprintf("upgrade: new master %d ready, old master %d draining", pid, os.Getpid())
	m.log.Noticef("%s", msg)
	m.record("upgrade", true, msg, 0)
	// The new master announced itself to systemd; this one must not say STOPPING,
	// which systemd would take for the whole service.
	m.stopping = true
	m.acmeRetire(nil) // the new master keeps the certificates now
	for _, p := range m.procs {
		m.quit(p)
	}
	m.cur, m.pending = nil, nil
}

// childFailure finds why a new master failed, from its start outcome.
func (m *Master) childFailure() string {
	outs := signals.ReadOutcomes(m.outcome)
	for i := len(outs) - 1; i >= 0; i-- {
		o := outs[i]
		if o.Op == "start" && !o.OK && o.Pid != os.Getpid() && o.Started >= m.upgradeStart {
			return o.Message
		}
	}
	return ""
}
