package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"

	"github.com/cloudflare/tableflip"
	"golang.org/x/sys/unix"
)

// socket is one listening socket of one worker slot. The master owns it for as long as
// a generation uses it, so that a worker exiting never closes a socket with
// connections queued on it: they wait for the next worker of the slot.
//
// Sockets are kept as raw descriptors: the master never accepts, and an *os.File would
// put the shared open file description into blocking mode the first time something
// called its Fd method (os/exec does; tableflip PR #60).
type socket struct {
	addr    string
	slot    int
	fd      int
	backlog int
}

func (s *socket) name() string { return "spindle:" + s.addr + ":" + strconv.Itoa(s.slot) }

type sockKey struct {
	addr string
	slot int
}

// sockets is the master's set of listening sockets.
type sockets struct {
	m   map[sockKey]*socket
	upg *tableflip.Upgrader
	// registered names handed to tableflip, to neutralise when a socket closes
	registered map[string]bool
	devnull    *os.File
}

func newSockets(upg *tableflip.Upgrader) *sockets {
	return &sockets{m: map[sockKey]*socket{}, upg: upg, registered: map[string]bool{}}
}

// get returns the socket of addr for slot, inheriting it from the previous master of a
// binary upgrade or creating it.
func (ss *sockets) get(addr string, slot, backlog int) (*socket, error) {
	k := sockKey{addr, slot}
	if s := ss.m[k]; s != nil {
		return s, nil
	}
	s := &socket{addr: addr, slot: slot, backlog: backlog, fd: -1}
	if ss.upg != nil {
		f, err := ss.upg.Fds.File(s.name())
		if err != nil {
			return nil, err
		}
		if f != nil {
			fd, err := rawDup(f)
			f.Close()
			if err != nil {
				return nil, err
			}
			s.fd = fd
			ss.registered[s.name()] = true
		}
	}
	if s.fd < 0 {
		port := ss.samePortAs(addr)
		if port == 0 {
			// SO_REUSEPORT would let this socket join a port another program (or
			// another spindle) listens on, and share its traffic. A plain bind tells.
			if err := probeBind(addr); err != nil {
				return nil, err
			}
		}
		fd, err := listenReusePort(addr, backlog, port)
		if err != nil {
			return nil, err
		}
		s.fd = fd
	}
	ss.m[k] = s
	return s, nil
}

// samePortAs returns the actual port of another slot of addr, for addresses with port
// 0 (tests): all slots of an address must share one port.
func (ss *sockets) samePortAs(addr string) int {
	for k, s := range ss.m {
		if k.addr == addr {
			sa, err := unix.Getsockname(s.fd)
			if err == nil {
				switch a := sa.(type) {
				case *unix.SockaddrInet4:
					return a.Port
				case *unix.SockaddrInet6:
					return a.Port
				}
			}
		}
	}
	return 0
}

// close closes a socket the master no longer needs, and makes sure tableflip's copy
// does not keep it listening (a listening socket nobody accepts on would swallow the
// connections the kernel hashes to it).
func (ss *sockets) close(s *socket) {
	delete(ss.m, sockKey{s.addr, s.slot})
	unix.Close(s.fd)
	if ss.upg != nil && ss.registered[s.name()] {
		if ss.devnull == nil {
			ss.devnull, _ = os.Open(os.DevNull)
		}
		if ss.devnull != nil {
			// tableflip cannot forget a file; replacing it drops its duplicate of the
			// socket, which the collector then closes.
			ss.upg.Fds.AddFile(s.name(), ss.devnull)
			runtime.GC()
		}
		delete(ss.registered, s.name())
	}
}

// register hands every socket to tableflip before a binary upgrade.
func (ss *sockets) register() error {
	for _, s := range ss.m {
		// Wrap a duplicate: an *os.File closes its descriptor when collected.
		dup, err := unix.FcntlInt(uintptr(s.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(dup), s.name())
		err = ss.upg.Fds.AddFile(s.name(), f)
		f.Close()
		if err != nil {
			return err
		}
		ss.registered[s.name()] = true
	}
	return nil
}

func listenReusePort(addr string, backlog, port int) (int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return -1, err
	}
	p, _ := strconv.Atoi(portStr)
	if p == 0 {
		p = port
	}
	ip := net.ParseIP(host)
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip4 := ip.To4(); ip4 != nil {
		a := &unix.SockaddrInet4{Port: p}
		copy(a.Addr[:], ip4)
		sa = a
	} else {
		family = unix.AF_INET6
		a := &unix.SockaddrInet6{Port: p}
		copy(a.Addr[:], ip.To16())
		sa = a
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket() for %s failed: %w", addr, err)
	}
	opts := []struct{ level, opt int }{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR},
		{unix.SOL_SOCKET, unix.SO_REUSEPORT},
	}
	if family == unix.AF_INET6 {
		opts = append(opts, struct{ level, opt int }{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY})
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("setsockopt() for %s failed: %w", addr, err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind() to %s failed: %w", addr, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen() to %s failed: %w", addr, err)
	}
	return fd, nil
}

// probeBind binds addr without SO_REUSEPORT and lets it go: it fails with "address
// already in use" when something else listens there.
func probeBind(addr string) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if portStr == "0" {
		return nil
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", net.JoinHostPort(host, portStr))
	if err != nil {
		return fmt.Errorf("bind() to %s failed: %w", addr, unwrapSyscall(err))
	}
	return ln.Close()
}

func unwrapSyscall(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

// rawDup duplicates the descriptor of f without calling f.Fd (which would switch the
// shared file description to blocking mode).
func rawDup(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	err = rc.Control(func(u uintptr) {
		fd, derr = unix.FcntlInt(u, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err != nil {
		return -1, err
	}
	return fd, derr
}
