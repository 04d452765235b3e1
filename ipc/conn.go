package ipc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Conn is one end of a control pipe. Send may be called from several goroutines; Recv
// from one.
type Conn struct {
	uc   *net.UnixConn
	wmu  sync.Mutex
	rbuf []byte
	fds  []int // descriptors received but not yet claimed by a frame
	tmp  []byte
	oob  []byte
}

// Pair creates a control pipe: the master's end as a Conn and the worker's end as a raw
// descriptor to hand to the child process (the caller closes it once the child holds
// it). Both ends are close-on-exec.
func Pair() (*Conn, int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, -1, fmt.Errorf("socketpair: %w", err)
	}
	c, err := FromFD(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, -1, err
	}
	return c, fds[1], nil
}

// FromFD wraps an inherited control-pipe descriptor; fd is consumed.
func FromFD(fd int) (*Conn, error) {
	f := os.NewFile(uintptr(fd), "control pipe")
	if f == nil {
		return nil, fmt.Errorf("control pipe: invalid descriptor %d", fd)
	}
	defer f.Close()
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("control pipe: %w", err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("control pipe: descriptor %d is not a unix socket", fd)
	}
	return &Conn{uc: uc}, nil
}

// Send writes one message, with fds passed along (SCM_RIGHTS).
func (c *Conn) Send(m Message, fds ...int) error {
	payload, err := Encode(m)
	if err != nil {
		return err
	}
	frame, err := AppendFrame(nil, Frame{Type: m.Type(), NFDs: len(fds), Payload: payload})
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, _, err := c.uc.WriteMsgUnix(frame, oob, nil)
	if err != nil {
		return err
	}
	// sendmsg on a stream socket may write less than asked; the descriptors went with
	// the first byte, the rest is plain data.
	if n < len(frame) {
		_, err = c.uc.Write(frame[n:])
	}
	return err
}

// Recv reads the next message and the descriptors that came with it. It returns io.EOF
// when the peer closed the pipe between messages.
func (c *Conn) Recv() (Message, []int, error) {
	for {
		f, n, err := ParseFrame(c.rbuf)
		if err != nil {
			return nil, nil, err
		}
		if n > 0 {
			c.rbuf = c.rbuf[n:]
			if len(c.rbuf) == 0 {
				c.rbuf = nil
			}
			if f.NFDs > len(c.fds) {
				return nil, nil, fmt.Errorf("ipc: %v announces %d descriptors, %d arrived", f.Type, f.NFDs, len(c.fds))
			}
			fds := append([]int(nil), c.fds[:f.NFDs]...)
			c.fds = c.fds[f.NFDs:]
			m, err := Decode(f)
			if err != nil {
				closeAll(fds)
				return nil, nil, err
			}
			return m, fds, nil
		}
		if err := c.fill(); err != nil {
			if errors.Is(err, io.EOF) && len(c.rbuf) > 0 {
				return nil, nil, io.ErrUnexpectedEOF
			}
			return nil, nil, err
		}
	}
}

func (c *Conn) fill() error {
	if c.tmp == nil {
		c.tmp = make([]byte, 64<<10)
		c.oob = make([]byte, unix.CmsgSpace(4*MaxFDs))
	}
	n, oobn, _, _, err := c.uc.ReadMsgUnix(c.tmp, c.oob)
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(c.oob[:oobn])
		if perr == nil {
			for i := range msgs {
				if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil {
					c.fds = append(c.fds, fds...)
				}
			}
		}
	}
	if n > 0 {
		c.rbuf = append(c.rbuf, c.tmp[:n]...)
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.EOF
	}
	return err
}

// Close closes the pipe and any descriptors received but never claimed.
func (c *Conn) Close() error {
	closeAll(c.fds)
	c.fds = nil
	return c.uc.Close()
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
