package sysutil

import (
	"errors"
	"os"
	"strconv"
	"time"
)

// SysmonSlack is the timer slack SlowSysmon gives Go's sysmon thread in a worker.
//
// Why: under GOMAXPROCS=1, a cgo call (a Lua handler: every request of a
// content_by_lua location is one) that spans two of sysmon's ticks loses the P:
// sysmon hands it to another thread, which spins and parks, and the call's return
// takes the slow path; and each retake sets sysmon's sleep back to 20 µs, so it
// keeps waking on the worker's CPU. On bench.sh's CPU-bound Lua workloads sysmon
// alone took 9.5% of the worker's CPU samples (perf, lua_strings), and the worker
// made 0.3-2.3 context switches per request against nginx's 0.04-0.2. With a 1 ms
// slack sysmon's 20 µs sleeps last up to ~1 ms, so a handler shorter than that is
// rarely retaken. The worker's CPU per request (µs, /proc, wrk on a loaded 2-core
// VM, before -> after, nginx + lua-nginx-module beside): lua_strings 50-52 -> 44-48
// (44-48), lua_cjson 48-52 -> 45-47 (42-44), lua_sort 129-130 -> 103-107 (103-130),
// lua_fib 209-217 -> 205-210 (194-196), lua_hash 46-55 -> 43-45 (43), lua_gateway
// 12.7-13.1 -> 10.4-11.5 (8.1); context switches per request 0.1-0.9.
//
// Sysmon's own deadlines are in milliseconds (preempting a goroutine after 10 ms,
// polling the network after 10 ms without a poll), so they hold. What waits longer
// is a goroutine that needs the P while the only one is in a long cgo call or
// system call: up to ~1-2 ms instead of ~20-100 µs, where nginx's worker waits for
// the whole call. Threads that sysmon starts inherit the slack, so a timer whose
// expiry wakes one of them may fire up to 1 ms late (nginx's timers are in
// milliseconds too).
const SysmonSlack = time.Millisecond

// SlowSysmon sets the timer slack of Go's sysmon thread to d. Call it early in a
// process's life, before it drops root: another thread's slack can be set only
// with CAP_SYS_NICE (proc(5), /proc/pid/timerslack_ns); without it the error is
// returned and nothing changes.
//
// Sysmon is the first thread the runtime starts after the main one (runtime.main
// starts it before anything else), so it is the thread with the smallest id after
// the process's own. Thread ids that wrapped around pid_max make that unsure, and
// nothing is changed then.
func SlowSysmon(d time.Duration) error {
	tid, err := SysmonThread()
	if err != nil {
		return err
	}
	return os.WriteFile("/proc/"+strconv.Itoa(tid)+"/timerslack_ns", []byte(strconv.FormatInt(d.Nanoseconds(), 10)), 0)
}

// SysmonThread returns the thread id of Go's sysmon thread (see SlowSysmon).
func SysmonThread() (int, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, err
	}
	pid := os.Getpid()
	best := 0
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil || tid == pid {
			continue
		}
		if tid < pid {
			return 0, errors.New("sysmon thread: thread ids wrapped around")
		}
		if best == 0 || tid < best {
			best = tid
		}
	}
	if best == 0 {
		return 0, errors.New("sysmon thread: no thread but the main one")
	}
	return best, nil
}
