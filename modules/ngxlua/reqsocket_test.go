package ngxlua_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
)

// ngx.req.socket, after lua-nginx-module's t/067-req-socket.t and
// t/116-raw-req-socket.t.
const reqSocketConf = `
    location "= /body" {
      content_by_lua = <<-LUA
        local sock, err = ngx.req.socket()
        if not sock then
          ngx.say("failed to get the request socket: ", err)
          return
        end
        ngx.say("got the request socket")
        for i = 1, 3 do
          local data, err, part = sock:receive(5)
          if data then
            ngx.say("received: ", data)
          else
            ngx.say("failed to receive: ", err, " [", part, "]")
          end
        end
      LUA
    }
    location "= /bodytimeout" {
      content_by_lua = <<-LUA
        local sock = assert(ngx.req.socket())
        sock:settimeouts(nil, nil, 100)
        local data, err, partial = sock:receive(10)
        ngx.say(err, " [", partial, "]")
      LUA
    }
    location "= /twice" {
      content_by_lua = <<-LUA
        if ngx.var.arg_read then ngx.req.read_body() end
        local sock, err = ngx.req.socket()
        if ngx.var.arg_read then
          ngx.say(tostring(sock), " ", err)
          return
        end
        local sock2, err = ngx.req.socket()
        ngx.say(tostring(sock2), " ", err)
        ngx.req.read_body() -- a no-op: the socket reads the body
        ngx.say(sock:receive("*a"))
        ngx.say(select("#", sock:receive("*a")), " ", select(2, sock:receive(1)))
        ngx.say(pcall(ngx.req.socket, true, 1))
        ngx.say(sock.send, " ", sock.close, " ", sock.setkeepalive)
      LUA
    }
    location "= /multipart" {
      content_by_lua = <<-LUA
        local sock = assert(ngx.req.socket())
        local boundary = ngx.var.http_content_type:match('boundary="(.-)"')
        local read_to_boundary = sock:receiveuntil("\r\n--" .. boundary)
        local read_line = sock:receiveuntil("\r\n", { inclusive = true })
        ngx.say("preamble: [", read_to_boundary(), "]")
        local i = 1
        while true do
          local line = assert(read_line())
          if line == "--\r\n" then
            ngx.say("end")
            break
          end
          while true do
            local h = assert(read_line())
            if h == "\r\n" then break end
            ngx.say("part ", i, " header: [", (h:gsub("\r\n", "")), "]")
          end
          -- the body in pieces of at most 8 bytes
          local body = {}
          while true do
            local data, err = read_to_boundary(8)
            if err then ngx.say("err ", err) return end
            if not data then break end
            body[#body + 1] = data
          end
          ngx.say("part ", i, " body: [", table.concat(body, "|"), "]")
          i = i + 1
        end
        ngx.say("epilogue: ", sock:receive("*a"))
      LUA
    }
    location "= /raw" {
      content_by_lua = <<-LUA
        ngx.status = 101
        ngx.header["Upgrade"] = "mysock"
        ngx.send_headers()
        ngx.flush(true)
        ngx.req.read_body()
        local sock, err = ngx.req.socket(true)
        if not sock then
          ngx.log(ngx.ERR, "server: failed to get raw req socket: ", err)
          return
        end
        local sock2, err = ngx.req.socket(true)
        ngx.log(ngx.WARN, "second raw socket: ", err)
        local ok, err = ngx.say("more")
        ngx.log(ngx.WARN, "say: ", err)
        sock:settimeout(2000)
        local data = assert(sock:receive(5))
        assert(sock:send("1: received: " .. data .. "\n"))
        local line = assert(sock:receive())
        assert(sock:send({"2: received: ", line, "\n"}))
        local any = assert(sock:receiveany(100))
        assert(sock:send("3: received: " .. any .. "\n"))
        sock:settimeout(200)
        local data, err, partial = sock:receive(10)
        sock:send("4: " .. err .. " [" .. partial .. "]\n")
      LUA
    }
    location "= /rawhead" {
      content_by_lua = <<-LUA
        ngx.status = 500 -- never sent: the handler writes its own head
        local sock = assert(ngx.req.socket(true))
        local data = assert(sock:receive(5))
        assert(sock:send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" .. data))
        error("the connection is the handler's: no 500 after this")
      LUA
    }
    location "= /rawexit" {
      content_by_lua = <<-LUA
        local sock = assert(ngx.req.socket(true))
        -- A light thread waits in receive when the handler exits: the exit ends
        -- it, and the connection closes.
        ngx.thread.spawn(function() return sock:receive(10) end)
        assert(sock:send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        ngx.exit(444)
      LUA
    }
    location "= /rawtimeout" {
      content_by_lua = <<-LUA
        ngx.send_headers()
        ngx.flush(true)
        local sock = assert(ngx.req.socket(true))
        sock:settimeout(100)
        local data, err, partial = sock:receive(10)
        ngx.log(ngx.WARN, "server: 1: failed to receive: ", err, ", received: ", partial)
        data, err, partial = sock:receive(10)
        ngx.log(ngx.WARN, "server: 2: failed to receive: ", err, ", received: ", partial)
        ngx.exit(444)
      LUA
    }
    location "= /cosock" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", ngx.var.server_port))
        assert(sock:send("GET /raw HTTP/1.1\r\nHost: localhost\r\nUpgrade: mysock\r\n\r\nhello"))
        local head = assert(sock:receiveuntil("\r\n\r\n")())
        ngx.say(head:match("^HTTP/1.1 %d+"), " ", head:match("Connection: (%w+)"), " ", head:match("Upgrade: (%w+)"))
        ngx.say(sock:receive())
        assert(sock:send("a line\r\n"))
        ngx.say(sock:receive())
        assert(sock:send("any"))
        ngx.say(sock:receive())
        assert(sock:send("short"))
        ngx.say(sock:receive())
        ngx.say(sock:receive())
      LUA
    }`

func TestReqSocketBody(t *testing.T) {
	s := serve(t, "", reqSocketConf)
	check(t, s.Do("POST", "/body", "hello world"), 200,
		"got the request socket\nreceived: hello\nreceived:  worl\nfailed to receive: closed [d]\n")
	check(t, s.Get("/body"), 200, "failed to get the request socket: no body\n")
	check(t, s.Do("POST", "/twice?read=1", "abc"), 200, "nil request body already exists\n")
	check(t, s.Do("POST", "/twice", "the body"), 200,
		"nil request body already exists\nthe body\n2 closed\nfalseexpecting 0 or 1 argument, but got 2\nnil nil nil\n")
	// A chunked body cannot be read this way (net/http sends a body of unknown length
	// chunked).
	raw := s.Raw("POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 5*time.Second)
	if !strings.HasSuffix(raw, "failed to get the request socket: chunked request bodies not supported yet\n") &&
		!strings.Contains(raw, "chunked request bodies not supported yet") {
		t.Errorf("chunked: %q", raw)
	}
	// The socket's read timeout, not client_body_timeout, bounds a read.
	raw = s.Raw("POST /bodytimeout HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", 5*time.Second)
	if !strings.HasPrefix(raw, "HTTP/1.1 200") || !strings.Contains(raw, "timeout [abc]\n") {
		t.Errorf("body read timeout: %q", raw)
	}
	// The client waits for 100 Continue: the first read sends it.
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	if line, _ := br.ReadString('\n'); line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("expect: %q", line)
	}
	br.ReadString('\n')
	io.WriteString(c, "hello world")
	rest, _ := io.ReadAll(br)
	if !strings.HasPrefix(string(rest), "HTTP/1.1 200") || !strings.Contains(string(rest), "failed to receive: closed [d]") {
		t.Errorf("after 100 Continue: %q", rest)
	}
	checkLog(t, s, "lua tcp socket read timed out")
}

func TestReqSocketMultipart(t *testing.T) {
	s := serve(t, "", reqSocketConf)
	body := "This is the preamble.\r\n--simple boundary\r\n\r\nimplicitly typed plain ASCII text.\r\n" +
		"--simple boundary\r\nContent-type: text/plain; charset=us-ascii\r\n\r\nexplicitly typed\r\n\r\n--simple boundary--\r\nthe epilogue."
	check(t, s.Do("POST", "/multipart", body, `Content-Type: multipart/mixed; boundary="simple boundary"`), 200,
		"preamble: [This is the preamble.]\n"+
			"part 1 body: [implicit|ly typed| plain A|SCII tex|t.]\n"+
			"part 2 header: [Content-type: text/plain; charset=us-ascii]\n"+
			"part 2 body: [explicit|ly typed|\r\n]\nend\nepilogue: the epilogue.\n")
	noErrors(t, s)
}

func TestReqSocketRaw(t *testing.T) {
	s := serve(t, "", reqSocketConf)
	// A cosocket of the server's talks to a raw request socket of the server's.
	check(t, s.Get("/cosock"), 200, "HTTP/1.1 101 upgrade mysock\n1: received: hello\n2: received: a line\n3: received: any\n"+
		"4: timeout [short]\nnilclosed\n")
	checkLog(t, s, "second raw socket: duplicate call", "say: raw request socket acquired", "lua tcp socket read timed out")

	// Without a head sent, the handler writes its own; an error after that sends no 500.
	raw := s.Raw("GET /rawhead HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 5*time.Second)
	if raw != "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" {
		t.Errorf("own head: %q", raw)
	}
	checkLog(t, s, "the connection is the handler's: no 500 after this")

	raw = s.Raw("GET /rawexit HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
	if raw != "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
		t.Errorf("exit with a thread waiting: %q", raw)
	}

	// A receive that times out keeps the socket and returns what arrived.
	raw = s.Raw("GET /rawtimeout HTTP/1.1\r\nHost: x\r\n\r\nab", 5*time.Second)
	if !strings.HasPrefix(raw, "HTTP/1.1 200") {
		t.Errorf("timeout: %q", raw)
	}
	checkLog(t, s, "server: 1: failed to receive: timeout, received: ab", "server: 2: failed to receive: timeout, received: ,")
}

// ngx.req.socket is an error in a subrequest and over HTTP/2, as in ngx_lua.
func TestReqSocketRefused(t *testing.T) {
	s := testserver.Start(t, `
http {
  server {
    listen = ["127.0.0.1:0 http2"]
    location "= /sock" {
      content_by_lua = <<-LUA
        local ok, err = pcall(ngx.req.socket, ngx.var.arg_raw == "1")
        ngx.say(ok, " ", err)
      LUA
    }
    location "= /sub" {
      content_by_lua = <<-LUA
        ngx.print(ngx.location.capture("/sock").body)
      LUA
    }
  }
}
`)
	// HTTP/2 in the clear, with prior knowledge.
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	for _, raw := range []string{"0", "1"} {
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post("http://"+s.Addr+"/sock?raw="+raw, "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || !strings.HasSuffix(string(b), "http v2 not supported yet\n") || !strings.HasPrefix(string(b), "false ") {
			t.Errorf("over HTTP/2 (raw %s): %s %q", raw, resp.Proto, b)
		}
	}
	r := s.Get("/sub")
	if !strings.HasPrefix(r.Body, "false ") || !strings.HasSuffix(r.Body, "attempt to read the request body in a subrequest\n") {
		t.Errorf("in a subrequest: %q", r.Body)
	}
}
