package ngxlua_test

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer is a tiny authoritative server for the test's names, on one loopback port
// over UDP and TCP (for truncated answers).
type dnsServer struct {
	port    int
	queries atomic.Int32 // UDP queries received
}

func mustName(s string) dnsmessage.Name { return dnsmessage.MustNewName(s) }

// answer builds the reply to a query; tcp: the client came back over TCP.
func (d *dnsServer) answer(q []byte, tcp bool) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil, false
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil, false
	}
	question := qs[0]
	name := question.Name.String()
	if name == "slow.example.com." {
		return nil, false // never answered: the client times out
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	hdr := func(n string, typ dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: mustName(n), Type: typ, Class: dnsmessage.ClassINET, TTL: 300}
	}
	var answers []dnsmessage.Resource
	a := func(n string, ip ...byte) {
		answers = append(answers, dnsmessage.Resource{Header: hdr(n, dnsmessage.TypeA), Body: &dnsmessage.AResource{A: [4]byte(ip)}})
	}
	switch {
	case name == "www.example.com." && question.Type == dnsmessage.TypeA:
		a(name, 10, 0, 0, 1)
		a(name, 10, 0, 0, 2)
	case name == "v6.example.com." && question.Type == dnsmessage.TypeAAAA:
		answers = append(answers, dnsmessage.Resource{Header: hdr(name, dnsmessage.TypeAAAA),
			Body: &dnsmessage.AAAAResource{AAAA: [16]byte(net.ParseIP("2001:db8::1").To16())}})
	case name == "alias.example.com.":
		answers = append(answers, dnsmessage.Resource{Header: hdr(name, dnsmessage.TypeCNAME),
			Body: &dnsmessage.CNAMEResource{CNAME: mustName("www.example.com.")}})
		a("www.example.com.", 10, 0, 0, 1)
	case name == "big.example.com.":
		if !tcp {
			rh.Truncated = true
			break
		}
		for i := range 40 {
			a(name, 10, 1, 0, byte(i))
		}
	default:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(question)
	b.StartAnswers()
	for _, r := range answers {
		switch body := r.Body.(type) {
		case *dnsmessage.AResource:
			b.AResource(r.Header, *body)
		case *dnsmessage.AAAAResource:
			b.AAAAResource(r.Header, *body)
		case *dnsmessage.CNAMEResource:
			b.CNAMEResource(r.Header, *body)
		}
	}
	out, err := b.Finish()
	return out, err == nil
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	// UDP and TCP on one port: take a UDP port, then its TCP twin (retrying when
	// that one is taken).
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	d := &dnsServer{port: pc.LocalAddr().(*net.UDPAddr).Port}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			d.queries.Add(1)
			if out, ok := d.answer(buf[:n], false); ok {
				pc.WriteTo(out, from)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var l [2]byte
			if _, err := io.ReadFull(c, l[:]); err == nil {
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err == nil {
					if out, ok := d.answer(q, true); ok {
						c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...))
					}
				}
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		wg.Wait()
	})
	return d
}

// Debian's lua-nginx-dns (lua-resty-dns) unmodified: resty.dns.resolver over UDP
// cosockets against a DNS server on loopback (A, AAAA, CNAME, NXDOMAIN, a timeout,
// and a truncated answer fetched again over TCP).
func TestRestyDNS(t *testing.T) {
	d := startDNS(t)
	s := serve(t, "", `
    location "= /dns" {
      content_by_lua = <<-LUA
        local resolver = require "nginx.dns.resolver"
        local r, err = resolver:new({
          nameservers = { { "127.0.0.1", tonumber(ngx.var.arg_port) } },
          retrans = 2, timeout = 200,
        })
        if not r then
          ngx.say("failed to instantiate the resolver: ", err)
          return
        end
        local qtype = r["TYPE_" .. (ngx.var.arg_type or "A")]
        local answers, err = r:query(ngx.var.arg_name, { qtype = qtype })
        if not answers then
          ngx.say("failed to query: ", err)
          return
        end
        if answers.errcode then
          ngx.say("server error: ", answers.errcode, ": ", answers.errstr)
          return
        end
        for i, ans in ipairs(answers) do
          if i > 3 then
            ngx.say("... ", #answers, " answers")
            break
          end
          ngx.say(ans.name, " ", ans.address or ans.cname, " type:", ans.type, " ttl:", ans.ttl)
        end
      LUA
    }`)
	port := strconv.Itoa(d.port)
	q := func(name, typ string) string {
		return s.Get("/dns?port=" + port + "&name=" + name + "&type=" + typ).Body
	}
	cases := []struct{ name, typ, want string }{
		{"www.example.com", "A", "www.example.com 10.0.0.1 type:1 ttl:300\nwww.example.com 10.0.0.2 type:1 ttl:300\n"},
		{"v6.example.com", "AAAA", "v6.example.com 2001:db8:0:0:0:0:0:1 type:28 ttl:300\n"},
		{"alias.example.com", "A", "alias.example.com www.example.com type:5 ttl:300\nwww.example.com 10.0.0.1 type:1 ttl:300\n"},
		{"nx.example.com", "A", "server error: 3: name error\n"},
		{"big.example.com", "A", "big.example.com 10.1.0.0 type:1 ttl:300\nbig.example.com 10.1.0.1 type:1 ttl:300\n" +
			"big.example.com 10.1.0.2 type:1 ttl:300\n... 40 answers\n"},
	}
	for _, c := range cases {
		if got := q(c.name, c.typ); got != c.want {
			t.Errorf("%s %s: got %q, want %q", c.name, c.typ, got, c.want)
		}
	}
	noErrors(t, s)
	before := d.queries.Load()
	if got, want := q("slow.example.com", "A"), "failed to query: failed to receive reply from UDP server 127.0.0.1:"+port+": timeout\n"; got != want {
		t.Errorf("timeout: got %q, want %q", got, want)
	}
	// retrans = 2: the query was sent twice.
	if n := d.queries.Load() - before; n != 2 {
		t.Errorf("the timed out query was sent %d times, want 2", n)
	}
	checkLog(t, s, "lua udp socket read timed out")
}
