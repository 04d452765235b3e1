package accesslog

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spindle-server/spindle/internal/errlog"
	"github.com/spindle-server/spindle/modules/httpcore"
	"golang.org/x/sys/unix"
)

// linePool holds the buffers lines are formatted in, outside any lock.
var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// logFile is a worker's descriptor of one access log file. Every write(2) carries whole
// lines and the descriptor is in O_APPEND mode, so the lines of the workers sharing the
// file never mix, whether the file is buffered or not.
type logFile struct {
	spec    *fileSpec
	cfg     *httpcore.Config
	mu      sync.Mutex
	f       *os.File
	buf     []byte      // buffered lines, cap = buffer size; nil when unbuffered
	timer   *time.Timer // flush interval, armed when the buffer gets its first line
	gz      *gzip.Writer
	gzBuf   bytes.Buffer
	lastErr time.Time
	closed  bool
}

func openLogFile(cfg *httpcore.Config, fs *fileSpec) (*logFile, error) {
	f, err := errlog.OpenAppend(fs.path)
	if err != nil {
		return nil, fmt.Errorf("access_log: %w", err)
	}
	lf := &logFile{spec: fs, cfg: cfg, f: f}
	if fs.buffer > 0 {
		lf.buf = make([]byte, 0, fs.buffer)
	}
	if fs.flush > 0 {
		lf.timer = time.AfterFunc(time.Hour, lf.onTimer)
		lf.timer.Stop()
	}
	return lf, nil
}

// write logs one line (ending in a newline).
func (lf *logFile) write(line []byte) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.closed {
		return
	}
	size := cap(lf.buf)
	if size == 0 {
		lf.writeOut(line)
		return
	}
	if len(line) > size-len(lf.buf) {
		lf.flushLocked()
	}
	if len(line) > size {
		// A line larger than the whole buffer goes out on its own, as in nginx.
		lf.writeOut(line)
		return
	}
	if len(lf.buf) == 0 && lf.timer != nil {
		lf.timer.Reset(lf.spec.flush)
	}
	lf.buf = append(lf.buf, line...)
}

func (lf *logFile) onTimer() {
	lf.mu.Lock()
	if !lf.closed {
		lf.flushLocked()
	}
	lf.mu.Unlock()
}

// flushLocked writes the buffered lines out.
func (lf *logFile) flushLocked() {
	if len(lf.buf) > 0 {
		lf.writeOut(lf.buf)
		lf.buf = lf.buf[:0]
	}
	if lf.timer != nil {
		lf.timer.Stop()
	}
}

// writeOut writes p with one write(2) (os.File.Write retries only a short write, which
// a regular file gives only when the disk is full). A gzip log writes each flush as a
// gzip member of its own: zcat reads the concatenation, as with nginx's gzip logs.
func (lf *logFile) writeOut(p []byte) {
	if lf.spec.gzip > 0 {
		lf.gzBuf.Reset()
		if lf.gz == nil {
			lf.gz, _ = gzip.NewWriterLevel(&lf.gzBuf, lf.spec.gzip)
		} else {
			lf.gz.Reset(&lf.gzBuf)
		}
		lf.gz.Write(p)
		lf.gz.Close()
		p = lf.gzBuf.Bytes()
	}
	if _, err := lf.f.Write(p); err != nil {
		// At most one complaint a minute, as nginx: a full disk would flood the
		// error log otherwise.
		if now := time.Now(); now.Sub(lf.lastErr) >= time.Minute {
			lf.lastErr = now
			lf.cfg.Log().Alertf("write() to %q failed: %v", lf.spec.path, err)
		}
	}
}

// reopen writes the buffer to the old file and continues in a newly opened one, for
// log rotation: the old file was renamed, the path names a new file.
func (lf *logFile) reopen() {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.closed {
		return
	}
	lf.flushLocked()
	f, err := errlog.OpenAppend(lf.spec.path)
	if err != nil {
		lf.cfg.Log().Alertf("reopening access log: %v", err)
		return
	}
	old := lf.f
	lf.f = f
	old.Close()
}

// close writes the buffer out and closes the file (worker exit); lines logged later
// are dropped.
func (lf *logFile) close() {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.closed {
		return
	}
	lf.flushLocked()
	lf.f.Close()
	lf.closed = true
}

// checkWritable tells, without creating anything, whether this process could open path
// for appending: the file is writable, or the nearest existing directory above it
// lets the missing part be created. The master checks every configuration this way
// (spindle -t, reload), so that a log the workers could not open is a configuration
// error rather than a failed start.
func checkWritable(path string) error {
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("is a directory")
		}
		return access(path)
	}
	dir := filepath.Dir(path)
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", dir)
			}
			return access(dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return err
		}
		dir = parent
	}
}

func access(path string) error {
	if err := unix.Access(path, unix.W_OK); err != nil {
		return fmt.Errorf("%s is not writable: %w", path, err)
	}
	return nil
}
