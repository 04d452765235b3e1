package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load sends requests continuously over several connections and counts every request
// that does not get a complete 2xx response. Unlike net/http's client it never retries,
// so a reset or an early close shows up as a failure, as it would for a client that
// sent a non-idempotent request.
type Load struct {
	addr, path string
	keepalive  bool
	tls        *tls.Config // nil: plain HTTP
	stop       atomic.Bool
	wg         sync.WaitGroup
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       map[string]int
}

// LoadResult summarises a load run.
type LoadResult struct {
	Requests int64          // answered with 2xx
	Failed   int64          // everything else
	Errors   map[string]int // failures by kind
}

func (r LoadResult) String() string {
	var kinds []string
	for k, n := range r.Errors {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d requests answered, %d failed %v", r.Requests, r.Failed, kinds)
}

// StartLoad starts conns connections sending GET path to addr: over keepalive
// connections, or with a new connection (Connection: close) per request.
func StartLoad(addr, path string, conns int, keepalive bool) *Load {
	return StartTLSLoad(addr, path, conns, keepalive, nil)
}

// StartTLSLoad is StartLoad over TLS with the client configuration tc (plain HTTP if
// nil); each new connection makes a handshake, resumed if tc has a session cache.
func StartTLSLoad(addr, path string, conns int, keepalive bool, tc *tls.Config) *Load {
	l := &Load{addr: addr, path: path, keepalive: keepalive, tls: tc, errs: map[string]int{}}
	for i := 0; i < conns; i++ {
		l.wg.Add(1)
		go l.run()
	}
	return l
}

// Stop ends the load after each connection's current request and returns the result.
func (l *Load) Stop() LoadResult {
	l.stop.Store(true)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	errs := map[string]int{}
	for k, v := range l.errs {
		errs[k] = v
	}
	return LoadResult{Requests: l.ok.Load(), Failed: l.failed.Load(), Errors: errs}
}

// Answered is the number of successful requests so far.
func (l *Load) Answered() int64 { return l.ok.Load() }

func (l *Load) fail(kind string, err error) {
	l.failed.Add(1)
	l.mu.Lock()
	key := kind
	if err != nil {
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		key += ": " + msg
	}
	l.errs[key]++
	l.mu.Unlock()
}

func (l *Load) run() {
	defer l.wg.Done()
	var c net.Conn
	var br *bufio.Reader
	req := "GET " + l.path + " HTTP/1.1\r\nHost: load\r\n\r\n"
	if !l.keepalive {
		req = "GET " + l.path + " HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n"
	}
	for !l.stop.Load() {
		if c == nil {
			var err error
			c, err = net.DialTimeout("tcp", l.addr, 5*time.Second)
			if err == nil && l.tls != nil {
				tc := tls.Client(c, l.tls)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err = tc.Handshake(); err != nil {
					c.Close()
				}
				c = tc
			}
			if err != nil {
				l.fail("connect", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			br = bufio.NewReader(c)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			l.fail("write", err)
			c.Close()
			c = nil
			continue
		}
		status, closeConn, err := readResponse(br)
		if err != nil {
			l.fail("read", err)
			c.Close()
			c = nil
			continue
		}
		if status < 200 || status > 299 {
			l.fail("status "+strconv.Itoa(status), nil)
		} else {
			l.ok.Add(1)
		}
		if closeConn || !l.keepalive {
			c.Close()
			c = nil
		}
	}
	if c != nil {
		c.Close()
	}
}

var errMalformed = errors.New("malformed response")

// readResponse reads one response with a Content-Length or chunked body.
func readResponse(br *bufio.Reader) (status int, closeConn bool, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, false, err
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return 0, false, errMalformed
	}
	status, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, false, errMalformed
	}
	length, chunked := -1, false
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return 0, false, err
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		k, v, _ := strings.Cut(h, ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "content-length":
			length, _ = strconv.Atoi(v)
		case "transfer-encoding":
			chunked = strings.EqualFold(v, "chunked")
		case "connection":
			closeConn = strings.EqualFold(v, "close")
		}
	}
	switch {
	case chunked:
		for {
			sz, err := br.ReadString('\n')
			if err != nil {
				return 0, false, err
			}
			n, err := strconv.ParseInt(strings.TrimSpace(sz), 16, 64)
			if err != nil {
				return 0, false, errMalformed
			}
			if _, err := io.CopyN(io.Discard, br, n+2); err != nil {
				return 0, false, err
			}
			if n == 0 {
				break
			}
		}
	case length >= 0:
		if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
			return 0, false, err
		}
	default:
		io.Copy(io.Discard, br)
		closeConn = true
	}
	return status, closeConn, nil
}
