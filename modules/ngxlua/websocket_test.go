package ngxlua_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Debian's lua-nginx-websocket (lua-resty-websocket) unmodified: a server on
// ngx.req.socket(true), talked to by a client written here from RFC 6455 and by the
// package's own client (resty.websocket.client, on cosockets).
const websocketConf = `
    location "= /ws" {
      content_by_lua = <<-LUA
        local server = require "nginx.websocket.server"
        local wb, err = server:new({ timeout = 5000, max_payload_len = 65535 })
        if not wb then
          ngx.log(ngx.WARN, "failed to new websocket: ", err)
          return ngx.exit(400)
        end
        while true do
          local data, typ, err = wb:recv_frame()
          if not data then
            ngx.log(ngx.ERR, "failed to receive a frame: ", err)
            return ngx.exit(444)
          end
          if typ == "close" then
            ngx.log(ngx.WARN, "closed by the client: ", err, " ", data)
            assert(wb:send_close(1000, "bye: " .. data))
            return
          elseif typ == "ping" then
            assert(wb:send_pong(data))
          elseif data == "push" then
            -- A light thread sends while the handler waits for the next frame.
            ngx.thread.spawn(function()
              ngx.sleep(0.01)
              assert(wb:send_text("pushed"))
            end)
          elseif typ == "text" or typ == "continuation" then
            assert(wb:send_text("echo " .. typ .. (err == "again" and " more: " or ": ") .. data))
          elseif typ == "binary" then
            assert(wb:send_binary(data:reverse()))
          end
        end
      LUA
    }
    location "= /wsclient" {
      content_by_lua = <<-LUA
        local client = require "nginx.websocket.client"
        local wb = assert(client:new({ timeout = 5000 }))
        local ok, err = wb:connect("ws://127.0.0.1:" .. ngx.var.server_port .. "/ws")
        if not ok then
          ngx.say("failed to connect: ", err)
          return
        end
        assert(wb:send_text("hello"))
        ngx.say(wb:recv_frame())
        assert(wb:send_binary("\1\2\3"))
        local data, typ = wb:recv_frame()
        ngx.say(typ, " ", data:byte(1, -1))
        assert(wb:send_ping("are you there"))
        ngx.say(wb:recv_frame())
        assert(wb:send_close(1000, "done"))
        ngx.say(wb:recv_frame())
        wb:close()
      LUA
    }`

// wsConn is a WebSocket client connection: frames written masked, as a client's.
type wsConn struct {
	c  net.Conn
	br *bufio.Reader
}

func (w *wsConn) write(t *testing.T, fin bool, op byte, payload string) {
	t.Helper()
	b := []byte{op, 0x80}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b[1] |= byte(n)
	case n < 1<<16:
		b[1] |= 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] |= 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, mask[:]...)
	for i := range len(payload) {
		b = append(b, payload[i]^mask[i%4])
	}
	if _, err := w.c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// read reads a frame (a server's: unmasked).
func (w *wsConn) read(t *testing.T) (fin bool, op byte, payload string) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	if h[1]&0x80 != 0 {
		t.Fatalf("the server sent a masked frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var x [2]byte
		io.ReadFull(w.br, x[:])
		n = uint64(binary.BigEndian.Uint16(x[:]))
	case 127:
		var x [8]byte
		io.ReadFull(w.br, x[:])
		n = binary.BigEndian.Uint64(x[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(w.br, p); err != nil {
		t.Fatalf("reading a frame's payload: %v", err)
	}
	return h[0]&0x80 != 0, h[0] & 0x0f, string(p)
}

func wsDial(t *testing.T, addr, path string) (*wsConn, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"+
		"Sec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) ||
		!strings.EqualFold(resp.Header.Get("Connection"), "upgrade") || resp.Header.Get("Upgrade") != "websocket" ||
		resp.Header.Get("Sec-WebSocket-Protocol") != "chat" {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	return &wsConn{c: c, br: br}, resp
}

func TestWebSocketServer(t *testing.T) {
	s := serve(t, "", websocketConf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.ErrorLog())
		}
	})
	ws, _ := wsDial(t, s.Addr, "/ws")
	expect := func(wantOp byte, want string) {
		t.Helper()
		fin, op, p := ws.read(t)
		if !fin || op != wantOp || p != want {
			t.Errorf("got frame fin=%v op=%d %q, want op=%d %q", fin, op, p, wantOp, want)
		}
	}
	ws.write(t, true, 1, "hello")
	expect(1, "echo text: hello")
	ws.write(t, true, 2, "\x01\x02\x03")
	expect(2, "\x03\x02\x01")
	big := strings.Repeat("x", 70000)
	ws.write(t, true, 2, big[:1000])
	expect(2, big[:1000])
	// A fragmented message: lua-resty-websocket returns each fragment.
	ws.write(t, false, 1, "frag1")
	expect(1, "echo text more: frag1")
	ws.write(t, true, 0, "frag2")
	expect(1, "echo continuation: frag2")
	ws.write(t, true, 1, "push")
	expect(1, "pushed")
	ws.write(t, true, 1, "after")
	expect(1, "echo text: after")
	ws.write(t, true, 9, "ping!")
	expect(10, "ping!")
	ws.write(t, true, 8, "\x03\xe8done")
	expect(8, "\x03\xe8bye: done")
	// The handler returned: the server closes the connection.
	if _, err := ws.br.ReadByte(); err != io.EOF {
		t.Errorf("after the close frame: %v, want EOF", err)
	}
	checkLog(t, s, "closed by the client: 1000 done")

	// Not a WebSocket handshake.
	r := s.Get("/ws")
	if r.Status != 400 {
		t.Errorf("plain GET: %d", r.Status)
	}
	checkLog(t, s, `failed to new websocket: bad "upgrade" request header: nil`)
	noErrors(t, s)
}

func TestWebSocketClient(t *testing.T) {
	s := serve(t, "", websocketConf)
	check(t, s.Get("/wsclient"), 200, "echo text: hellotextnil\nbinary 321\nare you therepongnil\nbye: doneclose1000\n")
	checkLog(t, s, "closed by the client: 1000 done")
	noErrors(t, s)
}
