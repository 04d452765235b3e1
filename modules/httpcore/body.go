package httpcore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ErrBodyTooLarge is returned when the request body exceeds client_max_body_size.
var ErrBodyTooLarge = errors.New("request body too large")

// bodyState tracks a request body: announced on the wire, streamed, or read whole.
type bodyState struct {
	length    int64 // Content-Length; -1 when chunked; 0 without a body
	chunked   bool
	data      []byte
	read      bool     // the whole body was read: into data, or into file
	file      *os.File // the body, when it was larger than client_body_buffer_size
	keepFile  bool     // client_body_in_file_only on: the file outlives the request
	streamed  bool     // handed out as a reader
	done      bool     // nothing of it is left on the connection
	remaining int64
	cr        io.Reader
	expect    bool // the client waits for "100 Continue"
	limit     int64
	err       error
}

// bodyFirstBuffer is the buffer a body of unknown length starts with.
const bodyFirstBuffer = 4 << 10

// readBody reads the main request's body as nginx does: at most
// client_body_buffer_size in memory, the whole body in a temporary file under
// client_body_temp_path when it is larger (or with client_body_in_file_only). Memory
// grows with the data that arrives, never from the declared Content-Length: 200
// bodies of a megabyte trickling in hold a buffer each, not a megabyte each. It
// returns the body in memory; Body reads a body in a file back for the callers that
// need it whole.
func (r *Request) readBody() ([]byte, error) {
	if r.body.read {
		return r.body.data, r.body.err
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
	core := CoreConfOf(r.loc)
	limit := int(max(core.ClientBodyBufferSize, 1))
	rd := r.bodyReader()
	var mem []byte
	if core.ClientBodyInFileOnly == 0 {
		size := bodyFirstBuffer
		if r.body.length > 0 {
			// A body that fits gets a buffer of its size, as nginx allocates, but
			// only as its bytes arrive.
			size = int(min(r.body.length, int64(bodyFirstBuffer)))
		}
		mem = make([]byte, 0, min(size, limit))
		for {
			if len(mem) == cap(mem) {
				if len(mem) >= limit {
					break
				}
				size := min(2*cap(mem), limit)
				if r.body.length > 0 {
					size = int(min(int64(size), r.body.length))
				}
				if size <= len(mem) {
					break
				}
				grown := make([]byte, len(mem), size)
				copy(grown, mem)
				mem = grown
			}
			n, err := rd.Read(mem[len(mem):cap(mem)])
			mem = mem[:len(mem)+n]
			if err == io.EOF {
				r.body.streamed = false
				r.body.data, r.body.read = mem, true
				return mem, nil
			}
			if err != nil {
				return nil, r.failBody(err)
			}
		}
	}
	// Larger than the buffer: the body goes to a temporary file, the part read so far
	// first, then the rest through one buffer.
	f, err := r.bodyTempFile(core)
	if err != nil {
		r.Logf(LogCrit, "%v", err)
		return nil, r.failBody(bodyFileError{err})
	}
	r.body.file, r.body.keepFile = f, core.ClientBodyInFileOnly == 1
	if _, err := f.Write(mem); err != nil {
		r.Logf(LogCrit, "write() to %q failed: %v", f.Name(), err)
		return nil, r.failBody(bodyFileError{err})
	}
	buf := mem[:cap(mem)]
	if len(buf) < limit {
		buf = make([]byte, limit)
	}
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			if _, werr := f.Write(buf[:n]); werr != nil {
				r.Logf(LogCrit, "write() to %q failed: %v", f.Name(), werr)
				return nil, r.failBody(bodyFileError{werr})
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, r.failBody(err)
		}
	}
	r.body.streamed = false
	r.body.data, r.body.read = nil, true
	return nil, nil
}

// bodyFileError is a failure to write a body's temporary file: the server's fault,
// answered with 500 as nginx does, whatever status the reader's handler chose.
type bodyFileError struct{ err error }

func (e bodyFileError) Error() string { return "request body temporary file: " + e.err.Error() }
func (e bodyFileError) Unwrap() error { return e.err }

// isBodyFileError reports whether err is or wraps a bodyFileError. It is a function of
// its own so that the target errors.As needs is allocated only when there is an error
// to look at: declared in Request.finalize, it went to the heap on every request
// (~250 instructions per /hello request, callgrind).
func isBodyFileError(err error) bool {
	var fe bodyFileError
	return errors.As(err, &fe)
}

// failBody records a body read that failed.
func (r *Request) failBody(err error) error {
	r.body.streamed = false
	r.body.err = err
	return err
}

// bodyTempFile creates the temporary file of a request body in client_body_temp_path
// (made when first needed, as the worker's user).
func (r *Request) bodyTempFile(core *CoreConf) (*os.File, error) {
	dir := core.ClientBodyTempPath
	if dir == "" {
		dir = filepath.Join(r.cfg.Main.Prefix, "client_body_temp")
	}
	f, err := os.CreateTemp(dir, "body-")
	if errors.Is(err, fs.ErrNotExist) {
		if merr := os.MkdirAll(dir, 0o700); merr != nil {
			return nil, fmt.Errorf("mkdir() %q failed: %v", dir, merr)
		}
		f, err = os.CreateTemp(dir, "body-")
	}
	if err != nil {
		return nil, fmt.Errorf("open() of a temporary file in %q failed: %v", dir, err)
	}
	return f, nil
}

// bodyWhole returns the whole body read by readBody, from its file when it is in one.
func (r *Request) bodyWhole() ([]byte, error) {
	data, err := r.readBody()
	if err != nil {
		return nil, err
	}
	b := r.mainBody()
	if b.file == nil {
		return data, nil
	}
	return os.ReadFile(b.file.Name())
}

// mainBody is the body state r's body comes from: its own, or its parent's.
func (r *Request) mainBody() *bodyState {
	for r.parent != nil && !r.sub.ownBody {
		r = r.parent
	}
	return &r.body
}

// dropFile closes the body's temporary file and removes it, unless
// client_body_in_file_only on keeps it.
func (b *bodyState) dropFile() {
	if b.file == nil {
		return
	}
	b.file.Close()
	if !b.keepFile {
		os.Remove(b.file.Name())
	}
	b.file = nil
}

func (r *Request) bodyReader() io.Reader {
	if r.body.read || r.parent != nil {
		b, err := r.readBody()
		if err != nil {
			return errReader{err}
		}
		if f := r.mainBody().file; f != nil {
			return io.NewSectionReader(f, 0, 1<<62)
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
	r       *Request
	got     int64
	timeout time.Duration // SetReadTimeout's, in place of client_body_timeout
}

// SetReadTimeout bounds each following Read of the body by d instead of
// client_body_timeout (ngx_lua's request socket reads with its own timeouts); as
// with client_body_timeout, a read that times out ends the body.
func (w *wireBody) SetReadTimeout(d time.Duration) { w.timeout = d }

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
	if w.timeout > 0 {
		c.t.setReadTimeout(w.timeout)
	} else {
		c.t.setReadTimeout(core.ClientBodyTimeout)
	}
	var n int
	var err error
	if b.chunked {
		if b.cr == nil {
			b.cr = &chunkedBody{br: c.reader(), limit: b.limit}
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
		w.r.Logf(LogInfo, "client timed out (110: Connection timed out) while reading client request body")
	}
	return err
}

// errChunkSize is a chunk size line that is not one: nginx answers 400.
var errChunkSize = errors.New("client sent invalid chunked body")

// maxChunkSize is nginx's bound on a chunk size (NGX_MAX_OFF_T_VALUE): 2^63 and more
// is an invalid body at once, not a wait for data that never comes.
const maxChunkSize = 1<<63 - 1

// chunkedBody decodes a chunked request body. Each chunk's size is checked against
// client_max_body_size when its size line arrives, as nginx does, so a body announced
// too large is refused before its data is read.
type chunkedBody struct {
	br      *bufio.Reader
	left    int64 // bytes of the current chunk still to read
	inChunk bool  // a chunk's data (and its CRLF) is being read
	total   int64
	limit   int64 // client_max_body_size, 0: none
}

func (cb *chunkedBody) Read(p []byte) (int, error) {
	for cb.left == 0 {
		if cb.inChunk {
			if err := readCRLF(cb.br); err != nil {
				return 0, err
			}
			cb.inChunk = false
		}
		size, err := readChunkSize(cb.br)
		if err != nil {
			return 0, err
		}
		if size == 0 {
			return 0, io.EOF // the caller reads the trailer
		}
		if cb.limit > 0 && size > cb.limit-cb.total {
			return 0, ErrBodyTooLarge
		}
		cb.total += size
		cb.left, cb.inChunk = size, true
	}
	if int64(len(p)) > cb.left {
		p = p[:cb.left]
	}
	n, err := cb.br.Read(p)
	cb.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// readChunkSize reads a chunk size line: hex digits, optional extensions (ignored).
func readChunkSize(br *bufio.Reader) (int64, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return 0, errChunkSize
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = trimOWS(line)
	if len(line) == 0 {
		return 0, errChunkSize
	}
	var size int64
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, errChunkSize
		}
		if size > maxChunkSize/16 {
			return 0, errChunkSize
		}
		size = size*16 + int64(d)
	}
	return size, nil
}

// readCRLF reads the line end after a chunk's data.
func readCRLF(br *bufio.Reader) error {
	b, err := br.ReadByte()
	if err == nil && b == '\r' {
		b, err = br.ReadByte()
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if b != '\n' {
		return errChunkSize
	}
	return nil
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
