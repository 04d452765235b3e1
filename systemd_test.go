package main

import (
	"os"
	"os/exec"
	"path/filepath"
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
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed")
	}
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
	for _, f := range []string{"usr/local/bin/spindle", "etc/systemd/system/spindle.service", "etc/spindle/spindle.hcl", "usr/share/spindle/html"} {
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
