package ngxlua

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/internal/netutil"
)

// ngx.socket.udp: datagram cosockets, as ngx_lua's. setpeername connects the socket
// to a host and port (a name is resolved as the TCP cosockets' connect resolves it,
// waiting with the VM unlocked) or to "unix:/path"; send writes one datagram at
// once (a datagram socket is always writable); receive waits for one datagram, at
// most size bytes (65536 by default and at most). A socket belongs to its run and is
// closed when the run ends. Handles share the numbering of the TCP cosockets.

// maxDatagram is ngx_lua's UDP_MAX_DATAGRAM_SIZE.
const maxDatagram = 65536

type udpSock struct {
	id      int
	run     *run
	conf    *sockConf
	conn    net.Conn // nil until setpeername, and after close
	timeout time.Duration
	local   net.IP      // bind's address: the next setpeername binds to it
	busy    atomic.Bool // a setpeername or receive waits
}

// unixAutobind numbers the abstract addresses datagram unix sockets bind to, so
// that their peers can answer (ngx_lua autobinds them).
var unixAutobind atomic.Uint64

func (sk *udpSock) readTimeout() time.Duration {
	if sk.timeout > 0 {
		return sk.timeout
	}
	return sk.conf.readTimeout
}

func (sk *udpSock) logErr(format string, args ...any) {
	(&tcpSock{run: sk.run, conf: sk.conf}).logErr(format, args...)
}

func (sk *udpSock) close() {
	if sk.conn != nil {
		sk.conn.Close()
		sk.conn = nil
	}
}

// refusal is why an operation cannot use the socket now ("" when it can): busy is
// looked at first, since a wait that ended set conn before it cleared busy. op names
// the operation for the error log when the socket is closed, as ngx_lua logs a send
// or receive on a closed socket ("" logs nothing).
func (sk *udpSock) refusal(op string) string {
	if sk.busy.Load() {
		return "socket busy"
	}
	if sk.conn == nil {
		if op != "" {
			sk.logErr("attempt to %s on a closed socket", op)
		}
		return "closed"
	}
	return ""
}

// closeUDP closes what a run left open.
func (e *engine) closeUDP(ru *run) {
	for _, sk := range ru.udps {
		if ru.abandoned && sk.busy.Load() {
			// A killed thread's receive may still use the connection: closing it
			// ends the receive.
			if c := sk.conn; c != nil {
				c.Close()
			}
		} else {
			sk.close()
		}
		delete(e.udps, sk.id)
	}
	ru.udps = nil
}

// udpSock returns the socket of handle argument 0, which must belong to the run.
func (e *engine) udpSock(s *luajit.State) (*run, *udpSock, error) {
	ru, err := e.run()
	if err != nil {
		return nil, nil, err
	}
	sk := e.udps[s.Int(0)]
	if sk == nil || sk.run != ru {
		return nil, nil, errors.New("bad request")
	}
	return ru, sk, nil
}

func (e *engine) udpNew(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if !ru.phase.canYield() {
		return disabled("ngx.socket.udp", ru.phase)
	}
	if e.udps == nil {
		e.udps = map[int]*udpSock{}
	}
	e.nextSock++
	sk := &udpSock{id: e.nextSock, run: ru, conf: &ru.conf.sock}
	e.udps[sk.id] = sk
	ru.udps = append(ru.udps, sk)
	s.PushInt(sk.id)
	return nil
}

// udpSetPeername is sock:setpeername(host, port) or ("unix:/path").
func (e *engine) udpSetPeername(s *luajit.State) error {
	ru, sk, err := e.udpSock(s)
	if err != nil {
		return err
	}
	if sk.busy.Load() {
		return fail(s, "socket busy")
	}
	n := s.N()
	if n != 2 && n != 3 {
		return errors.New("ngx.socket.udp setpeername: expecting 2 or 3 arguments (including the object), but seen " + strconv.Itoa(n))
	}
	host := s.String(1)
	network, addr := "udp", ""
	var laddr net.Addr
	if p, ok := strings.CutPrefix(host, "unix:"); ok && n == 2 {
		network, addr = "unixgram", p
		laddr = &net.UnixAddr{Net: "unixgram",
			Name: "@spindle-udp-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(unixAutobind.Add(1), 10)}
	} else {
		port := 0
		if n == 3 {
			if s.Type(2) != luajit.TypeNumber && !(s.Type(2) == luajit.TypeString && isNumeric(s.String(2))) {
				return errors.New("bad argument #3 to 'setpeername' (number expected, got " + s.Type(2).String() + ")")
			}
			port = int(s.Number(2))
			if s.Type(2) == luajit.TypeString {
				port, _ = strconv.Atoi(s.String(2))
			}
			if port < 0 || port > 65535 {
				return fail(s, "bad port number: "+strconv.Itoa(port))
			}
		}
		addr = net.JoinHostPort(host, strconv.Itoa(port))
	}
	// Connecting a connected socket closes its connection first, as ngx_lua does.
	sk.close()
	dial := func() []any {
		var conn net.Conn
		var err error
		if laddr != nil {
			conn, err = net.DialUnix(network, laddr.(*net.UnixAddr), &net.UnixAddr{Net: network, Name: addr})
		} else if sk.local != nil {
			d := net.Dialer{Timeout: sk.conf.connectTimeout, LocalAddr: &net.UDPAddr{IP: sk.local}}
			conn, err = d.DialContext(context.Background(), network, addr)
		} else {
			conn, err = netutil.Dial(context.Background(), network, addr, sk.conf.connectTimeout)
		}
		if err != nil {
			return []any{nil, sockErr(err)}
		}
		sk.conn = conn
		return []any{1}
	}
	if network == "unixgram" || net.ParseIP(strings.Trim(host, "[]")) != nil {
		// No name to resolve: connecting a datagram socket does not wait.
		pushAll(s, dial())
		return nil
	}
	sk.busy.Store(true)
	ru.waitFor(s, func() []any {
		defer sk.busy.Store(false)
		return dial()
	})
	return nil
}

// udpSend is sock:send(data) (the prelude flattens tables).
func (e *engine) udpSend(s *luajit.State) error {
	_, sk, err := e.udpSock(s)
	if err != nil {
		return err
	}
	if why := sk.refusal("send data"); why != "" {
		return fail(s, why)
	}
	data := s.Bytes(1)
	n, err := sk.conn.Write(data)
	if err != nil {
		return fail(s, sockErr(err))
	}
	if n != len(data) {
		return fail(s, "partial write")
	}
	s.PushInt(1)
	return nil
}

// udpReceive is sock:receive(size): one datagram.
func (e *engine) udpReceive(s *luajit.State) error {
	ru, sk, err := e.udpSock(s)
	if err != nil {
		return err
	}
	if n := s.N(); n != 1 && n != 2 {
		return errors.New("expecting 1 or 2 arguments (including the object), but got " + strconv.Itoa(n))
	}
	if why := sk.refusal("receive data"); why != "" {
		return fail(s, why)
	}
	conn := sk.conn
	size := maxDatagram
	if s.Type(1) == luajit.TypeNumber {
		size = min(max(s.Int(1), 0), maxDatagram)
	}
	timeout := sk.readTimeout()
	sk.busy.Store(true)
	ru.waitFor(s, func() []any {
		defer sk.busy.Store(false)
		buf := make([]byte, max(size, 1))
		conn.SetReadDeadline(time.Now().Add(timeout))
		n, err := conn.Read(buf)
		if err != nil {
			msg := sockErr(err)
			if msg == "timeout" {
				sk.logErr("lua udp socket read timed out")
			}
			return []any{nil, msg}
		}
		return []any{buf[:min(n, size)]}
	})
	return nil
}

// udpSetTimeout is sock:settimeout(ms): 0 or less restores lua_socket_read_timeout.
func (e *engine) udpSetTimeout(s *luajit.State) error {
	_, sk, err := e.udpSock(s)
	if err != nil {
		return err
	}
	if n := s.N(); n != 2 {
		return errors.New("ngx.socket settimeout: expecting at least 2 arguments (including the object) but seen " + strconv.Itoa(n))
	}
	ms := s.Number(1)
	if s.Type(1) == luajit.TypeString {
		// lua_tonumber's conversion, as ngx_lua reads it.
		ms, _ = strconv.ParseFloat(strings.TrimSpace(s.String(1)), 64)
	}
	sk.timeout = 0
	if ms > 0 {
		sk.timeout = time.Duration(ms * float64(time.Millisecond))
	}
	return nil
}

// udpBind is sock:bind(ip): the local address of the next setpeername.
func (e *engine) udpBind(s *luajit.State) error {
	_, sk, err := e.udpSock(s)
	if err != nil {
		return err
	}
	if n := s.N(); n != 2 {
		return errors.New("expecting 2 arguments, but got " + strconv.Itoa(n))
	}
	ip := net.ParseIP(strings.Trim(s.String(1), "[]"))
	if ip == nil {
		return fail(s, "bad address")
	}
	sk.local = ip
	s.PushInt(1)
	return nil
}

func (e *engine) udpClose(s *luajit.State) error {
	_, sk, err := e.udpSock(s)
	if err != nil {
		return err
	}
	if why := sk.refusal(""); why != "" {
		return fail(s, why)
	}
	sk.close()
	s.PushInt(1)
	return nil
}

func (e *engine) udpFuncs() map[string]luajit.Func {
	return map[string]luajit.Func{
		"udp_new":         e.udpNew,
		"udp_setpeername": e.udpSetPeername,
		"udp_send":        e.udpSend,
		"udp_receive":     e.udpReceive,
		"udp_settimeout":  e.udpSetTimeout,
		"udp_close":       e.udpClose,
		"udp_bind":        e.udpBind,
	}
}
