// Package proctitle names spindle's processes for ps, top and pgrep, as nginx's
// ngx_setproctitle does: the title ("spindle: master process /usr/sbin/spindle -c
// ...", "spindle: worker process") is written over the memory that holds the
// process's argument strings, which is what /proc/PID/cmdline reads, and the comm
// (/proc/PID/comm, what top and `ps -e` show by default, 15 bytes at most) is
// "spindle" for every process, so that pidof, pgrep -x and ps -C find workers that
// the master started through /proc/self/exe (their comm would be "exe").
//
// The arguments and the environment strings lie one after the other at the top of the
// initial stack. A title longer than the arguments runs on into the environment (the
// kernel then reads /proc/PID/cmdline up to the title's NUL); Init first moves what
// still points there (os.Args, C's environ) to the heap, as nginx copies environ
// before ngx_setproctitle writes over it. Go's own environment is a copy already.
package proctitle

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Comm is the name every spindle process gives itself (and its threads).
const Comm = "spindle"

var (
	mu   sync.Mutex
	area []byte // the argument strings and the environment strings after them
)

// Init names the process's threads Comm and takes the argument and environment memory
// over for Set. Call it first in main: a string taken from os.Args or the environment
// before Init may change under its holder once Set writes a title.
func Init() {
	setComm()
	if len(os.Args) == 0 {
		return
	}
	base := unsafe.StringData(os.Args[0])
	if base == nil {
		return
	}
	start := uintptr(unsafe.Pointer(base))
	end := start + uintptr(len(os.Args[0])) // the NUL after the last string taken
	args := make([]string, len(os.Args))
	for i, a := range os.Args {
		if i > 0 {
			p := uintptr(unsafe.Pointer(unsafe.StringData(a)))
			if p != end+1 {
				return // not the kernel's layout: leave the title alone
			}
			end = p + uintptr(len(a))
		}
		args[i] = strings.Clone(a)
	}
	os.Args = args
	size := end + 1 - start // the arguments with their NULs
	// The environment strings follow on Linux; /proc/self/environ is a copy of them, so
	// the memory is taken only where it holds exactly that. Go copied the environment
	// at start-up; C's environ (when cgo is linked in) still points here, and Setenv
	// gives each variable a copy of its own there.
	if env, err := os.ReadFile("/proc/self/environ"); err == nil && len(env) > 0 {
		if mem := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(base), size)), len(env)); bytes.Equal(mem, env) {
			for _, kv := range os.Environ() {
				if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
					os.Setenv(k, v)
				}
			}
			size += uintptr(len(env))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	area = unsafe.Slice(base, size)
}

// Set makes title the process's command line as ps and pgrep -f show it. A title
// longer than the memory Init took over is cut short.
func Set(title string) {
	mu.Lock()
	defer mu.Unlock()
	if len(area) == 0 {
		return
	}
	n := copy(area[:len(area)-1], title)
	clear(area[n:])
}

// setComm names the calling thread with prctl(PR_SET_NAME) and every other thread of
// the process through /proc/self/task/TID/comm; threads Go starts later inherit the
// name of the thread that starts them.
func setComm() {
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(unsafe.StringData(Comm+"\x00"))), 0, 0, 0)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	for _, t := range tasks {
		os.WriteFile("/proc/self/task/"+t.Name()+"/comm", []byte(Comm), 0)
	}
}
