package ngxlua_test

import (
	"bufio"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Cases in the spirit of t/058-tcp-socket.t, t/065-tcp-socket-timeout.t,
// t/066-socket-receiveuntil.t, t/068-socket-keepalive.t, t/059-unix-socket.t.

// tcpServer is the test TCP server (Test::Nginx's tcp_listen): each connection is
// served by handle; accepted counts connections.
type tcpServer struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func startTCP(t *testing.T, network, addr string, handle func(c net.Conn)) *tcpServer {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{ln: ln}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *tcpServer) port() string { return strconv.Itoa(s.ln.Addr().(*net.TCPAddr).Port) }

// lineServer answers each line with "echo: <line>"; "delay N <text>" answers after N
// ms; "close" closes; "bulk N" sends N bytes then closes.
func lineServer(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "delay":
			ms, _ := strconv.Atoi(f[1])
			time.Sleep(time.Duration(ms) * time.Millisecond) // a slow reply: timeouts are under test
			fmt.Fprintf(c, "echo: %s\r\n", f[2])
		case line == "close":
			return
		case len(f) == 2 && f[0] == "bulk":
			n, _ := strconv.Atoi(f[1])
			c.Write([]byte(strings.Repeat("z", n)))
			return
		case line == "multi":
			c.Write([]byte("part1--boundary--part2--boundary--tail"))
		default:
			fmt.Fprintf(c, "echo: %s\r\n", line)
		}
	}
}

const sockConf = `
    location "= /basic" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        local ok, err = sock:connect("127.0.0.1", tonumber(ngx.var.arg_port))
        if not ok then ngx.say("failed to connect: ", err) return end
        ngx.say("connected: ", ok, " reused: ", sock:getreusedtimes())
        local bytes = sock:send({"hello", " ", {"world", 1}, "\r\n"})
        ngx.say("sent: ", bytes)
        ngx.say("line: ", sock:receive())
        sock:send("abc\n")
        ngx.say("5 bytes: ", sock:receive(5), " rest: ", sock:receive("*l"))
        sock:send("x\n")
        ngx.say("any: ", sock:receiveany(3), sock:receiveany(100))
        sock:send("bulk 10\n")
        ngx.say("all: ", sock:receive("*a"))
        ngx.say("after close: ", select(2, sock:receive()))
        ngx.say("close: ", select(2, sock:close()))
      LUA
    }
    location "= /until" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        sock:settimeout(200)
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        sock:send("multi\n")
        local reader = sock:receiveuntil("--boundary--")
        ngx.say("1: ", reader())
        local incl = sock:receiveuntil("--boundary--", { inclusive = true })
        ngx.say("2: ", incl())
        local data, err, partial = sock:receive(10)
        ngx.say("rest: ", data, " ", err, " ", partial)
      LUA
    }
    location "= /until_size" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        sock:send("multi\n")
        local reader = sock:receiveuntil("--boundary--")
        while true do
          local data, err = reader(2)
          if not data then ngx.say("end: ", tostring(err)) break end
          ngx.say("chunk: ", data)
        end
        ngx.say("next: ", reader())
      LUA
    }
    location "= /timeout" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        sock:settimeout(100)
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        sock:send("delay 300 late\n")
        local data, err, partial = sock:receive()
        ngx.say("1: ", tostring(data), " ", err, " '", partial, "'")
        -- What the receive waited for may still come: not poolable, but still open.
        ngx.say("keepalive: ", sock:setkeepalive())
        sock:settimeouts(1000, 1000, 1000)
        ngx.say("2: ", sock:receive())
        ngx.say("keepalive: ", sock:setkeepalive())
      LUA
    }
    location "= /lazy_timeout" {
      content_by_lua = <<-LUA
        -- The first wait leaves its timer in the loop's heap for 100 ms (a lazy
        -- timer); the second's longer timeout must hold past that time.
        local sock = ngx.socket.tcp()
        sock:settimeout(100)
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        sock:send("first\n")
        ngx.say("1: ", sock:receive())
        sock:settimeout(2000)
        sock:send("delay 300 late\n")
        ngx.say("2: ", sock:receive())
        ngx.say("keepalive: ", sock:setkeepalive())
      LUA
    }
    location "= /refused" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        local ok, err = sock:connect("127.0.0.1", tonumber(ngx.var.arg_port))
        ngx.say(tostring(ok), " ", err)
        ok, err = ngx.socket.tcp():connect("no-such-host.invalid", 80)
        ngx.say(tostring(ok), " ", err:find("could not be resolved") ~= nil)
        ngx.say(select(2, sock:send("x")))
      LUA
    }
    location "= /keepalive" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", ngx.var.arg_port)) -- a numeric string will do
        ngx.say("reused: ", sock:getreusedtimes())
        sock:send("ping\n")
        ngx.say(sock:receive())
        ngx.say("keepalive: ", sock:setkeepalive())
        ngx.say("after: ", select(2, sock:send("x")))
      LUA
    }
    location "= /pool_named" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port), { pool = "mypool" }))
        ngx.say("reused: ", sock:getreusedtimes())
        sock:setkeepalive(0, 1)
      LUA
    }
    location "= /dubious" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        sock:send("multi\n")
        sock:receive(3)
        ngx.say(sock:setkeepalive())
      LUA
    }
    location "= /unclosed" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        sock:send("ping\n")
        ngx.say(sock:receive())
      LUA
    }
    location "= /unix" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        local ok, err = sock:connect("unix:" .. ngx.var.arg_path)
        if not ok then ngx.say("failed: ", err) return end
        sock:send("over unix\n")
        ngx.say(sock:receive())
        sock:setkeepalive()
      LUA
    }
    location "= /tls" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        local sess, err = sock:sslhandshake(false, "localhost", false)
        ngx.say("handshake: ", tostring(sess), " ", tostring(err))
        sock:send("secure\n")
        ngx.say(sock:receive())
        local ok, err = ngx.socket.tcp():connect("127.0.0.1", tonumber(ngx.var.arg_port))
        ngx.say("reused after keepalive: ", sock:setkeepalive())
      LUA
    }
    location "= /tls_verify" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        local sess, err = sock:sslhandshake(nil, "localhost", true)
        ngx.say(tostring(sess), " ", err:find("handshake failed") ~= nil)
      LUA
    }
    location "= /store" {
      content_by_lua = <<-LUA
        require("store").sock = ngx.socket.tcp()
        ngx.say("stored")
      LUA
    }
    location "= /reuse_other" {
      content_by_lua = <<-LUA
        local sock = require("store").sock
        local ok, err = pcall(sock.connect, sock, "127.0.0.1", 1)
        ngx.say(err:find("bad request") ~= nil)
      LUA
    }
    location "= /keepalive_c" {
      content_by_lua = <<-LUA
        -- setkeepalive after receives that took all (answered in C, pooled by Go
        -- at its next look): the socket is closed, the connection pooled.
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port), { pool = "kac" }))
        sock:send("multi\n")
        local a = sock:receive(5)
        local b = sock:receive(33)
        ngx.say(a, " ", b, " ", sock:setkeepalive(0, 4))
        ngx.say("after: ", select(2, sock:send("x")), " ", select(2, sock:receive()), " ", select(2, sock:getreusedtimes()))
        local again = ngx.socket.tcp()
        assert(again:connect("127.0.0.1", tonumber(ngx.var.arg_port), { pool = "kac" }))
        ngx.say("reused: ", again:getreusedtimes())
        again:send("ping\n")
        ngx.say(again:receive())
        sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port), { pool = "kac2" }))
        sock:send("multi\n")
        sock:receive(5)
        sock:receive(33)
        ngx.say(sock:setkeepalive(0, 4))
        -- pooled when the run waits: another request may take it meanwhile
        ngx.sleep(0.3)
      LUA
    }
    location "= /keepalive_c2" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port), { pool = "kac2" }))
        ngx.say("reused: ", sock:getreusedtimes())
      LUA
    }
    location "= /send_tables" {
      content_by_lua = <<-LUA
        -- Arrays of strings and numbers are joined in C; other tables by the
        -- prelude, which refuses what ngx_lua refuses.
        for _, data in ipairs({{"he", "llo ", 42, " ", 1.5, "\n"}, {0, " ", -7, " ", 99999999999999, " ", 1e14, " ", 2^53, " ", 0.1, "\n"}, {"x", {"y", true}, "\n"}, {"a", [3] = "c"}}) do
          local sock = ngx.socket.tcp()
          assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
          local ok, n = pcall(sock.send, sock, data)
          if ok then ngx.say(n, " ", sock:receive()) else ngx.say(n:match("non%-array table") or n) end
          sock:close()
        end
      LUA
    }
    location "= /lines" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        -- "*l" drops every CR, its line's own and any other; "*L" keeps them.
        sock:send("a\rb\n")
        local l = sock:receive()
        sock:send("c\rd\n")
        local L = sock:receive("*L")
        ngx.say(#l, " ", l, " ", #L, " ", (L:gsub("\r", "<CR>"):gsub("\n", "<LF>")))
        -- A result that waited (the reply comes late) stays the same after the
        -- socket's buffer is read again.
        sock:send("delay 50 first\n")
        local first = sock:receive()
        sock:send("second\n")
        local second = sock:receive()
        ngx.say(first, " ", second)
      LUA
    }
    location "= /stale_keep" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        sock:settimeout(1000)
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        require("store").old = sock
        local unconnected = ngx.socket.tcp()
        unconnected:settimeout(1000)
        require("store").unconnected = unconnected
        ngx.say("kept")
      LUA
    }
    location "= /stale_use" {
      content_by_lua = <<-LUA
        -- The socket this run makes may be the one the last run left (engine.freeSock):
        -- the last run's handles reach neither.
        local sock = ngx.socket.tcp()
        sock:settimeout(1000)
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        local store = require("store")
        for _, name in ipairs({"old", "unconnected"}) do
          local old = store[name]
          local ok, err = pcall(old.send, old, "stale\n")
          ngx.say(name, " send: ", ok, " ", tostring(err):find("bad request", 1, true) ~= nil)
          ok, err = pcall(old.receive, old)
          ngx.say(name, " receive: ", ok, " ", tostring(err):find("bad request", 1, true) ~= nil)
          ok, err = pcall(old.settimeout, old, 10)
          ngx.say(name, " settimeout: ", ok, " ", tostring(err):find("bad request", 1, true) ~= nil)
        end
        sock:send("fresh\n")
        ngx.say(sock:receive())
        -- A socket not connected yet answers as one closed.
        local un = ngx.socket.tcp()
        un:settimeouts(10, nil, 20)
        ngx.say("unconnected: ", select(2, un:send("x")), " ", select(2, un:receive()), " ", select(2, un:getreusedtimes()))
      LUA
    }
    location "= /buffered" {
      content_by_lua = <<-LUA
        -- Receives the buffered data answers (the prelude's, in C: sockrt.c) and
        -- Go's, mixed: the same results, and setkeepalive sees what was taken.
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        sock:send("multi\n")
        local a = sock:receive(5)
        local b, c = sock:receive(12), sock:receive(5)
        ngx.say(a, " ", b, " ", c, " ", sock:setkeepalive())
        sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        sock:send("multi\n")
        a = sock:receive(5)
        ngx.say(a, " ", sock:receive(33), " ", sock:setkeepalive())
        sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        sock:send("one\ntwo\nx\ry\nfour\n")
        local l1 = sock:receive()
        local l2, l3, l4 = sock:receive("*l"), sock:receive(), sock:receive("*L")
        ngx.say(l1, "|", l2, "|", l3, "|", (l4:gsub("\r\n", "<CRLF>")), "|", sock:receive(0) == "", "|", sock:setkeepalive())
        -- Another run (a timer) cannot read a socket of this one, buffered data or not.
        sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        sock:send("multi\n")
        a = sock:receive(5)
        local other
        ngx.timer.at(0, function()
          local ok, err = pcall(sock.receive, sock, 12)
          other = tostring(ok) .. " " .. tostring(tostring(err):find("bad request", 1, true) ~= nil)
        end)
        for _ = 1, 300 do
          if other then break end
          ngx.sleep(0.01)
        end
        ngx.say(other, " ", sock:receive(12))
      LUA
    }
    location "= /duplex" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        local reader = ngx.thread.spawn(function()
          return sock:receive()
        end)
        ngx.sleep(0.05)
        sock:send("from the writer\n")
        local ok, line = ngx.thread.wait(reader)
        ngx.say(ok, " ", line)
      LUA
    }
`

func TestCosocket(t *testing.T) {
	srv := startTCP(t, "tcp", "127.0.0.1:0", lineServer)
	p := srv.port()
	s := serve(t, "", sockConf, testserverFiles(map[string]string{"lua/store.lua": "return {}\n"}))
	check(t, s.Get("/basic?port="+p), 200,
		"connected: 1 reused: 0\nsent: 14\nline: echo: hello world1\n5 bytes: echo: rest:  abc\nany: echo: x\r\n\nall: zzzzzzzzzz\nafter close: closed\nclose: closed\n")
	check(t, s.Get("/until?port="+p), 200, "1: part1\n2: part2--boundary--\nrest: nil timeout tail\n")
	check(t, s.Get("/until_size?port="+p), 200, "chunk: pa\nchunk: rt\nchunk: 1\nend: nil\nnext: part2\n")
	check(t, s.Get("/timeout?port="+p), 200, "1: nil timeout ''\nkeepalive: nilinvalid connection\n2: echo: late\nkeepalive: 1\n")
	check(t, s.Get("/lazy_timeout?port="+p), 200, "1: echo: first\n2: echo: late\nkeepalive: 1\n")

	closed := startTCP(t, "tcp", "127.0.0.1:0", func(net.Conn) {})
	cport := closed.port()
	closed.ln.Close()
	check(t, s.Get("/refused?port="+cport), 200, "nil connection refused\nnil true\nclosed\n")

	ka := startTCP(t, "tcp", "127.0.0.1:0", lineServer)
	check(t, s.Get("/keepalive?port="+ka.port()), 200, "reused: 0\necho: ping\nkeepalive: 1\nafter: closed\n")
	check(t, s.Get("/keepalive?port="+ka.port()), 200, "reused: 1\necho: ping\nkeepalive: 1\nafter: closed\n")
	check(t, s.Get("/keepalive?port="+ka.port()), 200, "reused: 2\necho: ping\nkeepalive: 1\nafter: closed\n")
	if n := ka.accepted.Load(); n != 1 {
		t.Errorf("keepalive: %d connections, want 1", n)
	}
	// A named pool is a pool of its own; pool size 1 with timeout 0 (never expires).
	check(t, s.Get("/pool_named?port="+ka.port()), 200, "reused: 0\n")
	check(t, s.Get("/pool_named?port="+ka.port()), 200, "reused: 1\n")

	// A pooled connection the server closed is noticed at the next connect. The
	// server closes a connection when told to, after the handler pooled it.
	release, closedOne, done := make(chan struct{}), make(chan struct{}, 2), make(chan struct{})
	closer := startTCP(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		br := bufio.NewReader(c)
		br.ReadString('\n')
		c.Write([]byte("bye\n"))
		select {
		case <-release:
			c.Close()
			closedOne <- struct{}{}
		case <-done:
		}
	})
	t.Cleanup(func() { close(done) })
	check(t, s.Get("/keepalive?port="+closer.port()), 200, "reused: 0\nbye\nkeepalive: 1\nafter: closed\n")
	release <- struct{}{}
	<-closedOne
	check(t, s.Get("/keepalive?port="+closer.port()), 200, "reused: 0\nbye\nkeepalive: 1\nafter: closed\n")

	check(t, s.Get("/dubious?port="+p), 200, "nilconnection in dubious state\n")

	// A socket neither closed nor pooled is closed when the handler ends.
	eof := make(chan bool, 1)
	un := startTCP(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		br := bufio.NewReader(c)
		br.ReadString('\n')
		c.Write([]byte("pong\n"))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := br.ReadByte()
		eof <- err == io.EOF
	})
	check(t, s.Get("/unclosed?port="+un.port()), 200, "pong\n")
	select {
	case ok := <-eof:
		if !ok {
			t.Errorf("the socket left open was not closed at the end of the handler")
		}
	case <-time.After(10 * time.Second): // the handler never connected: fail, do not hang
		t.Errorf("the server behind /unclosed never saw its connection end")
	}

	check(t, s.Get("/stale_keep?port="+p), 200, "kept\n")
	check(t, s.Get("/stale_use?port="+p), 200, "old send: false true\nold receive: false true\nold settimeout: false true\n"+
		"unconnected send: false true\nunconnected receive: false true\nunconnected settimeout: false true\n"+
		"echo: fresh\nunconnected: closed closed closed\n")
	check(t, s.Get("/buffered?port="+p), 200, "part1 --boundary-- part2 nilconnection in dubious state\n"+
		"part1 --boundary--part2--boundary--tail 1\n"+
		"echo: one|echo: two|echo: xy|echo: four<CRLF>|true|1\n"+
		"false true --boundary--\n")
	kac := startTCP(t, "tcp", "127.0.0.1:0", lineServer)
	kacDone := make(chan struct{})
	go func() {
		defer close(kacDone)
		check(t, s.Get("/keepalive_c?port="+kac.port()), 200,
			"part1 --boundary--part2--boundary--tail 1\nafter: closed closed closed\nreused: 1\necho: ping\n1\n")
	}()
	// While /keepalive_c sleeps, its second connection is in the pool already.
	for deadline := time.Now().Add(3 * time.Second); ; {
		r := s.Get("/keepalive_c2?port=" + kac.port())
		if r.Body == "reused: 1\n" || time.Now().After(deadline) {
			check(t, r, 200, "reused: 1\n")
			break
		}
	}
	<-kacDone
	check(t, s.Get("/send_tables?port="+p), 200, "13 echo: hello 42 1.5\n49 echo: 0 -7 99999999999999 1e+14 9.007199254741e+15 0.1\n7 echo: xytrue\nnon-array table\n")
	check(t, s.Get("/lines?port="+p), 200, "8 echo: ab 11 echo: c<CR>d<CR><LF>\necho: first echo: second\n")
	check(t, s.Get("/duplex?port="+p), 200, "true echo: from the writer\n")
	check(t, s.Get("/store"), 200, "stored\n")
	check(t, s.Get("/reuse_other"), 200, "true\n")
}

// A send larger than the socket takes at once (the prelude's write in C takes part,
// Go's send the rest, on the loop) arrives whole and in order, and counts it all.
func TestCosocketLargeSend(t *testing.T) {
	srv := startTCP(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		n, _ := strconv.Atoi(strings.TrimSpace(line))
		h := md5.New()
		got, _ := io.CopyN(h, br, int64(n))
		fmt.Fprintf(c, "%d %x\n", got, h.Sum(nil))
	})
	s := serve(t, "", `
    location "= /large" {
      content_by_lua = <<-LUA
        local t = {}
        for i = 1, 1000000 do t[i] = tostring(i) end
        local big = table.concat(t, ",")
        local sock = ngx.socket.tcp()
        sock:settimeout(5000)
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        -- a table, as lua-resty-redis sends: joined in C (sockrt.c)
        ngx.say("sent: ", sock:send(#big .. "\n") > 0, " ", sock:send({big:sub(1, 1000), big:sub(1001)}) == #big)
        local line = sock:receive()
        ngx.say(line == #big .. " " .. ngx.md5(big) or line)
      LUA
    }`)
	check(t, s.Get("/large?port="+srv.port()), 200, "sent: true true\ntrue\n")
}

// A send to a peer that reads nothing waits for room in the socket buffer for the send
// timeout at most, then fails with "timeout" and closes the socket; a thread waiting
// for data that never comes is killed at once, not at its read timeout.
func TestCosocketStalledPeer(t *testing.T) {
	release := make(chan struct{})
	silent := startTCP(t, "tcp", "127.0.0.1:0", func(c net.Conn) { <-release })
	t.Cleanup(func() { close(release) })
	s := serve(t, "", `
    location "= /send_timeout" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        sock:settimeouts(1000, 100, 1000)
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        local big = string.rep("x", 1024 * 1024)
        local t0 = ngx.now()
        local bytes, err
        for i = 1, 64 do
          bytes, err = sock:send(big)
          if not bytes then break end
        end
        ngx.update_time()
        ngx.say(tostring(bytes), " ", err, " ", ngx.now() - t0 < 1)
        ngx.say(select(2, sock:send("x")))
      LUA
    }
    location "= /kill_read" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        sock:settimeout(10000)
        assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        local reader = ngx.thread.spawn(function() return sock:receive() end)
        ngx.sleep(0.05)
        local t0 = ngx.now()
        ngx.say("kill: ", ngx.thread.kill(reader))
        ngx.update_time()
        ngx.say("quick: ", ngx.now() - t0 < 1)
      LUA
    }`)
	start := time.Now()
	check(t, s.Get("/send_timeout?port="+silent.port()), 200, "nil timeout true\nclosed\n")
	check(t, s.Get("/kill_read?port="+silent.port()), 200, "kill: 1\nquick: true\n")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stalled peers took %v", d)
	}
}

// An IPv6 literal connects as IPv4 does (the address is written [::1]:port, as
// net.JoinHostPort), and a refused connect is logged with that address.
func TestCosocketIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	ln.Close()
	srv := startTCP(t, "tcp", "[::1]:0", lineServer)
	s := serve(t, "", `
    location "= /v6" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        sock:settimeout(1000)
        local ok, err = sock:connect("::1", tonumber(ngx.var.arg_port))
        if not ok then ngx.say("failed: ", err) return end
        sock:send("over v6\n")
        ngx.say(sock:receive())
        sock:close()
      LUA
    }`)
	check(t, s.Get("/v6?port="+srv.port()), 200, "echo: over v6\n")
	check(t, s.Get("/v6?port=1"), 200, "failed: connection refused\n")
	checkLog(t, s, "lua tcp socket connect() to [::1]:1 failed: connection refused")
}

func TestCosocketUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "echo.sock")
	srv := startTCP(t, "unix", path, lineServer)
	s := serve(t, "", sockConf)
	check(t, s.Get("/unix?path="+path), 200, "echo: over unix\n")
	check(t, s.Get("/unix?path="+path), 200, "echo: over unix\n")
	if n := srv.accepted.Load(); n != 1 {
		t.Errorf("unix keepalive: %d connections, want 1", n)
	}
}

func TestCosocketTLS(t *testing.T) {
	cert := selfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &tcpServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			srv.accepted.Add(1)
			go func() { defer c.Close(); lineServer(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	s := serve(t, "", sockConf)
	check(t, s.Get("/tls?port="+srv.port()), 200, "handshake: true nil\necho: secure\nreused after keepalive: 1\n")
	check(t, s.Get("/tls_verify?port="+srv.port()), 200, "nil true\n")
	noErrors(t, s)
}

func selfSigned(t *testing.T) tls.Certificate {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
