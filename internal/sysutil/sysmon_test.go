package sysutil

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSlowSysmon checks that the thread SlowSysmon picks is the one that sleeps as
// sysmon does (nanosleep: the runtime's usleep, which no other thread of this
// process calls while a goroutine is busy), and that its slack is set.
func TestSlowSysmon(t *testing.T) {
	tid, err := SysmonThread()
	if err != nil {
		t.Fatal(err)
	}
	if tid == os.Getpid() {
		t.Fatalf("picked the main thread %d", tid)
	}
	// A busy goroutine keeps sysmon awake, in its short sleeps.
	var stop atomic.Bool
	defer stop.Store(true)
	go func() {
		for !stop.Load() {
			runtime.Gosched()
		}
	}()
	want := strconv.Itoa(unix.SYS_NANOSLEEP) + " "
	seen := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/syscall")
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(b), want) {
			seen = true
			break
		}
		runtime.Gosched()
	}
	if !seen {
		t.Fatalf("thread %d never seen in nanosleep: not sysmon", tid)
	}

	if err := SlowSysmon(3 * time.Millisecond); err != nil {
		if errors.Is(err, os.ErrPermission) {
			t.Skipf("setting another thread's slack needs CAP_SYS_NICE: %v", err)
		}
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/timerslack_ns")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "3000000" {
		t.Fatalf("sysmon's timer slack is %s ns, want 3000000", got)
	}
}
