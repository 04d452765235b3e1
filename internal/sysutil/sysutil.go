// Package sysutil holds the operating-system calls master and worker share: user and
// group lookup, privilege drop, CPU pinning, file ownership.
package sysutil

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// IDs resolves a user and group name (or number) to ids. An empty group means the
// user's primary group.
func IDs(userName, groupName string) (uid, gid int, err error) {
	u, err := user.Lookup(userName)
	if err != nil {
		if _, nerr := strconv.Atoi(userName); nerr == nil {
			u, err = user.LookupId(userName)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("user %q: %w", userName, err)
		}
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			if _, nerr := strconv.Atoi(groupName); nerr == nil {
				g, err = user.LookupGroupId(groupName)
			}
			if err != nil {
				return 0, 0, fmt.Errorf("group %q: %w", groupName, err)
			}
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid, nil
}

// DropPrivileges switches the whole process (every thread) to uid and gid, with gid as
// its only supplementary group.
func DropPrivileges(uid, gid int) error {
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("setgroups(%d): %w", gid, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid(%d): %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid(%d): %w", uid, err)
	}
	return nil
}

// PinCPUs pins every thread of the process to cpus. Threads created later inherit the
// mask of the thread that creates them, so pinning all current threads early pins the
// process for good.
func PinCPUs(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return unix.SchedSetaffinity(0, &set)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("sched_setaffinity(%v): %w", cpus, err)
		}
	}
	return nil
}

// NumCPU is the number of online CPUs, nginx's worker_processes auto.
func NumCPU() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		return set.Count()
	}
	return 1
}

// PrepareFile creates path if needed (for appending) and gives it to uid:gid, so that
// a worker running as that user can open it.
func PrepareFile(path string, uid, gid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Chown(uid, gid)
}
