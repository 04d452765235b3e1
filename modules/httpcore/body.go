package httpcore

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http/httputil"
)

// ErrBodyTooLarge is returned when the request body exceeds client_max_body_size.
var ErrBodyTooLarge = errors.New("request body too large")

// bodyState tracks a request body: announced on the wire, streamed, or read whole.
type bodyState struct {
	length    int64 // Content-Length; -1 when chunked; 0 without a body
	chunked   bool
	data      []byte
	read      bool // data holds the whole body
	streamed  bool // handed out as a reader
	done      bool // nothing of it is left on the connection
	remaining int64
	cr        io.Reader
	expect    bool // the client waits for "100 Continue"
	limit     int64
	err       error
}

func (r *Request) readBody() ([]byte, error) {
	if r.body.read {
		return r.body.data, nil
	}
	if r.parent != nil {
		// Subrequests see their parent's body unless given their own.
		if r.sub.ownBody {
			return r.body.data, nil
		}
		return r.parent.readBody()
	}
	if r.body.length == 0 || r.body.done {
		r.body.read = true
		return nil, r.body.err
	}
	if r.body.streamed {
		return nil, errors.New("request body is being streamed")
	}
	var buf bytes.Buffer
	if r.body.length > 0 {
		buf.Grow(int(min(r.body.length, 1<<20)))
	}
	_, err := io.Copy(&buf, r.bodyReader())
	r.body.streamed = false
	if err != nil {
		r.body.err = err
		return nil, err
	}
	r.body.data, r.body.read = buf.Bytes(), true
	return r.body.data, nil
}

func (r *Request) bodyReader() io.Reader {
	if r.body.read || r.parent != nil {
		b, err := r.readBody()
		if err != nil {
			return errReader{err}
		}
		return bytes.NewReader(b)
	}
	r.body.streamed = true
	return &wireBody{r: r}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// wireBody reads the main request's body from the connection, sending 100 Continue
// first when the client asked for it, enforcing client_max_body_size and
// client_body_timeout.
type wireBody struct {
	r   *Request
	got int64
}

func (w *wireBody) Read(p []byte) (int, error) {
	r := w.r
	b := &r.body
	if b.done {
		if b.err != nil {
			return 0, b.err
		}
		return 0, io.EOF
	}
	c := r.c
	if b.expect {
		b.expect = false
		c.writer().WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := c.flush(); err != nil {
			return 0, w.fail(err)
		}
	}
	core := CoreConfOf(r.loc)
	c.t.setReadTimeout(core.ClientBodyTimeout)
	var n int
	var err error
	if b.chunked {
		if b.cr == nil {
			b.cr = httputil.NewChunkedReader(c.reader())
		}
		n, err = b.cr.Read(p)
		if err == io.EOF {
			if terr := skipTrailer(c.reader()); terr != nil {
				return n, w.fail(terr)
			}
			b.done = true
		} else if err != nil {
			return n, w.fail(err)
		}
	} else if b.length < 0 {
		// An HTTP/2 body without content-length: the stream's end ends it.
		n, err = c.reader().Read(p)
		if err == io.EOF {
			b.done = true
		} else if err != nil {
			return n, w.fail(err)
		}
	} else {
		if int64(len(p)) > b.remaining {
			p = p[:b.remaining]
		}
		n, err = c.reader().Read(p)
		b.remaining -= int64(n)
		if b.remaining == 0 {
			b.done = true
			err = io.EOF
		} else if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, w.fail(err)
		}
	}
	w.got += int64(n)
	if b.limit > 0 && w.got > b.limit {
		return n, w.fail(ErrBodyTooLarge)
	}
	return n, err
}

func (w *wireBody) fail(err error) error {
	b := &w.r.body
	b.done, b.err = true, err
	w.r.c.closeAfter = true
	if err == ErrBodyTooLarge {
		w.r.Logf(LogError, "client intended to send too large chunked body")
	} else if isTimeout(err) {
		w.r.Logf(LogInfo, "client timed out reading the request body")
	}
	return err
}

// skipTrailer consumes the trailer section after the last chunk.
func skipTrailer(br *bufio.Reader) error {
	total := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		total += len(line)
		if total > 8192 {
			return errors.New("chunked trailer too large")
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return errors.New("malformed chunked trailer")
		}
		if len(line) == 2 {
			return nil
		}
	}
}

// discardBody drops what is left of the request body so that the connection can carry
// the next request; a large remainder closes the connection instead.
func (c *conn) discardBody(r *Request) {
	b := &r.body
	if b.done || b.length == 0 {
		return
	}
	if c.h2 != nil {
		b.done = true // the stream's end refuses the rest (h2stream.end)
		return
	}
	if b.expect {
		// The client waits for our go-ahead: it never sent the body.
		b.done = true
		c.closeAfter = true
		return
	}
	if !b.chunked && b.remaining > 1<<20 {
		c.closeAfter = true
		return
	}
	n, err := io.Copy(io.Discard, io.LimitReader(&wireBody{r: r}, 1<<20+1))
	if err != nil || n > 1<<20 || !b.done {
		c.closeAfter = true
	}
}
