package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spindle-server/spindle/internal/netutil"
	connpool "github.com/spindle-server/spindle/internal/pool"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/upstream"
)

// upConn is a connection to an upstream HTTP server. Reads and writes carry their own
// deadlines (proxy_read_timeout, proxy_send_timeout), set before each operation as
// nginx arms its timers per event.
type upConn struct {
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	peer     *upstream.Peer
	requests int
	rto, wto time.Duration
	entry    connpool.Entry
}

const (
	upReadBuf  = 16 << 10 // also the longest upstream header line
	upWriteBuf = 16 << 10
	maxHead    = 64 << 10 // the largest upstream response head
)

var (
	upReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, upReadBuf) }}
	upWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, upWriteBuf) }}
	copyBufs  = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
)

func newUpConn(nc net.Conn, p *upstream.Peer) *upConn {
	c := &upConn{nc: nc, peer: p}
	if sc, ok := nc.(syscall.Conn); ok {
		c.entry.Raw, _ = sc.SyscallConn()
	}
	c.br = upReaders.Get().(*bufio.Reader)
	c.br.Reset(deadlineReader{c})
	c.bw = upWriters.Get().(*bufio.Writer)
	c.bw.Reset(deadlineWriter{c})
	return c
}

type deadlineReader struct{ c *upConn }

func (d deadlineReader) Read(p []byte) (int, error) {
	if d.c.rto > 0 {
		d.c.nc.SetReadDeadline(time.Now().Add(d.c.rto))
	}
	return d.c.nc.Read(p)
}

type deadlineWriter struct{ c *upConn }

func (d deadlineWriter) Write(p []byte) (int, error) {
	if d.c.wto > 0 {
		d.c.nc.SetWriteDeadline(time.Now().Add(d.c.wto))
	}
	return d.c.nc.Write(p)
}

// close closes the connection and returns its buffers.
func (c *upConn) close() {
	c.nc.Close()
	c.free()
}

func (c *upConn) free() {
	if c.br != nil {
		c.br.Reset(nil)
		upReaders.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		upWriters.Put(c.bw)
		c.bw = nil
	}
}

// pool keeps a worker's idle connections to one upstream: at most keepalive of them
// (nginx's keepalive), each for at most keepalive_timeout, each used for at most
// keepalive_requests requests; every reuse peeks at the connection first.
type pool struct {
	u       *upstream.Upstream
	idle    *connpool.Pool[*upstream.Peer, *upConn]
	created atomic.Int64 // connections dialed, for tests
}

func newPool(u *upstream.Upstream) *pool {
	return &pool{u: u, idle: connpool.New[*upstream.Peer, *upConn](connpool.Options{Max: u.Keepalive})}
}

// PoolEntry and ClosePooled make upConn a pooled connection.
func (c *upConn) PoolEntry() *connpool.Entry { return &c.entry }
func (c *upConn) ClosePooled()               { c.close() }

// get returns an idle connection to p, or nil.
func (pl *pool) get(p *upstream.Peer) *upConn {
	c, _, _ := pl.idle.Get(p)
	return c
}

// put keeps c for reuse, or closes it when the pool is full or closed; the oldest
// idle connection makes room for it, as nginx's cache evicts its least recently used.
func (pl *pool) put(c *upConn) {
	if pl.u.Keepalive == 0 || c.requests >= pl.u.KeepaliveRequests || pl.u.KeepaliveTimeout <= 0 {
		c.close()
		return
	}
	c.nc.SetDeadline(time.Time{})
	pl.idle.Put(c.peer, c, 0, pl.u.KeepaliveTimeout)
}

// Idle is the number of idle connections kept.
func (pl *pool) Idle() int { return pl.idle.Len() }

func (pl *pool) close() { pl.idle.Close() }

// dial connects to p within timeout.
func (pl *pool) dial(p *upstream.Peer, timeout time.Duration) (*upConn, error) {
	nc, err := netutil.Dial(context.Background(), p.Network, p.Addr, timeout) // TCP_NODELAY set
	if err != nil {
		return nil, err
	}
	pl.created.Add(1)
	return newUpConn(nc, p), nil
}

// respHead is an upstream response head.
type respHead struct {
	status   int
	http10   bool
	reason   string
	fields   []httpcore.HeaderField
	length   int64 // Content-Length, -1 when absent
	chunked  bool
	close    bool // Connection: close, or HTTP/1.0 without keep-alive
	upgrade  bool // Connection: upgrade
	headSize int
}

// errBadHeader is an upstream response nginx would call invalid ("upstream sent
// invalid header"); the request gets 502.
type errBadHeader struct{ msg string }

func (e *errBadHeader) Error() string { return "upstream sent " + e.msg }

// readHead reads a response head, skipping interim 1xx responses other than 101.
// Framing is checked strictly, as at the client edge: Content-Length with
// Transfer-Encoding, conflicting lengths or an unknown transfer coding are errors.
func readHead(br *bufio.Reader, h *respHead) error {
	for {
		*h = respHead{fields: h.fields[:0], length: -1}
		if err := readHeadOnce(br, h); err != nil {
			return err
		}
		if h.status >= 200 || h.status == 101 {
			return nil
		}
	}
}

func readHeadOnce(br *bufio.Reader, h *respHead) error {
	line, err := readLine(br, &h.headSize)
	if err != nil {
		return err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return &errBadHeader{fmt.Sprintf("invalid status line %q", truncate(line))}
	}
	h.http10 = line[7] == '0'
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 || code > 999 || (len(line) > 12 && line[12] != ' ') {
		return &errBadHeader{fmt.Sprintf("invalid status line %q", truncate(line))}
	}
	h.status = code
	if len(line) > 13 {
		h.reason = string(line[13:])
	}
	keepAlive := false
	var cls []string
	for {
		line, err := readLine(br, &h.headSize)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return &errBadHeader{"obsolete header line folding"}
		}
		if bytes.IndexByte(line, '\r') >= 0 || bytes.IndexByte(line, 0) >= 0 {
			// A CR not ending the line, or a NUL, as nginx (1.21.1 and later) refuses
			// them: a client could take the CR for the end of the line.
			return &errBadHeader{fmt.Sprintf("invalid header line %q", truncate(line))}
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 || bytes.ContainsAny(line[:i], " \t") {
			return &errBadHeader{fmt.Sprintf("invalid header line %q", truncate(line))}
		}
		key := string(line[:i])
		val := string(bytes.Trim(line[i+1:], " \t"))
		switch {
		case strings.EqualFold(key, "Content-Length"):
			cls = append(cls, val)
			continue
		case strings.EqualFold(key, "Transfer-Encoding"):
			if !strings.EqualFold(val, "chunked") || h.chunked {
				return &errBadHeader{fmt.Sprintf("unknown \"Transfer-Encoding\": %q", val)}
			}
			h.chunked = true
			continue
		case strings.EqualFold(key, "Connection"):
			for _, tok := range strings.Split(val, ",") {
				tok = strings.TrimSpace(tok)
				switch {
				case strings.EqualFold(tok, "close"):
					h.close = true
				case strings.EqualFold(tok, "keep-alive"):
					keepAlive = true
				case strings.EqualFold(tok, "upgrade"):
					h.upgrade = true
				}
			}
		}
		h.fields = append(h.fields, httpcore.HeaderField{Key: key, Value: val})
	}
	if h.http10 && !keepAlive {
		h.close = true
	}
	if len(cls) > 0 {
		if h.chunked {
			return &errBadHeader{"\"Content-Length\" and \"Transfer-Encoding\" headers at the same time"}
		}
		for _, v := range cls {
			if v != cls[0] {
				return &errBadHeader{"duplicate \"Content-Length\" header"}
			}
		}
		n, err := strconv.ParseInt(cls[0], 10, 64)
		if err != nil || n < 0 || cls[0][0] == '+' {
			return &errBadHeader{fmt.Sprintf("invalid \"Content-Length\": %q", cls[0])}
		}
		h.length = n
	}
	return nil
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// readLine reads one CRLF- (or LF-) terminated line without its terminator, counting
// the bytes against the head limit.
func readLine(br *bufio.Reader, total *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	*total += len(line)
	if err == bufio.ErrBufferFull || *total > maxHead {
		return nil, &errBadHeader{"too big header"}
	}
	if err != nil {
		if err == io.EOF && *total > len(line) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// bodyReader reads an upstream response body by its framing and reports whether the
// connection ends in a state fit for reuse.
type bodyReader struct {
	br        *bufio.Reader
	remaining int64 // Content-Length framing; -1 otherwise
	chunked   io.Reader
	untilEOF  bool
	done      bool
}

func newBodyReader(br *bufio.Reader, h *respHead, noBody bool) *bodyReader {
	b := &bodyReader{br: br, remaining: -1}
	switch {
	case noBody:
		b.done = true
	case h.chunked:
		b.chunked = httputil.NewChunkedReader(br)
	case h.length >= 0:
		b.remaining = h.length
		b.done = h.length == 0
	default:
		b.untilEOF = true
	}
	return b
}

// errTruncated is an upstream that closed the connection before the end of the body
// it announced ("upstream prematurely closed connection").
var errTruncated = errors.New("upstream prematurely closed connection while reading upstream")

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	switch {
	case b.chunked != nil:
		n, err := b.chunked.Read(p)
		if err == io.EOF {
			if terr := skipTrailer(b.br); terr != nil {
				return n, terr
			}
			b.done = true
		} else if err == io.ErrUnexpectedEOF {
			err = errTruncated
		}
		return n, err
	case b.remaining >= 0:
		if int64(len(p)) > b.remaining {
			p = p[:b.remaining]
		}
		n, err := b.br.Read(p)
		b.remaining -= int64(n)
		if b.remaining == 0 {
			b.done = true
			return n, io.EOF
		}
		if err == io.EOF {
			err = errTruncated
		}
		return n, err
	default:
		n, err := b.br.Read(p)
		if err == io.EOF {
			b.done = true
		}
		return n, err
	}
}

// complete reports whether the whole body was read and the framing allows another
// request on the connection.
func (b *bodyReader) complete() bool { return b.done && !b.untilEOF }

func skipTrailer(br *bufio.Reader) error {
	total := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = errTruncated
			}
			return err
		}
		total += len(line)
		if total > 8192 {
			return &errBadHeader{"too big trailer"}
		}
		if len(line) <= 2 && strings.TrimRight(string(line), "\r\n") == "" {
			return nil
		}
	}
}

// chunkedWriter frames a request body of unknown length for the upstream.
type chunkedWriter struct{ w *bufio.Writer }

func (cw chunkedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var tmp [20]byte
	cw.w.Write(strconv.AppendInt(tmp[:0], int64(len(p)), 16))
	cw.w.WriteString("\r\n")
	cw.w.Write(p)
	_, err := cw.w.WriteString("\r\n")
	if err != nil {
		return 0, err
	}
	return len(p), nil
}
