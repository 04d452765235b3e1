package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// helloConf serves /hello with a body that names the config generation, so a test can
// tell which config answered.
func helloConf(workers int, body string) string {
	return fmt.Sprintf(`
worker_processes        = %d
worker_shutdown_timeout = "10s"
error_log               = { path = "logs/error.log", level = "info" }
events { worker_connections = 1024 }
http {
  server {
    listen = ["127.0.0.1:{{PORT}} backlog=4096"]
    location "= /hello" {
      return = { code = 200, body = "%s\n" }
    }
  }
}
`, workers, body)
}

func TestReloadsUnderLoad(t *testing.T) {
	for _, keepalive := range []bool{false, true} {
		name := "new-connection-per-request"
		if keepalive {
			name = "keepalive"
		}
		t.Run(name, func(t *testing.T) {
			inst := e2e.Start(t, helloConf(2, "gen0"), nil)
			load := e2e.StartLoad(inst.Addr(), "/hello", 16, keepalive)
			for i := 1; i <= 20; i++ {
				inst.WriteConfig(helloConf(2, fmt.Sprintf("gen%d", i)))
				out, code := inst.Spindle("-s", "reload")
				if code != 0 {
					t.Fatalf("reload %d: exit %d: %s", i, code, out)
				}
				if !strings.Contains(out, "ready") {
					t.Errorf("reload %d: output %q", i, out)
				}
				// The load goes on between reloads: each generation serves some of it.
				served := load.Answered()
				if !e2e.WaitFor(10*time.Second, func() bool { return load.Answered() >= served+50 }) {
					t.Fatalf("reload %d: the load stalled at %d answers", i, served)
				}
			}
			served := load.Answered()
			if !e2e.WaitFor(10*time.Second, func() bool { return load.Answered() >= served+200 }) {
				t.Fatalf("the load stalled after the last reload at %d answers", served)
			}
			res := load.Stop()
			t.Logf("20 reloads: %v", res)
			if res.Failed != 0 {
				t.Errorf("failed requests during reloads: %v", res)
			}
			if res.Requests < 1000 {
				t.Errorf("only %d requests served", res.Requests)
			}
			if _, body, err := inst.Get("/hello"); err != nil || body != "gen20\n" {
				t.Errorf("after reloads /hello = %q, %v", body, err)
			}
			// Old generations drain and go: only the last generation's workers remain.
			master := inst.MasterPid()
			if !e2e.WaitFor(15*time.Second, func() bool { return len(e2e.Workers(master)) == 2 }) {
				t.Errorf("workers after reloads: %v", e2e.Workers(master))
			}
		})
	}
}

func TestReloadWithBrokenConfigKeepsServing(t *testing.T) {
	inst := e2e.Start(t, helloConf(2, "good"), nil)
	workers := e2e.Workers(inst.MasterPid())
	inst.WriteConfig(strings.Replace(helloConf(2, "bad"), `location "= /hello" {`, `location "= /hello" {
      no_such_directive = 1`, 1))
	out, code := inst.Spindle("-s", "reload")
	if code == 0 {
		t.Fatalf("reload of a broken config exited 0: %s", out)
	}
	want := filepath.Join(inst.Prefix, "conf/spindle.hcl") + ":10,7: unknown directive \"no_such_directive\""
	if !strings.Contains(out, want) {
		t.Errorf("reload output %q does not contain %q", out, want)
	}
	if _, body, err := inst.Get("/hello"); err != nil || body != "good\n" {
		t.Errorf("after failed reload /hello = %q, %v", body, err)
	}
	if got := e2e.Workers(inst.MasterPid()); fmt.Sprint(got) != fmt.Sprint(workers) {
		t.Errorf("workers changed by a failed reload: %v → %v", workers, got)
	}
	if !strings.Contains(inst.ErrorLog(), "no_such_directive") {
		t.Errorf("error log does not report the failed reload:\n%s", inst.ErrorLog())
	}
	// A syntax error, which -s can not even parse, is reported by the master too.
	inst.WriteConfig("http {\n  server {\n")
	out, code = inst.Spindle("-s", "reload")
	if code == 0 || !strings.Contains(out, "spindle.hcl:") {
		t.Errorf("reload of unparsable config: exit %d, %q", code, out)
	}
	if _, body, _ := inst.Get("/hello"); body != "good\n" {
		t.Errorf("after failed reload /hello = %q", body)
	}
}

func TestKillWorkerUnderLoad(t *testing.T) {
	inst := e2e.Start(t, helloConf(2, "ok"), nil)
	master := inst.MasterPid()
	load := e2e.StartLoad(inst.Addr(), "/hello", 8, true)
	if !e2e.WaitFor(10*time.Second, func() bool { return load.Answered() >= 100 }) {
		t.Fatalf("no load before the kill: %d answers", load.Answered())
	}
	before := e2e.Workers(master)
	victim := before[0]
	syscall.Kill(victim, syscall.SIGKILL)
	if !e2e.WaitFor(5*time.Second, func() bool {
		ws := e2e.Workers(master)
		return len(ws) == 2 && ws[0] != victim && ws[1] != victim
	}) {
		t.Fatalf("worker %d not respawned: %v", victim, e2e.Workers(master))
	}
	served := load.Answered()
	e2e.WaitFor(10*time.Second, func() bool { return load.Answered()-served >= 100 })
	res := load.Stop()
	t.Logf("kill -9 of a worker: %v", res)
	if res.Requests-served < 100 {
		t.Errorf("service did not continue after the respawn: %v", res)
	}
	// Requests in flight on the killed worker's connections may fail; no others.
	if res.Failed > 8 {
		t.Errorf("%d failed requests, more than the killed worker's connections", res.Failed)
	}
	if log := inst.ErrorLog(); !strings.Contains(log, fmt.Sprintf("worker process %d exited on signal 9", victim)) {
		t.Errorf("error log does not report the crash:\n%s", log)
	}
}

func TestKillMasterTakesWorkersDown(t *testing.T) {
	inst := e2e.Start(t, helloConf(2, "ok"), nil)
	master := inst.MasterPid()
	workers := e2e.Workers(master)
	if len(workers) != 2 {
		t.Fatalf("workers: %v", workers)
	}
	start := time.Now()
	syscall.Kill(master, syscall.SIGKILL)
	if !e2e.WaitFor(time.Second, func() bool {
		for _, w := range workers {
			if e2e.Alive(w) {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("workers still alive 1s after the master's death")
	}
	t.Logf("workers gone %v after kill -9 of the master", time.Since(start))
}

func TestWorkerProcesses(t *testing.T) {
	inst := e2e.Start(t, strings.Replace(helloConf(2, "ok"), "worker_processes", "worker_cpu_affinity = \"auto\"\nworker_processes", 1), nil)
	workers := e2e.Workers(inst.MasterPid())
	if len(workers) != 2 {
		t.Fatalf("workers: %v", workers)
	}
	cpus := map[string]bool{}
	for _, w := range workers {
		p, _ := e2e.ReadProc(w)
		if p.Cmdline != "spindle: worker process" {
			t.Errorf("worker %d cmdline %q", w, p.Cmdline)
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", w))
		if !strings.Contains(string(env), "GOMAXPROCS=1\x00") {
			t.Errorf("worker %d does not run with GOMAXPROCS=1", w)
		}
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", w))
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "Cpus_allowed_list:") {
				cpus[strings.TrimSpace(strings.TrimPrefix(line, "Cpus_allowed_list:"))] = true
			}
		}
		// Every thread is pinned, not only the main one.
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", w))
		for _, task := range tasks {
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", w, task.Name()))
			if !strings.Contains(string(st), "Cpus_allowed_list:\t0\n") && !strings.Contains(string(st), "Cpus_allowed_list:\t1\n") {
				t.Errorf("worker %d thread %s not pinned", w, task.Name())
			}
		}
	}
	if ncpu := e2e.NumCPU(); ncpu >= 2 && len(cpus) != 2 {
		t.Errorf("workers pinned to %v, want one CPU each", cpus)
	}
}

const slowConf = `
worker_processes = 2
error_log        = { path = "logs/error.log", level = "info" }
http {
  server {
    listen = ["127.0.0.1:{{PORT}}"]
    location "= /slow" { echo = ["start", { flush = true }, { sleep = "1s" }, "done"] }
    location "= /hello" { echo = "%s" }
  }
}
`

// slowResult is the outcome of a /slow request of slowConf.
type slowResult struct {
	status int
	body   string
	err    error
}

// startSlow sends GET /slow and returns once the response's head has come, flushed
// before the handler's sleep: the request is then in flight in a worker. The result
// comes on the channel.
func startSlow(t *testing.T, addr string) <-chan slowResult {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		t.Fatalf("GET /slow: %v", err)
	}
	out := make(chan slowResult, 1)
	go func() {
		defer c.Close()
		b, err := io.ReadAll(resp.Body)
		out <- slowResult{resp.StatusCode, string(b), err}
	}()
	return out
}

func TestQuitDrainsSlowRequests(t *testing.T) {
	inst := e2e.Start(t, fmt.Sprintf(slowConf, "v1"), nil)
	var results []<-chan slowResult
	for i := 0; i < 6; i++ {
		results = append(results, startSlow(t, inst.Addr()))
	}
	inst.Signal(syscall.SIGQUIT)
	// New clients are refused at once, while the slow requests still run.
	quit := time.Now()
	if !e2e.WaitFor(2*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", inst.Addr(), 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}) {
		t.Errorf("the port still accepts during the QUIT drain")
	} else if d := time.Since(quit); d > 600*time.Millisecond {
		t.Errorf("new clients refused %v after QUIT, want at once", d)
	}
	for _, ch := range results {
		r := <-ch
		if r.err != nil || r.status != 200 || r.body != "start\ndone\n" {
			t.Errorf("slow request during QUIT: %d %q %v", r.status, r.body, r.err)
		}
	}
	if code, ok := inst.Wait(10 * time.Second); !ok || code != 0 {
		t.Fatalf("master after QUIT: exited=%v code=%d", ok, code)
	}
	if len(e2e.GroupPids(inst.Pgid())) != 0 {
		t.Errorf("processes left after QUIT: %v", e2e.GroupPids(inst.Pgid()))
	}
}

// A draining worker answers the next request of a keepalive connection with
// Connection: close, and finishes the slow request in flight.
func TestDrainClosesKeepaliveGracefully(t *testing.T) {
	inst := e2e.Start(t, fmt.Sprintf(slowConf, "v1"), nil)
	c, err := net.Dial("tcp", inst.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := get("/hello"); resp.Close || body != "v1\n" {
		t.Fatalf("first request: close=%v %q", resp.Close, body)
	}
	slow := startSlow(t, inst.Addr())
	inst.WriteConfig(fmt.Sprintf(slowConf, "v2"))
	if out, code := inst.Spindle("-s", "reload"); code != 0 {
		t.Fatalf("reload: %s", out)
	}
	// The old worker still owns this connection: its next response says close.
	resp, body := get("/hello")
	if !resp.Close || body != "v1\n" {
		t.Errorf("request on a draining keepalive connection: close=%v %q", resp.Close, body)
	}
	if r := <-slow; r.body != "start\ndone\n" {
		t.Errorf("slow request across the reload: %q %v", r.body, r.err)
	}
	if _, body, _ := inst.Get("/hello"); body != "v2\n" {
		t.Errorf("new connection after reload: %q", body)
	}
}

// A worker at worker_connections whose connections are all busy (a request in flight
// on each: nothing to reclaim, unlike idle keepalive connections) leaves the next
// client in the listen queue, says so in the error log, and serves it once one of
// them is free.
func TestWorkerConnections(t *testing.T) {
	conf := strings.Replace(helloConf(1, "ok"), "worker_connections = 1024", "worker_connections = 2", 1)
	conf = strings.Replace(conf, `location "= /hello"`, `location "= /slow" { echo = ["start", { flush = true }, { sleep = "1500ms" }, "done"] }
    location "= /hello"`, 1)
	inst := e2e.Start(t, conf, nil)
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", inst.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
		// The flushed head shows the worker has the connection, busy with /slow.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatalf("held connection %d: %v", i, err)
		}
	}
	// The third connection waits in the listen queue: no answer while both are busy.
	third, err := net.Dial("tcp", inst.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	third.Write([]byte("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"))
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 512)
	if n, err := third.Read(buf); err == nil {
		t.Fatalf("third connection served beyond worker_connections: %q", buf[:n])
	}
	// The client of one gives up; its worker learns it when /slow ends and writes.
	held[0].Close()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := third.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("third connection after one closed: %q %v", buf[:n], err)
	}
	if !strings.Contains(inst.ErrorLog(), "worker_connections are not enough") {
		t.Errorf("no alert about worker_connections in the error log")
	}
}

func TestCommandLine(t *testing.T) {
	inst := e2e.Start(t, helloConf(1, "ok"), nil)
	out, code := inst.Spindle("-t")
	if code != 0 || !strings.Contains(out, "test is successful") {
		t.Errorf("-t: %d %q", code, out)
	}
	out, code = inst.Spindle("-T")
	if code != 0 || !strings.Contains(out, "# configuration file "+filepath.Join(inst.Prefix, "conf/spindle.hcl")) || !strings.Contains(out, `location "= /hello"`) {
		t.Errorf("-T: %d %q", code, out)
	}
	out, code = inst.Spindle("-v")
	if code != 0 || !strings.HasPrefix(out, "spindle version ") {
		t.Errorf("-v: %d %q", code, out)
	}
	inst.WriteFile("conf/bad.hcl", "worker_processes = \"many\"\nhttp {\n  server {\n    listen = 5\n    bogus = true\n  }\n}\n")
	out, code = inst.Spindle("-t", "-c", "conf/bad.hcl")
	bad := filepath.Join(inst.Prefix, "conf/bad.hcl")
	for _, want := range []string{
		bad + ":1,20: worker_processes must be a number or \"auto\"",
		bad + ":5,5: unknown directive \"bogus\"",
		"test failed",
	} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("-t on a bad config: exit %d, output %q lacks %q", code, out, want)
		}
	}
	out, code = inst.Spindle("-s", "bogus")
	if code == 0 || !strings.Contains(out, "invalid signal") {
		t.Errorf("-s bogus: %d %q", code, out)
	}
	out, code = inst.Spindle("-s", "reopen")
	if code != 0 {
		t.Errorf("-s reopen: %d %q", code, out)
	}
	// -s stop: the master and its workers exit.
	master := inst.MasterPid()
	out, code = inst.Spindle("-s", "stop")
	if code != 0 {
		t.Errorf("-s stop: %d %q", code, out)
	}
	if !e2e.WaitFor(5*time.Second, func() bool { return !e2e.Alive(master) }) {
		t.Fatalf("master still alive after -s stop")
	}
	if _, err := os.Stat(filepath.Join(inst.Prefix, "logs/spindle.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
	out, code = inst.Spindle("-s", "reload")
	if code == 0 || !strings.Contains(out, "cannot find the master") {
		t.Errorf("-s reload without a master: %d %q", code, out)
	}
}

func TestStartFailsOnBadConfig(t *testing.T) {
	out, code := e2e.StartFailing(t, "http {\n  server {\n    listen = [\"127.0.0.1:1\"]\n    location \"~ (x\" {}\n  }\n}\n")
	if code != 1 || !strings.Contains(out, "spindle.hcl:4,14: invalid regex \"(x\": missing closing parenthesis at offset 2") {
		t.Errorf("exit %d, output %q", code, out)
	}
}

func TestReopenLogs(t *testing.T) {
	inst := e2e.Start(t, helloConf(2, "ok"), nil)
	logPath := filepath.Join(inst.Prefix, "logs/error.log")
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if out, code := inst.Spindle("-s", "reopen"); code != 0 {
		t.Fatalf("-s reopen: %s", out)
	}
	if !e2e.WaitFor(5*time.Second, func() bool {
		_, err := os.Stat(logPath)
		return err == nil
	}) {
		t.Fatalf("error log not reopened")
	}
	// Workers write to the new file too: a QUIT makes each log its shutdown.
	workers := e2e.Workers(inst.MasterPid())
	inst.Signal(syscall.SIGWINCH)
	if !e2e.WaitFor(10*time.Second, func() bool { return len(e2e.Workers(inst.MasterPid())) == 0 }) {
		t.Fatalf("WINCH: workers still running")
	}
	log := inst.ErrorLog()
	for _, w := range workers {
		if !strings.Contains(log, strconv.Itoa(w)+"#0: gracefully shutting down") {
			t.Errorf("worker %d did not log to the reopened file:\n%s", w, log)
		}
	}
	// WINCH leaves the master without workers; a reload brings them back.
	if out, code := inst.Spindle("-s", "reload"); code != 0 {
		t.Fatalf("reload after WINCH: %s", out)
	}
	if status, _, err := inst.Get("/hello"); err != nil || status != 200 {
		t.Fatalf("after WINCH and reload: %d %v", status, err)
	}
}

func TestWorkersDropPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	conf := strings.Replace(helloConf(2, "ok"), "worker_processes", "user = \"nobody\"\nworker_processes", 1)
	inst := e2eStartWithMode(t, conf)
	master := inst.MasterPid()
	if uid := procUID(master); uid != 0 {
		t.Errorf("master uid %d, want 0", uid)
	}
	for _, w := range e2e.Workers(master) {
		if uid := procUID(w); uid != 65534 {
			t.Errorf("worker %d uid %d, want 65534 (nobody)", w, uid)
		}
	}
	if status, _, err := inst.Get("/hello"); err != nil || status != 200 {
		t.Fatalf("GET /hello: %d %v", status, err)
	}
	// The workers can reopen their logs: the master recreates them for the user.
	logPath := filepath.Join(inst.Prefix, "logs/error.log")
	os.Rename(logPath, logPath+".1")
	if out, code := inst.Spindle("-s", "reopen"); code != 0 {
		t.Fatalf("reopen: %s", out)
	}
	if !e2e.WaitFor(5*time.Second, func() bool {
		st, err := os.Stat(logPath)
		return err == nil && st.Sys().(*syscall.Stat_t).Uid == 65534
	}) {
		t.Errorf("reopened error log not owned by the workers' user")
	}
	if strings.Contains(inst.ErrorLog()+readFile(logPath+".1"), "[emerg]") {
		t.Errorf("workers failed:\n%s", readFile(logPath+".1"))
	}
}

// e2eStartWithMode starts an instance whose prefix other users can traverse, as a
// real installation's is.
func e2eStartWithMode(t *testing.T, conf string) *e2e.Instance {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	for d := filepath.Dir(dir); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	return e2e.Start(t, conf, &e2e.Options{PrefixDir: dir})
}

func procUID(pid int) int {
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "Uid:") {
			f := strings.Fields(line)
			uid, _ := strconv.Atoi(f[2]) // effective uid
			return uid
		}
	}
	return -1
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// Changing worker_processes on reload adds or retires worker slots and their sockets.
func TestReloadChangesWorkerCount(t *testing.T) {
	inst := e2e.Start(t, helloConf(2, "two"), nil)
	load := e2e.StartLoad(inst.Addr(), "/hello", 8, false)
	inst.WriteConfig(helloConf(3, "three"))
	if out, code := inst.Spindle("-s", "reload"); code != 0 {
		t.Fatalf("reload to 3 workers: %s", out)
	}
	master := inst.MasterPid()
	if !e2e.WaitFor(10*time.Second, func() bool { return len(e2e.Workers(master)) == 3 }) {
		t.Fatalf("workers after reload to 3: %v", e2e.Workers(master))
	}
	inst.WriteConfig(helloConf(1, "one"))
	if out, code := inst.Spindle("-s", "reload"); code != 0 {
		t.Fatalf("reload to 1 worker: %s", out)
	}
	if !e2e.WaitFor(10*time.Second, func() bool { return len(e2e.Workers(master)) == 1 }) {
		t.Fatalf("workers after reload to 1: %v", e2e.Workers(master))
	}
	// The load goes on against the one worker left.
	served := load.Answered()
	if !e2e.WaitFor(10*time.Second, func() bool { return load.Answered() >= served+100 }) {
		t.Errorf("the load stalled after shrinking to 1 worker at %d answers", served)
	}
	res := load.Stop()
	t.Logf("worker count changes under load: %v", res)
	// Connections queued on the retired slots' sockets when they close are lost (the
	// kernel resets them); nothing else may fail.
	if res.Failed > 16 {
		t.Errorf("too many failures: %v", res)
	}
	for i := 0; i < 20; i++ {
		if _, body, err := inst.Get("/hello"); err != nil || body != "one\n" {
			t.Fatalf("after shrinking: %q %v", body, err)
		}
	}
	if !strings.Contains(inst.ErrorLog(), "closing listening socket") {
		t.Errorf("retired sockets not closed:\n%s", inst.ErrorLog())
	}
}

// A second spindle (or any program) on the same port is refused, though every socket
// spindle opens has SO_REUSEPORT.
func TestPortInUse(t *testing.T) {
	inst := e2e.Start(t, helloConf(1, "first"), nil)
	out, code := e2e.StartFailing(t, strings.ReplaceAll(helloConf(1, "second"), "{{PORT}}", strconv.Itoa(inst.Port)))
	if code != 1 || !strings.Contains(out, "address already in use") {
		t.Fatalf("second instance on the same port: exit %d, %q", code, out)
	}
	if _, body, _ := inst.Get("/hello"); body != "first\n" {
		t.Errorf("first instance answers %q", body)
	}
}

// procFile reads /proc/PID/NAME with NULs shown as spaces and the trailing ones cut.
func procFile(pid int, name string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	return strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " \n")
}

// The master and the workers name themselves as nginx's do for ps, top and pgrep: the
// command line (/proc/PID/cmdline) is "spindle: master process <how it was started>",
// "spindle: worker process" and, while a worker drains, "spindle: worker process is
// shutting down"; the comm of every process and thread is "spindle" (a worker started
// through /proc/self/exe would otherwise be "exe").
func TestProcessNames(t *testing.T) {
	conf := strings.Replace(helloConf(2, "ok"), `location "= /hello"`, `location "= /slow" { echo_sleep = "30s" }
    location "= /hello"`, 1)
	inst := e2e.Start(t, conf, nil)
	master := inst.MasterPid()
	want := "spindle: master process " + inst.Bin + " -p " + inst.Prefix
	if got := procFile(master, "cmdline"); got != want {
		t.Errorf("master cmdline %q, want %q", got, want)
	}
	workers := e2e.Workers(master)
	if len(workers) != 2 {
		t.Fatalf("workers: %v", workers)
	}
	for _, pid := range append([]int{master}, workers...) {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			if comm := procFile(pid, "task/"+task.Name()+"/comm"); comm != "spindle" {
				t.Errorf("process %d thread %s comm %q, want spindle", pid, task.Name(), comm)
			}
		}
	}
	for _, w := range workers {
		if got := procFile(w, "cmdline"); got != "spindle: worker process" {
			t.Errorf("worker %d cmdline %q", w, got)
		}
	}
	// pgrep finds them as it finds nginx's.
	for pattern, n := range map[string]int{"spindle: master process " + inst.Prefix: 0, "spindle: master process .* -p " + inst.Prefix + "$": 1} {
		out, _ := exec.Command("pgrep", "-f", pattern).Output()
		if got := len(strings.Fields(string(out))); got != n {
			t.Errorf("pgrep -f %q: %q, want %d processes", pattern, out, n)
		}
	}
	out, err := exec.Command("pgrep", "-x", "-P", strconv.Itoa(master), "spindle").Output()
	if err != nil || len(strings.Fields(string(out))) != 2 {
		t.Errorf("pgrep -x -P master spindle: %q %v", out, err)
	}

	// A request in flight keeps its worker draining after a QUIT; a worker without one
	// exits at once.
	c, err := net.Dial("tcp", inst.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	holder := 0
	if !e2e.WaitFor(10*time.Second, func() bool {
		for _, w := range workers {
			if hasConnection(w) {
				holder = w
				return true
			}
		}
		return false
	}) {
		t.Fatal("the request reached no worker")
	}
	inst.Signal(syscall.SIGQUIT)
	const draining = "spindle: worker process is shutting down"
	if !e2e.WaitFor(10*time.Second, func() bool { return procFile(holder, "cmdline") == draining }) {
		t.Errorf("draining worker %d cmdline %q, want %q", holder, procFile(holder, "cmdline"), draining)
	}
	if !e2e.WaitFor(10*time.Second, func() bool { got := e2e.Workers(master); return len(got) == 1 && got[0] == holder }) {
		t.Errorf("e2e.Workers finds %v while %d drains", e2e.Workers(master), holder)
	}
	if comm := procFile(holder, "comm"); comm != "spindle" {
		t.Errorf("draining worker %d comm %q", holder, comm)
	}
	out, _ = exec.Command("pgrep", "-f", "^spindle: worker process is shutting down$", "-P", strconv.Itoa(master)).Output()
	if strings.TrimSpace(string(out)) != strconv.Itoa(holder) {
		t.Errorf("pgrep -f 'is shutting down': %q, want %d", out, holder)
	}
}

// hasConnection reports whether process pid holds an accepted connection.
func hasConnection(pid int) bool {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, fd := range fds {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	// The control pipe and the listening sockets are sockets too: a worker holds one per
	// listen address plus the pipe before any connection.
	return n > 2
}

const orphanConf = `
worker_processes        = 1
worker_shutdown_timeout = "20s"
error_log               = { path = "logs/error.log", level = "info" }
http {
  server {
    listen = ["127.0.0.1:{{PORT}}"]
    location "/files/" { root = "html" }
    location "= /sleep" { echo = ["start", { sleep = "1500ms" }, "done"] }
  }
}
`

// The master's death loses no work: its workers stop accepting and finish what is in
// flight (three large downloads whose readers pause until the master is dead, a
// sleeping request), then exit.
func TestKillMasterFinishesInFlight(t *testing.T) {
	const size = 16 << 20
	inst := e2e.Start(t, orphanConf, &e2e.Options{Files: map[string]string{"html/files/big": strings.Repeat("x", size)}})
	master := inst.MasterPid()
	workers := e2e.Workers(master)
	type result struct {
		n   int64
		err error
	}
	results := make(chan result, 4)
	started := make(chan struct{}, 4)
	// The downloads' readers stop after 1 MB until the master is dead, so that each is
	// in flight then.
	resume := make(chan struct{})
	var resumeOnce sync.Once
	resumeReaders := func() { resumeOnce.Do(func() { close(resume) }) }
	defer resumeReaders()
	for i := 0; i < 3; i++ {
		go func() {
			c, err := net.Dial("tcp", inst.Addr())
			if err != nil {
				started <- struct{}{}
				results <- result{0, err}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			io.WriteString(c, "GET /files/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				started <- struct{}{}
				results <- result{0, err}
				return
			}
			buf := make([]byte, 64<<10)
			var n int64
			for {
				k, err := resp.Body.Read(buf)
				n += int64(k)
				if n >= 1<<20 && n-int64(k) < 1<<20 {
					started <- struct{}{}
					<-resume
				}
				if err != nil {
					if err == io.EOF {
						err = nil
					}
					results <- result{n, err}
					return
				}
			}
		}()
	}
	go func() {
		c, err := net.Dial("tcp", inst.Addr())
		if err != nil {
			started <- struct{}{}
			results <- result{0, err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(c, "GET /sleep HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		started <- struct{}{}
		if err != nil {
			results <- result{0, err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		if err == nil && string(b) != "start\ndone\n" {
			err = fmt.Errorf("sleeping request: %q", b)
		}
		results <- result{int64(len(b)), err}
	}()
	for i := 0; i < 4; i++ {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatalf("requests did not start")
		}
	}
	syscall.Kill(master, syscall.SIGKILL)
	// New clients are refused once the worker stopped accepting.
	if !e2e.WaitFor(5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", inst.Addr(), time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}) {
		t.Errorf("the port still accepts after the master's death")
	}
	resumeReaders()
	for i := 0; i < 4; i++ {
		r := <-results
		if r.err != nil || (r.n != size && r.n != int64(len("start\ndone\n"))) {
			t.Errorf("request in flight when the master died: %d bytes, %v", r.n, r.err)
		}
	}
	if !e2e.WaitFor(10*time.Second, func() bool {
		for _, w := range workers {
			if e2e.Alive(w) {
				return false
			}
		}
		return true
	}) {
		t.Errorf("workers still alive after their requests ended")
	}
}
