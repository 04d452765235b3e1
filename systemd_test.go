package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

func TestSystemdUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile("systemd/spindle.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify", "NotifyAccess=all", "-s reload", "ExecReload=", "KillSignal=SIGQUIT",
		"ProtectSystem=strict", "NoNewPrivileges=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	needTool(t, "systemd-analyze", "systemd")
	// verify checks that ExecStart's binary exists: point it at the test build.
	dir := t.TempDir()
	path := filepath.Join(dir, "spindle.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/spindle", e2e.Binary(t))), 0o644)
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "spindle.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestSystemdNotify(t *testing.T) {
	notify := e2e.ListenNotify(t)
	inst := e2e.Start(t, helloConf(2, "v1"), &e2e.Options{Env: []string{notify.Env()}})
	i, ok := notify.WaitFor(5*time.Second, 0, func(m string) bool { return strings.Contains(m, "READY=1") })
	if !ok {
		t.Fatalf("no READY=1 after start: %q", notify.Messages())
	}
	// Reload: RELOADING=1 with MONOTONIC_USEC, then READY=1.
	if out, code := inst.Spindle("-s", "reload"); code != 0 {
		t.Fatalf("reload: %s", out)
	}
	j, ok := notify.WaitFor(5*time.Second, i+1, func(m string) bool {
		return strings.Contains(m, "RELOADING=1") && strings.Contains(m, "MONOTONIC_USEC=")
	})
	if !ok {
		t.Fatalf("no RELOADING=1 with MONOTONIC_USEC: %q", notify.Messages())
	}
	k, ok := notify.WaitFor(5*time.Second, j+1, func(m string) bool { return strings.Contains(m, "READY=1") })
	if !ok {
		t.Fatalf("no READY=1 after the reload: %q", notify.Messages())
	}
	// A failed reload still ends the reload state with READY=1, its status saying why.
	inst.WriteConfig("http {")
	if _, code := inst.Spindle("-s", "reload"); code == 0 {
		t.Fatalf("reload of a broken config succeeded")
	}
	j, ok = notify.WaitFor(5*time.Second, k+1, func(m string) bool { return strings.Contains(m, "RELOADING=1") })
	if !ok {
		t.Fatalf("no RELOADING=1 for the failed reload: %q", notify.Messages())
	}
	if _, ok := notify.WaitFor(5*time.Second, j+1, func(m string) bool {
		return strings.Contains(m, "READY=1") && strings.Contains(m, "STATUS=reload failed")
	}); !ok {
		t.Fatalf("no READY=1 with a failure status: %q", notify.Messages())
	}
	// Graceful stop: STOPPING=1, then the master exits 0.
	inst.Signal(syscall.SIGQUIT)
	if _, ok := notify.WaitFor(5*time.Second, 0, func(m string) bool { return strings.Contains(m, "STOPPING=1") }); !ok {
		t.Fatalf("no STOPPING=1: %q", notify.Messages())
	}
	if code, ok := inst.Wait(10 * time.Second); !ok || code != 0 {
		t.Fatalf("master after QUIT: exited=%v code=%d", ok, code)
	}
	// Workers do not talk to systemd: every message came from the master.
	for _, m := range notify.Messages() {
		if strings.Contains(m, "MAINPID") {
			t.Errorf("unexpected MAINPID without an upgrade: %q", m)
		}
	}
}

func TestInstallScript(t *testing.T) {
	dest := t.TempDir()
	cmd := exec.Command("scripts/install.sh")
	cmd.Env = append(os.Environ(), "DESTDIR="+dest, "BIN="+e2e.Binary(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/local/bin/spindle", "etc/systemd/system/spindle.service", "etc/spindle/spindle.hcl", "etc/logrotate.d/spindle", "usr/share/spindle/html"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("install.sh did not install %s: %v", f, err)
		}
	}
	// The installed config is valid.
	out, err := exec.Command(filepath.Join(dest, "usr/local/bin/spindle"), "-t", "-p", filepath.Join(dest, "usr/share/spindle"),
		"-c", filepath.Join(dest, "etc/spindle/spindle.hcl")).CombinedOutput()
	if err != nil {
		t.Fatalf("installed config: %v\n%s", err, out)
	}
}

// needTool skips a test whose tool is missing, or fails it under CI, where
// scripts/test.sh installs the Debian package.
func needTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (Debian package %s) is missing; scripts/test.sh installs it", tool, pkg)
		}
		t.Skipf("%s not installed (Debian package %s)", tool, pkg)
	}
	return path
}

// unitDirective returns the value of a unit file's Key= line.
func unitDirective(t *testing.T, unit, key string) string {
	t.Helper()
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return v
		}
	}
	t.Fatalf("unit has no %s=", key)
	return ""
}

// TestInstalledServiceUnderItsHardening runs what scripts/install.sh installs the way
// the unit runs it: the unit's own ExecStartPre, ExecStart and ExecReload command
// lines, as an unprivileged user with no new privileges, in a bubblewrap sandbox where
// the whole file system is read-only but for the directories the unit gives spindle
// (RuntimeDirectory=, LogsDirectory=, StateDirectory=) and a private /tmp; systemd's
// notify socket is the test's. Then a GET, a reload, a log reopen (logrotate's
// postrotate) and a binary upgrade.
func TestInstalledServiceUnderItsHardening(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (CI runs as root) to give the unit's directories to an unprivileged user")
		}
		t.Skip("needs root to give the unit's directories to an unprivileged user")
	}
	bwrap := needTool(t, "bwrap", "bubblewrap")
	needTool(t, "setpriv", "util-linux")

	root := t.TempDir()
	os.Chmod(root, 0o755)
	cmd := exec.Command("scripts/install.sh")
	cmd.Env = append(os.Environ(), "DESTDIR="+root, "BIN="+e2e.Binary(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	unitBytes, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/spindle.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(unitBytes)
	for _, want := range []string{"RuntimeDirectory=spindle", "LogsDirectory=spindle", "StateDirectory=spindle", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes"} {
		if !strings.Contains(unit, want+"\n") {
			t.Fatalf("unit lacks %s: the sandbox below stands for it", want)
		}
	}
	// The one edit an operator makes: a free port instead of 80 (port 80 may be taken
	// on the test machine; the unit's CAP_NET_BIND_SERVICE is for it).
	confPath := filepath.Join(root, "etc/spindle/spindle.hcl")
	confBytes, _ := os.ReadFile(confPath)
	port := e2e.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	config := strings.Replace(string(confBytes), `"0.0.0.0:80"`, `"`+addr+`"`, 1)
	if config == string(confBytes) {
		t.Fatal("installed config does not listen on 0.0.0.0:80")
	}
	os.WriteFile(confPath, []byte(config), 0o644)

	// What systemd makes for the unit: the directories, owned by the unit's user
	// (nobody stands for spindle).
	const uid, gid = 65534, 65534
	dirs := map[string]os.FileMode{"run/spindle": 0o755, "var/log/spindle": 0o750, "var/lib/spindle": 0o755}
	for d, mode := range dirs {
		p := filepath.Join(root, d)
		if err := os.MkdirAll(p, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		os.Chown(p, uid, gid)
	}
	notify := e2e.ListenNotify(t)
	os.Chmod(filepath.Dir(notify.Path), 0o755)
	os.Chmod(notify.Path, 0o777)

	sandbox := func(command string) *exec.Cmd {
		args := []string{
			"--die-with-parent",
			"--tmpfs", "/",
			// Parents bwrap would make for mount points are 0700; nobody must pass them.
			"--dir", "/usr", "--dir", "/usr/share", "--dir", "/etc", "--dir", "/run", "--dir", "/run/systemd",
			"--dir", "/var", "--dir", "/var/log", "--dir", "/var/lib",
			"--ro-bind", "/usr/bin", "/usr/bin", "--ro-bind", "/usr/sbin", "/usr/sbin",
			"--ro-bind", "/usr/lib", "/usr/lib", "--ro-bind-try", "/usr/lib64", "/usr/lib64",
			"--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
			"--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
			"--ro-bind", filepath.Join(root, "etc/spindle"), "/etc/spindle",
			"--ro-bind-try", "/etc/passwd", "/etc/passwd", "--ro-bind-try", "/etc/group", "/etc/group",
			"--ro-bind-try", "/etc/localtime", "/etc/localtime", "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
			"--ro-bind", filepath.Join(root, "usr/local"), "/usr/local",
			"--ro-bind", filepath.Join(root, "usr/share/spindle"), "/usr/share/spindle",
			"--ro-bind", filepath.Dir(notify.Path), "/run/systemd/notify",
			"--dev", "/dev", "--proc", "/proc", "--perms", "01777", "--tmpfs", "/tmp",
		}
		for d := range dirs {
			args = append(args, "--bind", filepath.Join(root, d), "/"+d)
		}
		args = append(args, "--remount-ro", "/", "--clearenv",
			"--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
			"--setenv", "NOTIFY_SOCKET", "/run/systemd/notify/"+filepath.Base(notify.Path),
			"--", "setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", gid), "--clear-groups", "--no-new-privs", "--")
		args = append(args, strings.Fields(command)...)
		c := exec.Command(bwrap, args...)
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		return c
	}
	run := func(what, command string) string {
		t.Helper()
		out, err := sandbox(command).CombinedOutput()
		if err != nil {
			t.Fatalf("%s (%s): %v\n%s", what, command, err, out)
		}
		return string(out)
	}

	// The sandbox is what it stands for: the prefix is read-only, the logs are not.
	for _, p := range []string{"/usr/share/spindle/x", "/etc/spindle/x", "/x"} {
		if out, err := sandbox("touch " + p).CombinedOutput(); err == nil || !strings.Contains(string(out), "Read-only file system") {
			t.Fatalf("touch %s in the sandbox: %v %s, want a read-only file system", p, err, out)
		}
	}
	run("the unit's writable directories", "touch /var/log/spindle/x /var/lib/spindle/x /run/spindle/x /tmp/x")
	for d := range dirs {
		os.Remove(filepath.Join(root, d, "x"))
	}
	run("pre-start check", strings.TrimPrefix(unitDirective(t, unit, "ExecStartPre"), "-"))

	server := sandbox(unitDirective(t, unit, "ExecStart"))
	var out strings.Builder
	server.Stdout, server.Stderr = &out, &out
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { server.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-server.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	if _, ok := notify.WaitFor(20*time.Second, 0, func(m string) bool { return strings.Contains(m, "READY=1") }); !ok {
		t.Fatalf("no READY=1 from the sandboxed service:\n%s\nerror.log: %s", out.String(), readFile(filepath.Join(root, "var/log/spindle/error.log")))
	}
	get := func(path, want string) {
		t.Helper()
		// A new connection each time: a draining worker still answers the next request on a
		// keepalive connection.
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("GET %s: %d %q, want 200 with %q", path, resp.StatusCode, body, want)
		}
	}
	get("/hello", "hello world")
	accessLog := filepath.Join(root, "var/log/spindle/access.log")
	if !e2e.WaitFor(5*time.Second, func() bool { return strings.Contains(readFile(accessLog), "GET /hello") }) {
		t.Fatalf("access.log: %q", readFile(accessLog))
	}
	pidFile := filepath.Join(root, "run/spindle/spindle.pid")
	for _, f := range []string{accessLog, filepath.Join(root, "var/log/spindle/error.log"), pidFile} {
		if fi, err := os.Stat(f); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uid {
			t.Errorf("%s: %v, want a file of the unit's user", f, err)
		}
	}

	// systemctl reload runs ExecReload, which waits for the outcome.
	os.WriteFile(confPath, []byte(strings.Replace(config, `body = "hello world\n"`, `body = "reloaded\n"`, 1)), 0o644)
	if o := run("reload", unitDirective(t, unit, "ExecReload")); !strings.Contains(o, "ready") {
		t.Errorf("reload said %q", o)
	}
	get("/hello", "reloaded")

	// logrotate: rename, then the postrotate command; new lines go to a new file.
	rotate, _ := os.ReadFile(filepath.Join(root, "etc/logrotate.d/spindle"))
	post := ""
	for _, line := range strings.Split(string(rotate), "\n") {
		if strings.Contains(line, "-s reopen") {
			post, _, _ = strings.Cut(strings.TrimSpace(line), " >")
		}
	}
	if post == "" {
		t.Fatalf("logrotate snippet has no reopen command:\n%s", rotate)
	}
	if err := os.Rename(accessLog, accessLog+".1"); err != nil {
		t.Fatal(err)
	}
	run("reopen", post)
	if !e2e.WaitFor(5*time.Second, func() bool { _, err := os.Stat(accessLog); return err == nil }) {
		t.Fatal("reopen did not create a new access.log")
	}
	get("/hello?after-rotate", "reloaded")
	if !e2e.WaitFor(5*time.Second, func() bool { return strings.Contains(readFile(accessLog), "after-rotate") }) {
		t.Errorf("access.log after reopen: %q", readFile(accessLog))
	}

	// Binary upgrade as the README documents it, with a new binary renamed into place.
	oldMaster, _ := strconv.Atoi(strings.TrimSpace(readFile(pidFile)))
	e2e.CopyBinary(t, filepath.Join(root, "usr/local/bin"))
	if o := run("upgrade", "/usr/local/bin/spindle -p /usr/share/spindle -c /etc/spindle/spindle.hcl -s upgrade"); o == "" {
		t.Errorf("upgrade printed nothing")
	}
	if !e2e.WaitFor(10*time.Second, func() bool { return !e2e.Alive(oldMaster) }) {
		t.Fatalf("old master %d still alive after the upgrade", oldMaster)
	}
	newMaster, _ := strconv.Atoi(strings.TrimSpace(readFile(pidFile)))
	if newMaster == oldMaster || !e2e.Alive(newMaster) {
		t.Fatalf("pid file after the upgrade: %d (old %d)", newMaster, oldMaster)
	}
	get("/hello", "reloaded")
	if _, ok := notify.WaitFor(5*time.Second, 0, func(m string) bool { return strings.Contains(m, fmt.Sprintf("MAINPID=%d", newMaster)) }); !ok {
		t.Errorf("no MAINPID=%d: %q", newMaster, notify.Messages())
	}
	// systemctl stop: QUIT to the main process.
	syscall.Kill(newMaster, syscall.SIGQUIT)
	if !e2e.WaitFor(10*time.Second, func() bool { return !e2e.Alive(newMaster) }) {
		t.Errorf("master %d did not exit on QUIT", newMaster)
	}
	if log := readFile(filepath.Join(root, "var/log/spindle/error.log")); strings.Contains(log, "[emerg]") || strings.Contains(log, "[alert]") {
		t.Errorf("error.log:\n%s", log)
	}
}
