// Package master is the master process: it reads and validates the config, owns the
// listening sockets (one SO_REUSEPORT socket per worker slot and address), runs
// generations of workers, respawns crashed ones, reloads on HUP, upgrades its own binary
// on USR2 with tableflip, and speaks systemd's notify protocol.
package master

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/hashicorp/hcl/v2"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/errlog"
	"github.com/spindle-server/spindle/internal/sysutil"
	"github.com/spindle-server/spindle/ipc"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/signals"
	"github.com/spindle-server/spindle/systemd"
	"golang.org/x/sys/unix"
)

// EnvOutcome tells a master started by a binary upgrade where to record a failed
// start, for the old master to report: the new master may fail before it has read the
// pid file's path from its config.
const EnvOutcome = "SPINDLE_OUTCOME"

// Options are the master's command-line settings.
type Options struct {
	Prefix   string
	ConfPath string
}

// Master is the running master process.
type Master struct {
	opts    Options
	log     *errlog.Logger
	cfg     *conf.Config
	upg     *tableflip.Upgrader
	socks   *sockets
	pidFile string
	outcome string

	genSeq  int
	cur     *generation   // serving
	pending *generation   // starting (a reload)
	old     []*generation // draining
	procs   map[int]*proc

	events chan event

	reloadQueued  bool
	reloadStarted int64
	upgrading     bool
	upgradeQueued bool
	upgradeStart  int64
	stopping      bool // QUIT/TERM received or upgrade done
	stopDeadline  time.Time
	workersHalted bool // WINCH: no workers until the next reload

	statusSeq   uint64
	statusWaits map[uint64]*statusWait

	tickets *ticketKeys // TLS session ticket keys (tickets.go)
	acme    *acmeState  // automatic certificates (acme.go)
}

type generation struct {
	id      int
	cfg     *conf.Config
	bundle  []byte
	n       int
	slots   []*proc
	sockets []*socket
	started time.Time
	failed  string
	timer   *time.Timer
}

type proc struct {
	pid      int
	slot     int
	gen      *generation
	ctl      *ipc.Conn
	ready    bool
	quitting bool
	exited   bool
	started  time.Time
}

type event struct {
	p       *proc
	msg     ipc.Message
	exit    *os.ProcessState
	sig     os.Signal
	upg     *error      // a binary upgrade finished
	upgExit bool        // tableflip's Exit channel closed: the new master is ready
	gen     *generation // start timeout
	respawn *respawn
	status  *statusWait
	// ticketTick: time to look at the TLS session ticket keys' age
	ticketTick bool
	acme       func() // automatic certificates: run on the loop (acme.go)
}

type respawn struct {
	gen  *generation
	slot int
}

// Run runs the master; it returns the process exit code.
func Run(opts Options) int {
	m := &Master{opts: opts, procs: map[int]*proc{}, events: make(chan event, 256), statusWaits: map[uint64]*statusWait{}}
	return m.run()
}

func (m *Master) run() int {
	bundle, cfg, err := Load(m.opts.Prefix, m.opts.ConfPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "spindle: %v\n", err)
		m.failStart(err)
		return 1
	}
	m.cfg = cfg
	m.pidFile = cfg.Pid
	m.outcome = signals.OutcomePath(cfg.Pid)
	if m.log, err = errlog.Open(cfg.ErrorLog, cfg.ErrorLogLevel); err != nil {
		fmt.Fprintf(os.Stderr, "spindle: open error log %s: %v\n", cfg.ErrorLog, err)
		m.failStart(err)
		return 1
	}
	if err := os.MkdirAll(dirOf(m.pidFile), 0o755); err != nil {
		m.log.Errorf("create pid directory: %v", err)
	}
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: cfg.UpgradeTimeout, PIDFile: m.pidFile})
	if err != nil {
		m.log.Errorf("%v", err)
		fmt.Fprintf(os.Stderr, "spindle: %v\n", err)
		return 1
	}
	m.upg = upg
	m.socks = newSockets(upg)
	m.loadTicketKeys()

	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH,
		syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGPIPE)
	go func() {
		for s := range sigs {
			m.events <- event{sig: s}
		}
	}()

	g, err := m.startGeneration(bundle, cfg)
	if err == nil {
		err = m.waitStarted(g)
	}
	if err != nil {
		m.log.Errorf("%v", err)
		fmt.Fprintf(os.Stderr, "spindle: %v\n", err)
		m.failStart(err)
		m.killGeneration(g)
		upg.Stop()
		return 1
	}
	m.cur = g
	if err := upg.Ready(); err != nil {
		m.log.Errorf("tableflip ready: %v", err)
	}
	msg := fmt.Sprintf("spindle %d worker processes ready", g.n)
	if upg.HasParent() {
		systemd.MainPID(os.Getpid(), msg)
		m.log.Noticef("binary upgrade: new master %d ready", os.Getpid())
	} else {
		systemd.Ready(msg)
		m.log.Noticef("started, %d worker processes", g.n)
	}
	go func() {
		<-upg.Exit()
		m.events <- event{upgExit: true}
	}()
	m.startTicketTimer()
	m.acmeStart(cfg)
	return m.loop()
}

// failStart records a failed start in the outcome file, where an old master waiting on
// this one (binary upgrade) finds the reason.
func (m *Master) failStart(err error) {
	path := os.Getenv(EnvOutcome)
	if path == "" && m.pidFile != "" {
		path = signals.OutcomePath(m.pidFile)
	}
	if path == "" {
		return
	}
	signals.AppendOutcome(path, signals.Outcome{
		Pid: os.Getpid(), Op: "start", Started: time.Now().UnixNano(), Finished: time.Now().UnixNano(), Message: err.Error(),
	})
}

// Load reads, parses and fully validates a config: the main context and the HTTP
// configuration with every module's directives, compiled.
func Load(prefix, path string) (*conf.Bundle, *conf.Config, error) {
	b, err := conf.ReadBundle(prefix, path)
	if err != nil {
		return nil, nil, err
	}
	c, err := conf.Parse(b)
	if c == nil {
		return nil, nil, err
	}
	// Report the errors of the http block too, not only the main context's.
	var es conf.Errors
	es.Add(hcl.Range{}, err)
	if _, herr := httpcore.Build(c); herr != nil {
		es.Add(hcl.Range{}, herr)
	}
	if len(es) > 0 {
		return nil, nil, es
	}
	return b, c, nil
}

func (m *Master) loop() int {
	for {
		ev := <-m.events
		switch {
		case ev.sig != nil:
			if code, done := m.onSignal(ev.sig); done {
				return code
			}
		case ev.exit != nil:
			m.onExit(ev.p, ev.exit)
		case ev.msg != nil:
			m.onMessage(ev.p, ev.msg)
		case ev.gen != nil:
			if ev.gen == m.pending {
				m.failPending(fmt.Sprintf("new worker processes not ready within %s", ev.gen.cfg.WorkerStartTimeout))
			}
		case ev.respawn != nil:
			m.doRespawn(ev.respawn)
		case ev.status != nil:
			m.finishStatus(ev.status)
		case ev.ticketTick:
			m.onTicketTick()
		case ev.acme != nil:
			ev.acme()
		case ev.upg != nil:
			m.onUpgrade(*ev.upg)
		case ev.upgExit:
			// The new master is ready. The Upgrade call reports it too; whichever
			// comes first does the work.
			if !m.stopping {
				m.onUpgrade(nil)
			}
		}
		if m.stopping && m.liveWorkers() == 0 {
			return m.exit()
		}
		if m.stopping && !m.stopDeadline.IsZero() && time.Now().After(m.stopDeadline) {
			m.killAll()
		}
	}
}

func (m *Master) onSignal(s os.Signal) (int, bool) {
	switch s {
	case signals.Reload:
		m.log.Noticef("signal %d (SIGHUP) received, reconfiguring", signals.Reload)
		if m.stopping {
			return 0, false
		}
		if m.pending != nil || m.upgrading {
			m.reloadQueued = true
			return 0, false
		}
		m.reload()
	case signals.Reopen:
		m.log.Noticef("signal %d (SIGUSR1) received, reopening logs", signals.Reopen)
		m.reopen()
	case signals.Upgrade:
		m.log.Noticef("signal %d (SIGUSR2) received, upgrading executable", signals.Upgrade)
		if m.stopping {
			return 0, false
		}
		if m.pending != nil {
			m.upgradeQueued = true
			return 0, false
		}
		m.upgrade()
	case signals.StopWork:
		m.log.Noticef("signal %d (SIGWINCH) received, gracefully shutting down worker processes", signals.StopWork)
		m.workersHalted = true
		if m.cur != nil {
			m.quitGeneration(m.cur)
		}
	case signals.Quit:
		m.log.Noticef("signal %d (SIGQUIT) received, shutting down gracefully", signals.Quit)
		m.beginStop(false)
	case signals.Terminate, signals.Interrupt:
		m.log.Noticef("signal %d (%v) received, exiting", s, s)
		m.beginStop(true)
	}
	if m.stopping && m.liveWorkers() == 0 {
		return m.exit(), true
	}
	return 0, false
}

func (m *Master) beginStop(fast bool) {
	if !m.stopping {
		systemd.Stopping()
		if !fast {
			// A real shutdown: the listening sockets close now, as nginx's master
			// closes them on QUIT, so that new clients are refused at once instead
			// of waiting in a queue nobody accepts from; the workers close their
			// copies when they start draining. (A reload's drain keeps them: the
			// next generation serves on the same sockets. An upgraded master stops
			// without coming here, and the new master has its own copies.)
			for _, sk := range m.socks.m {
				m.socks.close(sk)
			}
		}
	}
	m.stopping = true
	for _, p := range m.procs {
		if fast {
			m.terminate(p)
		} else {
			m.quit(p)
		}
	}
	if fast {
		// Stragglers get SIGKILL after a second, as nginx's master does.
		m.stopDeadline = time.Now().Add(time.Second)
		time.AfterFunc(1100*time.Millisecond, func() { m.events <- event{sig: syscall.Signal(0)} })
	}
}

func (m *Master) exit() int {
	m.upg.Stop()
	// After an upgrade the pid file names the new master: leave it.
	if pid, err := signals.ReadPid(m.pidFile); err == nil && pid == os.Getpid() {
		os.Remove(m.pidFile)
	}
	for _, s := range m.socks.m {
		unix.Close(s.fd)
	}
	m.log.Noticef("exit")
	return 0
}

func (m *Master) liveWorkers() int { return len(m.procs) }

// startGeneration opens what sockets the config needs and starts its workers.
func (m *Master) startGeneration(bundle *conf.Bundle, cfg *conf.Config) (*generation, error) {
	hcfg, err := httpcore.Build(cfg)
	if err != nil {
		return nil, err
	}
	m.acmeNote(cfg, hcfg)
	data, err := bundle.Encode()
	if err != nil {
		return nil, err
	}
	m.genSeq++
	g := &generation{id: m.genSeq, cfg: cfg, bundle: data, n: cfg.WorkerProcesses, started: time.Now()}
	g.slots = make([]*proc, g.n)
	for _, l := range hcfg.Listens {
		for slot := 0; slot < g.n; slot++ {
			s, err := m.socks.get(l.Addr, slot, l.Backlog)
			if err != nil {
				m.retireSockets()
				return nil, err
			}
			g.sockets = append(g.sockets, s)
		}
	}
	if err := m.prepareFiles(cfg, hcfg); err != nil {
		return nil, err
	}
	for slot := 0; slot < g.n; slot++ {
		p, err := m.spawn(g, slot)
		if err != nil {
			m.killGeneration(g)
			m.retireSockets()
			return nil, err
		}
		g.slots[slot] = p
	}
	return g, nil
}

// prepareFiles creates the log files for workers that drop root.
func (m *Master) prepareFiles(cfg *conf.Config, hcfg *httpcore.Config) error {
	if os.Geteuid() != 0 || cfg.User == "" {
		return nil
	}
	uid, gid, err := sysutil.IDs(cfg.User, cfg.Group)
	if err != nil {
		return err
	}
	files := hcfg.Files()
	if cfg.ErrorLog != "stderr" {
		files = append(files, cfg.ErrorLog)
	}
	for _, f := range files {
		os.MkdirAll(dirOf(f), 0o755)
		if err := sysutil.PrepareFile(f, uid, gid); err != nil {
			return fmt.Errorf("open %s: %w", f, err)
		}
	}
	return nil
}

// waitStarted waits for a generation's workers during start-up, before the event loop
// runs.
func (m *Master) waitStarted(g *generation) error {
	timeout := time.After(g.cfg.WorkerStartTimeout)
	for {
		if g.failed != "" {
			return errors.New(g.failed)
		}
		if m.readyCount(g) == g.n {
			return nil
		}
		select {
		case ev := <-m.events:
			switch {
			case ev.msg != nil:
				m.onMessage(ev.p, ev.msg)
			case ev.exit != nil:
				m.onExit(ev.p, ev.exit)
			case ev.sig == signals.Terminate || ev.sig == signals.Interrupt || ev.sig == signals.Quit:
				return fmt.Errorf("%v received during start-up", ev.sig)
			}
		case <-timeout:
			return fmt.Errorf("worker processes not ready within %s", g.cfg.WorkerStartTimeout)
		}
	}
}

func (m *Master) readyCount(g *generation) int {
	n := 0
	for _, p := range g.slots {
		if p != nil && p.ready && !p.exited {
			n++
		}
	}
	return n
}

// spawn starts the worker of one slot: the same binary as the master (/proc/self/exe,
// even if the file on disk was replaced), named "spindle: worker process", with only
// the control pipe inherited; config and sockets travel over the pipe.
func (m *Master) spawn(g *generation, slot int) (*proc, error) {
	ctl, childFD, err := ipc.Pair()
	if err != nil {
		return nil, err
	}
	env := []string{ipc.EnvRole + "=" + ipc.RoleWorker, "GOMAXPROCS=1"}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "NOTIFY_SOCKET", k == "GOMAXPROCS", k == ipc.EnvRole, strings.HasPrefix(k, "TABLEFLIP_"), strings.HasPrefix(k, "LISTEN_"):
			continue
		}
		env = append(env, kv)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		ctl.Close()
		unix.Close(childFD)
		return nil, err
	}
	defer devnull.Close()
	var nullFD uintptr
	rc, _ := devnull.SyscallConn()
	rc.Control(func(fd uintptr) { nullFD = fd })
	pid, err := syscall.ForkExec("/proc/self/exe", []string{"spindle: worker process"}, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{nullFD, 1, 2, uintptr(childFD)},
	})
	unix.Close(childFD)
	if err != nil {
		ctl.Close()
		return nil, fmt.Errorf("fork worker: %w", err)
	}
	p := &proc{pid: pid, slot: slot, gen: g, ctl: ctl, started: time.Now()}
	m.procs[pid] = p
	var fds []int
	var ls []ipc.Listener
	for _, s := range g.sockets {
		if s.slot == slot {
			fds = append(fds, s.fd)
			ls = append(ls, ipc.Listener{Addr: s.addr})
		}
	}
	acmeCerts, acmeChallenges := m.acmeConfig()
	if err := ctl.Send(ipc.Config{Generation: g.id, Slot: slot, Bundle: g.bundle, Listeners: ls, TicketKeys: m.tickets.Keys,
		ACMECertificates: acmeCerts, ACMEChallenges: acmeChallenges}, fds...); err != nil {
		m.log.Alertf("sending config to worker %d: %v", pid, err)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	go func() {
		for {
			msg, fds, err := ctl.Recv()
			for _, fd := range fds {
				unix.Close(fd)
			}
			if err != nil {
				return
			}
			m.events <- event{p: p, msg: msg}
		}
	}()
	go func() {
		proc, _ := os.FindProcess(pid)
		st, err := proc.Wait()
		if err != nil {
			st = nil
		}
		if st == nil {
			st = &os.ProcessState{}
		}
		m.events <- event{p: p, exit: st}
	}()
	m.log.Noticef("start worker process %d (slot %d, generation %d)", pid, slot, g.id)
	return p, nil
}

func (m *Master) onMessage(p *proc, msg ipc.Message) {
	switch msg := msg.(type) {
	case ipc.Ready:
		p.ready = true
		if p.gen == m.pending && m.readyCount(p.gen) == p.gen.n {
			m.finishReload()
		}
	case ipc.Fatal:
		m.log.Logf(errlog.Emerg, "worker process %d: %s", p.pid, msg.Text)
		if !p.ready {
			p.gen.failed = msg.Text
			if p.gen == m.pending {
				m.failPending(msg.Text)
			}
		}
	case ipc.StatusQuery:
		m.startStatus(p, msg.ID)
	case ipc.Status:
		m.collectStatus(p, msg)
	case ipc.ACMEChallengeAck:
		m.acmeAck(p, msg.ID)
	default:
		m.log.Warnf("unexpected %v from worker %d", msg.Type(), p.pid)
	}
}

func (m *Master) onExit(p *proc, st *os.ProcessState) {
	if p.exited {
		return
	}
	p.exited = true
	p.ctl.Close()
	delete(m.procs, p.pid)
	m.acmeGone(p)
	how := describeExit(st)
	g := p.gen
	if p.quitting || m.stopping || g != m.cur && g != m.pending {
		m.log.Noticef("worker process %d %s", p.pid, how)
	} else {
		m.log.Alertf("worker process %d %s", p.pid, how)
	}
	if g.slots[p.slot] == p {
		g.slots[p.slot] = nil
	}
	switch {
	case g == m.pending && !p.ready:
		m.failPending(fmt.Sprintf("new worker process %d %s before it was ready", p.pid, how))
	case g == m.cur && !p.quitting && !m.stopping && !m.workersHalted:
		m.scheduleRespawn(g, p)
	}
	m.retireGenerations()
}

func describeExit(st *os.ProcessState) string {
	ws, ok := st.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		return "exited"
	case ws.Signaled():
		s := fmt.Sprintf("exited on signal %d (%v)", ws.Signal(), ws.Signal())
		if ws.CoreDump() {
			s += " (core dumped)"
		}
		return s
	default:
		return fmt.Sprintf("exited with code %d", ws.ExitStatus())
	}
}

// scheduleRespawn restarts a crashed worker's slot, with a backoff that grows while it
// keeps crashing soon after starting.
func (m *Master) scheduleRespawn(g *generation, p *proc) {
	delay := time.Duration(0)
	if time.Since(p.started) < 2*time.Second {
		delay = crashBackoff(g, p.slot)
	} else {
		resetBackoff(g, p.slot)
	}
	if delay == 0 {
		m.doRespawn(&respawn{gen: g, slot: p.slot})
		return
	}
	m.log.Warnf("worker process of slot %d keeps crashing; respawning in %s", p.slot, delay)
	time.AfterFunc(delay, func() { m.events <- event{respawn: &respawn{gen: g, slot: p.slot}} })
}

func (m *Master) doRespawn(rs *respawn) {
	g := rs.gen
	if g != m.cur || m.stopping || m.workersHalted || g.slots[rs.slot] != nil {
		return
	}
	p, err := m.spawn(g, rs.slot)
	if err != nil {
		m.log.Alertf("respawn: %v", err)
		time.AfterFunc(time.Second, func() { m.events <- event{respawn: rs} })
		return
	}
	g.slots[rs.slot] = p
}

var backoffs = map[[2]int]time.Duration{}

func crashBackoff(g *generation, slot int) time.Duration {
	k := [2]int{g.id, slot}
	d := backoffs[k]
	switch {
	case d == 0:
		d = 100 * time.Millisecond
	case d < 10*time.Second:
		d *= 2
	}
	backoffs[k] = d
	return d
}

func resetBackoff(g *generation, slot int) { delete(backoffs, [2]int{g.id, slot}) }

func (m *Master) quit(p *proc) {
	if p.exited || p.quitting {
		return
	}
	p.quitting = true
	if err := p.ctl.Send(ipc.Quit{}); err != nil {
		syscall.Kill(p.pid, syscall.SIGQUIT)
	}
}

func (m *Master) terminate(p *proc) {
	if p.exited {
		return
	}
	p.quitting = true
	if err := p.ctl.Send(ipc.Terminate{}); err != nil {
		syscall.Kill(p.pid, syscall.SIGTERM)
	}
}

func (m *Master) killAll() {
	for _, p := range m.procs {
		m.log.Alertf("worker process %d did not exit in time, sending SIGKILL", p.pid)
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
	m.stopDeadline = time.Time{}
}

func (m *Master) quitGeneration(g *generation) {
	for _, p := range m.procs {
		if p.gen == g {
			m.quit(p)
		}
	}
}

func (m *Master) killGeneration(g *generation) {
	if g == nil {
		return
	}
	for _, p := range m.procs {
		if p.gen == g {
			p.quitting = true
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}

// retireGenerations forgets draining generations whose workers are all gone and closes
// the sockets no generation uses any more.
func (m *Master) retireGenerations() {
	keep := m.old[:0]
	for _, g := range m.old {
		alive := false
		for _, p := range m.procs {
			if p.gen == g {
				alive = true
				break
			}
		}
		if alive {
			keep = append(keep, g)
		}
	}
	m.old = keep
	m.retireSockets()
}

func (m *Master) retireSockets() {
	used := map[*socket]bool{}
	for _, g := range append([]*generation{m.cur, m.pending}, m.old...) {
		if g == nil {
			continue
		}
		for _, s := range g.sockets {
			used[s] = true
		}
	}
	for _, s := range m.socks.m {
		if !used[s] && !m.startingUp() {
			m.log.Noticef("closing listening socket %s of slot %d", s.addr, s.slot)
			m.socks.close(s)
		}
	}
}

func (m *Master) startingUp() bool { return m.cur == nil && m.pending == nil }

func (m *Master) reopen() {
	if err := m.log.Reopen(); err != nil {
		fmt.Fprintf(os.Stderr, "spindle: reopen error log: %v\n", err)
	}
	if m.cur != nil {
		if hcfg, err := httpcore.Build(m.cur.cfg); err == nil {
			if err := m.prepareFiles(m.cur.cfg, hcfg); err != nil {
				m.log.Alertf("reopen: %v", err)
			}
		}
	}
	for _, p := range m.procs {
		if !p.exited {
			if err := p.ctl.Send(ipc.Reopen{}); err != nil {
				syscall.Kill(p.pid, syscall.SIGUSR1)
			}
		}
	}
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "."
}
