// Package ipc is the control pipe between the master and each worker: length-prefixed,
// versioned frames over a unix socketpair, in both directions, able to carry file
// descriptors (the listening sockets travel with the config). Malformed input is an
// error, never a panic.
package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the frame format version; a frame of another version is rejected.
const Version = 1

// MaxPayload bounds a frame so that a corrupt length cannot make the reader allocate
// without limit. Config bundles are the largest payloads.
const MaxPayload = 64 << 20

// MaxFDs bounds the descriptors one frame may announce.
const MaxFDs = 1024

const headerLen = 10

var magic = [2]byte{'S', 'P'}

// Frame header layout: magic(2) version(1) type(1) nfds(2) length(4), big endian.

// Errors the decoder returns.
var (
	ErrBadMagic   = errors.New("ipc: bad frame magic")
	ErrVersion    = errors.New("ipc: unsupported frame version")
	ErrTooLarge   = errors.New("ipc: frame payload too large")
	ErrTooManyFDs = errors.New("ipc: frame announces too many descriptors")
)

// Frame is one raw message: its type, payload and the number of descriptors sent with it.
type Frame struct {
	Type    Type
	NFDs    int
	Payload []byte
}

// AppendFrame appends the encoding of f to dst.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	if len(f.Payload) > MaxPayload {
		return dst, ErrTooLarge
	}
	if f.NFDs < 0 || f.NFDs > MaxFDs {
		return dst, ErrTooManyFDs
	}
	var h [headerLen]byte
	h[0], h[1] = magic[0], magic[1]
	h[2] = Version
	h[3] = byte(f.Type)
	binary.BigEndian.PutUint16(h[4:], uint16(f.NFDs))
	binary.BigEndian.PutUint32(h[6:], uint32(len(f.Payload)))
	dst = append(dst, h[:]...)
	return append(dst, f.Payload...), nil
}

// ParseFrame decodes one frame from the start of b. It returns the frame and the number
// of bytes it used, or n == 0 and a nil error when b holds only part of a frame.
func ParseFrame(b []byte) (f Frame, n int, err error) {
	if len(b) >= 1 && b[0] != magic[0] || len(b) >= 2 && b[1] != magic[1] {
		return Frame{}, 0, ErrBadMagic
	}
	if len(b) >= 3 && b[2] != Version {
		return Frame{}, 0, fmt.Errorf("%w %d", ErrVersion, b[2])
	}
	if len(b) < headerLen {
		return Frame{}, 0, nil
	}
	nfds := int(binary.BigEndian.Uint16(b[4:]))
	if nfds > MaxFDs {
		return Frame{}, 0, ErrTooManyFDs
	}
	size := binary.BigEndian.Uint32(b[6:])
	if size > MaxPayload {
		return Frame{}, 0, fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	end := headerLen + int(size)
	if len(b) < end {
		return Frame{}, 0, nil
	}
	payload := make([]byte, size)
	copy(payload, b[headerLen:end])
	return Frame{Type: Type(b[3]), NFDs: nfds, Payload: payload}, end, nil
}

// ReadFrame reads one frame from r. A stream that ends inside a frame gives
// io.ErrUnexpectedEOF; one that ends between frames gives io.EOF.
func ReadFrame(r io.Reader) (Frame, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	if _, _, err := ParseFrame(h[:]); err != nil {
		return Frame{}, err
	}
	size := binary.BigEndian.Uint32(h[6:])
	payload := make([]byte, size)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return Frame{Type: Type(h[3]), NFDs: int(binary.BigEndian.Uint16(h[4:])), Payload: payload}, nil
}
