package proxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/upstream"
)

// tunnel completes an HTTP Upgrade (WebSocket): the upstream's 101 goes to the
// client, then bytes flow both ways until either side closes, or until neither has
// sent anything for proxy_read_timeout, as nginx times out upgraded connections.
func (q *request) tunnel(uc *upConn, h *respHead, p *upstream.Peer, try upstream.Try, t0 time.Time) httpcore.Action {
	r, u := q.r, q.t.up
	r.SetStatus(101)
	nc, rw, err := r.Hijack()
	if err != nil {
		uc.close()
		try.Status, try.Response = 502, time.Since(t0)
		upstream.Record(r, try)
		u.Release(p, false)
		r.Logf(httpcore.LogError, "cannot switch protocols: %v", err)
		return r.Error(502)
	}
	w := rw.Writer
	w.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	for _, f := range h.fields {
		switch strings.ToLower(f.Key) {
		case "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "content-length", "date", "server":
			continue
		}
		w.Write(r.AppendHeaderLine(w.AvailableBuffer(), "response header", f.Key, f.Value))
	}
	w.WriteString("\r\n")
	try.Status = 101
	if err := w.Flush(); err != nil {
		nc.Close()
		uc.close()
		u.Release(p, false)
		try.Response = time.Since(t0)
		upstream.Record(r, try)
		return httpcore.Finished
	}

	idle := q.c.readTimeout
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			nc.Close()
			uc.nc.Close()
		})
	}
	uc.rto = 0 // deadlines are managed here
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pump(uc.nc, uc.br, nc, q.c.sendTimeout, idle, &last)
		closeBoth()
	}()
	pump(nc, rw.Reader, uc.nc, q.c.sendTimeout, idle, &last)
	closeBoth()
	wg.Wait()
	uc.free()
	try.Response = time.Since(t0)
	upstream.Record(r, try)
	u.Release(p, false)
	return httpcore.Finished
}

// pump copies from src (reading through br, which may hold bytes already read from
// srcConn) to dst. A read that waits for idle ends the tunnel only if the other
// direction was idle as well.
func pump(srcConn net.Conn, br *bufio.Reader, dst net.Conn, sendTimeout, idle time.Duration, last *atomic.Int64) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		if br.Buffered() == 0 && idle > 0 { // 0: no timeout, as everywhere in the proxy
			srcConn.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := br.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if sendTimeout > 0 {
				dst.SetWriteDeadline(time.Now().Add(sendTimeout))
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if isTimeout(err) && time.Since(time.Unix(0, last.Load())) < idle {
				continue
			}
			if err != io.EOF {
				return
			}
			return
		}
	}
}
