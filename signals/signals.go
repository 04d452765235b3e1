// Package signals maps nginx's signals to spindle's actions and implements
// `spindle -s NAME`: find the master through its pid file, send the signal and, for
// reload and upgrade, wait for the master's verdict, which it records in an outcome
// file beside the pid file.
package signals

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The master's signals, as nginx's.
const (
	Reload    = syscall.SIGHUP  // re-read the config, start a new generation of workers
	Reopen    = syscall.SIGUSR1 // reopen log files
	Upgrade   = syscall.SIGUSR2 // start the new binary on the same sockets
	StopWork  = syscall.SIGWINCH
	Quit      = syscall.SIGQUIT // graceful shutdown
	Terminate = syscall.SIGTERM // fast shutdown
	Interrupt = syscall.SIGINT  // fast shutdown
)

// ByName maps `-s` names to signals.
var ByName = map[string]syscall.Signal{
	"reload":  Reload,
	"reopen":  Reopen,
	"upgrade": Upgrade,
	"quit":    Quit,
	"stop":    Terminate,
}

// Outcome records the result of an operation the master performed on a signal; the
// master appends one JSON line per outcome to the outcome file.
type Outcome struct {
	Pid        int    `json:"pid"`     // the master that did it
	Op         string `json:"op"`      // reload, upgrade, start
	Started    int64  `json:"started"` // unix nanoseconds when the master began
	Finished   int64  `json:"finished"`
	OK         bool   `json:"ok"`
	Message    string `json:"message"`
	Generation int    `json:"generation,omitempty"`
	NewPid     int    `json:"new_pid,omitempty"`
}

// OutcomePath is the outcome file that goes with a pid file.
func OutcomePath(pidFile string) string {
	return strings.TrimSuffix(pidFile, ".pid") + ".state"
}

// AppendOutcome appends o to the outcome file, keeping the file small.
func AppendOutcome(path string, o Outcome) error {
	if st, err := os.Stat(path); err == nil && st.Size() > 256<<10 {
		os.Remove(path)
	}
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(b, '\n'))
	return err
}

// ReadOutcomes reads the outcome file; malformed lines are skipped.
func ReadOutcomes(path string) []Outcome {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []Outcome
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var o Outcome
		if json.Unmarshal(sc.Bytes(), &o) == nil {
			out = append(out, o)
		}
	}
	return out
}

// ReadPid reads a pid file.
func ReadPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("invalid pid file %s: %q", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// Send implements `spindle -s name`. For reload and upgrade it waits up to timeout for
// the master's outcome, prints it to out and returns an error if the operation failed.
func Send(pidFile, name string, timeout time.Duration, out io.Writer) error {
	sig, ok := ByName[name]
	if !ok {
		return fmt.Errorf("invalid signal %q: expected reload, reopen, quit, stop or upgrade", name)
	}
	pid, err := ReadPid(pidFile)
	if err != nil {
		return fmt.Errorf("cannot find the master: %w", err)
	}
	start := time.Now().UnixNano()
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("kill(%d, %s): %w", pid, sig, err)
	}
	if name != "reload" && name != "upgrade" {
		return nil
	}
	path := OutcomePath(pidFile)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, o := range ReadOutcomes(path) {
			if o.Pid == pid && o.Op == name && o.Started >= start {
				if o.OK {
					fmt.Fprintln(out, o.Message)
					return nil
				}
				return errors.New(o.Message)
			}
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			return fmt.Errorf("master %d exited before reporting the %s", pid, name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no answer from master %d about the %s within %s", pid, name, timeout)
}
