// Package e2e drives the spindle binary in tests: it builds it once, starts masters on
// temporary prefixes with free ports, sends signals and commands, inspects the process
// tree and generates HTTP load. Every process a test starts is in its own process
// group, killed when the test ends.
package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the spindle command once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "spindle-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "spindle")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Instance is a spindle master started by a test.
type Instance struct {
	t      testing.TB
	Bin    string
	Prefix string
	Port   int
	Env    []string
	cmd    *exec.Cmd
	out    *syncBuffer
	pgid   int
	done   chan struct{}
}

// Options change how Start runs spindle.
type Options struct {
	Env   []string          // extra environment, e.g. NOTIFY_SOCKET=...
	Files map[string]string // files to write under the prefix
	Bin   string            // binary to run instead of the test build
	Port  int               // port for {{PORT}} (default: a free one)
	// PrefixDir is the prefix to use instead of a new temporary directory.
	PrefixDir string
}

// Start writes config (with {{PORT}} and {{PREFIX}} replaced) as conf/spindle.hcl in a
// temporary prefix, starts the master and waits until it serves on the port.
func Start(t testing.TB, config string, opts *Options) *Instance {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	i := &Instance{t: t, Bin: opts.Bin, Prefix: opts.PrefixDir, Port: opts.Port, Env: opts.Env, out: &syncBuffer{}, done: make(chan struct{})}
	if i.Prefix == "" {
		i.Prefix = t.TempDir()
	}
	if i.Bin == "" {
		i.Bin = Binary(t)
	}
	if i.Port == 0 {
		i.Port = FreePort(t)
	}
	for name, content := range opts.Files {
		i.WriteFile(name, content)
	}
	i.WriteConfig(config)
	i.cmd = exec.Command(i.Bin, "-p", i.Prefix)
	i.cmd.Env = append(os.Environ(), i.Env...)
	i.cmd.Stdout, i.cmd.Stderr = i.out, i.out
	// Pdeathsig: a test process that dies without its cleanup takes the master along
	// (its workers follow when their control pipes close).
	i.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := i.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	i.pgid = i.cmd.Process.Pid
	go func() { i.cmd.Wait(); close(i.done) }()
	t.Cleanup(i.Kill)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if pid, err := i.readPid(); err == nil && pid > 0 {
			if c, err := net.DialTimeout("tcp", i.Addr(), time.Second); err == nil {
				c.Close()
				break
			}
		}
		select {
		case <-i.done:
			t.Fatalf("spindle exited during start-up:\n%s", i.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("spindle did not start within 20s:\n%s", i.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return i
}

// StartFailing runs spindle on a config expected to fail start-up and returns its
// output and exit code.
func StartFailing(t testing.TB, config string) (string, int) {
	t.Helper()
	i := &Instance{t: t, Bin: Binary(t), Prefix: t.TempDir(), Port: FreePort(t)}
	i.WriteConfig(config)
	cmd := exec.Command(i.Bin, "-p", i.Prefix)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf("spindle did not exit on a bad config")
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	return out.String(), cmd.ProcessState.ExitCode()
}

// Addr is 127.0.0.1:Port.
func (i *Instance) Addr() string { return "127.0.0.1:" + strconv.Itoa(i.Port) }

// Output is what the master printed to stdout and stderr.
func (i *Instance) Output() string { return i.out.String() }

// WriteFile writes a file under the prefix.
func (i *Instance) WriteFile(name, content string) {
	p := filepath.Join(i.Prefix, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		i.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		i.t.Fatal(err)
	}
}

// WriteConfig replaces conf/spindle.hcl.
func (i *Instance) WriteConfig(config string) {
	config = strings.ReplaceAll(config, "{{PORT}}", strconv.Itoa(i.Port))
	config = strings.ReplaceAll(config, "{{PREFIX}}", i.Prefix)
	i.WriteFile("conf/spindle.hcl", config)
}

// Spindle runs the test build with -p prefix and args (-s, -t, ...); it returns the
// combined output and the exit code.
func (i *Instance) Spindle(args ...string) (string, int) {
	cmd := exec.Command(Binary(i.t), append([]string{"-p", i.Prefix}, args...)...)
	cmd.Env = append(os.Environ(), i.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		i.t.Fatal(err)
	}
	return string(out), 0
}

func (i *Instance) readPid() (int, error) {
	b, err := os.ReadFile(filepath.Join(i.Prefix, "logs/spindle.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// MasterPid reads the pid file.
func (i *Instance) MasterPid() int {
	pid, err := i.readPid()
	if err != nil {
		i.t.Fatalf("pid file: %v", err)
	}
	return pid
}

// Signal sends sig to the current master.
func (i *Instance) Signal(sig syscall.Signal) {
	if err := syscall.Kill(i.MasterPid(), sig); err != nil {
		i.t.Fatal(err)
	}
}

// ErrorLog returns logs/error.log.
func (i *Instance) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(i.Prefix, "logs/error.log"))
	return string(b)
}

// Kill ends every process of the instance (master, workers, upgraded masters).
func (i *Instance) Kill() {
	syscall.Kill(-i.pgid, syscall.SIGKILL)
	select {
	case <-i.done:
	case <-time.After(5 * time.Second):
	}
	// Wait for the group to be gone (upgraded masters are not our children).
	for j := 0; j < 100 && len(GroupPids(i.pgid)) > 0; j++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// Wait waits for the first master (the test's child) to exit and returns its exit code.
func (i *Instance) Wait(timeout time.Duration) (int, bool) {
	select {
	case <-i.done:
		return i.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// Pgid is the process group of the instance.
func (i *Instance) Pgid() int { return i.pgid }

// Get requests path over a new connection and returns status and body.
func (i *Instance) Get(path string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + i.Addr() + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Proc is a process as /proc shows it.
type Proc struct {
	Pid, PPid, Pgid int
	State           string
	Cmdline         string
}

// Procs lists live (non-zombie) processes.
func Procs() []Proc {
	ents, _ := os.ReadDir("/proc")
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := ReadProc(pid)
		if ok && p.State != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// ReadProc reads one process; ok is false if it does not exist.
func ReadProc(pid int) (Proc, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Proc{}, false
	}
	s := string(stat)
	r := strings.LastIndexByte(s, ')')
	if r < 0 {
		return Proc{}, false
	}
	f := strings.Fields(s[r+2:])
	if len(f) < 3 {
		return Proc{}, false
	}
	p := Proc{Pid: pid, State: f[0]}
	p.PPid, _ = strconv.Atoi(f[1])
	p.Pgid, _ = strconv.Atoi(f[2])
	cl, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	p.Cmdline = strings.TrimRight(strings.ReplaceAll(string(cl), "\x00", " "), " ")
	return p, true
}

// Alive reports whether pid is a live (non-zombie) process.
func Alive(pid int) bool {
	p, ok := ReadProc(pid)
	return ok && p.State != "Z"
}

// GroupPids lists the live processes of a process group.
func GroupPids(pgid int) []int {
	var out []int
	for _, p := range Procs() {
		if p.Pgid == pgid {
			out = append(out, p.Pid)
		}
	}
	return out
}

// Workers lists the live worker processes of master pid.
func Workers(master int) []int {
	var out []int
	for _, p := range Procs() {
		if p.PPid == master && strings.HasPrefix(p.Cmdline, "spindle: worker process") {
			out = append(out, p.Pid)
		}
	}
	return out
}

// WaitFor polls cond every 20ms until it holds or timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// NumCPU is the number of CPUs the tests may use.
func NumCPU() int { return runtime.NumCPU() }

// Notify is a NOTIFY_SOCKET of the test's own: it collects what spindle tells systemd.
type Notify struct {
	Path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
}

// ListenNotify creates a notify socket; pass Env() to Start.
func ListenNotify(t testing.TB) *Notify {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &Notify{Path: path, conn: c}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := c.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close() })
	return n
}

// Env is the environment variable pointing spindle at the socket.
func (n *Notify) Env() string { return "NOTIFY_SOCKET=" + n.Path }

// Messages returns the datagrams received so far.
func (n *Notify) Messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// WaitFor waits until a datagram after the first `after` ones satisfies match, and
// returns its index.
func (n *Notify) WaitFor(timeout time.Duration, after int, match func(string) bool) (int, bool) {
	idx := -1
	ok := WaitFor(timeout, func() bool {
		msgs := n.Messages()
		for i := after; i < len(msgs); i++ {
			if match(msgs[i]) {
				idx = i
				return true
			}
		}
		return false
	})
	return idx, ok
}

// CopyBinary copies the test build to dir, so a test can replace it (binary upgrade).
func CopyBinary(t testing.TB, dir string) string {
	t.Helper()
	src, err := os.ReadFile(Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "spindle")
	// A new file renamed over the old one, as package managers do: the running binary
	// keeps its inode.
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}
