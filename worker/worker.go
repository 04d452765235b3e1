// Package worker is the worker process: it receives its config and sockets from the
// master over the control pipe, sets up its runtime (one thread for Go code, CPU
// pinning, privileges), serves HTTP until told to drain, and exits as soon as the
// master is gone.
package worker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/errlog"
	"github.com/spindle-server/spindle/internal/proctitle"
	"github.com/spindle-server/spindle/internal/sysutil"
	"github.com/spindle-server/spindle/ipc"
	"github.com/spindle-server/spindle/modules/httpcore"
	"golang.org/x/sys/unix"
)

// ControlFD is the descriptor number of the control pipe in a worker.
const ControlFD = 3

// EnvRole marks a process started by the master as a worker (ipc.EnvRole).
const EnvRole = ipc.EnvRole

// Run is the worker process's main function; it returns the exit code.
func Run() int {
	runtime.GOMAXPROCS(1)
	// Long cgo calls (Lua handlers) lose the only P to sysmon less often; needs root
	// (CAP_SYS_NICE), which the worker still has here if it was started as root.
	_ = sysutil.SlowSysmon(sysutil.SysmonSlack)
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
	ctl, err := ipc.FromFD(ControlFD)
	if err != nil {
		fmt.Fprintf(os.Stderr, "spindle worker: %v\n", err)
		return 2
	}
	w := &worker{ctl: ctl, pending: map[uint64]chan ipc.StatusReply{}}
	if dir := os.Getenv(EnvCPUProfile); dir != "" {
		if stop := startCPUProfile(dir); stop != nil {
			defer stop()
		}
	}
	code := w.run()
	return code
}

// GCPercent is the workers' GOGC unless the environment sets one. A worker's live
// heap is small (about a megabyte) and its garbage comes from requests: with Go's
// default of 100 it collected about 45 times a second under load on Lua subrequests,
// 10-15% of its CPU. 200 halves that; 400 saved a little more CPU but held 60% more
// memory per Lua request in flight (scripts/bench.sh memory: 9.7 KB at 100, 10.5 KB
// at 200, 15.5 KB at 400; OpenResty 10.6 KB).
const GCPercent = 200

// EnvCPUProfile names a directory where each worker writes a Go CPU profile of its
// whole life (cpu-PID.pprof), for `go tool pprof`: how spindle's own figures in
// scripts/bench.sh are explained. Unset in production.
const EnvCPUProfile = "SPINDLE_CPUPROFILE"

func startCPUProfile(dir string) (stop func()) {
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("cpu-%d.pprof", os.Getpid())))
	if err != nil {
		fmt.Fprintf(os.Stderr, "spindle worker: %v\n", err)
		return nil
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "spindle worker: %v\n", err)
		f.Close()
		return nil
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

type worker struct {
	ctl     *ipc.Conn
	log     *errlog.Logger
	cfg     *httpcore.Config
	eng     *httpcore.Engine
	exiting chan struct{}

	mu      sync.Mutex
	pending map[uint64]chan ipc.StatusReply
	seq     atomic.Uint64
}

func (w *worker) fatal(format string, args ...any) int {
	text := fmt.Sprintf(format, args...)
	if w.log != nil {
		w.log.Logf(errlog.Emerg, "%s", text)
	}
	w.ctl.Send(ipc.Fatal{Text: text})
	return 2
}

func (w *worker) run() int {
	m, fds, err := w.ctl.Recv()
	if err != nil {
		fmt.Fprintf(os.Stderr, "spindle worker: reading config from master: %v\n", err)
		return 2
	}
	cm, ok := m.(ipc.Config)
	if !ok {
		return w.fatal("expected CONFIG from the master, got %v", m.Type())
	}
	bundle, err := conf.DecodeBundle(cm.Bundle)
	if err != nil {
		return w.fatal("%v", err)
	}
	mc, err := conf.Parse(bundle)
	if err != nil {
		return w.fatal("%v", err)
	}
	if mc.CPUAffinity.Mode != conf.AffinityOff {
		if cpus := mc.CPUAffinity.CPUs(cm.Slot, sysutil.NumCPU()); len(cpus) > 0 {
			if err := sysutil.PinCPUs(cpus); err != nil {
				return w.fatal("%v", err)
			}
		}
	}
	if mc.WorkerRlimitNofile > 0 {
		lim := unix.Rlimit{Cur: uint64(mc.WorkerRlimitNofile), Max: uint64(mc.WorkerRlimitNofile)}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return w.fatal("setrlimit(RLIMIT_NOFILE, %d): %v", mc.WorkerRlimitNofile, err)
		}
	}

	// The configuration is built before root is dropped, as nginx's master reads it:
	// TLS private keys are readable by root only.
	cfg, err := httpcore.Build(mc)
	if err != nil {
		return w.fatal("%v", err)
	}
	// The sockets are ours now; drop root before touching anything else.
	listeners := make([]net.Listener, len(fds))
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), cm.Listeners[i].Addr)
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return w.fatal("listener %s: %v", cm.Listeners[i].Addr, err)
		}
		listeners[i] = ln
	}
	if os.Geteuid() == 0 && mc.User != "" {
		uid, gid, err := sysutil.IDs(mc.User, mc.Group)
		if err != nil {
			return w.fatal("%v", err)
		}
		if err := sysutil.DropPrivileges(uid, gid); err != nil {
			return w.fatal("%v", err)
		}
	}

	w.log, err = errlog.Open(mc.ErrorLog, mc.ErrorLogLevel)
	if err != nil {
		return w.fatal("open error log: %v", err)
	}
	cfg.SetLog(w.log)
	cfg.SetSessionTicketKeys(cm.TicketKeys)
	w.initACME(cfg, cm)
	w.cfg = cfg
	w.exiting = make(chan struct{})
	w.eng = httpcore.NewEngine(cfg, httpcore.EngineOptions{
		WorkerConnections: mc.WorkerConnections,
		MultiAccept:       mc.MultiAccept,
		ConnectionSeqBase: uint64(cm.Slot) << 48,
	})
	if err := cfg.InitWorker(&httpcore.Worker{
		ID: cm.Slot, Count: mc.WorkerProcesses, Pid: os.Getpid(), Generation: cm.Generation,
		Exiting: w.exiting, Cluster: w, Counters: w.eng.Counters,
	}); err != nil {
		return w.fatal("%v", err)
	}
	for i, ln := range listeners {
		go w.eng.Serve(ln, cm.Listeners[i].Addr)
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	// HUP, USR2 and WINCH are the master's; a worker that gets them (kill to the
	// process group) carries on.
	signal.Ignore(syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGPIPE)

	msgs := make(chan ipc.Message, 16)
	masterGone := make(chan struct{})
	go w.readControl(msgs, masterGone)

	if err := w.ctl.Send(ipc.Ready{Pid: os.Getpid()}); err != nil {
		return 1
	}
	w.log.Debugf("worker %d of generation %d ready", cm.Slot, cm.Generation)
	debug.FreeOSMemory()

	for {
		select {
		case m := <-msgs:
			switch m := m.(type) {
			case ipc.Quit:
				return w.drain(mc.WorkerShutdownTimeout)
			case ipc.Terminate:
				return w.terminate()
			case ipc.Reopen:
				w.reopen()
			case ipc.TicketKeys:
				cfg.SetSessionTicketKeys(m.Keys)
			case ipc.ACMECertificate, ipc.ACMEChallenge:
				w.acme(cfg, m)
			case ipc.StatusRequest:
				w.ctl.Send(ipc.Status{ID: m.ID, Counters: w.eng.Counters()})
			}
		case <-masterGone:
			// Nothing in flight is lost with the master: the worker stops accepting
			// (its copies of the listening sockets close, and with the master's gone
			// the port refuses new clients) and finishes its requests, within
			// worker_shutdown_timeout, then exits. No orphan serves on.
			w.log.Alertf("the master process is gone: finishing the requests in flight, then exiting")
			timeout := mc.WorkerShutdownTimeout
			if timeout <= 0 {
				timeout = orphanShutdownTimeout
			}
			return w.drain(timeout)
		case s := <-sigs:
			switch s {
			case syscall.SIGQUIT:
				return w.drain(mc.WorkerShutdownTimeout)
			case syscall.SIGUSR1:
				w.reopen()
			default:
				return w.terminate()
			}
		}
	}
}

// orphanShutdownTimeout bounds the drain of a worker whose master died when
// worker_shutdown_timeout is not set: requests in flight finish (a large download, a
// long poll), but a connection that never ends (a WebSocket) does not keep an orphan
// worker alive.
const orphanShutdownTimeout = time.Minute

// readControl reads the control pipe. Status replies go straight to their waiters;
// everything else to the main loop. EOF means the master is gone: gone is closed, and
// the main loop drains the worker.
func (w *worker) readControl(msgs chan<- ipc.Message, gone chan<- struct{}) {
	for {
		m, fds, err := w.ctl.Recv()
		for _, fd := range fds {
			unix.Close(fd)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				w.log.Alertf("control pipe: %v", err)
			}
			close(gone)
			return
		}
		if r, ok := m.(ipc.StatusReply); ok {
			w.mu.Lock()
			ch := w.pending[r.ID]
			delete(w.pending, r.ID)
			w.mu.Unlock()
			if ch != nil {
				ch <- r
			}
			continue
		}
		msgs <- m
	}
}

// SumCounters asks the master for the status counters of all workers.
func (w *worker) SumCounters() (map[string]int64, int, error) {
	id := w.seq.Add(1)
	ch := make(chan ipc.StatusReply, 1)
	w.mu.Lock()
	w.pending[id] = ch
	w.mu.Unlock()
	if err := w.ctl.Send(ipc.StatusQuery{ID: id}); err != nil {
		return nil, 0, err
	}
	select {
	case r := <-ch:
		return r.Counters, r.Workers, nil
	case <-time.After(2 * time.Second):
		w.mu.Lock()
		delete(w.pending, id)
		w.mu.Unlock()
		return nil, 0, fmt.Errorf("master did not answer the status query")
	}
}

func (w *worker) reopen() {
	if err := w.log.Reopen(); err != nil {
		w.log.Alertf("reopen error log: %v", err)
	}
	w.cfg.Reopen()
}

func (w *worker) drain(timeout time.Duration) int {
	w.log.Infof("gracefully shutting down")
	proctitle.Set("spindle: worker process is shutting down")
	close(w.exiting)
	w.eng.Shutdown(timeout)
	w.cfg.ExitWorker()
	w.log.Infof("exiting")
	return 0
}

func (w *worker) terminate() int {
	close(w.exiting)
	w.eng.Close()
	w.cfg.ExitWorker()
	return 0
}
