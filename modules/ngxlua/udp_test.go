package ngxlua_test

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// startUDP serves datagrams on pc: "silent" gets no answer, anything else "echo: "
// and the datagram. It stops with the test.
func startUDP(t *testing.T, pc net.PacketConn) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if string(buf[:n]) == "silent" {
				continue
			}
			reply := append([]byte("echo: "), buf[:n]...)
			if string(buf[:n]) == "from" {
				// Who sent it (bind).
				reply = append(reply, " "+from.(*net.UDPAddr).IP.String()...)
			}
			pc.WriteTo(reply, from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
}

// ngx.socket.udp, after lua-nginx-module's t/087-udp-socket.t.
func TestUDPSocket(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startUDP(t, pc)
	sock := filepath.Join(t.TempDir(), "dgram.sock")
	upc, err := net.ListenPacket("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	startUDP(t, upc)
	// A port nobody listens on: the ICMP answer is "connection refused".
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.LocalAddr().(*net.UDPAddr).Port
	closed.Close()

	s := serve(t, "", `
    location "= /udp" {
      content_by_lua = <<-LUA
        local udp = ngx.socket.udp()
        local host = ngx.var.arg_host or "127.0.0.1"
        local ok, err
        if ngx.var.arg_port then
          ok, err = udp:setpeername(host, tonumber(ngx.var.arg_port))
        else
          ok, err = udp:setpeername(host)
        end
        if not ok then
          ngx.say("failed to connect: ", err)
          return
        end
        udp:settimeout(ngx.var.arg_timeout or 1000)
        ngx.say("send: ", udp:send(ngx.var.arg_msg or "hello"))
        local data, err = udp:receive(tonumber(ngx.var.arg_size))
        ngx.say("received: ", data, " ", err)
        if not data then return end
        assert(udp:send({ "a", 1, true, { "b" } }))
        ngx.say("received: ", (udp:receive()))
        ngx.say("close: ", udp:close())
        ngx.say("after close: ", select(2, udp:send("x")), " ", select(2, udp:receive()), " ", select(2, udp:close()))
      LUA
    }
    location "= /udp_errors" {
      content_by_lua = <<-LUA
        local udp = ngx.socket.udp()
        ngx.say(pcall(udp.setpeername, udp))
        ngx.say(udp:setpeername("127.0.0.1", 70000))
        ngx.say(pcall(ngx.socket.udp, 1))
        ngx.say(udp:receive())
        ngx.say(udp:bind("not an address"))
      LUA
    }
    location "= /udp_bind" {
      content_by_lua = <<-LUA
        local udp = ngx.socket.udp()
        assert(udp:bind("127.0.0.2"))
        assert(udp:setpeername("127.0.0.1", tonumber(ngx.var.arg_port)))
        assert(udp:send("from"))
        ngx.say(udp:receive())
      LUA
    }
    location "= /udp_threads" {
      content_by_lua = <<-LUA
        -- Two light threads wait for their answers at once.
        local function ask(msg)
          local udp = ngx.socket.udp()
          assert(udp:setpeername("127.0.0.1", tonumber(ngx.var.arg_port)))
          assert(udp:send(msg))
          return udp:receive()
        end
        local t1 = ngx.thread.spawn(ask, "one")
        local t2 = ngx.thread.spawn(ask, "two")
        ngx.say(select(2, ngx.thread.wait(t1)), ", ", select(2, ngx.thread.wait(t2)))
      LUA
    }`)
	port := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
	full := "send: 1\nreceived: echo: hello nil\nreceived: echo: a1trueb\nclose: 1\nafter close: closed closed closed\n"
	check(t, s.Get("/udp?port="+port), 200, full)
	// A name resolved as the TCP cosockets resolve it.
	check(t, s.Get("/udp?host=localhost&port="+port), 200, full)
	check(t, s.Get("/udp?host=unix:"+sock), 200, full)
	// receive(size) truncates the datagram.
	check(t, s.Get("/udp?port="+port+"&size=4&msg=truncated"), 200,
		"send: 1\nreceived: echo nil\nreceived: echo: a1trueb\nclose: 1\nafter close: closed closed closed\n")
	check(t, s.Get("/udp?port="+port+"&msg=silent&timeout=100"), 200, "send: 1\nreceived: nil timeout\n")
	checkLog(t, s, "lua udp socket read timed out")
	check(t, s.Get("/udp?port="+strconv.Itoa(closedPort)), 200, "send: 1\nreceived: nil connection refused\n")
	r := s.Get("/udp?host=nosuchhost.invalid&port=53")
	if !strings.HasPrefix(r.Body, "failed to connect: nosuchhost.invalid could not be resolved") {
		t.Errorf("resolution failure: %q", r.Body)
	}
	check(t, s.Get("/udp_errors"), 200, "falsengx.socket.udp setpeername: expecting 2 or 3 arguments (including the object), but seen 1\n"+
		"nilbad port number: 70000\nfalseexpecting zero arguments, but got 1\nnilclosed\nnilbad address\n")
	check(t, s.Get("/udp_threads?port="+port), 200, "echo: one, echo: two\n")
	check(t, s.Get("/udp_bind?port="+port), 200, "echo: from 127.0.0.2\n")
}
