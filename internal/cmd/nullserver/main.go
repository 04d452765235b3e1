// Command nullserver is the least an HTTP/1.1 keepalive server can do per request on
// Linux: an edge-triggered epoll loop on one thread that answers every read with one
// write of a canned response, parsing nothing (a read is taken to hold one whole
// request, which is true of wrk's). `scripts/bench.sh ceiling` runs it beside nginx
// and spindle on /hello: what it reaches over nginx's rate is about the most any
// server could reach there with the same client on the same machine at that time.
//
// Its system calls are raw (no entersyscall/exitsyscall): through Go's syscall
// wrappers, the runtime's bookkeeping and sysmon's hand-offs around the blocking
// epoll_wait cost it a quarter of its rate, more than the server's own work.
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// response is what nginx answers on the anchor config's /hello, byte for byte in size.
const response = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 22:23:27 GMT\r\n" +
	"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\nhello world\n"

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on (IPv4)")
	flag.Parse()
	err := serve(*addr) // returns only on an error
	fmt.Fprintln(os.Stderr, "nullserver:", err)
	os.Exit(1)
}

func serve(addr string) error {
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("%q: want an IPv4 address and port", addr)
	}
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return err
	}
	if err := unix.Bind(ln, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return err
	}
	if err := unix.Listen(ln, 4096); err != nil {
		return err
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ln, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ln)}); err != nil {
		return err
	}
	resp := []byte(response)
	buf := make([]byte, 4096)
	events := make([]unix.EpollEvent, 512)
	for {
		r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), ^uintptr(0), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		n := int(r)
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == ln {
				accept(ep, ln)
				continue
			}
			// As nginx: read until a read comes back short (the socket is drained for
			// this edge) or fails.
			for {
				r, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
				if m := int(r); errno == 0 && m > 0 {
					_, _, errno = unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&resp[0])), uintptr(len(resp)))
					if errno != 0 {
						unix.Close(fd)
						break
					}
					if m < len(buf) {
						break
					}
					continue
				}
				if errno != unix.EAGAIN {
					unix.Close(fd) // EOF or an error
				}
				break
			}
		}
	}
}

func accept(ep, ln int) {
	for {
		c, _, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return
		}
		unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		if unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(c)}) != nil {
			unix.Close(c)
		}
	}
}
