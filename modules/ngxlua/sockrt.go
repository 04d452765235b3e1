package ngxlua

/*
#cgo pkg-config: luajit
#include <stdlib.h>
#include <lua.h>
#include "sockrt.h"
*/
import "C"

import (
	"time"
	"unsafe"

	"github.com/spindle-server/spindle/internal/luajit"
)

// sockBuf is sockrt.h's spindle_sockbuf.
type sockBuf = C.spindle_sockbuf

// registerSockRT makes the C functions of sockrt.c the prelude's __sp.sock_run
// (ngx.socket.tcp's handle without calling Go) and __sp.sock_recv (a receive
// answered from a copy of the socket's buffered data: lua-resty-redis reads a
// bulk reply's value and its CRLF with two receives after the one that waited).
func (e *engine) registerSockRT(s *luajit.State) error {
	e.sb = (*sockBuf)(C.calloc(1, C.size_t(unsafe.Sizeof(sockBuf{}))))
	if e.sb == nil {
		panic("out of memory")
	}
	e.sb.rt = e.rt
	if err := s.RegisterC("__sp.sock_run", unsafe.Pointer(C.spindle_sock_run), unsafe.Pointer(e.rt)); err != nil {
		return err
	}
	if err := s.RegisterC("__sp.sock_write", unsafe.Pointer(C.spindle_sock_send), unsafe.Pointer(e.sb)); err != nil {
		return err
	}
	if err := s.RegisterC("__sp.sock_keepalive", unsafe.Pointer(C.spindle_sock_keepalive), unsafe.Pointer(e.sb)); err != nil {
		return err
	}
	return s.RegisterC("__sp.sock_recv", unsafe.Pointer(C.spindle_sock_recv), unsafe.Pointer(e.sb))
}

// freeSockRT frees the sockbuf (the VM is closed).
func (e *engine) freeSockRT() {
	if e.sb != nil {
		C.free(unsafe.Pointer(e.sb.wbuf))
		C.free(unsafe.Pointer(e.sb))
		e.sb = nil
	}
}

// publish leaves a copy of sk's buffered data in the sockbuf for the prelude's
// receive, after a receive that returned a view of the buffer (pushAll), with the
// VM locked. What Lua takes of it, Go takes back (takeBack) before it uses sk's
// buffer again.
func (e *engine) publish(sk *tcpSock) {
	e.takeBack()
	n := sk.w - sk.r
	if n <= 0 || n > C.SPINDLE_SOCKBUF_CAP || sk.run == nil {
		return
	}
	sb := e.sb
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&sb.data[0])), n), sk.buf[sk.r:sk.w])
	sb.off, sb.len, sb.seq, sb.id = 0, C.int(n), C.double(sk.run.seq), C.double(sk.id)
	e.sbSock = sk
}

// publishSend lets the prelude's send write to sk's descriptor (sockrt.c), after a
// connect that left sk on ru's event loop, not TLS, with the VM locked. Until the
// next Go function on a socket (takeBack): sk's state changes only through those.
func (e *engine) publishSend(ru *run, sk *tcpSock) {
	if sk.ls == nil || sk.isTLS || sk.raw == nil || ru.r == nil || sk.ls.Loop() != ru.r.Loop() || sk.writing.Load() {
		return
	}
	e.sb.wfd, e.sb.wseq, e.sb.wid = C.int(sk.ls.FD()), C.double(ru.seq), C.double(sk.id)
}

// takeBack ends the sockbuf's copy: what Lua took of it is consumed from its
// socket's buffer. Every Go function on a socket calls it first (engine.sock).
func (e *engine) takeBack() {
	e.sb.wid = 0
	sk := e.sbSock
	if sk == nil {
		return
	}
	e.sbSock = nil
	e.sb.id = 0
	sk.r = min(sk.r+int(e.sb.off), sk.w)
	if e.sb.kaid != 0 {
		// setkeepalive, answered in C (spindle_sock_keepalive)
		e.sb.kaid = 0
		timeout := sk.conf.keepaliveTimeout
		if e.sb.katimeout >= 0 {
			timeout = time.Duration(float64(e.sb.katimeout) * float64(time.Millisecond))
		}
		e.keepalive(sk, timeout, int(e.sb.kasize))
	}
}
