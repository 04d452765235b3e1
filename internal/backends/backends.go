// Package backends starts real redis-server and memcached processes for tests, each
// on a free loopback port, and stops them when the test ends. Tests can stop and
// restart a backend on the same port (a backend dying mid-test) and read the server's
// own view of its clients (INFO clients, stats curr_connections), so that pool bounds
// are checked against what the backend sees rather than what spindle believes.
package backends

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a backend server process started by a test.
type Process struct {
	t    testing.TB
	Name string // "redis" or "memcached"
	Host string
	Port int
	argv []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *lockedBuffer

	// ctl is a connection kept open for INFO and stats: a connection per query
	// would linger in the server's count while it closes.
	ctlMu sync.Mutex
	ctl   net.Conn
	ctlBr *bufio.Reader
}

// control sends a request on the control connection (dialed on first use, and again
// after an error) and reads the reply with read.
func (p *Process) control(req string, read func(*bufio.Reader) (string, error)) (string, error) {
	p.ctlMu.Lock()
	defer p.ctlMu.Unlock()
	for attempt := 0; attempt < 2; attempt++ {
		if p.ctl == nil {
			c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
			if err != nil {
				return "", err
			}
			p.ctl, p.ctlBr = c, bufio.NewReader(c)
		}
		p.ctl.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := io.WriteString(p.ctl, req)
		var out string
		if err == nil {
			out, err = read(p.ctlBr)
		}
		if err == nil {
			return out, nil
		}
		p.ctl.Close()
		p.ctl = nil
		if attempt == 1 {
			return "", err
		}
	}
	return "", nil
}

// Addr is host:port.
func (p *Process) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

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

func need(t testing.TB, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		// CI installs every backend (scripts/test.sh): a missing one there is a broken
		// machine, not a test to skip, or the backend tests would pass by not running.
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed and CI=true (scripts/test.sh installs it): %v", bin, err)
		}
		t.Skipf("%s is not installed (scripts/test.sh installs it): %v", bin, err)
	}
	return p
}

// StartRedis starts redis-server on a free port with persistence off; extra
// arguments are added to its command line (e.g. "--cluster-enabled", "yes").
func StartRedis(t testing.TB, extra ...string) *Process {
	t.Helper()
	bin := need(t, "redis-server")
	dir := t.TempDir()
	port := FreePort(t)
	argv := append([]string{bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--daemonize", "no", "--protected-mode", "no",
		"--loglevel", "warning", "--maxclients", "10000"}, extra...)
	p := &Process{t: t, Name: "redis", Host: "127.0.0.1", Port: port, argv: argv}
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// StartRedisArgv starts redis-server with a command line of the caller's (sentinels:
// "--sentinel"); port is the port it will listen on.
func StartRedisArgv(t testing.TB, port int, args ...string) *Process {
	t.Helper()
	bin := need(t, "redis-server")
	p := &Process{t: t, Name: "redis", Host: "127.0.0.1", Port: port, argv: append([]string{bin}, args...)}
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// StartMemcached starts memcached on a free port (TCP only).
func StartMemcached(t testing.TB, extra ...string) *Process {
	t.Helper()
	bin := need(t, "memcached")
	port := FreePort(t)
	argv := []string{bin, "-p", strconv.Itoa(port), "-l", "127.0.0.1", "-U", "0", "-m", "64", "-c", "4096", "-t", "2"}
	if os.Geteuid() == 0 {
		// memcached refuses to run as root without being told whom to run as.
		name := "root"
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		argv = append(argv, "-u", name)
	}
	argv = append(argv, extra...)
	p := &Process{t: t, Name: "memcached", Host: "127.0.0.1", Port: port, argv: argv}
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// Start starts the process (again, after Stop) and waits until it accepts
// connections.
func (p *Process) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		out := &lockedBuffer{}
		cmd := exec.Command(p.argv[0], p.argv[1:]...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			p.t.Fatalf("start %s: %v", p.Name, err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if c, err := net.DialTimeout("tcp", p.Addr(), 200*time.Millisecond); err == nil {
				c.Close()
				p.cmd, p.done, p.out = cmd, done, out
				p.settle()
				return
			}
			select {
			case <-done:
				lastErr = fmt.Errorf("%s exited during start-up:\n%s", p.Name, out.String())
			case <-time.After(20 * time.Millisecond):
				if time.Now().Before(deadline) {
					continue
				}
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
				lastErr = fmt.Errorf("%s did not accept connections within 10s:\n%s", p.Name, out.String())
			}
			break
		}
		// The port may have been taken between choosing it and binding it (a
		// restart); the caller's port is fixed, so retry a little later.
		time.Sleep(200 * time.Millisecond)
	}
	p.t.Fatal(lastErr)
}

// settle waits until the server no longer counts the connection that probed it, so
// that the connection counts tests read start from zero.
func (p *Process) settle() {
	count := p.RedisClients
	if p.Name == "memcached" {
		count = p.MemcachedConnections
	} else if strings.Contains(strings.Join(p.argv, " "), "--sentinel") {
		return
	}
	for i := 0; i < 200; i++ {
		if n, err := count(); err == nil && n <= 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the process (SIGKILL: a backend that dies, not one that shuts down
// politely) and waits for it to exit.
func (p *Process) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	p.cmd = nil
	p.ctlMu.Lock()
	if p.ctl != nil {
		p.ctl.Close()
		p.ctl = nil
	}
	p.ctlMu.Unlock()
}

// Pause stops the process with SIGSTOP: it keeps its sockets but answers nothing
// (a hung backend) until Resume.
func (p *Process) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGSTOP)
	// The signal is delivered asynchronously: wait until the process is stopped.
	for i := 0; i < 500; i++ {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
		if err != nil {
			return
		}
		if s := string(b); strings.Contains(s[strings.LastIndexByte(s, ')')+1:], " T ") {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Resume continues a paused process.
func (p *Process) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	}
}

// Output is what the process printed.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out == nil {
		return ""
	}
	return p.out.String()
}

// Redis sends one command to a redis server on a new connection and returns the
// reply in a simple text form: bulk and status strings as they are, integers in
// decimal, arrays one element per line, errors as an error.
func Redis(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(c))
}

func readReply(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("%s", line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		var parts []string
		for i := 0; i < n; i++ {
			s, err := readReply(br)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// Cmd runs a redis command against the process.
func (p *Process) Cmd(args ...string) (string, error) { return Redis(p.Addr(), args...) }

// Info returns one field of redis INFO (e.g. "connected_clients").
func (p *Process) Info(field string) (string, error) {
	s, err := p.control("*1\r\n$4\r\nINFO\r\n", readReply)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return v, nil
		}
	}
	return "", fmt.Errorf("no %q in INFO", field)
}

// RedisClients is the number of clients connected to the redis server, not
// counting the test's own control connection.
func (p *Process) RedisClients() (int, error) {
	v, err := p.Info("connected_clients")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	return n - 1, err
}

// Memcached sends a text-protocol command line to a memcached server and returns the
// response up to and including the line that ends it (END, or a single-line reply).
func Memcached(addr, line string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, line+"\r\n"); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	var b strings.Builder
	multi := strings.HasPrefix(line, "stats") || strings.HasPrefix(line, "get")
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return b.String(), err
		}
		b.WriteString(l)
		if !multi || l == "END\r\n" || strings.HasPrefix(l, "ERROR") || strings.HasPrefix(l, "CLIENT_ERROR") || strings.HasPrefix(l, "SERVER_ERROR") {
			return b.String(), nil
		}
	}
}

// Stats returns memcached's general statistics.
func (p *Process) Stats() (map[string]string, error) {
	s, err := p.control("stats\r\n", func(br *bufio.Reader) (string, error) {
		var b strings.Builder
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return "", err
			}
			b.WriteString(l)
			if l == "END\r\n" {
				return b.String(), nil
			}
		}
	})
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(s, "\r\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "STAT" {
			m[f[1]] = f[2]
		}
	}
	return m, nil
}

// MemcachedConnections is memcached's curr_connections without the test's own
// control connection.
func (p *Process) MemcachedConnections() (int, error) {
	m, err := p.Stats()
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(m["curr_connections"])
	return n - 1, err
}

type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b) < 1<<20 {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
