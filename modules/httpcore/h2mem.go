package httpcore

import (
	"bufio"
	"io"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// What an idle HTTP/2 connection keeps. Its reader goroutine waits for the next
// frame; everything else that a busy connection needs is let go until then: the read
// buffer (h2in reads into a 16-byte array while idle), the write buffer (from a pool,
// taken by the first write), the Framers' frame buffers once they grew past a small
// frame (a new Framer starts empty), crypto/tls's record buffers (releaseTLSBuffers),
// and no goroutine of its own waits for the drain (one per engine, h2registry).

// h2in is the connection's read buffer. A read that may wait goes into an array of 16
// bytes, so that a connection waiting for its next frame holds no buffer; when that
// read fills the array, more is likely waiting in the kernel and the next read goes
// into a pooled 16 KB buffer, kept while reads fill it: a burst of frames costs one
// small read more than a buffer of its own would.
type h2in struct {
	src   io.Reader
	data  []byte // buffered, in buf or small
	buf   *[]byte
	more  bool // the last read filled its buffer
	small [16]byte
}

var h2InBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func (in *h2in) buffered() int { return len(in.data) }

func (in *h2in) Read(p []byte) (int, error) {
	if len(in.data) == 0 {
		if in.buf != nil {
			h2InBufs.Put(in.buf)
			in.buf = nil
		}
		if len(p) >= 4096 {
			return in.src.Read(p) // a large read goes straight to the caller
		}
		b := in.small[:]
		if in.more {
			in.buf = h2InBufs.Get().(*[]byte)
			b = *in.buf
		}
		n, err := in.src.Read(b)
		in.data = b[:n]
		in.more = n == len(b)
		if n == 0 {
			return 0, err
		}
	}
	n := copy(p, in.data)
	in.data = in.data[n:]
	return n, nil
}

// h2out is what the write Framer writes to: the pooled write buffer, taken on demand.
type h2out struct{ hc *h2conn }

var h2OutBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

func (o h2out) Write(p []byte) (int, error) { return o.hc.out().Write(p) }

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

// h2SmallFrame: a Framer that read or wrote a frame larger than this is replaced by a
// new one when the connection goes idle, which lets its buffer go.
const h2SmallFrame = 1024

// newReadFramer makes the read side's Framer.
func (hc *h2conn) newReadFramer() {
	hc.fr = http2.NewFramer(nil, &hc.rd)
	hc.fr.SetReuseFrames()
	hc.fr.SetMaxReadFrameSize(h2MaxFrame)
	hc.bigRead = false
}

// idleRelease lets go of the buffers of a connection with no stream open. The reader
// calls it before it waits for the next frame.
func (hc *h2conn) idleRelease() {
	if hc.bigRead {
		hc.newReadFramer()
	}
	hc.releaseWriter()
	if hc.c.tls != nil {
		releaseTLSBuffers(hc.c.tls.tc)
	}
}

// releaseWriter gives the write buffer back and drops a grown write Framer, when
// nothing waits to be written: the reader before it waits idle, and the last stream
// as it ends.
func (hc *h2conn) releaseWriter() {
	hc.wmu.Lock()
	if hc.bw != nil && hc.bw.Buffered() == 0 && hc.werr == nil {
		hc.bw.Reset(nil)
		h2OutBufs.Put(hc.bw)
		hc.bw = nil
	}
	if hc.bigWrite {
		hc.wfr = http2.NewFramer(h2out{hc}, nil)
		hc.bigWrite = false
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
