package httpcore

import (
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
)

// ErrFileTruncated is returned by SendFile when the file ended before the section it
// was asked to send: it shrank while being served.
var ErrFileTruncated = errors.New("file was truncated while being sent")

// sendfileMin is the smallest section SendFile hands to sendfile(2). Smaller ones are
// copied into the output buffer, where they leave with the response header in one
// write (and pipelined responses share writes); above it, the copy costs more than the
// extra write that flushing the header takes.
const sendfileMin = 16 << 10

// copyChunk is how much of a file goes through memory at a time when it cannot be sent
// with sendfile(2), so that a large file is streamed, never read whole.
const copyChunk = 64 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// SendFile sends length bytes of f, starting at offset, as the next part of the
// response body. Announce the body length first (SetContentLength) when it is known.
//
// On a client connection with a socket of its own and no body filters, the header and
// the output buffered so far are flushed and the file goes to the socket with
// sendfile(2), without passing through user space. Otherwise (subrequests, whose output
// is captured; body filters, which must see the data; small sections) the file is read
// in chunks and written as Write would. Nothing is sent when the response has no body
// (HEAD, 304). A file that turns out shorter than offset+length makes SendFile return
// ErrFileTruncated; the connection is then closed after the response, as the client
// was promised more than it got.
func (r *Request) SendFile(f *os.File, offset, length int64) error {
	if r.finished {
		return errResponseFinished
	}
	if !r.headerSent {
		if err := r.SendHeader(); err != nil {
			return err
		}
	}
	if length <= 0 || !bodyAllowed(r) {
		return nil
	}
	c := r.c
	if r.parent != nil || len(r.loc.bfilters) > 0 || c == nil || !c.t.canSendFile() || c.abort || length < sendfileMin {
		return r.copyFile(f, offset, length)
	}
	if err := c.flushOutput(r, false); err != nil {
		return err
	}
	if c.chunked {
		b := c.writer()
		b.Write(strconv.AppendInt(b.AvailableBuffer(), length, 16))
		b.WriteString("\r\n")
	}
	if err := c.flush(); err != nil {
		return c.writeFailed(r, err)
	}
	n, err := c.t.sendFile(f, offset, length)
	r.bodyBytes += n
	if err != nil {
		return c.writeFailed(r, err)
	}
	if n < length {
		c.closeAfter = true
		return ErrFileTruncated
	}
	if c.chunked {
		c.writer().WriteString("\r\n")
	}
	return nil
}

// copyFile sends a file section through the output buffer, in chunks.
func (r *Request) copyFile(f *os.File, offset, length int64) error {
	direct := len(r.loc.bfilters) == 0
	var buf []byte
	if !direct {
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		buf = *bp
	}
	for length > 0 {
		n := int(min(length, copyChunk))
		var m int
		var err error
		if direct {
			// Read straight into the output buffer: no copy besides the read.
			start := len(r.out)
			r.out = slices.Grow(r.out, n)[:start+n]
			m, err = f.ReadAt(r.out[start:], offset)
			r.out = r.out[:start+m]
			if r.parent == nil && len(r.out) >= outputFlushSize {
				if ferr := r.c.flushOutput(r, false); ferr != nil {
					return ferr
				}
			}
		} else {
			m, err = f.ReadAt(buf[:n], offset)
			if m > 0 {
				if _, werr := r.Write(buf[:m]); werr != nil {
					return werr
				}
			}
		}
		offset += int64(m)
		length -= int64(m)
		if m < n {
			if err == nil || err == io.EOF {
				err = ErrFileTruncated
			}
			if r.parent == nil && r.c != nil && r.c.wroteHeader {
				r.c.closeAfter = true
			}
			return err
		}
	}
	return nil
}
