package httpcore

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spindle-server/spindle/internal/version"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 (RFC 9113), over TLS (ALPN "h2") and in the clear with prior knowledge (h2c),
// on addresses whose listen has the http2 flag.
//
// A connection that speaks HTTP/2 leaves the event loop's connections as a hijacked one
// does (a duplicate of the socket in Go's poller). Its reader, on a goroutine of the
// pool, reads frames with x/net/http2's Framer and decodes header blocks with its hpack.Decoder
// fragment by fragment, so that a header block is bounded before it is complete. Each
// stream becomes a Request on a conn of its own (h2stream is its transport) and runs
// through the same phases as an HTTP/1.1 request, on a coroutine of its own; its
// response head and body go out as HEADERS and DATA frames (conn.flushOutput and
// conn.finishOutput hand over to h2stream.flushOutput and h2stream.finishOutput), and
// its request body is read through the same body API (wireBody over h2stream.Read).
//
// An idle connection (no stream open, no frame begun) has no goroutine: the reader parks
// the socket in the event loop (eventLoop.watch) and returns, and the loop starts it
// again on a goroutine of the pool when the next frame arrives, as it runs an idle
// HTTP/1.1 keepalive connection (h2mem.go).
//
// Handlers start at the end of each batch of frames read together (when the read
// buffer is empty), so that a HEADERS frame followed by its RST_STREAM in the same
// batch (CVE-2023-44487, rapid reset) costs no handler run.
//
// Limits, as nginx 1.22 has them since 1.19.7: the header list of a request is bounded
// by large_client_header_buffers (number × size, decoded, as HPACK's size counts it:
// name + value + 32 per field) and one field by its size; a compressed header block
// (HEADERS and its CONTINUATIONs) larger than the list budget, or with more than
// h2MaxContinuations fragments, closes the connection (CVE-2024-27316).

const (
	h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	// h2ConnWindow is the connection's receive window: with stream windows of 64 KB it
	// bounds what a connection's request bodies hold in memory at once.
	h2ConnWindow   = 1 << 20
	h2StreamWindow = 65535 // RFC 9113's initial window, not changed by our SETTINGS
	h2MaxFrame     = 16384
	// h2MaxContinuations caps the CONTINUATION frames of one header block (nghttp2's
	// NGHTTP2_DEFAULT_MAX_CONTINUATIONS is 8; browsers send one block of a few KB).
	h2MaxContinuations = 32
	// h2FloodPerSecond is how many frames that carry no request (SETTINGS, PING,
	// PRIORITY, RST_STREAM, WINDOW_UPDATE, empty DATA and CONTINUATION) a connection
	// may send in a second beyond one for each DATA frame sent to it; more closes it
	// with ENHANCE_YOUR_CALM.
	h2FloodPerSecond = 1000
	// h2DrainPing is the payload of the PING that separates a drain's two GOAWAYs.
	h2DrainPing = "spdrain!"
)

var (
	errH2StreamReset = errors.New("http2: stream reset")
	errH2Raw         = errors.New("http2: raw write to a stream")
)

// h2conn is one HTTP/2 connection.
type h2conn struct {
	e   *Engine
	c   *conn // the connection as the engine counts it (id, TLS, address)
	nc  net.Conn
	h2c bool
	rd  h2in
	r   *h2reader // the read Framer, while busy (h2mem.go)
	// bigRead, bigWrite: a Framer handled a large frame (h2mem.go)
	bigRead, bigWrite bool
	dec               *hpack.Decoder

	// Writes, from the reader and every stream's coroutine.
	wmu  sync.Mutex
	bw   *bufio.Writer
	w    *h2writer // the write Framer and encoder, while busy (h2mem.go)
	werr error

	mu          sync.Mutex
	cond        *sync.Cond
	streams     map[uint32]*h2stream
	lastID      uint32 // highest stream the client opened
	goAwayID    uint32 // after the final GOAWAY: streams above it are ignored
	goingAway   bool
	drainSent   bool
	closed      bool
	sendConn    int64        // connection send window
	sendConnMax int64        // the largest it has been
	peerWin     int64        // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame   int          // the client's SETTINGS_MAX_FRAME_SIZE
	connUnacked int64        // bytes consumed, not yet returned with WINDOW_UPDATE
	recvConn    int64        // how much the client may still send on the connection
	served      int          // streams started
	running     atomic.Int32 // streams whose handler runs
	flushArmed  bool         // a coalesced flush is due (h2mem.go); under wmu

	// Parking (h2mem.go). loop is nil for a connection that never parks; waiting and
	// parkWait are under mu.
	loop      *eventLoop
	fd        int         // the socket, as the loop watches it
	idleTimer *time.Timer // ends a parked connection at http2_idle_timeout
	waiting   bool        // the reader waits for the next frame
	parkWait  bool        // for h2ParkDelay: if nothing comes, the connection parks

	// Reader goroutine only.
	pending   []*h2stream // streams to start at the end of the batch
	blockID   uint32      // stream of the header block being read (0: none)
	blockEnd  bool        // its HEADERS had END_STREAM
	blockLen  int
	blockCont int
	fields    []hpack.HeaderField
	listSize  int
	tooBig    bool
	badField  bool
	trailer   bool // the block is a trailer section
	// blockClosed: the block came on a half-closed (remote) stream
	blockClosed bool
	blockDrop   bool // the block came on a stream we reset

	// Limits.
	maxStreams  int
	maxRequests int // keepalive_requests: streams a connection may open
	maxField    int
	maxList     int
	recvTimeout time.Duration
	idleTimeout time.Duration
	sendTimeout time.Duration

	// Abuse accounting.
	opened, resets int
	floodSec       int64
	flood          int
	dataSent       atomic.Int64
}

// h2stream is a stream: the transport of its request's conn.
type h2stream struct {
	hc *h2conn
	id uint32
	c  *conn

	// Under hc.mu.
	sendWin    int64
	sendWinMax int64 // the largest it has been
	recvWin    int64 // how much the client may still send on the stream
	body       []byte
	eof        bool // END_STREAM received
	reset      bool // RST_STREAM sent or received
	peerReset  bool // RST_STREAM received
	ended      bool // our END_STREAM sent
	running    bool
	unacked    int64
	declared   int64 // content-length, -1 without
	got        int64
	timedOut   bool
	rtimeout   time.Duration
	wtimeout   time.Duration
	reqFields  []hpack.HeaderField
	endStream  bool // END_STREAM on the request's HEADERS
}

// h2Eligible reports whether the address takes HTTP/2.
func (c *conn) h2Eligible() bool { return c.as.listen.HTTP2 }

// h2Detect looks for the client connection preface on a plain http2 address (prior
// knowledge): headH2 when it is there, headOK for HTTP/1.x, headWait or headClosed
// while it is incomplete.
func (c *conn) h2Detect() int {
	if c.tls != nil && c.tls.tc.ConnectionState().NegotiatedProtocol == "h2" {
		return headH2 // ALPN chose h2: anything but the preface closes the connection
	}
	br := c.reader()
	for {
		buf, _ := br.Peek(br.Buffered())
		n := min(len(buf), len(h2Preface))
		if string(buf[:n]) != h2Preface[:n] {
			return headOK
		}
		if n == len(h2Preface) {
			return headH2
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			if err == errWouldBlock {
				return headWait
			}
			return headClosed
		}
	}
}

// takeOverH2 moves a connection out of the event loop for HTTP/2, as Hijack does: it
// returns the net.Conn to serve (nil on failure) with what was buffered before it.
func (c *conn) takeOverH2() (net.Conn, []byte) {
	nc, err := c.t.netConn()
	if err != nil {
		c.abort = true
		c.t.close()
		return nil, nil
	}
	var pre []byte
	if c.br != nil && c.br.Buffered() > 0 {
		b, _ := c.br.Peek(c.br.Buffered())
		pre = append([]byte(nil), b...)
	}
	if c.lt == nil {
		return nc, pre
	}
	c.hijacked = true
	c.hijackRefs.Store(2)
	hc := &hijackedConn{Conn: nc, c: c}
	c.e.mu.Lock()
	c.hijackedNC = hc
	c.e.conns[c] = struct{}{}
	c.e.mu.Unlock()
	c.releaseState()
	c.inLoop = false
	c.owner.Store(ownerGoroutine)
	c.lt.l.handBack(c) // the loop forgets it: one reference
	return hc, pre
}

// serveH2 serves an HTTP/2 connection until it closes; the caller releases c.
func (c *conn) serveH2(nc net.Conn, pre []byte, h2c bool) {
	core := CoreConfOf(c.as.def.root)
	h := h2confOf(c.as.def.root)
	hc := &h2conn{
		e: c.e, c: c, nc: nc, h2c: h2c,
		sendConn:    65535,
		sendConnMax: 65535,
		peerWin:     65535,
		peerFrame:   h2MaxFrame,
		recvConn:    h2ConnWindow,
		maxStreams:  h.MaxConcurrentStreams,
		maxRequests: core.KeepaliveRequests,
		maxField:    core.LargeHeaderBuffer,
		maxList:     core.LargeHeaderBuffer * core.LargeHeaderBuffers,
		recvTimeout: h.RecvTimeout,
		idleTimeout: h.IdleTimeout,
		sendTimeout: core.SendTimeout,
	}
	if hc.recvTimeout == 0 {
		hc.recvTimeout = core.ClientHeaderTimeout
	}
	if hc.idleTimeout == 0 {
		hc.idleTimeout = core.KeepaliveTimeout
	}
	hc.cond = sync.NewCond(&hc.mu)
	hc.rd.src, hc.rd.pre = nc, pre
	if h, ok := nc.(*hijackedConn); ok && c.lt != nil {
		hc.parkable(h)
	}
	hc.dec = hpack.NewDecoder(4096, hc.onField)
	hc.dec.SetMaxStringLength(hc.maxField)
	hc.serve()
}

// serve reads the connection preface, sends the server's, and runs the reader.
func (hc *h2conn) serve() {
	hc.nc.SetReadDeadline(time.Now().Add(hc.recvTimeout))
	var pre [len(h2Preface)]byte
	if _, err := io.ReadFull(&hc.rd, pre[:]); err != nil || string(pre[:]) != h2Preface {
		hc.shutdown()
		return
	}
	hc.writeFrames(func(fr *http2.Framer) error {
		fr.WriteSettings(
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(hc.maxStreams)},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(hc.maxList)},
		)
		return fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	})
	h2registryOf(hc.e).add(hc)
	hc.run()
}

// run is the reader: it reads and handles frames until the connection ends, or until
// it is idle and parks in the event loop, which runs it again on the next frame.
func (hc *h2conn) run() {
	parked := false
	defer func() {
		if p := recover(); p != nil {
			hc.e.cfg.log.Alertf("*%d panic in HTTP/2 connection: %v\n%s", hc.c.id, p, stack())
			parked = false
		}
		if !parked {
			hc.finish()
		}
	}()
	if hc.idleTimer != nil {
		hc.idleTimer.Stop()
	}
	parkDue := false // idle for h2ParkDelay
	for {
		if hc.rd.buffered() == 0 {
			hc.startPending()
			if hc.setReadDeadline(parkDue) {
				hc.idleRelease()
				if parkDue && hc.park() {
					parked = true
					return
				}
			}
			err := hc.awaitFrame()
			parkDue = err == errH2ParkDue
			if parkDue {
				continue
			}
			if err != nil {
				hc.readFailed(err)
				return
			}
		}
		f, err := hc.reader().ReadFrame()
		if err == nil {
			hc.bigRead = hc.bigRead || f.Header().Length > h2SmallFrame
			err = hc.handle(f)
		}
		if err == nil {
			continue
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			hc.resetStream(se.StreamID, se.Code)
			continue
		}
		hc.readFailed(err)
		return
	}
}

// finish ends the connection once its reader is done.
func (hc *h2conn) finish() {
	h2registryOf(hc.e).remove(hc)
	hc.shutdown()
}

// readFailed answers an error that ends the connection.
func (hc *h2conn) readFailed(err error) {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		hc.goAway(http2.ErrCode(ce))
	case err == http2.ErrFrameTooLarge:
		hc.goAway(http2.ErrCodeFrameSize)
	case isTimeout(err):
		hc.mu.Lock()
		idle := len(hc.streams) == 0
		hc.mu.Unlock()
		if idle {
			hc.goAway(http2.ErrCodeNo)
		}
	}
}

// setReadDeadline bounds the wait for the next frame: a header block in progress by
// http2_recv_timeout, an idle connection by h2ParkDelay, then, if it cannot park
// (parkDue), by http2_idle_timeout; with streams running their own timeouts apply.
func (hc *h2conn) setReadDeadline(parkDue bool) (idle bool) {
	// Under hc.mu, as closeConn's and end's deadlines are: the last one set wins.
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.closed {
		return false
	}
	hc.waiting = true
	return hc.applyReadDeadline(parkDue)
}

// applyReadDeadline sets the deadline setReadDeadline describes; under hc.mu.
func (hc *h2conn) applyReadDeadline(parkDue bool) (idle bool) {
	var d time.Duration
	switch {
	case hc.closed:
		return false
	case hc.blockID != 0:
		d = hc.recvTimeout
	case len(hc.streams) == 0:
		d, idle = hc.idleTimeout, true
		if hc.loop != nil && !parkDue && h2ParkDelay < d {
			d, hc.parkWait = h2ParkDelay, true
		}
	}
	if d > 0 {
		hc.nc.SetReadDeadline(time.Now().Add(d))
	} else {
		hc.nc.SetReadDeadline(time.Time{})
	}
	return idle
}

// startDrain sends the first GOAWAY of a graceful close (RFC 9113 §6.8: the largest
// stream identifier, so that requests on their way are still served) and a PING: once
// its answer comes, whatever the client sent before it has arrived, and the final
// GOAWAY names the last stream served.
func (hc *h2conn) startDrain() {
	hc.mu.Lock()
	if hc.drainSent || hc.closed || hc.goingAway {
		// A GOAWAY went out already: its last stream may not grow.
		hc.mu.Unlock()
		return
	}
	hc.drainSent = true
	hc.mu.Unlock()
	hc.writeFrames(func(fr *http2.Framer) error {
		fr.WriteGoAway(1<<31-1, http2.ErrCodeNo, nil)
		return fr.WritePing(false, [8]byte([]byte(h2DrainPing)))
	})
}

// finalGoAway refuses streams above the last one opened; the connection closes when
// the streams it serves are done.
func (hc *h2conn) finalGoAway() {
	hc.mu.Lock()
	if hc.goingAway || hc.closed {
		hc.mu.Unlock()
		return
	}
	hc.goingAway = true
	hc.goAwayID = hc.lastID
	last := hc.lastID
	idle := len(hc.streams) == 0
	hc.mu.Unlock()
	hc.writeFrames(func(fr *http2.Framer) error { return fr.WriteGoAway(last, http2.ErrCodeNo, nil) })
	if idle {
		hc.closeConn()
	}
}

// goAway ends the connection with an error code (the reader returns after it).
func (hc *h2conn) goAway(code http2.ErrCode) {
	hc.mu.Lock()
	last := hc.lastID
	hc.goingAway = true
	hc.mu.Unlock()
	if code != http2.ErrCodeNo && hc.e.cfg.log.Enabled(LogInfo) {
		hc.e.cfg.log.Infof("*%d client sent HTTP/2 connection error %v, client: %s", hc.c.id, code, hc.c.remoteAddr())
	}
	hc.writeFrames(func(fr *http2.Framer) error { return fr.WriteGoAway(last, code, nil) })
}

// closeConn closes the socket: the reader fails and shuts the connection down.
func (hc *h2conn) closeConn() {
	hc.mu.Lock()
	hc.closed = true
	hc.cond.Broadcast()
	hc.nc.SetReadDeadline(time.Now())
	hc.mu.Unlock()
	hc.wake()
}

// shutdown ends the connection: running streams see their writes and reads fail,
// and the connection is released once they are gone.
func (hc *h2conn) shutdown() {
	hc.mu.Lock()
	hc.closed = true
	for _, s := range hc.streams {
		s.reset = true
	}
	sent := hc.goingAway
	hc.cond.Broadcast()
	hc.mu.Unlock()
	hc.wmu.Lock()
	if hc.werr == nil {
		hc.flushOut()
		hc.werr = net.ErrClosed
	} else {
		sent = false // the socket failed: nothing to linger for
	}
	hc.wmu.Unlock()
	if sent {
		hc.linger()
	}
	hc.nc.Close()
}

// h2LingeringTime bounds a lingering close as a whole, as nginx's lingering_time
// (30 s by default) does; lingering_timeout bounds each wait for the client's data.
const h2LingeringTime = 30 * time.Second

// linger shuts the sending side after a GOAWAY and drops what the client still sends
// until it closes (up to lingering_timeout between reads, h2LingeringTime and 1 MB in
// all, as nginx's HTTP/2 lingering close), so that unread data does not turn the close
// into a reset that would destroy the GOAWAY (and responses) in flight. A client whose
// CPU is busy can take seconds to read the GOAWAY: with a fixed 2 s, Go's client on a
// loaded CPU lost requests in reloads 1 s apart ("write: broken pipe" on streams the
// GOAWAY had refused, which it would have sent again).
func (hc *h2conn) linger() {
	nc := hc.nc
	if h, ok := nc.(*h2NetConn); ok {
		nc = h.Conn
	} else if h, ok := nc.(*hijackedConn); ok {
		nc = h.Conn
	}
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	wait := CoreConfOf(hc.c.as.def.root).LingeringTimeout
	end := time.Now().Add(h2LingeringTime)
	var buf [4096]byte
	for total := 0; total < 1<<20; {
		deadline := time.Now().Add(wait)
		if deadline.After(end) {
			deadline = end
		}
		hc.nc.SetReadDeadline(deadline)
		n, err := hc.rd.Read(buf[:])
		total += n
		if err != nil {
			return
		}
	}
}

// writeFrames writes frames and flushes them, under the write lock.
func (hc *h2conn) writeFrames(f func(fr *http2.Framer) error) error {
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	if hc.werr != nil {
		return hc.werr
	}
	err := f(hc.writer().fr)
	if err == nil {
		err = hc.flushOut()
	}
	if err != nil {
		hc.werr = err
		go hc.nc.Close()
	}
	return err
}

func (hc *h2conn) resetStream(id uint32, code http2.ErrCode) {
	hc.mu.Lock()
	if s := hc.streams[id]; s != nil {
		s.reset = true
		hc.dropPending(s)
		hc.cond.Broadcast()
	}
	hc.mu.Unlock()
	hc.writeFrames(func(fr *http2.Framer) error { return fr.WriteRSTStream(id, code) })
}

// dropPending forgets a stream that has not started; under hc.mu.
func (hc *h2conn) dropPending(s *h2stream) {
	if s.running {
		return
	}
	delete(hc.streams, s.id)
	for i, p := range hc.pending {
		if p == s {
			hc.pending = append(hc.pending[:i], hc.pending[i+1:]...)
			break
		}
	}
}

// countFlood counts a frame that carries no request; it reports an error when the
// connection sends too many.
func (hc *h2conn) countFlood() error {
	now := coarseNow().Unix()
	if now != hc.floodSec {
		hc.floodSec, hc.flood = now, 0
		hc.dataSent.Store(0)
	}
	hc.flood++
	if int64(hc.flood) > h2FloodPerSecond+hc.dataSent.Load() {
		hc.e.cfg.log.Infof("*%d http2 flood detected, client: %s", hc.c.id, hc.c.remoteAddr())
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

// handle acts on one frame read.
func (hc *h2conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if err := hc.countFlood(); err != nil {
			return err
		}
		if f.IsAck() {
			return nil
		}
		if err := f.ForeachSetting(hc.applySetting); err != nil {
			return err
		}
		return hc.writeFrames(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
	case *http2.PingFrame:
		if err := hc.countFlood(); err != nil {
			return err
		}
		if f.IsAck() {
			if string(f.Data[:]) == h2DrainPing {
				hc.finalGoAway()
			}
			return nil
		}
		data := f.Data
		return hc.writeFrames(func(fr *http2.Framer) error { return fr.WritePing(true, data) })
	case *http2.HeadersFrame:
		return hc.onHeaders(f)
	case *http2.ContinuationFrame:
		if len(f.HeaderBlockFragment()) == 0 {
			if err := hc.countFlood(); err != nil {
				return err
			}
		}
		return hc.onFragment(f.StreamID, f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.DataFrame:
		return hc.onData(f)
	case *http2.WindowUpdateFrame:
		return hc.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		if err := hc.countFlood(); err != nil {
			return err
		}
		return hc.onReset(f)
	case *http2.PriorityFrame:
		if err := hc.countFlood(); err != nil {
			return err
		}
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
		return nil
	case *http2.GoAwayFrame:
		hc.mu.Lock()
		hc.goingAway = true
		hc.goAwayID = hc.lastID
		idle := len(hc.streams) == 0
		hc.mu.Unlock()
		if idle {
			return io.EOF
		}
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // unknown frame types are ignored
}

func (hc *h2conn) applySetting(s http2.Setting) error {
	if err := s.Valid(); err != nil {
		return err
	}
	switch s.ID {
	case http2.SettingInitialWindowSize:
		hc.mu.Lock()
		defer hc.mu.Unlock()
		delta := int64(s.Val) - hc.peerWin
		for _, st := range hc.streams {
			if st.sendWin+delta > 1<<31-1 {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
			st.sendWin += delta
			st.sendWinMax += delta
		}
		hc.peerWin = int64(s.Val)
		hc.cond.Broadcast()
	case http2.SettingMaxFrameSize:
		hc.mu.Lock()
		hc.peerFrame = int(s.Val)
		hc.mu.Unlock()
	case http2.SettingHeaderTableSize:
		// Our encoder's table is off (h2writer): any size the client allows is enough.
	}
	return nil
}

func (hc *h2conn) onHeaders(f *http2.HeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		// A stream depending on itself (RFC 9113 §5.3.1): the block is still decoded.
		hc.startBlock(id, f.StreamEnded(), false)
		if err := hc.onFragment(id, f.HeaderBlockFragment(), f.HeadersEnded()); err != nil {
			return err
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	hc.mu.Lock()
	s := hc.streams[id]
	last := hc.lastID
	hc.mu.Unlock()
	switch {
	case s != nil:
		// Trailers: they must end the stream.
		hc.mu.Lock()
		closed := s.eof || s.peerReset
		ours := s.reset && !s.peerReset
		hc.mu.Unlock()
		if ours {
			// We reset it: a block on its way is decoded for HPACK's sake and dropped.
			hc.startBlock(id, true, true)
			hc.blockDrop = true
			return hc.onFragment(id, f.HeaderBlockFragment(), f.HeadersEnded())
		}
		if closed {
			// Half-closed (remote): the block is decoded for HPACK's sake, then refused.
			hc.startBlock(id, true, true)
			hc.blockClosed = true
			return hc.onFragment(id, f.HeaderBlockFragment(), f.HeadersEnded())
		}
		if !f.StreamEnded() {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		hc.startBlock(id, true, true)
	case id <= last:
		// A closed stream.
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	default:
		hc.mu.Lock()
		hc.lastID = id
		hc.mu.Unlock()
		hc.startBlock(id, f.StreamEnded(), false)
	}
	return hc.onFragment(id, f.HeaderBlockFragment(), f.HeadersEnded())
}

func (hc *h2conn) startBlock(id uint32, end, trailer bool) {
	hc.blockID, hc.blockEnd, hc.trailer = id, end, trailer
	hc.blockLen, hc.blockCont, hc.listSize = 0, 0, 0
	hc.fields = hc.fields[:0]
	hc.tooBig, hc.badField, hc.blockClosed, hc.blockDrop = false, false, false, false
}

// onFragment decodes a fragment of a header block as it arrives: the block's
// compressed size and fragment count are bounded before it ends.
func (hc *h2conn) onFragment(_ uint32, frag []byte, end bool) error {
	hc.blockLen += len(frag)
	hc.blockCont++
	if hc.blockLen > hc.maxList || hc.blockCont > h2MaxContinuations+1 {
		hc.e.cfg.log.Infof("*%d client sent too large HTTP/2 header block, client: %s", hc.c.id, hc.c.remoteAddr())
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	if _, err := hc.dec.Write(frag); err != nil {
		if errors.Is(err, hpack.ErrStringLength) {
			hc.e.cfg.log.Infof("*%d client sent too large header field, client: %s", hc.c.id, hc.c.remoteAddr())
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	if !end {
		return nil
	}
	if err := hc.dec.Close(); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	id := hc.blockID
	hc.blockID = 0
	if hc.blockClosed {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	if hc.blockDrop {
		return nil
	}
	if hc.trailer {
		// Trailers end the body; their fields are not kept (no handler reads them).
		for _, f := range hc.fields {
			if strings.HasPrefix(f.Name, ":") {
				return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
			}
		}
		return hc.endBody(id)
	}
	return hc.openStream(id)
}

// onField collects a decoded header field: the decoded list is bounded (HPACK bomb:
// a few bytes that reference a large table entry again and again).
func (hc *h2conn) onField(f hpack.HeaderField) {
	hc.listSize += len(f.Name) + len(f.Value) + 32
	if hc.listSize > hc.maxList {
		hc.tooBig = true
		return
	}
	if !h2ValidField(f) {
		hc.badField = true
	}
	hc.fields = append(hc.fields, f)
}

// h2ValidField checks a request field (RFC 9113 §8.2): a lowercase token name, or a
// pseudo-header, and a value without CR, LF or NUL; no connection-specific fields.
func h2ValidField(f hpack.HeaderField) bool {
	name := strings.TrimPrefix(f.Name, ":")
	if name == "" || !httpguts.ValidHeaderFieldName(name) || strings.ToLower(name) != name {
		return false
	}
	if !httpguts.ValidHeaderFieldValue(f.Value) {
		return false
	}
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return false
	case "te":
		return f.Value == "trailers"
	}
	return true
}

// openStream makes a stream of a complete request header block; it starts at the
// end of the batch.
func (hc *h2conn) openStream(id uint32) error {
	hc.opened++
	if hc.tooBig {
		hc.mu.Lock()
		hc.lastID = max(hc.lastID, id)
		hc.mu.Unlock()
		hc.e.cfg.log.Infof("*%d client sent too large request header list, client: %s", hc.c.id, hc.c.remoteAddr())
		return hc.simpleResponse(id, 431)
	}
	if hc.badField || !h2ValidPseudo(hc.fields) {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	hc.mu.Lock()
	if hc.goingAway && id > hc.goAwayID {
		hc.mu.Unlock()
		return nil // refused by GOAWAY: the client may retry elsewhere
	}
	if len(hc.streams) >= hc.maxStreams {
		hc.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	s := &h2stream{hc: hc, id: id, sendWin: hc.peerWin, sendWinMax: hc.peerWin, recvWin: h2StreamWindow, declared: -1, eof: hc.blockEnd, endStream: hc.blockEnd}
	s.reqFields = append([]hpack.HeaderField(nil), hc.fields...)
	for _, f := range s.reqFields {
		if f.Name == "content-length" {
			n, err := strconv.ParseInt(f.Value, 10, 64)
			if err != nil || n < 0 {
				hc.mu.Unlock()
				return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
			}
			s.declared = n
		}
	}
	if s.eof && s.declared > 0 {
		hc.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if hc.streams == nil {
		hc.streams = map[uint32]*h2stream{}
	}
	hc.streams[id] = s
	hc.pending = append(hc.pending, s)
	last := hc.maxRequests > 0 && hc.opened >= hc.maxRequests && !hc.goingAway
	if last {
		// keepalive_requests: this stream is the connection's last (nginx's GOAWAY).
		hc.goingAway, hc.goAwayID = true, id
	}
	hc.mu.Unlock()
	if last {
		return hc.writeFrames(func(fr *http2.Framer) error { return fr.WriteGoAway(id, http2.ErrCodeNo, nil) })
	}
	return nil
}

// h2ValidPseudo checks the pseudo-headers of a request: first, each once, the known
// ones, :method, :scheme and a non-empty :path present (RFC 9113 §8.3.1).
func h2ValidPseudo(fields []hpack.HeaderField) bool {
	var method, scheme, path, authority int
	regular := false
	for _, f := range fields {
		if !strings.HasPrefix(f.Name, ":") {
			regular = true
			continue
		}
		if regular {
			return false
		}
		switch f.Name {
		case ":method":
			method++
		case ":scheme":
			scheme++
		case ":path":
			if f.Value == "" {
				return false
			}
			path++
		case ":authority":
			authority++
		default:
			return false
		}
	}
	return method == 1 && scheme == 1 && path == 1 && authority <= 1
}

// simpleResponse answers a stream without running a request (431 for a header list
// over the limit).
func (hc *h2conn) simpleResponse(id uint32, status int) error {
	body := AppendErrorPage(nil, status)
	return hc.writeFrames(func(fr *http2.Framer) error {
		w := hc.writer()
		w.hbuf.Reset()
		w.enc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
		w.enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "text/html"})
		w.enc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(body))})
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: w.hbuf.Bytes(), EndHeaders: true}); err != nil {
			return err
		}
		return fr.WriteData(id, true, body)
	})
}

// startPending starts the handlers of the streams the batch opened and did not reset.
func (hc *h2conn) startPending() {
	hc.mu.Lock()
	p := hc.pending
	hc.pending = nil
	for _, s := range p {
		s.running = true
	}
	hc.running.Add(int32(len(p)))
	hc.served += len(p)
	hc.mu.Unlock()
	for _, s := range p {
		workers.Go(s.run)
	}
}

func (hc *h2conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length) // padding counts against the windows
	hc.mu.Lock()
	if id > hc.lastID {
		hc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
	}
	if n > hc.recvConn {
		hc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	hc.recvConn -= n
	s := hc.streams[id]
	if s == nil || s.eof || s.reset {
		// Closed: the data is dropped, and the connection's window given back.
		hc.connUnacked += n
		hc.mu.Unlock()
		hc.ackConsumed(nil)
		if s != nil && s.reset && !s.peerReset && !s.eof {
			return nil // we reset it: data on its way is dropped
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	if n > s.recvWin {
		hc.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	s.recvWin -= n
	data := f.Data()
	s.got += int64(len(data))
	if pad := n - int64(len(data)); pad > 0 {
		s.unacked += pad
		hc.connUnacked += pad
	}
	s.body = append(s.body, data...)
	end := f.StreamEnded()
	if end {
		s.eof = true
	}
	bad := s.declared >= 0 && (s.got > s.declared || end && s.got != s.declared)
	hc.cond.Broadcast()
	hc.mu.Unlock()
	if bad {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if len(data) == 0 && !end {
		return hc.countFlood()
	}
	return nil
}

// endBody ends a stream's body (trailers).
func (hc *h2conn) endBody(id uint32) error {
	hc.mu.Lock()
	s := hc.streams[id]
	if s != nil {
		s.eof = true
		hc.cond.Broadcast()
	}
	bad := s != nil && s.declared >= 0 && s.got != s.declared
	hc.mu.Unlock()
	if bad {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	return nil
}

// onWindowUpdate opens a send window. An update to a window that our DATA did not
// shrink (at the largest it has been) counts as a flood frame: a client answering our
// DATA sends as many as it likes.
func (hc *h2conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	hc.mu.Lock()
	unprompted := false
	if f.StreamID == 0 {
		unprompted = hc.sendConn >= hc.sendConnMax
		hc.sendConnMax = max(hc.sendConnMax, hc.sendConn+inc)
	} else if s := hc.streams[f.StreamID]; s == nil || s.sendWin >= s.sendWinMax {
		unprompted = true
		if s != nil {
			s.sendWinMax = s.sendWin + inc
		}
	}
	hc.mu.Unlock()
	if unprompted {
		if err := hc.countFlood(); err != nil {
			return err
		}
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if f.StreamID == 0 {
		if hc.sendConn+inc > 1<<31-1 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		hc.sendConn += inc
		hc.cond.Broadcast()
		return nil
	}
	if f.StreamID > hc.lastID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	s := hc.streams[f.StreamID]
	if s == nil {
		return nil
	}
	if s.sendWin+inc > 1<<31-1 {
		return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
	}
	s.sendWin += inc
	hc.cond.Broadcast()
	return nil
}

func (hc *h2conn) onReset(f *http2.RSTStreamFrame) error {
	hc.mu.Lock()
	if f.StreamID > hc.lastID {
		hc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	s := hc.streams[f.StreamID]
	early := false
	if s != nil {
		s.peerReset = true
	}
	if s != nil && !s.ended {
		s.reset = true
		early = true
		hc.dropPending(s)
		hc.cond.Broadcast()
	}
	if early {
		hc.resets++
	}
	calm := hc.resets > 2*hc.maxStreams && hc.resets*4 > hc.opened*3
	hc.mu.Unlock()
	if calm {
		// Rapid reset (CVE-2023-44487): most streams are cancelled as soon as opened.
		hc.e.cfg.log.Infof("*%d client reset too many HTTP/2 streams, client: %s", hc.c.id, hc.c.remoteAddr())
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

// ackConsumed returns consumed bytes to the client's windows (the stream's, if s is
// not nil, and the connection's) once half a window is due, as WINDOW_UPDATE frames.
func (hc *h2conn) ackConsumed(s *h2stream) {
	var connInc, streamInc int64
	hc.mu.Lock()
	if hc.connUnacked >= h2ConnWindow/4 {
		connInc, hc.connUnacked = hc.connUnacked, 0
		hc.recvConn += connInc
	}
	if s != nil && !s.eof && !s.reset && s.unacked >= h2StreamWindow/2 {
		streamInc, s.unacked = s.unacked, 0
		s.recvWin += streamInc
	}
	hc.mu.Unlock()
	if connInc == 0 && streamInc == 0 {
		return
	}
	hc.writeFrames(func(fr *http2.Framer) error {
		if connInc > 0 {
			fr.WriteWindowUpdate(0, uint32(connInc))
		}
		if streamInc > 0 {
			fr.WriteWindowUpdate(s.id, uint32(streamInc))
		}
		return nil
	})
}

// The stream as its conn's transport.

func (s *h2stream) Read(p []byte) (int, error) {
	hc := s.hc
	hc.mu.Lock()
	var timer *time.Timer
	for len(s.body) == 0 && !s.eof && !s.reset && !hc.closed && !s.timedOut {
		if timer == nil && s.rtimeout > 0 {
			timer = time.AfterFunc(s.rtimeout, func() {
				hc.mu.Lock()
				s.timedOut = true
				hc.cond.Broadcast()
				hc.mu.Unlock()
			})
		}
		hc.cond.Wait()
	}
	if timer != nil {
		timer.Stop()
	}
	n := copy(p, s.body)
	s.body = s.body[:copy(s.body, s.body[n:])]
	if len(s.body) == 0 && cap(s.body) > 0 && s.eof {
		s.body = nil
	}
	s.unacked += int64(n)
	hc.connUnacked += int64(n)
	var err error
	switch {
	case n > 0:
	case s.eof:
		err = io.EOF
	case s.timedOut:
		s.timedOut = false
		err = os.ErrDeadlineExceeded
	case s.reset || hc.closed:
		err = errH2StreamReset
	}
	hc.mu.Unlock()
	if n > 0 {
		hc.ackConsumed(s)
	}
	return n, err
}

func (s *h2stream) Write([]byte) (int, error)       { return 0, errH2Raw }
func (s *h2stream) setReadTimeout(d time.Duration)  { s.rtimeout = d }
func (s *h2stream) setWriteTimeout(d time.Duration) { s.wtimeout = d }
func (s *h2stream) canSendFile() bool               { return false }
func (s *h2stream) remoteAddr() string              { return s.hc.c.remoteAddr() }
func (s *h2stream) localAddr() string               { return s.hc.c.localAddr() }
func (s *h2stream) wakeIdle()                       {}
func (s *h2stream) expire()                         {}
func (s *h2stream) linger(time.Duration)            {}
func (s *h2stream) netConn() (net.Conn, error)      { return nil, ErrCannotHijack }
func (s *h2stream) close() error                    { return nil }
func (s *h2stream) sendFile(*os.File, int64, int64) (int64, error) {
	return 0, errors.New("http2: no sendfile")
}

// run serves the stream's request on its coroutine.
func (s *h2stream) run() {
	hc := s.hc
	parent := hc.c
	c := &conn{e: parent.e, t: s, as: parent.as, id: parent.id, tls: parent.tls, h2: s}
	s.c = c
	defer func() {
		if p := recover(); p != nil {
			if c.logPending {
				c.logPending = false
				c.e.writing.Add(-1)
			}
			c.e.cfg.log.Alertf("*%d panic while serving a request: %v\n%s", c.id, p, stack())
			c.abort = true
		}
		s.end()
	}()
	c.acquireState()
	ok := s.prepare()
	c.process(ok)
	c.endRequest()
	c.releaseState()
}

// prepare makes the stream's request, as conn.prepare does for HTTP/1.1.
func (s *h2stream) prepare() bool {
	c := s.c
	e := c.e
	hc := s.hc
	hc.mu.Lock()
	c.requests = hc.served
	hc.mu.Unlock()
	e.requests.Add(1)
	c.state.Store(stateActive)
	e.writing.Add(1)
	hdr := c.hdr
	method, path, authority, ok := s.parseHead(hdr)
	s.reqFields = nil
	if !ok {
		r := c.req
		r.reset()
		r.cfg, r.c, r.main, r.hdr = e.cfg, c, r, hdr
		r.start = time.Now()
		r.method, r.requestURI = method, path
		r.Server = e.cfg.selectServer(c.as.listen.Addr, []byte(authority))
		r.loc = r.Server.root
		return false
	}

	r := c.req
	r.reset()
	r.cfg, r.c, r.main, r.hdr = e.cfg, c, r, hdr
	r.start = time.Now()
	r.method = internMethod(hdr.Method())
	target := hdr.RequestURI()
	p, query, host := splitTarget(target)
	r.requestURI = string(target)
	r.args = string(query)
	if len(host) == 0 {
		host = []byte(authority)
	} else {
		r.absHost = string(host)
	}
	r.Server = e.cfg.selectServer(c.as.listen.Addr, host)
	r.loc = r.Server.root
	core := CoreConfOf(r.Server.root)
	r.body = bodyState{limit: core.ClientMaxBodySize}
	if !s.endStream {
		r.body.length, r.body.remaining = -1, 0
		if s.declared >= 0 {
			r.body.length, r.body.remaining = s.declared, s.declared
		}
	}
	uri, ok := NormalizePath(p)
	if !ok || method == "CONNECT" {
		r.uri = string(p)
		return false
	}
	r.uri = uri
	return true
}

// parseHead gives the stream's fields to the request header the phases read, as the
// HTTP/1.1 head they stand for (the same parser, so the same view of the headers as an
// HTTP/1.1 request's): :authority becomes Host, cookie fields are joined with "; "
// (RFC 9113 §8.2.3). The fields were checked as they were decoded (no CR, LF or NUL).
func (s *h2stream) parseHead(hdr *reqHeader) (method, path, authority string, ok bool) {
	var cookies []string
	bp := h2HeadBufs.Get().(*[]byte)
	defer h2HeadBufs.Put(bp)
	b := (*bp)[:0]
	for _, f := range s.reqFields {
		switch f.Name {
		case ":method":
			method = f.Value
		case ":path":
			path = f.Value
		case ":authority":
			authority = f.Value
		}
	}
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\n"...)
	hostSeen := false
	for _, f := range s.reqFields {
		switch {
		case strings.HasPrefix(f.Name, ":"):
			continue
		case f.Name == "cookie":
			cookies = append(cookies, f.Value)
			continue
		case f.Name == "host":
			if authority != "" {
				continue
			}
			authority, hostSeen = f.Value, true
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if authority != "" && !hostSeen {
		b = append(b, "host: "...)
		b = append(b, authority...)
		b = append(b, "\r\n"...)
	}
	if len(cookies) > 0 {
		b = append(b, "cookie: "...)
		b = append(b, strings.Join(cookies, "; ")...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	*bp = b
	return method, path, authority, hdr.parse(b) == nil
}

// h2HeadBufs hold the HTTP/1.1 form of a stream's head while it is parsed (parse
// copies it).
var h2HeadBufs = sync.Pool{New: func() any { return new([]byte) }}

// end forgets a stream whose request is over: the rest of its body is refused with
// RST_STREAM(NO_ERROR) (RFC 9113 §8.1) and its share of the connection window given
// back.
func (s *h2stream) end() {
	hc := s.hc
	hc.running.Add(-1)
	hc.mu.Lock()
	if !s.ended && !s.reset {
		s.reset = true
		hc.mu.Unlock()
		hc.resetStream(s.id, http2.ErrCodeInternal)
		hc.mu.Lock()
	}
	refuse := !s.eof && !s.reset
	hc.connUnacked += int64(len(s.body))
	s.body = nil
	delete(hc.streams, s.id)
	idle := len(hc.streams) == 0
	closeNow := idle && hc.goingAway
	if idle && !closeNow && !hc.closed {
		if hc.waiting {
			// The reader waits for a frame with no deadline: the idle one now (and
			// first h2ParkDelay's, after which it parks).
			hc.applyReadDeadline(false)
		} else {
			hc.nc.SetReadDeadline(time.Now().Add(hc.idleTimeout))
		}
	}
	hc.cond.Broadcast()
	hc.mu.Unlock()
	if refuse {
		hc.writeFrames(func(fr *http2.Framer) error { return fr.WriteRSTStream(s.id, http2.ErrCodeNo) })
	}
	hc.ackConsumed(nil)
	if closeNow {
		hc.closeConn()
	} else if idle {
		hc.releaseWriter()
	}
}

// flushOutput sends the response head, if not yet sent, and the buffered body.
func (s *h2stream) flushOutput(r *Request, flush bool) error {
	c := s.c
	send := bodyAllowed(r)
	if !c.wroteHeader {
		if err := s.writeHead(r, r.contentLength, false); err != nil {
			return c.writeFailed(r, err)
		}
	}
	if len(r.out) > 0 && send {
		if err := s.writeData(r, r.out, false); err != nil {
			return c.writeFailed(r, err)
		}
	} else if flush {
		// A head without body yet (ngx.flush, echo_flush): DATA flushes itself.
		hc := s.hc
		hc.wmu.Lock()
		err := hc.werr
		if err == nil {
			err = hc.flushLocked()
		}
		hc.wmu.Unlock()
		if err != nil {
			return c.writeFailed(r, err)
		}
	}
	r.out = r.out[:0]
	return nil
}

// finishOutput sends what is left of the response and ends the stream.
func (s *h2stream) finishOutput(r *Request) {
	c := s.c
	if c.abort {
		r.out = r.out[:0]
		return // end resets the stream
	}
	send := bodyAllowed(r)
	var err error
	if !c.wroteHeader {
		n := r.contentLength
		if n < 0 || (send && n != int64(len(r.out))) {
			n = int64(len(r.out))
		}
		if send && len(r.out) > 0 {
			if err = s.writeHead(r, n, false); err == nil {
				err = s.writeData(r, r.out, true)
			}
		} else {
			err = s.writeHead(r, n, true)
		}
	} else if send {
		err = s.writeData(r, r.out, true)
	} else {
		err = s.writeData(r, nil, true)
	}
	if err != nil {
		c.writeFailed(r, err)
	}
	r.out = r.out[:0]
}

// writeHead sends the response head as a HEADERS frame (and CONTINUATIONs).
func (s *h2stream) writeHead(r *Request, n int64, end bool) error {
	hc := s.hc
	c := s.c
	core := CoreConfOf(r.loc)
	c.wroteHeader = true
	hc.wmu.Lock()
	defer hc.wmu.Unlock()
	if hc.werr != nil {
		return hc.werr
	}
	w := hc.writer()
	w.hbuf.Reset()
	enc := w.enc
	enc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(r.status)})
	if core.ServerTokens {
		enc.WriteField(hpack.HeaderField{Name: "server", Value: "spindle/" + version.Version})
	} else {
		enc.WriteField(hpack.HeaderField{Name: "server", Value: "spindle"})
	}
	enc.WriteField(hpack.HeaderField{Name: "date", Value: httpDate()})
	if r.status >= 200 && r.status != 204 && r.status != 304 {
		if ct := r.respHdr.Get("Content-Type"); ct != "" {
			h2WriteField(enc, r, "content-type", ct)
		} else if core.DefaultType != "" {
			h2WriteField(enc, r, "content-type", core.DefaultType)
		}
		if n >= 0 {
			enc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(n, 10)})
		}
	}
	for _, f := range r.respHdr.kv {
		switch strings.ToLower(f.Key) {
		case "content-type", "content-length", "connection", "transfer-encoding", "date", "server",
			"keep-alive", "proxy-connection", "upgrade":
			continue
		}
		h2WriteField(enc, r, f.Key, f.Value)
	}
	block := w.hbuf.Bytes()
	r.headerBytes += int64(len(block))
	hc.bigWrite = hc.bigWrite || len(block) > h2SmallFrame
	hc.mu.Lock()
	maxFrame := hc.peerFrame
	if end {
		s.ended = true
	}
	reset := s.reset
	hc.mu.Unlock()
	if reset {
		return errH2StreamReset
	}
	first := true
	for first || len(block) > 0 {
		chunk := block[:min(len(block), maxFrame)]
		block = block[len(chunk):]
		var err error
		if first {
			err = w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: chunk, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = w.fr.WriteContinuation(s.id, len(block) == 0, chunk)
		}
		if err != nil {
			hc.werr = err
			return err
		}
	}
	if end {
		return hc.flushEnd()
	}
	if !bodyAllowed(r) {
		return hc.flushLocked()
	}
	return nil
}

// h2WriteField encodes a response header field with the bytes that may not appear in
// it %-escaped and logged as HTTP/1.1's header lines are (Request.HeaderField), and the
// name in lowercase, as HTTP/2 requires (RFC 9113 §8.2.1: a value with CR, LF or NUL
// would be malformed, an uppercase name too).
func h2WriteField(enc *hpack.Encoder, r *Request, name, value string) {
	name, value, ok := r.HeaderField("response header", name, value)
	if !ok {
		return
	}
	enc.WriteField(hpack.HeaderField{Name: strings.ToLower(name), Value: value})
}

// flushLocked flushes the write buffer; under hc.wmu.
func (hc *h2conn) flushLocked() error {
	if err := hc.flushOut(); err != nil {
		hc.werr = err
		go hc.nc.Close()
		return err
	}
	return nil
}

// writeData sends body bytes as DATA frames as the windows allow; a client that keeps
// its window shut for send_timeout gets the stream reset.
func (s *h2stream) writeData(r *Request, p []byte, end bool) error {
	hc := s.hc
	timeout := s.wtimeout
	if timeout <= 0 {
		timeout = hc.sendTimeout
	}
	for {
		hc.mu.Lock()
		var n int
		var timer *time.Timer
		for {
			if s.reset || hc.closed {
				hc.mu.Unlock()
				if timer != nil {
					timer.Stop()
				}
				return errH2StreamReset
			}
			if s.timedOut {
				s.timedOut = false
				hc.mu.Unlock()
				hc.resetStream(s.id, http2.ErrCodeCancel)
				r.Logf(LogInfo, "client timed out (send_timeout): the HTTP/2 window stayed closed")
				return os.ErrDeadlineExceeded
			}
			if len(p) == 0 {
				break
			}
			n = min(len(p), hc.peerFrame, int(min(s.sendWin, hc.sendConn)))
			if n > 0 {
				break
			}
			if timer == nil {
				timer = time.AfterFunc(timeout, func() {
					hc.mu.Lock()
					s.timedOut = true
					hc.cond.Broadcast()
					hc.mu.Unlock()
				})
			}
			hc.cond.Wait()
		}
		if timer != nil {
			timer.Stop()
		}
		s.sendWin -= int64(n)
		hc.sendConn -= int64(n)
		last := end && n == len(p)
		if last {
			s.ended = true
		}
		hc.mu.Unlock()
		hc.wmu.Lock()
		err := hc.werr
		if err == nil {
			err = hc.writer().fr.WriteData(s.id, last, p[:n])
			hc.bigWrite = hc.bigWrite || n > h2SmallFrame
			if err == nil && last {
				err = hc.flushEnd()
			} else if err == nil {
				err = hc.flushLocked()
			}
		}
		hc.wmu.Unlock()
		if err != nil {
			return err
		}
		hc.dataSent.Add(1)
		r.bodyBytes += int64(n)
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}
