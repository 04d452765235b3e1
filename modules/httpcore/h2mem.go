package httpcore

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// What an idle HTTP/2 connection keeps. No goroutine: its reader parks the socket in
// the event loop (park) and returns; the loop starts it again, on a goroutine of the
// pool, when the next frame arrives, and a timer ends it at http2_idle_timeout.
// Everything else that a busy connection needs is let go until then: the read buffer
// (h2in reads into a 16-byte array while idle), the write buffer, the Framers and the
// response encoder (pools, taken by the first read or write; one that handled a large
// frame is dropped, with its buffer), the last header block's fields, the streams
// map's buckets, crypto/tls's record buffers (releaseTLSBuffers), and no goroutine of
// its own waits for the drain (one per engine, h2registry). RSS per idle connection
// (2,000, one stream each, internal/cmd/idleconns): h2c 12.8 KB with a reader goroutine
// each, 5.9-6.0 KB parked (nginx 1.22: 6.6 KB); TLS 35.0 KB, 15.4-16.0 KB (nginx: 21.0 KB).

// h2in is the connection's read buffer. A read that may wait goes into an array of 16
// bytes, so that a connection waiting for its next frame holds no buffer; when that
// read fills the array, more is likely waiting in the kernel and the next read goes
// into a pooled 16 KB buffer, kept while reads fill it: a burst of frames costs one
// small read more than a buffer of its own would.
type h2in struct {
	src   io.Reader
	pre   []byte // read before HTTP/2 took the connection over (the preface, and more)
	data  []byte // buffered, in buf or small
	buf   *[]byte
	more  bool // the last read filled its buffer
	small [16]byte
}

var h2InBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func (in *h2in) buffered() int { return len(in.data) + len(in.pre) }

func (in *h2in) Read(p []byte) (int, error) {
	if len(in.data) == 0 {
		if len(p) >= 4096 && len(in.pre) == 0 {
			in.dropBuf()
			return in.src.Read(p) // a large read goes straight to the caller
		}
		if err := in.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, in.data)
	in.data = in.data[n:]
	return n, nil
}

// fill reads what comes next when nothing is buffered, waiting for it: a wait cut
// short by a deadline loses nothing.
func (in *h2in) fill() error {
	if len(in.data) > 0 {
		return nil
	}
	if len(in.pre) > 0 {
		in.data, in.pre = in.pre, nil
		return nil
	}
	in.dropBuf()
	b := in.small[:]
	if in.more {
		in.buf = h2InBufs.Get().(*[]byte)
		b = *in.buf
	}
	n, err := in.src.Read(b)
	in.data = b[:n]
	in.more = n == len(b)
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	return nil
}

func (in *h2in) dropBuf() {
	if in.buf != nil {
		h2InBufs.Put(in.buf)
		in.buf = nil
	}
}

// h2out is what the write Framer writes to: the pooled write buffer, taken on demand.
type h2out struct{ hc *h2conn }

var h2OutBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

func (o *h2out) Write(p []byte) (int, error) { return o.hc.out().Write(p) }

// out is the write buffer; under hc.wmu.
func (hc *h2conn) out() *bufio.Writer {
	if hc.bw == nil {
		hc.bw = h2OutBufs.Get().(*bufio.Writer)
		hc.bw.Reset(hc.nc)
	}
	return hc.bw
}

// flushOut sends the write buffer; under hc.wmu.
func (hc *h2conn) flushOut() error {
	if hc.bw == nil {
		return nil
	}
	hc.nc.SetWriteDeadline(time.Now().Add(hc.sendTimeout))
	return hc.bw.Flush()
}

// h2SmallFrame: a Framer that read or wrote a frame larger than this is not pooled
// when the connection goes idle, which lets its buffer go.
const h2SmallFrame = 1024

// h2writer is the write side's Framer with the HPACK encoder of response heads, taken
// from a pool by a connection's first write and given back when it is idle. The
// encoder's dynamic table is off (size 0), as nginx's: response fields are literals
// without indexing, or static table entries, so it keeps no state between heads
// (and no table of a few hundred bytes per connection), and the client's decoder
// table stays empty (no size update is needed: we never insert).
type h2writer struct {
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	out  h2out
}

var h2Writers = sync.Pool{New: func() any {
	w := &h2writer{}
	w.fr = http2.NewFramer(&w.out, nil)
	w.enc = hpack.NewEncoder(&w.hbuf)
	w.enc.SetMaxDynamicTableSizeLimit(0)
	w.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"}) // sends the pending size update, to nowhere
	w.hbuf.Reset()
	return w
}}

// writer is the connection's h2writer; under hc.wmu.
func (hc *h2conn) writer() *h2writer {
	if hc.w == nil {
		hc.w = h2Writers.Get().(*h2writer)
		hc.w.out.hc = hc
	}
	return hc.w
}

// h2reader is the read side's Framer, from a pool while the connection is busy.
type h2reader struct {
	fr  *http2.Framer
	src h2src
}

// h2src is what the read Framer reads from: the connection's read buffer.
type h2src struct{ in *h2in }

func (s *h2src) Read(p []byte) (int, error) { return s.in.Read(p) }

var h2Readers = sync.Pool{New: func() any {
	r := &h2reader{}
	r.fr = http2.NewFramer(nil, &r.src)
	r.fr.SetReuseFrames()
	r.fr.SetMaxReadFrameSize(h2MaxFrame)
	return r
}}

// reader is the connection's read Framer; the reader goroutine's. A Framer is taken
// or given back only between header blocks (it checks that CONTINUATION frames follow
// their HEADERS).
func (hc *h2conn) reader() *http2.Framer {
	if hc.r == nil {
		hc.r = h2Readers.Get().(*h2reader)
		hc.r.src.in = &hc.rd
	}
	return hc.r.fr
}

// idleRelease lets go of the buffers of a connection with no stream open. The reader
// calls it before it waits for the next frame.
func (hc *h2conn) idleRelease() {
	if hc.r != nil && hc.blockID == 0 {
		if !hc.bigRead {
			hc.r.src.in = nil
			h2Readers.Put(hc.r)
		}
		hc.r, hc.bigRead = nil, false
	}
	hc.fields = nil // the last block's fields, and the strings they hold
	hc.mu.Lock()
	if len(hc.streams) == 0 {
		hc.streams = nil // a map keeps its buckets
	}
	hc.mu.Unlock()
	hc.releaseWriter()
	if hc.c.tls != nil {
		releaseTLSBuffers(hc.c.tls.tc)
	}
}

// releaseWriter gives the write buffer and the h2writer back, when nothing waits to be
// written: the reader before it waits idle, and the last stream as it ends.
func (hc *h2conn) releaseWriter() {
	hc.wmu.Lock()
	if hc.bw != nil && hc.bw.Buffered() == 0 && hc.werr == nil {
		hc.bw.Reset(nil)
		h2OutBufs.Put(hc.bw)
		hc.bw = nil
	}
	if hc.w != nil {
		if !hc.bigWrite {
			hc.w.out.hc = nil
			h2Writers.Put(hc.w)
		}
		hc.w, hc.bigWrite = nil, false
	}
	hc.wmu.Unlock()
}

// h2registry lists an engine's HTTP/2 connections, for the drain.
type h2registry struct {
	mu       sync.Mutex
	conns    map[*h2conn]struct{}
	draining bool
}

var h2regs sync.Map // *Engine → *h2registry

func h2registryOf(e *Engine) *h2registry {
	if v, ok := h2regs.Load(e); ok {
		return v.(*h2registry)
	}
	r := &h2registry{conns: map[*h2conn]struct{}{}}
	v, loaded := h2regs.LoadOrStore(e, r)
	if !loaded {
		go r.watch(e)
	}
	return v.(*h2registry)
}

// watch drains every HTTP/2 connection when the engine drains (reload, upgrade, QUIT).
func (r *h2registry) watch(e *Engine) {
	<-e.drainCh
	r.mu.Lock()
	r.draining = true
	conns := make([]*h2conn, 0, len(r.conns))
	for hc := range r.conns {
		conns = append(conns, hc)
	}
	r.mu.Unlock()
	for _, hc := range conns {
		hc.drain()
	}
}

func (r *h2registry) add(hc *h2conn) {
	r.mu.Lock()
	r.conns[hc] = struct{}{}
	draining := r.draining
	r.mu.Unlock()
	if draining {
		hc.drain()
	}
}

func (r *h2registry) remove(hc *h2conn) {
	r.mu.Lock()
	delete(r.conns, hc)
	r.mu.Unlock()
}

// drain starts a graceful close: the final GOAWAY follows the PING's answer, or a
// second.
func (hc *h2conn) drain() {
	hc.startDrain()
	time.AfterFunc(time.Second, hc.finalGoAway)
}

// h2FlushDelay bounds how long a finished response waits in the write buffer for those
// of the other streams running (see flushEnd).
const h2FlushDelay = 500 * time.Microsecond

// flushEnd flushes the end of a response, under hc.wmu. While other streams run, their
// responses are likely to end within microseconds (h2load -m10, a page's assets), so
// the last one to end flushes them together, in one write (one TLS record) instead of
// one each; a timer flushes within h2FlushDelay if a neighbour takes longer.
func (hc *h2conn) flushEnd() error {
	if hc.running.Load() > 1 && hc.bw != nil && hc.bw.Buffered() < 8<<10 {
		if !hc.flushArmed {
			hc.flushArmed = true
			time.AfterFunc(h2FlushDelay, hc.timedFlush)
		}
		return nil
	}
	return hc.flushLocked()
}

func (hc *h2conn) timedFlush() {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	hc.flushArmed = false
	if hc.werr == nil && hc.bw != nil && hc.bw.Buffered() > 0 {
		hc.flushLocked()
	}
}

// h2NetConn is a parkable connection's socket: closing it takes it back from the
// event loop first (a forced shutdown closes it while it may be parked).
type h2NetConn struct {
	*hijackedConn
	hc *h2conn
}

func (n *h2NetConn) Close() error {
	n.hc.wake()
	return n.hijackedConn.Close()
}

// parkable makes a connection taken from the event loop park there while idle.
func (hc *h2conn) parkable(h *hijackedConn) {
	raw := h.Conn
	if hc.c.tls != nil {
		raw = hc.c.tls.sock.nc
	}
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	fd := -1
	rc.Control(func(u uintptr) { fd = int(u) })
	if fd < 0 {
		return
	}
	nc := &h2NetConn{hijackedConn: h, hc: hc}
	hc.loop, hc.fd, hc.nc = hc.c.lt.l, fd, nc
	hc.e.mu.Lock()
	hc.c.hijackedNC = nc
	hc.e.mu.Unlock()
}

// h2ParkDelay is how long an idle connection keeps its reader goroutine before it
// parks: a busy connection goes idle between bursts of requests for a millisecond or
// less (h2load -m10: after every ten), and parking at once cost each burst a
// deadline, an epoll_ctl and a goroutine hand-off (h2load -c100 -m10 /hello: 1-2 µs
// of CPU per request more). Longer delays leave more goroutines with their stacks in
// the pool after a burst of new connections: 100 ms made an idle h2c connection cost
// 6.7-6.8 KB of RSS (2,000 opened at once), 10 ms 5.9 KB.
const h2ParkDelay = 10 * time.Millisecond

// errH2ParkDue: the connection stayed idle for h2ParkDelay: it may park.
var errH2ParkDue = errors.New("http2: idle, may park")

// awaitFrame waits for the first bytes of the next frame (the wait setReadDeadline
// prepared).
func (hc *h2conn) awaitFrame() error {
	err := hc.rd.fill()
	hc.mu.Lock()
	parkWait := hc.parkWait
	hc.waiting, hc.parkWait = false, false
	if parkWait && err == nil && !hc.closed {
		// The rest of the frame gets the idle deadline.
		hc.applyReadDeadline(true)
	}
	hc.mu.Unlock()
	if parkWait && isTimeout(err) {
		return errH2ParkDue
	}
	return err
}

// park hands an idle connection to the event loop: it reports true when the loop
// watches the socket and the reader must return (the loop, a timer at
// http2_idle_timeout or closeConn runs it again).
func (hc *h2conn) park() bool {
	if hc.loop == nil || hc.rd.buffered() > 0 || hc.c.tls != nil && !tlsDrained(hc.c.tls.tc) {
		return false
	}
	hc.mu.Lock()
	ok := !hc.closed && len(hc.streams) == 0 && len(hc.pending) == 0 && hc.blockID == 0
	if ok {
		hc.waiting = false
	}
	hc.mu.Unlock()
	if !ok {
		return false
	}
	left := max(hc.idleTimeout-h2ParkDelay, 0) // idle since h2ParkDelay
	if hc.idleTimer == nil {
		hc.idleTimer = time.AfterFunc(left, hc.idleExpired)
	} else {
		hc.idleTimer.Reset(left)
	}
	if !hc.loop.watch(hc.fd, hc.resume) {
		hc.idleTimer.Stop()
		return false
	}
	// closeConn may have come between the check and the watch: it found nothing to wake.
	hc.mu.Lock()
	closed := hc.closed
	hc.mu.Unlock()
	if closed && hc.loop.unwatch(hc.fd) {
		return false
	}
	return true
}

// resume runs the reader of a parked connection whose socket became readable; the
// loop's leader calls it.
func (hc *h2conn) resume() { workers.Go(hc.run) }

// idleExpired ends a connection parked for http2_idle_timeout (GOAWAY, then close).
func (hc *h2conn) idleExpired() {
	if hc.loop.unwatch(hc.fd) {
		workers.Go(func() {
			hc.readFailed(os.ErrDeadlineExceeded)
			hc.finish()
		})
	}
}

// wake runs the reader of a parked connection now (idle timeout, closeConn, Close);
// it does nothing if the connection is not parked.
func (hc *h2conn) wake() {
	if hc.loop != nil && hc.loop.unwatch(hc.fd) {
		workers.Go(hc.run)
	}
}
