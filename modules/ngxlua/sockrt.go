package ngxlua

/*
#cgo pkg-config: luajit
#include <lua.h>
#include "ngxabi.h"
int spindle_sock_run(lua_State *L);
*/
import "C"

import (
	"unsafe"

	"github.com/spindle-server/spindle/internal/luajit"
)

// registerSockRun makes __sp.sock_run the C function that gives the prelude's
// ngx.socket.tcp the resumed run's number and whether it may make its own handle
// (sockrt.c).
func (e *engine) registerSockRun(s *luajit.State) error {
	return s.RegisterC("__sp.sock_run", unsafe.Pointer(C.spindle_sock_run), unsafe.Pointer(e.rt))
}
