// Package errlog is spindle's error log: nginx's format and levels, written by the master
// and by every worker to the same file (or stderr), reopened on USR1.
package errlog

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// Level is a severity as nginx names them; lower is more severe.
type Level int

// The levels, most severe first.
const (
	Emerg Level = iota
	Alert
	Crit
	Error
	Warn
	Notice
	Info
	Debug
)

var levelNames = [...]string{"emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"}

// String returns the nginx name of the level.
func (l Level) String() string {
	if l < 0 || int(l) >= len(levelNames) {
		return "level" + strconv.Itoa(int(l))
	}
	return levelNames[l]
}

// ParseLevel parses an nginx level name.
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if n == s {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("unknown log level %q (expected one of debug, info, notice, warn, error, crit, alert, emerg)", s)
}

// Logger writes error-log lines. It is safe for concurrent use.
type Logger struct {
	mu    sync.Mutex
	path  string // "" or "stderr" means standard error
	f     *os.File
	level Level
	pid   int
	buf   []byte
}

// Open opens path for appending (creating it and its directory if needed); path ""
// or "stderr" logs to standard error.
func Open(path string, level Level) (*Logger, error) {
	l := &Logger{path: path, level: level, pid: os.Getpid()}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

// Stderr returns a logger to standard error, used before the config is read.
func Stderr(level Level) *Logger {
	return &Logger{level: level, f: os.Stderr, pid: os.Getpid()}
}

func openFile(path string) (*os.File, error) {
	if path == "" || path == "stderr" {
		return os.Stderr, nil
	}
	return OpenAppend(path)
}

// OpenAppend opens a log file for appending, creating its directory if needed.
func OpenAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if os.IsNotExist(err) {
		if mkErr := os.MkdirAll(dirOf(path), 0o755); mkErr == nil {
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		}
	}
	return f, err
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			if i == 0 {
				return "/"
			}
			return path[:i]
		}
	}
	return "."
}

// Path is the file this logger writes to ("" for stderr).
func (l *Logger) Path() string {
	if l.path == "stderr" {
		return ""
	}
	return l.path
}

// Level is the least severe level written.
func (l *Logger) Level() Level { return l.level }

// Enabled reports whether a message at level would be written.
func (l *Logger) Enabled(level Level) bool { return l != nil && level <= l.level }

// SetPid changes the pid written in each line (a forked role keeps its own).
func (l *Logger) SetPid(pid int) { l.mu.Lock(); l.pid = pid; l.mu.Unlock() }

// Reopen opens the log file anew, for log rotation (USR1).
func (l *Logger) Reopen() error {
	if l.path == "" || l.path == "stderr" {
		return nil
	}
	f, err := OpenAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != os.Stderr {
		old.Close()
	}
	return nil
}

// Close closes the log file.
func (l *Logger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil && l.f != os.Stderr {
		return l.f.Close()
	}
	return nil
}

// Logf writes one line at level: "2006/01/02 15:04:05 [level] pid#0: message".
func (l *Logger) Logf(level Level, format string, args ...any) {
	if l == nil || level > l.level {
		return
	}
	msg := fmt.Sprintf(format, args...)
	now := time.Now()
	l.mu.Lock()
	b := l.buf[:0]
	b = now.AppendFormat(b, "2006/01/02 15:04:05")
	b = append(b, " ["...)
	b = append(b, level.String()...)
	b = append(b, "] "...)
	b = strconv.AppendInt(b, int64(l.pid), 10)
	b = append(b, "#0: "...)
	b = append(b, msg...)
	if len(msg) == 0 || msg[len(msg)-1] != '\n' {
		b = append(b, '\n')
	}
	_, _ = l.f.Write(b)
	if cap(b) <= 64<<10 {
		l.buf = b
	}
	l.mu.Unlock()
}

// Errorf logs at error level.
func (l *Logger) Errorf(format string, args ...any) { l.Logf(Error, format, args...) }

// Warnf logs at warn level.
func (l *Logger) Warnf(format string, args ...any) { l.Logf(Warn, format, args...) }

// Noticef logs at notice level.
func (l *Logger) Noticef(format string, args ...any) { l.Logf(Notice, format, args...) }

// Infof logs at info level.
func (l *Logger) Infof(format string, args ...any) { l.Logf(Info, format, args...) }

// Debugf logs at debug level.
func (l *Logger) Debugf(format string, args ...any) { l.Logf(Debug, format, args...) }

// Alertf logs at alert level.
func (l *Logger) Alertf(format string, args ...any) { l.Logf(Alert, format, args...) }
